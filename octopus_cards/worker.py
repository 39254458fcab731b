"""Background work: claim due jobs through the database and run them, in `serve`'s workers
(OCTOPUS_BACKGROUND) or alone as `octopus-cards worker`. Every process may run it; each job is
claimed with a lease, so none runs twice at once, and a dead process's jobs are taken over."""

import concurrent.futures
import logging
import threading

import anyio

from octopus_cards import models
from octopus_cards.models import orders
from octopus_cards.models.jobs import Job

logger = logging.getLogger("octopus_cards.worker")

IDLE_POLL = 0.2  # seconds between looks at an empty queue
PARALLEL = 4  # jobs one process runs at once (supplier calls may be slow)
# Synchronous orders' first supplier calls; one that outlives its request's deadline finishes here.
FIRST_CALLS = concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="fulfil")


IDLE_LEASE = 30  # seconds: a third of it is how often an idle keeper looks again


class Leases:
    """Keeps the leases of the jobs this process runs (contract 15.1, item 49), all of them in one
    statement every third of the shortest lease, from one thread: only a process that died or hung
    lets its leases expire."""

    def __init__(self):
        self.running, self.lock, self.shorter = {}, threading.Lock(), threading.Event()
        self.thread = None

    def hold(self, job, lease):
        with self.lock:
            if lease < min(self.running.values(), default=IDLE_LEASE + 1):
                self.shorter.set()  # the keeper's next round must come sooner
            self.running[job.id] = lease
            if self.thread is None:
                self.thread = threading.Thread(target=self.keep, name="leases", daemon=True)
                self.thread.start()

    def release(self, job):
        with self.lock:
            self.running.pop(job.id, None)

    def keep(self):
        while True:
            with self.lock:
                lease = min(self.running.values(), default=IDLE_LEASE)
            if self.shorter.wait(lease / 3):
                self.shorter.clear()
                continue
            with self.lock:
                ids, lease = list(self.running), max(self.running.values(), default=None)
            if ids:
                try:
                    with models.db.connection_context():
                        Job.renew(ids, lease)
                except Exception:  # the database may be briefly away: the next round renews
                    logger.exception("renewing job leases failed")


LEASES = Leases()


def run_one(job, runtime):
    """Run a claimed job, its lease kept while it runs."""
    LEASES.hold(job, runtime.settings.job_lease)
    try:
        with models.db.connection_context():
            status = orders.work(job, runtime.supplier, runtime.settings.fulfilment_retry_schedule)
        # One line a run, so that an operator can follow an order through every process that took it.
        logger.info(
            "job %d (%s %d), attempt %d: %s", job.id, job.kind, job.subject_id, job.attempts, status or "nothing to do"
        )
    finally:
        LEASES.release(job)


def claim(runtime, limit):
    with models.db.connection_context():
        return Job.claim(runtime.settings.job_lease, limit)


async def work_forever(runtime):
    """Claim as many jobs as there are free places, run them, and look again."""
    running = set()
    async with anyio.create_task_group() as tasks:
        while True:
            free = PARALLEL - len(running)
            jobs = []
            if free:
                try:
                    jobs = await anyio.to_thread.run_sync(claim, runtime, free)
                except Exception:  # the database may be briefly away: the next round retries
                    logger.exception("claiming background jobs failed")
            for job in jobs:
                running.add(job.id)
                tasks.start_soon(run_guarded, job, runtime, running)
            await anyio.sleep(0 if jobs and len(jobs) == free else IDLE_POLL)


async def run_guarded(job, runtime, running):
    try:
        await anyio.to_thread.run_sync(run_one, job, runtime)
    except Exception:  # its lease expires, and a later round takes the job over
        logger.exception("background job %d (%s) failed", job.id, job.kind)
    finally:
        running.discard(job.id)


def fulfil_now(order_id, runtime):
    """Run the order's held job at once, waiting up to the synchronous deadline (contract 15.1,
    item 29); past it the call goes on here and the order is answered as it stands."""

    def first_call():
        with models.db.connection_context():
            job = Job.get((Job.kind == orders.JOB_KIND) & (Job.subject_id == order_id))
        run_one(job, runtime)

    try:
        FIRST_CALLS.submit(first_call).result(timeout=runtime.settings.voucher_sync_deadline)
    except concurrent.futures.TimeoutError:
        pass
