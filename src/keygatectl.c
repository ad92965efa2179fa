/*
 * keygatectl: manage keygate's API keys through the admin API.  Each
 * command is one HTTP request to admin_listen (list may follow cursors over
 * several), made with libevent's evhttp client and
 * "Authorization: Bearer TOKEN".  Answers are printed as tables and
 * "field: value" lists for people, or as the server's JSON (--json) for
 * scripts.
 *
 * The admin URL and the token come from the command line, the environment
 * or the daemon's configuration file, in that order.  The token goes into
 * the Authorization header and nowhere else: it is never printed, not even
 * in an error message.
 *
 * An https:// admin URL (admin_listen ADDR tls) is reached with libevent's
 * own TLS, a bufferevent_openssl under evhttp.  The daemon avoids
 * bufferevents for their per-request costs (doc/differences.md #8); a
 * command line tool making a handful of requests does not notice them.
 * The server's certificate is always verified: see tls_setup().
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <getopt.h>
#include <langinfo.h>
#include <locale.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "admin.h"
#include "config.h"
#include "import.h"
#include "secret.h"
#include "util.h"

#ifndef KEYGATE_SYSCONFDIR
#define KEYGATE_SYSCONFDIR "/etc"
#endif
#define CTL_DEFAULT_CONFIG	KEYGATE_SYSCONFDIR "/keygate/keygate.conf"

#define CTL_TIMEOUT		30	/* seconds, per request */
#define CTL_MAX_ANSWER		(256 * 1024 * 1024)	/* bytes */
#define CTL_ERRLEN		1024
#define CTL_SECRET_MAX		8192	/* bytes read by "verify -": a JWT */
#define CTL_LABEL_WIDTH		18	/* "requests_allowed: " */
#define CTL_MAX_ADDRS		8	/* addresses tried per host */
#define CTL_IMPORT_MAX		(1024 * 1024 * 1024)	/* bytes of input */
#define CTL_BATCH_LINES		1000	/* key lines per import request */
/* Bytes per import request: under the admin API's body limit. */
#define CTL_BATCH_BYTES		(ADMIN_MAX_BODY - 4096)

#define EXIT_FAIL		1
#define EXIT_USAGE		2

struct ctl {
	/* Global options, given before the command. */
	const char		*c_conf_path;
	const char		*c_url_arg;
	const char		*c_token_arg;
	const char		*c_token_file;
	const char		*c_ca_arg;	/* --cacert */
	int			 c_json;
	int			 c_conf_given;	/* -c was given */
	int			 c_help;	/* COMMAND --help was answered */
	const char		*c_cmd;		/* command, or NULL */

	/*
	 * The admin API, once ctl_open() has run: the URL for messages, HOST
	 * (without []) and PORT, "HOST:PORT" as written for the Host header,
	 * HOST's addresses and the one in use, "Bearer TOKEN".
	 */
	char			 c_url[300];
	int			 c_tls;		/* https:// */
	char			 c_host[256];
	char			 c_port[6];
	char			 c_hosthdr[280];
	struct sockaddr_storage	 c_addrs[CTL_MAX_ADDRS];
	socklen_t		 c_addrlens[CTL_MAX_ADDRS];
	int			 c_naddrs;
	int			 c_cur;
	char			 c_auth[7 + CONFIG_TOKEN_MAX + 1];
	struct event_base	*c_base;
	struct evhttp_connection *c_conn;

	/*
	 * https: the client context, the pinned certificates (NULL: verify
	 * a chain instead) and the file they came from, and why the last
	 * verification failed ("" if it did not).
	 */
	SSL_CTX			*c_ssl_ctx;
	STACK_OF(X509)		*c_pins;
	char			*c_pin_conf;
	char			 c_tlserr[512];
	const char		*c_ctype;	/* of bodies; NULL: JSON */
};

/* What one request brought back; filled by the evhttp callbacks. */
struct reply {
	struct event_base	*r_base;
	int			 r_done;
	int			 r_status;	/* 0: no answer */
	int			 r_failed;	/* evhttp said r_error */
	enum evhttp_request_error r_error;
	char			*r_body;	/* NUL-terminated */
	size_t			 r_bodylen;
};

struct command {
	const char		*cmd_name;
	int			(*cmd_run)(struct ctl *, int, char **);
	const char		*cmd_usage;
	const char		*cmd_help;	/* what it does, for --help */
};

static int	 cmd_create(struct ctl *, int, char **);
static int	 cmd_list(struct ctl *, int, char **);
static int	 cmd_show(struct ctl *, int, char **);
static int	 cmd_update(struct ctl *, int, char **);
static int	 cmd_delete(struct ctl *, int, char **);
static int	 cmd_regenerate(struct ctl *, int, char **);
static int	 cmd_usage(struct ctl *, int, char **);
static int	 cmd_verify(struct ctl *, int, char **);
static int	 cmd_status(struct ctl *, int, char **);
static int	 cmd_top(struct ctl *, int, char **);
static int	 cmd_import(struct ctl *, int, char **);
static int	 cmd_cluster(struct ctl *, int, char **);

/* The rate limit windows, as --rate names them and as the API does. */
static const char *const rate_windows[] = { "1s", "10s", "60s" };
static const char *const rate_members[] = { "per_1s", "per_10s", "per_60s" };

static const struct command commands[] = {
	{ "create", cmd_create,
	    "create --owner O [--name N] [--app ID] [--scope S]... "
	    "[--prefix P]\n"
	    "\t\t[--expires TIME|never] [--disabled] "
	    "[--rate 1s=N,10s=N,60s=N]\n"
	    "\t\t[--secret-stdin | --secret-sha256 HEX]",
	    "Create a key and print it with its secret (shown only once).\n"
	    "--secret-stdin gives the key the secret on standard input "
	    "instead (8 to\n512 visible ASCII characters), --secret-sha256 "
	    "the SHA-256 of one.\n"
	    "TIME is an RFC 3339 time (2030-01-31T12:00:00Z, or with an "
	    "offset),\n+N followed by s, m, h or d (from now), or never." },
	{ "list", cmd_list,
	    "list [--owner O] [--app ID] [--search TEXT] "
	    "[--state active|disabled|expired|expiring]\n"
	    "\t\t[--older-than AGE] [--unused AGE] [--limit N] [--cursor C]",
	    "List keys, all of them or one page of --limit keys (at most "
	    "1000).\n--search matches the id, name, owner, app or hint "
	    "(case ignored); expiring: within\n7 days.  AGE is N followed by "
	    "s, m, h or d: --older-than 90d lists keys due for\nrotation, "
	    "--unused 30d those not used for 30 days (or never, made that "
	    "long ago)." },
	{ "show", cmd_show, "show ID", "Print one key." },
	{ "update", cmd_update,
	    "update ID [--name N] [--scope S]... [--no-scopes] "
	    "[--expires TIME|never]\n"
	    "\t\t[--disable|--enable] [--rate 1s=N,10s=N,60s=N|default]",
	    "Change a key's name, scopes, expiry, state or rate limit.\n"
	    "TIME is as for create." },
	{ "delete", cmd_delete, "delete ID", "Delete a key." },
	{ "regenerate", cmd_regenerate, "regenerate ID [--grace SECONDS]",
	    "Give a key a new secret; the old one is accepted for --grace "
	    "seconds." },
	{ "usage", cmd_usage, "usage ID [--history 1h|24h|30d]",
	    "Print a key's request counters and rate limit windows; with\n"
	    "--history, its admitted, rate-limited and refused requests over "
	    "the last\nhour, day or 30 days: the totals, a sparkline (Unicode "
	    "blocks in a UTF-8\nlocale, ASCII otherwise) and a table of 6 "
	    "10-minute, 24 hourly or 30\ndaily sums." },
	{ "verify", cmd_verify, "verify SECRET|JWT|- [--app ID] [--key]",
	    "Check a secret as the gateway would (- reads it from standard "
	    "input);\nexits 1 if it is not valid.  --key sends a secret that "
	    "looks like a JWT\nas a key." },
	{ "import", cmd_import,
	    "import [--format ndjson|csv|nginx-map|kong] [--batch N] FILE|-",
	    "Import existing keys with their secrets: NDJSON (one POST "
	    "/v1/keys/import\nobject per line), CSV with a header (id, secret, "
	    "secret_sha256, hint, name,\nowner, app_id, scopes, expires_at, "
	    "prefix, disabled), an nginx map of\nkeys to owners, or a Kong "
	    "decK export (YAML or JSON).  The format is\nguessed from the "
	    "file name (.ndjson .jsonl .csv .map .conf .yaml .yml\n.json) "
	    "unless given.  Keys go in requests of at most --batch lines\n"
	    "(default 1000) and 60 KiB.  Prints a result per key and a "
	    "summary; exits 1\nif any key was not imported.  Importing again "
	    "changes nothing." },
	{ "status", cmd_status, "status",
	    "Print what the daemon is doing: uptime, workers, keys, "
	    "connections,\nthe last minute's requests and refusals, reloads "
	    "and upstream servers." },
	{ "top", cmd_top, "top [-n N] [-d SECONDS]",
	    "Print status every SECONDS (default 1, fractions allowed) until "
	    "interrupted\nor N times; on a terminal the screen is redrawn, "
	    "otherwise frames follow\neach other.  With --json, one JSON "
	    "object per line." },
	{ "cluster", cmd_cluster, "cluster",
	    "Print the state of the cluster the daemon belongs to "
	    "(cluster_redis): whether\nit has joined and reaches Redis, how "
	    "far this node has applied the change\nstream, and the nodes "
	    "whose heartbeats it sees.  Exits 0 whatever the\nstate, as "
	    "status does: scripts read \"state\" in --json." },
	{ NULL, NULL, NULL, NULL }
};

/* The full usage text, to f. */
static void
usage(FILE *f)
{
	const struct command	*c;

	fprintf(f, "usage: keygatectl [-c file] [-u url] [--cacert file] "
	    "[-t token]\n\t\t  [-T tokenfile] [--json] command ...\n"
	    "commands:\n");
	for (c = commands; c->cmd_name != NULL; c++)
		fprintf(f, "\t%s\n", c->cmd_usage);
	fprintf(f, "\thelp [COMMAND]\n");
	fprintf(f, "options:\n"
	    "\t-c, --config FILE      configuration file (default %s)\n"
	    "\t-u, --url URL          admin API, http[s]://HOST:PORT "
	    "(or $KEYGATE_ADMIN_URL)\n"
	    "\t    --cacert FILE      CA certificates for an https URL "
	    "(or $KEYGATE_ADMIN_CA)\n"
	    "\t-t, --token TOKEN      admin token (or $KEYGATE_ADMIN_TOKEN)\n"
	    "\t-T, --token-file FILE  read the admin token from FILE\n"
	    "\t    --json             print the API's JSON answers\n"
	    "\t-h, --help             print this text\n"
	    "\t-v, --version          print the version\n",
	    CTL_DEFAULT_CONFIG);
}

/* The usage of one command and what it does, on stdout (COMMAND --help). */
static void
command_help(const struct command *c)
{
	printf("usage: keygatectl [global options] %s\n\n%s\n"
	    "Every command takes --json.  Global options: keygatectl help.\n",
	    c->cmd_usage, c->cmd_help);
}

/* The command named name, or NULL. */
static const struct command *
command_find(const char *name)
{
	const struct command	*c;

	for (c = commands; c->cmd_name != NULL; c++)
		if (strcmp(c->cmd_name, name) == 0)
			return (c);
	return (NULL);
}

/* "keygatectl: message" on stderr. */
static void __attribute__((format(printf, 1, 2)))
warnmsg(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	fputs("keygatectl: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* A usage error in a command: the reason and the command's synopsis. */
static int __attribute__((format(printf, 2, 3)))
usage_error(const struct ctl *ctl, const char *fmt, ...)
{
	const struct command	*c;
	va_list			 ap;

	va_start(ap, fmt);
	fputs("keygatectl: ", stderr);
	if (ctl->c_cmd != NULL)
		fprintf(stderr, "%s: ", ctl->c_cmd);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	if (ctl->c_cmd == NULL)
		fprintf(stderr, "usage: keygatectl [-c file] [-u url] "
		    "[--cacert file] [-t token] [-T tokenfile] [--json] "
		    "command ...\n(see keygatectl -h)\n");
	for (c = commands; ctl->c_cmd != NULL && c->cmd_name != NULL; c++)
		if (strcmp(c->cmd_name, ctl->c_cmd) == 0)
			fprintf(stderr, "usage: keygatectl %s\n", c->cmd_usage);
	return (EXIT_USAGE);
}

/*
 * getopt_long's answers that every command handles alike: --json, a
 * missing value, an unknown option.  opterr is 0 so that every message has
 * our format.
 */
static int
opt_common(struct ctl *ctl, int ch, char **argv)
{
	const char	*arg = argv[optind - 1];

	switch (ch) {
	case 'j':
		ctl->c_json = 1;
		return (0);
	case ':':
		return (usage_error(ctl, "option %s needs a value", arg));
	default:
		if (ctl->c_cmd != NULL && (strcmp(arg, "--help") == 0 ||
		    strcmp(arg, "-h") == 0)) {
			/* Stop the command; main() exits 0. */
			command_help(command_find(ctl->c_cmd));
			ctl->c_help = 1;
			return (EXIT_USAGE);
		}
		if (strncmp(arg, "--", 2) != 0 && optopt > ' ' && optopt < 0x7f)
			return (usage_error(ctl, "unknown option -%c", optopt));
		if (strchr(arg, '=') != NULL && optopt != 0)
			return (usage_error(ctl, "option %.*s takes no value",
			    (int)strcspn(arg, "="), arg));
		return (usage_error(ctl, "unknown option %s", arg));
	}
}

/* Copy s for the terminal: control characters become '?'. */
static void
put_clean(FILE *f, const char *s)
{
	for (; *s != '\0'; s++)
		fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, f);
}

/* Characters on screen of UTF-8 text: bytes that start a sequence. */
static size_t
text_width(const char *s)
{
	size_t	 n = 0;

	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return (n);
}

/* Parse a decimal number 0..max; 0, or -1 if it is not one. */
static int
parse_uint(const char *s, uint64_t max, uint64_t *v)
{
	char	*end;

	if (*s < '0' || *s > '9')
		return (-1);
	errno = 0;
	*v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || *v > max)
		return (-1);
	return (0);
}

/*
 * Parse an RFC 3339 UTC time as the API writes it, "2026-11-23T10:00:00Z"
 * with an optional fraction, into milliseconds since the epoch.
 */
static int
parse_time_ms(const char *s, int64_t *ms)
{
	struct tm	 tm;
	int		 n = 0, frac = 0, digits = 0;
	time_t		 t;

	memset(&tm, 0, sizeof(tm));
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon,
	    &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6 ||
	    n != 19)
		return (-1);
	s += n;
	if (*s == '.')
		for (s++; *s >= '0' && *s <= '9'; s++)
			if (digits++ < 3)
				frac = frac * 10 + (*s - '0');
	for (; digits < 3; digits++)
		frac *= 10;
	if (strcmp(s, "Z") != 0)
		return (-1);
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	if ((t = timegm(&tm)) == (time_t)-1)
		return (-1);
	*ms = (int64_t)t * 1000 + frac;
	return (0);
}

/* --- the admin URL and token ------------------------------------------- */

/*
 * Split an admin URL, "http://HOST:PORT" or "https://HOST:PORT" with an
 * optional "/" after it (HOST a name, an IPv4 address or an IPv6 address
 * in []), into ctl.  Nothing else is accepted: there is no path prefix.
 */
