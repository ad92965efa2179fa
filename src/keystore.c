/*
 * The key store (see keystore.h): key records in seqlocked slots of a
 * shared-memory region, found through two open-addressing indexes (by
 * secret digest and by public id) that readers probe without a lock.
 * Writers are serialised by a lock word holding the owner's pid and can
 * be killed at any instruction: keystore_repair() puts things right.
 */

#include <sys/types.h>

#include <errno.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "keystore.h"

#define KS_MAGIC	0x31305354454b474bULL	/* "KGKETS01" */

#define KS_EMPTY	0ULL	/* index entry never used */
#define KS_TOMB		1ULL	/* index entry deleted */

#define KS_IDX_DIGEST	0
#define KS_IDX_ID	1

#define KS_SPINS	100000	/* seqlock retries before KS_BUSY */
#define KS_SPINS_HOT	256	/* busy-wait this many, then sched_yield() */
#define KS_GEN_RETRIES	1000	/* lookups restarted by area flips */
#define KS_LOCK_STEP	100	/* us: first sleep between lock attempts */
#define KS_LOCK_STEP_MAX 1000	/* us: the sleep doubles up to this */
/* Longest id a record can hold: k_id less its terminating NUL. */
#define KS_ID_HASHED	(sizeof(((struct ks_key *)NULL)->k_id) - 1)

#if defined(__x86_64__) || defined(__i386__)
#define KS_CPU_RELAX()	__builtin_ia32_pause()
#elif defined(__aarch64__)
#define KS_CPU_RELAX()	__asm__ __volatile__("yield" ::: "memory")
#else
#define KS_CPU_RELAX()	__asm__ __volatile__("" ::: "memory")
#endif

/* Byte offsets of the parts of a region, each 64-byte aligned. */
struct ks_layout {
	size_t	 l_slots;
	size_t	 l_free;
	size_t	 l_dindex;
	size_t	 l_iindex;
	size_t	 l_rate;
	size_t	 l_size;
};

/* n rounded up to a multiple of 64. */
static size_t
align64(size_t n)
{
	return ((n + 63) & ~(size_t)63);
}

/* The smallest power of two >= n, at least 16. */
static uint32_t
pow2_at_least(uint64_t n)
{
	uint64_t	 p = 16;

	while (p < n)
		p <<= 1;
	return ((uint32_t)p);
}

/* Where each part of a region lies (sizes computed in size_t: no wrap). */
static void
ks_layout(uint32_t max_keys, uint32_t nd, uint32_t ni, struct ks_layout *l)
{
	l->l_slots = align64(sizeof(struct ks_header));
	l->l_free = l->l_slots + align64((size_t)max_keys *
	    sizeof(struct ks_slot));
	l->l_dindex = l->l_free + align64((size_t)max_keys * sizeof(uint32_t));
	l->l_iindex = l->l_dindex + align64((size_t)2 * nd * sizeof(uint64_t));
	l->l_rate = l->l_iindex + align64((size_t)2 * ni * sizeof(uint64_t));
	l->l_size = l->l_rate + (size_t)max_keys * sizeof(struct rl_state);
}

/* Bytes of region needed for max_keys keys. */
size_t
keystore_size(uint32_t max_keys)
{
	struct ks_layout	 l;

	ks_layout(max_keys, pow2_at_least(3ULL * max_keys),
	    pow2_at_least(2ULL * max_keys), &l);
	return (l.l_size);
}

/*
 * Fill ks with pointers into a region formatted for max_keys.  The layout
 * is computed from max_keys exactly as keystore_init() computed it, not
 * read from the header, which any process mapping the region can write.
 */
void
keystore_attach(struct keystore *ks, void *region, uint32_t max_keys)
{
	char			*base = region;
	struct ks_layout	 l;

	ks->ks_max_keys = max_keys;
	ks->ks_ndindex = pow2_at_least(3ULL * max_keys);
	ks->ks_niindex = pow2_at_least(2ULL * max_keys);
	ks_layout(max_keys, ks->ks_ndindex, ks->ks_niindex, &l);
	ks->ks_hdr = region;
	ks->ks_slots = (struct ks_slot *)(base + l.l_slots);
	ks->ks_free = (uint32_t *)(base + l.l_free);
	ks->ks_dindex = (uint64_t *)(base + l.l_dindex);
	ks->ks_iindex = (uint64_t *)(base + l.l_iindex);
	ks->ks_rate = (struct rl_state *)(base + l.l_rate);
}

/*
 * Format a zeroed region: every slot free (the stack is filled so that pops
 * hand out slot 0 first), both index areas empty (zero).  Only the header
 * and the free stack are written, so untouched pages of a large region
 * stay unallocated.
 */
void
keystore_init(struct keystore *ks, void *region, uint32_t max_keys,
    uint64_t seed)
{
	struct ks_header	*hdr = region;
	uint32_t		 i;

	memset(hdr, 0, sizeof(*hdr));
	hdr->kh_magic = KS_MAGIC;
	hdr->kh_max_keys = max_keys;
	hdr->kh_ndindex = pow2_at_least(3ULL * max_keys);
	hdr->kh_niindex = pow2_at_least(2ULL * max_keys);
	hdr->kh_seed = seed;
	keystore_attach(ks, region, max_keys);
	for (i = 0; i < max_keys; i++)
		ks->ks_free[i] = max_keys - 1 - i;
	hdr->kh_nfree = max_keys;
}

