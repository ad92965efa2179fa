/*
 * libFuzzer target for JWT decoding and verification (src/jwt.c, with the
 * key set built by src/jwk.c).  The first input byte is a mode:
 *
 *	mode & 1 == 0	the rest is the token, as a client would send it
 *	mode & 1 == 1	the rest is "HEADER\nPAYLOAD" (JSON text, or not):
 *			the target encodes both and signs them with its
 *			ES256 key (kid "e"), so that the claim checks behind
 *			the signature are reached too
 *	mode & 2	tenants=any instead of one tenant
 *	mode & 4	identity=oid and scope_claims=scp,groups
 *	mode & 8	algorithms=RS256,ES256 only
 *
 * against a fixed provider (a plain issuer and an Entra-style {tenantid}
 * issuer, two audiences, headers=tid:X-Tenant-Id,n:X-N) and a key set of
 * an RSA-2048 key "r", a P-256 key "e" and a P-384 key without kid, made
 * at start-up and published through jwk_parse_set() as a JWKS would be.
 * The token is copied into an allocation of exactly its size, so reading
 * past it is an ASan error.
 *
 * Checked: each step gives a status it may give, with a reason when it
 * refuses; the reason quotes no 12 bytes of the input without a blank
 * (the fixed sentences have no such run; the echoed alg name, bounded,
 * is checked apart); a verified token has
 * an issuer jwt_provider_issues() accepts, an unexpired exp, an identity
 * and scopes without control characters and well-formed mapped headers.
 */

#include <sys/types.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include "jwk.h"
#include "jwt.h"
#include "fuzz.h"

#define FUZZ_NOW	INT64_C(1700000000)
#define FUZZ_WIN	12	/* input windows this long must not be echoed */

static struct jwk_keys	 fuzz_keys;
static EVP_PKEY		*fuzz_signer;
static int		 fuzz_ready;

/* base64url of p[0..n) into out, NUL-terminated; its length. */
static size_t
fuzz_b64u(const uint8_t *p, size_t n, char *out)
{
	static const char abc[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t		 i, o = 0;
	uint32_t	 v;

	for (i = 0; i < n; i += 3) {
		v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		out[o++] = abc[v >> 18];
		out[o++] = abc[(v >> 12) & 63];
		if (i + 1 < n)
			out[o++] = abc[(v >> 6) & 63];
		if (i + 2 < n)
			out[o++] = abc[v & 63];
	}
	out[o] = '\0';
	return (o);
}

/* The JWK text of pk (kid "" for none) appended to doc at *len. */
static void
fuzz_jwk(EVP_PKEY *pk, const char *kid, char *doc, size_t *len)
{
	char		 a[800], b[800];
	uint8_t		 buf[600];
	BIGNUM		*bn = NULL;
	size_t		 n;

	if (EVP_PKEY_is_a(pk, "RSA")) {
		if (EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &bn) != 1)
			abort();
		fuzz_b64u(buf, (size_t)BN_bn2bin(bn, buf), a);
		BN_free(bn);
		bn = NULL;
		if (EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &bn) != 1)
			abort();
		fuzz_b64u(buf, (size_t)BN_bn2bin(bn, buf), b);
		BN_free(bn);
		*len += (size_t)sprintf(doc + *len, "{\"kty\":\"RSA\",\"kid\":"
		    "\"%s\",\"n\":\"%s\",\"e\":\"%s\"}", kid, a, b);
		return;
	}
	if (EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_PUB_KEY, buf,
	    sizeof(buf), &n) != 1)
		abort();
	fuzz_b64u(buf + 1, (n - 1) / 2, a);
	fuzz_b64u(buf + 1 + (n - 1) / 2, (n - 1) / 2, b);
	*len += (size_t)sprintf(doc + *len, "{\"kty\":\"EC\",\"crv\":\"%s\","
	    "%s%s%s\"x\":\"%s\",\"y\":\"%s\"}", n == 65 ? "P-256" : "P-384",
	    *kid ? "\"kid\":\"" : "", kid, *kid ? "\"," : "", a, b);
}

