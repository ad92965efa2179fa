/*
 * JWT bearer tokens: decoding the compact form, choosing the key, checking
 * the signature and the claims, and what a verified token says about its
 * bearer.  See jwt.h for the checks and their order.
 *
 * No message says what the token holds: only the names of claims and of
 * algorithms (an alg is echoed only when it is short and made of the
 * characters of an algorithm name), never a claim's value, a kid or a
 * segment.  Decoded segments are wiped before their buffers go.
 */

#include <sys/types.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "jwk.h"
#include "jwt.h"

#define JWT_GUID_LEN	36	/* 8-4-4-4-12 */

static int	 jwt_fail(int, char *, size_t, const char *, ...)
		    __attribute__((format(printf, 4, 5)));

static const char *const jwt_digests[JWK_NALGS] = {
	"SHA256", "SHA384", "SHA512", "SHA256", "SHA384", "SHA512",
	"SHA256", "SHA384"
};

/* Format a reason into why[0..whylen); returns status. */
static int
jwt_fail(int status, char *why, size_t whylen, const char *fmt, ...)
{
	va_list	 ap;

	if (whylen > 0) {
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return (status);
}

/*
 * Parse the decoded segment buf[0..len) (what: "header" or "payload") as a
 * JSON object into *out.  A duplicate member name is JWT_INVALID (two
 * readers could disagree on the value); anything else not an object is
 * JWT_MALFORMED.  Jansson's text is not echoed: it can quote the token.
 */
static int
jwt_json(const uint8_t *buf, size_t len, const char *what, json_t **out,
    char *why, size_t whylen)
{
	json_error_t	 je;

	*out = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &je);
	if (*out == NULL && json_error_code(&je) == json_error_duplicate_key)
		return (jwt_fail(JWT_INVALID, why, whylen, "duplicate member "
		    "in the token's %s", what));
	if (*out == NULL)
		return (jwt_fail(JWT_MALFORMED, why, whylen, "the token's %s "
		    "is not JSON (column %d)", what, je.column));
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		return (jwt_fail(JWT_MALFORMED, why, whylen, "the token's %s "
		    "is not a JSON object", what));
	}
	return (JWT_OK);
}

/* The segment s[0..len) decoded and parsed into *out; see jwt_json(). */
static int
jwt_segment(const char *s, size_t len, const char *what, json_t **out,
    char *why, size_t whylen)
{
	uint8_t	 buf[JWT_MAX_TOKEN];
	size_t	 n, used;
	int	 rv;

	*out = NULL;
	/* What the decoder may have written, even when it gives up. */
	used = len / 4 * 3 + 2 < sizeof(buf) ? len / 4 * 3 + 2 : sizeof(buf);
	if (jwk_b64url_decode(s, len, buf, sizeof(buf), &n) == -1)
		rv = jwt_fail(JWT_MALFORMED, why, whylen, "the token's %s is "
		    "not base64url", what);
	else
		rv = jwt_json(buf, n, what, out, why, whylen);
	OPENSSL_cleanse(buf, used);
	return (rv);
}

/*
 * The header's alg, kid and crit into t.  An alg is named in the message
 * only if it is at most 16 letters, digits, '+', '-' or '_' ("HS256",
 * "none"), so that nothing the sender chose beyond a name comes back.
 */
static int
jwt_header(struct jwt_token *t, char *why, size_t whylen)
{
	json_t		*alg, *kid;
	const char	*s;
	size_t		 i, n;

	if ((alg = json_object_get(t->jt_header, "alg")) == NULL)
		return (jwt_fail(JWT_INVALID, why, whylen, "the token has no "
		    "alg"));
	if (!json_is_string(alg))
		return (jwt_fail(JWT_INVALID, why, whylen, "the token's alg "
		    "is not a string"));
	s = json_string_value(alg);
	n = json_string_length(alg);
	if ((t->jt_alg = jwk_alg_parse(s, n)) < 0) {
		for (i = 0; i < n && n <= 16; i++)
			if (!(s[i] >= 'A' && s[i] <= 'Z') &&
			    !(s[i] >= 'a' && s[i] <= 'z') &&
			    !(s[i] >= '0' && s[i] <= '9') &&
			    strchr("+-_", s[i]) == NULL)
				break;
		if (n > 0 && n <= 16 && i == n)
			return (jwt_fail(JWT_INVALID, why, whylen, "the "
			    "token's alg \"%s\" is not accepted", s));
		return (jwt_fail(JWT_INVALID, why, whylen, "the token's alg "
		    "is not accepted"));
	}
	if (json_object_get(t->jt_header, "crit") != NULL)
		return (jwt_fail(JWT_INVALID, why, whylen, "the token has a "
		    "crit header, which keygate does not accept"));
	if ((kid = json_object_get(t->jt_header, "kid")) != NULL) {
		if (!json_is_string(kid) || strlen(json_string_value(kid)) !=
		    json_string_length(kid))
			return (jwt_fail(JWT_INVALID, why, whylen, "the "
			    "token's kid is not a string"));
		t->jt_kid = json_string_value(kid);
	}
	return (JWT_OK);
}

