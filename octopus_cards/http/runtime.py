"""What the handlers, the HTTP pipeline and the background work need from the app, built once at
start-up: the settings, the token codec, each operation's policy from the OpenAPI document, the
supplier and the webhook sender."""

import dataclasses
import functools

from octopus_cards.http.jwt_codec import TokenCodec
from octopus_cards.models import FEATURES
from octopus_cards.models.suppliers import supplier_named
from octopus_cards.outbound.mailer import mailer_for
from octopus_cards.outbound.sender import send
from octopus_cards.settings import RATE_LIMIT_CLASSES, Settings

# Where RequestContext puts the Runtime in each request's scope.
SCOPE_KEY = "octopus.runtime"
# Where the body validator leaves the body it parsed, with its numbers as Decimals.
EXACT_BODY = "octopus.body"

FEATURE = "x-octopus-feature"
RATE_LIMIT = "x-octopus-rate-limit"
HTTP_METHODS = ("get", "head", "post", "put", "patch", "delete")


class PolicyError(ValueError):
    """The OpenAPI document declares a policy the server cannot enforce."""


@dataclasses.dataclass(frozen=True)
class Policy:
    """An operation's feature gate (contract 1.10, check 10) and rate-limit class (10.1, check 5)."""

    feature: str | None = None
    rate_limit: str | None = None


def policies(spec):
    """Each operation's Policy, by operationId. Every Bearer operation must name its rate-limit class."""
    found = {}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            where = f"{method.upper()} {path}"
            policy = Policy(operation.get(FEATURE), operation.get(RATE_LIMIT))
            if policy.feature not in (None, *FEATURES):
                raise PolicyError(f"{where}: {FEATURE} must be one of {', '.join(FEATURES)}")
            if policy.rate_limit not in (None, *RATE_LIMIT_CLASSES):
                raise PolicyError(f"{where}: {RATE_LIMIT} must be one of {', '.join(RATE_LIMIT_CLASSES)}")
            if policy.rate_limit is None and operation.get("security", spec.get("security")):
                raise PolicyError(f"{where}: a Bearer operation must declare {RATE_LIMIT}")
            found[operation["operationId"]] = policy
    return found


@dataclasses.dataclass(frozen=True)
class Runtime:
    settings: Settings
    codec: TokenCodec
    policies: dict
    supplier: object  # the fulfilment supplier (models/suppliers.py), chosen by OCTOPUS_SUPPLIER
    send_webhook: object  # send(url, body, headers) -> the attempt's outcome (octopus_cards/outbound)
    mail: object  # mail(recipient, subject, text), or None without an SMTP server

    @classmethod
    def build(cls, settings, spec):
        codec = TokenCodec(
            settings.jwt_keys,
            settings.jwt_active_kid,
            settings.access_token_ttl,
            settings.refresh_token_ttl,
            settings.jwt_leeway,
        )
        send_webhook = functools.partial(
            send,
            timeout=settings.webhook_timeout,
            allowed_networks=settings.webhook_allowed_networks,
            allow_http=settings.webhook_allow_http,
        )
        return cls(
            settings,
            codec,
            policies(spec),
            supplier_named(settings.supplier, settings.fulfilment_delay),
            send_webhook,
            mailer_for(settings),
        )
