"""The ChirpStack v4 gRPC API adapter: idempotent device and key provisioning, device profiles, gateways.

Errors, sorted by what the caller should do::

    IocError
    └── ChirpStackError              .code holds the gRPC status name ("UNAVAILABLE", "NOT_FOUND", …)
        ├── ChirpStackUnavailable    (also a RetriableError) ChirpStack cannot answer now: back off, try again
        └── ChirpStackRefused        ChirpStack answered no; the same request will get the same answer

ChirpStack facts this module relies on (``chirpstack/src/api/device.rs``, ``api/error.rs``, ``storage/*.rs``):
a duplicate ``Create``/``CreateKeys`` answers ``INTERNAL`` with the database's unique-violation text, never
``ALREADY_EXISTS``; ``Update`` replaces every field of the device, so fields we do not manage (variables,
``skip_fcnt_check``) are copied from what ChirpStack holds; ``Update`` may move a device to another
application of the same tenant; an unset JoinEUI reads back as ``0000000000000000``; an empty
``app_key`` is stored and read back as 32 zeros.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, TypeVar

import grpc
from chirpstack_api import api, common

from ioc_core.errors import IocError, RetriableError

__all__ = [
    "ChirpStackClient",
    "ChirpStackError",
    "ChirpStackRefused",
    "ChirpStackUnavailable",
    "DeviceSpec",
    "GatewayInfo",
]

log = logging.getLogger(__name__)

Outcome = Literal["created", "updated", "unchanged"]
GatewayStateName = Literal["never_seen", "online", "offline"]
_T = TypeVar("_T")

# Status names after which the same request may succeed later; everything else is a refusal.
_RETRIABLE_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "CANCELLED"})
_MAC_VERSIONS = {
    common.MacVersion.LORAWAN_1_0_0: "1.0.0",
    common.MacVersion.LORAWAN_1_0_1: "1.0.1",
    common.MacVersion.LORAWAN_1_0_2: "1.0.2",
    common.MacVersion.LORAWAN_1_0_3: "1.0.3",
    common.MacVersion.LORAWAN_1_0_4: "1.0.4",
    common.MacVersion.LORAWAN_1_1_0: "1.1.0",
}
_GATEWAY_STATES: dict[int, GatewayStateName] = {
    api.GatewayState.NEVER_SEEN: "never_seen",
    api.GatewayState.ONLINE: "online",
    api.GatewayState.OFFLINE: "offline",
}
_ZERO_EUI = "0" * 16
_ZERO_KEY = "0" * 32
_KEY_HEX = re.compile(r"[0-9a-fA-F]{32}")
_PAGE = 100


class ChirpStackError(IocError):
    """Root of the errors this adapter raises; ``code`` is the gRPC status name."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class ChirpStackUnavailable(ChirpStackError, RetriableError):
    """ChirpStack is unreachable, overloaded or too slow: keep the work and retry with backoff."""


class ChirpStackRefused(ChirpStackError):
    """ChirpStack (or this adapter, before sending) refused the request: retrying it unchanged will not help."""


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """The device as the platform wants it in ChirpStack.

    ``join_eui=None`` leaves ChirpStack's value alone (it sets the JoinEUI itself on an OTAA join).
    """

    dev_eui: str
    name: str
    application_id: str
    device_profile_id: str
    description: str = ""
    join_eui: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class GatewayInfo:
    """One gateway as ``GatewayService.List`` reports it."""

    gateway_id: str
    name: str
    latitude: float | None
    longitude: float | None
    altitude: float | None
    last_seen_at: datetime | None
    state: GatewayStateName
    tenant_id: str