/* The key set: r (RSA), e (P-256, also the signer), a P-384 key. */
static void
fuzz_setup(void)
{
	static struct jwk_set	 set;
	EVP_PKEY		*rsa, *p384;
	char			 doc[4096], err[256];
	size_t			 len = 0;

	rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	fuzz_signer = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	if (rsa == NULL || fuzz_signer == NULL || p384 == NULL)
		abort();
	len += (size_t)sprintf(doc, "{\"keys\":[");
	fuzz_jwk(rsa, "r", doc, &len);
	doc[len++] = ',';
	fuzz_jwk(fuzz_signer, "e", doc, &len);
	doc[len++] = ',';
	fuzz_jwk(p384, "", doc, &len);
	len += (size_t)sprintf(doc + len, "]}");
	if (jwk_parse_set(doc, len, &set, err, sizeof(err)) != 3 ||
	    jwk_keys_load(&fuzz_keys, &set) != 0 || fuzz_keys.ks_nkeys != 3)
		abort();
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(p384);
	fuzz_ready = 1;
}

/* The provider for mode. */
static void
fuzz_provider(struct jwt_provider *p, int mode)
{
	static char	*iss[] = { "https://issuer.example/",
	    "https://login.microsoftonline.com/{tenantid}/v2.0" };
	static char	*aud[] = { "api://keygate", "aud2" };
	static char	*tenant = "5d2f7a10-9c3e-4b8e-a1f0-77c6d4e2b9aa";
	static char	*scopes[] = { "scp", "groups" };

	memset(p, 0, sizeof(*p));
	p->jp_name = "fuzz";
	p->jp_index = 1;
	memcpy(p->jp_issuers, iss, sizeof(iss));
	p->jp_nissuers = 2;
	memcpy(p->jp_audiences, aud, sizeof(aud));
	p->jp_naudiences = 2;
	p->jp_tenants[0] = tenant;
	p->jp_ntenants = 1;
	p->jp_tenants_any = (mode & 2) != 0;
	if (mode & 4) {
		p->jp_identity = "oid";
		memcpy(p->jp_scope_claims, scopes, sizeof(scopes));
		p->jp_nscope_claims = 2;
	}
	p->jp_algs = (mode & 8) ? (1U << JWK_ALG_RS256 | 1U << JWK_ALG_ES256) :
	    JWK_ALGS_ALL;
	p->jp_leeway = 60;
	p->jp_headers[0].hm_claim = "tid";
	p->jp_headers[0].hm_header = "X-Tenant-Id";
	p->jp_headers[1].hm_claim = "n";
	p->jp_headers[1].hm_header = "X-N";
	p->jp_nheaders = 2;
}

/*
 * "HEADER\nPAYLOAD" in in[0..n) as a token signed by the ES256 key, in a
 * malloc'd buffer of exactly its length (*len).
 */
