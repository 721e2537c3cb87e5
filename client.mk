# client.mk — libparasync, the para_sync client library, and its tools/tests.
#
# Included at the end of the PGXS Makefile, so `make` alone still builds only
# the extension.  Every variable here is CLIENT_*-prefixed and every rule is
# explicit: nothing leaks into or out of PGXS.
#
#   make client            build/libparasync.{so,a,pc}, build/para-sync-watch (watch/)
#   make client-check      unit + stress + ASan/UBSan + example + fuzz (bounded)
#                          + NATS/libpq/integration tests; ends "N passed, N failed"
#   make client-install    install library, header, pkg-config file, CLI
#   make client-bench      decode + reconcile benchmark, C vs the seed's JS
#   make client-fuzz       run the decoder fuzzer alone, for CLIENT_FUZZ_SECONDS

CLIENT_CC ?= gcc
CLIENT_CXX ?= g++
CLIENT_FUZZ_CC ?= $(shell command -v clang-14 || command -v clang || echo clang)
CLIENT_BUILD := build
CLIENT_PREFIX ?= /usr/local
CLIENT_LIBDIR ?= $(CLIENT_PREFIX)/lib
CLIENT_INCLUDEDIR ?= $(CLIENT_PREFIX)/include
CLIENT_BINDIR ?= $(CLIENT_PREFIX)/bin
# the ABI number and version have one home: include/para_sync/client.h
CLIENT_ABI := $(shell sed -n 's/^#define PSYNC_ABI_VERSION \([0-9][0-9]*\).*/\1/p' include/para_sync/client.h)
CLIENT_VERSION := $(shell sed -n 's/^#define PSYNC_VERSION "\(.*\)"/\1/p' include/para_sync/client.h)
CLIENT_FUZZ_SECONDS ?= 30
# client-check fuzzes a fixed number of inputs: its work never depends on the
# machine's speed (300,000 took about 25 s on the 2-core project machine)
CLIENT_FUZZ_RUNS ?= 300000

CLIENT_DEPS_CFLAGS := $(shell pkg-config --cflags msgpack libnats libpq)
CLIENT_DEPS_LIBS := $(shell pkg-config --libs msgpack libnats libpq) -lpthread
CLIENT_WARN := -Wall -Wextra -Werror -Wno-missing-field-initializers
CLIENT_CFLAGS := -std=gnu11 -O2 -g -fPIC -D_GNU_SOURCE -Iinclude $(CLIENT_WARN) $(CLIENT_DEPS_CFLAGS)
CLIENT_SAN_CFLAGS := -std=gnu11 -O1 -g -fPIC -D_GNU_SOURCE -Iinclude $(CLIENT_WARN) $(CLIENT_DEPS_CFLAGS) \
	-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer

CLIENT_LIB_SRCS := src/common/envelope.c src/common/key_escape.c \
	src/client/status.c src/client/handle.c src/client/keymap.c src/client/transport.c \
	src/client/transport_inprocess.c src/client/transport_nats.c \
	src/client/reconcile.c src/client/replica.c src/client/refetch_pq.c src/client/collection.c src/client/collection_row.c src/client/collection_load.c src/client/loader_pq.c
CLIENT_HEADERS := include/para_sync/client.h include/para_sync/envelope.h include/para_sync/key.h \
	src/client/keymap.h src/client/collection_internal.h src/client/handle.h src/client/reconcile.h src/client/sized.h src/client/transport_internal.h src/client/callback.h src/client/client_error.h src/client/refetch_internal.h src/client/pq_internal.h
# ---- the MessagePack reader the decoder shares with the server (internal header)
CLIENT_HEADERS += src/common/mp_reader.h
$(CLIENT_BUILD)/fuzz/fuzz_decode: src/common/mp_reader.h

CLIENT_LIB_OBJS := $(patsubst %.c,$(CLIENT_BUILD)/obj/%.o,$(CLIENT_LIB_SRCS))
CLIENT_SAN_OBJS := $(patsubst %.c,$(CLIENT_BUILD)/san/%.o,$(CLIENT_LIB_SRCS))

CLIENT_UNIT_TESTS := test_decode test_replica test_replica_api test_collection test_scope test_transport test_stress test_alloc test_abi \
	test_watch_view
