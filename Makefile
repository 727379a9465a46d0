# uvrequire: build, test, bench.  `make test` alone sets up a fresh
# Debian machine (as root) and runs every test.

LUA      ?= lua5.4
BUSTED   ?= $(LUA) /usr/bin/busted
CC       ?= cc
PKGS      = lua5.4 libuv
DEBS      = lua5.4 liblua5.4-dev libuv1-dev lua-busted luarocks \
            lua-luv lua-luv-dev lua-lpeg lua-filesystem pkg-config gcc make
CWARN     = -Wall -Wextra -Werror
CFLAGS   ?= -O2 -g
# -fno-plt: calls into liblua go through the GOT directly (the
# already-loaded require is a handful of them: 3-5% of its time)
ALLCFLAGS = -std=gnu99 -fPIC -fno-plt $(CWARN) $(CFLAGS) \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LIBS      = -luv -lpthread -ldl

B        := build
CORE_SRC := $(wildcard csrc/*.c)
CORE_OBJ := $(CORE_SRC:csrc/%.c=$(B)/obj/%.o)
CORE     := $(B)/uvrequire/core.so
FIX_SRC  := $(wildcard spec/fixtures/csrc/*.c)
FIX_SO   := $(FIX_SRC:spec/fixtures/csrc/%.c=$(B)/fixtures/%.so)
HOST     := $(B)/host

.PHONY: all deps test spec bench demo asan tsan valgrind clean

all: $(CORE) $(FIX_SO)

# Install what is missing (Debian, as root).
deps:
	@missing=""; for p in $(DEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" \
	    || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq $$missing >/dev/null; fi

$(B)/obj/%.o: csrc/%.c csrc/ur.h csrc/load.h csrc/prefetch.h csrc/exec.h \
                csrc/uvrequire.h
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) -c -o $@ $<

$(CORE): $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -o $@ $(CORE_OBJ) $(LIBS)

# Fixture C modules for the specs: one .so per file.
$(B)/fixtures/%.so: spec/fixtures/csrc/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) -shared -o $@ $<

$(B)/minihost: examples/minihost.c csrc/uvrequire.h
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) -Icsrc -o $@ $< \
	  $(shell pkg-config --libs $(PKGS)) -Wl,-E

$(HOST): examples/host.c csrc/uvrequire.h
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) -Icsrc -o $@ $< \
	  $(shell pkg-config --libs $(PKGS)) -Wl,-E

# The whole suite; the last line is "N passed, N failed".
test: deps
	@$(MAKE) --no-print-directory all
	@bash spec/run.sh

spec: all
	@bash spec/run.sh

# (run.lua and luarocks.lua measure compiling: the bytecode cache off;
# cache.lua measures the cache, cold and warm; graph.lua sets the cache
# of each of its runs itself.)
bench: deps all
	UVREQUIRE_CACHE=off $(LUA) bench/run.lua
	UVREQUIRE_CACHE=off $(LUA) bench/luarocks.lua
	$(LUA) bench/cache.lua
	$(LUA) bench/prefetch.lua
	$(LUA) bench/graph.lua

# (its modules are generated afresh each run: they stay out of the cache)
demo: deps all
	UVREQUIRE_CACHE=off $(LUA) examples/demo.lua

# The spec suite with AddressSanitizer and UBSan, then the embedding
# host built with them.  (Leaks: LeakSanitizer cannot run under ptrace,
# as in some sandboxes; 'make valgrind' checks the host for leaks.)
asan: deps
	@$(MAKE) --no-print-directory clean
	@$(MAKE) --no-print-directory all \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  LDFLAGS="-fsanitize=address,undefined"
	@LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0 UVREQUIRE_ASAN=1 bash spec/run.sh
	@$(MAKE) --no-print-directory $(HOST) \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
	@ASAN_OPTIONS=detect_leaks=0 bash spec/checks/host.sh
	@$(MAKE) --no-print-directory clean

# The executor's concurrency specs with ThreadSanitizer: any report
# fails (exit code 66).  spec/tsan.supp says what it suppresses, and why.
# Shells die under libtsan here, so busted's children must not inherit
# LD_PRELOAD: the spec process drops it first, and the specs preload
# UVREQUIRE_PRELOAD for the child lua5.4 processes they start.
UNPRELOAD = package.loadlib("$(B)/fixtures/forkfix.so", \
              "luaopen_forkfix")().unsetenv("LD_PRELOAD")
tsan: deps
	@$(MAKE) --no-print-directory clean
	@$(MAKE) --no-print-directory all \
	  CFLAGS="-O1 -g -fsanitize=thread -fno-omit-frame-pointer" \
	  LDFLAGS="-fsanitize=thread"
	@LD_PRELOAD="$$($(CC) -print-file-name=libtsan.so)" UVREQUIRE_CACHE=off \
	  UVREQUIRE_PRELOAD="$$($(CC) -print-file-name=libtsan.so)" \
	  TSAN_OPTIONS="halt_on_error=1 exitcode=66 \
	    suppressions=$(CURDIR)/spec/tsan.supp" \
	  $(LUA) -e '$(UNPRELOAD)' \
	  /usr/bin/busted -o utfTerminal spec/executor_spec.lua spec/input_spec.lua \
	    spec/stress_spec.lua
	@$(MAKE) --no-print-directory clean

# The spec suite under valgrind (memcheck): any error fails it.  Then
# the embedding host, which closes its state: any definite leak fails.
valgrind: deps all
	@UVREQUIRE_VALGRIND=1 bash spec/run.sh
	@UVREQUIRE_VALGRIND=1 bash spec/checks/host.sh

clean:
	rm -rf $(B)

# Install and uninstall (make install PREFIX=/usr DESTDIR=/tmp/stage).
# Every directory is overridable; the defaults are on Debian lua5.4's
# default package.path and package.cpath for PREFIX=/usr/local or /usr.
PREFIX       ?= /usr/local
LUA_LMOD     ?= $(PREFIX)/share/lua/5.4
LUA_CMOD     ?= $(PREFIX)/lib/lua/5.4
INCLUDEDIR   ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(PREFIX)/lib/pkgconfig
INSTALL      ?= install
UVR_VERSION   = 0.1.0
PC           := $(B)/uvrequire.pc
# uvrequire.pc writes the directories under PREFIX as ${prefix}/...
pcdir = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))

.PHONY: install uninstall pc

# uvrequire.pc, regenerated every time: PREFIX and the directories may
# differ from the last run.
pc:
	@mkdir -p $(dir $(PC))
	sed -e 's|@PREFIX@|$(PREFIX)|' \
	    -e 's|@INCLUDEDIR@|$(call pcdir,$(INCLUDEDIR))|' \
	    -e 's|@LUA_LMOD@|$(call pcdir,$(LUA_LMOD))|' \
	    -e 's|@LUA_CMOD@|$(call pcdir,$(LUA_CMOD))|' \
	    -e 's|@VERSION@|$(UVR_VERSION)|' uvrequire.pc.in >$(PC)

install: $(CORE) pc
	$(INSTALL) -d "$(DESTDIR)$(LUA_LMOD)/uvrequire" "$(DESTDIR)$(LUA_CMOD)/uvrequire" \
	  "$(DESTDIR)$(INCLUDEDIR)" "$(DESTDIR)$(PKGCONFIGDIR)"
	$(INSTALL) -m 644 lua/uvrequire.lua "$(DESTDIR)$(LUA_LMOD)/uvrequire.lua"
	$(INSTALL) -m 644 lua/uvrequire/lazy.lua "$(DESTDIR)$(LUA_LMOD)/uvrequire/lazy.lua"
	$(INSTALL) -m 755 $(CORE) "$(DESTDIR)$(LUA_CMOD)/uvrequire/core.so"
	$(INSTALL) -m 644 csrc/uvrequire.h "$(DESTDIR)$(INCLUDEDIR)/uvrequire.h"
	$(INSTALL) -m 644 $(PC) "$(DESTDIR)$(PKGCONFIGDIR)/uvrequire.pc"

# Removes exactly what install put there (and the uvrequire/ directory
# it made for the core, if empty).
uninstall:
	rm -f "$(DESTDIR)$(LUA_LMOD)/uvrequire.lua" \
	  "$(DESTDIR)$(LUA_LMOD)/uvrequire/lazy.lua" \
	  "$(DESTDIR)$(LUA_CMOD)/uvrequire/core.so" \
	  "$(DESTDIR)$(INCLUDEDIR)/uvrequire.h" \
	  "$(DESTDIR)$(PKGCONFIGDIR)/uvrequire.pc"
	rmdir "$(DESTDIR)$(LUA_CMOD)/uvrequire" 2>/dev/null || true
	rmdir "$(DESTDIR)$(LUA_LMOD)/uvrequire" 2>/dev/null || true
