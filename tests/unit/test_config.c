/*
 * Unit tests for the configuration parser: every directive's default and a
 * value set in the file, and every error with its exact message and line.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/sha.h>

#include "config.h"
#include "http.h"
#include "jwk.h"
#include "jwt.h"
#include "keystore.h"
#include "route.h"
#include "tls.h"
#include "tlstest.h"
#include "util.h"

#define NAME	"test.conf"

/* Parse text as NAME; fail the test, showing the error, if it does not. */
static struct config *
parse_ok(const char *text)
{
	struct config	*c;
	char		 err[CONFIG_ERRLEN] = "";

	c = config_parse(text, NAME, err, sizeof(err));
	if (c == NULL)
		fail_msg("config did not parse: %s\n--- config ---\n%s", err,
		    text);
	return (c);
}

/* The route matching (mbit, path), NULL if none; a match error fails. */
static const struct route *
matched(const struct route_table *rt, int mbit, const char *path, size_t len)
{
	const struct route	*r;
	char			 err[256];

	if (route_match(rt, mbit, path, len, &r, err, sizeof(err)) == -1)
		fail_msg("%s", err);
	return (r);
}

/* Parse text that must fail; return the error in err. */
static void
parse_fail(const char *text, char *err, size_t errlen)
{
	struct config	*c;

	err[0] = '\0';
	if ((c = config_parse(text, NAME, err, errlen)) != NULL) {
		config_free(c);
		fail_msg("config parsed but should not have:\n%s", text);
	}
}

/* cwd + "/" + rel, the way the parser makes a relative path absolute. */
static void
abs_of(char *buf, size_t len, const char *rel)
{
	char	 cwd[PATH_MAX];

	assert_non_null(getcwd(cwd, sizeof(cwd)));
	snprintf(buf, len, "%s/%s", strcmp(cwd, "/") == 0 ? "" : cwd, rel);
}

/* Port of a listen address, host order. */
static int
la_port(const struct listen_addr *la)
{
	const struct sockaddr_in6	*sin6;
	const struct sockaddr_in	*sin;

	sin6 = (const struct sockaddr_in6 *)&la->la_ss;
	sin = (const struct sockaddr_in *)&la->la_ss;
	if (la->la_ss.ss_family == AF_INET6)
		return (ntohs(sin6->sin6_port));
	return (ntohs(sin->sin_port));
}

/* An empty file gives every default of the table. */
static void
test_defaults(void **state)
{
	struct config		*c = parse_ok("");
	const struct sockaddr_in *sin;
	int			 ncpu = util_ncpus();

	assert_string_equal(c->c_path, NAME);
	assert_int_equal(c->c_nlisten, 1);
	assert_string_equal(c->c_listen[0].la_name, "127.0.0.1:8080");
	assert_int_equal(c->c_listen[0].la_line, 0);
	sin = (const struct sockaddr_in *)&c->c_listen[0].la_ss;
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
	assert_int_equal(ntohs(sin->sin_port), 8080);
	assert_int_equal(c->c_listen[0].la_sslen, sizeof(struct sockaddr_in));
	assert_int_equal(c->c_workers,
	    ncpu > CONFIG_MAX_WORKERS ? CONFIG_MAX_WORKERS : ncpu);
	assert_null(c->c_user);
	assert_string_equal(c->c_pidfile,
	    KEYGATE_RUNSTATEDIR "/keygate/keygated.pid");
	assert_string_equal(c->c_state_dir,
	    KEYGATE_LOCALSTATEDIR "/lib/keygate");
	assert_string_equal(c->c_error_log, "syslog");
	assert_null(c->c_access_log);
	assert_int_equal(c->c_log_level, LOGLEVEL_INFO);
	assert_int_equal(c->c_header_timeout, 10000);
	assert_int_equal(c->c_body_timeout, 30000);
	assert_int_equal(c->c_body_deadline, 60000);
	assert_int_equal(c->c_keepalive_timeout, 75000);
	assert_int_equal(c->c_send_timeout, 30000);
	assert_int_equal(c->c_shutdown_timeout, 10000);
	assert_int_equal(c->c_max_request_line, 8192);
	assert_int_equal(c->c_max_header_size, 16384);
	assert_int_equal(c->c_max_body_size, 1048576);
	assert_int_equal(c->c_max_connections, 4096);
	assert_int_equal(c->c_keepalive_requests, 10000);
	assert_int_equal(c->c_nupstreams, 0);
	assert_null(c->c_upstreams);
	assert_int_equal(c->c_routes.rt_nroutes, 0);
	assert_non_null(c->c_routes.rt_md);
	config_free(c);
}

/* Every scalar directive set to a value other than its default. */
static void
test_values(void **state)
{
	struct config	*c;
	struct passwd	*pw;
	char		 text[2048];

	assert_non_null(pw = getpwuid(getuid()));
	snprintf(text, sizeof(text),
	    "workers 3\n"
	    "user %s\n"
	    "pidfile /tmp/kg.pid\n"
	    "state_dir /srv/kg\n"
	    "error_log /var/log/kg.err\n"
	    "access_log /var/log/kg.json\n"
	    "log_level debug\n"
	    "header_timeout 500ms\n"
	    "body_timeout 2m\n"
	    "body_deadline 0\n"
	    "keepalive_timeout 0\n"
	    "send_timeout 1h\n"
	    "shutdown_timeout 7\n"
	    "max_request_line 64k\n"
	    "max_header_size 1m\n"
	    "max_body_size 1t\n"
	    "max_connections 1000000\n"
	    "keepalive_requests 1\n", pw->pw_name);
	c = parse_ok(text);
	assert_int_equal(c->c_workers, 3);
	assert_string_equal(c->c_user, pw->pw_name);
	assert_int_equal(c->c_uid, pw->pw_uid);
	assert_int_equal(c->c_gid, pw->pw_gid);
	assert_string_equal(c->c_pidfile, "/tmp/kg.pid");
	assert_string_equal(c->c_state_dir, "/srv/kg");
	assert_string_equal(c->c_error_log, "/var/log/kg.err");
	assert_string_equal(c->c_access_log, "/var/log/kg.json");
	assert_int_equal(c->c_log_level, LOGLEVEL_DEBUG);
	assert_int_equal(c->c_header_timeout, 500);
	assert_int_equal(c->c_body_timeout, 120000);
	assert_int_equal(c->c_body_deadline, 0);
	assert_int_equal(c->c_keepalive_timeout, 0);
	assert_int_equal(c->c_send_timeout, 3600000);
	assert_int_equal(c->c_shutdown_timeout, 7000);
	assert_int_equal(c->c_max_request_line, 65536);
	assert_int_equal(c->c_max_header_size, 1048576);
	assert_int_equal(c->c_max_body_size, 1099511627776ULL);
	assert_int_equal(c->c_max_connections, 1000000);
	assert_int_equal(c->c_keepalive_requests, 1);
	assert_int_equal(c->c_nlisten, 1);	/* the default listener */
	config_free(c);
}

/* Keywords of the directives that take one, and the log levels. */
static void
test_keywords(void **state)
{
	static const char *const lv[] = { "error", "warn", "info", "debug" };
	struct config	*c;
	char		 text[128];
	int		 i;

	c = parse_ok("error_log stderr\naccess_log off\nworkers auto\n");
	assert_string_equal(c->c_error_log, "stderr");
	assert_null(c->c_access_log);
	assert_true(c->c_workers >= 1 && c->c_workers <= CONFIG_MAX_WORKERS);
	config_free(c);
	c = parse_ok("error_log syslog\nworkers 64\n");
	assert_string_equal(c->c_error_log, "syslog");
	assert_int_equal(c->c_workers, 64);
	config_free(c);
	for (i = 0; i < 4; i++) {
		snprintf(text, sizeof(text), "log_level %s\n", lv[i]);
		c = parse_ok(text);
		assert_int_equal(c->c_log_level, LOGLEVEL_ERROR + i);
		config_free(c);
	}
}

/* Relative paths are made absolute against the current directory. */
static void
test_relative_paths(void **state)
{
	struct config	*c;
	char		 want[PATH_MAX + 64];

	c = parse_ok("pidfile run/kg.pid\nstate_dir ./state\n"
	    "error_log logs/err\naccess_log access.json\n");
	abs_of(want, sizeof(want), "run/kg.pid");
	assert_string_equal(c->c_pidfile, want);
	abs_of(want, sizeof(want), "state");
	assert_string_equal(c->c_state_dir, want);
	abs_of(want, sizeof(want), "logs/err");
	assert_string_equal(c->c_error_log, want);
	abs_of(want, sizeof(want), "access.json");
	assert_string_equal(c->c_access_log, want);
	assert_true(c->c_pidfile[0] == '/');
	config_free(c);
}

/* The four forms of a listen address, port 0, and several listeners. */
static void
test_listen(void **state)
{
	struct config			*c;
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;

	c = parse_ok("listen 127.0.0.1:8080\nlisten [::1]:8080\n"
	    "listen *:9000\nlisten 9001\nlisten 10.1.2.3:0\n");
	assert_int_equal(c->c_nlisten, 5);
	assert_string_equal(c->c_listen[0].la_name, "127.0.0.1:8080");
	assert_string_equal(c->c_listen[1].la_name, "[::1]:8080");
	assert_string_equal(c->c_listen[2].la_name, "*:9000");
	assert_string_equal(c->c_listen[3].la_name, "9001");
	assert_int_equal(c->c_listen[4].la_line, 5);
	sin6 = (const struct sockaddr_in6 *)&c->c_listen[1].la_ss;
	assert_int_equal(sin6->sin6_family, AF_INET6);
	assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
	assert_int_equal(c->c_listen[1].la_sslen, sizeof(*sin6));
	assert_int_equal(la_port(&c->c_listen[1]), 8080);
	sin = (const struct sockaddr_in *)&c->c_listen[2].la_ss;
	assert_int_equal(sin->sin_addr.s_addr, htonl(INADDR_ANY));
	assert_int_equal(la_port(&c->c_listen[2]), 9000);
	sin = (const struct sockaddr_in *)&c->c_listen[3].la_ss;
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(sin->sin_addr.s_addr, htonl(INADDR_ANY));
	assert_int_equal(la_port(&c->c_listen[3]), 9001);
	sin = (const struct sockaddr_in *)&c->c_listen[4].la_ss;
	assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x0a010203);
	assert_int_equal(la_port(&c->c_listen[4]), 0);
	config_free(c);
}

/* config_parse_addr on its own, good and bad. */
static void
test_parse_addr(void **state)
{
	static const struct {
		const char	*s;
		int		 ok, family, port;
	} t[] = {
		{ "127.0.0.1:80", 1, AF_INET, 80 },
		{ "[::]:65535", 1, AF_INET6, 65535 },
		{ "[2001:db8::1]:443", 1, AF_INET6, 443 },
		{ "*:1", 1, AF_INET, 1 },
		{ "0", 1, AF_INET, 0 },
		{ "65536", 0, 0, 0 },
		{ "123456", 0, 0, 0 },
		{ "", 0, 0, 0 },
		{ ":80", 0, 0, 0 },
		{ "1.2.3.4:", 0, 0, 0 },
		{ "1.2.3.4", 0, 0, 0 },
		{ "::1:80", 0, 0, 0 },
		{ "[::1]", 0, 0, 0 },
		{ "[::1]80", 0, 0, 0 },
		{ "[1.2.3.4]:80", 0, 0, 0 },
		{ "[]:80", 0, 0, 0 },
		{ "localhost:80", 0, 0, 0 },
		{ "1.2.3.4:8o", 0, 0, 0 },
		{ "1.2.3.4:-1", 0, 0, 0 },
		{ "1.2.3.4:+80", 0, 0, 0 },
		{ "*:80:80", 0, 0, 0 },
	};
	struct sockaddr_storage	 ss;
	struct listen_addr	 la;
	socklen_t		 len;
	size_t			 i;
	int			 rc;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		rc = config_parse_addr(t[i].s, &ss, &len);
		if (rc != (t[i].ok ? 0 : -1))
			fail_msg("config_parse_addr(\"%s\") = %d", t[i].s, rc);
		if (!t[i].ok)
			continue;
		assert_int_equal(ss.ss_family, t[i].family);
		memcpy(&la.la_ss, &ss, sizeof(ss));
		assert_int_equal(la_port(&la), t[i].port);
	}
}

/* Durations and sizes: units, bare numbers, garbage and overflow. */
static void
test_parse_numbers(void **state)
{
	static const struct {
		const char	*s;
		int		 ok;
		int		 ms;
	} d[] = {
		{ "10s", 1, 10000 }, { "500ms", 1, 500 }, { "2m", 1, 120000 },
		{ "1h", 1, 3600000 }, { "7", 1, 7000 }, { "0", 1, 0 },
		{ "0ms", 1, 0 }, { "596h", 1, 2145600000 },
		{ "597h", 0, 0 }, { "2147483647ms", 1, 2147483647 },
		{ "2147483648ms", 0, 0 }, { "99999999999999999999999s", 0, 0 },
		{ "", 0, 0 }, { "s", 0, 0 }, { "10x", 0, 0 }, { "-1s", 0, 0 },
		{ " 1s", 0, 0 }, { "1s ", 0, 0 }, { "1.5s", 0, 0 },
		{ "1S", 0, 0 }, { "1d", 0, 0 }, { "1mss", 0, 0 },
	};
	static const struct {
		const char	*s;
		int		 ok;
		uint64_t	 v;
	} z[] = {
		{ "512", 1, 512 }, { "8k", 1, 8192 }, { "8K", 1, 8192 },
		{ "1m", 1, 1048576 }, { "1M", 1, 1048576 },
		{ "1g", 1, 1073741824 }, { "2T", 1, 2199023255552ULL },
		{ "0", 1, 0 }, { "18446744073709551615", 1, UINT64_MAX },
		{ "18446744073709551616", 0, 0 }, { "16777216t", 0, 0 },
		{ "16777215t", 1, 16777215ULL << 40 },
		{ "8kb", 0, 0 }, { "k", 0, 0 }, { "", 0, 0 }, { "-1", 0, 0 },
		{ "1 k", 0, 0 }, { "0x10", 0, 0 },
	};
	uint64_t	 v;
	size_t		 i;
	int		 ms, rc;

	for (i = 0; i < sizeof(d) / sizeof(d[0]); i++) {
		ms = -1;
		rc = config_parse_duration_ms(d[i].s, &ms);
		if (rc != (d[i].ok ? 0 : -1) || (d[i].ok && ms != d[i].ms))
			fail_msg("duration \"%s\": rc %d ms %d", d[i].s, rc,
			    ms);
	}
	for (i = 0; i < sizeof(z) / sizeof(z[0]); i++) {
		v = 1;
		rc = config_parse_size(z[i].s, &v);
		if (rc != (z[i].ok ? 0 : -1) || (z[i].ok && v != z[i].v))
			fail_msg("size \"%s\": rc %d v %llu", z[i].s, rc,
			    (unsigned long long)v);
	}
}

/* Comments, quoting, blank lines, tabs and CRLF line endings. */
static void
test_lexing(void **state)
{
	struct config	*c;
	const struct route *r;

	c = parse_ok(
	    "# a comment line\r\n"
	    "\r\n"
	    "   \t  \r\n"
	    "upstream\tapi   echo   # trailing comment\r\n"
	    "route GET \"^/a b#c$\" auth=anonymous\r\n"
	    "route GET \"^/q\\\"\\\\\\d$\" auth=deny\r\n"
	    "route GET ^/x#y auth=deny # comment\r\n"
	    "workers \"5\"\r\n"
	    "pidfile \"/tmp/with space.pid\"\r\n"
	    "state_dir \"/tmp/#hash\"");	/* no final newline */
	assert_int_equal(c->c_workers, 5);
	assert_string_equal(c->c_pidfile, "/tmp/with space.pid");
	assert_string_equal(c->c_state_dir, "/tmp/#hash");
	assert_int_equal(c->c_routes.rt_nroutes, 3);
	assert_int_equal(c->c_routes.rt_routes[2].r_line, 7);
	config_free(c);

	c = parse_ok("upstream api echo\n"
	    "route GET \"^/a b#c$\" auth=anonymous\n"
	    "route GET \"^/q\\\"\\\\\\\\d$\" auth=deny\n"
	    "route GET ^/x#y auth=deny # comment\n"
	    "route GET \"^/n\\d$\" auth=deny\n");
	r = &c->c_routes.rt_routes[0];
	assert_string_equal(r->r_pattern, "^/a b#c$");
	assert_int_equal(r->r_line, 2);
	assert_ptr_equal(matched(&c->c_routes, HTTP_M_GET, "/a b#c", 6),
	    r);
	/* In quotes, \" is " and \\ is \ ... */
	r = &c->c_routes.rt_routes[1];
	assert_string_equal(r->r_pattern, "^/q\"\\\\d$");
	assert_ptr_equal(matched(&c->c_routes, HTTP_M_GET, "/q\"\\d", 5),
	    r);
	r = &c->c_routes.rt_routes[2];
	assert_string_equal(r->r_pattern, "^/x#y");
	/* ... and any other backslash is kept for the regex. */
	r = &c->c_routes.rt_routes[3];
	assert_string_equal(r->r_pattern, "^/n\\d$");
	assert_ptr_equal(matched(&c->c_routes, HTTP_M_GET, "/n7", 3), r);
	config_free(c);
}

