"""Database set-up for the benchmark, done by the runner in-process between measurements (never
while a server is being measured): clients, pools of fresh tokens, bulk filler rows.

Tokens are minted with octopus-cards' own TokenCodec and written as login writes them (a family
per access + refresh pair), so every server of the benchmark accepts them. Bulk rows go in with
the driver's fastest path (executemany on SQLite, COPY on PostgreSQL), with explicit ids and the
PostgreSQL sequence moved past them.
"""

import datetime
import io
import random
import secrets

from peewee import SqliteDatabase

from octopus_cards import models
from octopus_cards.http.jwt_codec import TokenCodec
from octopus_cards.models import Client, Token, TokenFamily, db

BATCH = 20_000


def connect(url):
    models.connect(url)


def disconnect():
    if db.obj is None:
        return
    if hasattr(db.obj, "close_all"):
        db.obj.close_all()
    elif not db.is_closed():
        db.close()


def codec_for(settings):
    return TokenCodec(
        settings.jwt_keys,
        settings.jwt_active_kid,
        settings.access_token_ttl,
        settings.refresh_token_ttl,
        settings.jwt_leeway,
    )


def is_sqlite():
    return isinstance(db.obj, SqliteDatabase)


def provision_clients(settings, count, prefix, networks=("127.0.0.0/8",)):
    """`count` new clients; [(client_id, api_key, secret)]."""
    out = []
    with db.connection_context():
        for index in range(count):
            client, secret = Client.provision(settings.secret_pepper, f"{prefix}-{index}", list(networks))
            out.append((client.id, client.api_key, secret))
    return out


def _columns(model, names):
    return [model._meta.fields[name].column_name for name in names]


FAMILY_FIELDS = ("id", "client", "created_at", "revoked_at", "generation")
TOKEN_FIELDS = (
    "jti",
    "client",
    "family",
    "token_use",
    "parent_jti",
    "issued_at",
    "expires_at",
    "used_at",
    "revoked_at",
)


def _text(value):
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return value


def _bulk_insert(model, fields, rows):
    """rows: tuples in `fields` order. Call inside a transaction."""
    table = model._meta.table_name
    columns = _columns(model, fields)
    cursor = db.cursor()
    if is_sqlite():
        marks = ", ".join("?" * len(columns))
        cursor.executemany(
            f'INSERT INTO "{table}" ({", ".join(columns)}) VALUES ({marks})',
            [tuple(_text(v) for v in row) for row in rows],
        )
        return
    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join("\\N" if v is None else str(_text(v)) for v in row))
        buffer.write("\n")
    buffer.seek(0)
    cursor.copy_expert(f'COPY "{table}" ({", ".join(columns)}) FROM STDIN', buffer)


def _generations(client_ids):
    """Each client's current token generation: the one its outstanding families must carry."""
    query = Client.select(Client.id, Client.token_generation).where(Client.id.in_(list(client_ids)))
    return dict(query.tuples())


def _next_family_id():
    table = TokenFamily._meta.table_name
    return (db.execute_sql(f'SELECT COALESCE(MAX(id), 0) FROM "{table}"').fetchone()[0] or 0) + 1


def _bump_sequence():
    if not is_sqlite():
        table = TokenFamily._meta.table_name
        db.execute_sql(f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), (SELECT MAX(id) FROM \"{table}\"))")


def mint_pairs(settings, client_id, count):
    """`count` logins' worth of live tokens for the client: [(access_token, refresh_token)]."""
    codec = codec_for(settings)
    out = []
    with db.connection_context():
        done = 0
        while done < count:
            n = min(BATCH, count - done)
            pairs = [codec.issue_pair(client_id) for _ in range(n)]
            with db.atomic():
                first = _next_family_id()
                now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None, microsecond=0)
                generation = _generations([client_id])[client_id]
                _bulk_insert(
                    TokenFamily, FAMILY_FIELDS, [(first + i, client_id, now, None, generation) for i in range(n)]
                )
                _bulk_insert(
                    Token,
                    TOKEN_FIELDS,
                    [
                        (
                            issued.jti,
                            client_id,
                            first + i,
                            issued.token_use,
                            None,
                            issued.issued_at,
                            issued.expires_at,
                            None,
                            None,
                        )
                        for i, pair in enumerate(pairs)
                        for issued in pair
                    ],
                )
                _bump_sequence()
            out.extend((a.token, r.token) for a, r in pairs)
            done += n
    return out


def fill_tokens(client_ids, rows, live=False, rng=None, analyze=True):
    """`rows` filler token rows (half access, half refresh, a family per pair) spread over
    `client_ids`. Not usable JWTs: they only make the table big. With live=False they look like
    history (issued over the past week, some used, some revoked); live=True: all outstanding."""
    rng = rng or random.Random(7)
    base = datetime.datetime.now(datetime.UTC).replace(tzinfo=None, microsecond=0)
    week = 7 * 86400
    with db.connection_context():
        generations = _generations(client_ids)
        done = 0
        while done < rows:
            pairs = min(BATCH, rows - done) // 2 or 1
            with db.atomic():
                first = _next_family_id()
                families, tokens = [], []
                for i in range(pairs):
                    client_id = client_ids[(done // 2 + i) % len(client_ids)]
                    issued = base - datetime.timedelta(seconds=0 if live else rng.randrange(week))
                    revoked = None if live or rng.random() > 0.3 else issued
                    families.append((first + i, client_id, issued, revoked, generations[client_id]))
                    access_exp = issued + datetime.timedelta(hours=1)
                    refresh_exp = issued + datetime.timedelta(days=7)
                    used = None if live or rng.random() > 0.5 else issued
                    tokens.append(
                        (
                            secrets.token_urlsafe(16),
                            client_id,
                            first + i,
                            "access",
                            None,
                            issued,
                            access_exp,
                            None,
                            revoked,
                        )
                    )
                    tokens.append(
                        (
                            secrets.token_urlsafe(16),
                            client_id,
                            first + i,
                            "refresh",
                            None,
                            issued,
                            refresh_exp,
                            used,
                            revoked,
                        )
                    )
                _bulk_insert(TokenFamily, FAMILY_FIELDS, families)
                _bulk_insert(Token, TOKEN_FIELDS, tokens)
                _bump_sequence()
            done += 2 * pairs
        if analyze:
            db.execute_sql("ANALYZE")


def unrecorded_revocations(client_id):
    """Whether a token of the client is dead by a logout but has no revoked_at yet."""
    with db.connection_context():
        current = Client.select(Client.token_generation).where(Client.id == client_id)
        older = TokenFamily.select(TokenFamily.id).where(
            (TokenFamily.client == client_id) & (TokenFamily.generation < current)
        )
        return Token.select().where(Token.family.in_(older) & Token.revoked_at.is_null()).exists()


def count_tokens():
    with db.connection_context():
        return Token.select().count()
