#!/usr/bin/env bash
# Installs the programs the end-to-end shipping test runs, when they are
# missing: Debian's rsyslog with its Kafka output (omkafka, package
# rsyslog-kafka) ships a Vault file audit log into Kafka, and kcat reads the
# evidence topic as a SIEM would; Debian's prometheus provides promtool,
# which checks and unit-tests the alerting rules in deploy/prometheus/;
# Debian's nats-server (2.9) is the too-old server a test expects leaseguard
# to refuse by version; jq runs the SIEM recipes' unwrap.jq in a test. Quiet
# when everything is there; fails loudly when something is still missing, so
# the test never skips.
set -euo pipefail

packages=(rsyslog rsyslog-kafka kcat prometheus nats-server jq)

installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

missing=()
for pkg in "${packages[@]}"; do
  installed "$pkg" || missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "ensure-tools: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

fail() {
  echo "ensure-tools: $*; cannot run the end-to-end tests or check the alerting rules" >&2
  exit 1
}
for pkg in "${packages[@]}"; do
  installed "$pkg" || fail "package $pkg is not installed"
done
# rsyslogd lives in /usr/sbin, which a user's PATH may lack.
[ -x /usr/sbin/rsyslogd ] || command -v rsyslogd >/dev/null 2>&1 || fail "rsyslogd not found"
command -v kcat >/dev/null 2>&1 || fail "kcat not found"
command -v promtool >/dev/null 2>&1 || fail "promtool not found"
[ -x /usr/sbin/nats-server ] || fail "/usr/sbin/nats-server not found"
dpkg-query -L rsyslog-kafka | grep -q '/omkafka\.so$' || fail "rsyslog-kafka provides no omkafka.so"
dpkg-query -L rsyslog | grep -q '/imfile\.so$' || fail "rsyslog provides no imfile.so"
