/*
 * Reverse proxying to http:// and https:// upstreams: the worker's
 * keep-alive pool of upstream connections and the upstream side of each
 * exchange.
 *
 * A proxied request goes out as soon as its header section is parsed; its
 * body streams to the upstream as it arrives, and the response streams to
 * the client as it arrives.  Neither is ever buffered whole: each direction
 * stops reading its producer while more than IO_MAX_OUTPUT bytes wait for
 * the consumer.
 *
 * The proxy knows its client only through struct proxy_request: what the
 * upstream needs of the request, the client's output buffer the response
 * goes to, and callbacks (proxy_client_ops) with an opaque pointer.  The
 * client (server.c) holds the exchange as an opaque struct upconn.
 */
#ifndef KEYGATE_PROXY_H
#define KEYGATE_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "forward.h"
#include "http.h"

struct config;
struct event_base;
struct evbuffer;
struct upstream;

struct proxy;		/* a worker's upstream side: a pool per upstream */

/*
 * The longest Upgrade value that is passed on (proxy_upgradable()); a
 * longer one is not an upgrade.
 */
#define PROXY_UPGRADE_MAX	128
struct upconn;		/* one exchange with an upstream */

/*
 * What the proxy asks of its client.  Each upstream callback does its work
 * first and calls pc_kick last; pc_kick may free the client, and with it
 * (proxy_detach()) the exchange, so nothing touches either afterwards.
 * After pc_refuse or pc_done the exchange is over: the client forgets it.
 */
struct proxy_client_ops {
	/* Pause (0) or resume (1) reading the client: body back-pressure. */
	void	(*pc_reading)(void *, int);
	/*
	 * Will the client connection be kept after this response?  close
	 * set: no (the response ends with the connection, or the request
	 * body was not all read).  Returns the decision.
	 */
	int	(*pc_keepalive)(void *, int);
	/* Failed before a response: answer status, code, message yourself. */
	void	(*pc_refuse)(void *, int, const char *, const char *);
	/* The response (status, bytes queued) is done, or was cut short. */
	void	(*pc_done)(void *, int, uint64_t);
	/* The client's state may have changed: serve, write, free if done. */
	void	(*pc_kick)(void *);
	/*
	 * The 101 head is queued: from now on the client's bytes go to
	 * proxy_tunnel_send(), until pc_done.
	 */
	void	(*pc_tunnel)(void *);
};

/*
 * The request as the client hands it to proxy_start().  pq_msg is read
 * during proxy_start() only; the other pointers stay valid until the
 * exchange is over.
 */
struct proxy_request {
	const struct http_msg	*pq_msg;	/* its parsed header section */
	enum http_body		 pq_body;	/* the body that follows */
	int			 pq_minor;	/* the client's HTTP/1.x */
	struct forward_added	 pq_fwd;	/* the headers keygate adds */
	const char		*pq_extra;	/* response headers (RateLimit-*) */
	size_t			 pq_extralen;
	int			 pq_upgrade;	/* HTTP_F_UPGRADE, no body: ask */
						/* for hm_upgrade */
	int			 pq_rate;	/* a limit decided: the */
						/* upstream's RateLimit-* go */
	struct evbuffer		*pq_out;	/* the client's output */
	const struct proxy_client_ops *pq_ops;
	void			*pq_arg;
};

struct stats_slot;
struct upstream_server;

/*
 * A non-blocking socket (TCP_NODELAY) with a connect() to us under way or
 * done; -1 with errno set.  The proxy's and the health checker's.
 */
int		 proxy_socket(const struct upstream_server *);

/*
 * Did a connect fail for a reason of this process's (memory, descriptors,
 * local ports), which says nothing about the server?
 */
int		 proxy_local_errno(int);

/*
 * The worker's upstream side for conf's upstreams in base; scanmax and
 * limits bound a response head as they bound a request's.  Attempts are
 * counted in ss (keygate_upstream_*); health is the shared segment's
 * health check words (health.h).  NULL if out of memory.
 */
struct proxy	*proxy_new(struct event_base *, const struct config *,
		    const struct http_limits *, size_t, struct stats_slot *,
		    const uint64_t *);
void		 proxy_free(struct proxy *);

/* The worker is stopping: connections are no longer pooled. */
void		 proxy_stopping(struct proxy *);

/*
 * Start forwarding the request pq to u: its head goes out at once (the
 * caller drains the head bytes from its input afterwards).  NULL when no
 * connection can be had: the caller answers 502 with *why, a sentence.
 */
struct upconn	*proxy_start(struct proxy *, struct upstream *,
		    const struct proxy_request *, const char **);

/* Move n body bytes from the front of in to the upstream. */
void		 proxy_body(struct upconn *, struct evbuffer *, size_t);

/* http_data_cb for a chunked request body (arg: the upconn): re-chunked. */
void		 proxy_body_chunk(void *, const char *, size_t);

/* Send what proxy_body_chunk() queued. */
void		 proxy_body_flush(struct upconn *);

/* The request body has been read whole. */
void		 proxy_body_done(struct upconn *);

/*
 * The client's output drained: the upstream may be read again.  Returns 1
 * if that queued more output for the client.
 */
int		 proxy_client_drained(struct upconn *);

/*
 * May this request (HTTP_F_UPGRADE) be upgraded?  Not to h2c (RFC 9113
 * 3.1 dropped it; a tunnel of h2c streams would carry requests no route
 * checked), and not with an Upgrade value longer than PROXY_UPGRADE_MAX.
 */
int		 proxy_upgradable(const struct http_msg *);

/* Bytes queued for the client so far. */
uint64_t	 proxy_sent(const struct upconn *);

/* A tunnel (after pc_tunnel): move the client's bytes in to the upstream. */
void		 proxy_tunnel_send(struct upconn *, struct evbuffer *);

/* A tunnel: the client sent EOF; shut the upstream's write side. */
void		 proxy_tunnel_eof(struct upconn *);

/* Has the upstream's response begun to go to the client? */
int		 proxy_response_started(const struct upconn *);

/* The client connection is going away: drop the exchange. */
void		 proxy_detach(struct upconn *);

#endif /* KEYGATE_PROXY_H */
