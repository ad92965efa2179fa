/*
 * Authentication on the request path: finding the credential a request
 * carries for its route's schemes, checking its syntax, and looking its
 * secret up in the key store.  See auth.h.
 *
 * Nothing here copies a secret anywhere but into a local buffer that is
 * wiped before returning: refusal messages only say what is wrong.
 */

#include <sys/types.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth.h"
#include "http.h"
#include "jwtauth.h"
#include "keystore.h"
#include "lease.h"
#include "route.h"
#include "stats.h"
#include "secret.h"
#include "util.h"

#define AUTH_SECRET_MAX		SECRET_IMPORT_MAX /* longer ones are malformed */
/* Decoded Basic credentials: an app id (64), ":" and the longest key. */
#define AUTH_BASIC_MAX		1024
/* 1368 characters: 1026 bytes unpadded, so the decoder checks the size too. */
#define AUTH_BASIC_B64MAX	(4 * ((AUTH_BASIC_MAX + 2) / 3))
#define AUTH_APP_HEADER		"x-app-id"
#define AUTH_REALM		"keygate"

/* The credentials a request carries, gathered in one pass. */
struct auth_creds {
	const char	*ac_key;	/* first key header value */
	size_t		 ac_keylen;
	int		 ac_nkey;	/* key headers */
	const char	*ac_app;	/* first X-APP-ID value */
	size_t		 ac_applen;
	int		 ac_napp;
	int		 ac_nauthz;	/* Authorization headers */
	int		 ac_basic;	/* one of them is Basic */
	int		 ac_bearer;	/* one of them is Bearer */
	const char	*ac_token;	/* the first Bearer token */
	size_t		 ac_tokenlen;
	const char	*ac_bcause;	/* why Basic is malformed, or NULL */
	const char	*ac_user;	/* decoded Basic, in ac_buf */
	size_t		 ac_userlen;
	const char	*ac_pass;
	size_t		 ac_passlen;
	uint8_t		 ac_buf[AUTH_BASIC_MAX];
};

/* The credential the deciding scheme uses: a secret and maybe an app id. */
struct auth_cred {
	const char	*c_secret;
	size_t		 c_secretlen;
	const char	*c_app;		/* NULL: any app (api-key) */
	size_t		 c_applen;
};

static int	 auth_refuse(struct auth_result *, int, const char *,
		    const char *, ...) __attribute__((format(printf, 4, 5)));

/* Value 0..63 of base64 character c, -1 if c is not one. */
static int
auth_b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return (c - 'A');
	if (c >= 'a' && c <= 'z')
		return (c - 'a' + 26);
	if (c >= '0' && c <= '9')
		return (c - '0' + 52);
	if (c == '+')
		return (62);
	if (c == '/')
		return (63);
	return (-1);
}

/*
 * Strict base64 (RFC 4648 section 4) of s[0..n) into out[0..outlen).
 * Accepted are exactly the strings an encoder
 * produces: length a multiple of 4, only the 64 characters, '=' only as
 * the last one or two, and the bits the padding leaves over all zero.
 * Each character adds 6 bits to acc; every time 8 or more are pending the
 * top 8 become a byte, so at most 7 bits are ever left in acc, and what
 * is left at the end must be the zero filler.  EVP_DecodeBlock is not
 * used because it accepts some of what this refuses and pads the output.
 * The output length, n / 4 * 3 - pad, is known before a byte is written:
 * when it exceeds outlen nothing is decoded, and since o counts the bytes
 * written and ends at exactly that length, no store goes past outlen.
 * Returns the decoded length, -1 if s is not base64, or -2 if its
 * decoding would not fit.
 */
static ssize_t
auth_b64decode(const char *s, size_t n, uint8_t *out, size_t outlen)
{
	uint32_t	 acc = 0;
	size_t		 i, o = 0, pad = 0;
	int		 v, bits = 0;

	if (n == 0 || n % 4 != 0)
		return (-1);
	if (s[n - 1] == '=') {
		pad = 1;
		if (s[n - 2] == '=')
			pad = 2;
	}
	if (n / 4 * 3 - pad > outlen)
		return (-2);
	for (i = 0; i < n - pad; i++) {
		if ((v = auth_b64val((unsigned char)s[i])) == -1)
			return (-1);
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
			acc &= (1U << bits) - 1;
		}
	}
	if (acc != 0)
		return (-1);
	return ((ssize_t)o);
}

/*
 * If the Authorization value v[0..n) uses scheme name (case-insensitive,
 * then end or blanks), point rest past the blanks and return 1.
 */
static int
auth_scheme_is(const char *v, size_t n, const char *name, const char **rest,
    size_t *restlen)
{
	size_t	 len = strlen(name);

	if (n < len || !http_strcaseeq(v, len, name))
		return (0);
	if (n > len && v[len] != ' ' && v[len] != '\t')
		return (0);
	while (len < n && (v[len] == ' ' || v[len] == '\t'))
		len++;
	*rest = v + len;
	*restlen = n - len;
	return (1);
}

/* Decode the Basic token t[0..n) into ac (user, password or ac_bcause). */
static void
auth_basic(struct auth_creds *ac, const char *t, size_t n)
{
	const uint8_t	*colon;
	ssize_t		 len;

	if (n == 0) {
		ac->ac_bcause = "the Basic credentials are empty";
		return;
	}
	len = n > AUTH_BASIC_B64MAX ? -2 :	/* not even scanned */
	    auth_b64decode(t, n, ac->ac_buf, sizeof(ac->ac_buf));
	if (len == -2) {
		ac->ac_bcause = "the Basic credentials are too long";
		return;
	}
	if (len == -1) {
		ac->ac_bcause = "the Basic credentials are not valid base64";
		return;
	}
	if ((colon = memchr(ac->ac_buf, ':', (size_t)len)) == NULL) {
		ac->ac_bcause = "the Basic credentials have no ':'";
		return;
	}
	ac->ac_user = (const char *)ac->ac_buf;
	ac->ac_userlen = colon - ac->ac_buf;
	ac->ac_pass = (const char *)colon + 1;
	ac->ac_passlen = (size_t)len - ac->ac_userlen - 1;
}

