"""Token state in the database: races, faults and persistence."""

import threading

import peewee
import pytest
from playhouse.test_utils import count_queries

from octopus_cards import models
from octopus_cards.app import create_app
from octopus_cards.http.jwt_codec import TokenCodec
from octopus_cards.models import Token

from support.inprocess import TEST_PEER, bearer


def issue(settings, client_id):
    codec = TokenCodec(settings.jwt_keys, settings.jwt_active_kid, 60, 600)
    pair = codec.issue_pair(client_id)
    with models.db.connection_context():
        Token.record_login(client_id, pair)
    return codec, pair


def test_concurrent_rotations_have_exactly_one_winner(settings, new_client):
    client, _, _ = new_client()
    codec, (_, refresh) = issue(settings, client.id)
    with models.db.connection_context():
        family_id = Token.get_by_id(refresh.jti).family_id
    threads, results = 16, []
    barrier = threading.Barrier(threads)

    def attempt():
        successor = codec.issue_pair(client.id)
        barrier.wait()
        with models.db.connection_context():
            results.append(Token.rotate(refresh.jti, client.id, family_id, successor))

    workers = [threading.Thread(target=attempt) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert sorted(results) == [False] * (threads - 1) + [True]
    with models.db.connection_context():
        # The losers were reuse: the whole family, the winner's pair included, is revoked.
        assert not Token.select().where((Token.family == family_id) & Token.revoked_at.is_null()).exists()


@pytest.mark.parametrize(
    "failure, status, message",
    [
        (peewee.IntegrityError("constraint failed"), 500, "Internal server error"),
        (peewee.OperationalError("server closed the connection unexpectedly"), 503, "Service temporarily unavailable"),
    ],
)
def test_a_database_error_during_rotation_is_not_reuse(api, new_client, login, monkeypatch, failure, status, message):
    _, key, secret = new_client()
    tokens = login(key, secret)

    def broken_insert(*args, **kwargs):
        raise failure

    monkeypatch.setattr(Token, "record_pair", classmethod(broken_insert))
    response = api.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert response.status_code == status
    assert response.json()["error"]["message"] == message
    monkeypatch.undo()
    # Nothing was half-done: the token was not used up and its family was not revoked.
    retry = api.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert retry.status_code == 200
    assert api.get("/api/v1/countries", headers=bearer(tokens["access_token"])).status_code == 200


def test_state_survives_a_new_app_on_the_same_database(settings, new_client, login, api):
    _, key, secret = new_client()
    kept, revoked = login(key, secret), None
    _, other_key, other_secret = new_client()
    revoked = login(other_key, other_secret)
    assert api.post("/auth/logout", headers=bearer(revoked["access_token"])).status_code == 200
    with create_app(settings).test_client(client=TEST_PEER) as restarted:
        assert restarted.get("/api/v1/countries", headers=bearer(kept["access_token"])).status_code == 200
        assert restarted.get("/api/v1/countries", headers=bearer(revoked["access_token"])).status_code == 401


@pytest.mark.parametrize("outstanding", [10, 200])
def test_logout_is_one_statement_whatever_the_number_of_tokens(settings, new_client, outstanding):
    client, _, _ = new_client()
    pairs = [issue(settings, client.id)[1] for _ in range(outstanding // 2)]
    with models.db.connection_context(), count_queries() as counter:
        Token.revoke_client(client.id)
    assert counter.count == 1
    with models.db.connection_context():
        assert not any(Token.state(token.jti).live for pair in pairs for token in pair)


def test_logout_bookkeeping_marks_the_older_generations_only(settings, new_client):
    client, _, _ = new_client()
    before = [issue(settings, client.id)[1] for _ in range(3)]
    with models.db.connection_context():
        Token.revoke_client(client.id)
    _, after = issue(settings, client.id)  # a login after the logout, before its bookkeeping
    with models.db.connection_context():
        assert Token.record_logout(client.id) == 6
        marked = Token.select().where((Token.client == client.id) & Token.revoked_at.is_null(False))
        revoked = {row.jti for row in marked}
        assert revoked == {token.jti for pair in before for token in pair}
        assert all(Token.state(token.jti).live for token in after)
        assert Token.record_logout(client.id) == 0


def test_a_logout_between_reading_and_rotating_wins(settings, new_client):
    client, _, _ = new_client()
    codec, (_, refresh) = issue(settings, client.id)
    with models.db.connection_context():
        state = Token.state(refresh.jti)
        assert state.live
        Token.revoke_client(client.id)
        assert not Token.rotate(refresh.jti, client.id, state.family_id, codec.issue_pair(client.id))
        assert not Token.select().where((Token.client == client.id) & Token.used_at.is_null(False)).exists()


def test_token_state_is_one_query(settings, new_client):
    client, _, _ = new_client(networks=["203.0.113.0/24", "2001:db8::/32"])
    _, (access, _) = issue(settings, client.id)
    with models.db.connection_context(), count_queries() as counter:
        state = Token.state(access.jti)
    assert counter.count == 1
    assert state.live and state.client_id == client.id
    assert sorted(state.networks) == ["2001:db8::/32", "203.0.113.0/24"]
