/*
 * The worker: accepts connections on the inherited listeners and serves
 * HTTP/1.1 on libevent events and evbuffers.  See server.h.
 *
 * Each connection's bytes go through its io (io.h: plain or TLS): one read
 * per readable event, and the responses a callback produced written at its
 * end, the write event armed only when the socket would block.
 *
 * A request goes through these steps, each its own function:
 *	accept		server_accept_cb(): a connection, TLS or not
 *	parse		conn_headers(): the header section, credentials hidden
 *	route		conn_dispatch(): admin, verify_path or a route
 *	authenticate	conn_authenticate(): auth_check(), or hold a JWT
 *	limit		conn_limit(): auth_limit(), the rate limit
 *	forward		conn_forward(): the upstream (proxy.c) or echo
 *	finish		conn_finish(): statistics, access log, next request
 * Every response keygate queues, its own or an upstream's, ends in
 * conn_finish().
 *
 * A connection moves through the states of enum conn_state.  Requests on a
 * connection are served one at a time, in order (pipelined requests wait in
 * the input buffer until the previous response is queued), and reading
 * stops while more than IO_MAX_OUTPUT bytes of responses wait for a slow
 * client, so that a client that does not read cannot make the worker
 * buffer without bound.
 *
 * Connections are only ever freed at the end of a libevent callback
 * (read, write, event, timer), never from inside conn_process(), so no code
 * below it has to wonder whether its struct conn still exists.
 *
 * What a client can make the worker hold is bounded.  Input: while a
 * response is pending (CONN_PROXY) at most w_pipemax bytes of pipelined
 * requests are read ahead; the socket is read again once the response is
 * done.  A request body must arrive within body_deadline as a whole, not
 * only body_timeout between reads.  Connections: at max_connections the
 * worker closes the connection that has waited longest for a request (idle
 * keep-alive, or never used: both are on w_idle, oldest first) to accept a
 * new one, as nginx reuses its "reusable" connections.  Descriptors: when
 * accept(2) fails (EMFILE...) the listeners are switched off for a moment
 * instead of spinning on a readable listener.
 */

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/uio.h>
#ifdef HAVE_SYS_PRCTL_H
#include <sys/prctl.h>
#endif
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "accesslog.h"
#include "admin.h"
#include "adminq.h"
#include "auth.h"
#include "cluster.h"
#include "config.h"
#include "echo.h"
#include "forward.h"
#include "http.h"
#include "io.h"
#include "journal.h"
#include "jwks.h"
#include "jwt.h"
#include "lease.h"
#include "jwtauth.h"
#include "keystore.h"
#include "log.h"
#include "master.h"
#include "proxy.h"
#include "route.h"
#include "secret.h"
#include "server.h"
#include "shm.h"
#include "stats.h"
#include "tls.h"
#include "util.h"

#define SERVER_DISCARD_MAX	(1024 * 1024)	/* refused body dropped up to this */
#define SERVER_LINGER_MS	2000		/* drain input after the last response */
#define SERVER_STOP_IDLE_MS	1000		/* idle keep-alive grace when stopping */
#define SERVER_CRED_STACK	1024		/* credentials copied on the stack */
#define SERVER_ACCEPT_PAUSE_MS	500		/* accept(2) failed: wait */
#define SERVER_LOG_EVERY_US	1000000		/* repeated warnings: 1/s */
#define SERVER_PIPELINE_HDRS	4	/* read-ahead, in max_header_size */

#define SERVER_MAX_LISTENERS	16
#define SERVER_DRAIN_MAX	(MASTER_BACKLOG + 1)	/* per listener */
#define CONN_EXTRA_MAX		2816	/* extra response header bytes: */
					/* rate headers + identity (verify) */
#define CONN_IDENT_MAX		2304	/* identity header bytes (a JWT's */
					/* scopes and headers= included) */
#define CONN_HOLD_POLL_MS	10	/* a held request looks this often */
#define CONN_LEASE_POLL_US	1000	/* ... for a unit of cluster quota */

enum conn_state {
	CONN_IDLE,	/* between requests */
	CONN_HEADERS,	/* reading a request's header section */
	CONN_BODY,	/* reading the body of a request being served */
	CONN_DISCARD,	/* reading and dropping the body of a refused request */
	CONN_AUTHWAIT,	/* header read; a JWT waits for its provider's keys */
	CONN_ADMINWAIT,	/* an admin write runs on an admin thread (adminq) */
	CONN_PROXY,	/* request read; the upstream's answer is on its way */
	CONN_TUNNEL,	/* upgraded (101): bytes both ways, proxy.c */
	CONN_CLOSING,	/* writing the last response, then close */
	CONN_LINGER,	/* write side shut, draining input until EOF */
	CONN_DEAD	/* to be freed at the end of the callback */
};

struct worker;
struct conn_admin;

/*
 * What a request needs while it is served: its parsed header section,
 * what the access log keeps of it, the headers keygate adds to its
 * response and sends to the upstream.  Allocated when a request begins
 * and freed when the connection waits for the next one with nothing
 * buffered (conn_idle_add()), so that an idle connection, plain or TLS,
 * holds only its struct conn (nginx keeps its request apart from its
 * connection for the same reason).
 */
struct conn_req {
	struct http_msg		 rq_msg;
	size_t			 rq_methodlen;
	size_t			 rq_pathlen;
	size_t			 rq_reqidlen;
	char			 rq_method[32];
	char			 rq_path[1536];
	char			 rq_reqid[FORWARD_REQID_MAX + 1];
	size_t			 rq_extralen;	/* extra response headers, */
	char			 rq_extra[CONN_EXTRA_MAX];	/* CRLF-ended */
	size_t			 rq_identlen;	/* identity headers for the */
	char			 rq_ident[CONN_IDENT_MAX];	/* upstream */
	char			 rq_keyid[KS_ID_LEN + 4];	/* for the log */
	char			 rq_ident_log[JWT_IDENT_MAX + 1]; /* JWT, for */
								  /* the log */
};

struct conn {
	TAILQ_ENTRY(conn)	 c_entry;
	TAILQ_ENTRY(conn)	 c_idle_entry;	/* in w_idle while c_idle */
	int			 c_idle;	/* reusable: see server_reuse() */
	struct worker		*c_w;
	struct io		 c_io;
	struct evbuffer		*c_in;		/* c_io's buffers */
	struct evbuffer		*c_out;
	struct event		*c_timer;
	enum conn_state		 c_state;
	int			 c_paused;	/* reading off: output back-pressure */
	int			 c_pipewait;	/* reading off: input past w_pipemax */
	int			 c_upwait;	/* reading off: upstream not keeping up */
	int			 c_eof;		/* client shut its write side */
	int			 c_tls;		/* accepted on a TLS listener */
	int			 c_tls_counted;	/* its handshake is counted */
	unsigned int		 c_nrequests;
	char			 c_client[INET6_ADDRSTRLEN];
	uint8_t			 c_ip[16];	/* client address, binary */
	size_t			 c_iplen;	/* 4, 16, or 0: unknown */
	/*
	 * The request's real client (realip.h): the peer, or the address a
	 * trusted peer named in real_ip_header.  Anonymous limits, from=,
	 * the access log.
	 */
	char			 c_rclient[INET6_ADDRSTRLEN];
	uint8_t			 c_rip[16];
	size_t			 c_riplen;
	int			 c_xff_keep;	/* forward the incoming */
						/* X-Forwarded-For */
	int			 c_health;	/* a health_path request */
	int			 c_tunnel;	/* CONN_TUNNEL was entered: the */
						/* request is logged even if cut */

	struct conn_req		*c_rq;		/* the request; NULL when idle */
	int			 c_admin;	/* accepted on the admin listener */
	int			 c_metrics;	/* accepted on metrics_listen */
	int			 c_gauge;	/* its keygate_connections state */
						/* (enum stats_conn), -1: none */
	struct conn_admin	*c_adm;		/* admin request awaiting its body */
	struct adminq_job	*c_job;		/* CONN_ADMINWAIT: its job */

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
	int64_t			 c_lease_until;	/* a unit of the cluster's */
						/* quota (provider -1): 0 */
						/* when not waiting for one */
	char			*c_hold_cred;
	size_t			 c_hold_credlen;
};

/* A listener of the worker: the accept callback's argument. */
struct server_listener {
	struct worker		*sl_w;
	struct evconnlistener	*sl_lev;
	int			 sl_tls;	/* "listen ADDR tls" */
	int			 sl_admin;	/* the admin listener */
	int			 sl_metrics;	/* metrics_listen */
};

struct worker {
	struct event_base	*w_base;
	const struct server_env	*w_env;
	struct config		*w_conf;
	struct http_limits	 w_limits;
	size_t			 w_scanmax;
	struct server_listener	 w_listeners[SERVER_MAX_LISTENERS];
	size_t			 w_nlisteners;
	struct keystore		 w_ks;
	struct journal		 w_journal;
	struct admin_env	 w_admin;
	struct adminq		*w_adminq;	/* admin threads; NULL: none */
	struct auth_rate	 w_rate;	/* per request: ra_ip, ra_now */
	struct jwtauth		*w_jwt;		/* NULL: no jwt_provider */
	char			*w_ui_scopes;	/* the routes' scopes */
	json_t			*w_gateway;	/* for GET /v1/gateway */
	int			 w_accepting;
	struct accesslog	*w_alog;
	struct shm_worker	*w_stats;
	struct shm_worker	 w_nostats;
	struct stats_slot	*w_ss;		/* this worker's metrics (stats.h) */
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
	struct proxy		*w_proxy;	/* the upstream side (proxy.c) */
	uint64_t		 w_reqid_seed;
	uint64_t		 w_reqid_seq;
};

static void	 conn_head_type(struct conn *, int, uint64_t, const char *);
static void	 conn_extra(struct conn *, const char *, const char *);
static void	 conn_refuse(struct conn *, int, const char *, const char *);
static void	 conn_real_client(struct conn *, const struct http_msg *);
static void	 conn_finish(struct conn *, int, uint64_t);

/* Where a worker without a slot (unit tests) counts: read by nobody. */
static struct stats_slot	 server_nostats;

/* An admin request whose body is being read (the header is gone by then). */
struct conn_admin {
	int	 ca_mbit;
	char	*ca_target;	/* path and query */
	char	*ca_h[5];	/* values of conn_admin_headers[], or NULL */
};

/* The headers admin_handle() reads, in conn_admin's order. */
static const char *const conn_admin_headers[5] = {
	"authorization", "idempotency-key", "cookie", "x-csrf-token",
	"if-none-match"
};

static void	 server_stop(struct worker *);
static char	*server_scopes(const struct config *);
static json_t	*server_gateway_json(const struct config *);
static void	 server_listen_update(struct worker *);
static void	 conn_admin_free(struct conn *);
static void	 conn_decide(struct conn *, const struct route *, int);
static void	 conn_next(struct conn *);
static void	 conn_reading(struct conn *, int);
static void	 conn_process(struct conn *);
static void	 conn_flush(struct conn *);
static void	 conn_free(struct conn *);

/* splitmix64: a cheap, well-mixed 64-bit step for request ids. */
static uint64_t
server_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return (x ^ (x >> 31));
}

/*
 * Secrets in the worker's buffers.  A request's credentials (the API key
 * header, Authorization: Basic secrets and the admin token), the JSON
 * bodies of admin requests (a key sent to /v1/verify) and admin answers
 * that carry a new secret are wiped with OPENSSL_cleanse once used, so
 * that neither a core file nor a reader of the worker's memory finds them
 * after the request:
 *   - credential header values are moved out of the input buffer before
 *     the request is dispatched (conn_hide_credentials()): the input keeps
 *     zeros, the parsed header points at a copy that is wiped when the
 *     dispatch returns (everything that reads the header section, the
 *     proxy's request head included, runs inside it);
 *   - the input is read without libevent moving buffered bytes
 *     (conn_read_cb()) and made contiguous without leaving copies behind
 *     (conn_pullup()): evbuffer_pullup() would free the chains it copied;
 *   - admin bodies are copied out of the input and wiped there, and wiped
 *     in c_pending when answered; admin answers go out by reference and
 *     are wiped when written (conn_wipe_ref()); jansson frees through
 *     secret_json_free(), which wipes.
 * Not wiped: credentials passed on to an upstream with forward_credentials
 * on (the operator sends them on by choice), and what the kernel holds.
 */

/* Wipe and drain the first n bytes of b. */
static void
conn_wipe_drain(struct evbuffer *b, size_t n)
{
	struct evbuffer_iovec	 v[8];
	size_t			 k, done;
	int			 i, nv;

	while (n > 0) {
		nv = evbuffer_peek(b, (ssize_t)n, NULL, v, 8);
		if (nv <= 0)
			return;
		for (i = 0, done = 0; i < nv && i < 8 && done < n; i++) {
			k = v[i].iov_len < n - done ? v[i].iov_len : n - done;
			OPENSSL_cleanse(v[i].iov_base, k);
			done += k;
		}
		evbuffer_drain(b, done);
		n -= done;
	}
}

/*
 * The first len bytes of b, contiguous, like evbuffer_pullup(); but when
 * they span chains, the copies evbuffer_pullup() would free are wiped
 * first: the bytes are copied out, wiped and drained, and put back in
 * front as one chain of their own.  Not with evbuffer_prepend(): it fills
 * the free space in front of the next chain first and puts the rest in a
 * new chain, which evbuffer_pullup() would then copy and free unwiped.
 * evbuffer_prepend_buffer() moves the chain, so nothing is copied again.
 * NULL if out of memory.
 */
static unsigned char *
conn_pullup(struct evbuffer *b, size_t len)
{
	struct evbuffer	*one;
	unsigned char	*tmp;
	int		 rc = -1;

	if (evbuffer_get_contiguous_space(b) >= len)
		return (evbuffer_pullup(b, (ssize_t)len));
	if ((tmp = malloc(len)) == NULL)
		return (NULL);
	if ((one = evbuffer_new()) == NULL)
		goto done;
	evbuffer_copyout(b, tmp, len);
	if (evbuffer_add(one, tmp, len) == 0) {
		conn_wipe_drain(b, len);
		rc = evbuffer_prepend_buffer(b, one);
	}
	conn_wipe_drain(one, evbuffer_get_length(one));
	evbuffer_free(one);
done:
	OPENSSL_cleanse(tmp, len);
	free(tmp);
	return (rc == 0 ? evbuffer_pullup(b, (ssize_t)len) : NULL);
}

/* evbuffer cleanup of a reference to a malloc'ed secret: wipe and free. */
static void
conn_wipe_ref(const void *data, size_t len, void *arg)
{
	(void)arg;
	OPENSSL_cleanse((void *)(uintptr_t)data, len);
	free((void *)(uintptr_t)data);
}

