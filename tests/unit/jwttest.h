/*
 * Test helpers for JWT: JWKS text for keys made with OpenSSL, and tokens
 * signed in the test (ES* signatures as raw R||S, RFC 7518 3.4), so that
 * every token, good or hostile, is exactly what the test says.  Failures
 * are cmocka assertions; nothing is returned on error.
 */
#ifndef KEYGATE_JWTTEST_H
#define KEYGATE_JWTTEST_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "jwk.h"
#include "jwt.h"

/*
 * p as a provider of index i named name, with one issuer and one
 * audience, every algorithm and the default leeway and refresh (the
 * strings are not copied).
 */
void	 jwtt_provider(struct jwt_provider *, int, char *, char *, char *);

/* base64url of p[0..n) into out (NUL-terminated); its length. */
size_t	 jwtt_b64u(const void *, size_t, char *);

/* A JWK (JSON text, malloc'd) for pk's public key, with extra members. */
char	*jwtt_jwk(EVP_PKEY *, const char *, const char *);

/*
 * Parse the JWKS {"keys": [k1, k2, ...]} of the n JWK texts that follow
 * (freed here) into set: jwk_parse_set()'s answer, its reason in err.
 */
int	 jwtt_jwks(struct jwk_set *, char *, size_t, int, ...);

/*
 * The signature of in[0..inlen) by pk with alg into sig; its length.  ES*
 * signatures are raw (r || s) unless der is set; PS* signatures have a
 * salt of the digest's length unless der is set (then: the longest).
 */
size_t	 jwtt_sign(EVP_PKEY *, int, const char *, size_t, uint8_t *, int);

/*
 * A token (malloc'd) of the JSON texts hdr and pay signed by pk with alg
 * (pk NULL: the signature is sig[0..siglen) as given).
 */
char	*jwtt_tok_sig(EVP_PKEY *, int, const char *, const char *, int,
	    const uint8_t *, size_t);

/* A token (malloc'd) of hdr and pay, properly signed by pk with alg. */
char	*jwtt_tok(EVP_PKEY *, int, const char *, const char *);

/*
 * Fail unless msg quotes no 12 bytes of the token t[0..len) (windows with
 * a '.' excepted: they are the segments' joints, not token material).
 */
void	 jwtt_no_leak(const char *, const char *, size_t);

#endif /* KEYGATE_JWTTEST_H */
