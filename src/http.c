/*
 * HTTP/1.1 message parsing (RFC 9110/9112); see http.h.
 *
 * Parsing happens in two steps.  The scanner (http_scan) walks the bytes as
 * they arrive, once each, looking for the CRLF CRLF that ends the header
 * section; it rejects what can be rejected without context as soon as the
 * offending byte arrives (bare CR, bare LF, NUL and the other control
 * characters, obs-fold, leading empty lines, the line and section size
 * limits, the field count).  Every check it makes depends only on the
 * bytes before the current one, so the result is the same whether the
 * section arrives whole or one byte at a time.  Only when the section is
 * complete is it parsed line by line into pointers, and the framing
 * (RFC 9112 6) derived from the fields.
 *
 * Deviation from http.h's comment on hm_host: for an absolute-form target
 * hm_host points at the target's authority, not at the Host header
 * (RFC 9112 3.2.2); a Host header is still required in HTTP/1.1.
 *
 * The framing rules are strict on the request side: a request whose length
 * could be understood in two ways by two parsers (request smuggling) is
 * refused, never guessed at.
 */

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "http.h"

/* Scanner states (hm_sstate); 0 is the state http_msg_init leaves. */
enum {
	S_PRE = 0,	/* before the request line: empty lines may come */
	S_PRECR,	/* CR of a leading empty line seen */
	S_LINE,		/* inside a non-empty line */
	S_CR,		/* CR ending a non-empty line seen */
	S_BOL,		/* start of a field line or of the final empty line */
	S_ECR,		/* CR of the final empty line seen */
	S_DONE,		/* header section complete and parsed */
	S_ERROR		/* hm_error and hm_cause set */
};

/* Leading empty lines accepted before the request line (RFC 9112 2.2). */
#define HTTP_MAX_SKIP		4

/* Content-Length: at most this many digits, and the value below 2^63. */
#define HTTP_MAX_CL_DIGITS	19

/* Chunked decoder states (hc_state). */
enum {
	C_SIZE0 = 0,	/* first hex digit of a chunk size expected */
	C_SIZE,		/* in the hex digits */
	C_SIZE_WS,	/* whitespace after the digits: only ';' may follow */
	C_EXT,		/* in the chunk extensions */
	C_SIZE_LF,	/* CR ending the size line seen */
	C_DATA,		/* hc_left payload bytes to go */
	C_DATA_CR,	/* CR after the chunk data expected */
	C_DATA_LF,	/* LF after the chunk data expected */
	C_TRAILER_BOL,	/* start of a trailer field or of the final CRLF */
	C_TRAILER,	/* in a trailer field line */
	C_TRAILER_LF,	/* CR ending a trailer field line seen */
	C_END_LF,	/* CR of the final empty line seen */
	C_DONE,
	C_ERROR
};

/* Character classes, generated from the RFC 9110/9112/3986 grammars. */
#define CC_TCHAR	0x01	/* tchar */
#define CC_FIELD	0x02	/* field-vchar, SP, HTAB (obs-text included) */
#define CC_HOST		0x04	/* reg-name, IP-literal, ':' port, '%' */
#define CC_HEX		0x08	/* HEXDIG */
#define CC_DIGIT	0x10	/* DIGIT */
#define CC_VCHAR	0x20	/* 0x21-0x7e */

static const uint8_t http_cc[256] = {
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x02, 0x27, 0x22, 0x23, 0x27, 0x27, 0x27, 0x27,	/*  !"#$%&' */
	0x26, 0x26, 0x27, 0x27, 0x26, 0x27, 0x27, 0x22,	/* ()*+,-./ */
	0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f,	/* 01234567 */
	0x3f, 0x3f, 0x26, 0x26, 0x22, 0x26, 0x22, 0x22,	/* 89:;<=>? */
	0x22, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x27,	/* @ABCDEFG */
	0x27, 0x27, 0x27, 0x27, 0x27, 0x27, 0x27, 0x27,
	0x27, 0x27, 0x27, 0x27, 0x27, 0x27, 0x27, 0x27,
	0x27, 0x27, 0x27, 0x26, 0x22, 0x26, 0x23, 0x27,	/* XYZ[\]^_ */
	0x23, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x27,	/* `abcdefg */
	0x27, 0x27, 0x27, 0x27, 0x27, 0x27, 0x27, 0x27,
	0x27, 0x27, 0x27, 0x27, 0x27, 0x27, 0x27, 0x27,
	0x27, 0x27, 0x27, 0x22, 0x23, 0x22, 0x27, 0x00,	/* xyz{|}~ DEL */
	0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
	0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
	0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
	0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
	0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
	0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
	0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
	0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
	0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
	0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
	0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
	0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
	0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
	0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
	0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
	0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02
};

#define HTTP_IS(c, cls)	(http_cc[(u_char)(c)] & (cls))
#define HTTP_IS_WS(c)	((c) == ' ' || (c) == '\t')

/*
 * Word-at-a-time tests used by the scanner's fast path.  HTTP_HASLESS is
 * nonzero when some byte of the 64-bit word w is below n (n <= 128):
 * subtracting n from every byte borrows into the top bit for the bytes
 * below n, and "& ~w" drops the bytes whose top bit was already set (a
 * borrow can only make false hits above a true one, so "nonzero" is
 * exact).  HTTP_HASBYTE finds a byte equal to c the same way, as a zero
 * byte of w ^ c.  A word with no control character (below 0x20) and no DEL
 * holds nothing the scanner must look at, and is skipped whole.
 */
#define HTTP_ONES		0x0101010101010101ULL
#define HTTP_HIGHS		0x8080808080808080ULL
#define HTTP_HASLESS(w, n)	(((w) - HTTP_ONES * (n)) & ~(w) & HTTP_HIGHS)
#define HTTP_HASBYTE(w, c)	HTTP_HASLESS((w) ^ (HTTP_ONES * (c)), 1)

