/*
 * Unit tests for JWT verification (src/jwt.c) and JWKS parsing
 * (src/jwk.c).  Keys are made here with OpenSSL (RSA-2048, EC P-256 and
 * P-384, plus an attacker's), published as JWKS text through
 * jwk_parse_set(), and tokens are signed here too, so that every token,
 * good or hostile, is exactly what the test says.  Every refusal is also
 * checked for leaks: its message may not quote the token or a claim.
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
#include <openssl/hmac.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "jwk.h"
#include "jwt.h"
#include "jwttest.h"

#define NOW		INT64_C(1700000000)
#define ISS		"https://issuer.example/"
#define AUD		"api://keygate"
#define SUBJECT		"subj-Zq81xVw3"		/* never in a message */
#define TID		"5d2f7a10-9c3e-4b8e-a1f0-77c6d4e2b9aa"
#define TID_UP		"5D2F7A10-9C3E-4B8E-A1F0-77C6D4E2B9AA"
#define OID		"oid-Kk29Pm4e"
#define ENTRA		"https://login.microsoftonline.com/{tenantid}/v2.0"
#define WHYLEN		256

static const char	*claims(const char *, ...)
			    __attribute__((format(printf, 1, 2)));

static EVP_PKEY	*k_rsa, *k_rsa2, *k_ec256, *k_ec384, *k_evil, *k_evil_ec;
static struct jwk_keys	 keys;	/* r1 (RSA), r2 (RSA), e256, e384 */

/* The header {"alg": ALG, "kid": kid} (kid NULL: none), in a static. */
static const char *
hdr(int alg, const char *kid)
{
	static char	 buf[4][256];
	static int	 i;

	i = (i + 1) % 4;
	if (kid == NULL)
		snprintf(buf[i], sizeof(buf[i]), "{\"alg\":\"%s\","
		    "\"typ\":\"JWT\"}", jwk_alg_name(alg));
	else
		snprintf(buf[i], sizeof(buf[i]), "{\"typ\":\"JWT\",\"alg\":"
		    "\"%s\",\"kid\":\"%s\"}", jwk_alg_name(alg), kid);
	return (buf[i]);
}

/* The usual claims with extra members after them (extra "" or ",..."). */
static const char *
pay(const char *extra)
{
	static char	 buf[4][2048];
	static int	 i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "{\"iss\":\"" ISS "\",\"aud\":\""
	    AUD "\",\"exp\":%lld,\"iat\":%lld,\"sub\":\"" SUBJECT "\","
	    "\"scp\":\"read write\",\"roles\":[\"admin\",\"ops\"],"
	    "\"tid\":\"" TID "\",\"oid\":\"" OID "\"%s}",
	    (long long)NOW + 600, (long long)NOW - 10, extra);
	return (buf[i]);
}

/* Claims with only the given members (a JSON object body). */
static const char *
claims(const char *fmt, ...)
{
	static char	 buf[4][2048];
	static int	 i;
	va_list		 ap;

	i = (i + 1) % 4;
	buf[i][0] = '{';
	va_start(ap, fmt);
	vsnprintf(buf[i] + 1, sizeof(buf[i]) - 2, fmt, ap);
	va_end(ap);
	strcat(buf[i], "}");
	return (buf[i]);
}

/* The test provider: ISS, AUD, every alg, leeway 60 s. */
static void
provider(struct jwt_provider *p)
{
	static char	*iss = ISS, *aud = AUD, *name = "test";

	jwtt_provider(p, 3, name, iss, aud);
}

/* Does why quote any 12 bytes of the token t[0..len) or a claim value? */
static void
no_leak(const char *why, const char *t, size_t len)
{
	static const char *const values[] = { SUBJECT, TID, TID_UP, OID,
	    "attacker-kid-99", "s3cr3t" };
	size_t	 i;

	for (i = 0; i < sizeof(values) / sizeof(values[0]); i++)
		assert_null(strstr(why, values[i]));
	jwtt_no_leak(why, t, len);
}

/*
 * Decode and verify t[0..len) for p with ks at now: the status; the
 * identity in *id, the reason in why, checked for leaks.
 */
static int
check_at(const struct jwt_provider *p, const struct jwk_keys *ks,
    const char *t, size_t len, int64_t now, struct jwt_identity *id,
    char *why)
{
	struct jwt_token	 jt;
	int			 rv;

	why[0] = '\0';
	if ((rv = jwt_decode(t, len, &jt, why, WHYLEN)) == JWT_OK) {
		rv = jwt_verify(p, ks, &jt, now, id, why, WHYLEN);
		jwt_token_free(&jt);
	}
	if (rv != JWT_OK) {
		assert_true(why[0] != '\0');
		no_leak(why, t, len);
	}
	return (rv);
}

/* check_at() at NOW for the token t (freed), expecting status and why. */
static void
expect(const struct jwt_provider *p, char *t, int status, const char *part)
{
	struct jwt_identity	 id;
	char			 why[WHYLEN];
	int			 rv;

	rv = check_at(p, &keys, t, strlen(t), NOW, &id, why);
	if (rv != status || (part != NULL && strstr(why, part) == NULL))
		fail_msg("status %d (want %d), why \"%s\" (want \"%s\")", rv,
		    status, why, part != NULL ? part : "");
	free(t);
}

/* Keys for every test: r1, r2 (RSA), e256, e384; the attacker's apart. */
static int
setup(void **state)
{
	struct jwk_set	*set;
	char		 err[WHYLEN];

	(void)state;
	k_rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	k_rsa2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	k_evil = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	k_ec256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	k_ec384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	k_evil_ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (k_rsa == NULL || k_rsa2 == NULL || k_evil == NULL ||
	    k_ec256 == NULL || k_ec384 == NULL || k_evil_ec == NULL)
		return (-1);
	if ((set = calloc(1, sizeof(*set))) == NULL)
		return (-1);
	if (jwtt_jwks(set, err, WHYLEN, 4, jwtt_jwk(k_rsa, "r1", ""),
	    jwtt_jwk(k_rsa2, "r2", ",\"alg\":\"RS256\",\"use\":\"sig\""),
	    jwtt_jwk(k_ec256, "e256", ""), jwtt_jwk(k_ec384, "e384",
	    "")) != 4 ||
	    jwk_keys_load(&keys, set) != 0 || keys.ks_nkeys != 4) {
		free(set);
		return (-1);
	}
	free(set);
	return (0);
}

/* Free what setup() made. */
static int
teardown(void **state)
{
	(void)state;
	jwk_keys_free(&keys);
	EVP_PKEY_free(k_rsa);
	EVP_PKEY_free(k_rsa2);
	EVP_PKEY_free(k_evil);
	EVP_PKEY_free(k_ec256);
	EVP_PKEY_free(k_ec384);
	EVP_PKEY_free(k_evil_ec);
	return (0);
}

