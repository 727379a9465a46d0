-- The bytecode cache for synchronous requires (commits b8f01e9 and
-- ac322c4): a `require` that cannot wait (top level, here) looks the
-- module up in the cache on the Lua thread; after a miss the Lua thread
-- compiles the file itself and hands the entry to a detached executor
-- job, whose writes are flushed when the state closes and before
-- `cachestats()` answers.  spec/cache_spec.lua covers the cache as a
-- task's import uses it; this file mirrors it for the top level.
--
-- Every program runs in a child lua5.4 started from a scratch
-- directory, with "./?.lua" first on the path (chunk names "./m1.lua")
-- and UVREQUIRE_CACHE set to a cache directory of its own.  A program
-- ends by running the loop dry and checking that no import is in
-- flight and no handle is left; then (unless `nostats`) it prints the
-- cache counters "STATS <hits> <misses> <writes>".
--
-- The case marked "KNOWN ISSUE" fails against the core (a difference
-- from stock, README "Known limits"); it is pending unless
-- UVREQUIRE_KNOWN_ISSUES=1 (then it runs, and fails).
local H = require "helper"
local C = require "cache_helper"


local sh = H.sh

local readfile = H.readfile

local run, command = C.run, C.command

-- Run `src` with stock `require`: plain lua5.4, no uvrequire at all
-- (the same paths; UVREQUIRE_CACHE is irrelevant).  Returns its output.
local function stock(dir, src)
  H.write(dir .. "/prog.lua", src)
  local p = assert(io.popen(command(dir, "")))
  local out = p:read("a")
  local ok = p:close()
  assert(ok, "stock child failed:\n" .. out)
  return out
end

