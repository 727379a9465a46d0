--- Helpers for specs that need a fresh process (require "child_helper"):
-- a program written to a file and run by a child lua5.4, once with
-- uvrequire installed at top level and once with stock `require`.
local H = require "helper"

local K = {}

local function cwd()
  local p = assert(io.popen("pwd"))
  local d = p:read("l")
  p:close()
  return d
end

--- The worktree (the specs run from its root, as .busted needs).
K.ROOT = cwd()

--- The first line of LUA_PATH/LUA_CPATH for a child: the fresh build,
-- by absolute path, then `dir` (the modules a spec wrote), then the
-- system's paths (luv, cqueues).
-- (These specs compare with stock Lua: the blocking-require detector,
-- whose warnings stock never prints, is off; spec/detect_spec.lua
-- tests it.)
function K.env(dir)
  return ("UVREQUIRE_DETECT=off " ..
          "LUA_PATH='%s/lua/?.lua;%s/?.lua;;' LUA_CPATH='%s/build/?.so;;'")
         :format(K.ROOT, dir, K.ROOT)
end

--- Run the program `src` (written to `dir`/prog.lua, so its chunk name
-- is the same in every run) in a child lua5.4 from `dir`.  `pre` is a
-- list of Lua chunks run with -e before the program, at top level.
-- Returns { out = stdout, err = stderr, ok =, how =, code = } (the
-- last three as io.popen's close gives them).  With `opts.merge`,
-- stderr goes to the same pipe as stdout (`err` is then "");
-- `opts.env`: more VAR=value words (they win over K.env's);
-- `opts.timeout`: seconds before the child is killed (default 120).
function K.run(dir, src, pre, opts)
  H.write(dir .. "/prog.lua", src)
  local errfile = dir .. "/stderr.txt"
  local e = {}
  for _, chunk in ipairs(pre or {}) do e[#e + 1] = ("-e %q"):format(chunk) end
  local redirect = (opts and opts.merge) and "2>&1"
                   or ("2>'" .. errfile .. "'")
  local cmd = ("cd '%s' && %s %s timeout %d lua5.4 %s prog.lua %s")
              :format(dir, K.env(dir), opts and opts.env or "",
                      opts and opts.timeout or 120, table.concat(e, " "),
                      redirect)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok, how, code = p:close()
  local err = ""
  local f = io.open(errfile, "rb")
  if f then
    err = f:read("a")
    f:close()
    os.remove(errfile)
  end
  return { out = out, err = err, ok = ok, how = how, code = code }
end

--- The -e chunk that installs uvrequire; `opts` is install's argument
-- as Lua source (nil: no argument).
function K.install(opts)
  return ("require('uvrequire').install(%s)"):format(opts or "")
end

--- Run `src` with stock `require` and with uvrequire installed at top
-- level (by `install`, default K.install()); `pre` runs before either
-- (say, loading luv first).  Returns the two results (stock, uvrequire).
function K.both(dir, src, install, pre)
  local stock_pre, uv_pre = {}, {}
  for _, c in ipairs(pre or {}) do
    stock_pre[#stock_pre + 1] = c
    uv_pre[#uv_pre + 1] = c
  end
  uv_pre[#uv_pre + 1] = install or K.install()
  return K.run(dir, src, stock_pre), K.run(dir, src, uv_pre)
end

return K
