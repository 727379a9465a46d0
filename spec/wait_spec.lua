-- Drop-in waiting (issue 8): with install(), require waits by yielding
-- only in a uvrequire task; everywhere else it is stock Lua's require.
-- install{ wait = "any" } keeps the old rule.  Scenarios that need a
-- global install() run in a child lua5.4 (spec/child_helper.lua), and
-- compare its whole output with the same program under stock require.
local H = require "helper"
local K = require "child_helper"
local U = H.uv

-- Call `f(...)` from a Lua function (not a tail call), protected.
-- Returns ok, the error, and the "src:line: " of that call.
local function raised(f, ...)
  local where
  local ok, err = pcall(function(...)
    local info = debug.getinfo(1, "Sl")
    where = ("%s:%d: "):format(info.short_src, info.currentline + 2)
    f(...)
  end, ...)
  return ok, err, where
end

-- A module body that yields: stock require cannot let it.
local YIELDING_BODY = [[
print("yb body")
coroutine.yield("from body")
return "yb"
]]

describe("install options", function()
  after_each(function()
    U.uninstall()
    H.clean()
  end)

  it("rejects an argument that is not a table", function()
    local ok, err, where = raised(U.install, 5)
    assert.is_false(ok)
    assert.equals(where .. "bad argument #1 to 'install' " ..
                  "(table expected, got number)", err)
    assert.equals(H.stock, rawget(_G, "require"))
  end)

  it("rejects an unknown value for 'wait'", function()
    local ok, err, where = raised(U.install, { wait = "x" })
    assert.is_false(ok)
    assert.equals(where .. "bad argument #1 to 'install' " ..
                  "(invalid value 'x' for option 'wait')", err)
    assert.equals(H.stock, rawget(_G, "require"))
  end)

  it("rejects an unknown option", function()
    local ok, err, where = raised(U.install, { foo = 1 })
    assert.is_false(ok)
    assert.equals(where .. "bad argument #1 to 'install' " ..
                  "(unknown option 'foo')", err)
    assert.equals(H.stock, rawget(_G, "require"))
  end)

  it("accepts no options, {}, wait = 'tasks' and wait = 'any'", function()
    local s = H.scratch()
    finally(s.restore)
    local r = K.run(s.dir, [[
      local U = require "uvrequire"
      print(U.install() == U, require == U.require)
      print(U.install{} == U, require == U.require)
      print(U.install{ wait = "tasks" } == U, require == U.require)
      print(U.install{ wait = "any" } == U, require == U.require)
      print(U.uninstall() == U, require ~= U.require)
    ]])
    assert.equals(("true\ttrue\n"):rep(5), r.out)
    assert.equals("", r.err)
    assert.same({ true, "exit", 0 }, { r.ok, r.how, r.code })
  end)
end)

