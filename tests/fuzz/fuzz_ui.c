/*
 * libFuzzer target for what the web console reads from a request (ui.c):
 * the Cookie header (ui_session_find), If-None-Match (ui_etag_match) and
 * X-CSRF-Token (ui_csrf_ok).  The input is split at its first two NUL
 * bytes: a Cookie value, an If-None-Match value, an X-CSRF-Token value.
 * Checked: a value names a session only if it carries that session's id
 * whole, as the value of a cookie named keygate_session (any of them); the session is
 * then found with its own CSRF token, which only itself matches;
 * If-None-Match matches an asset's ETag only if it holds it (or "*").
 */

#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "ui.h"

static struct ui_table	 fz_t;
static const uint8_t	 fz_bind[32] = { 9 };
static char		 fz_id[UI_TOKEN_LEN + 1], fz_csrf[UI_TOKEN_LEN + 1];

/* Is there a cookie "keygate_session=ID" in v[0..len), by RFC 6265's split? */
static int
fz_names_session(const char *v, size_t len)
{
	const char	*want = UI_COOKIE "=";
	size_t		 wl = strlen(want), i = 0, s, e;

	while (i < len) {
		while (i < len && (v[i] == ' ' || v[i] == ';'))
			i++;
		s = i;
		while (i < len && v[i] != ';')
			i++;
		for (e = i; e > s && v[e - 1] == ' '; e--)
			;		/* blanks after a pair: not its own */
		if (e - s == wl + UI_TOKEN_LEN && memcmp(v + s, want, wl) ==
		    0 && memcmp(v + s + wl, fz_id, UI_TOKEN_LEN) == 0)
			return (1);
	}
	return (0);
}

/* Does v[0..len) hold s? */
static int
fz_holds(const char *v, size_t len, const char *s)
{
	size_t	 n = strlen(s), i;

	for (i = 0; i + n <= len; i++)
		if (memcmp(v + i, s, n) == 0)
			return (1);
	return (0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char		*p = (const char *)data, *e = p + size, *inm;
	const char		*csrf, *z;
	const struct ui_asset	*a = ui_asset_find("", 0);
	char			 got[UI_TOKEN_LEN + 1];
	size_t			 clen, ilen, xlen;
	uint64_t		 st;
	int			 slot;

	if (fz_id[0] == '\0')
		FUZZ_ASSERT(ui_session_new(&fz_t, fz_bind, 1000, 60000, fz_id,
		    fz_csrf) == 0);
	z = memchr(p, '\0', size);
	clen = z != NULL ? (size_t)(z - p) : size;
	inm = z != NULL ? z + 1 : e;
	z = memchr(inm, '\0', (size_t)(e - inm));
	ilen = z != NULL ? (size_t)(z - inm) : (size_t)(e - inm);
	csrf = z != NULL ? z + 1 : e;
	xlen = (size_t)(e - csrf);

	/* The session, if the value names it (then with its token). */
	slot = ui_session_find(&fz_t, fz_bind, p, clen, 1001, 60000, &st, got);
	FUZZ_ASSERT((slot != -1) == fz_names_session(p, clen));
	if (slot != -1)
		FUZZ_ASSERT(strcmp(got, fz_csrf) == 0);
	FUZZ_ASSERT(ui_csrf_ok(csrf, xlen, fz_csrf) == (xlen == UI_TOKEN_LEN &&
	    memcmp(csrf, fz_csrf, UI_TOKEN_LEN) == 0));

	/* If-None-Match: never a match without the tag or a "*". */
	if (ui_etag_match(inm, ilen, a->ua_etag))
		FUZZ_ASSERT(memchr(inm, '*', ilen) != NULL ||
		    fz_holds(inm, ilen, a->ua_etag));
	FUZZ_ASSERT(ui_etag_match(a->ua_etag, strlen(a->ua_etag), a->ua_etag));
	return (0);
}
