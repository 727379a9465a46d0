-- Synchronous meets a body in flight (issue 8, item 2): a require that
-- cannot yield (main thread, luv callback), asking for a module whose
-- body runs in a suspended task that waits only on imports, completes
-- those imports and the body: the body runs once, and everybody gets the
-- identical value.  Only a body that waits on something else makes it
-- raise "module 'x' is loading in a suspended coroutine; ...".
local H = require "helper"
local U, uv = H.uv, H.luv

local function suspended_msg(name)
  return ("module '%s' is loading in a suspended coroutine; a require " ..
          "that cannot yield cannot wait for it"):format(name)
end

describe("a synchronous require of a module loading in a task", function()
  local scratch, dir, names

  local function modules(t)
    for name, src in pairs(t) do
      H.write(dir .. "/" .. name .. ".lua", src)
      names[#names + 1] = name
    end
  end

  -- a module whose file is a FIFO: its import stays on the executor
  -- until `feed(src)` (call it only once the executor is reading: here,
  -- once a body has asked for it)
  local function fifo_module(name)
    local path = dir .. "/" .. name .. ".lua"
    assert(os.execute("mkfifo '" .. path .. "'"))
    names[#names + 1] = name
    return function(src)
      local f = assert(io.open(path, "w"))
      f:write(src)
      f:close()
    end
  end

  -- run the loop one turn at a time until `cond()` holds
  local function until_(cond)
    while not cond() do U.run("once") end
  end

  before_each(function()
    scratch = H.scratch()
    dir = scratch.dir
    names = {}
    _G.RUNS = {}
    _G.require = U.require  -- the module bodies' own requires
  end)

  after_each(function()
    _G.require = H.stock
    scratch.restore()
    for _, n in ipairs(names) do
      package.loaded[n] = nil
      package.preload[n] = nil
    end
    _G.RUNS, _G.RELEASE, _G.OTHER = nil, nil, nil
  end)

  it("completes a body that waits on a nested import (on the executor)",
     function()
    modules { ha = [[
      RUNS.ha = (RUNS.ha or 0) + 1
      local b = require "hb"
      RUNS.ha_end = true
      return { b = b }
    ]] }
    local feed = fifo_module("hb")
    local t = U.spawn(U.require, "ha")
    until_(function() return RUNS.ha end)  -- the body waits on hb
    local waiter = U.spawn(U.require, "ha")
    -- hb's import can finish now, but no loop turn delivers it
    feed("RUNS.hb = (RUNS.hb or 0) + 1; return { 'b' }")
    assert.is_nil(RUNS.ha_end)
    assert.is_false(t:done())
    local m, where = U.require("ha")       -- main thread: synchronous
    assert.equals(1, RUNS.ha)
    assert.equals(1, RUNS.hb)
    assert.is_true(RUNS.ha_end)
    assert.same({ b = { "b" } }, m)
    assert.equals(dir .. "/ha.lua", where)
    assert.equals("loaded", U.status("ha"))
    local ok, tm, twhere = t:wait()
    assert.is_true(ok)
    assert.is_true(rawequal(m, tm))
    assert.equals(where, twhere)
    local wok, wm = waiter:wait()
    assert.is_true(wok)
    assert.is_true(rawequal(m, wm))
    assert.is_true(rawequal(m, package.loaded.ha))
    assert.is_true(rawequal(m.b, package.loaded.hb))
    assert.equals(1, RUNS.ha)
  end)

  it("completes a preloaded body suspended right after spawn", function()
    local feed = fifo_module("hpb")
    names[#names + 1] = "hp"
    package.preload.hp = function(name, data)
      RUNS.hp = (RUNS.hp or 0) + 1
      local b = require "hpb"
      return { name = name, data = data, b = b }
    end
    local t = U.spawn(U.require, "hp")
    until_(function() return RUNS.hp end)
    feed("RUNS.hpb = (RUNS.hpb or 0) + 1; return 'hpb'")
    assert.is_false(t:done())
    local m, where = U.require("hp")
    assert.same({ name = "hp", data = ":preload:", b = "hpb" }, m)
    assert.equals(":preload:", where)
    assert.equals(1, RUNS.hp)
    assert.equals(1, RUNS.hpb)
    local ok, tm, twhere = t:wait()
    assert.is_true(ok)
    assert.is_true(rawequal(m, tm))
    assert.equals(":preload:", twhere)
    assert.equals(1, RUNS.hp)
  end)

  it("completes a chain of bodies waiting on imports (a -> b -> c)",
     function()
    modules {
      ca = "RUNS.ca = (RUNS.ca or 0) + 1\n" ..
           "local b = require 'cb'\nreturn { b = b }",
      cb = "RUNS.cb = (RUNS.cb or 0) + 1\n" ..
           "local c = require 'cc'\nreturn { c = c }",
    }
    local feed = fifo_module("cc")
    local t = U.spawn(U.require, "ca")
    until_(function() return RUNS.cb end)  -- ca and cb both wait, on cc
    feed("RUNS.cc = (RUNS.cc or 0) + 1\nreturn { 'c' }")
    assert.is_nil(RUNS.cc)
    local m, where = U.require("ca")
    assert.equals(dir .. "/ca.lua", where)
    assert.same({ b = { c = { "c" } } }, m)
    assert.same({ ca = 1, cb = 1, cc = 1 }, RUNS)
    local ok, tm = t:wait()
    assert.is_true(ok)
    assert.is_true(rawequal(m, tm))
    assert.is_true(rawequal(m.b, package.loaded.cb))
    assert.is_true(rawequal(m.b.c, package.loaded.cc))
    assert.same({ ca = 1, cb = 1, cc = 1 }, RUNS)
  end)

  it("completes it from a luv timer callback", function()
    modules {
      ta = "RUNS.ta = (RUNS.ta or 0) + 1\n" ..
           "local b = require 'tb'\nreturn { b = b }",
      tb = "return 'tb'",
    }
    local t = U.spawn(U.require, "ta")
    until_(function() return RUNS.ta end)
    local got
    local timer = uv.new_timer()
    timer:start(0, 0, function()
      timer:close()
      got = table.pack(pcall(U.require, "ta"))
    end)
    U.run()
    assert.is_true(got[1])
    assert.same({ b = "tb" }, got[2])
    local ok, tm = t:wait()
    assert.is_true(ok)
    assert.is_true(rawequal(got[2], tm))
    assert.equals(1, RUNS.ta)
  end)

  describe("raises when the body waits on something else", function()
    local HOLD = [[
      RUNS[...] = (RUNS[...] or 0) + 1
      local b = require "hold_dep"
      local co = coroutine.running()
      local t = require("luv").new_timer()
      -- the timer starts only when the spec says so
      RELEASE = function()
        t:start(0, 0, function()
          t:close()
          assert(coroutine.resume(co))
        end)
      end
      coroutine.yield()
      return { held = true, b = b }
    ]]

    it("a luv timer: from the main thread", function()
      modules { hold = HOLD, hold_dep = "return 'dep'" }
      local t = U.spawn(U.require, "hold")
      until_(function() return RELEASE end)
      local ok, err = pcall(U.require, "hold")
      assert.is_false(ok)
      assert.equals(suspended_msg("hold"), err)
      assert.equals("loading", U.status("hold"))
      RELEASE()
      assert.same({ true, { held = true, b = "dep" }, dir .. "/hold.lua" },
                  { t:wait() })
      assert.equals(1, RUNS.hold)
    end)

    it("a luv timer: from a luv timer callback", function()
      modules { hold = HOLD, hold_dep = "return 'dep'" }
      local t = U.spawn(U.require, "hold")
      until_(function() return RELEASE end)
      local got
      local timer = uv.new_timer()
      timer:start(0, 0, function()
        timer:close()
        got = { pcall(U.require, "hold") }
      end)
      U.run()
      assert.same({ false, suspended_msg("hold") }, got)
      assert.is_false(t:done())
      RELEASE()
      assert.same({ true, { held = true, b = "dep" }, dir .. "/hold.lua" },
                  { t:wait() })
      assert.equals(1, RUNS.hold)
    end)

    it("task:wait() on another task", function()
      modules { hw = [[
        RUNS.hw = (RUNS.hw or 0) + 1
        local ok, v = OTHER:wait()
        return { other = v }
      ]] }
      -- OTHER waits for the spec to resume it by hand
      _G.OTHER = U.spawn(function()
        coroutine.yield("not an import")
        return "other"
      end)
      local t = U.spawn(U.require, "hw")
      until_(function() return RUNS.hw end)
      local ok, err = pcall(U.require, "hw")
      assert.is_false(ok)
      assert.equals(suspended_msg("hw"), err)
      assert(coroutine.resume(OTHER.co))
      assert.is_true(OTHER:done())
      assert.same({ true, { other = "other" }, dir .. "/hw.lua" },
                  { t:wait() })
      assert.equals(1, RUNS.hw)
    end)
  end)
end)
