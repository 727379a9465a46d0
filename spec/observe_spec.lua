-- Observability: the blocking-require detector, uvrequire.stats(),
-- UVREQUIRE_IMPORTTIME's table and UVREQUIRE_TRACE's Chrome trace.
-- Each case is a child lua5.4 whose stdout and stderr are asserted
-- exactly (times are masked where they vary).
local H = require "helper"
local K = require "child_helper"

local function run(dir, src, env, pre)
  return K.run(dir, src, pre, { env = env })
end

-- replace every run of digits after a mark by '#', so that times and
-- numbers that vary compare exactly
local function mask(s)
  return (s:gsub("%d+%.%d+ ms", "# ms"):gsub("time:%s+%d+ |%s+%d+ |",
                                              "time: # | # |"))
end

describe("observability", function()
  local dir

  before_each(function()
    dir = H.tmpdir()
    H.files(dir, {
      ["oa.lua"] = "return { name = 'oa', b = require 'ob' }",
      ["ob.lua"] = "return { name = 'ob', c = require 'oc' }",
      ["oc.lua"] = "return { name = 'oc' }",
      ["od.lua"] = "return { name = 'od' }",
    })
  end)

  after_each(function() H.rmtree(dir) end)

  describe("the detector", function()
    local CB = [[
local uv = require "luv"
local t = uv.new_timer()
t:start(0, 0, function()
  t:close()
  require "od"   -- line 5: a blocking require in a luv callback
  require "od"   -- line 6: already loaded: not reported
  package.loaded.od = nil
  require "od"   -- line 8: another site: reported
  package.loaded.od = nil
  require "od"   -- line 10: reported
end)
uv.run()
print("done")
]]

    it("warns once per module and site, with the caller's file:line",
       function()
      local r = run(dir, CB, "UVREQUIRE_DETECT=", { K.install() })
      assert.equals("done\n", r.out)
      assert.equals(
        "uvrequire: blocking require of 'od' inside the event loop at " ..
        "prog.lua:5 (blocked it for # ms)\n" ..
        "uvrequire: blocking require of 'od' inside the event loop at " ..
        "prog.lua:8 (blocked it for # ms)\n" ..
        "uvrequire: blocking require of 'od' inside the event loop at " ..
        "prog.lua:10 (blocked it for # ms)\n", mask(r.err))
    end)

    it("reports a nested load once, at the outermost require", function()
      local r = run(dir, [[
local uv = require "luv"
local t = uv.new_timer()
t:start(0, 0, function() t:close(); require "oa" end)
uv.run()
]], "UVREQUIRE_DETECT=", { K.install() })
      assert.equals("uvrequire: blocking require of 'oa' inside the event " ..
                    "loop at prog.lua:3 (blocked it for # ms)\n", mask(r.err))
    end)

    it("strict mode raises instead of loading", function()
      local r = run(dir, [[
local uv = require "luv"
local t = uv.new_timer()
t:start(0, 0, function()
  t:close()
  print(pcall(require, "od"))
  print(package.loaded.od)
end)
uv.run()
]], "UVREQUIRE_DETECT=", { K.install("{ detect = 'strict' }") })
      assert.equals("false\tblocking require of 'od' inside the event " ..
                    "loop at prog.lua:5\nnil\n", r.out)
      assert.equals("", r.err)
    end)

    it("UVREQUIRE_DETECT overrides the option; 'off' is silent", function()
      local r = run(dir, CB, "UVREQUIRE_DETECT=off",
                    { K.install("{ detect = 'strict' }") })
      assert.equals("done\n", r.out)
      assert.equals("", r.err)
    end)

    it("is silent at top level, in tasks, and for loaded modules",
       function()
      local r = run(dir, [[
local uv = require "luv"
local U = require "uvrequire"
require "oc"                        -- top level, before the loop
local t = U.spawn(function() return require "oa" end)
local cb = uv.new_timer()
cb:start(0, 0, function() cb:close(); require "oc" end)  -- loaded
uv.run()
print(t:result())
]], "UVREQUIRE_DETECT=", { "require 'luv'", K.install() })
      assert.matches("^true\ttable: ", r.out)
      assert.equals("", r.err)
    end)

    it("loads in the caller's own require: errors and tracebacks are " ..
       "stock's", function()
      H.files(dir, {
        ["oe.lua"] = "error('boom', 3)",   -- names require's caller
      })
      local src = [[
local uv = require "luv"
local t = uv.new_timer()
t:start(0, 0, function()
  t:close()
  print(select(2, pcall(function() return require "nosuch" end))
        :match("^[^\n]*"))
  print(select(2, pcall(function() return require "oe" end)))
  local _, tb = xpcall(function() return require "nosuch2" end,
                       debug.traceback)
  print((tb:gsub("^[^\n]*\n", ""):gsub("\n\t[^\n]*/busted[^\n]*", "")))
  print(require "od".name)
end)
uv.run()
]]
      local stock = run(dir, src, "UVREQUIRE_DETECT=")
      local ur = run(dir, src, "UVREQUIRE_DETECT=", { K.install() })
      assert.equals(stock.out, ur.out)
      assert.matches("^prog.lua:5: module 'nosuch' not found:\n" ..
                     "prog.lua:7: boom\n", stock.out)
      assert.equals("", stock.err)
      assert.equals(
        "uvrequire: blocking require of 'nosuch' inside the event loop " ..
        "at prog.lua:5 (blocked it for # ms)\n" ..
        "uvrequire: blocking require of 'oe' inside the event loop " ..
        "at prog.lua:7 (blocked it for # ms)\n" ..
        "uvrequire: blocking require of 'nosuch2' inside the event loop " ..
        "at prog.lua:8 (blocked it for # ms)\n" ..
        "uvrequire: blocking require of 'od' inside the event loop " ..
        "at prog.lua:11 (blocked it for # ms)\n", mask(ur.err))
    end)

    it("reports a failed load at once, even in a coroutine that died of " ..
       "it and was never closed", function()
      local r = run(dir, [[
local uv = require "luv"
local t = uv.new_timer()
t:start(0, 0, function()
  t:close()
  local co = coroutine.create(function() return require "nosuch" end)
  print(coroutine.resume(co) == false, coroutine.status(co))
  io.stderr:write("--\n")
  require "od"   -- reported too: the detector is not left muted
end)
uv.run()
]], "UVREQUIRE_DETECT=", { K.install() })
      assert.equals("true\tdead\n", r.out)
      assert.equals(
        "uvrequire: blocking require of 'nosuch' inside the event loop " ..
        "at prog.lua:5 (blocked it for # ms)\n--\n" ..
        "uvrequire: blocking require of 'od' inside the event loop " ..
        "at prog.lua:8 (blocked it for # ms)\n", mask(r.err))
    end)

    it("on_block(fn) gets the report instead of stderr", function()
      local r = run(dir, [[
local uv = require "luv"
require("uvrequire").on_block(function(msg, name, site, ms)
  print(name, site, type(ms), msg == ("blocking require of '" .. name ..
        "' inside the event loop at " .. site .. " (blocked it for " ..
        ("%.1f"):format(ms) .. " ms)"))
end)
local t = uv.new_timer()
t:start(0, 0, function() t:close(); require "od" end)
uv.run()
print(pcall(require("uvrequire").on_block, 5))
]], "UVREQUIRE_DETECT=", { K.install() })
      assert.equals("od\tprog.lua:8\tnumber\ttrue\n" ..
                    "false\tbad argument #1 to 'on_block' (function " ..
                    "expected, got number)\n", r.out)
      assert.equals("", r.err)
    end)

    it("names a lazy proxy's use as the site, not uvrequire's file",
       function()
      local r = run(dir, [[
local uv = require "luv"
local ur = require "uvrequire"
ur.on_block(function(msg, name, site) print(name, site) end)
local oa, od = ur.lazy "oa", ur.lazy "od"
local t = uv.new_timer()
t:start(0, 0, function()
  t:close()
  print(oa.name)   -- line 8
  print(#tostring(od) > 0)   -- line 9
end)
uv.run()
]], "UVREQUIRE_DETECT= UVREQUIRE_PREFETCH=off", { K.install() })
      assert.equals("oa\tprog.lua:8\noa\nod\tprog.lua:9\ntrue\n", r.out)
      assert.equals("", r.err)
    end)

    it("names the caller of uvrequire.sync as the site", function()
      local r = run(dir, [[
local uv = require "luv"
local ur = require "uvrequire"
ur.on_block(function(msg, name, site) print(name, site) end)
local t = uv.new_timer()
t:start(0, 0, function()
  t:close()
  ur.sync(require, "od")   -- line 7
end)
uv.run()
]], "UVREQUIRE_DETECT=", { K.install() })
      assert.equals("od\tprog.lua:7\n", r.out)
      assert.equals("", r.err)
    end)
  end)

  describe("stats()", function()
    it("has one record per module, in load order, with every field",
       function()
      local r = run(dir, [[
local U = require "uvrequire"
package.preload.op = function() return "p" end
require "op"
local t = U.spawn(function() return require "oa" end)
U.run()
local keys = { "name", "path", "searcher", "parent", "cached", "bytes",
  "search_ms", "read_ms", "compile_ms", "load_ms", "body_ms", "wait_ms",
  "stall_ms" }
for _, rec in ipairs(U.stats()) do
  local line = {}
  for _, k in ipairs(keys) do
    local v = rec[k]
    if k:match("_ms$") then v = type(v) == "number" and v >= 0 and "t" or "?"
    elseif k == "path" and v then v = v:match("[^/]+$")
    elseif k == "bytes" then v = v > 0 and "b" or "0" end
    line[#line + 1] = tostring(v)
  end
  print(table.concat(line, " "))
end
print(#U.stats(), #U.stats())  -- reading them changes nothing
]], "", { K.install() })
      assert.equals(
        "op :preload: preload nil false 0 t t t t t t t\n" ..
        "oc oc.lua lua ob false b t t t t t t t\n" ..
        "ob ob.lua lua oa false b t t t t t t t\n" ..
        "oa oa.lua lua nil false b t t t t t t t\n" ..
        "4\t4\n", r.out)
      assert.equals("", r.err)
    end)

    it("counts a task's Lua-thread work as stall only while a loop runs",
       function()
      local r = run(dir, [[
local U = require "uvrequire"
require "od"                       -- top level, no loop: no stall
local t = U.spawn(function() return require "oc" end)
U.run()
local s = U.stats()
print(s[1].name, s[1].stall_ms == 0, s[2].name, s[2].stall_ms > 0)
]], "", { K.install() })
      assert.equals("od\ttrue\toc\ttrue\n", r.out)
    end)
  end)

  it("UVREQUIRE_IMPORTTIME prints Python's table, nested by two spaces",
     function()
    local r = run(dir, [[
local U = require "uvrequire"
local t = U.spawn(function() return require "oa" end)
U.run()
require "od"
]], "UVREQUIRE_IMPORTTIME=1", { K.install() })
    assert.equals(
      "import time: self [us] | cumulative | imported package\n" ..
      "import time: # | # |       oc\n" ..
      "import time: # | # |     ob\n" ..
      "import time: # | # |   oa\n" ..
      "import time: # | # |   od\n", mask(r.err))
  end)

  it("UVREQUIRE_TRACE writes a Chrome trace at exit", function()
    local file = dir .. "/trace.json"
    local r = run(dir, [[
local U = require "uvrequire"
local t = U.spawn(function() return require "oa" end)
U.run()
]], "UVREQUIRE_TRACE=" .. file, { K.install() })
    assert.equals("", r.err)
    local f = assert(io.open(file))
    local text = f:read("a")
    f:close()
    assert.matches('^{"traceEvents": %[', text)
    assert.matches('%]}\n$', text)
    -- per module: the whole import and its phases, on the Lua thread
    -- (tid 0) and on executor threads (tid >= 1)
    for _, m in ipairs { "oa", "ob", "oc" } do
      assert.matches('{"name":"' .. m .. '","cat":"import","ph":"X",' ..
                     '"pid":1,"tid":0,"ts":[%d.]+,"dur":[%d.]+,"args":' ..
                     '{"module":"' .. m .. '","path":"[^"]*/' .. m ..
                     '%.lua"}}', text)
      assert.matches('{"name":"' .. m .. ' %(body%)","cat":"body","ph":' ..
                     '"X","pid":1,"tid":0,', text)
      assert.matches('{"name":"' .. m .. ' %(search%)","cat":"search",' ..
                     '"ph":"X","pid":1,"tid":[1-9]', text)
    end
  end)

  it("trace(file) chooses the file; bad arguments raise", function()
    local file = dir .. "/t2.json"
    local r = run(dir, ([[
local U = require "uvrequire"
U.trace(%q)
require "od"
print(pcall(U.trace, 5))
]]):format(file), "", { K.install() })
    assert.equals("false\tbad argument #1 to 'trace' (string expected, " ..
                  "got number)\n", r.out)
    local f = assert(io.open(file))
    assert.matches('"name":"od"', f:read("a"))
    f:close()
  end)
end)
