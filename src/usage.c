/*
 * Per-key usage history (see usage.h for the files and who does what).
 *
 * The fold, and why a query never counts a request twice or not at all:
 * a key's history is the files' points plus the live part, counters less
 * baselines.  The master, at a fold, moves each slot's live part into its
 * records (and so into the files it then writes) and sets the baselines
 * to the counts it read; a request counted after that read is in the next
 * live part.  Counters only grow (one atomic add per use, one counter per
 * outcome), and a slot's counters and baselines are zeroed together when a
 * new id takes it, by keystore_put() under the writer lock that the fold
 * holds too: so between two folds counts >= baselines, and a difference
 * is exactly the uses since the previous fold.  (A counter found below its
 * baseline, which only a scribbling worker could cause, is taken whole.)
 * A worker reading the files and the baselines while the master changes
 * them could pair old files with new baselines (a request lost) or the
 * reverse (counted twice), so the master makes kh_fold_seq odd for the
 * whole fold and even again after, and a reader retries while the
 * sequence was odd or moved: the seqlock of the key records, around files.
 *
 * Attribution: a fold puts what was counted since the previous fold into
 * the minute the previous fold opened (u_minute).  Folds run at the first
 * tick of each minute, so a request lands in its own minute or, within
 * the second the tick may be late, in the one before; a master stalled
 * for longer puts the stall's traffic into the minute it stalled in.  The
 * live part shown by a query goes to the current minute.
 *
 * Crash safety: the records are rewritten to their hour's and day's files
 * at every fold (write, fsync, rename, fsync of the directory, through
 * journal_file_share), so a master killed at any point leaves the files of
 * its last fold, whole.  It loses at most the traffic since that fold (a
 * minute), as keys.usage loses its last seconds.  At a clean stop the
 * master folds once more, and at start the counters restored from
 * keys.usage become the baselines: a restart loses nothing and adds
 * nothing.
 *
 * Hostile files: state_dir belongs to the workers' user, so the master
 * (root) opens files there as journal.c does (no link followed, a regular
 * file with one link, owned by root, itself or the configured user), and
 * every line is parsed with bounds: a line over USAGE_LINE_MAX, a count
 * that is not a decimal within 64 bits, an index out of range or out of
 * order, an id that is not [A-Za-z0-9_]{1,20}, a missing end line or a
 * key count that disagrees, and the file is skipped whole, logged.
 */

#include <sys/types.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "journal.h"
#include "keystore.h"
#include "log.h"
#include "usage.h"

/* A point's counts are the slot's counters' differences, kind for kind. */
_Static_assert(USAGE_ADMITTED == KS_C_ALLOWED && USAGE_LIMITED ==
    KS_C_LIMITED && USAGE_REFUSED == KS_C_REFUSED && USAGE_NC == KS_NCOUNTS,
    "usage point counts and key store counters disagree");

/* A key with traffic in the current day, in the master. */
struct usage_rec {
	char		 ur_id[KS_ID_LEN + 4];
	uint32_t	 ur_min[60][USAGE_NC];	/* the current hour's minutes */
	uint64_t	 ur_hour[24][USAGE_NC];	/* the current day's hours */
};

struct usage {
	struct journal	  u_dir;	/* state_dir/usage */
	struct usage_rec **u_recs;	/* sorted by id */
	size_t		  u_nrecs;
	size_t		  u_cap;
	int64_t		  u_minute;	/* minute the next fold fills; -1 */
	int		  u_dirty;	/* records not written yet */
};

/* A growing text buffer. */
struct usage_buf {
	char	*b_data;
	size_t	 b_len;
	size_t	 b_cap;
	int	 b_fail;
};

static int	 usage_bprintf(struct usage_buf *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));

