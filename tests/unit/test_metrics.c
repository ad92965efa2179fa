/*
 * Unit tests for the Prometheus exposition writer (metrics.c): escaping of
 * label values, cumulative histogram buckets ending at +Inf, exact sums,
 * a # HELP and # TYPE before every family, no series for unused names.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "metrics.h"
#include "procstat.h"
#include "stats.h"

static struct stats_region *
region(void)
{
	struct stats_region	*r = calloc(1, sizeof(*r));

	assert_non_null(r);
	stats_init(r, 1000);
	stats_attach(r, 0);
	return (r);
}

static char *
render(const struct stats_region *r)
{
	struct metrics_src	 src;
	char			*text;
	size_t			 len;

	memset(&src, 0, sizeof(src));
	src.ms_stats = r;
	src.ms_keys = 7;
	src.ms_keys_max = 100;
	src.ms_rate_used = 5;
	src.ms_rate_max = 64;
	src.ms_rate_full = 3;
	src.ms_rate_evicted = 2;
	src.ms_version = "1.2.3";
	text = metrics_render(&src, &len);
	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	return (text);
}

static void
has(const char *text, const char *line)
{
	char	 want[512];

	snprintf(want, sizeof(want), "\n%s\n", line);
	if (strstr(text, want) == NULL)
		fail_msg("missing line: %s", line);
}

/* A name with a quote, a backslash and a newline is escaped. */
static void
test_escaping(void **state)
{
	struct stats_region	*r = region();
	uint32_t		 id = stats_route_id(r, "a\"b\\c\nd");
	char			*text;

	(void)state;
	stats_request(&r->sr_slots[0], id, 200, 10);
	stats_request(&r->sr_slots[0], id, 200, 10);
	text = render(r);
	has(text, "keygate_requests_total{route=\"a\\\"b\\\\c\\nd\","
	    "code=\"200\"} 2");
	has(text, "keygate_request_duration_seconds_count{route="
	    "\"a\\\"b\\\\c\\nd\"} 2");
	free(text);
	free(r);
}

/* Buckets are cumulative, +Inf holds everything, the sum is exact. */
static void
test_histogram(void **state)
{
	struct stats_region	*r = region();
	uint32_t		 id = stats_route_id(r, "h");
	char			*text;

	(void)state;
	stats_request(&r->sr_slots[0], id, 200, 100);		/* 0.0005 */
	stats_request(&r->sr_slots[0], id, 404, 2000);		/* 0.0025 */
	stats_request(&r->sr_slots[0], id, 200, 20000000);	/* +Inf */
	text = render(r);
	has(text, "keygate_request_duration_seconds_bucket{route=\"h\","
	    "le=\"0.0005\"} 1");
	has(text, "keygate_request_duration_seconds_bucket{route=\"h\","
	    "le=\"0.001\"} 1");
	has(text, "keygate_request_duration_seconds_bucket{route=\"h\","
	    "le=\"0.0025\"} 2");
	has(text, "keygate_request_duration_seconds_bucket{route=\"h\","
	    "le=\"10\"} 2");
	has(text, "keygate_request_duration_seconds_bucket{route=\"h\","
	    "le=\"+Inf\"} 3");
	has(text, "keygate_request_duration_seconds_count{route=\"h\"} 3");
	has(text, "keygate_request_duration_seconds_sum{route=\"h\"} "
	    "20.002100");
	has(text, "keygate_requests_total{route=\"h\",code=\"200\"} 2");
	has(text, "keygate_requests_total{route=\"h\",code=\"404\"} 1");
	free(text);
	free(r);
}

/*
 * Every series belongs to a family announced just before by # HELP and
 * # TYPE, each family once; a route never used has no series.
 */
static void
test_families(void **state)
{
	struct stats_region	*r = region();
	char			*text, *line, *save, fam[128] = "";
	char			 seen[64][128];
	int			 nseen = 0, i;

	(void)state;
	(void)stats_route_id(r, "unused");
	stats_request(&r->sr_slots[0], STATS_ROUTE_NONE, 404, 5);
	stats_upstream(&r->sr_slots[0], stats_upstream_id(r, "api",
	    "10.0.0.1:80"), STATS_UP_TIMEOUT, 0);
	text = render(r);
	assert_null(strstr(text, "unused"));
	has(text, "keygate_requests_total{route=\"none\",code=\"404\"} 1");
	has(text, "keygate_upstream_requests_total{upstream=\"api\","
	    "server=\"10.0.0.1:80\",result=\"timeout\"} 1");
	has(text, "keygate_keys 7");
	has(text, "keygate_keys_max 100");
	has(text, "keygate_rate_states 5");
	has(text, "keygate_rate_states_max 64");
	has(text, "keygate_rate_table_full_total 3");
	has(text, "keygate_rate_states_reused_total 2");
	has(text, "keygate_build_info{version=\"1.2.3\"} 1");
	has(text, "keygate_config_last_reload_success_timestamp_seconds 1000");
	for (line = strtok_r(text, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "# HELP ", 7) == 0) {
			snprintf(fam, sizeof(fam), "%.*s",
			    (int)strcspn(line + 7, " "), line + 7);
			for (i = 0; i < nseen; i++)
				assert_string_not_equal(seen[i], fam);
			assert_true(nseen < 64);
			snprintf(seen[nseen++], sizeof(seen[0]), "%s", fam);
			continue;
		}
		if (strncmp(line, "# TYPE ", 7) == 0) {
			assert_int_equal(strncmp(line + 7, fam, strlen(fam)), 0);
			continue;
		}
		/* name, name_bucket/_sum/_count of the family announced */
		assert_int_equal(strncmp(line, fam, strlen(fam)), 0);
		assert_true(strchr("{ _", line[strlen(fam)]) != NULL);
	}
	assert_true(nseen >= 20);
	free(text);
	free(r);
}

/* /proc/PID/stat: fields counted from the last ')'. */
static void
test_procstat(void **state)
{
	const char	*s = "123 (a) b) c) S 1 2 3 4 5 6 7 8 9 10 300 200 "
	    "11 12 13 14 15 16 99 4096000 50\n";
	uint64_t	 cpu, vsize, rss;
	struct stats_proc p;

	(void)state;
	assert_int_equal(procstat_parse(s, strlen(s), &cpu, &vsize, &rss), 0);
	assert_true(cpu > 0);
	assert_int_equal(vsize, 4096000);
	assert_int_equal(rss, 50);
	assert_int_equal(procstat_parse("123 (x", 6, &cpu, &vsize, &rss), -1);
	assert_int_equal(procstat_parse("1 (x) S 1 2", 11, &cpu, &vsize,
	    &rss), -1);
	memset(&p, 0, sizeof(p));
	assert_int_equal(procstat_add(getpid(), &p), 0);
	assert_true(p.pr_rss > 0 && p.pr_vsize > 0 && p.pr_fds >= 3);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_families),
		cmocka_unit_test(test_procstat),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
