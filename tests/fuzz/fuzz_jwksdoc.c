/*
 * libFuzzer target for the master's two parsers of outside bytes in
 * src/jwks.c (the JWKS inside them is fuzz_jwks's): discovery_uri(), the
 * OpenID discovery document from the network, and cache_parse(), the
 * cache file state_dir/jwks-NAME.json.  jwks.c is compiled into this file
 * so that its static functions can be called; the provider is built by
 * hand.  Neither call touches libcurl, libevent or the segment.
 *
 * The first byte of the input chooses, the rest is the document, copied
 * into an allocation of exactly its size without a NUL (reading past it
 * is an ASan error):
 *	bit 0 clear ('d'): a discovery document, as if fetched
 *	bit 0 set ('c'): a cache file, the provider's source known
 *	bits 0 and 2 set ('u'): a cache file, the provider's source unknown
 *
 * Checked: a refusal has a short, printable reason that quotes no more
 * than FUZZ_QUOTE_MAX bytes of the document in a row; a discovery success
 * replaces the provider's jwks_uri with a NUL-terminated, printable https
 * URL shorter than JWKS_URL_MAX (a refusal keeps the old one); a cache
 * success happens only when the provider's source is known and is exactly
 * the document's "source" string, and gives at least one key.
 */

#include "fuzz.h"
#include "../../src/jwks.c"

#define FUZZ_QUOTE_MAX	80	/* bytes of the input a reason may quote */
#define FUZZ_OLD_URI	"https://old.example/keys"

static struct jwks		 fj;
static struct jwt_provider	 fjp;
static char			 fsource[JWKS_SOURCE_MAX];

/* The provider, once: Entra discovery for one tenant, with a CA bundle. */
static struct jwks_prov *
fuzz_prov(void)
{
	static char	 iss[] = "https://login.microsoftonline.com/"
			    "{tenantid}/v2.0";
	static char	 tenant[] = "72f988bf-86f1-41af-91ab-2d7cd011db47";
	static char	 ca[] = "/etc/ssl/certs/ca-certificates.crt";
	static char	 name[] = "entra";
	struct jwks_prov *p = &fj.j_prov[0];

	if (p->p_conf != NULL)
		return (p);
	fjp.jp_name = name;
	fjp.jp_issuers[0] = iss;
	fjp.jp_nissuers = 1;
	fjp.jp_tenants[0] = tenant;
	fjp.jp_ntenants = 1;
	fjp.jp_ca = ca;
	if (source_of(&fjp, fsource, sizeof(fsource)) == -1)
		abort();
	p->p_jwks = &fj;
	p->p_conf = &fjp;
	snprintf(p->p_name, sizeof(p->p_name), "%s", name);
	return (p);
}

/* Is why a short, printable reason quoting little of doc[0..len)? */
static void
fuzz_check_why(const char *why, size_t whylen, const char *doc, size_t len)
{
	size_t	 i, n;

	n = strnlen(why, whylen);
	FUZZ_ASSERT(n > 0 && n < whylen);
	for (i = 0; i < n; i++)
		FUZZ_ASSERT(why[i] >= 0x20 && why[i] < 0x7f);
	for (i = 0; i + FUZZ_QUOTE_MAX < n; i++)
		FUZZ_ASSERT(memmem(doc, len, why + i, FUZZ_QUOTE_MAX + 1) ==
		    NULL);
}

/* discovery_uri() on doc[0..len) as the body of a discovery GET. */
static void
fuzz_discovery(struct jwks_prov *p, char *doc, size_t len)
{
	char		 why[JWKS_ERRLEN];
	const char	*c;
	char		*old;

	if ((old = strdup(FUZZ_OLD_URI)) == NULL)
		abort();
	p->p_jwks_uri = old;
	p->p_buf = doc;
	p->p_len = len;
	memset(why, 0, sizeof(why));
	if (discovery_uri(p, why, sizeof(why)) == -1) {
		fuzz_check_why(why, sizeof(why), doc, len);
		FUZZ_ASSERT(p->p_jwks_uri == old &&
		    strcmp(old, FUZZ_OLD_URI) == 0);
	} else {
		FUZZ_ASSERT(p->p_jwks_uri != NULL && p->p_jwks_uri != old);
		FUZZ_ASSERT(strnlen(p->p_jwks_uri, JWKS_URL_MAX) <
		    JWKS_URL_MAX);
		FUZZ_ASSERT(strncasecmp(p->p_jwks_uri, "https://", 8) == 0 &&
		    p->p_jwks_uri[8] != '\0');
		for (c = p->p_jwks_uri; *c != '\0'; c++)
			FUZZ_ASSERT(*c > ' ' && *c < 0x7f);
	}
	free(p->p_jwks_uri);
	p->p_jwks_uri = NULL;
	p->p_buf = NULL;
	p->p_len = 0;
}

/* Is doc[0..len) an object whose "source" is exactly p's source? */
static int
fuzz_same_source(const struct jwks_prov *p, const char *doc, size_t len)
{
	json_t	*root, *src;
	int	 same;

	if ((root = json_loadb(doc, len, 0, NULL)) == NULL)
		return (0);
	src = json_object_get(root, "source");
	same = json_is_string(src) && p->p_source[0] != '\0' &&
	    json_string_length(src) == strlen(p->p_source) &&
	    memcmp(json_string_value(src), p->p_source,
	    strlen(p->p_source)) == 0;
	json_decref(root);
	return (same);
}

/* cache_parse() on doc[0..len) as a cache file; p's source known or not. */
static void
fuzz_cache(struct jwks_prov *p, const char *doc, size_t len, int known)
{
	char	 why[JWKS_ERRLEN];
	int	 other = -1;

	snprintf(p->p_source, sizeof(p->p_source), "%s", known ? fsource :
	    "");
	memset(why, 0, sizeof(why));
	if (cache_parse(p, doc, len, &other, why, sizeof(why)) == -1) {
		fuzz_check_why(why, sizeof(why), doc, len);
		FUZZ_ASSERT(other == 0 || other == 1);
		return;
	}
	FUZZ_ASSERT(known && other == 0);
	FUZZ_ASSERT(fuzz_same_source(p, doc, len));
	FUZZ_ASSERT(fj.j_scratch.s_nkeys >= 1 &&
	    fj.j_scratch.s_nkeys <= JWK_MAX_KEYS);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct jwks_prov	*p = fuzz_prov();
	char			*doc;
	size_t			 len;

	if (size < 1)
		return (0);
	len = size - 1;
	if ((doc = malloc(len > 0 ? len : 1)) == NULL)
		abort();
	memcpy(doc, data + 1, len);
	if ((data[0] & 1) == 0)
		fuzz_discovery(p, doc, len);
	else
		fuzz_cache(p, doc, len, (data[0] & 4) == 0);
	free(doc);
	return (0);
}
