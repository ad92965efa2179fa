/*
 * The key store: API key records in the shared-memory segment, found by the
 * SHA-256 digest of their secret (request path) or by their public id (admin
 * API).  Free of libevent so that the master, the workers and the unit
 * tests can all include it.
 *
 * Region layout (keystore_size() bytes, placed by the caller anywhere in a
 * MAP_SHARED mapping, 64-byte aligned):
 *
 *	struct ks_header
 *	struct ks_slot	 slots[max_keys]	records
 *	uint32_t	 free[max_keys]		stack of free slot numbers
 *	uint64_t	 dindex[2][ndindex]	digest -> slot, two areas
 *	uint64_t	 iindex[2][niindex]	id -> slot, two areas
 *
 * Readers (every worker, for every request) take no lock:
 * - A slot's record (struct ks_key) is guarded by a seqlock (s_seq odd
 *   while it is being written); a reader copies it and retries when the
 *   sequence moved, so it never acts on a half-written record.
 * - An index entry is one 64-bit word written with a single atomic store:
 *   0 empty, 1 tombstone, else (32-bit tag << 32 | slot + 1).  The tag is
 *   taken from hash bits not used for the probe position, so most
 *   non-matching entries are skipped without touching the slot.  A hit is
 *   always confirmed against the record itself (digest or id compared
 *   under the seqlock), so a stale entry can only cost a probe, never
 *   return a wrong key.
 * - Indexes are open addressing with linear probing over a power-of-two
 *   number of entries (ndindex >= 3 * max_keys: a key may have two
 *   digests, its secret and a previous one during a regeneration grace
 *   period; niindex >= 2 * max_keys).  Deletion leaves a tombstone; an
 *   insertion reuses the first tombstone on its probe path.  When
 *   tombstones and live entries together pass 3/4 of an area, the writer
 *   rebuilds both indexes from the records into the other area and flips
 *   kh_area (incrementing kh_index_gen).  A reader that found nothing
 *   while kh_index_gen moved looks again, so a rebuild never hides a key.
 *
 * Writers (admin API in any worker, the master at start and in repair)
 * are serialised by kh_lock, a word holding the owner's pid (nginx
 * ngx_shmtx style).  Crash safety: before changing a slot the writer saves
 * it in kh_undo and sets kh_undo_slot; if the owner dies at any
 * instruction, the master, reaping it, calls keystore_repair(): the saved
 * slot is restored, the free stack and both indexes are rebuilt from the
 * records, and the lock passes to the master.  The journal (journal.h) is written
 * before the memory is changed, and repair then replays journal lines past
 * kh_applied, so memory and disk agree again.
 *
 * Usage counters (allowed, refused, rate limited, last used) sit outside
 * the seqlock and are updated with relaxed atomic adds by any worker.  The
 * usage history's baselines (s_base[], usage.h) sit beside them: the
 * counters' values at the master's last fold, written only by the master
 * (under the writer lock, so that no keystore_put() zeroes a reused slot
 * in between) and zeroed with the counters when a new id takes the slot.
 *
 * Memory: the region is mapped MAP_NORESERVE and only what is touched
 * becomes resident.  Free slots are handed out lowest first, and nothing
 * (iteration, rebuild, repair) looks at slots at or above kh_hiwater, the
 * highest slot ever used + 1, so the records of a store holding N keys
 * cost about N * sizeof(struct ks_slot) of memory, whatever max_keys is.
 *
 * Times are milliseconds since the Unix epoch, passed in as "now".
 */
#ifndef KEYGATE_KEYSTORE_H
#define KEYGATE_KEYSTORE_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

#include "ratelimit.h"

#define KS_DIGEST_LEN	32	/* SHA-256 */
#define KS_ID_LEN	20	/* "key_" + 16 base62 characters */
#define KS_PREFIX_MAX	12	/* [a-z0-9]{1,12} */
#define KS_HINT_MAX	20	/* prefix + "_..." + last 4 characters */
#define KS_NAME_MAX	100	/* bytes of UTF-8, no control characters */
#define KS_OWNER_MAX	64
#define KS_APP_MAX	64
#define KS_SCOPES_MAX	255	/* scopes joined by single spaces */

/* Rate limit windows: index into k_rate[], the same as ratelimit.h's. */
#define KS_W1S		0
#define KS_W10S		1
#define KS_W60S		2
#define KS_NWINDOWS	3

