-- A database made by para_sync at version 0.1 (SQL objects of para_sync--0.1.sql,
-- C code of commit 52e98f2), dumped with pg_dump 15: the input of
-- test/t/003_upgrade.pl.  Kept as a file because a 0.1 state
-- must be written by 0.1 code; the current library may refuse to capture on
-- a 0.1 schema.  It was made by:
--
--   CREATE EXTENSION para_sync VERSION '0.1';
--   -- single-column key, an excluded column, a schema version
--   CREATE TABLE public.items (id int PRIMARY KEY, label text, secret text);
--   SELECT para_sync.sync_table('public.items', schema_version => '2', exclude_columns => '{secret}');
--   -- composite key, a sync name of its own
--   CREATE TABLE public.lines (order_id int, line text, qty int, PRIMARY KEY (order_id, line));
--   SELECT para_sync.sync_table('public.lines', 'order_lines');
--   -- tagged, written, untagged: its counters stay
--   CREATE TABLE public.gone (id int PRIMARY KEY, v text);
--   SELECT para_sync.sync_table('public.gone');
--   INSERT INTO public.items SELECT g, 'a', 's' FROM generate_series(1, 4) g;
--   UPDATE public.items SET label = 'b';
--   DELETE FROM public.items WHERE id = 4;
--   INSERT INTO public.lines VALUES (1, 'a b', 1), (1, 'c', 2), (2, 'a b', 1);
--   UPDATE public.lines SET qty = qty + 1 WHERE order_id = 1;
--   INSERT INTO public.gone VALUES (1, 'x');
--   UPDATE public.gone SET v = 'y';
--   SELECT para_sync.unsync_table('public.gone');
--   -- consumed: items:1, items:2, items:4 (a deleted key), gone:1 entirely,
--   -- order_lines:1:c up to 1 (its seq 2 stays in the outbox)
--   SELECT para_sync.ack('{items:1,items:2,items:4,order_lines:1:c,gone:1}', '{2,2,3,1,2}');
--
-- outbox (backlog): items:3 1-2, order_lines:1:a%20b 1-2, order_lines:1:c 2,
--                   order_lines:2:a%20b 1
-- counters:         items:1 2, items:2 2, items:4 3 (deleted), gone:1 2 (untagged),
--                   order_lines:1:c 1

--
-- PostgreSQL database dump
--


