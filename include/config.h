/*
 * Configuration: one directive per line, parsed through a table of
 * directives (name, argument kinds, bounds, default) into a fresh struct
 * config.  Nothing is changed in a running daemon until a whole file has
 * parsed and validated; errors are "FILE:LINE: message".
 */
#ifndef KEYGATE_CONFIG_H
#define KEYGATE_CONFIG_H

#include <sys/types.h>
#include <sys/socket.h>

#include <stddef.h>
#include <stdint.h>

#include "jwt.h"
#include "ratelimit.h"
#include "realip.h"
#include "route.h"
#include "stats.h"
#include "tls.h"

#define CONFIG_ERRLEN		512
#define CONFIG_MAX_WORKERS	64
#define CONFIG_MAX_KEYS		100000000
#define CONFIG_MAX_CIDRS	1024	/* real_ip_from, a route's from= */

struct listen_addr {
	char			 la_name[128];	/* as written, e.g. "[::1]:8080" */
	struct sockaddr_storage	 la_ss;
	socklen_t		 la_sslen;
	int			 la_line;
	int			 la_tls;	/* "listen ADDR tls" */
};

enum upstream_type {
	UPSTREAM_ECHO = 1,
	UPSTREAM_HTTP
};

/*
 * One server of an upstream: an address of one of its URLs (a name that
 * resolves to several addresses gives several servers).
 */
struct upstream_server {
	char			*us_url;	/* the URL as written */
	char			*us_host;	/* its host[:port]: Host, SNI */
	struct sockaddr_storage	 us_ss;
	socklen_t		 us_sslen;
	int			 us_weight;	/* URL#weight=N, default 1 */
	int			 us_index;	/* c_servers numbering (proxy.c) */
	/* Metrics (stats.h): the server label and its id, set by the master. */
	char			 us_server[STATS_NAME_MAX];	/* HOST:PORT */
	uint32_t		 us_stat_id;
	/*
	 * Active health checks (health.h), set by the master: the shared
	 * word the checker writes and the id it writes there (0: this
	 * server is not checked).
	 */
	uint32_t		 us_health_slot;
	uint32_t		 us_health_id;
};

enum upstream_balance {
	BALANCE_ROUND_ROBIN = 0,	/* smooth weighted, as nginx's */
	BALANCE_LEAST_CONN
};

/* retry_on= */
#define RETRY_ERROR	0x01	/* connect failure, close before the head */
#define RETRY_TIMEOUT	0x02	/* connect or read timeout before the head */
#define RETRY_502	0x04
#define RETRY_503	0x08
#define RETRY_504	0x10

struct upstream {
	char			*u_name;
	enum upstream_type	 u_type;
	int			 u_line;
	int			 u_index;	/* position in c_upstreams */
	/* UPSTREAM_HTTP: servers (resolved at load) and pool settings. */
	struct upstream_server	*u_servers;
	int			 u_nservers;
	int			 u_max_idle;		/* idle connections kept per worker */
						/* and server */
	int			 u_connect_timeout;	/* ms */
	int			 u_read_timeout;	/* ms, between reads */
	int			 u_idle_timeout;	/* ms an idle one is kept */
	enum upstream_balance	 u_balance;
	int			 u_max_fails;	/* 0: never marked down */
	int			 u_fail_timeout;	/* ms */
	int			 u_retries;	/* other servers tried, at most */
	int			 u_retry_on;	/* RETRY_* */
	int			 u_max_conns;	/* per worker and server, 0: any */
	char			*u_strip_prefix;	/* strip_prefix=, or NULL */
	size_t			 u_strip_len;
	char			*u_host_header;	/* host=: the Host sent, or NULL */
	/* health=: active checks by the master (health.h); NULL: none. */
	char			*u_health;	/* the path (and query) asked */
	int			 u_health_interval;	/* ms, and each one's */
							/* timeout */
	int			 u_health_fails;	/* failed in a row: out */
	int			 u_health_passes;	/* passed in a row: in */
	/* https:// (tls.h): verification, SNI, the client context. */
	int			 u_tls;
	char			*u_ca;		/* ca= (absolute), NULL: system */
	int			 u_verify;	/* verify=, default on */
	char			*u_sni;		/* sni=, default the URL's host */
	SSL_CTX			*u_ssl_ctx;	/* tls_upstream_build() */
	SSL_SESSION		*u_ssl_session;	/* last session, resumed */
};

