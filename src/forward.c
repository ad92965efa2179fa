/* Request header forwarding policy; see forward.h. */

#include <sys/types.h>

#include <string.h>

#include "forward.h"
#include "http.h"

/* Hop-by-hop headers (RFC 9110 7.6.1), both directions; Proxy-* too. */
static const char *const forward_hop[] = {
	"connection", "keep-alive", "te", "trailer", "transfer-encoding",
	"upgrade", NULL
};

/* Request headers keygate writes itself, or handles itself (Expect). */
static const char *const forward_own[] = {
	"x-consumer-id", "x-key-id", "x-app-id", "x-scopes", "x-auth-scheme",
	"x-forwarded-for", "x-forwarded-proto", "x-request-id", "expect", NULL
};


/* Is the header's name in the NULL-terminated list? */
static int
forward_listed(const struct http_header *h, const char *const *list)
{
	size_t	 i;

	for (i = 0; list[i] != NULL; i++)
		if (http_strcaseeq(h->h_name, h->h_namelen, list[i]))
			return (1);
	return (0);
}

/* Is name one of the comma-separated tokens of a Connection header value? */
static int
forward_in_connection(const struct http_header *conn, const char *name,
    size_t namelen)
{
	const char	*p = conn->h_value, *end = p + conn->h_valuelen, *tok;

	while (p < end) {
		while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
			p++;
		tok = p;
		while (p < end && *p != ',' && *p != ' ' && *p != '\t')
			p++;
		if ((size_t)(p - tok) == namelen &&
		    strncasecmp(tok, name, namelen) == 0)
			return (1);
	}
	return (0);
}

/* Is h hop-by-hop in msg: listed above, Proxy-*, or named by Connection? */
static int
forward_is_hop(const struct http_msg *msg, const struct http_header *h)
{
	size_t	 i;

	if (h->h_namelen > 6 && strncasecmp(h->h_name, "proxy-", 6) == 0)
		return (1);
	if (forward_listed(h, forward_hop))
		return (1);
	/* Connection may not name away how the message is framed or routed. */
	if (http_strcaseeq(h->h_name, h->h_namelen, "content-length") ||
	    http_strcaseeq(h->h_name, h->h_namelen, "host"))
		return (0);
	for (i = 0; i < msg->hm_nheaders; i++) {
		if (http_strcaseeq(msg->hm_headers[i].h_name,
		    msg->hm_headers[i].h_namelen, "connection") &&
		    forward_in_connection(&msg->hm_headers[i], h->h_name,
		    h->h_namelen))
			return (1);
	}
	return (0);
}

/*
 * Should request header h be forwarded as it is?  keyhdr names the API key
 * header (lower case); it and Authorization are credentials, dropped unless
 * keyhdr is NULL (forward_credentials on).
 */
int
forward_keep_header(const struct http_msg *msg, const struct http_header *h,
    const char *keyhdr)
{
	if (forward_is_hop(msg, h) || forward_listed(h, forward_own))
		return (0);
	return (keyhdr == NULL ||
	    (!http_strcaseeq(h->h_name, h->h_namelen, "authorization") &&
	    !http_strcaseeq(h->h_name, h->h_namelen, keyhdr)));
}

/* Should response header h be passed to the client as it is? */
int
forward_keep_response_header(const struct http_msg *msg,
    const struct http_header *h)
{
	return (!forward_is_hop(msg, h));
}

/* The client's X-Request-Id, if it is reasonable to pass on. */
int
forward_client_reqid(const struct http_msg *msg, const char **id, size_t *len)
{
	const struct http_header	*h;
	size_t				 i;
	unsigned char			 ch;

	if ((h = http_header_find(msg, "x-request-id")) == NULL ||
	    h->h_valuelen == 0 || h->h_valuelen > FORWARD_REQID_MAX)
		return (0);
	for (i = 0; i < h->h_valuelen; i++) {
		ch = (unsigned char)h->h_value[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
		    ch == ':' || ch == '-'))
			return (0);
	}
	*id = h->h_value;
	*len = h->h_valuelen;
	return (1);
}

/* Does the path have a "." or ".." segment (also as %2e)? */
int
forward_dot_segment(const char *p, size_t len)
{
	size_t	 i = 0, dots, other;

	while (i < len) {
		dots = other = 0;
		for (; i < len && p[i] != '/'; i++) {
			if (p[i] == '.')
				dots++;
			else if (p[i] == '%' && i + 2 < len && p[i + 1] == '2' &&
			    (p[i + 2] == 'e' || p[i + 2] == 'E')) {
				dots++;
				i += 2;
			} else
				other++;
		}
		if (other == 0 && (dots == 1 || dots == 2))
			return (1);
		i++;	/* the '/' */
	}
	return (0);
}

/* The incoming X-Forwarded-For header, or NULL. */
const struct http_header *
forward_xff(const struct http_msg *msg)
{
	return (http_header_find(msg, "x-forwarded-for"));
}
