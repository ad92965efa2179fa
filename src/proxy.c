/*
 * Reverse proxying to http:// and https:// upstreams; see proxy.h.
 *
 * Each worker keeps, per upstream server, a list of idle keep-alive
 * connections (at most u_max_idle, each closed after u_idle_timeout).  A
 * request picks a server (proxy_pick(): smooth weighted round robin, or
 * least busy exchanges per weight, among the servers not marked down),
 * takes an idle connection to it (or connects anew), and gives
 * it back only when the whole request was sent, the whole response read,
 * nothing extra arrived and the upstream did not ask to close: a second
 * request never goes out on a connection whose response was not fully
 * read.  An idle connection is watched for reading, so one the upstream
 * closes is noticed and dropped.
 *
 * The client side owns the exchange: an upconn points back at its client
 * (uc_req, an opaque pointer and callbacks) while busy, and the client
 * holds the upconn.  Callbacks of an upconn do their work first and then
 * hand control to the client with pc_kick, which may free the client and
 * with it the upconn; nothing touches the upconn after that.
 *
 * Failures are marked per worker and server, as nginx does without a
 * shared zone: max_fails failures within fail_timeout take the server out
 * for fail_timeout; a response head brings its count back to zero.  When
 * every server of an upstream is out, requests are refused 502 at once.
 * A request that failed before any response byte goes to another server,
 * at most u_retries times, when it can be sent again and retry_on names
 * the failure: it has no body (its head is kept in uc_retry), and either
 * its connect failed (nothing was sent: any method) or its method is
 * idempotent.  A body streams through unkept, so a request with one goes
 * elsewhere only when its connect fails inside proxy_start(), before the
 * body is read.
 *
 * An Upgrade (WebSocket) request goes out with Connection: upgrade; a 101
 * agreeing to it turns the exchange into a tunnel (uc_tunnel): the 101
 * head goes to the client, which switches to tunnelling (pc_tunnel), and
 * from then on the upstream's bytes are a body that ends with the
 * connection, the client's go out as they come (proxy_tunnel_send()), each
 * side paused while the other's output is over IO_MAX_OUTPUT, and the
 * whole closes after idle_timeout without a byte either way.  The tunnel
 * is one request: the client logs it, status 101, when it ends.
 *
 * https:// upstreams use the same code: the connection's io (io.h) does
 * TLS, the handshake happening with the first write; a failed
 * verification is a failed connection (502), its reason logged.
 */

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "config.h"
#include "forward.h"
#include "health.h"
#include "http.h"
#include "io.h"
#include "log.h"
#include "proxy.h"
#include "stats.h"
#include "tls.h"
#include "util.h"

enum uc_state {
	UC_IDLE,	/* in the pool */
	UC_CONNECTING,	/* connect() in progress */
	UC_HEAD,	/* waiting for the response's header section */
	UC_BODY		/* streaming the response body to the client */
};

struct upool;

struct upconn {
	TAILQ_ENTRY(upconn)	 uc_entry;	/* in up_idle while idle */
	struct upool		*uc_pool;
	struct io		 uc_io;
	struct event		*uc_timer;
	enum uc_state		 uc_state;
	int			 uc_busy;	/* uc_req is a live client */
	struct proxy_request	 uc_req;	/* the client's, while busy */
	int			 uc_mbit;	/* the request's method */
	int			 uc_blocked;	/* not reading: client output full */
	int			 uc_upwait;	/* the client paused: body */
						/* back-pressure */
	int			 uc_reused;	/* came from the pool */
	int			 uc_got;	/* a response byte arrived */
	int			 uc_active;	/* counted in up_active */
	int			 uc_stale;	/* a pooled one closed before */
						/* answering: not a failure */
	int			 uc_tries;	/* servers tried after the first */
	int			 uc_idem;	/* may go out again once sent */
	uint64_t		 uc_tried;	/* by position in u_servers */
	int			 uc_req_done;	/* the whole request is in uc_out */
	int			 uc_upgrade;	/* the request asked for an Upgrade */
	char			 uc_offered[PROXY_UPGRADE_MAX];	/* of these */
	int			 uc_tunnel;	/* 101 passed on: bytes both ways */
	int			 uc_shut;	/* tunnel: the client sent EOF; */
						/* shut the write side once sent */
	int64_t			 uc_sent_us;	/* monotonic: the request went */
						/* out (attached to this client) */
	struct evbuffer		*uc_retry;	/* request head, if retryable */

	struct http_msg		 uc_msg;	/* response head */
	int			 uc_status;
	enum http_body		 uc_body;
	uint64_t		 uc_left;
	int			 uc_dechunk;	/* HTTP/1.0 client: decode chunked */
	struct http_chunked	 uc_chunked;
	uint64_t		 uc_bytes;	/* bytes queued for the client */
};

/* One server of an upstream, in one worker. */
struct upool {
	struct upstream		*up_u;
	struct upstream_server	*up_s;
	int			 up_k;		/* its position in u_servers */
	struct proxy		*up_proxy;
	TAILQ_HEAD(, upconn)	 up_idle;
	int			 up_nidle;
	int			 up_active;	/* exchanges under way */
	int			 up_fails;	/* failures since up_fail_ms */
	int64_t			 up_fail_ms;
	int64_t			 up_down_until;	/* monotonic ms: out until then */
	int			 up_cw;		/* current weight, round robin */
};

struct proxy {
	struct event_base	*px_base;
	const struct config	*px_conf;
	const struct http_limits *px_limits;
	size_t			 px_scanmax;
	int			 px_stopping;
	struct stats_slot	*px_ss;
	const uint64_t		*px_health;	/* shm.h sh_health */
	const struct timeval	**px_idle_tv;	/* per upstream: common */
						/* timeout of idle_timeout */
	unsigned int		*px_lc_next;	/* per upstream: least_conn */
						/* ties start here */
	int64_t			*px_out_log;	/* per upstream: "all out" */
						/* last logged, ms */
	size_t			 px_npools;
	struct upool		 px_pools[];
};

static void	 upconn_on_read(void *);
static void	 upconn_on_write(void *, int);
static void	 upconn_timer_cb(evutil_socket_t, short, void *);
static void	 proxy_advance(struct upconn *);
static int	 proxy_failover(struct upconn *, int);

static const struct io_ops upconn_io_ops = { upconn_on_read, upconn_on_write };

/* One pool per upstream server of the worker's configuration. */
struct proxy *
proxy_new(struct event_base *base, const struct config *conf,
    const struct http_limits *limits, size_t scanmax, struct stats_slot *ss,
    const uint64_t *health)
{
	struct proxy	*px;
	struct upstream	*u;
	struct upool	*up;
	struct timeval	 tv;
	size_t		 i;
	int		 k;

	px = calloc(1, sizeof(*px) + (size_t)conf->c_nservers *
	    sizeof(struct upool));
	if (px == NULL)
		return (NULL);
	px->px_base = base;
	px->px_conf = conf;
	px->px_limits = limits;
	px->px_scanmax = scanmax;
	px->px_ss = ss;
	px->px_health = health;
	px->px_npools = (size_t)conf->c_nservers;
	px->px_idle_tv = calloc(conf->c_nupstreams + 1,
	    sizeof(*px->px_idle_tv));
	px->px_lc_next = calloc(conf->c_nupstreams + 1,
	    sizeof(*px->px_lc_next));
	px->px_out_log = calloc(conf->c_nupstreams + 1,
	    sizeof(*px->px_out_log));
	if (px->px_idle_tv == NULL || px->px_lc_next == NULL ||
	    px->px_out_log == NULL) {
		proxy_free(px);
		return (NULL);
	}
	for (i = 0; i < conf->c_nupstreams; i++) {
		u = &conf->c_upstreams[i];
		if (u->u_type != UPSTREAM_HTTP)
			continue;
		util_ms_timeval(u->u_idle_timeout, &tv);
		if ((px->px_idle_tv[i] = event_base_init_common_timeout(base,
		    &tv)) == NULL) {
			proxy_free(px);
			return (NULL);
		}
		for (k = 0; k < u->u_nservers; k++) {
			up = &px->px_pools[u->u_servers[k].us_index];
			up->up_u = u;
			up->up_s = &u->u_servers[k];
			up->up_k = k;
			up->up_proxy = px;
			TAILQ_INIT(&up->up_idle);
		}
	}
	return (px);
}