/* A key record as readers see it (copied out of the slot). */
struct ks_key {
	uint8_t		 k_digest[KS_DIGEST_LEN];	/* of the current secret */
	uint8_t		 k_old_digest[KS_DIGEST_LEN];	/* previous secret, */
	int64_t		 k_grace_until;	/* valid while now < this; 0: none */
	int64_t		 k_created;
	int64_t		 k_updated;
	int64_t		 k_expires;	/* 0: never */
	uint32_t	 k_flags;
#define KS_F_DISABLED	0x01
	uint32_t	 k_rate[KS_NWINDOWS];	/* 0: the configured default */
	char		 k_id[KS_ID_LEN + 4];
	char		 k_prefix[KS_PREFIX_MAX + 4];
	char		 k_hint[KS_HINT_MAX + 4];
	char		 k_name[KS_NAME_MAX + 4];
	char		 k_owner[KS_OWNER_MAX + 4];
	char		 k_app[KS_APP_MAX + 4];		/* "": no app */
	char		 k_scopes[KS_SCOPES_MAX + 1];	/* "a b c" */
};

struct ks_slot {
	uint32_t	 s_seq;		/* seqlock: odd while being written */
	uint32_t	 s_live;	/* 1: holds a key */
	struct ks_key	 s_key;
	/* Outside the seqlock: relaxed atomics, any worker. */
	uint64_t	 s_allowed;
	uint64_t	 s_refused;	/* refusals other than 429 */
	uint64_t	 s_limited;	/* refused with 429 (rate limited) */
	int64_t		 s_last_used;	/* 0: never */
	/* The master's, read by anyone: the counts at its last usage fold. */
	uint64_t	 s_base[3];	/* KS_C_ALLOWED, KS_C_LIMITED, */
					/* KS_C_REFUSED */
} __attribute__((aligned(64)));

/* Indexes of keystore_counts() and s_base[]. */
#define KS_C_ALLOWED	0
#define KS_C_LIMITED	1
#define KS_C_REFUSED	2	/* refusals other than 429 */
#define KS_NCOUNTS	3

/* Outcomes for keystore_count_use(). */
#define KS_USE_REFUSED	0
#define KS_USE_ALLOWED	1
#define KS_USE_LIMITED	2	/* refused with 429 */

struct ks_header {
	uint64_t	 kh_magic;
	uint32_t	 kh_max_keys;
	uint32_t	 kh_ndindex;	/* entries per digest-index area (2^n) */
	uint32_t	 kh_niindex;	/* entries per id-index area (2^n) */
	uint32_t	 kh_area;	/* 0 or 1: the index area readers use */
	uint32_t	 kh_index_gen;	/* incremented on every area flip */
	uint32_t	 kh_nlive;	/* keys */
	uint32_t	 kh_nfree;	/* entries on the free stack */
	uint32_t	 kh_dused;	/* digest entries, live + tombstones */
	uint32_t	 kh_iused;	/* id entries, live + tombstones */
	uint32_t	 kh_rebuilds;	/* index rebuilds so far (statistics) */
	uint32_t	 kh_hiwater;	/* slots >= this were never written */
	uint64_t	 kh_seed;	/* hash seed for ids */
	uint64_t	 kh_applied;	/* journal sequence of the last change */
	int32_t		 kh_lock;	/* pid of the writer, 0: free */
	uint32_t	 kh_undo_slot;	/* slot number + 1 saved in kh_undo, 0: none */
	uint32_t	 kh_fold_seq;	/* usage.h: odd while the master folds */
	struct ks_slot	 kh_undo;
} __attribute__((aligned(64)));

/*
 * Process-local handle on a region: pointers into the mapping and the
 * layout, computed from the max_keys the caller passed, never read back
 * from the header.  Every process that maps the region can write the
 * header, so a count or an index read from the region (kh_hiwater,
 * kh_nfree, kh_undo_slot, free stack entries, index entries) is clamped
 * to these before it is used as an offset: a worker that scribbles on the
 * header can corrupt the store, never make the master (root) read or
 * write outside the region.
 */
struct keystore {
	struct ks_header	*ks_hdr;
	struct ks_slot		*ks_slots;
	uint32_t		*ks_free;
	uint64_t		*ks_dindex;	/* 2 * ks_ndindex entries */
	uint64_t		*ks_iindex;	/* 2 * ks_niindex entries */
	struct rl_state		*ks_rate;	/* ks_max_keys, by slot */
	uint32_t		 ks_max_keys;
	uint32_t		 ks_ndindex;	/* entries per digest-index area */
	uint32_t		 ks_niindex;	/* entries per id-index area */
};

/* Results of lookups and writes. */
#define KS_OK		0
#define KS_NOTFOUND	(-1)
#define KS_FULL		(-2)	/* no free slot (or digest index full) */
#define KS_EXISTS	(-3)	/* digest already belongs to another key */
#define KS_BUSY		(-4)	/* a slot stayed mid-write: writer died */
#define KS_TIMEOUT	(-5)	/* keystore_lock() waited too long */

