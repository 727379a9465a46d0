--- uvrequire.lazy: lazy imports (issue 10, item 3).
--
-- `lazy(name)` returns a proxy that stands for module `name`.  It starts
-- the import at once, in the background, as a task of its own; the
-- first use of the proxy (index, newindex, call, `pairs`, `#`,
-- `tostring`, comparison, arithmetic, concatenation) takes that task's
-- result, or else imports the module itself with `import_module`, which
-- joins the load in flight (one load per module): in a task it waits by
-- yielding, elsewhere it is synchronous.  From then on every operation
-- on the proxy is forwarded to the module's value.
--
-- A missing or failing module raises `require`'s own error at the use
-- that needed it, and again at each later use (each tries afresh).  The
-- background task's error is claimed: it is never reported as unclaimed.
--
-- Used by lua/uvrequire.lua as `M.lazy = require("uvrequire.lazy")(M)`.
-- @module uvrequire.lazy

return function(M)
  -- proxy -> { name = ..., task = background task or nil,
  --            loaded = boolean, value = the module's value }
  local states = setmetatable({}, { __mode = "k" })

  -- Every import goes through this one line (not a tail call), so that
  -- the messages `import_module` positions at its caller (`module 'x'
  -- not found:...`, circular requires) start with a known prefix.
  local function import(name) return (M.import_module(name)) end
  local info = debug.getinfo(import, "S")
  local here = info.source
  local prefix = ("%s:%d: "):format(info.short_src, info.linedefined)

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

  -- Raise `err` at the point of use: the message `require(name)` there
  -- would raise.  Errors of the module itself pass unchanged.
  local function raise(err)
    if type(err) == "string" and err:sub(1, #prefix) == prefix then
      err = where() .. err:sub(#prefix + 1)
    end
    error(err, 0)
  end

  -- The module's value for proxy `p`, importing it if need be.
  local function get(p)
    local st = states[p]
    if st.loaded then return st.value end
    local task = st.task
    st.task = nil  -- taken once: a later use after a failure tries afresh
    local ok, value
    if task and task:done() then
      ok, value = task:result()
    else
      ok, value = pcall(import, st.name)
    end
    if not ok then raise(value) end
    st.value, st.loaded = value, true
    return value
  end

  -- The operand itself, or the module's value if it is a proxy.
  local function val(x)
    if states[x] then return get(x) end
    return x
  end

  local mt = {
    __index = function(p, k) return get(p)[k] end,
    __newindex = function(p, k, v) get(p)[k] = v end,
    __call = function(p, ...) return get(p)(...) end,
    __pairs = function(p) return pairs(get(p)) end,
    __len = function(p) return #get(p) end,
    __tostring = function(p) return tostring(get(p)) end,
    __eq = function(a, b) return val(a) == val(b) end,
    __lt = function(a, b) return val(a) < val(b) end,
    __le = function(a, b) return val(a) <= val(b) end,
    __concat = function(a, b) return val(a) .. val(b) end,
    __unm = function(a) return -val(a) end,
    __bnot = function(a) return ~val(a) end,
    __add = function(a, b) return val(a) + val(b) end,
    __sub = function(a, b) return val(a) - val(b) end,
    __mul = function(a, b) return val(a) * val(b) end,
    __div = function(a, b) return val(a) / val(b) end,
    __mod = function(a, b) return val(a) % val(b) end,
    __pow = function(a, b) return val(a) ^ val(b) end,
    __idiv = function(a, b) return val(a) // val(b) end,
    __band = function(a, b) return val(a) & val(b) end,
    __bor = function(a, b) return val(a) | val(b) end,
    __bxor = function(a, b) return val(a) ~ val(b) end,
    __shl = function(a, b) return val(a) << val(b) end,
    __shr = function(a, b) return val(a) >> val(b) end,
  }

  --- A proxy for module `name` that loads it at first use, or the
  -- module itself if it is already loaded.
  return function(...)
    local name = ...
    if type(name) ~= "string" then
      local got = select("#", ...) == 0 and "no value" or type(name)
      error(("bad argument #1 to 'lazy' (string expected, got %s)")
            :format(got), 2)
    end
    local loaded = package.loaded[name]
    if loaded then return loaded end
    -- prefetch: the import starts now; its error is the proxy's to raise
    local task = M.spawn(import, name)
    task.claimed = true
    local p = setmetatable({}, mt)
    states[p] = { name = name, task = task, loaded = false, value = nil }
    return p
  end
end
