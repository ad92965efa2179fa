/* Unit tests for the forwarding policy (forward.c). */

#include <sys/types.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "forward.h"
#include "http.h"

/* Parse a request, failing the test if it does not parse. */
static void
parse(struct http_msg *m, const char *req)
{
	http_msg_init(m);
	assert_int_equal(http_parse_request(m, req, strlen(req), NULL), 1);
}

/* Is the header named name (first of them) kept? */
static int
kept(const struct http_msg *m, const char *name, int creds)
{
	const struct http_header	*h = http_header_find(m, name);
	struct forward_policy		 fp = { creds ? NULL : "x-api-key", 0,
					    NULL, 0 };

	assert_non_null(h);
	return (forward_keep_header(m, h, &fp));
}

/* Is the header named exactly name (case included) kept under fp? */
static int
kept_as(const struct http_msg *m, const char *name,
    const struct forward_policy *fp)
{
	size_t	 i;

	for (i = 0; i < m->hm_nheaders; i++)
		if (m->hm_headers[i].h_namelen == strlen(name) &&
		    memcmp(m->hm_headers[i].h_name, name, strlen(name)) == 0)
			return (forward_keep_header(m, &m->hm_headers[i], fp));
	fail_msg("no header %s", name);
	return (-1);
}

/* Request headers: end-to-end kept, hop-by-hop and keygate's own dropped. */
static void
test_request_headers(void **state)
{
	struct http_msg		 m;
	struct forward_policy	 fp = { NULL, 0, NULL, 0 };

	parse(&m, "POST /x HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n"
	    "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\n"
	    "TE: trailers\r\nTrailer: X\r\nUpgrade: ws\r\n"
	    "Proxy-Authorization: p\r\nProxy-Foo: q\r\nX-Consumer-Id: evil\r\n"
	    "x-key-id: k\r\nX-App-Id: a\r\nX-Scopes: s\r\nX-Auth-Scheme: x\r\n"
	    "X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\n"
	    "X-Request-Id: r\r\nExpect: 100-continue\r\nAuthorization: b\r\n"
	    "X-API-KEY: live_x\r\nContent-Length: 3\r\nCookie: c\r\n\r\n");
	assert_true(kept(&m, "host", 0));
	assert_true(kept(&m, "accept", 0));
	assert_true(kept(&m, "content-length", 0));
	assert_true(kept(&m, "cookie", 0));
	assert_false(kept(&m, "connection", 0));
	assert_false(kept(&m, "x-hop", 0));	/* named by Connection */
	assert_false(kept(&m, "keep-alive", 0));
	assert_false(kept(&m, "te", 0));
	assert_false(kept(&m, "trailer", 0));
	assert_false(kept(&m, "upgrade", 0));
	assert_false(kept(&m, "proxy-authorization", 0));
	assert_false(kept(&m, "proxy-foo", 0));
	assert_false(kept(&m, "x-consumer-id", 1));
	assert_false(kept(&m, "x-key-id", 1));
	assert_false(kept(&m, "x-app-id", 1));
	assert_false(kept(&m, "x-scopes", 1));
	assert_false(kept(&m, "x-auth-scheme", 1));
	assert_false(kept(&m, "x-forwarded-for", 1));
	assert_false(kept(&m, "x-forwarded-proto", 1));
	assert_false(kept(&m, "x-request-id", 1));
	assert_false(kept(&m, "expect", 1));
	/* Credentials only with forward_credentials. */
	assert_false(kept(&m, "authorization", 0));
	assert_false(kept(&m, "x-api-key", 0));
	assert_true(kept(&m, "authorization", 1));
	assert_true(kept(&m, "x-api-key", 1));
	/* A configured api_key_header is the credential dropped instead. */
	fp.fp_keyhdr = "cookie";
	assert_false(forward_keep_header(&m, http_header_find(&m, "cookie"),
	    &fp));
	assert_true(forward_keep_header(&m, http_header_find(&m, "x-api-key"),
	    &fp));
}

/*
 * A jwt_provider's headers= names are keygate's own: a client's copy is
 * dropped on every route, in either spelling, so that a request decided
 * by another scheme cannot carry a forged X-Tenant-Id.
 */
