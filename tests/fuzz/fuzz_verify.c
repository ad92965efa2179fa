/*
 * libFuzzer target for verify_path sub-requests (nginx auth_request): the
 * request is parsed by the HTTP parser (src/http.c) from a buffer of
 * exactly its size, as the connection's input holds it, then
 * auth_verify_target() reads X-Original-Method and X-Original-URI, the
 * dot-segment check of forward.c looks at the path, and auth_check()
 * decides on the credentials the sub-request carries, as conn_verify()
 * does in the worker.
 *
 * Header values are not NUL-terminated there; reading one past its length
 * runs off the buffer (ASan).  When the first byte of the input is below
 * 0x20 the rest is taken as header lines after a fixed request line and
 * Host, so that the fuzzer spends its time on the headers.
 *
 * Checked: either a reason for a 400, or a method bit and a path that lies
 * inside the X-Original-URI value, starts with '/', holds no '?', and is
 * its whole value up to the first '?'; auth_check()'s status is one it may
 * give.
 */

#include <sys/types.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "forward.h"
#include "http.h"
#include "keystore.h"
#include "route.h"
#include "fuzz.h"

#define FUZZ_PREFIX	"GET /_keygate/verify HTTP/1.1\r\nHost: a\r\n"

static const struct http_limits fuzz_limits = { 8192, 65536 };

/* Check auth_verify_target()'s answer against the headers of m. */
static void
fuzz_check_target(const struct http_msg *m, int rv, int mbit,
    const char *path, size_t len, const char *cause)
{
	const struct http_header	*uri = NULL;
	size_t				 i, n = 0;

	for (i = 0; i < m->hm_nheaders; i++)
		if (http_strcaseeq(m->hm_headers[i].h_name,
		    m->hm_headers[i].h_namelen, "x-original-uri")) {
			uri = &m->hm_headers[i];
			n++;
		}
	if (rv == -1) {
		FUZZ_ASSERT(cause != NULL && cause[0] != '\0');
		return;
	}
	FUZZ_ASSERT(rv == 0);
	FUZZ_ASSERT(n == 1 && mbit != 0);
	FUZZ_ASSERT(path == uri->h_value);
	FUZZ_ASSERT(len > 0 && len <= uri->h_valuelen && path[0] == '/');
	FUZZ_ASSERT(memchr(path, '?', len) == NULL);
	FUZZ_ASSERT(len == uri->h_valuelen || path[len] == '?');
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct http_msg	 m;
	struct auth_result	 ar;
	struct route		 r;
	const char		*path, *cause;
	char			*buf;
	size_t			 len, plen, pre;
	int			 rv, mbit, st;

	pre = size > 0 && data[0] < 0x20 ? sizeof(FUZZ_PREFIX) - 1 : 0;
	len = pre + (pre ? size - 1 : size);
	if ((buf = malloc(len > 0 ? len : 1)) == NULL)
		return (0);
	memcpy(buf, FUZZ_PREFIX, pre);
	memcpy(buf + pre, data + (pre ? 1 : 0), len - pre);

	http_msg_init(&m);
	if (http_parse_request(&m, buf, len, &fuzz_limits) != 1)
		goto done;
	cause = NULL;
	rv = auth_verify_target(&m, &mbit, &path, &plen, &cause);
	fuzz_check_target(&m, rv, mbit, path, plen, cause);
	if (rv == -1)
		goto done;
	/* conn_verify() normalises the path in place before routing. */
	if (forward_normalize_path(path, plen, (char *)path, &plen,
	    FORWARD_MERGE_SLASHES, &cause) == -1)
		goto done;
	FUZZ_ASSERT(plen > 0 && path[0] == '/');

	/* The route's decision on the credentials: no key store. */
	memset(&r, 0, sizeof(r));
	r.r_auth[0] = (mbit & (HTTP_M_GET | HTTP_M_HEAD)) ?
	    ROUTE_AUTH_API_KEY : ROUTE_AUTH_APP_KEY;
	r.r_auth[1] = ROUTE_AUTH_ANONYMOUS;
	r.r_nauth = plen > 1 && path[1] == 'a' ? 2 : 1;
	st = auth_check(&r, &m, NULL, "x-api-key", 0, NULL, &ar);
	FUZZ_ASSERT(st == ar.ar_status);
	FUZZ_ASSERT(st == 0 || st == 401 || st == 403);
	FUZZ_ASSERT(st != 0 || ar.ar_scheme == ROUTE_AUTH_ANONYMOUS);
done:
	free(buf);
	return (0);
}
