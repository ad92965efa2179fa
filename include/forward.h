/*
 * Which request headers travel to the upstream.  The same policy serves the
 * built-in echo upstream (which shows what it would forward) and the proxy.
 *
 * Dropped: hop-by-hop headers (Connection and every header it names,
 * Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade, Proxy-*), the
 * identity headers keygate itself sets (X-Consumer-Id, X-Key-Id, X-App-Id,
 * X-Scopes, X-Auth-Scheme: a client must never be able to spoof them), the
 * X-Forwarded-For / X-Forwarded-Proto / X-Request-Id headers, which are
 * written anew by the caller (X-Forwarded-For with the client appended),
 * Expect (keygate answers 100-continue itself), and the credentials
 * (Authorization and the api_key_header, X-API-KEY by default) unless
 * forward_credentials is on.  Responses
 * lose only their hop-by-hop headers.
 */
#ifndef KEYGATE_FORWARD_H
#define KEYGATE_FORWARD_H

#include <stddef.h>

#include "http.h"

#define FORWARD_REQID_MAX	128	/* longest X-Request-Id kept from a client */

/*
 * Should request header h of msg be forwarded?  The last argument is the
 * lower-case API key header name, dropped with Authorization; NULL keeps
 * both (forward_credentials on).
 */
int	 forward_keep_header(const struct http_msg *, const struct http_header *,
	    const char *);

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
 * Does the path have a "." or ".." segment, written plainly or as %2e?  Routes
 * match the path as sent; an upstream that resolved "/public/../admin"
 * would serve a path no route allowed, so such paths are refused.
 */
int	 forward_dot_segment(const char *, size_t);

/* Value of the incoming X-Forwarded-For (NULL if none). */
const struct http_header *forward_xff(const struct http_msg *);

#endif /* KEYGATE_FORWARD_H */
