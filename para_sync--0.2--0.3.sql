/* para_sync--0.2--0.3.sql — upgrade from 0.2 to 0.3.
 *
 * A fresh CREATE EXTENSION runs para_sync--0.1.sql, para_sync--0.1--0.2.sql
 * and then this script, so a new install and an upgraded one always end with
 * the same objects.  Each section below is one concern; every object
 * reference is schema-qualified.
 */

\echo Use "ALTER EXTENSION para_sync UPDATE TO '0.3'" to load this file. \quit
