/*
 * The built-in "echo" upstream: it answers 200 with a JSON object saying
 * what a real upstream would have received: method, path, query, the
 * headers keygate would forward (X-Forwarded-For, X-Forwarded-Proto,
 * X-Request-Id and the identity headers included), and the size of
 * the body.
 */
#ifndef KEYGATE_ECHO_H
#define KEYGATE_ECHO_H

#include <stddef.h>
#include <stdint.h>

#include "forward.h"
#include "http.h"

struct evbuffer;

/*
 * Append the JSON object up to (not including) the body size to out: the
 * body is only known once it has been read, and msg only lives until then.
 * Arguments: the headers keygate adds and the forwarding policy (see
 * forward.h).
 */
int	 echo_begin(struct evbuffer *, const struct http_msg *,
	    const struct forward_added *, const struct forward_policy *);

/* Append the body size and close the object. */
int	 echo_finish(struct evbuffer *, uint64_t);

#endif /* KEYGATE_ECHO_H */
