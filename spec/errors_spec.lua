-- No error lost: an error in a task that no one claims (no result() or
-- wait() on its handle) is raised by uvrequire.run(); under luv's plain
-- uv.run() it is written to stderr, at the latest when the handle is
-- collected or the state closes, unless on_error(fn) takes it.  The
-- programs run in a child lua5.4 (stdout unbuffered, stderr merged into
-- it, so that the order of the two is kept; the collector stopped, so
-- that a handle is collected only where the program says).
local H = require "helper"
local K = require "child_helper"
local U = H.uv

local REPORT = "uvrequire: error in task: "

-- The number of the first line of `src` containing `text`.
local function lineof(src, text)
  local n = 0
  for line in (src .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if line:find(text, 1, true) then return n end
  end
  error("no line with " .. text)
end

-- Take every report "uvrequire: error in task: <msg>\nstack traceback:\n"
-- followed by its traceback lines (each "\t...\n") out of `out`.
-- Returns the rest of `out` with each report replaced by "<msg>|", and
-- the number of reports.
local function reports(out)
  local rest, n, i = {}, 0, 1
  while true do
    local a = out:find(REPORT, i, true)
    if not a then break end
    rest[#rest + 1] = out:sub(i, a - 1)
    local msg_end = out:find("\n", a, true)
    local msg = out:sub(a + #REPORT, (msg_end or #out + 1) - 1)
    local j = msg_end and msg_end + 1 or #out + 1
    if out:sub(j, j + #"stack traceback:\n" - 1) == "stack traceback:\n" then
      j = j + #"stack traceback:\n"
      while out:sub(j, j) == "\t" do
        local e = out:find("\n", j, true)
        j = e and e + 1 or #out + 1
      end
    else
      msg = msg .. " (NO TRACEBACK)"
    end
    rest[#rest + 1] = msg .. "|"
    n = n + 1
    i = j
  end
  rest[#rest + 1] = out:sub(i)
  return table.concat(rest), n
end

local PRELUDE = [[
io.stdout:setvbuf("no")
collectgarbage("stop")
local uv = require "luv"
local U = require "uvrequire"
]]

describe("unclaimed task errors", function()
  local scratch, dir

  before_each(function()
    scratch = H.scratch()
    dir = scratch.dir
    H.write(dir .. "/errdep.lua", "return 'dep'")
    H.write(dir .. "/errdep2.lua", "return 'dep2'")
  end)

  after_each(function() scratch.restore() end)

  local function run(src)
    local r = K.run(dir, src, nil, { merge = true })
    assert.same({ true, "exit", 0 }, { r.ok, r.how, r.code })
    return r.out
  end

  it("go to stderr under uv.run() when the handle is collected",
     function()
    local src = PRELUDE .. [[
do
  U.spawn(function()
    U.require "errdep"
    error("boom")
  end)
end
print("run", uv.run())
collectgarbage()
collectgarbage()
print("collected")
]]
    local rest, n = reports(run(src))
    assert.equals(1, n)
    assert.equals(("run\tfalse\nprog.lua:%d: boom|collected\n")
                  :format(lineof(src, 'error("boom")')), rest)
  end)

  it("go to stderr when the state closes, the handle kept", function()
    local src = PRELUDE .. [[
KEEP = U.spawn(function()
  U.require "errdep"
  error("kept")
end)
KEPT_TOO = U.spawn(function() error("at once") end)
print("run", uv.run())
collectgarbage()
print("end")
]]
    local rest, n = reports(run(src))
    assert.equals(2, n)
    local kept = ("prog.lua:%d: kept|"):format(lineof(src, 'error("kept")'))
    local once = ("prog.lua:%d: at once|"):format(lineof(src, "at once"))
    -- reported after the program's end, in either order
    assert.is_true(rest == "run\tfalse\nend\n" .. kept .. once or
                   rest == "run\tfalse\nend\n" .. once .. kept, rest)
  end)

  it("go to on_error(fn) instead: fn(msg, task), msg the same text",
     function()
    -- the hook writes what the default would: the outputs are equal
    local body = [[
do
  U.spawn(function()
    U.require "errdep"
    error("dropped")
  end)
end
KEEP = U.spawn(function()
  U.require "errdep2"
  error("kept")
end)
print("run", uv.run())
collectgarbage()
collectgarbage()
print("collected")
]]
    local default = run(PRELUDE .. "\n" .. body)
    -- (one line, where the default run has an empty one)
    local hooked = run(PRELUDE .. [[
U.on_error(function(msg) io.stderr:write(]] .. ("%q"):format(REPORT) ..
      [[, msg, "\n") end)
]] .. body)
    assert.equals(default, hooked)
    local rest, n = reports(hooked)
    assert.equals(2, n)
    assert.equals(("run\tfalse\nprog.lua:%d: dropped|collected\n" ..
                   "prog.lua:%d: kept|")
                  :format(lineof(PRELUDE .. "\n" .. body, 'error("dropped")'),
                          lineof(PRELUDE .. "\n" .. body, 'error("kept")')),
                  rest)
  end)

  it("on_error(fn) gets the task's handle", function()
    local src = PRELUDE .. [[
U.on_error(function(msg, task)
  print("hook", msg:match("^[^\n]*"), rawequal(task, KEEP), task:done(),
        task:result())
end)
do
  U.spawn(function()
    U.require "errdep"
    error("dropped")
  end)
end
KEEP = U.spawn(function()
  U.require "errdep2"
  error("kept")
end)
print("run", uv.run())
collectgarbage()
collectgarbage()
print("collected")
]]
    local d = ("prog.lua:%d: dropped"):format(lineof(src, 'error("dropped")'))
    local k = ("prog.lua:%d: kept"):format(lineof(src, 'error("kept")'))
    assert.equals(("run\tfalse\nhook\t%s\tfalse\ttrue\tfalse\t%s\n" ..
                   "collected\nhook\t%s\ttrue\ttrue\tfalse\t%s\n")
                  :format(d, d, k, k),
                  run(src))
  end)

  it("go to stderr again after on_error(nil)", function()
    local src = PRELUDE .. [[
U.on_error(function(msg) print("hook", msg:match("^[^\n]*")) end)
U.on_error(nil)
do
  U.spawn(function()
    U.require "errdep"
    error("restored")
  end)
end
print("run", uv.run())
collectgarbage()
collectgarbage()
print("collected")
]]
    local rest, n = reports(run(src))
    assert.equals(1, n)
    assert.equals(("run\tfalse\nprog.lua:%d: restored|collected\n")
                  :format(lineof(src, 'error("restored")')), rest)
  end)

  it("are never reported once claimed", function()
    local src = PRELUDE .. [[
local t1 = U.spawn(function()
  U.require "errdep"
  error("claimed by result")
end)
local t2 = U.spawn(function()
  U.require "errdep2"
  error("claimed by wait")
end)
local t3 = U.spawn(function() error("claimed by a task") end)
local t4 = U.spawn(function() return t3:wait() end)
print("run", uv.run())
print(t1:result())
print(t2:wait())
print(t4:result())
t1, t2, t3, t4 = nil, nil, nil, nil
collectgarbage()
collectgarbage()
print("end")
]]
    assert.equals(("run\tfalse\nfalse\tprog.lua:%d: claimed by result\n" ..
                   "false\tprog.lua:%d: claimed by wait\n" ..
                   "true\tfalse\tprog.lua:%d: claimed by a task\nend\n")
                  :format(lineof(src, '"claimed by result"'),
                          lineof(src, '"claimed by wait"'),
                          lineof(src, '"claimed by a task"')),
                  run(src))
  end)

  it("are raised by uvrequire.run(), and then not reported", function()
    for _, uv in ipairs { "", "local uv = require 'luv'" } do
      local src = ([[
io.stdout:setvbuf("no")
collectgarbage("stop")
%s
local U = require "uvrequire"
do
  U.spawn(function()
    U.require "errdep"
    error("raised by run")
  end)
end
local ok, e = pcall(U.run)
print(ok, e:match("^[^\n]*"), e:find("\nstack traceback:\n", 1, true) ~= nil)
print(pcall(U.run))
collectgarbage()
collectgarbage()
print("end")
]]):format(uv)
      assert.equals(("false\tprog.lua:%d: raised by run\ttrue\n" ..
                     "true\tfalse\nend\n")
                    :format(lineof(src, '"raised by run"')),
                    run(src))
    end
  end)
end)

describe("on_error", function()
  after_each(function() H.clean() end)

  it("checks its argument", function()
    local where
    local ok, err = pcall(function()
      local info = debug.getinfo(1, "Sl")
      where = ("%s:%d: "):format(info.short_src, info.currentline + 2)
      U.on_error(5)
    end)
    assert.is_false(ok)
    assert.equals(where .. "bad argument #1 to 'on_error' " ..
                  "(function expected, got number)", err)
  end)
end)
