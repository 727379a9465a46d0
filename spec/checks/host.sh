#!/usr/bin/env bash
# The embedding host: build examples/host.c (build/host) and the core
# (build/uvrequire/core.so), then run the host from the repository
# root.  It owns its libuv loop and a 1 ms timer, has uvrequire deliver
# imports on that loop, and exits 0 only if the imports succeeded while
# its timer kept ticking and the loop closed cleanly after lua_close.
# With UVREQUIRE_VALGRIND=1 the host runs under valgrind (memcheck; any
# error or definite leak fails).  Exit 0: pass.
set -u
cd "$(dirname "$0")/../.." || exit 1
if ! out=$(make --no-print-directory build/uvrequire/core.so build/host \
             2>&1); then
  echo "$out"
  echo "host check: build failed"
  exit 1
fi
runner=(timeout 120)
if [ "${UVREQUIRE_VALGRIND:-0}" = 1 ]; then
  runner+=(valgrind -q --error-exitcode=99 --leak-check=full
           --errors-for-leak-kinds=definite --show-leak-kinds=definite
           --suppressions=spec/valgrind.supp)
fi
"${runner[@]}" build/host "$PWD"
rc=$?
if [ "$rc" != 0 ]; then
  echo "host check: build/host exited with status $rc"
  exit 1
fi