/* kh_hiwater, clamped to the slots this handle knows exist. */
static uint32_t
ks_hiwater(const struct keystore *ks)
{
	uint32_t	 hw;

	hw = __atomic_load_n(&ks->ks_hdr->kh_hiwater, __ATOMIC_ACQUIRE);
	return (hw < ks->ks_max_keys ? hw : ks->ks_max_keys);
}

/* kh_nfree, clamped to the size of the free stack. */
static uint32_t
ks_nfree(const struct keystore *ks)
{
	uint32_t	 n = ks->ks_hdr->kh_nfree;

	return (n < ks->ks_max_keys ? n : ks->ks_max_keys);
}

/* Index hash of a digest: its first 8 bytes (SHA-256 output is uniform). */
static uint64_t
hash_digest(const uint8_t *digest)
{
	uint64_t	 h;

	memcpy(&h, digest, sizeof(h));
	return (h);
}

/* The splitmix64 finaliser: every input bit affects every output bit. */
static uint64_t
mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return (x);
}

/*
 * Index hash of an id: FNV-1a started from a state derived from the seed,
 * then the length and the seed mixed in by splitmix64, so that ids which
 * differ in a few characters (the journal may hold any id) still spread
 * over the whole table, and the layout differs from store to store.
 * At most KS_ID_HASHED bytes are read, whether or not a NUL comes: a
 * stored id is never longer (key_terminate()), so an id that is longer
 * hashes like its first KS_ID_HASHED bytes and is then told apart by the
 * full comparison in key_matches().
 */
static uint64_t
hash_id(uint64_t seed, const char *id)
{
	const unsigned char	*p = (const unsigned char *)id;
	uint64_t		 h = 0xcbf29ce484222325ULL ^ mix64(seed);
	uint64_t		 n = 0;

	for (; n < KS_ID_HASHED && *p != '\0'; p++, n++) {
		h ^= *p;
		h *= 0x100000001b3ULL;
	}
	return (mix64(h ^ mix64(seed + n)));
}

/*
 * The index entry for hash h and slot: tag (high 32 bits of h, never 0)
 * << 32 | slot + 1.  Since the tag is non-zero the entry is >= 2^32, so it
 * is never mistaken for KS_EMPTY (0) or KS_TOMB (1).  The probe position
 * uses the low bits of h (areas have at most 2^32 entries), the tag the
 * high ones, so the tag still filters entries that share a position.
 */
static uint64_t
entry_make(uint64_t h, uint32_t slot)
{
	uint64_t	 tag = h >> 32;

	if (tag == 0)
		tag = 1;
	return (tag << 32 | ((uint64_t)slot + 1));
}

/* The entries of index which (KS_IDX_*) in area; their number in *n. */
static uint64_t *
index_area(const struct keystore *ks, int which, uint32_t area, uint32_t *n)
{
	if (which == KS_IDX_DIGEST) {
		*n = ks->ks_ndindex;
		return (ks->ks_dindex + (size_t)(area & 1) * *n);
	}
	*n = ks->ks_niindex;
	return (ks->ks_iindex + (size_t)(area & 1) * *n);
}

/* The digests key is indexed under (1 or 2) in d; their number. */
static int
key_digests(const struct ks_key *key, const uint8_t *d[2])
{
	d[0] = key->k_digest;
	if (key->k_grace_until == 0 ||
	    memcmp(key->k_old_digest, key->k_digest, KS_DIGEST_LEN) == 0)
		return (1);
	d[1] = key->k_old_digest;
	return (2);
}

/*
 * NUL-terminate every string of key, a copy of a record.  Any process
 * mapping the segment can fill a slot's strings to the brim: a copy is
 * terminated before anything (strlen, strcmp, "%s", hash_id) reads it as
 * a string, so such a record can be wrong, never make a reader (the
 * master is root) run past the field, the copy or the segment.
 */
static void
key_terminate(struct ks_key *key)
{
	key->k_id[sizeof(key->k_id) - 1] = '\0';
	key->k_prefix[sizeof(key->k_prefix) - 1] = '\0';
	key->k_hint[sizeof(key->k_hint) - 1] = '\0';
	key->k_name[sizeof(key->k_name) - 1] = '\0';
	key->k_owner[sizeof(key->k_owner) - 1] = '\0';
	key->k_app[sizeof(key->k_app) - 1] = '\0';
	key->k_scopes[sizeof(key->k_scopes) - 1] = '\0';
}

/*
 * Seqlock read: copy slot s's record (strings terminated) and live flag.
 *
 * The writer (slot_write) makes s_seq odd, issues a release fence, writes
 * the record, and stores the next even s_seq with release semantics.  The
 * reader loads s_seq with acquire (nothing below moves above it), copies,
 * issues an acquire fence (the copy cannot move below it) and reloads
 * s_seq.  If the copy read any byte of a write in progress, the acquire
 * fence pairs with the writer's release fence, so the reload sees the odd
 * value or a later one and the copy is thrown away; if both loads return
 * the same even value, no write overlapped the copy.  (This is the Linux
 * seqcount protocol; the copy itself is a plain memcpy, whose racing
 * bytes are never used.)  A 32-bit sequence only wraps after 2^31 writes
 * to one slot during a single copy.  A slot that stays odd belongs to a
 * writer that died: after KS_SPINS tries, yielding the CPU after the
 * first KS_SPINS_HOT so that a preempted writer can finish, KS_BUSY tells
 * the caller to retry after the master's repair.
 */
