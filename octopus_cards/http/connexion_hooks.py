"""Every place the server reaches into connexion 3.3's internals, gathered here. connexion is
pinned to ~=3.3.0; each hook has a test that fails if an upgrade changes what it relies on.

- ShortOperationIds: `Resolution`, `RelativeResolver.resolve`.
  Pinned by tests/api/test_operations.py (the labels) and tests/contract/test_sdk.py.
- DecorateOnce, OperationDecoratedOnce, install (Api): `StarletteDecorator.decorate`,
  `.framework.get_request`, `.uri_parser`; `AsyncOperation._fn`, `.fn`; `AsyncApi.make_operation`;
  `AsyncApp._middleware_app.api_cls`; Arguments: `StarletteDecorator._parameter_decorator_cls`,
  `AsyncParameterDecorator.sanitize_fn`. Pinned by
  tests/api/test_errors.py::test_handlers_are_decorated_once_not_per_request and the feature-gate
  tests of tests/api/test_reference.py.
- BodyValidator: `JSONRequestBodyValidator._schema`, `._validator`, `._insert_messages`.
  Pinned by tests/unit/test_validation.py.
- Parameters: `ParameterValidator.parameters`, `.validate_path_parameter`, `.validate_query_parameter`
  and the static `.validate_parameter` they call.
  Pinned by the id and query tests of tests/api/test_errors.py and tests/api/test_reference.py.
- BearerFromRequest (security_map): `BearerSecurityHandler._get_verify_func`, and the request
  as the one argument of what it returns. Pinned by the 401 tests of tests/api/test_auth.py.
- DocsSwaggerUI, middleware_stack: `SwaggerUIMiddleware`, `ConnexionMiddleware.default_middlewares`.
  Pinned by tests/api/test_errors.py::test_swagger_ui_is_served and
  ::test_without_swagger_ui_docs_is_an_unknown_route.
"""

import functools

from connexion.apps.asynchronous import AsyncApi, AsyncOperation
from connexion.context import receive, scope
from connexion.datastructures import MediaTypeDict
from connexion.decorators import StarletteDecorator
from connexion.decorators.parameter import AsyncParameterDecorator
from connexion.middleware import ConnexionMiddleware
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from connexion.resolver import RelativeResolver, Resolution
from connexion.security import BearerSecurityHandler
from connexion.utils import is_null, is_nullable
from connexion.validators import JSONRequestBodyValidator, ParameterValidator
from jsonschema import Draft4Validator
from jsonschema.exceptions import best_match
from starlette.datastructures import Headers, QueryParams

from octopus_cards.http.errors import invalid_feature, unsupported_media_type
from octopus_cards.http.runtime import EXACT_BODY, SCOPE_KEY
from octopus_cards.http.validation import (
    check_body,
    parse_json,
    path_id_error,
    plain_integers,
    query_error,
)

DOCS_PATH = "/docs"


class ShortOperationIds(RelativeResolver):
    """Binds `auth.login` to `<handlers package>.auth.login`, and keeps `auth.login` as the
    operation's id: routing, metrics and logs then name operations as the document does."""

    def resolve(self, operation):
        return Resolution(super().resolve(operation).function, operation.operation_id)


class BearerFromRequest(BearerSecurityHandler):
    """The `x-bearerInfoFunc` is called with the request alone and reads the Authorization header
    itself, refusing with the contract's messages. connexion's handler would split the header
    first, then inspect the function's signature twice per request to know what to pass it."""

    def _get_verify_func(self, token_info_func):
        return token_info_func


SECURITY_MAP = {"bearer": BearerFromRequest}