static void
test_jwt_mapped_headers(void **state)
{
	struct jwt_provider	 jp[2];
	struct forward_policy	 fp = { "x-api-key", 1, jp, 2 };
	struct http_msg		 m;

	memset(jp, 0, sizeof(jp));
	jp[1].jp_headers[0].hm_claim = "tid";
	jp[1].jp_headers[0].hm_header = "X-Tenant-Id";
	jp[1].jp_nheaders = 1;
	parse(&m, "GET /x HTTP/1.1\r\nHost: h\r\nx-tenant-id: evil\r\n"
	    "X_Tenant_Id: evil\r\nX-Tenant: ok\r\n\r\n");
	assert_false(forward_keep_header(&m, &m.hm_headers[1], &fp));
	assert_false(forward_keep_header(&m, &m.hm_headers[2], &fp));
	assert_true(forward_keep_header(&m, &m.hm_headers[3], &fp));
	fp.fp_njwt = 0;
	assert_true(forward_keep_header(&m, &m.hm_headers[1], &fp));
	(void)state;
}

/*
 * Underscores: CGI, WSGI, PHP and Rack read "X_Consumer_Id" as the
 * HTTP_X_CONSUMER_ID of "X-Consumer-Id".  Such names are dropped by
 * default; with underscores_in_headers on they are kept, except the
 * underscore spellings of every name the policy drops.
 */
static void
test_underscore_headers(void **state)
{
	static const char *const protected[] = {
		"X_Consumer_Id", "x_key_id", "X_App-Id", "X_Scopes",
		"X_Auth_Scheme", "X_Forwarded_For", "X_Forwarded_Proto",
		"X_Request_Id", "Keep_Alive", "Transfer_Encoding",
		"Proxy_Authorization", "Proxy_X", "X_Hop", "Content_Length",
		"X_API_KEY", "x_api-key",
	};
	struct forward_policy	 off = { "x-api-key", 0, NULL, 0 };
	struct forward_policy	 on = { "x-api-key", 1, NULL, 0 };
	struct forward_policy	 oncreds = { NULL, 1, NULL, 0 };
	struct http_msg		 m;
	size_t			 i;

	parse(&m, "GET /x HTTP/1.1\r\nHost: h\r\nConnection: x-hop\r\n"
	    "X_Consumer_Id: admin\r\nx_key_id: k\r\nX_App-Id: a\r\n"
	    "X-Scopes_: s\r\nX_Scopes: s\r\nX_Auth_Scheme: x\r\n"
	    "X_Forwarded_For: 1.2.3.4\r\n"
	    "X_Forwarded_Proto: https\r\nX_Request_Id: r\r\nKeep_Alive: 1\r\n"
	    "Transfer_Encoding: chunked\r\nProxy_Authorization: p\r\n"
	    "Proxy_X: 1\r\nX_Hop: 1\r\nContent_Length: 5\r\n"
	    "X_API_KEY: live_x\r\nx_api-key: live_y\r\nMy_Header: 1\r\n"
	    "Authorization_: b\r\nMy-Header: 2\r\n\r\n");
	for (i = 0; i < sizeof(protected) / sizeof(protected[0]); i++) {
		if (kept_as(&m, protected[i], &off))
			fail_msg("%s kept with underscores off", protected[i]);
		if (kept_as(&m, protected[i], &on))
			fail_msg("%s kept with underscores on", protected[i]);
	}
	/* X-Scopes_ is not X-Scopes: only '_' <-> '-' is folded. */
	assert_false(kept_as(&m, "X-Scopes_", &off));
	assert_true(kept_as(&m, "X-Scopes_", &on));
	assert_false(kept_as(&m, "My_Header", &off));
	assert_true(kept_as(&m, "My_Header", &on));
	assert_false(kept_as(&m, "Authorization_", &off));
	assert_true(kept_as(&m, "Authorization_", &on));
	assert_true(kept_as(&m, "My-Header", &off));
	/* forward_credentials on keeps the credentials, in both spellings. */
	assert_true(kept_as(&m, "X_API_KEY", &oncreds));
	assert_false(kept_as(&m, "X_Consumer_Id", &oncreds));
	assert_false(kept_as(&m, "Content_Length", &oncreds));
}

/* A Connection token names a header in either spelling. */
static void
test_connection_underscore_token(void **state)
{
	struct forward_policy	 on = { "x-api-key", 1, NULL, 0 };
	struct http_msg		 m;

	parse(&m, "GET /x HTTP/1.1\r\nHost: h\r\nConnection: x_hop\r\n"
	    "X-Hop: 1\r\nX-Kept: 2\r\n\r\n");
	assert_false(kept_as(&m, "X-Hop", &on));
	assert_true(kept_as(&m, "X-Kept", &on));
}

/* Connection cannot name away the framing (smuggling) or the Host. */
static void
test_connection_cannot_drop_framing(void **state)
{
	struct http_msg	 m;

	parse(&m, "POST /x HTTP/1.1\r\nHost: h\r\n"
	    "Connection: content-length, host, x-other\r\nX-Other: 1\r\n"
	    "Content-Length: 42\r\n\r\n");
	assert_true(kept(&m, "content-length", 0));
	assert_true(kept(&m, "host", 0));
	assert_false(kept(&m, "x-other", 0));
}