describe("install(): require outside a task is stock require", function()
  local scratch, dir

  before_each(function()
    scratch = H.scratch()
    dir = scratch.dir
  end)

  after_each(function() scratch.restore() end)

  -- the program's output with stock require, then with install()
  -- (`pre`: chunks run first in both, such as loading luv)
  local function same_as_stock(src, pre)
    local s, u = K.both(dir, src, nil, pre)
    assert.same({ true, "exit", 0 }, { s.ok, s.how, s.code })
    assert.equals("", s.err)
    assert.equals(s.out, u.out)
    assert.equals(s.err, u.err)
    assert.same({ s.ok, s.how, s.code }, { u.ok, u.how, u.code })
    return s.out
  end

  it("a generator (coroutine.wrap) consumed by a for loop", function()
    for i = 1, 3 do
      H.write(("%s/gen%d.lua"):format(dir, i),
              ("print('gen%d body'); return 'gen%d'"):format(i, i))
    end
    local src = [[
      local gen = coroutine.wrap(function()
        for i = 1, 3 do
          local m, where = require("gen" .. i)
          coroutine.yield(m, where)
        end
        coroutine.yield("last", coroutine.isyieldable())
      end)
      for m, where in gen do print(m, where) end
      print("done")
    ]]
    local want = ("gen1 body\ngen1\t%s/gen1.lua\n" ..
                  "gen2 body\ngen2\t%s/gen2.lua\n" ..
                  "gen3 body\ngen3\t%s/gen3.lua\n" ..
                  "last\ttrue\ndone\n"):format(dir, dir, dir)
    assert.equals(want, same_as_stock(src))
    assert.equals(want, same_as_stock(src, { "require 'luv'" }))
  end)

  it("a coroutine driven by coroutine.resume", function()
    H.write(dir .. "/res1.lua", "print('res1 body'); return { 'res1' }")
    local src = [[
      local co = coroutine.create(function(name)
        local m, where = require(name)
        local again = require(name)
        return m[1], where, rawequal(m, again), coroutine.isyieldable()
      end)
      print(coroutine.resume(co, "res1"))
      print(coroutine.status(co))
      print(coroutine.resume(co))
    ]]
    assert.equals(("res1 body\ntrue\tres1\t%s/res1.lua\ttrue\ttrue\n" ..
                   "dead\nfalse\tcannot resume dead coroutine\n")
                  :format(dir),
                  same_as_stock(src))
  end)

  it("a module body that yields raises stock's error", function()
    H.write(dir .. "/yb.lua", YIELDING_BODY)
    local src = [[
      local co = coroutine.create(function() return pcall(require, "yb") end)
      print(coroutine.resume(co))
      print(coroutine.status(co), package.loaded.yb)
      print(coroutine.wrap(function() return pcall(require, "yb") end)())
      print(pcall(coroutine.wrap(function() return require "yb" end)))
      print(package.loaded.yb)
    ]]
    local err = "attempt to yield across a C-call boundary"
    assert.equals(("yb body\ntrue\tfalse\t%s\ndead\tnil\n" ..
                   "yb body\nfalse\t%s\nyb body\nfalse\t%s\nnil\n")
                  :format(err, err, err),
                  same_as_stock(src))
  end)

  it("a coroutine created inside a task is not the task", function()
    H.write(dir .. "/inner1.lua", "print('inner1 body'); return 'inner1'")
    H.write(dir .. "/inner2.lua", "print('inner2 body'); return 'inner2'")
    H.write(dir .. "/yb.lua", YIELDING_BODY)
    -- the same program under stock require: uvrequire is loaded (for
    -- spawn) but not installed, and nothing in the task waits
    local src = [[
      local U = require "uvrequire"
      local t = U.spawn(function()
        local r = table.pack(coroutine.wrap(function()
          return require "inner1"
        end)())
        print("wrap gave", r.n, r[1], r[2])
        local co = coroutine.create(function() return require "inner2" end)
        print("resume gave", coroutine.resume(co))
        print(coroutine.status(co))
        print(pcall(coroutine.wrap(function() return require "yb" end)))
        return "task done"
      end)
      print("spawned", t:done())
      U.run()
      print(t:result())
    ]]
    assert.equals(("inner1 body\nwrap gave\t2\tinner1\t%s/inner1.lua\n" ..
                   "inner2 body\nresume gave\ttrue\tinner2\t%s/inner2.lua\n" ..
                   "dead\nyb body\n" ..
                   "false\tattempt to yield across a C-call boundary\n" ..
                   "spawned\ttrue\ntrue\ttask done\n"):format(dir, dir),
                  same_as_stock(src))
  end)

  it("a luv callback, and a coroutine started in one", function()
    H.write(dir .. "/cbm.lua", "print('cbm body'); return 'cbm'")
    H.write(dir .. "/cbm2.lua", "print('cbm2 body'); return 'cbm2'")
    H.write(dir .. "/yb.lua", YIELDING_BODY)
    local src = [[
      local uv = require "luv"
      local timer = uv.new_timer()
      timer:start(0, 0, function()
        timer:close()
        print("cb", require "cbm")
        coroutine.wrap(function() print("wrap in cb", require "cbm2") end)()
        print("after wrap")
        local co = coroutine.create(function() return pcall(require, "yb") end)
        print(coroutine.resume(co))
      end)
      print("run", uv.run())
      print("end", package.loaded.cbm, package.loaded.cbm2)
    ]]
    local want = ("cbm body\ncb\tcbm\t%s/cbm.lua\n" ..
                  "cbm2 body\nwrap in cb\tcbm2\t%s/cbm2.lua\nafter wrap\n" ..
                  "yb body\n" ..
                  "true\tfalse\tattempt to yield across a C-call boundary\n" ..
                  "run\tfalse\nend\tcbm\tcbm2\n"):format(dir, dir)
    assert.equals(want, same_as_stock(src))                    -- luv later
    assert.equals(want, same_as_stock(src, { "require 'luv'" }))  -- first
  end)

  it("import_module in a non-task coroutine returns the module", function()
    H.write(dir .. "/imp.lua", "print('imp body'); return 'imp'")
    local r = K.run(dir, [[
      local U = require "uvrequire"
      print(coroutine.wrap(function() return U.import_module "imp" end)())
      print(coroutine.wrap(function() return U.import_module "imp" end)())
    ]], { K.install() })
    assert.equals("imp body\nimp\nimp\n", r.out)
    assert.equals("", r.err)
    assert.same({ true, "exit", 0 }, { r.ok, r.how, r.code })
  end)
end)