/* Every algorithm verifies with its key; the identity is what was sent. */
static void
test_algs_good(void **state)
{
	struct jwt_provider	 p;
	struct jwt_identity	 id;
	uint8_t			 md[32];
	char			 why[WHYLEN], *t, rk[sizeof(ISS) +
				    sizeof(SUBJECT)];
	int			 alg;
	unsigned int		 mdlen;

	(void)state;
	provider(&p);
	for (alg = 0; alg < JWK_NALGS; alg++) {
		t = jwtt_tok(alg == JWK_ALG_ES256 ? k_ec256 :
		    alg == JWK_ALG_ES384 ? k_ec384 : k_rsa, alg, hdr(alg,
		    alg == JWK_ALG_ES256 ? "e256" : alg == JWK_ALG_ES384 ?
		    "e384" : "r1"), pay(""));
		if (check_at(&p, &keys, t, strlen(t), NOW, &id, why) != JWT_OK)
			fail_msg("%s: %s", jwk_alg_name(alg), why);
		/* The same token without a kid: the key is found by type. */
		free(t);
		t = jwtt_tok(alg == JWK_ALG_ES256 ? k_ec256 :
		    alg == JWK_ALG_ES384 ? k_ec384 : k_rsa, alg, hdr(alg, NULL),
		    pay(""));
		if (check_at(&p, &keys, t, strlen(t), NOW, &id, why) != JWT_OK)
			fail_msg("%s without kid: %s", jwk_alg_name(alg), why);
		free(t);
	}
	assert_string_equal(id.ji_subject, SUBJECT);
	assert_string_equal(id.ji_issuer, ISS);
	assert_int_equal(id.ji_exp, NOW + 600);
	assert_int_equal(id.ji_provider, 3);
	assert_string_equal(id.ji_scopes, "read write admin ops");
	assert_int_equal(id.ji_headerslen, 0);
	memcpy(rk, ISS, sizeof(ISS));
	memcpy(rk + sizeof(ISS), SUBJECT, sizeof(SUBJECT) - 1);
	assert_int_equal(EVP_Digest(rk, sizeof(rk) - 1, md, &mdlen,
	    EVP_sha256(), NULL), 1);
	assert_memory_equal(id.ji_ratekey, md, 16);
	/* r2 has alg RS256 of its own and serves that. */
	expect(&p, jwtt_tok(k_rsa2, JWK_ALG_RS256, hdr(JWK_ALG_RS256, "r2"),
	    pay("")), JWT_OK, NULL);
}

/* Signatures by another key, of another form, or cut short. */
static void
test_signatures(void **state)
{
	struct jwt_provider	 p;
	uint8_t			 sig[512];
	char			*t, *other;
	size_t			 n;

	(void)state;
	provider(&p);
	expect(&p, jwtt_tok(k_evil, JWK_ALG_RS256, hdr(JWK_ALG_RS256, "r1"),
	    pay("")), JWT_INVALID, "signature does not verify");
	expect(&p, jwtt_tok(k_evil, JWK_ALG_PS256, hdr(JWK_ALG_PS256, NULL),
	    pay("")), JWT_INVALID, "signature does not verify");
	expect(&p, jwtt_tok(k_evil_ec, JWK_ALG_ES256, hdr(JWK_ALG_ES256,
	    "e256"),
	    pay("")), JWT_INVALID, "signature does not verify");
	/* A signature over other claims. */
	t = jwtt_tok(k_rsa, JWK_ALG_RS256, hdr(JWK_ALG_RS256, "r1"), pay(""));
	other = jwtt_tok(k_rsa, JWK_ALG_RS256, hdr(JWK_ALG_RS256, "r1"),
	    pay(",\"x\":1"));
	n = strrchr(other, '.') - other;
	other = realloc(other, n + strlen(strrchr(t, '.')) + 1);
	strcpy(other + n, strrchr(t, '.'));
	free(t);
	expect(&p, other, JWT_INVALID, "signature does not verify");
	/* DER instead of r || s. */
	expect(&p, jwtt_tok_sig(k_ec256, JWK_ALG_ES256, hdr(JWK_ALG_ES256,
	    "e256"),
	    pay(""), 1, NULL, 0), JWT_INVALID, "signature does not verify");
	expect(&p, jwtt_tok_sig(k_ec384, JWK_ALG_ES384, hdr(JWK_ALG_ES384,
	    NULL),
	    pay(""), 1, NULL, 0), JWT_INVALID, "signature does not verify");
	/* PSS with another salt length than RFC 7518's. */
	expect(&p, jwtt_tok_sig(k_rsa, JWK_ALG_PS256, hdr(JWK_ALG_PS256, "r1"),
	    pay(""), 1, NULL, 0), JWT_INVALID, "signature does not verify");
	expect(&p, jwtt_tok_sig(k_rsa, JWK_ALG_PS384, hdr(JWK_ALG_PS384, "r1"),
	    pay(""), 0, NULL, 0), JWT_OK, NULL);
	/* Truncated: RSA and ES256 one byte short, or one byte long. */
	t = jwtt_tok(k_rsa, JWK_ALG_RS256, hdr(JWK_ALG_RS256, "r1"), pay(""));
	assert_int_equal(jwk_b64url_decode(strrchr(t, '.') + 1,
	    strlen(strrchr(t, '.') + 1), sig, sizeof(sig), &n), 0);
	assert_int_equal(n, 256);
	free(t);
	expect(&p, jwtt_tok_sig(NULL, 0, hdr(JWK_ALG_RS256, "r1"), pay(""), 0,
	    sig, 255), JWT_INVALID, "signature does not verify");
	sig[256] = 0;
	expect(&p, jwtt_tok_sig(NULL, 0, hdr(JWK_ALG_RS256, "r1"), pay(""), 0,
	    sig, 257), JWT_INVALID, "signature does not verify");
	t = jwtt_tok(k_ec256, JWK_ALG_ES256, hdr(JWK_ALG_ES256, "e256"),
	    pay(""));
	assert_int_equal(jwk_b64url_decode(strrchr(t, '.') + 1,
	    strlen(strrchr(t, '.') + 1), sig, sizeof(sig), &n), 0);
	assert_int_equal(n, 64);
	free(t);
	expect(&p, jwtt_tok_sig(NULL, 0, hdr(JWK_ALG_ES256, "e256"), pay(""), 0,
	    sig, 63), JWT_INVALID, "signature does not verify");
	expect(&p, jwtt_tok_sig(NULL, 0, hdr(JWK_ALG_ES256, "e256"), pay(""), 0,
	    sig, 65), JWT_INVALID, "signature does not verify");
	/* The signature as such verifies (the test above is not vacuous). */
	expect(&p, jwtt_tok_sig(NULL, 0, hdr(JWK_ALG_ES256, "e256"), pay(""), 0,
	    sig, 64), JWT_OK, NULL);
	t = jwtt_tok(k_rsa, JWK_ALG_RS256, hdr(JWK_ALG_RS256, "r1"), pay(""));
	*(strrchr(t, '.') + 1) = '\0';
	expect(&p, t, JWT_INVALID, "signature does not verify");
	/* A signature longer than any key's. */
	memset(sig, 0x41, sizeof(sig));
	expect(&p, jwtt_tok_sig(NULL, 0, hdr(JWK_ALG_RS256, "r1"), pay(""), 0,
	    sig, sizeof(sig)), JWT_INVALID, "signature does not verify");
	t = jwtt_tok_sig(NULL, 0, hdr(JWK_ALG_RS256, "r1"), pay(""), 0, sig,
	    sizeof(sig));
	t = realloc(t, strlen(t) + 8);
	strcat(t, "QUFB");
	expect(&p, t, JWT_INVALID, "signature is too long");
}

/*
 * Algorithms and header members an attacker picks: HS256 keyed with the
 * RSA public key (the classic confusion), none, crit, and keys offered by
 * the token itself (jku, jwk), which are never used.
 */
