"""Outbound HTTP for webhook delivery: where a webhook may go, and one attempt to send it."""
