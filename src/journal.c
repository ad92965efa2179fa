/*
 * Persistence of the key store: keys.snapshot (binary, snapshot.c does the
 * bytes; the older JSON lines still load), keys.journal and keys.usage
 * (JSON lines) in state_dir; see journal.h for the formats and the rules
 * about damage.  Only digests are written, never a secret.
 *
 * Every record is checked field by field when it is read (key_check(),
 * whatever the format), and every record is checked the same way before
 * it is written, so that the daemon never writes a file it would then
 * refuse to start from.
 */

#include <sys/types.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "journal.h"
#include "keystore.h"
#include "log.h"
#include "snapshot.h"
#include "util.h"

#define SNAPSHOT_TMP		SNAPSHOT_FILE ".tmp"
#define USAGE_TMP		USAGE_FILE ".tmp"
#define JOURNAL_TMP		JOURNAL_FILE ".tmp"
#define SNAPSHOT_VERSION	1	/* of the JSON-lines format */

/* A file read line by line; errors name FILE:LINE. */
struct jreader {
	FILE		*r_fp;
	const char	*r_name;	/* JOURNAL_FILE, SNAPSHOT_FILE, ... */
	char		*r_line;	/* getline() buffer */
	size_t		 r_cap;
	size_t		 r_len;		/* bytes of the line, without "\n" */
	size_t		 r_lineno;	/* 1-based; 0: no line yet */
	off_t		 r_off;		/* offset of the current line */
	off_t		 r_next;	/* offset of the next line */
	int		 r_torn;	/* the line has no "\n" (at EOF) */
	char		*r_err;
	size_t		 r_errlen;
};

/*
 * Journal replay state: the skip threshold, the order check, and the
 * repair of a journal two processes appended to (see journal_replay).
 */
struct jreplay {
	uint64_t	 p_skip;	/* lines with seq <= this are done */
	uint64_t	 p_prev;	/* seq of the line before, 0: none */
	uint64_t	 p_last;	/* last seq applied (or p_skip) */
	int		 p_broken;	/* a seq went backwards: renumbering */
	size_t		 p_renumbered;	/* lines given a new seq */
	size_t		 p_dropped;	/* lines that could not be applied */
};

static const char *const key_fields[] = {
	"id", "digest", "old_digest", "grace_until", "name", "owner",
	"app_id", "prefix", "hint", "scopes", "created", "updated", "expires",
	"disabled", "rate", NULL
};
static const char *const put_fields[] = { "seq", "op", "key", "idem", NULL };
static const char *const del_fields[] = { "seq", "op", "id", NULL };

/* Who is given the "idem" member of a replayed put line (journal_set_put_hook). */
static void	(*journal_hook)(void *, const json_t *, const struct ks_key *);
static void	*journal_hook_arg;
static const char *const head_fields[] = {
	"keygate_snapshot", "seq", "keys", NULL
};
static const char *const end_fields[] = { "end", NULL };
static const char *const usage_fields[] = {
	"id", "allowed", "refused", "rate_limited", "last_used", NULL
};

/* "FILE:LINE: message" (or "FILE: message" before the first line). */
static void __attribute__((format(printf, 2, 3)))
rd_error(struct jreader *r, const char *fmt, ...)
{
	char	 msg[512];
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (r->r_lineno == 0)
		snprintf(r->r_err, r->r_errlen, "%s: %s", r->r_name, msg);
	else
		snprintf(r->r_err, r->r_errlen, "%s:%zu: %s", r->r_name,
		    r->r_lineno, msg);
}

/* "FILE: strerror(errnum)" into err; errno is left as errnum. */
static void
file_error(char *err, size_t errlen, const char *name, int errnum)
{
	snprintf(err, errlen, "%s: %s", name, strerror(errnum));
	errno = errnum;
}

/*
 * Files in state_dir.  state_dir belongs to the workers' user, who can put
 * anything under any name there: a symbolic link to a file of root's, a
 * hard link, a FIFO.  The master runs as root, so every file is opened
 * relative to a descriptor of the directory (itself opened without
 * following a link), never following a link (O_NOFOLLOW), never waiting
 * on a FIFO (O_NONBLOCK), and is then checked through its descriptor: a
 * regular file with a single link, owned by root, by us or by the
 * configured user.  Only a file this process has just created (O_EXCL) is
 * ever given to the configured user; an existing file is never chowned.
 * Renames and removals go through the directory descriptor too.
 */

/* Is uid an acceptable owner of a file in state_dir? */
static int
owner_ok(const struct journal *j, uid_t uid)
{
	return (uid == 0 || uid == geteuid() ||
	    (j->j_uid != (uid_t)-1 && uid == j->j_uid));
}

/* The descriptor of state_dir, opened on first use; -1 with err. */
static int
jdir(struct journal *j, char *err, size_t errlen)
{
	struct stat	 st;
	int		 fd;

	if (j->j_dirfd != -1)
		return (j->j_dirfd);
	fd = open(j->j_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1) {
		if (errno == ELOOP || errno == ENOTDIR)
			snprintf(err, errlen, "state_dir %s: not a directory "
			    "or a symbolic link (refused: name the real "
			    "directory)", j->j_dir);
		else
			snprintf(err, errlen, "state_dir %s: %s", j->j_dir,
			    strerror(errno));
		return (-1);
	}
	if (fstat(fd, &st) == -1 || !owner_ok(j, st.st_uid)) {
		snprintf(err, errlen, "state_dir %s: owned by uid %lu, not by "
		    "root or the configured user (refused)", j->j_dir,
		    (unsigned long)st.st_uid);
		close(fd);
		errno = EPERM;
		return (-1);
	}
	j->j_dirfd = fd;
	return (fd);
}

/* Check what fd (state_dir/name) is; 0, or -1 with err and EPERM. */
static int
file_check(const struct journal *j, int fd, const char *name, char *err,
    size_t errlen)
{
	struct stat	 st;

	if (fstat(fd, &st) == -1) {
		snprintf(err, errlen, "%s: %s", name, strerror(errno));
		return (-1);
	}
	if (!S_ISREG(st.st_mode))
		snprintf(err, errlen, "%s: not a regular file (refused)",
		    name);
	else if (st.st_nlink != 1)
		snprintf(err, errlen, "%s: has %lu hard links (refused: a "
		    "file in state_dir must have exactly one)", name,
		    (unsigned long)st.st_nlink);
	else if (!owner_ok(j, st.st_uid))
		snprintf(err, errlen, "%s: owned by uid %lu, not by root or "
		    "the configured user (refused)", name,
		    (unsigned long)st.st_uid);
	else
		return (0);
	errno = EPERM;
	return (-1);
}

/* Give a file this process has just created to the configured user. */
static int
file_give(const struct journal *j, int fd)
{
	if (j->j_uid == (uid_t)-1 && j->j_gid == (gid_t)-1)
		return (0);
	return (fchown(fd, j->j_uid, j->j_gid));
}

/*
 * Open state_dir/name with flags (O_RDONLY, O_WRONLY, ...).  An existing
 * file must pass file_check(); with create, a missing one is made with
 * O_EXCL (0600) and given to the configured user.  The fd, or -1 with
 * errno (ENOENT: missing and not created) and a reason in err.
 */
static int
file_open(struct journal *j, const char *name, int flags, int create,
    char *err, size_t errlen)
{
	int	 dfd, fd, tries, saved;

	if ((dfd = jdir(j, err, errlen)) == -1)
		return (-1);
	for (tries = 0; tries < 3; tries++) {
		fd = openat(dfd, name, flags | O_NOFOLLOW | O_NONBLOCK |
		    O_CLOEXEC);
		if (fd != -1) {
			if (file_check(j, fd, name, err, errlen) == -1 ||
			    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) &
			    ~O_NONBLOCK) == -1)
				goto fail;
			return (fd);
		}
		if (errno != ENOENT || !create)
			break;
		fd = openat(dfd, name, flags | O_CREAT | O_EXCL | O_NOFOLLOW |
		    O_CLOEXEC, 0600);
		if (fd != -1) {
			if (file_give(j, fd) == -1) {
				saved = errno;
				(void)unlinkat(dfd, name, 0);
				close(fd);
				file_error(err, errlen, name, saved);
				return (-1);
			}
			return (fd);
		}
		if (errno != EEXIST)	/* else made meanwhile: open it */
			break;
	}
	if (errno == ELOOP || errno == EMLINK) {
		snprintf(err, errlen, "%s: a symbolic link (refused: a file "
		    "in state_dir must be a regular file)", name);
		errno = EPERM;
	} else
		file_error(err, errlen, name, errno);
	return (-1);
fail:
	saved = errno;
	close(fd);
	errno = saved;
	return (-1);
}

/* All of buf to fd, across short writes and EINTR; 0 or -1. */
static int
write_all(int fd, const char *buf, size_t len)
{
	ssize_t	 n;

	while (len > 0) {
		n = write(fd, buf, len);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return (-1);
		}
		buf += n;
		len -= (size_t)n;
	}
	return (0);
}


/*
 * Is s a key id: "key_" and 16 base62 characters?  At most KS_ID_LEN + 1
 * bytes are read: s may be a copy of a record whose id has no NUL.
 */
static int
valid_id(const char *s)
{
	size_t	 i;

	if (strnlen(s, KS_ID_LEN + 1) != KS_ID_LEN ||
	    strncmp(s, "key_", 4) != 0)
		return (0);
	for (i = 4; i < KS_ID_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		    (s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= 'A' && s[i] <= 'Z')))
			return (0);
	return (1);
}

/* Is s a key prefix: [a-z0-9]{1,KS_PREFIX_MAX}? */
static int
valid_prefix(const char *s)
{
	size_t	 len = strlen(s), i;

	if (len == 0 || len > KS_PREFIX_MAX)
		return (0);
	for (i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		    (s[i] >= 'a' && s[i] <= 'z')))
			return (0);
	return (1);
}

/* KS_DIGEST_LEN bytes as lowercase hex into out (2 * KS_DIGEST_LEN + 1). */
static void
hex_encode(const uint8_t *d, char *out)
{
	static const char	 hex[] = "0123456789abcdef";
	size_t			 i;

	for (i = 0; i < KS_DIGEST_LEN; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 0xf];
	}
	out[2 * KS_DIGEST_LEN] = '\0';
}

/* Is every byte of d zero? */
static int
digest_zero(const uint8_t *d)
{
	size_t	 i;

	for (i = 0; i < KS_DIGEST_LEN; i++)
		if (d[i] != 0)
			return (0);
	return (1);
}

/*
 * Is the string member s (size bytes) within max bytes and UTF-8?  If
 * not, say which field in why.  The NUL is looked for within the member
 * only: a record copied from the store may have none.
 */
