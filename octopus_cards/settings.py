"""Settings, read once from the environment (contract section 14)."""

import dataclasses
import ipaddress
import json
import os
import re
import secrets
import urllib.parse
from decimal import Decimal
from pathlib import Path

from octopus_cards.models.suppliers import SUPPLIERS


class SettingsError(ValueError):
    """A setting has a value the server cannot run with."""


MIN_KEY_BYTES = 32

# Requests per rolling minute, by endpoint class (contract 10.1). "default" is the shared
# bucket of every other Bearer endpoint.
RATE_LIMIT_PROFILES = {
    "sandbox": {
        "login": 30,
        "refresh": 30,
        "orders": 120,
        "charges": 300,
        "topup_orders": 120,
        "topup_charges": 300,
        "esim_orders": 120,
        "esim_charges": 300,
        "default": 600,
    },
    "production": {
        "login": 10,
        "refresh": 20,
        "orders": 60,
        "charges": 120,
        "topup_orders": 60,
        "topup_charges": 120,
        "esim_orders": 60,
        "esim_charges": 120,
        "default": 300,
    },
    "off": {},
}
RATE_LIMIT_CLASSES = tuple(RATE_LIMIT_PROFILES["sandbox"])


@dataclasses.dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///octopus.db"
    # Secrets stay out of repr(), so settings can never leak them into a log line.
    jwt_keys: dict = dataclasses.field(default_factory=dict, repr=False)
    jwt_active_kid: str = ""
    access_token_ttl: int = 3600
    refresh_token_ttl: int = 604800
    jwt_leeway: int = 0
    secret_pepper: bytes = dataclasses.field(default=b"", repr=False)
    trusted_proxies: tuple = ()
    rate_limits: dict = dataclasses.field(default_factory=lambda: dict(RATE_LIMIT_PROFILES["sandbox"]))
    max_body_bytes: int = 1024 * 1024
    bootstrap_client: tuple = dataclasses.field(default=(), repr=False)
    bootstrap_wallets: tuple = ()
    catalog: str = ""
    supplier: str = "mock"
    voucher_sync_deadline: float = 10.0
    fulfilment_delay: float = 0.0
    esim_sync_deadline: float = 60.0
    fulfilment_retry_schedule: tuple = (1.0, 5.0, 30.0, 120.0, 600.0)
    job_lease: int = 30
    webhook_timeout: float = 10.0
    webhook_allow_http: bool = False
    webhook_allowed_networks: tuple = ()
    webhook_retry_schedule: tuple = (30.0, 120.0, 600.0, 3600.0, 21600.0)
    smtp_url: str = dataclasses.field(default="", repr=False)  # may carry a password
    mail_from: str = "octopus-cards@localhost"
    background: bool = True
    prune_interval: int = 3600
    reference_cache_ttl: int = 60
    key_file: str = ""
    validate_responses: bool = False
    swagger_ui: bool = True
    worker_cpus: tuple = ()

    @classmethod
    def from_env(cls, environ=None):
        env = os.environ if environ is None else environ
        database_url = env.get("OCTOPUS_DATABASE_URL") or cls.database_url
        key_file = env.get("OCTOPUS_KEY_FILE") or default_key_file(database_url)
        jwt_keys = parse_jwt_keys(env.get("OCTOPUS_JWT_KEYS", ""))
        pepper = env.get("OCTOPUS_SECRET_PEPPER", "").encode()
        if pepper and len(pepper) < MIN_KEY_BYTES:
            raise SettingsError(f"OCTOPUS_SECRET_PEPPER must be at least {MIN_KEY_BYTES} bytes")
        if not jwt_keys or not pepper:
            generated = load_or_create_key_file(key_file)
            jwt_keys = jwt_keys or {generated["kid"]: generated["jwt_secret"].encode()}
            pepper = pepper or generated["pepper"].encode()
        active_kid = env.get("OCTOPUS_JWT_ACTIVE_KID") or next(iter(jwt_keys))
        if active_kid not in jwt_keys:
            raise SettingsError("OCTOPUS_JWT_ACTIVE_KID names no key of OCTOPUS_JWT_KEYS")
        leeway = parse_int(env, "OCTOPUS_JWT_LEEWAY", cls.jwt_leeway, 0, 30)
        return cls(
            database_url=database_url,
            jwt_keys=jwt_keys,
            jwt_active_kid=active_kid,
            access_token_ttl=parse_int(env, "OCTOPUS_ACCESS_TOKEN_TTL", cls.access_token_ttl, 1),
            refresh_token_ttl=parse_int(env, "OCTOPUS_REFRESH_TOKEN_TTL", cls.refresh_token_ttl, 1),
            jwt_leeway=leeway,
            secret_pepper=pepper,
            trusted_proxies=parse_networks(env, "OCTOPUS_TRUSTED_PROXIES"),
            rate_limits=parse_rate_limits(env),
            max_body_bytes=parse_int(env, "OCTOPUS_MAX_BODY_BYTES", cls.max_body_bytes, 1024),
            bootstrap_client=parse_bootstrap_client(env.get("OCTOPUS_BOOTSTRAP_CLIENT", "")),
            bootstrap_wallets=parse_bootstrap_wallets(env),
            catalog=parse_catalog(env.get("OCTOPUS_CATALOG", "")),
            supplier=parse_supplier(env.get("OCTOPUS_SUPPLIER", "")),
            voucher_sync_deadline=parse_seconds(env, "OCTOPUS_VOUCHER_SYNC_DEADLINE", cls.voucher_sync_deadline),
            fulfilment_delay=parse_seconds(env, "OCTOPUS_FULFILMENT_DELAY", cls.fulfilment_delay),
            esim_sync_deadline=parse_seconds(env, "OCTOPUS_ESIM_SYNC_DEADLINE", cls.esim_sync_deadline),
            fulfilment_retry_schedule=parse_schedule(
                env, "OCTOPUS_FULFILMENT_RETRY_SCHEDULE", cls.fulfilment_retry_schedule
            ),
            job_lease=parse_int(env, "OCTOPUS_JOB_LEASE", cls.job_lease, 1, 86400),
            webhook_timeout=parse_seconds(env, "OCTOPUS_WEBHOOK_TIMEOUT", cls.webhook_timeout),
            webhook_allow_http=parse_bool(env, "OCTOPUS_WEBHOOK_ALLOW_HTTP", cls.webhook_allow_http),
            webhook_allowed_networks=parse_networks(env, "OCTOPUS_WEBHOOK_ALLOWED_NETWORKS"),
            webhook_retry_schedule=parse_schedule(env, "OCTOPUS_WEBHOOK_RETRY_SCHEDULE", cls.webhook_retry_schedule),
            smtp_url=parse_smtp_url(env.get("OCTOPUS_SMTP_URL", "").strip()),
            mail_from=parse_mail_from(env.get("OCTOPUS_MAIL_FROM", "").strip() or cls.mail_from),
            background=parse_bool(env, "OCTOPUS_BACKGROUND", cls.background),
            prune_interval=parse_int(env, "OCTOPUS_PRUNE_INTERVAL", cls.prune_interval, 0),
            reference_cache_ttl=parse_int(env, "OCTOPUS_REFERENCE_CACHE_TTL", cls.reference_cache_ttl, 0, 86400),
            key_file=key_file,
            validate_responses=parse_bool(env, "OCTOPUS_VALIDATE_RESPONSES", cls.validate_responses),
            swagger_ui=parse_bool(env, "OCTOPUS_SWAGGER_UI", cls.swagger_ui),
            worker_cpus=parse_cpus(env.get("OCTOPUS_WORKER_CPUS", "")),
        )


