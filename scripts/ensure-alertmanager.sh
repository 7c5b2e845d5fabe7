#!/usr/bin/env bash
# Makes sure the Prometheus Alertmanager that the alert tests run against is
# installed: installs Debian's prometheus-alertmanager when the binary is
# missing, and fails loudly when it still cannot be found. The tests start
# their own instance on a loopback port; nothing is started here, and the
# package's own service (if the init system runs it) is left as it is.
# Idempotent: a second run only checks.
set -euo pipefail

bin=prometheus-alertmanager

if ! command -v "$bin" >/dev/null 2>&1; then
  echo "ensure-alertmanager: $bin is not installed; installing Debian's prometheus-alertmanager" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq prometheus-alertmanager >/dev/null
fi

if ! command -v "$bin" >/dev/null 2>&1; then
  echo "ensure-alertmanager: $bin is still missing; cannot run the alert tests" >&2
  exit 1
fi
