"""Background work: claim due jobs through the database and run them, in `serve`'s workers
(OCTOPUS_BACKGROUND) or alone as `octopus-cards worker`. Every process may run it; each job is
claimed with a lease, so none runs twice at once, and a dead process's jobs are taken over."""

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import signal
import threading
import time

import anyio

from octopus_cards import models
from octopus_cards.http.observability import record_webhook_attempt
from octopus_cards.models import orders, receipts, webhooks
from octopus_cards.models.esim_orders import WATCH_KIND, EsimOrder
from octopus_cards.models.jobs import Job
from octopus_cards.models.topup_orders import TopupOrder
from octopus_cards.models.variant_orders import PENDING

logger = logging.getLogger("octopus_cards.worker")

IDLE_POLL = 0.2  # seconds between looks at an empty queue
# Synchronous orders' first supplier calls; one that outlives its request's deadline finishes here.
FIRST_CALLS = concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="fulfil")
# eSIM creates wait up to a minute by default: their calls get threads of their own, so that slow
# eSIM suppliers never hold up voucher orders.
ESIM_CALLS = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="esim")
ESIM_POLL = 0.1  # seconds between looks at an order whose first call failed for now


IDLE_LEASE = 30  # seconds: a third of it is how often an idle keeper looks again


class Leases:
    """Keeps the leases of the jobs this process runs (contract 15.1, item 49), all of them in one
    statement every third of the shortest lease, from one thread: only a process that died or hung
    lets its leases expire."""

    def __init__(self):
        self.running, self.lock, self.shorter = {}, threading.Lock(), threading.Event()
        self.thread = None
        self.pace = IDLE_LEASE  # the lease the keeper's current round is timed for

    def hold(self, job, lease):
        with self.lock:
            if lease < self.pace:
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
                lease = self.pace = min(self.running.values(), default=IDLE_LEASE)
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


def fulfilment(work):
    """A lane's runner for `work(job, supplier, retry_schedule, *given)`, an order vertical's
    fulfilment."""

    def fulfil(job, runtime, *given):
        with models.db.connection_context():
            return work(job, runtime.supplier, runtime.settings.fulfilment_retry_schedule, *given)

    return fulfil


def watch_esim(job, runtime):
    with models.db.connection_context():
        return EsimOrder.watch(job, runtime.supplier)


class EndpointSlots:
    """At most `per_endpoint` attempts in flight to one endpoint from this process, so that a
    receiver that is slow or never answers leaves the rest of the lane's places to the others.
    An attempt that finds its endpoint's slots taken waits up to `wait` seconds for one: a
    receiver that answers in milliseconds frees one long before (turned away at once, a burst's
    extra claims waited a whole BUSY_RETRY and were overtaken by newer events), while a stalled
    receiver's extra deliveries soon go back to the queue and free their places."""

    def __init__(self, per_endpoint, wait):
        self.per_endpoint, self.wait = per_endpoint, wait
        self.in_flight, self.freed = collections.Counter(), threading.Condition()

    @contextlib.contextmanager
    def __call__(self, endpoint_id):
        with self.freed:
            free = self.freed.wait_for(lambda: self.in_flight[endpoint_id] < self.per_endpoint, self.wait)
            if free:
                self.in_flight[endpoint_id] += 1
        try:
            yield free
        finally:
            if free:
                with self.freed:
                    self.in_flight[endpoint_id] -= 1
                    if not self.in_flight[endpoint_id]:
                        del self.in_flight[endpoint_id]
                    self.freed.notify_all()


# One endpoint may take all places but 4: enough for one busy receiver's throughput, and a silent
# one still leaves room for the others.
DELIVERY_PLACES, PER_ENDPOINT = 16, 12
# A full endpoint's extra attempts wait no longer than an idle lane waits to look at the queue again.
ENDPOINT_SLOTS = EndpointSlots(PER_ENDPOINT, wait=IDLE_POLL)


def deliver(job, runtime):
    started = time.monotonic()
    status = webhooks.attempt(job, runtime.send_webhook, runtime.settings.webhook_retry_schedule, ENDPOINT_SLOTS)
    if status is not None:
        record_webhook_attempt(status, time.monotonic() - started)
    return status


def send_receipt(job, runtime):
    return receipts.send(job, runtime.mail, runtime.settings.webhook_retry_schedule)


# What runs a job of each kind, and how many of that kind one process runs at once: a lane of its
# own per kind, so that slow receivers never hold up fulfilment, nor slow suppliers deliveries.
LANES = {
    orders.JOB_KIND: (fulfilment(orders.work), 4),
    TopupOrder.JOB_KIND: (fulfilment(TopupOrder.work), 4),
    EsimOrder.JOB_KIND: (fulfilment(EsimOrder.work), 4),
    WATCH_KIND: (watch_esim, 2),
    webhooks.JOB_KIND: (deliver, DELIVERY_PLACES),
    receipts.JOB_KIND: (send_receipt, 2),
}


def run_one(job, runtime, *given):
    """Run a claimed job, its lease kept while it runs; `given`: what its runner may take instead
    of reading it (fulfil_now)."""
    LEASES.hold(job, runtime.settings.job_lease)
    try:
        job.ran(LANES[job.kind][0](job, runtime, *given))
    finally:
        LEASES.release(job)


