/*
 * Unit tests for usage.c: folding the key store's counters into the
 * history, minute, hour and day rollover (the clock passed in), the files
 * (format, pruning, damage), slot reuse, the baselines restored at start,
 * queries with the live minute, and the master's memory per key.
 */

#include <sys/types.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "slurp.h"

#include "keystore.h"
#include "log.h"
#include "usage.h"

/* 2026-12-02T23:59:10Z, a day's last minute. */
#define T0	1796255950000LL
#define MIN	USAGE_MINUTE_MS
#define HOUR	USAGE_HOUR_MS
#define DAY	USAGE_DAY_MS

struct fix {
	char		 dir[64];
	struct keystore	 ks;
	void		*mem;
};

static int
setup(void **state)
{
	struct fix	*f;
	size_t		 size = (keystore_size(2048, 2048) + 63) & ~(size_t)63;

	assert_non_null(f = calloc(1, sizeof(*f)));
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_usage.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	assert_non_null(f->mem = aligned_alloc(64, size));
	memset(f->mem, 0, size);
	keystore_init(&f->ks, f->mem, 2048, 2048, 0x5eed);
	*state = f;
	return (0);
}

static int
teardown(void **state)
{
	struct fix	*f = *state;
	char		 cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f->mem);
	free(f);
	return (0);
}

/* Put key number i; its slot. */
static uint32_t
put(struct fix *f, int i)
{
	struct ks_key	 k, got;
	uint32_t	 slot;

	memset(&k, 0, sizeof(k));
	snprintf(k.k_id, sizeof(k.k_id), "key_Test%012d", i);
	k.k_digest[0] = (uint8_t)i;
	k.k_digest[1] = (uint8_t)(i >> 8);
	k.k_digest[2] = 0x77;
	assert_int_equal(keystore_lock(&f->ks, getpid(), 0), KS_OK);
	assert_int_equal(keystore_put(&f->ks, &k, f->ks.ks_hdr->kh_applied +
	    1), KS_OK);
	keystore_unlock(&f->ks, getpid());
	assert_int_equal(keystore_find_id(&f->ks, k.k_id, &got, &slot), KS_OK);
	return (slot);
}

/* Delete key number i. */
static void
del(struct fix *f, int i)
{
	char	 id[32];

	snprintf(id, sizeof(id), "key_Test%012d", i);
	assert_int_equal(keystore_lock(&f->ks, getpid(), 0), KS_OK);
	assert_int_equal(keystore_del(&f->ks, id, f->ks.ks_hdr->kh_applied +
	    1), KS_OK);
	keystore_unlock(&f->ks, getpid());
}

/* a admitted, l rate limited, r refused uses of slot. */
static void
use(struct fix *f, uint32_t slot, int a, int l, int r)
{
	while (a-- > 0)
		keystore_count_use(&f->ks, slot, KS_USE_ALLOWED, T0);
	while (l-- > 0)
		keystore_count_use(&f->ks, slot, KS_USE_LIMITED, T0);
	while (r-- > 0)
		keystore_count_use(&f->ks, slot, KS_USE_REFUSED, T0);
}

/* The whole file state_dir/usage/name (malloc'ed), or NULL if absent. */
static char *
slurp(struct fix *f, const char *name)
{
	char	 dir[256];

	snprintf(dir, sizeof(dir), "%s/usage", f->dir);
	return (test_slurp(dir, name));
}

/* Write state_dir/usage/name. */
static void
spit(struct fix *f, const char *name, const char *text, size_t len)
{
	char	 path[256];
	FILE	*fp;

	snprintf(path, sizeof(path), "%s/usage", f->dir);
	(void)mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/usage/%s", f->dir, name);
	assert_non_null(fp = fopen(path, "w"));
	assert_int_equal(fwrite(text, 1, len, fp), len);
	fclose(fp);
}

