/* Unit tests for CIDR sets and the real client address (realip.c). */

#include <sys/types.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "http.h"
#include "realip.h"

#define XFF	"x-forwarded-for"

/* Parse the CIDR s, failing the test if it does not parse. */
static struct cidr
cidr(const char *s)
{
	struct cidr	 c;
	char		 err[256] = "";

	if (cidr_parse(s, strlen(s), &c, err, sizeof(err)) != 0)
		fail_msg("cidr_parse(\"%s\"): %s", s, err);
	return (c);
}

/* Check that s parses to the address text addr (4 or 16 bytes) and bits. */
static void
accepts(const char *s, const char *addr, unsigned int bits)
{
	struct cidr	 c = cidr(s);
	uint8_t		 want[16];
	int		 v6 = strchr(addr, ':') != NULL;

	assert_int_equal(inet_pton(v6 ? AF_INET6 : AF_INET, addr, want), 1);
	assert_int_equal(c.ci_len, v6 ? 16 : 4);
	assert_memory_equal(c.ci_addr, want, c.ci_len);
	assert_int_equal(c.ci_bits, bits);
}

/* Check that s[0..len) is refused with a message containing word. */
static void
refuses_len(const char *s, size_t len, const char *word)
{
	struct cidr	 c;
	char		 err[256] = "";

	assert_int_equal(cidr_parse(s, len, &c, err, sizeof(err)), -1);
	if (strstr(err, word) == NULL)
		fail_msg("cidr_parse(\"%.*s\"): \"%s\" does not say \"%s\"",
		    (int)len, s, err, word);
}

static void
refuses(const char *s, const char *word)
{
	refuses_len(s, strlen(s), word);
}

/* Address text as bytes; returns 4 or 16. */
static size_t
ip(const char *s, uint8_t out[16])
{
	if (strchr(s, ':') != NULL) {
		assert_int_equal(inet_pton(AF_INET6, s, out), 1);
		return (16);
	}
	assert_int_equal(inet_pton(AF_INET, s, out), 1);
	return (4);
}

/* Is the address text s in the set of one CIDR text? */
static int
in(const char *set, const char *s)
{
	struct cidr	 c = cidr(set);
	uint8_t		 a[16];
	size_t		 n = ip(s, a);

	return (cidr_match(&c, 1, a, n));
}

/* realip_addr() of s must give the address text want (NULL: none). */
static void
addr_is(const char *s, const char *want)
{
	uint8_t		 out[16], w[16];
	size_t		 n, wn;

	memset(out, 0xaa, sizeof(out));
	n = realip_addr(s, strlen(s), out);
	if (want == NULL) {
		if (n != 0)
			fail_msg("realip_addr(\"%s\") = %zu, want 0", s, n);
		return;
	}
	wn = ip(want, w);
	if (wn == 16 && memcmp(w, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0) {
		memmove(w, w + 12, 4);
		wn = 4;
	}
	if (n != wn)
		fail_msg("realip_addr(\"%s\") = %zu, want %zu", s, n, wn);
	assert_memory_equal(out, w, n);
}

/* The trusted set of the realip_find tests. */
static struct cidr	 trusted[8];
static size_t		 ntrusted;

static void
trust(const char *const *list)
{
	for (ntrusted = 0; list[ntrusted] != NULL; ntrusted++) {
		assert_true(ntrusted < sizeof(trusted) / sizeof(trusted[0]));
		trusted[ntrusted] = cidr(list[ntrusted]);
	}
}

/*
 * realip_find() on a request with the header lines hdrs ("Name: v\r\n"
 * each), for the header name, must give the address text want (NULL:
 * none).
 */
static void
find_is(const char *hdrs, const char *name, const char *want)
{
	static char	 req[8192];
	struct http_msg	 m;
	uint8_t		 out[16], w[16];
	size_t		 n, wn;
	int		 len;

	len = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: h\r\n%s\r\n",
	    hdrs);
	assert_true(len > 0 && (size_t)len < sizeof(req));
	http_msg_init(&m);
	assert_int_equal(http_parse_request(&m, req, (size_t)len, NULL), 1);
	memset(out, 0xaa, sizeof(out));
	n = realip_find(trusted, ntrusted, &m, name, out);
	if (want == NULL) {
		if (n != 0)
			fail_msg("realip_find(%s) = %zu, want 0", hdrs, n);
		return;
	}
	wn = ip(want, w);
	if (n != wn)
		fail_msg("realip_find(%s) = %zu, want %zu (%s)", hdrs, n, wn,
		    want);
	assert_memory_equal(out, w, n);
}