static int
url_parse(struct ctl *ctl, const char *url, const char *from, char *err,
    size_t errlen)
{
	struct in6_addr	 a6;
	const char	*h, *p, *end;
	size_t		 hlen;
	uint64_t	 port;
	size_t		 slen;

	if (strncmp(url, "http://", 7) == 0)
		ctl->c_tls = 0;
	else if (strncmp(url, "https://", 8) == 0)
		ctl->c_tls = 1;
	else
		goto bad;
	slen = ctl->c_tls ? 8 : 7;
	h = url + slen;
	if (*h == '[') {
		if ((end = strchr(h, ']')) == NULL)
			goto bad;
		h++;
		p = end + 1;
	} else {
		end = p = h + strspn(h, "abcdefghijklmnopqrstuvwxyz"
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-");
	}
	hlen = (size_t)(end - h);
	if (hlen == 0 || hlen >= sizeof(ctl->c_host) || *p != ':')
		goto bad;
	memcpy(ctl->c_host, h, hlen);
	ctl->c_host[hlen] = '\0';
	if (h[-1] == '[' && inet_pton(AF_INET6, ctl->c_host, &a6) != 1)
		goto bad;
	p++;
	hlen = strspn(p, "0123456789");
	if (hlen == 0 || hlen > 5 || (p[hlen] != '\0' && strcmp(p + hlen,
	    "/") != 0))
		goto bad;
	memcpy(ctl->c_port, p, hlen);
	ctl->c_port[hlen] = '\0';
	if (parse_uint(ctl->c_port, 65535, &port) == -1 || port == 0)
		goto bad;
	/* HOST:PORT as written: at most 255 + 2 + 1 + 5 bytes. */
	hlen = (size_t)(p + hlen - (url + slen));
	memcpy(ctl->c_hosthdr, url + slen, hlen);
	ctl->c_hosthdr[hlen] = '\0';
	snprintf(ctl->c_url, sizeof(ctl->c_url), "%s://%s",
	    ctl->c_tls ? "https" : "http", ctl->c_hosthdr);
	return (0);
bad:
	/* Do not echo a URL that may carry credentials. */
	if (strchr(url, '@') != NULL)
		snprintf(err, errlen, "the admin URL from %s is invalid "
		    "(expected http[s]://HOST:PORT, without credentials)",
		    from);
	else
		snprintf(err, errlen, "the admin URL \"%s\" from %s is "
		    "invalid (expected http[s]://HOST:PORT)", url, from);
	return (-1);
}

/*
 * The admin URL of a configuration: admin_listen, https:// when it has
 * "tls", with a wildcard address replaced by the loopback address of its
 * family (a client cannot connect to 0.0.0.0 or ::).
 */
static int
url_from_config(const struct config *conf, char *url, size_t len,
    char *err, size_t errlen)
{
	const struct listen_addr	*la = &conf->c_admin_listen;
	struct sockaddr_in		 sin;
	struct sockaddr_in6		 sin6;
	const char			*scheme;
	char				 host[INET6_ADDRSTRLEN];

	if (!conf->c_admin) {
		snprintf(err, errlen, "%s does not enable the admin API (no "
		    "admin_token_file); use -u", conf->c_path);
		return (-1);
	}
	scheme = la->la_tls ? "https" : "http";
	if (la->la_ss.ss_family == AF_INET6) {
		memcpy(&sin6, &la->la_ss, sizeof(sin6));
		if (IN6_IS_ADDR_UNSPECIFIED(&sin6.sin6_addr))
			sin6.sin6_addr = in6addr_loopback;
		inet_ntop(AF_INET6, &sin6.sin6_addr, host, sizeof(host));
		snprintf(url, len, "%s://[%s]:%u", scheme, host,
		    ntohs(sin6.sin6_port));
	} else {
		memcpy(&sin, &la->la_ss, sizeof(sin));
		if (sin.sin_addr.s_addr == htonl(INADDR_ANY))
			sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		inet_ntop(AF_INET, &sin.sin_addr, host, sizeof(host));
		snprintf(url, len, "%s://%s:%u", scheme, host,
		    ntohs(sin.sin_port));
	}
	return (0);
}

/* Is a token usable in a header: 1 to CONFIG_TOKEN_MAX visible ASCII? */
static int
token_valid(const char *t)
{
	size_t	 i;

	for (i = 0; t[i] != '\0'; i++)
		if (t[i] <= ' ' || t[i] >= 0x7f)
			return (0);
	return (i > 0 && i <= CONFIG_TOKEN_MAX);
}

/*
 * Find the token: -t, -T FILE, $KEYGATE_ADMIN_TOKEN, then the
 * configuration's admin_token_file.  Messages name where the token came
 * from, never what it is.
 */
static int
token_find(const struct ctl *ctl, const struct config *conf, char *tok,
    size_t toklen, char *err, size_t errlen)
{
	const char	*env = getenv("KEYGATE_ADMIN_TOKEN"), *from;

	if (ctl->c_token_arg != NULL || (ctl->c_token_file == NULL &&
	    env != NULL && *env != '\0')) {
		from = ctl->c_token_arg != NULL ? "-t" : "KEYGATE_ADMIN_TOKEN";
		if (!token_valid(ctl->c_token_arg != NULL ?
		    ctl->c_token_arg : env)) {
			snprintf(err, errlen, "the admin token from %s must be "
			    "1 to %d visible ASCII characters", from,
			    CONFIG_TOKEN_MAX);
			return (-1);
		}
		snprintf(tok, toklen, "%s",
		    ctl->c_token_arg != NULL ? ctl->c_token_arg : env);
		return (0);
	}
	if (ctl->c_token_file != NULL)
		return (config_read_token(ctl->c_token_file, tok, toklen, err,
		    errlen));
	if (conf == NULL || conf->c_admin_token_file == NULL) {
		snprintf(err, errlen, "no admin token: use -t, -T, "
		    "KEYGATE_ADMIN_TOKEN, or admin_token_file in %s",
		    conf != NULL ? conf->c_path : ctl->c_conf_path);
		return (-1);
	}
	return (config_read_token(conf->c_admin_token_file, tok, toklen, err,
	    errlen));
}

/* --- TLS ---------------------------------------------------------------- */

/* "what: OpenSSL's reason" (or just what when it gave none) into err. */
static void
tls_error(char *err, size_t errlen, const char *what)
{
	unsigned long	 e = ERR_peek_last_error();
	const char	*why = e != 0 ? ERR_reason_error_string(e) : NULL;

	if (why != NULL)
		snprintf(err, errlen, "%s: %s", what, why);
	else
		snprintf(err, errlen, "%s", what);
	ERR_clear_error();
}

/*
 * OpenSSL's verification of the admin API's certificate, replaced so
 * that the reason of a failure reaches the message.  Pinned (c_pins set):
 * the server's leaf certificate must equal one of the configuration's
 * tls_certificate certificates; nothing else is checked, as the operator
 * trusts exactly those.  Otherwise the chain is verified as OpenSSL does,
 * against the CA store and the host name or IP address tls_ssl() set.
 */
static int
tls_verify(X509_STORE_CTX *xs, void *arg)
{
	struct ctl	*ctl = arg;
	X509		*leaf = X509_STORE_CTX_get0_cert(xs);
	int		 i;

	if (ctl->c_pins == NULL) {
		if (X509_verify_cert(xs) == 1)
			return (1);
		snprintf(ctl->c_tlserr, sizeof(ctl->c_tlserr), "certificate "
		    "verification failed: %s", X509_verify_cert_error_string(
		    X509_STORE_CTX_get_error(xs)));
		return (0);
	}
	for (i = 0; leaf != NULL && i < sk_X509_num(ctl->c_pins); i++)
		if (X509_cmp(leaf, sk_X509_value(ctl->c_pins, i)) == 0)
			return (1);
	X509_STORE_CTX_set_error(xs, X509_V_ERR_CERT_REJECTED);
	snprintf(ctl->c_tlserr, sizeof(ctl->c_tlserr), "certificate "
	    "verification failed: %s: it is none of the tls_certificate "
	    "certificates of %s (use --cacert to verify it against a CA)",
	    X509_verify_cert_error_string(X509_V_ERR_CERT_REJECTED),
	    ctl->c_pin_conf);
	return (0);
}

/*
 * Pin the first certificate (the leaf) of each tls_certificate CERT file
 * of conf.  Certificates are public: an operator who may not read the
 * keys may read them.
 */
static int
tls_pins(struct ctl *ctl, const struct config *conf, char *err,
    size_t errlen)
{
	const struct tls_cert_conf	*tc;
	FILE				*f;
	X509				*x;
	size_t				 i;
	char				 what[CTL_ERRLEN / 2];

	if ((ctl->c_pins = sk_X509_new_null()) == NULL ||
	    (ctl->c_pin_conf = strdup(conf->c_path)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return (-1);
	}
	for (i = 0; i < conf->c_ntls_certs; i++) {
		tc = &conf->c_tls_certs[i];
		if ((f = fopen(tc->tc_cert, "re")) == NULL) {
			snprintf(err, errlen, "%s:%d: cannot read the "
			    "certificate %s to verify the admin API: %s",
			    conf->c_path, tc->tc_line, tc->tc_cert,
			    strerror(errno));
			return (-1);
		}
		x = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
		if (x == NULL || sk_X509_push(ctl->c_pins, x) == 0) {
			X509_free(x);
			snprintf(what, sizeof(what), "%s:%d: cannot load the "
			    "certificate %s", conf->c_path, tc->tc_line,
			    tc->tc_cert);
			tls_error(err, errlen, what);
			return (-1);
		}
	}
	return (0);
}

/*
 * The TLS client context for an https admin URL.  Verification is never
 * off: with --cacert FILE (or KEYGATE_ADMIN_CA), the chain against FILE
 * and the URL's host; else, when the URL came from the configuration
 * (conf not NULL: its admin_listen address, which the certificate will
 * not name), by pinning conf's tls_certificate certificates; else the
 * chain against the system CA store and the URL's host.
 */
static int
tls_setup(struct ctl *ctl, const struct config *conf, char *err,
    size_t errlen)
{
	static const unsigned char	 alpn[] = "\x08http/1.1";
	const char			*ca = ctl->c_ca_arg;
	char				 what[CTL_ERRLEN / 2];

	if (ca == NULL && (ca = getenv("KEYGATE_ADMIN_CA")) != NULL &&
	    *ca == '\0')
		ca = NULL;
	if (!ctl->c_tls) {
		if (ctl->c_ca_arg == NULL)
			return (0);
		snprintf(err, errlen, "--cacert is for an https:// admin URL, "
		    "not %s", ctl->c_url);
		return (-1);
	}
	if ((ctl->c_ssl_ctx = SSL_CTX_new(TLS_client_method())) == NULL ||
	    SSL_CTX_set_min_proto_version(ctl->c_ssl_ctx,
	    TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_alpn_protos(ctl->c_ssl_ctx, alpn,
	    sizeof(alpn) - 1) != 0) {
		tls_error(err, errlen, "cannot set up TLS");
		return (-1);
	}
	SSL_CTX_set_verify(ctl->c_ssl_ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_cert_verify_callback(ctl->c_ssl_ctx, tls_verify, ctl);
	if (ca != NULL) {
		if (SSL_CTX_load_verify_locations(ctl->c_ssl_ctx, ca,
		    NULL) == 1)
			return (0);
		snprintf(what, sizeof(what), "cannot load the CA certificates "
		    "%s (from %s)", ca, ctl->c_ca_arg != NULL ? "--cacert" :
		    "KEYGATE_ADMIN_CA");
		tls_error(err, errlen, what);
		return (-1);
	}
	if (conf != NULL)
		return (tls_pins(ctl, conf, err, errlen));
	if (SSL_CTX_set_default_verify_paths(ctl->c_ssl_ctx) != 1) {
		tls_error(err, errlen, "cannot load the system CA "
		    "certificates");
		return (-1);
	}
	return (0);
}

/*
 * A TLS bufferevent for one connection to the admin API: SNI and the
 * name to verify are the URL's host, or its IP address for an IP literal
 * (sent as no SNI); pinned, no name is checked.
 */
static struct bufferevent *
tls_bufferevent(struct ctl *ctl, char *err, size_t errlen)
{
	struct bufferevent	*bev;
	struct in6_addr		 a6;
	SSL			*ssl;
	int			 ip, ok = 1;

	ip = inet_pton(AF_INET, ctl->c_host, &a6) == 1 ||
	    inet_pton(AF_INET6, ctl->c_host, &a6) == 1;
	if ((ssl = SSL_new(ctl->c_ssl_ctx)) == NULL) {
		tls_error(err, errlen, "cannot set up TLS");
		return (NULL);
	}
	if (ctl->c_pins == NULL && ip)
		ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
		    ctl->c_host) == 1;
	else if (ctl->c_pins == NULL)
		ok = SSL_set_tlsext_host_name(ssl, ctl->c_host) == 1 &&
		    SSL_set1_host(ssl, ctl->c_host) == 1;
	/* libevent 2.1 leaves ssl to the caller when this fails. */
	if (!ok || (bev = bufferevent_openssl_socket_new(ctl->c_base, -1,
	    ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE)) ==
	    NULL) {
		SSL_free(ssl);
		tls_error(err, errlen, "cannot set up TLS");
		return (NULL);
	}
	/* Content-Length ends every answer; a missing close_notify is not
	 * an error. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return (bev);
}

/*
 * Resolve the URL's host once, keeping its first CTL_MAX_ADDRS addresses
 * in getaddrinfo's order ("localhost" may give ::1 then 127.0.0.1).
 */
static int
url_resolve(struct ctl *ctl, char *err, size_t errlen)
{
	struct addrinfo	 hints, *res, *ai;
	int		 rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	if ((rc = getaddrinfo(ctl->c_host, ctl->c_port, &hints, &res)) != 0) {
		snprintf(err, errlen, "cannot reach the admin API at %s: %s",
		    ctl->c_url, rc == EAI_SYSTEM ? strerror(errno) :
		    gai_strerror(rc));
		return (-1);
	}
	for (ai = res; ai != NULL && ctl->c_naddrs < CTL_MAX_ADDRS;
	    ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof(ctl->c_addrs[0]))
			continue;
		memcpy(&ctl->c_addrs[ctl->c_naddrs], ai->ai_addr,
		    ai->ai_addrlen);
		ctl->c_addrlens[ctl->c_naddrs++] = ai->ai_addrlen;
	}
	freeaddrinfo(res);
	if (ctl->c_naddrs == 0) {
		snprintf(err, errlen, "cannot reach the admin API at %s: no "
		    "usable address", ctl->c_url);
		return (-1);
	}
	return (0);
}

/* A fresh evhttp connection (over TLS for https) to the address c_cur. */
static int
conn_new(struct ctl *ctl, char *err, size_t errlen)
{
	struct bufferevent	*bev;
	char			 addr[INET6_ADDRSTRLEN];
	int			 rc;

	if (ctl->c_conn != NULL)
		evhttp_connection_free(ctl->c_conn);
	ctl->c_conn = NULL;
	if ((rc = getnameinfo((struct sockaddr *)&ctl->c_addrs[ctl->c_cur],
	    ctl->c_addrlens[ctl->c_cur], addr, sizeof(addr), NULL, 0,
	    NI_NUMERICHOST)) != 0) {
		snprintf(err, errlen, "%s: %s", ctl->c_host, gai_strerror(rc));
		return (-1);
	}
	ctl->c_tlserr[0] = '\0';
	if (!ctl->c_tls)
		ctl->c_conn = evhttp_connection_base_new(ctl->c_base, NULL,
		    addr, (uint16_t)atoi(ctl->c_port));
	else if ((bev = tls_bufferevent(ctl, err, errlen)) == NULL)
		return (-1);
	else	/* out of memory: bev may leak, never be freed twice */
		ctl->c_conn = evhttp_connection_base_bufferevent_new(
		    ctl->c_base, NULL, bev, addr, (uint16_t)atoi(ctl->c_port));
	if (ctl->c_conn == NULL) {
		snprintf(err, errlen, "cannot set up an HTTP connection");
		return (-1);
	}
	evhttp_connection_set_timeout(ctl->c_conn, CTL_TIMEOUT);
	evhttp_connection_set_max_body_size(ctl->c_conn, CTL_MAX_ANSWER);
	return (0);
}

/*
 * Work out the admin URL and token, and set up the connection.  The
 * configuration file is read only when the URL or the token must come
 * from it, so that -u and -t work without one.
 */
static int
ctl_open(struct ctl *ctl, char *err, size_t errlen)
{
	struct config	*conf = NULL;
	const char	*url = ctl->c_url_arg, *from = "-u", *envtok;
	char		 confurl[300], token[CONFIG_TOKEN_MAX + 1];
	char		 cerr[CTL_ERRLEN / 2];
	int		 rc = -1, tokconf;

	if (url == NULL && (url = getenv("KEYGATE_ADMIN_URL")) != NULL) {
		from = "KEYGATE_ADMIN_URL";
		if (*url == '\0')
			url = NULL;
	}
	envtok = getenv("KEYGATE_ADMIN_TOKEN");
	tokconf = ctl->c_token_arg == NULL && ctl->c_token_file == NULL &&
	    (envtok == NULL || *envtok == '\0');
	/* The address and the token only: no TLS key is read. */
	if ((url == NULL || tokconf) && (conf = config_load_flags(
	    ctl->c_conf_path, CONFIG_NO_TLS, cerr, sizeof(cerr))) == NULL) {
		/*
		 * A URL given without a token: the configuration was only
		 * looked at for admin_token_file, so say what is missing.
		 */
		if (url != NULL && !ctl->c_conf_given)
			snprintf(err, errlen, "no admin token for the admin "
			    "URL from %s: use -t TOKEN, -T FILE or "
			    "KEYGATE_ADMIN_TOKEN (%s)", from, cerr);
		else
			snprintf(err, errlen, "%s", cerr);
		return (-1);
	}
	if (url == NULL) {
		if (url_from_config(conf, confurl, sizeof(confurl), err,
		    errlen) == -1)
			goto fail;
		url = confurl;
		from = conf->c_path;
	}
	if (url_parse(ctl, url, from, err, errlen) == -1 ||
	    tls_setup(ctl, url == confurl ? conf : NULL, err, errlen) == -1 ||
	    token_find(ctl, conf, token, sizeof(token), err, errlen) == -1)
		goto fail;
	snprintf(ctl->c_auth, sizeof(ctl->c_auth), "Bearer %s", token);
	explicit_bzero(token, sizeof(token));
	if (url_resolve(ctl, err, errlen) == -1)
		goto fail;
	if ((ctl->c_base = event_base_new()) == NULL) {
		snprintf(err, errlen, "cannot set up an event loop");
		goto fail;
	}
	if (conn_new(ctl, err, errlen) == -1)
		goto fail;
	rc = 0;
fail:
	if (conf != NULL)
		config_free(conf);
	return (rc);
}

/* Close the connection, free the TLS context and forget the token. */
static void
ctl_close(struct ctl *ctl)
{
	if (ctl->c_conn != NULL)
		evhttp_connection_free(ctl->c_conn);
	if (ctl->c_base != NULL)
		event_base_free(ctl->c_base);
	ctl->c_conn = NULL;
	ctl->c_base = NULL;
	SSL_CTX_free(ctl->c_ssl_ctx);
	ctl->c_ssl_ctx = NULL;
	sk_X509_pop_free(ctl->c_pins, X509_free);
	ctl->c_pins = NULL;
	free(ctl->c_pin_conf);
	ctl->c_pin_conf = NULL;
	explicit_bzero(ctl->c_auth, sizeof(ctl->c_auth));
}

/* --- HTTP ---------------------------------------------------------------- */

/* evhttp's error callback: remember why the request failed. */
static void
reply_error(enum evhttp_request_error error, void *arg)
{
	struct reply	*rp = arg;

	rp->r_failed = 1;
	rp->r_error = error;
}

/*
 * evhttp's completion callback.  req is NULL after an error (reply_error
 * ran first), and has response code 0 when the connection could not be
 * made.  The body is copied out: evhttp frees req when this returns.
 */
static void
reply_done(struct evhttp_request *req, void *arg)
{
	struct reply	*rp = arg;
	struct evbuffer	*buf;
	size_t		 n;

	rp->r_done = 1;
	event_base_loopbreak(rp->r_base);
	if (req == NULL || evhttp_request_get_response_code(req) == 0)
		return;
	buf = evhttp_request_get_input_buffer(req);
	n = evbuffer_get_length(buf);
	if ((rp->r_body = malloc(n + 1)) == NULL) {
		rp->r_failed = 1;
		rp->r_error = EVREQ_HTTP_BUFFER_ERROR;
		return;
	}
	if (evbuffer_remove(buf, rp->r_body, n) != (int)n) {
		free(rp->r_body);
		rp->r_body = NULL;
		rp->r_failed = 1;
		rp->r_error = EVREQ_HTTP_BUFFER_ERROR;
		return;
	}
	rp->r_body[n] = '\0';
	rp->r_bodylen = n;
	rp->r_status = evhttp_request_get_response_code(req);
}

/*
 * Why a connection could not be made.  evhttp reports a failed connect
 * only as a request without an answer (it closes the socket, and errno
 * with it, before calling back), so connect once more, alone, to learn
 * the reason.  NULL if this attempt succeeds.
 */
static const char *
probe_connect(const struct ctl *ctl)
{
	const struct sockaddr_storage	*ss = &ctl->c_addrs[ctl->c_cur];
	struct pollfd			 pfd;
	socklen_t			 len = sizeof(int);
	int				 fd, e = 0;

	if ((fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0)) == -1)
		return (strerror(errno));
	if (connect(fd, (const struct sockaddr *)ss,
	    ctl->c_addrlens[ctl->c_cur]) == -1) {
		e = errno;
		if (e == EINPROGRESS) {
			pfd.fd = fd;
			pfd.events = POLLOUT;
			e = 0;
			if (poll(&pfd, 1, CTL_TIMEOUT * 1000) == 0)
				e = ETIMEDOUT;
			else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e,
			    &len) == -1)
				e = errno;
		}
	}
	close(fd);
	return (e != 0 ? strerror(e) : NULL);
}

