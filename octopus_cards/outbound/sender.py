"""One webhook attempt over HTTP (contract 9.5, 9.6): resolve the host once, check every address,
connect only to a checked one, POST the body as given, and read a bounded answer, all within one
deadline.

httpcore (httpx's transport) does the HTTP, with a network backend of ours that never resolves a
name: it connects to the addresses the current attempt checked. Requests keep the registered host
in their URL, so the Host header, TLS SNI and certificate check use the real name, and pooled
connections are keyed by that name (never shared between names that happen to share an address)."""

import concurrent.futures
import contextvars
import os
import threading
import time
from dataclasses import dataclass

import httpcore

from octopus_cards.outbound.addresses import (
    AddressNotAllowed,
    IPAddress,
    IPNetwork,
    UnsafeUrl,
    WebhookUrl,
    parse_webhook_url,
    resolve_allowed,
)

TIMEOUT = "timeout"
CONNECTION = "connection"
ADDRESS_NOT_ALLOWED = "address not allowed"

MAX_RESPONSE_READ = 64 * 1024
RESPONSE_START_KEPT = 1024
KEEPALIVE_SECONDS = 5.0


@dataclass(frozen=True)
class Attempt:
    """The outcome of one attempt, as the delivery log records it (contract 9.6)."""

    http_status: int | None
    duration_ms: int
    error: str | None  # None on 2xx; else timeout, connection, address not allowed or "http <status>"
    response_start: str = ""  # the first 1 KiB of the response body

    @property
    def ok(self) -> bool:
        return self.http_status is not None and 200 <= self.http_status < 300


@dataclass(frozen=True)
class _Pin:
    """What the attempt running in this thread (or task) may connect to, and until when."""

    host: str
    addresses: tuple[IPAddress, ...]
    deadline: float  # time.monotonic()


# httpcore calls the network backend without the request, so the attempt's checked addresses and
# deadline reach it this way; each thread has its own value, so concurrent attempts never mix.
_PIN: contextvars.ContextVar[_Pin] = contextvars.ContextVar("octopus_webhook_pin")


def _time_left(timeout_error: type[Exception]) -> float:
    """Seconds to the current attempt's deadline; timeout_error once it has passed."""
    left = _PIN.get().deadline - time.monotonic()
    if left <= 0:
        raise timeout_error("the webhook attempt's deadline has passed")
    return left