/* Classify one Authorization header value into ac. */
static void
auth_authorization(struct auth_creds *ac, const char *v, size_t n)
{
	const char	*rest;
	size_t		 restlen;

	ac->ac_nauthz++;
	if (auth_scheme_is(v, n, "Basic", &rest, &restlen)) {
		if (!ac->ac_basic) {
			ac->ac_basic = 1;
			auth_basic(ac, rest, restlen);
		}
	} else if (auth_scheme_is(v, n, "Bearer", &rest, &restlen)) {
		if (!ac->ac_bearer) {
			ac->ac_bearer = 1;
			ac->ac_token = rest;
			ac->ac_tokenlen = restlen;
		}
	}
}

/* Gather the key header, X-APP-ID and Authorization of m into ac. */
static void
auth_gather(struct auth_creds *ac, const struct http_msg *m,
    const char *key_header)
{
	const struct http_header	*h;
	size_t				 i;

	memset(ac, 0, sizeof(*ac));
	for (i = 0; i < m->hm_nheaders; i++) {
		h = &m->hm_headers[i];
		if (http_strcaseeq(h->h_name, h->h_namelen, key_header)) {
			if (ac->ac_nkey++ == 0) {
				ac->ac_key = h->h_value;
				ac->ac_keylen = h->h_valuelen;
			}
		} else if (http_strcaseeq(h->h_name, h->h_namelen,
		    AUTH_APP_HEADER)) {
			if (ac->ac_napp++ == 0) {
				ac->ac_app = h->h_value;
				ac->ac_applen = h->h_valuelen;
			}
		} else if (http_strcaseeq(h->h_name, h->h_namelen,
		    "authorization"))
			auth_authorization(ac, h->h_value, h->h_valuelen);
	}
}

/* Does route r list scheme a? */
static int
auth_route_has(const struct route *r, enum route_auth a)
{
	int	 i;

	for (i = 0; i < r->r_nauth; i++)
		if (r->r_auth[i] == a)
			return (1);
	return (0);
}

/*
 * Is the credential of scheme a present in ac?  Basic serves api-key when
 * its user name is empty, app-key when it is not; when the route lists
 * only api-key, any Basic is an api-key credential (and a non-empty user
 * is then refused as malformed).  Basic that does not decode counts for
 * both, so that it is refused rather than ignored.  The key headers, when
 * present, take precedence over Basic (see auth_credential).
 */
static int
auth_present(const struct route *r, enum route_auth a,
    const struct auth_creds *ac)
{
	int	 user = ac->ac_basic && ac->ac_bcause == NULL &&
		    ac->ac_userlen > 0;

	switch (a) {
	case ROUTE_AUTH_ANONYMOUS:
	case ROUTE_AUTH_DENY:
		return (1);
	case ROUTE_AUTH_API_KEY:
		if (ac->ac_nkey > 0)
			return (1);
		return (ac->ac_basic &&
		    !(user && auth_route_has(r, ROUTE_AUTH_APP_KEY)));
	case ROUTE_AUTH_APP_KEY:
		if (ac->ac_nkey > 0 && ac->ac_napp > 0)
			return (1);
		return (ac->ac_basic && (ac->ac_bcause != NULL || user));
	case ROUTE_AUTH_JWT:
		return (ac->ac_bearer);
	default:
		return (0);
	}
}

/* Fill ar with a refusal; returns status. */
static int
auth_refuse(struct auth_result *ar, int status, const char *code,
    const char *fmt, ...)
{
	va_list	 ap;

	ar->ar_status = status;
	ar->ar_code = code;
	va_start(ap, fmt);
	vsnprintf(ar->ar_message, sizeof(ar->ar_message), fmt, ap);
	va_end(ap);
	return (status);
}

/* Upper-case copy of the lower-case header name h into buf. */
static const char *
auth_header_display(const char *h, char *buf, size_t len)
{
	size_t	 i;

	for (i = 0; h[i] != '\0' && i + 1 < len; i++)
		buf[i] = (h[i] >= 'a' && h[i] <= 'z') ? h[i] - 'a' + 'A' : h[i];
	buf[i] = '\0';
	return (buf);
}

/* Does s[0..n) hold a byte <= 0x20 or 0x7f (whitespace, control)? */
static int
auth_has_ctl(const char *s, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] == 0x7f)
			return (1);
	return (0);
}

/* Syntax of a secret and an app id (if any): 0, or a 401 in ar. */
static int
auth_syntax(const struct auth_cred *c, struct auth_result *ar)
{
	const char	*m = "malformed_credentials";

	if (c->c_secretlen == 0)
		return (auth_refuse(ar, 401, m, "the API key is empty"));
	if (c->c_secretlen > AUTH_SECRET_MAX)
		return (auth_refuse(ar, 401, m, "the API key is too long"));
	if (auth_has_ctl(c->c_secret, c->c_secretlen))
		return (auth_refuse(ar, 401, m, "the API key contains "
		    "whitespace or a control character"));
	if (c->c_app == NULL)
		return (0);
	if (c->c_applen == 0)
		return (auth_refuse(ar, 401, m, "the app id is empty"));
	if (auth_has_ctl(c->c_app, c->c_applen))
		return (auth_refuse(ar, 401, m, "the app id contains "
		    "whitespace or a control character"));
	return (0);
}

/*
 * The credential of scheme a (api-key or app-key, present in ac) into c:
 * from the key header (and X-APP-ID), which win over Basic when both are
 * sent, so that an Authorization header meant for the upstream can ride
 * along; else from Basic.  A repeated header, undecodable Basic, or (api-
 * key) a Basic user name are malformed.  Then the syntax checks.  0, or
 * a 401 in ar.
 */
