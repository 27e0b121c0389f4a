#!/usr/bin/env bash
# One entry point for a fresh machine (Debian, Python 3.11):
#   ./heldout.sh demo   install what is missing, then run the service on embedded defaults with a demo course
#   ./heldout.sh test   install what is missing (incl. test tools, PostgreSQL, Redis, Chromium), then run every test
#   ./heldout.sh lint   install what is missing (incl. test tools), then run ruff, mypy (strict on scoring/ and
#                       grader_api/lifecycle/), the import contracts (lint-imports) and the contract tests
# Extra arguments go to `grade serve` (demo) or pytest (test).
# HELDOUT_VENV picks the virtual environment (default: .venv in this checkout).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
VENV="${HELDOUT_VENV:-$ROOT/.venv}"
PG_ADDR=127.0.0.1
PG_PORT=5432
REDIS_PORT=6379

log() { printf '\033[1m[heldout]\033[0m %s\n' "$*" >&2; }

can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

APT_UPDATED=0
apt_install() {
  if ! can_apt; then
    log "missing system packages: $* (install them, then run this again)"
    return 1
  fi
  if [ "$APT_UPDATED" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  log "installing system packages: $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

find_python() {
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 &&
       "$cand" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
      echo "$cand"; return 0
    fi
  done
  log "Python 3.11 is required (python3.11 or python3 on PATH)"
  return 1
}

ensure_venv() {
  local extras="$1" py stamp want
  if [ ! -x "$VENV/bin/python" ]; then
    py="$(find_python)"
    if ! "$py" -m venv "$VENV" 2>/dev/null; then
      apt_install python3-venv python3-pip
      rm -rf "$VENV"
      "$py" -m venv "$VENV"
    fi
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  fi
  # Reinstall dependencies only when pyproject.toml changes; the project itself is
  # re-linked every time (cheap) so a shared venv always points at this checkout.
  want="$(sha256sum pyproject.toml | cut -c1-16)-$extras"
  stamp="$VENV/.heldout-deps"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing Python dependencies into $VENV (torch is large: the first time takes a few minutes)"
    "$VENV/bin/pip" install -q "torch==2.14.1" "torchvision==0.29.1"
    if [ -n "$extras" ]; then "$VENV/bin/pip" install -q -e ".[$extras]"; else "$VENV/bin/pip" install -q -e .; fi
    echo "$want" >"$stamp"
  else
    "$VENV/bin/pip" install -q --no-deps -e . >/dev/null
  fi
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

ensure_postgres() {
  if port_open "$PG_ADDR" "$PG_PORT"; then return 0; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql || return 0
  fi
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    log "starting PostgreSQL"
    local ver; ver="$(ls /etc/postgresql | sort -V | tail -1)"
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  fi
  for _ in $(seq 1 30); do port_open "$PG_ADDR" "$PG_PORT" && return 0; sleep 1; done
  log "PostgreSQL is not reachable on $PG_ADDR:$PG_PORT; its tests will be skipped"
}

ensure_redis() {
  if port_open 127.0.0.1 "$REDIS_PORT"; then return 0; fi
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server || return 0
  log "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/heldout.log || true
  for _ in $(seq 1 20); do port_open 127.0.0.1 "$REDIS_PORT" && return 0; sleep 0.5; done
  log "Redis is not reachable on 127.0.0.1:$REDIS_PORT; its tests will be skipped"
}

ensure_system_tools() {
  # Browser tests drive the system Chromium; the model sandbox uses bubblewrap; the compose
  # file is checked with Compose itself (`docker compose` or Debian's docker-compose).
  local missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium chromium-driver)
  command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
  if ! command -v docker-compose >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1; then
    missing+=(docker-compose)
  fi
  if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}" || true; fi
}

cmd="${1:-}"
shift || true
case "$cmd" in
  demo)
    ensure_venv ""
    command -v bwrap >/dev/null 2>&1 || apt_install bubblewrap || true
    exec "$VENV/bin/grade" serve --demo "$@"
    ;;
  test)
    ensure_venv "test"
    ensure_system_tools
    ensure_postgres
    ensure_redis
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  lint)
    ensure_venv "test"
    # Every check runs (each prints its command first); the exit status says whether any failed.
    failed=()
    check() { log "\$ $*"; "$VENV/bin/$1" "${@:2}" || failed+=("$*"); }
    check ruff check .
    check mypy scoring grader_api worker   # strict on scoring and the lifecycle: pyproject.toml [tool.mypy]
    check lint-imports --no-cache --no-logo   # contracts: pyproject.toml [tool.importlinter]
    check python -m pytest -q -p no:cacheprovider tests/test_import_contracts.py tests/scoring/test_boundaries.py
    for f in "${failed[@]}"; do log "FAILED: $f"; done
    [ "${#failed[@]}" -eq 0 ] || exit 1
    log "all checks passed"
    ;;
  *)
    echo "usage: ./heldout.sh demo [grade serve options] | ./heldout.sh test [pytest options] | ./heldout.sh lint" >&2
    exit 2
    ;;
esac
