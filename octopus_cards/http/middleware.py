"""Pure-ASGI middleware: the request id and response headers, and the routing rules of
contract 1.1 and 2.5 that starlette's router would otherwise answer differently."""

import re
import time

from cyksuid.v2 import ksuid
from starlette.datastructures import MutableHeaders

from octopus_cards.http.errors import method_not_allowed, not_found, payload_too_large
from octopus_cards.http.observability import CURRENT, RequestLabels, record_request
from octopus_cards.http.runtime import SCOPE_KEY

VALID_REQUEST_ID = re.compile(r"[0-9A-Za-z_-]{1,63}")


def request_id_from(headers):
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if VALID_REQUEST_ID.fullmatch(text) else str(ksuid())
    return str(ksuid())


class RequestContext:
    """Outermost: every response, errors included, carries X-Request-Id (and no-store on /auth/);
    every request is counted, timed and logged by operation and status.

    It also hands the app's Runtime to everything below it.
    """

    def __init__(self, app, runtime):
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        request_id = request_id_from(scope["headers"])
        scope[SCOPE_KEY] = self.runtime
        # Shared with the copies of the scope made below us, so routing's notes come back up.
        extensions = scope.setdefault("extensions", {})
        no_store = scope["path"].startswith("/auth/")
        status = 500

        async def send_with_headers(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["X-Request-Id"] = request_id
                if no_store:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        token = CURRENT.set(RequestLabels(request_id, extensions))
        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            record_request(scope, status, time.perf_counter() - started)
            CURRENT.reset(token)


class BodyLimit:
    """413 for a body over the limit: by Content-Length up front, else while it streams in."""

    def __init__(self, app, max_bytes):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                raise payload_too_large(self.max_bytes)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise payload_too_large(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)


METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
DIGITS = re.compile(r"[0-9]+")


class Route:
    def __init__(self, template, operations):
        self.pattern = re.compile("^" + re.sub(r"\{[^}/]+\}", "([^/]+)", template) + "$")
        documented = {method.upper() for method in operations}
        bodiless = {method.upper() for method, operation in operations.items() if "requestBody" not in operation}
        if "GET" in documented:
            documented.add("HEAD")
            bodiless.add("HEAD")
        self.methods = frozenset(documented)
        self.bodiless = frozenset(bodiless)
        self.allow = ", ".join(method for method in METHOD_ORDER if method in documented)


class RouteGuard:
    """Before routing, for the paths of the OpenAPI document:

    - a trailing slash is another, unknown path (404, where starlette would redirect);
    - an undocumented method is 405 with an `Allow` naming every method of the path;
    - a path id that is not all digits still routes (as 0, which the schema rejects), so the
      caller is authenticated before hearing `Invalid <thing> ID` (contract 1.10);
    - an operation without a request body ignores Content-Type (contract 1.2), so the header
      is dropped before connexion tries to parse a body by it.
    """

    def __init__(self, app, paths):
        self.app = app
        self.routes = [
            Route(template, {m: op for m, op in item.items() if m.upper() in METHOD_ORDER})
            for template, item in paths.items()
        ]

    def match(self, path):
        for route in self.routes:
            found = route.pattern.match(path)
            if found:
                return route, found
        return None, None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        route, found = self.match(path)
        if route is None:
            if path != "/" and path.endswith("/") and self.match(path.rstrip("/"))[0]:
                raise not_found("Route not found")
            return await self.app(scope, receive, send)
        if scope["method"] not in route.methods:
            raise method_not_allowed(route.allow)
        if not all(DIGITS.fullmatch(segment) for segment in found.groups()):
            scope = dict(scope, path=self.with_zero_ids(path, found))
        if scope["method"] in route.bodiless:
            scope = dict(scope, headers=[(k, v) for k, v in scope["headers"] if k != b"content-type"])
        await self.app(scope, receive, send)

    @staticmethod
    def with_zero_ids(path, found):
        pieces, last = [], 0
        for index, segment in enumerate(found.groups(), start=1):
            start, end = found.span(index)
            pieces.append(path[last:start])
            pieces.append(segment if DIGITS.fullmatch(segment) else "0")
            last = end
        pieces.append(path[last:])
        return "".join(pieces)
