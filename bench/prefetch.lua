--- bench/prefetch.lua: prefetch on vs off, cold (UVREQUIRE_CACHE=off).
--
-- A generated tree: a root requiring 50 modules, each requiring 3
-- more (small modules of bench/gen.lua, ~2 KB each: 201 in all).  Each
-- run is a fresh child process importing the root once, at top level
-- or in one task; the time of that import is printed.  Usage, from the
-- repo root after `make all`:
--
--   lua5.4 bench/prefetch.lua [runs]
--
-- Prints the median (and min, max) ms of each of the four cases.

local gen = dofile("bench/gen.lua")
local runs = tonumber(arg[1]) or 7

local dir = gen.tmpdir("pf")
local function write(name, src)
  local f = assert(io.open(dir .. "/" .. name .. ".lua", "w"))
  f:write(src)
  f:close()
end
local root = {}
for i = 1, 50 do
  local mid = ("pfb_m%d"):format(i)
  local lines = {}
  for j = 1, 3 do
    local leaf = ("pfb_l%d_%d"):format(i, j)
    write(leaf, gen.small_source(leaf, i * 3 + j))
    lines[#lines + 1] = ("require %q"):format(leaf)
  end
  lines[#lines + 1] = gen.small_source(mid, i)
  write(mid, table.concat(lines, "\n"))
  root[#root + 1] = ("require %q"):format(mid)
end
root[#root + 1] = "return true"
write("pfb_root", table.concat(root, "\n"))

local prog = dir .. "/prog.lua"
local f = assert(io.open(prog, "w"))
f:write(([[
package.path = "lua/?.lua;" .. %q .. "/?.lua"
package.cpath = "build/?.so;" .. package.cpath
local luv = require "luv"
local uv = require "uvrequire"
uv.install()
local function hr() return luv.hrtime() / 1e6 end
local start = hr()
if arg[1] == "task" then
  uv.spawn(function() require "pfb_root" end)
  uv.run()
else
  require "pfb_root"
end
io.write(("%%.3f\n"):format(hr() - start))
]]):format(dir))
f:close()

local function median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end

-- the four cases interleaved, round by round (the machine's load drifts)
local cases, times = {}, {}
for _, where in ipairs({ "top", "task" }) do
  for _, pf in ipairs({ "off", "on" }) do
    cases[#cases + 1] = { where = where, pf = pf }
    times[#cases] = {}
  end
end
for _ = 1, runs do
  for i, c in ipairs(cases) do
    local p = assert(io.popen(("UVREQUIRE_CACHE=off UVREQUIRE_DETECT=off " ..
      "UVREQUIRE_PREFETCH=%s lua5.4 %s %s"):format(c.pf, prog, c.where)))
    local t = times[i]
    t[#t + 1] = assert(tonumber(p:read("l")))
    p:close()
  end
end
for i, c in ipairs(cases) do
  local t = times[i]
  local lo, hi = math.min(table.unpack(t)), math.max(table.unpack(t))
  print(("%-4s prefetch %-3s  median %8.2f ms  (min %.2f, max %.2f, %d runs)")
        :format(c.where, c.pf, median(t), lo, hi, runs))
end
gen.rmtree(dir)