/* The reason a request brought no answer. */
static void
reply_failure(const struct ctl *ctl, const struct reply *rp, char *err,
    size_t errlen)
{
	const char	*why;
	char		 buf[160];
	unsigned long	 e;

	if (ctl->c_tlserr[0] != '\0') {
		snprintf(err, errlen, "cannot verify the admin API at %s: %s",
		    ctl->c_url, ctl->c_tlserr);
		return;
	}
	/* Another TLS failure: OpenSSL's first reason, kept by libevent. */
	if (ctl->c_tls && ctl->c_conn != NULL && (e =
	    bufferevent_get_openssl_error(evhttp_connection_get_bufferevent(
	    ctl->c_conn))) != 0) {
		why = ERR_reason_error_string(e);
		snprintf(buf, sizeof(buf), "TLS error: %s", why != NULL ?
		    why : "(no reason)");
		why = buf;
	} else if (!rp->r_failed) {
		if ((why = probe_connect(ctl)) == NULL)
			why = "the connection closed before an answer";
	} else if (rp->r_error == EVREQ_HTTP_TIMEOUT) {
		snprintf(buf, sizeof(buf), "no answer within %d s",
		    CTL_TIMEOUT);
		why = buf;
	} else if (rp->r_error == EVREQ_HTTP_EOF)
		why = "the connection closed before an answer";
	else if (rp->r_error == EVREQ_HTTP_DATA_TOO_LONG)
		why = "the answer is too large";
	else
		why = "the answer is not valid HTTP";
	snprintf(err, errlen, "cannot reach the admin API at %s: %s",
	    ctl->c_url, why);
}

/*
 * Send one request (body: JSON text or NULL) on the current connection
 * and run the event loop until it ends; the outcome is in rp.  -1 only if
 * it could not be sent.
 */
static int
http_send(struct ctl *ctl, enum evhttp_cmd_type type, const char *uri,
    const char *body, struct reply *rp, char *err, size_t errlen)
{
	struct evhttp_request	*req;
	struct evkeyvalq	*h;
	char			 len[24];

	memset(rp, 0, sizeof(*rp));
	rp->r_base = ctl->c_base;
	if ((req = evhttp_request_new(reply_done, rp)) == NULL)
		goto nomem;
	evhttp_request_set_error_cb(req, reply_error);
	h = evhttp_request_get_output_headers(req);
	snprintf(len, sizeof(len), "%zu", body != NULL ? strlen(body) : 0);
	if (evhttp_add_header(h, "Host", ctl->c_hosthdr) == -1 ||
	    evhttp_add_header(h, "Authorization", ctl->c_auth) == -1 ||
	    evhttp_add_header(h, "Accept", "application/json") == -1 ||
	    evhttp_add_header(h, "User-Agent", "keygatectl/"
	    PACKAGE_VERSION) == -1 ||
	    (body != NULL && (evhttp_add_header(h, "Content-Type",
	    ctl->c_ctype != NULL ? ctl->c_ctype : "application/json") == -1 ||
	    evhttp_add_header(h, "Content-Length", len) == -1 ||
	    evbuffer_add(evhttp_request_get_output_buffer(req), body,
	    strlen(body)) == -1))) {
		evhttp_request_free(req);
		goto nomem;
	}
	/* On failure evhttp_make_request() has freed req. */
	if (evhttp_make_request(ctl->c_conn, req, type, uri) == -1) {
		snprintf(err, errlen, "cannot send a request to %s",
		    ctl->c_url);
		return (-1);
	}
	if (!rp->r_done)
		event_base_dispatch(ctl->c_base);
	return (0);
nomem:
	snprintf(err, errlen, "out of memory");
	return (-1);
}

/*
 * One request and its answer: 0 with the status and body in rp, or -1
 * with a reason.  When the connection cannot be made (an answer with
 * status 0 and no evhttp error), nothing was sent, so the request is
 * safely tried again on the host's next address.
 */
static int
http_exchange(struct ctl *ctl, enum evhttp_cmd_type type, const char *uri,
    const char *body, struct reply *rp, char *err, size_t errlen)
{
	for (;;) {
		if (http_send(ctl, type, uri, body, rp, err, errlen) == -1)
			return (-1);
		if (rp->r_status != 0)
			return (0);
		if (rp->r_failed || ctl->c_tlserr[0] != '\0' ||
		    ctl->c_cur + 1 >= ctl->c_naddrs)
			break;
		ctl->c_cur++;
		if (conn_new(ctl, err, errlen) == -1)
			return (-1);
	}
	reply_failure(ctl, rp, err, errlen);
	return (-1);
}

/*
 * "CODE: message" from an API error body {"error": ..., "message": ...},
 * on one line; or the bare status when the body is not one.
 */
static void
api_error(const struct ctl *ctl, const struct reply *rp, char *err,
    size_t errlen)
{
	json_t		*j;
	const char	*code = NULL, *msg = NULL;
	char		*p;

	j = json_loadb(rp->r_body, rp->r_bodylen, 0, NULL);
	if (json_is_object(j)) {
		code = json_string_value(json_object_get(j, "error"));
		msg = json_string_value(json_object_get(j, "message"));
	}
	if (code != NULL)
		snprintf(err, errlen, "%s: %s", code, msg != NULL ? msg :
		    "(no message)");
	else
		snprintf(err, errlen, "unexpected answer from the admin API "
		    "at %s: HTTP %d", ctl->c_url, rp->r_status);
	json_decref(j);
	for (p = err; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
}

/*
 * One API call.  The body, if any, is sent as JSON.  When the answer has
 * the expected status, 0 with its JSON object in *out (NULL for 204);
 * otherwise -1 with the API's "CODE: message" or why no answer came.
 */
static int
api_call(struct ctl *ctl, enum evhttp_cmd_type type, const char *uri,
    const json_t *body, int want, json_t **out, char *err, size_t errlen)
{
	struct reply	 r;
	json_error_t	 jerr;
	char		*text = NULL;
	int		 rc = -1;

	*out = NULL;
	if (body != NULL && (text = json_dumps(body, JSON_COMPACT)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return (-1);
	}
	rc = http_exchange(ctl, type, uri, text, &r, err, errlen);
	free(text);
	if (rc == -1)
		return (-1);
	rc = -1;
	if (r.r_status != want)
		api_error(ctl, &r, err, errlen);
	else if (want == 204)
		rc = 0;
	else if ((*out = json_loadb(r.r_body, r.r_bodylen, 0, &jerr)) == NULL ||
	    !json_is_object(*out)) {
		snprintf(err, errlen, "the admin API at %s answered with "
		    "invalid JSON", ctl->c_url);
		json_decref(*out);
		*out = NULL;
	} else
		rc = 0;
	free(r.r_body);
	return (rc);
}

/* "/v1/keys/ID" plus suffix, with ID percent-encoded; malloc'ed. */
static char *
key_uri(const char *id, const char *suffix)
{
	char	*enc, *uri;

	if ((enc = evhttp_uriencode(id, -1, 0)) == NULL)
		return (NULL);
	if (asprintf(&uri, "/v1/keys/%s%s", enc, suffix) == -1)
		uri = NULL;
	free(enc);
	return (uri);
}

/* --- output --------------------------------------------------------------- */

/* The JSON as the API sent it, indented, on stdout. */
static void
print_json(const json_t *j)
{
	char	*s;

	if ((s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER)) ==
	    NULL) {
		warnmsg("out of memory");
		return;
	}
	puts(s);
	free(s);
}

/* One "name: value" line, values aligned. */
static void
print_field(const char *name, const char *value)
{
	int	 pad = CTL_LABEL_WIDTH - 1 - (int)strlen(name);

	printf("%s:%*s", name, pad > 1 ? pad : 1, "");
	put_clean(stdout, value);
	putchar('\n');
}

/* A string member, or dflt when it is missing, null or empty. */
static const char *
key_str(const json_t *key, const char *name, const char *dflt)
{
	const char	*s = json_string_value(json_object_get(key, name));

	return (s != NULL && *s != '\0' ? s : dflt);
}

/* The scopes joined with commas, as --scope takes them, or "-". */
static void
key_scopes(const json_t *key, char *buf, size_t len)
{
	const json_t	*v;
	size_t		 i, off = 0;
	int		 n;

	buf[0] = '\0';
	json_array_foreach(json_object_get(key, "scopes"), i, v) {
		n = snprintf(buf + off, len - off, "%s%s", off > 0 ? "," : "",
		    json_string_value(v) != NULL ? json_string_value(v) : "?");
		if (n < 0 || (size_t)n >= len - off)
			break;
		off += (size_t)n;
	}
	if (buf[0] == '\0')
		snprintf(buf, len, "-");
}

/* active, disabled or expired (expires_at at or before now). */
static const char *
key_state(const json_t *key, int64_t now)
{
	const char	*exp;
	int64_t		 t;

	if (json_is_true(json_object_get(key, "disabled")))
		return ("disabled");
	exp = json_string_value(json_object_get(key, "expires_at"));
	if (exp != NULL && parse_time_ms(exp, &t) == 0 && t <= now)
		return ("expired");
	return ("active");
}

/* rate_limit as --rate takes it: "1s=N,10s=default,60s=N", or "default". */
static void
key_rate(const json_t *key, char *buf, size_t len)
{
	const json_t	*rl = json_object_get(key, "rate_limit"), *v;
	size_t		 off = 0;
	int		 i, n;
	char		 num[24];

	if (!json_is_object(rl)) {
		snprintf(buf, len, "default");
		return;
	}
	for (i = 0; i < 3; i++) {
		v = json_object_get(rl, rate_members[i]);
		if (json_is_integer(v))
			snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
			    json_integer_value(v));
		else
			snprintf(num, sizeof(num), "default");
		n = snprintf(buf + off, len - off, "%s%s=%s", i > 0 ? "," : "",
		    rate_windows[i], num);
		if (n < 0 || (size_t)n >= len - off)
			break;
		off += (size_t)n;
	}
}

