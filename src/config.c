/*
 * Configuration file parser.  See config.h and keygate.conf(5).
 *
 * A file is read whole, split into lines and each line into words; the
 * first word names a directive, looked up in the directives[] table, which
 * says how many arguments it takes, how to parse them (a kind, or a handler
 * for the directives that need one), where the value goes in struct config,
 * its bounds and its default.  Defaults are applied from the same table to a
 * fresh struct config before the file is read, so a default and a value
 * written in the file go through the same code.  Checks that involve more
 * than one line (routes naming upstreams defined further down, header size
 * against request line size) run once the whole file has been read.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>

#include "config.h"
#include "keystore.h"
#include "http.h"
#include "jwk.h"
#include "jwt.h"
#include "ratelimit.h"
#include "route.h"
#include "tls.h"
#include "util.h"

#define CONFIG_MAX_FILE		(4 * 1024 * 1024)
#define CONFIG_MAX_WORDS	128	/* per line: 64 URLs and the options */
#define CONFIG_MAX_LISTEN	16
#define CONFIG_MAX_UPSTREAMS	64
#define CONFIG_MAX_ROUTES	4096
#define CONFIG_MAX_NAME		64	/* upstream names */

#define KB	(1024ULL)
#define MB	(1024ULL * KB)
#define GB	(1024ULL * MB)
#define TB	(1024ULL * GB)
#define SEC	(1000ULL)
#define MIN	(60 * SEC)
#define HOUR	(60 * MIN)

#define nitems(a)	(sizeof(a) / sizeof((a)[0]))

struct parser;
struct directive;

typedef int (*dir_fn)(struct parser *, const struct directive *, char **,
    int);

enum dir_kind {
	DK_FUNC = 0,	/* d_fn parses the arguments */
	DK_PATH,	/* char *, made absolute */
	DK_DURATION,	/* int, milliseconds */
	DK_SIZE,	/* size_t or uint64_t, bytes */
	DK_INT,		/* int */
	DK_ENUM		/* enum, index of the word in d_enum */
};

struct directive {
	const char		*d_name;
	int			 d_minargs;
	int			 d_maxargs;	/* -1: no upper limit */
	enum dir_kind		 d_kind;
	dir_fn			 d_fn;		/* DK_FUNC only */
	size_t			 d_off;		/* member of struct config */
	size_t			 d_width;	/* sizeof that member */
	uint64_t		 d_lo;		/* bounds of numeric kinds */
	uint64_t		 d_hi;
	const char *const	*d_enum;	/* DK_ENUM words, NULL at end */
	const char		*d_default;	/* applied first, or NULL */
	int			 d_flags;
#define D_REPEAT	0x01	/* may appear more than once; the default is
				   applied only if it never does */
};

/* A number's unit suffix and what it multiplies by. */
struct unit {
	const char	*u_name;
	uint64_t	 u_mult;
};

static int	 dir_listen(struct parser *, const struct directive *, char **,
		    int);
static int	 dir_workers(struct parser *, const struct directive *,
		    char **, int);
static int	 dir_user(struct parser *, const struct directive *, char **,
		    int);
static int	 dir_error_log(struct parser *, const struct directive *,
		    char **, int);
static int	 dir_access_log(struct parser *, const struct directive *,
		    char **, int);
static int	 dir_upstream(struct parser *, const struct directive *,
		    char **, int);
static int	 dir_plain_path(struct parser *, const struct directive *,
		    char **, int);
static int	 dir_route(struct parser *, const struct directive *, char **,
		    int);
static int	 route_default_name(struct parser *, struct route *);
static void	 upstream_server_labels(struct config *, struct upstream *);
static int	 dir_metrics_listen(struct parser *, const struct directive *,
		    char **, int);
static int	 dir_admin_listen(struct parser *, const struct directive *,
		    char **, int);
static int	 dir_admin_token_file(struct parser *, const struct directive *,
		    char **, int);
static int	 dir_header_name(struct parser *, const struct directive *,
		    char **, int);
static int	 dir_real_ip_from(struct parser *, const struct directive *,
		    char **, int);
static int	 route_from(struct parser *, struct route *, const char *);
static int	 valid_dns_name(const char *);
static int	 dir_rate_limit(struct parser *, const struct directive *,
		    char **, int);
static int	 dir_jwt_provider(struct parser *, const struct directive *,
		    char **, int);
static int	 dir_tls_certificate(struct parser *, const struct directive *,
		    char **, int);
static int	 dir_cluster_redis(struct parser *, const struct directive *,
		    char **, int);
static int	 dir_cluster_name(struct parser *, const struct directive *,
		    char **, int);
static int	 dir_tls_protocols(struct parser *, const struct directive *,
		    char **, int);
static int	 dir_tls_ciphers(struct parser *, const struct directive *,
		    char **, int);
static int	 route_scopes(struct parser *, struct route *, const char *);
static int	 split_words(struct parser *, char *, char **, int *);
static int	 perr(struct parser *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));

static const char *const off_on[] = { "off", "on", NULL };
static const char *const local_deny[] = { "local", "deny", NULL };

static const char *const log_levels[] = {
	"error", "warn", "info", "debug", NULL
};

/* Largest unit first: the formatters pick the first that divides. */
static const struct unit duration_units[] = {
	{ "h", HOUR }, { "m", MIN }, { "s", SEC }, { "ms", 1 }, { "", SEC },
	{ NULL, 0 }
};
static const struct unit size_units[] = {
	{ "t", TB }, { "g", GB }, { "m", MB }, { "k", KB }, { "", 1 },
	{ "T", TB }, { "G", GB }, { "M", MB }, { "K", KB }, { NULL, 0 }
};
static const struct unit int_units[] = {
	{ "", 1 }, { NULL, 0 }
};

#define M(m)	offsetof(struct config, m), sizeof(((struct config *)0)->m)
#define FUNC(name, min, max, fn, lo, hi, def, fl)			\
	{ name, min, max, DK_FUNC, fn, 0, 0, lo, hi, NULL, def, fl }
/* One word that fn checks and keeps in member m (a char *). */
#define MFUNC(name, fn, m, def)						\
	{ name, 1, 1, DK_FUNC, fn, M(m), 0, 0, NULL, def, 0 }
#define PATH(name, m, def)						\
	{ name, 1, 1, DK_PATH, NULL, M(m), 0, 0, NULL, def, 0 }
#define NUM(name, kind, m, lo, hi, def)					\
	{ name, 1, 1, kind, NULL, M(m), lo, hi, NULL, def, 0 }
#define ENUM(name, m, words, def)					\
	{ name, 1, 1, DK_ENUM, NULL, M(m), 0, 0, words, def, 0 }
#define RATE(name, m, def)						\
	{ name, 1, RL_WINDOWS, DK_FUNC, dir_rate_limit, M(m), 0, 0, NULL, \
	    def, 0 }

#define STR(x)		#x
#define XSTR(x)		STR(x)
/* "20/1s 200/10s 1000/60s", from ratelimit.h. */
#define RATE_DEFAULT							\
	XSTR(RL_DEFAULT_1S) "/1s " XSTR(RL_DEFAULT_10S) "/10s "		\
	XSTR(RL_DEFAULT_60S) "/60s"

static const struct directive directives[] = {
	FUNC("listen", 1, 2, dir_listen, 0, 0, "127.0.0.1:8080", D_REPEAT),
	FUNC("workers", 1, 1, dir_workers, 1, CONFIG_MAX_WORKERS, "auto", 0),
	FUNC("user", 1, 1, dir_user, 0, 0, NULL, 0),
	PATH("pidfile", c_pidfile, KEYGATE_RUNSTATEDIR "/keygate/keygated.pid"),
	PATH("state_dir", c_state_dir, KEYGATE_LOCALSTATEDIR "/lib/keygate"),
	FUNC("error_log", 1, 1, dir_error_log, 0, 0, "syslog", 0),
	FUNC("access_log", 1, 1, dir_access_log, 0, 0, "off", 0),
	ENUM("log_level", c_log_level, log_levels, "info"),
	NUM("header_timeout", DK_DURATION, c_header_timeout, 1, HOUR, "10s"),
	NUM("body_timeout", DK_DURATION, c_body_timeout, 1, HOUR, "30s"),
	NUM("body_deadline", DK_DURATION, c_body_deadline, 0, HOUR, "60s"),
	NUM("keepalive_timeout", DK_DURATION, c_keepalive_timeout, 0, HOUR,
	    "75s"),
	NUM("send_timeout", DK_DURATION, c_send_timeout, 1, HOUR, "30s"),
	NUM("shutdown_timeout", DK_DURATION, c_shutdown_timeout, 0, HOUR,
	    "10s"),
	NUM("max_request_line", DK_SIZE, c_max_request_line, 256, 64 * KB,
	    "8k"),
	NUM("max_header_size", DK_SIZE, c_max_header_size, KB, MB, "16k"),
	NUM("max_body_size", DK_SIZE, c_max_body_size, 0, TB, "1m"),
	NUM("max_connections", DK_INT, c_max_connections, 1, 1000000, "4096"),
	NUM("keepalive_requests", DK_INT, c_keepalive_requests, 1, 100000000,
	    "10000"),
	ENUM("forward_credentials", c_forward_credentials, off_on, "off"),
	ENUM("underscores_in_headers", c_underscores_in_headers, off_on, "off"),
	ENUM("merge_slashes", c_merge_slashes, off_on, "on"),
	NUM("max_keys", DK_INT, c_max_keys, 1, CONFIG_MAX_KEYS, "1000000"),
	NUM("max_active_keys", DK_INT, c_max_active_keys, 0, CONFIG_MAX_KEYS,
	    "0"),
	MFUNC("api_key_header", dir_header_name, c_api_key_header, "X-API-KEY"),
	RATE("rate_limit", c_rate, RATE_DEFAULT),
	RATE("anonymous_rate_limit", c_anon_rate, "off"),
	FUNC("admin_listen", 1, 2, dir_admin_listen, 0, 0, "127.0.0.1:8081", 0),
	FUNC("metrics_listen", 1, 2, dir_metrics_listen, 0, 0, NULL, 0),
	FUNC("admin_token_file", 1, 1, dir_admin_token_file, 0, 0, NULL, 0),
	ENUM("admin_ui", c_admin_ui, off_on, "on"),
	NUM("admin_ui_idle_timeout", DK_DURATION, c_admin_ui_idle, 1000,
	    12 * HOUR, "30m"),
	NUM("admin_ui_rotate_days", DK_INT, c_admin_ui_rotate_days, 1, 3650,
	    "90"),
	NUM("admin_ui_unused_days", DK_INT, c_admin_ui_unused_days, 1, 3650,
	    "30"),
	MFUNC("verify_path", dir_plain_path, c_verify_path, NULL),
	MFUNC("health_path", dir_plain_path, c_health_path, NULL),
	NUM("shutdown_delay", DK_DURATION, c_shutdown_delay, 0, HOUR, "0s"),
	FUNC("real_ip_from", 1, -1, dir_real_ip_from, 0, 0, NULL, D_REPEAT),
	MFUNC("real_ip_header", dir_header_name, c_real_ip_header,
	    "X-Forwarded-For"),
	FUNC("jwt_provider", 1, -1, dir_jwt_provider, 0, 0, NULL, D_REPEAT),
	FUNC("upstream", 2, -1, dir_upstream, 0, 0, NULL, D_REPEAT),
	FUNC("route", 3, -1, dir_route, 0, 0, NULL, D_REPEAT),
	FUNC("tls_certificate", 2, 2, dir_tls_certificate, 0, 0, NULL,
	    D_REPEAT),
	FUNC("tls_protocols", 1, 2, dir_tls_protocols, 0, 0,
	    "TLSv1.2 TLSv1.3", 0),
	FUNC("tls_ciphers", 1, 1, dir_tls_ciphers, 0, 0, TLS_CIPHERS_DEFAULT,
	    0),
	FUNC("tls_ciphersuites", 1, 1, dir_tls_ciphers, 0, 0,
	    TLS_CIPHERSUITES_DEFAULT, 0),
	ENUM("tls_session_tickets", c_tls_tickets, off_on, "on"),
	FUNC("cluster_redis", 1, 3, dir_cluster_redis, 0, 0, NULL, 0),
	MFUNC("cluster_name", dir_cluster_name, c_cluster_name, "default"),
	ENUM("cluster_fallback", c_cluster_fallback, local_deny, "local"),
	ENUM("cluster_limits", c_cluster_limits, off_on, "on"),
	NUM("cluster_standing_share", DK_INT, c_cluster_standing, 0, 40, "20"),
};

/* Names a route refers to, resolved once the whole file is read. */
struct route_names {
	char		*rn_upstream;	/* upstream=, or NULL */
	char		*rn_auth;	/* auth= as written, or NULL */
};

struct parser {
	const char	*p_name;	/* file name for messages */
	int		 p_line;	/* current line, 0 outside the file */
	struct config	*p_conf;
	int		 p_first[nitems(directives)];	/* line of first use */
	struct route_names *p_rnames;	/* one per route */
	size_t		 p_nrnames;
	size_t		 p_rcap;	/* routes and p_rnames allocated */
	char		*p_err;
	size_t		 p_errlen;
	int		 p_flags;	/* CONFIG_NO_TLS */
};

/* Write "NAME:LINE: message" (or "NAME: message") to the error buffer. */
static int
perr(struct parser *p, const char *fmt, ...)
{
	char	 msg[CONFIG_ERRLEN];
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (p->p_line > 0)
		snprintf(p->p_err, p->p_errlen, "%s:%d: %s", p->p_name,
		    p->p_line, msg);
	else
		snprintf(p->p_err, p->p_errlen, "%s: %s", p->p_name, msg);
	return (-1);
}

/*
 * Parse digits followed by one of the unit suffixes into *v (digits times
 * the unit).  Returns 0, -1 if s is not of that form, -2 if it is but the
 * value does not fit in 64 bits.  The digits are accumulated with a check
 * before each step, so no intermediate result wraps.
 */
static int
parse_number(const char *s, const struct unit *units, uint64_t *v)
{
	uint64_t	 n = 0;
	int		 over = 0, i;

	if (*s < '0' || *s > '9')
		return (-1);
	for (; *s >= '0' && *s <= '9'; s++) {
		if (n > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			over = 1;
		else
			n = n * 10 + (uint64_t)(*s - '0');
	}
	for (i = 0; units[i].u_name != NULL; i++)
		if (strcmp(s, units[i].u_name) == 0)
			break;
	if (units[i].u_name == NULL)
		return (-1);
	if (over || n > UINT64_MAX / units[i].u_mult)
		return (-2);
	*v = n * units[i].u_mult;
	return (0);
}

/* Write v in the largest unit that divides it exactly, e.g. "16k". */
static const char *
format_number(char *buf, size_t len, uint64_t v, const struct unit *units)
{
	int	 i;

	if (v == 0) {
		snprintf(buf, len, "0");
		return (buf);
	}
	for (i = 0; units[i].u_name != NULL; i++)
		if (v % units[i].u_mult == 0)
			break;
	if (units[i].u_name == NULL)
		snprintf(buf, len, "%llu", (unsigned long long)v);
	else
		snprintf(buf, len, "%llu%s",
		    (unsigned long long)(v / units[i].u_mult), units[i].u_name);
	return (buf);
}

/* Parse a duration ("10s", "500ms", "2m", "1h", bare = seconds) in ms. */
int
config_parse_duration_ms(const char *s, int *ms)
{
	uint64_t	 v;

	if (parse_number(s, duration_units, &v) != 0 || v > INT_MAX)
		return (-1);
	*ms = (int)v;
	return (0);
}

/* Parse a size ("512", "8k", "1m", "1g", "1t") in bytes. */
int
config_parse_size(const char *s, uint64_t *bytes)
{
	return (parse_number(s, size_units, bytes) == 0 ? 0 : -1);
}

/* Parse a port number, 0 to 65535. */
static int
parse_port(const char *s, in_port_t *port)
{
	uint64_t	 v;

	if (strlen(s) > 5 || parse_number(s, int_units, &v) != 0 ||
	    v > 65535)
		return (-1);
	*port = htons((uint16_t)v);
	return (0);
}

/* Parse "[IPv6]:PORT" into ss. */
static int
parse_addr6(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in6	 sin6;
	char			 host[INET6_ADDRSTRLEN];
	const char		*end;

	memset(&sin6, 0, sizeof(sin6));
	if ((end = strchr(s, ']')) == NULL || end[1] != ':' ||
	    (size_t)(end - s - 1) >= sizeof(host))
		return (-1);
	memcpy(host, s + 1, end - s - 1);
	host[end - s - 1] = '\0';
	if (inet_pton(AF_INET6, host, &sin6.sin6_addr) != 1 ||
	    parse_port(end + 2, &sin6.sin6_port) == -1)
		return (-1);
	sin6.sin6_family = AF_INET6;
	memcpy(ss, &sin6, sizeof(sin6));
	*len = sizeof(sin6);
	return (0);
}

/* Parse "IPv4:PORT", "*:PORT" or "PORT" into ss. */
static int
parse_addr4(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in	 sin;
	char			 host[INET_ADDRSTRLEN];
	const char		*colon;

	memset(&sin, 0, sizeof(sin));
	sin.sin_addr.s_addr = htonl(INADDR_ANY);
	if ((colon = strchr(s, ':')) != NULL) {
		if ((size_t)(colon - s) >= sizeof(host))
			return (-1);
		memcpy(host, s, colon - s);
		host[colon - s] = '\0';
		if (strcmp(host, "*") != 0 &&
		    inet_pton(AF_INET, host, &sin.sin_addr) != 1)
			return (-1);
		s = colon + 1;
	}
	if (parse_port(s, &sin.sin_port) == -1)
		return (-1);
	sin.sin_family = AF_INET;
	memcpy(ss, &sin, sizeof(sin));
	*len = sizeof(sin);
	return (0);
}

/* Parse a listen address: 127.0.0.1:80, [::1]:80, *:80 or 80. */
int
config_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (s[0] == '[')
		return (parse_addr6(s, ss, len));
	return (parse_addr4(s, ss, len));
}