/* Used when the caller passes no limits. */
static const struct http_limits http_deflimits = { 8192, 65536 };

/* Framing-related facts collected from the header fields. */
struct http_frame {
	int		 hf_te;		/* Transfer-Encoding fields seen */
	int		 hf_codings;	/* non-empty codings in them */
	int		 hf_chunked;	/* how many of those are "chunked" */
	int		 hf_lastchunked; /* the final coding is "chunked" */
	int		 hf_tebad;	/* an empty or non-chunked element */
	int		 hf_cl;		/* Content-Length fields seen */
	uint64_t	 hf_clval;
	const char	*hf_clbad;	/* why the Content-Length is unusable */
	int		 hf_hosts;	/* Host fields seen */
	int		 hf_close;	/* Connection: close */
	int		 hf_keepalive;	/* Connection: keep-alive */
	int		 hf_upgrade;	/* Connection: upgrade */
	int		 hf_expect;	/* Expect: 100-continue */
	int		 hf_expectbad;	/* any other expectation */
};

static int	 http_fail(struct http_msg *, int, const char *);
static size_t	 http_scan_plain(const char *, size_t, size_t);
static int	 http_scan_special(struct http_msg *, int, u_char);
static int	 http_scan(struct http_msg *, const char *, size_t,
		    const struct http_limits *);
static int	 http_version(struct http_msg *, const char *, size_t, int);
static int	 http_authority(const char *, const char *, int);
static int	 http_target_absolute(struct http_msg *, const char *, size_t);
static int	 http_target(struct http_msg *, const char *, size_t);
static int	 http_request_line(struct http_msg *, const char *,
		    const char *);
static int	 http_status_line(struct http_msg *, const char *,
		    const char *);
static int	 http_field_name_error(struct http_msg *, const char *,
		    const char *);
static const char *http_field_line(struct http_msg *, const char *,
		    const char *);
static int	 http_head(struct http_msg *, const char *, int);
static const char *http_list_next(const char *, const char *,
		    const char **, size_t *);
static void	 http_field_te(struct http_frame *, const char *, size_t);
static void	 http_field_cl(struct http_frame *, const char *, size_t);
static void	 http_field_conn(struct http_frame *, const char *, size_t);
static int	 http_field_host(struct http_msg *, struct http_frame *,
		    const struct http_header *);
static int	 http_fields(struct http_msg *, struct http_frame *, int);
static int	 http_frame_request(struct http_msg *, struct http_frame *);
static int	 http_frame_response(struct http_msg *, struct http_frame *,
		    int);
static int	 http_chunk_size(struct http_chunked *, u_char);
static int	 http_chunk_trailer(struct http_chunked *, u_char);
static int	 http_chunk_byte(struct http_chunked *, u_char);
static int	 http_chunk_fail(struct http_chunked *, const char *);

/* Reset a message before parsing a new one. */
void
http_msg_init(struct http_msg *m)
{
	/* The header array is only read up to hm_nheaders: skip it. */
	memset(m, 0, offsetof(struct http_msg, hm_headers));
	memset(&m->hm_nheaders, 0,
	    sizeof(*m) - offsetof(struct http_msg, hm_nheaders));
}

/* Record an error and enter the error state; returns -1. */
static int
http_fail(struct http_msg *m, int status, const char *cause)
{
	m->hm_error = status;
	m->hm_cause = cause;
	m->hm_sstate = S_ERROR;
	return (-1);
}

/*
 * Index of the first byte in buf[i..stop) that is a control character
 * other than HTAB, or DEL; stop if there is none.  No such byte may appear
 * anywhere in a header section except as the CR LF ending a line, so the
 * parser's second pass need not look at field values again.
 */
static size_t
http_scan_plain(const char *buf, size_t i, size_t stop)
{
#ifdef __SSE2__
	const __m128i	 sp = _mm_set1_epi8(0x20), del = _mm_set1_epi8(0x7f);
	__m128i		 x;
	int		 mask;
#endif
	uint64_t	 w;
	size_t		 n;
	u_char		 c;

	for (;;) {
#ifdef __SSE2__
		/* 16 bytes at a time: not max(x, 0x20) == x, or x == DEL. */
		if (stop - i >= 16) {
			x = _mm_loadu_si128((const __m128i *)(buf + i));
			mask = (_mm_movemask_epi8(_mm_cmpeq_epi8(
			    _mm_max_epu8(x, sp), x)) ^ 0xffff) |
			    _mm_movemask_epi8(_mm_cmpeq_epi8(x, del));
			if (mask == 0) {
				i += 16;
				continue;
			}
			i += __builtin_ctz(mask);
			n = i + 1;
		} else
#endif
		if (stop - i >= sizeof(w)) {
			memcpy(&w, buf + i, sizeof(w));
			if (!HTTP_HASLESS(w, 0x20) && !HTTP_HASBYTE(w, 0x7f)) {
				i += sizeof(w);
				continue;
			}
			n = i + sizeof(w);
		} else
			n = stop;
		for (; i < n; i++) {
			c = buf[i];
			if ((c < 0x20 && c != '\t') || c == 0x7f)
				return (i);
		}
		if (i == stop)
			return (stop);
	}
}

/*
 * Scanner transition on byte c in state st (in S_LINE only the bytes that
 * http_scan_plain stops at get here).  Returns the new state; S_LINE means
 * c was not consumed.
 */
