"""A stand-in for Grafana 11's HTTP API: the endpoints push uses, served over real HTTP on loopback, state in memory.

Shapes and status codes follow Grafana's documentation and handlers: ``docs/sources/developers/http_api/
data_source.md``, ``folder.md``, ``dashboard.md`` and ``alerting_provisioning.md``; ``pkg/api/dashboard.go``,
``pkg/api/apierrors/{dashboard,folder}.go``, ``pkg/services/dashboards/errors.go`` and ``pkg/services/ngalert/
api/api_provisioning.go``. Where a client can tell: a dashboard saved into a missing folder is 400 "folder not
found"; a rule group put into a missing folder is 400 "invalid alert rule: folder does not exist"; a stale folder
version is 412 "version-mismatch"; a duplicate datasource name or uid is 409; an alert query's model gains
``intervalMs``/``maxDataPoints`` defaults and ``for`` reads back in Prometheus form ("300s" → "5m"); a rule put
without ``X-Disable-Provenance`` reads back with provenance "api". ``token`` acts as an Admin service account,
``viewer_token`` as a Viewer (403 on writes). A single rule is read and deleted by uid wherever it lives
(``GET``/``DELETE /api/v1/provisioning/alert-rules/:uid``; delete answers 204 with no body, and the group goes
with its last rule; a rule whose stored provenance differs from the request's, e.g. "file", is 409
``alerting.provenanceMismatch``, as ``AlertRuleService.DeleteAlertRule`` answers). Requests are counted by
"METHOD /path" so tests can assert writes.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["GrafanaStandIn"]

Json = dict[str, Any]
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_UNITS = (("y", 31_536_000), ("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
_DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class _Error(Exception):
    """Ends a request with this status and Grafana's error body: ``{"message": …}`` and any extra keys."""

    def __init__(self, code: int, message: str, /, **extra: Any) -> None:
        super().__init__(message)
        self.code, self.body = code, {"message": message, **extra}


