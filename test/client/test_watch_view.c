/*
 * test_watch_view.c — the model of para-sync-watch's full-screen view
 * (watch/watch_view.c): key order, rows merged in as they come,
 * deletions marked, kept and expired, re-added rows, the recent list.
 */
#include "harness.h"

#include <inttypes.h>

#include "watch_view.h"

static void
post(view *v, view_change kind, bool initial, const char *key, int64_t seq, const char *value)
{
	view_post(v, 0, kind, initial, key, strlen(key), seq, value, value ? strlen(value) : 0);
}

/* The keys in view order, joined by spaces. */
static const char *
keys(const view *v)
{
	static char buf[4096];
	size_t		o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < view_count(v); i++)
		o += (size_t) snprintf(buf + o, sizeof(buf) - o, "%s%s", i ? " " : "",
							   view_row_at(v, i)->key);
	return buf;
}

static void
key_order_is_natural(void)
{
	CHECK(view_key_cmp("t:9", "t:10") < 0);
	CHECK(view_key_cmp("t:10", "t:9") > 0);
	CHECK(view_key_cmp("t:2", "t:2") == 0);
	CHECK(view_key_cmp("t:007", "t:7") != 0);	/* total: different keys never tie */
	CHECK(view_key_cmp("t:007", "t:8") < 0);
	CHECK(view_key_cmp("a:1,10", "a:1,9") > 0);
	CHECK(view_key_cmp("a:x", "b:1") < 0);
	CHECK(view_key_cmp("t:1", "t:1a") < 0);
}

static void
rows_sorted_across_drains(void)
{
	view	   *v = view_new(1, 60, 16);
	char		key[32];

	/* loaded in one order, displayed in view_key_cmp order */
	for (int i = 1; i <= 12; i++)
	{
		snprintf(key, sizeof(key), "t:%d", i);
		post(v, VIEW_ADDED, true, key, 1, NULL);
		if (i == 5)
			view_drain(v, 100);
	}
	CHECK(view_drain(v, 100));
	CHECK(strcmp(keys(v), "t:1 t:2 t:3 t:4 t:5 t:6 t:7 t:8 t:9 t:10 t:11 t:12") == 0);
	CHECK_EQ_INT(view_loaded(v, 0), 12);
	CHECK_EQ_INT(view_changes(v, 0), 0);
	CHECK(view_recent(v, 0) == NULL);	/* a load is not a change */
	CHECK_EQ_INT(view_lower_bound(v, "t:10"), 9);
	CHECK_EQ_INT(view_lower_bound(v, "t:99"), 12);
	CHECK(!view_drain(v, 101));	/* nothing new */
	view_free(v);
}

static void
changes_and_deletions(void)
{
	view	   *v = view_new(1, 60, 2);
	const view_row *r;

	post(v, VIEW_ADDED, true, "t:1", 1, NULL);
	post(v, VIEW_ADDED, true, "t:2", 1, NULL);
	post(v, VIEW_ADDED, true, "t:3", 1, NULL);
	view_drain(v, 100);
	post(v, VIEW_UPDATED, false, "t:2", 2, "{\"n\": 2}");
	post(v, VIEW_REMOVED, false, "t:3", 2, "{\"n\": 3}");
	post(v, VIEW_ADDED, false, "t:4", 1, "{\"n\": 4}");
	CHECK(view_drain(v, 100));
	CHECK(strcmp(keys(v), "t:1 t:2 t:3 t:4") == 0);
	r = view_row_at(v, 1);
	CHECK(r->state == VIEW_ROW_LIVE && r->sequence == 2 && r->changed_at > 0 && !r->fresh);
	r = view_row_at(v, 2);
	CHECK(r->state == VIEW_ROW_DELETED && r->last_value && strcmp(r->last_value, "{\"n\": 3}") == 0);
	CHECK(view_row_at(v, 3)->fresh);
	CHECK_EQ_INT(view_deleted(v), 1);
	CHECK_EQ_INT(view_changes(v, 0), 3);
	/* the recent list: newest first, at most 2 */
	CHECK(strcmp(view_recent(v, 0)->key, "t:4") == 0);
	CHECK(strcmp(view_recent(v, 1)->key, "t:3") == 0 && view_recent(v, 1)->kind == VIEW_REMOVED);
	CHECK(view_recent(v, 2) == NULL);
	/* kept while young, gone once deleted_keep has passed */
	view_drain(v, view_row_at(v, 2)->changed_at + 59);
	CHECK(strcmp(keys(v), "t:1 t:2 t:3 t:4") == 0);
	CHECK(view_drain(v, view_row_at(v, 2)->changed_at + 61));
	CHECK(strcmp(keys(v), "t:1 t:2 t:4") == 0);
	CHECK_EQ_INT(view_deleted(v), 0);
	view_free(v);
}

