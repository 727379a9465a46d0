--- bench/run.lua: uvrequire versus stock `require`, in the same run.
--
-- Run:   make bench                (from the repo root; builds first)
--   or:  lua5.4 bench/run.lua [--quick] [--reps N] [--calls N]
--                             [--small N] [--tasks N] [--large-bytes N]
-- (UVREQUIRE_THREADS=N sets the executor's thread count, as always.)
--
-- Prints markdown tables of medians and ratios (uvrequire / stock):
--
--  a. Fast path: `require "string"` when it is already loaded; --calls
--     calls (default 5e6), 7 rounds, stock and uvrequire interleaved;
--     median time per call, their ratio, and the median of the rounds'
--     own ratios (each pair back to back).  Target: ratio <= 1.10.
--
--  b. Loop stall: a 1 ms luv repeating timer records the longest gap
--     between its ticks while one coroutine imports a generated ~2 MB
--     module: with stock `require` (called in a coroutine started from
--     the loop), and with uvrequire (in uvrequire.spawn, on the same luv
--     loop, driven by uv.run()).  The "floor" is the part uvrequire must
--     still do on the Lua thread: load the module's precompiled bytecode
--     (string.dump of the loadfile'd chunk, then load(bytes, name, "b"))
--     and run its body.  It is reported timed directly (the target's
--     reference) and also run from the ticker and measured as a stall,
--     exactly as the imports are.  (uvrequire's stall also holds the time
--     from the last tick to the import's completion: up to one period.)
--     An "idle" row shows the timer's own jitter.  Each
--     measurement is repeated --reps times (default 7) with fresh module
--     names; medians are reported.  Targets: uv/stock <= 0.25 and
--     uv/floor <= 1.3.
--
--  c. Cold import of --small (default 200) small modules (--reps runs):
--     at top level, synchronously, stock versus uvrequire.require; and the
--     same number imported concurrently by --tasks (default 20) tasks
--     (uvrequire.spawn, then uvrequire.run) versus stock sequential.
--     Fresh modules per measurement; files are in the page cache (they
--     were just written), so this measures CPU cost, not disk latency.
--
-- Generated files live in an os.tmpname-based directory under /tmp and
-- are removed at the end (also when a measurement fails).

-- Paths relative to the repo root, wherever we are started from.
local ROOT = (arg and arg[0] or ""):match("^(.*/)bench/[^/]+$") or ""
package.path = ROOT .. "lua/?.lua;" .. package.path
package.cpath = ROOT .. "build/?.so;" .. package.cpath

local stock_require = require
local uv = require "luv"                -- luv first: uvrequire uses its loop
local uvrequire = require "uvrequire"
local gen = dofile(ROOT .. "bench/gen.lua")

local hrtime = uv.hrtime
local uv_require = uvrequire.require
assert(stock_require ~= uv_require)


--- Options ------------------------------------------------------------

local opt = { reps = 7, calls = 5e6, rounds = 7, small = 200, tasks = 20,
              large_bytes = 2e6 }
do
  local i = 1
  while arg and arg[i] do
    local a = arg[i]
    if a == "--quick" then
      opt.reps, opt.calls, opt.rounds = 3, 1e6, 3
    else
      local key = a:match("^%-%-([%w-]+)$")
      local k = key and key:gsub("-", "_")
      if not k or opt[k] == nil or not tonumber(arg[i + 1]) then
        io.stderr:write("usage: lua5.4 bench/run.lua [--quick] [--reps N]"
          .. " [--calls N] [--small N] [--tasks N] [--large-bytes N]\n")
        os.exit(2)
      end
      opt[k] = math.tointeger(tonumber(arg[i + 1])) or tonumber(arg[i + 1])
      i = i + 1
    end
    i = i + 1
  end
  opt.calls = math.floor(opt.calls)
end


--- Helpers ------------------------------------------------------------

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  if n % 2 == 1 then return s[(n + 1) // 2] end
  return (s[n // 2] + s[n // 2 + 1]) / 2
end

local function ms(ns) return ns / 1e6 end

local function fmt(x, digits)
  return ("%." .. (digits or 2) .. "f"):format(x)
end

local function verdict(value, limit)
  return value <= limit and "yes" or "**no**"
end

local function forget(names)
  for _, n in ipairs(names) do package.loaded[n] = nil end
end

local function fullgc()
  collectgarbage()
  collectgarbage()
end

local function commandline()
  local lo = 0
  while arg[lo - 1] do lo = lo - 1 end
  local t = {}
  for i = lo, #arg do t[#t + 1] = arg[i] end
  return table.concat(t, " ")
end

local function progress(...)
  io.stderr:write(...)
  io.stderr:flush()
end


--- a. Fast path ----------------------------------------------------------

local function fastpath()
  local n = opt.calls
  local function percall(req)
    local name = "string"
    local t0 = hrtime()
    for _ = 1, n do req(name) end
    return (hrtime() - t0) / n
  end
  assert(uv_require("string") == string)
  percall(stock_require); percall(uv_require)  -- warm up
  local s, u, ratio = {}, {}, {}
  for r = 1, opt.rounds do
    if r % 2 == 1 then
      s[r] = percall(stock_require); u[r] = percall(uv_require)
    else
      u[r] = percall(uv_require); s[r] = percall(stock_require)
    end
    ratio[r] = u[r] / s[r]
    progress(".")
  end
  return median(s), median(u), median(ratio)
end


--- b. Loop stall -----------------------------------------------------------

-- the 1 ms ticker that measures stalls (bench/gen.lua)
local function stallrun(start)
  fullgc()
  return gen.stallrun(uv, start)
end

local function stall_idle()
  return stallrun(function(done)
    local t = uv.new_timer()
    t:start(50, 0, function() t:close(); done() end)
  end)
end

local function stall_stock(name)
  local err
  local r = table.pack(stallrun(function(done)
    local co = coroutine.create(function()
      stock_require(name)
      done()
    end)
    local ok, e = coroutine.resume(co)
    if not ok then err = e end
  end))
  assert(not err, err)
  assert(type(package.loaded[name]) == "table")
  return table.unpack(r, 1, r.n)
end

local function stall_uv(name)
  local task
  local r = table.pack(stallrun(function(done)
    task = uvrequire.spawn(function()
      uv_require(name)
      done()
    end)
  end))
  assert(task:done(), "task not done")
  assert(task:result())
  assert(type(package.loaded[name]) == "table")
  return table.unpack(r, 1, r.n)
end

--- The Lua-thread part: undump precompiled bytecode and run the body.
-- Returns the time taken (ns), timed directly around load + body.
local function floor_time(name, path)
  local bytes = string.dump(assert(loadfile(path)))  -- with debug info
  fullgc()
  local t0 = hrtime()
  local f = assert(load(bytes, "@" .. path, "b"))
  local m = f(name, path)
  local t = hrtime() - t0
  assert(type(m) == "table")
  return t
end

--- The same work run from the ticker, as the stock import is: returns the
-- longest gap between ticks (ns), measured exactly as for the imports.
local function floor_stall(name, path)
  local bytes = string.dump(assert(loadfile(path)))
  local err
  local gap = stallrun(function(done)
    local co = coroutine.create(function()
      local m = assert(load(bytes, "@" .. path, "b"))(name, path)
      assert(type(m) == "table")
      done()
    end)
    local ok, e = coroutine.resume(co)
    if not ok then err = e end
  end)
  assert(not err, err)
  return gap
end

local function loopstall(dir)
  local res = { idle = {}, stock = {}, uv = {}, floor = {}, floorstall = {},
                stock_t = {}, uv_t = {}, stock_n = {}, uv_n = {} }
  for r = 1, opt.reps do
    local ns, ps, bytes = gen.large(dir, opt.large_bytes, "stock")
    local nu, pu = gen.large(dir, opt.large_bytes, "uv")
    res.bytes = bytes
    local function do_stock()
      res.stock[r], res.stock_t[r], res.stock_n[r] = stall_stock(ns)
      forget({ ns })
    end
    local function do_uv()
      res.uv[r], res.uv_t[r], res.uv_n[r] = stall_uv(nu)
      forget({ nu })
    end
    res.idle[r] = stall_idle()
    if r % 2 == 1 then do_stock(); do_uv() else do_uv(); do_stock() end
    res.floor[r] = floor_time(nu, pu)
    res.floorstall[r] = floor_stall(nu, pu)
    os.remove(ps); os.remove(pu)
    progress(".")
  end
  return res
end


--- c. Cold imports of small modules ----------------------------------------

local function cold(dir)
  local res = { stock = {}, uvsync = {}, uvtasks = {} }
  local n, ntasks = opt.small, opt.tasks
  for r = 1, opt.reps do
    local a = gen.small(dir, n, "stock")
    local b = gen.small(dir, n, "uvsync")
    local c = gen.small(dir, n, "uvtask")
    fullgc()

    local function run_stock()
      local t0 = hrtime()
      for i = 1, n do stock_require(a[i]) end
      res.stock[r] = hrtime() - t0
    end

    local function run_uvsync()
      local t0 = hrtime()
      for i = 1, n do uv_require(b[i]) end
      res.uvsync[r] = hrtime() - t0
    end

    local function run_uvtasks()
      local tasks = {}
      local t0 = hrtime()
      for k = 1, ntasks do
        tasks[k] = uvrequire.spawn(function()
          for i = k, n, ntasks do uv_require(c[i]) end
        end)
      end
      uvrequire.run()
      res.uvtasks[r] = hrtime() - t0
      for _, t in ipairs(tasks) do
        assert(t:done(), "task not done")
        assert(t:result())
      end
    end

    if r % 2 == 1 then run_stock(); run_uvsync(); run_uvtasks()
    else run_uvtasks(); run_uvsync(); run_stock() end
    for _, set in ipairs({ a, b, c }) do
      for i = 1, n do
        assert(type(package.loaded[set[i]]) == "table", set[i])
      end
      forget(set)
    end
    progress(".")
  end
  return res
end


--- Main -------------------------------------------------------------------

local function main(dir)
  gen.addpath(dir)
  local info = uvrequire.loopinfo()
  local out = {}
  local function say(...) out[#out + 1] = table.concat({ ... }) end

  progress("fast path ")
  local fs, fu, fr = fastpath()
  progress(" loop stall ")
  local st = loopstall(dir)
  progress(" cold imports ")
  local co = cold(dir)
  progress(" done\n")
  info = uvrequire.loopinfo()

  say("# uvrequire benchmark")
  say("")
  say("- command: `", commandline(), "` (cwd: ",
      os.getenv("PWD") or "?", ")")
  say("- ", _VERSION, ", luv ", uv.version_string(), ", loop in use: ",
      tostring(info.kind), ", executor threads: ", tostring(info.threads),
      " (UVREQUIRE_THREADS=", os.getenv("UVREQUIRE_THREADS") or "unset",
      "), CPUs: ", tostring(#uv.cpu_info()))
  say("- medians; ratios are uvrequire / stock unless said otherwise")
  say("")

  say("## a. Fast path: `require \"string\"`, already loaded (",
      ("%g"):format(opt.calls), " calls x ", opt.rounds, " rounds)")
  say("")
  say("| | stock require | uvrequire.require | ratio uv/stock | per round | target | met |")
  say("|---|---:|---:|---:|---:|---:|:---:|")
  say("| ns per call | ", fmt(fs), " | ", fmt(fu), " | ", fmt(fu / fs, 3),
      " | ", fmt(fr, 3), " | <= 1.10 | ", verdict(fu / fs, 1.10), " |")
  say("")
  say("(per round: the median of each round's uvrequire / stock, the two")
  say("measured back to back; the ratio before it is of the medians)")
  say("")

  local idle, s, u, f = median(st.idle), median(st.stock), median(st.uv),
                        median(st.floor)
  local fst = median(st.floorstall)
  say("## b. Loop stall: 1 ms luv timer while importing one ",
      fmt(st.bytes / 1e6), " MB module (", opt.reps, " runs each)")
  say("")
  say("| | longest gap between ticks (ms) | import time (ms) | ticks during import |")
  say("|---|---:|---:|---:|")
  say("| idle ticker, no import (timer jitter) | ", fmt(ms(idle)),
      " | - | - |")
  say("| stock require, in a coroutine on the loop | ", fmt(ms(s)), " | ",
      fmt(ms(median(st.stock_t))), " | ", fmt(median(st.stock_n), 0), " |")
  say("| uvrequire, in uvrequire.spawn | ", fmt(ms(u)), " | ",
      fmt(ms(median(st.uv_t))), " | ", fmt(median(st.uv_n), 0), " |")
  say("| floor: load(bytecode, \"b\") + run body, timed directly | ",
      fmt(ms(f)), " | - | - |")
  say("| floor, same work run from the ticker (measured as a stall) | ",
      fmt(ms(fst)), " | - | - |")
  say("")
  say("| ratio | value | target | met |")
  say("|---|---:|---:|:---:|")
  say("| uvrequire stall / stock stall | ", fmt(u / s, 3), " | <= 0.25 | ",
      verdict(u / s, 0.25), " |")
  say("| uvrequire stall / floor (timed directly) | ", fmt(u / f, 3),
      " | <= 1.30 | ", verdict(u / f, 1.30), " |")
  say("| uvrequire stall / floor measured as a stall | ", fmt(u / fst, 3),
      " | (info) | |")
  say("")
  local function row(label, t)
    local list = {}
    for i, v in ipairs(t) do list[i] = fmt(ms(v)) end
    say("| ", label, " | ", table.concat(list, ", "), " |")
  end
  say("<details><summary>per-run values (ms)</summary>")
  say("")
  say("| | runs |")
  say("|---|---|")
  row("idle", st.idle)
  row("stock stall", st.stock)
  row("uvrequire stall", st.uv)
  row("floor, timed directly", st.floor)
  row("floor, as a stall", st.floorstall)
  say("")
  say("</details>")
  say("")

  local cs, cu, ct = median(co.stock), median(co.uvsync), median(co.uvtasks)
  say("## c. Cold import of ", opt.small, " small modules (", opt.reps,
      " runs each)")
  say("")
  say("| | total (ms) | per module (us) | ratio to stock |")
  say("|---|---:|---:|---:|")
  say("| stock require, top level, sequential | ", fmt(ms(cs)), " | ",
      fmt(cs / opt.small / 1e3, 1), " | 1.000 |")
  say("| uvrequire.require, top level (synchronous) | ", fmt(ms(cu)), " | ",
      fmt(cu / opt.small / 1e3, 1), " | ", fmt(cu / cs, 3), " |")
  say("| uvrequire, ", opt.tasks, " tasks concurrently (spawn + run) | ",
      fmt(ms(ct)), " | ", fmt(ct / opt.small / 1e3, 1), " | ",
      fmt(ct / cs, 3), " |")

  assert(info.jobs == 0, "imports still in flight: " .. info.jobs)
  print(table.concat(out, "\n"))
end

gen.run("uvrbench", main)