/* Append to b; 0 or -1 (out of memory, remembered in b_fail). */
static int
usage_bprintf(struct usage_buf *b, const char *fmt, ...)
{
	va_list	 ap;
	char	*p;
	size_t	 cap;
	int	 n;

	if (b->b_fail)
		return (-1);
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->b_data != NULL ? b->b_data + b->b_len : NULL,
		    b->b_data != NULL ? b->b_cap - b->b_len : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			goto fail;
		if (b->b_data != NULL && (size_t)n < b->b_cap - b->b_len) {
			b->b_len += (size_t)n;
			return (0);
		}
		cap = b->b_cap == 0 ? 4096 : b->b_cap * 2;
		while (cap - b->b_len <= (size_t)n)
			cap *= 2;
		if ((p = realloc(b->b_data, cap)) == NULL)
			goto fail;
		b->b_data = p;
		b->b_cap = cap;
	}
fail:
	b->b_fail = 1;
	return (-1);
}

/* The file name of kind for the period holding ms. */
void
usage_file_name(char *buf, size_t len, int kind, int64_t ms)
{
	struct tm	 tm;
	time_t		 t = (time_t)(ms / 1000);

	gmtime_r(&t, &tm);
	if (kind == USAGE_MINUTES)
		snprintf(buf, len, "minutes-%04d-%02d-%02dT%02d",
		    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour);
	else
		snprintf(buf, len, "hours-%04d-%02d-%02d", tm.tm_year + 1900,
		    tm.tm_mon + 1, tm.tm_mday);
}

/* "1h", "24h", "30d" to USAGE_H1, USAGE_H24, USAGE_D30; -1 otherwise. */
int
usage_kind(const char *s)
{
	if (strcmp(s, "1h") == 0)
		return (USAGE_H1);
	if (strcmp(s, "24h") == 0)
		return (USAGE_H24);
	if (strcmp(s, "30d") == 0)
		return (USAGE_D30);
	return (-1);
}

/* --- parsing -------------------------------------------------------------- */

/* A decimal of at most 20 digits that fits in 64 bits at *p; 0 or -1. */
static int
usage_number(const char **p, uint64_t *v)
{
	const char	*s = *p;
	uint64_t	 n = 0;
	int		 d;

	if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] >= '0' &&
	    s[1] <= '9'))
		return (-1);
	for (; *s >= '0' && *s <= '9'; s++) {
		d = *s - '0';
		if (n > (UINT64_MAX - (uint64_t)d) / 10)
			return (-1);
		n = n * 10 + (uint64_t)d;
	}
	*p = s;
	*v = n;
	return (0);
}

/* The header line into kind and period, keys; 0 or -1 with err. */
static int
usage_header(const char *line, int kind, int64_t period, uint64_t *keys,
    char *err, size_t errlen)
{
	const char	*p = line, *want;
	uint64_t	 version, v;

	want = kind == USAGE_MINUTES ? "minutes " : "hours ";
	if (strncmp(p, "keygate-usage ", 14) != 0) {
		snprintf(err, errlen, "1: not a keygate usage file");
		return (-1);
	}
	p += 14;
	if (usage_number(&p, &version) == -1 || *p++ != ' ' ||
	    version != USAGE_VERSION) {
		snprintf(err, errlen, "1: not version %d", USAGE_VERSION);
		return (-1);
	}
	if (strncmp(p, want, strlen(want)) != 0) {
		snprintf(err, errlen, "1: not a file of %.*s", (int)strlen(want) -
		    1, want);
		return (-1);
	}
	p += strlen(want);
	if (usage_number(&p, &v) == -1 || *p++ != ' ' ||
	    (period >= 0 && v != (uint64_t)period)) {
		snprintf(err, errlen, "1: not the period its name says");
		return (-1);
	}
	if (usage_number(&p, keys) == -1 || *p != '\0' ||
	    *keys > USAGE_KEYS_MAX) {
		snprintf(err, errlen, "1: bad key count");
		return (-1);
	}
	return (0);
}

/*
 * One key line "ID [I:A,L,R]..." into id and pts (npts zeroed first);
 * 0 or -1 with a reason.
 */
