/* Small helpers shared by every module; see util.h. */

#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

/* Absolute version of path against the current directory. */
char *
util_abspath(const char *path)
{
	char	 cwd[PATH_MAX], *out;
	size_t	 n;

	if (path[0] == '/')
		return (strdup(path));
	if (getcwd(cwd, sizeof(cwd)) == NULL)
		return (NULL);
	while (path[0] == '.' && path[1] == '/')
		path += 2;
	n = strlen(cwd) + 1 + strlen(path) + 1;
	if ((out = malloc(n)) == NULL)
		return (NULL);
	if (strcmp(path, ".") == 0 || path[0] == '\0')
		snprintf(out, n, "%s", cwd);
	else
		snprintf(out, n, "%s/%s", strcmp(cwd, "/") == 0 ? "" : cwd, path);
	return (out);
}

/* Number of online CPUs, at least 1. */
int
util_ncpus(void)
{
	long	 n;

	n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		return (1);
	if (n > 64)
		return (64);
	return ((int)n);
}

/*
 * Test hook (debug builds): KEYGATE_TEST_CLOCK_SKEW_MS moves every clock
 * this process reads through util_*_ms/us by that many ms, as a node whose
 * clock is off would see them (the cluster's limits must not care).
 */
static int64_t	 util_skew_ms;

void
util_clock_init(void)
{
#ifdef KEYGATE_DEBUG
	const char	*s = getenv("KEYGATE_TEST_CLOCK_SKEW_MS");

	if (s != NULL)
		util_skew_ms = strtoll(s, NULL, 10);
#endif
}

/* The test hook's skew (0: none, or not a debug build). */
int64_t
util_clock_skew(void)
{
	return (util_skew_ms);
}

/* Wall-clock time in milliseconds since the epoch. */
int64_t
util_now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 +
	    util_skew_ms);
}

/*
 * Monotonic time in milliseconds: for intervals and deadlines, which a step
 * of the wall clock (NTP, an operator's date -s) must not stretch or cut.
 */
int64_t
util_mono_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 +
	    util_skew_ms);
}

/* Monotonic time in microseconds. */
int64_t
util_mono_us(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 +
	    util_skew_ms * 1000);
}


/* ms milliseconds as a timeval, for libevent timers. */
void
util_ms_timeval(int64_t ms, struct timeval *tv)
{
	tv->tv_sec = (time_t)(ms / 1000);
	tv->tv_usec = (suseconds_t)(ms % 1000 * 1000);
}

/*
 * The time ms milliseconds from now on clock, as the absolute timespec
 * pthread's timed waits take (pthread_mutex_clocklock, ..._timedjoin_np).
 */
