"""The boards and rules as Grafana's JSON, the provisioning files a stock Grafana reads, and the push bundle.

Provisioning file formats follow Grafana's documentation ("Provision Grafana": data sources and dashboard
providers; "Provision alerting resources with configuration files": rule groups). Files use ``$VAR``
environment references, which Grafana expands when it reads them, so no password is written to disk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from pydantic import SecretStr

from dashboards.alerts import FOLDER_UID, GROUP, RETIRED_RULES, all_rules, rule_group
from dashboards.boards import all_boards
from dashboards.bundle import Bundle
from dashboards.sql import DATASOURCE_TYPE, DATASOURCE_UID

__all__ = [
    "DATASOURCE_NAME",
    "FOLDER_TITLE",
    "DatabaseTarget",
    "bundle",
    "dashboard_models",
    "render_files",
    "rule_group_model",
    "write_files",
]

FOLDER_TITLE = "IOC Đà Nẵng"
DATASOURCE_NAME = "IOC PostgreSQL"
# Where the compose file mounts deploy/grafana/dashboards inside the Grafana container.
DASHBOARDS_PATH = "/var/lib/grafana/dashboards/ioc"


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    """How Grafana reaches PostgreSQL: ``host:port``, database, role and password."""

    address: str
    database: str
    user: str
    password: SecretStr | None
    sslmode: str = "disable"

    @classmethod
    def from_url(cls, url: str, sslmode: str = "disable") -> DatabaseTarget:
        parts = urlsplit(url)
        host = parts.hostname or "127.0.0.1"
        address = f"[{host}]:{parts.port or 5432}" if ":" in host else f"{host}:{parts.port or 5432}"
        password = SecretStr(unquote(parts.password)) if parts.password else None
        return cls(address, unquote(parts.path.lstrip("/")) or "ioc", unquote(parts.username or "ioc"), password,
                   sslmode)


def _to_json(obj: object) -> Any:
    # The SDK's encoder turns its models into plain JSON; loads() gives dicts we can compare and dump sorted.
    return json.loads(json.dumps(obj, cls=JSONEncoder))


def dashboard_models() -> list[dict[str, Any]]:
    return [_to_json(board.model) for board in all_boards()]


def rule_group_model() -> dict[str, Any]:
    """The rule group as the provisioning HTTP API takes it."""
    group: dict[str, Any] = _to_json(rule_group(all_rules()))
    return group


def _json_data(database: str, sslmode: str, timescaledb: bool) -> dict[str, Any]:
    return {
        "connMaxLifetime": 14400,
        "database": database,
        "maxIdleConns": 10,
        "maxIdleConnsAuto": True,
        "maxOpenConns": 10,
        "postgresVersion": 1500,
        "sslmode": sslmode,
        # Grafana's $__timeGroup becomes time_bucket() with this on; our queries give the same rows either way.
        "timescaledb": timescaledb,
        # The boards' smallest useful $__interval: readings come every five minutes at best.
        "timeInterval": "1m",
    }


def bundle(target: DatabaseTarget, *, timescaledb: bool) -> Bundle:
    datasource: dict[str, Any] = {
        "uid": DATASOURCE_UID,
        "name": DATASOURCE_NAME,
        "type": DATASOURCE_TYPE,
        "access": "proxy",
        "url": target.address,
        "user": target.user,
        "isDefault": False,
        "jsonData": _json_data(target.database, target.sslmode, timescaledb),
    }
    if target.password is not None:
        datasource["secureJsonData"] = {"password": target.password.get_secret_value()}
    return Bundle(FOLDER_UID, FOLDER_TITLE, datasource, dashboard_models(), [rule_group_model()],
                  retired_rules=list(RETIRED_RULES))


def _alert_file(group: dict[str, Any]) -> dict[str, Any]:
    """The HTTP API's rule group in the provisioning file's shape (folder by title, name instead of title)."""
    rules = []
    for rule in group["rules"]:
        rules.append({
            "uid": rule["uid"],
            "title": rule["title"],
            "condition": rule["condition"],
            "data": rule["data"],
            "noDataState": rule["noDataState"],
            "execErrState": rule["execErrState"],
            "for": rule["for"],
            "annotations": rule.get("annotations", {}),
            "labels": rule.get("labels", {}),
            "isPaused": False,
        })
    # deleteRules: Grafana keeps a rule provisioned from an earlier file until a file names it for deletion.
    return {"apiVersion": 1, "groups": [{
        "orgId": 1, "name": GROUP, "folder": FOLDER_TITLE, "interval": f"{group['interval']}s", "rules": rules,
    }], "deleteRules": [{"orgId": 1, "uid": uid} for uid in RETIRED_RULES]}


class _Dumper(yaml.SafeDumper):
    """SafeDumper writing multi-line strings (the rules' SQL) as literal blocks, as a person would."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _yaml(data: dict[str, Any], header: str) -> str:
    body = yaml.dump(data, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=1000)
    return f"# {header}\n# Generated by `ioc dashboards build`; edit dashboards/*.py instead.\n{body}"


def render_files(*, timescaledb: bool) -> dict[str, str]:
    """Every provisioning file by path relative to the output folder, as text."""
    files: dict[str, str] = {}
    datasource = {
        "apiVersion": 1,
        "datasources": [{
            "name": DATASOURCE_NAME,
            "uid": DATASOURCE_UID,
            "type": DATASOURCE_TYPE,
            "access": "proxy",
            "url": "$IOC_GRAFANA_DB_ADDRESS",
            "user": "$IOC_GRAFANA_DB_USER",
            "editable": False,
            "jsonData": _json_data("$IOC_GRAFANA_DB_NAME", "$IOC_GRAFANA_DB_SSLMODE", timescaledb),
            "secureJsonData": {"password": "$IOC_GRAFANA_DB_PASSWORD"},
        }],
    }
    files["provisioning/datasources/ioc.yaml"] = _yaml(
        datasource, "The platform database. Grafana expands $IOC_GRAFANA_DB_* from its environment at start-up.")
    providers = {
        "apiVersion": 1,
        "providers": [{
            "name": "IOC",
            "orgId": 1,
            "folder": FOLDER_TITLE,
            "folderUid": FOLDER_UID,
            "type": "file",
            "disableDeletion": True,
            "allowUiUpdates": False,
            "updateIntervalSeconds": 60,
            "options": {"path": DASHBOARDS_PATH, "foldersFromFilesStructure": False},
        }],
    }
    files["provisioning/dashboards/ioc.yaml"] = _yaml(
        providers, f"Loads the IOC boards from {DASHBOARDS_PATH} (deploy/grafana/dashboards in the repository).")
    files["provisioning/alerting/ioc-rules.yaml"] = _yaml(
        _alert_file(rule_group_model()), "The IOC alert rules: watchdogs on the platform, which raises every other "
        "alarm itself (docs/grafana.md).")
    for model in dashboard_models():
        files[f"dashboards/{model['uid']}.json"] = json.dumps(model, indent=2, ensure_ascii=False) + "\n"
    return files


def write_files(out: Path, *, timescaledb: bool) -> list[tuple[Path, bool]]:
    """Write every file under ``out``; returns each path with whether its content changed."""
    written = []
    for relative, text in render_files(timescaledb=timescaledb).items():
        path = out / relative
        changed = not path.exists() or path.read_text(encoding="utf-8") != text
        if changed:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        written.append((path, changed))
    return written
