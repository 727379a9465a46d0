--- uvrequire: Lua 5.4's `require` with an import executor.
--
-- The mechanism lives in the C core (`uvrequire.core`): the yieldable
-- `require`, the scheduler, the loop.  This layer adds the policies:
-- installing the replacement `require`, tasks, the loop runner, and
-- where errors that nobody claims go.
-- @module uvrequire

local core = require "uvrequire.core"
core.skipsource(debug.getinfo(1, "S").source)  -- (detector sites: the
-- caller of uvrequire's functions that require, such as sync, not here)

local M = {
  --- The value a waiting coroutine yields to whoever resumed it.
  PENDING = core.PENDING,
  --- `require` returning the module only (one result).
  import_module = core.import_module,
  --- A table describing the loop in use (kind, jobs, handles, threads).
  loopinfo = core.loopinfo,
  --- "loaded", "loading" or nil.
  status = core.status,
}

-- The replacement `require` itself, which install() puts in _G.  It is
-- M.require through M's metatable, not a field of M: a traceback names
-- a C function by a field that holds it (`uvrequire.require`), and must
-- name it `require`, as it names stock's.
local grequire = core.require()
setmetatable(M, { __index = { require = grequire } })
local replaced = nil  -- the global `require` that install() replaced
local swapped = {}    -- package.searchers index -> stock searcher

-- Put uvrequire's file searchers in place of stock's in
-- package.searchers: the same behaviour, but Lua code that calls them
-- from a task (luarocks.loader's searcher does) gets the executor.
local function swapsearchers()
  local searchers = package.searchers
  if type(searchers) ~= "table" then return end
  for i, f in ipairs(searchers) do
    local kind = core.stdkind(f)
    if kind then
      local _, pkg = debug.getupvalue(f, 1)
      searchers[i] = core.searchers(pkg)[kind]
      swapped[i] = { stock = f, mine = searchers[i] }
    end
  end
end

local function restoresearchers()
  local searchers = package.searchers
  for i, s in pairs(swapped) do
    if type(searchers) == "table" and rawequal(searchers[i], s.mine) then
      searchers[i] = s.stock
    end
  end
  swapped = {}
end

local function badarg(n, fname, msg, level)
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg),
        (level or 2) + 1)
end

local function expect(n, fname, expected, got, level)
  if type(got) ~= expected then
    badarg(n, fname, ("%s expected, got %s"):format(expected, type(got)),
           (level or 2) + 1)
  end
end

-- option -> its valid values: a set, or a predicate
local options = {
  wait = { tasks = true, any = true },
  detect = { warn = true, strict = true, off = true },
  cache = function(v)
    return type(v) == "boolean" or
           (type(v) == "string" and v ~= "" and not v:find("\0", 1, true))
  end,
  prefetch = { [true] = true, [false] = true },
}

local installed = false  -- install() ran once: stats start from there

local function valid(allowed, v)
  if type(allowed) == "function" then return allowed(v) end
  return allowed[v]
end

--- Make the global `require` uvrequire's. Idempotent: a later call
-- changes only the options it is given (the first sets the defaults).
-- @param[opt] opts `{ wait = "tasks" | "any", detect = "warn" | "strict" |
-- "off", cache = false | true | dir, prefetch = true | false }`.
-- `detect`: the blocking-require detector (UVREQUIRE_DETECT overrides it).
-- `wait`: who waits by yielding (default "tasks": only uvrequire tasks;
-- "any": any coroutine). `cache`: the bytecode cache, process-wide:
-- false turns it off, true puts it back to its default (the
-- environment's choice), a string makes it that directory (unless
-- UVREQUIRE_CACHE=off); unset leaves it as it is. `prefetch`: compile
-- ahead the modules a Lua module's source requires by a literal name
-- (default true; UVREQUIRE_PREFETCH=off overrides it).
-- @return the module
function M.install(opts)
  if opts ~= nil then expect(1, "install", "table", opts) end
  opts = opts or {}
  for k, v in pairs(opts) do
    local allowed = options[k]
    if not allowed then
      badarg(1, "install", ("unknown option '%s'"):format(tostring(k)))
    elseif not valid(allowed, v) then
      badarg(1, "install", ("invalid value '%s' for option '%s'")
             :format(tostring(v), k))
    end
  end
  if opts.wait ~= nil or not installed then
    core.setmode(opts.wait or "tasks")
  end
  if opts.cache ~= nil then core.setcache(opts.cache) end
  if opts.prefetch ~= nil then
    core.setprefetch(opts.prefetch and
                     os.getenv("UVREQUIRE_PREFETCH") ~= "off")
  end
  if opts.detect ~= nil or not installed then
    local detect = opts.detect or "warn"
    local env = os.getenv("UVREQUIRE_DETECT")
    if options.detect[env] then detect = env end
    core.setobserve(detect, os.getenv("UVREQUIRE_IMPORTTIME") == "1")
  end
  if not installed then
    installed = true
    core.stats(true)  -- records from here on
  end
  if rawget(_G, "require") ~= grequire then
    replaced = rawget(_G, "require")
    _G.require = grequire
    swapsearchers()
  end
  return M
