/*
 * Unit tests for routes: method lists, auth lists, pattern compilation and
 * first-match search.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http.h"
#include "route.h"

/* One route of a test table. */
struct spec {
	const char	*methods;
	const char	*pattern;
	const char	*auth;
};

/* Build a route table from specs, as the configuration parser does. */
static void
table_build(struct route_table *rt, const struct spec *s, size_t n)
{
	struct route	*r;
	char		 err[256];
	size_t		 i;

	memset(rt, 0, sizeof(*rt));
	assert_non_null(rt->rt_routes = calloc(n, sizeof(*rt->rt_routes)));
	for (i = 0; i < n; i++) {
		r = &rt->rt_routes[i];
		rt->rt_nroutes++;
		if (route_parse_methods(s[i].methods, &r->r_methods, err,
		    sizeof(err)) == -1 ||
		    route_compile(r, s[i].pattern, err, sizeof(err)) == -1 ||
		    route_parse_auth(r, s[i].auth, err, sizeof(err)) == -1)
			fail_msg("route %zu: %s", i + 1, err);
		r->r_index = (int)i + 1;
		r->r_line = (int)i + 10;
	}
	assert_int_equal(route_table_init(rt), 0);
	assert_non_null(rt->rt_md);
}

/* 1-based index of the route matching (mbit, path), 0 if none. */
static int
match_index(const struct route_table *rt, int mbit, const char *path,
    size_t len)
{
	const struct route	*r;
	char			 err[256];

	if (route_match(rt, mbit, path, len, &r, err, sizeof(err)) == -1)
		fail_msg("%s", err);
	if (r == NULL)
		return (0);
	return (r->r_index);
}

/* Method lists: names, "*", and every kind of mistake. */
static void
test_methods(void **state)
{
	static const struct {
		const char	*s;
		int		 bits;
		const char	*err;
	} t[] = {
		{ "*", HTTP_M_ANY, NULL },
		{ "GET", HTTP_M_GET, NULL },
		{ "GET,HEAD", HTTP_M_GET | HTTP_M_HEAD, NULL },
		{ "GET,HEAD,POST,PUT,DELETE,PATCH,OPTIONS,TRACE,CONNECT",
		    HTTP_M_ANY & ~HTTP_M_OTHER, NULL },
		{ "CONNECT,OPTIONS", HTTP_M_CONNECT | HTTP_M_OPTIONS, NULL },
		{ "get", 0, "unknown method \"get\"" },
		{ "GET,BREW", 0, "unknown method \"BREW\"" },
		{ "GET,*", 0, "unknown method \"*\"" },
		{ "**", 0, "unknown method \"**\"" },
		{ "GET ", 0, "unknown method \"GET \"" },
		{ "", 0, "empty method in \"\"" },
		{ ",GET", 0, "empty method in \",GET\"" },
		{ "GET,", 0, "empty method in \"GET,\"" },
		{ "GET,,PUT", 0, "empty method in \"GET,,PUT\"" },
		{ "PUT,GET,PUT", 0, "duplicate method \"PUT\"" },
	};
	char	 err[256];
	size_t	 i;
	int	 bits, rc;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		err[0] = '\0';
		rc = route_parse_methods(t[i].s, &bits, err, sizeof(err));
		if (t[i].err == NULL && (rc != 0 || bits != t[i].bits))
			fail_msg("\"%s\": rc %d bits %#x err %s", t[i].s, rc,
			    bits, err);
		if (t[i].err != NULL && (rc != -1 ||
		    strcmp(err, t[i].err) != 0))
			fail_msg("\"%s\": rc %d err \"%s\", want \"%s\"",
			    t[i].s, rc, err, t[i].err);
	}
}

