/*
 * Reverse proxying to http:// upstreams; see proxy.h.
 *
 * Each worker keeps, per upstream, a list of idle keep-alive connections
 * (at most u_max_idle).  A request takes one (or connects anew), and gives
 * it back only when the whole request was sent, the whole response read,
 * nothing extra arrived and the upstream did not ask to close: a second
 * request never goes out on a connection whose response was not fully
 * read.  An idle connection is watched for reading, so one the upstream
 * closes is noticed and dropped.
 *
 * The client side (server.c) owns the exchange: an upconn points back at
 * its client while busy, and the client's c_up points at it.  Callbacks of
 * an upconn do their work first and then hand control to the client with
 * conn_kick(), which may free the client and with it the upconn; nothing
 * touches the upconn after that.
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
#include "conn.h"
#include "forward.h"
#include "http.h"
#include "log.h"
#include "proxy.h"
#include "util.h"

#define PROXY_READ_SIZE		16384

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
	struct conn		*uc_client;	/* NULL while idle */
	int			 uc_fd;
	struct event		*uc_ev_read;
	struct event		*uc_ev_write;
	struct event		*uc_timer;
	struct evbuffer		*uc_in;
	struct evbuffer		*uc_out;
	enum uc_state		 uc_state;
	int			 uc_reading;
	int			 uc_writing;
	int			 uc_blocked;	/* not reading: client output full */
	int			 uc_reused;	/* came from the pool */
	int			 uc_got;	/* a response byte arrived */
	int			 uc_req_done;	/* the whole request is in uc_out */
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
	struct worker		*up_w;
	TAILQ_HEAD(, upconn)	 up_idle;
	int			 up_nidle;
};

static void	 upconn_read_cb(evutil_socket_t, short, void *);
static void	 upconn_write_cb(evutil_socket_t, short, void *);
static void	 upconn_timer_cb(evutil_socket_t, short, void *);
static void	 proxy_advance(struct upconn *);

/* One pool per upstream of the worker's configuration. */
int
proxy_init(struct worker *w)
{
	struct config	*conf = w->w_conf;
	size_t		 i;

	if (conf->c_nupstreams == 0)
		return (0);
	if ((w->w_pools = calloc(conf->c_nupstreams, sizeof(*w->w_pools))) ==
	    NULL)
		return (-1);
	for (i = 0; i < conf->c_nupstreams; i++) {
		w->w_pools[i].up_u = &conf->c_upstreams[i];
		w->w_pools[i].up_w = w;
		TAILQ_INIT(&w->w_pools[i].up_idle);
	}
	return (0);
}

/* Start or stop watching an upstream socket for reading. */
static void
upconn_reading(struct upconn *uc, int on)
{
	if (on && !uc->uc_reading)
		event_add(uc->uc_ev_read, NULL);
	else if (!on && uc->uc_reading)
		event_del(uc->uc_ev_read);
	uc->uc_reading = on;
}

/* Close an upstream connection (taking it out of the pool if idle). */
static void
upconn_free(struct upconn *uc)
{
	if (uc->uc_state == UC_IDLE) {
		TAILQ_REMOVE(&uc->uc_pool->up_idle, uc, uc_entry);
		uc->uc_pool->up_nidle--;
	}
	event_free(uc->uc_ev_read);
	event_free(uc->uc_ev_write);
	event_free(uc->uc_timer);
	evbuffer_free(uc->uc_in);
	evbuffer_free(uc->uc_out);
	if (uc->uc_retry != NULL)
		evbuffer_free(uc->uc_retry);
	close(uc->uc_fd);
	free(uc);
}

void
proxy_teardown(struct worker *w)
{
	struct upconn	*uc;
	size_t		 i;

	if (w->w_pools == NULL)
		return;
	for (i = 0; i < w->w_conf->c_nupstreams; i++)
		while ((uc = TAILQ_FIRST(&w->w_pools[i].up_idle)) != NULL)
			upconn_free(uc);
	free(w->w_pools);
	w->w_pools = NULL;
}

