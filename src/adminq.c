/*
 * A worker's admin threads (see adminq.h): a FIFO of jobs guarded by one
 * mutex, ADMINQ_THREADS threads taking from it, and a done list the loop
 * reads when an eventfd says there is something in it.
 *
 * Why threads are safe here (what admin_handle() reaches):
 *   - the key store: readers are lock-free (made for concurrent processes,
 *     so for threads too); writers take admin.c's process mutex and then
 *     the key store lock, whose owner is the pid;
 *   - the journal: appends under that lock, group commit under the
 *     handle's own mutex (journal.c);
 *   - the failed-token table and the counters read by /metrics and
 *     /v1/status live in shared memory and are atomic words already;
 *   - jansson: separate objects per thread; its hash seed is set before
 *     the first thread starts (json_object_seed), and secret_json_wipe()
 *     set the allocator at worker start, before that too;
 *   - OpenSSL 3 (RAND_bytes, SHA-256): thread-safe; secret_digest()'s
 *     cached context is per thread (freed by secret_thread_end());
 *   - log.c: a formatted line per write(2), gmtime_r, strerror_r.
 * The worker's JWT state (jwtauth.c, fed by the loop) is not: server.c
 * sends only key store writes here, never /v1/verify.  The threads block
 * every signal: libevent's signal events belong to the loop thread.
 */

#include <sys/types.h>
#include <sys/eventfd.h>
#include <sys/queue.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "admin.h"
#include "adminq.h"
#include "log.h"
#include "secret.h"
#include "util.h"

TAILQ_HEAD(adminq_jobs, adminq_job);

struct adminq {
	const struct admin_env	*q_env;
	pthread_mutex_t		 q_mtx;		/* guards what follows */
	pthread_cond_t		 q_cv;		/* a job queued, or stopping */
	struct adminq_jobs	 q_todo;
	struct adminq_jobs	 q_done;
	int			 q_stopping;
	int			 q_efd;		/* eventfd: jobs are done */
	struct event		*q_ev;
	pthread_t		 q_threads[ADMINQ_THREADS];
	int			 q_nthreads;
	void			(*q_done_cb)(struct adminq_job *, void *);
	void			*q_arg;
};

/* Wipe and free a job and its answer. */
static void
adminq_job_free(struct adminq_job *j)
{
	size_t	 i;

	if (j == NULL)
		return;
	admin_response_free(&j->aj_rs);
	free(j->aj_target);
	/* The admin token, a session, what decrypts a secret (idem.h). */
	for (i = 0; i < nitems(j->aj_h); i++)
		secret_strfree(j->aj_h[i]);
	secret_free(j->aj_body, j->aj_bodylen);
	free(j);
}

/* A copy of s[0..len) into *out, and its length; NULL s: none.  0 or -1. */
static int
adminq_dup(const char *s, size_t len, char **out, const char **p,
    size_t *plen)
{
	if (s == NULL)
		return (0);
	if ((*out = strndup(s, len)) == NULL)
		return (-1);
	*p = *out;
	*plen = strlen(*out);
	return (0);
}

