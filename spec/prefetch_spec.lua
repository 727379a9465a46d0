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

-- wait (bounded) until every prefetch entry's job is done
local function settle()
  local t0 = os.clock()
  while stats().done < stats().entries and os.clock() - t0 < 5 do end
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
    local st, u = H.both({ "pf_t1", "pf_t2", "pf_none" }, function(req)
      rawset(_G, "REQ", req)
      return H.outcome(req, "pf_t1")
    end)
    assert.same(st, u)
    assert.is_false(u[1].ok)
    assert.matches("module 'pf_none' not found", u[1].err, 1, true)
    assert.equal(3, stats().submitted)
    assert.equal(3, stats().adopted)
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
    assert.equal(1, stats().adopted)
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
end)
