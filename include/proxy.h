/*
 * Reverse proxying to http:// upstreams: the worker's keep-alive pool of
 * upstream connections and the upstream side of each exchange.
 *
 * A proxied request goes out as soon as its header section is parsed; its
 * body streams to the upstream as it arrives, and the response streams to
 * the client as it arrives.  Neither is ever buffered whole: each direction
 * stops reading its producer while more than SERVER_MAX_OUTPUT bytes wait
 * for the consumer.
 */
#ifndef KEYGATE_PROXY_H
#define KEYGATE_PROXY_H

#include <stddef.h>

struct conn;
struct upstream;
struct worker;

/* One pool per upstream for the worker; -1 if out of memory. */
int	 proxy_init(struct worker *);
void	 proxy_teardown(struct worker *);

/*
 * Start forwarding the request whose header section c->c_msg has just
 * parsed (its bytes are still at the front of c->c_in; they are drained
 * here).  Answers 502 itself if no connection can be had.
 */
void	 proxy_start(struct conn *, struct upstream *);

/* Move n body bytes from the front of c->c_in to the upstream. */
void	 proxy_body(struct conn *, size_t);

/* http_data_cb for a chunked request body (arg: the conn): re-chunked. */
void	 proxy_body_chunk(void *, const char *, size_t);

/* Send what proxy_body_chunk() queued. */
void	 proxy_body_flush(struct conn *);

/* The request body has been read whole. */
void	 proxy_body_done(struct conn *);

/*
 * The client's output drained: the upstream may be read again.  Returns 1
 * if that queued more output for the client.
 */
int	 proxy_client_drained(struct conn *);

/* Has the upstream's response begun to go to the client? */
int	 proxy_response_started(const struct conn *);

/* The client connection is going away: drop its upstream side. */
void	 proxy_detach(struct conn *);

#endif /* KEYGATE_PROXY_H */
