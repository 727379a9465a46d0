#!/usr/bin/env bash
# The rock: `luarocks make` of rockspec/uvrequire-scm-1.rockspec, from a
# copy of the checkout as it is on disk (uncommitted work included),
# into a scratch tree; then the installed copy, used from another
# directory: install() and a plain require, then a task whose import
# waits on the loop.  Never touches the network (no dependency to fetch;
# the only server allowed is an empty local directory).  Exit 0: pass.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
LUA=${LUA:-lua5.4}
work=$(mktemp -d /tmp/uvr_rock.XXXXXX) || exit 1
trap 'rm -rf "$work"' EXIT
src=$work/src tree=$work/tree run=$work/run mods=$work/mods
mkdir -p "$src" "$tree" "$run" "$mods" "$work/noserver" || exit 1
lr=(luarocks --lua-version=5.4 --only-server="$work/noserver")

fail() { echo "luarocks check: $*"; exit 1; }

# 1. Copy tracked and untracked-but-not-ignored files that exist.
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$root" && git ls-files -z -c -o --exclude-standard |
     while IFS= read -r -d '' f; do
       [ -e "$f" ] && printf '%s\0' "$f"
     done | tar --null -T - -cf -) | tar -C "$src" -xf - ||
    fail "cannot copy the checkout"
else  # no git: everything but build output
  (cd "$root" && tar --exclude=./.git --exclude=./build --exclude=./tree \
     -cf - .) | tar -C "$src" -xf - || fail "cannot copy the checkout"
fi
[ -f "$src/rockspec/uvrequire-scm-1.rockspec" ] ||
  fail "rockspec/uvrequire-scm-1.rockspec is missing"

# 2. Build and install into the scratch tree.
if ! out=$(cd "$src" && "${lr[@]}" make --tree "$tree" \
             rockspec/uvrequire-scm-1.rockspec 2>&1); then
  echo "$out"
  fail "luarocks make failed"
fi
echo "$out" | grep -E 'depends on|is now installed'

# 3. Use it from another directory, with the tree's paths only added
# (and no variable that lua5.4 would read before them).
unset LUA_PATH_5_4 LUA_CPATH_5_4 LUA_INIT LUA_INIT_5_4
paths=$("${lr[@]}" --tree "$tree" path) || fail "luarocks path failed"
eval "$paths"

cat >"$mods/rk_plain.lua" <<'EOF'
return { answer = 42 }
EOF
cat >"$mods/rk_task.lua" <<'EOF'
local plain = require "rk_plain"  -- nested, already loaded
return { answer = plain.answer // 6 }
EOF
cat >"$run/script.lua" <<'EOF'
local tree, mods = arg[1], arg[2]
local uv = require "uvrequire"
assert(require == uv.require, "the global require is not uvrequire's")
local function under(dir, file)
  return file ~= nil and file:sub(1, #dir + 1) == dir .. "/"
end
local lfile = package.searchpath("uvrequire", package.path)
local cfile = package.searchpath("uvrequire.core", package.cpath)
assert(under(tree, lfile), "uvrequire.lua found at " .. tostring(lfile))
assert(under(tree, cfile), "uvrequire.core found at " .. tostring(cfile))
package.path = mods .. "/?.lua;" .. package.path

-- the main thread: a blocking import, both results
local r = table.pack(require "rk_plain")
assert(r.n == 2, "require returned " .. r.n .. " results")
assert(r[1].answer == 42 and r[2] == mods .. "/rk_plain.lua")

-- a task: its import waits on the loop
local t = uv.spawn(function()
  local m, file = require "rk_task"
  return m.answer, file
end)
assert(not t:done(), "the task's import did not wait")
assert(uv.loopinfo().jobs == 1, "no import in flight")
uv.run()
assert(t:done(), "the task did not finish")
local ok, answer, file = t:result()
assert(ok, answer)
assert(answer == 7 and file == mods .. "/rk_task.lua")
local info = uv.loopinfo()
assert(info.kind == "own" and info.jobs == 0 and info.handles == 0,
       ("loop %s: %d jobs, %d handles"):format(info.kind, info.jobs,
                                               info.handles))
print(("installed copy: %s, %s"):format(lfile, cfile))
print(("plain require: 2 results; task: waited, then %d from %s")
      :format(answer, file))
EOF
cd "$run" || exit 1
out=$(timeout 30 "$LUA" -e 'require("uvrequire").install()' script.lua \
        "$tree" "$mods" 2>&1)
rc=$?
echo "$out"
[ "$rc" = 0 ] || fail "the script failed (exit $rc)"
echo "luarocks check: passed"
