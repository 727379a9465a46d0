--- examples/demo.lua: does importing code freeze your event loop?
--
-- Run:   make demo                 (from the repo root; builds first)
--   or:  lua5.4 examples/demo.lua
--
-- What it shows: an application with a libuv event loop (here luv) wants
-- its loop to keep turning -- to answer requests, redraw, keep a
-- heartbeat.  A 1 ms luv timer stands in for that work and records the
-- longest gap between two of its ticks.  Meanwhile 4 coroutines import
-- a set of freshly generated modules (3 large ones of 1-2 MB of source,
-- 50 small ones).  Each coroutine is well behaved: it lets the loop run
-- between two imports.
--
--   run 1: Lua's stock `require`.  Reading and compiling a module happen
--          on the loop's thread, so the timer waits for every compile.
--   run 2: uvrequire.install() makes `require` uvrequire's.  Searching,
--          reading and compiling happen on executor threads; the
--          coroutine waits (yields) and the loop keeps ticking.  Only
--          loading the ready bytecode and running the module's body stay
--          on the loop's thread.
--
-- The task code is the same in both runs: `require(name)`.  The loop is
-- luv's, driven by uvrequire.run() (luv's uv.run() would do the same),
-- because luv is required before uvrequire is first used.
--
-- For each run it prints the longest loop stall, the total time, and how
-- many timer ticks were observed while importing; then a one-line
-- conclusion.  Generated files go to a directory under /tmp (from
-- os.tmpname) that is removed at the end.

-- Paths relative to the repo root, wherever we are started from.
local ROOT = (arg and arg[0] or ""):match("^(.*/)examples/[^/]+$") or ""
package.path = ROOT .. "lua/?.lua;" .. package.path
package.cpath = ROOT .. "build/?.so;" .. package.cpath

local uv = require "luv"              -- first: uvrequire then uses its loop
local uvrequire = require "uvrequire"
local gen = dofile(ROOT .. "bench/gen.lua")

local NTASKS, NSMALL = 4, 50
local LARGE = { 1.0e6, 1.5e6, 2.0e6 }  -- bytes of source


--- Let the loop turn once (its timers get their chance), then go on.
local function pause()
  local co = coroutine.running()
  local idle = uv.new_idle()
  idle:start(function()
    idle:stop()
    idle:close()
    coroutine.resume(co)  -- a task catches its own errors
  end)
  coroutine.yield()
end

--- Write one set of modules; returns their names, large ones spread out.
local function makeset(dir, tag)
  local names = gen.small(dir, NSMALL, tag)
  for i, bytes in ipairs(LARGE) do
    local name = gen.large(dir, bytes, tag)
    table.insert(names, (i - 1) * (NTASKS + 1) + 1, name)  -- task i
  end
  return names
end

--- Tick every 1 ms; once warm, start NTASKS tasks that `require` the
-- names between them; stop when all are done.  Returns the longest gap
-- between ticks (ms), total time (ms), and the ticks seen meanwhile.
local function run(names)
  collectgarbage()
  collectgarbage()
  local timer = uv.new_timer()
  local ticks, observed, cool, left = 0, 0, 0, NTASKS
  local last, maxgap, t0, t1
  local tasks = {}
  timer:start(1, 1, function()
    local now = uv.hrtime()
    ticks = ticks + 1
    if t0 then
      maxgap = math.max(maxgap, now - last)
      if not t1 then observed = observed + 1 end
    end
    last = now
    if ticks == 5 then  -- warm: start importing
      t0, maxgap = now, 0
      for k = 1, NTASKS do
        tasks[k] = uvrequire.spawn(function()
          for i = k, #names, NTASKS do
            require(names[i])
            pause()
          end
          left = left - 1
          if left == 0 then t1 = uv.hrtime() end
        end)
      end
    elseif t1 then
      cool = cool + 1
      if cool == 3 then timer:stop(); timer:close() end
    end
  end)
  uvrequire.run()  -- runs luv's loop until the timer is closed
  for _, t in ipairs(tasks) do assert(t:result()) end
  for _, n in ipairs(names) do
    assert(type(package.loaded[n]) == "table", n)
    package.loaded[n] = nil
  end
  return maxgap / 1e6, (t1 - t0) / 1e6, observed
end


local function main(dir)
  gen.addpath(dir)
  print("uvrequire demo: does importing code freeze the event loop?")
  print()
  print(("A luv timer ticks every 1 ms while %d coroutines import %d new"
    .. " modules (%d of 1-2 MB,"):format(NTASKS, NSMALL + #LARGE, #LARGE))
  print(("%d small).  A stall is the longest gap between two ticks:"
    .. " 1 ms means the loop"):format(NSMALL))
  print("never waited.  Run 1 uses Lua's stock require (compiling blocks"
    .. " the loop);")
  print("run 2 uses uvrequire.install() (reading and compiling run on"
    .. " other threads,")
  print("the coroutine waits, the loop keeps ticking).  Same code, same"
    .. " modules.")
  print()
  local stockset, uvset = makeset(dir, "stock"), makeset(dir, "uv")
  local ss, st, sn = run(stockset)
  uvrequire.install()
  local ok, us, ut, un = pcall(run, uvset)
  uvrequire.uninstall()
  if not ok then error(us, 0) end

  print(("executor threads: %d, loop: %s"):format(
    uvrequire.loopinfo().threads, uvrequire.loopinfo().kind))
  print()
  print("| require    | longest loop stall (ms) | total time (ms) | ticks observed |")
  print("|------------|------------------------:|----------------:|---------------:|")
  print(("| stock      | %23.1f | %15.1f | %14d |"):format(ss, st, sn))
  print(("| uvrequire  | %23.1f | %15.1f | %14d |"):format(us, ut, un))
  print()
  print("(ticks observed: timer ticks while importing; a loop that never"
    .. " waits ticks")
  print("about once per ms of total time.  Total time is not the point:"
    .. " both runs do")
  print("the same compiling; uvrequire just does it off the loop's"
    .. " thread.)")
  print()
  print(("Conclusion: with uvrequire the loop's longest stall was %.1fx"
    .. " shorter (%.1f ms vs %.1f ms),"):format(ss / us, us, ss))
  print(("and the timer ticked %d times instead of %d while the same"
    .. " modules were imported."):format(un, sn))
end

gen.run("uvrdemo", main)
