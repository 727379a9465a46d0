-- Bounded work on the failure paths (issue 9, "Every failure path").
--
-- Messages that grow with the number of searchers or the length of a
-- cycle come out exactly as they should, whatever their size.
--
-- Timing is not asserted here; the cases are big enough that building
-- a message quadratically (copying it whole for each part added) takes
-- seconds to minutes instead of milliseconds: the lead measures that
-- separately.
local H = require "helper"
local K = require "proc_helper"
local U = H.uv

describe("100,000 failing user searchers", function()
  -- 100,000 searchers of ~15 bytes each: a 1.7 MB message.  Stock
  -- builds it in a luaL_Buffer (linear); concatenating the message so
  -- far with each new part copies ~85 GB in all.
  local N = 100000
  local scratch, dir, saved, cpath

  setup(function()
    scratch = H.scratch()
    dir = scratch.dir
    cpath = package.cpath
    package.cpath = dir .. "/?.so"
    saved = {}
    for i, s in ipairs(package.searchers) do saved[i] = s end
    for i = 1, N do
      package.searchers[#package.searchers + 1] = function()
        return "\n\tno luck " .. i
      end
    end
  end)

  teardown(function()
    for i = #package.searchers, 1, -1 do package.searchers[i] = nil end
    for i, s in ipairs(saved) do package.searchers[i] = s end
    package.cpath = cpath
    scratch.restore()
  end)

  -- the message, built here part by part in a table
  local function expected(name)
    local t = {
      ("module '%s' not found:"):format(name),
      ("\n\tno field package.preload['%s']"):format(name),
      ("\n\tno file '%s/%s.lua'"):format(dir, name),
      ("\n\tno file '%s/%s.so'"):format(dir, name),
    }
    -- stock 5.4.4 puts "\n\t" before each searcher's message, which
    -- here starts with "\n\t" itself
    for i = 1, N do t[#t + 1] = "\n\t\n\tno luck " .. i end
    return table.concat(t)
  end

  it("the not-found message equals stock's, at top level", function()
    local want = expected("bd_none")
    local s, u = H.both({ "bd_none" }, function(req)
      return H.outcome(req, "bd_none")
    end)
    assert.is_false(s.ok)
    assert.equals(want, s[1])  -- stock agrees with the expectation
    assert.is_false(u.ok)
    assert.equals(#want, #u[1])
    assert.is_true(want == u[1], "uvrequire's message differs from stock's")
    assert.is_nil(U.status("bd_none"))
    H.clean()
  end)

  it("the not-found message equals stock's, in a task", function()
    local want = expected("bd_none_t")
    local ok, r = H.task(function() return H.outcome(U.require, "bd_none_t") end)
    assert.is_true(ok)
    assert.is_false(r.ok)
    assert.equals(#want, #r[1])
    assert.is_true(want == r[1], "uvrequire's message differs from stock's")
    assert.is_nil(U.status("bd_none_t"))
    H.clean()
  end)

  it("the not-found message equals stock's, with the file searchers " ..
     "between the user searchers", function()
    -- the Lua file searcher's job comes after 50,000 user searchers, so
    -- the message is half built when the task waits
    local lua = package.searchers[2]
    table.insert(package.searchers, 50000, lua)
    local name = "bd_mid"
    local s = H.outcome(H.stock, name)
    local ok, r = H.task(function() return H.outcome(U.require, name) end)
    table.remove(package.searchers, 50000)
    assert.is_true(ok)
    assert.is_false(s.ok)
    assert.equals(#s[1], #r[1])
    assert.is_true(s[1] == r[1], "uvrequire's message differs from stock's")
    H.clean()
  end)
end)

describe("a cycle through 120 modules", function()
  -- m1 requires m2, ..., m120 requires m1.  uvrequire raises at the
  -- require that closes the cycle (in m120, line 1), naming the whole
  -- chain, as it does for short cycles (spec/guard_spec.lua):
  --   <dir>/cyc_b.lua:1: circular require: cyc_a -> cyc_b -> cyc_a
  -- Runs in a child lua5.4: the chain is deep, and its message is
  -- built on the Lua stack.
  local function cycle(n, prefix)
    local out = K.indir(K.prelude .. ([[
local assert = require "luassert"
local N, P = %d, %q
local dir = DIR
package.path = dir .. "/?.lua"
for i = 1, N do
  H.write(("%%s/%%s%%d.lua"):format(dir, P, i),
          ("return { next = require(%%q) }"):format(P .. (i %% N + 1)))
end
local chain = {}
for i = 1, N do chain[i] = P .. i end
chain[N + 1] = P .. 1
local want = ("%%s/%%s%%d.lua:1: circular require: %%s")
  :format(dir, P, N, table.concat(chain, " -> "))
uv.install()
-- top level
local ok, err = pcall(uv.require, P .. 1)
assert.is_false(ok)
assert.equals(want, err)
for i = 1, N do assert.is_nil(uv.status(P .. i)) end
-- in a task
local t = uv.spawn(uv.require, P .. 1)
local tok, terr = t:wait()
assert.is_false(tok)
assert.equals(want, terr)
for i = 1, N do assert.is_nil(uv.status(P .. i)) end
-- entered in the middle, from a task: the chain starts there
local mid = N // 2
local chain2 = {}
for i = 0, N do chain2[#chain2 + 1] = P .. ((mid - 1 + i) %% N + 1) end
local want2 = ("%%s/%%s%%d.lua:1: circular require: %%s")
  :format(dir, P, (mid - 2) %% N + 1, table.concat(chain2, " -> "))
local ok3, err3 = uv.spawn(uv.require, P .. mid):wait()
assert.is_false(ok3)
assert.equals(want2, err3)
uv.uninstall()
H.clean()
print("ok")
]]):format(n, prefix))
    assert.equals("ok\n", out)
  end

  it("3 modules (the short form, for reference)", function()
    cycle(3, "c3_")
  end)

  it("120 modules: the exact full chain, at top level and in a task",
     function()
    cycle(120, "m")
  end)

  -- Across two tasks: B drives m<N>, whose body stops (it yields; the
  -- spec resumes it); A drives m1 -> ... -> m<N-1>, which waits on B's
  -- m<N>; then m<N>'s body requires m1.  B finds the cycle on its own
  -- (small) coroutine stack.  Both tasks get the same message.  Today:
  -- memory corruption from about 40 modules on: SIGSEGV, SIGABRT or a
  -- hang, from run to run.
  local function across(n)
    local out = K.indir(K.prelude .. ([[
local assert = require "luassert"
local N = %d
local dir = DIR
package.path = dir .. "/?.lua"
for i = 1, N - 1 do
  H.write(("%%s/x%%d.lua"):format(dir, i),
          (i == N - 1 and "BD_READY = true\n" or "") ..
          ("return { next = require('x%%d') }"):format(i + 1))
end
H.write(("%%s/x%%d.lua"):format(dir, N),
        "BD_CO = coroutine.running()\ncoroutine.yield()\n" ..
        "return { next = require('x1') }")
-- run the loop until f() holds (no timing: each step is an event)
local function until_(f)
  while not f() do
    if not uv.run("once") and not f() then error("the loop ran dry") end
  end
end
uv.install()
local b = uv.spawn(uv.require, "x" .. N)
until_(function() return BD_CO end)  -- x<N>'s body has stopped
local a = uv.spawn(uv.require, "x1")
until_(function() return BD_READY end)  -- x<N-1>'s body requires x<N>
assert(coroutine.resume(BD_CO))
local chain = {}
for i = 1, N do chain[i] = "x" .. i end
chain[N + 1] = "x1"
local want = ("%%s/x%%d.lua:3: circular require: %%s")
  :format(dir, N, table.concat(chain, " -> "))
local okb, errb = b:wait()
local oka, erra = a:wait()
assert.is_false(okb)
assert.equals(want, errb)
assert.is_false(oka)
assert.equals(want, erra)
for i = 1, N do assert.is_nil(uv.status("x" .. i)) end
uv.uninstall()
H.clean()
print("ok")
]]):format(n), { timeout = 60 })
    assert.equals("ok\n", out)
  end

  it("3 modules across two tasks (the short form)", function()
    across(3)
  end)

  it("120 modules across two tasks: the exact full chain, no crash",
     function()
    across(120)
  end)
end)