static int
key_str(const char *s, size_t size, size_t max, const char *name, char *why,
    size_t whylen)
{
	size_t	 len = strnlen(s, size);

	if (len > max) {
		snprintf(why, whylen, "field \"%s\" is too long (%zu bytes, at "
		    "most %zu)", name, len, max);
		return (0);
	}
	if (!util_utf8_valid(s, len)) {
		snprintf(why, whylen, "field \"%s\" is not UTF-8", name);
		return (0);
	}
	return (1);
}

/* Are the scopes s (NUL-terminated) words joined by single spaces? */
static int
scopes_valid(const char *s)
{
	size_t	 len = strlen(s);

	return (len == 0 || (s[0] != ' ' && s[len - 1] != ' ' &&
	    strstr(s, "  ") == NULL));
}

#define KEY_STR(k, m, max, name, why, whylen) \
	key_str((k)->m, sizeof((k)->m), (max), (name), (why), (whylen))

/*
 * The checks every key record passes, whichever way it comes: a journal
 * line, either snapshot format, or a record about to be written (so that
 * the daemon never writes a file it would refuse to start from).  The
 * JSON reader checks the types and the lengths it must know to copy a
 * field; the binary reader checks lengths before copying; what a record
 * means is checked here, once.  0, or -1 with the reason (naming the
 * field as the JSON formats do) in why.
 */
static int
key_check(const struct ks_key *k, char *why, size_t whylen)
{
	static const char *const tnames[] = {
		"grace_until", "created", "updated", "expires"
	};
	const int64_t	 times[] = {
		k->k_grace_until, k->k_created, k->k_updated, k->k_expires
	};
	size_t		 i;

	if (!valid_id(k->k_id)) {
		snprintf(why, whylen, "field \"id\" is not a key id");
		return (-1);
	}
	if (!KEY_STR(k, k_name, KS_NAME_MAX, "name", why, whylen) ||
	    !KEY_STR(k, k_owner, KS_OWNER_MAX, "owner", why, whylen) ||
	    !KEY_STR(k, k_app, KS_APP_MAX, "app_id", why, whylen) ||
	    !KEY_STR(k, k_prefix, KS_PREFIX_MAX, "prefix", why, whylen) ||
	    !KEY_STR(k, k_hint, KS_HINT_MAX, "hint", why, whylen) ||
	    !KEY_STR(k, k_scopes, KS_SCOPES_MAX, "scopes", why, whylen))
		return (-1);
	if (!valid_prefix(k->k_prefix)) {
		snprintf(why, whylen, "field \"prefix\" is not [a-z0-9]{1,%d}",
		    KS_PREFIX_MAX);
		return (-1);
	}
	if (!scopes_valid(k->k_scopes)) {
		snprintf(why, whylen, "field \"scopes\" holds an empty scope "
		    "or one with a space");
		return (-1);
	}
	for (i = 0; i < sizeof(times) / sizeof(times[0]); i++)
		if (times[i] < 0) {
			snprintf(why, whylen, "field \"%s\" is below 0",
			    tnames[i]);
			return (-1);
		}
	if (k->k_grace_until != 0 && digest_zero(k->k_old_digest)) {
		snprintf(why, whylen, "field \"grace_until\" is set but "
		    "\"old_digest\" is null");
		return (-1);
	}
	if ((k->k_flags & ~(uint32_t)KS_F_DISABLED) != 0) {
		snprintf(why, whylen, "unknown flags 0x%x", k->k_flags);
		return (-1);
	}
	return (0);
}

/* The first member of o not in names (NULL-ended), or NULL: all known. */
const char *
journal_unknown_member(json_t *o, const char *const *names)
{
	const char	*name;
	json_t		*v;
	size_t		 i;

	json_object_foreach(o, name, v) {
		for (i = 0; names[i] != NULL; i++)
			if (strcmp(names[i], name) == 0)
				break;
		if (names[i] == NULL)
			return (name);
	}
	return (NULL);
}

/* Check that o has only the members in names; 0, or -1 naming another. */
static int
fields_known(struct jreader *r, json_t *o, const char *const *names)
{
	const char	*name;

	if ((name = journal_unknown_member(o, names)) == NULL)
		return (0);
	rd_error(r, "unknown field \"%.64s\"", name);
	return (-1);
}

/*
 * Member name of o, which must exist and have type (JSON_TRUE stands for
 * either boolean); a JSON null is accepted (and returned) when nullable.
 */
static json_t *
field_get(struct jreader *r, json_t *o, const char *name, json_type type,
    int nullable)
{
	static const char *const what[] = {
		[JSON_OBJECT] = "an object", [JSON_ARRAY] = "an array",
		[JSON_STRING] = "a string", [JSON_INTEGER] = "an integer",
		[JSON_REAL] = "a number", [JSON_TRUE] = "true or false",
		[JSON_FALSE] = "true or false", [JSON_NULL] = "null"
	};
	json_t	*v;

	if ((v = json_object_get(o, name)) == NULL) {
		rd_error(r, "field \"%s\" is missing", name);
		return (NULL);
	}
	if (json_is_null(v) && nullable)
		return (v);
	if (json_typeof(v) == type ||
	    (type == JSON_TRUE && json_is_boolean(v)))
		return (v);
	rd_error(r, "field \"%s\" is not %s%s", name, what[type],
	    nullable ? " or null" : "");
	return (NULL);
}

/* String member name into dst (at most max bytes); 0 or -1. */
static int
field_str(struct jreader *r, json_t *o, const char *name, char *dst,
    size_t max)
{
	json_t	*v;
	size_t	 len;

	if ((v = field_get(r, o, name, JSON_STRING, 0)) == NULL)
		return (-1);
	len = json_string_length(v);
	if (len > max) {
		rd_error(r, "field \"%s\" is too long (%zu bytes, at most %zu)",
		    name, len, max);
		return (-1);
	}
	memcpy(dst, json_string_value(v), len);
	dst[len] = '\0';
	return (0);
}

/* Integer member name >= min into out (null gives 0 when nullable); 0 or -1. */
static int
field_int(struct jreader *r, json_t *o, const char *name, int nullable,
    int64_t min, int64_t *out)
{
	json_t	*v;

	if ((v = field_get(r, o, name, JSON_INTEGER, nullable)) == NULL)
		return (-1);
	if (json_is_null(v)) {
		*out = 0;
		return (0);
	}
	if (json_integer_value(v) < min) {
		rd_error(r, "field \"%s\" is below %lld", name, (long long)min);
		return (-1);
	}
	*out = json_integer_value(v);
	return (0);
}

/* 64-hex-digit member name into d (null gives zeros when nullable); 0 or -1. */
static int
field_digest(struct jreader *r, json_t *o, const char *name, int nullable,
    uint8_t *d)
{
	const char	*s;
	json_t		*v;
	size_t		 i;
	int		 hi, lo;

	if ((v = field_get(r, o, name, JSON_STRING, nullable)) == NULL)
		return (-1);
	memset(d, 0, KS_DIGEST_LEN);
	if (json_is_null(v))
		return (0);
	s = json_string_value(v);
	if (json_string_length(v) != 2 * KS_DIGEST_LEN)
		goto fail;
	for (i = 0; i < KS_DIGEST_LEN; i++) {
		if ((hi = util_hexval(s[2 * i])) == -1 ||
		    (lo = util_hexval(s[2 * i + 1])) == -1)
			goto fail;
		d[i] = (uint8_t)(hi << 4 | lo);
	}
	return (0);
fail:
	rd_error(r, "field \"%s\" is not %d hex digits", name,
	    2 * KS_DIGEST_LEN);
	return (-1);
}

/* The "scopes" array joined by single spaces into k_scopes; 0 or -1. */
static int
key_scopes(struct jreader *r, json_t *o, struct ks_key *k)
{
	const char	*s;
	json_t		*a, *v;
	size_t		 i, len, used = 0;

	if ((a = field_get(r, o, "scopes", JSON_ARRAY, 0)) == NULL)
		return (-1);
	json_array_foreach(a, i, v) {
		if (!json_is_string(v)) {
			rd_error(r, "field \"scopes\" holds a non-string");
			return (-1);
		}
		s = json_string_value(v);
		len = json_string_length(v);
		if (len == 0 || strlen(s) != len || strchr(s, ' ') != NULL) {
			rd_error(r, "field \"scopes\" holds an empty scope or "
			    "one with a space");
			return (-1);
		}
		if (used + (used > 0) + len > KS_SCOPES_MAX) {
			rd_error(r, "field \"scopes\" is too long (at most %d "
			    "bytes joined)", KS_SCOPES_MAX);
			return (-1);
		}
		if (used > 0)
			k->k_scopes[used++] = ' ';
		memcpy(k->k_scopes + used, s, len);
		used += len;
	}
	k->k_scopes[used] = '\0';
	return (0);
}

/* The "rate" array of KS_NWINDOWS limits into k_rate; 0 or -1. */
static int
key_rate(struct jreader *r, json_t *o, struct ks_key *k)
{
	json_t		*a, *v;
	json_int_t	 n;
	size_t		 i;

	if ((a = field_get(r, o, "rate", JSON_ARRAY, 0)) == NULL)
		return (-1);
	if (json_array_size(a) != KS_NWINDOWS)
		goto fail;
	json_array_foreach(a, i, v) {
		if (!json_is_integer(v))
			goto fail;
		n = json_integer_value(v);
		if (n < 0 || n > UINT32_MAX)
			goto fail;
		k->k_rate[i] = (uint32_t)n;
	}
	return (0);
fail:
	rd_error(r, "field \"rate\" is not an array of %d integers from 0 to "
	    "%u", KS_NWINDOWS, UINT32_MAX);
	return (-1);
}

/* The string members of a KEY object into k (see key_check); 0 or -1. */
static int
key_strings(struct jreader *r, json_t *o, struct ks_key *k)
{
	if (field_str(r, o, "id", k->k_id, KS_ID_LEN) == -1 ||
	    field_str(r, o, "name", k->k_name, KS_NAME_MAX) == -1 ||
	    field_str(r, o, "owner", k->k_owner, KS_OWNER_MAX) == -1 ||
	    field_str(r, o, "app_id", k->k_app, KS_APP_MAX) == -1 ||
	    field_str(r, o, "prefix", k->k_prefix, KS_PREFIX_MAX) == -1 ||
	    field_str(r, o, "hint", k->k_hint, KS_HINT_MAX) == -1)
		return (-1);
	if (field_digest(r, o, "digest", 0, k->k_digest) == -1 ||
	    field_digest(r, o, "old_digest", 1, k->k_old_digest) == -1)
		return (-1);
	return (key_scopes(r, o, k));
}

