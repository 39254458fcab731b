"""Request validation in the contract's words (contract 1.9, 2.3): strict JSON parsing and the
messages that name the field. connexion's validators call these (connexion_hooks.py)."""

import json
import re
from decimal import Decimal

from octopus_cards.http.errors import bad_request, syntax_error, validation_error

# A schema may fix the message for every violation of it (login and refresh do, contract 2.2).
FIXED_MESSAGE = "x-octopus-error-message"


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


# A \uD800-\uDFFF escape: fine in a pair, but a lone one decodes to text that is not Unicode.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def parse_json(raw, exact=False):
    """Strict JSON from bytes: UTF-8 only, no NaN/Infinity, no lone surrogates, bounded nesting;
    `exact`: numbers with a fraction or exponent as Decimals (money is never a float)."""
    try:
        number = Decimal if exact else float
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant, parse_float=number)
        if SURROGATE_ESCAPE.search(raw):
            json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
        return value
    except (UnicodeError, ValueError, RecursionError):
        raise syntax_error() from None


def field_message(schema, error):
    """`<field> is required` for a missing or null required field, else `<field> is invalid`."""
    path = [str(part) for part in error.absolute_path]
    if error.validator == "required":
        missing = next(name for name in error.validator_value if name not in error.instance)
        return f"{'.'.join(path + [missing])} is required"
    if error.instance is None and path and _is_required(schema, list(error.absolute_path)):
        return f"{'.'.join(path)} is required"
    return f"{'.'.join(path) or 'Request body'} is invalid"


def _is_required(schema, path):
    *parents, name = path
    for part in parents:
        schema = schema.get("items", {}) if isinstance(part, int) else schema.get("properties", {}).get(part, {})
    return name in schema.get("required", ())


def resource_name(path_param):
    """`country_id` -> `country`: the spec names each path id after its resource."""
    return path_param.removesuffix("_id").replace("_", " ")


def check_body(schema, validator, body):
    """Raise the contract's 400 for the first violation of `schema` by the parsed `body`."""
    fixed = schema.get(FIXED_MESSAGE)
    if body is None:
        raise validation_error(fixed or "Request body is required")
    if not isinstance(body, dict):
        raise validation_error(fixed or "Request body must be a JSON object")
    error = next(iter(validator.iter_errors(body)), None)
    if error is None:
        return
    raise validation_error(fixed or field_message(schema, error))


# ECMA-262's classes, which JSON Schema patterns mean, spelled out for Python's re, whose own
# escapes are wider (\d takes every script's digits, \s the information separators and U+0085) or
# narrower (\s lacks U+FEFF). Inside a class, only the positive ones can be spelled out.
ECMA_WHITESPACE = r"\t\n\x0b\x0c\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
ECMA_CLASSES = {"d": "0-9", "w": "A-Za-z0-9_", "s": ECMA_WHITESPACE}


def python_pattern(pattern):
    r"""An ECMA-262 regular expression, what a JSON Schema `pattern` is, written so that Python's re
    reads it alike: an unescaped `$` outside a class ends the text (`\Z`), where Python's would
    also match before a final newline (`"+12015550123\n"` would pass `^\+[0-9]+$`); `\d`, `\w`,
    `\s` and their negations are ECMA's classes."""
    written, in_class, escaped = [], False, False
    for char in pattern:
        if escaped:
            escaped = False
            spelled = ECMA_CLASSES.get(char.lower())
            if spelled is not None and not in_class:
                char = f"[{'^' if char.isupper() else ''}{spelled}]"
                written.pop()  # the backslash
            elif spelled is not None and char.islower():
                char = spelled
                written.pop()
        elif char == "\\":
            escaped = True
        elif char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        elif char == "$" and not in_class:
            char = r"\Z"
        written.append(char)
    return "".join(written)


def with_python_patterns(document):
    """A copy of an OpenAPI document whose `pattern`s Python validates as JSON Schema means them."""
    if isinstance(document, dict):
        return {
            key: python_pattern(value) if key == "pattern" and isinstance(value, str) else with_python_patterns(value)
            for key, value in document.items()
        }
    if isinstance(document, list):
        return [with_python_patterns(value) for value in document]
    return document


PLAIN_INTEGER = re.compile(r"-?[0-9]+")


def plain_integers(param, values):
    """Whether every value of an integer parameter is written as a plain base-10 integer."""
    if param.get("schema", {}).get("type") != "integer":
        return True
    return all(PLAIN_INTEGER.fullmatch(value) for value in values)


def path_id_error(param_name):
    return bad_request(f"Invalid {resource_name(param_name)} ID")


def query_error(param_name, present):
    return validation_error(f"{param_name} is {'invalid' if present else 'required'}")
