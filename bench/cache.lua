--- bench/cache.lua: the bytecode cache, cold versus warm.
--
-- Run:   lua5.4 bench/cache.lua [--reps N] [--small N] [--tasks N]
--                              [--large BYTES]
--        (from the repo root, after `make all`)
--
-- Writes --small (default 200) generated small modules once, then times
-- fresh child processes, each importing all of them from --tasks
-- (default 20) uvrequire tasks (uvrequire.spawn, then uvrequire.run),
-- timed inside the child from before the first spawn to the end of
-- run().  Modes, interleaved for --reps (default 7) rounds:
--   off:   UVREQUIRE_CACHE=off (every module compiled on an executor
--          thread; the cache does nothing)
--   cold:  an empty cache directory (every module compiled, and its
--          entry written)
--   warm:  the cache written by earlier runs (every module a hit)
--   stock: stock `require`, sequentially, in the same kind of child
-- Then the same for one generated large module (--large, default 2e6
-- bytes of source), imported from one task.
-- Prints medians (ms) and warm/cold, warm/off ratios.  Files are in the
-- page cache: this measures CPU cost, not disk latency, except for the
-- cold runs' file creations.  The cache directory goes under /tmp, or
-- under $CACHE_PARENT (say /dev/shm, to see the cost of creating files
-- on a disk file system apart).

local ROOT = (arg and arg[0] or ""):match("^(.*/)bench/[^/]+$") or "./"
local gen = dofile(ROOT .. "bench/gen.lua")

local opt = { reps = 7, small = 200, tasks = 20, large = 2e6 }
do
  local i = 1
  while arg[i] do
    local k = arg[i]:match("^%-%-(%w+)$")
    assert(k and opt[k] and tonumber(arg[i + 1]),
           "usage: lua5.4 bench/cache.lua [--reps N] [--small N] " ..
           "[--tasks N] [--large BYTES]")
    opt[k] = math.tointeger(tonumber(arg[i + 1]))
    i = i + 2
  end
end

local CHILD = [[
local names, ntasks, stock = {}, %d, %s
for n in io.lines(%q) do names[#names + 1] = n end
local uv = require "uvrequire"
local luv = require "luv"
local t0 = luv.hrtime()
if stock then
  for _, n in ipairs(names) do require(n) end
else
  for k = 1, ntasks do
    uv.spawn(function()
      for i = k, #names, ntasks do uv.require(names[i]) end
    end)
  end
  uv.run()
end
local t1 = luv.hrtime()
local s = require("uvrequire.core").cachestats()
print(("%%d %%d %%d %%d"):format(t1 - t0, s.hits, s.misses, s.writes))
]]

local function median(t)
  table.sort(t)
  local n = #t
  return n % 2 == 1 and t[(n + 1) // 2] or (t[n // 2] + t[n // 2 + 1]) / 2
end

-- Time the import of the modules `names` (written in `dir`) in every
-- mode; print a table row of medians.
local function measure(dir, label, names)
  local list = dir .. "/names.txt"
  local f = assert(io.open(list, "w"))
  f:write(table.concat(names, "\n"), "\n")
  f:close()
  local function child(env, stock)
    local script = dir .. "/child.lua"
    f = assert(io.open(script, "w"))
    f:write(CHILD:format(opt.tasks, tostring(stock), list))
    f:close()
    local cmd = ("env %s LUA_PATH='%s/?.lua;%slua/?.lua;;' " ..
                 "LUA_CPATH='%sbuild/?.so;;' lua5.4 '%s'")
                :format(env, dir, ROOT, ROOT, script)
    local p = assert(io.popen(cmd))
    local out = p:read("a")
    assert(p:close(), out)
    local ns, h, m, w = out:match("^(%d+) (%d+) (%d+) (%d+)")
    assert(ns, out)
    return tonumber(ns) / 1e6, tonumber(h), tonumber(m), tonumber(w)
  end
  local parent = os.getenv("CACHE_PARENT")
  local cache = parent and (parent .. "/uvrcache_bench") or (dir .. "/cache")
  local res = { off = {}, cold = {}, warm = {}, stock = {} }
  for r = 1, opt.reps do
    local t, h, m, w
    t = child("UVREQUIRE_CACHE=off")
    res.off[r] = t
    os.execute("rm -rf '" .. cache .. "'")
    t, h, m, w = child("UVREQUIRE_CACHE='" .. cache .. "'")
    assert(h == 0 and m == #names and w == #names, "cold run hit")
    res.cold[r] = t
    t, h, m, w = child("UVREQUIRE_CACHE='" .. cache .. "'")
    assert(h == #names and m == 0 and w == 0, "warm run missed")
    res.warm[r] = t
    res.stock[r] = child("UVREQUIRE_CACHE=off", true)
  end
  os.execute("rm -rf '" .. cache .. "'")
  local md = {}
  for k, v in pairs(res) do md[k] = median(v) end
  print(("| %s | %.1f | %.1f | %.1f | %.1f | %.2f | %.2f |"):format(label,
    md.stock, md.off, md.cold, md.warm, md.warm / md.cold, md.warm / md.off))
end

local function main(dir)
  print(("%d tasks, %d rounds, medians (ms); cache under %s:")
        :format(opt.tasks, opt.reps, os.getenv("CACHE_PARENT") or "/tmp"))
  print("| import | stock (sequential) | off | cold | warm | warm/cold " ..
        "| warm/off |")
  print("|---|---|---|---|---|---|---|")
  measure(dir, ("%d small modules"):format(opt.small),
          gen.small(dir, opt.small, "cache"))
  local name, _, size = gen.large(dir, opt.large, "cache")
  measure(dir, ("one module of %.1f MB"):format(size / 1e6), { name })
end

local dir = gen.tmpdir("uvrcache")
local ok, err = pcall(main, dir)
gen.rmtree(dir)
if os.getenv("CACHE_PARENT") then
  os.execute("rm -rf '" .. os.getenv("CACHE_PARENT") .. "/uvrcache_bench'")
end
if not ok then
  io.stderr:write("bench/cache.lua: ", tostring(err), "\n")
  os.exit(1)
end
