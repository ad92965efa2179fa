/*
 * libFuzzer target for CIDR sets and the real client behind trusted
 * proxies (src/realip.c), which read real_ip_from/from= from the
 * configuration and X-Forwarded-For from the client.
 *
 * The input is split at its first "\n\n" (which a request, its lines
 * ending in CRLF, does not hold): the lines before it are CIDRs, the rest
 * a request.  Without one, the whole input is the request.  Checked:
 *
 * - every line through cidr_parse(): a refusal says why; an accepted
 *   CIDR is of one family, its prefix in range, its host bits zero, not
 *   IPv4-mapped when IPv6, its text only address characters, it matches
 *   its own address and not the one just past it, and cidr_format()
 *   writes a text that parses back to the same CIDR;
 * - every line and every comma-separated entry of every header through
 *   realip_addr(): 0, 4 or 16 bytes, never an IPv4-mapped IPv6 address,
 *   only address and port characters in what it took; the address
 *   written by inet_ntop() (bare, with a port, in brackets) gives the same
 *   bytes back; cidr_match() of it against each parsed CIDR agrees with a
 *   bit-by-bit comparison;
 * - realip_find() over X-Forwarded-For and X-Real-IP, with the parsed set
 *   (or a fixed one if none parsed), with no set and with a set trusting
 *   everything, agrees with a separate reading of the rules in realip.h:
 *   the entries of the named headers collected left to right, then walked
 *   from the right.
 *
 * NUL bytes: cidr_parse() and realip_addr() are only ever given text
 * without them (configuration strings, header values the parser let
 * through), and inet_pton() stops at one, so lines are cut at their
 * first NUL here.
 */

#include <sys/types.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "realip.h"
#include "fuzz.h"

#define FUZZ_CIDRS	16
#define FUZZ_HOPS	REALIP_MAX_HOPS

static const uint8_t	 fuzz_v4mapped[12] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
};

/* Is bit i (from the most significant of a[0]) of a set? */
static int
fuzz_bit(const uint8_t *a, size_t i)
{
	return ((a[i / 8] >> (7 - i % 8)) & 1);
}

/* cidr_match() by hand: same family, the first ci_bits bits equal. */
static int
fuzz_in(const struct cidr *c, const uint8_t *ip, size_t iplen)
{
	size_t	 i;

	if (c->ci_len != iplen)
		return (0);
	for (i = 0; i < c->ci_bits; i++)
		if (fuzz_bit(c->ci_addr, i) != fuzz_bit(ip, i))
			return (0);
	return (1);
}

/* fuzz_in() over set[0..n). */
static int
fuzz_in_set(const struct cidr *set, size_t n, const uint8_t *ip,
    size_t iplen)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (fuzz_in(&set[i], ip, iplen))
			return (1);
	return (0);
}

/* Are s[0..len) only bytes of set? */
static int
fuzz_only(const char *s, size_t len, const char *set)
{
	size_t	 i;

	for (i = 0; i < len; i++)
		if (s[i] == '\0' || strchr(set, s[i]) == NULL)
			return (0);
	return (1);
}

/* realip_addr() of s[0..len) and what must hold of it; returns its length. */
static size_t
fuzz_addr(const char *s, size_t len, uint8_t out[16],
    const struct cidr *set, size_t nset)
{
	char	 text[INET6_ADDRSTRLEN], again[INET6_ADDRSTRLEN + 16];
	uint8_t	 back[16];
	size_t	 n, i;

	n = realip_addr(s, len, out);
	FUZZ_ASSERT(n == 0 || n == 4 || n == 16);
	if (n == 0)
		return (0);
	FUZZ_ASSERT(fuzz_only(s, len, "0123456789abcdefABCDEF.:[] \t"));
	if (n == 16)
		FUZZ_ASSERT(memcmp(out, fuzz_v4mapped, 12) != 0);
	FUZZ_ASSERT(inet_ntop(n == 4 ? AF_INET : AF_INET6, out, text,
	    sizeof(text)) != NULL);
	FUZZ_ASSERT(realip_addr(text, strlen(text), back) == n);
	FUZZ_ASSERT(memcmp(back, out, n) == 0);
	snprintf(again, sizeof(again), n == 4 ? " %s:65535\t" : "[%s]:1",
	    text);
	FUZZ_ASSERT(realip_addr(again, strlen(again), back) == n);
	FUZZ_ASSERT(memcmp(back, out, n) == 0);
	for (i = 0; i < nset; i++)
		FUZZ_ASSERT(cidr_match(&set[i], 1, out, n) ==
		    fuzz_in(&set[i], out, n));
	return (n);
}