/* The file of kind for ms, as text (must exist). */
static char *
file_of(struct fix *f, int kind, int64_t ms)
{
	char	 name[64], *s;

	usage_file_name(name, sizeof(name), kind, ms);
	s = slurp(f, name);
	if (s == NULL)
		fail_msg("no file %s", name);
	return (s);
}

/* Totals of the history of key i (slot) of kind at now, into t[3]. */
static void
totals(struct fix *f, int i, uint32_t slot, int kind, int64_t now,
    uint64_t *t)
{
	struct usage_point	 pts[USAGE_POINTS_MAX];
	char			 id[32];
	size_t			 n, j, want;
	int			 c;

	snprintf(id, sizeof(id), "key_Test%012d", i);
	n = usage_history(f->dir, (uid_t)-1, (gid_t)-1, &f->ks, slot, id, kind,
	    now, pts);
	want = kind == USAGE_H1 ? 60 : kind == USAGE_H24 ? 1440 : 720;
	assert_int_equal(n, want);
	t[0] = t[1] = t[2] = 0;
	for (j = 0; j < n; j++) {
		if (j > 0)
			assert_int_equal(pts[j].up_t - pts[j - 1].up_t,
			    kind == USAGE_D30 ? HOUR : MIN);
		for (c = 0; c < USAGE_NC; c++)
			t[c] += pts[j].up_c[c];
	}
	assert_int_equal(pts[n - 1].up_t, now / (kind == USAGE_D30 ? HOUR :
	    MIN) * (kind == USAGE_D30 ? HOUR : MIN));
}

#define assert_totals(t, a, l, r) do {					\
	assert_int_equal((t)[0], (a));					\
	assert_int_equal((t)[1], (l));					\
	assert_int_equal((t)[2], (r));					\
} while (0)

/*
 * A fold moves what was counted since the previous one into the minute
 * and the hour, writes them, and sets the baselines; keys without traffic
 * get no line; queries see new uses at once (live) and never twice.
 */
static void
test_fold_deltas(void **state)
{
	struct fix	*f = *state;
	struct usage	*u;
	char		 err[256], *s, want[256];
	uint64_t	 t[3], b[KS_NCOUNTS];
	uint32_t	 a, quiet;
	uint32_t	 seq;

	a = put(f, 1);
	quiet = put(f, 2);
	assert_non_null(u = usage_open(f->dir, (uid_t)-1, (gid_t)-1, T0 -
	    50 * MIN, err, sizeof(err)));
	use(f, a, 2, 1, 1);
	/* Live at once, in the last point. */
	totals(f, 1, a, USAGE_H1, T0 - 50 * MIN, t);
	assert_totals(t, 2, 1, 1);
	/* Same minute: no fold. */
	assert_int_equal(usage_fold(u, &f->ks, T0 - 50 * MIN + 30000, 0), 0);
	seq = f->ks.ks_hdr->kh_fold_seq;
	assert_int_equal(usage_fold(u, &f->ks, T0 - 49 * MIN, 0), 1);
	assert_int_equal(f->ks.ks_hdr->kh_fold_seq, seq + 2);
	keystore_base(&f->ks, a, b);
	assert_int_equal(b[KS_C_ALLOWED], 2);
	assert_int_equal(b[KS_C_LIMITED], 1);
	assert_int_equal(b[KS_C_REFUSED], 1);
	/* 23:09 is minute 9 of hour 23, and hour 23 of the day. */
	s = file_of(f, USAGE_MINUTES, T0 - 50 * MIN);
	snprintf(want, sizeof(want), "keygate-usage 1 minutes %lld 1\n"
	    "key_Test000000000001 9:2,1,1\nend\n",
	    (long long)((T0 - 50 * MIN) / HOUR));
	assert_string_equal(s, want);
	free(s);
	s = file_of(f, USAGE_HOURS, T0 - 50 * MIN);
	snprintf(want, sizeof(want), "keygate-usage 1 hours %lld 1\n"
	    "key_Test000000000001 23:2,1,1\nend\n", (long long)(T0 / DAY));
	assert_string_equal(s, want);
	free(s);
	/* Files plus live, never counted twice. */
	use(f, a, 1, 0, 0);
	totals(f, 1, a, USAGE_H1, T0 - 49 * MIN + 1000, t);
	assert_totals(t, 3, 1, 1);
	totals(f, 1, a, USAGE_H24, T0 - 49 * MIN + 1000, t);
	assert_totals(t, 3, 1, 1);
	totals(f, 1, a, USAGE_D30, T0 - 49 * MIN + 1000, t);
	assert_totals(t, 3, 1, 1);
	totals(f, 2, quiet, USAGE_H24, T0 - 49 * MIN + 1000, t);
	assert_totals(t, 0, 0, 0);
	/* A later fold adds to the file, in its own minute. */
	assert_int_equal(usage_fold(u, &f->ks, T0 - 45 * MIN, 0), 1);
	s = file_of(f, USAGE_MINUTES, T0 - 50 * MIN);
	assert_non_null(strstr(s, "key_Test000000000001 9:2,1,1 10:1,0,0\n"));
	free(s);
	totals(f, 1, a, USAGE_H1, T0 - 45 * MIN, t);
	assert_totals(t, 3, 1, 1);
	assert_int_equal(usage_nkeys(u), 1);
	usage_free(u);
}

