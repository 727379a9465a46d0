-- Stress: a thousand coroutines require a hundred generated modules with
-- dependencies, in random order; some modules raise, some nap on timers.
-- Every module counts its body runs and checks what it sees of others.
local H = require "helper"
local U = H.uv

local NMOD, NTASK, PER = 100, 1000, 5

-- Source of module i: requires some modules below it (protected, so a
-- failing dependency does not fail it), maybe naps, maybe raises, and
-- checks what it observes in package.loaded.
local function source(i, deps, naps, raises)
  local lines = {
    "local name = ...",
    "local S = STRESS",
    "S.runs[name] = (S.runs[name] or 0) + 1",
    "local M = { partial = true, name = name }",
    "package.loaded[name] = M  -- visible to its own chain only",
    "local co = coroutine.running()",
    "S.chain[co] = S.chain[co] or {}",
    "table.insert(S.chain[co], name)",
    "S.observe(co)",
  }
  for _, d in ipairs(deps) do
    lines[#lines + 1] = ("do local ok, v = pcall(require, 'st%d')\n" ..
      "  if ok and v.complete ~= true then S.bad('incomplete st%d') end\n" ..
      "end"):format(d, d)
  end
  if naps then
    lines[#lines + 1] = "S.nap(co)"
    lines[#lines + 1] = "S.observe(co)"
  end
  lines[#lines + 1] = "table.remove(S.chain[co])"
  if raises then
    lines[#lines + 1] = "error('st' .. " .. i .. " .. ' fails', 0)"
  end
  lines[#lines + 1] = "M.partial = nil; M.complete = true"
  lines[#lines + 1] = "return M"
  return table.concat(lines, "\n")
end

describe("stress", function()
  local scratch, dir

  before_each(function()
    scratch = H.scratch()
    dir = scratch.dir
  end)

  after_each(function()
    for i = 1, NMOD do package.loaded["st" .. i] = nil end
    _G.STRESS = nil
    _G.require = H.stock
    scratch.restore()
  end)

  it("loads each module once, never shows a partial one, leaves the rest",
     function()
    math.randomseed(20261122)
    local raises, naps = {}, {}
    for i = 1, NMOD do
      local deps = {}
      for _ = 1, math.random(0, 3) do
        if i > 1 then deps[#deps + 1] = math.random(1, i - 1) end
      end
      raises[i] = (i % 13 == 0)
      naps[i] = (math.random() < 0.25)
      H.write(("%s/st%d.lua"):format(dir, i),
              source(i, deps, naps[i], raises[i]))
    end

    local S = { runs = {}, chain = {}, violations = {} }
    _G.STRESS = S
    function S.bad(msg) S.violations[#S.violations + 1] = msg end
    local function inchain(co, name)
      for _, n in ipairs(S.chain[co] or {}) do
        if n == name then return true end
      end
      return false
    end
    -- what any module may see: no partial module but its own chain's
    function S.observe(co)
      for k, v in pairs(package.loaded) do
        if type(k) == "string" and k:match("^st%d+$") and v.partial then
          S.bad("pairs listed partial " .. tostring(k))
        end
      end
      for _ = 1, 3 do
        local other = "st" .. math.random(NMOD)
        local v = package.loaded[other]
        if v ~= nil and v.complete ~= true and not inchain(co, other) then
          S.bad("saw partial " .. other)
        end
      end
    end
    function S.nap(co)
      local t = H.luv.new_timer()
      t:start(math.random(0, 3), 0, function()
        t:close()
        assert(coroutine.resume(co))
      end)
      coroutine.yield()
    end

    _G.require = U.require  -- module bodies' own requires
    local tasks = {}
    for k = 1, NTASK do
      local wants = {}
      for j = 1, PER do wants[j] = math.random(NMOD) end
      tasks[k] = U.spawn(function()
        local got = {}
        for j, i in ipairs(wants) do
          local ok, v = pcall(U.require, "st" .. i)
          got[j] = ok and v.complete == true and v.name == "st" .. i
          if ok ~= not raises[i] then S.bad("wrong outcome st" .. i) end
        end
        return wants, got
      end)
    end
    U.run()

    for k = 1, NTASK do
      local ok, wants, got = tasks[k]:result()
      assert.is_true(ok)
      for j, i in ipairs(wants) do
        assert.equals(not raises[i], got[j])
      end
    end
    assert.same({}, S.violations)
    for i = 1, NMOD do
      local name = "st" .. i
      if raises[i] then
        assert.is_nil(rawget(package.loaded, name))
        assert.is_nil(U.status(name))
      elseif S.runs[name] then
        assert.equals(1, S.runs[name])
        assert.equals("loaded", U.status(name))
        assert.is_true(package.loaded[name].complete)
      else
        assert.is_nil(rawget(package.loaded, name))
      end
    end
    -- package.loaded holds exactly the modules that loaded
    for k in pairs(package.loaded) do
      local i = tonumber(k:match("^st(%d+)$"))
      if i then assert.is_false(raises[i]) end
    end
  end)
end)
