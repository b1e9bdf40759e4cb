"""Push a Bundle into a running Grafana, idempotently: create what is missing, update what differs, delete what
was retired, nothing else.

Each object is read first and written only when Grafana's copy differs from ours, so a second push of the same
bundle writes nothing and reports every object "unchanged". Comparisons are on canonical JSON (key order,
tuples and ``1.0`` versus ``1`` do not count) after dropping what Grafana adds or rewrites:

- datasource: only the fields the bundle sets are compared (Grafana adds ``id``, ``orgId``, ``version``,
  ``readOnly``, …). ``secureJsonData`` is write-only (Grafana answers ``secureJsonFields: {key: true}``), so it
  is sent on create and on every update, and it makes an update only when a key we set is missing from
  ``secureJsonFields``. A changed password under an existing key is invisible: pass ``resend_secrets=True``
  after rotating it, which updates the datasource even when nothing visible differs.
- folder: the title. Renaming sends the version just read, so a concurrent edit is refused (412), not lost.
- dashboard: the model without ``id`` and ``version``, and the folder it lives in.
- retired alert rules: deleted by uid wherever Grafana keeps them (another group, or an old copy of ours: a
  group put only drops the rules of that group), and reported only when one was there to delete.
- rule group: ``interval`` and the rules in order, each without ``id``/``orgID``/``updated``/``provenance``,
  with ``for`` in seconds (Grafana answers "5m" for "300s"), and with the defaults Grafana writes into alert
  queries (``intervalMs`` 1000, ``maxDataPoints`` 43200, ``relativeTimeRange`` 0–0; ngalert ``AlertQuery``).

Failures: GrafanaUnavailable, a 401/403, or a refused datasource or folder (everything else depends on them)
stop the push. Any other refusal (Grafana's 400/409/412/422) fails that dashboard or rule group only: it is
reported as "failed" with Grafana's message and the push goes on.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from dashboards.bundle import Bundle
from gateways.grafana import GrafanaClient, GrafanaRefused

__all__ = ["PushItem", "PushReport", "format_report", "push"]

log = logging.getLogger(__name__)

Kind = Literal["datasource", "folder", "dashboard", "rule_group", "alert_rule"]
Action = Literal["created", "updated", "unchanged", "deleted", "failed"]

_ACTIONS: tuple[Action, ...] = ("created", "updated", "unchanged", "deleted", "failed")
_SHOWN_WHEN_ANY: frozenset[Action] = frozenset({"deleted", "failed"})
_DATASOURCE_SERVER_KEYS = frozenset({"id", "orgId", "version", "readOnly", "typeLogoUrl", "secureJsonFields"})
_DASHBOARD_SERVER_KEYS = frozenset({"id", "version"})
_RULE_SERVER_KEYS = frozenset({"id", "orgID", "updated", "provenance"})
_DURATION_UNITS = {"y": 31_536_000, "w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1, "ms": 0.001}
_DURATION = re.compile(r"(\d+)(ms|[ywdhms])")
_AUTH_STATUSES = frozenset({401, 403})
_MESSAGE = "ioc dashboards push"


@dataclass(frozen=True, slots=True)
class PushItem:
    """What push did to one object; ``uid`` of a rule group is "<folder uid>/<group title>"."""

    kind: Kind
    uid: str
    title: str
    action: Action
    error: str = ""


@dataclass(frozen=True, slots=True)
class PushReport:
    """Every object of the bundle, in push order: datasource, folder, dashboards, rule groups, then each retired
    rule that was deleted."""

    items: tuple[PushItem, ...]

    def count(self, action: Action) -> int:
        return sum(1 for item in self.items if item.action == action)

    @property
    def ok(self) -> bool:
        return self.count("failed") == 0


def push(bundle: Bundle, client: GrafanaClient, *, resend_secrets: bool = False) -> PushReport:
    """Make Grafana hold exactly the bundle's datasource, folder, dashboards and rule groups, and none of its
    retired rules."""
    _check(bundle)
    items = [_push_datasource(bundle.datasource, client, resend_secrets=resend_secrets),
             _push_folder(bundle.folder_uid, bundle.folder_title, client)]
    items += [_push_dashboard(model, bundle.folder_uid, client) for model in bundle.dashboards]
    items += [_push_rule_group(group, bundle.folder_uid, client) for group in bundle.rule_groups]
    items += [item for uid in bundle.retired_rules if (item := _retire_rule(uid, client)) is not None]
    return PushReport(tuple(items))


def format_report(report: PushReport) -> str:
    """One line per object, then "2 created, 1 updated, 5 unchanged" (and ", 1 deleted" or ", 1 failed" when
    any was)."""
    lines = [f"{item.action:<9}  {item.kind:<10}  {item.uid}  ({item.title})"
             + (f": {item.error}" if item.error else "") for item in report.items]
    counts = [f"{report.count(action)} {action}" for action in _ACTIONS
              if action not in _SHOWN_WHEN_ANY or report.count(action)]
    return "\n".join([*lines, ", ".join(counts)])


# -- one object each ---------------------------------------------------------------------------------------


def _push_datasource(body: Mapping[str, Any], client: GrafanaClient, *, resend_secrets: bool) -> PushItem:
    uid, title = str(body["uid"]), str(body["name"])
    stored = client.get_datasource(uid)
    if stored is None:
        client.create_datasource(body)
        return _done("datasource", uid, title, "created")
    if not resend_secrets and not _datasource_differs(body, stored):
        return PushItem("datasource", uid, title, "unchanged")
    if stored.get("readOnly"):
        # Grafana's 403 would read like a token problem; the fix is elsewhere.
        raise GrafanaRefused(f"datasource {uid} is provisioned from files (readOnly) and differs from the bundle: "
                             "change Grafana's provisioning files or remove them, then push again")
    client.update_datasource(uid, body)  # secureJsonData included: we cannot read back what Grafana holds
    return _done("datasource", uid, title, "updated")


def _datasource_differs(wanted: Mapping[str, Any], stored: Mapping[str, Any]) -> bool:
    for key, value in wanted.items():
        # null is how a body says "Grafana's default", which Grafana then answers with its zero value.
        if key in _DATASOURCE_SERVER_KEYS or key == "secureJsonData" or value is None:
            continue
        if _canonical(stored.get(key)) != _canonical(value):
            return True
    fields = stored.get("secureJsonFields") or {}
    return any(not fields.get(key) for key in wanted.get("secureJsonData") or {})


def _push_folder(uid: str, title: str, client: GrafanaClient) -> PushItem:
    stored = client.get_folder(uid)
    if stored is None:
        client.create_folder(uid, title)
        return _done("folder", uid, title, "created")
    if stored.get("title") == title:
        return PushItem("folder", uid, title, "unchanged")
    client.update_folder(uid, title, version=int(stored.get("version") or 0))
    return _done("folder", uid, title, "updated")


def _push_dashboard(model: Mapping[str, Any], folder_uid: str, client: GrafanaClient) -> PushItem:
    uid, title = str(model["uid"]), str(model["title"])
    wanted = _without(model, _DASHBOARD_SERVER_KEYS)
    try:
        stored = client.get_dashboard(uid)
        if stored is not None and stored.folder_uid == folder_uid and (
            _canonical(_without(stored.model, _DASHBOARD_SERVER_KEYS)) == _canonical(wanted)
        ):
            return PushItem("dashboard", uid, title, "unchanged")
        # overwrite: the bundle is the source of truth, whatever version an operator saved in between.
        client.save_dashboard(wanted, folder_uid=folder_uid, overwrite=True, message=_MESSAGE)
    except GrafanaRefused as err:
        return _failed("dashboard", uid, title, err)
    return _done("dashboard", uid, title, "created" if stored is None else "updated")


def _push_rule_group(group: Mapping[str, Any], folder_uid: str, client: GrafanaClient) -> PushItem:
    title = str(group["title"])
    uid = f"{folder_uid}/{title}"
    try:
        stored = client.get_rule_group(folder_uid, title)
        if stored is not None and (
            _canonical(_group_view(stored, folder_uid)) == _canonical(_group_view(group, folder_uid))
        ):
            return PushItem("rule_group", uid, title, "unchanged")
        client.put_rule_group(folder_uid, title, group)
    except GrafanaRefused as err:
        return _failed("rule_group", uid, title, err)
    return _done("rule_group", uid, title, "created" if stored is None else "updated")


def _retire_rule(uid: str, client: GrafanaClient) -> PushItem | None:
    """Delete a retired rule if Grafana still has it; None when it has not (nothing to report)."""
    try:
        stored = client.get_alert_rule(uid)
        if stored is None:
            return None
        if stored.get("provenance") == "file":
            # Grafana refuses the API (409 provenance mismatch): only a provisioning file can remove it.
            return _failed("alert_rule", uid, str(stored.get("title") or uid), GrafanaRefused(
                f"alert rule {uid} was provisioned from files: Grafana removes it when a provisioning file lists "
                "it under deleteRules (as deploy/grafana/provisioning/alerting/ioc-rules.yaml does)"))
        client.delete_alert_rule(uid)
    except GrafanaRefused as err:
        return _failed("alert_rule", uid, uid, err)
    return _done("alert_rule", uid, str(stored.get("title") or uid), "deleted")


def _done(kind: Kind, uid: str, title: str, action: Action) -> PushItem:
    log.info("%s %s %s (%s) in Grafana", action, kind, uid, title)
    return PushItem(kind, uid, title, action)


def _failed(kind: Kind, uid: str, title: str, err: GrafanaRefused) -> PushItem:
    if err.status in _AUTH_STATUSES:
        raise err  # the token, not this object: every other object would fail the same way
    log.error("Grafana refused %s %s (%s): %s", kind, uid, title, err)
    return PushItem(kind, uid, title, "failed", error=str(err))


# -- normal forms ------------------------------------------------------------------------------------------


def _group_view(group: Mapping[str, Any], folder_uid: str) -> dict[str, Any]:
    title = str(group["title"])
    return {
        "title": title,
        "interval": _duration_s(group.get("interval", 0)),
        "rules": [_rule_view(rule, folder_uid, title) for rule in group.get("rules") or []],
    }


def _rule_view(rule: Mapping[str, Any], folder_uid: str, group: str) -> dict[str, Any]:
    view = {key: value for key, value in rule.items() if key not in _RULE_SERVER_KEYS and value is not None}
    # Grafana files every rule of a PUT under the path's folder and group, whatever the body says.
    view.update(folderUID=folder_uid, ruleGroup=group)
    view["for"] = _duration_s(view.get("for", 0))
    if "keep_firing_for" in view:
        view["keep_firing_for"] = _duration_s(view["keep_firing_for"])
    view["isPaused"] = bool(view.get("isPaused", False))
    for key in ("annotations", "labels", "notification_settings", "record"):
        if not view.get(key):  # Grafana omits these when empty
            view.pop(key, None)
    view["data"] = [_query_view(query) for query in view.get("data") or []]
    return view


def _query_view(query: Mapping[str, Any]) -> dict[str, Any]:
    model = dict(query.get("model") or {})
    model.setdefault("intervalMs", 1000)
    model.setdefault("maxDataPoints", 43200)
    query_type = model["queryType"] if isinstance(model.get("queryType"), str) else query.get("queryType") or ""
    time_range = query.get("relativeTimeRange") or {}
    return {**query, "queryType": query_type, "model": model,
            "relativeTimeRange": {"from": time_range.get("from", 0), "to": time_range.get("to", 0)}}


def _duration_s(value: object) -> float:
    """Seconds from an int or a Prometheus duration ("5m", "1h30m", "0s")."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    text = str(value)
    if not text or _DURATION.sub("", text):
        raise ValueError(f"not a duration: {value!r}")
    return sum(int(count) * _DURATION_UNITS[unit] for count, unit in _DURATION.findall(text))


