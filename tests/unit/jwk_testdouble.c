/*
 * TEST DOUBLE, linked only into tests/unit/test_jwks: stands in for
 * jwk_parse_set() (src/jwk.c) and jwt_discovery_url() (src/jwt.c) until
 * the real ones are merged; then this file and its line in Makefile.am go.
 *
 * jwk_parse_set here keeps every member of "keys" that is an object with
 * a string "kid" and "kty" "RSA" or "EC" (the kid and type only, n filled
 * from the kid's bytes so that sets with other kids differ), counts the
 * others as skipped, and refuses a document with no "keys" array or no
 * key kept, as the real one does.
 */

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "jwk.h"
#include "jwt.h"

/* See above. */
int
jwk_parse_set(const char *doc, size_t len, struct jwk_set *set, char *err,
    size_t errlen)
{
	json_error_t	 jerr;
	json_t		*root, *keys, *k, *kid, *kty;
	struct jwk	*key;
	size_t		 i;

	memset(set, 0, sizeof(*set));
	if ((root = json_loadb(doc, len, JSON_REJECT_DUPLICATES,
	    &jerr)) == NULL) {
		snprintf(err, errlen, "not JSON (at byte %d)", jerr.position);
		return (-1);
	}
	if (!json_is_array(keys = json_object_get(root, "keys"))) {
		snprintf(err, errlen, "no \"keys\" array");
		json_decref(root);
		return (-1);
	}
	json_array_foreach(keys, i, k) {
		kid = json_object_get(k, "kid");
		kty = json_object_get(k, "kty");
		if (!json_is_string(kid) || !json_is_string(kty) ||
		    strlen(json_string_value(kid)) > JWK_KID_MAX ||
		    set->s_nkeys == JWK_MAX_KEYS ||
		    (strcmp(json_string_value(kty), "RSA") != 0 &&
		    strcmp(json_string_value(kty), "EC") != 0)) {
			set->s_skipped++;
			continue;
		}
		key = &set->s_keys[set->s_nkeys++];
		snprintf(key->k_kid, sizeof(key->k_kid), "%s",
		    json_string_value(kid));
		key->k_kty = strcmp(json_string_value(kty), "RSA") == 0 ?
		    JWK_KTY_RSA : JWK_KTY_EC;
		key->k_alg = -1;
		key->k_nlen = (uint16_t)strlen(key->k_kid);
		memcpy(key->k_n, key->k_kid, key->k_nlen);
	}
	json_decref(root);
	if (set->s_nkeys == 0) {
		snprintf(err, errlen, "no usable key");
		return (-1);
	}
	return ((int)set->s_nkeys);
}

/* The first issuer (no {tenantid} handling) + the well-known path. */
int
jwt_discovery_url(const struct jwt_provider *p, char *buf, size_t len)
{
	const char	*iss = p->jp_issuers[0];
	size_t		 n = strlen(iss);
	int		 w;

	w = snprintf(buf, len, "%.*s/.well-known/openid-configuration",
	    (int)(n > 0 && iss[n - 1] == '/' ? n - 1 : n), iss);
	return (w < 0 || (size_t)w >= len ? -1 : 0);
}
