/*
 * type_trust.c — what para_sync may assume about a column's type.
 *
 * Any role with CREATE on a schema can make a type called "citext", "text"
 * or "json" (an enum, a domain, a composite, a range), so nothing here looks
 * at a type's, function's or operator's name.  Decisions rest on catalog
 * facts only a superuser can create:
 *
 *   - built-in type OIDs (fixed at initdb);
 *   - a base type's I/O functions: a base type, and a function in language
 *     "internal", can only be created by a superuser.  A base type whose
 *     input and output functions ARE PostgreSQL's textin and textout (the
 *     same C functions, compared by address) is text on disk, whatever it is
 *     called.  That is how the citext extension's type is recognised;
 *   - the btree operator family of the primary-key index, compared by OID
 *     with the type's default one.
 *
 * Primary-key columns are further restricted to types whose equal values
 * (by the index's equality) have exactly one key text (keys.c renders it),
 * now and later: integers, oid, numeric, float4/8, bool, uuid, bytea, text,
 * varchar, char(n) and name under a deterministic collation, date, time,
 * timetz, timestamp, timestamptz, interval, and domains over these.
 * Everything else is refused when the table is tagged, and again at write
 * time should an ALTER TABLE bring such a key in later: case-insensitive
 * text (citext, non-deterministic collations: 'A' = 'a'), jsonb
 * ('1.0' = '1'), arrays, composites, ranges, custom operator classes, and
 * enums (ALTER TYPE ... RENAME VALUE would silently move every object keyed
 * by that label to a new key).
 *
 * Synced columns of any kind may not print the names of catalog objects
 * (regclass, regtype, regproc, regrole, ..., aclitem, also inside arrays,
 * domains, composites and ranges): their text follows DDL on another
 * object, which captures nothing.  Refused when the table is tagged and by
 * the DDL guard when ALTER TABLE adds or retypes such a column; a table
 * tagged with one under 0.2 stops the update to 0.3
 * (para_sync.refuse_catalog_name_columns(), run once by the update script).
 */
#include "para_sync.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "catalog/pg_type_d.h"
#include "utils/array.h"
#include "catalog/pg_am.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/typcache.h"
#include "commands/defrem.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

/* Does the function with OID fn run the built-in C function addr? */
static bool
function_is_builtin(Oid fn, PGFunction addr)
{
	FmgrInfo	finfo;

	if (!OidIsValid(fn))
		return false;
	fmgr_info(fn, &finfo);
	return finfo.fn_addr == addr;
}

/*
 * Is base (a type with domains resolved) text on disk?  True for text,
 * varchar and bpchar, and for any base type whose input and output
 * functions are PostgreSQL's own textin/textout (citext).  An enum, domain,
 * composite or range a user made under any name never qualifies.
 */
bool
type_trust_is_text_like(Oid base)
{
	HeapTuple	tup;
	Form_pg_type typ;
	bool		result;

	if (base == TEXTOID || base == VARCHAROID || base == BPCHAROID)
		return true;
	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(base));
	if (!HeapTupleIsValid(tup))
		return false;
	typ = (Form_pg_type) GETSTRUCT(tup);
	result = typ->typtype == TYPTYPE_BASE && typ->typlen == -1 &&
		typ->typalign == TYPALIGN_INT &&
		function_is_builtin(typ->typinput, textin) &&
		function_is_builtin(typ->typoutput, textout);
	ReleaseSysCache(tup);
	return result;
}

/* Key types with one text per value, for good: see the header. */
static bool
key_base_type_allowed(Oid base)
{
	switch (base)
	{
		case BOOLOID:
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case OIDOID:
		case NUMERICOID:
		case FLOAT4OID:
		case FLOAT8OID:
		case UUIDOID:
		case BYTEAOID:
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
		case NAMEOID:
		case DATEOID:
		case TIMEOID:
		case TIMETZOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
		case INTERVALOID:
			return true;
		default:
			return false;
	}
}

/*
 * Why key column keyno (0-based) of primary-key index `index` of rel cannot
 * key objects (equal values would not have exactly one key text), or NULL
 * when it can.
 */