def _without(model: Mapping[str, Any], keys: frozenset[str]) -> dict[str, Any]:
    return {key: value for key, value in model.items() if key not in keys}


def _canonical(value: object) -> str:
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _plain(value: object) -> object:
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # Grafana's Go encoder writes 1.0 as 1
    return value


def _check(bundle: Bundle) -> None:
    """Refuse a bundle push could never converge on (it would report "updated" forever): a builder bug."""
    problems: list[str] = []
    if not bundle.folder_uid or not bundle.folder_title:
        problems.append("the folder needs a uid and a title")
    if not all(bundle.datasource.get(key) for key in ("uid", "name", "type")):
        problems.append("the datasource needs uid, name and type")
    uids = [model.get("uid") for model in bundle.dashboards]
    if not all(uids) or len(set(uids)) != len(uids) or not all(model.get("title") for model in bundle.dashboards):
        problems.append("every dashboard needs a title and a uid of its own")
    titles = [group.get("title") for group in bundle.rule_groups]
    if not all(titles) or len(set(titles)) != len(titles):
        problems.append("every rule group needs a title of its own")
    for group in bundle.rule_groups:
        for rule in group.get("rules") or []:
            if not rule.get("uid"):
                problems.append(f"rule {rule.get('title')!r} in group {group.get('title')!r} has no uid")
            if rule.get("folderUID", bundle.folder_uid) != bundle.folder_uid or (
                rule.get("ruleGroup", group.get("title")) != group.get("title")
            ):
                problems.append(f"rule {rule.get('uid')!r} names another folder or group than the one it is in")
            try:
                _duration_s(rule.get("for", 0))
            except ValueError as err:
                problems.append(f"rule {rule.get('uid')!r}: {err}")
    kept = {rule.get("uid") for group in bundle.rule_groups for rule in group.get("rules") or []}
    if revived := sorted(kept & set(bundle.retired_rules)):
        problems.append(f"rules {revived} are both retired and in a rule group")
    if problems:
        raise ValueError("bundle cannot be pushed: " + "; ".join(problems))
