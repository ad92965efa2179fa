/*
 * libFuzzer target for JWKS parsing (src/jwk.c): the input is a JWKS
 * document, copied into an allocation of exactly its size (reading past
 * it is an ASan error), given to jwk_parse_set() and, when it keeps keys,
 * to jwk_keys_load() and jwk_keys_free().
 *
 * Checked: a refusal has a short, printable reason and leaves the set
 * empty; a success returns the number of keys kept, each of a kind
 * jwk.h allows (RSA modulus 2048 to 4096 bits without a leading zero, an
 * exponent of at most 8 bytes, P-256 or P-384, an alg that fits, a kid
 * within bounds), and every key kept is one OpenSSL builds: the load
 * gives as many keys as the parse kept.
 */

#include <sys/types.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jwk.h"
#include "fuzz.h"

/* Is k a key jwk.h allows in a set? */
static void
fuzz_check_key(const struct jwk *k)
{
	FUZZ_ASSERT(memchr(k->k_kid, '\0', sizeof(k->k_kid)) != NULL);
	FUZZ_ASSERT(k->k_alg == -1 || jwk_alg_fits(k->k_kty, k->k_crv,
	    k->k_alg));
	if (k->k_kty == JWK_KTY_RSA) {
		FUZZ_ASSERT(k->k_nlen >= JWK_RSA_MIN &&
		    k->k_nlen <= JWK_RSA_MAX && k->k_n[0] != 0);
		FUZZ_ASSERT(k->k_elen >= 1 && k->k_elen <= JWK_E_MAX &&
		    k->k_e[0] != 0 && (k->k_e[k->k_elen - 1] & 1));
	} else {
		FUZZ_ASSERT(k->k_kty == JWK_KTY_EC);
		FUZZ_ASSERT(k->k_crv == JWK_CRV_P256 ||
		    k->k_crv == JWK_CRV_P384);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct jwk_set	 set;
	struct jwk_keys		 keys;
	char			*doc, err[256];
	size_t			 i;
	int			 rv;

	if ((doc = malloc(size > 0 ? size : 1)) == NULL)
		abort();
	memcpy(doc, data, size);
	memset(err, 0, sizeof(err));
	rv = jwk_parse_set(doc, size, &set, err, sizeof(err));
	free(doc);
	if (rv == -1) {
		FUZZ_ASSERT(err[0] != '\0' && strlen(err) < 200);
		for (i = 0; err[i] != '\0'; i++)
			FUZZ_ASSERT(err[i] >= 0x20 && err[i] < 0x7f);
		FUZZ_ASSERT(set.s_nkeys == 0);
		return (0);
	}
	FUZZ_ASSERT(rv >= 1 && rv <= JWK_MAX_KEYS && (uint32_t)rv ==
	    set.s_nkeys);
	for (i = 0; i < set.s_nkeys; i++)
		fuzz_check_key(&set.s_keys[i]);
	FUZZ_ASSERT(jwk_keys_load(&keys, &set) == 0);
	FUZZ_ASSERT(keys.ks_nkeys == set.s_nkeys);
	for (i = 0; i < keys.ks_nkeys; i++) {
		FUZZ_ASSERT(keys.ks_keys[i].kk_pkey != NULL);
		FUZZ_ASSERT(strcmp(keys.ks_keys[i].kk_kid,
		    set.s_keys[i].k_kid) == 0);
	}
	jwk_keys_free(&keys);
	FUZZ_ASSERT(keys.ks_nkeys == 0);
	return (0);
}
