/*
 * The master process; see master.h.
 *
 * Signals reach the master as libevent signal events, so every handler
 * below runs inside the event loop, not in signal context, and may do
 * anything.  Around fork() all signals are blocked: the child first gives
 * its inherited copy of the master's event_base a backend of its own
 * (event_reinit, so that nothing it does touches the master's epoll
 * instance or signal pipe), frees it, and only then unblocks signals and
 * becomes a worker.
 */

#include <sys/types.h>
#ifdef HAVE_SYS_PRCTL_H
#include <sys/prctl.h>
#endif
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "cluster.h"
#include "config.h"
#include "log.h"
#include "master.h"
#include "procstat.h"
#include "route.h"
#include "server.h"
#include "idem.h"
#include "journal.h"
#include "health.h"
#include "jwks.h"
#include "keystore.h"
#include "shm.h"
#include "stats.h"
#include "tls.h"
#include "usage.h"
#include "util.h"

#define MASTER_BACKOFF_MIN_MS	100
#define MASTER_BACKOFF_MAX_MS	10000
#define MASTER_STABLE_MS	2000	/* a worker that lived this long was fine */
#define MASTER_KILL_GRACE_MS	2000	/* after shutdown_timeout, SIGKILL */
#define MASTER_NSIGS		6
#define MASTER_READY_MS		10000	/* new workers must be serving by then */
#define MASTER_CONFIRM_MS	50	/* how often to look whether they are */
#define MASTER_USAGE_MS		10000	/* how often usage counters are saved */
#define MASTER_NOFILE_SLACK	64	/* logs, journal, epoll, pipes, stdio */

/* Which children master_signal_children() signals. */
#define MASTER_ALL		0
#define MASTER_OLD		1	/* generations other than m_gen */
#define MASTER_CURRENT		2	/* generation m_gen */

/*
 * Every time below ending in _ms or _deadline is CLOCK_MONOTONIC
 * (util_mono_ms): a step of the wall clock must neither kill draining
 * workers early nor postpone a respawn, a reload decision or a usage save.
 */
struct child {
	pid_t		 ch_pid;	/* 0: unused entry */
	uint32_t	 ch_gen;
	int		 ch_slot;
	int		 ch_index;	/* 0 .. workers-1: whose sockets */
	int		 ch_stopping;
	int64_t		 ch_started_ms;
	int64_t		 ch_deadline_ms;	/* SIGKILL after, when stopping */
};

struct master {
	struct event_base	*m_base;
	struct master_opts	*m_opts;
	struct config		*m_conf;
	struct master_listeners	 m_lsn;		/* m_conf's listeners */
	struct shm_header	*m_shm;
	struct keystore		 m_ks;
	struct journal		 m_journal;
	struct jwks		*m_jwks;	/* JWKS fetching (jwks.c) */
	struct health		*m_health;	/* upstream checks (health.c) */
	struct cluster		*m_cluster;	/* cluster_redis, or NULL */
	struct usage		*m_usage;	/* per-key history (usage.c) */
	int64_t			 m_usage_ms;	/* usage last saved */
	uint64_t		 m_usage_requests;	/* requests served then */
	uint32_t		 m_gen;		/* generation of new workers */
	uint32_t		 m_gencount;	/* last generation handed out */
	struct child		 m_children[SHM_SLOTS];

	/*
	 * A start or reload waiting for its workers to be ready.  Until they
	 * are, the previous configuration, generation and listeners are kept
	 * so that a failed reload can go back to them.
	 */
	int			 m_pending;
	int			 m_pending_failed;
	int			 m_proven;	/* a new worker was seen serving */
	int			 m_reload_queued;	/* SIGHUP while pending */
	int64_t			 m_pending_deadline;
	struct event		*m_confirm;
	struct config		*m_prev_conf;	/* NULL at the first start */
	uint32_t		 m_prev_gen;
	struct master_listeners	 m_prev_lsn;	/* ml_n 0: none */
	int			 m_exitcode;
	struct event		*m_sigs[MASTER_NSIGS];
	struct event		*m_tick;
	struct event		*m_respawn;
	struct event		*m_drain;	/* shutdown_delay, then stop */
	int			 m_draining;
	int			 m_backoff_ms;
	int64_t			 m_spawn_after_ms;
	int			 m_stopping;	/* 1 graceful, 2 fast */
	struct stats_total	*m_total;	/* scratch of stats_sample() */
};

static const int master_signals[MASTER_NSIGS] = {
	SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGCHLD
};

static void	 master_spawn(struct master *);
static void	 master_stop(struct master *, int);
static void	 master_drain_cb(evutil_socket_t, short, void *);
static void	 master_reloaded(struct master *, int);
static void	 master_stats_names(struct master *, struct config *);
static void	 master_close_unshared(const struct master_listeners *,
		    const struct master_listeners *);
static void	 master_rollback(struct master *, const char *);
static void	 master_stop(struct master *, int);
static void	 master_reload(struct master *);
static void	 master_keep_cluster(const struct config *, struct config *);
static void	 master_settled(struct master *);
static int	 master_gen_ready(struct master *);

/*
 * Listening sockets.  Each gateway address (listen) gets one socket per
 * worker index, all bound with SO_REUSEPORT: the kernel hashes each new
 * connection (its addresses and ports) onto one socket of the group, so
 * the workers share the load evenly, where with one shared socket the
 * worker that happens to wake first takes the connection and one worker
 * could take most of them.  admin_listen and metrics_listen keep one
 * socket that every worker shares: they carry little traffic.
 *
 * The master holds every socket for as long as the configuration uses it
 * and never accepts.  A worker that dies is replaced by one of the same
 * index, which inherits the same socket: closing the last descriptor of a
 * socket in a SO_REUSEPORT group resets the connections queued on it, and
 * a new socket would change which connections hash where.  Each worker
 * closes, right after fork(), the sockets of the other indexes, so that
 * no connection hashed to one worker waits in another.
 *
 * The master listen()s only the first socket of an address it binds; the
 * others are listened on by their worker as it starts (server_setup()),
 * so that the kernel hashes no connection onto a socket before a worker
 * is about to accept on it (a reload that adds workers, a worker that
 * cannot start).  A second keygated on the same address must still fail
 * with EADDRINUSE, not join the group: before the first socket of an
 * address is bound, a socket without SO_REUSEPORT is bound there and
 * closed again, which fails on a port something listens on, as a bind
 * did before SO_REUSEPORT was used.
 *
 * Without SO_REUSEPORT (setsockopt fails with ENOPROTOOPT) every address
 * gets one shared socket, as admin_listen does; said once.
 */
static int	 master_reuseport = -1;	/* unknown, 0 unavailable, 1 */

_Static_assert(MASTER_MAX_WORKERS >= CONFIG_MAX_WORKERS,
    "a socket per worker index and address");

/* Can sockets be bound with SO_REUSEPORT?  Tried (and said) once. */
static int
master_reuseport_ok(void)
{
#ifdef SO_REUSEPORT
	int	 fd, one = 1;

	if (master_reuseport != -1)
		return (master_reuseport);
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return (1);	/* no socket now: the bind will say why */
	master_reuseport = setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one,
	    sizeof(one)) == 0 || errno != ENOPROTOOPT;
	close(fd);
	if (!master_reuseport)
		log_warnx("SO_REUSEPORT is not available: the workers share "
		    "one listening socket per address");
	return (master_reuseport);
#else
	if (master_reuseport == -1)
		log_warnx("SO_REUSEPORT is not available: the workers share "
		    "one listening socket per address");
	return (master_reuseport = 0);
#endif
}

/*
 * A socket bound to la, with SO_REUSEPORT when reuseport, listening when
 * first (see above); the fd, or -1 with a reason in err.
 */
static int
master_socket(const struct listen_addr *la, int reuseport, int first,
    char *err, size_t errlen)
{
	int	 fd, one = 1;

	fd = socket(la->la_ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd == -1)
		goto fail;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1)
		goto fail;
#ifdef SO_REUSEPORT
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one,
	    sizeof(one)) == -1)
		goto fail;
#endif
	if (la->la_ss.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6,
	    IPV6_V6ONLY, &one, sizeof(one)) == -1)
		goto fail;
	if (bind(fd, (const struct sockaddr *)&la->la_ss, la->la_sslen) == -1 ||
	    (first && listen(fd, MASTER_BACKLOG) == -1))
		goto fail;
	return (fd);
fail:
	snprintf(err, errlen, "listen %s: %s", la->la_name, strerror(errno));
	if (fd != -1)
		close(fd);
	return (-1);
}

/*
 * The first socket of an address none of ours is bound to: the probe
 * without SO_REUSEPORT first (see above), then the socket itself.
 */
static int
master_socket_first(const struct listen_addr *la, int reuseport, char *err,
    size_t errlen)
{
	int	 fd;

	if (reuseport) {
		if ((fd = master_socket(la, 0, 0, err, errlen)) == -1)
			return (-1);
		close(fd);
	}
	return (master_socket(la, reuseport, 1, err, errlen));
}

