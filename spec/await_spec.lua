-- Awaitable imports: require yields in coroutines while the executor
-- works, and the loop keeps running.
local H = require "helper"
local U, uv = H.uv, H.luv

describe("awaitable require", function()
  local scratch, dir

  before_each(function()
    scratch = H.scratch()
    dir = scratch.dir
  end)

  after_each(function() scratch.restore() end)

  it("delivers imports on luv's loop when luv came first", function()
    H.write(dir .. "/first.lua", "return 'first'")
    assert.same({ true, "first", dir .. "/first.lua" },
                { H.task(U.require, "first") })
    assert.equals("luv", U.loopinfo().kind)
  end)

  it("keeps the loop running while the executor blocks on a FIFO",
     function()
    local fifo = dir .. "/fifo_mod.lua"
    assert(os.execute("mkfifo '" .. fifo .. "'"))
    local ticks, waiting_at_write = 0, nil
    local t = U.spawn(U.require, "fifo_mod")
    assert.is_false(t:done())  -- it yielded: the executor is blocked
    local timer = uv.new_timer()
    timer:start(1, 1, function()
      ticks = ticks + 1
      if ticks == 5 then
        waiting_at_write = not t:done()
        -- the executor has the FIFO open for reading (or is opening
        -- it), so this open does not wait for long
        local f = assert(io.open(fifo, "w"))
        f:write("return { from = 'fifo', ... }")
        f:close()
      elseif t:done() then
        timer:close()
      end
    end)
    U.run()
    assert.is_true(waiting_at_write)
    assert.is_true(ticks > 5)
    local ok, m, where = t:result()
    assert.is_true(ok)
    assert.same({ from = "fifo", "fifo_mod", fifo }, m)
    assert.equals(fifo, where)
  end)

  it("lets a module body yield on a timer; resumes nothing else",
     function()
    H.write(dir .. "/sleepy.lua", [[
      local uv = require "luv"
      local co = coroutine.running()
      local t = uv.new_timer()
      t:start(2, 0, function()
        t:close()
        assert(coroutine.resume(co, "from the timer"))
      end)
      local v = coroutine.yield()
      return { woke = v }
    ]])
    local ok, m = H.task(U.require, "sleepy")
    assert.is_true(ok)
    -- had uvrequire resumed the body, it would have woken with nothing
    assert.same({ woke = "from the timer" }, m)
  end)

  it("completes while four blocked fs_reads fill luv's threadpool",
     function()
    local fds, reads = {}, 0
    for i = 1, 4 do
      local p = dir .. "/pool" .. i
      assert(os.execute("mkfifo '" .. p .. "'"))
      fds[i] = assert(uv.fs_open(p, "r+", 0))  -- O_RDWR: no wait
      uv.fs_read(fds[i], 16, -1, function(err, data)
        assert.is_nil(err)
        assert.equals("x", data)
        reads = reads + 1
      end)
    end
    H.write(dir .. "/plain.lua", "return 'plain'")
    local t = U.spawn(U.require, "plain")
    while not t:done() do U.run("once") end
    assert.equals(0, reads)  -- the threadpool is still blocked
    assert.same({ true, "plain", dir .. "/plain.lua" }, { t:result() })
    for i = 1, 4 do assert(uv.fs_write(fds[i], "x", -1)) end
    U.run()
    assert.equals(4, reads)
    for i = 1, 4 do assert(uv.fs_close(fds[i])) end
  end)

  it("serves hundreds of coroutines requiring dozens of modules",
     function()
    local NMOD, NTASK, PER = 40, 300, 12
    for i = 1, NMOD do
      H.write(("%s/many%d.lua"):format(dir, i),
              ("return { id = %d, name = ... }"):format(i))
    end
    math.randomseed(1234)
    local tasks, want = {}, {}
    for k = 1, NTASK do
      local ids = {}
      for j = 1, PER do ids[j] = math.random(NMOD) end
      want[k] = ids
      tasks[k] = U.spawn(function()
        local got = {}
        for j, id in ipairs(ids) do
          local m = U.require("many" .. id)
          got[j] = m.id
          assert(m.name == "many" .. id)
        end
        return got
      end)
    end
    U.run()
    for k = 1, NTASK do
      local ok, got = tasks[k]:result()
      assert.is_true(ok)
      assert.same(want[k], got)
    end
    for i = 1, NMOD do package.loaded["many" .. i] = nil end
  end)

  it("stays synchronous on the main thread", function()
    H.write(dir .. "/topmod.lua", "return 'top'")
    assert.is_true(select(2, coroutine.running()))
    assert.same({ "top", dir .. "/topmod.lua" }, { U.require("topmod") })
    assert.equals(0, U.loopinfo().jobs)  -- nothing was left in flight
    package.loaded.topmod = nil
  end)

  it("loads synchronously across a C-call boundary (sort comparator)",
     function()
    H.write(dir .. "/insort.lua", "return 1")
    local ok, r = H.task(function()
      local t = { 3, 1, 2 }
      table.sort(t, function(a, b) return a + U.require("insort") <
                                          b + U.require("insort") end)
      return table.concat(t, ",")
    end)
    assert.is_true(ok)
    assert.equals("1,2,3", r)
    package.loaded.insort = nil
  end)

  it("yields PENDING to a generator's consumer; sync() opts out",
     function()
    H.write(dir .. "/genmod.lua", "return 'g'")
    local function gen(require)
      return coroutine.wrap(function()
        coroutine.yield(require("genmod"))
        coroutine.yield("second")
      end)
    end
    -- in "any" mode, waiting by yielding hands the consumer PENDING
    local core = require "uvrequire.core"
    core.setmode("any")
    finally(function() core.setmode("tasks") end)
    local next_value = gen(U.require)
    local first = next_value()
    assert.equals(U.PENDING, first)
    local v = first
    while v == U.PENDING do v = next_value() end
    assert.equals("g", v)
    assert.equals("second", next_value())
    package.loaded.genmod = nil
    -- under sync(), the generator yields only its own values
    local values = {}
    for x in coroutine.wrap(function()
      U.sync(function()
        coroutine.yield(U.require("genmod"))
        coroutine.yield("second")
      end)
    end) do values[#values + 1] = x end
    assert.same({ "g", "second" }, values)
    package.loaded.genmod = nil
  end)

  it("resumes a coroutine.wrap started in a luv callback", function()
    H.write(dir .. "/incb.lua", "return 'cb'")
    local got
    local timer = uv.new_timer()
    timer:start(0, 0, function()
      timer:close()
      coroutine.wrap(function() got = U.require("incb") end)()
    end)
    U.run()
    assert.equals("cb", got)
    package.loaded.incb = nil
  end)

  it("never loses an error: run() raises it unless the task claims it",
     function()
    H.write(dir .. "/bad.lua", "error('bad module body')")
    local msg = dir .. "/bad.lua:1: bad module body"
    -- the message, then its traceback
    local function traceback_of(e)
      return e:sub(1, #msg + #"\nstack traceback:\n")
    end
    local t = U.spawn(U.require, "bad")
    local ok1, raised = pcall(U.run)
    assert.is_false(ok1)
    assert.equals(msg .. "\nstack traceback:\n", traceback_of(raised))
    assert.is_true(t:done())
    assert.same({ false, msg }, { t:result() })
    -- claimed by waiting on it: no raise
    local t2 = U.spawn(U.require, "bad")
    local ok, err = t2:wait()
    assert.is_false(ok)
    assert.equals(msg, err)
    -- a bare coroutine resumed by uvrequire ("any" mode): its error
    -- goes to run()
    local core = require "uvrequire.core"
    core.setmode("any")
    finally(function() core.setmode("tasks") end)
    local timer = uv.new_timer()
    timer:start(0, 0, function()
      timer:close()
      coroutine.wrap(function() U.require("bad") end)()
    end)
    local ok2, raised2 = pcall(U.run)
    assert.is_false(ok2)
    assert.equals(msg .. "\nstack traceback:\n", traceback_of(raised2))
  end)

  -- A bare coroutine that uvrequire resumes ("any" mode) requires
  -- module `name`, then dies of `err`: what run() does (pcall's results)
  local function diesinany(name, err)
    local core = require "uvrequire.core"
    core.setmode("any")
    local timer = uv.new_timer()
    timer:start(0, 0, function()
      timer:close()
      coroutine.wrap(function() U.require(name); error(err) end)()
    end)
    local ok, raised = pcall(U.run)
    core.setmode("tasks")
    package.loaded[name] = nil
    return ok, raised
  end

  it("words a bare coroutine's error object by its __tostring", function()
    H.write(dir .. "/okmod.lua", "return 'ok'")
    local obj = setmetatable({}, { __tostring = function()
      return "MyError: disk full"
    end })
    local ok, raised = diesinany("okmod", obj)
    assert.is_false(ok)
    assert.matches("^MyError: disk full\nstack traceback:\n", raised)
  end)

  it("leaves to run() the error of a task whose waiter was closed",
     function()
    -- the closed waiter never returned from its wait: the task stayed
    -- "waited for", and run() never raised its error
    H.write(dir .. "/cw_slow.lua", "return 1")
    local f = U.spawn(function()
      U.require("cw_slow")
      error("F failed", 0)
    end)
    local w = U.spawn(function() return f:wait() end)
    assert.is_true(coroutine.close(w.co))
    local ok, raised = pcall(U.run)
    assert.is_false(ok)
    assert.matches("^F failed\nstack traceback:\n", raised)
    assert.equals(0, f.waiting)
    package.loaded.cw_slow = nil
  end)

  it("keeps an error object whose __tostring raises, and reports it",
     function()
    -- the task's result is that very object (its report names it by
    -- its type); a bare coroutine's goes to run(), not lost on stderr
    H.write(dir .. "/okmod2.lua", "return 'ok'")
    local obj = setmetatable({}, { __tostring = function()
      error("no tostring")
    end })
    local t = U.spawn(function() error(obj) end)
    local ok, err = t:result()
    assert.is_false(ok)
    assert.is_true(rawequal(obj, err))
    local ok2, raised = diesinany("okmod2", obj)
    assert.is_false(ok2)
    assert.matches("^%(error object is a table value%)\nstack traceback:\n",
                   raised)
  end)

  it("closes the state safely with imports in flight", function()
    -- a child lua5.4 starts imports whose worker blocks on a FIFO, then
    -- ends: lua_close runs with the job running (and one queued behind
    -- it with UVREQUIRE_THREADS=1); it must exit cleanly, not hang
    local fifo = dir .. "/never.lua"
    assert(os.execute("mkfifo '" .. fifo .. "'"))
    H.write(dir .. "/queued.lua", "return 1")
    for _, luv in ipairs { "", "require 'luv';" } do
      local script = ("%s local U = require 'uvrequire'; " ..
        "package.path = %q; U.spawn(U.require, 'never'); " ..
        "U.spawn(U.require, 'queued'); print('exiting')")
        :format(luv, dir .. "/?.lua")
      local cmd = ("UVREQUIRE_THREADS=1 LUA_PATH='lua/?.lua;;' " ..
                   "LUA_CPATH='build/?.so;;' timeout 20 lua5.4 -e %q 2>&1")
                  :format(script)
      local p = assert(io.popen(cmd))
      local out = p:read("a")
      local ok, how, code = p:close()
      assert.equals("exiting\n", out)
      assert.same({ true, "exit", 0 }, { ok, how, code })
    end
  end)

  it("lets a task wait for another task", function()
    H.write(dir .. "/waited.lua", "return 'w'")
    local inner = U.spawn(U.require, "waited")
    local outer = U.spawn(function()
      local ok, m = inner:wait()
      return ok, m
    end)
    assert.same({ true, true, "w" }, { outer:wait() })
    package.loaded.waited = nil
  end)
end)
