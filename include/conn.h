/*
 * The worker's connection and worker structures, shared by server.c (the
 * client side) and proxy.c (the upstream side).  Internal to the worker
 * process: nothing outside those two files includes this.
 */
#ifndef KEYGATE_CONN_H
#define KEYGATE_CONN_H

#include <sys/types.h>
#include <sys/queue.h>
#include <netinet/in.h>

#include <stdint.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "admin.h"
#include "auth.h"
#include "forward.h"
#include "http.h"
#include "journal.h"
#include "keystore.h"
#include "shm.h"

#define SERVER_MAX_OUTPUT	(256 * 1024)	/* pause the producer past this */
#define SERVER_MAX_LISTENERS	16
#define CONN_EXTRA_MAX		2816	/* extra response header bytes: */
					/* rate headers + identity (verify) */
#define CONN_IDENT_MAX		2304	/* identity header bytes (a JWT's */
					/* scopes and headers= included) */
#define CONN_HOLD_POLL_MS	10	/* a held request looks this often */

struct upconn;
struct upool;
struct server_env;
struct config;
struct accesslog;

enum conn_state {
	CONN_IDLE,	/* between requests */
	CONN_HEADERS,	/* reading a request's header section */
	CONN_BODY,	/* reading the body of a request being served */
	CONN_DISCARD,	/* reading and dropping the body of a refused request */
	CONN_AUTHWAIT,	/* header read; a JWT waits for its provider's keys */
	CONN_PROXY,	/* request read; the upstream's answer is on its way */
	CONN_CLOSING,	/* writing the last response, then close */
	CONN_LINGER,	/* write side shut, draining input until EOF */
	CONN_DEAD	/* to be freed at the end of the callback */
};

struct worker;

struct conn {
	TAILQ_ENTRY(conn)	 c_entry;
	TAILQ_ENTRY(conn)	 c_idle_entry;	/* in w_idle while c_idle */
	int			 c_idle;	/* reusable: see server_reuse() */
	struct worker		*c_w;
	int			 c_fd;
	struct event		*c_ev_read;
	struct event		*c_ev_write;
	struct evbuffer		*c_in;
	struct evbuffer		*c_out;
	int			 c_reading;	/* c_ev_read is added */
	int			 c_writing;	/* c_ev_write is added */
	struct event		*c_timer;
	enum conn_state		 c_state;
	int			 c_paused;	/* reading off: output back-pressure */
	int			 c_pipewait;	/* reading off: input past w_pipemax */
	int			 c_eof;		/* client shut its write side */
	unsigned int		 c_nrequests;
	char			 c_client[INET6_ADDRSTRLEN];
	uint8_t			 c_ip[16];	/* client address, binary */
	size_t			 c_iplen;	/* 4, 16, or 0: unknown */

	struct http_msg		 c_msg;
	int			 c_admin;	/* accepted on the admin listener */
	struct conn_admin	*c_adm;		/* admin request awaiting its body */

	/* The request being served. */
	int64_t			 c_start_us;
	int64_t			 c_start_ms;
	int64_t			 c_rate_ms;	/* a rate limit decided; 0: none */
	int			 c_minor;
	int			 c_head;
	int			 c_keepalive;
	int			 c_route;
	enum http_body		 c_body;
	uint64_t		 c_body_left;
	uint64_t		 c_body_bytes;
	int64_t			 c_body_end_us;	/* body_deadline, monotonic; 0 */
	int			 c_body_final;	/* c_timer ends at that deadline */
	struct http_chunked	 c_chunked;
	struct evbuffer		*c_pending;	/* echo body awaiting the request body */
	struct upconn		*c_up;		/* upstream exchange, if proxied */
	int			 c_upwait;	/* reading off: upstream not keeping up */
	size_t			 c_methodlen;
	size_t			 c_pathlen;
	size_t			 c_reqidlen;
	char			 c_method[32];
	char			 c_path[1536];
	char			 c_reqid[FORWARD_REQID_MAX + 1];
	size_t			 c_extralen;	/* extra response headers, */
	char			 c_extra[CONN_EXTRA_MAX];	/* CRLF-ended */
	size_t			 c_identlen;	/* identity headers for the */
	char			 c_ident[CONN_IDENT_MAX];	/* upstream */
	char			 c_keyid[KS_ID_LEN + 4];	/* for the log */
	char			 c_ident_log[JWT_IDENT_MAX + 1]; /* JWT, for the */
								 /* log */
	const char		*c_scheme;	/* deciding scheme, for the log */