/* Does set ml hold fd? */
static int
master_holds(const struct master_listeners *ml, int fd)
{
	size_t	 i;
	int	 k;

	for (i = 0; ml != NULL && i < ml->ml_n; i++)
		for (k = 0; k < ml->ml_nfds[i]; k++)
			if (ml->ml_fds[i][k] == fd)
				return (1);
	return (0);
}

/* Close the sockets of set a that set b (NULL: none) does not hold. */
static void
master_close_unshared(const struct master_listeners *a,
    const struct master_listeners *b)
{
	size_t	 i;
	int	 k;

	for (i = 0; i < a->ml_n; i++)
		for (k = 0; k < a->ml_nfds[i]; k++)
			if (!master_holds(b, a->ml_fds[i][k]))
				close(a->ml_fds[i][k]);
}

/* In a new worker: close the sockets of ml but the nkeep in keep. */
static void
master_close_except(const struct master_listeners *ml, const int *keep,
    size_t nkeep)
{
	size_t	 i, j;
	int	 k;

	for (i = 0; i < ml->ml_n; i++)
		for (k = 0; k < ml->ml_nfds[i]; k++) {
			for (j = 0; j < nkeep && keep[j] != ml->ml_fds[i][k];
			    j++)
				;
			if (j == nkeep)
				close(ml->ml_fds[i][k]);
		}
}

/* Close every socket of ml; it is empty then. */
static void
master_close_all(struct master_listeners *ml)
{
	master_close_unshared(ml, NULL);
	ml->ml_n = 0;
}

/* The socket worker index uses for address i of ml. */
static int
master_worker_fd(const struct master_listeners *ml, size_t i, int index)
{
	return (ml->ml_fds[i][index < ml->ml_nfds[i] ? index : 0]);
}

/* Sockets a configuration needs: one per worker per listen address. */
static size_t
master_nsockets(const struct config *conf)
{
	return (config_nlisten(conf) + conf->c_nlisten *
	    (size_t)(conf->c_workers - 1));
}

/* Are a and b the same address? */
static int
master_same_addr(const struct listen_addr *a, const struct listen_addr *b)
{
	return (a->la_sslen == b->la_sslen &&
	    memcmp(&a->la_ss, &b->la_ss, a->la_sslen) == 0);
}

/*
 * The listeners of conf into ml, keeping the sockets of old (the running
 * configuration oconf's; NULL at the start) for every address and worker
 * index both have, binding the rest.  On failure, -1 with a reason in err
 * and only what this call bound is closed.
 */
static int
master_relisten(const struct config *oconf, const struct master_listeners *old,
    const struct config *conf, struct master_listeners *ml, char *err,
    size_t errlen)
{
	const struct listen_addr	*la;
	size_t				 i, j, was;
	int				 k, n, fd, reuse;

	reuse = master_reuseport_ok();
	ml->ml_n = 0;
	for (i = 0; i < config_nlisten(conf); i++) {
		la = config_listen(conf, i);
		for (j = 0; j < i; j++)
			if (master_same_addr(config_listen(conf, j), la)) {
				snprintf(err, errlen, "listen %s: the address "
				    "is given twice", la->la_name);
				goto fail;
			}
		was = SIZE_MAX;
		for (j = 0; old != NULL && j < old->ml_n; j++)
			if (master_same_addr(config_listen(oconf, j), la))
				was = j;
		n = reuse && config_listen_kind(conf, i) == LISTEN_GATEWAY ?
		    conf->c_workers : 1;
		ml->ml_nfds[i] = 0;
		ml->ml_n = i + 1;
		for (k = 0; k < n; k++) {
			if (was != SIZE_MAX && k < old->ml_nfds[was])
				fd = old->ml_fds[was][k];
			else if (was == SIZE_MAX && k == 0)
				fd = master_socket_first(la, reuse, err,
				    errlen);
			else
				fd = master_socket(la, reuse, 0, err, errlen);
			if (fd == -1)
				goto fail;
			ml->ml_fds[i][ml->ml_nfds[i]++] = fd;
		}
	}
	return (0);
fail:
	master_close_unshared(ml, old);
	ml->ml_n = 0;
	return (-1);
}

/* Bind every address of conf, at the start. */
int
master_listen(const struct config *conf, struct master_listeners *ml,
    char *err, size_t errlen)
{
	if (config_nlisten(conf) > MASTER_MAX_LISTEN) {
		snprintf(err, errlen, "too many listen directives");
		return (-1);
	}
	return (master_relisten(NULL, NULL, conf, ml, err, errlen));
}

/*
 * Raise RLIMIT_NOFILE to what a worker needs at max_connections: a client
 * and an upstream descriptor per connection, the idle upstream pools, the
 * listening sockets, and MASTER_NOFILE_SLACK for the rest.  The sockets
 * are counted as the master holds them (one per worker per listen
 * address): a worker keeps only its own, but holds all of them from
 * fork() until it has closed the others, and the master needs the room
 * too (during a reload, two configurations' worth, which the client
 * descriptors it never has leave room for).  The soft limit goes up
 * to the hard one; past that only a privileged master can raise both, as
 * nginx's worker_rlimit_nofile does.  Never lowered.  Workers inherit the
 * limit when they are forked.  What cannot be had is said once, here: a
 * worker that runs out of descriptors pauses accepting (server.c).
 */
void
master_nofile(const struct config *conf)
{
	struct rlimit	 rl, want;
	rlim_t		 need;
	size_t		 i;

	need = (rlim_t)conf->c_max_connections * 2 + master_nsockets(conf) +
	    MASTER_NOFILE_SLACK;
	for (i = 0; i < conf->c_nupstreams; i++)
		if (conf->c_upstreams[i].u_type == UPSTREAM_HTTP)
			need += (rlim_t)conf->c_upstreams[i].u_max_idle *
			    (rlim_t)conf->c_upstreams[i].u_nservers;
	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		log_warn("getrlimit RLIMIT_NOFILE");
		return;
	}
	if (rl.rlim_cur >= need)	/* RLIM_INFINITY included */
		return;
	want.rlim_cur = need;
	want.rlim_max = rl.rlim_max >= need ? rl.rlim_max : need;
	if (setrlimit(RLIMIT_NOFILE, &want) == 0) {
		log_info("descriptor limit (RLIMIT_NOFILE) raised from %llu to "
		    "%llu for max_connections %d", (unsigned long long)
		    rl.rlim_cur, (unsigned long long)need,
		    conf->c_max_connections);
		return;
	}
	want.rlim_cur = want.rlim_max = rl.rlim_max;
	if (rl.rlim_max > rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &want) == 0)
		rl.rlim_cur = rl.rlim_max;
	log_warnx("max_connections %d needs %llu descriptors per worker but "
	    "the descriptor limit (RLIMIT_NOFILE) is %llu: raise it (ulimit "
	    "-n, systemd LimitNOFILE=) or lower max_connections; a worker "
	    "that runs out stops accepting for a moment",
	    conf->c_max_connections, (unsigned long long)need,
	    (unsigned long long)rl.rlim_cur);
}

/*
 * Create (and hand to the worker user) a log file workers will reopen.
 *
 * The log directory may be writable by the worker user, who could put a
 * symbolic or hard link to any file of root's there; the master is root.
 * So the path is opened without following a link and without waiting on a
 * FIFO, must be a regular file with one link, and is chowned through the
 * descriptor that was checked, only if this call created it (O_EXCL) or
 * it is root's own (log_init() and log_reopen() create the error log as
 * root): a hard link is refused by its link count, a symbolic one by
 * O_NOFOLLOW, so the file chowned is the one in the log directory, not
 * one elsewhere.  A file of a third user is refused, never chowned.
 */
static int
master_prepare_file(const char *path, const struct config *conf, char *err,
    size_t errlen)
{
	struct stat	 st;
	const char	*why;
	int		 fd, give = conf->c_user != NULL && geteuid() == 0;

	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0640);
	if (fd != -1) {
		if (give && fchown(fd, conf->c_uid, conf->c_gid) == -1) {
			snprintf(err, errlen, "cannot chown %s to %s: %s", path,
			    conf->c_user, strerror(errno));
			(void)unlink(path);
			close(fd);
			return (-1);
		}
		close(fd);
		return (0);
	}
	if (errno != EEXIST) {	/* O_EXCL: a link gives EEXIST too */
		snprintf(err, errlen, "cannot create %s: %s", path,
		    strerror(errno));
		return (-1);
	}
	if ((fd = util_open_append(path, 0, &st, &why)) < 0) {
		snprintf(err, errlen, "cannot use %s: %s", path, why);
		return (-1);
	}
	if (give && st.st_uid != conf->c_uid && st.st_uid != 0)
		snprintf(err, errlen, "%s belongs to uid %lu, not to user %s, "
		    "which must be able to reopen it: chown it or remove it",
		    path, (unsigned long)st.st_uid, conf->c_user);
	else if (give && st.st_uid == 0 &&
	    fchown(fd, conf->c_uid, conf->c_gid) == -1)
		snprintf(err, errlen, "cannot chown %s to %s: %s", path,
		    conf->c_user, strerror(errno));
	else {
		close(fd);
		return (0);
	}
	close(fd);
	return (-1);
}

