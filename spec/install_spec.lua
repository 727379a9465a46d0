-- install(), uninstall(), uvrequire.require, import_module.
local H = require "helper"
local uv = H.uv

describe("install", function()
  after_each(function()
    uv.uninstall()
    H.clean()
  end)

  it("replaces the global require and returns the module", function()
    local before = require
    assert.equals(uv, uv.install())
    assert.equals(uv.require, require)
    assert.not_equals(before, require)
  end)

  it("is idempotent, and uninstall restores the original", function()
    local before = require
    uv.install()
    uv.install()
    assert.equals(uv, uv.uninstall())
    assert.equals(before, require)
    uv.uninstall()  -- a second uninstall changes nothing
    assert.equals(before, require)
  end)

  it("keeps, at a later call, the options it is not given", function()
    local s = H.scratch()
    H.write(s.dir .. "/inst_any.lua", "return 'any'")
    uv.install({ wait = "any" })
    uv.install()  -- (a library's own call: the program chose "any")
    local co = coroutine.create(function() return require "inst_any" end)
    local ok, v = coroutine.resume(co)
    assert.same({ true, uv.PENDING }, { ok, v })  -- it waits by yielding
    uv.run()
    assert.equals("dead", coroutine.status(co))
    uv.install({ wait = "tasks" })
    package.loaded.inst_any = nil
    s.restore()
  end)

  it("import_module returns the module only", function()
    local r = table.pack(uv.import_module("string"))
    assert.same({ n = 1, string }, r)
    package.loaded["uvr_im_test"] = nil
    package.preload["uvr_im_test"] = function() return "m" end
    r = table.pack(uv.import_module("uvr_im_test"))
    assert.same({ n = 1, "m" }, r)
    package.preload["uvr_im_test"] = nil
    package.loaded["uvr_im_test"] = nil
  end)

  it("names the function in argument errors", function()
    assert.has_error(function() uv.import_module(nil) end,
      "bad argument #1 to 'import_module' (string expected, got nil)")
    assert.has_error(function() uv.require() end,
      "bad argument #1 to 'require' (string expected, got no value)")
  end)
end)

describe("API errors", function()
  after_each(function() H.clean() end)

  it("spawn, sync and run check their arguments", function()
    assert.has_error(function() uv.spawn(42) end,
      "bad argument #1 to 'spawn' (function expected, got number)")
    assert.has_error(function() uv.sync() end,
      "bad argument #1 to 'sync' (function expected, got nil)")
    local ok, err = pcall(function() uv.run("sometimes") end)
    assert.is_false(ok)
    assert.matches("^spec/install_spec.lua:%d+: bad argument #1 to 'run' " ..
                   "%(invalid option 'sometimes'%)$", err)
  end)

  it("a task's result before it is done is an error", function()
    local t = uv.spawn(function() coroutine.yield() end)  -- never resumed
    assert.has_error(function() t:result() end, "task is not done")
    assert.has_error(function() t:wait() end,
      "task cannot finish: the loop has nothing left to run")
  end)

  it("a task's methods check their task; a task cannot wait for itself",
     function()
    local t = uv.spawn(function() return 1 end)
    local function err(f, ...)
      local ok, e = pcall(f, ...)
      assert.is_false(ok)
      return e
    end
    for _, m in ipairs { "result", "wait", "done", "cancel" } do
      assert.equals("bad argument #1 to '" .. m .. "' (task expected, " ..
                    "got no value)", err(t[m]))
      assert.equals("bad argument #1 to '" .. m .. "' (task expected, " ..
                    "got number)", err(t[m], 5))
    end
    local proxy = setmetatable({}, { __index = t })
    local e = err(function() local d = proxy:done(); return d end)
    assert.matches("^spec/install_spec.lua:%d+: calling 'done' on bad " ..
                   "self %(task expected, got table%)$", e)
    local dir = H.tmpdir()
    H.write(dir .. "/selfwait.lua", "return 1")
    local old = package.path
    package.path = dir .. "/?.lua;" .. old
    local me
    me = uv.spawn(function()
      uv.import_module("selfwait")  -- (waits: 'me' is assigned)
      return pcall(function() local r = me:wait(); return r end)
    end)
    uv.run()
    package.path = old
    H.rmtree(dir)
    package.loaded.selfwait = nil
    local ok, pok, perr = me:result()
    assert.is_true(ok)
    assert.is_false(pok)
    assert.matches("^spec/install_spec.lua:%d+: a task cannot wait for " ..
                   "itself$", perr)
  end)

  it("a wait cycle through an import is an error, either way round",
     function()
    local dir = H.tmpdir()
    local old = package.path
    package.path = dir .. "/?.lua;" .. old
    H.write(dir .. "/wx.lua", "return 1")
    -- 1: b waits on the import 'wc1', whose body (in a) then waits for b
    H.write(dir .. "/wc1.lua", "return { pcall(function() " ..
            "local r = WB:wait(); return r end) }")
    local a = uv.spawn(uv.require, "wc1")
    _G.WB = uv.spawn(uv.require, "wc1")
    uv.run()
    local ok, m = a:result()
    assert.is_true(ok)
    assert.is_false(m[1])
    assert.matches("^" .. dir .. "/wc1.lua:1: a task cannot wait for a " ..
                   "task that waits for it$", m[2])
    assert.same({ true, m, dir .. "/wc1.lua" }, { WB:result() })
    -- 2: the body of 'wc2' (in a) starts b and waits for it; b imports
    -- 'wx' (a waits for b by then), then 'wc2'
    H.write(dir .. "/wc2.lua", [[
      local uv = require "uvrequire"
      WB = uv.spawn(function()
        uv.import_module("wx")
        return pcall(function() local r = uv.require("wc2"); return r end)
      end)
      WRES = { WB:wait() }
      return 2
    ]])
    a = uv.spawn(uv.require, "wc2")
    uv.run()
    package.path = old
    H.rmtree(dir)
    _G.WB = nil
    assert.same({ true, 2, dir .. "/wc2.lua" }, { a:result() })
    local bok, pok, perr = table.unpack(WRES)
    _G.WRES = nil
    assert.same({ true, false }, { bok, pok })
    assert.equals(dir .. "/wc2.lua:4: module 'wc2' is loading in a " ..
                  "coroutine that waits for this one", perr)
    package.loaded.wc1, package.loaded.wc2, package.loaded.wx = nil, nil, nil
  end)

  it("a cancelled wait is no link of a wait cycle", function()
    local dir = H.tmpdir()
    H.write(dir .. "/wy.lua", "return 1")
    local old = package.path
    package.path = dir .. "/?.lua;" .. old
    local a, b
    b = uv.spawn(function()
      uv.import_module("wy")  -- (a waits for b by now)
      assert(a:cancel())
      return a:wait()  -- a's wait for b is over: no cycle
    end)
    a = uv.spawn(function()
      local ok, err = pcall(b.wait, b)
      return ok, err
    end)
    uv.run()
    package.path = old
    H.rmtree(dir)
    package.loaded.wy = nil
    assert.same({ true, true, false, "cancelled" }, { b:result() })
  end)

  it("two tasks cannot wait for each other", function()
    local dir = H.tmpdir()
    H.write(dir .. "/wa.lua", "return 1")
    H.write(dir .. "/wb.lua", "return 2")
    local old = package.path
    package.path = dir .. "/?.lua;" .. old
    local a, b
    a = uv.spawn(function()
      uv.import_module("wa")
      return b:wait()
    end)
    b = uv.spawn(function()
      uv.import_module("wa")
      uv.import_module("wb")  -- (a waits for b by now)
      return pcall(function() local r = a:wait(); return r end)
    end)
    uv.run()
    package.path = old
    H.rmtree(dir)
    package.loaded.wa, package.loaded.wb = nil, nil
    local ok, bok, pok, perr = a:result()
    assert.same({ true, true, false }, { ok, bok, pok })
    assert.matches("^spec/install_spec.lua:%d+: a task cannot wait for a " ..
                   "task that waits for it$", perr)
  end)

  it("run refuses to run a loop that is already running", function()
    local timer = H.luv.new_timer()
    local err
    timer:start(0, 0, function()
      timer:close()
      err = select(2, pcall(function() uv.run() end))
    end)
    uv.run()
    assert.matches("^spec/install_spec.lua:%d+: the loop is already running$",
                   err)
  end)

  it("sync keeps a coroutine's requires synchronous, then restores",
     function()
    local s = H.scratch()
    finally(s.restore)
    H.write(s.dir .. "/insync.lua", "return 'in sync'")
    H.write(s.dir .. "/aftersync.lua", "return 'after sync'")
    local log = {}
    local t = uv.spawn(function()
      local m = uv.sync(function()
        log[#log + 1] = coroutine.isyieldable()  -- for its own yields
        return uv.require("insync")
      end)
      log[#log + 1] = m
      log[#log + 1] = coroutine.isyieldable()
      m = uv.require("aftersync")             -- waits again
      log[#log + 1] = m
      return "done"
    end)
    -- spawn returned: the require under sync did not yield, the next did
    assert.same({ true, "in sync", true }, log)
    assert.is_false(t:done())
    assert.same({ true, "done" }, { t:wait() })
    assert.same({ true, "in sync", true, "after sync" }, log)
    package.loaded.insync = nil
    package.loaded.aftersync = nil
  end)
end)