CLIENT_LIVE_TESTS := test_nats test_scope_live test_pq test_collection_live test_layout_live
CLIENT_TEST_BINS := $(addprefix $(CLIENT_BUILD)/test/,$(CLIENT_UNIT_TESTS) $(CLIENT_LIVE_TESTS) test_integration test_conformance)
CLIENT_SAN_BINS := $(addprefix $(CLIENT_BUILD)/san/test/,$(CLIENT_UNIT_TESTS) $(CLIENT_LIVE_TESTS) test_integration)

CLIENT_SO := $(CLIENT_BUILD)/libparasync.so.$(CLIENT_ABI)
CLIENT_A := $(CLIENT_BUILD)/libparasync.a
CLIENT_PC := $(CLIENT_BUILD)/libparasync.pc
CLIENT_WATCH := $(CLIENT_BUILD)/para-sync-watch
CLIENT_EXAMPLE := $(CLIENT_BUILD)/example-client

.PHONY: client client-check client-install client-bench client-fuzz client-clean

client: $(CLIENT_SO) $(CLIENT_BUILD)/libparasync.so $(CLIENT_A) $(CLIENT_PC) $(CLIENT_WATCH)

$(CLIENT_BUILD)/obj/%.o: %.c $(CLIENT_HEADERS)
	@mkdir -p $(dir $@)
	$(CLIENT_CC) $(CLIENT_CFLAGS) -Isrc/client -c $< -o $@

$(CLIENT_BUILD)/san/%.o: %.c $(CLIENT_HEADERS)
	@mkdir -p $(dir $@)
	$(CLIENT_CC) $(CLIENT_SAN_CFLAGS) -Isrc/client -c $< -o $@

$(CLIENT_BUILD)/libparasync.map: src/client/libparasync.map.in include/para_sync/client.h
	@mkdir -p $(dir $@)
	sed -e 's|@ABI@|$(CLIENT_ABI)|' $< > $@

$(CLIENT_SO): $(CLIENT_LIB_OBJS) $(CLIENT_BUILD)/libparasync.map
	$(CLIENT_CC) -shared -Wl,-soname,libparasync.so.$(CLIENT_ABI) \
		-Wl,--version-script=$(CLIENT_BUILD)/libparasync.map -o $@ $(CLIENT_LIB_OBJS) $(CLIENT_DEPS_LIBS)

$(CLIENT_BUILD)/libparasync.so: $(CLIENT_SO)
	ln -sf libparasync.so.$(CLIENT_ABI) $@

$(CLIENT_A): $(CLIENT_LIB_OBJS)
	rm -f $@
	ar rcs $@ $(CLIENT_LIB_OBJS)

$(CLIENT_PC): src/client/libparasync.pc.in
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(CLIENT_PREFIX)|' -e 's|@LIBDIR@|$(CLIENT_LIBDIR)|' \
		-e 's|@INCLUDEDIR@|$(CLIENT_INCLUDEDIR)|' -e 's|@VERSION@|$(CLIENT_VERSION)|' $< > $@

# para-sync-watch, a program of its own in watch/: it sees libparasync only
# as an application does, through include/para_sync/ (no -Isrc/client) and
# the shared library's exported psync_* symbols.  It runs from build/ (the
# library next to it, $ORIGIN) and once installed (CLIENT_LIBDIR).
CLIENT_WATCH_SRCS := watch/watch.c watch/watch_json.c watch/watch_view.c watch/watch_screen.c
CLIENT_WATCH_HEADERS := watch/watch_json.h watch/watch_view.h watch/watch_screen.h

$(CLIENT_WATCH): $(CLIENT_WATCH_SRCS) $(CLIENT_WATCH_HEADERS) $(CLIENT_SO) $(CLIENT_BUILD)/libparasync.so \
		include/para_sync/client.h include/para_sync/envelope.h
	$(CLIENT_CC) $(CLIENT_CFLAGS) -Iwatch -o $@ $(CLIENT_WATCH_SRCS) \
		-L$(CLIENT_BUILD) -Wl,-rpath,'$$ORIGIN' -Wl,-rpath,'$(CLIENT_LIBDIR)' -lparasync \
		$(CLIENT_DEPS_LIBS) -lm

# Tests: against the static library; the example against the shared one.
$(CLIENT_BUILD)/test/%: test/client/%.c test/client/harness.h $(CLIENT_A)
	@mkdir -p $(dir $@)
	$(CLIENT_CC) $(CLIENT_CFLAGS) -Isrc/client -o $@ $< $(CLIENT_A) $(CLIENT_DEPS_LIBS) $(CLIENT_TEST_LDFLAGS)