static const char *
key_type_problem(Relation rel, Relation index, int keyno, Oid *typid)
{
	AttrNumber	attnum = index->rd_index->indkey.values[keyno];
	Oid			base;
	Oid			opclass;
	Oid			family;
	Oid			intype;
	Oid			collation = index->rd_indcollation[keyno];

	if (attnum <= 0)
		return "The primary key is on an expression.";
	*typid = TupleDescAttr(RelationGetDescr(rel), attnum - 1)->atttypid;
	base = getBaseType(*typid);
	if (type_is_enum(base))
		return "Renaming an enum label would move every object keyed by it to a new key.";
	if (!key_base_type_allowed(base))
		return "Equal values of this type can have different text forms, or it has no canonical text form, so one object could appear under several keys.";

	/* the index must compare with the type's own (default) equality */
	opclass = GetDefaultOpClass(base, BTREE_AM_OID);
	if (!OidIsValid(opclass))
		return "The type has no default btree operator class.";
	family = get_opclass_family(opclass);
	intype = get_opclass_input_type(opclass);
	if (get_opfamily_member(family, intype, intype, BTEqualStrategyNumber) !=
		get_opfamily_member(index->rd_opfamily[keyno], index->rd_opcintype[keyno],
							index->rd_opcintype[keyno], BTEqualStrategyNumber))
		return "The primary-key index uses an operator class whose equality is not the type's default one.";

	/* a non-deterministic collation makes different strings equal */
	if (OidIsValid(collation) && !get_collation_isdeterministic(collation))
		return psprintf("Its collation \"%s\" is non-deterministic: different strings compare equal.",
						get_collation_name(collation));
	return NULL;
}

/*
 * Why a column of type typid under collation can not be a scope column
 * (set_scope(), scope.c), or NULL when it can: the key types' rule, for a
 * column compared by its type's default equality (docs/protocol.md).
 */
const char *
type_trust_scope_problem(Oid typid, Oid collation)
{
	Oid			base = getBaseType(typid);

	if (type_is_enum(base))
		return "Renaming an enum label would move every row of the scope to another scope.";
	if (!key_base_type_allowed(base))
		return "Equal values of this type can have different text forms, or it has no canonical text form, so one scope could have several tokens.";
	if (OidIsValid(collation) && !get_collation_isdeterministic(collation))
		return psprintf("Its collation \"%s\" is non-deterministic: different strings compare equal.",
						get_collation_name(collation));
	return NULL;
}

/* Can key column keyno of primary-key index `index` of rel key objects? */
bool
type_trust_key_ok(Relation rel, Relation index, int keyno)
{
	Oid			typid;

	return key_type_problem(rel, index, keyno, &typid) == NULL;
}

/* The same, as an error with what to do. */
void
type_trust_check_key(Relation rel, Relation index, int keyno)
{
	Oid			typid = InvalidOid;
	const char *problem = key_type_problem(rel, index, keyno, &typid);
	AttrNumber	attnum = index->rd_index->indkey.values[keyno];

	if (problem == NULL)
		return;
	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("primary key of table \"%s\" is on an expression",
						RelationGetRelationName(rel))));
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("primary-key column \"%s\" of table \"%s\" has type %s, which para_sync cannot key by",
					NameStr(TupleDescAttr(RelationGetDescr(rel), attnum - 1)->attname),
					RelationGetRelationName(rel), format_type_be(typid)),
			 errdetail("%s", problem),
			 errhint("Key synced tables by integer, numeric, text (deterministic collation), uuid, date/time, bytea or bool columns (a surrogate key, for example), or stop syncing the table with para_sync.unsync_table().")));
}

/* A match of type_prints_matching(): is base (domains resolved) one sought? */
typedef bool (*TypeMatch) (Oid base, Oid target);

static bool
is_target(Oid base, Oid target)
{
	return base == target;
}

/*
 * Do values of typid print a value of a type that match accepts: is it one
 * itself, or a domain, array, composite, range or multirange built on one
 * (at any depth)?
 */
static bool
type_prints_matching(Oid typid, TypeMatch match, Oid target)
{
	Oid			base;
	Oid			elem;
	char		typtype;

	check_stack_depth();
	base = getBaseType(typid);
	if (match(base, target))
		return true;
	elem = get_element_type(base);
	if (OidIsValid(elem))
		return type_prints_matching(elem, match, target);
	typtype = get_typtype(base);
	if (typtype == TYPTYPE_RANGE)
		return type_prints_matching(get_range_subtype(base), match, target);
	if (typtype == TYPTYPE_MULTIRANGE)
		return type_prints_matching(get_multirange_range(base), match, target);
	if (typtype == TYPTYPE_COMPOSITE)
	{
		TupleDesc	desc = lookup_rowtype_tupdesc(base, -1);
		bool		found = false;

		for (int i = 0; i < desc->natts && !found; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (!att->attisdropped)
				found = type_prints_matching(att->atttypid, match, target);
		}
		ReleaseTupleDesc(desc);
		return found;
	}
	return false;
}