def parse_int(env, name, default, minimum, maximum=2**31 - 1):
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number") from None
    if not minimum <= value <= maximum:
        raise SettingsError(f"{name} must be between {minimum} and {maximum}")
    return value


def parse_cpus(raw):
    """`0,2` or `auto` (every CPU this process may use): the CPUs `serve` pins its workers to, and
    `worker` itself."""
    raw = raw.strip()
    if not raw:
        return ()
    if not hasattr(os, "sched_setaffinity"):
        raise SettingsError("OCTOPUS_WORKER_CPUS needs an OS that can pin processes to CPUs (Linux)")
    allowed = sorted(os.sched_getaffinity(0))
    if raw == "auto":
        return tuple(allowed)
    parts = [part.strip() for part in raw.split(",")]
    if not all(part.isdigit() and int(part) in allowed for part in parts):
        raise SettingsError(f"OCTOPUS_WORKER_CPUS must be auto or CPU numbers from {', '.join(map(str, allowed))}")
    return tuple(int(part) for part in parts)


def parse_bool(env, name, default):
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false")


def parse_rate_limits(env):
    profile = env.get("OCTOPUS_RATE_LIMIT_PROFILE") or "sandbox"
    if profile not in RATE_LIMIT_PROFILES:
        raise SettingsError(f"OCTOPUS_RATE_LIMIT_PROFILE must be one of {', '.join(RATE_LIMIT_PROFILES)}")
    limits = dict(RATE_LIMIT_PROFILES[profile])
    for pair in filter(None, (item.strip() for item in env.get("OCTOPUS_RATE_LIMITS", "").split(","))):
        name, _, value = pair.partition("=")
        if name.strip() not in RATE_LIMIT_CLASSES or not value.strip().isdigit() or int(value) < 1:
            raise SettingsError(
                f"OCTOPUS_RATE_LIMITS must be comma-separated class=N pairs, classes: {', '.join(RATE_LIMIT_CLASSES)}"
            )
        limits[name.strip()] = int(value)
    return limits


