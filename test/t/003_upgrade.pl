# The upgrade path.  A database made by para_sync 0.1 (test/t/data/
# upgrade_0.1.sql: synced tables with single and composite keys and an
# excluded column, an untagged table, consumed keys in the counters and a
# backlog in the outbox) is
#  - loaded at version 0.1 and brought up with ALTER EXTENSION UPDATE, and
#  - restored from its dump, which creates the extension at the default
#    version.
# Either way nothing is lost (registry, backlog, every key's sequence),
# capture continues without a gap, and the extension's objects are exactly
# those of a fresh CREATE EXTENSION (compared by a catalog listing free of
# oids), as are the registry and the triggers of tables tagged before.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $fixture = "$ENV{TESTDIR}/test/t/data/upgrade_0.1.sql";
my $dump_01 = slurp_file($fixture);
# owned by whoever runs the test, not by the role that made the dump
$dump_01 =~ s/^ALTER \w+ \S+ OWNER TO postgres;$//mg;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
# the publisher must not drain the outboxes this test compares
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'para_sync'
para_sync.nats_url = 'nats://127.0.0.1:1'
para_sync.sequence_cache_check = on
});
$node->start;

my $default_version = $node->safe_psql('postgres',
	q{SELECT default_version FROM pg_available_extensions WHERE name = 'para_sync'});

sub run_script
{
	my ($db, $sql, $name) = @_;
	my $file = $node->basedir . "/$db.sql";
	open my $fh, '>', $file or die "$file: $!";
	print $fh $sql;
	close $fh;
	command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr($db), '-f', $file ],
		$name);
}

