-- examples/hello.lua: imports inside a coroutine wait; the loop runs on.
-- Run from the repository root after `make`:  lua5.4 examples/hello.lua
package.path = "lua/?.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath

local uv = require "luv"                  -- luv first: uvrequire uses its loop
local uvrequire = require("uvrequire").install()

local ticks = 0
local timer = uv.new_timer()
timer:start(0, 1, function() ticks = ticks + 1 end)

local task = uvrequire.spawn(function()
  local lpeg = require "lpeg"             -- dlopen runs on the executor;
  local lfs = require "lfs"               -- this coroutine waits, nothing else
  return lpeg.version(), lfs._VERSION
end)

local ok, lpeg_version, lfs_version = task:wait()  -- drives the loop
timer:close()
uvrequire.run()                           -- let the timer's close finish
print(ok, lpeg_version, lfs_version)
print(uvrequire.status("lpeg"), uvrequire.loopinfo().kind)
