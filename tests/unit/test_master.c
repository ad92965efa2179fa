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
 * setsockopt(2) can be made to fail for SO_REUSEPORT as on a kernel
 * without it.  The listening sockets are real, on a free loopback port.
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

static int	 t_noreuseport;	/* setsockopt(SO_REUSEPORT): ENOPROTOOPT */

int64_t	 test_wall_ms(void);
int64_t	 test_mono_ms(void);
int	 test_kill(pid_t, int);
int	 test_setsockopt(int, int, int, const void *, socklen_t);

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

/* setsockopt(2), failing for SO_REUSEPORT when t_noreuseport is set. */
int
test_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	if (t_noreuseport && level == SOL_SOCKET && name == SO_REUSEPORT) {
		errno = ENOPROTOOPT;
		return (-1);
	}
	return (setsockopt(fd, level, name, val, len));
}

#define util_now_ms	test_wall_ms
#define util_mono_ms	test_mono_ms
#define kill		test_kill
#define setsockopt	test_setsockopt
#include "../../src/master.c"
#undef kill
#undef setsockopt

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

/* A port nothing listens on now, on 127.0.0.1. */
static int
free_port(void)
{
	struct sockaddr_in	 sin;
	socklen_t		 len = sizeof(sin);
	int			 fd, port;

	assert_true((fd = socket(AF_INET, SOCK_STREAM, 0)) != -1);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	port = ntohs(sin.sin_port);
	close(fd);
	return (port);
}

/* A configuration of workers workers listening on 127.0.0.1:port. */
static void
listen_conf(struct config *conf, struct listen_addr *la, int port,
    int workers)
{
	char	 addr[32];

	memset(conf, 0, sizeof(*conf));
	memset(la, 0, sizeof(*la));
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	snprintf(la->la_name, sizeof(la->la_name), "%s", addr);
	assert_int_equal(config_parse_addr(addr, &la->la_ss, &la->la_sslen),
	    0);
	conf->c_listen = la;
	conf->c_nlisten = 1;
	conf->c_workers = workers;
}

/* An integer socket option of fd. */
static int
sockopt(int fd, int name)
{
	socklen_t	 len;
	int		 v = -1;

	len = sizeof(v);
	assert_int_equal(getsockopt(fd, SOL_SOCKET, name, &v, &len), 0);
	return (v);
}

/* The port fd is bound to. */
static int
bound_port(int fd)
{
	struct sockaddr_in	 sin;
	socklen_t		 len = sizeof(sin);

	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	return (ntohs(sin.sin_port));
}

/* Is fd an open descriptor? */
static int
is_open(int fd)
{
	return (fcntl(fd, F_GETFD) != -1);
}

/* The lowest free descriptor number: the same again when nothing leaked. */
static int
lowest_free_fd(void)
{
	int	 fd;

	assert_true((fd = dup(0)) != -1);
	close(fd);
	return (fd);
}

/*
 * One socket per worker on the same port, each with SO_REUSEPORT, the
 * first listening and the others left for their worker to listen on; a
 * reload keeps the sockets of the indexes that remain and binds the
 * added ones.
 */
static void
test_listen_per_worker(void **state)
{
	struct config		 c3, c2, c4;
	struct listen_addr	 l3, l2, l4;
	struct master_listeners	 m3, m2, m4;
	char			 err[256];
	int			 port = free_port(), k, fdmark;

	(void)state;
	master_reuseport = -1;
	t_noreuseport = 0;
	fdmark = lowest_free_fd();
	listen_conf(&c3, &l3, port, 3);
	assert_int_equal(master_listen(&c3, &m3, err, sizeof(err)), 0);
	assert_int_equal(m3.ml_n, 1);
	assert_int_equal(m3.ml_nfds[0], 3);
	for (k = 0; k < 3; k++) {
		assert_int_equal(bound_port(m3.ml_fds[0][k]), port);
		assert_int_equal(sockopt(m3.ml_fds[0][k], SO_REUSEPORT), 1);
		assert_int_equal(sockopt(m3.ml_fds[0][k], SO_ACCEPTCONN),
		    k == 0);
		assert_int_equal(master_worker_fd(&m3, 0, k), m3.ml_fds[0][k]);
	}
	assert_int_equal(master_nsockets(&c3), 3);

	/* Down to 2: the same two sockets; the third is the old set's own. */
	listen_conf(&c2, &l2, port, 2);
	assert_int_equal(master_relisten(&c3, &m3, &c2, &m2, err,
	    sizeof(err)), 0);
	assert_int_equal(m2.ml_nfds[0], 2);
	assert_int_equal(m2.ml_fds[0][0], m3.ml_fds[0][0]);
	assert_int_equal(m2.ml_fds[0][1], m3.ml_fds[0][1]);
	master_close_unshared(&m3, &m2);	/* as master_commit() */
	assert_false(is_open(m3.ml_fds[0][2]));
	assert_true(is_open(m2.ml_fds[0][0]) && is_open(m2.ml_fds[0][1]));

	/* Up to 4: the two kept, two new ones on the same port. */
	listen_conf(&c4, &l4, port, 4);
	assert_int_equal(master_relisten(&c2, &m2, &c4, &m4, err,
	    sizeof(err)), 0);
	assert_int_equal(m4.ml_nfds[0], 4);
	assert_int_equal(m4.ml_fds[0][0], m2.ml_fds[0][0]);
	assert_int_equal(m4.ml_fds[0][1], m2.ml_fds[0][1]);
	for (k = 2; k < 4; k++) {
		assert_int_equal(bound_port(m4.ml_fds[0][k]), port);
		assert_int_equal(sockopt(m4.ml_fds[0][k], SO_ACCEPTCONN), 0);
	}
	master_close_all(&m4);
	assert_int_equal(lowest_free_fd(), fdmark);
}

