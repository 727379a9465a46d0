#!/usr/bin/env bash
# Out of memory at every allocation of a require (issue 9).
#
# Builds build/oomhost (spec/fixtures/oomhost.c: Lua with an allocator
# that fails allocation number N once armed, on a loop of its own handed
# to uvrequire) and runs spec/fixtures/oom_script.lua in these modes: a
# top-level require, a task (task:wait drives the loop), a task while
# the host drives its loop, a task whose module requires another; with
# the bytecode cache on, a top-level require and a task's, cold (a
# miss: the entry is written) and warm (a hit: the entry is read); a
# module whose body requires two others by literal name (their
# prefetch starts, is swept and adopted), at top level, in a task, and
# at top level with the cache warm; and at top level with the table of
# prefetches full (the two names wait in the table of those cut short
# until the body's requires of 16 fillers make room; the second one is
# adopted; after 512 loads, fillers go stale and are dropped for them);
# and mode "lazy": a 'lazy' proxy (its prefetch starts) and its first
# use; mode "detect": a blocking require in the running loop, which
# the detector watches and reports; mode "inbody": a coroutine a body
# resumes requires the module (its stored value) and meets a cycle.
# Then mode "cut": names waiting for room outlive a sweep that fails
# (spec/fixtures/oom_cut.lua, one host per N).  For N = 1, 2, ... each run must
# succeed or raise "not enough memory", leave nothing stuck "loading",
# and let a fresh require work; the last N is the first that the run
# no longer reaches.
#
# The cache modes (cold*, warm*, pfwarm) run with UVREQUIRE_CACHE set to
# a fresh directory of this check's own, one per mode; the others with
# UVREQUIRE_CACHE=off.
#
# A failure (the script's check), a crash (signal) or a hang (timeout
# 120 s) at N is recorded and the mode goes on from N + 1 in a fresh
# host, so that the summary lists every N that fails (at most
# OOM_MAXFAIL per mode, default 300; then the mode stops).
# Exit 0: pass (no N failed in any mode).
set -u
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
if ! out=$(make --no-print-directory build/uvrequire/core.so 2>&1); then
  echo "$out"; echo "oom check: build of the core failed"; exit 1
fi
mkdir -p build
# shellcheck disable=SC2046
if ! cc -std=gnu99 -Wall -Wextra -Werror -O1 -g \
     $(pkg-config --cflags lua5.4 libuv) -Icsrc -o build/oomhost \
     spec/fixtures/oomhost.c $(pkg-config --libs lua5.4 libuv) -Wl,-E; then
  echo "oom check: build of build/oomhost failed"; exit 1
fi
MAXFAIL=${OOM_MAXFAIL:-300}
MODES=${OOM_MODES:-top task hostrun nested detect inbody cold coldtask warm warmtask \
                   pftop pftask pfwarm pffull lazy}
log=$(mktemp)
caches=$(mktemp -d)
total_bad=0
for mode in $MODES; do
  [ "$mode" = cut ] && continue  # (below)
  first=1 runs=0 fails="" crashes="" hangs="" nbad=0 finished=0
  case $mode in
    cold*|warm*|pfwarm*) cache=$caches/${mode%%+*}; mkdir -p "$cache" ;;
    *) cache=off ;;
  esac
  while [ "$nbad" -lt "$MAXFAIL" ]; do
    UVREQUIRE_CACHE=$cache timeout 120 build/oomhost \
      spec/fixtures/oom_script.lua "$ROOT" "$mode" "$first" >"$log" 2>&1
    rc=$?
    last=$(grep -aoE '^N=[0-9]+' "$log" | tail -1 | cut -d= -f2)
    n=$(grep -acE '^N=[0-9]+' "$log")
    runs=$((runs + n))
    if [ "$rc" = 0 ] && grep -aqF "done $mode " "$log"; then
      finished=1
      break
    fi
    if [ -z "$last" ]; then
      echo "oom check: mode $mode from N=$first: no run started (status $rc):"
      cat "$log"
      nbad=$((nbad + 1)); break
    fi
    nbad=$((nbad + 1))
    if [ "$rc" = 124 ]; then
      hangs="$hangs $last"
      echo "oom: mode $mode: N=$last: HANG (killed after 120 s)"
    elif [ "$rc" -gt 128 ]; then
      crashes="$crashes $last"
      echo "oom: mode $mode: N=$last: CRASH (signal $((rc - 128)))"
      grep -a -v '^N=' "$log" | head -5
    else
      fails="$fails $last"
      msg=$(grep -a 'FAIL N=' "$log" | head -1)
      [ -n "$msg" ] || msg=$(grep -a -v '^N=' "$log" | head -3)
      echo "oom: mode $mode: N=$last: status $rc: $msg"
    fi
    first=$((last + 1))
  done
  echo "oom: mode $mode: $runs runs;" \
       "failed at N =${fails:- none};" \
       "crashed at N =${crashes:- none};" \
       "hung at N =${hangs:- none}" \
       "$([ "$finished" = 1 ] || echo "(stopped after $nbad bad N)")"
  total_bad=$((total_bad + nbad))
done
# Names waiting for room in the prefetch table outlive a sweep that runs
# out of memory (spec/fixtures/oom_cut.lua): a fresh host for each N,
# until N is past the last allocation of the sweep.
if [ -z "${OOM_MODES:-}" ] || [ "${OOM_MODES#*cut}" != "$OOM_MODES" ]; then
  N=1 cutbad=0
  while :; do
    out=$(UVREQUIRE_CACHE=off timeout 120 build/oomhost \
          spec/fixtures/oom_cut.lua "$ROOT" "$N" 2>&1)
    rc=$?
    if [ "$rc" != 0 ] || ! echo "$out" | grep -aqE "^N=$N hit=.* adopted=2$"
    then
      echo "oom: cut: N=$N: status $rc: $(echo "$out" | tail -3)"
      cutbad=$((cutbad + 1))
      [ "$cutbad" -ge "$MAXFAIL" ] && break
    fi
    echo "$out" | grep -aqE "^N=$N hit=true " || break
    N=$((N + 1))
  done
  echo "oom: cut: $N runs; $cutbad bad"
  total_bad=$((total_bad + cutbad))
fi
rm -f "$log"
rm -rf "$caches"
if [ "$total_bad" != 0 ]; then
  echo "oom check: $total_bad bad N in all"
  exit 1
fi
echo "oom check: every N passed"