/* Same address family, address and port? */
static int
addr_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	struct sockaddr_in	 a4, b4;
	struct sockaddr_in6	 a6, b6;

	if (a->ss_family != b->ss_family)
		return (0);
	if (a->ss_family == AF_INET) {
		memcpy(&a4, a, sizeof(a4));
		memcpy(&b4, b, sizeof(b4));
		return (a4.sin_port == b4.sin_port &&
		    a4.sin_addr.s_addr == b4.sin_addr.s_addr);
	}
	memcpy(&a6, a, sizeof(a6));
	memcpy(&b6, b, sizeof(b6));
	return (a6.sin6_port == b6.sin6_port &&
	    memcmp(&a6.sin6_addr, &b6.sin6_addr, sizeof(a6.sin6_addr)) == 0);
}

/* store_number() writes enums as 32-bit integers. */
_Static_assert(sizeof(enum log_level) == sizeof(uint32_t),
    "enum log_level is not 32 bits wide");

/* Store v into the directive's member, an unsigned or int of its width. */
static void
store_number(struct parser *p, const struct directive *d, uint64_t v)
{
	char		*dst = (char *)p->p_conf + d->d_off;
	uint64_t	 v64 = v;
	uint32_t	 v32 = (uint32_t)v;

	if (d->d_width == sizeof(v64))
		memcpy(dst, &v64, sizeof(v64));
	else
		memcpy(dst, &v32, sizeof(v32));
}

/* "listen ADDR": add a listener. */
static int
dir_listen(struct parser *p, const struct directive *d, char **argv, int argc)
{
	struct config		*c = p->p_conf;
	struct listen_addr	 la, *nl;
	size_t			 i;

	if (argc == 2 && strcmp(argv[1], "tls") != 0)
		return (perr(p, "\"listen\": unknown parameter \"%s\"",
		    argv[1]));
	if (c->c_nlisten == CONFIG_MAX_LISTEN)
		return (perr(p, "too many listen directives (max %d)",
		    CONFIG_MAX_LISTEN));
	memset(&la, 0, sizeof(la));
	if (strlen(argv[0]) >= sizeof(la.la_name) ||
	    config_parse_addr(argv[0], &la.la_ss, &la.la_sslen) == -1)
		return (perr(p, "\"listen\": invalid address \"%s\" (expected "
		    "IP:PORT, [IPv6]:PORT, *:PORT or PORT)", argv[0]));
	for (i = 0; i < c->c_nlisten; i++)
		if (addr_equal(&c->c_listen[i].la_ss, &la.la_ss))
			return (perr(p, "duplicate listen address \"%s\" "
			    "(first at line %d)", argv[0],
			    c->c_listen[i].la_line));
	snprintf(la.la_name, sizeof(la.la_name), "%s", argv[0]);
	la.la_line = p->p_line;
	la.la_tls = argc == 2;
	nl = reallocarray(c->c_listen, c->c_nlisten + 1, sizeof(*nl));
	if (nl == NULL)
		return (perr(p, "out of memory"));
	c->c_listen = nl;
	c->c_listen[c->c_nlisten++] = la;
	return (0);
}

/* "workers N|auto"; auto is stored as 0 and resolved after the file. */
static int
dir_workers(struct parser *p, const struct directive *d, char **argv,
    int argc)
{
	uint64_t	 v;

	if (strcmp(argv[0], "auto") == 0) {
		p->p_conf->c_workers = 0;
		return (0);
	}
	if (parse_number(argv[0], int_units, &v) != 0 || v < d->d_lo ||
	    v > d->d_hi)
		return (perr(p, "\"%s\": invalid value \"%s\" (expected auto "
		    "or %llu..%llu)", d->d_name, argv[0],
		    (unsigned long long)d->d_lo, (unsigned long long)d->d_hi));
	p->p_conf->c_workers = (int)v;
	return (0);
}

/* "user NAME": look the user up now, so -t reports an unknown one. */
static int
dir_user(struct parser *p, const struct directive *d, char **argv, int argc)
{
	struct config	*c = p->p_conf;
	struct passwd	*pw;

	if ((pw = getpwnam(argv[0])) == NULL)
		return (perr(p, "unknown user \"%s\"", argv[0]));
	free(c->c_user);
	if ((c->c_user = strdup(argv[0])) == NULL)
		return (perr(p, "out of memory"));
	c->c_uid = pw->pw_uid;
	c->c_gid = pw->pw_gid;
	return (0);
}

/* Replace *dst by the absolute form of path. */
static int
set_path(struct parser *p, const char *name, char **dst, const char *path)
{
	char	*abs;

	if (path[0] == '\0')
		return (perr(p, "\"%s\": empty path", name));
	if ((abs = util_abspath(path)) == NULL)
		return (perr(p, "\"%s\": cannot make \"%s\" absolute: %s",
		    name, path, strerror(errno)));
	free(*dst);
	*dst = abs;
	return (0);
}

/* "error_log syslog|stderr|PATH". */
static int
dir_error_log(struct parser *p, const struct directive *d, char **argv,
    int argc)
{
	struct config	*c = p->p_conf;
	char		*s;

	if (strcmp(argv[0], "syslog") != 0 && strcmp(argv[0], "stderr") != 0)
		return (set_path(p, d->d_name, &c->c_error_log, argv[0]));
	if ((s = strdup(argv[0])) == NULL)
		return (perr(p, "out of memory"));
	free(c->c_error_log);
	c->c_error_log = s;
	return (0);
}

/* "access_log off|PATH". */
static int
dir_access_log(struct parser *p, const struct directive *d, char **argv,
    int argc)
{
	struct config	*c = p->p_conf;

	if (strcmp(argv[0], "off") != 0)
		return (set_path(p, d->d_name, &c->c_access_log, argv[0]));
	free(c->c_access_log);
	c->c_access_log = NULL;
	return (0);
}

/* Is s 1 to max letters, digits or characters of extra? */
static int
valid_name(const char *s, size_t max, const char *extra)
{
	size_t	 n = strlen(s), i;

	if (n == 0 || n > max)
		return (0);
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && strchr(extra, s[i]) == NULL)
			return (0);
	return (1);
}

/* Check the TYPE of "upstream NAME TYPE": echo, http:// or https://. */
static int
upstream_type(struct parser *p, const char *name, const char *type,
    enum upstream_type *t, int *tls)
{
	*tls = 0;
	if (strcmp(type, "echo") == 0) {
		*t = UPSTREAM_ECHO;
		return (0);
	}
	if (strncmp(type, "http://", 7) == 0 ||
	    strncmp(type, "https://", 8) == 0) {
		*t = UPSTREAM_HTTP;
		*tls = type[4] == 's';
		return (0);
	}
	return (perr(p, "upstream \"%s\": unknown type \"%s\" (expected "
	    "\"echo\", http://HOST[:PORT] or https://HOST[:PORT])", name,
	    type));
}

/* Is the len bytes at s equal to the string word? */
static int
word_is(const char *s, size_t len, const char *word)
{
	return (strlen(word) == len && memcmp(s, word, len) == 0);
}

/*
 * One URL of an upstream, "http://HOST[:PORT][/][#weight=N]" or
 * "https://...": HOST is an IPv4 address, [IPv6] or a name resolved now,
 * every address it has becoming a server (getaddrinfo's order, repeats
 * dropped).  us_host keeps "HOST[:PORT]" as written, for the Host header
 * and SNI.
 */
static int
upstream_url(struct parser *p, struct upstream *u, const char *url)
{
	struct addrinfo		 hints, *res, *ai;
	struct upstream_server	*us, *nus;
	char			 host[256], pbuf[8];
	const char		*hostport = url + (u->u_tls ? 8 : 7), *h = hostport;
	const char		*end, *port = u->u_tls ? "443" : "80", *frag;
	size_t			 hlen, plen, ulen;
	uint64_t		 v, weight = 1;
	int			 rc, k, dup, first;

	if ((strncmp(url, "https://", 8) == 0) != u->u_tls)
		return (perr(p, "upstream \"%s\": \"%s\": every URL of an "
		    "upstream must have the same scheme", u->u_name, url));
	ulen = strlen(url);
	if ((frag = strchr(url, '#')) != NULL) {
		if (strncmp(frag, "#weight=", 8) != 0 ||
		    parse_number(frag + 8, int_units, &weight) != 0 ||
		    weight < 1 || weight > 100)
			return (perr(p, "upstream \"%s\": \"%s\": expected "
			    "#weight=N (1..100) after the URL", u->u_name,
			    url));
		ulen = (size_t)(frag - url);
	}
	end = h + strcspn(h, "/#");
	if (*end == '/' && end[1] != '\0' && end[1] != '#')
		return (perr(p, "upstream \"%s\": a path in the URL is not "
		    "supported (\"%s\")", u->u_name, url));
	if (*h == '[') {
		if ((hlen = strcspn(h, "]")) >= (size_t)(end - h))
			return (perr(p, "upstream \"%s\": bad address in \"%s\"",
			    u->u_name, url));
		h++;
		hlen--;
		if (h[hlen + 1] == ':')
			port = h + hlen + 2;
		else if (h + hlen + 1 != end)
			return (perr(p, "upstream \"%s\": bad address in \"%s\"",
			    u->u_name, url));
	} else {
		hlen = strcspn(h, ":/#");
		if (h[hlen] == ':')
			port = h + hlen + 1;
	}
	if (hlen == 0 || hlen >= sizeof(host) || *port == '\0' || *port == '/' ||
	    *port == '#')
		return (perr(p, "upstream \"%s\": bad address in \"%s\"",
		    u->u_name, url));
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if ((plen = strcspn(port, "/#")) == 0 || plen >= sizeof(pbuf))
		return (perr(p, "upstream \"%s\": bad port in \"%s\"",
		    u->u_name, url));
	memcpy(pbuf, port, plen);
	pbuf[plen] = '\0';
	if (parse_number(pbuf, int_units, &v) != 0 || v < 1 || v > 65535)
		return (perr(p, "upstream \"%s\": bad port in \"%s\"",
		    u->u_name, url));
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	/* Only families this host has an address of: no dead AAAA server. */
	hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
	if ((rc = getaddrinfo(host, pbuf, &hints, &res)) != 0)
		return (perr(p, "upstream \"%s\": cannot resolve \"%s\": %s",
		    u->u_name, url, gai_strerror(rc)));
	first = u->u_nservers;
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		for (dup = -1, k = 0; k < u->u_nservers; k++)
			if (u->u_servers[k].us_sslen == ai->ai_addrlen &&
			    memcmp(&u->u_servers[k].us_ss, ai->ai_addr,
			    ai->ai_addrlen) == 0)
				dup = k;
		if (dup >= 0 && dup < first) {
			freeaddrinfo(res);
			return (perr(p, "upstream \"%s\": \"%s\" is the same "
			    "server as \"%s\" (the same address and port)",
			    u->u_name, url, u->u_servers[dup].us_url));
		}
		if (dup >= 0 || ai->ai_addrlen > sizeof(us->us_ss))
			continue;	/* a name's address given twice */
		if (u->u_nservers == UPSTREAM_MAX_SERVERS) {
			freeaddrinfo(res);
			return (perr(p, "upstream \"%s\": too many servers "
			    "(max %d)", u->u_name, UPSTREAM_MAX_SERVERS));
		}
		if ((nus = reallocarray(u->u_servers, (size_t)u->u_nservers + 1,
		    sizeof(*nus))) == NULL) {
			freeaddrinfo(res);
			return (perr(p, "out of memory"));
		}
		u->u_servers = nus;
		us = &u->u_servers[u->u_nservers++];
		memset(us, 0, sizeof(*us));
		memcpy(&us->us_ss, ai->ai_addr, ai->ai_addrlen);
		us->us_sslen = ai->ai_addrlen;
		us->us_weight = (int)weight;
		if ((us->us_url = strndup(url, ulen)) == NULL ||
		    (us->us_host = strndup(hostport, (size_t)(end - hostport))) ==
		    NULL) {
			freeaddrinfo(res);
			return (perr(p, "out of memory"));
		}
	}
	freeaddrinfo(res);
	return (0);
}

/*
 * Is s a DNS name: dot-separated labels of 1 to 63 letters, digits or
 * '-' (not at either end of a label), 253 bytes at most?
 */