/* A job for a request: see adminq.h. */
struct adminq_job *
adminq_job_new(const struct admin_request *rq)
{
	struct adminq_job	*j;
	struct admin_request	*aq;
	size_t			 iplen = rq->aq_iplen;

	if ((j = calloc(1, sizeof(*j))) == NULL)
		return (NULL);
	aq = &j->aj_rq;
	aq->aq_mbit = rq->aq_mbit;
	aq->aq_tls = rq->aq_tls;
	if ((j->aj_target = malloc(rq->aq_pathlen + 1 + rq->aq_querylen +
	    1)) == NULL ||
	    adminq_dup(rq->aq_auth, rq->aq_authlen, &j->aj_h[0],
	    &aq->aq_auth, &aq->aq_authlen) == -1 ||
	    adminq_dup(rq->aq_idem, rq->aq_idemlen, &j->aj_h[1],
	    &aq->aq_idem, &aq->aq_idemlen) == -1 ||
	    adminq_dup(rq->aq_cookie, rq->aq_cookielen, &j->aj_h[2],
	    &aq->aq_cookie, &aq->aq_cookielen) == -1 ||
	    adminq_dup(rq->aq_csrf, rq->aq_csrflen, &j->aj_h[3],
	    &aq->aq_csrf, &aq->aq_csrflen) == -1 ||
	    adminq_dup(rq->aq_inm, rq->aq_inmlen, &j->aj_h[4],
	    &aq->aq_inm, &aq->aq_inmlen) == -1 ||
	    (rq->aq_bodylen > 0 && (j->aj_body = malloc(rq->aq_bodylen)) ==
	    NULL)) {
		adminq_job_free(j);
		return (NULL);
	}
	memcpy(j->aj_target, rq->aq_path, rq->aq_pathlen);
	j->aj_target[rq->aq_pathlen] = '\0';
	aq->aq_path = j->aj_target;
	aq->aq_pathlen = rq->aq_pathlen;
	if (rq->aq_query != NULL) {
		memcpy(j->aj_target + rq->aq_pathlen + 1, rq->aq_query,
		    rq->aq_querylen);
		j->aj_target[rq->aq_pathlen + 1 + rq->aq_querylen] = '\0';
		aq->aq_query = j->aj_target + rq->aq_pathlen + 1;
		aq->aq_querylen = rq->aq_querylen;
	}
	if (rq->aq_bodylen > 0)
		memcpy(j->aj_body, rq->aq_body, rq->aq_bodylen);
	j->aj_bodylen = rq->aq_bodylen;
	aq->aq_body = j->aj_body != NULL ? j->aj_body : "";
	aq->aq_bodylen = rq->aq_bodylen;
	if (rq->aq_ip == NULL || iplen > sizeof(j->aj_ip))
		iplen = 0;
	if (iplen > 0)
		memcpy(j->aj_ip, rq->aq_ip, iplen);
	aq->aq_ip = j->aj_ip;
	aq->aq_iplen = iplen;
	snprintf(j->aj_client, sizeof(j->aj_client), "%s",
	    rq->aq_client != NULL ? rq->aq_client : "");
	aq->aq_client = j->aj_client;
	aq->aq_now = util_now_ms();
	aq->aq_mono = util_mono_us() / 1000;
	return (j);
}

/* A thread: answer jobs until stopped with nothing left to do. */
static void *
adminq_thread(void *arg)
{
	struct adminq		*q = arg;
	struct adminq_job	*j;
	uint64_t		 one = 1;
	int			 wake;

	pthread_mutex_lock(&q->q_mtx);
	for (;;) {
		while ((j = TAILQ_FIRST(&q->q_todo)) == NULL &&
		    !q->q_stopping)
			pthread_cond_wait(&q->q_cv, &q->q_mtx);
		if (j == NULL)
			break;
		TAILQ_REMOVE(&q->q_todo, j, aj_entry);
		pthread_mutex_unlock(&q->q_mtx);

		admin_handle(q->q_env, &j->aj_rq, &j->aj_rs);

		pthread_mutex_lock(&q->q_mtx);
		wake = TAILQ_EMPTY(&q->q_done);
		TAILQ_INSERT_TAIL(&q->q_done, j, aj_entry);
		/* One write per batch: the loop takes the whole list. */
		if (wake && write(q->q_efd, &one, sizeof(one)) == -1 &&
		    errno != EAGAIN)
			log_warn("%s: eventfd", __func__);
	}
	pthread_mutex_unlock(&q->q_mtx);
	secret_thread_end();
	return (NULL);
}

/* The loop: jobs are done; hand each to the callback, then free it. */
static void
adminq_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct adminq		*q = arg;
	struct adminq_jobs	 done;
	struct adminq_job	*j;
	uint64_t		 n;

	(void)read(q->q_efd, &n, sizeof(n));
	TAILQ_INIT(&done);
	pthread_mutex_lock(&q->q_mtx);
	TAILQ_CONCAT(&done, &q->q_done, aj_entry);
	pthread_mutex_unlock(&q->q_mtx);
	while ((j = TAILQ_FIRST(&done)) != NULL) {
		TAILQ_REMOVE(&done, j, aj_entry);
		q->q_done_cb(j, q->q_arg);
		adminq_job_free(j);
	}
}

