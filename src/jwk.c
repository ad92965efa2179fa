/*
 * JSON Web Keys: algorithm names, JWKS parsing into the shared-memory
 * form, and OpenSSL keys from it.  See jwk.h.
 */

#include <sys/types.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "jwk.h"

static void	 jwk_why(char *, size_t, const char *, ...)
		    __attribute__((format(printf, 3, 4)));

/* Bytes of a coordinate of each curve (enum jwk_crv). */
static const size_t jwk_crv_size[] = { 0, 32, 48 };
static const char *const jwk_crv_group[] = { NULL, "prime256v1", "secp384r1" };

static const char *const jwk_alg_names[JWK_NALGS] = {
	"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"
};

/* Name of alg, or NULL. */
const char *
jwk_alg_name(int alg)
{
	if (alg < 0 || alg >= JWK_NALGS)
		return (NULL);
	return (jwk_alg_names[alg]);
}

/* The alg named s[0..n) (exact, case-sensitive as RFC 7518), or -1. */
int
jwk_alg_parse(const char *s, size_t n)
{
	int	 i;

	for (i = 0; i < JWK_NALGS; i++)
		if (strlen(jwk_alg_names[i]) == n &&
		    memcmp(jwk_alg_names[i], s, n) == 0)
			return (i);
	return (-1);
}

/* Can a key of type kty (curve crv) verify alg? */
int
jwk_alg_fits(int kty, int crv, int alg)
{
	switch (alg) {
	case JWK_ALG_RS256:
	case JWK_ALG_RS384:
	case JWK_ALG_RS512:
	case JWK_ALG_PS256:
	case JWK_ALG_PS384:
	case JWK_ALG_PS512:
		return (kty == JWK_KTY_RSA);
	case JWK_ALG_ES256:
		return (kty == JWK_KTY_EC && crv == JWK_CRV_P256);
	case JWK_ALG_ES384:
		return (kty == JWK_KTY_EC && crv == JWK_CRV_P384);
	default:
		return (0);
	}
}

/*
 * One more than the value of each base64url character, 0 for every other
 * byte: one load per character on the request path (a token is ~1 KB of
 * base64url).
 */
