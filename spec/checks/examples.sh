#!/usr/bin/env bash
# The README's opening example (examples/hello.lua) runs and prints
# what the README says it prints; so does its complete C host
# (examples/minihost.c, shown whole in the README).  Exit 0: pass.
set -u
cd "$(dirname "$0")/../.." || exit 1
out=$(timeout 60 lua5.4 examples/hello.lua 2>&1) || { echo "$out"; exit 1; }
echo "$out"
expected=$'true\t1.0.2\tLuaFileSystem 1.8.0\nloaded\tluv'
[ "$out" = "$expected" ] || { echo "examples check: unexpected output"; exit 1; }
grep -q "lua5.4 examples/hello.lua" README.md ||
  { echo "examples check: README does not show examples/hello.lua"; exit 1; }
make --no-print-directory build/minihost >/dev/null ||
  { echo "examples check: build of build/minihost failed"; exit 1; }
out=$(LUA_PATH="lua/?.lua;;" LUA_CPATH="build/?.so;;" timeout 60 \
      build/minihost 2>&1) || { echo "$out"; exit 1; }
echo "$out"
[[ "$out" =~ ^minihost:\ 42\ after\ [0-9]+\ tick\(s\)$ ]] ||
  { echo "examples check: unexpected minihost output"; exit 1; }
diff <(sed -n '/^```c minihost.c$/,/^```$/p' README.md | sed '1d;$d') \
     examples/minihost.c >/dev/null ||
  { echo "examples check: README's minihost.c differs from examples/"; exit 1; }