static void
test_hostile_headers(void **state)
{
	struct jwt_provider	 p;
	uint8_t			 mac[64], der[1024], *d = der;
	unsigned int		 maclen;
	char			*t, *jwk, h[4096];
	size_t			 n;
	int			 dlen;

	(void)state;
	provider(&p);
	dlen = i2d_PUBKEY(k_rsa, &d);
	assert_true(dlen > 0);
	t = jwtt_tok_sig(NULL, 0, "{\"alg\":\"HS256\",\"kid\":\"r1\"}", pay(""),
	    0, (const uint8_t *)"", 0);
	n = strrchr(t, '.') - t;
	assert_non_null(HMAC(EVP_sha256(), der, dlen, (uint8_t *)t, n, mac,
	    &maclen));
	free(t);
	expect(&p, jwtt_tok_sig(NULL, 0, "{\"alg\":\"HS256\",\"kid\":\"r1\"}",
	    pay(""), 0, mac, maclen), JWT_INVALID,
	    "alg \"HS256\" is not accepted");
	expect(&p, jwtt_tok_sig(NULL, 0, "{\"alg\":\"none\"}", pay(""), 0,
	    (const uint8_t *)"", 0), JWT_INVALID, "alg \"none\" is not accepted");
	expect(&p, jwtt_tok_sig(NULL, 0, "{\"alg\":\"rs256\"}", pay(""), 0,
	    (const uint8_t *)"", 0), JWT_INVALID, "alg \"rs256\"");
	/* An alg that is not a name is not echoed. */
	expect(&p, jwtt_tok_sig(NULL, 0, "{\"alg\":\"s3cr3t<script>\"}",
	    pay(""), 0,
	    (const uint8_t *)"", 0), JWT_INVALID, "alg is not accepted");
	expect(&p, jwtt_tok_sig(NULL, 0, "{\"kid\":\"r1\"}", pay(""), 0,
	    (const uint8_t *)"", 0), JWT_INVALID, "no alg");
	expect(&p, jwtt_tok_sig(NULL, 0, "{\"alg\":256}", pay(""), 0,
	    (const uint8_t *)"", 0), JWT_INVALID, "not a string");
	expect(&p, jwtt_tok(k_rsa, JWK_ALG_RS256, "{\"alg\":\"RS256\",\"kid\":"
	    "\"r1\",\"crit\":[\"exp\"]}", pay("")), JWT_INVALID, "crit");
	expect(&p, jwtt_tok(k_rsa, JWK_ALG_RS256,
	    "{\"alg\":\"RS256\",\"kid\":7}",
	    pay("")), JWT_INVALID, "kid is not a string");
	/* jku naming the attacker's JWKS: its kid is unknown here. */
	expect(&p, jwtt_tok(k_evil, JWK_ALG_RS256, "{\"alg\":\"RS256\",\"kid\":"
	    "\"attacker-kid-99\",\"jku\":\"https://evil.example/jwks\"}",
	    pay("")), JWT_UNKNOWN_KID, "kid is not one of");
	expect(&p, jwtt_tok(k_evil, JWK_ALG_RS256, "{\"alg\":\"RS256\",\"kid\":"
	    "\"r1\",\"jku\":\"https://evil.example/jwks\",\"x5u\":"
	    "\"https://evil.example/cert\"}", pay("")), JWT_INVALID,
	    "signature does not verify");
	/* The attacker's key embedded in the header. */
	jwk = jwtt_jwk(k_evil, "attacker-kid-99", "");
	snprintf(h, sizeof(h), "{\"alg\":\"RS256\",\"jwk\":%s}", jwk);
	expect(&p, jwtt_tok(k_evil, JWK_ALG_RS256, h, pay("")), JWT_INVALID,
	    "signature does not verify");
	free(jwk);
	jwk = jwtt_jwk(k_evil_ec, "attacker-kid-99", "");
	snprintf(h, sizeof(h), "{\"alg\":\"ES256\",\"kid\":\"e256\",\"jwk\":%s}",
	    jwk);
	expect(&p, jwtt_tok(k_evil_ec, JWK_ALG_ES256, h, pay("")), JWT_INVALID,
	    "signature does not verify");
	free(jwk);
}

/* Framing: segments, base64url, size, JSON. */
static void
test_framing(void **state)
{
	struct jwt_provider	 p;
	struct jwt_identity	 id;
	char			*t, *u, why[WHYLEN];
	size_t			 n;

	(void)state;
	provider(&p);
	t = jwtt_tok(k_rsa, JWK_ALG_RS256, hdr(JWK_ALG_RS256, "r1"), pay(""));
	n = strlen(t);
	assert_non_null(u = malloc(n + 16));
	/* Padding, '+' and '/' in each segment. */
	snprintf(u, n + 16, "%.*s=%s", (int)(strchr(t, '.') - t), t,
	    strchr(t, '.'));
	assert_int_equal(check_at(&p, &keys, u, strlen(u), NOW, &id, why),
	    JWT_MALFORMED);
	assert_non_null(strstr(why, "header is not base64url"));
	snprintf(u, n + 16, "%s==", t);
	assert_int_equal(check_at(&p, &keys, u, strlen(u), NOW, &id, why),
	    JWT_MALFORMED);
	memcpy(u, t, n + 1);
	u[strchr(t, '.') - t + 3] = '+';
	assert_int_equal(check_at(&p, &keys, u, n, NOW, &id, why),
	    JWT_MALFORMED);
	assert_non_null(strstr(why, "payload is not base64url"));
	memcpy(u, t, n + 1);
	u[n - 3] = '/';
	assert_int_equal(check_at(&p, &keys, u, n, NOW, &id, why),
	    JWT_MALFORMED);
	assert_non_null(strstr(why, "signature is not base64url"));
	/* Non-zero leftover bits: "QR" would be "A" with a stray bit. */
	assert_int_equal(check_at(&p, &keys, "eyJhbGciOiJSUzI1NiJ9.e30.QR", 27,
	    NOW, &id, why), JWT_MALFORMED);
	/* Two and four segments, empty. */
	memcpy(u, t, n + 1);
	*strrchr(u, '.') = '\0';
	assert_int_equal(check_at(&p, &keys, u, strlen(u), NOW, &id, why),
	    JWT_MALFORMED);
	assert_non_null(strstr(why, "three"));
	snprintf(u, n + 16, "%s.QUFB", t);
	assert_int_equal(check_at(&p, &keys, u, strlen(u), NOW, &id, why),
	    JWT_MALFORMED);
	assert_int_equal(check_at(&p, &keys, "", 0, NOW, &id, why),
	    JWT_MALFORMED);
	assert_int_equal(check_at(&p, &keys, "..", 2, NOW, &id, why),
	    JWT_MALFORMED);
	/* The length given is all that is read: a NUL inside is a byte. */
	memcpy(u, t, n + 1);
	u[5] = '\0';
	assert_int_equal(check_at(&p, &keys, u, n, NOW, &id, why),
	    JWT_MALFORMED);
	free(u);
	free(t);
	/* Over 8 KiB: refused before decoding; exactly 8 KiB is decoded. */
	assert_non_null(u = malloc(JWT_MAX_TOKEN + 2));
	memset(u, 'A', JWT_MAX_TOKEN + 1);
	u[100] = u[200] = '.';
	assert_int_equal(check_at(&p, &keys, u, JWT_MAX_TOKEN + 1, NOW, &id,
	    why), JWT_MALFORMED);
	assert_non_null(strstr(why, "longer than 8192"));
	assert_int_equal(check_at(&p, &keys, u, JWT_MAX_TOKEN, NOW, &id, why),
	    JWT_MALFORMED);
	assert_non_null(strstr(why, "is not JSON"));
	free(u);
	/* Not JSON, not an object, duplicates. */
	expect(&p, jwtt_tok(k_rsa, JWK_ALG_RS256, hdr(JWK_ALG_RS256, "r1"),
	    "{\"sub\":"), JWT_MALFORMED, "payload is not JSON");
	expect(&p, jwtt_tok(k_rsa, JWK_ALG_RS256, hdr(JWK_ALG_RS256, "r1"),
	    "[1,2]"), JWT_MALFORMED, "payload is not a JSON object");
	expect(&p, jwtt_tok(k_rsa, JWK_ALG_RS256, "\"RS256\"", pay("")),
	    JWT_MALFORMED, "header is not");
	expect(&p, jwtt_tok(k_rsa, JWK_ALG_RS256, hdr(JWK_ALG_RS256, "r1"),
	    pay(",\"exp\":99999999999")), JWT_INVALID,
	    "duplicate member in the token's payload");
	expect(&p, jwtt_tok(k_rsa, JWK_ALG_RS256, "{\"alg\":\"RS256\",\"kid\":"
	    "\"r1\",\"alg\":\"RS256\"}", pay("")), JWT_INVALID,
	    "duplicate member in the token's header");
}

