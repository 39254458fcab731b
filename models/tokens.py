"""Server-side token state (contract 3.2, 3.8, 13.3).

Every issued JWT has a row here; a token is accepted only while its row is live, so logout,
reuse detection and deactivation bite at once, in every worker, and survive restarts.

Logout must not cost more for a client with many tokens, so it raises the client's token
generation (one row) instead of touching every token: a family issued under an older generation
is dead from that commit on. Generations are counters, not timestamps, so a login in the same
second as a logout is cleanly before or after it. The per-token `revoked_at` of contract 13.3
is recorded right after, off the request's path (`record_logout`).
"""

import concurrent.futures
import dataclasses
import datetime

from peewee import JOIN, CharField, DateTimeField, ForeignKeyField, IntegerField, fn

from octopus_cards.models.base import BaseModel, Prepared, db, on_sqlite, utcnow, write_txn
from octopus_cards.models.clients import Client, ClientFeature, ClientIpAllow


class TokenFamily(BaseModel):
    """The tokens of one login and of every refresh descending from it."""

    client = ForeignKeyField(Client, backref="token_families", on_delete="CASCADE")
    created_at = DateTimeField(default=utcnow)
    revoked_at = DateTimeField(null=True)
    generation = IntegerField(default=0)  # the client's token_generation at login

    @classmethod
    def lock(cls, family_id):
        """Every writer takes the family row before its tokens, so writers never deadlock.

        (SQLite's write_txn already holds the whole database.)
        """
        if not on_sqlite():
            LOCK_FAMILY.execute(family=family_id)


@dataclasses.dataclass(frozen=True)
class TokenState:
    """What the bearer and refresh checks need, read in one query."""

    client_id: int
    family_id: int
    token_use: str
    revoked: bool
    used: bool
    client_active: bool
    networks: tuple
    features: frozenset

    @property
    def live(self):
        return self.client_active and not self.revoked and not self.used

    def issued_as(self, verified):
        """The record agrees with what the verified JWT claims: same use, same client."""
        return self.token_use == verified.token_use and self.client_id == verified.client_id


class Token(BaseModel):
    jti = CharField(primary_key=True)
    client = ForeignKeyField(Client, backref="tokens", index=True, on_delete="CASCADE")
    family = ForeignKeyField(TokenFamily, backref="tokens", index=True, on_delete="CASCADE")
    token_use = CharField()
    parent_jti = CharField(null=True)
    issued_at = DateTimeField()
    expires_at = DateTimeField(index=True)
    used_at = DateTimeField(null=True)
    revoked_at = DateTimeField(null=True)

    @classmethod
    def state(cls, jti):
        """The token's record with its client's status, allowlist and features, or None if unknown.

        This runs on every authenticated request: its SQL is built once per database.
        """
        rows = TOKEN_STATE.execute(jti=jti).fetchall()
        if not rows:
            return None
        client_id, family_id, token_use, revoked_at, used_at, generation, current, active, _, _ = rows[0]
        return TokenState(
            client_id=client_id,
            family_id=family_id,
            token_use=token_use,
            revoked=revoked_at is not None or generation != current,
            used=used_at is not None,
            client_active=bool(active),
            networks=tuple(sorted({row[8] for row in rows if row[8] is not None})),
            features=frozenset(row[9] for row in rows if row[9] is not None),
        )

    @classmethod
    def record_login(cls, client_id, pair):
        """A new family holding the login's access and refresh token."""
        with write_txn():
            family_id = NEW_FAMILY.execute_returning_id(client=client_id, created_at=utcnow())
            cls.record_pair(client_id, family_id, pair, parent_jti=None)

    @classmethod
    def record_pair(cls, client_id, family_id, pair, parent_jti):
        """The access and refresh token issued together, in their family."""
        values = {}
        for row, issued in enumerate(pair):
            values.update(
                {
                    f"jti{row}": issued.jti,
                    f"client{row}": client_id,
                    f"family{row}": family_id,
                    f"token_use{row}": issued.token_use,
                    f"parent_jti{row}": parent_jti,
                    f"issued_at{row}": issued.issued_at,
                    f"expires_at{row}": issued.expires_at,
                }
            )
        INSERT_PAIR.execute(**values)

    @classmethod
    def rotate(cls, refresh_jti, client_id, family_id, pair):
        """Use up a refresh token and record its successor pair, atomically.

        Returns False, after revoking the whole family, when the token was no longer live:
        already used (reuse, or a concurrent refresh that lost) or revoked meanwhile (a logout
        committed after the refresh read the token's state).
        """
        now = utcnow()
        with write_txn():
            TokenFamily.lock(family_id)
            won = USE_REFRESH_TOKEN.execute(used_at=now, jti=refresh_jti, family=family_id).rowcount == 1
            if won:
                cls.record_pair(client_id, family_id, pair, parent_jti=refresh_jti)
            else:
                cls.revoke_family(family_id, now)
        return won

    @classmethod
    def landed_despite_failure(cls, jti):
        """After the connection died during a write: was `jti` recorded all the same?

        A COMMIT can reach the server while its acknowledgement is lost. Asked on a new
        connection, from another thread (peewee's connection state is per thread, and this
        one's is broken); raises again while the database is still unreachable.
        """

        def recorded():
            with db.connection_context():
                return cls.select().where(cls.jti == jti).exists()

        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as one_off:
            return one_off.submit(recorded).result()

    @classmethod
    def revoke_family(cls, family_id, now=None):
        return cls.revoke(now, TokenFamily.id == family_id, cls.family == family_id)

    @classmethod
    def revoke_client(cls, client_id):
        """Logout: every token of the client, in every family, dead on commit; one row written."""
        with write_txn():
            Client.update(token_generation=Client.token_generation + 1).where(Client.id == client_id).execute()

    @classmethod
    def record_logout(cls, client_id):
        """The bookkeeping of contract 13.3 after a logout: `revoked_at` on every family and token
        of the client's older generations (dead already). Covers earlier logouts whose bookkeeping
        was cut short, say by a crash; returns how many tokens it marked."""
        current = Client.select(Client.token_generation).where(Client.id == client_id)
        superseded = (TokenFamily.client == client_id) & (TokenFamily.generation < current)
        tokens = (cls.client == client_id) & cls.family.in_(TokenFamily.select(TokenFamily.id).where(superseded))
        return cls.revoke(None, superseded, tokens)

    @classmethod
    def revoke(cls, now, families, tokens):
        """Mark the families, then their tokens, revoked (that order keeps writers deadlock-free);
        returns how many tokens it revoked."""
        now = now or utcnow()
        with write_txn():
            TokenFamily.update(revoked_at=now).where(families & TokenFamily.revoked_at.is_null()).execute()
            return cls.update(revoked_at=now).where(tokens & cls.revoked_at.is_null()).execute()

    @classmethod
    def prune(cls, grace=datetime.timedelta(days=1)):
        """Forget records of tokens expired for longer than `grace` (contract 13.3), and the
        families left empty. Returns the number of token records removed."""
        cutoff = utcnow() - grace
        with write_txn():
            removed = cls.delete().where(cls.expires_at < cutoff).execute()
            TokenFamily.delete().where(
                ~fn.EXISTS(cls.select(cls.jti).where(cls.family == TokenFamily.id)) & (TokenFamily.created_at < cutoff)
            ).execute()
        return removed