static int
http_scan_special(struct http_msg *m, int st, u_char c)
{
	switch (st) {
	case S_PRE:
	case S_BOL:
		if (c == '\r')
			return (st == S_PRE ? S_PRECR : S_ECR);
		if (c == '\n')
			return (http_fail(m, 400, "bare LF in header section"),
			    S_ERROR);
		if (st == S_BOL && HTTP_IS_WS(c))
			return (http_fail(m, 400, "obsolete line folding"),
			    S_ERROR);
		return (S_LINE);
	case S_LINE:
		if (c == '\r')
			return (S_CR);
		if (c == '\n')
			return (http_fail(m, 400, "bare LF in header section"),
			    S_ERROR);
		if (c == '\0')
			return (http_fail(m, 400, "NUL in header section"),
			    S_ERROR);
		return (http_fail(m, 400, "control character in header "
		    "section"), S_ERROR);
	case S_PRECR:
	case S_CR:
	case S_ECR:
		if (c != '\n')
			return (http_fail(m, 400, "bare CR in header section"),
			    S_ERROR);
		if (st == S_ECR)
			return (S_DONE);
		if (st == S_PRECR) {
			if (++m->hm_skip > HTTP_MAX_SKIP)
				return (http_fail(m, 400, "too many empty "
				    "lines before the request line"), S_ERROR);
			return (S_PRE);
		}
		if (++m->hm_lineno > HTTP_MAX_HEADERS + 1)
			return (http_fail(m, 431, "too many header fields"),
			    S_ERROR);
		return (S_BOL);
	}
	return (http_fail(m, 400, "parser state"), S_ERROR);
}

/*
 * Scan buf[hm_scan..len) for the end of the header section.  Before each
 * byte at index i the limits are checked in a fixed order: the section
 * (which starts after the skipped empty lines, 2 * hm_skip bytes) may not
 * need more than hl_max_header bytes, and the first line may not hold more
 * than hl_max_line bytes before its CR.  Since the checks look only at i
 * and the state, a split buffer fails exactly like a whole one.  Returns 1
 * when complete (hm_hdrlen set), 0 for more, -1 on error.
 */
static int
http_scan(struct http_msg *m, const char *buf, size_t len,
    const struct http_limits *hl)
{
	size_t	 i = m->hm_scan, start, lim, stop;
	int	 st = m->hm_sstate;

	for (;;) {
		start = 2 * m->hm_skip;
		lim = hl->hl_max_header > SIZE_MAX - start ? SIZE_MAX :
		    start + hl->hl_max_header;
		if (i >= lim)
			return (http_fail(m, 431, "header section too large"));
		if (st == S_LINE && m->hm_lineno == 0 &&
		    i - start > hl->hl_max_line)
			return (http_fail(m, 414, "request line too long"));
		if (i >= len)
			break;
		if (st == S_LINE) {
			/* Fast path: skip ordinary bytes up to a limit. */
			stop = len < lim ? len : lim;
			if (m->hm_lineno == 0 && stop - start > hl->hl_max_line)
				stop = start + hl->hl_max_line + 1;
			if ((i = http_scan_plain(buf, i, stop)) == stop)
				continue;
		}
		if ((st = http_scan_special(m, st, buf[i])) == S_ERROR)
			return (-1);
		if (st != S_LINE)
			i++;
		if (st == S_DONE) {
			m->hm_scan = m->hm_hdrlen = i;
			m->hm_sstate = st;
			return (1);
		}
	}
	m->hm_scan = i;
	m->hm_sstate = st;
	return (0);
}

/*
 * Parse "HTTP/x.y" into hm_minor.  HTTP/1.0 and 1.1 are accepted; any
 * other well-formed version is 505 (status 502 for a response).
 */
static int
http_version(struct http_msg *m, const char *v, size_t n, int isresp)
{
	if (n != 8 || memcmp(v, "HTTP/", 5) != 0 ||
	    !HTTP_IS(v[5], CC_DIGIT) || v[6] != '.' || !HTTP_IS(v[7], CC_DIGIT))
		return (http_fail(m, isresp ? 502 : 400,
		    "malformed HTTP version"));
	if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
		return (http_fail(m, isresp ? 502 : 505,
		    "unsupported HTTP version"));
	m->hm_minor = v[7] - '0';
	return (0);
}

/*
 * Is [p, end) a plausible authority: non-empty, host characters only (no
 * userinfo, whose '@' is not one of them), and with port when needport?
 */
static int
http_authority(const char *p, const char *end, int needport)
{
	const char	*q, *colon = NULL;

	if (p == end)
		return (0);
	for (q = p; q < end; q++) {
		if (!HTTP_IS(*q, CC_HOST))
			return (0);
		if (*q == ':')
			colon = q;
		else if (*q == ']')
			colon = NULL;
	}
	if (!needport)
		return (1);
	if (colon == NULL || colon == p || colon + 1 == end ||
	    end - colon - 1 > 5)
		return (0);
	for (q = colon + 1; q < end; q++)
		if (!HTTP_IS(*q, CC_DIGIT))
			return (0);
	return (1);
}

/*
 * Absolute-form target "http[s]://authority[/path][?query]".  The path
 * defaults to "/".  As RFC 9112 3.2.2 requires, the authority takes the
 * place of the Host header: hm_host points at it.
 */
static int
http_target_absolute(struct http_msg *m, const char *t, size_t n)
{
	const char	*a, *p, *q, *end = t + n;

	if (n > 7 && http_strcaseeq(t, 7, "http://"))
		a = t + 7;
	else if (n > 8 && http_strcaseeq(t, 8, "https://"))
		a = t + 8;
	else
		return (http_fail(m, 400, "invalid request target"));
	for (p = a; p < end && *p != '/' && *p != '?'; p++)
		;
	if (!http_authority(a, p, 0))
		return (http_fail(m, 400, "invalid authority in request "
		    "target"));
	m->hm_host = a;
	m->hm_hostlen = p - a;
	q = memchr(p, '?', end - p);
	if (p == end || *p == '?') {
		m->hm_path = "/";
		m->hm_pathlen = 1;
	} else {
		m->hm_path = p;
		m->hm_pathlen = (q != NULL ? q : end) - p;
	}
	if (q != NULL) {
		m->hm_query = q + 1;
		m->hm_querylen = end - q - 1;
	}
	return (0);
}

/*
 * Split the request-target (RFC 9112 3.2) by its form: origin-form,
 * absolute-form, authority-form (CONNECT only, and CONNECT only takes
 * that) or asterisk-form (OPTIONS only).
 */
