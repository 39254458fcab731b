"""Domain exceptions become entries of the contract's catalogue (2.2) in one place, and one
without an entry is an internal error, never a leak of its text."""

import json
from types import SimpleNamespace

import anyio
import pytest

from octopus_cards.http import errors
from octopus_cards.models.exceptions import (
    CurrencyNotConvertible,
    InsufficientBalance,
    NotFound,
    NoWalletForCurrency,
    Refused,
)


@pytest.mark.parametrize(
    "exception, status, name, code, message",
    [
        (NotFound("Wallet"), 404, "NotFoundError", "NOT_FOUND", "Wallet not found"),
        (NotFound("Transaction"), 404, "NotFoundError", "NOT_FOUND", "Transaction not found"),
        (NoWalletForCurrency(), 400, "BadRequestError", "BAD_REQUEST", "No wallet available for this currency"),
        (CurrencyNotConvertible(), 400, "BadRequestError", "BAD_REQUEST", "Currency conversion not available"),
        (InsufficientBalance(), 400, "BadRequestError", "BAD_REQUEST", "Insufficient wallet balance"),
        (
            Refused("an operator's message"),
            500,
            "InternalServerError",
            "INTERNAL_SERVER_ERROR",
            "Internal server error",
        ),
    ],
)
def test_domain_exceptions_map_to_the_catalogue(exception, status, name, code, message):
    request = SimpleNamespace(method="GET", url=SimpleNamespace(path="/api/v1/x"))
    response = anyio.run(errors.on_domain_error, request, exception)
    assert response.status_code == status
    assert json.loads(response.body) == {"error": {"name": name, "code": code, "message": message}}
