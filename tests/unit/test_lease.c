/*
 * Unit tests for the lease table (lease.c): what workers take, what the
 * master installs, drains and reclaims; the demand pipe; and a property
 * test with threads taking units while a master thread installs and drains
 * leases at random, checked against a model of what was handed out.
 * Time is injected.
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "lease.h"

static const uint32_t	 lim20[RL_WINDOWS] = { 20, 200, 1000 };

static struct ls_table *
table(void)
{
	void	*p = NULL;

	assert_int_equal(posix_memalign(&p, 64, lease_table_size()), 0);
	assert_non_null(p);
	memset(p, 0, lease_table_size());
	return (lease_table_init(p, 42));
}

/* The demand channel (as the master makes it): [0] the master's end. */
static void
mkpipe(int fd[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, fd), 0);
	assert_int_equal(fcntl(fd[0], F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(fcntl(fd[1], F_SETFL, O_NONBLOCK), 0);
}

/* Demands waiting in the pipe. */
static int
demands(int fd, struct ls_subject *last)
{
	struct ls_demand	 d;
	int			 n = 0;

	while (read(fd, &d, sizeof(d)) == (ssize_t)sizeof(d)) {
		if (last != NULL)
			*last = d.ld_subj;
		n++;
	}
	return (n);
}

static void
subj(struct ls_subject *s, const char *id)
{
	lease_subject(s, LS_KIND_KEY, id, strlen(id), lim20);
}

static int64_t	 never[LS_ENTRIES];

/* Missing entry: WAIT and a demand naming the subject; then take. */
static void
test_take(void **state)
{
	struct ls_table		*t = table();
	struct ls_subject	 s, got;
	struct ls_entry		*e;
	struct ls_took		 tk;
	int			 fd[2], fresh, i;

	(void)state;
	mkpipe(fd);
	subj(&s, "key_AAAAAAAAAAAAAAAA");
	assert_int_equal(lease_take(t, fd[1], &s, 100, LS_ASK_ALL, &tk), LS_WAIT);
	assert_int_equal(demands(fd[0], &got), 1);
	assert_memory_equal(&got, &s, sizeof(s));
	e = lease_claim(t, &s, 100, never, &fresh);
	assert_non_null(e);
	assert_true(fresh);
	assert_ptr_equal(lease_claim(t, &s, 100, never, &fresh), e);
	assert_false(fresh);
	assert_ptr_equal(lease_find(t, &s), e);
	/* Claimed, nothing granted: WAIT, flag raised, one demand. */
	assert_int_equal(lease_take(t, fd[1], &s, 100, LS_ASK_ALL, &tk), LS_WAIT);
	assert_int_equal(lease_take(t, fd[1], &s, 100, LS_ASK_ALL, &tk), LS_WAIT);
	assert_int_equal(demands(fd[0], NULL), 1);
	assert_int_equal(e->le_want, 1);
	e->le_want = 0;
	e->le_low = 1;
	assert_int_equal(lease_install(e, 1000, 3, 3, NULL), 3);
	for (i = 0; i < 3; i++)
		assert_int_equal(lease_take(t, fd[1], &s, 200, LS_ASK_ALL, &tk), LS_TAKEN);
	assert_ptr_equal(tk.lt_e, e);
	/* Down to le_low (1) after the second: one demand, not two. */
	assert_int_equal(demands(fd[0], NULL), 1);
	assert_int_equal(lease_take(t, fd[1], &s, 200, LS_ASK_ALL, &tk), LS_WAIT);
	/* Other limits are another lease. */
	lease_subject(&got, LS_KIND_KEY, "key_AAAAAAAAAAAAAAAA", 20,
	    (const uint32_t[RL_WINDOWS]){ 5, 0, 0 });
	assert_null(lease_find(t, &got));
	close(fd[0]);
	close(fd[1]);
	free(t);
}

/* Units may be taken only before the lease's expiry. */
static void
test_expiry(void **state)
{
	struct ls_table		*t = table();
	struct ls_subject	 s;
	struct ls_entry		*e;
	struct ls_took		 tk;
	uint64_t		 x;
	int			 fresh;

	(void)state;
	subj(&s, "key_BBBBBBBBBBBBBBBB");
	e = lease_claim(t, &s, 0, never, &fresh);
	assert_int_equal(lease_install(e, 500, 10, 10, NULL), 10);
	assert_int_equal(lease_take(t, -1, &s, 499, LS_ASK_ALL, &tk), LS_TAKEN);
	assert_int_equal(lease_take(t, -1, &s, 500, LS_ASK_ALL, &tk), LS_WAIT);
	assert_int_equal(lease_left(e, 499, &x), 9);
	assert_int_equal(x, 500);
	assert_int_equal(lease_left(e, 500, &x), 0);
	/* A renewal extends the units left; an expiry never goes down. */
	assert_int_equal(lease_install(e, 900, 0, 9, NULL), 9);
	assert_int_equal(lease_take(t, -1, &s, 600, LS_ASK_ALL, &tk), LS_TAKEN);
	assert_int_equal(lease_install(e, 700, 1, 100, NULL), 9);
	assert_int_equal(lease_left(e, 800, &x), 9);
	assert_int_equal(x, 900);
	/* The cap: what Redis counts as held. */
	assert_int_equal(lease_install(e, 1000, 5, 4, NULL), 4);
	assert_int_equal(lease_drain(e), 4);
	assert_int_equal(lease_left(e, 800, &x), 0);
	assert_int_equal(lease_take(t, -1, &s, 800, LS_ASK_ALL, &tk), LS_WAIT);
	free(t);
}

/* A full cluster: FULL until le_deny, naming the window; then WAIT. */
static void
test_deny(void **state)
{
	struct ls_table		*t = table();
	struct ls_subject	 s;
	struct ls_entry		*e;
	struct ls_took		 tk;
	int			 fresh, fd[2];

	(void)state;
	mkpipe(fd);
	subj(&s, "key_CCCCCCCCCCCCCCCC");
	e = lease_claim(t, &s, 0, never, &fresh);
	e->le_deny_window = 1;
	e->le_deny = 2500;
	assert_int_equal(lease_take(t, fd[1], &s, 1000, LS_ASK_ALL, &tk), LS_FULL);
	assert_int_equal(tk.lt_until, 2500);
	assert_int_equal(tk.lt_window, 1);
	/* Refused without asking the master. */
	assert_int_equal(demands(fd[0], NULL), 0);
	e->le_deny_window = 7;		/* out of range: a safe window */
	assert_int_equal(lease_take(t, fd[1], &s, 1000, LS_ASK_ALL, &tk), LS_FULL);
	assert_int_equal(tk.lt_window, 0);
	assert_int_equal(lease_take(t, fd[1], &s, 2500, LS_ASK_ALL, &tk), LS_WAIT);
	assert_int_equal(demands(fd[0], NULL), 1);
	close(fd[0]);
	close(fd[1]);
	free(t);
}

/* Subjects with ids "key_x%d" whose entries fall in one set: n of them. */
static int
same_set(struct ls_table *t, struct ls_subject *out, int n)
{
	struct ls_subject	 s;
	struct ls_entry		*e;
	size_t			 set = (size_t)-1;
	char			 id[32];
	int			 i, got = 0, fresh;
	int64_t			*freed;

	/* Claim candidates in a scratch table to learn their sets. */
	struct ls_table	*scratch = table();

	assert_non_null(freed = calloc(LS_ENTRIES, sizeof(*freed)));
	for (i = 0; got < n && i < 2000000; i++) {
		snprintf(id, sizeof(id), "key_x%d", i);
		subj(&s, id);
		if ((e = lease_claim(scratch, &s, 0, freed, &fresh)) == NULL)
			continue;
		if (set == (size_t)-1)
			set = lease_index(scratch, e) / LS_WAYS;
		if (lease_index(scratch, e) / LS_WAYS == set)
			out[got++] = s;
		lease_release(e);
	}
	free(freed);
	free(scratch);
	(void)t;
	return (got);
}

/*
 * Reclaiming: a full set has no room; a released entry is reused only
 * LS_GRACE_MS after it was freed, with its old expiry kept (every later
 * lease expires after it), and the old subject is not found any more.
 */
static void
test_reclaim(void **state)
{
	struct ls_table		*t = table();
	struct ls_subject	 s[LS_WAYS + 1];
	struct ls_entry		*e[LS_WAYS + 1];
	struct ls_took		 tk;
	int64_t			*freed;
	uint64_t		 x;
	size_t			 i9;
	int			 i, fresh;

	(void)state;
	assert_int_equal(same_set(t, s, LS_WAYS + 1), LS_WAYS + 1);
	assert_non_null(freed = calloc(LS_ENTRIES, sizeof(*freed)));
	for (i = 0; i < LS_WAYS; i++) {
		e[i] = lease_claim(t, &s[i], 0, freed, &fresh);
		assert_non_null(e[i]);
		assert_true(fresh);
	}
	assert_null(lease_claim(t, &s[LS_WAYS], 0, freed, &fresh));
	assert_int_equal(lease_install(e[3], 5000, 2, 2, NULL), 2);
	assert_int_equal(lease_drain(e[3]), 2);
	lease_release(e[3]);
	i9 = lease_index(t, e[3]);
	freed[i9] = 5000;
	assert_null(lease_find(t, &s[3]));
	assert_int_equal(lease_take(t, -1, &s[3], 10, LS_ASK_ALL, &tk), LS_WAIT);
	assert_null(lease_claim(t, &s[LS_WAYS], 5000 + LS_GRACE_MS - 1,
	    freed, &fresh));
	e[LS_WAYS] = lease_claim(t, &s[LS_WAYS], 5000 + LS_GRACE_MS, freed,
	    &fresh);
	assert_ptr_equal(e[LS_WAYS], e[3]);
	assert_true(fresh);
	assert_int_equal(lease_left(e[LS_WAYS], 0, &x), 0);
	assert_int_equal(x, 5000);
	assert_int_equal(lease_take(t, -1, &s[LS_WAYS], 10, LS_ASK_ALL, &tk), LS_WAIT);
	free(freed);
	free(t);
}

/* --- property test: workers against a master, checked by a model ------ */

#define P_WORKERS	3
#define P_STEPS		200000
#define P_TAKEN		20000
#define P_SECONDS	20

struct prop {
	struct ls_table		*t;
	struct ls_subject	 s;
	struct ls_entry		*e;
	int64_t			 clock;		/* shared ms, only grows */
	int			 stop;
	uint64_t		 taken[P_WORKERS];
	uint64_t		 late[P_WORKERS];	/* taken at/after the */
							/* newest expiry */
	int64_t			 newest;	/* newest expiry installed */
};

struct pworker {
	struct prop	*p;
	int		 i;
};

static uint64_t
prop_taken(struct prop *p)
{
	uint64_t	 n = 0;
	int		 i;

	for (i = 0; i < P_WORKERS; i++)
		n += __atomic_load_n(&p->taken[i], __ATOMIC_RELAXED);
	return (n);
}

static void *
prop_worker(void *arg)
{
	struct pworker	*w = arg;
	struct prop	*p = w->p;
	struct ls_took	 tk;
	int64_t		 now, newest;

	while (!__atomic_load_n(&p->stop, __ATOMIC_SEQ_CST)) {
		now = __atomic_load_n(&p->clock, __ATOMIC_SEQ_CST);
		if (lease_take(p->t, -1, &p->s, now, LS_ASK_ALL, &tk) == LS_TAKEN) {
			__atomic_fetch_add(&p->taken[w->i], 1,
			    __ATOMIC_RELAXED);
			/* Expiries only grow: one at or before now is stale. */
			newest = __atomic_load_n(&p->newest, __ATOMIC_SEQ_CST);
			if (now >= newest)
				p->late[w->i]++;
		}
	}
	return (NULL);
}

/*
 * Random interleavings: P_WORKERS threads take units as fast as they can
 * while this thread advances the clock, installs grants (capped, as the
 * master caps them by what Redis counts) and drains.  The model: the word
 * changes only by takes (-1 each), installs (was -> after) and drains
 * (d -> 0), so the units taken are exactly what installs added, less
 * what drains took back, less what is left; and no unit is taken at a
 * time past every expiry installed so far.
 */
static void
test_property(void **state)
{
	struct prop	 p;
	struct pworker	 pw[P_WORKERS];
	pthread_t	 th[P_WORKERS];
	uint64_t	 seed = 0x2545f4914f6cdd1dULL, taken = 0, x;
	int64_t		 added = 0, drained = 0, exp;
	uint32_t	 n, cap, after, was, left;
	int		 i, fresh, step;
	time_t		 deadline;

	(void)state;
	memset(&p, 0, sizeof(p));
	p.t = table();
	subj(&p.s, "key_PROPERTYPROPERTY");
	p.e = lease_claim(p.t, &p.s, 0, never, &fresh);
	p.clock = 1;
	for (i = 0; i < P_WORKERS; i++) {
		pw[i].p = &p;
		pw[i].i = i;
		assert_int_equal(pthread_create(&th[i], NULL, prop_worker,
		    &pw[i]), 0);
	}
	/*
	 * At least P_STEPS steps, and until the workers took P_TAKEN units
	 * (a busy machine may leave them little time), at most P_SECONDS.
	 */
	deadline = time(NULL) + P_SECONDS;
	for (step = 0; step < P_STEPS || (prop_taken(&p) < P_TAKEN &&
	    time(NULL) < deadline); step++) {
		if (step % 64 == 0)
			sched_yield();
		seed ^= seed >> 12;
		seed ^= seed << 25;
		seed ^= seed >> 27;
		switch ((seed * 0x2545f4914f6cdd1dULL >> 33) % 8) {
		case 0:
		case 1:		/* grant n, capped as Redis caps */
			n = (uint32_t)(seed >> 40) % 20;
			exp = __atomic_load_n(&p.clock, __ATOMIC_SEQ_CST) +
			    1 + (int64_t)((seed >> 20) % 50);
			(void)lease_left(p.e, 0, &x);
			if ((int64_t)x > exp)
				exp = (int64_t)x;
			__atomic_store_n(&p.newest, exp, __ATOMIC_SEQ_CST);
			cap = n + (uint32_t)((seed >> 10) % 8);
			after = lease_install(p.e, (uint64_t)exp, n, cap, &was);
			assert_true(after <= cap && after <= was + n);
			added += (int64_t)after - (int64_t)was;
			break;
		case 2:
			drained += lease_drain(p.e);
			break;
		default:
			__atomic_fetch_add(&p.clock, 1, __ATOMIC_SEQ_CST);
			break;
		}
	}
	__atomic_store_n(&p.stop, 1, __ATOMIC_SEQ_CST);
	for (i = 0; i < P_WORKERS; i++) {
		pthread_join(th[i], NULL);
		taken += p.taken[i];
		assert_int_equal(p.late[i], 0);
	}
	left = (uint32_t)(__atomic_load_n(&p.e->le_word, __ATOMIC_SEQ_CST) &
	    LS_LEFT_MASK);
	assert_int_equal((int64_t)taken, added - drained - (int64_t)left);
	assert_true(taken >= P_TAKEN);
	print_message("# lease property: %lld added, %llu taken by %d "
	    "threads, %lld drained, %u left\n", (long long)added,
	    (unsigned long long)taken, P_WORKERS, (long long)drained, left);
	free(p.t);
}

/*
 * Without LS_ASK_EMPTY nothing is asked for a subject with no unit (a key
 * the standing allowance may admit), without LS_ASK_MORE nothing for a
 * lease running low; lease_standing()'s window of time and its caps.
 */
static void
test_standing(void **state)
{
	struct ls_table		*t = table();
	struct ls_subject	 s;
	struct ls_entry		*e;
	struct ls_took		 tk;
	uint32_t		 cap[RL_WINDOWS];
	const uint32_t		 low[RL_WINDOWS] = { 5, 200, 0 };
	int			 fd[2], fresh;

	(void)state;
	mkpipe(fd);
	subj(&s, "key_BBBBBBBBBBBBBBBB");
	assert_int_equal(lease_take(t, fd[1], &s, 100, 0, &tk), LS_WAIT);
	assert_int_equal(demands(fd[0], NULL), 0);
	e = lease_claim(t, &s, 100, never, &fresh);
	assert_non_null(e);
	assert_int_equal(lease_take(t, fd[1], &s, 100, 0, &tk), LS_WAIT);
	assert_int_equal(demands(fd[0], NULL), 0);
	assert_int_equal(lease_take(t, fd[1], &s, 100, LS_ASK_ALL, &tk),
	    LS_WAIT);
	assert_int_equal(demands(fd[0], NULL), 1);
	__atomic_store_n(&e->le_want, 0, __ATOMIC_SEQ_CST);
	e->le_low = 1;
	e->le_renew = 10000;
	lease_install(e, 1000, 3, 3, NULL);
	/* Down to le_low: asked for with LS_ASK_MORE only. */
	assert_int_equal(lease_take(t, fd[1], &s, 200, LS_ASK_EMPTY, &tk),
	    LS_TAKEN);
	assert_int_equal(lease_take(t, fd[1], &s, 200, LS_ASK_EMPTY, &tk),
	    LS_TAKEN);
	assert_int_equal(demands(fd[0], NULL), 0);
	assert_int_equal(lease_take(t, fd[1], &s, 200, LS_ASK_MORE, &tk),
	    LS_TAKEN);
	assert_int_equal(demands(fd[0], NULL), 1);

	/* None registered, then 10 %: from 500 until 900. */
	assert_false(lease_standing(t, lim20, 600, cap));
	t->lt_stand_from = 500;
	t->lt_stand = LS_STAND_WORD(100, 900);
	assert_false(lease_standing(t, lim20, 499, cap));
	assert_true(lease_standing(t, lim20, 500, cap));
	assert_int_equal(cap[0], 2);
	assert_int_equal(cap[1], 20);
	assert_int_equal(cap[2], 100);
	assert_true(lease_standing(t, lim20, 899, cap));
	assert_false(lease_standing(t, lim20, 900, cap));
	/* 10 % of 5 is no unit: no allowance for those limits at all. */
	assert_false(lease_standing(t, low, 600, cap));
	close(fd[0]);
	close(fd[1]);
	free(t);
}

int
main(void)
{
	const struct CMUnitTest	 tests[] = {
		cmocka_unit_test(test_take),
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_deny),
		cmocka_unit_test(test_reclaim),
		cmocka_unit_test(test_property),
		cmocka_unit_test(test_standing),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