static int
http_target(struct http_msg *m, const char *t, size_t n)
{
	const char	*q;
	size_t		 i;

	for (i = 0; i < n; i++)
		if (!HTTP_IS(t[i], CC_VCHAR))
			return (http_fail(m, 400, "invalid character in "
			    "request target"));
	if (memchr(t, '#', n) != NULL)
		return (http_fail(m, 400, "fragment in request target"));
	if (m->hm_mbit == HTTP_M_CONNECT) {
		if (!http_authority(t, t + n, 1))
			return (http_fail(m, 400, "CONNECT needs host:port"));
		m->hm_path = t;
		m->hm_pathlen = n;
		return (0);
	}
	if (t[0] == '*' && n == 1) {
		if (m->hm_mbit != HTTP_M_OPTIONS)
			return (http_fail(m, 400, "asterisk-form target is "
			    "only for OPTIONS"));
		m->hm_path = t;
		m->hm_pathlen = 1;
		return (0);
	}
	if (t[0] != '/')
		return (http_target_absolute(m, t, n));
	m->hm_path = t;
	if ((q = memchr(t, '?', n)) == NULL)
		m->hm_pathlen = n;
	else {
		m->hm_pathlen = q - t;
		m->hm_query = q + 1;
		m->hm_querylen = n - (q - t) - 1;
	}
	return (0);
}

/* Parse "method SP request-target SP HTTP-version" in [p, eol). */
static int
http_request_line(struct http_msg *m, const char *p, const char *eol)
{
	const char	*sp1, *sp2;
	size_t		 i;

	if ((sp1 = memchr(p, ' ', eol - p)) == NULL ||
	    (sp2 = memchr(sp1 + 1, ' ', eol - sp1 - 1)) == NULL)
		return (http_fail(m, 400, "malformed request line"));
	if (sp1 == p)
		return (http_fail(m, 400, "empty method"));
	for (i = 0; i < (size_t)(sp1 - p); i++)
		if (!HTTP_IS(p[i], CC_TCHAR))
			return (http_fail(m, 400, "invalid character in "
			    "method"));
	if (sp2 == sp1 + 1)
		return (http_fail(m, 400, "empty request target"));
	if (http_version(m, sp2 + 1, eol - sp2 - 1, 0) == -1)
		return (-1);
	m->hm_method = p;
	m->hm_methodlen = sp1 - p;
	m->hm_mbit = http_method_bit(p, sp1 - p);
	m->hm_target = sp1 + 1;
	m->hm_targetlen = sp2 - sp1 - 1;
	return (http_target(m, m->hm_target, m->hm_targetlen));
}

/*
 * Parse "HTTP-version SP 3DIGIT [SP reason-phrase]" in [p, eol).  The SP
 * before an empty reason may be missing (seen in the wild).  The reason
 * needs no check: the scanner let only HTAB, SP, VCHAR and obs-text in.
 */
static int
http_status_line(struct http_msg *m, const char *p, const char *eol)
{
	const char	*s = p + 9;
	size_t		 n = eol - p;

	if (n < 12 || p[8] != ' ')
		return (http_fail(m, 502, "malformed status line"));
	if (http_version(m, p, 8, 1) == -1)
		return (-1);
	if (!HTTP_IS(s[0], CC_DIGIT) || !HTTP_IS(s[1], CC_DIGIT) ||
	    !HTTP_IS(s[2], CC_DIGIT) || s[0] < '1' || s[0] > '5' ||
	    (n > 12 && s[3] != ' '))
		return (http_fail(m, 502, "invalid status code"));
	m->hm_status = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
	m->hm_reason = n > 12 ? s + 4 : eol;
	m->hm_reasonlen = eol - m->hm_reason;
	return (0);
}

/* Why the field line [p, eol) has no valid "name:" at its start. */
static int
http_field_name_error(struct http_msg *m, const char *p, const char *eol)
{
	const char	*colon;

	if (HTTP_IS_WS(*p))
		return (http_fail(m, 400, "obsolete line folding"));
	if ((colon = memchr(p, ':', eol - p)) == NULL)
		return (http_fail(m, 400, "header line without colon"));
	if (colon == p)
		return (http_fail(m, 400, "empty header name"));
	if (HTTP_IS_WS(colon[-1]))
		return (http_fail(m, 400, "whitespace before colon"));
	return (http_fail(m, 400, "invalid character in header name"));
}

/*
 * Parse the field line starting at p into the next hm_headers slot; the
 * line ends at the first CR before end.  Returns that CR, or NULL on error.
 */
static const char *
http_field_line(struct http_msg *m, const char *p, const char *end)
{
	struct http_header	*h;
	const char		*colon, *v, *ve, *eol;

	for (colon = p; colon < end && HTTP_IS(*colon, CC_TCHAR); colon++)
		;
	if ((eol = memchr(colon, '\r', end - colon)) == NULL)
		return (http_fail(m, 400, "malformed header section"), NULL);
	if (colon == p || *colon != ':')
		return (http_field_name_error(m, p, eol), NULL);
	/* The scanner has let no control character but HTAB through. */
	for (v = colon + 1; v < eol && HTTP_IS_WS(*v); v++)
		;
	for (ve = eol; ve > v && HTTP_IS_WS(ve[-1]); ve--)
		;
	if (m->hm_nheaders == HTTP_MAX_HEADERS)
		return (http_fail(m, 431, "too many header fields"), NULL);
	h = &m->hm_headers[m->hm_nheaders++];
	h->h_name = p;
	h->h_namelen = colon - p;
	h->h_value = v;
	h->h_valuelen = ve - v;
	return (eol);
}

/*
 * Parse the complete header section into the start line and fields.  The
 * scanner has guaranteed that every line ends in CRLF and holds no control
 * character other than HTAB and no DEL.
 */