BOOTSTRAP_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


def parse_bootstrap_client(raw):
    """`api_key:api_secret` of a client that must exist: a sandbox with known credentials."""
    if not raw:
        return ()
    api_key, _, secret = raw.partition(":")
    if not BOOTSTRAP_KEY.fullmatch(api_key) or len(secret) < MIN_KEY_BYTES:
        raise SettingsError(
            "OCTOPUS_BOOTSTRAP_CLIENT must be api_key:api_secret, the key 1-64 of [A-Za-z0-9_-], "
            f"the secret at least {MIN_KEY_BYTES} characters"
        )
    return api_key, secret


BOOTSTRAP_WALLET = re.compile(r"([A-Za-z]{3}):([0-9]{1,14}(?:\.[0-9]{1,4})?)")


def parse_bootstrap_wallets(env):
    """`CUR:AMOUNT` pairs: PREPAID wallets the bootstrap client gets, funded, when it has none in CUR."""
    pairs = [item.strip() for item in env.get("OCTOPUS_BOOTSTRAP_WALLETS", "").split(",") if item.strip()]
    if pairs and not env.get("OCTOPUS_BOOTSTRAP_CLIENT"):
        raise SettingsError("OCTOPUS_BOOTSTRAP_WALLETS needs OCTOPUS_BOOTSTRAP_CLIENT")
    matches = [BOOTSTRAP_WALLET.fullmatch(pair) for pair in pairs]
    if not all(matches) or len({m.group(1).upper() for m in matches}) != len(matches):
        raise SettingsError(
            "OCTOPUS_BOOTSTRAP_WALLETS must be comma-separated CUR:AMOUNT pairs, one per currency, "
            "the amount at most 4 decimals"
        )
    return tuple((m.group(1).upper(), Decimal(m.group(2))) for m in matches)


def parse_seconds(env, name, default):
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise SettingsError(f"{name} must be a number of seconds from 0 to 3600")
    return value


