/* para_sync--0.1--0.2.sql — upgrade from 0.1 to 0.2.
 *
 * A fresh CREATE EXTENSION runs para_sync--0.1.sql and then this script, so
 * a new install and an upgraded one always end with the same objects.  Each
 * section below is one concern; every object reference is schema-qualified.
 */

\echo Use "ALTER EXTENSION para_sync UPDATE TO '0.2'" to load this file. \quit

-- == key canonical forms ==
-- Keys are now one per value (numeric 1.0, 1.00 and 1 are all "1"; float -0
-- is "0"; char(n) drops trailing blanks; intervals are re-split as equality
-- measures them).  Rows whose 0.1 key differs are moved once, here: a delete
-- of the old key and an upsert of the new, so replicas drop the old object.
-- The helper exists only for this step.
CREATE FUNCTION para_sync.rekey_legacy()
RETURNS pg_catalog.int8
LANGUAGE c
VOLATILE STRICT
AS 'MODULE_PATHNAME', 'para_sync_rekey_legacy';
REVOKE ALL ON FUNCTION para_sync.rekey_legacy() FROM PUBLIC;
SELECT para_sync.rekey_legacy();
DROP FUNCTION para_sync.rekey_legacy();
