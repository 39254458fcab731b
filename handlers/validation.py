"""Request validators that speak the contract's error catalogue (contract 1.9, 2.3).

connexion's validators answer with problem+json and messages that do not name the field;
these subclasses keep connexion's schema machinery and raise ApiError instead. They
override private methods of connexion 3.3: test_validation.py pins each error they produce.
"""
import json
import re

from connexion.datastructures import MediaTypeDict
from connexion.validators import JSONRequestBodyValidator, ParameterValidator
from starlette.datastructures import Headers

from handlers.errors import bad_request, syntax_error, unsupported_media_type, validation_error

# A schema may fix the message for every violation of it (login and refresh do, contract 2.2).
FIXED_MESSAGE = "x-octopus-error-message"


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


# A \uD800-\uDFFF escape: fine in a pair, but a lone one decodes to text that is not Unicode.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def parse_json(raw):
    """Strict JSON from bytes: UTF-8 only, no NaN/Infinity, no lone surrogates, bounded nesting."""
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        if SURROGATE_ESCAPE.search(raw):
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        return value
    except (UnicodeError, ValueError, RecursionError):
        raise syntax_error() from None


# connexion builds a jsonschema validator per request; an operation's schema never changes.
VALIDATORS = {}


class BodyValidator(JSONRequestBodyValidator):
    @property
    def _validator(self):
        cached = VALIDATORS.get(id(self._schema))
        if cached is None or cached[0] is not self._schema:
            cached = VALIDATORS[id(self._schema)] = (self._schema, super()._validator)
        return cached[1]

    async def wrap_receive(self, receive, *, scope):
        if "content-type" not in Headers(scope=scope):
            # connexion would guess application/json and pass the body on as bytes.
            raise unsupported_media_type()
        messages = []
        more_body = True
        while more_body:
            message = await receive()
            messages.append(message)
            more_body = message.get("more_body", False)
        raw = b"".join(message.get("body", b"") for message in messages)
        body = parse_json(raw) if raw.strip() else None
        self._validate(body)
        return self._insert_messages(receive, messages=messages), scope

    def _validate(self, body):
        fixed = self._schema.get(FIXED_MESSAGE)
        if body is None:
            raise validation_error(fixed or "Request body is required")
        if not isinstance(body, dict):
            raise validation_error(fixed or "Request body must be a JSON object")
        error = next(iter(self._validator.iter_errors(body)), None)
        if error is None:
            return
        if fixed:
            raise validation_error(fixed)
        raise validation_error(field_message(self._schema, error))


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


class Parameters(ParameterValidator):
    """Query parameters are named in the message; path ids give `Invalid <thing> ID`."""

    def validate_request(self, request):
        for param in self.parameters.get("path", []):
            if self.validate_path_parameter(param, request):
                raise bad_request(f"Invalid {resource_name(param['name'])} ID")
        for param in self.parameters.get("query", []):
            if self.validate_query_parameter(param, request):
                present = param["name"] in request.query_params
                raise validation_error(f"{param['name']} is {'invalid' if present else 'required'}")


def resource_name(path_param):
    """`country_id` -> `country`: the spec names each path id after its resource."""
    return path_param.removesuffix("_id").replace("_", " ")


VALIDATOR_MAP = {
    "parameter": Parameters,
    # Every operation consumes JSON only; other media types are refused with 415 before this.
    "body": MediaTypeDict({"*/*json": BodyValidator}),
}
