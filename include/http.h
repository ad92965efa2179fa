/*
 * HTTP/1.1 message parsing (RFC 9110/9112), shared by the server side
 * (requests) and the upstream-client side (responses).
 *
 * The parser is picohttpparser-shaped: the caller keeps the bytes received
 * so far contiguous and calls http_parse_request() (or _response()) again
 * after each read.  The end of the header section is searched for
 * incrementally (hm_scan remembers how far the previous call got, so a
 * header section arriving one byte at a time costs O(n), not O(n^2)), and
 * only once it is complete is it parsed, into pointers that point into the
 * caller's buffer (no copies).  The buffer must stay unchanged while the
 * struct http_msg is in use.
 *
 * Bodies are framed by the caller from hm_body/hm_content_length; chunked
 * bodies go through struct http_chunked, a byte-at-a-time state machine
 * that can be fed arbitrary slices.
 */
#ifndef KEYGATE_HTTP_H
#define KEYGATE_HTTP_H

#include <sys/types.h>
#include <sys/uio.h>

#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEADERS	100

/* Method bits: a route's method set is an OR of these. */
#define HTTP_M_GET		0x0001
#define HTTP_M_HEAD		0x0002
#define HTTP_M_POST		0x0004
#define HTTP_M_PUT		0x0008
#define HTTP_M_DELETE		0x0010
#define HTTP_M_PATCH		0x0020
#define HTTP_M_OPTIONS		0x0040
#define HTTP_M_TRACE		0x0080
#define HTTP_M_CONNECT		0x0100
#define HTTP_M_OTHER		0x0200	/* any other valid token */
#define HTTP_M_ANY		0x03ff

struct http_header {
	const char	*h_name;
	size_t		 h_namelen;
	const char	*h_value;	/* leading/trailing OWS removed */
	size_t		 h_valuelen;
};

enum http_body {
	HTTP_BODY_NONE = 0,	/* no body at all */
	HTTP_BODY_LENGTH,	/* exactly hm_content_length bytes (may be 0) */
	HTTP_BODY_CHUNKED,	/* chunked transfer coding */
	HTTP_BODY_EOF		/* responses only: until the connection closes */
};

struct http_limits {
	size_t		 hl_max_line;	/* request line / status line, bytes w/o CRLF */
	size_t		 hl_max_header;	/* whole header section incl. request line */
};

struct http_msg {
	/* Request line (requests only). */
	const char	*hm_method;
	size_t		 hm_methodlen;
	int		 hm_mbit;	/* HTTP_M_* of the method */
	const char	*hm_target;	/* request-target as sent */
	size_t		 hm_targetlen;
	const char	*hm_path;	/* path part: origin-form target w/o query, */
	size_t		 hm_pathlen;	/* or the path of an absolute-form target */
	const char	*hm_query;	/* after '?', NULL when there is no '?' */
	size_t		 hm_querylen;

	/* Status line (responses only). */
	int		 hm_status;
	const char	*hm_reason;
	size_t		 hm_reasonlen;

	int		 hm_minor;	/* HTTP/1.<minor>: 0 or 1 */

	struct http_header hm_headers[HTTP_MAX_HEADERS];
	size_t		 hm_nheaders;

	size_t		 hm_hdrlen;	/* bytes from buf[0] through the final CRLF,
					   including skipped leading empty lines */

	/* Framing and connection semantics derived from the headers. */
	enum http_body	 hm_body;
	uint64_t	 hm_content_length;
	int		 hm_flags;
#define HTTP_F_KEEPALIVE	0x01	/* connection may be reused afterwards */
#define HTTP_F_EXPECT100	0x02	/* request has Expect: 100-continue */
#define HTTP_F_UPGRADE		0x04	/* HTTP/1.1, Upgrade and Connection: */
					/* upgrade: hm_upgrade is the protocol */
#define HTTP_F_CONN_CLOSE	0x08	/* Connection: close present */
	const char	*hm_host;	/* Host header value, or the authority of */
					/* an absolute-form target (RFC 9112 3.2.2) */
	size_t		 hm_hostlen;
	const char	*hm_upgrade;	/* the first non-empty Upgrade value */
	size_t		 hm_upgradelen;

	/* Set when a parse function returns -1. */
	int		 hm_error;	/* status to answer with: 400, 414, 417, 431,
					   505 (requests); 502 (responses) */
	const char	*hm_cause;	/* static sentence saying what was wrong */

