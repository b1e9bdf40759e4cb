"""The FastAPI application, built by ``create_app`` from settings; nothing happens at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateways.database import open_pool
from ioc_api import errors
from ioc_api.routes import health, users
from ioc_core.settings import ApiSettings, DatabaseSettings

__all__ = ["create_app"]


def create_app(database: DatabaseSettings, api: ApiSettings | None = None) -> FastAPI:
    settings = api or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = open_pool(database.dsn, max_size=settings.api_pool_size)
        try:
            yield
        finally:
            app.state.pool.close()

    app = FastAPI(
        title="IOC platform API",
        summary="Device registry, commissioning and monitoring for the city's LoRaWAN sensors",
        version="0.1.0",
        lifespan=lifespan,
    )
    errors.install(app)
    app.include_router(health.router)
    app.include_router(users.router, prefix="/api/v1")
    return app
