-- Every object of the extension is documented in the catalog: each function,
-- table, view and event trigger that belongs to para_sync, and each object in
-- schema para_sync, has a COMMENT ON (\df+ and \dt+ show it).  A fresh install
-- runs para_sync--0.1.sql, 0.1--0.2 and 0.2--0.3; the comments of the 0.1
-- objects are set at the end of para_sync--0.2--0.3.sql.  Expected: no rows.
SELECT pg_catalog.pg_describe_object(d.classid, d.objid, 0) AS undocumented
  FROM pg_catalog.pg_depend d
 WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
   AND d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension e
                      WHERE e.extname = 'para_sync')
   AND d.deptype = 'e'
   AND d.classid IN ('pg_catalog.pg_proc'::pg_catalog.regclass,
                     'pg_catalog.pg_class'::pg_catalog.regclass,
                     'pg_catalog.pg_event_trigger'::pg_catalog.regclass,
                     'pg_catalog.pg_type'::pg_catalog.regclass)
   AND pg_catalog.obj_description(d.objid, d.classid::pg_catalog.regclass::pg_catalog.name) IS NULL
 ORDER BY 1;
-- the same by schema: functions, tables and views in para_sync, members or not
SELECT p.oid::pg_catalog.regprocedure::pg_catalog.text AS undocumented
  FROM pg_catalog.pg_proc p
 WHERE p.pronamespace = 'para_sync'::pg_catalog.regnamespace
   AND pg_catalog.obj_description(p.oid, 'pg_proc') IS NULL
UNION ALL
SELECT c.oid::pg_catalog.regclass::pg_catalog.text
  FROM pg_catalog.pg_class c
 WHERE c.relnamespace = 'para_sync'::pg_catalog.regnamespace
   AND c.relkind IN ('r', 'p', 'v', 'm')
   AND pg_catalog.obj_description(c.oid, 'pg_class') IS NULL
 ORDER BY 1;
-- columns of its tables and views without a comment: listed so that
-- a new column without one shows up here
SELECT c.oid::pg_catalog.regclass::pg_catalog.text AS relation, a.attname AS undocumented_column
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relnamespace = 'para_sync'::pg_catalog.regnamespace
   AND c.relkind IN ('r', 'p', 'v', 'm')
   AND pg_catalog.col_description(c.oid, a.attnum) IS NULL
 ORDER BY 1, 2;
