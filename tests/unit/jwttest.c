/*
 * Test helpers for JWT (see jwttest.h): JWKS text for OpenSSL keys and
 * tokens signed in the test.
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

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "jwk.h"
#include "jwt.h"
#include "jwttest.h"

/* base64url of p[0..n) into out (NUL-terminated); its length. */
size_t
jwtt_b64u(const void *p, size_t n, char *out)
{
	static const char abc[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	const uint8_t	*s = p;
	size_t		 i, o = 0;
	uint32_t	 v;

	for (i = 0; i + 2 < n; i += 3) {
		v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		out[o++] = abc[v >> 18];
		out[o++] = abc[(v >> 12) & 63];
		out[o++] = abc[(v >> 6) & 63];
		out[o++] = abc[v & 63];
	}
	if (n - i == 1) {
		out[o++] = abc[s[i] >> 2];
		out[o++] = abc[(s[i] & 3) << 4];
	} else if (n - i == 2) {
		v = (uint32_t)s[i] << 8 | s[i + 1];
		out[o++] = abc[v >> 10];
		out[o++] = abc[(v >> 4) & 63];
		out[o++] = abc[(v & 15) << 2];
	}
	out[o] = '\0';
	return (o);
}

/* A JWK (JSON text, malloc'd) for pk's public key, with extra members. */
char *
jwtt_jwk(EVP_PKEY *pk, const char *kid, const char *extra)
{
	char		*out, a[1024], b[1024];
	uint8_t		 buf[1024];
	BIGNUM		*bn = NULL;
	size_t		 n;
	int		 sz;

	assert_non_null(out = malloc(4096));
	if (EVP_PKEY_is_a(pk, "RSA")) {
		assert_int_equal(EVP_PKEY_get_bn_param(pk,
		    OSSL_PKEY_PARAM_RSA_N, &bn), 1);
		jwtt_b64u(buf, (size_t)BN_bn2bin(bn, buf), a);
		BN_free(bn);
		bn = NULL;
		assert_int_equal(EVP_PKEY_get_bn_param(pk,
		    OSSL_PKEY_PARAM_RSA_E, &bn), 1);
		jwtt_b64u(buf, (size_t)BN_bn2bin(bn, buf), b);
		BN_free(bn);
		snprintf(out, 4096, "{\"kty\":\"RSA\",\"kid\":\"%s\","
		    "\"n\":\"%s\",\"e\":\"%s\"%s}", kid, a, b, extra);
		return (out);
	}
	assert_int_equal(EVP_PKEY_get_octet_string_param(pk,
	    OSSL_PKEY_PARAM_PUB_KEY, buf, sizeof(buf), &n), 1);
	assert_int_equal(buf[0], 4);
	sz = (int)(n - 1) / 2;
	jwtt_b64u(buf + 1, sz, a);
	jwtt_b64u(buf + 1 + sz, sz, b);
	snprintf(out, 4096, "{\"kty\":\"EC\",\"crv\":\"%s\",\"kid\":\"%s\","
	    "\"x\":\"%s\",\"y\":\"%s\"%s}", sz == 32 ? "P-256" : "P-384", kid,
	    a, b, extra);
	return (out);
}

/* Parse the JWKS {"keys": [k1, k2, ...]} of JWK texts (freed here). */
int
jwtt_jwks(struct jwk_set *set, char *err, size_t errlen, int n, ...)
{
	va_list	 ap;
	char	*doc, *k;
	size_t	 len = 0;
	int	 i, rv;

	assert_non_null(doc = malloc(256 * 1024));
	len = (size_t)snprintf(doc, 64, "{\"keys\":[");
	va_start(ap, n);
	for (i = 0; i < n; i++) {
		k = va_arg(ap, char *);
		len += (size_t)snprintf(doc + len, 256 * 1024 - len, "%s%s",
		    i > 0 ? "," : "", k);
		free(k);
	}
	va_end(ap);
	len += (size_t)snprintf(doc + len, 256 * 1024 - len, "]}");
	rv = jwk_parse_set(doc, len, set, err, errlen);
	free(doc);
	return (rv);
}

/*
 * The signature of in[0..inlen) by pk with alg into sig; its length.  ES*
 * signatures are made raw (r || s) unless der is set; PS* signatures have
 * a salt of the digest's length unless der is set (then: the longest).
 */
size_t
jwtt_sign(EVP_PKEY *pk, int alg, const char *in, size_t inlen, uint8_t *sig,
    int der)
{
	static const char *const mds[] = { "SHA256", "SHA384", "SHA512",
	    "SHA256", "SHA384", "SHA512", "SHA256", "SHA384" };
	EVP_MD_CTX	*ctx;
	EVP_PKEY_CTX	*pctx;
	ECDSA_SIG	*es;
	const BIGNUM	*r, *s;
	const uint8_t	*p;
	uint8_t		 buf[1024];
	size_t		 len = sizeof(buf), half;

	assert_non_null(ctx = EVP_MD_CTX_new());
	assert_int_equal(EVP_DigestSignInit_ex(ctx, &pctx, mds[alg], NULL,
	    NULL, pk, NULL), 1);
	if (alg >= JWK_ALG_PS256 && alg <= JWK_ALG_PS512) {
		assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx,
		    RSA_PKCS1_PSS_PADDING), 1);
		assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx,
		    der ? RSA_PSS_SALTLEN_MAX : RSA_PSS_SALTLEN_DIGEST), 1);
	}
	assert_int_equal(EVP_DigestSign(ctx, buf, &len,
	    (const uint8_t *)in, inlen), 1);
	EVP_MD_CTX_free(ctx);
	if (alg < JWK_ALG_ES256 || der) {
		memcpy(sig, buf, len);
		return (len);
	}
	half = alg == JWK_ALG_ES256 ? 32 : 48;
	p = buf;
	assert_non_null(es = d2i_ECDSA_SIG(NULL, &p, (long)len));
	ECDSA_SIG_get0(es, &r, &s);
	assert_int_equal(BN_bn2binpad(r, sig, (int)half), (int)half);
	assert_int_equal(BN_bn2binpad(s, sig + half, (int)half), (int)half);
	ECDSA_SIG_free(es);
	return (2 * half);
}

