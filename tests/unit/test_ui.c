/*
 * Unit tests for the web console's sessions and files (ui.c).  Time is
 * injected.
 */

#include <sys/types.h>
#include <sys/wait.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ui.h"

#define T0	1795000000000LL
#define IDLE	60000

static const uint8_t	 B[32] = { 1, 2, 3 };	/* the admin token's digest */

static struct ui_table *
table(void)
{
	struct ui_table	*t = calloc(1, sizeof(*t));

	assert_non_null(t);
	memset(t->ut_secret, 7, sizeof(t->ut_secret));
	return (t);
}

/* "keygate_session=ID" into buf. */
static const char *
cookie_of(char *buf, size_t len, const char *id)
{
	snprintf(buf, len, UI_COOKIE "=%.*s", UI_TOKEN_LEN, id);
	return (buf);
}

/*
 * A session is found by its cookie among others, keeps itself alive, ends
 * idle or at the maximum age (and stays ended), or at logout; its CSRF
 * token is stable, differs per session, and is checked exactly.
 */
static void
test_sessions(void **state)
{
	struct ui_table	*t = table();
	char		 id[UI_TOKEN_LEN + 1], id2[UI_TOKEN_LEN + 1];
	char		 csrf[UI_TOKEN_LEN + 1], csrf2[UI_TOKEN_LEN + 1];
	char		 got[UI_TOKEN_LEN + 1], c[256];
	uint64_t	 st;
	int		 s;

	(void)state;
	assert_int_equal(ui_session_new(t, B, T0, IDLE, id, csrf), 0);
	assert_int_equal(strlen(id), UI_TOKEN_LEN);
	assert_int_equal(strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn"
	    "opqrstuvwxyz0123456789-_"), UI_TOKEN_LEN);
	assert_int_equal(ui_session_new(t, B, T0, IDLE, id2, csrf2), 0);
	assert_string_not_equal(id, id2);
	assert_string_not_equal(csrf, csrf2);
	snprintf(c, sizeof(c), "a=1; %s=%s;b=2", UI_COOKIE, id);
	assert_true((s = ui_session_find(t, B, c, strlen(c), T0 + 1, IDLE, &st,
	    got)) >= 0);
	assert_string_equal(got, csrf);
	assert_true(ui_csrf_ok(csrf, UI_TOKEN_LEN, got));
	assert_false(ui_csrf_ok(csrf, UI_TOKEN_LEN - 1, got));
	assert_false(ui_csrf_ok(csrf2, UI_TOKEN_LEN, got));
	assert_false(ui_csrf_ok(NULL, 0, got));
	/* Any of several cookies of the name (found by fuzz_ui). */
	snprintf(c, sizeof(c), "%s=; %s=x; %s=%s", UI_COOKIE, UI_COOKIE,
	    UI_COOKIE, id);
	assert_int_equal(ui_session_find(t, B, c, strlen(c), T0 + 1, IDLE, NULL,
	    NULL), s);
	/* Not a cookie of ours, or a wrong or cut one. */
	snprintf(c, sizeof(c), "x%s=%s", UI_COOKIE, id);
	assert_int_equal(ui_session_find(t, B, c, strlen(c), T0, IDLE, NULL,
	    NULL), -1);
	cookie_of(c, sizeof(c), id);
	assert_int_equal(ui_session_find(t, B, c, strlen(c) - 1, T0, IDLE, NULL,
	    NULL), -1);
	c[strlen(c) - 1] ^= 1;
	assert_int_equal(ui_session_find(t, B, c, strlen(c), T0, IDLE, NULL,
	    NULL), -1);
	/* Kept alive by use; ended idle, and stays ended. */
	cookie_of(c, sizeof(c), id);
	assert_true(ui_session_find(t, B, c, strlen(c), T0 + IDLE - 1, IDLE,
	    NULL, NULL) >= 0);
	assert_true(ui_session_find(t, B, c, strlen(c), T0 + 2 * IDLE - 2, IDLE,
	    NULL, NULL) >= 0);
	assert_int_equal(ui_session_count(t, T0 + 2 * IDLE - 2, IDLE), 1);
	assert_int_equal(ui_session_find(t, B, c, strlen(c), T0 + 3 * IDLE - 2,
	    IDLE, NULL, NULL), -1);
	assert_int_equal(ui_session_find(t, B, c, strlen(c), T0, IDLE, NULL,
	    NULL), -1);
	/* The maximum age, whatever the use. */
	assert_int_equal(ui_session_new(t, B, T0, UI_SESSION_MAX_MS, id, csrf),
	    0);
	cookie_of(c, sizeof(c), id);
	assert_true(ui_session_find(t, B, c, strlen(c), T0 + UI_SESSION_MAX_MS -
	    1, UI_SESSION_MAX_MS, NULL, NULL) >= 0);
	assert_int_equal(ui_session_find(t, B, c, strlen(c), T0 +
	    UI_SESSION_MAX_MS, UI_SESSION_MAX_MS, NULL, NULL), -1);
	/* Logout, and a stale state ends nothing. */
	assert_int_equal(ui_session_new(t, B, T0, IDLE, id, csrf), 0);
	cookie_of(c, sizeof(c), id);
	assert_true((s = ui_session_find(t, B, c, strlen(c), T0, IDLE, &st,
	    NULL)) >= 0);
	ui_session_end(t, s, st + (1ULL << 32));
	assert_true(ui_session_find(t, B, c, strlen(c), T0, IDLE, NULL, NULL) >=
	    0);
	ui_session_end(t, s, st);
	assert_int_equal(ui_session_find(t, B, c, strlen(c), T0, IDLE, NULL,
	    NULL), -1);
	free(t);
}

