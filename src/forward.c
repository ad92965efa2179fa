/* Request header forwarding policy; see forward.h. */

#include <sys/types.h>

#include <string.h>

#include "config.h"
#include "forward.h"
#include "http.h"
#include "ui.h"
#include "util.h"

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


/*
 * Do the len bytes at name spell the lower-case name, ignoring case and
 * reading '_' as '-' on both sides?  CGI, WSGI, PHP and Rack turn both
 * "X-Consumer-Id" and "X_Consumer_Id" into HTTP_X_CONSUMER_ID, so a name
 * keygate protects must be recognised in either spelling.
 */
static int
forward_name_eq(const char *name, size_t len, const char *lower, size_t llen)
{
	size_t		 i;
	unsigned char	 a, b;

	if (len != llen)
		return (0);
	for (i = 0; i < len; i++) {
		a = (unsigned char)name[i];
		b = (unsigned char)lower[i];
		if (a >= 'A' && a <= 'Z')
			a += 'a' - 'A';
		if (b >= 'A' && b <= 'Z')
			b += 'a' - 'A';
		if (a == '_')
			a = '-';
		if (b == '_')
			b = '-';
		if (a != b)
			return (0);
	}
	return (1);
}

/* forward_name_eq() with a C string. */
static int
forward_name_is(const struct http_header *h, const char *lower)
{
	return (forward_name_eq(h->h_name, h->h_namelen, lower,
	    strlen(lower)));
}

/* Is the header's name (either spelling) in the NULL-terminated list? */
static int
forward_listed(const struct http_header *h, const char *const *list)
{
	size_t	 i;

	for (i = 0; list[i] != NULL; i++)
		if (forward_name_is(h, list[i]))
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
		if (forward_name_eq(tok, (size_t)(p - tok), name, namelen))
			return (1);
	}
	return (0);
}