class _PinnedBackend(httpcore.SyncBackend):
    """Connects to the current attempt's checked addresses, never to a name: no second lookup, so a
    DNS answer that changes after the check (rebinding) cannot move the connection."""

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        pin = _PIN.get()
        if host != pin.host:
            raise httpcore.ConnectError(f"{host} was not checked by this attempt")
        failure = httpcore.ConnectError(f"{host} has no checked address")
        for address in pin.addresses:
            try:
                stream = super().connect_tcp(
                    str(address),
                    port,
                    timeout=_time_left(httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectTimeout:
                raise
            except httpcore.ConnectError as exc:
                failure = exc
            else:
                return _DeadlineStream(stream)
        raise failure


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every socket operation ends by the current attempt's deadline: httpcore's
    own timeouts apply to each read or write, so a receiver trickling bytes could outlast them."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes, timeout=None):
        return self._stream.read(max_bytes, _time_left(httpcore.ReadTimeout))

    def write(self, buffer, timeout=None):
        self._stream.write(buffer, _time_left(httpcore.WriteTimeout))

    def close(self):
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        tls = self._stream.start_tls(ssl_context, server_hostname, _time_left(httpcore.ConnectTimeout))
        return _DeadlineStream(tls)

    def get_extra_info(self, info):
        return self._stream.get_extra_info(info)


class Sender:
    """Sends attempts through one keep-alive connection pool and one resolver pool. Thread-safe and
    meant to be shared by all of a process's delivery threads: concurrency is theirs (one connection
    per attempt in flight), and a receiver's kept-alive connection saves each later attempt a TCP and
    TLS handshake."""

    def __init__(self, *, ssl_context=None, resolver_threads: int = 64, keepalive_connections: int = 100) -> None:
        self._pool = httpcore.ConnectionPool(
            # httpcore would otherwise build (and load the CA bundle into) a context per connection.
            ssl_context=ssl_context or httpcore.default_ssl_context(),
            max_connections=None,
            max_keepalive_connections=keepalive_connections,
            keepalive_expiry=KEEPALIVE_SECONDS,
            network_backend=_PinnedBackend(),
        )
        self._resolver = concurrent.futures.ThreadPoolExecutor(
            max_workers=resolver_threads, thread_name_prefix="webhook-resolve"
        )

    def send(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        timeout: float,
        allowed_networks: tuple[IPNetwork, ...] = (),
        allow_http: bool = False,
    ) -> Attempt:
        """POST body with headers (plus Host and Content-Length) to url, within timeout seconds in
        all (resolution, connection, TLS, request and response). Never raises for the network or
        the receiver: every failure is an Attempt with its error class. A URL that is no longer
        acceptable (say http:// after OCTOPUS_WEBHOOK_ALLOW_HTTP was turned off) is refused like an
        address."""
        started = time.monotonic()
        deadline = started + timeout
        try:
            webhook_url = parse_webhook_url(url, allow_http=allow_http)
            addresses = self._resolve(webhook_url, tuple(allowed_networks), deadline)
            status, response_start = self._post(webhook_url, addresses, body, headers, deadline)
        except (UnsafeUrl, AddressNotAllowed):
            return _failed(ADDRESS_NOT_ALLOWED, started)
        except (TimeoutError, httpcore.TimeoutException):
            return _failed(TIMEOUT, started)
        except (OSError, httpcore.NetworkError, httpcore.ProtocolError):
            return _failed(CONNECTION, started)
        return Attempt(
            http_status=status,
            duration_ms=_ms_since(started),
            error=None if 200 <= status < 300 else f"http {status}",
            response_start=response_start.decode("utf-8", errors="replace"),
        )

    def close(self) -> None:
        """Closes the pooled connections; a lookup still running is left to finish on its own."""
        self._pool.close()
        self._resolver.shutdown(wait=False, cancel_futures=True)

    def _resolve(self, webhook_url: WebhookUrl, allowed_networks, deadline: float) -> tuple[IPAddress, ...]:
        """The host's checked addresses. getaddrinfo cannot be given a timeout, so a name is looked
        up in the resolver pool: a stalled name server costs the attempt its deadline, not its
        thread. An address needs no name server: it is checked in the attempt's thread."""
        if webhook_url.is_address:
            return resolve_allowed(webhook_url.host, webhook_url.port, allowed_networks)
        lookup = self._resolver.submit(resolve_allowed, webhook_url.host, webhook_url.port, allowed_networks)
        try:
            return lookup.result(timeout=max(deadline - time.monotonic(), 0))
        except TimeoutError:
            lookup.cancel()
            raise

    def _post(self, webhook_url: WebhookUrl, addresses, body: bytes, headers, deadline: float) -> tuple[int, bytes]:
        """The receiver's status and the start of its body, over a connection to a checked address
        (a kept-alive one was checked when it was opened)."""
        url = httpcore.URL(
            scheme=webhook_url.scheme, host=webhook_url.host, port=webhook_url.port, target=webhook_url.target
        )
        request_headers = [(b"Host", webhook_url.host_header.encode("ascii"))]
        request_headers += [(name.encode("ascii"), value.encode("ascii")) for name, value in headers.items()]
        pin = _PIN.set(_Pin(webhook_url.host, addresses, deadline))
        try:
            with self._pool.stream("POST", url, headers=request_headers, content=body) as response:
                return response.status, _read_start(response)
        finally:
            _PIN.reset(pin)


def _read_start(response: httpcore.Response) -> bytes:
    """The first RESPONSE_START_KEPT bytes of the body, reading no further once MAX_RESPONSE_READ
    bytes have arrived (closing the connection instead of draining it)."""
    kept = bytearray()
    received = 0
    try:
        for chunk in response.iter_stream():
            kept += chunk[: RESPONSE_START_KEPT - len(kept)]
            received += len(chunk)
            if received >= MAX_RESPONSE_READ:
                break
    except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError):
        # The status has arrived: the receiver has answered, whatever becomes of the rest of its body.
        pass
    return bytes(kept)


def _failed(error: str, started: float) -> Attempt:
    return Attempt(http_status=None, duration_ms=_ms_since(started), error=error)


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


_shared: Sender | None = None
_shared_lock = threading.Lock()


def shared_sender() -> Sender:
    """The process's Sender, made on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Sender()
        return _shared


def _forget_shared_sender() -> None:
    """A forked child must not use its parent's pooled sockets and resolver threads."""
    global _shared, _shared_lock
    _shared = None
    _shared_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_shared_sender)


def send(
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
    allowed_networks: tuple[IPNetwork, ...] = (),
    allow_http: bool = False,
) -> Attempt:
    """Sender.send on the process's shared Sender."""
    return shared_sender().send(url, body, headers, timeout, allowed_networks, allow_http)
