/*
 * Unit tests for the HTTP/1.1 parser (src/http.c).
 *
 * Every request, response and chunked-body case is run three ways: whole,
 * split in two at every byte boundary, and arriving one byte at a time in
 * a buffer that grows (and moves) the way the server's does.  All three
 * must give the same answer, which is what makes the parser safe against
 * request smuggling by segmentation.  Each piece is copied into a buffer
 * of exactly its size, so AddressSanitizer catches any read past len.
 */

#include <sys/types.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http.h"

#define KA	HTTP_F_KEEPALIVE
#define E100	HTTP_F_EXPECT100
#define UPG	HTTP_F_UPGRADE
#define CLOSE	HTTP_F_CONN_CLOSE

#define NONE	HTTP_BODY_NONE
#define LEN	HTTP_BODY_LENGTH
#define CHUNK	HTTP_BODY_CHUNKED
#define EOFB	HTTP_BODY_EOF

/* Limits used by the tables: small, so that 414 and 431 are easy to hit. */
#define T_MAX_LINE	200
#define T_MAX_HEADER	1024
static const struct http_limits tlimits = { T_MAX_LINE, T_MAX_HEADER };

#define S10	"aaaaaaaaaa"
#define S50	S10 S10 S10 S10 S10
#define S200	S50 S50 S50 S50
#define S1K	S200 S200 S200 S200 S200
#define H10	"A: b\r\nA: b\r\nA: b\r\nA: b\r\nA: b\r\n" \
		"A: b\r\nA: b\r\nA: b\r\nA: b\r\nA: b\r\n"
#define H90	H10 H10 H10 H10 H10 H10 H10 H10 H10
#define H99	H90 "A: b\r\nA: b\r\nA: b\r\nA: b\r\nA: b\r\n" \
		"A: b\r\nA: b\r\nA: b\r\nA: b\r\n"
#define H100	H90 H10

#define RL	"GET / HTTP/1.1\r\n"
#define HOST	"Host: a\r\n"

struct req_case {
	const char	*name;
	const char	*raw;
	size_t		 rawlen;	/* 0: strlen(raw) */
	int		 rv;		/* 1, 0 or -1 */
	int		 error;		/* hm_error when rv == -1 */
	const char	*cause;		/* substring of hm_cause when -1 */
	const char	*method;
	const char	*path;
	const char	*query;		/* NULL: no '?' in the target */
	int		 minor;
	enum http_body	 body;
	uint64_t	 cl;
	int		 flags;		/* exact hm_flags */
	size_t		 nheaders;
	size_t		 hdrlen;	/* 0: rawlen */
	const char	*host;		/* NULL: not checked */
};

#define OK(n, r, me, pa, q, mi, b, c, fl, nh)				\
	{ .name = n, .raw = r, .rv = 1, .method = me, .path = pa,	\
	  .query = q, .minor = mi, .body = b, .cl = c, .flags = fl,	\
	  .nheaders = nh }
/* Header section hd followed by rest (body, next request), and a Host. */
#define OKH(n, hd, rest, me, pa, q, mi, b, c, fl, nh, ho)		\
	{ .name = n, .raw = hd rest, .rv = 1, .method = me, .path = pa,	\
	  .query = q, .minor = mi, .body = b, .cl = c, .flags = fl,	\
	  .nheaders = nh, .hdrlen = sizeof(hd) - 1, .host = ho }
#define ERR(n, r, st, ca)						\
	{ .name = n, .raw = r, .rv = -1, .error = st, .cause = ca }
#define ERRN(n, r, st, ca)						\
	{ .name = n, .raw = r, .rawlen = sizeof(r) - 1, .rv = -1,	\
	  .error = st, .cause = ca }
#define MORE(n, r)	{ .name = n, .raw = r, .rv = 0 }

