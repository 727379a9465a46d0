#!/usr/bin/env bash
# make install / make uninstall, staged: `make install DESTDIR=<tmp>
# PREFIX=/usr` puts exactly uvrequire.lua, uvrequire/lazy.lua,
# uvrequire/core.so, uvrequire.h and uvrequire.pc where the Makefile
# says; a C host (examples/host.c) builds with `pkg-config --cflags
# --libs uvrequire` from the staged uvrequire.pc and runs with
# package.path/cpath reaching the staged modules only
# (LUA_PATH/LUA_CPATH); `make uninstall` with the same variables leaves
# no file behind.  Exit 0: pass.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
work=$(mktemp -d /tmp/uvr_inst.XXXXXX) || exit 1
trap 'rm -rf "$work"' EXIT
stage=$work/stage
vars=(DESTDIR="$stage" PREFIX=/usr)

fail() { echo "install check: $*"; exit 1; }

# 1. Install into the stage: exactly these files.
if ! out=$(make --no-print-directory install "${vars[@]}" 2>&1); then
  echo "$out"
  fail "make install failed"
fi
want="$stage/usr/include/uvrequire.h
$stage/usr/lib/lua/5.4/uvrequire/core.so
$stage/usr/lib/pkgconfig/uvrequire.pc
$stage/usr/share/lua/5.4/uvrequire.lua
$stage/usr/share/lua/5.4/uvrequire/lazy.lua"
got=$(find "$stage" ! -type d | LC_ALL=C sort)
if [ "$got" != "$want" ]; then
  echo "installed:"; echo "$got"; echo "expected:"; echo "$want"
  fail "make install did not install exactly the five files"
fi
echo "make install: 5 files under $stage/usr"

# 2. Build the host with the staged uvrequire.pc.  Its includedir is
# /usr/include: the header is staged under $stage, so that -I is added
# by hand; the rest (libuv and Lua 5.4, by Requires) comes as is.
export PKG_CONFIG_PATH=$stage/usr/lib/pkgconfig
pcfile=$(pkg-config --path uvrequire 2>/dev/null)
[ "$pcfile" = "$stage/usr/lib/pkgconfig/uvrequire.pc" ] ||
  fail "pkg-config finds uvrequire.pc at '$pcfile'"
incdir=$(pkg-config --variable=includedir uvrequire) ||
  fail "pkg-config --variable=includedir failed"
[ -f "$stage$incdir/uvrequire.h" ] ||
  fail "includedir $incdir does not hold the staged uvrequire.h"
flags=$(pkg-config --cflags --libs uvrequire) ||
  fail "pkg-config --cflags --libs uvrequire failed"
echo "pkg-config --cflags --libs uvrequire: $flags"
# shellcheck disable=SC2086  # the flags are words
if ! out=$(cc -Wall -O1 -o "$work/host" examples/host.c "-I$stage$incdir" \
             $flags -Wl,-E 2>&1); then
  echo "$out"
  fail "the host does not build with the staged pkg-config flags"
fi
unset PKG_CONFIG_PATH

# 3. Run it.  Its root is a directory holding only examples/: no lua/
# nor build/ to find uvrequire in, so LUA_PATH/LUA_CPATH must reach the
# staged copy.  The script it runs checks that, then runs the real one.
hroot=$work/root
mkdir -p "$hroot/examples" || exit 1
cat >"$hroot/examples/host_script.lua" <<'LUA'
local stage = assert(os.getenv("UVR_STAGE"))
local function under(file)
  return file ~= nil and file:sub(1, #stage + 1) == stage .. "/"
end
local lfile = package.searchpath("uvrequire", package.path)
local cfile = package.searchpath("uvrequire.core", package.cpath)
assert(under(lfile), "uvrequire.lua found at " .. tostring(lfile))
assert(under(cfile), "uvrequire.core found at " .. tostring(cfile))
print(("host: installed copy: %s, %s"):format(lfile, cfile))
return dofile(assert(os.getenv("UVR_HOST_SCRIPT")))
LUA
unset LUA_PATH_5_4 LUA_CPATH_5_4 LUA_INIT LUA_INIT_5_4
LUA_PATH="$stage/usr/share/lua/5.4/?.lua;;" \
LUA_CPATH="$stage/usr/lib/lua/5.4/?.so;;" \
UVR_STAGE=$stage UVR_HOST_SCRIPT=$root/examples/host_script.lua \
  timeout 60 "$work/host" "$hroot"
rc=$?
[ "$rc" = 0 ] || fail "the host exited with status $rc"

# 4. Uninstall with the same variables: no file is left.
if ! out=$(make --no-print-directory uninstall "${vars[@]}" 2>&1); then
  echo "$out"
  fail "make uninstall failed"
fi
left=$(find "$stage" ! -type d)
if [ -n "$left" ]; then
  echo "$left"
  fail "make uninstall left files behind"
fi
[ ! -e "$stage/usr/lib/lua/5.4/uvrequire" ] ||
  fail "make uninstall left the uvrequire/ directory of the core"
[ ! -e "$stage/usr/share/lua/5.4/uvrequire" ] ||
  fail "make uninstall left the uvrequire/ directory of lazy.lua"
echo "make uninstall: no file left"
echo "install check: passed"
