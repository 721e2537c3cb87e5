-- The consume step of the publisher: committed envelopes in per-key
-- sequence order, fair across keys, removed only once acknowledged.
SET client_min_messages = warning;
TRUNCATE para_sync.outbox, para_sync.counters;

CREATE TABLE public.kv (k text PRIMARY KEY, v int);
SELECT para_sync.sync_table('public.kv');
INSERT INTO public.kv VALUES ('a', 1), ('b', 1), ('c', 1);
UPDATE public.kv SET v = v + 1;
UPDATE public.kv SET v = v + 1 WHERE k = 'a';

-- per key, lowest sequence first
SELECT key, seq, para_sync.envelope_to_jsonb(envelope)->'value'->'v' AS v
  FROM para_sync.consume(100);
-- a batch is bounded; after_key starts there and wraps around
SELECT key, seq FROM para_sync.consume(3);
SELECT key, seq FROM para_sync.consume(4, 'kv:b');
SELECT key, seq FROM para_sync.consume(100, 'kv:zzz');

-- ack removes what was confirmed (up to the given sequence per key) and
-- remembers the last sequence, so the capture trigger continues from it
SELECT para_sync.ack('{kv:a,kv:b}', '{2,1}');
SELECT key, seq FROM para_sync.consume(100);
SELECT key, seq FROM para_sync.counters ORDER BY key;
-- acking again, or an older sequence, changes nothing
SELECT para_sync.ack('{kv:a}', '{1}');
SELECT key, seq FROM para_sync.counters ORDER BY key;
UPDATE public.kv SET v = 10 WHERE k = 'b';
SELECT key, seq FROM para_sync.consume(100);

SELECT para_sync.ack(array_agg(key), array_agg(seq)) FROM para_sync.consume(100);
SELECT count(*) AS backlog FROM para_sync.outbox;
SELECT key, seq FROM para_sync.counters ORDER BY key;

DROP TABLE public.kv;
