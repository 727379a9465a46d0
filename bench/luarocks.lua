-- bench/luarocks.lua: the loop stall of a task's import of a ~2 MB
-- module from a rocks tree with luarocks.loader active, against the
-- same import without it, in the same run (issue: luarocks.loader must
-- not bring back the stall).  Offline: the tree is built with
-- `luarocks make`.
--
-- Run:   make bench        (after bench/run.lua)
--   or:  lua5.4 bench/luarocks.lua [--reps N] [--large-bytes N]
--
-- Each rep imports two fresh copies of the module in tasks, with a 1 ms
-- luv ticker measuring the longest gap between ticks: one through
-- luarocks.loader's searcher (the rock), one with that searcher taken
-- out of package.searchers (the same file found on package.path).
-- Prints medians and the ratio (target <= 1.3).

local ROOT = (arg and arg[0] or ""):match("^(.*/)bench/[^/]+$") or ""
package.path = ROOT .. "lua/?.lua;" .. package.path
package.cpath = ROOT .. "build/?.so;" .. package.cpath

local gen = dofile(ROOT .. "bench/gen.lua")

local opt = { reps = 7, large_bytes = 2e6 }
for i = 1, #arg, 2 do
  local k = arg[i]:match("^%-%-([%w-]+)$")
  k = k and k:gsub("-", "_")
  assert(k and opt[k] and tonumber(arg[i + 1]),
         "usage: lua5.4 bench/luarocks.lua [--reps N] [--large-bytes N]")
  opt[k] = tonumber(arg[i + 1])
end

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  assert(p:close(), cmd .. "\n" .. out)
end

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) // 2] or (s[n // 2] + s[n // 2 + 1]) / 2
end

local function main(dir)
  -- the rock: 2 * reps modules (fresh names, so no import is cached)
  local rocked, plain, modules = {}, {}, {}
  assert(os.execute("mkdir -p '" .. dir .. "/plain'"))
  for r = 1, opt.reps do
    local name, path = gen.large(dir, opt.large_bytes, "rock")
    rocked[r] = name
    modules[#modules + 1] = ("[%q] = %q"):format(name, path)
    plain[r] = gen.large(dir .. "/plain", opt.large_bytes, "plain")
  end
  local spec = dir .. "/lrbench-1.0-1.rockspec"
  local f = assert(io.open(spec, "w"))
  f:write(([[
package = "lrbench"
version = "1.0-1"
source = { url = "file:///dev/null" }
build = { type = "builtin", modules = { %s } }
]]):format(table.concat(modules, ", ")))
  f:close()
  sh(("cd '%s' && luarocks --lua-version=5.4 make --tree '%s/tree' '%s'")
     :format(dir, dir, spec))
  f = assert(io.open(dir .. "/config.lua", "w"))
  f:write(("rocks_trees = { %q }\n"):format(dir .. "/tree"))
  f:close()

  -- the measurement, in a child: luarocks.loader reads LUAROCKS_CONFIG
  local child = dir .. "/measure.lua"
  f = assert(io.open(child, "w"))
  f:write(([=[
package.path = %q .. "lua/?.lua;" .. %q .. "/plain/?.lua;" .. package.path
package.cpath = %q .. "build/?.so;" .. package.cpath
local uv = require "luv"
require "luarocks.loader"
local U = require("uvrequire").install()
local gen = dofile(%q .. "bench/gen.lua")
local lrsearcher = package.searchers[1]
local function stall(name)
  collectgarbage(); collectgarbage()
  local task
  local gap = gen.stallrun(uv, function(done)
    task = U.spawn(function() require(name); done() end)
  end)
  assert(task:result())
  return gap
end
for line in io.lines() do
  local kind, name = line:match("^(%%a+) (%%S+)$")
  if kind == "plain" then table.remove(package.searchers, 1) end
  io.write(kind, " ", stall(name), "\n"); io.flush()
  if kind == "plain" then table.insert(package.searchers, 1, lrsearcher) end
end
]=]):format(ROOT, dir, ROOT, ROOT))
  f:close()
  local input = {}
  for r = 1, opt.reps do  -- alternate which goes first
    local a, b = "rock " .. rocked[r], "plain " .. plain[r]
    if r % 2 == 0 then a, b = b, a end
    input[#input + 1] = a
    input[#input + 1] = b
  end
  f = assert(io.open(dir .. "/input", "w"))
  f:write(table.concat(input, "\n"), "\n")
  f:close()
  local p = assert(io.popen(("LUAROCKS_CONFIG='%s/config.lua' lua5.4 '%s' "
                             .. "< '%s/input'"):format(dir, child, dir)))
  local gaps = { rock = {}, plain = {} }
  for line in p:lines() do
    local kind, ns = line:match("^(%a+) (%d+)$")
    if kind then table.insert(gaps[kind], tonumber(ns)) end
  end
  assert(p:close(), "the measuring child failed")
  local r, s = median(gaps.rock) / 1e6, median(gaps.plain) / 1e6
  print("## d. luarocks.loader: longest loop stall of a task's import of a "
        .. ("%.2f MB module (%d runs each)"):format(opt.large_bytes / 1e6,
                                                  opt.reps))
  print("")
  print("| | longest gap between ticks (ms) |")
  print("|---|---:|")
  print(("| with luarocks.loader (from the rock) | %.2f |"):format(r))
  print(("| without it (same file on package.path) | %.2f |"):format(s))
  print("")
  print("| ratio | value | target | met |")
  print("|---|---:|---:|:---:|")
  print(("| with / without luarocks.loader | %.3f | <= 1.30 | %s |")
        :format(r / s, r / s <= 1.3 and "yes" or "**no**"))
end

gen.run("uvrlr", main)