#define UPSTREAM_MAX_IDLE		64
#define UPSTREAM_MAX_SERVERS		64	/* per upstream */
#define UPSTREAM_IDLE_TIMEOUT		60000
#define UPSTREAM_FAIL_TIMEOUT		10000
#define UPSTREAM_CONNECT_TIMEOUT	5000
#define UPSTREAM_READ_TIMEOUT		60000
#define UPSTREAM_HEALTH_INTERVAL	5000
#define UPSTREAM_HEALTH_MIN_INTERVAL	100
#define CONFIG_MAX_HEALTH_CHECKS	1024	/* checked servers, in all */

enum log_level {
	LOGLEVEL_ERROR = 0,
	LOGLEVEL_WARN,
	LOGLEVEL_INFO,
	LOGLEVEL_DEBUG
};

#define CONFIG_MAX_SENTINELS	8

struct config {
	char			*c_path;	/* file it was read from */

	struct listen_addr	*c_listen;
	size_t			 c_nlisten;

	int			 c_workers;	/* resolved: "auto" = number of CPUs */
	char			*c_user;	/* NULL: do not change user */
	uid_t			 c_uid;
	gid_t			 c_gid;
	char			*c_pidfile;	/* absolute */
	char			*c_state_dir;	/* absolute */
	char			*c_error_log;	/* "syslog", "stderr" or an absolute path */
	char			*c_access_log;	/* NULL when "off"; else absolute */
	enum log_level		 c_log_level;

	/* Timeouts in milliseconds. */
	int			 c_header_timeout;
	int			 c_body_timeout;
	int			 c_body_deadline;	/* whole body; 0: none */
	int			 c_keepalive_timeout;
	int			 c_send_timeout;
	int			 c_shutdown_timeout;

	/* Limits. */
	size_t			 c_max_request_line;
	size_t			 c_max_header_size;
	uint64_t		 c_max_body_size;
	int			 c_max_connections;	/* per worker */
	int			 c_keepalive_requests;	/* per connection */

	/* Keys and the admin API. */
	uint32_t		 c_max_keys;
	uint32_t		 c_max_active_keys;	/* 0: c_max_keys */
	char			*c_api_key_header;	/* lower case, "x-api-key" */
	/*
	 * rate_limit (keys) and anonymous_rate_limit (client addresses on
	 * anonymous routes): requests per window of ratelimit_window_ms,
	 * 0 = window not enforced.  Defaults 20/200/1000 and all off.
	 */
	uint32_t		 c_rate[RL_WINDOWS];
	uint32_t		 c_anon_rate[RL_WINDOWS];
	int			 c_metrics;		/* metrics_listen given */
	struct listen_addr	 c_metrics_listen;
	int			 c_admin;		/* admin API enabled */
	struct listen_addr	 c_admin_listen;
	char			*c_admin_token_file;	/* absolute, or NULL */
	uint8_t			 c_admin_token_digest[32];	/* SHA-256 */
	int			 c_admin_ui;		/* the web console on */
	int			 c_admin_ui_idle;	/* ms a session lives idle */
	int			 c_admin_ui_rotate_days; /* keys older: badge */
	int			 c_admin_ui_unused_days; /* keys unused: badge */

	int			 c_forward_credentials;	/* pass X-API-KEY, Authorization */
	int			 c_underscores_in_headers; /* forward "X_Foo" */
	int			 c_merge_slashes;	/* "//" -> "/" when forwarding */
	char			*c_verify_path;		/* auth_request endpoint, or NULL */
	char			*c_health_path;		/* health_path, or NULL */
	int			 c_shutdown_delay;	/* ms a stop keeps serving */

	/*
	 * real_ip_from (realip.h): peers trusted to name the client in
	 * c_real_ip_header (lower case, default "x-forwarded-for").  None:
	 * the peer is the client and forwarded headers are never trusted.
	 */
	struct cidr		*c_real_ip_from;
	size_t			 c_nreal_ip_from;
	char			*c_real_ip_header;

	struct upstream		*c_upstreams;
	size_t			 c_nupstreams;
	int			 c_nservers;	/* servers of all upstreams */
	int			 c_nchecked;	/* of them, with health= */

	struct jwt_provider	*c_jwt;		/* jwt_provider, in file order */
	size_t			 c_njwt;

	struct route_table	 c_routes;