end

--- Put back the global `require` that install() replaced.
-- @return the module
function M.uninstall()
  if replaced ~= nil and rawget(_G, "require") == grequire then
    _G.require = replaced
  end
  replaced = nil
  restoresearchers()
  return M
end

--- Records of the modules loaded since install(), in load order: name,
-- path, searcher, parent, cached, bytes, and times in ms (search_ms,
-- read_ms, compile_ms, load_ms, body_ms, wait_ms, stall_ms).
function M.stats()
  local out = {}
  for i, r in ipairs(core.stats()) do
    local c = {}
    for k, v in pairs(r) do
      if k ~= "_phases" then c[k] = v end
    end
    out[i] = c
  end
  return out
end

--- Report blocking requires with `fn(msg, name, site, ms)` instead of
-- writing them to stderr; `nil` restores stderr.
function M.on_block(fn)
  if fn ~= nil then expect(1, "on_block", "function", fn) end
  debug.getregistry()["uvrequire.on_block"] = fn
end

local tracefile = os.getenv("UVREQUIRE_TRACE")

--- Write a Chrome trace-event JSON of the imports to `file` when the
-- state closes (as UVREQUIRE_TRACE=file does); `nil` cancels it.
function M.trace(file)
  if file ~= nil then expect(1, "trace", "string", file) end
  tracefile = file
end

-- The trace: complete events ("ph": "X") per module and phase; the Lua
-- thread is tid 0, executor threads 1..n.
local function jstr(s)  -- a JSON string
  return '"' .. tostring(s):gsub('[%c"\\]', function(c)
    return ("\\u%04x"):format(c:byte())
  end) .. '"'
end

local function writetrace(file)
  local ev, t0 = {}, math.huge
  local records = core.stats()
  for _, r in ipairs(records) do t0 = math.min(t0, r._phases[1]) end
  local function event(name, cat, tid, a, b, args)
    if a and b and a > 0 and b >= a then
      ev[#ev + 1] = ('{"name":%s,"cat":"%s","ph":"X","pid":1,"tid":%d,'
        .. '"ts":%.3f,"dur":%.3f,"args":{%s}}')
        :format(jstr(name), cat, tid, a - t0, b - a, args)
    end
  end
  for _, r in ipairs(records) do
    local p = r._phases
    local args = ('"module":%s,"path":%s'):format(jstr(r.name),
                                                  jstr(r.path or ""))
    event(r.name, "import", 0, p[1], p[8], args)
    if p[9] > 0 then
      event(r.name .. " (search)", "search", p[9], p[2], p[3], args)
      event(r.name .. " (read+compile)", "compile", p[9], p[3], p[4], args)
    end
    event(r.name .. " (load)", "load", 0, p[5], p[6], args)
    event(r.name .. " (body)", "body", 0, p[7], p[8], args)
  end
  local meta = '{"name":"thread_name","ph":"M","pid":1,"tid":0,' ..
               '"args":{"name":"Lua thread"}}'
  local f = io.open(file, "w")
  if not f then return end
  f:write('{"traceEvents": [', meta, #ev > 0 and ",\n" or "",
          table.concat(ev, ",\n"), ']}\n')
  f:close()
