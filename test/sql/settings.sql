-- The "para_sync." prefix is reserved (src/para_sync.c): a setting of that
-- prefix that para_sync does not define is refused, where PostgreSQL would
-- otherwise keep it as a placeholder and a typo would go unnoticed.
SET para_sync.batch_szie = 10;
SET para_sync.sequence_cache_chek = on;
-- a setting para_sync defines is still found
SELECT name, context FROM pg_catalog.pg_settings WHERE name = 'para_sync.batch_size';