/* An auth= value with a # in the middle of the word is not a comment. */
static void
test_hash_inside_word(void **state)
{
	char	 err[CONFIG_ERRLEN];

	parse_fail("route GET ^/ auth=deny#x\n", err, sizeof(err));
	assert_string_equal(err, NAME ":1: unknown auth scheme \"deny#x\"");
}

/* http:// upstreams: address, defaults and options; proxy directives. */
static void
test_http_upstreams(void **state)
{
	struct config		*c;
	struct sockaddr_in	*sin;
	struct sockaddr_in6	*sin6;

	c = parse_ok("upstream a http://127.0.0.1:9000\n"
	    "upstream b http://[::1]:81/ max_idle=0 connect_timeout=250ms "
	    "read_timeout=2s\n"
	    "upstream c http://localhost\n"
	    "verify_path /_keygate/verify\n"
	    "forward_credentials on\n"
	    "route * ^/ auth=anonymous upstream=b\n");
	assert_int_equal(c->c_nupstreams, 3);
	assert_int_equal(c->c_upstreams[0].u_type, UPSTREAM_HTTP);
	sin = (struct sockaddr_in *)&c->c_upstreams[0].u_servers[0].us_ss;
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(ntohs(sin->sin_port), 9000);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x7f000001);
	assert_int_equal(c->c_upstreams[0].u_max_idle, UPSTREAM_MAX_IDLE);
	assert_int_equal(c->c_upstreams[0].u_connect_timeout, 5000);
	assert_int_equal(c->c_upstreams[0].u_read_timeout, 60000);
	sin6 = (struct sockaddr_in6 *)&c->c_upstreams[1].u_servers[0].us_ss;
	assert_int_equal(sin6->sin6_family, AF_INET6);
	assert_int_equal(ntohs(sin6->sin6_port), 81);
	assert_int_equal(c->c_upstreams[1].u_max_idle, 0);
	assert_int_equal(c->c_upstreams[1].u_connect_timeout, 250);
	assert_int_equal(c->c_upstreams[1].u_read_timeout, 2000);
	assert_int_equal(c->c_upstreams[1].u_index, 1);
	sin = (struct sockaddr_in *)&c->c_upstreams[2].u_servers[0].us_ss;
	assert_int_equal(ntohs(sin->sin_port), 80);	/* default port */
	assert_ptr_equal(c->c_routes.rt_routes[0].r_upstream,
	    &c->c_upstreams[1]);
	assert_string_equal(c->c_verify_path, "/_keygate/verify");
	assert_int_equal(c->c_forward_credentials, 1);
	config_free(c);

	c = parse_ok("upstream e echo\nmerge_slashes off\n"
	    "underscores_in_headers on\n");
	assert_int_equal(c->c_merge_slashes, 0);
	assert_int_equal(c->c_underscores_in_headers, 1);
	config_free(c);

	c = parse_ok("upstream e echo\n");
	assert_null(c->c_verify_path);
	assert_int_equal(c->c_forward_credentials, 0);
	assert_int_equal(c->c_merge_slashes, 1);
	assert_int_equal(c->c_underscores_in_headers, 0);
	assert_int_equal(c->c_upstreams[0].u_type, UPSTREAM_ECHO);
	config_free(c);
}

/* Upstreams, default upstream, upstream= naming one defined later. */
static void
test_upstreams_and_routes(void **state)
{
	struct config		*c;
	const struct route	*r;

	c = parse_ok(
	    "route GET,HEAD ^/store(/|$) auth=anonymous upstream=late\n"
	    "upstream first echo\n"
	    "route * ^/open auth=anonymous,deny\n"
	    "route * .* auth=deny\n"
	    "route POST ^/d auth=deny upstream=late\n"
	    "upstream late echo\n"
	    "upstream A-z_0.9 echo\n");
	assert_int_equal(c->c_nupstreams, 3);
	assert_string_equal(c->c_upstreams[0].u_name, "first");
	assert_int_equal(c->c_upstreams[0].u_type, UPSTREAM_ECHO);
	assert_int_equal(c->c_upstreams[0].u_line, 2);
	assert_ptr_equal(config_upstream(c, "late"), &c->c_upstreams[1]);
	assert_ptr_equal(config_upstream(c, "A-z_0.9"), &c->c_upstreams[2]);
	assert_null(config_upstream(c, "LATE"));
	assert_int_equal(c->c_routes.rt_nroutes, 4);

	r = &c->c_routes.rt_routes[0];
	assert_int_equal(r->r_methods, HTTP_M_GET | HTTP_M_HEAD);
	assert_ptr_equal(r->r_upstream, &c->c_upstreams[1]);
	assert_int_equal(r->r_nauth, 1);
	assert_int_equal(r->r_auth[0], ROUTE_AUTH_ANONYMOUS);
	assert_int_equal(r->r_line, 1);
	assert_int_equal(r->r_index, 1);

	r = &c->c_routes.rt_routes[1];
	assert_int_equal(r->r_methods, HTTP_M_ANY);
	assert_ptr_equal(r->r_upstream, &c->c_upstreams[0]);
	assert_int_equal(r->r_nauth, 2);
	assert_int_equal(r->r_auth[1], ROUTE_AUTH_DENY);
	assert_int_equal(r->r_index, 2);

	r = &c->c_routes.rt_routes[2];		/* deny only: no upstream */
	assert_null(r->r_upstream);
	assert_int_equal(r->r_line, 4);
	r = &c->c_routes.rt_routes[3];		/* unless one is named */
	assert_ptr_equal(r->r_upstream, &c->c_upstreams[1]);
	assert_int_equal(r->r_index, 4);

	assert_ptr_equal(matched(&c->c_routes, HTTP_M_GET, "/store", 6),
	    &c->c_routes.rt_routes[0]);
	assert_ptr_equal(matched(&c->c_routes, HTTP_M_POST, "/store", 6),
	    &c->c_routes.rt_routes[2]);
	config_free(c);

	/* Deny-only routes need no upstream at all. */
	c = parse_ok("route * .* auth=deny\n");
	assert_null(c->c_routes.rt_routes[0].r_upstream);
	config_free(c);
}

/* Limits on how many listeners, upstreams and routes there may be. */
static void
test_counts(void **state)
{
	struct config	*c;
	char		*text, err[CONFIG_ERRLEN];
	size_t		 len = 300000, n;
	int		 i;

	assert_non_null(text = malloc(len));
	for (n = 0, i = 0; i < 16; i++)
		n += snprintf(text + n, len - n, "listen %d\n", 1000 + i);
	c = parse_ok(text);
	assert_int_equal(c->c_nlisten, 16);
	config_free(c);
	snprintf(text + n, len - n, "listen 2000\n");
	parse_fail(text, err, sizeof(err));
	assert_string_equal(err, NAME ":17: too many listen directives "
	    "(max 16)");

	for (n = 0, i = 0; i < 64; i++)
		n += snprintf(text + n, len - n, "upstream u%d echo\n", i);
	c = parse_ok(text);
	assert_int_equal(c->c_nupstreams, 64);
	config_free(c);
	snprintf(text + n, len - n, "upstream u64 echo\n");
	parse_fail(text, err, sizeof(err));
	assert_string_equal(err, NAME ":65: too many upstreams (max 64)");

	for (n = 0, i = 0; i < 4096; i++)
		n += snprintf(text + n, len - n, "route GET ^/%d$ auth=deny\n",
		    i);
	c = parse_ok(text);
	assert_int_equal(c->c_routes.rt_nroutes, 4096);
	assert_int_equal(c->c_routes.rt_routes[4095].r_index, 4096);
	assert_ptr_equal(matched(&c->c_routes, HTTP_M_GET, "/4000", 5),
	    &c->c_routes.rt_routes[4000]);
	config_free(c);
	snprintf(text + n, len - n, "route GET ^/x auth=deny\n");
	parse_fail(text, err, sizeof(err));
	assert_string_equal(err, NAME ":4097: too many routes (max 4096)");
	free(text);
}

/* Text that must be refused, and exactly what the user is told. */
/* A provider with what it needs; one with a tenant template. */
#define JWT_P	"jwt_provider p issuer=https://idp.example/ audience=api://x"
#define JWT_E	"jwt_provider e issuer=https://login.microsoftonline.com/" \
		"{tenantid}/v2.0 audience=api://x"
#define GUID	"12345678-9abc-def0-1234-56789abcdef0"
#define GUID_UP	"12345678-9ABC-DEF0-1234-56789ABCDEF0"
#define C65	"a1234567890123456789012345678901234567890123456789012345678901234"

