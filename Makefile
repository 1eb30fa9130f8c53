# Factum — `make run` and `make test` install what is missing (apt), build, and go.
#   make            build build/factum, build/libfactum.a
#   make test       every test: unit, model, crash, fault injection, CLI, fuzz corpus replays
#   make asan       the same tests built with AddressSanitizer + UndefinedBehaviorSanitizer
#   make fuzz       libFuzzer on each target for FUZZ_SECONDS (default 60) each
#   make powercut   the power-cut test only, 200 cycles (CYCLES=N; needs root)
#   make bench      engine figures beside the disk's ceiling; server figures beside PostgreSQL
#                   (QUICK=1 for a short run)
#   make run        build and serve HTTP on 127.0.0.1:7744 with data in ./factum-data
#   make demo       the order system of examples/orders: services, a saga, choreography
#   make clean

BUILD   ?= build
CC      ?= gcc
PKGS    := gcc make pkg-config clang-format libxxhash-dev libcurl4-openssl-dev libsqlite3-dev libpq-dev postgresql curl \
           libssl-dev openssl libinih-dev nats-server libnats-dev libsystemd-dev help2man systemd \
           libpcre2-dev json-schema-test-suite
FUZZ_PKGS := clang libclang-rt-14-dev
SAN     ?=
FUZZ_SECONDS ?= 60

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wformat=2 \
           -Wno-format-nonliteral -Wno-format-truncation
CFLAGS  ?= -O2 -g
ALL_CFLAGS = -std=c17 $(CFLAGS) $(WARN) -D_GNU_SOURCE -Iinclude -pthread -MMD -MP \
             $(shell pkg-config --cflags libxxhash libpq openssl libnats 2>/dev/null) $(if $(SAN),$(SANFLAGS) -fno-omit-frame-pointer -fno-sanitize-recover=all)
LDLIBS   = $(shell pkg-config --libs libxxhash libcurl sqlite3 libpq openssl inih libnats libsystemd libpcre2-8 2>/dev/null) -lm -pthread $(if $(SAN),$(SANFLAGS))
SANFLAGS := -fsanitize=address,undefined

