"""Waiting for what a live server does in the background, with a bound on every wait."""

import time

WAIT = 30  # upper bound of any wait for background work


def eventually(check, what, timeout=WAIT, every=0.05):
    """Poll `check()` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(every)