/* Close an upstream connection (taking it out of the pool if idle). */
static void
upconn_free(struct upconn *uc)
{
	if (uc->uc_state == UC_IDLE) {
		TAILQ_REMOVE(&uc->uc_pool->up_idle, uc, uc_entry);
		uc->uc_pool->up_nidle--;
	}
	if (uc->uc_active)
		uc->uc_pool->up_active--;
	io_free(&uc->uc_io);
	event_free(uc->uc_timer);
	if (uc->uc_retry != NULL)
		evbuffer_free(uc->uc_retry);
	free(uc);
}

/* Close every pooled connection and free the pools. */
void
proxy_free(struct proxy *px)
{
	struct upconn	*uc;
	size_t		 i;

	if (px == NULL)
		return;
	for (i = 0; i < px->px_npools; i++)
		while (px->px_pools[i].up_proxy != NULL &&
		    (uc = TAILQ_FIRST(&px->px_pools[i].up_idle)) != NULL)
			upconn_free(uc);
	free(px->px_idle_tv);
	free(px->px_lc_next);
	free(px->px_out_log);
	free(px);
}

/* The worker stops: no connection goes back to a pool any more. */
void
proxy_stopping(struct proxy *px)
{
	if (px != NULL)
		px->px_stopping = 1;
}

/* A socket connecting to us; see proxy.h. */
int
proxy_socket(const struct upstream_server *us)
{
	int	 fd, one = 1, saved;

	fd = socket(us->us_ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd == -1)
		return (-1);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)&us->us_ss, us->us_sslen) ==
	    -1 &&
	    errno != EINPROGRESS) {
		saved = errno;
		close(fd);
		errno = saved;
		return (-1);
	}
	return (fd);
}

/*
 * Connect uc's io to its upstream (a new socket, and TLS for https);
 * -1 with errno set.
 */
static int
upconn_connect(struct upconn *uc)
{
	struct upstream	*u = uc->uc_pool->up_u;
	SSL		*ssl = NULL;
	int		 fd;

	if ((fd = proxy_socket(uc->uc_pool->up_s)) == -1)
		return (-1);
	if (u->u_tls && ((ssl = tls_upstream_ssl(u, uc->uc_pool->up_s)) ==
	    NULL ||
	    SSL_set_fd(ssl, fd) != 1))
		goto nomem;
	if (io_init(&uc->uc_io, uc->uc_pool->up_proxy->px_base, fd, ssl,
	    &upconn_io_ops, uc, NULL) == -1)
		goto nomem;
	uc->uc_state = UC_CONNECTING;
	return (0);
nomem:
	if (ssl != NULL)
		SSL_free(ssl);
	close(fd);
	errno = ENOMEM;
	return (-1);
}

/* A new connection to the pool's upstream; NULL with errno set. */
static struct upconn *
upconn_new(struct upool *up)
{
	struct upconn	*uc;

	if ((uc = calloc(1, sizeof(*uc))) == NULL)
		return (NULL);
	uc->uc_pool = up;
	if ((uc->uc_timer = evtimer_new(up->up_proxy->px_base,
	    upconn_timer_cb, uc)) == NULL) {
		free(uc);
		errno = ENOMEM;
		return (NULL);
	}
	if (upconn_connect(uc) == -1) {
		event_free(uc->uc_timer);
		free(uc);
		return (NULL);
	}
	return (uc);
}

/* (Re)arm the upconn's timer: ms milliseconds. */
static void
upconn_timer(struct upconn *uc, int ms)
{
	struct timeval	 tv;

	util_ms_timeval(ms, &tv);
	evtimer_add(uc->uc_timer, &tv);
}

/* The time allowed between reads: idle_timeout for a tunnel. */
static int
upconn_read_ms(const struct upconn *uc)
{
	return (uc->uc_tunnel ? uc->uc_pool->up_u->u_idle_timeout :
	    uc->uc_pool->up_u->u_read_timeout);
}

/*
 * Time the upstream's answer: read_timeout runs once the whole request is
 * on its way (until then the client's body_timeout rules, as nginx's
 * proxy_read_timeout does), and again after each read.
 */
static void
upconn_wait(struct upconn *uc)
{
	if (uc->uc_req_done || uc->uc_got)
		upconn_timer(uc, upconn_read_ms(uc));
	else
		evtimer_del(uc->uc_timer);
}

/*
 * Write what the output holds.  Once it is empty, a client that was paused
 * because the upstream could not keep up with its body is read again.
 * Returns -1 when the connection is broken.
 */
static int
upconn_flush(struct upconn *uc)
{
	int	 rc;

	if (uc->uc_state == UC_CONNECTING)
		return (0);	/* the write event says when */
	if ((rc = io_flush(&uc->uc_io)) == -1)
		return (-1);
	if (rc == 1 && uc->uc_shut == 1) {
		uc->uc_shut = 2;	/* once */
		io_shutdown(&uc->uc_io);
	}
	if (rc == 1 && uc->uc_busy && uc->uc_upwait) {
		uc->uc_upwait = 0;
		uc->uc_req.pq_ops->pc_reading(uc->uc_req.pq_arg, 1);
	}
	return (0);
}

/*
 * Detach the exchange from its client and close the upstream connection;
 * 1 if there was a client (whose read pause is lifted).
 */
static int
upconn_drop(struct upconn *uc, struct proxy_request *pq)
{
	int	 busy = uc->uc_busy, upwait = uc->uc_upwait;

	*pq = uc->uc_req;
	upconn_free(uc);
	if (busy && upwait)
		pq->pq_ops->pc_reading(pq->pq_arg, 1);
	return (busy);
}

/* Log the reason of a failed upstream connection. */
static void
upconn_log(const struct upconn *uc, const char *what)
{
	const char	*name = uc->uc_pool->up_u->u_name;
	const char	*server = uc->uc_pool->up_s->us_server;

	if (uc->uc_io.io_flags & IO_FAILED)
		log_warnx("upstream %s: %s: TLS: %s; connection %s", name,
		    server, uc->uc_io.io_why, what);
	else
		log_warnx("upstream %s: %s: connection %s", name, server, what);
}

/* Count an attempt on uc's upstream server: keygate_upstream_*. */
static void
proxy_count(const struct upconn *uc, enum stats_upresult res)
{
	stats_upstream(uc->uc_pool->up_proxy->px_ss,
	    uc->uc_pool->up_s->us_stat_id, res,
	    util_mono_us() - uc->uc_sent_us);
}

