-- Helpers shared by the bytecode cache's specs (cache_spec.lua,
-- topcache_spec.lua).
local H = require "helper"

local C = {}

--- The source of a module whose value() returns `value`.
function C.module(value)
  return ("local M = {}\nfunction M.value()\n  return %q\nend\nreturn M\n")
         :format(value)
end

--- A scratch directory holding modules m1 (value "one") and m2
-- ("two"); the cache directory its programs use (not made yet); and
-- the environment that names it ("UVREQUIRE_CACHE='...'").
function C.scratch()
  local dir = H.tmpdir()
  local cache = dir .. "/cache/a/b"
  H.write(dir .. "/m1.lua", C.module("one"))
  H.write(dir .. "/m2.lua", C.module("two"))
  return dir, cache, "UVREQUIRE_CACHE='" .. cache .. "'"
end

--- Remove the scratch directory `dir`, whatever modes a case left.
function C.remove(dir)
  H.sh("chmod -R u+rwX '" .. dir .. "'")
  H.rmtree(dir)
end

--- The file names in directory `cache`, sorted ({} if none).
function C.entries(cache)
  local t = {}
  local p = assert(io.popen("ls -A '" .. cache .. "' 2>/dev/null"))
  for f in p:read("a"):gmatch("[^\n]+") do
    t[#t + 1] = f
  end
  p:close()
  table.sort(t)
  return t
end

--- stat(1) of `path` in format `fmt`, without spaces.
function C.stat(fmt, path)
  return (H.sh("stat -c " .. fmt .. " '" .. path .. "'"):gsub("%s", ""))
end

--- The octal mode of `path`, and its owner's name.
function C.mode(path) return C.stat("%a", path) end
function C.owner(path) return C.stat("%U", path) end

-- The tail of every program: the loop is run dry and clean (no import
-- in flight, no handle); then, unless told not to, the cache counters.
C.CLEAN = [[
require("uvrequire").run()
local info = require("uvrequire").loopinfo()
assert(info.jobs == 0 and info.handles == 0,
       ("loop not clean: %d jobs, %d handles"):format(info.jobs,
                                                      info.handles))
]]
C.STATS = [[
local s = require("uvrequire.core").cachestats()
print(("STATS %d %d %d"):format(s.hits, s.misses, s.writes))
]]

--- The command that runs prog.lua in `dir`, with "./?.lua" first on
-- the path (chunk names "./m1.lua") and `env` (a string of VAR=value
-- words, or env(1) options) set.
function C.command(dir, env)
  return ("cd '%s' && env %s LUA_PATH='./?.lua;%s/lua/?.lua;;' " ..
          "LUA_CPATH='%s/build/?.so;;' timeout 60 lua5.4 prog.lua 2>&1")
         :format(dir, env or "", H.ROOT, H.ROOT)
end

--- Run `src` as `dir`/prog.lua, ending with the loop clean and the
-- counters "STATS <hits> <misses> <writes>".  Returns its output
-- (without that line) and the counters {hits, misses, writes} (nil with
-- opts.nostats).  The child must exit 0.
function C.run(dir, env, src, opts)
  opts = opts or {}
  H.write(dir .. "/prog.lua", src .. "\n" .. C.CLEAN ..
                              (opts.nostats and "" or C.STATS))
  local p = assert(io.popen(C.command(dir, env)))
  local out = p:read("a")
  local ok = p:close()
  assert(ok, "child failed:\n" .. out)
  if opts.nostats then return out end
  local h, m, w = out:match("STATS (%d+) (%d+) (%d+)\n$")
  assert(h, "no stats in:\n" .. out)
  return out:gsub("STATS [^\n]*\n$", ""),
         { tonumber(h), tonumber(m), tonumber(w) }
end

--- The cases both cache specs run, whoever imports (a task, the top
-- level): a changed source is compiled again; an entry or a directory
-- writable by others, owned by another user, or a symlink is left
-- alone.  A list of { description, function } for `it`.  `state()`
-- gives the case's scratch dir, cache and env (C.scratch's);
-- `prog(names)` is the program importing `names`; `want(names, values,
-- cached)` what it prints, the modules all from the cache or none;
-- `pending` the spec's own (busted's functions are the spec file's).
function C.cases(state, prog, want, pending)
  local run, entries, sh = C.run, C.entries, H.sh
  local assert = require "luassert"  -- (a module's 'assert' is Lua's)
  return {
    { "recompiles a source whose content, size or mtime changed",
      function()
      local dir, _, env = state()
      run(dir, env, prog({ "m1" }))
      -- same size, same mtime (to the ns), other content
      sh(("cp -p '%s/m1.lua' '%s/ref'"):format(dir, dir))
      H.write(dir .. "/m1.lua", C.module("ONE"))
      sh(("touch -r '%s/ref' '%s/m1.lua'"):format(dir, dir))
      assert.equals(sh("stat -c '%s %y' " .. dir .. "/ref"),
                    sh("stat -c '%s %y' " .. dir .. "/m1.lua"))
      local out, s = run(dir, env, prog({ "m1" }))
      assert.equals(want({ "m1" }, { "ONE" }, false), out)
      assert.same({ 0, 1, 1 }, s)
      out, s = run(dir, env, prog({ "m1" }))  -- the rewritten entry
      assert.equals(want({ "m1" }, { "ONE" }, true), out)
      assert.same({ 1, 0, 0 }, s)
      -- other size
      H.write(dir .. "/m1.lua", C.module("uno!"))
      out, s = run(dir, env, prog({ "m1" }))
      assert.equals(want({ "m1" }, { "uno!" }, false), out)
      assert.same({ 0, 1, 1 }, s)
      -- only the mtime
      sh(("touch -d '2001-02-03 04:05:06.789' '%s/m1.lua'"):format(dir))
      out, s = run(dir, env, prog({ "m1" }))
      assert.equals(want({ "m1" }, { "uno!" }, false), out)
      assert.same({ 0, 1, 1 }, s)
      out, s = run(dir, env, prog({ "m1" }))
      assert.equals(want({ "m1" }, { "uno!" }, true), out)
      assert.same({ 1, 0, 0 }, s)
    end },
    { "leaves alone entries that are writable by others", function()
      local dir, cache, env = state()
      run(dir, env, prog({ "m1" }))
      local entry = cache .. "/" .. entries(cache)[1]
      local good = H.readfile(entry)
      sh("chmod 666 '" .. entry .. "'")
      local out, s = run(dir, env, prog({ "m1" }))
      assert.equals(want({ "m1" }, { "one" }, false), out)
      assert.same({ 0, 1, 0 }, s)  -- neither read nor written
      assert.equals("666", C.mode(entry))
      assert.equals(good, H.readfile(entry))
    end },
    { "leaves alone a directory writable by others", function()
      local dir, cache, env = state()
      run(dir, env, prog({ "m1" }))
      sh("chmod 777 '" .. cache .. "'")
      local out, s = run(dir, env, prog({ "m1", "m2" }))
      assert.equals(want({ "m1", "m2" }, { "one", "two" }, false), out)
      assert.same({ 0, 2, 0 }, s)
      assert.equals(1, #entries(cache))
    end },
    { "leaves alone entries and directories another user owns", function()
      local dir, cache, env = state()
      if not H.isroot() then
        pending("needs root to chown")
        return
      end
      run(dir, env, prog({ "m1" }))
      local entry = cache .. "/" .. entries(cache)[1]
      sh("chown nobody '" .. entry .. "'")
      local out, s = run(dir, env, prog({ "m1" }))
      assert.equals(want({ "m1" }, { "one" }, false), out)
      assert.same({ 0, 1, 0 }, s)
      assert.equals("nobody", C.owner(entry))
      sh("chown nobody '" .. cache .. "'")
      out, s = run(dir, env, prog({ "m1", "m2" }))
      assert.equals(want({ "m1", "m2" }, { "one", "two" }, false), out)
      assert.same({ 0, 2, 0 }, s)
      assert.equals(1, #entries(cache))
    end },
    { "never follows a symlink for an entry", function()
      local dir, cache, env = state()
      run(dir, env, prog({ "m1" }))
      local entry = cache .. "/" .. entries(cache)[1]
      sh(("mv '%s' '%s/real' && ln -s '%s/real' '%s'")
         :format(entry, dir, dir, entry))
      local out, s = run(dir, env, prog({ "m1" }))
      assert.equals(want({ "m1" }, { "one" }, false), out)
      assert.same({ 0, 1, 0 }, s)
      assert.equals("link", sh("test -L '" .. entry .. "' && echo link")
                              :match("%a+"))
    end },
  }
end

return C
