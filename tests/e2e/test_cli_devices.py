"""``ioc devices`` as a technician types it, against the IOC API served over HTTP on a free loopback port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from gateways.local_postgres import free_port
from ioc_api.queries.users import create_user
from tests.api_support import HAI_CHAU, LIEN_CHIEU, SON_TRA, app_for, served

pytestmark = pytest.mark.e2e

EUI = "a84041000181c9a1"


@pytest.fixture
def api_url(db_url: str) -> Iterator[str]:
    with served(app_for(db_url)) as url:
        yield url


def _key(db_url: str, name: str, role: str, zones: tuple[str, ...] = ()) -> str:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return create_user(conn, name, role, list(zones), actor="test")[1].key


class Ioc:
    """Runs `ioc` in a subprocess with the API's URL and one caller's key in its environment."""

    def __init__(self, url: str, key: str) -> None:
        self.env = {**os.environ, "IOC_API_URL": url, "IOC_API_KEY": key, "COLUMNS": "200"}

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ioc_cli", "devices", *args], env={**self.env, **env},
                              capture_output=True, text=True, timeout=120)


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


@pytest.mark.parametrize("command", [[], ["list"], ["show"], ["register"], ["import"], ["move"], ["decommission"],
                                     ["recommission"]])
def test_every_command_names_the_variables_it_reads(command: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "ioc_cli", "devices", *command, "--help"],
                          env={**os.environ, "COLUMNS": "200"}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for variable in ("IOC_API_URL", "IOC_API_KEY", "IOC_API_TIMEOUT_S"):
        assert variable in done.stdout


def test_a_technicians_day(api_url: str, db_url: str, tmp_path: Path) -> None:
    ioc = Ioc(api_url, _key(db_url, "tech-hc", "technician", ("hai-chau", "lien-chieu")))
    registered = ioc("register", "A8:40:41:00:01:81:C9:A1", "--name", "TH Cầu Rồng", "--kind",
                     "temperature_humidity", "--model", "ioc-th100", "--lat", str(HAI_CHAU[0]), "--lon",
                     str(HAI_CHAU[1]), "--tag", "pole=7")
    assert registered.returncode == 0, registered.stderr
    assert f"registered {EUI} (TH Cầu Rồng) in zone hai-chau" in registered.stdout
    again = _one_line_error(ioc("register", EUI, "--name", "x", "--kind", "temperature_humidity", "--model",
                                "ioc-th100", "--lat", str(HAI_CHAU[0]), "--lon", str(HAI_CHAU[1])))
    assert "HTTP 409" in again and "exists already" in again and "[field: dev_eui]" in again

    listed = ioc("list", "--zone", "hai-chau")
    assert listed.returncode == 0, listed.stderr
    assert EUI in listed.stdout and "never_seen" in listed.stdout and "of 1" in listed.stdout
    as_json = json.loads(ioc("list", "--json").stdout)
    assert [d["dev_eui"] for d in as_json["items"]] == [EUI]

    shown = ioc("show", "a840-4100-0181-c9a1")
    assert shown.returncode == 0, shown.stderr
    assert "hai-chau (Hải Châu)" in shown.stdout and "pole=7" in shown.stdout and "registered" in shown.stdout
    assert json.loads(ioc("show", EUI, "--json").stdout)["tags"] == {"pole": "7"}

    typo = _one_line_error(ioc("move", EUI, "--lat", str(SON_TRA[0]), "--lon", str(SON_TRA[1]), "--zone",
                               "lien-chieu"))
    assert "HTTP 422" in typo and "'son-tra', not 'lien-chieu'" in typo and "[field: zone]" in typo
    moved = ioc("move", EUI, "--lat", str(LIEN_CHIEU[0]), "--lon", str(LIEN_CHIEU[1]), "--zone", "lien-chieu")
    assert moved.returncode == 0 and "in zone lien-chieu" in moved.stdout, moved.stderr

    gone = ioc("decommission", EUI, "--reason", "pole knocked down")
    assert gone.returncode == 0 and "status decommissioned" in gone.stdout, gone.stderr
    refused = _one_line_error(ioc("register", EUI, "--name", "x", "--kind", "temperature_humidity", "--model",
                                  "ioc-th100", "--lat", str(HAI_CHAU[0]), "--lon", str(HAI_CHAU[1])))
    assert "decommissioned" in refused and f"ioc devices recommission {EUI}" in refused
    back = ioc("recommission", EUI, "--reason", "pole rebuilt")
    assert back.returncode == 0 and "recommissioned" in back.stdout and "status registered" in back.stdout
    assert "in zone lien-chieu" in back.stdout

    with psycopg.connect(db_url) as conn:
        actions = conn.execute("SELECT actor, action FROM audit_log WHERE entity = 'device' ORDER BY id").fetchall()
    assert actions == [("tech-hc", "create"), ("tech-hc", "update"), ("tech-hc", "decommission"),
                       ("tech-hc", "recommission")]


def test_importing_a_csv_lists_each_refused_line(api_url: str, db_url: str, tmp_path: Path) -> None:
    ioc = Ioc(api_url, _key(db_url, "tech-hc", "technician", ("hai-chau",)))
    where = f"{HAI_CHAU[0]},{HAI_CHAU[1]}"
    csv_file = tmp_path / "bins.csv"
    csv_file.write_text(
        "dev_eui,name,kind,model,latitude,longitude,tags\n"
        f"00:00:00:00:00:00:00:01,Bin A,waste_bin,ioc-wb100,{where},route=r1\n"
        f'0000000000000002,"Bin B,waste_bin,ioc-wb100,{where},\n'
        f"0000000000000003,Bin C,waste_bin,ioc-wb100,{SON_TRA[0]},{SON_TRA[1]},\n"
        f"0000-0000-0000-0001,Bin A again,waste_bin,ioc-wb100,{where},\n"
        f"0000000000000005,Bin E,waste_bin,ioc-wb100,{where},\n",
        encoding="utf-8",
    )
    dry = ioc("import", str(csv_file), "--dry-run")
    assert dry.returncode == 1, dry.stderr
    assert "2 valid, 3 refused (dry run: nothing stored)" in dry.stdout
    size = csv_file.stat().st_size
    assert "the API checks every row" in dry.stderr and f"{size}/{size} bytes" in dry.stderr  # the progress bar
    lines = dry.stdout.splitlines()
    assert any(line.startswith("refused line 3 (0000000000000002) name: line 3: the quote") for line in lines)
    assert any(line.startswith("refused line 4 (0000000000000003)") and "son-tra" in line for line in lines)
    assert any(line.startswith("refused line 5 (0000000000000001) dev_eui:") and "repeated in this file (line 2)"
               in line for line in lines)
    assert json.loads(ioc("list", "--json").stdout)["total"] == 0
    done = ioc("import", str(csv_file))
    assert done.returncode == 1 and "bins.csv: 2 created, 3 refused" in done.stdout, done.stdout + done.stderr
    assert json.loads(ioc("list", "--json").stdout)["total"] == 2
    fixed = tmp_path / "fixed.csv"
    fixed.write_text(f"dev_eui,name,kind,model,latitude,longitude\n0000000000000002,Bin B,waste_bin,ioc-wb100,"
                     f"{where}\n", encoding="utf-8")
    clean = ioc("import", str(fixed))
    assert clean.returncode == 0 and "1 created, 0 refused" in clean.stdout, clean.stdout + clean.stderr
    bad = _one_line_error(ioc("import", str(tmp_path / "nowhere.csv")))
    assert "nowhere.csv" in bad


def test_mistakes_are_one_line_without_a_traceback(api_url: str, db_url: str) -> None:
    ioc = Ioc(api_url, _key(db_url, "ops", "operator"))
    assert "16 hex digits" in _one_line_error(ioc("show", "a84041000181c9"))
    assert "HTTP 404" in _one_line_error(ioc("show", "0000000000000bad"))
    denied = _one_line_error(ioc("decommission", EUI))
    assert "HTTP 403" in denied and "may not change devices" in denied
    assert "IOC_API_KEY is not set" in _one_line_error(ioc("list", IOC_API_KEY=""))
    assert "unknown API key" in _one_line_error(ioc("list", IOC_API_KEY="ioc_nope"))
    nowhere = _one_line_error(ioc("list", IOC_API_URL=f"http://127.0.0.1:{free_port()}"))
    assert "cannot reach the IOC API" in nowhere and "IOC_API_URL" in nowhere
    url = ioc("list", IOC_API_URL="ftp://x")  # bad configuration: the variable and the rule, as every command says it
    assert url.returncode == 2 and "IOC_API_URL: must be http(s)://host" in url.stderr
    assert "Traceback" not in url.stderr
    assert "--lat and --lon go together" in _one_line_error(ioc("move", EUI, "--lat", "16.0"))