/* The accepted forms, IPv4-mapped prefixes as IPv4 ones. */
static void
test_cidr_parse_ok(void **state)
{
	(void)state;
	accepts("10.1.2.3", "10.1.2.3", 32);
	accepts("0.0.0.0/0", "0.0.0.0", 0);
	accepts("10.1.2.3/32", "10.1.2.3", 32);
	accepts("10.0.0.0/8", "10.0.0.0", 8);
	accepts("172.16.0.0/12", "172.16.0.0", 12);
	accepts("192.168.16.0/20", "192.168.16.0", 20);
	accepts("2001:db8::1", "2001:db8::1", 128);
	accepts("::/0", "::", 0);
	accepts("2001:db8::1/128", "2001:db8::1", 128);
	accepts("2001:db8::/32", "2001:db8::", 32);
	accepts("2001:db8:8000::/33", "2001:db8:8000::", 33);
	accepts("::1", "::1", 128);
	accepts("FE80::/10", "fe80::", 10);
	/* IPv4-mapped: IPv4 with N - 96 bits. */
	accepts("::ffff:10.0.0.0/104", "10.0.0.0", 8);
	accepts("::ffff:10.1.2.3", "10.1.2.3", 32);
	accepts("::ffff:10.1.2.3/128", "10.1.2.3", 32);
	accepts("::ffff:0.0.0.0/96", "0.0.0.0", 0);
	accepts("::ffff:0:0/96", "0.0.0.0", 0);
	/* Not IPv4-mapped: stays IPv6. */
	accepts("::fffe:0:0/96", "::fffe:0:0", 96);
	/* Up to three digits of prefix, leading zeros included. */
	accepts("10.0.0.0/008", "10.0.0.0", 8);
}

/* The refused forms, each with a message that says why. */
static void
test_cidr_parse_bad(void **state)
{
	struct cidr	 c;
	char		 err[256];

	(void)state;
	refuses("10.0.0.1/8", "has bits set past its prefix length");
	refuses("10.0.0.1/8", "did you mean 10.0.0.0/8?");
	refuses("10.1.31.0/19", "did you mean 10.1.0.0/19?");
	refuses("10.1.2.3/0", "did you mean 0.0.0.0/0?");
	refuses("2001:db8::1/32", "did you mean 2001:db8::/32?");
	refuses("2001:db8:ffff::/33", "did you mean 2001:db8:8000::/33?");
	refuses("::ffff:10.0.0.1/104", "did you mean 10.0.0.0/8?");
	refuses("10.0.0.0/33", "at most 32");
	refuses("::/129", "at most 128");
	refuses("2001:db8::/999", "at most 128");
	refuses("::ffff:10.0.0.0/129", "at most 128");
	refuses("::ffff:10.0.0.0/95", "at least 96");
	refuses("10.0.0.0/", "must be a number");
	refuses("10.0.0.0/x", "must be a number");
	refuses("10.0.0.0/0001", "must be a number");
	refuses("10.0.0.0/-1", "must be a number");
	refuses("10.0.0.0/+8", "must be a number");
	refuses("10.0.0.0/ 8", "must be a number");
	refuses("10.0.0.0/8 ", "must be a number");
	refuses("10.0.0.0/8/8", "must be a number");
	refuses("10.0.0", "\"10.0.0\" is not an IPv4 or IPv6 address");
	refuses("1.2.3.4 ", "not an IPv4 or IPv6 address");
	refuses(" 1.2.3.4", "not an IPv4 or IPv6 address");
	refuses("1.2.3.4\t", "not an IPv4 or IPv6 address");
	refuses("", "not an IPv4 or IPv6 address");
	refuses("/8", "not an IPv4 or IPv6 address");
	refuses("01.2.3.4", "not an IPv4 or IPv6 address");
	refuses("1.2.3.256", "not an IPv4 or IPv6 address");
	refuses("localhost", "not an IPv4 or IPv6 address");
	refuses("[::1]", "not an IPv4 or IPv6 address");
	refuses("1.2.3.4:80", "not an IPv4 or IPv6 address");
	refuses("2001:db8::1::2", "not an IPv4 or IPv6 address");
	refuses("fe80::1%eth0", "not an IPv4 or IPv6 address");
	/* Only len bytes are read. */
	refuses_len("10.0.0.0/8", 9, "must be a number");
	assert_int_equal(cidr_parse("10.0.0.0/8 junk", 10, &c, err,
	    sizeof(err)), 0);
	assert_int_equal(c.ci_bits, 8);
	/* A long text is quoted cut, and a short err buffer is enough. */
	refuses("1111111111111111111111111111111111111111111111111111111111111"
	    "1111111111111", "is not an IPv4");
	assert_int_equal(cidr_parse("x", 1, &c, err, 4), -1);
	assert_int_equal(strlen(err), 3);
}