/* A key object as a "field: value" list. */
static void
print_key(const json_t *key, int64_t now)
{
	char	 buf[2048];

	print_field("id", key_str(key, "id", "?"));
	print_field("name", key_str(key, "name", "-"));
	print_field("owner", key_str(key, "owner", "?"));
	print_field("app_id", key_str(key, "app_id", "-"));
	print_field("prefix", key_str(key, "prefix", "?"));
	print_field("hint", key_str(key, "hint", "?"));
	key_scopes(key, buf, sizeof(buf));
	print_field("scopes", buf);
	print_field("state", key_state(key, now));
	print_field("created_at", key_str(key, "created_at", "?"));
	print_field("updated_at", key_str(key, "updated_at", "?"));
	print_field("expires_at", key_str(key, "expires_at", "never"));
	key_rate(key, buf, sizeof(buf));
	print_field("rate_limit", buf);
	if (json_string_value(json_object_get(key, "grace_until")) != NULL)
		print_field("grace_until", key_str(key, "grace_until", "?"));
	print_field("last_used_at", key_str(key, "last_used_at", "never"));
}

/* A key: the API's JSON with --json, else the field list. */
static void
print_key_any(const struct ctl *ctl, const json_t *key)
{
	if (ctl->c_json)
		print_json(key);
	else
		print_key(key, util_now_ms());
}

/*
 * A key with its new secret (create, regenerate), then the warning.  The
 * secret comes last, on a line of its own, "secret: live_...", for people
 * to copy and for scripts to grep.
 */
static void
print_key_secret(const struct ctl *ctl, const json_t *key)
{
	print_key_any(ctl, key);
	if (!ctl->c_json) {
		printf("secret: ");
		put_clean(stdout, key_str(key, "secret", "?"));
		putchar('\n');
	}
	fflush(stdout);
	warnmsg("store this secret now: it will not be shown again");
}

/* --- building request bodies ---------------------------------------- */

/* Add each name of a comma list to the scopes array, spaces trimmed. */
static int
add_scopes(struct ctl *ctl, json_t *scopes, const char *list)
{
	const char	*p = list, *end;
	size_t		 len;

	for (;;) {
		p += strspn(p, " ");
		end = p + strcspn(p, ",");
		len = (size_t)(end - p);
		while (len > 0 && p[len - 1] == ' ')
			len--;
		if (len == 0)
			return (usage_error(ctl, "empty scope name in \"%s\"",
			    list));
		if (json_array_append_new(scopes, json_stringn(p, len)) == -1)
			return (usage_error(ctl, "the scope \"%s\" is not "
			    "valid UTF-8", list));
		if (*end == '\0')
			return (0);
		p = end + 1;
	}
}

/*
 * --expires: "never" (null), "+N" with a unit s, m, h or d (that long
 * from now), or an RFC 3339 time as the API takes it (admin_parse_time),
 * in the future.  Anything else is refused here, like a bad --rate.
 */
static int
parse_expires(struct ctl *ctl, const char *s, json_t **out)
{
	static const struct { char u; int64_t ms; } units[] = {
		{ 's', 1000 }, { 'm', 60000 }, { 'h', 3600000 },
		{ 'd', 86400000 }, { 0, 0 }
	};
	char		 num[24], buf[40];
	size_t		 len;
	uint64_t	 n;
	int64_t		 t;
	int		 i;

	if (strcmp(s, "never") == 0) {
		*out = json_null();
		return (0);
	}
	if (s[0] != '+' && admin_parse_time(s, &t) == 0) {
		if (t <= util_now_ms())
			return (usage_error(ctl, "bad --expires \"%s\" (the "
			    "time is in the past)", s));
		if ((*out = json_string(s)) != NULL)
			return (0);
	}
	len = s[0] == '+' ? strlen(s + 1) : 0;
	for (i = 0; len > 1 && len < sizeof(num) && units[i].u != 0; i++)
		if (s[len] == units[i].u) {
			memcpy(num, s + 1, len - 1);
			num[len - 1] = '\0';
			if (parse_uint(num, (uint64_t)INT64_MAX /
			    units[i].ms / 2, &n) == -1 || n == 0)
				break;
			util_rfc3339_ms(buf, sizeof(buf), util_now_ms() +
			    (int64_t)n * units[i].ms);
			*out = json_string(buf);
			return (0);
		}
	return (usage_error(ctl, "bad --expires \"%s\" (expected an RFC 3339 "
	    "time, +N followed by s, m, h or d, or never)", s));
}

/*
 * --rate: "default" (null), or windows "1s=N,10s=N,60s=N" in any order
 * and number; a window not given is null (the daemon's default).
 */
static int
parse_rate(struct ctl *ctl, const char *s, json_t **out)
{
	json_t		*rl;
	char		 item[64], *eq;
	const char	*p = s;
	size_t		 len;
	uint64_t	 n;
	int		 i;

	*out = NULL;
	if (strcmp(s, "default") == 0) {
		*out = json_null();
		return (0);
	}
	rl = json_pack("{s:n,s:n,s:n}", rate_members[0],
	    rate_members[1], rate_members[2]);
	for (;;) {
		len = strcspn(p, ",");
		if (len >= sizeof(item))
			goto bad;
		memcpy(item, p, len);
		item[len] = '\0';
		if ((eq = strchr(item, '=')) == NULL)
			goto bad;
		*eq++ = '\0';
		for (i = 0; i < 3 && strcmp(item, rate_windows[i]) != 0; i++)
			;
		if (i == 3 ||
		    !json_is_null(json_object_get(rl, rate_members[i])) ||
		    parse_uint(eq, (uint64_t)1 << 53, &n) == -1)
			goto bad;
		json_object_set_new(rl, rate_members[i],
		    json_integer((json_int_t)n));
		if (p[len] == '\0')
			break;
		p += len + 1;
	}
	*out = rl;
	return (0);
bad:
	json_decref(rl);
	return (usage_error(ctl, "bad --rate \"%s\" (expected 1s=N,10s=N,60s=N "
	    "with any of the windows, or default)", s));
}

/* body[member] = value, which must be valid UTF-8 for JSON. */
static int
set_string(struct ctl *ctl, json_t *body, const char *member,
    const char *value)
{
	json_t	*v;

	if ((v = json_string(value)) == NULL)
		return (usage_error(ctl, "the value for %s is not valid UTF-8",
		    member));
	json_object_set_new(body, member, v);
	return (0);
}

/* The one ID argument left after the options, or NULL after a message. */
static const char *
one_arg(struct ctl *ctl, int argc, char **argv, const char *what)
{
	if (optind >= argc) {
		usage_error(ctl, "missing %s", what);
		return (NULL);
	}
	if (optind + 1 < argc) {
		usage_error(ctl, "unexpected argument \"%s\"",
		    argv[optind + 1]);
		return (NULL);
	}
	return (argv[optind]);
}

/* Open the connection, then make one call; prints the error itself. */
static int
run_call(struct ctl *ctl, enum evhttp_cmd_type type, const char *uri,
    const json_t *body, int want, json_t **out)
{
	char	 err[CTL_ERRLEN];

	*out = NULL;
	if (uri == NULL) {
		warnmsg("out of memory");
		return (-1);
	}
	if ((ctl->c_base == NULL && ctl_open(ctl, err, sizeof(err)) == -1) ||
	    api_call(ctl, type, uri, body, want, out, err, sizeof(err)) ==
	    -1) {
		warnmsg("%s", err);
		return (-1);
	}
	return (0);
}

/* One call about key id (uri "/v1/keys/ID" + suffix); as run_call(). */
static int
key_call(struct ctl *ctl, enum evhttp_cmd_type type, const char *id,
    const char *suffix, const json_t *body, int want, json_t **out)
{
	char	*uri = key_uri(id, suffix);
	int	 rc;

	rc = run_call(ctl, type, uri, body, want, out);
	free(uri);
	return (rc);
}

/* --- commands ---------------------------------------------------------- */

static int	 read_secret(char *, size_t);