static const struct {
	const char	*text;
	const char	*err;
} bad[] = {
	/* Unknown directives, argument counts, duplicates. */
	{ "bogus 1\n", NAME ":1: unknown directive \"bogus\"" },
	{ "\"\" x\n", NAME ":1: unknown directive \"\"" },
	{ "Workers 2\n", NAME ":1: unknown directive \"Workers\"" },
	{ "\n# c\n\nworkers\n", NAME ":4: \"workers\" takes 1 argument" },
	{ "workers 1 2\n", NAME ":1: \"workers\" takes 1 argument" },
	{ "upstream a\n", NAME ":1: \"upstream\" takes at least 2 arguments" },
	{ "upstream a echo x\n", NAME ":1: upstream \"a\": an echo upstream "
	    "takes no options" },
	{ "route GET ^/\n", NAME ":1: \"route\" takes at least 3 arguments" },
	{ "listen\n", NAME ":1: \"listen\" takes 1 or 2 arguments" },
	{ "listen 1 tls x\n", NAME ":1: \"listen\" takes 1 or 2 arguments" },
	{ "workers 2\n\nworkers 3\n",
	    NAME ":3: duplicate directive \"workers\" (first at line 1)" },
	{ "max_body_size 1\n#\nmax_body_size 1\n",
	    NAME ":3: duplicate directive \"max_body_size\" (first at line 1)" },
	{ "log_level info\nlog_level info\n",
	    NAME ":2: duplicate directive \"log_level\" (first at line 1)" },
	/* Lexical errors. */
	{ "workers \"2\n", NAME ":1: unterminated quoted string" },
	{ "route GET \"^/a\\\" auth=deny\n",
	    NAME ":1: unterminated quoted string" },
	{ "pidfile \"/a\"b\n", NAME ":1: missing space after closing quote" },
	{ "workers 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 "
	    "22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 "
	    "43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63 "
	    "64 65 66 67 68 69 70 71 72 73 74 75 76 77 78 79 80 81 82 83 84 "
	    "85 86 87 88 89 90 91 92 93 94 95 96 97 98 99 100 101 102 103 "
	    "104 105 106 107 108 109 110 111 112 113 114 115 116 117 118 "
	    "119 120 121 122 123 124 125 126 127 128\n",
	    NAME ":1: too many words on one line (max 128)" },
	{ "# x\r\nworkers 2\r\nbogus\r\n", NAME ":3: unknown directive \"bogus\"" },
	/* listen */
	{ "listen 127.0.0.1:8080 tls\n", NAME ":1: listen 127.0.0.1:8080 tls: "
	    "no tls_certificate is configured" },
	{ "listen 8080\n\nlisten 8443 tls\n", NAME ":3: listen 8443 tls: no "
	    "tls_certificate is configured" },
	{ "listen 8080 ssl\n", NAME ":1: \"listen\": unknown parameter \"ssl\"" },
	{ "listen 1.2.3:80\n", NAME ":1: \"listen\": invalid address "
	    "\"1.2.3:80\" (expected IP:PORT, [IPv6]:PORT, *:PORT or PORT)" },
	{ "listen 65536\n", NAME ":1: \"listen\": invalid address \"65536\" "
	    "(expected IP:PORT, [IPv6]:PORT, *:PORT or PORT)" },
	{ "listen [::1]8080\n", NAME ":1: \"listen\": invalid address "
	    "\"[::1]8080\" (expected IP:PORT, [IPv6]:PORT, *:PORT or PORT)" },
	{ "listen *:80\nlisten 0.0.0.0:80\n", NAME ":2: duplicate listen "
	    "address \"0.0.0.0:80\" (first at line 1)" },
	{ "listen [::1]:80\nlisten [0:0::1]:80\n", NAME ":2: duplicate listen "
	    "address \"[0:0::1]:80\" (first at line 1)" },
	/* workers, user, paths, log_level */
	{ "workers abc\n",
	    NAME ":1: \"workers\": invalid value \"abc\" (expected auto or 1..64)" },
	{ "workers 0\n",
	    NAME ":1: \"workers\": invalid value \"0\" (expected auto or 1..64)" },
	{ "workers 65\n",
	    NAME ":1: \"workers\": invalid value \"65\" (expected auto or 1..64)" },
	{ "user no_such_user_kg\n", NAME ":1: unknown user \"no_such_user_kg\"" },
	{ "pidfile \"\"\n", NAME ":1: \"pidfile\": empty path" },
	{ "access_log \"\"\n", NAME ":1: \"access_log\": empty path" },
	{ "log_level verbose\n", NAME ":1: \"log_level\": invalid value "
	    "\"verbose\" (expected error, warn, info or debug)" },
	/* Durations. */
	{ "header_timeout 10x\n",
	    NAME ":1: \"header_timeout\": invalid duration \"10x\"" },
	{ "header_timeout 1.5s\n",
	    NAME ":1: \"header_timeout\": invalid duration \"1.5s\"" },
	{ "shutdown_timeout -1\n",
	    NAME ":1: \"shutdown_timeout\": invalid duration \"-1\"" },
	{ "header_timeout 0\n", NAME ":1: \"header_timeout\": \"0\" is out "
	    "of range (1ms..1h)" },
	{ "body_timeout 2h\n", NAME ":1: \"body_timeout\": \"2h\" is out of "
	    "range (1ms..1h)" },
	{ "keepalive_timeout 3601s\n", NAME ":1: \"keepalive_timeout\": "
	    "\"3601s\" is out of range (0..1h)" },
	{ "body_deadline 61m\n", NAME ":1: \"body_deadline\": \"61m\" is out "
	    "of range (0..1h)" },
	{ "body_deadline 5x\n",
	    NAME ":1: \"body_deadline\": invalid duration \"5x\"" },
	{ "send_timeout 99999999999999999999999h\n", NAME ":1: "
	    "\"send_timeout\": \"99999999999999999999999h\" is out of range "
	    "(1ms..1h)" },
	/* Sizes and integers. */
	{ "max_request_line 100\n", NAME ":1: \"max_request_line\": \"100\" "
	    "is out of range (256..64k)" },
	{ "max_header_size 2m\n", NAME ":1: \"max_header_size\": \"2m\" is "
	    "out of range (1k..1m)" },
	{ "max_body_size 2t\n", NAME ":1: \"max_body_size\": \"2t\" is out of "
	    "range (0..1t)" },
	{ "max_body_size 10kb\n",
	    NAME ":1: \"max_body_size\": invalid size \"10kb\"" },
	{ "max_body_size 99999999999999999999\n", NAME ":1: \"max_body_size\": "
	    "\"99999999999999999999\" is out of range (0..1t)" },
	{ "max_connections 0\n", NAME ":1: \"max_connections\": \"0\" is out "
	    "of range (1..1000000)" },
	{ "keepalive_requests 100000001\n", NAME ":1: \"keepalive_requests\": "
	    "\"100000001\" is out of range (1..100000000)" },
	{ "keepalive_requests x\n",
	    NAME ":1: \"keepalive_requests\": invalid number \"x\"" },
	{ "max_connections 10k\n",
	    NAME ":1: \"max_connections\": invalid number \"10k\"" },
	/* max_header_size against max_request_line, after the whole file. */
	{ "max_request_line 32k\n", NAME ":1: max_header_size (16k) must not "
	    "be less than max_request_line (32k)" },
	{ "\nmax_header_size 4k\n", NAME ":2: max_header_size (4k) must not "
	    "be less than max_request_line (8k)" },
	{ "max_header_size 4k\nmax_request_line 8k\n", NAME ":2: "
	    "max_header_size (4k) must not be less than max_request_line (8k)" },
	{ "max_request_line 16k\n\nmax_header_size 1025\n", NAME ":3: "
	    "max_header_size (1025) must not be less than max_request_line "
	    "(16k)" },
	/* upstream */
	{ "upstream a echo\nupstream a echo\n",
	    NAME ":2: duplicate upstream \"a\" (first at line 1)" },
	{ "upstream api tcp\n", NAME ":1: upstream \"api\": unknown type "
	    "\"tcp\" (expected \"echo\", http://HOST[:PORT] or "
	    "https://HOST[:PORT])" },
	{ "upstream api https://:9000\n", NAME ":1: upstream \"api\": bad "
	    "address in \"https://:9000\"" },
	{ "upstream api https://1.2.3.4:0\n", NAME ":1: upstream \"api\": "
	    "bad port in \"https://1.2.3.4:0\"" },
	{ "upstream a http://1.2.3.4 ca=/etc/ca.pem\n", NAME ":1: upstream "
	    "\"a\": ca= is only for https:// upstreams" },
	{ "upstream a http://1.2.3.4 verify=off\n", NAME ":1: upstream "
	    "\"a\": verify= is only for https:// upstreams" },
	{ "upstream a http://1.2.3.4 sni=a.example\n", NAME ":1: upstream "
	    "\"a\": sni= is only for https:// upstreams" },
	{ "upstream a echo ca=/etc/ca.pem\n", NAME ":1: upstream \"a\": an "
	    "echo upstream takes no options" },
	{ "upstream a https://1.2.3.4 verify=maybe\n", NAME ":1: upstream "
	    "\"a\": invalid verify \"maybe\" (expected on or off)" },
	{ "upstream a https://1.2.3.4 sni=-a.example\n", NAME ":1: upstream "
	    "\"a\": sni \"-a.example\" is not a DNS name" },
	{ "upstream a https://1.2.3.4 sni=a..example\n", NAME ":1: upstream "
	    "\"a\": sni \"a..example\" is not a DNS name" },
	{ "upstream a https://1.2.3.4 sni=a.example.\n", NAME ":1: upstream "
	    "\"a\": sni \"a.example.\" is not a DNS name" },
	{ "upstream a https://1.2.3.4 sni=a_b.example\n", NAME ":1: upstream "
	    "\"a\": sni \"a_b.example\" is not a DNS name" },
	{ "upstream a https://1.2.3.4 sni=\n", NAME ":1: upstream "
	    "\"a\": sni \"\" is not a DNS name" },
	/* Each option once (so sni= and ca= never replace a strdup). */
	{ "upstream a https://1.2.3.4 sni=a.b sni=c.d\n", NAME ":1: upstream "
	    "\"a\": duplicate option \"sni\"" },
	{ "upstream a https://1.2.3.4 ca=/dev/null verify=on ca=/dev/null\n",
	    NAME ":1: upstream \"a\": duplicate option \"ca\"" },
	{ "\nupstream a https://1.2.3.4 ca=/nonexistent/kg/ca.pem\n", NAME ":2: "
	    "upstream \"a\": ca /nonexistent/kg/ca.pem: No such file or "
	    "directory" },
	{ "upstream a https://1.2.3.4 ca=\n", NAME ":1: \"ca\": empty path" },
	/* TLS directives */
	{ "tls_protocols TLSv1.1\n", NAME ":1: \"tls_protocols\": unsupported "
	    "protocol \"TLSv1.1\" (only TLSv1.2 and TLSv1.3 are supported)" },
	{ "tls_protocols TLSv1.3 SSLv3\n", NAME ":1: \"tls_protocols\": "
	    "unsupported protocol \"SSLv3\" (only TLSv1.2 and TLSv1.3 are "
	    "supported)" },
	{ "tls_protocols TLSv1.2 TLSv1.2\n", NAME ":1: \"tls_protocols\": "
	    "TLSv1.2 is given twice" },
	{ "tls_protocols\n", NAME ":1: \"tls_protocols\" takes 1 or 2 "
	    "arguments" },
	{ "tls_protocols TLSv1.2\ntls_protocols TLSv1.3\n", NAME ":2: "
	    "duplicate directive \"tls_protocols\" (first at line 1)" },
	{ "tls_certificate a.pem\n", NAME ":1: \"tls_certificate\" takes 2 "
	    "arguments" },
	{ "tls_certificate \"\" k.pem\n", NAME ":1: \"tls_certificate\": "
	    "empty path" },
	{ "\n\ntls_ciphers NOPE\n", NAME ":3: \"tls_ciphers\": OpenSSL "
	    "rejects \"NOPE\"" },
	{ "tls_ciphersuites TLS_NOPE\n", NAME ":1: \"tls_ciphersuites\": "
	    "OpenSSL rejects \"TLS_NOPE\"" },
	{ "tls_ciphers a b\n", NAME ":1: \"tls_ciphers\" takes 1 argument" },
	{ "tls_session_tickets maybe\n", NAME ":1: \"tls_session_tickets\": "
	    "invalid value \"maybe\" (expected off or on)" },
	{ "admin_listen 8081 ssl\n", NAME ":1: \"admin_listen\": unknown "
	    "parameter \"ssl\"" },
	{ "admin_listen 8081 tls x\n", NAME ":1: \"admin_listen\" takes 1 or "
	    "2 arguments" },
	{ "upstream api http://127.0.0.1:9000/v1\n", NAME ":1: upstream "
	    "\"api\": a path in the URL is not supported "
	    "(\"http://127.0.0.1:9000/v1\")" },
	{ "upstream api http://:9000\n", NAME ":1: upstream \"api\": bad "
	    "address in \"http://:9000\"" },
	{ "upstream api http://[::1\n", NAME ":1: upstream \"api\": bad "
	    "address in \"http://[::1\"" },
	{ "upstream api http://1.2.3.4:\n", NAME ":1: upstream \"api\": bad "
	    "address in \"http://1.2.3.4:\"" },
	{ "upstream api http://1.2.3.4:99999999\n", NAME ":1: upstream "
	    "\"api\": bad port in \"http://1.2.3.4:99999999\"" },
	{ "upstream api http://1.2.3.4:80 max_idle=x\n", NAME ":1: upstream "
	    "\"api\": invalid max_idle \"x\" (expected 0..10000)" },
	{ "upstream api http://1.2.3.4:80 read_timeout=2h\n", NAME ":1: "
	    "upstream \"api\": invalid read_timeout \"2h\" (expected 1ms..1h)" },
	{ "upstream api http://1.2.3.4:80 connect_timeout=0\n", NAME ":1: "
	    "upstream \"api\": invalid connect_timeout \"0\" (expected "
	    "1ms..1h)" },
	{ "upstream api http://1.2.3.4:99999\n", NAME ":1: upstream \"api\": "
	    "bad port in \"http://1.2.3.4:99999\"" },
	{ "upstream api http://1.2.3.4:0\n", NAME ":1: upstream \"api\": "
	    "bad port in \"http://1.2.3.4:0\"" },
	{ "upstream api http://[::1]junk\n", NAME ":1: upstream \"api\": bad "
	    "address in \"http://[::1]junk\"" },
	{ "upstream api http://1.2.3.4 max_idle=1 max_idle=2\n", NAME ":1: "
	    "upstream \"api\": duplicate option \"max_idle\"" },
	{ "upstream api http://1.2.3.4:80 keepalive=3\n", NAME ":1: upstream "
	    "\"api\": unknown option \"keepalive\"" },
	{ "upstream a http://1.2.3.4 https://1.2.3.5\n", NAME ":1: upstream "
	    "\"a\": \"https://1.2.3.5\": every URL of an upstream must have the "
	    "same scheme" },
	{ "upstream a http://1.2.3.4#weight=0\n", NAME ":1: upstream \"a\": "
	    "\"http://1.2.3.4#weight=0\": expected #weight=N (1..100) after the "
	    "URL" },
	{ "upstream a http://1.2.3.4#w=2\n", NAME ":1: upstream \"a\": "
	    "\"http://1.2.3.4#w=2\": expected #weight=N (1..100) after the URL" },
	{ "upstream a http://1.2.3.4 balance=random\n", NAME ":1: upstream "
	    "\"a\": invalid balance \"random\" (expected round_robin or "
	    "least_conn)" },
	{ "upstream a http://1.2.3.4 retries=64\n", NAME ":1: upstream \"a\": "
	    "invalid retries \"64\" (expected 0..63)" },
	{ "upstream a http://1.2.3.4 retry_on=error,http_500\n", NAME ":1: "
	    "upstream \"a\": invalid retry_on \"http_500\" (expected off, or "
	    "error, timeout, http_502, http_503, http_504 separated by commas)" },
	{ "upstream a http://1.2.3.4 retry_on=off,error\n", NAME ":1: upstream "
	    "\"a\": invalid retry_on \"off\" (expected off, or error, timeout, "
	    "http_502, http_503, http_504 separated by commas)" },
	{ "upstream a http://1.2.3.4 fail_timeout=0\n", NAME ":1: upstream "
	    "\"a\": invalid fail_timeout \"0\" (expected 1ms..1h)" },
	{ "upstream a http://1.2.3.4 max_fails=x\n", NAME ":1: upstream \"a\": "
	    "invalid max_fails \"x\" (expected 0..1000)" },
	{ "upstream a http://1.2.3.4 strip_prefix=/api/\n", NAME ":1: upstream "
	    "\"a\": invalid strip_prefix \"/api/\" (expected a path such as "
	    "/api: '/' first, not at the end, no empty, . or .. segment, no ?, "
	    "#, %, \\ or space)" },
	{ "upstream a http://1.2.3.4 strip_prefix=/a/../b\n", NAME ":1: "
	    "upstream \"a\": invalid strip_prefix \"/a/../b\" (expected a "
	    "path such as /api: '/' first, not at the end, no empty, . or .. "
	    "segment, no ?, #, %, \\ or space)" },
	{ "upstream a http://1.2.3.4 health=healthz\n", NAME ":1: upstream "
	    "\"a\": invalid health \"healthz\" (expected a path such as "
	    "/healthz: '/' first, an optional ?query, no space or #)" },
	{ "upstream a http://1.2.3.4 health=/h#x\n", NAME ":1: upstream "
	    "\"a\": invalid health \"/h#x\" (expected a path such as "
	    "/healthz: '/' first, an optional ?query, no space or #)" },
	{ "upstream a http://1.2.3.4 health=/h health_interval=50ms\n", NAME
	    ":1: upstream \"a\": invalid health_interval \"50ms\" (expected "
	    "100ms..1h)" },
	{ "upstream a http://1.2.3.4 health=/h health_fails=0\n", NAME ":1: "
	    "upstream \"a\": invalid health_fails \"0\" (expected 1..100)" },
	{ "upstream a http://1.2.3.4 health=/h health_passes=101\n", NAME
	    ":1: upstream \"a\": invalid health_passes \"101\" (expected "
	    "1..100)" },
	{ "upstream a http://1.2.3.4 health_interval=1s\n", NAME ":1: "
	    "upstream \"a\": health_interval without health=" },
	{ "upstream a echo health=/h\n", NAME ":1: upstream \"a\": an echo "
	    "upstream takes no options" },
	{ "upstream a http://1.2.3.4 host=bad_name\n", NAME ":1: upstream "
	    "\"a\": invalid host \"bad_name\" (expected a DNS name or address, "
	    "with an optional :PORT)" },
	{ "upstream a http://1.2.3.4 host=a.example:0\n", NAME ":1: upstream "
	    "\"a\": invalid host \"a.example:0\" (expected a DNS name or "
	    "address, with an optional :PORT)" },
	{ "upstream a http://1.2.3.4:80 http://1.2.3.4/\n", NAME ":1: upstream "
	    "\"a\": \"http://1.2.3.4/\" is the same server as "
	    "\"http://1.2.3.4:80\" (the same address and port)" },
	{ "upstream a http://1.2.3.4 max_idle=2 http://1.2.3.5\n", NAME ":1: "
	    "upstream \"a\": unknown option \"http://1.2.3.5\"" },
	{ "verify_path x\n", NAME ":1: \"verify_path\": \"x\" must start with "
	    "'/'" },
	{ "verify_path /a?b\n", NAME ":1: \"verify_path\": \"/a?b\" is not a "
	    "plain path" },
	{ "health_path healthz\n", NAME ":1: \"health_path\": \"healthz\" must "
	    "start with '/'" },
	{ "verify_path /v\nhealth_path /v\n", NAME ":2: health_path \"/v\" is "
	    "also the verify_path" },
	{ "shutdown_delay 2h\n", NAME ":1: \"shutdown_delay\": \"2h\" is out of "
	    "range (0..1h)" },
	{ "real_ip_from 10.0.0.1/8\n", NAME ":1: real_ip_from: \"10.0.0.1/8\" "
	    "has bits set past its prefix length: did you mean 10.0.0.0/8?" },
	{ "real_ip_from 10.0.0.0/8 fd00::1/8\n", NAME ":1: real_ip_from: "
	    "\"fd00::1/8\" has bits set past its prefix length: did you mean "
	    "fd00::/8?" },
	{ "real_ip_from lb.example\n", NAME ":1: real_ip_from: \"lb.example\" "
	    "is not an IPv4 or IPv6 address" },
	{ "real_ip_from 10.0.0.0/33\n", NAME ":1: real_ip_from: \"10.0.0.0/33\": "
	    "the prefix length is at most 32" },
	{ "real_ip_from ::/129\n", NAME ":1: real_ip_from: \"::/129\": the "
	    "prefix length is at most 128" },
	{ "real_ip_from 10.0.0.0/\n", NAME ":1: real_ip_from: \"10.0.0.0/\": "
	    "the prefix length after '/' must be a number" },
	{ "real_ip_from ::ffff:10.0.0.0/8\n", NAME ":1: real_ip_from: "
	    "\"::ffff:10.0.0.0/8\": an IPv4-mapped prefix needs at least 96 "
	    "bits" },
	{ "real_ip_header X:Y\n", NAME ":1: \"real_ip_header\": \"X:Y\" is not "
	    "a header name" },
	{ "upstream e echo\nroute GET ^/ auth=anonymous from=\n", NAME ":2: "
	    "route option \"from\" needs a value" },
	{ "upstream e echo\nroute GET ^/ auth=anonymous from=10.0.0.0/8,x\n",
	    NAME ":2: from=: \"x\" is not an IPv4 or IPv6 address" },
	{ "upstream e echo\nroute GET ^/ auth=anonymous from=10.0.0.0/8 "
	    "from=::1\n", NAME ":2: duplicate route option \"from\"" },
	{ "forward_credentials yes\n", NAME ":1: \"forward_credentials\": "
	    "invalid value \"yes\" (expected off or on)" },
	{ "merge_slashes yes\n", NAME ":1: \"merge_slashes\": invalid value "
	    "\"yes\" (expected off or on)" },
	{ "merge_slashes\n", NAME ":1: \"merge_slashes\" takes 1 argument" },
	{ "merge_slashes off\nmerge_slashes off\n", NAME ":2: duplicate "
	    "directive \"merge_slashes\" (first at line 1)" },
	{ "underscores_in_headers ON\n", NAME ":1: \"underscores_in_headers\": "
	    "invalid value \"ON\" (expected off or on)" },
	{ "underscores_in_headers on off\n", NAME ":1: "
	    "\"underscores_in_headers\" takes 1 argument" },
	{ "upstream a/b echo\n", NAME ":1: invalid upstream name \"a/b\" "
	    "(expected 1 to 64 letters, digits, '_', '.' or '-')" },
	{ "upstream \"\" echo\n", NAME ":1: invalid upstream name \"\" "
	    "(expected 1 to 64 letters, digits, '_', '.' or '-')" },
	{ "upstream aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaa echo\n", NAME ":1: invalid upstream name \"aaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" (expected 1 to "
	    "64 letters, digits, '_', '.' or '-')" },
	/* route */
	{ "upstream a echo\nroute GET ^/ auth=anonymous upstream=b\n",
	    NAME ":2: unknown upstream \"b\"" },
	{ "route GET ^/x auth=deny upstream=nope\nupstream a echo\n",
	    NAME ":1: unknown upstream \"nope\"" },
	{ "\nroute GET ^/ auth=anonymous\n",
	    NAME ":2: route needs an upstream but none is defined" },
	{ "route * .* auth=deny,anonymous\n",
	    NAME ":1: route needs an upstream but none is defined" },
	{ "route GET ^/( auth=deny\n",
	    NAME ":1: bad regex \"^/(\": missing closing parenthesis at offset 3" },
	{ "route GET \"a{2,1}\" auth=deny\n", NAME ":1: bad regex \"a{2,1}\": "
	    "numbers out of order in {} quantifier at offset 5" },
	{ "route get ^/ auth=deny\n", NAME ":1: unknown method \"get\"" },
	{ "route GET,FOO ^/ auth=deny\n", NAME ":1: unknown method \"FOO\"" },
	{ "route GET,,HEAD ^/ auth=deny\n",
	    NAME ":1: empty method in \"GET,,HEAD\"" },
	{ "route GET, ^/ auth=deny\n", NAME ":1: empty method in \"GET,\"" },
	{ "route GET,GET ^/ auth=deny\n", NAME ":1: duplicate method \"GET\"" },
	{ "route GET ^/ auth=api-key\n",
	    NAME ":1: route needs an upstream but none is defined" },
	{ "route GET ^/ auth=deny,app-key,api-key,app-key\n",
	    NAME ":1: duplicate auth scheme \"app-key\"" },
	{ "route GET ^/ auth=jwt\n", NAME ":1: auth=jwt needs a jwt_provider" },
	{ "route GET ^/ auth=Deny\n", NAME ":1: unknown auth scheme \"Deny\"" },
	{ "route GET ^/ auth=deny,,anonymous\n",
	    NAME ":1: empty auth scheme in \"deny,,anonymous\"" },
	{ "route GET ^/ auth=deny,deny\n",
	    NAME ":1: duplicate auth scheme \"deny\"" },
	{ "route GET ^/ auth=\n",
	    NAME ":1: route option \"auth\" needs a value" },
	{ "route GET ^/ auth=deny upstream=\n",
	    NAME ":1: route option \"upstream\" needs a value" },
	{ "route GET ^/ auth=deny auth=deny\n",
	    NAME ":1: duplicate route option \"auth\"" },
	{ "upstream a echo\nroute GET ^/ auth=deny upstream=a upstream=a\n",
	    NAME ":2: duplicate route option \"upstream\"" },
	{ "route GET ^/ auth=deny scope=\n",
	    NAME ":1: route option \"scope\" needs a value" },
	{ "route GET ^/ auth=deny scope=a,,b\n",
	    NAME ":1: invalid scope \"\" (1 to 64 letters, digits or ._:/*-)" },
	{ "route GET ^/ auth=deny scope=a\"b\n",
	    NAME ":1: invalid scope \"a\"b\" (1 to 64 letters, digits or ._:/*-)" },
	{ "route GET ^/ auth=deny scope=a,b,a\n",
	    NAME ":1: duplicate scope \"a\"" },
	{ "route GET ^/ auth=deny scope=a scope=b\n",
	    NAME ":1: duplicate route option \"scope\"" },
	{ "route GET ^/ auth=deny scope=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17\n",
	    NAME ":1: too many scopes (max 16)" },
	{ "max_keys 0\n",
	    NAME ":1: \"max_keys\": \"0\" is out of range (1..100000000)" },
	{ "api_key_header X:Y\n",
	    NAME ":1: \"api_key_header\": \"X:Y\" is not a header name" },
	{ "admin_listen nowhere\n",
	    NAME ":1: \"admin_listen\": invalid address \"nowhere\" (expected "
	    "IP:PORT, [IPv6]:PORT, *:PORT or PORT)" },
	{ "admin_token_file /nonexistent/token\n",
	    NAME ":1: \"admin_token_file\": cannot open /nonexistent/token: "
	    "No such file or directory" },
	/* rate_limit, anonymous_rate_limit: malformed words. */
	{ "rate_limit 20/2s\n", NAME ":1: \"rate_limit\": \"20/2s\" is not "
	    "N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	{ "rate_limit 20\n", NAME ":1: \"rate_limit\": \"20\" is not "
	    "N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	{ "rate_limit /1s\n", NAME ":1: \"rate_limit\": \"/1s\" is not "
	    "N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	{ "rate_limit 20/\n", NAME ":1: \"rate_limit\": \"20/\" is not "
	    "N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	{ "rate_limit +20/1s\n", NAME ":1: \"rate_limit\": \"+20/1s\" is not "
	    "N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	{ "rate_limit -1/1s\n", NAME ":1: \"rate_limit\": \"-1/1s\" is not "
	    "N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	{ "rate_limit 1.5/1s\n", NAME ":1: \"rate_limit\": \"1.5/1s\" is not "
	    "N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	{ "rate_limit 2k/1s\n", NAME ":1: \"rate_limit\": \"2k/1s\" is not "
	    "N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	{ "rate_limit 20/1S\n", NAME ":1: \"rate_limit\": \"20/1S\" is not "
	    "N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	{ "rate_limit 20/1\n", NAME ":1: \"rate_limit\": \"20/1\" is not "
	    "N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	{ "rate_limit 20/1000ms\n", NAME ":1: \"rate_limit\": \"20/1000ms\" "
	    "is not N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	{ "rate_limit 20/1h\n", NAME ":1: \"rate_limit\": \"20/1h\" is not "
	    "N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	{ "rate_limit 20/1s/1s\n", NAME ":1: \"rate_limit\": \"20/1s/1s\" is "
	    "not N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	{ "rate_limit 20/10s,5/1s\n", NAME ":1: \"rate_limit\": "
	    "\"20/10s,5/1s\" is not N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	{ "rate_limit \"20 /1s\"\n", NAME ":1: \"rate_limit\": \"20 /1s\" is "
	    "not N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	{ "rate_limit 20/ 1s\n", NAME ":1: \"rate_limit\": \"20/\" is not "
	    "N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	{ "rate_limit 5/1s OFF\n", NAME ":1: \"rate_limit\": \"OFF\" is not "
	    "N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	{ "rate_limit offs\n", NAME ":1: \"rate_limit\": \"offs\" is not "
	    "N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	{ "rate_limit \"\"\n", NAME ":1: \"rate_limit\": \"\" is not "
	    "N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	/* The window is checked before the number. */
	{ "rate_limit 0/2s\n", NAME ":1: \"rate_limit\": \"0/2s\" is not "
	    "N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	/* Limits out of range. */
	{ "rate_limit 0/1s\n",
	    NAME ":1: \"rate_limit\": 0 is not a limit from 1 to 1000000" },
	{ "rate_limit 5/1s 000/60s\n",
	    NAME ":1: \"rate_limit\": 000 is not a limit from 1 to 1000000" },
	{ "rate_limit 1000001/10s\n", NAME ":1: \"rate_limit\": 1000001 is "
	    "not a limit from 1 to 1000000" },
	{ "rate_limit 99999999999999999999999/1m\n", NAME ":1: \"rate_limit\": "
	    "99999999999999999999999 is not a limit from 1 to 1000000" },
	{ "rate_limit 18446744073709551617/1s\n", NAME ":1: \"rate_limit\": "
	    "18446744073709551617 is not a limit from 1 to 1000000" },
	/* Windows given twice, "off" with limits, argument counts. */
	{ "rate_limit 1/1s 2/1s\n",
	    NAME ":1: \"rate_limit\": the 1s window is given twice" },
	{ "rate_limit 1/10s 2/60s 3/10s\n",
	    NAME ":1: \"rate_limit\": the 10s window is given twice" },
	{ "rate_limit 1/60s 2/1m\n",
	    NAME ":1: \"rate_limit\": the 60s window is given twice" },
	{ "rate_limit 1/1m 2/60s\n",
	    NAME ":1: \"rate_limit\": the 60s window is given twice" },
	{ "rate_limit 1/1m 2/1m\n",
	    NAME ":1: \"rate_limit\": the 60s window is given twice" },
	{ "rate_limit off 5/1s\n",
	    NAME ":1: \"rate_limit\": \"off\" cannot be combined with limits" },
	{ "rate_limit 5/1s 6/10s off\n",
	    NAME ":1: \"rate_limit\": \"off\" cannot be combined with limits" },
	{ "rate_limit off off\n",
	    NAME ":1: \"rate_limit\": \"off\" cannot be combined with limits" },
	{ "rate_limit\n", NAME ":1: \"rate_limit\" takes 1 to 3 arguments" },
	{ "rate_limit 1/1s 2/10s 3/60s 4/1m\n",
	    NAME ":1: \"rate_limit\" takes 1 to 3 arguments" },
	{ "rate_limit off\n\nrate_limit 5/1s\n", NAME ":3: duplicate "
	    "directive \"rate_limit\" (first at line 1)" },
	{ "\n\nrate_limit 5/1s 5/2s\n", NAME ":3: \"rate_limit\": \"5/2s\" is "
	    "not N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	{ "anonymous_rate_limit 20/2s\n", NAME ":1: \"anonymous_rate_limit\": "
	    "\"20/2s\" is not N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	{ "anonymous_rate_limit 0/60s\n", NAME ":1: \"anonymous_rate_limit\": "
	    "0 is not a limit from 1 to 1000000" },
	{ "anonymous_rate_limit 1/10s 1/10s\n", NAME ":1: "
	    "\"anonymous_rate_limit\": the 10s window is given twice" },
	{ "anonymous_rate_limit 1/10s off\n", NAME ":1: "
	    "\"anonymous_rate_limit\": \"off\" cannot be combined with "
	    "limits" },
	{ "anonymous_rate_limit\n",
	    NAME ":1: \"anonymous_rate_limit\" takes 1 to 3 arguments" },
	{ "anonymous_rate_limit off\nrate_limit off\nanonymous_rate_limit "
	    "off\n", NAME ":3: duplicate directive \"anonymous_rate_limit\" "
	    "(first at line 1)" },
	/* Route option rate=. */
	{ "route GET ^/ auth=deny rate=\n",
	    NAME ":1: route option \"rate\" needs a value" },
	{ "route GET ^/ auth=deny rate\n",
	    NAME ":1: route option \"rate\" needs a value" },
	{ "route GET ^/ rate=off auth=deny rate=off\n",
	    NAME ":1: duplicate route option \"rate\"" },
	{ "route GET ^/ auth=deny rate=5/1s rate=6/10s\n",
	    NAME ":1: duplicate route option \"rate\"" },
	{ "route GET ^/ auth=deny rate=5/2s\n", NAME ":1: route option "
	    "\"rate\": \"5/2s\" is not N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	{ "route GET ^/ auth=deny rate=5/1s,\n", NAME ":1: route option "
	    "\"rate\": \"\" is not N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	{ "route GET ^/ auth=deny rate=,5/1s\n", NAME ":1: route option "
	    "\"rate\": \"\" is not N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	{ "route GET ^/ auth=deny rate=5/1s,,6/10s\n", NAME ":1: route option "
	    "\"rate\": \"\" is not N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	{ "route GET ^/ auth=deny rate=5/1s,6/1x,7/60s\n", NAME ":1: route "
	    "option \"rate\": \"6/1x\" is not N/WINDOW (WINDOW is 1s, 10s or "
	    "60s)" },
	{ "route GET ^/ auth=deny rate=5/1s;6/10s\n", NAME ":1: route option "
	    "\"rate\": \"5/1s;6/10s\" is not N/WINDOW (WINDOW is 1s, 10s or "
	    "60s)" },
	{ "route GET ^/ auth=deny rate=Off\n", NAME ":1: route option "
	    "\"rate\": \"Off\" is not N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	{ "route GET ^/ auth=deny rate=0/10s\n", NAME ":1: route option "
	    "\"rate\": 0 is not a limit from 1 to 1000000" },
	{ "route GET ^/ auth=deny rate=1/1s,2000000/60s\n", NAME ":1: route "
	    "option \"rate\": 2000000 is not a limit from 1 to 1000000" },
	{ "route GET ^/ auth=deny rate=5/1s,5/1s\n", NAME ":1: route option "
	    "\"rate\": the 1s window is given twice" },
	{ "route GET ^/ auth=deny rate=1/1s,2/10s,3/60s,4/1m\n", NAME ":1: "
	    "route option \"rate\": the 60s window is given twice" },
	{ "route GET ^/ auth=deny rate=off,5/1s\n", NAME ":1: route option "
	    "\"rate\": \"off\" cannot be combined with limits" },
	{ "route GET ^/ auth=deny rate=5/1s,off\n", NAME ":1: route option "
	    "\"rate\": \"off\" cannot be combined with limits" },
	{ "route GET ^/ auth=deny rate=off,off\n", NAME ":1: route option "
	    "\"rate\": \"off\" cannot be combined with limits" },
	{ "route GET ^/a auth=deny\nroute GET ^/b auth=deny rate=5/1s "
	    "rate=off\n", NAME ":2: duplicate route option \"rate\"" },
	{ "route GET ^/ rates=5/1s auth=deny\n",
	    NAME ":1: unknown route option \"rates\"" },
	{ "route GET ^/ auth=deny foo=bar\n",
	    NAME ":1: unknown route option \"foo\"" },
	{ "route GET ^/ deny\n", NAME ":1: unknown route option \"deny\"" },
	{ "upstream a echo\nroute GET ^/ upstream=a\n",
	    NAME ":2: route needs auth=" },
	/* jwt_provider: the line, its name, its options. */
	{ "jwt_provider\n",
	    NAME ":1: \"jwt_provider\" takes at least 1 argument" },
	{ "jwt_provider p\n", NAME ":1: jwt_provider \"p\": missing issuer=" },
	{ "jwt_provider p audience=a\n",
	    NAME ":1: jwt_provider \"p\": missing issuer=" },
	{ "\njwt_provider p issuer=https://idp/\n",
	    NAME ":2: jwt_provider \"p\": missing audience=" },
	{ JWT_P " foo=1\n", NAME ":1: jwt_provider \"p\": unknown option \"foo\"" },
	{ JWT_P " Leeway=1s\n",
	    NAME ":1: jwt_provider \"p\": unknown option \"Leeway\"" },
	{ JWT_P " refresh\n",
	    NAME ":1: jwt_provider \"p\": option \"refresh\" needs a value" },
	{ JWT_P " jwks=\n",
	    NAME ":1: jwt_provider \"p\": option \"jwks\" needs a value" },
	{ JWT_P " ca=\n",
	    NAME ":1: jwt_provider \"p\": option \"ca\" needs a value" },
	{ JWT_P " leeway=1s leeway=2s\n",
	    NAME ":1: jwt_provider \"p\": duplicate option \"leeway\"" },
	{ "jwt_provider p issuer=https://a/ audience=x issuer=https://b/\n",
	    NAME ":1: jwt_provider \"p\": duplicate option \"issuer\"" },
	{ JWT_P "\n\n" JWT_P "\n",
	    NAME ":3: duplicate jwt_provider \"p\" (first at line 1)" },
	{ "jwt_provider a.b issuer=https://i/ audience=a\n",
	    NAME ":1: invalid jwt_provider name \"a.b\" (expected 1 to 32 "
	    "letters, digits, '_' or '-')" },
	{ "jwt_provider abcdefghijklmnopqrstuvwxyz0123456 issuer=https://i/ "
	    "audience=a\n", NAME ":1: invalid jwt_provider name "
	    "\"abcdefghijklmnopqrstuvwxyz0123456\" (expected 1 to 32 letters, "
	    "digits, '_' or '-')" },
	{ "jwt_provider \"\" issuer=https://i/ audience=a\n",
	    NAME ":1: invalid jwt_provider name \"\" (expected 1 to 32 "
	    "letters, digits, '_' or '-')" },
	/* issuer= */
	{ "jwt_provider p issuer=http://idp/ audience=a\n", NAME ":1: "
	    "jwt_provider \"p\": issuer \"http://idp/\" is not an https:// URL" },
	{ "jwt_provider p issuer=https:// audience=a\n", NAME ":1: "
	    "jwt_provider \"p\": issuer \"https://\" is not an https:// URL" },
	{ "jwt_provider p issuer=https:///x audience=a\n", NAME ":1: "
	    "jwt_provider \"p\": issuer \"https:///x\" is not an https:// URL" },
	{ "jwt_provider p \"issuer=https://idp/a b\" audience=a\n", NAME ":1: "
	    "jwt_provider \"p\": issuer \"https://idp/a b\" is not an https:// "
	    "URL" },
	{ "jwt_provider p issuer=https://idp/?x=1 audience=a\n", NAME ":1: "
	    "jwt_provider \"p\": issuer \"https://idp/?x=1\" is not an https:// "
	    "URL" },
	{ "jwt_provider p issuer=HTTPS://idp/ audience=a\n", NAME ":1: "
	    "jwt_provider \"p\": issuer \"HTTPS://idp/\" is not an https:// URL" },
	{ "jwt_provider p issuer=https://idp/{tenant}/ audience=a tenants=any\n",
	    NAME ":1: jwt_provider \"p\": issuer \"https://idp/{tenant}/\": the "
	    "only placeholder allowed is one {tenantid} in the path" },
	{ "jwt_provider p issuer=https://{tenantid}.idp/ audience=a "
	    "tenants=any\n", NAME ":1: jwt_provider \"p\": issuer "
	    "\"https://{tenantid}.idp/\": the only placeholder allowed is one "
	    "{tenantid} in the path" },
	{ "jwt_provider p issuer=https://idp/{tenantid}/{tenantid} audience=a "
	    "tenants=any\n", NAME ":1: jwt_provider \"p\": issuer "
	    "\"https://idp/{tenantid}/{tenantid}\": the only placeholder "
	    "allowed is one {tenantid} in the path" },
	{ "jwt_provider p issuer=https://idp/{tenantid}} audience=a "
	    "tenants=any\n", NAME ":1: jwt_provider \"p\": issuer "
	    "\"https://idp/{tenantid}}\": the only placeholder allowed is one "
	    "{tenantid} in the path" },
	{ "jwt_provider p issuer=https://idp/} audience=a\n", NAME ":1: "
	    "jwt_provider \"p\": issuer \"https://idp/}\": the only placeholder "
	    "allowed is one {tenantid} in the path" },
	{ "jwt_provider p issuer=https://idp/{TENANTID} audience=a\n", NAME
	    ":1: jwt_provider \"p\": issuer \"https://idp/{TENANTID}\": the only "
	    "placeholder allowed is one {tenantid} in the path" },
	{ "jwt_provider p issuer=https://a/,https://b/,https://c/,https://d/,"
	    "https://e/ audience=a\n", NAME ":1: jwt_provider \"p\": too many "
	    "items in issuer= (max 4)" },
	{ "jwt_provider p issuer=https://a/,https://a/ audience=a\n", NAME
	    ":1: jwt_provider \"p\": issuer= lists \"https://a/\" twice" },
	{ "jwt_provider p issuer=https://a/,,https://b/ audience=a\n", NAME
	    ":1: jwt_provider \"p\": empty item in issuer=https://a/,,"
	    "https://b/" },
	{ "jwt_provider p issuer=https://a/, audience=a\n", NAME ":1: "
	    "jwt_provider \"p\": empty item in issuer=https://a/," },
	/* audience= */
	{ "jwt_provider p issuer=https://a/ audience=1,2,3,4,5,6,7,8,9\n", NAME
	    ":1: jwt_provider \"p\": too many items in audience= (max 8)" },
	{ "jwt_provider p issuer=https://a/ audience=x,y,x\n",
	    NAME ":1: jwt_provider \"p\": audience= lists \"x\" twice" },
	{ "jwt_provider p issuer=https://a/ audience=x\001\n",
	    NAME ":1: jwt_provider \"p\": audience \"x\001\" is not 1 to 256 "
	    "visible ASCII characters" },
	{ "jwt_provider p issuer=https://a/ audience=,x\n",
	    NAME ":1: jwt_provider \"p\": empty item in audience=,x" },
	/* tenants= and {tenantid} */
	{ JWT_P " tenants=any\n", NAME ":1: jwt_provider \"p\": tenants= is "
	    "pointless without an issuer with {tenantid}" },
	{ JWT_P " tenants=" GUID "\n", NAME ":1: jwt_provider \"p\": tenants= is "
	    "pointless without an issuer with {tenantid}" },
	{ JWT_E "\n", NAME ":1: jwt_provider \"e\": an issuer has {tenantid}: "
	    "tenants=any or a list is required" },
	{ "jwt_provider e issuer=https://sts.windows.net/" GUID "/,"
	    "https://login.microsoftonline.com/{tenantid}/v2.0 audience=a\n",
	    NAME ":1: jwt_provider \"e\": an issuer has {tenantid}: "
	    "tenants=any or a list is required" },
	{ JWT_E " tenants=abc\n", NAME ":1: jwt_provider \"e\": tenant \"abc\" "
	    "is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)" },
	{ JWT_E " tenants=12345678-9abc-def0-1234-56789abcdefg\n", NAME ":1: "
	    "jwt_provider \"e\": tenant \"12345678-9abc-def0-1234-56789abcdefg\" "
	    "is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)" },
	{ JWT_E " tenants=123456789-abc-def0-1234-56789abcdef0\n", NAME ":1: "
	    "jwt_provider \"e\": tenant \"123456789-abc-def0-1234-56789abcdef0\" "
	    "is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)" },
	{ JWT_E " tenants={" GUID "}\n", NAME ":1: jwt_provider \"e\": tenant "
	    "\"{12345678-9abc-def0-1234-56789abcdef0}\" is not a GUID "
	    "(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)" },
	{ JWT_E " tenants=any," GUID "\n", NAME ":1: jwt_provider \"e\": "
	    "tenants=any cannot be combined with tenant IDs" },
	{ JWT_E " tenants=" GUID ",any\n", NAME ":1: jwt_provider \"e\": "
	    "tenants=any cannot be combined with tenant IDs" },
	{ JWT_E " tenants=" GUID "," GUID_UP "\n", NAME ":1: jwt_provider \"e\": "
	    "tenants= lists \"12345678-9abc-def0-1234-56789abcdef0\" twice" },
	{ JWT_E " tenants=Any\n", NAME ":1: jwt_provider \"e\": tenant \"Any\" "
	    "is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)" },
	/* algorithms= */
	{ JWT_P " algorithms=HS256\n", NAME ":1: jwt_provider \"p\": algorithm "
	    "\"HS256\" is never accepted with a JWKS (HS* and none are "
	    "refused)" },
	{ JWT_P " algorithms=RS256,none\n", NAME ":1: jwt_provider \"p\": "
	    "algorithm \"none\" is never accepted with a JWKS (HS* and none "
	    "are refused)" },
	{ JWT_P " algorithms=hs512\n", NAME ":1: jwt_provider \"p\": "
	    "algorithm \"hs512\" is never accepted with a JWKS (HS* and none "
	    "are refused)" },
	{ JWT_P " algorithms=RS256,rs256\n", NAME ":1: jwt_provider \"p\": "
	    "unknown algorithm \"rs256\" (expected RS256, RS384, RS512, PS256, "
	    "PS384, PS512, ES256 or ES384)" },
	{ JWT_P " algorithms=EdDSA\n", NAME ":1: jwt_provider \"p\": unknown "
	    "algorithm \"EdDSA\" (expected RS256, RS384, RS512, PS256, PS384, "
	    "PS512, ES256 or ES384)" },
	{ JWT_P " algorithms=ES512\n", NAME ":1: jwt_provider \"p\": unknown "
	    "algorithm \"ES512\" (expected RS256, RS384, RS512, PS256, PS384, "
	    "PS512, ES256 or ES384)" },
	{ JWT_P " algorithms=PS256,ES256,PS256\n", NAME ":1: jwt_provider "
	    "\"p\": algorithms= lists \"PS256\" twice" },
	{ JWT_P " algorithms=RS256,\n",
	    NAME ":1: jwt_provider \"p\": empty item in algorithms=RS256," },
	/* leeway=, refresh= */
	{ JWT_P " leeway=601s\n", NAME ":1: jwt_provider \"p\": invalid leeway "
	    "\"601s\" (expected whole seconds, 0..600s)" },
	{ JWT_P " leeway=11m\n", NAME ":1: jwt_provider \"p\": invalid leeway "
	    "\"11m\" (expected whole seconds, 0..600s)" },
	{ JWT_P " leeway=1500ms\n", NAME ":1: jwt_provider \"p\": invalid "
	    "leeway \"1500ms\" (expected whole seconds, 0..600s)" },
	{ JWT_P " leeway=-1\n", NAME ":1: jwt_provider \"p\": invalid leeway "
	    "\"-1\" (expected whole seconds, 0..600s)" },
	{ JWT_P " leeway=1d\n", NAME ":1: jwt_provider \"p\": invalid leeway "
	    "\"1d\" (expected whole seconds, 0..600s)" },
	{ JWT_P " refresh=59s\n", NAME ":1: jwt_provider \"p\": invalid "
	    "refresh \"59s\" (expected whole seconds, 60s..168h)" },
	{ JWT_P " refresh=169h\n", NAME ":1: jwt_provider \"p\": invalid "
	    "refresh \"169h\" (expected whole seconds, 60s..168h)" },
	{ JWT_P " refresh=99999999999\n", NAME ":1: jwt_provider \"p\": "
	    "invalid refresh \"99999999999\" (expected whole seconds, "
	    "60s..168h)" },
	/* identity=, scope_claims= */
	{ JWT_P " identity=a/b\n", NAME ":1: jwt_provider \"p\": identity: "
	    "\"a/b\" is not a claim name (1 to 64 letters, digits or _.:-)" },
	{ JWT_P " identity=a,b\n", NAME ":1: jwt_provider \"p\": identity: "
	    "\"a,b\" is not a claim name (1 to 64 letters, digits or _.:-)" },
	{ JWT_P " identity=" C65 "\n", NAME ":1: jwt_provider \"p\": identity: "
	    "\"" C65 "\" is not a claim name (1 to 64 letters, digits or "
	    "_.:-)" },
	{ JWT_P " scope_claims=scp,scp\n",
	    NAME ":1: jwt_provider \"p\": scope_claims= lists \"scp\" twice" },
	{ JWT_P " scope_claims=a,b,c,d,e\n", NAME ":1: jwt_provider \"p\": "
	    "too many items in scope_claims= (max 4)" },
	{ JWT_P " scope_claims=a$b\n", NAME ":1: jwt_provider \"p\": "
	    "scope_claims: \"a$b\" is not a claim name (1 to 64 letters, "
	    "digits or _.:-)" },
	/* headers= */
	{ JWT_P " headers=tid\n", NAME ":1: jwt_provider \"p\": headers: "
	    "\"tid\" is not CLAIM:Header (a claim is 1 to 64 letters, digits "
	    "or _.:-)" },
	{ JWT_P " headers=:X-T\n", NAME ":1: jwt_provider \"p\": headers: "
	    "\":X-T\" is not CLAIM:Header (a claim is 1 to 64 letters, digits "
	    "or _.:-)" },
	{ JWT_P " headers=t/d:X-T\n", NAME ":1: jwt_provider \"p\": headers: "
	    "\"t/d:X-T\" is not CLAIM:Header (a claim is 1 to 64 letters, "
	    "digits or _.:-)" },
	{ JWT_P " headers=tid:\n", NAME ":1: jwt_provider \"p\": headers: "
	    "\"\" is not a header name" },
	{ JWT_P " headers=tid:X(T\n", NAME ":1: jwt_provider \"p\": headers: "
	    "\"X(T\" is not a header name" },
	{ JWT_P " headers=tid:X-Consumer-Id\n", NAME ":1: jwt_provider \"p\": "
	    "headers: \"X-Consumer-Id\" cannot be set from a claim: keygate "
	    "sets it" },
	{ JWT_P " headers=tid:x_consumer_ID\n", NAME ":1: jwt_provider \"p\": "
	    "headers: \"x_consumer_ID\" cannot be set from a claim: keygate "
	    "sets it" },
	{ JWT_P " headers=a:X-Key-Id\n", NAME ":1: jwt_provider \"p\": "
	    "headers: \"X-Key-Id\" cannot be set from a claim: keygate sets it" },
	{ JWT_P " headers=a:X-App-Id\n", NAME ":1: jwt_provider \"p\": "
	    "headers: \"X-App-Id\" cannot be set from a claim: keygate sets it" },
	{ JWT_P " headers=a:X-Scopes\n", NAME ":1: jwt_provider \"p\": "
	    "headers: \"X-Scopes\" cannot be set from a claim: keygate sets it" },
	{ JWT_P " headers=a:X-Auth-Scheme\n", NAME ":1: jwt_provider \"p\": "
	    "headers: \"X-Auth-Scheme\" cannot be set from a claim: keygate "
	    "sets it" },
	{ JWT_P " headers=a:X-Request-Id\n", NAME ":1: jwt_provider \"p\": "
	    "headers: \"X-Request-Id\" cannot be set from a claim: keygate "
	    "sets it" },
	{ JWT_P " headers=a:X-Forwarded-Host\n", NAME ":1: jwt_provider \"p\": "
	    "headers: \"X-Forwarded-Host\" cannot be set from a claim: keygate "
	    "sets the X-Forwarded-* headers" },
	{ JWT_P " headers=a:X-Forwarded-For\n", NAME ":1: jwt_provider \"p\": "
	    "headers: \"X-Forwarded-For\" cannot be set from a claim: keygate "
	    "sets the X-Forwarded-* headers" },
	{ JWT_P " headers=a:Authorization\n", NAME ":1: jwt_provider \"p\": "
	    "headers: \"Authorization\" cannot be set from a claim: it carries "
	    "credentials" },
	{ JWT_P " headers=a:Cookie\n", NAME ":1: jwt_provider \"p\": headers: "
	    "\"Cookie\" cannot be set from a claim: it carries credentials" },
	{ JWT_P " headers=a:host\n", NAME ":1: jwt_provider \"p\": headers: "
	    "\"host\" cannot be set from a claim: it routes the request" },
	{ JWT_P " headers=a:Content-Length\n", NAME ":1: jwt_provider \"p\": "
	    "headers: \"Content-Length\" cannot be set from a claim: it frames "
	    "the message" },
	{ JWT_P " headers=a:Transfer-Encoding\n", NAME ":1: jwt_provider "
	    "\"p\": headers: \"Transfer-Encoding\" cannot be set from a claim: "
	    "it frames the message" },
	{ JWT_P " headers=a:Connection\n", NAME ":1: jwt_provider \"p\": "
	    "headers: \"Connection\" cannot be set from a claim: it is "
	    "hop-by-hop" },
	{ JWT_P " headers=a:Proxy-Authorization\n", NAME ":1: jwt_provider "
	    "\"p\": headers: \"Proxy-Authorization\" cannot be set from a "
	    "claim: it is hop-by-hop" },
	{ JWT_P " headers=a:X-API-KEY\n", NAME ":1: jwt_provider \"p\": "
	    "headers: \"X-API-KEY\" cannot be set from a claim: it is the "
	    "api_key_header, it carries credentials" },
	{ "\n" JWT_P " headers=tid:X-Tenant,oid:X-Token\napi_key_header "
	    "x_token\n", NAME ":2: jwt_provider \"p\": headers: \"X-Token\" "
	    "cannot be set from a claim: it is the api_key_header, it carries "
	    "credentials" },
	{ JWT_P " headers=tid:X-T,oid:x-t\n",
	    NAME ":1: jwt_provider \"p\": headers: \"x-t\" is set twice" },
	{ JWT_P " headers=a:A,b:B,c:C,d:D,e:E,f:F,g:G,h:H,i:I\n", NAME ":1: "
	    "jwt_provider \"p\": too many items in headers= (max 8)" },
	/* jwks=, rate= */
	{ JWT_P " jwks=http://idp/keys\n", NAME ":1: jwt_provider \"p\": jwks "
	    "\"http://idp/keys\": only https:// URLs are fetched (or give a "
	    "file)" },
	{ JWT_P " jwks=file:///etc/keys\n", NAME ":1: jwt_provider \"p\": jwks "
	    "\"file:///etc/keys\": only https:// URLs are fetched (or give a "
	    "file)" },
	{ JWT_P " jwks=https://\n", NAME ":1: jwt_provider \"p\": jwks "
	    "\"https://\" is not an https:// URL" },
	{ JWT_P " jwks=https://idp/{tenantid}/keys\n", NAME ":1: jwt_provider "
	    "\"p\": jwks \"https://idp/{tenantid}/keys\" is not an https:// "
	    "URL" },
	{ JWT_P " rate=5/2s\n", NAME ":1: jwt_provider \"p\": rate: \"5/2s\" "
	    "is not N/WINDOW (WINDOW is 1s, 10s or 60s)" },
	{ JWT_P " rate=off,5/1s\n", NAME ":1: jwt_provider \"p\": rate: "
	    "\"off\" cannot be combined with limits" },
	{ JWT_P " rate=0/1s\n", NAME ":1: jwt_provider \"p\": rate: 0 is not "
	    "a limit from 1 to 1000000" },
	{ JWT_P " rate=1/1s,2/1s\n", NAME ":1: jwt_provider \"p\": rate: the "
	    "1s window is given twice" },
	/* auth=jwt and auth=jwt:NAME, resolved after the whole file. */
	{ "upstream u echo\n\nroute GET ^/ auth=api-key,jwt\n",
	    NAME ":3: auth=jwt needs a jwt_provider" },
	{ "upstream u echo\nroute GET ^/ auth=jwt:x\n",
	    NAME ":2: route: unknown jwt_provider \"x\"" },
	{ "upstream u echo\nroute GET ^/a auth=jwt:p\nroute GET ^/b "
	    "auth=jwt:q,app-key\n" JWT_P "\n",
	    NAME ":3: route: unknown jwt_provider \"q\"" },
	{ "upstream u echo\nroute GET ^/ auth=jwt:P\n" JWT_P "\n",
	    NAME ":2: route: unknown jwt_provider \"P\"" },
	{ JWT_P "\nroute GET ^/ auth=jwt,jwt:p\n", NAME ":2: auth schemes "
	    "\"jwt\" and \"jwt:p\" together are ambiguous (\"jwt\" accepts every "
	    "jwt_provider)" },
	{ JWT_P "\nroute GET ^/ auth=jwt:p,api-key,jwt:p\n",
	    NAME ":2: duplicate auth scheme \"jwt:p\"" },
	{ JWT_P "\nroute GET ^/ auth=jwt,jwt\n",
	    NAME ":2: duplicate auth scheme \"jwt\"" },
	{ JWT_P "\nroute GET ^/ auth=jwt:\n",
	    NAME ":2: unknown auth scheme \"jwt:\"" },
	{ JWT_P "\nroute GET ^/ auth=jwt\n",
	    NAME ":2: route needs an upstream but none is defined" },
};

/*
 * real_ip_from adds up over lines (IPv4-mapped prefixes as IPv4),
 * real_ip_header is kept in lower case, from= per route, health_path and
 * shutdown_delay; without them: no trusted peer, X-Forwarded-For.
 */
static void
test_client_addresses(void **state)
{
	struct config		*c;
	const struct route	*r;
	static const uint8_t	 lb[4] = { 10, 1, 2, 3 }, out[4] = { 11, 0, 0, 1 };
	static const uint8_t	 v6[16] = { 0xfd, 0x12 };
	char			 buf[REALIP_CIDR_MAX];

	(void)state;
	c = parse_ok("");
	assert_int_equal(c->c_nreal_ip_from, 0);
	assert_string_equal(c->c_real_ip_header, "x-forwarded-for");
	assert_null(c->c_health_path);
	assert_int_equal(c->c_shutdown_delay, 0);
	config_free(c);

	c = parse_ok("real_ip_from 10.0.0.0/8 fd00::/8\n"
	    "real_ip_from ::ffff:192.0.2.0/120 127.0.0.1\n"
	    "real_ip_header X-Real-IP\n"
	    "health_path /healthz\n"
	    "shutdown_delay 15s\n"
	    "upstream e echo\n"
	    "route GET ^/a auth=anonymous from=192.0.2.7,2001:db8::/32\n"
	    "route GET ^/b auth=anonymous\n");
	assert_int_equal(c->c_nreal_ip_from, 4);
	cidr_format(&c->c_real_ip_from[2], buf, sizeof(buf));
	assert_string_equal(buf, "192.0.2.0/24");
	cidr_format(&c->c_real_ip_from[3], buf, sizeof(buf));
	assert_string_equal(buf, "127.0.0.1/32");
	assert_true(cidr_match(c->c_real_ip_from, c->c_nreal_ip_from, lb, 4));
	assert_false(cidr_match(c->c_real_ip_from, c->c_nreal_ip_from, out,
	    4));
	assert_true(cidr_match(c->c_real_ip_from, c->c_nreal_ip_from, v6,
	    16));
	assert_string_equal(c->c_real_ip_header, "x-real-ip");
	assert_string_equal(c->c_health_path, "/healthz");
	assert_int_equal(c->c_shutdown_delay, 15000);
	r = &c->c_routes.rt_routes[0];
	assert_int_equal(r->r_nfrom, 2);
	cidr_format(&r->r_from[1], buf, sizeof(buf));
	assert_string_equal(buf, "2001:db8::/32");
	assert_int_equal(c->c_routes.rt_routes[1].r_nfrom, 0);
	config_free(c);
}

/*
 * Upstream pools: several URLs with weights, a name's addresses as
 * servers (localhost: at least 127.0.0.1), the pool options and their
 * defaults, servers numbered across upstreams and labelled for metrics.
 */
static void
test_upstream_pools(void **state)
{
	struct config		*c;
	const struct upstream	*u;
	int			 k, v4 = 0;

	(void)state;
	c = parse_ok("upstream one http://127.0.0.1:9000\n"
	    "upstream api http://10.0.0.1:9000 http://10.0.0.2:9000#weight=3 "
	    "http://[::1]:9001/#weight=100 balance=least_conn max_fails=3 "
	    "fail_timeout=30s retries=2 retry_on=error,timeout,http_503 "
	    "max_conns=50 idle_timeout=5s strip_prefix=/api/v1 "
	    "host=[::1]:8080 health=/healthz?deep=1 health_interval=2s "
	    "health_fails=3 health_passes=2\n"
	    "upstream lh http://localhost:9002 retry_on=off\n"
	    "upstream e echo\n");
	u = &c->c_upstreams[0];
	assert_int_equal(u->u_nservers, 1);
	assert_int_equal(u->u_balance, BALANCE_ROUND_ROBIN);
	assert_int_equal(u->u_max_fails, 1);
	assert_int_equal(u->u_fail_timeout, UPSTREAM_FAIL_TIMEOUT);
	assert_int_equal(u->u_retries, 1);
	assert_int_equal(u->u_retry_on, RETRY_ERROR | RETRY_TIMEOUT);
	assert_int_equal(u->u_max_conns, 0);
	assert_int_equal(u->u_idle_timeout, UPSTREAM_IDLE_TIMEOUT);
	assert_null(u->u_health);
	assert_int_equal(u->u_health_interval, UPSTREAM_HEALTH_INTERVAL);
	assert_int_equal(u->u_health_fails, 1);
	assert_int_equal(u->u_health_passes, 1);
	assert_string_equal(u->u_servers[0].us_server, "127.0.0.1:9000");
	assert_int_equal(u->u_servers[0].us_weight, 1);
	assert_int_equal(u->u_servers[0].us_index, 0);

	u = &c->c_upstreams[1];
	assert_int_equal(u->u_nservers, 3);
	assert_string_equal(u->u_servers[0].us_url, "http://10.0.0.1:9000");
	assert_string_equal(u->u_servers[1].us_url, "http://10.0.0.2:9000");
	assert_string_equal(u->u_servers[1].us_host, "10.0.0.2:9000");
	assert_string_equal(u->u_servers[2].us_host, "[::1]:9001");
	assert_string_equal(u->u_servers[2].us_server, "[::1]:9001");
	assert_int_equal(u->u_servers[0].us_weight, 1);
	assert_int_equal(u->u_servers[1].us_weight, 3);
	assert_int_equal(u->u_servers[2].us_weight, 100);
	assert_int_equal(u->u_servers[2].us_index, 3);
	assert_int_equal(u->u_balance, BALANCE_LEAST_CONN);
	assert_int_equal(u->u_max_fails, 3);
	assert_int_equal(u->u_fail_timeout, 30000);
	assert_int_equal(u->u_retries, 2);
	assert_int_equal(u->u_retry_on, RETRY_ERROR | RETRY_TIMEOUT |
	    RETRY_503);
	assert_int_equal(u->u_max_conns, 50);
	assert_int_equal(u->u_idle_timeout, 5000);
	assert_string_equal(u->u_strip_prefix, "/api/v1");
	assert_int_equal(u->u_strip_len, 7);
	assert_string_equal(u->u_host_header, "[::1]:8080");
	assert_string_equal(u->u_health, "/healthz?deep=1");
	assert_int_equal(u->u_health_interval, 2000);
	assert_int_equal(u->u_health_fails, 3);
	assert_int_equal(u->u_health_passes, 2);
	assert_int_equal(c->c_nchecked, 3);
	assert_null(c->c_upstreams[0].u_strip_prefix);
	assert_null(c->c_upstreams[0].u_host_header);

	u = &c->c_upstreams[2];
	assert_true(u->u_nservers >= 1);
	assert_int_equal(u->u_retry_on, 0);
	for (k = 0; k < u->u_nservers; k++) {
		assert_string_equal(u->u_servers[k].us_host, "localhost:9002");
		if (u->u_servers[k].us_ss.ss_family == AF_INET)
			v4++;
	}
	assert_true(v4 >= 1);
	/* Several addresses of one name: labelled by address. */
	if (u->u_nservers > 1)
		assert_non_null(strstr(u->u_servers[0].us_server, ":9002"));
	else
		assert_string_equal(u->u_servers[0].us_server,
		    "localhost:9002");
	assert_int_equal(c->c_nservers, 4 + u->u_nservers);
	assert_int_equal(c->c_upstreams[3].u_nservers, 0);
	config_free(c);
}

/* Keys and admin settings: defaults, values, the token read and digested. */
static void
test_keys_admin(void **state)
{
	struct config	*c;
	const struct route *r;
	char		 path[] = "/tmp/kgtokenXXXXXX", text[512], err[CONFIG_ERRLEN];
	char		 tok[CONFIG_TOKEN_MAX + 1];
	uint8_t		 want[32];
	int		 fd;

	c = parse_ok("upstream e echo\n");
	assert_int_equal(c->c_max_keys, 1000000);
	/*
	 * max_active_keys: 0 (the default) or above max_keys + 64 is
	 * max_keys + 64 (room for claims in flight).
	 */
	assert_int_equal(c->c_max_active_keys, 0);
	assert_int_equal(config_max_active(c), 1000000 + KS_ACTIVE_SPARE);
	config_free(c);
	c = parse_ok("max_keys 5000\nmax_active_keys 200\nupstream e echo\n");
	assert_int_equal(config_max_active(c), 200);
	config_free(c);
	c = parse_ok("max_keys 5000\nmax_active_keys 5010\nupstream e echo\n");
	assert_int_equal(config_max_active(c), 5010);
	config_free(c);
	c = parse_ok("max_keys 5000\nmax_active_keys 9000\nupstream e echo\n");
	assert_int_equal(config_max_active(c), 5000 + KS_ACTIVE_SPARE);
	config_free(c);
	c = parse_ok("upstream e echo\n");
	assert_string_equal(c->c_api_key_header, "x-api-key");
	assert_int_equal(c->c_admin, 0);
	assert_string_equal(c->c_admin_listen.la_name, "127.0.0.1:8081");
	config_free(c);

	fd = mkstemp(path);
	assert_true(fd != -1);
	assert_int_equal(write(fd, "0123456789abcdefXYZ\n", 20), 20);
	close(fd);
	snprintf(text, sizeof(text), "max_keys 5000\napi_key_header X-Key\n"
	    "admin_listen 127.0.0.1:9999\nadmin_token_file %s\n"
	    "upstream e echo\n"
	    "route GET ^/c auth=app-key,api-key scope=contacts:read,a/b*\n",
	    path);
	c = parse_ok(text);
	assert_int_equal(c->c_max_keys, 5000);
	assert_string_equal(c->c_api_key_header, "x-key");
	assert_int_equal(c->c_admin, 1);
	assert_string_equal(c->c_admin_listen.la_name, "127.0.0.1:9999");
	SHA256((const unsigned char *)"0123456789abcdefXYZ", 19, want);
	assert_memory_equal(c->c_admin_token_digest, want, 32);
	r = &c->c_routes.rt_routes[0];
	assert_int_equal(r->r_nauth, 2);
	assert_int_equal(r->r_auth[0], ROUTE_AUTH_APP_KEY);
	assert_int_equal(r->r_nscopes, 2);
	assert_string_equal(r->r_scopes[1], "a/b*");
	config_free(c);

	/* The admin address may not be a gateway address. */
	snprintf(text, sizeof(text), "listen 127.0.0.1:9999\n"
	    "admin_listen 127.0.0.1:9999\nadmin_token_file %s\n", path);
	assert_null(config_parse(text, NAME, err, sizeof(err)));
	assert_string_equal(err, NAME ":2: admin_listen 127.0.0.1:9999 is "
	    "also a listen address");

	/* Token files: too short, two words, never quoted in messages. */
	assert_int_equal(config_read_token(path, tok, sizeof(tok), err,
	    sizeof(err)), 0);
	assert_string_equal(tok, "0123456789abcdefXYZ");
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, "short-secret\n", 13), 13);
	close(fd);
	assert_int_equal(config_read_token(path, tok, sizeof(tok), err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "shorter than 16"));
	assert_null(strstr(err, "short-secret"));
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, "0123456789 abcdefghij\n", 22), 22);
	close(fd);
	assert_int_equal(config_read_token(path, tok, sizeof(tok), err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "visible ASCII"));
	assert_null(strstr(err, "abcdefghij"));
	unlink(path);
}