end

--- Report errors that nobody claimed with `fn(msg, task)` instead of
-- writing them to stderr; `nil` restores stderr.
function M.on_error(fn)
  if fn ~= nil then expect(1, "on_error", "function", fn) end
  debug.getregistry()["uvrequire.on_error"] = fn
end


--- Tasks -------------------------------------------------------------

local Task = {}
Task.__index = Task

-- The task a method was called on (its first argument): raises as
-- luaL_checkudata words it if that is not a task handle.
local function checktask(fname, ...)
  local self = ...
  if getmetatable(self) ~= Task then
    local got = select("#", ...) == 0 and "no value" or type(self)
    local info = debug.getinfo(2, "n")
    if info and info.namewhat == "method" then
      error(("calling '%s' on bad self (task expected, got %s)")
            :format(fname, got), 3)
    end
    badarg(1, fname, "task expected, got " .. got, 3)
  end
  return self
end

-- tasks that failed, oldest first, until claimed or reported (weak: a
-- handle nobody holds is reported when it is collected)
local failed = setmetatable({}, { __mode = "v" })
local nfailed = 0

-- `tostring(e)` for a report; an error object whose __tostring raises
-- (or gives no string) is named by its type, as lua.c names one.  The
-- object itself is never replaced.
local function describe(e)
  local ok, s = pcall(tostring, e)
  if ok and type(s) == "string" then return s end
  return ("(error object is a %s value)"):format(type(e))
end

-- The task ended with `err` (traceback `tb`): keep it for its handle
-- (and for run()); wake whoever waits on it.
-- (The task's fields exist from the start, so these stores allocate
-- nothing: a memory error cannot leave it finished without its error.)
local function fail(task, err, tb)
  task.err = err
  task.traceback = tb or describe(err)
  task.finished = true
  core.wakeall(task.waiters)
  nfailed = nfailed + 1
  failed[nfailed] = task
end

-- A task's coroutine died outside its own protection (memory errors
-- while it ended): the scheduler hands it here.
core.ondied(function(task, err, tb)
  if not task.finished then fail(task, err, tb) end
end)

-- A failed task whose handle is collected (or the state closes) and
-- nobody claimed its error: report it.
function Task:__gc()
  if self.traceback and not self.claimed then
    self.claimed = true
    core.report(self.traceback, self)
  end
end

--- Start `fn(...)` as a task: a coroutine whose imports wait without
-- blocking the loop. It runs at once until its first wait.
-- @return a task handle
function M.spawn(fn, ...)
  expect(1, "spawn", "function", fn)
  local task = setmetatable({ finished = false, waiters = {}, co = false,
                              results = false, err = false,
                              traceback = false, claimed = false,
                              waiting = 0 }, Task)
  local tb
  local function onerror(e)
    tb = debug.traceback(describe(e), 2)
    return e
  end
  task.co = coroutine.create(function(...)
    local r = table.pack(xpcall(fn, onerror, ...))
    if r[1] then
      task.results = r
      task.finished = true
      core.wakeall(task.waiters)
    else
      fail(task, r[2], tb)
    end
  end)
  core.settask(task.co, task)
  local ok, err = core.start(task.co, ...)  -- (it runs on its own)
  if not ok and not task.finished then
    fail(task, err, debug.traceback(task.co, describe(err)))
  end
  return task
end

--- End the task's wait on an import (or on another task) with the
-- error "cancelled", raised in the task at the loop's next turn. The
-- import goes on for its other waiters, or is dropped if none remain.
-- @return true if the task was waiting, false if it was not
function Task.cancel(...)
  local self = checktask("cancel", ...)
  if self.finished then return false end
  return core.cancel(self.co, "cancelled")
end

--- Has the task finished (returned or raised)?
function Task.done(...)
  return checktask("done", ...).finished
end

--- The task's outcome: `true, results...` or `false, err`. Claims the
-- error, so that it is not reported.
function Task.result(...)
  local self = checktask("result", ...)
  if not self.finished then error("task is not done", 2) end
  if not self.results then
    self.claimed = true
    return false, self.err
  end
  return table.unpack(self.results, 1, self.results.n)