static int
valid_dns_name(const char *s)
{
	size_t	 len, n = strlen(s);

	if (n == 0 || n > 253)
		return (0);
	for (; *s != '\0'; s += len + (s[len] == '.')) {
		len = strspn(s, "abcdefghijklmnopqrstuvwxyz"
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-");
		if (len == 0 || len > 63 || s[0] == '-' || s[len - 1] == '-' ||
		    (s[len] != '.' && s[len] != '\0') ||
		    (s[len] == '.' && s[len + 1] == '\0'))
			return (0);
	}
	return (1);
}

/* The https options: "ca=PATH", "verify=on|off", "sni=NAME". */
static int
upstream_tls_option(struct parser *p, struct upstream *u, const char *opt,
    size_t klen, const char *val)
{
	if (!u->u_tls)
		return (perr(p, "upstream \"%s\": %.*s= is only for https:// "
		    "upstreams", u->u_name, (int)klen, opt));
	if (word_is(opt, klen, "verify")) {
		if (strcmp(val, "on") != 0 && strcmp(val, "off") != 0)
			return (perr(p, "upstream \"%s\": invalid verify \"%s\" "
			    "(expected on or off)", u->u_name, val));
		u->u_verify = strcmp(val, "on") == 0;
		return (0);
	}
	if (word_is(opt, klen, "sni")) {
		if (!valid_dns_name(val))
			return (perr(p, "upstream \"%s\": sni \"%s\" is not a "
			    "DNS name", u->u_name, val));
		if ((u->u_sni = strdup(val)) == NULL)
			return (perr(p, "out of memory"));
		return (0);
	}
	if (set_path(p, "ca", &u->u_ca, val) == -1)
		return (-1);
	if (access(u->u_ca, R_OK) == -1)
		return (perr(p, "upstream \"%s\": ca %s: %s", u->u_name,
		    u->u_ca, strerror(errno)));
	return (0);
}

/* "retry_on=error,timeout,http_502,http_503,http_504" into u_retry_on. */
static int
upstream_retry_on(struct parser *p, struct upstream *u, const char *val)
{
	static const struct { const char *name; int bit; } words[] = {
		{ "error", RETRY_ERROR }, { "timeout", RETRY_TIMEOUT },
		{ "http_502", RETRY_502 }, { "http_503", RETRY_503 },
		{ "http_504", RETRY_504 }, { "off", 0 }
	};
	const char	*w, *end;
	size_t		 i, len;

	u->u_retry_on = 0;
	for (w = val;; w = end + 1) {
		end = strchr(w, ',');
		len = end != NULL ? (size_t)(end - w) : strlen(w);
		for (i = 0; i < nitems(words); i++)
			if (word_is(w, len, words[i].name))
				break;
		if (i == nitems(words) || (words[i].bit == 0 &&
		    (w != val || end != NULL)))
			return (perr(p, "upstream \"%s\": invalid retry_on "
			    "\"%.*s\" (expected off, or error, timeout, "
			    "http_502, http_503, http_504 separated by commas)",
			    u->u_name, (int)len, w));
		u->u_retry_on |= words[i].bit;
		if (end == NULL)
			return (0);
	}
}

/*
 * "strip_prefix=/api": a path prefix taken off before forwarding, at a
 * segment boundary.  Written as a normalised path: '/' first, no '/' at
 * the end, no empty, "." or ".." segment, no '?', '#', '%', space or
 * control character.
 */
static int
upstream_strip_prefix(struct parser *p, struct upstream *u, const char *val)
{
	const char	*seg;
	size_t		 i, len = strlen(val), n;

	if (len < 2 || val[0] != '/' || val[len - 1] == '/' || len > 1024)
		goto bad;
	for (i = 0; i < len; i++)
		if ((unsigned char)val[i] <= ' ' || val[i] == 0x7f ||
		    strchr("?#%\\", val[i]) != NULL)
			goto bad;
	for (seg = val + 1;; seg += n + 1) {
		n = strcspn(seg, "/");
		if (n == 0 || (n == 1 && seg[0] == '.') ||
		    (n == 2 && seg[0] == '.' && seg[1] == '.'))
			goto bad;
		if (seg[n] == '\0')
			break;
	}
	if ((u->u_strip_prefix = strdup(val)) == NULL)
		return (perr(p, "out of memory"));
	u->u_strip_len = len;
	return (0);
bad:
	return (perr(p, "upstream \"%s\": invalid strip_prefix \"%s\" "
	    "(expected a path such as /api: '/' first, not at the end, no "
	    "empty, . or .. segment, no ?, #, %%, \\ or space)", u->u_name,
	    val));
}

/*
 * "health=/PATH[?QUERY]": what the master's checks ask each server
 * (health.h).  Printable ASCII without space or '#', '/' first.
 */
static int
upstream_health(struct parser *p, struct upstream *u, const char *val)
{
	size_t	 i, len = strlen(val);

	if (len == 0 || val[0] != '/' || len > 1024)
		goto bad;
	for (i = 0; i < len; i++)
		if ((unsigned char)val[i] <= ' ' || val[i] == 0x7f ||
		    val[i] == '#')
			goto bad;
	if ((u->u_health = strdup(val)) == NULL)
		return (perr(p, "out of memory"));
	return (0);
bad:
	return (perr(p, "upstream \"%s\": invalid health \"%s\" (expected a "
	    "path such as /healthz: '/' first, an optional ?query, no space "
	    "or #)", u->u_name, val));
}

/* "host=NAME[:PORT]": the Host header sent, instead of the client's. */
static int
upstream_host_header(struct parser *p, struct upstream *u, const char *val)
{
	char		 h[256];
	const char	*port = NULL;
	uint64_t	 v;
	size_t		 n;

	n = strcspn(val, ":");
	if (val[n] == ':')
		port = val + n + 1;
	if (val[0] == '[') {		/* [v6][:port] */
		n = strcspn(val, "]");
		port = val[n] == ']' && val[n + 1] == ':' ? val + n + 2 : NULL;
		if (val[n] != ']' || (val[n + 1] != '\0' && port == NULL) ||
		    n + 1 >= sizeof(h))
			goto bad;
		memcpy(h, val + 1, n - 1);
		h[n - 1] = '\0';
		if (strspn(h, "0123456789abcdefABCDEF:.") != n - 1 ||
		    strchr(h, ':') == NULL)
			goto bad;
	} else {
		if (n >= sizeof(h))
			goto bad;
		memcpy(h, val, n);
		h[n] = '\0';
		if (!valid_dns_name(h))
			goto bad;
	}
	if (port != NULL && (parse_number(port, int_units, &v) != 0 || v < 1 ||
	    v > 65535))
		goto bad;
	if ((u->u_host_header = strdup(val)) == NULL)
		return (perr(p, "out of memory"));
	return (0);
bad:
	return (perr(p, "upstream \"%s\": invalid host \"%s\" (expected a "
	    "DNS name or address, with an optional :PORT)", u->u_name, val));
}

/*
 * A whole number option of an upstream, lo..hi, into *dst; what names it.
 */
static int
upstream_int(struct parser *p, struct upstream *u, const char *what,
    const char *val, uint64_t lo, uint64_t hi, int *dst)
{
	uint64_t	 v;

	if (parse_number(val, int_units, &v) != 0 || v < lo || v > hi)
		return (perr(p, "upstream \"%s\": invalid %s \"%s\" (expected "
		    "%llu..%llu)", u->u_name, what, val, (unsigned long long)lo,
		    (unsigned long long)hi));
	*dst = (int)v;
	return (0);
}

/* A duration option of an upstream, min_ms..1h, into *dst; what names it. */
static int
upstream_duration(struct parser *p, struct upstream *u, const char *what,
    const char *val, int min_ms, int *dst)
{
	int	 ms;

	if (config_parse_duration_ms(val, &ms) == -1 || ms < min_ms ||
	    (uint64_t)ms > HOUR)
		return (perr(p, "upstream \"%s\": invalid %s \"%s\" (expected "
		    "%dms..1h)", u->u_name, what, val, min_ms));
	*dst = ms;
	return (0);
}

/*
 * "max_idle=N", "connect_timeout=DUR", "read_timeout=DUR",
 * "idle_timeout=DUR", "balance=round_robin|least_conn", "max_fails=N",
 * "fail_timeout=DUR", "retries=N", "retry_on=...", "max_conns=N".
 */
static int
upstream_option(struct parser *p, struct upstream *u, const char *opt)
{
	size_t		 klen = strcspn(opt, "=");
	const char	*val = opt[klen] == '=' ? opt + klen + 1 : "";

	if (u->u_type != UPSTREAM_HTTP)
		return (perr(p, "upstream \"%s\": an echo upstream takes no "
		    "options", u->u_name));
	if (word_is(opt, klen, "ca") || word_is(opt, klen, "verify") ||
	    word_is(opt, klen, "sni"))
		return (upstream_tls_option(p, u, opt, klen, val));
	if (word_is(opt, klen, "max_idle"))
		return (upstream_int(p, u, "max_idle", val, 0, 10000,
		    &u->u_max_idle));
	if (word_is(opt, klen, "max_fails"))
		return (upstream_int(p, u, "max_fails", val, 0, 1000,
		    &u->u_max_fails));
	if (word_is(opt, klen, "retries"))
		return (upstream_int(p, u, "retries", val, 0,
		    UPSTREAM_MAX_SERVERS - 1, &u->u_retries));
	if (word_is(opt, klen, "max_conns"))
		return (upstream_int(p, u, "max_conns", val, 0, 1000000,
		    &u->u_max_conns));
	if (word_is(opt, klen, "retry_on"))
		return (upstream_retry_on(p, u, val));
	if (word_is(opt, klen, "strip_prefix"))
		return (upstream_strip_prefix(p, u, val));
	if (word_is(opt, klen, "host"))
		return (upstream_host_header(p, u, val));
	if (word_is(opt, klen, "health"))
		return (upstream_health(p, u, val));
	if (word_is(opt, klen, "health_fails"))
		return (upstream_int(p, u, "health_fails", val, 1, 100,
		    &u->u_health_fails));
	if (word_is(opt, klen, "health_passes"))
		return (upstream_int(p, u, "health_passes", val, 1, 100,
		    &u->u_health_passes));
	if (word_is(opt, klen, "health_interval"))
		return (upstream_duration(p, u, "health_interval", val,
		    UPSTREAM_HEALTH_MIN_INTERVAL, &u->u_health_interval));
	if (word_is(opt, klen, "connect_timeout"))
		return (upstream_duration(p, u, "connect_timeout", val, 1,
		    &u->u_connect_timeout));
	if (word_is(opt, klen, "read_timeout"))
		return (upstream_duration(p, u, "read_timeout", val, 1,
		    &u->u_read_timeout));
	if (word_is(opt, klen, "idle_timeout"))
		return (upstream_duration(p, u, "idle_timeout", val, 1,
		    &u->u_idle_timeout));
	if (word_is(opt, klen, "fail_timeout"))
		return (upstream_duration(p, u, "fail_timeout", val, 1,
		    &u->u_fail_timeout));
	if (word_is(opt, klen, "balance")) {
		if (strcmp(val, "round_robin") == 0)
			u->u_balance = BALANCE_ROUND_ROBIN;
		else if (strcmp(val, "least_conn") == 0)
			u->u_balance = BALANCE_LEAST_CONN;
		else
			return (perr(p, "upstream \"%s\": invalid balance "
			    "\"%s\" (expected round_robin or least_conn)",
			    u->u_name, val));
		return (0);
	}
	return (perr(p, "upstream \"%s\": unknown option \"%.*s\"",
	    u->u_name, (int)klen, opt));
}

/* "upstream NAME TYPE". */
static int
dir_upstream(struct parser *p, const struct directive *d, char **argv,
    int argc)
{
	struct config		*c = p->p_conf;
	struct upstream		*u, *nu;
	enum upstream_type	 t = UPSTREAM_ECHO;
	char			*name;
	int			 i, j, tls, urls;

	if (c->c_nupstreams == CONFIG_MAX_UPSTREAMS)
		return (perr(p, "too many upstreams (max %d)",
		    CONFIG_MAX_UPSTREAMS));
	if (!valid_name(argv[0], CONFIG_MAX_NAME, "_.-"))
		return (perr(p, "invalid upstream name \"%s\" (expected 1 to "
		    "%d letters, digits, '_', '.' or '-')", argv[0],
		    CONFIG_MAX_NAME));
	if ((u = config_upstream(c, argv[0])) != NULL)
		return (perr(p, "duplicate upstream \"%s\" (first at line %d)",
		    argv[0], u->u_line));
	if (upstream_type(p, argv[0], argv[1], &t, &tls) == -1)
		return (-1);
	nu = reallocarray(c->c_upstreams, c->c_nupstreams + 1, sizeof(*nu));
	if (nu == NULL)
		return (perr(p, "out of memory"));
	c->c_upstreams = nu;
	if ((name = strdup(argv[0])) == NULL)
		return (perr(p, "out of memory"));
	u = &c->c_upstreams[c->c_nupstreams];
	memset(u, 0, sizeof(*u));
	u->u_name = name;
	u->u_type = t;
	u->u_line = p->p_line;
	u->u_index = (int)c->c_nupstreams++;
	u->u_max_idle = UPSTREAM_MAX_IDLE;
	u->u_connect_timeout = UPSTREAM_CONNECT_TIMEOUT;
	u->u_read_timeout = UPSTREAM_READ_TIMEOUT;
	u->u_idle_timeout = UPSTREAM_IDLE_TIMEOUT;
	u->u_max_fails = 1;
	u->u_fail_timeout = UPSTREAM_FAIL_TIMEOUT;
	u->u_retries = 1;
	u->u_retry_on = RETRY_ERROR | RETRY_TIMEOUT;	/* nginx's default */
	u->u_tls = tls;
	u->u_verify = 1;
	u->u_health_interval = UPSTREAM_HEALTH_INTERVAL;
	u->u_health_fails = 1;
	u->u_health_passes = 1;
	for (urls = 1; t == UPSTREAM_HTTP && urls < argc &&
	    (strncmp(argv[urls], "http://", 7) == 0 ||
	    strncmp(argv[urls], "https://", 8) == 0); urls++)
		if (upstream_url(p, u, argv[urls]) == -1)
			return (-1);
	if (t == UPSTREAM_ECHO)
		urls = 2;
	for (i = urls; i < argc; i++) {
		for (j = urls; j < i; j++)
			if (strcspn(argv[i], "=") == strcspn(argv[j], "=") &&
			    strncmp(argv[i], argv[j], strcspn(argv[i], "=")) == 0)
				return (perr(p, "upstream \"%s\": duplicate option "
				    "\"%.*s\"", u->u_name,
				    (int)strcspn(argv[i], "="), argv[i]));
		if (upstream_option(p, u, argv[i]) == -1)
			return (-1);
	}
	for (i = urls; u->u_health == NULL && i < argc; i++)
		if (strncmp(argv[i], "health_", 7) == 0)
			return (perr(p, "upstream \"%s\": %.*s without health=",
			    u->u_name, (int)strcspn(argv[i], "="), argv[i]));
	if (u->u_health != NULL) {
		c->c_nchecked += u->u_nservers;
		if (c->c_nchecked > CONFIG_MAX_HEALTH_CHECKS)
			return (perr(p, "upstream \"%s\": more than %d servers "
			    "with health checks in all", u->u_name,
			    CONFIG_MAX_HEALTH_CHECKS));
	}
	return (0);
}

/*
 * Append a zeroed route to the table (so that config_free() frees whatever
 * is put into it, even if this line turns out to be bad) and a NULL slot to
 * p_rnames.  Both arrays grow by doubling.
 */
static int
route_new(struct parser *p, struct route **rp)
{
	struct route_table	*rt = &p->p_conf->c_routes;
	struct route		*nr;
	struct route_names	*nn;
	size_t			 cap;

	if (rt->rt_nroutes == CONFIG_MAX_ROUTES)
		return (perr(p, "too many routes (max %d)", CONFIG_MAX_ROUTES));
	if (rt->rt_nroutes == p->p_rcap) {
		cap = p->p_rcap == 0 ? 16 : p->p_rcap * 2;
		if ((nr = reallocarray(rt->rt_routes, cap, sizeof(*nr))) ==
		    NULL)
			return (perr(p, "out of memory"));
		rt->rt_routes = nr;
		if ((nn = reallocarray(p->p_rnames, cap, sizeof(*nn))) ==
		    NULL)
			return (perr(p, "out of memory"));
		p->p_rnames = nn;
		p->p_rcap = cap;
	}
	*rp = &rt->rt_routes[rt->rt_nroutes];
	memset(*rp, 0, sizeof(**rp));
	memset(&p->p_rnames[p->p_nrnames++], 0, sizeof(*p->p_rnames));
	rt->rt_nroutes++;
	(*rp)->r_line = p->p_line;
	(*rp)->r_index = (int)rt->rt_nroutes;
	return (0);
}

/*
 * Rate limits: rate_limit, anonymous_rate_limit and a route's rate= are
 * read by the same code into the same shape, one limit per window of
 * ratelimit_window_ms (0: not given).
 */
_Static_assert(sizeof(((struct route *)0)->r_rate) ==
    RL_WINDOWS * sizeof(uint32_t), "r_rate is not one limit per window");
_Static_assert(sizeof(((struct config *)0)->c_rate) ==
    RL_WINDOWS * sizeof(uint32_t), "c_rate is not one limit per window");
_Static_assert(sizeof(((struct config *)0)->c_anon_rate) ==
    RL_WINDOWS * sizeof(uint32_t), "c_anon_rate is not one limit per window");

/* Limits read so far from the words of one directive or rate= option. */
struct rate_spec {
	uint32_t	 rs_rate[RL_WINDOWS];	/* 0: window not given */
	int		 rs_off;		/* "off" was given */
	int		 rs_nwords;
};

/*
 * Window named by the len bytes at s: one of ratelimit_window_name, or
 * "1m" for the 60-second window; -1 if none.
 */
static int
rate_window(const char *s, size_t len)
{
	int	 w;

	for (w = 0; w < RL_WINDOWS; w++)
		if (word_is(s, len, ratelimit_window_name[w]) ||
		    (word_is(s, len, "1m") && ratelimit_window_ms[w] == MIN))
			return (w);
	return (-1);
}

/*
 * Add the word at s (len bytes, not NUL-terminated: rate= words end at a
 * comma), "off" or "N/WINDOW", to rs.  N is plain digits, 1 to
 * RL_MAXLIMIT; each window may be given once, and "off" only alone.
 * what names the directive or option in messages.
 */
static int
rate_word(struct parser *p, const char *what, struct rate_spec *rs,
    const char *s, size_t len)
{
	const char	*slash;
	uint64_t	 n = 0;
	size_t		 i, nlen;
	int		 w, off = word_is(s, len, "off");

	if (off ? rs->rs_nwords > 0 : rs->rs_off)
		return (perr(p, "%s: \"off\" cannot be combined with limits",
		    what));
	rs->rs_nwords++;
	if (off) {
		rs->rs_off = 1;
		return (0);
	}
	slash = memchr(s, '/', len);
	nlen = slash != NULL ? (size_t)(slash - s) : 0;
	for (i = 0; i < nlen && s[i] >= '0' && s[i] <= '9'; i++)
		/* Saturate: any number past the bound is equally wrong. */
		if ((n = n * 10 + (uint64_t)(s[i] - '0')) > RL_MAXLIMIT)
			n = RL_MAXLIMIT + 1;
	if (nlen == 0 || i != nlen ||
	    (w = rate_window(slash + 1, len - nlen - 1)) == -1)
		return (perr(p, "%s: \"%.*s\" is not N/WINDOW (WINDOW is 1s, "
		    "10s or 60s)", what, (int)len, s));
	if (n < 1 || n > RL_MAXLIMIT)
		return (perr(p, "%s: %.*s is not a limit from 1 to %d", what,
		    (int)nlen, s, RL_MAXLIMIT));
	if (rs->rs_rate[w] != 0)
		return (perr(p, "%s: the %s window is given twice", what,
		    ratelimit_window_name[w]));
	rs->rs_rate[w] = (uint32_t)n;
	return (0);
}

/*
 * "rate_limit" and "anonymous_rate_limit": "off", or one limit N/WINDOW
 * per window in any order, into the uint32_t[RL_WINDOWS] at d_off.  A
 * window not given is not enforced, so "off" is all zeros.
 */
static int
dir_rate_limit(struct parser *p, const struct directive *d, char **argv,
    int argc)
{
	struct rate_spec	 rs;
	char			 what[64];
	int			 i;

	memset(&rs, 0, sizeof(rs));
	snprintf(what, sizeof(what), "\"%s\"", d->d_name);
	for (i = 0; i < argc; i++)
		if (rate_word(p, what, &rs, argv[i], strlen(argv[i])) == -1)
			return (-1);
	memcpy((char *)p->p_conf + d->d_off, rs.rs_rate, sizeof(rs.rs_rate));
	return (0);
}

/*
 * The value of a rate= option, "off" or "N/W[,N/W...]", into rate[] (one
 * limit per window, 0: not given) and *off.  what names the option.
 */
static int
rate_option(struct parser *p, const char *what, const char *val,
    uint32_t rate[RL_WINDOWS], int *off)
{
	struct rate_spec	 rs;
	const char		*s, *end;

	memset(&rs, 0, sizeof(rs));
	for (s = val;; s = end + 1) {
		end = s + strcspn(s, ",");
		if (rate_word(p, what, &rs, s, (size_t)(end - s)) == -1)
			return (-1);
		if (*end == '\0')
			break;
	}
	memcpy(rate, rs.rs_rate, sizeof(rs.rs_rate));
	*off = rs.rs_off;
	return (0);
}

/*
 * "rate=off" or "rate=N/W[,N/W...]": the route's own limits, which win over
 * rate_limit and anonymous_rate_limit window by window.
 */
static int
route_rate(struct parser *p, struct route *r, const char *val)
{
	return (rate_option(p, "route option \"rate\"", val, r->r_rate,
	    &r->r_rate_off));
}

/* Has rate= been given?  A valid one always sets off or some window. */
static int
route_has_rate(const struct route *r)
{
	int	 w;

	for (w = 0; w < RL_WINDOWS; w++)
		if (r->r_rate[w] != 0)
			return (1);
	return (r->r_rate_off);
}

/*
 * "name=NAME": the route's name in metrics and the access log; unique,
 * and from a small alphabet so that it needs no escaping anywhere.
 */
static int
route_name(struct parser *p, struct route *r, const char *val)
{
	const struct route_table	*rt = &p->p_conf->c_routes;
	size_t				 i;

	if (r->r_name != NULL)
		return (perr(p, "duplicate route option \"name\""));
	if (!valid_name(val, STATS_NAME_MAX - 1, "_.-"))
		return (perr(p, "invalid route name \"%s\" (expected 1 to %d "
		    "letters, digits, '_', '.' or '-')", val,
		    STATS_NAME_MAX - 1));
	if (strcmp(val, "none") == 0 || strcmp(val, "other") == 0)
		return (perr(p, "route name \"%s\" is reserved (metrics use "
		    "it)", val));
	for (i = 0; i < rt->rt_nroutes; i++)
		if (rt->rt_routes[i].r_name != NULL &&
		    strcmp(rt->rt_routes[i].r_name, val) == 0)
			return (perr(p, "duplicate route name \"%s\" (first "
			    "at line %d)", val, rt->rt_routes[i].r_line));
	if ((r->r_name = strdup(val)) == NULL)
		return (perr(p, "out of memory"));
	return (0);
}

/*
 * One "key=value" option of a route; upstream= and the providers of
 * auth=jwt:NAME are resolved later.
 */
static int
route_option(struct parser *p, struct route *r, const char *opt)
{
	struct route_names	*rn = &p->p_rnames[p->p_nrnames - 1];
	char		 msg[CONFIG_ERRLEN], **up = &rn->rn_upstream;
	const char	*val;
	size_t		 klen;
	int		 auth, scope, rate, given;

	klen = strcspn(opt, "=");
	val = opt[klen] == '=' ? opt + klen + 1 : "";
	if (word_is(opt, klen, "name"))
		return (route_name(p, r, val));
	if (word_is(opt, klen, "from"))
		return (route_from(p, r, val));
	auth = word_is(opt, klen, "auth");
	scope = word_is(opt, klen, "scope");
	rate = word_is(opt, klen, "rate");
	if (!auth && !scope && !rate && !word_is(opt, klen, "upstream"))
		return (perr(p, "unknown route option \"%.*s\"", (int)klen,
		    opt));
	if (auth)
		given = r->r_nauth > 0;
	else if (scope)
		given = r->r_nscopes > 0;
	else if (rate)
		given = route_has_rate(r);
	else
		given = *up != NULL;
	if (given)
		return (perr(p, "duplicate route option \"%.*s\"", (int)klen,
		    opt));
	if (*val == '\0')
		return (perr(p, "route option \"%.*s\" needs a value",
		    (int)klen, opt));
	if (auth) {
		if (route_parse_auth(r, val, msg, sizeof(msg)) == -1)
			return (perr(p, "%s", msg));
		if ((rn->rn_auth = strdup(val)) == NULL)
			return (perr(p, "out of memory"));
		return (0);
	}
	if (scope)
		return (route_scopes(p, r, val));
	if (rate)
		return (route_rate(p, r, val));
	if ((*up = strdup(val)) == NULL)
		return (perr(p, "out of memory"));
	return (0);
}

/*
 * "verify_path /PATH" (where nginx auth_request sub-requests arrive) and
 * "health_path /PATH" (a load balancer's health check).
 */
static int
dir_plain_path(struct parser *p, const struct directive *d, char **argv,
    int argc)
{
	size_t	 i;
	char	**dst = (char **)(void *)((char *)p->p_conf + d->d_off);

	(void)argc;
	if (argv[0][0] != '/')
		return (perr(p, "\"%s\": \"%s\" must start with '/'",
		    d->d_name, argv[0]));
	for (i = 0; argv[0][i] != '\0'; i++)
		if ((unsigned char)argv[0][i] <= ' ' || argv[0][i] == '?' ||
		    argv[0][i] == '#' || argv[0][i] == 0x7f)
			return (perr(p, "\"%s\": \"%s\" is not a plain path",
			    d->d_name, argv[0]));
	free(*dst);
	if ((*dst = strdup(argv[0])) == NULL)
		return (perr(p, "out of memory"));
	return (0);
}

/* "admin_listen ADDR [tls]" and "metrics_listen ADDR [tls]" into la. */
static int
listen_one(struct parser *p, const struct directive *d, char **argv,
    int argc, struct listen_addr *la)
{
	if (argc == 2 && strcmp(argv[1], "tls") != 0)
		return (perr(p, "\"%s\": unknown parameter \"%s\"", d->d_name,
		    argv[1]));
	memset(la, 0, sizeof(*la));
	if (strlen(argv[0]) >= sizeof(la->la_name) ||
	    config_parse_addr(argv[0], &la->la_ss, &la->la_sslen) == -1)
		return (perr(p, "\"%s\": invalid address \"%s\" (expected "
		    "IP:PORT, [IPv6]:PORT, *:PORT or PORT)", d->d_name,
		    argv[0]));
	snprintf(la->la_name, sizeof(la->la_name), "%s", argv[0]);
	la->la_line = p->p_line;
	la->la_tls = argc == 2;
	return (0);
}

/* "admin_listen ADDR": where the admin API listens. */
static int
dir_admin_listen(struct parser *p, const struct directive *d, char **argv,
    int argc)
{
	return (listen_one(p, d, argv, argc, &p->p_conf->c_admin_listen));
}

/*
 * "metrics_listen ADDR": GET /metrics without a token, for a Prometheus
 * scraper on a private address.  Off unless given.
 */
static int
dir_metrics_listen(struct parser *p, const struct directive *d, char **argv,
    int argc)
{
	if (listen_one(p, d, argv, argc, &p->p_conf->c_metrics_listen) == -1)
		return (-1);
	p->p_conf->c_metrics = 1;
	return (0);
}

/*
 * "admin_token_file PATH": read the token now (the master reads it as root
 * before the workers drop privileges) and keep only its SHA-256, which the
 * admin API compares in constant time.  Setting it enables the admin API.
 */
static int
dir_admin_token_file(struct parser *p, const struct directive *d,
    char **argv, int argc)
{
	struct config	*c = p->p_conf;
	char		 token[CONFIG_TOKEN_MAX + 1], why[CONFIG_ERRLEN];

	if (set_path(p, d->d_name, &c->c_admin_token_file, argv[0]) == -1)
		return (-1);
	if (config_read_token(c->c_admin_token_file, token, sizeof(token),
	    why, sizeof(why)) == -1)
		return (perr(p, "\"admin_token_file\": %s", why));
	SHA256((const unsigned char *)token, strlen(token),
	    c->c_admin_token_digest);
	explicit_bzero(token, sizeof(token));
	c->c_admin = 1;
	return (0);
}

/*
 * "api_key_header NAME" (the header carrying API keys) and
 * "real_ip_header NAME": 1 to 64 token characters, kept in lower case.
 */
static int
dir_header_name(struct parser *p, const struct directive *d, char **argv,
    int argc)
{
	char		**dst = (char **)(void *)((char *)p->p_conf + d->d_off);
	const char	*name = argv[0];
	size_t		 i, len = strlen(name);

	(void)argc;
	if (len == 0 || len > 64)
		return (perr(p, "\"%s\": \"%s\" is not a header name",
		    d->d_name, name));
	for (i = 0; i < len; i++)
		if (!http_is_tchar((unsigned char)name[i]))
			return (perr(p, "\"%s\": \"%s\" is not a header name",
			    d->d_name, name));
	free(*dst);
	if ((*dst = strdup(name)) == NULL)
		return (perr(p, "out of memory"));
	for (i = 0; i < len; i++)
		(*dst)[i] = (char)tolower((unsigned char)name[i]);
	return (0);
}

/* Free *dst and make it a copy of s[0..len); 0 or -1. */
static int
set_strn(char **dst, const char *s, size_t len)
{
	free(*dst);
	*dst = strndup(s, len);
	return (*dst == NULL ? -1 : 0);
}

/*
 * sentinel://HOST:PORT[,HOST:PORT...]/MASTER (cluster_redis): up to
 * CONFIG_MAX_SENTINELS sentinels (port 26379 by default) and the name
 * they monitor the primary under.
 */
static int
cluster_sentinels(struct parser *p, const char *u)
{
	struct config	*c = p->p_conf;
	const char	*s = u + 11, *end, *colon, *slash;
	char		*ep;
	unsigned long	 v;
	size_t		 len;

	if ((slash = strchr(s, '/')) == NULL || slash[1] == '\0')
		return (perr(p, "\"cluster_redis\": sentinel:// needs the "
		    "primary's name: sentinel://HOST:PORT[,HOST:PORT...]/NAME"));
	if (strlen(slash + 1) > 64 || strspn(slash + 1, "abcdefghijklmnopq"
	    "rstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
	    strlen(slash + 1))
		return (perr(p, "\"cluster_redis\": the primary's name may "
		    "hold letters, digits, '_', '.' and '-' only"));
	while (s < slash) {
		end = memchr(s, ',', (size_t)(slash - s));
		if (end == NULL)
			end = slash;
		if (c->c_cluster_nsentinels == CONFIG_MAX_SENTINELS)
			return (perr(p, "\"cluster_redis\": more than %d "
			    "sentinels", CONFIG_MAX_SENTINELS));
		colon = memchr(s, ':', (size_t)(end - s));
		len = (size_t)((colon != NULL ? colon : end) - s);
		if (len == 0 || len > 255 || memchr(s, '@', len) != NULL)
			return (perr(p, "\"cluster_redis\": a sentinel "
			    "without a host"));
		v = 26379;
		if (colon != NULL && (colon[1] < '0' || colon[1] > '9' ||
		    (v = strtoul(colon + 1, &ep, 10)) < 1 || v > 65535 ||
		    ep != end))
			return (perr(p, "\"cluster_redis\": a sentinel's "
			    "port must be 1 to 65535"));
		if ((c->c_cluster_sentinel_host[c->c_cluster_nsentinels] =
		    strndup(s, len)) == NULL)
			return (perr(p, "out of memory"));
		c->c_cluster_sentinel_port[c->c_cluster_nsentinels++] = (int)v;
		s = end < slash ? end + 1 : slash;
	}
	if (c->c_cluster_nsentinels == 0)
		return (perr(p, "\"cluster_redis\": no sentinel"));
	if (set_strn(&c->c_cluster_master, slash + 1, strlen(slash + 1)) ==
	    -1 || set_strn(&c->c_cluster_url, u, strlen(u)) == -1)
		return (perr(p, "out of memory"));
	return (0);
}

/*
 * "cluster_redis redis://[USER[:PASSWORD]@]HOST[:PORT][/DB] |
 * unix:PATH [password_file=PATH]".  A password (the URL's, or the file's
 * first line) never appears in a message: c_cluster_url is the address
 * without it.  "sentinel://" and "rediss://" are refused with the reason
 * (keygate.conf(5) has the stunnel setup for TLS).
 */
static int
dir_cluster_redis(struct parser *p, const struct directive *d, char **argv,
    int argc)
{
	struct config	*c = p->p_conf;
	const char	*u = argv[0], *at, *host, *end, *colon;
	char		 pass[CONFIG_TOKEN_MAX + 1], why[CONFIG_ERRLEN];
	char		*path = NULL, *ep, **dst;
	unsigned long	 v;
	size_t		 hl;
	int		 i;

	(void)d;
	for (i = 1; i < argc; i++) {
		if (strncmp(argv[i], "password_file=", 14) == 0)
			dst = &c->c_cluster_pass;
		else if (strncmp(argv[i], "sentinel_password_file=", 23) == 0)
			dst = &c->c_cluster_sentinel_pass;
		else
			return (perr(p, "\"cluster_redis\": unknown option "
			    "\"%.64s\" (password_file=PATH, "
			    "sentinel_password_file=PATH)", argv[i]));
		if (set_path(p, "cluster_redis password file", &path,
		    strchr(argv[i], '=') + 1) == -1)
			return (-1);
		if (config_read_secret(path, pass, sizeof(pass), 1, why,
		    sizeof(why)) == -1) {
			free(path);
			return (perr(p, "\"cluster_redis\": %s", why));
		}
		free(path);
		path = NULL;
		if (set_strn(dst, pass, strlen(pass)) == -1) {
			explicit_bzero(pass, sizeof(pass));
			return (perr(p, "out of memory"));
		}
		explicit_bzero(pass, sizeof(pass));
	}
	c->c_cluster = 1;
	c->c_cluster_db = 0;
	c->c_cluster_port = 6379;
	if (strncmp(u, "unix:", 5) == 0) {
		if (u[5] != '/')
			return (perr(p, "\"cluster_redis\": unix:PATH needs an "
			    "absolute path"));
		if (set_strn(&c->c_cluster_unix, u + 5, strlen(u + 5)) == -1 ||
		    set_strn(&c->c_cluster_url, u, strlen(u)) == -1)
			return (perr(p, "out of memory"));
		return (0);
	}
	if (strncmp(u, "sentinel://", 11) == 0)
		return (cluster_sentinels(p, u));
	if (c->c_cluster_sentinel_pass != NULL)
		return (perr(p, "\"cluster_redis\": sentinel_password_file= "
		    "is for a sentinel:// address"));
	if (strncmp(u, "rediss://", 9) == 0)
		return (perr(p, "\"cluster_redis\": rediss:// (TLS) is not "
		    "available with hiredis 0.14; use redis:// to a local "
		    "stunnel (keygate.conf(5))"));
	if (strncmp(u, "redis://", 8) != 0)
		return (perr(p, "\"cluster_redis\": the address must be "
		    "redis://HOST[:PORT][/DB] or unix:PATH"));
	host = u + 8;
	end = host + strcspn(host, "/");
	/* USER:PASSWORD@ (the last '@' before the path ends it). */
	for (at = NULL, colon = host; colon < end; colon++)
		if (*colon == '@')
			at = colon;
	if (at != NULL) {
		colon = memchr(host, ':', (size_t)(at - host));
		hl = (size_t)((colon != NULL ? colon : at) - host);
		if (hl > 0 && set_strn(&c->c_cluster_user, host, hl) == -1)
			return (perr(p, "out of memory"));
		if (colon != NULL && argc == 2)
			return (perr(p, "\"cluster_redis\": a password both in "
			    "the URL and in password_file="));
		if (colon != NULL && set_strn(&c->c_cluster_pass, colon + 1,
		    (size_t)(at - colon - 1)) == -1)
			return (perr(p, "out of memory"));
		host = at + 1;
	}
	/* HOST, [V6]:PORT or HOST:PORT. */
	if (*host == '[') {
		if ((colon = memchr(host, ']', (size_t)(end - host))) == NULL)
			return (perr(p, "\"cluster_redis\": unclosed '['"));
		hl = (size_t)(colon - host - 1);
		if (set_strn(&c->c_cluster_host, host + 1, hl) == -1)
			return (perr(p, "out of memory"));
		colon++;
	} else {
		colon = memchr(host, ':', (size_t)(end - host));
		hl = (size_t)((colon != NULL ? colon : end) - host);
		if (set_strn(&c->c_cluster_host, host, hl) == -1)
			return (perr(p, "out of memory"));
	}
	if (hl == 0 || hl > 255)
		return (perr(p, "\"cluster_redis\": no host"));
	if (colon != NULL && colon < end) {
		if (*colon != ':' || colon[1] < '0' || colon[1] > '9' ||
		    (v = strtoul(colon + 1, &ep, 10)) < 1 || v > 65535 ||
		    ep != end)
			return (perr(p, "\"cluster_redis\": the port must be "
			    "1 to 65535"));
		c->c_cluster_port = (int)v;
	}
	if (*end == '/' && end[1] != '\0') {
		if (end[1] < '0' || end[1] > '9' ||
		    (v = strtoul(end + 1, &ep, 10)) > 15 || *ep != '\0')
			return (perr(p, "\"cluster_redis\": the database must "
			    "be a number from 0 to 15"));
		c->c_cluster_db = (int)v;
	}
	free(c->c_cluster_url);
	if (asprintf(&c->c_cluster_url, "redis://%s%s%s%s%s:%d/%d",
	    c->c_cluster_user != NULL ? c->c_cluster_user : "",
	    c->c_cluster_user != NULL ? "@" : "",
	    strchr(c->c_cluster_host, ':') != NULL ? "[" : "",
	    c->c_cluster_host,
	    strchr(c->c_cluster_host, ':') != NULL ? "]" : "",
	    c->c_cluster_port, c->c_cluster_db) == -1) {
		c->c_cluster_url = NULL;
		return (perr(p, "out of memory"));
	}
	return (0);
}

/* "cluster_name NAME": 1 to 64 of [A-Za-z0-9_.-], a Redis key prefix. */
static int
dir_cluster_name(struct parser *p, const struct directive *d, char **argv,
    int argc)
{
	char		**dst = (char **)(void *)((char *)p->p_conf + d->d_off);
	size_t		 i, len = strlen(argv[0]);

	(void)argc;
	if (len == 0 || len > 64)
		return (perr(p, "\"cluster_name\" must be 1 to 64 "
		    "characters"));
	for (i = 0; i < len; i++)
		if (!isalnum((unsigned char)argv[0][i]) &&
		    strchr("_.-", argv[0][i]) == NULL)
			return (perr(p, "\"cluster_name\" may hold letters, "
			    "digits, '_', '.' and '-' only"));
	return (set_strn(dst, argv[0], len) == -1 ? perr(p, "out of memory") :
	    0);
}

/* A scope name: 1 to 64 letters, digits or any of "._:/-*". */
static int
valid_scope(const char *s, size_t len)
{
	size_t	 i;

	if (len == 0 || len > 64)
		return (0);
	for (i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) &&
		    strchr("._:/*-", s[i]) == NULL)
			return (0);
	return (1);
}

/*
 * Append the CIDR s[0..len) to the set *set of *n entries (real_ip_from,
 * from=), at most CONFIG_MAX_CIDRS.
 */
static int
cidr_add(struct parser *p, const char *what, struct cidr **set, size_t *n,
    const char *s, size_t len)
{
	struct cidr	 c, *nset;
	char		 msg[CONFIG_ERRLEN];

	if (cidr_parse(s, len, &c, msg, sizeof(msg)) == -1)
		return (perr(p, "%s: %s", what, msg));
	if (*n == CONFIG_MAX_CIDRS)
		return (perr(p, "%s: too many addresses (max %d)", what,
		    CONFIG_MAX_CIDRS));
	if ((nset = reallocarray(*set, *n + 1, sizeof(**set))) == NULL)
		return (perr(p, "out of memory"));
	nset[(*n)++] = c;
	*set = nset;
	return (0);
}

/* "from=CIDR,CIDR": the client addresses allowed on the route. */
static int
route_from(struct parser *p, struct route *r, const char *val)
{
	const char	*s, *end;

	if (r->r_nfrom > 0)
		return (perr(p, "duplicate route option \"from\""));
	if (*val == '\0')
		return (perr(p, "route option \"from\" needs a value"));
	for (s = val;; s = end + 1) {
		end = strchr(s, ',');
		if (cidr_add(p, "from=", &r->r_from, &r->r_nfrom, s,
		    end != NULL ? (size_t)(end - s) : strlen(s)) == -1)
			return (-1);
		if (end == NULL)
			return (0);
	}
}

/* "real_ip_from CIDR...": repeatable, the sets add up. */
static int
dir_real_ip_from(struct parser *p, const struct directive *d, char **argv,
    int argc)
{
	struct config	*c = p->p_conf;
	int		 i;

	(void)d;
	for (i = 0; i < argc; i++)
		if (cidr_add(p, "real_ip_from", &c->c_real_ip_from,
		    &c->c_nreal_ip_from, argv[i], strlen(argv[i])) == -1)
			return (-1);
	return (0);
}

/* "scope=a,b": scopes a key must all have to use the route. */
static int
route_scopes(struct parser *p, struct route *r, const char *val)
{
	const char	*s, *end;
	size_t		 len;
	int		 i;

	for (s = val;; s = end + 1) {
		end = strchr(s, ',');
		len = end != NULL ? (size_t)(end - s) : strlen(s);
		if (!valid_scope(s, len))
			return (perr(p, "invalid scope \"%.*s\" (1 to 64 "
			    "letters, digits or ._:/*-)", (int)len, s));
		for (i = 0; i < r->r_nscopes; i++)
			if (strlen(r->r_scopes[i]) == len &&
			    memcmp(r->r_scopes[i], s, len) == 0)
				return (perr(p, "duplicate scope \"%.*s\"",
				    (int)len, s));
		if (r->r_nscopes == ROUTE_MAX_SCOPES)
			return (perr(p, "too many scopes (max %d)",
			    ROUTE_MAX_SCOPES));
		if ((r->r_scopes[r->r_nscopes] = strndup(s, len)) == NULL)
			return (perr(p, "out of memory"));
		r->r_nscopes++;
		if (end == NULL)
			return (0);
	}
}

/* "route METHODS PATTERN OPTION...". */
static int
dir_route(struct parser *p, const struct directive *d, char **argv, int argc)
{
	struct route	*r = NULL;
	char		 msg[CONFIG_ERRLEN];
	int		 i;

	if (route_new(p, &r) == -1)
		return (-1);
	if (route_parse_methods(argv[0], &r->r_methods, msg,
	    sizeof(msg)) == -1 ||
	    route_compile(r, argv[1], msg, sizeof(msg)) == -1)
		return (perr(p, "%s", msg));
	for (i = 2; i < argc; i++)
		if (route_option(p, r, argv[i]) == -1)
			return (-1);
	if (r->r_nauth == 0)
		return (perr(p, "route needs auth="));
	return (0);
}

/*
 * "jwt_provider NAME issuer=URL[,URL] audience=A[,B] [OPTION=VALUE...]".
 * Each option has an entry in jwt_options[] with the function that parses
 * its value into the provider; list values are comma-separated, read item
 * by item by jwt_list().  An unknown option, a repeated option, an empty
 * item and an item listed twice are errors.  The provider is appended,
 * zeroed and with its defaults, before its options are read, so that
 * config_free() frees whatever a bad line left in it.  Checks between
 * options (issuer= and audience= present, {tenantid} against tenants=)
 * run once the line is read; the api_key_header against headers= once
 * the file is (check_jwt_headers()).
 */

#define JWT_CLAIM_MAX		64	/* identity=, scope_claims=, headers= */
#define JWT_HEADER_NAME_MAX	64
#define JWT_LEEWAY_MAX		600		/* s */
#define JWT_REFRESH_MIN		60		/* s */
#define JWT_REFRESH_MAX		(7 * 24 * 3600)	/* s */
#define JWT_GUID_LEN		36

typedef int (*jwt_item_fn)(struct parser *, struct jwt_provider *,
    const char *, size_t);

/* One option of jwt_provider, and how its value is read. */
struct jwt_option {
	const char	*jo_name;
	int		(*jo_fn)(struct parser *, struct jwt_provider *,
			    const char *);
};

/*
 * Header names headers= may not map a claim to, and why: keygate writes
 * them itself, they carry credentials, or they frame or route the message.
 * Compared without case, '_' read as '-' (see forward.c).  Proxy-* and
 * X-Forwarded-* are refused as prefixes in jwt_header_refused().
 */
static const struct {
	const char	*rh_name;
	const char	*rh_why;
} jwt_refused_headers[] = {
	{ "x-consumer-id", "keygate sets it" },
	{ "x-key-id", "keygate sets it" },
	{ "x-app-id", "keygate sets it" },
	{ "x-scopes", "keygate sets it" },
	{ "x-auth-scheme", "keygate sets it" },
	{ "x-request-id", "keygate sets it" },
	{ "authorization", "it carries credentials" },
	{ "cookie", "it carries credentials" },
	{ "host", "it routes the request" },
	{ "content-length", "it frames the message" },
	{ "transfer-encoding", "it frames the message" },
	{ "connection", "it is hop-by-hop" },
	{ "keep-alive", "it is hop-by-hop" },
	{ "te", "it is hop-by-hop" },
	{ "trailer", "it is hop-by-hop" },
	{ "upgrade", "it is hop-by-hop" },
	{ "expect", "keygate handles it" },
};

/* Do a and b name the same header: case ignored, '_' read as '-'? */
static int
header_name_eq(const char *a, const char *b, size_t n)
{
	size_t	 i;
	int	 x, y;

	for (i = 0; i < n; i++) {
		x = tolower((unsigned char)a[i]);
		y = tolower((unsigned char)b[i]);
		if ((x == '_' ? '-' : x) != (y == '_' ? '-' : y))
			return (0);
	}
	return (1);
}

/* Why headers= may not set the header h, or NULL if it may. */
static const char *
jwt_header_refused(const char *h, size_t n)
{
	size_t	 i;

	for (i = 0; i < nitems(jwt_refused_headers); i++)
		if (strlen(jwt_refused_headers[i].rh_name) == n &&
		    header_name_eq(h, jwt_refused_headers[i].rh_name, n))
			return (jwt_refused_headers[i].rh_why);
	if (n >= 12 && header_name_eq(h, "x-forwarded-", 12))
		return ("keygate sets the X-Forwarded-* headers");
	if (n >= 6 && header_name_eq(h, "proxy-", 6))
		return ("it is hop-by-hop");
	return (NULL);
}

/* Is s[0..len) a JSON member name as options use them: [A-Za-z0-9_.:-]? */
static int
jwt_claim_ok(const char *s, size_t len)
{
	size_t	 i;

	if (len == 0 || len > JWT_CLAIM_MAX)
		return (0);
	for (i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && strchr("_.:-", s[i]) ==
		    NULL)
			return (0);
	return (1);
}

/* Call fn on each item of opt's comma-separated value val. */
static int
jwt_list(struct parser *p, struct jwt_provider *jp, const char *opt,
    const char *val, jwt_item_fn fn)
{
	const char	*s, *end;

	for (s = val;; s = end + 1) {
		end = s + strcspn(s, ",");
		if (end == s)
			return (perr(p, "jwt_provider \"%s\": empty item in "
			    "%s=%s", jp->jp_name, opt, val));
		if (fn(p, jp, s, (size_t)(end - s)) == -1)
			return (-1);
		if (*end == '\0')
			return (0);
	}
}

/*
 * Append a copy of s[0..len) to arr, which holds *n of at most max
 * strings; opt names the option in messages.
 */
static int
jwt_add(struct parser *p, struct jwt_provider *jp, const char *opt,
    char **arr, int *n, int max, const char *s, size_t len)
{
	int	 i;

	for (i = 0; i < *n; i++)
		if (strlen(arr[i]) == len && memcmp(arr[i], s, len) == 0)
			return (perr(p, "jwt_provider \"%s\": %s= lists \"%.*s\" "
			    "twice", jp->jp_name, opt, (int)len, s));
	if (*n == max)
		return (perr(p, "jwt_provider \"%s\": too many items in %s= "
		    "(max %d)", jp->jp_name, opt, max));
	if ((arr[*n] = strndup(s, len)) == NULL)
		return (perr(p, "out of memory"));
	(*n)++;
	return (0);
}

/*
 * Is s[0..len) an https URL with a host, and no space, control character
 * or fragment, and no query unless query is set?  Braces are left to the
 * caller.
 */
static int
jwt_https_ok(const char *s, size_t len, int query)
{
	size_t	 i;

	if (len <= 8 || memcmp(s, "https://", 8) != 0 || s[8] == '/' ||
	    s[8] == '?')
		return (0);
	for (i = 8; i < len; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f ||
		    s[i] == '#' || (s[i] == '?' && !query))
			return (0);
	return (1);
}

/*
 * One issuer: an https URL with at most one "{tenantid}", in its path (a
 * token's tid fills it; it never chooses a host), and no other brace.
 * Filled with a GUID, it must still fit in JWT_ISS_MAX.
 */
static int
jwt_issuer(struct parser *p, struct jwt_provider *jp, const char *s,
    size_t len)
{
	const char	*path, *t;
	size_t		 tlen = strlen(JWT_TENANT_TEMPLATE), i;
	int		 braces = 0, templ;

	if (!jwt_https_ok(s, len, 0))
		return (perr(p, "jwt_provider \"%s\": issuer \"%.*s\" is not an "
		    "https:// URL", jp->jp_name, (int)len, s));
	for (i = 0; i < len; i++)
		braces += s[i] == '{' || s[i] == '}';
	path = memchr(s + 8, '/', len - 8);
	t = memchr(s, '{', len);
	templ = braces == 2 && path != NULL && t != NULL && t > path &&
	    (size_t)(s + len - t) >= tlen &&
	    memcmp(t, JWT_TENANT_TEMPLATE, tlen) == 0;
	if (braces != 0 && !templ)
		return (perr(p, "jwt_provider \"%s\": issuer \"%.*s\": the only "
		    "placeholder allowed is one " JWT_TENANT_TEMPLATE " in the "
		    "path", jp->jp_name, (int)len, s));
	if ((templ ? len - tlen + JWT_GUID_LEN : len) > JWT_ISS_MAX)
		return (perr(p, "jwt_provider \"%s\": issuer \"%.*s\" is too long "
		    "(max %d characters, " JWT_TENANT_TEMPLATE " counting as "
		    "36)", jp->jp_name, (int)len, s,
		    JWT_ISS_MAX));
	return (jwt_add(p, jp, "issuer", jp->jp_issuers, &jp->jp_nissuers,
	    JWT_MAX_ISSUERS, s, len));
}

/* One audience: 1 to JWT_ISS_MAX visible ASCII characters. */
static int
jwt_audience(struct parser *p, struct jwt_provider *jp, const char *s,
    size_t len)
{
	size_t	 i;

	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
			break;
	if (i < len || len > JWT_ISS_MAX)
		return (perr(p, "jwt_provider \"%s\": audience \"%.*s\" is not "
		    "1 to %d visible ASCII characters", jp->jp_name, (int)len,
		    s, JWT_ISS_MAX));
	return (jwt_add(p, jp, "audience", jp->jp_audiences,
	    &jp->jp_naudiences, JWT_MAX_AUDIENCES, s, len));
}

/* One tenant: a GUID (8-4-4-4-12 hex digits), stored lower case. */
static int
jwt_tenant(struct parser *p, struct jwt_provider *jp, const char *s,
    size_t len)
{
	char	 g[JWT_GUID_LEN];
	size_t	 i;

	if (word_is(s, len, "any"))
		return (perr(p, "jwt_provider \"%s\": tenants=any cannot be "
		    "combined with tenant IDs", jp->jp_name));
	for (i = 0; i < len && len == JWT_GUID_LEN; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				break;
		} else if (!isxdigit((unsigned char)s[i]))
			break;
		g[i] = (char)tolower((unsigned char)s[i]);
	}
	if (len != JWT_GUID_LEN || i != len)
		return (perr(p, "jwt_provider \"%s\": tenant \"%.*s\" is not a "
		    "GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", jp->jp_name,
		    (int)len, s));
	return (jwt_add(p, jp, "tenants", jp->jp_tenants, &jp->jp_ntenants,
	    JWT_MAX_TENANTS, g, len));
}