/* Is h hop-by-hop in msg: listed above, Proxy-*, or named by Connection? */
static int
forward_is_hop(const struct http_msg *msg, const struct http_header *h)
{
	size_t	 i;

	if (h->h_namelen > 6 && forward_name_eq(h->h_name, 6, "proxy-", 6))
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

/* Does the header's name contain an underscore? */
static int
forward_underscored(const struct http_header *h)
{
	return (memchr(h->h_name, '_', h->h_namelen) != NULL);
}

/* Is h one of the names a jwt_provider's headers= sets? */
static int
forward_jwt_mapped(const struct http_header *h, const struct forward_policy *fp)
{
	const struct jwt_provider	*p;
	size_t				 i;
	int				 j;

	for (i = 0; i < fp->fp_njwt; i++) {
		p = &fp->fp_jwt[i];
		for (j = 0; j < p->jp_nheaders; j++)
			if (forward_name_is(h, p->jp_headers[j].hm_header))
				return (1);
	}
	return (0);
}

/* The forwarding policy of conf. */
void
forward_policy_init(struct forward_policy *fp, const struct config *conf)
{
	fp->fp_keyhdr = conf->c_forward_credentials ? NULL :
	    conf->c_api_key_header;
	fp->fp_underscores = conf->c_underscores_in_headers;
	fp->fp_jwt = conf->c_jwt;
	fp->fp_njwt = conf->c_njwt;
}

/*
 * Should request header h be forwarded as it is?  See forward.h for the
 * policy.  A name with an underscore is dropped unless fp_underscores, and
 * even then when it is another spelling of a name dropped here or of
 * Content-Length (which the caller writes itself in its dash form).
 */
int
forward_keep_header(const struct http_msg *msg, const struct http_header *h,
    const struct forward_policy *fp)
{
	if (forward_underscored(h) && (!fp->fp_underscores ||
	    forward_name_is(h, "content-length")))
		return (0);
	if (forward_is_hop(msg, h) || forward_listed(h, forward_own) ||
	    forward_jwt_mapped(h, fp))
		return (0);
	return (fp->fp_keyhdr == NULL ||
	    (!forward_name_is(h, "authorization") &&
	    !forward_name_is(h, fp->fp_keyhdr)));
}

/*
 * A Cookie value v[0..len) without the web console's session cookie
 * (ui.h): browsers send a host's cookies to all its ports, so a gateway
 * and an admin listener on one host name share them, and an upstream
 * must not receive a console session.  Into out (2 * len bytes at least);
 * its length, 0 when nothing is left; -1 if v holds no session cookie
 * (forward v as it is).
 */
ssize_t
forward_cookie_strip(const char *v, size_t len, char *out)
{
	size_t	 pos = 0, s, e, n = 0;
	int	 found = 0;

	while (ui_cookie_next(v, len, &pos, &s, &e)) {
		if (ui_cookie_is_session(v, s, e)) {
			found = 1;
			continue;
		}
		if (n > 0) {
			out[n++] = ';';
			out[n++] = ' ';
		}
		memcpy(out + n, v + s, e - s);
		n += e - s;
	}
	return (found ? (ssize_t)n : -1);
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

/*
 * Does the path have a "." or ".." segment (also as %2e)?  What follows a
 * ';' in a segment is a path parameter: Tomcat and other servlet
 * containers read "..;x" as "..", so such a segment counts too.
 */
int
forward_dot_segment(const char *p, size_t len)
{
	size_t	 i = 0, dots, other;
	int	 params;

	while (i < len) {
		dots = other = 0;
		params = 0;
		for (; i < len && p[i] != '/'; i++) {
			if (params)
				continue;
			if (p[i] == ';')
				params = 1;
			else if (p[i] == '.')
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

/* Is ch unreserved (RFC 3986 2.3: ALPHA DIGIT - . _ ~)? */
static int
forward_unreserved(unsigned char ch)
{
	return ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' ||
	    ch == '~');
}

/*
 * Normalise the len bytes of path p into out; see forward.h.
 *
 * One pass, left to right.  A '%' must start an escape of two hex digits.
 * An escape of an unreserved character becomes that character (RFC 3986
 * 6.2.2.2); an escape of '/' is refused, because an upstream that decoded
 * it would see a segment boundary no route saw; any other escape is kept
 * with its digits in upper case (6.2.2.1).  A '/' that follows an output
 * '/' is dropped when merging.  Every other byte is copied.
 *
 * In place (out == p) is safe: each input unit (one byte, or the three of
 * an escape) is read whole before its output is written, and yields at
 * most as many bytes as it had, so the output position j never passes the
 * input position i.  The dot-segment test runs on the output, so that
 * "/%2e%2e/" is seen as the ".." it decodes to.  The result is a fixed
 * point: normalising it again changes nothing.
 */
int
forward_normalize_path(const char *p, size_t len, char *out, size_t *outlen,
    int flags, const char **cause)
{
	static const char	 hex[] = "0123456789ABCDEF";
	size_t			 i = 0, j = 0;
	int			 hi, lo;
	unsigned char		 ch;

	while (i < len) {
		ch = (unsigned char)p[i];
		if (ch == '\\') {
			*cause = "the path contains a backslash, which some "
			    "servers read as \"/\"";
			return (-1);
		}
		if (ch != '%') {
			i++;
			if (ch == '/' && (flags & FORWARD_MERGE_SLASHES) &&
			    j > 0 && out[j - 1] == '/')
				continue;
			out[j++] = (char)ch;
			continue;
		}
		if (len - i < 3 ||
		    (hi = util_hexval((unsigned char)p[i + 1])) == -1 ||
		    (lo = util_hexval((unsigned char)p[i + 2])) == -1) {
			*cause = "the path has an invalid percent-encoding";
			return (-1);
		}
		i += 3;
		ch = (unsigned char)(hi << 4 | lo);
		if (ch == '/') {
			*cause = "the path contains an encoded \"/\" (%2F)";
			return (-1);
		}
		if (ch == '\\') {
			*cause = "the path contains an encoded backslash (%5C), "
			    "which some servers read as \"/\"";
			return (-1);
		}
		if (forward_unreserved(ch))
			out[j++] = (char)ch;
		else {
			out[j++] = '%';
			out[j++] = hex[hi];
			out[j++] = hex[lo];
		}
	}
	if (forward_dot_segment(out, j)) {
		*cause = "the path contains a \".\" or \"..\" segment";
		return (-1);
	}
	*outlen = j;
	return (0);
}

/* The incoming X-Forwarded-For header, or NULL. */
const struct http_header *
forward_xff(const struct http_msg *msg)
{
	return (http_header_find(msg, "x-forwarded-for"));
}