/*
 * A failure of up's server: max_fails of them within fail_timeout take
 * it out for fail_timeout.  A server back from being out that fails again
 * goes out again at once (its count starts where it stopped).
 */
static void
proxy_mark_failed(struct upool *up)
{
	const struct upstream	*u = up->up_u;
	int64_t			 now = util_mono_ms();

	/* A lone server is never out (as nginx): there is nowhere else. */
	if (u->u_max_fails == 0 || u->u_nservers == 1 ||
	    up->up_down_until > now)
		return;		/* never marked, or out already */
	/* Old failures are forgotten, unless it is on probation. */
	if (up->up_down_until == 0 && up->up_fails > 0 &&
	    now - up->up_fail_ms > u->u_fail_timeout)
		up->up_fails = 0;
	if (up->up_fails == 0)
		up->up_fail_ms = now;
	if (++up->up_fails < u->u_max_fails)
		return;
	up->up_down_until = now + u->u_fail_timeout;
	log_warnx("upstream %s: %s: %d failure%s, out for %d ms", u->u_name,
	    up->up_s->us_server, up->up_fails, up->up_fails > 1 ? "s" : "",
	    u->u_fail_timeout);
}

/* A response head from up's server: its failures are forgotten. */
static void
proxy_mark_ok(struct upool *up)
{
	if (up->up_fails != 0 || up->up_down_until != 0) {
		if (up->up_down_until != 0)
			log_info("upstream %s: %s: answering again",
			    up->up_u->u_name, up->up_s->us_server);
		up->up_fails = 0;
		up->up_down_until = 0;
	}
}

/* Is up's server out after failing its health checks (health.h)? */
static int
proxy_unhealthy(const struct upool *up)
{
	return (health_down(up->up_proxy->px_health, up->up_s));
}

/* Is up's server one a request may go to now? */
static int
proxy_usable(const struct upool *up, int64_t now)
{
	return (up->up_down_until <= now && (up->up_u->u_max_conns == 0 ||
	    up->up_active < up->up_u->u_max_conns) && !proxy_unhealthy(up));
}

/*
 * The server for a request to px's upstream u, among those not in tried
 * (by position) and not out: smooth weighted round robin (nginx's: each
 * adds its weight to its current weight, the largest wins and gives back
 * the total) or least_conn (the fewest exchanges under way per weight;
 * ties go round).  NULL when there is none.
 */
static struct upool *
proxy_pick(struct proxy *px, const struct upstream *u, uint64_t tried)
{
	struct upool	*up, *best = NULL;
	int64_t		 now;
	unsigned int	 start;
	int		 k, n, total = 0;

	if (u->u_nservers == 1) {	/* never marked: no clock read */
		up = &px->px_pools[u->u_servers[0].us_index];
		return (tried == 0 && (u->u_max_conns == 0 ||
		    up->up_active < u->u_max_conns) && !proxy_unhealthy(up) ?
		    up : NULL);
	}
	now = util_mono_ms();
	/* least_conn's ties go round; round robin needs no start. */
	start = u->u_balance == BALANCE_LEAST_CONN ?
	    px->px_lc_next[u->u_index]++ : 0;
	for (n = 0; n < u->u_nservers; n++) {
		k = (int)((start + (unsigned int)n) %
		    (unsigned int)u->u_nservers);
		up = &px->px_pools[u->u_servers[k].us_index];
		if ((tried & (UINT64_C(1) << k)) || !proxy_usable(up, now))
			continue;
		if (u->u_balance == BALANCE_LEAST_CONN) {
			if (best == NULL || (int64_t)up->up_active *
			    best->up_s->us_weight < (int64_t)best->up_active *
			    up->up_s->us_weight)
				best = up;
			continue;
		}
		up->up_cw += up->up_s->us_weight;
		total += up->up_s->us_weight;
		if (best == NULL || up->up_cw > best->up_cw)
			best = up;
	}
	if (best != NULL && u->u_balance == BALANCE_ROUND_ROBIN)
		best->up_cw -= total;
	return (best);
}

/*
 * Why no server of u can be had: every one failed its health checks, or
 * some are out after failures (or at max_conns).
 */
static const char *
proxy_out_why(const struct proxy *px, const struct upstream *u)
{
	int	 k;

	for (k = 0; k < u->u_nservers; k++)
		if (!health_down(px->px_health, &u->u_servers[k]))
			return (u->u_max_conns > 0 ? "every server of the "
			    "upstream is out after failures or at max_conns" :
			    "every server of the upstream is out after "
			    "failures");
	return ("every server of the upstream failed its health check");
}

/*
 * Every server of u is out (or at max_conns): said at most once a second
 * per upstream, since every request in that time gets the same answer.
 */
static void
proxy_log_out(struct proxy *px, const struct upstream *u)
{
	int64_t	 now = util_mono_ms();

	if (now - px->px_out_log[u->u_index] < 1000)
		return;
	px->px_out_log[u->u_index] = now;
	log_warnx("upstream %s: no server to send to: %s (%d servers); "
	    "answering 502", u->u_name, proxy_out_why(px, u), u->u_nservers);
}

/* See proxy.h. */
int
proxy_upgradable(const struct http_msg *m)
{
	return (m->hm_upgradelen < PROXY_UPGRADE_MAX &&
	    !http_list_has(m->hm_upgrade, m->hm_upgradelen, "h2c", 3));
}

/* A failure of this process's own; see proxy.h. */
int
proxy_local_errno(int e)
{
	return (e == ENOMEM || e == EMFILE || e == ENFILE ||
	    e == EADDRNOTAVAIL || e == ENOBUFS);
}

/* Count uc as an exchange under way on its server, or not. */
static void
upconn_active(struct upconn *uc, int on)
{
	if (uc->uc_active == on)
		return;
	uc->uc_active = on;
	uc->uc_pool->up_active += on ? 1 : -1;
}

/*
 * The exchange failed before the response started: the client answers
 * status/code itself.  A client still sending its body cannot be kept.
 * What failed is told by where the exchange was: a TLS failure, the
 * connect, a read timeout (504), or anything else.
 */
static void
proxy_fail(struct upconn *uc, int status, const char *code, const char *msg)
{
	struct proxy_request	 pq;
	int			 done = uc->uc_req_done;

	if (uc->uc_io.io_flags & IO_FAILED)
		proxy_count(uc, STATS_UP_TLS_ERROR);
	else if (uc->uc_state == UC_CONNECTING)
		proxy_count(uc, STATS_UP_CONNECT_ERROR);
	else if (status == 504)
		proxy_count(uc, STATS_UP_TIMEOUT);
	else
		proxy_count(uc, STATS_UP_ERROR);
	if (!uc->uc_stale)
		proxy_mark_failed(uc->uc_pool);
	if (proxy_failover(uc, status == 504 ? RETRY_TIMEOUT : RETRY_ERROR))
		return;

	if (!upconn_drop(uc, &pq))
		return;
	if (!done)
		pq.pq_ops->pc_keepalive(pq.pq_arg, 1);	/* its body is not */
							/* all read */
	pq.pq_ops->pc_refuse(pq.pq_arg, status, code, msg);
}

/*
 * The exchange failed after the response started: the client gets what
 * was already queued and then the connection closes, so a short body is
 * visible as such and never taken for a complete one.
 */
