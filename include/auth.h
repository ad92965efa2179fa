/*
 * Authentication on the request path: which credential a request carries
 * for the schemes its route lists, and whether the key store accepts it.
 *
 * A route's auth= list is walked in order and the first scheme whose
 * credential is present decides (design: "the first that is present
 * wins"):
 *	api-key		X-API-KEY (header name configurable), or
 *			Authorization: Basic base64(":" secret)
 *	app-key		X-APP-ID and X-API-KEY, or
 *			Authorization: Basic base64(app_id ":" secret)
 *	anonymous	always present: the request goes through unidentified
 *	deny		always present: 403 forbidden
 *	jwt		Authorization: Bearer <JWT> from any jwt_provider;
 *	jwt:NAME	the same, from provider NAME only (see jwtauth.h)
 * When no scheme's credential is present: 401 missing_credentials, with
 * WWW-Authenticate naming the schemes.
 *
 * Checks, in this order, each with its refusal code: malformed credential
 * (empty, whitespace or control characters inside, a repeated header, bad
 * Basic syntax or base64), unknown digest or a previous secret past its
 * grace period (invalid_credentials), app mismatch for app-key
 * (invalid_credentials), disabled (disabled_key), past expires_at
 * (expired_credentials), missing route scope (403 insufficient_scope naming
 * the first missing scope), then the rate limit (429 rate_limited naming
 * the window).  Secrets are never copied into messages.
 *
 * A bearer token's checks are jwtauth_check()'s (jwt.h lists them), then
 * the route's scopes against the token's scopes, then the rate limit of
 * its identity; JWT refusals carry an RFC 6750 challenge
 * (Bearer error="invalid_token" or "insufficient_scope").  A token whose
 * kid is unknown may be held: auth_check() answers AUTH_PENDING and the
 * caller asks again later (see struct auth_jwt).
 *
 * Rate limits (ratelimit.h) apply to key requests, per key slot, to JWT
 * requests, per identity (issuer and identity claim), and to anonymous
 * requests, per client address.  A key's limits, per window:
 * the key's own rate_limit if set, else the route's rate= if set, else
 * the configured rate_limit; a route with rate=off is not limited.  An
 * anonymous request's: the route's rate= if set, else
 * anonymous_rate_limit.  A JWT identity's: its provider's rate= if set,
 * else the route's rate= if set, else rate_limit; a provider with
 * rate=off is not limited.  A window limited nowhere is not enforced.
 */
#ifndef KEYGATE_AUTH_H
#define KEYGATE_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "keystore.h"
#include "lease.h"
#include "ratelimit.h"
#include "route.h"

#include "jwt.h"

struct http_msg;
struct jwtauth;

#define AUTH_MSGLEN	192
#define AUTH_PENDING	1	/* ar_status: hold the request, ask again */

/* The rate limiter as one request sees it; see auth_check(). */
struct auth_rate {
	const uint32_t		*ra_keys;	/* rate_limit [RL_WINDOWS], 0 = off */
	const uint32_t		*ra_anonymous;	/* anonymous_rate_limit, same */
	struct rl_iptable	*ra_ips;	/* NULL: anonymous not limited */
	struct rl_iptable	*ra_jwts;	/* JWT identities; NULL: not */
						/* limited */
	uint64_t		*ra_refused;	/* [3][RL_WINDOWS] refusals by */
						/* window: keys, addresses, JWT */
						/* identities; or NULL */
	const void		*ra_ip;		/* client address, 4 or 16 bytes */
	size_t			 ra_iplen;
	int64_t			 ra_now;	/* ms, CLOCK_MONOTONIC, read now */
	/*
	 * Cluster limits (lease.h): the lease table, or NULL (not a
	 * cluster); the pipe demands go to; whether the request already
	 * waited for a unit, and whether its wait is over (the fallback
	 * decides then); decisions counted by STATS_LEASE_*, or NULL.
	 */
	struct ls_table		*ra_leases;
	int			 ra_leasefd;
	int			 ra_waited;
	int			 ra_final;
	int64_t			 ra_held_ms;	/* waited so far (ms) */
	int			 ra_no_wait;	/* decide now: cannot be held */
	uint64_t		*ra_lease_stats;
};

/*
 * JWT authentication as one request sees it; NULL: no provider (a bearer
 * token is then not a credential of any scheme).
 */
struct auth_jwt {
	struct jwtauth	*aj_state;	/* the worker's keys and token cache */
	int64_t		 aj_mono;	/* ms, CLOCK_MONOTONIC, read now */
	int		 aj_final;	/* a held request's last try */
};