/* One algorithm: a name jwk_alg_parse() knows, never HS* or none. */
static int
jwt_algorithm(struct parser *p, struct jwt_provider *jp, const char *s,
    size_t len)
{
	int	 a;

	if ((a = jwk_alg_parse(s, len)) == -1) {
		if ((len > 2 && strncasecmp(s, "HS", 2) == 0) ||
		    (len == 4 && strncasecmp(s, "none", 4) == 0))
			return (perr(p, "jwt_provider \"%s\": algorithm "
			    "\"%.*s\" is never accepted with a JWKS (HS* and "
			    "none are refused)", jp->jp_name, (int)len, s));
		return (perr(p, "jwt_provider \"%s\": unknown algorithm "
		    "\"%.*s\" (expected RS256, RS384, RS512, PS256, PS384, "
		    "PS512, ES256 or ES384)", jp->jp_name, (int)len, s));
	}
	if (jp->jp_algs & (1U << a))
		return (perr(p, "jwt_provider \"%s\": algorithms= lists "
		    "\"%.*s\" twice", jp->jp_name, (int)len, s));
	jp->jp_algs |= 1U << a;
	return (0);
}

/* One claim of scope_claims=. */
static int
jwt_scope_claim(struct parser *p, struct jwt_provider *jp, const char *s,
    size_t len)
{
	if (!jwt_claim_ok(s, len))
		return (perr(p, "jwt_provider \"%s\": scope_claims: \"%.*s\" is "
		    "not a claim name (1 to %d letters, digits or _.:-)",
		    jp->jp_name, (int)len, s, JWT_CLAIM_MAX));
	return (jwt_add(p, jp, "scope_claims", jp->jp_scope_claims,
	    &jp->jp_nscope_claims, JWT_MAX_SCOPE_CLAIMS, s, len));
}