static const int8_t jwk_b64tab[256] = {
	['A'] = 1, ['B'] = 2, ['C'] = 3, ['D'] = 4, ['E'] = 5, ['F'] = 6,
	['G'] = 7, ['H'] = 8, ['I'] = 9, ['J'] = 10, ['K'] = 11, ['L'] = 12,
	['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16, ['Q'] = 17,
	['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22,
	['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26,
	['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31,
	['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36,
	['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41,
	['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46,
	['u'] = 47, ['v'] = 48, ['w'] = 49, ['x'] = 50, ['y'] = 51,
	['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
	['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61,
	['9'] = 62, ['-'] = 63, ['_'] = 64
};

/* The value of the base64url character c (a byte), or -1. */
static inline int
jwk_b64val(unsigned char c)
{
	return (jwk_b64tab[c] - 1);	/* the table holds value + 1, 0: none */
}

/*
 * Decode the base64url text s[0..len) (RFC 4648 section 5, no padding) into
 * out[0..outsize), its length in *outlen.  Strict, so that one key or one
 * token has exactly one spelling: every character must be of the url-safe
 * alphabet ('=' padding, '+', '/', blanks are refused), a final group of one
 * character is impossible, and the bits a final group of two or three
 * characters carries past its last byte (4 or 2) must be zero.  -1 if the
 * text is not so, or does not fit in outsize bytes.
 */
int
jwk_b64url_decode(const char *s, size_t len, uint8_t *out, size_t outsize,
    size_t *outlen)
{
	uint32_t	 acc = 0;
	size_t		 i, n = 0;
	int		 v, bits = 0;

	*outlen = 0;
	if (len % 4 == 1 || len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0) > outsize)
		return (-1);
	for (i = 0; i < len; i++) {
		if ((v = jwk_b64val((unsigned char)s[i])) < 0)
			return (-1);
		acc = (acc << 6) | (uint32_t)v;
		if ((bits += 6) >= 8) {
			bits -= 8;
			out[n++] = (uint8_t)(acc >> bits);
			acc &= (1U << bits) - 1;
		}
	}
	if (acc != 0)	/* leftover bits of the last group */
		return (-1);
	*outlen = n;
	return (0);
}

/* Format a reason into why[0..whylen) (a key's parse failure, say). */
static void
jwk_why(char *why, size_t whylen, const char *fmt, ...)
{
	va_list	 ap;

	if (whylen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

/*
 * Key member name of o as a big-endian integer: base64url into buf[0..size)
 * with its leading zero bytes stripped, the length in *len.  -1 with a
 * reason if absent, not a string, not base64url or too long.
 */
static int
jwk_member_int(json_t *o, const char *name, uint8_t *buf, size_t size,
    size_t *len, size_t i, char *why, size_t whylen)
{
	json_t	*v;
	size_t	 n, z;

	if ((v = json_object_get(o, name)) == NULL || !json_is_string(v)) {
		jwk_why(why, whylen, "keys[%zu]: \"%s\" is missing or not a "
		    "string", i, name);
		return (-1);
	}
	if (jwk_b64url_decode(json_string_value(v), json_string_length(v),
	    buf, size, &n) == -1) {
		jwk_why(why, whylen, "keys[%zu]: \"%s\" is not base64url or is "
		    "too long", i, name);
		return (-1);
	}
	for (z = 0; z < n && buf[z] == 0; z++)
		;
	memmove(buf, buf + z, n - z);
	*len = n - z;
	return (0);
}

/* An RSA key's n and e from o into k.  -1 with a reason. */
static int
jwk_parse_rsa(json_t *o, struct jwk *k, size_t i, char *why, size_t whylen)
{
	uint8_t	 buf[JWK_RSA_MAX + 16];
	size_t	 n;

	if (jwk_member_int(o, "n", buf, sizeof(buf), &n, i, why, whylen) == -1)
		return (-1);
	if (n < JWK_RSA_MIN || n > JWK_RSA_MAX) {
		jwk_why(why, whylen, "keys[%zu]: the RSA modulus has %zu bits, "
		    "not 2048 to 4096", i, n * 8);
		return (-1);
	}
	memcpy(k->k_n, buf, n);
	k->k_nlen = (uint16_t)n;
	if (jwk_member_int(o, "e", buf, sizeof(buf), &n, i, why, whylen) == -1)
		return (-1);
	if (n == 0 || n > JWK_E_MAX || (buf[n - 1] & 1) == 0 ||
	    (n == 1 && buf[0] == 1)) {
		jwk_why(why, whylen, "keys[%zu]: the RSA exponent is not an odd "
		    "number of 3 to 64 bits", i);
		return (-1);
	}
	memcpy(k->k_e, buf, n);
	k->k_elen = (uint16_t)n;
	return (0);
}

/* An EC key's crv, x and y from o into k.  -1 with a reason. */
static int
jwk_parse_ec(json_t *o, struct jwk *k, size_t i, char *why, size_t whylen)
{
	json_t		*v;
	const char	*crv;
	const char	*names[2] = { "x", "y" };
	uint8_t		*dst[2] = { k->k_x, k->k_y };
	size_t		 c, n, size;

	if ((v = json_object_get(o, "crv")) == NULL || !json_is_string(v)) {
		jwk_why(why, whylen, "keys[%zu]: \"crv\" is missing or not a "
		    "string", i);
		return (-1);
	}
	crv = json_string_value(v);
	if (strcmp(crv, "P-256") == 0)
		k->k_crv = JWK_CRV_P256;
	else if (strcmp(crv, "P-384") == 0)
		k->k_crv = JWK_CRV_P384;
	else {
		jwk_why(why, whylen, "keys[%zu]: \"crv\" is not P-256 or P-384",
		    i);
		return (-1);
	}
	size = jwk_crv_size[k->k_crv];
	for (c = 0; c < 2; c++) {
		v = json_object_get(o, names[c]);
		if (v == NULL || !json_is_string(v) ||
		    jwk_b64url_decode(json_string_value(v),
		    json_string_length(v), dst[c], JWK_EC_MAX, &n) == -1 ||
		    n != size) {
			jwk_why(why, whylen, "keys[%zu]: \"%s\" is not a "
			    "base64url coordinate of %zu bytes", i, names[c],
			    size);
			return (-1);
		}
	}
	return (0);
}

/*
 * Is the key o meant for signatures?  "use" absent or "sig", "key_ops"
 * absent or an array of strings holding "verify".  -1 with a reason.
 */
static int
jwk_parse_use(json_t *o, size_t i, char *why, size_t whylen)
{
	json_t	*v, *op;
	size_t	 j;
	int	 verify = 0;

	if ((v = json_object_get(o, "use")) != NULL &&
	    (!json_is_string(v) || strcmp(json_string_value(v), "sig") != 0)) {
		jwk_why(why, whylen, "keys[%zu]: \"use\" is not \"sig\"", i);
		return (-1);
	}
	if ((v = json_object_get(o, "key_ops")) == NULL)
		return (0);
	if (!json_is_array(v)) {
		jwk_why(why, whylen, "keys[%zu]: \"key_ops\" is not an array",
		    i);
		return (-1);
	}
	json_array_foreach(v, j, op) {
		if (!json_is_string(op)) {
			jwk_why(why, whylen, "keys[%zu]: \"key_ops\" holds a "
			    "non-string", i);
			return (-1);
		}
		if (strcmp(json_string_value(op), "verify") == 0)
			verify = 1;
	}
	if (!verify) {
		jwk_why(why, whylen, "keys[%zu]: \"key_ops\" lacks \"verify\"",
		    i);
		return (-1);
	}
	return (0);
}

/* The optional kid and alg of o into k.  -1 with a reason. */
static int
jwk_parse_names(json_t *o, struct jwk *k, size_t i, char *why, size_t whylen)
{
	json_t	*v;
	size_t	 n;

	k->k_alg = -1;
	if ((v = json_object_get(o, "kid")) != NULL) {
		if (!json_is_string(v) ||
		    (n = json_string_length(v)) > JWK_KID_MAX ||
		    strlen(json_string_value(v)) != n) {
			jwk_why(why, whylen, "keys[%zu]: \"kid\" is not a "
			    "string of at most %d bytes", i, JWK_KID_MAX);
			return (-1);
		}
		memcpy(k->k_kid, json_string_value(v), n + 1);
	}
	if ((v = json_object_get(o, "alg")) == NULL)
		return (0);
	if (!json_is_string(v) || (k->k_alg = (int8_t)jwk_alg_parse(
	    json_string_value(v), json_string_length(v))) < 0 ||
	    !jwk_alg_fits(k->k_kty, k->k_crv, k->k_alg)) {
		jwk_why(why, whylen, "keys[%zu]: \"alg\" is not a signature "
		    "algorithm of the key's type", i);
		return (-1);
	}
	return (0);
}

/*
 * The EVP_PKEY of k, or NULL if OpenSSL refuses it.  An EC public key is
 * the uncompressed point 0x04 || x || y; EVP_PKEY_fromdata() decodes it
 * and EVP_PKEY_public_check() makes sure it is on the curve (a point off
 * the curve is the invalid-curve attack's tool).
 */
static EVP_PKEY *
jwk_pkey(const struct jwk *k)
{
	OSSL_PARAM_BLD	*bld;
	OSSL_PARAM	*params = NULL;
	EVP_PKEY_CTX	*ctx = NULL, *check = NULL;
	EVP_PKEY	*pkey = NULL;
	BIGNUM		*n = NULL, *e = NULL;
	uint8_t		 pt[1 + 2 * JWK_EC_MAX];
	size_t		 sz;
	int		 ok = 0;

	if ((bld = OSSL_PARAM_BLD_new()) == NULL)
		return (NULL);
	if (k->k_kty == JWK_KTY_RSA) {
		if (k->k_nlen > JWK_RSA_MAX || k->k_elen > JWK_E_MAX ||
		    (n = BN_bin2bn(k->k_n, k->k_nlen, NULL)) == NULL ||
		    (e = BN_bin2bn(k->k_e, k->k_elen, NULL)) == NULL ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
			goto fail;
		ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	} else if (k->k_kty == JWK_KTY_EC && (k->k_crv == JWK_CRV_P256 ||
	    k->k_crv == JWK_CRV_P384)) {
		sz = jwk_crv_size[k->k_crv];
		pt[0] = 0x04;
		memcpy(pt + 1, k->k_x, sz);
		memcpy(pt + 1 + sz, k->k_y, sz);
		if (!OSSL_PARAM_BLD_push_utf8_string(bld,
		    OSSL_PKEY_PARAM_GROUP_NAME, jwk_crv_group[k->k_crv], 0) ||
		    !OSSL_PARAM_BLD_push_octet_string(bld,
		    OSSL_PKEY_PARAM_PUB_KEY, pt, 1 + 2 * sz))
			goto fail;
		ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	} else
		goto fail;
	if (ctx == NULL || (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		goto fail;
	if (k->k_kty == JWK_KTY_EC &&
	    ((check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) == NULL ||
	    EVP_PKEY_public_check(check) != 1))
		goto fail;
	ok = 1;
fail:
	if (!ok) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
	EVP_PKEY_CTX_free(check);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(n);
	BN_free(e);
	return (pkey);
}

/* The key keys[i], o, into k.  -1 with a reason if it is not kept. */
static int
jwk_parse_key(json_t *o, struct jwk *k, size_t i, char *why, size_t whylen)
{
	json_t		*v;
	EVP_PKEY	*pkey;

	memset(k, 0, sizeof(*k));
	if (!json_is_object(o)) {
		jwk_why(why, whylen, "keys[%zu]: not an object", i);
		return (-1);
	}
	v = json_object_get(o, "kty");
	if (json_is_string(v) && strcmp(json_string_value(v), "RSA") == 0)
		k->k_kty = JWK_KTY_RSA;
	else if (json_is_string(v) && strcmp(json_string_value(v), "EC") == 0)
		k->k_kty = JWK_KTY_EC;
	else {
		jwk_why(why, whylen, "keys[%zu]: \"kty\" is not \"RSA\" or "
		    "\"EC\"", i);
		return (-1);
	}
	if (jwk_parse_use(o, i, why, whylen) == -1 ||
	    (k->k_kty == JWK_KTY_RSA ?
	    jwk_parse_rsa(o, k, i, why, whylen) :
	    jwk_parse_ec(o, k, i, why, whylen)) == -1 ||
	    jwk_parse_names(o, k, i, why, whylen) == -1)
		return (-1);
	if ((pkey = jwk_pkey(k)) == NULL) {
		jwk_why(why, whylen, "keys[%zu]: OpenSSL refuses the key%s", i,
		    k->k_kty == JWK_KTY_EC ? " (a point not on the curve?)" :
		    "");
		return (-1);
	}
	EVP_PKEY_free(pkey);
	return (0);
}

/*
 * Jansson's error text, made safe for a message: at most 80 bytes and only
 * printable ASCII (the "near" part can quote arbitrary bytes).
 */
static void
jwk_json_text(const char *in, char *out, size_t outsize)
{
	size_t	 i;

	for (i = 0; in[i] != '\0' && i < 80 && i + 1 < outsize; i++)
		out[i] = (in[i] >= 0x20 && in[i] < 0x7f) ? in[i] : '?';
	out[i] = '\0';
}

/* Parse the JWKS doc[0..len) into set; see jwk.h. */
int
jwk_parse_set(const char *doc, size_t len, struct jwk_set *set, char *err,
    size_t errlen)
{
	json_error_t	 je;
	json_t		*root, *keys, *o;
	char		 text[96], first[160] = "";
	size_t		 i;

	memset(set, 0, sizeof(*set));
	if (len > JWK_DOC_MAX) {
		jwk_why(err, errlen, "the JWKS is longer than %d bytes",
		    JWK_DOC_MAX);
		return (-1);
	}
	if ((root = json_loadb(doc, len, JSON_REJECT_DUPLICATES, &je)) ==
	    NULL) {
		jwk_json_text(je.text, text, sizeof(text));
		jwk_why(err, errlen, "the JWKS is not JSON: line %d column %d: "
		    "%s", je.line, je.column, text);
		return (-1);
	}
	if (!json_is_object(root) || !json_is_array(keys =
	    json_object_get(root, "keys"))) {
		json_decref(root);
		jwk_why(err, errlen, "the JWKS has no \"keys\" array");
		return (-1);
	}
	/* The first skipped key's reason is kept; later ones go to text. */
	json_array_foreach(keys, i, o) {
		if (set->s_nkeys == JWK_MAX_KEYS) {
			set->s_skipped++;
			continue;
		}
		if (jwk_parse_key(o, &set->s_keys[set->s_nkeys], i,
		    first[0] == '\0' ? first : text, first[0] == '\0' ?
		    sizeof(first) : sizeof(text)) == -1) {
			memset(&set->s_keys[set->s_nkeys], 0,
			    sizeof(set->s_keys[0]));
			set->s_skipped++;
		} else
			set->s_nkeys++;
	}
	json_decref(root);
	if (set->s_nkeys == 0) {
		jwk_why(err, errlen, "the JWKS has no usable key%s%s",
		    first[0] != '\0' ? ": " : " (\"keys\" is empty)", first);
		return (-1);
	}
	return ((int)set->s_nkeys);
}

/* Build keys from set; see jwk.h. */
int
jwk_keys_load(struct jwk_keys *keys, const struct jwk_set *set)
{
	const struct jwk	*k;
	EVP_PKEY		*pkey;
	uint32_t		 i;

	memset(keys, 0, sizeof(*keys));
	for (i = 0; i < set->s_nkeys && i < JWK_MAX_KEYS; i++) {
		k = &set->s_keys[i];
		if ((pkey = jwk_pkey(k)) == NULL)
			continue;
		keys->ks_keys[keys->ks_nkeys].kk_pkey = pkey;
		memcpy(keys->ks_keys[keys->ks_nkeys].kk_kid, k->k_kid,
		    sizeof(k->k_kid));
		keys->ks_keys[keys->ks_nkeys].kk_kid[JWK_KID_MAX] = '\0';
		keys->ks_keys[keys->ks_nkeys].kk_kty = k->k_kty;
		keys->ks_keys[keys->ks_nkeys].kk_crv = k->k_crv;
		keys->ks_keys[keys->ks_nkeys].kk_alg = k->k_alg;
		keys->ks_nkeys++;
	}
	return (keys->ks_nkeys > 0 ? 0 : -1);
}

/* Free what jwk_keys_load() built; keys is then the empty set. */
void
jwk_keys_free(struct jwk_keys *keys)
{
	uint32_t	 i;

	for (i = 0; i < keys->ks_nkeys && i < JWK_MAX_KEYS; i++)
		EVP_PKEY_free(keys->ks_keys[i].kk_pkey);
	memset(keys, 0, sizeof(*keys));
}