/*
 * Minute, hour and day rollover: the last minute of a day goes to that
 * day's files, the next day starts with no record, and 24 h and 30 d
 * queries span both days.
 */
static void
test_rollover(void **state)
{
	struct fix	*f = *state;
	struct usage	*u;
	char		 err[256], *s;
	uint64_t	 t[3];
	uint32_t	 a, b;

	a = put(f, 1);
	b = put(f, 2);
	assert_non_null(u = usage_open(f->dir, (uid_t)-1, (gid_t)-1, T0, err,
	    sizeof(err)));
	use(f, a, 3, 0, 0);		/* at 23:59 */
	assert_int_equal(usage_fold(u, &f->ks, T0 + MIN, 0), 1);  /* 00:00 */
	s = file_of(f, USAGE_MINUTES, T0);
	assert_non_null(strstr(s, "key_Test000000000001 59:3,0,0\n"));
	free(s);
	s = file_of(f, USAGE_HOURS, T0);
	assert_non_null(strstr(s, "key_Test000000000001 23:3,0,0\n"));
	free(s);
	assert_int_equal(usage_nkeys(u), 0);	/* a new day */
	use(f, b, 0, 0, 4);		/* at 00:00 */
	assert_int_equal(usage_fold(u, &f->ks, T0 + 2 * MIN, 0), 1);
	s = file_of(f, USAGE_MINUTES, T0 + MIN);
	assert_string_equal(s, "keygate-usage 1 minutes 498960 1\n"
	    "key_Test000000000002 0:0,0,4\nend\n");
	free(s);
	s = file_of(f, USAGE_HOURS, T0 + MIN);
	assert_string_equal(s, "keygate-usage 1 hours 20790 1\n"
	    "key_Test000000000002 0:0,0,4\nend\n");
	free(s);
	/* The old day's files are as they were. */
	s = file_of(f, USAGE_HOURS, T0);
	assert_null(strstr(s, "key_Test000000000002"));
	free(s);
	totals(f, 1, a, USAGE_H24, T0 + 2 * MIN, t);
	assert_totals(t, 3, 0, 0);
	totals(f, 1, a, USAGE_D30, T0 + 2 * MIN, t);
	assert_totals(t, 3, 0, 0);
	totals(f, 2, b, USAGE_D30, T0 + 2 * MIN, t);
	assert_totals(t, 0, 0, 4);
	/* An hour later the 1 h query no longer sees 23:59, 24 h does. */
	totals(f, 1, a, USAGE_H1, T0 + 61 * MIN, t);
	assert_totals(t, 0, 0, 0);
	totals(f, 1, a, USAGE_H24, T0 + 61 * MIN, t);
	assert_totals(t, 3, 0, 0);
	/* A new hour of the same day keeps the day's records. */
	use(f, b, 1, 0, 0);
	assert_int_equal(usage_fold(u, &f->ks, T0 + 61 * MIN, 0), 1);
	assert_int_equal(usage_fold(u, &f->ks, T0 + 62 * MIN, 0), 1);
	assert_int_equal(usage_nkeys(u), 1);
	use(f, b, 1, 0, 0);
	assert_int_equal(usage_fold(u, &f->ks, T0 + 63 * MIN, 0), 1);
	s = file_of(f, USAGE_HOURS, T0 + MIN);
	assert_string_equal(s, "keygate-usage 1 hours 20790 1\n"
	    "key_Test000000000002 0:1,0,4 1:1,0,0\nend\n");
	free(s);
	/* 24 h and a day later: only 30 d still sees 23:59. */
	totals(f, 1, a, USAGE_H24, T0 + DAY + HOUR, t);
	assert_totals(t, 0, 0, 0);
	totals(f, 1, a, USAGE_D30, T0 + DAY + HOUR, t);
	assert_totals(t, 3, 0, 0);
	usage_free(u);
}

