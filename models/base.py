"""The database binding: a proxy initialised from a URL, and the transaction helper."""

import contextlib
import datetime
import functools
import threading
from pathlib import Path

from peewee import (
    AutoField,
    DatabaseProxy,
    FieldAccessor,
    ForeignKeyAccessor,
    Model,
    ModelCursorWrapper,
    ModelObjectCursorWrapper,
    SqliteDatabase,
)
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
    """A statement whose SQL is built once per database, for those that run on every request,
    where building the SQL would cost more than running it.

    `build(slot)` returns the peewee query with `slot(name)` wherever a value goes; each value
    given later goes through the converter peewee would have applied there (a field's db_value),
    and rows come back as the query would have returned them (model objects, tuples, dicts).
    """

    def __init__(self, build):
        self.build = build
        self.compiled = {}
        self.layouts = {}
        self.builders = {}

    @classmethod
    def insert(cls, model, fields=None):
        """An INSERT of one row of `model`, with a slot named after each of `fields` (by default
        every column but an auto-incremented id)."""
        fields = fields or [field for field in model._meta.sorted_fields if not isinstance(field, AutoField)]
        return cls(lambda slot: model.insert({field: slot(field.name) for field in fields}))

    def compile(self, database):
        query = self.build(Slot)
        context = slot_aware(database.context_class)(**database.get_context_options())
        sql, params = context.sql(query).query()
        # Each param: (slot name, its converter, None), or (None, None, a constant of the query).
        converters = iter(context.converters)
        template = [(p.name, next(converters), None) if isinstance(p, Slot) else (None, None, p) for p in params]
        compiled = self.compiled[database] = query, sql, template
        return compiled

    def compiled_for(self, database):
        """(query, SQL, template) for `database`, compiled on first use."""
        return self.compiled.get(database) or self.compile(database)

    def execute(self, **values):
        """Run it with these values; the cursor."""
        database = db.obj
        _, sql, template = self.compiled_for(database)
        params = [
            constant if name is None else values[name] if convert is None else convert(values[name])
            for name, convert, constant in template
        ]
        return database.execute_sql(sql, params)

    def rows(self, **values):
        """The rows, as the query would have returned them."""
        cursor = self.execute(**values)
        database = db.obj
        builder = self.builders.get(database)
        if builder is not None:
            return [builder(row) for row in cursor]
        reader = self.compiled[database][0]._get_cursor_wrapper(cursor)
        # What peewee's reader works out from the first row (columns, converters, the joined models)
        # is the same for every run of the same SQL: worked out once, it is given to the next ones.
        layout = self.layouts.get(database)
        if layout is not None:
            vars(reader).update(layout)
            reader.initialized = True
        found = list(reader)
        if layout is None and reader.initialized:
            self.layouts[database] = {name: v for name, v in vars(reader).items() if name not in READER_STATE}
            try:
                self.builders[database] = model_builder(reader)
            except AttributeError:  # a peewee whose readers keep their layout otherwise
                self.builders[database] = None
        return found

    def first(self, **values):
        """The first row, or None (the query should have LIMIT 1)."""
        found = self.rows(**values)
        return found[0] if found else None

    def create(self, instance):
        """For an INSERT: write a model instance, as peewee's Model.create would (a field neither
        given nor defaulted is null); the instance, with its new id if it had none."""
        _, _, template = self.compiled_for(db.obj)
        data = instance.__data__
        new_id = self.execute_returning_id(**{name: data.get(name) for name, _, _ in template if name is not None})
        if instance._pk is None:
            instance._pk = new_id
        return instance

    def execute_returning_id(self, **values):
        """For an INSERT: the new row's id (RETURNING on PostgreSQL, the rowid on SQLite)."""
        cursor = self.execute(**values)
        return cursor.fetchone()[0] if db.obj.returning_clause else cursor.lastrowid


# What a peewee cursor wrapper holds of one run of a statement (the rest describes its columns).
READER_STATE = frozenset(("cursor", "count", "index", "initialized", "populated", "row_cache"))
PLAIN_ACCESSORS = (FieldAccessor, ForeignKeyAccessor)


def blank(model):
    """An instance of `model` as peewee's readers start one (Model(__no_default__=True))."""
    instance = model.__new__(model)
    instance.__data__, instance._dirty, instance.__rel__ = {}, set(), {}
    return instance


def plain_model(model):
    """Whether `model` is made as peewee makes models (no constructor of its own)."""
    return model.__init__ is Model.__init__


def plain_field(model, name):
    """Whether setting `name` on a new instance of `model` only puts the value in its data: a
    field whose accessor stores what it is given (a foreign key's id, not a related object)."""
    return type(vars(model).get(name)) in PLAIN_ACCESSORS