/* Certificates for the TLS cases, made in a temporary directory. */
struct tls_files {
	char	*dir, *cert, *key, *junk;
};

/* Make a self-signed P-256 certificate for a.example and its key. */
static void
tls_files_make(struct tls_files *f)
{
	EVP_PKEY	*k = tlst_key("EC");
	X509		*x = tlst_cert(k, "a", "a.example", -1, 30, NULL, NULL);

	f->dir = tlst_mkdir();
	f->cert = tlst_write_cert(f->dir, "c.pem", x);
	f->key = tlst_write_key(f->dir, "k.pem", k);
	f->junk = tlst_write_file(f->dir, "junk.pem", "junk\n");
	X509_free(x);
	EVP_PKEY_free(k);
}

/* Remove them. */
static void
tls_files_free(struct tls_files *f)
{
	free(f->cert);
	free(f->key);
	free(f->junk);
	tlst_rmdir(f->dir);
}

/* Defaults of the TLS directives, then each set in a file. */
static void
test_tls_values(void **state)
{
	struct tls_files	 f;
	struct config		*c;
	char			 text[2048], cwd[PATH_MAX], want[PATH_MAX + 16];

	c = parse_ok("upstream e echo\n");
	assert_int_equal(c->c_tls_protocols, TLS_PROTO_TLSv1_2 |
	    TLS_PROTO_TLSv1_3);
	assert_string_equal(c->c_tls_ciphers, TLS_CIPHERS_DEFAULT);
	assert_string_equal(c->c_tls_ciphersuites, TLS_CIPHERSUITES_DEFAULT);
	assert_int_equal(c->c_tls_tickets, 1);
	assert_int_equal(c->c_ntls_certs, 0);
	assert_null(c->c_tls);
	assert_false(c->c_listen[0].la_tls);
	assert_false(c->c_admin_listen.la_tls);
	config_free(c);

	tls_files_make(&f);
	snprintf(text, sizeof(text), "listen 8080\nlisten 8443 tls\n"
	    "tls_certificate %s %s\ntls_protocols TLSv1.3\n"
	    "tls_ciphers ECDHE-ECDSA-AES128-GCM-SHA256\n"
	    "tls_ciphersuites TLS_AES_256_GCM_SHA384\n"
	    "tls_session_tickets off\n", f.cert, f.key);
	c = parse_ok(text);
	assert_false(c->c_listen[0].la_tls);
	assert_true(c->c_listen[1].la_tls);
	assert_int_equal(c->c_ntls_certs, 1);
	assert_string_equal(c->c_tls_certs[0].tc_cert, f.cert);
	assert_string_equal(c->c_tls_certs[0].tc_key, f.key);
	assert_int_equal(c->c_tls_certs[0].tc_line, 3);
	assert_int_equal(c->c_tls_protocols, TLS_PROTO_TLSv1_3);
	assert_string_equal(c->c_tls_ciphers, "ECDHE-ECDSA-AES128-GCM-SHA256");
	assert_string_equal(c->c_tls_ciphersuites, "TLS_AES_256_GCM_SHA384");
	assert_int_equal(c->c_tls_tickets, 0);
	assert_non_null(c->c_tls);
	config_free(c);

	c = parse_ok("tls_protocols TLSv1.3 TLSv1.2\n");
	assert_int_equal(c->c_tls_protocols, TLS_PROTO_TLSv1_2 |
	    TLS_PROTO_TLSv1_3);
	config_free(c);

	/* Relative paths are made absolute; several certificates. */
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(f.dir), 0);
	c = parse_ok("\ntls_certificate c.pem k.pem\nlisten 8443 tls\n");
	assert_int_equal(chdir(cwd), 0);
	assert_int_equal(c->c_ntls_certs, 1);
	snprintf(want, sizeof(want), "%s/k.pem", f.dir);
	assert_string_equal(c->c_tls_certs[0].tc_key, want);
	assert_int_equal(c->c_tls_certs[0].tc_line, 2);
	config_free(c);
	tls_files_free(&f);
}

