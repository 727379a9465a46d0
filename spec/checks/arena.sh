#!/usr/bin/env bash
# The arena of a compile's scratch state (csrc/arena.c): built into
# build/arenatest (spec/fixtures/arenatest.c) with malloc, realloc and
# free of its own, under AddressSanitizer when the compiler has it.
# For Lua sources of every size (the bench generator's modules, the
# specs' fixtures and uvrequire's own Lua files): the bytecode compiled
# in an arena state is exactly that of a plain state, and a malloc or
# realloc failing at each call in turn gives "not enough memory" or the
# same bytecode, never a crash, and leaves no block behind.
# Exit 0: pass.
set -u
cd "$(dirname "$0")/../.." || exit 1
LUA=${LUA:-lua5.4}
mkdir -p build
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
san=-fsanitize=address
echo 'int main(void){return 0;}' > "$tmp/t.c"
cc $san -o "$tmp/t" "$tmp/t.c" 2>/dev/null || san=
# shellcheck disable=SC2046
if ! cc -std=gnu99 -Wall -Wextra -Werror -O1 -g $san \
     $(pkg-config --cflags lua5.4 libuv) -Icsrc \
     -Dmalloc=test_malloc -Drealloc=test_realloc -Dfree=test_free \
     -c -o "$tmp/arena.o" csrc/arena.c ||
   ! cc -std=gnu99 -Wall -Wextra -Werror -O1 -g $san \
     $(pkg-config --cflags lua5.4 libuv) -Icsrc -o build/arenatest \
     spec/fixtures/arenatest.c "$tmp/arena.o" $(pkg-config --libs lua5.4)
then
  echo "arena check: build of build/arenatest failed"; exit 1
fi
# sources: generated modules of several sizes, and the tree's own
"$LUA" - "$tmp" <<'LUA' || { echo "arena check: generator failed"; exit 1; }
local gen = dofile("bench/gen.lua")
local srcs = { gen.small_source("s1", 1), gen.small_source("s2", 2),
               gen.large_source("l1", 40 * 1024),
               gen.large_source("l2", 600 * 1024) }
for i, src in ipairs(srcs) do
  local f = assert(io.open(arg[1] .. "/gen" .. i .. ".lua", "w"))
  f:write(src)
  f:close()
end
LUA
ASAN_OPTIONS=detect_leaks=1 build/arenatest "$tmp"/gen*.lua lua/*.lua \
  spec/fixtures/*.lua
