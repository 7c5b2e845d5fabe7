#!/usr/bin/env bash
# Builds (once) or reuses the test Vault server used by `make e2e`.
# The binary (~500 MB) goes to a cache directory outside the repository,
# keyed by the Vault version pinned in tools/vault/go.mod; the first build
# downloads ~4 GB of modules and takes ~15 minutes on 2 cores.
# tools/vault/go.sum holds the checksums of the module graph `go mod tidy -e`
# resolves for that version, so every download is verified against it; the
# build says so when the resolution no longer matches it.
# Prints the path of the binary on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
version=$(awk '$1=="require" && $2=="github.com/hashicorp/vault" {print $3}' "$here/tools/vault/go.mod")
[ -n "$version" ] || { echo "ensure-vault: no vault version in tools/vault/go.mod" >&2; exit 1; }
cache=${VAULT_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/leaseguard-vault}
bin="$cache/vault-$version"
if [ -x "$bin" ] && "$bin" version >/dev/null 2>&1; then
  echo "$bin"; exit 0
fi
mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp "$here/tools/vault/main.go" "$here/tools/vault/go.mod" "$work/"
[ -f "$here/tools/vault/go.sum" ] && cp "$here/tools/vault/go.sum" "$work/"
echo "ensure-vault: building Vault $version into $bin (first time: ~15 min)" >&2
(cd "$work" && GOFLAGS=-mod=mod go mod tidy -e >&2 && go build -trimpath -o "$bin.tmp" . >&2)
if ! cmp -s "$work/go.sum" "$here/tools/vault/go.sum"; then
  cp "$work/go.sum" "$cache/go.sum-$version"
  echo "ensure-vault: tools/vault/go.sum differs from what go mod tidy -e resolved; the resolved one is $cache/go.sum-$version" >&2
fi
mv "$bin.tmp" "$bin"
"$bin" version >&2
echo "$bin"
