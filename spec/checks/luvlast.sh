#!/usr/bin/env bash
# install() before luv is ever required, then a normal exit with an
# import in flight (spec/fixtures/luvlast.lua, two ways: luv required
# at top level; luv required in a task after uvrequire took a loop of
# its own).  With UVREQUIRE_VALGRIND=1 each runs under valgrind
# (memcheck): any error or definite leak fails.  Exit 0: pass.
set -u
cd "$(dirname "$0")/../.." || exit 1
if ! out=$(make --no-print-directory build/uvrequire/core.so 2>&1); then
  echo "$out"; echo "luvlast check: build failed"; exit 1
fi
runner=(timeout 120)
if [ "${UVREQUIRE_VALGRIND:-0}" = 1 ]; then
  runner+=(valgrind -q --leak-check=full --errors-for-leak-kinds=definite
           --show-leak-kinds=definite --error-exitcode=99
           --suppressions=spec/valgrind.supp)
fi
rc=0
for how in first task; do
  LUA_PATH="$PWD/lua/?.lua;;" LUA_CPATH="$PWD/build/?.so;;" \
    "${runner[@]}" lua5.4 spec/fixtures/luvlast.lua "$how"
  s=$?
  if [ "$s" != 0 ]; then
    echo "luvlast check: '$how' exited with status $s"
    rc=1
  fi
done
exit $rc
