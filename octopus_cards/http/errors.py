"""The error catalogue (contract 2.2) and the one place errors, the domain's included, become
the envelope."""

import json
import logging

import peewee
from connexion.exceptions import (
    NonConformingResponse,
    ProblemException,
    Unauthorized,
    UnsupportedMediaTypeProblem,
)
from connexion.lifecycle import ConnexionResponse
from starlette.exceptions import HTTPException

from octopus_cards.models.exceptions import (
    CurrencyNotConvertible,
    DomainError,
    DuplicateReference,
    InsufficientBalance,
    InsufficientStock,
    InvalidAmount,
    InvalidDenomination,
    InvalidInput,
    NotFound,
    NoWalletForCurrency,
    QuantityAboveLimit,
)

logger = logging.getLogger("octopus_cards.errors")

INVALID_TOKEN_CHALLENGE = 'Bearer error="invalid_token"'


class ApiError(Exception):
    """An error of the contract's catalogue: raise it anywhere, it leaves as the envelope."""

    def __init__(self, status, name, code, message, headers=None):
        super().__init__(message)
        self.status_code = status  # connexion ranks failed security schemes by this
        self.name = name
        self.code = code
        self.message = message
        self.headers = headers or {}


def syntax_error():
    return ApiError(400, "SyntaxError", "SYNTAX_ERROR", "Invalid request body")


def validation_error(message):
    return ApiError(400, "ValidationException", "VALIDATION_FAILURE", message)


def bad_request(message):
    return ApiError(400, "BadRequestError", "BAD_REQUEST", message)


def invalid_feature():
    return ApiError(400, "BadRequestError", "INVALID_FEATURE", "The requested feature is not enabled for this client")


def unauthorized(message):
    challenge = INVALID_TOKEN_CHALLENGE if message in ("Invalid token", "Token expired") else "Bearer"
    return ApiError(401, "UnauthorizedError", "UNAUTHORIZED", message, {"WWW-Authenticate": challenge})


def ip_not_authorized():
    return ApiError(403, "ForbiddenError", "FORBIDDEN", "IP address not authorized")


def not_found(message):
    return ApiError(404, "NotFoundError", "NOT_FOUND", message)


def method_not_allowed(allow):
    return ApiError(405, "MethodNotAllowedError", "METHOD_NOT_ALLOWED", "Method not allowed", {"Allow": allow})


def unsupported_media_type():
    return ApiError(415, "UnsupportedMediaTypeError", "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json")


def payload_too_large(limit):
    return ApiError(413, "PayloadTooLargeError", "PAYLOAD_TOO_LARGE", f"Request body exceeds {limit} bytes")


def too_many_requests(retry_after):
    return ApiError(
        429,
        "TooManyRequestsError",
        "TOO_MANY_REQUESTS",
        f"Rate limit exceeded. Retry after {retry_after} seconds.",
        {"Retry-After": str(retry_after)},
    )


def service_unavailable():
    return ApiError(
        503,
        "ServiceUnavailableError",
        "SERVICE_UNAVAILABLE",
        "Service temporarily unavailable",
        {"Retry-After": "1"},
    )


def internal_error():
    return ApiError(500, "InternalServerError", "INTERNAL_SERVER_ERROR", "Internal server error")


def envelope_body(error):
    return json.dumps({"error": {"name": error.name, "code": error.code, "message": error.message}})


def response_for(error):
    return ConnexionResponse(
        status_code=error.status_code,
        mimetype="application/json",
        body=envelope_body(error),
        headers=error.headers,
    )


async def on_api_error(request, exc):
    return response_for(exc)


# The catalogue entry of each domain exception.
DOMAIN_ERRORS = {
    NotFound: lambda exc: not_found(str(exc)),
    NoWalletForCurrency: lambda exc: bad_request("No wallet available for this currency"),
    CurrencyNotConvertible: lambda exc: bad_request("Currency conversion not available"),
    InsufficientBalance: lambda exc: bad_request("Insufficient wallet balance"),
    InvalidDenomination: lambda exc: bad_request("Invalid denomination"),
    DuplicateReference: lambda exc: bad_request("Duplicate client_reference"),
    InsufficientStock: lambda exc: bad_request("Insufficient stock"),
    QuantityAboveLimit: lambda exc: bad_request("Quantity exceeds the allowed maximum"),
    InvalidAmount: lambda exc: bad_request("Invalid amount"),
    InvalidInput: lambda exc: validation_error(str(exc)),
}


async def on_domain_error(request, exc):
    entry = DOMAIN_ERRORS.get(type(exc))
    if entry is None:  # a domain exception without an entry is our bug
        return await on_unexpected(request, exc)
    return response_for(entry(exc))


async def on_problem(request, exc):
    """connexion's own problems: security without a usable header, media type, our response bugs."""
    if isinstance(exc, Unauthorized):
        header = request.headers.get("authorization", "").strip()
        return response_for(unauthorized("Invalid token" if header else "Authorization header required"))
    if isinstance(exc, UnsupportedMediaTypeProblem):
        return response_for(unsupported_media_type())
    if isinstance(exc, NonConformingResponse):
        logger.error("response does not conform to the OpenAPI document: %s", exc.detail)
        return response_for(internal_error())
    return await on_http(request, exc)


async def on_http(request, exc):
    """Routing errors from starlette, and any other HTTP status raised below us."""
    if exc.status_code == 404:
        return response_for(not_found("Route not found"))
    if exc.status_code == 405:
        return response_for(method_not_allowed((exc.headers or {}).get("Allow", "")))
    if exc.status_code >= 500:
        logger.error("HTTP %s raised: %r", exc.status_code, exc)
        return response_for(internal_error())
    logger.warning("unmapped HTTP %s: %r", exc.status_code, exc)
    return response_for(bad_request("Bad request"))


async def on_database_unavailable(request, exc):
    """The database cannot be reached (or stayed locked past the busy timeout): transient, so 503."""
    logger.error("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return response_for(service_unavailable())


async def on_unexpected(request, exc):
    logger.error("unexpected failure on %s %s", request.method, request.url.path, exc_info=exc)
    return response_for(internal_error())


def register(app):
    app.add_error_handler(ApiError, on_api_error)
    app.add_error_handler(DomainError, on_domain_error)
    app.add_error_handler(ProblemException, on_problem)
    app.add_error_handler(HTTPException, on_http)
    app.add_error_handler(peewee.OperationalError, on_database_unavailable)
    app.add_error_handler(peewee.InterfaceError, on_database_unavailable)
    app.add_error_handler(Exception, on_unexpected)