/* auth= lists and the names of the schemes. */
static void
test_auth(void **state)
{
	static const struct {
		const char	*s;
		int		 n, a0, a1;
		const char	*err;
	} t[] = {
		{ "anonymous", 1, ROUTE_AUTH_ANONYMOUS, 0, NULL },
		{ "deny", 1, ROUTE_AUTH_DENY, 0, NULL },
		{ "deny,anonymous", 2, ROUTE_AUTH_DENY, ROUTE_AUTH_ANONYMOUS,
		    NULL },
		{ "api-key", 1, ROUTE_AUTH_API_KEY, 0, NULL },
		{ "app-key,api-key", 2, ROUTE_AUTH_APP_KEY, ROUTE_AUTH_API_KEY,
		    NULL },
		{ "api-key,anonymous", 2, ROUTE_AUTH_API_KEY,
		    ROUTE_AUTH_ANONYMOUS, NULL },
		{ "api-key,api-key", 0, 0, 0,
		    "duplicate auth scheme \"api-key\"" },
		{ "API-KEY", 0, 0, 0, "unknown auth scheme \"API-KEY\"" },
		{ "jwt", 1, ROUTE_AUTH_JWT, 0, NULL },
		{ "JWT", 0, 0, 0, "unknown auth scheme \"JWT\"" },
		{ "basic", 0, 0, 0, "unknown auth scheme \"basic\"" },
		{ "ANONYMOUS", 0, 0, 0, "unknown auth scheme \"ANONYMOUS\"" },
		{ "", 0, 0, 0, "empty auth scheme in \"\"" },
		{ "deny,", 0, 0, 0, "empty auth scheme in \"deny,\"" },
		{ "anonymous,anonymous", 0, 0, 0,
		    "duplicate auth scheme \"anonymous\"" },
	};
	struct route	 r;
	char		 err[256];
	size_t		 i;
	int		 rc;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		memset(&r, 0, sizeof(r));
		err[0] = '\0';
		rc = route_parse_auth(&r, t[i].s, err, sizeof(err));
		if (t[i].err != NULL) {
			if (rc != -1 || strcmp(err, t[i].err) != 0)
				fail_msg("\"%s\": rc %d err \"%s\"", t[i].s,
				    rc, err);
			continue;
		}
		if (rc != 0 || r.r_nauth != t[i].n ||
		    (int)r.r_auth[0] != t[i].a0 ||
		    (t[i].n > 1 && (int)r.r_auth[1] != t[i].a1))
			fail_msg("\"%s\": rc %d n %d err %s", t[i].s, rc,
			    r.r_nauth, err);
	}
	assert_string_equal(route_auth_name(ROUTE_AUTH_ANONYMOUS), "anonymous");
	assert_string_equal(route_auth_name(ROUTE_AUTH_DENY), "deny");
	assert_string_equal(route_auth_name(ROUTE_AUTH_JWT), "jwt");
}

/*
 * jwt and jwt:NAME in auth= lists: r_jwt is -1 for every scheme but
 * jwt:NAME, which waits for the configuration to resolve NAME; a name
 * once per list, and plain jwt never together with a named one.
 */
static void
test_auth_jwt(void **state)
{
	enum { U = ROUTE_JWT_UNRESOLVED, J = ROUTE_AUTH_JWT };
	static const struct {
		const char	*s;
		int		 n;
		int		 auth[ROUTE_MAX_AUTH];
		int		 jwt[ROUTE_MAX_AUTH];
		const char	*err;
	} t[] = {
		{ "jwt", 1, { J }, { -1 }, NULL },
		{ "jwt:entra", 1, { J }, { U }, NULL },
		{ "jwt:entra,app-key", 2, { J, ROUTE_AUTH_APP_KEY }, { U, -1 },
		    NULL },
		{ "app-key,jwt", 2, { ROUTE_AUTH_APP_KEY, J }, { -1, -1 },
		    NULL },
		{ "jwt:a,jwt:b,api-key", 3, { J, J, ROUTE_AUTH_API_KEY },
		    { U, U, -1 }, NULL },
		{ "anonymous,jwt:A-_9", 2, { ROUTE_AUTH_ANONYMOUS, J },
		    { -1, U }, NULL },
		{ "jwt:abcdefghijklmnopqrstuvwxyz012345", 1, { J }, { U },
		    NULL },
		{ "jwt:a,jwt:b,jwt:c,jwt:d,jwt:e", 5, { J, J, J, J, J },
		    { U, U, U, U, U }, NULL },
		{ "jwt:a,jwt:b,jwt:c,jwt:d,jwt:e,jwt:f", 0, { 0 }, { 0 },
		    "too many auth schemes in \"jwt:a,jwt:b,jwt:c,jwt:d,jwt:e,"
		    "jwt:f\"" },
		{ "jwt:abcdefghijklmnopqrstuvwxyz0123456", 0, { 0 }, { 0 },
		    "invalid jwt_provider name in \"jwt:abcdefghijklmnopqrstuv"
		    "wxyz0123456\" (expected 1 to 32 letters, digits, '_' or "
		    "'-')" },
		{ "jwt:", 0, { 0 }, { 0 }, "unknown auth scheme \"jwt:\"" },
		{ "jwt:a.b", 0, { 0 }, { 0 }, "invalid jwt_provider name in "
		    "\"jwt:a.b\" (expected 1 to 32 letters, digits, '_' or "
		    "'-')" },
		{ "jwt:a:b", 0, { 0 }, { 0 }, "invalid jwt_provider name in "
		    "\"jwt:a:b\" (expected 1 to 32 letters, digits, '_' or "
		    "'-')" },
		{ "jwtx", 0, { 0 }, { 0 }, "unknown auth scheme \"jwtx\"" },
		{ "jwt,jwt", 0, { 0 }, { 0 }, "duplicate auth scheme \"jwt\"" },
		{ "jwt:a,api-key,jwt:a", 0, { 0 }, { 0 },
		    "duplicate auth scheme \"jwt:a\"" },
		{ "jwt,jwt:a", 0, { 0 }, { 0 }, "auth schemes \"jwt\" and "
		    "\"jwt:a\" together are ambiguous (\"jwt\" accepts every "
		    "jwt_provider)" },
		{ "jwt:a,jwt", 0, { 0 }, { 0 }, "auth schemes \"jwt:a\" and "
		    "\"jwt\" together are ambiguous (\"jwt\" accepts every "
		    "jwt_provider)" },
		{ "jwt:ab,jwt:a", 2, { J, J }, { U, U }, NULL },
	};
	struct route	 r;
	char		 err[256];
	size_t		 i;
	int		 j, rc;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		memset(&r, 0, sizeof(r));
		err[0] = '\0';
		rc = route_parse_auth(&r, t[i].s, err, sizeof(err));
		if (t[i].err != NULL) {
			if (rc != -1 || strcmp(err, t[i].err) != 0)
				fail_msg("\"%s\": rc %d err \"%s\"", t[i].s,
				    rc, err);
			continue;
		}
		if (rc != 0 || r.r_nauth != t[i].n)
			fail_msg("\"%s\": rc %d n %d err %s", t[i].s, rc,
			    r.r_nauth, err);
		for (j = 0; j < t[i].n; j++)
			if ((int)r.r_auth[j] != t[i].auth[j] ||
			    r.r_jwt[j] != t[i].jwt[j])
				fail_msg("\"%s\": scheme %d is %d/%d", t[i].s, j,
				    (int)r.r_auth[j], r.r_jwt[j]);
	}
}

