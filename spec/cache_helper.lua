-- Helpers shared by the bytecode cache's specs (cache_spec.lua,
-- topcache_spec.lua).
local H = require "helper"

local C = {}

--- The source of a module whose value() returns `value`.
function C.module(value)
  return ("local M = {}\nfunction M.value()\n  return %q\nend\nreturn M\n")
         :format(value)
end

--- The file names in directory `cache`, sorted ({} if none).
function C.entries(cache)
  local t = {}
  local p = assert(io.popen("ls -A '" .. cache .. "' 2>/dev/null"))
  for f in p:read("a"):gmatch("[^\n]+") do
    t[#t + 1] = f
  end
  p:close()
  table.sort(t)
  return t
end

--- stat(1) of `path` in format `fmt`, without spaces.
function C.stat(fmt, path)
  return (H.sh("stat -c " .. fmt .. " '" .. path .. "'"):gsub("%s", ""))
end

--- The octal mode of `path`, and its owner's name.
function C.mode(path) return C.stat("%a", path) end
function C.owner(path) return C.stat("%U", path) end

return C
