-- Cancel and timeouts: task:cancel() and import_module's timeout end
-- one waiter's wait; the shared load goes on for the others, or is
-- dropped without a trace when nobody is left.
local H = require "helper"
local U = H.uv

describe("cancel and timeouts", function()
  local scratch, dir, names

  before_each(function()
    scratch = H.scratch()
    dir = scratch.dir
    names = {}
    _G.RUNS = {}
  end)

  after_each(function()
    for _, n in ipairs(names) do package.loaded[n] = nil end
    scratch.restore()
    _G.RUNS = nil
  end)

  -- a module whose file is a FIFO: its import stays on the executor
  -- until fed.  feed(src) writes it (only while a worker reads it);
  -- unblock() lets a reader, now or soon, see end of file.
  local function fifo_module(name)
    local path = dir .. "/" .. name .. ".lua"
    assert(os.execute("mkfifo '" .. path .. "'"))
    names[#names + 1] = name
    local m = {}
    function m.feed(src)
      local f = assert(io.open(path, "w"))
      f:write(src)
      f:close()
    end
    function m.unblock()
      -- a worker may be blocked opening it, or about to be: a writer in
      -- the background opens it (waiting up to 30 s for a reader, who
      -- then reads an empty file) and is gone; the spec does not wait
      assert(os.execute("(timeout 30 sh -c 'exec 3>\"$0\"' '" .. path ..
                        "' >/dev/null 2>&1 &)"))
    end
    return m
  end

  local function until_(cond)
    while not cond() do pcall(U.run, "once") end
  end

  it("cancel ends one waiter; the load goes on for the others", function()
    local m = fifo_module("cw")
    local first = U.spawn(U.require, "cw")   -- drives the load
    local second = U.spawn(U.require, "cw")  -- waits on it
    assert.is_true(first:cancel())
    until_(function() return first:done() end)
    assert.same({ false, "cancelled" }, { first:result() })
    assert.equals("loading", U.status("cw"))
    m.feed("RUNS.cw = (RUNS.cw or 0) + 1; return { 'cw' }")
    until_(function() return second:done() end)
    local ok, v, where = second:result()
    assert.is_true(ok)
    assert.same({ "cw" }, v)
    assert.equals(dir .. "/cw.lua", where)
    assert.equals(1, RUNS.cw)
    assert.equals(v, package.loaded.cw)
  end)

  it("cancel of the only waiter drops the load without a trace", function()
    local m = fifo_module("cd")
    local t = U.spawn(U.require, "cd")
    assert.is_true(t:cancel())
    until_(function() return t:done() end)
    assert.same({ false, "cancelled" }, { t:result() })
    assert.is_nil(U.status("cd"))
    assert.is_nil(rawget(package.loaded, "cd"))
    m.unblock()  -- the worker, if it had the job, reads an empty file
    H.clean()
    assert.is_nil(rawget(package.loaded, "cd"))
  end)

  it("cancel ends a wait on another task", function()
    local m = fifo_module("ct")
    local loader = U.spawn(U.require, "ct")
    local waiter = U.spawn(function() return loader:wait() end)
    assert.is_true(waiter:cancel())
    until_(function() return waiter:done() end)
    assert.same({ false, "cancelled" }, { waiter:result() })
    m.feed("return 'ct'")
    until_(function() return loader:done() end)
    assert.same({ true, "ct", dir .. "/ct.lua" }, { loader:result() })
  end)

  it("cancel of a task that waits on nothing of uvrequire's is false",
     function()
    H.write(dir .. "/cn.lua", "return 'cn'")
    names[#names + 1] = "cn"
    local done = U.spawn(function() return 1 end)
    assert.is_false(done:cancel())
    local own = U.spawn(function() coroutine.yield("own wait") end)
    assert.is_false(own:cancel())
    assert(coroutine.resume(own.co))
    assert.is_true(own:done())
  end)

  it("a caught cancel lets the task go on, and import again", function()
    H.write(dir .. "/cc.lua", "RUNS.cc = (RUNS.cc or 0) + 1; return 'cc'")
    names[#names + 1] = "cc"
    local t = U.spawn(function()
      local ok, err = pcall(U.require, "cc")
      return ok, err, U.require("cc")
    end)
    assert.is_true(t:cancel())
    until_(function() return t:done() end)
    assert.same({ true, false, "cancelled", "cc", dir .. "/cc.lua" },
                { t:result() })
    assert.equals(1, RUNS.cc)
  end)

  it("a timeout ends the wait with its message; others still get it",
     function()
    local m = fifo_module("tw")
    local patient = U.spawn(U.require, "tw")
    local hasty = U.spawn(U.import_module, "tw", { timeout = 5 })
    local frac = U.spawn(U.import_module, "tw", { timeout = 2.5 })
    until_(function() return hasty:done() and frac:done() end)
    assert.same({ false, "import of 'tw' timed out after 5 ms" },
                { hasty:result() })
    assert.same({ false, "import of 'tw' timed out after 2.5 ms" },
                { frac:result() })
    assert.is_false(patient:done())
    m.feed("return 'tw'")
    until_(function() return patient:done() end)
    assert.same({ true, "tw", dir .. "/tw.lua" }, { patient:result() })
  end)

  it("a timeout that does not fire leaves nothing behind", function()
    H.write(dir .. "/tq.lua", "return 'tq'")
    names[#names + 1] = "tq"
    local t = U.spawn(U.import_module, "tq", { timeout = 60000 })
    assert.equals(1, U.loopinfo().handles)  -- the timer
    U.run()  -- returns: the timer is stopped once the import is done
    assert.same({ true, "tq" }, { t:result() })
    H.clean()
  end)

  it("a timeout counts from the import, not from the loop's last turn",
     function()
    -- the loop's time is that of its last turn: after 1.5 s of work
    -- with no turn, a timer of 1 s started from it fired at once
    H.write(dir .. "/tn.lua", "return 'tn'")
    names[#names + 1] = "tn"
    U.run()  -- (a turn now; then none for 1.5 s)
    local t0 = H.luv.hrtime()
    repeat until H.luv.hrtime() - t0 > 1.5e9
    local t = U.spawn(U.import_module, "tn", { timeout = 1000 })
    U.run()
    assert.same({ true, "tn" }, { t:result() })
  end)

  it("a synchronous import_module ignores the timeout", function()
    H.write(dir .. "/ts.lua", "return 'ts'")
    names[#names + 1] = "ts"
    assert.equals("ts", U.import_module("ts", { timeout = 0 }))
    assert.equals("ts", U.import_module("ts", { timeout = 0 }))
  end)

  it("ends a wait once however often it is cancelled; other " ..
     "completions still arrive", function()
    local m = fifo_module("cm")
    H.write(dir .. "/cn.lua", "return 'cn'")
    names[#names + 1] = "cn"
    local gate = U.spawn(U.require, "cm")
    local waiter = U.spawn(function() return gate:wait() end)
    local other = U.spawn(U.require, "cn")
    -- (each cancel used to queue the waiter again: the ready queue,
    -- with room for two entries a waiting task, dropped other's)
    for _ = 1, 20 do assert.is_true(waiter:cancel()) end
    -- the top level finishes other's load now: other is made ready
    -- while the queue holds the cancels, before any turn runs
    assert.equals("cn", U.require("cn"))
    m.feed("return 'cm'")
    for _ = 1, 100 do  -- (bounded: a lost wake-up leaves nothing to run)
      if gate:done() and waiter:done() and other:done() then break end
      pcall(U.run, "once")
    end
    assert.same({ false, "cancelled" }, { waiter:result() })
    assert.same({ true, "cn", dir .. "/cn.lua" }, { other:result() })
    assert.same({ true, "cm", dir .. "/cm.lua" }, { gate:result() })
  end)

  it("leaves the error of a task to run() when a wait on it is " ..
     "cancelled", function()
    local m = fifo_module("cx")
    local failing = U.spawn(function()
      U.require("cx")
      error("the task failed", 0)
    end)
    local waiter = U.spawn(function() return failing:wait() end)
    assert.is_true(waiter:cancel())
    until_(function() return waiter:done() end)
    assert.same({ false, "cancelled" }, { waiter:result() })
    m.feed("return 'cx'")
    local ok, err = pcall(U.run)
    assert.is_false(ok)
    assert.matches("^the task failed\nstack traceback:", err)
  end)

  it("stops a timeout when the module's body starts (its waits are " ..
     "the body's)", function()
    local inner = fifo_module("ti")
    H.write(dir .. "/to.lua", "BODY = true\n" ..
            "return { inner = require('uvrequire').require 'ti' }")
    names[#names + 1] = "to"
    local first = U.spawn(U.import_module, "to", { timeout = 60000 })
    local second = U.spawn(U.import_module, "to")
    until_(function() return rawget(_G, "BODY") end)
    -- the body waits on 'ti': no timer may end that wait (it used to
    -- fail 'to' for both tasks)
    assert.equals(0, U.loopinfo().handles)
    inner.feed("return 'ti'")
    until_(function() return first:done() and second:done() end)
    assert.same({ true, { inner = "ti" } }, { first:result() })
    assert.same({ true, { inner = "ti" } }, { second:result() })
    _G.BODY = nil
  end)

  it("takes math.huge (and any timeout of 2^53 ms or more) as none",
     function()
    local m = fifo_module("th")
    local t = U.spawn(U.import_module, "th", { timeout = math.huge })
    local u = U.spawn(U.import_module, "th", { timeout = 2^64 })
    assert.equals(0, U.loopinfo().handles)  -- no timer
    m.feed("return 'th'")
    until_(function() return t:done() and u:done() end)
    assert.same({ true, "th" }, { t:result() })
    assert.same({ true, "th" }, { u:result() })
  end)

  it("rejects bad options with stock's wording", function()
    local function msg(...)
      local ok, err = pcall(U.import_module, ...)
      assert.is_false(ok)
      return err
    end
    assert.equals("bad argument #2 to 'import_module' (table expected, " ..
                  "got number)", msg("string", 5))
    assert.equals("bad argument #2 to 'import_module' (unknown option " ..
                  "'wait')", msg("string", { wait = 1 }))
    assert.equals("bad argument #2 to 'import_module' (option 'timeout' " ..
                  "must be a non-negative number of ms)",
                  msg("string", { timeout = -1 }))
    assert.equals("bad argument #2 to 'import_module' (option 'timeout' " ..
                  "must be a non-negative number of ms)",
                  msg("string", { timeout = "5" }))
  end)
end)
