#!/usr/bin/env bash
# Makes sure the PostgreSQL that the tests and the demo use is up:
# starts the local cluster when it is installed but stopped, installs
# Debian's postgresql first when it is missing, and fails loudly when the
# server still cannot be reached. Tests never skip for want of a database.
set -euo pipefail

url="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}"
host=127.0.0.1
port=5432

ready() { pg_isready -q -h "$host" -p "$port" >/dev/null 2>&1; }

start_cluster() {
  local ver
  for ver in $(ls /etc/postgresql 2>/dev/null); do
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null || true
  done
}

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
  echo "ensure-postgres: PostgreSQL is not installed; installing Debian's postgresql" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
  # A fresh cluster asks for passwords on TCP; the test server trusts loopback.
  for hba in /etc/postgresql/*/main/pg_hba.conf; do
    if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
      sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    fi
  done
fi

if ! ready; then
  echo "ensure-postgres: starting the local cluster" >&2
  start_cluster
fi
for _ in $(seq 1 30); do
  ready && break
  sleep 1
done
if ! ready; then
  echo "ensure-postgres: PostgreSQL at $host:$port is not reachable; cannot run the tests" >&2
  exit 1
fi

db=$(sed -E 's#^[a-z]+://[^/]*/([^?]*).*#\1#' <<<"$url")
db=${db:-test}
if ! psql "$url" -Atqc 'select 1' >/dev/null 2>&1; then
  echo "ensure-postgres: creating database $db" >&2
  su postgres -c "createdb '$db'" 2>/dev/null || psql -h "$host" -U postgres -d postgres -qc "CREATE DATABASE \"$db\"" || true
fi
psql "$url" -Atqc 'select 1' >/dev/null || { echo "ensure-postgres: cannot connect to $db" >&2; exit 1; }
