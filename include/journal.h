/*
 * Persistence of the key store in state_dir:
 *
 *	keys.snapshot	the whole store as of sequence S, in the binary format
 *			of snapshot.h, written to a temporary file, fsync'ed,
 *			renamed over the old one, directory fsync'ed
 *	keys.journal	append-only JSON lines, one mutation each, every line
 *			fdatasync'ed before the admin API answers (group
 *			commit: one fdatasync for the lines of concurrent
 *			writers, see journal_sync)
 *	keys.usage	usage counters, rewritten periodically (not fsync'ed:
 *			losing a few seconds of counts is acceptable)
 *	keys.lock	empty; flock'ed by the master for as long as it or
 *			any of its workers runs (journal_lock)
 *	keys.idempotency  Idempotency-Key entries kept across compactions
 *			(idem.h), the master's
 *
 * state_dir belongs to the workers' user; the master (root) opens every
 * file in it relative to a descriptor of the directory, never following a
 * symbolic link, and refuses anything but a regular file with one link
 * owned by root, itself or the configured user.  It never chowns a file
 * it did not just create.
 *
 * Lines (one JSON object each, no secrets, only digests):
 *	journal:  {"seq":N,"op":"put","key":{KEY}[,"idem":{...}]}
 *	          {"seq":N,"op":"del","id":"key_..."}
 *	usage:    {"id":"key_...","allowed":N,"refused":N,"rate_limited":N,
 *	          "last_used":MS}  (rate_limited, of refused, may be absent)
 *	snapshot, as written before the binary format (it still loads; a
 *	file whose first byte is "{" is read as this, any other as binary):
 *	          {"keygate_snapshot":1,"seq":S,"keys":COUNT}
 *	          {KEY}   (COUNT lines)
 *	          {"end":COUNT}
 * where KEY is {"id","digest" (64 hex),"old_digest" (hex or null),
 * "grace_until" (ms or null),"name","owner","app_id" ("" for none),
 * "prefix","hint","scopes" (array),"created","updated","expires" (ms;
 * expires null for never),"disabled" (bool),"rate" ([per_1s, per_10s,
 * per_60s], 0 = default)}.
 *
 * A "put" carries the whole record, so replay is idempotent: replaying a
 * line whose effect is already in the snapshot changes nothing.  Journal
 * lines with seq <= the snapshot's S are skipped (a compaction that died
 * between the snapshot's rename and the journal's truncation leaves them).
 *
 * Damage: a last line without its newline (a torn append) is dropped with a
 * warning; a seq that goes backwards (two writers appended) is repaired:
 * lines from there on are renumbered in file order, the original file is
 * kept as keys.journal.damaged-TIME and every change is logged (see
 * journal_replay); anything else that does not parse or apply (bad JSON,
 * a missing field, a snapshot whose end line is missing) stops the load
 * with "FILE:LINE: reason", and in a binary snapshot (a checksum
 * mismatch, a cut, a record that does not pass the checks every record
 * passes, counts that disagree, bytes after the trailer) with
 * "keys.snapshot: offset N: reason", N the byte offset of the damage.
 *
 * Start-up cost: a binary snapshot is read with one pread() loop into one
 * buffer, checked a 64 KiB block at a time (CRC32C) and decoded without
 * parsing text; the JSON snapshot spent 85 % of its load in jansson.
 *
 * Writers: any worker of the master holding keys.lock appends under the
 * key store lock, so lines are in seq order.  Compaction (master, at start
 * and when the journal grows) holds the lock while it writes the snapshot
 * and then truncates the journal in place: workers keep their O_APPEND
 * descriptors.  A line appended but not yet fdatasync'ed (journal_sync)
 * when a compaction takes the lock is already in memory, so the snapshot,
 * fsync'ed before the truncation, holds it: truncating cannot lose it,
 * and the writer's later fdatasync() of the emptied file succeeds.
 * Durability is tracked by seq, not by file offset, for that reason: seq
 * keeps growing across compactions, offsets start again at 0.
 */
#ifndef KEYGATE_JOURNAL_H
#define KEYGATE_JOURNAL_H

#include <sys/types.h>

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "keystore.h"

#define JOURNAL_FILE	"keys.journal"
#define SNAPSHOT_FILE	"keys.snapshot"
#define USAGE_FILE	"keys.usage"
#define LOCK_FILE	"keys.lock"