/*
 * Certificates are loaded only when a listener has "tls", every time the
 * file is parsed; their errors name the tls_certificate line.
 */
static void
test_tls_load(void **state)
{
	struct tls_files	 f;
	struct config		*c;
	char			 text[2048], err[CONFIG_ERRLEN], want[1024];
	char			 path[] = "/tmp/kgtokenXXXXXX";
	int			 fd;

	tls_files_make(&f);
	snprintf(text, sizeof(text), "tls_certificate %s %s\n", f.junk, f.key);
	c = parse_ok(text);
	assert_null(c->c_tls);
	config_free(c);
	snprintf(text, sizeof(text), "listen 8443 tls\n\n"
	    "tls_certificate %s %s\n", f.junk, f.key);
	parse_fail(text, err, sizeof(err));
	snprintf(want, sizeof(want), NAME ":3: tls_certificate: %s is not a "
	    "PEM certificate (no start line)", f.junk);
	assert_string_equal(err, want);

	/* admin_listen ADDR tls, with and without a certificate. */
	fd = mkstemp(path);
	assert_true(fd != -1);
	assert_int_equal(write(fd, "0123456789abcdefXYZ\n", 20), 20);
	close(fd);
	snprintf(text, sizeof(text), "admin_token_file %s\n"
	    "admin_listen 127.0.0.1:9999 tls\n", path);
	parse_fail(text, err, sizeof(err));
	assert_string_equal(err, NAME ":2: admin_listen 127.0.0.1:9999 tls: no "
	    "tls_certificate is configured");
	snprintf(text, sizeof(text), "admin_token_file %s\n"
	    "admin_listen 127.0.0.1:9999 tls\ntls_certificate %s %s\n", path,
	    f.cert, f.key);
	c = parse_ok(text);
	assert_true(c->c_admin_listen.la_tls);
	assert_false(c->c_listen[0].la_tls);
	assert_non_null(c->c_tls);
	config_free(c);
	/* Without the token the admin API is off: its address is not used. */
	c = parse_ok("admin_listen 127.0.0.1:9999 tls\n");
	assert_true(c->c_admin_listen.la_tls);
	assert_null(c->c_tls);
	config_free(c);
	unlink(path);
	tls_files_free(&f);
}