/*
 * The three segments of tok[0..len), at d1 and d2 the two dots: header and
 * payload parsed, the signature decoded into t.
 */
static int
jwt_parts(const char *tok, size_t len, const char *d1, const char *d2,
    struct jwt_token *t, char *why, size_t whylen)
{
	json_t	*iss, *o;
	size_t	 slen = tok + len - (d2 + 1);
	int	 rv;

	rv = jwt_segment(tok, d1 - tok, "header", &o, why, whylen);
	if ((t->jt_header = o) == NULL)
		return (rv);
	rv = jwt_segment(d1 + 1, d2 - d1 - 1, "payload", &o, why, whylen);
	if ((t->jt_claims = o) == NULL)
		return (rv);
	if (slen / 4 * 3 + (slen % 4 ? slen % 4 - 1 : 0) > sizeof(t->jt_sig))
		return (jwt_fail(JWT_INVALID, why, whylen, "the token's "
		    "signature is too long"));
	if (jwk_b64url_decode(d2 + 1, slen, t->jt_sig, sizeof(t->jt_sig),
	    &t->jt_siglen) == -1)
		return (jwt_fail(JWT_MALFORMED, why, whylen, "the token's "
		    "signature is not base64url"));
	if ((rv = jwt_header(t, why, whylen)) != JWT_OK)
		return (rv);
	iss = json_object_get(t->jt_claims, "iss");
	if (json_is_string(iss) && strlen(json_string_value(iss)) ==
	    json_string_length(iss))
		t->jt_iss = json_string_value(iss);
	t->jt_signed = tok;
	t->jt_signedlen = d2 - tok;
	return (JWT_OK);
}

/* Decode tok[0..len) into t; see jwt.h. */
int
jwt_decode(const char *tok, size_t len, struct jwt_token *t, char *why,
    size_t whylen)
{
	const char	*d1, *d2;
	int		 rv;

	memset(t, 0, sizeof(*t));
	if (len == 0)
		return (jwt_fail(JWT_MALFORMED, why, whylen, "the token is "
		    "empty"));
	if (len > JWT_MAX_TOKEN)
		return (jwt_fail(JWT_MALFORMED, why, whylen, "the token is "
		    "longer than %d bytes", JWT_MAX_TOKEN));
	if ((d1 = memchr(tok, '.', len)) == NULL ||
	    (d2 = memchr(d1 + 1, '.', tok + len - d1 - 1)) == NULL ||
	    memchr(d2 + 1, '.', tok + len - d2 - 1) != NULL)
		return (jwt_fail(JWT_MALFORMED, why, whylen, "the token is not "
		    "three base64url segments"));
	if ((rv = jwt_parts(tok, len, d1, d2, t, why, whylen)) != JWT_OK)
		jwt_token_free(t);
	return (rv);
}

/* Free what jwt_decode() made; t is then zeroed. */
void
jwt_token_free(struct jwt_token *t)
{
	json_decref(t->jt_header);
	json_decref(t->jt_claims);
	OPENSSL_cleanse(t, sizeof(*t));
}

/* Is s[0..36) a GUID, 8-4-4-4-12 hex digits of either case? */
static int
jwt_guid(const char *s, size_t len)
{
	size_t	 i;

	if (len != JWT_GUID_LEN)
		return (0);
	for (i = 0; i < JWT_GUID_LEN; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return (0);
		} else if (!((s[i] >= '0' && s[i] <= '9') ||
		    (s[i] >= 'a' && s[i] <= 'f') ||
		    (s[i] >= 'A' && s[i] <= 'F')))
			return (0);
	}
	return (1);
}