-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)
-- Dumped by pg_dump version 15.20 (Debian 15.20-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: para_sync; Type: SCHEMA; Schema: -; Owner: postgres
--

CREATE SCHEMA para_sync;


ALTER SCHEMA para_sync OWNER TO postgres;

--
-- Name: para_sync; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS para_sync WITH SCHEMA para_sync;


--
-- Name: EXTENSION para_sync; Type: COMMENT; Schema: -; Owner: 
--

COMMENT ON EXTENSION para_sync IS 'stream row changes to live clients over NATS, with per-object sequences';


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: gone; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.gone (
    id integer NOT NULL,
    v text
);


ALTER TABLE public.gone OWNER TO postgres;

--
-- Name: items; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.items (
    id integer NOT NULL,
    label text,
    secret text
);


ALTER TABLE public.items OWNER TO postgres;

--
-- Name: lines; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.lines (
    order_id integer NOT NULL,
    line text NOT NULL,
    qty integer
);


ALTER TABLE public.lines OWNER TO postgres;

--
-- Data for Name: counters; Type: TABLE DATA; Schema: para_sync; Owner: postgres
--

COPY para_sync.counters (key, seq) FROM stdin;
order_lines:1:c	1
items:2	2
items:1	2
gone:1	2
items:4	3
\.


--
-- Data for Name: outbox; Type: TABLE DATA; Schema: para_sync; Owner: postgres
--

COPY para_sync.outbox (key, seq, txid, queued_at, envelope) FROM stdin;
items:3	1	732	2026-11-30 18:30:06.371105+00	\\x86a36b6579a76974656d733a33a576616c756582a2696403a56c6162656ca161ae736368656d615f76657273696f6ea132a873657175656e636501a26f70a6757073657274a474786964cd02dc
items:3	2	733	2026-11-30 18:30:06.372397+00	\\x86a36b6579a76974656d733a33a576616c756582a2696403a56c6162656ca162ae736368656d615f76657273696f6ea132a873657175656e636502a26f70a6757073657274a474786964cd02dd
order_lines:1:a%20b	1	735	2026-11-30 18:30:06.373304+00	\\x86a36b6579b36f726465725f6c696e65733a313a6125323062a576616c756583a86f726465725f696401a46c696e65a3612062a371747901ae736368656d615f76657273696f6ea131a873657175656e636501a26f70a6757073657274a474786964cd02df
order_lines:2:a%20b	1	735	2026-11-30 18:30:06.373304+00	\\x86a36b6579b36f726465725f6c696e65733a323a6125323062a576616c756583a86f726465725f696402a46c696e65a3612062a371747901ae736368656d615f76657273696f6ea131a873657175656e636501a26f70a6757073657274a474786964cd02df
order_lines:1:a%20b	2	736	2026-11-30 18:30:06.374276+00	\\x86a36b6579b36f726465725f6c696e65733a313a6125323062a576616c756583a86f726465725f696401a46c696e65a3612062a371747902ae736368656d615f76657273696f6ea131a873657175656e636502a26f70a6757073657274a474786964cd02e0
order_lines:1:c	2	736	2026-11-30 18:30:06.374276+00	\\x86a36b6579af6f726465725f6c696e65733a313a63a576616c756583a86f726465725f696401a46c696e65a163a371747903ae736368656d615f76657273696f6ea131a873657175656e636502a26f70a6757073657274a474786964cd02e0
\.


--
-- Data for Name: tables; Type: TABLE DATA; Schema: para_sync; Owner: postgres
--

COPY para_sync.tables (relid, sync_name, schema_version, exclude_columns, tagged_at) FROM stdin;
public.items	items	2	{secret}	2026-11-30 18:30:06.358467+00
public.lines	order_lines	1	{}	2026-11-30 18:30:06.365611+00
\.


--
-- Data for Name: gone; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.gone (id, v) FROM stdin;
1	y
\.


--
-- Data for Name: items; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.items (id, label, secret) FROM stdin;
1	b	s
2	b	s
3	b	s
\.


--
-- Data for Name: lines; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.lines (order_id, line, qty) FROM stdin;
2	a b	1
1	a b	2
1	c	3
\.


--
-- Name: gone gone_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.gone
    ADD CONSTRAINT gone_pkey PRIMARY KEY (id);


--
-- Name: items items_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.items
    ADD CONSTRAINT items_pkey PRIMARY KEY (id);


--
-- Name: lines lines_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.lines
    ADD CONSTRAINT lines_pkey PRIMARY KEY (order_id, line);


--
-- Name: items para_sync_capture; Type: TRIGGER; Schema: public; Owner: postgres
--

CREATE TRIGGER para_sync_capture AFTER INSERT OR DELETE OR UPDATE ON public.items FOR EACH ROW EXECUTE FUNCTION para_sync.capture();


--
-- Name: lines para_sync_capture; Type: TRIGGER; Schema: public; Owner: postgres
--

CREATE TRIGGER para_sync_capture AFTER INSERT OR DELETE OR UPDATE ON public.lines FOR EACH ROW EXECUTE FUNCTION para_sync.capture();


--
-- Name: items para_sync_no_truncate; Type: TRIGGER; Schema: public; Owner: postgres
--

CREATE TRIGGER para_sync_no_truncate BEFORE TRUNCATE ON public.items FOR EACH STATEMENT EXECUTE FUNCTION para_sync.refuse_truncate();


--
-- Name: lines para_sync_no_truncate; Type: TRIGGER; Schema: public; Owner: postgres
--

CREATE TRIGGER para_sync_no_truncate BEFORE TRUNCATE ON public.lines FOR EACH STATEMENT EXECUTE FUNCTION para_sync.refuse_truncate();


--
-- PostgreSQL database dump complete
--


