/*
 * The master process: owns the listeners and the shared-memory segment,
 * forks the workers, reaps and respawns them with back-off, reloads the
 * configuration on SIGHUP and stops on SIGTERM/SIGINT (graceful) or SIGQUIT
 * (fast).  It never serves a request.
 */
#ifndef KEYGATE_MASTER_H
#define KEYGATE_MASTER_H

#include <stddef.h>

struct config;
struct listen_addr;
struct shm_header;

#define MASTER_MAX_LISTEN	16
#define MASTER_MAX_WORKERS	64	/* CONFIG_MAX_WORKERS */
#define MASTER_BACKLOG		511

/*
 * The listening sockets, per address of config_listen(): either one that
 * every worker shares (ml_nfds 1: admin_listen, metrics_listen, and every
 * address where SO_REUSEPORT is not available), or one per worker index,
 * bound with SO_REUSEPORT, worker i accepting on ml_fds[][i] only.
 */
struct master_listeners {
	int		 ml_fds[MASTER_MAX_LISTEN][MASTER_MAX_WORKERS];
	int		 ml_nfds[MASTER_MAX_LISTEN];
	size_t		 ml_n;		/* addresses */
};

struct master_opts {
	const char	*mo_path;	/* configuration file, for reloads */
	int		 mo_foreground;
	int		 mo_pidfd;	/* locked pidfile, closed in workers */
	int		 mo_readyfd;	/* "1" once workers run (then -1), or -1 */
	char		 mo_why[256];	/* why the first start failed */
	const char	*mo_startdir;	/* relative paths in reloads resolve here */
};

/*
 * Bind and listen on every address of conf: ml (unset before) is filled, or
 * -1 with a reason in err and nothing left open.
 */
int	 master_listen(const struct config *, struct master_listeners *,
	    char *, size_t);

/* Raise RLIMIT_NOFILE for max_connections, or warn that it cannot be. */
void	 master_nofile(const struct config *);

/* Create log files a worker must be able to reopen as the configured user. */
int	 master_prepare_logs(const struct config *, char *, size_t);

/*
 * keygated -t: check what start-up would fail on beyond the file's syntax
 * (log files, pidfile and state_dir creatable, reachable by the worker
 * user); print each problem and warning on stderr; the number of errors.
 */
int	 master_check(const struct config *);

/* Load the key store from state_dir into the segment; 0, or -1 with err. */
int	 master_keys_load(const struct config *, struct shm_header *, char *,
	    size_t);

/*
 * Run with conf, its listeners (from master_listen()) and the segment until
 * stopped; exit status.
 */
int	 master_run(struct master_opts *, struct config *,
	    const struct master_listeners *, struct shm_header *);

#endif /* KEYGATE_MASTER_H */