static int
usage_key_line(const char *line, char *id, uint64_t (*pts)[USAGE_NC],
    int npts, const char **why)
{
	const char	*p = line;
	uint64_t	 idx;
	int64_t		 prev = -1;
	size_t		 n;
	int		 c;

	for (n = 0; (p[n] >= 'a' && p[n] <= 'z') || (p[n] >= 'A' &&
	    p[n] <= 'Z') || (p[n] >= '0' && p[n] <= '9') || p[n] == '_'; n++)
		if (n == KS_ID_LEN) {
			*why = "id too long";
			return (-1);
		}
	if (n == 0) {
		*why = "no key id";
		return (-1);
	}
	memcpy(id, p, n);
	id[n] = '\0';
	p += n;
	memset(pts, 0, sizeof(*pts) * (size_t)npts);
	while (*p == ' ') {
		p++;
		if (usage_number(&p, &idx) == -1 || *p++ != ':') {
			*why = "bad point index";
			return (-1);
		}
		if (idx >= (uint64_t)npts || (int64_t)idx <= prev) {
			*why = "point index out of range or order";
			return (-1);
		}
		prev = (int64_t)idx;
		for (c = 0; c < USAGE_NC; c++)
			if (usage_number(&p, &pts[idx][c]) == -1 ||
			    (c < USAGE_NC - 1 && *p++ != ',')) {
				*why = "bad count";
				return (-1);
			}
	}
	if (*p != '\0') {
		*why = "junk after the points";
		return (-1);
	}
	return (0);
}

/* Parse a usage file; see usage.h. */
int
usage_parse(FILE *fp, int kind, int64_t period, usage_line_cb cb, void *arg,
    char *err, size_t errlen)
{
	char		 line[USAGE_LINE_MAX + 1], id[KS_ID_LEN + 1];
	uint64_t	 pts[60][USAGE_NC], keys = 0, lineno = 0, seen = 0;
	const char	*why;
	size_t		 len;
	int		 npts = kind == USAGE_MINUTES ? 60 : 24, ended = 0;

	while (fgets(line, sizeof(line), fp) != NULL) {
		lineno++;
		len = strlen(line);
		if (len == 0 || line[len - 1] != '\n') {
			snprintf(err, errlen, "%" PRIu64 ": %s", lineno,
			    feof(fp) ? "no newline at the end (truncated)" :
			    "line too long or holds a NUL");
			return (-1);
		}
		line[len - 1] = '\0';
		if (ended) {
			snprintf(err, errlen, "%" PRIu64 ": after the end line",
			    lineno);
			return (-1);
		}
		if (lineno == 1) {
			if (usage_header(line, kind, period, &keys, err,
			    errlen) == -1)
				return (-1);
			continue;
		}
		if (strcmp(line, "end") == 0) {
			if (seen != keys) {
				snprintf(err, errlen, "%" PRIu64 ": %" PRIu64
				    " keys, the header said %" PRIu64, lineno,
				    seen, keys);
				return (-1);
			}
			ended = 1;
			continue;
		}
		if (++seen > keys) {
			snprintf(err, errlen, "%" PRIu64 ": more keys than the "
			    "header said", lineno);
			return (-1);
		}
		if (usage_key_line(line, id, pts, npts, &why) == -1) {
			snprintf(err, errlen, "%" PRIu64 ": %s", lineno, why);
			return (-1);
		}
		if (cb != NULL && cb(arg, id, (const uint64_t (*)[USAGE_NC])pts,
		    npts) == -1) {
			snprintf(err, errlen, "%" PRIu64 ": out of memory",
			    lineno);
			return (-1);
		}
	}
	if (ferror(fp)) {
		snprintf(err, errlen, "%s", strerror(errno != 0 ? errno : EIO));
		return (-1);
	}
	if (!ended) {
		snprintf(err, errlen, "%" PRIu64 ": no end line (truncated)",
		    lineno);
		return (-1);
	}
	return (0);
}

/*
 * Open the file of kind for the period holding ms in dir and parse it
 * with cb; with check, only checking first, so that a damaged file gives
 * no callback at all (without, the caller must discard what the
 * callbacks gave when -1 is returned).  0 (also when it is absent) or -1
 * (logged, skipped).
 */
