/*
 * libFuzzer target for credential parsing (src/auth.c): the API key header,
 * Authorization (Basic, Bearer, other schemes), X-APP-ID with a key, in
 * any number and order, against a real key store holding an API key and
 * an app key, for every combination of route schemes.
 *
 * The input is not parsed by the HTTP parser: it is split into header
 * lines at '\n', so that values can hold any byte (a NUL included), and
 * every name and value is copied into an allocation of exactly its size,
 * as the connection's input would hold it with no terminator: reading a
 * value past its length is an ASan error.  The first byte picks the route
 * (scheme list, scopes) and the key header name.  A line whose first byte
 * is below 7 names a header from a table (the credential headers, mostly)
 * and the rest is its value; 7 makes "Authorization: Basic" with the rest
 * base64-encoded here, so that the fuzzer works on the decoded bytes (and
 * their length) directly; else the name runs to the first ':'.
 *
 * Checked: the status is one auth_check() may give, refusals carry a code
 * and a message that quotes no value sent (of 12 bytes or more, without
 * blanks: the fixed sentences have no such word), 401s a challenge,
 * allowed requests give identity headers, and neither secret of the store
 * appears in a message or in the identity headers.  auth_check_secret()
 * gets the first values as bare secrets too.
 */

#include <sys/types.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "auth.h"
#include "http.h"
#include "keystore.h"
#include "route.h"
#include "secret.h"
#include "fuzz.h"

#define FUZZ_NOW	INT64_C(1700000000000)
#define FUZZ_MAXKEYS	8
#define FUZZ_LEAK_MIN	12	/* values this long must not be echoed */

/* Secrets of the store: in the seed corpus too. */
#define FUZZ_API	"live_Pq3Zt8Lw0Xv2Nc6Hb9Rk1Ym4Sd7Gf5Ja"
#define FUZZ_APP	"test_Ap0Ap1Ap2Ap3Ap4Ap5Ap6Ap7Ap8Ap9AB"

#define FUZZ_BASIC	7	/* "Authorization: Basic " base64(rest) */
static const char *const fuzz_names[FUZZ_BASIC] = {
	"Authorization", "X-API-KEY", "X-APP-ID", "X-My-Key",
	"authorization", "x-api-key", "Host"
};

/* Route scheme lists, picked by the first byte. */
static const enum route_auth fuzz_routes[][3] = {
	{ ROUTE_AUTH_API_KEY },
	{ ROUTE_AUTH_APP_KEY },
	{ ROUTE_AUTH_API_KEY, ROUTE_AUTH_APP_KEY },
	{ ROUTE_AUTH_APP_KEY, ROUTE_AUTH_API_KEY },
	{ ROUTE_AUTH_API_KEY, ROUTE_AUTH_ANONYMOUS },
	{ ROUTE_AUTH_APP_KEY, ROUTE_AUTH_DENY },
	{ ROUTE_AUTH_API_KEY, ROUTE_AUTH_JWT },
	{ ROUTE_AUTH_ANONYMOUS, ROUTE_AUTH_API_KEY, ROUTE_AUTH_APP_KEY }
};
static const int fuzz_nroute[] = { 1, 1, 2, 2, 2, 2, 2, 3 };

static struct keystore	 fuzz_ks;
static int		 fuzz_ready;

