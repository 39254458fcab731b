#!/usr/bin/env python3
"""The webhook receiver of bench/run.py's delivery probe: a process of its own on 127.0.0.1, so
that neither the runner's threads nor the GIL delay the time it writes down for an arrival.

    python bench/webhook_receiver.py --port PORT

One asyncio protocol (on uvloop when installed) that parses HTTP/1.1 itself, keeps connections
alive, and answers every POST 204 No Content at once. A POST to any path but /sink is recorded:
arrival time (time.time(), the clock the runner stamps events with), X-Event-ID and the body.
GET /records answers the records so far as JSON and forgets them; GET /health answers 200.
POST /sink is answered but not recorded: it is how the runner measures the receiver's own
capacity with wrk.
"""

import argparse
import asyncio
import json
import signal
import time

NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
RECORDS = []  # [arrival, event id, body]


def answer(status, body):
    return b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        status,
        len(body),
        body,
    )


class Receiver(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", 0))
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            method, path = head[0].split(" ", 2)[:2]
            self.transport.write(self.handle(method, path, headers, body))

    def handle(self, method, path, headers, body):
        if method == "POST":
            if path != "/sink":
                RECORDS.append((time.time(), headers.get("x-event-id"), body.decode("utf-8", "replace")))
            return NO_CONTENT
        if path == "/records":
            records = json.dumps(RECORDS).encode()
            RECORDS.clear()
            return answer(b"200 OK", records)
        if path == "/health":
            return answer(b"200 OK", b"{}")
        return answer(b"404 Not Found", b"{}")


async def serve(host, port):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(Receiver, host, port, backlog=1024)
    async with server:
        await stop.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
