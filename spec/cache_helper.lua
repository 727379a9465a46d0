-- Helpers shared by the bytecode cache's specs (cache_spec.lua,
-- topcache_spec.lua).
local H = require "helper"

local C = {}

--- The source of a module whose value() returns `value`.
function C.module(value)
  return ("local M = {}\nfunction M.value()\n  return %q\nend\nreturn M\n")
         :format(value)
end

--- A scratch directory holding modules m1 (value "one") and m2
-- ("two"); the cache directory its programs use (not made yet); and
-- the environment that names it ("UVREQUIRE_CACHE='...'").
function C.scratch()
  local dir = H.tmpdir()
  local cache = dir .. "/cache/a/b"
  H.write(dir .. "/m1.lua", C.module("one"))
  H.write(dir .. "/m2.lua", C.module("two"))
  return dir, cache, "UVREQUIRE_CACHE='" .. cache .. "'"
end

--- Remove the scratch directory `dir`, whatever modes a case left.
function C.remove(dir)
  H.sh("chmod -R u+rwX '" .. dir .. "'")
  H.rmtree(dir)
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