/* cidr_parse() of one line and what must hold of it; 0 if accepted. */
static int
fuzz_cidr(const char *s, size_t len, struct cidr *c)
{
	struct cidr	 d;
	char		 err[256], buf[REALIP_CIDR_MAX];
	uint8_t		 past[16];
	size_t		 i, max;

	err[0] = '\0';
	if (cidr_parse(s, len, c, err, sizeof(err)) == -1) {
		FUZZ_ASSERT(err[0] != '\0');
		return (-1);
	}
	FUZZ_ASSERT(c->ci_len == 4 || c->ci_len == 16);
	max = c->ci_len * 8;
	FUZZ_ASSERT(c->ci_bits <= max);
	FUZZ_ASSERT(fuzz_only(s, len, "0123456789abcdefABCDEF.:/"));
	if (c->ci_len == 16)
		FUZZ_ASSERT(memcmp(c->ci_addr, fuzz_v4mapped, 12) != 0);
	for (i = c->ci_bits; i < max; i++)
		FUZZ_ASSERT(fuzz_bit(c->ci_addr, i) == 0);
	FUZZ_ASSERT(cidr_match(c, 1, c->ci_addr, c->ci_len));
	FUZZ_ASSERT(!cidr_match(c, 1, c->ci_addr, c->ci_len == 4 ? 16 : 4));
	if (c->ci_bits > 0) {
		/* Flip the last bit of the prefix: outside. */
		memcpy(past, c->ci_addr, sizeof(past));
		i = c->ci_bits - 1;
		past[i / 8] ^= (uint8_t)(0x80 >> (i % 8));
		FUZZ_ASSERT(!cidr_match(c, 1, past, c->ci_len));
	}
	cidr_format(c, buf, sizeof(buf));
	FUZZ_ASSERT(strlen(buf) < sizeof(buf) - 1);
	FUZZ_ASSERT(cidr_parse(buf, strlen(buf), &d, err, sizeof(err)) == 0);
	FUZZ_ASSERT(d.ci_len == c->ci_len && d.ci_bits == c->ci_bits);
	FUZZ_ASSERT(memcmp(d.ci_addr, c->ci_addr, c->ci_len) == 0);
	return (0);
}

/* One comma-separated entry of a header value. */
struct fuzz_entry {
	const char	*p;
	size_t		 len;
};

/*
 * realip_find() by the rules of realip.h: the non-blank entries of the
 * headers named name, left to right (the last FUZZ_HOPS of them kept),
 * then walked from the right.
 */
static size_t
fuzz_find(const struct cidr *set, size_t nset, const struct http_msg *m,
    const char *name, uint8_t out[16])
{
	struct fuzz_entry		 e[FUZZ_HOPS];
	const struct http_header	*h;
	const char			*p, *end, *comma;
	uint8_t				 ip[16];
	size_t				 ne = 0, i, k, n, found = 0;

	for (i = 0; i < m->hm_nheaders; i++) {
		h = &m->hm_headers[i];
		if (!fuzz_header_is(h->h_name, h->h_namelen, name, 0))
			continue;
		p = h->h_value;
		end = h->h_value + h->h_valuelen;
		for (;;) {
			comma = memchr(p, ',', (size_t)(end - p));
			if (comma == NULL)
				comma = end;
			if (!fuzz_only(p, (size_t)(comma - p), " \t")) {
				e[ne % FUZZ_HOPS].p = p;
				e[ne % FUZZ_HOPS].len = (size_t)(comma - p);
				ne++;
			}
			if (comma == end)
				break;
			p = comma + 1;
		}
	}
	for (k = 0; k < ne && k < FUZZ_HOPS; k++) {
		i = (ne - 1 - k) % FUZZ_HOPS;
		if ((n = realip_addr(e[i].p, e[i].len, ip)) == 0)
			break;
		memcpy(out, ip, n);
		found = n;
		if (!fuzz_in_set(set, nset, ip, n))
			break;
	}
	return (found);
}