class ChirpStackClient:
    """A synchronous client over one gRPC channel; thread-safe like the channel itself."""

    def __init__(self, target: str, token: str, *, tls: bool = False, timeout_s: float = 5.0,
                 before_call: Callable[[], None] | None = None) -> None:
        """``before_call`` runs before every RPC: a rate limiter goes there, so each call is paced."""
        # Creating a channel does no I/O: gRPC connects on the first call.
        if tls:
            self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials())
        else:
            self._channel = grpc.insecure_channel(target)
        self._target = target
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._timeout_s = timeout_s
        self._before_call = before_call
        self._devices = api.DeviceServiceStub(self._channel)
        self._profiles = api.DeviceProfileServiceStub(self._channel)
        self._gateways = api.GatewayServiceStub(self._channel)
        self._mac_versions: dict[str, str] = {}
        self._cache_lock = threading.Lock()

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ChirpStackClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- devices -------------------------------------------------------------------------------------------

    def ensure_device(self, spec: DeviceSpec) -> Outcome:
        """Create the device or bring it in line with ``spec``; says which of the two (or neither) it did."""
        dev_eui = spec.dev_eui.lower()
        current = self._get_device(dev_eui)
        if current is None:
            wanted = self._device_message(spec, base=None)
            try:
                self._call("DeviceService.Create", self._devices.Create, api.CreateDeviceRequest(device=wanted))
            except ChirpStackRefused as err:
                # ChirpStack answers a duplicate with INTERNAL: someone created it since our Get.
                if err.code != "INTERNAL":
                    raise
                current = self._get_device(dev_eui)
                if current is None:
                    raise
                log.info("device %s was created concurrently; reconciling", dev_eui)
            else:
                log.info("created device %s in ChirpStack", dev_eui)
                return "created"
        wanted = self._device_message(spec, base=current)
        if _device_key(current) == _device_key(wanted):
            return "unchanged"
        self._call("DeviceService.Update", self._devices.Update, api.UpdateDeviceRequest(device=wanted))
        log.info("updated device %s in ChirpStack", dev_eui)
        return "updated"

    def delete_device(self, dev_eui: str) -> bool:
        """Delete the device (and its keys); False when ChirpStack did not have it."""
        try:
            self._call("DeviceService.Delete", self._devices.Delete, api.DeleteDeviceRequest(dev_eui=dev_eui.lower()))
        except ChirpStackRefused as err:
            if err.code == "NOT_FOUND":
                return False
            raise
        return True

    def _get_device(self, dev_eui: str) -> Any:
        try:
            response = self._call("DeviceService.Get", self._devices.Get, api.GetDeviceRequest(dev_eui=dev_eui))
        except ChirpStackRefused as err:
            if err.code == "NOT_FOUND":
                return None
            raise
        return response.device

    @staticmethod
    def _device_message(spec: DeviceSpec, *, base: Any) -> Any:
        device = api.Device()
        if base is not None:
            device.CopyFrom(base)  # keeps variables and skip_fcnt_check, which Update would otherwise reset
        device.dev_eui = spec.dev_eui.lower()
        device.name = spec.name
        device.description = spec.description
        device.application_id = spec.application_id.lower()
        device.device_profile_id = spec.device_profile_id.lower()
        device.is_disabled = spec.disabled
        device.tags.clear()
        device.tags.update(spec.tags)
        if spec.join_eui is not None:
            device.join_eui = spec.join_eui.lower()
        return device

    # -- keys ------------------------------------------------------------------------------------------------

    def ensure_keys(
        self, dev_eui: str, app_key: str, nwk_key: str | None = None, *, mac_version: str
    ) -> Outcome:
        """Set the OTAA root keys the way ChirpStack reads them for the device's LoRaWAN version.

        LoRaWAN 1.0.x: the device's AppKey goes in ``DeviceKeys.nwk_key`` and ``app_key`` stays empty.
        LoRaWAN 1.1.x: ``nwk_key`` is the NwkKey (required) and ``app_key`` the AppKey.
        A ``nwk_key`` given for a 1.0.x device is ignored: such a device has no NwkKey.
        """
        dev_eui = dev_eui.lower()
        wanted_nwk, wanted_app = _root_keys(app_key, nwk_key, mac_version)
        current = self._get_keys(dev_eui)
        if current is None:
            keys = api.DeviceKeys(dev_eui=dev_eui, nwk_key=wanted_nwk, app_key=wanted_app)
            try:
                self._call(
                    "DeviceService.CreateKeys", self._devices.CreateKeys, api.CreateDeviceKeysRequest(device_keys=keys)
                )
            except ChirpStackRefused as err:
                if err.code != "INTERNAL":
                    raise
                current = self._get_keys(dev_eui)
                if current is None:
                    raise
            else:
                log.info("created keys of device %s in ChirpStack", dev_eui)
                return "created"
        if (current.nwk_key.lower(), _key_or_zero(current.app_key)) == (wanted_nwk, _key_or_zero(wanted_app)):
            return "unchanged"
        keys = api.DeviceKeys()
        keys.CopyFrom(current)  # keeps gen_app_key
        keys.nwk_key = wanted_nwk
        keys.app_key = wanted_app
        self._call("DeviceService.UpdateKeys", self._devices.UpdateKeys, api.UpdateDeviceKeysRequest(device_keys=keys))
        log.info("updated keys of device %s in ChirpStack", dev_eui)
        return "updated"

    def _get_keys(self, dev_eui: str) -> Any:
        try:
            request = api.GetDeviceKeysRequest(dev_eui=dev_eui)
            response = self._call("DeviceService.GetKeys", self._devices.GetKeys, request)
        except ChirpStackRefused as err:
            if err.code == "NOT_FOUND":
                return None
            raise
        return response.device_keys

    # -- device profiles -------------------------------------------------------------------------------------

    def device_profile_mac_version(self, device_profile_id: str) -> str:
        """The profile's LoRaWAN version as "1.0.0" … "1.0.4" or "1.1.0"; asked once per client."""
        profile_id = device_profile_id.lower()
        with self._cache_lock:
            cached = self._mac_versions.get(profile_id)
        if cached is not None:
            return cached
        response = self._call(
            "DeviceProfileService.Get", self._profiles.Get, api.GetDeviceProfileRequest(id=profile_id)
        )
        version = _MAC_VERSIONS.get(response.device_profile.mac_version)
        if version is None:
            raise ChirpStackRefused(
                f"device profile {profile_id}: unknown mac_version {response.device_profile.mac_version}",
                code="UNIMPLEMENTED",
            )
        with self._cache_lock:
            self._mac_versions[profile_id] = version
        return version

    # -- gateways --------------------------------------------------------------------------------------------

    def list_gateways(self, tenant_id: str | None = None) -> list[GatewayInfo]:
        """Every gateway (of one tenant, if given), read in pages of 100."""
        gateways: list[GatewayInfo] = []
        while True:
            request = api.ListGatewaysRequest(limit=_PAGE, offset=len(gateways), tenant_id=tenant_id or "")
            response = self._call("GatewayService.List", self._gateways.List, request)
            gateways.extend(_gateway_info(item) for item in response.result)
            if not response.result or len(gateways) >= response.total_count:
                return gateways

    # -- transport -------------------------------------------------------------------------------------------

    def _call(self, name: str, method: Callable[..., _T], request: Any) -> _T:
        if self._before_call is not None:
            self._before_call()
        try:
            return method(request, metadata=self._metadata, timeout=self._timeout_s)
        except grpc.RpcError as err:
            raise _translate(name, self._target, err) from err


