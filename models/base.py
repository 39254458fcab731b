"""The database binding: a proxy initialised from a URL, and the transaction helper."""
import datetime
from pathlib import Path

from peewee import DatabaseProxy, Model, SqliteDatabase
from playhouse import migrations
from playhouse.db_url import connect as connect_url

db = DatabaseProxy()

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

SQLITE_PRAGMAS = {"journal_mode": "wal", "foreign_keys": 1, "synchronous": "normal"}
SQLITE_BUSY_TIMEOUT = 5
# AnyIO runs at most 40 handler threads per process, plus the security lookups.
POSTGRES_POOL_SIZE = 64


class BaseModel(Model):
    class Meta:
        database = db
        legacy_table_names = False


def utcnow():
    """Naive UTC, whole seconds: what every timestamp column stores."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)


def connect(url):
    """Bind the models to the database at `url` (sqlite:///path or postgresql://...)."""
    scheme, sep, rest = url.partition("://")
    if scheme == "sqlite":
        database = connect_url(
            url, pragmas=SQLITE_PRAGMAS, timeout=SQLITE_BUSY_TIMEOUT, autoconnect=False
        )
    elif scheme in ("postgres", "postgresql"):
        # Handlers open and close a connection per request: a pool makes that a check-out.
        database = connect_url(
            f"postgres+pool://{rest}",
            max_connections=POSTGRES_POOL_SIZE,
            stale_timeout=300,
            autoconnect=False,
        )
    else:
        raise ValueError(f"unsupported database URL scheme {scheme!r}: use sqlite:// or postgresql://")
    db.initialize(database)
    return database


def write_txn():
    """A transaction that may read then write without a lock upgrade failing.

    SQLite upgrades a deferred read lock to a write lock outside the busy timeout, so it
    must take the write lock up front; PostgreSQL's row locks need nothing special.
    """
    if isinstance(db.obj, SqliteDatabase):
        return db.atomic("IMMEDIATE")
    return db.atomic()


def select_for_update(query):
    """Row locks for the rest of the transaction (SQLite's write_txn already holds the whole database)."""
    return query if isinstance(db.obj, SqliteDatabase) else query.for_update()


def lock_for_update(name):
    """Serialise writers of `name` until the transaction ends.

    Inside write_txn SQLite already holds the database's write lock; PostgreSQL takes a
    transaction-scoped advisory lock on the name.
    """
    if not isinstance(db.obj, SqliteDatabase):
        db.execute_sql("SELECT pg_advisory_xact_lock(hashtext(%s))", (name,))


def migrate():
    """Apply the pending numbered migrations; returns their names."""
    with db.connection_context():
        return migrations.Runner(db.obj, str(MIGRATIONS_DIR)).up()
