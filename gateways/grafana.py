"""The Grafana HTTP API adapter over grafana-client: datasources, folders, dashboards, alert rule groups and rules.

Errors, sorted by what the caller should do::

    IocError
    └── GrafanaError              .status holds the HTTP status (None when no answer came)
        ├── GrafanaUnavailable    (also a RetriableError) refused connection, timeout, 5xx, 429: back off, retry
        └── GrafanaRefused        401/403 (token wrong or lacking rights), 400/404/409/412/422 (Grafana's
                                  message): the same request will get the same answer

Grafana facts this module relies on (``docs/sources/developers/http_api/{data_source,folder,dashboard}.md``,
``alerting_provisioning.md``, ``pkg/api/apierrors/*.go``): every error body is JSON with a ``message``;
``PUT /api/folders/:uid`` needs the folder's current ``version`` (412 otherwise); ``GET /api/dashboards/uid/:uid``
answers ``{"dashboard": …, "meta": {"folderUid": …}}`` with ``folderUid`` absent for the root folder.

grafana-client lets ``niquests``' connection errors through untranslated (it only wraps ``Timeout`` and
``HTTPError``), so both families are caught here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import niquests.exceptions
from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaException
from pydantic import SecretStr

from ioc_core.errors import IocError, RetriableError

__all__ = [
    "GrafanaClient",
    "GrafanaError",
    "GrafanaRefused",
    "GrafanaUnavailable",
    "StoredDashboard",
]

_T = TypeVar("_T")

# 408 and 429 ask the client to come back later; every other 4xx is Grafana's considered answer.
_RETRIABLE_4XX = frozenset({408, 429})
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")

# Rule groups are written with "X-Disable-Provenance: true", so operators may still edit (or pause) a rule
# in the UI during an incident, as they can any dashboard pushed over this API. Push compares the whole group
# on every run, so a UI edit shows up as "updated" and is reverted by the next push: the code stays the source
# of truth. Grafana refuses to change a group's provenance from "api" back to none, so this must not flip.
_DISABLE_PROVENANCE = True


class GrafanaError(IocError):
    """Root of the errors this adapter raises; ``status`` is the HTTP status, None when none came back."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class GrafanaUnavailable(GrafanaError, RetriableError):
    """Grafana is unreachable, too slow or failing (5xx): keep the work and retry with backoff."""


class GrafanaRefused(GrafanaError):
    """Grafana (or this adapter, before sending) refused the request: retrying it unchanged will not help."""


@dataclass(frozen=True, slots=True)
class StoredDashboard:
    """A dashboard as Grafana holds it: the model (with Grafana's ``id`` and ``version``) and its folder."""

    model: dict[str, Any]
    folder_uid: str | None
    version: int


