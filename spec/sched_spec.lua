-- One scheduler: coroutines waiting on imports or on task:wait() are
-- resumed only from the loop, in FIFO order, never nested inside another
-- resume, and only while they still wait on the same thing.
local H = require "helper"
local K = require "child_helper"
local U = H.uv

-- Run the loop until it stops, collecting whatever run() raises (so
-- that a failing case leaves no unclaimed error behind for the next).
local function drain()
  local raised = {}
  while true do
    local ok, err = pcall(U.run)
    if ok then return raised end
    raised[#raised + 1] = err
  end
end

-- Coroutines of the case's tasks, to find a resume nested in another:
-- while a coroutine runs, the one that resumed it has status "normal".
local function registry()
  local cos, nested = {}, {}
  local R = { nested = nested }
  function R.enter(key)
    cos[key] = coroutine.running()
  end
  function R.check(key)
    for k, co in pairs(cos) do
      if k ~= key and coroutine.status(co) == "normal" then
        nested[#nested + 1] = key
        return
      end
    end
  end
  return R
end

local CHAIN = 300

-- The chain: task 1 waits on an import, task i on task i-1.
local CHAIN_SRC = [[
local U, R, N = ...
local tasks = {}
tasks[1] = U.spawn(function()
  R.enter(1)
  U.require("chainroot")
  R.check(1)
  return 1
end)
for i = 2, N do
  tasks[i] = U.spawn(function()
    R.enter(i)
    local ok, v = tasks[i - 1]:wait()
    R.check(i)
    assert(ok and v == i - 1, "task " .. i .. " got " .. tostring(v))
    return i
  end)
end
return tasks
]]

describe("one scheduler", function()
  local scratch, dir

  before_each(function()
    scratch = H.scratch()
    dir = scratch.dir
  end)

  after_each(function() scratch.restore() end)

  it("finishes a chain of 300 tasks, each waiting on the one before",
     function()
    H.write(dir .. "/chainroot.lua", "return 'root'")
    local R = registry()
    local tasks = assert(load(CHAIN_SRC, "=chain"))(U, R, CHAIN)
    assert.is_false(tasks[1]:done())
    local raised = drain()
    local got = {}
    for i = 1, CHAIN do
      got[i] = tasks[i]:done() and { tasks[i]:result() } or "not done"
    end
    assert.same({}, raised)
    for i = 1, CHAIN do assert.same({ true, i }, got[i]) end
    assert.same({}, R.nested)
    package.loaded.chainroot = nil
  end)

  it("finishes the chain under luv's plain uv.run() (luv loaded first)",
     function()
    H.write(dir .. "/chainroot.lua", "return 'root'")
    H.write(dir .. "/chain.lua", CHAIN_SRC)
    local r = K.run(dir, ([[
      local uv = require "luv"
      local U = require "uvrequire"
      local cos, nested = {}, 0
      local R = {}
      function R.enter(k) cos[k] = coroutine.running() end
      function R.check(k)
        for j, co in pairs(cos) do
          if j ~= k and coroutine.status(co) == "normal" then
            nested = nested + 1
            return
          end
        end
      end
      local tasks = assert(loadfile("chain.lua"))(U, R, %d)
      print("run", uv.run())
      local done, right = 0, 0
      for i, t in ipairs(tasks) do
        if t:done() then
          done = done + 1
          local ok, v = t:result()
          if ok and v == i then right = right + 1 end
        end
      end
      print(done, right, nested)
      local info = U.loopinfo()
      print(info.kind, info.jobs, info.handles)
    ]]):format(CHAIN))
    assert.equals(("run\tfalse\n%d\t%d\t0\nluv\t0\t0\n"):format(CHAIN, CHAIN),
                  r.out)
    assert.equals("", r.err)
    assert.same({ true, "exit", 0 }, { r.ok, r.how, r.code })
  end)

  it("a task resumed by hand while it waits on an import waits again",
     function()
    H.write(dir .. "/handmod.lua", "RUNS = (RUNS or 0) + 1; return { 'hand' }")
    local t = U.spawn(function() return U.require("handmod") end)
    assert.is_false(t:done())
    assert.same({ true, U.PENDING }, { coroutine.resume(t.co, "junk") })
    assert.is_false(t:done())
    assert.same({ true, U.PENDING }, { coroutine.resume(t.co, "more junk") })
    local raised = drain()
    assert.same({}, raised)
    assert.is_true(t:done())
    local ok, m, where = t:result()
    assert.is_true(ok)
    assert.same({ "hand" }, m)
    assert.equals(dir .. "/handmod.lua", where)
    assert.equals(1, RUNS)
    assert.equals(m, package.loaded.handmod)
    _G.RUNS = nil
    package.loaded.handmod = nil
  end)

  it("a task resumed by hand while it waits on a task waits again",
     function()
    H.write(dir .. "/handmod2.lua", "return 'hand2'")
    local blocker = U.spawn(function() return U.require("handmod2") end)
    local waiter = U.spawn(function() return "got", blocker:wait() end)
    assert.is_false(waiter:done())
    assert.same({ true, U.PENDING }, { coroutine.resume(waiter.co, "junk") })
    assert.is_false(waiter:done())
    assert.same({}, drain())
    assert.same({ true, "got", true, "hand2", dir .. "/handmod2.lua" },
                { waiter:result() })
    package.loaded.handmod2 = nil
  end)

  it("resumes the tasks waiting on one import in FIFO order", function()
    H.write(dir .. "/fifomod.lua", "return 'f'")
    local R, order, tasks = registry(), {}, {}
    for i = 1, 20 do
      tasks[i] = U.spawn(function()
        R.enter(i)
        local m = U.require("fifomod")
        R.check(i)
        order[#order + 1] = i
        return m
      end)
    end
    assert.same({}, order)  -- all of them wait
    assert.same({}, drain())
    local want = {}
    for i = 1, 20 do want[i] = i end
    assert.same(want, order)
    assert.same({}, R.nested)
    for i = 1, 20 do
      assert.same({ true, "f" }, { tasks[i]:result() })
    end
    package.loaded.fifomod = nil
  end)

  it("resumes the tasks waiting on one task in FIFO order", function()
    H.write(dir .. "/gatemod.lua", "return 'g'")
    local R, order, tasks = registry(), {}, {}
    local gate = U.spawn(function()
      R.enter("gate")
      local m = U.require("gatemod")
      R.check("gate")
      return m
    end)
    for i = 1, 20 do
      tasks[i] = U.spawn(function()
        R.enter(i)
        local ok, m = gate:wait()
        R.check(i)
        order[#order + 1] = i
        return ok, m
      end)
    end
    assert.same({}, order)
    assert.same({}, drain())
    local want = {}
    for i = 1, 20 do want[i] = i end
    assert.same(want, order)
    assert.same({}, R.nested)
    for i = 1, 20 do
      assert.same({ true, true, "g" }, { tasks[i]:result() })
    end
    package.loaded.gatemod = nil
  end)
end)