/* Create log files a worker must be able to reopen as the configured user. */
int
master_prepare_logs(const struct config *conf, char *err, size_t errlen)
{
	if (conf->c_access_log != NULL &&
	    master_prepare_file(conf->c_access_log, conf, err, errlen) == -1)
		return (-1);
	if (conf->c_error_log[0] == '/' &&
	    master_prepare_file(conf->c_error_log, conf, err, errlen) == -1)
		return (-1);
	return (0);
}

/* The uid and gid files in state_dir should belong to (-1: unchanged). */
static void
master_owner(const struct config *conf, uid_t *uid, gid_t *gid)
{
	*uid = (uid_t)-1;
	*gid = (gid_t)-1;
	if (conf->c_user != NULL && geteuid() == 0) {
		*uid = conf->c_uid;
		*gid = conf->c_gid;
	}
}

/*
 * keys.lock in state_dir, flock'ed at start (journal_lock) and never
 * closed: the master and every worker it forks share the lock, so that no
 * other keygated can load or append to the journal until they all exit.
 */
static int	 master_lockfd = -1;

/*
 * Start-up: take keys.lock (waiting, for at most the time draining
 * workers of a killed master may take, for them to exit), load
 * keys.snapshot and keys.journal into the segment's key store, then the
 * usage counters, then compact if the journal holds anything (so it
 * starts empty, and a torn line or a repair found now is settled).  Any
 * damage other than a torn last line or a seq going backwards stops the
 * start with the file and line.
 */
int
master_keys_load(const struct config *conf, struct shm_header *shm, char *err,
    size_t errlen)
{
	struct keystore	 ks;
	struct journal	 j;
	char		 why[CONFIG_ERRLEN];
	uid_t		 uid;
	gid_t		 gid;
	int		 rc = -1;

	master_owner(conf, &uid, &gid);
	shm_keystore(shm, &ks);
	if (journal_init(&j, conf->c_state_dir, uid, gid) == -1) {
		snprintf(err, errlen, "out of memory");
		return (-1);
	}
	if (master_lockfd == -1 && (master_lockfd = journal_lock(&j,
	    conf->c_shutdown_delay + conf->c_shutdown_timeout +
	    MASTER_KILL_GRACE_MS + 1000, err, errlen)) == -1)
		goto done;
	if (keystore_lock(&ks, getpid(), 0) != KS_OK) {
		snprintf(err, errlen, "the key store is locked");
		goto done;
	}
	/*
	 * Idempotency-Key entries: those compactions took out of the
	 * journal, then those its put lines carry.
	 */
	if (idem_load(&j, shm_idem(shm), util_now_ms(), why,
	    sizeof(why)) == -1)
		log_warnx("Idempotency-Key entries not restored: %s", why);
	journal_set_put_hook(idem_replay, shm_idem(shm));
	if (journal_load(&j, &ks, err, errlen) == -1)
		goto unlock;
	if (journal_load_usage(&j, &ks, why, sizeof(why)) == -1)
		log_warnx("usage counters not restored: %s", why);
	/*
	 * A journal with lines, or a snapshot in the old format: compact,
	 * saving the Idempotency-Key entries first (the journal lines that
	 * carry them go with the compaction).
	 */
	if (journal_compact_due(&j) && idem_save(&j, shm_idem(shm),
	    util_now_ms(), why, sizeof(why)) == -1)
		log_warnx("Idempotency-Key entries not saved: %s", why);
	if (journal_compact_due(&j) &&
	    journal_compact(&j, &ks, why, sizeof(why)) == -1)
		log_warnx("key store compaction failed: %s", why);
	else if (journal_renew(&j, why, sizeof(why)) == -1)
		log_warnx("keys.journal not renewed for the workers: %s", why);
	log_info("key store: %u keys (max_keys %u)", keystore_count(&ks),
	    conf->c_max_keys);
	rc = 0;
unlock:
	keystore_unlock(&ks, getpid());
done:
	journal_close(&j);
	return (rc);
}

/*
 * A worker died holding the key store lock (kill -9 in the middle of an
 * admin write): undo its half-made change, then apply the journal lines it
 * or anyone wrote but memory has not seen, so memory and disk agree again.
 */
static void
master_keys_repair(struct master *m, pid_t pid)
{
	char	 err[CONFIG_ERRLEN];

	if (!keystore_repair(&m->m_ks, pid, getpid()))
		return;
	if (journal_replay_tail(&m->m_journal, &m->m_ks, err,
	    sizeof(err)) == -1)
		log_warnx("worker %ld died during a key store write; the "
		    "journal could not be replayed: %s", (long)pid, err);
	else
		log_warnx("worker %ld died during a key store write; the key "
		    "store was repaired", (long)pid);
	keystore_unlock(&m->m_ks, getpid());
}

/*
 * Requests answered by the workers alive now (a worker that exits takes its
 * count with it, so this can go down: only a change matters).
 */
static uint64_t
master_requests(const struct master *m)
{
	uint64_t	 n = 0;
	int		 i;

	for (i = 0; i < SHM_SLOTS; i++)
		if (SHM_LOAD(&m->m_shm->sh_workers[i].sw_pid) != 0)
			n += SHM_LOAD(&m->m_shm->sh_workers[i].sw_requests);
	return (n);
}

/*
 * Once a second: compact the journal when it has grown past the snapshot
 * (only if no admin write holds the lock right now: the next tick tries
 * again), and save the usage counters every MASTER_USAGE_MS if requests
 * were served since the last save.
 */
static void
master_keys_tick(struct master *m, int64_t now)
{
	char		 err[CONFIG_ERRLEN];
	off_t		 size;
	uint64_t	 requests;

	size = journal_size(&m->m_journal);
	if (size >= JOURNAL_COMPACT_MIN &&
	    size > journal_snapshot_size(&m->m_journal) &&
	    keystore_lock(&m->m_ks, getpid(), 0) == KS_OK) {
		if (idem_save(&m->m_journal, shm_idem(m->m_shm),
		    util_now_ms(), err, sizeof(err)) == -1)
			log_warnx("Idempotency-Key entries not saved: %s", err);
		if (journal_compact(&m->m_journal, &m->m_ks, err,
		    sizeof(err)) == -1)
			log_warnx("key store compaction failed: %s", err);
		keystore_unlock(&m->m_ks, getpid());
	}
	if (now - m->m_usage_ms >= MASTER_USAGE_MS) {
		m->m_usage_ms = now;
		requests = master_requests(m);
		if (requests == m->m_usage_requests)
			return;		/* no request, no new usage */
		m->m_usage_requests = requests;
		if (journal_save_usage(&m->m_journal, &m->m_ks, err,
		    sizeof(err)) == -1)
			log_warnx("usage counters not saved: %s", err);
	}
}

/*
 * In a new child: drop the master's event machinery without touching it,
 * and every listening socket but its own (fds, nfds of them).
 */
static void
master_child_detach(struct master *m, const int *fds, size_t nfds)
{
	int	 i;

	event_reinit(m->m_base);
	for (i = 0; i < MASTER_NSIGS; i++)
		event_free(m->m_sigs[i]);
	event_free(m->m_tick);
	event_free(m->m_respawn);
	event_free(m->m_drain);
	event_free(m->m_confirm);
	event_base_free(m->m_base);
	m->m_base = NULL;
	/*
	 * During a reload the master still holds the previous generation's
	 * listeners; one the new configuration dropped must not live on in
	 * this worker, or it would stay bound (queueing connections nobody
	 * accepts) until the worker exits.  Nor must another index's socket:
	 * this worker would hold it open after that worker died, and could
	 * not accept what is queued there, as it does not listen to it.
	 */
	master_close_unshared(&m->m_prev_lsn, &m->m_lsn);
	master_close_except(&m->m_lsn, fds, nfds);
	jwks_child_detach(m->m_jwks);
	health_child_detach(m->m_health);
	cluster_child_detach(m->m_cluster, -1);
	/* The Redis passwords are the master's alone. */
	config_forget_cluster_secrets(m->m_conf);
	config_forget_cluster_secrets(m->m_prev_conf);
	/*
	 * Until the worker installs its own handlers, a SIGUSR1 the master
	 * forwards (log reopening) must not kill it, and SIGHUP/SIGINT are
	 * the master's anyway.  SIGTERM/SIGQUIT get their default action back
	 * but stay blocked (master_fork) until server_run() has handlers for
	 * them, so a stop sent to a worker still starting is a clean stop,
	 * not a death by signal.
	 */
	for (i = 0; i < MASTER_NSIGS; i++)
		signal(master_signals[i], master_signals[i] == SIGUSR1 ||
		    master_signals[i] == SIGHUP || master_signals[i] == SIGINT ?
		    SIG_IGN : SIG_DFL);
	if (m->m_opts->mo_pidfd != -1)
		close(m->m_opts->mo_pidfd);
	if (m->m_opts->mo_readyfd != -1)
		close(m->m_opts->mo_readyfd);
}