/* Minute files past 25 hours and hour files past 31 days are removed. */
static void
test_prune(void **state)
{
	struct fix	*f = *state;
	struct usage	*u;
	char		 err[256], name[64], tmp[80];
	const char	*body = "keygate-usage 1 minutes 0 0\nend\n";
	struct {
		int	 kind;
		int64_t	 ago;
		int	 kept;
	} files[] = {
		{ USAGE_MINUTES, 0, 1 },
		{ USAGE_MINUTES, 24 * HOUR, 1 },
		{ USAGE_MINUTES, 25 * HOUR, 0 },
		{ USAGE_MINUTES, 400 * DAY, 0 },
		{ USAGE_HOURS, 30 * DAY, 1 },
		{ USAGE_HOURS, 31 * DAY, 0 },
		{ USAGE_HOURS, 900 * DAY, 0 },
	};
	size_t		 i;
	char		*s;

	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		usage_file_name(name, sizeof(name), files[i].kind, T0 -
		    files[i].ago);
		spit(f, name, body, strlen(body));
	}
	usage_file_name(name, sizeof(name), USAGE_MINUTES, T0 - 30 * HOUR);
	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	spit(f, tmp, "x", 1);
	spit(f, "notes", "mine", 4);
	assert_non_null(u = usage_open(f->dir, (uid_t)-1, (gid_t)-1, T0, err,
	    sizeof(err)));
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		usage_file_name(name, sizeof(name), files[i].kind, T0 -
		    files[i].ago);
		s = slurp(f, name);
		if (files[i].kept)
			assert_non_null(s);
		else
			assert_null(s);
		free(s);
	}
	assert_null(slurp(f, tmp));
	assert_non_null(s = slurp(f, "notes"));
	free(s);
	usage_free(u);
}

/*
 * A deleted key's slot taken by a new key: the new key starts from zero
 * (counters and baselines zeroed together), the old key's history stays.
 */
static void
test_slot_reuse(void **state)
{
	struct fix	*f = *state;
	struct usage	*u;
	char		 err[256];
	uint64_t	 t[3], b[KS_NCOUNTS];
	uint32_t	 a, c;

	a = put(f, 1);
	assert_non_null(u = usage_open(f->dir, (uid_t)-1, (gid_t)-1, T0 -
	    30 * MIN, err, sizeof(err)));
	use(f, a, 7, 2, 1);
	assert_int_equal(usage_fold(u, &f->ks, T0 - 29 * MIN, 0), 1);
	del(f, 1);
	c = put(f, 3);
	assert_int_equal(c, a);
	keystore_base(&f->ks, c, b);
	assert_int_equal(b[0] + b[1] + b[2], 0);
	use(f, c, 1, 0, 0);
	totals(f, 3, c, USAGE_H1, T0 - 29 * MIN, t);
	assert_totals(t, 1, 0, 0);
	assert_int_equal(usage_fold(u, &f->ks, T0 - 28 * MIN, 0), 1);
	totals(f, 3, c, USAGE_H1, T0 - 28 * MIN, t);
	assert_totals(t, 1, 0, 0);
	/* The deleted key's history is still in the files. */
	totals(f, 1, c, USAGE_H1, T0 - 28 * MIN, t);	/* slot's live: 0 */
	assert_totals(t, 7, 2, 1);
	usage_free(u);
}