def _translate(name: str, target: str, err: Any) -> ChirpStackError:
    code_obj = err.code() if callable(getattr(err, "code", None)) else None
    code = code_obj.name if code_obj is not None else "UNKNOWN"
    details = err.details() if callable(getattr(err, "details", None)) else None
    message = f"ChirpStack {name} at {target}: {code}: {details or '(no details)'}"
    if code in _RETRIABLE_CODES:
        return ChirpStackUnavailable(message, code=code)
    return ChirpStackRefused(message, code=code)


def _device_key(device: Any) -> tuple[object, ...]:
    return (
        device.name,
        device.description,
        device.application_id.lower(),
        device.device_profile_id.lower(),
        (device.join_eui or _ZERO_EUI).lower(),
        dict(device.tags),
        device.is_disabled,
    )


def _key_or_zero(key: str) -> str:
    return key.lower() if key else _ZERO_KEY


def _root_keys(app_key: str, nwk_key: str | None, mac_version: str) -> tuple[str, str]:
    """(nwk_key, app_key) as ChirpStack's DeviceKeys wants them; no key text ever enters a message."""
    if mac_version not in _MAC_VERSIONS.values():
        raise ChirpStackRefused(f"unknown LoRaWAN MAC version {mac_version!r}", code="INVALID_ARGUMENT")
    if not _KEY_HEX.fullmatch(app_key):
        raise ChirpStackRefused("app_key must be 32 hexadecimal digits", code="INVALID_ARGUMENT")
    if mac_version.startswith("1.0."):
        return app_key.lower(), ""  # a 1.0.x device has no NwkKey: its AppKey is what ChirpStack calls nwk_key
    if nwk_key is None or not _KEY_HEX.fullmatch(nwk_key):
        raise ChirpStackRefused("LoRaWAN 1.1 needs nwk_key: 32 hexadecimal digits", code="INVALID_ARGUMENT")
    return nwk_key.lower(), app_key.lower()


def _gateway_info(item: Any) -> GatewayInfo:
    latitude: float | None = None
    longitude: float | None = None
    altitude: float | None = None
    if item.HasField("location"):
        loc = item.location
        if (loc.latitude, loc.longitude, loc.altitude) != (0.0, 0.0, 0.0):
            latitude, longitude, altitude = loc.latitude, loc.longitude, loc.altitude
    last_seen_at = item.last_seen_at.ToDatetime(tzinfo=UTC) if item.HasField("last_seen_at") else None
    return GatewayInfo(
        gateway_id=item.gateway_id,
        name=item.name,
        latitude=latitude,
        longitude=longitude,
        altitude=altitude,
        last_seen_at=last_seen_at,
        state=_GATEWAY_STATES.get(item.state, "never_seen"),
        tenant_id=item.tenant_id,
    )