struct auth_result {
	/*
	 * Outcome: status 0 = allowed; else 401, 403, 429 or 503; or
	 * AUTH_PENDING: hold the request until jwtauth_wait_over() for
	 * provider ar_wait, then ask again; with ar_wait -1 (from
	 * auth_limit()), until a unit of the cluster's quota came, at most
	 * LS_WAIT_MS (then ask again with ra_final set).
	 */
	int		 ar_status;
	const char	*ar_code;	/* refusal code, NULL when allowed */
	char		 ar_message[AUTH_MSGLEN];
	const char	*ar_challenge;	/* WWW-Authenticate value for 401, or NULL */

	/* Identity: set when allowed (ar_scheme) or when a key was found. */
	enum route_auth	 ar_scheme;	/* scheme that decided */
	int		 ar_found;	/* ar_key/ar_slot hold a key */
	uint32_t	 ar_slot;
	struct ks_key	 ar_key;
	int		 ar_jwt_found;	/* ar_jwt holds a verified token's */
	struct jwt_identity ar_jwt;	/* identity */
	int		 ar_wait;	/* AUTH_PENDING: the provider */

	/* Rate limit: set when the request met a limit (admitted or not). */
	int		 ar_limited;
	struct rl_limits ar_limits;
	struct rl_result ar_rate;
};

#define AUTH_RATE_HEADERS_MAX	256	/* longest auth_rate_headers() */

/*
 * Authenticate request m on route r at time now (ms, wall clock): which
 * scheme decides, whether its credential is good, the route's scopes.
 * key_header is the lower-case name of the API key header ("x-api-key").
 * ks may be NULL when no key store exists (then every key is invalid).
 * jwt may be NULL (no JWT provider).  A request refused here has its use
 * counted (refused) on the key's slot when a key was found; an allowed
 * one goes on to auth_limit().  Returns ar_status.
 */
int	 auth_check(const struct route *, const struct http_msg *,
	    struct keystore *, const char *, int64_t, const struct auth_jwt *,
	    struct auth_result *);

/*
 * The rate-limit step, for a request auth_check() allowed (for a refused
 * one it only returns ar_status): rate may be NULL (nothing is limited);
 * else the request is admitted or refused (429 rate_limited naming the
 * window) by the limiter of its subject (see above), and refusals are
 * counted in ra_refused.  Then the use is counted on the key's slot
 * (allowed or refused, a 429 included) when a key was found; now is the
 * wall clock in ms, as for auth_check().  Returns ar_status.
 */
int	 auth_limit(const struct route *, const struct auth_rate *,
	    struct keystore *, const struct auth_jwt *, int64_t,
	    struct auth_result *);

/*
 * The rate-limit response headers of ar, CRLF-ended, into buf:
 * RateLimit-Policy (every enforced window), RateLimit-Limit,
 * RateLimit-Remaining and RateLimit-Reset (the window nearest exhaustion),
 * and Retry-After on a 429.  Returns the length; 0 when no limit applied
 * or buf is smaller than AUTH_RATE_HEADERS_MAX.
 */
size_t	 auth_rate_headers(const struct auth_result *, char *, size_t);

/*
 * Check a bare secret (admin POST /v1/verify): fills ar as auth_check
 * would for an api-key route without scopes, without counting a use.
 * app may be NULL (any app) or the app id the key must belong to.
 */
int	 auth_check_secret(const struct keystore *, const char *, size_t,
	    const char *, int64_t, struct auth_result *);

/*
 * Check a bare JWT (admin POST /v1/verify) at now (ms, wall clock) against
 * every provider: fills ar as auth_check would for a route "auth=jwt"
 * without scopes and limits.  An unknown kid asks for a re-fetch but is
 * not waited for (the answer says so).
 */
int	 auth_check_token(const struct auth_jwt *, const char *, size_t,
	    int64_t, struct auth_result *);

/*
 * The request an nginx auth_request sub-request m stands for: the method
 * of X-Original-Method (GET when absent) into mbit, and the path of
 * X-Original-URI (up to its '?'; it must start with '/') into
 * path/pathlen, pointing into m's header section.  0, or -1 with a reason
 * for a 400 in cause (either header missing where needed, invalid, or
 * repeated).
 */
int	 auth_verify_target(const struct http_msg *, int *, const char **,
	    size_t *, const char **);

/*
 * Is every scope of r in the space-separated list scopes?  NULL when yes,
 * else the first missing scope.
 */
const char *auth_missing_scope(const struct route *, const char *);

/*
 * The identity headers for the upstream, written into buf as
 * "X-Consumer-Id: ...\r\nX-Key-Id: ...\r\n..." (X-Consumer-Id, X-Key-Id,
 * X-App-Id when the key has an app, X-Scopes when it has scopes,
 * X-Auth-Scheme always; for a JWT: X-Consumer-Id the identity claim,
 * X-Scopes, the provider's headers= mappings, X-Auth-Scheme: jwt).  Returns the length, or 0 if buf is too small.
 */
size_t	 auth_identity_headers(const struct auth_result *, char *, size_t);

#endif /* KEYGATE_AUTH_H */
