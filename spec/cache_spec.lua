-- The bytecode cache (csrc/cache.c).  Every program runs in a child
-- lua5.4 started from a scratch directory, with UVREQUIRE_CACHE set to
-- a cache directory of its own (never the user's), and ends by printing
-- the process's cache counters: "STATS <hits> <misses> <writes>".
local H = require "helper"
local C = require "cache_helper"
local U = H.uv

local sh = H.sh

local run = C.run

-- Import `names` in a task; print what each module's value() returns.
local function importer(names, opts)
  return ([[
local uv = require "uvrequire"
uv.install(%s)
local t = uv.spawn(function()
  for _, n in ipairs({ %s }) do
    print(n, require(n).value())
  end
end)
uv.run()
assert(t:result())
]]):format(opts or "", ("%q, "):rep(#names):format(table.unpack(names)))
end

local module = C.module

local entries = C.entries

local mode = C.mode

describe("bytecode cache", function()
  local dir, cache, env

  before_each(function() dir, cache, env = C.scratch() end)
  after_each(function() C.remove(dir) end)

  it("is written on the first import and read on the next", function()
    local out, s = run(dir, env, importer({ "m1", "m2" }))
    assert.equals("m1\tone\nm2\ttwo\n", out)
    assert.same({ 0, 2, 2 }, s)
    local e = entries(cache)
    assert.equals(2, #e)
    for _, f in ipairs(e) do
      assert.matches("^%x+%.luac$", f)
      assert.equals("600", mode(cache .. "/" .. f))
    end
    -- made with its missing parents, each 0700
    for _, d in ipairs({ "/cache", "/cache/a", "/cache/a/b" }) do
      assert.equals("700", mode(dir .. d))
    end
    out, s = run(dir, env, importer({ "m1", "m2" }))
    assert.equals("m1\tone\nm2\ttwo\n", out)
    assert.same({ 2, 0, 0 }, s)
  end)

  it("falls back to the source from a truncated or corrupt entry", function()
    run(dir, env, importer({ "m1" }))
    local entry = cache .. "/" .. entries(cache)[1]
    local f = assert(io.open(entry, "rb"))
    local good = f:read("a")
    f:close()
    local function try(bytes)
      H.write(entry, bytes)
      sh("chmod 600 '" .. entry .. "'")
      local out, s = run(dir, env, importer({ "m1" }))
      assert.equals("m1\tone\n", out)
      assert.same({ 0, 1, 1 }, s)  -- rewritten
      f = assert(io.open(entry, "rb"))
      assert.equals(good, f:read("a"))
      f:close()
    end
    try("")                                     -- empty
    try(good:sub(1, 40))                        -- in the header
    try(good:sub(1, -2))                        -- one byte short
    try(good .. "x")                            -- one byte more
    local n = #good - 10                        -- a bytecode byte flipped
    try(good:sub(1, n - 1) .. string.char(good:byte(n) ~ 1) ..
        good:sub(n + 1))
    try("junk" .. good:sub(5))                  -- bad magic
  end)

  for _, case in ipairs(C.cases(
      function() return dir, cache, env end, importer,
      function(names, values)  -- (a task's import prints no CACHED line)
        local t = {}
        for i, n in ipairs(names) do t[i] = n .. "\t" .. values[i] .. "\n" end
        return table.concat(t)
      end, pending)) do
    it(case[1], case[2])
  end

  it("keeps apart the same relative name in other directories", function()
    H.write(dir .. "/a/m1.lua", module("in a"))
    H.write(dir .. "/b/m1.lua", module("in b"))
    local _, s = run(dir .. "/a", env, importer({ "m1" }))
    assert.same({ 0, 1, 1 }, s)
    local out
    out, s = run(dir .. "/b", env, importer({ "m1" }))
    assert.equals("m1\tin b\n", out)
    assert.same({ 0, 1, 1 }, s)
    out, s = run(dir .. "/a", env, importer({ "m1" }))
    assert.equals("m1\tin a\n", out)
    assert.same({ 1, 0, 0 }, s)
    assert.equals(2, #entries(cache))
  end)

  it("does not keep sources that are binary chunks", function()
    local f = assert(io.open(dir .. "/m3.lua", "wb"))
    f:write(string.dump(load(module("three"), "=m3")))
    f:close()
    local out, s = run(dir, env, importer({ "m3" }))
    assert.equals("m3\tthree\n", out)
    assert.same({ 0, 1, 0 }, s)
    assert.equals(0, #entries(cache))
  end)

  it("is off with install{cache = false} or UVREQUIRE_CACHE=off", function()
    local out, s = run(dir, env, importer({ "m1" }, "{ cache = false }"))
    assert.equals("m1\tone\n", out)
    assert.same({ 0, 0, 0 }, s)
    assert.equals(0, #entries(dir .. "/cache"))
    -- off in the environment wins over a directory in install()
    out, s = run(dir, "UVREQUIRE_CACHE=off",
                 importer({ "m1" }, ("{ cache = %q }"):format(cache)))
    assert.equals("m1\tone\n", out)
    assert.same({ 0, 0, 0 }, s)
    assert.equals(0, #entries(dir .. "/cache"))
    -- a directory in install(); true is the environment's choice
    out, s = run(dir, "UVREQUIRE_CACHE=off",
                 importer({ "m1" }, "{ cache = true }"))
    assert.same({ 0, 0, 0 }, s)
    out, s = run(dir, env, importer({ "m1" }, "{ cache = 'other' }"))
    assert.same({ 0, 1, 1 }, s)
    assert.equals(1, #entries(dir .. "/other"))
    assert.equals(0, #entries(dir .. "/cache"))
  end)

  it("defaults to $XDG_CACHE_HOME/uvrequire, else ~/.cache/uvrequire",
     function()
    local _, s = run(dir, ("-u UVREQUIRE_CACHE XDG_CACHE_HOME='%s/xdg'")
                          :format(dir), importer({ "m1" }))
    assert.same({ 0, 1, 1 }, s)
    assert.equals(1, #entries(dir .. "/xdg/uvrequire"))
    _, s = run(dir, ("-u UVREQUIRE_CACHE -u XDG_CACHE_HOME HOME='%s/home'")
                    :format(dir), importer({ "m1" }))
    assert.same({ 0, 1, 1 }, s)
    assert.equals(1, #entries(dir .. "/home/.cache/uvrequire"))
  end)

  it("takes $HOME only if it is absolute", function()
    -- a relative one would put entries under whatever directory is
    -- current at each import: no cache instead
    local out, s = run(dir, "-u UVREQUIRE_CACHE -u XDG_CACHE_HOME HOME=h",
                       importer({ "m1" }))
    assert.equals("m1\tone\n", out)
    assert.same({ 0, 0, 0 }, s)
    assert.same({ "m1.lua", "m2.lua", "prog.lua" }, entries(dir))
  end)

  it("goes back with install{cache = true} to the default of the start",
     function()
    -- a relative UVREQUIRE_CACHE is made absolute once, not again after
    -- a change of directory
    sh(("mkdir '%s/sub'"):format(dir))
    local out = run(dir, "UVREQUIRE_CACHE=rel", [[
local uv = require "uvrequire"
local core = require "uvrequire.core"
local first = core.cachestats().dir
require("luv").chdir("sub")
uv.install { cache = false }
assert(core.cachestats().dir == false)
uv.install { cache = true }
print(first:match("[^/]*/[^/]*$"), core.cachestats().dir == first)
]], { nostats = true })
    assert.equals(("%s\ttrue\n"):format(dir:match("[^/]*$") .. "/rel"),
                  out)
  end)

  it("keeps each directory set once, however often it is set", function()
    -- switching between two directories costs no memory (every setting
    -- was kept anew: 200,000 switches grew the process by 49 MB)
    local out = run(dir, env, [[
local core = require "uvrequire.core"
local kept = core.cachestats().kept
core.setcache("/tmp/a")
core.setcache("/tmp/b")
for _ = 1, 1000 do
  core.setcache("/tmp/a")
  core.setcache("/tmp/b")
end
core.setcache(true)
print(core.cachestats().kept - kept)
]], { nostats = true })
    assert.equals("2\n", out)
  end)

  it("replaces an entry of its own that it cannot read", function()
    -- as a user that is not root (root reads a mode 000 file): the
    -- scratch directory, with uvrequire's files, becomes nobody's
    assert(H.isroot(), "needs root to run a child as nobody")
    sh(("mkdir -p '%s/lua/uvrequire' '%s/build/uvrequire' && " ..
        "cp '%s/lua/uvrequire.lua' '%s/lua/' && " ..
        "cp '%s/lua/uvrequire/'*.lua '%s/lua/uvrequire/' && " ..
        "cp '%s/build/uvrequire/core.so' '%s/build/uvrequire/' && " ..
        "chown -R nobody '%s' && chmod 755 '%s'")
       :format(dir, dir, H.ROOT, dir, H.ROOT, dir, H.ROOT, dir, dir, dir))
    H.write(dir .. "/prog.lua", importer({ "m1" }) .. "\n" .. C.STATS)
    local cmd = ("cd '%s' && setpriv --reuid=nobody --regid=nogroup " ..
                 "--clear-groups env %s LUA_PATH='./?.lua;./lua/?.lua;;' " ..
                 "LUA_CPATH='./build/?.so;;' timeout 60 lua5.4 prog.lua 2>&1")
                :format(dir, env)
    assert.equals("m1\tone\nSTATS 0 1 1\n", sh(cmd))
    local entry = cache .. "/" .. entries(cache)[1]
    sh(("chmod 000 '%s'"):format(entry))
    assert.equals("m1\tone\nSTATS 0 1 1\n", sh(cmd))  -- rewritten
    assert.equals("600", mode(entry))
    assert.equals("m1\tone\nSTATS 1 0 0\n", sh(cmd))
  end)

  it("gives the messages and line numbers of the source", function()
    -- a BOM-less '#' line shifts nothing; the error is on line 7
    H.write(dir .. "/bad.lua", H.readfile("spec/fixtures/positions.lua"))
    local prog = [[
local uv = require "uvrequire"
if not os.getenv("STOCK") then uv.install() end
local t = uv.spawn(function()
  local m = require "bad"
  print(m.info())
  print(select(2, xpcall(m.value, debug.traceback)))
end)
uv.run()
assert(t:result())
]]
    local cold, s1 = run(dir, env, prog)
    local warm, s2 = run(dir, env, prog)
    assert.same({ 0, 1, 1 }, s1)
    assert.same({ 1, 0, 0 }, s2)
    assert.equals(cold, warm)
    assert.matches("^@%./bad%.lua 4%-9\n%./bad%.lua:7: attempt to index " ..
                   "a nil value %(local 't'%)\nstack traceback:\n" ..
                   "\t%./bad%.lua:7: in function <%./bad%.lua:4>\n", cold)
    local stock, s3 = run(dir, env .. " STOCK=1", prog)
    assert.same({ 0, 0, 0 }, s3)
    assert.equals(stock, cold)
  end)

  it("holds no descriptor for each entry waiting to be written",
     function()
    -- the only worker blocks opening a FIFO; the top level compiles 40
    -- modules itself (it takes its queued jobs back), so their writes
    -- wait in the queue: each used to keep the cache directory open
    sh(("mkfifo '%s/fifo.lua' && mkdir -p -m 700 '%s'"):format(dir, cache))
    local names = {}
    for i = 1, 40 do
      names[i] = "w" .. i
      H.write(dir .. "/w" .. i .. ".lua", module("w" .. i))
    end
    local out, s = run(dir, env .. " UVREQUIRE_THREADS=1", ([[
local uv = require "uvrequire"
uv.install()
local t = uv.spawn(function() return require("fifo") end)
for _, n in ipairs({ %s }) do require(n) end
local f = assert(io.open("/proc/self/stat"))
local pid = f:read("a"):match("^%%d+")
f:close()
local p = assert(io.popen("ls -l /proc/" .. pid .. "/fd"))
local held = 0
for l in p:lines() do
  if l:find(%q, 1, true) then held = held + 1 end
end
p:close()
print("held", held)
f = assert(io.open("fifo.lua", "w"))  -- the worker reads on
f:write("return 'fifo'")
f:close()
uv.run()
print(t:result())
]]):format(("%q, "):rep(#names):format(table.unpack(names)), cache))
    assert.equals("held\t0\ntrue\tfifo\t./fifo.lua\n", out)
    assert.same({ 0, 40, 40 }, s)
    assert.equals(40, #entries(cache))
  end)

  it("writes no entry larger than RLIMIT_FSIZE, and loads on", function()
    H.write(dir .. "/big.lua", module(("x"):rep(8000)))
    H.write(dir .. "/prog.lua", importer({ "m1", "big" }) .. C.CLEAN ..
                                C.STATS)
    local out = sh(("cd '%s' && ulimit -f 4 && env %s LUA_PATH='./?.lua;" ..
                    "%s/lua/?.lua;;' LUA_CPATH='%s/build/?.so;;' lua5.4 " ..
                    "prog.lua 2>&1; echo rc $?"):format(dir, env, H.ROOT,
                                                        H.ROOT))
    -- (the 8 KB entry would pass the 4 KB limit: SIGXFSZ killed it)
    assert.equals("m1\tone\nbig\t" .. ("x"):rep(8000) ..
                  "\nSTATS 0 2 1\nrc 0\n", out)
    assert.equals(1, #entries(cache))  -- m1's; no temporary file
  end)

  it("makes no directory in another user's directory", function()
    assert(H.isroot(), "needs root to chown")
    local home = dir .. "/home"
    sh(("mkdir '%s' && chown nobody '%s'"):format(home, home))
    local out, s = run(dir, ("-u UVREQUIRE_CACHE -u XDG_CACHE_HOME " ..
                             "HOME='%s'"):format(home), importer({ "m1" }))
    assert.equals("m1\tone\n", out)
    assert.same({ 0, 1, 0 }, s)
    assert.same({}, entries(home))  -- no .cache of root's in it
    -- in a directory of its own user's, or root's, it makes them
    sh(("chown root '%s'"):format(home))
    out, s = run(dir, ("-u UVREQUIRE_CACHE -u XDG_CACHE_HOME HOME='%s'")
                      :format(home), importer({ "m1" }))
    assert.same({ 0, 1, 1 }, s)
    assert.equals(1, #entries(home .. "/.cache/uvrequire"))
  end)

  it("stays whole when processes import the same modules at once",
     function()
    local names = {}
    for i = 1, 30 do
      names[i] = "c" .. i
      H.write(dir .. "/c" .. i .. ".lua", module(("v%d"):rep(50):format(
        table.unpack(setmetatable({}, { __index = function() return i end }),
        1, 50))))
    end
    local src = importer(names)
    H.write(dir .. "/prog.lua", src .. "\n" .. C.STATS)
    sh(("cd '%s' && for i in 1 2 3 4 5 6; do (%s) >out$i.txt & done; " ..
        "wait"):format(dir, C.command(dir, env)))
    local expect = {}
    for i = 1, 30 do
      expect[#expect + 1] = ("c%d\t%s\n"):format(i, ("v" .. i):rep(50))
    end
    expect = table.concat(expect)
    for i = 1, 6 do
      local f = assert(io.open(("%s/out%d.txt"):format(dir, i), "rb"))
      local out = f:read("a")
      f:close()
      assert.equals(expect, (out:gsub("STATS [^\n]*\n$", "")))
    end
    local e = entries(cache)
    assert.equals(30, #e)  -- no temporary file left
    local out, s = run(dir, env, src)
    assert.equals(expect, out)
    assert.same({ 30, 0, 0 }, s)
  end)
end)

describe("install{cache =}", function()
  after_each(function() U.uninstall() end)

  it("takes false, true or a directory, and nothing else", function()
    for _, v in ipairs({ 1, "", {}, "a\0b" }) do
      local ok, err = pcall(U.install, { cache = v })
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'install' %(invalid value '" ..
                     tostring(v):gsub("%p", "%%%0") ..
                     "' for option 'cache'%)", err)
    end
    local core = require "uvrequire.core"
    local ok, err = pcall(core.setcache, "a\0b")
    assert.is_false(ok)
    assert.equals("bad argument #1 to 'uvrequire.core.setcache' " ..
                  "(directory name contains a '\\0')", err)
  end)
end)
