"""The FastAPI application, built by ``create_app`` from settings; nothing happens at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from zoneinfo import ZoneInfo

from fastapi import FastAPI

from gateways.database import open_pool
from ioc_api import errors
from ioc_api.body_guard import BodyGuard, BodyLimits
from ioc_api.broker import BrokerControl
from ioc_api.deps import authenticator
from ioc_api.provisioning import Provisioner
from ioc_api.queries.warnings import Issuer
from ioc_api.rate_limit import Slots, TokenBuckets
from ioc_api.registration import RegistrationRules
from ioc_api.routes import (
    alarms,
    audit,
    dead_letters,
    devices,
    gateways,
    health,
    incidents,
    mqtt_accounts,
    users,
    zone_status,
    zones,
)
from ioc_api.routes import notifications as notification_routes
from ioc_api.routes import open_data as open_data_routes
from ioc_api.routes import warnings as warnings_routes
from ioc_core.catalogue import DeviceCatalogue
from ioc_core.settings import (
    ApiSettings,
    BrokerSettings,
    CapSettings,
    ChirpStackSettings,
    DatabaseSettings,
    FeedSettings,
    OpenDataSettings,
    SopSettings,
    load,
)
from operations.sop import SopLibrary, default_sop_dir

__all__ = ["API_PREFIX", "create_app"]

API_PREFIX = "/api/v1"


def create_app(
    database: DatabaseSettings,
    api: ApiSettings | None = None,
    *,
    catalogue: DeviceCatalogue | None = None,
    chirpstack: ChirpStackSettings | None = None,
    broker: BrokerSettings | None = None,
    open_data: OpenDataSettings | None = None,
    cap: CapSettings | None = None,
    feed: FeedSettings | None = None,
    background_poll_s: float = 5.0,
    sop: SopLibrary | None = None,
) -> FastAPI:
    """The API; ``catalogue`` lists the models and codecs devices may use (the codec rules's, in ``ioc api``).

    ``broker`` defaults to the IOC_BROKER_* environment (unset: developers' MQTT credentials are stored only),
    ``open_data`` (licence, per-key limits of the open-data routes) to the IOC_OPEN_* environment, ``cap``
    (public warnings' sender, identifiers, public rate) to IOC_CAP_*, ``feed`` (the public MQTT feed's topic
    prefix, where approved warnings are published) to IOC_FEED_*. ``sop`` (the SOP cards shown with incidents)
    defaults to the folder IOC_SOP_DIR names, else the shipped ``deploy/sop``, read and validated here: a bad
    card stops the app before it serves (SopError, one line).
    """
    settings = api or load(ApiSettings)
    rules = RegistrationRules(catalogue or DeviceCatalogue(),
                              chirpstack or ChirpStackSettings.model_construct(api=None))
    sop_cards = sop if sop is not None else SopLibrary.load(load(SopSettings).dir or default_sop_dir())
    broker_control = BrokerControl.from_settings(broker if broker is not None else load(BrokerSettings))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = open_pool(database.dsn, max_size=settings.pool_size)
        app.state.rules = rules
        app.state.sop = sop_cards
        app.state.broker = broker_control
        app.state.timezone = settings.timezone
        app.state.pool_timeout_s = settings.pool_timeout_s
        app.state.provisioner = Provisioner(app.state.pool, rules.chirpstack, poll_s=background_poll_s)
        app.state.provisioner.start()
        try:
            yield
        finally:
            app.state.provisioner.stop()
            app.state.pool.close()

    app = FastAPI(
        title="IOC platform API",
        summary="Device rules, commissioning and monitoring for the city's LoRaWAN sensors",
        version="0.1.0",
        lifespan=lifespan,
    )
    errors.install(app, retry_after_s=settings.retry_after_s)
    app.state.limits = settings
    app.state.imports = Slots(settings.imports_max, settings.imports_per_key, what="import",
                              verbs=("runs", "running"))
    limits = BodyLimits(default=settings.body_max_bytes, timeout_s=settings.body_timeout_s,
                        paths={f"{API_PREFIX}/devices:import": settings.import_max_bytes,
                               **settings.route_body_max_bytes})
    app.add_middleware(BodyGuard, limits=limits, prefix=API_PREFIX, retry_after_s=settings.retry_after_s,
                       authenticate=authenticator(lambda: app.state.pool, settings.pool_timeout_s))
    app.state.open_data = open_data_routes.OpenData.from_settings(
        open_data if open_data is not None else load(OpenDataSettings))
    cap_settings = cap if cap is not None else load(CapSettings)
    app.state.warnings = warnings_routes.WarningsState(
        Issuer(cap_settings, ZoneInfo(settings.timezone), (feed if feed is not None else load(FeedSettings)).prefix),
        TokenBuckets(cap_settings.rate_per_minute, cap_settings.rate_burst), API_PREFIX,
        app.state.open_data.settings.base_url)
    app.include_router(health.router)
    for router in (users.router, zones.router, devices.router, gateways.router, dead_letters.router, audit.router,
                   mqtt_accounts.router, open_data_routes.router, warnings_routes.router, zone_status.router,
                   alarms.router, incidents.router, notification_routes.router):
        app.include_router(router, prefix=API_PREFIX, responses=errors.RESPONSES)
    app.include_router(warnings_routes.public_router, prefix=API_PREFIX)  # no key: its own error responses
    return app
