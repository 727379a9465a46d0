-- uvrequire.lazy(name): a proxy that loads the module at first use
-- (issue 10, item 3).  A prefetch starts at once (search, read, compile:
-- no body); the first use imports the module as `require` there would
-- (yielding in a task, synchronous elsewhere); from then on the proxy
-- behaves as the module.
local H = require "helper"
local U = H.uv
local core = require "uvrequire.core"

-- One use of each kind, each on its own line: a use that raises does
-- so at that line (its linedefined), as `require` written there would.
local uses = {
  index = function(p) return p.answer end,
  newindex = function(p) p.written = true end,
  call = function(p) local r = p(20, 22) return r end,  -- no tail call
  pairs = function(p) local n = 0 for _ in pairs(p) do n = n + 1 end return n end,
  len = function(p) return #p end,
  tostring = function(p) return tostring(p) end,
  eq = function(p) return p == {} end,
  lt = function(p) return p < 1 end,
  add = function(p) return p + 1 end,
  concat = function(p) return p .. "" end,
}
local kinds = { "index", "newindex", "call", "pairs", "len", "tostring",
                "eq", "lt", "add", "concat" }
-- the uses that can wait by yielding (tostring's __tostring is called
-- from C without a continuation, so it cannot: it loads synchronously)
local yielding = { "index", "newindex", "call", "pairs", "len", "eq", "lt",
                   "add", "concat" }

-- "file:line: " of the use `kind`
local function where(kind)
  local info = debug.getinfo(uses[kind], "S")
  return ("%s:%d: "):format(info.short_src, info.linedefined)
end

-- A module whose body counts its runs in _G.LAZY_RUNS[name].
local function counted(body)
  return "local name = ...\n" ..
         "LAZY_RUNS[name] = (LAZY_RUNS[name] or 0) + 1\n" .. body
end

-- The table module every kind works on: it has a field, a length,
-- pairs, a tostring, and is callable, comparable, addable, concatenable.
local TABLE_MODULE = counted [[
local m = { answer = 42, 1, 2, 3 }
return setmetatable(m, {
  __tostring = function() return "the module" end,
  __call = function(_, a, b) return a + b end,
  __lt = function(a, b) return false end,
  __add = function(a, b) return "added" end,
  __concat = function(a, b) return "concatenated" end,
})
]]

