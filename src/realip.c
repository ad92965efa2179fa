/*
 * Client addresses: CIDR sets and the real client behind trusted proxies
 * (see realip.h).
 */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "realip.h"

#define REALIP_TEXT_MAX	(INET6_ADDRSTRLEN + 8)	/* "[v6]:port" */

static const uint8_t	 v4mapped[12] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
};

/* Address text s[0..len), no port: 4 or 16 bytes into out, or 0. */
static size_t
realip_pton(const char *s, size_t len, uint8_t out[16])
{
	char	 buf[INET6_ADDRSTRLEN];

	if (len == 0 || len >= sizeof(buf) || memchr(s, '\0', len) != NULL)
		return (0);
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (memchr(buf, ':', len) == NULL)
		return (inet_pton(AF_INET, buf, out) == 1 ? 4 : 0);
	if (inet_pton(AF_INET6, buf, out) != 1)
		return (0);
	if (memcmp(out, v4mapped, sizeof(v4mapped)) == 0) {
		memmove(out, out + 12, 4);
		memset(out + 4, 0, 12);
		return (4);
	}
	return (16);
}

/* Is s[0..len) a number from 0 to 65535, 1 to 5 digits? */
static int
realip_port(const char *s, size_t len)
{
	size_t		 i;
	unsigned int	 n = 0;

	if (len == 0 || len > 5)
		return (0);
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return (0);
		n = n * 10 + (unsigned int)(s[i] - '0');
	}
	return (n <= 65535);
}

size_t
realip_addr(const char *s, size_t len, uint8_t out[16])
{
	const char	*close, *colon;

	while (len > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		len--;
	}
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len == 0 || len > REALIP_TEXT_MAX)
		return (0);
	if (*s == '[') {
		if ((close = memchr(s, ']', len)) == NULL)
			return (0);
		if ((size_t)(close - s) + 1 < len &&
		    (close[1] != ':' || !realip_port(close + 2,
		    len - (size_t)(close - s) - 2)))
			return (0);
		if (memchr(s + 1, ':', (size_t)(close - s) - 1) == NULL)
			return (0);	/* "[192.0.2.1]" is no IPv6 */
		return (realip_pton(s + 1, (size_t)(close - s) - 1, out));
	}
	colon = memchr(s, ':', len);
	if (colon != NULL && memchr(colon + 1, ':',
	    len - (size_t)(colon - s) - 1) == NULL) {
		/* One colon: IPv4 with a port. */
		if (!realip_port(colon + 1, len - (size_t)(colon - s) - 1))
			return (0);
		return (realip_pton(s, (size_t)(colon - s), out) == 4 ? 4 : 0);
	}
	return (realip_pton(s, len, out));
}

/* The mask of byte i of an address with a prefix of bits bits. */
static uint8_t
cidr_mask(unsigned int bits, size_t i)
{
	if (i * 8 >= bits)
		return (0);
	if (i * 8 + 8 <= bits)
		return (0xff);
	return ((uint8_t)(0xff << (8 - (bits - i * 8))));
}

