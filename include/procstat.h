/*
 * The process_* figures of a process, read from Linux's /proc, for the
 * master's once-a-second tick (never on a request path).
 */
#ifndef KEYGATE_PROCSTAT_H
#define KEYGATE_PROCSTAT_H

#include <sys/types.h>

#include "stats.h"

/*
 * Add the CPU time, resident and virtual size and open descriptors of
 * pid to p (pr_max_fds and pr_start are left alone).  0, or -1 if pid's
 * /proc entries could not be read (it may just have exited).
 */
int	 procstat_add(pid_t, struct stats_proc *);

/* Parse the text of /proc/PID/stat; 0 or -1.  Exposed for the tests. */
int	 procstat_parse(const char *, size_t, uint64_t *, uint64_t *,
	    uint64_t *);

#endif /* KEYGATE_PROCSTAT_H */