describe("uvrequire.lazy", function()
  local scratch, dir, names, reports

  -- a fresh module name with `src` as its file
  local n = 0
  local function module(src)
    n = n + 1
    local name = "lazymod" .. n
    names[#names + 1] = name
    H.write(dir .. "/" .. name .. ".lua", src)
    return name
  end

  before_each(function()
    scratch = H.scratch()
    dir = scratch.dir
    names = {}
    reports = {}
    _G.LAZY_RUNS = {}
    U.on_error(function(msg) reports[#reports + 1] = msg end)
  end)

  after_each(function()
    scratch.restore()  -- runs the loop dry and proves it clean
    collectgarbage()
    collectgarbage()
    U.run()
    U.on_error(nil)
    assert.same({}, reports)  -- no background error was left unclaimed
    for _, name in ipairs(names) do package.loaded[name] = nil end
    _G.LAZY_RUNS = nil
  end)

  it("returns a module already loaded itself", function()
    assert.equals(string, U.lazy("string"))
    local name = module("return { here = true }")
    local m = U.require(name)
    assert.equals(m, U.lazy(name))
    assert.equals(0, U.loopinfo().jobs)  -- and starts no import
  end)

  it("checks its argument", function()
    -- a number is a name, as require's (luaL_checkstring)
    local ok, p = pcall(U.lazy, 42)
    assert.is_true(ok)
    local ok2, err = pcall(function() return p.x end)
    assert.is_false(ok2)
    assert.matches(": module '42' not found:\n", err)
    assert.same({ false, "bad argument #1 to 'lazy' " ..
                         "(string expected, got no value)" },
                { pcall(U.lazy) })
    local info
    local ok, err = pcall(function()
      info = debug.getinfo(1, "Sl")
      U.lazy({})  -- on the line after getinfo's
    end)
    assert.is_false(ok)
    assert.equals(("%s:%d: bad argument #1 to 'lazy' " ..
                   "(string expected, got table)")
                  :format(info.short_src, info.currentline + 1), err)
  end)

  it("prefetches at once, and runs the body only at first use", function()
    local name = module(counted("return { v = 1 }"))
    local before = core.prefetchstats()
    local p = U.lazy(name)
    local after = core.prefetchstats()
    assert.equals(before.submitted + 1, after.submitted)
    assert.is_nil(U.status(name))  -- not loading: compiled ahead only
    U.run()
    assert.is_nil(LAZY_RUNS[name])
    assert.is_nil(package.loaded[name])
    assert.equals(1, p.v)
    assert.equals(1, LAZY_RUNS[name])
    assert.equals("loaded", U.status(name))
    assert.equals(after.adopted + 1, core.prefetchstats().adopted)
    assert.is_true(p == package.loaded[name])
    assert.equals(1, LAZY_RUNS[name])
  end)

  it("loads each of 300 proxies made at once (prefetches that did not " ..
     "fit wait for room)", function()
    local ps = {}
    for i = 1, 300 do ps[i] = U.lazy(module("return " .. i)) end
    for i = 1, 300 do assert.equals(i * 2, ps[i] + i) end
  end)

  it("hides its metatable, before and after the load", function()
    local p = U.lazy(module("return setmetatable({}, {})"))
    assert.is_false(getmetatable(p))
    assert.has_error(function() setmetatable(p, {}) end,
                     "cannot change a protected metatable")
    assert.is_nil(p.x)
    assert.is_false(getmetatable(p))
  end)

  it("raises the errors of forwarded operations at the use", function()
    local strict = U.lazy(module([[
      return setmetatable({}, {
        __index = function(_, k) error("no field " .. k, 2) end,
        __newindex = function(_, k) error("read-only " .. k, 2) end,
      })
    ]]))
    local info = debug.getinfo(1, "S")
    local function at(line) return ("%s:%d: "):format(info.short_src, line) end
    local function line() return debug.getinfo(2, "l").currentline end
    -- the first use loads (through this file's functions), the second
    -- goes straight to the module: both at the use's line
    local l1, ok1, e1 = line(), pcall(function() return strict.a end)
    local l2, ok2, e2 = line(), pcall(function() return strict.b end)
    local l3, ok3, e3 = line(), pcall(function() strict.c = 1 end)
    assert.same({ false, at(l1) .. "no field a" }, { ok1, e1 })
    assert.same({ false, at(l2) .. "no field b" }, { ok2, e2 })
    assert.same({ false, at(l3) .. "read-only c" }, { ok3, e3 })
    local tbl = U.lazy(module("return {}"))
    local l4, ok4, e4 = line(), pcall(function() return tbl + 1 end)
    assert.same({ false, at(l4) ..
                  "attempt to perform arithmetic on a table value" },
                { ok4, e4 })
    local num = U.lazy(module("return 40"))
    local l5, ok5, e5 = line(), pcall(function() return num.x end)
    local l6, ok6, e6 = line(), pcall(function() return num.y end)
    assert.same({ false, at(l5) .. "attempt to index a number value" },
                { ok5, e5 })
    assert.same({ false, at(l6) .. "attempt to index a number value" },
                { ok6, e6 })
    local fn = U.lazy(module("return function() end"))
    local l7, ok7, e7 = line(), pcall(function() return #fn end)
    assert.same({ false, at(l7) ..
                  "attempt to get length of a function value" },
                { ok7, e7 })
    -- a call of a module that cannot be called (not a tail call: the
    -- use's frame is still there)
    local l8, ok8, e8 = line(), pcall(function() local r = tbl() return r end)
    assert.same({ false, at(l8) .. "attempt to call a table value" },
                { ok8, e8 })
    local callable = U.lazy(module(
      "return setmetatable({}, { __call = function() return 'called' end })"))
    assert.equals("called", callable())
    -- __call followed as the VM follows it: to a value it cannot call
    local ct = U.lazy(module("return setmetatable({}, { __call = true })"))
    local l9, ok9, e9 = line(), pcall(function() local r = ct() return r end)
    assert.same({ false, at(l9) .. "attempt to call a boolean value" },
                { ok9, e9 })
  end)

  for _, kind in ipairs(kinds) do
    it("loads at first use (" .. kind .. "), synchronously at top level, " ..
       "then behaves as the module", function()
      local name = module(TABLE_MODULE)
      local p = U.lazy(name)
      assert.is_nil(package.loaded[name])
      uses[kind](p)  -- no loop run: the load is synchronous
      assert.equals("loaded", U.status(name))
      local m = package.loaded[name]
      assert.equals("table", type(m))
      assert.equals(1, LAZY_RUNS[name])
      -- now it behaves as the module, for every kind
      assert.equals(42, uses.index(p))
      uses.newindex(p)
      assert.is_true(m.written)
      assert.equals(42, uses.call(p))
      local got = {}
      for k, v in pairs(p) do got[k] = v end
      assert.same(m, got)
      assert.equals(3, uses.len(p))
      assert.equals("the module", uses.tostring(p))
      assert.is_true(p == m)
      assert.is_false(uses.eq(p))
      assert.is_false(uses.lt(p))
      assert.equals("added", uses.add(p))
      assert.equals("concatenated", uses.concat(p))
      assert.equals(1, p[1])
      local seq = {}
      for i, v in ipairs(p) do seq[i] = v end
      assert.same({ 1, 2, 3 }, seq)
      assert.equals(1, LAZY_RUNS[name])
    end)
  end

  it("forwards calls to a function module, and operators to a value",
     function()
    local f = U.lazy(module("return function(a, b) return a * b, 'two' end"))
    assert.same({ 6, "two" }, { f(2, 3) })
    local num = U.lazy(module("return 40"))
    assert.equals(42, num + 2)
    assert.equals(38, 78 - num)
    assert.equals(-40, -num)
    assert.equals(20, num // 2)
    assert.equals(8, num & 12)
    assert.equals(~40, ~num)
    assert.equals(80, num << 1)
    assert.is_true(num < 41)
    assert.is_true(39 <= num)
    assert.equals("40!", num .. "!")
    assert.equals("40", tostring(num))
    local str = U.lazy(module("return 'text'"))
    assert.equals("<text>", "<" .. str .. ">")
    assert.equals(4, #str)
    assert.equals(string.upper, str.upper)  -- through __index
  end)

  it("forwards pairs and # to the module's own __pairs and __len",
     function()
    local p = U.lazy(module([[
      return setmetatable({}, {
        __len = function() return 99 end,
        __pairs = function(t)
          local i = 0
          return function() i = i + 1; if i <= 2 then return i, i * 10 end end, t, nil
        end,
      })
    ]]))
    assert.equals(99, #p)
    local got = {}
    for k, v in pairs(p) do got[k] = v end
    assert.same({ 10, 20 }, got)
  end)

  for _, kind in ipairs(yielding) do
    it("in a task, waits by yielding at first use (" .. kind .. ")",
       function()
      local name = module(TABLE_MODULE)
      local order = {}
      local t = U.spawn(function()
        local p = U.lazy(name)
        order[#order + 1] = "use"
        uses[kind](p)
        order[#order + 1] = "used"
        return p.answer
      end)
      -- the task waits on its first use; another task runs meanwhile
      assert.is_false(t:done())
      U.spawn(function() order[#order + 1] = "other" end)
      assert.same({ "use", "other" }, order)
      assert.same({ true, 42 }, { t:wait() })
      assert.same({ "use", "other", "used" }, order)
      assert.equals(1, LAZY_RUNS[name])
    end)
  end

  it("in a task, tostring loads synchronously (no yield across C)",
     function()
    local name = module(TABLE_MODULE)
    local t = U.spawn(function()
      local p = U.lazy(name)
      return tostring(p), p.answer
    end)
    -- it loaded synchronously and finished without the loop
    assert.is_true(t:done())
    assert.same({ true, "the module", 42 }, { t:result() })
    assert.equals(1, LAZY_RUNS[name])
  end)

  it("loads once with many proxies and concurrent tasks", function()
    local name = module(counted("return { v = {} }"))
    local proxies, tasks = {}, {}
    for i = 1, 10 do proxies[i] = U.lazy(name) end
    for i = 1, 20 do
      tasks[i] = U.spawn(function()
        local p = i % 2 == 0 and proxies[i // 2] or U.lazy(name)
        return p.v
      end)
    end
    assert.equals(0, LAZY_RUNS[name] or 0)
    local v = proxies[10].v  -- a synchronous use meets the tasks' load
    for i = 1, 20 do
      assert.same({ true, v }, { tasks[i]:wait() })
    end
    for i = 1, 10 do assert.equals(v, proxies[i].v) end
    assert.equals(package.loaded[name].v, v)
    assert.equals(1, LAZY_RUNS[name])
  end)

  describe("a missing module", function()
    local function stock_message(name)
      local ok, err = pcall(H.stock, name)
      assert.is_false(ok)
      assert.matches("^module '" .. name .. "' not found:", err)
      return err
    end

    for _, kind in ipairs(kinds) do
      it("raises require's message at the use, each time (" .. kind .. ")",
         function()
        local name = "lazy_missing_" .. kind
        local msg = where(kind) .. stock_message(name)
        local p = U.lazy(name)
        -- first use while the background import is in flight
        assert.same({ false, msg }, { pcall(uses[kind], p) })
        -- and again at each later use
        assert.same({ false, msg }, { pcall(uses[kind], p) })
        assert.same({ false, msg }, { pcall(uses[kind], p) })
        assert.is_nil(U.status(name))
      end)
    end

    it("raises it at first use after the loop ran", function()
      local name = "lazy_missing_early"
      local msg = stock_message(name)
      local p = U.lazy(name)
      U.run()  -- the prefetch finds nothing: no error until the use
      assert.same({ false, where("index") .. msg },
                  { pcall(uses.index, p) })
      assert.same({ false, where("call") .. msg }, { pcall(uses.call, p) })
    end)

    it("raises it in a task, at the use", function()
      local name = "lazy_missing_task"
      local msg = stock_message(name)
      local t = U.spawn(function()
        local p = U.lazy(name)
        local a = { pcall(uses.index, p) }
        local b = { pcall(uses.len, p) }
        return a, b
      end)
      assert.is_false(t:done())
      local ok, a, b = t:wait()
      assert.is_true(ok)
      assert.same({ false, where("index") .. msg }, a)
      assert.same({ false, where("len") .. msg }, b)
    end)

    it("is loaded by a later use once it exists", function()
      local name = "lazy_appears"
      names[#names + 1] = name
      local p = U.lazy(name)
      assert.is_false(pcall(uses.index, p))
      H.write(dir .. "/" .. name .. ".lua", "return { answer = 7 }")
      assert.equals(7, uses.index(p))
    end)
  end)

  describe("a failing module", function()
    local FAILING = counted("error('lazy boom')")

    it("raises the body's error at first use, and again later", function()
      local name = module(FAILING)
      local msg = dir .. "/" .. name .. ".lua:3: lazy boom"
      assert.same({ false, msg }, { pcall(H.stock, name) })
      LAZY_RUNS[name] = 0
      local p = U.lazy(name)
      for _, kind in ipairs(kinds) do
        assert.same({ false, msg }, { pcall(uses[kind], p) })
      end
      assert.is_nil(package.loaded[name])
      assert.is_nil(U.status(name))
      -- no proxy stuck: each use tried the load again
      assert.equals(#kinds, LAZY_RUNS[name])
    end)

    it("runs the body at each use until it loads, in a task too",
       function()
      local name = module(FAILING)
      local msg = dir .. "/" .. name .. ".lua:3: lazy boom"
      local p = U.lazy(name)
      assert.has_no_error(function() U.run() end)
      assert.is_nil(LAZY_RUNS[name])  -- nothing ran before the use
      assert.same({ false, msg }, { pcall(uses.index, p) })
      assert.equals(1, LAZY_RUNS[name])
      local t = U.spawn(function()
        local q = U.lazy(name)
        return { pcall(uses.call, q) }, { pcall(uses.pairs, p) }
      end)
      assert.same({ true, { false, msg }, { false, msg } }, { t:wait() })
      assert.equals(3, LAZY_RUNS[name])
      -- and once fixed, the same proxy loads it
      H.write(dir .. "/" .. name .. ".lua", "return { answer = 1 }")
      assert.equals(1, uses.index(p))
    end)

    it("runs nothing and reports nothing for a proxy never used",
       function()
      local name = module(FAILING)
      do
        U.lazy(name)  -- never used; the proxy is dropped
      end
      assert.has_no_error(function() U.run() end)
      collectgarbage()
      collectgarbage()
      assert.has_no_error(function() U.run() end)
      assert.same({}, reports)
      assert.is_nil(LAZY_RUNS[name])
    end)
  end)
end)
