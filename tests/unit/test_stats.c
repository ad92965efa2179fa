/* Unit tests for the metrics counters in the shared segment (stats.c). */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "shm.h"
#include "stats.h"

static struct stats_region *
region(void)
{
	struct stats_region	*r = calloc(1, sizeof(*r));

	assert_non_null(r);
	stats_init(r, 1000);
	return (r);
}

static struct stats_total *
total(const struct stats_region *r)
{
	struct stats_total	*t = malloc(sizeof(*t));

	assert_non_null(t);
	assert_int_equal(stats_total(r, t), 0);
	return (t);
}

/* Bucket i holds durations up to its bound, inclusive; above all: +Inf. */
static void
test_buckets(void **state)
{
	assert_int_equal(stats_bucket(0), 0);
	assert_int_equal(stats_bucket(500), 0);
	assert_int_equal(stats_bucket(501), 1);
	assert_int_equal(stats_bucket(1000), 1);
	assert_int_equal(stats_bucket(9999999), STATS_BUCKETS - 1);
	assert_int_equal(stats_bucket(10000000), STATS_BUCKETS - 1);
	assert_int_equal(stats_bucket(10000001), STATS_BUCKETS);
}

/* Names get stable ids; "none" and "other" are reserved. */
static void
test_names(void **state)
{
	struct stats_region	*r = region();
	uint32_t		 a, b, u;
	int			 i;
	char			 name[32];

	assert_string_equal(stats_route_name(r, STATS_ROUTE_NONE), "none");
	assert_string_equal(stats_route_name(r, STATS_ROUTE_OTHER), "other");
	a = stats_route_id(r, "keys");
	b = stats_route_id(r, "store");
	assert_int_equal(a, 2);
	assert_int_equal(b, 3);
	assert_int_equal(stats_route_id(r, "keys"), a);	/* a reload */
	assert_string_equal(stats_route_name(r, a), "keys");
	assert_string_equal(stats_route_name(r, 200), "");
	u = stats_upstream_id(r, "api", "127.0.0.1:9000");
	assert_int_equal(u, 1);
	assert_int_equal(stats_upstream_id(r, "api", "127.0.0.1:9001"), 2);
	assert_int_equal(stats_upstream_id(r, "api", "127.0.0.1:9000"), u);
	assert_string_equal(stats_server_name(r, u), "127.0.0.1:9000");
	for (i = 0; i < STATS_ROUTES + 10; i++) {
		snprintf(name, sizeof(name), "r%d", i);
		(void)stats_route_id(r, name);
	}
	assert_int_equal(stats_route_id(r, "one-too-many"), STATS_ROUTE_OTHER);
	free(r);
}

/* Exact counts per route and status, histogram count = requests. */
static void
test_requests(void **state)
{
	struct stats_region	*r = region();
	struct stats_total	*t;
	struct stats_slot	*s;
	uint64_t		 n;
	uint32_t		 id = stats_route_id(r, "keys");
	int			 i;

	stats_attach(r, 3);
	s = &r->sr_slots[3];
	for (i = 0; i < 5; i++)
		stats_request(s, id, 200, 100);
	stats_request(s, id, 429, 20000);
	stats_request(s, STATS_ROUTE_NONE, 404, 1);
	t = total(r);
	assert_int_equal(t->st_workers, 1);
	assert_int_equal(t->st_routes[id].rt_ncodes, 2);
	assert_int_equal(t->st_routes[id].rt_code[0], 200);
	assert_int_equal(t->st_routes[id].rt_count[0], 5);
	assert_int_equal(t->st_routes[id].rt_code[1], 429);
	assert_int_equal(t->st_routes[id].rt_count[1], 1);
	for (n = 0, i = 0; i <= STATS_BUCKETS; i++)
		n += t->st_routes[id].rt_duration.h_bucket[i];
	assert_int_equal(n, 6);
	assert_int_equal(t->st_routes[id].rt_duration.h_sum_us, 20500);
	assert_int_equal(t->st_routes[id].rt_duration.h_bucket[0], 5);
	assert_int_equal(t->st_routes[STATS_ROUTE_NONE].rt_count[0], 1);
	free(t);
	free(r);
}

/* Beyond STATS_CODES distinct statuses a worker counts into "other". */
static void
test_codes_full(void **state)
{
	struct stats_region	*r = region();
	struct stats_total	*t;
	int			 i;

	assert_int_equal(stats_route_id(r, "a"), 2);
	stats_attach(r, 0);
	for (i = 0; i < STATS_CODES + 3; i++)
		stats_request(&r->sr_slots[0], 2, 200 + i, 0);
	t = total(r);
	assert_int_equal(t->st_routes[2].rt_ncodes, STATS_CODES);
	assert_int_equal(t->st_routes[2].rt_other, 3);
	free(t);
	free(r);
}