/* Is h a credential header (the key header or Authorization)? */
static int
conn_is_credential(const struct conn *c, const struct http_header *h)
{
	return (http_strcaseeq(h->h_name, h->h_namelen, "authorization") ||
	    http_strcaseeq(h->h_name, h->h_namelen,
	    c->c_w->w_conf->c_api_key_header));
}

/*
 * Move the values of the credential headers of the parsed request into
 * buf (len bytes; *heap set to a malloc'ed one when they do not fit) and
 * wipe them in the input; the parsed headers point at the copies.
 * Returns the bytes used, to be wiped (and *heap freed) by the caller
 * after the dispatch.  Out of memory: nothing moves.
 */
static size_t
conn_hide_credentials(struct conn *c, char *buf, size_t len, char **heap)
{
	struct http_msg		*m = &c->c_rq->rq_msg;
	struct http_header	*h;
	size_t			 i, need = 0, off = 0;

	*heap = NULL;
	for (i = 0; i < m->hm_nheaders; i++)
		if (conn_is_credential(c, &m->hm_headers[i]))
			need += m->hm_headers[i].h_valuelen;
	if (need == 0)
		return (0);
	if (need > len) {
		if ((*heap = malloc(need)) == NULL)
			return (0);
		buf = *heap;
	}
	for (i = 0; i < m->hm_nheaders; i++) {
		h = &m->hm_headers[i];
		if (!conn_is_credential(c, h))
			continue;
		memcpy(buf + off, h->h_value, h->h_valuelen);
		/* The input buffer's own memory (see conn_headers()). */
		OPENSSL_cleanse((char *)(uintptr_t)h->h_value, h->h_valuelen);
		h->h_value = buf + off;
		off += h->h_valuelen;
	}
	return (off);
}

/*
 * The headers every response of keygate's own shares (Server, Date):
 * rebuilt once a second, when the Date changes.
 */
static void
server_common_headers(struct worker *w)
{
	struct timeval	 tv;
	struct tm	 tm;
	char		 date[40];
	int		 n;

	event_base_gettimeofday_cached(w->w_base, &tv);
	if (tv.tv_sec == w->w_date_sec)
		return;
	w->w_date_sec = tv.tv_sec;
	gmtime_r(&w->w_date_sec, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	n = snprintf(w->w_common, sizeof(w->w_common), "Server: keygate\r\n"
	    "Date: %s\r\n", date);
	w->w_commonlen = n > 0 && (size_t)n < sizeof(w->w_common) ? (size_t)n : 0;
}

/* (Re)arm the connection's single timer with a common timeout. */
static void
conn_timer(struct conn *c, const struct timeval *tv)
{
	evtimer_add(c->c_timer, tv);
}

/*
 * Arm the timer of a connection reading a body: body_timeout from now, or
 * what is left until body_deadline if that comes first.  The common
 * timeout serves the usual case; only the last stretch before the deadline
 * takes an ordinary timer.
 */
static void
conn_body_timer(struct conn *c)
{
	struct worker	*w = c->c_w;
	struct timeval	 tv;
	int64_t		 left;

	c->c_body_final = 0;
	if (c->c_body_end_us != 0) {
		left = c->c_body_end_us - util_mono_us();
		if (left < (int64_t)w->w_conf->c_body_timeout * 1000) {
			if (left < 0)
				left = 0;
			tv.tv_sec = (time_t)(left / 1000000);
			tv.tv_usec = (suseconds_t)(left % 1000000);
			evtimer_add(c->c_timer, &tv);
			c->c_body_final = 1;
			return;
		}
	}
	conn_timer(c, w->w_tv_body);
}

/* A body begins (header section done): set its deadline and its timer. */
static void
conn_body_start(struct conn *c)
{
	int	 ms = c->c_w->w_conf->c_body_deadline;

	c->c_body_end_us = ms > 0 ? util_mono_us() + (int64_t)ms * 1000 : 0;
	conn_body_timer(c);
}

/*
 * w_idle holds the connections the worker may close to make room for a new
 * one: those waiting for a request (CONN_IDLE) with nothing buffered either
 * way, which a client may see closed at any time anyway (keepalive_timeout,
 * header_timeout).  Oldest first: a connection goes to the tail when it
 * becomes idle and leaves when its next request begins or it closes.
 */
static void
conn_idle_add(struct conn *c)
{
	struct worker	*w = c->c_w;

	if (c->c_idle)
		return;
	free(c->c_rq);		/* nothing refers to it any more */
	c->c_rq = NULL;
	io_idle(&c->c_io);
	TAILQ_INSERT_TAIL(&w->w_idle, c, c_idle_entry);
	c->c_idle = 1;
	if (w->w_nconns >= w->w_conf->c_max_connections)
		server_listen_update(w);
}

/* Take c off the reusable list: a request begins, or it closes. */
static void
conn_idle_remove(struct conn *c)
{
	struct worker	*w = c->c_w;

	if (!c->c_idle)
		return;
	TAILQ_REMOVE(&w->w_idle, c, c_idle_entry);
	c->c_idle = 0;
	if (w->w_nconns >= w->w_conf->c_max_connections)
		server_listen_update(w);
}

/*
 * Queue the status line and headers, assembled with memcpy (this runs for
 * every response).  Connection: close goes out whenever the connection will
 * not be reused, keep-alive for HTTP/1.0 clients that asked for it.
 */
static void
conn_head(struct conn *c, int status, uint64_t clen)
{
	conn_head_type(c, status, clen, "application/json");
}

/* conn_head() with another Content-Type (at most 64 bytes). */
static void
conn_head_type(struct conn *c, int status, uint64_t clen, const char *type)
{
	struct worker	*w = c->c_w;
	char		 buf[1024 + CONN_EXTRA_MAX], *p = buf;
	const char	*reason = http_reason(status);
	size_t		 len = strlen(reason), tlen = strnlen(type, 64);

	server_common_headers(w);
	memcpy(p, "HTTP/1.1 ", 9);
	p[9] = (char)('0' + status / 100 % 10);
	p[10] = (char)('0' + status / 10 % 10);
	p[11] = (char)('0' + status % 10);
	p[12] = ' ';
	p += 13;
	if (len > 64)
		len = 64;
	memcpy(p, reason, len);
	p += len;
	memcpy(p, "\r\n", 2);
	p += 2;
	memcpy(p, w->w_common, w->w_commonlen);
	p += w->w_commonlen;
	if (status != 204 && status != 304) {	/* which have neither */
		memcpy(p, "Content-Type: ", 14);
		p += 14;
		memcpy(p, type, tlen);
		p += tlen;
		memcpy(p, "\r\nContent-Length: ", 18);
		p += 18;
		p += util_u64toa(p, clen);
		memcpy(p, "\r\n", 2);
		p += 2;
	}
	memcpy(p, "X-Request-Id: ", 14);
	p += 14;
	memcpy(p, c->c_rq->rq_reqid, c->c_rq->rq_reqidlen);
	p += c->c_rq->rq_reqidlen;
	if (!c->c_keepalive) {
		memcpy(p, "\r\nConnection: close", 19);
		p += 19;
	} else if (c->c_minor == 0) {
		memcpy(p, "\r\nConnection: keep-alive", 24);
		p += 24;
	}
	memcpy(p, "\r\n", 2);
	p += 2;
	memcpy(p, c->c_rq->rq_extra, c->c_rq->rq_extralen);
	p += c->c_rq->rq_extralen;
	memcpy(p, "\r\n", 2);
	p += 2;
	evbuffer_add(c->c_out, buf, (size_t)(p - buf));
}

/*
 * GET /metrics on metrics_listen: the exposition without a token (the
 * address is for a scraper on a private network); anything else is 404.
 */
static void
conn_metrics(struct conn *c)
{
	const struct http_msg	*m = &c->c_rq->rq_msg;
	struct admin_response	 as;
	size_t			 before;

	if (m->hm_pathlen != 8 || memcmp(m->hm_path, "/metrics", 8) != 0) {
		conn_refuse(c, 404, "not_found", "this address serves only "
		    "/metrics");
		return;
	}
	if (m->hm_mbit != HTTP_M_GET && m->hm_mbit != HTTP_M_HEAD) {
		conn_extra(c, "Allow", "GET, HEAD");
		conn_refuse(c, 405, "method_not_allowed", "/metrics allows "
		    "GET, HEAD");
		return;
	}
	memset(&as, 0, sizeof(as));
	if (admin_metrics_answer(&c->c_w->w_admin, &as) == -1) {
		conn_refuse(c, 500, "internal_error", "out of memory");
		return;
	}
	before = evbuffer_get_length(c->c_out);
	conn_head_type(c, as.as_status, as.as_bodylen, as.as_type);
	if (!c->c_head)
		evbuffer_add(c->c_out, as.as_body, as.as_bodylen);
	admin_response_free(&as);
	conn_finish(c, as.as_status, evbuffer_get_length(c->c_out) - before);
}

/*
 * Every change of c_state goes through here, which keeps the
 * keygate_connections{state} gauges: reading (a TLS handshake, a request's
 * head or body), writing (waiting on or writing the answer), idle
 * (keep-alive).  A TLS connection is idle only once its handshake is done
 * (conn_tls_count() sets its state again then).
 */
static void
conn_set_state(struct conn *c, enum conn_state s)
{
	static const int gauge[] = {
		[CONN_IDLE] = STATS_CONN_IDLE,
		[CONN_HEADERS] = STATS_CONN_READING,
		[CONN_BODY] = STATS_CONN_READING,
		[CONN_DISCARD] = STATS_CONN_READING,
		[CONN_AUTHWAIT] = STATS_CONN_WRITING,
		[CONN_ADMINWAIT] = STATS_CONN_WRITING,
		[CONN_PROXY] = STATS_CONN_WRITING,
		[CONN_TUNNEL] = STATS_CONN_WRITING,
		[CONN_CLOSING] = STATS_CONN_WRITING,
		[CONN_LINGER] = STATS_CONN_WRITING,
		[CONN_DEAD] = -1
	};
	int			 g = gauge[s];

	if (s == CONN_IDLE && c->c_tls && !c->c_tls_counted)
		g = STATS_CONN_READING;
	c->c_state = s;
	stats_conn_move(c->c_w->w_ss, c->c_gauge, g);
	c->c_gauge = g;
}

/* Account for a queued response: statistics and the access log. */
static void
conn_log(struct conn *c, int status, uint64_t bytes)
{
	struct worker		*w = c->c_w;
	const struct route_table *rt = &w->w_conf->c_routes;
	const struct route	*r = c->c_route > 0 &&
				    (size_t)c->c_route <= rt->rt_nroutes ?
				    &rt->rt_routes[c->c_route - 1] : NULL;
	struct accesslog_entry	 e;
	int64_t			 us = util_mono_us() - c->c_start_us;

	SHM_ADD(&w->w_stats->sw_requests, 1);
	SHM_ADD(&w->w_stats->sw_bytes_out, bytes);
	/* Gateway traffic only: not the admin API, not the scrapes. */
	if (!c->c_admin && !c->c_metrics && !c->c_health)
		stats_request(w->w_ss, r != NULL ? r->r_stat_id :
		    STATS_ROUTE_NONE, status, us);
	c->c_nrequests++;
	if (w->w_alog == NULL)
		return;
	e.ae_time_ms = c->c_start_ms;
	e.ae_client = c->c_rclient;
	e.ae_method = c->c_rq->rq_method;
	e.ae_methodlen = c->c_rq->rq_methodlen;
	e.ae_path = c->c_rq->rq_path;
	e.ae_pathlen = c->c_rq->rq_pathlen;
	e.ae_route = c->c_route;
	e.ae_route_name = r != NULL ? r->r_name : NULL;
	e.ae_status = status;
	e.ae_bytes = bytes;
	e.ae_duration_us = us;
	e.ae_reqid = c->c_rq->rq_reqid;
	e.ae_reqidlen = c->c_rq->rq_reqidlen;
	e.ae_key = c->c_rq->rq_keyid;
	e.ae_scheme = c->c_scheme;
	e.ae_identity = c->c_rq->rq_ident_log;
	e.ae_rate_ms = c->c_rate_ms;
	e.ae_tls = io_tls_version(&c->c_io);
	e.ae_tls_resumed = io_tls_resumed(&c->c_io);
	accesslog_write(w->w_alog, &e);
}

/* A new request id: unique per worker by a counter, across workers by a seed. */
static void
conn_new_reqid(struct conn *c)
{
	struct worker	*w = c->c_w;
	uint64_t	 h;

	h = server_mix(w->w_reqid_seed + ++w->w_reqid_seq);
	util_hex64(c->c_rq->rq_reqid, h);
	util_hex64(c->c_rq->rq_reqid + 16, server_mix(h));
	c->c_rq->rq_reqidlen = 32;
}

/*
 * Queue keygate's own response: the head, and for a status other than 204
 * the JSON refusal {"error": code, "message": message}.  Returns the bytes
 * queued.
 */
static uint64_t
conn_respond(struct conn *c, int status, const char *code,
    const char *message)
{
	struct evbuffer	*out = c->c_out;
	char		 body[1024];
	size_t		 off, need, before = evbuffer_get_length(out);
	int		 n;

	if (status == 204) {
		conn_head(c, 204, 0);
		return (evbuffer_get_length(out) - before);
	}
	n = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"message\":\"",
	    code);
	off = (size_t)n;
	need = util_json_escape(body + off, sizeof(body) - off - 4, message,
	    strlen(message));
	if (need <= sizeof(body) - off - 4)
		off += need;
	memcpy(body + off, "\"}\n", 3);
	off += 3;
	conn_head(c, status, off);
	if (!c->c_head)
		evbuffer_add(out, body, off);
	return (evbuffer_get_length(out) - before);
}

/*
 * Can the body of a refused request be read and dropped, keeping the
 * connection?  Not when the client waits for 100-continue (it may never
 * send the body), and not for bodies larger than SERVER_DISCARD_MAX.
 */
static int
conn_can_discard(const struct conn *c)
{
	if (c->c_body == HTTP_BODY_NONE)
		return (1);
	if (c->c_rq->rq_msg.hm_flags & HTTP_F_EXPECT100)
		return (0);
	return (c->c_body == HTTP_BODY_CHUNKED ||
	    c->c_body_left <= SERVER_DISCARD_MAX);
}

/*
 * The last step of every request: its response (status, bytes) is queued.
 * Count it and log it, then move on: drop the rest of a body nobody read
 * (CONN_DISCARD) if the connection can be kept, else wait for the next
 * request or close (conn_next()).
 */
