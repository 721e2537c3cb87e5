/*
 * para_sync.h — declarations shared by the extension's C files.
 *
 * Each subsystem lives in its own file; this header is the table of
 * contents between them.
 */
#ifndef PARA_SYNC_H
#define PARA_SYNC_H

#include "postgres.h"

#include "access/attnum.h"
#include "access/skey.h"
#include "access/htup.h"
#include "access/transam.h"
#include "access/tupdesc.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "storage/lockdefs.h"
#include "utils/relcache.h"
#include "utils/snapshot.h"

#include "para_sync/envelope.h"
#include "para_sync/key.h"

/* every server-side MessagePack writer appends through mp_sink_stringinfo() */
#include "mp_sink.h"

/* ---- settings.c: every para_sync.* setting, defined by _PG_init */

extern void settings_init(void);

/* ---- table_cache.c: what the capture trigger and snapshot() know of a table */

/* How one column's values become MessagePack (docs/protocol.md). */
typedef enum ValueKind
{
	VK_INT,						/* int2, int4, int8 */
	VK_OID,
	VK_FLOAT4,
	VK_FLOAT8,
	VK_BOOL,
	VK_TEXT,					/* text, varchar, bpchar, citext */
	VK_NAME,
	VK_BYTEA,
	VK_JSON,
	VK_JSONB,
	VK_TIMESTAMP,				/* timestamp and timestamptz */
	VK_ARRAY,
	VK_OUTPUT					/* anything else: the type's output function */
} ValueKind;

typedef struct ValueCodec
{
	ValueKind	kind;
	Oid			typid;			/* base type (domains resolved) */
	FmgrInfo	output;			/* for VK_OUTPUT (and numeric, uuid, ...) */
	/* arrays: how to walk elements */
	struct ValueCodec *element;
	int16		elmlen;
	bool		elmbyval;
	char		elmalign;
} ValueCodec;

typedef struct SyncedColumn
{
	AttrNumber	attnum;
	char	   *name;
	int			name_len;
	ValueCodec	codec;
} SyncedColumn;

typedef struct KeyColumn
{
	AttrNumber	attnum;
	Oid			typid;
	Oid			base_typid;		/* domains resolved, for canonical_text */
	FmgrInfo	output;
	Oid			input_fn;
	Oid			typioparam;
	Oid			eq_opr;			/* btree equality of the key's opclass */
} KeyColumn;

/*
 * Subject layouts (docs/protocol.md, "Subjects"), as stored in the outbox's
 * subject_layout column: 'k' publishes on <prefix>.<key>, 't' on
 * <prefix>.<sync name>.<key>.
 */
#define PSYNC_LAYOUT_KEY	'k'
#define PSYNC_LAYOUT_TABLE	't'

typedef struct SyncedTable
{
	Oid			relid;
	bool		valid;
	bool		parallel_only;	/* built in parallel mode: good for parallel mode only */
	char	   *sync_name;
	char	   *schema_version;
	char		subject_layout; /* PSYNC_LAYOUT_KEY or PSYNC_LAYOUT_TABLE */
	int			ncolumns;		/* synced (non-excluded, live) columns */
	SyncedColumn *columns;
	int			nkeys;			/* primary-key columns, index order */
	KeyColumn  *keys;
	int			nscope;			/* scope columns (set_scope()), 0: no scope */
	KeyColumn  *scope;
	void	   *snapshot_plan;	/* SPIPlanPtr, built on first snapshot() */
	void	   *page_plans[5];	/* SPIPlanPtrs of the page functions (snapshot_table.c) */
} SyncedTable;

extern void table_cache_init(void);
extern SyncedTable *table_cache_get(Relation rel);
extern void table_cache_use(void);
extern void table_cache_unuse(void);

/* ---- json_encode.c: json and jsonb → MessagePack (a leaf: calls no other module) */

struct msgpack_packer;
extern void json_encode_text(struct msgpack_packer *pk, const char *json, int len,
							 int depth);
extern void json_encode_jsonb(struct msgpack_packer *pk, Datum value, int depth);

/* ---- row_encode.c: datum → MessagePack (docs/protocol.md, "Value mapping") */

extern void row_encode_values(StringInfo buf, SyncedTable *table,
							  Datum *values, bool *nulls);

/* ---- canonical_text.c: setting-independent text of a datum (a leaf) */

extern char *canonical_text(Oid typid, Datum value, FmgrInfo *output);

