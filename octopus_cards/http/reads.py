"""Where a request's database reads run: on the event loop's thread when the database is SQLite,
whose readers never wait for a writer in WAL mode, sparing the request a hand-off to a thread and
back; in a thread otherwise (a PostgreSQL round trip would hold the loop). Writes always go to a
thread, where the queue for SQLite's write lock is."""

import anyio

from octopus_cards.models import db, on_sqlite


def connected(function, *args):
    with db.connection_context():
        return function(*args)


async def read(function, *args):
    """`function(*args)`, which only reads the database, within a connection of its own."""
    if on_sqlite():
        return connected(function, *args)
    return await anyio.to_thread.run_sync(connected, function, *args)