/*
 * Does the issuer pattern pat (with JWT_TENANT_TEMPLATE) match t's iss?
 * iss must be pat's text before the template, the token's tid, and pat's
 * text after it.  The tid must be a GUID and, unless tenants=any, equal
 * (ignoring case) to one of p's tenants.  When the text around matches
 * but the tid does not do, *reason says why.
 */
static int
jwt_iss_template(const struct jwt_provider *p, const char *pat,
    const char *at, const struct jwt_token *t, const char **reason)
{
	json_t		*tid;
	const char	*iss = t->jt_iss, *suf = at + strlen(JWT_TENANT_TEMPLATE);
	size_t		 plen = at - pat, slen = strlen(suf), ilen = strlen(iss);
	int		 i;

	if (ilen != plen + JWT_GUID_LEN + slen || memcmp(iss, pat, plen) != 0 ||
	    memcmp(iss + plen + JWT_GUID_LEN, suf, slen) != 0)
		return (0);
	tid = json_object_get(t->jt_claims, "tid");
	if (!json_is_string(tid) || !jwt_guid(json_string_value(tid),
	    json_string_length(tid))) {
		*reason = "the token's tid is missing or not a GUID";
		return (0);
	}
	if (memcmp(iss + plen, json_string_value(tid), JWT_GUID_LEN) != 0)
		return (0);
	if (p->jp_tenants_any)
		return (1);
	for (i = 0; i < p->jp_ntenants && i < JWT_MAX_TENANTS; i++)
		if (strcasecmp(p->jp_tenants[i], json_string_value(tid)) == 0)
			return (1);
	*reason = "the token's tenant is not one of the provider's tenants";
	return (0);
}

/* Is t's iss one of p's issuers?  If not, *reason says why. */
static int
jwt_issuer(const struct jwt_provider *p, const struct jwt_token *t,
    const char **reason)
{
	const char	*at;
	int		 i;

	*reason = "the token's iss is not an issuer of the provider";
	if (t->jt_iss == NULL) {
		*reason = "the token has no iss";
		return (0);
	}
	for (i = 0; i < p->jp_nissuers && i < JWT_MAX_ISSUERS; i++) {
		if ((at = strstr(p->jp_issuers[i], JWT_TENANT_TEMPLATE)) ==
		    NULL) {
			if (strcmp(p->jp_issuers[i], t->jt_iss) == 0)
				return (1);
		} else if (jwt_iss_template(p, p->jp_issuers[i], at, t,
		    reason))
			return (1);
	}
	return (0);
}

/* Does p issue t?  See jwt.h. */
int
jwt_provider_issues(const struct jwt_provider *p, const struct jwt_token *t)
{
	const char	*reason;

	return (jwt_issuer(p, t, &reason));
}

/*
 * The raw ECDSA signature r || s (RFC 7518 3.4: each of the curve's size)
 * sig[0..len) as the DER ECDSA-Sig-Value OpenSSL verifies, into *der
 * (OPENSSL_free it).  The DER length, or -1.
 */
static int
jwt_ecdsa_der(const uint8_t *sig, size_t len, unsigned char **der)
{
	ECDSA_SIG	*es;
	BIGNUM		*r, *s;
	int		 n;

	*der = NULL;
	if ((es = ECDSA_SIG_new()) == NULL)
		return (-1);
	r = BN_bin2bn(sig, (int)(len / 2), NULL);
	s = BN_bin2bn(sig + len / 2, (int)(len / 2), NULL);
	if (r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
		BN_free(r);
		BN_free(s);
		ECDSA_SIG_free(es);
		return (-1);
	}
	n = i2d_ECDSA_SIG(es, der);
	ECDSA_SIG_free(es);
	return (n > 0 ? n : -1);
}

/*
 * The digest of alg, fetched once per process: an implicit fetch by name
 * in every EVP_DigestVerifyInit_ex() costs a lock and a search of the
 * provider's algorithms on each uncached token (OpenSSL 3).  NULL if it
 * cannot be fetched.
 */
static const EVP_MD *
jwt_md(int alg)
{
	static EVP_MD	*mds[JWK_NALGS];

	if (mds[alg] == NULL)
		mds[alg] = EVP_MD_fetch(NULL, jwt_digests[alg], NULL);
	return (mds[alg]);
}

/*
 * Does t's signature verify with pkey (a key that fits t's alg)?  RS*:
 * PKCS #1 v1.5; PS*: PSS with MGF1 and a salt of the digest's length (RFC
 * 7518 3.5); ES*: r || s of exactly twice the curve's size.  An RSA
 * signature must be exactly the modulus' size.
 */
