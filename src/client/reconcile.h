/*
 * reconcile.h — the client reconciliation rules of docs/protocol.md
 * ("Client reconciliation"), written once for replicas (replica.c) and
 * collection members (collection_row.c).
 *
 * reconcile_decide() takes one object's state and one inbound envelope and
 * says which rule applies; the caller carries the outcome out (apply,
 * count, refetch) in its own way.  The parse gate (rule 1) runs inside it,
 * through the caller's parse function, at the protocol's place: after the
 * envelope's own checks (rules 7 and 6), before the sequence rules (2-5).
 */
#ifndef PSYNC_RECONCILE_H
#define PSYNC_RECONCILE_H

#include <stdbool.h>
#include <stdint.h>

#include "para_sync/envelope.h"

/* One object's state: the sequence of the value it holds. */
typedef struct reconcile_state
{
	bool		initialized;	/* it has a baseline (a value or a delete) */
	int64_t		sequence;		/* of that baseline; meaningless if not */
} reconcile_state;

/* Where an envelope comes from. */
typedef enum reconcile_source
{
	RECONCILE_SEED,				/* the replica's seed (hydration) */
	RECONCILE_RECEIPT,			/* received from the transport */
	RECONCILE_REFETCH			/* a refetch result (a snapshot) */
} reconcile_source;

/* The outcomes, numbered like the rules of docs/protocol.md. */
typedef enum reconcile_outcome
{
	RECONCILE_PARSE_ERROR = 1,	/* 1: value rejected; keep the current one,
								 * skew, refetch unless it came from one */
	RECONCILE_BASELINE = 2,		/* 2: apply as is, whatever its sequence */
	RECONCILE_NEXT = 3,			/* 3: sequence is current + 1: apply */
	RECONCILE_STALE = 4,		/* 4: sequence <= current: ignore */
	RECONCILE_GAP = 5,			/* 5: sequence > current + 1: refetch */
	RECONCILE_REFETCH_NOTICE = 6,	/* 6: op refetch, not stale: refetch */
	RECONCILE_BAD_MESSAGE = 7	/* 7: not an envelope of this object:
								 * count a parse error, refetch */
} reconcile_outcome;

/*
 * The parse gate: run the application's parser over env's value, keeping
 * the result in ctx; false when it rejects the value.
 */
typedef bool (*reconcile_parse_fn) (void *ctx, const psync_envelope *env);

/*
 * Decide what env does to an object in state s.  The caller has checked
 * that env is addressed to the object (for_object false: rule 7).  parse is
 * called at most once, and only when the outcome is 1, 2, 3, 4 or 5; a
 * parsed value is the caller's to apply (2, 3) or drop (4, 5).
 */
reconcile_outcome reconcile_decide(const reconcile_state *s, const psync_envelope *env,
								   reconcile_source src, bool for_object,
								   reconcile_parse_fn parse, void *ctx);

/*
 * The envelope's own consistency (the decoder's guarantees, re-checked):
 * a sequence in range, a schema_version and value that are there when
 * they say so.  False: rule 7.
 */
bool		reconcile_well_formed(const psync_envelope *env);

/* Whether an outcome changes the object's value (rules 2 and 3). */
static inline bool
reconcile_applies(reconcile_outcome o)
{
	return o == RECONCILE_BASELINE || o == RECONCILE_NEXT;
}

#endif							/* PSYNC_RECONCILE_H */