static void
deleted_then_added_again_stays(void)
{
	view	   *v = view_new(1, 10, 8);
	double		t;

	post(v, VIEW_ADDED, true, "t:1", 1, NULL);
	post(v, VIEW_REMOVED, false, "t:1", 2, "{}");
	view_drain(v, 0);
	t = view_row_at(v, 0)->changed_at;
	post(v, VIEW_ADDED, false, "t:1", 3, "{\"back\": true}");
	view_drain(v, t);
	CHECK(view_row_at(v, 0)->state == VIEW_ROW_LIVE && view_row_at(v, 0)->last_value == NULL);
	view_drain(v, t + 100);	/* the old deletion's expiry must not take it */
	CHECK_EQ_INT(view_count(v), 1);
	/* deleted again: that deletion expires */
	post(v, VIEW_REMOVED, false, "t:1", 4, "{}");
	view_drain(v, t);
	CHECK(view_row_at(v, 0)->state == VIEW_ROW_DELETED);
	view_drain(v, view_row_at(v, 0)->changed_at + 11);
	CHECK_EQ_INT(view_count(v), 0);
	view_free(v);
}

/* Many rows, many deletions expiring at once: the hash map and index agree. */
static void
many_rows(void)
{
	view	   *v = view_new(1, 1, 8);
	char		key[32];
	double		t = 0;

	for (int i = 0; i < 20000; i++)
	{
		snprintf(key, sizeof(key), "t:%d", i);
		post(v, VIEW_ADDED, true, key, 1, NULL);
	}
	view_drain(v, 0);
	for (int i = 0; i < 20000; i += 3)
	{
		snprintf(key, sizeof(key), "t:%d", i);
		post(v, VIEW_REMOVED, false, key, 2, "{}");
	}
	view_drain(v, 0);
	CHECK_EQ_INT(view_deleted(v), 6667);
	for (size_t i = 0; i < view_count(v); i++)
		if (view_row_at(v, i)->changed_at > t)
			t = view_row_at(v, i)->changed_at;
	view_drain(v, t + 2);
	CHECK_EQ_INT(view_count(v), 20000 - 6667);
	for (size_t i = 1; i < view_count(v); i++)
		CHECK(view_key_cmp(view_row_at(v, i - 1)->key, view_row_at(v, i)->key) < 0);
	/* every survivor is still found (the hash map after backward-shift deletes) */
	for (int i = 0; i < 20000; i++)
	{
		snprintf(key, sizeof(key), "t:%d", i);
		post(v, VIEW_UPDATED, false, key, 3, "{}");
	}
	view_drain(v, t + 2);
	CHECK_EQ_INT(view_count(v), 20000);	/* the deleted ones came back, nothing doubled */
	view_free(v);
}

static void
grouped_counts(void)
{
	char		buf[32];

	CHECK(strcmp(view_grouped(0, buf, sizeof(buf)), "0") == 0);
	CHECK(strcmp(view_grouped(999, buf, sizeof(buf)), "999") == 0);
	CHECK(strcmp(view_grouped(1000, buf, sizeof(buf)), "1,000") == 0);
	CHECK(strcmp(view_grouped(1234567, buf, sizeof(buf)), "1,234,567") == 0);
}

int
main(void)
{
	RUN(key_order_is_natural);
	RUN(rows_sorted_across_drains);
	RUN(changes_and_deletions);
	RUN(deleted_then_added_again_stays);
	RUN(many_rows);
	RUN(grouped_counts);
	return harness_finish();
}
