#!/usr/bin/env bash
# The rocks, from a copy of the checkout as it is on disk (uncommitted
# work included): both rockspecs pass `luarocks lint` and test with a
# command; `luarocks make` of rockspec/uvrequire-scm-1.rockspec into a
# scratch tree; `luarocks make` of rockspec/uvrequire-0.1.0-1.rockspec
# into another, `luarocks pack` of it (a binary rock) and `luarocks
# install` of that rock into a fresh tree.  Each installed copy holds
# include/uvrequire.h in its rock directory and is used from another
# directory: install() and a plain require, then a task whose import
# waits on the loop.  Never touches the network (no dependency to fetch;
# the only server allowed is an empty local directory).  Exit 0: pass.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
LUA=${LUA:-lua5.4}
work=$(mktemp -d /tmp/uvr_rock.XXXXXX) || exit 1
trap 'rm -rf "$work"' EXIT
src=$work/src run=$work/run mods=$work/mods
mkdir -p "$src" "$run" "$mods" "$work/noserver" "$work/pack" || exit 1
lr=(luarocks --lua-version=5.4 --only-server="$work/noserver")
release=rockspec/uvrequire-0.1.0-1.rockspec
scm=rockspec/uvrequire-scm-1.rockspec

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
for r in "$scm" "$release"; do
  [ -f "$src/$r" ] || fail "$r is missing"
done

# 2. Lint; the test suite is `make <target>`, offline (a command, no
# test dependency to fetch), and the Makefile has that target.
for r in "$scm" "$release"; do
  if ! out=$(cd "$src" && "${lr[@]}" lint "$r" 2>&1); then
    echo "$out"
    fail "luarocks lint $r failed"
  fi
  target=$("$LUA" - "$src/$r" <<'LUA'
local env = {}
assert(loadfile(arg[1], "t", env))()
local t = env.test
assert(type(t) == "table" and t.type == "command", "test is not a command")
assert(env.test_dependencies == nil or next(env.test_dependencies) == nil,
       "test_dependencies")
print((assert(t.command:match("^make (%S+)$"), "not make <target>")))
LUA
  ) || fail "$r: its test field is not an offline 'make <target>'"
  make -n -C "$src" "$target" >/dev/null 2>&1 ||
    fail "$r: its test runs 'make $target', which the Makefile lacks"
  echo "luarocks lint $r: ok; luarocks test runs 'make $target'"
done

# 3. Build and install: the scm rockspec into a tree; the release into
# another, packed into a binary rock, installed into a fresh tree.
if ! out=$(cd "$src" && "${lr[@]}" make --tree "$work/scm" "$scm" 2>&1)
then
  echo "$out"
  fail "luarocks make $scm failed"
fi
echo "$out" | grep -E 'is now installed'
if ! out=$(cd "$src" && "${lr[@]}" make --tree "$work/made" "$release" 2>&1)
then
  echo "$out"
  fail "luarocks make $release failed"
fi
echo "$out" | grep -E 'is now installed'
if ! out=$(cd "$work/pack" &&
           "${lr[@]}" --tree "$work/made" pack uvrequire 0.1.0-1 2>&1); then
  echo "$out"
  fail "luarocks pack failed"
fi
rock=$(cd "$work/pack" && ls -- *.rock 2>/dev/null)
[ "$rock" = uvrequire-0.1.0-1.linux-x86_64.rock ] ||
  fail "luarocks pack made '$rock', not a linux-x86_64 binary rock"
echo "luarocks pack: $rock"
if ! out=$("${lr[@]}" install --tree "$work/bin" "$work/pack/$rock" 2>&1)
then
  echo "$out"
  fail "luarocks install $rock failed"
fi
echo "$out" | grep -E 'depends on|is now installed'

# 4. Use each installed copy from another directory, with the tree's
# paths only added (and no variable that lua5.4 would read before them).
unset LUA_PATH_5_4 LUA_CPATH_5_4 LUA_INIT LUA_INIT_5_4
base_path=${LUA_PATH-} base_cpath=${LUA_CPATH-}

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
for t in scm:scm-1 bin:0.1.0-1; do
  tree=$work/${t%%:*} version=${t#*:}
  header=$tree/lib/luarocks/rocks-5.4/uvrequire/$version/include/uvrequire.h
  cmp -s "$header" "$src/csrc/uvrequire.h" ||
    fail "$tree: no copy of csrc/uvrequire.h at $header"
  LUA_PATH=$base_path LUA_CPATH=$base_cpath
  [ -n "$base_path" ] || unset LUA_PATH
  [ -n "$base_cpath" ] || unset LUA_CPATH
  paths=$("${lr[@]}" --tree "$tree" path) || fail "luarocks path failed"
  eval "$paths"
  out=$(timeout 30 "$LUA" -e 'require("uvrequire").install()' script.lua \
          "$tree" "$mods" 2>&1)
  rc=$?
  echo "$out"
  [ "$rc" = 0 ] || fail "the script failed (exit $rc) with $tree"
  echo "header: $header"
done
echo "luarocks check: passed"
