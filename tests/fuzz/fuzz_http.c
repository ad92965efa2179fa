/*
 * libFuzzer target for the HTTP parser (src/http.c).
 *
 * The input is parsed as a request and as a response three ways each:
 * whole, split in two at a point derived from the input, and arriving one
 * byte at a time; all three must agree (a parser that answers differently
 * depending on how the bytes were segmented is a smuggling hazard).  The
 * same input is also decoded as a chunked body, whole and in small pieces,
 * with the same requirement.  Structural invariants are checked on every
 * result: lengths within the input, pointers inside the buffer, values in
 * their ranges.
 */

#include <sys/types.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "fuzz.h"

/* Small limits reach 414 and 431 often; large ones reach the rest. */
static const struct http_limits fuzz_small = { 64, 256 };
static const struct http_limits fuzz_large = { 8192, 65536 };

/* Payload seen by the chunked callback. */
struct fuzz_sink {
	const char	*lo, *hi;	/* slice being fed */
	uint64_t	 n;		/* payload bytes */
	uint64_t	 hash;		/* FNV-1a of the payload, in order */
};

/* FNV-1a over n bytes, continuing from h. */
static uint64_t
fuzz_fnv(uint64_t h, const uint8_t *p, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return (h);
}

/* Is [p, p+n) inside [buf, buf+len)? */
static int
fuzz_inside(const char *p, size_t n, const char *buf, size_t len)
{
	return (p >= buf && n <= len && p - buf <= (ptrdiff_t)(len - n));
}

/* Check what a successful parse left in m. */
static void
fuzz_check_ok(const struct http_msg *m, const char *buf, size_t len,
    int isresp)
{
	const struct http_header	*h;
	size_t				 i, hl = m->hm_hdrlen;

	FUZZ_ASSERT(hl >= 4 && hl <= len);
	FUZZ_ASSERT(buf[hl - 1] == '\n' && buf[hl - 2] == '\r');
	FUZZ_ASSERT(m->hm_nheaders <= HTTP_MAX_HEADERS);
	FUZZ_ASSERT(m->hm_minor == 0 || m->hm_minor == 1);
	for (i = 0; i < m->hm_nheaders; i++) {
		h = &m->hm_headers[i];
		FUZZ_ASSERT(h->h_namelen > 0);
		FUZZ_ASSERT(fuzz_inside(h->h_name, h->h_namelen, buf, hl));
		FUZZ_ASSERT(fuzz_inside(h->h_value, h->h_valuelen, buf, hl));
		FUZZ_ASSERT(memchr(h->h_value, '\r', h->h_valuelen) == NULL);
		FUZZ_ASSERT(h->h_valuelen == 0 ||
		    (h->h_value[0] != ' ' && h->h_value[0] != '\t' &&
		    h->h_value[h->h_valuelen - 1] != ' ' &&
		    h->h_value[h->h_valuelen - 1] != '\t'));
		FUZZ_ASSERT(http_is_tchar((u_char)h->h_name[0]));
	}
	FUZZ_ASSERT(m->hm_body <= HTTP_BODY_EOF);
	FUZZ_ASSERT(m->hm_content_length <= INT64_MAX);
	if (m->hm_body == HTTP_BODY_EOF)
		FUZZ_ASSERT(!(m->hm_flags & HTTP_F_KEEPALIVE));
	if (m->hm_flags & HTTP_F_CONN_CLOSE)
		FUZZ_ASSERT(!(m->hm_flags & HTTP_F_KEEPALIVE));
	/* An upgrade: HTTP/1.1, with its protocol inside the head. */
	if (m->hm_upgrade != NULL)
		FUZZ_ASSERT(m->hm_upgradelen > 0 &&
		    fuzz_inside(m->hm_upgrade, m->hm_upgradelen, buf, hl));
	if (m->hm_flags & HTTP_F_UPGRADE)
		FUZZ_ASSERT(m->hm_upgrade != NULL && m->hm_minor == 1);
	if (isresp) {
		FUZZ_ASSERT(m->hm_status >= 100 && m->hm_status <= 599);
		FUZZ_ASSERT(fuzz_inside(m->hm_reason, m->hm_reasonlen, buf,
		    hl));
		return;
	}
	FUZZ_ASSERT(m->hm_body != HTTP_BODY_EOF);
	FUZZ_ASSERT(m->hm_methodlen > 0 && m->hm_mbit != 0);
	FUZZ_ASSERT(fuzz_inside(m->hm_method, m->hm_methodlen, buf, hl));
	FUZZ_ASSERT(fuzz_inside(m->hm_target, m->hm_targetlen, buf, hl));
	FUZZ_ASSERT(m->hm_pathlen > 0);
	if (!fuzz_inside(m->hm_path, m->hm_pathlen, m->hm_target,
	    m->hm_targetlen))
		FUZZ_ASSERT(m->hm_pathlen == 1 && m->hm_path[0] == '/');
	if (m->hm_query != NULL)
		FUZZ_ASSERT(fuzz_inside(m->hm_query, m->hm_querylen,
		    m->hm_target, m->hm_targetlen));
	if (m->hm_host != NULL)
		FUZZ_ASSERT(fuzz_inside(m->hm_host, m->hm_hostlen, buf, hl));
	else
		FUZZ_ASSERT(m->hm_minor == 0);
}

