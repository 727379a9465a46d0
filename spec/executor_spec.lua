-- The executor under concurrency: many tasks import many modules at
-- once (Lua, C, failing, missing), a FIFO holds one worker while the
-- others go on, and a state closes with jobs running and queued.  Run
-- by `make tsan` under ThreadSanitizer; part of the plain suite too.
local H = require "helper"
local U, uv = H.uv, H.luv

local FIX = "build/fixtures/"

-- The command for a child lua5.4.  Under `make tsan` the sanitizer is
-- preloaded for it alone (shells die under it, so the spec process
-- dropped LD_PRELOAD from its environment).
local LUA = os.getenv("UVREQUIRE_PRELOAD") and
  ("env LD_PRELOAD='%s' lua5.4"):format(os.getenv("UVREQUIRE_PRELOAD")) or
  "lua5.4"

describe("executor", function()
  local scratch, dir, cpath

  before_each(function()
    scratch = H.scratch()
    dir = scratch.dir
    cpath = package.cpath
  end)

  after_each(function()
    package.cpath = cpath
    scratch.restore()
  end)

  it("serves many tasks importing many modules at once", function()
    local NMOD, NTASK, PER = 40, 120, 6
    local files, expect = {}, {}
    for i = 1, NMOD do
      local name = "ex" .. i
      if i % 10 == 0 then  -- a syntax error
        files[name .. ".lua"] = "return return"
        expect[name] = "syntax"
      elseif i % 10 == 5 then  -- missing
        expect[name] = "missing"
      else  -- requires a lower module, protected
        files[name .. ".lua"] = ("local ok = pcall(require, 'ex%d')\n" ..
          "return { name = ..., i = %d, ok = ok }"):format(i // 2 + 1, i)
        expect[name] = "ok"
      end
    end
    H.files(dir, files)
    package.cpath = FIX .. "?.so"
    local cmods = { "fix1", "fix1.sub", "fix2-v2", "nosym" }
    math.randomseed(42)
    local tasks, wants = {}, {}
    for t = 1, NTASK do
      local names = {}
      for k = 1, PER do names[k] = "ex" .. math.random(NMOD) end
      names[PER + 1] = cmods[t % #cmods + 1]
      wants[t] = names
      tasks[t] = U.spawn(function()
        local out = {}
        for k, n in ipairs(names) do
          local ok, v = pcall(U.require, n)
          out[k] = { ok = ok, v = v }
        end
        return out
      end)
    end
    U.run()
    for t = 1, NTASK do
      local ok, out = tasks[t]:result()
      assert.is_true(ok, out)
      for k, n in ipairs(wants[t]) do
        local r, e = out[k], expect[n]
        if e == "ok" then
          assert.is_true(r.ok, n)
          assert.equals(n, r.v.name)
        elseif e == "syntax" then
          assert.is_false(r.ok, n)
          assert.matches("error loading module '" .. n .. "' from file",
                         r.v, 1, true)
        elseif e == "missing" then
          assert.is_false(r.ok, n)
          assert.matches("module '" .. n .. "' not found:", r.v, 1, true)
        elseif n == "nosym" then
          assert.is_false(r.ok, n)
        else
          assert.is_true(r.ok, n)
        end
      end
    end
    for i = 1, NMOD do package.loaded["ex" .. i] = nil end
    for _, n in ipairs(cmods) do package.loaded[n] = nil end
  end)

  it("goes on with other imports while a FIFO holds a worker", function()
    local fifo = dir .. "/held.lua"
    assert(os.execute("mkfifo '" .. fifo .. "'"))
    local files = {}
    for i = 1, 30 do files["free" .. i .. ".lua"] = "return " .. i end
    H.files(dir, files)
    local held = U.spawn(U.require, "held")
    local free = {}
    for i = 1, 30 do free[i] = U.spawn(U.require, "free" .. i) end
    local timer = uv.new_timer()
    local released = false
    timer:start(1, 1, function()
      for i = 1, 30 do if not free[i]:done() then return end end
      if not released then
        released = true
        assert.is_false(held:done())
        local f = assert(io.open(fifo, "w"))
        f:write("return 'held'")
        f:close()
      elseif held:done() then
        timer:close()
      end
    end)
    U.run()
    for i = 1, 30 do
      assert.same({ true, i, dir .. "/free" .. i .. ".lua" },
                  { free[i]:result() })
      package.loaded["free" .. i] = nil
    end
    assert.same({ true, "held", fifo }, { held:result() })
    package.loaded.held = nil
  end)

  it("lets a state close with jobs running and queued", function()
    local fifo = dir .. "/never.lua"
    assert(os.execute("mkfifo '" .. fifo .. "'"))
    local files = {}
    for i = 1, 20 do files["q" .. i .. ".lua"] = "return " .. i end
    H.files(dir, files)
    local script = "local U = require 'uvrequire'; package.path = " ..
      ("%q"):format(dir .. "/?.lua") ..
      "; U.spawn(U.require, 'never'); for i = 1, 20 do " ..
      "U.spawn(U.require, 'q' .. i) end; print('exiting')"
    for _, threads in ipairs { "1", "4" } do
      local cmd = ("UVREQUIRE_THREADS=%s LUA_PATH='lua/?.lua;;' " ..
                   "LUA_CPATH='build/?.so;;' timeout 60 %s -e %q 2>&1")
                  :format(threads, LUA, script)
      local p = assert(io.popen(cmd))
      local out = p:read("a")
      local ok, how, code = p:close()
      assert.equals("exiting\n", out)
      assert.same({ true, "exit", 0 }, { ok, how, code })
    end
    -- the workers still blocked on the FIFO in those processes died
    -- with them; nothing to release here
  end)
end)
