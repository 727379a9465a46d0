-- The loop in use: luv loaded after uvrequire has used its own loop.
-- The next import moves to luv's loop while no import is in flight, so
-- that luv's plain uv.run() completes it.  Each scenario runs in a child
-- lua5.4, where uvrequire is loaded before luv.
local H = require "helper"
local K = require "child_helper"

describe("luv loaded late", function()
  local scratch, dir

  before_each(function()
    scratch = H.scratch()
    for _, name in ipairs { "first", "second", "third" } do
      H.write(("%s/%s.lua"):format(scratch.dir, name),
              ("return '%s'"):format(name))
    end
    dir = scratch.dir
  end)

  after_each(function() scratch.restore() end)

  -- the program's stdout then stderr (which must be empty), once it
  -- has exited with status 0
  local function run(src)
    local r = K.run(dir, src)
    return r.out .. r.err .. (r.code == 0 and "" or "exit " .. r.code)
  end

  it("moves the next import to luv's loop; uv.run() completes it",
     function()
    assert.equals(
      "1\town\tfalse\n2\ttrue\town\n3\town\n4\tluv\t1\n" ..
      "run\tfalse\n5\ttrue\tsecond\n6\tluv\t0\t0\n",
      run [[
        local U = require "uvrequire"
        local t1 = U.spawn(U.require, "first")
        print("1", U.loopinfo().kind, t1:done())
        U.run()
        print("2", t1:done(), U.loopinfo().kind)
        local uv = require "luv"
        print("3", U.loopinfo().kind)  -- no import since: not moved yet
        local t2 = U.spawn(U.require, "second")
        local info = U.loopinfo()
        print("4", info.kind, info.jobs)
        print("run", uv.run())
        print("5", t2:done(), (select(2, t2:result())))
        info = U.loopinfo()
        print("6", info.kind, info.jobs, info.handles)
      ]])
  end)

  it("task:wait() follows the loop to luv's, where the task's work is",
     function()
    -- the task's next body waits on a luv timer: wait() ran uvrequire's
    -- own loop dry and gave up, where one more run moves to luv's
    H.write(dir .. "/lt_slow.lua", [[
local uv = package.loaded.luv
local co = coroutine.running()
local t = uv.new_timer()
t:start(1, 0, function() t:close(); coroutine.resume(co) end)
coroutine.yield()
return 'slow'
]])
    assert.equals("own\ttrue\tfirst\tslow\tluv\n", run [[
      local U = require "uvrequire"
      local t = U.spawn(function()
        return (U.require "first"), (U.require "lt_slow")
      end)
      local kind = U.loopinfo().kind
      local uv = require "luv"  -- loaded while the task waits
      local ok, a, b = t:wait()
      print(kind, ok, a, b, U.loopinfo().kind)
      uv.run("nowait")  -- (the closed timer's callback)
    ]])
  end)

  it("moves only once no import is in flight", function()
    assert.equals(
      "1\town\t2\n2\ttrue\ttrue\town\t0\n3\tluv\t1\n" ..
      "run\tfalse\n4\ttrue\tthird\n5\tluv\t0\t0\n",
      run [[
        local U = require "uvrequire"
        local t1 = U.spawn(U.require, "first")
        local uv = require "luv"
        local t2 = U.spawn(U.require, "second")  -- first is in flight
        local info = U.loopinfo()
        print("1", info.kind, info.jobs)
        U.run()
        info = U.loopinfo()
        print("2", t1:done(), t2:done(), info.kind, info.jobs)
        local t3 = U.spawn(U.require, "third")
        print("3", U.loopinfo().kind, U.loopinfo().jobs)
        print("run", uv.run())
        print("4", t3:done(), (select(2, t3:result())))
        info = U.loopinfo()
        print("5", info.kind, info.jobs, info.handles)
      ]])
  end)

  it("moves a task that waits on a task, too", function()
    assert.equals("run\tfalse\ntrue\ttrue\ttrue\tsecond\nluv\t0\t0\n",
      run [[
        local U = require "uvrequire"
        U.spawn(U.require, "first")
        U.run()
        local uv = require "luv"
        local inner = U.spawn(U.require, "second")
        local outer = U.spawn(function() return inner:wait() end)
        print("run", uv.run())
        local ok, iok, m = outer:result()
        print(outer:done(), ok, iok, m)
        local info = U.loopinfo()
        print(info.kind, info.jobs, info.handles)
      ]])
  end)
end)

describe("luv's uv.walk", function()
  -- luv asserts that every handle on its loop is its own kind: the
  -- process aborted at a walk once uvrequire had a handle there.  Each
  -- of ours shows as one object, which a walk that closes every handle
  -- may close too: uvrequire goes on.
  it("shows uvrequire's handles as its own, and may close them",
     function()
    local s = H.scratch()
    H.write(s.dir .. "/wk_a.lua", "return 'a'")
    H.write(s.dir .. "/wk_b.lua", "return 'b'")
    H.write(s.dir .. "/wk_slow.lua", [[
local uv = require "luv"
local co = coroutine.running()
local t = uv.new_timer()
t:start(1, 0, function() t:close() coroutine.resume(co) end)
coroutine.yield()
return 'slow'
]])
    local r = K.run(s.dir, [[
local uv = require "luv"
local ur = require "uvrequire"
ur.install()
-- a task waits on an import with a timeout (a timer of ours) while
-- the import's body waits on a luv timer
local t = ur.spawn(function() return (require "wk_a") end)
uv.run()
local n = 0
uv.walk(function(h)
  n = n + 1
  print(tostring(h), h:get_type())
  print(pcall(uv.is_active, h))  -- luv's own checks: not its handle
end)
print(n, t:result())
local slow = ur.spawn(function()
  return ur.import_module("wk_slow", { timeout = 1e6 })
end)
local shown = {}
uv.walk(function(h)
  shown[#shown + 1] = tostring(h)
  if not h:is_closing() then h:close() end
end)
table.sort(shown)
print(table.concat(shown, ", "))
print(slow:wait())
print(ur.spawn(function() return (require "wk_b") end):wait())
]], { }, { env = "UVREQUIRE_CACHE=off", timeout = 60 })
    s.restore()
    assert.equals("", r.err)
    assert.equals(
      "uvrequire: a handle of its own\tuvrequire\t0\n" ..
      "false\tbad argument #1 to 'luv.is_active' (Expected uv_handle " ..
      "userdata)\n1\ttrue\ta\n" ..
      "uvrequire: a handle of its own, uvrequire: a handle of its own\n" ..
      "true\tslow\ntrue\tb\n", r.out)
  end)
end)