/* Fork worker index of the current generation; -1 if that failed. */
static int
master_fork(struct master *m, struct child *ch, int index)
{
	struct server_env	 env;
	sigset_t		 all, old;
	pid_t			 pid, master = getpid();
	int			 slot, fds[MASTER_MAX_LISTEN], clfds[CL_CHANS];
	int			 ncl = 0;
	size_t			 i;

	/* Shown in the stats: wall-clock time. */
	slot = shm_worker_attach(m->m_shm, m->m_gen, util_now_ms() / 1000);
	if (slot != -1)
		stats_attach(shm_stats(m->m_shm), slot);
	/*
	 * Its channels to the cluster (admin writes go through them): a
	 * worker without a slot would have none and write its node alone,
	 * so in a cluster it is not started (the master tries again).
	 */
	if (m->m_cluster != NULL) {
		if (slot == -1) {
			log_warnx("no shared-memory slot for a new worker: "
			    "not started (a cluster's workers need one)");
			return (-1);
		}
		if (cluster_chan_open(m->m_cluster, slot, clfds) == -1) {
			shm_worker_release(m->m_shm, slot);
			return (-1);
		}
		ncl = CL_CHANS;
	}
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	if ((pid = fork()) == -1) {
		log_warn("fork");
		if (slot != -1)
			shm_worker_release(m->m_shm, slot);
		for (i = 0; i < (size_t)ncl; i++)
			close(clfds[i]);
		cluster_chan_close(m->m_cluster, slot);
		sigprocmask(SIG_SETMASK, &old, NULL);
		return (-1);
	}
	if (pid == 0) {
		for (i = 0; i < m->m_lsn.ml_n; i++)
			fds[i] = master_worker_fd(&m->m_lsn, i, index);
		master_child_detach(m, fds, m->m_lsn.ml_n);
		/* The path names the instance when several run. */
		util_proctitle("worker process -c %s", m->m_opts->mo_path);
#ifdef HAVE_SYS_PRCTL_H
		/* top(1) and pidof(8) tell workers from the master. */
		prctl(PR_SET_NAME, "keygated-worker");
#endif
		sigaddset(&old, SIGTERM);	/* server_run() unblocks them */
		sigaddset(&old, SIGQUIT);
		sigprocmask(SIG_SETMASK, &old, NULL);
		env.se_conf = m->m_conf;
		env.se_lfds = fds;
		env.se_nlfds = m->m_lsn.ml_n;
		env.se_shm = m->m_shm;
		env.se_slot = slot;
		/* Not getppid(): the master may already be gone. */
		env.se_master = master;
		env.se_clfds = clfds;
		env.se_nclfds = ncl;
		env.se_leasefd = cluster_demand_fd(m->m_cluster);
		exit(server_run(&env));
	}
	for (i = 0; i < (size_t)ncl; i++)
		close(clfds[i]);
	shm_worker_setpid(m->m_shm, slot, pid);
	sigprocmask(SIG_SETMASK, &old, NULL);
	memset(ch, 0, sizeof(*ch));
	ch->ch_pid = pid;
	ch->ch_gen = m->m_gen;
	ch->ch_slot = slot;
	ch->ch_index = index;
	ch->ch_started_ms = util_mono_ms();
	log_debug("%s: worker %ld started (generation %u, index %d)", __func__,
	    (long)pid, m->m_gen, index);
	return (0);
}

/* Does a worker of the current generation, not stopping, have index? */
static int
master_index_live(const struct master *m, int index)
{
	int	 i;

	for (i = 0; i < SHM_SLOTS; i++)
		if (m->m_children[i].ch_pid != 0 &&
		    !m->m_children[i].ch_stopping &&
		    m->m_children[i].ch_gen == m->m_gen &&
		    m->m_children[i].ch_index == index)
			return (1);
	return (0);
}

/*
 * Start workers until the configured number runs, honouring back-off: one
 * for each index 0 .. workers-1 that has none, so that a replacement gets
 * the sockets of the worker it replaces.
 */
static void
master_spawn(struct master *m)
{
	struct timeval	 tv;
	int64_t		 now = util_mono_ms(), wait;
	int		 i, index;

	if (m->m_stopping)
		return;
	if (now < m->m_spawn_after_ms) {
		wait = m->m_spawn_after_ms - now;
		util_ms_timeval(wait, &tv);
		evtimer_add(m->m_respawn, &tv);
		return;
	}
	for (index = 0; index < m->m_conf->c_workers; index++) {
		if (master_index_live(m, index))
			continue;
		for (i = 0; i < SHM_SLOTS && m->m_children[i].ch_pid != 0; i++)
			;
		if (i == SHM_SLOTS) {
			log_warnx("too many worker processes; not starting more");
			return;
		}
		if (master_fork(m, &m->m_children[i], index) == -1) {
			tv.tv_sec = 0;
			tv.tv_usec = MASTER_BACKOFF_MIN_MS * 1000;
			m->m_spawn_after_ms = now + MASTER_BACKOFF_MIN_MS;
			evtimer_add(m->m_respawn, &tv);
			return;
		}
	}
}

static void
master_respawn_cb(evutil_socket_t fd, short what, void *arg)
{
	master_spawn(arg);
}

/* Say how a worker ended, in the words an operator wants. */
static void
master_report(const struct master *m, const struct child *ch, int status,
    uint64_t requests)
{
	int	 expected = ch->ch_stopping || m->m_stopping;

	if (WIFEXITED(status) && (WEXITSTATUS(status) == 0 || !expected) &&
	    expected)
		log_info("worker %ld exited after %" PRIu64 " requests",
		    (long)ch->ch_pid, requests);
	else if (WIFEXITED(status))
		log_warnx("worker %ld exited with status %d after %" PRIu64
		    " requests", (long)ch->ch_pid, WEXITSTATUS(status),
		    requests);
	else if (WIFSIGNALED(status))
		log_warnx("worker %ld killed by signal %d (%s)%s after %" PRIu64
		    " requests", (long)ch->ch_pid, WTERMSIG(status),
		    strsignal(WTERMSIG(status)),
		    WCOREDUMP(status) ? ", core dumped" : "", requests);
}

/*
 * A worker ended.  One that died on its own is replaced; if it lived less
 * than MASTER_STABLE_MS the replacement waits, doubling from 100 ms up to
 * 10 s, so a worker that crashes at once cannot make the master spin.
 */
static void
master_reaped(struct master *m, struct child *ch, int status, uint64_t cpu_us)
{
	uint64_t	 requests = 0;
	int64_t		 now = util_mono_ms();
	int		 ready = 1;

	if (ch->ch_slot >= 0) {
		requests = SHM_LOAD(&m->m_shm->sh_workers[ch->ch_slot].sw_requests);
		ready = SHM_LOAD(&m->m_shm->sh_workers[ch->ch_slot].sw_ready);
		/* Its counts live on in the totals: they never go back. */
		stats_fold(shm_stats(m->m_shm), ch->ch_slot, cpu_us);
		cluster_chan_close(m->m_cluster, ch->ch_slot);
	}
	shm_worker_detach(m->m_shm, ch->ch_pid);
	master_report(m, ch, status, requests);
	master_keys_repair(m, ch->ch_pid);
	if (ready && ch->ch_gen == m->m_gen)
		m->m_proven = 1;
	ch->ch_pid = 0;
	if (m->m_pending)
		(void)master_gen_ready(m);	/* a sibling may be serving */
	if (m->m_pending && !m->m_proven && !ch->ch_stopping &&
	    ch->ch_gen == m->m_gen) {
		/*
		 * A start or reload none of whose workers ever served fails
		 * whole; once one has, the configuration works and a death is
		 * an ordinary crash.
		 */
		m->m_pending_failed = 1;
		return;
	}
	if (!ch->ch_stopping && !m->m_stopping && ch->ch_gen == m->m_gen) {
		stats_restarted(shm_stats(m->m_shm));
		if (now - ch->ch_started_ms < MASTER_STABLE_MS) {
			m->m_backoff_ms = m->m_backoff_ms == 0 ?
			    MASTER_BACKOFF_MIN_MS : m->m_backoff_ms * 2;
			if (m->m_backoff_ms > MASTER_BACKOFF_MAX_MS)
				m->m_backoff_ms = MASTER_BACKOFF_MAX_MS;
			m->m_spawn_after_ms = now + m->m_backoff_ms;
			log_warnx("worker died %" PRId64 " ms after it started; "
			    "next start in %d ms", now - ch->ch_started_ms,
			    m->m_backoff_ms);
		} else
			m->m_backoff_ms = 0;
	}
}

