#!/usr/bin/env bash
# The README's two commands:  ./run.sh demo   and   ./run.sh test
# Each installs what it needs first: Mosquitto and PostgreSQL from the distribution when missing,
# a virtual environment in .venv, and the platform with its dependencies.
set -euo pipefail
# The demo prints commands as they can be typed where this script was started: "./run.sh ioc ...".
case "$0" in */*) IOC_RUN_SH=$0 ;; *) IOC_RUN_SH=./$0 ;; esac
export IOC_RUN_SH
cd "$(dirname "$0")"

usage() {
  cat <<'USAGE'
usage: ./run.sh demo [ioc demo options]   start an embedded PostgreSQL and Mosquitto, simulate Da Nang, ingest
       ./run.sh test [pytest options]     lint, type-check and run every test against real services
       ./run.sh ioc ARGS...               any other `ioc` command inside the project's environment
USAGE
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

system_packages() {
  local missing=()
  if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then missing+=(mosquitto); fi
  # mosquitto_sub, for the commands the demo prints to watch both brokers
  if ! command -v mosquitto_sub >/dev/null 2>&1; then missing+=(mosquitto-clients); fi
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    missing+=(postgresql)
  fi
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then missing+=(python3-venv); fi
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]} from the distribution" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

python_env() {
  python3 - <<'PY' || { echo "Python 3.11 or newer is needed" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY
  if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv" >&2
    python3 -m venv .venv
  fi
  local stamp=.venv/.ioc-installed
  local want
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "==> installing the platform and its dependencies into .venv" >&2
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    # grafana-client's HTTP library (niquests) brings urllib3-future, whose wheel overwrites the real urllib3
    # that requests (and so schemathesis) needs. Built from source with URLLIB3_NO_OVERRIDE=1, as its
    # maintainers document, it keeps to its own urllib3_future package and both work.
    URLLIB3_NO_OVERRIDE=1 .venv/bin/python -m pip install -q --no-binary urllib3-future -e '.[dev]'
    if compgen -G ".venv/lib/python3*/site-packages/urllib3_future.pth" >/dev/null; then
      echo "==> separating urllib3-future from urllib3 in .venv" >&2
      .venv/bin/python -m pip uninstall -q -y urllib3-future urllib3
      rm -rf .venv/lib/python3*/site-packages/urllib3
      URLLIB3_NO_OVERRIDE=1 .venv/bin/python -m pip install -q --no-binary urllib3-future urllib3-future urllib3
    fi
    echo "$want" > "$stamp"
  fi
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  demo)
    system_packages; python_env
    exec .venv/bin/ioc demo "$@"
    ;;
  test)
    system_packages; python_env
    echo "==> ruff" >&2
    .venv/bin/ruff check .
    echo "==> mypy (strict)" >&2
    .venv/bin/mypy
    echo "==> pytest" >&2
    exec .venv/bin/pytest "$@"
    ;;
  ioc)
    system_packages; python_env
    exec .venv/bin/ioc "$@"
    ;;
  -h|--help|help|"") usage ;;
  *) usage; exit 2 ;;
esac