void
util_deadline(clockid_t clock, int64_t ms, struct timespec *ts)
{
	clock_gettime(clock, ts);
	ts->tv_sec += (time_t)(ms / 1000);
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Length of a valid UTF-8 sequence starting at s (at most n bytes), or 0. */
static size_t
utf8_seqlen(const unsigned char *s, size_t n)
{
	size_t		 len, i;
	uint32_t	 cp;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07;
	else
		return (0);
	if (len > n)
		return (0);
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return (0);
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	/* Overlong forms, surrogates and code points past U+10FFFF. */
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return (0);
	return (len);
}

/* Is s[0..len) valid UTF-8 (no overlong form, surrogate or NUL byte)? */
int
util_utf8_valid(const char *s, size_t len)
{
	const unsigned char	*u = (const unsigned char *)s;
	size_t			 i, seq;

	for (i = 0; i < len; i += seq) {
		seq = 1;
		if (u[i] == 0 || (u[i] >= 0x80 &&
		    (seq = utf8_seqlen(u + i, len - i)) == 0))
			return (0);
	}
	return (1);
}

/* Escape src as the inside of a JSON string; see util.h. */
size_t
util_json_escape(char *dst, size_t dstlen, const char *src, size_t srclen)
{
	static const char	 hex[] = "0123456789abcdef";
	const unsigned char	*s = (const unsigned char *)src;
	char			 tmp[6];
	const char		*add;
	size_t			 i, need = 0, addlen, seq;

	for (i = 0; i < srclen; i += seq) {
		seq = 1;
		add = tmp;
		if (s[i] == '"' || s[i] == '\\') {
			tmp[0] = '\\';
			tmp[1] = (char)s[i];
			addlen = 2;
		} else if (s[i] < 0x20 || s[i] == 0x7f ||
		    (s[i] >= 0x80 && (seq = utf8_seqlen(s + i, srclen - i)) == 0)) {
			seq = 1;
			memcpy(tmp, "\\u00", 4);
			tmp[4] = hex[s[i] >> 4];
			tmp[5] = hex[s[i] & 0xf];
			addlen = 6;
		} else {
			add = (const char *)s + i;
			addlen = seq;
		}
		if (need + addlen <= dstlen)
			memcpy(dst + need, add, addlen);
		need += addlen;
	}
	return (need);
}

/* Decimal digits of v, without printf's parsing on the request path. */
size_t
util_u64toa(char *buf, uint64_t v)
{
	char	 tmp[20];
	size_t	 n = 0, i;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	for (i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	return (n);
}

/* v as 16 lowercase hex digits. */
void
util_hex64(char *buf, uint64_t v)
{
	static const char	 hex[] = "0123456789abcdef";
	int			 i;

	for (i = 15; i >= 0; i--, v >>= 4)
		buf[i] = hex[v & 0xf];
}

/*
 * Open the log file path for appending (created 0640 if create is set)
 * without following a symbolic link or waiting on a FIFO: a user who can
 * write its directory must not make root write elsewhere.  It must be a
 * regular file with one link (a hard link would name another file).
 * Returns the descriptor and its fstat() in *st; -1 if open() failed
 * (errno kept), -2 if the file is refused; *why says which in words.
 */
int
util_open_append(const char *path, int create, struct stat *st,
    const char **why)
{
	int		 fd, saved;

	fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_NONBLOCK |
	    O_CLOEXEC | (create ? O_CREAT : 0), 0640);
	if (fd == -1) {
		saved = errno;
		*why = saved == ELOOP ? "a symbolic link (refused)" :
		    strerror(saved);
		errno = saved;
		return (-1);
	}
	if (fstat(fd, st) == -1 || !S_ISREG(st->st_mode) ||
	    st->st_nlink != 1) {
		*why = "not a regular file with a single link (refused)";
		close(fd);
		return (-2);
	}
	return (fd);
}

/* The value of the hex digit c (either case), or -1. */
int
util_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return (c - '0');
	if (c >= 'a' && c <= 'f')
		return (c - 'a' + 10);
	if (c >= 'A' && c <= 'F')
		return (c - 'A' + 10);
	return (-1);
}

/* RFC 3339 UTC time with milliseconds. */
void
util_rfc3339_ms(char *buf, size_t len, int64_t ms)
{
	struct tm	 tm;
	time_t		 t = (time_t)(ms / 1000);

	gmtime_r(&t, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/*
 * Process titles, as nginx does it (ngx_setproctitle): ps(1) shows the
 * memory argv[] points to, so a new title is written over the argument
 * strings and the environment strings that follow them contiguously.  The
 * environment is moved to the heap first, and argv[] pointed to copies,
 * so nothing still in use is overwritten.
 */
static char	*proctitle_start;	/* the original argv[0] */
static char	*proctitle_end;		/* past the last contiguous string */

/* Copy argv[] and environ out of the area titles will be written over. */
void
util_proctitle_init(int argc, char *argv[])
{
	extern char	**environ;
	char		**env, *start, *end;
	int		  i, n;

	if (argc < 1 || argv[0] == NULL)
		return;
	start = end = argv[0];
	for (i = 0; i < argc && argv[i] == end; i++)
		end = argv[i] + strlen(argv[i]) + 1;
	for (n = 0; environ[n] != NULL; n++)
		;
	if (i == argc)
		for (i = 0; i < n && environ[i] == end; i++)
			end = environ[i] + strlen(environ[i]) + 1;
	if ((env = calloc((size_t)n + 1, sizeof(*env))) == NULL)
		return;
	for (i = 0; i < n; i++)
		if ((env[i] = strdup(environ[i])) == NULL)
			return;		/* env leaks; titles stay off */
	for (i = 0; i < argc; i++)
		if ((argv[i] = strdup(argv[i])) == NULL)
			return;
	environ = env;
	proctitle_start = start;
	proctitle_end = end;
}

/* Show "keygated: TITLE" in ps(1), truncated to the area argv[] had. */
void
util_proctitle(const char *fmt, ...)
{
	va_list	 ap;
	size_t	 len;
	int	 n;

	if (proctitle_start == NULL)
		return;
	len = (size_t)(proctitle_end - proctitle_start);
	n = snprintf(proctitle_start, len, "keygated: ");
	if (n > 0 && (size_t)n < len) {
		va_start(ap, fmt);
		vsnprintf(proctitle_start + n, len - (size_t)n, fmt, ap);
		va_end(ap);
	}
	/* NULs to the end: ps reads up to the end of the original argv. */
	n = (int)strlen(proctitle_start);
	memset(proctitle_start + n, '\0', len - (size_t)n);
}