/* Collect every ended child. */
static void
master_reap(struct master *m)
{
	struct rusage	 ru;
	uint64_t	 cpu_us;
	pid_t		 pid;
	int		 status, i, left = 0;

	while ((pid = wait4(-1, &status, WNOHANG, &ru)) > 0) {
		cpu_us = (uint64_t)ru.ru_utime.tv_sec * 1000000 +
		    (uint64_t)ru.ru_utime.tv_usec +
		    (uint64_t)ru.ru_stime.tv_sec * 1000000 +
		    (uint64_t)ru.ru_stime.tv_usec;
		for (i = 0; i < SHM_SLOTS; i++)
			if (m->m_children[i].ch_pid == pid) {
				master_reaped(m, &m->m_children[i], status,
				    cpu_us);
				break;
			}
	}
	if (m->m_pending && m->m_pending_failed) {
		master_rollback(m, "a new worker exited before it was ready");
		master_settled(m);
	}
	for (i = 0; i < SHM_SLOTS; i++)
		if (m->m_children[i].ch_pid != 0)
			left++;
	if (m->m_stopping && left == 0)
		event_base_loopexit(m->m_base, NULL);
	else
		master_spawn(m);
}

/* Signal children (MASTER_ALL/_OLD/_CURRENT); stop signals set a deadline. */
static void
master_signal_children(struct master *m, int sig, int which, int64_t deadline)
{
	struct child	*ch;
	int		 i;

	for (i = 0; i < SHM_SLOTS; i++) {
		ch = &m->m_children[i];
		if (ch->ch_pid == 0 ||
		    (which == MASTER_OLD && ch->ch_gen == m->m_gen) ||
		    (which == MASTER_CURRENT && ch->ch_gen != m->m_gen))
			continue;
		if (sig == SIGTERM || sig == SIGQUIT) {
			if (ch->ch_stopping && sig == SIGTERM)
				continue;
			ch->ch_stopping = 1;
			ch->ch_deadline_ms = deadline;
		}
		if (kill(ch->ch_pid, sig) == -1 && errno != ESRCH)
			log_warn("kill %ld", (long)ch->ch_pid);
	}
}

/*
 * Once a second: kill stopping workers past their deadline, do the key
 * store's periodic work, rotate the TLS ticket keys when due (a no-op
 * most seconds; tls.c).
 */
/*
 * The metrics ids of conf's route names and upstream servers, before its
 * workers are forked: a name keeps its id across reloads, so its counters
 * go on from where they were.
 */
static void
master_stats_names(struct master *m, struct config *conf)
{
	struct stats_region	*sr = shm_stats(m->m_shm);
	struct route		*r;
	struct upstream		*u;
	struct upstream_server	*us;
	size_t			 i;
	int			 k;

	for (i = 0; i < conf->c_routes.rt_nroutes; i++) {
		r = &conf->c_routes.rt_routes[i];
		r->r_stat_id = stats_route_id(sr, r->r_name);
		if (r->r_stat_id == STATS_ROUTE_OTHER)
			log_warnx("route %s: more than %d route names since "
			    "the start; its metrics count as route=\"other\"",
			    r->r_name, STATS_ROUTES - 2);
	}
	for (i = 0; i < conf->c_nupstreams; i++) {
		u = &conf->c_upstreams[i];
		if (u->u_type != UPSTREAM_HTTP)
			continue;	/* echo answers in the worker itself */
		for (k = 0; k < u->u_nservers; k++) {
			us = &u->u_servers[k];
			us->us_stat_id = stats_upstream_id(sr, u->u_name,
			    us->us_server);
			if (us->us_stat_id == STATS_UPSTREAM_OTHER)
				log_warnx("upstream %s: more than %d upstream "
				    "servers since the start; the metrics of %s "
				    "count as upstream=\"other\"", u->u_name,
				    STATS_UPSTREAMS - 1, us->us_server);
		}
	}
}

/* A reload applied (ok) or refused: keygate_config_reloads_total. */
static void
master_reloaded(struct master *m, int ok)
{
	stats_reloaded(shm_stats(m->m_shm), ok, util_now_ms() / 1000);
}

/*
 * Once a second: process_* of the master and of the live workers summed
 * (with the CPU of the ended ones), and a sample for the last minute.
 */
static void
master_stats_tick(struct master *m)
{
	struct stats_region	*sr = shm_stats(m->m_shm);
	struct stats_proc	 pm, pw;
	struct rlimit		 rl;
	int64_t			 oldest = 0, started;
	int			 i;

	memset(&pm, 0, sizeof(pm));
	memset(&pw, 0, sizeof(pw));
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		pm.pr_max_fds = pw.pr_max_fds = rl.rlim_cur == RLIM_INFINITY ?
		    0 : (uint64_t)rl.rlim_cur;
	pm.pr_start = sr->sr_master.sm_started;
	(void)procstat_add(getpid(), &pm);
	for (i = 0; i < SHM_SLOTS; i++) {
		if (m->m_children[i].ch_pid == 0)
			continue;
		(void)procstat_add(m->m_children[i].ch_pid, &pw);
		if (m->m_children[i].ch_slot < 0)
			continue;
		started = m->m_shm->sh_workers[m->m_children[i].ch_slot].sw_started;
		if (oldest == 0 || (started > 0 && started < oldest))
			oldest = started;
	}
	pw.pr_cpu_us += sr->sr_master.sm_retired_cpu_us;
	pw.pr_start = oldest;
	stats_proc_set(sr, STATS_PROC_MASTER, &pm);
	stats_proc_set(sr, STATS_PROC_WORKERS, &pw);
	if (m->m_total == NULL && (m->m_total = malloc(sizeof(*m->m_total))) ==
	    NULL)
		return;		/* no last-minute figures until memory */
	stats_sample(sr, m->m_total, util_now_ms() / 1000);
}

static void
master_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct master	*m = arg;
	struct child	*ch;
	int64_t		 now = util_mono_ms();
	int		 i;

	for (i = 0; i < SHM_SLOTS; i++) {
		ch = &m->m_children[i];
		if (ch->ch_pid != 0 && ch->ch_stopping &&
		    now > ch->ch_deadline_ms) {
			log_warnx("worker %ld did not stop in time; killing it",
			    (long)ch->ch_pid);
			kill(ch->ch_pid, SIGKILL);
			ch->ch_deadline_ms = INT64_MAX;
		}
	}
	master_keys_tick(m, now);
	master_stats_tick(m);
	/* At the first tick of each minute; logs its own failures. */
	(void)usage_fold(m->m_usage, &m->m_ks, util_now_ms(), 0);
	if (tls_tickets_rotate(&m->m_shm->sh_tickets, util_now_ms() / 1000) ==
	    -1)
		log_warnx("TLS ticket keys not rotated: no random bytes");
}

/* Are all workers of the current generation serving?  Notes any that is. */
static int
master_gen_ready(struct master *m)
{
	const struct child	*ch;
	int			 i, n = 0, all = 1;

	for (i = 0; i < SHM_SLOTS; i++) {
		ch = &m->m_children[i];
		if (ch->ch_pid == 0 || ch->ch_stopping || ch->ch_gen != m->m_gen)
			continue;
		if (ch->ch_slot >= 0 &&
		    !SHM_LOAD(&m->m_shm->sh_workers[ch->ch_slot].sw_ready))
			all = 0;
		else
			m->m_proven = 1;
		n++;
	}
	return (all && n >= m->m_conf->c_workers);
}

/* Wait for the workers of a start or reload (see master_confirm_cb). */
static void
master_pending(struct master *m)
{
	struct timeval	 tv = { 0, MASTER_CONFIRM_MS * 1000 };

	m->m_pending = 1;
	m->m_pending_failed = 0;
	m->m_proven = 0;
	m->m_pending_deadline = util_mono_ms() + MASTER_READY_MS;
	evtimer_add(m->m_confirm, &tv);
}

/*
 * The new workers are serving: now, and only now, the old generation is
 * told to stop accepting and finish what it has, and the listeners the new
 * configuration dropped are closed.
 */
