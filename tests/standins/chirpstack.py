"""A stand-in for ChirpStack v4's gRPC API: the real ``chirpstack-api`` servicers on loopback, state in memory.

It answers the way ChirpStack does where a client can tell the difference (read from ``chirpstack/src/api/
device.rs``, ``gateway.rs``, ``error.rs``, ``auth/mod.rs``, ``auth/validator.rs``, ``storage/device.rs`` and
``lrwn``): a malformed DevEUI or key is ``INTERNAL`` (a hex error), a malformed UUID ``INVALID_ARGUMENT``, an
unknown object ``NOT_FOUND`` "Object does not exist (id: …)", a duplicate ``INTERNAL`` with PostgreSQL's
unique-violation text, a dangling reference ``INTERNAL`` with PostgreSQL's foreign-key text. The token acts as
an admin API key. It also lets a test inject failures, outages, latency and races, and count calls.

Longer than most modules because it is one system's whole fake: thirteen RPCs and the levers tests need.
"""

from __future__ import annotations

import string
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import grpc
from chirpstack_api import api, common
from google.protobuf import empty_pb2, timestamp_pb2

__all__ = ["ChirpStackStandIn"]

_MAC_VERSIONS = {
    "1.0.0": common.MacVersion.LORAWAN_1_0_0,
    "1.0.1": common.MacVersion.LORAWAN_1_0_1,
    "1.0.2": common.MacVersion.LORAWAN_1_0_2,
    "1.0.3": common.MacVersion.LORAWAN_1_0_3,
    "1.0.4": common.MacVersion.LORAWAN_1_0_4,
    "1.1.0": common.MacVersion.LORAWAN_1_1_0,
}
_ZERO_KEY = "0" * 32
Code = grpc.StatusCode