/* Matching at the edges of prefixes, and never across families. */
static void
test_cidr_match(void **state)
{
	struct cidr	 set[3];
	uint8_t		 a[16];
	size_t		 n;

	(void)state;
	assert_true(in("10.0.0.0/8", "10.0.0.0"));
	assert_true(in("10.0.0.0/8", "10.255.255.255"));
	assert_false(in("10.0.0.0/8", "11.0.0.0"));
	assert_false(in("10.0.0.0/8", "9.255.255.255"));
	assert_true(in("0.0.0.0/0", "0.0.0.0"));
	assert_true(in("0.0.0.0/0", "255.255.255.255"));
	assert_false(in("0.0.0.0/0", "::"));
	assert_false(in("0.0.0.0/0", "::1"));
	assert_true(in("::/0", "::"));
	assert_true(in("::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
	assert_false(in("::/0", "0.0.0.0"));
	assert_false(in("::/0", "1.2.3.4"));
	/* Not byte-aligned: 10.1.16.0/20 is 10.1.16.0 - 10.1.31.255. */
	assert_true(in("10.1.16.0/20", "10.1.16.0"));
	assert_true(in("10.1.16.0/20", "10.1.31.255"));
	assert_false(in("10.1.16.0/20", "10.1.32.0"));
	assert_false(in("10.1.16.0/20", "10.1.15.255"));
	assert_false(in("10.1.16.0/20", "10.0.16.0"));
	assert_true(in("10.1.2.2/31", "10.1.2.3"));
	assert_false(in("10.1.2.2/31", "10.1.2.4"));
	assert_true(in("10.1.2.3/32", "10.1.2.3"));
	assert_false(in("10.1.2.3/32", "10.1.2.2"));
	assert_true(in("128.0.0.0/1", "255.0.0.0"));
	assert_false(in("128.0.0.0/1", "127.255.255.255"));
	/* IPv6 /33: the top bit of the third group. */
	assert_true(in("2001:db8::/33", "2001:db8::"));
	assert_true(in("2001:db8::/33", "2001:db8:7fff:ffff:ffff:ffff:ffff:ffff"));
	assert_false(in("2001:db8::/33", "2001:db8:8000::"));
	assert_true(in("2001:db8:8000::/33", "2001:db8:ffff::1"));
	assert_false(in("2001:db8:8000::/33", "2001:db8:7fff::1"));
	assert_false(in("2001:db8:8000::/33", "2001:db9:8000::"));
	assert_true(in("::1/128", "::1"));
	assert_false(in("::1/128", "::"));
	assert_false(in("::1/128", "::2"));
	/* A mapped prefix is an IPv4 one. */
	assert_true(in("::ffff:10.0.0.0/104", "10.9.9.9"));
	assert_false(in("::ffff:10.0.0.0/104", "11.0.0.0"));
	/* Sets: any member; none when empty. */
	set[0] = cidr("192.168.0.0/16");
	set[1] = cidr("10.0.0.0/8");
	set[2] = cidr("::1");
	n = ip("10.2.3.4", a);
	assert_true(cidr_match(set, 3, a, n));
	assert_false(cidr_match(set, 1, a, n));
	assert_false(cidr_match(set, 0, a, n));
	n = ip("::1", a);
	assert_true(cidr_match(set, 3, a, n));
	assert_false(cidr_match(set, 2, a, n));
	n = ip("172.16.0.1", a);
	assert_false(cidr_match(set, 3, a, n));
}

/* cidr_format() writes the canonical text, which parses back the same. */
static void
test_cidr_format(void **state)
{
	static const char *const tab[][2] = {
		{ "10.0.0.0/8", "10.0.0.0/8" },
		{ "10.1.2.3", "10.1.2.3/32" },
		{ "0.0.0.0/0", "0.0.0.0/0" },
		{ "192.168.16.0/20", "192.168.16.0/20" },
		{ "::/0", "::/0" },
		{ "::1", "::1/128" },
		{ "2001:DB8:0:0::/33", "2001:db8::/33" },
		{ "2001:db8:8000::/33", "2001:db8:8000::/33" },
		{ "::ffff:10.0.0.0/104", "10.0.0.0/8" },
		{ "::ffff:1.2.3.4", "1.2.3.4/32" },
		{ "10.0.0.0/008", "10.0.0.0/8" },
	};
	struct cidr	 c, d;
	char		 buf[REALIP_CIDR_MAX], err[256];
	size_t		 i;

	(void)state;
	for (i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
		c = cidr(tab[i][0]);
		cidr_format(&c, buf, sizeof(buf));
		assert_string_equal(buf, tab[i][1]);
		assert_int_equal(cidr_parse(buf, strlen(buf), &d, err,
		    sizeof(err)), 0);
		assert_int_equal(d.ci_len, c.ci_len);
		assert_int_equal(d.ci_bits, c.ci_bits);
		assert_memory_equal(d.ci_addr, c.ci_addr, c.ci_len);
	}
	/* The longest text fits REALIP_CIDR_MAX. */
	c = cidr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128");
	cidr_format(&c, buf, sizeof(buf));
	assert_string_equal(buf, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128");
	c = cidr("::ffff:255.255.255.255");
	cidr_format(&c, buf, sizeof(buf));
	assert_string_equal(buf, "255.255.255.255/32");
	/* A short buffer is cut, not overrun. */
	c = cidr("10.0.0.0/8");
	memset(buf, 'x', sizeof(buf));
	cidr_format(&c, buf, 5);
	assert_string_equal(buf, "10.0");
	assert_int_equal(buf[5], 'x');
}

/* One address of a forwarding header: ports, brackets, spaces. */
static void
test_realip_addr(void **state)
{
	char	 s[] = "1.2.3.4 x";

	(void)state;
	addr_is("1.2.3.4", "1.2.3.4");
	addr_is(" 1.2.3.4", "1.2.3.4");
	addr_is("1.2.3.4 \t", "1.2.3.4");
	addr_is("\t 1.2.3.4\t ", "1.2.3.4");
	addr_is("1.2.3.4:80", "1.2.3.4");
	addr_is("1.2.3.4:0", "1.2.3.4");
	addr_is("1.2.3.4:65535", "1.2.3.4");
	addr_is(" 1.2.3.4:5060 ", "1.2.3.4");
	addr_is("::1", "::1");
	addr_is("[::1]", "::1");
	addr_is("[::1]:443", "::1");
	addr_is(" [2001:db8::1]:8080\t", "2001:db8::1");
	addr_is("2001:db8::1", "2001:db8::1");
	addr_is("2001:DB8::A", "2001:db8::a");
	addr_is("::", "::");
	addr_is("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	addr_is("[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535",
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	/* IPv4-mapped: 4 bytes. */
	addr_is("::ffff:1.2.3.4", "1.2.3.4");
	addr_is("::FFFF:1.2.3.4", "1.2.3.4");
	addr_is("[::ffff:1.2.3.4]:80", "1.2.3.4");
	addr_is("::ffff:102:304", "1.2.3.4");
	/* Not mapped (IPv4-compatible, IPv4-translated): 16 bytes. */
	addr_is("::1.2.3.4", "::1.2.3.4");
	addr_is("::ffff:0:1.2.3.4", "::ffff:0:1.2.3.4");

	addr_is("[1.2.3.4]", NULL);
	addr_is("[1.2.3.4]:80", NULL);
	addr_is("1.2.3.4:", NULL);
	addr_is("1.2.3.4:123456", NULL);
	addr_is("1.2.3.4:65536", NULL);
	addr_is("1.2.3.4:99999", NULL);
	addr_is("[::1]:70000", NULL);
	addr_is("1.2.3.4:8a", NULL);
	addr_is("1.2.3.4: 80", NULL);
	addr_is("1.2.3.4:-1", NULL);
	addr_is(":80", NULL);
	addr_is("[::1]:", NULL);
	addr_is("[::1]:123456", NULL);
	addr_is("[::1]x", NULL);
	addr_is("[::1]]", NULL);
	addr_is("[::1]:80:80", NULL);
	addr_is("[::1", NULL);
	addr_is("::1]", NULL);
	addr_is("[]", NULL);
	addr_is("[]:80", NULL);
	addr_is("", NULL);
	addr_is("   ", NULL);
	addr_is(" \t", NULL);
	addr_is("1.2.3", NULL);
	addr_is("01.2.3.4", NULL);
	addr_is("1.2.3.4 5", NULL);
	addr_is("1.2.3.4,5.6.7.8", NULL);
	addr_is("unknown", NULL);
	addr_is("_hidden", NULL);
	addr_is("example.com", NULL);
	addr_is("example.com:80", NULL);
	addr_is("fe80::1%eth0", NULL);
	addr_is("2001:db8::1::2", NULL);
	addr_is("1.2.3.4\r", NULL);
	/* Longer than any address with a port. */
	addr_is("[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:123456", NULL);
	addr_is("0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:1", NULL);
	/* Only len bytes are read. */
	assert_int_equal(realip_addr(s, 7, (uint8_t[16]){ 0 }), 4);
	assert_int_equal(realip_addr(s, 8, (uint8_t[16]){ 0 }), 4);
	assert_int_equal(realip_addr(s, 9, (uint8_t[16]){ 0 }), 0);
	assert_int_equal(realip_addr(s, 0, (uint8_t[16]){ 0 }), 0);
}

/* The walk from the right over trusted hops. */
static void
test_find_walk(void **state)
{
	static const char *const tr[] = { "10.0.0.0/8", "192.168.0.0/16",
	    "::1/128", "2001:db8:8000::/33", NULL };

	(void)state;
	trust(tr);
	/* No header, empty header. */
	find_is("", XFF, NULL);
	find_is("X-Forwarded-For:\r\n", XFF, NULL);
	/* The rightmost untrusted one. */
	find_is("X-Forwarded-For: 1.1.1.1\r\n", XFF, "1.1.1.1");
	find_is("X-Forwarded-For: 1.1.1.1, 2.2.2.2\r\n", XFF, "2.2.2.2");
	/* Recursive: trusted hops skipped. */
	find_is("X-Forwarded-For: 1.1.1.1, 2.2.2.2, 10.0.0.1\r\n", XFF,
	    "2.2.2.2");
	find_is("X-Forwarded-For: 1.1.1.1, 2.2.2.2, 10.0.0.1, "
	    "192.168.1.1:8080\r\n", XFF, "2.2.2.2");
	find_is("X-Forwarded-For: 1.1.1.1, 10.2.2.2, 10.0.0.1\r\n", XFF,
	    "1.1.1.1");
	/* All trusted: the leftmost. */
	find_is("X-Forwarded-For: 10.0.0.3, 10.0.0.2, 10.0.0.1\r\n", XFF,
	    "10.0.0.3");
	find_is("X-Forwarded-For: 10.0.0.9\r\n", XFF, "10.0.0.9");
	/* Not an address in the middle: the last address read. */
	find_is("X-Forwarded-For: 1.1.1.1, junk, 10.0.0.2, 10.0.0.1\r\n", XFF,
	    "10.0.0.2");
	find_is("X-Forwarded-For: 1.1.1.1, unknown, 10.0.0.1\r\n", XFF,
	    "10.0.0.1");
	find_is("X-Forwarded-For: 1.1.1.1, 1.2.3.4:, 10.0.0.1\r\n", XFF,
	    "10.0.0.1");
	/* ... but an untrusted one ends the walk before it. */
	find_is("X-Forwarded-For: junk, 2.2.2.2, 10.0.0.1\r\n", XFF,
	    "2.2.2.2");
	/* Not an address at the right: none. */
	find_is("X-Forwarded-For: 1.1.1.1, junk\r\n", XFF, NULL);
	find_is("X-Forwarded-For: 10.0.0.1, [1.2.3.4]\r\n", XFF, NULL);
	find_is("X-Forwarded-For: junk\r\n", XFF, NULL);
	/* One entry of two addresses without the comma is not one. */
	find_is("X-Forwarded-For: 1.1.1.1 10.0.0.1\r\n", XFF, NULL);
	/* IPv4-mapped entries are IPv4 ones. */
	find_is("X-Forwarded-For: 1.1.1.1, ::ffff:10.0.0.1\r\n", XFF,
	    "1.1.1.1");
	find_is("X-Forwarded-For: ::ffff:1.1.1.1, 10.0.0.1\r\n", XFF,
	    "1.1.1.1");
}

/* IPv6 entries, with and without brackets and ports. */
static void
test_find_v6(void **state)
{
	static const char *const tr[] = { "10.0.0.0/8", "::1/128",
	    "2001:db8:8000::/33", NULL };

	(void)state;
	trust(tr);
	find_is("X-Forwarded-For: 2001:db8::1\r\n", XFF, "2001:db8::1");
	find_is("X-Forwarded-For: 2001:db8::1, ::1\r\n", XFF, "2001:db8::1");
	find_is("X-Forwarded-For: 2001:db8::1, [::1]:443, "
	    "[2001:db8:ffff::5]\r\n", XFF, "2001:db8::1");
	/* 2001:db8:7fff::/33 is just outside the trusted /33. */
	find_is("X-Forwarded-For: 2001:db8::1, 2001:db8:7fff::1, "
	    "2001:db8:8000::1\r\n", XFF, "2001:db8:7fff::1");
	find_is("X-Forwarded-For: 1.1.1.1, [::1]:80, 10.0.0.1\r\n", XFF,
	    "1.1.1.1");
	find_is("X-Forwarded-For: [2001:db8::1]:1, 10.0.0.1, ::1\r\n", XFF,
	    "2001:db8::1");
	find_is("X-Forwarded-For: ::1, ::1\r\n", XFF, "::1");
}

/* Repeated header lines are read last line first. */
static void
test_find_lines(void **state)
{
	static const char *const tr[] = { "10.0.0.0/8", NULL };

	(void)state;
	trust(tr);
	find_is("X-Forwarded-For: 1.1.1.1\r\n"
	    "X-Forwarded-For: 10.0.0.2, 10.0.0.1\r\n", XFF, "1.1.1.1");
	find_is("X-Forwarded-For: 1.1.1.1\r\n"
	    "X-Forwarded-For: 2.2.2.2, 10.0.0.1\r\n", XFF, "2.2.2.2");
	find_is("X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 2.2.2.2\r\n",
	    XFF, "2.2.2.2");
	find_is("X-Forwarded-For: 3.3.3.3, 10.0.0.3\r\nAccept: */*\r\n"
	    "X-Forwarded-For: 10.0.0.2\r\nX-Other: 4.4.4.4\r\n"
	    "X-Forwarded-For: 10.0.0.1\r\n", XFF, "3.3.3.3");
	/* All trusted over three lines: the leftmost of the first. */
	find_is("X-Forwarded-For: 10.0.0.5, 10.0.0.4\r\n"
	    "X-Forwarded-For: 10.0.0.3\r\nX-Forwarded-For: 10.0.0.2, "
	    "10.0.0.1\r\n", XFF, "10.0.0.5");
	/* An empty line is passed over; junk in an earlier line ends it. */
	find_is("X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For:\r\n"
	    "X-Forwarded-For: 10.0.0.1\r\n", XFF, "1.1.1.1");
	find_is("X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: junk\r\n"
	    "X-Forwarded-For: 10.0.0.1\r\n", XFF, "10.0.0.1");
	find_is("X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: junk\r\n",
	    XFF, NULL);
}

/* Empty entries are none. */
static void
test_find_empty(void **state)
{
	static const char *const tr[] = { "10.0.0.0/8", NULL };

	(void)state;
	trust(tr);
	find_is("X-Forwarded-For: 1.1.1.1,,10.0.0.1\r\n", XFF, "1.1.1.1");
	find_is("X-Forwarded-For: 1.1.1.1, , ,\t,10.0.0.1\r\n", XFF,
	    "1.1.1.1");
	find_is("X-Forwarded-For: 2.2.2.2,\r\n", XFF, "2.2.2.2");
	find_is("X-Forwarded-For: 10.0.0.1,,,\r\n", XFF, "10.0.0.1");
	find_is("X-Forwarded-For: ,1.1.1.1\r\n", XFF, "1.1.1.1");
	find_is("X-Forwarded-For: ,,10.0.0.2,10.0.0.1\r\n", XFF, "10.0.0.2");
	find_is("X-Forwarded-For: ,\r\n", XFF, NULL);
	find_is("X-Forwarded-For: , ,\t, \r\n", XFF, NULL);
	find_is("X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: ,, \r\n", XFF,
	    "1.1.1.1");
}

/* The header name is matched without case; other headers are ignored. */
static void
test_find_name(void **state)
{
	static const char *const tr[] = { "10.0.0.0/8", NULL };

	(void)state;
	trust(tr);
	find_is("x-forwarded-for: 1.1.1.1\r\n", XFF, "1.1.1.1");
	find_is("X-FORWARDED-FOR: 1.1.1.1\r\n", XFF, "1.1.1.1");
	find_is("x-FoRwArDeD-fOr: 1.1.1.1\r\n", XFF, "1.1.1.1");
	find_is("X-Forwarded-For: 1.1.1.1\r\nx-forwarded-for: 10.0.0.1\r\n",
	    XFF, "1.1.1.1");
	find_is("X-Real-IP: 1.1.1.1\r\n", XFF, NULL);
	find_is("X-Forwarded-For-X: 1.1.1.1\r\n", XFF, NULL);
	find_is("X-Forwarded: 1.1.1.1\r\n", XFF, NULL);
	find_is("X-Forwarded_For: 1.1.1.1\r\n", XFF, NULL);
	find_is("X-Real-IP: 2.2.2.2\r\nX-Forwarded-For: 1.1.1.1, 10.0.0.1\r\n"
	    "X-Real-IP: 3.3.3.3\r\n", XFF, "1.1.1.1");
	find_is("X-Real-IP: 2.2.2.2\r\nX-Forwarded-For: 1.1.1.1, 10.0.0.1\r\n"
	    "X-Real-IP: 3.3.3.3\r\n", "x-real-ip", "3.3.3.3");
	find_is("X-Forwarded-For: 1.1.1.1\r\nX-Real-IP: 10.0.0.7\r\n",
	    "x-real-ip", "10.0.0.7");
}

/* Appends ", 10.0.0.i" for i in [lo, hi] to buf at *off. */
static void
chain(char *buf, size_t len, size_t *off, int lo, int hi, const char *sep)
{
	int	 i, n;

	for (i = lo; i <= hi; i++) {
		n = snprintf(buf + *off, len - *off, "%s10.0.%d.%d",
		    *off == 0 ? "" : sep, i / 256, i % 256);
		assert_true(n > 0 && (size_t)n < len - *off);
		*off += (size_t)n;
	}
}

/*
 * At most REALIP_MAX_HOPS non-empty entries are read.  realip_find()
 * counts an entry before reading it and, on the 65th, returns what the
 * 64th gave: in a chain of trusted hops longer than 64, the 64th from the
 * right.  Empty entries are not counted; lines share the count.
 */
static void
test_find_hops(void **state)
{
	static const char *const tr[] = { "10.0.0.0/8", NULL };
	static char	 hdr[4096], v[3072];
	size_t		 off;

	(void)state;
	assert_int_equal(REALIP_MAX_HOPS, 64);
	trust(tr);

	/* 100 trusted: 10.0.0.1 .. 10.0.0.100; the 64th from the right. */
	off = 0;
	chain(v, sizeof(v), &off, 1, 100, ", ");
	snprintf(hdr, sizeof(hdr), "X-Forwarded-For: %s\r\n", v);
	find_is(hdr, XFF, "10.0.0.37");

	/* Exactly 64 trusted: all read, the leftmost. */
	off = 0;
	chain(v, sizeof(v), &off, 1, 64, ", ");
	snprintf(hdr, sizeof(hdr), "X-Forwarded-For: %s\r\n", v);
	find_is(hdr, XFF, "10.0.0.1");

	/* 63 trusted behind a client: the client is the 64th, read. */
	off = 0;
	chain(v, sizeof(v), &off, 1, 63, ", ");
	snprintf(hdr, sizeof(hdr), "X-Forwarded-For: 1.1.1.1, %s\r\n", v);
	find_is(hdr, XFF, "1.1.1.1");

	/* 64 trusted behind a client: the client is the 65th, not read. */
	off = 0;
	chain(v, sizeof(v), &off, 1, 64, ", ");
	snprintf(hdr, sizeof(hdr), "X-Forwarded-For: 1.1.1.1, %s\r\n", v);
	find_is(hdr, XFF, "10.0.0.1");

	/* Nor is junk past the bound: the 64th is still the answer. */
	snprintf(hdr, sizeof(hdr), "X-Forwarded-For: junk, %s\r\n", v);
	find_is(hdr, XFF, "10.0.0.1");

	/* Empty entries are not hops. */
	off = 0;
	chain(v, sizeof(v), &off, 1, 64, ", , ,");
	snprintf(hdr, sizeof(hdr), "X-Forwarded-For: 1.1.1.1, %s,,\r\n", v);
	find_is(hdr, XFF, "10.0.0.1");
	off = 0;
	chain(v, sizeof(v), &off, 1, 63, ",,");
	snprintf(hdr, sizeof(hdr), "X-Forwarded-For: 1.1.1.1, %s,,\r\n", v);
	find_is(hdr, XFF, "1.1.1.1");

	/* The count goes across lines: 40 + 40 trusted, 64th from right. */
	off = 0;
	chain(v, sizeof(v), &off, 1, 40, ", ");
	snprintf(hdr, sizeof(hdr), "X-Forwarded-For: %s\r\n", v);
	off = 0;
	chain(v, sizeof(v), &off, 41, 80, ", ");
	snprintf(hdr + strlen(hdr), sizeof(hdr) - strlen(hdr),
	    "X-Forwarded-For: %s\r\n", v);
	find_is(hdr, XFF, "10.0.0.17");
}

/*
 * Text with a NUL inside is refused, not cut short at it (inet_pton would
 * stop there); an IPv4-mapped address leaves no bytes behind its IPv4
 * ones, so equal CIDRs are equal byte for byte.
 */
static void
test_nul_and_mapped_bytes(void **state)
{
	struct cidr	 a, b;
	uint8_t		 out[16];
	char		 err[256];

	(void)state;
	assert_int_equal(realip_addr("1.2.3.4\0junk", 12, out), 0);
	assert_int_equal(realip_addr("::1\0zz:zz", 9, out), 0);
	assert_int_equal(realip_addr("1.2.3.4\0", 8, out), 0);
	assert_int_equal(cidr_parse("10.0.0.0\0garbage/8", 18, &a, err,
	    sizeof(err)), -1);
	assert_int_equal(cidr_parse("10.0.0.0/8\0", 11, &a, err, sizeof(err)),
	    -1);
	assert_int_equal(cidr_parse("::ffff:10.0.0.0/104", 19, &a, err,
	    sizeof(err)), 0);
	assert_int_equal(cidr_parse("10.0.0.0/8", 10, &b, err, sizeof(err)), 0);
	assert_memory_equal(&a, &b, sizeof(a));
	memset(out, 0xaa, sizeof(out));
	assert_int_equal(realip_addr("::ffff:192.0.2.1", 16, out), 4);
	assert_memory_equal(out, "\xc0\x00\x02\x01\0\0\0\0\0\0\0\0\0\0\0\0",
	    16);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cidr_parse_ok),
		cmocka_unit_test(test_cidr_parse_bad),
		cmocka_unit_test(test_cidr_match),
		cmocka_unit_test(test_cidr_format),
		cmocka_unit_test(test_realip_addr),
		cmocka_unit_test(test_find_walk),
		cmocka_unit_test(test_find_v6),
		cmocka_unit_test(test_find_lines),
		cmocka_unit_test(test_find_empty),
		cmocka_unit_test(test_find_name),
		cmocka_unit_test(test_find_hops),
		cmocka_unit_test(test_nul_and_mapped_bytes),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
