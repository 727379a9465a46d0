-- Process life (issue 9, "Every failure path"): a C open function that
-- yields, uvrequire.run() re-entered from a module body while a loop
-- runs, and (spec/checks/luvlast.sh) install() before luv, then exit.
--
-- Fixture: spec/fixtures/csrc/yielder.c (build/fixtures/yielder.so,
-- built by `make all`): luaopen_yielder calls lua_yield.
local H = require "helper"
local K = require "proc_helper"
local U = H.uv

describe("a C module whose luaopen_ yields", function()
  local cpath, dir, name
  local count = 0

  -- Each case loads its own copy, "yN-yielder" (the hyphen rule finds
  -- luaopen_yielder), so that a load left stuck by one case cannot
  -- change the next.
  before_each(function()
    cpath = package.cpath
    dir = H.tmpdir()
    count = count + 1
    name = ("y%d-yielder"):format(count)
    local f = assert(io.open(K.root .. "/build/fixtures/yielder.so", "rb"))
    H.write(dir .. "/" .. name .. ".so", f:read("a"))
    f:close()
    package.cpath = dir .. "/?.so"
  end)

  after_each(function()
    package.cpath = cpath
    package.loaded[name] = nil
    H.rmtree(dir)
    H.clean()
  end)

  -- stock calls the open function with lua_call: no continuation, so
  -- its yield is an error.  The same in a task: an error, not a wait
  -- that no one will ever end.
  local BOUNDARY = "attempt to yield across a C-call boundary"

  it("on the main thread: stock's error", function()
    local s, u = H.both({ name }, function(req)
      return { H.outcome(req, name), U.status(name) }
    end)
    assert.same({ { ok = false, n = 1,
                    "attempt to yield from outside a coroutine" } }, s)
    assert.same(s, u)
  end)

  it("in a coroutine, stock raises " .. BOUNDARY, function()
    local r = coroutine.wrap(function()
      return H.outcome(H.stock, name)
    end)()
    assert.same({ ok = false, n = 1, BOUNDARY }, r)
  end)

  it("in a task: the same error, and the task ends", function()
    local t = U.spawn(U.require, name)
    local ok, a, b = pcall(t.wait, t)
    assert.is_true(ok, "the task never finished: " .. tostring(a))
    assert.same({ false, BOUNDARY }, { a, b })
    assert.is_nil(U.status(name))
    assert.is_nil(rawget(package.loaded, name))
  end)

  it("in a task, caught by pcall in the task: the same error", function()
    local t = U.spawn(function() return H.outcome(U.require, name) end)
    local ok, tok, r = pcall(t.wait, t)
    assert.is_true(ok, "the task never finished: " .. tostring(tok))
    assert.is_true(tok, "the task failed: " .. tostring(r))
    assert.same({ ok = false, n = 1, BOUNDARY }, r)
    assert.is_nil(U.status(name))
  end)

  it("in a plain coroutine: the same error, no PENDING for ever", function()
    local co = coroutine.create(function()
      return H.outcome(U.require, name)
    end)
    local r = table.pack(coroutine.resume(co))
    -- a waiting require yields PENDING until its job is done; resuming
    -- it goes on with the load.  Stop if it waits with no job in flight.
    while r[1] and r[2] == U.PENDING and coroutine.status(co) == "suspended"
          and U.loopinfo().jobs > 0 do
      r = table.pack(coroutine.resume(co))
    end
    assert.equals("dead", coroutine.status(co),
                  "the coroutine is left suspended; it yielded " ..
                  tostring(r[2]))
    assert.same({ true, { ok = false, n = 1, BOUNDARY }, n = 2 }, r)
    assert.is_nil(U.status(name))
  end)
end)

describe("uvrequire.run() re-entered from a module body", function()
  local MSG = "the loop is already running"
  local scratch, dir

  before_each(function()
    scratch = H.scratch()
    dir = scratch.dir
    _G.UVR = U
    _G.REENT = nil
    -- pcall(UVR.run): the message alone; a direct call on line 3: with
    -- the body's position
    H.write(dir .. "/reent.lua", [[
local ok, e = pcall(UVR.run)
local ok2, e2 = pcall(function()
  UVR.run("nowait")
end)
REENT = { ok, e, ok2, e2 }
return "r"
]])
  end)

  after_each(function()
    package.loaded.reent = nil
    _G.UVR, _G.REENT = nil, nil
    scratch.restore()
  end)

  local function want()
    return { false, MSG, false, dir .. "/reent.lua:3: " .. MSG }
  end

  it("while luv's uv.run() drives the loop", function()
    local t = U.spawn(U.require, "reent")
    H.luv.run()
    assert.is_true(t:done())
    assert.same({ true, "r", dir .. "/reent.lua" }, { t:result() })
    assert.same(want(), REENT)
  end)

  it("while uvrequire.run() drives the loop", function()
    local t = U.spawn(U.require, "reent")
    U.run()
    assert.is_true(t:done())
    assert.same({ true, "r", dir .. "/reent.lua" }, { t:result() })
    assert.same(want(), REENT)
  end)

  it("while task:wait() drives the loop", function()
    local t = U.spawn(U.require, "reent")
    assert.same({ true, "r", dir .. "/reent.lua" }, { t:wait() })
    assert.same(want(), REENT)
  end)

  it("from a coroutine resumed in a luv callback", function()
    local timer = H.luv.new_timer()
    timer:start(0, 0, function()
      timer:close()
      coroutine.wrap(function() U.require("reent") end)()
    end)
    H.luv.run()
    assert.same(want(), REENT)
  end)

  it("while a host's uv_run drives the host's loop (build/oomhost)",
     function()
    -- a C host (spec/fixtures/oomhost.c) hands its loop to uvrequire
    -- and runs it from C (host_run): uvrequire.run() inside must not
    -- run that loop again
    local host = K.root .. "/build/oomhost"
    assert(os.execute(([[cc -std=gnu99 -O1 -g $(pkg-config --cflags lua5.4 libuv) \
      -I%q/csrc -o %q %q/spec/fixtures/oomhost.c \
      $(pkg-config --libs lua5.4 libuv) -Wl,-E]])
      :format(K.root, host, K.root)), "cannot build build/oomhost")
    local script = dir .. "/host_script.lua"
    H.write(script, ([[
package.path = %q .. "/lua/?.lua;" .. package.path
package.cpath = %q .. "/build/?.so;" .. package.cpath
local uv = require "uvrequire"
local dir = %q
package.path = dir .. "/?.lua"
UVR = uv
local t = uv.spawn(uv.require, "reent")
host_run("default")
assert(uv.loopinfo().kind == "host", "kind " .. tostring(uv.loopinfo().kind))
assert(t:done(), "the task is not done")
local ok, v = t:result()
assert(ok and v == "r", tostring(v))
local want = { false, %q, false, dir .. "/reent.lua:3: " .. %q }
for i = 1, 4 do
  assert(REENT[i] == want[i], ("REENT[%%d]: %%s, not %%s")
    :format(i, tostring(REENT[i]), tostring(want[i])))
end
print("ok")
]]):format(K.root, K.root, dir, MSG, MSG))
    local p = assert(io.popen(("timeout 60 %q %q 2>&1"):format(host, script)))
    local out = p:read("a")
    local ok, how, code = p:close()
    assert(ok, ("the host failed (%s %s): %s"):format(how, code, out))
    assert.equals("ok\n", out)
  end)
end)