/*
 * A KEY object into k, every field checked; 0, or -1 naming the first bad.
 * Times of "none" are null, so a grace_until or an expiry is at least 1.
 */
static int
key_from_json(struct jreader *r, json_t *o, struct ks_key *k)
{
	json_t	*v;
	char	 why[256];

	memset(k, 0, sizeof(*k));
	if (fields_known(r, o, key_fields) == -1 ||
	    key_strings(r, o, k) == -1 || key_rate(r, o, k) == -1)
		return (-1);
	if (field_int(r, o, "grace_until", 1, 1, &k->k_grace_until) == -1 ||
	    field_int(r, o, "created", 0, INT64_MIN, &k->k_created) == -1 ||
	    field_int(r, o, "updated", 0, INT64_MIN, &k->k_updated) == -1 ||
	    field_int(r, o, "expires", 1, 1, &k->k_expires) == -1)
		return (-1);
	if ((v = field_get(r, o, "disabled", JSON_TRUE, 0)) == NULL)
		return (-1);
	if (json_is_true(v))
		k->k_flags |= KS_F_DISABLED;
	if (key_check(k, why, sizeof(why)) == -1) {
		rd_error(r, "%s", why);
		return (-1);
	}
	return (0);
}

/* The space-separated scopes s as a JSON array of strings, or NULL. */
static json_t *
scopes_to_json(const char *s, size_t len)
{
	json_t		*a;
	size_t		 i = 0, n;

	if ((a = json_array()) == NULL)
		return (NULL);
	while (i < len) {
		if (s[i] == ' ') {
			i++;
			continue;
		}
		for (n = 0; i + n < len && s[i + n] != ' '; n++)
			;
		if (json_array_append_new(a, json_stringn(s + i, n)) == -1) {
			json_decref(a);
			return (NULL);
		}
		i += n;
	}
	return (a);
}

/* Integer ms, or JSON null for 0 ("none", "never"). */
static json_t *
time_or_null(int64_t ms)
{
	return (ms == 0 ? json_null() : json_integer(ms));
}

#define SN(f)	(f), strnlen((f), sizeof(f))	/* bounded "s%" argument */

/* k as a KEY object, or NULL (out of memory, or a field not UTF-8). */
static json_t *
key_to_json(const struct ks_key *k)
{
	char	 digest[2 * KS_DIGEST_LEN + 1], old[2 * KS_DIGEST_LEN + 1];

	hex_encode(k->k_digest, digest);
	hex_encode(k->k_old_digest, old);
	return (json_pack("{s:s%,s:s,s:o,s:o,s:s%,s:s%,s:s%,s:s%,s:s%,s:o,"
	    "s:I,s:I,s:o,s:b,s:[I,I,I]}",
	    "id", SN(k->k_id), "digest", digest,
	    "old_digest", digest_zero(k->k_old_digest) ? json_null() :
	    json_string(old),
	    "grace_until", time_or_null(k->k_grace_until),
	    "name", SN(k->k_name), "owner", SN(k->k_owner),
	    "app_id", SN(k->k_app), "prefix", SN(k->k_prefix),
	    "hint", SN(k->k_hint),
	    "scopes", scopes_to_json(k->k_scopes, strnlen(k->k_scopes,
	    sizeof(k->k_scopes))),
	    "created", (json_int_t)k->k_created,
	    "updated", (json_int_t)k->k_updated,
	    "expires", time_or_null(k->k_expires),
	    "disabled", (k->k_flags & KS_F_DISABLED) != 0,
	    "rate", (json_int_t)k->k_rate[KS_W1S],
	    (json_int_t)k->k_rate[KS_W10S], (json_int_t)k->k_rate[KS_W60S]));
}

/*
 * k as a KEY object that key_from_json() accepts back, or NULL with the
 * reason in err (naming file).  Checking before writing keeps a bad record
 * from the admin API out of the files the daemon must start from; k
 * itself passes key_check(), as the binary snapshot's writer will ask.
 */
static json_t *
key_encode(const struct ks_key *k, const char *file, char *err, size_t errlen)
{
	struct jreader	 r;
	struct ks_key	 back;
	json_t		*o;
	char		 why[256];

	memset(&r, 0, sizeof(r));
	r.r_name = file;
	r.r_err = err;
	r.r_errlen = errlen;
	if (key_check(k, why, sizeof(why)) == -1) {
		rd_error(&r, "%s", why);
		errno = EINVAL;
		return (NULL);
	}
	if ((o = key_to_json(k)) == NULL) {
		rd_error(&r, "key %.*s cannot be encoded (out of memory)",
		    KS_ID_LEN, k->k_id);
		errno = ENOMEM;
		return (NULL);
	}
	if (key_from_json(&r, o, &back) == -1) {
		json_decref(o);
		errno = EINVAL;
		return (NULL);
	}
	return (o);
}

/* Prepare a handle for dir; no file is opened yet. */
int
journal_init(struct journal *j, const char *dir, uid_t uid, gid_t gid)
{
	memset(j, 0, sizeof(*j));
	j->j_fd = -1;
	j->j_dirfd = -1;
	j->j_uid = uid;
	j->j_gid = gid;
	if ((j->j_dir = strdup(dir)) == NULL)
		return (-1);
	if ((errno = pthread_mutex_init(&j->j_sync_mtx, NULL)) != 0) {
		free(j->j_dir);
		j->j_dir = NULL;
		return (-1);
	}
	if ((errno = pthread_cond_init(&j->j_sync_cv, NULL)) != 0) {
		pthread_mutex_destroy(&j->j_sync_mtx);
		free(j->j_dir);
		j->j_dir = NULL;
		return (-1);
	}
	return (0);
}

/*
 * Close the journal and free the handle's memory.  Callers close a handle
 * once its threads have stopped; j_dir tells a closed handle (its mutex
 * already destroyed) from an open one.
 */
void
journal_close(struct journal *j)
{
	if (j->j_fd != -1)
		close(j->j_fd);
	if (j->j_dirfd != -1)
		close(j->j_dirfd);
	j->j_fd = j->j_dirfd = -1;
	if (j->j_dir != NULL) {
		pthread_cond_destroy(&j->j_sync_cv);
		pthread_mutex_destroy(&j->j_sync_mtx);
	}
	free(j->j_dir);
	j->j_dir = NULL;
}

/* Open keys.journal for appending if it is not open yet; 0 or -1. */
static int
journal_open(struct journal *j, char *err, size_t errlen)
{
	int	 fd;

	if (j->j_fd != -1)
		return (0);
	if ((fd = file_open(j, JOURNAL_FILE, O_WRONLY | O_APPEND, 1, err,
	    errlen)) == -1)
		return (-1);
	j->j_fd = fd;
	return (0);
}

/* Identity of keys.snapshot now (0, 0 if absent or unreadable). */
static void
snapshot_id(struct journal *j, dev_t *dev, ino_t *ino)
{
	struct stat	 st;
	char		 err[256];
	int		 dfd;

	*dev = 0;
	*ino = 0;
	if ((dfd = jdir(j, err, sizeof(err))) == -1 ||
	    fstatat(dfd, SNAPSHOT_FILE, &st, AT_SYMLINK_NOFOLLOW) == -1)
		return;
	*dev = st.st_dev;
	*ino = st.st_ino;
}

/*
 * May this handle append?  Not after a failed fdatasync() (journal_sync),
 * unless keys.snapshot was replaced since: the compaction that replaced
 * it wrote memory, the lines of the failed sync included, and emptied the
 * journal, so disk holds everything again.  Under the key store lock (a
 * compaction cannot run meanwhile).  0, or -1 with EIO and err.
 */
static int
journal_writable(struct journal *j, char *err, size_t errlen)
{
	dev_t	 dev;
	ino_t	 ino;
	int	 failed;

	pthread_mutex_lock(&j->j_sync_mtx);
	failed = j->j_sync_errno;
	pthread_mutex_unlock(&j->j_sync_mtx);
	if (failed == 0)
		return (0);
	snapshot_id(j, &dev, &ino);
	if (ino != 0 && (dev != j->j_fail_dev || ino != j->j_fail_ino)) {
		pthread_mutex_lock(&j->j_sync_mtx);
		j->j_sync_errno = 0;
		j->j_durable = j->j_appended;
		pthread_mutex_unlock(&j->j_sync_mtx);
		log_info("%s: compacted since the failed sync; writes resume",
		    JOURNAL_FILE);
		return (0);
	}
	snprintf(err, errlen, "%s: an earlier sync failed (%s); no change is "
	    "taken until the journal is compacted or the worker replaced",
	    JOURNAL_FILE, strerror(failed));
	errno = EIO;
	return (-1);
}

/*
 * Cut the journal back to start (where our lines began), after a failed
 * write or sync; say so in err if even that fails.  errno is kept.
 */
static void
journal_cut(struct journal *j, off_t start, char *err, size_t errlen)
{
	size_t	 l;
	int	 saved = errno;

	if (start >= 0 && ftruncate(j->j_fd, start) == -1) {
		l = strlen(err);
		snprintf(err + l, errlen - l, " (and the lines could not be "
		    "cut off: %s)", strerror(errno));
	}
	errno = saved;
}

/*
 * Write buf[0..len), nlines whole lines ending with sequence last, at the
 * end of the journal (the writer lock held: see journal_append), and count
 * them for journal_sync; *start is where they begin (-1 for a journal that
 * is not a regular file, which is never cut).  A failed write is cut
 * back.  0, or -1 with errno and err.
 */
static int
journal_append_buf(struct journal *j, const char *buf, size_t len,
    uint64_t last, size_t nlines, off_t *start, char *err, size_t errlen)
{
	struct stat	 st;

	if (fstat(j->j_fd, &st) == -1) {
		file_error(err, errlen, JOURNAL_FILE, errno);
		return (-1);
	}
	*start = S_ISREG(st.st_mode) ? st.st_size : -1;
	if (write_all(j->j_fd, buf, len) == -1) {
		snprintf(err, errlen, "%s: %s", JOURNAL_FILE, strerror(errno));
		journal_cut(j, *start, err, errlen);
		return (-1);
	}
	pthread_mutex_lock(&j->j_sync_mtx);
	if (last > j->j_appended)
		j->j_appended = last;
	j->j_lines += nlines;
	pthread_mutex_unlock(&j->j_sync_mtx);
	return (0);
}

