/*
 * Unit tests for keygatectl import's parsers (import.c): what each format
 * turns into key objects, where each came from, and what is skipped or
 * refused with which reason.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "import.h"

#define T_MAX	16

/* What a parse handed out. */
struct got {
	json_t	*keys[T_MAX];
	char	 kwhere[T_MAX][IMPORT_WHERE_MAX];
	size_t	 nkeys;
	char	 wwhere[T_MAX][IMPORT_WHERE_MAX];
	char	 wmsg[T_MAX][256];
	size_t	 nwarn;
	char	 err[256];
	int	 rc;
};

static int
got_key(void *arg, json_t *key, const char *where)
{
	struct got	*g = arg;

	assert_true(g->nkeys < T_MAX);
	snprintf(g->kwhere[g->nkeys], IMPORT_WHERE_MAX, "%s", where);
	g->keys[g->nkeys++] = key;
	return (0);
}

static void
got_warn(void *arg, const char *where, const char *msg)
{
	struct got	*g = arg;

	assert_true(g->nwarn < T_MAX);
	snprintf(g->wwhere[g->nwarn], IMPORT_WHERE_MAX, "%s", where);
	snprintf(g->wmsg[g->nwarn++], 256, "%s", msg);
}

/* Parse text as f into a fresh g. */
static struct got *
parse(enum import_format f, const char *text)
{
	struct import_sink	 sk;
	struct got		*g;

	assert_non_null(g = calloc(1, sizeof(*g)));
	sk.is_key = got_key;
	sk.is_warn = got_warn;
	sk.is_arg = g;
	g->rc = import_parse(f, text, strlen(text), &sk, g->err,
	    sizeof(g->err));
	return (g);
}

static void
got_free(struct got *g)
{
	size_t	 i;

	for (i = 0; i < g->nkeys; i++)
		json_decref(g->keys[i]);
	free(g);
}

/* Key n as compact JSON with sorted members equals want. */
static void
key_is(struct got *g, size_t n, const char *where, const char *want)
{
	char	*s;

	assert_true(n < g->nkeys);
	assert_non_null(s = json_dumps(g->keys[n], JSON_COMPACT |
	    JSON_SORT_KEYS));
	if (strcmp(s, want) != 0)
		fail_msg("key %zu: %s, want %s", n, s, want);
	free(s);
	assert_string_equal(g->kwhere[n], where);
}

static void
test_formats(void **state)
{
	enum import_format	 f;

	(void)state;
	assert_int_equal(import_format_parse("nginx-map", &f), 0);
	assert_int_equal(f, IMPORT_NGINX_MAP);
	assert_int_equal(import_format_parse("yaml", &f), -1);
	assert_int_equal(import_format_guess("/x/keys.CSV", &f), 0);
	assert_int_equal(f, IMPORT_CSV);
	assert_int_equal(import_format_guess("kong.yml", &f), 0);
	assert_int_equal(f, IMPORT_KONG);
	assert_int_equal(import_format_guess("a.jsonl", &f), 0);
	assert_int_equal(f, IMPORT_NDJSON);
	assert_int_equal(import_format_guess("keys", &f), -1);
	assert_int_equal(import_format_guess(".csv", &f), -1);
	assert_string_equal(import_format_name(IMPORT_KONG), "kong");
}

static void
test_ndjson(void **state)
{
	struct got	*g;

	(void)state;
	g = parse(IMPORT_NDJSON, "{\"owner\":\"a\",\"secret\":\"s1\"}\n"
	    "\r\n  \n"
	    "{\"owner\":\"b\" \"secret\":\"leaky-secret\"}\n"
	    "[1]\n"
	    "{\"owner\":\"c\",\"owner\":\"d\"}\n"
	    "{\"owner\":\"e\",\"secret\":\"s5\"}");
	assert_int_equal(g->rc, 0);
	assert_int_equal(g->nkeys, 2);
	key_is(g, 0, "line 1", "{\"owner\":\"a\",\"secret\":\"s1\"}");
	key_is(g, 1, "line 7", "{\"owner\":\"e\",\"secret\":\"s5\"}");
	assert_int_equal(g->nwarn, 3);
	assert_string_equal(g->wwhere[0], "line 4");
	assert_string_equal(g->wwhere[1], "line 5");
	assert_string_equal(g->wwhere[2], "line 6");
	/* jansson's reason, without the text it quotes. */
	assert_null(strstr(g->wmsg[0], "leaky"));
	got_free(g);
}

