--- Shared helpers for the specs (require "helper").
-- luv first: the whole suite then shares luv's loop with uvrequire.
local luv = require "luv"
local uvrequire = require "uvrequire"

local H = {}

H.uv = uvrequire
H.luv = luv
--- Stock Lua 5.4 `require`, as the package library made it.
H.stock = rawget(_G, "require")
assert(H.stock ~= uvrequire.require, "helper loaded after install()")

local counter = 0

--- A fresh, empty temporary directory (removed by H.rmtree).
function H.tmpdir()
  counter = counter + 1
  local base = os.tmpname()
  os.remove(base)
  local dir = base .. "_uvr" .. counter
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  return dir
end

function H.rmtree(dir)
  assert(dir:match("^/tmp/"), "refusing to remove " .. dir)
  os.execute("rm -rf '" .. dir .. "'")
end

--- A scratch directory for module files: package.path points into it
-- until `s.restore()`, which puts the path back, proves the loop clean
-- and removes the directory.  `s.dir` is its path.
function H.scratch()
  local s = { dir = H.tmpdir(), path = package.path }
  package.path = s.dir .. "/?.lua"
  function s.restore()
    package.path = s.path
    H.clean()
    H.rmtree(s.dir)
  end
  return s
end

--- Write `content` to `path`, creating directories as needed.
function H.write(path, content)
  local d = path:match("^(.*)/[^/]*$")
  if d then os.execute("mkdir -p '" .. d .. "'") end
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
end

--- The repository's root: the directory the specs run from.
H.ROOT = (function()
  local p = assert(io.popen("pwd"))
  local d = p:read("l")
  p:close()
  return d
end)()

--- Run the shell command `cmd`; its output, stderr included.
function H.sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  p:close()
  return out
end

--- Does this process run as root?
function H.isroot() return H.sh("id -u"):match("^0%s*$") ~= nil end

--- The content of the file at `path`.
function H.readfile(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

--- Write a table { ["rel/path.lua"] = "source", ... } below `dir`.
function H.files(dir, t)
  for rel, src in pairs(t) do H.write(dir .. "/" .. rel, src) end
end

--- Prove the loop is clean: run it dry, collect garbage, and fail on
-- any import in flight or any handle left on the loop in use.
function H.clean()
  uvrequire.run()
  collectgarbage()
  collectgarbage()
  uvrequire.run()
  local info = uvrequire.loopinfo()
  assert(info.jobs == 0, "imports still in flight: " .. info.jobs)
  assert(info.handles == 0, "handles left on the loop: " .. info.handles)
end

--- Call `req(name)` protected; return a table that describes what
-- happened, comparable with assert.same across the two requires.
function H.outcome(req, ...)
  local r = table.pack(pcall(req, ...))
  return { ok = r[1], n = r.n - 1, table.unpack(r, 2, r.n) }
end

--- Run `scenario(req)` once with stock `require` and once with
-- uvrequire's, with `names` cleared from package.loaded before each
-- run and after.  Returns the two results (stock, uvrequire).
function H.both(names, scenario)
  local function clear()
    for _, n in ipairs(names) do package.loaded[n] = nil end
  end
  clear()
  local s = scenario(H.stock)
  clear()
  local u = scenario(uvrequire.require)
  clear()
  return s, u
end

--- Run `fn` as a task and the loop until it is done; return its results.
function H.task(fn, ...)
  local t = uvrequire.spawn(fn, ...)
  uvrequire.run()
  assert(t:done(), "task did not finish")
  return t:result()
end

return H
