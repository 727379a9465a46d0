-- Odd values on the failure paths (issue 9, "Every failure path").
--
-- Error values that are no strings (nil, a table, a table with
-- __tostring) raised by a searcher, a preload loader or a module body
-- reach every requester unchanged: the very same value (rawequal), nil
-- for nil.  A `false` left in package.loaded, a standard searcher whose
-- 'package' upvalue was replaced, and a missing or odd registry._CLIBS
-- give stock's results and messages, never a crash.  Scenarios that
-- crash today run in a child lua5.4.
local H = require "helper"
local K = require "proc_helper"
local U = H.uv

local n = 0
local function fresh(prefix)
  n = n + 1
  return ("%s_%d"):format(prefix, n)
end

describe("odd error values", function()
  local scratch, dir, saved

  before_each(function()
    scratch = H.scratch()
    dir = scratch.dir
    saved = {}
    for i, s in ipairs(package.searchers) do saved[i] = s end
  end)

  after_each(function()
    for i = #package.searchers, 1, -1 do package.searchers[i] = nil end
    for i, s in ipairs(saved) do package.searchers[i] = s end
    _G.ODD = nil
    scratch.restore()
  end)

  local values = {
    { "nil", function() return nil end },
    { "a table", function() return {} end },
    { "a table with __tostring", function()
        return setmetatable({}, { __tostring = function() return "odd!" end })
      end },
  }

  -- Each source makes `name` fail with _G.ODD.  A task requiring it
  -- first waits on the executor (PENDING), so that other requesters
  -- can come while the load is in flight: the raising searcher and the
  -- preload searcher come after the Lua file searcher.
  local sources = {
    { "a user searcher", function(name)
        package.searchers[#package.searchers + 1] = function(m)
          if m == name then error(ODD) end
        end
      end },
    { "a preload loader", function(name)
        -- the standard preload searcher moved after the Lua searcher
        local pre = table.remove(package.searchers, 1)
        table.insert(package.searchers, 2, pre)
        package.preload[name] = function() error(ODD) end
      end },
    { "a module body", function(name)
        H.write(dir .. "/" .. name .. ".lua", "error(ODD)")
      end },
  }

  -- the value a requester got, as { ok, value, n } with tables
  -- replaced by whether they are the very value raised
  local function seen(ok, v, nres)
    if type(v) == "table" then v = rawequal(v, ODD) and "same" or "another" end
    return { ok = ok, v = v, n = nres }
  end

  -- wait for task `t` (claiming its error) and say what it got
  local function got(t)
    local r = table.pack(pcall(t.wait, t))
    if not r[1] then return { wait_failed = r[2] } end
    return seen(r[2], r[3], r.n - 1)
  end

  for _, val in ipairs(values) do
    for _, src in ipairs(sources) do
      local what = val[1] .. " from " .. src[1]

      it(what .. ": the direct caller gets it, as with stock", function()
        local name = fresh("odd_direct")
        src[2](name)
        _G.ODD = val[2]()
        local s, u = H.both({ name }, function(req)
          local r = table.pack(pcall(req, name))
          return { seen(r[1], r[2], r.n), U.status(name) }
        end)
        assert.same({ seen(false, ODD, 2) }, s)
        assert.same(s, u)
        -- and in a task (the task's own result)
        local t = U.spawn(U.require, name)
        assert.same(seen(false, ODD, 2), got(t))
        assert.is_nil(U.status(name))
        package.preload[name] = nil
        H.clean()
      end)

      it(what .. ": a task waiting on the same load gets it too", function()
        local name = fresh("odd_wait")
        src[2](name)
        _G.ODD = val[2]()
        local t1 = U.spawn(U.require, name)
        assert.is_false(t1:done())
        local t2 = U.spawn(U.require, name)
        assert.is_false(t2:done())
        assert.same(seen(false, ODD, 2), got(t1))
        assert.same(seen(false, ODD, 2), got(t2))
        assert.is_nil(U.status(name))
        package.preload[name] = nil
        H.clean()
      end)

      it(what .. ": two tasks waiting on a third get it", function()
        local name = fresh("odd_two")
        src[2](name)
        _G.ODD = val[2]()
        local t = {}
        for i = 1, 3 do t[i] = U.spawn(U.require, name) end
        for i = 3, 1, -1 do  -- the waiters first
          assert.same(seen(false, ODD, 2), got(t[i]))
        end
        assert.is_nil(U.status(name))
        package.preload[name] = nil
        H.clean()
      end)

      it(what .. ": a synchronous caller taking the load over and the " ..
         "task it took it from get it", function()
        local name = fresh("odd_take")
        src[2](name)
        _G.ODD = val[2]()
        local t = U.spawn(U.require, name)
        assert.is_false(t:done())
        local r = table.pack(pcall(U.require, name))  -- main thread
        assert.same(seen(false, ODD, 2), seen(r[1], r[2], r.n))
        assert.same(seen(false, ODD, 2), got(t))
        assert.is_nil(U.status(name))
        package.preload[name] = nil
        H.clean()
      end)
    end
  end
end)

describe("package.loaded[name] == false beforehand", function()
  local scratch, dir

  before_each(function()
    scratch = H.scratch()
    dir = scratch.dir
  end)

  after_each(function() scratch.restore() end)

  -- Lua 5.4.4's ll_require: LOADED[name] is false, not nil, after a
  -- body that returns nothing, so `true` is not stored: require returns
  -- false (and the loader data), and LOADED[name] stays false.
  it("a body returning nothing: require returns false, as stock", function()
    local name = fresh("odd_false")
    local file = dir .. "/" .. name .. ".lua"
    H.write(file, "ODD_RUNS = (ODD_RUNS or 0) + 1")
    _G.ODD_RUNS = 0
    local s, u = H.both({ name }, function(req)
      package.loaded[name] = false
      local r = H.outcome(req, name)
      return { r, rawget(package.loaded, name), U.status(name) }
    end)
    assert.same({ { ok = true, n = 2, false, file }, false }, s)
    assert.same(s, u)
    -- in a task
    package.loaded[name] = false
    assert.same({ true, false, file }, { H.task(U.require, name) })
    assert.equals(false, rawget(package.loaded, name))
    assert.equals(3, ODD_RUNS)
    package.loaded[name] = nil
    _G.ODD_RUNS = nil
  end)

  it("a preload loader returning nothing: false, as stock", function()
    local name = fresh("odd_false_pre")
    package.preload[name] = function() end
    local s, u = H.both({ name }, function(req)
      package.loaded[name] = false
      local r = H.outcome(req, name)
      return { r, rawget(package.loaded, name) }
    end)
    assert.same({ { ok = true, n = 2, false, ":preload:" }, false }, s)
    assert.same(s, u)
    package.loaded[name] = false
    assert.same({ true, false, ":preload:" }, { H.task(U.require, name) })
    assert.equals(false, rawget(package.loaded, name))
    package.loaded[name] = nil
    package.preload[name] = nil
  end)

  it("a body storing a value for itself: that value, as stock", function()
    local name = fresh("odd_false_st")
    local file = dir .. "/" .. name .. ".lua"
    H.write(file, "package.loaded[...] = 'stored'")
    local s, u = H.both({ name }, function(req)
      package.loaded[name] = false
      return { H.outcome(req, name), rawget(package.loaded, name) }
    end)
    assert.same({ { ok = true, n = 2, "stored", file }, "stored" }, s)
    assert.same(s, u)
    package.loaded[name] = false
    assert.same({ true, "stored", file }, { H.task(U.require, name) })
    package.loaded[name] = nil
  end)
end)

-- The scenarios below may crash uvrequire: each runs in a child lua5.4,
-- which compares stock `require`, uvrequire's on the main thread and
-- uvrequire's in a task, and prints "ok".
local function child(code)
  local out = K.check(K.prelude .. [[
local assert = require "luassert"
-- outcome of `fn(req)` under stock, uvrequire, uvrequire in a task
local function three(fn)
  local s = fn(H.stock)
  local u = fn(uv.require)
  local ok, t = H.task(function() return fn(uv.require) end)
  assert(ok, "the task failed: " .. tostring(t))
  return s, u, t
end
]] .. code .. "\nH.clean()\nprint('ok')\n")
  assert.equals("ok\n", out)
end

describe("a standard searcher's 'package' upvalue replaced", function()
  local cases = {
    { "an empty table", "{}" },
    { "a number", "42" },
    { "a string", "'pkg'" },
    { "nil", "nil" },
    { "a table whose path is a number", "{ path = 7, cpath = 8 }" },
    { "a table whose path is a boolean", "{ path = true, cpath = false }" },
  }
  local which = {
    { 2, "Lua", "nosuch_mod" },
    { 3, "C", "nosuch_mod" },
    { 4, "Croot", "nosuch.mod" },
  }
  for _, w in ipairs(which) do
    for _, c in ipairs(cases) do
      it(("the %s searcher's, by %s: stock's error, no crash"):format(w[2], c[1]),
         function()
        child(([[
local i, name = %d, %q
local function try(req)
  local f = package.searchers[i]
  local _, old = debug.getupvalue(f, 1)
  debug.setupvalue(f, 1, %s)
  local r = H.outcome(req, name)
  debug.setupvalue(f, 1, old)
  return r
end
local s, u, t = three(try)
assert.is_false(s.ok)
assert.same(s, u)
assert.same(s, t)
assert.is_nil(uv.status(name))
]]):format(w[1], w[3], c[2]))
      end)
    end
  end

  it("the Lua searcher's, by an empty table: exactly stock's message", function()
    child([[
local function try(req)
  local f = package.searchers[2]
  local _, old = debug.getupvalue(f, 1)
  debug.setupvalue(f, 1, {})
  local r = H.outcome(req, "nosuch_mod")
  debug.setupvalue(f, 1, old)
  return r
end
local s, u, t = three(try)
assert.same({ ok = false, n = 1, "'package.path' must be a string" }, s)
assert.same(s, u)
assert.same(s, t)
]])
  end)

  it("the C searcher's, by an empty table: exactly stock's message", function()
    child([[
local function try(req)
  local f = package.searchers[3]
  local _, old = debug.getupvalue(f, 1)
  debug.setupvalue(f, 1, {})
  local r = H.outcome(req, "nosuch_mod")
  debug.setupvalue(f, 1, old)
  return r
end
local s, u, t = three(try)
assert.same({ ok = false, n = 1, "'package.cpath' must be a string" }, s)
assert.same(s, u)
assert.same(s, t)
]])
  end)
end)

describe("registry._CLIBS missing or odd, then a C module", function()
  local cases = {
    { "nil", "nil", "attempt to index a nil value" },
    { "a number", "42", "attempt to index a number value" },
    { "a string", "'clibs'", "attempt to index a string value" },
  }
  for _, c in ipairs(cases) do
    for _, name in ipairs({ "fix1", "fix1.sub" }) do
      it(("_CLIBS = %s, require %q: stock's error, no crash"):format(c[1], name),
         function()
        child(([[
package.cpath = %q
local name = %q
local reg = debug.getregistry()
local function try(req)
  local saved = reg._CLIBS
  reg._CLIBS = %s
  local r = H.outcome(req, name)
  reg._CLIBS = saved
  package.loaded[name] = nil
  return r
end
local s, u, t = three(try)
assert.same({ ok = false, n = 1, %q }, s)
assert.same(s, u)
assert.same(s, t)
assert.is_nil(uv.status(name))
-- and with _CLIBS back, the module loads
local m, where = uv.require(name)
assert.equals(name, m.tag)
package.loaded[name] = nil
]]):format(K.root .. "/build/fixtures/?.so", name, c[2], c[3]))
      end)
    end
  end
end)

describe("registry._LOADED replaced", function()
  it("by a number: stock's error, no crash", function()
    child([[
local function try(req)
  local reg = debug.getregistry()
  local old = reg._LOADED
  reg._LOADED = 5
  local r = H.outcome(req, "nosuch_mod")
  local st = uv.status("nosuch_mod")
  reg._LOADED = old
  return { r, st }
end
local s, u, t = three(try)
assert.same({ { ok = false, n = 1, "attempt to index a number value" } }, s)
assert.same(s, u)
assert.same(s, t)
]])
  end)

  it("by a module's body, as it loads or fails: no crash", function()
    child([[
local dir = H.tmpdir()
package.path = dir .. "/?.lua;" .. package.path
H.write(dir .. "/swap_ok.lua",
        "debug.getregistry()._LOADED = 5; return 'swapped'")
H.write(dir .. "/swap_bad.lua",
        "debug.getregistry()._LOADED = 5; error('bad', 0)")
local function try(req, name)
  local reg = debug.getregistry()
  local old = reg._LOADED
  local r = H.outcome(req, name)
  local now = reg._LOADED
  reg._LOADED = old
  old[name] = nil
  return { r, now }
end
for _, name in ipairs({ "swap_ok", "swap_bad" }) do
  local s = try(H.stock, name)
  assert.same(s, try(uv.require, name))
  local ok, t = H.task(function() return try(uv.require, name) end)
  assert(ok, t)
  assert.same(s, t)
end
H.rmtree(dir)
]])
  end)
end)

describe("package.loaded with someone else's metatable", function()
  it("finds luv's loop without calling its metamethods", function()
    -- set before uvrequire loads, so uvrequire's guard stays out; its
    -- __index raises for "luv", which the loop lookup must not ask
    local out = K.indir([[
setmetatable(package.loaded, { __index = function(_, k)
  if k == "luv" then error("asked for luv", 0) end
end })
local uv = require "uvrequire"
local f = assert(io.open(DIR .. "/foreign_mt.lua", "w"))
f:write("return 'fm'")
f:close()
package.path = DIR .. "/?.lua;" .. package.path
local t = uv.spawn(uv.import_module, "foreign_mt")
print(pcall(uv.run))
print(t:result())
print(uv.loopinfo().handles)
]])
    assert.equals("true\tfalse\ntrue\tfm\n0\n", out)
  end)
end)
