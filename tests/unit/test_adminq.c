/*
 * Unit tests for the admin threads (adminq.c): jobs copy what they need,
 * every job pushed comes back once through the loop's callback with its
 * answer, a job whose connection went away (aj_conn NULL) still comes back
 * and is freed, and a stop with jobs pending frees everything.  The
 * answers come from the real admin_handle() on a store in ordinary memory
 * (GET /v1/health needs no token).
 */

#include <sys/types.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "admin.h"
#include "adminq.h"
#include "http.h"
#include "keystore.h"

#define T_JOBS	64

struct fix {
	struct event_base	*f_base;
	struct keystore		 f_ks;
	void			*f_mem;
	struct admin_env	 f_env;
	int			 f_done;	/* callbacks so far */
	int			 f_orphans;	/* ... with aj_conn NULL */
	int			 f_seen[T_JOBS];	/* per tag */
	int			 f_bad;		/* an answer not as expected */
};

static int
setup(void **state)
{
	struct fix	*f;
	size_t		 size = (keystore_size(16, 16) + 63) & ~(size_t)63;

	assert_non_null(f = calloc(1, sizeof(*f)));
	assert_non_null(f->f_base = event_base_new());
	assert_non_null(f->f_mem = aligned_alloc(64, size));
	memset(f->f_mem, 0, size);
	keystore_init(&f->f_ks, f->f_mem, 16, 16, 0x5eed);
	f->f_env.ae_ks = &f->f_ks;
	f->f_env.ae_pid = getpid();
	f->f_env.ae_version = "test";
	*state = f;
	return (0);
}

static int
teardown(void **state)
{
	struct fix	*f = *state;

	event_base_free(f->f_base);
	free(f->f_mem);
	free(f);
	return (0);
}

/* The loop's callback: count, check the answer, note the tag. */
static void
done(struct adminq_job *j, void *arg)
{
	struct fix	*f = arg;
	intptr_t	 tag = (intptr_t)j->aj_conn;

	f->f_done++;
	if (j->aj_conn == NULL) {
		f->f_orphans++;
		return;
	}
	if (tag < 1 || tag > T_JOBS || j->aj_rs.as_status != 200 ||
	    j->aj_rs.as_body == NULL ||
	    strstr(j->aj_rs.as_body, "\"status\":\"ok\"") == NULL)
		f->f_bad++;
	else
		f->f_seen[tag - 1]++;
}

/* Run the loop until n callbacks came (bounded: 10 s). */
static void
run_until(struct fix *f, int n)
{
	struct timeval	 tv = { 0, 10000 };
	int		 i;

	for (i = 0; i < 1000 && f->f_done < n; i++) {
		event_base_loopexit(f->f_base, &tv);
		event_base_dispatch(f->f_base);
	}
	assert_int_equal(f->f_done, n);
}

static struct adminq_job *
health_job(intptr_t tag)
{
	struct adminq_job	*j;

	struct admin_request	 rq;

	memset(&rq, 0, sizeof(rq));
	rq.aq_mbit = HTTP_M_GET;
	rq.aq_path = "/v1/health";
	rq.aq_pathlen = 10;
	rq.aq_ip = "\x7f\0\0\x01";
	rq.aq_iplen = 4;
	rq.aq_client = "127.0.0.1";
	assert_non_null(j = adminq_job_new(&rq));
	j->aj_conn = (void *)tag;
	return (j);
}

/*
 * A job holds copies: path and query, every header value, body, address;
 * the TLS flag.
 */