/*
 * Append line (a reference we own, sequence seq) to the journal, without
 * waiting for the disk (journal_sync does).
 *
 * The writers are serialised by the key store lock, so nobody else moves
 * the end of the file between our fstat() and our write: the size taken
 * first is exactly where this line starts.  If the write is short or
 * fails, cutting the file back to that size removes every byte of this
 * line, so a failed append leaves the file as it was and the next append
 * does not glue a fragment in front of a good line.  Lines before ours
 * that are not yet durable stay: their writers' syncs cover them.
 */
static int
journal_append(struct journal *j, uint64_t seq, json_t *line, char *err,
    size_t errlen)
{
	char		*buf = NULL;
	size_t		 len;
	off_t		 start;
	int		 saved;

	if (journal_writable(j, err, errlen) == -1 ||
	    journal_open(j, err, errlen) == -1)
		goto fail;
	len = json_dumpb(line, NULL, 0, JSON_COMPACT);
	if (len == 0 || (buf = malloc(len + 1)) == NULL) {
		file_error(err, errlen, JOURNAL_FILE, ENOMEM);
		goto fail;
	}
	if (json_dumpb(line, buf, len, JSON_COMPACT) != len) {
		file_error(err, errlen, JOURNAL_FILE, ENOMEM);
		goto fail;
	}
	buf[len] = '\n';
	if (journal_append_buf(j, buf, len + 1, seq, 1, &start, err,
	    errlen) == -1)
		goto fail;
	free(buf);
	json_decref(line);
	return (0);
fail:
	saved = errno;
	free(buf);
	json_decref(line);
	errno = saved;
	return (-1);
}

/*
 * Wait until this process's line seq is durable; 0, or -1 with errno and
 * err.
 *
 * Group commit (leader/follower): j_appended is the seq of the last line
 * this process wrote, j_durable the highest seq known durable.  A caller
 * finding no sync in progress becomes the leader: it takes target =
 * j_appended, calls fdatasync() without the mutex, and on success sets
 * j_durable = target.  That is correct because every line with seq <=
 * target was completely written (write() returned) before the leader read
 * j_appended, and fdatasync() makes durable every byte written to the
 * file before it was called, whichever process or thread wrote it.  A
 * caller finding a sync in progress waits for it, then either finds its
 * seq covered or becomes the next leader: while one fdatasync() runs,
 * the lines appended meanwhile accumulate and the next one takes them
 * all.  Seqs, unlike offsets, survive a compaction (see journal.h), and
 * lines of other processes are not counted: their writers sync them.
 *
 * A failed fdatasync() fails every waiter not yet covered, and sticks
 * (j_sync_errno): journal_writable refuses new lines until a compaction.
 */
int
journal_sync(struct journal *j, uint64_t seq, char *err, size_t errlen)
{
	uint64_t	 target;
	int		 rc, saved;

	pthread_mutex_lock(&j->j_sync_mtx);
	if (seq > j->j_appended) {
		/* Not a line of ours: no sync of ours can cover it. */
		pthread_mutex_unlock(&j->j_sync_mtx);
		snprintf(err, errlen, "%s: seq %llu was not written here",
		    JOURNAL_FILE, (unsigned long long)seq);
		errno = EINVAL;
		return (-1);
	}
	for (;;) {
		if (seq <= j->j_durable) {
			pthread_mutex_unlock(&j->j_sync_mtx);
			return (0);
		}
		if (j->j_sync_errno != 0) {
			saved = j->j_sync_errno;
			pthread_mutex_unlock(&j->j_sync_mtx);
			file_error(err, errlen, JOURNAL_FILE, saved);
			errno = saved;
			return (-1);
		}
		if (!j->j_syncing)
			break;
		pthread_cond_wait(&j->j_sync_cv, &j->j_sync_mtx);
	}
	j->j_syncing = 1;
	target = j->j_appended;
	pthread_mutex_unlock(&j->j_sync_mtx);

	while ((rc = fdatasync(j->j_fd)) == -1 && errno == EINTR)
		;
	saved = rc == -1 ? errno : 0;

	pthread_mutex_lock(&j->j_sync_mtx);
	j->j_syncing = 0;
	j->j_syncs++;
	if (saved == 0) {
		if (target > j->j_durable)
			j->j_durable = target;
	} else {
		j->j_sync_errno = saved;
		snapshot_id(j, &j->j_fail_dev, &j->j_fail_ino);
	}
	pthread_cond_broadcast(&j->j_sync_cv);
	pthread_mutex_unlock(&j->j_sync_mtx);
	if (saved != 0) {
		log_warnx("%s: fdatasync: %s; lines after seq %llu may be "
		    "lost: no change is taken until a compaction", JOURNAL_FILE,
		    strerror(saved), (unsigned long long)j->j_durable);
		file_error(err, errlen, JOURNAL_FILE, saved);
		errno = saved;
		return (-1);
	}
	/* target >= seq: our line was written before we got here. */
	return (0);
}

/* Lines written and fdatasync() calls made through this handle. */
void
journal_sync_stats(struct journal *j, uint64_t *lines, uint64_t *syncs)
{
	pthread_mutex_lock(&j->j_sync_mtx);
	*lines = j->j_lines;
	*syncs = j->j_syncs;
	pthread_mutex_unlock(&j->j_sync_mtx);
}

/* Is seq one the loader accepts (1 to INT64_MAX)?  If not, say so in err. */
static int
seq_valid(uint64_t seq, char *err, size_t errlen)
{
	if (seq >= 1 && seq <= INT64_MAX)
		return (1);
	snprintf(err, errlen, "%s: seq %llu is out of range", JOURNAL_FILE,
	    (unsigned long long)seq);
	errno = EINVAL;
	return (0);
}

/* Append {"seq":N,"op":"put","key":{KEY}} (not yet durable); 0 or -1. */
int
journal_write_put(struct journal *j, uint64_t seq, const struct ks_key *k,
    char *err, size_t errlen)
{
	json_t	*key, *line;

	if (!seq_valid(seq, err, errlen) ||
	    (key = key_encode(k, JOURNAL_FILE, err, errlen)) == NULL)
		return (-1);
	line = json_pack("{s:I,s:s,s:o}", "seq", (json_int_t)seq, "op", "put",
	    "key", key);
	if (line == NULL) {
		file_error(err, errlen, JOURNAL_FILE, ENOMEM);
		return (-1);
	}
	return (journal_append(j, seq, line, err, errlen));
}

/* Append {"seq":N,"op":"del","id":ID} (not yet durable); 0 or -1. */
int
journal_write_del(struct journal *j, uint64_t seq, const char *id, char *err,
    size_t errlen)
{
	json_t	*line;

	if (!seq_valid(seq, err, errlen))
		return (-1);
	if (!valid_id(id)) {
		snprintf(err, errlen, "%s: not a key id", JOURNAL_FILE);
		errno = EINVAL;
		return (-1);
	}
	line = json_pack("{s:I,s:s,s:s}", "seq", (json_int_t)seq, "op", "del",
	    "id", id);
	if (line == NULL) {
		file_error(err, errlen, JOURNAL_FILE, ENOMEM);
		return (-1);
	}
	return (journal_append(j, seq, line, err, errlen));
}

/* Append a put line and wait until it is durable; 0 or -1. */
int
journal_put(struct journal *j, uint64_t seq, const struct ks_key *k,
    char *err, size_t errlen)
{
	if (journal_write_put(j, seq, k, err, errlen) == -1)
		return (-1);
	return (journal_sync(j, seq, err, errlen));
}

/* Append a del line and wait until it is durable; 0 or -1. */
int
journal_del(struct journal *j, uint64_t seq, const char *id, char *err,
    size_t errlen)
{
	if (journal_write_del(j, seq, id, err, errlen) == -1)
		return (-1);
	return (journal_sync(j, seq, err, errlen));
}

/* Read lines of fd (state_dir/name, opened; ours to close): 1 or -1. */
static int
reader_fdopen(struct jreader *r, int fd, const char *name, char *err,
    size_t errlen)
{
	int	 saved;

	memset(r, 0, sizeof(*r));
	r->r_name = name;
	r->r_err = err;
	r->r_errlen = errlen;
	if ((r->r_fp = fdopen(fd, "r")) == NULL) {
		saved = errno;
		close(fd);
		file_error(err, errlen, name, saved);
		return (-1);
	}
	return (1);
}

/* Open state_dir/name for reading: 1, 0 if it does not exist, or -1. */
static int
reader_open(struct jreader *r, struct journal *j, const char *name,
    char *err, size_t errlen)
{
	int	 fd;

	memset(r, 0, sizeof(*r));
	if ((fd = file_open(j, name, O_RDONLY, 0, err, errlen)) == -1)
		return (errno == ENOENT ? 0 : -1);
	return (reader_fdopen(r, fd, name, err, errlen));
}

/* Close the file and free the line buffer. */
static void
reader_close(struct jreader *r)
{
	if (r->r_fp != NULL)
		fclose(r->r_fp);
	free(r->r_line);
	r->r_fp = NULL;
	r->r_line = NULL;
}

/* Read the next line: 1, 0 at the end of the file, or -1 (read error). */
static int
reader_next(struct jreader *r)
{
	ssize_t	 n;

	errno = 0;
	if ((n = getline(&r->r_line, &r->r_cap, r->r_fp)) == -1) {
		if (ferror(r->r_fp)) {
			rd_error(r, "read error: %s", strerror(errno != 0 ?
			    errno : EIO));
			return (-1);
		}
		return (0);
	}
	r->r_lineno++;
	r->r_off = r->r_next;
	r->r_next += n;
	r->r_torn = r->r_line[n - 1] != '\n';
	r->r_len = (size_t)n - !r->r_torn;
	return (1);
}

/* The current line as a JSON object, or NULL with the reason. */
static json_t *
reader_json(struct jreader *r)
{
	json_error_t	 jerr;
	json_t		*o;

	o = json_loadb(r->r_line, r->r_len, JSON_REJECT_DUPLICATES, &jerr);
	if (o == NULL) {
		rd_error(r, "bad JSON: %s (column %d)", jerr.text, jerr.column);
		return (NULL);
	}
	if (!json_is_object(o)) {
		rd_error(r, "not a JSON object");
		json_decref(o);
		return (NULL);
	}
	return (o);
}

/* Store k with seq: 0, or -1 with the reason in why. */
static int
store_key(struct keystore *ks, const struct ks_key *k, uint64_t seq,
    char *why, size_t whylen)
{
	switch (keystore_put(ks, k, seq)) {
	case KS_OK:
		return (0);
	case KS_FULL:
		snprintf(why, whylen, "key %s does not fit: max_keys (%u) is "
		    "too small for the stored keys", k->k_id, ks->ks_max_keys);
		return (-1);
	case KS_EXISTS:
		snprintf(why, whylen, "key %s has the digest of another key",
		    k->k_id);
		return (-1);
	default:
		snprintf(why, whylen, "key %s cannot be stored", k->k_id);
		return (-1);
	}
}