static int
http_head(struct http_msg *m, const char *buf, int isresp)
{
	const char	*p = buf + 2 * m->hm_skip, *eol;
	const char	*end = buf + m->hm_hdrlen - 2;	/* final CRLF */
	int		 rv;

	eol = memchr(p, '\r', end - p);
	if (eol == NULL)
		return (http_fail(m, 400, "malformed header section"));
	if (isresp)
		rv = http_status_line(m, p, eol);
	else
		rv = http_request_line(m, p, eol);
	if (rv == -1)
		return (-1);
	for (p = eol + 2; p < end; p = eol + 2)
		if ((eol = http_field_line(m, p, end)) == NULL)
			return (-1);
	return (0);
}

/*
 * One element of the comma-separated list in [p, end), with the OWS
 * around it removed, into *ep and *elen (possibly empty).  Returns where the
 * next element starts, or NULL after the last one.
 */
static const char *
http_list_next(const char *p, const char *end, const char **ep,
    size_t *elen)
{
	const char	*comma, *q;

	comma = memchr(p, ',', end - p);
	q = comma != NULL ? comma : end;
	while (p < q && HTTP_IS_WS(*p))
		p++;
	while (q > p && HTTP_IS_WS(q[-1]))
		q--;
	*ep = p;
	*elen = q - p;
	return (comma != NULL ? comma + 1 : NULL);
}

/* Is tok (toklen bytes) an element of the list v (n bytes)?  See http.h. */
int
http_list_has(const char *v, size_t n, const char *tok, size_t toklen)
{
	const char	*p = v, *e;
	size_t		 elen;

	do {
		p = http_list_next(p, v + n, &e, &elen);
		if (elen == toklen && strncasecmp(e, tok, toklen) == 0)
			return (1);
	} while (p != NULL);
	return (0);
}

/* Account for the codings of one Transfer-Encoding field. */
static void
http_field_te(struct http_frame *f, const char *v, size_t n)
{
	const char	*p = v, *e;
	size_t		 elen;

	f->hf_te++;
	do {
		p = http_list_next(p, v + n, &e, &elen);
		if (elen == 0) {
			f->hf_tebad = 1;
			continue;
		}
		f->hf_codings++;
		f->hf_lastchunked = http_strcaseeq(e, elen, "chunked");
		if (f->hf_lastchunked)
			f->hf_chunked++;
		else
			f->hf_tebad = 1;
	} while (p != NULL);
}

/*
 * Account for one Content-Length field: a list of 1*DIGIT values below
 * 2^63 (at most 19 digits), all equal to each other and to any earlier
 * Content-Length (RFC 9110 8.6).
 */
static void
http_field_cl(struct http_frame *f, const char *v, size_t n)
{
	const char	*p = v, *e;
	size_t		 elen, i;
	uint64_t	 val;

	do {
		p = http_list_next(p, v + n, &e, &elen);
		if (elen == 0 || elen > HTTP_MAX_CL_DIGITS) {
			f->hf_clbad = "invalid Content-Length";
			return;
		}
		for (val = 0, i = 0; i < elen; i++) {
			if (!HTTP_IS(e[i], CC_DIGIT) ||
			    val > (INT64_MAX - (uint64_t)(e[i] - '0')) / 10) {
				f->hf_clbad = "invalid Content-Length";
				return;
			}
			val = val * 10 + (e[i] - '0');
		}
		if (f->hf_cl++ > 0 && val != f->hf_clval) {
			f->hf_clbad = "conflicting Content-Length values";
			return;
		}
		f->hf_clval = val;
	} while (p != NULL);
}

/* Note the close and keep-alive options of one Connection field. */
static void
http_field_conn(struct http_frame *f, const char *v, size_t n)
{
	const char	*p = v, *e;
	size_t		 elen;

	do {
		p = http_list_next(p, v + n, &e, &elen);
		if (http_strcaseeq(e, elen, "close"))
			f->hf_close = 1;
		else if (http_strcaseeq(e, elen, "keep-alive"))
			f->hf_keepalive = 1;
		else if (http_strcaseeq(e, elen, "upgrade"))
			f->hf_upgrade = 1;
	} while (p != NULL);
}

/* Check one Host field of a request (RFC 9112 3.2: exactly one). */
static int
http_field_host(struct http_msg *m, struct http_frame *f,
    const struct http_header *h)
{
	size_t	 i;

	if (++f->hf_hosts > 1)
		return (http_fail(m, 400, "more than one Host header"));
	for (i = 0; i < h->h_valuelen; i++)
		if (!HTTP_IS(h->h_value[i], CC_HOST))
			return (http_fail(m, 400, "invalid Host header"));
	if (m->hm_host == NULL) {	/* absolute-form target wins */
		m->hm_host = h->h_value;
		m->hm_hostlen = h->h_valuelen;
	}
	return (0);
}

/* Collect the fields that matter to framing and connection handling. */
static int
http_fields(struct http_msg *m, struct http_frame *f, int isresp)
{
	const struct http_header	*h;
	size_t				 i;

	for (i = 0; i < m->hm_nheaders; i++) {
		h = &m->hm_headers[i];
		switch (h->h_namelen) {
		case 4:
			if (!isresp && http_strcaseeq(h->h_name, 4, "host") &&
			    http_field_host(m, f, h) == -1)
				return (-1);
			break;
		case 6:
			if (http_strcaseeq(h->h_name, 6, "expect")) {
				if (http_strcaseeq(h->h_value, h->h_valuelen,
				    "100-continue"))
					f->hf_expect = 1;
				else
					f->hf_expectbad = 1;
			}
			break;
		case 7:
			if (http_strcaseeq(h->h_name, 7, "upgrade") &&
			    m->hm_upgrade == NULL && h->h_valuelen > 0) {
				m->hm_upgrade = h->h_value;
				m->hm_upgradelen = h->h_valuelen;
			}
			break;
		case 10:
			if (http_strcaseeq(h->h_name, 10, "connection"))
				http_field_conn(f, h->h_value, h->h_valuelen);
			break;
		case 14:
			if (http_strcaseeq(h->h_name, 14, "content-length") &&
			    f->hf_clbad == NULL)
				http_field_cl(f, h->h_value, h->h_valuelen);
			break;
		case 17:
			if (http_strcaseeq(h->h_name, 17, "transfer-encoding"))
				http_field_te(f, h->h_value, h->h_valuelen);
			break;
		}
	}
	if (f->hf_close)
		m->hm_flags |= HTTP_F_CONN_CLOSE;
	/*
	 * An upgrade is asked for (or, in a 101, agreed to) only in
	 * HTTP/1.1, with Upgrade named in Connection (RFC 9110 7.8); an
	 * Upgrade header alone is hop-by-hop noise and is dropped.
	 */
	if (m->hm_upgrade != NULL && f->hf_upgrade && m->hm_minor == 1)
		m->hm_flags |= HTTP_F_UPGRADE;
	return (0);
}