static void
proxy_abort(struct upconn *uc, const char *why)
{
	struct proxy_request	 pq;
	int			 status = uc->uc_status;
	uint64_t		 bytes = uc->uc_bytes;

	log_warnx("upstream %s: %s after the response started; closing the "
	    "client connection", uc->uc_pool->up_u->u_name, why);
	if (!upconn_drop(uc, &pq))
		return;
	pq.pq_ops->pc_keepalive(pq.pq_arg, 1);
	pq.pq_ops->pc_done(pq.pq_arg, status, bytes);
}

/* Append "name: value\r\n". */
static void
proxy_field(struct evbuffer *out, const char *name, size_t namelen,
    const char *value, size_t valuelen)
{
	evbuffer_add(out, name, namelen);
	evbuffer_add(out, ": ", 2);
	evbuffer_add(out, value, valuelen);
	evbuffer_add(out, "\r\n", 2);
}

/*
 * A Cookie header that holds the web console's session: sent without it
 * (or not at all); 1 if done here, 0 to send h as it is.  The usual
 * Cookie fits the stack buffer: no allocation per request.
 */
static int
proxy_cookie(struct evbuffer *out, const struct http_header *h)
{
	char	 small[1024], *buf = small;
	ssize_t	 n;

	if (2 * h->h_valuelen > sizeof(small) &&
	    (buf = malloc(2 * h->h_valuelen)) == NULL)
		return (1);	/* dropped rather than sent with it */
	if ((n = forward_cookie_strip(h->h_value, h->h_valuelen, buf)) > 0)
		proxy_field(out, h->h_name, h->h_namelen, buf, (size_t)n);
	if (buf != small)
		free(buf);
	return (n != -1);
}

/*
 * The request line, the query as sent, the path as routed (server.c),
 * less the upstream's strip_prefix when it starts with it at a segment
 * boundary ("/api/v1" -> "/v1", "/api" -> "/"; "/apix" is kept).
 */
static void
proxy_request_line(const struct http_msg *m, const struct upstream *u,
    struct evbuffer *out)
{
	const char	*path = m->hm_path;
	size_t		 len = m->hm_pathlen, n = u->u_strip_len;

	if (n > 0 && len >= n && memcmp(path, u->u_strip_prefix, n) == 0 &&
	    (len == n || path[n] == '/')) {
		path += n;
		len -= n;
	}
	evbuffer_add(out, m->hm_method, m->hm_methodlen);
	evbuffer_add(out, " ", 1);
	if (len == 0)
		evbuffer_add(out, "/", 1);
	else
		evbuffer_add(out, path, len);
	if (m->hm_query != NULL) {
		evbuffer_add(out, "?", 1);
		evbuffer_add(out, m->hm_query, m->hm_querylen);
	}
	evbuffer_add(out, " HTTP/1.1\r\n", 11);
}

/* X-Forwarded-For (the client appended), -Proto, X-Request-Id. */
static void
proxy_forwarded(const struct http_msg *m, const struct forward_added *fa,
    struct evbuffer *out)
{
	const struct http_header	*h;
	size_t				 i;

	evbuffer_add(out, "X-Forwarded-For: ", 17);
	for (i = 0; fa->fa_xff_keep && i < m->hm_nheaders; i++) {
		h = &m->hm_headers[i];
		if (!http_strcaseeq(h->h_name, h->h_namelen, "x-forwarded-for") ||
		    h->h_valuelen == 0)
			continue;
		evbuffer_add(out, h->h_value, h->h_valuelen);
		evbuffer_add(out, ", ", 2);
	}
	evbuffer_add(out, fa->fa_client, strlen(fa->fa_client));
	if (fa->fa_tls)
		evbuffer_add(out, "\r\nX-Forwarded-Proto: https\r\n", 28);
	else
		evbuffer_add(out, "\r\nX-Forwarded-Proto: http\r\n", 27);
	proxy_field(out, "X-Request-Id", 12, fa->fa_reqid, fa->fa_reqidlen);
	evbuffer_add(out, fa->fa_ident, fa->fa_identlen);	/* CRLF-ended */
}

/*
 * The request head for the upstream: origin-form target, the end-to-end
 * headers the forwarding policy keeps (forward.c), a Host if the client
 * sent none, X-Forwarded-For with the client appended, X-Forwarded-Proto,
 * X-Request-Id, the caller's identity (X-Consumer-Id and the rest, from
 * auth.c), and the body's framing.
 */
static void
proxy_request_head(const struct proxy_request *pq, const struct config *conf,
    const struct upstream *u, const struct upstream_server *us,
    struct evbuffer *out)
{
	const struct http_msg		*m = pq->pq_msg;
	const struct http_header	*h;
	size_t				 i, n;
	char				 num[24];
	struct forward_policy		 fp;
	int				 host = 0, absolute;

	forward_policy_init(&fp, conf);
	proxy_request_line(m, u, out);
	/* An absolute-form target's authority is the Host (RFC 9112 3.2.2). */
	absolute = m->hm_targetlen == 0 || m->hm_target[0] != '/';
	for (i = 0; i < m->hm_nheaders; i++) {
		h = &m->hm_headers[i];
		if (!forward_keep_header(m, h, &fp) ||
		    http_strcaseeq(h->h_name, h->h_namelen, "content-length"))
			continue;
		if (http_strcaseeq(h->h_name, h->h_namelen, "host")) {
			if (absolute || u->u_host_header != NULL)
				continue;
			host = 1;
		}
		if (http_strcaseeq(h->h_name, h->h_namelen, "cookie") &&
		    proxy_cookie(out, h))
			continue;
		proxy_field(out, h->h_name, h->h_namelen, h->h_value,
		    h->h_valuelen);
	}
	if (u->u_host_header != NULL) {
		proxy_field(out, "Host", 4, u->u_host_header,
		    strlen(u->u_host_header));
		host = 1;
	} else if (absolute && m->hm_host != NULL) {
		proxy_field(out, "Host", 4, m->hm_host, m->hm_hostlen);
		host = 1;
	}
	if (!host)
		proxy_field(out, "Host", 4, us->us_host, strlen(us->us_host));
	/* Framing is keygate's own: never what a header list says. */
	if (m->hm_body == HTTP_BODY_LENGTH) {
		n = util_u64toa(num, m->hm_content_length);
		proxy_field(out, "Content-Length", 14, num, n);
	}
	proxy_forwarded(m, &pq->pq_fwd, out);
	if (pq->pq_upgrade) {
		evbuffer_add(out, "Connection: upgrade\r\n", 21);
		proxy_field(out, "Upgrade", 7, m->hm_upgrade, m->hm_upgradelen);
	}
	if (pq->pq_body == HTTP_BODY_CHUNKED)
		evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
	evbuffer_add(out, "\r\n", 2);
}

/* A request that may go out again if a reused connection was stale. */
static int
proxy_retryable(const struct proxy_request *pq)
{
	int	 m = pq->pq_msg->hm_mbit;

	return (pq->pq_body == HTTP_BODY_NONE && (m & (HTTP_M_GET |
	    HTTP_M_HEAD | HTTP_M_OPTIONS | HTTP_M_TRACE | HTTP_M_PUT |
	    HTTP_M_DELETE)));
}