# test_alloc counts every allocation the (static) library makes
$(CLIENT_BUILD)/test/test_alloc $(CLIENT_BUILD)/san/test/test_alloc: \
	CLIENT_TEST_LDFLAGS = -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc

$(CLIENT_BUILD)/san/test/%: test/client/%.c test/client/harness.h $(CLIENT_SAN_OBJS)
	@mkdir -p $(dir $@)
	$(CLIENT_CC) $(CLIENT_SAN_CFLAGS) -Isrc/client -o $@ $< $(CLIENT_SAN_OBJS) $(CLIENT_DEPS_LIBS) $(CLIENT_TEST_LDFLAGS)

# para-sync-watch's view model, tested on its own (it is not in the library)
$(CLIENT_BUILD)/test/test_watch_view: test/client/test_watch_view.c test/client/harness.h \
		watch/watch_view.c watch/watch_view.h $(CLIENT_A)
	@mkdir -p $(dir $@)
	$(CLIENT_CC) $(CLIENT_CFLAGS) -Iwatch -o $@ $< watch/watch_view.c $(CLIENT_A) $(CLIENT_DEPS_LIBS)

$(CLIENT_BUILD)/san/test/test_watch_view: test/client/test_watch_view.c test/client/harness.h \
		watch/watch_view.c watch/watch_view.h $(CLIENT_SAN_OBJS)
	@mkdir -p $(dir $@)
	$(CLIENT_CC) $(CLIENT_SAN_CFLAGS) -Iwatch -o $@ $< watch/watch_view.c $(CLIENT_SAN_OBJS) $(CLIENT_DEPS_LIBS)

$(CLIENT_BUILD)/test/cxx_header: test/client/cxx_header.cc $(CLIENT_A) $(CLIENT_HEADERS)
	@mkdir -p $(dir $@)
	$(CLIENT_CXX) -std=c++17 -Wall -Wextra -Werror -Iinclude -o $@ $< $(CLIENT_A) $(CLIENT_DEPS_LIBS)

# The example program is the C block of docs/client.md between its
# "example:begin" and "example:end" markers: the doc is what gets compiled.
$(CLIENT_BUILD)/example-client.c: docs/client.md
	@mkdir -p $(dir $@)
	awk '/<!-- example:begin -->/ {on = 1; next} /<!-- example:end -->/ {on = 0} \
		on && !/^```/' $< > $@
	@test -s $@ || { echo "no example block in $<" >&2; rm -f $@; exit 1; }

# The collection example, the same way (its own markers).
$(CLIENT_BUILD)/example-collection.c: docs/client.md
	@mkdir -p $(dir $@)
	awk '/<!-- collection-example:begin -->/ {on = 1; next} /<!-- collection-example:end -->/ {on = 0} \
		on && !/^```/' $< > $@
	@test -s $@ || { echo "no collection example block in $<" >&2; rm -f $@; exit 1; }

$(CLIENT_BUILD)/example-collection: $(CLIENT_BUILD)/example-collection.c $(CLIENT_SO) $(CLIENT_BUILD)/libparasync.so
	$(CLIENT_CC) $(CLIENT_CFLAGS) -o $@ $< -L$(CLIENT_BUILD) -Wl,-rpath,'$$ORIGIN' -lparasync

$(CLIENT_EXAMPLE): $(CLIENT_BUILD)/example-client.c $(CLIENT_SO) $(CLIENT_BUILD)/libparasync.so
	$(CLIENT_CC) $(CLIENT_CFLAGS) -o $@ $< -L$(CLIENT_BUILD) -Wl,-rpath,'$$ORIGIN' -lparasync \
		$(shell pkg-config --libs msgpack)

$(CLIENT_BUILD)/tsan/test/test_stress: test/client/test_stress.c test/client/harness.h $(CLIENT_LIB_SRCS) $(CLIENT_HEADERS)
	@mkdir -p $(dir $@)
	$(CLIENT_CC) -std=gnu11 -O1 -g -D_GNU_SOURCE -Iinclude -Isrc/client $(CLIENT_WARN) $(CLIENT_DEPS_CFLAGS) \
		-fsanitize=thread -o $@ $< $(CLIENT_LIB_SRCS) $(CLIENT_DEPS_LIBS)

