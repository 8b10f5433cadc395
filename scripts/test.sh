#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine, then run lint, types and tests.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'

# checkov (tests/scenarios/test_manifests.py) has dependencies that conflict with ours: its own venv.
if [ ! -x .venv-tools/bin/checkov ]; then
  "$python" -m venv .venv-tools
  .venv-tools/bin/python -m pip install --quiet --upgrade pip
  .venv-tools/bin/python -m pip install --quiet 'checkov==3.3.30'
fi

# tmux drives `ingress-audit tail` in a real terminal (tests/commands/test_tail.py); redis-server backs
# the shared state store tests (tests/state/test_stores.py, tests/scenarios/test_changes.py). PostgreSQL,
# rsyslog (with its GnuTLS driver) and nats-server are the real servers of the sink, crash and
# outage tests (tests/servers.py).
missing=()
command -v tmux >/dev/null || missing+=(tmux)
command -v jq >/dev/null || missing+=(jq)  # the README's jq examples (tests/scenarios/test_examples.py)
command -v chromium >/dev/null || missing+=(chromium)  # screenshots the HTML review (tests/review/test_render.py)
command -v redis-server >/dev/null || missing+=(redis-server)
compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || missing+=(postgresql)
command -v rsyslogd >/dev/null || [ -x /usr/sbin/rsyslogd ] || missing+=(rsyslog)
compgen -G '/usr/lib/*/rsyslog/lmnsd_gtls.so' >/dev/null || missing+=(rsyslog-gnutls)
command -v nats-server >/dev/null || missing+=(nats-server)
# promtool and a real Prometheus (rules tests, scrape test), Alertmanager (the alert sink) and
# nginx writing ingress-nginx's access-log format to our syslog input.
command -v promtool >/dev/null || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
# buildah builds the Dockerfile on a Python base that debootstrap makes from Debian packages,
# and runs the image (tests/scenarios/test_image.py): no Docker engine, no image pulled.
command -v buildah >/dev/null || missing+=(buildah)
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
# Azurite, Microsoft's Azure Storage emulator, backs the AKS storage-account source's tests
# (tests/sources/test_aks_storage.py); it comes from the npm registry.
command -v npm >/dev/null || missing+=(nodejs npm)
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .tools/azurite/node_modules/.bin/azurite-blob ] && command -v npm >/dev/null; then
  npm install --prefix .tools/azurite --no-audit --no-fund --silent azurite@3.35.0
fi

status=0
.venv/bin/ruff check . || status=1
.venv/bin/ruff format --check . || status=1
.venv/bin/mypy || status=1
.venv/bin/lint-imports --no-cache || status=1
.venv/bin/pytest "$@" || status=$?
exit "$status"