/* Bytes of region needed for max_keys keys (header through indexes). */
size_t	 keystore_size(uint32_t);

/* Format a zeroed region of keystore_size(max_keys) bytes; fill ks. */
void	 keystore_init(struct keystore *, void *, uint32_t, uint64_t);

/*
 * Fill ks for a region formatted earlier for max_keys (the caller's own
 * copy of it: the header's kh_max_keys is not trusted).
 */
void	 keystore_attach(struct keystore *, void *, uint32_t);

/*
 * Lock-free lookup by secret digest.  On KS_OK the record is copied to key
 * and its slot number stored in slot; *old is set to 1 when the digest is
 * the key's previous secret (the caller decides about k_grace_until; the
 * store does not look at the clock).  KS_NOTFOUND or KS_BUSY otherwise.
 * Digests are compared with CRYPTO_memcmp.
 */
int	 keystore_find_digest(const struct keystore *, const uint8_t *,
	    struct ks_key *, uint32_t *, int *);

/* Lock-free lookup by public id: KS_OK, KS_NOTFOUND or KS_BUSY. */
int	 keystore_find_id(const struct keystore *, const char *,
	    struct ks_key *, uint32_t *);

/*
 * Iterate the live keys in slot order: the first live slot >= *cursor is
 * copied to key, its number stored in slot, and *cursor set past it.
 * KS_OK, KS_NOTFOUND at the end, or KS_BUSY (a slot stayed mid-write:
 * *cursor is left on it).
 */
int	 keystore_next(const struct keystore *, uint32_t *, struct ks_key *,
	    uint32_t *);

/* Number of keys. */
uint32_t keystore_count(const struct keystore *);

/*
 * Take the writer lock for pid, waiting at most timeout_ms (sleeping in
 * short steps): KS_OK or KS_TIMEOUT.  Unlock only what you locked.
 */
int	 keystore_lock(struct keystore *, pid_t, int);
void	 keystore_unlock(struct keystore *, pid_t);

/*
 * Under the lock: insert key, or replace the key with the same k_id (its
 * digests may change: index entries follow; the usage counters are kept
 * for the same id and zeroed for a new one), and record seq as kh_applied.
 * The previous digest is indexed only when k_grace_until != 0.
 * KS_OK, KS_FULL, KS_EXISTS.
 */
int	 keystore_put(struct keystore *, const struct ks_key *, uint64_t);

/* Under the lock: delete by id, record seq.  KS_OK or KS_NOTFOUND. */
int	 keystore_del(struct keystore *, const char *, uint64_t);

/*
 * Master, after reaping pid: if pid held the lock, restore the slot saved
 * in kh_undo, rebuild the free stack and both indexes from the records,
 * and hand the lock to owner (the master), which then replays the journal
 * tail (journal_replay_tail) before it unlocks: no other writer may append
 * in between, or two journal lines could carry the same sequence.
 * Returns 1 if it repaired, 0 if pid did not hold the lock.
 */
int	 keystore_repair(struct keystore *, pid_t, pid_t);

/*
 * The rate limiter's state of slot (ratelimit.h), in the same region.
 * keystore_put() zeroes it, like the usage counters, when a new id takes
 * the slot; the store itself never reads it.
 */
struct rl_state *keystore_rate(const struct keystore *, uint32_t);

/*
 * Usage, relaxed atomics (no lock).  outcome: KS_USE_*; each use adds one
 * to exactly one counter, so differences of counters read at two moments
 * are exact per kind.  keystore_usage's refused is every refusal, 429s
 * included (s_refused + s_limited).
 */
void	 keystore_count_use(struct keystore *, uint32_t, int, int64_t);
void	 keystore_usage(const struct keystore *, uint32_t, uint64_t *,
	    uint64_t *, int64_t *);
/* Counters of slot by KS_C_* (zeros for a slot out of range). */
void	 keystore_counts(const struct keystore *, uint32_t, uint64_t *);
/*
 * Set the counters of slot (start-up, from the usage file): by KS_C_*,
 * or as allowed, refused (none of them rate limited), and its history
 * baselines to the same values: restored counts are not new traffic.
 */
void	 keystore_set_counts(struct keystore *, uint32_t, const uint64_t *,
	    int64_t);
void	 keystore_set_usage(struct keystore *, uint32_t, uint64_t, uint64_t,
	    int64_t);
/* The history baselines of slot (KS_NCOUNTS values); master sets them. */
void	 keystore_base(const struct keystore *, uint32_t, uint64_t *);
void	 keystore_set_base(struct keystore *, uint32_t, const uint64_t *);

#endif /* KEYGATE_KEYSTORE_H */