/* Store k (read from the current line) with seq; 0 or -1 with the reason. */
static int
store_put(struct jreader *r, struct keystore *ks, const struct ks_key *k,
    uint64_t seq)
{
	char	 why[256];

	if (store_key(ks, k, seq, why, sizeof(why)) == 0)
		return (0);
	rd_error(r, "%s", why);
	return (-1);
}

/*
 * Store a snapshot's record k with the snapshot's seq: a snapshot holds
 * each key once, so a put that replaces instead of adding is refused.
 * 0, or -1 with the reason in why.
 */
static int
snap_store(struct keystore *ks, const struct ks_key *k, uint64_t seq,
    char *why, size_t whylen)
{
	uint32_t	 before = keystore_count(ks);

	if (store_key(ks, k, seq, why, whylen) == -1)
		return (-1);
	if (keystore_count(ks) == before) {
		snprintf(why, whylen, "key %s appears twice", k->k_id);
		return (-1);
	}
	return (0);
}

/*
 * The seq of a journal line, checked against the line before.  From the
 * first seq that does not go up, the journal was appended to by two
 * writers (see journal_replay): that line and every later one is
 * renumbered, the line before's seq + 1, and said so.  0 or -1.
 */
static int
replay_seq(struct jreader *r, json_t *o, struct jreplay *p, uint64_t *seq)
{
	int64_t	 v;

	if (field_int(r, o, "seq", 0, 1, &v) == -1)
		return (-1);
	*seq = (uint64_t)v;
	if (!p->p_broken && p->p_prev != 0 && *seq <= p->p_prev) {
		log_warnx("%s:%zu: seq %llu goes backwards (the line before "
		    "has %llu): two processes appended to the journal; "
		    "keeping every line from here in file order, renumbered",
		    r->r_name, r->r_lineno, (unsigned long long)*seq,
		    (unsigned long long)p->p_prev);
		p->p_broken = 1;
	}
	if (p->p_broken) {
		if (p->p_prev >= INT64_MAX) {
			rd_error(r, "seq out of range while renumbering");
			return (-1);
		}
		log_warnx("%s:%zu: seq %llu renumbered %llu", r->r_name,
		    r->r_lineno, (unsigned long long)*seq,
		    (unsigned long long)p->p_prev + 1);
		*seq = p->p_prev + 1;
		p->p_renumbered++;
	}
	p->p_prev = *seq;
	return (0);
}

/*
 * Apply a put line.  In a journal being repaired, a key whose digest
 * another key already has (two writers, one secret: not expected, as
 * secrets are random) is dropped and said so; any other refusal stops
 * the load, as it does in a sound journal.  0 or -1.
 */
static int
replay_put(struct jreader *r, struct keystore *ks, struct jreplay *p,
    const struct ks_key *k, uint64_t seq)
{
	if (!p->p_broken)
		return (store_put(r, ks, k, seq));
	switch (keystore_put(ks, k, seq)) {
	case KS_OK:
		return (0);
	case KS_EXISTS:
		log_warnx("%s:%zu: dropped: put of key %s (its digest belongs "
		    "to another key)", r->r_name, r->r_lineno, k->k_id);
		p->p_dropped++;
		ks->ks_hdr->kh_applied = seq;	/* the seqs stay in step */
		return (0);
	default:
		return (store_put(r, ks, k, seq));
	}
}

/* Check one journal line and apply it unless its seq is done; 0 or -1. */
static int
replay_line(struct jreader *r, struct keystore *ks, struct jreplay *p)
{
	struct ks_key	 k;
	char		 op[8];
	uint64_t	 seq;
	json_t		*o, *v;
	int		 rc = -1;

	if ((o = reader_json(r)) == NULL)
		return (-1);
	if (field_str(r, o, "op", op, sizeof(op) - 1) == -1)
		goto fail;
	if (strcmp(op, "put") == 0) {
		if (fields_known(r, o, put_fields) == -1 ||
		    replay_seq(r, o, p, &seq) == -1 ||
		    (v = field_get(r, o, "key", JSON_OBJECT, 0)) == NULL ||
		    key_from_json(r, v, &k) == -1)
			goto fail;
		if (seq > p->p_skip && replay_put(r, ks, p, &k, seq) == -1)
			goto fail;
		if (seq > p->p_skip && journal_hook != NULL &&
		    (v = json_object_get(o, "idem")) != NULL)
			journal_hook(journal_hook_arg, v, &k);
	} else if (strcmp(op, "del") == 0) {
		if (fields_known(r, o, del_fields) == -1 ||
		    replay_seq(r, o, p, &seq) == -1 ||
		    field_str(r, o, "id", k.k_id, KS_ID_LEN) == -1)
			goto fail;
		if (!valid_id(k.k_id)) {
			rd_error(r, "field \"id\" is not a key id");
			goto fail;
		}
		/* An unknown id is fine: the line may be a replay. */
		if (seq > p->p_skip)
			(void)keystore_del(ks, k.k_id, seq);
	} else {
		rd_error(r, "field \"op\" is not \"put\" or \"del\"");
		goto fail;
	}
	if (seq > p->p_skip)
		p->p_last = seq;
	rc = 0;
fail:
	json_decref(o);
	return (rc);
}

/* Cut state_dir/name to off bytes and fsync it; 0 or -1 with err. */
static int
file_cut(struct journal *j, const char *name, off_t off, char *err,
    size_t errlen)
{
	int	 fd, saved;

	if ((fd = file_open(j, name, O_WRONLY, 0, err, errlen)) == -1)
		return (-1);
	if (ftruncate(fd, off) == -1 || fsync(fd) == -1) {
		saved = errno;
		close(fd);
		file_error(err, errlen, name, saved);
		return (-1);
	}
	close(fd);
	return (0);
}

/*
 * Copy the whole of fd (the journal as found) to a new file
 * keys.journal.damaged-TIME in state_dir, fsync'ed; 0 or -1 with err.
 */
static int
journal_keep_copy(struct journal *j, int fd, char *err, size_t errlen)
{
	char		 name[64], stamp[32], buf[8192];
	struct tm	 tm;
	time_t		 now = time(NULL);
	ssize_t		 n;
	off_t		 off = 0;
	int		 out = -1, i, saved;

	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", gmtime_r(&now, &tm));
	for (i = 0; i < 100 && out == -1; i++) {
		snprintf(name, sizeof(name), "%s.damaged-%s%s%.0d", JOURNAL_FILE,
		    stamp, i > 0 ? "." : "", i);
		out = openat(j->j_dirfd, name, O_WRONLY | O_CREAT | O_EXCL |
		    O_NOFOLLOW | O_CLOEXEC, 0600);
		if (out == -1 && errno != EEXIST)
			break;
	}
	if (out == -1) {
		file_error(err, errlen, name, errno);
		return (-1);
	}
	while ((n = pread(fd, buf, sizeof(buf), off)) > 0) {
		if (write_all(out, buf, (size_t)n) == -1)
			break;
		off += n;
	}
	if (n != 0 || fsync(out) == -1) {
		saved = errno != 0 ? errno : EIO;
		close(out);
		(void)unlinkat(j->j_dirfd, name, 0);
		file_error(err, errlen, name, saved);
		return (-1);
	}
	close(out);
	log_warnx("%s: the journal as it was is kept in %s", JOURNAL_FILE,
	    name);
	return (0);
}

/*
 * Replay keys.journal into ks, applying the lines with seq > skip.
 *
 * Every line is checked, applied or not.  Writers append under the store
 * lock with kh_applied + 1, and only the processes of one master append
 * (the master holds keys.lock, journal_lock), so the seqs increase
 * strictly through a sound journal.  Lines at or below skip are already
 * in the store (in the snapshot, or applied before a writer died); a
 * "put" carries the whole record, so even applying one twice would change
 * nothing.  Only a last line without its newline is an interrupted append
 * (the writer never reported it stored): it is dropped and cut away, and
 * only once the rest of the file has loaded, so that a failed load changes
 * nothing on disk.  kh_applied ends at the last seq applied (or skip).
 *
 * A seq that does not go up means two writers appended: a version without
 * the lock, or a worker left behind by a master killed with SIGKILL,
 * appending beside a new master's workers (issue 10, item 15).  Each
 * acknowledged its writes, and O_APPEND puts lines in the order they were
 * written, so the journal is repaired rather than refused: every line
 * from the first backward seq on is applied in file order with the seq
 * before it + 1 (replay_seq; renumbering depends only on the file, so a
 * replay of the tail after a worker dies skips the same lines), a put
 * whose digest another key holds is dropped (replay_put), and each line
 * renumbered or dropped is logged with its FILE:LINE.  At start-up
 * (keep != 0) the file as found is first copied to
 * keys.journal.damaged-TIME; the compaction that follows writes the
 * repaired store to the snapshot.
 */
static int
journal_replay(struct journal *j, struct keystore *ks, uint64_t skip,
    int keep, char *err, size_t errlen)
{
	struct jreader	 r;
	struct jreplay	 p;
	int		 rc;

	memset(&p, 0, sizeof(p));
	p.p_skip = p.p_last = skip;
	if ((rc = reader_open(&r, j, JOURNAL_FILE, err, errlen)) <= 0)
		return (rc);
	while ((rc = reader_next(&r)) == 1 && !r.r_torn)
		if ((rc = replay_line(&r, ks, &p)) == -1)
			break;
	if (rc != -1 && p.p_broken) {
		log_warnx("%s: %zu line(s) renumbered, %zu dropped",
		    JOURNAL_FILE, p.p_renumbered, p.p_dropped);
		if (keep && journal_keep_copy(j, fileno(r.r_fp), err,
		    errlen) == -1)
			rc = -1;
	}
	if (rc == 1) {
		log_warnx("%s:%zu: dropping a torn last line (an interrupted "
		    "write)", JOURNAL_FILE, r.r_lineno);
		rc = file_cut(j, JOURNAL_FILE, r.r_off, err, errlen);
	}
	reader_close(&r);
	if (rc == -1)
		return (-1);
	ks->ks_hdr->kh_applied = p.p_last;
	return (0);
}

/* The next snapshot line, which must exist and be complete, or NULL. */
static json_t *
snap_line(struct jreader *r, const char *what)
{
	int	 rc;

	if ((rc = reader_next(r)) == -1)
		return (NULL);
	if (rc == 0) {
		r->r_lineno++;
		rd_error(r, "missing %s (the file is cut short)", what);
		return (NULL);
	}
	if (r->r_torn) {
		rd_error(r, "no newline at the end (the file is cut short)");
		return (NULL);
	}
	return (reader_json(r));
}

