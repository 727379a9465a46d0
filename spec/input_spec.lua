-- Input read as stock reads it: the executor streams a module file to
-- the parser, so an endless file fails at once with stock's syntax
-- error; a file that opens but cannot be read, BOMs, '#' lines and
-- binary chunks give stock's outcome, in a task and in place.
local H = require "helper"
local U = H.uv

local ROOT = assert(io.popen("pwd")):read("l")

-- The command for a child lua5.4.  Under `make tsan` the sanitizer is
-- preloaded for it alone (shells die under it, so the spec process
-- dropped LD_PRELOAD from its environment).
local LUA = os.getenv("UVREQUIRE_PRELOAD") and
  ("env LD_PRELOAD='%s' lua5.4"):format(os.getenv("UVREQUIRE_PRELOAD")) or
  "lua5.4"

-- Outcomes of require(name) by stock, by uvrequire in a task and by
-- uvrequire in place (top level), with package.path set to 'path'.
local function three(path, name)
  local saved = package.path
  package.path = path
  local function clear() package.loaded[name] = nil end
  clear()
  local s = H.outcome(H.stock, name)
  clear()
  local ok, t = H.task(function() return H.outcome(U.require, name) end)
  assert(ok)
  clear()
  local p = H.outcome(U.require, name)
  clear()
  package.path = saved
  return s, t, p
end

-- Run uvrequire on 'path' in a child process, killed after 20 s (so
-- that reading forever fails rather than hangs the suite).  Returns
-- the task's and the in-place messages, and the seconds taken.
local function child(path)
  local script = os.tmpname()
  H.write(script, ([[
    package.path = %q .. "/lua/?.lua;" .. package.path
    package.cpath = %q .. "/build/?.so;" .. package.cpath
    local U = require "uvrequire"
    package.path = %q
    local t = U.spawn(function() return U.require("x") end)
    pcall(U.run)
    local _, e = t:result()
    local _, e2 = pcall(U.require, "x")
    io.write(tostring(e), "\0", tostring(e2), "\0")
  ]]):format(ROOT, ROOT, path))
  local t0 = os.time()
  local p = assert(io.popen("timeout 20 " .. LUA .. " '" .. script .. "'"))
  local out = p:read("a")
  p:close()
  os.remove(script)
  local a, b = out:match("^(.-)%z(.-)%z$")
  return a, b, os.time() - t0
end

describe("module input", function()
  local scratch, dir

  before_each(function()
    scratch = H.scratch()
    dir = scratch.dir
  end)

  after_each(function() scratch.restore() end)

  it("fails on /dev/zero at once with stock's syntax error", function()
    local path = "/dev/zero;" .. dir .. "/?.lua"
    package.path = path
    local s = H.outcome(H.stock, "x")
    package.path = dir .. "/?.lua"
    assert.is_false(s.ok)
    assert.equals("error loading module 'x' from file '/dev/zero':\n\t" ..
                  "/dev/zero:1: unexpected symbol", s[1])
    local task, inplace, secs = child(path)
    assert.equals(s[1], task)
    assert.equals(s[1], inplace)
    assert.is_true(secs < 10)
  end)

  it("fails on /dev/urandom at once with a syntax error", function()
    local task, inplace, secs = child("/dev/urandom;" .. dir .. "/?.lua")
    local head = "^error loading module 'x' from file '/dev/urandom':\n\t" ..
                 "/dev/urandom"
    assert.matches(head, task)
    assert.matches(head, inplace)
    assert.is_true(secs < 10)
  end)

  it("says 'cannot read' with the path and reason, as stock", function()
    assert(os.execute("mkdir '" .. dir .. "/d.lua'"))
    local s, t, p = three(dir .. "/?.lua", "d")
    assert.same(s, t)
    assert.same(s, p)
    assert.equals("error loading module 'd' from file '" .. dir ..
                  "/d.lua':\n\tcannot read " .. dir ..
                  "/d.lua: Is a directory", s[1])
  end)

  it("reads BOMs, '#' lines and binary chunks as stock", function()
    local bin = string.dump(function() return 42 end)
    local files = {
      bom = "\239\187\191return 'bom'",
      bomhash = "\239\187\191#!/bin/lua\n\nerror('line 3')",
      hash = "#!/bin/lua\nreturn 'hash'",
      hashonly = "#!/bin/lua",
      hashbin = "#!/bin/lua\n" .. bin,
      bombin = "\239\187\191" .. bin,
      bombhashbin = "\239\187\191#x\n" .. bin,
      partbom = "\239\187return 1",
      partbombin = "\239" .. bin,
      partbomhash = "\239#x\nreturn 1",
      bin = bin,
      badbin = bin:sub(1, 10),
      empty = "",
      syntax = "\n\nreturn return",
    }
    for name, content in pairs(files) do
      H.write(dir .. "/" .. name .. ".lua", content)
    end
    for name in pairs(files) do
      local s, t, p = three(dir .. "/?.lua", name)
      assert.same(s, t, name)
      assert.same(s, p, name)
    end
  end)

  it("compiles a large module without holding its source", function()
    local parts = { "local t = {" }
    for i = 1, 20000 do
      parts[#parts + 1] = ("%q,"):format(("x"):rep(100) .. i)
    end
    parts[#parts + 1] = "} return #t, t[20000]"
    H.write(dir .. "/big.lua", table.concat(parts, "\n"))
    local s, t, p = three(dir .. "/?.lua", "big")
    assert.same(s, t)
    assert.same(s, p)
    assert.equals(20000, s[1])
  end)

  it("never holds a module's source whole", function()
    -- (no bound to check under a sanitizer: ASan's quarantine keeps
    -- freed memory, TSan's shadow memory is resident)
    if os.getenv("UVREQUIRE_ASAN") == "1" or os.getenv("UVREQUIRE_PRELOAD")
    then return end
    local f = assert(io.open(dir .. "/huge.lua", "w"))
    local line = "n = n + 1 -- " .. ("padding "):rep(10) .. "\n"
    f:write("local n = 0\n")
    for _ = 1, 400000 do f:write(line) end  -- 36 MB
    f:write("return n\n")
    local size = f:seek()
    f:close()
    local script = dir .. "/main.lua"
    H.write(script, ([[
      package.path = %q .. "/lua/?.lua;" .. package.path
      package.cpath = %q .. "/build/?.so;" .. package.cpath
      local U = require "uvrequire"
      package.path = %q
      local t = U.spawn(function() return U.require("huge") end)
      U.run()
      local ok, n = t:result()
      local st = assert(io.open("/proc/self/status")):read("a")
      io.write(tostring(ok), " ", tostring(n), " ",
               st:match("VmHWM:%%s*(%%d+) kB"))
    ]]):format(ROOT, ROOT, dir .. "/?.lua"))
    local p = assert(io.popen("timeout 60 " .. LUA .. " '" .. script .. "'"))
    local ok, n, kb = p:read("a"):match("^(%S+) (%S+) (%d+)$")
    p:close()
    assert.equals("true", ok)
    assert.equals("400000", n)
    -- peak resident memory of the whole process, below the source size
    assert.is_true(tonumber(kb) * 1024 < size,
                   ("peak %d kB for a %d kB source"):format(kb, size // 1024))
  end)
end)