/*
 * A worker's counters survive its end: folded into the retired slot, the
 * total is unchanged; gauges are dropped; a new worker in the same slot
 * starts from zero and adds to the total.
 */
static void
test_fold(void **state)
{
	struct stats_region	*r = region();
	struct stats_total	*t;
	uint32_t		 up = stats_upstream_id(r, "api", "h:1");

	assert_int_equal(stats_route_id(r, "a"), 2);
	stats_attach(r, 0);
	stats_attach(r, 1);
	stats_request(&r->sr_slots[0], 2, 200, 10);
	stats_request(&r->sr_slots[1], 2, 200, 10);
	stats_upstream(&r->sr_slots[1], up, STATS_UP_OK, 700);
	stats_upstream(&r->sr_slots[1], up, STATS_UP_TIMEOUT, 0);
	STATS_BUMP(&r->sr_slots[1].ss_accepted, 4);
	STATS_BUMP(&r->sr_slots[1].ss_auth[3][STATS_R_INVALID], 2);
	stats_conn_move(&r->sr_slots[1], -1, STATS_CONN_IDLE);
	stats_fold(r, 1, 1500);
	assert_int_equal(r->sr_slots[1].ss_used, 0);
	assert_int_equal(r->sr_master.sm_retired_cpu_us, 1500);
	assert_int_equal(r->sr_master.sm_seq % 2, 0);
	t = total(r);
	assert_int_equal(t->st_workers, 1);
	assert_int_equal(t->st_routes[2].rt_count[0], 2);
	assert_int_equal(t->st_accepted, 4);
	assert_int_equal(t->st_auth[3][STATS_R_INVALID], 2);
	assert_int_equal(t->st_upstreams[up].su_result[STATS_UP_OK], 1);
	assert_int_equal(t->st_upstreams[up].su_result[STATS_UP_TIMEOUT], 1);
	assert_int_equal(t->st_upstreams[up].su_duration.h_bucket[1], 1);
	assert_int_equal(t->st_conn[STATS_CONN_IDLE], 0);
	free(t);
	stats_attach(r, 1);
	stats_request(&r->sr_slots[1], 2, 200, 10);
	t = total(r);
	assert_int_equal(t->st_routes[2].rt_count[0], 3);
	free(t);
	free(r);
}

/* Names beyond the published count are never summed or shown. */
static void
test_bounds(void **state)
{
	struct stats_region	*r = region();
	struct stats_total	*t;

	stats_attach(r, 0);
	stats_request(&r->sr_slots[0], 7, 200, 10);	/* id not given */
	r->sr_master.sm_nroutes = 100000;		/* a scribbling worker */
	memset(r->sr_master.sm_route[5], 'x', STATS_NAME_MAX);
	assert_string_equal(stats_route_name(r, 5), "");
	t = total(r);
	assert_int_equal(t->st_nroutes, STATS_ROUTES);
	free(t);
	r->sr_master.sm_nroutes = 2;
	t = total(r);
	assert_int_equal(t->st_routes[7].rt_ncodes, 0);
	free(t);
	free(r);
}

/* A second of traffic: two requests (one 503), a 401, a 429, two attempts. */
static void
traffic(struct stats_region *r, uint32_t up)
{
	stats_request(&r->sr_slots[0], 2, 200, 10);
	stats_request(&r->sr_slots[0], 2, 503, 10);
	STATS_BUMP(&r->sr_slots[0].ss_auth[3][STATS_R_INVALID], 1);
	STATS_BUMP(&r->sr_slots[0].ss_rate[1][2], 1);
	stats_upstream(&r->sr_slots[0], up, STATS_UP_OK, 100);
	stats_upstream(&r->sr_slots[0], up, STATS_UP_CONNECT_ERROR, 0);
}

/* Assert the last minute of r covers secs seconds of traffic(). */
static void
expect_minute(const struct stats_region *r, uint32_t up, int64_t secs,
    uint64_t n)
{
	struct stats_total	*t = total(r);
	uint32_t		 i;

	assert_int_equal(t->st_minute_s, secs);
	assert_int_equal(t->st_minute.sa_requests, 2 * n);
	assert_int_equal(t->st_minute.sa_errors, n);
	assert_int_equal(t->st_minute.sa_refused, n);
	assert_int_equal(t->st_minute.sa_limited, n);
	for (i = 0; i < STATS_UPSTREAMS; i++) {
		assert_int_equal(t->st_minute.sa_up_ok[i], i == up ? n : 0);
		assert_int_equal(t->st_minute.sa_up_fail[i], i == up ? n : 0);
	}
	free(t);
}

