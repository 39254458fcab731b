"""The database binding: a proxy initialised from a URL, and the transaction helper."""

import contextlib
import datetime
import threading
from pathlib import Path

from peewee import DatabaseProxy, Model, SqliteDatabase
from playhouse import migrations
from playhouse.db_url import connect as connect_url

db = DatabaseProxy()

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# busy_timeout: how long a writer of another process waits for the lock (milliseconds).
SQLITE_PRAGMAS = {"journal_mode": "wal", "foreign_keys": 1, "synchronous": "normal", "busy_timeout": 5000}
# AnyIO runs at most 40 worker threads per process; each may hold one connection.
POOL_SIZE = 64
PG_CONNECT_TIMEOUT = 5  # seconds
# Writers of one process queue here rather than in SQLite's sleep-and-retry busy handler.
SQLITE_WRITE_LOCK = threading.RLock()


class BaseModel(Model):
    class Meta:
        database = db
        legacy_table_names = False


class Prepared:
    """A statement whose SQL is built once per database, for the few that run on every request,
    where building the SQL would cost more than running it.

    `build(slot)` returns the peewee query with `slot(name)` wherever a value goes;
    `execute(name=value, ...)` runs it with those values and returns the cursor.
    """

    def __init__(self, build):
        self.build = build
        self.compiled = {}

    def execute(self, **values):
        database = db.obj
        compiled = self.compiled.get(database)
        if compiled is None:
            sql, slots = self.build(lambda name: SLOT + name).sql()
            compiled = self.compiled[database] = sql, [slot[len(SLOT) :] for slot in slots]
        sql, names = compiled
        return database.execute_sql(sql, [values[name] for name in names])

    def execute_returning_id(self, **values):
        """For an INSERT: the new row's id (RETURNING on PostgreSQL, the rowid on SQLite)."""
        cursor = self.execute(**values)
        return cursor.fetchone()[0] if db.obj.returning_clause else cursor.lastrowid


SLOT = "\x00slot:"


def utcnow():
    """Naive UTC, whole seconds: what every timestamp column stores."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None, microsecond=0)


def connect(url):
    """Bind the models to the database at `url` (sqlite:///path or postgresql://...)."""
    scheme, sep, rest = url.partition("://")
    # Handlers open and close a connection per request: a pool makes that a check-out, and
    # the pragmas are set once per connection instead of once per request.
    if scheme == "sqlite":
        database = connect_url(
            f"sqlite+pool://{rest}",
            pragmas=SQLITE_PRAGMAS,
            max_connections=POOL_SIZE,
            stale_timeout=300,
            check_same_thread=False,
            autoconnect=False,
        )
    elif scheme in ("postgres", "postgresql"):
        # A database that hangs instead of refusing must not hold request threads for long.
        database = connect_url(
            f"postgres+pool://{rest}",
            max_connections=POOL_SIZE,
            stale_timeout=300,
            connect_timeout=PG_CONNECT_TIMEOUT,
            autoconnect=False,
        )
    else:
        raise ValueError(f"unsupported database URL scheme {scheme!r}: use sqlite:// or postgresql://")
    db.initialize(database)
    return database


def on_sqlite():
    return isinstance(db.obj, SqliteDatabase)


@contextlib.contextmanager
def write_txn():
    """A transaction that may read then write without a lock upgrade failing.

    SQLite upgrades a deferred read lock to a write lock outside the busy timeout, so it
    must take the write lock up front; PostgreSQL's row locks need nothing special.
    """
    if on_sqlite():
        with SQLITE_WRITE_LOCK, db.atomic("IMMEDIATE"):
            yield
    else:
        with db.atomic():
            yield


def lock_for_update(name):
    """Serialise writers of `name` until the transaction ends.

    Inside write_txn SQLite already holds the database's write lock; PostgreSQL takes a
    transaction-scoped advisory lock on the name.
    """
    if not on_sqlite():
        db.execute_sql("SELECT pg_advisory_xact_lock(hashtext(%s))", (name,))


def migrate():
    """Apply the pending numbered migrations; returns their names."""
    with db.connection_context():
        return migrations.Runner(db.obj, str(MIGRATIONS_DIR)).up()
