/*
 * para_sync.c — module entry point: magic block and _PG_init.
 *
 * Defines every para_sync.* setting first (settings.c), then registers the
 * per-backend caches' invalidation callbacks and the utility hook that keeps
 * sync-name owners in step with their roles (sync_names.c).  The publisher
 * (background worker) registers its worker from here too when the library
 * is in shared_preload_libraries.  Last, the "para_sync." prefix
 * is reserved: a setting of that prefix that no module defines (a typo such
 * as para_sync.batch_szie in postgresql.conf) is refused, not kept silently.
 */
#include "para_sync.h"

#include "utils/guc.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	settings_init();
	table_cache_init();
	registry_init();
	catalog_init();
	outbox_append_init();
	outbox_batch_init();
	seq_cache_init();
	sync_names_init();
	publisher_init();
	MarkGUCPrefixReserved("para_sync");
}