def claim(runtime, kind, limit):
    with models.db.connection_context():
        return Job.claim(runtime.settings.job_lease, limit, kind)


async def work_forever(runtime):
    """Each lane claims as many jobs of its kind as it has free places, runs them, and looks again."""
    async with anyio.create_task_group() as tasks:
        for kind, (_, places) in LANES.items():
            tasks.start_soon(work_lane, runtime, kind, places)


async def work_until_stopped(runtime):
    """`octopus-cards worker`: work until SIGTERM or SIGINT, then claim nothing more and let the
    jobs already running finish (a supplier call cut off would leave its job to wait for its lease
    to expire, and another process to run it again)."""
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(work_forever, runtime)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for received in signals:
                logger.info("worker stopping (%s): running jobs finish, no new ones start", received.name)
                tasks.cancel_scope.cancel()
                break
    logger.info("worker stopped")


class Lane:
    """The jobs of one kind a process is running, and a wake-up call for when one of them ends."""

    def __init__(self, places):
        self.places, self.running, self.freed = places, set(), anyio.Event()

    def ended(self, job_id):
        self.running.discard(job_id)
        self.freed.set()


async def work_lane(runtime, kind, places):
    lane = Lane(places)
    async with anyio.create_task_group() as tasks:
        while True:
            lane.freed = anyio.Event()  # set by any job that ends from now on
            free = lane.places - len(lane.running)
            jobs = []
            if free:
                try:
                    # Shielded, as is each run: jobs claimed when the worker is told to stop still
                    # start and finish, rather than wait for their leases to expire.
                    with anyio.CancelScope(shield=True):
                        jobs = await anyio.to_thread.run_sync(claim, runtime, kind, free)
                except Exception:  # the database may be briefly away: the next round retries
                    logger.exception("claiming background jobs failed")
            for job in jobs:
                lane.running.add(job.id)
                tasks.start_soon(run_guarded, job, runtime, lane)
            if not free or len(jobs) == free:  # every place taken: look again as soon as one frees up
                await lane.freed.wait()
            else:  # the queue is empty for now
                await anyio.sleep(IDLE_POLL)


async def run_guarded(job, runtime, lane):
    with anyio.CancelScope(shield=True):  # a claimed job runs to its end, even when the worker stops
        try:
            await anyio.to_thread.run_sync(run_one, job, runtime)
        except Exception:  # its lease expires, and a later round takes the job over
            logger.exception("background job %d (%s) failed", job.id, job.kind)
        finally:
            lane.ended(job.id)


def held_job_runner(kind, order_id, runtime):
    """A function that runs the order's held job (its first supplier call) in this process."""

    def first_call():
        with models.db.connection_context():
            job = Job.of(kind, order_id)
        run_one(job, runtime)

    return first_call


def fulfil_now(order, job, runtime):
    """Run a voucher order's held job, as orders.place() returned them, waiting up to the
    synchronous deadline (contract 15.1, item 29); past it the call goes on here and the order is
    answered as it stands."""
    try:
        FIRST_CALLS.submit(run_one, job, runtime, order).result(timeout=runtime.settings.voucher_sync_deadline)
    except concurrent.futures.TimeoutError:
        pass


async def esim_within(order_id, runtime, seconds):
    """Run a new eSIM order's held job, and wait up to `seconds` for the order to leave PENDING,
    retries in the background included (contract 8.4, 15.1 item 46), holding neither the event loop
    nor a request thread while the supplier takes its time; past it the call goes on here."""
    deadline = time.monotonic() + seconds
    run = held_job_runner(EsimOrder.JOB_KIND, order_id, runtime)

    def guarded():  # nobody may be left to hear of a failure: its lease expires, the job is taken over
        try:
            run()
        except Exception:
            logger.exception("the first supplier call of eSIM order %d failed", order_id)

    first_call = asyncio.wrap_future(ESIM_CALLS.submit(guarded))
    # asyncio.wait, unlike a cancelled await, leaves the call running when the time is up.
    await asyncio.wait({first_call}, timeout=seconds)
    while time.monotonic() < deadline:
        if await anyio.to_thread.run_sync(esim_status, order_id) != PENDING:
            return
        await anyio.sleep(min(ESIM_POLL, max(0, deadline - time.monotonic())))


def esim_status(order_id):
    with models.db.connection_context():
        return EsimOrder.status_of(order_id)


def ping(delivery, runtime):
    """`webhook ping`: run the ping's held delivery job now; the outcome of its one attempt."""
    with models.db.connection_context():
        job = Job.of(webhooks.JOB_KIND, delivery.id)
    if job is not None:  # none for a disabled endpoint: the delivery was recorded failed at once
        run_one(job, runtime)
    with models.db.connection_context():
        delivery = webhooks.Delivery.get_by_id(delivery.id)
        last = delivery.attempt_log.order_by(webhooks.DeliveryAttempt.number.desc()).first()
    return {
        "event_id": delivery.event_id,
        "status": delivery.status,
        "http_status": last.http_status if last else None,
        "duration_ms": last.duration_ms if last else None,
        "error": last.error if last else delivery.last_error,
    }