/* https upstreams: the port, Host, ca=, verify=, sni=, the context. */
static void
test_https_upstreams(void **state)
{
	struct tls_files	 f;
	struct config		*c;
	struct sockaddr_in	 sin;
	struct sockaddr_in6	 sin6;
	char			 text[2048], cwd[PATH_MAX], want[PATH_MAX + 16];

	tls_files_make(&f);
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(f.dir), 0);
	snprintf(text, sizeof(text), "upstream a https://127.0.0.1\n"
	    "upstream b https://localhost:8443/ ca=c.pem verify=off "
	    "sni=api.internal max_idle=3\n"
	    "upstream c http://127.0.0.1:9000\n"
	    "upstream d http://[::1]\n"
	    "upstream e https://[::1]:9443 verify=on\n");
	c = parse_ok(text);
	assert_int_equal(chdir(cwd), 0);
	assert_true(c->c_upstreams[0].u_tls);
	assert_string_equal(c->c_upstreams[0].u_servers[0].us_host, "127.0.0.1");
	memcpy(&sin, &c->c_upstreams[0].u_servers[0].us_ss, sizeof(sin));
	assert_int_equal(ntohs(sin.sin_port), 443);
	assert_int_equal(c->c_upstreams[0].u_verify, 1);
	assert_null(c->c_upstreams[0].u_ca);
	assert_null(c->c_upstreams[0].u_sni);
	assert_non_null(c->c_upstreams[0].u_ssl_ctx);
	assert_string_equal(c->c_upstreams[1].u_servers[0].us_host, "localhost:8443");
	snprintf(want, sizeof(want), "%s/c.pem", f.dir);
	assert_string_equal(c->c_upstreams[1].u_ca, want);
	assert_int_equal(c->c_upstreams[1].u_verify, 0);
	assert_string_equal(c->c_upstreams[1].u_sni, "api.internal");
	assert_int_equal(c->c_upstreams[1].u_max_idle, 3);
	assert_non_null(c->c_upstreams[1].u_ssl_ctx);
	assert_false(c->c_upstreams[2].u_tls);
	assert_string_equal(c->c_upstreams[2].u_servers[0].us_host, "127.0.0.1:9000");
	assert_null(c->c_upstreams[2].u_ssl_ctx);
	assert_string_equal(c->c_upstreams[3].u_servers[0].us_host, "[::1]");
	memcpy(&sin6, &c->c_upstreams[3].u_servers[0].us_ss, sizeof(sin6));
	assert_int_equal(ntohs(sin6.sin6_port), 80);
	assert_string_equal(c->c_upstreams[4].u_servers[0].us_host, "[::1]:9443");
	assert_int_equal(c->c_upstreams[4].u_verify, 1);
	config_free(c);

	/* A ca= file OpenSSL cannot read as certificates. */
	snprintf(text, sizeof(text), "\nupstream a https://127.0.0.1 ca=%s\n",
	    f.junk);
	assert_null(config_parse(text, NAME, want, sizeof(want)));
	snprintf(text, sizeof(text), NAME ":2: upstream \"a\": cannot load the "
	    "CA certificates %s: ", f.junk);
	assert_int_equal(strncmp(want, text, strlen(text)), 0);
	tls_files_free(&f);
}

