"""Real receivers on 127.0.0.1 for what the server sends out: a webhook endpoint that records every
request it gets and answers as scripted, and an SMTP server (aiosmtpd) that keeps every message;
and the check of a webhook attempt's signatures."""

import email
import email.policy
import hashlib
import hmac
import http.server
import json
import socket
import socketserver
import threading
import time

from aiosmtpd.controller import Controller
from standardwebhooks import Webhook

from support.live_server import free_port

HOST = "127.0.0.1"


class WebhookReceiver:
    """An HTTP server whose paths answer as scripted: `script(path, *answers)`, each answer a status
    or ("sleep", seconds) to hold the request that long first; the last answer repeats. Unscripted
    paths answer 200. Every request is kept in `received` as (path, headers, body)."""

    def __init__(self):
        self.received, self.scripts, self.lock = [], {}, threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-request (kill -9): nothing arrived
                    self.close_connection = True
                    return
                with receiver.lock:
                    receiver.received.append((self.path, {k: v for k, v in self.headers.items()}, body))
                    answers = receiver.scripts.get(self.path, [200])
                    answer = answers.pop(0) if len(answers) > 1 else answers[0]
                if isinstance(answer, tuple):
                    time.sleep(answer[1])
                    answer = 200
                self.send_response(answer)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server((HOST, 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True)

    def url(self, path):
        return f"http://{HOST}:{self.server.server_address[1]}{path}"

    def script(self, path, *answers):
        with self.lock:
            self.scripts[path] = list(answers)

    def at(self, path):
        with self.lock:
            return [(headers, body) for p, headers, body in self.received if p == path]

    def wait_for(self, path, count, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.at(path)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{path}: {len(self.at(path))} requests, not {count}, within {timeout} s")

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class Silent:
    """A TCP listener on 127.0.0.1 that takes every connection and never answers."""

    def __init__(self):
        self.listener = socket.create_server((HOST, 0))
        self.listener.settimeout(0.05)
        self.connections, self.done = [], threading.Event()
        self.thread = threading.Thread(target=self.accept, name="silent-receiver", daemon=True)

    def accept(self):
        while not self.done.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(connection)

    def url(self, path):
        return f"http://{HOST}:{self.listener.getsockname()[1]}{path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.done.set()
        self.thread.join(timeout=5)
        for connection in self.connections:
            connection.close()
        self.listener.close()


class MailReceiver:
    """An SMTP server on 127.0.0.1; `messages` are the parsed e-mails it accepted."""

    def __init__(self):
        self.messages = []
        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                message = email.message_from_bytes(envelope.content, policy=email.policy.default)
                receiver.messages.append((envelope.rcpt_tos, message))
                return "250 OK"

        self.controller = Controller(Handler(), hostname=HOST, port=free_port())

    @property
    def url(self):
        return f"smtp://{HOST}:{self.controller.port}"

    def messages_to(self, address):
        return [message for to, message in self.messages if address in to]

    def wait_for(self, count, timeout=30):
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.messages) >= count, f"{len(self.messages)} e-mails, not {count}, within {timeout} s"
        return self.messages

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()


def signed_event(headers, body, endpoint, secret=None):
    """The event of one webhook attempt to `endpoint` (as `webhook add --json` shows it), once its
    ids, its token and its two signatures (9.1, 9.4) verify; `secret` the one to expect instead of
    the endpoint's (after a rotation)."""
    secret = secret or endpoint["secret"]
    event = json.loads(body)
    assert headers["X-Webhook-ID"] == str(endpoint["id"])
    assert headers["X-OCTOPUS-WEBHOOK-TOKEN"] == secret
    assert headers["X-Event-ID"] == headers["webhook-id"] == event["id"]
    assert headers["X-Event-Type"] == event["type"]
    assert Webhook(secret).verify(body, headers) == event
    plain = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Signature"], plain)
    return event