/* create: POST /v1/keys; prints the key and its secret. */
static int
cmd_create(struct ctl *ctl, int argc, char **argv)
{
	static const struct option	 lo[] = {
		{ "owner", required_argument, NULL, 'o' },
		{ "name", required_argument, NULL, 'n' },
		{ "app", required_argument, NULL, 'a' },
		{ "scope", required_argument, NULL, 's' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "expires", required_argument, NULL, 'e' },
		{ "disabled", no_argument, NULL, 'd' },
		{ "rate", required_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ "secret-stdin", no_argument, NULL, 'S' },
		{ "secret-sha256", required_argument, NULL, 'H' },
		{ NULL, 0, NULL, 0 }
	};
	static const char *const	 member[128] = { ['o'] = "owner",
		['n'] = "name", ['a'] = "app_id", ['p'] = "prefix",
		['H'] = "secret_sha256" };
	json_t				*body, *scopes, *v, *key = NULL;
	char				 secret[CTL_SECRET_MAX + 2];
	int				 ch, rc = EXIT_USAGE, byo = 0;

	body = json_object();
	scopes = json_array();
	while ((ch = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
		v = NULL;
		if (ch > 0 && ch < 128 && member[ch] != NULL) {
			if (set_string(ctl, body, member[ch], optarg) != 0)
				goto done;
		} else if (ch == 's') {
			if (add_scopes(ctl, scopes, optarg) != 0)
				goto done;
		} else if (ch == 'd')
			json_object_set_new(body, "disabled", json_true());
		else if (ch == 'S')
			byo = 1;
		else if (ch == 'e' || ch == 'r') {
			if ((ch == 'e' ? parse_expires(ctl, optarg, &v) :
			    parse_rate(ctl, optarg, &v)) != 0)
				goto done;
			json_object_set_new(body, ch == 'e' ? "expires_at" :
			    "rate_limit", v);
		} else if (opt_common(ctl, ch, argv) != 0)
			goto done;
	}
	if (optind < argc) {
		rc = usage_error(ctl, "unexpected argument \"%s\"",
		    argv[optind]);
		goto done;
	}
	if (json_object_get(body, "owner") == NULL) {
		rc = usage_error(ctl, "--owner is required");
		goto done;
	}
	if (json_array_size(scopes) > 0)
		json_object_set(body, "scopes", scopes);
	rc = EXIT_FAIL;
	/* The secret from standard input, so that it does not show in ps. */
	if (byo) {
		if (read_secret(secret, sizeof(secret)) == -1)
			goto done;
		v = json_string(secret);
		explicit_bzero(secret, sizeof(secret));
		if (v == NULL) {
			warnmsg("create: the secret is not valid UTF-8");
			goto done;
		}
		json_object_set_new(body, "secret", v);
	}
	if (run_call(ctl, EVHTTP_REQ_POST, "/v1/keys", body, 201, &key) == 0) {
		if (json_object_get(key, "secret") != NULL)
			print_key_secret(ctl, key);
		else
			print_key_any(ctl, key);
		rc = 0;
	}
done:
	json_decref(key);
	json_decref(scopes);
	json_decref(body);
	return (rc);
}

/* list's filters: the query parameters of GET /v1/keys, by LF_*. */
enum { LF_OWNER, LF_APP, LF_TEXT, LF_STATE, LF_OLDER, LF_UNUSED, LF_N };
static const char *const list_filters[LF_N] = {
	"owner", "app_id", "q", "state", "older_than", "unused"
};

/*
 * Fetch one page of GET /v1/keys into *page.  cursor may be NULL (the
 * start); filt[LF_*] are the filters, NULL: none.
 */
static int
list_page(struct ctl *ctl, const char *const filt[LF_N], const char *limit,
    const char *cursor, json_t **page)
{
	struct evbuffer	*b;
	const char	*names[LF_N + 2], *values[LF_N + 2];
	char		*enc, *uri = NULL;
	size_t		 i;
	int		 rc, sep = '?';

	for (i = 0; i < LF_N; i++) {
		names[i] = list_filters[i];
		values[i] = filt[i];
	}
	names[LF_N] = "limit";
	values[LF_N] = limit;
	names[LF_N + 1] = "cursor";
	values[LF_N + 1] = cursor;

	*page = NULL;
	if ((b = evbuffer_new()) == NULL) {
		warnmsg("out of memory");
		return (-1);
	}
	evbuffer_add_printf(b, "/v1/keys");
	for (i = 0; i < nitems(names); i++) {
		if (values[i] == NULL)
			continue;
		if ((enc = evhttp_uriencode(values[i], -1, 0)) == NULL)
			goto done;
		evbuffer_add_printf(b, "%c%s=%s", sep, names[i], enc);
		free(enc);
		sep = '&';
	}
	if ((uri = malloc(evbuffer_get_length(b) + 1)) != NULL) {
		evbuffer_copyout(b, uri, evbuffer_get_length(b));
		uri[evbuffer_get_length(b)] = '\0';
	}
done:
	evbuffer_free(b);
	rc = run_call(ctl, EVHTTP_REQ_GET, uri, NULL, 200, page);
	free(uri);
	if (rc == 0 && !json_is_array(json_object_get(*page, "keys"))) {
		warnmsg("the admin API at %s answered without a key list",
		    ctl->c_url);
		json_decref(*page);
		*page = NULL;
		rc = -1;
	}
	return (rc);
}

#define TABLE_NCOL	8	/* columns of list */
#define TABLE_MAXCOL	8	/* of any table */

/* The cells of one key's row of the list table, malloc'ed. */
static void
table_row(const json_t *key, int64_t now, char **cells)
{
	char		 scopes[2048];
	const char	*row[TABLE_NCOL];
	size_t		 c;

	key_scopes(key, scopes, sizeof(scopes));
	row[0] = key_str(key, "id", "?");
	row[1] = key_str(key, "owner", "?");
	row[2] = key_str(key, "app_id", "-");
	row[3] = key_str(key, "name", "-");
	row[4] = scopes;
	row[5] = key_str(key, "hint", "?");
	row[6] = key_state(key, now);
	row[7] = key_str(key, "last_used_at", "never");
	for (c = 0; c < TABLE_NCOL; c++)
		cells[c] = strdup(row[c]);
}

/*
 * Print and free a table from table_new(): n rows (the header first) of
 * ncol (at most TABLE_MAXCOL) malloc'ed cells each (NULL prints as "?"),
 * each column as wide as its widest cell (in characters, not bytes) plus
 * two spaces.
 */
static void
print_table(char **cells, size_t n, size_t ncol)
{
	size_t		 width[TABLE_MAXCOL], i;
	const char	*cell;

	memset(width, 0, sizeof(width));
	for (i = 0; i < n * ncol; i++)
		if (cells[i] != NULL && text_width(cells[i]) > width[i % ncol])
			width[i % ncol] = text_width(cells[i]);
	for (i = 0; i < n * ncol; i++) {
		cell = cells[i] != NULL ? cells[i] : "?";
		put_clean(stdout, cell);
		if (i % ncol + 1 < ncol)
			printf("%*s", (int)(width[i % ncol] - text_width(cell) +
			    2), "");
		else
			putchar('\n');
		free(cells[i]);
	}
	free(cells);
}

/*
 * The cells of a table of nrow rows (the header included) and ncol
 * columns, the first row holding head; NULL (said) when out of memory.
 * print_table() prints and frees them.
 */
static char **
table_new(const char *const *head, size_t ncol, size_t nrow)
{
	char	**cells;
	size_t	  c;

	if ((cells = calloc(nrow * ncol, sizeof(*cells))) == NULL) {
		warnmsg("out of memory");
		return (NULL);
	}
	for (c = 0; c < ncol; c++)
		cells[c] = strdup(head[c]);
	return (cells);
}

/* The table of list: a header and one row per key. */
static void
print_key_table(const json_t *keys, int64_t now)
{
	static const char *const	 head[TABLE_NCOL] = { "ID", "OWNER",
		"APP", "NAME", "SCOPES", "HINT", "STATE", "LAST USED" };
	size_t				 n, i;
	char				**cells;

	n = json_array_size(keys) + 1;
	if ((cells = table_new(head, TABLE_NCOL, n)) == NULL)
		return;
	for (i = 1; i < n; i++)
		table_row(json_array_get(keys, i - 1), now,
		    cells + i * TABLE_NCOL);
	print_table(cells, n, TABLE_NCOL);
}

/*
 * Follow next_cursor from cursor (NULL: the start) until the end, adding
 * every page's keys to all.  A cursor that repeats would loop forever, so
 * it is an error.
 */
static int
list_all(struct ctl *ctl, const char *const filt[LF_N], const char *cursor,
    json_t *all)
{
	json_t		*page = NULL;
	const char	*next;
	char		*cur = cursor != NULL ? strdup(cursor) : NULL;
	char		 max[16];
	int		 rc = -1;

	snprintf(max, sizeof(max), "%d", ADMIN_LIST_MAX);
	for (;;) {
		if (list_page(ctl, filt, max, cur, &page) == -1)
			break;
		json_array_extend(all, json_object_get(page, "keys"));
		next = json_string_value(json_object_get(page, "next_cursor"));
		if (next == NULL) {
			rc = 0;
			break;
		}
		if (cur != NULL && strcmp(next, cur) == 0) {
			warnmsg("the admin API at %s repeated the cursor "
			    "\"%s\"", ctl->c_url, next);
			break;
		}
		free(cur);
		if ((cur = strdup(next)) == NULL)
			break;
		json_decref(page);
		page = NULL;
	}
	json_decref(page);
	free(cur);
	return (rc);
}

/* Print what list got: the JSON, or the table (and how to go on). */
static void
list_print(const struct ctl *ctl, const json_t *page)
{
	const char	*next;

	if (ctl->c_json) {
		print_json(page);
		return;
	}
	print_key_table(json_object_get(page, "keys"), util_now_ms());
	next = json_string_value(json_object_get(page, "next_cursor"));
	if (next != NULL) {
		fflush(stdout);
		warnmsg("more keys follow: continue with --cursor %s", next);
	}
}

/*
 * list: GET /v1/keys.  With --limit, one page of that many keys; without,
 * every page until next_cursor is null, printed as one list.
 */
static int
cmd_list(struct ctl *ctl, int argc, char **argv)
{
	static const struct option	 lo[] = {
		{ "owner", required_argument, NULL, 'o' },
		{ "app", required_argument, NULL, 'a' },
		{ "search", required_argument, NULL, 's' },
		{ "state", required_argument, NULL, 'S' },
		{ "older-than", required_argument, NULL, 'O' },
		{ "unused", required_argument, NULL, 'U' },
		{ "limit", required_argument, NULL, 'l' },
		{ "cursor", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 }
	};
	static const char		 flt[LF_N] = "oasSOU";
	const char			*filt[LF_N] = { NULL };
	const char			*limit = NULL, *cursor = NULL, *f;
	json_t				*page = NULL;
	uint64_t			 n;
	int				 ch, rc;

	while ((ch = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
		if (ch != 0 && (f = memchr(flt, ch, LF_N)) != NULL)
			filt[f - flt] = optarg;	/* the API checks them */
		else if (ch == 'l') {
			if (parse_uint(optarg, ADMIN_LIST_MAX, &n) == -1 ||
			    n == 0)
				return (usage_error(ctl, "bad --limit \"%s\" "
				    "(expected a number from 1 to %d)", optarg,
				    ADMIN_LIST_MAX));
			limit = optarg;
		} else if (ch == 'c')
			cursor = optarg;
		else if ((rc = opt_common(ctl, ch, argv)) != 0)
			return (rc);
	}
	if (optind < argc)
		return (usage_error(ctl, "unexpected argument \"%s\"",
		    argv[optind]));
	if (limit != NULL)
		rc = list_page(ctl, filt, limit, cursor, &page);
	else {
		page = json_pack("{s:[],s:n}", "keys", "next_cursor");
		rc = list_all(ctl, filt, cursor, json_object_get(page, "keys"));
	}
	if (rc == 0)
		list_print(ctl, page);
	json_decref(page);
	return (rc == 0 ? 0 : EXIT_FAIL);
}

/*
 * The commands that take only an ID (and --json): show, delete, usage.
 * Parses the arguments; the ID, or NULL with *rc set.
 */
static const char *
id_only(struct ctl *ctl, int argc, char **argv, int *rc)
{
	static const struct option	 lo[] = {
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 }
	};
	int				 ch;

	*rc = EXIT_USAGE;
	while ((ch = getopt_long(argc, argv, ":", lo, NULL)) != -1)
		if (opt_common(ctl, ch, argv) != 0)
			return (NULL);
	return (one_arg(ctl, argc, argv, "key id"));
}

/* show: GET /v1/keys/ID. */
static int
cmd_show(struct ctl *ctl, int argc, char **argv)
{
	const char	*id;
	json_t		*key;
	int		 rc;

	if ((id = id_only(ctl, argc, argv, &rc)) == NULL)
		return (rc);
	if (key_call(ctl, EVHTTP_REQ_GET, id, "", NULL, 200, &key) == -1)
		return (EXIT_FAIL);
	print_key_any(ctl, key);
	json_decref(key);
	return (0);
}

/* update's options into a PATCH body; 0, or the exit status. */
static int
update_body(struct ctl *ctl, int argc, char **argv, json_t *body)
{
	static const struct option	 lo[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "scope", required_argument, NULL, 's' },
		{ "no-scopes", no_argument, NULL, 'S' },
		{ "expires", required_argument, NULL, 'e' },
		{ "disable", no_argument, NULL, 'd' },
		{ "enable", no_argument, NULL, 'E' },
		{ "rate", required_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 }
	};
	json_t				*v, *scopes = NULL, *dis = NULL;
	int				 ch, noscopes = 0, rc = 0;

	while (rc == 0 && (ch = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
		v = NULL;
		if (ch == 'n')
			rc = set_string(ctl, body, "name", optarg);
		else if (ch == 's') {
			if (scopes == NULL)
				scopes = json_array();
			rc = add_scopes(ctl, scopes, optarg);
		} else if (ch == 'S')
			noscopes = 1;
		else if (ch == 'd' || ch == 'E') {
			if (dis != NULL && json_is_true(dis) != (ch == 'd'))
				rc = usage_error(ctl, "--disable and --enable "
				    "contradict each other");
			dis = ch == 'd' ? json_true() : json_false();
		} else if (ch == 'e' || ch == 'r') {
			if ((rc = ch == 'e' ? parse_expires(ctl, optarg, &v) :
			    parse_rate(ctl, optarg, &v)) == 0)
				json_object_set_new(body, ch == 'e' ?
				    "expires_at" : "rate_limit", v);
		} else
			rc = opt_common(ctl, ch, argv);
	}
	if (rc == 0 && scopes != NULL && noscopes)
		rc = usage_error(ctl, "--scope and --no-scopes contradict "
		    "each other");
	if (rc == 0 && (scopes != NULL || noscopes))
		json_object_set_new(body, "scopes", noscopes ? json_array() :
		    json_incref(scopes));
	if (rc == 0 && dis != NULL)
		json_object_set(body, "disabled", dis);
	json_decref(scopes);
	return (rc);
}

/* update: PATCH /v1/keys/ID with the fields given. */
static int
cmd_update(struct ctl *ctl, int argc, char **argv)
{
	json_t		*body = json_object(), *key = NULL;
	const char	*id;
	int		 rc;

	if ((rc = update_body(ctl, argc, argv, body)) != 0)
		goto done;
	rc = EXIT_USAGE;
	if ((id = one_arg(ctl, argc, argv, "key id")) == NULL)
		goto done;
	if (json_object_size(body) == 0) {
		usage_error(ctl, "nothing to change");
		goto done;
	}
	rc = EXIT_FAIL;
	if (key_call(ctl, EVHTTP_REQ_PATCH, id, "", body, 200, &key) == 0) {
		print_key_any(ctl, key);
		rc = 0;
	}
done:
	json_decref(key);
	json_decref(body);
	return (rc);
}

/* delete: DELETE /v1/keys/ID (204). */
static int
cmd_delete(struct ctl *ctl, int argc, char **argv)
{
	const char	*id;
	json_t		*none;
	int		 rc;

	if ((id = id_only(ctl, argc, argv, &rc)) == NULL)
		return (rc);
	if (key_call(ctl, EVHTTP_REQ_DELETE, id, "", NULL, 204, &none) == -1)
		return (EXIT_FAIL);
	if (ctl->c_json) {
		/* The API answers 204 without a body: say what was done. */
		if ((none = json_pack("{s:s, s:b}", "id", id, "deleted", 1)) !=
		    NULL)
			print_json(none);
		json_decref(none);
	} else {
		put_clean(stdout, id);
		printf(" deleted\n");
	}
	return (0);
}

/* regenerate: POST /v1/keys/ID/regenerate, optionally with a grace period. */
static int
cmd_regenerate(struct ctl *ctl, int argc, char **argv)
{
	static const struct option	 lo[] = {
		{ "grace", required_argument, NULL, 'g' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 }
	};
	json_t				*body, *key = NULL;
	const char			*id;
	uint64_t			 grace;
	int				 ch, rc = EXIT_USAGE;

	body = json_object();
	while ((ch = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
		if (ch == 'g') {
			if (parse_uint(optarg, UINT32_MAX, &grace) == -1) {
				usage_error(ctl, "bad --grace \"%s\" (expected "
				    "a number of seconds)", optarg);
				goto done;
			}
			json_object_set_new(body, "grace_seconds",
			    json_integer((json_int_t)grace));
		} else if (opt_common(ctl, ch, argv) != 0)
			goto done;
	}
	if ((id = one_arg(ctl, argc, argv, "key id")) == NULL)
		goto done;
	rc = EXIT_FAIL;
	if (key_call(ctl, EVHTTP_REQ_POST, id, "/regenerate", body, 200,
	    &key) == 0) {
		print_key_secret(ctl, key);
		rc = 0;
	}
done:
	json_decref(key);
	json_decref(body);
	return (rc);
}

#define USAGE_NCOL	6

/* An integer member as text in buf ("?" when it is not an integer). */
static char *
key_num(const json_t *o, const char *name, char *buf, size_t len)
{
	const json_t	*v = json_object_get(o, name);

	if (json_is_integer(v))
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT,
		    json_integer_value(v));
	else
		snprintf(buf, len, "?");
	return (buf);
}

/*
 * The rate limit windows of a usage answer as a table, one row per window
 * the API lists (only the header when none is enforced).
 */
static void
print_window_table(const json_t *windows)
{
	static const char *const	 head[USAGE_NCOL] = { "WINDOW", "LIMIT",
		"USED", "REMAINING", "RESET", "SOURCE" };
	static const char *const	 nums[] = { "limit", "used",
		"remaining", "reset" };
	const json_t			*w;
	size_t				 n, i, c;
	char				**cells, **row, num[24];

	n = json_array_size(windows) + 1;
	if ((cells = table_new(head, USAGE_NCOL, n)) == NULL)
		return;
	for (i = 1; i < n; i++) {
		w = json_array_get(windows, i - 1);
		row = cells + i * USAGE_NCOL;
		row[0] = strdup(key_str(w, "window", "?"));
		for (c = 0; c < sizeof(nums) / sizeof(nums[0]); c++)
			row[c + 1] = strdup(key_num(w, nums[c], num,
			    sizeof(num)));
		row[5] = strdup(key_str(w, "source", "?"));
	}
	print_table(cells, n, USAGE_NCOL);
}

/* usage's arguments: the ID, --history's value in *history (or NULL). */
static const char *
ctl_usage_args(struct ctl *ctl, int argc, char **argv, const char **history,
    int *rc)
{
	static const struct option	 lo[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "history", required_argument, NULL, 'H' },
		{ NULL, 0, NULL, 0 }
	};
	int				 ch;

	*rc = EXIT_USAGE;
	*history = NULL;
	while ((ch = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
		if (ch == 'H') {
			if (strcmp(optarg, "1h") != 0 &&
			    strcmp(optarg, "24h") != 0 &&
			    strcmp(optarg, "30d") != 0) {
				usage_error(ctl, "bad --history \"%s\" "
				    "(expected 1h, 24h or 30d)", optarg);
				return (NULL);
			}
			*history = optarg;
		} else if (opt_common(ctl, ch, argv) != 0)
			return (NULL);
	}
	return (one_arg(ctl, argc, argv, "key id"));
}

/*
 * A history's points as a sparkline of at most HIST_COLS columns, each
 * the sum of requests (admitted, rate limited and refused) of a run of
 * points, scaled to the busiest column: blank for none, then the lowest
 * block for the least traffic up to the full block for the most.  In a
 * UTF-8 locale the eight Unicode blocks, else nine ASCII characters.
 */
#define HIST_COLS	60
static void
ctl_sparkline(const json_t *pts, size_t n)
{
	static const char *const	 utf8[] = { " ", "\u2581", "\u2582",
		"\u2583", "\u2584", "\u2585", "\u2586", "\u2587", "\u2588" };
	static const char *const	 ascii[] = { " ", ".", ":", "-", "=",
		"+", "*", "#", "%", "@" };
	const char *const		*ramp;
	const json_t			*p;
	double				 col[HIST_COLS], max = 0;
	size_t				 per, ncol, i, levels;
	const char			*cs;
	int				 lvl;

	cs = setlocale(LC_CTYPE, "") != NULL ? nl_langinfo(CODESET) : "";
	if (strcmp(cs, "UTF-8") == 0) {
		ramp = utf8;
		levels = 8;
	} else {
		ramp = ascii;
		levels = 9;
	}
	per = (n + HIST_COLS - 1) / HIST_COLS;
	ncol = per > 0 ? (n + per - 1) / per : 0;
	memset(col, 0, sizeof(col));
	for (i = 0; i < n; i++) {
		p = json_array_get(pts, i);
		col[i / per] += (double)json_integer_value(json_object_get(p,
		    "admitted")) + (double)json_integer_value(json_object_get(p,
		    "rate_limited")) + (double)json_integer_value(
		    json_object_get(p, "refused"));
	}
	for (i = 0; i < ncol; i++)
		if (col[i] > max)
			max = col[i];
	fputs("requests |", stdout);
	for (i = 0; i < ncol; i++) {
		lvl = col[i] <= 0 ? 0 : 1 + (int)(col[i] / max *
		    (double)(levels - 1));
		fputs(ramp[lvl], stdout);
	}
	fputs("|\n", stdout);
}

/*
 * A history's points as a table of rows, each the sums of rowlen points
 * from the first: the start of the row, then the three counts.
 */
static void
ctl_hist_table(const json_t *pts, size_t n, size_t rowlen)
{
	static const char *const	 head[4] = { "FROM", "ADMITTED",
		"RATE_LIMITED", "REFUSED" };
	static const char *const	 names[3] = { "admitted",
		"rate_limited", "refused" };
	const json_t			*p;
	json_int_t			 sum[3];
	size_t				 nrow, r, i, c;
	char				**cells, buf[32];
	const char			*t;

	nrow = (n + rowlen - 1) / rowlen + 1;
	if ((cells = table_new(head, 4, nrow)) == NULL)
		return;
	for (r = 1; r < nrow; r++) {
		memset(sum, 0, sizeof(sum));
		t = NULL;
		for (i = (r - 1) * rowlen; i < r * rowlen && i < n; i++) {
			p = json_array_get(pts, i);
			if (t == NULL)
				t = key_str(p, "t", "?");
			for (c = 0; c < 3; c++)
				sum[c] += json_integer_value(json_object_get(p,
				    names[c]));
		}
		/* "2026-12-02T23:40:00.000Z" as "2026-12-02T23:40Z". */
		snprintf(buf, sizeof(buf), "%.16sZ", t != NULL ? t : "?");
		cells[r * 4] = strdup(buf);
		for (c = 0; c < 3; c++) {
			snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT,
			    sum[c]);
			cells[r * 4 + c + 1] = strdup(buf);
		}
	}
	print_table(cells, nrow, 4);
}