/*
 * A port some other socket listens on, even one with SO_REUSEPORT (a
 * second keygated, say), is refused as "in use", and nothing is left
 * open; at a reload, the sockets already held stay open.
 */
static void
test_listen_port_in_use(void **state)
{
	struct config		 c1, c2;
	struct listen_addr	 l1, l2[2];
	struct master_listeners	 m1, m2;
	struct sockaddr_in	 sin;
	char			 err[256];
	int			 other, one = 1, fdmark, p1, p2;

	(void)state;
	master_reuseport = -1;
	t_noreuseport = 0;
	p1 = free_port();
	p2 = free_port();
	assert_true((other = socket(AF_INET, SOCK_STREAM, 0)) != -1);
	assert_int_equal(setsockopt(other, SOL_SOCKET, SO_REUSEPORT, &one,
	    sizeof(one)), 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(p2);
	assert_int_equal(bind(other, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(other, 1), 0);
	fdmark = lowest_free_fd();

	listen_conf(&c2, &l2[0], p2, 2);
	assert_int_equal(master_listen(&c2, &m2, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "Address already in use"));
	assert_int_equal(lowest_free_fd(), fdmark);

	/* A reload adding p2 to p1: fails, p1's sockets stay. */
	listen_conf(&c1, &l1, p1, 2);
	assert_int_equal(master_listen(&c1, &m1, err, sizeof(err)), 0);
	fdmark = lowest_free_fd();
	listen_conf(&c2, &l2[0], p1, 2);
	memcpy(&l2[1], &l2[0], sizeof(l2[1]));
	((struct sockaddr_in *)&l2[1].la_ss)->sin_port = htons(p2);
	snprintf(l2[1].la_name, sizeof(l2[1].la_name), "127.0.0.1:%d", p2);
	c2.c_nlisten = 2;
	assert_int_equal(master_relisten(&c1, &m1, &c2, &m2, err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "Address already in use"));
	assert_int_equal(lowest_free_fd(), fdmark);
	assert_true(is_open(m1.ml_fds[0][0]) && is_open(m1.ml_fds[0][1]));
	master_close_all(&m1);
	close(other);
}

/* Without SO_REUSEPORT: one listening socket that every worker shares. */
static void
test_listen_without_reuseport(void **state)
{
	struct config		 conf;
	struct listen_addr	 la;
	struct master_listeners	 ml;
	char			 err[256];
	int			 k;

	(void)state;
	master_reuseport = -1;
	t_noreuseport = 1;
	listen_conf(&conf, &la, free_port(), 3);
	assert_int_equal(master_listen(&conf, &ml, err, sizeof(err)), 0);
	assert_int_equal(master_reuseport, 0);
	assert_int_equal(ml.ml_nfds[0], 1);
	assert_int_equal(sockopt(ml.ml_fds[0][0], SO_ACCEPTCONN), 1);
	for (k = 0; k < 3; k++)
		assert_int_equal(master_worker_fd(&ml, 0, k), ml.ml_fds[0][0]);
	master_close_all(&ml);
	t_noreuseport = 0;
	master_reuseport = -1;
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
		cmocka_unit_test(test_listen_per_worker),
		cmocka_unit_test(test_listen_port_in_use),
		cmocka_unit_test(test_listen_without_reuseport),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