static const struct req_case req_cases[] = {
	/* Valid requests. */
	OK("simple GET", RL HOST "\r\n", "GET", "/", NULL, 1, NONE, 0, KA, 1),
	OK("query", "GET /p/q?x=1&y HTTP/1.1\r\nHost: example.com\r\n\r\n",
	    "GET", "/p/q", "x=1&y", 1, NONE, 0, KA, 1),
	OK("empty query", "GET /x? HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/x",
	    "", 1, NONE, 0, KA, 1),
	OKH("POST with Content-Length and body",
	    "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", "hello",
	    "POST", "/u", NULL, 1, LEN, 5, KA, 2, "a"),
	OK("Content-Length 0", "POST / HTTP/1.1\r\nHost: a\r\n"
	    "Content-Length: 0\r\n\r\n", "POST", "/", NULL, 1, LEN, 0, KA, 2),
	OK("chunked", "POST / HTTP/1.1\r\nHost: a\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n", "POST", "/", NULL, 1, CHUNK,
	    0, KA, 2),
	OK("chunked in capitals", "POST / HTTP/1.1\r\nHost: a\r\n"
	    "transfer-encoding: CHUNKED\r\n\r\n", "POST", "/", NULL, 1, CHUNK,
	    0, KA, 2),
	OK("chunked with trailing space", "POST / HTTP/1.1\r\nHost: a\r\n"
	    "Transfer-Encoding: chunked \r\n\r\n", "POST", "/", NULL, 1, CHUNK,
	    0, KA, 2),
	OK("two identical Content-Length", "PUT /x HTTP/1.1\r\nHost: a\r\n"
	    "Content-Length: 5\r\ncontent-length: 5\r\n\r\n", "PUT", "/x",
	    NULL, 1, LEN, 5, KA, 3),
	OK("Content-Length list 5, 5", "PUT /x HTTP/1.1\r\nHost: a\r\n"
	    "Content-Length: 5,5 ,  5\r\n\r\n", "PUT", "/x", NULL, 1, LEN, 5,
	    KA, 2),
	OK("largest Content-Length", "PUT /x HTTP/1.1\r\nHost: a\r\n"
	    "Content-Length: 9223372036854775807\r\n\r\n", "PUT", "/x", NULL,
	    1, LEN, INT64_MAX, KA, 2),
	OK("HTTP/1.0 without Host", "GET /old HTTP/1.0\r\n\r\n", "GET",
	    "/old", NULL, 0, NONE, 0, 0, 0),
	OK("HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\n"
	    "Connection: Keep-Alive\r\n\r\n", "GET", "/", NULL, 0, NONE, 0, KA,
	    1),
	OK("HTTP/1.0 keep-alive, close", "GET / HTTP/1.0\r\n"
	    "Connection: keep-alive\r\nConnection: close\r\n\r\n", "GET", "/",
	    NULL, 0, NONE, 0, CLOSE, 2),
	OK("Connection: close", RL HOST "Connection: close\r\n\r\n", "GET",
	    "/", NULL, 1, NONE, 0, CLOSE, 2),
	OK("Connection list with close", RL HOST
	    "Connection: keep-alive,  Close ,x\r\n\r\n", "GET", "/", NULL, 1,
	    NONE, 0, CLOSE, 2),
	OK("Expect 100-continue", "POST / HTTP/1.1\r\nHost: a\r\n"
	    "Content-Length: 3\r\nExpect: 100-Continue\r\n\r\n", "POST", "/",
	    NULL, 1, LEN, 3, KA | E100, 3),
	OK("Expect 100-continue ignored in 1.0", "POST / HTTP/1.0\r\n"
	    "Content-Length: 3\r\nExpect: 100-continue\r\n\r\n", "POST", "/",
	    NULL, 0, LEN, 3, 0, 2),
	OK("Upgrade", RL HOST "Connection: Upgrade\r\nUpgrade: websocket\r\n"
	    "\r\n", "GET", "/", NULL, 1, NONE, 0, KA | UPG, 3),
	OKH("absolute-form", "GET http://example.com:8080/a/b?c=d HTTP/1.1\r\n"
	    "Host: other\r\n\r\n", "", "GET", "/a/b", "c=d", 1, NONE, 0, KA, 1,
	    "example.com:8080"),
	OKH("absolute-form without path", "GET HTTP://example.com "
	    "HTTP/1.1\r\nHost: example.com\r\n\r\n", "", "GET", "/", NULL, 1,
	    NONE, 0, KA, 1, "example.com"),
	OKH("absolute-form https with query only", "GET https://h?q=1 "
	    "HTTP/1.1\r\nHost: h\r\n\r\n", "", "GET", "/", "q=1", 1, NONE, 0,
	    KA, 1, "h"),
	OK("OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "OPTIONS",
	    "*", NULL, 1, NONE, 0, KA, 1),
	OK("CONNECT authority-form", "CONNECT example.com:443 HTTP/1.1\r\n"
	    "Host: example.com:443\r\n\r\n", "CONNECT", "example.com:443",
	    NULL, 1, NONE, 0, KA, 1),
	OK("one leading CRLF", "\r\n" RL HOST "\r\n", "GET", "/", NULL, 1,
	    NONE, 0, KA, 1),
	OK("four leading CRLF", "\r\n\r\n\r\n\r\n" RL HOST "\r\n", "GET", "/",
	    NULL, 1, NONE, 0, KA, 1),
	OKH("pipelined second request", RL HOST "\r\n",
	    "GET /two HTTP/1.1\r\nHost: b\r\n\r\n", "GET", "/", NULL, 1, NONE,
	    0, KA, 1, "a"),
	OKH("pipelined after a body", "POST /p HTTP/1.1\r\nHost: a\r\n"
	    "Content-Length: 2\r\n\r\n", "hiGET / HTTP/1.1\r\n", "POST", "/p",
	    NULL, 1, LEN, 2, KA, 2, "a"),
	OKH("pipelined after leading CRLF", "\r\n" RL HOST "\r\n",
	    "\r\nGET /", "GET", "/", NULL, 1, NONE, 0, KA, 1, "a"),
	OK("extension method", "PURGE /c HTTP/1.1\r\nHost: a\r\n\r\n",
	    "PURGE", "/c", NULL, 1, NONE, 0, KA, 1),
	OK("lower-case method is another token", "get / HTTP/1.1\r\n"
	    "Host: a\r\n\r\n", "get", "/", NULL, 1, NONE, 0, KA, 1),
	OK("obs-text and tabs in a value", RL HOST
	    "X-N: \t caf\xc3\xa9\tau lait \t\r\n\r\n", "GET", "/", NULL, 1,
	    NONE, 0, KA, 2),
	OK("empty value", RL HOST "X-Empty:\r\nX-Blank:   \r\n\r\n", "GET",
	    "/", NULL, 1, NONE, 0, KA, 3),
	OK("colon in value", RL HOST "X-T: a:b::c\r\n\r\n", "GET", "/", NULL,
	    1, NONE, 0, KA, 2),
	OK("exactly 100 fields", RL HOST H99 "\r\n", "GET", "/", NULL, 1,
	    NONE, 0, KA, 100),
	OKH("IPv6 Host", RL "Host: [::1]:8080\r\n\r\n", "", "GET", "/", NULL,
	    1, NONE, 0, KA, 1, "[::1]:8080"),
	OKH("empty Host", RL "Host:\r\n\r\n", "", "GET", "/", NULL, 1, NONE,
	    0, KA, 1, ""),
	OK("tchar symbols in names", RL HOST "!#$%&'*+-.^_`|~09aZ: v\r\n\r\n",
	    "GET", "/", NULL, 1, NONE, 0, KA, 2),

	/* Request smuggling: framing that two parsers could disagree on. */
	ERR("CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n", 400, "both"),
	ERR("TE and CL", "POST / HTTP/1.1\r\nHost: a\r\n"
	    "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", 400,
	    "both"),
	ERR("differing duplicate CL", "POST / HTTP/1.1\r\nHost: a\r\n"
	    "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400,
	    "conflicting"),
	ERR("CL list 5, 6", "POST / HTTP/1.1\r\nHost: a\r\n"
	    "Content-Length: 5, 6\r\n\r\n", 400, "conflicting"),
	ERR("CL list with empty element", "POST / HTTP/1.1\r\nHost: a\r\n"
	    "Content-Length: 5,\r\n\r\n", 400, "invalid Content-Length"),
	ERR("CL +5", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
	    400, "invalid Content-Length"),
	ERR("CL -1", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
	    400, "invalid Content-Length"),
	ERR("CL 0x5", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n"
	    "\r\n", 400, "invalid Content-Length"),
	ERR("CL with inner space", "POST / HTTP/1.1\r\nHost: a\r\n"
	    "Content-Length: 1 2\r\n\r\n", 400, "invalid Content-Length"),
	ERR("CL empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
	    400, "invalid Content-Length"),
	ERR("CL 2^63", "POST / HTTP/1.1\r\nHost: a\r\n"
	    "Content-Length: 9223372036854775808\r\n\r\n", 400,
	    "invalid Content-Length"),
	ERR("CL 20 digits", "POST / HTTP/1.1\r\nHost: a\r\n"
	    "Content-Length: 00000000000000000005\r\n\r\n", 400,
	    "invalid Content-Length"),
	ERR("CL 2^64 wraps", "POST / HTTP/1.1\r\nHost: a\r\n"
	    "Content-Length: 18446744073709551621\r\n\r\n", 400,
	    "invalid Content-Length"),
	ERR("TE not final chunked", "POST / HTTP/1.1\r\nHost: a\r\n"
	    "Transfer-Encoding: chunked, gzip\r\n\r\n", 400, "transfer coding"),
	ERR("TE gzip, chunked", "POST / HTTP/1.1\r\nHost: a\r\n"
	    "Transfer-Encoding: gzip, chunked\r\n\r\n", 400, "transfer coding"),
	ERR("TE gzip", "POST / HTTP/1.1\r\nHost: a\r\n"
	    "Transfer-Encoding: gzip\r\n\r\n", 400, "transfer coding"),
	ERR("TE chunked twice in a list", "POST / HTTP/1.1\r\nHost: a\r\n"
	    "Transfer-Encoding: chunked, chunked\r\n\r\n", 400,
	    "transfer coding"),
	ERR("TE chunked in two fields", "POST / HTTP/1.1\r\nHost: a\r\n"
	    "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
	    400, "transfer coding"),
	ERR("TE chunked;x", "POST / HTTP/1.1\r\nHost: a\r\n"
	    "Transfer-Encoding: chunked;x\r\n\r\n", 400, "transfer coding"),
	ERR("TE empty", "POST / HTTP/1.1\r\nHost: a\r\n"
	    "Transfer-Encoding:\r\n\r\n", 400, "transfer coding"),
	ERR("TE identity", "POST / HTTP/1.1\r\nHost: a\r\n"
	    "Transfer-Encoding: identity\r\n\r\n", 400, "transfer coding"),
	ERR("TE with empty list element", "POST / HTTP/1.1\r\nHost: a\r\n"
	    "Transfer-Encoding: ,chunked\r\n\r\n", 400, "transfer coding"),
	ERR("TE xchunked", "POST / HTTP/1.1\r\nHost: a\r\n"
	    "Transfer-Encoding: xchunked\r\n\r\n", 400, "transfer coding"),
	ERR("TE in HTTP/1.0", "POST / HTTP/1.0\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n", 400, "HTTP/1.0"),
	ERR("obs-fold", RL HOST "X-A: one\r\n two\r\n\r\n", 400,
	    "obsolete line folding"),
	ERR("obs-fold detected before the end", RL HOST " b", 400,
	    "obsolete line folding"),
	ERR("obs-fold with tab on first field", RL "\tHost: a\r\n\r\n", 400,
	    "obsolete line folding"),
	ERR("bare CR in a value", RL HOST "X-A: a\rb\r\n\r\n", 400, "bare CR"),
	ERR("bare CR at the end", RL HOST "\rX\r\n", 400, "bare CR"),
	ERR("bare LF line ends", "GET / HTTP/1.1\nHost: a\n\n", 400, "bare LF"),
	ERR("bare LF in a field", RL HOST "X-A: a\nb\r\n\r\n", 400, "bare LF"),
	ERR("bare LF as final line", RL HOST "\n", 400, "bare LF"),
	ERRN("NUL in a value", RL HOST "X-A: a\0b\r\n\r\n", 400, "NUL"),
	ERRN("NUL detected before the end", RL "X-A: \0", 400, "NUL"),
	ERRN("NUL in the request line", "GET /\0 HTTP/1.1\r\n" HOST "\r\n",
	    400, "NUL"),
	ERR("space before colon", RL "Host : a\r\n\r\n", 400,
	    "whitespace before colon"),
	ERR("tab before colon", RL HOST "X-A\t: a\r\n\r\n", 400,
	    "whitespace before colon"),
	ERR("space in header name", RL HOST "X A: a\r\n\r\n", 400,
	    "header name"),
	ERR("tab in header name", RL HOST "X\tA: a\r\n\r\n", 400,
	    "header name"),
	ERR("empty header name", RL HOST ": a\r\n\r\n", 400, "empty header"),
	ERR("field without colon", RL HOST "X-A a\r\n\r\n", 400, "colon"),
	ERR("control character in a value", RL HOST "X-A: a\x01z\r\n\r\n",
	    400, "control character"),
	ERR("DEL in a value", RL HOST "X-A: a\x7fz\r\n\r\n", 400,
	    "control character"),
	ERR("control character in a name", RL HOST "X\x1b: z\r\n\r\n",
	    400, "control character"),
	ERR("control character in the target", "GET /\x0b HTTP/1.1\r\n" HOST
	    "\r\n", 400, "control character"),
	ERR("tab in the target", "GET /\t HTTP/1.1\r\n" HOST "\r\n", 400,
	    "request target"),
	ERR("control character detected before the end", RL HOST "X: \x7f",
	    400, "control character"),
	ERR("invalid method character", "G(ET / HTTP/1.1\r\n" HOST "\r\n",
	    400, "method"),
	ERR("method with @", "GE@T / HTTP/1.1\r\n" HOST "\r\n", 400, "method"),
	ERR("empty method", " / HTTP/1.1\r\n" HOST "\r\n", 400, "empty method"),
	ERR("two spaces after method", "GET  / HTTP/1.1\r\n" HOST "\r\n", 400,
	    "empty request target"),
	ERR("two spaces before version", "GET /  HTTP/1.1\r\n" HOST "\r\n",
	    400, "HTTP version"),
	ERR("tab as separator", "GET\t/ HTTP/1.1\r\n" HOST "\r\n", 400,
	    "request line"),
	ERR("HTTP/0.9 request line", "GET /\r\n\r\n", 400, "request line"),
	ERR("lower-case version", "GET / http/1.1\r\n" HOST "\r\n", 400,
	    "HTTP version"),
	ERR("version HTTP/11", "GET / HTTP/11\r\n" HOST "\r\n", 400,
	    "HTTP version"),
	ERR("version HTTP/1.1x", "GET / HTTP/1.1x\r\n" HOST "\r\n", 400,
	    "HTTP version"),
	ERR("HTTP/2.0", "GET / HTTP/2.0\r\n" HOST "\r\n", 505, "unsupported"),
	ERR("HTTP/1.2", "GET / HTTP/1.2\r\n" HOST "\r\n", 505, "unsupported"),
	ERR("HTTP/0.9 version", "GET / HTTP/0.9\r\n" HOST "\r\n", 505,
	    "unsupported"),
	ERR("HTTP/3.0", "GET / HTTP/3.0\r\n" HOST "\r\n", 505, "unsupported"),
	ERR("request line too long", "GET /" S200 " HTTP/1.1\r\n" HOST "\r\n",
	    414, "request line too long"),
	ERR("request line too long without end", "GET /" S200 S10, 414,
	    "request line too long"),
	ERR("too many fields", RL HOST H100 "\r\n", 431, "too many"),
	ERR("too many fields detected before the end", RL HOST H100, 431,
	    "too many"),
	ERR("header section too large before the end", RL "X-Big: " S1K S10,
	    431, "too large"),
	ERR("header section too large", RL HOST "X-Big: " S1K "\r\n\r\n",
	    431, "too large"),
	ERR("Expect other", "POST / HTTP/1.1\r\nHost: a\r\n"
	    "Content-Length: 1\r\nExpect: 200-ok\r\n\r\n", 417, "expectation"),
	ERR("missing Host in 1.1", "GET / HTTP/1.1\r\nX: y\r\n\r\n", 400,
	    "missing Host"),
	ERR("two Hosts", RL HOST "Host: b\r\n\r\n", 400, "more than one Host"),
	ERR("two identical Hosts", RL HOST HOST "\r\n", 400,
	    "more than one Host"),
	ERR("Host with slash", RL "Host: a/b\r\n\r\n", 400, "invalid Host"),
	ERR("Host with space", RL "Host: a b\r\n\r\n", 400, "invalid Host"),
	ERR("Host with @", RL "Host: u@a\r\n\r\n", 400, "invalid Host"),
	ERR("asterisk with GET", "GET * HTTP/1.1\r\n" HOST "\r\n", 400,
	    "OPTIONS"),
	ERR("fragment", "GET /a#b HTTP/1.1\r\n" HOST "\r\n", 400, "fragment"),
	ERR("non-ASCII in target", "GET /caf\xc3\xa9 HTTP/1.1\r\n" HOST "\r\n",
	    400, "request target"),
	ERR("relative target", "GET a/b HTTP/1.1\r\n" HOST "\r\n", 400,
	    "request target"),
	ERR("authority-form with GET", "GET example.com:80 HTTP/1.1\r\n" HOST
	    "\r\n", 400, "request target"),
	ERR("absolute-form with userinfo", "GET http://u:p@h/ HTTP/1.1\r\n"
	    HOST "\r\n", 400, "authority"),
	ERR("absolute-form empty authority", "GET http:///x HTTP/1.1\r\n" HOST
	    "\r\n", 400, "authority"),
	ERR("ftp absolute-form", "GET ftp://h/x HTTP/1.1\r\n" HOST "\r\n",
	    400, "request target"),
	ERR("CONNECT with origin-form", "CONNECT / HTTP/1.1\r\n" HOST "\r\n",
	    400, "CONNECT"),
	ERR("CONNECT without port", "CONNECT example.com HTTP/1.1\r\n" HOST
	    "\r\n", 400, "CONNECT"),
	ERR("five leading CRLF", "\r\n\r\n\r\n\r\n\r\n" RL HOST "\r\n", 400,
	    "empty lines"),
	ERR("leading bare LF", "\n" RL HOST "\r\n", 400, "bare LF"),
	ERR("leading bare CR", "\rGET / HTTP/1.1\r\n" HOST "\r\n", 400,
	    "bare CR"),

	/* Incomplete. */
	MORE("no final CRLF", RL HOST),
	MORE("final CR only", RL HOST "\r"),
	MORE("request line only", "GET /abc HTTP/1.1"),
	MORE("leading CRLF only", "\r\n\r\n"),
};