/*
 * usage --history: GET /v1/keys/ID/usage?history=W.  The totals as a
 * field list, the sparkline, then the table (or the answer with --json).
 */
static int
ctl_history(struct ctl *ctl, const char *id, const char *history)
{
	static const char *const	 names[3] = { "admitted",
		"rate_limited", "refused" };
	const json_t			*pts;
	json_t				*u;
	json_int_t			 sum[3];
	char				 suffix[64], buf[64];
	size_t				 n, i, c;

	snprintf(suffix, sizeof(suffix), "/usage?history=%s", history);
	if (key_call(ctl, EVHTTP_REQ_GET, id, suffix, NULL, 200, &u) == -1)
		return (EXIT_FAIL);
	if (ctl->c_json) {
		print_json(u);
		json_decref(u);
		return (0);
	}
	pts = json_object_get(u, "points");
	n = json_array_size(pts);
	memset(sum, 0, sizeof(sum));
	for (i = 0; i < n; i++)
		for (c = 0; c < 3; c++)
			sum[c] += json_integer_value(json_object_get(
			    json_array_get(pts, i), names[c]));
	print_field("id", key_str(u, "id", "?"));
	snprintf(buf, sizeof(buf), "%s (%zu points of %s)", history, n,
	    key_str(u, "resolution", "?"));
	print_field("history", buf);
	for (c = 0; c < 3; c++) {
		snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, sum[c]);
		print_field(names[c], buf);
	}
	putchar('\n');
	ctl_sparkline(pts, n);
	putchar('\n');
	/* 1h: 6 rows of 10 minutes; 24h: 24 of an hour; 30d: 30 of a day. */
	ctl_hist_table(pts, n, strcmp(history, "1h") == 0 ? 10 :
	    strcmp(history, "24h") == 0 ? 60 : 24);
	json_decref(u);
	return (0);
}

/*
 * usage: GET /v1/keys/ID/usage.  The counters as a field list, then, after
 * an empty line, the table of the rate limit windows.
 */
static int
cmd_usage(struct ctl *ctl, int argc, char **argv)
{
	const char	*id, *history;
	char		 num[24];
	json_t		*u;
	int		 rc;

	if ((id = ctl_usage_args(ctl, argc, argv, &history, &rc)) == NULL)
		return (rc);
	if (history != NULL)
		return (ctl_history(ctl, id, history));
	if (key_call(ctl, EVHTTP_REQ_GET, id, "/usage", NULL, 200, &u) == -1)
		return (EXIT_FAIL);
	if (ctl->c_json)
		print_json(u);
	else {
		print_field("id", key_str(u, "id", "?"));
		print_field("requests_allowed", key_num(u, "requests_allowed",
		    num, sizeof(num)));
		print_field("requests_refused", key_num(u, "requests_refused",
		    num, sizeof(num)));
		print_field("requests_rate_limited", key_num(u,
		    "requests_rate_limited", num, sizeof(num)));
		print_field("last_used_at", key_str(u, "last_used_at",
		    "never"));
		putchar('\n');
		print_window_table(json_object_get(u, "windows"));
	}
	json_decref(u);
	return (0);
}

/* The secret from the first line of standard input, newline removed. */
static int
read_secret(char *buf, size_t len)
{
	size_t	 n;

	if (fgets(buf, (int)len, stdin) == NULL) {
		warnmsg("no secret on standard input");
		return (-1);
	}
	n = strcspn(buf, "\n");
	if (buf[n] != '\n' && !feof(stdin)) {
		warnmsg("the secret on standard input is longer than "
		    "%d bytes", CTL_SECRET_MAX);
		return (-1);
	}
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	return (0);
}

/* What verify found, for people: a key's or a token's fields. */
static void
print_verify(const json_t *v)
{
	char	 buf[2048];

	print_field("valid", json_is_true(json_object_get(v, "valid")) ?
	    "yes" : "no");
	print_field("code", key_str(v, "code", "-"));
	if (json_object_get(v, "scheme") != NULL) {	/* a JWT */
		print_field("message", key_str(v, "message", "-"));
		print_field("provider", key_str(v, "provider", "-"));
		print_field("identity", key_str(v, "identity", "-"));
		print_field("issuer", key_str(v, "issuer", "-"));
		key_scopes(v, buf, sizeof(buf));
		print_field("scopes", buf);
		print_field("expires_at", key_str(v, "expires_at", "-"));
		return;
	}
	print_field("key_id", key_str(v, "key_id", "-"));
	print_field("owner", key_str(v, "owner", "-"));
	key_scopes(v, buf, sizeof(buf));
	print_field("scopes", buf);
	print_field("expires_at", key_str(v, "expires_at",
	    json_string_value(json_object_get(v, "key_id")) != NULL ?
	    "never" : "-"));
}

/*
 * Does s look like a JWT: three base64url segments (exactly two dots), the
 * first starting "eyJ" (base64url of '{"', every JOSE header)?  keygate's
 * own keys hold no dot, but a key imported from elsewhere may hold dots,
 * even two: one that fails this shape is sent as a key, and --key sends
 * any secret as a key.
 */
static int
is_jwt(const char *s)
{
	size_t	 i, dots = 0;

	if (strncmp(s, "eyJ", 3) != 0)
		return (0);
	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] == '.') {
			if (s[i + 1] == '.' || s[i + 1] == '\0')
				return (0);
			dots++;
		} else if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
			return (0);
	}
	return (dots == 2);
}

/*
 * verify: POST /v1/verify.  The secret, or a JWT, is an argument, or "-"
 * to read it from standard input (so that it does not show in ps).  Exits
 * 1 when it is not valid.
 */