static void
test_csv(void **state)
{
	struct got	*g;

	(void)state;
	g = parse(IMPORT_CSV, "\xef\xbb\xbf Owner ,name,SECRET,scopes,"
	    "disabled,expires\r\n"
	    "acme,\"Acme, Inc.\",\"se\"\"cret,1\",read  write,false,\r\n"
	    "bob,,plain#;{},,yes,2030-01-01T00:00:00Z\n"
	    "\n"
	    "bad,row\n"
	    "carol,\"two\nlines\",s3,r,maybe,\n"
	    "dave,x,\"open\"junk,r,,\n"
	    "erin,x,s4,,,\n");
	assert_int_equal(g->rc, 0);
	assert_int_equal(g->nkeys, 4);
	key_is(g, 0, "line 2", "{\"disabled\":false,\"name\":\"Acme, Inc.\","
	    "\"owner\":\"acme\",\"scopes\":[\"read\",\"write\"],"
	    "\"secret\":\"se\\\"cret,1\"}");
	key_is(g, 1, "line 3", "{\"disabled\":true,\"expires_at\":"
	    "\"2030-01-01T00:00:00Z\",\"owner\":\"bob\",\"secret\":"
	    "\"plain#;{}\"}");
	key_is(g, 2, "line 6", "{\"disabled\":\"maybe\",\"name\":\"two\\n"
	    "lines\",\"owner\":\"carol\",\"scopes\":[\"r\"],\"secret\":\"s3\"}");
	key_is(g, 3, "line 9", "{\"name\":\"x\",\"owner\":\"erin\","
	    "\"secret\":\"s4\"}");
	assert_int_equal(g->nwarn, 2);
	assert_string_equal(g->wwhere[0], "line 5");
	assert_non_null(strstr(g->wmsg[0], "2 fields"));
	assert_string_equal(g->wwhere[1], "line 8");
	assert_non_null(strstr(g->wmsg[1], "quote"));
	got_free(g);
	/* Headers that cannot be used. */
	g = parse(IMPORT_CSV, "owner,colour,secret\na,b,c\n");
	assert_int_equal(g->rc, -1);
	assert_non_null(strstr(g->err, "unknown column \"colour\""));
	got_free(g);
	g = parse(IMPORT_CSV, "owner,name\na,b\n");
	assert_int_equal(g->rc, -1);
	assert_non_null(strstr(g->err, "no secret"));
	got_free(g);
	g = parse(IMPORT_CSV, "owner,expires,expires_at,secret\n");
	assert_int_equal(g->rc, -1);
	assert_non_null(strstr(g->err, "twice"));
	got_free(g);
	g = parse(IMPORT_CSV, "");
	assert_int_equal(g->rc, -1);
	got_free(g);
	/* An unclosed quote at the end is a bad record, not a crash. */
	g = parse(IMPORT_CSV, "owner,secret\na,\"unclosed");
	assert_int_equal(g->rc, 0);
	assert_int_equal(g->nkeys, 0);
	assert_int_equal(g->nwarn, 1);
	got_free(g);
}

static void
test_nginx_map(void **state)
{
	struct got	*g;

	(void)state;
	g = parse(IMPORT_NGINX_MAP, "# the keys\n"
	    "http {\n"
	    "  server { listen 80; }\n"
	    "  map $http_x_api_key $client {\n"
	    "    default \"\";\n"
	    "    hostnames;\n"
	    "    volatile;\n"
	    "    \"a\\\"b;{}#c\" alice;   # comment \"x\n"
	    "    plain.key-1/2= bob;\n"
	    "    ~^regex$ nope;\n"
	    "    include more.map;\n"
	    "    '\\default' carol;\n"
	    "    one two three;\n"
	    "    'k' \"\";\n"
	    "  }\n"
	    "}\n");
	if (g->rc != 0)
		fail_msg("%s", g->err);
	assert_int_equal(g->nkeys, 3);
	key_is(g, 0, "line 8", "{\"name\":\"alice\",\"owner\":\"alice\","
	    "\"secret\":\"a\\\"b;{}#c\"}");
	key_is(g, 1, "line 9", "{\"name\":\"bob\",\"owner\":\"bob\","
	    "\"secret\":\"plain.key-1/2=\"}");
	key_is(g, 2, "line 12", "{\"name\":\"carol\",\"owner\":\"carol\","
	    "\"secret\":\"default\"}");
	assert_int_equal(g->nwarn, 4);
	assert_string_equal(g->wwhere[0], "line 10");
	assert_non_null(strstr(g->wmsg[0], "regular expression"));
	assert_string_equal(g->wwhere[1], "line 11");
	assert_non_null(strstr(g->wmsg[1], "include"));
	assert_string_equal(g->wwhere[2], "line 13");
	assert_string_equal(g->wwhere[3], "line 14");
	got_free(g);
	/* Refused as a whole. */
	g = parse(IMPORT_NGINX_MAP, "server { listen 80; }\n");
	assert_int_equal(g->rc, -1);
	assert_non_null(strstr(g->err, "no \"map"));
	got_free(g);
	g = parse(IMPORT_NGINX_MAP, "map $a $b {\n \"open ;\n");
	assert_int_equal(g->rc, -1);
	assert_non_null(strstr(g->err, "not closed"));
	got_free(g);
	g = parse(IMPORT_NGINX_MAP, "map $a $b {\n k v;\n");
	assert_int_equal(g->rc, -1);
	got_free(g);
	g = parse(IMPORT_NGINX_MAP, "map $a $b { k v }\n");
	assert_int_equal(g->rc, -1);
	assert_non_null(strstr(g->err, "lacks its"));
	got_free(g);
}

