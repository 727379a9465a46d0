-- Stock, synchronous and asynchronous requires meeting on one load
-- (issue 9, "Every failure path").
--
-- FIFOs stand in for slow module files: an executor thread that opens
-- one for reading blocks until the spec opens it for writing, so the
-- state of a load is known without any timing.
local H = require "helper"
local K = require "proc_helper"
local U = H.uv

-- A child lua5.4 (K.check) with DIR, a scratch directory of its own
local function inchild(code, opts)
  return K.indir(K.prelude .. code, opts)
end

-- Run the loop one turn at a time until `f()` holds; fail if the loop
-- runs dry first.  Each turn handles at least one event: no timing.
local function until_(f, what)
  while not f() do
    if not U.run("once") and not f() then
      error("the loop ran dry before " .. what, 2)
    end
  end
end

describe("stock require meets a load in a task", function()
  -- A task requires `a`; a's body requires `b`, a FIFO.  Once a's body
  -- is waiting on b (b's job is reading the FIFO), b is written, so
  -- that b's job can finish, but the loop is not run: a's load is still
  -- in flight, its body suspended in the task.  Then stock `require`
  -- asks for `a` from the main thread.  It must not run a's body a
  -- second time: one body run, one value for both.
  -- In a child lua5.4: today stock runs the body again, and with the
  -- global require stock's (after uninstall) that second run blocks on
  -- the FIFO for ever (killed by the timeout).
  local SCENARIO = [[
local assert = require "luassert"
local U = uv
local dir = DIR  -- made and removed by the parent
package.path = dir .. "/?.lua"
RUNS = {}
local function until_(f, what)
  while not f() do
    if not U.run("once") and not f() then
      error("the loop ran dry before " .. what, 2)
    end
  end
end
H.write(dir .. "/ip_a.lua", "RUNS[...] = (RUNS[...] or 0) + 1\n" ..
        "local b = require('ip_b')\nreturn { b = b, id = {} }")
local fifo = dir .. "/ip_b.lua"
assert(os.execute("mkfifo '" .. fifo .. "'"))
U.install()  -- a's body calls the global require: uvrequire's
local t = U.spawn(U.require, "ip_a")
until_(function() return RUNS.ip_a == 1 end, "a's body started")
assert.is_false(t:done())
assert.equals("loading", U.status("ip_a"))
local f = assert(io.open(fifo, "w"))  -- returns once b's job reads it
f:write("RUNS[...] = (RUNS[...] or 0) + 1\nreturn 'B'")
f:close()
if UNINSTALL then
  U.uninstall()
  assert.equals(H.stock, rawget(_G, "require"))
end
local ok, m = pcall(H.stock, "ip_a")
assert.is_true(ok, "stock require raised: " .. tostring(m))
assert.equals(1, RUNS.ip_a)
local tok, tm = t:wait()
assert.is_true(tok)
assert.equals(tm, m)
assert.equals("B", m.b)
assert.equals(1, RUNS.ip_a)
assert.equals(1, RUNS.ip_b)
assert.equals(m, package.loaded.ip_a)
assert.equals("loaded", U.status("ip_a"))
U.uninstall()
H.clean()
print("ok")
]]

  it("H.stock(a) does not run a's body again; both get one value",
     function()
    assert.equals("ok\n", inchild(SCENARIO, { timeout = 30 }))
  end)

  it("the same after uvrequire.uninstall()", function()
    assert.equals("ok\n", inchild("UNINSTALL = true\n" .. SCENARIO,
                                  { timeout = 30 }))
  end)
end)

describe("a synchronous require of a queued job", function()
  -- Every executor thread blocks on a FIFO of its own; one more task's
  -- job is queued behind them.  The main thread's require of that
  -- module takes the job back and loads it itself: it returns without
  -- anyone writing the FIFOs.  Today it waits for the job, which never
  -- runs: a hang (bounded by timeout in the child).
  it("takes the job back and loads it on the main thread", function()
    local out = inchild([[
local assert = require "luassert"
local dir = DIR  -- made and removed by the parent
package.path = dir .. "/?.lua"
local n = uv.loopinfo().threads
assert(n >= 1 and n <= 64, "threads: " .. tostring(n))
local fifos, blocked = {}, {}
for i = 1, n do
  fifos[i] = ("%s/blk%d.lua"):format(dir, i)
  assert(os.execute("mkfifo '" .. fifos[i] .. "'"))
  blocked[i] = uv.spawn(uv.require, "blk" .. i)
  assert(not blocked[i]:done())
end
H.write(dir .. "/queued.lua", "QRUNS = (QRUNS or 0) + 1\nreturn { q = true }")
local t = uv.spawn(uv.require, "queued")
assert(not t:done())
local m, where = uv.require("queued")  -- main thread: synchronous
assert.same({ q = true }, m)
assert.equals(dir .. "/queued.lua", where)
assert.equals(1, QRUNS)
-- the task that asked first gets the same
local ok, tm, twhere = t:wait()
assert.is_true(ok)
assert.equals(m, tm)
assert.equals(where, twhere)
-- unblock the executor threads and let their tasks finish
for i = 1, n do
  local f = assert(io.open(fifos[i], "w"))
  f:write("return " .. i)
  f:close()
end
for i = 1, n do
  assert.same({ true, i, fifos[i] }, { blocked[i]:wait() })
end
assert.equals(1, QRUNS)
H.clean()
print("ok")
]], { timeout = 30 })
    assert.equals("ok\n", out)
  end)
end)

describe("the first requester closed between chunk loaded and body started",
         function()
  local scratch, dir

  before_each(function()
    scratch = H.scratch()
    dir = scratch.dir
    _G.RUNS = {}
  end)

  after_each(function()
    package.loaded.ip_window = nil
    _G.RUNS = nil
    scratch.restore()
  end)

  -- Is the chunk of `file` loaded in coroutine `co`: a function from
  -- that file in a frame of `co` (C temporaries included), or in the
  -- user values of a userdata there (a load record)?
  local function chunkloaded(co, file)
    local src = "@" .. file
    local function isit(v)
      return type(v) == "function" and debug.getinfo(v, "S").source == src
    end
    for lvl = 0, 50 do
      if not debug.getinfo(co, lvl, "f") then break end
      for i = 1, 64 do
        local name, v = debug.getlocal(co, lvl, i)
        if not name then break end
        if isit(v) then return true end
        if type(v) == "userdata" then
          for j = 1, 16 do
            local u, ok = debug.getuservalue(v, j)
            if not ok then break end
            if isit(u) then return true end
          end
        end
      end
    end
    return false
  end

  -- only a big chunk's body waits a turn after the chunk is loaded (a
  -- small one's runs at once): make it big (some 200 KB of bytecode)
  local BIG = ("local _ = { %s }\n"):format(("1, "):rep(20000))

  it("hands the load to a second waiting task, which gets the module",
     function()
    local file = dir .. "/ip_window.lua"
    H.write(file, BIG .. "RUNS.w = (RUNS.w or 0) + 1\nreturn { w = true }")
    local t1 = U.spawn(U.require, "ip_window")
    local t2 = U.spawn(U.require, "ip_window")
    assert.is_false(t1:done())
    assert.is_false(t2:done())
    until_(function() return RUNS.w ~= nil or chunkloaded(t1.co, file) end,
           "the chunk was loaded")
    assert.is_nil(RUNS.w, "the body started before the window was seen")
    assert.equals("suspended", coroutine.status(t1.co))
    assert(coroutine.close(t1.co))
    local ok, m, where = t2:wait()
    assert.is_true(ok, "the second task failed: " .. tostring(m))
    assert.same({ w = true }, m)
    assert.equals(file, where)
    assert.equals(1, RUNS.w)
    assert.equals("loaded", U.status("ip_window"))
    assert.equals(m, package.loaded.ip_window)
  end)

  it("gives the load up without a trace when no one else waits", function()
    local file = dir .. "/ip_window.lua"
    H.write(file, BIG .. "RUNS.w = (RUNS.w or 0) + 1\nreturn { w = true }")
    local t1 = U.spawn(U.require, "ip_window")
    until_(function() return RUNS.w ~= nil or chunkloaded(t1.co, file) end,
           "the chunk was loaded")
    assert.is_nil(RUNS.w, "the body started before the window was seen")
    assert(coroutine.close(t1.co))
    assert.is_nil(U.status("ip_window"))
    U.run()
    assert.is_nil(RUNS.w)
    assert.is_nil(rawget(package.loaded, "ip_window"))
    -- and it loads afresh
    assert.same({ { w = true }, file }, { U.require("ip_window") })
    assert.equals(1, RUNS.w)
  end)
end)