static void
master_commit(struct master *m)
{
	struct config	*old = m->m_prev_conf;
	char		 err[CONFIG_ERRLEN];
	int64_t		 deadline;

	m->m_pending = 0;
	if (old == NULL) {
		log_info("keygated %s started: %zu listener(s), %d worker(s)",
		    PACKAGE_VERSION, m->m_lsn.ml_n, m->m_conf->c_workers);
		if (m->m_opts->mo_readyfd != -1) {
			(void)write(m->m_opts->mo_readyfd, "1", 1);
			close(m->m_opts->mo_readyfd);
			m->m_opts->mo_readyfd = -1;
		}
		return;
	}
	if (!m->m_opts->mo_foreground && strcmp(old->c_error_log,
	    m->m_conf->c_error_log) != 0 && log_init(m->m_conf->c_error_log,
	    m->m_conf->c_log_level, NULL, err, sizeof(err)) == -1)
		log_warnx("%s", err);
	log_setlevel(m->m_conf->c_log_level);
	/*
	 * The sockets the new configuration dropped (an address, or the
	 * indexes past a smaller worker count) are closed first, so that the
	 * old workers' copies are the last: one that stops accepts what is
	 * queued on its sockets before it closes them (server_stop()), where
	 * closing the master's copy after that would reset it.
	 */
	master_close_unshared(&m->m_prev_lsn, &m->m_lsn);
	m->m_prev_lsn.ml_n = 0;	/* closed: the numbers may be reused */
	deadline = util_mono_ms() + old->c_shutdown_timeout + MASTER_KILL_GRACE_MS;
	master_signal_children(m, SIGTERM, MASTER_OLD, deadline);
	health_retain(m->m_health, m->m_conf);
	config_free(old);
	m->m_prev_conf = NULL;
	master_reloaded(m, 1);
	log_info("configuration reloaded from %s (generation %u, %d workers)",
	    m->m_opts->mo_path, m->m_gen, m->m_conf->c_workers);
}

/*
 * The new workers did not start: stop them and go back to the previous
 * configuration, whose workers never stopped serving.  At the first start
 * there is nothing to go back to, and the daemon exits.
 */
static void
master_rollback(struct master *m, const char *why)
{
	struct config	*conf = m->m_conf;
	char		 why_jwks[CONFIG_ERRLEN];

	m->m_pending = 0;
	m->m_pending_failed = 0;
	if (m->m_prev_conf == NULL) {
		log_warnx("workers failed to start: %s", why);
		/* main() hands it to the parent waiting in daemonize(). */
		snprintf(m->m_opts->mo_why, sizeof(m->m_opts->mo_why), "%s", why);
		m->m_exitcode = 1;
		master_stop(m, 1);
		return;
	}
	log_warnx("reload failed, keeping the running configuration: %s", why);
	master_reloaded(m, 0);
	master_signal_children(m, SIGQUIT, MASTER_CURRENT, util_mono_ms() +
	    MASTER_KILL_GRACE_MS);
	master_close_unshared(&m->m_lsn, &m->m_prev_lsn);
	m->m_lsn = m->m_prev_lsn;
	m->m_prev_lsn.ml_n = 0;
	m->m_conf = m->m_prev_conf;
	m->m_prev_conf = NULL;
	/*
	 * Before conf is freed: the fetcher must not point into it.  Going
	 * back needs no new slot or timer, so this does not fail; if it
	 * did, conf would still be the fetcher's and is kept.
	 */
	if (jwks_reconfigure(m->m_jwks, m->m_conf, why_jwks,
	    sizeof(why_jwks)) == -1) {
		log_warnx("jwt providers: %s", why_jwks);
		conf = NULL;
	}
	health_retain(m->m_health, m->m_conf);
	stats_workers(shm_stats(m->m_shm), (uint32_t)m->m_conf->c_workers);
	m->m_gen = m->m_prev_gen;
	m->m_backoff_ms = 0;
	m->m_spawn_after_ms = 0;
	config_free(conf);
	master_spawn(m);
}

/* A start or reload has settled: run a SIGHUP that came in meanwhile. */
static void
master_settled(struct master *m)
{
	if (!m->m_pending && m->m_reload_queued && !m->m_stopping) {
		m->m_reload_queued = 0;
		master_reload(m);
	}
}

/* Every MASTER_CONFIRM_MS while a start or reload is pending. */
static void
master_confirm_cb(evutil_socket_t fd, short what, void *arg)
{
	struct master	*m = arg;
	struct timeval	 tv = { 0, MASTER_CONFIRM_MS * 1000 };

	if (!m->m_pending || m->m_stopping)
		return;
	if (master_gen_ready(m) ||
	    (m->m_proven && util_mono_ms() > m->m_pending_deadline))
		master_commit(m);
	else if (util_mono_ms() > m->m_pending_deadline)
		master_rollback(m, "the new workers were not ready within 10 s");
	else
		evtimer_add(m->m_confirm, &tv);
	master_settled(m);
}

/* Check conf's upstream servers (health.h); -1 when out of memory. */
static int
master_health(struct master *m, struct config *conf, char *err,
    size_t errlen)
{
	if (health_configure(m->m_health, conf) == 0)
		return (0);
	snprintf(err, errlen, "health checks: out of memory");
	return (-1);
}

/* Load the configuration file, resolving relative paths from the start. */
static struct config *
master_load(struct master *m, char *err, size_t errlen)
{
	struct config	*conf;

	if (!m->m_opts->mo_foreground && chdir(m->m_opts->mo_startdir) == -1) {
		snprintf(err, errlen, "cannot enter %s: %s",
		    m->m_opts->mo_startdir, strerror(errno));
		return (NULL);
	}
	conf = config_load(m->m_opts->mo_path, err, errlen);
	if (!m->m_opts->mo_foreground && chdir("/") == -1)
		log_warn("chdir /");
	return (conf);
}

/*
 * Reload: the key store stays where it is until a restart.  A changed
 * state_dir in conf is replaced by the running one, so that the new
 * workers append to the journal the master loaded, locks and compacts
 * (with the new directory they would acknowledge keys into files nobody
 * reads back), and max_keys by the segment's own size.  Both are said
 * once, as ignored.  0, or -1 when out of memory (said in err).
 */
static int
master_keep_store(struct master *m, struct config *conf, char *err,
    size_t errlen)
{
	char	*dir;

	if (strcmp(m->m_conf->c_state_dir, conf->c_state_dir) != 0) {
		if ((dir = strdup(m->m_conf->c_state_dir)) == NULL) {
			snprintf(err, errlen, "out of memory");
			return (-1);
		}
		log_warnx("state_dir %s ignored until the next restart: the "
		    "key store stays in %s", conf->c_state_dir, dir);
		free(conf->c_state_dir);
		conf->c_state_dir = dir;
	}
	if (m->m_cluster != NULL ? !cluster_same(m->m_cluster, conf) :
	    conf->c_cluster) {
		log_warnx("cluster_redis, cluster_name, cluster_fallback, "
		    "cluster_limits and cluster_standing_share changes are "
		    "ignored until the next restart");
		master_keep_cluster(m->m_conf, conf);
	}
	if (shm_max_keys(m->m_shm) != conf->c_max_keys) {
		log_warnx("max_keys %u ignored until the next restart: the key "
		    "store keeps %u slots", conf->c_max_keys,
		    shm_max_keys(m->m_shm));
		conf->c_max_keys = shm_max_keys(m->m_shm);
	}
	if (shm_max_active(m->m_shm) != config_max_active(conf)) {
		log_warnx("max_active_keys %u ignored until the next restart: "
		    "the rate table keeps %u entries", config_max_active(conf),
		    shm_max_active(m->m_shm));
		conf->c_max_active_keys = shm_max_active(m->m_shm);
	}
	return (0);
}

/* The running cluster settings into conf (a reload cannot change them). */
static void
master_keep_cluster(const struct config *run, struct config *conf)
{
	char	**dst[] = {
		&conf->c_cluster_url, &conf->c_cluster_host,
		&conf->c_cluster_unix, &conf->c_cluster_user,
		&conf->c_cluster_pass, &conf->c_cluster_name
	};
	char	*const src[] = {
		run->c_cluster_url, run->c_cluster_host, run->c_cluster_unix,
		run->c_cluster_user, run->c_cluster_pass, run->c_cluster_name
	};
	size_t	 i;

	for (i = 0; i < sizeof(dst) / sizeof(dst[0]); i++) {
		if (*dst[i] != NULL) {
			explicit_bzero(*dst[i], strlen(*dst[i]));
			free(*dst[i]);
		}
		*dst[i] = src[i] != NULL ? strdup(src[i]) : NULL;
	}
	conf->c_cluster = run->c_cluster;
	conf->c_cluster_port = run->c_cluster_port;
	conf->c_cluster_db = run->c_cluster_db;
	conf->c_cluster_fallback = run->c_cluster_fallback;
	conf->c_cluster_limits = run->c_cluster_limits;
	conf->c_cluster_standing = run->c_cluster_standing;
}

/*
 * SIGHUP.  Like nginx: the new file is parsed and validated completely (and
 * its new listeners bound) before anything changes; on any error the old
 * configuration keeps serving.  Then workers of a new generation start, and
 * once they are all serving the old ones are told to stop accepting and
 * finish what they have (master_commit); if they fail to start, the reload
 * is undone (master_rollback).  The listening sockets stay open in the
 * master throughout, so the kernel keeps queueing connections and none is
 * refused.
 */