/* Responses lose only hop-by-hop headers. */
static void
test_response_headers(void **state)
{
	const char	*r = "HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\n"
	    "X-Hop: 1\r\nKeep-Alive: t\r\nX-Request-Id: up\r\n"
	    "X-Consumer-Id: c\r\nContent-Length: 0\r\nSet-Cookie: s\r\n\r\n";
	struct http_msg	 m;

	http_msg_init(&m);
	assert_int_equal(http_parse_response(&m, r, strlen(r), NULL,
	    HTTP_M_GET), 1);
	assert_false(forward_keep_response_header(&m,
	    http_header_find(&m, "connection")));
	assert_false(forward_keep_response_header(&m,
	    http_header_find(&m, "x-hop")));
	assert_false(forward_keep_response_header(&m,
	    http_header_find(&m, "keep-alive")));
	assert_true(forward_keep_response_header(&m,
	    http_header_find(&m, "x-request-id")));
	assert_true(forward_keep_response_header(&m,
	    http_header_find(&m, "x-consumer-id")));
	assert_true(forward_keep_response_header(&m,
	    http_header_find(&m, "set-cookie")));
}

/* Dot segments, plain and %2e, anywhere in the path. */
static void
test_dot_segments(void **state)
{
	static const struct {
		const char	*path;
		int		 dot;
	} t[] = {
		{ "/", 0 }, { "/a/b", 0 }, { "/.x", 0 }, { "/x.", 0 },
		{ "/...", 0 }, { "/a..b", 0 }, { "/%2ex", 0 }, { "/%2", 0 },
		{ "/%2e%2e%2e", 0 }, { "//", 0 },
		{ "/.", 1 }, { "/..", 1 }, { "/./a", 1 }, { "/a/../b", 1 },
		{ "/a/..", 1 }, { "/%2e/a", 1 }, { "/%2E%2e/a", 1 },
		{ "/a/.%2e/b", 1 }, { "/a/%2e.", 1 }, { "./a", 1 },
		/* Path parameters: servlet containers read "..;x" as "..". */
		{ "/a;x/b", 0 }, { "/a/b;..", 0 }, { "/a/;../b", 0 },
		{ "/a/..;/b", 1 }, { "/a/..;jsessionid=1/b", 1 },
		{ "/a/.;x", 1 }, { "/a/%2e%2e;/b", 1 },
	};
	size_t	 i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (forward_dot_segment(t[i].path, strlen(t[i].path)) !=
		    t[i].dot)
			fail_msg("%s: expected %d", t[i].path, t[i].dot);
	}
}

/*
 * forward_normalize_path(): each path, merging slashes and not, with the
 * expected result or NULL for a refusal; also in place, and a second pass
 * must change nothing.
 */