/*
 * Does the text of values of type typid contain values of type `target`: is
 * it target itself, or a domain, array, composite, range or multirange built
 * on it (at any depth)?  A renamed enum label, or an attribute added to or
 * dropped from a composite type, changes such values' text.
 */
bool
type_trust_prints_type(Oid typid, Oid target)
{
	return type_prints_matching(typid, is_target, target);
}

/*
 * Is base one of the built-in types whose text is the name of a catalog
 * object, looked up when the value is printed: the object-identifier alias
 * types (regclass, regtype, regproc, ...) and aclitem (role names)?
 * Renaming or dropping the object changes such a value's text, and whoever
 * owns the object need not own the table that stores it.
 */
static bool
names_catalog_object(Oid base, Oid unused)
{
	switch (base)
	{
		case REGPROCOID:
		case REGPROCEDUREOID:
		case REGOPEROID:
		case REGOPERATOROID:
		case REGCLASSOID:
		case REGCOLLATIONOID:
		case REGTYPEOID:
		case REGROLEOID:
		case REGNAMESPACEOID:
		case REGCONFIGOID:
		case REGDICTIONARYOID:
		case ACLITEMOID:
			return true;
		default:
			return false;
	}
}

/*
 * Refuse the synced (not excluded) columns of rel whose values print the
 * names of catalog objects (names_catalog_object(), at any depth: arrays,
 * domains, composites, ranges): DDL on the named object would change
 * snapshot() with no envelope.  excluded: text[] of excluded column names.
 */
void
type_trust_check_columns(Relation rel, ArrayType *excluded)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Datum	   *names;
	bool	   *nulls;
	int			n;

	deconstruct_array(excluded, TEXTOID, -1, false, TYPALIGN_INT, &names, &nulls, &n);
	for (int a = 0; a < desc->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, a);
		bool		skip = att->attisdropped;

		for (int i = 0; i < n && !skip; i++)
			skip = !nulls[i] &&
				strcmp(TextDatumGetCString(names[i]), NameStr(att->attname)) == 0;
		if (skip || !type_prints_matching(att->atttypid, names_catalog_object, InvalidOid))
			continue;
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("column \"%s\" of table \"%s\" has type %s, whose values print the names of catalog objects",
						NameStr(att->attname), RelationGetRelationName(rel),
						format_type_be(att->atttypid)),
				 errdetail("Renaming or dropping the object a value names (a table, type, function, role, ...) changes the value's text without a row change, so replicas would keep the old text under the same sequence."),
				 errhint("Store the object's oid (type oid) or its name (type text) instead, or leave the column out with sync_table(..., exclude_columns => ...).")));
	}
}

/* errcontext of refuse_catalog_name_columns(): which table, and why now */
static void
update_check_context(void *arg)
{
	errcontext("para_sync 0.3 refuses synced columns that print catalog names: change the column's type (ALTER TABLE ... ALTER COLUMN ... TYPE text USING ...), or untag table %s, then run ALTER EXTENSION para_sync UPDATE again",
			   (const char *) arg);
}

/* para_sync_refuse_catalog_name_columns() for one synced table */
static void
refuse_catalog_names_of(Relation rel, Registration *reg, void *arg)
{
	ErrorContextCallback callback;

	callback.callback = update_check_context;
	callback.arg = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
											  RelationGetRelationName(rel));
	callback.previous = error_context_stack;
	error_context_stack = &callback;
	type_trust_check_columns(rel, reg->excluded);
	error_context_stack = callback.previous;
}

PG_FUNCTION_INFO_V1(para_sync_refuse_catalog_name_columns);

/*
 * para_sync.refuse_catalog_name_columns(): the update to 0.3 stops at the
 * first synced table with a synced column whose values print catalog names
 * (tagged under 0.2, which allowed them).  Exists only while the update
 * script runs it.
 */
Datum
para_sync_refuse_catalog_name_columns(PG_FUNCTION_ARGS)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	registry_foreach_synced(refuse_catalog_names_of, NULL);
	SPI_finish();
	PG_RETURN_VOID();
}
