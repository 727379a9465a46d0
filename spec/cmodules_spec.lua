-- C modules: uvrequire.require loads them exactly as stock `require`.
--
-- Fixtures: spec/fixtures/csrc/*.c, built by `make all` into
-- build/fixtures/*.so.  Each scenario runs with stock `require`, with
-- uvrequire's on the main thread and inside a task (C.compare).
local H = require "helper"
local C = require "compat_helper"
local uv = H.uv

local compare, outcome, notfound = C.compare, C.outcome, C.notfound

local FIX = "build/fixtures/"

describe("C modules:", function()
  local dir, saved

  local function p(rel) return dir .. "/" .. rel end

  local function loaderror(name, file, why)
    return ("error loading module '%s' from file '%s':\n\t%s"):format(name, file, why)
  end

  -- A crash of uvrequire on `code` fails the spec, not the whole run.
  local function nocrash(code)
    local ok, how, n = C.survives(code)
    assert(ok, ("a child lua5.4 running [[%s]] died (%s %s)"):format(code, how, n))
  end

  setup(function()
    -- have uvrequire pick its loop now, before any spec loads luv
    uv.run()
  end)

  local fresh

  before_each(function()
    fresh = C.fresh(FIX .. "?.so")
    dir, saved = fresh.dir, fresh.saved
  end)

  after_each(function() fresh.restore() end)

  it("the fixtures are built", function()
    for _, f in ipairs({ "fix1", "fix2-v2", "fix3-v3", "fix4-v4", "nosym" }) do
      local h = io.open(FIX .. f .. ".so", "rb")
      assert.is_truthy(h, FIX .. f .. ".so is missing: run make all")
      h:close()
    end
  end)

  it("the open function gets (name, path); require returns the path", function()
    local s = compare({ "fix1" }, function(req)
      return { outcome(req, "fix1"), outcome(req, "fix1") }
    end)
    local v = { tag = "fix1", nargs = 2, "fix1", FIX .. "fix1.so" }
    assert.same({ { ok = true, n = 2, v, FIX .. "fix1.so" }, { ok = true, n = 1, v } }, s)
  end)

  it("Croot: a submodule from its root library", function()
    local s = compare({ "fix1.sub", "fix1.sub-x", "fix1" }, function(req)
      return { outcome(req, "fix1.sub"), outcome(req, "fix1.sub-x"),
               package.loaded.fix1 == nil }
    end)
    assert.same({
      { ok = true, n = 2, { tag = "fix1.sub", nargs = 2, "fix1.sub", FIX .. "fix1.so" },
        FIX .. "fix1.so" },
      -- hyphen rule on a dotted name: luaopen_fix1_sub
      { ok = true, n = 2, { tag = "fix1.sub", nargs = 2, "fix1.sub-x", FIX .. "fix1.so" },
        FIX .. "fix1.so" },
      true,
    }, s)
  end)

  it("Croot: a root library without the submodule's symbol", function()
    nocrash("pcall(uv.require, 'fix1.nothere')")
    local s = compare({ "fix1.nothere" }, function(req)
      return outcome(req, "fix1.nothere")
    end)
    assert.same({ ok = false, n = 1, notfound("fix1.nothere", {
      "no field package.preload['fix1.nothere']",
      "no file '" .. p("fix1/nothere.lua") .. "'",
      "no file '" .. FIX .. "fix1/nothere.so'",
      "no module 'fix1.nothere' in file '" .. FIX .. "fix1.so'",
    }) }, s)
  end)

  it("Croot: the message goes on after a root without the symbol", function()
    nocrash("package.searchers[5] = function() end pcall(uv.require, 'fix1.nothere')")
    local s = compare({ "fix1.nothere" }, function(req)
      package.searchers[#package.searchers + 1] = function() return "after" end
      local r = outcome(req, "fix1.nothere")
      package.searchers[#package.searchers] = nil
      return r
    end)
    assert.matches("\n\tno module 'fix1.nothere' in file '" .. FIX:gsub("%p", "%%%0")
                   .. "fix1%.so'\n\tafter$", s[1])
  end)

  it("the hyphen rule: luaopen_a first, then luaopen_b", function()
    C.copy(FIX .. "fix3-v3.so", p("cx/fix3-v3.so"))
    local s = compare({ "fix2-v2", "fix3-v3", "fix4-v4", "cx.fix3-v3" }, function(req)
      local r = { outcome(req, "fix2-v2"), outcome(req, "fix3-v3"), outcome(req, "fix4-v4") }
      package.cpath = p("?.so")
      r[4] = outcome(req, "cx.fix3-v3")
      package.cpath = FIX .. "?.so"
      return r
    end)
    assert.same({
      { ok = true, n = 2, "fix2", FIX .. "fix2-v2.so" },
      { ok = true, n = 2, "v3", FIX .. "fix3-v3.so" },
      { ok = false, n = 1, loaderror("fix4-v4", FIX .. "fix4-v4.so",
        FIX .. "fix4-v4.so: undefined symbol: luaopen_v4") },
      { ok = true, n = 2, "v3", p("cx/fix3-v3.so") },
    }, s)
  end)

  it("a library without its luaopen_ symbol", function()
    C.copy(FIX .. "fix1.so", p("cx/a.so"))
    local s = compare({ "nosym", "cx.a" }, function(req)
      local r = { outcome(req, "nosym") }
      package.cpath = p("?.so")
      r[2] = outcome(req, "cx.a")
      package.cpath = FIX .. "?.so"
      return r
    end)
    assert.same({
      { ok = false, n = 1, loaderror("nosym", FIX .. "nosym.so",
        FIX .. "nosym.so: undefined symbol: luaopen_nosym") },
      { ok = false, n = 1, loaderror("cx.a", p("cx/a.so"),
        p("cx/a.so") .. ": undefined symbol: luaopen_cx_a") },
    }, s)
  end)

  it("an open function that returns nothing, or raises", function()
    local s = compare({ "fix1.none", "fix1.err" }, function(req)
      return { outcome(req, "fix1.none"), outcome(req, "fix1.err"),
               package.loaded["fix1.err"] }
    end)
    assert.same({
      { ok = true, n = 2, true, FIX .. "fix1.so" },
      { ok = false, n = 1, "fix1.err fails" },
      nil,
    }, s)
  end)

  it("a truncated library, a text file as a library, a truncated root", function()
    C.copy(FIX .. "fix1.so", p("trunc.so"), 100)
    H.files(dir, { ["text.so"] = string.rep("this is not a shared object\n", 10) })
    local s = compare({ "trunc", "text", "trunc.sub" }, function(req)
      package.cpath = p("?.so")
      local r = { outcome(req, "trunc"), outcome(req, "text"), outcome(req, "trunc.sub") }
      package.cpath = FIX .. "?.so"
      return r
    end)
    local function starts(name, file)
      return "^" .. loaderror(name, file, file .. ": "):gsub("%p", "%%%0")
    end
    assert.matches(starts("trunc", p("trunc.so")), s[1][1])
    assert.matches(starts("text", p("text.so")) .. "invalid ELF header$", s[2][1])
    assert.matches(starts("trunc.sub", p("trunc.so")), s[3][1])
    for i = 1, 3 do assert.is_false(s[i].ok) end
  end)

  it("a loaded library goes to registry._CLIBS; package.loadlib still works", function()
    local s = compare({ "fix1", "fix1.count" }, function(req)
      local d = H.tmpdir()
      local file = d .. "/fix1.so"
      C.copy(FIX .. "fix1.so", file)
      package.cpath = d .. "/?.so"
      local clibs = debug.getregistry()._CLIBS
      local before = #clibs
      local r = { load = outcome(req, "fix1") }
      local handle = clibs[file]
      r.handle = type(handle)
      r.light = handle ~= nil and getmetatable(handle) == nil
        and not pcall(debug.setuservalue, handle, 1)  -- (not a full userdata)
      r.last = #clibs == before + 1 and rawequal(clibs[#clibs], handle)
      r.star = package.loadlib(file, "*")
      local f = package.loadlib(file, "luaopen_fix1")
      r.loadlib = type(f) == "function" and f("via", "loadlib") or f
      -- one library: the counter in it goes on across require and loadlib
      r.count1 = outcome(req, "fix1.count")
      package.loaded["fix1.count"] = nil
      r.count2 = outcome(req, "fix1.count")
      r.count3 = package.loadlib(file, "luaopen_fix1_count")()
      r.kept = #clibs == before + 1 and rawequal(clibs[file], handle)
      package.cpath = FIX .. "?.so"
      H.rmtree(d)
      return C.subst(r, d, "D")
    end)
    assert.same({
      load = { ok = true, n = 2, { tag = "fix1", nargs = 2, "fix1", "D/fix1.so" }, "D/fix1.so" },
      handle = "userdata", light = true, last = true, star = true,
      loadlib = { tag = "fix1", nargs = 2, "via", "loadlib" },
      count1 = { ok = true, n = 2, 1, "D/fix1.so" },
      count2 = { ok = true, n = 2, 2, "D/fix1.so" },
      count3 = 3,
      kept = true,
    }, s)
  end)

  it("a library opened by a failed load stays in registry._CLIBS", function()
    nocrash("pcall(uv.require, 'nosym') pcall(uv.require, 'fix1.nothere')")
    local s = compare({ "nosym", "fix1.nothere", "trunc" }, function(req)
      local d = H.tmpdir()
      C.copy(FIX .. "nosym.so", d .. "/nosym.so")
      C.copy(FIX .. "fix1.so", d .. "/fix1.so")
      C.copy(FIX .. "fix1.so", d .. "/trunc.so", 100)
      package.cpath = d .. "/?.so"
      local clibs = debug.getregistry()._CLIBS
      local before = #clibs
      local r = { outcome(req, "nosym"), outcome(req, "fix1.nothere"), outcome(req, "trunc") }
      r.kept = { type(clibs[d .. "/nosym.so"]), type(clibs[d .. "/fix1.so"]),
                 type(clibs[d .. "/trunc.so"]) }
      r.added = #clibs - before
      r.order = { clibs[before + 1] == clibs[d .. "/nosym.so"],
                  clibs[before + 2] == clibs[d .. "/fix1.so"] }
      package.cpath = FIX .. "?.so"
      H.rmtree(d)
      return C.subst(r, d, "D")
    end)
    assert.same({ "userdata", "userdata", "nil" }, s.kept)
    assert.equals(2, s.added)
    assert.same({ true, true }, s.order)
    assert.equals(loaderror("nosym", "D/nosym.so",
      "D/nosym.so: undefined symbol: luaopen_nosym"), s[1][1])
    assert.matches("\n\tno module 'fix1.nothere' in file 'D/fix1.so'$", s[2][1])
  end)

  it("a library stock require opened is the one uvrequire uses", function()
    local d = H.tmpdir()
    local file = d .. "/fix1.so"
    C.copy(FIX .. "fix1.so", file)
    package.cpath = d .. "/?.so"
    package.loaded["fix1.count"] = nil
    local r1 = table.pack(H.stock("fix1.count"))
    package.loaded["fix1.count"] = nil
    local r2 = table.pack(uv.require("fix1.count"))
    package.loaded["fix1.count"] = nil
    local r3 = table.pack(H.stock("fix1.count"))
    package.loaded["fix1.count"] = nil
    H.rmtree(d)
    assert.same({ { n = 2, 1, file }, { n = 2, 2, file }, { n = 2, 3, file } },
                { r1, r2, r3 })
  end)

  describe("Debian's C modules", function()
    local before

    before_each(function()
      package.cpath = saved.cpath  -- the default search path
      before = {}
      for _, n in ipairs({ "lpeg", "lfs", "luv" }) do before[n] = package.loaded[n] end
    end)

    after_each(function()
      for _, n in ipairs({ "lpeg", "lfs", "luv" }) do package.loaded[n] = before[n] end
    end)

    -- require `name` under both and describe what came back
    local function check(name, describe_it)
      local s = compare({ name }, function(req)
        local r = outcome(req, name)
        local m = r[1]
        r[1] = type(m)
        r.info = type(m) == "table" and describe_it(m) or nil
        r.kept = type(debug.getregistry()._CLIBS[r[2]])
        return r
      end)
      local file = package.searchpath(name, package.cpath)
      assert.is_truthy(file, name .. " is not installed")
      assert.matches("/" .. name .. "%.so$", file)
      assert.same({ ok = true, n = 2, "table", file }, { ok = s.ok, n = s.n, s[1], s[2] })
      assert.equals("userdata", s.kept)
      return s.info
    end

    it("lpeg", function()
      local info = check("lpeg", function(m)
        local v = type(m.version) == "function" and m.version() or m.version
        return { version = v, match = m.match(m.C(m.P "a" ^ 1), "aaab") }
      end)
      assert.is_string(info.version)
      assert.equals("aaa", info.match)
    end)

    it("lfs", function()
      local info = check("lfs", function(m)
        return { version = m._VERSION, dir = m.attributes(".", "mode") }
      end)
      assert.matches("^LuaFileSystem", info.version)
      assert.equals("directory", info.dir)
    end)

    it("luv", function()
      local info = check("luv", function(m)
        return { version = m.version_string(), alive = type(m.loop_alive) }
      end)
      assert.matches("^%d+%.%d+%.%d+", info.version)
      assert.equals("function", info.alive)
    end)
  end)
end)