#define NREQ	(sizeof(req_cases) / sizeof(req_cases[0]))

/* Fail the test naming the case and the mode when cond does not hold. */
#define CHECK(c, mode, cond) do {					\
	if (!(cond))							\
		fail_msg("case \"%s\" (%s): %s", (c)->name, (mode),	\
		    #cond);						\
} while (0)

/* Does [p, p+n) equal the C string s? */
static int
streq_n(const char *p, size_t n, const char *s)
{
	return (p != NULL && strlen(s) == n && memcmp(p, s, n) == 0);
}

/* Copy n bytes of raw into a fresh buffer of exactly n bytes. */
static char *
copy(const char *raw, size_t n)
{
	char	*b;

	b = malloc(n > 0 ? n : 1);
	assert_non_null(b);
	memcpy(b, raw, n);
	return (b);
}

/* Length of a request case's raw bytes. */
static size_t
req_len(const struct req_case *c)
{
	return (c->rawlen != 0 ? c->rawlen : strlen(c->raw));
}

/* Is p inside [buf, buf+n)? */
static int
inside(const char *p, const char *buf, size_t n)
{
	return (p >= buf && p < buf + n);
}

/* Check the outcome of a request parse against the case. */
static void
check_req(const struct req_case *c, const char *mode, int rv,
    const struct http_msg *m, const char *buf)
{
	size_t	 n = req_len(c), hdrlen = c->hdrlen ? c->hdrlen : n, i;

	if (rv != c->rv)
		fail_msg("case \"%s\" (%s): rv %d, expected %d (%d %s)",
		    c->name, mode, rv, c->rv, m->hm_error,
		    m->hm_cause ? m->hm_cause : "-");
	if (rv == -1) {
		CHECK(c, mode, m->hm_error == c->error);
		CHECK(c, mode, m->hm_cause != NULL &&
		    strstr(m->hm_cause, c->cause) != NULL);
		return;
	}
	if (rv == 0)
		return;
	CHECK(c, mode, m->hm_hdrlen == hdrlen);
	CHECK(c, mode, streq_n(m->hm_method, m->hm_methodlen, c->method));
	CHECK(c, mode, m->hm_mbit == http_method_bit(c->method,
	    strlen(c->method)));
	CHECK(c, mode, streq_n(m->hm_path, m->hm_pathlen, c->path));
	if (c->query == NULL)
		CHECK(c, mode, m->hm_query == NULL);
	else
		CHECK(c, mode, streq_n(m->hm_query, m->hm_querylen, c->query));
	CHECK(c, mode, m->hm_minor == c->minor);
	CHECK(c, mode, m->hm_body == c->body);
	CHECK(c, mode, m->hm_content_length == c->cl);
	CHECK(c, mode, m->hm_flags == c->flags);
	CHECK(c, mode, m->hm_nheaders == c->nheaders);
	if (c->host != NULL)
		CHECK(c, mode, streq_n(m->hm_host, m->hm_hostlen, c->host));
	CHECK(c, mode, inside(m->hm_target, buf, hdrlen));
	for (i = 0; i < m->hm_nheaders; i++) {
		CHECK(c, mode, inside(m->hm_headers[i].h_name, buf, hdrlen));
		CHECK(c, mode, m->hm_headers[i].h_value +
		    m->hm_headers[i].h_valuelen <= buf + hdrlen);
	}
}

