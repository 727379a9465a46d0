-- The prefetch scanner (csrc/compile.c) reads the source in the slices
-- the compile's reader gets: the first byte alone, then 8 KB blocks.  A
-- "require" that a slice boundary cuts, at any of its bytes, is found
-- as one that is not cut; comments and identifiers are told apart at
-- the boundary too.
local H = require "helper"
local core = require "uvrequire.core"
local uv = H.uv

-- the reader's slices: byte 0 alone, then bytes 1..8192, then 8193..
local BOUNDARY = 8193

-- a module whose only literal require names `leaf`, its word starting
-- at byte offset `at` (0-based), right after `lead` on its line
local function source(at, leaf, lead)
  local head = "local f = function() return " .. lead
  local pad = at - #"local pad = ''\n" - #head
  local src = "local pad = '" .. ("x"):rep(pad) .. "'\n" .. head ..
              "require '" .. leaf .. "'\nend\nreturn f\n"
  assert(src:find("require '", 1, true) - 1 == at, "layout")
  return src
end

describe("prefetch scanner", function()
  local s

  before_each(function()
    core.setprefetch(false)
    core.setprefetch(true)
    s = H.scratch()
  end)

  after_each(function()
    core.setprefetch(false)
    core.setprefetch(true)
    for k in pairs(package.loaded) do
      if k:match("^sc_") then package.loaded[k] = nil end
    end
    s.restore()
  end)

  -- import `name` in a task; the names prefetched meanwhile
  local function prefetched(name)
    local before = core.prefetchstats().submitted
    H.task(function() return uv.require(name) end)
    return core.prefetchstats().submitted - before
  end

  for cut = 0, 7 do  -- bytes of the word before the boundary
    it(("finds a require with %d of its bytes before a boundary")
       :format(cut), function()
      H.files(s.dir, {
        ["sc_m.lua"] = source(BOUNDARY - cut, "sc_leaf", " "),
        ["sc_leaf.lua"] = "return 1",
      })
      assert.equal(1, prefetched("sc_m"))
    end)
  end

  it("tells an identifier ending in require at a boundary", function()
    H.files(s.dir, {
      ["sc_m.lua"] = source(BOUNDARY - 3, "sc_leaf", "x"),
      ["sc_leaf.lua"] = "return 1",
    })
    assert.equal(0, prefetched("sc_m"))
  end)

  it("takes a literal in parentheses only if it is the first argument",
     function()
    -- `require("m." .. x)` picks a module at run time: "m." is no
    -- module to prefetch (once, it was: a search that found nothing,
    -- and an entry that nobody adopts, for good)
    local cases = {
      { "require('sc_leaf' .. x)", 0 }, { 'require("sc_leaf".."y")', 0 },
      { "require('sc_leaf', 2)", 1 }, { "require ( 'sc_leaf' )", 1 },
      { "require('sc_leaf'\n)", 1 }, { "require 'sc_leaf' .. x", 1 },
      { 'require"sc_leaf"', 1 },
    }
    for i, c in ipairs(cases) do
      local m = "sc_p" .. i
      H.files(s.dir, {
        [m .. ".lua"] = "local x = 'z'\nlocal f = function() return " ..
                        c[1] .. " end\nreturn f\n",
        ["sc_leaf.lua"] = "return 1",
      })
      assert.equal(c[2], prefetched(m), c[1])
      core.setprefetch(false)  -- (no entry left for the next case)
      core.setprefetch(true)
    end
  end)

  it("skips a require after -- on its line, across a boundary",
     function()
    H.files(s.dir, {
      ["sc_m.lua"] = source(BOUNDARY - 1, "sc_leaf", "nil --"),
      ["sc_leaf.lua"] = "return 1",
    })
    assert.equal(0, prefetched("sc_m"))
    H.files(s.dir, {
      ["sc_n.lua"] = source(BOUNDARY, "sc_leaf", "- -"),
    })
    assert.equal(1, prefetched("sc_n"))
  end)
end)
