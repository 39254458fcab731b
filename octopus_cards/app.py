"""The application factory: one OpenAPI document, bound to the handlers it names."""

import contextlib
import logging

import anyio
from connexion import AsyncApp
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions

from octopus_cards import models
from octopus_cards.http import connexion_hooks, errors
from octopus_cards.http.middleware import BodyLimit, RequestContext, RouteGuard
from octopus_cards.http.runtime import Runtime
from octopus_cards.http.validation import with_python_patterns
from octopus_cards.openapi import load_spec
from octopus_cards.settings import Settings

logger = logging.getLogger("octopus_cards")

HANDLERS = "octopus_cards.handlers"


async def prune_periodically(interval):
    while True:
        await anyio.sleep(interval)
        try:
            logger.info("%s", await anyio.to_thread.run_sync(models.prune))
        except Exception:  # the database may be briefly away; the next round retries
            logger.exception("pruning failed")


def lifespan_for(runtime):
    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with anyio.create_task_group() as tasks:
            if runtime.settings.prune_interval:
                tasks.start_soon(prune_periodically, runtime.settings.prune_interval)
            yield
            tasks.cancel_scope.cancel()

    return lifespan


def create_app(settings=None):
    settings = settings or Settings.from_env()
    models.connect(settings.database_url)
    spec = load_spec()
    runtime = Runtime.build(settings, spec)
    app = AsyncApp(
        __name__,
        lifespan=lifespan_for(runtime),
        middlewares=connexion_hooks.middleware_stack(settings.swagger_ui),
    )
    connexion_hooks.install(app)
    app.add_api(
        with_python_patterns(spec),
        resolver=connexion_hooks.ShortOperationIds(HANDLERS),
        validator_map=connexion_hooks.VALIDATOR_MAP,
        security_map=connexion_hooks.SECURITY_MAP,
        validate_responses=settings.validate_responses,
        # /openapi.json is an operation of the document itself, served as written (with its $refs,
        # which SDK generators turn into named models); connexion would serve a resolved copy.
        swagger_ui_options=SwaggerUIOptions(
            swagger_ui=settings.swagger_ui, swagger_ui_path=connexion_hooks.DOCS_PATH, serve_spec=False
        ),
    )
    errors.register(app)
    app.add_middleware(RequestContext, position=MiddlewarePosition.BEFORE_EXCEPTION, runtime=runtime)
    app.add_middleware(BodyLimit, position=MiddlewarePosition.BEFORE_ROUTING, max_bytes=settings.max_body_bytes)
    app.add_middleware(RouteGuard, position=MiddlewarePosition.BEFORE_ROUTING, paths=spec["paths"])
    return app
