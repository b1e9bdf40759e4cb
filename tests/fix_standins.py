"""The stand-ins for systems that cannot run here (ChirpStack, Grafana), and our adapters' clients of them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateways.chirpstack.api import ChirpStackClient
from gateways.grafana import GrafanaClient
from tests.standins.chirpstack import ChirpStackStandIn
from tests.standins.grafana import GrafanaStandIn


@pytest.fixture
def chirpstack() -> Iterator[ChirpStackStandIn]:
    """The stand-in ChirpStack, serving its gRPC API on a free loopback port."""
    with ChirpStackStandIn() as server:
        yield server


@pytest.fixture
def chirpstack_client(chirpstack: ChirpStackStandIn) -> Iterator[ChirpStackClient]:
    """Our ChirpStack adapter, connected to the stand-in."""
    with ChirpStackClient(chirpstack.target, chirpstack.token, timeout_s=5.0) as client:
        yield client


@pytest.fixture
def grafana() -> Iterator[GrafanaStandIn]:
    """The stand-in Grafana, serving its HTTP API on a free loopback port."""
    with GrafanaStandIn() as server:
        yield server


@pytest.fixture
def grafana_client(grafana: GrafanaStandIn) -> Iterator[GrafanaClient]:
    """Our Grafana adapter, connected to the stand-in."""
    with GrafanaClient(grafana.url, grafana.token, timeout_s=5.0) as client:
        yield client