/* ---- type_trust.c: facts about types, never taken from names */

extern bool type_trust_is_text_like(Oid base);
extern bool type_trust_prints_type(Oid typid, Oid target);
extern void type_trust_check_columns(Relation rel, ArrayType *excluded);
extern bool type_trust_key_ok(Relation rel, Relation index, int keyno);
extern void type_trust_check_key(Relation rel, Relation index, int keyno);
extern const char *type_trust_scope_problem(Oid typid, Oid collation);

/* ---- keys.c: object keys, the one home of a key's text */

extern void key_build(StringInfo key, SyncedTable *table,
					  Datum *values, bool *nulls);
extern bool key_build_legacy(StringInfo key, SyncedTable *table,
							 Datum *values, bool *nulls);
extern void key_parse(const char *key, SyncedTable *table, Datum *datums);
extern void key_refuse(const char *key, const char *detail) pg_attribute_noreturn();
extern char *key_column_text(const KeyColumn *col, Datum value);
extern void key_append_escaped(StringInfo buf, const char *text);
extern int	key_cmp(const char *a, int alen, const char *b, int blen);

/* ---- scope.c: a row's scope token (docs/protocol.md, "Scopes"), set_scope() */

extern bool scope_build(StringInfo scope, SyncedTable *table, Datum *values, bool *nulls);
extern void scope_load(SyncedTable *table, Relation rel, ArrayType *columns,
					   MemoryContext cxt);
extern void scope_parse(const char *token, SyncedTable *table, Relation rel,
						Datum *datums, bool *nulls);
extern void scope_guard_column(Oid relid, const char *column, const char *what);
extern void scope_follow_rename(Oid relid, const char *old, const char *new_name);

/* ---- catalog.c: acting as the extension owner */

/* Run internal statements as the extension owner, then switch back. */
typedef struct OwnerSwitch
{
	Oid			saved_user;
	int			saved_context;
} OwnerSwitch;
extern void catalog_become_owner(OwnerSwitch *sw);
extern void catalog_restore_user(const OwnerSwitch *sw);
extern int	catalog_execute_as_owner(const char *sql, int nargs, Oid *types,
									 Datum *args, const char *nulls);
extern void catalog_init(void);
extern Oid	catalog_relation_owner(Oid relid);

/* ---- outbox_append.c: sequences, the outbox's append and the counters */

/* para_sync's own tables and their primary keys (resolved once). */
typedef struct OutboxRelations
{
	Oid			outbox;
	Oid			outbox_pkey;
	Oid			counters;
	Oid			counters_pkey;
	bool		legacy_schema;	/* the 0.1 schema: ALTER EXTENSION UPDATE not run yet */
	bool		with_scope;		/* the outbox has its scope column (0.4) */
} OutboxRelations;
extern const OutboxRelations *outbox_relations(void);
extern void outbox_require_updated_schema(void);
extern Oid	outbox_resolved(void);

extern int64 outbox_last_sequence(const char *key, int key_len, bool latest);
extern int64 outbox_read_last_sequence(const char *key, int key_len, bool latest);
extern void outbox_check_last_sequence(const char *key, int key_len, int64 seq,
									   const char *source);
extern bool outbox_name_has_history(const char *sync_name);
extern void outbox_name_scankeys(const char *sync_name, ScanKey skeys);

/* ---- outbox_name_seqs.c: the last sequences of a sync name's keys, in one pass */

typedef struct OutboxNameSeqs OutboxNameSeqs;
extern OutboxNameSeqs *outbox_name_seqs_read(const char *sync_name, int64 max_keys);
extern int64 outbox_name_seqs_last(OutboxNameSeqs *m, const char *key, int len);
extern void outbox_name_seqs_appended(OutboxNameSeqs *m, const char *key, int len,
									  int64 seq);
extern void outbox_name_seqs_free(OutboxNameSeqs *m);
extern void outbox_last_sequences(int n, const char *const *keys,
								  const int *key_lens, int64 *seqs, bool latest);
extern void outbox_read_last_sequences(int n, const char *const *keys,
									   const int *key_lens, int64 *seqs, bool latest);
extern void outbox_append(const char *key, int key_len, int64 seq,
						  int64 txid, bytea *envelope, char layout,
						  const char *scope, HeapTuple holder);

