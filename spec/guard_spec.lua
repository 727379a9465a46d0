-- Guarded package.loaded: one load per module, never half-done, clean
-- failures, cycles are errors, synchronous meets asynchronous.
local H = require "helper"
local U, uv = H.uv, H.luv

-- A module body that yields until a luv timer fires (2 ms).
local NAP = [[
local function nap()
  local co = coroutine.running()
  local t = require("luv").new_timer()
  t:start(2, 0, function() t:close(); assert(coroutine.resume(co)) end)
  coroutine.yield()
end
]]

describe("guarded package.loaded", function()
  local dir, names

  -- write modules { name = source } and remember their names
  local function modules(t)
    for name, src in pairs(t) do
      H.write(dir .. "/" .. name .. ".lua", src)
      names[#names + 1] = name
    end
  end

  local scratch

  before_each(function()
    scratch = H.scratch()
    dir = scratch.dir
    names = {}
    _G.RUNS = {}
  end)

  after_each(function()
    scratch.restore()
    for _, n in ipairs(names) do package.loaded[n] = nil end
    _G.RUNS = nil
  end)

  describe("one load per module", function()
    it("runs the body once for many waiters, who get identical results",
       function()
      modules { once = NAP .. [[
        RUNS.once = (RUNS.once or 0) + 1
        nap()
        return { id = {} }
      ]] }
      local tasks = {}
      for i = 1, 20 do tasks[i] = U.spawn(U.require, "once") end
      assert.equals("loading", U.status("once"))
      U.run()
      assert.equals(1, RUNS.once)
      local _, first, where = tasks[1]:result()
      assert.equals(dir .. "/once.lua", where)
      for i = 2, 20 do
        local ok, m, w = tasks[i]:result()
        assert.is_true(ok)
        assert.equals(first, m)
        assert.equals(where, w)
      end
      assert.equals("loaded", U.status("once"))
    end)

    it("completes for the others when the first requester is closed",
       function()
      modules { orphaned = "RUNS.orphaned = (RUNS.orphaned or 0) + 1\n" ..
                           "return 'done'" }
      local first = U.spawn(U.require, "orphaned")
      assert.equals("suspended", coroutine.status(first.co))
      local other = U.spawn(U.require, "orphaned")
      assert(coroutine.close(first.co))
      assert.same({ true, "done", dir .. "/orphaned.lua" },
                  { other:wait() })
      assert.equals(1, RUNS.orphaned)
    end)

    it("completes when the first requester is dropped and collected",
       function()
      modules { dropped = "RUNS.dropped = (RUNS.dropped or 0) + 1\n" ..
                          "return 'd'" }
      do
        local t = U.spawn(U.require, "dropped")
        assert.equals("suspended", coroutine.status(t.co))
      end
      collectgarbage()
      collectgarbage()
      local other = U.spawn(U.require, "dropped")
      assert.same({ true, "d", dir .. "/dropped.lua" }, { other:wait() })
      assert.equals(1, RUNS.dropped)
    end)

    it("fails for the waiters when the driver is closed mid-body",
       function()
      -- the body waits on something of its own that only the spec could
      -- give (no timer: nothing can finish the body before the close)
      modules { midway = [[
        RUNS.midway = (RUNS.midway or 0) + 1
        coroutine.yield("waiting for the spec")
        return "never"
      ]] }
      local driver = U.spawn(U.require, "midway")
      while RUNS.midway == nil do U.run("once") end  -- body has started
      assert.equals("suspended", coroutine.status(driver.co))
      local waiter = U.spawn(U.require, "midway")
      assert(coroutine.close(driver.co))
      assert.equals(1, RUNS.midway)
      local ok, err = waiter:wait()
      assert.is_false(ok)
      assert.equals("module 'midway' was loading in a coroutine that was " ..
                    "closed", err)
      assert.is_nil(U.status("midway"))
      assert.is_nil(rawget(package.loaded, "midway"))
    end)

    it("gives the load up, leaving no trace, when all requesters close",
       function()
      modules { nobody = "RUNS.nobody = (RUNS.nobody or 0) + 1" }
      local t = U.spawn(U.require, "nobody")
      assert.equals("loading", U.status("nobody"))
      assert(coroutine.close(t.co))
      assert.is_nil(U.status("nobody"))
      U.run()
      assert.is_nil(RUNS.nobody)
      assert.is_nil(package.loaded.nobody)
    end)
  end)

  describe("never half-done", function()
    it("shows a stored value only to the module's own chain", function()
      modules {
        early = NAP .. [[
          local M = { complete = false }
          package.loaded[...] = M
          -- rule 11: its own chain sees it, through require too
          assert(require(...) == M)
          assert(require("early_child") == M)
          nap()
          M.complete = true
          return M
        ]],
        early_child = "return require('early')",
      }
      local seen = {}
      local loader = U.spawn(function()
        package.path = package.path  -- same path in the task
        return U.require("early")
      end)
      -- an outsider, while the body naps
      local timer = uv.new_timer()
      timer:start(1, 0, function()
        timer:close()
        seen.direct = package.loaded.early
        for k in pairs(package.loaded) do
          if k == "early" then seen.listed = true end
        end
        seen.status = U.status("early")
      end)
      _G.require = U.require  -- the module body's own require calls
      local ok, m = loader:wait()
      _G.require = H.stock
      assert.is_true(ok)
      assert.is_nil(seen.direct)
      assert.is_nil(seen.listed)
      assert.equals("loading", seen.status)
      assert.is_true(m.complete)
      assert.equals(m, package.loaded.early)
    end)
  end)

  describe("a coroutine that a body resumes", function()
    -- nested in the body's own run, as stock Lua sees it: it sees the
    -- module's stored value, and its require of the module returns it
    before_each(function()
      modules {
        nest = [[
          local M = { complete = false }
          package.loaded[...] = M
          local seen, got = coroutine.wrap(function()
            return package.loaded.nest, require "nest"
          end)()
          M.seen_ok, M.got_ok = seen == M, got == M
          local co = coroutine.create(function()  -- two levels down
            return coroutine.wrap(function() return require "nest" end)()
          end)
          local _, deep = coroutine.resume(co)
          M.deep_ok = deep == M
          M.complete = true
          return M
        ]],
        nest_nil = [[
          local ok, err = coroutine.wrap(function()
            return pcall(function() return require "nest_mid" end)
          end)()
          return { ok = ok, err = err }
        ]],
        nest_mid = "return require 'nest_nil'",
        nest_gen = [[
          local M = { complete = false }
          package.loaded[...] = M
          local U = require "uvrequire"
          U.spawn(function()  -- a task the body starts; its generator
            local seen, ok, err = coroutine.wrap(function()
              return package.loaded.nest_gen,
                     pcall(function() return require "nest_gen" end)
            end)()
            SEEN = { seen, ok, err }
          end)
          M.complete = true
          return M
        ]],
        nest_a = "return { b = require 'nest_b' }",
        nest_b = [[
          local ok, err = coroutine.wrap(function()
            return pcall(function() return require "nest_a" end)
          end)()
          return { ok = ok, err = err }
        ]],
        nest_loop = [[
          local M = { complete = false }
          package.loaded[...] = M
          local U = require "uvrequire"
          U.spawn(function() SEEN = { package.loaded.nest_loop } end)
          U.run()  -- a loop the body runs resumes a task
          M.complete = true
          return M
        ]],
      }
      _G.require = U.require
    end)
    after_each(function() _G.require = H.stock end)

    local function check(m)
      assert.is_true(m.seen_ok)
      assert.is_true(m.got_ok)
      assert.is_true(m.deep_ok)
      assert.is_true(m.complete)
    end

    it("sees the stored value, at top level and in a task", function()
      check(U.require("nest"))
      package.loaded.nest = nil
      local ok, m = H.task(U.require, "nest")
      assert.is_true(ok)
      check(m)
    end)

    it("is not a task, which waits for the module even when a loop the " ..
       "body runs resumes it", function()
      local m = U.require("nest_loop")
      assert.is_true(m.complete)
      assert.same({}, SEEN)
      SEEN = nil
    end)

    it("is not a coroutine that a task the body started resumes",
       function()
      local m = U.require("nest_gen")
      assert.is_true(m.complete)
      assert.same({ nil, false, dir .. "/nest_gen.lua:7: module 'nest_gen' " ..
                   "is loading in a thread that this one runs within; a " ..
                   "require that cannot yield cannot wait for it" }, SEEN)
      SEEN = nil
    end)

    it("names the cycle through the loads of the body's thread",
       function()
      local m = U.require("nest_a")
      assert.is_false(m.b.ok)
      assert.equals(dir .. "/nest_b.lua:2: circular require: nest_a -> " ..
                    "nest_b -> nest_a", m.b.err)
    end)

    it("meets a cycle, not a hang, when the module stored nothing",
       function()
      local m = U.require("nest_nil")
      assert.is_false(m.ok)
      assert.equals(dir .. "/nest_mid.lua:1: circular require: nest_nil " ..
                    "-> nest_mid -> nest_nil", m.err)
      package.loaded.nest_nil, package.loaded.nest_mid = nil, nil
      local ok, m2 = H.task(U.require, "nest_nil")
      assert.is_true(ok)
      assert.equals(m.err, m2.err)
    end)
  end)

  describe("clean failure", function()
    it("gives every waiter the same error and leaves no trace", function()
      modules {
        fails = NAP .. [[
          RUNS.fails = (RUNS.fails or 0) + 1
          require("fails_dep")
          package.loaded[...] = "half-built"
          nap()
          error(FAILURE)
        ]],
        fails_dep = "RUNS.dep = (RUNS.dep or 0) + 1\nreturn 'dep'",
      }
      _G.FAILURE = setmetatable({}, { __tostring = function() return "F" end })
      _G.require = U.require
      local tasks = {}
      for i = 1, 5 do tasks[i] = U.spawn(U.require, "fails") end
      for i = 1, 5 do
        local ok, err = tasks[i]:wait()
        assert.is_false(ok)
        assert.equals(FAILURE, err)
      end
      assert.equals(1, RUNS.fails)
      assert.is_nil(rawget(package.loaded, "fails"))
      assert.is_nil(U.status("fails"))
      -- the dependency loaded on the way stays loaded
      assert.equals("dep", package.loaded.fails_dep)
      -- the next require loads again
      local again = {}
      _G.FAILURE = again
      local ok, err = U.spawn(U.require, "fails"):wait()
      _G.require = H.stock
      assert.is_false(ok)
      assert.equals(again, err)
      assert.equals(2, RUNS.fails)
      assert.equals(1, RUNS.dep)
      _G.FAILURE = nil
    end)
  end)

  describe("module not found", function()
    it("gives each waiter the message at its own require", function()
      -- the message is stock's, raised where each require is (the
      -- driver's position was given to every waiter)
      local src = "local U = ...\n" ..
                  "return function()\n" ..
                  "  return U.require('nf_nowhere')\n" ..   -- line 3
                  "end, function()\n" ..
                  "  return U.require('nf_nowhere')\n" ..   -- line 5
                  "end"
      local f1, f2 = load(src, "=nf")(U)
      local t1, t2 = U.spawn(f1), U.spawn(f2)
      local ok1, e1 = t1:wait()
      local ok2, e2 = t2:wait()
      assert.is_false(ok1)
      assert.is_false(ok2)
      assert.matches("^nf:3: module 'nf_nowhere' not found:\n", e1)
      assert.matches("^nf:5: module 'nf_nowhere' not found:\n", e2)
      assert.equals(e1:gsub("^nf:3:", ""), (e2:gsub("^nf:5:", "")))
      assert.is_nil(U.status("nf_nowhere"))
    end)
  end)

  describe("cycles", function()
    before_each(function()
      modules {
        cyc_a = "return { b = require('cyc_b') }",
        cyc_b = "return { a = require('cyc_a') }",
        r11_a = "local M = {}; package.loaded[...] = M\n" ..
                "M.b = require('r11_b'); return M",
        r11_b = "return { a = require('r11_a') }",
      }
      _G.require = U.require
    end)
    after_each(function() _G.require = H.stock end)

    it("raises naming the chain, in one coroutine", function()
      local t = U.spawn(U.require, "cyc_a")
      local ok2, err2 = t:wait()
      assert.is_false(ok2)
      assert.equals(dir .. "/cyc_b.lua:1: circular require: cyc_a -> " ..
                    "cyc_b -> cyc_a", err2)
      assert.is_nil(U.status("cyc_a"))
      assert.is_nil(U.status("cyc_b"))
    end)

    it("raises naming the chain on the main thread", function()
      local ok, err = pcall(U.require, "cyc_a")
      assert.is_false(ok)
      assert.equals(dir .. "/cyc_b.lua:1: circular require: cyc_a -> " ..
                    "cyc_b -> cyc_a", err)
    end)

    it("serves rule 11 within one chain", function()
      local ok, m = H.task(U.require, "r11_a")
      assert.is_true(ok)
      assert.equals(m, m.b.a)
    end)

    it("ends a cycle across two coroutines in an error, never a hang",
       function()
      -- fcyc_b's file is a FIFO: its job in tb waits until fcyc_a's
      -- body, in ta, waits on fcyc_b; then fcyc_b's body, in tb, asks
      -- for fcyc_a and finds the cycle
      modules {
        fcyc_a = "RUNS.fcyc_a = true\nreturn { b = require('fcyc_b') }",
      }
      local fifo = dir .. "/fcyc_b.lua"
      assert(os.execute("mkfifo '" .. fifo .. "'"))
      names[#names + 1] = "fcyc_b"
      local ta = U.spawn(U.require, "fcyc_a")
      local tb = U.spawn(U.require, "fcyc_b")
      while not RUNS.fcyc_a do U.run("once") end
      local f = assert(io.open(fifo, "w"))
      f:write("return { a = require('fcyc_a') }")
      f:close()
      local err = fifo .. ":1: circular require: fcyc_a -> fcyc_b -> fcyc_a"
      -- tb raised it; ta, waiting on fcyc_b, gets the same error
      assert.same({ false, err }, { tb:wait() })
      assert.same({ false, err }, { ta:wait() })
      assert.is_nil(U.status("fcyc_a"))
      assert.is_nil(U.status("fcyc_b"))
    end)

    it("serves rule 11 across two coroutines", function()
      local ta = U.spawn(U.require, "r11_a")
      local tb = U.spawn(U.require, "r11_b")
      local oka, a = ta:wait()
      local okb, b = tb:wait()
      assert.is_true(oka)
      assert.is_true(okb)
      assert.equals(a, b.a)
      assert.equals(a, package.loaded.r11_a)
    end)

    it("serves rule 11 across coroutines to a waiter that came first",
       function()
      -- late_b's body waits on late_a before late_a stores its value;
      -- then late_a's body asks for late_b: late_b's waiter is served
      modules {
        late_a = NAP .. [[
          nap()
          local M = {}
          package.loaded[...] = M
          M.b = require("late_b")
          return M
        ]],
        late_b = "return { a = require('late_a') }",
      }
      local ta = U.spawn(U.require, "late_a")
      local tb = U.spawn(U.require, "late_b")
      local oka, a = ta:wait()
      local okb, b = tb:wait()
      assert.is_true(oka)
      assert.is_true(okb)
      assert.equals(a, b.a)
      assert.equals(b, a.b)
    end)
  end)

  describe("synchronous meets asynchronous", function()
    it("takes over a load whose job is in flight", function()
      modules { shared = "RUNS.shared = (RUNS.shared or 0) + 1\n" ..
                         "return { who = coroutine.running() }" }
      local t = U.spawn(U.require, "shared")
      assert.is_false(t:done())
      local m, where = U.require("shared")  -- main thread: synchronous
      assert.is_true(select(2, coroutine.running()))
      assert.equals(dir .. "/shared.lua", where)
      local ok, tm, twhere = t:wait()
      assert.is_true(ok)
      assert.equals(m, tm)
      assert.equals(where, twhere)
      assert.equals(1, RUNS.shared)
      -- the body ran on the main thread, which took the load over
      local main, ismain = coroutine.running()
      assert.is_true(ismain)
      assert.equals(main, m.who)
      assert.not_equals(t.co, m.who)
    end)

    it("raises when the body is suspended in a coroutine", function()
      -- a long nap: with 2 ms, a slow run (valgrind) may see the timer
      -- fire in the very run("once") that started the body, which then
      -- ends before the synchronous require below
      modules { napping = NAP:gsub("t:start%(2,", "t:start(200,") .. [[
        RUNS.napping = (RUNS.napping or 0) + 1
        nap()
        return 'n'
      ]] }
      local t = U.spawn(U.require, "napping")
      -- run until the body has started (it naps on a timer)
      while RUNS.napping == nil do U.run("once") end
      local ok, err = pcall(U.require, "napping")
      assert.is_false(ok)
      assert.equals("module 'napping' is loading in a suspended " ..
                    "coroutine; a require that cannot yield cannot " ..
                    "wait for it", err)
      assert.same({ true, "n", dir .. "/napping.lua" }, { t:wait() })
      assert.equals(1, RUNS.napping)
    end)
  end)

  describe("status", function()
    it("is nil, loading, loaded", function()
      modules { st = "return 1" }
      assert.is_nil(U.status("st"))
      local t = U.spawn(U.require, "st")
      assert.equals("loading", U.status("st"))
      t:wait()
      assert.equals("loaded", U.status("st"))
      assert.has_error(function() U.status() end,
        "bad argument #1 to 'status' (string expected, got no value)")
    end)
  end)
end)

-- busted's insulation saves and restores package.loaded around a block
describe("insulation", function()
  local scratch
  setup(function()
    scratch = H.scratch()
    H.write(scratch.dir .. "/insulated.lua", "return 'i'")
  end)
  teardown(function() scratch.restore() end)

  insulate("inside", function()
    it("loads a module", function()
      assert.equals("i", select(2, H.task(U.require, "insulated")))
      assert.equals("loaded", U.status("insulated"))
    end)
  end)

  it("is gone afterwards, and loads again", function()
    assert.is_nil(package.loaded.insulated)
    assert.is_nil(U.status("insulated"))
    assert.equals("i", select(2, H.task(U.require, "insulated")))
    package.loaded.insulated = nil
    H.clean()
  end)
end)
