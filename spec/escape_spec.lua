-- Errors that escape a coroutine (issue 9, "Every failure path").
--
-- A plain coroutine (not a task), driven by coroutine.resume, drives a
-- load through uvrequire.require and dies while driving it: a preload
-- loader raises, a user searcher raises, a module body raises.  No pcall
-- inside the coroutine: the error leaves it, and nobody ever closes it.
-- Afterwards the load must be gone (status nil), a second require from
-- the main thread must behave as stock's does (load again, or raise the
-- same error again), and a task that waited on the load must get the
-- error instead of hanging.  A coroutine dropped mid-load (never resumed,
-- never closed) and collected must not block later requires either.
local H = require "helper"
local K = require "proc_helper"
local U = H.uv

-- drive() and escape(), as source: loaded here and sent to children.
local CHILD_LIB = [==[
local U = require("uvrequire")
local assert = require "luassert"

-- Resume `co` (with the arguments on the first call) until it yields
-- something other than uvrequire's PENDING, or dies.  No loop runs: a
-- waiting require finds its job done when resumed (the executor thread
-- finishes on its own), so this ends without timing assumptions.
function drive(co, ...)
  local r = table.pack(coroutine.resume(co, ...))
  while r[1] and r[2] == U.PENDING and coroutine.status(co) == "suspended" do
    r = table.pack(coroutine.resume(co))
  end
  return r
end

-- Under both requires: a coroutine drives `name` and dies; then the
-- main thread requires it again.  Returns what happened (stock's,
-- uvrequire's), for assert.same.
function escape(name)
  return H.both({ name }, function(req)
    local co = coroutine.create(function() return req(name) end)
    local first = drive(co)
    return {
      first = { ok = first[1], err = first[2] },
      dead = coroutine.status(co),
      status = U.status(name),
      again = H.outcome(req, name),
      after = U.status(name),
    }
  end)
end
]==]
local env = setmetatable({ H = H }, { __index = _G })
assert(load(CHILD_LIB, "=CHILD_LIB", "t", env))()
local drive, escape = env.drive, env.escape

local n = 0
local function fresh(prefix)
  n = n + 1
  return ("%s_%d"):format(prefix, n)
end

describe("an error escaping a coroutine that drives a load", function()
  local scratch, dir, searchers

  before_each(function()
    scratch = H.scratch()
    dir = scratch.dir
    searchers = {}
    for i, s in ipairs(package.searchers) do searchers[i] = s end
    _G.ESC_RUNS = {}
  end)

  after_each(function()
    for i = #package.searchers, 1, -1 do package.searchers[i] = nil end
    for i, s in ipairs(searchers) do package.searchers[i] = s end
    _G.ESC_RUNS = nil
    scratch.restore()
  end)

  describe("with nobody else waiting", function()
    it("a preload loader raises", function()
      local name = fresh("esc_pre")
      package.preload[name] = function() error("preload failed", 0) end
      local s, u = escape(name)
      assert.same({
        first = { ok = false, err = "preload failed" },
        dead = "dead",
        again = { ok = false, n = 1, "preload failed" },
      }, s)
      assert.same(s, u)
      package.preload[name] = nil
      H.clean()
    end)

    it("a preload loader raises once, then loads", function()
      local name = fresh("esc_pre1")
      local calls = 0
      package.preload[name] = function()
        calls = calls + 1
        if calls % 2 == 1 then error("first call fails", 0) end
        return "second call works"
      end
      local s, u = escape(name)
      assert.same({
        first = { ok = false, err = "first call fails" },
        dead = "dead",
        again = { ok = true, n = 2, "second call works", ":preload:" },
        after = "loaded",
      }, s)
      assert.same(s, u)
      assert.equals(4, calls)
      package.preload[name] = nil
      H.clean()
    end)

    -- These two crash today (SIGSEGV in the second require, on the main
    -- thread): they run in a child lua5.4.
    it("a user searcher raises", function()
      K.check(K.prelude .. CHILD_LIB .. [[
        local name = "esc_srch"
        table.insert(package.searchers, 2, function(m)
          if m == name then error("searcher failed for " .. m, 0) end
          return "\n\tnot mine"
        end)
        local s, u = escape(name)
        assert.same({
          first = { ok = false, err = "searcher failed for " .. name },
          dead = "dead",
          again = { ok = false, n = 1, "searcher failed for " .. name },
        }, s)
        assert.same(s, u)
        H.clean()
        print("ok")
      ]])
    end)

    it("a user searcher after the file searchers raises", function()
      -- the file search is a job on the executor first: the coroutine
      -- waits (PENDING), then goes on to the raising searcher
      K.check(K.prelude .. CHILD_LIB .. [[
        local name = "esc_late"
        package.path = "/nonexistent/?.lua"
        package.searchers[#package.searchers + 1] = function(m)
          error("late searcher failed for " .. m, 0)
        end
        local s, u = escape(name)
        assert.same({
          first = { ok = false, err = "late searcher failed for " .. name },
          dead = "dead",
          again = { ok = false, n = 1, "late searcher failed for " .. name },
        }, s)
        assert.same(s, u)
        H.clean()
        print("ok")
      ]])
    end)

    it("a module body raises", function()
      local name = fresh("esc_body")
      H.write(dir .. "/" .. name .. ".lua",
              "ESC_RUNS[...] = (ESC_RUNS[...] or 0) + 1\n" ..
              "error('body failed', 0)")
      local s, u = escape(name)
      assert.same({
        first = { ok = false, err = "body failed" },
        dead = "dead",
        again = { ok = false, n = 1, "body failed" },
      }, s)
      assert.same(s, u)
      assert.equals(4, ESC_RUNS[name])  -- twice under each require
      H.clean()
    end)

    it("a module body raises once, then loads", function()
      local name = fresh("esc_body1")
      H.write(dir .. "/" .. name .. ".lua",
              "ESC_RUNS[...] = (ESC_RUNS[...] or 0) + 1\n" ..
              "if ESC_RUNS[...] % 2 == 1 then error('first run fails', 0) end\n" ..
              "return 'second run works'")
      local s, u = escape(name)
      assert.same({
        first = { ok = false, err = "first run fails" },
        dead = "dead",
        again = { ok = true, n = 2, "second run works", dir .. "/" .. name .. ".lua" },
        after = "loaded",
      }, s)
      assert.same(s, u)
      H.clean()
    end)

    it("a module body raises after storing a value for itself", function()
      local name = fresh("esc_half")
      H.write(dir .. "/" .. name .. ".lua",
              "package.loaded[...] = 'half-built'\nerror('half failed', 0)")
      local s, u = escape(name)
      assert.same({
        first = { ok = false, err = "half failed" },
        dead = "dead",
        -- stock keeps what the body stored; uvrequire drops it: compare
        -- only that the coroutine died the same way, and check uvrequire
        -- on its own below
        status = "loaded",
        again = { ok = true, n = 1, "half-built" },
        after = "loaded",
      }, s)
      assert.same({ ok = false, err = "half failed" }, u.first)
      assert.equals("dead", u.dead)
      assert.is_nil(u.status)
      assert.same({ ok = false, n = 1, "half failed" }, u.again)
      assert.is_nil(u.after)
      H.clean()
    end)

    it("a nested require's body raises: both loads are gone", function()
      local outer, inner = fresh("esc_outer"), fresh("esc_inner")
      H.files(dir, {
        [outer .. ".lua"] = ("return { inner = ESC_REQ(%q) }"):format(inner),
        [inner .. ".lua"] = "error('inner failed', 0)",
      })
      local s, u = H.both({ outer, inner }, function(req)
        _G.ESC_REQ = req
        local co = coroutine.create(function() return req(outer) end)
        local first = drive(co)
        return {
          first = { ok = first[1], err = first[2] },
          status = { U.status(outer), U.status(inner) },
          again = { H.outcome(req, outer), H.outcome(req, inner) },
        }
      end)
      _G.ESC_REQ = nil
      assert.same({
        first = { ok = false, err = "inner failed" },
        status = {},
        again = { { ok = false, n = 1, "inner failed" },
                  { ok = false, n = 1, "inner failed" } },
      }, s)
      assert.same(s, u)
      H.clean()
    end)
  end)

  -- Only in wait = "any" mode does a plain coroutine wait by yielding
  -- (and so may stop in the middle of a load); by default it loads
  -- synchronously, as stock.
  local core = require "uvrequire.core"
  local function anymode()
    before_each(function() core.setmode("any") end)
    after_each(function() core.setmode("tasks") end)
  end

  describe("with a task waiting on the load (wait = \"any\")", function()
    anymode()
    -- the coroutine drives `name` until its loader yields a value of its
    -- own ("mine"); a task then waits on the load; the coroutine is
    -- resumed and its loader raises.  The task must end with that error.
    local function waited(name, want)
      local co = coroutine.create(function() return U.require(name) end)
      local first = drive(co)
      assert.same({ true, "mine", n = 2 }, first)
      assert.equals("loading", U.status(name))
      local t = U.spawn(U.require, name)
      assert.is_false(t:done())
      local r = table.pack(coroutine.resume(co))
      assert.same({ false, want, n = 2 }, r)
      assert.equals("dead", coroutine.status(co))
      pcall(U.run)  -- raises the task's error: claimed below
      assert.is_true(t:done(), "the waiting task was never woken")
      assert.same({ false, want }, { t:result() })
      assert.is_nil(U.status(name))
    end

    it("a preload loader yields, then raises", function()
      local name = fresh("esc_wpre")
      _G.ESC_YIELD = true
      package.preload[name] = function()
        -- (_G: busted gives this file an environment of its own)
        if _G.ESC_YIELD then _G.ESC_YIELD = nil; coroutine.yield("mine") end
        error("preload failed late", 0)
      end
      waited(name, "preload failed late")
      assert.same({ ok = false, n = 1, "preload failed late" },
                  H.outcome(U.require, name))
      package.preload[name] = nil
      H.clean()
    end)

    it("a module body yields, then raises", function()
      local name = fresh("esc_wbody")
      H.write(dir .. "/" .. name .. ".lua",
              "ESC_RUNS[...] = (ESC_RUNS[...] or 0) + 1\n" ..
              "coroutine.yield('mine')\nerror('body failed late', 0)")
      waited(name, "body failed late")
      assert.equals(1, ESC_RUNS[name])  -- the waiter did not run it again
      H.clean()
    end)

    it("a user searcher raises after the task began waiting", function()
      -- Lua searcher (a job: the coroutine waits), then a user searcher
      -- that raises: the task waits from the first resume on
      local name = fresh("esc_wsrch")
      package.searchers[#package.searchers + 1] = function(m)
        error("searcher failed late for " .. m, 0)
      end
      local co = coroutine.create(function() return U.require(name) end)
      assert.same({ true, U.PENDING }, { coroutine.resume(co) })
      local t = U.spawn(U.require, name)
      assert.is_false(t:done())
      local r = drive(co)
      assert.same({ false, "searcher failed late for " .. name, n = 2 }, r)
      pcall(U.run)  -- raises the task's error: claimed below
      assert.is_true(t:done(), "the waiting task was never woken")
      assert.same({ false, "searcher failed late for " .. name },
                  { t:result() })
      assert.is_nil(U.status(name))
      H.clean()
    end)

    it("two tasks wait; the first to finish sees the error too", function()
      local name = fresh("esc_wtwo")
      package.preload[name] = function()
        coroutine.yield("mine")
        error("preload failed for two", 0)
      end
      local co = coroutine.create(function() return U.require(name) end)
      assert.same({ true, "mine", n = 2 }, drive(co))
      local t1 = U.spawn(U.require, name)
      local t2 = U.spawn(U.require, name)
      assert.same({ false, "preload failed for two" },
                  { coroutine.resume(co) })
      pcall(U.run)  -- raises the task's error: claimed below
      assert.is_true(t1:done() and t2:done(), "a waiting task was never woken")
      assert.same({ false, "preload failed for two" }, { t1:result() })
      assert.same({ false, "preload failed for two" }, { t2:result() })
      package.preload[name] = nil
      H.clean()
    end)
  end)

  describe("a coroutine dropped mid-load (never resumed, never closed; " ..
           "wait = \"any\")", function()
    anymode()
    -- (stock `require` never yields, so it has no such case: its
    -- coroutine finishes the load in its first resume.)  After the
    -- coroutine is collected, a require from the main thread loads the
    -- module afresh (value and file path), and so does one from a task.
    -- `pending`: drop it at its first PENDING; else drive it until its
    -- body yields "mine"
    local function dropped(name, src, pending, between)
      local file = dir .. "/" .. name .. ".lua"
      H.write(file, src)
      local function drop()
        _G.ESC_YIELD = true
        local co = coroutine.create(function() return U.require(name) end)
        local r
        if pending then r = table.pack(coroutine.resume(co))
        else r = drive(co) end
        assert(r[1], tostring(r[2]))
        assert.equals(pending and U.PENDING or "mine", r[2])
        assert.equals("suspended", coroutine.status(co))
      end
      drop()
      collectgarbage()
      collectgarbage()
      assert.same({ ok = true, n = 2, "value", file },
                  H.outcome(U.require, name))
      assert.equals("loaded", U.status(name))
      package.loaded[name] = nil
      if between then between() end
      -- and in a task, after one more dropped coroutine
      drop()
      collectgarbage()
      collectgarbage()
      assert.same({ true, "value", file }, { H.task(U.require, name) })
      assert.equals("loaded", U.status(name))
      package.loaded[name] = nil
      _G.ESC_YIELD = nil
      H.clean()
    end

    it("while its search waits on the executor (PENDING)", function()
      dropped(fresh("esc_dpend"), "return 'value'", true)
    end)

    it("while its body yields a value of its own", function()
      dropped(fresh("esc_dbody"),
              "if ESC_YIELD then ESC_YIELD = nil; coroutine.yield('mine') end\n" ..
              "return 'value'")
    end)

    it("while its body waits in a nested require whose body yields", function()
      local name, inner = fresh("esc_dnest"), fresh("esc_dinner")
      H.write(dir .. "/" .. inner .. ".lua",
              "if ESC_YIELD then ESC_YIELD = nil; coroutine.yield('mine') end\n" ..
              "return 'inner'")
      _G.ESC_REQ = U.require
      dropped(name, ("assert(ESC_REQ(%q) == 'inner')\nreturn 'value'")
                    :format(inner), false,
              function() package.loaded[inner] = nil end)
      _G.ESC_REQ = nil
      package.loaded[inner] = nil
    end)

    it("while a preload loader yields", function()
      local name = fresh("esc_dpre")
      package.preload[name] = function()
        -- (_G: busted gives this file an environment of its own)
        if _G.ESC_YIELD then _G.ESC_YIELD = nil; coroutine.yield("mine") end
        return "pre-value"
      end
      _G.ESC_YIELD = true
      local function drop()  -- (a function: no register keeps 'co')
        local co = coroutine.create(function() return U.require(name) end)
        assert.same({ true, "mine" }, { coroutine.resume(co) })
      end
      drop()
      collectgarbage()
      collectgarbage()
      assert.same({ ok = true, n = 2, "pre-value", ":preload:" },
                  H.outcome(U.require, name))
      package.loaded[name] = nil
      package.preload[name] = nil
      H.clean()
    end)
  end)
end)

describe("a task driving a load, dropped and collected", function()
  local C = require "child_helper"

  it("ends the load for its waiters even after task:wait() looked at it",
     function()
    -- task:wait() (its ring check) was the first to see the driver gone:
    -- the load then stayed "loading" for good
    local dir = H.tmpdir()
    H.write(dir .. "/esc_forever.lua",
            "if not SECOND then coroutine.yield() end\nreturn 'value'")
    local r = C.run(dir, [[
local ur = require "uvrequire"
local A = ur.spawn(function() return require "esc_forever" end)
local WK = setmetatable({ A.co }, { __mode = "v" })
A = nil
local B = ur.spawn(function() return require "esc_forever" end)
ur.run()  -- the body runs in A, and yields for good
for _ = 1, 3 do collectgarbage() end
print(WK[1] == nil, select(2, pcall(B.wait, B)))
SECOND = true
print(require "esc_forever", ur.status("esc_forever"))
print(B:wait())
]], { C.install() }, { env = "UVREQUIRE_CACHE=off", timeout = 60 })
    H.rmtree(dir)
    assert.equals("", r.err)
    assert.equals("true\ttask cannot finish: the loop has nothing left " ..
                  "to run\nvalue\tloaded\nfalse\tmodule 'esc_forever' was " ..
                  "loading in a coroutine that was collected\n", r.out)
  end)
end)
