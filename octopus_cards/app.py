"""The application factory: one OpenAPI document, bound to the handlers it names."""
import contextlib
import functools
import logging

import anyio
from connexion import AsyncApp
from connexion.apps.asynchronous import AsyncApi, AsyncOperation
from connexion.context import receive, scope
from connexion.decorators import StarletteDecorator
from connexion.middleware import ConnexionMiddleware, MiddlewarePosition
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from connexion.options import SwaggerUIOptions

import models
from handlers import errors
from handlers.middleware import DOCS_PATH, BodyLimit, DocsSwaggerUI, RequestContext, RouteGuard
from handlers.security import Runtime
from handlers.validation import VALIDATOR_MAP
from octopus_cards.settings import Settings
from octopus_cards.spec import load_spec

logger = logging.getLogger("octopus_cards")


async def prune_periodically(interval):
    while True:
        await anyio.sleep(interval)
        try:
            tokens, hits = await anyio.to_thread.run_sync(models.prune)
            logger.info("pruned %d expired token records and %d rate-limit hits", tokens, hits)
        except Exception:  # the database may be briefly away; the next round retries
            logger.exception("pruning failed")


def lifespan_for(settings):
    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with anyio.create_task_group() as tasks:
            if settings.prune_interval:
                tasks.start_soon(prune_periodically, settings.prune_interval)
            yield
            tasks.cancel_scope.cancel()

    return lifespan


class DecorateOnce(StarletteDecorator):
    """connexion 3.3 builds a handler's parameter and response decorators and its URI parser anew
    for every request, inspecting the handler's signature each time. They depend only on the
    operation, which is fixed for one AsyncOperation, so each is built once."""

    def __call__(self, function):
        decorated = self.decorate(function)
        uri_parser = None

        @functools.wraps(function)
        async def wrapper(*args, **kwargs):
            nonlocal uri_parser
            uri_parser = uri_parser or self.uri_parser
            return await decorated(self.framework.get_request(uri_parser=uri_parser, scope=scope, receive=receive))

        return wrapper


class OperationDecoratedOnce(AsyncOperation):
    @functools.cached_property
    def fn(self):
        return DecorateOnce(pythonic_params=self.pythonic_params, jsonifier=self.jsonifier)(self._fn)


class Api(AsyncApi):
    def make_operation(self, operation):
        return OperationDecoratedOnce.from_operation(
            operation, pythonic_params=self.pythonic_params, jsonifier=self.jsonifier
        )


def middleware_stack(swagger_ui):
    """connexion's default stack, with the Swagger UI middleware confined to its pages, or
    left out when the UI is off."""
    return [
        DocsSwaggerUI if middleware is SwaggerUIMiddleware else middleware
        for middleware in ConnexionMiddleware.default_middlewares
        if swagger_ui or middleware is not SwaggerUIMiddleware
    ]


def create_app(settings=None):
    settings = settings or Settings.from_env()
    models.connect(settings.database_url)
    spec = load_spec()
    app = AsyncApp(__name__, lifespan=lifespan_for(settings), middlewares=middleware_stack(settings.swagger_ui))
    app._middleware_app.api_cls = Api  # connexion 3.3 offers no argument for it
    app.add_api(
        spec,
        validator_map=VALIDATOR_MAP,
        validate_responses=settings.validate_responses,
        # /openapi.json is an operation of the document itself, served as written (with its $refs,
        # which SDK generators turn into named models); connexion would serve a resolved copy.
        swagger_ui_options=SwaggerUIOptions(
            swagger_ui=settings.swagger_ui, swagger_ui_path=DOCS_PATH, serve_spec=False
        ),
    )
    errors.register(app)
    app.add_middleware(
        RequestContext, position=MiddlewarePosition.BEFORE_EXCEPTION, runtime=Runtime.from_settings(settings)
    )
    app.add_middleware(BodyLimit, position=MiddlewarePosition.BEFORE_ROUTING, max_bytes=settings.max_body_bytes)
    app.add_middleware(RouteGuard, position=MiddlewarePosition.BEFORE_ROUTING, paths=spec["paths"])
    return app
