/*
 * The worker: accepts connections on the inherited listeners and serves
 * HTTP/1.1 on libevent events and evbuffers.  See server.h.
 *
 * Not bufferevents: measured here, a bufferevent costs per request an
 * ioctl(FIONREAD) before each read, an epoll_ctl() to arm the write event
 * when a response is queued, another to disarm it, and a loop iteration
 * between queueing and writing.  Instead each connection reads with one
 * readv() into reserved evbuffer space, writes its responses with one
 * writev() at the end of the callback that produced them, and arms its
 * write event only when the socket would block.  That is epoll_wait, readv,
 * writev per keep-alive request, as in nginx.
 *
 * A connection moves through the states of enum conn_state.  Requests on a
 * connection are served one at a time, in order (pipelined requests wait in
 * the input buffer until the previous response is queued), and reading
 * stops while more than SERVER_MAX_OUTPUT bytes of responses wait for a slow
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
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "accesslog.h"
#include "admin.h"
#include "auth.h"
#include "config.h"
#include "conn.h"
#include "echo.h"
#include "forward.h"
#include "http.h"
#include "journal.h"
#include "jwks.h"
#include "jwtauth.h"
#include "keystore.h"
#include "log.h"
#include "proxy.h"
#include "route.h"
#include "secret.h"
#include "server.h"
#include "shm.h"
#include "util.h"

#define SERVER_DISCARD_MAX	(1024 * 1024)	/* refused body dropped up to this */
#define SERVER_LINGER_MS	2000		/* drain input after the last response */
#define SERVER_STOP_IDLE_MS	1000		/* idle keep-alive grace when stopping */
#define SERVER_READ_SIZE	16384		/* bytes asked of one readv() */
#define SERVER_CRED_STACK	1024		/* credentials copied on the stack */
#define SERVER_ACCEPT_PAUSE_MS	500		/* accept(2) failed: wait */
#define SERVER_LOG_EVERY_US	1000000		/* repeated warnings: 1/s */
#define SERVER_PIPELINE_HDRS	4	/* read-ahead, in max_header_size */

/* An admin request whose body is being read (the header is gone by then). */
struct conn_admin {
	int	 ca_mbit;
	char	*ca_target;	/* path and query */
	char	*ca_auth;	/* Authorization value, or NULL */
};

static void	 server_stop(struct worker *);
static void	 server_listen_update(struct worker *);
static void	 conn_admin_free(struct conn *);
static void	 conn_decide(struct conn *, const struct route *);
static void	 conn_verify_decide(struct conn *, const struct route *);

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
	struct http_msg		*m = &c->c_msg;
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
	struct worker	*w = c->c_w;
	char		 buf[1024 + CONN_EXTRA_MAX], *p = buf;
	const char	*reason = http_reason(status);
	size_t		 len = strlen(reason);

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
	if (status != 204) {		/* which has neither */
		memcpy(p, "Content-Type: application/json\r\nContent-Length: ",
		    48);
		p += 48;
		p += util_u64toa(p, clen);
		memcpy(p, "\r\n", 2);
		p += 2;
	}
	memcpy(p, "X-Request-Id: ", 14);
	p += 14;
	memcpy(p, c->c_reqid, c->c_reqidlen);
	p += c->c_reqidlen;
	if (!c->c_keepalive) {
		memcpy(p, "\r\nConnection: close", 19);
		p += 19;
	} else if (c->c_minor == 0) {
		memcpy(p, "\r\nConnection: keep-alive", 24);
		p += 24;
	}
	memcpy(p, "\r\n", 2);
	p += 2;
	memcpy(p, c->c_extra, c->c_extralen);
	p += c->c_extralen;
	memcpy(p, "\r\n", 2);
	p += 2;
	evbuffer_add(c->c_out, buf, (size_t)(p - buf));
}

/* Account for a queued response: statistics and the access log. */
void
conn_log(struct conn *c, int status, uint64_t bytes)
{
	struct worker		*w = c->c_w;
	struct accesslog_entry	 e;

	SHM_ADD(&w->w_stats->sw_requests, 1);
	SHM_ADD(&w->w_stats->sw_status[status / 100 % 6], 1);
	SHM_ADD(&w->w_stats->sw_bytes_out, bytes);
	c->c_nrequests++;
	if (w->w_alog == NULL)
		return;
	e.ae_time_ms = c->c_start_ms;
	e.ae_client = c->c_client;
	e.ae_method = c->c_method;
	e.ae_methodlen = c->c_methodlen;
	e.ae_path = c->c_path;
	e.ae_pathlen = c->c_pathlen;
	e.ae_route = c->c_route;
	e.ae_status = status;
	e.ae_bytes = bytes;
	e.ae_duration_us = util_mono_us() - c->c_start_us;
	e.ae_reqid = c->c_reqid;
	e.ae_reqidlen = c->c_reqidlen;
	e.ae_key = c->c_keyid;
	e.ae_scheme = c->c_scheme;
	e.ae_identity = c->c_ident_log;
	e.ae_rate_ms = c->c_rate_ms;
	accesslog_write(w->w_alog, &e);
}