/* A new connection to the pool's upstream; NULL with errno set. */
static struct upconn *
upconn_new(struct upool *up)
{
	struct event_base	*base = up->up_w->w_base;
	struct upstream		*u = up->up_u;
	struct upconn		*uc;
	int			 fd, one = 1, saved;

	fd = socket(u->u_ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd == -1)
		return (NULL);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&u->u_ss, u->u_sslen) == -1 &&
	    errno != EINPROGRESS) {
		saved = errno;
		close(fd);
		errno = saved;
		return (NULL);
	}
	if ((uc = calloc(1, sizeof(*uc))) == NULL) {
		close(fd);
		errno = ENOMEM;
		return (NULL);
	}
	uc->uc_pool = up;
	uc->uc_fd = fd;
	uc->uc_state = UC_CONNECTING;
	uc->uc_ev_read = event_new(base, fd, EV_READ | EV_PERSIST,
	    upconn_read_cb, uc);
	uc->uc_ev_write = event_new(base, fd, EV_WRITE | EV_PERSIST,
	    upconn_write_cb, uc);
	uc->uc_timer = evtimer_new(base, upconn_timer_cb, uc);
	uc->uc_in = evbuffer_new();
	uc->uc_out = evbuffer_new();
	if (uc->uc_ev_read == NULL || uc->uc_ev_write == NULL ||
	    uc->uc_timer == NULL || uc->uc_in == NULL || uc->uc_out == NULL) {
		uc->uc_state = UC_CONNECTING;
		upconn_free(uc);
		errno = ENOMEM;
		return (NULL);
	}
	return (uc);
}