	/* Incremental scan state: private to http.c. */
	size_t		 hm_scan;	/* bytes already scanned for the end */
	size_t		 hm_skip;	/* leading empty lines skipped */
	int		 hm_sstate;	/* scanner state */
	int		 hm_lineno;	/* lines seen so far by the scanner */
};

/* Reset a message before parsing a new one. */
void	 http_msg_init(struct http_msg *);

/*
 * Parse a request whose first len bytes are in buf.  Returns 1 when the
 * header section is complete and valid (hm_hdrlen bytes of buf belong to
 * it), 0 when more bytes are needed, -1 on error (hm_error/hm_cause set).
 * An error may be reported before the header section is complete (bare CR
 * or LF, NUL, line or header section over the limits).
 */
int	 http_parse_request(struct http_msg *, const char *, size_t,
	    const struct http_limits *);

/*
 * Parse a response to a request with method bit req_mbit (HEAD responses
 * have no body; so do 1xx, 204 and 304).  Same return values; hm_error is
 * 502 for any malformed response.
 */
int	 http_parse_response(struct http_msg *, const char *, size_t,
	    const struct http_limits *, int req_mbit);

/*
 * Is the token tok (toklen bytes) one of the elements of the
 * comma-separated list of n bytes at v (OWS around them ignored), case
 * insensitively?
 */
int	 http_list_has(const char *, size_t, const char *, size_t);

/* First header named name (case-insensitive), or NULL. */
const struct http_header *http_header_find(const struct http_msg *,
	    const char *);

/*
 * Case-insensitive equality of a length-delimited string and a C string.
 * Header names are compared against several names per header and
 * request, and nearly all differ: the inline part turns those away by
 * length (when c is a literal) or by first byte before calling the loop.
 * Setting bit 0x20 of two bytes maps a letter and its capital together and
 * never separates bytes that are equal without case, so a difference
 * there is a difference.
 */
int	 http_strcaseeq_loop(const char *, size_t, const char *);

static inline int
http_strcaseeq(const char *s, size_t n, const char *c)
{
	if (__builtin_constant_p(__builtin_strlen(c)) &&
	    __builtin_strlen(c) != n)
		return (0);
	if (n == 0)
		return (c[0] == '\0');
	if (((unsigned char)s[0] | 0x20) != ((unsigned char)c[0] | 0x20))
		return (0);
	return (http_strcaseeq_loop(s, n, c));
}

/* HTTP_M_* bit of a method token (HTTP_M_OTHER if unknown; 0 if not a token). */
int	 http_method_bit(const char *, size_t);

/* Reason phrase for a status code ("Unknown" if none). */
const char *http_reason(int);

/* Is c a tchar (RFC 9110 5.6.2)? */
int	 http_is_tchar(unsigned char);

/*
 * Chunked transfer coding decoder.  Feed it any slice of the body; it
 * returns how many bytes of the slice belong to the chunked body (fewer than
 * given once the last chunk and trailer section have ended), or -1 when the
 * coding is malformed (hc_cause says why).  Payload bytes are passed to cb
 * (if not NULL) as they are found; hc_payload counts them.
 */
#define HTTP_CHUNK_MAX_LINE	4096	/* chunk-size line incl. extensions */
#define HTTP_CHUNK_MAX_TRAILER	8192	/* whole trailer section */

typedef void	(*http_data_cb)(void *, const char *, size_t);

struct http_chunked {
	int		 hc_state;
	uint64_t	 hc_left;	/* payload bytes left in this chunk */
	size_t		 hc_linelen;	/* bytes in the current line */
	size_t		 hc_trailerlen;	/* bytes in the trailer section */
	uint64_t	 hc_payload;	/* payload bytes so far */
	int		 hc_digits;	/* hex digits in the current size */
	const char	*hc_cause;
};

void	 http_chunked_init(struct http_chunked *);
ssize_t	 http_chunked_feed(struct http_chunked *, const char *, size_t,
	    http_data_cb, void *);
int	 http_chunked_done(const struct http_chunked *);

/*
 * Feed the n slices v[] of buffered input in order (evbuffer_peek()'s
 * struct evbuffer_iovec is struct iovec where sys/uio.h exists).  Returns
 * the bytes used, -1 on error; *more is 1 when every slice was taken whole
 * and the body is not over, so a caller with more input buffered than the
 * n slices it was shown feeds again.
 */
ssize_t	 http_chunked_feedv(struct http_chunked *, const struct iovec *, int,
	    http_data_cb, void *, int *);

#endif /* KEYGATE_HTTP_H */
