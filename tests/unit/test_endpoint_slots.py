"""Attempts in flight per endpoint (octopus_cards/worker.py): an attempt whose endpoint's slots are
taken waits for one to free up, not longer than its wait, and never for another endpoint's."""

import threading
import time

from octopus_cards.worker import EndpointSlots


def test_an_attempt_takes_the_slot_another_frees_within_its_wait():
    slots, taken, release = EndpointSlots(per_endpoint=1, wait=10), threading.Event(), threading.Event()

    def hold():
        with slots(7) as free:
            assert free
            taken.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    taken.wait()
    threading.Timer(0.05, release.set).start()
    started = time.monotonic()
    with slots(7) as free:
        assert free and time.monotonic() - started < 5
    holder.join()
    assert not slots.in_flight


def test_a_slot_that_stays_taken_turns_the_attempt_away_after_the_wait_and_others_go_on():
    slots = EndpointSlots(per_endpoint=2, wait=0.05)
    with slots(7) as first, slots(7) as second:
        started = time.monotonic()
        with slots(7) as third:
            assert (first, second, third) == (True, True, False)
            assert time.monotonic() - started >= 0.05
        with slots(8) as elsewhere:
            assert elsewhere
    assert not slots.in_flight
