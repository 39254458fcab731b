"""Rolling-window rate-limit counters."""

from peewee import CharField, DoubleField, Model


def up(migrator, db):
    class RateLimitHit(Model):
        bucket = CharField()
        at = DoubleField()

        class Meta:
            database = db
            legacy_table_names = False
            indexes = ((("bucket", "at"), False),)

    db.create_tables([RateLimitHit])
