/*
 * Error log, OpenBSD log.h style.  Messages go to stderr (foreground),
 * syslog, or a file opened with O_APPEND (reopened on SIGUSR1).  log_warn
 * appends strerror(errno).  Never pass a secret to any of these.
 */
#ifndef KEYGATE_LOG_H
#define KEYGATE_LOG_H

#include <stdarg.h>

#define LOG_TO_STDERR	"stderr"
#define LOG_TO_SYSLOG	"syslog"

/* dest: LOG_TO_STDERR, LOG_TO_SYSLOG or a path; level: enum log_level. */
int	 log_init(const char *, int, const char *, char *, size_t);
int	 log_reopen(void);
void	 log_setlevel(int);
void	 log_setprefix(const char *);	/* "master", "worker" */
const char *log_dest(void);

void	 log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 fatal(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));
void	 fatalx(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));

#endif /* KEYGATE_LOG_H */
