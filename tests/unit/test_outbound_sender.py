"""Unit: one webhook attempt (contract 9.5, 9.6) against receivers on 127.0.0.1, let through
OCTOPUS_WEBHOOK_ALLOWED_NETWORKS as a receiver on the same machine would be. No Internet needed:
names resolve through a stand-in for getaddrinfo."""

import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from octopus_cards.outbound import sender as sender_module
from octopus_cards.outbound.sender import MAX_RESPONSE_READ, Sender, send

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
BODY = b'{"id":"evt_2F7vTVG3Y8aZrqP1wJhdEkM9oYB","type":"order.delivered","data":{"amount":100.00}}'
HEADERS = {
    "Content-Type": "application/json",
    "User-Agent": "octopusrewards.com/webhook-agent",
    "X-Event-ID": "evt_2F7vTVG3Y8aZrqP1wJhdEkM9oYB",
    "X-Timestamp": "1736942405",
    "X-Signature": "0f" * 32,
}
PATTERN = b"0123456789abcdef" * 1024  # 16 KiB of ASCII, so the kept start decodes as it was sent


@dataclass
class Received:
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    client_port: int


class Receiver:
    """An HTTP/1.1 server on 127.0.0.1 (connections kept alive) that records each request and
    answers it with answer(write, receiver); answers that stall wait on `release`."""

    def __init__(self, answer, tls=None, address=("127.0.0.1", 0)):
        self.requests = []
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(Received(self.path, self.headers.items(), body, self.client_address[1]))
                try:
                    answer(self.wfile.write, receiver)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def log_message(self, *args):
                """Quiet."""

        self.server = ThreadingHTTPServer(address, Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def reply(status, body=b"", *headers):
    """An answer: a complete response with this status, body and extra header lines."""
    head = "".join(f"{line}\r\n" for line in (f"Content-Length: {len(body)}", *headers))

    def answer(write, receiver):
        write(f"HTTP/1.1 {status} Status\r\n{head}\r\n".encode() + body)

    return answer


def stall(write, receiver):
    """Never answers (until the test ends)."""
    receiver.release.wait(10)


def trickle(write, receiver):
    """A status line and headers that never end, one byte every 50 ms: each read returns in time, so
    only a deadline over the whole attempt stops it."""
    for byte in b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"." * 400:
        if receiver.release.wait(0.05):
            return
        write(bytes([byte]))


def endless_body(write, receiver):
    """A chunked 200 whose body never ends (10 MiB, then silence)."""
    write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(640):
        write(b"%x\r\n%s\r\n" % (len(PATTERN), PATTERN))
    receiver.release.wait(10)


@pytest.fixture
def receivers():
    """Starts receivers for a test and stops them after it."""
    started = []

    def start(answer, tls=None, address=("127.0.0.1", 0)):
        started.append(Receiver(answer, tls, address))
        return started[-1]

    yield start
    for receiver in started:
        receiver.close()


@pytest.fixture(scope="module")
def sender():
    """One Sender for the module, as a process shares one (its receivers differ by port, so no test
    reuses another's connections)."""
    sender = Sender(resolver_threads=4)
    yield sender
    sender.close()


@pytest.fixture
def dns(monkeypatch):
    """socket.getaddrinfo with some names answered from a table, one list of addresses per successive
    lookup (the last repeats), everything else as the real one does; records every host asked."""
    real = socket.getaddrinfo
    table = {}
    asked = []

    def getaddrinfo(host, port, *args, **kwargs):
        asked.append(host)
        if host not in table:
            return real(host, port, *args, **kwargs)
        answers = table[host][min(asked.count(host), len(table[host])) - 1]
        if not answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (text, port)) for text in answers]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table, asked


@pytest.fixture
def no_connections(monkeypatch):
    """Fails the test if any TCP connection is attempted."""

    def create_connection(address, *args, **kwargs):
        raise AssertionError(f"connected to {address}")

    monkeypatch.setattr(socket, "create_connection", create_connection)