static int
usage_read(struct journal *dir, int kind, int64_t ms, int check,
    usage_line_cb cb, void *arg)
{
	FILE		*fp;
	char		 name[64], err[512];
	int64_t		 period;
	int		 fd, rc;

	period = kind == USAGE_MINUTES ? ms / USAGE_HOUR_MS : ms /
	    USAGE_DAY_MS;
	usage_file_name(name, sizeof(name), kind, ms);
	if ((fd = journal_file_open(dir, name, err, sizeof(err))) == -1) {
		if (errno == ENOENT)
			return (0);
		log_warnx("usage history: %s (skipped)", err);
		return (-1);
	}
	if ((fp = fdopen(fd, "r")) == NULL) {
		log_warn("usage history: %s", name);
		close(fd);
		return (-1);
	}
	rc = check ? usage_parse(fp, kind, period, NULL, NULL, err,
	    sizeof(err)) : 0;
	if (rc == 0) {
		rewind(fp);
		rc = usage_parse(fp, kind, period, cb, arg, err, sizeof(err));
	}
	if (rc == -1)
		log_warnx("usage history: %s/%s:%s (file skipped)",
		    dir->j_dir, name, err);
	fclose(fp);
	return (rc);
}

/* --- the master's records ------------------------------------------------- */

/* Is s an id the file format holds ([A-Za-z0-9_]{1,KS_ID_LEN})? */
static int
usage_valid_id(const char *s)
{
	size_t	 n;

	for (n = 0; s[n] != '\0'; n++)
		if (n == KS_ID_LEN || !((s[n] >= 'a' && s[n] <= 'z') ||
		    (s[n] >= 'A' && s[n] <= 'Z') || (s[n] >= '0' &&
		    s[n] <= '9') || s[n] == '_'))
			return (0);
	return (n > 0);
}