/*
 * Request framing (RFC 9112 6.1-6.3), refusing everything two parsers
 * could frame differently: Transfer-Encoding must be exactly "chunked",
 * never alongside Content-Length nor in HTTP/1.0; several Content-Length
 * values must agree.  Without either there is no body (HTTP_BODY_NONE;
 * "Content-Length: 0" gives HTTP_BODY_LENGTH with length 0).  The 417 for
 * an unknown expectation comes last, so the framing is valid then.
 */
static int
http_frame_request(struct http_msg *m, struct http_frame *f)
{
	if (f->hf_clbad != NULL)
		return (http_fail(m, 400, f->hf_clbad));
	if (f->hf_te > 0) {
		if (m->hm_minor == 0)
			return (http_fail(m, 400, "Transfer-Encoding in an "
			    "HTTP/1.0 request"));
		if (f->hf_cl > 0)
			return (http_fail(m, 400, "both Transfer-Encoding and "
			    "Content-Length"));
		if (f->hf_tebad || f->hf_codings != 1)
			return (http_fail(m, 400, "unsupported transfer "
			    "coding"));
		m->hm_body = HTTP_BODY_CHUNKED;
	} else if (f->hf_cl > 0) {
		m->hm_body = HTTP_BODY_LENGTH;
		m->hm_content_length = f->hf_clval;
	} else
		m->hm_body = HTTP_BODY_NONE;
	if (m->hm_minor == 1 && f->hf_hosts == 0)
		return (http_fail(m, 400, "missing Host header"));
	if ((m->hm_minor == 1 && !f->hf_close) ||
	    (m->hm_minor == 0 && f->hf_keepalive && !f->hf_close))
		m->hm_flags |= HTTP_F_KEEPALIVE;
	if (f->hf_expectbad)
		return (http_fail(m, 417, "unsupported expectation"));
	if (f->hf_expect && m->hm_minor == 1)
		m->hm_flags |= HTTP_F_EXPECT100;
	return (0);
}

/*
 * Response framing (RFC 9112 6.3): no body after HEAD or for 1xx, 204 and
 * 304 whatever the fields say; else chunked if that is the final coding,
 * until close for any other coding (and for any coding in HTTP/1.0);
 * else Content-Length; else until close.  Transfer-Encoding with
 * Content-Length, or chunked applied twice, is refused.
 */
static int
http_frame_response(struct http_msg *m, struct http_frame *f, int req_mbit)
{
	int	 s = m->hm_status;

	if ((req_mbit & HTTP_M_HEAD) || (s >= 100 && s < 200) || s == 204 ||
	    s == 304)
		m->hm_body = HTTP_BODY_NONE;
	else if (f->hf_te > 0) {
		if (f->hf_cl > 0 || f->hf_clbad != NULL)
			return (http_fail(m, 502, "both Transfer-Encoding and "
			    "Content-Length"));
		if (f->hf_codings == 0 || f->hf_chunked > 1)
			return (http_fail(m, 502, "invalid Transfer-Encoding"));
		if (f->hf_lastchunked && m->hm_minor == 1)
			m->hm_body = HTTP_BODY_CHUNKED;
		else
			m->hm_body = HTTP_BODY_EOF;
	} else if (f->hf_clbad != NULL)
		return (http_fail(m, 502, f->hf_clbad));
	else if (f->hf_cl > 0) {
		m->hm_body = HTTP_BODY_LENGTH;
		m->hm_content_length = f->hf_clval;
	} else
		m->hm_body = HTTP_BODY_EOF;
	if (m->hm_body != HTTP_BODY_EOF &&
	    ((m->hm_minor == 1 && !f->hf_close) ||
	    (m->hm_minor == 0 && f->hf_keepalive && !f->hf_close)))
		m->hm_flags |= HTTP_F_KEEPALIVE;
	return (0);
}

/*
 * Scan, then parse the complete head of a request (resp 0) or a response
 * (resp 1, to a request with method bit req_mbit).
 */
static int
http_parse(struct http_msg *m, const char *buf, size_t len,
    const struct http_limits *hl, int resp, int req_mbit)
{
	struct http_frame	 f;
	int			 rv;

	if (m->hm_sstate == S_DONE)
		return (1);
	if (m->hm_sstate == S_ERROR)
		return (-1);
	if ((rv = http_scan(m, buf, len, hl != NULL ? hl : &http_deflimits))
	    != 1)
		return (rv);
	memset(&f, 0, sizeof(f));
	if (http_head(m, buf, resp) == -1 || http_fields(m, &f, resp) == -1)
		return (-1);
	if (resp)
		return (http_frame_response(m, &f, req_mbit) == -1 ? -1 : 1);
	return (http_frame_request(m, &f) == -1 ? -1 : 1);
}

/* Parse a request whose first len bytes are in buf; see http.h. */
int
http_parse_request(struct http_msg *m, const char *buf, size_t len,
    const struct http_limits *hl)
{
	return (http_parse(m, buf, len, hl, 0, 0));
}

