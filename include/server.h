/*
 * A worker process: one libevent event_base, accepting on the listeners it
 * inherited from the master, serving HTTP/1.1 on bufferevents.
 *
 * Signals (libevent signal events, so handlers run in the loop, not in
 * signal context): SIGTERM graceful stop (stop accepting, finish in-flight
 * requests within shutdown_timeout), SIGQUIT immediate exit, SIGUSR1 reopen
 * the access and error logs.  SIGHUP and SIGINT are the master's business
 * and ignored here (a terminal's ^C reaches the whole process group).
 */
#ifndef KEYGATE_SERVER_H
#define KEYGATE_SERVER_H

#include <sys/types.h>

#include <stddef.h>

struct config;
struct shm_header;

struct server_env {
	struct config		*se_conf;
	const int		*se_lfds;	/* one per se_conf->c_listen */
	size_t			 se_nlfds;
	struct shm_header	*se_shm;
	int			 se_slot;	/* statistics slot, -1 for none */
	pid_t			 se_master;	/* exit when this parent is gone */
	const int		*se_clfds;	/* channels to the cluster, */
	int			 se_nclfds;	/* 0: not in a cluster */
	int			 se_leasefd;	/* cluster limits' demands, or -1 */
};

/* Serve until stopped; returns the process exit status. */
int	 server_run(const struct server_env *);

#endif /* KEYGATE_SERVER_H */