/* The claims for time tests: iss, aud, sub and the members given. */
#define BASE	"\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"" SUBJECT "\""

/* A token signed by r1 over claims(fmt, ...). */
#define RS(...)	jwtt_tok(k_rsa, JWK_ALG_RS256, hdr(JWK_ALG_RS256, "r1"), \
	claims(__VA_ARGS__))

/* exp, nbf and iat, with the leeway both ways. */
static void
test_times(void **state)
{
	struct jwt_provider	 p;
	struct jwt_identity	 id;
	char			*t, why[WHYLEN];
	long long		 now = NOW;

	(void)state;
	provider(&p);
	expect(&p, RS(BASE ",\"exp\":%lld", now - 61), JWT_EXPIRED, "expired");
	expect(&p, RS(BASE ",\"exp\":%lld", now - 60), JWT_EXPIRED, "expired");
	expect(&p, RS(BASE ",\"exp\":%lld", now - 59), JWT_OK, NULL);
	expect(&p, RS(BASE ",\"exp\":%lld.9", now - 60), JWT_EXPIRED, NULL);
	expect(&p, RS(BASE), JWT_INVALID, "exp is missing");
	expect(&p, RS(BASE ",\"exp\":\"%lld\"", now + 60), JWT_INVALID,
	    "exp is missing or not a number");
	expect(&p, RS(BASE ",\"exp\":null"), JWT_INVALID, "exp");
	expect(&p, RS(BASE ",\"exp\":%lld,\"nbf\":%lld", now + 600, now + 61),
	    JWT_INVALID, "not valid yet");
	expect(&p, RS(BASE ",\"exp\":%lld,\"nbf\":%lld", now + 600, now + 60),
	    JWT_OK, NULL);
	expect(&p, RS(BASE ",\"exp\":%lld,\"iat\":%lld", now + 600, now + 61),
	    JWT_INVALID, "issued in the future");
	expect(&p, RS(BASE ",\"exp\":%lld,\"iat\":%lld.5", now + 600, now + 60),
	    JWT_OK, NULL);
	expect(&p, RS(BASE ",\"exp\":%lld,\"iat\":\"x\"", now + 600),
	    JWT_INVALID, "iat is not a number");
	expect(&p, RS(BASE ",\"exp\":%lld,\"nbf\":true", now + 600),
	    JWT_INVALID, "nbf is not a number");
	/* A real exp is rounded down; a huge one is clamped. */
	t = RS(BASE ",\"exp\":%lld.75", now + 100);
	assert_int_equal(check_at(&p, &keys, t, strlen(t), NOW, &id, why),
	    JWT_OK);
	assert_int_equal(id.ji_exp, NOW + 100);
	free(t);
	t = RS(BASE ",\"exp\":1e300");
	assert_int_equal(check_at(&p, &keys, t, strlen(t), NOW, &id, why),
	    JWT_OK);
	assert_true(id.ji_exp > NOW);
	free(t);
	/* Leeway 0: exp == now is expired, exp == now + 1 is not. */
	p.jp_leeway = 0;
	expect(&p, RS(BASE ",\"exp\":%lld", now), JWT_EXPIRED, NULL);
	expect(&p, RS(BASE ",\"exp\":%lld", now + 1), JWT_OK, NULL);
	expect(&p, RS(BASE ",\"exp\":%lld,\"nbf\":%lld", now + 600, now + 1),
	    JWT_INVALID, "not valid yet");
}

