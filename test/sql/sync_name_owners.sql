-- A sync name's owner role is treated like the owner of PostgreSQL objects:
-- DROP ROLE is refused while it owns sync names (here, and in any other
-- database, through the privilege on para_sync.sync_names every owner
-- holds), REASSIGN OWNED passes them on, DROP OWNED releases them.
SET client_min_messages = warning;
CREATE ROLE regress_sno_a;
CREATE ROLE regress_sno_b;
CREATE ROLE regress_sno_c;
GRANT CREATE ON SCHEMA public TO regress_sno_a, regress_sno_b, regress_sno_c;
SET ROLE regress_sno_a;
CREATE TABLE public.sno1 (id int PRIMARY KEY);
CREATE TABLE public.sno2 (id int PRIMARY KEY);
SELECT para_sync.sync_table('public.sno1'), para_sync.sync_table('public.sno2');
SELECT para_sync.unsync_table('public.sno1'), para_sync.unsync_table('public.sno2');
DROP TABLE public.sno1, public.sno2;
RESET ROLE;
REVOKE CREATE ON SCHEMA public FROM regress_sno_a;
SELECT sync_name, owner FROM para_sync.sync_names WHERE sync_name LIKE 'sno%' ORDER BY 1;
-- every owner role holds SELECT on para_sync.sync_names
SELECT pg_catalog.has_table_privilege('regress_sno_a', 'para_sync.sync_names', 'SELECT') AS a_marked,
	   pg_catalog.array_to_string(c.relacl, ',') LIKE '%regress_sno_a=r/%' AS a_granted
  FROM pg_catalog.pg_class c WHERE c.oid = 'para_sync.sync_names'::regclass;

-- DROP ROLE: refused, naming the sync names (the role owns nothing else)
DROP ROLE regress_sno_a;
SELECT count(*) AS a_exists FROM pg_catalog.pg_roles WHERE rolname = 'regress_sno_a';
-- a role that may not drop roles gets PostgreSQL's refusal, not the names
SET ROLE regress_sno_c;
DROP ROLE regress_sno_a;
RESET ROLE;

-- REASSIGN OWNED BY a TO b: the names go to b (who may then tag under them)
REASSIGN OWNED BY regress_sno_a TO regress_sno_b;
SELECT sync_name, owner FROM para_sync.sync_names WHERE sync_name LIKE 'sno%' ORDER BY 1;
SELECT pg_catalog.array_to_string(c.relacl, ',') LIKE '%regress_sno_a=r/%' AS a_granted,
	   pg_catalog.array_to_string(c.relacl, ',') LIKE '%regress_sno_b=r/%' AS b_granted
  FROM pg_catalog.pg_class c WHERE c.oid = 'para_sync.sync_names'::regclass;
DROP ROLE regress_sno_a;
SET ROLE regress_sno_b;
CREATE TABLE public.sno3 (id int PRIMARY KEY);
SELECT para_sync.sync_table('public.sno3', 'sno1');
RESET ROLE;

-- DROP OWNED BY b: unused names are released; a name still used by a
-- synced table (here one of c's, tagged by b's member) passes to the
-- table's owner
GRANT regress_sno_b TO regress_sno_c;
SET ROLE regress_sno_c;
CREATE TABLE public.sno4 (id int PRIMARY KEY);
SELECT para_sync.sync_table('public.sno4', 'sno2');
RESET ROLE;
SELECT para_sync.unsync_table('public.sno3');
DROP TABLE public.sno3;
SELECT sync_name, owner FROM para_sync.sync_names WHERE sync_name LIKE 'sno%' ORDER BY 1;
DROP OWNED BY regress_sno_b;
SELECT sync_name, owner FROM para_sync.sync_names WHERE sync_name LIKE 'sno%' ORDER BY 1;
DROP ROLE regress_sno_b;

-- releasing a role's last name revokes its privilege
SELECT para_sync.unsync_table('public.sno4');
SELECT para_sync.release_sync_name('sno2');
SELECT pg_catalog.array_to_string(c.relacl, ',') LIKE '%regress_sno_c=r/%' AS c_granted
  FROM pg_catalog.pg_class c WHERE c.oid = 'para_sync.sync_names'::regclass;

DROP TABLE public.sno4;
REVOKE CREATE ON SCHEMA public FROM regress_sno_c;
DROP ROLE regress_sno_c;

-- a name in another database: DROP ROLE here is refused by PostgreSQL
-- itself (the owner's privilege on para_sync.sync_names there); REASSIGN
-- OWNED there frees the role
CREATE ROLE regress_sno_d;
SELECT current_database() AS regress_db \gset
CREATE DATABASE para_sync_sync_name_owners;
\c para_sync_sync_name_owners
SET client_min_messages = warning;
CREATE EXTENSION para_sync;
CREATE TABLE public.far (id int PRIMARY KEY);
ALTER TABLE public.far OWNER TO regress_sno_d;
SELECT para_sync.sync_table('public.far');
ALTER TABLE public.far OWNER TO CURRENT_USER;
\c :regress_db
SET client_min_messages = warning;
DROP ROLE regress_sno_d;
\c para_sync_sync_name_owners
SET client_min_messages = warning;
REASSIGN OWNED BY regress_sno_d TO CURRENT_USER;
SELECT sync_name, owner = current_user::regrole AS to_current_user FROM para_sync.sync_names;
\c :regress_db
SET client_min_messages = warning;
DROP ROLE regress_sno_d;
DROP DATABASE para_sync_sync_name_owners;