static int
cmd_verify(struct ctl *ctl, int argc, char **argv)
{
	static const struct option	 lo[] = {
		{ "app", required_argument, NULL, 'a' },
		{ "json", no_argument, NULL, 'j' },
		{ "key", no_argument, NULL, 'k' },
		{ NULL, 0, NULL, 0 }
	};
	json_t				*body = json_object(), *v = NULL;
	const char			*arg;
	char				 secret[CTL_SECRET_MAX + 2];
	int				 ch, rc = EXIT_USAGE, jwt, key = 0;

	while ((ch = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
		if (ch == 'a') {
			if (set_string(ctl, body, "app_id", optarg) != 0)
				goto done;
		} else if (ch == 'k')
			key = 1;
		else if (opt_common(ctl, ch, argv) != 0)
			goto done;
	}
	if ((arg = one_arg(ctl, argc, argv, "secret (or - to read it from "
	    "standard input)")) == NULL)
		goto done;
	rc = EXIT_FAIL;
	if (strcmp(arg, "-") == 0 && read_secret(secret, sizeof(secret)) == -1)
		goto done;
	if (strcmp(arg, "-") == 0)
		arg = secret;
	jwt = !key && is_jwt(arg);
	if (jwt && json_object_get(body, "app_id") != NULL) {
		warnmsg("verify: --app goes with an API key, not a token "
		    "(--key sends a secret that looks like a JWT as a key)");
		explicit_bzero(secret, sizeof(secret));
		goto done;
	}
	json_object_set_new(body, jwt ? "token" : "key",
	    json_string(arg));
	explicit_bzero(secret, sizeof(secret));
	if (json_object_size(body) == 0 || (json_object_get(body, "key") ==
	    NULL && json_object_get(body, "token") == NULL)) {
		warnmsg("verify: the secret is not valid UTF-8");
		goto done;
	}
	if (run_call(ctl, EVHTTP_REQ_POST, "/v1/verify", body, 200, &v) == -1)
		goto done;
	if (ctl->c_json)
		print_json(v);
	else
		print_verify(v);
	if (json_is_true(json_object_get(v, "valid")))
		rc = 0;
	else {
		fflush(stdout);
		warnmsg("the %s is not valid: %s", json_object_get(v,
		    "scheme") != NULL ? "token" : "key", key_str(v, "code",
		    "?"));
	}
done:
	json_decref(v);
	json_decref(body);
	return (rc);
}


/* --- import -------------------------------------------------------------- */

/* The keys read from the input, and what became of them. */
struct imp {
	json_t		**i_keys;	/* key objects, NULL: unreadable */
	char		**i_where;	/* "line 12", or why unreadable */
	size_t		  i_n;
	size_t		  i_cap;
	size_t		  i_skipped;	/* entries the parser skipped */
	size_t		  i_counts[3];	/* created, unchanged, failed */
	const struct ctl *i_ctl;
};

/*
 * Sink: keep a key object with where it came from, or (key NULL) the
 * "where\0why" of an entry that is no key, to print in its place.
 */
static int
imp_key(void *arg, json_t *key, const char *where)
{
	struct imp	*im = arg;
	void		*p;
	size_t		 cap;

	if (im->i_n == im->i_cap) {
		cap = im->i_cap * 2 + 256;
		if ((p = reallocarray(im->i_keys, cap, sizeof(*im->i_keys))) ==
		    NULL)
			goto nomem;
		im->i_keys = p;
		if ((p = reallocarray(im->i_where, cap,
		    sizeof(*im->i_where))) == NULL)
			goto nomem;
		im->i_where = p;
		im->i_cap = cap;
	}
	if ((im->i_where[im->i_n] = key != NULL ? strdup(where) :
	    (char *)where) == NULL)
		goto nomem;
	im->i_keys[im->i_n++] = key;
	return (0);
nomem:
	json_decref(key);
	warnmsg("import: out of memory");
	return (-1);
}

/* One result, for people ("line 3: created key_...") or as JSON. */
static void
imp_print(const struct imp *im, const char *where, const char *status,
    const char *id, const char *code, const char *msg)
{
	json_t	*o;

	if (im->i_ctl->c_json) {
		o = json_pack("{s:s,s:s?,s:s}", "where", where, "id", id,
		    "status", status);
		if (o != NULL && code != NULL)
			json_object_set_new(o, "error", json_pack("{s:s,s:s}",
			    "code", code, "message", msg != NULL ? msg : ""));
		if (o != NULL) {
			json_dumpf(o, stdout, JSON_COMPACT);
			putchar('\n');
		}
		json_decref(o);
		return;
	}
	put_clean(stdout, where);
	printf(": %s", status);
	if (id != NULL) {
		putchar(' ');
		put_clean(stdout, id);
	}
	if (code != NULL) {
		printf(": ");
		put_clean(stdout, code);
		printf(": ");
		put_clean(stdout, msg != NULL ? msg : "");
	}
	putchar('\n');
}

/* Sink: an entry that is no key; kept to be printed in its place. */
static void
imp_warn(void *arg, const char *where, const char *msg)
{
	struct imp	*im = arg;
	size_t		 wl = strlen(where), ml = strlen(msg);
	char		*w;

	im->i_skipped++;
	if ((w = malloc(wl + ml + 2)) == NULL) {
		imp_print(im, where, "skipped", NULL, "unreadable", msg);
		return;
	}
	memcpy(w, where, wl + 1);
	memcpy(w + wl + 1, msg, ml + 1);
	if (imp_key(im, NULL, w) == -1) {
		imp_print(im, where, "skipped", NULL, "unreadable", msg);
		free(w);
	}
}

/* The whole of path ("-": standard input) into *buf; 0 or -1. */
static int
imp_read(const char *path, char **buf, size_t *len)
{
	FILE	*f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	char	*p;
	size_t	 cap = 0, n;

	*buf = NULL;
	*len = 0;
	if (f == NULL) {
		warnmsg("import: %s: %s", path, strerror(errno));
		return (-1);
	}
	for (;;) {
		if (*len == cap) {
			if (cap >= CTL_IMPORT_MAX) {
				warnmsg("import: %s is larger than 1 GiB", path);
				goto fail;
			}
			cap = cap * 2 + 65536;
			if ((p = malloc(cap)) == NULL) {
				warnmsg("import: out of memory");
				goto fail;
			}
			if (*buf != NULL) {
				memcpy(p, *buf, *len);
				explicit_bzero(*buf, *len);
				free(*buf);
			}
			*buf = p;
		}
		if ((n = fread(*buf + *len, 1, cap - *len, f)) == 0)
			break;
		*len += n;
	}
	if (ferror(f)) {
		warnmsg("import: %s: %s", path, strerror(errno));
		goto fail;
	}
	if (f != stdin)
		fclose(f);
	return (0);
fail:
	if (*buf != NULL) {
		explicit_bzero(*buf, *len);
		free(*buf);
	}
	*buf = NULL;
	if (f != stdin)
		fclose(f);
	return (-1);
}

/*
 * The answer to a batch of keys first..first+n-1: one NDJSON result per
 * line sent, in order; each printed under the entry's own where.  -1 if
 * the answer is not that (the batch's keys then count as failed).
 */
static int
imp_results(struct imp *im, size_t first, size_t n, const char *body,
    size_t len)
{
	const char	*p = body, *end = body + len, *nl;
	const json_t	*e;
	json_t		*r;
	json_int_t	 line;
	size_t		 seen = 0;
	const char	*st;

	for (; p < end; p = nl + 1) {
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			nl = end;
		if (nl == p)
			continue;
		r = json_loadb(p, (size_t)(nl - p), 0, NULL);
		line = json_integer_value(json_object_get(r, "line"));
		st = json_string_value(json_object_get(r, "status"));
		if (r == NULL || line < 1 || (size_t)line > n || st == NULL ||
		    (size_t)line != seen + 1) {
			json_decref(r);
			break;
		}
		seen++;
		e = json_object_get(r, "error");
		imp_print(im, im->i_where[first + line - 1], st,
		    json_string_value(json_object_get(r, "id")),
		    json_string_value(json_object_get(e, "code")),
		    json_string_value(json_object_get(e, "message")));
		im->i_counts[strcmp(st, "created") == 0 ? 0 :
		    strcmp(st, "unchanged") == 0 ? 1 : 2]++;
		json_decref(r);
	}
	fflush(stdout);		/* each batch's results as they come */
	if (seen == n)
		return (0);
	warnmsg("import: the admin API answered %zu result(s) for %zu keys",
	    seen, n);
	im->i_counts[2] += n - seen;
	return (-1);
}

/* Send keys first..first+n-1, whose lines are body; 0 or -1 (stop). */
static int
imp_send(struct ctl *ctl, struct imp *im, size_t first, size_t n,
    const char *body)
{
	struct reply	 r;
	char		 err[CTL_ERRLEN];
	int		 rc;

	ctl->c_ctype = "application/x-ndjson";
	rc = http_exchange(ctl, EVHTTP_REQ_POST, "/v1/keys/import", body, &r,
	    err, sizeof(err));
	ctl->c_ctype = NULL;
	if (rc == 0 && r.r_status != 200) {
		api_error(ctl, &r, err, sizeof(err));
		rc = -1;
	}
	if (rc == 0)
		rc = imp_results(im, first, n, r.r_body, r.r_bodylen);
	else {
		warnmsg("import: %s (%s to %s not imported)", err,
		    im->i_where[first], im->i_where[first + n - 1]);
		im->i_counts[2] += n;
	}
	free(r.r_body);
	return (rc);
}

/*
 * Send every key in batches of at most batch lines and CTL_BATCH_BYTES
 * bytes.  The lines hold secrets: each is wiped once sent.  A key whose
 * line alone is too large fails here.  0, or -1 when a batch failed (the
 * rest is not sent).
 */
static int
imp_batches(struct ctl *ctl, struct imp *im, size_t batch)
{
	char	*body, *line;
	size_t	 i, first = 0, n = 0, len = 0, ll;
	int	 rc = 0, bad;

	if ((body = malloc(CTL_BATCH_BYTES + 1)) == NULL) {
		warnmsg("import: out of memory");
		return (-1);
	}
	for (i = 0; i <= im->i_n && rc == 0; i++) {
		line = i < im->i_n && im->i_keys[i] != NULL ?
		    json_dumps(im->i_keys[i], JSON_COMPACT) : NULL;
		ll = line != NULL ? strlen(line) + 1 : 0;
		bad = i < im->i_n && (line == NULL || ll > CTL_BATCH_BYTES);
		/*
		 * An entry not sent ends the batch: a batch is consecutive
		 * entries, and the results stay in the input's order.
		 */
		if (n > 0 && (i == im->i_n || n == batch ||
		    len + ll > CTL_BATCH_BYTES || bad)) {
			body[len] = '\0';
			rc = imp_send(ctl, im, first, n, body);
			explicit_bzero(body, len);
			n = len = 0;
		}
		if (i < im->i_n && rc == 0 && im->i_keys[i] == NULL)
			imp_print(im, im->i_where[i], "skipped", NULL,
			    "unreadable", im->i_where[i] +
			    strlen(im->i_where[i]) + 1);
		else if (i < im->i_n && rc == 0) {
			if (bad) {
				imp_print(im, im->i_where[i], "error", NULL,
				    "too_large", "the key is larger than a "
				    "request may be");
				im->i_counts[2]++;
			} else {
				if (n == 0)
					first = i;
				memcpy(body + len, line, ll - 1);
				body[len + ll - 1] = '\n';
				len += ll;
				n++;
			}
		}
		if (line != NULL) {
			explicit_bzero(line, ll - 1);
			free(line);
		}
	}
	explicit_bzero(body, CTL_BATCH_BYTES + 1);
	free(body);
	return (rc);
}

/* Free what the import read. */
static void
imp_free(struct imp *im)
{
	size_t	 i;

	for (i = 0; i < im->i_n; i++) {
		json_decref(im->i_keys[i]);
		free(im->i_where[i]);
	}
	free(im->i_keys);
	free(im->i_where);
}

/* The arguments of import: format, batch size, input. */
static int
imp_args(struct ctl *ctl, int argc, char **argv, enum import_format *fmt,
    size_t *batch, const char **path)
{
	static const struct option	 lo[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "batch", required_argument, NULL, 'b' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 }
	};
	uint64_t			 v;
	int				 ch, given = 0;

	*batch = CTL_BATCH_LINES;
	while ((ch = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
		if (ch == 'f') {
			if (import_format_parse(optarg, fmt) == -1)
				return (usage_error(ctl, "unknown format \"%s\" "
				    "(ndjson, csv, nginx-map or kong)",
				    optarg));
			given = 1;
		} else if (ch == 'b') {
			if (parse_uint(optarg, CTL_BATCH_LINES, &v) == -1 ||
			    v == 0)
				return (usage_error(ctl, "--batch must be 1 to "
				    "%d", CTL_BATCH_LINES));
			*batch = (size_t)v;
		} else if (opt_common(ctl, ch, argv) != 0)
			return (EXIT_USAGE);
	}
	if ((*path = one_arg(ctl, argc, argv, "file (or - for standard "
	    "input)")) == NULL)
		return (EXIT_USAGE);
	if (!given && import_format_guess(*path, fmt) == -1)
		return (usage_error(ctl, "cannot tell the format of \"%s\" "
		    "from its name: use --format", *path));
	return (0);
}

/*
 * import: read keys from a file of another gateway (import.h) and send
 * them to POST /v1/keys/import in batches.  Exits 1 if any entry was
 * skipped or refused.
 */
static int
cmd_import(struct ctl *ctl, int argc, char **argv)
{
	struct import_sink	 sk;
	struct imp		 im;
	enum import_format	 fmt = IMPORT_NDJSON;
	const char		*path = NULL;
	char			*buf = NULL, err[CTL_ERRLEN];
	size_t			 len = 0, batch;
	int			 rc;

	if ((rc = imp_args(ctl, argc, argv, &fmt, &batch, &path)) != 0)
		return (rc);
	secret_json_wipe();	/* the key objects hold secrets */
	memset(&im, 0, sizeof(im));
	im.i_ctl = ctl;
	sk.is_key = imp_key;
	sk.is_warn = imp_warn;
	sk.is_arg = &im;
	rc = EXIT_FAIL;
	if (imp_read(path, &buf, &len) == -1)
		goto done;
	if (import_parse(fmt, buf, len, &sk, err, sizeof(err)) == -1) {
		warnmsg("import: %s: %s", strcmp(path, "-") == 0 ?
		    "standard input" : path, err);
		goto done;
	}
	explicit_bzero(buf, len);
	if (im.i_n > im.i_skipped && ctl->c_base == NULL &&
	    ctl_open(ctl, err, sizeof(err)) == -1) {
		warnmsg("%s", err);
		goto done;
	}
	(void)imp_batches(ctl, &im, batch);
	fflush(stdout);
	warnmsg("import: %zu created, %zu unchanged, %zu failed, %zu "
	    "unreadable (%s)", im.i_counts[0], im.i_counts[1], im.i_counts[2],
	    im.i_skipped, import_format_name(fmt));
	if (im.i_counts[2] == 0 && im.i_skipped == 0 &&
	    im.i_counts[0] + im.i_counts[1] == im.i_n && im.i_n > 0)
		rc = 0;
done:
	if (buf != NULL) {
		explicit_bzero(buf, len);
		free(buf);
	}
	imp_free(&im);
	return (rc);
}

/* --- status and top ------------------------------------------------------ */

#define STATUS_NCOL	7	/* columns of the upstream table */
#define TOP_DELAY_MIN	0.1	/* s, -d */
#define TOP_DELAY_MAX	86400.0
#define TOP_NMAX	1000000000	/* -n */

/* Terminal control for top: plain ANSI (ECMA-48) escapes, no curses. */
#define TERM_HOME_CLEAR	"\033[H\033[2J"	/* home, erase the screen */
#define TERM_BOLD	"\033[1m"
#define TERM_RESET	"\033[0m"	/* every attribute off */
#define TERM_HIDE	"\033[?25l"	/* cursor invisible */
#define TERM_SHOW	"\033[?25h"

/* A number member (integer or real) of o, or 0. */
static double
key_real(const json_t *o, const char *name)
{
	return (json_number_value(json_object_get(o, name)));
}

/* s seconds as "2d 3h 4m 5s", the larger units only when not zero. */
static void
fmt_uptime(const json_t *st, char *buf, size_t len)
{
	const json_t	*v = json_object_get(st, "uptime_seconds");
	json_int_t	 s;

	if (!json_is_integer(v) || (s = json_integer_value(v)) < 0) {
		snprintf(buf, len, "?");
		return;
	}
	if (s >= 86400)
		snprintf(buf, len, "%lldd %lldh %lldm %llds", (long long)s /
		    86400, (long long)s % 86400 / 3600, (long long)s % 3600 /
		    60, (long long)s % 60);
	else if (s >= 3600)
		snprintf(buf, len, "%lldh %lldm %llds", (long long)s / 3600,
		    (long long)s % 3600 / 60, (long long)s % 60);
	else if (s >= 60)
		snprintf(buf, len, "%lldm %llds", (long long)s / 60,
		    (long long)s % 60);
	else
		snprintf(buf, len, "%llds", (long long)s);
}

/* One last-minute line: "COUNT (RATE/s)". */
static void
print_minute(const json_t *m, const char *name, const char *label)
{
	char	 buf[64], num[24], rate[64];

	snprintf(rate, sizeof(rate), "%s_per_second", name);
	snprintf(buf, sizeof(buf), "%s (%.2f/s)", key_num(m, name, num,
	    sizeof(num)), key_real(m, rate));
	print_field(label, buf);
}

/* The upstream table of status: one row per upstream server. */
static void
print_upstream_table(const json_t *ups)
{
	static const char *const	 head[STATUS_NCOL] = { "UPSTREAM",
		"SERVER", "STATE", "OK/MIN", "FAILED/MIN", "REQUESTS",
		"FAILURES" };
	const json_t			*u, *m;
	size_t				 n, i;
	char				**cells, **row, num[24];

	n = json_array_size(ups) + 1;
	if ((cells = table_new(head, STATUS_NCOL, n)) == NULL)
		return;
	for (i = 1; i < n; i++) {
		u = json_array_get(ups, i - 1);
		m = json_object_get(u, "last_minute");
		row = cells + i * STATUS_NCOL;
		row[0] = strdup(key_str(u, "name", "?"));
		row[1] = strdup(key_str(u, "server", "?"));
		row[2] = strdup(key_str(u, "state", "?"));
		row[3] = strdup(key_num(m, "ok", num, sizeof(num)));
		row[4] = strdup(key_num(m, "failed", num, sizeof(num)));
		row[5] = strdup(key_num(u, "requests", num, sizeof(num)));
		row[6] = strdup(key_num(u, "failures", num, sizeof(num)));
	}
	print_table(cells, n, STATUS_NCOL);
}

/*
 * The answer of GET /v1/status for people: "name: value" lines, then the
 * upstream table (or "upstreams: none").
 */
static void
print_status(const json_t *st)
{
	const json_t	*w = json_object_get(st, "workers");
	const json_t	*k = json_object_get(st, "keys");
	const json_t	*cn = json_object_get(st, "connections");
	const json_t	*m = json_object_get(st, "last_minute");
	const json_t	*rl = json_object_get(st, "reloads");
	const json_t	*ups = json_object_get(st, "upstreams");
	char		 buf[256], a[24], b[24], c[24], d[24];

	print_field("version", key_str(st, "version", "?"));
	print_field("started_at", key_str(st, "started_at", "?"));
	fmt_uptime(st, buf, sizeof(buf));
	print_field("uptime", buf);
	snprintf(buf, sizeof(buf), "%s running of %s configured, %s restarts",
	    key_num(w, "running", a, sizeof(a)), key_num(w, "configured", b,
	    sizeof(b)), key_num(w, "restarts", c, sizeof(c)));
	print_field("workers", buf);
	snprintf(buf, sizeof(buf), "%s of %s", key_num(k, "count", a,
	    sizeof(a)), key_num(k, "max", b, sizeof(b)));
	print_field("keys", buf);
	snprintf(buf, sizeof(buf), "%s reading, %s writing, %s idle, "
	    "%s accepted", key_num(cn, "reading", a, sizeof(a)),
	    key_num(cn, "writing", b, sizeof(b)), key_num(cn, "idle", c,
	    sizeof(c)), key_num(cn, "accepted", d, sizeof(d)));
	print_field("connections", buf);
	if (key_real(m, "seconds") > 0)
		snprintf(buf, sizeof(buf), "%s s", key_num(m, "seconds", a,
		    sizeof(a)));
	else
		snprintf(buf, sizeof(buf), "not sampled yet");
	print_field("last_minute", buf);
	print_minute(m, "requests", "  requests");
	print_minute(m, "refused", "  refused");
	print_minute(m, "rate_limited", "  rate_limited");
	print_minute(m, "errors", "  errors");
	snprintf(buf, sizeof(buf), "%s succeeded, %s failed", key_num(rl,
	    "succeeded", a, sizeof(a)), key_num(rl, "failed", b, sizeof(b)));
	print_field("reloads", buf);
	print_field("last_reload", key_str(rl, "last_success_at", "never"));
	if (json_array_size(ups) == 0) {
		print_field("upstreams", "none");
		return;
	}
	putchar('\n');
	print_upstream_table(ups);
}

/*
 * A command that only GETs path: no argument but --json, the answer
 * printed by print (or as JSON).
 */
static int
cmd_get_print(struct ctl *ctl, int argc, char **argv, const char *path,
    void (*print)(const json_t *))
{
	static const struct option	 lo[] = {
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 }
	};
	json_t				*o;
	int				 ch, rc;

	while ((ch = getopt_long(argc, argv, ":", lo, NULL)) != -1)
		if ((rc = opt_common(ctl, ch, argv)) != 0)
			return (rc);
	if (optind < argc)
		return (usage_error(ctl, "unexpected argument \"%s\"",
		    argv[optind]));
	if (run_call(ctl, EVHTTP_REQ_GET, path, NULL, 200, &o) == -1)
		return (EXIT_FAIL);
	if (ctl->c_json)
		print_json(o);
	else
		print(o);
	json_decref(o);
	return (0);
}

/* status: GET /v1/status, as a list and a table or as JSON. */
static int
cmd_status(struct ctl *ctl, int argc, char **argv)
{
	return (cmd_get_print(ctl, argc, argv, "/v1/status", print_status));
}

/* What top needs between its frames and in its signal callback. */
struct top {
	struct ctl		*t_ctl;
	int			 t_tty;	/* stdout is a terminal */
	int			 t_stop;	/* SIGINT or SIGTERM came */
};

/*
 * SIGINT, SIGTERM: stop after the frame or the wait under way.  libevent
 * runs this in its loop, not in signal context, so it may do anything;
 * breaking the loop ends a wait at once (and a request, which top then
 * drops: it exits without looking at it).
 */
static void
top_signal(evutil_socket_t sig, short events, void *arg)
{
	struct top	*tp = arg;

	(void)sig;
	(void)events;
	tp->t_stop = 1;
	event_base_loopbreak(tp->t_ctl->c_base);
}

/* Wait delay seconds in the event loop, so that a signal ends the wait. */
static void
top_wait(struct top *tp, double delay)
{
	struct timeval	 tv;

	tv.tv_sec = (time_t)delay;
	tv.tv_usec = (suseconds_t)((delay - (double)tv.tv_sec) * 1e6);
	event_base_loopexit(tp->t_ctl->c_base, &tv);
	event_base_dispatch(tp->t_ctl->c_base);
}

/*
 * One frame: on a terminal the screen is cleared first and the heading is
 * bold; otherwise frames follow each other, a blank line apart, with no
 * escape at all.  With --json a frame is the answer on one line.
 */
static void
top_frame(struct top *tp, const json_t *st, double delay, unsigned long i)
{
	char	*s, now[32];

	if (tp->t_ctl->c_json) {
		if ((s = json_dumps(st, JSON_COMPACT |
		    JSON_PRESERVE_ORDER)) == NULL) {
			warnmsg("out of memory");
			return;
		}
		puts(s);
		free(s);
		fflush(stdout);
		return;
	}
	util_rfc3339_ms(now, sizeof(now), util_now_ms());
	if (tp->t_tty)
		fputs(TERM_HOME_CLEAR TERM_BOLD, stdout);
	else if (i > 0)
		putchar('\n');
	printf("keygate at ");
	put_clean(stdout, tp->t_ctl->c_url);
	printf(", %.19sZ, every %g s", now, delay);
	if (tp->t_tty)
		fputs(TERM_RESET, stdout);
	printf("\n\n");
	print_status(st);
	fflush(stdout);
}

/* Parse -d: a number of seconds (a fraction allowed) in range; 0 or -1. */
static int
top_delay(const char *s, double *d)
{
	char	*end;

	if ((*s < '0' || *s > '9') && *s != '.')
		return (-1);
	errno = 0;
	*d = strtod(s, &end);
	if (errno != 0 || *end != '\0' || *d < TOP_DELAY_MIN ||
	    *d > TOP_DELAY_MAX)
		return (-1);
	return (0);
}