static void
master_reload(struct master *m)
{
	static struct master_listeners	 lsn;	/* 4 KiB: not on the stack */
	struct config			*conf;
	char				 err[CONFIG_ERRLEN];

	if (m->m_pending) {
		/* Done once the workers of the previous one are serving. */
		m->m_reload_queued = 1;
		return;
	}
	if ((conf = master_load(m, err, sizeof(err))) == NULL) {
		log_warnx("reload failed, keeping the running configuration: "
		    "%s", err);
		master_reloaded(m, 0);
		return;
	}
	if (config_nlisten(conf) > MASTER_MAX_LISTEN ||
	    master_relisten(m->m_conf, &m->m_lsn, conf, &lsn, err,
	    sizeof(err)) == -1) {
		log_warnx("reload failed, keeping the running configuration: "
		    "%s", config_nlisten(conf) > MASTER_MAX_LISTEN ?
		    "too many listen directives" : err);
		config_free(conf);
		master_reloaded(m, 0);
		return;
	}
	/*
	 * The new workers find their providers' key slots at start, so the
	 * slots are assigned now; the old configuration's providers stay
	 * published for the old workers (jwks_reconfigure).
	 */
	master_stats_names(m, conf);	/* the checks' metrics use them */
	if (master_prepare_logs(conf, err, sizeof(err)) == -1 ||
	    master_keep_store(m, conf, err, sizeof(err)) == -1 ||
	    master_health(m, conf, err, sizeof(err)) == -1 ||
	    jwks_reconfigure(m->m_jwks, conf, err, sizeof(err)) == -1) {
		log_warnx("reload failed, keeping the running configuration: "
		    "%s", err);
		health_retain(m->m_health, m->m_conf);
		master_close_unshared(&lsn, &m->m_lsn);
		config_free(conf);
		master_reloaded(m, 0);
		return;
	}
	master_nofile(conf);
	stats_workers(shm_stats(m->m_shm), (uint32_t)conf->c_workers);
	if (strcmp(m->m_conf->c_pidfile, conf->c_pidfile) != 0)
		log_warnx("pidfile changes take effect at the next restart");
	m->m_prev_conf = m->m_conf;
	m->m_prev_gen = m->m_gen;
	m->m_prev_lsn = m->m_lsn;
	m->m_lsn = lsn;
	m->m_conf = conf;
	m->m_gen = ++m->m_gencount;
	m->m_backoff_ms = 0;
	m->m_spawn_after_ms = 0;
	master_pending(m);
	master_spawn(m);
}

/* Stop: graceful (SIGTERM to workers) or fast (SIGQUIT). */
static void
master_stop(struct master *m, int fast)
{
	int64_t	 deadline;

	if (m->m_stopping >= (fast ? 2 : 1))
		return;
	m->m_stopping = fast ? 2 : 1;
	if (m->m_drain != NULL)		/* none in the unit tests */
		evtimer_del(m->m_drain);
	log_info("%s stop", fast ? "fast" : "graceful");
	master_close_unshared(&m->m_prev_lsn, &m->m_lsn);
	m->m_prev_lsn.ml_n = 0;
	master_close_all(&m->m_lsn);
	deadline = util_mono_ms() + (fast ? 0 : m->m_conf->c_shutdown_timeout) +
	    MASTER_KILL_GRACE_MS;
	master_signal_children(m, fast ? SIGQUIT : SIGTERM, MASTER_ALL, deadline);
	master_reap(m);
}

/*
 * SIGTERM with shutdown_delay: the workers go on serving while health_path
 * answers 503, for that long, then the graceful stop.  A second SIGTERM
 * ends the wait.
 */
static void
master_drain(struct master *m)
{
	struct timeval	 tv;
	int		 ms = m->m_conf->c_shutdown_delay;

	if (ms == 0 || m->m_draining || m->m_stopping) {
		master_stop(m, 0);
		return;
	}
	m->m_draining = 1;
	__atomic_store_n(&m->m_shm->sh_draining, 1, __ATOMIC_RELEASE);
	log_info("draining: health checks fail for %d.%03d s "
	    "(shutdown_delay), then a graceful stop", ms / 1000, ms % 1000);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(m->m_drain, &tv);
}

static void
master_drain_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	master_stop(arg, 0);
}

/* Signals, delivered by libevent in the loop (not in signal context). */
static void
master_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct master	*m = arg;
	char		 err[CONFIG_ERRLEN];

	switch (sig) {
	case SIGHUP:
		if (!m->m_stopping && !m->m_draining)
			master_reload(m);
		break;
	case SIGTERM:
	case SIGINT:
		master_drain(m);
		break;
	case SIGQUIT:
		master_stop(m, 1);
		break;
	case SIGUSR1:
		/* First: a log file missing now is created as the user's. */
		if (master_prepare_logs(m->m_conf, err, sizeof(err)) == -1)
			log_warnx("%s", err);
		log_reopen();
		master_signal_children(m, SIGUSR1, MASTER_ALL, 0);
		log_info("log files reopened");
		break;
	case SIGCHLD:
		master_reap(m);
		break;
	}
}

/* Set up the loop, start the workers and run until stopped. */
int
master_run(struct master_opts *opts, struct config *conf,
    const struct master_listeners *lsn, struct shm_header *shm)
{
	static struct master	 m;	/* static: reachable from workers too */
	struct timeval		 one = { 1, 0 };
	char			 err[CONFIG_ERRLEN];
	uid_t			 uid;
	gid_t			 gid;
	int			 i;

	memset(&m, 0, sizeof(m));
	m.m_opts = opts;
	m.m_conf = conf;
	m.m_lsn = *lsn;
	log_setprefix("master");
	signal(SIGPIPE, SIG_IGN);
	m.m_shm = shm;
	shm_keystore(shm, &m.m_ks);
	/*
	 * The first ticket key, before any worker: workers inherit the
	 * attached pointer across fork() and read the keys under the
	 * seqlock; the master itself never makes a TLS handshake.
	 */
	if (tls_tickets_rotate(&shm->sh_tickets, util_now_ms() / 1000) == -1)
		fatalx("TLS ticket keys: no random bytes");
	tls_tickets_attach(&shm->sh_tickets);
	master_owner(conf, &uid, &gid);
	if (journal_init(&m.m_journal, conf->c_state_dir, uid, gid) == -1)
		fatalx("out of memory");
	m.m_usage_ms = util_mono_ms();
	/* Before any worker: the restored counters are its baselines. */
	if ((m.m_usage = usage_open(conf->c_state_dir, uid, gid, util_now_ms(),
	    err, sizeof(err))) == NULL)
		fatalx("usage history: %s", err);
	if ((m.m_base = event_base_new()) == NULL)
		fatalx("cannot create the event loop");
	for (i = 0; i < MASTER_NSIGS; i++) {
		m.m_sigs[i] = evsignal_new(m.m_base, master_signals[i],
		    master_signal_cb, &m);
		if (m.m_sigs[i] == NULL || evsignal_add(m.m_sigs[i], NULL) == -1)
			fatalx("cannot install signal handlers");
	}
	m.m_tick = event_new(m.m_base, -1, EV_PERSIST, master_tick_cb, &m);
	m.m_respawn = evtimer_new(m.m_base, master_respawn_cb, &m);
	m.m_confirm = evtimer_new(m.m_base, master_confirm_cb, &m);
	m.m_drain = evtimer_new(m.m_base, master_drain_cb, &m);
	if (m.m_tick == NULL || m.m_respawn == NULL || m.m_confirm == NULL ||
	    m.m_drain == NULL)
		fatalx("cannot create timers");
	evtimer_add(m.m_tick, &one);
	/* Before any worker: they look their providers' slots up at start. */
	if ((m.m_jwks = jwks_start(m.m_base, shm, conf, err,
	    sizeof(err))) == NULL)
		fatalx("jwt providers: %s", err);
	master_stats_names(&m, conf);
	stats_workers(shm_stats(shm), (uint32_t)conf->c_workers);
	if ((m.m_health = health_new(m.m_base, shm)) == NULL ||
	    master_health(&m, conf, err, sizeof(err)) == -1)
		fatalx("health checks: out of memory");
	/* Before any worker: each gets its channels at its fork. */
	if (conf->c_cluster && (m.m_cluster = cluster_new(m.m_base, conf,
	    &m.m_ks, &m.m_journal, shm_idem(shm),
	    &shm_stats(shm)->sr_master, shm_leases(shm), getpid(), err,
	    sizeof(err))) == NULL)
		fatalx("cluster: %s", err);
	m.m_gen = m.m_gencount = 1;
	master_pending(&m);
	master_spawn(&m);
	event_base_dispatch(m.m_base);

	jwks_free(m.m_jwks);
	health_free(m.m_health);
	cluster_free(m.m_cluster);
	for (i = 0; i < MASTER_NSIGS; i++)
		event_free(m.m_sigs[i]);
	event_free(m.m_tick);
	event_free(m.m_respawn);
	event_free(m.m_drain);
	event_free(m.m_confirm);
	event_base_free(m.m_base);
	free(m.m_total);
	if (m.m_prev_conf != NULL)
		master_close_unshared(&m.m_prev_lsn, &m.m_lsn);
	master_close_all(&m.m_lsn);
	/* The workers are gone: fold what they counted since the last tick. */
	(void)usage_fold(m.m_usage, &m.m_ks, util_now_ms(), 1);
	usage_free(m.m_usage);
	if (journal_save_usage(&m.m_journal, &m.m_ks, err, sizeof(err)) == -1)
		log_warnx("usage counters not saved: %s", err);
	journal_close(&m.m_journal);
	shm_destroy(m.m_shm);
	if (m.m_prev_conf != NULL)
		config_free(m.m_prev_conf);
	config_free(m.m_conf);
	log_info("stopped");
	return (m.m_exitcode);
}