-- Require `names` at top level after install(): print each module's
-- value(), its loader data, then what uvrequire.stats() recorded as
-- cached ("CACHED m1=true m2=true").
local function top(names, opts)
  return ([[
local uv = require "uvrequire"
uv.install(%s)
for _, n in ipairs({ %s }) do
  local m, data = require(n)
  print(n, m.value(), data)
end
local rec = {}
for _, r in ipairs(uv.stats()) do
  rec[#rec + 1] = r.name .. "=" .. tostring(r.cached)
end
print("CACHED " .. table.concat(rec, " "))
]]):format(opts or "", ("%q, "):rep(#names):format(table.unpack(names)))
end

-- The same imports in a task.
local function intask(names)
  return ([[
local uv = require "uvrequire"
uv.install()
local t = uv.spawn(function()
  for _, n in ipairs({ %s }) do
    local m, data = require(n)
    print(n, m.value(), data)
  end
end)
uv.run()
assert(t:result())
local rec = {}
for _, r in ipairs(uv.stats()) do
  rec[#rec + 1] = r.name .. "=" .. tostring(r.cached)
end
print("CACHED " .. table.concat(rec, " "))
]]):format(("%q, "):rep(#names):format(table.unpack(names)))
end

-- What `top`/`intask` print for modules `names` made by `module`,
-- all cached or all not.
local function expected(names, values, cached)
  local t, rec = {}, {}
  for i, n in ipairs(names) do
    t[#t + 1] = ("%s\t%s\t./%s.lua\n"):format(n, values[i], n)
    rec[#rec + 1] = n .. "=" .. tostring(cached)
  end
  return table.concat(t) .. "CACHED " .. table.concat(rec, " ") .. "\n"
end

local module = C.module

local entries = C.entries

local mode = C.mode

-- {{{ The content hash of cache format 2 (csrc/cache.c, 'ur_hash'):
-- 8 bytes a step (a multiply and a rotate), the length, MurmurHash3's
-- fmix64.  Lua integers wrap around as uint64_t does.
local K1, K2, K3 = 0x9e3779b97f4a7c15, 0xc2b2ae3d27d4eb4f,
                   0x165667b19e3779f9
local function mix(h, w)
  h = h ~ (w * K1)
  h = (h << 27) | (h >> 37)
  return h * K2 + K3
end
local function hash(s)
  local h, n, i = 0x27d4eb2f165667c5, #s, 1
  while i + 7 <= n do
    h = mix(h, (string.unpack("<i8", s, i)))
    i = i + 8
  end
  if i <= n then
    local tail = 0
    for k = 0, n - i do tail = tail | (s:byte(i + k) << (8 * k)) end
    h = mix(h, tail)
  end
  h = h ~ n
  h = (h ~ (h >> 33)) * 0xff51afd7ed558ccd
  h = (h ~ (h >> 33)) * 0xc4ceb9fe1a85ec53
  return h ~ (h >> 33)
end

-- An entry, taken apart: its header fields, path, name and bytecode.
local HEADER = "=c8I4I4I4I4I4I4I8i8i8I8I8I8"  -- 80 bytes, no padding
local function parse(bytes)
  local e = {}
  local pos
  e.magic, e.format, e.release, e.intsize, e.numsize, e.pathlen,
    e.namelen, e.size, e.msec, e.mnsec, e.srchash, e.codelen, e.codehash,
    pos = string.unpack(HEADER, bytes)
  e.path = bytes:sub(pos, pos + e.pathlen - 1)
  e.name = bytes:sub(pos + e.pathlen, pos + e.pathlen + e.namelen - 1)
  e.code = bytes:sub(pos + e.pathlen + e.namelen)
  return e
end

-- LUA_VERSION_RELEASE_NUM of the lua5.4 the children run
local RELEASE = (function()
  local a, b, c = sh("lua5.4 -v"):match("^Lua (%d+)%.(%d+)%.(%d+)")
  return tonumber(a) * 10000 + tonumber(b) * 100 + tonumber(c)
end)()
-- }}}

describe("bytecode cache at top level", function()
  local dir, cache, env

  before_each(function() dir, cache, env = C.scratch() end)
  after_each(function() C.remove(dir) end)

  it("writes entries, flushed when the state closes, and hits them next",
     function()
    -- no cachestats() here (it would flush): the state's close must
    local out = run(dir, env, top({ "m1", "m2" }), { nostats = true })
    assert.equals(expected({ "m1", "m2" }, { "one", "two" }, false), out)
    local e = entries(cache)
    assert.equals(2, #e)  -- both, and no temporary file
    for _, f in ipairs(e) do
      assert.matches("^%x+%.luac$", f)
      assert.equals("600", mode(cache .. "/" .. f))
    end
    for _, d in ipairs({ "/cache", "/cache/a", "/cache/a/b" }) do
      assert.equals("700", mode(dir .. d))
    end
    local s
    out, s = run(dir, env, top({ "m1", "m2" }))
    assert.equals(expected({ "m1", "m2" }, { "one", "two" }, true), out)
    assert.same({ 2, 0, 0 }, s)
    assert.same(e, entries(cache))
  end)

  it("counts a miss and a write per module; cachestats() waits for them",
     function()
    local out, s = run(dir, env, top({ "m1", "m2" }))
    assert.equals(expected({ "m1", "m2" }, { "one", "two" }, false), out)
    assert.same({ 0, 2, 2 }, s)
    -- cachestats() answered after the writes: both on disk at once
    out, s = run(dir, env, top({ "m1", "m2" }) .. [[
local st = require("uvrequire.core").cachestats()
local p = io.popen("ls -A '" .. st.dir .. "'")
print("FILES", #p:read("a"):gsub("[^\n]", ""))
p:close()
]])
    assert.equals(expected({ "m1", "m2" }, { "one", "two" }, true) ..
                  "FILES\t2\n", out)
    assert.same({ 2, 0, 0 }, s)
  end)

  it("writes the entry of cache format 2, with the new content hash",
     function()
    run(dir, env, top({ "m1" }))
    local e = entries(cache)
    assert.equals(1, #e)
    local src = readfile(dir .. "/m1.lua")
    local abspath = dir .. "/./m1.lua"  -- the cwd joined to "./m1.lua"
    assert.equals(("%016x.luac"):format(hash(abspath)), e[1])
    local ent = parse(readfile(cache .. "/" .. e[1]))
    local sec, nsec = sh("date -r '" .. dir .. "/m1.lua' +%s.%N")
                        :match("^(%d+)%.(%d+)")
    assert.same({
      magic = "uvrqbc\n\0", format = 2, release = RELEASE,
      intsize = string.packsize("j"), numsize = string.packsize("n"),
      pathlen = #abspath, namelen = #"./m1.lua",
      size = #src, msec = tonumber(sec), mnsec = tonumber(nsec),
      srchash = hash(src), codelen = #ent.code, codehash = hash(ent.code),
      path = abspath, name = "./m1.lua",
      -- the very dump of the source's compile, with debug information
      code = string.dump(load(src, "@./m1.lua")),
    }, ent)
  end)

  it("takes an entry of format 1 for a miss, and rewrites it", function()
    run(dir, env, top({ "m1" }))
    local entry = cache .. "/" .. entries(cache)[1]
    local good = readfile(entry)
    -- the same entry, its format field (bytes 9 to 12) made 1
    H.write(entry, good:sub(1, 8) .. string.pack("=I4", 1) .. good:sub(13))
    sh("chmod 600 '" .. entry .. "'")
    local out, s = run(dir, env, top({ "m1" }))
    assert.equals(expected({ "m1" }, { "one" }, false), out)
    assert.same({ 0, 1, 1 }, s)
    assert.equals(good, readfile(entry))
    assert.equals(2, parse(readfile(entry)).format)
  end)

  it("falls back to the source from a truncated or corrupt entry", function()
    run(dir, env, top({ "m1" }))
    local entry = cache .. "/" .. entries(cache)[1]
    local good = readfile(entry)
    local function try(bytes)
      H.write(entry, bytes)
      sh("chmod 600 '" .. entry .. "'")
      -- no cachestats(): the rewrite is flushed at close
      local out = run(dir, env, top({ "m1" }), { nostats = true })
      assert.equals(expected({ "m1" }, { "one" }, false), out)
      assert.equals(good, readfile(entry))  -- rewritten
      local s
      out, s = run(dir, env, top({ "m1" }))
      assert.same({ 1, 0, 0 }, s)
    end
    try("")                                     -- empty
    try(good:sub(1, 40))                        -- in the header
    try(good:sub(1, -2))                        -- one byte short
    try(good .. "x")                            -- one byte more
    local n = #good - 10                        -- a bytecode byte flipped
    try(good:sub(1, n - 1) .. string.char(good:byte(n) ~ 1) ..
        good:sub(n + 1))
    n = 60                                      -- the source's hash
    try(good:sub(1, n - 1) .. string.char(good:byte(n) ~ 1) ..
        good:sub(n + 1))
    try("junk" .. good:sub(5))                  -- bad magic
  end)

  for _, case in ipairs(C.cases(
      function() return dir, cache, env end, top,
      expected, pending)) do
    it(case[1], case[2])
  end

  it("loads, and writes nothing, when the cache directory is unusable",
     function()
    H.write(dir .. "/afile", "")
    for _, d in ipairs({ dir .. "/afile", dir .. "/afile/sub" }) do
      local out, s = run(dir, "UVREQUIRE_CACHE='" .. d .. "'",
                         top({ "m1", "m2" }))
      assert.equals(expected({ "m1", "m2" }, { "one", "two" }, false), out)
      assert.same({ 0, 2, 0 }, s)
    end
    assert.equals("", readfile(dir .. "/afile"))
  end)

  it("is off with install{cache = false} or UVREQUIRE_CACHE=off", function()
    local out, s = run(dir, env, top({ "m1" }, "{ cache = false }"))
    assert.equals(expected({ "m1" }, { "one" }, false), out)
    assert.same({ 0, 0, 0 }, s)
    out, s = run(dir, "UVREQUIRE_CACHE=off",
                 top({ "m1" }, ("{ cache = %q }"):format(cache)))
    assert.equals(expected({ "m1" }, { "one" }, false), out)
    assert.same({ 0, 0, 0 }, s)
    assert.equals(0, #entries(dir .. "/cache"))
  end)

  it("shares its entries with tasks' imports, both ways", function()
    local out, s = run(dir, env, top({ "m1" }))
    assert.same({ 0, 1, 1 }, s)
    out, s = run(dir, env, intask({ "m1", "m2" }))
    assert.equals((expected({ "m1", "m2" }, { "one", "two" }, nil)
                    :gsub("CACHED.*", "CACHED m1=true m2=false\n")), out)
    assert.same({ 1, 1, 1 }, s)
    out, s = run(dir, env, top({ "m2", "m1" }))
    assert.equals(expected({ "m2", "m1" }, { "two", "one" }, true), out)
    assert.same({ 2, 0, 0 }, s)
    assert.equals(2, #entries(cache))
  end)

  it("keeps sources with a BOM or a '#' line, not binary chunks", function()
    H.write(dir .. "/mbom.lua", "\239\187\191" .. module("bom"))
    H.write(dir .. "/mhash.lua", "#!/usr/bin/env lua\n" .. module("hash"))
    H.write(dir .. "/mbin.lua", string.dump(load(module("bin"), "=mbin")))
    local names = { "mbom", "mhash", "mbin" }
    local values = { "bom", "hash", "bin" }
    local out, s = run(dir, env, top(names))
    assert.equals(expected(names, values, false), out)
    assert.same({ 0, 3, 2 }, s)
    assert.equals(2, #entries(cache))
    out, s = run(dir, env, top(names))
    assert.equals((expected(names, values, nil)
                    :gsub("CACHED.*",
                          "CACHED mbom=true mhash=true mbin=false\n")), out)
    assert.same({ 2, 1, 0 }, s)
  end)

  it("keeps apart the same relative name in other directories", function()
    H.write(dir .. "/a/m1.lua", module("in a"))
    H.write(dir .. "/b/m1.lua", module("in b"))
    local _, s = run(dir .. "/a", env, top({ "m1" }))
    assert.same({ 0, 1, 1 }, s)
    local out
    out, s = run(dir .. "/b", env, top({ "m1" }))
    assert.equals(expected({ "m1" }, { "in b" }, false), out)
    assert.same({ 0, 1, 1 }, s)
    out, s = run(dir .. "/a", env, top({ "m1" }))
    assert.equals(expected({ "m1" }, { "in a" }, true), out)
    assert.same({ 1, 0, 0 }, s)
    assert.equals(2, #entries(cache))
  end)

  describe("a cached module whose source was deleted", function()
    -- the message as stock prints it; in uvrequire's run, also the
    -- message a task gets
    local prog = [[
local ok, err = pcall(require, "m1")
print(ok, err)
if os.getenv("TASK") then
  local uv = require "uvrequire"
  local t = uv.spawn(function() return pcall(require, "m1") end)
  uv.run()
  print(select(2, t:result()))
end
]]

    it("is not found, with stock's message, at top level and in a task",
       function()
      local out, s = run(dir, env, top({ "m1" }))
      assert.same({ 0, 1, 1 }, s)
      out, s = run(dir, env, top({ "m1" }))
      assert.same({ 1, 0, 0 }, s)
      assert(os.remove(dir .. "/m1.lua"))
      local want = stock(dir, prog)
      assert.matches("^false\tmodule 'm1' not found:\n\tno field " ..
                     "package%.preload%['m1'%]\n\tno file '%./m1%.lua'\n",
                     want)
      out, s = run(dir, env .. " TASK=1", "require('uvrequire').install()\n" ..
                   prog)
      local msg = want:match("^false\t(.*)$")
      assert.equals(want .. "false\t" .. msg, out)
      assert.same({ 0, 0, 0 }, s)  -- searched for, never looked up
      assert.equals(1, #entries(cache))  -- the stale entry stays
      -- the source back: the entry is good again
      H.write(dir .. "/m1.lua", module("one"))
      out, s = run(dir, env, top({ "m1" }))
      assert.equals(expected({ "m1" }, { "one" }, false), out)
      assert.same({ 0, 1, 1 }, s)  -- (a new mtime: rewritten)
    end)
  end)

  describe("error positions", function()
    it("a cached module's function raises as stock's, line and traceback",
       function()
      -- a '#' first line shifts nothing; the error is on line 7
      H.write(dir .. "/bad.lua", H.readfile("spec/fixtures/positions.lua"))
      local prog = [[
if os.getenv("UVR") then require("uvrequire").install() end
local m = require "bad"
print(m.info())
print(select(2, xpcall(m.value, debug.traceback)))
]]
      local cold, s1 = run(dir, env .. " UVR=1", prog)
      local warm, s2 = run(dir, env .. " UVR=1", prog)
      assert.same({ 0, 1, 1 }, s1)
      assert.same({ 1, 0, 0 }, s2)
      local want = stock(dir, prog)
      assert.equals(want, cold)
      assert.equals(want, warm)
      assert.matches("^@%./bad%.lua 4%-9\n%./bad%.lua:7: attempt to index " ..
                     "a nil value %(local 't'%)\nstack traceback:\n" ..
                     "\t%./bad%.lua:7: in function <%./bad%.lua:4>\n", cold)
    end)

    -- a module whose body raises on line 6
    local RAISE = "#!/usr/bin/env lua\nlocal M = {}\n\nlocal t = nil\n" ..
                  "if not NOFAIL then\n  error(\"boom at six\")\nend\n" ..
                  "return M\n"
    local RPROG = [[
if os.getenv("UVR") then require("uvrequire").install() end
local ok, err = pcall(require, "raise")
print(ok, err)
]]

    it("a cached module's body raises stock's error", function()
      H.write(dir .. "/raise.lua", RAISE)
      local want = stock(dir, RPROG)
      assert.equals("false\t./raise.lua:6: boom at six\n", want)
      local cold, s1 = run(dir, env .. " UVR=1", RPROG)
      local warm, s2 = run(dir, env .. " UVR=1", RPROG)
      assert.equals(want, cold)
      assert.equals(want, warm)
      assert.same({ 0, 1, 1 }, s1)  -- compiled fine: kept
      assert.same({ 1, 0, 0 }, s2)
    end)

    -- A message handler sees the module body's frames, as under stock
    -- `require` ("[C]: in function 'error'", then "./raise.lua:6: in
    -- main chunk"): on the main thread the body runs unprotected.
    it("a body's error keeps its frames in a traceback", function()
      H.write(dir .. "/raise.lua", RAISE)
      local prog = [[
if os.getenv("UVR") then require("uvrequire").install() end
local ok, tb = xpcall(require, debug.traceback, "raise")
for line in tb:gmatch("[^\n]+") do
  if line:find("raise.lua", 1, true) or line:find("'error'", 1, true) then
    print(line)
  end
end
]]
      local want = stock(dir, prog)
      assert.equals("./raise.lua:6: boom at six\n" ..
                    "\t[C]: in function 'error'\n" ..
                    "\t./raise.lua:6: in main chunk\n", want)
      local cold = run(dir, env .. " UVR=1", prog)
      local warm = run(dir, env .. " UVR=1", prog)
      assert.equals(want, cold)
      assert.equals(want, warm)
    end)

    it("a syntax error gives stock's message and writes no entry",
       function()
      H.write(dir .. "/syn.lua", "local M = {}\nfunction M.f()\n" ..
                                 "  return 1 +\nend\nreturn M\n")
      local prog = [[
if os.getenv("UVR") then require("uvrequire").install() end
print(select(2, pcall(require, "syn")))
]]
      local want = stock(dir, prog)
      assert.equals("error loading module 'syn' from file './syn.lua':\n" ..
                    "\t./syn.lua:4: unexpected symbol near 'end'\n", want)
      for _ = 1, 2 do
        local out, s = run(dir, env .. " UVR=1", prog)
        assert.equals(want, out)
        assert.same({ 0, 1, 0 }, s)
        assert.equals(0, #entries(cache))
      end
      -- fixed: compiled and kept
      H.write(dir .. "/syn.lua", module("fixed"))
      local out, s = run(dir, env, top({ "syn" }))
      assert.equals(expected({ "syn" }, { "fixed" }, false), out)
      assert.same({ 0, 1, 1 }, s)
    end)
  end)

  it("stays whole when processes fill it at once, at top level", function()
    local names, values = {}, {}
    for i = 1, 30 do
      names[i] = "c" .. i
      values[i] = ("v" .. i):rep(50)
      H.write(dir .. "/c" .. i .. ".lua", module(values[i]))
    end
    local src = top(names)
    H.write(dir .. "/prog.lua", src .. "\n" .. C.CLEAN)
    sh(("cd '%s' && for i in 1 2 3 4 5 6; do (%s) >out$i.txt & done; " ..
        "wait"):format(dir, command(dir, env)))
    -- (a process may hit what another wrote first: the values count)
    local want = expected(names, values, false):gsub("CACHED[^\n]*\n", "")
    for i = 1, 6 do
      local out = readfile(("%s/out%d.txt"):format(dir, i))
      assert.equals(want, (out:gsub("CACHED[^\n]*\n", "")))
    end
    local e = entries(cache)
    assert.equals(30, #e)  -- each valid, no temporary file left
    for _, f in ipairs(e) do
      local ent = parse(readfile(cache .. "/" .. f))
      local n = ent.name:match("^%./(c%d+)%.lua$")
      assert.truthy(n, f)
      local srcbytes = readfile(dir .. "/" .. n .. ".lua")
      assert.equals(("%016x.luac"):format(hash(ent.path)), f)
      assert.equals(hash(srcbytes), ent.srchash)
      assert.equals(hash(ent.code), ent.codehash)
      assert.equals(string.dump(load(srcbytes, "@" .. ent.name)), ent.code)
    end
    local out, s = run(dir, env, src)
    assert.equals(expected(names, values, true), out)
    assert.same({ 30, 0, 0 }, s)
  end)

  -- import `n` modules at top level, then run `ending`; the entries
  -- in the cache afterwards
  local function importthen(n, ending)
    local names = {}
    for i = 1, n do
      names[i] = "x" .. i
      H.write(dir .. "/x" .. i .. ".lua", module("x" .. i))
    end
    H.write(dir .. "/prog.lua", top(names) .. ending .. "\n")
    local p = assert(io.popen(command(dir, env)))
    p:read("a")
    assert(p:close())
    return entries(cache)
  end

  it("is flushed by os.exit(code, true), which closes the state", function()
    assert.equals(20, #importthen(20, "os.exit(0, true)"))
  end)

  -- the state's close writes the entries still queued itself: every
  -- worker may be stuck (here the only one, on a FIFO that no writer
  -- opens), and the close must neither hang nor lose the entry
  it("is written at close even when every worker is stuck", function()
    assert(os.execute("mkfifo '" .. dir .. "/never.lua'"))
    H.write(dir .. "/m.lua", module("m"))
    H.write(dir .. "/prog.lua", [[
local U = require "uvrequire"
U.install()
U.spawn(U.require, "never")  -- the one worker opens the FIFO: stuck
U.run("nowait")
print(require "m")
print(require("uvrequire.core").cachestats().writes)
]])
    local p = assert(io.popen(command(dir, env .. " UVREQUIRE_THREADS=1")))
    local out = p:read("a")
    local ok, how, code = p:close()
    assert.same({ true, "exit", 0 }, { ok, how, code })
    assert.matches("^table: 0x%x+\t%./m%.lua\n1\n$", out)
    assert.equals(1, #entries(cache))
  end)

  -- entries still queued are written at the process's exit too (an
  -- atexit flush): os.exit without closing the state keeps them all
  it("is written whole when the program ends by os.exit", function()
    local e = importthen(30, "os.exit(0)")
    assert.equals(30, #e)
    for _, f in ipairs(e) do assert.matches("^%x+%.luac$", f) end
  end)
end)

describe("executor threads", function()
  it("default to the available cores, at most 8", function()
    local dir = H.tmpdir()
    local cores = tonumber(sh("env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT " ..
                              "nproc"):match("%d+"))
    local out = run(dir, "-u UVREQUIRE_THREADS UVREQUIRE_CACHE=off",
                    "print(require('uvrequire').loopinfo().threads)",
                    { nostats = true })
    local out3 = run(dir, "UVREQUIRE_THREADS=3 UVREQUIRE_CACHE=off",
                     "print(require('uvrequire').loopinfo().threads)",
                     { nostats = true })
    H.rmtree(dir)
    assert.equals(("%d\n"):format(math.max(1, math.min(cores, 8))), out)
    assert.equals("3\n", out3)
  end)
end)