static void
conn_finish(struct conn *c, int status, uint64_t bytes)
{
	conn_log(c, status, bytes);
	/* The next request's client is the peer until its header says. */
	conn_real_client(c, NULL);
	if (c->c_body != HTTP_BODY_NONE && !conn_can_discard(c))
		c->c_keepalive = 0;
	if (c->c_body == HTTP_BODY_NONE || !c->c_keepalive) {
		c->c_body = HTTP_BODY_NONE;
		conn_next(c);
		return;
	}
	conn_set_state(c, CONN_DISCARD);
	conn_body_start(c);
}

/* Answer the request with a refusal (or a bare 204) and finish it. */
static void
conn_refuse(struct conn *c, int status, const char *code, const char *message)
{
	conn_finish(c, status, conn_respond(c, status, code, message));
}

/* Refuse with a status of the HTTP layer and close the connection. */
static void
conn_fail(struct conn *c, int status, const char *cause)
{
	const char	*code;
	int		 started;

	switch (status) {
	case 408:
		code = "request_timeout";
		break;
	case 413:
		code = "body_too_large";
		break;
	case 414:
		code = "uri_too_long";
		break;
	case 417:
		code = "expectation_failed";
		break;
	case 431:
		code = "headers_too_large";
		break;
	case 500:
		code = "internal_error";
		break;
	case 505:
		code = "http_version_not_supported";
		break;
	default:
		status = 400;
		code = "bad_request";
		break;
	}
	c->c_keepalive = 0;
	if (c->c_up != NULL) {
		started = proxy_response_started(c->c_up);
		proxy_detach(c->c_up);
		c->c_up = NULL;
		c->c_upwait = 0;
		if (started) {		/* too late to answer: just close */
			conn_set_state(c, CONN_CLOSING);
			conn_timer(c, c->c_w->w_tv_send);
			return;
		}
	}
	if (c->c_rq->rq_reqidlen == 0)	/* refused before parsing */
		conn_new_reqid(c);
	if (c->c_pending != NULL)	/* an admin body may hold a secret */
		conn_wipe_drain(c->c_pending, evbuffer_get_length(c->c_pending));
	conn_admin_free(c);
	conn_refuse(c, status, code, cause);	/* and closes */
}

/* Queue the echo response built in c_pending. */
static void
conn_echo_respond(struct conn *c)
{
	struct evbuffer	*out = c->c_out;
	size_t		 before = evbuffer_get_length(out);

	echo_finish(c->c_pending, c->c_body_bytes);
	conn_head(c, 200, evbuffer_get_length(c->c_pending));
	if (c->c_head)
		evbuffer_drain(c->c_pending, evbuffer_get_length(c->c_pending));
	else
		evbuffer_add_buffer(out, c->c_pending);
	conn_finish(c, 200, evbuffer_get_length(out) - before);
}

/* Copy what the access log needs before the header bytes are drained. */
static void
conn_remember(struct conn *c)
{
	const struct http_msg	*m = &c->c_rq->rq_msg;
	const char		*id;
	size_t			 len;

	c->c_rq->rq_methodlen = m->hm_methodlen < sizeof(c->c_rq->rq_method) ?
	    m->hm_methodlen : sizeof(c->c_rq->rq_method);
	memcpy(c->c_rq->rq_method, m->hm_method, c->c_rq->rq_methodlen);
	c->c_rq->rq_pathlen = m->hm_pathlen < sizeof(c->c_rq->rq_path) ?
	    m->hm_pathlen : sizeof(c->c_rq->rq_path);
	memcpy(c->c_rq->rq_path, m->hm_path, c->c_rq->rq_pathlen);
	if (forward_client_reqid(m, &id, &len)) {
		memcpy(c->c_rq->rq_reqid, id, len);
		c->c_rq->rq_reqidlen = len;
	} else
		conn_new_reqid(c);
}

/* Tell a client waiting for it (Expect: 100-continue) to send its body. */
static void
conn_continue(struct conn *c)
{
	if ((c->c_rq->rq_msg.hm_flags & HTTP_F_EXPECT100) && c->c_minor == 1 &&
	    c->c_body != HTTP_BODY_NONE &&
	    evbuffer_get_length(c->c_in) == c->c_rq->rq_msg.hm_hdrlen)
		evbuffer_add(c->c_out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
}

/*
 * A request keygate answers itself once its body is read (echo, admin):
 * without a body, respond at once; else (after 100 Continue if the client
 * waits for it) read the body: conn_body() calls respond at its end.  The
 * header section is still in the input.  respond finishes the request.
 */
static void
conn_await_body(struct conn *c, void (*respond)(struct conn *))
{
	if (c->c_body == HTTP_BODY_NONE) {
		respond(c);
		return;
	}
	conn_continue(c);
	conn_set_state(c, CONN_BODY);
	conn_body_start(c);
}

/* proxy.c's view of the client: see proxy_client_ops. */
static void
conn_pc_reading(void *arg, int on)
{
	struct conn	*c = arg;

	c->c_upwait = !on;
	conn_reading(c, on);
}

static int
conn_pc_keepalive(void *arg, int close)
{
	struct conn	*c = arg;

	if (close || c->c_w->w_stopping)
		c->c_keepalive = 0;
	return (c->c_keepalive);
}

static void
conn_pc_refuse(void *arg, int status, const char *code, const char *message)
{
	struct conn	*c = arg;

	c->c_up = NULL;
	conn_refuse(c, status, code, message);
}

static void
conn_pc_done(void *arg, int status, uint64_t bytes)
{
	struct conn	*c = arg;

	c->c_up = NULL;
	conn_finish(c, status, bytes);
}

/*
 * The upstream agreed to the upgrade: what the client sends from now on
 * (and whatever it sent after the request, held back until now) goes to
 * the upstream as it comes.
 */
static void
conn_pc_tunnel(void *arg)
{
	struct conn	*c = arg;

	conn_set_state(c, CONN_TUNNEL);
	c->c_tunnel = 1;
	if (c->c_pipewait) {
		c->c_pipewait = 0;
		conn_reading(c, 1);
	}
}

/*
 * A tunnel's input: what the client sent goes to the upstream, and its
 * EOF (even one seen before the 101) after the last of it.
 */
static void
conn_tunnel_input(struct conn *c)
{
	if (evbuffer_get_length(c->c_in) > 0)
		proxy_tunnel_send(c->c_up, c->c_in);
	if (c->c_eof)
		proxy_tunnel_eof(c->c_up);
}

static void	 conn_kick(void *);

static const struct proxy_client_ops conn_proxy_ops = {
	conn_pc_reading, conn_pc_keepalive, conn_pc_refuse, conn_pc_done,
	conn_kick, conn_pc_tunnel
};

/* The headers keygate adds to c's request when forwarding it. */
static void
conn_added(const struct conn *c, struct forward_added *fa)
{
	fa->fa_client = c->c_client;
	fa->fa_xff_keep = c->c_xff_keep;
	fa->fa_tls = c->c_tls;
	fa->fa_reqid = c->c_rq->rq_reqid;
	fa->fa_reqidlen = c->c_rq->rq_reqidlen;
	fa->fa_ident = c->c_rq->rq_ident;
	fa->fa_identlen = c->c_rq->rq_identlen;
}

/*
 * Forward the request on route r to its upstream: proxied, the head goes
 * out now and the body streams after it (conn_body()); echo answers once
 * the body is read.  The caller drains the header section.
 */
static void
conn_forward(struct conn *c, const struct route *r)
{
	struct proxy_request	 pq;
	struct forward_policy	 fp;
	struct forward_added	 fa;
	const char		*why;

	if (r->r_upstream->u_type == UPSTREAM_HTTP) {
		memset(&pq, 0, sizeof(pq));
		pq.pq_msg = &c->c_rq->rq_msg;
		pq.pq_body = c->c_body;
		pq.pq_minor = c->c_minor;
		conn_added(c, &pq.pq_fwd);
		pq.pq_extra = c->c_rq->rq_extra;
		pq.pq_extralen = c->c_rq->rq_extralen;
		pq.pq_rate = c->c_rate_ms != 0;
		/* A request with a body is passed on, but not upgraded. */
		pq.pq_upgrade = (c->c_rq->rq_msg.hm_flags & HTTP_F_UPGRADE) &&
		    c->c_body == HTTP_BODY_NONE &&
		    proxy_upgradable(&c->c_rq->rq_msg);
		pq.pq_out = c->c_out;
		pq.pq_ops = &conn_proxy_ops;
		pq.pq_arg = c;
		if ((c->c_up = proxy_start(c->c_w->w_proxy, r->r_upstream,
		    &pq, &why)) == NULL) {
			conn_refuse(c, 502, "upstream_unavailable", why);
			return;
		}
		conn_continue(c);
		if (c->c_body == HTTP_BODY_NONE) {
			conn_set_state(c, CONN_PROXY);
			evtimer_del(c->c_timer);  /* the upstream's timers rule */
		} else {
			conn_set_state(c, CONN_BODY);
			conn_body_start(c);
		}
		return;
	}
	if (c->c_pending == NULL && (c->c_pending = evbuffer_new()) == NULL) {
		conn_fail(c, 500, "out of memory");
		return;
	}
	forward_policy_init(&fp, c->c_w->w_conf);
	conn_added(c, &fa);
	echo_begin(c->c_pending, &c->c_rq->rq_msg, &fa, &fp);
	conn_await_body(c, conn_echo_respond);
}

/*
 * Hold the request on route r (verify: a verify_path request) while
 * provider p's keys are re-fetched (auth.h, AUTH_PENDING): the state
 * machine leaves it in CONN_AUTHWAIT with reading off, and the timer
 * looks every CONN_HOLD_POLL_MS whether the wait is over (conn_resume()).
 * The first hold of a request sets its deadline, JWKS_HOLD_MS on.
 */
static void
conn_hold(struct conn *c, const struct route *r, int verify, int p,
    int64_t now)
{
	struct timeval	 tv = { 0, CONN_HOLD_POLL_MS * 1000 };

	if (p == -1) {		/* a unit of the cluster's quota */
		if (c->c_lease_until == 0)
			c->c_lease_until = now + LS_WAIT_MS;
		tv.tv_usec = CONN_LEASE_POLL_US;
	} else if (c->c_hold_until == 0) {
		c->c_hold_asked = now;
		c->c_hold_until = now + JWKS_HOLD_MS;
	}
	c->c_hold_route = r;
	c->c_hold_verify = verify;
	c->c_hold_provider = p;
	conn_set_state(c, CONN_AUTHWAIT);
	conn_reading(c, 0);
	evtimer_add(c->c_timer, &tv);
}

/* The identity of ar for the access log: scheme, key id or JWT subject. */
static void
conn_identity_log(struct conn *c, const struct auth_result *ar)
{
	struct conn_req	*rq = c->c_rq;

	if (ar->ar_found)
		memcpy(rq->rq_keyid, ar->ar_key.k_id, sizeof(rq->rq_keyid));
	if (ar->ar_jwt_found)
		memcpy(rq->rq_ident_log, ar->ar_jwt.ji_subject,
		    sizeof(rq->rq_ident_log));
	if (ar->ar_scheme != 0)
		c->c_scheme = route_auth_name(ar->ar_scheme);
}

/* keygate_auth_refusals_total{scheme,reason} of a refusal by auth_check(). */
static void
conn_auth_refused(struct conn *c, const struct auth_result *ar)
{
	int	 reason = stats_reason(ar->ar_code);
	int	 scheme = (int)ar->ar_scheme;

	if (reason < 0 || scheme < 0 || scheme >= STATS_NSCHEMES)
		return;
	STATS_BUMP(&c->c_w->w_ss->ss_auth[scheme][reason], 1);
}

/* Append "Name: value\r\n" to the extra response headers if it fits. */
static void
conn_extra(struct conn *c, const char *name, const char *value)
{
	struct conn_req	*rq = c->c_rq;
	size_t		 room = sizeof(rq->rq_extra) - rq->rq_extralen;
	int		 n;

	n = snprintf(rq->rq_extra + rq->rq_extralen, room, "%s: %s\r\n", name,
	    value);
	if (n > 0 && (size_t)n < room)
		rq->rq_extralen += (size_t)n;
}

/*
 * Authenticate the request for route r (auth.c): 1 to go on with ar the
 * caller's identity; else 0: refused (the refusal queued and finished,
 * with WWW-Authenticate for a 401), or held (a JWT's kid is unknown and
 * its keys are being re-fetched: the connection in CONN_AUTHWAIT, nothing
 * queued).  The key id or the JWT subject, never the credential, is kept
 * for the access log.  now: monotonic ms; aj: JWT state, NULL for none.
 */
static int
conn_authenticate(struct conn *c, const struct route *r, int verify,
    int64_t now, const struct auth_jwt *aj, struct auth_result *ar)
{
	struct worker		*w = c->c_w;

	auth_check(r, &c->c_rq->rq_msg, &w->w_ks, w->w_conf->c_api_key_header,
	    c->c_start_ms, aj, ar);
	if (ar->ar_status == AUTH_PENDING) {
		conn_hold(c, r, verify, ar->ar_wait, now);
		return (0);
	}
	conn_identity_log(c, ar);
	if (ar->ar_status == 0)
		return (1);
	if (ar->ar_challenge != NULL)
		conn_extra(c, "WWW-Authenticate", ar->ar_challenge);
	conn_auth_refused(c, ar);
	conn_refuse(c, ar->ar_status, ar->ar_code, ar->ar_message);
	return (0);
}

/*
 * The rate limit for the caller ar identified on route r (auth_limit()):
 * 1 if admitted, its identity headers for the upstream kept in c_ident;
 * else 0 with the 429 (or a 500, or the cluster's 503) queued and
 * finished, or held (CONN_AUTHWAIT) while a unit of the cluster's quota
 * is asked for (verify as for conn_hold()).  The RateLimit-* headers go
 * into every answer once a limit decided.  now: monotonic ms; aj as for
 * conn_authenticate().
 */
static int
conn_limit(struct conn *c, const struct route *r, int verify, int64_t now,
    const struct auth_jwt *aj, struct auth_result *ar)
{
	struct worker		*w = c->c_w;
	struct conn_req		*rq = c->c_rq;
	struct auth_rate	 ra = w->w_rate;

	ra.ra_ip = c->c_riplen > 0 ? c->c_rip : NULL;
	ra.ra_iplen = c->c_riplen;
	ra.ra_now = now;
	ra.ra_waited = c->c_lease_until != 0;
	ra.ra_held_ms = c->c_lease_until != 0 ? now - (c->c_lease_until -
	    LS_WAIT_MS) : 0;
	/* No memory to keep the credentials of a held request. */
	ra.ra_no_wait = c->c_hold_final;
	ra.ra_final = c->c_hold_final || (c->c_lease_until != 0 &&
	    now >= c->c_lease_until);
	auth_limit(r, &ra, &w->w_ks, aj, c->c_start_ms, ar);
	if (ar->ar_status == AUTH_PENDING) {	/* wait for the cluster */
		conn_hold(c, r, verify, -1, now);
		return (0);
	}
	if (ar->ar_limited) {
		/* The limiter's own time, for the access log. */
		c->c_rate_ms = now + w->w_env->se_shm->sh_mono_to_wall;
		rq->rq_extralen += auth_rate_headers(ar, rq->rq_extra +
		    rq->rq_extralen, sizeof(rq->rq_extra) - rq->rq_extralen);
	}
	if (ar->ar_status != 0) {
		conn_refuse(c, ar->ar_status, ar->ar_code, ar->ar_message);
		return (0);
	}
	rq->rq_identlen = auth_identity_headers(ar, rq->rq_ident,
	    sizeof(rq->rq_ident));
	if (rq->rq_identlen > 0)
		return (1);
	conn_refuse(c, 500, "internal_error",
	    "the caller's identity cannot be sent in headers");
	return (0);
}

/* Free the pending admin request, if any. */
static void
conn_admin_free(struct conn *c)
{
	size_t	 i;

	if (c->c_adm == NULL)
		return;
	free(c->c_adm->ca_target);
	/* The admin token, a session, what decrypts a secret (idem.h). */
	for (i = 0; i < nitems(c->c_adm->ca_h); i++)
		secret_strfree(c->c_adm->ca_h[i]);
	free(c->c_adm);
	c->c_adm = NULL;
}

/* Copy what admin_handle() needs out of the header section; -1: no memory. */
static int
conn_admin_begin(struct conn *c)
{
	const struct http_msg		*m = &c->c_rq->rq_msg;
	const struct http_header	*h;
	struct conn_admin		*ca;
	size_t				 len, i;

	if ((ca = c->c_adm = calloc(1, sizeof(*ca))) == NULL)
		return (-1);
	ca->ca_mbit = m->hm_mbit;
	len = m->hm_pathlen + (m->hm_query != NULL ? m->hm_querylen + 1 : 0);
	if ((ca->ca_target = malloc(len + 1)) == NULL)
		return (-1);
	memcpy(ca->ca_target, m->hm_path, m->hm_pathlen);
	if (m->hm_query != NULL) {
		ca->ca_target[m->hm_pathlen] = '?';
		memcpy(ca->ca_target + m->hm_pathlen + 1, m->hm_query,
		    m->hm_querylen);
	}
	ca->ca_target[len] = '\0';
	for (i = 0; i < nitems(ca->ca_h); i++)
		if ((h = http_header_find(m, conn_admin_headers[i])) != NULL &&
		    (ca->ca_h[i] = strndup(h->h_value, h->h_valuelen)) == NULL)
			return (-1);
	return (0);
}

/* The admin request of c as admin_handle() takes it (pointing into c). */
static void
conn_admin_request(struct conn *c, struct admin_request *aq)
{
	struct conn_admin	*ca = c->c_adm;
	const char		*q;

	memset(aq, 0, sizeof(*aq));
	aq->aq_mbit = ca->ca_mbit;
	aq->aq_path = ca->ca_target;
	aq->aq_pathlen = strcspn(ca->ca_target, "?");
	if ((q = strchr(ca->ca_target, '?')) != NULL) {
		aq->aq_query = q + 1;
		aq->aq_querylen = strlen(q + 1);
	}
#define CA_H(i, p, l)	do {						\
	p = ca->ca_h[i];						\
	l = ca->ca_h[i] != NULL ? strlen(ca->ca_h[i]) : 0;		\
} while (0)
	CA_H(0, aq->aq_auth, aq->aq_authlen);
	CA_H(1, aq->aq_idem, aq->aq_idemlen);
	CA_H(2, aq->aq_cookie, aq->aq_cookielen);
	CA_H(3, aq->aq_csrf, aq->aq_csrflen);
	CA_H(4, aq->aq_inm, aq->aq_inmlen);
#undef CA_H
	aq->aq_bodylen = evbuffer_get_length(c->c_pending);
	aq->aq_body = aq->aq_bodylen == 0 ? "" :
	    (const char *)conn_pullup(c->c_pending, aq->aq_bodylen);
	aq->aq_now = util_now_ms();
	aq->aq_mono = util_mono_us() / 1000;
	aq->aq_ip = c->c_ip;
	aq->aq_iplen = c->c_iplen;
	aq->aq_client = c->c_client;
	aq->aq_tls = c->c_tls;
}


