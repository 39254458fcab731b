"""Background work that loses nothing (contract 12, 15.1 items 30, 31, 49): a job row written in
the same transaction as the change that needs it, claimed with a lease, so any number of processes
and instances may work the queue; a job whose process died is taken over once its lease expires."""

import datetime
import logging

from peewee import CharField, DateTimeField, IntegerField, TextField

from octopus_cards.models.base import BaseModel, Prepared, on_sqlite, utcnow, write_txn

logger = logging.getLogger("octopus_cards.jobs")


def clock():
    """Naive UTC to the microsecond: due and lease times, so that retry schedules of fractions of a
    second (contract 15.1, item 30) hold; the other timestamps are whole seconds (base.utcnow)."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


class Job(BaseModel):
    kind = CharField()
    subject_id = IntegerField()
    attempts = IntegerField(default=0)
    run_after = DateTimeField()
    locked_until = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)
    last_error = TextField(null=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("kind", "subject_id"), True), (("finished_at", "run_after"), False))

    @classmethod
    def enqueue(cls, kind, subject_id, held_for=None, after=0):
        """Queue work on `subject_id`; call inside the transaction of the change. `held_for`
        (seconds) claims it at once for the caller, who runs it right away; else it is due
        `after` seconds from now. The job as written."""
        now = clock()
        held = None if held_for is None else now + datetime.timedelta(seconds=held_for)
        return NEW_JOB.create(cls(
            kind=kind, subject_id=subject_id, attempts=0 if held is None else 1,
            run_after=now + datetime.timedelta(seconds=after), locked_until=held, created_at=utcnow(),
        ))  # fmt: skip

    @classmethod
    def at_once(cls, kind, subject_id):
        """The first attempt of work run inside the transaction of the change that needs it: a job
        written only if it must run again (retry_after); finished at once, it leaves no row."""
        return cls(kind=kind, subject_id=subject_id, attempts=1, run_after=clock(), created_at=utcnow())

    @classmethod
    def of(cls, kind, subject_id):
        """The job of `kind` on `subject_id`, or None."""
        return JOB_OF.first(kind=kind, subject_id=subject_id)

    @classmethod
    def claim(cls, lease, limit, kind):
        """Up to `limit` due jobs of `kind`, each leased to the caller for `lease` seconds."""
        now = clock()
        # Every lane of every process looks several times a second: a read (which waits for no
        # writer) settles that there is nothing to do, without taking the write lock.
        if not ANY_DUE.first(kind=kind, now=now):
            return []
        with write_txn():
            jobs = CLAIMABLE.rows(kind=kind, now=now, limit=limit)
            until = now + datetime.timedelta(seconds=lease)
            for job in jobs:
                LEASE.execute(job=job.id, until=until)
                job.attempts += 1
        return jobs

    @classmethod
    def renew(cls, job_ids, lease):
        """Keep the claims on these jobs while they run (finished or rescheduled ones are left alone)."""
        until = clock() + datetime.timedelta(seconds=lease)
        with write_txn():
            cls.update(locked_until=until).where(
                cls.id.in_(job_ids) & cls.finished_at.is_null() & cls.locked_until.is_null(False)
            ).execute()

    def finish(self):
        if self.id is None:  # run at once, never written: nothing to record
            return
        with write_txn():
            FINISH_JOB.execute(job=self.id, finished_at=utcnow())

    def ran(self, status):
        """Log the run that left the job's subject in `status` (None: there was nothing to do), one
        line a run, so that an operator can follow an order through every process that took it."""
        number, outcome = "-" if self.id is None else self.id, status or "nothing to do"
        logger.info("job %s (%s %d), attempt %d: %s", number, self.kind, self.subject_id, self.attempts, outcome)

    def retry_after(self, seconds, error):
        run_after = clock() + datetime.timedelta(seconds=seconds)
        with write_txn():
            if self.id is None:  # run at once, and to run again: queued now
                self.run_after, self.last_error = run_after, error
                self.save(force_insert=True)
                return
            Job.update(run_after=run_after, locked_until=None, last_error=error).where(Job.id == self.id).execute()


def due_jobs(kind, now):
    return (
        Job.select()
        .where(
            (Job.kind == kind)
            & Job.finished_at.is_null()
            & (Job.run_after <= now)
            & (Job.locked_until.is_null() | (Job.locked_until < now))
        )
        .order_by(Job.run_after, Job.id)
    )


def claimable(slot):
    """PostgreSQL's claims skip the rows another claim has locked; on SQLite the write lock
    serialises them."""
    due = due_jobs(slot("kind"), slot("now")).limit(slot("limit"))
    return due if on_sqlite() else due.for_update(skip_locked=True)


# Every order, delivery and receipt writes and finishes a job: their SQL is built once.
NEW_JOB = Prepared.insert(
    Job, (Job.kind, Job.subject_id, Job.attempts, Job.run_after, Job.locked_until, Job.created_at)
)
ANY_DUE = Prepared(lambda slot: due_jobs(slot("kind"), slot("now")).limit(1))
CLAIMABLE = Prepared(claimable)
LEASE = Prepared(
    lambda slot: Job.update(locked_until=slot("until"), attempts=Job.attempts + 1).where(Job.id == slot("job"))
)
JOB_OF = Prepared(
    lambda slot: Job.select().where((Job.kind == slot("kind")) & (Job.subject_id == slot("subject_id"))).limit(1)
)
FINISH_JOB = Prepared(
    lambda slot: Job.update(finished_at=slot("finished_at"), locked_until=None).where(Job.id == slot("job"))
)
