--- bench/gen.lua: generate Lua module files for the benchmark and the demo.
--
-- Used by bench/run.lua (`make bench`) and examples/demo.lua (`make demo`);
-- it measures nothing itself.  Load it with either of
--
--   local gen = dofile("bench/gen.lua")          -- from the repo root
--   local gen = require "bench.gen"              -- with "./?.lua" on the path
--
-- What it writes (all content is deterministic: a fixed-seed generator,
-- no math.random, no time; only the module name differs between files):
--
--   * small modules (~1.5-3 KB): a few functions and data tables, the
--     shape of an ordinary library module;
--   * a large module (default ~2 MB of source): thousands of functions,
--     config tables and "classes" with methods.  Compiling it takes tens
--     of milliseconds; running its body (creating the closures and
--     tables) takes a few.
--
-- Every generated name is unique within the process (a counter), so a
-- second import of "the same" module never hits package.loaded.
--
-- API:
--   gen.tmpdir(tag)            fresh empty directory under /tmp
--   gen.rmtree(dir)            remove it (refuses paths outside /tmp)
--   gen.addpath(dir)           put dir/?.lua first on package.path;
--                              returns a function that restores it
--   gen.small(dir, n [, tag])  write n small modules; returns their names
--   gen.large(dir [, bytes [, tag]])
--                              write one large module; returns name, path,
--                              size in bytes
--   gen.small_source(name, i), gen.large_source(name, bytes)
--                              the text alone, without writing it

local gen = {}

local seq = 0  -- makes names unique per call within the process

local function fresh(kind, tag)
  seq = seq + 1
  return ("uvrb_%s%s_%d"):format(tag and (tag .. "_") or "", kind, seq)
end


--- Deterministic pseudo-random numbers (a 32-bit LCG, own state).
local function rng(seed)
  local s = seed & 0xffffffff
  return function(n)  -- integer in [1, n]
    s = (s * 1103515245 + 12345) & 0x7fffffff
    return (s >> 8) % n + 1
  end
end

local WORDS = {
  "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa",
  "lambda", "sigma", "omega", "record", "buffer", "stream", "packet",
  "header", "window", "cursor", "token", "parser", "render", "layout",
  "widget", "config", "option", "schema", "column", "filter", "reduce",
  "handler", "session", "client", "server", "cache", "index", "query",
}

