#!/usr/bin/env bash
# Builds (once) or reuses the nats-server that deploy/nats's test starts
# with the shipped configuration: the version go.mod pins
# (github.com/nats-io/nats-server/v2), built from the module the build
# already verifies against go.sum, into a cache directory outside the
# repository. The first build takes a minute or two; later runs only check.
# Debian's nats-server package is older than the configuration needs.
# Prints the path of the binary on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
version=$(cd "$here" && go list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2)
[ -n "$version" ] || { echo "ensure-nats-server: no nats-server version in go.mod" >&2; exit 1; }
cache=${NATS_SERVER_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/leaseguard-nats}
bin="$cache/nats-server-$version"
if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null)" = "nats-server: $version" ]; then
  echo "$bin"; exit 0
fi
mkdir -p "$cache"
echo "ensure-nats-server: building nats-server $version into $bin" >&2
tmp="$bin.tmp.$$"
trap 'rm -f "$tmp"' EXIT
(cd "$here" && go build -trimpath -o "$tmp" github.com/nats-io/nats-server/v2 >&2)
got=$("$tmp" --version)
[ "$got" = "nats-server: $version" ] || { echo "ensure-nats-server: built $got, want $version" >&2; exit 1; }
mv "$tmp" "$bin"
echo "$bin"