/*
 * One "CLAIM:Header" of headers=.  A header name has no ':', a claim name
 * may: the last ':' separates them.
 */
static int
jwt_header(struct parser *p, struct jwt_provider *jp, const char *s,
    size_t len)
{
	struct jwt_header_map	*hm;
	const char		*h, *why;
	size_t			 clen, hlen, i;
	int			 j;

	for (clen = len; clen > 0 && s[clen - 1] != ':'; clen--)
		;
	if (clen-- == 0 || !jwt_claim_ok(s, clen))
		return (perr(p, "jwt_provider \"%s\": headers: \"%.*s\" is not "
		    "CLAIM:Header (a claim is 1 to %d letters, digits or _.:-)",
		    jp->jp_name, (int)len, s, JWT_CLAIM_MAX));
	h = s + clen + 1;
	hlen = len - clen - 1;
	for (i = 0; i < hlen && http_is_tchar((unsigned char)h[i]); i++)
		;
	if (hlen == 0 || hlen > JWT_HEADER_NAME_MAX || i != hlen)
		return (perr(p, "jwt_provider \"%s\": headers: \"%.*s\" is not "
		    "a header name", jp->jp_name, (int)hlen, h));
	for (j = 0; j < jp->jp_nheaders; j++)
		if (strlen(jp->jp_headers[j].hm_header) == hlen &&
		    header_name_eq(jp->jp_headers[j].hm_header, h, hlen))
			return (perr(p, "jwt_provider \"%s\": headers: \"%.*s\" "
			    "is set twice", jp->jp_name, (int)hlen, h));
	if (jp->jp_nheaders == JWT_MAX_HEADER_MAPS)
		return (perr(p, "jwt_provider \"%s\": too many items in "
		    "headers= (max %d)", jp->jp_name, JWT_MAX_HEADER_MAPS));
	if ((why = jwt_header_refused(h, hlen)) != NULL)
		return (perr(p, "jwt_provider \"%s\": headers: \"%.*s\" cannot "
		    "be set from a claim: %s", jp->jp_name, (int)hlen, h, why));
	hm = &jp->jp_headers[jp->jp_nheaders++];
	if ((hm->hm_header = strndup(h, hlen)) == NULL ||
	    (hm->hm_claim = strndup(s, clen)) == NULL)
		return (perr(p, "out of memory"));
	return (0);
}

