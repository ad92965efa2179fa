/*
 * A worker's admin threads: admin requests that may write the key store
 * run admin_handle() on one of a few threads, so that the wait for the key
 * store lock (up to ADMIN_LOCK_TIMEOUT) and for the disk (journal_sync)
 * never stalls the worker's event loop and the data-plane connections on
 * it.
 *
 * A job carries copies of everything admin_handle() reads (target, the
 * Authorization value, the body, the client's address, the times), so the
 * connection that asked may end meanwhile.  The loop thread fills a job and
 * pushes it (adminq_push); a thread answers it into aj_rs and posts it to
 * the done list, waking the loop through an eventfd; the loop's callback
 * then calls done(job, arg) for each finished job, in the order they
 * finished, and frees it after done returns (wiping the copies and the
 * answer: they may hold the admin token, a secret sent to /v1/verify or a
 * new key's secret).  aj_conn belongs to the loop thread alone: the
 * threads never read it.
 */
#ifndef KEYGATE_ADMINQ_H
#define KEYGATE_ADMINQ_H

#include <sys/queue.h>

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "admin.h"

#define ADMINQ_THREADS		8	/* admin threads per worker */
#define ADMINQ_STOP_MS		2000	/* a stopping worker waits for them */

struct adminq_job {
	TAILQ_ENTRY(adminq_job)	 aj_entry;
	void			*aj_conn;	/* loop thread only; NULL: gone */
	struct admin_request	 aj_rq;		/* points into the copies */
	struct admin_response	 aj_rs;		/* the answer, once done */
	char			*aj_target;	/* path and query */
	char			*aj_h[5];	/* Authorization, Idempotency- */
						/* Key, Cookie, X-CSRF-Token, */
						/* If-None-Match, or NULLs */
	char			*aj_body;	/* NULL for none */
	size_t			 aj_bodylen;
	uint8_t			 aj_ip[16];
	char			 aj_client[64];
};

struct adminq;

/*
 * Start nthreads threads answering with env on base's loop; done(job, arg)
 * is called on that loop for each finished job.  The queue, or NULL with
 * a reason in cause.
 */
struct adminq	*adminq_start(struct event_base *, const struct admin_env *,
		    int, void (*)(struct adminq_job *, void *), void *,
		    const char **);

/*
 * A job for the request rq: copies of what it points to (the header
 * values wiped when freed), with the times taken now.  NULL if out of
 * memory.
 */
struct adminq_job *adminq_job_new(const struct admin_request *);

/* Queue job (now the queue's until done is called with it). */
void		 adminq_push(struct adminq *, struct adminq_job *);

/*
 * Stop (the loop's connections are all freed by then): jobs not started
 * yet are dropped, the threads finish the ones running and exit; wait up
 * to wait_ms for them.  Finished jobs are freed without done being
 * called (their connections are gone by then).  If a thread is still
 * stuck past wait_ms, it is logged and the queue is left to the process's
 * exit.  The wait is short because nothing depends on it: the worker's
 * loop already waited (up to shutdown_timeout) for every connection with
 * a job to be answered, and a write cut by the exit is like a worker
 * killed: a line not yet synced was not acknowledged, and a thread
 * holding the key store lock dies with its process, whose pid the master
 * then finds in the lock and repairs (keystore.h).  Returns the number
 * of threads still stuck (0: all gone, what they used may be freed).
 */
int		 adminq_stop(struct adminq *, int);

#endif /* KEYGATE_ADMINQ_H */