class Arguments(AsyncParameterDecorator):
    """connexion's handler arguments, each name cleaned once: connexion runs three regular
    expressions over every argument's name on every request. Bounded: a request may bring names
    of its own."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.sanitize_fn = functools.lru_cache(maxsize=256)(self.sanitize_fn)


class DecorateOnce(StarletteDecorator):
    """connexion 3.3 builds a handler's parameter and response decorators and its URI parser anew
    for every request, inspecting the handler's signature each time. They depend only on the
    operation, which is fixed for one AsyncOperation, so each is built once.

    Right before the handler, after the request is validated, the operation's feature gate
    (`x-octopus-feature`; contract 1.10, check 10).
    """

    def __init__(self, operation_id, **kwargs):
        super().__init__(**kwargs)
        self.operation_id = operation_id

    @property
    def _parameter_decorator_cls(self):
        return Arguments

    def __call__(self, function):
        decorated = self.decorate(function)
        uri_parser = None

        @functools.wraps(function)
        async def wrapper(*args, **kwargs):
            nonlocal uri_parser
            current = scope._get_current_object()
            feature = current[SCOPE_KEY].policies[self.operation_id].feature
            if feature is not None:
                token_info = current["extensions"]["connexion_context"]["token_info"]
                if feature not in token_info["features"]:
                    raise invalid_feature()
            uri_parser = uri_parser or self.uri_parser
            return await decorated(self.framework.get_request(uri_parser=uri_parser, scope=current, receive=receive))

        return wrapper


class OperationDecoratedOnce(AsyncOperation):
    @functools.cached_property
    def fn(self):
        return DecorateOnce(self.operation_id, pythonic_params=self.pythonic_params, jsonifier=self.jsonifier)(self._fn)


class Api(AsyncApi):
    def make_operation(self, operation):
        return OperationDecoratedOnce.from_operation(
            operation, pythonic_params=self.pythonic_params, jsonifier=self.jsonifier
        )


def install(app):
    """Make `app` (a connexion AsyncApp) build its operations with OperationDecoratedOnce."""
    app._middleware_app.api_cls = Api  # connexion 3.3 offers no argument for it


# connexion builds a jsonschema validator per request; an operation's schema never changes.
SCHEMA_VALIDATORS = {}


class BodyValidator(JSONRequestBodyValidator):
    """Strict JSON and the contract's messages, instead of problem+json that names no field."""

    @property
    def _validator(self):
        cached = SCHEMA_VALIDATORS.get(id(self._schema))
        if cached is None or cached[0] is not self._schema:
            cached = SCHEMA_VALIDATORS[id(self._schema)] = (self._schema, super()._validator)
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
        empty = not raw.strip()
        # Checked as connexion checks it (the schema's bounds are floats too); kept with its numbers
        # exact for the handlers that need them (security.exact_body()).
        check_body(self._schema, self._validator, None if empty else parse_json(raw))
        scope[EXACT_BODY] = None if empty else parse_json(raw, exact=True)
        return self._insert_messages(receive, messages=messages), scope


# connexion deep-copies a parameter's schema and builds its validator for every value it checks.
PARAMETER_VALIDATORS = {}


class Parameters(ParameterValidator):
    """Query parameters are named in the message; path ids give `Invalid <thing> ID`. An integer
    query parameter must be written in plain ASCII digits: connexion's coercion is Python's int(),
    which also takes `+5`, ` 1`, `1_000` and other scripts' digits."""

    @staticmethod
    def validate_parameter(parameter_type, value, param, param_name=None):
        """connexion's check, each parameter's validator built once: what is wrong, or None."""
        if is_nullable(param) and is_null(value):
            return None
        if value is None:
            return "required" if param.get("required") else None
        cached = PARAMETER_VALIDATORS.get(id(param))
        if cached is None or cached[0] is not param:
            validator = Draft4Validator(param.get("schema", param), format_checker=Draft4Validator.FORMAT_CHECKER)
            cached = PARAMETER_VALIDATORS[id(param)] = (param, validator)
        validator = cached[1]
        return None if validator.is_valid(value) else str(best_match(validator.iter_errors(value)))

    def validate_request(self, request):
        for param in self.parameters.get("path", []):
            if self.validate_path_parameter(param, request):
                raise path_id_error(param["name"])
        raw = QueryParams(request.scope["query_string"])
        for param in self.parameters.get("query", []):
            name = param["name"]
            if not plain_integers(param, raw.getlist(name)) or self.validate_query_parameter(param, request):
                raise query_error(name, name in raw)


VALIDATOR_MAP = {
    "parameter": Parameters,
    # Every operation consumes JSON only; other media types are refused with 415 before this.
    "body": MediaTypeDict({"*/*json": BodyValidator}),
}


class DocsSwaggerUI(SwaggerUIMiddleware):
    """connexion's Swagger UI middleware, which would run every request through a router of its
    own, for the /docs pages only."""

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and not scope["path"].startswith(DOCS_PATH):
            return await self.app(scope, receive, send)
        return await super().__call__(scope, receive, send)


def middleware_stack(swagger_ui):
    """connexion's default stack, with the Swagger UI middleware confined to its pages, or
    left out when the UI is off."""
    return [
        DocsSwaggerUI if middleware is SwaggerUIMiddleware else middleware
        for middleware in ConnexionMiddleware.default_middlewares
        if swagger_ui or middleware is not SwaggerUIMiddleware
    ]