/*
 * Counters restored at start (keys.usage) are the baselines: no spike in
 * the history, no line written; a restart keeps the history and adds to
 * it.
 */
static void
test_restore_and_restart(void **state)
{
	struct fix	*f = *state;
	struct usage	*u;
	char		 err[256], *s;
	uint64_t	 t[3], c[KS_NCOUNTS] = { 1000, 20, 30 };
	uint32_t	 a;

	a = put(f, 1);
	keystore_set_counts(&f->ks, a, c, T0 - HOUR);
	assert_non_null(u = usage_open(f->dir, (uid_t)-1, (gid_t)-1, T0 -
	    20 * MIN, err, sizeof(err)));
	assert_int_equal(usage_fold(u, &f->ks, T0 - 19 * MIN, 0), 1);
	totals(f, 1, a, USAGE_D30, T0 - 19 * MIN, t);
	assert_totals(t, 0, 0, 0);
	assert_null(slurp(f, "hours-2026-12-02"));
	/* Traffic, then a stop: the forced fold writes the current minute. */
	use(f, a, 4, 0, 0);
	assert_int_equal(usage_fold(u, &f->ks, T0 - 19 * MIN + 5000, 1), 1);
	usage_free(u);
	s = file_of(f, USAGE_MINUTES, T0 - 19 * MIN);
	assert_non_null(strstr(s, "key_Test000000000001 40:4,0,0\n"));
	free(s);
	/* A new master: counters as saved, same minute, more traffic. */
	keystore_counts(&f->ks, a, c);
	keystore_set_counts(&f->ks, a, c, T0);
	assert_non_null(u = usage_open(f->dir, (uid_t)-1, (gid_t)-1, T0 -
	    19 * MIN + 9000, err, sizeof(err)));
	assert_int_equal(usage_nkeys(u), 1);
	totals(f, 1, a, USAGE_H1, T0 - 19 * MIN + 9000, t);
	assert_totals(t, 4, 0, 0);
	use(f, a, 1, 1, 0);
	assert_int_equal(usage_fold(u, &f->ks, T0 - 18 * MIN, 0), 1);
	s = file_of(f, USAGE_MINUTES, T0 - 19 * MIN);
	assert_non_null(strstr(s, "key_Test000000000001 40:5,1,0\n"));
	free(s);
	s = file_of(f, USAGE_HOURS, T0);
	assert_non_null(strstr(s, "key_Test000000000001 23:5,1,0\n"));
	free(s);
	usage_free(u);
}

static int
count_cb(void *arg, const char *id, const uint64_t (*pts)[USAGE_NC], int n)
{
	uint64_t	*sum = arg;
	int		 i, c;

	assert_non_null(id);
	for (i = 0; i < n; i++)
		for (c = 0; c < USAGE_NC; c++)
			sum[c] += pts[i][c];
	sum[3]++;
	return (0);
}

/* Parse text as a minutes file of period 7; 0 or -1, sums in sum. */
static int
parse(const char *text, size_t len, uint64_t *sum, char *err, size_t errlen)
{
	FILE	*fp;
	int	 rc;

	memset(sum, 0, 4 * sizeof(*sum));
	assert_non_null(fp = fmemopen((void *)text, len, "r"));
	rc = usage_parse(fp, USAGE_MINUTES, 7, count_cb, sum, err, errlen);
	fclose(fp);
	return (rc);
}