static char *
fuzz_sign(const uint8_t *in, size_t n, size_t *len)
{
	EVP_MD_CTX	*ctx;
	ECDSA_SIG	*es;
	const BIGNUM	*r, *s;
	const uint8_t	*nl, *p;
	uint8_t		 der[128], raw[64];
	char		*t, *exact;
	size_t		 o, derlen = sizeof(der);

	if ((nl = memchr(in, '\n', n)) == NULL)
		nl = in + n;
	if ((t = malloc(2 * n + 100)) == NULL)
		abort();
	o = fuzz_b64u(in, nl - in, t);
	t[o++] = '.';
	o += fuzz_b64u(nl + (nl < in + n), in + n - nl - (nl < in + n), t + o);
	if ((ctx = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestSignInit_ex(ctx, NULL, "SHA256", NULL, NULL, fuzz_signer,
	    NULL) != 1 || EVP_DigestSign(ctx, der, &derlen, (uint8_t *)t, o) !=
	    1)
		abort();
	EVP_MD_CTX_free(ctx);
	p = der;
	if ((es = d2i_ECDSA_SIG(NULL, &p, (long)derlen)) == NULL)
		abort();
	ECDSA_SIG_get0(es, &r, &s);
	if (BN_bn2binpad(r, raw, 32) != 32 || BN_bn2binpad(s, raw + 32, 32) !=
	    32)
		abort();
	ECDSA_SIG_free(es);
	t[o++] = '.';
	o += fuzz_b64u(raw, sizeof(raw), t + o);
	if ((exact = malloc(o)) == NULL)
		abort();
	memcpy(exact, t, o);
	free(t);
	*len = o;
	return (exact);
}

/*
 * No FUZZ_WIN bytes of in[0..n) in why, once the alg name jwt_decode()
 * may echo ("the token's alg \"NAME\" ...") is checked and cut out.
 */
static void
fuzz_no_leak(const char *why, const uint8_t *in, size_t n)
{
	static const char	 pre[] = "the token's alg \"";
	char			 msg[512];
	const char		*end;
	size_t			 i;

	snprintf(msg, sizeof(msg), "%s", why);
	if (strncmp(msg, pre, sizeof(pre) - 1) == 0 &&
	    (end = strchr(msg + sizeof(pre) - 1, '"')) != NULL) {
		FUZZ_ASSERT(end - msg - (sizeof(pre) - 1) <= 16);
		memmove(msg + sizeof(pre) - 1, end, strlen(end) + 1);
	}
	for (i = 0; i + FUZZ_WIN <= n; i++)
		if (memchr(in + i, ' ', FUZZ_WIN) == NULL)
			FUZZ_ASSERT(memmem(msg, strlen(msg), in + i,
			    FUZZ_WIN) == NULL);
}

/* Has s a control character? */
static int
fuzz_ctl(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return (1);
	return (0);
}

/* What a verified token gave. */
static void
fuzz_check_ok(const struct jwt_provider *p, const struct jwt_token *t,
    const struct jwt_identity *id)
{
	const char	*s;
	size_t		 n;

	FUZZ_ASSERT(jwt_provider_issues(p, t) == 1);
	FUZZ_ASSERT(id->ji_provider == p->jp_index);
	FUZZ_ASSERT(id->ji_exp + p->jp_leeway > FUZZ_NOW);
	FUZZ_ASSERT(memchr(id->ji_subject, '\0', sizeof(id->ji_subject)));
	FUZZ_ASSERT(id->ji_subject[0] != '\0' && !fuzz_ctl(id->ji_subject));
	FUZZ_ASSERT(strcmp(id->ji_issuer, t->jt_iss) == 0);
	FUZZ_ASSERT(memchr(id->ji_scopes, '\0', sizeof(id->ji_scopes)));
	FUZZ_ASSERT(!fuzz_ctl(id->ji_scopes));
	FUZZ_ASSERT(strstr(id->ji_scopes, "  ") == NULL);
	n = strlen(id->ji_scopes);
	FUZZ_ASSERT(n == 0 || (id->ji_scopes[0] != ' ' &&
	    id->ji_scopes[n - 1] != ' '));
	FUZZ_ASSERT(id->ji_headerslen == strlen(id->ji_headers));
	/* Header lines: "Name: value\r\n", no other CR or LF. */
	for (s = id->ji_headers; *s != '\0'; s += 2) {
		FUZZ_ASSERT(strncmp(s, "X-Tenant-Id: ", 13) == 0 ||
		    strncmp(s, "X-N: ", 5) == 0);
		s += strcspn(s, "\r\n");
		FUZZ_ASSERT(s[0] == '\r' && s[1] == '\n');
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct jwt_provider	 p;
	struct jwt_token	 t;
	struct jwt_identity	 id;
	char			*tok, why[256];
	size_t			 len;
	int			 mode, rv;

	if (!fuzz_ready)
		fuzz_setup();
	if (size == 0 || size > 3 * JWT_MAX_TOKEN)
		return (0);
	mode = data[0];
	fuzz_provider(&p, mode);
	if (mode & 1)
		tok = fuzz_sign(data + 1, size - 1, &len);
	else {
		len = size - 1;
		if ((tok = malloc(len > 0 ? len : 1)) == NULL)
			abort();
		memcpy(tok, data + 1, len);
	}
	why[0] = '\0';
	rv = jwt_decode(tok, len, &t, why, sizeof(why));
	FUZZ_ASSERT(rv == JWT_OK || rv == JWT_MALFORMED || rv == JWT_INVALID);
	if (rv == JWT_OK) {
		FUZZ_ASSERT(t.jt_alg >= 0 && t.jt_alg < JWK_NALGS);
		FUZZ_ASSERT(t.jt_signed == tok && t.jt_signedlen < len);
		rv = jwt_verify(&p, &fuzz_keys, &t, FUZZ_NOW, &id, why,
		    sizeof(why));
		FUZZ_ASSERT(rv == JWT_OK || rv == JWT_INVALID ||
		    rv == JWT_EXPIRED || rv == JWT_UNKNOWN_KID);
		if (rv == JWT_OK)
			fuzz_check_ok(&p, &t, &id);
		jwt_token_free(&t);
	}
	if (rv != JWT_OK) {
		FUZZ_ASSERT(why[0] != '\0' && !fuzz_ctl(why));
		fuzz_no_leak(why, data + 1, size - 1);
	}
	free(tok);
	return (0);
}