/* Assert the three limits of a rate array: 1s, 10s, 60s. */
static void
assert_rate(const uint32_t *got, uint32_t w1, uint32_t w10, uint32_t w60,
    const char *what)
{
	if (got[0] != w1 || got[1] != w10 || got[2] != w60)
		fail_msg("%s: got %u/1s %u/10s %u/60s, want %u/1s %u/10s "
		    "%u/60s", what, got[0], got[1], got[2], w1, w10, w60);
}

/* Defaults: 20/1s 200/10s 1000/60s for keys, nothing for anonymous. */
static void
test_rate_defaults(void **state)
{
	struct config		*c;
	const struct route	*r;

	c = parse_ok("upstream e echo\nroute GET ^/ auth=anonymous\n");
	assert_rate(c->c_rate, 20, 200, 1000, "rate_limit");
	assert_rate(c->c_anon_rate, 0, 0, 0, "anonymous_rate_limit");
	r = &c->c_routes.rt_routes[0];
	assert_rate(r->r_rate, 0, 0, 0, "rate= not given");
	assert_int_equal(r->r_rate_off, 0);
	config_free(c);
	/* Setting one of the directives leaves the other at its default. */
	c = parse_ok("anonymous_rate_limit 3/1s\n");
	assert_rate(c->c_rate, 20, 200, 1000, "rate_limit");
	assert_rate(c->c_anon_rate, 3, 0, 0, "anonymous_rate_limit");
	config_free(c);
	c = parse_ok("rate_limit 4/10s\n");
	assert_rate(c->c_rate, 0, 4, 0, "rate_limit");
	assert_rate(c->c_anon_rate, 0, 0, 0, "anonymous_rate_limit");
	config_free(c);
}

/*
 * Every accepted form: the words as written on a directive line (rate=
 * takes the same words joined by commas) and the limits they give.  A
 * window not written is 0 (not enforced), not its default.
 */
static const struct {
	const char	*words;
	uint32_t	 w1, w10, w60;
} rate_good[] = {
	{ "5/1s 50/10s 500/60s", 5, 50, 500 },
	{ "5/1s 500/60s 50/10s", 5, 50, 500 },
	{ "50/10s 5/1s 500/60s", 5, 50, 500 },
	{ "50/10s 500/60s 5/1s", 5, 50, 500 },
	{ "500/60s 5/1s 50/10s", 5, 50, 500 },
	{ "500/60s 50/10s 5/1s", 5, 50, 500 },
	{ "5/1s 50/10s 500/1m", 5, 50, 500 },
	{ "500/1m 5/1s", 5, 0, 500 },
	{ "7/1m", 0, 0, 7 },
	{ "1/1s", 1, 0, 0 },
	{ "1000000/10s", 0, 1000000, 0 },
	{ "3/60s", 0, 0, 3 },
	{ "9/60s 8/10s", 0, 8, 9 },
	{ "8/10s 9/60s", 0, 8, 9 },
	{ "2/1s 9/60s", 2, 0, 9 },
	{ "1000000/1s 1000000/10s 1000000/60s", 1000000, 1000000, 1000000 },
	{ "010/1s", 10, 0, 0 },
	{ "20/1s 200/10s 1000/60s", 20, 200, 1000 },
	{ "off", 0, 0, 0 },
};

/* rate_limit, anonymous_rate_limit and rate= accept every rate_good[]. */
static void
test_rate_forms(void **state)
{
	struct config		*c;
	const struct route	*r;
	char			 text[256], opt[64], *sp;
	size_t			 i;

	for (i = 0; i < sizeof(rate_good) / sizeof(rate_good[0]); i++) {
		snprintf(text, sizeof(text), "rate_limit %s\n",
		    rate_good[i].words);
		c = parse_ok(text);
		assert_rate(c->c_rate, rate_good[i].w1, rate_good[i].w10,
		    rate_good[i].w60, text);
		assert_rate(c->c_anon_rate, 0, 0, 0, text);
		config_free(c);

		snprintf(text, sizeof(text), "anonymous_rate_limit %s\n",
		    rate_good[i].words);
		c = parse_ok(text);
		assert_rate(c->c_anon_rate, rate_good[i].w1, rate_good[i].w10,
		    rate_good[i].w60, text);
		assert_rate(c->c_rate, 20, 200, 1000, text);
		config_free(c);

		snprintf(opt, sizeof(opt), "%s", rate_good[i].words);
		while ((sp = strchr(opt, ' ')) != NULL)
			*sp = ',';
		snprintf(text, sizeof(text), "route GET ^/ auth=deny rate=%s\n",
		    opt);
		c = parse_ok(text);
		r = &c->c_routes.rt_routes[0];
		assert_rate(r->r_rate, rate_good[i].w1, rate_good[i].w10,
		    rate_good[i].w60, text);
		assert_int_equal(r->r_rate_off,
		    strcmp(rate_good[i].words, "off") == 0);
		assert_rate(c->c_rate, 20, 200, 1000, text);
		config_free(c);

		snprintf(text, sizeof(text), JWT_P " rate=%s\n", opt);
		c = parse_ok(text);
		assert_rate(c->c_jwt[0].jp_rate, rate_good[i].w1,
		    rate_good[i].w10, rate_good[i].w60, text);
		assert_int_equal(c->c_jwt[0].jp_rate_off,
		    strcmp(rate_good[i].words, "off") == 0);
		config_free(c);
	}
}

/* rate= per route: off, overrides, inherits; independent of rate_limit. */
static void
test_route_rate(void **state)
{
	struct config		*c;
	const struct route	*r;

	c = parse_ok("rate_limit off\n"
	    "anonymous_rate_limit 1/1s 2/10s\n"
	    "upstream e echo\n"
	    "route GET ^/off rate=off auth=api-key\n"
	    "route GET ^/one auth=api-key rate=100/10s scope=x\n"
	    "route GET ^/all auth=anonymous rate=1/1s,2/10s,3/1m\n"
	    "route GET ^/none auth=anonymous\n"
	    "route GET ^/deny auth=deny rate=9/60s\n");
	assert_rate(c->c_rate, 0, 0, 0, "rate_limit off");
	assert_rate(c->c_anon_rate, 1, 2, 0, "anonymous_rate_limit");
	assert_int_equal(c->c_routes.rt_nroutes, 5);
	r = &c->c_routes.rt_routes[0];
	assert_int_equal(r->r_rate_off, 1);
	assert_rate(r->r_rate, 0, 0, 0, "/off");
	assert_int_equal(r->r_nauth, 1);
	r = &c->c_routes.rt_routes[1];
	assert_int_equal(r->r_rate_off, 0);
	assert_rate(r->r_rate, 0, 100, 0, "/one");
	assert_int_equal(r->r_nscopes, 1);
	r = &c->c_routes.rt_routes[2];
	assert_int_equal(r->r_rate_off, 0);
	assert_rate(r->r_rate, 1, 2, 3, "/all");
	r = &c->c_routes.rt_routes[3];
	assert_int_equal(r->r_rate_off, 0);
	assert_rate(r->r_rate, 0, 0, 0, "/none");
	r = &c->c_routes.rt_routes[4];
	assert_rate(r->r_rate, 0, 0, 9, "/deny");
	assert_ptr_equal(matched(&c->c_routes, HTTP_M_GET, "/one", 4),
	    &c->c_routes.rt_routes[1]);
	config_free(c);
}

/* A provider written with issuer= and audience= only: every default. */
static void
test_jwt_defaults(void **state)
{
	struct config		*c;
	struct jwt_provider	*jp;
	int			 w;

	c = parse_ok("");
	assert_int_equal(c->c_njwt, 0);
	assert_null(c->c_jwt);
	assert_null(config_jwt_provider(c, "p"));
	config_free(c);

	c = parse_ok("\n" JWT_P "\n");
	assert_int_equal(c->c_njwt, 1);
	assert_non_null(jp = config_jwt_provider(c, "p"));
	assert_ptr_equal(jp, &c->c_jwt[0]);
	assert_null(config_jwt_provider(c, "P"));
	assert_string_equal(jp->jp_name, "p");
	assert_int_equal(jp->jp_line, 2);
	assert_int_equal(jp->jp_index, 0);
	assert_int_equal(jp->jp_nissuers, 1);
	assert_string_equal(jp->jp_issuers[0], "https://idp.example/");
	assert_int_equal(jp->jp_naudiences, 1);
	assert_string_equal(jp->jp_audiences[0], "api://x");
	assert_int_equal(jp->jp_ntenants, 0);
	assert_int_equal(jp->jp_tenants_any, 0);
	assert_int_equal(jp->jp_algs, JWK_ALGS_ALL);
	assert_int_equal(jp->jp_algs, 0xff);
	assert_int_equal(jp->jp_leeway, 60);
	assert_int_equal(jp->jp_refresh, 3600);
	assert_string_equal(jp->jp_identity, "sub");
	assert_int_equal(jp->jp_nscope_claims, 2);
	assert_string_equal(jp->jp_scope_claims[0], "scp");
	assert_string_equal(jp->jp_scope_claims[1], "roles");
	assert_int_equal(jp->jp_nheaders, 0);
	assert_null(jp->jp_ca);
	assert_null(jp->jp_jwks_url);
	assert_null(jp->jp_jwks_path);
	for (w = 0; w < RL_WINDOWS; w++)
		assert_int_equal(jp->jp_rate[w], 0);
	assert_int_equal(jp->jp_rate_off, 0);
	config_free(c);
}