static int
slot_read(const struct ks_slot *s, struct ks_key *key, uint32_t *live)
{
	uint32_t	 seq, i;

	for (i = 0; i < KS_SPINS; i++) {
		seq = __atomic_load_n(&s->s_seq, __ATOMIC_ACQUIRE);
		if ((seq & 1) == 0) {
			*live = __atomic_load_n(&s->s_live, __ATOMIC_RELAXED);
			memcpy(key, &s->s_key, sizeof(*key));
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			if (__atomic_load_n(&s->s_seq, __ATOMIC_RELAXED) ==
			    seq) {
				key_terminate(key);
				return (KS_OK);
			}
		}
		if (i < KS_SPINS_HOT)
			KS_CPU_RELAX();
		else
			sched_yield();
	}
	return (KS_BUSY);
}

/*
 * Seqlock write (lock held): s_seq odd, release fence so that the odd value
 * is visible before any byte of the record, the record (zeroed when key is
 * NULL), then the next even value with release.  Starting from seq | 1
 * also closes a sequence left odd by a writer that died.
 */
static void
slot_write(struct ks_slot *s, uint32_t live, const struct ks_key *key)
{
	uint32_t	 seq;

	seq = __atomic_load_n(&s->s_seq, __ATOMIC_RELAXED) | 1;
	__atomic_store_n(&s->s_seq, seq, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&s->s_live, live, __ATOMIC_RELAXED);
	if (key != NULL)
		memcpy(&s->s_key, key, sizeof(s->s_key));
	else
		memset(&s->s_key, 0, sizeof(s->s_key));
	__atomic_store_n(&s->s_seq, seq + 1, __ATOMIC_RELEASE);
}

/* Whether a record copied from a live slot is the one wanted. */
static int
key_matches(int which, const struct ks_key *key, const void *want, int *old)
{
	const uint8_t	*digest = want;

	if (which == KS_IDX_ID)
		return (strcmp(key->k_id, want) == 0);
	if (CRYPTO_memcmp(digest, key->k_digest, KS_DIGEST_LEN) == 0) {
		*old = 0;
		return (1);
	}
	if (key->k_grace_until != 0 &&
	    CRYPTO_memcmp(digest, key->k_old_digest, KS_DIGEST_LEN) == 0) {
		*old = 1;
		return (1);
	}
	return (0);
}

/*
 * Probe one area of index which for hash h: linear probing from h's
 * position to the first empty entry.  Entries whose tag matches point at
 * candidate slots, which are read under their seqlock and confirmed
 * against want, so a stale entry only costs a probe.  A candidate that
 * stays mid-write is skipped; if nothing else matches the answer is
 * KS_BUSY rather than a false KS_NOTFOUND.  The loop is bounded by the
 * area size in case the area is being rebuilt under our feet.
 */
static int
index_probe(const struct keystore *ks, int which, uint32_t area, uint64_t h,
    const void *want, struct ks_key *key, uint32_t *slotp, int *old)
{
	const uint64_t	*tab;
	uint64_t	 e, tag = entry_make(h, 0) >> 32;
	uint32_t	 n, pos, i, s, live;
	int		 busy = 0;

	tab = index_area(ks, which, area, &n);
	for (i = 0, pos = h & (n - 1); i < n; i++, pos = (pos + 1) & (n - 1)) {
		e = __atomic_load_n(&tab[pos], __ATOMIC_ACQUIRE);
		if (e == KS_EMPTY)
			break;
		if (e == KS_TOMB || (e >> 32) != tag)
			continue;
		s = (uint32_t)e - 1;
		if (s >= ks->ks_max_keys)
			continue;
		if (slot_read(&ks->ks_slots[s], key, &live) != KS_OK) {
			busy = 1;
			continue;
		}
		if (live && key_matches(which, key, want, old)) {
			*slotp = s;
			return (KS_OK);
		}
	}
	return (busy ? KS_BUSY : KS_NOTFOUND);
}

/*
 * Lock-free lookup in the active area.  A rebuild writes the inactive
 * area, then flips kh_area and increments kh_index_gen (release, in that
 * order); the next rebuild clears and refills the area this reader may
 * still be probing.  Every index entry is stored with release and loaded
 * with acquire, so a reader that saw any entry written by a later rebuild
 * also sees the kh_index_gen increment that preceded it.  Hence: nothing
 * found and kh_index_gen unchanged means the area probed was complete
 * (and active) throughout; otherwise look again.  A hit is always valid
 * since it was confirmed against the record.
 */
static int
index_find(const struct keystore *ks, int which, uint64_t h, const void *want,
    struct ks_key *key, uint32_t *slotp, int *old)
{
	const struct ks_header	*hdr = ks->ks_hdr;
	uint32_t		 gen, area, i;
	int			 r;

