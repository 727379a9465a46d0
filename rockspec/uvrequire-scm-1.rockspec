-- uvrequire, built from a checkout: `luarocks make` in its root (it
-- finds this file under rockspec/), or `luarocks make <this file>`.
-- The C header for hosts (csrc/uvrequire.h) is installed with the rock,
-- in <tree>/lib/luarocks/rocks-5.4/uvrequire/scm-1/include/.
-- The source list below is checked against csrc/*.c by
-- spec/checks/rockspec_sources.sh.
rockspec_format = "3.0"
package = "uvrequire"
version = "scm-1"

source = {
  url = "git+https://github.com/uvrequire/uvrequire.git",
  branch = "main",
}

description = {
  summary = "Lua 5.4's require with an import executor on libuv",
  detailed = [[
A drop-in replacement for Lua 5.4's `require`: the standard file
searchers (path search, reading, compiling, dlopen) run on a pool of
executor threads.  A coroutine that requires yields while its import is
in flight and is resumed on a libuv loop (a host's, luv's or its own);
any other caller blocks as before.  Tasks (`uvrequire.spawn`) and a loop
runner (`uvrequire.run`) come with it.  Needs libuv >= 1.44.
]],
  homepage = "https://github.com/uvrequire/uvrequire",
  issues_url = "https://github.com/uvrequire/uvrequire/issues",
  license = "MIT",
  labels = { "require", "libuv", "coroutines" },
}

dependencies = {
  "lua >= 5.4, < 5.5",
}

-- libuv >= 1.44 (LuaRocks cannot check an external library's version).
external_dependencies = {
  LIBUV = {
    header = "uv.h",
    library = "uv",
  },
}

build = {
  type = "builtin",
  modules = {
    -- the C core; its sources define _GNU_SOURCE where they need it
    ["uvrequire.core"] = {
      sources = {
        "csrc/arena.c",
        "csrc/buf.c",
        "csrc/cache.c",
        "csrc/cachedir.c",
        "csrc/clib.c",
        "csrc/compile.c",
        "csrc/core.c",
        "csrc/cycle.c",
        "csrc/drive.c",
        "csrc/execlife.c",
        "csrc/execpf.c",
        "csrc/executor.c",
        "csrc/guard.c",
        "csrc/hash.c",
        "csrc/load.c",
        "csrc/loaded.c",
        "csrc/loop.c",
        "csrc/pfsweep.c",
        "csrc/prefetch.c",
        "csrc/require.c",
        "csrc/runtime.c",
        "csrc/sched.c",
        "csrc/scan.c",
        "csrc/search.c",
        "csrc/searchers.c",
        "csrc/stats.c",
        "csrc/stdsearch.c",
        "csrc/tasks.c",
      },
      libraries = { "uv", "pthread", "dl" },
      incdirs = { "$(LIBUV_INCDIR)" },
      libdirs = { "$(LIBUV_LIBDIR)" },
    },
    uvrequire = "lua/uvrequire.lua",
    ["uvrequire.lazy"] = "lua/uvrequire/lazy.lua",
  },
  install = {
    -- the embedding header, kept with the rock (not deployed)
    conf = { ["../include/uvrequire.h"] = "csrc/uvrequire.h" },
  },
}

-- The whole suite, offline, against a fresh build in the checkout.
test = {
  type = "command",
  command = "make spec",
}
