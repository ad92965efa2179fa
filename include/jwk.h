/*
 * JSON Web Keys (RFC 7517) as keygate uses them: the verification keys of
 * a JWT provider, parsed from a JWKS document into a fixed-size form with
 * no pointers (struct jwk_set) that the master publishes in the shared
 * segment, and turned by each worker into OpenSSL EVP_PKEYs
 * (struct jwk_keys) when the set changes.  Free of libevent.
 *
 * Kept from a JWKS: RSA keys of 2048 to 4096 bits and EC keys on P-256 or
 * P-384, whose "use" is absent or "sig" and whose "key_ops", if present,
 * include "verify".  Skipped (counted, named in the parse report): every
 * other key (symmetric "oct" keys above all: keygate never verifies HS*
 * tokens with a JWKS), keys with a bad member, keys past JWK_MAX_KEYS.  A
 * key's "alg" is optional (Microsoft Entra's keys carry none): when absent
 * the key serves every algorithm of its type (RS and PS for RSA, ES256 for
 * P-256, ES384 for P-384); when present it must be one of those and only
 * tokens with that alg may use it.  x5c/x5t are ignored: the key is n/e
 * or x/y, never a certificate chain.
 */
#ifndef KEYGATE_JWK_H
#define KEYGATE_JWK_H

#include <stddef.h>
#include <stdint.h>

#define JWK_MAX_KEYS	32	/* kept per provider */
#define JWK_KID_MAX	128	/* longer kids make the key skipped */
#define JWK_RSA_MIN	256	/* modulus bytes: 2048 bits */
#define JWK_RSA_MAX	512	/* 4096 bits */
#define JWK_E_MAX	8	/* public exponent bytes */
#define JWK_EC_MAX	48	/* coordinate bytes: P-384 */
#define JWK_DOC_MAX	(512 * 1024)	/* largest JWKS document accepted */

/*
 * Signature algorithms (RFC 7518), in the order of their bits in an
 * algorithm mask (1 << JWT_ALG_xx).  The HS* and "none" algorithms have no
 * number: keygate never accepts them.
 */
enum jwk_alg {
	JWK_ALG_RS256 = 0,
	JWK_ALG_RS384,
	JWK_ALG_RS512,
	JWK_ALG_PS256,
	JWK_ALG_PS384,
	JWK_ALG_PS512,
	JWK_ALG_ES256,
	JWK_ALG_ES384,
	JWK_NALGS
};
#define JWK_ALGS_ALL	((1U << JWK_NALGS) - 1)

enum jwk_kty {
	JWK_KTY_RSA = 1,
	JWK_KTY_EC
};

enum jwk_crv {
	JWK_CRV_NONE = 0,
	JWK_CRV_P256,
	JWK_CRV_P384
};

/* One verification key, as plain bytes (big-endian integers). */
struct jwk {
	char		 k_kid[JWK_KID_MAX + 1];	/* "": no kid */
	uint8_t		 k_kty;		/* enum jwk_kty */
	uint8_t		 k_crv;		/* enum jwk_crv, EC only */
	int8_t		 k_alg;		/* enum jwk_alg, -1: no "alg" */
	uint8_t		 k_pad;
	uint16_t	 k_nlen;	/* RSA modulus bytes */
	uint16_t	 k_elen;	/* RSA exponent bytes */
	uint8_t		 k_n[JWK_RSA_MAX];
	uint8_t		 k_e[JWK_E_MAX];
	uint8_t		 k_x[JWK_EC_MAX];	/* EC: 32 (P-256) or 48 bytes */
	uint8_t		 k_y[JWK_EC_MAX];
};

/* A provider's key set; zeroed memory is the empty set. */
struct jwk_set {
	uint32_t	 s_nkeys;
	uint32_t	 s_skipped;	/* keys in the document not kept */
	struct jwk	 s_keys[JWK_MAX_KEYS];
};

/* A worker's usable form of a jwk_set. */
struct jwk_keys {
	uint32_t	 ks_nkeys;
	struct {
		void	*kk_pkey;	/* EVP_PKEY * */
		char	 kk_kid[JWK_KID_MAX + 1];
		uint8_t	 kk_kty;
		uint8_t	 kk_crv;
		int8_t	 kk_alg;
	}		 ks_keys[JWK_MAX_KEYS];
};

/* Name of alg ("RS256"), or NULL for a bad value. */
const char	*jwk_alg_name(int);

/* The alg named s[0..n) ("RS256"), or -1 for any other name ("HS256"). */
int		 jwk_alg_parse(const char *, size_t);

/*
 * Can a key of type kty/crv verify alg?  RSA: RS* and PS*; EC P-256:
 * ES256; EC P-384: ES384.
 */
int		 jwk_alg_fits(int, int, int);

/*
 * Decode the base64url s[0..len) (RFC 4648 section 5, strict: no padding,
 * no character outside the url-safe alphabet, zero leftover bits) into
 * out[0..outsize), its length in *outlen.  0, or -1 if it is not such text
 * or does not fit.  Shared by JWK members and JWT segments.
 */
int		 jwk_b64url_decode(const char *, size_t, uint8_t *, size_t,
		    size_t *);

/*
 * Parse the JWKS document doc[0..len) ({"keys": [...]}, at most
 * JWK_DOC_MAX bytes, duplicate member names refused) into set.  Returns
 * the number of keys kept (>= 1), or -1 with a reason in err: not JSON
 * (with the position), no "keys" array, or no usable key at all (with why
 * the first one was skipped).  Never reads past len.
 */
int		 jwk_parse_set(const char *, size_t, struct jwk_set *, char *,
		    size_t);

/*
 * Build keys from set (EVP_PKEY_fromdata).  A key OpenSSL refuses is left
 * out.  0, or -1 when no key could be built.  keys must be zeroed or
 * freed before.
 */
int		 jwk_keys_load(struct jwk_keys *, const struct jwk_set *);
void		 jwk_keys_free(struct jwk_keys *);

#endif /* KEYGATE_JWK_H */