end

-- park the running task until `task` is done (raises if its wait is
-- cancelled or times out)
local function park(task)
  while not task.finished do core.park(task.waiters, task.co) end
end

--- Wait for the task and return its outcome, as `result` does (and so
-- claim its error). In a task, waits by yielding; elsewhere, runs the
-- loop until the task is done. While it waits, the task's error is not
-- raised by run() (`waiting`): the wait claims it when it returns it,
-- and a wait that ends otherwise (cancelled, or an error) leaves it to
-- be reported.
function Task.wait(...)
  local self = checktask("wait", ...)
  if self.co == coroutine.running() then
    error("a task cannot wait for itself", 2)
  end
  if not self.finished and core.waitsonme(self.co) then  -- (through
    -- tasks it waits for, and the drivers of imports it waits on)
    error("a task cannot wait for a task that waits for it", 2)
  end
  if core.cansuspend() then
    -- (taken back however the wait ends: a waiter closed with
    -- coroutine.close never returns from park)
    local _ <close> = setmetatable({}, { __close = function()
      self.waiting = self.waiting - 1
    end })
    self.waiting = self.waiting + 1
    local ok, err = pcall(park, self)
    if not ok then error(err, 0) end
  else
    self.waiting = self.waiting + 1
    -- drive the loop without raising: other tasks' errors stay for run()
    -- (a loop with nothing left gets one more run: the loop in use may
    -- move at its start, to luv's loaded meanwhile, where work waits)
    local ok, alive, busy, again = true, true, nil, false
    while ok and not busy and not self.finished and (alive or not again) do
      again = not alive
      ok, alive, busy = pcall(core.run, "once")
    end
    self.waiting = self.waiting - 1
    if not ok then error(alive, 0) end
    if busy then error(busy, 2) end
    if not self.finished then
      error("task cannot finish: the loop has nothing left to run", 2)
    end
  end
  return self:result()
end


--- The loop -----------------------------------------------------------

local modes = { default = true, once = true, nowait = true }

--- Run the loop in use until it stops (`mode`: "default", "once" or
-- "nowait", as `uv_run`). Then raise, with its traceback, the first
-- error no one claimed: of a task, or of a coroutine uvrequire resumed.
-- @return true if the loop still has work
local kept = {}  -- errors of other coroutines, kept for run()

-- At state close, report what run() was never called again to raise.
local closer = setmetatable({}, { __gc = function()
  -- (and those kept while a task:wait() drove the loop)
  local ok, errs = pcall(core.takeerrors)
  for _, e in ipairs(ok and errs or {}) do kept[#kept + 1] = e end
  for _, e in ipairs(kept) do core.report(e) end
  if tracefile then pcall(writetrace, tracefile) end
end })
M[closer] = true  -- anchored for the life of the module

function M.run(mode)
  if mode ~= nil and not modes[mode] then
    badarg(1, "run", ("invalid option '%s'"):format(tostring(mode)))
  end
  local alive, busy = core.run(mode)
  if busy then error(busy, 2) end
  for _, e in ipairs(core.takeerrors()) do kept[#kept + 1] = e end
  if kept[1] then error(table.remove(kept, 1), 0) end
  -- the first failed task nobody claimed; the others stay for later
  local first, n = nil, 0
  for i = 1, nfailed do
    local task = failed[i]
    failed[i] = nil
    if task and not task.claimed then  -- (one waited for: later)
      if first == nil and task.waiting == 0 then first = task
      else n = n + 1; failed[n] = task end
    end
  end
  nfailed = n
  if first then
    first.claimed = true
    error(first.traceback, 0)
  end
  return alive
end

--- Call `fn(...)` with the running coroutine's imports synchronous: for
-- code whose resumer expects its yields (generators, in "any" mode).
function M.sync(fn, ...)
  expect(1, "sync", "function", fn)
  local co, main = coroutine.running()
  if main then return fn(...) end
  local before = core.setyield(co, false)
  local r = table.pack(pcall(fn, ...))
  core.setyield(co, before)
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

M.lazy = require("uvrequire.lazy")(M, core)
return M
