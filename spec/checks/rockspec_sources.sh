#!/usr/bin/env bash
# Each rockspec (rockspec/*.rockspec) builds uvrequire.core from exactly
# the C files in csrc/: its explicit source list (the builtin backend
# takes no glob) must name every csrc/*.c and nothing else.  When a C
# file is added, removed or renamed, this fails until the rockspecs
# follow.  Exit 0: pass.
set -u
cd "$(dirname "$0")/../.." || exit 1
LUA=${LUA:-lua5.4}
want=$(cd csrc && ls -1 -- *.c | sed 's|^|csrc/|' | LC_ALL=C sort)
rc=0
for spec in rockspec/*.rockspec; do
  list=$("$LUA" - "$spec" <<'LUA'
local env = {}
local chunk = assert(loadfile(arg[1], "t", env))
chunk()
local m = env.build and env.build.modules
local core = m and m["uvrequire.core"]
assert(type(core) == "table" and type(core.sources) == "table",
       'no build.modules["uvrequire.core"].sources')
for _, s in ipairs(core.sources) do print(s) end
LUA
  ) || { echo "$spec: cannot read its sources"; rc=1; continue; }
  got=$(echo "$list" | LC_ALL=C sort)
  if [ "$got" != "$want" ]; then
    echo "$spec: uvrequire.core sources differ from csrc/*.c"
    diff <(echo "$want") <(echo "$got") |
      sed -n 's/^</  missing:/p; s/^>/  extra:  /p'
    rc=1
  else
    echo "$spec: $(echo "$want" | wc -l) sources, as csrc/*.c"
  fi
done
exit $rc
