/*
 * ddl_guard.h — internal interface of the DDL guard's files (ddl_guard.c,
 * ddl_guard_start.c, ddl_guard_types.c, ddl_guard_drop.c,
 * ddl_guard_alter.c; see ddl_guard.c for what the guard does).  Nothing
 * outside them uses it.
 */
#ifndef PARA_SYNC_DDL_GUARD_H
#define PARA_SYNC_DDL_GUARD_H

#include "para_sync.h"

#include "nodes/parsenodes.h"

#define UNSYNC_HINT "Call para_sync.unsync_table() first, make the change, then tag the table again with para_sync.sync_table()."

/* ---- ddl_guard.c: what the events share */

extern Oid	ddl_guard_namespace(void);
extern bool ddl_guard_names_contain(ArrayType *names, const char *column);
extern ArrayType *ddl_guard_names_replace(ArrayType *names, const char *old,
										  const char *new_name);
extern void ddl_guard_bump_schema_version(Oid relid, Registration *reg);
extern List *ddl_guard_with_descendants(Oid relid, bool recurse);
extern bool ddl_guard_primary_key_of(Oid relid, char **conname, Oid *index,
									 bool *deferrable);
extern bool ddl_guard_is_para_sync_trigger(Oid relid, const char *name);
extern Oid	ddl_guard_resolve(RangeVar *rv);
extern void ddl_guard_refuse_trigger_change(Oid relid, const char *trigger,
											const char *what) pg_attribute_noreturn();
extern void ddl_guard_refuse_key_change(Oid relid, const char *what) pg_attribute_noreturn();

/* ---- ddl_guard_start.c: ddl_command_start (caller is connected to SPI) */

extern void ddl_guard_command_start(Node *parsetree);

/* ---- ddl_guard_types.c: ALTER TYPE (ddl_command_start) */

extern void ddl_guard_enum_rename(AlterEnumStmt *stmt);
extern void ddl_guard_alter_composite(AlterTableStmt *stmt);
extern void ddl_guard_refuse_typed_table_change(Oid type);

/* ---- ddl_guard_drop.c: DROP statements and sql_drop */

extern void ddl_guard_drop(DropStmt *stmt);
extern void ddl_guard_sql_drop(void);

/* ---- ddl_guard_alter.c: ddl_command_end of ALTER TABLE */

extern void ddl_guard_command_end(void);

#endif							/* PARA_SYNC_DDL_GUARD_H */