def parse_smtp_url(raw):
    """`smtp://[user:password@]host:port` or `smtps://...`; empty: no receipts are sent."""
    if not raw:
        return ""
    try:
        parts = urllib.parse.urlsplit(raw)
        port_ok = parts.port is None or parts.port > 0  # .port raises ValueError when out of range
    except ValueError:
        parts, port_ok = None, False
    if not (port_ok and parts.scheme in ("smtp", "smtps") and parts.hostname and parts.path in ("", "/")):
        raise SettingsError("OCTOPUS_SMTP_URL must be smtp://[user:password@]host:port or smtps://...")
    return raw


def parse_mail_from(raw):
    if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", raw):
        raise SettingsError("OCTOPUS_MAIL_FROM must be an e-mail address")
    return raw


def parse_schedule(env, name, default):
    """Seconds before each retry, comma-separated, decimals allowed (contract 14, 15.1 item 30)."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        delays = tuple(float(part) for part in raw.split(","))
    except ValueError:
        delays = (-1.0,)
    if not all(0 <= delay <= 86400 for delay in delays):
        raise SettingsError(f"{name} must be comma-separated seconds, each from 0 to 86400")
    return delays


def parse_supplier(raw):
    """The fulfilment supplier by name (contract 12, 14); `mock` is the sandbox's."""
    name = raw.strip() or "mock"
    if name not in SUPPLIERS:
        raise SettingsError(f"OCTOPUS_SUPPLIER must be one of {', '.join(SUPPLIERS)}")
    return name


def parse_catalog(raw):
    """`demo` or the path of a readable catalogue file (contract 17), imported at every `serve` start."""
    raw = raw.strip()
    if raw and raw != "demo" and not Path(raw).is_file():
        raise SettingsError(f"OCTOPUS_CATALOG must be demo or a readable catalogue file, not {raw!r}")
    return raw


def parse_jwt_keys(raw):
    keys = {}
    for pair in filter(None, (item.strip() for item in raw.split(","))):
        kid, sep, secret = pair.partition(":")
        if not sep or not kid or not secret:
            raise SettingsError("OCTOPUS_JWT_KEYS must be comma-separated kid:secret pairs")
        if len(secret.encode()) < MIN_KEY_BYTES:
            raise SettingsError(f"OCTOPUS_JWT_KEYS: the secret of {kid!r} must be at least {MIN_KEY_BYTES} bytes")
        if kid in keys:
            raise SettingsError(f"OCTOPUS_JWT_KEYS names {kid!r} twice")
        keys[kid] = secret.encode()
    return keys


def parse_networks(env, name):
    try:
        return tuple(parse_network(item) for item in (part.strip() for part in env.get(name, "").split(",")) if item)
    except ValueError as exc:
        raise SettingsError(f"{name}: {exc}") from None


def parse_network(text):
    """A CIDR or bare address, IPv4-mapped IPv6 folded to IPv4, host bits cleared."""
    network = ipaddress.ip_network(text.strip(), strict=False)
    if network.version == 6 and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            network = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}", strict=False)
    return network


def default_key_file(database_url):
    """Generated keys live beside a SQLite file, else in the working directory."""
    prefix = "sqlite:///"
    if database_url.startswith(prefix) and database_url[len(prefix) :] not in ("", ":memory:"):
        return database_url[len(prefix) :] + ".keys"
    return "octopus.keys"


def load_or_create_key_file(path):
    """Generate the JWT key and the pepper once; every later start (and every worker) reads them.

    The file is written aside and linked into place, so concurrent starters agree on one winner.
    """
    target = Path(path)
    if not target.exists():
        generated = {
            "kid": "k" + secrets.token_hex(4),
            "jwt_secret": secrets.token_urlsafe(48),
            "pepper": secrets.token_urlsafe(48),
        }
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = target.with_name(f".{target.name}.{secrets.token_hex(6)}")
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(generated, handle)
        try:
            os.link(scratch, target)
        except FileExistsError:
            pass
        finally:
            scratch.unlink()
    try:
        data = json.loads(target.read_text())
        return {name: str(data[name]) for name in ("kid", "jwt_secret", "pepper")}
    except (OSError, ValueError, KeyError, TypeError):
        raise SettingsError(f"the key file {target} is unreadable or damaged") from None