static int
auth_credential(const struct auth_creds *ac, enum route_auth a,
    const char *key_header, struct auth_cred *c, struct auth_result *ar)
{
	const char	*m = "malformed_credentials";
	char		 name[80];

	memset(c, 0, sizeof(*c));
	if (ac->ac_nkey > 0 && (a == ROUTE_AUTH_API_KEY || ac->ac_napp > 0)) {
		if (ac->ac_nkey > 1)
			return (auth_refuse(ar, 401, m, "%s appears more than "
			    "once", auth_header_display(key_header, name,
			    sizeof(name))));
		if (a == ROUTE_AUTH_APP_KEY && ac->ac_napp > 1)
			return (auth_refuse(ar, 401, m, "X-APP-ID appears "
			    "more than once"));
		c->c_secret = ac->ac_key;
		c->c_secretlen = ac->ac_keylen;
		if (a == ROUTE_AUTH_APP_KEY) {
			c->c_app = ac->ac_app;
			c->c_applen = ac->ac_applen;
		}
		return (auth_syntax(c, ar));
	}
	if (ac->ac_nauthz > 1)
		return (auth_refuse(ar, 401, m, "the Authorization header "
		    "appears more than once"));
	if (ac->ac_bcause != NULL)
		return (auth_refuse(ar, 401, m, "%s", ac->ac_bcause));
	if (a == ROUTE_AUTH_API_KEY && ac->ac_userlen > 0)
		return (auth_refuse(ar, 401, m, "the Basic user name must be "
		    "empty for an API key"));
	c->c_secret = ac->ac_pass;
	c->c_secretlen = ac->ac_passlen;
	if (a == ROUTE_AUTH_APP_KEY) {
		c->c_app = ac->ac_user;
		c->c_applen = ac->ac_userlen;
	}
	return (auth_syntax(c, ar));
}

/*
 * Look c up and check the key: unknown, previous secret past its grace
 * period, other app (invalid_credentials), disabled, expired.  Sets
 * ar_found/ar_slot/ar_key when a record was found.  0 or the status.
 */
static int
auth_lookup(const struct keystore *ks, const struct auth_cred *c,
    int64_t now, struct auth_result *ar)
{
	struct ks_key	*k = &ar->ar_key;
	uint8_t		 d[KS_DIGEST_LEN];
	int		 old = 0, rv;

	if (ks == NULL)
		return (auth_refuse(ar, 401, "invalid_credentials",
		    "the API key is not valid"));
	secret_digest(c->c_secret, c->c_secretlen, d);
	rv = keystore_find_digest(ks, d, k, &ar->ar_slot, &old);
	OPENSSL_cleanse(d, sizeof(d));
	if (rv == KS_BUSY)
		return (auth_refuse(ar, 503, "key_store_busy",
		    "the key store is being repaired; retry"));
	if (rv != KS_OK)
		return (auth_refuse(ar, 401, "invalid_credentials",
		    "the API key is not valid"));
	ar->ar_found = 1;
	k->k_app[sizeof(k->k_app) - 1] = '\0';
	k->k_scopes[sizeof(k->k_scopes) - 1] = '\0';
	if (old && now >= k->k_grace_until)
		return (auth_refuse(ar, 401, "invalid_credentials",
		    "the API key is not valid"));
	if (c->c_app != NULL && (strlen(k->k_app) != c->c_applen ||
	    memcmp(k->k_app, c->c_app, c->c_applen) != 0))
		return (auth_refuse(ar, 401, "invalid_credentials",
		    "the API key does not belong to this app"));
	if (k->k_flags & KS_F_DISABLED)
		return (auth_refuse(ar, 401, "disabled_key",
		    "this API key is disabled"));
	if (k->k_expires != 0 && now >= k->k_expires)
		return (auth_refuse(ar, 401, "expired_credentials",
		    "this API key has expired"));
	return (0);
}

/* The providers route r accepts for a bearer token: bit jp_index each. */
static uint32_t
auth_jwt_mask(const struct route *r)
{
	uint32_t	 mask = 0;
	int		 i;

	for (i = 0; i < r->r_nauth; i++) {
		if (r->r_auth[i] != ROUTE_AUTH_JWT)
			continue;
		if (r->r_jwt[i] < 0 || r->r_jwt[i] >= 32)
			return (UINT32_MAX);
		mask |= 1U << r->r_jwt[i];
	}
	return (mask);
}

/*
 * Decide the bearer token tok[0..len) for the providers of mask with
 * jwtauth_check(): 0 with ar_jwt filled, AUTH_PENDING with ar_wait, or
 * the refusal in ar.
 */
static int
auth_jwt(const struct auth_jwt *jwt, uint32_t mask, const char *tok,
    size_t len, int64_t now, struct auth_result *ar)
{
	char	 why[AUTH_MSGLEN];
	int	 st, slot;

	if (jwt == NULL || jwt->aj_state == NULL)
		return (auth_refuse(ar, 503, "auth_unavailable",
		    "no JWT provider is configured"));
	if (len == 0)
		return (auth_refuse(ar, 401, "malformed_credentials",
		    "the bearer token is empty"));
	why[0] = '\0';
	st = jwtauth_check(jwt->aj_state, mask, tok, len, now / 1000,
	    jwt->aj_mono, jwt->aj_final, &ar->ar_jwt, &slot, why,
	    sizeof(why));
	switch (st) {
	case JWTAUTH_OK:
		ar->ar_jwt_found = 1;
		return (0);
	case JWTAUTH_PENDING:
		ar->ar_wait = slot;
		ar->ar_status = AUTH_PENDING;
		return (AUTH_PENDING);
	case JWTAUTH_MALFORMED:
		return (auth_refuse(ar, 401, "malformed_credentials", "%s",
		    why));
	case JWTAUTH_EXPIRED:
		return (auth_refuse(ar, 401, "expired_credentials", "%s",
		    why));
	case JWTAUTH_UNAVAILABLE:
		return (auth_refuse(ar, 503, "auth_unavailable", "%s", why));
	default:
		return (auth_refuse(ar, 401, "invalid_credentials", "%s",
		    why));
	}
}

/*
 * The bearer credential of ac for route r: one Authorization header,
 * then auth_jwt().  0, AUTH_PENDING, or the refusal.
 */
static int
auth_bearer(const struct route *r, const struct auth_creds *ac,
    const struct auth_jwt *jwt, int64_t now, struct auth_result *ar)
{
	if (ac->ac_nauthz > 1)
		return (auth_refuse(ar, 401, "malformed_credentials", "the "
		    "Authorization header appears more than once"));
	return (auth_jwt(jwt, auth_jwt_mask(r), ac->ac_token, ac->ac_tokenlen,
	    now, ar));
}

/* Append s to the challenge being built in buf (", " between). */
static void
auth_challenge_add(char *buf, size_t len, const char *s)
{
	size_t	 off = strlen(buf);

	snprintf(buf + off, len - off, "%s%s", off > 0 ? ", " : "", s);
}

