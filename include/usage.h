/*
 * Per-key usage history: admitted, rate-limited (429) and otherwise
 * refused requests of each key, per minute for the last 24 hours and per
 * hour for the last 30 days.  Free of libevent so that the master, the
 * workers and the unit tests can all include it.
 *
 * Who does what:
 * - Workers count every use in the key's slot (keystore_count_use), as
 *   before; nothing else happens on the request path.
 * - The master, from its one-second tick, folds once per wall-clock minute
 *   (usage_fold): under the key store's writer lock, for every live slot
 *   whose counters moved past the slot's baselines (s_base[], the counts
 *   at the previous fold), it adds the differences to the minute being
 *   folded and to its hour, sets the baselines to the counts, and rewrites
 *   the files of that hour and that day.  Keys without traffic cost
 *   nothing: no record, no line, no work beyond comparing three words.
 * - A worker answering GET /v1/keys/{id}/usage?history= reads the files
 *   (usage_history) and adds the live part, counts less baselines, to the
 *   last point, so a request shows at once, not at the next minute.
 *
 * Files, in state_dir/usage/ (0700, the configured user's), each replaced
 * whole (temp file, fsync, rename, fsync of the directory: a crash leaves
 * the old file or the new one, never a mix):
 *	minutes-YYYY-MM-DDTHH	the minutes of that hour (UTC), one line per
 *				key with traffic in it; kept 25 hours
 *	hours-YYYY-MM-DD	the hours of that day, one line per key with
 *				traffic in it; kept 31 days
 * Format (text, one line each, at most USAGE_LINE_MAX bytes):
 *	keygate-usage 1 minutes|hours PERIOD KEYS
 *	ID [INDEX:ADMITTED,LIMITED,REFUSED]...	(KEYS lines)
 *	end
 * where PERIOD is the hour (minutes) or day (hours) since the epoch the
 * file covers, INDEX the minute of the hour (0-59) or the hour of the day
 * (0-23), strictly increasing, and only points with traffic are written.
 * A file that does not parse (bad version, period not the name's, a line
 * too long, a count missing, no end line: truncated) is logged and
 * skipped as a whole; the others are still used.
 *
 * Memory: the master holds one record (struct usage_rec, in usage.c) for
 * each key with traffic in the current UTC day: its id, the current
 * hour's 60 minutes and the day's 24 hours, about 1.3 KiB with the index;
 * usage_memory() reports it.  Records are dropped when the day rolls over.
 *
 * Times are milliseconds since the Unix epoch, passed in as "now".
 */
#ifndef KEYGATE_USAGE_H
#define KEYGATE_USAGE_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct keystore;

#define USAGE_DIR		"usage"
#define USAGE_VERSION		1
#define USAGE_LINE_MAX		8192	/* bytes of a file line, newline included */
#define USAGE_KEYS_MAX		(1U << 24)	/* lines a file may announce */
#define USAGE_KEEP_HOURS	25	/* minute files kept */
#define USAGE_KEEP_DAYS		31	/* hour files kept */

#define USAGE_MINUTE_MS		60000LL
#define USAGE_HOUR_MS		3600000LL
#define USAGE_DAY_MS		86400000LL

/* The counts of a point. */
#define USAGE_ADMITTED		0
#define USAGE_LIMITED		1	/* refused with 429 */
#define USAGE_REFUSED		2	/* refused after identification, */
					/* 429 excepted (403 scope, disabled, */
					/* expired...) */
#define USAGE_NC		3

/* File kinds. */
#define USAGE_MINUTES		0	/* a file of 60 minutes */
#define USAGE_HOURS		1	/* a file of 24 hours */

/* History queries: 60 or 1440 minutes, 720 hours. */
#define USAGE_H1		0
#define USAGE_H24		1
#define USAGE_D30		2
#define USAGE_POINTS_MAX	1440

struct usage_point {
	int64_t		 up_t;		/* ms, start of the minute or hour */
	uint64_t	 up_c[USAGE_NC];
};

struct usage;

/*
 * Master, at start (before any worker): make state_dir/usage if missing,
 * load the current hour's and day's files into memory, prune old files.
 * NULL with err only if out of memory; a directory or file problem is
 * logged and history is still kept in memory (and written once it can).
 */
struct usage	*usage_open(const char *, uid_t, gid_t, int64_t, char *,
		    size_t);
void		 usage_free(struct usage *);

/*
 * Master tick: fold when now is in a later minute than the last fold, or
 * always with force (at stop, so that a restart loses nothing).  Takes
 * the key store's lock without waiting (with force: up to a second); if
 * it is busy the next tick folds instead.  1 folded, 0 not now, -1 a
 * file could not be written (logged; kept in memory for the next fold).
 */
int		 usage_fold(struct usage *, struct keystore *, int64_t, int);

/* Bytes the master holds for the history now, and for how many keys. */
size_t		 usage_memory(const struct usage *);
size_t		 usage_nkeys(const struct usage *);

/*
 * Parse a usage file of kind whose period must be period (-1: any) from
 * fp; cb is called for each key line with the id and the file's points
 * (60 or 24, zeros where absent) and may return -1 to stop.  A callback
 * NULL only checks.  0, or -1 with "LINE: reason" in err (the callbacks
 * made so far must then be discarded).
 */
typedef int	(*usage_line_cb)(void *, const char *, const uint64_t (*)[
		    USAGE_NC], int);
int		 usage_parse(FILE *, int, int64_t, usage_line_cb, void *,
		    char *, size_t);

/* The file name of kind for the period holding ms (buf of 64 bytes). */
void		 usage_file_name(char *, size_t, int, int64_t);

/*
 * Worker: the history of the key id in slot, kind USAGE_H1/H24/D30 ending
 * at now's minute (hour for D30), into pts (USAGE_POINTS_MAX), ascending,
 * every point, the last one the current one with the live counts.  The
 * files are read from state_dir/usage as the user uid/gid (the journal
 * rules: no link followed).  Returns the number of points.
 */
size_t		 usage_history(const char *, uid_t, gid_t,
		    const struct keystore *, uint32_t, const char *, int,
		    int64_t, struct usage_point *);

/* "1h", "24h", "30d" to USAGE_H1... ; -1 for anything else. */
int		 usage_kind(const char *);

#endif /* KEYGATE_USAGE_H */
