"""The lease keeper (octopus_cards/worker.py): woken only when a job needs renewals sooner than the
round it is waiting for, not once per job."""

import types

from octopus_cards.worker import IDLE_LEASE, Leases


def test_the_keeper_is_woken_only_for_a_lease_shorter_than_it_is_timed_for():
    leases = Leases()
    leases.thread = object()  # no keeper thread: only the wake-up call is looked at
    leases.hold(types.SimpleNamespace(id=1), IDLE_LEASE)
    assert not leases.shorter.is_set()
    leases.hold(types.SimpleNamespace(id=2), IDLE_LEASE / 10)
    assert leases.shorter.is_set()
    assert leases.running == {1: IDLE_LEASE, 2: IDLE_LEASE / 10}
