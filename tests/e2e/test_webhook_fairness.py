"""A slow receiver holds up only its own deliveries (contract 9.3): one process opens at most 12
of its 16 attempts at once to one endpoint, whatever the backlog. A module of its own, so that no other
server of the suite claims these deliveries meanwhile."""

import secrets
import time

import pytest

from octopus_cards import models
from octopus_cards.models import Client, Delivery, Wallet
from octopus_cards.models.wallets import CREDIT

from support.live_server import LiveServer, cli_json, run_cli
from support.receivers import Silent, WebhookReceiver

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def receiver():
    with WebhookReceiver() as live:
        yield live


def test_a_silent_endpoint_with_more_deliveries_than_places_takes_only_its_share(env, receiver, tmp_path):
    """20 events to a silent endpoint and to a prompt one, on a server whose attempts wait 8 s: the
    silent one holds at most 12 places (not all the lane's 16), and the prompt one gets all 20 while
    the silent one's first attempts are still waiting for their answer."""
    settings = dict(
        env,
        OCTOPUS_BACKGROUND="true",
        OCTOPUS_WEBHOOK_ALLOW_HTTP="true",
        OCTOPUS_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8",
        OCTOPUS_WEBHOOK_TIMEOUT="8",
    )
    with models.db.connection_context():
        client, _ = Client.provision(b"p" * 40, f"fair-{secrets.token_hex(4)}")
        wallet = Wallet.open(client.id, "USD")
    with Silent() as silent, LiveServer(settings, tmp_path / "logs", name="share"):
        hanging = cli_json(settings, "webhook", "add", str(client.id), silent.url("/hang"), "--json")
        cli_json(settings, "webhook", "add", str(client.id), receiver.url("/prompt"), "--json")
        started = time.monotonic()
        with models.db.connection_context():
            for _ in range(20):
                Wallet.post(wallet.id, CREDIT, 10, "Operator credit")
        receiver.wait_for("/prompt", 20, timeout=30)
        assert time.monotonic() - started < 8, "the prompt endpoint waited for the silent one"
        assert 1 <= len(silent.connections) <= 12, f"{len(silent.connections)} attempts at once to one endpoint"
        with models.db.connection_context():
            attempts = {d.attempts for d in Delivery.select().where(Delivery.endpoint == hanging["id"])}
        assert attempts == {0}, "the silent endpoint's attempts ended before the prompt one was served"
        run_cli(settings, "webhook", "disable", str(hanging["id"]))
