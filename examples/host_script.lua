--- host_script.lua: run by examples/host.c, on a loop the host owns.
--
-- Writes a few modules to a temporary directory (one of them big, so
-- that its import takes a while), installs uvrequire and spawns tasks
-- that import them.  It never runs the loop: the host does.  Returns
-- the host's hooks:
--   poll()   -> done, inflight   every tick: all tasks done? imports
--                                 in flight on the loop
--   finish() -> ok, report       once the loop is idle: checks every
--                                 outcome, removes the directory

local uvrequire = require("uvrequire").install()
assert(require == uvrequire.require, "install() did not take")

local BIG = 60000  -- functions in the big module

--- Temporary directory --------------------------------------------

local function tmpdir()
  local base = os.tmpname()
  os.remove(base)
  local dir = base .. "_uvr_host"
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  return dir
end

local dir = tmpdir()

local function write(name, src)
  local f = assert(io.open(dir .. "/" .. name, "wb"))
  assert(f:write(src))
  assert(f:close())
end

write("hs_a.lua", 'return { name = "a", value = 1 }\n')
write("hs_util.lua", 'return { double = function(x) return 2 * x end }\n')
write("hs_b.lua", [[
local util = require "hs_util"  -- nested: waits inside the module body
return { name = "b", value = util.double(21) }
]])
write("hs_c.lua", "return function(x) return 3 * x end\n")
do
  local parts = { "local f = {}\n" }
  for i = 1, BIG do
    parts[#parts + 1] = ("f[%d] = function(x) return x + %d end\n")
                        :format(i, i)
  end
  parts[#parts + 1] = [[
local sum = 0
for i = 1, #f do sum = sum + f[i](0) end
return { n = #f, sum = sum }
]]
  write("hs_big.lua", table.concat(parts))
end
package.path = dir .. "/?.lua;" .. package.path

--- Tasks ----------------------------------------------------------

local tasks = {}  -- { name, task, waited }
local order = {}  -- names of tasks, in the order they finished

local function file(mod) return dir .. "/" .. mod .. ".lua" end

local function task(name, fn)
  local t = uvrequire.spawn(function()
    local r = fn()
    order[#order + 1] = name
    return r
  end)
  -- every task starts with an import from a file: it must be waiting
  tasks[#tasks + 1] = { name = name, task = t, waited = not t:done() }
end

task("big", function()
  local m, where = require "hs_big"
  assert(where == file("hs_big"), "loader data: " .. tostring(where))
  assert(m.n == BIG and m.sum == BIG * (BIG + 1) // 2, "bad big module")
  return ("%d functions"):format(m.n)
end)

task("a+c", function()
  local a, wa = require "hs_a"
  local c, wc = require "hs_c"
  assert(wa == file("hs_a") and wc == file("hs_c"), "loader data")
  return ("a.value=%d c(a.value)=%d"):format(a.value, c(a.value))
end)

task("b", function()
  local b, wb = require "hs_b"
  assert(wb == file("hs_b"), "loader data: " .. tostring(wb))
  assert(package.loaded.hs_util, "nested import not loaded")
  return ("b.value=%d"):format(b.value)
end)

task("missing", function()
  local ok, err = pcall(require, "hs_missing")
  assert(not ok, "a missing module loaded")
  assert(err:find("module 'hs_missing' not found", 1, true), err)
  assert(err:find(file("hs_missing"), 1, true), err)
  return "not found, as it should"
end)

-- a task whose error nobody claims: the host's uvrequire_on_error
-- handler gets it when its handle is collected (at the latest, at
-- lua_close)
uvrequire.spawn(function()
  require "hs_a"
  error("deliberate unclaimed error")
end)

--- Hooks for the host ---------------------------------------------

local H = {}

function H.poll()
  local done = true
  for _, t in ipairs(tasks) do
    if not t.task:done() then done = false end
  end
  return done, uvrequire.loopinfo().jobs
end

function H.finish()
  os.execute("rm -rf '" .. dir .. "'")
  local ok, lines = true, {}
  local function check(cond, fmt, ...)
    if not cond then ok = false end
    lines[#lines + 1] = (cond and "  ok   " or "  FAIL ") .. fmt:format(...)
  end
  local info = uvrequire.loopinfo()
  check(info.kind == "host", "loop in use: %s", tostring(info.kind))
  for _, t in ipairs(tasks) do
    if not t.task:done() then
      check(false, "task %s: not done", t.name)
    else
      local tok, r = t.task:result()
      check(tok and t.waited, "task %s: %s%s", t.name,
            tok and "" or "error: ", (tostring(r):gsub("\n", "\n    ")))
      if not t.waited then check(false, "task %s did not wait", t.name) end
    end
  end
  check(info.jobs == 0, "imports in flight after the loop: %d", info.jobs)
  local kept = package.loaded["uvrequire.core"].takeerrors()
  check(#kept == 0, "errors kept by uvrequire: %d%s", #kept,
        kept[1] and ("\n    " .. kept[1]) or "")
  lines[#lines + 1] = "  tasks finished in this order: " ..
                      table.concat(order, ", ")
  return ok, table.concat(lines, "\n")
end

return H