/* An idle pooled connection, or a new one; NULL with errno set. */
static struct upconn *
proxy_get(struct upool *up)
{
	struct upconn	*uc;

	if ((uc = TAILQ_FIRST(&up->up_idle)) != NULL) {
		TAILQ_REMOVE(&up->up_idle, uc, uc_entry);
		up->up_nidle--;
		uc->uc_reused = 1;
		uc->uc_state = UC_HEAD;
		return (uc);
	}
	return (upconn_new(up));
}

/* Bind uc to the client of pq and send what the output holds. */
static int
proxy_attach(const struct proxy_request *pq, struct upconn *uc)
{
	struct upstream	*u = uc->uc_pool->up_u;

	uc->uc_req = *pq;
	uc->uc_req.pq_msg = NULL;	/* valid during proxy_start() only */
	uc->uc_busy = 1;
	uc->uc_sent_us = util_mono_us();
	http_msg_init(&uc->uc_msg);
	io_reading(&uc->uc_io, 1);
	if (uc->uc_state == UC_CONNECTING) {
		io_want_write(&uc->uc_io);
		upconn_timer(uc, u->u_connect_timeout);
		return (0);
	}
	upconn_wait(uc);
	return (upconn_flush(uc));
}

/*
 * Start forwarding pq to u; see proxy.h.  A connect that fails at once
 * (nothing sent) moves on to another server whatever the request, within
 * retries.
 */
struct upconn *
proxy_start(struct proxy *px, struct upstream *u,
    const struct proxy_request *pq, const char **why)
{
	struct upool	*up;
	struct upconn	*uc;
	struct evbuffer	*out;
	uint64_t	 tried = 0;
	int		 tries = 0, saved;
	size_t		 len;

	for (;;) {
		if ((up = proxy_pick(px, u, tried)) == NULL) {
			if (tried == 0) {
				proxy_log_out(px, u);
				*why = proxy_out_why(px, u);
			} else
				*why = "the upstream could not be reached";
			return (NULL);
		}
		tried |= UINT64_C(1) << up->up_k;
		if ((uc = proxy_get(up)) != NULL)
			break;
		saved = errno;
		log_warnx("upstream %s: %s: connect: %s", u->u_name,
		    up->up_s->us_server, strerror(saved));
		stats_upstream(px->px_ss, up->up_s->us_stat_id,
		    STATS_UP_CONNECT_ERROR, 0);
		*why = "the upstream could not be reached";
		if (proxy_local_errno(saved))
			return (NULL);	/* ours, not the server's */
		proxy_mark_failed(up);
		if ((u->u_retry_on & RETRY_ERROR) == 0 ||
		    tries++ >= u->u_retries)
			return (NULL);
	}
	uc->uc_tried = tried;
	uc->uc_tries = tries;
	out = uc->uc_io.io_out;
	proxy_request_head(pq, px->px_conf, u, up->up_s, out);
	/*
	 * Kept to go out again: on a stale pooled one (idempotent), or to
	 * another server (idempotent, or any request without a body whose
	 * connect fails: nothing of it was sent then).
	 */
	uc->uc_idem = proxy_retryable(pq);
	if (((uc->uc_reused && uc->uc_idem) || (u->u_nservers > 1 &&
	    u->u_retries > 0 && u->u_retry_on != 0 &&
	    pq->pq_body == HTTP_BODY_NONE)) &&
	    (uc->uc_retry = evbuffer_new()) != NULL) {
		len = evbuffer_get_length(out);
		evbuffer_add(uc->uc_retry, evbuffer_pullup(out, -1), len);
	}
	uc->uc_mbit = pq->pq_msg->hm_mbit;
	uc->uc_req_done = pq->pq_body == HTTP_BODY_NONE;
	uc->uc_upgrade = pq->pq_upgrade;
	if (uc->uc_upgrade) {	/* it fits: proxy_upgradable() */
		memcpy(uc->uc_offered, pq->pq_msg->hm_upgrade,
		    pq->pq_msg->hm_upgradelen);
		uc->uc_offered[pq->pq_msg->hm_upgradelen] = '\0';
	}
	upconn_active(uc, 1);
	if (proxy_attach(pq, uc) == -1) {
		upconn_log(uc, "failed");
		proxy_count(uc, STATS_UP_ERROR);
		upconn_free(uc);
		*why = "the upstream could not be reached";
		return (NULL);
	}
	return (uc);
}

/* Move n body bytes from the client's input to the upstream; see proxy.h. */
void
proxy_body(struct upconn *uc, struct evbuffer *in, size_t n)
{
	evbuffer_remove_buffer(in, uc->uc_io.io_out, n);
	proxy_body_flush(uc);
}

/*
 * Payload of a chunked request body, chunked anew by keygate: chunk
 * extensions and the trailer section (which would carry headers past the
 * forwarding policy) never reach the upstream.
 */
void
proxy_body_chunk(void *arg, const char *data, size_t n)
{
	struct upconn	*uc = arg;
	struct evbuffer	*out = uc->uc_io.io_out;
	char		 hex[24];
	size_t		 len = 0;
	size_t		 v = n;

	if (n == 0)
		return;
	do {
		hex[sizeof(hex) - 1 - len++] = "0123456789abcdef"[v & 0xf];
		v >>= 4;
	} while (v != 0);
	evbuffer_add(out, hex + sizeof(hex) - len, len);
	evbuffer_add(out, "\r\n", 2);
	evbuffer_add(out, data, n);
	evbuffer_add(out, "\r\n", 2);
}

/* Send what the body added; pause the client if the upstream lags. */
void
proxy_body_flush(struct upconn *uc)
{
	if (upconn_flush(uc) == -1) {
		/* Whatever the upstream says (if anything) comes on read. */
		io_reading(&uc->uc_io, 1);
		return;
	}
	if (evbuffer_get_length(uc->uc_io.io_out) > IO_MAX_OUTPUT &&
	    !uc->uc_upwait) {
		uc->uc_upwait = 1;
		uc->uc_req.pq_ops->pc_reading(uc->uc_req.pq_arg, 0);
	}
}

/* The whole request body is in the output. */
void
proxy_body_done(struct upconn *uc)
{
	if (uc->uc_req.pq_body == HTTP_BODY_CHUNKED) {
		evbuffer_add(uc->uc_io.io_out, "0\r\n\r\n", 5);
		proxy_body_flush(uc);
	}
	uc->uc_req_done = 1;
	if (uc->uc_state != UC_CONNECTING)
		upconn_wait(uc);
}

/* The status line from the upstream's status and reason. */
static void
proxy_status_line(const struct http_msg *m, struct evbuffer *out)
{
	char	 st[16];

	memcpy(st, "HTTP/1.1 ", 9);
	st[9] = (char)('0' + m->hm_status / 100);
	st[10] = (char)('0' + m->hm_status / 10 % 10);
	st[11] = (char)('0' + m->hm_status % 10);
	st[12] = ' ';
	evbuffer_add(out, st, 13);
	if (m->hm_reasonlen > 0)
		evbuffer_add(out, m->hm_reason, m->hm_reasonlen);
	else
		evbuffer_add(out, http_reason(m->hm_status),
		    strlen(http_reason(m->hm_status)));
	evbuffer_add(out, "\r\n", 2);
}

/*
 * The client response head from the upstream's: its status and reason,
 * its end-to-end headers, framing for this client (a chunked body goes to
 * an HTTP/1.0 client decoded, ending with the connection; a body that ends
 * with the upstream connection ends the client's too), keygate's
 * X-Request-Id unless the upstream sent one, and Connection as needed.
 */