/* Parse a response to a request with method bit req_mbit; see http.h. */
int
http_parse_response(struct http_msg *m, const char *buf, size_t len,
    const struct http_limits *hl, int req_mbit)
{
	int	 rv;

	if ((rv = http_parse(m, buf, len, hl, 1, req_mbit)) == -1) {
		if (m->hm_error == 414)
			m->hm_cause = "status line too long";
		m->hm_error = 502;
	}
	return (rv);
}

/* First header named name (case-insensitive), or NULL. */
const struct http_header *
http_header_find(const struct http_msg *m, const char *name)
{
	size_t	 i;

	for (i = 0; i < m->hm_nheaders; i++)
		if (http_strcaseeq(m->hm_headers[i].h_name,
		    m->hm_headers[i].h_namelen, name))
			return (&m->hm_headers[i]);
	return (NULL);
}

/*
 * Case-insensitive (ASCII only) equality of s[0..n) and the C string c;
 * http_strcaseeq() (http.h) calls it after its quick tests.
 */
int
http_strcaseeq_loop(const char *s, size_t n, const char *c)
{
	size_t	 i;
	u_char	 a, b;

	for (i = 0; i < n; i++) {
		a = s[i];
		b = c[i];
		if (b == '\0')
			return (0);
		if (a >= 'A' && a <= 'Z')
			a += 'a' - 'A';
		if (b >= 'A' && b <= 'Z')
			b += 'a' - 'A';
		if (a != b)
			return (0);
	}
	return (c[n] == '\0');
}

/* HTTP_M_* bit of a method token; methods are case-sensitive. */
int
http_method_bit(const char *s, size_t n)
{
	static const struct {
		const char	*name;
		size_t		 len;
		int		 bit;
	} methods[] = {
		{ "GET", 3, HTTP_M_GET },
		{ "HEAD", 4, HTTP_M_HEAD },
		{ "POST", 4, HTTP_M_POST },
		{ "PUT", 3, HTTP_M_PUT },
		{ "DELETE", 6, HTTP_M_DELETE },
		{ "PATCH", 5, HTTP_M_PATCH },
		{ "OPTIONS", 7, HTTP_M_OPTIONS },
		{ "TRACE", 5, HTTP_M_TRACE },
		{ "CONNECT", 7, HTTP_M_CONNECT }
	};
	size_t	 i;

	if (n == 0)
		return (0);
	for (i = 0; i < n; i++)
		if (!HTTP_IS(s[i], CC_TCHAR))
			return (0);
	for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (methods[i].len == n && memcmp(methods[i].name, s, n) == 0)
			return (methods[i].bit);
	return (HTTP_M_OTHER);
}

/* Reason phrase for a status code (RFC 9110 15), "Unknown" if none. */
const char *
http_reason(int status)
{
	switch (status) {
	case 100: return ("Continue");
	case 101: return ("Switching Protocols");
	case 200: return ("OK");
	case 201: return ("Created");
	case 202: return ("Accepted");
	case 203: return ("Non-Authoritative Information");
	case 204: return ("No Content");
	case 205: return ("Reset Content");
	case 206: return ("Partial Content");
	case 301: return ("Moved Permanently");
	case 302: return ("Found");
	case 303: return ("See Other");
	case 304: return ("Not Modified");
	case 305: return ("Use Proxy");
	case 306: return ("Unused");
	case 307: return ("Temporary Redirect");
	case 308: return ("Permanent Redirect");
	case 400: return ("Bad Request");
	case 401: return ("Unauthorized");
	case 402: return ("Payment Required");
	case 403: return ("Forbidden");
	case 404: return ("Not Found");
	case 405: return ("Method Not Allowed");
	case 406: return ("Not Acceptable");
	case 407: return ("Proxy Authentication Required");
	case 408: return ("Request Timeout");
	case 409: return ("Conflict");
	case 410: return ("Gone");
	case 411: return ("Length Required");
	case 412: return ("Precondition Failed");
	case 413: return ("Content Too Large");
	case 414: return ("URI Too Long");
	case 415: return ("Unsupported Media Type");
	case 416: return ("Range Not Satisfiable");
	case 417: return ("Expectation Failed");
	case 421: return ("Misdirected Request");
	case 422: return ("Unprocessable Content");
	case 426: return ("Upgrade Required");
	case 428: return ("Precondition Required");
	case 429: return ("Too Many Requests");
	case 431: return ("Request Header Fields Too Large");
	case 500: return ("Internal Server Error");
	case 501: return ("Not Implemented");
	case 502: return ("Bad Gateway");
	case 503: return ("Service Unavailable");
	case 504: return ("Gateway Timeout");
	case 505: return ("HTTP Version Not Supported");
	case 507: return ("Insufficient Storage");
	}
	return ("Unknown");
}

/* Is c a tchar (RFC 9110 5.6.2)? */
int
http_is_tchar(unsigned char c)
{
	return (HTTP_IS(c, CC_TCHAR) != 0);
}

/* Reset a chunked decoder. */
void
http_chunked_init(struct http_chunked *hc)
{
	memset(hc, 0, sizeof(*hc));
}

/* Enter the error state with cause; returns -1. */
static int
http_chunk_fail(struct http_chunked *hc, const char *cause)
{
	hc->hc_cause = cause;
	hc->hc_state = C_ERROR;
	return (-1);
}

/*
 * One byte of a chunk-size line: 1*16HEXDIG, then optionally BWS and
 * extensions after ';' (any field characters: they are not interpreted),
 * then CRLF.  hc_left accumulates the size; 16 digits cannot overflow it.
 */