	for (i = 0; i < KS_GEN_RETRIES; i++) {
		gen = __atomic_load_n(&hdr->kh_index_gen, __ATOMIC_ACQUIRE);
		area = __atomic_load_n(&hdr->kh_area, __ATOMIC_ACQUIRE);
		r = index_probe(ks, which, area, h, want, key, slotp, old);
		if (r == KS_OK)
			return (r);
		if (__atomic_load_n(&hdr->kh_index_gen, __ATOMIC_ACQUIRE) ==
		    gen)
			return (r);
	}
	return (KS_BUSY);
}

/* Lock-free lookup by secret digest. */
int
keystore_find_digest(const struct keystore *ks, const uint8_t *digest,
    struct ks_key *key, uint32_t *slot, int *old)
{
	uint32_t	 s;
	int		 o = 0, r;

	r = index_find(ks, KS_IDX_DIGEST, hash_digest(digest), digest, key,
	    &s, &o);
	if (r == KS_OK) {
		if (slot != NULL)
			*slot = s;
		if (old != NULL)
			*old = o;
	}
	return (r);
}

/* Lock-free lookup by public id. */
int
keystore_find_id(const struct keystore *ks, const char *id,
    struct ks_key *key, uint32_t *slot)
{
	uint32_t	 s;
	int		 o, r;

	r = index_find(ks, KS_IDX_ID, hash_id(ks->ks_hdr->kh_seed, id), id,
	    key, &s, &o);
	if (r == KS_OK && slot != NULL)
		*slot = s;
	return (r);
}

/*
 * The next live key at or after *cursor.  A slot that stays mid-write
 * (its writer died) gives KS_BUSY with *cursor left on it, so that the
 * caller can resume there instead of silently missing a key.
 */
int
keystore_next(const struct keystore *ks, uint32_t *cursor, struct ks_key *key,
    uint32_t *slot)
{
	const struct ks_slot	*s;
	uint32_t		 i, live, max;

	max = ks_hiwater(ks);
	for (i = *cursor; i < max; i++) {
		s = &ks->ks_slots[i];
		if (__atomic_load_n(&s->s_live, __ATOMIC_RELAXED) == 0 &&
		    (__atomic_load_n(&s->s_seq, __ATOMIC_RELAXED) & 1) == 0)
			continue;
		if (slot_read(s, key, &live) != KS_OK) {
			*cursor = i;
			return (KS_BUSY);
		}
		if (live) {
			if (slot != NULL)
				*slot = i;
			*cursor = i + 1;
			return (KS_OK);
		}
	}
	*cursor = max;
	return (KS_NOTFOUND);
}

/* Number of keys. */
uint32_t
keystore_count(const struct keystore *ks)
{
	return (__atomic_load_n(&ks->ks_hdr->kh_nlive, __ATOMIC_RELAXED));
}