/*
 * A token (malloc'd) of the JSON texts hdr and pay signed by pk with alg
 * (pk NULL: the signature is sig[0..siglen) as given).
 */
char *
jwtt_tok_sig(EVP_PKEY *pk, int alg, const char *hdr, const char *pay, int der,
    const uint8_t *sig, size_t siglen)
{
	uint8_t	 mine[1024];
	char	*t;
	size_t	 n;

	assert_non_null(t = malloc(2 * (strlen(hdr) + strlen(pay)) + 2048));
	n = jwtt_b64u(hdr, strlen(hdr), t);
	t[n++] = '.';
	n += jwtt_b64u(pay, strlen(pay), t + n);
	if (pk != NULL) {
		siglen = jwtt_sign(pk, alg, t, n, mine, der);
		sig = mine;
	}
	t[n++] = '.';
	jwtt_b64u(sig, siglen, t + n);
	return (t);
}

/* A token of hdr and pay, properly signed by pk with alg. */
char *
jwtt_tok(EVP_PKEY *pk, int alg, const char *hdr, const char *pay)
{
	return (jwtt_tok_sig(pk, alg, hdr, pay, 0, NULL, 0));
}

/* Fail if msg quotes any 12 bytes of the token t[0..len). */
void
jwtt_no_leak(const char *msg, const char *t, size_t len)
{
	char	 w[13];
	size_t	 i;

	for (i = 0; len < 4096 && i + 12 <= len; i++) {
		memcpy(w, t + i, 12);
		w[12] = '\0';
		if (memchr(t + i, '.', 12) == NULL &&
		    memchr(t + i, '\0', 12) == NULL && strstr(msg, w) != NULL)
			fail_msg("\"%s\" quotes \"%s\"", msg, w);
	}
}

/* A provider for the tests; see jwttest.h. */
void
jwtt_provider(struct jwt_provider *p, int i, char *name, char *iss,
    char *aud)
{
	memset(p, 0, sizeof(*p));
	p->jp_name = name;
	p->jp_index = i;
	p->jp_issuers[0] = iss;
	p->jp_nissuers = 1;
	p->jp_audiences[0] = aud;
	p->jp_naudiences = 1;
	p->jp_algs = JWK_ALGS_ALL;
	p->jp_leeway = JWT_DEFAULT_LEEWAY;
	p->jp_refresh = JWT_DEFAULT_REFRESH;
}