/*
 * WWW-Authenticate for route r, naming its key schemes in route order,
 * then Basic (which carries either) and Bearer.  Built in a static buffer:
 * a worker is single-threaded and the caller uses the value before the
 * next request is checked.  Header names are at most 64 characters
 * (configuration), so the buffer always holds the whole value.
 */
static const char *
auth_challenge(const struct route *r, const char *key_header)
{
	static char	 buf[512];
	char		 part[160], name[80];
	int		 i, keys = 0;

	buf[0] = '\0';
	auth_header_display(key_header, name, sizeof(name));
	for (i = 0; i < r->r_nauth; i++) {
		if (r->r_auth[i] == ROUTE_AUTH_API_KEY)
			snprintf(part, sizeof(part), "ApiKey header=\"%s\"",
			    name);
		else if (r->r_auth[i] == ROUTE_AUTH_APP_KEY)
			snprintf(part, sizeof(part), "AppKey header=\"%s\", "
			    "app_header=\"X-APP-ID\"", name);
		else
			continue;
		auth_challenge_add(buf, sizeof(buf), part);
		keys = 1;
	}
	if (keys)
		auth_challenge_add(buf, sizeof(buf),
		    "Basic realm=\"" AUTH_REALM "\"");
	if (auth_route_has(r, ROUTE_AUTH_JWT))
		auth_challenge_add(buf, sizeof(buf),
		    "Bearer realm=\"" AUTH_REALM "\"");
	return (buf[0] != '\0' ? buf : NULL);
}

/*
 * RFC 6750 section 3 challenge for a refused bearer token: error=
 * "insufficient_scope" with the scope for a 403, else "invalid_token".
 * The description is ar's message, whose quotes and backslashes are
 * replaced (it never holds the token).  Static buffer, as
 * auth_challenge().
 */
static const char *
auth_bearer_challenge(const struct auth_result *ar, const char *scope)
{
	static char	 buf[512];
	char		 desc[AUTH_MSGLEN];
	size_t		 i;

	for (i = 0; ar->ar_message[i] != '\0' && i + 1 < sizeof(desc); i++)
		desc[i] = ar->ar_message[i] == '"' ||
		    ar->ar_message[i] == '\\' ? '\'' : ar->ar_message[i];
	desc[i] = '\0';
	if (ar->ar_status == 403)
		snprintf(buf, sizeof(buf), "Bearer realm=\"" AUTH_REALM "\", "
		    "error=\"insufficient_scope\", scope=\"%s\", "
		    "error_description=\"%s\"", scope, desc);
	else
		snprintf(buf, sizeof(buf), "Bearer realm=\"" AUTH_REALM "\", "
		    "error=\"invalid_token\", error_description=\"%s\"", desc);
	return (buf);
}

/* 401 missing_credentials naming what route r would accept. */
static int
auth_missing(const struct route *r, struct auth_result *ar)
{
	static const struct {
		enum route_auth	 a;
		const char	*what;
	} t[] = {
		{ ROUTE_AUTH_API_KEY, "an API key" },
		{ ROUTE_AUTH_APP_KEY, "an app id and API key" },
		{ ROUTE_AUTH_JWT, "a bearer token" }
	};
	size_t	 i, off, n = 0;

	off = (size_t)snprintf(ar->ar_message, sizeof(ar->ar_message),
	    "this route needs ");
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (!auth_route_has(r, t[i].a))
			continue;
		off += (size_t)snprintf(ar->ar_message + off,
		    sizeof(ar->ar_message) - off, "%s%s", n++ > 0 ? ", or " :
		    "", t[i].what);
	}
	ar->ar_status = 401;
	ar->ar_code = "missing_credentials";
	return (401);
}

/* Subjects of rate limits, the first index of ra_refused. */
#define AUTH_RL_KEY	0
#define AUTH_RL_ADDRESS	1
#define AUTH_RL_JWT	2

/*
 * The limits that apply to ar's subject on route r into lim (see auth.h
 * for whose win); 0 when the subject is not limited at all.
 */
static int
auth_limits(const struct route *r, const struct auth_rate *ra,
    const struct auth_jwt *jwt, const struct auth_result *ar, int kind,
    uint32_t lim[RL_WINDOWS])
{
	const struct jwt_provider	*p;
	const uint32_t			*own = NULL, *base = ra->ra_keys;
	uint32_t			 on = 0;
	int				 w;

	if (kind == AUTH_RL_KEY)
		own = ar->ar_key.k_rate;
	else if (kind == AUTH_RL_ADDRESS)
		base = ra->ra_anonymous;
	else {
		p = jwtauth_provider(jwt->aj_state, ar->ar_jwt.ji_provider);
		if (p == NULL || p->jp_rate_off)
			return (0);
		own = p->jp_rate;
	}
	for (w = 0; w < RL_WINDOWS; w++) {
		lim[w] = own != NULL && own[w] != 0 ? own[w] :
		    r->r_rate[w] != 0 ? r->r_rate[w] : base[w];
		on |= lim[w];
	}
	return (on != 0);
}

/* A 429 naming ar_rate's window, counted in ra_refused. */
static void
auth_rate_refuse(const struct auth_rate *ra, int kind, struct auth_result *ar)
{
	int	 w;

	if ((w = ar->ar_rate.rr_window) < 0)	/* cannot be: some window */
		w = 0;				/* is enforced */
	if (ra->ra_refused != NULL)
		__atomic_fetch_add(&ra->ra_refused[kind * RL_WINDOWS + w], 1,
		    __ATOMIC_RELAXED);
	auth_refuse(ar, 429, "rate_limited", "rate limit of %u requests per "
	    "%s reached; retry in %u s", ar->ar_rate.rr_limit,
	    ratelimit_window_name[w], ar->ar_rate.rr_retry_after);
}

static void
auth_lease_count(const struct auth_rate *ra, int how)
{
	if (ra->ra_lease_stats != NULL)
		__atomic_fetch_add(&ra->ra_lease_stats[how], 1,
		    __ATOMIC_RELAXED);
}

/*
 * lease_take() for s (fd: where to ask for more, -1: nowhere), with the
 * clock read again after a unit was taken: ra_now was read before
 * authentication, and a worker preempted since must not spend a unit past
 * its lease's expiry (the unit is then lost: LS_WAIT).
 */