	/* TLS (tls.h).  c_tls is built when some listener has "tls". */
	struct tls_cert_conf	*c_tls_certs;	/* tls_certificate, in order */
	size_t			 c_ntls_certs;
	int			 c_tls_protocols;	/* TLS_PROTO_* bits */
	char			*c_tls_ciphers;
	char			*c_tls_ciphersuites;
	int			 c_tls_tickets;		/* tls_session_tickets */

	/*
	 * The cluster (cluster.h): set by cluster_redis.  The password
	 * (password_file=, or the URL's) is wiped when the configuration is
	 * freed and appears in no message; c_cluster_url is the address as
	 * shown in logs and /v1/cluster, without it.
	 */
	int			 c_cluster;
	char			*c_cluster_url;
	char			*c_cluster_host;	/* TCP, or NULL */
	int			 c_cluster_port;
	char			*c_cluster_unix;	/* or a socket path */
	int			 c_cluster_db;
	char			*c_cluster_user;	/* ACL user, or NULL */
	char			*c_cluster_pass;	/* or NULL */
	char			*c_cluster_name;	/* cluster_name */
	int			 c_cluster_fallback;	/* 0 local, 1 deny */
	int			 c_cluster_limits;	/* cluster_limits on */
	int			 c_cluster_standing;	/* percent */
	/*
	 * sentinel://HOST:PORT[,HOST:PORT...]/MASTER: the sentinels asked
	 * for the primary (c_cluster_host is then NULL), and their password
	 * (sentinel_password_file=), if they have one.
	 */
	int			 c_cluster_nsentinels;
	char			*c_cluster_sentinel_host[CONFIG_MAX_SENTINELS];
	int			 c_cluster_sentinel_port[CONFIG_MAX_SENTINELS];
	char			*c_cluster_master;
	char			*c_cluster_sentinel_pass;
	struct tls_server	*c_tls;
};

/*
 * Read and validate path.  Relative paths in it are made absolute against
 * the current directory.  Returns a new config, or NULL with
 * "FILE:LINE: message" (or "FILE: message") in err.
 */
struct config	*config_load(const char *, char *, size_t);

/*
 * config_load() with flags.  CONFIG_NO_TLS: every directive is checked as
 * by config_load(), but no TLS context is built, so no certificate, key
 * or ca= file is read and c_tls and the upstreams' u_ssl_ctx stay NULL
 * (for keygatectl, run by an operator who may read the admin token but
 * not the listeners' private keys).  config_load() is flags 0.
 */
#define CONFIG_NO_TLS		0x01
struct config	*config_load_flags(const char *, int, char *, size_t);

/* Same, from a string (for tests); name is used in messages. */
struct config	*config_parse(const char *, const char *, char *, size_t);

void		 config_free(struct config *);
/* Wipe and drop c's cluster passwords (in a forked worker). */
void		 config_forget_cluster_secrets(struct config *);

/*
 * Read an admin token file: one line of 16 to 1024 visible ASCII
 * characters (a trailing newline is ignored).  0, or -1 with a reason that
 * never contains the file's contents.
 */
int		 config_read_token(const char *, char *, size_t, char *, size_t);
/* The same with a minimum length of min characters (1 for a password). */
int		 config_read_secret(const char *, char *, size_t, size_t, char *,
		    size_t);

#define CONFIG_TOKEN_MAX	1024

/*
 * Every address to bind: c_listen[0 .. c_nlisten), then the admin address
 * when the admin API is enabled (index c_nlisten).
 */
size_t		 config_nlisten(const struct config *);
uint32_t	 config_max_active(const struct config *);
const struct listen_addr *config_listen(const struct config *, size_t);
enum listen_kind {
	LISTEN_GATEWAY,
	LISTEN_ADMIN,
	LISTEN_METRICS
};
enum listen_kind config_listen_kind(const struct config *, size_t);

/* Upstream by name, or NULL. */
struct upstream	*config_upstream(const struct config *, const char *);

/* JWT provider by name, or NULL. */
struct jwt_provider *config_jwt_provider(const struct config *, const char *);

/* Parsers shared with other modules: 0 on success, -1 if malformed. */
int		 config_parse_duration_ms(const char *, int *);	/* 10s 500ms 2m 1h, bare = s */
int		 config_parse_size(const char *, uint64_t *);	/* 512 8k 1m 1g */
int		 config_parse_addr(const char *, struct sockaddr_storage *,
		    socklen_t *);	/* 127.0.0.1:80 [::1]:80 *:80 80 */

#endif /* KEYGATE_CONFIG_H */
