/*
 * publisher_standby.c — para_sync.standby_slots: the publisher publishes a
 * batch only once the standbys behind the listed physical replication slots
 * have flushed its WAL, so that a promoted standby never hands out a
 * sequence the old primary already published.
 *
 * A physical slot's restart_lsn is the flush position its standby last
 * reported (the walsender advances it on every standby reply, with or
 * without hot_standby_feedback), so "confirmed" means restart_lsn >= the
 * batch's WAL end.  Reads the slots in shared memory; writers never wait.
 */
#include "para_sync.h"
#include "publisher.h"

#include "replication/slot.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/varlena.h"

/* GUC check hook: a list of valid slot names. */
bool
publisher_standby_check(char **newval, void **extra, GucSource source)
{
	char	   *raw = pstrdup(*newval);
	List	   *names;
	ListCell   *lc;
	bool		ok = true;

	if (!SplitIdentifierString(raw, ',', &names))
	{
		GUC_check_errdetail("List syntax is invalid.");
		ok = false;
	}
	else
	{
		foreach(lc, names)
		{
			char	   *name = lfirst(lc);

			if (strlen(name) >= NAMEDATALEN ||
				strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(name))
			{
				GUC_check_errdetail("\"%s\" is not a valid replication slot name.", name);
				ok = false;
				break;
			}
		}
		list_free(names);
	}
	pfree(raw);
	return ok;
}

/* One slot: STANDBY_CONFIRMED, or why not in reason. */
static StandbyWait
check_slot(const char *name, XLogRecPtr upto, char *reason, size_t len)
{
	for (int i = 0; i < max_replication_slots; i++)
	{
		ReplicationSlot *slot = &ReplicationSlotCtl->replication_slots[i];
		XLogRecPtr	flushed;
		pid_t		active_pid;
		bool		logical;

		if (!slot->in_use || strcmp(NameStr(slot->data.name), name) != 0)
			continue;
		SpinLockAcquire(&slot->mutex);
		flushed = slot->data.restart_lsn;
		active_pid = slot->active_pid;
		logical = OidIsValid(slot->data.database);
		SpinLockRelease(&slot->mutex);

		if (logical)
		{
			snprintf(reason, len, "para_sync.standby_slots lists \"%s\", a logical slot; only physical slots can be waited for", name);
			return STANDBY_PROBLEM;
		}
		if (flushed != InvalidXLogRecPtr && flushed >= upto)
			return STANDBY_CONFIRMED;
		if (active_pid == 0)
		{
			snprintf(reason, len, "standby slot \"%s\" is inactive (no standby connected) and has not confirmed WAL %X/%X",
					 name, LSN_FORMAT_ARGS(upto));
			return STANDBY_PROBLEM;
		}
		snprintf(reason, len, "waiting for standby slot \"%s\" to confirm WAL %X/%X (flushed %X/%X)",
				 name, LSN_FORMAT_ARGS(upto), LSN_FORMAT_ARGS(flushed));
		return STANDBY_WAITING;
	}
	snprintf(reason, len, "standby slot \"%s\" of para_sync.standby_slots does not exist", name);
	return STANDBY_PROBLEM;
}

/*
 * Have all slots of para_sync.standby_slots confirmed WAL up to upto?  When
 * not, reason names the first slot that holds publishing back.
 */
StandbyWait
publisher_standby_confirmed(XLogRecPtr upto, char *reason, size_t len)
{
	char	   *raw;
	List	   *names;
	ListCell   *lc;
	StandbyWait result = STANDBY_CONFIRMED;

	if (psync_standby_slots[0] == '\0')
		return STANDBY_CONFIRMED;
	raw = pstrdup(psync_standby_slots);
	if (!SplitIdentifierString(raw, ',', &names))
		elog(ERROR, "para_sync.standby_slots is not a valid list");	/* check hook passed */
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	foreach(lc, names)
	{
		result = check_slot(lfirst(lc), upto, reason, len);
		if (result != STANDBY_CONFIRMED)
			break;
	}
	LWLockRelease(ReplicationSlotControlLock);
	list_free(names);
	pfree(raw);
	return result;
}