/* Check the snapshot header line: seq and key count; 0 or -1. */
static int
snap_header(struct jreader *r, const struct keystore *ks, uint64_t *seq,
    uint64_t *count)
{
	json_t	*o;
	int64_t	 version, s, n;
	int	 rc = -1;

	if ((o = snap_line(r, "the header line")) == NULL)
		return (-1);
	if (fields_known(r, o, head_fields) == -1 ||
	    field_int(r, o, "keygate_snapshot", 0, 1, &version) == -1 ||
	    field_int(r, o, "seq", 0, 0, &s) == -1 ||
	    field_int(r, o, "keys", 0, 0, &n) == -1)
		goto fail;
	if (version != SNAPSHOT_VERSION) {
		rd_error(r, "snapshot version %lld is not supported",
		    (long long)version);
		goto fail;
	}
	if ((uint64_t)n > ks->ks_max_keys) {
		rd_error(r, "the snapshot holds %lld keys: max_keys (%u) is "
		    "too small for the stored keys", (long long)n,
		    ks->ks_max_keys);
		goto fail;
	}
	*seq = (uint64_t)s;
	*count = (uint64_t)n;
	rc = 0;
fail:
	json_decref(o);
	return (rc);
}

/* Read and store key line i of count; 0 or -1. */
static int
snap_key(struct jreader *r, struct keystore *ks, uint64_t i, uint64_t count,
    uint64_t seq)
{
	struct ks_key	 k;
	json_t		*o;
	char		 why[256];
	int		 rc = -1;

	if ((o = snap_line(r, "key lines and the end line")) == NULL)
		return (-1);
	if (json_object_get(o, "end") != NULL) {
		rd_error(r, "end line after %llu keys, the header says %llu",
		    (unsigned long long)i, (unsigned long long)count);
		goto fail;
	}
	if (key_from_json(r, o, &k) == -1)
		goto fail;
	if (snap_store(ks, &k, seq, why, sizeof(why)) == -1) {
		rd_error(r, "%s", why);
		goto fail;
	}
	rc = 0;
fail:
	json_decref(o);
	return (rc);
}

/* Check the end line {"end":COUNT} and that nothing follows; 0 or -1. */
static int
snap_end(struct jreader *r, uint64_t count)
{
	json_t	*o;
	int64_t	 n;
	int	 rc = -1;

	if ((o = snap_line(r, "the end line")) == NULL)
		return (-1);
	if (json_object_get(o, "end") == NULL) {
		rd_error(r, "a key line where the end line should be (the "
		    "header says %llu keys)", (unsigned long long)count);
		goto fail;
	}
	if (fields_known(r, o, end_fields) == -1 ||
	    field_int(r, o, "end", 0, 0, &n) == -1)
		goto fail;
	if ((uint64_t)n != count) {
		rd_error(r, "the end line says %lld keys, the header %llu",
		    (long long)n, (unsigned long long)count);
		goto fail;
	}
	if ((rc = reader_next(r)) == 1) {
		rd_error(r, "data after the end line");
		rc = -1;
	}
fail:
	json_decref(o);
	return (rc);
}

/* Load a JSON-lines snapshot from fd (ours to close); its seq into seq. */
static int
snapshot_load_json(int fd, struct keystore *ks, uint64_t *seq, char *err,
    size_t errlen)
{
	struct jreader	 r;
	uint64_t	 count, i;
	int		 rc;

	if (reader_fdopen(&r, fd, SNAPSHOT_FILE, err, errlen) == -1)
		return (-1);
	rc = -1;
	if (snap_header(&r, ks, seq, &count) == -1)
		goto fail;
	for (i = 0; i < count; i++)
		if (snap_key(&r, ks, i, count, *seq) == -1)
			goto fail;
	rc = snap_end(&r, count);
fail:
	reader_close(&r);
	return (rc);
}

/* A binary snapshot's record: checked as every record is, then stored. */
static int
snap_bin_key(void *arg, const struct snapshot_head *h, const struct ks_key *k,
    char *why, size_t whylen)
{
	struct keystore	*ks = arg;

	if (key_check(k, why, whylen) == -1)
		return (-1);
	return (snap_store(ks, k, h->sh_seq, why, whylen));
}

/*
 * The whole of fd, at most max bytes, in one buffer of ours (its length
 * in *len), read with pread(2) in as few calls as the kernel allows; NULL
 * with err naming name.
 */