/* Queue admin_handle()'s answer as and finish the request. */
static void
conn_admin_answer(struct conn *c, struct admin_response *as)
{
	size_t	 before = evbuffer_get_length(c->c_out);
	char	 ra[16];

	if (as->as_allow != NULL)
		conn_extra(c, "Allow", as->as_allow);
	if (as->as_challenge != NULL)
		conn_extra(c, "WWW-Authenticate", as->as_challenge);
	if (as->as_retry_after > 0) {
		snprintf(ra, sizeof(ra), "%u", as->as_retry_after);
		conn_extra(c, "Retry-After", ra);
	}
	if (as->as_ui) {	/* the web console's (admin.c) */
		conn_extra(c, "Content-Security-Policy", ADMIN_UI_CSP);
		conn_extra(c, "X-Frame-Options", "DENY");
		conn_extra(c, "Referrer-Policy", "no-referrer");
		conn_extra(c, "X-Content-Type-Options", "nosniff");
		conn_extra(c, "Cache-Control", as->as_etag != NULL ?
		    "no-cache" : "no-store");
	} else	/* a key's secret, the store's state: not to be cached */
		conn_extra(c, "Cache-Control", "no-store");
	if (as->as_etag != NULL)
		conn_extra(c, "ETag", as->as_etag);
	if (as->as_cookie[0] != '\0')
		conn_extra(c, "Set-Cookie", as->as_cookie);
	conn_head_type(c, as->as_status, as->as_bodylen, as->as_type != NULL ?
	    as->as_type : "application/json");
	if (!c->c_head && as->as_static != NULL) {
		if (evbuffer_add_reference(c->c_out, as->as_static,
		    as->as_bodylen, NULL, NULL) != 0)
			evbuffer_add(c->c_out, as->as_static, as->as_bodylen);
	}
	/* The body may carry a new secret: wiped once written. */
	else if (!c->c_head && as->as_body != NULL) {
		if (evbuffer_add_reference(c->c_out, as->as_body,
		    as->as_bodylen, conn_wipe_ref, NULL) == 0)
			as->as_body = NULL;
		else
			evbuffer_add(c->c_out, as->as_body, as->as_bodylen);
	}
	conn_finish(c, as->as_status, evbuffer_get_length(c->c_out) - before);
	admin_response_free(as);
}

/*
 * Does the admin request ca go to the admin threads?  Those that may
 * write the key store (POST, PUT, PATCH, DELETE under /v1/keys) wait for
 * its lock and for the disk; everything else answers from memory at once
 * and stays on the loop (POST /v1/verify reads the worker's JWT state,
 * which only the loop thread may touch).  An unknown path under /v1/keys
 * costs a thread a 404, nothing more.
 */
static int
conn_admin_threaded(struct conn *c, const struct conn_admin *ca)
{
	const int	 writes = HTTP_M_POST | HTTP_M_PUT | HTTP_M_PATCH |
			    HTTP_M_DELETE;
	const char	*p;

	if (c->c_w->w_adminq == NULL)
		return (0);
	/*
	 * GET /v1/cluster asks the master (cluster.h), and so does a key's
	 * usage in a cluster (its totals are in Redis).
	 */
	if (strncmp(ca->ca_target, "/v1/cluster", 11) == 0 &&
	    strchr("/?", ca->ca_target[11]) != NULL)
		return (1);
	if (c->c_w->w_admin.ae_cluster != NULL &&
	    strncmp(ca->ca_target, "/v1/keys/", 9) == 0 &&
	    (p = strstr(ca->ca_target, "/usage")) != NULL &&
	    strchr("?", p[6]) != NULL)
		return (1);
	/* A sorted list of the keys looks at every key (admin.c). */
	if (ca->ca_mbit == HTTP_M_GET &&
	    strncmp(ca->ca_target, "/v1/keys?", 9) == 0 &&
	    (strncmp(ca->ca_target + 9, "sort=", 5) == 0 ||
	    strstr(ca->ca_target + 9, "&sort=") != NULL))
		return (1);
	/* strchr() finds the NUL too: "/v1/keys" itself. */
	return ((ca->ca_mbit & writes) != 0 &&
	    strncmp(ca->ca_target, "/v1/keys", 8) == 0 &&
	    strchr("/?", ca->ca_target[8]) != NULL);
}

/*
 * Hand the admin request to the admin threads: the job takes copies of
 * what admin_handle() reads (the body is wiped from c_pending), and the
 * connection waits in CONN_ADMINWAIT with reading off and no timer until
 * conn_admin_done().  0, or -1 if out of memory (nothing changed).
 */
static int
conn_admin_queue(struct conn *c)
{
	struct admin_request	 aq;
	struct adminq_job	*j;

	conn_admin_request(c, &aq);
	if ((j = adminq_job_new(&aq)) == NULL)
		return (-1);
	conn_wipe_drain(c->c_pending, aq.aq_bodylen);
	conn_admin_free(c);
	j->aj_conn = c;
	c->c_job = j;
	conn_set_state(c, CONN_ADMINWAIT);
	conn_reading(c, 0);
	evtimer_del(c->c_timer);
	adminq_push(c->c_w->w_adminq, j);
	return (0);
}

/*
 * The loop, an admin job is done: answer its connection, if it is still
 * there, and go on with it (pipelined requests, the write, the close).
 * A connection that ended meanwhile left aj_conn NULL (conn_free): the
 * answer is dropped, wiped with the job.
 */
static void
conn_admin_done(struct adminq_job *j, void *arg)
{
	struct conn	*c = j->aj_conn;

	if (c == NULL)
		return;
	c->c_job = NULL;
	j->aj_conn = NULL;
	conn_admin_answer(c, &j->aj_rs);
	if (c->c_state != CONN_DEAD) {
		conn_reading(c, 1);
		conn_process(c);
	}
	if (c->c_state != CONN_DEAD)
		conn_flush(c);
	if (c->c_state == CONN_DEAD)
		conn_free(c);
}

/*
 * The whole admin request is here: hand a write to the admin threads, or
 * answer it now (admin.c).
 */
static void
conn_admin_respond(struct conn *c)
{
	struct admin_request	 aq;
	struct admin_response	 as;

	if (conn_admin_threaded(c, c->c_adm) && conn_admin_queue(c) == 0)
		return;
	conn_admin_request(c, &aq);
	admin_handle(&c->c_w->w_admin, &aq, &as);
	conn_admin_answer(c, &as);
	conn_wipe_drain(c->c_pending, evbuffer_get_length(c->c_pending));
	conn_admin_free(c);
}

/* A request on the admin listener: read its body (if any), then answer. */
static void
conn_admin(struct conn *c)
{
	if (c->c_body == HTTP_BODY_LENGTH && c->c_body_left > ADMIN_MAX_BODY) {
		conn_fail(c, 413, "admin request bodies are limited to 64 KiB");
		return;
	}
	if ((c->c_pending == NULL && (c->c_pending = evbuffer_new()) == NULL) ||
	    conn_admin_begin(c) == -1) {
		conn_admin_free(c);
		conn_fail(c, 500, "out of memory");
		return;
	}
	conn_await_body(c, conn_admin_respond);
}

/*
 * Normalise the len bytes at p, a path inside the request's header section,
 * in place (forward_normalize_path(), slashes merged unless merge_slashes
 * is off); -1 with cause if the path is refused.  The header bytes are the
 * input buffer's first, contiguous bytes (conn_headers() pulled them up),
 * so p can be written through the buffer's own pointer.  A path outside
 * them (the "/" of an absolute-form target without one) is left alone.
 */
static int
conn_normalize(struct conn *c, const char *p, size_t len, size_t *outlen,
    const char **cause)
{
	struct http_msg	*m = &c->c_rq->rq_msg;
	char		*base;
	uintptr_t	 off;

	if ((base = (char *)conn_pullup(c->c_in, m->hm_hdrlen)) == NULL) {
		*cause = "out of memory";
		return (-1);
	}
	if ((uintptr_t)p < (uintptr_t)base ||
	    (uintptr_t)p + len > (uintptr_t)base + m->hm_hdrlen) {
		if (len != 1 || p[0] != '/') {	/* never skip a real path */
			*cause = "the path cannot be normalised";
			return (-1);
		}
		*outlen = len;
		return (0);
	}
	off = (uintptr_t)p - (uintptr_t)base;
	return (forward_normalize_path(base + off, len, base + off, outlen,
	    c->c_w->w_conf->c_merge_slashes ? FORWARD_MERGE_SLASHES : 0,
	    cause));
}

/*
 * The route for the normalised path in *r (NULL: none), or -1 once a 500
 * is queued because a pattern failed to match (route_match()).  Routes
 * always see repeated slashes merged: with merge_slashes off the upstream
 * gets them as sent, but "//admin" must not escape a route for "^/admin"
 * when the upstream merges them itself.
 */
static int
conn_route(struct conn *c, int mbit, const char *path, size_t len,
    const struct route **r)
{
	const struct route_table	*rt = &c->c_w->w_conf->c_routes;
	const char			*cause;
	char				*merged = NULL, err[512];
	int				 rc;

	if (!c->c_w->w_conf->c_merge_slashes && len > 1 &&
	    memmem(path, len, "//", 2) != NULL) {
		if ((merged = malloc(len)) == NULL) {
			conn_refuse(c, 500, "internal_error",
			    "out of memory");
			return (-1);
		}
		/* Already normalised: merging cannot make it refused. */
		if (forward_normalize_path(path, len, merged, &len,
		    FORWARD_MERGE_SLASHES, &cause) == 0)
			path = merged;
	}
	rc = route_match(rt, mbit, path, len, r, err, sizeof(err));
	free(merged);
	if (rc == 0)
		return (0);
	log_warnx("%s", err);
	c->c_route = (*r)->r_index;
	conn_refuse(c, 500, "route_error", "the route's pattern could "
	    "not be matched against this path");
	return (-1);
}

/*
 * health_path: 200 {"status":"ok"} while the worker serves; 503
 * {"status":"draining"} during shutdown_delay and the graceful stop, with
 * the connection closed after it.  Not counted in the request metrics.
 */
