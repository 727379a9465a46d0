--- Helpers for the compatibility specs (require "compat_helper"):
-- run one scenario under stock `require` and under uvrequire's, and
-- compare what they did.
local H = require "helper"
local la = require "luassert"

local uv = H.uv
local C = {}

--- Run `scenario(req)` three times, with `names` cleared from
-- package.loaded before and after each run: with stock `require`, with
-- uvrequire's on the main thread (it blocks for the executor), and with
-- uvrequire's inside a task (it yields for the executor).  Asserts that
-- the three results are the same and returns the stock one.
-- `opts.notask`: skip the task run.
function C.compare(names, scenario, opts)
  local s, u = H.both(names, scenario)
  la.same(s, u, "stock require and uvrequire.require differ")
  if not (opts and opts.notask) then
    local function clear()
      for _, n in ipairs(names) do package.loaded[n] = nil end
    end
    local r = table.pack(H.task(function()
      clear()
      local t = scenario(uv.require)
      clear()
      return t
    end))
    la.is_true(r[1], "the task failed: " .. tostring(r[2]))
    la.same(s, r[2],
      "stock require and uvrequire.require inside a task differ")
  end
  return s
end

--- What `req(...)` did, called protected: { ok =, n =, results... }.
C.outcome = H.outcome

--- Call `req(...)` from a Lua function (not as a tail call), protected.
-- Returns ok, the error or value, and the "src:line: " prefix luaL_error
-- gives an error raised by that call.
function C.direct(req, ...)
  local where
  local ok, v = pcall(function(...)
    local info = debug.getinfo(1, "Sl")
    where = ("%s:%d: "):format(info.short_src, info.currentline + 2)
    local r = req(...)
    return r
  end, ...)
  return ok, v, where
end

--- Call `req(...)` as a tail call of a Lua function, protected.
function C.tail(req, ...)
  return pcall(function(...) return req(...) end, ...)
end

--- Run the Lua source `code` in a child lua5.4 that has loaded
-- uvrequire as `uv` (the specs' own search paths), with package.path
-- and package.cpath then set to the current ones.  For scenarios that
-- could kill the process: a crash fails one spec instead of the run.
-- Returns os.execute's results (true|nil, "exit"|"signal", code).
function C.survives(code)
  local script = os.tmpname()
  H.write(script, ("package.path = %q .. package.path\n"
    .. "package.cpath = %q .. package.cpath\n"
    .. "local uv = require 'uvrequire'\n"
    .. "package.path, package.cpath = %q, %q\n%s\n")
    :format("lua/?.lua;lua/?/init.lua;spec/?.lua;", "build/?.so;",
            package.path, package.cpath, code))
  local ok, how, n = os.execute("lua5.4 '" .. script .. "' >/dev/null 2>&1")
  os.remove(script)
  return ok, how, n
end

--- "module 'name' not found:" followed by `lines`, each after "\n\t".
function C.notfound(name, lines)
  local t = { ("module '%s' not found:"):format(name) }
  for _, l in ipairs(lines) do t[#t + 1] = l end
  return table.concat(t, "\n\t")
end

--- Copy a file byte for byte (creating directories), optionally only
-- its first `limit` bytes.
function C.copy(from, to, limit)
  local f = assert(io.open(from, "rb"))
  local data = f:read(limit or "a")
  f:close()
  H.write(to, data)
end

--- Replace every plain occurrence of `from` by `to` in strings found
-- in `v` (recursively in tables, keys too).
function C.subst(v, from, to)
  if type(v) == "string" then
    local out, i = {}, 1
    while true do
      local a, b = v:find(from, i, true)
      if not a then break end
      out[#out + 1] = v:sub(i, a - 1)
      out[#out + 1] = to
      i = b + 1
    end
    out[#out + 1] = v:sub(i)
    return table.concat(out)
  elseif type(v) == "table" then
    local t = {}
    for k, x in pairs(v) do t[C.subst(k, from, to)] = C.subst(x, from, to) end
    return t
  end
  return v
end

--- Snapshot of everything the specs may change in the package library.
function C.save()
  local p = package
  local list = {}
  for i, s in ipairs(p.searchers) do list[i] = s end
  return {
    package = p,
    path = p.path,
    cpath = p.cpath,
    searchers = p.searchers,
    list = list,
    loaded = p.loaded,
    loadedmt = getmetatable(p.loaded),
    preload = p.preload,
    pkgmt = getmetatable(p),
    require = rawget(_G, "require"),
  }
end

--- Undo whatever a spec changed since `C.save`, and drop the globals
-- named CX_* that module bodies use.
function C.restore(s)
  rawset(_G, "package", s.package)
  rawset(_G, "require", s.require)
  setmetatable(s.package, s.pkgmt)
  s.package.path = s.path
  s.package.cpath = s.cpath
  s.package.searchers = s.searchers
  for i = #s.searchers, 1, -1 do s.searchers[i] = nil end
  for i, f in ipairs(s.list) do s.searchers[i] = f end
  s.package.loaded = s.loaded
  setmetatable(s.loaded, s.loadedmt)
  s.package.preload = s.preload
  local drop = {}
  for k in pairs(_G) do
    if type(k) == "string" and k:match("^CX_") then drop[#drop + 1] = k end
  end
  for _, k in ipairs(drop) do rawset(_G, k, nil) end
end

--- A spec's fresh start: the package state saved (C.save), a scratch
-- directory `s.dir` on package.path, and package.cpath set to `cpath`
-- (default: the scratch directory).  `s.restore()` undoes it all and
-- proves the loop clean.  `s.saved` is what C.save returned.
function C.fresh(cpath)
  local s = { saved = C.save(), dir = H.tmpdir() }
  package.path = s.dir .. "/?.lua"
  package.cpath = cpath or s.dir .. "/?.so"
  function s.restore()
    C.restore(s.saved)
    H.clean()
    H.rmtree(s.dir)
  end
  return s
end

return C