static int
jwt_sig_ok(EVP_PKEY *pkey, const struct jwt_token *t)
{
	EVP_MD_CTX	*mctx = NULL;
	EVP_PKEY_CTX	*pctx = NULL;
	const EVP_MD	*md;
	unsigned char	*der = NULL;
	const uint8_t	*sig = t->jt_sig;
	size_t		 siglen = t->jt_siglen;
	int		 n, ok = 0;

	if (t->jt_alg == JWK_ALG_ES256 || t->jt_alg == JWK_ALG_ES384) {
		if (siglen != (t->jt_alg == JWK_ALG_ES256 ? 64 : 96) ||
		    (n = jwt_ecdsa_der(sig, siglen, &der)) == -1)
			return (0);
		sig = der;
		siglen = (size_t)n;
	} else if (EVP_PKEY_get_size(pkey) <= 0 ||
	    siglen != (size_t)EVP_PKEY_get_size(pkey))
		return (0);
	if ((md = jwt_md(t->jt_alg)) == NULL ||
	    (mctx = EVP_MD_CTX_new()) == NULL)
		goto done;
	if (EVP_DigestVerifyInit(mctx, &pctx, md, NULL, pkey) != 1)
		goto done;
	if (t->jt_alg >= JWK_ALG_PS256 && t->jt_alg <= JWK_ALG_PS512 &&
	    (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) != 1))
		goto done;
	ok = EVP_DigestVerify(mctx, sig, siglen,
	    (const unsigned char *)t->jt_signed, t->jt_signedlen) == 1;
done:
	EVP_MD_CTX_free(mctx);
	OPENSSL_free(der);
	return (ok);
}

/*
 * Find the key for t among keys and check the signature with it.  With a
 * kid, only the keys of that kid; without, every key whose type fits the
 * alg, the first that verifies winning.  A key with an alg of its own
 * serves only that alg.
 */
static int
jwt_key(const struct jwk_keys *keys, const struct jwt_token *t, char *why,
    size_t whylen)
{
	const char	*mismatch = NULL;
	uint32_t	 i;
	int		 tried = 0, named = 0;

	for (i = 0; i < keys->ks_nkeys && i < JWK_MAX_KEYS; i++) {
		if (t->jt_kid != NULL && (keys->ks_keys[i].kk_kid[0] == '\0' ||
		    strcmp(keys->ks_keys[i].kk_kid, t->jt_kid) != 0))
			continue;
		named = 1;
		if (!jwk_alg_fits(keys->ks_keys[i].kk_kty,
		    keys->ks_keys[i].kk_crv, t->jt_alg))
			mismatch = "the key's type does not fit the token's alg";
		else if (keys->ks_keys[i].kk_alg >= 0 &&
		    keys->ks_keys[i].kk_alg != t->jt_alg)
			mismatch = "the key's alg differs from the token's alg";
		else {
			tried = 1;
			if (jwt_sig_ok(keys->ks_keys[i].kk_pkey, t))
				return (JWT_OK);
		}
	}
	if (tried)
		return (jwt_fail(JWT_INVALID, why, whylen, "the token's "
		    "signature does not verify"));
	if (t->jt_kid == NULL)
		return (jwt_fail(JWT_UNKNOWN_KID, why, whylen, "the token has "
		    "no kid and the provider has no key for its alg"));
	if (!named)
		return (jwt_fail(JWT_UNKNOWN_KID, why, whylen, "the token's "
		    "kid is not one of the provider's keys"));
	return (jwt_fail(JWT_INVALID, why, whylen, "%s", mismatch));
}

/* Does t's aud (a string or an array of strings) meet p's audiences? */
static int
jwt_audience(const struct jwt_provider *p, const struct jwt_token *t)
{
	json_t	*aud, *v;
	size_t	 j;
	int	 i;

	aud = json_object_get(t->jt_claims, "aud");
	for (i = 0; i < p->jp_naudiences && i < JWT_MAX_AUDIENCES; i++) {
		if (json_is_string(aud) &&
		    strcmp(json_string_value(aud), p->jp_audiences[i]) == 0)
			return (1);
		if (json_is_array(aud))
			json_array_foreach(aud, j, v)
				if (json_is_string(v) && strcmp(
				    json_string_value(v),
				    p->jp_audiences[i]) == 0)
					return (1);
	}
	return (0);
}