static void
conn_health(struct conn *c)
{
	static const char	 ok[] = "{\"status\":\"ok\"}\n";
	static const char	 drain[] = "{\"status\":\"draining\"}\n";
	struct worker		*w = c->c_w;
	size_t			 before = evbuffer_get_length(c->c_out), len;
	int			 draining, status;

	c->c_health = 1;
	draining = w->w_stopping ||
	    __atomic_load_n(&w->w_env->se_shm->sh_draining, __ATOMIC_ACQUIRE);
	status = draining ? 503 : 200;
	len = draining ? sizeof(drain) - 1 : sizeof(ok) - 1;
	if (draining)
		c->c_keepalive = 0;
	conn_extra(c, "Cache-Control", "no-store");
	conn_head_type(c, status, len, "application/json");
	if (!c->c_head)
		evbuffer_add(c->c_out, draining ? drain : ok, len);
	conn_finish(c, status, evbuffer_get_length(c->c_out) - before);
}

/* An allowed verify_path request: 204 with the identity. */
static void
conn_verified(struct conn *c)
{
	struct conn_req	*rq = c->c_rq;

	/*
	 * nginx takes the identity from the 204 (auth_request_set), after
	 * the rate headers (CONN_EXTRA_MAX holds both).
	 */
	memcpy(rq->rq_extra + rq->rq_extralen, rq->rq_ident, rq->rq_identlen);
	rq->rq_extralen += rq->rq_identlen;
	conn_refuse(c, 204, NULL, NULL);
}

/*
 * nginx auth_request mode: the route is chosen from X-Original-Method and
 * X-Original-URI; an allowed request is answered 204, a refused one with
 * its refusal.  Nothing is forwarded.
 */
static void
conn_verify(struct conn *c)
{
	const struct route		*r;
	const char			*path, *cause;
	size_t				 len;
	int				 mbit;

	if (auth_verify_target(&c->c_rq->rq_msg, &mbit, &path, &len,
	    &cause) == -1) {
		conn_refuse(c, 400, "bad_request", cause);
		return;
	}
	if (conn_normalize(c, path, len, &len, &cause) == -1) {
		conn_refuse(c, 400, "bad_request", cause);
		return;
	}
	if (conn_route(c, mbit, path, len, &r) == -1)
		return;
	if (r == NULL) {
		conn_refuse(c, 404, "no_route",
		    "no route matches this method and path");
		return;
	}
	c->c_route = r->r_index;
	conn_decide(c, r, 1);
}

/* A request begins: what its header section says about it. */
static void
conn_start_request(struct conn *c)
{
	struct worker		*w = c->c_w;
	struct config		*conf = w->w_conf;
	struct http_msg		*m = &c->c_rq->rq_msg;

	conn_remember(c);
	/* The admin API and the metrics listener keep the peer. */
	if (!c->c_admin && !c->c_metrics)
		conn_real_client(c, m);
	c->c_health = 0;
	c->c_minor = m->hm_minor;
	c->c_head = m->hm_mbit == HTTP_M_HEAD;
	c->c_keepalive = (m->hm_flags & HTTP_F_KEEPALIVE) && !w->w_stopping &&
	    conf->c_keepalive_timeout > 0 &&
	    c->c_nrequests + 1 < (unsigned int)conf->c_keepalive_requests;
	c->c_body = m->hm_body;
	c->c_body_left = m->hm_content_length;
	c->c_body_bytes = 0;
	if (c->c_body == HTTP_BODY_LENGTH && c->c_body_left == 0)
		c->c_body = HTTP_BODY_NONE;
	http_chunked_init(&c->c_chunked);
}

/*
 * Route the request: the admin API, verify_path, or the first route
 * matching its method and normalised path, which decides it.
 */
static void
conn_route_request(struct conn *c)
{
	struct config		*conf = c->c_w->w_conf;
	struct http_msg		*m = &c->c_rq->rq_msg;
	const struct route	*r;
	const char		*cause;

	if (c->c_admin) {
		conn_admin(c);
		return;
	}
	if (c->c_metrics) {
		conn_metrics(c);
		return;
	}
	if (c->c_body == HTTP_BODY_LENGTH && conf->c_max_body_size > 0 &&
	    c->c_body_left > conf->c_max_body_size) {
		conn_fail(c, 413, "the request body is larger than "
		    "max_body_size");
		return;
	}
	/* Normalised in place: routes and the upstream see the same path. */
	if (m->hm_pathlen > 0 && m->hm_path[0] == '/' && conn_normalize(c,
	    m->hm_path, m->hm_pathlen, &m->hm_pathlen, &cause) == -1) {
		conn_fail(c, 400, cause);
		return;
	}
	if (conf->c_health_path != NULL &&
	    m->hm_pathlen == strlen(conf->c_health_path) &&
	    memcmp(m->hm_path, conf->c_health_path, m->hm_pathlen) == 0) {
		conn_health(c);
		return;
	}
	if (conf->c_verify_path != NULL &&
	    m->hm_pathlen == strlen(conf->c_verify_path) &&
	    memcmp(m->hm_path, conf->c_verify_path, m->hm_pathlen) == 0) {
		conn_verify(c);
		return;
	}
	if (conn_route(c, m->hm_mbit, m->hm_path, m->hm_pathlen, &r) == -1)
		return;
	if (r == NULL) {
		c->c_route = 0;
		conn_refuse(c, 404, "no_route",
		    "no route matches this method and path");
		return;
	}
	c->c_route = r->r_index;
	conn_decide(c, r, 0);
}

/*
 * A complete header section: the request's steps, then its header bytes
 * drained from the input, unless it is held (its parsed header still
 * points into them).
 */
static void
conn_dispatch(struct conn *c)
{
	conn_start_request(c);
	conn_route_request(c);
	if (c->c_state != CONN_AUTHWAIT)
		evbuffer_drain(c->c_in, c->c_rq->rq_msg.hm_hdrlen);
}

/*
 * Decide the request for route r (verify: a verify_path request):
 * authenticate, limit, then forward it (or answer 204 for verify).
 * Each step that refuses has queued and finished its answer.
 */
static void
conn_decide(struct conn *c, const struct route *r, int verify)
{
	struct auth_result	 ar;
	struct auth_jwt		 aj, *ajp = NULL;
	int64_t			 now = util_mono_us() / 1000;

	if (c->c_w->w_jwt != NULL) {	/* the worker's JWT state, now */
		aj.aj_state = c->c_w->w_jwt;
		aj.aj_mono = now;
		aj.aj_final = c->c_hold_final ||
		    (c->c_hold_until != 0 && now >= c->c_hold_until);
		ajp = &aj;
	}
	if (r->r_nfrom > 0 && (c->c_riplen == 0 || !cidr_match(r->r_from,
	    r->r_nfrom, c->c_rip, c->c_riplen))) {
		conn_refuse(c, 403, "forbidden", "this client address is not "
		    "allowed on this route");
		return;
	}
	if (!conn_authenticate(c, r, verify, now, ajp, &ar) ||
	    !conn_limit(c, r, verify, now, ajp, &ar))
		return;
	if (verify)
		conn_verified(c);
	else
		conn_forward(c, r);
}

/*
 * The credential values of a request being held are in buf[0..used), a
 * caller's buffer (heap: malloc'ed): give them to the connection (c_msg
 * points at them) until the request is decided.  -1 when there is no
 * memory for that: the caller then decides at once.
 */
static int
conn_hold_credentials(struct conn *c, char *buf, size_t used, char **heap)
{
	struct http_header	*h;
	char			*copy;
	size_t			 i;

	if (used == 0)
		return (0);
	if (*heap != NULL) {
		c->c_hold_cred = *heap;
		c->c_hold_credlen = used;
		*heap = NULL;
		return (0);
	}
	if ((copy = malloc(used)) == NULL)
		return (-1);
	memcpy(copy, buf, used);
	for (i = 0; i < c->c_rq->rq_msg.hm_nheaders; i++) {
		h = &c->c_rq->rq_msg.hm_headers[i];
		if (h->h_value >= buf && h->h_value < buf + used)
			h->h_value = copy + (h->h_value - buf);
	}
	c->c_hold_cred = copy;
	c->c_hold_credlen = used;
	return (0);
}

/* Wipe and free a held request's credentials. */
static void
conn_hold_release(struct conn *c)
{
	if (c->c_hold_cred != NULL) {
		OPENSSL_cleanse(c->c_hold_cred, c->c_hold_credlen);
		free(c->c_hold_cred);
	}
	c->c_hold_cred = NULL;
	c->c_hold_credlen = 0;
}

/* Decide a held request again, as if it had arrived now. */
static void
conn_redecide(struct conn *c)
{
	conn_set_state(c, CONN_HEADERS);
	conn_decide(c, c->c_hold_route, c->c_hold_verify);
	if (c->c_state != CONN_AUTHWAIT)
		evbuffer_drain(c->c_in, c->c_rq->rq_msg.hm_hdrlen);
}

/*
 * The timer of a held request: when the keys changed, the re-fetch it
 * asked for is done, or its deadline passed, decide it again and go on
 * with the connection's input; else look again in CONN_HOLD_POLL_MS.
 */
static void
conn_hold_check(struct conn *c)
{
	struct timeval	 tv = { 0, CONN_HOLD_POLL_MS * 1000 };

	/* A unit of quota: tried again at every poll (conn_limit()). */
	if (c->c_hold_provider != -1 && util_mono_ms() < c->c_hold_until &&
	    !jwtauth_wait_over(c->c_w->w_jwt, c->c_hold_provider,
	    c->c_hold_asked)) {
		evtimer_add(c->c_timer, &tv);
		return;
	}
	conn_redecide(c);
	if (c->c_state == CONN_AUTHWAIT)
		return;
	conn_hold_release(c);
	if (c->c_state == CONN_DEAD)
		return;
	conn_reading(c, 1);
	conn_process(c);
	if (c->c_state != CONN_DEAD)
		conn_flush(c);
}

/* Read the header section; 1 if the state moved on, 0 to wait for bytes. */
static int
conn_headers(struct conn *c)
{
	struct evbuffer	*in = c->c_in;
	struct conn_req	*rq = c->c_rq;
	size_t		 len = evbuffer_get_length(in), used;
	unsigned char	*p;
	char		 cred[SERVER_CRED_STACK], *heap;
	int		 rc, onheap;

	if (len > c->c_w->w_scanmax)
		len = c->c_w->w_scanmax;
	if ((p = conn_pullup(in, len)) == NULL)
		return (0);
	rc = http_parse_request(&c->c_rq->rq_msg, (const char *)p, len,
	    &c->c_w->w_limits);
	if (rc == 0)
		return (0);
	if (rc < 0) {
		c->c_route = 0;
		c->c_head = 0;
		/* The head may carry credentials. */
		conn_wipe_drain(in, evbuffer_get_length(in));
		conn_fail(c, rq->rq_msg.hm_error, rq->rq_msg.hm_cause);
		return (1);
	}
	used = conn_hide_credentials(c, cred, sizeof(cred), &heap);
	onheap = heap != NULL;
	conn_dispatch(c);
	if (c->c_state == CONN_AUTHWAIT && conn_hold_credentials(c, cred,
	    used, &heap) == -1) {
		c->c_hold_final = 1;	/* no memory to wait: decide now */
		conn_redecide(c);
	}
	if (!onheap)
		OPENSSL_cleanse(cred, used);
	else if (heap != NULL) {	/* not kept by a held request */
		OPENSSL_cleanse(heap, used);
		free(heap);
	}
	return (1);
}

/* n bytes of an admin body from the input to c_pending, wiped behind. */
static void
conn_admin_move(struct conn *c, size_t n)
{
	struct evbuffer_iovec	 v[8];
	size_t			 k, done;
	int			 i, nv;

	while (n > 0) {
		nv = evbuffer_peek(c->c_in, (ssize_t)n, NULL, v, 8);
		if (nv <= 0)
			return;
		for (i = 0, done = 0; i < nv && i < 8 && done < n; i++) {
			k = v[i].iov_len < n - done ? v[i].iov_len : n - done;
			evbuffer_add(c->c_pending, v[i].iov_base, k);
			done += k;
		}
		conn_wipe_drain(c->c_in, done);
		n -= done;
	}
}

/* Body bytes read: on to the upstream if proxied, else dropped. */
static void
conn_consume(struct conn *c, size_t n)
{
	if (c->c_up != NULL && c->c_state == CONN_BODY)
		proxy_body(c->c_up, c->c_in, n);
	else if (c->c_adm != NULL && c->c_state == CONN_BODY)
		conn_admin_move(c, n);
	else
		evbuffer_drain(c->c_in, n);
}

/* Payload of a chunked admin request body: keep it for admin_handle(). */
static void
conn_admin_chunk(void *arg, const char *data, size_t n)
{
	struct conn	*c = arg;

	evbuffer_add(c->c_pending, data, n);
	/* data is the input buffer's memory (conn_chunked()): wipe it. */
	OPENSSL_cleanse((char *)(uintptr_t)data, n);
}

/*
 * Count chunked body bytes from the input; -1 malformed, else consumed.
 * Everything buffered is fed, however many evbuffer chains it spans
 * (evbuffer_peek() shows 8 at a time, and with len -1 does not say how many
 * there are): the parser takes whole slices until the body ends, where the
 * next request begins, so while it took every slice shown the next round
 * looks at what is left.  Each round drains bytes or stops: it ends.
 */
static ssize_t
conn_chunked(struct conn *c, struct evbuffer *in)
{
	struct evbuffer_iovec	 v[8];
	http_data_cb		 cb = NULL;
	void			*arg = c;
	ssize_t			 used, total = 0;
	int			 n, proxied, more;

	proxied = c->c_up != NULL && c->c_state == CONN_BODY;
	if (proxied) {
		cb = proxy_body_chunk;
		arg = c->c_up;
	} else if (c->c_adm != NULL && c->c_state == CONN_BODY)
		cb = conn_admin_chunk;
	do {
		n = evbuffer_peek(in, -1, NULL, v, 8);
		used = http_chunked_feedv(&c->c_chunked, v, n < 8 ? n : 8, cb,
		    arg, &more);
		if (used < 0)
			return (-1);
		evbuffer_drain(in, (size_t)used);
		total += used;
	} while (more && evbuffer_get_length(in) > 0);
	if (proxied)
		proxy_body_flush(c->c_up);
	c->c_body_bytes = c->c_chunked.hc_payload;
	return (total);
}

/* Stop reading a body that cannot be finished: close after the response. */
static void
conn_abandon_body(struct conn *c, int status, const char *cause)
{
	if (c->c_state == CONN_BODY) {
		conn_fail(c, status, cause);
		return;
	}
	c->c_keepalive = 0;
	c->c_body = HTTP_BODY_NONE;
	conn_next(c);
}