/* Compact when the journal is at least this large and larger than the snapshot. */
#define JOURNAL_COMPACT_MIN	(1024 * 1024)

struct journal {
	char		*j_dir;		/* state_dir */
	int		 j_dirfd;	/* state_dir (O_NOFOLLOW), or -1 */
	int		 j_fd;		/* keys.journal, O_WRONLY|O_APPEND, or -1 */
	int		 j_snap_json;	/* journal_load read a JSON snapshot */
	uid_t		 j_uid;		/* owner for files the master creates */
	gid_t		 j_gid;		/* (-1: leave as is) */

	/* Group commit (journal_sync), this process's lines only. */
	pthread_mutex_t	 j_sync_mtx;	/* guards the members below */
	pthread_cond_t	 j_sync_cv;	/* a sync ended */
	uint64_t	 j_appended;	/* seq of the last line we wrote */
	uint64_t	 j_durable;	/* our lines up to this seq are durable */
	int		 j_syncing;	/* a leader is in fdatasync() */
	int		 j_sync_errno;	/* fdatasync() failed: writes refused */
	dev_t		 j_fail_dev;	/* keys.snapshot when it failed */
	ino_t		 j_fail_ino;	/* (a new one lifts the refusal) */
	uint64_t	 j_lines;	/* lines written (statistics) */
	uint64_t	 j_syncs;	/* fdatasync() calls (statistics) */
};

/* Prepare a handle for state_dir (no file is opened yet); 0 or -1. */
int	 journal_init(struct journal *, const char *, uid_t, gid_t);
void	 journal_close(struct journal *);

/*
 * Group commit.  journal_write_put/journal_write_del append a put (key) or
 * a del (id) line with sequence seq, opening the journal on first use, but
 * do not wait for the disk; the caller holds the key store lock (lines stay
 * in seq order), applies the change to memory, unlocks, and then calls
 * journal_sync(seq), which returns once that line is durable: one
 * fdatasync() covers every line this process appended before it started,
 * and concurrent callers (the admin threads of a worker) wait for the one
 * in progress instead of each calling their own.  Acknowledge a change
 * only after journal_sync() returned 0.
 *
 * A failed write (ENOSPC, EIO, a short write) cuts the file back to its
 * previous length: -1 with errno and a reason in err, nothing stored is
 * damaged, memory must not be changed.  A failed fdatasync() cannot be
 * undone that way (later lines may follow, memory holds them, and Linux
 * reports a writeback error only once): every waiter whose line was not
 * yet durable gets -1, and this handle refuses further writes (EIO) until
 * a compaction has replaced keys.snapshot (it wrote memory, failed lines
 * included, and emptied the journal), or the process is replaced.
 *
 * journal_put/journal_del: write and sync in one call.
 * journal_sync_stats: lines written and fdatasync() calls made by this
 * handle so far (their ratio is the group commit's batch size).
 */
int	 journal_write_put(struct journal *, uint64_t, const struct ks_key *,
	    char *, size_t);
int	 journal_write_del(struct journal *, uint64_t, const char *, char *,
	    size_t);
int	 journal_sync(struct journal *, uint64_t, char *, size_t);
int	 journal_put(struct journal *, uint64_t, const struct ks_key *,
	    char *, size_t);
int	 journal_del(struct journal *, uint64_t, const char *, char *, size_t);
void	 journal_sync_stats(struct journal *, uint64_t *, uint64_t *);

/*
 * Start-up: load keys.snapshot (if any) and replay keys.journal into an
 * empty store (the caller holds its lock as pid).  A torn last journal line
 * is dropped (and truncated away) with a warning through log_warnx.
 * 0, or -1 with "FILE:LINE: reason" (or "FILE: reason") in err.
 */
int	 journal_load(struct journal *, struct keystore *, char *, size_t);

/*
 * Repair after a writer died (caller holds the lock): cut a torn last line
 * off the journal and apply the lines with seq > kh_applied.  0 or -1.
 */
int	 journal_replay_tail(struct journal *, struct keystore *, char *,
	    size_t);

/*
 * Write a snapshot of the store and truncate the journal; the caller holds
 * the lock (no writer runs).  0, or -1 with err (the previous snapshot and
 * the journal are then untouched and still describe the store).
 */