# Everything about the extension's objects that an upgrade script could get
# wrong, one line per fact, without oids: members, definitions of functions,
# columns, constraints, indexes, views, triggers, policies, sequences,
# types and event triggers, owners, ACLs (also the initial ones that
# pg_dump relies on), comments, and the extension's configuration tables.
my $objects_sql = q{
WITH ext AS (SELECT e.* FROM pg_catalog.pg_extension e WHERE e.extname = 'para_sync'),
members AS (
	SELECT d.classid, d.objid, d.objsubid FROM pg_catalog.pg_depend d, ext
	 WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass
	   AND d.refobjid = ext.oid AND d.deptype = 'e'),
rels AS (
	SELECT c.* FROM pg_catalog.pg_class c JOIN members m
	    ON m.classid = 'pg_catalog.pg_class'::regclass AND m.objid = c.oid),
lines(line) AS (
	SELECT 'member ' || pg_catalog.pg_describe_object(classid, objid, objsubid) FROM members
	UNION ALL
	SELECT 'extension version=' || e.extversion || ' schema=' || e.extnamespace::regnamespace
	    || ' relocatable=' || e.extrelocatable || ' owner=' || pg_catalog.pg_get_userbyid(e.extowner)
	    || ' config=' || coalesce((SELECT pg_catalog.string_agg(u.c::regclass::text || ' where ' || u.cond, ', '
	                                   ORDER BY u.c::regclass::text)
	                                 FROM unnest(e.extconfig, e.extcondition) AS u(c, cond)), '')
	    || ' comment=' || coalesce(pg_catalog.obj_description(e.oid, 'pg_extension'), '')
	  FROM ext e
	UNION ALL
	SELECT 'schema ' || n.nspname || ' owner=' || pg_catalog.pg_get_userbyid(n.nspowner)
	    || ' acl=' || coalesce(n.nspacl::text, 'default')
	    || ' comment=' || coalesce(pg_catalog.obj_description(n.oid, 'pg_namespace'), '')
	  FROM pg_catalog.pg_namespace n, ext WHERE n.oid = ext.extnamespace
	UNION ALL
	SELECT 'comment ' || pg_catalog.pg_describe_object(d.classoid, d.objoid, d.objsubid) || ': ' || d.description
	  FROM pg_catalog.pg_description d JOIN members m ON m.classid = d.classoid AND m.objid = d.objoid
	UNION ALL
	SELECT 'initprivs ' || pg_catalog.pg_describe_object(i.classoid, i.objoid, i.objsubid) || ' '
	    || i.privtype::text || ' ' || i.initprivs::text
	  FROM pg_catalog.pg_init_privs i JOIN members m ON m.classid = i.classoid AND m.objid = i.objoid
	UNION ALL
	SELECT 'function ' || p.oid::regprocedure || ' owner=' || pg_catalog.pg_get_userbyid(p.proowner)
	    || ' acl=' || coalesce(p.proacl::text, 'default') || ' | '
	    || CASE WHEN p.prokind = 'a' THEN 'aggregate' ELSE pg_catalog.pg_get_functiondef(p.oid) END
	  FROM pg_catalog.pg_proc p JOIN members m
	    ON m.classid = 'pg_catalog.pg_proc'::regclass AND m.objid = p.oid
	UNION ALL
	SELECT 'relation ' || c.oid::regclass || ' kind=' || c.relkind::text || ' persistence=' || c.relpersistence::text
	    || ' owner=' || pg_catalog.pg_get_userbyid(c.relowner)
	    || ' acl=' || coalesce(c.relacl::text, 'default') || ' options=' || coalesce(c.reloptions::text, '')
	    || ' rls=' || c.relrowsecurity || '/' || c.relforcerowsecurity || ' replident=' || c.relreplident::text
	    || ' am=' || coalesce((SELECT a.amname FROM pg_catalog.pg_am a WHERE a.oid = c.relam), '')
	  FROM rels c
	UNION ALL
	SELECT 'column ' || c.oid::regclass || ' #' || a.attnum || ' ' || pg_catalog.quote_ident(a.attname)
	    || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod)
	    || ' notnull=' || a.attnotnull || ' identity=' || a.attidentity::text || ' generated=' || a.attgenerated::text
	    || ' default=' || coalesce(pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), '')
	    || ' collation=' || coalesce((SELECT co.collname FROM pg_catalog.pg_collation co
	                                   WHERE co.oid = a.attcollation), '')
	    || ' storage=' || a.attstorage::text || ' acl=' || coalesce(a.attacl::text, '')
	  FROM rels c JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
	  LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
	 WHERE a.attnum > 0 AND NOT a.attisdropped
	UNION ALL
	SELECT 'constraint ' || co.conrelid::regclass || ' ' || co.conname || ' '
	    || pg_catalog.pg_get_constraintdef(co.oid) || ' deferrable=' || co.condeferrable
	  FROM pg_catalog.pg_constraint co JOIN rels c ON c.oid = co.conrelid
	UNION ALL
	SELECT 'index ' || pg_catalog.pg_get_indexdef(i.indexrelid)
	  FROM pg_catalog.pg_index i JOIN rels c ON c.oid = i.indrelid
	UNION ALL
	SELECT 'view ' || c.oid::regclass || ' ' || pg_catalog.pg_get_viewdef(c.oid)
	  FROM rels c WHERE c.relkind IN ('v', 'm')
	UNION ALL
	SELECT 'trigger ' || pg_catalog.pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
	  FROM pg_catalog.pg_trigger t JOIN rels c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal
	UNION ALL
	SELECT 'rule ' || pg_catalog.pg_get_ruledef(r.oid)
	  FROM pg_catalog.pg_rewrite r JOIN rels c ON c.oid = r.ev_class WHERE r.rulename <> '_RETURN'
	UNION ALL
	SELECT 'policy ' || po.polrelid::regclass || ' ' || po.polname || ' cmd=' || po.polcmd::text
	    || ' permissive=' || po.polpermissive || ' roles=' || po.polroles::regrole[]::text
	    || ' using=' || coalesce(pg_catalog.pg_get_expr(po.polqual, po.polrelid), '')
	    || ' check=' || coalesce(pg_catalog.pg_get_expr(po.polwithcheck, po.polrelid), '')
	  FROM pg_catalog.pg_policy po JOIN rels c ON c.oid = po.polrelid
	UNION ALL
	SELECT 'sequence ' || s.seqrelid::regclass || ' ' || s.seqtypid::regtype || ' start=' || s.seqstart
	    || ' inc=' || s.seqincrement || ' min=' || s.seqmin || ' max=' || s.seqmax || ' cycle=' || s.seqcycle
	  FROM pg_catalog.pg_sequence s JOIN rels c ON c.oid = s.seqrelid
	UNION ALL
	SELECT 'type ' || t.oid::regtype || ' kind=' || t.typtype::text
	    || ' base=' || coalesce(pg_catalog.format_type(NULLIF(t.typbasetype, 0), t.typtypmod), '')
	    || ' notnull=' || t.typnotnull || ' default=' || coalesce(t.typdefault, '')
	    || ' labels=' || coalesce((SELECT pg_catalog.string_agg(en.enumlabel, ',' ORDER BY en.enumsortorder)
	                                 FROM pg_catalog.pg_enum en WHERE en.enumtypid = t.oid), '')
	    || ' attributes=' || coalesce((SELECT pg_catalog.string_agg(a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod), ',' ORDER BY a.attnum)
	                                     FROM pg_catalog.pg_attribute a
	                                    WHERE t.typtype = 'c' AND a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '')
	    || ' checks=' || coalesce((SELECT pg_catalog.string_agg(pg_catalog.pg_get_constraintdef(co.oid), ',' ORDER BY co.conname)
	                                 FROM pg_catalog.pg_constraint co WHERE co.contypid = t.oid), '')
	    || ' owner=' || pg_catalog.pg_get_userbyid(t.typowner) || ' acl=' || coalesce(t.typacl::text, 'default')
	  FROM pg_catalog.pg_type t JOIN members m
	    ON m.classid = 'pg_catalog.pg_type'::regclass AND m.objid = t.oid
	UNION ALL
	SELECT 'event trigger ' || ev.evtname || ' on ' || ev.evtevent || ' ' || ev.evtfoid::regproc
	    || ' enabled=' || ev.evtenabled::text || ' tags=' || coalesce(ev.evttags::text, '')
	    || ' owner=' || pg_catalog.pg_get_userbyid(ev.evtowner)
	  FROM pg_catalog.pg_event_trigger ev JOIN members m
	    ON m.classid = 'pg_catalog.pg_event_trigger'::regclass AND m.objid = ev.oid
)
SELECT f.fact FROM (SELECT pg_catalog.replace(line, E'\n', ' | ') AS fact FROM lines) f
 ORDER BY f.fact COLLATE "C";
};