def model_builder(reader):
    """A function making of a raw row what peewee's `reader` (initialised) would make of it, for
    the readers of model rows (peewee's ModelObjectCursorWrapper and ModelCursorWrapper); None for
    any other reader, or any column or join it does differently than fields and foreign keys.

    peewee sets each column through the field's accessor and each joined model through the
    foreign key's, then clears the fields it marked dirty; on the hot reads that per-attribute
    work costs more than the statement. Here each value goes straight into the instance's data,
    as those accessors would put it.

    It reads the layout peewee 4.5's readers work out: `unique_columns`, `converters`,
    `no_convert`, `convert`, `constructor` and `is_model` of the one-model reader, `_row_spec`,
    `_constructor_list`, `src_to_dest` and `_dest_reachable` of the joined one. Pinned by
    tests/domain/test_prepared.py, which compares both builds and requires this one to be used.
    """
    if isinstance(reader, ModelObjectCursorWrapper):
        model = reader.constructor
        if not (reader.is_model and plain_model(model) and all(plain_field(model, n) for n in reader.unique_columns)):
            return None
        # In peewee's order: the columns without a converter, then those with one.
        columns = [(i, reader.unique_columns[i], reader.converters[i]) for i in reader.no_convert + reader.convert]

        def one(row):
            instance = blank(model)
            data = instance.__data__
            for i, name, convert in columns:
                data[name] = row[i] if convert is None else convert(row[i])
            return instance

        return one
    if type(reader) is not ModelCursorWrapper:
        return None
    constructors = reader._constructor_list
    if not all(is_model and plain_model(model) for _, model, is_model in constructors):
        return None
    models = dict((key, model) for key, model, _ in constructors)
    spec = [(key, column, convert) for _, key, column, convert in reader._row_spec]
    if not all(plain_field(models.get(key, reader.model), column) for key, column, _ in spec):
        return None
    joins = []
    for src, attr, dest, is_dict, is_outer, is_fk in reader.src_to_dest:
        if is_dict or not is_fk or not plain_field(models[src], attr):
            return None
        field = models[src]._meta.fields[attr]
        if type(vars(models[dest]).get(field.rel_field.name)) is not FieldAccessor:
            return None  # the joined row's key is read as a plain value below
        joins.append(
            (src, attr, dest, is_outer, field.rel_model, field.rel_field.name, reader._dest_reachable.get(dest))
        )
    root = reader.model

    def joined(row):
        objects = {key: blank(model) for key, model in models.items()}
        default = objects[root]
        set_keys = set()
        for (key, column, convert), value in zip(spec, row, strict=True):
            if value is not None:
                set_keys.add(key)
            objects.get(key, default).__data__[column] = value if convert is None else convert(value)
        for src, attr, dest, is_outer, rel_model, rel_name, reachable in joins:
            instance, other = objects[src], objects[dest]
            if dest not in set_keys and not (reachable and reachable & set_keys):
                if not is_outer:
                    continue
                other = None
            if src not in set_keys and dest not in set_keys and is_outer:
                continue
            if other is None:
                instance.__rel__[attr] = None  # a verified-absent row, the id kept
            elif isinstance(other, rel_model):
                instance.__data__[attr] = other.__data__.get(rel_name)
                instance.__rel__[attr] = other
            else:
                setattr(instance, attr, other)
                instance._dirty.discard(attr)
        return default

    return joined


class Slot:
    """Where a Prepared statement's value `name` goes."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name


@functools.cache
def slot_aware(context_class):
    """The database's SQL context, taking each Slot as a parameter and noting the converter that
    its value is to go through."""

    class SlotAware(context_class):
        def __init__(self, **options):
            super().__init__(**options)
            self.converters = []

        def value(self, value, converter=None, add_param=True):
            if isinstance(value, Slot):
                self.converters.append((self.state.converter if converter is None else converter) or None)
                converter = False
            return super().value(value, converter, add_param)

    return SlotAware


def utcnow():
    """Naive UTC, whole seconds: what every timestamp column stores."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None, microsecond=0)


def connect(url):
    """Bind the models to the database at `url` (sqlite:///path or postgresql://...); already bound
    to it, they stay as they are (a new binding would strand the transactions under way)."""
    if db.obj is not None and db.obj.url == url:
        return db.obj
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
    database.url = url
    db.initialize(database)
    return database


def on_sqlite():
    return isinstance(db.obj, SqliteDatabase)


@contextlib.contextmanager
def write_txn():
    """A transaction that may read then write without a lock upgrade failing.

    SQLite upgrades a deferred read lock to a write lock outside the busy timeout, so it
    must take the write lock up front; PostgreSQL's row locks need nothing special. Inside
    another transaction it is part of that one (no savepoint: nothing goes on after an error).
    """
    if db.in_transaction():
        yield
    elif on_sqlite():
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
