"""Everything the platform puts into Grafana, as the JSON bodies of Grafana's HTTP API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Bundle"]


@dataclass(frozen=True, slots=True)
class Bundle:
    """One folder holding the platform's boards and alert rule groups, and the datasource they query.

    ``datasource`` is the body of ``POST /api/datasources`` (with ``uid``); ``dashboards`` are dashboard
    models (each with ``uid`` and ``title``, no ``id``/``version``); ``rule_groups`` are bodies of
    ``PUT /api/v1/provisioning/folder/{folderUid}/rule-groups/{group}`` (``title``, ``interval`` in
    seconds, ``rules`` each with ``uid``, ``folderUID`` and ``ruleGroup``); ``retired_rules`` are uids of alert
    rules earlier bundles held and this one does not: push deletes them wherever Grafana keeps them.
    """

    folder_uid: str
    folder_title: str
    datasource: dict[str, Any]
    dashboards: list[dict[str, Any]] = field(default_factory=list)
    rule_groups: list[dict[str, Any]] = field(default_factory=list)
    retired_rules: list[str] = field(default_factory=list)