HOSTILE_URLS = [
    "http://127.0.0.1/",
    "http://127.0.0.53:8080/",
    "http://[::1]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:10.0.0.1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:7f00:1::]/",
    "http://[::127.0.0.1]/",
    "http://[2001::1]/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://0x7f000001/",
    "http://0x7f.1/",
    "http://localhost/",
    "http://[fd00::1]/",
    "http://[fe80::1]/",
    "http://[fec0::1]/",
    "http://[ff02::1]/",
    "http://224.0.0.1/",
    "http://198.18.0.1/",
    "http://192.0.2.1/",
    "https://169.254.169.254/",
    "https://[::ffff:169.254.169.254]/",
]


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_hostile_targets_are_refused_without_a_connection(sender, no_connections, url):
    attempt = sender.send(url, BODY, HEADERS, timeout=2, allow_http=True)
    assert (attempt.error, attempt.http_status, attempt.ok) == ("address not allowed", None, False)


@pytest.mark.parametrize("answers", [["10.1.2.3"], ["93.184.216.34", "169.254.169.254"]])
def test_a_name_resolving_to_an_internal_address_is_refused(sender, dns, no_connections, answers):
    table, _ = dns
    table["hooks.example.com"] = [answers]
    attempt = sender.send("https://hooks.example.com/in", BODY, HEADERS, timeout=2)
    assert attempt.error == "address not allowed"


def test_a_url_no_longer_acceptable_is_refused(sender, no_connections):
    attempt = sender.send("http://hooks.example.com/in", BODY, HEADERS, timeout=2, allow_http=False)
    assert attempt.error == "address not allowed"


def test_a_2xx_delivers_the_exact_body_and_headers(sender, receivers):
    receiver = receivers(reply(204))
    url = f"http://127.0.0.1:{receiver.port}/hooks/octopus?tenant=7"
    attempt = sender.send(url, BODY, HEADERS, timeout=2, allowed_networks=LOOPBACK, allow_http=True)
    assert (attempt.ok, attempt.http_status, attempt.error, attempt.response_start) == (True, 204, None, "")
    assert 0 <= attempt.duration_ms < 2000
    [request] = receiver.requests
    assert request.path == "/hooks/octopus?tenant=7"
    assert request.body == BODY
    expected = [("Host", f"127.0.0.1:{receiver.port}"), *HEADERS.items(), ("Content-Length", str(len(BODY)))]
    assert request.headers == expected


@pytest.mark.parametrize("status", [500, 410, 404, 429, 302, 301, 307])
def test_any_other_status_is_a_failed_attempt_named_by_it(sender, receivers, status):
    receiver = receivers(reply(status, b"receiver says no"))
    url = f"http://127.0.0.1:{receiver.port}/"
    attempt = sender.send(url, BODY, HEADERS, timeout=2, allowed_networks=LOOPBACK, allow_http=True)
    assert (attempt.ok, attempt.http_status, attempt.error) == (False, status, f"http {status}")
    assert attempt.response_start == "receiver says no"


def test_a_redirect_to_an_internal_address_is_not_followed(sender, receivers, dns):
    _, asked = dns
    receiver = receivers(reply(302, b"", "Location: http://169.254.169.254/latest/meta-data/"))
    url = f"http://127.0.0.1:{receiver.port}/"
    attempt = sender.send(url, BODY, HEADERS, timeout=2, allowed_networks=LOOPBACK, allow_http=True)
    assert (attempt.http_status, attempt.error) == (302, "http 302")
    assert len(receiver.requests) == 1
    assert "169.254.169.254" not in asked


def test_a_receiver_that_never_answers_times_out_at_the_deadline(sender, receivers):
    receiver = receivers(stall)
    url = f"http://127.0.0.1:{receiver.port}/"
    attempt = sender.send(url, BODY, HEADERS, timeout=0.3, allowed_networks=LOOPBACK, allow_http=True)
    assert (attempt.error, attempt.http_status) == ("timeout", None)
    assert 280 <= attempt.duration_ms < 1000