/* Monotonic clock in microseconds (lock timeouts). */
static int64_t
mono_us(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

/*
 * Take the writer lock: CAS kh_lock from 0 to pid (acquire, so the new
 * owner sees everything the previous one wrote before its release), else
 * sleep 100 us, doubling up to 1 ms, until timeout_ms has passed.
 */
int
keystore_lock(struct keystore *ks, pid_t pid, int timeout_ms)
{
	struct timespec	 ts;
	int64_t		 deadline, now, step = KS_LOCK_STEP;
	int32_t		 expect;

	deadline = mono_us() + (int64_t)(timeout_ms > 0 ? timeout_ms : 0) *
	    1000;
	for (;;) {
		expect = 0;
		if (__atomic_compare_exchange_n(&ks->ks_hdr->kh_lock, &expect,
		    (int32_t)pid, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
			return (KS_OK);
		if ((now = mono_us()) >= deadline)
			return (KS_TIMEOUT);
		if (step > deadline - now)
			step = deadline - now;
		ts.tv_sec = 0;
		ts.tv_nsec = (long)step * 1000;
		while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
			;
		if ((step *= 2) > KS_LOCK_STEP_MAX)
			step = KS_LOCK_STEP_MAX;
	}
}

/* Release the lock if pid holds it (release: our writes become visible). */
void
keystore_unlock(struct keystore *ks, pid_t pid)
{
	int32_t	 expect = (int32_t)pid;

	__atomic_compare_exchange_n(&ks->ks_hdr->kh_lock, &expect, 0, 0,
	    __ATOMIC_RELEASE, __ATOMIC_RELAXED);
}

/*
 * Writer: add entry e (for hash h) to an area of n entries unless it is
 * already on h's probe path; reuse the first tombstone on the path, else
 * take the empty entry that ends it.  Returns 1 when an empty entry was
 * used (one more entry counted in kh_dused/kh_iused), else 0.  Callers
 * keep every area at most 3/4 used, so the path always ends.  Entries
 * are stored with release: see index_find().
 */
static uint32_t
index_insert(uint64_t *tab, uint32_t n, uint64_t h, uint64_t e)
{
	uint32_t	 i, pos, tomb = UINT32_MAX;
	uint64_t	 cur;

	for (i = 0, pos = h & (n - 1); i < n; i++, pos = (pos + 1) & (n - 1)) {
		cur = tab[pos];
		if (cur == e)
			return (0);
		if (cur == KS_EMPTY)
			break;
		if (cur == KS_TOMB && tomb == UINT32_MAX)
			tomb = pos;
	}
	if (tomb != UINT32_MAX) {
		__atomic_store_n(&tab[tomb], e, __ATOMIC_RELEASE);
		return (0);
	}
	if (i == n)
		return (0);	/* unreachable: the area is never full */
	__atomic_store_n(&tab[pos], e, __ATOMIC_RELEASE);
	return (1);
}

/*
 * Writer: turn every copy of entry e on h's probe path into a tombstone.
 * Never an empty entry: that would cut the probe paths of other keys.
 */
static void
index_remove(uint64_t *tab, uint32_t n, uint64_t h, uint64_t e)
{
	uint32_t	 i, pos;

	for (i = 0, pos = h & (n - 1); i < n; i++, pos = (pos + 1) & (n - 1)) {
		if (tab[pos] == KS_EMPTY)
			break;
		if (tab[pos] == e)
			__atomic_store_n(&tab[pos], KS_TOMB, __ATOMIC_RELEASE);
	}
}

/* Writer: index key (in slot) in area; count the new entries used. */
static void
index_add_key(struct keystore *ks, uint32_t area, uint32_t slot,
    const struct ks_key *key, uint32_t *dused, uint32_t *iused)
{
	const uint8_t	*d[2];
	uint64_t	*tab, h;
	uint32_t	 n;
	int		 nd, i;

	tab = index_area(ks, KS_IDX_DIGEST, area, &n);
	nd = key_digests(key, d);
	for (i = 0; i < nd; i++) {
		h = hash_digest(d[i]);
		*dused += index_insert(tab, n, h, entry_make(h, slot));
	}
	tab = index_area(ks, KS_IDX_ID, area, &n);
	h = hash_id(ks->ks_hdr->kh_seed, key->k_id);
	*iused += index_insert(tab, n, h, entry_make(h, slot));
}

/*
 * Writer: tombstone the digests prev (the old record of slot) had and key
 * (its new record) has not.  Two digests of one slot whose tags are equal
 * have equal entries, which may be shared; such an entry is left alone (a
 * stale entry costs a probe, a missing one would hide the key).
 */
static void
index_drop_digests(struct keystore *ks, uint32_t area, uint32_t slot,
    const struct ks_key *prev, const struct ks_key *key)
{
	const uint8_t	*pd[2], *kd[2];
	uint64_t	*tab, h, e;
	uint32_t	 n;
	int		 np, nk, i, j, keep;

	tab = index_area(ks, KS_IDX_DIGEST, area, &n);
	np = key_digests(prev, pd);
	nk = key != NULL ? key_digests(key, kd) : 0;
	for (i = 0; i < np; i++) {
		h = hash_digest(pd[i]);
		e = entry_make(h, slot);
		for (keep = 0, j = 0; j < nk; j++)
			if (entry_make(hash_digest(kd[j]), slot) == e)
				keep = 1;
		if (!keep)
			index_remove(tab, n, h, e);
	}
}

/*
 * Writer: copy into dst the fields of src that index_add_key() reads (the
 * digests, the grace period, the id, terminated); not the rest, which
 * would cost a rebuild of a large store several times the work.
 */
static void
key_index_copy(struct ks_key *dst, const struct ks_key *src)
{
	memcpy(dst->k_digest, src->k_digest, sizeof(dst->k_digest));
	memcpy(dst->k_old_digest, src->k_old_digest,
	    sizeof(dst->k_old_digest));
	dst->k_grace_until = src->k_grace_until;
	memcpy(dst->k_id, src->k_id, sizeof(dst->k_id));
	dst->k_id[sizeof(dst->k_id) - 1] = '\0';
}

/*
 * Writer: rebuild both indexes from the records into the inactive area,
 * which drops every tombstone, then flip kh_area and increment
 * kh_index_gen (both release; see index_find() for why readers never miss
 * a key).  kh_index_gen is also incremented before the inactive area is
 * cleared, and the clearing stores are release stores: a reader still
 * probing that area from before the previous flip, if it sees any of
 * them, also sees the new generation and looks again (this holds even if
 * a writer died between a flip and its increment).
 */
static void
index_rebuild(struct keystore *ks)
{
	struct ks_header	*hdr = ks->ks_hdr;
	struct ks_key		 k;
	uint64_t		*tab;
	uint32_t		 area, n, i, s, dused = 0, iused = 0;
	int			 which;

	area = (hdr->kh_area & 1) ^ 1;
	__atomic_store_n(&hdr->kh_index_gen, hdr->kh_index_gen + 1,
	    __ATOMIC_RELEASE);
	for (which = KS_IDX_DIGEST; which <= KS_IDX_ID; which++) {
		tab = index_area(ks, which, area, &n);
		for (i = 0; i < n; i++)
			__atomic_store_n(&tab[i], KS_EMPTY, __ATOMIC_RELEASE);
	}
	for (s = 0, n = ks_hiwater(ks); s < n; s++) {
		if (!ks->ks_slots[s].s_live)
			continue;
		/*
		 * From a copy of what the indexes use: the slot's k_id may
		 * lack its NUL (only the copy is hashed).
		 */
		key_index_copy(&k, &ks->ks_slots[s].s_key);
		index_add_key(ks, area, s, &k, &dused, &iused);
	}
	__atomic_store_n(&hdr->kh_area, area, __ATOMIC_RELEASE);
	__atomic_store_n(&hdr->kh_index_gen, hdr->kh_index_gen + 1,
	    __ATOMIC_RELEASE);
	hdr->kh_dused = dused;
	hdr->kh_iused = iused;
	hdr->kh_rebuilds++;
}

/* Whether nd more digest and ni more id entries keep both areas <= 3/4. */
static int
index_fits(const struct keystore *ks, uint32_t nd, uint32_t ni)
{
	const struct ks_header	*hdr = ks->ks_hdr;

	return ((uint64_t)hdr->kh_dused + nd <= ks->ks_ndindex / 4 * 3 &&
	    (uint64_t)hdr->kh_iused + ni <= ks->ks_niindex / 4 * 3);
}

/*
 * Writer: the slot for key (its own if the id exists, else the next free
 * one), or KS_EXISTS if one of its digests belongs to another key, or
 * KS_FULL if no slot is free.
 */
static int
put_slot(struct keystore *ks, const struct ks_key *key, uint32_t *slotp,
    int *isnew)
{
	struct ks_key		 tmp;
	const uint8_t		*d[2];
	uint32_t		 other;
	int			 nd, i, old;

	*slotp = UINT32_MAX;
	*isnew = keystore_find_id(ks, key->k_id, &tmp, slotp) != KS_OK;
	nd = key_digests(key, d);
	for (i = 0; i < nd; i++)
		if (keystore_find_digest(ks, d[i], &tmp, &other, &old) ==
		    KS_OK && (*isnew || other != *slotp))
			return (KS_EXISTS);
	if (*isnew) {
		/* A free stack entry out of range is damage: treat as full. */
		if (ks_nfree(ks) == 0 ||
		    (*slotp = ks->ks_free[ks_nfree(ks) - 1]) >= ks->ks_max_keys)
			return (KS_FULL);
	}
	return (KS_OK);
}

/*
 * Writer: save slot in kh_undo, then publish kh_undo_slot (release), before
 * the slot is touched; keystore_repair() restores it if we die.
 */
static void
undo_save(struct keystore *ks, uint32_t slot)
{
	struct ks_header	*hdr = ks->ks_hdr;
	struct ks_slot		*s = &ks->ks_slots[slot];

	hdr->kh_undo.s_seq = s->s_seq;
	hdr->kh_undo.s_live = s->s_live;
	memcpy(&hdr->kh_undo.s_key, &s->s_key, sizeof(s->s_key));
	__atomic_store_n(&hdr->kh_undo_slot, slot + 1, __ATOMIC_RELEASE);
}

/* Writer: a copy of key with every string NUL-terminated. */
static void
key_copy(struct ks_key *dst, const struct ks_key *src)
{
	memcpy(dst, src, sizeof(*dst));
	key_terminate(dst);
}

/*
 * Zero a new key's rate state before the key becomes visible.  Requests
 * of the slot's previous key that were looked up before its deletion may
 * still add a unit or two; those expire with their bucket (60 s at most)
 * and can only make the new key's limit stricter, never looser.
 */
static void
rate_clear(struct rl_state *st)
{
	int	 w, i;

	for (w = 0; w < RL_WINDOWS; w++)
		for (i = 0; i < RL_SLOTS; i++)
			__atomic_store_n(&st->rl_slot[w][i], 0,
			    __ATOMIC_RELAXED);
}

/*
 * Insert or replace a key (lock held).  Order, for readers and for a death
 * at any point: all checks and any rebuild first (nothing changed yet);
 * the undo copy; the record under its seqlock; then the new index entries
 * (published after the record, so a reader following one sees the whole
 * record); then tombstones for digests the key no longer has; then the
 * counters; the undo slot cleared (the change is now kept by a repair);
 * and only then kh_applied.  A death between those last two leaves
 * kh_applied one behind a change that is in place, which the journal
 * replay harmlessly applies again; the other order would let repair undo
 * a change that kh_applied already covers, and the replay would skip it.
 */
int
keystore_put(struct keystore *ks, const struct ks_key *key, uint64_t seq)
{
	struct ks_header	*hdr = ks->ks_hdr;
	struct ks_slot		*s;
	struct ks_key		 k;
	const uint8_t		*d[2];
	uint32_t		 slot = 0;
	int			 i;
	int			 isnew, r;

	key_copy(&k, key);
	if ((r = put_slot(ks, &k, &slot, &isnew)) != KS_OK)
		return (r);
	if (!index_fits(ks, key_digests(&k, d), isnew)) {
		index_rebuild(ks);
		if (!index_fits(ks, key_digests(&k, d), isnew))
			return (KS_FULL);
	}
	s = &ks->ks_slots[slot];
	undo_save(ks, slot);
	if (isnew) {
		hdr->kh_nfree = ks_nfree(ks) - 1;
		if (slot >= hdr->kh_hiwater)	/* before the slot is written */
			__atomic_store_n(&hdr->kh_hiwater, slot + 1,
			    __ATOMIC_RELEASE);
		__atomic_store_n(&s->s_allowed, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&s->s_refused, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&s->s_limited, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&s->s_last_used, 0, __ATOMIC_RELAXED);
		/* The history baselines follow, so the new key starts at 0. */
		for (i = 0; i < KS_NCOUNTS; i++)
			__atomic_store_n(&s->s_base[i], 0, __ATOMIC_RELAXED);
		rate_clear(&ks->ks_rate[slot]);
	}
	slot_write(s, 1, &k);
	index_add_key(ks, hdr->kh_area, slot, &k, &hdr->kh_dused,
	    &hdr->kh_iused);
	if (!isnew)
		index_drop_digests(ks, hdr->kh_area, slot, &hdr->kh_undo.s_key,
		    &k);
	else
		__atomic_store_n(&hdr->kh_nlive, hdr->kh_nlive + 1,
		    __ATOMIC_RELAXED);
	__atomic_store_n(&hdr->kh_undo_slot, 0, __ATOMIC_RELEASE);
	hdr->kh_applied = seq;
	return (KS_OK);
}

/* The rate state of slot. */
struct rl_state *
keystore_rate(const struct keystore *ks, uint32_t slot)
{
	return (&ks->ks_rate[slot]);
}

/*
 * Delete a key (lock held): tombstone its entries first, so that no new
 * reader reaches the slot, then mark the slot free under its seqlock (a
 * reader already holding an entry sees s_live 0), then push it on the
 * free stack.  An unknown id still records seq: the operation is applied
 * (it changes nothing), and kh_applied stays the journal's last sequence.
 */
int
keystore_del(struct keystore *ks, const char *id, uint64_t seq)
{
	struct ks_header	*hdr = ks->ks_hdr;
	struct ks_key		 k;
	uint64_t		*tab, h;
	uint32_t		 slot, n;

	if (keystore_find_id(ks, id, &k, &slot) != KS_OK) {
		hdr->kh_applied = seq;
		return (KS_NOTFOUND);
	}
	undo_save(ks, slot);
	index_drop_digests(ks, hdr->kh_area, slot, &k, NULL);
	tab = index_area(ks, KS_IDX_ID, hdr->kh_area, &n);
	h = hash_id(hdr->kh_seed, k.k_id);
	index_remove(tab, n, h, entry_make(h, slot));
	slot_write(&ks->ks_slots[slot], 0, NULL);
	if (ks_nfree(ks) < ks->ks_max_keys)
		ks->ks_free[ks_nfree(ks)] = slot;
	hdr->kh_nfree = ks_nfree(ks) + (ks_nfree(ks) < ks->ks_max_keys);
	__atomic_store_n(&hdr->kh_nlive, hdr->kh_nlive - 1, __ATOMIC_RELAXED);
	__atomic_store_n(&hdr->kh_undo_slot, 0, __ATOMIC_RELEASE);
	hdr->kh_applied = seq;
	return (KS_OK);
}

/*
 * Repair: close every sequence left odd, recount the live keys and refill
 * the free stack from the records (highest slot pushed first, so slot
 * numbers are handed out lowest first again).
 */
static void
repair_slots(struct keystore *ks)
{
	struct ks_header	*hdr = ks->ks_hdr;
	struct ks_slot		*s;
	uint32_t		 i, seq, nlive = 0, nfree = 0, hw;

	/* At most ks_max_keys pushes in all: the stack cannot overflow. */
	hw = ks_hiwater(ks);
	for (i = ks->ks_max_keys; i-- > hw;)
		ks->ks_free[nfree++] = i;	/* never written */
	for (i = hw; i-- > 0;) {
		s = &ks->ks_slots[i];
		seq = __atomic_load_n(&s->s_seq, __ATOMIC_RELAXED);
		if (seq & 1)
			__atomic_store_n(&s->s_seq, seq + 1, __ATOMIC_RELEASE);
		if (s->s_live)
			nlive++;
		else
			ks->ks_free[nfree++] = i;
	}
	hdr->kh_nfree = nfree;
	__atomic_store_n(&hdr->kh_hiwater, hw, __ATOMIC_RELEASE);
	__atomic_store_n(&hdr->kh_nlive, nlive, __ATOMIC_RELAXED);
}

/*
 * Master, after reaping pid.  The dead writer changed at most the slot it
 * saved in kh_undo (plus index entries, the free stack and counters, all
 * derived from the records).  Restoring that slot under its seqlock ends
 * on an even sequence above any it had, so readers drop copies from
 * before; then everything derived is rebuilt and the lock handed to owner
 * (one release store: no other writer can slip in before owner replays
 * the journal past kh_applied and unlocks).
 */
int
keystore_repair(struct keystore *ks, pid_t pid, pid_t owner)
{
	struct ks_header	*hdr = ks->ks_hdr;
	uint32_t		 us;

	if (pid <= 0 || __atomic_load_n(&hdr->kh_lock, __ATOMIC_ACQUIRE) !=
	    (int32_t)pid)
		return (0);
	us = __atomic_load_n(&hdr->kh_undo_slot, __ATOMIC_ACQUIRE);
	if (us != 0 && us <= ks->ks_max_keys)
		slot_write(&ks->ks_slots[us - 1], hdr->kh_undo.s_live,
		    &hdr->kh_undo.s_key);
	__atomic_store_n(&hdr->kh_undo_slot, 0, __ATOMIC_RELEASE);
	/* Put back what the layout really is, for the workers' sake. */
	hdr->kh_max_keys = ks->ks_max_keys;
	hdr->kh_ndindex = ks->ks_ndindex;
	hdr->kh_niindex = ks->ks_niindex;
	repair_slots(ks);
	index_rebuild(ks);
	__atomic_store_n(&hdr->kh_lock, owner > 0 ? (int32_t)owner : 0,
	    __ATOMIC_RELEASE);
	return (1);
}

/*
 * Count one use of slot.  Relaxed atomics: the counters are statistics, a
 * reader may see them slightly late but never torn; s_last_used only moves
 * forward (a CAS loop, as workers' clocks may disagree by a little).  One
 * counter per outcome, so that a reader never sees half of a use.
 */
void
keystore_count_use(struct keystore *ks, uint32_t slot, int outcome,
    int64_t now)
{
	struct ks_slot	*s;
	int64_t		 last;

	if (slot >= ks->ks_max_keys)
		return;
	s = &ks->ks_slots[slot];
	__atomic_fetch_add(outcome == KS_USE_ALLOWED ? &s->s_allowed :
	    outcome == KS_USE_LIMITED ? &s->s_limited : &s->s_refused, 1,
	    __ATOMIC_RELAXED);
	last = __atomic_load_n(&s->s_last_used, __ATOMIC_RELAXED);
	while (now > last && !__atomic_compare_exchange_n(&s->s_last_used,
	    &last, now, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

/* The usage counters of slot (zero for a slot out of range). */
void
keystore_usage(const struct keystore *ks, uint32_t slot, uint64_t *allowed,
    uint64_t *refused, int64_t *last_used)
{
	const struct ks_slot	*s;

	*allowed = *refused = 0;
	*last_used = 0;
	if (slot >= ks->ks_max_keys)
		return;
	s = &ks->ks_slots[slot];
	*allowed = __atomic_load_n(&s->s_allowed, __ATOMIC_RELAXED);
	*refused = __atomic_load_n(&s->s_refused, __ATOMIC_RELAXED) +
	    __atomic_load_n(&s->s_limited, __ATOMIC_RELAXED);
	*last_used = __atomic_load_n(&s->s_last_used, __ATOMIC_RELAXED);
}

/* Set the counters of slot by KS_C_*, and the baselines (start-up). */
void
keystore_set_counts(struct keystore *ks, uint32_t slot, const uint64_t *c,
    int64_t last_used)
{
	struct ks_slot	*s;

	if (slot >= ks->ks_max_keys)
		return;
	s = &ks->ks_slots[slot];
	__atomic_store_n(&s->s_allowed, c[KS_C_ALLOWED], __ATOMIC_RELAXED);
	__atomic_store_n(&s->s_limited, c[KS_C_LIMITED], __ATOMIC_RELAXED);
	__atomic_store_n(&s->s_refused, c[KS_C_REFUSED], __ATOMIC_RELAXED);
	__atomic_store_n(&s->s_last_used, last_used, __ATOMIC_RELAXED);
	keystore_set_base(ks, slot, c);
}

/* Set the usage counters of slot (start-up, from the usage file). */
void
keystore_set_usage(struct keystore *ks, uint32_t slot, uint64_t allowed,
    uint64_t refused, int64_t last_used)
{
	uint64_t	 c[KS_NCOUNTS];

	c[KS_C_ALLOWED] = allowed;
	c[KS_C_LIMITED] = 0;
	c[KS_C_REFUSED] = refused;
	keystore_set_counts(ks, slot, c, last_used);
}

/* The counters of slot by KS_C_* (zeros for a slot out of range). */
void
keystore_counts(const struct keystore *ks, uint32_t slot, uint64_t *c)
{
	const struct ks_slot	*s;

	c[KS_C_ALLOWED] = c[KS_C_LIMITED] = c[KS_C_REFUSED] = 0;
	if (slot >= ks->ks_max_keys)
		return;
	s = &ks->ks_slots[slot];
	c[KS_C_ALLOWED] = __atomic_load_n(&s->s_allowed, __ATOMIC_RELAXED);
	c[KS_C_LIMITED] = __atomic_load_n(&s->s_limited, __ATOMIC_RELAXED);
	c[KS_C_REFUSED] = __atomic_load_n(&s->s_refused, __ATOMIC_RELAXED);
}

/* The history baselines of slot (zeros for a slot out of range). */
void
keystore_base(const struct keystore *ks, uint32_t slot, uint64_t *b)
{
	int	 i;

	for (i = 0; i < KS_NCOUNTS; i++)
		b[i] = slot < ks->ks_max_keys ? __atomic_load_n(
		    &ks->ks_slots[slot].s_base[i], __ATOMIC_RELAXED) : 0;
}

/* Set the history baselines of slot (the master, at a fold). */
void
keystore_set_base(struct keystore *ks, uint32_t slot, const uint64_t *b)
{
	int	 i;

	if (slot >= ks->ks_max_keys)
		return;
	for (i = 0; i < KS_NCOUNTS; i++)
		__atomic_store_n(&ks->ks_slots[slot].s_base[i], b[i],
		    __ATOMIC_RELAXED);
}
