-- LuaRocks' loader: with `require "luarocks.loader"` active, its
-- searcher runs first and calls the standard searchers itself.  After
-- install(), those are uvrequire's: in a task, the rock's module is
-- searched and compiled on the executor while the task yields, and it
-- is the module and version luarocks.loader picks.  Offline: the rocks
-- tree is built here with `luarocks make`.
local H = require "helper"

local ROOT = os.getenv("PWD")

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok, how, code = p:close()
  return out, ok, how, code
end

describe("luarocks.loader", function()
  local dir

  -- a rock 'lrmod' at 'version' whose module returns 'body'
  local function rock(version, body)
    local src = dir .. "/src-" .. version
    H.write(src .. "/lrmod.lua", body)
    H.write(src .. "/lrmod-" .. version .. "-1.rockspec", ([[
package = "lrmod"
version = "%s-1"
source = { url = "file:///dev/null" }
build = { type = "builtin", modules = { lrmod = "lrmod.lua" } }
]]):format(version))
    local out, ok = sh(("cd '%s' && luarocks --lua-version=5.4 make " ..
                        "--tree '%s/tree' lrmod-%s-1.rockspec")
                       :format(src, dir, version))
    assert(ok, out)
  end

  -- run 'script' in a child with luarocks.loader over the tree
  local function child(script)
    H.write(dir .. "/config.lua", ("rocks_trees = { %q }\n")
                                  :format(dir .. "/tree"))
    H.write(dir .. "/prog.lua", script)
    return sh(("cd '%s' && LUAROCKS_CONFIG='%s/config.lua' " ..
               "LUA_PATH='%s/lua/?.lua;;' LUA_CPATH='%s/build/?.so;;' " ..
               "timeout 60 lua5.4 prog.lua")
              :format(dir, dir, ROOT, ROOT))
  end

  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rmtree(dir) end)

  it("imports a rock's module on the executor, in a task", function()
    rock("1.0", "RUNS = (RUNS or 0) + 1; return { v = '1.0' }")
    local out, ok = child([[
require "luarocks.loader"
local U = require("uvrequire").install()
local seen = {}
local t = U.spawn(function() return require "lrmod" end)
-- the task waits: its search and compile are an executor job
seen[1] = ("waiting=%s jobs>0=%s"):format(tostring(not t:done()),
                                          tostring(U.loopinfo().jobs > 0))
U.run()
local ok, m, where = t:result()
seen[2] = ("%s %s %s runs=%d"):format(tostring(ok), m.v,
  where:match("[^/]+/[^/]+/[^/]+/[^/]+$"), RUNS)
seen[3] = ("again=%s"):format(tostring(require("lrmod") == m))
print(table.concat(seen, "\n"))
]])
    assert.is_true(ok, out)
    assert.equals("waiting=true jobs>0=true\n" ..
                  "true 1.0 share/lua/5.4/lrmod.lua runs=1\n" ..
                  "again=true\n", out)
  end)

  it("picks the version luarocks.loader picks, as stock does", function()
    rock("1.0", "return { v = '1.0' }")
    rock("2.0", "return { v = '2.0' }")
    local prog = [[
require "luarocks.loader"
%s
local function get() return require("lrmod").v end
local ok, v = pcall(get)
print("top level", ok, v)
package.loaded.lrmod = nil
if U then
  local t = U.spawn(get)
  U.run()
  print("task", t:result())
end
]]
    local stock = child(prog:format("local U"))
    local mine = child(prog:format('local U = require("uvrequire").install()'))
    assert.equals("top level\ttrue\t2.0\n", stock)
    assert.equals("top level\ttrue\t2.0\ntask\ttrue\t2.0\n", mine)
  end)

  it("keeps stock's messages for a module no rock has", function()
    local prog = [[
require "luarocks.loader"
%s
local ok, err = pcall(require, "nosuchrock")
print(ok, err)
]]
    local stock = child(prog:format(""))
    local mine = child(prog:format('require("uvrequire").install()'))
    local head = "false\tmodule 'nosuchrock' not found:\n\t" ..
                 "No LuaRocks module found for nosuchrock\n"
    assert.equals(head, stock:sub(1, #head))
    assert.equals(stock, mine)
  end)

  it("uninstall() puts stock's searchers back", function()
    local out, ok = child([[
local before = {}
for i, f in ipairs(package.searchers) do before[i] = f end
local U = require("uvrequire").install()
local swapped = 0
for i, f in ipairs(package.searchers) do
  if f ~= before[i] then swapped = swapped + 1 end
end
U.uninstall()
local same = true
for i, f in ipairs(package.searchers) do
  if f ~= before[i] then same = false end
end
print(swapped, same)
]])
    assert.is_true(ok, out)
    assert.equals("3\ttrue\n", out)
  end)
end)
