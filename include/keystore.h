/*
 * The key store: API key records in the shared-memory segment, found by the
 * SHA-256 digest of their secret (request path) or by their public id (admin
 * API), and the rate states of the keys in use.  Free of libevent so that
 * the master, the workers and the unit tests can all include it.
 *
 * Region layout (keystore_size() bytes, placed by the caller anywhere in a
 * MAP_SHARED, MAP_NORESERVE mapping, 64-byte aligned):
 *
 *	struct ks_header
 *	struct ks_slot	 slots[max_keys]	fixed part of each key, 128 B
 *	uint32_t	 dindex[2][ndindex]	digest -> slot, two areas
 *	uint32_t	 iindex[2][niindex]	id -> slot, two areas
 *	uint64_t	 aword[max_active]	active rate table: owner, last use
 *	struct rl_state	 astate[max_active]	its rate states, 768 B each
 *	struct rl_standing sstate[max_active]	a cluster node's standing
 *						allowance of each, 24 B
 *	chunks of class 0 .. KS_NCLASS-1	(max_keys + 2) records each
 *
 * Why this shape (issue 14: at most 256 B of memory per stored key).  A
 * record's strings (id, prefix, hint, name, owner, app id, scopes: up to
 * 553 bytes, typically 60) live in a chunk of the smallest of KS_NCLASS
 * size classes (64 ... 640 B) that holds them, not in a fixed 704-byte
 * record; a slot keeps the fixed-size fields and a reference to its chunk.
 * Every class has room for max_keys + 2 chunks, so an allocation can never
 * fail for fragmentation: the region is large in address space (about
 * 2 KB per max_keys) and only what is touched becomes memory.  The other
 * choice, fixed fields sized by the validation, costs those 553 bytes on
 * every key.  Chunks are immutable while referenced: a change writes the
 * new strings into a fresh chunk and then switches the slot to it under
 * the slot's seqlock (copy on write), so readers still need no lock and
 * the undo copy of one 128-byte slot is still all a dead writer can leave
 * half done.  Each chunk names its owner slot; keystore_repair() rebuilds
 * every class's free list from "owner is live and points back here", so a
 * chunk allocated or being freed when its writer died is reclaimed.
 *
 * Rate states (ratelimit.h, 768 B) exist only for keys used within the
 * last minute, in a table of max_active entries (issue 14), instead of one
 * per slot.  An entry's word holds its owner (slot + 1) and the monotonic
 * second of its last use; a slot holds its entry number + 1 (s_active).
 * A request refreshes the second (one CAS when the second changed); an
 * entry is taken for another key only when its last use is at least
 * KS_ACTIVE_IDLE_S old, by a CAS on that word, so a use and an eviction
 * never both succeed, and an evicted key's windows were empty anyway: a
 * key that comes back starts with empty windows, which is exact.  Entries
 * are handed out lowest first (a bump counter), then found by a clock hand
 * among the idle ones; when none within KS_ACTIVE_SCAN entries is idle the
 * table is full and the caller refuses the request (503) rather than let
 * the key go unlimited (nginx's limit_req answers 503 the same way when
 * its zone is full).  Size it with max_active_keys (keygate.conf(5)).
 * Two processes may claim an entry for the same key at once; the one
 * whose entry the slot does not take gives it back through kh_aret[],
 * which claims look at before the hand, so that a table with as many
 * entries as keys in use (the default) never refuses one of them.
 *
 * Readers (every worker, for every request) take no lock:
 * - A slot's fixed fields and its chunk are guarded by the slot's seqlock
 *   (s_seq odd while it is being written); a reader copies both into a
 *   struct ks_key and retries when the sequence moved, so it never acts on
 *   a half-written record.  A chunk is only freed after the slot stopped
 *   pointing at it, so a reader that copied a chunk being reused has seen
 *   the sequence move.  Every length read from a chunk is bounded by the
 *   chunk and the field it is copied to.
 * - An index entry is one 32-bit word written with a single atomic store:
 *   0 empty, 1 tombstone, else (tag << slot_bits | slot + 1), slot_bits
 *   being the bits max_keys needs and the tag (never 0) the remaining
 *   high bits of the hash, so most non-matching entries are skipped
 *   without touching the slot.  A hit is always confirmed against the
 *   record itself (digest or id compared under the seqlock), so a stale
 *   entry can only cost a probe, never return a wrong key.
 * - Indexes are open addressing with linear probing over a power-of-two
 *   number of entries (ndindex >= 2 * max_keys: a key may have two
 *   digests, its secret and a previous one during a regeneration grace
 *   period; niindex >= 1.5 * max_keys).  Deletion leaves a tombstone; an
 *   insertion reuses the first tombstone on its probe path.  When
 *   tombstones and live entries together pass 3/4 of an area, the writer
 *   rebuilds both indexes from the records into the other area and flips
 *   kh_area (incrementing kh_index_gen).  A reader that found nothing
 *   while kh_index_gen moved looks again, so a rebuild never hides a key.
 *   (So at most max_keys / 2 keys can be in a grace period at once when
 *   the store is full: a regeneration past that answers "full".)
 *
 * Writers (admin API in any worker, the master at start and in repair)
 * are serialised by kh_lock, a word holding the owner's pid (nginx
 * ngx_shmtx style).  Crash safety: before changing a slot the writer saves
 * it in kh_undo and sets kh_undo_slot; if the owner dies at any
 * instruction, the master, reaping it, calls keystore_repair(): the saved
 * slot is restored, the free slot list, the chunk free lists and both
 * indexes are rebuilt from the records, and the lock passes to the master.
 * The journal (journal.h) is written before the memory is changed, and
 * repair then replays journal lines past kh_applied, so memory and disk
 * agree again.
 *
 * Usage counters (allowed, refused, rate limited, last used) sit outside
 * the seqlock and are updated with relaxed atomic adds by any worker.  The
 * usage history's baselines (s_base[], usage.h) sit beside them: the low
 * 32 bits of the counters at the master's last fold (a minute's traffic is
 * far below 2^32, so counter - baseline is exact in modular arithmetic),
 * written only by the master (under the writer lock, so that no
 * keystore_put() zeroes a reused slot in between) and zeroed with the
 * counters when a new id takes the slot.
 *
 * Memory: free slots and chunks are handed out lowest first (free lists
 * pushed in reverse order, then bump counters), and nothing (iteration,
 * rebuild, repair) looks at slots at or above kh_hiwater, so a store
 * holding N keys costs about N * (128 + its chunk) bytes plus the index
 * pages, whatever max_keys is; an empty store touches only its header.
 *
 * Times are milliseconds since the Unix epoch, passed in as "now"; the
 * rate table's are the callers' monotonic milliseconds (ratelimit.h).
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

/*
 * The fixed part of a key.  s_flags through s_rec are under the seqlock;
 * the rest is outside it (relaxed atomics).  128 bytes, two cache lines.
 */