/* (Re)arm the upconn's timer: ms milliseconds. */
static void
upconn_timer(struct upconn *uc, int ms)
{
	struct timeval	 tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
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
 * Write what uc_out holds.  Once it is empty, a client that was paused
 * because the upstream could not keep up with its body is read again.
 * Returns -1 when the connection is broken.
 */
static int
upconn_flush(struct upconn *uc)
{
	struct conn	*c = uc->uc_client;
	int		 n;

	if (uc->uc_state == UC_CONNECTING)
		return (0);	/* the write event says when */
	while (evbuffer_get_length(uc->uc_out) > 0) {
		n = evbuffer_write(uc->uc_out, uc->uc_fd);
		if (n > 0)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			break;
		return (-1);
	}
	if (evbuffer_get_length(uc->uc_out) > 0) {
		if (!uc->uc_writing)
			event_add(uc->uc_ev_write, NULL);
		uc->uc_writing = 1;
		return (0);
	}
	if (uc->uc_writing)
		event_del(uc->uc_ev_write);
	uc->uc_writing = 0;
	if (c != NULL && c->c_upwait) {
		c->c_upwait = 0;
		conn_reading(c, 1);
	}
	return (0);
}

/* Detach the exchange from its client and close the upstream connection. */
static struct conn *
upconn_drop(struct upconn *uc)
{
	struct conn	*c = uc->uc_client;

	if (c != NULL)
		c->c_up = NULL;
	upconn_free(uc);
	return (c);
}

/*
 * The exchange failed before the response started: answer status/code
 * ourselves.  A client still sending its body cannot be kept.
 */
static void
proxy_fail(struct upconn *uc, int status, const char *code, const char *msg)
{
	struct conn	*c = upconn_drop(uc);

	if (c == NULL)
		return;
	if (c->c_state != CONN_PROXY)
		c->c_keepalive = 0;	/* its body is not all read */
	if (c->c_upwait) {
		c->c_upwait = 0;
		conn_reading(c, 1);
	}
	conn_refuse(c, status, code, msg);
	conn_next(c);
}

/*
 * The exchange failed after the response started: the client gets what
 * was already queued and then the connection closes, so a short body is
 * visible as such and never taken for a complete one.
 */
static void
proxy_abort(struct upconn *uc, const char *why)
{
	const char	*name = uc->uc_pool->up_u->u_name;
	int		 status = uc->uc_status;
	uint64_t	 bytes = uc->uc_bytes;
	struct conn	*c;

	log_warnx("upstream %s: %s after the response started; closing the "
	    "client connection", name, why);
	if ((c = upconn_drop(uc)) == NULL)
		return;
	c->c_keepalive = 0;
	if (c->c_upwait) {
		c->c_upwait = 0;
		conn_reading(c, 1);
	}
	conn_log(c, status, bytes);
	conn_next(c);
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
 * The request head for the upstream: origin-form target, the end-to-end
 * headers the forwarding policy keeps (forward.c), a Host if the client
 * sent none, X-Forwarded-For with the client appended, X-Forwarded-Proto,
 * X-Request-Id, the caller's identity (X-Consumer-Id and the rest, from
 * auth.c), and the body's framing.
 */
static void
proxy_request_head(struct conn *c, struct upstream *u, struct evbuffer *out)
{
	const struct http_msg		*m = &c->c_msg;
	const struct http_header	*h;
	const char			*hostport;
	size_t				 i, n;
	char				 num[24];
	const struct config		*conf = c->c_w->w_conf;
	struct forward_policy		 fp;
	int				 host = 0, absolute;

	forward_policy_init(&fp, conf);
	evbuffer_add(out, m->hm_method, m->hm_methodlen);
	evbuffer_add(out, " ", 1);
	/* The path as normalised for routing (server.c), the query as sent. */
	evbuffer_add(out, m->hm_path, m->hm_pathlen);
	if (m->hm_query != NULL) {
		evbuffer_add(out, "?", 1);
		evbuffer_add(out, m->hm_query, m->hm_querylen);
	}
	evbuffer_add(out, " HTTP/1.1\r\n", 11);
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
	if (!host) {
		hostport = u->u_url + 7;
		proxy_field(out, "Host", 4, hostport, strcspn(hostport, "/"));
	}
	/* Framing is keygate's own: never what a header list says. */
	if (m->hm_body == HTTP_BODY_LENGTH) {
		n = util_u64toa(num, m->hm_content_length);
		proxy_field(out, "Content-Length", 14, num, n);
	}
	evbuffer_add(out, "X-Forwarded-For: ", 17);
	for (i = 0; i < m->hm_nheaders; i++) {
		h = &m->hm_headers[i];
		if (!http_strcaseeq(h->h_name, h->h_namelen, "x-forwarded-for") ||
		    h->h_valuelen == 0)
			continue;
		evbuffer_add(out, h->h_value, h->h_valuelen);
		evbuffer_add(out, ", ", 2);
	}
	evbuffer_add(out, c->c_client, strlen(c->c_client));
	evbuffer_add(out, "\r\nX-Forwarded-Proto: http\r\n", 27);
	proxy_field(out, "X-Request-Id", 12, c->c_reqid, c->c_reqidlen);
	evbuffer_add(out, c->c_ident, c->c_identlen);	/* auth.c, CRLF-ended */
	if (c->c_body == HTTP_BODY_CHUNKED)
		evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
	evbuffer_add(out, "\r\n", 2);
}

/* A request that may go out again if a reused connection was stale. */
static int
proxy_retryable(const struct conn *c)
{
	int	 m = c->c_msg.hm_mbit;

	return (c->c_body == HTTP_BODY_NONE && (m & (HTTP_M_GET | HTTP_M_HEAD |
	    HTTP_M_OPTIONS | HTTP_M_TRACE | HTTP_M_PUT | HTTP_M_DELETE)));
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

/* Bind uc to client c and send what uc_out holds. */
static int
proxy_attach(struct conn *c, struct upconn *uc)
{
	struct upstream	*u = uc->uc_pool->up_u;

	uc->uc_client = c;
	c->c_up = uc;
	http_msg_init(&uc->uc_msg);
	upconn_reading(uc, 1);
	if (uc->uc_state == UC_CONNECTING) {
		event_add(uc->uc_ev_write, NULL);
		uc->uc_writing = 1;
		upconn_timer(uc, u->u_connect_timeout);
		return (0);
	}
	upconn_wait(uc);
	return (upconn_flush(uc));
}

/* Start forwarding c's request to u; see proxy.h. */
void
proxy_start(struct conn *c, struct upstream *u)
{
	struct upool	*up = &c->c_w->w_pools[u->u_index];
	struct upconn	*uc;
	size_t		 len;

	if ((uc = proxy_get(up)) == NULL) {
		log_warn("upstream %s: connect", u->u_name);
		evbuffer_drain(c->c_in, c->c_msg.hm_hdrlen);
		if (c->c_body != HTTP_BODY_NONE)
			c->c_keepalive = 0;	/* its body is not read */
		conn_refuse(c, 502, "upstream_unavailable",
		    "the upstream could not be reached");
		conn_next(c);
		return;
	}
	proxy_request_head(c, u, uc->uc_out);
	if (uc->uc_reused && proxy_retryable(c) &&
	    (uc->uc_retry = evbuffer_new()) != NULL) {
		len = evbuffer_get_length(uc->uc_out);
		evbuffer_add(uc->uc_retry, evbuffer_pullup(uc->uc_out, -1), len);
	}
	evbuffer_drain(c->c_in, c->c_msg.hm_hdrlen);
	uc->uc_req_done = c->c_body == HTTP_BODY_NONE;
	c->c_state = c->c_body == HTTP_BODY_NONE ? CONN_PROXY : CONN_BODY;
	if ((c->c_msg.hm_flags & HTTP_F_EXPECT100) && c->c_minor == 1 &&
	    c->c_body != HTTP_BODY_NONE && evbuffer_get_length(c->c_in) == 0)
		evbuffer_add(c->c_out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	if (proxy_attach(c, uc) == -1)
		proxy_fail(uc, 502, "upstream_unavailable",
		    "the connection to the upstream failed");
}

/* Move n body bytes from the client to the upstream; see proxy.h. */
void
proxy_body(struct conn *c, size_t n)
{
	evbuffer_remove_buffer(c->c_in, c->c_up->uc_out, n);
	proxy_body_flush(c);
}

/*
 * Payload of a chunked request body, chunked anew by keygate: chunk
 * extensions and the trailer section (which would carry headers past the
 * forwarding policy) never reach the upstream.
 */
void
proxy_body_chunk(void *arg, const char *data, size_t n)
{
	struct conn	*c = arg;
	char		 hex[24];
	size_t		 len = 0;
	size_t		 v = n;

	if (n == 0)
		return;
	do {
		hex[sizeof(hex) - 1 - len++] = "0123456789abcdef"[v & 0xf];
		v >>= 4;
	} while (v != 0);
	evbuffer_add(c->c_up->uc_out, hex + sizeof(hex) - len, len);
	evbuffer_add(c->c_up->uc_out, "\r\n", 2);
	evbuffer_add(c->c_up->uc_out, data, n);
	evbuffer_add(c->c_up->uc_out, "\r\n", 2);
}

/* Send what the body added; pause the client if the upstream lags. */
void
proxy_body_flush(struct conn *c)
{
	struct upconn	*uc = c->c_up;

	if (upconn_flush(uc) == -1) {
		/* Whatever the upstream says (if anything) comes on read. */
		upconn_reading(uc, 1);
		return;
	}
	if (evbuffer_get_length(uc->uc_out) > SERVER_MAX_OUTPUT) {
		c->c_upwait = 1;
		conn_reading(c, 0);
	}
}

/* The whole request body is in uc_out. */
void
proxy_body_done(struct conn *c)
{
	if (c->c_msg.hm_body == HTTP_BODY_CHUNKED) {
		evbuffer_add(c->c_up->uc_out, "0\r\n\r\n", 5);
		proxy_body_flush(c);
		if (c->c_up == NULL)
			return;
	}
	c->c_up->uc_req_done = 1;
	if (c->c_up->uc_state != UC_CONNECTING)
		upconn_wait(c->c_up);
	if (c->c_state == CONN_BODY)
		c->c_state = CONN_PROXY;
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
	struct conn			*c = uc->uc_client;
	const struct http_msg		*m = &uc->uc_msg;
	const struct http_header	*h;
	struct evbuffer			*out = c->c_out;
	size_t				 i, n, before = evbuffer_get_length(out);
	char				 st[16], num[24];
	int				 reqid = 0;

	uc->uc_status = m->hm_status;
	uc->uc_body = m->hm_body;
	uc->uc_left = m->hm_content_length;
	uc->uc_dechunk = m->hm_body == HTTP_BODY_CHUNKED && c->c_minor == 0;
	http_chunked_init(&uc->uc_chunked);
	/* The connection will close: say so (stop, unread body, framing). */
	if (m->hm_body == HTTP_BODY_EOF || uc->uc_dechunk ||
	    c->c_w->w_stopping || c->c_state != CONN_PROXY)
		c->c_keepalive = 0;
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
	for (i = 0; i < m->hm_nheaders; i++) {
		h = &m->hm_headers[i];
		if (!forward_keep_response_header(m, h) ||
		    (m->hm_body != HTTP_BODY_NONE &&
		    http_strcaseeq(h->h_name, h->h_namelen, "content-length")))
			continue;
		/* Ours win: two sets of RateLimit-* would contradict. */
		if (c->c_rate_ms != 0 && h->h_namelen > 10 &&
		    strncasecmp(h->h_name, "ratelimit-", 10) == 0)
			continue;
		if (http_strcaseeq(h->h_name, h->h_namelen, "x-request-id"))
			reqid = 1;
		proxy_field(out, h->h_name, h->h_namelen, h->h_value,
		    h->h_valuelen);
	}
	if (!reqid)
		proxy_field(out, "X-Request-Id", 12, c->c_reqid, c->c_reqidlen);
	evbuffer_add(out, c->c_extra, c->c_extralen);	/* RateLimit-* */
	if (m->hm_body == HTTP_BODY_LENGTH) {
		n = util_u64toa(num, m->hm_content_length);
		proxy_field(out, "Content-Length", 14, num, n);
	}
	if (m->hm_body == HTTP_BODY_CHUNKED && !uc->uc_dechunk)
		evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
	if (!c->c_keepalive)
		evbuffer_add(out, "Connection: close\r\n", 19);
	else if (c->c_minor == 0)
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
	struct evbuffer		*out = uc->uc_client->c_out;
	struct evbuffer_iovec	 v[8];
	size_t			 len = evbuffer_get_length(uc->uc_in), n;
	uint64_t		 payload;
	ssize_t			 used;
	int			 nv, more;

	switch (uc->uc_body) {
	case HTTP_BODY_NONE:
		return (1);
	case HTTP_BODY_LENGTH:
		n = len < uc->uc_left ? len : (size_t)uc->uc_left;
		evbuffer_remove_buffer(uc->uc_in, out, n);
		uc->uc_left -= n;
		uc->uc_bytes += n;
		return (uc->uc_left == 0);
	case HTTP_BODY_EOF:
		evbuffer_add_buffer(out, uc->uc_in);
		uc->uc_bytes += len;
		return (0);
	case HTTP_BODY_CHUNKED:
		break;
	}
	do {
		payload = uc->uc_chunked.hc_payload;
		nv = evbuffer_peek(uc->uc_in, -1, NULL, v, 8);
		used = http_chunked_feedv(&uc->uc_chunked, v, nv < 8 ? nv : 8,
		    uc->uc_dechunk ? proxy_payload_cb : NULL, out, &more);
		if (used < 0)
			return (-1);
		if (uc->uc_dechunk) {
			evbuffer_drain(uc->uc_in, (size_t)used);
			uc->uc_bytes += uc->uc_chunked.hc_payload - payload;
		} else {
			evbuffer_remove_buffer(uc->uc_in, out, (size_t)used);
			uc->uc_bytes += (size_t)used;
		}
	} while (more && evbuffer_get_length(uc->uc_in) > 0);
	return (http_chunked_done(&uc->uc_chunked));
}

/*
 * The response is complete.  The connection goes back to the pool only if
 * the exchange ended cleanly on both sides; the client moves on.
 */
static void
proxy_done(struct upconn *uc)
{
	struct conn	*c = uc->uc_client;
	struct upool	*up = uc->uc_pool;

	conn_log(c, uc->uc_status, uc->uc_bytes);
	c->c_up = NULL;
	uc->uc_client = NULL;
	if (c->c_upwait) {
		c->c_upwait = 0;
		conn_reading(c, 1);
	}
	if (uc->uc_req_done && (uc->uc_msg.hm_flags & HTTP_F_KEEPALIVE) &&
	    uc->uc_body != HTTP_BODY_EOF && !uc->uc_writing &&
	    evbuffer_get_length(uc->uc_in) == 0 &&
	    evbuffer_get_length(uc->uc_out) == 0 &&
	    up->up_nidle < up->up_u->u_max_idle && !up->up_w->w_stopping) {
		if (uc->uc_retry != NULL) {
			evbuffer_free(uc->uc_retry);
			uc->uc_retry = NULL;
		}
		uc->uc_state = UC_IDLE;
		uc->uc_blocked = 0;
		uc->uc_got = 0;
		evtimer_del(uc->uc_timer);
		upconn_reading(uc, 1);
		TAILQ_INSERT_HEAD(&up->up_idle, uc, uc_entry);
		up->up_nidle++;
	} else
		upconn_free(uc);
	if (c->c_state != CONN_PROXY)
		c->c_keepalive = 0;	/* answered before its body was read */
	conn_next(c);
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

/* Parse and pass on what the upstream sent, as far as it goes. */
static void
proxy_advance(struct upconn *uc)
{
	struct conn	*c = uc->uc_client;
	unsigned char	*p;
	size_t		 len;
	int		 rc;

	while (uc->uc_state == UC_HEAD) {
		if ((len = evbuffer_get_length(uc->uc_in)) == 0)
			return;
		if (len > c->c_w->w_scanmax)
			len = c->c_w->w_scanmax;
		p = evbuffer_pullup(uc->uc_in, (ssize_t)len);
		rc = http_parse_response(&uc->uc_msg, (const char *)p, len,
		    &c->c_w->w_limits, c->c_msg.hm_mbit);
		if (rc == 0)
			return;
		if (rc > 0 && !proxy_codings_ok(&uc->uc_msg))
			rc = -2;
		if (rc < 0 || uc->uc_msg.hm_status == 101) {
			log_warnx("upstream %s: %s", uc->uc_pool->up_u->u_name,
			    rc == -2 ? "unsupported transfer coding" : rc < 0 ?
			    uc->uc_msg.hm_cause : "unexpected 101");
			proxy_fail(uc, 502, "upstream_unavailable",
			    "the upstream sent a malformed response");
			return;
		}
		if (uc->uc_msg.hm_status < 200) {	/* interim: skip it */
			evbuffer_drain(uc->uc_in, uc->uc_msg.hm_hdrlen);
			http_msg_init(&uc->uc_msg);
			continue;
		}
		proxy_response_head(uc);
		evbuffer_drain(uc->uc_in, uc->uc_msg.hm_hdrlen);
		uc->uc_state = UC_BODY;
	}
	switch (proxy_body_move(uc)) {
	case 1:
		proxy_done(uc);
		return;
	case -1:
		proxy_abort(uc, "malformed chunked body");
		return;
	}
	if (evbuffer_get_length(c->c_out) > SERVER_MAX_OUTPUT) {
		/* The client is the slow side now; its send_timeout rules. */
		uc->uc_blocked = 1;
		upconn_reading(uc, 0);
		evtimer_del(uc->uc_timer);
	}
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
	struct conn	*c = uc->uc_client;
	struct upconn	*nuc;

	if (uc->uc_state == UC_BODY && uc->uc_body == HTTP_BODY_EOF && eof) {
		proxy_done(uc);
		return;
	}
	if (uc->uc_state == UC_BODY) {
		proxy_abort(uc, "connection closed");
		return;
	}
	if (uc->uc_reused && !uc->uc_got && uc->uc_retry != NULL &&
	    (nuc = upconn_new(uc->uc_pool)) != NULL) {
		evbuffer_add_buffer(nuc->uc_out, uc->uc_retry);
		nuc->uc_req_done = 1;
		upconn_drop(uc);
		if (proxy_attach(c, nuc) == -1)
			proxy_fail(nuc, 502, "upstream_unavailable",
			    "the connection to the upstream failed");
		return;
	}
	log_warnx("upstream %s: connection %s before the response",
	    uc->uc_pool->up_u->u_name, eof ? "closed" : "failed");
	proxy_fail(uc, 502, "upstream_unavailable",
	    "the upstream closed the connection without answering");
}

/* Readable upstream: one recv(), then pass the bytes on. */
static void
upconn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upconn		*uc = arg;
	struct conn		*c = uc->uc_client;
	struct evbuffer_iovec	 v;
	ssize_t			 n;

	if (uc->uc_state == UC_IDLE) {
		/* An idle connection has nothing to say: it closed. */
		upconn_free(uc);
		return;
	}
	if (evbuffer_reserve_space(uc->uc_in, PROXY_READ_SIZE, &v, 1) < 1)
		n = -1;
	else
		n = recv(fd, v.iov_base, v.iov_len < PROXY_READ_SIZE ?
		    v.iov_len : PROXY_READ_SIZE, 0);
	if (n > 0) {
		v.iov_len = (size_t)n;
		evbuffer_commit_space(uc->uc_in, &v, 1);
		uc->uc_got = 1;
		upconn_timer(uc, uc->uc_pool->up_u->u_read_timeout);
		proxy_advance(uc);
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR))
		proxy_closed(uc, n == 0);
	conn_kick(c);
}

/* Writable upstream: the connect finished, or there is room again. */
static void
upconn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upconn	*uc = arg;
	struct conn	*c = uc->uc_client;
	socklen_t	 len = sizeof(int);
	int		 err = 0;

	if (uc->uc_state == UC_CONNECTING) {
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
			err = errno;
		if (err != 0) {
			log_warnx("upstream %s: connect: %s",
			    uc->uc_pool->up_u->u_name, strerror(err));
			proxy_fail(uc, 502, "upstream_unavailable",
			    "the upstream could not be reached");
			conn_kick(c);
			return;
		}
		uc->uc_state = UC_HEAD;
		upconn_wait(uc);
	}
	if (upconn_flush(uc) == -1)
		proxy_closed(uc, 0);
	conn_kick(c);
}

/* connect_timeout or read_timeout passed. */
static void
upconn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upconn	*uc = arg;
	struct conn	*c = uc->uc_client;

	log_warnx("upstream %s: %s timed out", uc->uc_pool->up_u->u_name,
	    uc->uc_state == UC_CONNECTING ? "connect" : "read");
	if (uc->uc_state == UC_BODY)
		proxy_abort(uc, "read timed out");
	else
		proxy_fail(uc, 504, "upstream_timeout", uc->uc_state ==
		    UC_CONNECTING ? "the upstream did not accept the connection "
		    "in time" : "the upstream did not answer in time");
	conn_kick(c);
}

/* The client's output drained; see proxy.h. */
int
proxy_client_drained(struct conn *c)
{
	struct upconn	*uc = c->c_up;
	size_t		 before = evbuffer_get_length(c->c_out);

	if (uc == NULL || !uc->uc_blocked)
		return (0);
	uc->uc_blocked = 0;
	upconn_reading(uc, 1);
	upconn_timer(uc, uc->uc_pool->up_u->u_read_timeout);
	proxy_advance(uc);
	return (evbuffer_get_length(c->c_out) > before);
}

/* Has the response begun to go to the client? */
int
proxy_response_started(const struct conn *c)
{
	return (c->c_up != NULL && c->c_up->uc_state == UC_BODY);
}

/* The client is going away; see proxy.h. */
void
proxy_detach(struct conn *c)
{
	if (c->c_up != NULL)
		upconn_drop(c->c_up);
}