/* iss, the tenant template, and jwt_provider_issues(). */
static void
test_issuers(void **state)
{
	struct jwt_provider	 p;
	struct jwt_token	 jt;
	char			*t, why[WHYLEN];
	char			*entra = ENTRA, *v1 = "https://sts.windows.net/"
				    "{tenantid}/", *tenant = TID;
	long long		 exp = NOW + 600;

	(void)state;
	provider(&p);
	expect(&p, RS("\"iss\":\"https://evil.example/\",\"aud\":\"" AUD
	    "\",\"sub\":\"" SUBJECT "\",\"exp\":%lld", exp), JWT_INVALID,
	    "iss is not an issuer");
	expect(&p, RS("\"iss\":\"" ISS "x\",\"aud\":\"" AUD "\",\"sub\":\""
	    SUBJECT "\",\"exp\":%lld", exp), JWT_INVALID, "iss");
	expect(&p, RS("\"aud\":\"" AUD "\",\"sub\":\"" SUBJECT "\",\"exp\":"
	    "%lld", exp), JWT_INVALID, "no iss");
	expect(&p, RS("\"iss\":[\"" ISS "\"],\"aud\":\"" AUD "\",\"sub\":\""
	    SUBJECT "\",\"exp\":%lld", exp), JWT_INVALID, "no iss");

	p.jp_issuers[0] = entra;
	p.jp_issuers[1] = v1;
	p.jp_nissuers = 2;
	p.jp_tenants[0] = tenant;
	p.jp_ntenants = 1;
#define ENTRA_TOK(iss, tid) RS("\"iss\":\"" iss "\",\"aud\":\"" AUD \
	"\",\"sub\":\"" SUBJECT "\",\"tid\":\"" tid "\",\"exp\":%lld", exp)
	expect(&p, ENTRA_TOK("https://login.microsoftonline.com/" TID "/v2.0",
	    TID), JWT_OK, NULL);
	expect(&p, ENTRA_TOK("https://sts.windows.net/" TID "/", TID), JWT_OK,
	    NULL);
	/* An upper-case tid is one of the (lower-case) tenants. */
	expect(&p, ENTRA_TOK("https://sts.windows.net/" TID_UP "/", TID_UP),
	    JWT_OK, NULL);
	/* iss and tid must agree. */
	expect(&p, ENTRA_TOK("https://sts.windows.net/" TID_UP "/", TID),
	    JWT_INVALID, "iss is not an issuer");
	expect(&p, ENTRA_TOK("https://sts.windows.net/"
	    "00000000-0000-0000-0000-000000000001/",
	    "00000000-0000-0000-0000-000000000001"), JWT_INVALID,
	    "tenant is not one of the provider's tenants");
	expect(&p, ENTRA_TOK("https://sts.windows.net/"
	    "5d2f7a10x9c3e-4b8e-a1f0-77c6d4e2b9aa/",
	    "5d2f7a10x9c3e-4b8e-a1f0-77c6d4e2b9aa"), JWT_INVALID,
	    "tid is missing or not a GUID");
	expect(&p, ENTRA_TOK("https://sts.windows.net/"
	    "5d2f7a10-9c3e-4b8e-a1f0-77c6d4e2b9ag/",
	    "5d2f7a10-9c3e-4b8e-a1f0-77c6d4e2b9ag"), JWT_INVALID, "GUID");
	expect(&p, RS("\"iss\":\"https://sts.windows.net/" TID "/\",\"aud\":\""
	    AUD "\",\"sub\":\"" SUBJECT "\",\"exp\":%lld", exp), JWT_INVALID,
	    "tid is missing");
	/* The template's text around the tid must match exactly. */
	expect(&p, ENTRA_TOK("https://sts.windows.net/" TID "/x", TID),
	    JWT_INVALID, "iss is not an issuer");
	p.jp_tenants_any = 1;
	expect(&p, ENTRA_TOK("https://sts.windows.net/"
	    "00000000-0000-0000-0000-000000000001/",
	    "00000000-0000-0000-0000-000000000001"), JWT_OK, NULL);
	expect(&p, ENTRA_TOK("https://sts.windows.net/x/", "x"), JWT_INVALID,
	    "iss is not an issuer");

	/* jwt_provider_issues() makes the same iss check, and only it. */
	t = jwtt_tok(k_evil, JWK_ALG_RS256, hdr(JWK_ALG_RS256, "zz"), claims(
	    "\"iss\":\"https://sts.windows.net/" TID "/\",\"tid\":\"" TID
	    "\""));
	assert_int_equal(jwt_decode(t, strlen(t), &jt, why, WHYLEN), JWT_OK);
	assert_int_equal(jwt_provider_issues(&p, &jt), 1);
	p.jp_tenants_any = 0;
	p.jp_tenants[0] = "00000000-0000-0000-0000-000000000001";
	assert_int_equal(jwt_provider_issues(&p, &jt), 0);
	provider(&p);
	assert_int_equal(jwt_provider_issues(&p, &jt), 0);
	jwt_token_free(&jt);
	free(t);
	t = jwtt_tok(k_evil, JWK_ALG_RS256, hdr(JWK_ALG_RS256, "zz"), pay(""));
	assert_int_equal(jwt_decode(t, strlen(t), &jt, why, WHYLEN), JWT_OK);
	assert_int_equal(jwt_provider_issues(&p, &jt), 1);
	jwt_token_free(&jt);
	free(t);
#undef ENTRA_TOK
}

/* aud as a string or an array, meeting one of several audiences. */
static void
test_audiences(void **state)
{
	struct jwt_provider	 p;
	char			*other = "api://other";
	long long		 exp = NOW + 600;

	(void)state;
	provider(&p);
#define AUD_TOK(aud) RS("\"iss\":\"" ISS "\",\"aud\":" aud ",\"sub\":\"" \
	SUBJECT "\",\"exp\":%lld", exp)
	expect(&p, AUD_TOK("\"" AUD "\""), JWT_OK, NULL);
	expect(&p, AUD_TOK("[\"x\",\"" AUD "\"]"), JWT_OK, NULL);
	expect(&p, AUD_TOK("[1,null,\"" AUD "\"]"), JWT_OK, NULL);
	expect(&p, AUD_TOK("\"api://keygatex\""), JWT_INVALID, "aud");
	expect(&p, AUD_TOK("[\"a\",\"b\"]"), JWT_INVALID, "aud");
	expect(&p, AUD_TOK("[]"), JWT_INVALID, "aud");
	expect(&p, AUD_TOK("{\"a\":\"" AUD "\"}"), JWT_INVALID, "aud");
	expect(&p, RS("\"iss\":\"" ISS "\",\"sub\":\"" SUBJECT "\",\"exp\":"
	    "%lld", exp), JWT_INVALID, "aud is missing");
	p.jp_audiences[0] = other;
	p.jp_audiences[1] = AUD;
	p.jp_naudiences = 2;
	expect(&p, AUD_TOK("\"" AUD "\""), JWT_OK, NULL);
	expect(&p, AUD_TOK("[\"api://other\"]"), JWT_OK, NULL);
#undef AUD_TOK
}

/* Key choice: kid, no kid, key alg, key type, allowed algorithms. */
static void
test_keys(void **state)
{
	struct jwt_provider	 p;
	struct jwk_set		*set;
	struct jwk_keys		 two;
	struct jwt_identity	 id;
	char			 why[WHYLEN], *t;

	(void)state;
	provider(&p);
	expect(&p, jwtt_tok(k_rsa, JWK_ALG_RS256, hdr(JWK_ALG_RS256,
	    "attacker-kid-99"), pay("")), JWT_UNKNOWN_KID, "kid is not one of");
	expect(&p, jwtt_tok(k_rsa, JWK_ALG_RS256, hdr(JWK_ALG_RS256, ""),
	    pay("")),
	    JWT_UNKNOWN_KID, NULL);
	/* r2's own alg is RS256. */
	expect(&p, jwtt_tok(k_rsa2, JWK_ALG_PS256, hdr(JWK_ALG_PS256, "r2"),
	    pay("")), JWT_INVALID, "the key's alg differs");
	expect(&p, jwtt_tok(k_rsa2, JWK_ALG_RS384, hdr(JWK_ALG_RS384, "r2"),
	    pay("")), JWT_INVALID, "the key's alg differs");
	/* An RSA kid for an ES256 token, a P-384 kid for ES256. */
	expect(&p, jwtt_tok(k_ec256, JWK_ALG_ES256, hdr(JWK_ALG_ES256, "r1"),
	    pay("")), JWT_INVALID, "type does not fit");
	expect(&p, jwtt_tok(k_ec256, JWK_ALG_ES256, hdr(JWK_ALG_ES256, "e384"),
	    pay("")), JWT_INVALID, "type does not fit");
	/* No kid: r2 is tried after r1 (RS256), but never for PS256. */
	expect(&p, jwtt_tok(k_rsa2, JWK_ALG_RS256, hdr(JWK_ALG_RS256, NULL),
	    pay("")), JWT_OK, NULL);
	expect(&p, jwtt_tok(k_rsa2, JWK_ALG_PS256, hdr(JWK_ALG_PS256, NULL),
	    pay("")), JWT_INVALID, "signature does not verify");
	/* The allow-list comes first. */
	p.jp_algs = 1U << JWK_ALG_RS256;
	expect(&p, jwtt_tok(k_rsa, JWK_ALG_PS256, hdr(JWK_ALG_PS256, "r1"),
	    pay("")), JWT_INVALID, "alg PS256 is not allowed for provider test");
	expect(&p, jwtt_tok(k_ec256, JWK_ALG_ES256, hdr(JWK_ALG_ES256,
	    "attacker-kid-99"), pay("")), JWT_INVALID, "not allowed");
	expect(&p, jwtt_tok(k_rsa, JWK_ALG_RS256, hdr(JWK_ALG_RS256, "r1"),
	    pay("")), JWT_OK, NULL);
	provider(&p);
	/* Only RSA keys: no key for an ES384 token without kid. */
	assert_non_null(set = calloc(1, sizeof(*set)));
	assert_int_equal(jwtt_jwks(set, why, WHYLEN, 2, jwtt_jwk(k_rsa, "a",
	    ""), jwtt_jwk(k_rsa2, "b", "")), 2);
	assert_int_equal(jwk_keys_load(&two, set), 0);
	free(set);
	t = jwtt_tok(k_ec384, JWK_ALG_ES384, hdr(JWK_ALG_ES384, NULL), pay(""));
	assert_int_equal(check_at(&p, &two, t, strlen(t), NOW, &id, why),
	    JWT_UNKNOWN_KID);
	assert_non_null(strstr(why, "no kid"));
	free(t);
	/* No kid, two RSA keys: the second verifies. */
	t = jwtt_tok(k_rsa2, JWK_ALG_PS512, hdr(JWK_ALG_PS512, NULL), pay(""));
	assert_int_equal(check_at(&p, &two, t, strlen(t), NOW, &id, why),
	    JWT_OK);
	free(t);
	t = jwtt_tok(k_evil, JWK_ALG_PS512, hdr(JWK_ALG_PS512, NULL), pay(""));
	assert_int_equal(check_at(&p, &two, t, strlen(t), NOW, &id, why),
	    JWT_INVALID);
	free(t);
	jwk_keys_free(&two);
	assert_int_equal(two.ks_nkeys, 0);
	/* No keys at all. */
	t = jwtt_tok(k_rsa, JWK_ALG_RS256, hdr(JWK_ALG_RS256, "r1"), pay(""));
	assert_int_equal(check_at(&p, &two, t, strlen(t), NOW, &id, why),
	    JWT_UNKNOWN_KID);
	free(t);
}

