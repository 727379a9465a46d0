--- uvrequire: Lua 5.4's `require` with an import executor.
--
-- The mechanism lives in the C core (`uvrequire.core`): the yieldable
-- `require`, the scheduler, the loop.  This layer adds the policies:
-- installing the replacement `require`, tasks, the loop runner, and
-- where errors that nobody claims go.
-- @module uvrequire

local core = require "uvrequire.core"

local M = {
  --- The value a waiting coroutine yields to whoever resumed it.
  PENDING = core.PENDING,
  --- The replacement `require` itself.
  require = core.require,
  --- `require` returning the module only (one result).
  import_module = core.import_module,
  --- A table describing the loop in use (kind, jobs, handles, threads).
  loopinfo = core.loopinfo,
  --- "loaded", "loading" or nil.
  status = core.status,
}

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
  cache = function(v)
    return type(v) == "boolean" or (type(v) == "string" and v ~= "")
  end,
}

local function valid(allowed, v)
  if type(allowed) == "function" then return allowed(v) end
  return allowed[v]
end

--- Make the global `require` uvrequire's. Idempotent.
-- @param[opt] opts `{ wait = "tasks" | "any", cache = false | true | dir }`:
-- `wait`: who waits by yielding (default "tasks": only uvrequire tasks;
-- "any": any coroutine). `cache`: the bytecode cache, process-wide:
-- false turns it off, true puts it back to its default (the
-- environment's choice), a string makes it that directory (unless
-- UVREQUIRE_CACHE=off); unset leaves it as it is.
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
  core.setmode(opts.wait or "tasks")
  if opts.cache ~= nil then core.setcache(opts.cache) end
  if rawget(_G, "require") ~= core.require then
    replaced = rawget(_G, "require")
    _G.require = core.require
    swapsearchers()
  end
  return M
end

--- Put back the global `require` that install() replaced.
-- @return the module
function M.uninstall()
  if replaced ~= nil and rawget(_G, "require") == core.require then
    _G.require = replaced
  end
  replaced = nil
  restoresearchers()
  return M
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

-- tasks that failed, oldest first, until claimed or reported (weak: a
-- handle nobody holds is reported when it is collected)
local failed = setmetatable({}, { __mode = "v" })
local nfailed = 0

-- The task ended with `err` (traceback `tb`): keep it for its handle
-- (and for run()); wake whoever waits on it.
-- (The task's fields exist from the start, so these stores allocate
-- nothing: a memory error cannot leave it finished without its error.)
local function fail(task, err, tb)
  task.err = err
  task.traceback = tb or tostring(err)
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
                              traceback = false, claimed = false }, Task)
  local tb
  local function onerror(e)
    tb = debug.traceback(tostring(e), 2)
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
  local ok, err = coroutine.resume(task.co, ...)
  if not ok and not task.finished then
    fail(task, err, debug.traceback(task.co, tostring(err)))
  end
  return task
end

--- End the task's wait on an import (or on another task) with the
-- error "cancelled", raised in the task at the loop's next turn. The
-- import goes on for its other waiters, or is dropped if none remain.
-- @return true if the task was waiting, false if it was not
function Task:cancel()
  if self.finished then return false end
  return core.cancel(self.co, "cancelled")
end

--- Has the task finished (returned or raised)?
function Task:done()
  return self.finished
end

--- The task's outcome: `true, results...` or `false, err`. Claims the
-- error, so that it is not reported.
function Task:result()
  if not self.finished then error("task is not done", 2) end
  if not self.results then
    self.claimed = true
    return false, self.err
  end
  return table.unpack(self.results, 1, self.results.n)
end

--- Wait for the task and return its outcome, as `result` does (and so
-- claim its error). In a task, waits by yielding; elsewhere, runs the
-- loop until the task is done.
function Task:wait()
  self.claimed = true
  if core.cansuspend() then
    while not self.finished do core.park(self.waiters) end
  else
    -- drive the loop without raising: other tasks' errors stay for run()
    local alive, busy = true, nil
    while not self.finished and alive do
      alive, busy = core.run("once")
      if busy then error(busy, 2) end
    end
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
  for _, e in ipairs(kept) do core.report(e) end
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
    if task and not task.claimed then
      if first == nil then first = task
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

return M
