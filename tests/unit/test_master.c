/*
 * Unit tests for the master's timers (master.c): kill deadlines of stopping
 * workers, the deadline of a pending start or reload, crash-loop back-off
 * and the periodic usage save must follow the monotonic clock, and a step
 * of the wall clock (NTP, date -s) must change none of them.
 *
 * master.c is compiled into this file with its two clocks and kill(2)
 * replaced by the test's own: both clocks start equal, then the wall clock
 * jumps by an hour while the monotonic clock moves by what the test says.
 * kill(2) only records what would have been sent, so no process is needed.
 * The state is a real segment (shm.c) and journal (journal.c) in a
 * mkdtemp() directory.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "util.h"

#define T_START		1000000000LL	/* both clocks, in ms, at the start */
#define T_HOUR		3600000LL
#define T_MAXKILLS	16

static int64_t	 t_wall;		/* what util_now_ms() returns */
static int64_t	 t_mono;		/* what util_mono_ms() returns */
static struct {
	pid_t	 pid;
	int	 sig;
}		 t_kills[T_MAXKILLS];
static int	 t_nkills;

int64_t	 test_wall_ms(void);
int64_t	 test_mono_ms(void);
int	 test_kill(pid_t, int);

/* The injected wall clock. */
int64_t
test_wall_ms(void)
{
	return (t_wall);
}

/* The injected monotonic clock. */
int64_t
test_mono_ms(void)
{
	return (t_mono);
}

/* kill(2) as the master calls it: recorded, not sent. */
int
test_kill(pid_t pid, int sig)
{
	if (t_nkills < T_MAXKILLS) {
		t_kills[t_nkills].pid = pid;
		t_kills[t_nkills].sig = sig;
		t_nkills++;
	}
	return (0);
}

#define util_now_ms	test_wall_ms
#define util_mono_ms	test_mono_ms
#define kill		test_kill
#include "../../src/master.c"
#undef kill

static struct master		 t_m;
static struct master_opts	 t_opts;
static char			 t_dir[64];

/* How many times sig was sent to pid. */
static int
sent(pid_t pid, int sig)
{
	int	 i, n = 0;

	for (i = 0; i < t_nkills; i++)
		if (t_kills[i].pid == pid && t_kills[i].sig == sig)
			n++;
	return (n);
}

/* Step the wall clock by wall ms and the monotonic clock by mono ms. */
static void
step(int64_t wall, int64_t mono)
{
	t_wall += wall;
	t_mono += mono;
}

/* A master with one worker slot in use, as master_run() would set it up. */
static int
setup(void **state)
{
	struct config	*conf;

	t_wall = t_mono = T_START;
	t_nkills = 0;
	memset(&t_m, 0, sizeof(t_m));
	memset(&t_opts, 0, sizeof(t_opts));
	t_opts.mo_path = "keygate.conf";
	t_opts.mo_foreground = 1;
	t_opts.mo_pidfd = -1;
	t_opts.mo_readyfd = -1;
	snprintf(t_dir, sizeof(t_dir), "/tmp/kg-master-XXXXXX");
	assert_non_null(mkdtemp(t_dir));
	assert_non_null(conf = calloc(1, sizeof(*conf)));
	conf->c_workers = 1;
	conf->c_shutdown_timeout = 5000;
	conf->c_log_level = LOGLEVEL_WARN;
	t_m.m_opts = &t_opts;
	t_m.m_conf = conf;
	assert_non_null(t_m.m_shm = shm_create(16, 16));
	shm_keystore(t_m.m_shm, &t_m.m_ks);
	assert_int_equal(journal_init(&t_m.m_journal, t_dir, (uid_t)-1,
	    (gid_t)-1), 0);
	assert_non_null(t_m.m_base = event_base_new());
	assert_non_null(t_m.m_respawn = evtimer_new(t_m.m_base,
	    master_respawn_cb, &t_m));
	assert_non_null(t_m.m_confirm = evtimer_new(t_m.m_base,
	    master_confirm_cb, &t_m));
	t_m.m_usage_ms = T_START;
	t_m.m_gen = t_m.m_gencount = 1;
	*state = &t_m;
	return (0);
}