static void
test_normalize_path(void **state)
{
	static const struct {
		const char	*in;
		const char	*merged;	/* NULL: refused */
		const char	*kept;		/* merge_slashes off */
	} t[] = {
		{ "/", "/", "/" },
		{ "/admin", "/admin", "/admin" },
		{ "/%61dmin", "/admin", "/admin" },
		{ "/%41DMIN", "/ADMIN", "/ADMIN" },	/* case is kept */
		{ "//admin", "/admin", "//admin" },
		{ "/a//b", "/a/b", "/a//b" },
		{ "/a///b//", "/a/b/", "/a///b//" },
		{ "/%7e%2D%2e%5f%30", "/~-._0", "/~-._0" },
		{ "/a%3ab%3Ac", "/a%3Ab%3Ac", "/a%3Ab%3Ac" },
		{ "/%c3%a9", "/%C3%A9", "/%C3%A9" },
		{ "/%00", "/%00", "/%00" },
		{ "/%25", "/%25", "/%25" },
		{ "/%252e%252e/", "/%252e%252e/", "/%252e%252e/" },
		{ "/%20x", "/%20x", "/%20x" },
		{ "/a.b/.c/d..", "/a.b/.c/d..", "/a.b/.c/d.." },
		{ "/%2e%2e%2e", "/...", "/..." },
		{ "/a%2fb", NULL, NULL },
		{ "/a%2Fb", NULL, NULL },
		{ "/%2e%2e/admin", NULL, NULL },
		{ "/public/%2E%2e/admin", NULL, NULL },
		{ "/a/%2e/b", NULL, NULL },
		{ "/a/../b", NULL, NULL },
		{ "/a/.", NULL, NULL },
		{ "/a/%2e", NULL, NULL },
		{ "/.%2e", NULL, NULL },
		{ "/%", NULL, NULL },
		{ "/%4", NULL, NULL },
		{ "/%zz", NULL, NULL },
		{ "/%4g", NULL, NULL },
		{ "/a%", NULL, NULL },
		{ "//..//x", NULL, NULL },
		{ "/public/..;/admin", NULL, NULL },
		{ "/a\\b", NULL, NULL },
		{ "/public\\..\\admin", NULL, NULL },
		{ "/a%5cb", NULL, NULL },
		{ "/a%5Cb", NULL, NULL },
		{ "/a;b/c", "/a;b/c", "/a;b/c" },
	};
	const char	*cause, *want;
	char		 buf[64], out[64];
	size_t		 i, len, len2;
	int		 flags, rc;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		for (flags = 0; flags <= FORWARD_MERGE_SLASHES; flags++) {
			want = flags ? t[i].merged : t[i].kept;
			cause = NULL;
			rc = forward_normalize_path(t[i].in, strlen(t[i].in),
			    out, &len, flags, &cause);
			if (want == NULL) {
				if (rc != -1 || cause == NULL)
					fail_msg("%s (flags %d): not refused",
					    t[i].in, flags);
				continue;
			}
			if (rc != 0 || len != strlen(want) ||
			    memcmp(out, want, len) != 0)
				fail_msg("%s (flags %d): rc %d \"%.*s\", want "
				    "\"%s\"", t[i].in, flags, rc,
				    rc == 0 ? (int)len : 0, out, want);
			/* In place gives the same. */
			memcpy(buf, t[i].in, strlen(t[i].in));
			assert_int_equal(forward_normalize_path(buf,
			    strlen(t[i].in), buf, &len2, flags, &cause), 0);
			assert_int_equal(len2, len);
			assert_memory_equal(buf, want, len);
			/* A normalised path is a fixed point. */
			assert_int_equal(forward_normalize_path(out, len, buf,
			    &len2, flags, &cause), 0);
			assert_int_equal(len2, len);
			assert_memory_equal(buf, want, len);
		}
	}
}

/* A client's X-Request-Id is kept only when it is short and plain. */
static void
test_client_reqid(void **state)
{
	struct http_msg	 m;
	const char	*id;
	size_t		 len;
	char		 req[512];

	parse(&m, "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: ab.C_1:2-3\r\n\r\n");
	assert_int_equal(forward_client_reqid(&m, &id, &len), 1);
	assert_int_equal(len, 10);
	assert_memory_equal(id, "ab.C_1:2-3", 10);
	parse(&m, "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: a b\r\n\r\n");
	assert_int_equal(forward_client_reqid(&m, &id, &len), 0);
	parse(&m, "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: a\"\r\n\r\n");
	assert_int_equal(forward_client_reqid(&m, &id, &len), 0);
	snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: h\r\n"
	    "X-Request-Id: %0129d\r\n\r\n", 0);
	parse(&m, req);
	assert_int_equal(forward_client_reqid(&m, &id, &len), 0);
	parse(&m, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
	assert_int_equal(forward_client_reqid(&m, &id, &len), 0);
}

/* The console's session cookie never goes upstream; others do, as sent. */
static void
test_cookie_strip(void **state)
{
	static const struct {
		const char	*in, *out;	/* out NULL: as it is */
	} cases[] = {
		{ "a=1; b=2", NULL },
		{ "keygate_sessionx=1", NULL },
		{ "keygate_session=abc", "" },
		{ "a=1; keygate_session=abc; b=2", "a=1; b=2" },
		{ "keygate_session=x;a=1", "a=1" },
		{ "a=1 ;  keygate_session=;b=2 ", "a=1; b=2" },
		{ "a=1;keygate_session=1;keygate_session=2", "a=1" },
	};
	char	 out[128];
	ssize_t	 n;
	size_t	 i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		n = forward_cookie_strip(cases[i].in, strlen(cases[i].in), out);
		if (cases[i].out == NULL) {
			assert_int_equal(n, -1);
			continue;
		}
		assert_true(n >= 0);
		out[n] = '\0';
		assert_string_equal(out, cases[i].out);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_headers),
		cmocka_unit_test(test_jwt_mapped_headers),
		cmocka_unit_test(test_connection_cannot_drop_framing),
		cmocka_unit_test(test_response_headers),
		cmocka_unit_test(test_underscore_headers),
		cmocka_unit_test(test_connection_underscore_token),
		cmocka_unit_test(test_dot_segments),
		cmocka_unit_test(test_normalize_path),
		cmocka_unit_test(test_client_reqid),
		cmocka_unit_test(test_cookie_strip),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
