/*
 * The admin API, served on admin_listen by the workers.  The HTTP layer
 * (server.c) reads a whole request (body at most ADMIN_MAX_BODY bytes) and
 * hands it to admin_handle(), which knows nothing about sockets: it returns
 * a status, a body and a content type.  JSON in and out through jansson.
 *
 *	GET    /v1/health			no token needed
 *	GET    /v1/status			uptime, workers, last minute
 *	GET    /v1/openapi.json			OpenAPI 3.1 of this API
 *	POST   /v1/keys				201 + key + "secret"
 *						(Idempotency-Key: idem.h)
 *	POST   /v1/keys/import			NDJSON in, NDJSON out
 *	GET    /v1/keys?owner=&app_id=&limit=&cursor=
 *	GET    /v1/keys/{id}
 *	PATCH  /v1/keys/{id}			name scopes expires_at disabled rate_limit
 *	DELETE /v1/keys/{id}			204
 *	POST   /v1/keys/{id}/regenerate		{"grace_seconds": N} optional
 *	GET    /v1/keys/{id}/usage
 *	POST   /v1/verify			{"key": SECRET, "app_id": optional}
 *
 * Every other request needs "Authorization: Bearer TOKEN", compared in
 * constant time with the token read from admin_token_file.  Wrong
 * credentials are counted per client address (an IPv6 client by its /64)
 * in ae_fails, shared by every worker: after RL_FAIL_FREE in a row, the
 * address must wait 1 s, then 2 s, ... up to 60 s before its next
 * credential is even looked at; until then it is answered 429
 * too_many_attempts with Retry-After.  A right token ends the streak.
 * Failures and refusals are logged, at most once a second per address,
 * with the address and the reason, never the token.
 *
 * A write takes the key store lock, appends and fsyncs the journal line,
 * then changes the shared memory, then answers: when the answer is 201/200/
 * 204 the change is on disk and visible to every worker.  A journal write
 * that fails answers 503 storage_unavailable and leaves memory unchanged.
 * A worker whose master is gone (killed: the worker is reparented) takes
 * no more writes, 503 master_gone: a new keygated may be starting on the
 * same state_dir, and only the processes of one master append to the
 * journal (journal_lock).
 */
#ifndef KEYGATE_ADMIN_H
#define KEYGATE_ADMIN_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define ADMIN_MAX_BODY		(64 * 1024)
#define ADMIN_LOCK_TIMEOUT	5000	/* ms to wait for the key store lock */
#define ADMIN_LIST_DEFAULT	100
#define ADMIN_LIST_MAX		1000

struct keystore;
struct journal;
struct rl_failtable;
struct jwtauth;

struct stats_region;
struct jwks_slot;
struct idem_entry;

struct cluster_client;
struct ui_table;

struct admin_env {
	struct keystore		*ae_ks;
	struct journal		*ae_journal;
	pid_t			 ae_pid;		/* lock owner */
	pid_t			 ae_master;		/* writes only while this */
							/* is our parent; 0: any */
	const uint8_t		*ae_token_digest;	/* SHA-256 of the token, */
							/* NULL: every request 401 */
	uint32_t		 ae_rate[3];		/* rate_limit per window, */
							/* 0: not enforced */
	const char		*ae_version;		/* PACKAGE_VERSION */
	struct rl_failtable	*ae_fails;		/* failed tokens by */
							/* address, NULL: none */
	struct jwtauth		*ae_jwt;		/* JWT providers' keys, */
							/* NULL: none */
	const struct stats_region *ae_stats;		/* the counters (GET */
							/* /metrics, /v1/status), */
							/* NULL: 503 */
	const struct jwks_slot	*ae_jwks;		/* key sets, or NULL */
	struct idem_entry	*ae_idem;		/* Idempotency-Key table */
							/* (idem.h), NULL: the */
							/* header is ignored */
	struct cluster_client	*ae_cluster;		/* writes through the */
							/* master (cluster.h), */
							/* NULL: not a cluster */
	struct ui_table		*ae_ui;			/* the web console's */
							/* sessions (ui.h), */
							/* NULL: admin_ui off */
	int64_t			 ae_ui_idle_ms;		/* session's idle end */
	int			 ae_ui_rotate_days;	/* console's badges */
	int			 ae_ui_unused_days;
	const char		*ae_ui_scopes;		/* routes' scopes, */
							/* "a b", or NULL */
	const json_t		*ae_gateway;		/* the configuration */
							/* /v1/gateway shows */
							/* (server.c) or NULL */
};

struct admin_request {
	int			 aq_mbit;	/* HTTP_M_* */
	const char		*aq_path;	/* path, without the query */
	size_t			 aq_pathlen;
	const char		*aq_query;	/* after '?', or NULL */
	size_t			 aq_querylen;
	const char		*aq_auth;	/* Authorization value, or NULL */
	size_t			 aq_authlen;
	const char		*aq_idem;	/* Idempotency-Key, or NULL */
	size_t			 aq_idemlen;
	const char		*aq_cookie;	/* Cookie, or NULL */
	size_t			 aq_cookielen;
	const char		*aq_csrf;	/* X-CSRF-Token, or NULL */
	size_t			 aq_csrflen;
	const char		*aq_inm;	/* If-None-Match, or NULL */
	size_t			 aq_inmlen;
	int			 aq_tls;	/* came over TLS */
	const char		*aq_body;
	size_t			 aq_bodylen;
	int64_t			 aq_now;	/* ms, wall clock */
	int64_t			 aq_mono;	/* ms, CLOCK_MONOTONIC (rate windows) */
	const void		*aq_ip;		/* client address, 4 or 16 */
	size_t			 aq_iplen;	/* bytes; 0: unknown */
	const char		*aq_client;	/* ... as text, for the log */
};

struct admin_response {
	int			 as_status;
	char			*as_body;	/* malloc'ed; NULL for none (204) */
	size_t			 as_bodylen;
	const char		*as_type;	/* Content-Type, static */
	const char		*as_allow;	/* Allow (405), static, or NULL */
	const char		*as_challenge;	/* WWW-Authenticate (401), or NULL */
	const char		*as_code;	/* error code for the access log, or NULL */
	uint32_t		 as_retry_after; /* s, Retry-After (429), 0: none */
	const char		*as_static;	/* body not freed, or NULL */
	const char		*as_etag;	/* ETag, static, or NULL */
	int			 as_ui;		/* the console's headers */
	char			 as_cookie[160]; /* Set-Cookie, "": none */
};

/* The web console's Content-Security-Policy: nothing inline, no frames. */
#define ADMIN_UI_CSP	"default-src 'self'; frame-ancestors 'none'; " \
			"base-uri 'none'; form-action 'self'"

/*
 * The answer of GET /metrics from env's counters into rs, without the
 * token check (metrics_listen serves it as is): 0, or -1 when env keeps
 * no counters or memory ran out (rs then holds nothing).
 */
int	 admin_metrics_answer(const struct admin_env *, struct admin_response *);

/* Answer one request (never fails: errors become responses). */
void	 admin_handle(const struct admin_env *, const struct admin_request *,
	    struct admin_response *);

/*
 * Parse an RFC 3339 date-time as the API accepts it for expires_at (Z or
 * an offset, optional fraction) into ms since the epoch; 0 or -1.
 */
int	 admin_parse_time(const char *, int64_t *);

/* Free what admin_handle() allocated. */
void	 admin_response_free(struct admin_response *);

/* The OpenAPI document (doc/openapi.json, compiled in). */
extern const char	admin_openapi_json[];

#endif /* KEYGATE_ADMIN_H */