/* A key store with one API key and one app key (app "shop"). */
static void
fuzz_setup(void)
{
	static const struct {
		const char	*id, *secret, *app, *scopes;
	} keys[] = {
		{ "key_fuzzapi000000000", FUZZ_API, "", "read write" },
		{ "key_fuzzapp000000000", FUZZ_APP, "shop", "read" }
	};
	struct ks_key	 k;
	void		*region;
	size_t		 i, size = keystore_size(FUZZ_MAXKEYS, FUZZ_MAXKEYS);

	if (posix_memalign(&region, 64, size) != 0)
		abort();
	memset(region, 0, size);
	keystore_init(&fuzz_ks, region, FUZZ_MAXKEYS, FUZZ_MAXKEYS,
	    UINT64_C(0x5eed));
	if (keystore_lock(&fuzz_ks, getpid(), 1000) != KS_OK)
		abort();
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		memset(&k, 0, sizeof(k));
		snprintf(k.k_id, sizeof(k.k_id), "%s", keys[i].id);
		secret_digest(keys[i].secret, strlen(keys[i].secret),
		    k.k_digest);
		snprintf(k.k_prefix, sizeof(k.k_prefix), "live");
		secret_hint(keys[i].secret, k.k_hint, sizeof(k.k_hint));
		snprintf(k.k_owner, sizeof(k.k_owner), "owner%zu", i);
		snprintf(k.k_app, sizeof(k.k_app), "%s", keys[i].app);
		snprintf(k.k_scopes, sizeof(k.k_scopes), "%s", keys[i].scopes);
		if (keystore_put(&fuzz_ks, &k, i + 1) != KS_OK)
			abort();
	}
	keystore_unlock(&fuzz_ks, getpid());
	fuzz_ready = 1;
}

/* An exact-size copy of p[0..n) (at least one byte is allocated). */
static char *
fuzz_dup(const uint8_t *p, size_t n)
{
	char	*s;

	if ((s = malloc(n > 0 ? n : 1)) == NULL)
		abort();
	memcpy(s, p, n);
	return (s);
}

/* Into h: Authorization "Basic " and base64 of p[0..n), exact size. */
static void
fuzz_basic(struct http_header *h, const uint8_t *p, size_t n)
{
	char	*v;
	int	 len;

	h->h_name = fuzz_dup((const uint8_t *)"Authorization", 13);
	h->h_namelen = 13;
	if ((v = malloc(6 + 4 * ((n + 2) / 3) + 1)) == NULL)
		abort();
	memcpy(v, "Basic ", 6);
	len = EVP_EncodeBlock((unsigned char *)v + 6, p, (int)n);
	h->h_value = fuzz_dup((const uint8_t *)v, 6 + (size_t)len);
	h->h_valuelen = 6 + (size_t)len;
	free(v);
}

/* Does hay[0..hlen) contain needle[0..nlen)? */
static int
fuzz_contains(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
	size_t	 i;

	for (i = 0; nlen > 0 && i + nlen <= hlen; i++)
		if (memcmp(hay + i, needle, nlen) == 0)
			return (1);
	return (0);
}

/* Is v[0..n) letters and '-' only, as the words of a message are? */
static int
fuzz_word(const char *v, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (!((v[i] >= 'a' && v[i] <= 'z') ||
		    (v[i] >= 'A' && v[i] <= 'Z') || v[i] == '-'))
			return (0);
	return (1);
}

/*
 * No value of FUZZ_LEAK_MIN bytes or more, without blanks, in s[0..n).
 * A value that is a plain word is skipped: it may be a word of the fixed
 * text ("Authorization" in "the Authorization header appears more than
 * once"), while credentials carry digits, '_' or base64 symbols.
 */
static void
fuzz_no_leak(const struct http_msg *m, const char *s, size_t n)
{
	const struct http_header	*h;
	size_t				 i;

	for (i = 0; i < m->hm_nheaders; i++) {
		h = &m->hm_headers[i];
		if (h->h_valuelen < FUZZ_LEAK_MIN ||
		    memchr(h->h_value, ' ', h->h_valuelen) != NULL ||
		    fuzz_word(h->h_value, h->h_valuelen))
			continue;
		FUZZ_ASSERT(!fuzz_contains(s, n, h->h_value, h->h_valuelen));
	}
}

/* Neither secret of the store in s[0..n). */
static void
fuzz_no_secret(const char *s, size_t n)
{
	static const char	 api[] = FUZZ_API, app[] = FUZZ_APP;

	/* The random part, after "live_" or "test_". */
	FUZZ_ASSERT(!fuzz_contains(s, n, &api[5], sizeof(api) - 6));
	FUZZ_ASSERT(!fuzz_contains(s, n, &app[5], sizeof(app) - 6));
}

