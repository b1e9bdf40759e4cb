"""The API's hold on the broker: write its password and ACL files from the database, then tell it to reload.

    state          meaning
    reloaded       the files were written and the broker was sent SIGHUP: the change is live
    files_written  the files were written; no pid file is configured, so the broker applies them when it next
                   reloads or restarts
    reload_failed  the files were written but the broker could not be signalled (``detail`` says why):
                   the change is stored and waits for `ioc broker reload` (or, for a revocation, a repeat)
    not_managed    no IOC_BROKER_CONFIG_DIR: the change is stored only; the operator writes the files

A revocation also ends the credential's session on the public broker (``gateways.mqtt.sessions``) when
IOC_BROKER_ADMIN_URL is set: the connection is dropped and a parked session with its queue is discarded at
once, instead of lasting until it expires. ``sessions`` in the outcome says which.

A file that cannot be written stops the change itself (``BrokerUnwritable``; the API answers 503, the CLI exits
with it): nothing is stored.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, Request

from gateways.database import Connection
from gateways.mosquitto_files import BrokerFilesError, BrokerReloadFailed, reload, write_access_files
from gateways.mqtt import end_sessions
from ioc_api.queries.mqtt_accounts import broker_users
from ioc_core.errors import FatalError, IocError
from ioc_core.settings import BrokerSettings, MqttUrl

__all__ = ["BrokerControl", "BrokerDep", "BrokerOutcome", "BrokerState", "BrokerUnwritable"]

log = logging.getLogger(__name__)

_RELOAD_SETTLE_S = 0.3

BrokerState = Literal["reloaded", "files_written", "reload_failed", "not_managed"]


class BrokerUnwritable(FatalError):
    """The broker's files could not be written, so the change was rolled back; an operator must fix the folder."""


@dataclass(frozen=True, slots=True)
class BrokerOutcome:
    state: BrokerState
    detail: str
    sessions: str = ""  # for a revocation: whether the credential's session on the broker was ended


@dataclass(frozen=True, slots=True)
class BrokerControl:
    config_dir: Path | None
    pid_file: Path | None
    public_url: str
    credentials_per_developer: int
    admin_url: MqttUrl | None = None

    @classmethod
    def from_settings(cls, settings: BrokerSettings) -> BrokerControl:
        return cls(settings.config_dir, settings.pid_file, settings.public_url,
                   settings.credentials_per_developer, settings.admin_url)

    def write(self, conn: Connection) -> None:
        """Write the password and ACL files from what ``conn`` sees (its open transaction included)."""
        if self.config_dir is None:
            return
        try:
            write_access_files(self.config_dir, broker_users(conn))
        except BrokerFilesError as err:
            log.error("broker files not written, change rolled back: %s", err)
            raise BrokerUnwritable(f"the broker's files could not be written, so nothing changed: {err}") from err

    def reload(self, *, end: list[str] | None = None) -> BrokerOutcome:
        """Tell the broker to re-read its files, and end the sessions of the revoked usernames in ``end``;
        what happened, for the response."""
        outcome = self._reload()
        if not end:
            return outcome
        if outcome.state == "reloaded":
            # Mosquitto applies SIGHUP in its next loop turn; a credential that reconnected before it would
            # otherwise get a session the take-over below never sees.
            time.sleep(_RELOAD_SETTLE_S)
        return BrokerOutcome(outcome.state, outcome.detail, self._end_sessions(end))

    def _end_sessions(self, usernames: list[str]) -> str:
        if self.admin_url is None:
            return ("not ended: IOC_BROKER_ADMIN_URL is not set, so a parked session of these credentials lasts "
                    "until the broker's session expiry")
        try:
            end_sessions(self.admin_url, usernames)
        except IocError as err:
            log.error("sessions of revoked MQTT credentials %s not ended: %s", usernames, err)
            return f"not ended: {err}; revoking again retries"
        log.info("ended the broker sessions of revoked MQTT credentials %s", usernames)
        return "ended: the connection was dropped and the session discarded"

    def _reload(self) -> BrokerOutcome:
        if self.config_dir is None:
            return BrokerOutcome("not_managed", "stored only: this API does not manage the broker's files "
                                 "(IOC_BROKER_CONFIG_DIR is not set)")
        if self.pid_file is None:
            return BrokerOutcome("files_written", f"the broker's files in {self.config_dir} were written; it "
                                 "applies them at its next reload or restart (IOC_BROKER_PID_FILE is not set)")
        try:
            pid = reload(self.pid_file)
        except BrokerReloadFailed as err:
            log.error("broker files written but the broker was not reloaded: %s", err)
            return BrokerOutcome("reload_failed", f"stored and written to {self.config_dir}, but the broker was "
                                 f"not reloaded: {err}; run `ioc broker reload`")
        return BrokerOutcome("reloaded", f"the broker (pid {pid}) was told to reload its files")


def _broker(request: Request) -> BrokerControl:
    control: BrokerControl = request.app.state.broker
    return control


BrokerDep = Annotated[BrokerControl, Depends(_broker)]