static void
proxy_response_head(struct upconn *uc)
{
	const struct proxy_request	*pq = &uc->uc_req;
	const struct http_msg		*m = &uc->uc_msg;
	const struct http_header	*h;
	struct evbuffer			*out = pq->pq_out;
	size_t				 i, n, before = evbuffer_get_length(out);
	char				 num[24];
	int				 reqid = 0, keep;

	uc->uc_status = m->hm_status;
	uc->uc_body = uc->uc_tunnel ? HTTP_BODY_EOF : m->hm_body;
	uc->uc_left = m->hm_content_length;
	uc->uc_dechunk = m->hm_body == HTTP_BODY_CHUNKED && pq->pq_minor == 0;
	http_chunked_init(&uc->uc_chunked);
	/* The connection will close: say so (framing, unread body). */
	keep = pq->pq_ops->pc_keepalive(pq->pq_arg, uc->uc_body ==
	    HTTP_BODY_EOF || uc->uc_dechunk || !uc->uc_req_done);
	proxy_status_line(m, out);
	for (i = 0; i < m->hm_nheaders; i++) {
		h = &m->hm_headers[i];
		/* No Content-Length with a 101 (RFC 9110 8.6): no body. */
		if (!forward_keep_response_header(m, h) ||
		    ((m->hm_body != HTTP_BODY_NONE || uc->uc_tunnel) &&
		    http_strcaseeq(h->h_name, h->h_namelen, "content-length")))
			continue;
		/* Ours win: two sets of RateLimit-* would contradict. */
		if (pq->pq_rate && h->h_namelen > 10 &&
		    strncasecmp(h->h_name, "ratelimit-", 10) == 0)
			continue;
		if (http_strcaseeq(h->h_name, h->h_namelen, "x-request-id"))
			reqid = 1;
		proxy_field(out, h->h_name, h->h_namelen, h->h_value,
		    h->h_valuelen);
	}
	if (!reqid)
		proxy_field(out, "X-Request-Id", 12, pq->pq_fwd.fa_reqid,
		    pq->pq_fwd.fa_reqidlen);
	evbuffer_add(out, pq->pq_extra, pq->pq_extralen);	/* RateLimit-* */
	if (m->hm_body == HTTP_BODY_LENGTH) {
		n = util_u64toa(num, m->hm_content_length);
		proxy_field(out, "Content-Length", 14, num, n);
	}
	if (m->hm_body == HTTP_BODY_CHUNKED && !uc->uc_dechunk)
		evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
	if (uc->uc_tunnel) {	/* the connection is the tunnel's now */
		evbuffer_add(out, "Connection: upgrade\r\n", 21);
		proxy_field(out, "Upgrade", 7, m->hm_upgrade, m->hm_upgradelen);
	} else if (!keep)
		evbuffer_add(out, "Connection: close\r\n", 19);
	else if (pq->pq_minor == 0)
		evbuffer_add(out, "Connection: keep-alive\r\n", 24);
	evbuffer_add(out, "\r\n", 2);
	uc->uc_bytes = evbuffer_get_length(out) - before;
}

/* Decoded chunk payload for an HTTP/1.0 client. */
static void
proxy_payload_cb(void *arg, const char *p, size_t n)
{
	evbuffer_add(arg, p, n);
}

/*
 * Move response body bytes to the client: 1 once the body is complete,
 * 0 for more to come, -1 if the chunked coding is broken.  A chunked body
 * is fed to its parser whole, 8 evbuffer slices per round, as long as the
 * parser takes whole slices (it stops short only at the body's end); see
 * conn_chunked() in server.c.
 */
static int
proxy_body_move(struct upconn *uc)
{
	struct evbuffer		*out = uc->uc_req.pq_out, *in = uc->uc_io.io_in;
	struct evbuffer_iovec	 v[8];
	size_t			 len = evbuffer_get_length(in), n;
	uint64_t		 payload;
	ssize_t			 used;
	int			 nv, more;

	switch (uc->uc_body) {
	case HTTP_BODY_NONE:
		return (1);
	case HTTP_BODY_LENGTH:
		n = len < uc->uc_left ? len : (size_t)uc->uc_left;
		evbuffer_remove_buffer(in, out, n);
		uc->uc_left -= n;
		uc->uc_bytes += n;
		return (uc->uc_left == 0);
	case HTTP_BODY_EOF:
		evbuffer_add_buffer(out, in);
		uc->uc_bytes += len;
		return (0);
	case HTTP_BODY_CHUNKED:
		break;
	}
	do {
		payload = uc->uc_chunked.hc_payload;
		nv = evbuffer_peek(in, -1, NULL, v, 8);
		used = http_chunked_feedv(&uc->uc_chunked, v, nv < 8 ? nv : 8,
		    uc->uc_dechunk ? proxy_payload_cb : NULL, out, &more);
		if (used < 0)
			return (-1);
		if (uc->uc_dechunk) {
			evbuffer_drain(in, (size_t)used);
			uc->uc_bytes += uc->uc_chunked.hc_payload - payload;
		} else {
			evbuffer_remove_buffer(in, out, (size_t)used);
			uc->uc_bytes += (size_t)used;
		}
	} while (more && evbuffer_get_length(in) > 0);
	return (http_chunked_done(&uc->uc_chunked));
}

/* Can uc go back to its pool?  Only if the exchange ended cleanly. */
static int
proxy_reusable(const struct upconn *uc)
{
	const struct upool	*up = uc->uc_pool;

	return (uc->uc_req_done && (uc->uc_msg.hm_flags & HTTP_F_KEEPALIVE) &&
	    uc->uc_body != HTTP_BODY_EOF && !io_pending(&uc->uc_io) &&
	    !(uc->uc_io.io_flags & IO_FAILED) &&
	    (uc->uc_io.io_ssl == NULL || !SSL_has_pending(uc->uc_io.io_ssl)) &&
	    evbuffer_get_length(uc->uc_io.io_in) == 0 &&
	    evbuffer_get_length(uc->uc_io.io_out) == 0 &&
	    up->up_nidle < up->up_u->u_max_idle &&
	    !up->up_proxy->px_stopping);
}

/*
 * The response is complete.  The connection goes back to the pool only if
 * the exchange ended cleanly on both sides; the client moves on.
 */
static void
proxy_done(struct upconn *uc)
{
	struct upool		*up = uc->uc_pool;
	struct proxy_request	 pq = uc->uc_req;

	uc->uc_busy = 0;
	if (uc->uc_upwait) {
		uc->uc_upwait = 0;
		pq.pq_ops->pc_reading(pq.pq_arg, 1);
	}
	if (!uc->uc_req_done)	/* answered before its body was read */
		pq.pq_ops->pc_keepalive(pq.pq_arg, 1);
	pq.pq_ops->pc_done(pq.pq_arg, uc->uc_status, uc->uc_bytes);
	if (proxy_reusable(uc)) {
		if (uc->uc_retry != NULL) {
			evbuffer_free(uc->uc_retry);
			uc->uc_retry = NULL;
		}
		upconn_active(uc, 0);
		uc->uc_state = UC_IDLE;
		uc->uc_blocked = 0;
		uc->uc_got = 0;
		evtimer_add(uc->uc_timer, up->up_proxy->px_idle_tv[
		    up->up_u->u_index]);
		io_reading(&uc->uc_io, 1);
		TAILQ_INSERT_HEAD(&up->up_idle, uc, uc_entry);
		up->up_nidle++;
	} else
		upconn_free(uc);
}