/*
 * x rounded down to a whole number, without libm.  Every double of
 * magnitude 2^53 or more is whole already; below, int64_t holds x.
 */
static double
jwt_floor(double x)
{
	int64_t	 i;

	if (x >= 9007199254740992.0 || x <= -9007199254740992.0)
		return (x);
	i = (int64_t)x;		/* toward zero */
	if ((double)i > x)
		i--;
	return ((double)i);
}

/*
 * The time claims of t against now and p's leeway (seconds; reals are
 * floored): exp required and exp + leeway > now, nbf and iat if present no
 * later than now + leeway.  Doubles hold every time of interest exactly
 * (whole seconds below 2^53); a huge exp is clamped into ji_exp.
 */
static int
jwt_times(const struct jwt_provider *p, const struct jwt_token *t,
    int64_t now, struct jwt_identity *id, char *why, size_t whylen)
{
	static const char *const names[2] = { "nbf", "iat" };
	static const char *const says[2] = { "is not valid yet (nbf)",
	    "was issued in the future (iat)" };
	json_t	*v;
	double	 exp, leeway = p->jp_leeway, dnow = (double)now;
	int	 i;

	v = json_object_get(t->jt_claims, "exp");
	if (!json_is_number(v))
		return (jwt_fail(JWT_INVALID, why, whylen, "the token's exp "
		    "is missing or not a number"));
	exp = jwt_floor(json_number_value(v));
	if (exp + leeway <= dnow)
		return (jwt_fail(JWT_EXPIRED, why, whylen, "the token has "
		    "expired"));
	id->ji_exp = exp >= 9e18 ? INT64_C(9000000000000000000) :
	    (int64_t)exp;
	for (i = 0; i < 2; i++) {
		if ((v = json_object_get(t->jt_claims, names[i])) == NULL)
			continue;
		if (!json_is_number(v))
			return (jwt_fail(JWT_INVALID, why, whylen, "the "
			    "token's %s is not a number", names[i]));
		if (jwt_floor(json_number_value(v)) > dnow + leeway)
			return (jwt_fail(JWT_INVALID, why, whylen, "the token "
			    "%s", says[i]));
	}
	return (JWT_OK);
}

/* Has s[0..n) a control character (below 0x20, or 0x7f)? */
static int
jwt_has_ctl(const char *s, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return (1);
	return (0);
}

/*
 * The identity claim of p into id->ji_subject, the iss into ji_issuer, and
 * the rate-limit key SHA-256(iss "\0" subject)[0..16).  The NUL keeps
 * ("ab", "c") and ("a", "bc") apart; neither string holds one.
 */
static int
jwt_identity(const struct jwt_provider *p, const struct jwt_token *t,
    struct jwt_identity *id, char *why, size_t whylen)
{
	const char	*claim = p->jp_identity != NULL ? p->jp_identity : "sub";
	const EVP_MD	*sha256 = jwt_md(JWK_ALG_RS256);
	uint8_t		 md[EVP_MAX_MD_SIZE];
	char		 subj[JWT_ISS_MAX + 1 + JWT_IDENT_MAX];
	unsigned int	 mdlen;
	json_t		*v;
	size_t		 n, sublen;

	v = json_object_get(t->jt_claims, claim);
	if (!json_is_string(v) || (n = json_string_length(v)) == 0)
		return (jwt_fail(JWT_INVALID, why, whylen, "the token's "
		    "identity claim \"%s\" is missing, empty or not a string",
		    claim));
	if (n > JWT_IDENT_MAX || jwt_has_ctl(json_string_value(v), n))
		return (jwt_fail(JWT_INVALID, why, whylen, "the token's "
		    "identity claim \"%s\" is too long or has control "
		    "characters", claim));
	memcpy(id->ji_subject, json_string_value(v), n + 1);
	sublen = n;
	if ((n = strlen(t->jt_iss)) > JWT_ISS_MAX)
		return (jwt_fail(JWT_INVALID, why, whylen, "the token's iss is "
		    "too long"));
	memcpy(id->ji_issuer, t->jt_iss, n + 1);
	/* One call, with the digest fetched once per process (jwt_md()). */
	memcpy(subj, id->ji_issuer, n + 1);
	memcpy(subj + n + 1, id->ji_subject, sublen);
	if (sha256 == NULL || EVP_Digest(subj, n + 1 + sublen, md, &mdlen,
	    sha256, NULL) != 1)
		return (jwt_fail(JWT_INVALID, why, whylen, "SHA-256 failed"));
	memcpy(id->ji_ratekey, md, sizeof(id->ji_ratekey));
	return (JWT_OK);
}

