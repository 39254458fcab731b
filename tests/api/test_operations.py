"""Operators' endpoints: liveness, readiness, Prometheus metrics, and the JSON access log."""

import json
import logging

import peewee

from octopus_cards.models import db

from support.inprocess import bearer


def test_health_is_public(api):
    response = api.get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert response.headers["x-request-id"]


def test_ready_checks_the_database(api, monkeypatch):
    assert api.get("/ready").json() == {"status": "ready"}

    def unreachable(*args, **kwargs):
        raise peewee.OperationalError("could not connect to server")

    monkeypatch.setattr(db.obj, "execute_sql", unreachable)
    response = api.get("/ready")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json() == {
        "error": {
            "name": "ServiceUnavailableError",
            "code": "SERVICE_UNAVAILABLE",
            "message": "Service temporarily unavailable",
        }
    }


def test_metrics_count_requests_auth_events_and_rate_limits(api, new_client, login):
    _, key, secret = new_client()
    token = login(key, secret)["access_token"]
    api.get("/api/v1/currencies", headers=bearer(token))
    api.post("/auth/login", json={"username": key, "password": "wrong"})
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'octopus_requests_total{operation="reference.list_currencies",status="200"}' in text
    assert 'octopus_requests_total{operation="auth.login",status="401"}' in text
    assert 'octopus_request_duration_seconds_bucket{le="0.005",operation="auth.login"}' in text
    assert 'octopus_auth_events_total{event="login.failure"}' in text
    assert "octopus_rate_limited_total" in text


def test_access_log_is_one_json_line_per_request(api, caplog):
    caplog.set_level(logging.INFO, logger="octopus_cards.access")
    api.get("/api/v1/countries", headers={"X-Request-Id": "access-1", "Authorization": "Bearer nope"})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "octopus_cards.access"]
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == "access-1" and line["status"] == 401 and line["method"] == "GET"
    assert line["path"] == "/api/v1/countries" and line["operation"] == "reference.list_countries"
    assert line["duration_ms"] >= 0 and "nope" not in json.dumps(line)