struct ks_slot {
	uint32_t	 s_seq;		/* seqlock: odd while being written */
	uint32_t	 s_flags;	/* KS_SF_LIVE | k_flags */
#define KS_SF_LIVE	0x80000000U
	uint8_t		 s_digest[KS_DIGEST_LEN];
	int64_t		 s_created;
	int64_t		 s_updated;
	int64_t		 s_expires;
	uint32_t	 s_rate[KS_NWINDOWS];
	uint32_t	 s_rec;		/* live: chunk (class << 29 | index); */
					/* free: next free slot + 1 */
	/* Outside the seqlock: relaxed atomics, any worker. */
	uint64_t	 s_allowed;
	uint64_t	 s_refused;	/* refusals other than 429 */
	uint64_t	 s_limited;	/* refused with 429 (rate limited) */
	int64_t		 s_last_used;	/* 0: never */
	/* The master's, read by anyone: low 32 bits of the counts at its */
	uint32_t	 s_base[3];	/* last usage fold, by KS_C_* */
	uint32_t	 s_active;	/* active rate entry + 1, 0: none */
} __attribute__((aligned(64)));

/*
 * A chunk: the strings of one version of a key, and its previous digest
 * during a grace period.  Layout: this header, then (KS_RF_GRACE) the
 * grace end (int64_t) and the previous digest, then the strings in
 * KS_S_* order, unterminated, r_len[] bytes each.  A free chunk has
 * r_owner 0 and the next free chunk's index + 1 in r_next.
 */