/* Free the fixture and its state directory. */
static int
teardown(void **state)
{
	char	 path[128];

	event_free(t_m.m_respawn);
	event_free(t_m.m_confirm);
	event_base_free(t_m.m_base);
	journal_close(&t_m.m_journal);
	shm_destroy(t_m.m_shm);
	free(t_m.m_conf);
	free(t_m.m_total);
	snprintf(path, sizeof(path), "%s/%s", t_dir, USAGE_FILE);
	unlink(path);
	snprintf(path, sizeof(path), "%s/%s.tmp", t_dir, USAGE_FILE);
	unlink(path);
	assert_int_equal(rmdir(t_dir), 0);
	return (0);
}

/* A worker of the current generation in the first child entry. */
static struct child *
add_child(pid_t pid)
{
	struct child	*ch = &t_m.m_children[0];

	memset(ch, 0, sizeof(*ch));
	ch->ch_pid = pid;
	ch->ch_gen = t_m.m_gen;
	ch->ch_slot = -1;
	ch->ch_started_ms = T_START;
	return (ch);
}

/*
 * A graceful stop gives a worker shutdown_timeout plus the grace before
 * SIGKILL.  The wall clock jumping an hour ahead must not bring the kill
 * forward; the monotonic deadline passing must.
 */
static void
test_kill_deadline_ignores_wall_steps(void **state)
{
	add_child(4243);
	master_stop(&t_m, 0);
	assert_int_equal(sent(4243, SIGTERM), 1);

	step(T_HOUR, 1000);
	master_tick_cb(-1, 0, &t_m);
	assert_int_equal(sent(4243, SIGKILL), 0);

	step(-2 * T_HOUR, 5000);
	master_tick_cb(-1, 0, &t_m);
	assert_int_equal(sent(4243, SIGKILL), 0);

	step(0, 1001);		/* 7001 ms after the stop: 5000 + 2000 passed */
	master_tick_cb(-1, 0, &t_m);
	assert_int_equal(sent(4243, SIGKILL), 1);
}

/*
 * A start waits MASTER_READY_MS for its workers.  A wall step forward must
 * not fail it (here: the first start, which would make the daemon exit).
 */
static void
test_ready_deadline_ignores_wall_steps(void **state)
{
	master_pending(&t_m);
	step(T_HOUR, 100);
	master_confirm_cb(-1, 0, &t_m);
	assert_int_equal(t_m.m_pending, 1);
	assert_int_equal(t_m.m_exitcode, 0);
	assert_int_equal(t_m.m_stopping, 0);

	step(0, MASTER_READY_MS);
	master_confirm_cb(-1, 0, &t_m);
	assert_int_equal(t_m.m_pending, 0);
	assert_int_equal(t_m.m_exitcode, 1);
	assert_string_equal(t_opts.mo_why,
	    "the new workers were not ready within 10 s");
}

/*
 * A worker that dies 100 ms after its start is replaced after the
 * back-off (100 ms).  The wall clock stepping back an hour meanwhile must
 * not push the replacement an hour out.
 */
static void
test_backoff_ignores_wall_steps(void **state)
{
	struct child	*ch;
	struct timeval	 tv, now;
	int64_t		 left_ms;

	t_m.m_conf->c_workers = 0;	/* master_spawn() must not fork */
	ch = add_child(4244);
	step(100, 100);
	master_reaped(&t_m, ch, 1 << 8, 0);	/* exit status 1 */
	assert_int_equal(t_m.m_backoff_ms, MASTER_BACKOFF_MIN_MS);

	step(-T_HOUR, 50);
	master_spawn(&t_m);
	assert_true(event_pending(t_m.m_respawn, EV_TIMEOUT, &tv));
	gettimeofday(&now, NULL);
	left_ms = (tv.tv_sec - now.tv_sec) * 1000 +
	    (tv.tv_usec - now.tv_usec) / 1000;
	assert_true(left_ms <= MASTER_BACKOFF_MIN_MS);
}

/*
 * A worker that dies on its own is a restart, one told to stop is not;
 * both hand their counts (and CPU time) over to the totals, and the slot
 * starts from zero for the next worker.
 */