/* Compilation: the pattern is kept as written; errors say where. */
static void
test_compile(void **state)
{
	struct route	 r;
	char		 err[256];
	uint32_t	 jit = 0;

	memset(&r, 0, sizeof(r));
	assert_int_equal(route_compile(&r, "^/api/v[0-9]+/", err,
	    sizeof(err)), 0);
	assert_string_equal(r.r_pattern, "^/api/v[0-9]+/");
	assert_non_null(r.r_code);
	/* JIT is used whenever the library has it. */
	assert_int_equal(pcre2_config(PCRE2_CONFIG_JIT, &jit), 0);
	assert_int_equal(r.r_jit, jit ? 1 : 0);
	pcre2_code_free(r.r_code);
	free(r.r_pattern);

	memset(&r, 0, sizeof(r));
	assert_int_equal(route_compile(&r, "^/(a|b", err, sizeof(err)), -1);
	assert_string_equal(err, "bad regex \"^/(a|b\": missing closing "
	    "parenthesis at offset 6");
	assert_null(r.r_code);
	assert_null(r.r_pattern);
	assert_int_equal(route_compile(&r, "x**", err, sizeof(err)), -1);
	assert_string_equal(err, "bad regex \"x**\": quantifier does not "
	    "follow a repeatable item at offset 2");
	assert_int_equal(route_compile(&r, "[b-a]", err, sizeof(err)), -1);
	assert_string_equal(err, "bad regex \"[b-a]\": range out of order in "
	    "character class at offset 3");
}

static const struct spec demo[] = {
	{ "GET,HEAD", "^/store(/|$)", "anonymous" },		/* 1 */
	{ "POST", "^/store/orders$", "anonymous" },		/* 2 */
	{ "*", "^/apps(/|$)", "anonymous" },			/* 3 */
	{ "DELETE", "^/api/v1/contacts/[0-9]+$", "deny" },	/* 4 */
	{ "GET", "^/api/v1/contacts", "anonymous" },		/* 5 */
	{ "GET", "admin", "deny" },				/* 6 */
	{ "PUT,PATCH", "^/api/", "anonymous" },			/* 7 */
	{ "OPTIONS", ".*", "anonymous" },			/* 8 */
	{ "GET", "^/exact$", "anonymous" },			/* 9 */
	{ "GET", "^/caf\\xc3\\xa9$", "anonymous" },		/* 10 */
	{ "*", "^/deny", "deny" },				/* 11 */
};

