-- uvrequire, built from a checkout: `luarocks make` in its root (it
-- finds this file under rockspec/), or `luarocks make <this file>`.
rockspec_format = "3.0"
package = "uvrequire"
version = "scm-1"

source = {
  -- placeholder: the repository has no public address yet
  url = "git+https://example.invalid/uvrequire.git",
}

description = {
  summary = "Lua 5.4's require with an import executor on libuv",
  detailed = [[
A drop-in replacement for Lua 5.4's `require`: the standard file
searchers (path search, reading, compiling, dlopen) run on a pool of
executor threads.  A coroutine that requires yields while its import is
in flight and is resumed on a libuv loop (a host's, luv's or its own);
any other caller blocks as before.  Tasks (`uvrequire.spawn`) and a loop
runner (`uvrequire.run`) come with it.
]],
  issues_url = "https://example.invalid/uvrequire/issues",
  labels = { "require", "libuv", "coroutines" },
}

dependencies = {
  "lua >= 5.4, < 5.5",
}

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
        "csrc/clib.c",
        "csrc/compile.c",
        "csrc/core.c",
        "csrc/cycle.c",
        "csrc/executor.c",
        "csrc/load.c",
        "csrc/loaded.c",
        "csrc/loop.c",
        "csrc/require.c",
        "csrc/sched.c",
        "csrc/search.c",
      },
      libraries = { "uv", "pthread", "dl" },
      incdirs = { "$(LIBUV_INCDIR)" },
      libdirs = { "$(LIBUV_LIBDIR)" },
    },
    uvrequire = "lua/uvrequire.lua",
  },
}

test = {
  type = "busted",
}
