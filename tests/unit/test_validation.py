"""Unit: the request validators (they override private connexion 3.3 methods; each error is pinned)."""

import re

import anyio
import pytest
from jsonschema import Draft4Validator

from octopus_cards.http.connexion_hooks import BodyValidator
from octopus_cards.http.errors import ApiError
from octopus_cards.http.validation import field_message, parse_json, python_pattern, with_python_patterns

ORDER_SCHEMA = {
    "type": "object",
    "required": ["product_id", "quantity"],
    "properties": {
        "product_id": {"type": "integer", "minimum": 1},
        "quantity": {"type": "integer", "minimum": 1},
        "email": {"type": "string", "format": "email"},
        "input_data": {
            "type": "object",
            "required": ["player_id"],
            "properties": {"player_id": {"type": "string", "minLength": 1}},
        },
    },
}


def validate(raw, schema=ORDER_SCHEMA, content_type=b"application/json"):
    headers = [(b"content-type", content_type)] if content_type else []
    scope = {"type": "http", "headers": headers}
    chunks = [raw[:3], raw[3:]]

    async def receive():
        body = chunks.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    async def run():
        validator = BodyValidator(
            schema=schema, required=True, nullable=False, encoding="utf-8", strict_validation=False
        )
        replay, _ = await validator.wrap_receive(receive, scope=scope)
        first = await replay()
        second = await replay()
        return first["body"] + second["body"]

    return anyio.run(run)


def error_of(raw, **kwargs):
    with pytest.raises(ApiError) as raised:
        validate(raw, **kwargs)
    return raised.value.status_code, raised.value.name, raised.value.message


def test_a_valid_body_is_passed_on_unchanged():
    raw = b'{"product_id": 1, "quantity": 2, "unknown": true}'
    assert validate(raw) == raw


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"", "Request body is required"),
        (b"  ", "Request body is required"),
        (b"[1]", "Request body must be a JSON object"),
        (b"null", "Request body is required"),
        (b'{"quantity": 1}', "product_id is required"),
        (b'{"product_id": null, "quantity": 1}', "product_id is required"),
        (b'{"product_id": 0, "quantity": 1}', "product_id is invalid"),
        (b'{"product_id": 1.0, "quantity": 1}', "product_id is invalid"),
        (b'{"product_id": "1", "quantity": 1}', "product_id is invalid"),
        (b'{"product_id": 1, "quantity": 1, "email": null}', "email is invalid"),
        (b'{"product_id": 1, "quantity": 1, "input_data": {}}', "input_data.player_id is required"),
        (b'{"product_id": 1, "quantity": 1, "input_data": {"player_id": ""}}', "input_data.player_id is invalid"),
    ],
)
def test_validation_messages_name_the_field(raw, message):
    assert error_of(raw) == (400, "ValidationException", message)


@pytest.mark.parametrize(
    "raw", [b"{", b"\xff", b"NaN", b"Infinity", b'{"a": -Infinity}', b"[" * 100_000 + b"]" * 100_000]
)
def test_unparsable_bodies_are_syntax_errors(raw):
    assert error_of(raw) == (400, "SyntaxError", "Invalid request body")


def test_missing_content_type_is_415():
    assert error_of(b"{}", content_type=None)[:2] == (415, "UnsupportedMediaTypeError")


def test_a_fixed_message_covers_every_violation():
    schema = {**ORDER_SCHEMA, "x-octopus-error-message": "Username and password are required"}
    for raw in (b"", b"[]", b"{}", b'{"product_id": "x", "quantity": 1}'):
        assert error_of(raw, schema=schema)[2] == "Username and password are required"
    assert error_of(b"{", schema=schema)[1] == "SyntaxError"


def test_parse_json_accepts_utf8_text_and_escaped_pairs():
    assert parse_json('{"name": "Zoë"}'.encode()) == {"name": "Zoë"}
    assert parse_json(b'{"emoji": "\\ud83d\\ude00"}') == {"emoji": "\U0001f600"}


@pytest.mark.parametrize("raw", [b'{"a": "\\ud800"}', b'{"a": "x\\uDFFFy"}', b'["\\ude00\\ud83d"]'])
def test_lone_surrogate_escapes_are_syntax_errors(raw):
    with pytest.raises(ApiError) as raised:
        parse_json(raw)
    assert raised.value.name == "SyntaxError"


def test_field_message_for_array_items():
    schema = {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "integer"}}}}
    error = next(Draft4Validator(schema).iter_errors({"items": [1, "x"]}))
    assert field_message(schema, error) == "items.1 is invalid"


@pytest.mark.parametrize(
    "pattern, text, matches",
    [
        (r"^\+[1-9][0-9]{6,14}$", "+12015550123", True),
        (r"^\+[1-9][0-9]{6,14}$", "+12015550123\n", False),  # Python's own $ would let it through
        (r"^[ -~]+$", "REF-1", True),
        (r"^[ -~]+$", "REF-1\n", False),
        (r"^[A-Z]{3}$", "USA\n", False),
        (r"^a[$]b$", "a$b", True),  # a $ in a class is the character
        (r"^a\$$", "a$", True),  # so is an escaped one
        (r"^a\$$", "a$\n", False),
        (r"^[^@\s]+@[^@\s]+\.[^@\s]+$", "a@b.example\n", False),
        # \s, \d and \w are ECMA's classes, not Python's Unicode ones.
        (r"^[^@\s]+@[^@\s]+\.[^@\s]+$", "a@b.example\ufeff", False),  # U+FEFF is ECMA whitespace
        (r"^[^@\s]+@[^@\s]+\.[^@\s]+$", "a\x85@b.example", True),  # U+0085 is not
        (r"^\S+$", "ab\ufeff", False),
        (r"^\s$", "\x1c", False),
        (r"^\d+$", "123", True),
        (r"^\d+$", "\u0661\u0662", False),  # Arabic-Indic digits
        (r"^[\d.]+$", "1.5", True),
        (r"^\w+$", "caf\u00e9", False),
        (r"^\W$", "\u00e9", True),
    ],
)
def test_patterns_end_where_json_schema_says(pattern, text, matches):
    """JSON Schema patterns are ECMA-262: `$` is the end of the text, not before a final newline."""
    assert bool(re.search(python_pattern(pattern), text)) is matches


def test_every_pattern_of_a_document_is_rewritten_and_nothing_else():
    document = {"pattern": "^x$", "properties": {"pattern": {"type": "string", "pattern": "^y$"}},
                "examples": ["^z$"], "allOf": [{"pattern": "^w$"}]}  # fmt: skip
    assert with_python_patterns(document) == {
        "pattern": r"^x\Z", "properties": {"pattern": {"type": "string", "pattern": r"^y\Z"}},
        "examples": ["^z$"], "allOf": [{"pattern": r"^w\Z"}]}  # fmt: skip