struct ks_rec {
	uint32_t	 r_owner;	/* slot + 1; 0: free */
	union {
		struct {
			uint8_t	 r_flags;
#define KS_RF_GRACE	0x01
			uint8_t	 r_len[7];
		} r_used;
		uint32_t	 r_next;
	} r_u;
};
#define KS_S_ID		0
#define KS_S_PREFIX	1
#define KS_S_HINT	2
#define KS_S_NAME	3
#define KS_S_OWNER	4
#define KS_S_APP	5
#define KS_S_SCOPES	6
#define KS_NSTRINGS	7
#define KS_NCLASS	8	/* chunk sizes: ks_class_size[] */
#define KS_REC_IDX_BITS	29	/* s_rec: class << 29 | chunk index */

/* An active rate entry is taken for another key after this long idle. */
#define KS_ACTIVE_IDLE_S	62	/* > 60 s + one 60 s bucket (~2 s) */
#define KS_ACTIVE_SCAN		4096	/* entries looked at for an idle one */
#define KS_ARET			8	/* cells for entries given back */
#define KS_ACTIVE_SPARE		64	/* default table: max_keys + this */

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
	uint32_t	 kh_max_active;
	uint32_t	 kh_ndindex;	/* entries per digest-index area (2^n) */
	uint32_t	 kh_niindex;	/* entries per id-index area (2^n) */
	uint32_t	 kh_area;	/* 0 or 1: the index area readers use */
	uint32_t	 kh_index_gen;	/* incremented on every area flip */
	uint32_t	 kh_nlive;	/* keys */
	uint32_t	 kh_free;	/* first free slot + 1, 0: none below */
	uint32_t	 kh_dused;	/* digest entries, live + tombstones */
	uint32_t	 kh_iused;	/* id entries, live + tombstones */
	uint32_t	 kh_rebuilds;	/* index rebuilds so far (statistics) */
	uint32_t	 kh_hiwater;	/* slots >= this were never written */
	uint64_t	 kh_seed;	/* hash seed for ids */
	uint64_t	 kh_applied;	/* journal sequence of the last change */
	int32_t		 kh_lock;	/* pid of the writer, 0: free */
	uint32_t	 kh_undo_slot;	/* slot number + 1 saved in kh_undo, 0: none */
	uint32_t	 kh_fold_seq;	/* usage.h: odd while the master folds */
	uint32_t	 kh_ctop[KS_NCLASS];	/* chunks of a class ever used */
	uint32_t	 kh_cfree[KS_NCLASS];	/* first free chunk + 1 */
	/* The active rate table: any worker, atomics. */
	uint32_t	 kh_anext;	/* entries ever handed out */
	uint32_t	 kh_ahand;	/* clock hand of the idle search */
	uint64_t	 kh_afull;	/* requests refused: no entry free */
	uint64_t	 kh_aevict;	/* idle entries taken for another key */
	uint32_t	 kh_aret[KS_ARET];	/* entries given back + 1, 0: */
						/* none (hints: the CAS on */
						/* the entry's word decides) */
	struct ks_slot	 kh_undo;
} __attribute__((aligned(64)));

/*
 * Process-local handle on a region: pointers into the mapping and the
 * layout, computed from the max_keys and max_active the caller passed,
 * never read back from the header.  Every process that maps the region
 * can write the header, so a count or an index read from the region
 * (kh_hiwater, kh_free, kh_ctop, kh_cfree, kh_anext, kh_undo_slot, free
 * list links, chunk references and lengths, s_active, index entries) is
 * clamped
 * to these before it is used as an offset: a worker that scribbles on the
 * header can corrupt the store, never make the master (root) read or
 * write outside the region.
 */