class GrafanaStandIn:
    """One in-memory Grafana organisation (orgId 1) served on ``127.0.0.1``; start it, or use ``with``."""

    def __init__(self, token: str = "standin-admin-token", viewer_token: str = "standin-viewer-token") -> None:
        self.token, self.viewer_token = token, viewer_token
        self.url = ""
        self.calls: Counter[str] = Counter()  # "PUT /api/folders/ioc", path as sent (percent-encoded)
        self.delay_s = 0.0  # every answer waits this long: lets a test hit the client's timeout
        self._failures: list[tuple[int, str]] = []
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)
        self.datasources: dict[str, Json] = {}  # by uid, as GET answers them
        self.secrets: dict[str, dict[str, str]] = {}  # secureJsonData by datasource uid, never answered
        self.folders: dict[str, Json] = {}
        self.dashboards: dict[str, tuple[Json, str]] = {}  # uid -> (stored model, folder uid or "")
        self.rule_groups: dict[tuple[str, str], Json] = {}  # (folder uid, group title) -> group as GET answers
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., tuple[int, Json]]]] = [
            ("GET", re.compile(r"/api/health"), self._health),
            ("GET", re.compile(r"/api/datasources/uid/([^/]+)"), self._datasource_get),
            ("POST", re.compile(r"/api/datasources"), self._datasource_create),
            ("PUT", re.compile(r"/api/datasources/uid/([^/]+)"), self._datasource_update),
            ("GET", re.compile(r"/api/folders/([^/]+)"), self._folder_get),
            ("POST", re.compile(r"/api/folders"), self._folder_create),
            ("PUT", re.compile(r"/api/folders/([^/]+)"), self._folder_update),
            ("GET", re.compile(r"/api/dashboards/uid/([^/]+)"), self._dashboard_get),
            ("POST", re.compile(r"/api/dashboards/db"), self._dashboard_save),
            ("GET", re.compile(r"/api/v1/provisioning/folder/([^/]+)/rule-groups/([^/]+)"), self._group_get),
            ("PUT", re.compile(r"/api/v1/provisioning/folder/([^/]+)/rule-groups/([^/]+)"), self._group_put),
            ("GET", re.compile(r"/api/v1/provisioning/alert-rules/([^/]+)"), self._rule_get),
            ("DELETE", re.compile(r"/api/v1/provisioning/alert-rules/([^/]+)"), self._rule_delete),
        ]

    # -- lifecycle and levers --------------------------------------------------------------------------------

    def start(self) -> str:
        if self._server is None:
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
            self._server.daemon_threads = True
            self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
            self._thread.start()
            self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        """Stop serving and close the port: clients then see connection refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> GrafanaStandIn:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def fail_next(self, status: int = 503, message: str = "stand-in failure") -> None:
        """The next authenticated request is answered with this status instead (queued, one per call)."""
        with self._lock:
            self._failures.append((status, message))

    def writes(self) -> int:
        return sum(n for call, n in self.calls.items() if call.split(" ", 1)[0] in _WRITES)

    # -- dispatch --------------------------------------------------------------------------------------------

    def _serve(self, method: str, target: str, headers: Any, body: bytes) -> tuple[int, Json]:
        path = urlsplit(target).path
        with self._lock:
            self.calls[f"{method} {path}"] += 1
        time.sleep(self.delay_s)
        for route_method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match is None or route_method != method:
                continue
            try:
                if handler != self._health:
                    self._authorize(method, headers.get("Authorization", ""))
                payload = json.loads(body) if body else {}
                if not isinstance(payload, dict):
                    raise _Error(400, "bad request data")
                with self._lock:
                    return handler(*(unquote(g) for g in match.groups()), payload, headers)
            except json.JSONDecodeError:
                return 400, {"message": "bad request data"}
            except _Error as err:
                return err.code, err.body
        return 404, {"message": "Not found"}

    def _authorize(self, method: str, authorization: str) -> None:
        scheme, _, token = authorization.partition(" ")
        if scheme != "Bearer" or not token:
            raise _Error(401, "Unauthorized")
        if token not in (self.token, self.viewer_token):
            raise _Error(401, "Invalid API key", messageId="api-key.invalid", statusCode=401)
        if token == self.viewer_token and method in _WRITES:
            raise _Error(403, "You'll need additional permissions to perform this action. Permissions needed: "
                              "any of datasources:write, folders:write, dashboards:write, alert.provisioning:write",
                         title="Access denied", accessErrorId=f"ACE{uuid.uuid4().int % 10**10}")
        with self._lock:
            if self._failures:
                status, message = self._failures.pop(0)
                raise _Error(status, message)

    # -- handlers --------------------------------------------------------------------------------------------

    def _health(self, body: Json, headers: Any) -> tuple[int, Json]:
        return 200, {"commit": "standin", "database": "ok", "version": "11.6.0"}

    def _datasource_get(self, uid: str, body: Json, headers: Any) -> tuple[int, Json]:
        if uid not in self.datasources:
            raise _Error(404, "Data source not found")
        return 200, copy.deepcopy(self.datasources[uid])

    def _datasource_create(self, body: Json, headers: Any) -> tuple[int, Json]:
        uid = body.get("uid") or uuid.uuid4().hex[:14]
        if uid in self.datasources:
            raise _Error(409, "data source with the same uid already exists")
        return self._datasource(uid, body, None)

    def _datasource_update(self, uid: str, body: Json, headers: Any) -> tuple[int, Json]:
        if uid not in self.datasources:
            raise _Error(404, "Data source not found")
        return self._datasource(uid, body, self.datasources[uid])

    def _datasource(self, uid: str, body: Json, old: Json | None) -> tuple[int, Json]:
        if not body.get("name") or not body.get("type"):
            raise _Error(400, "bad request data")  # web.Bind: `binding:"Required"`
        if any(ds["name"] == body["name"] and key != uid for key, ds in self.datasources.items()):
            raise _Error(409, "data source with the same name already exists")
        # Secure fields left out of an update keep their stored value (datasources/service: fillWithSecureJSONData).
        kept = self.secrets.get(uid, {}) if old else {}
        self.secrets[uid] = {**kept, **{k: str(v) for k, v in (body.get("secureJsonData") or {}).items()}}
        self.datasources[uid] = {
            "id": old["id"] if old else next(self._ids), "uid": uid, "orgId": 1, "name": body["name"],
            "type": body["type"], "typeLogoUrl": "", "access": body.get("access", ""), "url": body.get("url", ""),
            "user": body.get("user", ""), "database": body.get("database", ""),
            "basicAuth": body.get("basicAuth", False), "basicAuthUser": body.get("basicAuthUser", ""),
            "withCredentials": body.get("withCredentials", False), "isDefault": body.get("isDefault", False),
            "jsonData": body.get("jsonData") or {}, "secureJsonFields": {key: True for key in self.secrets[uid]},
            "version": old["version"] + 1 if old else 1, "readOnly": False,
        }
        message = "Datasource updated" if old else "Datasource added"
        stored = copy.deepcopy(self.datasources[uid])
        return 200, {"datasource": stored, "id": stored["id"], "message": message, "name": stored["name"]}

    def _folder_get(self, uid: str, body: Json, headers: Any) -> tuple[int, Json]:
        if uid not in self.folders:
            raise _Error(404, "folder not found", status="not-found")
        return 200, copy.deepcopy(self.folders[uid])

    def _folder_create(self, body: Json, headers: Any) -> tuple[int, Json]:
        title, uid = body.get("title") or "", body.get("uid") or uuid.uuid4().hex[:14]
        if not title:
            raise _Error(400, "folder title cannot be empty")
        if uid in self.folders or uid in self.dashboards:
            raise _Error(409, "a folder/dashboard with the same uid already exists")
        if any(f["title"] == title for f in self.folders.values()):
            raise _Error(409, "a folder with the same name already exists in the current location")
        self.folders[uid] = {
            "id": next(self._ids), "uid": uid, "title": title, "url": f"/dashboards/f/{uid}/{_slug(title)}",
            "hasAcl": False, "canSave": True, "canEdit": True, "canAdmin": True, "canDelete": True,
            "createdBy": "standin", "created": _now(), "updatedBy": "standin", "updated": _now(), "version": 1,
        }
        return 200, copy.deepcopy(self.folders[uid])

    def _folder_update(self, uid: str, body: Json, headers: Any) -> tuple[int, Json]:
        folder = self.folders.get(uid)
        if folder is None:
            raise _Error(404, "folder not found", status="not-found")
        if not body.get("overwrite") and body.get("version") != folder["version"]:
            raise _Error(412, "the folder has been changed by someone else", status="version-mismatch")
        title = body.get("title") or folder["title"]
        folder.update(title=title, url=f"/dashboards/f/{uid}/{_slug(title)}", updated=_now(),
                      version=folder["version"] + 1)
        return 200, copy.deepcopy(folder)

    def _dashboard_get(self, uid: str, body: Json, headers: Any) -> tuple[int, Json]:
        if uid not in self.dashboards:
            raise _Error(404, "Dashboard not found")
        model, folder_uid = self.dashboards[uid]
        meta: Json = {"type": "db", "canSave": True, "canEdit": True, "canAdmin": True, "canStar": True,
                      "slug": _slug(model["title"]), "url": f"/d/{uid}/{_slug(model['title'])}",
                      "version": model["version"], "provisioned": False, "folderTitle": "General"}
        if folder_uid:  # the root folder has no folderUid in meta (omitempty)
            folder = self.folders[folder_uid]
            meta.update(folderId=folder["id"], folderUid=folder_uid, folderTitle=folder["title"],
                        folderUrl=folder["url"])
        return 200, {"dashboard": copy.deepcopy(model), "meta": meta}

    def _dashboard_save(self, body: Json, headers: Any) -> tuple[int, Json]:
        dashboard, folder_uid = body.get("dashboard"), body.get("folderUid") or ""
        if not isinstance(dashboard, dict):
            raise _Error(400, "bad request data")
        if not dashboard.get("title"):
            raise _Error(400, "Dashboard title cannot be empty", status="empty-name")
        if folder_uid and folder_uid not in self.folders:
            raise _Error(400, "folder not found")  # apierrors.ToDashboardErrorResponse: ErrFolderNotFound
        uid = dashboard.get("uid") or uuid.uuid4().hex[:14]
        existing = self.dashboards.get(uid)
        if existing is not None and not body.get("overwrite") and dashboard.get("version") != existing[0]["version"]:
            raise _Error(412, "The dashboard has been changed by someone else", status="version-mismatch")
        if any(m["title"] == dashboard["title"] and f == folder_uid and key != uid
               for key, (m, f) in self.dashboards.items()):
            raise _Error(412, "A dashboard with the same name in the folder already exists", status="name-exists")
        model = copy.deepcopy(dashboard)
        model.update(id=existing[0]["id"] if existing else next(self._ids), uid=uid,
                     version=existing[0]["version"] + 1 if existing else 1)
        self.dashboards[uid] = (model, folder_uid)
        slug = _slug(model["title"])
        return 200, {"id": model["id"], "uid": uid, "url": f"/d/{uid}/{slug}", "status": "success",
                     "version": model["version"], "slug": slug, "folderUid": folder_uid}

    def _group_get(self, folder_uid: str, group: str, body: Json, headers: Any) -> tuple[int, Json]:
        if (folder_uid, group) not in self.rule_groups:
            raise _Error(404, "Not found", messageId="alerting.alert-rule.notFound", statusCode=404)
        return 200, copy.deepcopy(self.rule_groups[(folder_uid, group)])

    def _group_put(self, folder_uid: str, group: str, body: Json, headers: Any) -> tuple[int, Json]:
        if folder_uid not in self.folders:
            raise _Error(400, "invalid alert rule: folder does not exist")  # AlertRuleService.ensureNamespace
        interval = body.get("interval")
        if not isinstance(interval, int) or interval <= 0 or interval % 10:
            raise _Error(400, f"invalid alert rule: interval ({interval}) should be non-zero and divided exactly "
                              "by scheduler interval: 10")
        provenance = "" if "X-Disable-Provenance" in headers else "api"
        old = {rule["uid"]: rule for rule in self.rule_groups.get((folder_uid, group), {}).get("rules", [])}
        rules = [self._rule(rule, folder_uid, group, provenance, old) for rule in body.get("rules") or []]
        self.rule_groups[(folder_uid, group)] = {"title": group, "folderUid": folder_uid, "interval": interval,
                                                 "rules": rules}
        return 200, {**body, "folderUid": folder_uid, "title": group}  # Grafana echoes the request

    def _find_rule(self, uid: str) -> tuple[tuple[str, str], int] | None:
        for key, stored in self.rule_groups.items():
            for i, rule in enumerate(stored["rules"]):
                if rule["uid"] == uid:
                    return key, i
        return None

    def _rule_get(self, uid: str, body: Json, headers: Any) -> tuple[int, Json]:
        found = self._find_rule(uid)
        if found is None:
            raise _Error(404, "Not found", messageId="alerting.alert-rule.notFound", statusCode=404)
        key, i = found
        return 200, copy.deepcopy(self.rule_groups[key]["rules"][i])

    def _rule_delete(self, uid: str, body: Json, headers: Any) -> tuple[int, Json]:
        # 204 whether or not the rule existed; a group lives only through its rules, so the last one takes it.
        # AlertRuleService.DeleteAlertRule: the request's provenance ('api', or none with X-Disable-Provenance)
        # must match the stored one unless that is none.
        found = self._find_rule(uid)
        if found is not None:
            key, i = found
            stored = self.rule_groups[key]["rules"][i].get("provenance", "")
            provided = "" if "X-Disable-Provenance" in headers else "api"
            if stored and stored != provided:
                raise _Error(409, f"cannot delete with provided provenance '{provided}', needs '{stored}'",
                             messageId="alerting.provenanceMismatch", statusCode=409)
            del self.rule_groups[key]["rules"][i]
            if not self.rule_groups[key]["rules"]:
                del self.rule_groups[key]
        return 204, {}

    def _rule(self, rule: Json, folder_uid: str, group: str, provenance: str, old: dict[str, Json]) -> Json:
        for key in ("title", "condition", "data", "noDataState", "execErrState"):
            if not rule.get(key):
                raise _Error(400, f"invalid alert rule: {key} is required")
        uid = rule.get("uid") or uuid.uuid4().hex[:14]
        stored: Json = {
            "id": old[uid]["id"] if uid in old else next(self._ids), "uid": uid, "orgID": 1,
            "folderUID": folder_uid, "ruleGroup": group, "title": rule["title"], "condition": rule["condition"],
            "data": [_alert_query(query) for query in rule["data"]], "updated": _now(),
            "noDataState": rule["noDataState"], "execErrState": rule["execErrState"],
            "for": _prometheus_duration(rule.get("for", "0s")), "isPaused": bool(rule.get("isPaused", False)),
        }
        for key in ("annotations", "labels", "notification_settings", "record"):
            if rule.get(key):  # omitempty
                stored[key] = copy.deepcopy(rule[key])
        if provenance:
            stored["provenance"] = provenance
        return stored


def _alert_query(query: Json) -> Json:
    # ngalert/models AlertQuery.PreSave: defaults go into the stored model; queryType comes from the model.
    model = copy.deepcopy(query.get("model") or {})
    model.setdefault("intervalMs", 1000)
    model.setdefault("maxDataPoints", 43200)
    query_type = model["queryType"] if isinstance(model.get("queryType"), str) else query.get("queryType", "")
    time_range = query.get("relativeTimeRange") or {}
    return {"refId": query.get("refId", ""), "queryType": query_type,
            "relativeTimeRange": {"from": time_range.get("from", 0), "to": time_range.get("to", 0)},
            "datasourceUid": query.get("datasourceUid", ""), "model": model}


def _prometheus_duration(value: object) -> str:
    """Prometheus ``model.Duration`` as Grafana writes it back: "300s" and 300 both read "5m"."""
    if isinstance(value, int):
        seconds = value
    else:
        match = _DURATION.fullmatch(str(value))
        if match is None or not str(value):
            raise _Error(400, f"bad request data: not a valid duration string: {value!r}")
        seconds = sum(int(n or 0) * size for n, (_, size) in zip(match.groups(), _UNITS, strict=True))
    parts = []
    for unit, size in _UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _handler_for(standin: GrafanaStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Grafana speaks it
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
        timeout = 10

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, answer = standin._serve(self.command, self.path, self.headers, body)
            data = b"" if status == 204 else json.dumps(answer).encode()  # No Content has no body
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass  # tests read the counters, not stderr

    return Handler