/* The signal events of top; -1 if they cannot be set up. */
static int
top_signals(struct top *tp, struct event **ev)
{
	ev[0] = evsignal_new(tp->t_ctl->c_base, SIGINT, top_signal, tp);
	ev[1] = evsignal_new(tp->t_ctl->c_base, SIGTERM, top_signal, tp);
	if (ev[0] == NULL || ev[1] == NULL || evsignal_add(ev[0], NULL) ==
	    -1 || evsignal_add(ev[1], NULL) == -1) {
		warnmsg("cannot catch SIGINT and SIGTERM");
		return (-1);
	}
	return (0);
}

/*
 * The frames of top: GET /v1/status every delay seconds until n frames
 * (0: no end) or a signal.  A failed request ends it (exit 1).
 */
static int
top_run(struct top *tp, double delay, unsigned long n)
{
	struct ctl	*ctl = tp->t_ctl;
	char		 err[CTL_ERRLEN];
	json_t		*st;
	unsigned long	 i;
	int		 rc;

	for (i = 0; n == 0 || i < n; i++) {
		if (i > 0)
			top_wait(tp, delay);
		if (tp->t_stop)
			return (0);
		rc = api_call(ctl, EVHTTP_REQ_GET, "/v1/status", NULL, 200,
		    &st, err, sizeof(err));
		if (tp->t_stop) {
			json_decref(st);
			return (0);
		}
		if (rc == -1) {
			if (tp->t_tty && !ctl->c_json)
				fputs(TERM_RESET TERM_SHOW, stdout);
			fflush(stdout);
			warnmsg("%s", err);
			return (EXIT_FAIL);
		}
		top_frame(tp, st, delay, i);
		json_decref(st);
	}
	return (0);
}

/* top [-n N] [-d SECONDS]: status again and again, like top(1). */
static int
cmd_top(struct ctl *ctl, int argc, char **argv)
{
	static const struct option	 lo[] = {
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 }
	};
	struct top			 tp;
	struct event			*ev[2] = { NULL, NULL };
	char				 err[CTL_ERRLEN];
	double				 delay = 1.0;
	uint64_t			 n = 0;
	int				 ch, rc;

	while ((ch = getopt_long(argc, argv, ":n:d:", lo, NULL)) != -1) {
		if (ch == 'n') {
			if (parse_uint(optarg, TOP_NMAX, &n) == -1 || n == 0)
				return (usage_error(ctl, "bad -n \"%s\" "
				    "(expected a number of refreshes from 1)",
				    optarg));
		} else if (ch == 'd') {
			if (top_delay(optarg, &delay) == -1)
				return (usage_error(ctl, "bad -d \"%s\" "
				    "(expected seconds from %g to %g)", optarg,
				    TOP_DELAY_MIN, TOP_DELAY_MAX));
		} else if ((rc = opt_common(ctl, ch, argv)) != 0)
			return (rc);
	}
	if (optind < argc)
		return (usage_error(ctl, "unexpected argument \"%s\"",
		    argv[optind]));
	if (ctl_open(ctl, err, sizeof(err)) == -1) {
		warnmsg("%s", err);
		return (EXIT_FAIL);
	}
	memset(&tp, 0, sizeof(tp));
	tp.t_ctl = ctl;
	tp.t_tty = isatty(STDOUT_FILENO);
	rc = EXIT_FAIL;
	if (top_signals(&tp, ev) == 0) {
		if (tp.t_tty && !ctl->c_json)
			fputs(TERM_HIDE, stdout);
		rc = top_run(&tp, delay, (unsigned long)n);
		if (tp.t_tty && !ctl->c_json)
			fputs(TERM_RESET TERM_SHOW, stdout);
	}
	if (ev[0] != NULL)
		event_free(ev[0]);
	if (ev[1] != NULL)
		event_free(ev[1]);
	return (rc);
}

/* --- cluster ------------------------------------------------------------- */

#define CLUSTER_NCOL	6	/* columns of the node table */
#define CLUSTER_AGO_MAX	1e14	/* ms; "seen" further off is nonsense */
#define CLUSTER_SECS_MAX	1e9	/* s; printed with %g from there */

/* One line, formatted; control characters print as '?'. */
static void __attribute__((format(printf, 1, 2)))
print_line(const char *fmt, ...)
{
	va_list	 ap;
	char	*s;
	int	 n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n == -1) {
		warnmsg("out of memory");
		return;
	}
	put_clean(stdout, s);
	putchar('\n');
	free(s);
}

/*
 * A number member as seconds, "0.250" then unit ("1e+300" when that would
 * be too long); "?" if it is not a number.
 */
static char *
key_secs(const json_t *o, const char *name, const char *unit, char *buf,
    size_t len)
{
	const json_t	*v = json_object_get(o, name);
	double		 s = json_number_value(v);

	if (!json_is_number(v))
		snprintf(buf, len, "?");
	else if (s > -CLUSTER_SECS_MAX && s < CLUSTER_SECS_MAX)
		snprintf(buf, len, "%.3f%s", s, unit);
	else
		snprintf(buf, len, "%g%s", s, unit);
	return (buf);
}

/*
 * How long before now (ms since the epoch) the time v (the same) was:
 * "0.4s ago", "3m 5s ago", "2h 3m ago" or "1d 2h ago"; "1.5s ahead" for a
 * time after now (the other host's clock is ahead); "?" if v is not a
 * number or is absurdly far off.
 */
static void
fmt_ago(const json_t *v, int64_t now, char *buf, size_t len)
{
	double		 ms;
	long long	 s;

	ms = (double)now - json_number_value(v);
	if (!json_is_number(v) || ms > CLUSTER_AGO_MAX ||
	    ms < -CLUSTER_AGO_MAX)
		snprintf(buf, len, "?");
	else if (ms < 0)
		snprintf(buf, len, "%.1fs ahead", -ms / 1000.0);
	else if (ms < 60000)
		snprintf(buf, len, "%.1fs ago", ms / 1000.0);
	else if ((s = (long long)(ms / 1000.0)) < 3600)
		snprintf(buf, len, "%lldm %llds ago", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, len, "%lldh %lldm ago", s / 3600, s % 3600 / 60);
	else
		snprintf(buf, len, "%lldd %lldh ago", s / 86400,
		    s % 86400 / 3600);
}

/*
 * The node table: this node first, then the others as the API lists
 * them.  Anything but an object in the list is a row of "?".
 */
static void
print_node_table(const json_t *nodes, int64_t now)
{
	static const char *const	 head[CLUSTER_NCOL] = { "NODE", "HOST",
		"PID", "POSITION", "LAG", "SEEN" };
	const json_t			*n;
	size_t				 nrow, i, r = 1;
	char				**cells, **row, num[64], ago[64];
	char				 seen[96];
	int				 pass, self;

	nrow = json_array_size(nodes) + 1;
	if ((cells = table_new(head, CLUSTER_NCOL, nrow)) == NULL)
		return;
	for (pass = 0; pass < 2; pass++)
		json_array_foreach(nodes, i, n) {
			self = json_is_true(json_object_get(n, "self"));
			if (self != (pass == 0))
				continue;
			row = cells + r++ * CLUSTER_NCOL;
			row[0] = strdup(key_str(n, "node", "?"));
			row[1] = strdup(key_str(n, "host", "?"));
			row[2] = strdup(key_num(n, "pid", num, sizeof(num)));
			row[3] = strdup(key_str(n, "position", "?"));
			row[4] = strdup(key_secs(n, "lag_seconds", "s", num,
			    sizeof(num)));
			fmt_ago(json_object_get(n, "seen"), now, ago,
			    sizeof(ago));
			snprintf(seen, sizeof(seen), "%s%s", ago, self ?
			    " (this node)" : "");
			row[5] = strdup(seen);
		}
	print_table(cells, nrow, CLUSTER_NCOL);
}

/* A per-mille member of o as a percentage ("13.3%"), or "?". */
static const char *
key_permille(const json_t *o, const char *name, char *buf, size_t len)
{
	const json_t	*v = json_object_get(o, name);
	json_int_t	 n;

	if (!json_is_integer(v) || (n = json_integer_value(v)) < 0)
		return ("?");
	snprintf(buf, len, "%lld.%lld%%", (long long)(n / 10),
	    (long long)(n % 10));
	return (buf);
}

/*
 * The standing allowance's line (a daemon before 0.13.1 has none: then
 * nothing is printed), e.g. "standing allowance: 13.3% of each key's
 * limits (at most 20.0%), waiting (usable in 63 s)".
 */
static void
print_cluster_standing(const json_t *st)
{
	char		 share[24], max[24], in[48] = "";
	const json_t	*ms;

	if (!json_is_object(st))
		return;
	ms = json_object_get(st, "usable_in_ms");
	if (json_is_integer(ms) && json_integer_value(ms) > 0)
		snprintf(in, sizeof(in), " (usable in %lld s)",
		    (long long)((json_integer_value(ms) + 999) / 1000));
	print_line("standing allowance: %s of each key's limits (at most %s), "
	    "%s%s", key_permille(st, "share_permille", share, sizeof(share)),
	    key_permille(st, "max_permille", max, sizeof(max)),
	    key_str(st, "state", "?"), in);
}

/*
 * The "limits" line of the cluster's answer (a daemon before 0.13 has
 * none: then nothing is printed).
 */
static void
print_cluster_limits(const json_t *l)
{
	char	 nodes[24], subj[24], calls[24], failed[24], granted[24];
	char	 returned[24], full[24];

	if (!json_is_object(l))
		return;
	print_line("limits: %s (fallback %s, %s nodes), %s subjects, %s lease "
	    "calls (%s failed), %s units granted, %s returned, %s full",
	    key_str(l, "mode", "?"), key_str(l, "fallback", "?"),
	    key_num(l, "nodes", nodes, sizeof(nodes)),
	    key_num(l, "subjects", subj, sizeof(subj)),
	    key_num(l, "lease_calls", calls, sizeof(calls)),
	    key_num(l, "lease_calls_failed", failed, sizeof(failed)),
	    key_num(l, "units_granted", granted, sizeof(granted)),
	    key_num(l, "units_returned", returned, sizeof(returned)),
	    key_num(l, "full", full, sizeof(full)));
	print_cluster_standing(json_object_get(l, "standing"));
}

/*
 * The answer of GET /v1/cluster for people: a line on the cluster and
 * Redis, the refusal and the cache warning if any, this node's progress,
 * the change stream, then the node table.  Members missing or of the
 * wrong type print as "?".
 */
static void
print_cluster(const json_t *cl)
{
	const json_t	*up = json_object_get(cl, "redis_up");
	const json_t	*nodes = json_object_get(cl, "nodes");
	const json_t	*v;
	char		 lag[64], num[24], ago[64];

	if (json_is_false(json_object_get(cl, "enabled"))) {
		printf("cluster: not enabled (no cluster_redis in the "
		    "configuration)\n");
		return;
	}
	print_line("cluster %s: %s, Redis %s %s", key_str(cl, "name", "?"),
	    key_str(cl, "state", "?"), key_str(cl, "redis", "?"),
	    json_is_true(up) ? "reachable" : json_is_false(up) ?
	    "unreachable" : "?");
	if (json_object_get(cl, "refused") != NULL)
		print_line("refused: %s", key_str(cl, "refused", "?"));
	if (json_object_get(cl, "cache") != NULL)
		print_line("warning: %s", key_str(cl, "cache", "?"));
	v = json_object_get(cl, "applied_total");
	print_line("this node: %s at %s, lag %s, %s change%s applied",
	    key_str(cl, "node", "?"), key_str(cl, "position", "?"),
	    key_secs(cl, "lag_seconds", " s", lag, sizeof(lag)),
	    key_num(cl, "applied_total", num, sizeof(num)),
	    json_is_integer(v) && json_integer_value(v) == 1 ? "" : "s");
	v = json_object_get(cl, "checked_ms_ago");
	if (v == NULL)
		snprintf(ago, sizeof(ago), "not checked yet");
	else if (json_is_number(v))
		snprintf(ago, sizeof(ago), "checked %.3f s ago",
		    json_number_value(v) / 1000.0);
	else
		snprintf(ago, sizeof(ago), "checked ? s ago");
	print_line("stream: last %s, epoch %s, %s", key_str(cl,
	    "stream_last", "?"), key_str(cl, "epoch", "?"), ago);
	print_cluster_limits(json_object_get(cl, "limits"));
	if (!json_is_array(nodes)) {
		print_field("nodes", "?");
		return;
	}
	if (json_array_size(nodes) == 0) {
		print_field("nodes", "none");
		return;
	}
	putchar('\n');
	print_node_table(nodes, util_now_ms());
}

/*
 * cluster: GET /v1/cluster, as lines and a table or as JSON.  Like
 * status, it exits 0 whenever the daemon answered, whatever the state.
 */
static int
cmd_cluster(struct ctl *ctl, int argc, char **argv)
{
	return (cmd_get_print(ctl, argc, argv, "/v1/cluster", print_cluster));
}

/* Global options; the index of the command in argv, or -1 with *rc set. */
static int
global_options(struct ctl *ctl, int argc, char **argv, int *rc)
{
	static const struct option	 lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "url", required_argument, NULL, 'u' },
		{ "token", required_argument, NULL, 't' },
		{ "token-file", required_argument, NULL, 'T' },
		{ "cacert", required_argument, NULL, 'C' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 }
	};
	int				 ch;

	*rc = EXIT_USAGE;
	while ((ch = getopt_long(argc, argv, "+:c:u:t:T:hv", lo, NULL)) != -1) {
		switch (ch) {
		case 'c':
			ctl->c_conf_path = optarg;
			ctl->c_conf_given = 1;
			break;
		case 'u':
			ctl->c_url_arg = optarg;
			break;
		case 't':
			ctl->c_token_arg = optarg;
			break;
		case 'T':
			ctl->c_token_file = optarg;
			break;
		case 'C':
			ctl->c_ca_arg = optarg;
			break;
		case 'h':
			usage(stdout);
			*rc = 0;
			return (-1);
		case 'v':
			printf("keygatectl %s\n", PACKAGE_VERSION);
			*rc = 0;
			return (-1);
		default:
			if (opt_common(ctl, ch, argv) != 0)
				return (-1);
		}
	}
	return (optind);
}

/* help [COMMAND]: the usage, or that command's, on stdout. */
static int
help(int argc, char **argv)
{
	const struct command	*c;

	if (argc == 1) {
		usage(stdout);
		return (0);
	}
	if (argc > 2 || (c = command_find(argv[1])) == NULL) {
		warnmsg("help: %s \"%s\" (see keygatectl help)", argc > 2 ?
		    "unexpected argument" : "unknown command", argv[argc > 2 ?
		    2 : 1]);
		return (EXIT_USAGE);
	}
	command_help(c);
	return (0);
}

/* Global options, then the command; its exit status (0, 1 or 2). */
int
main(int argc, char *argv[])
{
	struct ctl		 ctl;
	const struct command	*c;
	int			 i, rc;

	memset(&ctl, 0, sizeof(ctl));
	ctl.c_conf_path = CTL_DEFAULT_CONFIG;
	opterr = 0;
	if ((i = global_options(&ctl, argc, argv, &rc)) == -1)
		return (rc);
	if (i >= argc) {
		usage(stderr);
		return (EXIT_USAGE);
	}
	if (strcmp(argv[i], "help") == 0)
		return (help(argc - i, argv + i));
	if ((c = command_find(argv[i])) == NULL) {
		warnmsg("unknown command \"%s\" (see keygatectl help)",
		    argv[i]);
		return (EXIT_USAGE);
	}
	ctl.c_cmd = c->cmd_name;
	optind = 0;	/* glibc: start afresh on the command's arguments */
	rc = c->cmd_run(&ctl, argc - i, argv + i);
	if (ctl.c_help)
		rc = 0;
	ctl_close(&ctl);
	if (fflush(stdout) == EOF || ferror(stdout)) {
		warnmsg("cannot write the output: %s", strerror(errno));
		rc = EXIT_FAIL;
	}
	return (rc);
}
