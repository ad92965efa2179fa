/*
 * Which request headers travel to the upstream.  The same policy serves the
 * built-in echo upstream (which shows what it would forward) and the proxy.
 *
 * Dropped: hop-by-hop headers (Connection and every header it names,
 * Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade, Proxy-*), the
 * identity headers keygate itself sets (X-Consumer-Id, X-Key-Id, X-App-Id,
 * X-Scopes, X-Auth-Scheme, and the jwt_providers' headers= names: a client
 * must never be able to spoof them), the
 * X-Forwarded-For / X-Forwarded-Proto / X-Request-Id headers, which are
 * written anew by the caller (X-Forwarded-For with the client appended),
 * Expect (keygate answers 100-continue itself), and the credentials
 * (Authorization and the api_key_header, X-API-KEY by default) unless
 * forward_credentials is on.  Responses
 * lose only their hop-by-hop headers.
 *
 * Names are matched with '_' read as '-' ("X_Consumer_Id" is the
 * X-Consumer-Id that CGI-style upstreams see as HTTP_X_CONSUMER_ID), and a
 * request header whose name has an underscore is dropped altogether unless
 * underscores_in_headers is on (nginx's default, and for the same reason).
 *
 * The request path is normalised here too (forward_normalize_path()), so
 * that routes and the upstream see the same path.
 */
#ifndef KEYGATE_FORWARD_H
#define KEYGATE_FORWARD_H

#include <sys/types.h>

#include <stddef.h>

#include "http.h"
#include "jwt.h"

#define FORWARD_REQID_MAX	128	/* longest X-Request-Id kept from a client */

/* What forward_keep_header() drops besides the fixed lists. */
struct forward_policy {
	const char	*fp_keyhdr;	/* API key header, lower case, dropped */
					/* with Authorization; NULL keeps both */
					/* (forward_credentials on) */
	int		 fp_underscores;	/* underscores_in_headers on */
	/*
	 * The jwt_providers, whose headers= names keygate sets itself for
	 * a JWT: dropped from every request like X-Consumer-Id, so that a
	 * client cannot send them on a route decided by another scheme.
	 */
	const struct jwt_provider *fp_jwt;
	size_t		 fp_njwt;
};

/*
 * The headers keygate adds to a forwarded request, the same for a real
 * upstream (proxy.c) and the echo upstream: X-Forwarded-For with the
 * client appended, X-Forwarded-Proto (https on a TLS listener),
 * X-Request-Id, and the caller's identity headers (auth.c).
 */
struct forward_added {
	const char	*fa_client;	/* client address, text */
	int		 fa_xff_keep;	/* the incoming X-Forwarded-For goes */
					/* before it; 0: dropped (an untrusted */
					/* peer with real_ip_from set) */
	int		 fa_tls;	/* X-Forwarded-Proto: https */
	const char	*fa_reqid;
	size_t		 fa_reqidlen;
	const char	*fa_ident;	/* "Name: value\r\n" lines */
	size_t		 fa_identlen;
};

struct config;

/* The policy of conf (credentials, underscores, JWT header mappings). */
void	 forward_policy_init(struct forward_policy *, const struct config *);

/* Should request header h of msg be forwarded under policy fp? */
int	 forward_keep_header(const struct http_msg *, const struct http_header *,
	    const struct forward_policy *);

/* Should response header h of msg reach the client as it is? */
int	 forward_keep_response_header(const struct http_msg *,
	    const struct http_header *);

/*
 * The X-Request-Id to use: the client's if it is 1..FORWARD_REQID_MAX
 * characters of [A-Za-z0-9._:-] (returned through id and len), else 0 and the
 * caller makes one.
 */
int	 forward_client_reqid(const struct http_msg *, const char **, size_t *);

/*
 * Does the path have a "." or ".." segment, written plainly or as %2e, or
 * with a path parameter (".." followed by ";...", which servlet containers
 * read as "..")?  An upstream that resolved "/public/../admin" would serve
 * a path no route allowed, so such paths are refused
 * (forward_normalize_path()).
 */
int	 forward_dot_segment(const char *, size_t);

/*
 * Normalise a path (RFC 3986 6.2.2) before routing and forwarding: decode
 * escapes of unreserved characters ("%61" -> "a"), write the remaining
 * escapes in upper case ("%3a" -> "%3A") and, with FORWARD_MERGE_SLASHES,
 * merge runs of '/' into one.  Case is kept.  Refused, with -1 and a
 * sentence in cause: an invalid escape, an escaped '/' ("%2F"), a
 * backslash, plain or escaped ("%5C": IIS reads it as '/'), and a dot
 * segment, also one that only appears once decoded ("/%2e%2e/").  On
 * success the normalised path (never longer) is in out, which may be the
 * input itself, and its length in outlen.
 */
#define FORWARD_MERGE_SLASHES	0x01
int	 forward_normalize_path(const char *, size_t, char *, size_t *, int,
	    const char **);

/* Value of the incoming X-Forwarded-For (NULL if none). */
const struct http_header *forward_xff(const struct http_msg *);

/*
 * A Cookie value without the web console's session cookie, into out (2 *
 * len bytes): its length (0: nothing left), or -1 if it held none.
 */
ssize_t	 forward_cookie_strip(const char *, size_t, char *);

#endif /* KEYGATE_FORWARD_H */