int	 journal_compact(struct journal *, struct keystore *, char *, size_t);

/*
 * Start-up, after journal_load: 1 if a compaction is due now (the journal
 * holds lines, or the snapshot loaded was in the old JSON format), else 0.
 */
int	 journal_compact_due(struct journal *);

/* Bytes in keys.journal now (0 if absent), and in keys.snapshot. */
off_t	 journal_size(struct journal *);
off_t	 journal_snapshot_size(struct journal *);

/* Rewrite keys.usage from the store (temp + rename); 0 or -1 with err. */
int	 journal_save_usage(struct journal *, const struct keystore *, char *,
	    size_t);

/* Load keys.usage into the store (unknown ids are skipped); 0 or -1. */
int	 journal_load_usage(struct journal *, struct keystore *, char *,
	    size_t);

/*
 * Master, before journal_load: take keys.lock (flock), waiting up to
 * wait_ms for the processes of another master to exit.  The fd, to keep
 * open for the master's life (its workers inherit it), or -1 with err.
 */
int	 journal_lock(struct journal *, int, char *, size_t);

/*
 * Start-up, with the journal empty and no worker running: replace a
 * keys.journal the configured user does not own by an empty one of the
 * user's (rename; never chown).  0 or -1 with err.
 */
int	 journal_renew(struct journal *, char *, size_t);

/*
 * Other files the master keeps in state_dir (the JWKS caches, jwks.c).
 * journal_file_open: open state_dir/name for reading, like every file
 * there (no link followed, a regular file with one link, owned by root,
 * us or the handle's user); the fd, or -1 with errno (ENOENT: absent) and
 * a reason in err.  journal_file_replace: replace state_dir/name by
 * buf[0..len) crash-safely (NAME.tmp made with O_EXCL|O_NOFOLLOW, 0600,
 * fsync'ed, renamed over name, the directory fsync'ed), as a file of this
 * process's own (never given to the configured user); 0, or -1 with a
 * reason in err and name left as it was.
 */
int	 journal_file_open(struct journal *, const char *, char *, size_t);
int	 journal_file_replace(struct journal *, const char *, const void *,
	    size_t, char *, size_t);
/*
 * journal_file_share: the same, the new file given to the configured user
 * (files the workers read, as the usage history's).  journal_mkdir: make
 * the directory name (0700, given to the configured user) unless it
 * exists.  journal_dirfd: the handle's directory descriptor (opened
 * without following a link and checked, as for every file), for listing
 * and removing; not to be closed by the caller.  0 (fd) or -1 with err.
 */
int	 journal_file_share(struct journal *, const char *, const void *,
	    size_t, char *, size_t);
int	 journal_mkdir(struct journal *, const char *, char *, size_t);
int	 journal_dirfd(struct journal *, char *, size_t);

/*
 * Put lines for n keys with sequences seq.. in one write and one
 * journal_sync, under the writer lock: all of them stored, or (-1 with
 * err) none.
 */
int	 journal_put_many(struct journal *, uint64_t, const struct ks_key **,
	    size_t, char *, size_t);

/*
 * Append a put line with an "idem" member (a reference taken, NULL
 * refused; durable after journal_sync, like journal_write_put's), and
 * the hook replay hands each put line's "idem" member to (NULL: none).
 */
struct json_t;
int	 journal_write_put_extra(struct journal *, uint64_t,
	    const struct ks_key *, struct json_t *, char *, size_t);
void	 journal_set_put_hook(void (*)(void *, const struct json_t *,
	    const struct ks_key *), void *);

/*
 * The cluster (cluster.c) carries key records in the journal's KEY form:
 * journal_key_json is k as that object, checked first as every record
 * written (NULL with "WHAT: reason" in err); journal_key_parse is the
 * reverse, every field checked as in a journal line (0, or -1 with the
 * reason).  A record survives the round trip unchanged, so the compact
 * dump of the object is a record's identity.
 */
struct json_t *journal_key_json(const struct ks_key *, const char *, char *,
	    size_t);
int	 journal_key_parse(struct json_t *, const char *, struct ks_key *,
	    char *, size_t);
/* The first member of an object not in names (NULL-ended), or NULL. */
const char *journal_unknown_member(struct json_t *, const char *const *);

#endif /* KEYGATE_JOURNAL_H */