/*
 * Append the scope s[0..n) to id->ji_scopes, after a space unless first.
 * Empty scopes are skipped.  -1 with a reason.
 */
static int
jwt_scope_add(struct jwt_identity *id, size_t *len, const char *s, size_t n,
    char *why, size_t whylen)
{
	if (n == 0)
		return (JWT_OK);
	if (jwt_has_ctl(s, n))
		return (jwt_fail(JWT_INVALID, why, whylen, "a scope of the "
		    "token has control characters"));
	if (*len + (*len > 0) + n > JWT_SCOPES_MAX)
		return (jwt_fail(JWT_INVALID, why, whylen, "the token's scopes "
		    "are too long"));
	if (*len > 0)
		id->ji_scopes[(*len)++] = ' ';
	memcpy(id->ji_scopes + *len, s, n);
	*len += n;
	id->ji_scopes[*len] = '\0';
	return (JWT_OK);
}

/*
 * The scopes of t into id->ji_scopes, "a b c": each of p's scope claims
 * ("scp" and "roles" by default), a string split at spaces, an array
 * giving its strings.  An array item with a space is left out: it cannot
 * be one scope of a space-separated list, and splitting it would grant
 * scopes nobody named.
 */
static int
jwt_scopes(const struct jwt_provider *p, const struct jwt_token *t,
    struct jwt_identity *id, char *why, size_t whylen)
{
	static const char *const defaults[] = { "scp", "roles" };
	const char *const *claims = defaults;
	const char	*s, *sp;
	json_t		*v, *item;
	size_t		 j, len = 0, n;
	int		 i, nclaims = 2, rv;

	if (p->jp_nscope_claims > 0) {
		claims = (const char *const *)p->jp_scope_claims;
		nclaims = p->jp_nscope_claims;
	}
	for (i = 0; i < nclaims && i < JWT_MAX_SCOPE_CLAIMS; i++) {
		v = json_object_get(t->jt_claims, claims[i]);
		if (json_is_string(v)) {
			s = json_string_value(v);
			n = json_string_length(v);
			while (n > 0) {
				if ((sp = memchr(s, ' ', n)) == NULL)
					sp = s + n;
				if ((rv = jwt_scope_add(id, &len, s, sp - s,
				    why, whylen)) != JWT_OK)
					return (rv);
				n -= sp - s + (sp < s + n);
				s = sp + 1;
			}
		} else if (json_is_array(v))
			json_array_foreach(v, j, item) {
				if (!json_is_string(item) || memchr(
				    json_string_value(item), ' ',
				    json_string_length(item)) != NULL)
					continue;
				if ((rv = jwt_scope_add(id, &len,
				    json_string_value(item),
				    json_string_length(item), why, whylen)) !=
				    JWT_OK)
					return (rv);
			}
	}
	return (JWT_OK);
}

/*
 * The value of a mapped claim v as header text into buf[0..size): strings
 * as they are, integers and reals in decimal, booleans as true/false.  The
 * length, 0 to skip the claim (absent, null, object, array), or -1 if it
 * does not fit.
 */
static int
jwt_claim_text(json_t *v, char *buf, size_t size, const char **s)
{
	int	 n;

	*s = buf;
	if (json_is_string(v)) {
		*s = json_string_value(v);
		return (json_string_length(v) <= JWT_HEADERS_MAX ?
		    (int)json_string_length(v) : -1);
	}
	if (json_is_integer(v))
		n = snprintf(buf, size, "%" JSON_INTEGER_FORMAT,
		    json_integer_value(v));
	else if (json_is_real(v))
		n = snprintf(buf, size, "%.17g", json_real_value(v));
	else if (json_is_boolean(v))
		n = snprintf(buf, size, "%s", json_is_true(v) ? "true" :
		    "false");
	else
		return (0);
	return (n >= 0 && (size_t)n < size ? n : -1);
}

/* The headers= mappings of p from t into id->ji_headers. */
static int
jwt_headers(const struct jwt_provider *p, const struct jwt_token *t,
    struct jwt_identity *id, char *why, size_t whylen)
{
	const struct jwt_header_map	*hm;
	const char			*s;
	char				 num[64];
	size_t				 hlen;
	int				 i, n;