static int
http_chunk_size(struct http_chunked *hc, u_char c)
{
	if (c != '\r' && ++hc->hc_linelen > HTTP_CHUNK_MAX_LINE)
		return (http_chunk_fail(hc, "chunk size line too long"));
	switch (hc->hc_state) {
	case C_SIZE0:
	case C_SIZE:
		if (HTTP_IS(c, CC_HEX)) {
			if (++hc->hc_digits > 16)
				return (http_chunk_fail(hc, "chunk size has "
				    "more than 16 hex digits"));
			hc->hc_left = hc->hc_left << 4 | (HTTP_IS(c, CC_DIGIT) ?
			    c - '0' : (c | 0x20) - 'a' + 10);
			hc->hc_state = C_SIZE;
			return (0);
		}
		if (hc->hc_state == C_SIZE0)
			return (http_chunk_fail(hc, "missing chunk size"));
		break;
	case C_SIZE_WS:
		if (c != ';' && !HTTP_IS_WS(c))
			return (http_chunk_fail(hc, "invalid chunk size"));
		break;
	case C_EXT:
		if (c == '\r' || c == '\n' || HTTP_IS(c, CC_FIELD))
			break;
		return (http_chunk_fail(hc, "invalid character in chunk "
		    "extension"));
	}
	if (c == '\r')
		hc->hc_state = C_SIZE_LF;
	else if (c == '\n')
		return (http_chunk_fail(hc, "bare LF in chunk size line"));
	else if (c == ';')
		hc->hc_state = C_EXT;
	else if (HTTP_IS_WS(c) && hc->hc_state != C_EXT)
		hc->hc_state = C_SIZE_WS;
	else if (hc->hc_state != C_EXT)
		return (http_chunk_fail(hc, "invalid chunk size"));
	return (0);
}

/*
 * One byte of the trailer section: field lines ending in CRLF (no bare CR
 * or LF, no NUL or other control character, no obs-fold), then CRLF.
 * The trailers are checked but not interpreted.
 */
static int
http_chunk_trailer(struct http_chunked *hc, u_char c)
{
	if (++hc->hc_trailerlen > HTTP_CHUNK_MAX_TRAILER)
		return (http_chunk_fail(hc, "trailer section too large"));
	switch (hc->hc_state) {
	case C_TRAILER_BOL:
	case C_TRAILER:
		if (c == '\r')
			hc->hc_state = hc->hc_state == C_TRAILER_BOL ?
			    C_END_LF : C_TRAILER_LF;
		else if (c == '\n')
			return (http_chunk_fail(hc, "bare LF in trailer"));
		else if (hc->hc_state == C_TRAILER_BOL && HTTP_IS_WS(c))
			return (http_chunk_fail(hc, "obsolete line folding in "
			    "trailer"));
		else if (!HTTP_IS(c, CC_FIELD))
			return (http_chunk_fail(hc, "invalid character in "
			    "trailer"));
		else
			hc->hc_state = C_TRAILER;
		return (0);
	case C_TRAILER_LF:
	case C_END_LF:
		if (c != '\n')
			return (http_chunk_fail(hc, "bare CR in trailer"));
		hc->hc_state = hc->hc_state == C_END_LF ? C_DONE :
		    C_TRAILER_BOL;
		return (0);
	}
	return (http_chunk_fail(hc, "decoder state"));
}

/* Advance the decoder by one byte outside chunk data. */
static int
http_chunk_byte(struct http_chunked *hc, u_char c)
{
	switch (hc->hc_state) {
	case C_SIZE0:
	case C_SIZE:
	case C_SIZE_WS:
	case C_EXT:
		return (http_chunk_size(hc, c));
	case C_SIZE_LF:
		if (c != '\n')
			return (http_chunk_fail(hc, "bare CR in chunk size "
			    "line"));
		hc->hc_linelen = 0;
		hc->hc_state = hc->hc_left == 0 ? C_TRAILER_BOL : C_DATA;
		return (0);
	case C_DATA_CR:
	case C_DATA_LF:
		if (c != (hc->hc_state == C_DATA_CR ? '\r' : '\n'))
			return (http_chunk_fail(hc, "missing CRLF after chunk "
			    "data"));
		if (hc->hc_state == C_DATA_CR)
			hc->hc_state = C_DATA_LF;
		else {
			hc->hc_state = C_SIZE0;
			hc->hc_digits = 0;
		}
		return (0);
	default:
		return (http_chunk_trailer(hc, c));
	}
}

/*
 * Feed len bytes of a chunked body.  Chunk data is passed on in slices as
 * large as the input allows; the framing bytes go through the per-byte
 * state machine.  Returns the bytes consumed: len, or fewer when the body
 * ended inside the slice; 0 once done; -1 on error (and ever after).
 */
ssize_t
http_chunked_feed(struct http_chunked *hc, const char *buf, size_t len,
    http_data_cb cb, void *arg)
{
	size_t	 i = 0, n;

	if (hc->hc_state == C_ERROR)
		return (-1);
	while (i < len && hc->hc_state != C_DONE) {
		if (hc->hc_state == C_DATA) {
			n = len - i;
			if (n > hc->hc_left)
				n = hc->hc_left;
			if (cb != NULL)
				cb(arg, buf + i, n);
			hc->hc_payload += n;
			hc->hc_left -= n;
			i += n;
			if (hc->hc_left == 0)
				hc->hc_state = C_DATA_CR;
			continue;
		}
		if (http_chunk_byte(hc, (u_char)buf[i]) == -1)
			return (-1);
		i++;
	}
	return (i);
}

/* Feed the slices v[0..n) in order; see http.h. */
ssize_t
http_chunked_feedv(struct http_chunked *hc, const struct iovec *v, int n,
    http_data_cb cb, void *arg, int *more)
{
	ssize_t	 r, used = 0;
	int	 i;

	*more = n > 0;
	for (i = 0; i < n; i++) {
		if ((r = http_chunked_feed(hc, v[i].iov_base, v[i].iov_len, cb,
		    arg)) < 0)
			return (-1);
		used += r;
		if ((size_t)r < v[i].iov_len || http_chunked_done(hc)) {
			*more = 0;
			break;
		}
	}
	return (used);
}

/* Has the whole chunked body, trailers included, been seen? */
int
http_chunked_done(const struct http_chunked *hc)
{
	return (hc->hc_state == C_DONE);
}