/* One outbox row to write (outbox_append_rows()). */
typedef struct OutboxNewRow
{
	text	   *key;
	int64		seq;
	int64		txid;
	bytea	   *envelope;
	char		layout;
	const char *scope;			/* NULL: none */
	/* the creator of the version whose content it carries, or invalid */
	TransactionId holder_xmin;
	FullTransactionId holder_writer;	/* the same, widened */
	CommandId	cid;			/* the command the row is written under */
} OutboxNewRow;
extern void outbox_row_holder(OutboxNewRow *row, HeapTuple holder);
extern void outbox_append_rows(const OutboxNewRow *rows, int n);
extern FullTransactionId outbox_version_writer(HeapTuple tuple);
extern bool outbox_cached_last(const char *key, int key_len,
							   FullTransactionId writer, int64 *seq);
extern void outbox_cache_prefetch(const text *key);
extern void outbox_append_init(void);
extern void outbox_raise_counters(text **keys, int64 *seqs, int n);
/* para_sync.sequence_cache_check (settings.c) */
extern bool psync_sequence_cache_check;
extern int64 outbox_next_sequence(const char *key, int key_len,
								 HeapTuple replaced);

/* ---- outbox_batch.c: the capture trigger's envelopes, numbered and written as a set */

extern void outbox_batch_add(const char *key, int key_len, StringInfo value,
							 const char *schema_version, psync_op op, uint64 txid,
							 char layout, const char *scope, HeapTuple replaced,
							 HeapTuple holder);
extern void outbox_batch_flush(bool force);
extern int	outbox_batch_pending(const char *key, int key_len, CommandId below);
extern void outbox_batch_init(void);

/* ---- outbox_backlog.c: what waits in the outbox (the publisher's count: publisher.h) */

/* DROP EXTENSION: envelopes queued?  objects the counters number?  (in SPI) */
extern void outbox_backlog_at_drop(bool *queued, int64 *objects);

/* ---- seq_cache.c: shared-memory cache of each object's last sequence */

/* Which store an entry belongs to (database, outbox, counters' file). */
typedef struct SeqCacheTag
{
	Oid			db;
	Oid			outbox;
	Oid			counters_node;
} SeqCacheTag;

extern void seq_cache_init(void);
/* para_sync.sequence_cache_size, in entries (settings.c) */
extern int	psync_seq_cache_size;
extern bool seq_cache_lookup(const SeqCacheTag *tag, const char *key,
							 int key_len, FullTransactionId writer, int64 *seq);
extern void seq_cache_remember(const SeqCacheTag *tag, const char *key,
							   int key_len, FullTransactionId writer, int64 seq);
extern void seq_cache_prefetch(const SeqCacheTag *tag, const char *key, int key_len);
/* how many keys ahead a loop over many keys prefetches their buckets */
#define SEQ_CACHE_PREFETCH_AHEAD 8

/* ---- capture.c: the trigger's side of capture */

extern void capture_rekey(SyncedTable *table, StringInfo old_key,
						  Datum *values, bool *nulls);

/*
 * The next envelope of key into the outbox: an upsert of values, or a
 * delete (op; values then the row that leaves, whose scope it carries);
 * replaced, if not NULL, the row version removed (see capture.c).
 */
extern void capture_emit_change(SyncedTable *table, StringInfo key,
								Datum *values, bool *nulls, psync_op op,
								HeapTuple replaced);
extern int64 capture_emit_after(SyncedTable *table, StringInfo key,
								Datum *values, bool *nulls, psync_op op,
								int64 last_seq);

/* ---- capture_envelope.c: every envelope the server writes */

extern bytea *capture_envelope_build(const char *key, int key_len, StringInfo value,
							 const char *schema_version, uint64 sequence,
							 psync_op op, bool has_txid, uint64 txid);

extern bytea *capture_envelope_build_scoped(const char *key, int key_len,
											StringInfo value, const char *schema_version,
											uint64 sequence, psync_op op, bool has_txid,
											uint64 txid, const char *scope);

/* ---- table_event.c: one envelope for a whole table (column DDL) */

extern void table_event_reload(const char *sync_name, const char *schema_version,
							   char layout);

/* Set once a transaction wrote an envelope; the publisher wakes on commit (publisher_wake.c). */
extern bool para_sync_xact_wrote_envelopes;

/* ---- lifecycle.c: unsync, DROP TABLE and TRUNCATE retire every row */

extern void lifecycle_retire_rows(Relation rel);
extern void lifecycle_announce_rows(Relation rel);
extern void lifecycle_publish_rows(Relation rel);