static int
auth_lease_take(const struct auth_rate *ra, int fd,
    const struct ls_subject *s, int flags, struct ls_took *tk)
{
	int	 r = lease_take(ra->ra_leases, fd, s, ra->ra_now, flags, tk);

	if (r == LS_TAKEN && util_mono_ms() >= (int64_t)tk->lt_expiry) {
		tk->lt_e = NULL;
		return (LS_WAIT);
	}
	if (r != LS_TAKEN)
		tk->lt_e = NULL;
	return (r);
}

/*
 * The node's standing allowance (cllimit.c) for a key (its counter rs): a
 * share of each limit that Redis counts as this node's in every lease it
 * grants.  The clock is read afresh for the counter's windows, and again
 * after a unit was taken: a worker preempted past the allowance's end
 * must not use it (the unit is then lost, which only makes the counter
 * stricter, and the request goes on to a lease).
 */
static int
auth_standing(const struct auth_rate *ra, const struct auth_result *ar,
    const uint32_t lim[RL_WINDOWS], struct rl_standing *rs, int pm,
    const uint32_t cap[RL_WINDOWS])
{
	uint32_t	 again[RL_WINDOWS];

	if (!ratelimit_standing_admit(rs, &ar->ar_limits, cap, util_mono_ms()))
		return (0);
	/*
	 * The share must not have changed meanwhile either: a node that
	 * took a smaller one tells Redis, which then stops counting the
	 * larger (cllimit.c).
	 */
	return (lease_standing(ra->ra_leases, lim, util_mono_ms(), again) ==
	    pm);
}

/*
 * The cluster's limit (lease.h), before the node's own: 0 to go on with
 * the node's limiter (tk holding the unit taken, if one was, or a unit
 * of a key's standing allowance, counted in rs; lim divided by the live
 * nodes under cluster_fallback local), else 1 with ar_status set: 429
 * (the cluster is full), 503 (cluster_fallback deny) or AUTH_PENDING
 * (wait for a unit).  ar_limits holds lim when called.
 */
static int
auth_lease(const struct auth_rate *ra, int kind, struct auth_result *ar,
    uint32_t lim[RL_WINDOWS], struct rl_standing *rs, struct ls_took *tk)
{
	struct ls_subject	 s;
	const void		*id;
	size_t			 len;
	uint32_t		 mode, n, cap[RL_WINDOWS];
	int64_t			 secs, alive;
	int			 w, r, stand;

	tk->lt_e = NULL;
	mode = __atomic_load_n(&ra->ra_leases->lt_mode, __ATOMIC_RELAXED);
	if (mode == LS_MODE_OFF)
		return (0);
	if (kind == AUTH_RL_KEY) {
		id = ar->ar_key.k_id;
		len = strnlen(ar->ar_key.k_id, sizeof(ar->ar_key.k_id));
	} else if (kind == AUTH_RL_JWT) {
		id = ar->ar_jwt.ji_ratekey;
		len = sizeof(ar->ar_jwt.ji_ratekey);
	} else {
		id = ra->ra_ip;
		len = ra->ra_iplen;
	}
	lease_subject(&s, kind == AUTH_RL_KEY ? LS_KIND_KEY : kind ==
	    AUTH_RL_JWT ? LS_KIND_JWT : LS_KIND_ADDR, id, len, lim);
	/*
	 * Only keys stand on the allowance: their rate state is never
	 * given to another key within a minute of its last use, while the
	 * tables of identities and addresses evict (what they counted
	 * would be forgotten).
	 */
	stand = rs != NULL ? lease_standing(ra->ra_leases, lim, ra->ra_now,
	    cap) : 0;
	if (mode != LS_MODE_LEASE) {
		/*
		 * Redis lost: units leased before are still the cluster's
		 * to spend until they expire (nothing is asked of the
		 * master), and under cluster_fallback deny the standing
		 * allowance too (local divides the limits instead).
		 */
		if (auth_lease_take(ra, -1, &s, 0, tk) == LS_TAKEN) {
			auth_lease_count(ra, STATS_LEASE_LEASE);
			return (0);
		}
		if (stand && mode == LS_MODE_DENY &&
		    auth_standing(ra, ar, lim, rs, stand, cap)) {
			auth_lease_count(ra, STATS_LEASE_STANDING);
			return (0);
		}
	} else {
		/*
		 * A lease first, then the allowance: it covers the gaps
		 * while a lease is renewed.  But a key with room in its
		 * allowance does not have its lease renewed or refilled:
		 * one that is used less goes back to the allowance alone
		 * (its lease idles and is freed), asking for a lease only
		 * once the allowance is used up.
		 */
		r = auth_lease_take(ra, ra->ra_leasefd, &s, !stand ? LS_ASK_ALL :
		    ratelimit_standing_room(rs, &ar->ar_limits, cap,
		    ra->ra_now) ? 0 : LS_ASK_MORE, tk);
		if (r != LS_TAKEN && stand) {
			if (auth_standing(ra, ar, lim, rs, stand, cap)) {
				auth_lease_count(ra, STATS_LEASE_STANDING);
				return (0);
			}
			r = auth_lease_take(ra, ra->ra_leasefd, &s, LS_ASK_ALL,
			    tk);
		}
		switch (r) {
		case LS_TAKEN:
			auth_lease_count(ra, ra->ra_waited ?
			    STATS_LEASE_WAITED : STATS_LEASE_LEASE);
			return (0);
		case LS_FULL:
			auth_lease_count(ra, STATS_LEASE_FULL);
			w = tk->lt_window;
			secs = (tk->lt_until - ra->ra_now + 999) / 1000;
			if (secs < 1)
				secs = 1;
			memset(&ar->ar_rate, 0, sizeof(ar->ar_rate));
			ar->ar_rate.rr_window = w;
			ar->ar_rate.rr_limit = lim[w];
			ar->ar_rate.rr_reset = (uint32_t)secs;
			ar->ar_rate.rr_retry_after = (uint32_t)secs;
			auth_rate_refuse(ra, kind, ar);
			return (1);
		default:
			break;
		}
		alive = __atomic_load_n(&ra->ra_leases->lt_alive,
		    __ATOMIC_RELAXED);
		/*
		 * No unit: wait LS_WAIT_MS, and on while the master is alive
		 * (busy: the request is late rather than overshooting), up
		 * to LS_STALL_MS in all (then refused); a master silent for
		 * LS_STALL_MS (stopped) counts as lost: the fallback decides.
		 */
		if (ra->ra_now - alive <= LS_STALL_MS && !ra->ra_no_wait &&
		    (!ra->ra_final || ra->ra_held_ms < LS_STALL_MS)) {
			ar->ar_status = AUTH_PENDING;
			ar->ar_wait = -1;
			return (1);
		}
		if (ra->ra_now - alive <= LS_STALL_MS) {
			/*
			 * The master is there, Redis answers (else the mode
			 * would say so), but no unit came: the other nodes
			 * may be spending the rest of the window, so the
			 * fallback could overshoot.  Refused.
			 */
			auth_lease_count(ra, STATS_LEASE_TIMEOUT);
			ar->ar_limited = 0;
			auth_refuse(ar, 503, "cluster_unavailable", "the "
			    "cluster did not grant a share of this rate limit "
			    "in time; retry shortly");
			return (1);
		}
		/* The master is lost: nobody renews the mode word. */
		mode = __atomic_load_n(&ra->ra_leases->lt_fallback,
		    __ATOMIC_RELAXED);
	}
	if (mode == LS_MODE_DENY) {
		auth_lease_count(ra, STATS_LEASE_DENY);
		ar->ar_limited = 0;	/* no limit decided: no headers */
		auth_refuse(ar, 503, "cluster_unavailable", "the cluster's "
		    "rate limits cannot be checked now; retry shortly");
		return (1);
	}
	if (mode == LS_MODE_LOCAL) {
		auth_lease_count(ra, STATS_LEASE_LOCAL);
		n = __atomic_load_n(&ra->ra_leases->lt_nodes, __ATOMIC_RELAXED);
		for (w = 0; n > 1 && w < RL_WINDOWS; w++)
			if (lim[w] != 0)
				lim[w] = lim[w] / n > 0 ? lim[w] / n : 1;
	}
	return (0);
}