/* Run one request case whole, split at every point, and byte by byte. */
static void
run_req(const struct req_case *c)
{
	struct http_msg	 m;
	size_t		 n = req_len(c), k;
	char		*b, *b2;
	int		 rv;

	b = copy(c->raw, n);
	http_msg_init(&m);
	check_req(c, "whole", http_parse_request(&m, b, n, &tlimits), &m, b);
	/* The answer does not change when asked again. */
	check_req(c, "again", http_parse_request(&m, b, n, &tlimits), &m, b);
	free(b);

	for (k = 1; k < n; k++) {
		b = copy(c->raw, k);
		http_msg_init(&m);
		rv = http_parse_request(&m, b, k, &tlimits);
		if (rv != 0) {
			check_req(c, "split, first part", rv, &m, b);
			free(b);
			continue;
		}
		b2 = copy(c->raw, n);
		free(b);
		rv = http_parse_request(&m, b2, n, &tlimits);
		check_req(c, "split", rv, &m, b2);
		free(b2);
	}

	http_msg_init(&m);
	for (k = 1, rv = 0; k <= n && rv == 0; k++) {
		b = copy(c->raw, k);
		rv = http_parse_request(&m, b, k, &tlimits);
		if (rv == 0) {
			/* Each byte is scanned once: O(n) in all. */
			CHECK(c, "bytewise", m.hm_scan == k);
		} else {
			check_req(c, "bytewise", rv, &m, b);
			if (rv == 1)
				CHECK(c, "bytewise", k == (c->hdrlen ?
				    c->hdrlen : n));
		}
		free(b);
	}
	if (rv == 0)
		check_req(c, "bytewise", rv, &m, NULL);
}

/* Every row of the request table, three ways. */
static void
test_request_table(void **state)
{
	size_t	 i, nvalid = 0, ninvalid = 0;

	for (i = 0; i < NREQ; i++) {
		run_req(&req_cases[i]);
		if (req_cases[i].rv == 1)
			nvalid++;
		else if (req_cases[i].rv == -1)
			ninvalid++;
	}
	assert_true(nvalid + ninvalid >= 60);
	print_message("%zu valid, %zu invalid request cases\n", nvalid,
	    ninvalid);
}

/* The header fields come out trimmed, in order, pointing into the buffer. */
static void
test_request_fields(void **state)
{
	static const char	 raw[] = "GET /a HTTP/1.1\r\nHost:  ex.org \r\n"
	    "X-Key: \t k1 v \t\r\nx-key: second\r\nEmpty:\r\n\r\n";
	struct http_msg		 m;
	const struct http_header *h;

	http_msg_init(&m);
	assert_int_equal(http_parse_request(&m, raw, sizeof(raw) - 1, NULL), 1);
	assert_int_equal(m.hm_nheaders, 4);
	assert_true(streq_n(m.hm_host, m.hm_hostlen, "ex.org"));
	h = http_header_find(&m, "X-KEY");
	assert_non_null(h);
	assert_ptr_equal(h, &m.hm_headers[1]);
	assert_true(streq_n(h->h_name, h->h_namelen, "X-Key"));
	assert_true(streq_n(h->h_value, h->h_valuelen, "k1 v"));
	h = http_header_find(&m, "empty");
	assert_non_null(h);
	assert_int_equal(h->h_valuelen, 0);
	assert_null(http_header_find(&m, "X-Ke"));
	assert_null(http_header_find(&m, "X-Keys"));
	assert_true(streq_n(m.hm_target, m.hm_targetlen, "/a"));
	assert_int_equal(m.hm_mbit, HTTP_M_GET);
}

/* An error is reported as soon as its byte arrives. */
static void
test_request_early_error(void **state)
{
	static const char	 raw[] = "GET / HTTP/1.1\r\nX: a\nb";
	size_t			 lf = strrchr(raw, '\n') - raw;
	struct http_msg		 m;
	size_t			 k;
	int			 rv = 0;

	http_msg_init(&m);
	assert_int_equal(http_parse_request(&m, raw, sizeof(raw) - 1,
	    &tlimits), -1);
	assert_int_equal(m.hm_error, 400);
	assert_string_equal(m.hm_cause, "bare LF in header section");

	http_msg_init(&m);
	for (k = 1; k <= sizeof(raw) - 1 && rv == 0; k++)
		rv = http_parse_request(&m, raw, k, &tlimits);
	/* Refused with the LF as the last byte, before "b" arrived. */
	assert_int_equal(rv, -1);
	assert_int_equal(k - 1, lf + 1);
	assert_true(lf + 1 < sizeof(raw) - 1);
	/* It stays an error. */
	assert_int_equal(http_parse_request(&m, raw, sizeof(raw) - 1,
	    &tlimits), -1);

	/* A long line is refused before its end arrives. */
	http_msg_init(&m);
	assert_int_equal(http_parse_request(&m, "GET /" S200, 5 + 200,
	    &tlimits), -1);
	assert_int_equal(m.hm_error, 414);
}

