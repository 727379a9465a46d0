--- uvrequire: Lua 5.4's `require` with an import executor.
--
-- The mechanism lives in the C core (`uvrequire.core`); this layer adds
-- the policies: installing the replacement `require`, tasks, and the
-- loop runner that never loses an error.
-- @module uvrequire

local core = require "uvrequire.core"

local M = {
  --- The value a waiting `require` yields to whoever resumed its coroutine.
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

--- Make the global `require` uvrequire's. Idempotent.
-- @return the module
function M.install()
  if rawget(_G, "require") ~= core.require then
    replaced = rawget(_G, "require")
    _G.require = core.require
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
  return M
end


--- Tasks -------------------------------------------------------------

local Task = {}
Task.__index = Task

local unclaimed = {}  -- tasks that failed, in order, until claimed
local kept = {}       -- errors of coroutines that waited on a task
local waiting = setmetatable({}, { __mode = "k" })  -- coroutine -> task

local function badarg(n, fname, expected, got)
  error(("bad argument #%d to '%s' (%s expected, got %s)")
        :format(n, fname, expected, type(got)), 3)
end

-- Wake the coroutines waiting on `task` (it just finished).
local function wake(task)
  for co in pairs(task.waiters) do
    if waiting[co] == task and coroutine.status(co) == "suspended" then
      local ok, err = coroutine.resume(co)
      if not ok then kept[#kept + 1] = debug.traceback(co, tostring(err)) end
    end
  end
  task.waiters = {}
end

--- Start `fn(...)` as a task: a coroutine whose imports wait without
-- blocking the loop. It runs at once until its first wait.
-- @return a task handle
function M.spawn(fn, ...)
  if type(fn) ~= "function" then badarg(1, "spawn", "function", fn) end
  local task = setmetatable({ finished = false, waiters = {} }, Task)
  local function onerror(e)
    task.traceback = debug.traceback(tostring(e), 2)
    return e
  end
  task.co = coroutine.create(function(...)
    local r = table.pack(xpcall(fn, onerror, ...))
    task.finished = true
    if r[1] then
      task.results = r
    else
      task.err = r[2]
      unclaimed[#unclaimed + 1] = task
    end
    wake(task)
  end)
  assert(coroutine.resume(task.co, ...))  -- the body is protected
  return task
end

--- Has the task finished (returned or raised)?
function Task:done()
  return self.finished
end

--- The task's outcome: `true, results...` or `false, err`. Claims the
-- error, so that `run` no longer raises it.
function Task:result()
  if not self.finished then error("task is not done", 2) end
  if not self.results then
    self.claimed = true
    return false, self.err
  end
  return table.unpack(self.results, 1, self.results.n)
end

--- Wait for the task and return its outcome, as `result` does (and so
-- claim its error). In a coroutine, waits by yielding; elsewhere, runs
-- the loop until the task is done.
function Task:wait()
  self.claimed = true
  local co, main = coroutine.running()
  if main or not coroutine.isyieldable() then
    -- drive the loop without raising: other tasks' errors stay for run()
    local alive, busy = true, nil
    while not self.finished and alive do
      alive, busy = core.run("once")
      if busy then error(busy, 2) end
    end
    if not self.finished then
      error("task cannot finish: the loop has nothing left to run", 2)
    end
  else
    while not self.finished do
      self.waiters[co] = true
      waiting[co] = self
      coroutine.yield(M.PENDING)
      waiting[co] = nil
    end
  end
  return self:result()
end

--- Run the loop in use until it stops (`mode`: "default", "once" or
-- "nowait", as `uv_run`). Then raise, with its traceback, the first
-- error no one claimed: of a task, or of a coroutine uvrequire resumed.
-- @return true if the loop still has work
local modes = { default = true, once = true, nowait = true }

function M.run(mode)
  if mode ~= nil and not modes[mode] then
    error(("bad argument #1 to 'run' (invalid option '%s')")
          :format(tostring(mode)), 2)
  end
  local alive, busy = core.run(mode)
  if busy then error(busy, 2) end
  for _, e in ipairs(core.takeerrors()) do kept[#kept + 1] = e end
  if kept[1] then error(table.remove(kept, 1), 0) end
  while unclaimed[1] do
    local task = table.remove(unclaimed, 1)
    if not task.claimed then
      task.claimed = true
      error(task.traceback, 0)
    end
  end
  return alive
end

--- Call `fn(...)` with the running coroutine's imports synchronous: for
-- code whose resumer expects its yields (generators).
function M.sync(fn, ...)
  if type(fn) ~= "function" then badarg(1, "sync", "function", fn) end
  local co, main = coroutine.running()
  if main then return fn(...) end
  local before = core.setyield(co, false)
  local r = table.pack(pcall(fn, ...))
  core.setyield(co, before)
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

return M