/* A new request id: unique per worker by a counter, across workers by a seed. */
static void
conn_new_reqid(struct conn *c)
{
	struct worker	*w = c->c_w;
	uint64_t	 h;

	h = server_mix(w->w_reqid_seed + ++w->w_reqid_seq);
	util_hex64(c->c_reqid, h);
	util_hex64(c->c_reqid + 16, server_mix(h));
	c->c_reqidlen = 32;
}

/* Queue a JSON refusal {"error": code, "message": message}. */
void
conn_refuse(struct conn *c, int status, const char *code, const char *message)
{
	struct evbuffer	*out = c->c_out;
	char		 body[1024];
	size_t		 off, need, before;
	int		 n;

	n = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"message\":\"",
	    code);
	off = (size_t)n;
	need = util_json_escape(body + off, sizeof(body) - off - 4, message,
	    strlen(message));
	if (need <= sizeof(body) - off - 4)
		off += need;
	memcpy(body + off, "\"}\n", 3);
	off += 3;
	before = evbuffer_get_length(out);
	conn_head(c, status, off);
	if (!c->c_head)
		evbuffer_add(out, body, off);
	conn_log(c, status, evbuffer_get_length(out) - before);
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
		started = proxy_response_started(c);
		proxy_detach(c);
		c->c_upwait = 0;
		if (started) {		/* too late to answer: just close */
			c->c_state = CONN_CLOSING;
			conn_timer(c, c->c_w->w_tv_send);
			return;
		}
	}
	if (c->c_reqidlen == 0)		/* refused before it was parsed */
		conn_new_reqid(c);
	if (c->c_pending != NULL)	/* an admin body may hold a secret */
		conn_wipe_drain(c->c_pending, evbuffer_get_length(c->c_pending));
	conn_admin_free(c);
	conn_refuse(c, status, code, cause);
	c->c_state = CONN_CLOSING;
	conn_timer(c, c->c_w->w_tv_send);
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
	conn_log(c, 200, evbuffer_get_length(out) - before);
}

/* Copy what the access log needs before the header bytes are drained. */
static void
conn_remember(struct conn *c)
{
	const struct http_msg	*m = &c->c_msg;
	const char		*id;
	size_t			 len;

	c->c_methodlen = m->hm_methodlen < sizeof(c->c_method) ?
	    m->hm_methodlen : sizeof(c->c_method);
	memcpy(c->c_method, m->hm_method, c->c_methodlen);
	c->c_pathlen = m->hm_pathlen < sizeof(c->c_path) ?
	    m->hm_pathlen : sizeof(c->c_path);
	memcpy(c->c_path, m->hm_path, c->c_pathlen);
	if (forward_client_reqid(m, &id, &len)) {
		memcpy(c->c_reqid, id, len);
		c->c_reqidlen = len;
	} else
		conn_new_reqid(c);
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
	if (c->c_msg.hm_flags & HTTP_F_EXPECT100)
		return (0);
	return (c->c_body == HTTP_BODY_CHUNKED ||
	    c->c_body_left <= SERVER_DISCARD_MAX);
}

/*
 * Answer a complete request ourselves (a refusal, or a verify_path 204)
 * and drop its body.
 */
static void
conn_refuse_request(struct conn *c, int status, const char *code,
    const char *message)
{
	size_t	 before = evbuffer_get_length(c->c_out);

	if (!conn_can_discard(c))
		c->c_keepalive = 0;
	if (status == 204) {
		conn_head(c, 204, 0);
		conn_log(c, 204, evbuffer_get_length(c->c_out) - before);
	} else
		conn_refuse(c, status, code, message);
	if (c->c_body == HTTP_BODY_NONE || !c->c_keepalive) {
		c->c_body = HTTP_BODY_NONE;
		conn_next(c);
		return;
	}
	c->c_state = CONN_DISCARD;
	conn_body_start(c);
}

/*
 * A request keygate answers itself once its body is read (echo, admin),
 * its header section consumed: without a body, answer through respond at
 * once; else send 100 Continue if the client waits for it and read the
 * body (conn_body() calls respond at its end).
 */
