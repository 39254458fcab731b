"""Helpers the test layers import: live servers, a TCP proxy, node tools, request helpers.
Fixtures live in the conftest files; everything here is plain code."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