/*
 * Transfer codings other than chunked cannot be passed on (keygate would
 * have to tell the client about a coding it does not decode); by the same
 * policy as for requests, such a response is refused.
 */
static int
proxy_codings_ok(const struct http_msg *m)
{
	const struct http_header	*h;
	size_t				 i;

	for (i = 0; i < m->hm_nheaders; i++) {
		h = &m->hm_headers[i];
		if (http_strcaseeq(h->h_name, h->h_namelen,
		    "transfer-encoding") &&
		    !http_strcaseeq(h->h_value, h->h_valuelen, "chunked"))
			return (0);
	}
	return (1);
}

/*
 * A 502, 503 or 504 that retry_on names: a failure of the server, and the
 * request goes to another one if it can (the response is dropped with its
 * connection).  1 if it went.
 */
static int
proxy_status_failover(struct upconn *uc)
{
	struct upool	*was;
	int		 why;

	switch (uc->uc_msg.hm_status) {
	case 502:
		why = RETRY_502;
		break;
	case 503:
		why = RETRY_503;
		break;
	case 504:
		why = RETRY_504;
		break;
	default:
		return (0);
	}
	if ((uc->uc_pool->up_u->u_retry_on & why) == 0)
		return (0);
	/*
	 * A failure only if the request moves on: the last server's answer
	 * is the client's, as a response (nginx does the same).
	 */
	was = uc->uc_pool;
	if (!proxy_failover(uc, why))
		return (0);
	proxy_mark_failed(was);
	return (1);
}

/*
 * Parse the response head as far as it arrived: 1 when it is done (the
 * client's head queued), 0 to wait for more, -1 when the exchange failed
 * (the client answered).
 */
static int
proxy_head(struct upconn *uc)
{
	struct proxy	*px = uc->uc_pool->up_proxy;
	struct evbuffer	*in = uc->uc_io.io_in;
	unsigned char	*p;
	size_t		 len;
	int		 rc;

	while (uc->uc_state == UC_HEAD) {
		if ((len = evbuffer_get_length(in)) == 0)
			return (0);
		if (len > px->px_scanmax)
			len = px->px_scanmax;
		p = evbuffer_pullup(in, (ssize_t)len);
		rc = http_parse_response(&uc->uc_msg, (const char *)p, len,
		    px->px_limits, uc->uc_mbit);
		if (rc == 0)
			return (0);
		if (rc > 0 && !proxy_codings_ok(&uc->uc_msg))
			rc = -2;
		/* A 101 only agrees to an upgrade the request asked for. */
		uc->uc_tunnel = rc > 0 && uc->uc_msg.hm_status == 101 &&
		    uc->uc_upgrade && (uc->uc_msg.hm_flags & HTTP_F_UPGRADE) &&
		    http_list_has(uc->uc_offered, strlen(uc->uc_offered),
		    uc->uc_msg.hm_upgrade, uc->uc_msg.hm_upgradelen);
		if (rc < 0 || (uc->uc_msg.hm_status == 101 && !uc->uc_tunnel)) {
			log_warnx("upstream %s: %s", uc->uc_pool->up_u->u_name,
			    rc == -2 ? "unsupported transfer coding" : rc < 0 ?
			    uc->uc_msg.hm_cause : uc->uc_upgrade ? "101 without "
			    "Connection: upgrade and an Upgrade the request "
			    "offered" : "unexpected 101");
			proxy_fail(uc, 502, "upstream_unavailable",
			    "the upstream sent a malformed response");
			return (-1);
		}
		if (uc->uc_msg.hm_status < 200 && !uc->uc_tunnel) {
			/* interim: skip it */
			evbuffer_drain(in, uc->uc_msg.hm_hdrlen);
			http_msg_init(&uc->uc_msg);
			continue;
		}
		proxy_count(uc, STATS_UP_OK);
		if (proxy_status_failover(uc))
			return (-1);
		proxy_mark_ok(uc->uc_pool);
		proxy_response_head(uc);
		evbuffer_drain(in, uc->uc_msg.hm_hdrlen);
		uc->uc_state = UC_BODY;
		if (uc->uc_tunnel) {
			upconn_timer(uc, upconn_read_ms(uc));
			uc->uc_req.pq_ops->pc_tunnel(uc->uc_req.pq_arg);
		}
	}
	return (1);
}

/* Parse and pass on what the upstream sent, as far as it goes. */
static void
proxy_advance(struct upconn *uc)
{
	if (proxy_head(uc) != 1)
		return;
	switch (proxy_body_move(uc)) {
	case 1:
		proxy_done(uc);
		return;
	case -1:
		proxy_abort(uc, "malformed chunked body");
		return;
	}
	if (evbuffer_get_length(uc->uc_req.pq_out) > IO_MAX_OUTPUT) {
		/* The client is the slow side now; its send_timeout rules. */
		uc->uc_blocked = 1;
		io_reading(&uc->uc_io, 0);
		evtimer_del(uc->uc_timer);
	}
}

/*
 * Send the request again (its head kept in uc_retry) on a new connection
 * to the server of pool to, in place of uc's (the client keeps its
 * upconn).  0 once it is on its way; -1 with errno set if the connect
 * failed at once, uc then unchanged (its old connection, pool and state
 * back) for the caller to deal with.
 */
static int
proxy_resend(struct upconn *uc, struct upool *to)
{
	struct proxy_request	 pq = uc->uc_req;
	struct io		 old = uc->uc_io;
	struct upool		*from = uc->uc_pool;
	enum uc_state		 state = uc->uc_state;

	upconn_active(uc, 0);
	uc->uc_pool = to;
	if (upconn_connect(uc) == -1) {
		uc->uc_pool = from;
		uc->uc_io = old;
		uc->uc_state = state;
		upconn_active(uc, 1);
		return (-1);
	}
	io_free(&old);
	evbuffer_add(uc->uc_io.io_out, evbuffer_pullup(uc->uc_retry, -1),
	    evbuffer_get_length(uc->uc_retry));
	uc->uc_reused = 0;
	uc->uc_stale = 0;
	uc->uc_got = 0;
	upconn_active(uc, 1);
	/* Connecting: proxy_attach() only arms the write event and timer. */
	(void)proxy_attach(&pq, uc);
	return (0);
}

/*
 * The attempt failed (why: RETRY_*) before any response byte: send the
 * request to another server if it may go out again, retry_on names the
 * failure and retries are left.  1 if it went (or that attempt's outcome
 * has been dealt with), 0 to answer the client with this failure.
 */