$(CLIENT_BUILD)/fuzz/fuzz_decode: test/fuzz/fuzz_decode.c src/common/envelope.c src/common/key_escape.c include/para_sync/envelope.h
	@mkdir -p $(dir $@)
	$(CLIENT_FUZZ_CC) -g -O1 -Iinclude $(CLIENT_DEPS_CFLAGS) -fsanitize=fuzzer,address,undefined \
		-o $@ test/fuzz/fuzz_decode.c src/common/envelope.c src/common/key_escape.c $(CLIENT_DEPS_LIBS)

client-fuzz: $(CLIENT_BUILD)/fuzz/fuzz_decode
	@mkdir -p $(CLIENT_BUILD)/fuzz/corpus
	$(CLIENT_BUILD)/fuzz/fuzz_decode -max_total_time=$(CLIENT_FUZZ_SECONDS) -max_len=4096 \
		-artifact_prefix=$(CLIENT_BUILD)/fuzz/ $(CLIENT_BUILD)/fuzz/corpus test/fuzz/corpus

client-check: client $(CLIENT_TEST_BINS) $(CLIENT_SAN_BINS) $(CLIENT_BUILD)/tsan/test/test_stress \
		$(CLIENT_BUILD)/test/cxx_header \
		$(CLIENT_EXAMPLE) $(CLIENT_BUILD)/example-collection $(CLIENT_BUILD)/fuzz/fuzz_decode
	CLIENT_BUILD=$(CLIENT_BUILD) CLIENT_FUZZ_RUNS=$(CLIENT_FUZZ_RUNS) \
		CLIENT_UNIT_TESTS="$(CLIENT_UNIT_TESTS)" CLIENT_LIVE_TESTS="$(CLIENT_LIVE_TESTS)" \
		test/client/run-tests

client-install: client
	install -d $(DESTDIR)$(CLIENT_LIBDIR)/pkgconfig $(DESTDIR)$(CLIENT_INCLUDEDIR)/para_sync $(DESTDIR)$(CLIENT_BINDIR)
	install -m 644 include/para_sync/client.h include/para_sync/envelope.h include/para_sync/key.h \
		$(DESTDIR)$(CLIENT_INCLUDEDIR)/para_sync/
	install -m 755 $(CLIENT_SO) $(DESTDIR)$(CLIENT_LIBDIR)/
	ln -sf libparasync.so.$(CLIENT_ABI) $(DESTDIR)$(CLIENT_LIBDIR)/libparasync.so
	install -m 644 $(CLIENT_A) $(DESTDIR)$(CLIENT_LIBDIR)/
	install -m 644 $(CLIENT_PC) $(DESTDIR)$(CLIENT_LIBDIR)/pkgconfig/libparasync.pc
	install -m 755 $(CLIENT_WATCH) $(DESTDIR)$(CLIENT_BINDIR)/
	if [ -z "$(DESTDIR)" ]; then ldconfig; fi

$(CLIENT_BUILD)/bench/client_bench: bench/client_bench.c $(CLIENT_A)
	@mkdir -p $(dir $@)
	$(CLIENT_CC) $(CLIENT_CFLAGS) -O3 -o $@ $< $(CLIENT_A) $(CLIENT_DEPS_LIBS)

client-bench: $(CLIENT_BUILD)/bench/client_bench
	bench/client-bench $(CLIENT_BUILD)/bench/client_bench

client-clean:
	rm -rf $(CLIENT_BUILD)/obj $(CLIENT_BUILD)/san $(CLIENT_BUILD)/tsan $(CLIENT_BUILD)/test $(CLIENT_BUILD)/fuzz \
		$(CLIENT_BUILD)/bench $(CLIENT_BUILD)/libparasync.map $(CLIENT_BUILD)/example-client.c $(CLIENT_BUILD)/example-collection* $(CLIENT_BUILD)/libparasync* $(CLIENT_WATCH) $(CLIENT_EXAMPLE)

# TAP tests that follow tables with libparasync use a small client.
PSYNC_FOLLOW := test/tools/psync_follow
$(PSYNC_FOLLOW): test/tools/psync_follow.c $(CLIENT_A)
	$(CLIENT_CC) $(CLIENT_CFLAGS) -o $@ $< $(CLIENT_A) $(CLIENT_DEPS_LIBS)
installcheck: $(PSYNC_FOLLOW)
EXTRA_CLEAN += $(PSYNC_FOLLOW)