/* Check one parse result. */
static void
fuzz_check(int rv, const struct http_msg *m, const char *buf, size_t len,
    int isresp)
{
	FUZZ_ASSERT(rv >= -1 && rv <= 1);
	if (rv == 1)
		fuzz_check_ok(m, buf, len, isresp);
	else if (rv == -1) {
		FUZZ_ASSERT(m->hm_cause != NULL);
		if (isresp)
			FUZZ_ASSERT(m->hm_error == 502);
		else
			FUZZ_ASSERT(m->hm_error == 400 || m->hm_error == 414 ||
			    m->hm_error == 417 || m->hm_error == 431 ||
			    m->hm_error == 505);
	} else
		FUZZ_ASSERT(m->hm_scan <= len);
}

/* Two parses of the same bytes must have the same outcome. */
static void
fuzz_same(int rv1, const struct http_msg *a, int rv2,
    const struct http_msg *b)
{
	size_t	 i;

	FUZZ_ASSERT(rv1 == rv2);
	if (rv1 == -1) {
		FUZZ_ASSERT(a->hm_error == b->hm_error);
		FUZZ_ASSERT(strcmp(a->hm_cause, b->hm_cause) == 0);
	}
	if (rv1 != 1)
		return;
	FUZZ_ASSERT(a->hm_hdrlen == b->hm_hdrlen);
	FUZZ_ASSERT(a->hm_nheaders == b->hm_nheaders);
	FUZZ_ASSERT(a->hm_body == b->hm_body);
	FUZZ_ASSERT(a->hm_content_length == b->hm_content_length);
	FUZZ_ASSERT(a->hm_flags == b->hm_flags);
	FUZZ_ASSERT(a->hm_minor == b->hm_minor);
	FUZZ_ASSERT(a->hm_status == b->hm_status);
	FUZZ_ASSERT(a->hm_path == b->hm_path && a->hm_query == b->hm_query);
	FUZZ_ASSERT(a->hm_pathlen == b->hm_pathlen);
	FUZZ_ASSERT(a->hm_host == b->hm_host);
	FUZZ_ASSERT(a->hm_upgrade == b->hm_upgrade &&
	    a->hm_upgradelen == b->hm_upgradelen);
	for (i = 0; i < a->hm_nheaders; i++)
		FUZZ_ASSERT(a->hm_headers[i].h_value ==
		    b->hm_headers[i].h_value &&
		    a->hm_headers[i].h_valuelen ==
		    b->hm_headers[i].h_valuelen);
}

