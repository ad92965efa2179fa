/*
 * Reverse proxying to http:// and https:// upstreams; see proxy.h.
 *
 * Each worker keeps, per upstream, a list of idle keep-alive connections
 * (at most u_max_idle).  A request takes one (or connects anew), and gives
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
	int			 uc_req_done;	/* the whole request is in uc_out */
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

struct upool {
	struct upstream		*up_u;
	struct proxy		*up_proxy;
	TAILQ_HEAD(, upconn)	 up_idle;
	int			 up_nidle;
};

struct proxy {
	struct event_base	*px_base;
	const struct config	*px_conf;
	const struct http_limits *px_limits;
	size_t			 px_scanmax;
	int			 px_stopping;
	struct stats_slot	*px_ss;
	size_t			 px_npools;
	struct upool		 px_pools[];
};

static void	 upconn_on_read(void *);
static void	 upconn_on_write(void *, int);
static void	 upconn_timer_cb(evutil_socket_t, short, void *);
static void	 proxy_advance(struct upconn *);

static const struct io_ops upconn_io_ops = { upconn_on_read, upconn_on_write };

/* One pool per upstream of the worker's configuration. */
struct proxy *
proxy_new(struct event_base *base, const struct config *conf,
    const struct http_limits *limits, size_t scanmax, struct stats_slot *ss)
{
	struct proxy	*px;
	size_t		 i;

	px = calloc(1, sizeof(*px) + conf->c_nupstreams * sizeof(struct upool));
	if (px == NULL)
		return (NULL);
	px->px_base = base;
	px->px_conf = conf;
	px->px_limits = limits;
	px->px_scanmax = scanmax;
	px->px_ss = ss;
	px->px_npools = conf->c_nupstreams;
	for (i = 0; i < conf->c_nupstreams; i++) {
		px->px_pools[i].up_u = &conf->c_upstreams[i];
		px->px_pools[i].up_proxy = px;
		TAILQ_INIT(&px->px_pools[i].up_idle);
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
		while ((uc = TAILQ_FIRST(&px->px_pools[i].up_idle)) != NULL)
			upconn_free(uc);
	free(px);
}

/* The worker stops: no connection goes back to a pool any more. */
void
proxy_stopping(struct proxy *px)
{
	if (px != NULL)
		px->px_stopping = 1;
}

/* A connected socket to u, non-blocking; -1 with errno set. */
static int
upconn_socket(const struct upstream *u)
{
	int	 fd, one = 1, saved;

	fd = socket(u->u_ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd == -1)
		return (-1);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&u->u_ss, u->u_sslen) == -1 &&
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

	if ((fd = upconn_socket(u)) == -1)
		return (-1);
	if (u->u_tls && ((ssl = tls_upstream_ssl(u)) == NULL ||
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

/*
 * Time the upstream's answer: read_timeout runs once the whole request is
 * on its way (until then the client's body_timeout rules, as nginx's
 * proxy_read_timeout does), and again after each read.
 */
static void
upconn_wait(struct upconn *uc)
{
	if (uc->uc_req_done || uc->uc_got)
		upconn_timer(uc, uc->uc_pool->up_u->u_read_timeout);
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

	if (uc->uc_io.io_flags & IO_FAILED)
		log_warnx("upstream %s: TLS: %s; connection %s", name,
		    uc->uc_io.io_why, what);
	else
		log_warnx("upstream %s: connection %s", name, what);
}

/* Count an attempt on uc's upstream server: keygate_upstream_*. */
static void
proxy_count(const struct upconn *uc, enum stats_upresult res)
{
	const struct upstream	*u = uc->uc_pool->up_u;

	stats_upstream(uc->uc_pool->up_proxy->px_ss, u->u_stat_id, res,
	    util_mono_us() - uc->uc_sent_us);
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

/* The request line, the query as sent, the path as routed (server.c). */
static void
proxy_request_line(const struct http_msg *m, struct evbuffer *out)
{
	evbuffer_add(out, m->hm_method, m->hm_methodlen);
	evbuffer_add(out, " ", 1);
	evbuffer_add(out, m->hm_path, m->hm_pathlen);
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
    const struct upstream *u, struct evbuffer *out)
{
	const struct http_msg		*m = pq->pq_msg;
	const struct http_header	*h;
	size_t				 i, n;
	char				 num[24];
	struct forward_policy		 fp;
	int				 host = 0, absolute;

	forward_policy_init(&fp, conf);
	proxy_request_line(m, out);
	/* An absolute-form target's authority is the Host (RFC 9112 3.2.2). */
	absolute = m->hm_targetlen == 0 || m->hm_target[0] != '/';
	for (i = 0; i < m->hm_nheaders; i++) {
		h = &m->hm_headers[i];
		if (!forward_keep_header(m, h, &fp) ||
		    http_strcaseeq(h->h_name, h->h_namelen, "content-length"))
			continue;
		if (http_strcaseeq(h->h_name, h->h_namelen, "host")) {
			if (absolute)
				continue;
			host = 1;
		}
		proxy_field(out, h->h_name, h->h_namelen, h->h_value,
		    h->h_valuelen);
	}
	if (absolute && m->hm_host != NULL) {
		proxy_field(out, "Host", 4, m->hm_host, m->hm_hostlen);
		host = 1;
	}
	if (!host)
		proxy_field(out, "Host", 4, u->u_host, strlen(u->u_host));
	/* Framing is keygate's own: never what a header list says. */
	if (m->hm_body == HTTP_BODY_LENGTH) {
		n = util_u64toa(num, m->hm_content_length);
		proxy_field(out, "Content-Length", 14, num, n);
	}
	proxy_forwarded(m, &pq->pq_fwd, out);
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

/* Start forwarding pq to u; see proxy.h. */
struct upconn *
proxy_start(struct proxy *px, struct upstream *u,
    const struct proxy_request *pq)
{
	struct upool	*up = &px->px_pools[u->u_index];
	struct upconn	*uc;
	struct evbuffer	*out;
	size_t		 len;

	if ((uc = proxy_get(up)) == NULL) {
		log_warn("upstream %s: connect", u->u_name);
		stats_upstream(px->px_ss, u->u_stat_id, STATS_UP_CONNECT_ERROR,
		    0);
		return (NULL);
	}
	out = uc->uc_io.io_out;
	proxy_request_head(pq, px->px_conf, u, out);
	if (uc->uc_reused && proxy_retryable(pq) &&
	    (uc->uc_retry = evbuffer_new()) != NULL) {
		len = evbuffer_get_length(out);
		evbuffer_add(uc->uc_retry, evbuffer_pullup(out, -1), len);
	}
	uc->uc_mbit = pq->pq_msg->hm_mbit;
	uc->uc_req_done = pq->pq_body == HTTP_BODY_NONE;
	if (proxy_attach(pq, uc) == -1) {
		upconn_log(uc, "failed");
		proxy_count(uc, STATS_UP_ERROR);
		upconn_free(uc);
		errno = EPIPE;
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
	uc->uc_body = m->hm_body;
	uc->uc_left = m->hm_content_length;
	uc->uc_dechunk = m->hm_body == HTTP_BODY_CHUNKED && pq->pq_minor == 0;
	http_chunked_init(&uc->uc_chunked);
	/* The connection will close: say so (framing, unread body). */
	keep = pq->pq_ops->pc_keepalive(pq->pq_arg, m->hm_body ==
	    HTTP_BODY_EOF || uc->uc_dechunk || !uc->uc_req_done);
	proxy_status_line(m, out);
	for (i = 0; i < m->hm_nheaders; i++) {
		h = &m->hm_headers[i];
		if (!forward_keep_response_header(m, h) ||
		    (m->hm_body != HTTP_BODY_NONE &&
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
	if (!keep)
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
		uc->uc_state = UC_IDLE;
		uc->uc_blocked = 0;
		uc->uc_got = 0;
		evtimer_del(uc->uc_timer);
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
		if (rc < 0 || uc->uc_msg.hm_status == 101) {
			log_warnx("upstream %s: %s", uc->uc_pool->up_u->u_name,
			    rc == -2 ? "unsupported transfer coding" : rc < 0 ?
			    uc->uc_msg.hm_cause : "unexpected 101");
			proxy_fail(uc, 502, "upstream_unavailable",
			    "the upstream sent a malformed response");
			return (-1);
		}
		if (uc->uc_msg.hm_status < 200) {	/* interim: skip it */
			evbuffer_drain(in, uc->uc_msg.hm_hdrlen);
			http_msg_init(&uc->uc_msg);
			continue;
		}
		proxy_count(uc, STATS_UP_OK);
		proxy_response_head(uc);
		evbuffer_drain(in, uc->uc_msg.hm_hdrlen);
		uc->uc_state = UC_BODY;
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
 * Send a request again on a new connection, in place of uc's stale one
 * (the client keeps its upconn); 0, or -1 if that cannot be done (uc is
 * unchanged) or failed at once (then the client has its answer).
 */
static int
proxy_retry(struct upconn *uc)
{
	struct proxy_request	 pq = uc->uc_req;
	struct io		 old = uc->uc_io;

	if (upconn_connect(uc) == -1) {
		uc->uc_io = old;
		return (-1);
	}
	io_free(&old);
	evbuffer_add_buffer(uc->uc_io.io_out, uc->uc_retry);
	evbuffer_free(uc->uc_retry);
	uc->uc_retry = NULL;
	uc->uc_reused = 0;
	if (proxy_attach(&pq, uc) == -1) {
		upconn_log(uc, "failed");
		proxy_fail(uc, 502, "upstream_unavailable",
		    "the connection to the upstream failed");
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
	if (uc->uc_state == UC_BODY && uc->uc_body == HTTP_BODY_EOF && eof) {
		proxy_done(uc);
		return;
	}
	if (uc->uc_state == UC_BODY) {
		proxy_abort(uc, "connection closed");
		return;
	}
	if (uc->uc_reused && !uc->uc_got && uc->uc_retry != NULL &&
	    proxy_retry(uc) == 0)
		return;
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
		upconn_timer(uc, uc->uc_pool->up_u->u_read_timeout);
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
			log_warnx("upstream %s: connect: %s",
			    uc->uc_pool->up_u->u_name, strerror(err));
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
	log_warnx("upstream %s: %s timed out", uc->uc_pool->up_u->u_name,
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
	upconn_timer(uc, uc->uc_pool->up_u->u_read_timeout);
	proxy_advance(uc);
	return (evbuffer_get_length(out) > before);
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
