#!/usr/bin/env bash
# Run every test: the busted specs (under valgrind when
# UVREQUIRE_VALGRIND=1), then the script checks (spec/checks/*.sh).
# Prints per-part summaries and ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
LUA=${LUA:-lua5.4}
# the suite never writes to the user's bytecode cache (specs that test
# it give their child processes a directory of their own)
export UVREQUIRE_CACHE=off
passed=0 failed=0
out=$(mktemp)
runner=("$LUA" /usr/bin/busted)
if [ "${UVREQUIRE_VALGRIND:-0}" = 1 ]; then
  runner=(valgrind -q --error-exitcode=99 --leak-check=no
          --suppressions=spec/valgrind.supp "${runner[@]}")
fi
"${runner[@]}" -o utfTerminal "$@" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
summary=$(grep -aE '[0-9]+ successes? / [0-9]+ failures? / [0-9]+ errors?' "$out" | tail -1)
if [ -n "$summary" ]; then
  s=$(echo "$summary" | sed -E 's/.*\b([0-9]+) successes?.*/\1/')
  f=$(echo "$summary" | sed -E 's/.* ([0-9]+) failures?.*/\1/')
  e=$(echo "$summary" | sed -E 's/.* ([0-9]+) errors?.*/\1/')
  passed=$((passed + s)); failed=$((failed + f + e))
fi
if [ "$rc" != 0 ] && [ "$failed" = 0 ]; then failed=$((failed + 1)); fi
rm -f "$out"
# Script checks: each prints its own output and passes by exit code.
# (Not under valgrind or ASan, nor inside `luarocks test`, which a check
# runs: UVREQUIRE_NOCHECKS=1.)
if [ "${UVREQUIRE_VALGRIND:-0}" != 1 ] && [ "${UVREQUIRE_ASAN:-0}" != 1 ] &&
   [ "${UVREQUIRE_NOCHECKS:-0}" != 1 ]; then
  for c in spec/checks/*.sh; do
    [ -e "$c" ] || continue
    echo "--- check: $c"
    if bash "$c"; then passed=$((passed + 1)); echo "ok: $c"
    else failed=$((failed + 1)); echo "FAILED: $c"; fi
  done
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