/* issuer=URL[,URL]. */
static int
jwt_opt_issuer(struct parser *p, struct jwt_provider *jp, const char *val)
{
	return (jwt_list(p, jp, "issuer", val, jwt_issuer));
}

/* audience=A[,B]. */
static int
jwt_opt_audience(struct parser *p, struct jwt_provider *jp, const char *val)
{
	return (jwt_list(p, jp, "audience", val, jwt_audience));
}

/* tenants=any or tenants=GUID[,GUID]. */
static int
jwt_opt_tenants(struct parser *p, struct jwt_provider *jp, const char *val)
{
	if (strcmp(val, "any") == 0) {
		jp->jp_tenants_any = 1;
		return (0);
	}
	return (jwt_list(p, jp, "tenants", val, jwt_tenant));
}

/* algorithms=RS256[,...]: replaces the default set. */
static int
jwt_opt_algorithms(struct parser *p, struct jwt_provider *jp,
    const char *val)
{
	jp->jp_algs = 0;
	return (jwt_list(p, jp, "algorithms", val, jwt_algorithm));
}

/*
 * A duration option in whole seconds, lo to hi, into *sec; opt names it
 * and range says the bounds in messages.
 */
static int
jwt_seconds(struct parser *p, struct jwt_provider *jp, const char *opt,
    const char *val, int lo, int hi, const char *range, int *sec)
{
	int	 ms;

	if (config_parse_duration_ms(val, &ms) == -1 || ms % 1000 != 0 ||
	    ms / 1000 < lo || ms / 1000 > hi)
		return (perr(p, "jwt_provider \"%s\": invalid %s \"%s\" "
		    "(expected whole seconds, %s)", jp->jp_name, opt, val,
		    range));
	*sec = ms / 1000;
	return (0);
}

/* leeway=DURATION, 0 to 10 minutes. */
static int
jwt_opt_leeway(struct parser *p, struct jwt_provider *jp, const char *val)
{
	return (jwt_seconds(p, jp, "leeway", val, 0, JWT_LEEWAY_MAX,
	    "0..600s", &jp->jp_leeway));
}

/* refresh=DURATION, 1 minute to 7 days. */
static int
jwt_opt_refresh(struct parser *p, struct jwt_provider *jp, const char *val)
{
	return (jwt_seconds(p, jp, "refresh", val, JWT_REFRESH_MIN,
	    JWT_REFRESH_MAX, "60s..168h", &jp->jp_refresh));
}

/* identity=CLAIM: replaces the default "sub". */
static int
jwt_opt_identity(struct parser *p, struct jwt_provider *jp, const char *val)
{
	char	*s;

	if (!jwt_claim_ok(val, strlen(val)))
		return (perr(p, "jwt_provider \"%s\": identity: \"%s\" is not "
		    "a claim name (1 to %d letters, digits or _.:-)",
		    jp->jp_name, val, JWT_CLAIM_MAX));
	if ((s = strdup(val)) == NULL)
		return (perr(p, "out of memory"));
	free(jp->jp_identity);
	jp->jp_identity = s;
	return (0);
}

/* scope_claims=CLAIM[,CLAIM]: replaces the default "scp,roles". */
static int
jwt_opt_scope_claims(struct parser *p, struct jwt_provider *jp,
    const char *val)
{
	while (jp->jp_nscope_claims > 0)
		free(jp->jp_scope_claims[--jp->jp_nscope_claims]);
	return (jwt_list(p, jp, "scope_claims", val, jwt_scope_claim));
}

/* headers=CLAIM:Header[,CLAIM:Header]. */
static int
jwt_opt_headers(struct parser *p, struct jwt_provider *jp, const char *val)
{
	return (jwt_list(p, jp, "headers", val, jwt_header));
}

/* A path option (jwks=, ca=) of the provider, made absolute into *dst. */
static int
jwt_path(struct parser *p, struct jwt_provider *jp, const char *opt,
    const char *val, char **dst)
{
	if ((*dst = util_abspath(val)) == NULL)
		return (perr(p, "jwt_provider \"%s\": %s: cannot make \"%s\" "
		    "absolute: %s", jp->jp_name, opt, val, strerror(errno)));
	return (0);
}

/*
 * jwks=URL|PATH: an https URL to fetch, or a file.  Any other URL is
 * refused rather than read as a relative path.
 */
static int
jwt_opt_jwks(struct parser *p, struct jwt_provider *jp, const char *val)
{
	if (strncmp(val, "https://", 8) == 0) {
		if (!jwt_https_ok(val, strlen(val), 1) ||
		    strpbrk(val, "{}") != NULL)
			return (perr(p, "jwt_provider \"%s\": jwks \"%s\" is not "
			    "an https:// URL", jp->jp_name, val));
		if ((jp->jp_jwks_url = strdup(val)) == NULL)
			return (perr(p, "out of memory"));
		return (0);
	}
	if (strstr(val, "://") != NULL)
		return (perr(p, "jwt_provider \"%s\": jwks \"%s\": only "
		    "https:// URLs are fetched (or give a file)", jp->jp_name,
		    val));
	return (jwt_path(p, jp, "jwks", val, &jp->jp_jwks_path));
}

/* ca=PATH: the CA bundle for this provider's https fetches. */
static int
jwt_opt_ca(struct parser *p, struct jwt_provider *jp, const char *val)
{
	return (jwt_path(p, jp, "ca", val, &jp->jp_ca));
}

/* rate=off|N/W[,N/W...]: the per-identity limits of this provider. */
static int
jwt_opt_rate(struct parser *p, struct jwt_provider *jp, const char *val)
{
	char	 what[64];

	snprintf(what, sizeof(what), "jwt_provider \"%s\": rate", jp->jp_name);
	return (rate_option(p, what, val, jp->jp_rate, &jp->jp_rate_off));
}

/* The options of jwt_provider; their order is the manual's. */
static const struct jwt_option jwt_options[] = {
	{ "issuer", jwt_opt_issuer },
	{ "audience", jwt_opt_audience },
	{ "jwks", jwt_opt_jwks },
	{ "tenants", jwt_opt_tenants },
	{ "algorithms", jwt_opt_algorithms },
	{ "leeway", jwt_opt_leeway },
	{ "refresh", jwt_opt_refresh },
	{ "identity", jwt_opt_identity },
	{ "scope_claims", jwt_opt_scope_claims },
	{ "headers", jwt_opt_headers },
	{ "ca", jwt_opt_ca },
	{ "rate", jwt_opt_rate },
};
_Static_assert(nitems(jwt_options) < 32, "jwt_options[] outgrows its mask");

/* One "key=value" of a provider; *seen has a bit per option given. */
static int
jwt_option(struct parser *p, struct jwt_provider *jp, const char *opt,
    uint32_t *seen)
{
	size_t	 klen = strcspn(opt, "="), i;

	for (i = 0; i < nitems(jwt_options); i++)
		if (word_is(opt, klen, jwt_options[i].jo_name))
			break;
	if (i == nitems(jwt_options))
		return (perr(p, "jwt_provider \"%s\": unknown option \"%.*s\"",
		    jp->jp_name, (int)klen, opt));
	if (*seen & (1U << i))
		return (perr(p, "jwt_provider \"%s\": duplicate option \"%s\"",
		    jp->jp_name, jwt_options[i].jo_name));
	*seen |= 1U << i;
	if (opt[klen] != '=' || opt[klen + 1] == '\0')
		return (perr(p, "jwt_provider \"%s\": option \"%s\" needs a "
		    "value", jp->jp_name, jwt_options[i].jo_name));
	return (jwt_options[i].jo_fn(p, jp, opt + klen + 1));
}

/* Options that only make sense together: issuer=, audience=, tenants=. */
static int
jwt_check(struct parser *p, const struct jwt_provider *jp)
{
	int	 i, templ = 0;

	if (jp->jp_nissuers == 0)
		return (perr(p, "jwt_provider \"%s\": missing issuer=",
		    jp->jp_name));
	if (jp->jp_naudiences == 0)
		return (perr(p, "jwt_provider \"%s\": missing audience=",
		    jp->jp_name));
	for (i = 0; i < jp->jp_nissuers; i++)
		if (strstr(jp->jp_issuers[i], JWT_TENANT_TEMPLATE) != NULL)
			templ = 1;
	if (templ && jp->jp_ntenants == 0 && !jp->jp_tenants_any)
		return (perr(p, "jwt_provider \"%s\": an issuer has "
		    JWT_TENANT_TEMPLATE ": tenants=any or a list is required",
		    jp->jp_name));
	if (!templ && (jp->jp_ntenants > 0 || jp->jp_tenants_any))
		return (perr(p, "jwt_provider \"%s\": tenants= is pointless "
		    "without an issuer with " JWT_TENANT_TEMPLATE, jp->jp_name));
	return (0);
}

/*
 * Append a provider called name, zeroed but for its defaults, to c_jwt;
 * c_njwt counts it at once so that config_free() frees what it holds.
 */
static int
jwt_new(struct parser *p, const char *name, struct jwt_provider **jpp)
{
	struct config		*c = p->p_conf;
	struct jwt_provider	*jp;

	if (c->c_njwt == JWT_MAX_PROVIDERS)
		return (perr(p, "too many jwt_provider directives (max %d)",
		    JWT_MAX_PROVIDERS));
	if (!valid_name(name, JWT_NAME_MAX, "_-"))
		return (perr(p, "invalid jwt_provider name \"%s\" (expected 1 "
		    "to %d letters, digits, '_' or '-')", name, JWT_NAME_MAX));
	if ((jp = config_jwt_provider(c, name)) != NULL)
		return (perr(p, "duplicate jwt_provider \"%s\" (first at line "
		    "%d)", name, jp->jp_line));
	if ((jp = reallocarray(c->c_jwt, c->c_njwt + 1, sizeof(*jp))) == NULL)
		return (perr(p, "out of memory"));
	c->c_jwt = jp;
	jp = &c->c_jwt[c->c_njwt];
	memset(jp, 0, sizeof(*jp));
	jp->jp_index = (int)c->c_njwt++;
	jp->jp_line = p->p_line;
	jp->jp_algs = JWK_ALGS_ALL;
	jp->jp_leeway = JWT_DEFAULT_LEEWAY;
	jp->jp_refresh = JWT_DEFAULT_REFRESH;
	jp->jp_nscope_claims = 2;
	if ((jp->jp_name = strdup(name)) == NULL ||
	    (jp->jp_identity = strdup("sub")) == NULL ||
	    (jp->jp_scope_claims[0] = strdup("scp")) == NULL ||
	    (jp->jp_scope_claims[1] = strdup("roles")) == NULL)
		return (perr(p, "out of memory"));
	*jpp = jp;
	return (0);
}

/* "jwt_provider NAME OPTION=VALUE...". */
static int
dir_jwt_provider(struct parser *p, const struct directive *d, char **argv,
    int argc)
{
	struct jwt_provider	*jp = NULL;
	uint32_t		 seen = 0;
	int			 i;

	if (jwt_new(p, argv[0], &jp) == -1)
		return (-1);
	for (i = 1; i < argc; i++)
		if (jwt_option(p, jp, argv[i], &seen) == -1)
			return (-1);
	return (jwt_check(p, jp));
}

/* "tls_certificate CERT KEY": one more certificate for TLS listeners. */
static int
dir_tls_certificate(struct parser *p, const struct directive *d,
    char **argv, int argc)
{
	struct config		*c = p->p_conf;
	struct tls_cert_conf	*nc, *tc;

	if (c->c_ntls_certs == TLS_MAX_CERTS)
		return (perr(p, "too many tls_certificate directives (max %d)",
		    TLS_MAX_CERTS));
	nc = reallocarray(c->c_tls_certs, c->c_ntls_certs + 1, sizeof(*nc));
	if (nc == NULL)
		return (perr(p, "out of memory"));
	c->c_tls_certs = nc;
	tc = &nc[c->c_ntls_certs++];
	memset(tc, 0, sizeof(*tc));
	tc->tc_line = p->p_line;
	if (set_path(p, d->d_name, &tc->tc_cert, argv[0]) == -1 ||
	    set_path(p, d->d_name, &tc->tc_key, argv[1]) == -1)
		return (-1);
	return (0);
}