static void
test_job_copies(void **state)
{
	struct adminq_job	*j;
	char			 target[] = "/v1/keys?limit=5";
	char			 auth[] = "Bearer token";
	char			 idem[] = "3f0c-retry-key";
	char			 cookie[] = "a=b; keygate_session=xyz";
	char			 csrf[] = "csrf-token";
	char			 inm[] = "\"e1\"";
	char			 body[] = "{\"owner\":\"x\"}";
	char			 client[] = "10.0.0.1";
	uint8_t			 ip[4] = { 10, 0, 0, 1 };
	struct admin_request	 rq;
	struct adminq		*q;
	struct fix		*f = *state;
	const char		*cause = NULL;

	memset(&rq, 0, sizeof(rq));
	rq.aq_mbit = HTTP_M_POST;
	rq.aq_path = target;
	rq.aq_pathlen = 8;
	rq.aq_query = target + 9;
	rq.aq_querylen = 7;
#define SET(p, l, v)	do { p = v; l = strlen(v); } while (0)
	SET(rq.aq_auth, rq.aq_authlen, auth);
	SET(rq.aq_idem, rq.aq_idemlen, idem);
	SET(rq.aq_cookie, rq.aq_cookielen, cookie);
	SET(rq.aq_csrf, rq.aq_csrflen, csrf);
	SET(rq.aq_inm, rq.aq_inmlen, inm);
	SET(rq.aq_body, rq.aq_bodylen, body);
#undef SET
	rq.aq_ip = ip;
	rq.aq_iplen = sizeof(ip);
	rq.aq_client = client;
	rq.aq_tls = 1;
	assert_non_null(j = adminq_job_new(&rq));
	memset(target, 'x', sizeof(target) - 1);
	memset(auth, 'x', sizeof(auth) - 1);
	memset(idem, 'x', sizeof(idem) - 1);
	memset(cookie, 'x', sizeof(cookie) - 1);
	memset(csrf, 'x', sizeof(csrf) - 1);
	memset(inm, 'x', sizeof(inm) - 1);
	memset(body, 'x', sizeof(body) - 1);
	memset(client, 'x', sizeof(client) - 1);
	memset(ip, 0, sizeof(ip));
	assert_string_equal(j->aj_rq.aq_cookie, "a=b; keygate_session=xyz");
	assert_int_equal(j->aj_rq.aq_cookielen, 24);
	assert_string_equal(j->aj_rq.aq_csrf, "csrf-token");
	assert_int_equal(j->aj_rq.aq_csrflen, 10);
	assert_string_equal(j->aj_rq.aq_inm, "\"e1\"");
	assert_int_equal(j->aj_rq.aq_tls, 1);
	assert_int_equal(j->aj_rq.aq_mbit, HTTP_M_POST);
	assert_int_equal(j->aj_rq.aq_pathlen, 8);
	assert_memory_equal(j->aj_rq.aq_path, "/v1/keys", 8);
	assert_string_equal(j->aj_rq.aq_query, "limit=5");
	assert_int_equal(j->aj_rq.aq_idemlen, 14);
	assert_memory_equal(j->aj_rq.aq_idem, "3f0c-retry-key", 14);
	assert_int_equal(j->aj_rq.aq_querylen, 7);
	assert_string_equal(j->aj_rq.aq_auth, "Bearer token");
	assert_int_equal(j->aj_rq.aq_authlen, 12);
	assert_int_equal(j->aj_rq.aq_bodylen, 13);
	assert_memory_equal(j->aj_rq.aq_body, "{\"owner\":\"x\"}", 13);
	assert_int_equal(j->aj_rq.aq_iplen, 4);
	assert_memory_equal(j->aj_rq.aq_ip, "\x0a\0\0\x01", 4);
	assert_string_equal(j->aj_rq.aq_client, "10.0.0.1");
	assert_true(j->aj_rq.aq_now > 0);
	/* Freed through a queue: pushed, answered (401: no token), freed. */
	assert_non_null(q = adminq_start(f->f_base, &f->f_env, 2, done, f,
	    &cause));
	j->aj_conn = NULL;
	adminq_push(q, j);
	run_until(f, 1);
	assert_int_equal(f->f_orphans, 1);
	adminq_stop(q, 2000);
}

/*
 * T_JOBS jobs on 8 threads: each answered once, through the loop, with
 * the real health answer; half of them orphaned on the way (the loop
 * sets aj_conn NULL, as conn_free does) come back as orphans.
 */
static void
test_jobs_answered(void **state)
{
	struct fix		*f = *state;
	struct adminq		*q;
	struct adminq_job	*jobs[T_JOBS];
	const char		*cause = NULL;
	int			 i;

	assert_non_null(q = adminq_start(f->f_base, &f->f_env, ADMINQ_THREADS,
	    done, f, &cause));
	for (i = 0; i < T_JOBS; i++) {
		jobs[i] = health_job(i + 1);
		/* Orphan before the push: the threads never look at it. */
		if (i % 2 == 1)
			jobs[i]->aj_conn = NULL;
		adminq_push(q, jobs[i]);
	}
	run_until(f, T_JOBS);
	assert_int_equal(f->f_bad, 0);
	assert_int_equal(f->f_orphans, T_JOBS / 2);
	for (i = 0; i < T_JOBS; i++)
		assert_int_equal(f->f_seen[i], i % 2 == 0 ? 1 : 0);
	adminq_stop(q, 2000);
}

/* A stop with jobs queued and never handed back frees them all. */
static void
test_stop_pending(void **state)
{
	struct fix	*f = *state;
	struct adminq	*q;
	const char	*cause = NULL;
	int		 i;

	assert_non_null(q = adminq_start(f->f_base, &f->f_env, 1, done, f,
	    &cause));
	for (i = 0; i < T_JOBS; i++)
		adminq_push(q, health_job(i + 1));
	/* No loop ran: finished jobs wait on the done list, others queued. */
	adminq_stop(q, 2000);
	assert_int_equal(f->f_done, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_job_copies, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_jobs_answered, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_stop_pending, setup,
		    teardown),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
