/*
 * Error log in the style of OpenBSD log.c: to stderr, syslog or a file.
 * A file is opened O_APPEND so that the master and every worker can write
 * whole lines to it without coordination; log_reopen() opens the path again
 * (SIGUSR1, after logrotate has moved the old file away).
 */

#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "util.h"

static int	 log_fd = STDERR_FILENO;
static int	 log_syslog;
static int	 log_level = LOGLEVEL_INFO;
static char	 log_path[1024];
static char	 log_ident[32] = "keygated";
static char	 log_prefix[16] = "main";

/*
 * Open the log file path for appending: the descriptor, or -1 with the
 * reason in err.  The master is root and the log directory may be
 * writable by the worker user, who could replace the file by a link to
 * any file of root's between two reopens: so no symbolic link is
 * followed (O_NOFOLLOW), a FIFO is not waited on (O_NONBLOCK), and the
 * file opened must be a regular file with a single link (a hard link to
 * another file has two), as master_prepare_file() requires.
 */
static int
log_open(const char *path, char *err, size_t errlen)
{
	struct stat	 st;
	const char	*why;
	int		 fd;

	if ((fd = util_open_append(path, 1, &st, &why)) < 0)
		snprintf(err, errlen, "cannot %s error log %s: %s",
		    fd == -1 ? "open" : "use", path, why);
	return (fd < 0 ? -1 : fd);
}

/* Open the destination; 0, or -1 with the reason in err. */
int
log_init(const char *dest, int level, const char *ident, char *err,
    size_t errlen)
{
	int	 fd;

	log_level = level;
	if (ident != NULL)
		snprintf(log_ident, sizeof(log_ident), "%s", ident);
	if (strcmp(dest, LOG_TO_STDERR) == 0) {
		log_syslog = 0;
		log_path[0] = '\0';
		log_fd = STDERR_FILENO;
		return (0);
	}
	if (strcmp(dest, LOG_TO_SYSLOG) == 0) {
		openlog(log_ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
		log_syslog = 1;
		log_path[0] = '\0';
		return (0);
	}
	if ((fd = log_open(dest, err, errlen)) == -1)
		return (-1);
	if (log_fd > STDERR_FILENO)
		close(log_fd);
	log_fd = fd;
	log_syslog = 0;
	snprintf(log_path, sizeof(log_path), "%s", dest);
	return (0);
}

/*
 * Reopen a file destination (after rotation); 0 or -1.  On failure the
 * file opened before stays in use, and the reason is logged there.
 */
int
log_reopen(void)
{
	char	 err[1200];
	int	 fd;

	if (log_path[0] == '\0')
		return (0);
	if ((fd = log_open(log_path, err, sizeof(err))) == -1) {
		log_warnx("%s; still logging to the file opened before", err);
		return (-1);
	}
	if (log_fd > STDERR_FILENO)
		close(log_fd);
	log_fd = fd;
	return (0);
}

void
log_setlevel(int level)
{
	log_level = level;
}

/* Name of the process kind, shown in every line. */
void
log_setprefix(const char *prefix)
{
	snprintf(log_prefix, sizeof(log_prefix), "%s", prefix);
}

/* "syslog", "stderr" or the path of the log file. */
const char *
log_dest(void)
{
	if (log_syslog)
		return (LOG_TO_SYSLOG);
	return (log_path[0] != '\0' ? log_path : LOG_TO_STDERR);
}

static void	 log_emit(int, int, const char *, const char *, va_list)
		    __attribute__((format(printf, 4, 0)));

/* Format one line and write it with a single write(2). */
static void
log_emit(int level, int prio, const char *emsg, const char *fmt, va_list ap)
{
	char		 msg[2048], line[2300], ts[32];
	struct tm	 tm;
	time_t		 now;
	int		 n;

	if (level > log_level)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (log_syslog) {
		if (emsg != NULL)
			syslog(prio, "%s: %s: %s", log_prefix, msg, emsg);
		else
			syslog(prio, "%s: %s", log_prefix, msg);
		return;
	}
	now = time(NULL);
	gmtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	n = snprintf(line, sizeof(line), "%s %s[%ld] %s: %s%s%s\n", ts,
	    log_ident, (long)getpid(), log_prefix, msg,
	    emsg != NULL ? ": " : "", emsg != NULL ? emsg : "");
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	(void)write(log_fd, line, (size_t)n);
}

/* strerror_r() in whichever flavour libc gives (GNU returns a pointer). */
static const char *
log_strerror(int err, char *buf, size_t len)
{
#if defined(_GNU_SOURCE) && defined(__GLIBC__)
	return (strerror_r(err, buf, len));
#else
	if (strerror_r(err, buf, len) != 0)
		snprintf(buf, len, "error %d", err);
	return (buf);
#endif
}

void
log_warn(const char *fmt, ...)
{
	va_list	 ap;
	char	 ebuf[128];
	int	 saved = errno;

	va_start(ap, fmt);
	log_emit(LOGLEVEL_WARN, LOG_WARNING, log_strerror(saved, ebuf,
	    sizeof(ebuf)), fmt, ap);
	va_end(ap);
	errno = saved;
}

void
log_warnx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_emit(LOGLEVEL_WARN, LOG_WARNING, NULL, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_emit(LOGLEVEL_INFO, LOG_INFO, NULL, fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_emit(LOGLEVEL_DEBUG, LOG_DEBUG, NULL, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list	 ap;
	char	 ebuf[128];
	int	 saved = errno;

	va_start(ap, fmt);
	log_emit(LOGLEVEL_ERROR, LOG_CRIT, log_strerror(saved, ebuf,
	    sizeof(ebuf)), fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_emit(LOGLEVEL_ERROR, LOG_CRIT, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}