/* realip_find() against fuzz_find() for one set and header name. */
static void
fuzz_walk(const struct cidr *set, size_t nset, const struct http_msg *m,
    const char *name)
{
	uint8_t	 got[16], want[16];
	size_t	 n, wn;

	memset(got, 0, sizeof(got));
	memset(want, 0, sizeof(want));
	n = realip_find(set, nset, m, name, got);
	wn = fuzz_find(set, nset, m, name, want);
	FUZZ_ASSERT(n == 0 || n == 4 || n == 16);
	FUZZ_ASSERT(n == wn);
	FUZZ_ASSERT(memcmp(got, want, n) == 0);
	if (n == 16)
		FUZZ_ASSERT(memcmp(got, fuzz_v4mapped, 12) != 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const fixed[] = { "127.0.0.0/8", "10.0.0.0/8",
	    "::1/128", "2001:db8:8000::/33", "192.168.16.0/20" };
	static const struct http_limits	 lim = { 8192, 65536 };
	static struct http_msg		 m;
	struct cidr			 set[FUZZ_CIDRS], all[2], c;
	const struct http_header	*h;
	const char			*buf = (const char *)data;
	const char			*sep, *line, *eol, *nul, *p, *end, *comma;
	const char			*req = buf;
	uint8_t				 ip[16];
	size_t				 nset = 0, reqlen = size, i, len;
	char				 err[256];

	/* The CIDR lines. */
	sep = size >= 2 ? memmem(buf, size, "\n\n", 2) : NULL;
	if (sep != NULL) {
		req = sep + 2;
		reqlen = size - (size_t)(req - buf);
		for (line = buf; line < sep; line = eol + 1) {
			if ((eol = memchr(line, '\n', (size_t)(sep - line))) ==
			    NULL)
				eol = sep;
			len = (size_t)(eol - line);
			if ((nul = memchr(line, '\0', len)) != NULL)
				len = (size_t)(nul - line);
			if (fuzz_cidr(line, len, &c) == 0 && nset < FUZZ_CIDRS)
				set[nset++] = c;
			fuzz_addr(line, len, ip, NULL, 0);
		}
	}
	if (nset == 0)
		for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
			FUZZ_ASSERT(cidr_parse(fixed[i], strlen(fixed[i]),
			    &set[nset++], err, sizeof(err)) == 0);
		}
	FUZZ_ASSERT(cidr_parse("0.0.0.0/0", 9, &all[0], err, sizeof(err)) ==
	    0);
	FUZZ_ASSERT(cidr_parse("::/0", 4, &all[1], err, sizeof(err)) == 0);

	/* The request. */
	http_msg_init(&m);
	if (http_parse_request(&m, req, reqlen, &lim) != 1)
		return (0);
	for (i = 0; i < m.hm_nheaders; i++) {
		h = &m.hm_headers[i];
		p = h->h_value;
		end = h->h_value + h->h_valuelen;
		fuzz_addr(p, h->h_valuelen, ip, set, nset);
		for (;;) {
			if ((comma = memchr(p, ',', (size_t)(end - p))) == NULL)
				comma = end;
			fuzz_addr(p, (size_t)(comma - p), ip, set, nset);
			if (comma == end)
				break;
			p = comma + 1;
		}
	}
	fuzz_walk(set, nset, &m, "x-forwarded-for");
	fuzz_walk(set, nset, &m, "x-real-ip");
	fuzz_walk(NULL, 0, &m, "x-forwarded-for");
	fuzz_walk(all, 2, &m, "x-forwarded-for");
	return (0);
}