/*
 * The last minute: nothing before two samples; then the difference of the
 * newest sample and the oldest at most 60 s older, so a steady second of
 * traffic per sample reads as k seconds and k seconds' worth, capped at
 * 60; a second sample in the same second replaces the first; a gap of
 * more than a minute leaves nothing to compare with.
 */
static void
test_minute(void **state)
{
	struct stats_region	*r = region();
	struct stats_total	*scratch = malloc(sizeof(*scratch));
	uint32_t		 up = stats_upstream_id(r, "api", "h:1");
	uint32_t		 pos;
	int64_t			 now = 1795000000, k;

	assert_non_null(scratch);
	assert_int_equal(stats_route_id(r, "a"), 2);
	stats_attach(r, 0);
	expect_minute(r, up, 0, 0);
	traffic(r, up);
	stats_sample(r, scratch, now);
	expect_minute(r, up, 0, 0);
	for (k = 1; k <= 70; k++) {
		traffic(r, up);
		stats_sample(r, scratch, now + k);
		expect_minute(r, up, k < 60 ? k : 60,
		    (uint64_t)(k < 60 ? k : 60));
	}
	/* Again in the same second: replaces the newest sample. */
	pos = r->sr_master.sm_nsample;
	traffic(r, up);
	traffic(r, up);
	stats_sample(r, scratch, now + 70);
	assert_int_equal(r->sr_master.sm_nsample, pos);
	expect_minute(r, up, 60, 62);
	/* The next second counts from the replaced sample on. */
	traffic(r, up);
	stats_sample(r, scratch, now + 71);
	expect_minute(r, up, 60, 62);
	/* No sample in the minute before the newest: nothing to say. */
	traffic(r, up);
	stats_sample(r, scratch, now + 200);
	expect_minute(r, up, 0, 0);
	stats_sample(r, scratch, now + 201);
	expect_minute(r, up, 1, 0);
	/* 61 s is more than the minute, even with the sample still held. */
	stats_sample(r, scratch, now + 300);
	traffic(r, up);
	stats_sample(r, scratch, now + 361);
	expect_minute(r, up, 0, 0);
	stats_sample(r, scratch, now + 362);
	expect_minute(r, up, 1, 0);
	free(scratch);
	free(r);
}

/*
 * The last hour: a sample a minute (the first at once, later ones when the
 * minute changes), refusals by reason and 429s over the newest and the
 * oldest at most 3600 s older.
 */
static void
test_hour(void **state)
{
	struct stats_region	*r = region();
	struct stats_total	*scratch = malloc(sizeof(*scratch)), *t;
	uint32_t		 up = stats_upstream_id(r, "api", "h:1");
	int64_t			 base = 1794999960, now = base + 20, k;

	(void)state;
	assert_non_null(scratch);
	stats_attach(r, 0);
	traffic(r, up);
	stats_sample(r, scratch, now);
	assert_int_equal(r->sr_master.sm_nhour, 1);
	/* Within the minute: no new hour sample. */
	traffic(r, up);
	stats_sample(r, scratch, now + 30);
	assert_int_equal(r->sr_master.sm_nhour, 1);
	t = total(r);
	assert_int_equal(t->st_hour_s, 0);
	free(t);
	/*
	 * A sample at the start of each of 90 minutes, after a second of
	 * traffic: up to an hour back to the first (20 s into its minute),
	 * then the hour of the last 60.
	 */
	for (k = 1; k <= 90; k++) {
		traffic(r, up);
		stats_sample(r, scratch, base + k * 60);
		t = total(r);
		assert_int_equal(t->st_hour_s, k <= 60 ? k * 60 - 20 : 3600);
		assert_int_equal(t->st_hour.sh_refused[STATS_R_INVALID],
		    k <= 60 ? k + 1 : 60);
		assert_int_equal(t->st_hour.sh_limited, k <= 60 ? k + 1 : 60);
		assert_int_equal(t->st_hour.sh_refused[STATS_R_MISSING], 0);
		free(t);
	}
	free(scratch);
	free(r);
}

/* The segment carries a formatted region. */
static void
test_segment(void **state)
{
	struct shm_header	*sh = shm_create(16, 16);
	struct stats_region	*r;

	assert_non_null(sh);
	r = shm_stats(sh);
	assert_string_equal(stats_route_name(r, STATS_ROUTE_NONE), "none");
	assert_true((char *)r + sizeof(*r) <= (char *)sh + sh->sh_size);
	assert_true(r->sr_master.sm_started > 0);
	shm_destroy(sh);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buckets),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_requests),
		cmocka_unit_test(test_minute),
		cmocka_unit_test(test_hour),
		cmocka_unit_test(test_codes_full),
		cmocka_unit_test(test_fold),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_segment),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
