/*
 * reconcile.c — the one decision function of the client reconciliation
 * rules (docs/protocol.md "Client reconciliation"), shared by replicas and
 * collection members; see reconcile.h.
 */
#include "reconcile.h"

#include <stddef.h>

bool
reconcile_well_formed(const psync_envelope *env)
{
	return env->sequence <= PSYNC_MAX_SEQUENCE &&
		(env->schema_version != NULL || env->schema_version_len == 0) &&
		(!env->has_value || (env->value != NULL && env->value_len > 0));
}

/* Rules 2-5: where env's sequence stands against the object's. */
static reconcile_outcome
by_sequence(const reconcile_state *s, const psync_envelope *env, reconcile_source src)
{
	uint64_t	cur;

	if (src != RECONCILE_RECEIPT || !s->initialized || s->sequence < 0)
		return RECONCILE_BASELINE;
	cur = (uint64_t) s->sequence;
	if (env->sequence <= cur)
		return RECONCILE_STALE;
	if (env->sequence == cur + 1)
		return RECONCILE_NEXT;
	return RECONCILE_GAP;
}

reconcile_outcome
reconcile_decide(const reconcile_state *s, const psync_envelope *env,
				 reconcile_source src, bool for_object,
				 reconcile_parse_fn parse, void *ctx)
{
	/* 7: not an envelope of this object (a table event is not one either) */
	if (!for_object || !reconcile_well_formed(env) || env->op == PSYNC_OP_RELOAD)
		return RECONCILE_BAD_MESSAGE;
	/* 6: a refetch notice; a snapshot must carry a value (1, no loop) */
	if (env->op == PSYNC_OP_REFETCH)
	{
		if (src == RECONCILE_REFETCH)
			return RECONCILE_PARSE_ERROR;
		if (src == RECONCILE_RECEIPT && s->initialized && s->sequence >= 0 &&
			env->sequence <= (uint64_t) s->sequence)
			return RECONCILE_STALE;
		return RECONCILE_REFETCH_NOTICE;
	}
	/* 1: the parse gate, before any sequence rule */
	if (!parse(ctx, env))
		return RECONCILE_PARSE_ERROR;
	return by_sequence(s, env, src);
}
