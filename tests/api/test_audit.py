"""Audit: one JSON line per auth event, with request id, operation, client id and source IP; no secrets."""

import json
import logging

import pytest

from octopus_cards import models
from octopus_cards.app import create_app

from support.inprocess import TEST_PEER, bearer, make_settings


@pytest.fixture
def audit_log(caplog):
    caplog.set_level(logging.INFO, logger="octopus_cards.audit")

    def events():
        return [json.loads(r.getMessage()) for r in caplog.records if r.name == "octopus_cards.audit"]

    return events


def test_every_auth_event_is_one_json_line_without_secrets(migrated, new_client, audit_log, caplog):
    app = create_app(make_settings(migrated, OCTOPUS_RATE_LIMIT_PROFILE="sandbox", OCTOPUS_RATE_LIMITS="login=3"))
    client, key, secret = new_client()
    with app.test_client(client=TEST_PEER) as api:
        api.post("/auth/login", json={"username": key, "password": "wrong-" + secret})
        tokens = api.post(
            "/auth/login", json={"username": key, "password": secret}, headers={"X-Request-Id": "audit-1"}
        ).json()["data"]
        rotated = api.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).json()["data"]
        api.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})  # reuse
        fresh = api.post("/auth/login", json={"username": key, "password": secret}).json()["data"]
        api.post("/auth/logout", headers=bearer(fresh["access_token"]))
        api.post("/auth/login", json={"username": key, "password": secret})  # 4th: rate limited
        with models.db.connection_context():
            client.allow_network("192.0.2.0/24")
        other = new_client()
        with models.db.connection_context():
            other[0].allow_network("192.0.2.0/24")
    with app.test_client(client=("198.51.100.77", 5000)) as outsider:
        outsider.post("/auth/login", json={"username": other[1], "password": other[2]})  # ip denied
    events = audit_log()
    assert [e["event"] for e in events] == [
        "login.failure",
        "login.success",
        "refresh.success",
        "refresh.reuse_detected",
        "refresh.failure",
        "login.success",
        "logout",
        "rate_limited",
        "ip.denied",
    ]
    assert events[1]["request_id"] == "audit-1"
    assert [e["operation"] for e in events] == [
        "auth.login",
        "auth.login",
        "auth.refresh",
        "auth.refresh",
        "auth.refresh",
        "auth.login",
        "auth.logout",
        "auth.login",
        "auth.login",
    ]
    assert all(e["ip"] == TEST_PEER[0] and e["request_id"] for e in events[:-1])
    assert events[-1]["ip"] == "198.51.100.77"
    assert [e["client_id"] for e in events][1:7] == [client.id] * 6
    assert events[-1]["client_id"] == other[0].id
    everything = caplog.text + "".join(r.getMessage() for r in caplog.records)
    for secret_value in (
        secret,
        tokens["access_token"],
        tokens["refresh_token"],
        rotated["refresh_token"],
        fresh["access_token"],
        other[2],
    ):
        assert secret_value not in everything