/*
 * The rate limit for a request that passed every other check (see auth.h
 * for whose limits apply).  Refused: 429 naming the window that frees
 * last, counted in ra_refused.
 */
static void
auth_rate_admit(const struct route *r, const struct auth_rate *ra,
    struct keystore *ks, const struct auth_jwt *jwt, struct auth_result *ar)
{
	struct rl_state	*st;
	struct ls_took	 tk;
	uint32_t	 lim[RL_WINDOWS];
	int		 kind, ok;

	if (r->r_rate_off)
		return;
	if (ar->ar_scheme == ROUTE_AUTH_ANONYMOUS) {
		kind = AUTH_RL_ADDRESS;
		if (ra->ra_ips == NULL || ra->ra_ip == NULL)
			return;
	} else if (ar->ar_scheme == ROUTE_AUTH_JWT) {
		kind = AUTH_RL_JWT;
		if (ra->ra_jwts == NULL || !ar->ar_jwt_found || jwt == NULL)
			return;
	} else {
		kind = AUTH_RL_KEY;
		if (!ar->ar_found || ks == NULL)
			return;
	}
	if (!auth_limits(r, ra, jwt, ar, kind, lim))
		return;
	ratelimit_set(&ar->ar_limits, lim);
	ar->ar_limited = 1;
	tk.lt_e = NULL;
	st = NULL;
	if (kind == AUTH_RL_KEY &&
	    (st = keystore_rate(ks, ar->ar_slot, ra->ra_now, 1)) == NULL) {
		/*
		 * Every rate state is in use by a key used within the last
		 * minute: refuse rather than let this key go unlimited.
		 */
		ar->ar_limited = 0;
		auth_refuse(ar, 503, "rate_table_full", "too many keys are "
		    "in use at once (max_active_keys); retry shortly");
		return;
	}
	if (ra->ra_leases != NULL) {
		if (auth_lease(ra, kind, ar, lim, st != NULL ?
		    keystore_standing(ks, st) : NULL, &tk))
			return;
		ratelimit_set(&ar->ar_limits, lim);	/* the fallback's */
	}
	if (kind == AUTH_RL_ADDRESS)
		ok = ratelimit_iptable_admit(ra->ra_ips, ra->ra_ip,
		    ra->ra_iplen, &ar->ar_limits, ra->ra_now, &ar->ar_rate);
	else if (kind == AUTH_RL_JWT)
		ok = ratelimit_iptable_admit(ra->ra_jwts, ar->ar_jwt.ji_ratekey,
		    sizeof(ar->ar_jwt.ji_ratekey), &ar->ar_limits, ra->ra_now,
		    &ar->ar_rate);
	else
		ok = ratelimit_admit(st, &ar->ar_limits, ra->ra_now,
		    &ar->ar_rate);
	if (ok) {
		/* What is left is the cluster's, as far as this node knows. */
		if (tk.lt_e != NULL && tk.lt_free < ar->ar_rate.rr_remaining)
			ar->ar_rate.rr_remaining = tk.lt_free;
		return;
	}
	/*
	 * A unit taken is not given back: the master may have reported it
	 * spent already (lease.h).  The node's limiter refuses only when
	 * this node alone used the window, so the cluster's is used up too.
	 */
	auth_rate_refuse(ra, kind, ar);
}

/* Append "Name: n\r\n" at p; returns the end. */
static char *
auth_header_num(char *p, const char *name, size_t len, uint32_t n)
{
	memcpy(p, name, len);
	p += len;
	p += util_u64toa(p, n);
	memcpy(p, "\r\n", 2);
	return (p + 2);
}

/* The RateLimit-* headers (and Retry-After) of ar; see auth.h. */
size_t
auth_rate_headers(const struct auth_result *ar, char *buf, size_t len)
{
	const struct rl_result	*rr = &ar->ar_rate;
	char			*p = buf;
	int			 n;

	if (!ar->ar_limited || rr->rr_window < 0 ||
	    len < AUTH_RATE_HEADERS_MAX)
		return (0);
	memcpy(p, "RateLimit-Policy: ", 18);
	p += 18;
	/* At most 3 * strlen("1000000;w=60, "): always fits. */
	n = ratelimit_policy(p, 64, &ar->ar_limits);
	if (n < 0 || n >= 64)
		return (0);
	p += n;
	memcpy(p, "\r\n", 2);
	p += 2;
	p = auth_header_num(p, "RateLimit-Limit: ", 17, rr->rr_limit);
	p = auth_header_num(p, "RateLimit-Remaining: ", 21, rr->rr_remaining);
	p = auth_header_num(p, "RateLimit-Reset: ", 17, rr->rr_reset);
	if (ar->ar_status == 429)
		p = auth_header_num(p, "Retry-After: ", 13,
		    rr->rr_retry_after);
	return ((size_t)(p - buf));
}