/* Read (and count or drop) body bytes; 1 if the state moved on. */
static int
conn_body(struct conn *c)
{
	struct evbuffer	*in = c->c_in;
	struct config	*conf = c->c_w->w_conf;
	size_t		 len = evbuffer_get_length(in);
	uint64_t	 limit;
	int		 done;

	if (len == 0)
		return (0);
	if (c->c_body == HTTP_BODY_LENGTH) {
		if (len > c->c_body_left)
			len = (size_t)c->c_body_left;
		conn_consume(c, len);
		c->c_body_left -= len;
		c->c_body_bytes += len;
		done = c->c_body_left == 0;
	} else {
		if (conn_chunked(c, in) < 0) {
			conn_abandon_body(c, 400, c->c_chunked.hc_cause);
			return (1);
		}
		limit = c->c_state == CONN_DISCARD ? SERVER_DISCARD_MAX :
		    c->c_adm != NULL ? ADMIN_MAX_BODY : conf->c_max_body_size;
		if (limit > 0 && c->c_body_bytes > limit) {
			conn_abandon_body(c, 413, "the request body is larger "
			    "than max_body_size");
			return (1);
		}
		done = http_chunked_done(&c->c_chunked);
	}
	if (!done) {
		conn_body_timer(c);
		return (0);
	}
	c->c_body = HTTP_BODY_NONE;
	if (c->c_up != NULL && c->c_state == CONN_BODY) {
		/* The upstream's answer finishes the request (proxy.c). */
		conn_set_state(c, CONN_PROXY);
		evtimer_del(c->c_timer);
		proxy_body_done(c->c_up);
		return (1);
	}
	if (c->c_state == CONN_BODY && c->c_adm != NULL)
		conn_admin_respond(c);
	else if (c->c_state == CONN_BODY)
		conn_echo_respond(c);
	else
		conn_next(c);	/* a discarded body: answered already */
	return (1);
}

/*
 * The request is answered and its body consumed: wait for the next one, or
 * close once the response is written.  Reading pauses while too much output
 * waits for the client.
 */
static void
conn_next(struct conn *c)
{
	struct worker	*w = c->c_w;

	if (c->c_pipewait) {		/* the response is done: read on */
		c->c_pipewait = 0;
		conn_reading(c, 1);
	}
	if (!c->c_keepalive || w->w_stopping || c->c_eof) {
		conn_set_state(c, CONN_CLOSING);
		conn_timer(c, w->w_tv_send);
		return;
	}
	conn_set_state(c, CONN_IDLE);
	conn_timer(c, w->w_tv_idle);
	if (evbuffer_get_length(c->c_out) > IO_MAX_OUTPUT) {
		c->c_paused = 1;
		conn_reading(c, 0);
	}
}

/* Begin a new request on the connection; -1 if out of memory. */
static int
conn_begin(struct conn *c)
{
	struct conn_req	*rq = c->c_rq;

	conn_idle_remove(c);
	if (rq == NULL && (rq = c->c_rq = malloc(sizeof(*rq))) == NULL)
		return (-1);
	conn_set_state(c, CONN_HEADERS);
	c->c_start_us = util_mono_us();
	c->c_start_ms = util_now_ms();
	c->c_rate_ms = 0;
	c->c_route = 0;
	c->c_head = 0;
	c->c_minor = 1;
	c->c_keepalive = 0;
	rq->rq_methodlen = 0;
	rq->rq_pathlen = 0;
	rq->rq_reqidlen = 0;
	rq->rq_extralen = 0;
	rq->rq_identlen = 0;
	rq->rq_keyid[0] = '\0';
	rq->rq_ident_log[0] = '\0';
	c->c_scheme = NULL;
	c->c_tunnel = 0;
	c->c_hold_until = 0;
	c->c_lease_until = 0;
	c->c_hold_final = 0;
	http_msg_init(&rq->rq_msg);
	conn_timer(c, c->c_w->w_tv_header);
	return (0);
}

/* Work through the input as far as it goes. */
static void
conn_process(struct conn *c)
{
	struct evbuffer	*in = c->c_in;

	while (!c->c_paused && !c->c_upwait) {
		switch (c->c_state) {
		case CONN_IDLE:
			if (evbuffer_get_length(in) == 0)
				return;
			if (conn_begin(c) == -1) {
				log_warnx("out of memory for a request");
				conn_set_state(c, CONN_DEAD);
				return;
			}
			break;
		case CONN_HEADERS:
			if (!conn_headers(c))
				return;
			break;
		case CONN_BODY:
		case CONN_DISCARD:
			if (!conn_body(c))
				return;
			break;
		case CONN_AUTHWAIT:
			return;		/* conn_hold_check() goes on */
		case CONN_ADMINWAIT:
			return;		/* conn_admin_done() goes on */
		case CONN_TUNNEL:
			conn_tunnel_input(c);
			return;
		case CONN_PROXY:
			/*
			 * Pipelined requests wait their turn, but only so
			 * many of them: past w_pipemax bytes the socket is
			 * left unread until the response is done (conn_next).
			 */
			if (evbuffer_get_length(in) >= c->c_w->w_pipemax &&
			    !c->c_pipewait) {
				c->c_pipewait = 1;
				conn_reading(c, 0);
			}
			return;
		case CONN_CLOSING:
		case CONN_LINGER:
		case CONN_DEAD:
			/* Requests never read may carry credentials. */
			conn_wipe_drain(in, evbuffer_get_length(in));
			return;
		}
	}
}

/*
 * Start or stop watching the socket for reading.  Reading starts only if
 * nothing holds it off: the client's EOF, output back-pressure (c_paused),
 * an upstream that does not take the body as fast (c_upwait), pipelined
 * input past w_pipemax (c_pipewait), a request held for a JWT's keys
 * (CONN_AUTHWAIT: its parsed header points into the input, which must
 * not move).  Each is cleared by the party that set it, which then calls
 * this again.
 */
static void
conn_reading(struct conn *c, int on)
{
	io_reading(&c->c_io, on && !c->c_eof && !c->c_paused &&
	    !c->c_upwait && !c->c_pipewait && c->c_state != CONN_AUTHWAIT &&
	    c->c_state != CONN_ADMINWAIT);
}

/*
 * The last response is written: shut the write side and read (dropping
 * everything) until the client closes, so that unread request bytes do
 * not make the kernel answer with a RST that could destroy the response
 * before the client has read it (nginx's lingering close).
 */
static void
conn_linger(struct conn *c)
{
	io_shutdown(&c->c_io);
	if (c->c_eof) {
		conn_set_state(c, CONN_DEAD);
		return;
	}
	conn_set_state(c, CONN_LINGER);
	c->c_paused = c->c_upwait = c->c_pipewait = 0;
	conn_reading(c, 1);
	conn_timer(c, c->c_w->w_tv_linger);
}

/*
 * Write queued responses now.  What the socket does not take waits for the
 * write event (with send_timeout as the time allowed without progress).
 * Once everything is out, a closing connection lingers and a paused one
 * reads again, which may queue more responses: hence the loop.
 */
static void
conn_flush(struct conn *c)
{
	int	 rc;

	while (c->c_state != CONN_DEAD) {
		if ((rc = io_flush(&c->c_io)) == -1) {
			conn_set_state(c, CONN_DEAD);		/* EPIPE, ECONNRESET */
			return;
		}
		if (rc == 0)
			return;			/* the write event goes on */
		if (c->c_state == CONN_CLOSING) {
			conn_linger(c);
			return;
		}
		if (c->c_up != NULL) {
			/* A proxied response goes on once the client reads. */
			if (!proxy_client_drained(c->c_up))
				return;
			continue;
		}
		if (c->c_paused) {
			c->c_paused = 0;
			conn_reading(c, 1);
		} else if (c->c_state != CONN_IDLE)
			return;
		else if (evbuffer_get_length(c->c_in) == 0) {
			conn_idle_add(c);	/* waits for its next request */
			return;
		}
		/* Requests that waited behind a response, or past a pause. */
		conn_process(c);
	}
}

/* The client shut its write side: finish what can be finished. */
static void
conn_eof(struct conn *c)
{
	conn_reading(c, 0);
	c->c_eof = 1;
	switch (c->c_state) {
	case CONN_CLOSING:
		break;
	case CONN_PROXY:
	case CONN_ADMINWAIT:
		/* A half-closed client still gets its answer, then the end. */
		c->c_keepalive = 0;
		break;
	case CONN_TUNNEL:
		/* Half-closed both ways: the upstream's close ends it. */
		conn_tunnel_input(c);
		break;
	case CONN_IDLE:
	case CONN_HEADERS:
	case CONN_BODY:
	case CONN_DISCARD:
		/* Answers already queued still go out. */
		if (evbuffer_get_length(c->c_out) > 0) {
			c->c_keepalive = 0;
			conn_set_state(c, CONN_CLOSING);
			conn_timer(c, c->c_w->w_tv_send);
			break;
		}
		/* FALLTHROUGH */
	default:
		conn_set_state(c, CONN_DEAD);
		break;
	}
}

/*
 * Another party (the upstream side) changed the connection's state: serve
 * what can be served, write what is queued, free it if it is done.
 */
static void
conn_kick(void *arg)
{
	struct conn	*c = arg;

	if (c->c_state != CONN_DEAD) {
		conn_process(c);
		conn_flush(c);
	}
	if (c->c_state == CONN_DEAD)
		conn_free(c);
}

/*
 * A TLS connection's handshake, counted once it completed (resumed or
 * not), or as failed when the connection ends without one.  Failures are
 * logged at debug level only: scanners and plain-HTTP clients on a TLS
 * port make them all the time.
 */
static void
conn_tls_count(struct conn *c, int closing)
{
	struct stats_slot	*ss = c->c_w->w_ss;

	if (!c->c_tls || c->c_tls_counted)
		return;
	if (io_handshaken(&c->c_io)) {
		STATS_BUMP(&ss->ss_tls[io_tls_resumed(&c->c_io) ?
		    STATS_TLS_RESUMED : STATS_TLS_FULL], 1);
		c->c_tls_counted = 1;
		if (c->c_state == CONN_IDLE)
			conn_set_state(c, CONN_IDLE);	/* the gauge too */
		if (c->c_state == CONN_IDLE &&
		    evbuffer_get_length(c->c_in) == 0)
			io_idle(&c->c_io);	/* no request yet */
	} else if (closing) {
		STATS_BUMP(&ss->ss_tls[STATS_TLS_FAILED], 1);
		log_debug("%s: TLS handshake with %s failed: %s", __func__,
		    c->c_client, c->c_io.io_why != NULL ? c->c_io.io_why :
		    "connection closed");
		c->c_tls_counted = 1;
	}
}

/* Readable: one read, then serve what it completed. */
static void
conn_on_read(void *arg)
{
	struct conn	*c = arg;
	ssize_t		 n;

	n = io_read(&c->c_io);
	if (c->c_tls && !c->c_tls_counted)
		conn_tls_count(c, 0);
	if (n > 0)
		conn_process(c);
	else if (n == 0)
		conn_eof(c);
	else if (errno != EAGAIN && errno != EINTR)
		conn_set_state(c, CONN_DEAD);
	if (c->c_state != CONN_DEAD)
		conn_flush(c);
	if (c->c_state == CONN_DEAD)
		conn_free(c);
}

/* Writable again, or no progress for send_timeout. */
static void
conn_on_write(void *arg, int timedout)
{
	struct conn	*c = arg;

	if (timedout)
		conn_set_state(c, CONN_DEAD);
	else
		conn_flush(c);
	if (c->c_state == CONN_DEAD)
		conn_free(c);
}

static const struct io_ops conn_io_ops = { conn_on_read, conn_on_write };

/* The connection's timer: what it means depends on the state. */
static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn	*c = arg;

	switch (c->c_state) {
	case CONN_HEADERS:
		conn_fail(c, 408, "the request header was not received in "
		    "time");
		conn_flush(c);
		break;
	case CONN_BODY:
		conn_fail(c, 408, c->c_body_final ? "the request body was "
		    "not received within body_deadline" : "the request body "
		    "was not received in time");
		conn_flush(c);
		break;
	case CONN_PROXY:
	case CONN_TUNNEL:
		break;		/* the upstream's timers rule */
	case CONN_ADMINWAIT:
		break;		/* the job's own bounds rule (admin.h) */
	case CONN_AUTHWAIT:
		conn_hold_check(c);
		break;
	default:
		/* Idle keep-alive, stuck write, linger or discard: close. */
		conn_set_state(c, CONN_DEAD);
		break;
	}
	if (c->c_state == CONN_DEAD)
		conn_free(c);
}

/* Close and free a connection; the worker may now accept again or exit. */
static void
conn_free(struct conn *c)
{
	struct worker	*w = c->c_w;

	if (c->c_up != NULL) {
		/* A tunnel cut (reset, send_timeout, stop) is still logged. */
		if (c->c_tunnel)
			conn_log(c, 101, proxy_sent(c->c_up));
		proxy_detach(c->c_up);
	}
	conn_tls_count(c, 1);
	conn_idle_remove(c);
	TAILQ_REMOVE(&w->w_conns, c, c_entry);
	w->w_nconns--;
	SHM_SUB(&w->w_stats->sw_active, 1);
	stats_conn_move(w->w_ss, c->c_gauge, -1);
	event_free(c->c_timer);
	/* Unread input (a cut head, pipelined requests) may hold secrets. */
	conn_wipe_drain(c->c_in, evbuffer_get_length(c->c_in));
	if (c->c_pending != NULL)
		conn_wipe_drain(c->c_pending, evbuffer_get_length(c->c_pending));
	io_free(&c->c_io);
	if (c->c_pending != NULL)
		evbuffer_free(c->c_pending);
	conn_admin_free(c);
	if (c->c_job != NULL)	/* orphaned: its answer is dropped */
		c->c_job->aj_conn = NULL;
	conn_hold_release(c);
	free(c->c_rq);
	free(c);
	if (w->w_stopping) {
		if (w->w_nconns == 0)
			event_base_loopexit(w->w_base, NULL);
		return;
	}
	if (w->w_accept_paused) {	/* a descriptor is free again */
		w->w_accept_paused = 0;
		evtimer_del(w->w_accept_timer);
	}
	server_listen_update(w);
}

/*
 * The connection's memory, timer and io on fd (ssl: TLS, owned from now
 * on, or NULL); NULL if out of memory (then nothing is owned).
 */
static struct conn *
conn_alloc(struct worker *w, int fd, SSL *ssl)
{
	struct conn	*c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return (NULL);
	c->c_w = w;
	if ((c->c_timer = evtimer_new(w->w_base, conn_timer_cb, c)) == NULL) {
		free(c);
		return (NULL);
	}
	if (io_init(&c->c_io, w->w_base, fd, ssl, &conn_io_ops, c,
	    w->w_tv_send) == -1) {
		event_free(c->c_timer);
		free(c);
		return (NULL);
	}
	c->c_in = c->c_io.io_in;
	c->c_out = c->c_io.io_out;
	c->c_tls = ssl != NULL;
	return (c);
}