/* Check what auth_check() decided for m. */
static void
fuzz_check(const struct http_msg *m, const struct auth_result *ar, int rv)
{
	char	 buf[1024];
	size_t	 n;

	FUZZ_ASSERT(rv == ar->ar_status);
	FUZZ_ASSERT(rv == 0 || rv == 401 || rv == 403 || rv == 429 ||
	    rv == 503);
	FUZZ_ASSERT(memchr(ar->ar_message, '\0', sizeof(ar->ar_message)) !=
	    NULL);
	if (rv != 0) {
		FUZZ_ASSERT(ar->ar_code != NULL && ar->ar_message[0] != '\0');
		fuzz_no_leak(m, ar->ar_message, strlen(ar->ar_message));
		fuzz_no_secret(ar->ar_message, strlen(ar->ar_message));
	}
	FUZZ_ASSERT((rv == 401) == (ar->ar_challenge != NULL));
	n = auth_identity_headers(ar, buf, sizeof(buf));
	FUZZ_ASSERT(n < sizeof(buf));
	FUZZ_ASSERT((rv == 0) == (n > 0));
	fuzz_no_secret(buf, n);
	n = auth_rate_headers(ar, buf, sizeof(buf));
	FUZZ_ASSERT(n == 0);	/* no limiter given */
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct http_msg	 m;
	struct http_header	*h;
	struct auth_result	 ar;
	struct route		 r;
	char			*scope = "read";
	const uint8_t		*p, *end, *nl, *colon;
	const char		*keyhdr;
	size_t			 i;
	int			 sel, rv;

	if (!fuzz_ready)
		fuzz_setup();
	if (size == 0)
		return (0);
	sel = data[0];
	memset(&r, 0, sizeof(r));
	r.r_nauth = fuzz_nroute[sel & 7];
	memcpy(r.r_auth, fuzz_routes[sel & 7], sizeof(fuzz_routes[0]));
	if (sel & 0x08) {
		r.r_scopes[0] = scope;
		r.r_nscopes = 1;
	}
	keyhdr = (sel & 0x10) ? "x-my-key" : "x-api-key";

	http_msg_init(&m);
	for (p = data + 1, end = data + size; p < end &&
	    m.hm_nheaders < HTTP_MAX_HEADERS; p = nl + 1) {
		if ((nl = memchr(p, '\n', end - p)) == NULL)
			nl = end;
		h = &m.hm_headers[m.hm_nheaders++];
		if (p < nl && *p == FUZZ_BASIC)
			fuzz_basic(h, p + 1, nl - p - 1);
		else if (p < nl && *p < FUZZ_BASIC) {
			h->h_name = fuzz_dup((const uint8_t *)fuzz_names[*p],
			    strlen(fuzz_names[*p]));
			h->h_namelen = strlen(fuzz_names[*p]);
			h->h_value = fuzz_dup(p + 1, nl - p - 1);
			h->h_valuelen = nl - p - 1;
		} else {
			if ((colon = memchr(p, ':', nl - p)) == NULL)
				colon = nl;
			h->h_name = fuzz_dup(p, colon - p);
			h->h_namelen = colon - p;
			if (colon < nl)
				colon++;
			h->h_value = fuzz_dup(colon, nl - colon);
			h->h_valuelen = nl - colon;
		}
	}

	rv = auth_check(&r, &m, &fuzz_ks, keyhdr, FUZZ_NOW, NULL, &ar);
	if (rv == 0)
		rv = auth_limit(&r, NULL, &fuzz_ks, NULL, FUZZ_NOW, &ar);
	fuzz_check(&m, &ar, rv);
	for (i = 0; i < m.hm_nheaders && i < 4; i++) {
		rv = auth_check_secret(&fuzz_ks, m.hm_headers[i].h_value,
		    m.hm_headers[i].h_valuelen, (sel & 0x20) ? "shop" : NULL,
		    FUZZ_NOW, &ar);
		FUZZ_ASSERT(rv == ar.ar_status);
		if (rv != 0)
			fuzz_no_leak(&m, ar.ar_message, strlen(ar.ar_message));
	}

	for (i = 0; i < m.hm_nheaders; i++) {
		free((void *)(uintptr_t)m.hm_headers[i].h_name);
		free((void *)(uintptr_t)m.hm_headers[i].h_value);
	}
	return (0);
}
