"""Rolling-window request counters shared by every worker and instance (contract 10)."""

import math
import time

from peewee import CharField, DoubleField, fn

from octopus_cards.models.base import BaseModel, lock_for_update, write_txn

WINDOW_SECONDS = 60


class RateLimitHit(BaseModel):
    """One admitted request of a bucket; rows older than the window are pruned as we go."""

    bucket = CharField()
    at = DoubleField()

    class Meta:
        indexes = ((("bucket", "at"), False),)

    @classmethod
    def admit(cls, bucket, limit, now=None):
        """Count a request against `bucket`. None if admitted, else whole seconds (>= 1) until
        the next request would be: when the oldest hit in the window leaves it."""
        now = time.time() if now is None else now
        with write_txn():
            lock_for_update(f"rate:{bucket}")
            cls.delete().where((cls.bucket == bucket) & (cls.at <= now - WINDOW_SECONDS)).execute()
            count, oldest = (
                cls.select(fn.COUNT(cls.id), fn.MIN(cls.at)).where(cls.bucket == bucket).scalar(as_tuple=True)
            )
            if count >= limit:
                return max(1, math.ceil(oldest + WINDOW_SECONDS - now))
            cls.create(bucket=bucket, at=now)
        return None

    @classmethod
    def prune(cls, now=None):
        """Drop hits of every bucket that have left the window (admit prunes only its own)."""
        now = time.time() if now is None else now
        return cls.delete().where(cls.at <= now - WINDOW_SECONDS).execute()