/* Every option set, in an order unlike the manual's. */
static void
test_jwt_values(void **state)
{
	struct config		*c;
	struct jwt_provider	*jp;
	char			 want[PATH_MAX];

	c = parse_ok("jwt_provider entra rate=5/1s,100/60s "
	    "headers=tid:X-Tenant-Id,urn:ms:oid:X-Object_Id "
	    "issuer=https://login.microsoftonline.com/{tenantid}/v2.0,"
	    "https://sts.windows.net/{tenantid}/ "
	    "audience=api://salestim,00000000-1111-2222-3333-444444444444 "
	    "tenants=12345678-9ABC-def0-1234-56789ABCDEF0,"
	    "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee "
	    "algorithms=ES384,RS256,PS512 leeway=0 refresh=168h "
	    "identity=oid scope_claims=roles,scp,x.y:z-w_1 "
	    "jwks=keys/entra.json \"ca=ca dir/bundle.pem\"\n"
	    "jwt_provider b_-9 issuer=https://b.example/{tenantid}/ "
	    "audience=b jwks=https://b.example/keys?v=2 tenants=any "
	    "leeway=10m refresh=60s rate=off\n");
	assert_int_equal(c->c_njwt, 2);
	jp = &c->c_jwt[0];
	assert_string_equal(jp->jp_name, "entra");
	assert_int_equal(jp->jp_index, 0);
	assert_int_equal(jp->jp_line, 1);
	assert_int_equal(jp->jp_nissuers, 2);
	assert_string_equal(jp->jp_issuers[0],
	    "https://login.microsoftonline.com/{tenantid}/v2.0");
	assert_string_equal(jp->jp_issuers[1],
	    "https://sts.windows.net/{tenantid}/");
	assert_int_equal(jp->jp_naudiences, 2);
	assert_string_equal(jp->jp_audiences[0], "api://salestim");
	assert_string_equal(jp->jp_audiences[1],
	    "00000000-1111-2222-3333-444444444444");
	assert_int_equal(jp->jp_ntenants, 2);
	assert_string_equal(jp->jp_tenants[0],
	    "12345678-9abc-def0-1234-56789abcdef0");
	assert_string_equal(jp->jp_tenants[1],
	    "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee");
	assert_int_equal(jp->jp_tenants_any, 0);
	assert_int_equal(jp->jp_algs, (1 << JWK_ALG_ES384) |
	    (1 << JWK_ALG_RS256) | (1 << JWK_ALG_PS512));
	assert_int_equal(jp->jp_leeway, 0);
	assert_int_equal(jp->jp_refresh, 7 * 24 * 3600);
	assert_string_equal(jp->jp_identity, "oid");
	assert_int_equal(jp->jp_nscope_claims, 3);
	assert_string_equal(jp->jp_scope_claims[0], "roles");
	assert_string_equal(jp->jp_scope_claims[1], "scp");
	assert_string_equal(jp->jp_scope_claims[2], "x.y:z-w_1");
	assert_int_equal(jp->jp_nheaders, 2);
	assert_string_equal(jp->jp_headers[0].hm_claim, "tid");
	assert_string_equal(jp->jp_headers[0].hm_header, "X-Tenant-Id");
	/* The last ':' separates: claim names may have colons. */
	assert_string_equal(jp->jp_headers[1].hm_claim, "urn:ms:oid");
	assert_string_equal(jp->jp_headers[1].hm_header, "X-Object_Id");
	abs_of(want, sizeof(want), "keys/entra.json");
	assert_string_equal(jp->jp_jwks_path, want);
	assert_null(jp->jp_jwks_url);
	abs_of(want, sizeof(want), "ca dir/bundle.pem");
	assert_string_equal(jp->jp_ca, want);
	assert_rate(jp->jp_rate, 5, 0, 100, "entra rate=");
	assert_int_equal(jp->jp_rate_off, 0);

	assert_ptr_equal(config_jwt_provider(c, "b_-9"), &c->c_jwt[1]);
	jp = &c->c_jwt[1];
	assert_int_equal(jp->jp_index, 1);
	assert_int_equal(jp->jp_line, 2);
	assert_int_equal(jp->jp_tenants_any, 1);
	assert_int_equal(jp->jp_ntenants, 0);
	assert_string_equal(jp->jp_jwks_url, "https://b.example/keys?v=2");
	assert_null(jp->jp_jwks_path);
	assert_null(jp->jp_ca);
	assert_int_equal(jp->jp_leeway, 600);
	assert_int_equal(jp->jp_refresh, 60);
	assert_rate(jp->jp_rate, 0, 0, 0, "b rate=off");
	assert_int_equal(jp->jp_rate_off, 1);
	assert_int_equal(jp->jp_algs, JWK_ALGS_ALL);
	config_free(c);

	/* Absolute paths stay as written; a GUID issuer needs no tenants=. */
	c = parse_ok("jwt_provider a issuer=https://sts.windows.net/"
	    "12345678-9abc-def0-1234-56789abcdef0/ audience=a "
	    "jwks=/etc/keygate/a.json ca=/etc/ssl/ca.pem "
	    "headers=tid:X-Tenant-Id\napi_key_header X-Tenant\n");
	assert_string_equal(c->c_jwt[0].jp_jwks_path, "/etc/keygate/a.json");
	assert_string_equal(c->c_jwt[0].jp_ca, "/etc/ssl/ca.pem");
	config_free(c);
}

/*
 * auth=jwt and auth=jwt:NAME: providers may come after the routes naming
 * them; r_jwt is the provider's index, -1 for plain jwt and every other
 * scheme, and never left unresolved.
 */
static void
test_jwt_routes(void **state)
{
	static const int	 want[][ROUTE_MAX_AUTH] = {
		{ -1 }, { 1, -1 }, { 0, 1, -1 }, { -1, -1 }, { 1 },
	};
	struct config		*c;
	const struct route	*r;
	size_t			 i;
	int			 j;

	c = parse_ok("upstream u echo\n"
	    "route * ^/apps(/|$) auth=jwt\n"
	    "route * ^/catalog(/|$) auth=jwt:entra,app-key\n"
	    "route * ^/both auth=jwt:a,jwt:entra,api-key scope=x\n"
	    "route GET ^/store auth=anonymous,jwt\n"
	    "route GET ^/e auth=jwt:entra\n"
	    "jwt_provider a issuer=https://a.example/ audience=a\n"
	    "jwt_provider entra issuer=https://login.microsoftonline.com/"
	    "{tenantid}/v2.0 audience=api://salestim tenants=any\n");
	assert_int_equal(c->c_njwt, 2);
	assert_int_equal(c->c_routes.rt_nroutes, 5);
	for (i = 0; i < 5; i++) {
		r = &c->c_routes.rt_routes[i];
		for (j = 0; j < r->r_nauth; j++)
			if (r->r_jwt[j] != want[i][j])
				fail_msg("route %zu scheme %d: r_jwt %d, want %d",
				    i + 1, j, r->r_jwt[j], want[i][j]);
		assert_ptr_equal(r->r_upstream, &c->c_upstreams[0]);
	}
	r = &c->c_routes.rt_routes[1];
	assert_int_equal(r->r_nauth, 2);
	assert_int_equal(r->r_auth[0], ROUTE_AUTH_JWT);
	assert_int_equal(r->r_auth[1], ROUTE_AUTH_APP_KEY);
	assert_ptr_equal(matched(&c->c_routes, HTTP_M_GET, "/catalog/x", 10),
	    r);
	config_free(c);

	/* jwt:NAME alone needs only that provider; deny routes need none. */
	c = parse_ok("jwt_provider x issuer=https://x/ audience=x\n"
	    "route GET ^/ auth=deny\nupstream u echo\n"
	    "route GET ^/x auth=jwt:x\n");
	assert_int_equal(c->c_routes.rt_routes[1].r_jwt[0], 0);
	config_free(c);
}

/* Bounds: providers, issuers, tenants, lengths. */
static void
test_jwt_limits(void **state)
{
	struct config	*c;
	char		*text, err[CONFIG_ERRLEN], want[CONFIG_ERRLEN];
	char		 iss[300];
	size_t		 len = 16384, n;
	int		 i;

	assert_non_null(text = malloc(len));
	for (n = 0, i = 0; i < 16; i++)
		n += snprintf(text + n, len - n, "jwt_provider p%d "
		    "issuer=https://p%d/ audience=a\n", i, i);
	c = parse_ok(text);
	assert_int_equal(c->c_njwt, 16);
	assert_int_equal(c->c_jwt[15].jp_index, 15);
	assert_string_equal(c->c_jwt[15].jp_name, "p15");
	config_free(c);
	snprintf(text + n, len - n, "jwt_provider p16 issuer=https://x/ "
	    "audience=a\n");
	parse_fail(text, err, sizeof(err));
	assert_string_equal(err, NAME ":17: too many jwt_provider directives "
	    "(max 16)");

	/* 64 tenants, then 65. */
	n = snprintf(text, len, JWT_E " tenants=");
	for (i = 0; i < 64; i++)
		n += snprintf(text + n, len - n, "%s%08x-0000-0000-0000-"
		    "000000000000", i == 0 ? "" : ",", i);
	c = parse_ok(text);
	assert_int_equal(c->c_jwt[0].jp_ntenants, 64);
	assert_string_equal(c->c_jwt[0].jp_tenants[63],
	    "0000003f-0000-0000-0000-000000000000");
	config_free(c);
	snprintf(text + n, len - n, ",ffffffff-0000-0000-0000-000000000000");
	parse_fail(text, err, sizeof(err));
	assert_string_equal(err, NAME ":1: jwt_provider \"e\": too many items "
	    "in tenants= (max 64)");

	/* Issuers of JWT_ISS_MAX characters, {tenantid} counting as 36. */
	n = snprintf(iss, sizeof(iss), "https://i/");
	memset(iss + n, 'x', JWT_ISS_MAX - n);
	iss[JWT_ISS_MAX] = '\0';
	snprintf(text, len, "jwt_provider p issuer=%s audience=a\n", iss);
	c = parse_ok(text);
	assert_string_equal(c->c_jwt[0].jp_issuers[0], iss);
	config_free(c);
	snprintf(text, len, "jwt_provider p issuer=%sx audience=a\n", iss);
	parse_fail(text, err, sizeof(err));
	snprintf(want, sizeof(want), NAME ":1: jwt_provider \"p\": issuer "
	    "\"%sx\" is too long (max 256 characters, {tenantid} counting as "
	    "36)", iss);
	assert_string_equal(err, want);
	memcpy(iss + JWT_ISS_MAX - 36, "{tenantid}", 10);
	iss[JWT_ISS_MAX - 26] = '\0';
	snprintf(text, len, "jwt_provider p issuer=%s audience=a "
	    "tenants=any\n", iss);
	c = parse_ok(text);
	config_free(c);
	snprintf(text, len, "jwt_provider p issuer=%sx audience=a "
	    "tenants=any\n", iss);
	parse_fail(text, err, sizeof(err));
	snprintf(want, sizeof(want), NAME ":1: jwt_provider \"p\": issuer "
	    "\"%sx\" is too long (max 256 characters, {tenantid} counting as "
	    "36)", iss);
	assert_string_equal(err, want);
	free(text);
}

/* Every entry of bad[] fails with exactly its message. */
static void
test_errors(void **state)
{
	char	 err[CONFIG_ERRLEN];
	size_t	 i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		parse_fail(bad[i].text, err, sizeof(err));
		if (strcmp(err, bad[i].err) != 0)
			fail_msg("case %zu:\n--- config ---\n%s--- got ---\n%s"
			    "\n--- want ---\n%s", i, bad[i].text, err,
			    bad[i].err);
	}
	assert_true(i >= 40);
}

/* A short error buffer is filled, truncated and NUL-terminated. */
static void
test_short_errbuf(void **state)
{
	char	 err[12];

	memset(err, 'x', sizeof(err));
	assert_null(config_parse("bogus\n", NAME, err, sizeof(err)));
	assert_string_equal(err, NAME ":1");
}

/* Write len bytes of data to a new temporary file, name in path. */
static void
write_temp(char *path, size_t pathlen, const char *data, size_t len)
{
	const char	*dir = getenv("TMPDIR");
	FILE		*f;
	int		 fd;

	snprintf(path, pathlen, "%s/test_config.XXXXXX",
	    dir != NULL ? dir : "/tmp");
	assert_true((fd = mkstemp(path)) != -1);
	assert_non_null(f = fdopen(fd, "w"));
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* config_load: a good file, a NUL byte, a missing file, a huge file. */
static void
test_load(void **state)
{
	static const char	 good[] = "upstream a echo\r\n"
	    "route GET ^/ auth=anonymous\r\n";
	static const char	 nul[] = "workers 2\n# x\nworkers\0 3\n";
	struct config		*c;
	char			 path[PATH_MAX], want[PATH_MAX + 64];
	char			 err[CONFIG_ERRLEN], *big;
	size_t			 bigsz = 4 * 1024 * 1024 + 1;

	write_temp(path, sizeof(path), good, sizeof(good) - 1);
	c = config_load(path, err, sizeof(err));
	assert_non_null(c);
	assert_string_equal(c->c_path, path);
	assert_int_equal(c->c_routes.rt_nroutes, 1);
	config_free(c);
	unlink(path);

	write_temp(path, sizeof(path), nul, sizeof(nul) - 1);
	assert_null(config_load(path, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s:3: NUL byte", path);
	assert_string_equal(err, want);
	unlink(path);

	assert_null(config_load(path, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s: cannot open: No such file or "
	    "directory", path);
	assert_string_equal(err, want);

	/* Over 4 MiB of comments is refused before it is parsed. */
	assert_non_null(big = malloc(bigsz));
	memset(big, '#', bigsz);
	write_temp(path, sizeof(path), big, bigsz);
	assert_null(config_load(path, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s: file is larger than 4194304 bytes",
	    path);
	assert_string_equal(err, want);
	unlink(path);
	/* Exactly 4 MiB is fine. */
	write_temp(path, sizeof(path), big, bigsz - 1);
	c = config_load(path, err, sizeof(err));
	assert_non_null(c);
	config_free(c);
	unlink(path);
	free(big);

	/* A parse error names the file as given, with the line. */
	write_temp(path, sizeof(path), "\n\nworkers x\n", 12);
	assert_null(config_load(path, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s:3: \"workers\": invalid value \"x\" "
	    "(expected auto or 1..64)", path);
	assert_string_equal(err, want);
	unlink(path);
}

/* config_load with a relative path stores the absolute one. */
static void
test_load_relative(void **state)
{
	struct config	*c;
	char		 old[PATH_MAX], path[PATH_MAX], want[PATH_MAX + 64];
	char		 err[CONFIG_ERRLEN], *base;

	write_temp(path, sizeof(path), "workers 1\n", 10);
	assert_non_null(getcwd(old, sizeof(old)));
	base = strrchr(path, '/');
	*base = '\0';
	assert_int_equal(chdir(path), 0);
	c = config_load(base + 1, err, sizeof(err));
	assert_non_null(c);
	abs_of(want, sizeof(want), base + 1);
	assert_string_equal(c->c_path, want);
	config_free(c);
	unlink(base + 1);
	assert_int_equal(chdir(old), 0);
}

/*
 * config_load_flags(CONFIG_NO_TLS) (keygatectl): a configuration whose
 * tls_certificate key is missing and whose ca= file is not PEM fails
 * config_load() but loads without its TLS contexts; the checks that read
 * no certificate still apply.
 */
static void
test_load_no_tls(void **state)
{
	struct tls_files	 f;
	struct config		*c;
	char			 text[4 * PATH_MAX], path[PATH_MAX];
	char			 err[CONFIG_ERRLEN];
	char			 want[PATH_MAX + 64], nokey[PATH_MAX], *tok;

	tls_files_make(&f);
	tok = tlst_write_file(f.dir, "token", "0123456789abcdefXYZ\n");
	snprintf(nokey, sizeof(nokey), "%s/missing.key", f.dir);
	snprintf(text, sizeof(text), "admin_token_file %s\n"
	    "admin_listen 127.0.0.1:9999 tls\nlisten 8443 tls\n"
	    "tls_certificate %s %s\n", tok, f.cert, nokey);
	write_temp(path, sizeof(path), text, strlen(text));
	assert_null(config_load(path, err, sizeof(err)));
	assert_non_null(strstr(err, nokey));
	assert_non_null(c = config_load_flags(path, CONFIG_NO_TLS, err,
	    sizeof(err)));
	assert_true(c->c_admin);
	assert_true(c->c_admin_listen.la_tls);
	assert_true(c->c_listen[0].la_tls);
	assert_int_equal(c->c_ntls_certs, 1);
	assert_string_equal(c->c_tls_certs[0].tc_key, nokey);
	assert_null(c->c_tls);
	config_free(c);
	unlink(path);

	/* An https upstream's ca= is not read either. */
	snprintf(text, sizeof(text), "upstream a https://127.0.0.1 ca=%s\n",
	    f.junk);
	write_temp(path, sizeof(path), text, strlen(text));
	assert_null(config_load(path, err, sizeof(err)));
	assert_non_null(c = config_load_flags(path, CONFIG_NO_TLS, err,
	    sizeof(err)));
	assert_true(c->c_upstreams[0].u_tls);
	assert_null(c->c_upstreams[0].u_ssl_ctx);
	config_free(c);
	unlink(path);

	/* Syntax and consistency are checked as ever. */
	snprintf(text, sizeof(text), "listen 8443 tls\n");
	write_temp(path, sizeof(path), text, strlen(text));
	assert_null(config_load_flags(path, CONFIG_NO_TLS, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s:1: listen 8443 tls: no "
	    "tls_certificate is configured", path);
	assert_string_equal(err, want);
	unlink(path);
	snprintf(text, sizeof(text), "tls_certificate %s %s\n"
	    "tls_protocols TLSv1.1\n", f.cert, nokey);
	write_temp(path, sizeof(path), text, strlen(text));
	assert_null(config_load_flags(path, CONFIG_NO_TLS, err, sizeof(err)));
	assert_non_null(strstr(err, ":2: "));
	unlink(path);
	free(tok);
	tls_files_free(&f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_keys_admin),
		cmocka_unit_test(test_client_addresses),
		cmocka_unit_test(test_upstream_pools),
		cmocka_unit_test(test_rate_defaults),
		cmocka_unit_test(test_rate_forms),
		cmocka_unit_test(test_route_rate),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_keywords),
		cmocka_unit_test(test_relative_paths),
		cmocka_unit_test(test_listen),
		cmocka_unit_test(test_parse_addr),
		cmocka_unit_test(test_parse_numbers),
		cmocka_unit_test(test_lexing),
		cmocka_unit_test(test_hash_inside_word),
		cmocka_unit_test(test_upstreams_and_routes),
		cmocka_unit_test(test_http_upstreams),
		cmocka_unit_test(test_counts),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_jwt_defaults),
		cmocka_unit_test(test_jwt_values),
		cmocka_unit_test(test_jwt_routes),
		cmocka_unit_test(test_jwt_limits),
		cmocka_unit_test(test_short_errbuf),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_load_relative),
		cmocka_unit_test(test_load_no_tls),
		cmocka_unit_test(test_tls_values),
		cmocka_unit_test(test_tls_load),
		cmocka_unit_test(test_https_upstreams),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