/* 1 if a warning repeated at *last_us may be logged now (once a second). */
static int
server_log_due(int64_t *last_us)
{
	int64_t	 now = util_mono_us();

	if (*last_us != 0 && now - *last_us < SERVER_LOG_EVERY_US)
		return (0);
	*last_us = now;
	return (1);
}

/*
 * Switch the listeners on or off as the worker's state says: off while
 * stopping or after accept(2) failed (w_accept_paused), and at
 * max_connections unless a reusable connection can make room (see
 * server_reuse()).  Cheap when nothing changes.
 */
static void
server_listen_update(struct worker *w)
{
	size_t	 i;
	int	 on;

	on = !w->w_stopping && !w->w_accept_paused &&
	    (w->w_nconns < w->w_conf->c_max_connections ||
	    !TAILQ_EMPTY(&w->w_idle));
	if (on == w->w_accepting)
		return;
	for (i = 0; i < w->w_nlisteners; i++) {
		if (on)
			evconnlistener_enable(w->w_listeners[i].sl_lev);
		else
			evconnlistener_disable(w->w_listeners[i].sl_lev);
	}
	w->w_accepting = on;
}

/*
 * At max_connections, make room for the connection being accepted: close
 * the one that has waited longest for a request (the head of w_idle).
 * nginx does the same when worker_connections run out, rather than leave
 * new clients waiting while idle keep-alive connections hold every slot.
 * Not while stopping: then the connections accepted are those drained
 * from the queue (server_drain()), each to be answered, and the one
 * longest idle would be the one drained just before.
 */
static void
server_reuse(struct worker *w)
{
	struct conn	*c;

	if (w->w_stopping || w->w_nconns < w->w_conf->c_max_connections ||
	    (c = TAILQ_FIRST(&w->w_idle)) == NULL)
		return;
	w->w_reused++;
	if (server_log_due(&w->w_reuse_log_us)) {
		log_warnx("max_connections (%d) reached: closing idle "
		    "connections to accept new ones (%lu in the last second)",
		    w->w_conf->c_max_connections, w->w_reused);
		w->w_reused = 0;
	}
	conn_free(c);
}

/*
 * The request's real client (c_rclient, c_rip).  m NULL: back to the
 * peer, at accept and after each request, so that a request refused
 * before its header is read is the peer's.  Else the address a trusted
 * peer (real_ip_from) names in m's real_ip_header, if it does.  With
 * real_ip_from set, an untrusted peer's X-Forwarded-For is not forwarded.
 */
static void
conn_real_client(struct conn *c, const struct http_msg *m)
{
	const struct config	*conf = c->c_w->w_conf;
	uint8_t			 ip[16];
	size_t			 n;

	if (m == NULL) {
		memcpy(c->c_rclient, c->c_client, sizeof(c->c_rclient));
		memcpy(c->c_rip, c->c_ip, sizeof(c->c_rip));
		c->c_riplen = c->c_iplen;
		c->c_xff_keep = 1;
		return;
	}
	if (conf->c_nreal_ip_from == 0)
		return;
	if (c->c_iplen == 0 || !cidr_match(conf->c_real_ip_from,
	    conf->c_nreal_ip_from, c->c_ip, c->c_iplen)) {
		c->c_xff_keep = 0;
		return;
	}
	if ((n = realip_find(conf->c_real_ip_from, conf->c_nreal_ip_from, m,
	    conf->c_real_ip_header, ip)) == 0)
		return;
	if (inet_ntop(n == 4 ? AF_INET : AF_INET6, ip, c->c_rclient,
	    sizeof(c->c_rclient)) == NULL)
		return;
	memcpy(c->c_rip, ip, n);
	c->c_riplen = n;
}

/* The client's address, as text and as bytes (IPv4-mapped as IPv4). */
static void
conn_address(struct conn *c, const struct sockaddr *sa)
{
	const void	*addr;

	addr = sa->sa_family == AF_INET6 ?
	    (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr :
	    (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
	if (inet_ntop(sa->sa_family, addr, c->c_client,
	    sizeof(c->c_client)) == NULL)
		snprintf(c->c_client, sizeof(c->c_client), "unknown");
	c->c_iplen = sa->sa_family == AF_INET6 ? 16 :
	    sa->sa_family == AF_INET ? 4 : 0;
	if (c->c_iplen == 16 && IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)
	    addr)) {
		addr = (const char *)addr + 12;	/* one counter per IPv4 */
		c->c_iplen = 4;
	}
	memcpy(c->c_ip, addr, c->c_iplen);
	conn_real_client(c, NULL);
}

/* A new connection from a listener (TLS: its handshake comes first). */
static void
server_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct server_listener	*sl = arg;
	struct worker		*w = sl->sl_w;
	struct conn		*c;
	SSL			*ssl = NULL;
	int			 one = 1;

	(void)l;
	(void)salen;
	server_reuse(w);
	if (sl->sl_tls && ((ssl = tls_server_ssl(w->w_conf->c_tls)) == NULL ||
	    SSL_set_fd(ssl, fd) != 1)) {
		log_warnx("out of memory accepting a TLS connection");
		SSL_free(ssl);
		close(fd);
		return;
	}
	if ((c = conn_alloc(w, fd, ssl)) == NULL) {
		log_warnx("out of memory accepting a connection");
		SSL_free(ssl);
		close(fd);
		return;
	}
	conn_address(c, sa);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->c_admin = sl->sl_admin;
	c->c_metrics = sl->sl_metrics;
	c->c_gauge = -1;
	TAILQ_INSERT_TAIL(&w->w_conns, c, c_entry);
	w->w_nconns++;
	SHM_ADD(&w->w_stats->sw_accepted, 1);
	SHM_ADD(&w->w_stats->sw_active, 1);
	STATS_BUMP(&w->w_ss->ss_accepted, 1);

	conn_reading(c, 1);
	conn_set_state(c, CONN_IDLE);
	/* The first request (and a TLS handshake) gets header_timeout. */
	conn_timer(c, w->w_tv_header);
	conn_idle_add(c);
	server_listen_update(w);
}

/*
 * accept(2) failed for want of something: EMFILE, ENFILE, ENOBUFS, ENOMEM
 * (libevent retries EAGAIN, EINTR and ECONNABORTED itself).  The
 * connection stays queued and the listener readable, so accepting again
 * at once would spin the loop.  Stop accepting for SERVER_ACCEPT_PAUSE_MS,
 * or until one of this worker's connections closes and gives a descriptor
 * back (conn_free()), whichever comes first, as nginx does; other workers
 * go on accepting meanwhile.  Logged once a second at most.
 */
static void
server_accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct server_listener	*sl = arg;
	struct worker		*w = sl->sl_w;
	struct timeval	 tv;
	int		 err = EVUTIL_SOCKET_ERROR();

	w->w_accept_errors++;
	if (server_log_due(&w->w_accept_log_us)) {
		log_warnx("accept: %s%s; not accepting for %d ms (%lu "
		    "failures in the last second)",
		    evutil_socket_error_to_string(err), err == EMFILE ?
		    " (raise the descriptor limit, RLIMIT_NOFILE, or lower "
		    "max_connections)" : "", SERVER_ACCEPT_PAUSE_MS,
		    w->w_accept_errors);
		w->w_accept_errors = 0;
	}
	w->w_accept_paused = 1;
	server_listen_update(w);
	tv.tv_sec = SERVER_ACCEPT_PAUSE_MS / 1000;
	tv.tv_usec = (SERVER_ACCEPT_PAUSE_MS % 1000) * 1000;
	evtimer_add(w->w_accept_timer, &tv);
}

/* The pause after a failed accept(2) is over: try again. */
static void
server_accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker	*w = arg;

	w->w_accept_paused = 0;
	server_listen_update(w);
}

/*
 * Stopping: accept what is queued on the listeners, then close them.  When
 * a reload dropped this worker's index (fewer workers) the master has
 * closed its copy of the index's sockets already, so this worker's close
 * is the last and would reset every connection queued on them (master.c);
 * accepted, they are answered (with Connection: close) like the requests
 * in flight.  On a socket other workers still accept on, this takes a few
 * connections they would have taken.  Bounded by the backlog; stops at the
 * first accept(2) that fails (EAGAIN: nothing queued; EMFILE...).
 */
static void
server_drain(struct worker *w)
{
	struct server_listener	*sl;
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	size_t			 i;
	int			 fd, n;

	for (i = 0; i < w->w_nlisteners; i++) {
		sl = &w->w_listeners[i];
		for (n = 0; n < SERVER_DRAIN_MAX; n++) {
			sslen = sizeof(ss);
			fd = accept4(evconnlistener_get_fd(sl->sl_lev),
			    (struct sockaddr *)&ss, &sslen, SOCK_NONBLOCK |
			    SOCK_CLOEXEC);
			if (fd == -1)
				break;
			server_accept_cb(sl->sl_lev, fd, (struct sockaddr *)&ss,
			    (int)sslen, sl);
		}
		evconnlistener_free(sl->sl_lev);
	}
	w->w_nlisteners = 0;
}

/*
 * Graceful stop: stop accepting, let in-flight requests finish (their
 * responses go out with Connection: close), close idle keep-alive
 * connections after a short grace, and exit when no connection is left or
 * shutdown_timeout has passed.
 */
static void
server_stop(struct worker *w)
{
	struct timeval	 tv;
	struct conn	*c;

	if (w->w_stopping)
		return;
	w->w_stopping = 1;
	proxy_stopping(w->w_proxy);
	if (w->w_accept_timer != NULL)
		evtimer_del(w->w_accept_timer);
	TAILQ_FOREACH(c, &w->w_conns, c_entry) {
		if (c->c_state == CONN_IDLE)
			conn_timer(c, w->w_tv_stopidle);
		else if (c->c_state == CONN_BODY)
			c->c_keepalive = 0;	/* its answer says so */
	}
	/* After: what it accepts keeps header_timeout for its request. */
	server_drain(w);
	w->w_accepting = 0;
	if (w->w_nconns == 0) {
		event_base_loopexit(w->w_base, NULL);
		return;
	}
	tv.tv_sec = w->w_conf->c_shutdown_timeout / 1000;
	tv.tv_usec = (w->w_conf->c_shutdown_timeout % 1000) * 1000;
	evtimer_add(w->w_stop_timer, &tv);
}

static void
server_stop_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker	*w = arg;

	log_warnx("shutdown_timeout passed with %d connection(s) open; "
	    "closing them", w->w_nconns);
	event_base_loopexit(w->w_base, NULL);
}

/* Signals, delivered by libevent inside the loop. */
static void
server_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct worker	*w = arg;

	switch (sig) {
	case SIGTERM:
		server_stop(w);
		break;
	case SIGQUIT:
		event_base_loopbreak(w->w_base);
		break;
	case SIGUSR1:
		log_reopen();
		if (w->w_alog != NULL)
			accesslog_reopen(w->w_alog);
		break;
	}
}

/* Stop gracefully if the master has gone away. */
static void
server_parent_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker	*w = arg;

	if (getppid() != w->w_env->se_master) {
		log_warnx("master process is gone; stopping");
		server_stop(w);
	}
}

/* Give up root for the configured user; the listeners are already bound. */
static void
server_drop_privileges(const struct config *conf)
{
	if (conf->c_user == NULL || geteuid() != 0)
		return;
	if (setgroups(1, &conf->c_gid) == -1 || setgid(conf->c_gid) == -1 ||
	    setuid(conf->c_uid) == -1)
		fatal("cannot change to user %s", conf->c_user);
}

/* A common timeout (O(1) add/remove) of ms milliseconds. */
static const struct timeval *
server_common_timeout(struct worker *w, int ms)
{
	struct timeval	 tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	return (event_base_init_common_timeout(w->w_base, &tv));
}

/*
 * The key store in the shared segment, and what the admin API needs: the
 * journal (opened on the first write, as the worker's user) and the token.
 */
static int
server_keys_setup(struct worker *w)
{
	struct config		*conf = w->w_conf;
	struct admin_env	*ae = &w->w_admin;

	shm_keystore(w->w_env->se_shm, &w->w_ks);
	if (journal_init(&w->w_journal, conf->c_state_dir, (uid_t)-1,
	    (gid_t)-1) == -1)
		return (-1);
	ae->ae_ks = &w->w_ks;
	ae->ae_journal = &w->w_journal;
	ae->ae_pid = getpid();
	ae->ae_master = w->w_env->se_master;
	ae->ae_token_digest = conf->c_admin ? conf->c_admin_token_digest : NULL;
	memcpy(ae->ae_rate, conf->c_rate, sizeof(ae->ae_rate));
	w->w_rate.ra_keys = conf->c_rate;
	w->w_rate.ra_anonymous = conf->c_anon_rate;
	w->w_rate.ra_ips = shm_iptable(w->w_env->se_shm);
	w->w_rate.ra_jwts = shm_jwttable(w->w_env->se_shm);
	if (conf->c_njwt > 0 && (w->w_jwt = jwtauth_new(conf,
	    w->w_env->se_shm)) == NULL)
		return (-1);
	ae->ae_jwt = w->w_jwt;
	w->w_rate.ra_refused = &w->w_ss->ss_rate[0][0];
	w->w_rate.ra_leasefd = -1;
	if (w->w_env->se_nclfds > 0) {	/* cluster limits (lease.h) */
		w->w_rate.ra_leases = shm_leases(w->w_env->se_shm);
		w->w_rate.ra_leasefd = w->w_env->se_leasefd;
		w->w_rate.ra_lease_stats = &w->w_ss->ss_lease[0];
	}
	ae->ae_version = PACKAGE_VERSION;
	ae->ae_fails = shm_failtable(w->w_env->se_shm);
	ae->ae_stats = shm_stats(w->w_env->se_shm);
	ae->ae_jwks = shm_jwks(w->w_env->se_shm);
	ae->ae_idem = shm_idem(w->w_env->se_shm);
	ae->ae_ui = conf->c_admin && conf->c_admin_ui ?
	    shm_ui(w->w_env->se_shm) : NULL;
	ae->ae_ui_idle_ms = conf->c_admin_ui_idle;
	ae->ae_ui_rotate_days = conf->c_admin_ui_rotate_days;
	ae->ae_ui_unused_days = conf->c_admin_ui_unused_days;
	if ((ae->ae_ui_scopes = w->w_ui_scopes = server_scopes(conf)) == NULL ||
	    (ae->ae_gateway = w->w_gateway = server_gateway_json(conf)) == NULL)
		return (-1);
	/* In a cluster, writes go to the master (cluster.h). */
	if (w->w_env->se_nclfds > 0 && (ae->ae_cluster = cluster_client_new(
	    w->w_env->se_clfds, w->w_env->se_nclfds)) == NULL)
		return (-1);
	secret_json_wipe();	/* admin bodies may hold secrets */
	return (0);
}