describe("install{ wait = 'any' }: a body that runs the loop", function()
  it("does not take a coroutine the scheduler resumes as its own",
     function()
    local dir = H.tmpdir()
    H.write(dir .. "/slow8.lua", "return 'slow8'")
    H.write(dir .. "/m8.lua", [[
      local M = { complete = false }
      package.loaded[...] = M
      require("uvrequire").run()  -- resumes the waiting coroutine
      M.complete = true
      return M
    ]])
    local r = K.run(dir, [[
      local uv = require "luv"
      local U = require "uvrequire"
      local co = coroutine.create(function()
        require "slow8"  -- waits by yielding (mode "any")
        print("co", require("m8").complete)  -- resumed inside m8's body
      end)
      local t = uv.new_timer()
      t:start(0, 0, function() t:close(); coroutine.resume(co) end)
      uv.run("nowait")
      print("main", require("m8").complete)
      U.run()
      print(coroutine.status(co))
    ]], { K.install("{ wait = 'any' }") }, { env = "UVREQUIRE_DETECT=off" })
    H.rmtree(dir)
    assert.equals("main\ttrue\nco\ttrue\ndead\n", r.out)
    assert.equals("", r.err)
  end)
end)

describe("install(): require in a task waits by yielding", function()
  local scratch, dir

  before_each(function()
    scratch = H.scratch()
    dir = scratch.dir
  end)

  after_each(function() scratch.restore() end)

  it("lets another task run meanwhile (global require)", function()
    H.write(dir .. "/slowm.lua", "print('slowm body'); return 'slowm'")
    H.write(dir .. "/slowi.lua", "print('slowi body'); return 'slowi'")
    local r = K.run(dir, [[
      local U = require "uvrequire"
      local a = U.spawn(function()
        print("a asks")
        local m = require "slowm"
        print("a got", m)
        print("a got", U.import_module "slowi")
      end)
      local b = U.spawn(function() print("b runs") end)
      print("spawned", a:done(), b:done())
      U.run()
      print("ran", a:done(), b:done())
    ]], { K.install() })
    assert.equals("a asks\nb runs\nspawned\tfalse\ttrue\n" ..
                  "slowm body\na got\tslowm\nslowi body\na got\tslowi\n" ..
                  "ran\ttrue\ttrue\n", r.out)
    assert.equals("", r.err)
    assert.same({ true, "exit", 0 }, { r.ok, r.how, r.code })
  end)

  it("a module body running in the task is part of it", function()
    -- inner's file is a FIFO: the program writes it only once it has
    -- seen outer's body waiting on it (a require that did not yield
    -- would never let the program get there)
    H.write(dir .. "/outer.lua", [[
      STARTED = true
      local i = require "inner"
      print("outer got", i, coroutine.isyieldable())
      return "outer:" .. i
    ]])
    assert(os.execute("mkfifo '" .. dir .. "/inner.lua'"))
    local r = K.run(dir, [[
      local U = require "uvrequire"
      local t = U.spawn(function() return require "outer" end)
      while not STARTED do U.run("once") end
      print("waiting", t:done(), U.status("outer"), U.status("inner"))
      local f = assert(io.open("inner.lua", "w"))
      f:write("return 'inner'")
      f:close()
      U.run()
      print(t:result())
    ]], { K.install() })
    assert.equals(("waiting\tfalse\tloading\tloading\n" ..
                   "outer got\tinner\ttrue\n" ..
                   "true\touter:inner\t%s/outer.lua\n"):format(dir), r.out)
    assert.equals("", r.err)
    assert.same({ true, "exit", 0 }, { r.ok, r.how, r.code })
  end)

  it("lets another task run meanwhile (uvrequire.require)", function()
    H.write(dir .. "/slowt.lua", "LOG[#LOG + 1] = 'body'; return 'slowt'")
    _G.LOG = {}
    local a = U.spawn(function()
      LOG[#LOG + 1] = "a asks"
      local m = U.require("slowt")
      LOG[#LOG + 1] = "a got " .. m
    end)
    local b = U.spawn(function() LOG[#LOG + 1] = "b runs" end)
    assert.same({ "a asks", "b runs" }, LOG)
    assert.is_false(a:done())
    U.run()
    assert.same({ "a asks", "b runs", "body", "a got slowt" }, LOG)
    assert.same({ true }, { a:result() })
    assert.same({ true }, { b:result() })
    _G.LOG = nil
    package.loaded.slowt = nil
  end)

  it("sync() keeps a task's require synchronous", function()
    H.write(dir .. "/synct.lua", "return 'synct'")
    local t = U.spawn(function()
      return U.sync(function() return U.require("synct") end)
    end)
    assert.is_true(t:done())  -- it never yielded
    assert.same({ true, "synct", dir .. "/synct.lua" }, { t:result() })
    package.loaded.synct = nil
  end)
end)

describe("install{ wait = 'any' }", function()
  local scratch, dir

  before_each(function()
    scratch = H.scratch()
    dir = scratch.dir
  end)

  after_each(function() scratch.restore() end)

  it("a plain coroutine's require yields PENDING; the loop resumes it",
     function()
    H.write(dir .. "/anym.lua", "print('anym body'); return 'anym'")
    local r = K.run(dir, [[
      local U = require "uvrequire"
      local got
      local co = coroutine.create(function()
        got = table.pack(require "anym")
        return "returned"
      end)
      local ok, v = coroutine.resume(co)
      print(ok, v == U.PENDING, coroutine.status(co))
      U.run()
      print(coroutine.status(co), got.n, got[1], got[2])
    ]], { K.install("{ wait = 'any' }") })
    assert.equals(("true\ttrue\tsuspended\nanym body\n" ..
                   "dead\t2\tanym\t%s/anym.lua\n"):format(dir), r.out)
    assert.equals("", r.err)
    assert.same({ true, "exit", 0 }, { r.ok, r.how, r.code })
  end)

  it("sync() gives a generator stock output", function()
    H.write(dir .. "/anys.lua", "print('anys body'); return 'anys'")
    local src = [[
      local U = require "uvrequire"
      for x, y in coroutine.wrap(function()
        U.sync(function()
          coroutine.yield(require "anys")
          coroutine.yield("second")
        end)
      end) do print(x, y) end
    ]]
    local s, u = K.both(dir, src, K.install("{ wait = 'any' }"))
    assert.equals(("anys body\nanys\t%s/anys.lua\nsecond\tnil\n"):format(dir),
                  s.out)
    assert.equals(s.out, u.out)
    assert.equals("", u.err)
    assert.same({ true, "exit", 0 }, { u.ok, u.how, u.code })
  end)
end)