/* Good files parse; every kind of damage is refused with a reason. */
static void
test_parse(void **state)
{
	static const struct {
		const char	*text;
		const char	*why;
	} bad[] = {
		{ "keygate-usage 1 minutes 7 1\nkey_a 0:1,2,3\n",
		    "no end line (truncated)" },
		{ "keygate-usage 1 minutes 7 1\nkey_a 0:1,2,3\nen",
		    "no newline at the end (truncated)" },
		{ "keygate-usage 2 minutes 7 0\nend\n", "not version 1" },
		{ "keygate-usage 1 hours 7 0\nend\n", "not a file of minutes" },
		{ "keygate-usage 1 minutes 8 0\nend\n", "not the period" },
		{ "keygate-usage 1 minutes 7 2\nkey_a 0:1,2,3\nend\n",
		    "1 keys, the header said 2" },
		{ "keygate-usage 1 minutes 7 0\nkey_a 0:1,2,3\nend\n",
		    "more keys than the header said" },
		{ "keygate-usage 1 minutes 7 1\nkey_a 5:1,2,3 5:1,1,1\nend\n",
		    "out of range or order" },
		{ "keygate-usage 1 minutes 7 1\nkey_a 60:1,2,3\nend\n",
		    "out of range or order" },
		{ "keygate-usage 1 minutes 7 1\nkey_a 0:18446744073709551616,"
		    "0,0\nend\n", "bad count" },
		{ "keygate-usage 1 minutes 7 1\nkey_a 0:-1,0,0\nend\n",
		    "bad count" },
		{ "keygate-usage 1 minutes 7 1\nkey_a 0:01,0,0\nend\n",
		    "bad count" },
		{ "keygate-usage 1 minutes 7 1\nkey_a 0:1,2\nend\n",
		    "bad count" },
		{ "keygate-usage 1 minutes 7 1\nkey_a0123456789012345678 "
		    "0:1,2,3\nend\n", "id too long" },
		{ "keygate-usage 1 minutes 7 1\n 0:1,2,3\nend\n", "no key id" },
		{ "keygate-usage 1 minutes 7 1\nkey/a 0:1,2,3\nend\n",
		    "junk after the points" },
		{ "keygate-usage 1 minutes 7 0\nend\nkey_a\n",
		    "after the end line" },
		{ "keygate-usage 1 minutes 7 99999999999\nend\n",
		    "bad key count" },
		{ "{\"json\": 1}\n", "not a keygate usage file" },
		{ "", "no end line" },
	};
	static const char nul[] = "keygate-usage 1 minutes 7 1\nkey_a\0 "
	    "0:1,1,1\nend\n";
	char		 err[256], *big;
	uint64_t	 sum[4];
	size_t		 i, n;
	const char	*good = "keygate-usage 1 minutes 7 2\n"
	    "key_a 0:1,2,3 59:18446744073709551615,0,0\nkey_B9\nend\n";

	assert_int_equal(parse(good, strlen(good), sum, err, sizeof(err)), 0);
	assert_int_equal(sum[0], 0);	/* 1 + 2^64 - 1 wraps: both read */
	assert_int_equal(sum[1], 2);
	assert_int_equal(sum[2], 3);
	assert_int_equal(sum[3], 2);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (parse(bad[i].text, strlen(bad[i].text), sum, err,
		    sizeof(err)) != -1)
			fail_msg("case %zu parsed: %s", i, bad[i].text);
		if (strstr(err, bad[i].why) == NULL)
			fail_msg("case %zu: \"%s\", wanted \"%s\"", i, err,
			    bad[i].why);
	}
	/* A NUL inside a line. */
	assert_int_equal(parse(nul, sizeof(nul) - 1, sum, err, sizeof(err)),
	    -1);
	assert_non_null(strstr(err, "holds a NUL"));
	/* A line over the limit. */
	n = USAGE_LINE_MAX + 100;
	assert_non_null(big = malloc(n + 64));
	i = (size_t)snprintf(big, 64, "keygate-usage 1 minutes 7 1\nkey_a");
	memset(big + i, ' ', n);
	memcpy(big + i + n, "\nend\n", 5);
	assert_int_equal(parse(big, i + n + 5, sum, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "line too long"));
	free(big);
}