TOKEN_STATE = Prepared(
    lambda slot: (
        Token.select(
            Token.client,
            Token.family,
            Token.token_use,
            Token.revoked_at,
            Token.used_at,
            TokenFamily.generation,
            Client.token_generation,
            Client.is_active,
            ClientIpAllow.cidr,
            ClientFeature.feature,
        )
        .join(Client)
        .join_from(Token, TokenFamily)
        .join_from(Client, ClientIpAllow, JOIN.LEFT_OUTER)
        .join_from(Client, ClientFeature, JOIN.LEFT_OUTER)
        .where(Token.jti == slot("jti"))
    )
)

LOCK_FAMILY = Prepared(
    lambda slot: TokenFamily.select(TokenFamily.id).where(TokenFamily.id == slot("family")).for_update()
)

# The compare-and-set of rotation: of concurrent refreshes of one token, exactly one matches,
# and none once a logout has superseded the token's family.
USE_REFRESH_TOKEN = Prepared(
    lambda slot: Token.update(used_at=slot("used_at")).where(
        (Token.jti == slot("jti"))
        & Token.used_at.is_null()
        & Token.revoked_at.is_null()
        & Token.family.in_(
            TokenFamily.select(TokenFamily.id)
            .join(Client)
            .where((TokenFamily.id == slot("family")) & (TokenFamily.generation == Client.token_generation))
        )
    )
)

# Read in the INSERT itself, so a login is wholly before or wholly after a concurrent logout.
NEW_FAMILY = Prepared(
    lambda slot: TokenFamily.insert(
        client=slot("client"),
        created_at=slot("created_at"),
        generation=Client.select(Client.token_generation).where(Client.id == slot("client")),
    )
)

PAIR_FIELDS = ("jti", "client", "family", "token_use", "parent_jti", "issued_at", "expires_at")
INSERT_PAIR = Prepared(
    lambda slot: Token.insert_many(
        [tuple(slot(f"{name}{row}") for name in PAIR_FIELDS) for row in (0, 1)],
        fields=[getattr(Token, name) for name in PAIR_FIELDS],
    )
)