static void
conn_await_body(struct conn *c, void (*respond)(struct conn *))
{
	if (c->c_body == HTTP_BODY_NONE) {
		respond(c);
		conn_next(c);
		return;
	}
	if ((c->c_msg.hm_flags & HTTP_F_EXPECT100) && c->c_minor == 1 &&
	    evbuffer_get_length(c->c_in) == 0)
		evbuffer_add(c->c_out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	c->c_state = CONN_BODY;
	conn_body_start(c);
}

/* Serve a request through its route's upstream. */
static void
conn_serve(struct conn *c, const struct route *r)
{
	struct evbuffer		*in = c->c_in;
	struct worker		*w = c->c_w;
	struct forward_policy	 fp;

	if (r->r_upstream->u_type == UPSTREAM_HTTP) {
		proxy_start(c, r->r_upstream);
		if (c->c_state == CONN_PROXY)
			evtimer_del(c->c_timer);	/* the upstream's timers rule */
		else if (c->c_state == CONN_BODY)
			conn_body_start(c);
		return;
	}
	if (c->c_pending == NULL && (c->c_pending = evbuffer_new()) == NULL) {
		evbuffer_drain(in, c->c_msg.hm_hdrlen);
		conn_fail(c, 500, "out of memory");
		return;
	}
	forward_policy_init(&fp, w->w_conf);
	echo_begin(c->c_pending, &c->c_msg, c->c_client, c->c_reqid,
	    c->c_reqidlen, &fp, c->c_ident, c->c_identlen);
	evbuffer_drain(in, c->c_msg.hm_hdrlen);
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

	if (c->c_hold_until == 0) {
		c->c_hold_asked = now;
		c->c_hold_until = now + JWKS_HOLD_MS;
	}
	c->c_hold_route = r;
	c->c_hold_verify = verify;
	c->c_hold_provider = p;
	c->c_state = CONN_AUTHWAIT;
	conn_reading(c, 0);
	evtimer_add(c->c_timer, &tv);
}

/* The identity of ar for the access log: scheme, key id or JWT subject. */
static void
conn_identity_log(struct conn *c, const struct auth_result *ar)
{
	if (ar->ar_found)
		memcpy(c->c_keyid, ar->ar_key.k_id, sizeof(c->c_keyid));
	if (ar->ar_jwt_found)
		memcpy(c->c_ident_log, ar->ar_jwt.ji_subject,
		    sizeof(c->c_ident_log));
	if (ar->ar_scheme != 0)
		c->c_scheme = route_auth_name(ar->ar_scheme);
}

/*
 * Authenticate the request for route r (auth.c).  Allowed: the identity
 * headers for the upstream are kept in c_ident and 1 is returned.  Refused:
 * the refusal is queued (with WWW-Authenticate for a 401) and 0 returned.
 * Held (a JWT's kid is unknown and its keys are being re-fetched): 0 with
 * the connection in CONN_AUTHWAIT, nothing queued.  The key id or the JWT
 * subject, never the credential, is kept for the access log.
 */
static int
conn_authorize(struct conn *c, const struct route *r, int verify)
{
	struct worker		*w = c->c_w;
	struct auth_rate	 ra = w->w_rate;
	struct auth_jwt		 aj;
	struct auth_result	 ar;
	int			 n;

	ra.ra_ip = c->c_iplen > 0 ? c->c_ip : NULL;
	ra.ra_iplen = c->c_iplen;
	ra.ra_now = util_mono_us() / 1000;
	aj.aj_state = w->w_jwt;
	aj.aj_mono = ra.ra_now;
	aj.aj_final = c->c_hold_final ||
	    (c->c_hold_until != 0 && ra.ra_now >= c->c_hold_until);
	auth_check(r, &c->c_msg, &w->w_ks, w->w_conf->c_api_key_header,
	    c->c_start_ms, &ra, w->w_jwt != NULL ? &aj : NULL, &ar);
	if (ar.ar_status == AUTH_PENDING) {
		conn_hold(c, r, verify, ar.ar_wait, ra.ra_now);
		return (0);
	}
	conn_identity_log(c, &ar);
	if (ar.ar_limited) {
		/* The limiter's own time, for the access log. */
		c->c_rate_ms = ra.ra_now + w->w_env->se_shm->sh_mono_to_wall;
		c->c_extralen += auth_rate_headers(&ar, c->c_extra +
		    c->c_extralen, sizeof(c->c_extra) - c->c_extralen);
	}
	if (ar.ar_status == 0) {
		c->c_identlen = auth_identity_headers(&ar, c->c_ident,
		    sizeof(c->c_ident));
		if (c->c_identlen > 0)
			return (1);
		conn_refuse_request(c, 500, "internal_error",
		    "the caller's identity cannot be sent in headers");
		return (0);
	}
	if (ar.ar_challenge != NULL) {
		n = snprintf(c->c_extra + c->c_extralen,
		    sizeof(c->c_extra) - c->c_extralen,
		    "WWW-Authenticate: %s\r\n", ar.ar_challenge);
		if (n > 0 && (size_t)n < sizeof(c->c_extra) - c->c_extralen)
			c->c_extralen += (size_t)n;
	}
	conn_refuse_request(c, ar.ar_status, ar.ar_code, ar.ar_message);
	return (0);
}

/* Free the pending admin request, if any. */
static void
conn_admin_free(struct conn *c)
{
	if (c->c_adm == NULL)
		return;
	free(c->c_adm->ca_target);
	if (c->c_adm->ca_auth != NULL) {	/* the admin token */
		OPENSSL_cleanse(c->c_adm->ca_auth, strlen(c->c_adm->ca_auth));
		free(c->c_adm->ca_auth);
	}
	free(c->c_adm);
	c->c_adm = NULL;
}

/* Copy what admin_handle() needs out of the header section; -1: no memory. */
static int
conn_admin_begin(struct conn *c)
{
	const struct http_msg		*m = &c->c_msg;
	const struct http_header	*h;
	struct conn_admin		*ca;
	size_t				 len;

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
	if ((h = http_header_find(m, "authorization")) != NULL &&
	    (ca->ca_auth = strndup(h->h_value, h->h_valuelen)) == NULL)
		return (-1);
	return (0);
}

/* Append "Name: value\r\n" to the extra response headers if it fits. */
static void
conn_extra(struct conn *c, const char *name, const char *value)
{
	size_t	 room = sizeof(c->c_extra) - c->c_extralen;
	int	 n;

	n = snprintf(c->c_extra + c->c_extralen, room, "%s: %s\r\n", name,
	    value);
	if (n > 0 && (size_t)n < room)
		c->c_extralen += (size_t)n;
}

/* The whole admin request is here: answer it (admin.c). */
static void
conn_admin_respond(struct conn *c)
{
	struct conn_admin	*ca = c->c_adm;
	struct admin_request	 aq;
	struct admin_response	 as;
	size_t			 before = evbuffer_get_length(c->c_out);
	const char		*q;
	char			 ra[16];

	memset(&aq, 0, sizeof(aq));
	aq.aq_mbit = ca->ca_mbit;
	aq.aq_path = ca->ca_target;
	aq.aq_pathlen = strcspn(ca->ca_target, "?");
	if ((q = strchr(ca->ca_target, '?')) != NULL) {
		aq.aq_query = q + 1;
		aq.aq_querylen = strlen(q + 1);
	}
	aq.aq_auth = ca->ca_auth;
	aq.aq_authlen = ca->ca_auth != NULL ? strlen(ca->ca_auth) : 0;
	aq.aq_bodylen = evbuffer_get_length(c->c_pending);
	aq.aq_body = aq.aq_bodylen == 0 ? "" :
	    (const char *)conn_pullup(c->c_pending, aq.aq_bodylen);
	aq.aq_now = util_now_ms();
	aq.aq_mono = util_mono_us() / 1000;
	aq.aq_ip = c->c_ip;
	aq.aq_iplen = c->c_iplen;
	aq.aq_client = c->c_client;
	admin_handle(&c->c_w->w_admin, &aq, &as);
	if (as.as_allow != NULL)
		conn_extra(c, "Allow", as.as_allow);
	if (as.as_challenge != NULL)
		conn_extra(c, "WWW-Authenticate", as.as_challenge);
	if (as.as_retry_after > 0) {
		snprintf(ra, sizeof(ra), "%u", as.as_retry_after);
		conn_extra(c, "Retry-After", ra);
	}
	conn_head(c, as.as_status, as.as_bodylen);
	/* The body may carry a new secret: wiped once written. */
	if (!c->c_head && as.as_body != NULL) {
		if (evbuffer_add_reference(c->c_out, as.as_body,
		    as.as_bodylen, conn_wipe_ref, NULL) == 0)
			as.as_body = NULL;
		else
			evbuffer_add(c->c_out, as.as_body, as.as_bodylen);
	}
	conn_log(c, as.as_status, evbuffer_get_length(c->c_out) - before);
	admin_response_free(&as);
	conn_wipe_drain(c->c_pending, evbuffer_get_length(c->c_pending));
	conn_admin_free(c);
}

/* A request on the admin listener: read its body (if any), then answer. */
static void
conn_admin(struct conn *c)
{
	struct evbuffer	*in = c->c_in;
	size_t		 hdrlen = c->c_msg.hm_hdrlen;

	if (c->c_body == HTTP_BODY_LENGTH && c->c_body_left > ADMIN_MAX_BODY) {
		evbuffer_drain(in, hdrlen);
		conn_fail(c, 413, "admin request bodies are limited to 64 KiB");
		return;
	}
	if ((c->c_pending == NULL && (c->c_pending = evbuffer_new()) == NULL) ||
	    conn_admin_begin(c) == -1) {
		conn_admin_free(c);
		evbuffer_drain(in, hdrlen);
		conn_fail(c, 500, "out of memory");
		return;
	}
	evbuffer_drain(in, hdrlen);
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
	struct http_msg	*m = &c->c_msg;
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
			conn_refuse_request(c, 500, "internal_error",
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
	conn_refuse_request(c, 500, "route_error", "the route's pattern could "
	    "not be matched against this path");
	return (-1);
}

/* Decide a verify_path request for route r: 204 with the identity. */
static void
conn_verify_decide(struct conn *c, const struct route *r)
{
	if (conn_authorize(c, r, 1)) {
		/*
		 * nginx takes the identity from the 204 (auth_request_set),
		 * after the rate headers (CONN_EXTRA_MAX holds both).
		 */
		memcpy(c->c_extra + c->c_extralen, c->c_ident, c->c_identlen);
		c->c_extralen += c->c_identlen;
		conn_refuse_request(c, 204, NULL, NULL);
	}
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

	if (auth_verify_target(&c->c_msg, &mbit, &path, &len, &cause) == -1) {
		conn_refuse_request(c, 400, "bad_request", cause);
		return;
	}
	if (conn_normalize(c, path, len, &len, &cause) == -1) {
		conn_refuse_request(c, 400, "bad_request", cause);
		return;
	}
	if (conn_route(c, mbit, path, len, &r) == -1)
		return;
	if (r == NULL) {
		conn_refuse_request(c, 404, "no_route",
		    "no route matches this method and path");
		return;
	}
	c->c_route = r->r_index;
	conn_verify_decide(c, r);
}

/* A complete header section: choose the route and act on it. */
static void
conn_dispatch(struct conn *c)
{
	struct worker		*w = c->c_w;
	struct config		*conf = w->w_conf;
	struct http_msg		*m = &c->c_msg;
	struct evbuffer		*in = c->c_in;
	const struct route	*r;
	const char		*cause;

	conn_remember(c);
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

	if (c->c_admin) {
		conn_admin(c);
		return;
	}
	if (c->c_body == HTTP_BODY_LENGTH && conf->c_max_body_size > 0 &&
	    c->c_body_left > conf->c_max_body_size) {
		evbuffer_drain(in, m->hm_hdrlen);
		conn_fail(c, 413, "the request body is larger than "
		    "max_body_size");
		return;
	}
	/* Normalised in place: routes and the upstream see the same path. */
	if (m->hm_pathlen > 0 && m->hm_path[0] == '/' && conn_normalize(c,
	    m->hm_path, m->hm_pathlen, &m->hm_pathlen, &cause) == -1) {
		evbuffer_drain(in, m->hm_hdrlen);
		conn_fail(c, 400, cause);
		return;
	}
	if (conf->c_verify_path != NULL &&
	    m->hm_pathlen == strlen(conf->c_verify_path) &&
	    memcmp(m->hm_path, conf->c_verify_path, m->hm_pathlen) == 0) {
		conn_verify(c);
		if (c->c_state != CONN_AUTHWAIT)
			evbuffer_drain(in, m->hm_hdrlen);
		return;
	}
	if (conn_route(c, m->hm_mbit, m->hm_path, m->hm_pathlen, &r) == -1) {
		evbuffer_drain(in, m->hm_hdrlen);
		return;
	}
	if (r == NULL) {
		c->c_route = 0;
		conn_refuse_request(c, 404, "no_route",
		    "no route matches this method and path");
		evbuffer_drain(in, m->hm_hdrlen);
		return;
	}
	c->c_route = r->r_index;
	conn_decide(c, r);
}

/* Authenticate for route r, then serve or refuse (unless held). */
static void
conn_decide(struct conn *c, const struct route *r)
{
	if (conn_authorize(c, r, 0)) {
		conn_serve(c, r);	/* drains the header itself */
		return;
	}
	if (c->c_state != CONN_AUTHWAIT)
		evbuffer_drain(c->c_in, c->c_msg.hm_hdrlen);
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
	for (i = 0; i < c->c_msg.hm_nheaders; i++) {
		h = &c->c_msg.hm_headers[i];
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
	c->c_state = CONN_HEADERS;
	if (c->c_hold_verify) {
		conn_verify_decide(c, c->c_hold_route);
		if (c->c_state != CONN_AUTHWAIT)
			evbuffer_drain(c->c_in, c->c_msg.hm_hdrlen);
	} else
		conn_decide(c, c->c_hold_route);
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

	if (util_mono_ms() < c->c_hold_until &&
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
	size_t		 len = evbuffer_get_length(in), used;
	unsigned char	*p;
	char		 cred[SERVER_CRED_STACK], *heap;
	int		 rc, onheap;

	if (len > c->c_w->w_scanmax)
		len = c->c_w->w_scanmax;
	if ((p = conn_pullup(in, len)) == NULL)
		return (0);
	rc = http_parse_request(&c->c_msg, (const char *)p, len,
	    &c->c_w->w_limits);
	if (rc == 0)
		return (0);
	if (rc < 0) {
		c->c_route = 0;
		c->c_head = 0;
		/* The head may carry credentials. */
		conn_wipe_drain(in, evbuffer_get_length(in));
		conn_fail(c, c->c_msg.hm_error, c->c_msg.hm_cause);
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
		proxy_body(c, n);
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
	ssize_t			 used, total = 0;
	int			 n, proxied, more;

	proxied = c->c_up != NULL && c->c_state == CONN_BODY;
	if (proxied)
		cb = proxy_body_chunk;
	else if (c->c_adm != NULL && c->c_state == CONN_BODY)
		cb = conn_admin_chunk;
	do {
		n = evbuffer_peek(in, -1, NULL, v, 8);
		used = http_chunked_feedv(&c->c_chunked, v, n < 8 ? n : 8, cb, c,
		    &more);
		if (used < 0)
			return (-1);
		evbuffer_drain(in, (size_t)used);
		total += used;
	} while (more && evbuffer_get_length(in) > 0);
	if (proxied)
		proxy_body_flush(c);
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
		proxy_body_done(c);
		evtimer_del(c->c_timer);
		return (1);
	}
	if (c->c_state == CONN_BODY && c->c_adm != NULL)
		conn_admin_respond(c);
	else if (c->c_state == CONN_BODY)
		conn_echo_respond(c);
	conn_next(c);
	return (1);
}

/*
 * The request is answered and its body consumed: wait for the next one, or
 * close once the response is written.  Reading pauses while too much output
 * waits for the client.
 */
void
conn_next(struct conn *c)
{
	struct worker	*w = c->c_w;

	if (c->c_pipewait) {		/* the response is done: read on */
		c->c_pipewait = 0;
		conn_reading(c, 1);
	}
	if (!c->c_keepalive || w->w_stopping || c->c_eof) {
		c->c_state = CONN_CLOSING;
		conn_timer(c, w->w_tv_send);
		return;
	}
	c->c_state = CONN_IDLE;
	conn_timer(c, w->w_tv_idle);
	if (evbuffer_get_length(c->c_out) > SERVER_MAX_OUTPUT) {
		c->c_paused = 1;
		conn_reading(c, 0);
	}
}

/* Begin a new request on the connection. */
static void
conn_begin(struct conn *c)
{
	conn_idle_remove(c);
	c->c_state = CONN_HEADERS;
	c->c_start_us = util_mono_us();
	c->c_start_ms = util_now_ms();
	c->c_rate_ms = 0;
	c->c_route = 0;
	c->c_head = 0;
	c->c_minor = 1;
	c->c_keepalive = 0;
	c->c_methodlen = 0;
	c->c_pathlen = 0;
	c->c_reqidlen = 0;
	c->c_extralen = 0;
	c->c_identlen = 0;
	c->c_keyid[0] = '\0';
	c->c_ident_log[0] = '\0';
	c->c_scheme = NULL;
	c->c_hold_until = 0;
	c->c_hold_final = 0;
	http_msg_init(&c->c_msg);
	conn_timer(c, c->c_w->w_tv_header);
}

/* Work through the input as far as it goes. */
void
conn_process(struct conn *c)
{
	struct evbuffer	*in = c->c_in;

	while (!c->c_paused && !c->c_upwait) {
		switch (c->c_state) {
		case CONN_IDLE:
			if (evbuffer_get_length(in) == 0)
				return;
			conn_begin(c);
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
void
conn_reading(struct conn *c, int on)
{
	on = on && !c->c_eof && !c->c_paused && !c->c_upwait &&
	    !c->c_pipewait && c->c_state != CONN_AUTHWAIT;
	if (on && !c->c_reading)
		event_add(c->c_ev_read, NULL);
	else if (!on && c->c_reading)
		event_del(c->c_ev_read);
	c->c_reading = on;
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
	shutdown(c->c_fd, SHUT_WR);
	if (c->c_eof) {
		c->c_state = CONN_DEAD;
		return;
	}
	c->c_state = CONN_LINGER;
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
void
conn_flush(struct conn *c)
{
	int	 n;

	while (c->c_state != CONN_DEAD) {
		while (evbuffer_get_length(c->c_out) > 0) {
			n = evbuffer_write(c->c_out, c->c_fd);
			if (n > 0)
				continue;
			if (n == -1 && (errno == EAGAIN || errno == EINTR))
				break;
			c->c_state = CONN_DEAD;		/* EPIPE, ECONNRESET */
			return;
		}
		if (evbuffer_get_length(c->c_out) > 0) {
			if (!c->c_writing)
				event_add(c->c_ev_write, c->c_w->w_tv_send);
			c->c_writing = 1;
			return;
		}
		if (c->c_writing)
			event_del(c->c_ev_write);
		c->c_writing = 0;
		if (c->c_state == CONN_CLOSING) {
			conn_linger(c);
			return;
		}
		if (c->c_up != NULL) {
			/* A proxied response goes on once the client reads. */
			if (!proxy_client_drained(c))
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
		/* A half-closed client still gets its answer, then the end. */
		c->c_keepalive = 0;
		break;
	case CONN_IDLE:
	case CONN_HEADERS:
	case CONN_BODY:
	case CONN_DISCARD:
		/* Answers already queued still go out. */
		if (evbuffer_get_length(c->c_out) > 0) {
			c->c_keepalive = 0;
			c->c_state = CONN_CLOSING;
			conn_timer(c, c->c_w->w_tv_send);
			break;
		}
		/* FALLTHROUGH */
	default:
		c->c_state = CONN_DEAD;
		break;
	}
}

/*
 * Another party (the upstream side) changed the connection's state: serve
 * what can be served, write what is queued, free it if it is done.
 */
void
conn_kick(struct conn *c)
{
	if (c == NULL)
		return;
	if (c->c_state != CONN_DEAD) {
		conn_process(c);
		conn_flush(c);
	}
	if (c->c_state == CONN_DEAD)
		conn_free(c);
}

/*
 * Readable: one readv() of up to SERVER_READ_SIZE bytes, then serve what
 * it completed.  The space is reserved as two vectors, the room left in
 * the last chain and a new chain: with one vector libevent may instead
 * move a partly received request head within its chain or copy it to a
 * larger one, leaving behind a copy of its credentials that nothing wipes.
 */
static void
conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn		*c = arg;
	struct evbuffer_iovec	 v[2];
	struct iovec		 iov[2];
	size_t			 want = SERVER_READ_SIZE, left;
	ssize_t			 n;
	int			 i, nv;

	if ((nv = evbuffer_reserve_space(c->c_in, SERVER_READ_SIZE, v,
	    2)) < 1) {
		conn_free(c);
		return;
	}
	for (i = 0; i < nv; i++) {
		iov[i].iov_base = v[i].iov_base;
		iov[i].iov_len = v[i].iov_len < want ? v[i].iov_len : want;
		want -= iov[i].iov_len;
	}
	n = readv(fd, iov, nv);
	if (n > 0) {
		for (i = 0, left = (size_t)n; i < nv; i++) {
			v[i].iov_len = iov[i].iov_len < left ? iov[i].iov_len :
			    left;
			left -= v[i].iov_len;
		}
		evbuffer_commit_space(c->c_in, v, nv);
		conn_process(c);
	} else if (n == 0)
		conn_eof(c);
	else if (errno != EAGAIN && errno != EINTR)
		c->c_state = CONN_DEAD;
	if (c->c_state != CONN_DEAD)
		conn_flush(c);
	if (c->c_state == CONN_DEAD)
		conn_free(c);
}

/* Writable again, or no progress for send_timeout. */
static void
conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn	*c = arg;

	if (what & EV_TIMEOUT)
		c->c_state = CONN_DEAD;
	else
		conn_flush(c);
	if (c->c_state == CONN_DEAD)
		conn_free(c);
}

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
		break;		/* the upstream's timers rule */
	case CONN_AUTHWAIT:
		conn_hold_check(c);
		break;
	default:
		/* Idle keep-alive, stuck write, linger or discard: close. */
		c->c_state = CONN_DEAD;
		break;
	}
	if (c->c_state == CONN_DEAD)
		conn_free(c);
}

/* Close and free a connection; the worker may now accept again or exit. */
void
conn_free(struct conn *c)
{
	struct worker	*w = c->c_w;

	proxy_detach(c);
	conn_idle_remove(c);
	TAILQ_REMOVE(&w->w_conns, c, c_entry);
	w->w_nconns--;
	SHM_SUB(&w->w_stats->sw_active, 1);
	event_free(c->c_timer);
	event_free(c->c_ev_read);
	event_free(c->c_ev_write);
	/* Unread input (a cut head, pipelined requests) may hold secrets. */
	conn_wipe_drain(c->c_in, evbuffer_get_length(c->c_in));
	if (c->c_pending != NULL)
		conn_wipe_drain(c->c_pending, evbuffer_get_length(c->c_pending));
	evbuffer_free(c->c_in);
	evbuffer_free(c->c_out);
	close(c->c_fd);
	if (c->c_pending != NULL)
		evbuffer_free(c->c_pending);
	conn_admin_free(c);
	conn_hold_release(c);
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

/* The connection's memory, events and buffers; NULL if out of memory. */
static struct conn *
conn_alloc(struct worker *w, int fd)
{
	struct conn	*c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return (NULL);
	c->c_w = w;
	c->c_fd = fd;
	c->c_timer = evtimer_new(w->w_base, conn_timer_cb, c);
	c->c_ev_read = event_new(w->w_base, fd, EV_READ | EV_PERSIST,
	    conn_read_cb, c);
	c->c_ev_write = event_new(w->w_base, fd, EV_WRITE | EV_PERSIST,
	    conn_write_cb, c);
	c->c_in = evbuffer_new();
	c->c_out = evbuffer_new();
	if (c->c_timer == NULL || c->c_ev_read == NULL ||
	    c->c_ev_write == NULL || c->c_in == NULL || c->c_out == NULL) {
		if (c->c_timer != NULL)
			event_free(c->c_timer);
		if (c->c_ev_read != NULL)
			event_free(c->c_ev_read);
		if (c->c_ev_write != NULL)
			event_free(c->c_ev_write);
		if (c->c_in != NULL)
			evbuffer_free(c->c_in);
		if (c->c_out != NULL)
			evbuffer_free(c->c_out);
		free(c);
		return (NULL);
	}
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
			evconnlistener_enable(w->w_listeners[i]);
		else
			evconnlistener_disable(w->w_listeners[i]);
	}
	w->w_accepting = on;
}

/*
 * At max_connections, make room for the connection being accepted: close
 * the one that has waited longest for a request (the head of w_idle).
 * nginx does the same when worker_connections run out, rather than leave
 * new clients waiting while idle keep-alive connections hold every slot.
 */
static void
server_reuse(struct worker *w)
{
	struct conn	*c;

	if (w->w_nconns < w->w_conf->c_max_connections ||
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

/* A new connection from a listener. */
static void
server_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct worker	*w = arg;
	struct conn	*c;
	int		 one = 1;
	const void	*addr;

	server_reuse(w);
	if ((c = conn_alloc(w, fd)) == NULL) {
		log_warnx("out of memory accepting a connection");
		close(fd);
		return;
	}
	addr = sa->sa_family == AF_INET6 ?
	    (const void *)&((struct sockaddr_in6 *)sa)->sin6_addr :
	    (const void *)&((struct sockaddr_in *)sa)->sin_addr;
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
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->c_admin = l == w->w_admin_listener;
	TAILQ_INSERT_TAIL(&w->w_conns, c, c_entry);
	w->w_nconns++;
	SHM_ADD(&w->w_stats->sw_accepted, 1);
	SHM_ADD(&w->w_stats->sw_active, 1);

	conn_reading(c, 1);
	c->c_state = CONN_IDLE;
	/* The first request gets header_timeout, as in nginx. */
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
	struct worker	*w = arg;
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
	size_t		 i;

	if (w->w_stopping)
		return;
	w->w_stopping = 1;
	for (i = 0; i < w->w_nlisteners; i++)
		evconnlistener_free(w->w_listeners[i]);
	w->w_nlisteners = 0;
	w->w_accepting = 0;
	if (w->w_accept_timer != NULL)
		evtimer_del(w->w_accept_timer);
	TAILQ_FOREACH(c, &w->w_conns, c_entry) {
		if (c->c_state == CONN_IDLE)
			conn_timer(c, w->w_tv_stopidle);
		else if (c->c_state == CONN_BODY)
			c->c_keepalive = 0;	/* its answer says so */
	}
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
	w->w_rate.ra_refused = &w->w_env->se_shm->sh_rate_refused[0][0];
	ae->ae_version = PACKAGE_VERSION;
	ae->ae_fails = shm_failtable(w->w_env->se_shm);
	secret_json_wipe();	/* admin bodies may hold secrets */
	return (0);
}

/* Create the loop, timers, signals and listeners. */
static int
server_setup(struct worker *w)
{
	static const int	 sigs[] = { SIGTERM, SIGQUIT, SIGUSR1 };
	struct config		*conf = w->w_conf;
	char			 err[256];
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
	if (proxy_init(w) == -1)
		return (-1);
	if (server_keys_setup(w) == -1)
		return (-1);
	if (conf->c_access_log != NULL && (w->w_alog =
	    accesslog_open(conf->c_access_log, err, sizeof(err))) == NULL) {
		log_warnx("%s", err);
		return (-1);
	}
	for (i = 0; i < w->w_env->se_nlfds && i < SERVER_MAX_LISTENERS; i++) {
		w->w_listeners[i] = evconnlistener_new(w->w_base,
		    server_accept_cb, w, LEV_OPT_CLOSE_ON_FREE, 0,
		    w->w_env->se_lfds[i]);
		if (w->w_listeners[i] == NULL)
			return (-1);
		evconnlistener_set_error_cb(w->w_listeners[i],
		    server_accept_error_cb);
		w->w_nlisteners++;
		if (conf->c_admin && i == conf->c_nlisten)
			w->w_admin_listener = w->w_listeners[i];
	}
	w->w_accepting = 1;
	return (0);
}

/* Free everything the worker owns (connections included). */
static void
server_teardown(struct worker *w)
{
	struct conn	*c;
	size_t		 i;

	while ((c = TAILQ_FIRST(&w->w_conns)) != NULL) {
		w->w_stopping = 1;	/* no loopexit bookkeeping needed */
		conn_free(c);
	}
	for (i = 0; i < w->w_nlisteners; i++)
		evconnlistener_free(w->w_listeners[i]);
	for (i = 0; i < 3; i++)
		if (w->w_sigs[i] != NULL)
			event_free(w->w_sigs[i]);
	if (w->w_stop_timer != NULL)
		event_free(w->w_stop_timer);
	if (w->w_parent_timer != NULL)
		event_free(w->w_parent_timer);
	if (w->w_accept_timer != NULL)
		event_free(w->w_accept_timer);
	proxy_teardown(w);
	jwtauth_free(w->w_jwt);		/* wipes the cached identities */
	w->w_jwt = NULL;
	journal_close(&w->w_journal);
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