class _Status(Exception):
    def __init__(self, code: Any, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


@dataclass
class _Row:
    message: Any  # api.Device, api.DeviceKeys, api.Gateway or api.DeviceProfile
    created_at: datetime
    updated_at: datetime
    last_seen_at: datetime | None = None


class ChirpStackStandIn:
    """One in-memory ChirpStack tenant served over real gRPC on ``127.0.0.1``; start it, or use ``with``."""

    def __init__(self, token: str = "standin-token", tenant_id: str | None = None, *, max_workers: int = 32) -> None:
        self.token = token
        self.tenant_id = tenant_id or str(uuid.uuid4())
        self.target = ""
        self.calls: Counter[str] = Counter()  # by method name: "Get" counts Device, Gateway and DeviceProfile
        self.service_calls: Counter[str] = Counter()  # by "DeviceService.Get"
        self.max_concurrent = 0
        self._max_workers = max_workers
        self._lock = threading.RLock()
        self._server: Any = None
        self._port = 0
        self._in_flight = 0
        self._times: list[float] = []
        self._down = False
        self._latency_s = 0.0
        self._failures: dict[str, deque[tuple[Any, str]]] = {}
        self._hooks: dict[str, deque[Callable[[], None]]] = {}
        self._applications: dict[str, str] = {}
        self._profiles: dict[str, _Row] = {}
        self._devices: dict[str, _Row] = {}
        self._keys: dict[str, _Row] = {}
        self._gateways: dict[str, _Row] = {}

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> str:
        """Serve; after a ``stop`` it binds the same port again, so clients see the server come back."""
        if self._server is not None:
            return self.target
        server = grpc.server(ThreadPoolExecutor(max_workers=self._max_workers))
        api.add_DeviceServiceServicer_to_server(_DeviceService(self), server)
        api.add_GatewayServiceServicer_to_server(_GatewayService(self), server)
        api.add_DeviceProfileServiceServicer_to_server(_DeviceProfileService(self), server)
        port = server.add_insecure_port(f"127.0.0.1:{self._port}")
        if not port:
            raise RuntimeError(f"stand-in ChirpStack cannot bind 127.0.0.1:{self._port}")
        server.start()
        self._server, self._port = server, port
        self.target = f"127.0.0.1:{port}"
        return self.target

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    def __enter__(self) -> ChirpStackStandIn:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- arranging state -------------------------------------------------------------------------------------

    def add_application(self, name: str) -> str:
        app_id = str(uuid.uuid4())
        with self._lock:
            self._applications[app_id] = name
        return app_id

    def add_device_profile(self, name: str, mac_version: str = "1.0.3") -> str:
        profile_id = str(uuid.uuid4())
        profile = api.DeviceProfile(
            id=profile_id, tenant_id=self.tenant_id, name=name, mac_version=_MAC_VERSIONS[mac_version],
            region=common.Region.AS923_2, adr_algorithm_id="default", supports_otaa=True,
        )
        now = datetime.now(UTC)
        with self._lock:
            self._profiles[profile_id] = _Row(profile, now, now)
        return profile_id

    def add_gateway(
        self, gateway_id: str, name: str, *, latitude: float | None = None, longitude: float | None = None,
        last_seen_at: datetime | None = None, stats_interval_s: int = 30,
    ) -> None:
        gateway = api.Gateway(
            gateway_id=gateway_id.lower(), name=name, tenant_id=self.tenant_id, stats_interval=stats_interval_s,
            location=common.Location(latitude=latitude or 0.0, longitude=longitude or 0.0),
        )
        now = datetime.now(UTC)
        with self._lock:
            self._gateways[gateway.gateway_id] = _Row(gateway, now, now, last_seen_at)

    # -- observing and steering ------------------------------------------------------------------------------

    def devices(self) -> dict[str, Any]:
        with self._lock:
            return {eui: _copy(row.message) for eui, row in self._devices.items()}

    def keys(self, dev_eui: str) -> Any:
        with self._lock:
            row = self._keys.get(dev_eui.lower())
            return None if row is None else _copy(row.message)

    def fail_next(self, method: str, code: Any, count: int = 1, details: str = "injected") -> None:
        """The next ``count`` calls of ``method`` ("Create" or "DeviceService.Create") answer ``code``."""
        with self._lock:
            self._failures.setdefault(method, deque()).extend([(code, details)] * count)

    def before_next(self, method: str, hook: Callable[[], None]) -> None:
        """Run ``hook`` once just before the next ``method`` call is handled, e.g. to stage a race."""
        with self._lock:
            self._hooks.setdefault(method, deque()).append(hook)

    def set_down(self, down: bool) -> None:
        """While down, every call answers UNAVAILABLE; the state is kept."""
        with self._lock:
            self._down = down

    def set_latency(self, seconds: float) -> None:
        """Every call takes at least this long, so concurrent callers overlap measurably."""
        with self._lock:
            self._latency_s = seconds

    def call_times(self) -> list[float]:
        with self._lock:
            return list(self._times)

    # -- dispatch --------------------------------------------------------------------------------------------

    def _serve(self, service: str, method: str, context: Any, handler: Callable[[bool], Any]) -> Any:
        qualified = f"{service}.{method}"
        with self._lock:
            self.calls[method] += 1
            self.service_calls[qualified] += 1
            self._times.append(time.monotonic())
            self._in_flight += 1
            self.max_concurrent = max(self.max_concurrent, self._in_flight)
            down, latency = self._down, self._latency_s
            failure = None if down else _pop(self._failures, qualified, method)
            hook = None if down or failure else _pop(self._hooks, qualified, method)
        try:
            if latency:
                time.sleep(latency)
            if down:
                context.abort(Code.UNAVAILABLE, "stand-in ChirpStack is down")
            if failure is not None:
                context.abort(*failure)
            if hook is not None:
                hook()
            try:
                return handler(self._authenticate(context))
            except _Status as status:
                context.abort(status.code, status.details)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _authenticate(self, context: Any) -> bool:
        """ChirpStack's interceptor: a bad header fails at once, a missing one only when a method checks."""
        value = dict(context.invocation_metadata()).get("authorization")
        if value is None:
            return False
        if not value.startswith("Bearer "):
            raise _Status(Code.UNAUTHENTICATED, "authorization metadata must in format 'Bearer <TOKEN>")
        if value.removeprefix("Bearer ") != self.token:
            raise _Status(Code.UNAUTHENTICATED, "InvalidSignature")
        return True

    # -- DeviceService ---------------------------------------------------------------------------------------

    def _device_fields(self, d: Any) -> Any:
        out = api.Device()
        out.CopyFrom(d)
        out.dev_eui = _hex(d.dev_eui, 8)
        out.application_id = _uuid(d.application_id)
        out.device_profile_id = _uuid(d.device_profile_id)
        out.join_eui = _hex(d.join_eui, 8) if d.join_eui else "0" * 16
        return out

    def _device_references(self, device: Any, *, creating: bool) -> None:
        if device.application_id not in self._applications:
            # Create first reads the tenant through the application (diesel's NotFound, not mapped to NOT_FOUND).
            detail = "Record not found" if creating else _fk_violation("device", "device_application_id_fkey")
            raise _Status(Code.INTERNAL, detail)
        if device.device_profile_id not in self._profiles:
            raise _Status(Code.INTERNAL, _fk_violation("device", "device_device_profile_id_fkey"))

    def _device_create(self, request: Any, authed: bool) -> Any:
        if not request.HasField("device"):
            raise _Status(Code.INVALID_ARGUMENT, "device is missing")
        device = self._device_fields(request.device)
        _require(authed)
        now = datetime.now(UTC)
        with self._lock:
            self._device_references(device, creating=True)
            if device.dev_eui in self._devices:
                raise _Status(Code.INTERNAL, _unique_violation("device_pkey"))
            self._devices[device.dev_eui] = _Row(device, now, now)
        return empty_pb2.Empty()

    def _device_get(self, request: Any, authed: bool) -> Any:
        dev_eui = _hex(request.dev_eui, 8)
        _require(authed)
        with self._lock:
            row = _found(self._devices, dev_eui)
            return api.GetDeviceResponse(
                device=_copy(row.message), created_at=_ts(row.created_at), updated_at=_ts(row.updated_at),
                class_enabled=common.DeviceClass.CLASS_A,
            )

    def _device_update(self, request: Any, authed: bool) -> Any:
        if not request.HasField("device"):
            raise _Status(Code.INVALID_ARGUMENT, "device is missing")
        device = self._device_fields(request.device)
        _require(authed)
        if not device.name:
            raise _Status(Code.INVALID_ARGUMENT, "Validation error: name is not set")
        with self._lock:
            row = _found(self._devices, device.dev_eui)
            self._device_references(device, creating=False)
            row.message, row.updated_at = device, datetime.now(UTC)
        return empty_pb2.Empty()

    def _device_delete(self, request: Any, authed: bool) -> Any:
        dev_eui = _hex(request.dev_eui, 8)
        _require(authed)
        with self._lock:
            _found(self._devices, dev_eui)
            del self._devices[dev_eui]
            self._keys.pop(dev_eui, None)  # on delete cascade
        return empty_pb2.Empty()

    def _device_list(self, request: Any, authed: bool) -> Any:
        app_id = _uuid(request.application_id)
        profile_id = _uuid(request.device_profile_id) if request.device_profile_id else None
        _require(authed)
        with self._lock:
            rows = [
                r for r in self._devices.values()
                if r.message.application_id == app_id
                and (profile_id is None or r.message.device_profile_id == profile_id)
                and request.search.lower() in r.message.name.lower()
                and all(r.message.tags.get(k) == v for k, v in request.tags.items())
            ]
            profile_names = {pid: row.message.name for pid, row in self._profiles.items()}
        order = request.order_by
        if order == api.ListDevicesRequest.OrderBy.DEV_EUI:
            rows.sort(key=lambda r: r.message.dev_eui, reverse=request.order_by_desc)
        elif order == api.ListDevicesRequest.OrderBy.DEVICE_PROFILE_NAME:
            rows.sort(key=lambda r: profile_names[r.message.device_profile_id], reverse=request.order_by_desc)
        else:  # NAME, and LAST_SEEN_AT (no device here has been seen)
            rows.sort(key=lambda r: r.message.name, reverse=request.order_by_desc)
        page = rows[request.offset: request.offset + request.limit]
        return api.ListDevicesResponse(total_count=len(rows), result=[
            api.DeviceListItem(
                dev_eui=r.message.dev_eui, name=r.message.name, description=r.message.description,
                device_profile_id=r.message.device_profile_id,
                device_profile_name=profile_names[r.message.device_profile_id], tags=dict(r.message.tags),
                created_at=_ts(r.created_at), updated_at=_ts(r.updated_at),
            )
            for r in page
        ])

    def _keys_fields(self, request: Any) -> Any:
        if not request.HasField("device_keys"):
            raise _Status(Code.INVALID_ARGUMENT, "device_keys is missing")
        return _hex(request.device_keys.dev_eui, 8)

    @staticmethod
    def _parsed_keys(dev_eui: str, k: Any) -> Any:
        return api.DeviceKeys(
            dev_eui=dev_eui, nwk_key=_hex(k.nwk_key, 16),
            app_key=_hex(k.app_key, 16) if k.app_key else _ZERO_KEY,
            gen_app_key=_hex(k.gen_app_key, 16) if k.gen_app_key else _ZERO_KEY,
        )

    def _keys_create(self, request: Any, authed: bool) -> Any:
        dev_eui = self._keys_fields(request)
        _require(authed)
        keys = self._parsed_keys(dev_eui, request.device_keys)
        now = datetime.now(UTC)
        with self._lock:
            if dev_eui in self._keys:
                raise _Status(Code.INTERNAL, _unique_violation("device_keys_pkey"))
            if dev_eui not in self._devices:
                raise _Status(Code.INTERNAL, _fk_violation("device_keys", "device_keys_dev_eui_fkey"))
            self._keys[dev_eui] = _Row(keys, now, now)
        return empty_pb2.Empty()

    def _keys_get(self, request: Any, authed: bool) -> Any:
        dev_eui = _hex(request.dev_eui, 8)
        _require(authed)
        with self._lock:
            row = _found(self._keys, dev_eui)
            return api.GetDeviceKeysResponse(
                device_keys=_copy(row.message), created_at=_ts(row.created_at), updated_at=_ts(row.updated_at)
            )

    def _keys_update(self, request: Any, authed: bool) -> Any:
        dev_eui = self._keys_fields(request)
        _require(authed)
        with self._lock:
            row = _found(self._keys, dev_eui)
            row.message, row.updated_at = self._parsed_keys(dev_eui, request.device_keys), datetime.now(UTC)
        return empty_pb2.Empty()

    def _keys_delete(self, request: Any, authed: bool) -> Any:
        dev_eui = _hex(request.dev_eui, 8)
        _require(authed)
        with self._lock:
            _found(self._keys, dev_eui)
            del self._keys[dev_eui]
        return empty_pb2.Empty()

    # -- GatewayService and DeviceProfileService -------------------------------------------------------------

    def _gateway_create(self, request: Any, authed: bool) -> Any:
        if not request.HasField("gateway"):
            raise _Status(Code.INVALID_ARGUMENT, "gateway is missing")
        tenant_id = _uuid(request.gateway.tenant_id)
        _require(authed)
        gateway = _copy(request.gateway)
        gateway.gateway_id, gateway.tenant_id = _hex(gateway.gateway_id, 8), tenant_id
        now = datetime.now(UTC)
        with self._lock:
            if tenant_id != self.tenant_id:
                raise _Status(Code.INTERNAL, _fk_violation("gateway", "gateway_tenant_id_fkey"))
            if gateway.gateway_id in self._gateways:
                raise _Status(Code.INTERNAL, _unique_violation("gateway_pkey"))
            self._gateways[gateway.gateway_id] = _Row(gateway, now, now)
        return empty_pb2.Empty()

    def _gateway_get(self, request: Any, authed: bool) -> Any:
        gateway_id = _hex(request.gateway_id, 8)
        _require(authed)
        with self._lock:
            row = _found(self._gateways, gateway_id)
            return api.GetGatewayResponse(
                gateway=_copy(row.message), created_at=_ts(row.created_at), updated_at=_ts(row.updated_at),
                last_seen_at=_ts(row.last_seen_at) if row.last_seen_at else None,
            )

    def _gateway_list(self, request: Any, authed: bool) -> Any:
        tenant_id = _uuid(request.tenant_id) if request.tenant_id else None
        _require(authed)
        with self._lock:
            rows = sorted(
                (r for r in self._gateways.values()
                 if (tenant_id is None or r.message.tenant_id == tenant_id)
                 and request.search.lower() in r.message.name.lower()),
                key=lambda r: (r.message.name, r.message.gateway_id), reverse=request.order_by_desc,
            )
        now = datetime.now(UTC)
        return api.ListGatewaysResponse(total_count=len(rows), result=[
            api.GatewayListItem(
                tenant_id=r.message.tenant_id, gateway_id=r.message.gateway_id, name=r.message.name,
                description=r.message.description, location=r.message.location,
                created_at=_ts(r.created_at), updated_at=_ts(r.updated_at),
                last_seen_at=_ts(r.last_seen_at) if r.last_seen_at else None,
                state=_gateway_state(r.last_seen_at, r.message.stats_interval, now),
            )
            for r in rows[request.offset: request.offset + request.limit]
        ])

    def _profile_get(self, request: Any, authed: bool) -> Any:
        profile_id = _uuid(request.id)
        _require(authed)
        with self._lock:
            row = _found(self._profiles, profile_id)
            return api.GetDeviceProfileResponse(
                device_profile=_copy(row.message), created_at=_ts(row.created_at), updated_at=_ts(row.updated_at)
            )


def _gateway_state(last_seen_at: datetime | None, stats_interval_s: int, now: datetime) -> Any:
    # api/gateway.rs: offline once more than two stats intervals have passed since the gateway was last seen.
    if last_seen_at is None:
        return api.GatewayState.NEVER_SEEN
    if now - last_seen_at > timedelta(seconds=2 * stats_interval_s):
        return api.GatewayState.OFFLINE
    return api.GatewayState.ONLINE


class _Servicer:
    """What the three servicers share: every call goes through the stand-in's ``_serve``."""

    service = ""

    def __init__(self, standin: ChirpStackStandIn) -> None:
        self._standin = standin

    def _handle(self, method: str, handler: Callable[[Any, bool], Any], request: Any, context: Any) -> Any:
        return self._standin._serve(self.service, method, context, lambda authed: handler(request, authed))


class _DeviceService(_Servicer, api.DeviceServiceServicer):  # type: ignore[misc]  # untyped base
    service = "DeviceService"

    def Create(self, request: Any, context: Any) -> Any:
        return self._handle("Create", self._standin._device_create, request, context)

    def Get(self, request: Any, context: Any) -> Any:
        return self._handle("Get", self._standin._device_get, request, context)

    def Update(self, request: Any, context: Any) -> Any:
        return self._handle("Update", self._standin._device_update, request, context)

    def Delete(self, request: Any, context: Any) -> Any:
        return self._handle("Delete", self._standin._device_delete, request, context)

    def List(self, request: Any, context: Any) -> Any:
        return self._handle("List", self._standin._device_list, request, context)

    def CreateKeys(self, request: Any, context: Any) -> Any:
        return self._handle("CreateKeys", self._standin._keys_create, request, context)

    def GetKeys(self, request: Any, context: Any) -> Any:
        return self._handle("GetKeys", self._standin._keys_get, request, context)

    def UpdateKeys(self, request: Any, context: Any) -> Any:
        return self._handle("UpdateKeys", self._standin._keys_update, request, context)

    def DeleteKeys(self, request: Any, context: Any) -> Any:
        return self._handle("DeleteKeys", self._standin._keys_delete, request, context)


class _GatewayService(_Servicer, api.GatewayServiceServicer):  # type: ignore[misc]  # untyped base
    service = "GatewayService"

    def Create(self, request: Any, context: Any) -> Any:
        return self._handle("Create", self._standin._gateway_create, request, context)

    def Get(self, request: Any, context: Any) -> Any:
        return self._handle("Get", self._standin._gateway_get, request, context)

    def List(self, request: Any, context: Any) -> Any:
        return self._handle("List", self._standin._gateway_list, request, context)


class _DeviceProfileService(_Servicer, api.DeviceProfileServiceServicer):  # type: ignore[misc]  # untyped base
    service = "DeviceProfileService"

    def Get(self, request: Any, context: Any) -> Any:
        return self._handle("Get", self._standin._profile_get, request, context)


def _pop(queues: dict[str, deque[Any]], *names: str) -> Any:
    for name in names:
        queue = queues.get(name)
        if queue:
            return queue.popleft()
    return None


def _require(authed: bool) -> None:
    # auth/validator.rs: without the authorization header a method fails only when it validates access.
    if not authed:
        raise _Status(Code.UNAUTHENTICATED, "no authorization provided")


def _found(table: dict[str, _Row], key: str) -> _Row:
    row = table.get(key)
    if row is None:
        raise _Status(Code.NOT_FOUND, f"Object does not exist (id: {key})")
    return row


def _hex(text: str, size: int) -> str:
    """lrwn's parsers (``hex::decode_to_slice``): their errors are ``INTERNAL``; an empty string is refused too."""
    if len(text) % 2:
        raise _Status(Code.INTERNAL, "Odd number of digits")
    if len(text) // 2 != size:
        raise _Status(Code.INTERNAL, "Invalid string length")
    for position, char in enumerate(text):
        if char not in string.hexdigits:
            raise _Status(Code.INTERNAL, f"Invalid character {char!r} at position {position}")
    return text.lower()


def _uuid(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        if len(text) not in (32, 36):
            raise _Status(Code.INVALID_ARGUMENT, f"invalid length: expected length 32 for simple format, "
                                                 f"found {len(text)}") from None
        raise _Status(Code.INVALID_ARGUMENT, "invalid character: expected an optional prefix of `urn:uuid:` "
                                             "followed by [0-9a-fA-F-]") from None


def _unique_violation(constraint: str) -> str:
    return f'duplicate key value violates unique constraint "{constraint}"'


def _fk_violation(table: str, constraint: str) -> str:
    return f'insert or update on table "{table}" violates foreign key constraint "{constraint}"'


def _copy(message: Any) -> Any:
    out = type(message)()
    out.CopyFrom(message)
    return out


def _ts(moment: datetime) -> Any:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(moment)
    return ts

