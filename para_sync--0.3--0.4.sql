/* para_sync--0.3--0.4.sql — upgrade from 0.3 to 0.4.
 *
 * A fresh CREATE EXTENSION runs para_sync--0.1.sql, the upgrade scripts
 * 0.1--0.2 and 0.2--0.3, and then this script, so a new install and an
 * upgraded one always end with the same objects (test/t/003_upgrade.pl
 * compares them).  Each section below is one concern, headed "-- == ... ==";
 * every object reference is schema-qualified and every new object has a
 * COMMENT ON.
 */

\echo Use "ALTER EXTENSION para_sync UPDATE TO '0.4'" to load this file. \quit