/* "tls_protocols TLSv1.2 TLSv1.3": one or both, into c_tls_protocols. */
static int
dir_tls_protocols(struct parser *p, const struct directive *d, char **argv,
    int argc)
{
	int	 i, bits = 0, bit;

	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "TLSv1.2") == 0)
			bit = TLS_PROTO_TLSv1_2;
		else if (strcmp(argv[i], "TLSv1.3") == 0)
			bit = TLS_PROTO_TLSv1_3;
		else
			return (perr(p, "\"tls_protocols\": unsupported protocol "
			    "\"%s\" (only TLSv1.2 and TLSv1.3 are supported)",
			    argv[i]));
		if (bits & bit)
			return (perr(p, "\"tls_protocols\": %s is given twice",
			    argv[i]));
		bits |= bit;
	}
	p->p_conf->c_tls_protocols = bits;
	return (0);
}

/*
 * "tls_ciphers STR" (TLS 1.2) and "tls_ciphersuites STR" (TLS 1.3), in
 * OpenSSL's syntax.  A string from the file is tried on a scratch context
 * now, so that one OpenSSL rejects is reported at its own line.
 */
static int
dir_tls_ciphers(struct parser *p, const struct directive *d, char **argv,
    int argc)
{
	struct config	*c = p->p_conf;
	int		 suites = strcmp(d->d_name, "tls_ciphersuites") == 0;
	char		**dst = suites ? &c->c_tls_ciphersuites : &c->c_tls_ciphers;
	SSL_CTX		*ctx;
	int		 ok;

	if (p->p_line > 0) {
		if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL)
			return (perr(p, "out of memory"));
		ok = suites ? SSL_CTX_set_ciphersuites(ctx, argv[0]) :
		    SSL_CTX_set_cipher_list(ctx, argv[0]);
		SSL_CTX_free(ctx);
		ERR_clear_error();
		if (ok != 1)
			return (perr(p, "\"%s\": OpenSSL rejects \"%s\"",
			    d->d_name, argv[0]));
	}
	free(*dst);
	if ((*dst = strdup(argv[0])) == NULL)
		return (perr(p, "out of memory"));
	return (0);
}

/* Parse a number of the directive's kind and check its bounds. */
static int
set_number(struct parser *p, const struct directive *d, const char *s)
{
	const struct unit	*units = int_units;
	const char		*what = "number";
	char			 lo[32], hi[32];
	uint64_t		 v;
	int			 rc;

	if (d->d_kind == DK_DURATION) {
		units = duration_units;
		what = "duration";
	} else if (d->d_kind == DK_SIZE) {
		units = size_units;
		what = "size";
	}
	if ((rc = parse_number(s, units, &v)) == -1)
		return (perr(p, "\"%s\": invalid %s \"%s\"", d->d_name, what,
		    s));
	if (rc == -2 || v < d->d_lo || v > d->d_hi)
		return (perr(p, "\"%s\": \"%s\" is out of range (%s..%s)",
		    d->d_name, s, format_number(lo, sizeof(lo), d->d_lo, units),
		    format_number(hi, sizeof(hi), d->d_hi, units)));
	store_number(p, d, v);
	return (0);
}

/* Store the index of s in d_enum, or say which words are allowed. */
static int
set_enum(struct parser *p, const struct directive *d, const char *s)
{
	char	 list[256];
	size_t	 i, n = 0;

	for (i = 0; d->d_enum[i] != NULL; i++)
		if (strcmp(s, d->d_enum[i]) == 0) {
			store_number(p, d, i);
			return (0);
		}
	list[0] = '\0';
	for (i = 0; d->d_enum[i] != NULL && n < sizeof(list); i++)
		n += snprintf(list + n, sizeof(list) - n, "%s%s",
		    i == 0 ? "" : d->d_enum[i + 1] == NULL ? " or " : ", ",
		    d->d_enum[i]);
	return (perr(p, "\"%s\": invalid value \"%s\" (expected %s)",
	    d->d_name, s, list));
}

/* Apply a directive's arguments, by kind. */
static int
dir_apply(struct parser *p, const struct directive *d, char **argv, int argc)
{
	switch (d->d_kind) {
	case DK_FUNC:
		return (d->d_fn(p, d, argv, argc));
	case DK_PATH:
		return (set_path(p, d->d_name,
		    (char **)((char *)p->p_conf + d->d_off), argv[0]));
	case DK_DURATION:
	case DK_SIZE:
	case DK_INT:
		return (set_number(p, d, argv[0]));
	case DK_ENUM:
		return (set_enum(p, d, argv[0]));
	}
	return (perr(p, "\"%s\": bad directive kind", d->d_name));
}

/*
 * Apply the default of d as if it were written in the file.  The default of
 * a directive that takes several arguments is split into words, as a line
 * would be ("20/1s 200/10s 1000/60s"); any other is one word, so that a
 * default path with a space in it stays whole.
 */
static int
dir_default(struct parser *p, const struct directive *d)
{
	char	 buf[512], *argv[CONFIG_MAX_WORDS];
	int	 argc = 1;

	p->p_line = 0;
	snprintf(buf, sizeof(buf), "%s", d->d_default);
	argv[0] = buf;
	if (d->d_maxargs != 1 && split_words(p, buf, argv, &argc) == -1)
		return (-1);
	return (dir_apply(p, d, argv, argc));
}

/* Say how many arguments d takes. */
static int
perr_nargs(struct parser *p, const struct directive *d)
{
	if (d->d_maxargs == -1)
		return (perr(p, "\"%s\" takes at least %d argument%s",
		    d->d_name, d->d_minargs, d->d_minargs == 1 ? "" : "s"));
	if (d->d_minargs == d->d_maxargs)
		return (perr(p, "\"%s\" takes %d argument%s", d->d_name,
		    d->d_minargs, d->d_minargs == 1 ? "" : "s"));
	return (perr(p, "\"%s\" takes %d %s %d arguments", d->d_name,
	    d->d_minargs, d->d_maxargs == d->d_minargs + 1 ? "or" : "to",
	    d->d_maxargs));
}

/* Look the directive up, check it may appear here, and apply it. */
static int
parse_directive(struct parser *p, char **argv, int argc)
{
	const struct directive	*d = NULL;
	size_t			 i;

	for (i = 0; i < nitems(directives); i++)
		if (strcmp(argv[0], directives[i].d_name) == 0) {
			d = &directives[i];
			break;
		}
	if (d == NULL)
		return (perr(p, "unknown directive \"%s\"", argv[0]));
	if ((d->d_flags & D_REPEAT) == 0 && p->p_first[i] != 0)
		return (perr(p, "duplicate directive \"%s\" (first at line %d)",
		    d->d_name, p->p_first[i]));
	argc--;
	if (argc < d->d_minargs || (d->d_maxargs != -1 && argc > d->d_maxargs))
		return (perr_nargs(p, d));
	if (p->p_first[i] == 0)
		p->p_first[i] = p->p_line;
	return (dir_apply(p, d, argv + 1, argc));
}

/*
 * Split line into words, in place.  A word is a run of bytes other than
 * space and tab, or a double-quoted string in which \" and \\ stand for "
 * and \; any other backslash is kept as it is, so that a quoted regular
 * expression is written as it would be unquoted.  A # that begins a word
 * starts a comment; elsewhere it is an ordinary byte.
 */
static int
split_words(struct parser *p, char *s, char **argv, int *argcp)
{
	char	*d;
	int	 argc = 0;

	for (;;) {
		s += strspn(s, " \t");
		if (*s == '\0' || *s == '#')
			break;
		if (argc == CONFIG_MAX_WORDS)
			return (perr(p, "too many words on one line (max %d)",
			    CONFIG_MAX_WORDS));
		if (*s != '"') {
			argv[argc++] = s;
			s += strcspn(s, " \t");
			if (*s != '\0')
				*s++ = '\0';
			continue;
		}
		argv[argc++] = d = ++s;
		for (; *s != '"'; s++) {
			if (*s == '\0')
				return (perr(p, "unterminated quoted string"));
			if (*s == '\\' && (s[1] == '"' || s[1] == '\\'))
				s++;
			*d++ = *s;
		}
		*d = '\0';
		if (*++s != '\0' && *s != ' ' && *s != '\t')
			return (perr(p, "missing space after closing quote"));
	}
	*argcp = argc;
	return (0);
}

/* Parse every line of text (modified in place). */
static int
parse_lines(struct parser *p, char *text)
{
	char	*line, *next, *argv[CONFIG_MAX_WORDS];
	size_t	 len;
	int	 argc = 0;

	p->p_line = 0;
	for (line = text; line != NULL; line = next) {
		p->p_line++;
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		len = strlen(line);
		if (len > 0 && line[len - 1] == '\r')
			line[len - 1] = '\0';
		if (split_words(p, line, argv, &argc) == -1)
			return (-1);
		if (argc > 0 && parse_directive(p, argv, argc) == -1)
			return (-1);
	}
	return (0);
}

/* Does r list a scheme that lets requests through to an upstream? */
static int
route_needs_upstream(const struct route *r)
{
	int	 i;

	for (i = 0; i < r->r_nauth; i++)
		if (r->r_auth[i] != ROUTE_AUTH_DENY)
			return (1);
	return (0);
}

/*
 * Give each jwt scheme of r its provider: -1 for plain "jwt" (any), the
 * index of NAME for "jwt:NAME".  auth is r's auth= as written, already
 * checked by route_parse_auth(): its comma-separated items are r_auth[]
 * in order.
 */
static int
route_jwt_resolve(struct parser *p, struct route *r, const char *auth)
{
	struct jwt_provider	*jp;
	char			 name[JWT_NAME_MAX + 1];
	size_t			 len;
	int			 i;

	for (i = 0; i < r->r_nauth; i++, auth += len + 1) {
		len = strcspn(auth, ",");
		if (r->r_auth[i] != ROUTE_AUTH_JWT)
			continue;
		if (len == 3) {
			if (p->p_conf->c_njwt == 0)
				return (perr(p, "auth=jwt needs a jwt_provider"));
			r->r_jwt[i] = -1;
			continue;
		}
		snprintf(name, sizeof(name), "%.*s", (int)(len - 4), auth + 4);
		if ((jp = config_jwt_provider(p->p_conf, name)) == NULL)
			return (perr(p, "route: unknown jwt_provider \"%s\"",
			    name));
		r->r_jwt[i] = jp->jp_index;
	}
	return (0);
}

/*
 * Point each route at its upstream and its jwt_providers, now that all of
 * them are known.
 */
static int
check_routes(struct parser *p)
{
	struct config		*c = p->p_conf;
	struct route		*r;
	struct route_names	*rn;
	size_t			 i;

	for (i = 0; i < c->c_routes.rt_nroutes; i++) {
		r = &c->c_routes.rt_routes[i];
		rn = &p->p_rnames[i];
		p->p_line = r->r_line;
		if (rn->rn_auth != NULL &&
		    route_jwt_resolve(p, r, rn->rn_auth) == -1)
			return (-1);
		if (rn->rn_upstream != NULL) {
			r->r_upstream = config_upstream(c, rn->rn_upstream);
			if (r->r_upstream == NULL)
				return (perr(p, "unknown upstream \"%s\"",
				    rn->rn_upstream));
		} else if (route_needs_upstream(r)) {
			if (c->c_nupstreams == 0)
				return (perr(p, "route needs an upstream but "
				    "none is defined"));
			r->r_upstream = &c->c_upstreams[0];
		}
		if (route_default_name(p, r) == -1)
			return (-1);
	}
	c->c_nservers = 0;
	for (i = 0; i < c->c_nupstreams; i++)
		upstream_server_labels(c, &c->c_upstreams[i]);
	return (0);
}

/*
 * A route without name= is "route<N>"; an explicit name= taking the
 * default name of another route would merge their metrics: an error.
 */
static int
route_default_name(struct parser *p, struct route *r)
{
	const struct route_table	*rt = &p->p_conf->c_routes;
	char				 name[32];
	size_t				 i;

	if (r->r_name != NULL)
		return (0);
	snprintf(name, sizeof(name), "route%d", r->r_index);
	for (i = 0; i < rt->rt_nroutes; i++)
		if (rt->rt_routes[i].r_name != NULL &&
		    strcmp(rt->rt_routes[i].r_name, name) == 0)
			return (perr(p, "route name \"%s\" of line %d is the "
			    "default name of the route on this line; give "
			    "this one a name=", name, rt->rt_routes[i].r_line));
	if ((r->r_name = strdup(name)) == NULL)
		return (perr(p, "out of memory"));
	return (0);
}

/*
 * The server labels of an upstream's metrics: the URL's HOST:PORT (the
 * port added when the URL left it out), or, for a name that gave several
 * servers, each one's ADDRESS:PORT ("[v6]:port") so that they differ.
 * Servers are numbered across the configuration (us_index) for proxy.c.
 */
static void
upstream_server_labels(struct config *c, struct upstream *u)
{
	struct upstream_server		*us;
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;
	const char			*h, *colon;
	char				 a[INET6_ADDRSTRLEN];
	int				 k, n, port;

	for (k = 0; k < u->u_nservers; k++) {
		us = &u->u_servers[k];
		us->us_index = c->c_nservers++;
		h = us->us_host;
		sin = (const void *)&us->us_ss;
		sin6 = (const void *)&us->us_ss;
		port = us->us_ss.ss_family == AF_INET6 ?
		    ntohs(sin6->sin6_port) : ntohs(sin->sin_port);
		for (n = 0; n < u->u_nservers; n++)
			if (n != k && strcmp(u->u_servers[n].us_url,
			    us->us_url) == 0)
				break;
		if (n < u->u_nservers) {	/* one of a name's addresses */
			if (inet_ntop(us->us_ss.ss_family,
			    us->us_ss.ss_family == AF_INET6 ?
			    (const void *)&sin6->sin6_addr :
			    (const void *)&sin->sin_addr, a, sizeof(a)) == NULL)
				snprintf(a, sizeof(a), "?");
			snprintf(us->us_server, sizeof(us->us_server),
			    us->us_ss.ss_family == AF_INET6 ? "[%s]:%d" :
			    "%s:%d", a, port);
			continue;
		}
		/* "[v6]:port", "host:port": a port if a ':' follows ']'. */
		colon = strrchr(h, ':');
		if (colon != NULL && (h[0] != '[' || colon > strchr(h, ']')))
			snprintf(us->us_server, sizeof(us->us_server), "%s", h);
		else
			snprintf(us->us_server, sizeof(us->us_server), "%s:%d",
			    h, port);
	}
}

/* Line of the first use of the directive called name, 0 if unused. */
static int
first_line(struct parser *p, const char *name)
{
	size_t	 i;

	for (i = 0; i < nitems(directives); i++)
		if (strcmp(directives[i].d_name, name) == 0)
			return (p->p_first[i]);
	return (0);
}

/* The header section includes the request line, so must be as large. */
static int
check_sizes(struct parser *p)
{
	struct config	*c = p->p_conf;
	char		 hs[32], rl[32];
	int		 l1, l2;

	if (c->c_max_header_size >= c->c_max_request_line)
		return (0);
	l1 = first_line(p, "max_request_line");
	l2 = first_line(p, "max_header_size");
	p->p_line = l1 > l2 ? l1 : l2;
	return (perr(p, "max_header_size (%s) must not be less than "
	    "max_request_line (%s)",
	    format_number(hs, sizeof(hs), c->c_max_header_size, size_units),
	    format_number(rl, sizeof(rl), c->c_max_request_line, size_units)));
}

/* health_path answers on the main listeners: not the verify_path too. */
static int
check_health(struct parser *p)
{
	struct config	*c = p->p_conf;

	if (c->c_health_path == NULL || c->c_verify_path == NULL ||
	    strcmp(c->c_health_path, c->c_verify_path) != 0)
		return (0);
	p->p_line = first_line(p, "health_path");
	return (perr(p, "health_path \"%s\" is also the verify_path",
	    c->c_health_path));
}

/*
 * headers= may not set the header that carries API keys; api_key_header
 * may come after the providers, so this waits for the whole file.
 */
static int
check_jwt_headers(struct parser *p)
{
	struct config		*c = p->p_conf;
	struct jwt_provider	*jp;
	const char		*h;
	size_t			 i, n = strlen(c->c_api_key_header);
	int			 j;

	for (i = 0; i < c->c_njwt; i++) {
		jp = &c->c_jwt[i];
		for (j = 0; j < jp->jp_nheaders; j++) {
			h = jp->jp_headers[j].hm_header;
			if (strlen(h) != n ||
			    !header_name_eq(h, c->c_api_key_header, n))
				continue;
			p->p_line = jp->jp_line;
			return (perr(p, "jwt_provider \"%s\": headers: \"%s\" "
			    "cannot be set from a claim: it is the "
			    "api_key_header, it carries credentials",
			    jp->jp_name, h));
		}
	}
	return (0);
}