LIB_SRC  := $(wildcard src/base/*.c src/io/*.c src/store/*.c src/event/*.c src/schema/*.c)
SRV_SRC  := $(wildcard src/proj/*.c src/saga/*.c src/sys/*.c src/timer/*.c src/group/*.c src/connect/*.c src/auth/*.c src/cluster/*.c src/server/*.c)
CLIENT_SRC := $(wildcard src/client/*.c)
CLIENT_OBJ := $(CLIENT_SRC:%.c=$(BUILD)/obj/%.o)
CLI_SRC  := $(wildcard src/cli/*.c) $(SRV_SRC)
TEST_SRC := $(wildcard tests/*.c)
FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)

# The dashboard's files (docs/ui.md), embedded in the server as C arrays by ui/embed.sh.
UI_FILES := $(sort $(wildcard ui/*.html ui/*.css ui/*.js ui/*.svg))
UI_OBJ   := $(BUILD)/obj/gen/ui_assets.o

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o) $(UI_OBJ)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/obj/%.o) $(FUZZ_SRC:%.c=$(BUILD)/obj/%.o) $(SRV_SRC:%.c=$(BUILD)/obj/%.o) $(UI_OBJ)

.PHONY: all deps browser-deps docs-deps run test asan fuzz bench clean check-test demo powercut install man
all: $(BUILD)/factum $(BUILD)/libfactum.a $(BUILD)/libfactum_client.a

# Debian packages, installed only when missing: $(call apt,PACKAGES)
apt = missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

deps: $(BUILD)/.deps
$(BUILD)/.deps: Makefile
	@mkdir -p $(BUILD)
	@$(call apt,$(PKGS))
	@touch $@

# Tests that run node: each folder of tests/ with a package.json gets its npm packages (npm ci,
# pinned by its package-lock.json) after the Debian packages it names here.
#   browser:  a real EventSource: Debian's chromium, driven by playwright-core from npm.
#   contract: the machine checks of the docs (tests/test_docs.c): promtool from Debian's
#             prometheus for /metrics; an OpenAPI linter and a JSON Schema validator from npm.
browser-deps: tests/browser/node_modules/.installed
docs-deps: tests/contract/node_modules/.installed
tests/browser/node_modules/.installed: NODE_TEST_PKGS := chromium nodejs
tests/contract/node_modules/.installed: NODE_TEST_PKGS := prometheus nodejs
tests/%/node_modules/.installed: tests/%/package.json tests/%/package-lock.json
	@$(call apt,$(NODE_TEST_PKGS))
	@command -v npm >/dev/null || ( $(call apt,npm) )
	cd tests/$* && npm ci --no-audit --no-fund --silent
	@touch $@

build/.fuzz-deps: Makefile
	@mkdir -p build
	@$(call apt,$(FUZZ_PKGS))
	@touch $@

$(BUILD)/obj/%.o: %.c | $(BUILD)/.deps
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/gen/ui_assets.c: $(UI_FILES) ui/embed.sh
	@mkdir -p $(@D)
	sh ui/embed.sh $(UI_FILES) > $@.tmp && mv $@.tmp $@

$(UI_OBJ): $(BUILD)/gen/ui_assets.c src/server/ui.h | $(BUILD)/.deps
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -I. -c $< -o $@

$(BUILD)/libfactum.a: $(LIB_OBJ)
	ar rcs $@ $^

$(BUILD)/libfactum_client.a: $(CLIENT_OBJ)
	ar rcs $@ $^

# ---- make install (PREFIX, DESTDIR; docs/install.md) ----
PREFIX     ?= /usr/local
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
BINDIR     := $(PREFIX)/bin
LIBDIR     := $(PREFIX)/lib
INCDIR     := $(PREFIX)/include
MANDIR     := $(PREFIX)/share/man
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
VERSION    := $(shell sed -n 's/^\#define FACTUM_VERSION "\(.*\)"/\1/p' include/factum.h)
# One man page per command, made by help2man from the same text as COMMAND --help.
COMMANDS   := append read tail streams categories schedule group meta projection connector saga delete admin key check serve \
              config tour bench
MANPAGES   := $(BUILD)/man/factum.1 $(COMMANDS:%=$(BUILD)/man/factum-%.1)
man: $(MANPAGES)
$(BUILD)/man/factum.1: $(BUILD)/factum
	@mkdir -p $(@D)
	help2man --no-info --name "an event store and event-streaming server" --version-option=--version -o $@ $<
$(BUILD)/man/factum-%.1: $(BUILD)/factum
	@mkdir -p $(@D)
	desc=$$($< --help | sed -n 's/^  $*[ |].*  \+\([^ ].*\)$$/\1/p' | head -1); \
	help2man --no-info --name "$$desc" --help-option="$* --help" --version-option=--version $< | \
	  sed -e 's/^\.TH FACTUM /.TH FACTUM-$(shell echo $* | tr a-z A-Z) /' -e 's/^factum \\- /factum-$* \\- /' > $@
subst = sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCDIR@|$(INCDIR)|g' \
            -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' -e 's|@VERSION@|$(VERSION)|g'
install: deps all man
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCDIR) $(DESTDIR)$(MANDIR)/man1 \
	  $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(SYSCONFDIR)/factum
	install -m 755 $(BUILD)/factum $(DESTDIR)$(BINDIR)/factum
	install -m 644 $(BUILD)/libfactum.a $(BUILD)/libfactum_client.a $(DESTDIR)$(LIBDIR)/
	install -m 644 include/factum.h include/factum_client.h $(DESTDIR)$(INCDIR)/
	$(subst) dist/factum.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/factum.pc
	$(subst) dist/factum-client.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/factum-client.pc
	for m in $(MANPAGES); do gzip -9nc $$m > $(DESTDIR)$(MANDIR)/man1/$$(basename $$m).gz; done
	$(subst) dist/factum.service.in > $(DESTDIR)$(UNITDIR)/factum.service
	install -m 644 dist/factum.sysusers $(DESTDIR)$(SYSUSERSDIR)/factum.conf
	@# a configuration file already there is the operator's: never overwritten
	test -e $(DESTDIR)$(SYSCONFDIR)/factum/factum.conf || install -m 640 dist/factum.conf $(DESTDIR)$(SYSCONFDIR)/factum/factum.conf

$(BUILD)/factum: $(CLI_OBJ) $(BUILD)/libfactum_client.a $(BUILD)/libfactum.a
	$(CC) $(ALL_CFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libfactum_client.a $(BUILD)/libfactum.a $(LDLIBS)

$(BUILD)/factum-tests: $(TEST_OBJ) $(BUILD)/libfactum_client.a $(BUILD)/libfactum.a
	$(CC) $(ALL_CFLAGS) -o $@ $(TEST_OBJ) $(BUILD)/libfactum_client.a $(BUILD)/libfactum.a $(LDLIBS)

# The test runner prints one line per test and ends with "N passed, N failed".
test: deps browser-deps docs-deps
	@$(MAKE) --no-print-directory check-test

check-test: $(BUILD)/factum $(BUILD)/factum-tests $(BUILD)/order-service man
	@FACTUM_BIN=$(abspath $(BUILD)/factum) FACTUM_ROOT=$(CURDIR) FACTUM_SAN=$(SAN) $(BUILD)/factum-tests

# The power-cut test alone, for longer (tests/test_powercut.c; needs root): CYCLES=N to change.
powercut: deps
	@$(MAKE) --no-print-directory $(BUILD)/factum $(BUILD)/factum-tests
	@FACTUM_POWERCUT_CYCLES=$(or $(CYCLES),200) FACTUM_BIN=$(abspath $(BUILD)/factum) FACTUM_ROOT=$(CURDIR) \
	  $(BUILD)/factum-tests a_power_cut_loses_no_acknowledged_event

asan: deps browser-deps docs-deps
	@$(MAKE) --no-print-directory BUILD=build/asan SAN=1 CFLAGS="-O1 -g" check-test

# libFuzzer needs clang; each target starts from its committed corpus.
FUZZ_BINS := $(FUZZ_SRC:fuzz/%.c=build/fuzz/%)
build/fuzz/%: fuzz/%.c $(LIB_SRC) src/server/http.c | $(BUILD)/.deps build/.fuzz-deps
	@mkdir -p build/fuzz
	clang -std=c17 -O1 -g -D_GNU_SOURCE -DFUZZ_LIBFUZZER -Iinclude -pthread -fsanitize=fuzzer,address,undefined \
	  -o $@ $< $(LIB_SRC) src/server/http.c src/proj/sqlparam.c src/saga/def.c $(shell pkg-config --libs libxxhash libpcre2-8) -lm

fuzz: deps $(FUZZ_BINS)
	@for f in $(FUZZ_BINS); do n=$${f#build/fuzz/fuzz_}; mkdir -p build/fuzz/corpus-$$n; \
	  echo "fuzzing $$n for $(FUZZ_SECONDS)s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -max_len=65536 build/fuzz/corpus-$$n fuzz/corpus/$$n || exit 1; done

BENCH_PKGS := postgresql libpq-dev nats-server libnats-dev
$(BUILD)/bench-http: bench/bench_http.c bench/hclient.h | $(BUILD)/.deps
	$(CC) -std=c17 -O2 -g -Wall -Wextra -Werror -D_GNU_SOURCE $$(pkg-config --cflags libpq openssl) -pthread -o $@ $< \
	  $$(pkg-config --libs libpq openssl)

$(BUILD)/bench-groups: bench/bench_groups.c bench/hclient.h | $(BUILD)/.deps
	$(CC) -std=c17 -O2 -g -Wall -Wextra -Werror -D_GNU_SOURCE -pthread -o $@ $< $$(pkg-config --libs libnats 2>/dev/null || echo -lnats) \
	  $$(pkg-config --libs openssl)

$(BUILD)/bench-sagas: bench/bench_sagas.c bench/hclient.h | $(BUILD)/.deps
	$(CC) -std=c17 -O2 -g -Wall -Wextra -Werror -D_GNU_SOURCE -pthread -o $@ $< $$(pkg-config --libs openssl)

$(BUILD)/bench-lag: bench/bench_lag.c bench/hclient.h | $(BUILD)/.deps
	$(CC) -std=c17 -O2 -g -Wall -Wextra -Werror -D_GNU_SOURCE -pthread -o $@ $< $$(pkg-config --libs openssl)

$(BUILD)/bench-js: bench/bench_js.c | $(BUILD)/.deps
	$(CC) -std=c17 -O2 -g -Wall -Wextra -Werror -D_GNU_SOURCE -pthread -o $@ $< $$(pkg-config --libs libnats 2>/dev/null || echo -lnats)

$(BUILD)/bench-schemas: bench/bench_schemas.c bench/hclient.h | $(BUILD)/.deps
	$(CC) -std=c17 -O2 -g -Wall -Wextra -Werror -D_GNU_SOURCE -pthread -o $@ $< $$(pkg-config --libs openssl)

$(BUILD)/bench-proj: bench/bench_proj.c $(BUILD)/libfactum.a | $(BUILD)/.deps
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libfactum.a $(LDLIBS)

$(BUILD)/bench-conn: bench/bench_conn.c $(BUILD)/libfactum.a | $(BUILD)/.deps
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libfactum.a $(LDLIBS)

bench: deps
	@$(call apt,$(BENCH_PKGS))
	@$(MAKE) --no-print-directory $(BUILD)/factum $(BUILD)/bench-http $(BUILD)/bench-groups $(BUILD)/bench-proj $(BUILD)/bench-sagas \
	  $(BUILD)/bench-js $(BUILD)/bench-schemas $(BUILD)/bench-conn $(BUILD)/bench-lag
	$(BUILD)/factum bench engine $(if $(QUICK),--quick)
	$(BUILD)/factum bench scavenge $(if $(QUICK),--quick)
	$(BUILD)/factum bench backup $(if $(QUICK),--quick)
	$(BUILD)/factum bench archive $(if $(QUICK),--quick)
	$(BUILD)/factum bench dcb $(if $(QUICK),--quick)
	BIN=$(BUILD)/factum GEN=$(BUILD)/bench-http $(if $(QUICK),SECONDS_EACH=1 CATCHUP=200000) bench/http.sh
	BIN=$(BUILD)/factum GEN=$(BUILD)/bench-groups $(if $(QUICK),EVENTS=20000) bench/groups.sh
	BIN=$(BUILD)/factum GEN=$(BUILD)/bench-proj $(if $(QUICK),EVENTS=100000) bench/projections.sh
	BIN=$(BUILD)/factum GEN=$(BUILD)/bench-sagas $(if $(QUICK),SAGAS=2000) bench/sagas.sh
	BIN=$(BUILD)/factum GEN=$(BUILD)/bench-schemas $(if $(QUICK),SECONDS_EACH=1 EVENTS=20000) bench/schemas.sh
	BIN=$(BUILD)/factum GEN=$(BUILD)/bench-conn $(if $(QUICK),EVENTS=2000 ROWS=4000) bench/connectors.sh
	BIN=$(BUILD)/factum GEN=$(BUILD)/bench-http JS=$(BUILD)/bench-js LAG=$(BUILD)/bench-lag $(if $(QUICK),SECONDS_EACH=1 KILLS=3) bench/cluster.sh
	@$(MAKE) --no-print-directory browser-deps
	BIN=$(BUILD)/factum $(if $(QUICK),STREAMS=100000 TAIL_SECONDS=3) bench/ui.sh

# The order system of examples/orders: services written with the client library.
$(BUILD)/order-service: examples/orders/service.c $(BUILD)/libfactum_client.a $(BUILD)/libfactum.a
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libfactum_client.a $(BUILD)/libfactum.a $(LDLIBS)

demo: deps
	@$(MAKE) --no-print-directory $(BUILD)/factum $(BUILD)/order-service
	BIN=$(BUILD)/factum SVC=$(BUILD)/order-service examples/orders/demo.sh

run: deps
	@$(MAKE) --no-print-directory $(BUILD)/factum
	$(BUILD)/factum --data-dir ./factum-data serve

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