static void	 master_check_say(int *, int, const char *, ...)
		    __attribute__((__format__(__printf__, 3, 4)));

/* keygated -t: one problem, on stderr; counts errors, not warnings. */
static void
master_check_say(int *nerr, int error, const char *fmt, ...)
{
	va_list	 ap;

	fprintf(stderr, "keygated: %s", error ? "" : "warning: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (error)
		(*nerr)++;
}

/*
 * The directory part of an absolute path ("/" for "/x") into dir, of len
 * bytes (> 0).  dir may be path itself: memmove, not snprintf, whose
 * source and destination must not overlap.
 */
static void
master_dirname(const char *path, char *dir, size_t len)
{
	const char	*slash = strrchr(path, '/');
	size_t		 n = slash == NULL || slash == path ? 1 :
			    (size_t)(slash - path);

	if (slash == NULL)
		path = "/";
	if (n >= len)
		n = len - 1;
	memmove(dir, path, n);
	dir[n] = '\0';
}

/*
 * A directory start-up creates with its missing parents, like mkdir -p
 * (state_dir, the pidfile's directory): the nearest existing one of start
 * and its ancestors must be a writable directory.
 */
static void
master_check_parents(int *nerr, const char *what, const char *path,
    const char *start)
{
	struct stat	 st;
	char		 dir[PATH_MAX];

	snprintf(dir, sizeof(dir), "%s", start);
	while (stat(dir, &st) == -1) {
		if (errno != ENOENT || strcmp(dir, "/") == 0) {
			master_check_say(nerr, 1, "%s %s: %s: %s", what, path,
			    dir, strerror(errno));
			return;
		}
		master_dirname(dir, dir, sizeof(dir));
	}
	if (!S_ISDIR(st.st_mode))
		master_check_say(nerr, 1, "%s %s: %s is not a directory", what,
		    path, dir);
	else if (access(dir, W_OK | X_OK) == -1)
		master_check_say(nerr, 1, "%s %s: %s is not writable: %s", what,
		    path, dir, strerror(errno));
}

/*
 * A file start-up opens or creates as the master (log files, the
 * pidfile): an existing one must be writable and not a directory, a
 * missing one needs an existing, writable directory, or with parents
 * (the pidfile, see pidfile_lock()) a directory start-up can create.
 */
static void
master_check_file(int *nerr, const char *what, const char *path, int parents)
{
	struct stat	 st;
	char		 dir[PATH_MAX];

	if (stat(path, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			master_check_say(nerr, 1, "%s %s is a directory", what,
			    path);
		else if (access(path, W_OK) == -1)
			master_check_say(nerr, 1, "%s %s is not writable: %s",
			    what, path, strerror(errno));
		return;
	}
	if (errno != ENOENT) {
		master_check_say(nerr, 1, "%s %s: %s", what, path,
		    strerror(errno));
		return;
	}
	master_dirname(path, dir, sizeof(dir));
	if (parents)
		master_check_parents(nerr, what, path, dir);
	else if (stat(dir, &st) == -1)
		master_check_say(nerr, 1, "%s %s: directory %s: %s", what, path,
		    dir, strerror(errno));
	else if (!S_ISDIR(st.st_mode))
		master_check_say(nerr, 1, "%s %s: %s is not a directory", what,
		    path, dir);
	else if (access(dir, W_OK | X_OK) == -1)
		master_check_say(nerr, 1, "%s %s: directory %s is not writable: "
		    "%s", what, path, dir, strerror(errno));
}

/*
 * In a child that became the worker user: can a worker reach the files it
 * reopens or creates as that user (the logs, which start-up creates and
 * hands over, and state_dir, which it creates and hands over)?  Exits with
 * the number of errors.
 */
static void
master_check_as_user(const struct config *conf)
{
	const char	*paths[3], *whats[3];
	char		 dir[PATH_MAX];
	int		 i, n = 0, nerr = 0;

	if (setgroups(1, &conf->c_gid) == -1 || setgid(conf->c_gid) == -1 ||
	    setuid(conf->c_uid) == -1) {
		master_check_say(&nerr, 1, "cannot change to user %s: %s",
		    conf->c_user, strerror(errno));
		_exit(nerr);
	}
	if (conf->c_access_log != NULL) {
		whats[n] = "access_log";
		paths[n++] = conf->c_access_log;
	}
	if (conf->c_error_log[0] == '/') {
		whats[n] = "error_log";
		paths[n++] = conf->c_error_log;
	}
	whats[n] = "state_dir";
	paths[n++] = conf->c_state_dir;
	for (i = 0; i < n; i++) {
		master_dirname(paths[i], dir, sizeof(dir));
		if (access(dir, X_OK) == -1 && errno != ENOENT)
			master_check_say(&nerr, 1, "%s %s: workers (user %s) "
			    "cannot reach directory %s: %s", whats[i], paths[i],
			    conf->c_user, dir, strerror(errno));
	}
	_exit(nerr > 100 ? 100 : nerr);
}

/*
 * A file the master reads at start (a provider's jwks= file or ca=
 * bundle): it must be a readable regular file.
 */
static void
master_check_read(int *nerr, const struct jwt_provider *jp, const char *what,
    const char *path)
{
	struct stat	 st;

	if (stat(path, &st) == -1)
		master_check_say(nerr, 1, "jwt_provider %s (line %d): %s %s: %s",
		    jp->jp_name, jp->jp_line, what, path, strerror(errno));
	else if (!S_ISREG(st.st_mode))
		master_check_say(nerr, 1, "jwt_provider %s (line %d): %s %s is "
		    "not a regular file", jp->jp_name, jp->jp_line, what, path);
	else if (access(path, R_OK) == -1)
		master_check_say(nerr, 1, "jwt_provider %s (line %d): %s %s is "
		    "not readable: %s", jp->jp_name, jp->jp_line, what, path,
		    strerror(errno));
}

/* keygated -t: what start-up would fail on beyond the syntax; see master.h. */
int
master_check(const struct config *conf)
{
	pid_t	 pid;
	size_t	 i;
	int	 nerr = 0, status;

	if (config_nlisten(conf) > MASTER_MAX_LISTEN)
		master_check_say(&nerr, 1, "too many listen directives (at most "
		    "%d)", MASTER_MAX_LISTEN);
	if (conf->c_error_log[0] == '/')
		master_check_file(&nerr, "error_log", conf->c_error_log, 0);
	if (conf->c_access_log != NULL)
		master_check_file(&nerr, "access_log", conf->c_access_log, 0);
	master_check_file(&nerr, "pidfile", conf->c_pidfile, 1);
	/* An existing state_dir must be a writable directory itself. */
	master_check_parents(&nerr, "state_dir", conf->c_state_dir,
	    conf->c_state_dir);
	for (i = 0; i < conf->c_njwt; i++) {
		if (conf->c_jwt[i].jp_jwks_path != NULL)
			master_check_read(&nerr, &conf->c_jwt[i], "jwks",
			    conf->c_jwt[i].jp_jwks_path);
		if (conf->c_jwt[i].jp_ca != NULL)
			master_check_read(&nerr, &conf->c_jwt[i], "ca",
			    conf->c_jwt[i].jp_ca);
	}
	if (conf->c_user != NULL && geteuid() == 0) {
		fflush(stderr);
		if ((pid = fork()) == -1)
			master_check_say(&nerr, 1, "fork: %s", strerror(errno));
		else if (pid == 0)
			master_check_as_user(conf);
		else if (waitpid(pid, &status, 0) == -1 || !WIFEXITED(status))
			master_check_say(&nerr, 1, "checking as user %s failed",
			    conf->c_user);
		else
			nerr += WEXITSTATUS(status);
	} else if (conf->c_user == NULL && geteuid() == 0)
		master_check_say(&nerr, 0, "no \"user\" is configured: workers "
		    "would run as root");
	if (conf->c_routes.rt_nroutes == 0)
		master_check_say(&nerr, 0, "no route is configured: every "
		    "request on the listen addresses is answered 404");
	return (nerr);
}
