"""The API's hold on the broker: write its password and ACL files from the database, then tell it to reload.

    state          meaning
    reloaded       the files were written and the broker was sent SIGHUP: the change is live
    files_written  the files were written; no pid file is configured, so the broker applies them when it next
                   reloads or restarts
    reload_failed  the files were written but the broker could not be signalled (``detail`` says why):
                   the change is stored and waits for `ioc broker reload` (or, for a revocation, a repeat)
    not_managed    no IOC_BROKER_CONFIG_DIR: the change is stored only; the operator writes the files

A file that cannot be written stops the change itself (``BrokerUnwritable``, 503): nothing is stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, Request

from gateways.database import Connection
from gateways.mosquitto_files import BrokerFilesError, BrokerReloadFailed, reload, write_access_files
from ioc_api.errors import ApiError
from ioc_api.queries.mqtt_accounts import broker_users
from ioc_core.settings import BrokerSettings

__all__ = ["BrokerControl", "BrokerDep", "BrokerOutcome", "BrokerState", "BrokerUnwritable"]

log = logging.getLogger(__name__)

BrokerState = Literal["reloaded", "files_written", "reload_failed", "not_managed"]


class BrokerUnwritable(ApiError):
    """The broker's files could not be written, so the change was rolled back."""

    status = 503
    code = "broker_unavailable"


@dataclass(frozen=True, slots=True)
class BrokerOutcome:
    state: BrokerState
    detail: str


@dataclass(frozen=True, slots=True)
class BrokerControl:
    config_dir: Path | None
    pid_file: Path | None
    public_url: str
    credentials_per_developer: int

    @classmethod
    def from_settings(cls, settings: BrokerSettings) -> BrokerControl:
        return cls(settings.broker_config_dir, settings.broker_pid_file, settings.broker_public_url,
                   settings.broker_credentials_per_developer)

    def write(self, conn: Connection) -> None:
        """Write the password and ACL files from what ``conn`` sees (its open transaction included)."""
        if self.config_dir is None:
            return
        try:
            write_access_files(self.config_dir, broker_users(conn))
        except BrokerFilesError as err:
            log.error("broker files not written, change rolled back: %s", err)
            raise BrokerUnwritable(f"the broker's files could not be written, so nothing changed: {err}") from err

    def reload(self) -> BrokerOutcome:
        """Tell the broker to re-read its files; what happened, for the response."""
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
