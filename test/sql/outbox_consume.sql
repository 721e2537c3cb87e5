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

-- The counters of a batch are raised in one pass over its keys in index
-- order: keys close together, far apart, repeated, out of order; new
-- counters, lower ones raised, higher ones kept (a counter only rises)
CREATE TABLE public.kv2 (k int PRIMARY KEY, v int);
SELECT para_sync.sync_table('public.kv2');
INSERT INTO public.kv2 SELECT g, 0 FROM generate_series(1, 300) g;
UPDATE public.kv2 SET v = 1;
INSERT INTO para_sync.counters
	SELECT 'kv2:' || g, CASE WHEN g % 7 = 0 THEN 5 ELSE 1 END
	  FROM generate_series(1, 300) g WHERE g % 7 = 0 OR g % 5 = 0;
SELECT para_sync.ack(array_agg('kv2:' || g ORDER BY g DESC, s), array_agg(s ORDER BY g DESC, s))
  FROM generate_series(1, 300) g, generate_series(1, 2) s
 WHERE g % 3 <> 0 AND g NOT BETWEEN 100 AND 199;
SELECT count(*) AS counters,
	   count(*) FILTER (WHERE c.seq IS DISTINCT FROM
		   CASE WHEN g % 3 <> 0 AND g NOT BETWEEN 100 AND 199
				THEN greatest(2, CASE WHEN g % 7 = 0 THEN 5 END)
				WHEN g % 7 = 0 THEN 5 WHEN g % 5 = 0 THEN 1 END) AS wrong
  FROM generate_series(1, 300) g
  JOIN para_sync.counters c ON c.key = 'kv2:' || g;

DROP TABLE public.kv2;
TRUNCATE para_sync.outbox, para_sync.counters;