/* The admin API and the metrics need addresses of their own. */
static int
check_admin(struct parser *p)
{
	struct config	*c = p->p_conf;
	size_t		 i;

	if (c->c_metrics) {
		for (i = 0; i < c->c_nlisten; i++)
			if (addr_equal(&c->c_listen[i].la_ss,
			    &c->c_metrics_listen.la_ss)) {
				p->p_line = c->c_metrics_listen.la_line;
				return (perr(p, "metrics_listen %s is also a "
				    "listen address", c->c_metrics_listen.la_name));
			}
		if (c->c_admin && addr_equal(&c->c_admin_listen.la_ss,
		    &c->c_metrics_listen.la_ss)) {
			p->p_line = c->c_metrics_listen.la_line;
			return (perr(p, "metrics_listen %s is also the "
			    "admin_listen address (the admin listener serves "
			    "/metrics with its token already)",
			    c->c_metrics_listen.la_name));
		}
	}
	if (!c->c_admin)
		return (0);
	for (i = 0; i < c->c_nlisten; i++)
		if (addr_equal(&c->c_listen[i].la_ss, &c->c_admin_listen.la_ss)) {
			p->p_line = c->c_admin_listen.la_line != 0 ?
			    c->c_admin_listen.la_line : c->c_listen[i].la_line;
			return (perr(p, "admin_listen %s is also a listen "
			    "address", c->c_admin_listen.la_name));
		}
	return (0);
}

/* A TLS listener needs a certificate; "what" names its directive. */
static int
check_tls_listener(struct parser *p, const char *what,
    const struct listen_addr *la, int *any)
{
	if (!la->la_tls)
		return (0);
	*any = 1;
	if (p->p_conf->c_ntls_certs > 0)
		return (0);
	p->p_line = la->la_line;
	return (perr(p, "%s %s tls: no tls_certificate is configured", what,
	    la->la_name));
}

/*
 * Build what TLS needs: the listeners' contexts when some listener has
 * "tls" (this reads every certificate, so "keygated -t" and a reload
 * check them), the client context of each https upstream.  tls.c's
 * messages carry their own FILE:LINE.  With CONFIG_NO_TLS only the
 * checks that need no file are made (keygatectl, which may not read the
 * private keys).
 */
static int
check_tls(struct parser *p)
{
	struct config	*c = p->p_conf;
	size_t		 i;
	int		 any = 0;

	for (i = 0; i < c->c_nlisten; i++)
		if (check_tls_listener(p, "listen", &c->c_listen[i], &any) == -1)
			return (-1);
	if (c->c_admin && check_tls_listener(p, "admin_listen",
	    &c->c_admin_listen, &any) == -1)
		return (-1);
	if (c->c_metrics && check_tls_listener(p, "metrics_listen",
	    &c->c_metrics_listen, &any) == -1)
		return (-1);
	p->p_line = 0;
	if (p->p_flags & CONFIG_NO_TLS)
		return (0);
	if (any && tls_server_build(c, p->p_err, p->p_errlen) == -1)
		return (-1);
	for (i = 0; i < c->c_nupstreams; i++)
		if (c->c_upstreams[i].u_tls &&
		    tls_upstream_build(&c->c_upstreams[i], p->p_name, p->p_err,
		    p->p_errlen) == -1)
			return (-1);
	return (0);
}

/* Checks and settings that need the whole file. */
static int
config_finish(struct parser *p)
{
	struct config	*c = p->p_conf;

	if (c->c_nlisten == 0 && dir_default(p, &directives[0]) == -1)
		return (-1);
	if (check_routes(p) == -1 || check_jwt_headers(p) == -1 ||
	    check_sizes(p) == -1 || check_admin(p) == -1 || check_tls(p) == -1 ||
	    check_health(p) == -1)
		return (-1);
	if (c->c_workers == 0) {
		c->c_workers = util_ncpus();
		if (c->c_workers > CONFIG_MAX_WORKERS)
			c->c_workers = CONFIG_MAX_WORKERS;
	}
	p->p_line = 0;
	if (route_table_init(&c->c_routes) == -1)
		return (perr(p, "out of memory"));
	return (0);
}

/* Apply the defaults of every directive that is not repeatable. */
static int
config_defaults(struct parser *p)
{
	size_t	 i;

	for (i = 0; i < nitems(directives); i++)
		if (directives[i].d_default != NULL &&
		    (directives[i].d_flags & D_REPEAT) == 0 &&
		    dir_default(p, &directives[i]) == -1)
			return (-1);
	return (0);
}

/* Free what the parser holds besides the config. */
static void
parser_free(struct parser *p)
{
	size_t	 i;

	for (i = 0; i < p->p_nrnames; i++) {
		free(p->p_rnames[i].rn_upstream);
		free(p->p_rnames[i].rn_auth);
	}
	free(p->p_rnames);
}

/* Parse text into a new config with CONFIG_* flags; name for messages. */
static struct config *
parse_text(const char *text, const char *name, int flags, char *err,
    size_t errlen)
{
	struct parser	 p;
	struct config	*c;
	char		*buf = NULL;

	memset(&p, 0, sizeof(p));
	p.p_name = name;
	p.p_flags = flags;
	p.p_err = err;
	p.p_errlen = errlen;
	if ((c = p.p_conf = calloc(1, sizeof(*c))) == NULL ||
	    (c->c_path = strdup(name)) == NULL ||
	    (buf = strdup(text)) == NULL) {
		perr(&p, "out of memory");
		goto fail;
	}
	if (config_defaults(&p) == -1 || parse_lines(&p, buf) == -1 ||
	    config_finish(&p) == -1)
		goto fail;
	parser_free(&p);
	explicit_bzero(buf, strlen(buf));
	free(buf);
	return (c);
fail:
	parser_free(&p);
	if (buf != NULL)
		explicit_bzero(buf, strlen(buf));
	free(buf);
	config_free(c);
	return (NULL);
}

/* Parse text into a new config; name is used in messages. */
struct config *
config_parse(const char *text, const char *name, char *err, size_t errlen)
{
	return (parse_text(text, name, 0, err, errlen));
}

/* Read a whole file of at most CONFIG_MAX_FILE bytes, NUL-terminated. */
static char *
config_read(const char *path, size_t *lenp, char *err, size_t errlen)
{
	FILE	*f;
	char	*buf = NULL, *nb;
	size_t	 len = 0, cap = 0, n;

	if ((f = fopen(path, "re")) == NULL) {
		snprintf(err, errlen, "%s: cannot open: %s", path,
		    strerror(errno));
		return (NULL);
	}
	for (;;) {
		if (len == cap) {
			if (cap == CONFIG_MAX_FILE + 1) {
				snprintf(err, errlen, "%s: file is larger than "
				    "%d bytes", path, CONFIG_MAX_FILE);
				goto fail;
			}
			cap = cap == 0 ? 65536 : cap * 2;
			if (cap > CONFIG_MAX_FILE + 1)
				cap = CONFIG_MAX_FILE + 1;
			if ((nb = realloc(buf, cap + 1)) == NULL) {
				snprintf(err, errlen, "%s: out of memory",
				    path);
				goto fail;
			}
			buf = nb;
		}
		if ((n = fread(buf + len, 1, cap - len, f)) == 0)
			break;
		len += n;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: cannot read: %s", path,
		    strerror(errno));
		goto fail;
	}
	fclose(f);
	buf[len] = '\0';
	*lenp = len;
	return (buf);
fail:
	fclose(f);
	free(buf);
	return (NULL);
}

/* Read and parse the file at path, building everything. */
struct config *
config_load(const char *path, char *err, size_t errlen)
{
	return (config_load_flags(path, 0, err, errlen));
}

/* Read and parse the file at path with CONFIG_* flags. */
struct config *
config_load_flags(const char *path, int flags, char *err, size_t errlen)
{
	struct config	*c = NULL;
	char		*buf, *nul, *abs;
	size_t		 len, i;
	int		 line = 1;

	if ((buf = config_read(path, &len, err, errlen)) == NULL)
		return (NULL);
	if ((nul = memchr(buf, '\0', len)) != NULL) {
		for (i = 0; buf + i < nul; i++)
			if (buf[i] == '\n')
				line++;
		snprintf(err, errlen, "%s:%d: NUL byte", path, line);
		goto fail;
	}
	if ((c = parse_text(buf, path, flags, err, errlen)) == NULL)
		goto fail;
	/* Absolute, so that a reload after chdir("/") reads the same file. */
	if ((abs = util_abspath(path)) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	free(c->c_path);
	c->c_path = abs;
	/* A cluster_redis URL may hold a password. */
	explicit_bzero(buf, len);
	free(buf);
	return (c);
fail:
	config_free(c);
	explicit_bzero(buf, len);
	free(buf);
	return (NULL);
}

/* Wipe and drop the cluster's passwords of c (a worker never needs them). */
void
config_forget_cluster_secrets(struct config *c)
{
	char	**pp[2];
	size_t	 i;

	if (c == NULL)
		return;
	pp[0] = &c->c_cluster_pass;
	pp[1] = &c->c_cluster_sentinel_pass;
	for (i = 0; i < sizeof(pp) / sizeof(pp[0]); i++)
		if (*pp[i] != NULL) {
			explicit_bzero(*pp[i], strlen(*pp[i]));
			free(*pp[i]);
			*pp[i] = NULL;
		}
}

/* Free what the provider jp owns (not jp itself). */
static void
jwt_provider_free(struct jwt_provider *jp)
{
	int	 i;

	free(jp->jp_name);
	for (i = 0; i < jp->jp_nissuers; i++)
		free(jp->jp_issuers[i]);
	for (i = 0; i < jp->jp_naudiences; i++)
		free(jp->jp_audiences[i]);
	for (i = 0; i < jp->jp_ntenants; i++)
		free(jp->jp_tenants[i]);
	free(jp->jp_identity);
	for (i = 0; i < jp->jp_nscope_claims; i++)
		free(jp->jp_scope_claims[i]);
	for (i = 0; i < jp->jp_nheaders; i++) {
		free(jp->jp_headers[i].hm_claim);
		free(jp->jp_headers[i].hm_header);
	}
	free(jp->jp_ca);
	free(jp->jp_jwks_url);
	free(jp->jp_jwks_path);
}

/* Free c and everything it owns. */
void
config_free(struct config *c)
{
	size_t	 i;
	int	 j;

	if (c == NULL)
		return;
	free(c->c_path);
	free(c->c_listen);
	free(c->c_user);
	free(c->c_pidfile);
	free(c->c_state_dir);
	free(c->c_error_log);
	free(c->c_access_log);
	free(c->c_cluster_url);
	free(c->c_cluster_host);
	free(c->c_cluster_unix);
	free(c->c_cluster_user);
	if (c->c_cluster_pass != NULL) {
		explicit_bzero(c->c_cluster_pass, strlen(c->c_cluster_pass));
		free(c->c_cluster_pass);
	}
	free(c->c_cluster_name);
	free(c->c_cluster_master);
	for (j = 0; j < c->c_cluster_nsentinels; j++)
		free(c->c_cluster_sentinel_host[j]);
	if (c->c_cluster_sentinel_pass != NULL) {
		explicit_bzero(c->c_cluster_sentinel_pass,
		    strlen(c->c_cluster_sentinel_pass));
		free(c->c_cluster_sentinel_pass);
	}
	for (i = 0; i < c->c_nupstreams; i++) {
		free(c->c_upstreams[i].u_name);
		for (j = 0; j < c->c_upstreams[i].u_nservers; j++) {
			free(c->c_upstreams[i].u_servers[j].us_url);
			free(c->c_upstreams[i].u_servers[j].us_host);
		}
		free(c->c_upstreams[i].u_servers);
		free(c->c_upstreams[i].u_strip_prefix);
		free(c->c_upstreams[i].u_host_header);
		free(c->c_upstreams[i].u_health);
		free(c->c_upstreams[i].u_ca);
		free(c->c_upstreams[i].u_sni);
		tls_upstream_free(&c->c_upstreams[i]);
	}
	for (i = 0; i < c->c_ntls_certs; i++) {
		free(c->c_tls_certs[i].tc_cert);
		free(c->c_tls_certs[i].tc_key);
	}
	free(c->c_tls_certs);
	free(c->c_tls_ciphers);
	free(c->c_tls_ciphersuites);
	tls_server_free(c->c_tls);
	free(c->c_verify_path);
	free(c->c_health_path);
	free(c->c_real_ip_from);
	free(c->c_real_ip_header);
	free(c->c_api_key_header);
	free(c->c_admin_token_file);
	free(c->c_upstreams);
	for (i = 0; i < c->c_njwt; i++)
		jwt_provider_free(&c->c_jwt[i]);
	free(c->c_jwt);
	route_table_free(&c->c_routes);
	free(c);
}

/*
 * Rate states the key store keeps: max_active_keys, but never more than
 * max_keys (a key has at most one) plus KS_ACTIVE_SPARE; 0, the default,
 * is that most: only the states of keys used become memory, so the
 * default never refuses a key for want of one (issue 14: 131072 refused
 * 1 M keys used at random).  The spare entries are for claims in flight:
 * two workers claiming for one key hold two entries until the loser gives
 * its back, so a store whose every key is in use needs a few more than
 * max_keys.
 */
uint32_t
config_max_active(const struct config *c)
{
	uint32_t	 most = c->c_max_keys + KS_ACTIVE_SPARE;

	if (c->c_max_active_keys == 0 || c->c_max_active_keys > most)
		return (most);
	return (c->c_max_active_keys);
}

/* Number of addresses to bind, the admin API's included. */
size_t
config_nlisten(const struct config *c)
{
	return (c->c_nlisten + (c->c_admin ? 1 : 0) + (c->c_metrics ? 1 : 0));
}

/*
 * Address i of config_nlisten(): the gateway listeners, then the admin
 * one (if enabled), then the metrics one (if given).
 */
const struct listen_addr *
config_listen(const struct config *c, size_t i)
{
	if (i < c->c_nlisten)
		return (&c->c_listen[i]);
	if (i == c->c_nlisten && c->c_admin)
		return (&c->c_admin_listen);
	return (&c->c_metrics_listen);
}

/* What listener i of config_nlisten() serves. */
enum listen_kind
config_listen_kind(const struct config *c, size_t i)
{
	if (i < c->c_nlisten)
		return (LISTEN_GATEWAY);
	if (i == c->c_nlisten && c->c_admin)
		return (LISTEN_ADMIN);
	return (LISTEN_METRICS);
}

/* Upstream called name, or NULL. */
struct upstream *
config_upstream(const struct config *c, const char *name)
{
	size_t	 i;

	for (i = 0; i < c->c_nupstreams; i++)
		if (strcmp(c->c_upstreams[i].u_name, name) == 0)
			return (&c->c_upstreams[i]);
	return (NULL);
}

/* JWT provider called name, or NULL. */
struct jwt_provider *
config_jwt_provider(const struct config *c, const char *name)
{
	size_t	 i;

	for (i = 0; i < c->c_njwt; i++)
		if (strcmp(c->c_jwt[i].jp_name, name) == 0)
			return (&c->c_jwt[i]);
	return (NULL);
}

/*
 * Read a secret from a file: its first line, min to CONFIG_TOKEN_MAX
 * visible ASCII characters.  Messages describe the file, never its
 * contents.
 */
int
config_read_secret(const char *path, char *buf, size_t buflen, size_t min,
    char *err, size_t errlen)
{
	ssize_t	 n;
	size_t	 len, i;
	int	 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		snprintf(err, errlen, "cannot open %s: %s", path,
		    strerror(errno));
		return (-1);
	}
	n = read(fd, buf, buflen - 1);
	close(fd);
	if (n == -1) {
		snprintf(err, errlen, "cannot read %s: %s", path,
		    strerror(errno));
		return (-1);
	}
	buf[n] = '\0';
	len = strcspn(buf, "\r\n");
	if (len == (size_t)n && (size_t)n == buflen - 1) {
		snprintf(err, errlen, "%s: the secret is longer than %d "
		    "characters", path, CONFIG_TOKEN_MAX);
		goto fail;
	}
	buf[len] = '\0';
	for (i = 0; i < len; i++)
		if (buf[i] <= ' ' || buf[i] >= 0x7f) {
			snprintf(err, errlen, "%s: the secret must be one line "
			    "of visible ASCII characters", path);
			goto fail;
		}
	if (len < min) {
		snprintf(err, errlen, "%s: the secret is shorter than %zu "
		    "characters", path, min);
		goto fail;
	}
	return (0);
fail:
	explicit_bzero(buf, buflen);
	return (-1);
}

/* An admin token: a secret of at least 16 characters. */
int
config_read_token(const char *path, char *buf, size_t buflen, char *err,
    size_t errlen)
{
	return (config_read_secret(path, buf, buflen, 16, err, errlen));
}
