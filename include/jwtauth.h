/*
 * A worker's side of JWT authentication: the key set of every configured
 * provider, refreshed from its JWKS slot in the shared segment when the
 * slot's generation changes, and a cache of verified tokens.  Free of
 * libevent; time is passed in.
 *
 * jwtauth_check() decides one bearer token for a route that accepts a set
 * of providers:
 *	1. the token cache (below): a hit costs one SHA-256 and no
 *	   signature check;
 *	2. jwt_decode(): malformed, or invalid (alg, crit, duplicates);
 *	3. the providers: each one the route accepts whose issuer the
 *	   token names, in the configuration's order, until one accepts it
 *	   (two providers may share an issuer and differ in audience); a
 *	   token of a provider the route does not accept, or of none, is
 *	   invalid; when all refuse, the most telling refusal is answered
 *	   (expired, then held, then unavailable, then invalid);
 *	4. a provider's keys: none ever (JWKS_NONE) is 503
 *	   auth_unavailable;
 *	5. jwt_verify(); an unknown kid asks the master for an early
 *	   re-fetch (jwks_refetch()) and answers JWTAUTH_PENDING when one is
 *	   worth waiting for, so that the caller holds the request and asks
 *	   again (with final set once the wait is over: then an unknown kid
 *	   is invalid).
 *
 * The token cache.  Verified tokens are kept in a fixed table of
 * JWTAUTH_CACHE_SETS sets of JWTAUTH_CACHE_WAYS entries, indexed by the
 * token's SHA-256 digest; an entry holds the whole digest, the provider
 * and the key-set generation it was verified under, the time until which
 * it stays valid (exp + leeway), the providers listed before it that the
 * token's issuer also names and which of them refused it, and the
 * identity.  A lookup is a hit only when the digest is equal (a collision
 * of SHA-256 is not a concern), the provider is one the route accepts and
 * no provider the route accepts comes before it untried (else the full
 * check might pick that one), the provider's key generation is
 * still the one of the entry (new keys drop every entry of the provider,
 * lazily: a rotated-out key must not keep its tokens alive) and now is
 * before the entry's end.  So a hit answers exactly what a full check
 * would: the signature, iss, aud and nbf/iat (already passed, and time
 * only moves on) cannot change while the key set stays the same, and exp
 * is checked again.  (A provider before it that refused the token is not
 * asked again while the entry lives, even if its keys change: that could
 * only matter for two providers of one issuer whose key sets both verify
 * the token.)  Refused tokens are never cached.  The least recently
 * inserted way of a set is replaced.  Memory: the table is allocated
 * zeroed and only the pages of used entries become resident.
 */
#ifndef KEYGATE_JWTAUTH_H
#define KEYGATE_JWTAUTH_H

#include <stddef.h>
#include <stdint.h>

#include "jwt.h"

#define JWTAUTH_CACHE_SETS	1024
#define JWTAUTH_CACHE_WAYS	4

enum jwtauth_status {
	JWTAUTH_OK = 0,
	JWTAUTH_MALFORMED,	/* 401 malformed_credentials */
	JWTAUTH_INVALID,	/* 401 invalid_credentials */
	JWTAUTH_EXPIRED,	/* 401 expired_credentials */
	JWTAUTH_UNAVAILABLE,	/* 503 auth_unavailable */
	JWTAUTH_PENDING		/* hold the request, ask again */
};

struct config;
struct shm_header;
struct jwtauth;

/*
 * The state for conf's providers; shm may be NULL (tests: keys are then
 * given with jwtauth_set_keys()).  NULL on allocation failure.
 */
struct jwtauth	*jwtauth_new(const struct config *, struct shm_header *);
void		 jwtauth_free(struct jwtauth *);

/*
 * Give provider i the key set set as generation gen (tests, and the
 * fuzz targets, which have no shared segment).  0, or -1 when no key
 * could be loaded.
 */
int		 jwtauth_set_keys(struct jwtauth *, int, const struct jwk_set *,
		    uint64_t);

/*
 * Decide the token tok[0..len) for a route accepting the providers of
 * the mask (bit jp_index; all ones for plain "jwt") at now (unix s),
 * mono (CLOCK_MONOTONIC ms, for re-fetch requests).  final: a held
 * request's last try (an unknown kid is then invalid).  The status; id
 * filled on JWTAUTH_OK; a reason in why otherwise (never the token);
 * *slot the provider whose keys a JWTAUTH_PENDING waits for.
 */
int		 jwtauth_check(struct jwtauth *, uint32_t, const char *, size_t,
		    int64_t, int64_t, int, struct jwt_identity *, int *, char *,
		    size_t);

/*
 * Is a request held for provider i since asked (monotonic ms) done
 * waiting: the keys changed, or the re-fetch it asked for finished?
 */
int		 jwtauth_wait_over(struct jwtauth *, int, int64_t);

/* Provider i (a jwt_identity's ji_provider), or NULL. */
const struct jwt_provider *jwtauth_provider(const struct jwtauth *, int);

/* Statistics: cache hits and misses since the start. */
void		 jwtauth_stats(const struct jwtauth *, uint64_t *, uint64_t *);

#endif /* KEYGATE_JWTAUTH_H */
