"""Helpers the test layers import: live servers, real receivers, a TCP proxy, node tools, request
helpers, what the order tests read back from the database, error envelopes, bounded polling.
Fixtures live in the conftest files; everything here is plain code."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
