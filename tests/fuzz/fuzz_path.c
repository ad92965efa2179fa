/*
 * libFuzzer target for the path normaliser and the header-name policy
 * (src/forward.c), which see the client's bytes before routing.
 *
 * The input is normalised as a path, merging slashes and not, out of place
 * and in place.  Checked on every result: both ways agree; a refusal says
 * why; a normalised path is no longer than its input, has only upper-case
 * escapes of reserved bytes (never of '/' or of an unreserved character),
 * no dot segment, no "//" when merging, normalises to itself, and means
 * what the input meant: fully percent-decoded (slashes merged when
 * merging) the two are the same bytes.  The input is also parsed as a
 * request; if it parses, its path goes through the same checks and no
 * header kept by forward_keep_header() is a protected name in either
 * spelling, or has '_' in its name unless underscores are allowed.
 */

#include <sys/types.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "http.h"
#include "fuzz.h"

#define FUZZ_MAX	4096

/* Names no kept header may have, in any case and '_'/'-' spelling. */
static const char *const fuzz_protected[] = {
	"x-consumer-id", "x-key-id", "x-app-id", "x-scopes", "x-auth-scheme",
	"x-forwarded-for", "x-forwarded-proto", "x-request-id", "expect",
	"connection", "keep-alive", "te", "trailer", "transfer-encoding",
	"upgrade", "authorization", "x-api-key", NULL
};

/* Value of hex digit c, or -1. */
static int
fuzz_hex(int c)
{
	if (c >= '0' && c <= '9')
		return (c - '0');
	if (c >= 'a' && c <= 'f')
		return (c - 'a' + 10);
	if (c >= 'A' && c <= 'F')
		return (c - 'A' + 10);
	return (-1);
}

/*
 * Decode every valid escape of p into out, merging decoded '/' runs when
 * merge; returns the length.  (Invalid escapes never reach here.)
 */
static size_t
fuzz_decode(const char *p, size_t len, char *out, int merge)
{
	size_t	 i, j = 0;
	int	 c;

	for (i = 0; i < len; i++) {
		c = (unsigned char)p[i];
		if (c == '%' && i + 2 < len && fuzz_hex(p[i + 1]) >= 0 &&
		    fuzz_hex(p[i + 2]) >= 0) {
			c = fuzz_hex(p[i + 1]) << 4 | fuzz_hex(p[i + 2]);
			i += 2;
		}
		if (c == '/' && merge && j > 0 && out[j - 1] == '/')
			continue;
		out[j++] = (char)c;
	}
	return (j);
}

/* Is c unreserved (RFC 3986 2.3)? */
static int
fuzz_unreserved(int c)
{
	return ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
	    c == '~');
}

/* Normalise p both ways with flags and check the result. */
static void
fuzz_path(const char *p, size_t len, int flags)
{
	static char	 out[FUZZ_MAX], in[FUZZ_MAX], again[FUZZ_MAX];
	static char	 d1[FUZZ_MAX], d2[FUZZ_MAX];
	const char	*cause = NULL, *cause2 = NULL;
	size_t		 olen, ilen, alen, i, n1, n2;
	int		 rc, rc2, v, merge = flags & FORWARD_MERGE_SLASHES;

	if (len > FUZZ_MAX)
		return;
	rc = forward_normalize_path(p, len, out, &olen, flags, &cause);
	memcpy(in, p, len);
	rc2 = forward_normalize_path(in, len, in, &ilen, flags, &cause2);
	FUZZ_ASSERT(rc == rc2);
	if (rc == -1) {
		FUZZ_ASSERT(rc == -1 && cause != NULL && cause2 != NULL);
		return;
	}
	FUZZ_ASSERT(rc == 0 && olen == ilen && olen <= len);
	FUZZ_ASSERT(memcmp(out, in, olen) == 0);
	FUZZ_ASSERT(!forward_dot_segment(out, olen));
	for (i = 0; i < olen; i++) {
		if (merge && out[i] == '/' && i + 1 < olen)
			FUZZ_ASSERT(out[i + 1] != '/');
		if (out[i] != '%')
			continue;
		FUZZ_ASSERT(i + 2 < olen);
		FUZZ_ASSERT(!(out[i + 1] >= 'a' && out[i + 1] <= 'f'));
		FUZZ_ASSERT(!(out[i + 2] >= 'a' && out[i + 2] <= 'f'));
		v = fuzz_hex(out[i + 1]) << 4 | fuzz_hex(out[i + 2]);
		FUZZ_ASSERT(v >= 0 && v != '/' && !fuzz_unreserved(v));
	}
	FUZZ_ASSERT(forward_normalize_path(out, olen, again, &alen, flags,
	    &cause) == 0);
	FUZZ_ASSERT(alen == olen && memcmp(again, out, olen) == 0);
	n1 = fuzz_decode(p, len, d1, merge);
	n2 = fuzz_decode(out, olen, d2, merge);
	FUZZ_ASSERT(n1 == n2 && memcmp(d1, d2, n1) == 0);
}

/* The header policy on a parsed request, underscores allowed or not. */
static void
fuzz_headers(const struct http_msg *m, int underscores)
{
	struct forward_policy		 fp = { "x-api-key", underscores, NULL, 0 };
	const struct http_header	*h;
	size_t				 i, k;

	for (i = 0; i < m->hm_nheaders; i++) {
		h = &m->hm_headers[i];
		if (!forward_keep_header(m, h, &fp))
			continue;
		if (!underscores)
			FUZZ_ASSERT(memchr(h->h_name, '_', h->h_namelen) ==
			    NULL);
		for (k = 0; fuzz_protected[k] != NULL; k++)
			FUZZ_ASSERT(!fuzz_header_is(h->h_name, h->h_namelen,
			    fuzz_protected[k], 1));
		FUZZ_ASSERT(h->h_namelen <= 6 ||
		    !fuzz_header_is(h->h_name, 6, "proxy-", 1));
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct http_limits	 lim = { 8192, 65536 };
	struct http_msg			 m;
	const char			*p = (const char *)data;

	fuzz_path(p, size, 0);
	fuzz_path(p, size, FORWARD_MERGE_SLASHES);
	http_msg_init(&m);
	if (http_parse_request(&m, p, size, &lim) != 1)
		return (0);
	if (m.hm_pathlen > 0 && m.hm_path[0] == '/') {
		fuzz_path(m.hm_path, m.hm_pathlen, 0);
		fuzz_path(m.hm_path, m.hm_pathlen, FORWARD_MERGE_SLASHES);
	}
	fuzz_headers(&m, 0);
	fuzz_headers(&m, 1);
	return (0);
}