/* Parse as a request (isresp 0) or response, three ways, and compare. */
static void
fuzz_parse(const char *buf, size_t len, size_t split,
    const struct http_limits *hl, int isresp, int mbit)
{
	static struct http_msg	 w, s, b;
	int			 rw, rs, rb = 0;
	size_t			 k;

#define FUZZ_PARSE(m, n) (isresp ?					\
	http_parse_response((m), buf, (n), hl, mbit) :			\
	http_parse_request((m), buf, (n), hl))

	http_msg_init(&w);
	rw = FUZZ_PARSE(&w, len);
	fuzz_check(rw, &w, buf, len, isresp);
	FUZZ_ASSERT(FUZZ_PARSE(&w, len) == rw);

	http_msg_init(&s);
	rs = FUZZ_PARSE(&s, split);
	fuzz_check(rs, &s, buf, split, isresp);
	if (rs == 0)
		rs = FUZZ_PARSE(&s, len);
	fuzz_check(rs, &s, buf, len, isresp);
	fuzz_same(rw, &w, rs, &s);

	http_msg_init(&b);
	for (k = 1; k <= len && rb == 0; k++) {
		rb = FUZZ_PARSE(&b, k);
		if (rb == 1)
			FUZZ_ASSERT(b.hm_hdrlen == k);
	}
	fuzz_same(rw, &w, rb, &b);
#undef FUZZ_PARSE
}

/* http_data_cb: payload must lie in the slice being fed. */
static void
fuzz_cb(void *arg, const char *p, size_t n)
{
	struct fuzz_sink	*s = arg;

	FUZZ_ASSERT(n > 0);
	FUZZ_ASSERT(fuzz_inside(p, n, s->lo, s->hi - s->lo));
	s->n += n;
	s->hash = fuzz_fnv(s->hash, (const uint8_t *)p, n);
}

/*
 * Decode buf as a chunked body in pieces of 1..8 bytes (sizes taken from
 * seed; seed 0 means one piece), checking the per-feed invariants.
 * Returns the total consumed, or -1.
 */
static ssize_t
fuzz_chunked(const char *buf, size_t len, uint64_t seed,
    struct http_chunked *hc, struct fuzz_sink *s)
{
	size_t	 off = 0, piece, total = 0;
	ssize_t	 r;

	http_chunked_init(hc);
	memset(s, 0, sizeof(*s));
	while (off < len) {
		piece = seed == 0 ? len : 1 + (seed >> (off % 61)) % 8;
		if (piece > len - off)
			piece = len - off;
		s->lo = buf + off;
		s->hi = buf + off + piece;
		r = http_chunked_feed(hc, buf + off, piece, fuzz_cb, s);
		if (r == -1) {
			FUZZ_ASSERT(hc->hc_cause != NULL);
			FUZZ_ASSERT(http_chunked_feed(hc, buf, len, NULL,
			    NULL) == -1);
			return (-1);
		}
		FUZZ_ASSERT((size_t)r <= piece);
		total += r;
		if ((size_t)r < piece) {
			FUZZ_ASSERT(http_chunked_done(hc));
			break;
		}
		off += piece;
	}
	FUZZ_ASSERT(hc->hc_payload == s->n);
	FUZZ_ASSERT(s->n <= total);
	if (http_chunked_done(hc))
		FUZZ_ASSERT(http_chunked_feed(hc, buf, len, NULL, NULL) == 0);
	return (total);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_chunked	 hc1, hc2;
	struct fuzz_sink	 s1, s2;
	const char		*buf = (const char *)data;
	uint64_t		 h;
	ssize_t			 c1, c2;
	const struct http_limits *hl;

	h = fuzz_fnv(0xcbf29ce484222325ULL, data, size);
	hl = (h & 1) ? &fuzz_small : &fuzz_large;

	fuzz_parse(buf, size, size ? h % (size + 1) : 0, hl, 0, 0);
	fuzz_parse(buf, size, size ? (h >> 16) % (size + 1) : 0, hl, 1,
	    (h & 2) ? HTTP_M_HEAD : HTTP_M_GET);

	c1 = fuzz_chunked(buf, size, 0, &hc1, &s1);
	c2 = fuzz_chunked(buf, size, h | 1, &hc2, &s2);
	FUZZ_ASSERT(c1 == c2);
	FUZZ_ASSERT(http_chunked_done(&hc1) == http_chunked_done(&hc2));
	if (c1 == -1)
		FUZZ_ASSERT(strcmp(hc1.hc_cause, hc2.hc_cause) == 0);
	else {
		FUZZ_ASSERT(s1.n == s2.n && s1.hash == s2.hash);
		FUZZ_ASSERT((size_t)c1 <= size);
	}
	return (0);
}