int
cidr_parse(const char *s, size_t len, struct cidr *c, char *err,
    size_t errlen)
{
	const char	*slash;
	char		 net[REALIP_CIDR_MAX];
	uint8_t		 given[16];
	size_t		 alen, i;
	unsigned int	 bits = 0, max;
	int		 shown = len > 64 ? 64 : (int)len, mapped;

	memset(c, 0, sizeof(*c));
	slash = memchr(s, '/', len);
	alen = slash != NULL ? (size_t)(slash - s) : len;
	if (alen == 0 || s[0] == ' ' || s[alen - 1] == ' ' ||
	    (c->ci_len = (uint8_t)realip_pton(s, alen, c->ci_addr)) == 0) {
		snprintf(err, errlen, "\"%.*s\" is not an IPv4 or IPv6 address",
		    shown, s);
		return (-1);
	}
	/* ::ffff:a.b.c.d/N: the IPv4 prefix of N - 96 bits. */
	mapped = c->ci_len == 4 && memchr(s, ':', alen) != NULL;
	max = mapped ? 128 : c->ci_len * 8u;
	bits = max;
	if (slash != NULL) {
		if (!realip_port(slash + 1, len - alen - 1) ||
		    len - alen - 1 > 3) {
			snprintf(err, errlen, "\"%.*s\": the prefix length after "
			    "'/' must be a number", shown, s);
			return (-1);
		}
		for (bits = 0, i = alen + 1; i < len; i++)
			bits = bits * 10 + (unsigned int)(s[i] - '0');
	}
	if (bits > max) {
		snprintf(err, errlen, "\"%.*s\": the prefix length is at most %u",
		    shown, s, max);
		return (-1);
	}
	if (mapped) {
		if (bits < 96) {
			snprintf(err, errlen, "\"%.*s\": an IPv4-mapped prefix "
			    "needs at least 96 bits", shown, s);
			return (-1);
		}
		bits -= 96;
	}
	c->ci_bits = (uint8_t)bits;
	memcpy(given, c->ci_addr, sizeof(given));
	for (i = 0; i < c->ci_len; i++)
		c->ci_addr[i] &= cidr_mask(bits, i);
	if (memcmp(given, c->ci_addr, c->ci_len) != 0) {
		cidr_format(c, net, sizeof(net));
		snprintf(err, errlen, "\"%.*s\" has bits set past its prefix "
		    "length: did you mean %s?", shown, s, net);
		return (-1);
	}
	return (0);
}

int
cidr_match(const struct cidr *set, size_t n, const uint8_t *ip,
    size_t iplen)
{
	size_t		 i, full, rest;

	for (i = 0; i < n; i++) {
		if (set[i].ci_len != iplen)
			continue;
		full = set[i].ci_bits / 8;
		rest = set[i].ci_bits % 8;
		if (memcmp(set[i].ci_addr, ip, full) != 0)
			continue;
		if (rest != 0 && ((ip[full] ^ set[i].ci_addr[full]) &
		    (uint8_t)(0xff << (8 - rest))) != 0)
			continue;
		return (1);
	}
	return (0);
}

void
cidr_format(const struct cidr *c, char *buf, size_t len)
{
	char	 addr[INET6_ADDRSTRLEN];

	if (inet_ntop(c->ci_len == 4 ? AF_INET : AF_INET6, c->ci_addr, addr,
	    sizeof(addr)) == NULL)
		snprintf(addr, sizeof(addr), "?");
	snprintf(buf, len, "%s/%u", addr, c->ci_bits);
}

/* Is s[0..len) only spaces and tabs? */
static int
realip_blank(const char *s, size_t len)
{
	size_t	 i;

	for (i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t')
			return (0);
	return (1);
}

size_t
realip_find(const struct cidr *trusted, size_t n, const struct http_msg *m,
    const char *name, uint8_t out[16])
{
	const struct http_header	*h;
	const char			*end, *p;
	uint8_t				 ip[16];
	size_t				 found = 0, iplen, i, hops = 0;

	for (i = m->hm_nheaders; i-- > 0; ) {
		h = &m->hm_headers[i];
		if (!http_strcaseeq(h->h_name, h->h_namelen, name))
			continue;
		end = h->h_value + h->h_valuelen;
		while (end > h->h_value) {
			for (p = end; p > h->h_value && p[-1] != ','; p--)
				;
			/* Empty entries ("a,,b", a trailing comma) are none. */
			if (!realip_blank(p, (size_t)(end - p))) {
				if (++hops > REALIP_MAX_HOPS)
					return (found);
				if ((iplen = realip_addr(p, (size_t)(end - p),
				    ip)) == 0)
					return (found);
				memcpy(out, ip, iplen);
				found = iplen;
				if (!cidr_match(trusted, n, ip, iplen))
					return (found);
			}
			end = p > h->h_value ? p - 1 : p;
		}
	}
	return (found);
}