def test_a_receiver_trickling_bytes_cannot_outlast_the_deadline(sender, receivers):
    receiver = receivers(trickle)
    url = f"http://127.0.0.1:{receiver.port}/"
    attempt = sender.send(url, BODY, HEADERS, timeout=0.5, allowed_networks=LOOPBACK, allow_http=True)
    assert attempt.error == "timeout"
    assert 480 <= attempt.duration_ms < 1200


def test_a_stalled_lookup_times_out_at_the_deadline(sender, monkeypatch):
    unblock = threading.Event()

    def getaddrinfo(*args, **kwargs):
        unblock.wait(5)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    attempt = sender.send("https://slow-dns.example.com/", BODY, HEADERS, timeout=0.3)
    unblock.set()
    assert attempt.error == "timeout"
    assert attempt.duration_ms < 1000


def test_an_address_is_checked_in_the_attempts_thread_and_a_name_in_the_resolver_pool(
    sender, receivers, dns, monkeypatch
):
    table, _ = dns
    table["hooks.example.com"] = [["127.0.0.1"]]
    receiver = receivers(reply(204))
    threads = []
    real = sender_module.resolve_allowed

    def resolve_allowed(*args):
        threads.append(threading.current_thread())
        return real(*args)

    monkeypatch.setattr(sender_module, "resolve_allowed", resolve_allowed)
    for host in ("127.0.0.1", "hooks.example.com"):
        url = f"http://{host}:{receiver.port}/"
        attempt = sender.send(url, BODY, HEADERS, timeout=2, allowed_networks=LOOPBACK, allow_http=True)
        assert attempt.ok
    assert threads[0] is threading.current_thread() and threads[1] is not threading.current_thread()


def test_a_closed_port_is_a_connection_failure(sender):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    attempt = sender.send(url, BODY, HEADERS, timeout=2, allowed_networks=LOOPBACK, allow_http=True)
    assert (attempt.error, attempt.http_status, attempt.ok) == ("connection", None, False)


def test_an_unknown_name_is_a_connection_failure(sender, dns):
    table, _ = dns
    table["gone.example.com"] = [[]]
    attempt = sender.send("https://gone.example.com/", BODY, HEADERS, timeout=2)
    assert attempt.error == "connection"


def test_an_endless_body_is_cut_off_and_its_start_kept(sender, receivers):
    receiver = receivers(endless_body)
    url = f"http://127.0.0.1:{receiver.port}/"
    attempt = sender.send(url, BODY, HEADERS, timeout=5, allowed_networks=LOOPBACK, allow_http=True)
    assert (attempt.ok, attempt.http_status, attempt.error) == (True, 200, None)
    assert attempt.response_start == PATTERN[:1024].decode()
    assert attempt.duration_ms < 2000, "read the body to its end (or the deadline) instead of stopping"


def test_reading_stops_once_64_kib_have_arrived():
    consumed = []

    class Response:
        def iter_stream(self):
            while True:
                consumed.append(len(PATTERN))
                yield PATTERN

    assert sender_module._read_start(Response()) == PATTERN[:1024]
    assert sum(consumed) == MAX_RESPONSE_READ


def test_the_connection_goes_to_the_checked_address_without_a_second_lookup(sender, receivers, dns):
    table, asked = dns
    receiver = receivers(reply(200, b"ok"))
    # A rebinding name: the first answer passes the check, any later one points inside.
    table["rebind.example.com"] = [["127.0.0.1"], ["10.9.9.9"]]
    url = f"http://rebind.example.com:{receiver.port}/in"
    attempt = sender.send(url, BODY, HEADERS, timeout=2, allowed_networks=LOOPBACK, allow_http=True)
    assert attempt.ok
    assert asked.count("rebind.example.com") == 1
    assert {host for host in asked if host != "rebind.example.com"} <= {"127.0.0.1"}
    assert dict(receiver.requests[0].headers)["Host"] == f"rebind.example.com:{receiver.port}"


