--- Child processes for the failure-path specs (require "proc_helper").
-- A scenario that may crash, hang or leave uvrequire's state broken runs
-- in a child lua5.4, so that a crash fails one spec, not the whole run.
local K = {}

local function abs(p)
  if p:sub(1, 1) == "/" then return p end
  local pwd = os.getenv("PWD") or io.popen("pwd"):read("l")
  return pwd .. "/" .. p
end

--- The checkout (absolute), found from this file's own path.
K.root = abs(debug.getinfo(1, "S").source:sub(2):match("^(.*)/spec/[^/]*$")
             or "."):gsub("/%.$", "")
K.lpath = K.root .. "/lua/?.lua;" .. K.root .. "/lua/?/init.lua;" ..
          K.root .. "/spec/?.lua"
K.cpath = K.root .. "/build/?.so"

--- Run the Lua source `code` in a child `lua5.4` (bounded by `timeout`,
-- default 60 s) with LUA_PATH/LUA_CPATH on the checkout's lua/ and
-- build/ (absolute), and `env` (a string of VAR=value words) set.
-- Returns a table { out = stdout and stderr, ok, how, code,
-- crashed = a message when the child did not exit 0, or nil }.
function K.run(code, opts)
  opts = opts or {}
  local script = os.tmpname()
  local f = assert(io.open(script, "wb"))
  f:write(code)
  f:close()
  local cmd = ("cd %q && %s LUA_PATH=%q LUA_CPATH=%q timeout %d lua5.4 %q 2>&1")
    :format(K.root, opts.env or "", K.lpath .. ";;", K.cpath .. ";;",
            opts.timeout or 60, script)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok, how, n = p:close()
  os.remove(script)
  local r = { out = out, ok = ok, how = how, code = n }
  if not ok then
    if how == "signal" then
      r.crashed = ("the child lua5.4 was killed by signal %d"):format(n)
    elseif n == 124 then
      r.crashed = "the child lua5.4 hung (killed by timeout)"
    elseif n >= 128 then
      -- the shell reports a signal as 128 + n
      r.crashed = ("the child lua5.4 died of signal %d (%s)")
        :format(n - 128, ({ [6] = "SIGABRT", [11] = "SIGSEGV",
                            [7] = "SIGBUS", [9] = "SIGKILL" })[n - 128] or "?")
    else
      r.crashed = ("the child lua5.4 exited with status %d"):format(n)
    end
    r.crashed = r.crashed .. "; its output:\n" .. out
  end
  return r
end

--- Run `code` in a child and fail (with a clear message) unless it exited
-- with status 0.  Returns its output.
function K.check(code, opts)
  local r = K.run(code, opts)
  if r.crashed then error(r.crashed, 2) end
  return r.out
end

--- As K.check, with DIR set in the child to a fresh scratch directory
-- that this process removes afterwards, even if the child crashed or
-- hung.
function K.indir(code, opts)
  local H = require "helper"
  local dir = H.tmpdir()
  local ok, out = pcall(K.check, ("DIR = %q\n"):format(dir) .. code, opts)
  H.rmtree(dir)
  if not ok then error(out, 2) end
  return out
end

--- The child's prelude: uvrequire and the helpers, with luv first as in
-- the busted suite.  `uv` is uvrequire, `H` the spec helper.
K.prelude = [[
local H = require "helper"
local uv = H.uv
]]

return K
