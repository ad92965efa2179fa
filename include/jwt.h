/*
 * JWT bearer tokens (RFC 7519, JWS compact serialisation RFC 7515) from
 * OpenID Connect providers: the provider as configured ("jwt_provider"),
 * decoding a token, and verifying it against a provider and its keys.
 * Free of libevent; time is passed in (unix seconds).
 *
 * Decoding (jwt_decode) takes a token of at most JWT_MAX_TOKEN bytes, of
 * exactly three base64url segments (no padding, no other characters), a
 * header and a payload that are JSON objects with no duplicate member
 * names, a header "alg" naming one of the eight supported algorithms (not
 * "none", not HS*) and no "crit" member.  jku, x5u, jwk and x5c in the
 * header are never used: keys come only from the provider's JWKS.
 * ECDSA signatures are the raw R||S of RFC 7518 3.4 (64 or 96 bytes); a
 * DER signature has another length and is refused.
 *
 * Verifying (jwt_verify), in this order, each failure with its status and
 * a message naming the check (never the token or a claim's value, except
 * the names of claims and algorithms):
 *	alg not in the provider's algorithms		JWT_INVALID
 *	kid unknown (or no kid and no key of the type)	JWT_UNKNOWN_KID
 *	the key's alg differs, or the key's type does not fit alg
 *							JWT_INVALID
 *	signature					JWT_INVALID
 *	iss not one of the provider's issuers (a "{tenantid}" template is
 *	    filled with the token's tid: a GUID, one of tenants unless
 *	    tenants=any)				JWT_INVALID
 *	aud (string or array) meets none of audiences	JWT_INVALID
 *	exp missing or not a number			JWT_INVALID
 *	exp + leeway <= now				JWT_EXPIRED
 *	nbf or iat later than now + leeway		JWT_INVALID
 *	identity claim missing, empty, not a string	JWT_INVALID
 *	a scope, identity or mapped header value with control characters
 *	    or too long				JWT_INVALID
 */
#ifndef KEYGATE_JWT_H
#define KEYGATE_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "jwk.h"
#include "ratelimit.h"

#define JWT_MAX_TOKEN		8192	/* bytes of the compact form */
#define JWT_MAX_PROVIDERS	16
#define JWT_NAME_MAX		32	/* provider name: [A-Za-z0-9_-] */
#define JWT_MAX_ISSUERS		4
#define JWT_MAX_AUDIENCES	8
#define JWT_MAX_TENANTS		64
#define JWT_MAX_SCOPE_CLAIMS	4
#define JWT_MAX_HEADER_MAPS	8
#define JWT_DEFAULT_LEEWAY	60	/* s */
#define JWT_DEFAULT_REFRESH	3600	/* s */
#define JWT_TENANT_TEMPLATE	"{tenantid}"

#define JWT_IDENT_MAX		256	/* identity claim value */
#define JWT_ISS_MAX		256
#define JWT_SCOPES_MAX		1024	/* "a b c" */
#define JWT_HEADERS_MAX		1024	/* mapped headers, formatted */

/* headers=CLAIM:Header */
struct jwt_header_map {
	char		*hm_claim;
	char		*hm_header;	/* as written, e.g. "X-Tenant-Id" */
};

