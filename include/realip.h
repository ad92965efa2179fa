/*
 * Client addresses: CIDR sets (real_ip_from, a route's from=) and the real
 * client behind trusted proxies (real_ip_header, as nginx's realip module
 * with real_ip_recursive on).
 *
 * Addresses are kept as bytes, 4 for IPv4 and 16 for IPv6; an IPv4-mapped
 * IPv6 address (::ffff:a.b.c.d) is its IPv4 address everywhere, as the
 * server counts it (one rate-limit counter per IPv4 client).
 *
 * The real client: only when the peer is trusted, the header's addresses
 * are read from the right (the last header line first when the header is
 * repeated); trusted ones are skipped, and the first untrusted one is the
 * client.  If every one is trusted, the leftmost is.  An entry that is not
 * an address ends the walk: the client is then the last address read,
 * whose hop is trusted and vouches for nothing further left; if there is
 * none, the header is ignored.  At most REALIP_MAX_HOPS entries are read.
 * An entry may carry a port ("192.0.2.1:5060", "[2001:db8::1]:443"), as
 * some load balancers write it; the port is ignored.
 */
#ifndef KEYGATE_REALIP_H
#define KEYGATE_REALIP_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"

#define REALIP_MAX_HOPS		64
#define REALIP_CIDR_MAX		64	/* longest CIDR text, "addr/len" */

struct cidr {
	uint8_t		 ci_addr[16];	/* host bits zero */
	uint8_t		 ci_len;	/* 4 or 16 */
	uint8_t		 ci_bits;	/* prefix length */
};

/*
 * Parse "ADDR" or "ADDR/BITS" (s[0..len)) into c.  Returns 0, or -1 with a
 * sentence in err: not an address, a prefix out of range, or host bits set
 * ("10.0.0.1/8": did you mean 10.0.0.0/8?).
 */
int	 cidr_parse(const char *, size_t, struct cidr *, char *, size_t);

/* Is ip (iplen 4 or 16) in one of set[0..n)? */
int	 cidr_match(const struct cidr *, size_t, const uint8_t *, size_t);

/* c as text, "ADDR/BITS", into buf (REALIP_CIDR_MAX). */
void	 cidr_format(const struct cidr *, char *, size_t);

/*
 * One address from a forwarding header (s[0..len), spaces around it
 * allowed), with an optional port: 4 or 16 bytes into out, or 0 if it is
 * not one.
 */
size_t	 realip_addr(const char *, size_t, uint8_t[16]);

/*
 * The real client according to the headers of m named name, the peer
 * being trusted (see above): its bytes in out and 4 or 16 returned, or 0
 * when the header gives none (absent, empty, or its rightmost entry not
 * an address).
 */
size_t	 realip_find(const struct cidr *, size_t, const struct http_msg *,
	    const char *, uint8_t[16]);

#endif /* KEYGATE_REALIP_H */