local function word(r) return WORDS[r(#WORDS)] end

local function strlist(r, n)
  local t = {}
  for i = 1, n do t[i] = ("%q"):format(word(r) .. "_" .. r(999)) end
  return table.concat(t, ", ")
end

local function numlist(r, n)
  local t = {}
  for i = 1, n do t[i] = tostring(r(100000) - 1) end
  return table.concat(t, ", ")
end


-- Section templates: each returns a chunk of realistic source text that
-- adds something to the module table M.  'k' makes identifiers unique.

local templates = {}

templates[1] = function(r, k)  -- a config table
  return ([[
M.config_%d = {
  name = %q,
  enabled = %s,
  retries = %d,
  timeout = %d.%d,
  limits = { lo = %d, hi = %d, step = %d },
  tags = { %s },
  weights = { %s },
  nested = { mode = %q, level = %d, flags = { a = %s, b = %s } },
}

]]):format(k, word(r) .. "_" .. k, r(2) == 1 and "true" or "false",
           r(9), r(60), r(99), r(100), 100 + r(9000), r(16),
           strlist(r, 4), numlist(r, 6), word(r), r(5),
           r(2) == 1 and "true" or "false", r(2) == 1 and "true" or "false")
end

templates[2] = function(r, k)  -- a data-processing function
  local field = word(r)
  return ([[
function M.process_%d(items, opts)
  opts = opts or {}
  local out, total = {}, 0
  local scale = opts.scale or %d
  for i = 1, #items do
    local v = items[i]
    if type(v) == "number" then
      local x = clamp(v * scale + %d, %d, %d)
      total = total + x
      out[#out + 1] = x
    elseif type(v) == "string" then
      out[#out + 1] = format("%%s:%%d:%s", v, i)
    elseif type(v) == "table" and v.%s ~= nil then
      out[#out + 1] = M.process_%d(v.%s, opts)
    end
  end
  if opts.sorted then table.sort(out, function(a, b)
    return tostring(a) < tostring(b) end) end
  return out, total
end

]]):format(k, r(9), r(100), r(50), 500 + r(5000), word(r), field, k,
           field)
end

templates[3] = function(r, k)  -- a small class with methods
  local cls = word(r):gsub("^%l", string.upper) .. k
  return ([[
do
local %s = {}
%s.__index = %s
M.%s = %s

function %s.new(%s, %s)
  local self = setmetatable({}, %s)
  self.%s = %s or %d
  self.%s = %s or %q
  self.items = {}
  self.count = 0
  return self
end

function %s:add(v)
  self.count = self.count + 1
  self.items[self.count] = v
  if self.count > %d then
    table.remove(self.items, 1)
    self.count = self.count - 1
  end
  return self
end

function %s:summary()
  local parts = {}
  for i, v in ipairs(self.items) do
    parts[#parts + 1] = format("%%d=%%s", i, tostring(v))
  end
  return format("%s(%%s, %%s)[%%s]", tostring(self.%s), tostring(self.%s),
                concat(parts, ","))
end
end

]]):format(cls, cls, cls, cls, cls,
           cls, "a", "b", cls, "size", "a", r(64), "label", "b", word(r),
           cls, 8 + r(56),
           cls, cls, "size", "label")
end

templates[4] = function(r, k)  -- a lookup table built at load time
  return ([[
M.lookup_%d = {}
do
  local names = { %s }
  for i, n in ipairs(names) do
    M.lookup_%d[n] = i * %d + %d
  end
end

function M.find_%d(key, default)
  local v = M.lookup_%d[key]
  if v == nil then return default end
  if v > %d then return v - %d end
  return v
end

]]):format(k, strlist(r, 6), k, r(7), r(100), k, k, r(500), r(50))
end

templates[5] = function(r, k)  -- a string-handling function
  return ([[
function M.format_%d(rec)
  local buf = {}
  for key, value in pairs(rec) do
    if type(value) == "string" and #value > %d then
      value = value:sub(1, %d) .. "..."
    end
    buf[#buf + 1] = format("%%s=%%q", tostring(key), tostring(value))
  end
  table.sort(buf)
  local line = "%s{" .. concat(buf, "; ") .. "}"
  if #line > %d then
    return line:sub(1, %d), true
  end
  return line:gsub("%%s+", " "), false
end

]]):format(k, r(40), r(40), word(r), 100 + r(200), 80 + r(100))
end

local HEADER = [[
-- %s: generated by bench/gen.lua (%s module).
local M = {}
M._NAME = %q
local format, concat = string.format, table.concat

local function clamp(x, lo, hi)
  if x < lo then return lo end
  if x > hi then return hi end
  return x
end

]]

local FOOTER = [[
function M.names()
  local t = {}
  for k in pairs(M) do t[#t + 1] = k end
  table.sort(t)
  return t
end

return M
]]

-- source text: header, then sections until it reaches 'bytes'
local function build(name, kind, seed, bytes, minsections)
  local r = rng(seed)
  local parts = { HEADER:format(name, kind, name) }
  local size, k = #parts[1], 0
  while size < bytes or k < minsections do
    k = k + 1
    local s = templates[(k - 1) % #templates + 1](r, k)
    parts[#parts + 1] = s
    size = size + #s
  end
  parts[#parts + 1] = FOOTER
  return table.concat(parts)
end

--- The source of small module number `i` (its content depends on i % 16).
function gen.small_source(name, i)
  local v = (i or 1) % 16
  return build(name, "small", 1000 + v, 1200 + 100 * v, 3)
end

--- The source of a large module of about `bytes` bytes (default 2e6).
function gen.large_source(name, bytes)
  return build(name, "large", 42, bytes or 2e6, 1)
end


local function writefile(path, text)
  local f = assert(io.open(path, "wb"))
  assert(f:write(text))
  assert(f:close())
end

--- Write `n` small modules into `dir`; returns the list of their names.
function gen.small(dir, n, tag)
  local names = {}
  for i = 1, n do
    local name = fresh("s", tag)
    writefile(dir .. "/" .. name .. ".lua", gen.small_source(name, i))
    names[i] = name
  end
  return names
end

--- Write one large module into `dir`; returns name, path, size.
function gen.large(dir, bytes, tag)
  local name = fresh("L", tag)
  local path = dir .. "/" .. name .. ".lua"
  local src = gen.large_source(name, bytes)
  writefile(path, src)
  return name, path, #src
end

--- A fresh, empty directory under /tmp (os.tmpname-based).
function gen.tmpdir(tag)
  local base = os.tmpname()  -- creates an empty file: keep it reserved
  local dir = base .. "_" .. (tag or "uvrb")
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  os.remove(base)
  return dir
end

--- Remove a directory made by gen.tmpdir.
function gen.rmtree(dir)
  assert(type(dir) == "string" and dir:match("^/tmp/[^/]+$")
         and not dir:find("'", 1, true), "refusing to remove " .. tostring(dir))
  os.execute("rm -rf '" .. dir .. "'")
end

--- Put `dir/?.lua` first on package.path; returns a restore function.
function gen.addpath(dir)
  local old = package.path
  package.path = dir .. "/?.lua;" .. old
  return function() package.path = old end
end

--- Run `main(dir)` with a fresh scratch directory, removed afterwards
-- whatever happens; on an error, report it with `label` and exit 1.
local WARM_TICKS, COOL_TICKS = 5, 5

--- Run a 1 ms ticker on luv's loop; after WARM_TICKS ticks call
-- `start(done)` from the timer callback; measure until `done()` is called
-- and COOL_TICKS more ticks have passed.  Returns the longest gap between
-- ticks (ns) from start on, the time from start to done (ns) and the
-- ticks seen during that time.
function gen.stallrun(uv, start)
  local hrtime = uv.hrtime
  local timer = uv.new_timer()
  local phase, ticks, cool, during = "warm", 0, 0, 0
  local last, maxgap, t0, t1 = nil, 0, nil, nil
  timer:start(1, 1, function()
    local now = hrtime()
    if phase ~= "warm" then
      local gap = now - last
      if gap > maxgap then maxgap = gap end
    end
    last = now
    ticks = ticks + 1
    if phase == "import" then
      during = during + 1
    elseif phase == "warm" and ticks >= WARM_TICKS then
      phase = "import"
      t0 = now
      start(function()
        t1 = hrtime()
        phase = "cool"
      end)
    elseif phase == "cool" then
      cool = cool + 1
      if cool >= COOL_TICKS then
        timer:stop()
        timer:close()
      end
    end
  end)
  uv.run()  -- luv's loop: also delivers uvrequire's finished imports
  assert(t1, "the import did not finish")
  return maxgap, t1 - t0, during
end

function gen.run(label, main)
  local dir = gen.tmpdir(label)
  local ok, err = xpcall(main, debug.traceback, dir)
  gen.rmtree(dir)
  if not ok then
    io.stderr:write(label, " failed: ", tostring(err), "\n")
    os.exit(1)
  end
end

return gen
