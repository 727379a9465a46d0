#!/usr/bin/env bash
# `luarocks test` of the release rockspec in a clean clone of this
# checkout's HEAD, offline: the rockspec's test command builds and runs
# the busted specs (UVREQUIRE_NOCHECKS=1: not these checks again).
# Exit 0: pass.
set -u
cd "$(dirname "$0")/../.." || exit 1
tmp=$(mktemp -d /tmp/uvr_lrtest.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
if ! git clone -q . "$tmp/clone" 2>"$tmp/err"; then
  cat "$tmp/err"; echo "luarocks test check: clone failed"; exit 1
fi
cd "$tmp/clone" || exit 1
out=$(UVREQUIRE_NOCHECKS=1 luarocks --lua-version=5.4 test \
        rockspec/uvrequire-0.1.0-1.rockspec 2>&1)
rc=$?
echo "$out" | tail -3
if [ "$rc" != 0 ] || ! echo "$out" | grep -qE '^[0-9]+ passed, 0 failed$'; then
  echo "luarocks test check: failed (status $rc)"
  exit 1
fi
echo "luarocks test check: passed"
