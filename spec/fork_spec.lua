-- Fork: a child process has none of the executor's threads; they start
-- anew there, and imports that were in flight at the fork complete in
-- the child as well.  Fixture: spec/fixtures/csrc/forkfix.c (fork,
-- waitpid, _exit, alarm).
local H = require "helper"
local U = H.uv

local F = assert(package.loadlib("build/fixtures/forkfix.so",
                                 "luaopen_forkfix"))()
local ROOT = assert(io.popen("pwd")):read("l")

-- In a child: run 'fn' protected, then _exit 0 if it passed, else say
-- why on stderr and _exit 1.  Never returns.
local function childdo(fn)
  F.alarm(30)  -- a hang dies of SIGALRM: the parent sees "signal 14"
  local ok, err = pcall(fn)
  if not ok then io.stderr:write("fork child: ", tostring(err), "\n") end
  F._exit(ok and 0 or 1)
end

-- A module of about 'n' lines, slow enough to compile that a fork
-- finds its job running.
local function bigsource(tag, n)
  local parts = { "local t = {}" }
  for i = 1, n do
    parts[#parts + 1] = ("t[%d] = { %q, %d, %d.5 }"):format(i, tag, i, i)
  end
  parts[#parts + 1] = ("return { tag = %q, n = #t }"):format(tag)
  return table.concat(parts, "\n")
end

describe("fork", function()
  local scratch, dir

  before_each(function()
    scratch = H.scratch()
    dir = scratch.dir
  end)

  after_each(function() scratch.restore() end)

  it("a child imports in a task and in place", function()
    H.files(dir, {
      ["a.lua"] = "return 'a'", ["b.lua"] = "return 'b'",
      ["c.lua"] = "return 'c'", ["d.lua"] = "return 'd'",
      ["e/1.lua"] = "return 'e1'", ["e/2.lua"] = "return 'e2'",
      ["e/3.lua"] = "return 'e3'", ["e/4.lua"] = "return 'e4'",
      ["e/5.lua"] = "return 'e5'", ["e/6.lua"] = "return 'e6'",
    })
    -- the executor is running in this process
    assert.same({ true, "a", dir .. "/a.lua" }, { H.task(U.require, "a") })
    local pid = F.fork()
    if pid == 0 then
      childdo(function()
        local r = { H.task(U.require, "b") }
        assert(r[1] == true and r[2] == "b", "task: " .. tostring(r[2]))
        assert(U.require("c") == "c", "in place")
        local tasks = {}
        for i = 1, 6 do tasks[i] = U.spawn(U.require, "e." .. i) end
        U.run()
        for i = 1, 6 do
          local ok, v = tasks[i]:result()
          assert(ok and v == "e" .. i, "e." .. i .. ": " .. tostring(v))
        end
      end)
    end
    assert.same({ "exit", 0 }, { F.waitpid(pid) })
    -- and the parent's executor still works
    assert.same({ true, "d", dir .. "/d.lua" }, { H.task(U.require, "d") })
    assert.is_nil(package.loaded.b)
  end)

  it("imports in flight at the fork complete in the child", function()
    H.files(dir, {
      ["big1.lua"] = bigsource("big1", 40000),
      ["big2.lua"] = bigsource("big2", 40000),
      ["small.lua"] = "return 'small'",
    })
    -- one executor thread: the first job runs while the others queue
    local script = dir .. "/main.lua"
    H.write(script, ([[
      package.path = %q .. "/lua/?.lua;" .. package.path
      package.cpath = %q .. "/build/?.so;" .. package.cpath
      local F = assert(package.loadlib(%q, "luaopen_forkfix"))()
      local U = require "uvrequire"
      package.path = %q
      local names = { "big1", "big2", "small" }
      local tasks = {}
      for i, n in ipairs(names) do tasks[i] = U.spawn(U.require, n) end
      local t0 = os.clock()
      repeat until os.clock() - t0 > 0.05 -- the worker is on big1
      local pid = F.fork()
      if pid == 0 then
        F.alarm(30)
        local ok, err = pcall(function()
          U.run()
          for i, n in ipairs(names) do
            local ok, v = tasks[i]:result()
            assert(ok, v)
            if n == "small" then assert(v == "small")
            else assert(v.tag == n and v.n == 40000) end
          end
        end)
        if not ok then io.write(tostring(err), "\n") io.stdout:flush() end
        F._exit(ok and 0 or 1)
      end
      io.write(table.concat({ F.waitpid(pid) }, " "))
      io.stdout:flush()
      F._exit(0)  -- the loop is shared with the child: leave it alone
    ]]):format(ROOT, ROOT, ROOT .. "/build/fixtures/forkfix.so",
               dir .. "/?.lua"))
    -- Under ASan a child may hang (SIGALRM: "signal 14") whatever the
    -- code: the fork can find the worker inside ASan's allocator, and
    -- the child inherits that allocator's lock held (glibc's malloc is
    -- safe across fork).  A hung child seen with gdb (1 run in 80): its
    -- new worker waits in SizeClassAllocator64::GetFromAllocator, its
    -- Lua thread in epoll_wait.  There, and only for that outcome, the
    -- case runs again, up to 3 times.
    local tries = os.getenv("UVREQUIRE_ASAN") == "1" and 3 or 1
    local out
    for _ = 1, tries do
      local p = assert(io.popen("UVREQUIRE_THREADS=1 timeout 60 lua5.4 '" ..
                                script .. "'"))
      out = p:read("a")
      p:close()
      if out ~= "signal 14" then break end
    end
    assert.equals("exit 0", out)
  end)
  it("an import running at the fork is run again in the child", function()
    -- the parent's only worker is blocked opening a FIFO (seen in
    -- /proc) when it forks, then the parent exits: its worker, the
    -- FIFO's other reader, is gone; the child's new worker runs the
    -- job from the start, and the child writes the FIFO
    local fifo = dir .. "/held.lua"
    assert(os.execute("mkfifo '" .. fifo .. "'"))
    H.write(dir .. "/after.lua", "return 'after'")
    local script = dir .. "/main.lua"
    H.write(script, ([[
      package.path = %q .. "/lua/?.lua;" .. package.path
      package.cpath = %q .. "/build/?.so;" .. package.cpath
      local F = assert(package.loadlib(%q, "luaopen_forkfix"))()
      local U = require "uvrequire"
      package.path = %q
      local held = U.spawn(U.require, "held")
      local after = U.spawn(U.require, "after")  -- queued behind it
      F.alarm(30)
      local pid = assert(io.open("/proc/self/stat")):read("n")
      local function opening()  -- is a thread blocked in openat?
        local ls = assert(io.popen("ls /proc/" .. pid .. "/task"))
        for tid in ls:lines() do
          local f = io.open(("/proc/%%d/task/%%s/syscall"):format(pid, tid))
          local call = f and f:read("n")
          if f then f:close() end
          if call == 257 then ls:close() return true end
        end
        ls:close()
        return false
      end
      repeat until opening()
      if F.fork() ~= 0 then F._exit(0) end
      -- child: once the parent is gone, feed the FIFO
      F.alarm(30)  -- (alarms are not inherited)
      while F.getppid() == pid do end
      local f = assert(io.open(%q, "w"))
      f:write("return 'held'")
      f:close()
      U.run()
      local r = { held:result() }
      local r2 = { after:result() }
      io.write(tostring(r[2]), " ", tostring(r2[2]))
      io.stdout:flush()
      F._exit(0)
    ]]):format(ROOT, ROOT, ROOT .. "/build/fixtures/forkfix.so",
               dir .. "/?.lua", fifo))
    local p = assert(io.popen("UVREQUIRE_THREADS=1 timeout 60 lua5.4 '" ..
                              script .. "'"))
    local out = p:read("a")
    p:close()
    assert.equals("held after", out)
  end)
end)