struct keystore {
	struct ks_header	*ks_hdr;
	struct ks_slot		*ks_slots;
	uint32_t		*ks_dindex;	/* 2 * ks_ndindex entries */
	uint32_t		*ks_iindex;	/* 2 * ks_niindex entries */
	uint64_t		*ks_aword;	/* ks_max_active entries */
	struct rl_state		*ks_astate;	/* ks_max_active entries */
	struct rl_standing	*ks_sstate;	/* ... and their standing */
						/* allowances' counters */
	char			*ks_chunks[KS_NCLASS];	/* ks_nchunks each */
	uint32_t		 ks_max_keys;
	uint32_t		 ks_max_active;
	uint32_t		 ks_nchunks;	/* per class: max_keys + 2 */
	uint32_t		 ks_ndindex;	/* entries per digest-index area */
	uint32_t		 ks_niindex;	/* entries per id-index area */
	uint32_t		 ks_slot_bits;	/* index entry: slot + 1 bits */
};

/* Bytes of each chunk class. */
extern const uint32_t	 ks_class_size[KS_NCLASS];

/* Results of lookups and writes. */
#define KS_OK		0
#define KS_NOTFOUND	(-1)
#define KS_FULL		(-2)	/* no free slot (or digest index full) */
#define KS_EXISTS	(-3)	/* digest already belongs to another key */
#define KS_BUSY		(-4)	/* a slot stayed mid-write: writer died */
#define KS_TIMEOUT	(-5)	/* keystore_lock() waited too long */

/*
 * Bytes of region needed for max_keys keys and max_active rate states
 * (address space: only what is used becomes memory).
 */
size_t	 keystore_size(uint32_t, uint32_t);

/*
 * Format a zeroed region of keystore_size(max_keys, max_active) bytes;
 * fill ks.  Writes the header only.
 */
void	 keystore_init(struct keystore *, void *, uint32_t, uint32_t,
	    uint64_t);

/*
 * Fill ks for a region formatted earlier for max_keys and max_active (the
 * caller's own copy of them: the header's are not trusted).
 */
void	 keystore_attach(struct keystore *, void *, uint32_t, uint32_t);

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
 * in kh_undo, rebuild the free lists and both indexes from the records,
 * and hand the lock to owner (the master), which then replays the journal
 * tail (journal_replay_tail) before it unlocks: no other writer may append
 * in between, or two journal lines could carry the same sequence.
 * Returns 1 if it repaired, 0 if pid did not hold the lock.
 */
int	 keystore_repair(struct keystore *, pid_t, pid_t);

/*
 * The rate limiter's state of slot (ratelimit.h) at now (monotonic ms),
 * from the active rate table: the slot's entry, its last use set to now;
 * or, with create, a new one with empty windows.  NULL when the slot has
 * none and create is 0, or the table has no idle entry (kh_afull counts
 * those).  keystore_rate_peek() only looks (no write), for showing a
 * key's windows.  keystore_rate_prefetch() starts loading the entry the
 * slot points at, its word and its windows at once, without waiting to
 * learn whether the slot still owns it (a wrong guess costs a few loads);
 * keystore_find_digest() calls it on every candidate slot, before reading
 * the slot's chunk.  Any worker, no lock.
 */
struct rl_state *keystore_rate(struct keystore *, uint32_t, int64_t, int);
/* The standing allowance's counter (cllimit.c) of a state keystore_rate()
 * gave: as long-lived, zeroed with it when another key takes it. */
struct rl_standing *keystore_standing(struct keystore *,
	    const struct rl_state *);
const struct rl_state *keystore_rate_peek(const struct keystore *, uint32_t);
void	 keystore_rate_prefetch(const struct keystore *, uint32_t);

/*
 * The active rate table: entries handed out so far (its high-water mark),
 * requests refused because it was full, idle entries taken for another
 * key.  For /metrics.
 */
void	 keystore_rate_stats(const struct keystore *, uint32_t *, uint64_t *,
	    uint64_t *);

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
