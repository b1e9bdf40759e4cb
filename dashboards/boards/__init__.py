"""The platform's boards, one module each; ``all_boards()`` builds them in menu order."""

from __future__ import annotations

from dashboards.boards import city, device, incidents, network, pipeline, zone
from dashboards.panels import Board

__all__ = ["all_boards"]


def all_boards() -> list[Board]:
    return [city.build(), incidents.build(), zone.build(), device.build(), network.build(), pipeline.build()]