/* ---- snapshot.c: snapshot(key), and row reading shared with snapshot_table.c */

struct _SPI_plan;
extern void snapshot_append_select(StringInfo sql, SyncedTable *table, Relation rel);
extern struct _SPI_plan *snapshot_keep_plan(const char *sql, int nargs, Oid *types);
extern void snapshot_tuple_values(SyncedTable *table, int natts, HeapTuple tuple,
								  TupleDesc desc, Datum *values, bool *nulls);

/* ---- registry.c: every statement on para_sync.tables and para_sync.sync_names */

extern void registry_init(void);

/* the writes of registry_write.c's SQL functions (in SPI) */
extern bool registry_relid_taken(Oid relid);
extern bool registry_name_taken(text *name);
extern void registry_insert(Oid relid, text *name, text *version, Datum excluded);
extern uint64 registry_set_version(Oid relid, text *version);
extern uint64 registry_set_layout(Oid relid, Datum layout);
extern uint64 registry_set_scope(Oid relid, Datum columns, bool isnull);
extern uint64 registry_delete(Oid relid);

/* The relids of every synced table, into *n.  Caller is connected to SPI. */
extern Oid *registry_synced_relids(uint64 *n);
extern bool registry_table_is_synced(Oid relid);
extern bool registry_table_is_synced_in(Oid relid, Snapshot snapshot);
extern bool registry_exists(void);
extern int64 registry_count(void);
extern Oid	registry_table_by_name(const char *sync_name, int len);

/* A table's registry row. */
typedef struct Registration
{
	char	   *schema_version;
	ArrayType  *excluded;		/* text[] */
	char	   *sync_name;
	char		layout;			/* PSYNC_LAYOUT_KEY or PSYNC_LAYOUT_TABLE */
	ArrayType  *scope_columns;	/* text[] of column names, or NULL: no scope */
} Registration;
/* the DDL guard's read, and the capture trigger's cache's (a fresh snapshot) */
extern Registration *registry_get(Oid relid);

/*
 * Calls fn for every synced table that still exists, opened with
 * AccessShareLock (closed after fn returns).  Caller is connected to SPI.
 */
typedef void (*registry_table_fn) (Relation rel, Registration *reg, void *arg);
extern void registry_foreach_synced(registry_table_fn fn, void *arg);
extern Registration *registry_lookup(Oid relid);
extern bool registry_has(Oid relid);
extern void registry_update(Oid relid, const char *schema_version,
							ArrayType *excluded);

/* A synced table among the objects an sql_drop event trigger's command dropped. */
typedef struct DroppedTable
{
	bool		original;		/* named by the command (not a dependent) */
	char	   *identity;		/* its object_identity */
	char	   *sync_name;
} DroppedTable;
extern List *registry_dropped_tables(void);

/* para_sync.sync_names (sync_names.c decides; these read and write) */
extern Oid	registry_sync_name_claim(const char *sync_name, Oid table_owner);
extern Oid	registry_sync_name_release(const char *sync_name);
extern bool registry_sync_name_in_use(const char *sync_name);
extern List *registry_sync_names_of_role(Oid role);
extern void registry_sync_names_reassign(ArrayType *roles, Oid new_owner);
extern void registry_sync_names_drop_owned(ArrayType *roles);

/* ---- registry_write.c: sync_table(), set_schema_version(), set_subject_layout(),
 * unsync_table() (SQL functions only) */

/* ---- registry_check.c: may this table be synced? */

extern void registry_check_owner(Relation rel);
extern ArrayType *registry_check_table(Relation rel, ArrayType *excluded);

/* ---- sync_names.c: a sync name stays bound to the role that claimed it */

extern void sync_names_claim(const char *sync_name, Oid table_owner);
extern void sync_names_init(void);

/* ---- publisher (publisher*.c; see publisher.h) */

/* Settings, commit wake-up, shared memory and the background worker. */
extern void publisher_init(void);

/* ---- partition.c: partitioned tables, synced by their root */

extern Oid	partition_synced_root(Oid relid);
extern Registration *partition_lookup(Oid relid, Oid *root);
extern List *partition_leaves(Oid relid, LOCKMODE lockmode);
extern void partition_check_syncable(Relation rel);
extern void partition_install_truncate_triggers(Oid relid);
extern void partition_drop_truncate_triggers(Oid relid);
extern void partition_truncate_leaves_without_trigger(Relation rel);

#endif							/* PARA_SYNC_H */