/*
 * A damaged file costs its own points only: the master starts from the
 * rest, and a query still adds up the good files.
 */
static void
test_damaged_file(void **state)
{
	struct fix	*f = *state;
	struct usage	*u;
	char		 err[256], name[64], text[256];
	uint64_t	 t[3];
	uint32_t	 a;

	a = put(f, 1);
	/* The previous hour: good; this hour: truncated. */
	usage_file_name(name, sizeof(name), USAGE_MINUTES, T0 - HOUR);
	snprintf(text, sizeof(text), "keygate-usage 1 minutes %lld 1\n"
	    "key_Test000000000001 3:1,1,1\nend\n",
	    (long long)((T0 - HOUR) / HOUR));
	spit(f, name, text, strlen(text));
	usage_file_name(name, sizeof(name), USAGE_MINUTES, T0);
	snprintf(text, sizeof(text), "keygate-usage 1 minutes %lld 1\n"
	    "key_Test000000000001 3:5,5,5\n", (long long)(T0 / HOUR));
	spit(f, name, text, strlen(text));
	assert_non_null(u = usage_open(f->dir, (uid_t)-1, (gid_t)-1, T0, err,
	    sizeof(err)));
	assert_int_equal(usage_nkeys(u), 0);
	totals(f, 1, a, USAGE_H24, T0, t);
	assert_totals(t, 1, 1, 1);
	/* A symbolic link is not followed. */
	usage_file_name(name, sizeof(name), USAGE_MINUTES, T0 - 2 * HOUR);
	snprintf(text, sizeof(text), "%s/usage/%s", f->dir, name);
	assert_int_equal(symlink("/etc/passwd", text), 0);
	totals(f, 1, a, USAGE_H24, T0, t);
	assert_totals(t, 1, 1, 1);
	usage_free(u);
}

/*
 * The master's memory per key with traffic: measured with the allocator's
 * own count (mallinfo2) for 1000 keys, and what usage_memory() reports;
 * both at most 2 KiB a key.
 */
static void
test_memory(void **state)
{
	struct fix	*f = *state;
	struct usage	*u;
	struct mallinfo2 m0, m1;
	char		 err[256];
	size_t		 per, rep;
	uint32_t	 slot;
	int		 i;

	for (i = 0; i < 1000; i++) {
		slot = put(f, i + 10);
		use(f, slot, 1, 0, 0);
	}
	assert_non_null(u = usage_open(f->dir, (uid_t)-1, (gid_t)-1, T0 -
	    30 * MIN, err, sizeof(err)));
	m0 = mallinfo2();
	assert_int_equal(usage_fold(u, &f->ks, T0 - 29 * MIN, 0), 1);
	m1 = mallinfo2();
	assert_int_equal(usage_nkeys(u), 1000);
	per = (m1.uordblks - m0.uordblks) / 1000;
	rep = usage_memory(u) / 1000;
	print_message("usage history: %zu bytes per key with traffic "
	    "(allocator), %zu reported\n", per, rep);
	assert_true(per <= 2048);
	assert_true(rep <= 2048);
	assert_true(rep >= sizeof(uint32_t) * 60 * 3);
	usage_free(u);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fold_deltas, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_rollover, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prune, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slot_reuse, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_restore_and_restart,
		    setup, teardown),
		cmocka_unit_test(test_parse),
		cmocka_unit_test_setup_teardown(test_damaged_file, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_memory, setup, teardown),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