	id->ji_headerslen = 0;
	id->ji_headers[0] = '\0';
	for (i = 0; i < p->jp_nheaders && i < JWT_MAX_HEADER_MAPS; i++) {
		hm = &p->jp_headers[i];
		n = jwt_claim_text(json_object_get(t->jt_claims, hm->hm_claim),
		    num, sizeof(num), &s);
		if (n == 0)
			continue;
		hlen = strlen(hm->hm_header);
		if (n < 0 || id->ji_headerslen + hlen + 2 + (size_t)n + 2 >
		    JWT_HEADERS_MAX)
			return (jwt_fail(JWT_INVALID, why, whylen, "the "
			    "token's claims mapped to headers are too long"));
		if (jwt_has_ctl(s, (size_t)n))
			return (jwt_fail(JWT_INVALID, why, whylen, "the "
			    "token's claim \"%s\" mapped to a header has "
			    "control characters", hm->hm_claim));
		n = snprintf(id->ji_headers + id->ji_headerslen,
		    sizeof(id->ji_headers) - id->ji_headerslen, "%s: %.*s\r\n",
		    hm->hm_header, n, s);
		id->ji_headerslen += (size_t)n;
	}
	return (JWT_OK);
}

/* Verify t for p with keys at now; see jwt.h. */
int
jwt_verify(const struct jwt_provider *p, const struct jwk_keys *keys,
    const struct jwt_token *t, int64_t now, struct jwt_identity *id,
    char *why, size_t whylen)
{
	const char	*reason;
	int		 rv;

	memset(id, 0, sizeof(*id));
	if (t->jt_alg < 0 || t->jt_alg >= JWK_NALGS ||
	    (p->jp_algs & (1U << t->jt_alg)) == 0)
		return (jwt_fail(JWT_INVALID, why, whylen, "the token's alg %s "
		    "is not allowed for provider %s",
		    t->jt_alg >= 0 && t->jt_alg < JWK_NALGS ?
		    jwk_alg_name(t->jt_alg) : "?", p->jp_name));
	if ((rv = jwt_key(keys, t, why, whylen)) != JWT_OK)
		return (rv);
	if (!jwt_issuer(p, t, &reason))
		return (jwt_fail(JWT_INVALID, why, whylen, "%s", reason));
	if (!jwt_audience(p, t))
		return (jwt_fail(JWT_INVALID, why, whylen, "the token's aud is "
		    "missing or not an audience of the provider"));
	if ((rv = jwt_times(p, t, now, id, why, whylen)) != JWT_OK ||
	    (rv = jwt_identity(p, t, id, why, whylen)) != JWT_OK ||
	    (rv = jwt_scopes(p, t, id, why, whylen)) != JWT_OK ||
	    (rv = jwt_headers(p, t, id, why, whylen)) != JWT_OK) {
		OPENSSL_cleanse(id, sizeof(*id));
		return (rv);
	}
	id->ji_provider = p->jp_index;
	return (JWT_OK);
}

/* The discovery URL of p into buf[0..size); see jwt.h. */
int
jwt_discovery_url(const struct jwt_provider *p, char *buf, size_t size)
{
	const char	*iss, *at, *tenant = "common", *suf;
	size_t		 plen, slen;
	int		 n;

	if (p->jp_nissuers < 1 || (iss = p->jp_issuers[0]) == NULL)
		return (-1);
	if (p->jp_ntenants == 1 && !p->jp_tenants_any)
		tenant = p->jp_tenants[0];
	if ((at = strstr(iss, JWT_TENANT_TEMPLATE)) == NULL) {
		plen = strlen(iss);
		tenant = suf = "";
	} else {
		plen = at - iss;
		suf = at + strlen(JWT_TENANT_TEMPLATE);
	}
	slen = strlen(suf);
	/* One trailing '/' of the issuer goes: "/" is put back below. */
	if (slen > 0 && suf[slen - 1] == '/')
		slen--;
	else if (slen == 0 && *tenant == '\0' && plen > 0 &&
	    iss[plen - 1] == '/')
		plen--;
	n = snprintf(buf, size, "%.*s%s%.*s/.well-known/openid-configuration",
	    (int)plen, iss, tenant, (int)slen, suf);
	return (n >= 0 && (size_t)n < size ? 0 : -1);
}