def test_every_attempt_resolves_and_a_kept_alive_connection_is_reused(sender, receivers, dns):
    table, asked = dns
    receiver = receivers(reply(200, b"ok"))
    table["hooks.example.com"] = [["127.0.0.1"]]
    url = f"http://hooks.example.com:{receiver.port}/in"
    attempts = [sender.send(url, BODY, HEADERS, 2, LOOPBACK, True) for _ in range(3)]
    assert all(attempt.ok for attempt in attempts)
    assert asked.count("hooks.example.com") == 3
    assert len({request.client_port for request in receiver.requests}) == 1


def test_a_name_that_turns_internal_is_refused_even_with_a_kept_alive_connection(sender, receivers, dns, monkeypatch):
    table, _ = dns
    receiver = receivers(reply(200, b"ok"))
    table["hooks.example.com"] = [["127.0.0.1"], ["10.9.9.9"]]
    url = f"http://hooks.example.com:{receiver.port}/in"
    assert sender.send(url, BODY, HEADERS, 2, LOOPBACK, True).ok
    assert sender.send(url, BODY, HEADERS, 2, LOOPBACK, True).error == "address not allowed"
    assert len(receiver.requests) == 1


def test_the_module_level_send_uses_a_shared_sender(receivers, monkeypatch):
    monkeypatch.setattr(sender_module, "_shared", None)
    receiver = receivers(reply(200))
    url = f"http://127.0.0.1:{receiver.port}/"
    try:
        assert send(url, BODY, HEADERS, 2, LOOPBACK, True).ok
        assert sender_module.shared_sender() is sender_module.shared_sender()
    finally:
        sender_module.shared_sender().close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for hooks.example.com: (certificate file, key file)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        + ["-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=hooks.example.com"]
        + ["-addext", "subjectAltName=DNS:hooks.example.com"],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_receiver(receivers, certificate):
    """A receiver serving https with the hooks.example.com certificate; records the SNI names it sees."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server_names = []
    context.sni_callback = lambda ssl_socket, name, ssl_context: server_names.append(name)
    receiver = receivers(reply(200, b"ok"), tls=context)
    receiver.server_names = server_names
    return receiver


@pytest.fixture
def tls_sender(certificate):
    sender = Sender(ssl_context=ssl.create_default_context(cafile=certificate[0]))
    yield sender
    sender.close()


def test_https_to_a_checked_address_verifies_the_registered_name(tls_sender, tls_receiver, dns):
    table, _ = dns
    table["hooks.example.com"] = [["127.0.0.1"]]
    url = f"https://hooks.example.com:{tls_receiver.port}/in"
    attempt = tls_sender.send(url, BODY, HEADERS, timeout=2, allowed_networks=LOOPBACK)
    assert attempt.ok
    assert tls_receiver.server_names == ["hooks.example.com"]
    assert dict(tls_receiver.requests[0].headers)["Host"] == f"hooks.example.com:{tls_receiver.port}"


def test_https_to_a_name_the_certificate_does_not_cover_fails(tls_sender, tls_receiver, dns):
    table, _ = dns
    table["other.example.com"] = [["127.0.0.1"]]
    url = f"https://other.example.com:{tls_receiver.port}/in"
    attempt = tls_sender.send(url, BODY, HEADERS, timeout=2, allowed_networks=LOOPBACK)
    assert (attempt.error, attempt.http_status) == ("connection", None)
    assert tls_receiver.requests == []


def test_attempts_from_many_threads_do_not_mix_their_addresses(sender, receivers, dns):
    table, _ = dns
    first = receivers(reply(200, b"first"))
    # Same port, another address: only the address each attempt checked tells the two apart.
    receivers(reply(200, b"second"), address=("127.0.0.2", first.port))
    table["first.example.com"] = [["127.0.0.1"]]
    table["second.example.com"] = [["127.0.0.2"]]
    urls = {f"http://{name}.example.com:{first.port}/": name for name in ("first", "second")}
    results = []

    def deliver(url):
        results.append((urls[url], sender.send(url, BODY, HEADERS, 2, LOOPBACK, True)))

    threads = [threading.Thread(target=deliver, args=(url,)) for url in list(urls) * 10]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - started < 5
    assert all(attempt.ok and attempt.response_start == name for name, attempt in results)