/*
 * The credential of ar's scheme, present in ac: checked, and for a key
 * looked up (the rate state's lines are loaded meanwhile), then the
 * route's scopes.  0, AUTH_PENDING, or the refusal.
 */
static int
auth_identify(const struct route *r, const struct auth_creds *ac,
    struct keystore *ks, const char *key_header, int64_t now,
    const struct auth_jwt *jwt, struct auth_result *ar)
{
	struct auth_cred	 c;
	const char		*scope, *scopes;
	int			 rv;

	if (ar->ar_scheme == ROUTE_AUTH_JWT) {
		if ((rv = auth_bearer(r, ac, jwt, now, ar)) != 0)
			return (rv);
		scopes = ar->ar_jwt.ji_scopes;
	} else {
		if (auth_credential(ac, ar->ar_scheme, key_header, &c,
		    ar) != 0 || auth_lookup(ks, &c, now, ar) != 0)
			return (ar->ar_status);
		/* Its rate entry is loading already (index_probe()). */
		scopes = ar->ar_key.k_scopes;
	}
	if ((scope = auth_missing_scope(r, scopes)) != NULL) {
		auth_refuse(ar, 403, "insufficient_scope",
		    "this route needs the scope \"%s\"", scope);
		if (ar->ar_scheme == ROUTE_AUTH_JWT)
			ar->ar_challenge = auth_bearer_challenge(ar, scope);
		return (403);
	}
	return (0);
}

/*
 * Decide for m on r: the first scheme whose credential is present
 * decides; see auth.h.  The decoded Basic credentials are wiped before
 * returning.  A refused key's use is counted here; an allowed one's by
 * auth_limit(), which ends its decision.
 */
int
auth_check(const struct route *r, const struct http_msg *m,
    struct keystore *ks, const char *key_header, int64_t now,
    const struct auth_jwt *jwt, struct auth_result *ar)
{
	struct auth_creds	 ac;
	int			 i;

	memset(ar, 0, sizeof(*ar));
	auth_gather(&ac, m, key_header);
	if (jwt == NULL || jwt->aj_state == NULL)
		ac.ac_bearer = 0;	/* no provider: not a credential */
	for (i = 0; i < r->r_nauth; i++)
		if (auth_present(r, r->r_auth[i], &ac))
			break;
	if (i == r->r_nauth) {
		if (r->r_nauth == 0)
			auth_refuse(ar, 403, "forbidden",
			    "this route does not accept requests");
		else
			auth_missing(r, ar);
		goto done;
	}
	ar->ar_scheme = r->r_auth[i];
	if (ar->ar_scheme == ROUTE_AUTH_DENY) {
		auth_refuse(ar, 403, "forbidden",
		    "this route does not accept requests");
		goto done;
	}
	if (ar->ar_scheme != ROUTE_AUTH_ANONYMOUS)
		auth_identify(r, &ac, ks, key_header, now, jwt, ar);
done:
	OPENSSL_cleanse(ac.ac_buf, sizeof(ac.ac_buf));
	if (ar->ar_status == 401 && ar->ar_scheme == ROUTE_AUTH_JWT)
		ar->ar_challenge = auth_bearer_challenge(ar, NULL);
	else if (ar->ar_status == 401)
		ar->ar_challenge = auth_challenge(r, key_header);
	if (ar->ar_found && ks != NULL && ar->ar_status != 0 &&
	    ar->ar_status != AUTH_PENDING)
		keystore_count_use(ks, ar->ar_slot, KS_USE_REFUSED, now);
	return (ar->ar_status);
}

/* The rate-limit step of a request auth_check() allowed; see auth.h. */
int
auth_limit(const struct route *r, const struct auth_rate *rate,
    struct keystore *ks, const struct auth_jwt *jwt, int64_t now,
    struct auth_result *ar)
{
	if (ar->ar_status != 0)
		return (ar->ar_status);
	if (rate != NULL)
		auth_rate_admit(r, rate, ks, jwt, ar);
	if (ar->ar_status == AUTH_PENDING)	/* counted when decided */
		return (ar->ar_status);
	if (ar->ar_found && ks != NULL)
		keystore_count_use(ks, ar->ar_slot, ar->ar_status == 0 ?
		    KS_USE_ALLOWED : ar->ar_status == 429 ? KS_USE_LIMITED :
		    KS_USE_REFUSED, now);
	return (ar->ar_status);
}

/* Check a bare JWT (admin verify); see auth.h. */
int
auth_check_token(const struct auth_jwt *jwt, const char *tok, size_t len,
    int64_t now, struct auth_result *ar)
{
	struct auth_jwt	 once;

	memset(ar, 0, sizeof(*ar));
	ar->ar_scheme = ROUTE_AUTH_JWT;
	if (jwt != NULL) {
		once = *jwt;
		once.aj_final = 1;	/* asks for a re-fetch, never waits */
		jwt = &once;
	}
	auth_jwt(jwt, UINT32_MAX, tok, len, now, ar);
	return (ar->ar_status);
}

/* Check a bare secret (admin verify); see auth.h. */
int
auth_check_secret(const struct keystore *ks, const char *secret, size_t len,
    const char *app, int64_t now, struct auth_result *ar)
{
	struct auth_cred	 c;

	memset(ar, 0, sizeof(*ar));
	ar->ar_scheme = app != NULL ? ROUTE_AUTH_APP_KEY : ROUTE_AUTH_API_KEY;
	c.c_secret = secret;
	c.c_secretlen = len;
	c.c_app = app;
	c.c_applen = app != NULL ? strlen(app) : 0;
	if (auth_syntax(&c, ar) == 0)
		auth_lookup(ks, &c, now, ar);
	return (ar->ar_status);
}