/* A table of requests and the route each one must get. */
static const struct {
	int		 mbit;
	const char	*path;
	int		 want;
} cases[] = {
	{ HTTP_M_GET, "/store", 1 },
	{ HTTP_M_HEAD, "/store/item/7", 1 },
	{ HTTP_M_GET, "/storefront", 0 },		/* (/|$) anchors */
	{ HTTP_M_POST, "/store/orders", 2 },
	{ HTTP_M_POST, "/store/orders/1", 0 },
	{ HTTP_M_PUT, "/store", 0 },			/* no PUT route */
	{ HTTP_M_GET, "/apps", 3 },
	{ HTTP_M_CONNECT, "/apps/x", 3 },
	{ HTTP_M_OTHER, "/apps/x", 3 },			/* "*" has OTHER */
	{ HTTP_M_TRACE, "/apps/", 3 },
	{ HTTP_M_DELETE, "/api/v1/contacts/42", 4 },
	{ HTTP_M_DELETE, "/api/v1/contacts/42x", 0 },
	{ HTTP_M_GET, "/api/v1/contacts/42", 5 },	/* first match wins */
	{ HTTP_M_GET, "/api/v1/contactsXYZ", 5 },
	{ HTTP_M_GET, "/x/admin/y", 6 },		/* unanchored */
	{ HTTP_M_HEAD, "/x/admin/y", 0 },
	{ HTTP_M_PATCH, "/api/v2/things", 7 },
	{ HTTP_M_PUT, "/api/", 7 },
	{ HTTP_M_PUT, "/API/", 0 },			/* case matters */
	{ HTTP_M_OPTIONS, "/anything", 8 },
	{ HTTP_M_OPTIONS, "", 8 },
	{ HTTP_M_GET, "/exact", 9 },
	{ HTTP_M_GET, "/exact/", 0 },
	{ HTTP_M_GET, "/caf\xc3\xa9", 10 },
	{ HTTP_M_GET, "/caf\xe9", 0 },
	{ HTTP_M_POST, "/deny/me", 11 },
	{ HTTP_M_GET, "/nothing", 0 },
	{ HTTP_M_GET, "/admin", 6 },
	{ 0, "/apps", 0 },				/* no method bit */
};

/* Every entry of cases[] gets its route, with JIT and without. */
static void
test_match_table(void **state)
{
	struct route_table	 rt;
	size_t			 i, j;
	int			 got, pass;

	table_build(&rt, demo, sizeof(demo) / sizeof(demo[0]));
	for (pass = 0; pass < 2; pass++) {
		for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			got = match_index(&rt, cases[i].mbit, cases[i].path,
			    strlen(cases[i].path));
			if (got != cases[i].want)
				fail_msg("pass %d, case %zu: method %#x path "
				    "\"%s\": route %d, want %d", pass, i,
				    cases[i].mbit, cases[i].path, got,
				    cases[i].want);
		}
		/* Second pass: the interpreter, through pcre2_match(). */
		for (j = 0; j < rt.rt_nroutes; j++)
			rt.rt_routes[j].r_jit = 0;
	}
	route_table_free(&rt);
	assert_null(rt.rt_routes);
	assert_int_equal(rt.rt_nroutes, 0);
	assert_null(rt.rt_md);
}

/* The caller passes the path without the query: only len bytes count. */
static void
test_query_excluded(void **state)
{
	static const struct spec s[] = {
		{ "GET", "^/search$", "anonymous" },
		{ "GET", "\\?", "anonymous" },
	};
	struct route_table	 rt;
	const char		*target = "/search?q=1";

	table_build(&rt, s, 2);
	assert_int_equal(match_index(&rt, HTTP_M_GET, target, 7), 1);
	assert_int_equal(match_index(&rt, HTTP_M_GET, target,
	    strlen(target)), 2);
	assert_int_equal(match_index(&rt, HTTP_M_GET, "/a?", 2), 0);
	route_table_free(&rt);
}

