--- bench/graph.lua: startup of a 500-module dependency graph.
--
-- Run:   lua5.4 bench/graph.lua [--quick] [--reps N]
--        (from anywhere, after `make all`; `make bench` runs it)
--        lua5.4 bench/graph.lua --write DIR
--        only writes the graph and the child program into DIR, and
--        prints how to run the child (to profile a mode by hand)
--
-- Generates (deterministically: a fixed-seed generator, no math.random,
-- no time) a DAG of 500 Lua modules, about 19 MB of source: a root
-- requiring 40 modules, then layers of 60, 90, 120 and 189 (depth 6).
-- Each non-leaf module starts with 2-6 literal requires of modules in
-- deeper layers (as `require "m"`, `require('m')` and `require 'm'`,
-- which the prefetch scanner sees), then the body of a bench/gen.lua
-- module: functions, tables, classes.  Most modules have 5-40 KB of
-- source, 16 have 200-800 KB.  Every module is reachable from the root.
--
-- Each measurement is a fresh child process that loads luv (its
-- uv.hrtime() is the clock in every mode) and, in the uvrequire modes,
-- uvrequire (install()) before its clock starts, then imports the graph:
--   stock:    `require "g_root"` at top level, uvrequire not loaded
--   floor:    the same, uvrequire not loaded, with every module's
--             bytecode made (string.dump of loadfile) before the clock
--             starts and a searcher that loads it: what must still run
--             on the Lua thread (undump and bodies) when all else is
--             done ahead
--   top:      `require "g_root"` at top level, uvrequire installed
--   task1:    one task (uvrequire.spawn) requires the root; uvrequire.run()
--   tasks20:  20 tasks, task i requiring the root's direct dependencies
--             i, i + 20; uvrequire.run(); then `require "g_root"`
-- each uvrequire mode with the bytecode cache (UVREQUIRE_CACHE)
--   off:   UVREQUIRE_CACHE=off: every module compiled
--   cold:  a fresh empty cache directory per run (compiled and written)
--   warm:  a directory filled by one untimed `task1` run before the rounds
-- Before its clock starts, every child runs a full collection, so that
-- no garbage of its set-up is paid for in the timed part.
-- The child prints the import's time (first require to the end of the
-- last import), its peak RSS (VmHWM of /proc/self/status, at the end),
-- how many modules came from the cache (uvrequire.stats()) and how many
-- of the graph's modules are loaded (all 500, or the run fails).
--
-- Rounds (--reps, default 7; --quick: 3) run every combination once, in
-- a fixed order that rotates by one each round.  Prints a markdown table:
-- medians (min-max) of ms and peak RSS, the ratios of the medians to
-- stock's, the median of the per-round ratios (each run against the
-- same round's stock run), cache hits, and the goal.  Files are in the
-- page cache: this measures CPU cost, not disk latency (except for the
-- cold runs' file creations).  Everything generated lives in one
-- directory under /tmp, removed at the end, also on failure.

local ROOT = (arg and arg[0] or ""):match("^(.*/)bench/[^/]+$") or "./"
if ROOT:sub(1, 1) ~= "/" then  -- the child runs elsewhere (--write)
  ROOT = os.getenv("PWD") .. "/" .. ROOT
end
local gen = dofile(ROOT .. "bench/gen.lua")

local USAGE = "usage: lua5.4 bench/graph.lua [--quick] [--reps N]" ..
              " [--write DIR]"
local WRITE  -- --write: only write the graph and child into DIR
local reps = 7
do
  local i = 1
  while arg[i] do
    if arg[i] == "--quick" then
      reps, i = 3, i + 1
    elseif arg[i] == "--write" and arg[i + 1] then
      WRITE, i = arg[i + 1], i + 2
    elseif arg[i] == "--reps" and math.tointeger(tonumber(arg[i + 1])) then
      reps, i = math.tointeger(tonumber(arg[i + 1])), i + 2
    else
      error(USAGE, 0)
    end
  end
  assert(reps >= 1, USAGE)
end


--- The graph --------------------------------------------------------

local LAYERS = { 1, 40, 60, 90, 120, 189 }  -- 500 modules; [1] is the root
local NTASKS = 20
local LARGE_EVERY, LARGE_AT = 31, 7  -- module n is large if n % 31 == 7

-- a 32-bit LCG, as bench/gen.lua's: integer in [1, n]
local function rng(seed)
  local s = seed
  return function(n)
    s = (s * 1103515245 + 12345) & 0x7fffffff
    return (s >> 8) % n + 1
  end
end

local FORMS = { 'local d%d = require "%s"\n', "local d%d = require('%s')\n",
                "local d%d = require '%s'\n" }

-- The modules, root first: a list of { name, size, deps }; and the
-- root's direct dependencies.
local function graph()
  local r = rng(19)
  local mods, layers, n = {}, {}, 0
  for k, count in ipairs(LAYERS) do
    layers[k] = {}
    for j = 1, count do
      local m = { deps = {}, name = k == 1 and "g_root" or
                  ("g_%d_%03d"):format(k - 1, j) }
      if n % LARGE_EVERY == LARGE_AT then
        m.size = 200000 + r(600000)
      else
        m.size = 5000 + r(35000)
      end
      mods[#mods + 1], layers[k][j], n = m, m, n + 1
    end
  end
  local function add(m, dep)
    for _, d in ipairs(m.deps) do if d == dep then return end end
    m.deps[#m.deps + 1] = dep
  end
  -- reachability: module j of a layer is required by module j (mod the
  -- count) of the layer above; then 2-6 dependencies in all, mostly of
  -- the next layer, some deeper (the root: the whole next layer)
  for k = 2, #LAYERS do
    local above = layers[k - 1]
    for j, m in ipairs(layers[k]) do add(above[(j - 1) % #above + 1], m) end
  end
  for k = 2, #LAYERS - 1 do
    for _, m in ipairs(layers[k]) do
      local want = 1 + r(5)
      while #m.deps < want do
        local to = k + 1
        if r(3) == 1 then to = k + r(#LAYERS - k) end
        add(m, layers[to][r(#layers[to])])
      end
    end
  end
  return mods, layers[2]
end

local function writegraph(dir, mods)
  local bytes = 0
  for _, m in ipairs(mods) do
    local head = {}
    for i, d in ipairs(m.deps) do
      head[i] = FORMS[(i - 1) % #FORMS + 1]:format(i, d.name)
    end
    local src = table.concat(head) .. gen.large_source(m.name, m.size)
    local f = assert(io.open(dir .. "/" .. m.name .. ".lua", "wb"))
    assert(f:write(src))
    assert(f:close())
    bytes = bytes + #src
  end
  return bytes
end


--- The child --------------------------------------------------------

local CHILD = [[
local mode, deps, ntasks, nmods = arg[1], { %s }, %d, %d
package.path = %q
package.cpath = %q .. package.cpath
local luv = require "luv"
local ur
if mode == "floor" then  -- bytecode ready: only undump and bodies left
  local code = {}
  for name in io.popen("ls " .. package.path:match("^([^;]*)/")):lines() do
    name = name:match("^(g_.*)%%.lua$")
    if name then
      local path = package.searchpath(name, package.path)
      code[name] = { string.dump(assert(loadfile(path))), path }
    end
  end
  table.insert(package.searchers, 2, function(name)
    local c = code[name]
    if c then return assert(load(c[1], "=?", "b")), c[2] end
  end)
elseif mode ~= "stock" then
  ur = require "uvrequire"
  ur.install()
end
collectgarbage()  -- no debt of the set-up is paid in the timed part
local t0 = luv.hrtime()
if mode == "stock" or mode == "top" or mode == "floor" then
  require "g_root"
elseif mode == "task1" then
  ur.spawn(function() require "g_root" end)
  ur.run()
else
  for i = 1, ntasks do
    ur.spawn(function()
      for j = i, #deps, ntasks do require(deps[j]) end
    end)
  end
  ur.run()
  require "g_root"
end
local t1 = luv.hrtime()
local hits, loaded = 0, 0
for _, s in ipairs(ur and ur.stats() or {}) do
  if s.cached then hits = hits + 1 end
end
for name in pairs(package.loaded) do
  if name:match("^g_") then loaded = loaded + 1 end
end
assert(loaded == nmods, ("%%d of %%d modules loaded"):format(loaded, nmods))
local f = io.open("/proc/self/status")
local hwm = f:read("a"):match("VmHWM:%%s*(%%d+)")
f:close()
print(("%%.3f %%s %%d"):format((t1 - t0) / 1e6, hwm, hits))
]]

local function writechild(dir, mods, rootdeps)
  local names = {}
  for i, d in ipairs(rootdeps) do names[i] = ("%q"):format(d.name) end
  local prog = dir .. "/child.lua"
  local f = assert(io.open(prog, "w"))
  f:write(CHILD:format(table.concat(names, ", "), NTASKS, #mods,
                       dir .. "/?.lua;" .. ROOT .. "lua/?.lua",
                       ROOT .. "build/?.so;"))
  f:close()
  return prog
end

-- one run: ms, peak RSS (KB), cache hits
local function run(prog, mode, cache)
  local p = assert(io.popen(("UVREQUIRE_CACHE='%s' lua5.4 '%s' %s")
                            :format(cache, prog, mode)))
  local out = p:read("a")
  local ok = p:close()
  local ms, kb, hits = out:match("^([%d.]+) (%d+) (%d+)\n$")
  assert(ok and ms, ("%s, cache %s: %s"):format(mode, cache, out))
  return tonumber(ms), tonumber(kb), tonumber(hits)
end


--- Measuring and reporting -----------------------------------------

local COMBOS = { { "stock", "off" }, { "floor", "off" } }
for _, cache in ipairs({ "off", "warm", "cold" }) do
  for _, mode in ipairs({ "top", "task1", "tasks20" }) do
    COMBOS[#COMBOS + 1] = { mode, cache }
  end
end

local GOALS = {
  ["top off"] = "ms <= 0.6x", ["task1 off"] = "ms <= 0.6x",
  ["tasks20 off"] = "ms <= 0.6x; RSS <= 1.15x",
  ["top warm"] = "ms <= 0.3x", ["task1 warm"] = "ms <= 0.3x",
  ["tasks20 warm"] = "RSS <= 1.15x", ["tasks20 cold"] = "RSS <= 1.15x",
}

local function median(t)
  local s = table.move(t, 1, #t, 1, {})
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) // 2] or (s[n // 2] + s[n // 2 + 1]) / 2
end

local function range(t, fmt)
  local lo, hi = math.min(table.unpack(t)), math.max(table.unpack(t))
  if fmt:format(lo) == fmt:format(hi) then return fmt:format(lo) end
  return (fmt .. "-" .. fmt):format(lo, hi)
end

local function report(res, nmods)
  local stock = res[1]
  local sms, skb = median(stock.ms), median(stock.kb)
  print("| mode | cache | ms median (min-max) | x stock | x stock, " ..
        "per round | peak RSS MB (min-max) | x stock | cache hits | goal |")
  print("|---|---|---:|---:|---:|---:|---:|---:|---|")
  for i, c in ipairs(COMBOS) do
    local t = res[i]
    local rms = {}
    for k, v in ipairs(t.ms) do rms[k] = v / stock.ms[k] end
    local mb = {}
    for k, v in ipairs(t.kb) do mb[k] = v / 1024 end
    local hits = c[1] == "stock" and "" or
                 ("%s of %d"):format(range(t.hits, "%d"), nmods)
    print(("| %s | %s | %.0f (%s) | %.2f | %.2f | %.0f (%s) | %.2f | %s " ..
           "| %s |"):format(c[1], c[1] == "stock" and "" or c[2],
      median(t.ms), range(t.ms, "%.0f"), median(t.ms) / sms, median(rms),
      median(mb), range(mb, "%.0f"), median(t.kb) / skb, hits,
      GOALS[c[1] .. " " .. c[2]] or ""))
  end
end

local function main(dir)
  local mods, rootdeps = graph()
  local bytes = writegraph(dir, mods)
  local prog = writechild(dir, mods, rootdeps)
  print(("%d modules, %.1f MB of source, %d layers below the root " ..
         "(%d direct dependencies); %d rounds, ms and peak RSS medians:")
        :format(#mods, bytes / 1e6, #LAYERS - 1, #rootdeps, reps))
  local warm = dir .. "/cache_warm"
  run(prog, "task1", warm)
  local res = {}
  for i in ipairs(COMBOS) do res[i] = { ms = {}, kb = {}, hits = {} } end
  local ncold = 0
  for r = 1, reps do
    for k = 0, #COMBOS - 1 do
      local i = (r - 1 + k) % #COMBOS + 1
      local mode, cache = COMBOS[i][1], COMBOS[i][2]
      local cachedir = cache
      if cache == "warm" then
        cachedir = warm
      elseif cache == "cold" then
        ncold = ncold + 1
        cachedir = ("%s/cache_cold%d"):format(dir, ncold)
      end
      local t = res[i]
      t.ms[r], t.kb[r], t.hits[r] = run(prog, mode, cachedir)
      if cache == "cold" then os.execute("rm -rf '" .. cachedir .. "'") end
    end
  end
  report(res, #mods)
end

if WRITE then  -- for profiling a mode by hand
  local mods, rootdeps = graph()
  assert(os.execute("mkdir -p '" .. WRITE .. "'"))
  writegraph(WRITE, mods)
  print(("UVREQUIRE_CACHE=off lua5.4 %s stock|floor|top|task1|tasks20")
        :format(writechild(WRITE, mods, rootdeps)))
else
  gen.run("graph", main)
end