/* The only header named name in m: 1 (*h set), 0 when absent, -1 repeated. */
static int
auth_one_header(const struct http_msg *m, const char *name,
    const struct http_header **h)
{
	size_t	 i;

	*h = NULL;
	for (i = 0; i < m->hm_nheaders; i++) {
		if (!http_strcaseeq(m->hm_headers[i].h_name,
		    m->hm_headers[i].h_namelen, name))
			continue;
		if (*h != NULL)
			return (-1);
		*h = &m->hm_headers[i];
	}
	return (*h != NULL);
}

/*
 * The request a verify_path sub-request stands for; see auth.h.  Header
 * values end at h_valuelen and are not NUL-terminated (they point into
 * the connection's input, where the next header or the body follows), so
 * only memchr and lengths are used on them.
 */
int
auth_verify_target(const struct http_msg *m, int *mbit, const char **path,
    size_t *pathlen, const char **cause)
{
	const struct http_header	*uri, *meth;
	const char			*q;

	*mbit = HTTP_M_GET;
	*path = NULL;
	*pathlen = 0;
	if (auth_one_header(m, "x-original-uri", &uri) == -1 ||
	    auth_one_header(m, "x-original-method", &meth) == -1) {
		*cause = "X-Original-URI and X-Original-Method may appear "
		    "only once";
		return (-1);
	}
	if (meth != NULL)
		*mbit = http_method_bit(meth->h_value, meth->h_valuelen);
	if (uri == NULL || uri->h_valuelen == 0 || uri->h_value[0] != '/' ||
	    *mbit == 0) {
		*cause = "a verify request needs X-Original-URI (a path) and "
		    "a valid X-Original-Method";
		return (-1);
	}
	*path = uri->h_value;
	q = memchr(uri->h_value, '?', uri->h_valuelen);
	*pathlen = q != NULL ? (size_t)(q - uri->h_value) : uri->h_valuelen;
	return (0);
}

/* Is the word w in the space-separated list? */
static int
auth_has_word(const char *list, const char *w)
{
	const char	*p = list, *e;
	size_t		 wlen = strlen(w);

	while (*p != '\0') {
		while (*p == ' ')
			p++;
		if ((e = strchr(p, ' ')) == NULL)
			e = p + strlen(p);
		if ((size_t)(e - p) == wlen && wlen > 0 &&
		    memcmp(p, w, wlen) == 0)
			return (1);
		p = e;
	}
	return (0);
}

/* First scope of r missing from scopes, or NULL when it has them all. */
const char *
auth_missing_scope(const struct route *r, const char *scopes)
{
	int	 i;

	for (i = 0; i < r->r_nscopes; i++)
		if (!auth_has_word(scopes, r->r_scopes[i]))
			return (r->r_scopes[i]);
	return (NULL);
}

/* A header being written into a caller's buffer. */
struct auth_buf {
	char	*b_buf;
	size_t	 b_len;
	size_t	 b_off;
	int	 b_bad;		/* too small or a control character */
};

/*
 * Append "name: value\r\n" for the value in field[0..size) (up to its
 * NUL).  A value with a byte < 0x20 or 0x7f would split or corrupt the
 * header section, so it marks b bad instead of being written.
 */
static void
auth_put(struct auth_buf *b, const char *name, const char *field, size_t size)
{
	size_t	 i, vlen = strnlen(field, size), nlen = strlen(name);

	for (i = 0; i < vlen; i++)
		if ((unsigned char)field[i] < 0x20 ||
		    (unsigned char)field[i] == 0x7f)
			b->b_bad = 1;
	if (b->b_bad || b->b_len - b->b_off <= nlen + 2 + vlen + 2) {
		b->b_bad = 1;
		return;
	}
	memcpy(b->b_buf + b->b_off, name, nlen);
	memcpy(b->b_buf + b->b_off + nlen, ": ", 2);
	memcpy(b->b_buf + b->b_off + nlen + 2, field, vlen);
	memcpy(b->b_buf + b->b_off + nlen + 2 + vlen, "\r\n", 2);
	b->b_off += nlen + 2 + vlen + 2;
	b->b_buf[b->b_off] = '\0';
}

/*
 * Append the already formatted header lines h[0..n) (a provider's
 * headers=, checked by jwt_verify() for control characters).
 */
static void
auth_raw(struct auth_buf *b, const char *h, size_t n)
{
	if (b->b_bad || n == 0)
		return;
	if (b->b_len - b->b_off <= n) {
		b->b_bad = 1;
		return;
	}
	memcpy(b->b_buf + b->b_off, h, n);
	b->b_off += n;
	b->b_buf[b->b_off] = '\0';
}

/* Identity headers for the upstream into buf; see auth.h. */
size_t
auth_identity_headers(const struct auth_result *ar, char *buf, size_t len)
{
	const struct ks_key	*k = &ar->ar_key;
	struct auth_buf		 b = { buf, len, 0, 0 };
	const char		*scheme;

	if (ar->ar_status != 0)
		return (0);
	if (ar->ar_scheme == ROUTE_AUTH_ANONYMOUS)
		scheme = "anonymous";
	else if (ar->ar_scheme == ROUTE_AUTH_JWT && ar->ar_jwt_found) {
		scheme = "jwt";
		auth_put(&b, "X-Consumer-Id", ar->ar_jwt.ji_subject,
		    sizeof(ar->ar_jwt.ji_subject));
		if (ar->ar_jwt.ji_scopes[0] != '\0')
			auth_put(&b, "X-Scopes", ar->ar_jwt.ji_scopes,
			    sizeof(ar->ar_jwt.ji_scopes));
		auth_raw(&b, ar->ar_jwt.ji_headers, ar->ar_jwt.ji_headerslen);
	} else if (!ar->ar_found)
		return (0);
	else {
		scheme = ar->ar_scheme == ROUTE_AUTH_APP_KEY ? "app-key" :
		    "api-key";
		auth_put(&b, "X-Consumer-Id", k->k_owner, sizeof(k->k_owner));
		auth_put(&b, "X-Key-Id", k->k_id, sizeof(k->k_id));
		if (k->k_app[0] != '\0')
			auth_put(&b, "X-App-Id", k->k_app, sizeof(k->k_app));
		if (k->k_scopes[0] != '\0')
			auth_put(&b, "X-Scopes", k->k_scopes,
			    sizeof(k->k_scopes));
	}
	auth_put(&b, "X-Auth-Scheme", scheme, strlen(scheme) + 1);
	return (b.b_bad ? 0 : b.b_off);
}
