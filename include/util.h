/*
 * Small helpers with no dependency on libevent: paths, clocks, CPU count,
 * JSON string escaping and time formatting.
 */
#ifndef KEYGATE_UTIL_H
#define KEYGATE_UTIL_H

#include <sys/time.h>

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Absolute version of path (against the current directory); malloc'ed. */
/* Elements of an array (as BSD's <sys/param.h> has it). */
#ifndef nitems
#define nitems(a)	(sizeof(a) / sizeof((a)[0]))
#endif

char	*util_abspath(const char *);

/* Number of online CPUs, at least 1. */
int	 util_ncpus(void);

/*
 * Wall clock (for timestamps stored or shown) and monotonic clock (for
 * intervals and deadlines) in milliseconds / microseconds.
 */
void	 util_clock_init(void);	/* the test hook of util.c */
int64_t	 util_clock_skew(void);
int64_t	 util_now_ms(void);
int64_t	 util_mono_ms(void);
int64_t	 util_mono_us(void);
/* ms milliseconds (>= 0) as a timeval. */
void	 util_ms_timeval(int64_t, struct timeval *);
/* The time ms milliseconds (>= 0) from now on clock, for timed waits. */
void	 util_deadline(clockid_t, int64_t, struct timespec *);

/*
 * Escape src as the inside of a JSON string into dst (not NUL-terminated).
 * Returns the number of bytes the escaped form needs; writes only if that is
 * at most dstlen.  Bytes >= 0x80 are copied as they are when they form valid
 * UTF-8 and written as \u00XX otherwise, so the output is always valid JSON.
 */
size_t	 util_json_escape(char *, size_t, const char *, size_t);

/* Is s[0..len) valid UTF-8 without a NUL byte?  1 or 0. */
int	 util_utf8_valid(const char *, size_t);

/* Decimal digits of v into buf (at least 20 bytes, no NUL); the length. */
size_t	 util_u64toa(char *, uint64_t);

/* v as 16 lowercase hex digits into buf (no NUL). */
void	 util_hex64(char *, uint64_t);

/* The value of the hex digit c (either case), or -1. */
int	 util_hexval(int);

/*
 * A log file opened for appending without following links; -1 (open
 * failed) or -2 (not a regular file with one link), the reason in *why.
 */
struct stat;
int	 util_open_append(const char *, int, struct stat *, const char **);

/* RFC 3339 UTC with milliseconds, e.g. 2026-11-23T11:26:42.123Z; buf >= 32. */
void	 util_rfc3339_ms(char *, size_t, int64_t);

/*
 * Process titles for ps(1), like nginx's: util_proctitle_init() once in
 * main() before argv[] or environ is used (it moves them to the heap and
 * points argv[] at copies), then util_proctitle("master process %s", ...)
 * shows "keygated: master process ..." in place of the command line.
 */
void	 util_proctitle_init(int, char *[]);
void	 util_proctitle(const char *, ...)
	    __attribute__((__format__(__printf__, 1, 2)));

#endif /* KEYGATE_UTIL_H */
