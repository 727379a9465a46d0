-- uvrequire.require behaves exactly like stock Lua 5.4 `require`.
--
-- Every scenario runs with stock `require`, with uvrequire's on the main
-- thread, and with uvrequire's inside a task (C.compare); the results,
-- messages included, must be the same.  The key results are also checked
-- against concrete expected values, so that a change in both cannot pass.
--
-- Globals used by module bodies are named CX_* and set through _G (a
-- spec's own globals live in busted's environment, not in _G).
local H = require "helper"
local C = require "compat_helper"
local uv = H.uv

local compare, outcome, notfound = C.compare, C.outcome, C.notfound

describe("require compatibility:", function()
  local dir, saved

  -- DIR/name.lua etc.
  local function p(rel) return dir .. "/" .. rel end

  -- the preload, Lua and C lines of a root name's not-found message
  local function misses(name)
    local file = name:gsub("%.", "/")
    return {
      ("no field package.preload['%s']"):format(name),
      ("no file '%s'"):format(p(file .. ".lua")),
      ("no file '%s'"):format(p(file .. ".so")),
    }
  end

  local fresh

  before_each(function()
    fresh = C.fresh()
    dir, saved = fresh.dir, fresh.saved
  end)

  after_each(function() fresh.restore() end)

  describe("results", function()
    it("an already loaded module is returned alone, without a search", function()
      local s = compare({ "cx_al", "cx_al0" }, function(req)
        package.loaded.cx_al = "here"
        package.loaded.cx_al0 = 0
        local searchers = package.searchers
        package.searchers = "not searched"  -- would raise if looked at
        local r = {
          outcome(req, "cx_al"),
          outcome(req, "cx_al0"),
          outcome(req, "cx_al", "extra", 2),
          outcome(req, "string"),
        }
        package.searchers = searchers
        r[4][1] = (r[4][1] == string)
        return r
      end)
      assert.same({
        { ok = true, n = 1, "here" },
        { ok = true, n = 1, 0 },
        { ok = true, n = 1, "here" },
        { ok = true, n = 1, true },
      }, s)
    end)

    it("a fresh load returns the value and the file path as found", function()
      H.files(dir, { ["cx_v.lua"] = "return { tag = 'v', n = select('#', ...) }" })
      local s = compare({ "cx_v" }, function(req)
        local r1 = outcome(req, "cx_v")
        local r2 = outcome(req, "cx_v")
        return { r1 = r1, r2 = r2, kept = rawequal(r1[1], r2[1])
                 and rawequal(r1[1], package.loaded.cx_v) }
      end)
      assert.same({ ok = true, n = 2, { tag = "v", n = 2 }, p("cx_v.lua") }, s.r1)
      assert.same({ ok = true, n = 1, { tag = "v", n = 2 } }, s.r2)
      assert.is_true(s.kept)
    end)

    it("the loader gets (name, path) as '...'; extra arguments are ignored", function()
      H.files(dir, { ["cx_args.lua"] = "return table.pack(...)" })
      local s = compare({ "cx_args" }, function(req)
        local r = outcome(req, "cx_args", "extra", 42, nil)
        package.loaded.cx_args = nil
        local r2 = outcome(req, "cx_args", nil, nil)
        return { r, r2 }
      end)
      local want = { ok = true, n = 2, { n = 2, "cx_args", p("cx_args.lua") },
                     p("cx_args.lua") }
      assert.same({ want, want }, s)
    end)

    it("a module returning nothing is stored as true", function()
      H.files(dir, { ["cx_nil.lua"] = "local x = 1", ["cx_empty.lua"] = "" })
      local s = compare({ "cx_nil", "cx_empty" }, function(req)
        return {
          outcome(req, "cx_nil"), package.loaded.cx_nil, outcome(req, "cx_nil"),
          outcome(req, "cx_empty"),
        }
      end)
      assert.same({
        { ok = true, n = 2, true, p("cx_nil.lua") }, true,
        { ok = true, n = 1, true },
        { ok = true, n = 2, true, p("cx_empty.lua") },
      }, s)
    end)

    it("a module returning false stays false and is loaded again next time", function()
      H.files(dir, { ["cx_f.lua"] = "CX_COUNT = CX_COUNT + 1 return false" })
      local s = compare({ "cx_f" }, function(req)
        _G.CX_COUNT = 0
        local r1 = outcome(req, "cx_f")
        local l1 = package.loaded.cx_f
        local r2 = outcome(req, "cx_f")
        return { r1 = r1, l1 = l1, r2 = r2, count = _G.CX_COUNT }
      end)
      local want = { ok = true, n = 2, false, p("cx_f.lua") }
      assert.same({ r1 = want, l1 = false, r2 = want, count = 2 }, s)
    end)

    it("only the loader's first result counts", function()
      H.files(dir, { ["cx_multi.lua"] = "return 1, 2, 3" })
      local s = compare({ "cx_multi" }, function(req)
        return outcome(req, "cx_multi")
      end)
      assert.same({ ok = true, n = 2, 1, p("cx_multi.lua") }, s)
    end)

    it("what a module stored in package.loaded counts unless it returns non-nil", function()
      H.files(dir, {
        ["cx_st1.lua"] = "package.loaded[...] = 'stored' return 'returned'",
        ["cx_st2.lua"] = "package.loaded[...] = 'stored'",
        ["cx_st3.lua"] = "package.loaded[...] = false",
      })
      local s = compare({ "cx_st1", "cx_st2", "cx_st3" }, function(req)
        return { outcome(req, "cx_st1"), outcome(req, "cx_st2"),
                 outcome(req, "cx_st3"), package.loaded.cx_st3 }
      end)
      assert.same({
        { ok = true, n = 2, "returned", p("cx_st1.lua") },
        { ok = true, n = 2, "stored", p("cx_st2.lua") },
        { ok = true, n = 2, false, p("cx_st3.lua") },
        false,
      }, s)
    end)

    it("a module that sets package.loaded[...] can require itself (attrib.lua's C.lua)", function()
      H.files(dir, {
        ["cx_self.lua"] = "package.loaded[...] = 25\nCX_INNER = table.pack(CX_REQ(...))",
        -- the idiom word for word, through the global 'require'
        ["cx_attr.lua"] = "package.loaded[...] = 25\nrequire'cx_attr'",
      })
      local s = compare({ "cx_self", "cx_attr" }, function(req)
        _G.CX_REQ = req
        local r1 = outcome(req, "cx_self")
        local inner = _G.CX_INNER
        local old = rawget(_G, "require")
        rawset(_G, "require", req)
        local ok, r2 = pcall(function() return outcome(req, "cx_attr") end)
        rawset(_G, "require", old)
        assert(ok, r2)
        local again = outcome(req, "cx_attr")
        return { r1 = r1, inner = inner, r2 = r2, again = again }
      end)
      assert.same({
        r1 = { ok = true, n = 2, 25, p("cx_self.lua") },
        inner = { n = 1, 25 },
        r2 = { ok = true, n = 2, 25, p("cx_attr.lua") },
        again = { ok = true, n = 1, 25 },
      }, s)
    end)

    it("nested requires load each module once, in order", function()
      H.files(dir, {
        ["cx_n1.lua"] = "CX_ORDER[#CX_ORDER+1] = ... local b, f = CX_REQ('cx_n2')\n"
                     .. "return { b = b, f = f, again = CX_REQ('cx_n3') }",
        ["cx_n2.lua"] = "CX_ORDER[#CX_ORDER+1] = ... return { c = CX_REQ('cx_n3') }",
        ["cx_n3.lua"] = "CX_ORDER[#CX_ORDER+1] = ... return 'leaf'",
      })
      local s = compare({ "cx_n1", "cx_n2", "cx_n3" }, function(req)
        _G.CX_REQ, _G.CX_ORDER = req, {}
        return { outcome(req, "cx_n1"), _G.CX_ORDER }
      end)
      assert.same({
        { ok = true, n = 2, { b = { c = "leaf" }, f = p("cx_n2.lua"), again = "leaf" },
          p("cx_n1.lua") },
        { "cx_n1", "cx_n2", "cx_n3" },
      }, s)
    end)
    it("a failing nested require: the error passes through, or is caught by the body", function()
      H.files(dir, {
        ["cx_outer.lua"] = "local x = 1\nreturn CX_REQ('cx_gone')",
        ["cx_catch.lua"] = "local ok, e = pcall(CX_REQ, 'cx_gone')\n"
                        .. "local ok2, e2 = pcall(function() local v = CX_REQ('cx_gone') return v end)\n"
                        .. "return { ok, e, ok2, e2 }",
      })
      local s = compare({ "cx_outer", "cx_catch", "cx_gone" }, function(req)
        _G.CX_REQ = req
        return { outcome(req, "cx_outer"), outcome(req, "cx_catch") }
      end)
      local msg = notfound("cx_gone", misses("cx_gone"))
      assert.same({
        { ok = false, n = 1, p("cx_outer.lua") .. ":2: " .. msg },
        { ok = true, n = 2, { false, msg, false, p("cx_catch.lua") .. ":2: " .. msg },
          p("cx_catch.lua") },
      }, s)
    end)

    it("the body runs right under require: the same frames below it", function()
      H.files(dir, { ["cx_lv.lua"] = [[
local r = {}
for l = 1, 4 do
  local i = debug.getinfo(l, "Sln")
  r[l] = { what = i.what, src = i.short_src, line = i.currentline,
           name = i.name or false, namewhat = i.namewhat }
end
return r
]] })
      local s = compare({ "cx_lv" }, function(req)
        return outcome(req, "cx_lv")
      end)
      local frames = s[1]
      assert.same({ what = "main", src = p("cx_lv.lua"), line = 3, name = false,
                    namewhat = "" }, frames[1])
      assert.same({ what = "C", src = "[C]", line = -1, name = false, namewhat = "" },
                  frames[2])  -- require, called by pcall
      assert.equals("C", frames[3].what)  -- pcall
      assert.equals("Lua", frames[4].what)  -- H.outcome
    end)

    it("what a loading module stored is seen by its body and by what it requires", function()
      H.files(dir, {
        ["cx_ga.lua"] = [[
local name = ...
package.loaded[name] = "A-early"
local r = { direct = package.loaded[name] }
package.loaded.cx_gz = "z-by-a"
r.gz = table.pack(CX_REQ("cx_gz"))
r.gb = CX_REQ("cx_gb")
r.reg = debug.getregistry()._LOADED[name]
return r
]],
        ["cx_gb.lua"] = "return { seesA = package.loaded.cx_ga, viaReq = CX_REQ('cx_ga'),\n"
                     .. "         gz = package.loaded.cx_gz }",
      })
      local s = compare({ "cx_ga", "cx_gb", "cx_gz" }, function(req)
        _G.CX_REQ = req
        local r = outcome(req, "cx_ga")
        return { r, package.loaded.cx_gz }
      end)
      assert.same({
        { ok = true, n = 2, { direct = "A-early", gz = { n = 1, "z-by-a" },
          gb = { seesA = "A-early", viaReq = "A-early", gz = "z-by-a" }, reg = "A-early" },
          p("cx_ga.lua") },
        "z-by-a",
      }, s)
    end)

    it("a chain of 100 nested requires", function()
      local files, names = {}, {}
      for i = 1, 100 do
        names[i] = "cx_c" .. i
        files["cx_c" .. i .. ".lua"] = i < 100 and ("return 1 + CX_REQ('cx_c%d')"):format(i + 1)
          or "return 1"
      end
      H.files(dir, files)
      local s = compare(names, function(req)
        _G.CX_REQ = req
        local r = outcome(req, "cx_c1")
        local loaded = 0
        for _, n in ipairs(names) do
          if package.loaded[n] then loaded = loaded + 1 end
        end
        return { r, loaded }
      end)
      assert.same({ { ok = true, n = 2, 100, p("cx_c1.lua") }, 100 }, s)
    end)
  end)

  describe("names", function()
    it("numbers are accepted and converted to strings", function()
      H.files(dir, {
        ["1.lua"] = "local name, file = ... return { name = name, t = type(name), file = file }",
        ["2/5.lua"] = "local name, file = ... return { name = name, t = type(name), file = file }",
      })
      local s = compare({ "1", "2.5" }, function(req)
        local r1 = outcome(req, 1)
        local r2 = outcome(req, 2.5)
        return { r1, r2, type(package.loaded["1"]), package.loaded[1] == nil,
                 outcome(req, 1) }
      end)
      assert.same({
        { ok = true, n = 2, { name = "1", t = "string", file = p("1.lua") }, p("1.lua") },
        { ok = true, n = 2, { name = "2.5", t = "string", file = p("2/5.lua") },
          p("2/5.lua") },
        "table", true,
        { ok = true, n = 1, { name = "1", t = "string", file = p("1.lua") } },
      }, s)
    end)

    it("a name with a '\\0' in it: LOADED by the C string, the loader gets it whole", function()
      H.files(dir, {
        ["nz.lua"] = "NZ = (NZ or 0) + 1\nlocal name = ... return { name = name, n = NZ }",
      })
      local s = compare({ "nz" }, function(req)
        rawset(_G, "NZ", nil)
        local a = req("nz\0tail")
        local b = req("nz\0tail")
        local c = req("nz")
        local r = { a.name, a.n, rawequal(a, b), rawequal(b, c),
                    rawequal(package.loaded.nz, a),
                    package.loaded["nz\0tail"] == nil }
        rawset(_G, "NZ", nil)
        return r
      end)
      assert.same({ "nz\0tail", 1, true, true, true, true }, s)
    end)

    it("a name that is no string is a bad argument, worded as stock", function()
      local s = compare({}, function(req)
        local r = {}
        local args = { { n = 1, nil }, { n = 1, {} }, { n = 1, true },
                       { n = 1, setmetatable({}, { __name = "My.Type" }) },
                       { n = 1, uv.PENDING }, { n = 0 }, { n = 1, print } }
        for i, a in ipairs(args) do
          local where
          local ok, e = pcall(function()
            local require = req  -- the name the message uses
            where = debug.getinfo(1, "l").currentline + 1
            local v = require(table.unpack(a, 1, a.n))
            return v
          end)
          r[i] = { ok, e, where }
        end
        local ok, e = pcall(function() local load_it = req; return load_it({}) end)
        r[#r + 1] = { ok, e }
        return r
      end)
      local src = debug.getinfo(1, "S").short_src
      local got = { "nil", "table", "boolean", "My.Type", "light userdata",
                    "no value", "function" }
      for i, t in ipairs(got) do
        assert.equals(("%s:%d: bad argument #1 to 'require' (string expected, got %s)")
                      :format(src, s[i][3], t), s[i][2])
      end
      assert.matches("^.-: bad argument #1 to 'load_it' %(string expected, got table%)$",
                     s[#s][2])
    end)

    it("a method call with a bad self is worded as stock", function()
      local s = compare({}, function(req)
        local obj = setmetatable({}, { __index = { load = req } })
        local ok, e = pcall(function() local v = obj:load() return v end)
        return { ok, e }
      end)
      assert.is_false(s[1])
      assert.matches(": calling 'load' on bad self %(string expected, got table%)$", s[2])
    end)

    it("odd names are searched for exactly as stock searches them", function()
      local names = { "cx..a", "../cx", "cx/a", ".", "", "cx.", ".cx", "cx-a",
                      "cx.a-b", "cx?q", "cx%d%s", "cx a", string.rep("n", 5000) }
      local s = compare(names, function(req)
        local r = {}
        for i, n in ipairs(names) do r[i] = outcome(req, n) end
        return r
      end)
      assert.equals(notfound("cx..a", {
        "no field package.preload['cx..a']",
        "no file '" .. p("cx//a.lua") .. "'",
        "no file '" .. p("cx//a.so") .. "'",
        "no file '" .. p("cx.so") .. "'" }), s[1][1])
      assert.equals(notfound("", misses("")), s[5][1])
      assert.equals(notfound("cx?q", misses("cx?q")), s[10][1])
      assert.equals(notfound("cx%d%s", misses("cx%d%s")), s[11][1])
      for _, r in ipairs(s) do assert.is_false(r.ok) end
    end)

    it("names with '/' and '..' find files exactly as stock finds them", function()
      H.files(dir, { ["cx_d/m.lua"] = "return table.pack(...)" })
      local names = { "cx_d/m", "cx_d.m", "cx_d..m", "cx_d/./m" }
      local s = compare(names, function(req)
        local r = {}
        for i, n in ipairs(names) do r[i] = outcome(req, n) end
        return r
      end)
      assert.same({ ok = true, n = 2, { n = 2, "cx_d/m", p("cx_d/m.lua") },
                    p("cx_d/m.lua") }, s[1])
      assert.same({ ok = true, n = 2, { n = 2, "cx_d.m", p("cx_d/m.lua") },
                    p("cx_d/m.lua") }, s[2])
      assert.same({ ok = true, n = 2, { n = 2, "cx_d..m", p("cx_d//m.lua") },
                    p("cx_d//m.lua") }, s[3])
      assert.same({ ok = true, n = 2, { n = 2, "cx_d/./m", p("cx_d///m.lua") },
                    p("cx_d///m.lua") }, s[4])
    end)

    it("a name with an embedded zero is cut for the search, whole for the loader", function()
      H.files(dir, { ["cx_z.lua"] = "return table.pack(...)" })
      local s = compare({ "cx_z" }, function(req)
        local r = outcome(req, "cx_z\0junk")
        return { r, package.loaded["cx_z"] ~= nil, package.loaded["cx_z\0junk"] ~= nil,
                 outcome(req, "cx_zz\0junk") }
      end)
      assert.same({ ok = true, n = 2, { n = 2, "cx_z\0junk", p("cx_z.lua") }, p("cx_z.lua") },
                  s[1])
      assert.is_true(s[2])
      assert.is_false(s[3])
      assert.same({ ok = false, n = 1, notfound("cx_zz", misses("cx_zz")) }, s[4])
    end)
  end)

  describe("the package tables", function()
    it("package.preload is honoured, beats the path, and gets ':preload:'", function()
      H.files(dir, { ["cx_pre.lua"] = "return 'file'" })
      local s = compare({ "cx_pre" }, function(req)
        package.preload.cx_pre = function(...) return { args = table.pack(...) } end
        local r = outcome(req, "cx_pre")
        package.preload.cx_pre = nil
        return r
      end)
      assert.same({ ok = true, n = 2, { args = { n = 2, "cx_pre", ":preload:" } },
                    ":preload:" }, s)
    end)

    it("the preload searcher reads the registry's _PRELOAD, not package.preload", function()
      local s = compare({ "cx_pre2" }, function(req)
        local reg = debug.getregistry()._PRELOAD
        package.preload = { cx_pre2 = function() return "fake" end }
        reg.cx_pre2 = function() return "real" end
        local r = outcome(req, "cx_pre2")
        reg.cx_pre2 = nil
        package.preload = reg
        return r
      end)
      assert.same({ ok = true, n = 2, "real", ":preload:" }, s)
    end)

    it("works with the global 'package' swapped away", function()
      H.files(dir, { ["cx_sw.lua"] = "return 'sw'" })
      local s = compare({ "cx_sw", "cx_sw_missing" }, function(req)
        local real = _G.package
        _G.package = {}
        local ok, r = pcall(function()
          return { outcome(req, "cx_sw"), outcome(req, "cx_sw"),
                   outcome(req, "cx_sw_missing") }
        end)
        _G.package = real
        assert(ok, r)
        return r
      end)
      assert.same({
        { ok = true, n = 2, "sw", p("cx_sw.lua") },
        { ok = true, n = 1, "sw" },
        { ok = false, n = 1, notfound("cx_sw_missing", misses("cx_sw_missing")) },
      }, s)
    end)

    it("uses the registry's _LOADED when package.loaded is replaced", function()
      H.files(dir, { ["cx_pl.lua"] = "return 'pl'", ["cx_pl2.lua"] = "return 'file'" })
      local s = compare({ "cx_pl", "cx_pl2" }, function(req)
        local real = package.loaded
        local fake = { cx_pl2 = "fake" }
        package.loaded = fake
        local r = { outcome(req, "cx_pl"), outcome(req, "cx_pl"),
                    outcome(req, "cx_pl2"), fake.cx_pl, real.cx_pl }
        package.loaded = real
        return r
      end)
      assert.same({
        { ok = true, n = 2, "pl", p("cx_pl.lua") },
        { ok = true, n = 1, "pl" },
        { ok = true, n = 2, "file", p("cx_pl2.lua") },
        nil, "pl",
      }, s)
    end)

    it("reads and writes package.loaded through its metamethods", function()
      H.files(dir, { ["cx_mm.lua"] = "return 'mm'", ["cx_mm2.lua"] = "local x" })
      local s = compare({ "cx_mm", "cx_mm2", "cx_mm3" }, function(req)
        local side, log = { cx_mm3 = "virtual" }, {}
        local loaded = package.loaded
        local mt = getmetatable(loaded)  -- (uvrequire's guard, if any)
        setmetatable(loaded, {
          -- (only module names are logged: uvrequire.run reads 'luv')
          __index = function(_, k)
            if k:match("^cx_") then log[#log + 1] = "get " .. k end
            return side[k]
          end,
          __newindex = function(_, k, v)
            if k:match("^cx_") then log[#log + 1] = "set " .. k end
            side[k] = v
          end,
        })
        local r = { outcome(req, "cx_mm"), outcome(req, "cx_mm2"),
                    outcome(req, "cx_mm3"), outcome(req, "cx_mm") }
        setmetatable(loaded, mt)
        r.raw = { rawget(loaded, "cx_mm"), rawget(loaded, "cx_mm2") }
        r.side = side
        r.log = log
        return r
      end)
      assert.same({
        { ok = true, n = 2, "mm", p("cx_mm.lua") },
        { ok = true, n = 2, true, p("cx_mm2.lua") },
        { ok = true, n = 1, "virtual" },
        { ok = true, n = 1, "mm" },
        raw = {},
        side = { cx_mm = "mm", cx_mm2 = true, cx_mm3 = "virtual" },
        log = { "get cx_mm", "set cx_mm", "get cx_mm",
                "get cx_mm2", "get cx_mm2", "set cx_mm2",
                "get cx_mm3", "get cx_mm" },
      }, s)
    end)

    it("returns what package.loaded gives back after storing the loader's result", function()
      H.files(dir, { ["cx_wrap.lua"] = "return 'w'", ["cx_wrap2.lua"] = "local x" })
      local s = compare({ "cx_wrap", "cx_wrap2" }, function(req)
        local side = {}
        local loaded = package.loaded
        local mt = getmetatable(loaded)  -- (uvrequire's guard, if any)
        setmetatable(loaded, {
          __index = side,
          __newindex = function(_, k, v) side[k] = "<" .. tostring(v) .. ">" end,
        })
        local r = { outcome(req, "cx_wrap"), outcome(req, "cx_wrap2"),
                    outcome(req, "cx_wrap"), outcome(req, "cx_wrap2") }
        setmetatable(loaded, mt)
        return r
      end)
      assert.same({
        { ok = true, n = 2, "<w>", p("cx_wrap.lua") },
        { ok = true, n = 2, true, p("cx_wrap2.lua") },
        { ok = true, n = 1, "<w>" },
        { ok = true, n = 1, "<true>" },
      }, s)
    end)
  end)

  describe("searchers", function()
    it("calls custom searchers with the name; strings are appended, other results ignored", function()
      local s = compare({ "cx_nf" }, function(req)
        local calls = {}
        local S = package.searchers
        local n0 = #S
        table.insert(S, 1, function(...)
          calls[#calls + 1] = table.pack("first", ...) return "from first" end)
        table.insert(S, function(...)
          calls[#calls + 1] = table.pack("last", ...) return 42 end)
        table.insert(S, function() return {} end)
        table.insert(S, function() return nil, "second only" end)
        table.insert(S, function() return true, "x" end)
        table.insert(S, function() end)
        table.insert(S, function() return 4.5 end)
        local r = outcome(req, "cx_nf")
        table.remove(S, 1)
        for i = #S, n0 + 1, -1 do S[i] = nil end
        return { r = r, calls = calls }
      end)
      local lines = { "from first" }
      for _, l in ipairs(misses("cx_nf")) do lines[#lines + 1] = l end
      lines[#lines + 1] = "42"
      lines[#lines + 1] = "4.5"
      assert.same({ ok = false, n = 1, notfound("cx_nf", lines) }, s.r)
      assert.same({ { n = 2, "first", "cx_nf" }, { n = 2, "last", "cx_nf" } }, s.calls)
    end)

    it("a searcher's function result is the loader, its second result the loader data", function()
      H.files(dir, { ["cx_cs.lua"] = "return 'from the file'" })
      local s = compare({ "cx_cs", "cx_cs2", "cx_cs3" }, function(req)
        table.insert(package.searchers, 1, function(name)
          local loader = function(...) return table.pack(...) end
          if name == "cx_cs" then return loader, "mydata" end
          if name == "cx_cs2" then return loader end
          if name == "cx_cs3" then return function() end, { 1, 2 } end
        end)
        local r = { outcome(req, "cx_cs"), outcome(req, "cx_cs2"), outcome(req, "cx_cs3") }
        table.remove(package.searchers, 1)
        return r
      end)
      assert.same({
        { ok = true, n = 2, { n = 2, "cx_cs", "mydata" }, "mydata" },
        { ok = true, n = 2, { n = 2, "cx_cs2", nil }, nil },
        { ok = true, n = 2, true, { 1, 2 } },
      }, s)
    end)

    it("a custom searcher between the standard file searchers", function()
      local s = compare({ "cx_mid.sub", "cx_mid2" }, function(req)
        local S = package.searchers
        local calls = {}
        package.searchers = { S[1], S[2], function(name)
          calls[#calls + 1] = name
          if name == "cx_mid2" then return function() return "mid" end, "m" end
          return "mid says no"
        end, S[3], S[4] }
        local r = { outcome(req, "cx_mid.sub"), outcome(req, "cx_mid2"), calls }
        package.searchers = S
        return r
      end)
      assert.same({
        { ok = false, n = 1, notfound("cx_mid.sub", {
          "no field package.preload['cx_mid.sub']",
          "no file '" .. p("cx_mid/sub.lua") .. "'",
          "mid says no",
          "no file '" .. p("cx_mid/sub.so") .. "'",
          "no file '" .. p("cx_mid.so") .. "'" }) },
        { ok = true, n = 2, "mid", "m" },
        { "cx_mid.sub", "cx_mid2" },
      }, s)
    end)

    it("an error in a searcher passes through", function()
      local s = compare({ "cx_se", "cx_se2", "cx_se3" }, function(req)
        local S = package.searchers
        package.searchers = { S[1], S[2], function(name)
          if name == "cx_se" then error("searcher exploded: " .. name, 0) end
          if name == "cx_se2" then error({ code = 7 }) end
          return nil
        end, "not a function" }
        local r = { outcome(req, "cx_se"), outcome(req, "cx_se2"), outcome(req, "cx_se3") }
        package.searchers = S
        return r
      end)
      assert.same({
        { ok = false, n = 1, "searcher exploded: cx_se" },
        { ok = false, n = 1, { code = 7 } },
        { ok = false, n = 1, "attempt to call a string value" },
      }, s)
    end)

    it("'package.searchers' must be a table", function()
      local s = compare({ "cx_ns" }, function(req)
        local S = package.searchers
        local r = {}
        for _, v in ipairs({ false, "str", 1 }) do
          package.searchers = v
          r[#r + 1] = outcome(req, "cx_ns")
        end
        package.searchers = nil
        local ok, e, where = C.direct(req, "cx_ns")
        package.searchers = S
        r[#r + 1] = { ok, e, where }
        return r
      end)
      local msg = "'package.searchers' must be a table"
      for i = 1, 3 do assert.same({ ok = false, n = 1, msg }, s[i]) end
      assert.is_false(s[4][1])
      assert.equals(s[4][3] .. msg, s[4][2])
    end)

    it("searchers are read raw, and an empty list finds nothing", function()
      local s = compare({ "cx_raw" }, function(req)
        local S = package.searchers
        package.searchers = setmetatable({}, { __index = function() return S[1] end })
        local r = { outcome(req, "cx_raw") }
        package.searchers = {}
        r[2] = outcome(req, "cx_raw")
        package.searchers = S
        return r
      end)
      assert.same({ { ok = false, n = 1, "module 'cx_raw' not found:" },
                    { ok = false, n = 1, "module 'cx_raw' not found:" } }, s)
    end)

    it("standard searchers repeated many times", function()
      local s = compare({ "cx_rep.sub" }, function(req)
        local S = package.searchers
        local list = {}
        for _ = 1, 11 do list[#list + 1] = S[2] end
        for _ = 1, 3 do list[#list + 1] = S[4] list[#list + 1] = S[3] end
        for _ = 1, 11 do list[#list + 1] = S[2] end
        package.searchers = list
        local r = outcome(req, "cx_rep.sub")
        package.searchers = S
        return r
      end)
      local lua = "no file '" .. p("cx_rep/sub.lua") .. "'"
      local lines = {}
      for _ = 1, 11 do lines[#lines + 1] = lua end
      for _ = 1, 3 do
        lines[#lines + 1] = "no file '" .. p("cx_rep.so") .. "'"
        lines[#lines + 1] = "no file '" .. p("cx_rep/sub.so") .. "'"
      end
      for _ = 1, 11 do lines[#lines + 1] = lua end
      assert.same({ ok = false, n = 1, notfound("cx_rep.sub", lines) }, s)
    end)

    it("a standard searcher called through a Lua wrapper", function()
      H.files(dir, { ["cx_wr.lua"] = "return table.pack(...)" })
      local s = compare({ "cx_wr", "cx_wr2" }, function(req)
        local S = package.searchers
        package.searchers = { function(n) return S[2](n) end }
        local r = { outcome(req, "cx_wr"), outcome(req, "cx_wr2") }
        package.searchers = S
        return r
      end)
      assert.same({
        { ok = true, n = 2, { n = 2, "cx_wr", p("cx_wr.lua") }, p("cx_wr.lua") },
        { ok = false, n = 1, notfound("cx_wr2", { "no file '" .. p("cx_wr2.lua") .. "'" }) },
      }, s)
    end)
  end)

  describe("paths", function()
    it("'package.path' must be a string, checked only when the Lua searcher runs", function()
      H.files(dir, { ["cx_pp.lua"] = "return 'found'" })
      local s = compare({ "cx_pp", "cx_pre_pp" }, function(req)
        local path = package.path
        package.path = nil
        local r = { outcome(req, "cx_pp") }
        r[2] = { C.direct(req, "cx_pp") }
        package.path = {}
        r[3] = outcome(req, "cx_pp")
        package.preload.cx_pre_pp = function() return "pre" end
        r[4] = outcome(req, "cx_pre_pp")
        package.preload.cx_pre_pp = nil
        package.path = 42
        r[5] = outcome(req, "cx_pp")
        package.path = path
        return r
      end)
      local msg = "'package.path' must be a string"
      assert.same({ ok = false, n = 1, msg }, s[1])
      assert.same({ false, msg }, { s[2][1], s[2][2] })  -- no position
      assert.same({ ok = false, n = 1, msg }, s[3])
      assert.same({ ok = true, n = 2, "pre", ":preload:" }, s[4])
      assert.same({ ok = false, n = 1, notfound("cx_pp", {
        "no field package.preload['cx_pp']", "no file '42'",
        "no file '" .. p("cx_pp.so") .. "'" }) }, s[5])
    end)

    it("'package.cpath' must be a string, checked only when the Lua search misses", function()
      H.files(dir, { ["cx_cp.lua"] = "return 'found'" })
      local s = compare({ "cx_cp", "cx_cp_missing", "cx_cp.sub" }, function(req)
        local cpath = package.cpath
        package.cpath = nil
        local r = { outcome(req, "cx_cp"), outcome(req, "cx_cp_missing"),
                    outcome(req, "cx_cp.sub") }
        package.cpath = cpath
        return r
      end)
      local msg = "'package.cpath' must be a string"
      assert.same({
        { ok = true, n = 2, "found", p("cx_cp.lua") },
        { ok = false, n = 1, msg },
        { ok = false, n = 1, msg },
      }, s)
    end)

    it("reads package.cpath only when the Lua search misses", function()
      H.files(dir, { ["cx_rd.lua"] = "return 'rd'" })
      local s = compare({ "cx_rd", "cx_rd_missing" }, function(req)
        local P = package
        local cpath = P.cpath
        local reads = {}
        P.cpath = nil
        setmetatable(P, { __index = function(_, k)
          reads[#reads + 1] = k
          if k == "cpath" then return cpath end
        end })
        local r = { outcome(req, "cx_rd"), reads }
        reads = {}
        r[3] = outcome(req, "cx_rd_missing")
        r[4] = reads
        setmetatable(P, nil)
        P.cpath = cpath
        return r
      end)
      assert.same({ ok = true, n = 2, "rd", p("cx_rd.lua") }, s[1])
      assert.same({}, s[2])
      assert.same({ ok = false, n = 1, notfound("cx_rd_missing", misses("cx_rd_missing")) },
                  s[3])
      assert.same({ "cpath" }, s[4])
    end)

    it("package.path from a metamethod; a searcher that changes it first", function()
      H.files(dir, { ["alt/cx_mp.lua"] = "return ...", ["alt2/cx_mp2.lua"] = "return ..." })
      local s = compare({ "cx_mp", "cx_mp2" }, function(req)
        local P = package
        local path = P.path
        P.path = nil
        setmetatable(P, { __index = function(_, k)
          if k == "path" then return p("alt/?.lua") end
        end })
        local r = { outcome(req, "cx_mp") }
        setmetatable(P, nil)
        P.path = path
        table.insert(P.searchers, 1, function() P.path = p("alt2/?.lua") end)
        r[2] = outcome(req, "cx_mp2")
        table.remove(P.searchers, 1)
        P.path = path
        return r
      end)
      assert.same({
        { ok = true, n = 2, "cx_mp", p("alt/cx_mp.lua") },
        { ok = true, n = 2, "cx_mp2", p("alt2/cx_mp2.lua") },
      }, s)
    end)

    it("the not-found message, with path '?.lua;?/?' and cpath '?.so;?/init'", function()
      local s = compare({ "cx.sub.m", "cx_root" }, function(req)
        package.path = p("?.lua;") .. p("?/?")
        package.cpath = p("?.so;") .. p("?/init")
        return { outcome(req, "cx.sub.m"), outcome(req, "cx_root") }
      end)
      assert.same({ ok = false, n = 1, notfound("cx.sub.m", {
        "no field package.preload['cx.sub.m']",
        "no file '" .. p("cx/sub/m.lua") .. "'",
        "no file '" .. p("cx/sub/m/cx/sub/m") .. "'",
        "no file '" .. p("cx/sub/m.so") .. "'",
        "no file '" .. p("cx/sub/m/init") .. "'",
        "no file '" .. p("cx.so") .. "'",
        "no file '" .. p("cx/init") .. "'",
      }) }, s[1])
      assert.same({ ok = false, n = 1, notfound("cx_root", {
        "no field package.preload['cx_root']",
        "no file '" .. p("cx_root.lua") .. "'",
        "no file '" .. p("cx_root/cx_root") .. "'",
        "no file '" .. p("cx_root.so") .. "'",
        "no file '" .. p("cx_root/init") .. "'",
      }) }, s[2])
    end)

    it("'not found' has the caller's position when called from Lua", function()
      local s = compare({ "cx_nf" }, function(req)
        local ok, e, where = C.direct(req, "cx_nf")
        local ok2, e2 = C.tail(req, "cx_nf")
        return { ok = ok, e = e, where = where, ok2 = ok2, e2 = e2,
                 r = outcome(req, "cx_nf") }
      end)
      local msg = notfound("cx_nf", misses("cx_nf"))
      assert.matches("^spec/compat_helper%.lua:%d+: $", s.where)
      assert.is_false(s.ok)
      assert.equals(s.where .. msg, s.e)
      assert.is_false(s.ok2)
      assert.matches("^spec/compat_helper%.lua:%d+: module 'cx_nf' not found:", s.e2)
      assert.same({ ok = false, n = 1, msg }, s.r)
    end)

    it("paths '??\\0?' and ''", function()
      local s = compare({ "cx_zp", "cx_zp.sub" }, function(req)
        package.path = "??\0?"
        package.cpath = ""
        local r = { outcome(req, "cx_zp"), outcome(req, "cx_zp.sub") }
        package.path = ""
        package.cpath = "??\0?"
        r[3] = outcome(req, "cx_zp.sub")
        return r
      end)
      assert.same({
        { ok = false, n = 1, notfound("cx_zp", {
          "no field package.preload['cx_zp']", "no file 'cx_zpcx_zp'", "no file ''" }) },
        { ok = false, n = 1, notfound("cx_zp.sub", {
          "no field package.preload['cx_zp.sub']", "no file 'cx_zp/subcx_zp/sub'",
          "no file ''", "no file ''" }) },
        { ok = false, n = 1, notfound("cx_zp.sub", {
          "no field package.preload['cx_zp.sub']", "no file ''",
          "no file 'cx_zp/subcx_zp/sub'", "no file 'cx_zpcx_zp'" }) },
      }, s)
    end)

    it("empty templates and a trailing ';'", function()
      local s = compare({ "cx_semi" }, function(req)
        package.path = ";" .. p("?.lua") .. ";;"
        package.cpath = p("?.so") .. ";"
        return outcome(req, "cx_semi")
      end)
      assert.same({ ok = false, n = 1, notfound("cx_semi", {
        "no field package.preload['cx_semi']", "no file ''",
        "no file '" .. p("cx_semi.lua") .. "'", "no file ''", "no file ''",
        "no file '" .. p("cx_semi.so") .. "'", "no file ''" }) }, s)
    end)

    it("a template list of 2000 entries", function()
      local t = {}
      for i = 1, 2000 do t[i] = p("t" .. i .. "/?.lua") end
      local list = table.concat(t, ";")
      local s = compare({ "cx_many" }, function(req)
        package.path = list
        return outcome(req, "cx_many")
      end)
      local lines = { "no field package.preload['cx_many']" }
      for i = 1, 2000 do lines[#lines + 1] = "no file '" .. p("t" .. i .. "/cx_many.lua") .. "'" end
      lines[#lines + 1] = "no file '" .. p("cx_many.so") .. "'"
      assert.same({ ok = false, n = 1, notfound("cx_many", lines) }, s)
    end)

    it("a template list of 2000 entries finds the last one", function()
      local t = {}
      for i = 1, 2000 do t[i] = p("t" .. i .. "/?.lua") end
      H.files(dir, { ["t2000/cx_last.lua"] = "return ..." })
      local list = table.concat(t, ";")
      local s = compare({ "cx_last" }, function(req)
        package.path = list
        return outcome(req, "cx_last")
      end)
      assert.same({ ok = true, n = 2, "cx_last", p("t2000/cx_last.lua") }, s)
    end)

    it("templates with several marks, and with none", function()
      H.files(dir, { ["cx_qcx_qxcx_q"] = "return { ... }", ["fixed.lua"] = "return { ... }" })
      local s = compare({ "cx_q", "cx_any1", "cx_any2" }, function(req)
        package.path = p("??x?")
        local r = { outcome(req, "cx_q") }
        package.path = p("fixed.lua")
        r[2] = outcome(req, "cx_any1")
        r[3] = outcome(req, "cx_any2")
        return r
      end)
      assert.same({
        { ok = true, n = 2, { "cx_q", p("cx_qcx_qxcx_q") }, p("cx_qcx_qxcx_q") },
        { ok = true, n = 2, { "cx_any1", p("fixed.lua") }, p("fixed.lua") },
        { ok = true, n = 2, { "cx_any2", p("fixed.lua") }, p("fixed.lua") },
      }, s)
    end)

    it("sub-packages: P1/init.lua and P1.xuxu", function()
      H.files(dir, {
        ["P1/init.lua"] = "CX_RUN[#CX_RUN+1] = ... return { ... }",
        ["P1/xuxu.lua"] = "CX_RUN[#CX_RUN+1] = ... return { ... }",
      })
      local s = compare({ "P1", "P1.xuxu" }, function(req)
        _G.CX_RUN = {}
        package.path = p("?.lua;") .. p("?/init.lua")
        local r = { outcome(req, "P1.xuxu") }
        r[2] = package.loaded.P1 == nil
        r[3] = outcome(req, "P1")
        r[4] = _G.CX_RUN
        return r
      end)
      assert.same({
        { ok = true, n = 2, { "P1.xuxu", p("P1/xuxu.lua") }, p("P1/xuxu.lua") },
        true,
        { ok = true, n = 2, { "P1", p("P1/init.lua") }, p("P1/init.lua") },
        { "P1.xuxu", "P1" },
      }, s)
    end)

    it("a directory where a file is expected", function()
      assert(os.execute("mkdir -p '" .. p("cx_dir.lua") .. "' '" .. p("cx_cdir.so") .. "'"))
      H.files(dir, { ["alt/cx_dir.lua"] = "return 'alt'" })
      local s = compare({ "cx_dir", "cx_cdir" }, function(req)
        package.path = p("?.lua;") .. p("alt/?.lua")
        return { outcome(req, "cx_dir"), outcome(req, "cx_cdir") }
      end)
      assert.same({
        { ok = false, n = 1, ("error loading module 'cx_dir' from file '%s':\n\t"
          .. "cannot read %s: Is a directory"):format(p("cx_dir.lua"), p("cx_dir.lua")) },
        { ok = false, n = 1, ("error loading module 'cx_cdir' from file '%s':\n\t"
          .. "%s: cannot read file data: Is a directory"):format(p("cx_cdir.so"),
                                                                 p("cx_cdir.so")) },
      }, s)
    end)
  end)

  describe("loading Lua files", function()
    it("a compile error is wrapped with the module and file", function()
      local long = string.rep("d", 70) .. "/cx_long.lua"
      H.files(dir, { ["cx_bad.lua"] = "return +", [long] = "local x = = 1",
                     ["cx_junk.lua"] = "this is not Lua", ["cx_bin0.lua"] = "\0\1\2 @@" })
      local s = compare({ "cx_bad", "cx_long", "cx_junk", "cx_bin0" }, function(req)
        local r = { outcome(req, "cx_bad"), outcome(req, "cx_junk"), outcome(req, "cx_bin0") }
        local path = package.path
        package.path = p(string.rep("d", 70) .. "/?.lua")
        r[4] = outcome(req, "cx_long")
        package.path = path
        r[5] = package.loaded.cx_bad
        return r
      end)
      local function wrap(name, file, msg)
        return ("error loading module '%s' from file '%s':\n\t%s"):format(name, file, msg)
      end
      assert.same({ ok = false, n = 1, wrap("cx_bad", p("cx_bad.lua"),
        p("cx_bad.lua") .. ":1: unexpected symbol near '+'") }, s[1])
      assert.same({ ok = false, n = 1, wrap("cx_junk", p("cx_junk.lua"),
        p("cx_junk.lua") .. ":1: syntax error near 'is'") }, s[2])
      -- (token 0 gets no "near" part)
      assert.same({ ok = false, n = 1, wrap("cx_bin0", p("cx_bin0.lua"),
        p("cx_bin0.lua") .. ":1: unexpected symbol") }, s[3])
      -- a chunk name longer than LUA_IDSIZE is shortened with "..."
      assert.equals(wrap("cx_long", p(long), "..." .. p(long):sub(-56)
        .. ":1: unexpected symbol near '='"), s[4][1])
      assert.is_nil(s[5])
    end)

    it("a runtime error in the body passes through unchanged", function()
      H.files(dir, {
        ["cx_rt1.lua"] = "local x = 1\nerror('boom')",
        ["cx_rt2.lua"] = "CX_ERR = { code = 7 } error(CX_ERR)",
        ["cx_rt3.lua"] = "error('plain', 0)",
        ["cx_rt4.lua"] = "local t = nil\nreturn t.x",
        ["cx_rt5.lua"] = "error()",
      })
      local names = { "cx_rt1", "cx_rt2", "cx_rt3", "cx_rt4", "cx_rt5" }
      local s = compare(names, function(req)
        local r = {}
        for i, n in ipairs(names) do r[i] = outcome(req, n) end
        r.same = rawequal(r[2][1], _G.CX_ERR)
        return r
      end)
      assert.same({
        { ok = false, n = 1, p("cx_rt1.lua") .. ":2: boom" },
        { ok = false, n = 1, { code = 7 } },
        { ok = false, n = 1, "plain" },
        { ok = false, n = 1, p("cx_rt4.lua") .. ":2: attempt to index a nil value (local 't')" },
        { ok = false, n = 1, nil },
        same = true,
      }, s)
    end)

    it("a body that failed without storing anything runs again next time", function()
      H.files(dir, { ["cx_again.lua"] = "CX_RUNS = CX_RUNS + 1 error('run ' .. CX_RUNS, 0)" })
      local s = compare({ "cx_again" }, function(req)
        _G.CX_RUNS = 0
        local r = { outcome(req, "cx_again"), outcome(req, "cx_again") }
        r[3] = package.loaded.cx_again == nil
        r[4] = _G.CX_RUNS
        return r
      end)
      assert.same({ { ok = false, n = 1, "run 1" }, { ok = false, n = 1, "run 2" }, true, 2 },
                  s)
    end)

    it("a UTF-8 BOM, a '#' first line (line numbers kept), CRLF", function()
      H.files(dir, {
        ["cx_bom.lua"] = "\xEF\xBB\xBFreturn 'bom'",
        ["cx_bomsh.lua"] = "\xEF\xBB\xBF#!/usr/bin/lua\nreturn debug.getinfo(1, 'l').currentline",
        ["cx_sh.lua"] = "#!/usr/bin/env lua\nlocal x = 1\nerror('line three')",
        ["cx_shsyn.lua"] = "# comment\n\nlocal x =",
        ["cx_hash.lua"] = "#!only a comment",
        ["cx_hashnl.lua"] = "#\n",
        ["cx_crlf.lua"] = "local a = 1\r\nlocal b = 2\r\nerror('crlf')\r\n",
        ["cx_shcrlf.lua"] = "#!lua\r\nlocal a\r\nerror('sh crlf')",
        ["cx_bomonly.lua"] = "\xEF\xBB\xBF",
      })
      local names = { "cx_bom", "cx_bomsh", "cx_sh", "cx_shsyn", "cx_hash", "cx_hashnl",
                      "cx_crlf", "cx_shcrlf", "cx_bomonly" }
      local s = compare(names, function(req)
        local r = {}
        for i, n in ipairs(names) do r[i] = outcome(req, n) end
        return r
      end)
      assert.same({
        { ok = true, n = 2, "bom", p("cx_bom.lua") },
        { ok = true, n = 2, 2, p("cx_bomsh.lua") },
        { ok = false, n = 1, p("cx_sh.lua") .. ":3: line three" },
        { ok = false, n = 1, ("error loading module 'cx_shsyn' from file '%s':\n\t%s:3: "
          .. "unexpected symbol near <eof>"):format(p("cx_shsyn.lua"), p("cx_shsyn.lua")) },
        { ok = true, n = 2, true, p("cx_hash.lua") },
        { ok = true, n = 2, true, p("cx_hashnl.lua") },
        { ok = false, n = 1, p("cx_crlf.lua") .. ":3: crlf" },
        { ok = false, n = 1, p("cx_shcrlf.lua") .. ":3: sh crlf" },
        { ok = true, n = 2, true, p("cx_bomonly.lua") },
      }, s)
    end)

    it("a partial BOM is not skipped", function()
      H.files(dir, {
        ["cx_pbom.lua"] = "\xEF\xBBreturn 1",
        ["cx_pbom1.lua"] = "\xEFreturn 1",
        ["cx_pbomsh.lua"] = "\xEF\xBB#x\nreturn 1",
        ["cx_pbombin.lua"] = "\xEF\xBB" .. string.dump(function() end),
      })
      local names = { "cx_pbom", "cx_pbom1", "cx_pbomsh", "cx_pbombin" }
      local s = compare(names, function(req)
        local r = {}
        for i, n in ipairs(names) do r[i] = outcome(req, n) end
        return r
      end)
      for i, n in ipairs(names) do
        assert.same({ ok = false, n = 1, ("error loading module '%s' from file '%s':\n\t"
          .. "%s:1: unexpected symbol near '<\\239>'"):format(n, p(n .. ".lua"),
                                                            p(n .. ".lua")) }, s[i])
      end
    end)

    it("binary chunks: plain, stripped, after '#' or a BOM, broken", function()
      local function body(...)
        return { tag = "bin", args = table.pack(...) }
      end
      local function fails() error("stripped") end
      local bin = string.dump(body)
      H.files(dir, {
        ["cx_bin.lc"] = bin,
        ["cx_bins.lc"] = string.dump(body, true),
        ["cx_binf.lc"] = string.dump(fails, true),
        ["cx_binsh.lc"] = "#!/usr/bin/lua\n" .. bin,
        ["cx_binbom.lc"] = "\xEF\xBB\xBF" .. bin,
        ["cx_binbomsh.lc"] = "\xEF\xBB\xBF#x\n" .. bin,
        ["cx_bintr.lc"] = bin:sub(1, 20),
        ["cx_binhdr.lc"] = "\27Lua\x53",
      })
      local names = { "cx_bin", "cx_bins", "cx_binf", "cx_binsh", "cx_binbom",
                      "cx_binbomsh", "cx_bintr", "cx_binhdr" }
      local s = compare(names, function(req)
        package.path = p("?.lc")
        local r = {}
        for i, n in ipairs(names) do r[i] = outcome(req, n) end
        return r
      end)
      local function ok(n)
        return { ok = true, n = 2, { tag = "bin", args = { n = 2, n, p(n .. ".lc") } },
                 p(n .. ".lc") }
      end
      local function bad(n, why)
        return { ok = false, n = 1, ("error loading module '%s' from file '%s':\n\t%s: %s")
          :format(n, p(n .. ".lc"), p(n .. ".lc"), why) }
      end
      assert.same({
        ok("cx_bin"), ok("cx_bins"), { ok = false, n = 1, "stripped" },  -- no line info
        ok("cx_binsh"), ok("cx_binbom"), ok("cx_binbomsh"),
        bad("cx_bintr", "bad binary format (truncated chunk)"),
        bad("cx_binhdr", "bad binary format (version mismatch)"),
      }, s)
    end)

    it("a binary chunk's upvalues: the first one is set to the globals", function()
      local up = 5
      local function f() return up, CX_NOWHERE end
      assert.equals(5, f())
      H.files(dir, { ["cx_binup.lc"] = string.dump(f) })
      local s = compare({ "cx_binup" }, function(req)
        package.path = p("?.lc")
        local r = outcome(req, "cx_binup")
        r[1] = type(r[1]) == "string" and r[1]:gsub("^.-:%d+: ", "") or r[1]
        return r
      end)
      assert.same({ ok = false, n = 1, "attempt to index a nil value (upvalue '_ENV')" }, s)
    end)

    it("the chunk is named '@path' and keeps its debug information", function()
      H.files(dir, { ["cx_src.lua"] = [[
local a = 1
local info = debug.getinfo(1, "Slu")
local fn = debug.getinfo(1, "f").func
local lines = {}
for l in pairs(debug.getinfo(fn, "L").activelines) do lines[#lines + 1] = l end
table.sort(lines)
return {
  source = info.source, short_src = info.short_src, what = info.what,
  linedefined = info.linedefined, lastlinedefined = info.lastlinedefined,
  currentline = info.currentline, nups = info.nups, nparams = info.nparams,
  isvararg = info.isvararg, upname = debug.getupvalue(fn, 1),
  env = select(2, debug.getupvalue(fn, 1)) == _G,
  loc = debug.getlocal(1, 1), lines = lines,
}
]] })
      local s = compare({ "cx_src" }, function(req)
        return outcome(req, "cx_src")
      end)
      assert.same({ ok = true, n = 2, {
        source = "@" .. p("cx_src.lua"), short_src = p("cx_src.lua"), what = "main",
        linedefined = 0, lastlinedefined = 0, currentline = 2, nups = 1, nparams = 0,
        isvararg = true, upname = "_ENV", env = true, loc = "a",
        lines = s[1].lines,
      }, p("cx_src.lua") }, s)
      assert.same({ 1, 2, 3 }, { s[1].lines[1], s[1].lines[2], s[1].lines[3] })
    end)
  end)

  describe("uvrequire's own machinery", function()
    it("its second result is the path its executor found, as stock's", function()
      H.files(dir, { ["cx_mine.lua"] = "return 'mine'" })
      package.loaded.cx_mine = nil
      local r = table.pack(uv.require("cx_mine"))
      package.loaded.cx_mine = nil
      local st = table.pack(H.stock("cx_mine"))
      package.loaded.cx_mine = nil
      assert.same({ n = 2, "mine", p("cx_mine.lua") }, r)
      assert.same(st, r)
      assert.equals(package.searchpath("cx_mine", package.path), r[2])
    end)

    it("in a task it waits for the executor by yielding; stock does not", function()
      H.files(dir, { ["cx_y.lua"] = "return { ... }" })
      package.loaded.cx_y = nil
      local got
      local t = uv.spawn(function() got = table.pack(uv.require("cx_y")) end)
      assert.equals("suspended", coroutine.status(t.co))
      assert.equals(1, uv.loopinfo().jobs)
      uv.run()
      assert.equals("dead", coroutine.status(t.co))
      package.loaded.cx_y = nil
      -- any other coroutine: synchronous, as stock
      local co = coroutine.create(function() return table.pack(uv.require("cx_y")) end)
      local ok1, r1 = coroutine.resume(co)
      assert.is_true(ok1)
      assert.equals("dead", coroutine.status(co))
      assert.same(r1, got)
      package.loaded.cx_y = nil
      local co2 = coroutine.create(function() return table.pack(H.stock("cx_y")) end)
      local ok2, r2 = coroutine.resume(co2)
      package.loaded.cx_y = nil
      assert.is_true(ok2)
      assert.equals("dead", coroutine.status(co2))
      assert.same({ n = 2, { "cx_y", p("cx_y.lua") }, p("cx_y.lua") }, got)
      assert.same(r2, got)
    end)
  end)
end)
