-- cqueues threads are coroutines that cqueues resumes: with install(),
-- a require in one is stock require (it never yields into cqueues).
-- Each program runs in a child lua5.4, once under stock require and once
-- with install() at top level, and the whole outputs must be equal.
local H = require "helper"
local K = require "child_helper"

describe("cqueues with install()", function()
  local scratch, dir

  before_each(function()
    scratch = H.scratch()
    dir = scratch.dir
    for _, name in ipairs { "cqa", "cqb", "cqc", "cqd" } do
      H.write(("%s/%s.lua"):format(dir, name),
              ("print('%s body'); return '%s'"):format(name, name))
    end
    -- a body that waits on cqueues: stock require cannot let it
    H.write(dir .. "/cqsleep.lua", [[
      print("cqsleep body")
      require("cqueues").sleep(0)
      return "cqsleep"
    ]])
  end)

  after_each(function() scratch.restore() end)

  local function same_as_stock(src, pre)
    local s, u = K.both(dir, src, nil, pre)
    assert.same({ true, "exit", 0 }, { s.ok, s.how, s.code })
    assert.equals("", s.err)
    assert.equals(s.out, u.out)
    assert.equals(s.err, u.err)
    assert.same({ s.ok, s.how, s.code }, { u.ok, u.how, u.code })
    return s.out
  end

  -- threads that require fresh modules, sleep, and require again
  local THREADS = [[
    local cqueues = require "cqueues"
    local function threads(cq)
      cq:wrap(function()
        print("t1 start")
        print("t1", require "cqa")
        cqueues.sleep(0)
        print("t1", require "cqb")
        print("t1", require "cqa")
      end)
      cq:wrap(function()
        print("t2 start")
        print("t2", require "cqc")
        print("t2", pcall(require, "cqsleep"))
        cqueues.sleep(0)
        print("t2", require "cqb")
      end)
    end
  ]]

  it("cq:wrap threads requiring modules at top level", function()
    local src = THREADS .. [[
      local cq = cqueues.new()
      threads(cq)
      print("loop", cq:loop())
      print("after", package.loaded.cqa, package.loaded.cqsleep)
    ]]
    local out = same_as_stock(src)
    assert.matches(("t1\tcqa\t%s/cqa.lua\n"):format(dir), out, 1, true)
    assert.matches("t2\tfalse\tattempt to yield across a C-call boundary\n",
                   out, 1, true)
    assert.matches("loop\ttrue\nafter\tcqa\tnil\n$", out)
    same_as_stock(src, { "require 'luv'" })
  end)

  it("cq:loop() nested inside a task", function()
    local src = THREADS .. [[
      local U = require "uvrequire"
      local t = U.spawn(function()
        print("task", require "cqd")
        local cq = cqueues.new()
        threads(cq)
        print("loop", cq:loop())
        return "task done"
      end)
      U.run()
      print(t:result())
    ]]
    local out = same_as_stock(src)
    assert.matches(("^cqd body\ntask\tcqd\t%s/cqd.lua\n"):format(dir), out)
    assert.matches("loop\ttrue\ntrue\ttask done\n$", out)
    same_as_stock(src, { "require 'luv'" })
  end)

  it("a thread's require of a module a task is loading", function()
    -- not a stock comparison: under stock require the task has loaded
    -- the module at once.  With install(), the task waits on the
    -- executor, and the thread's require (synchronous) takes the load
    -- over: both get the value and the loader data.
    local r = K.run(dir, [[
      local cqueues = require "cqueues"
      local U = require "uvrequire"
      local t = U.spawn(function() return require "cqa" end)
      print("spawned", t:done())
      local cq = cqueues.new()
      cq:wrap(function() print("thread", require "cqa") end)
      print("loop", cq:loop())
      U.run()
      print(t:result())
    ]], { K.install() })
    assert.equals(("spawned\tfalse\ncqa body\nthread\tcqa\t%s/cqa.lua\n" ..
                   "loop\ttrue\ntrue\tcqa\t%s/cqa.lua\n"):format(dir, dir),
                  r.out)
    assert.equals("", r.err)
    assert.same({ true, "exit", 0 }, { r.ok, r.how, r.code })
  end)
end)