/* A "jwt_provider" directive. */
struct jwt_provider {
	char		*jp_name;
	int		 jp_line;
	int		 jp_index;	/* position in c_jwt */
	char		*jp_issuers[JWT_MAX_ISSUERS];	/* may hold {tenantid} */
	int		 jp_nissuers;
	char		*jp_audiences[JWT_MAX_AUDIENCES];
	int		 jp_naudiences;
	char		*jp_tenants[JWT_MAX_TENANTS];	/* lower-case GUIDs */
	int		 jp_ntenants;
	int		 jp_tenants_any;	/* tenants=any */
	uint32_t	 jp_algs;	/* 1 << JWK_ALG_xx; default all eight */
	int		 jp_leeway;	/* s */
	int		 jp_refresh;	/* s */
	char		*jp_identity;	/* claim name, default "sub" */
	char		*jp_scope_claims[JWT_MAX_SCOPE_CLAIMS];	/* scp roles */
	int		 jp_nscope_claims;
	struct jwt_header_map jp_headers[JWT_MAX_HEADER_MAPS];
	int		 jp_nheaders;
	char		*jp_ca;		/* CA bundle for https, or NULL */
	/* JWKS source: exactly one of a URL, a file, or discovery (both NULL). */
	char		*jp_jwks_url;	/* https://... */
	char		*jp_jwks_path;	/* absolute */
	/* rate=: per window, 0 inherits rate_limit (rate=off: jp_rate_off). */
	uint32_t	 jp_rate[RL_WINDOWS];
	int		 jp_rate_off;
};

enum jwt_status {
	JWT_OK = 0,
	JWT_MALFORMED,		/* 401 malformed_credentials */
	JWT_INVALID,		/* 401 invalid_credentials */
	JWT_EXPIRED,		/* 401 expired_credentials */
	JWT_UNKNOWN_KID		/* re-fetch the keys, then JWT_INVALID */
};

/* A decoded token, not yet verified.  Owns the parsed JSON. */
struct jwt_token {
	void		*jt_header;	/* json_t object */
	void		*jt_claims;	/* json_t object */
	int		 jt_alg;	/* enum jwk_alg */
	const char	*jt_kid;	/* in jt_header, or NULL */
	const char	*jt_iss;	/* in jt_claims, or NULL */
	const char	*jt_signed;	/* "header.payload", in the input */
	size_t		 jt_signedlen;
	uint8_t		 jt_sig[JWK_RSA_MAX];
	size_t		 jt_siglen;
};

/* What a verified token says about its bearer. */
struct jwt_identity {
	int		 ji_provider;	/* jp_index */
	int64_t		 ji_exp;	/* unix s */
	char		 ji_subject[JWT_IDENT_MAX + 1];	/* identity claim */
	char		 ji_issuer[JWT_ISS_MAX + 1];	/* the token's iss */
	char		 ji_scopes[JWT_SCOPES_MAX + 1];	/* "a b c" */
	/* "Header: value\r\n"... from headers=, ready for the upstream. */
	char		 ji_headers[JWT_HEADERS_MAX + 1];
	size_t		 ji_headerslen;
	/* Rate-limit subject: SHA-256(issuer "\0" subject), first 16 bytes. */
	uint8_t		 ji_ratekey[16];
};

/*
 * Decode tok[0..len) into t; see above.  JWT_OK, JWT_MALFORMED (size,
 * segments, base64url, not JSON objects) or JWT_INVALID (duplicate
 * members, alg, crit), with a reason in why.  On JWT_OK the caller frees
 * t with jwt_token_free(); on failure nothing is left to free.
 */
int		 jwt_decode(const char *, size_t, struct jwt_token *, char *,
		    size_t);
void		 jwt_token_free(struct jwt_token *);

/*
 * Does provider p issue t (its iss equals one of p's issuers, a tenant
 * template filled from t's tid)?  Picks the provider for auth=jwt.
 */
int		 jwt_provider_issues(const struct jwt_provider *,
		    const struct jwt_token *);

/*
 * Verify t for p with keys at now (unix s); see above.  On JWT_OK id is
 * filled.  The status, with a reason in why otherwise.
 */
int		 jwt_verify(const struct jwt_provider *, const struct jwk_keys *,
		    const struct jwt_token *, int64_t, struct jwt_identity *,
		    char *, size_t);

/*
 * The discovery URL of p: its first issuer with {tenantid} replaced by
 * the only tenant of tenants= or else "common", then
 * "/.well-known/openid-configuration" (one '/' between).  -1 if it does
 * not fit.
 */
int		 jwt_discovery_url(const struct jwt_provider *, char *, size_t);

#endif /* KEYGATE_JWT_H */