class GrafanaClient:
    """A synchronous client for one Grafana organisation, authenticated by a service-account token."""

    def __init__(self, url: str, token: SecretStr | str, *, timeout_s: float = 10.0) -> None:
        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        if not secret:
            raise GrafanaRefused("the Grafana token is empty: create a service account token with the Admin role")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise GrafanaRefused(f"Grafana URL must be http(s)://host[:port][/path], got {url!r}")
        self._url = url.rstrip("/")
        self._timeout_s = timeout_s
        prefix = parts.path.strip("/")
        # GrafanaApi, not GrafanaApi.from_url: from_url glues a sub-path to "api" without a slash, and would
        # take a user:password from the URL over our token. A plain string becomes grafana-client's TokenAuth
        # ("Authorization: Bearer …"). Typed Any: grafana-client's element methods are unannotated, and every
        # answer is checked by _object() below.
        self._api: Any = GrafanaApi(
            auth=secret, host=parts.hostname, port=parts.port, protocol=parts.scheme,
            url_path_prefix=f"{prefix}/" if prefix else "", timeout=timeout_s,
        )

    def close(self) -> None:
        self._api.client.s.close()

    def __enter__(self) -> GrafanaClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- health ----------------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``GET /api/health`` (needs no token): ``{"database": "ok", "version": …, "commit": …}``.

        Grafana answers 503 when its own database fails, which surfaces as GrafanaUnavailable.
        """
        # grafana-client's health.check() reads /api/frontend/settings instead, so the low-level call is used.
        return _object(self._call("GET /api/health", self._api.client.GET, "/health"), "GET /api/health")

    # -- datasources -----------------------------------------------------------------------------------------

    def get_datasource(self, uid: str) -> dict[str, Any] | None:
        what = f"GET /api/datasources/uid/{uid}"
        return self._get_or_none(what, self._api.datasource.get_datasource_by_uid, _segment(uid))

    def create_datasource(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /api/datasources``; answers ``{"datasource": …, "id": …, "message": …, "name": …}``."""
        what = "POST /api/datasources"
        return _object(self._call(what, self._api.datasource.create_datasource, dict(body)), what)

    def update_datasource(self, uid: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``PUT /api/datasources/uid/:uid``: replaces every field; secure fields left out of the body are kept."""
        what = f"PUT /api/datasources/uid/{uid}"
        return _object(self._call(what, self._api.datasource.update_datasource_by_uid, _segment(uid), dict(body)),
                       what)

    # -- folders ---------------------------------------------------------------------------------------------

    def get_folder(self, uid: str) -> dict[str, Any] | None:
        return self._get_or_none(f"GET /api/folders/{uid}", self._api.folder.get_folder, _segment(uid))

    def create_folder(self, uid: str, title: str) -> dict[str, Any]:
        what = "POST /api/folders"
        return _object(self._call(what, self._api.folder.create_folder, title, uid=uid), what)

    def update_folder(self, uid: str, title: str, *, version: int) -> dict[str, Any]:
        """Rename the folder; ``version`` is the one last read, so a concurrent change answers 412."""
        what = f"PUT /api/folders/{uid}"
        return _object(self._call(what, self._api.folder.update_folder, _segment(uid), title=title,
                                  version=version), what)

    # -- dashboards ------------------------------------------------------------------------------------------

    def get_dashboard(self, uid: str) -> StoredDashboard | None:
        what = f"GET /api/dashboards/uid/{uid}"
        found = self._get_or_none(what, self._api.dashboard.get_dashboard, _segment(uid))
        if found is None:
            return None
        model = _object(found.get("dashboard"), what)
        meta = found.get("meta")
        folder_uid = meta.get("folderUid") if isinstance(meta, dict) else None
        version = model.get("version")
        return StoredDashboard(
            model=model, folder_uid=folder_uid or None, version=version if isinstance(version, int) else 0
        )

    def save_dashboard(
        self, model: Mapping[str, Any], *, folder_uid: str, overwrite: bool = True, message: str = ""
    ) -> dict[str, Any]:
        """``POST /api/dashboards/db``; answers ``{"id", "uid", "url", "status": "success", "version", "slug"}``."""
        body: dict[str, Any] = {"dashboard": dict(model), "folderUid": folder_uid, "overwrite": overwrite}
        if message:
            body["message"] = message
        what = "POST /api/dashboards/db"
        return _object(self._call(what, self._api.dashboard.update_dashboard, body), what)

    # -- alert rule groups -----------------------------------------------------------------------------------

    def get_rule_group(self, folder_uid: str, group: str) -> dict[str, Any] | None:
        what = f"GET /api/v1/provisioning/folder/{folder_uid}/rule-groups/{group}"
        return self._get_or_none(
            what, self._api.alertingprovisioning.get_rule_group, _segment(folder_uid), _segment(group)
        )

    def put_rule_group(self, folder_uid: str, group: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the whole group (rules left out are deleted), without provenance (see _DISABLE_PROVENANCE)."""
        what = f"PUT /api/v1/provisioning/folder/{folder_uid}/rule-groups/{group}"
        return _object(self._call(what, self._api.alertingprovisioning.update_rule_group, _segment(folder_uid),
                                  _segment(group), dict(body), disable_provenance=_DISABLE_PROVENANCE), what)

    # -- single alert rules ----------------------------------------------------------------------------------

    def get_alert_rule(self, uid: str) -> dict[str, Any] | None:
        """``GET /api/v1/provisioning/alert-rules/:uid``: the rule with its ``folderUID`` and ``ruleGroup``."""
        what = f"GET /api/v1/provisioning/alert-rules/{uid}"
        return self._get_or_none(what, self._api.alertingprovisioning.get_alertrule, _segment(uid))

    def delete_alert_rule(self, uid: str) -> None:
        """``DELETE /api/v1/provisioning/alert-rules/:uid`` (Grafana answers 204 No Content)."""
        what = f"DELETE /api/v1/provisioning/alert-rules/{uid}"
        self._call(what, self._api.alertingprovisioning.delete_alertrule, _segment(uid))

    # -- transport -------------------------------------------------------------------------------------------

    def _get_or_none(self, what: str, method: Callable[..., Any], *args: Any) -> dict[str, Any] | None:
        try:
            found = self._call(what, method, *args)
        except GrafanaRefused as err:
            if err.status == 404:
                return None
            raise
        return _object(found, what)

    def _call(self, what: str, method: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        try:
            return method(*args, **kwargs)
        except GrafanaException as err:
            raise _translate(what, self._url, err) from err
        except niquests.exceptions.SSLError as err:
            raise GrafanaRefused(f"Grafana {what} at {self._url}: TLS failed: {err}") from err
        except niquests.exceptions.Timeout as err:
            raise GrafanaUnavailable(f"Grafana {what} at {self._url}: no answer within {self._timeout_s:g} s") from err
        except niquests.exceptions.ConnectionError as err:
            raise GrafanaUnavailable(f"Grafana {what} at {self._url}: cannot connect: {_cause(err)}") from err
        except niquests.exceptions.RequestException as err:
            # Invalid URL, an answer that is not JSON (a proxy's login page) and the like: configuration.
            raise GrafanaRefused(f"Grafana {what} at {self._url}: {type(err).__name__}: {err}") from err


def _cause(err: BaseException) -> str:
    """The socket error at the bottom of urllib3's wrapping ("Connection refused"), not the whole chain."""
    match = _ERRNO.search(str(err))
    return match.group(1) if match else str(err)[:200]


def _translate(what: str, url: str, err: GrafanaException) -> GrafanaError:
    status = err.status_code or None
    body = err.response
    detail = body.get("message") if isinstance(body, dict) else body
    detail = str(detail or err.message or "(no message)")
    where = f"Grafana {what} at {url}"
    if status is None:
        return GrafanaUnavailable(f"{where}: no answer: {detail}")
    if status >= 500 or status in _RETRIABLE_4XX:
        return GrafanaUnavailable(f"{where}: {status}: {detail}", status=status)
    if status == 401:
        return GrafanaRefused(
            f"{where}: 401 {detail}: the token is wrong, expired or revoked; check the service account token",
            status=status,
        )
    if status == 403:
        return GrafanaRefused(
            f"{where}: 403 {detail}: the token lacks the rights; push needs a service account with the Admin "
            "role (datasources are admin-only)",
            status=status,
        )
    return GrafanaRefused(f"{where}: {status}: {detail}", status=status)


def _object(value: object, what: str) -> dict[str, Any]:
    """Grafana answers these calls with a JSON object; anything else means we are not talking to Grafana."""
    if not isinstance(value, dict):
        raise GrafanaRefused(f"Grafana {what}: expected a JSON object, got {type(value).__name__}: {value!r:.200}")
    return value


def _segment(text: str) -> str:
    # grafana-client pastes ids into paths as they are; a group name may hold spaces, "/" or "?".
    return quote(text, safe="")