static void
test_kong(void **state)
{
	struct got	*g;

	(void)state;
	g = parse(IMPORT_KONG, "_format_version: \"3.0\"\n"
	    "consumers:\n"
	    "- username: alice\n"
	    "  custom_id: c1\n"
	    "  keyauth_credentials:\n"
	    "  - key: alice-key-1\n"
	    "  - key: 12345678\n"
	    "  - tags: [x]\n"
	    "  acls:\n"
	    "  - group: admin\n"
	    "  - group: read\n"
	    "- custom_id: c2\n"
	    "  keyauth_credentials:\n"
	    "  - key: \"c2 \\\"key\\\"\"\n"
	    "- keyauth_credentials:\n"
	    "  - key: orphan\n"
	    "- username: nokeys\n");
	if (g->rc != 0)
		fail_msg("%s", g->err);
	assert_int_equal(g->nkeys, 3);
	key_is(g, 0, "consumer \"alice\", key 1", "{\"owner\":\"alice\","
	    "\"scopes\":[\"admin\",\"read\"],\"secret\":\"alice-key-1\"}");
	key_is(g, 1, "consumer \"alice\", key 2", "{\"owner\":\"alice\","
	    "\"scopes\":[\"admin\",\"read\"],\"secret\":\"12345678\"}");
	key_is(g, 2, "consumer \"c2\", key 1", "{\"owner\":\"c2\","
	    "\"secret\":\"c2 \\\"key\\\"\"}");
	assert_int_equal(g->nwarn, 2);
	assert_string_equal(g->wwhere[0], "consumer \"alice\", key 3");
	assert_string_equal(g->wwhere[1], "consumers[2]");
	got_free(g);
	/* JSON, with a byte order mark. */
	g = parse(IMPORT_KONG, "\xef\xbb\xbf {\"consumers\":[{\"username\":"
	    "\"j\",\"keyauth_credentials\":[{\"key\":\"json-key\"}]}]}");
	assert_int_equal(g->rc, 0);
	key_is(g, 0, "consumer \"j\", key 1", "{\"owner\":\"j\",\"secret\":"
	    "\"json-key\"}");
	got_free(g);
	/* Not decK, bad YAML, bad JSON: refused with a reason. */
	g = parse(IMPORT_KONG, "services: []\n");
	assert_int_equal(g->rc, -1);
	assert_non_null(strstr(g->err, "consumers"));
	got_free(g);
	g = parse(IMPORT_KONG, "consumers:\n  - [unclosed\n");
	assert_int_equal(g->rc, -1);
	assert_non_null(strstr(g->err, "YAML"));
	got_free(g);
	g = parse(IMPORT_KONG, "{\"consumers\": [}");
	assert_int_equal(g->rc, -1);
	assert_non_null(strstr(g->err, "JSON"));
	got_free(g);
	g = parse(IMPORT_KONG, "");
	assert_int_equal(g->rc, -1);
	got_free(g);
}

/* Aliases multiply nodes: the walk stops at IMPORT_NODES_MAX. */
static void
test_kong_aliases(void **state)
{
	char		 buf[4096];
	struct got	*g;
	int		 i, n;

	(void)state;
	n = snprintf(buf, sizeof(buf), "a0: &a0 [x, x, x, x, x, x, x, x]\n");
	for (i = 1; i < 9; i++)
		n += snprintf(buf + n, sizeof(buf) - n, "a%d: &a%d [*a%d, *a%d, "
		    "*a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i, i, i - 1, i - 1,
		    i - 1, i - 1, i - 1, i - 1, i - 1, i - 1);
	snprintf(buf + n, sizeof(buf) - n, "consumers: []\n");
	g = parse(IMPORT_KONG, buf);
	assert_int_equal(g->rc, -1);
	assert_non_null(strstr(g->err, "too large"));
	got_free(g);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_formats),
		cmocka_unit_test(test_ndjson),
		cmocka_unit_test(test_csv),
		cmocka_unit_test(test_nginx_map),
		cmocka_unit_test(test_kong),
		cmocka_unit_test(test_kong_aliases),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