/* identity=, scope_claims= and headers=. */
static void
test_identity(void **state)
{
	struct jwt_provider	 p;
	struct jwt_identity	 id;
	char			*t, why[WHYLEN], big[1200];
	char			*oid = "oid", *scp = "scp", *groups = "groups";
	long long		 exp = NOW + 600;

	(void)state;
	provider(&p);
	expect(&p, RS("\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld",
	    exp), JWT_INVALID, "identity claim \"sub\" is missing");
	expect(&p, RS(BASE ",\"exp\":%lld,\"sub\":\"\"", exp), JWT_INVALID,
	    "duplicate");
	expect(&p, RS("\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld,"
	    "\"sub\":\"\"", exp), JWT_INVALID, "\"sub\" is missing, empty");
	expect(&p, RS("\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld,"
	    "\"sub\":42", exp), JWT_INVALID, "not a string");
	/* Jansson refuses \u0000 outright: not JSON. */
	expect(&p, RS("\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld,"
	    "\"sub\":\"" SUBJECT "\\u0000x\"", exp), JWT_MALFORMED,
	    "not JSON");
	expect(&p, RS("\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld,"
	    "\"sub\":\"" SUBJECT "\\u007f\"", exp), JWT_INVALID,
	    "control characters");
	expect(&p, RS("\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld,"
	    "\"sub\":\"" SUBJECT "\\r\\nX-Admin: 1\"", exp), JWT_INVALID,
	    "control characters");
	memset(big, 'a', 257);
	big[257] = '\0';
	expect(&p, RS("\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld,"
	    "\"sub\":\"%s\"", exp, big), JWT_INVALID, "too long");
	big[256] = '\0';
	expect(&p, RS("\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld,"
	    "\"sub\":\"%s\"", exp, big), JWT_OK, NULL);

	/* identity=oid: the rate key follows it. */
	p.jp_identity = oid;
	t = jwtt_tok(k_rsa, JWK_ALG_RS256, hdr(JWK_ALG_RS256, "r1"), pay(""));
	assert_int_equal(check_at(&p, &keys, t, strlen(t), NOW, &id, why),
	    JWT_OK);
	assert_string_equal(id.ji_subject, OID);
	free(t);
	expect(&p, RS(BASE ",\"exp\":%lld", exp), JWT_INVALID,
	    "identity claim \"oid\"");

	/* scope_claims=scp,groups; control characters; length. */
	p.jp_scope_claims[0] = scp;
	p.jp_scope_claims[1] = groups;
	p.jp_nscope_claims = 2;
	t = RS(BASE ",\"oid\":\"o\",\"exp\":%lld,\"scp\":\"  a  b \","
	    "\"roles\":[\"r\"],\"groups\":[\"g1\",7,\"two words\",\"\",\"g2\"]",
	    exp);
	assert_int_equal(check_at(&p, &keys, t, strlen(t), NOW, &id, why),
	    JWT_OK);
	assert_string_equal(id.ji_scopes, "a b g1 g2");
	free(t);
	expect(&p, RS(BASE ",\"oid\":\"o\",\"exp\":%lld,\"scp\":\"a\\tb\"",
	    exp), JWT_INVALID, "scope of the token has control characters");
	expect(&p, RS(BASE ",\"oid\":\"o\",\"exp\":%lld,\"groups\":[\"a\\n\"]",
	    exp), JWT_INVALID, "control characters");
	memset(big, 'b', 1025);
	big[1025] = '\0';
	expect(&p, RS(BASE ",\"oid\":\"o\",\"exp\":%lld,\"scp\":\"%s\"", exp,
	    big), JWT_INVALID, "scopes are too long");
	big[1022] = '\0';
	expect(&p, RS(BASE ",\"oid\":\"o\",\"exp\":%lld,\"scp\":\"%s\","
	    "\"groups\":[\"c\"]", exp, big), JWT_OK, NULL);
	expect(&p, RS(BASE ",\"oid\":\"o\",\"exp\":%lld,\"scp\":\"%s\","
	    "\"groups\":[\"cd\"]", exp, big), JWT_INVALID, "too long");
}

/* headers=tid:X-Tenant-Id,... */
static void
test_headers(void **state)
{
	struct jwt_provider	 p;
	struct jwt_identity	 id;
	char			*t, why[WHYLEN], big[1100], extra[1200];

	(void)state;
	provider(&p);
	p.jp_headers[0].hm_claim = "tid";
	p.jp_headers[0].hm_header = "X-Tenant-Id";
	p.jp_headers[1].hm_claim = "n";
	p.jp_headers[1].hm_header = "X-N";
	p.jp_headers[2].hm_claim = "absent";
	p.jp_headers[2].hm_header = "X-Absent";
	p.jp_headers[3].hm_claim = "flag";
	p.jp_headers[3].hm_header = "X-Flag";
	p.jp_headers[4].hm_claim = "obj";
	p.jp_headers[4].hm_header = "X-Obj";
	p.jp_nheaders = 5;
	t = jwtt_tok(k_rsa, JWK_ALG_RS256, hdr(JWK_ALG_RS256, "r1"),
	    pay(",\"n\":-12,\"flag\":true,\"obj\":{\"a\":1}"));
	assert_int_equal(check_at(&p, &keys, t, strlen(t), NOW, &id, why),
	    JWT_OK);
	assert_string_equal(id.ji_headers, "X-Tenant-Id: " TID "\r\n"
	    "X-N: -12\r\nX-Flag: true\r\n");
	assert_int_equal(id.ji_headerslen, strlen(id.ji_headers));
	free(t);
	t = jwtt_tok(k_rsa, JWK_ALG_RS256, hdr(JWK_ALG_RS256, "r1"),
	    pay(",\"n\":2.5,\"flag\":false"));
	assert_int_equal(check_at(&p, &keys, t, strlen(t), NOW, &id, why),
	    JWT_OK);
	assert_string_equal(id.ji_headers, "X-Tenant-Id: " TID "\r\n"
	    "X-N: 2.5\r\nX-Flag: false\r\n");
	free(t);
	expect(&p, jwtt_tok(k_rsa, JWK_ALG_RS256, hdr(JWK_ALG_RS256, "r1"),
	    pay(",\"n\":\"s3cr3t\\r\\nX-Admin: yes\"")), JWT_INVALID,
	    "claim \"n\" mapped to a header has control characters");
	memset(big, 'c', 1020);
	big[1020] = '\0';
	snprintf(extra, sizeof(extra), ",\"n\":\"%s\"", big);
	expect(&p, jwtt_tok(k_rsa, JWK_ALG_RS256, hdr(JWK_ALG_RS256, "r1"),
	    pay(extra)), JWT_INVALID, "headers are too long");
	/* Without the others, 1020 bytes do not fit either. */
	p.jp_headers[0] = p.jp_headers[1];
	p.jp_nheaders = 1;
	expect(&p, jwtt_tok(k_rsa, JWK_ALG_RS256, hdr(JWK_ALG_RS256, "r1"),
	    pay(extra)), JWT_INVALID, "too long");
	big[1010] = '\0';
	snprintf(extra, sizeof(extra), ",\"n\":\"%s\"", big);
	expect(&p, jwtt_tok(k_rsa, JWK_ALG_RS256, hdr(JWK_ALG_RS256, "r1"),
	    pay(extra)), JWT_OK, NULL);
}

