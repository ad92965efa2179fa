/* The built-in echo upstream; see echo.h. */

#include <sys/types.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "echo.h"
#include "forward.h"
#include "http.h"
#include "util.h"

/*
 * A small output buffer on the stack, flushed to the evbuffer when full, so
 * that building the object costs a handful of evbuffer_add() calls rather
 * than one per JSON token.
 */
struct echo_out {
	struct evbuffer	*eo_buf;
	size_t		 eo_len;
	int		 eo_error;
	char		 eo_data[4096];
};

static void
echo_flush(struct echo_out *eo)
{
	if (eo->eo_len > 0 && evbuffer_add(eo->eo_buf, eo->eo_data,
	    eo->eo_len) == -1)
		eo->eo_error = 1;
	eo->eo_len = 0;
}

/* Append raw bytes. */
static void
echo_raw(struct echo_out *eo, const char *s, size_t n)
{
	if (n > sizeof(eo->eo_data) - eo->eo_len) {
		echo_flush(eo);
		if (n > sizeof(eo->eo_data)) {
			if (evbuffer_add(eo->eo_buf, s, n) == -1)
				eo->eo_error = 1;
			return;
		}
	}
	memcpy(eo->eo_data + eo->eo_len, s, n);
	eo->eo_len += n;
}

/* Append s as JSON string contents (escaped, lowercased if lower). */
static void
echo_str(struct echo_out *eo, const char *s, size_t n, int lower)
{
	char	 tmp[256];
	size_t	 i, chunk, need;

	for (; n > 0; s += chunk, n -= chunk) {
		chunk = n > 40 ? 40 : n;	/* 40 * 6 escaped bytes fit in tmp */
		need = util_json_escape(tmp, sizeof(tmp), s, chunk);
		if (lower)
			for (i = 0; i < need; i++)
				if (tmp[i] >= 'A' && tmp[i] <= 'Z')
					tmp[i] += 'a' - 'A';
		echo_raw(eo, tmp, need);
	}
}

#define ECHO_LIT(eo, s)	echo_raw((eo), (s), sizeof(s) - 1)

/* Emit the values of every kept header named like msg->hm_headers[first]. */
static void
echo_header_values(struct echo_out *eo, const struct http_msg *msg,
    size_t first)
{
	const struct http_header	*h = &msg->hm_headers[first], *o;
	size_t				 i;

	echo_str(eo, h->h_value, h->h_valuelen, 0);
	for (i = first + 1; i < msg->hm_nheaders; i++) {
		o = &msg->hm_headers[i];
		if (o->h_namelen == h->h_namelen &&
		    strncasecmp(o->h_name, h->h_name, h->h_namelen) == 0) {
			ECHO_LIT(eo, ", ");
			echo_str(eo, o->h_value, o->h_valuelen, 0);
		}
	}
}

/* Has a header of the same name as hm_headers[i] appeared before it? */
static int
echo_seen(const struct http_msg *msg, size_t i)
{
	const struct http_header	*h = &msg->hm_headers[i];
	size_t				 j;

	for (j = 0; j < i; j++)
		if (msg->hm_headers[j].h_namelen == h->h_namelen &&
		    strncasecmp(msg->hm_headers[j].h_name, h->h_name,
		    h->h_namelen) == 0)
			return (1);
	return (0);
}

/* The identity headers ("Name: value\r\n" lines) as JSON members. */
static void
echo_ident(struct echo_out *eo, const char *p, size_t len)
{
	const char	*end = p + len, *colon, *eol;

	while (p < end) {
		if ((eol = memchr(p, '\r', (size_t)(end - p))) == NULL)
			eol = end;
		if ((colon = memchr(p, ':', (size_t)(eol - p))) != NULL) {
			ECHO_LIT(eo, ",\"");
			echo_str(eo, p, (size_t)(colon - p), 1);
			ECHO_LIT(eo, "\":\"");
			colon += colon + 1 < eol && colon[1] == ' ' ? 2 : 1;
			echo_str(eo, colon, (size_t)(eol - colon), 0);
			ECHO_LIT(eo, "\"");
		}
		p = eol + 2;
	}
}

/* Emit the forwarded headers as a JSON object. */
static void
echo_headers(struct echo_out *eo, const struct http_msg *msg,
    const struct forward_added *fa, const struct forward_policy *fp)
{
	const struct http_header	*h, *xff;
	size_t				 i;

	ECHO_LIT(eo, "{");
	for (i = 0; i < msg->hm_nheaders; i++) {
		h = &msg->hm_headers[i];
		if (!forward_keep_header(msg, h, fp) || echo_seen(msg, i))
			continue;
		ECHO_LIT(eo, "\"");
		echo_str(eo, h->h_name, h->h_namelen, 1);
		ECHO_LIT(eo, "\":\"");
		echo_header_values(eo, msg, i);
		ECHO_LIT(eo, "\",");
	}
	ECHO_LIT(eo, "\"x-forwarded-for\":\"");
	if (fa->fa_xff_keep && (xff = forward_xff(msg)) != NULL) {
		echo_header_values(eo, msg, (size_t)(xff - msg->hm_headers));
		ECHO_LIT(eo, ", ");
	}
	echo_str(eo, fa->fa_client, strlen(fa->fa_client), 0);
	if (fa->fa_tls)
		ECHO_LIT(eo, "\",\"x-forwarded-proto\":\"https\"");
	else
		ECHO_LIT(eo, "\",\"x-forwarded-proto\":\"http\"");
	ECHO_LIT(eo, ",\"x-request-id\":\"");
	echo_str(eo, fa->fa_reqid, fa->fa_reqidlen, 0);
	ECHO_LIT(eo, "\"");
	echo_ident(eo, fa->fa_ident, fa->fa_identlen);
	ECHO_LIT(eo, "}");
}

/* Append the echo object for msg, all but the body size. */
int
echo_begin(struct evbuffer *out, const struct http_msg *msg,
    const struct forward_added *fa, const struct forward_policy *fp)
{
	struct echo_out	 eo;

	eo.eo_buf = out;
	eo.eo_len = 0;
	eo.eo_error = 0;
	ECHO_LIT(&eo, "{\"method\":\"");
	echo_str(&eo, msg->hm_method, msg->hm_methodlen, 0);
	ECHO_LIT(&eo, "\",\"path\":\"");
	echo_str(&eo, msg->hm_path, msg->hm_pathlen, 0);
	if (msg->hm_query != NULL) {
		ECHO_LIT(&eo, "\",\"query\":\"");
		echo_str(&eo, msg->hm_query, msg->hm_querylen, 0);
		ECHO_LIT(&eo, "\",\"headers\":");
	} else
		ECHO_LIT(&eo, "\",\"query\":null,\"headers\":");
	echo_headers(&eo, msg, fa, fp);
	echo_flush(&eo);
	return (eo.eo_error ? -1 : 0);
}

/* Append the body size and close the object. */
int
echo_finish(struct evbuffer *out, uint64_t body_bytes)
{
	char	 tmp[48];
	size_t	 n;

	memcpy(tmp, ",\"body_bytes\":", 14);
	n = 14 + util_u64toa(tmp + 14, body_bytes);
	memcpy(tmp + n, "}\n", 2);
	return (evbuffer_add(out, tmp, n + 2));
}
