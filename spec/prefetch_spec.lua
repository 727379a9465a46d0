-- Prefetch: the Lua modules a module's source requires by a literal
-- name are searched for and compiled ahead, on the executor, and the
-- later require adopts that job.  It never runs a body early, never
-- dlopens, and gives what stock gives.
local H = require "helper"
local K = require "child_helper"
local core = require "uvrequire.core"
local uv = H.uv

local FIX = "build/fixtures/"

local base  -- counters when the spec began

local function stats()
  local st = core.prefetchstats()
  for _, k in ipairs({ "submitted", "adopted", "dropped" }) do
    st[k] = st[k] - base[k]
  end
  return st
end

-- wait (bounded: 10 s) until every prefetch entry's job is done,
-- sleeping between looks (a busy loop can starve the workers under
-- valgrind, whose scheduler runs one thread at a time, unfairly)
local function settle()
  local t0 = H.luv.hrtime()
  while stats().done < stats().entries and H.luv.hrtime() - t0 < 1e10 do
    H.luv.sleep(1)
  end
end

describe("prefetch:", function()
  local s, cpath

  before_each(function()
    core.setprefetch(false)  -- forget what earlier specs prefetched
    core.setprefetch(true)
    base = core.prefetchstats()
    s = H.scratch()
    cpath = package.cpath
  end)

  after_each(function()
    package.cpath = cpath
    core.setprefetch(false)
    core.setprefetch(true)
    for k in pairs(package.loaded) do
      if k:match("^pf_") or k == "fix1" then package.loaded[k] = nil end
    end
    rawset(_G, "PFN", nil)
    rawset(_G, "REQ", nil)
    s.restore()
  end)

  local function body(name, deps)
    local src = { "PFN = PFN or {}",
                  ("PFN[%q] = (PFN[%q] or 0) + 1"):format(name, name) }
    for _, d in ipairs(deps or {}) do
      src[#src + 1] = ("require %q"):format(d)
    end
    src[#src + 1] = ("return { name = %q, file = select(2, ...) }")
                    :format(name)
    return table.concat(src, "\n")
  end

  it("compiles what a task's import requires ahead, and adopts it", function()
    H.files(s.dir, {
      ["pf_a.lua"] = "local require = require\n" ..
                     "PFN = PFN or {}\nPFN.order = {}\n" ..
                     "require 'pf_b'\nrequire(\"pf_c\")\nreturn 1",
      ["pf_b.lua"] = body("pf_b"), ["pf_c.lua"] = body("pf_c"),
    })
    rawset(_G, "require", uv.require)  -- the body's requires are ours
    local ok, err = pcall(H.task, function() return uv.require("pf_a") end)
    rawset(_G, "require", H.stock)
    assert(ok, err)
    local st = stats()
    assert.equal(2, st.submitted)
    assert.equal(2, st.adopted)
    assert.equal(0, st.entries)
    assert.equal(1, PFN.pf_b)
    assert.equal(1, PFN.pf_c)
    assert.equal(s.dir .. "/pf_b.lua", package.loaded.pf_b.file)
  end)

  it("never runs a prefetched body before its require", function()
    H.files(s.dir, {
      ["pf_p.lua"] = "local function later() return require 'pf_q' end\n" ..
                     "return later",
      ["pf_q.lua"] = body("pf_q"),
    })
    local later
    H.task(function() later = uv.require("pf_p") end)
    assert.equal("function", type(later))
    settle()
    assert.equal(1, stats().submitted)
    assert.equal(1, stats().done)
    assert.is_nil(rawget(_G, "PFN"))  -- compiled, not run
    H.clean()
    assert.is_nil(rawget(_G, "PFN"))
    local q = uv.require("pf_q")  -- top level: adopts the done job
    assert.equal(1, PFN.pf_q)
    assert.equal(s.dir .. "/pf_q.lua", q.file)
    assert.equal(1, stats().adopted)
  end)

  it("takes no prefetch whose file changed since, nor a miss of a " ..
     "module there now", function()
    H.files(s.dir, {
      ["pf_l0.lua"] = "return function() local require = REQ\n" ..
                      "return require 'pf_ed', (require 'pf_new') end",
      ["pf_ed.lua"] = "return 'v1'",
    })
    rawset(_G, "REQ", uv.require)  -- (the functions' requires are ours)
    local later
    H.task(function() later = uv.require("pf_l0") end)
    settle()
    assert.equal(2, stats().done)  -- pf_ed compiled, pf_new not found
    H.files(s.dir, { ["pf_ed.lua"] = "return 'v2, edited'",
                     ["pf_new.lua"] = "return 'new'" })
    assert.same({ "v2, edited", "new" }, { later() })
    assert.equal(0, stats().adopted)
    -- an unchanged file's prefetch is taken
    H.files(s.dir, { ["pf_l1.lua"] = "return function() local require " ..
                                     "= REQ return require 'pf_same' end",
                     ["pf_same.lua"] = "return 'same'" })
    H.task(function() later = uv.require("pf_l1") end)
    settle()
    assert.equal("same", later())
    assert.equal(1, stats().adopted)
  end)

  it("takes no prefetch when a file appeared before it on the path",
     function()
    -- stock would find the new file: the search done ahead is stale
    local a, b = s.dir .. "/a", s.dir .. "/b"
    H.files(b, {
      ["pf_e0.lua"] = "return function() local require = REQ\n" ..
                      "return require 'pf_gen' end",
      ["pf_gen.lua"] = "return 'b'",
    })
    H.sh(("mkdir -p '%s'"):format(a))
    package.path = a .. "/?.lua;" .. b .. "/?.lua"
    rawset(_G, "REQ", uv.require)
    local later
    H.task(function() later = uv.require("pf_e0") end)
    settle()
    assert.equal(1, stats().done)  -- pf_gen found in b
    H.files(a, { ["pf_gen.lua"] = "return 'a'" })
    assert.equal("a", later())
    assert.equal(0, stats().adopted)
    -- with nothing new before it, the prefetch is taken
    H.files(b, { ["pf_e1.lua"] = "return function() local require = " ..
                                 "REQ return require 'pf_b' end",
                 ["pf_b.lua"] = "return 'b'" })
    H.task(function() later = uv.require("pf_e1") end)
    settle()
    assert.equal("b", later())
    assert.equal(1, stats().adopted)
  end)

  it("takes no prefetch adopted as it ran, if a file appeared before it",
     function()
    -- pf_ib's prefetch found e2/pf_ib.lua and compiles it (a big file)
    -- when e1/pf_ib.lua appears (a thread of the child makes it once
    -- the prefetch opened the file: inotify tells it); the require that
    -- adopts the running prefetch must find e1's, as stock's search
    H.files(s.dir, {
      ["e2/pf_ia.lua"] = "local function later() return require 'pf_ib' " ..
                         "end\nreturn later",
      ["e2/pf_ib.lua"] = "local t = {\n" ..
                         ("{ a = 1, b = 'x' },\n"):rep(150000) ..
                         "}\nreturn 'e2'",
    })
    H.sh(("mkdir -p '%s/e1'"):format(s.dir))
    for _, where in ipairs({ "top", "task" }) do
      os.remove(s.dir .. "/e1/pf_ib.lua")
      os.remove(s.dir .. "/ready")
      os.remove(s.dir .. "/made")
      local r = K.run(s.dir, ([[
local luv = require "luv"
local U = require "uvrequire"
local DIR = %q
package.path = DIR .. "/e1/?.lua;" .. DIR .. "/e2/?.lua"
local th = luv.new_thread(function(dir, lib)
  local ow = package.loadlib(lib, "luaopen_openwait")()
  local w = assert(ow.watch(dir .. "/e2/pf_ib.lua"))
  io.open(dir .. "/ready", "w"):close()
  assert(ow.wait(w))  -- the prefetch opened it: its search is done
  local f = io.open(dir .. "/e1/pf_ib.lua", "w")
  f:write("return 'e1'")
  f:close()
  io.open(dir .. "/made", "w"):close()
end, DIR, %q)
while not io.open(DIR .. "/ready") do end
local function go()
  local later = require "pf_ia"
  while not io.open(DIR .. "/made") do end
  return (later())
end
if %q == "top" then print(go())
else
  local t = U.spawn(go)
  U.run()
  print(select(2, t:result()))
end
th:join()
]]):format(s.dir, H.ROOT .. "/" .. FIX .. "openwait.so", where),
        { K.install() }, { env = "UVREQUIRE_CACHE=off", timeout = 60 })
      assert.equal("e1\n", r.out)
      assert.equal("", r.err)
    end
  end)

  it("never waits on a FIFO that code which may not run names", function()
    -- stock never opens them; a prefetch that waited on each would hold
    -- every executor thread, and no import could run again
    local req = {}
    for i = 1, 4 do
      req[i] = ("require 'pf_fifo%d'"):format(i)
      H.sh(("mkfifo '%s/pf_fifo%d.lua'"):format(s.dir, i))
    end
    H.files(s.dir, {
      ["pf_f0.lua"] = "local function never()\n" .. table.concat(req, "\n") ..
                      "\nend\nreturn 'f0'",
      ["pf_after.lua"] = "return 'after'",
    })
    local r = K.run(s.dir, [[
local uv = require "uvrequire"
local core = require "uvrequire.core"
local t = uv.spawn(function()
  local f0 = require "pf_f0"
  -- every FIFO's prefetch has started (ends, now; waited, before)
  local t0 = os.clock()
  repeat until core.prefetchstats().done == 4 or os.clock() - t0 > 2
  return f0, (require "pf_after")
end)
uv.run()
print(t:result())
]], { K.install() }, { env = "UVREQUIRE_CACHE=off", timeout = 20 })
    assert.equal("true\tf0\tafter\n", r.out)
    assert.equal("", r.err)
  end)

  it("never dlopens: a C module's name is only searched for as Lua",
     function()
    package.cpath = FIX .. "?.so"
    H.files(s.dir, {
      ["pf_m.lua"] = "local function never() return require 'fix1' end\n" ..
                     "return never",
    })
    local before = {}  -- (earlier specs may have loaded copies of it)
    for k in pairs(debug.getregistry()._CLIBS or {}) do before[k] = true end
    H.task(function() return uv.require("pf_m") end)
    settle()
    assert.equal(1, stats().submitted)
    assert.equal(1, stats().done)
    for k in pairs(debug.getregistry()._CLIBS or {}) do
      assert.is_falsy(not before[k] and type(k) == "string" and
                      k:find("fix1", 1, true), k)
    end
    -- the prefetch's miss, adopted, ends as stock's: the C searcher
    -- finds it, in a job of its own
    local st, u = H.both({ "fix1" }, function(req)
      return H.outcome(req, "fix1")
    end)
    assert.equal(true, u.ok)
    assert.same(st[2], u[2])
    assert.same(st[1].tag, u[1].tag)
  end)

  it("gives stock's value, path and messages at top level", function()
    H.files(s.dir, {
      ["pf_t0.lua"] = "return function() require 'pf_t1'; " ..
                      "require 'pf_t2'; require 'pf_none' end",
      ["pf_t1.lua"] = "local require = REQ\n" ..
                      "local two = require('pf_t2')\n" ..
                      "local ok, err = pcall(function()\n" ..
                      "  return require 'pf_none' end)\n" ..
                      "return { two = two, ok = ok, err = err }",
      ["pf_t2.lua"] = "return { file = select(2, ...) }",
    })
    H.task(function() return uv.require("pf_t0") end)
    assert.equal(3, stats().submitted)
    settle()  -- (all done: the miss is then never adopted)
    local st, u = H.both({ "pf_t1", "pf_t2", "pf_none" }, function(req)
      rawset(_G, "REQ", req)
      return H.outcome(req, "pf_t1")
    end)
    assert.same(st, u)
    assert.is_false(u[1].ok)
    assert.matches("module 'pf_none' not found", u[1].err, 1, true)
    assert.equal(3, stats().submitted)
    assert.equal(2, stats().adopted)  -- (a miss is searched again)
  end)

  it("gives stock's error for a prefetched file that does not compile",
     function()
    H.files(s.dir, {
      ["pf_e0.lua"] = "return function() require 'pf_bad' end",
      ["pf_bad.lua"] = "return {",
    })
    H.task(function() return uv.require("pf_e0") end)
    settle()
    assert.equal(1, stats().done)
    local st, u = H.both({ "pf_bad" }, function(req)
      return H.outcome(req, "pf_bad")
    end)
    assert.same(st, u)
    assert.is_false(u.ok)
    assert.equal(0, stats().adopted)  -- (a failure is tried again)
  end)

  it("starts them from a synchronous load too, which adopts them",
     function()
    H.files(s.dir, {
      ["pf_s.lua"] = "local require = REQ\n" ..
                     "return function() return require 'pf_s2' end",
      ["pf_s2.lua"] = body("pf_s2"),
    })
    rawset(_G, "REQ", uv.require)
    local f = uv.require("pf_s")
    assert.equal("function", type(f))
    assert.equal(1, stats().submitted)
    assert.is_nil(rawget(_G, "PFN"))  -- compiled ahead, never run
    local m = f()
    assert.equal("pf_s2", m.name)
    assert.equal(s.dir .. "/pf_s2.lua", m.file)
    assert.same({ pf_s2 = 1 }, PFN)
    assert.equal(1, stats().adopted)
    assert.equal(0, stats().entries)
  end)

  it("does not use a prefetch after package.path changed", function()
    local other = H.tmpdir()
    H.files(s.dir, {
      ["pf_x.lua"] = "local function f() return require 'pf_y' end\n" ..
                     "return f",
      ["pf_y.lua"] = "return 'one'",
    })
    H.files(other, { ["pf_y.lua"] = "return 'two'" })
    H.task(function() return uv.require("pf_x") end)
    assert.equal(1, stats().submitted)
    package.path = other .. "/?.lua;" .. package.path
    assert.equal("two", uv.require("pf_y"))
    assert.equal(0, stats().adopted)
    assert.equal(1, stats().dropped)
    assert.equal(0, stats().entries)
    H.rmtree(other)
  end)

  it("never prefetches what is loaded, preloaded or not plain", function()
    H.files(s.dir, {
      ["pf_r.lua"] = "local f = function() require 'pf_pre'; " ..
                     "require 'string'; require(x); require 'a b'; " ..
                     "-- require 'pf_cmt'\n end\nreturn f",
    })
    package.preload.pf_pre = function() return 1 end
    H.task(function() return uv.require("pf_r") end)
    package.preload.pf_pre = nil
    assert.equal(0, stats().submitted)
  end)

  it("keeps to its memory budget, and is off on request", function()
    local prog = [[
      local core = require "uvrequire.core"
      local uv = require "uvrequire"
      local mode = ...
      if mode == "install" then uv.install{ prefetch = false } end
      local function settle()
        local t0 = os.clock()
        repeat local st = core.prefetchstats()
        until st.done == st.entries or os.clock() - t0 > 5
      end
      local function imp(n)
        uv.spawn(function() uv.require(n) end)
        uv.run()
      end
      imp "pf_1"
      settle()
      imp "pf_2"
      settle()
      local st = core.prefetchstats()
      local y = uv.require "pf_y1"
      print(st.on, st.submitted, st.dropped, st.entries, y,
            core.prefetchstats().adopted)
    ]]
    H.files(s.dir, {
      ["pf_1.lua"] = "return function() return require 'pf_y1' end",
      ["pf_2.lua"] = "return function() return require 'pf_y2' end",
      ["pf_y1.lua"] = "return 'y1'", ["pf_y2.lua"] = "return 'y2'",
    })
    local function run(env, mode)
      local r = K.run(s.dir, prog:gsub("%.%.%.", ("%q"):format(mode or "")),
                      nil, { env = env })
      assert(r.ok, r.err)
      return r.out
    end
    -- budget 1 byte: pf_y1's bytecode is over it, dropped for pf_y2
    assert.equal("true\t2\t1\t1\ty1\t0\n",
                 run("UVREQUIRE_PREFETCH_BUDGET=1"))
    assert.equal("true\t2\t0\t2\ty1\t1\n", run(""))
    -- a bytecode cache hit reads the source to check it: names too
    local cache = "UVREQUIRE_CACHE=" .. s.dir .. "/cache"
    assert.equal("true\t2\t0\t2\ty1\t1\n", run(cache))
    assert.equal("true\t2\t0\t2\ty1\t1\n", run(cache))
    assert.equal("false\t0\t0\t0\ty1\t0\n", run("UVREQUIRE_PREFETCH=off"))
    assert.equal("false\t0\t0\t0\ty1\t0\n", run("", "install"))
  end)

  -- {{{ Synchronous loads start prefetches too, and finished prefetches
  -- are expanded at every require and on the loop's turn (b8f01e9,
  -- ac322c4).  The "top level" cases run in a child lua5.4 after
  -- install(), with the bytecode cache off.

  -- the child's prelude: counters, and settle() as above
  local PRELUDE = [[
local uv = require "uvrequire"
local core = require "uvrequire.core"
local function settle()
  local t0 = os.clock()
  repeat local st = core.prefetchstats()
  until st.done == st.entries or os.clock() - t0 > 5
end
local function counts()
  local st = core.prefetchstats()
  return st.submitted, st.adopted, st.dropped, st.entries
end
]]

  -- (each child ends with its loop clean: nothing in flight, no handle)
  local CLEAN = [[
uv.run()
local info = uv.loopinfo()
assert(info.jobs == 0 and info.handles == 0, "loop not clean")
]]

  local function child(src, env)
    local r = K.run(s.dir, PRELUDE .. src .. "\n" .. CLEAN, { K.install() },
                    { env = "UVREQUIRE_CACHE=off " .. (env or "") })
    assert(r.ok, r.out .. r.err)
    assert.equal("", r.err)
    return r.out
  end

  -- a link of a chain: its body counts its runs, and its next() requires
  -- `nxt` (by a literal name, in a function called later)
  local function link(name, nxt, req)
    return ((req and "local require = REQ\n" or "") ..
            "PFN = PFN or {}\nPFN[%q] = (PFN[%q] or 0) + 1\n" ..
            "local M = { name = %q }\n" ..
            "function M.next() return require %q end\nreturn M")
           :format(name, name, name, nxt)
  end

  -- files of four modules P..1..4 that name 64 modules each (P..M.."_"..I,
  -- "return 0") in a function never called: 256 names, the table full
  local function fillers(files, p)
    for m = 1, 4 do
      local req = {}
      for i = 1, 64 do
        req[i] = ("require '%s%d_%d'"):format(p, m, i)
        files[("%s%d_%d.lua"):format(p, m, i)] = "return 0"
      end
      files[("%s%d.lua"):format(p, m)] =
        "return function()\n" .. table.concat(req, "\n") .. "\nend"
    end
    return files
  end

  it("a top-level require's prefetch never runs a body early", function()
    H.files(s.dir, {
      ["pf_p.lua"] = "local function later() return require 'pf_q' end\n" ..
                     "return later",
      ["pf_q.lua"] = body("pf_q"),
    })
    assert.equal("function\ttrue\t1\t1\t0\n" ..
                 "pf_q\t1\t1\t1\t0\t0\n", child [[
local later = require "pf_p"
settle()
local st = core.prefetchstats()
print(type(later), PFN == nil, st.submitted, st.done, st.adopted)
local q = later()  -- adopts the prefetch; the body runs now, once
print(q.name, PFN.pf_q, counts())
]])
  end)

  it("a top-level require's prefetch never dlopens", function()
    H.files(s.dir, {
      ["pf_m.lua"] = "local function never() return require 'fix1' end\n" ..
                     "return never",
    })
    -- (the prefetch, a Lua search, finds nothing: that is never
    -- adopted, and the require searches all again)
    assert.equal("false\ttrue\t1\t1\nfix1\ttrue\t0\n", child(([[
package.cpath = %q
local function mapped()  -- is fix1.so mapped in this process?
  local f = assert(io.open("/proc/self/maps"))
  local m = f:read("a")
  f:close()
  return m:find("/fix1.so", 1, true) ~= nil
end
local never = require "pf_m"
settle()
local st = core.prefetchstats()
print(mapped(), package.loaded.fix1 == nil, st.submitted, st.done)
-- the prefetch's miss, adopted: the C searcher finds it, as stock's
local v = never()
print(v.tag, mapped(), core.prefetchstats().adopted)
]]):format(K.ROOT .. "/" .. FIX .. "?.so")))
  end)

  it("keeps to its budget from a top-level require, the oldest first",
     function()
    local files = {}
    for i = 1, 3 do
      files[("pf_%d.lua"):format(i)] =
        ("return function() return require 'pf_y%d' end"):format(i)
      files[("pf_y%d.lua"):format(i)] = ("return 'y%d'"):format(i)
    end
    H.files(s.dir, files)
    -- the bytecode a prefetch holds: the dump of the file's compile,
    -- the same size for the three
    local function dumped(i)
      return #string.dump(load(("return 'y%d'"):format(i),
                               ("@%s/pf_y%d.lua"):format(s.dir, i)))
    end
    local size = dumped(1)
    assert.equal(size, dumped(2))
    assert.equal(size, dumped(3))
    -- each prefetch finished before the next starts (settle); the
    -- budget is checked as each starts
    local prog = [[
local one = require "pf_1"
settle()
local two = require "pf_2"
settle()
local three = require "pf_3"
settle()
print(core.prefetchstats().held)
print(three(), counts())
print(two(), counts())
print(one(), counts())
]]
    local function budget(n)
      return child(prog, "UVREQUIRE_PREFETCH_BUDGET=" .. n)
    end
    -- room for all three
    assert.equal(("%d\n"):format(3 * size) ..
                 "y3\t3\t1\t0\t2\ny2\t3\t2\t0\t1\ny1\t3\t3\t0\t0\n",
                 budget(3 * size))
    -- room for one finished: as pf_y3 starts, pf_y1 goes (the older),
    -- pf_y2 stays
    assert.equal(("%d\n"):format(2 * size) ..
                 "y3\t3\t1\t1\t1\ny2\t3\t2\t1\t0\ny1\t3\t2\t1\t0\n",
                 budget(size))
    -- room for none: pf_y1 goes as pf_y2 starts, pf_y2 as pf_y3 starts
    assert.equal(("%d\n"):format(size) ..
                 "y3\t3\t1\t2\t0\ny2\t3\t1\t2\t0\ny1\t3\t1\t2\t0\n",
                 budget(size - 1))
  end)

  it("keeps to its budget with prefetches that found names", function()
    -- pf_hr names pf_hb1..4 (in a function), each of about 20 KB of
    -- bytecode and naming a small pf_hcB.  Their sweep takes them off
    -- the executor's list: once, that also took them off its count of
    -- bytes held, and the budget (10 KB) was never checked again:
    -- held 80 KB for good.
    local files = { ["pf_hx.lua"] = "return 1", ["pf_hm.lua"] =
                    "return function() require 'pf_hz' end",
                    ["pf_hz.lua"] = "return 0" }
    local rb = {}
    for b = 1, 4 do
      rb[b] = ("require 'pf_hb%d'"):format(b)
      files[("pf_hb%d.lua"):format(b)] =
        ("return function()\nrequire 'pf_hc%d'\nlocal s = %q\nend")
        :format(b, ("A"):rep(20000))
      files[("pf_hc%d.lua"):format(b)] = "return 0"
    end
    files["pf_hr.lua"] = "return function()\n" .. table.concat(rb, "\n") ..
                         "\nend"
    H.files(s.dir, files)
    local out = child([[
require "pf_hr"
settle()
require "pf_hx"  -- the sweep: pf_hc1..4 start
settle()
require "pf_hm"  -- pf_hz starts: the budget is checked
settle()
local st = core.prefetchstats()
print(st.held <= 10000, st.dropped >= 3)
]], "UVREQUIRE_PREFETCH_BUDGET=10000")
    assert.equal("true\ttrue\n", out)
  end)

  -- files of a two-level tree: P.."r" names P.."b1".."bN" (in a
  -- function, not run), each of which names M modules P.."cB_C"
  -- ("return 0")
  local function tree(p, n, m)
    local files, rb = {}, {}
    for b = 1, n do
      rb[#rb + 1] = ("require '%sb%d'"):format(p, b)
      local rc = {}
      for c = 1, m do
        rc[#rc + 1] = ("require '%sc%d_%d'"):format(p, b, c)
        files[("%sc%d_%d.lua"):format(p, b, c)] = "return 0"
      end
      files[("%sb%d.lua"):format(p, b)] =
        "return function()\n" .. table.concat(rc, "\n") .. "\nend"
    end
    files[p .. "r.lua"] =
      "return function()\n" .. table.concat(rb, "\n") .. "\nend"
    return files
  end

  it("looks at every prefetch again after a time it was not allowed",
     function()
    -- The table is full, pf_km's names wait for room; pf_kg2 finishes
    -- with a name while package.searchers[1] is not stock's preload
    -- searcher (no prefetch): that sweep takes it off the executor's
    -- list unseen, and the first sweep allowed again looks at every
    -- entry: pf_kg2 is cut short too (the table is full).  The names
    -- waiting stay (once, such a look forgot them: pf_kn1 and pf_kn2
    -- were never prefetched) and start once there is room.
    local files = fillers({}, "pf_kf")
    files["pf_km.lua"] = "return function() require 'pf_kn1'\n" ..
                         "require 'pf_kn2' end"
    files["pf_kg.lua"] = "return function() require 'pf_kg2' end"
    files["pf_kg2.lua"] = "return function() require 'pf_kg3' end"
    for _, n in ipairs { "pf_kn1", "pf_kn2", "pf_kg3", "pf_kx1",
                         "pf_kx2" } do
      files[n .. ".lua"] = "return 0"
    end
    H.files(s.dir, files)
    assert.equal("257\t1\n260\t17\n260\t20\n", child([[
for m = 1, 4 do require("pf_kf" .. m) end
settle()
require "pf_km"     -- its names: no room, they wait
require "pf_kf1_1"  -- adopted: room for one
require "pf_kg"     -- pf_kg2 starts: full again
settle()            -- pf_kg2 is done, with a name
local std = package.searchers[1]
package.searchers[1] = function(...) return std(...) end
require "pf_kx1"    -- no prefetch: pf_kg2 leaves the list unseen
package.searchers[1] = std
local st = core.prefetchstats()
print(st.submitted, st.adopted)
for i = 2, 17 do require("pf_kf1_" .. i) end  -- room for 16
require "pf_kx2"    -- pf_kg3, pf_kn1, pf_kn2 start
settle()
st = core.prefetchstats()
print(st.submitted, st.adopted)
require "pf_kg2"; require "pf_kn1"; require "pf_kn2"
st = core.prefetchstats()
print(st.submitted, st.adopted)
]]))
  end)

  it("sweeps what finished while prefetch was not allowed, once it is",
     function()
    -- pf_lb (named by pf_la) finishes, naming pf_lc, while
    -- package.searchers[1] is not stock's preload searcher: that sweep
    -- takes it off the executor's list unseen.  The first require
    -- once the searchers are stock again must sweep it: pf_lc starts.
    -- (Once, no sweep was due for it ever after: submitted 1.)
    H.files(s.dir, {
      ["pf_la.lua"] = "return function() require 'pf_lb' end",
      ["pf_lb.lua"] = "return function() require 'pf_lc' end",
      ["pf_lc.lua"] = "return 0", ["pf_lx.lua"] = "return 1",
      ["pf_ly.lua"] = "return 1",
    })
    assert.equal("1\n2\t2\n", child([[
require "pf_la"
settle()            -- pf_lb is done, with a name
local std = package.searchers[1]
package.searchers[1] = function(...) return std(...) end
require "pf_lx"     -- no prefetch: pf_lb leaves the list unseen
package.searchers[1] = std
print(core.prefetchstats().submitted)
require "pf_ly"     -- allowed again: the sweep starts pf_lc
settle()
local st = core.prefetchstats()
print(st.submitted, st.entries)
]]))
  end)

  it("sweeps on the loop's turn what finished while not allowed",
     function()
    -- As above, but the sweep that is allowed again is the loop's turn:
    -- a task's require took pf_pb off the list while not allowed.
    H.files(s.dir, {
      ["pf_pa.lua"] = "return function() require 'pf_pb' end",
      ["pf_pb.lua"] = "return function() require 'pf_pc' end",
      ["pf_pc.lua"] = "return 0", ["pf_py.lua"] = "return 1",
    })
    assert.equal("1\tfalse\n2\t2\ttrue\n", child([[
require "pf_pa"
settle()            -- pf_pb is done, with a name
local std = package.searchers[1]
package.searchers[1] = function(...) return std(...) end
local t = uv.spawn(function() return require "pf_py" end)
print(core.prefetchstats().submitted, t:done())
package.searchers[1] = std
uv.run()            -- the task ends; the turn's sweep starts pf_pc
settle()
local st = core.prefetchstats()
print(st.submitted, st.entries, t:done())
]]))
  end)

  it("is off at once when a __gc turns it off during a sweep", function()
    -- The sweep of pf_ob1..6 (60 names each) allocates; a finalizer
    -- calls setprefetch(false), at a point that the collector's step
    -- size moves.  Nothing may start after, nor stay: once, the sweep
    -- went on filling the table, and those entries stayed while off
    -- (the next sweep never came); then one more job could start.
    local files = tree("pf_o", 6, 60)
    files["pf_ox.lua"] = "return 1"
    H.files(s.dir, files)
    for k = 1, 12 do
      local out = child(([[
require "pf_or"
settle()
local fired, at, mt = false, nil, {}
mt.__gc = function()
  fired = true
  core.setprefetch(false)
  at = core.prefetchstats().submitted
end
collectgarbage("incremental", 1, STEPMUL, 0)
setmetatable({}, mt)
require "pf_ox"  -- the sweep
collectgarbage("generational")
local st = core.prefetchstats()
print(fired, st.on, st.entries, st.submitted - at)
require "pf_oc1_1"
print(core.prefetchstats().adopted)
]]):gsub("STEPMUL", tostring(100 * k)), "UVREQUIRE_THREADS=1")
      assert.equal("true\tfalse\t0\t0\n0\n", out)
    end
  end)

  it("expands later, in the order needed, what a full table cut short",
     function()
    -- pf_nr names pf_nb1..10, each of which names 26 modules: 270
    -- entries, over the 256 the table holds.  The sweep after the ten
    -- are done starts 246 of their names in the order the Lua thread
    -- needs them: pf_nb1's first, so pf_nb10's last 14 wait for room
    -- (unordered, the one cut short would be any: pf_nc10_26 would
    -- likely be prefetched), and start once adoptions made room.
    local files = tree("pf_n", 10, 26)
    files["pf_nx1.lua"], files["pf_nx2.lua"] = "return 1", "return 2"
    H.files(s.dir, files)
    local out = child([[
require "pf_nr"
settle()
print(counts())
require "pf_nx1"  -- the sweep: 246 start
settle()
print(counts())
require "pf_nc10_26"  -- the last needed: not among them
print(counts())
for b = 1, 9 do  -- all prefetched, adopted: room for 234
  for c = 1, 26 do require("pf_nc" .. b .. "_" .. c) end
end
require "pf_nx2"  -- the sweep: the 13 cut short start
settle()
print(counts())
for c = 1, 26 do require("pf_nc10_" .. c) end  -- all prefetched
print(counts())
]])
    assert.equal("10\t0\t0\t10\n256\t0\t0\t256\n256\t0\t0\t256\n" ..
                 "269\t234\t0\t35\n269\t259\t0\t10\n", out)
  end)

  it("starts later the names of a loaded module that a full table cut short",
     function()
    -- As above, the table is full (pf_wb1..10's 256 first names), when
    -- pf_wm, required directly (never prefetched), names 20 modules:
    -- they wait for room, then start (before pf_wb10's last 14: pf_wm's
    -- key comes first), and their requires adopt them.  Once, they were
    -- lost: submitted 270, and pf_wn1..20 searched when required.
    local files = tree("pf_w", 10, 26)
    local rn = {}
    for k = 1, 20 do
      files[("pf_wn%d.lua"):format(k)] = "return 0"
      rn[k] = ("require 'pf_wn%d'"):format(k)
    end
    files["pf_wm.lua"] = "return function()\n" .. table.concat(rn, "\n") ..
                         "\nend"
    files["pf_wx1.lua"], files["pf_wx2.lua"] = "return 1", "return 2"
    H.files(s.dir, files)
    local out = child([[
require "pf_wr"
settle()
require "pf_wx1"  -- the sweep: the table fills up
settle()
require "pf_wm"  -- its 20 names: no room
print(counts())
for b = 1, 9 do
  for c = 1, 26 do require("pf_wc" .. b .. "_" .. c) end
end
require "pf_wx2"  -- the sweep: pf_wm's 20, then pf_wb10's 14
settle()
print(counts())
for k = 1, 20 do require("pf_wn" .. k) end  -- all prefetched
print(counts())
]])
    assert.equal("256\t0\t0\t256\n290\t234\t0\t56\n290\t254\t0\t36\n", out)
  end)

  it("drops, when full, finished prefetches nobody adopted for 512 loads",
     function()
    -- pf_sl1..4 name 64 modules each, in functions never called: 256
    -- entries, and the table stays full (only adoptions made room).
    -- 520 loads later, pf_sm's three names each drop the oldest such
    -- entry, start, and are adopted.  Without the drop they waited for
    -- room for good: adopted 0.
    local files = fillers({}, "pf_sl")
    for k = 1, 520 do files[("pf_sp%d.lua"):format(k)] = "return 0" end
    files["pf_sm.lua"] = "return function() require 'pf_sa'\n" ..
                         "require 'pf_sb'\nrequire 'pf_sc' end"
    files["pf_sa.lua"], files["pf_sb.lua"], files["pf_sc.lua"] =
      "return 1", "return 2", "return 3"
    H.files(s.dir, files)
    assert.equal("256\t0\t0\t256\n256\t0\t0\t256\n259\t0\t3\t256\n" ..
                 "259\t3\t3\t253\n", child([[
for m = 1, 4 do require("pf_sl" .. m) end
settle()
print(counts())
for k = 1, 500 do require("pf_sp" .. k) end  -- not yet 512 loads later
local f = require "pf_sm"  -- its names wait
settle()
print(counts())
for k = 501, 520 do require("pf_sp" .. k) end  -- a sweep: 3 go
settle()
print(counts())
f()
print(counts())
]]))
  end)

  it("survives a __gc that requires while a sweep starts prefetches",
     function()
    -- The sweep allocates; a collection step runs finalizers; each one
    -- here requires a module (a nested sweep and an adoption would free
    -- entries the outer sweep holds) and makes another such object.
    -- Before the sweep held its entries and refused to nest, this
    -- crashed in most runs.
    local files = tree("pf_u", 6, 60)
    files["pf_ux.lua"] = "return 1"
    for k = 1, 300 do
      files[("pf_uq%d.lua"):format(k)] =
        ("return function() require 'pf_uz%d' end"):format(k)
      files[("pf_uz%d.lua"):format(k)] = "return 1"
    end
    H.files(s.dir, files)
    for _ = 1, 3 do
      local out = child([[
require "pf_ur"
settle()
local k, mt = 0, {}
mt.__gc = function()
  k = k + 1
  if k <= 300 then
    require("pf_uq" .. k)
    setmetatable({}, mt)
  end
end
collectgarbage("incremental", 1, 1000, 0)
for _ = 1, 20 do setmetatable({}, mt) end
require "pf_ux"  -- the sweep
collectgarbage("generational")
print(k > 0)
]], "UVREQUIRE_THREADS=1 UVREQUIRE_PREFETCH_BUDGET=1")
      assert.equal("true\n", out)
    end
  end)

  it("survives a __gc that requires the module a sweep is expanding",
     function()
    -- The sweep expands pf_vb1..6 (done, 60 names each) and allocates
    -- as it goes; the finalizers require those very modules.  A module
    -- whose entry the sweep holds is not adopted (its job would be
    -- freed under the sweep: ASan saw the read after free): the require
    -- searches on its own, and the entry's job goes with the entry.
    local files = tree("pf_v", 6, 60)
    files["pf_vx.lua"] = "return 1"
    H.files(s.dir, files)
    for _ = 1, 3 do
      local out = child([[
local r = require "pf_vr"
settle()
local k, mt = 0, {}
mt.__gc = function()
  k = k + 1
  if k <= 6 then
    assert(type(require("pf_vb" .. k)) == "function")
    setmetatable({}, mt)
  end
end
collectgarbage("incremental", 1, 1000, 0)
setmetatable({}, mt)
require "pf_vx"  -- the sweep
collectgarbage("generational")
r()
for b = 1, 6 do require("pf_vb" .. b)() end
print(k > 0, package.loaded.pf_vc6_60)
]], "UVREQUIRE_THREADS=1")
      assert.equal("true\t0\n", out)
    end
  end)

  it("expands a chain ahead from a task's import while the loop runs",
     function()
    H.files(s.dir, {
      ["pf_da.lua"] = link("pf_da", "pf_db", true),
      ["pf_db.lua"] = link("pf_db", "pf_dc", true),
      ["pf_dc.lua"] = link("pf_dc", "pf_dd", true),
      ["pf_dd.lua"] = body("pf_dd"),
    })
    rawset(_G, "REQ", uv.require)
    local a
    H.task(function() a = uv.require("pf_da") end)
    -- the loop goes on (an idle handle of the program's keeps it alive):
    -- each finished prefetch's names are prefetched in turn, with no
    -- require in between
    local idle = H.luv.new_idle()
    idle:start(function() end)
    local t0 = os.clock()
    while stats().submitted < 3 and os.clock() - t0 < 5 do
      uv.run("nowait")
    end
    idle:stop()
    idle:close()
    uv.run()
    assert.equal(3, stats().submitted)  -- pf_db, pf_dc, pf_dd
    assert.equal(0, stats().adopted)
    assert.same({ pf_da = 1 }, PFN)  -- compiled, never run
    local d
    H.task(function() d = a.next().next().next() end)
    assert.equal("pf_dd", d.name)
    assert.equal(s.dir .. "/pf_dd.lua", d.file)
    assert.equal(3, stats().submitted)
    assert.equal(3, stats().adopted)
    assert.equal(0, stats().dropped)
    assert.equal(0, stats().entries)
    assert.same({ pf_da = 1, pf_db = 1, pf_dc = 1, pf_dd = 1 }, PFN)
  end)

  it("expands a chain at each top-level require, one level ahead",
     function()
    H.files(s.dir, {
      ["pf_da.lua"] = link("pf_da", "pf_db"),
      ["pf_db.lua"] = link("pf_db", "pf_dc"),
      ["pf_dc.lua"] = link("pf_dc", "pf_dd"),
      ["pf_dd.lua"] = body("pf_dd"),
    })
    -- (PFN.x: whether x's body ran already)
    assert.equal("1\t0\t0\t1\n" ..
                 "pf_db\tnil\t2\t1\t0\t1\n" ..
                 "pf_dc\tnil\t3\t2\t0\t1\n" ..
                 "pf_dd\t3\t3\t0\t0\n" ..
                 "1\t1\t1\t1\n", child [[
local a = require "pf_da"
print(counts())
settle()
-- the require of pf_db first expands pf_db's finished prefetch (pf_dc
-- goes to the executor), then adopts it
local b = a.next()
print(b.name, PFN.pf_dc, counts())
settle()
local c = b.next()
print(c.name, PFN.pf_dd, counts())
settle()
local d = c.next()
print(d.name, counts())
print(PFN.pf_da, PFN.pf_db, PFN.pf_dc, PFN.pf_dd)
]])
  end)

  -- Two states on two OS threads (luv threads) share the executor: a
  -- Lua thread that waits for a worker runs only its own state's queued
  -- prefetches, never one the other state adopts meanwhile (it would
  -- wait for it for good).  B waits 100 ms so that A is waiting then.
  it("never runs another state's prefetch while it waits", function()
    local function big(n)
      local t = { "local t = {}" }
      for i = 1, n do
        t[#t + 1] = ("t[%d] = { a = %d, b = 's%d' }"):format(i, i, i)
      end
      t[#t + 1] = "return t"
      return table.concat(t, "\n")
    end
    H.files(s.dir, {
      ["pf_bigx.lua"] = big(30000),    -- compiles in ~0.2 s here
      ["pf_bigp.lua"] = big(200000),   -- ~1 s
      ["pf_ax.lua"] = "return function() return require 'pf_bigx' end",
      ["pf_bp.lua"] = "return function() return require 'pf_bigp' end",
    })
    local r = K.run(s.dir, ([[
local luv = require "luv"
local dir = %q
local one = require "pf_ax"  -- prefetch of pf_bigx: the worker has it
local th = luv.new_thread(function(dir)
  local luv = require "luv"
  require("uvrequire").install()
  local two = require "pf_bp"  -- prefetch of pf_bigp, queued
  io.open(dir .. "/ready", "w"):close()
  local t = luv.hrtime()
  while luv.hrtime() - t < 100e6 do end  -- the other is waiting now
  two()  -- adopts pf_bigp, which the other state's thread runs
  io.open(dir .. "/bdone", "w"):close()
end, dir)
while not io.open(dir .. "/ready") do end
one()  -- adopts pf_bigx, running: runs queued prefetches meanwhile
print("A done")
local t = luv.hrtime()
while not io.open(dir .. "/bdone") and luv.hrtime() - t < 10e9 do end
print(io.open(dir .. "/bdone") and "B done" or "B hung")
io.stdout:flush()
if not io.open(dir .. "/bdone") then os.exit(0) end  -- (B is stuck)
th:join()
]]):format(s.dir), { K.install() },
      { env = "UVREQUIRE_THREADS=1 UVREQUIRE_CACHE=off" })
    assert.equal("A done\nB done\n", r.out)
  end)

  it("records a prefetch that the waiting Lua thread ran itself", function()
    -- One worker, stuck in a task's import of pf_hx, a FIFO that a
    -- thread of the child writes only once the Lua thread has opened
    -- pf_hy (inotify tells it): the Lua thread runs the queued prefetch
    -- of pf_hy itself while it waits for pf_hx at top level.  That
    -- record is as complete as a worker's.
    assert(os.execute("mkfifo '" .. s.dir .. "/pf_hx.lua'"))
    H.files(s.dir, {
      ["pf_hroot.lua"] = "require 'pf_hx'\nrequire 'pf_hy'",
      ["pf_hy.lua"] = "return 'y' -- yyyy",
    })
    local r = K.run(s.dir, ([[
local luv = require "luv"
local U = require "uvrequire"
DIR = %q
local th = luv.new_thread(function(dir, lib)
  local ow = package.loadlib(lib, "luaopen_openwait")()
  local x = io.open(dir .. "/pf_hx.lua", "w")  -- the worker has it open
  local w = assert(ow.watch(dir .. "/pf_hy.lua"))
  io.open(dir .. "/busy", "w"):close()
  assert(ow.wait(w))  -- the Lua thread opened pf_hy
  x:write("return 'x'")
  x:close()
end, DIR, %q)
local t = U.spawn(function() return require "pf_hx" end)
while not io.open(DIR .. "/busy") do end
require "pf_hroot"
th:join()
U.run()
assert(t:result())
for _, r in ipairs(U.stats()) do
  if r.name:match("^pf_h[xy]") then print(r.name, r.bytes) end
end
]]):format(s.dir, H.ROOT .. "/" .. FIX .. "openwait.so"), { K.install() },
      { env = "UVREQUIRE_THREADS=1 UVREQUIRE_CACHE=off", timeout = 60 })
    assert.equal("pf_hx\t10\npf_hy\t18\n", r.out)
  end)
  -- }}}
end)