static void
test_reaped_counts(void **state)
{
	struct stats_region	*sr = shm_stats(t_m.m_shm);
	struct stats_total	*t = malloc(sizeof(*t));
	struct child		*ch;
	int			 slot, i;

	assert_non_null(t);
	t_m.m_conf->c_workers = 0;	/* master_spawn() must not fork */
	for (i = 0; i < 2; i++) {
		ch = add_child(4250 + i);
		assert_true((slot = shm_worker_attach(t_m.m_shm, t_m.m_gen,
		    0)) >= 0);
		shm_worker_setpid(t_m.m_shm, slot, ch->ch_pid);
		stats_attach(sr, slot);
		ch->ch_slot = slot;
		ch->ch_stopping = i;	/* the second was told to stop */
		stats_request(&sr->sr_slots[slot], STATS_ROUTE_NONE, 404, 10);
		stats_request(&sr->sr_slots[slot], STATS_ROUTE_NONE, 404, 10);
		master_reaped(&t_m, ch, 9, 1500);	/* SIGKILL */
		assert_int_equal(sr->sr_slots[slot].ss_used, 0);
		assert_int_equal(stats_total(sr, t), 0);
		assert_int_equal(t->st_routes[STATS_ROUTE_NONE].rt_count[0],
		    2 * (i + 1));
		assert_int_equal(t->st_restarts, 1);
		assert_int_equal(t->st_retired_cpu_us, 1500 * (i + 1));
	}
	free(t);
}

/* Is keys.usage in the state directory? */
static int
usage_saved(void)
{
	char		 path[128];
	struct stat	 st;

	snprintf(path, sizeof(path), "%s/%s", t_dir, USAGE_FILE);
	return (stat(path, &st) == 0);
}

/*
 * Usage counters are saved every MASTER_USAGE_MS when requests were
 * served.  A wall step back must not postpone the next save by an hour.
 */
static void
test_usage_save_ignores_wall_steps(void **state)
{
	struct shm_worker	*sw;
	char			 path[128];
	int			 slot;

	assert_true((slot = shm_worker_attach(t_m.m_shm, 1, 0)) >= 0);
	shm_worker_setpid(t_m.m_shm, slot, 4245);
	sw = &t_m.m_shm->sh_workers[slot];
	sw->sw_requests = 5;

	step(MASTER_USAGE_MS, MASTER_USAGE_MS);
	master_tick_cb(-1, 0, &t_m);
	assert_true(usage_saved());
	snprintf(path, sizeof(path), "%s/%s", t_dir, USAGE_FILE);
	assert_int_equal(unlink(path), 0);

	sw->sw_requests = 9;
	step(-T_HOUR, MASTER_USAGE_MS);
	master_tick_cb(-1, 0, &t_m);
	assert_true(usage_saved());
}

/*
 * A reload changing state_dir and max_keys: the new configuration gets the
 * running ones (review of issue 10: new workers appended to the new
 * state_dir's journal), and max_keys is read from the master's own copy of
 * the layout, not from the segment's header, which a worker had scribbled
 * to hide the change.
 */
static void
test_reload_keeps_store(void **state)
{
	struct config	 conf;
	char		 err[64];

	(void)state;
	memset(&conf, 0, sizeof(conf));
	assert_non_null(t_m.m_conf->c_state_dir = strdup("/var/lib/keygate"));
	assert_non_null(conf.c_state_dir = strdup("/srv/keygate"));
	conf.c_max_keys = 7;
	t_m.m_shm->sh_max_keys = 7;
	assert_int_equal(master_keep_store(&t_m, &conf, err, sizeof(err)), 0);
	assert_string_equal(conf.c_state_dir, "/var/lib/keygate");
	assert_int_equal(conf.c_max_keys, 16);
	free(conf.c_state_dir);
	free(t_m.m_conf->c_state_dir);
}

/* master_dirname() in place, as master_check_parents() walks up. */
static void
test_dirname_in_place(void **state)
{
	char	 dir[64];

	(void)state;
	snprintf(dir, sizeof(dir), "/run/keygate/sub");
	master_dirname(dir, dir, sizeof(dir));
	assert_string_equal(dir, "/run/keygate");
	master_dirname(dir, dir, sizeof(dir));
	assert_string_equal(dir, "/run");
	master_dirname(dir, dir, sizeof(dir));
	assert_string_equal(dir, "/");
	master_dirname("/a/bcdef/g", dir, 4);
	assert_string_equal(dir, "/a/");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_kill_deadline_ignores_wall_steps, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_ready_deadline_ignores_wall_steps, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_backoff_ignores_wall_steps, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_usage_save_ignores_wall_steps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reload_keeps_store,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_reaped_counts,
		    setup, teardown),
		cmocka_unit_test(test_dirname_in_place),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