/* Paths are bytes: NUL, 0xff and invalid UTF-8 match like anything else. */
static void
test_binary_paths(void **state)
{
	static const struct spec s[] = {
		{ "GET", "^/bin/\\x00\\xff$", "anonymous" },
		{ "GET", "^/any/.$", "anonymous" },
		{ "GET", "^/nul", "anonymous" },
	};
	struct route_table	 rt;
	size_t			 j;
	int			 pass;

	table_build(&rt, s, 3);
	for (pass = 0; pass < 2; pass++) {
		assert_int_equal(match_index(&rt, HTTP_M_GET, "/bin/\0\xff",
		    7), 1);
		assert_int_equal(match_index(&rt, HTTP_M_GET, "/bin/\0\xfe",
		    7), 0);
		assert_int_equal(match_index(&rt, HTTP_M_GET, "/any/\x80", 6),
		    2);
		assert_int_equal(match_index(&rt, HTTP_M_GET, "/any/\0", 6),
		    2);
		/* A NUL does not end the path: len does. */
		assert_int_equal(match_index(&rt, HTTP_M_GET, "/nu\0l", 5),
		    0);
		assert_int_equal(match_index(&rt, HTTP_M_GET, "/nul\0x", 6),
		    3);
		for (j = 0; j < rt.rt_nroutes; j++)
			rt.rt_routes[j].r_jit = 0;
	}
	route_table_free(&rt);
}

/*
 * A pattern that hits a PCRE2 limit is an error, not "no match": the
 * search stops at that route (the catch-all after it must not decide),
 * with JIT and without.  The limit is lowered in the pattern itself, so
 * that the failure does not depend on the library's defaults.
 */
static void
test_match_error(void **state)
{
	static const struct spec s[] = {
		{ "GET", "(*LIMIT_MATCH=200)^/(a+)+$", "deny" },
		{ "GET", "^/", "anonymous" },
	};
	struct route_table	 rt;
	const struct route	*r;
	char			 path[64], err[256];
	size_t			 j;
	int			 pass;

	memset(path, 'a', sizeof(path));
	path[0] = '/';
	path[sizeof(path) - 1] = 'b';
	table_build(&rt, s, 2);
	for (pass = 0; pass < 2; pass++) {
		err[0] = '\0';
		assert_int_equal(route_match(&rt, HTTP_M_GET, path,
		    sizeof(path), &r, err, sizeof(err)), -1);
		assert_ptr_equal(r, &rt.rt_routes[0]);
		if (strstr(err, "route 1 (line 10): pattern \"(*LIMIT_MATCH="
		    "200)^/(a+)+$\" failed: ") != err ||
		    strstr(err, "limit") == NULL)
			fail_msg("pass %d: message \"%s\"", pass, err);
		/* Paths the pattern can decide still route normally. */
		assert_int_equal(match_index(&rt, HTTP_M_GET, "/aaa", 4), 1);
		assert_int_equal(match_index(&rt, HTTP_M_GET, "/ab", 3), 2);
		assert_int_equal(match_index(&rt, HTTP_M_HEAD, path,
		    sizeof(path)), 0);
		for (j = 0; j < rt.rt_nroutes; j++)
			rt.rt_routes[j].r_jit = 0;
	}
	route_table_free(&rt);
}

/* No routes, or no match data: nothing matches, nothing crashes. */
static void
test_empty(void **state)
{
	struct route_table	 rt;
	static const struct spec s[] = { { "*", "", "anonymous" } };

	memset(&rt, 0, sizeof(rt));
	assert_int_equal(match_index(&rt, HTTP_M_GET, "/", 1), 0);
	assert_int_equal(route_table_init(&rt), 0);
	assert_int_equal(match_index(&rt, HTTP_M_GET, "/", 1), 0);
	route_table_free(&rt);
	route_table_free(&rt);		/* twice is harmless */

	/* The empty pattern matches every path, including the empty one. */
	table_build(&rt, s, 1);
	assert_int_equal(match_index(&rt, HTTP_M_GET, "", 0), 1);
	assert_int_equal(match_index(&rt, HTTP_M_GET, NULL, 0), 1);
	route_table_free(&rt);
}

/* A table whose last route failed to compile is still freed cleanly. */
static void
test_free_partial(void **state)
{
	struct route_table	 rt;
	char			 err[256];

	memset(&rt, 0, sizeof(rt));
	assert_non_null(rt.rt_routes = calloc(2, sizeof(*rt.rt_routes)));
	rt.rt_nroutes = 2;
	assert_int_equal(route_compile(&rt.rt_routes[0], "^/", err,
	    sizeof(err)), 0);
	assert_int_equal(route_compile(&rt.rt_routes[1], "(", err,
	    sizeof(err)), -1);
	route_table_free(&rt);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_methods),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_auth_jwt),
		cmocka_unit_test(test_compile),
		cmocka_unit_test(test_match_table),
		cmocka_unit_test(test_query_excluded),
		cmocka_unit_test(test_binary_paths),
		cmocka_unit_test(test_match_error),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_free_partial),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