# What para_sync knows of the user's tables, without oids or timestamps:
# the registry (every column but those of type oid or timestamptz, so that
# columns added later are compared too) and the triggers on tagged tables.
sub user_side
{
	my ($db) = @_;
	my $cols = $node->safe_psql($db, q{
		SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum)
		  FROM pg_attribute a
		 WHERE a.attrelid = 'para_sync.tables'::regclass AND a.attnum > 0 AND NOT a.attisdropped
		   AND a.atttypid NOT IN ('oid'::regtype, 'timestamptz'::regtype)});
	my $registry = $node->safe_psql($db,
		"SELECT 'registry ' || to_jsonb(r)::text FROM (SELECT $cols FROM para_sync.tables) r ORDER BY 1");
	my $triggers = $node->safe_psql($db, q{
		SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
		  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
		 WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal
		 ORDER BY 1});
	return "$registry\n$triggers";
}

# Lines only in $got or only in $want, with a test named $name.
sub same_lines
{
	my ($got, $want, $name) = @_;
	my (%g, %w);
	$g{$_}++ for split /\n/, $got;
	$w{$_}++ for split /\n/, $want;
	my @only_got = grep { ($g{$_} // 0) > ($w{$_} // 0) } sort keys %g;
	my @only_want = grep { ($w{$_} // 0) > ($g{$_} // 0) } sort keys %w;
	ok(!@only_got && !@only_want, $name)
	  or diag(join("\n", (map { "only after upgrade/restore: $_" } @only_got),
			(map { "only in a fresh install: $_" } @only_want)));
}

# The backlog, through the consume API: key, seq and envelope digest.
sub backlog
{
	my ($db) = @_;
	return $node->safe_psql($db,
		q{SELECT string_agg(key || '=' || seq || ' ' || md5(envelope), ',' ORDER BY key, seq)
		    FROM para_sync.consume(1000)});
}

my $backlog_01 =
  'items:3=1,items:3=2,order_lines:1:a%20b=1,order_lines:1:a%20b=2,order_lines:1:c=2,order_lines:2:a%20b=1';

# Writes after the upgrade; the sequences each key must get (the last one
# of 0.1 plus one, from the outbox or from the counters).  Tagging "gone"
# again publishes its row's key first (it was published under 0.1), then
# the update follows.
my $writes = q{
	UPDATE public.items SET label = 'c' WHERE id IN (1, 2, 3);
	INSERT INTO public.items VALUES (4, 'c', 's');
	UPDATE public.lines SET qty = qty + 1;
	SELECT para_sync.sync_table('public.gone');
	UPDATE public.gone SET v = 'z';
};
my $continued = 'gone:1=3,gone:1=4,items:1=3,items:2=3,items:3=3,items:4=4,'
  . 'order_lines:1:a%20b=3,order_lines:1:c=3,order_lines:2:a%20b=2';

sub check_capture
{
	my ($db, $what) = @_;
	my %old = map { (s/ .*//r) => 1 } split /,/, backlog($db);
	$node->safe_psql($db, $writes);
	my @new = grep { !$old{$_} } map { s/ .*//r } split /,/, backlog($db);
	is(join(',', @new), $continued, "$what: every key's sequence continues from its 0.1 value");
	is( $node->safe_psql($db, q{
			SELECT count(*) FROM para_sync.consume(1000)
			 WHERE key LIKE 'items:%'
			   AND para_sync.envelope_to_jsonb(envelope)->'value' ? 'secret'}),
		'0', "$what: the excluded column stays excluded");
	is( $node->safe_psql($db, q{
			SELECT para_sync.snapshot_json('items:4')->>'sequence'
			    || ' ' || (para_sync.snapshot_json('order_lines:1:a%20b')->'value')::text}),
		'4 {"qty": 3, "line": "a b", "order_id": 1}',
		"$what: snapshots read the continued sequences");
}

# --- A fresh install of the current version, with the same tables tagged.
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', q{
	CREATE EXTENSION para_sync;
	CREATE TABLE public.items (id int PRIMARY KEY, label text, secret text);
	SELECT para_sync.sync_table('public.items', schema_version => '2', exclude_columns => '{secret}');
	CREATE TABLE public.lines (order_id int, line text, qty int, PRIMARY KEY (order_id, line));
	SELECT para_sync.sync_table('public.lines', 'order_lines');
	CREATE TABLE public.gone (id int PRIMARY KEY, v text);
	SELECT para_sync.sync_table('public.gone');
});
my $fresh_objects = $node->safe_psql('fresh', $objects_sql);
my $fresh_user_side = user_side('fresh');
like($fresh_objects, qr/^member function para_sync\.capture\(\)$/m, 'the object listing sees the members');

# --- ALTER EXTENSION UPDATE from 0.1.
(my $at_01 = $dump_01) =~
  s/^CREATE EXTENSION IF NOT EXISTS para_sync WITH SCHEMA para_sync;$/CREATE EXTENSION para_sync WITH SCHEMA para_sync VERSION '0.1';/m
  or die "fixture has no CREATE EXTENSION line";
$node->safe_psql('postgres', 'CREATE DATABASE upgraded');
run_script('upgraded', $at_01, 'load the 0.1 database');
is($node->safe_psql('upgraded', q{SELECT extversion FROM pg_extension WHERE extname = 'para_sync'}),
	'0.1', 'loaded at version 0.1');
my $registry_sql =
  q{SELECT string_agg(concat_ws(' ', table_name, sync_name, schema_version, exclude_columns), ', ' ORDER BY sync_name)
      FROM para_sync.synced_tables};
my $registry_01 = $node->safe_psql('upgraded', $registry_sql);
is($registry_01, 'items items 2 {secret}, lines order_lines 1 {}', '0.1 registry');
my $backlog_before = backlog('upgraded');

$node->safe_psql('upgraded', 'ALTER EXTENSION para_sync UPDATE');
is($node->safe_psql('upgraded', q{SELECT extversion FROM pg_extension WHERE extname = 'para_sync'}),
	$default_version, "updated to $default_version");
is($node->safe_psql('upgraded', $registry_sql), $registry_01, 'update keeps the registry');
is(backlog('upgraded'), $backlog_before, 'update keeps the backlog, envelope for envelope');
is(join(',', map { s/ .*//r } split /,/, $backlog_before), $backlog_01, 'the 0.1 backlog is there');
is($node->safe_psql('upgraded', q{SELECT para_sync.snapshot_json('items:2')->>'sequence'}),
	'2', 'a consumed key keeps its sequence');
same_lines($node->safe_psql('upgraded', $objects_sql), $fresh_objects,
	'after the update the objects are those of a fresh install');
check_capture('upgraded', 'after the update');
same_lines(user_side('upgraded'), $fresh_user_side,
	'after the update the registry and triggers are those of tables tagged afresh');

# --- A partitioned table tagged by its root after the update (0.4,
# src/partition.c): the same triggers on every partition, and the same
# capture, as in a fresh install.
my $parted = q{
	CREATE TABLE public.parts (region int, id int, label text, PRIMARY KEY (region, id))
		PARTITION BY LIST (region);
	CREATE TABLE public.parts_1 PARTITION OF public.parts FOR VALUES IN (1);
	SELECT para_sync.sync_table('public.parts');
	CREATE TABLE public.parts_2 PARTITION OF public.parts FOR VALUES IN (2);
	INSERT INTO public.parts VALUES (1, 1, 'a'), (2, 1, 'b');
	UPDATE public.parts SET region = 2, id = 2 WHERE region = 1;
};
my $parted_outbox = q{
	SELECT string_agg(key || '=' || seq || ':' || (para_sync.envelope_to_jsonb(envelope)->>'op'), ','
					  ORDER BY key, seq)
	  FROM para_sync.outbox WHERE key LIKE 'parts:%'};
$node->safe_psql($_, $parted) for ('fresh', 'upgraded');
same_lines(user_side('upgraded'), user_side('fresh'),
	'a partitioned root tagged after the update: registry and triggers of a fresh install');
is($node->safe_psql('upgraded', $parted_outbox),
	'parts:1:1=1:upsert,parts:1:1=2:delete,parts:2:1=1:upsert,parts:2:2=1:upsert',
	'a partitioned root tagged after the update captures every partition');
is($node->safe_psql('upgraded', $parted_outbox), $node->safe_psql('fresh', $parted_outbox),
	'... as a fresh install does');

# --- A dump of the 0.1 database restored: the extension is created at the
# default version (a dump names no version) and the 0.1 rows are loaded.
$node->safe_psql('postgres', 'CREATE DATABASE restored');
run_script('restored', $dump_01, 'restore the 0.1 dump');
is($node->safe_psql('restored', q{SELECT extversion FROM pg_extension WHERE extname = 'para_sync'}),
	$default_version, "restored at $default_version");
is($node->safe_psql('restored', $registry_sql), $registry_01, 'restore keeps the registry');
is(backlog('restored'), $backlog_before, 'restore keeps the backlog, envelope for envelope');
is($node->safe_psql('restored', q{SELECT para_sync.snapshot_json('items:2')->>'sequence'}),
	'2', 'restore keeps the sequence of a consumed key');
same_lines($node->safe_psql('restored', $objects_sql), $fresh_objects,
	'after the restore the objects are those of a fresh install');
check_capture('restored', 'after the restore');

$node->stop;
done_testing();