/*
 * All slots in use: a new session takes the place of the one idle
 * longest; a slot whose writer died is taken again.
 */
static void
test_full(void **state)
{
	struct ui_table	*t = table();
	char		 ids[UI_SESSIONS][UI_TOKEN_LEN + 1];
	char		 id[UI_TOKEN_LEN + 1], csrf[UI_TOKEN_LEN + 1];
	char		 c[128];
	pid_t		 pid;
	int		 i;

	(void)state;
	for (i = 0; i < UI_SESSIONS; i++)
		assert_int_equal(ui_session_new(t, B, T0 + i, IDLE, ids[i],
		    csrf), 0);
	/* Session 0 used last: 1 is the one idle longest. */
	cookie_of(c, sizeof(c), ids[0]);
	assert_true(ui_session_find(t, B, c, strlen(c), T0 + 100, IDLE, NULL,
	    NULL) >= 0);
	assert_int_equal(ui_session_new(t, B, T0 + 101, IDLE, id, csrf), 0);
	cookie_of(c, sizeof(c), ids[1]);
	assert_int_equal(ui_session_find(t, B, c, strlen(c), T0 + 102, IDLE,
	    NULL, NULL), -1);
	for (i = 0; i < UI_SESSIONS; i++) {
		cookie_of(c, sizeof(c), ids[i]);
		assert_int_equal(ui_session_find(t, B, c, strlen(c), T0 + 102,
		    IDLE, NULL, NULL) >= 0, i != 1);
	}
	assert_int_equal(ui_session_count(t, T0 + 102, IDLE), UI_SESSIONS);
	/* A writer that died mid-write leaves its claim: taken again. */
	memset(t, 0, sizeof(*t));
	if ((pid = fork()) == 0)
		_exit(0);
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	for (i = 0; i < UI_SESSIONS; i++)
		t->ut_s[i].us_state = UI_ST_WRITING | (uint64_t)pid << 32;
	assert_int_equal(ui_session_new(t, B, T0, IDLE, id, csrf), 0);
	cookie_of(c, sizeof(c), id);
	assert_true(ui_session_find(t, B, c, strlen(c), T0, IDLE, NULL, NULL) >=
	    0);
	/* ... but not while the writer lives. */
	for (i = 0; i < UI_SESSIONS; i++)
		t->ut_s[i].us_state = UI_ST_WRITING |
		    (uint64_t)getpid() << 32;
	assert_int_equal(ui_session_new(t, B, T0, IDLE, id, csrf), -1);
	free(t);
}

/* Files by name; If-None-Match lists, weak validators, "*". */
static void
test_assets(void **state)
{
	const struct ui_asset	*a;
	char			 v[128];

	(void)state;
	assert_non_null(a = ui_asset_find("", 0));
	assert_string_equal(a->ua_name, "index.html");
	assert_ptr_equal(ui_asset_find("index.html", 10), a);
	assert_null(ui_asset_find("index.htm", 9));
	assert_null(ui_asset_find("index.html/", 11));
	assert_non_null(a = ui_asset_find("app.js", 6));
	assert_int_equal(a->ua_len, strlen(a->ua_data));
	assert_int_equal(strlen(a->ua_etag), 34);
	assert_true(ui_etag_match(a->ua_etag, strlen(a->ua_etag), a->ua_etag));
	snprintf(v, sizeof(v), "\"zz\" , W/%s", a->ua_etag);
	assert_true(ui_etag_match(v, strlen(v), a->ua_etag));
	snprintf(v, sizeof(v), "\"zz\",%s", a->ua_etag);
	assert_true(ui_etag_match(v, strlen(v), a->ua_etag));
	assert_true(ui_etag_match(" * ", 3, a->ua_etag));
	assert_false(ui_etag_match("", 0, a->ua_etag));
	assert_false(ui_etag_match("\"zz\"", 4, a->ua_etag));
	/* Cut one short: not the same. */
	assert_false(ui_etag_match(a->ua_etag, strlen(a->ua_etag) - 1,
	    a->ua_etag));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sessions),
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_assets),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
