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

	assert_non_null(h);
	return (forward_keep_header(m, h, creds ? NULL : "x-api-key"));
}

/* Request headers: end-to-end kept, hop-by-hop and keygate's own dropped. */
static void
test_request_headers(void **state)
{
	struct http_msg	 m;

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
	assert_false(forward_keep_header(&m, http_header_find(&m, "cookie"),
	    "cookie"));
	assert_true(forward_keep_header(&m, http_header_find(&m, "x-api-key"),
	    "cookie"));
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
	};
	size_t	 i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (forward_dot_segment(t[i].path, strlen(t[i].path)) !=
		    t[i].dot)
			fail_msg("%s: expected %d", t[i].path, t[i].dot);
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_headers),
		cmocka_unit_test(test_connection_cannot_drop_framing),
		cmocka_unit_test(test_response_headers),
		cmocka_unit_test(test_dot_segments),
		cmocka_unit_test(test_client_reqid),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
