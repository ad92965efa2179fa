/*
 * process_* figures from /proc/PID/stat and /proc/PID/fd (see procstat.h).
 * Linux only, like the rest of the daemon (prctl, MAP_NORESERVE).
 */

#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "procstat.h"

/*
 * /proc/PID/stat: "pid (comm) state ppid ..." where comm may hold spaces
 * and parentheses, so fields are counted from the last ')'.  Field 14 is
 * utime, 15 stime (clock ticks), 23 vsize (bytes), 24 rss (pages).
 */
int
procstat_parse(const char *buf, size_t len, uint64_t *cpu_us,
    uint64_t *vsize, uint64_t *rss_pages)
{
	char			 text[1024];
	const char		*p;
	char			*end;
	unsigned long long	 v[24];
	long			 hz = sysconf(_SC_CLK_TCK);
	int			 field;

	if (len >= sizeof(text) || hz <= 0)
		return (-1);
	memcpy(text, buf, len);
	text[len] = '\0';
	if ((p = strrchr(text, ')')) == NULL)
		return (-1);
	p++;
	/* Field 3 (state) is a letter; from 4 on they are numbers. */
	while (*p == ' ')
		p++;
	if (*p == '\0')
		return (-1);
	p++;
	for (field = 4; field <= 24; field++) {
		errno = 0;
		v[field - 1] = strtoull(p, &end, 10);
		if (end == p || errno != 0 || (*end != ' ' && *end != '\n' &&
		    *end != '\0'))
			return (-1);
		p = end;
	}
	*cpu_us = (v[13] + v[14]) * (1000000ULL / (unsigned long long)hz);
	*vsize = v[22];
	*rss_pages = v[23];
	return (0);
}

/* Entries of /proc/PID/fd, less "." and "..". */
static int
procstat_fds(pid_t pid, uint64_t *n)
{
	char		 path[64];
	DIR		*d;
	struct dirent	*de;

	snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
	if ((d = opendir(path)) == NULL)
		return (-1);
	*n = 0;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			(*n)++;
	closedir(d);
	return (0);
}

int
procstat_add(pid_t pid, struct stats_proc *p)
{
	char		 path[64], buf[1024];
	uint64_t	 cpu, vsize, rss, fds = 0;
	ssize_t		 n;
	long		 page = sysconf(_SC_PAGESIZE);
	int		 fd;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return (-1);
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n <= 0 || procstat_parse(buf, (size_t)n, &cpu, &vsize, &rss) == -1)
		return (-1);
	(void)procstat_fds(pid, &fds);
	p->pr_cpu_us += cpu;
	p->pr_vsize += vsize;
	p->pr_rss += rss * (uint64_t)(page > 0 ? page : 4096);
	p->pr_fds += fds;
	return (0);
}
