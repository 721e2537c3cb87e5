# para_sync — PGXS build of the extension.
#
#   make && make install        build and install the extension
#   make installcheck           pg_regress + isolation + TAP against PGHOST/PGPORT
#   test/run-all                every test (what .ci/run and the README call)

EXTENSION = para_sync
DATA = para_sync--0.1.sql para_sync--0.1--0.2.sql para_sync--0.2--0.3.sql para_sync--0.3--0.4.sql
MODULE_big = para_sync
OBJS = \
	src/common/envelope.o \
	src/common/key_escape.o \
	src/para_sync.o \
	src/settings.o \
	src/table_cache.o \
	src/type_trust.o \
	src/json_encode.o \
	src/canonical_text.o \
	src/keys.o \
	src/key_upgrade.o \
	src/row_encode.o \
	src/capture_envelope.o \
	src/catalog.o \
	src/outbox_append.o \
	src/outbox_name_seqs.o \
	src/outbox_batch.o \
	src/seq_cache.o \
	src/outbox_consume.o \
	src/outbox_backlog.o \
	src/outbox_vacuum.o \
	src/capture.o \
	src/table_event.o \
	src/snapshot.o \
	src/snapshot_table.o \
	src/registry.o \
	src/registry_write.o \
	src/registry_check.o \
	src/scope.o \
	src/sync_names.o \
	src/lifecycle.o \
	src/partition.o \
	src/envelope_json.o \
	src/publisher_status.o \
	src/publisher_wake.o \
	src/stat_tables.o \
	src/publisher_standby.o \
	src/publisher_nats.o \
	src/publisher_batch.o \
	src/publisher.o \
	src/publisher_worker.o \
	src/ddl_guard.o \
	src/ddl_guard_start.o \
	src/ddl_guard_types.o \
	src/ddl_guard_drop.o \
	src/ddl_guard_alter.o

# pg_regress reads test/sql/<name>.sql, isolation test/specs/<name>.spec; both
# compare with test/expected/<name>.out (results go to results/ and output_iso/).
REGRESS = tagging sequences bulk_capture envelope_types keys snapshot privileges outbox_consume ddl_guard lifecycle type_trust key_canon key_upgrade snapshot_table snapshot_page_hostile trust_review subject_layout sync_name_owners table_event settings comments partitions scopes
REGRESS_OPTS = --inputdir=test --load-extension=para_sync
ISOLATION = concurrent_writers bulk_writers late_commit serializable_writers excluded_rename schema_version_reload lifecycle_concurrency drop_while_tagging sequence_cache sequence_cache_nested partition_moves partition_races scope_moves
ISOLATION_OPTS = --inputdir=test --load-extension=para_sync
TAP_TESTS = 1

PG_CPPFLAGS = -I$(srcdir)/include -I$(srcdir)/src $(shell pkg-config --cflags msgpack libnats) -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare -Wno-cast-function-type
SHLIB_LINK = $(shell pkg-config --libs msgpack libnats)
# The compiler writes the headers each object includes into src/<name>.d
# next to src/<name>.o (-MMD; -MP adds an empty rule per header, so a
# removed header does not stop the build); they are included below, after
# PGXS.  PG_CFLAGS reaches the .o compile only, not the bitcode (.bc) one.
PG_CFLAGS = -MMD -MP
# Set before PGXS: its clean rule removes EXTRA_CLEAN only if it is defined
# by then (the += further down add to it).
EXTRA_CLEAN = $(OBJS:.o=.d)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Export only what PostgreSQL looks up: _PG_init, the magic block, the
# worker's entry and each C function an install or upgrade script names
# (with its pg_finfo_ record).  PostgreSQL loads libraries RTLD_GLOBAL, so
# any other global name could clash with another library's.  The list is
# made from the scripts; test/t/004_exports.pl checks the installed library.
EXPORTS_MAP = para_sync.exports
$(EXPORTS_MAP): $(DATA)
	{ echo '{ global: _PG_init; Pg_magic_func; para_sync_worker_main;'; \
	  sed -n "s/.*'MODULE_PATHNAME', *'\([A-Za-z0-9_]*\)'.*/\1/p" $(DATA) | sort -u | \
	  sed 's/.*/  &; pg_finfo_&;/'; \
	  echo '  local: *; };'; } >$@
$(shlib): $(EXPORTS_MAP)
SHLIB_LINK += -Wl,--version-script=$(EXPORTS_MAP)
EXTRA_CLEAN += $(EXPORTS_MAP)

# Each object depends on the headers it includes (PG_CFLAGS' -MMD -MP above).
-include $(OBJS:.o=.d)

# TAP tests live in test/t (PGXS looks in ./t by default).
PROVE_TESTS = test/t/*.pl

# The publisher's TAP tests and bench use a small NATS subscriber.
PSYNC_SUB = test/tools/psync_sub
$(PSYNC_SUB): test/tools/psync_sub.c
	$(CC) -O2 -Wall -Wextra -Wno-unused-parameter -Werror -o $@ $< $(shell pkg-config --cflags --libs libnats msgpack)
installcheck: $(PSYNC_SUB)
EXTRA_CLEAN += $(PSYNC_SUB)

-include client.mk