static int
proxy_failover(struct upconn *uc, int why)
{
	const struct upstream	*u = uc->uc_pool->up_u;
	struct proxy		*px = uc->uc_pool->up_proxy;
	struct upool		*next;
	int			 saved;

	if (!uc->uc_busy || uc->uc_retry == NULL || uc->uc_state == UC_BODY ||
	    (u->u_retry_on & why) == 0 ||
	    (!uc->uc_idem && uc->uc_state != UC_CONNECTING))
		return (0);
	while (uc->uc_tries < u->u_retries &&
	    (next = proxy_pick(px, u, uc->uc_tried)) != NULL) {
		uc->uc_tries++;
		uc->uc_tried |= UINT64_C(1) << next->up_k;
		log_info("upstream %s: %s failed; trying %s", u->u_name,
		    uc->uc_pool->up_s->us_server, next->up_s->us_server);
		if (proxy_resend(uc, next) == 0)
			return (1);
		saved = errno;
		log_warnx("upstream %s: %s: connect: %s", u->u_name,
		    next->up_s->us_server, strerror(saved));
		stats_upstream(px->px_ss, next->up_s->us_stat_id,
		    STATS_UP_CONNECT_ERROR, 0);
		if (proxy_local_errno(saved))
			return (0);
		proxy_mark_failed(next);
	}
	return (0);
}

/*
 * The upstream closed (or reset) the connection.  Before any byte of the
 * response on a connection that came from the pool, the request goes out
 * once more on a new connection if it can be sent again (idempotent, no
 * body); a body that ends with the connection is complete; anything else
 * failed.
 */
static void
proxy_closed(struct upconn *uc, int eof)
{
	/* A tunnel ends when either side closes, a reset included. */
	if (uc->uc_state == UC_BODY && uc->uc_body == HTTP_BODY_EOF &&
	    (eof || uc->uc_tunnel)) {
		proxy_done(uc);
		return;
	}
	if (uc->uc_state == UC_BODY) {
		proxy_abort(uc, "connection closed");
		return;
	}
	/*
	 * A pooled connection the server closed: not the server failing,
	 * unless a new connection to it fails too.
	 */
	uc->uc_stale = uc->uc_reused && !uc->uc_got;
	if (uc->uc_stale && uc->uc_retry != NULL && uc->uc_idem) {
		if (proxy_resend(uc, uc->uc_pool) == 0)
			return;
		uc->uc_stale = 0;
	}
	upconn_log(uc, eof ? "closed before the response" :
	    "failed before the response");
	proxy_fail(uc, 502, "upstream_unavailable",
	    "the upstream closed the connection without answering");
}

/* Hand control to the client once a callback is done, if there is one. */
static void
upconn_kick(const struct proxy_request *pq, int busy)
{
	if (busy)
		pq->pq_ops->pc_kick(pq->pq_arg);
}

/* Readable upstream: read, then pass the bytes on. */
static void
upconn_on_read(void *arg)
{
	struct upconn		*uc = arg;
	struct proxy_request	 pq = uc->uc_req;
	int			 busy = uc->uc_busy;
	ssize_t			 n;

	if (uc->uc_state == UC_IDLE) {
		/* An idle connection has nothing to say: it closed. */
		upconn_free(uc);
		return;
	}
	n = io_read(&uc->uc_io);
	if (n > 0 && (uc->uc_io.io_flags & IO_WR_WANT_RD) &&
	    upconn_flush(uc) == -1)
		proxy_closed(uc, 0);	/* a TLS write waited for this read */
	else if (n > 0) {
		uc->uc_got = 1;
		upconn_timer(uc, upconn_read_ms(uc));
		proxy_advance(uc);
	} else if (n == 0 || errno != EAGAIN)
		proxy_closed(uc, n == 0);
	else if (upconn_flush(uc) == -1)	/* a TLS write waited */
		proxy_closed(uc, 0);
	upconn_kick(&pq, busy);
}

/* Writable upstream: the connect finished, or there is room again. */
static void
upconn_on_write(void *arg, int timedout)
{
	struct upconn		*uc = arg;
	struct proxy_request	 pq = uc->uc_req;
	int			 busy = uc->uc_busy, err = 0;
	socklen_t		 len = sizeof(err);

	(void)timedout;		/* no write timeout: the upconn's timer */
	if (uc->uc_state == UC_CONNECTING) {
		if (getsockopt(uc->uc_io.io_fd, SOL_SOCKET, SO_ERROR, &err,
		    &len) == -1)
			err = errno;
		if (err != 0) {
			log_warnx("upstream %s: %s: connect: %s",
			    uc->uc_pool->up_u->u_name,
			    uc->uc_pool->up_s->us_server, strerror(err));
			proxy_fail(uc, 502, "upstream_unavailable",
			    "the upstream could not be reached");
			upconn_kick(&pq, busy);
			return;
		}
		uc->uc_state = UC_HEAD;
		upconn_wait(uc);
	}
	if (upconn_flush(uc) == -1)
		proxy_closed(uc, 0);
	upconn_kick(&pq, busy);
}

/* connect_timeout or read_timeout passed. */
static void
upconn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upconn		*uc = arg;
	struct proxy_request	 pq = uc->uc_req;
	int			 busy = uc->uc_busy;

	(void)fd;
	(void)what;
	if (uc->uc_state == UC_IDLE) {		/* idle_timeout */
		upconn_free(uc);
		return;
	}
	if (uc->uc_tunnel) {
		log_debug("upstream %s: %s: tunnel idle for %d ms; closing",
		    uc->uc_pool->up_u->u_name, uc->uc_pool->up_s->us_server,
		    uc->uc_pool->up_u->u_idle_timeout);
		proxy_done(uc);
		upconn_kick(&pq, busy);
		return;
	}
	log_warnx("upstream %s: %s: %s timed out", uc->uc_pool->up_u->u_name,
	    uc->uc_pool->up_s->us_server,
	    uc->uc_state == UC_CONNECTING ? "connect" : "read");
	if (uc->uc_state == UC_BODY)
		proxy_abort(uc, "read timed out");
	else
		proxy_fail(uc, 504, "upstream_timeout", uc->uc_state ==
		    UC_CONNECTING ? "the upstream did not accept the connection "
		    "in time" : "the upstream did not answer in time");
	upconn_kick(&pq, busy);
}

/* The client's output drained; see proxy.h. */
int
proxy_client_drained(struct upconn *uc)
{
	struct evbuffer	*out = uc->uc_req.pq_out;
	size_t		 before = evbuffer_get_length(out);

	if (!uc->uc_blocked)
		return (0);
	uc->uc_blocked = 0;
	io_reading(&uc->uc_io, 1);
	upconn_timer(uc, upconn_read_ms(uc));
	proxy_advance(uc);
	return (evbuffer_get_length(out) > before);
}

/* Tunnel: the client's bytes go to the upstream as they come. */
void
proxy_tunnel_send(struct upconn *uc, struct evbuffer *in)
{
	/*
	 * Traffic: not idle; but while the client does not take what the
	 * upstream sent (uc_blocked), its send_timeout rules instead.
	 */
	if (!uc->uc_blocked)
		upconn_timer(uc, upconn_read_ms(uc));
	evbuffer_add_buffer(uc->uc_io.io_out, in);
	proxy_body_flush(uc);
}

/* Tunnel: the client shut its write side; the upstream's follows. */
void
proxy_tunnel_eof(struct upconn *uc)
{
	if (uc->uc_shut)
		return;
	uc->uc_shut = 1;
	(void)upconn_flush(uc);
}

/* Bytes queued for the client so far (a cut tunnel's, for the log). */
uint64_t
proxy_sent(const struct upconn *uc)
{
	return (uc->uc_bytes);
}

/* Has the response begun to go to the client? */
int
proxy_response_started(const struct upconn *uc)
{
	return (uc->uc_state == UC_BODY);
}

/* The client is going away; see proxy.h. */
void
proxy_detach(struct upconn *uc)
{
	upconn_free(uc);
}