	/*
	 * A request held in CONN_AUTHWAIT (conn_hold()): its route, whether
	 * it is a verify_path request, the provider whose keys it waits
	 * for, when it asked and until when it may wait (monotonic ms), and
	 * the credential header values moved out of the input (c_msg points
	 * at them), wiped when the request is done.
	 */
	const struct route	*c_hold_route;
	int			 c_hold_verify;
	int			 c_hold_provider;
	int			 c_hold_final;	/* the next decision is the last */
	int64_t			 c_hold_asked;
	int64_t			 c_hold_until;	/* 0: not held */
	char			*c_hold_cred;
	size_t			 c_hold_credlen;
};

struct worker {
	struct event_base	*w_base;
	const struct server_env	*w_env;
	struct config		*w_conf;
	struct http_limits	 w_limits;
	size_t			 w_scanmax;
	struct evconnlistener	*w_listeners[SERVER_MAX_LISTENERS];
	size_t			 w_nlisteners;
	struct evconnlistener	*w_admin_listener;	/* one of w_listeners */
	struct keystore		 w_ks;
	struct journal		 w_journal;
	struct admin_env	 w_admin;
	struct auth_rate	 w_rate;	/* per request: ra_ip, ra_now */
	struct jwtauth		*w_jwt;		/* NULL: no jwt_provider */
	int			 w_accepting;
	struct accesslog	*w_alog;
	struct shm_worker	*w_stats;
	struct shm_worker	 w_nostats;
	TAILQ_HEAD(, conn)	 w_conns;
	TAILQ_HEAD(, conn)	 w_idle;	/* reusable, oldest first */
	int			 w_nconns;
	int			 w_accept_paused;	/* accept(2) failed: wait */
	struct event		*w_accept_timer;	/* ends that wait */
	int64_t			 w_accept_log_us;	/* last accept error logged */
	unsigned long		 w_accept_errors;	/* since then */
	int64_t			 w_reuse_log_us;	/* last reuse logged */
	unsigned long		 w_reused;		/* since then */
	size_t			 w_pipemax;	/* input kept behind a response */
	int			 w_stopping;
	struct event		*w_sigs[3];
	struct event		*w_stop_timer;
	struct event		*w_parent_timer;
	const struct timeval	*w_tv_idle;
	const struct timeval	*w_tv_header;
	const struct timeval	*w_tv_body;
	const struct timeval	*w_tv_send;
	const struct timeval	*w_tv_linger;
	const struct timeval	*w_tv_stopidle;
	time_t			 w_date_sec;
	char			 w_common[160];	/* see server_common_headers() */
	size_t			 w_commonlen;
	struct upool		*w_pools;	/* one per upstream (proxy.c) */
	uint64_t		 w_reqid_seed;
	uint64_t		 w_reqid_seq;
};

/* server.c, for proxy.c. */
void	 conn_reading(struct conn *, int);
void	 conn_flush(struct conn *);
void	 conn_next(struct conn *);
void	 conn_process(struct conn *);
void	 conn_free(struct conn *);
void	 conn_log(struct conn *, int, uint64_t);
void	 conn_refuse(struct conn *, int, const char *, const char *);
void	 conn_kick(struct conn *);

#endif /* KEYGATE_CONN_H */