/* Start the threads: see adminq.h. */
struct adminq *
adminq_start(struct event_base *base, const struct admin_env *env,
    int nthreads, void (*done)(struct adminq_job *, void *), void *arg,
    const char **cause)
{
	struct adminq	*q;
	sigset_t	 all, old;
	int		 i;

	if (nthreads < 1 || nthreads > ADMINQ_THREADS)
		nthreads = ADMINQ_THREADS;
	if ((q = calloc(1, sizeof(*q))) == NULL) {
		*cause = "out of memory";
		return (NULL);
	}
	q->q_efd = -1;
	q->q_env = env;
	q->q_done_cb = done;
	q->q_arg = arg;
	TAILQ_INIT(&q->q_todo);
	TAILQ_INIT(&q->q_done);
	pthread_mutex_init(&q->q_mtx, NULL);
	pthread_cond_init(&q->q_cv, NULL);
	if ((q->q_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1) {
		*cause = "eventfd failed";
		goto fail;
	}
	q->q_ev = event_new(base, q->q_efd, EV_READ | EV_PERSIST,
	    adminq_done_cb, q);
	if (q->q_ev == NULL || event_add(q->q_ev, NULL) == -1) {
		*cause = "out of memory";
		goto fail;
	}
	/* Before any thread: jansson's hash seed is then set once. */
	json_object_seed(0);
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (i = 0; i < nthreads; i++) {
		if (pthread_create(&q->q_threads[i], NULL, adminq_thread,
		    q) != 0)
			break;
		q->q_nthreads++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (q->q_nthreads == 0) {
		*cause = "no admin thread could be started";
		goto fail;
	}
	return (q);
fail:
	if (q->q_ev != NULL)
		event_free(q->q_ev);
	if (q->q_efd != -1)
		close(q->q_efd);
	pthread_cond_destroy(&q->q_cv);
	pthread_mutex_destroy(&q->q_mtx);
	free(q);
	return (NULL);
}

/* Queue a job for the threads. */
void
adminq_push(struct adminq *q, struct adminq_job *j)
{
	pthread_mutex_lock(&q->q_mtx);
	TAILQ_INSERT_TAIL(&q->q_todo, j, aj_entry);
	pthread_cond_signal(&q->q_cv);
	pthread_mutex_unlock(&q->q_mtx);
}

/* Stop the threads, waiting up to wait_ms for them: see adminq.h. */
int
adminq_stop(struct adminq *q, int wait_ms)
{
	struct adminq_jobs	 todo;
	struct adminq_job	*j;
	struct timespec		 ts;
	int			 i, stuck = 0;

	if (q == NULL)
		return (0);
	/* Jobs not started yet: their connections are gone, skip them. */
	TAILQ_INIT(&todo);
	pthread_mutex_lock(&q->q_mtx);
	TAILQ_CONCAT(&todo, &q->q_todo, aj_entry);
	q->q_stopping = 1;
	pthread_cond_broadcast(&q->q_cv);
	pthread_mutex_unlock(&q->q_mtx);
	while ((j = TAILQ_FIRST(&todo)) != NULL) {
		TAILQ_REMOVE(&todo, j, aj_entry);
		adminq_job_free(j);
	}
	util_deadline(CLOCK_REALTIME, wait_ms, &ts);
	for (i = 0; i < q->q_nthreads; i++)
		if (pthread_timedjoin_np(q->q_threads[i], NULL, &ts) != 0)
			stuck++;
	event_free(q->q_ev);
	q->q_ev = NULL;
	if (stuck > 0) {
		/* Still using q: leave it to the process's exit. */
		log_warnx("%d admin thread(s) still busy after %d ms; exiting "
		    "without them", stuck, wait_ms);
		return (stuck);
	}
	while ((j = TAILQ_FIRST(&q->q_done)) != NULL) {
		TAILQ_REMOVE(&q->q_done, j, aj_entry);
		adminq_job_free(j);
	}
	close(q->q_efd);
	pthread_cond_destroy(&q->q_cv);
	pthread_mutex_destroy(&q->q_mtx);
	free(q);
	return (0);
}
