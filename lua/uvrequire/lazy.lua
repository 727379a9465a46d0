--- uvrequire.lazy: lazy imports (issue 10, item 3).
--
-- `lazy(name)` returns a proxy that stands for module `name`.  It starts
-- a prefetch at once (the executor searches, reads and compiles the
-- module ahead: `core.prefetch`), and nothing else: the module's body
-- runs at the proxy's first use (index, newindex, call, `pairs`, `#`,
-- `tostring`, comparison, arithmetic, concatenation), which imports the
-- module with `import_module` as `require(name)` written there would:
-- it takes the prefetch's bytecode, or joins the load in flight (one
-- load per module); in a task it waits by yielding, elsewhere it is
-- synchronous.  From then on every operation on the proxy is forwarded
-- to the module's value: indexing and assignment straight through the
-- proxy's own metatable (the VM does them where the proxy is used), the
-- rest through functions here, whose errors are positioned at the use.
--
-- A missing or failing module raises `require`'s own error at the use
-- that needed it, and again at each later use (each tries afresh).
--
-- Used by lua/uvrequire.lua as
-- `M.lazy = require("uvrequire.lazy")(M, require "uvrequire.core")`.
-- @module uvrequire.lazy

return function(M, core)
  -- proxy -> { name = ..., loaded = boolean, value = the module's value }
  local states = setmetatable({}, { __mode = "k" })

  -- Every import goes through this function (not a tail call), so that
  -- the messages `import_module` positions at its caller (`module 'x'
  -- not found:...`, circular requires) are positioned in this file.
  local function import(name) return (M.import_module(name)) end
  local info = debug.getinfo(import, "S")
  local here = info.source
  core.skipsource(here)  -- (the detector's sites: the use, not this file)
  -- a position in this file, as error messages show it
  local hereline = "^" .. info.short_src:gsub("%p", "%%%0") .. ":%d+: "

  -- Where the proxy was used: the first Lua function up the stack that
  -- is not this file's, as luaL_where would show it.
  local function where()
    local level = 3
    while true do
      local ar = debug.getinfo(level, "Sl")
      if ar == nil then return "" end
      if ar.what ~= "C" and ar.source ~= here then
        if ar.currentline > 0 then
          return ("%s:%d: "):format(ar.short_src, ar.currentline)
        end
        return ""
      end
      level = level + 1
    end
  end

  -- Raise `err` at the point of use: an error positioned in this file
  -- (`import`'s, as `require(name)` at the use would raise it; a
  -- forwarded operation's; a module's metamethod's at level 2) is moved
  -- to the use.  Other errors of the module pass unchanged.
  local function raise(err)
    local at = type(err) == "string" and err:match(hereline)
    if at then err = where() .. err:sub(#at + 1) end
    error(err, 0)
  end

  local mt  -- every proxy's metatable until its module loads

  -- The module's value for proxy `p`, importing it if need be.  Once it
  -- is loaded, a value that is not a function is indexed and assigned
  -- through the proxy's own metatable (`__index`/`__newindex` = value):
  -- the VM does those at the use, with the module's metamethods.
  local function get(p)
    local st = states[p]
    if st.loaded then return st.value end
    local ok, value = pcall(import, st.name)
    if not ok then raise(value) end
    st.value, st.loaded = value, true
    if type(value) ~= "function" then
      local own = {}
      for k, v in pairs(mt) do own[k] = v end
      own.__index, own.__newindex = value, value
      debug.setmetatable(p, own)  -- (protected: see __metatable)
    end
    return value
  end

  -- The operand itself, or the module's value if it is a proxy.
  local function val(x)
    if states[x] then return get(x) end
    return x
  end

  -- `f` (an operation on module values), with its errors raised at the
  -- use of the proxy rather than in this file
  local function atuse(ok, ...)
    if ok then return ... end
    raise((...))
  end
  local function fwd(f)
    return function(...) return atuse(pcall(f, ...)) end
  end

  mt = {
    __metatable = false,  -- the proxy's machinery is not the module's
    __index = fwd(function(p, k) return get(p)[k] end),
    __newindex = fwd(function(p, k, v) get(p)[k] = v end),
    __call = function(p, ...)
      local v = get(p)
      local f, n = v, 0  -- follow __call as the VM does: is it callable?
      while type(f) ~= "function" and n < 100 do  -- (past: Lua decides)
        n = n + 1
        local m = debug.getmetatable(f)
        local c = m and rawget(m, "__call")
        if c == nil then
          -- as the VM words it, at the use (not this line)
          raise(("%s:0: attempt to call a %s value")
                :format(info.short_src, type(f)))
        end
        f = c
      end
      return v(...)  -- (a tail call: the module's own errors unchanged)
    end,
    __pairs = function(p) return pairs(get(p)) end,
    __len = fwd(function(p) return #get(p) end),
    __tostring = fwd(function(p) return tostring(get(p)) end),
    __eq = fwd(function(a, b) return val(a) == val(b) end),
    __lt = fwd(function(a, b) return val(a) < val(b) end),
    __le = fwd(function(a, b) return val(a) <= val(b) end),
    __concat = fwd(function(a, b) return val(a) .. val(b) end),
    __unm = fwd(function(a) return -val(a) end),
    __bnot = fwd(function(a) return ~val(a) end),
    __add = fwd(function(a, b) return val(a) + val(b) end),
    __sub = fwd(function(a, b) return val(a) - val(b) end),
    __mul = fwd(function(a, b) return val(a) * val(b) end),
    __div = fwd(function(a, b) return val(a) / val(b) end),
    __mod = fwd(function(a, b) return val(a) % val(b) end),
    __pow = fwd(function(a, b) return val(a) ^ val(b) end),
    __idiv = fwd(function(a, b) return val(a) // val(b) end),
    __band = fwd(function(a, b) return val(a) & val(b) end),
    __bor = fwd(function(a, b) return val(a) | val(b) end),
    __bxor = fwd(function(a, b) return val(a) ~ val(b) end),
    __shl = fwd(function(a, b) return val(a) << val(b) end),
    __shr = fwd(function(a, b) return val(a) >> val(b) end),
  }

  --- A proxy for module `name` that loads it at first use, or the
  -- module itself if it is already loaded.  `name` is a string or a
  -- number, as `require`'s.
  return function(...)
    local name = ...
    if math.type(name) then name = tostring(name) end
    if type(name) ~= "string" then
      local got = select("#", ...) == 0 and "no value" or type(name)
      error(("bad argument #1 to 'lazy' (string expected, got %s)")
            :format(got), 2)
    end
    local loaded = package.loaded[name]
    if loaded then return loaded end
    core.prefetch(name)  -- compiled ahead; the body runs at first use
    local p = setmetatable({}, mt)
    states[p] = { name = name, loaded = false, value = nil }
    return p
  end
end
