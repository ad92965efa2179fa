/*
 * JSON Web Keys: algorithm names, JWKS parsing into the shared-memory
 * form, and OpenSSL keys from it.  See jwk.h.
 */

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "jwk.h"

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
