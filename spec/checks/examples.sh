#!/usr/bin/env bash
# The README's opening example (examples/hello.lua) runs and prints
# what the README says it prints.  Exit 0: pass.
set -u
cd "$(dirname "$0")/../.." || exit 1
out=$(timeout 60 lua5.4 examples/hello.lua 2>&1) || { echo "$out"; exit 1; }
echo "$out"
expected=$'true\t1.0.2\tLuaFileSystem 1.8.0\nloaded\tluv'
[ "$out" = "$expected" ] || { echo "examples check: unexpected output"; exit 1; }
grep -q "lua5.4 examples/hello.lua" README.md ||
  { echo "examples check: README does not show examples/hello.lua"; exit 1; }