static uint8_t *
file_slurp(int fd, const char *name, uint64_t max, size_t *len, char *err,
    size_t errlen)
{
	struct stat	 st;
	uint8_t		*buf;
	size_t		 size, got = 0;
	ssize_t		 n;

	if (fstat(fd, &st) == -1) {
		file_error(err, errlen, name, errno);
		return (NULL);
	}
	if (max > SIZE_MAX)
		max = SIZE_MAX;
	size = (uint64_t)st.st_size < max ? (size_t)st.st_size : (size_t)max;
	if ((buf = malloc(size > 0 ? size : 1)) == NULL) {
		file_error(err, errlen, name, ENOMEM);
		return (NULL);
	}
	while (got < size) {
		if ((n = pread(fd, buf + got, size - got, (off_t)got)) == -1) {
			if (errno == EINTR)
				continue;
			file_error(err, errlen, name, errno);
			free(buf);
			return (NULL);
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	*len = got;
	return (buf);
}

/*
 * Load a binary snapshot from fd (ours to close); its seq into seq.  No
 * snapshot for max_keys keys is longer than the bound below, so nothing
 * past it is read: a larger file is refused by its header's key count,
 * or as damage where it stops making sense.
 */
static int
snapshot_load_bin(int fd, struct keystore *ks, uint64_t *seq, char *err,
    size_t errlen)
{
	struct snapshot_head	 head;
	uint8_t		*buf;
	char		 why[512];
	size_t		 len, off = 0;
	uint64_t	 max;
	int		 rc;

	max = SNAPSHOT_HEAD_LEN + SNAPSHOT_TRAILER_LEN + 1 +
	    (uint64_t)ks->ks_max_keys * (SNAPSHOT_BLOCK_HEAD_LEN +
	    SNAPSHOT_REC_MAX);
	buf = file_slurp(fd, SNAPSHOT_FILE, max, &len, err, errlen);
	close(fd);
	if (buf == NULL)
		return (-1);
	rc = snapshot_read(buf, len, ks->ks_max_keys, &head, snap_bin_key, ks,
	    &off, why, sizeof(why));
	if (rc == -1)
		snprintf(err, errlen, "%s: offset %zu: %s", SNAPSHOT_FILE, off,
		    why);
	else
		*seq = head.sh_seq;
	free(buf);
	return (rc);
}

/*
 * Load keys.snapshot (if any) into ks; its seq into seq (0 if none).  The
 * first byte tells the format: "{" starts the JSON lines keygate wrote
 * before the binary format (journal_compact_due() then asks for a
 * compaction, which rewrites it), anything else is read as binary, so
 * that an empty or cut-short file is reported with its offset.
 */
static int
snapshot_load(struct journal *j, struct keystore *ks, uint64_t *seq,
    char *err, size_t errlen)
{
	uint8_t	 c;
	ssize_t	 n;
	int64_t	 t0 = util_mono_ms();
	int	 fd, rc;

	*seq = 0;
	j->j_snap_json = 0;
	if ((fd = file_open(j, SNAPSHOT_FILE, O_RDONLY, 0, err, errlen)) == -1)
		return (errno == ENOENT ? 0 : -1);
	while ((n = pread(fd, &c, 1, 0)) == -1 && errno == EINTR)
		;
	if (n == -1) {
		file_error(err, errlen, SNAPSHOT_FILE, errno);
		close(fd);
		return (-1);
	}
	if (snapshot_is_json(&c, (size_t)n)) {
		j->j_snap_json = 1;
		rc = snapshot_load_json(fd, ks, seq, err, errlen);
	} else
		rc = snapshot_load_bin(fd, ks, seq, err, errlen);
	if (rc == 0)
		log_info("%s: %u keys loaded in %lld ms (%s format)",
		    SNAPSHOT_FILE, keystore_count(ks),
		    (long long)(util_mono_ms() - t0), j->j_snap_json ?
		    "JSON-lines" : "binary");
	return (rc);
}

/* Start-up: snapshot, then the journal past the snapshot's seq. */
int
journal_load(struct journal *j, struct keystore *ks, char *err,
    size_t errlen)
{
	uint64_t	 seq;

	if (snapshot_load(j, ks, &seq, err, errlen) == -1)
		return (-1);
	ks->ks_hdr->kh_applied = seq;
	return (journal_replay(j, ks, seq, 1, err, errlen));
}

/* After a writer died: cut a torn tail, apply the lines past kh_applied. */
int
journal_replay_tail(struct journal *j, struct keystore *ks, char *err,
    size_t errlen)
{
	return (journal_replay(j, ks, ks->ks_hdr->kh_applied, 0, err,
	    errlen));
}

/*
 * Create state_dir/name afresh (0600) for writing, given to the configured
 * user if give (the workers' files), else left to this process.
 */
static FILE *
tmp_create(struct journal *j, const char *name, int give, char *err,
    size_t errlen)
{
	FILE	*fp;
	int	 dfd, fd, saved;

	/* Removing a link (symbolic or not) never touches its target. */
	if ((dfd = jdir(j, err, errlen)) == -1)
		return (NULL);
	if ((unlinkat(dfd, name, 0) == -1 && errno != ENOENT) ||
	    (fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600)) == -1) {
		file_error(err, errlen, name, errno);
		return (NULL);
	}
	if ((give && file_give(j, fd) == -1) ||
	    (fp = fdopen(fd, "w")) == NULL) {
		saved = errno;
		close(fd);
		file_error(err, errlen, name, saved);
		return (NULL);
	}
	return (fp);
}

/* Flush fp, fsync it if sync, close it; 0, or -1 with err naming name. */
static int
tmp_finish(FILE *fp, const char *name, int sync, char *err, size_t errlen)
{
	int	 saved;

	if (fflush(fp) == EOF || ferror(fp) ||
	    (sync && fsync(fileno(fp)) == -1)) {
		saved = errno != 0 ? errno : EIO;
		fclose(fp);
		file_error(err, errlen, name, saved);
		return (-1);
	}
	if (fclose(fp) == EOF) {
		file_error(err, errlen, name, errno);
		return (-1);
	}
	return (0);
}

/* The snapshot writer's output: to the temporary file's stream. */
static int
snap_out(void *arg, const void *buf, size_t len)
{
	return (fwrite(buf, 1, len, arg) == len ? 0 : -1);
}

/*
 * A record the writer refuses, as "keys.snapshot: key ID: reason" (the
 * id only when it is one) into err; EINVAL.
 */
static void
snap_refused(const struct ks_key *k, const char *why, char *err,
    size_t errlen)
{
	if (valid_id(k->k_id))
		snprintf(err, errlen, "%s: key %.*s: %s", SNAPSHOT_FILE,
		    KS_ID_LEN, k->k_id, why);
	else
		snprintf(err, errlen, "%s: %s", SNAPSHOT_FILE, why);
	errno = EINVAL;
}

/*
 * Write every live key of ks into SNAPSHOT_TMP in the binary format
 * (snapshot.h) and fsync it; 0 or -1.  Each record passes key_check()
 * first, the check the reader applies, so no snapshot is written that
 * would not load.
 */
static int
snapshot_write(struct journal *j, const struct keystore *ks, char *err,
    size_t errlen)
{
	struct snapshot_writer	 w;
	struct ks_key		 k;
	FILE			*fp;
	char			 why[256];
	uint32_t		 cursor = 0, slot, count, n = 0;

	count = keystore_count(ks);
	if ((fp = tmp_create(j, SNAPSHOT_TMP, 1, err, errlen)) == NULL)
		return (-1);
	errno = 0;
	if (snapshot_writer_init(&w, ks->ks_hdr->kh_applied, count, snap_out,
	    fp) == -1)
		goto ioerr;
	while (keystore_next(ks, &cursor, &k, &slot) == KS_OK) {
		if (key_check(&k, why, sizeof(why)) == -1) {
			snap_refused(&k, why, err, errlen);
			goto fail;
		}
		if (snapshot_writer_key(&w, &k) == -1)
			goto ioerr;
		n++;
	}
	if (n != count) {
		snprintf(err, errlen, "%s: the store changed while it was "
		    "written (%u keys, then %u)", SNAPSHOT_TMP, count, n);
		goto fail;
	}
	if (snapshot_writer_end(&w) == -1)
		goto ioerr;
	return (tmp_finish(fp, SNAPSHOT_TMP, 1, err, errlen));
ioerr:
	file_error(err, errlen, SNAPSHOT_TMP, errno != 0 ? errno : EIO);
fail:
	snapshot_writer_free(&w);
	fclose(fp);
	return (-1);
}

/*
 * Snapshot the store, then empty the journal.
 *
 * The steps are ordered so that a crash after any of them leaves a
 * snapshot and a journal that together still describe the store: the
 * temporary file is complete and fsync'ed before rename() puts it in place
 * atomically (a crash before leaves the old snapshot; a stale temporary
 * file is never read and is replaced next time); the directory is fsync'ed
 * so the rename is durable before the journal loses anything; and a crash
 * before the journal is truncated leaves lines with seq <= the new
 * snapshot's seq, which the load skips.  The caller holds the store lock,
 * so no line is appended meanwhile and every line in the journal is at or
 * below kh_applied.
 */
int
journal_compact(struct journal *j, struct keystore *ks, char *err,
    size_t errlen)
{
	int	 dfd;

	if ((dfd = jdir(j, err, errlen)) == -1)
		return (-1);
	if (snapshot_write(j, ks, err, errlen) == -1)
		goto fail;
	if (renameat(dfd, SNAPSHOT_TMP, dfd, SNAPSHOT_FILE) == -1) {
		file_error(err, errlen, SNAPSHOT_FILE, errno);
		goto fail;
	}
	j->j_snap_json = 0;
	if (fsync(dfd) == -1) {
		snprintf(err, errlen, "%s: %s", j->j_dir, strerror(errno));
		return (-1);
	}
	if (journal_open(j, err, errlen) == -1)
		return (-1);
	if (ftruncate(j->j_fd, 0) == -1 || fsync(j->j_fd) == -1) {
		file_error(err, errlen, JOURNAL_FILE, errno);
		return (-1);
	}
	return (0);
fail:
	(void)unlinkat(dfd, SNAPSHOT_TMP, 0);
	return (-1);
}

/*
 * Start-up, after journal_load(): compact now if the journal holds lines,
 * or if the snapshot is still in the JSON-lines format (the next start
 * then reads the binary one; a large store's JSON snapshot would
 * otherwise wait for the journal to outgrow it).
 */
int
journal_compact_due(struct journal *j)
{
	return (journal_size(j) > 0 || j->j_snap_json);
}

/* Size of state_dir/name, 0 if absent, unreadable or not a file. */
static off_t
file_size(struct journal *j, const char *name)
{
	struct stat	 st;
	char		 err[256];
	int		 dfd;

	if ((dfd = jdir(j, err, sizeof(err))) == -1 ||
	    fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1 ||
	    !S_ISREG(st.st_mode))
		return (0);
	return (st.st_size);
}

/* Bytes in keys.journal now (0 if absent). */
off_t
journal_size(struct journal *j)
{
	struct stat	 st;

	if (j->j_fd != -1 && fstat(j->j_fd, &st) == 0)
		return (st.st_size);
	return (file_size(j, JOURNAL_FILE));
}

/* Bytes in keys.snapshot (0 if absent). */
off_t
journal_snapshot_size(struct journal *j)
{
	return (file_size(j, SNAPSHOT_FILE));
}

/* Rewrite keys.usage: one line per key with non-zero usage. */
int
journal_save_usage(struct journal *j, const struct keystore *ks, char *err,
    size_t errlen)
{
	struct ks_key	 k;
	FILE		*fp;
	uint64_t	 allowed, refused, c[KS_NCOUNTS];
	int64_t		 last;
	uint32_t	 cursor = 0, slot;
	int		 dfd;

	if ((dfd = jdir(j, err, errlen)) == -1)
		return (-1);
	if ((fp = tmp_create(j, USAGE_TMP, 1, err, errlen)) == NULL)
		return (-1);
	while (keystore_next(ks, &cursor, &k, &slot) == KS_OK) {
		keystore_usage(ks, slot, &allowed, &refused, &last);
		if (allowed == 0 && refused == 0 && last == 0)
			continue;
		/*
		 * Written with fprintf, not jansson: this runs for every used
		 * key every few seconds, and a valid id ([A-Za-z0-9_]) and
		 * three integers need no escaping.
		 */
		if (!valid_id(k.k_id))
			continue;
		keystore_counts(ks, slot, c);
		if (fprintf(fp, "{\"id\":\"%s\",\"allowed\":%" PRIu64
		    ",\"refused\":%" PRIu64 ",\"rate_limited\":%" PRIu64
		    ",\"last_used\":%" PRId64 "}\n", k.k_id, allowed, refused,
		    c[KS_C_LIMITED], last) < 0) {
			file_error(err, errlen, USAGE_TMP, errno != 0 ? errno :
			    EIO);
			fclose(fp);
			goto fail;
		}
	}
	if (tmp_finish(fp, USAGE_TMP, 0, err, errlen) == -1)
		goto fail;
	if (renameat(dfd, USAGE_TMP, dfd, USAGE_FILE) == -1) {
		file_error(err, errlen, USAGE_FILE, errno);
		goto fail;
	}
	return (0);
fail:
	(void)unlinkat(dfd, USAGE_TMP, 0);
	return (-1);
}

/* Apply one usage line to the key it names, if it exists; 0 or -1. */
static int
usage_line(struct jreader *r, struct keystore *ks)
{
	struct ks_key	 k;
	char		 id[KS_ID_LEN + 1];
	json_t		*o;
	int64_t		 allowed, refused, limited = 0, last;
	uint64_t	 c[KS_NCOUNTS];
	uint32_t	 slot;
	int		 rc = -1;

	if ((o = reader_json(r)) == NULL)
		return (-1);
	/* "rate_limited" is newer: a file without it counts none. */
	if (fields_known(r, o, usage_fields) == -1 ||
	    field_str(r, o, "id", id, KS_ID_LEN) == -1 ||
	    field_int(r, o, "allowed", 0, 0, &allowed) == -1 ||
	    field_int(r, o, "refused", 0, 0, &refused) == -1 ||
	    (json_object_get(o, "rate_limited") != NULL &&
	    field_int(r, o, "rate_limited", 0, 0, &limited) == -1) ||
	    field_int(r, o, "last_used", 0, 0, &last) == -1)
		goto fail;
	if (limited > refused) {
		rd_error(r, "field \"rate_limited\" is above \"refused\"");
		goto fail;
	}
	rc = 0;
	c[KS_C_ALLOWED] = (uint64_t)allowed;
	c[KS_C_LIMITED] = (uint64_t)limited;
	c[KS_C_REFUSED] = (uint64_t)(refused - limited);
	if (keystore_find_id(ks, id, &k, &slot) == KS_OK)
		keystore_set_counts(ks, slot, c, last);
	else
		log_debug("%s: %s:%zu: key %s is gone", __func__, r->r_name,
		    r->r_lineno, id);
fail:
	json_decref(o);
	return (rc);
}

/*
 * Load keys.usage into ks.  Usage is advisory: a bad line is logged and
 * skipped, and only failing to read the file at all returns -1.
 */
int
journal_load_usage(struct journal *j, struct keystore *ks, char *err,
    size_t errlen)
{
	struct jreader	 r;
	char		 why[600];
	int		 rc;

	if ((rc = reader_open(&r, j, USAGE_FILE, err, errlen)) <= 0)
		return (rc);
	r.r_err = why;
	r.r_errlen = sizeof(why);
	while ((rc = reader_next(&r)) == 1) {
		if (r.r_torn)
			rd_error(&r, "no newline at the end");
		if (r.r_torn || usage_line(&r, ks) == -1)
			log_warnx("%s (line skipped)", why);
	}
	if (rc == -1)
		snprintf(err, errlen, "%s", why);
	reader_close(&r);
	return (rc);
}

/*
 * Take keys.lock: an exclusive flock(2) on state_dir/keys.lock, waiting
 * up to wait_ms.  The lock belongs to the open file description, which
 * every worker inherits at fork(): it is held until the master and every
 * worker it started have exited, so a worker left running by a master
 * killed with SIGKILL keeps it too, and a new master cannot load the
 * journal while such a worker may still append to it.
 */
int
journal_lock(struct journal *j, int wait_ms, char *err, size_t errlen)
{
	struct timespec	 ts = { 0, 100 * 1000000 };
	int64_t		 deadline;
	int		 fd, waited = 0;

	deadline = util_mono_ms() + (wait_ms > 0 ? wait_ms : 0);
	if ((fd = file_open(j, LOCK_FILE, O_RDWR, 1, err, errlen)) == -1)
		return (-1);
	while (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		if (errno == EINTR)
			continue;
		if (errno != EWOULDBLOCK) {
			file_error(err, errlen, LOCK_FILE, errno);
			close(fd);
			return (-1);
		}
		if (util_mono_ms() >= deadline) {
			snprintf(err, errlen, "state_dir %s is in use: another "
			    "keygated, or workers left by one that was killed, "
			    "still hold %s (waited %d ms)", j->j_dir, LOCK_FILE,
			    wait_ms);
			close(fd);
			errno = EWOULDBLOCK;
			return (-1);
		}
		if (!waited++)
			log_warnx("state_dir %s: %s is locked by another "
			    "keygated or by workers left by one that was "
			    "killed; waiting up to %d ms for them to exit",
			    j->j_dir, LOCK_FILE, wait_ms);
		nanosleep(&ts, NULL);
	}
	if (waited)
		log_info("state_dir %s: %s taken", j->j_dir, LOCK_FILE);
	return (fd);
}

/*
 * Start-up, once the journal is empty (compacted, or nothing in it) and
 * before any worker runs: a keys.journal that does not belong to the
 * configured user (made by a run without "user", say) would refuse the
 * workers' appends.  It is not chowned (an existing file never is): an
 * empty file of the user's is created and renamed over it.  0 or -1.
 */
int
journal_renew(struct journal *j, char *err, size_t errlen)
{
	struct stat	 st;
	FILE		*fp;
	int		 dfd;

	if (j->j_uid == (uid_t)-1)
		return (0);
	if ((dfd = jdir(j, err, errlen)) == -1)
		return (-1);
	if (fstatat(dfd, JOURNAL_FILE, &st, AT_SYMLINK_NOFOLLOW) == -1) {
		if (errno == ENOENT)
			return (0);
		file_error(err, errlen, JOURNAL_FILE, errno);
		return (-1);
	}
	if (st.st_uid == j->j_uid && S_ISREG(st.st_mode))
		return (0);
	if (S_ISREG(st.st_mode) && st.st_size != 0) {
		snprintf(err, errlen, "%s: not empty", JOURNAL_FILE);
		return (-1);
	}
	if ((fp = tmp_create(j, JOURNAL_TMP, 1, err, errlen)) == NULL ||
	    tmp_finish(fp, JOURNAL_TMP, 1, err, errlen) == -1)
		goto fail;
	if (j->j_fd != -1)
		close(j->j_fd);
	j->j_fd = -1;
	if (renameat(dfd, JOURNAL_TMP, dfd, JOURNAL_FILE) == -1 ||
	    fsync(dfd) == -1) {
		file_error(err, errlen, JOURNAL_FILE, errno);
		goto fail;
	}
	log_info("%s: replaced by an empty file of the configured user (it "
	    "belonged to uid %lu)", JOURNAL_FILE, (unsigned long)st.st_uid);
	return (0);
fail:
	(void)unlinkat(dfd, JOURNAL_TMP, 0);
	return (-1);
}

static int	 file_replace(struct journal *, const char *, int, const void *,
		    size_t, char *, size_t);

/* Open state_dir/name for reading, as every file there (see file_open). */
int
journal_file_open(struct journal *j, const char *name, char *err,
    size_t errlen)
{
	return (file_open(j, name, O_RDONLY, 0, err, errlen));
}

/*
 * Replace state_dir/name by buf[0..len), a file of this process's own.
 *
 * As journal_compact does for the snapshot: NAME.tmp is made afresh
 * (tmp_create: a link in its place is removed, never followed), written
 * and fsync'ed before rename() puts it in place atomically, and the
 * directory is fsync'ed so that the rename is durable.  A crash at any
 * point leaves either the old file or the new one, whole; a stale
 * NAME.tmp is never read and is replaced next time.
 */
int
journal_file_replace(struct journal *j, const char *name, const void *buf,
    size_t len, char *err, size_t errlen)
{
	return (file_replace(j, name, 0, buf, len, err, errlen));
}

/* As journal_file_replace, the file given to the configured user. */
int
journal_file_share(struct journal *j, const char *name, const void *buf,
    size_t len, char *err, size_t errlen)
{
	return (file_replace(j, name, 1, buf, len, err, errlen));
}

/* The descriptor of the handle's directory (see jdir); -1 with err. */
int
journal_dirfd(struct journal *j, char *err, size_t errlen)
{
	return (jdir(j, err, errlen));
}

/*
 * Make the directory name in j's directory if it is missing: mode 0700,
 * given to the configured user like the files the workers read.  An
 * existing name is left alone (journal_init on it, and the jdir() checks,
 * judge it when it is opened).  0, or -1 with err.
 */
int
journal_mkdir(struct journal *j, const char *name, char *err, size_t errlen)
{
	int	 dfd, fd, saved;

	if ((dfd = jdir(j, err, errlen)) == -1)
		return (-1);
	if (mkdirat(dfd, name, 0700) == -1) {
		if (errno == EEXIST)
			return (0);
		file_error(err, errlen, name, errno);
		return (-1);
	}
	if ((fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) == -1 || file_give(j, fd) == -1) {
		saved = errno;
		if (fd != -1)
			close(fd);
		file_error(err, errlen, name, saved);
		return (-1);
	}
	close(fd);
	return (0);
}

/* See journal_file_replace; give: the file goes to the configured user. */
static int
file_replace(struct journal *j, const char *name, int give, const void *buf,
    size_t len, char *err, size_t errlen)
{
	FILE	*fp;
	char	 tmp[NAME_MAX + 1];
	int	 dfd;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", name) >=
	    sizeof(tmp)) {
		file_error(err, errlen, name, ENAMETOOLONG);
		return (-1);
	}
	if ((dfd = jdir(j, err, errlen)) == -1 ||
	    (fp = tmp_create(j, tmp, give, err, errlen)) == NULL)
		return (-1);
	if (len > 0 && fwrite(buf, 1, len, fp) != len) {
		file_error(err, errlen, tmp, errno != 0 ? errno : EIO);
		fclose(fp);
		goto fail;
	}
	if (tmp_finish(fp, tmp, 1, err, errlen) == -1)
		goto fail;
	if (renameat(dfd, tmp, dfd, name) == -1) {
		file_error(err, errlen, name, errno);
		goto fail;
	}
	if (fsync(dfd) == -1) {
		snprintf(err, errlen, "%s: %s", j->j_dir, strerror(errno));
		return (-1);
	}
	return (0);
fail:
	(void)unlinkat(dfd, tmp, 0);
	return (-1);
}