/* jwt_discovery_url(). */
static void
test_discovery(void **state)
{
	struct jwt_provider	 p;
	char			 buf[256];

	(void)state;
	provider(&p);
	assert_int_equal(jwt_discovery_url(&p, buf, sizeof(buf)), 0);
	assert_string_equal(buf,
	    "https://issuer.example/.well-known/openid-configuration");
	p.jp_issuers[0] = "https://idp.example/realms/x";
	assert_int_equal(jwt_discovery_url(&p, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "https://idp.example/realms/x/.well-known/"
	    "openid-configuration");
	p.jp_issuers[0] = ENTRA;
	assert_int_equal(jwt_discovery_url(&p, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "https://login.microsoftonline.com/common/"
	    "v2.0/.well-known/openid-configuration");
	p.jp_tenants[0] = TID;
	p.jp_ntenants = 1;
	assert_int_equal(jwt_discovery_url(&p, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "https://login.microsoftonline.com/" TID
	    "/v2.0/.well-known/openid-configuration");
	p.jp_tenants_any = 1;
	p.jp_issuers[0] = "https://sts.windows.net/{tenantid}/";
	assert_int_equal(jwt_discovery_url(&p, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "https://sts.windows.net/common/"
	    ".well-known/openid-configuration");
	assert_int_equal(jwt_discovery_url(&p, buf, 40), -1);
	p.jp_nissuers = 0;
	assert_int_equal(jwt_discovery_url(&p, buf, sizeof(buf)), -1);
}

/* base64url: the strict decoder every member and segment goes through. */
static void
test_b64url(void **state)
{
	static const struct {
		const char	*in;
		int		 rv;
		const char	*out;
	} cases[] = {
		{ "", 0, "" }, { "QQ", 0, "A" }, { "QUI", 0, "AB" },
		{ "QUJD", 0, "ABC" }, { "-_-_", 0, "\xfb\xff\xbf" },
		{ "Q", -1, NULL }, { "QR", -1, NULL }, { "QUJ", -1, NULL },
		{ "QQ==", -1, NULL }, { "QQ=", -1, NULL }, { "+/+/", -1, NULL },
		{ "QU I", -1, NULL }, { "QUJD\n", -1, NULL }, { "QU.D", -1, NULL }
	};
	uint8_t	 out[8];
	size_t	 i, n;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (jwk_b64url_decode(cases[i].in, strlen(cases[i].in), out,
		    sizeof(out), &n) != cases[i].rv)
			fail_msg("\"%s\": want %d", cases[i].in, cases[i].rv);
		if (cases[i].rv == 0) {
			assert_int_equal(n, strlen(cases[i].out));
			assert_memory_equal(out, cases[i].out, n);
		}
	}
	/* Exactly full, then one byte over. */
	assert_int_equal(jwk_b64url_decode("QUJD", 4, out, 3, &n), 0);
	assert_int_equal(jwk_b64url_decode("QUJDRA", 6, out, 3, &n), -1);
	assert_int_equal(jwk_b64url_decode("QUJDRA", 6, out, 4, &n), 0);
	assert_int_equal(n, 4);
}

/* A JWKS document of the one key text k (freed), parsed into set. */
static int
jwks1(struct jwk_set *set, char *err, char *k)
{
	return (jwtt_jwks(set, err, WHYLEN, 1, k));
}

/* An Entra-like JWKS: keys without alg kept, an oct key skipped. */
static void
test_jwks(void **state)
{
	struct jwk_set	*set;
	struct jwk_keys	 ks;
	char		 err[WHYLEN];

	(void)state;
	assert_non_null(set = calloc(1, sizeof(*set)));
	/* Entra-like: no alg, x5t and x5c ignored, an oct key skipped. */
	assert_int_equal(jwtt_jwks(set, err, WHYLEN, 3, jwtt_jwk(k_rsa, "kid-a",
	    ",\"use\":\"sig\",\"x5t\":\"abc\",\"x5c\":[\"MIIB\"],\"issuer\":"
	    "\"https://login.microsoftonline.com/{tenantid}/v2.0\""),
	    strdup("{\"kty\":\"oct\",\"kid\":\"h\",\"k\":\"c2VjcmV0\"}"),
	    jwtt_jwk(k_ec384, "kid-b", ",\"key_ops\":[\"verify\"]")), 2);
	assert_int_equal(set->s_nkeys, 2);
	assert_int_equal(set->s_skipped, 1);
	assert_string_equal(set->s_keys[0].k_kid, "kid-a");
	assert_int_equal(set->s_keys[0].k_kty, JWK_KTY_RSA);
	assert_int_equal(set->s_keys[0].k_alg, -1);
	assert_int_equal(set->s_keys[0].k_nlen, 256);
	assert_int_equal(set->s_keys[0].k_elen, 3);
	assert_int_equal(set->s_keys[1].k_kty, JWK_KTY_EC);
	assert_int_equal(set->s_keys[1].k_crv, JWK_CRV_P384);
	assert_int_equal(jwk_keys_load(&ks, set), 0);
	assert_int_equal(ks.ks_nkeys, 2);
	assert_string_equal(ks.ks_keys[1].kk_kid, "kid-b");
	assert_int_equal(ks.ks_keys[0].kk_alg, -1);
	jwk_keys_free(&ks);
	free(set);
}

/* Keys skipped, each alone in a set: the refusal names the first. */
static void
test_jwks_skipped(void **state)
{
	struct jwk_set	*set;
	struct jwk_keys	 ks;
	EVP_PKEY	*small;
	char		 err[WHYLEN], *k, *y;

	(void)state;
	assert_non_null(set = calloc(1, sizeof(*set)));
	assert_int_equal(jwks1(set, err, strdup("{\"kty\":\"oct\",\"k\":"
	    "\"c2VjcmV0\"}")), -1);
	assert_non_null(strstr(err, "no usable key: keys[0]: \"kty\""));
	assert_int_equal(jwks1(set, err, jwtt_jwk(k_rsa, "a",
	    ",\"use\":\"enc\"")), -1);
	assert_non_null(strstr(err, "\"use\" is not \"sig\""));
	assert_int_equal(jwks1(set, err, jwtt_jwk(k_rsa, "a",
	    ",\"key_ops\":[\"encrypt\"]")), -1);
	assert_non_null(strstr(err, "lacks \"verify\""));
	assert_int_equal(jwks1(set, err, jwtt_jwk(k_rsa, "a",
	    ",\"alg\":\"ES256\"")), -1);
	assert_non_null(strstr(err, "\"alg\""));
	assert_int_equal(jwks1(set, err, jwtt_jwk(k_rsa, "a",
	    ",\"alg\":\"HS256\"")), -1);
	assert_int_equal(jwks1(set, err, jwtt_jwk(k_ec256, "a",
	    ",\"alg\":\"ES384\"")), -1);
	assert_int_equal(jwks1(set, err, jwtt_jwk(k_ec256, "a",
	    ",\"alg\":\"ES256\"")), 1);
	assert_int_equal(set->s_keys[0].k_alg, JWK_ALG_ES256);
	small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	assert_non_null(small);
	assert_int_equal(jwtt_jwks(set, err, WHYLEN, 2, jwtt_jwk(small, "s",
	    ""), jwtt_jwk(k_rsa, "a", "")), 1);
	assert_int_equal(set->s_skipped, 1);
	assert_int_equal(jwks1(set, err, jwtt_jwk(small, "s", "")), -1);
	assert_non_null(strstr(err, "keys[0]: the RSA modulus has 1024 bits"));
	EVP_PKEY_free(small);

	/* Bad members: base64url with padding, +, /; a long kid. */
	k = jwtt_jwk(k_rsa, "a", "");
	strstr(k, "\",\"e\"")[-1] = '=';
	assert_int_equal(jwtt_jwks(set, err, WHYLEN, 2, jwtt_jwk(k_rsa, "ok",
	    ""), k),
	    1);
	assert_int_equal(jwks1(set, err, jwtt_jwk(k_rsa, "ok", ",\"n\":1")),
	    -1);
	assert_non_null(strstr(err, "the JWKS is not JSON"));
	assert_non_null(strstr(err, "duplicate"));
	k = jwtt_jwk(k_rsa, "a", "");
	strstr(k, "\"n\":\"")[6] = '+';
	assert_int_equal(jwks1(set, err, k), -1);
	assert_non_null(strstr(err, "keys[0]: \"n\" is not base64url"));
	k = jwtt_jwk(k_ec256, "a", "");
	strstr(k, "\"x\":\"")[6] = '/';
	assert_int_equal(jwks1(set, err, k), -1);
	assert_non_null(strstr(err, "keys[0]: \"x\" is not a base64url"));
	memset(err, 'k', 129);
	err[129] = '\0';
	assert_int_equal(jwks1(set, err, jwtt_jwk(k_rsa, err, "")), -1);
	assert_non_null(strstr(err, "\"kid\""));
	assert_int_equal(jwks1(set, err, strdup("{\"kty\":\"RSA\",\"n\":\"QQ\","
	    "\"e\":\"AQAB\"}")), -1);
	assert_non_null(strstr(err, "RSA modulus has 8 bits"));
	assert_int_equal(jwks1(set, err, strdup("{\"kty\":\"EC\",\"crv\":"
	    "\"P-521\",\"x\":\"QQ\",\"y\":\"QQ\"}")), -1);
	assert_non_null(strstr(err, "\"crv\""));

	/* An EC point off the curve (y changed) is refused. */
	k = jwtt_jwk(k_ec256, "a", "");
	y = strstr(k, "\"y\":\"") + 5;
	y[0] = y[0] == 'A' ? 'B' : 'A';
	assert_int_equal(jwks1(set, err, k), -1);
	assert_non_null(strstr(err, "keys[0]: OpenSSL refuses the key"));
	/* And a set with such a key in it loses it on load too. */
	assert_int_equal(jwks1(set, err, jwtt_jwk(k_ec256, "a", "")), 1);
	set->s_keys[0].k_y[5] ^= 1;
	assert_int_equal(jwk_keys_load(&ks, set), -1);
	assert_int_equal(ks.ks_nkeys, 0);
	jwk_keys_free(&ks);
	free(set);
}

/* Documents: not JSON (with the position), no keys, too big, too many. */
static void
test_jwks_documents(void **state)
{
	struct jwk_set	*set;
	char		 err[WHYLEN], *doc, *k;
	size_t		 len, i;

	(void)state;
	assert_non_null(set = calloc(1, sizeof(*set)));
	assert_int_equal(jwk_parse_set("{\"keys\":[}", 10, set, err, WHYLEN),
	    -1);
	assert_non_null(strstr(err, "not JSON: line 1 column 10"));
	assert_int_equal(jwk_parse_set("{\"keys\":[]}", 11, set, err, WHYLEN),
	    -1);
	assert_non_null(strstr(err, "no usable key"));
	assert_int_equal(jwk_parse_set("{\"key\":[]}", 10, set, err, WHYLEN),
	    -1);
	assert_non_null(strstr(err, "no \"keys\" array"));
	assert_int_equal(jwk_parse_set("[]", 2, set, err, WHYLEN), -1);
	assert_int_equal(jwk_parse_set("{\"keys\":{}}", 11, set, err, WHYLEN),
	    -1);
	/* Only len bytes are read. */
	assert_int_equal(jwk_parse_set("{\"keys\":[]}xyz", 11, set, err,
	    WHYLEN), -1);
	assert_non_null(strstr(err, "no usable key"));
	assert_non_null(doc = malloc(JWK_DOC_MAX + 2));
	memset(doc, ' ', JWK_DOC_MAX + 1);
	assert_int_equal(jwk_parse_set(doc, JWK_DOC_MAX + 1, set, err,
	    WHYLEN), -1);
	assert_non_null(strstr(err, "longer than"));

	/* More than JWK_MAX_KEYS keys: the first 32 kept. */
	k = jwtt_jwk(k_ec256, "same", "");
	len = (size_t)snprintf(doc, 64, "{\"keys\":[");
	for (i = 0; i < JWK_MAX_KEYS + 3; i++)
		len += (size_t)snprintf(doc + len, JWK_DOC_MAX - len, "%s%s",
		    i > 0 ? "," : "", k);
	len += (size_t)snprintf(doc + len, JWK_DOC_MAX - len, "]}");
	assert_int_equal(jwk_parse_set(doc, len, set, err, WHYLEN),
	    JWK_MAX_KEYS);
	assert_int_equal(set->s_skipped, 3);
	free(k);
	free(doc);
	free(set);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_b64url),
		cmocka_unit_test(test_jwks),
		cmocka_unit_test(test_jwks_skipped),
		cmocka_unit_test(test_jwks_documents),
		cmocka_unit_test(test_algs_good),
		cmocka_unit_test(test_signatures),
		cmocka_unit_test(test_hostile_headers),
		cmocka_unit_test(test_framing),
		cmocka_unit_test(test_times),
		cmocka_unit_test(test_issuers),
		cmocka_unit_test(test_audiences),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_identity),
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_discovery),
	};

	return (cmocka_run_group_tests(tests, setup, teardown));
}