/* Incomplete input asks for more, however often it is asked. */
static void
test_request_incomplete(void **state)
{
	static const char	 raw[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
	struct http_msg		 m;
	size_t			 n = sizeof(raw) - 1;

	http_msg_init(&m);
	assert_int_equal(http_parse_request(&m, raw, 0, &tlimits), 0);
	assert_int_equal(http_parse_request(&m, raw, n - 1, &tlimits), 0);
	assert_int_equal(http_parse_request(&m, raw, n - 1, &tlimits), 0);
	assert_int_equal(m.hm_hdrlen, 0);
	assert_int_equal(http_parse_request(&m, raw, n, &tlimits), 1);
	assert_int_equal(m.hm_hdrlen, n);
	assert_int_equal(http_parse_request(&m, raw, n, &tlimits), 1);
	/* Re-initialised, the same struct parses afresh. */
	http_msg_init(&m);
	assert_int_equal(m.hm_nheaders, 0);
	assert_null(m.hm_method);
	assert_int_equal(http_parse_request(&m, "GET /x HTTP/1.0\r\n\r\n", 19,
	    NULL), 1);
	assert_true(streq_n(m.hm_path, m.hm_pathlen, "/x"));
	assert_int_equal(m.hm_minor, 0);
}

/* Build "GET /aaa... HTTP/1.1" of exactly linelen bytes plus the rest. */
static char *
build_request(size_t linelen, size_t valuelen, size_t *lenp)
{
	char	*b;
	size_t	 n = linelen + 2 + 9 + 3 + valuelen + 2 + 2, i = 0;

	b = malloc(n);
	assert_non_null(b);
	memcpy(b, "GET /", 5);
	memset(b + 5, 'p', linelen - 5 - 9);
	i = linelen - 9;
	memcpy(b + i, " HTTP/1.1\r\nHost: a\r\nX: ", 23);
	i += 23;
	memset(b + i, 'v', valuelen);
	i += valuelen;
	memcpy(b + i, "\r\n\r\n", 4);
	*lenp = i + 4;
	assert_int_equal(*lenp, n);
	return (b);
}

/* Parse b whole and byte by byte; both must agree; returns rv. */
static int
parse_both(const char *b, size_t n, const struct http_limits *hl, int *err)
{
	struct http_msg	 m, m2;
	size_t		 k;
	int		 rv, rv2 = 0;

	http_msg_init(&m);
	rv = http_parse_request(&m, b, n, hl);
	http_msg_init(&m2);
	for (k = 1; k <= n && rv2 == 0; k++)
		rv2 = http_parse_request(&m2, b, k, hl);
	assert_int_equal(rv, rv2);
	assert_int_equal(m.hm_error, m2.hm_error);
	*err = m.hm_error;
	return (rv);
}

/* The line and section limits are exact: max passes, max + 1 fails. */
static void
test_request_limits(void **state)
{
	struct http_limits	 hl = { 100, 300 };
	size_t			 n;
	char			*b;
	int			 err;

	b = build_request(100, 10, &n);
	assert_int_equal(parse_both(b, n, &hl, &err), 1);
	free(b);
	b = build_request(101, 10, &n);
	assert_int_equal(parse_both(b, n, &hl, &err), -1);
	assert_int_equal(err, 414);
	free(b);
	/* Section of exactly 300 bytes: 100 + 2 + 9 + 3 + v + 2 + 2 */
	b = build_request(100, 300 - 118, &n);
	assert_int_equal(n, 300);
	assert_int_equal(parse_both(b, n, &hl, &err), 1);
	free(b);
	b = build_request(100, 300 - 117, &n);
	assert_int_equal(parse_both(b, n, &hl, &err), -1);
	assert_int_equal(err, 431);
	free(b);
	/* Skipped empty lines do not count against the section. */
	hl.hl_max_header = 27;
	assert_int_equal(parse_both("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	    31, &hl, &err), 1);
	hl.hl_max_header = 26;
	assert_int_equal(parse_both("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	    31, &hl, &err), -1);
	assert_int_equal(err, 431);
}

struct resp_case {
	const char	*name;
	const char	*raw;
	int		 mbit;		/* method of the request */
	int		 rv;
	const char	*cause;		/* substring of hm_cause when -1 */
	int		 status;
	const char	*reason;
	int		 minor;
	enum http_body	 body;
	uint64_t	 cl;
	int		 flags;
	size_t		 nheaders;
	size_t		 hdrlen;	/* 0: strlen(raw) */
};

#define ROK(n, r, mb, st, re, mi, b, c, fl, nh)				\
	{ .name = n, .raw = r, .mbit = mb, .rv = 1, .status = st,	\
	  .reason = re, .minor = mi, .body = b, .cl = c, .flags = fl,	\
	  .nheaders = nh }
#define RERR(n, r, ca)							\
	{ .name = n, .raw = r, .mbit = HTTP_M_GET, .rv = -1, .cause = ca }

static const struct resp_case resp_cases[] = {
	ROK("200 with Content-Length", "HTTP/1.1 200 OK\r\n"
	    "Content-Length: 5\r\n\r\n", HTTP_M_GET, 200, "OK", 1, LEN, 5, KA,
	    1),
	ROK("200 chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
	    "\r\n", HTTP_M_POST, 200, "OK", 1, CHUNK, 0, KA, 1),
	ROK("200 until EOF", "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n",
	    HTTP_M_GET, 200, "OK", 1, EOFB, 0, 0, 1),
	ROK("204 with Content-Length", "HTTP/1.1 204 No Content\r\n"
	    "Content-Length: 10\r\n\r\n", HTTP_M_DELETE, 204, "No Content", 1,
	    NONE, 0, KA, 1),
	ROK("204 with a bad Content-Length", "HTTP/1.1 204 No Content\r\n"
	    "Content-Length: x\r\n\r\n", HTTP_M_DELETE, 204, "No Content", 1,
	    NONE, 0, KA, 1),
	ROK("304", "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n", HTTP_M_GET, 304,
	    "Not Modified", 1, NONE, 0, KA, 2),
	ROK("HEAD response", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
	    HTTP_M_HEAD, 200, "OK", 1, NONE, 0, KA, 1),
	ROK("100 Continue", "HTTP/1.1 100 Continue\r\n\r\n", HTTP_M_POST, 100,
	    "Continue", 1, NONE, 0, KA, 0),
	ROK("101 Switching Protocols", "HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n", HTTP_M_GET,
	    101, "Switching Protocols", 1, NONE, 0, KA | UPG, 2),
	ROK("no reason, no space", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
	    HTTP_M_GET, 200, "", 1, LEN, 0, KA, 1),
	ROK("empty reason", "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n",
	    HTTP_M_GET, 404, "", 1, LEN, 0, KA, 1),
	ROK("reason with spaces and obs-text", "HTTP/1.1 500 Oh \xe9 no\r\n"
	    "Content-Length: 2\r\n\r\n", HTTP_M_GET, 500, "Oh \xe9 no", 1, LEN,
	    2, KA, 1),
	ROK("TE gzip is until EOF", "HTTP/1.1 200 OK\r\n"
	    "Transfer-Encoding: gzip\r\n\r\n", HTTP_M_GET, 200, "OK", 1, EOFB,
	    0, 0, 1),
	ROK("TE gzip, chunked", "HTTP/1.1 200 OK\r\n"
	    "Transfer-Encoding: gzip, chunked\r\n\r\n", HTTP_M_GET, 200, "OK",
	    1, CHUNK, 0, KA, 1),
	ROK("TE chunked, gzip is until EOF", "HTTP/1.1 200 OK\r\n"
	    "Transfer-Encoding: chunked, gzip\r\n\r\n", HTTP_M_GET, 200, "OK",
	    1, EOFB, 0, 0, 1),
	ROK("TE in HTTP/1.0 is until EOF", "HTTP/1.0 200 OK\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n", HTTP_M_GET, 200, "OK", 0,
	    EOFB, 0, 0, 1),
	ROK("HTTP/1.0 with Content-Length", "HTTP/1.0 200 OK\r\n"
	    "Content-Length: 3\r\n\r\n", HTTP_M_GET, 200, "OK", 0, LEN, 3, 0,
	    1),
	ROK("HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n"
	    "Connection: keep-alive\r\n\r\n", HTTP_M_GET, 200, "OK", 0, LEN, 3,
	    KA, 2),
	ROK("Connection: close", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
	    "Connection: close\r\n\r\n", HTTP_M_GET, 200, "OK", 1, LEN, 3,
	    CLOSE, 2),
	ROK("identical Content-Length twice", "HTTP/1.1 200 OK\r\n"
	    "Content-Length: 7\r\nContent-Length: 7\r\n\r\n", HTTP_M_GET, 200,
	    "OK", 1, LEN, 7, KA, 2),
	{ .name = "pipelined responses", .raw = "HTTP/1.1 200 OK\r\n"
	    "Content-Length: 2\r\n\r\nokHTTP/1.1 204 \r\n\r\n",
	    .mbit = HTTP_M_GET, .rv = 1, .status = 200, .reason = "OK",
	    .minor = 1, .body = LEN, .cl = 2, .flags = KA, .nheaders = 1,
	    .hdrlen = sizeof("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
	    - 1 },
	RERR("status 20", "HTTP/1.1 20 OK\r\n\r\n", "status"),
	RERR("status 2000", "HTTP/1.1 2000 OK\r\n\r\n", "status"),
	RERR("status 099", "HTTP/1.1 099 x\r\n\r\n", "status"),
	RERR("status 600", "HTTP/1.1 600 x\r\n\r\n", "status"),
	RERR("status 2x0", "HTTP/1.1 2x0 OK\r\n\r\n", "status"),
	RERR("differing Content-Length", "HTTP/1.1 200 OK\r\n"
	    "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", "conflicting"),
	RERR("invalid Content-Length", "HTTP/1.1 200 OK\r\n"
	    "Content-Length: 5x\r\n\r\n", "invalid Content-Length"),
	RERR("TE and Content-Length", "HTTP/1.1 200 OK\r\n"
	    "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", "both"),
	RERR("chunked twice", "HTTP/1.1 200 OK\r\n"
	    "Transfer-Encoding: chunked, chunked\r\n\r\n", "Transfer-Encoding"),
	RERR("HTTP/2.0", "HTTP/2.0 200 OK\r\n\r\n", "version"),
	RERR("HTTP/1.2", "HTTP/1.2 200 OK\r\n\r\n", "version"),
	RERR("not HTTP", "ICY 200 OK\r\n\r\n", "status line"),
	RERR("bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\n\n", "bare LF"),
	RERR("obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", "folding"),
	RERR("space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n"
	    "\r\n", "colon"),
	RERR("control character in reason", "HTTP/1.1 200 O\x01K\r\n\r\n",
	    "control character"),
	RERR("status line too long", "HTTP/1.1 200 " S200 "\r\n\r\n",
	    "status line too long"),
	RERR("too many fields", "HTTP/1.1 200 OK\r\n" H100 "A: b\r\n\r\n",
	    "too many"),
};

#define NRESP	(sizeof(resp_cases) / sizeof(resp_cases[0]))

/* Check the outcome of a response parse against the case. */
static void
check_resp(const struct resp_case *c, const char *mode, int rv,
    const struct http_msg *m)
{
	size_t	 hdrlen = c->hdrlen ? c->hdrlen : strlen(c->raw);

	if (rv != c->rv)
		fail_msg("case \"%s\" (%s): rv %d, expected %d (%s)", c->name,
		    mode, rv, c->rv, m->hm_cause ? m->hm_cause : "-");
	if (rv == -1) {
		CHECK(c, mode, m->hm_error == 502);
		CHECK(c, mode, m->hm_cause != NULL &&
		    strstr(m->hm_cause, c->cause) != NULL);
		return;
	}
	CHECK(c, mode, m->hm_hdrlen == hdrlen);
	CHECK(c, mode, m->hm_status == c->status);
	CHECK(c, mode, streq_n(m->hm_reason, m->hm_reasonlen, c->reason));
	CHECK(c, mode, m->hm_minor == c->minor);
	CHECK(c, mode, m->hm_body == c->body);
	CHECK(c, mode, m->hm_content_length == c->cl);
	CHECK(c, mode, m->hm_flags == c->flags);
	CHECK(c, mode, m->hm_nheaders == c->nheaders);
}

/* Run one response case whole, split at every point, and byte by byte. */
static void
run_resp(const struct resp_case *c)
{
	struct http_msg	 m;
	size_t		 n = strlen(c->raw), k;
	char		*b, *b2;
	int		 rv;

	b = copy(c->raw, n);
	http_msg_init(&m);
	check_resp(c, "whole", http_parse_response(&m, b, n, &tlimits,
	    c->mbit), &m);
	free(b);
	for (k = 1; k < n; k++) {
		b = copy(c->raw, k);
		http_msg_init(&m);
		rv = http_parse_response(&m, b, k, &tlimits, c->mbit);
		if (rv == 0) {
			b2 = copy(c->raw, n);
			rv = http_parse_response(&m, b2, n, &tlimits, c->mbit);
			check_resp(c, "split", rv, &m);
			free(b2);
		} else
			check_resp(c, "split, first part", rv, &m);
		free(b);
	}
	http_msg_init(&m);
	for (k = 1, rv = 0; k <= n && rv == 0; k++) {
		b = copy(c->raw, k);
		rv = http_parse_response(&m, b, k, &tlimits, c->mbit);
		if (rv != 0)
			check_resp(c, "bytewise", rv, &m);
		free(b);
	}
	CHECK(c, "bytewise", rv != 0);
}

/* Every row of the response table, three ways. */
static void
test_response_table(void **state)
{
	size_t	 i;

	for (i = 0; i < NRESP; i++)
		run_resp(&resp_cases[i]);
	assert_true(NRESP >= 15);
}

struct chunk_case {
	const char	*name;
	const char	*raw;
	size_t		 rawlen;	/* 0: strlen(raw) */
	int		 rv;		/* 1 done, 0 more wanted, -1 error */
	const char	*payload;	/* decoded bytes (so far) */
	size_t		 consumed;	/* 0: all of raw */
	const char	*cause;
};

#define CK(n, r, p)		{ .name = n, .raw = r, .rv = 1, .payload = p }
/* Chunked body bd followed by rest that does not belong to it. */
#define CKP(n, bd, rest, p)	{ .name = n, .raw = bd rest, .rv = 1,	\
				  .payload = p, .consumed = sizeof(bd) - 1 }
#define CMORE(n, r, p)		{ .name = n, .raw = r, .rv = 0, .payload = p }
#define CERR(n, r, ca)		{ .name = n, .raw = r, .rv = -1, .cause = ca }

static const struct chunk_case chunk_cases[] = {
	CK("one chunk", "5\r\nhello\r\n0\r\n\r\n", "hello"),
	CK("empty body", "0\r\n\r\n", ""),
	CK("extensions and trailers", "3;a=b\r\nabc\r\n"
	    "A; name=\"q v\" ;x\r\n0123456789\r\n0;last\r\nX-T: 1\r\n"
	    "Y:\t2\r\n\r\n", "abc0123456789"),
	CK("hex digits in both cases", "a\r\n0123456789\r\nB\r\nhello world"
	    "\r\nf\r\n0123456789abcde\r\n0\r\n\r\n",
	    "0123456789hello world0123456789abcde"),
	CK("leading zeros", "0005\r\nhello\r\n000\r\n\r\n", "hello"),
	CK("sixteen digits", "0000000000000005\r\nhello\r\n"
	    "0000000000000000\r\n\r\n", "hello"),
	CK("whitespace before ';'", "5 \t;x\r\nhello\r\n0 ;y\r\n\r\n",
	    "hello"),
	CK("CRLF inside chunk data", "4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n"),
	CK("long extension", "1;" S1K S1K S1K S1K "\r\nx\r\n0\r\n\r\n", "x"),
	CKP("pipelined request after the body", "2\r\nhi\r\n0\r\n\r\n",
	    "GET / HTTP/1.1\r\n", "hi"),
	CKP("pipelined after trailers", "0\r\nT: v\r\n\r\n", "0\r\n\r\n", ""),
	CMORE("inside data", "5\r\nhel", "hel"),
	CMORE("before the last CRLF", "5\r\nhello\r\n0\r\nX: y\r\n", "hello"),
	CMORE("size line incomplete", "5;ext", ""),
	CERR("no hex digit", "\r\nhello\r\n", "missing chunk size"),
	CERR("not hex", "g\r\n", "missing chunk size"),
	CERR("whitespace before digits", " 5\r\nhello\r\n0\r\n\r\n",
	    "missing chunk size"),
	CERR("sign", "-5\r\nhello\r\n0\r\n\r\n", "missing chunk size"),
	CERR("0x prefix", "0x5\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
	CERR("seventeen digits", "00000000000000005\r\nhello\r\n0\r\n\r\n",
	    "more than 16"),
	CERR("whitespace after size without ';'", "5 \r\nhello\r\n0\r\n\r\n",
	    "invalid chunk size"),
	CERR("missing CRLF after data", "5\r\nhelloX\r\n0\r\n\r\n",
	    "missing CRLF"),
	CERR("data longer than its size", "3\r\nhello\r\n0\r\n\r\n",
	    "missing CRLF"),
	CERR("LF-only after data", "5\r\nhello\n0\r\n\r\n", "missing CRLF"),
	CERR("CR without LF after data", "5\r\nhello\rX0\r\n\r\n",
	    "missing CRLF"),
	CERR("bare LF in size line", "5\nhello\r\n0\r\n\r\n", "bare LF"),
	CERR("bare LF after extension", "5;a\nhello\r\n0\r\n\r\n", "bare LF"),
	CERR("bare CR in size line", "5\rhello\r\n0\r\n\r\n", "bare CR"),
	CERR("control character in extension", "5;a\x01\r\nhello\r\n0\r\n\r\n",
	    "extension"),
	CERR("size line too long", "1;" S1K S1K S1K S1K S200 "\r\nx\r\n0\r\n"
	    "\r\n", "line too long"),
	CERR("bare LF in trailer", "0\r\nX: y\n\r\n", "bare LF"),
	CERR("LF-only end", "0\r\n\n", "bare LF"),
	CERR("bare CR ending trailers", "0\r\n\rX", "bare CR"),
	CERR("obs-fold in trailer", "0\r\nX: y\r\n z\r\n\r\n", "folding"),
	{ .name = "NUL in trailer", .raw = "0\r\nX: a\0b\r\n\r\n",
	  .rawlen = 13, .rv = -1, .cause = "invalid character in trailer" },
	CERR("trailer too large", "0\r\nX: " S1K S1K S1K S1K S1K S1K S1K S1K
	    S1K "\r\n\r\n", "trailer section too large"),
};

#define NCHUNK	(sizeof(chunk_cases) / sizeof(chunk_cases[0]))

/* Collects the payload slices and checks they lie in the fed slice. */
struct sink {
	char		 buf[16384];
	size_t		 len;
	const char	*lo, *hi;	/* the slice being fed */
	int		 bad;
};

/* http_data_cb collecting into a struct sink. */
static void
sink_cb(void *arg, const char *p, size_t n)
{
	struct sink	*s = arg;

	if (p < s->lo || p + n > s->hi || n == 0 ||
	    s->len + n > sizeof(s->buf)) {
		s->bad = 1;
		return;
	}
	memcpy(s->buf + s->len, p, n);
	s->len += n;
}

/* Feed raw[off..off+n) as a slice of its own; returns the feed result. */
static ssize_t
feed(struct http_chunked *hc, struct sink *s, const char *raw, size_t off,
    size_t n)
{
	char	*b = copy(raw + off, n);
	ssize_t	 r;

	s->lo = b;
	s->hi = b + n;
	r = http_chunked_feed(hc, b, n, sink_cb, s);
	free(b);
	return (r);
}

/*
 * Feed the case's bytes in pieces: split at k (k == 0: piece size 1,
 * k == n: whole) and check the result.
 */
static void
run_chunk(const struct chunk_case *c, size_t k, const char *mode)
{
	static struct sink	 sink;
	struct sink		*s = &sink;
	struct http_chunked	 hc;
	size_t			 n = c->rawlen ? c->rawlen : strlen(c->raw);
	size_t			 off = 0, piece, total = 0;
	ssize_t			 r = 0;

	memset(s, 0, sizeof(*s));
	http_chunked_init(&hc);
	while (off < n) {
		piece = k == 0 ? 1 : (off == 0 ? k : n - off);
		r = feed(&hc, s, c->raw, off, piece);
		if (r == -1)
			break;
		CHECK(c, mode, (size_t)r <= piece);
		if ((size_t)r < piece)
			CHECK(c, mode, http_chunked_done(&hc));
		total += r;
		off += piece;
	}
	CHECK(c, mode, !s->bad);
	if (c->rv == -1) {
		CHECK(c, mode, r == -1);
		CHECK(c, mode, hc.hc_cause != NULL &&
		    strstr(hc.hc_cause, c->cause) != NULL);
		CHECK(c, mode, http_chunked_feed(&hc, "0\r\n\r\n", 5, NULL,
		    NULL) == -1);
		CHECK(c, mode, !http_chunked_done(&hc));
		return;
	}
	CHECK(c, mode, r != -1);
	CHECK(c, mode, http_chunked_done(&hc) == (c->rv == 1));
	CHECK(c, mode, total == (c->consumed ? c->consumed : n));
	CHECK(c, mode, s->len == strlen(c->payload));
	CHECK(c, mode, memcmp(s->buf, c->payload, s->len) == 0);
	CHECK(c, mode, hc.hc_payload == s->len);
	if (c->rv == 1)
		CHECK(c, mode, http_chunked_feed(&hc, "5\r\n", 3, NULL,
		    NULL) == 0);
}

/* Every row of the chunked table: whole, split everywhere, bytewise. */
static void
test_chunked_table(void **state)
{
	size_t	 i, k, n;

	for (i = 0; i < NCHUNK; i++) {
		n = chunk_cases[i].rawlen ? chunk_cases[i].rawlen :
		    strlen(chunk_cases[i].raw);
		run_chunk(&chunk_cases[i], n, "whole");
		for (k = 1; k < n; k++)
			run_chunk(&chunk_cases[i], k, "split");
		run_chunk(&chunk_cases[i], 0, "bytewise");
	}
	assert_true(NCHUNK >= 20);
}

/* The size-line and trailer limits are exact. */
static void
test_chunked_limits(void **state)
{
	struct http_chunked	 hc;
	char			*b;
	size_t			 n;

	/* "1;" + ext making the line exactly HTTP_CHUNK_MAX_LINE bytes. */
	n = HTTP_CHUNK_MAX_LINE + 2;
	b = malloc(n);
	assert_non_null(b);
	b[0] = '1';
	b[1] = ';';
	memset(b + 2, 'e', HTTP_CHUNK_MAX_LINE - 2);
	memcpy(b + HTTP_CHUNK_MAX_LINE, "\r\n", 2);
	http_chunked_init(&hc);
	assert_int_equal(http_chunked_feed(&hc, b, n, NULL, NULL), n);
	assert_int_equal(http_chunked_feed(&hc, "x\r\n0\r\n\r\n", 8, NULL,
	    NULL), 8);
	assert_true(http_chunked_done(&hc));
	assert_int_equal(hc.hc_payload, 1);
	b[HTTP_CHUNK_MAX_LINE] = 'e';
	http_chunked_init(&hc);
	assert_int_equal(http_chunked_feed(&hc, b, n, NULL, NULL), -1);
	assert_string_equal(hc.hc_cause, "chunk size line too long");
	free(b);

	/* Trailer section of exactly HTTP_CHUNK_MAX_TRAILER bytes. */
	n = 3 + HTTP_CHUNK_MAX_TRAILER;
	b = malloc(n);
	assert_non_null(b);
	memcpy(b, "0\r\nX:", 5);
	memset(b + 5, 'v', n - 5 - 4);
	memcpy(b + n - 4, "\r\n\r\n", 4);
	http_chunked_init(&hc);
	assert_int_equal(http_chunked_feed(&hc, b, n, NULL, NULL), n);
	assert_true(http_chunked_done(&hc));
	http_chunked_init(&hc);
	assert_int_equal(http_chunked_feed(&hc, b, n - 2, NULL, NULL), n - 2);
	assert_int_equal(http_chunked_feed(&hc, "v\r\n\r\n", 5, NULL, NULL),
	    -1);
	assert_string_equal(hc.hc_cause, "trailer section too large");
	free(b);
}

/*
 * http_chunked_feedv(): slices taken whole ask for more; the slice where
 * the body ends is taken up to its end and stops the round.
 */
static void
test_chunked_feedv(void **state)
{
	static char		 a[] = "3\r\nab", b[] = "c\r\n", c[] = "0\r\n",
				 d[] = "\r\nGET";
	struct iovec		 v[] = {
		{ a, sizeof(a) - 1 }, { b, sizeof(b) - 1 },
		{ c, sizeof(c) - 1 }, { d, sizeof(d) - 1 },
	};
	struct http_chunked	 hc;
	int			 more;

	http_chunked_init(&hc);
	assert_int_equal(http_chunked_feedv(&hc, v, 2, NULL, NULL, &more),
	    (ssize_t)(sizeof(a) - 1 + sizeof(b) - 1));
	assert_true(more);
	assert_int_equal(http_chunked_feedv(&hc, v + 2, 2, NULL, NULL, &more),
	    (ssize_t)(sizeof(c) - 1 + 2));
	assert_false(more);
	assert_true(http_chunked_done(&hc));
	assert_int_equal(hc.hc_payload, 3);
	assert_int_equal(http_chunked_feedv(&hc, v, 0, NULL, NULL, &more), 0);
	assert_false(more);
}

/* A large chunk is passed on in as few slices as the input allows. */
static void
test_chunked_big(void **state)
{
	struct http_chunked	 hc;
	struct sink		*s;
	static char		 data[10000];

	s = calloc(1, sizeof(*s));
	assert_non_null(s);
	memset(data, 'd', sizeof(data));
	http_chunked_init(&hc);
	s->lo = "2710\r\n";
	s->hi = s->lo + 6;
	assert_int_equal(http_chunked_feed(&hc, s->lo, 6, sink_cb, s), 6);
	s->lo = data;
	s->hi = data + sizeof(data);
	assert_int_equal(http_chunked_feed(&hc, data, sizeof(data), sink_cb,
	    s), sizeof(data));
	assert_int_equal(s->len, 10000);
	assert_false(s->bad);
	assert_int_equal(hc.hc_left, 0);
	assert_int_equal(http_chunked_feed(&hc, "\r\n0\r\n\r\nX", 8, NULL,
	    NULL), 7);
	assert_true(http_chunked_done(&hc));
	assert_int_equal(hc.hc_payload, 10000);
	/* A size of 2^64 - 1 parses without overflow (and then waits). */
	http_chunked_init(&hc);
	assert_int_equal(http_chunked_feed(&hc, "ffffffffffffffff\r\nab", 20,
	    NULL, NULL), 20);
	assert_true(hc.hc_left == UINT64_MAX - 2);
	free(s);
}

/* Methods are case-sensitive tokens. */
static void
test_method_bit(void **state)
{
	static const struct {
		const char	*m;
		int		 bit;
	} t[] = {
		{ "GET", HTTP_M_GET }, { "HEAD", HTTP_M_HEAD },
		{ "POST", HTTP_M_POST }, { "PUT", HTTP_M_PUT },
		{ "DELETE", HTTP_M_DELETE }, { "PATCH", HTTP_M_PATCH },
		{ "OPTIONS", HTTP_M_OPTIONS }, { "TRACE", HTTP_M_TRACE },
		{ "CONNECT", HTTP_M_CONNECT }, { "get", HTTP_M_OTHER },
		{ "Get", HTTP_M_OTHER }, { "PURGE", HTTP_M_OTHER },
		{ "GETS", HTTP_M_OTHER }, { "GE", HTTP_M_OTHER },
		{ "M-SEARCH", HTTP_M_OTHER }, { "", 0 }, { "G T", 0 },
		{ "GET/", 0 }, { "(GET)", 0 }, { "G\xc3\xa9T", 0 }
	};
	size_t	 i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (http_method_bit(t[i].m, strlen(t[i].m)) != t[i].bit)
			fail_msg("method \"%s\": %d, expected %d", t[i].m,
			    http_method_bit(t[i].m, strlen(t[i].m)), t[i].bit);
	/* The length is honoured: "GETX" cut to 3 is GET. */
	assert_int_equal(http_method_bit("GETX", 3), HTTP_M_GET);
	assert_int_equal(HTTP_M_ANY & HTTP_M_OTHER, HTTP_M_OTHER);
}

/* Reason phrases of RFC 9110. */
static void
test_reason(void **state)
{
	static const int	 codes[] = { 100, 101, 200, 201, 202, 203, 204,
	    205, 206, 301, 302, 303, 304, 305, 306, 307, 308, 400, 401, 402,
	    403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415,
	    416, 417, 421, 422, 426, 428, 429, 431, 500, 501, 502, 503, 504,
	    505, 507 };
	size_t			 i;

	assert_string_equal(http_reason(200), "OK");
	assert_string_equal(http_reason(404), "Not Found");
	assert_string_equal(http_reason(413), "Content Too Large");
	assert_string_equal(http_reason(429), "Too Many Requests");
	assert_string_equal(http_reason(431),
	    "Request Header Fields Too Large");
	assert_string_equal(http_reason(502), "Bad Gateway");
	assert_string_equal(http_reason(505), "HTTP Version Not Supported");
	assert_string_equal(http_reason(0), "Unknown");
	assert_string_equal(http_reason(299), "Unknown");
	assert_string_equal(http_reason(-1), "Unknown");
	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (strcmp(http_reason(codes[i]), "Unknown") == 0)
			fail_msg("no reason for %d", codes[i]);
}

/* tchar is exactly ALPHA, DIGIT and !#$%&'*+-.^_`|~. */
static void
test_tchar(void **state)
{
	static const char	 sym[] = "!#$%&'*+-.^_`|~";
	int			 c, want;

	for (c = 0; c < 256; c++) {
		want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || (c != 0 && strchr(sym, c));
		if (!!http_is_tchar(c) != want)
			fail_msg("tchar 0x%02x: %d", c, http_is_tchar(c));
	}
}

/* Case-insensitive comparison honours both lengths. */
static void
test_strcaseeq(void **state)
{
	assert_true(http_strcaseeq("Content-Length", 14, "content-length"));
	assert_true(http_strcaseeq("CHUNKED", 7, "chunked"));
	assert_true(http_strcaseeq("", 0, ""));
	assert_false(http_strcaseeq("chunk", 5, "chunked"));
	assert_false(http_strcaseeq("chunkedx", 8, "chunked"));
	assert_true(http_strcaseeq("chunkedx", 7, "chunked"));
	assert_false(http_strcaseeq("[", 1, "{"));	/* not letters */
	assert_false(http_strcaseeq("@", 1, "`"));
	assert_false(http_strcaseeq("`x", 2, "@x"));	/* same | 0x20 */
	assert_false(http_strcaseeq("x", 1, ""));
	assert_false(http_strcaseeq("", 0, "x"));
}

/*
 * The same through a name known only at run time (as the configured key
 * header is), where the inline part cannot test the length.
 */
static void
test_strcaseeq_runtime(void **state)
{
	static const char *const names[] = {
		"X-API-KEY", "x-api-key", "X-Api-Keys", "", "Y-API-KEY"
	};
	const char	*volatile name;
	size_t		 i;
	int		 want[] = { 1, 1, 0, 0, 0 };

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		name = names[i];
		if (http_strcaseeq("x-API-key", 9, name) != want[i])
			fail_msg("\"%s\": %d", name, !want[i]);
		if (http_strcaseeq(name, strlen(name), "X-API-KEY") !=
		    want[i])
			fail_msg("\"%s\" (literal): %d", name, !want[i]);
	}
	name = "";
	assert_true(http_strcaseeq("", 0, name));
	assert_false(http_strcaseeq("\x20", 1, name));
}

/* http_list_has(): whole elements, case and OWS aside. */
static void
test_list_has(void **state)
{
	static const char	 v[] = "websocket , H2C,foo/2,,";

	(void)state;
	assert_true(http_list_has(v, strlen(v), "h2c", 3));
	assert_true(http_list_has(v, strlen(v), "WebSocket", 9));
	assert_true(http_list_has(v, strlen(v), "foo/2", 5));
	assert_false(http_list_has(v, strlen(v), "foo", 3));
	assert_false(http_list_has(v, strlen(v), "h2", 2));
	assert_false(http_list_has("", 0, "h2c", 3));
}

int
main(void)
{
	const struct CMUnitTest	 tests[] = {
		cmocka_unit_test(test_request_table),
		cmocka_unit_test(test_request_fields),
		cmocka_unit_test(test_request_early_error),
		cmocka_unit_test(test_request_incomplete),
		cmocka_unit_test(test_request_limits),
		cmocka_unit_test(test_response_table),
		cmocka_unit_test(test_chunked_table),
		cmocka_unit_test(test_chunked_limits),
		cmocka_unit_test(test_chunked_big),
		cmocka_unit_test(test_chunked_feedv),
		cmocka_unit_test(test_method_bit),
		cmocka_unit_test(test_reason),
		cmocka_unit_test(test_tchar),
		cmocka_unit_test(test_strcaseeq),
		cmocka_unit_test(test_strcaseeq_runtime),
		cmocka_unit_test(test_list_has),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