/*
 * The "idem" member of put lines (the Idempotency-Key entry of a create,
 * idem.h): journal_write_put_extra appends a put line carrying it (any
 * JSON value, a reference taken; durable after journal_sync, like
 * journal_write_put's), and at load and repair each replayed put
 * line's member is handed to the hook set by journal_set_put_hook (the
 * master's, before journal_load).  Compaction does not keep it.
 */
int
journal_write_put_extra(struct journal *j, uint64_t seq,
    const struct ks_key *k, json_t *idem, char *err, size_t errlen)
{
	json_t	*key, *line;

	if (!seq_valid(seq, err, errlen) ||
	    (key = key_encode(k, JOURNAL_FILE, err, errlen)) == NULL) {
		json_decref(idem);
		return (-1);
	}
	line = json_pack("{s:I,s:s,s:o,s:o}", "seq", (json_int_t)seq, "op",
	    "put", "key", key, "idem", idem);
	if (line == NULL) {
		file_error(err, errlen, JOURNAL_FILE, ENOMEM);
		return (-1);
	}
	return (journal_append(j, seq, line, err, errlen));
}

void
journal_set_put_hook(void (*fn)(void *, const json_t *,
    const struct ks_key *), void *arg)
{
	journal_hook = fn;
	journal_hook_arg = arg;
}

/*
 * Append put lines for keys[0..n) with sequences seq, seq + 1, ... in one
 * write and make them durable with one journal_sync (an import's new
 * keys, the caller holding the writer lock, so no line comes after
 * them): as journal_put for each, but on any failure none of them is kept
 * (the file is cut back to its length before), so the caller changes no
 * memory.  A failed sync also sticks, as in journal_sync.  0 or -1 with
 * err.
 */
int
journal_put_many(struct journal *j, uint64_t seq, const struct ks_key **keys,
    size_t n, char *err, size_t errlen)
{
	json_t		*key, *line;
	char		*buf = NULL, *p;
	size_t		 len = 0, cap = 0, l, i;
	off_t		 start;

	if (n == 0)
		return (0);
	if (journal_writable(j, err, errlen) == -1 ||
	    journal_open(j, err, errlen) == -1)
		return (-1);
	for (i = 0; i < n; i++) {
		if (!seq_valid(seq + i, err, errlen) ||
		    (key = key_encode(keys[i], JOURNAL_FILE, err, errlen)) ==
		    NULL)
			goto fail;
		line = json_pack("{s:I,s:s,s:o}", "seq", (json_int_t)(seq + i),
		    "op", "put", "key", key);
		if (line == NULL || (l = json_dumpb(line, NULL, 0,
		    JSON_COMPACT)) == 0) {
			json_decref(line);
			goto nomem;
		}
		if (len + l + 1 > cap) {
			cap = (len + l + 1) * 2;
			if ((p = realloc(buf, cap)) == NULL) {
				json_decref(line);
				goto nomem;
			}
			buf = p;
		}
		json_dumpb(line, buf + len, l, JSON_COMPACT);
		json_decref(line);
		buf[len + l] = '\n';
		len += l + 1;
	}
	if (journal_append_buf(j, buf, len, seq + n - 1, n, &start, err,
	    errlen) == -1)
		goto fail;
	if (journal_sync(j, seq + n - 1, err, errlen) == -1) {
		journal_cut(j, start, err, errlen);
		goto fail;
	}
	free(buf);
	return (0);
nomem:
	file_error(err, errlen, JOURNAL_FILE, ENOMEM);
fail:
	free(buf);
	return (-1);
}

/* The key record k as checked JSON, for the cluster (journal.h). */
json_t *
journal_key_json(const struct ks_key *k, const char *what, char *err,
    size_t errlen)
{
	return (key_encode(k, what, err, errlen));
}

/* A key record from JSON o, checked as a journal line's (journal.h). */
int
journal_key_parse(json_t *o, const char *what, struct ks_key *k, char *err,
    size_t errlen)
{
	struct jreader	 r;

	memset(&r, 0, sizeof(r));
	r.r_name = what;
	r.r_err = err;
	r.r_errlen = errlen;
	if (!json_is_object(o)) {
		rd_error(&r, "the key is not an object");
		return (-1);
	}
	return (key_from_json(&r, o, k));
}