/*
 * What GET /v1/gateway shows of the configuration (admin.c adds what
 * changes: health, key sets): routes, upstreams and their servers (each
 * with its metrics id as "_stat"), JWT providers.  NULL if out of memory.
 */
static json_t *
server_gateway_json(const struct config *conf)
{
	static const char *const methods[] = { "GET", "HEAD", "POST", "PUT",
	    "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT" };
	const struct route	*r;
	const struct upstream	*u;
	const struct jwt_provider *jp;
	json_t			*o, *routes, *ups, *jwts, *a, *m, *sc, *sv;
	size_t			 i, k;
	int			 j;

	routes = json_array();
	ups = json_array();
	jwts = json_array();
	o = json_pack("{s:o, s:o, s:o}", "routes", routes, "upstreams", ups,
	    "jwt_providers", jwts);
	if (o == NULL)
		return (NULL);
	/* Any failure (memory): no description, and the worker stops. */
#define ADD(a, v)	do {						\
	if (json_array_append_new((a), (v)) == -1)			\
		goto fail;						\
} while (0)
	for (i = 0; i < conf->c_routes.rt_nroutes; i++) {
		r = &conf->c_routes.rt_routes[i];
		m = json_array();
		for (k = 0; k < nitems(methods); k++)
			if (r->r_methods & (1 << k))
				ADD(m, json_string(methods[k]));
		if ((r->r_methods & HTTP_M_ANY) == HTTP_M_ANY) {
			json_array_clear(m);
			ADD(m, json_string("*"));
		}
		a = json_array();
		for (j = 0; j < r->r_nauth; j++)
			ADD(a, r->r_auth[j] == ROUTE_AUTH_JWT &&
			    r->r_jwt[j] >= 0 && (size_t)r->r_jwt[j] <
			    conf->c_njwt ? json_sprintf("jwt:%s",
			    conf->c_jwt[r->r_jwt[j]].jp_name) :
			    json_string(route_auth_name(r->r_auth[j])));
		sc = json_array();
		for (j = 0; j < r->r_nscopes; j++)
			ADD(sc, json_string(r->r_scopes[j]));
		ADD(routes, json_pack("{s:s, s:o, s:s, s:o, "
		    "s:o, s:o, s:s?}", "name", r->r_name, "methods", m,
		    "pattern", r->r_pattern, "auth", a, "scopes", sc,
		    "rate_limit", r->r_rate_off ? json_string("off") :
		    json_pack("{s:o, s:o, s:o}",
		    "per_1s", r->r_rate[0] ? json_integer(r->r_rate[0]) :
		    json_null(),
		    "per_10s", r->r_rate[1] ? json_integer(r->r_rate[1]) :
		    json_null(),
		    "per_60s", r->r_rate[2] ? json_integer(r->r_rate[2]) :
		    json_null()),
		    "upstream", r->r_upstream != NULL ?
		    r->r_upstream->u_name : NULL));
	}
	for (i = 0; i < conf->c_nupstreams; i++) {
		u = &conf->c_upstreams[i];
		sv = json_array();
		for (j = 0; u->u_type == UPSTREAM_HTTP && j < u->u_nservers;
		    j++)
			ADD(sv, json_pack("{s:s, s:s, s:i, "
			    "s:I}", "url", u->u_servers[j].us_url, "server",
			    u->u_servers[j].us_server, "weight",
			    u->u_servers[j].us_weight, "_stat",
			    (json_int_t)u->u_servers[j].us_stat_id));
		ADD(ups, json_pack("{s:s, s:s, s:o, s:s?}",
		    "name", u->u_name, "type", u->u_type == UPSTREAM_ECHO ?
		    "echo" : "http", "servers", sv, "health_check",
		    u->u_health));
	}
	for (i = 0; i < conf->c_njwt; i++) {
		jp = &conf->c_jwt[i];
		a = json_array();
		for (j = 0; j < jp->jp_nissuers; j++)
			ADD(a, json_string(jp->jp_issuers[j]));
		ADD(jwts, json_pack("{s:s, s:o, s:s}", "name",
		    jp->jp_name, "issuers", a, "jwks", jp->jp_jwks_url != NULL ?
		    jp->jp_jwks_url : jp->jp_jwks_path != NULL ?
		    jp->jp_jwks_path : "discovery"));
	}
	return (o);
fail:
	json_decref(o);
	return (NULL);
#undef ADD
}

/*
 * The scopes the routes require, each once, space-separated (for the web
 * console to offer when a key is made); NULL if out of memory.
 */
static char *
server_scopes(const struct config *conf)
{
	const struct route	*r;
	size_t			 i, len = 1, n;
	char			*out, *p;
	int			 j;

	for (i = 0; i < conf->c_routes.rt_nroutes; i++)
		for (r = &conf->c_routes.rt_routes[i], j = 0; j < r->r_nscopes;
		    j++)
			len += strlen(r->r_scopes[j]) + 1;
	if ((out = calloc(1, len)) == NULL)
		return (NULL);
	for (i = 0; i < conf->c_routes.rt_nroutes; i++)
		for (r = &conf->c_routes.rt_routes[i], j = 0; j < r->r_nscopes;
		    j++) {
			n = strlen(r->r_scopes[j]);
			/* Already there: a whole word of out. */
			for (p = strstr(out, r->r_scopes[j]); p != NULL;
			    p = strstr(p + 1, r->r_scopes[j]))
				if ((p == out || p[-1] == ' ') &&
				    (p[n] == ' ' || p[n] == '\0'))
					break;
			if (p != NULL)
				continue;
			if (out[0] != '\0')
				strcat(out, " ");
			strcat(out, r->r_scopes[j]);
		}
	return (out);
}

/* Create the loop, timers, signals and listeners. */
static int
server_setup(struct worker *w)
{
	static const int	 sigs[] = { SIGTERM, SIGQUIT, SIGUSR1 };
	struct config		*conf = w->w_conf;
	struct server_listener	*sl;
	char			 err[256];
	const char		*cause;
	size_t			 i;
	int			 idle;

	if ((w->w_base = event_base_new()) == NULL)
		return (-1);
	idle = conf->c_keepalive_timeout > 0 ? conf->c_keepalive_timeout : 1;
	w->w_tv_idle = server_common_timeout(w, idle);
	w->w_tv_header = server_common_timeout(w, conf->c_header_timeout);
	w->w_tv_body = server_common_timeout(w, conf->c_body_timeout);
	w->w_tv_send = server_common_timeout(w, conf->c_send_timeout);
	w->w_tv_linger = server_common_timeout(w, SERVER_LINGER_MS);
	w->w_tv_stopidle = server_common_timeout(w, idle < SERVER_STOP_IDLE_MS ?
	    idle : SERVER_STOP_IDLE_MS);
	if (w->w_tv_idle == NULL || w->w_tv_header == NULL ||
	    w->w_tv_body == NULL || w->w_tv_send == NULL ||
	    w->w_tv_linger == NULL || w->w_tv_stopidle == NULL)
		return (-1);
	for (i = 0; i < 3; i++) {
		w->w_sigs[i] = evsignal_new(w->w_base, sigs[i],
		    server_signal_cb, w);
		if (w->w_sigs[i] == NULL || evsignal_add(w->w_sigs[i], NULL) == -1)
			return (-1);
	}
	w->w_stop_timer = evtimer_new(w->w_base, server_stop_timeout_cb, w);
	w->w_parent_timer = event_new(w->w_base, -1, EV_PERSIST,
	    server_parent_cb, w);
	w->w_accept_timer = evtimer_new(w->w_base, server_accept_resume_cb, w);
	if (w->w_stop_timer == NULL || w->w_parent_timer == NULL ||
	    w->w_accept_timer == NULL)
		return (-1);
	if ((w->w_proxy = proxy_new(w->w_base, conf, &w->w_limits,
	    w->w_scanmax, w->w_ss, w->w_env->se_shm->sh_health)) == NULL)
		return (-1);
	if (server_keys_setup(w) == -1)
		return (-1);
	if ((w->w_adminq = adminq_start(w->w_base, &w->w_admin,
	    ADMINQ_THREADS, conn_admin_done, w, &cause)) == NULL) {
		log_warnx("admin threads: %s", cause);
		return (-1);
	}
	if (conf->c_access_log != NULL && (w->w_alog =
	    accesslog_open(conf->c_access_log, err, sizeof(err))) == NULL) {
		log_warnx("%s", err);
		return (-1);
	}
	for (i = 0; i < w->w_env->se_nlfds && i < SERVER_MAX_LISTENERS; i++) {
		sl = &w->w_listeners[i];
		sl->sl_w = w;
		sl->sl_tls = config_listen(conf, i)->la_tls;
		sl->sl_admin = config_listen_kind(conf, i) == LISTEN_ADMIN;
		sl->sl_metrics = config_listen_kind(conf, i) == LISTEN_METRICS;
		/*
		 * The master listens on the first socket of an address only;
		 * this worker's own one is listened on now that it is about
		 * to accept (master.c).  On a socket listening already, this
		 * only sets the same backlog again.
		 */
		if (listen(w->w_env->se_lfds[i], MASTER_BACKLOG) == -1) {
			log_warn("listen %s", config_listen(conf, i)->la_name);
			return (-1);
		}
		sl->sl_lev = evconnlistener_new(w->w_base, server_accept_cb, sl,
		    LEV_OPT_CLOSE_ON_FREE, 0, w->w_env->se_lfds[i]);
		if (sl->sl_lev == NULL)
			return (-1);
		evconnlistener_set_error_cb(sl->sl_lev, server_accept_error_cb);
		w->w_nlisteners++;
	}
	w->w_accepting = 1;
	return (0);
}

/* Free everything the worker owns (connections included). */
static void
server_teardown(struct worker *w)
{
	struct conn	*c;
	uint64_t	 lines, syncs;
	size_t		 i;
	int		 stuck;

	while ((c = TAILQ_FIRST(&w->w_conns)) != NULL) {
		w->w_stopping = 1;	/* no loopexit bookkeeping needed */
		conn_free(c);
	}
	/* Writes in progress end (acknowledged or not) before the exit. */
	stuck = adminq_stop(w->w_adminq, ADMINQ_STOP_MS);
	w->w_adminq = NULL;
	for (i = 0; i < w->w_nlisteners; i++)
		evconnlistener_free(w->w_listeners[i].sl_lev);
	for (i = 0; i < 3; i++)
		if (w->w_sigs[i] != NULL)
			event_free(w->w_sigs[i]);
	if (w->w_stop_timer != NULL)
		event_free(w->w_stop_timer);
	if (w->w_parent_timer != NULL)
		event_free(w->w_parent_timer);
	if (w->w_accept_timer != NULL)
		event_free(w->w_accept_timer);
	proxy_free(w->w_proxy);
	w->w_proxy = NULL;
	jwtauth_free(w->w_jwt);		/* wipes the cached identities */
	w->w_jwt = NULL;
	free(w->w_ui_scopes);
	w->w_ui_scopes = NULL;
	json_decref(w->w_gateway);
	w->w_gateway = NULL;
	if (w->w_journal.j_dir != NULL) {
		journal_sync_stats(&w->w_journal, &lines, &syncs);
		if (lines > 0)
			log_info("journal: %llu change(s) made durable with "
			    "%llu fdatasync call(s)", (unsigned long long)lines,
			    (unsigned long long)syncs);
	}
	journal_close(&w->w_journal);
	/* A thread stuck in cluster_call() still uses it: left to the exit. */
	if (stuck == 0) {
		cluster_client_free(w->w_admin.ae_cluster);
		w->w_admin.ae_cluster = NULL;
	}
	accesslog_close(w->w_alog);
	if (w->w_base != NULL)
		event_base_free(w->w_base);
}

/* Serve until stopped. */
int
server_run(const struct server_env *env)
{
	struct worker	 w;
	struct timeval	 one = { 1, 0 };
	sigset_t	 stops;
	int		 rc = 0;

	memset(&w, 0, sizeof(w));
	TAILQ_INIT(&w.w_conns);
	TAILQ_INIT(&w.w_idle);
	w.w_env = env;
	w.w_conf = env->se_conf;
	w.w_stats = env->se_slot >= 0 ? &env->se_shm->sh_workers[env->se_slot] :
	    &w.w_nostats;
	/* Without a slot (tests), the counters go nowhere anyone reads. */
	w.w_ss = env->se_slot >= 0 && env->se_slot < STATS_WORKERS ?
	    &shm_stats(env->se_shm)->sr_slots[env->se_slot] : &server_nostats;
	w.w_limits.hl_max_line = w.w_conf->c_max_request_line;
	w.w_limits.hl_max_header = w.w_conf->c_max_header_size;
	/* Room for a few skipped empty lines past the header limit. */
	w.w_scanmax = w.w_conf->c_max_header_size + 16;
	w.w_pipemax = SERVER_PIPELINE_HDRS * w.w_conf->c_max_header_size;
	w.w_date_sec = -1;
	if (RAND_bytes((unsigned char *)&w.w_reqid_seed,
	    sizeof(w.w_reqid_seed)) != 1)
		w.w_reqid_seed = (uint64_t)util_mono_us() ^ (uint64_t)getpid();

	log_setprefix("worker");
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	server_drop_privileges(w.w_conf);
#ifdef HAVE_SYS_PRCTL_H
	/*
	 * Only now: the kernel clears the parent-death signal when the
	 * credentials change (setuid above), so set before it would be lost.
	 * A master that died before this line sends nothing; the getppid()
	 * check below, made after this, catches that case.
	 */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
#endif
	if (server_setup(&w) == -1) {
		log_warnx("worker setup failed");
		rc = 1;
		goto done;
	}
	evtimer_add(w.w_parent_timer, &one);
	/* Handlers exist now: a stop that arrived while starting is delivered. */
	sigemptyset(&stops);
	sigaddset(&stops, SIGTERM);
	sigaddset(&stops, SIGQUIT);
	sigprocmask(SIG_UNBLOCK, &stops, NULL);
	/* Tell the master this worker is serving (it confirms reloads by it). */
	__atomic_store_n(&w.w_stats->sw_ready, 1, __ATOMIC_RELEASE);
	/* The master may have died before PR_SET_PDEATHSIG was set. */
	if (getppid() != env->se_master)
		server_stop(&w);
	log_debug("%s: worker ready", __func__);
	event_base_dispatch(w.w_base);
done:
	server_teardown(&w);
	return (rc);
}