/* The index where id is or would go in u's sorted records. */
static size_t
usage_find(const struct usage *u, const char *id, int *found)
{
	size_t	 lo = 0, hi = u->u_nrecs, mid;
	int	 c;

	*found = 0;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if ((c = strcmp(u->u_recs[mid]->ur_id, id)) == 0) {
			*found = 1;
			return (mid);
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (lo);
}

/* The record of id, made if missing; NULL if out of memory. */
static struct usage_rec *
usage_rec(struct usage *u, const char *id)
{
	struct usage_rec	*r, **recs;
	size_t			 i, cap;
	int			 found;

	i = usage_find(u, id, &found);
	if (found)
		return (u->u_recs[i]);
	if (u->u_nrecs == u->u_cap) {
		cap = u->u_cap == 0 ? 64 : u->u_cap + u->u_cap / 2;
		if ((recs = reallocarray(u->u_recs, cap, sizeof(*recs))) ==
		    NULL)
			return (NULL);
		u->u_recs = recs;
		u->u_cap = cap;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return (NULL);
	snprintf(r->ur_id, sizeof(r->ur_id), "%s", id);
	memmove(&u->u_recs[i + 1], &u->u_recs[i], (u->u_nrecs - i) *
	    sizeof(*u->u_recs));
	u->u_recs[i] = r;
	u->u_nrecs++;
	return (r);
}

/* Callback: a minute file's line into the record of id. */
static int
usage_load_minutes(void *arg, const char *id, const uint64_t (*pts)[USAGE_NC],
    int npts)
{
	struct usage_rec	*r;
	int			 i, c;

	if ((r = usage_rec(arg, id)) == NULL)
		return (-1);
	for (i = 0; i < npts && i < 60; i++)
		for (c = 0; c < USAGE_NC; c++)
			r->ur_min[i][c] = pts[i][c] > UINT32_MAX ? UINT32_MAX :
			    (uint32_t)pts[i][c];
	return (0);
}

/* Callback: an hour file's line into the record of id. */
static int
usage_load_hours(void *arg, const char *id, const uint64_t (*pts)[USAGE_NC],
    int npts)
{
	struct usage_rec	*r;
	int			 i, c;

	if ((r = usage_rec(arg, id)) == NULL)
		return (-1);
	for (i = 0; i < npts && i < 24; i++)
		for (c = 0; c < USAGE_NC; c++)
			r->ur_hour[i][c] = pts[i][c];
	return (0);
}

/* Drop every record. */
static void
usage_clear(struct usage *u)
{
	size_t	 i;

	for (i = 0; i < u->u_nrecs; i++)
		free(u->u_recs[i]);
	free(u->u_recs);
	u->u_recs = NULL;
	u->u_nrecs = u->u_cap = 0;
}

/*
 * Remove the files older than what queries read: minute files before the
 * hour 24 hours back (25 are kept: a 24 h query spans 25 hours), hour
 * files before the day 30 days back (31 kept), and their stale .tmp
 * files.  The names' zero-padded UTC dates sort as the times do, so a
 * name compares with the cut-off's.
 */
static void
usage_prune(struct usage *u, int64_t now)
{
	DIR		*d;
	struct dirent	*de;
	char		 mcut[64], hcut[64], err[512];
	size_t		 len;
	int		 fd, dfd;

	usage_file_name(mcut, sizeof(mcut), USAGE_MINUTES, now -
	    (USAGE_KEEP_HOURS - 1) * USAGE_HOUR_MS);
	usage_file_name(hcut, sizeof(hcut), USAGE_HOURS, now -
	    (USAGE_KEEP_DAYS - 1) * USAGE_DAY_MS);
	if ((dfd = journal_dirfd(&u->u_dir, err, sizeof(err))) == -1 ||
	    (fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) ==
	    -1 || (d = fdopendir(fd)) == NULL) {
		if (dfd == -1)
			log_warnx("usage history: %s", err);
		else
			log_warn("usage history: %s", u->u_dir.j_dir);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		len = strlen(de->d_name);
		if (len > 4 && strcmp(de->d_name + len - 4, ".tmp") == 0)
			len -= 4;
		if (!((len == strlen(mcut) && strncmp(de->d_name, mcut, 8) ==
		    0 && strncmp(de->d_name, mcut, len) < 0) ||
		    (len == strlen(hcut) && strncmp(de->d_name, hcut, 6) == 0 &&
		    strncmp(de->d_name, hcut, len) < 0)))
			continue;
		if (unlinkat(dfd, de->d_name, 0) == -1)
			log_warn("usage history: %s/%s", u->u_dir.j_dir,
			    de->d_name);
		else
			log_debug("%s: removed %s", __func__, de->d_name);
	}
	closedir(d);
}

/*
 * Move to minute: a new hour starts with empty minutes (and, should the
 * clock have gone back, with what its file already holds), a new day
 * with no record at all and what its files hold; old files go.
 */
static void
usage_roll(struct usage *u, int64_t minute, int64_t now)
{
	int64_t	 old = u->u_minute;
	size_t	 i;

	u->u_minute = minute;
	if (old >= 0 && old / 60 == minute / 60)
		return;
	if (old < 0 || old / 1440 != minute / 1440) {
		usage_clear(u);
		(void)usage_read(&u->u_dir, USAGE_HOURS, minute *
		    USAGE_MINUTE_MS, 1, usage_load_hours, u);
	} else
		for (i = 0; i < u->u_nrecs; i++)
			memset(u->u_recs[i]->ur_min, 0,
			    sizeof(u->u_recs[i]->ur_min));
	(void)usage_read(&u->u_dir, USAGE_MINUTES, minute * USAGE_MINUTE_MS,
	    1, usage_load_minutes, u);
	usage_prune(u, now);
}

/* Start the master's history; see usage.h. */
struct usage *
usage_open(const char *state_dir, uid_t uid, gid_t gid, int64_t now,
    char *err, size_t errlen)
{
	struct usage	*u;
	struct journal	 sj;
	char		 path[PATH_MAX], why[512];

	if ((u = calloc(1, sizeof(*u))) == NULL)
		goto oom;
	u->u_minute = -1;
	if (snprintf(path, sizeof(path), "%s/%s", state_dir, USAGE_DIR) >=
	    (int)sizeof(path)) {
		snprintf(err, errlen, "state_dir: name too long");
		free(u);
		return (NULL);
	}
	if (journal_init(&sj, state_dir, uid, gid) == -1) {
		free(u);
		goto oom;
	}
	if (journal_mkdir(&sj, USAGE_DIR, why, sizeof(why)) == -1)
		log_warnx("usage history: %s/%s", state_dir, why);
	journal_close(&sj);
	if (journal_init(&u->u_dir, path, uid, gid) == -1) {
		free(u);
		goto oom;
	}
	usage_roll(u, now / USAGE_MINUTE_MS, now);
	return (u);
oom:
	snprintf(err, errlen, "out of memory");
	return (NULL);
}

/* Free the master's history (usage_fold with force first, to keep it). */
void
usage_free(struct usage *u)
{
	if (u == NULL)
		return;
	usage_clear(u);
	journal_close(&u->u_dir);
	free(u);
}

/* Add the live part of slot since the last fold to r's minute and hour. */
static void
usage_add(struct usage_rec *r, int64_t minute, const uint64_t *d)
{
	uint32_t	*m = r->ur_min[minute % 60];
	uint64_t	*h = r->ur_hour[(minute / 60) % 24];
	int		 c;

	for (c = 0; c < USAGE_NC; c++) {
		/* Saturate: 2^32 uses of one key in one minute is absurd. */
		m[c] = d[c] > UINT32_MAX - m[c] ? UINT32_MAX : m[c] +
		    (uint32_t)d[c];
		h[c] = d[c] > UINT64_MAX - h[c] ? UINT64_MAX : h[c] + d[c];
	}
}

/*
 * Collect every live slot's uses since the last fold into the records of
 * u_minute and move the baselines; the caller holds the writer lock.
 * 0, or -1 if out of memory (what was not collected stays live).
 */
static int
usage_collect(struct usage *u, struct keystore *ks)
{
	struct usage_rec	*r;
	struct ks_key		 k;
	uint64_t		 c[KS_NCOUNTS], b[KS_NCOUNTS], d[USAGE_NC];
	uint32_t		 cursor = 0, slot;
	int			 i, any;

	while (keystore_next(ks, &cursor, &k, &slot) == KS_OK) {
		keystore_counts(ks, slot, c);
		keystore_base(ks, slot, b);
		for (i = any = 0; i < KS_NCOUNTS; i++) {
			d[i] = c[i] >= b[i] ? c[i] - b[i] : c[i];
			any |= d[i] != 0;
		}
		/*
		 * The id as a string, whatever a worker left in the copy; one
		 * the file format could not hold is not folded (never written
		 * into a file that would then be refused as a whole).
		 */
		k.k_id[KS_ID_LEN] = '\0';
		if (!any || !usage_valid_id(k.k_id))
			continue;
		if ((r = usage_rec(u, k.k_id)) == NULL)
			return (-1);
		usage_add(r, u->u_minute, d);
		keystore_set_base(ks, slot, c);
		u->u_dirty = 1;
	}
	return (0);
}

/* The file of kind for u_minute's hour or day, from the records. */
static int
usage_write(struct usage *u, int kind)
{
	struct usage_buf	 b;
	struct usage_rec	*r;
	char			 name[64], err[512];
	size_t			 i, n = 0;
	int64_t			 period, ms = u->u_minute * USAGE_MINUTE_MS;
	int			 p, npts, rc, pass;

	memset(&b, 0, sizeof(b));
	npts = kind == USAGE_MINUTES ? 60 : 24;
	period = kind == USAGE_MINUTES ? ms / USAGE_HOUR_MS : ms / USAGE_DAY_MS;
	/* Pass 0 counts the keys with traffic in the file, pass 1 writes. */
	for (pass = 0; pass < 2; pass++) {
		if (pass == 1)
			usage_bprintf(&b, "keygate-usage %d %s %" PRId64
			    " %zu\n", USAGE_VERSION, kind == USAGE_MINUTES ?
			    "minutes" : "hours", period, n);
		for (i = 0; i < u->u_nrecs; i++) {
			r = u->u_recs[i];
			for (p = 0; p < npts; p++)
				if (kind == USAGE_MINUTES ? (r->ur_min[p][0] |
				    r->ur_min[p][1] | r->ur_min[p][2]) != 0 :
				    (r->ur_hour[p][0] | r->ur_hour[p][1] |
				    r->ur_hour[p][2]) != 0)
					break;
			if (p == npts)
				continue;
			if (pass == 0) {
				n++;
				continue;
			}
			usage_bprintf(&b, "%s", r->ur_id);
			for (p = 0; p < npts; p++) {
				if (kind == USAGE_MINUTES &&
				    (r->ur_min[p][0] | r->ur_min[p][1] |
				    r->ur_min[p][2]) != 0)
					usage_bprintf(&b, " %d:%" PRIu32 ",%"
					    PRIu32 ",%" PRIu32, p,
					    r->ur_min[p][0], r->ur_min[p][1],
					    r->ur_min[p][2]);
				else if (kind == USAGE_HOURS &&
				    (r->ur_hour[p][0] | r->ur_hour[p][1] |
				    r->ur_hour[p][2]) != 0)
					usage_bprintf(&b, " %d:%" PRIu64 ",%"
					    PRIu64 ",%" PRIu64, p,
					    r->ur_hour[p][0], r->ur_hour[p][1],
					    r->ur_hour[p][2]);
			}
			usage_bprintf(&b, "\n");
		}
	}
	usage_bprintf(&b, "end\n");
	usage_file_name(name, sizeof(name), kind, ms);
	if (b.b_fail) {
		log_warnx("usage history: %s: out of memory", name);
		rc = -1;
	} else if ((rc = journal_file_share(&u->u_dir, name, b.b_data, b.b_len,
	    err, sizeof(err))) == -1)
		log_warnx("usage history: %s/%s", u->u_dir.j_dir, err);
	free(b.b_data);
	return (rc);
}

/* Fold; see usage.h and the comment at the top. */
int
usage_fold(struct usage *u, struct keystore *ks, int64_t now, int force)
{
	struct ks_header	*hdr = ks->ks_hdr;
	int64_t			 minute = now / USAGE_MINUTE_MS;
	int			 rc = 1;

	if (u == NULL || (!force && minute == u->u_minute))
		return (0);
	if (keystore_lock(ks, getpid(), force ? 1000 : 0) != KS_OK)
		return (0);
	__atomic_fetch_add(&hdr->kh_fold_seq, 1, __ATOMIC_ACQ_REL);
	if (usage_collect(u, ks) == -1) {
		log_warnx("usage history: out of memory");
		rc = -1;
	}
	if (u->u_dirty) {
		if (usage_write(u, USAGE_MINUTES) == -1 ||
		    usage_write(u, USAGE_HOURS) == -1)
			rc = -1;
		else
			u->u_dirty = 0;
	}
	__atomic_fetch_add(&hdr->kh_fold_seq, 1, __ATOMIC_RELEASE);
	keystore_unlock(ks, getpid());
	/*
	 * Records not written stay dirty and the fold stays on its minute
	 * while that minute's hour changes: the next folds write them into
	 * the right files once they can (traffic meanwhile goes into that
	 * minute), so a full disk delays history but does not lose it.
	 */
	if (minute != u->u_minute && (rc != -1 || minute / 60 ==
	    u->u_minute / 60))
		usage_roll(u, minute, now);
	return (rc);
}

/* Bytes the master holds: records, their index, the handle. */
size_t
usage_memory(const struct usage *u)
{
	return (sizeof(*u) + u->u_nrecs * sizeof(struct usage_rec) +
	    u->u_cap * sizeof(*u->u_recs));
}

/* Keys with a record (traffic in the current day). */
size_t
usage_nkeys(const struct usage *u)
{
	return (u->u_nrecs);
}

/* --- queries (workers) ---------------------------------------------------- */

struct usage_query {
	const char		*q_id;
	struct usage_point	*q_pts;
	int64_t			 q_first;	/* step number of q_pts[0] */
	int64_t			 q_base;	/* step number of the file's [0] */
	size_t			 q_n;
	uint64_t		 q_file[60][USAGE_NC];	/* the key's line */
	int			 q_found;
};

/*
 * Callback: keep the queried key's line of one file; it is added to the
 * answer only once the whole file has parsed (one pass, no check first:
 * a query reads up to 31 files of every key with traffic).
 */
static int
usage_query_line(void *arg, const char *id, const uint64_t (*pts)[USAGE_NC],
    int npts)
{
	struct usage_query	*q = arg;

	if (strcmp(id, q->q_id) != 0 || npts > 60)
		return (0);
	memcpy(q->q_file, pts, sizeof(*pts) * (size_t)npts);
	q->q_found = npts;
	return (0);
}

/* The files' points of the query, step ms each, into q (zeroed first). */
static void
usage_query_files(struct journal *dir, struct usage_query *q, int64_t step)
{
	int64_t	 span, per, f, at;
	size_t	 i;
	int	 kind, c;

	for (i = 0; i < q->q_n; i++)
		memset(q->q_pts[i].up_c, 0, sizeof(q->q_pts[i].up_c));
	kind = step == USAGE_MINUTE_MS ? USAGE_MINUTES : USAGE_HOURS;
	span = kind == USAGE_MINUTES ? 60 : 24;	/* steps in a file */
	per = span * step;			/* ms in a file */
	for (f = q->q_first / span; f <= (q->q_first + (int64_t)q->q_n - 1) /
	    span; f++) {
		q->q_base = f * span;
		q->q_found = 0;
		if (usage_read(dir, kind, f * per, 0, usage_query_line, q) ==
		    -1)
			continue;
		for (i = 0; i < (size_t)q->q_found; i++) {
			at = q->q_base + (int64_t)i - q->q_first;
			if (at < 0 || at >= (int64_t)q->q_n)
				continue;
			for (c = 0; c < USAGE_NC; c++)
				q->q_pts[at].up_c[c] += q->q_file[i][c];
		}
	}
}

/* The history of one key; see usage.h. */
size_t
usage_history(const char *state_dir, uid_t uid, gid_t gid,
    const struct keystore *ks, uint32_t slot, const char *id, int kind,
    int64_t now, struct usage_point *pts)
{
	struct usage_query	 q;
	struct journal		 dir;
	struct timespec		 ts = { 0, 2000000 };	/* 2 ms */
	char			 path[PATH_MAX];
	uint64_t		 c[KS_NCOUNTS], b[KS_NCOUNTS];
	uint32_t		 s1, s2;
	int64_t			 step;
	size_t			 i;
	int			 tries, k;

	step = kind == USAGE_D30 ? USAGE_HOUR_MS : USAGE_MINUTE_MS;
	q.q_id = id;
	q.q_pts = pts;
	q.q_n = kind == USAGE_H1 ? 60 : kind == USAGE_H24 ? 1440 : 720;
	q.q_first = now / step - (int64_t)q.q_n + 1;
	for (i = 0; i < q.q_n; i++)
		pts[i].up_t = (q.q_first + (int64_t)i) * step;
	snprintf(path, sizeof(path), "%s/%s", state_dir, USAGE_DIR);
	if (journal_init(&dir, path, uid, gid) == -1) {
		for (i = 0; i < q.q_n; i++)
			memset(pts[i].up_c, 0, sizeof(pts[i].up_c));
		return (q.q_n);
	}
	/*
	 * The seqlock read (see the top): at most about two seconds of
	 * retries, well past a fold's few fsyncs; after that the answer is
	 * what the last try saw.
	 */
	for (tries = 0; tries < 1000; tries++) {
		s1 = __atomic_load_n(&ks->ks_hdr->kh_fold_seq,
		    __ATOMIC_ACQUIRE);
		if (s1 & 1) {
			nanosleep(&ts, NULL);
			continue;
		}
		usage_query_files(&dir, &q, step);
		keystore_counts(ks, slot, c);
		keystore_base(ks, slot, b);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		s2 = __atomic_load_n(&ks->ks_hdr->kh_fold_seq,
		    __ATOMIC_RELAXED);
		if (s1 == s2)
			break;
	}
	if (tries == 1000) {
		usage_query_files(&dir, &q, step);
		keystore_counts(ks, slot, c);
		keystore_base(ks, slot, b);
	}
	for (k = 0; k < USAGE_NC; k++)
		pts[q.q_n - 1].up_c[k] += c[k] >= b[k] ? c[k] - b[k] : c[k];
	journal_close(&dir);
	return (q.q_n);
}
