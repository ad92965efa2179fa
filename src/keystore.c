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

#define KS_MAGIC	0x32305354454b474bULL	/* "KGKETS02" */

#define KS_EMPTY	0U	/* index entry never used */
#define KS_TOMB		1U	/* index entry deleted */

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
	size_t	 l_dindex;
	size_t	 l_iindex;
	size_t	 l_aword;
	size_t	 l_astate;
	size_t	 l_sstate;
	size_t	 l_chunks[KS_NCLASS];
	size_t	 l_size;
};

/*
 * Chunk sizes: multiples of 16 from a header plus a short record (id,
 * hint, a name and an owner) to the longest one (KS_REC_MAX), each about
 * 1.25 to 1.7 times the one before, so a chunk wastes at most about
 * 40 %, typically 15 %.
 */
const uint32_t	 ks_class_size[KS_NCLASS] = {
	64, 80, 96, 128, 176, 256, 384, 640
};

/* Longest record: header, grace end and digest, every string full. */
#define KS_REC_MAX	(sizeof(struct ks_rec) + sizeof(int64_t) + \
	KS_DIGEST_LEN + (KS_ID_LEN + 3) + (KS_PREFIX_MAX + 3) + \
	(KS_HINT_MAX + 3) + (KS_NAME_MAX + 3) + (KS_OWNER_MAX + 3) + \
	(KS_APP_MAX + 3) + KS_SCOPES_MAX)

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

/* Index areas for max_keys: digests 2x (grace periods), ids 1.5x. */
static uint32_t
ndindex_for(uint32_t max_keys)
{
	return (pow2_at_least(2ULL * max_keys));
}

static uint32_t
niindex_for(uint32_t max_keys)
{
	return (pow2_at_least(3ULL * max_keys / 2 + 1));
}

/* Where each part of a region lies (sizes computed in size_t: no wrap). */
static void
ks_layout(uint32_t max_keys, uint32_t max_active, struct ks_layout *l)
{
	size_t	 off, nchunks = (size_t)max_keys + 2;
	int	 c;

	l->l_slots = align64(sizeof(struct ks_header));
	l->l_dindex = l->l_slots + align64((size_t)max_keys *
	    sizeof(struct ks_slot));
	l->l_iindex = l->l_dindex + align64((size_t)2 *
	    ndindex_for(max_keys) * sizeof(uint32_t));
	l->l_aword = l->l_iindex + align64((size_t)2 *
	    niindex_for(max_keys) * sizeof(uint32_t));
	l->l_astate = l->l_aword + align64((size_t)max_active *
	    sizeof(uint64_t));
	l->l_sstate = l->l_astate + align64((size_t)max_active *
	    sizeof(struct rl_state));
	off = l->l_sstate + align64((size_t)max_active *
	    sizeof(struct rl_standing));
	for (c = 0; c < KS_NCLASS; c++) {
		l->l_chunks[c] = off;
		off += align64(nchunks * ks_class_size[c]);
	}
	l->l_size = off;
}

/* Bytes of region needed for max_keys keys and max_active rate states. */
size_t
keystore_size(uint32_t max_keys, uint32_t max_active)
{
	struct ks_layout	 l;

	ks_layout(max_keys, max_active, &l);
	return (l.l_size);
}

/* Bits an index entry needs for slot + 1 (1 ... max_keys). */
static uint32_t
slot_bits(uint32_t max_keys)
{
	uint32_t	 b = 1;

	while (b < 31 && ((uint64_t)1 << b) <= max_keys)
		b++;
	return (b);
}

/*
 * Fill ks with pointers into a region formatted for max_keys and
 * max_active.  The layout is computed from them exactly as
 * keystore_init() computed it, not read from the header, which any
 * process mapping the region can write.
 */
void
keystore_attach(struct keystore *ks, void *region, uint32_t max_keys,
    uint32_t max_active)
{
	char			*base = region;
	struct ks_layout	 l;
	int			 c;

	ks->ks_max_keys = max_keys;
	ks->ks_max_active = max_active;
	ks->ks_nchunks = max_keys + 2;
	ks->ks_ndindex = ndindex_for(max_keys);
	ks->ks_niindex = niindex_for(max_keys);
	ks->ks_slot_bits = slot_bits(max_keys);
	ks_layout(max_keys, max_active, &l);
	ks->ks_hdr = region;
	ks->ks_slots = (struct ks_slot *)(base + l.l_slots);
	ks->ks_dindex = (uint32_t *)(base + l.l_dindex);
	ks->ks_iindex = (uint32_t *)(base + l.l_iindex);
	ks->ks_aword = (uint64_t *)(base + l.l_aword);
	ks->ks_astate = (struct rl_state *)(base + l.l_astate);
	ks->ks_sstate = (struct rl_standing *)(base + l.l_sstate);
	for (c = 0; c < KS_NCLASS; c++)
		ks->ks_chunks[c] = base + l.l_chunks[c];
}

/*
 * Format a zeroed region: no slot, chunk or rate entry used yet (all are
 * handed out by bump counters first), both index areas empty (zero).  Only
 * the header is written, so an empty store costs one page of memory.
 */
void
keystore_init(struct keystore *ks, void *region, uint32_t max_keys,
    uint32_t max_active, uint64_t seed)
{
	struct ks_header	*hdr = region;

	memset(hdr, 0, sizeof(*hdr));
	hdr->kh_magic = KS_MAGIC;
	hdr->kh_max_keys = max_keys;
	hdr->kh_max_active = max_active;
	hdr->kh_ndindex = ndindex_for(max_keys);
	hdr->kh_niindex = niindex_for(max_keys);
	hdr->kh_seed = seed;
	keystore_attach(ks, region, max_keys, max_active);
}

/* kh_hiwater, clamped to the slots this handle knows exist. */
static uint32_t
ks_hiwater(const struct keystore *ks)
{
	uint32_t	 hw;

	hw = __atomic_load_n(&ks->ks_hdr->kh_hiwater, __ATOMIC_ACQUIRE);
	return (hw < ks->ks_max_keys ? hw : ks->ks_max_keys);
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
 * The index entry for hash h and slot: tag << slot_bits | slot + 1, the
 * tag being the top 32 - slot_bits bits of h (never 0).  Since the tag is
 * non-zero the entry is >= 2^slot_bits > 1, so it is never mistaken for
 * KS_EMPTY (0) or KS_TOMB (1).  The probe position uses the low bits of h
 * (areas have at most 2^31 entries), the tag the high ones, so the tag
 * still filters entries that share a position.
 */
static uint32_t
entry_make(const struct keystore *ks, uint64_t h, uint32_t slot)
{
	uint32_t	 tag;

	tag = (uint32_t)(h >> (32 + ks->ks_slot_bits));
	if (tag == 0)
		tag = 1;
	return (tag << ks->ks_slot_bits | (slot + 1));
}

/* The slot of entry e (UINT32_MAX for none), and its tag. */
static uint32_t
entry_slot(const struct keystore *ks, uint32_t e)
{
	return ((e & (((uint32_t)1 << ks->ks_slot_bits) - 1)) - 1);
}

/* The entries of index which (KS_IDX_*) in area; their number in *n. */
static uint32_t *
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

/* The chunk of reference ref, or NULL if ref is out of range. */
static struct ks_rec *
chunk_at(const struct keystore *ks, uint32_t ref)
{
	uint32_t	 c = ref >> KS_REC_IDX_BITS;
	uint32_t	 i = ref & ((1U << KS_REC_IDX_BITS) - 1);

	if (c >= KS_NCLASS || i >= ks->ks_nchunks)
		return (NULL);
	return ((struct ks_rec *)(ks->ks_chunks[c] + (size_t)i *
	    ks_class_size[c]));
}

/* The string fields of a record, by KS_S_*. */
static char *
key_string(struct ks_key *key, int i, size_t *size)
{
	switch (i) {
	case KS_S_ID:
		*size = sizeof(key->k_id);
		return (key->k_id);
	case KS_S_PREFIX:
		*size = sizeof(key->k_prefix);
		return (key->k_prefix);
	case KS_S_HINT:
		*size = sizeof(key->k_hint);
		return (key->k_hint);
	case KS_S_NAME:
		*size = sizeof(key->k_name);
		return (key->k_name);
	case KS_S_OWNER:
		*size = sizeof(key->k_owner);
		return (key->k_owner);
	case KS_S_APP:
		*size = sizeof(key->k_app);
		return (key->k_app);
	default:
		*size = sizeof(key->k_scopes);
		return (key->k_scopes);
	}
}

/*
 * Decode slot s and its chunk into key (every string terminated).  The
 * bytes may be changing under us (the caller checks the seqlock after):
 * each is read once, and every length is clamped to the chunk and to the
 * field, so garbage can make a wrong record, never a read or a write out
 * of bounds.  Any process mapping the segment can write a slot or a
 * chunk: the same clamps keep the master (root) within the region.
 */
static void
slot_decode(const struct keystore *ks, const struct ks_slot *s,
    struct ks_key *key)
{
	const struct ks_rec	*r;
	const char		*p, *end;
	char			*f;
	size_t			 size, n;
	uint32_t		 ref;
	int			 i;

	memset(key, 0, sizeof(*key));	/* one record, one representation */
	memcpy(key->k_digest, s->s_digest, KS_DIGEST_LEN);
	key->k_created = s->s_created;
	key->k_updated = s->s_updated;
	key->k_expires = s->s_expires;
	key->k_flags = s->s_flags & ~KS_SF_LIVE;
	memcpy(key->k_rate, s->s_rate, sizeof(key->k_rate));
	ref = __atomic_load_n(&s->s_rec, __ATOMIC_RELAXED);
	if ((r = chunk_at(ks, ref)) == NULL)
		return;
	p = (const char *)(r + 1);
	end = (const char *)r + ks_class_size[ref >> KS_REC_IDX_BITS];
	if (r->r_u.r_used.r_flags & KS_RF_GRACE) {
		memcpy(&key->k_grace_until, p, sizeof(key->k_grace_until));
		memcpy(key->k_old_digest, p + sizeof(int64_t), KS_DIGEST_LEN);
		p += sizeof(int64_t) + KS_DIGEST_LEN;
	}
	for (i = 0; i < KS_NSTRINGS; i++) {
		f = key_string(key, i, &size);
		n = r->r_u.r_used.r_len[i];
		if (n > size - 1)
			n = size - 1;
		if (n > (size_t)(end - p))
			n = (size_t)(end - p);
		memcpy(f, p, n);
		f[n] = '\0';
		p += n;
	}
}

/*
 * Seqlock read: copy slot s's record (strings terminated) and live flag.
 *
 * The writer (slot_write) makes s_seq odd, issues a release fence, writes
 * the slot, and stores the next even s_seq with release semantics; the
 * chunk it points to was written before and is not written again until
 * a later write of this slot stopped pointing at it.  The reader loads
 * s_seq with acquire (nothing below moves above it), copies, issues an
 * acquire fence (the copy cannot move below it) and reloads s_seq.  If
 * the copy read any byte of a write in progress, the acquire fence pairs
 * with the writer's release fence, so the reload sees the odd value or a
 * later one and the copy is thrown away; if both loads return the same
 * even value, no write overlapped the copy.  (This is the Linux seqcount
 * protocol; the copy itself is plain loads, whose racing bytes are never
 * used.)  A 32-bit sequence only wraps after 2^31 writes to one slot
 * during a single copy.  A slot that stays odd belongs to a writer that
 * died: after KS_SPINS tries, yielding the CPU after the first
 * KS_SPINS_HOT so that a preempted writer can finish, KS_BUSY tells the
 * caller to retry after the master's repair.
 */
static int
slot_read(const struct keystore *ks, const struct ks_slot *s,
    struct ks_key *key, uint32_t *live)
{
	uint32_t	 seq, i;

	for (i = 0; i < KS_SPINS; i++) {
		seq = __atomic_load_n(&s->s_seq, __ATOMIC_ACQUIRE);
		if ((seq & 1) == 0) {
			*live = (__atomic_load_n(&s->s_flags,
			    __ATOMIC_RELAXED) & KS_SF_LIVE) != 0;
			if (*live)
				slot_decode(ks, s, key);
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			if (__atomic_load_n(&s->s_seq, __ATOMIC_RELAXED) ==
			    seq)
				return (KS_OK);
		}
		if (i < KS_SPINS_HOT)
			KS_CPU_RELAX();
		else
			sched_yield();
	}
	return (KS_BUSY);
}

/* Bytes of the seqlocked part of a slot, from s_flags through s_rec. */
#define KS_SLOT_LOCKED	(offsetof(struct ks_slot, s_allowed) - \
	offsetof(struct ks_slot, s_flags))

/*
 * Seqlock write (lock held): s_seq odd, release fence so that the odd value
 * is visible before any byte of the slot, the seqlocked fields copied from
 * src (s_flags through s_rec), then the next even value with release.
 * Starting from seq | 1 also closes a sequence left odd by a writer that
 * died.
 */
static void
slot_write(struct ks_slot *s, const struct ks_slot *src)
{
	uint32_t	 seq;

	seq = __atomic_load_n(&s->s_seq, __ATOMIC_RELAXED) | 1;
	__atomic_store_n(&s->s_seq, seq, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	memcpy(&s->s_flags, &src->s_flags, KS_SLOT_LOCKED);
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
	const uint32_t	*tab;
	uint32_t	 e, tag, bits = ks->ks_slot_bits;
	uint32_t	 n, pos, i, s, live;
	int		 busy = 0;

	tag = entry_make(ks, h, 0) >> bits;
	tab = index_area(ks, which, area, &n);
	for (i = 0, pos = h & (n - 1); i < n; i++, pos = (pos + 1) & (n - 1)) {
		e = __atomic_load_n(&tab[pos], __ATOMIC_ACQUIRE);
		if (e == KS_EMPTY)
			break;
		if (e == KS_TOMB || (e >> bits) != tag)
			continue;
		s = entry_slot(ks, e);
		if (s >= ks->ks_max_keys)
			continue;
		/*
		 * A digest is looked up for a request, whose next want is
		 * the key's rate entry: start loading it now, so that its
		 * cache misses overlap the chunk's in slot_read() instead
		 * of following them.
		 */
		if (which == KS_IDX_DIGEST)
			keystore_rate_prefetch(ks, s);
		if (slot_read(ks, &ks->ks_slots[s], key, &live) != KS_OK) {
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
		if ((__atomic_load_n(&s->s_flags, __ATOMIC_RELAXED) &
		    KS_SF_LIVE) == 0 &&
		    (__atomic_load_n(&s->s_seq, __ATOMIC_RELAXED) & 1) == 0)
			continue;
		if (slot_read(ks, s, key, &live) != KS_OK) {
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
index_insert(uint32_t *tab, uint32_t n, uint64_t h, uint32_t e)
{
	uint32_t	 i, pos, tomb = UINT32_MAX;
	uint32_t	 cur;

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
index_remove(uint32_t *tab, uint32_t n, uint64_t h, uint32_t e)
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
	uint32_t	*tab, n;
	uint64_t	 h;
	int		 nd, i;

	tab = index_area(ks, KS_IDX_DIGEST, area, &n);
	nd = key_digests(key, d);
	for (i = 0; i < nd; i++) {
		h = hash_digest(d[i]);
		*dused += index_insert(tab, n, h, entry_make(ks, h, slot));
	}
	tab = index_area(ks, KS_IDX_ID, area, &n);
	h = hash_id(ks->ks_hdr->kh_seed, key->k_id);
	*iused += index_insert(tab, n, h, entry_make(ks, h, slot));
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
	uint32_t	*tab, n, e;
	uint64_t	 h;
	int		 np, nk, i, j, keep;

	tab = index_area(ks, KS_IDX_DIGEST, area, &n);
	np = key_digests(prev, pd);
	nk = key != NULL ? key_digests(key, kd) : 0;
	for (i = 0; i < np; i++) {
		h = hash_digest(pd[i]);
		e = entry_make(ks, h, slot);
		for (keep = 0, j = 0; j < nk; j++)
			if (entry_make(ks, hash_digest(kd[j]), slot) == e)
				keep = 1;
		if (!keep)
			index_remove(tab, n, h, e);
	}
}

/* Whether slot s holds a key (writer, or anyone for a hint). */
static int
slot_live(const struct ks_slot *s)
{
	return ((__atomic_load_n(&s->s_flags, __ATOMIC_RELAXED) &
	    KS_SF_LIVE) != 0);
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
	uint32_t		*tab;
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
		if (!slot_live(&ks->ks_slots[s]))
			continue;
		slot_decode(ks, &ks->ks_slots[s], &k);
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
 * Writer: the first free slot, from the free list (slots below kh_hiwater
 * that were freed, lowest first), else the next never used one; or
 * UINT32_MAX if none.  A link out of range is damage: the list is then
 * treated as empty until the next repair rebuilds it.
 */
static uint32_t
slot_first_free(const struct keystore *ks)
{
	uint32_t	 f = ks->ks_hdr->kh_free, hw = ks_hiwater(ks);

	if (f != 0 && f <= hw && !slot_live(&ks->ks_slots[f - 1]))
		return (f - 1);
	return (hw < ks->ks_max_keys ? hw : UINT32_MAX);
}

/*
 * Writer: the slot for key (its own if the id exists, else the first free
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
	if (*isnew && (*slotp = slot_first_free(ks)) == UINT32_MAX)
		return (KS_FULL);
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
	memcpy(&hdr->kh_undo.s_flags, &s->s_flags, KS_SLOT_LOCKED);
	__atomic_store_n(&hdr->kh_undo_slot, slot + 1, __ATOMIC_RELEASE);
}

/* Writer: a copy of key with every string NUL-terminated. */
static void
key_copy(struct ks_key *dst, const struct ks_key *src)
{
	memcpy(dst, src, sizeof(*dst));
	key_terminate(dst);
}

/* Bytes of the record of key (header, grace, strings); lengths in len[]. */
static size_t
rec_size(const struct ks_key *key, uint8_t *len)
{
	const uint8_t	*d[2];
	size_t		 size, n = sizeof(struct ks_rec);
	char		*f;
	int		 i;

	if (key_digests(key, d) == 2)
		n += sizeof(int64_t) + KS_DIGEST_LEN;
	for (i = 0; i < KS_NSTRINGS; i++) {
		f = key_string((struct ks_key *)key, i, &size);
		len[i] = (uint8_t)strnlen(f, size - 1);
		n += len[i];
	}
	return (n);
}

/*
 * Writer: take a chunk for key's record, owned by slot, and write the
 * record into it; its reference, or UINT32_MAX if its class has no chunk
 * left (cannot happen: a class holds max_keys + 2 and at most
 * max_keys + 1 are ever referenced or in flight, see keystore.h).  The
 * chunk is not referenced yet: a death here only leaks it until repair.
 */
static uint32_t
chunk_write(struct keystore *ks, uint32_t slot, const struct ks_key *key)
{
	struct ks_header	*hdr = ks->ks_hdr;
	struct ks_rec		*r;
	uint8_t			 len[KS_NSTRINGS];
	const uint8_t		*d[2];
	size_t			 size, n;
	uint32_t		 c, idx, f, ref;
	char			*p, *str;
	int			 i;

	n = rec_size(key, len);
	for (c = 0; c < KS_NCLASS - 1 && ks_class_size[c] < n; c++)
		;
	f = hdr->kh_cfree[c];
	if (f != 0 && f <= ks->ks_nchunks &&
	    f <= hdr->kh_ctop[c] && (r = chunk_at(ks, c << KS_REC_IDX_BITS |
	    (f - 1))) != NULL && r->r_owner == 0) {
		idx = f - 1;
		n = r->r_u.r_next;
		hdr->kh_cfree[c] = n <= ks->ks_nchunks ? n : 0;
	} else if (hdr->kh_ctop[c] < ks->ks_nchunks) {
		idx = hdr->kh_ctop[c];
		hdr->kh_ctop[c] = idx + 1;
	} else
		return (UINT32_MAX);
	ref = c << KS_REC_IDX_BITS | idx;
	r = chunk_at(ks, ref);
	r->r_owner = slot + 1;
	r->r_u.r_used.r_flags = 0;
	memcpy(r->r_u.r_used.r_len, len, sizeof(len));
	p = (char *)(r + 1);
	if (key_digests(key, d) == 2) {
		r->r_u.r_used.r_flags = KS_RF_GRACE;
		memcpy(p, &key->k_grace_until, sizeof(int64_t));
		memcpy(p + sizeof(int64_t), key->k_old_digest, KS_DIGEST_LEN);
		p += sizeof(int64_t) + KS_DIGEST_LEN;
	}
	for (i = 0; i < KS_NSTRINGS; i++) {
		str = key_string((struct ks_key *)key, i, &size);
		memcpy(p, str, len[i]);
		p += len[i];
	}
	return (ref);
}

/* Writer: put the chunk ref back on its class's free list. */
static void
chunk_free(struct keystore *ks, uint32_t ref)
{
	struct ks_header	*hdr = ks->ks_hdr;
	struct ks_rec		*r;
	uint32_t		 c = ref >> KS_REC_IDX_BITS;

	if ((r = chunk_at(ks, ref)) == NULL)
		return;
	r->r_owner = 0;
	r->r_u.r_next = hdr->kh_cfree[c];
	hdr->kh_cfree[c] = (ref & ((1U << KS_REC_IDX_BITS) - 1)) + 1;
}

/*
 * Insert or replace a key (lock held).  Order, for readers and for a death
 * at any point: all checks and any rebuild first (nothing changed yet);
 * the new chunk (unreferenced); the undo copy; the slot under its seqlock,
 * now pointing at the new chunk; then the new index entries (published
 * after the record, so a reader following one sees the whole record);
 * then tombstones for digests the key no longer has; then the counters;
 * the undo slot cleared (the change is now kept by a repair); the old
 * chunk freed (only now: until then a repair may restore the slot that
 * points at it); and only then kh_applied.  A death between the last two
 * leaves kh_applied one behind a change that is in place, which the
 * journal replay harmlessly applies again; the other order would let
 * repair undo a change that kh_applied already covers, and the replay
 * would skip it.
 */
int
keystore_put(struct keystore *ks, const struct ks_key *key, uint64_t seq)
{
	struct ks_header	*hdr = ks->ks_hdr;
	struct ks_slot		*s, n;
	struct ks_key		 k, prev;
	const uint8_t		*d[2];
	uint32_t		 slot = 0, ref, oldref = UINT32_MAX;
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
	if (!isnew) {
		slot_decode(ks, s, &prev);
		oldref = s->s_rec;
	}
	if ((ref = chunk_write(ks, slot, &k)) == UINT32_MAX)
		return (KS_FULL);
	memset(&n, 0, sizeof(n));
	n.s_flags = KS_SF_LIVE | (k.k_flags & ~KS_SF_LIVE);
	memcpy(n.s_digest, k.k_digest, KS_DIGEST_LEN);
	n.s_created = k.k_created;
	n.s_updated = k.k_updated;
	n.s_expires = k.k_expires;
	memcpy(n.s_rate, k.k_rate, sizeof(n.s_rate));
	n.s_rec = ref;
	undo_save(ks, slot);
	if (isnew) {
		/* Off the free list (its link is in s_rec), or above it. */
		if (hdr->kh_free == slot + 1)
			hdr->kh_free = s->s_rec;
		if (slot >= hdr->kh_hiwater)	/* before the slot is written */
			__atomic_store_n(&hdr->kh_hiwater, slot + 1,
			    __ATOMIC_RELEASE);
		__atomic_store_n(&s->s_allowed, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&s->s_refused, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&s->s_limited, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&s->s_last_used, 0, __ATOMIC_RELAXED);
		/* The history baselines follow, so the new key starts at 0. */
		for (r = 0; r < KS_NCOUNTS; r++)
			__atomic_store_n(&s->s_base[r], 0, __ATOMIC_RELAXED);
		/* A new key starts with empty windows: no rate entry yet. */
		__atomic_store_n(&s->s_active, 0, __ATOMIC_RELAXED);
	}
	slot_write(s, &n);
	index_add_key(ks, hdr->kh_area, slot, &k, &hdr->kh_dused,
	    &hdr->kh_iused);
	if (!isnew)
		index_drop_digests(ks, hdr->kh_area, slot, &prev, &k);
	else
		__atomic_store_n(&hdr->kh_nlive, hdr->kh_nlive + 1,
		    __ATOMIC_RELAXED);
	__atomic_store_n(&hdr->kh_undo_slot, 0, __ATOMIC_RELEASE);
	if (oldref != UINT32_MAX)
		chunk_free(ks, oldref);
	hdr->kh_applied = seq;
	return (KS_OK);
}

/*
 * Delete a key (lock held): tombstone its entries first, so that no new
 * reader reaches the slot, then mark the slot free under its seqlock (a
 * reader already holding an entry sees it not live) with the free list's
 * head as its link, make it the head, and free its chunk last (as in
 * keystore_put()).  An unknown id still records seq: the operation is
 * applied (it changes nothing), and kh_applied stays the journal's last
 * sequence.
 */
int
keystore_del(struct keystore *ks, const char *id, uint64_t seq)
{
	struct ks_header	*hdr = ks->ks_hdr;
	struct ks_slot		 n;
	struct ks_key		 k;
	uint32_t		*tab, slot, nent, ref;
	uint64_t		 h;

	if (keystore_find_id(ks, id, &k, &slot) != KS_OK) {
		hdr->kh_applied = seq;
		return (KS_NOTFOUND);
	}
	ref = ks->ks_slots[slot].s_rec;
	undo_save(ks, slot);
	index_drop_digests(ks, hdr->kh_area, slot, &k, NULL);
	tab = index_area(ks, KS_IDX_ID, hdr->kh_area, &nent);
	h = hash_id(hdr->kh_seed, k.k_id);
	index_remove(tab, nent, h, entry_make(ks, h, slot));
	memset(&n, 0, sizeof(n));
	n.s_rec = hdr->kh_free <= ks_hiwater(ks) ? hdr->kh_free : 0;
	slot_write(&ks->ks_slots[slot], &n);
	hdr->kh_free = slot + 1;
	__atomic_store_n(&hdr->kh_nlive, hdr->kh_nlive - 1, __ATOMIC_RELAXED);
	__atomic_store_n(&hdr->kh_undo_slot, 0, __ATOMIC_RELEASE);
	chunk_free(ks, ref);
	hdr->kh_applied = seq;
	return (KS_OK);
}

/*
 * Repair: close every sequence left odd, recount the live keys, and
 * rebuild the free slot list from the records (linked lowest first).
 */
static void
repair_slots(struct keystore *ks)
{
	struct ks_header	*hdr = ks->ks_hdr;
	struct ks_slot		*s;
	uint32_t		 i, seq, nlive = 0, head = 0, hw, f;

	hw = ks_hiwater(ks);
	for (i = hw; i-- > 0;) {
		s = &ks->ks_slots[i];
		seq = __atomic_load_n(&s->s_seq, __ATOMIC_RELAXED);
		if (seq & 1)
			__atomic_store_n(&s->s_seq, seq + 1, __ATOMIC_RELEASE);
		if (slot_live(s)) {
			nlive++;
			continue;
		}
		f = head;
		seq = __atomic_load_n(&s->s_seq, __ATOMIC_RELAXED);
		__atomic_store_n(&s->s_seq, seq + 1, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_RELEASE);
		s->s_rec = f;
		__atomic_store_n(&s->s_seq, seq + 2, __ATOMIC_RELEASE);
		head = i + 1;
	}
	hdr->kh_free = head;
	__atomic_store_n(&hdr->kh_hiwater, hw, __ATOMIC_RELEASE);
	__atomic_store_n(&hdr->kh_nlive, nlive, __ATOMIC_RELAXED);
}

/*
 * Repair: rebuild every class's free list.  A chunk is in use when it
 * names a live slot that points back at it; any other chunk below the
 * class's top (freed, or taken or being freed by the writer that died) is
 * free, linked lowest first.
 */
static void
repair_chunks(struct keystore *ks)
{
	struct ks_header	*hdr = ks->ks_hdr;
	struct ks_rec		*r;
	uint32_t		 c, i, top, head, ref, o;

	for (c = 0; c < KS_NCLASS; c++) {
		top = hdr->kh_ctop[c];
		if (top > ks->ks_nchunks)
			top = hdr->kh_ctop[c] = ks->ks_nchunks;
		for (head = 0, i = top; i-- > 0;) {
			ref = c << KS_REC_IDX_BITS | i;
			r = chunk_at(ks, ref);
			o = r->r_owner;
			if (o != 0 && o <= ks->ks_max_keys &&
			    slot_live(&ks->ks_slots[o - 1]) &&
			    ks->ks_slots[o - 1].s_rec == ref)
				continue;
			r->r_owner = 0;
			r->r_u.r_next = head;
			head = i + 1;
		}
		hdr->kh_cfree[c] = head;
	}
}

/*
 * Master, after reaping pid.  The dead writer changed at most the slot it
 * saved in kh_undo (plus index entries, the free lists and counters, all
 * derived from the records, and chunks no record points at).  Restoring
 * that slot under its seqlock ends on an even sequence above any it had,
 * so readers drop copies from before; then everything derived is rebuilt
 * and the lock handed to owner (one release store: no other writer can
 * slip in before owner replays the journal past kh_applied and unlocks).
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
		slot_write(&ks->ks_slots[us - 1], &hdr->kh_undo);
	__atomic_store_n(&hdr->kh_undo_slot, 0, __ATOMIC_RELEASE);
	/* Put back what the layout really is, for the workers' sake. */
	hdr->kh_max_keys = ks->ks_max_keys;
	hdr->kh_max_active = ks->ks_max_active;
	hdr->kh_ndindex = ks->ks_ndindex;
	hdr->kh_niindex = ks->ks_niindex;
	repair_slots(ks);
	repair_chunks(ks);
	index_rebuild(ks);
	__atomic_store_n(&hdr->kh_lock, owner > 0 ? (int32_t)owner : 0,
	    __ATOMIC_RELEASE);
	return (1);
}

/*
 * The active rate table (see keystore.h).  An entry's word is
 * owner (slot + 1) << 32 | monotonic second of its last use.
 */
#define AWORD(slot, sec)	((uint64_t)((slot) + 1) << 32 | (uint32_t)(sec))

/* Whether entry word w is free or idle long enough to be taken at sec. */
static int
aword_idle(uint64_t w, uint32_t sec)
{
	return ((w >> 32) == 0 ||
	    (uint32_t)(sec - (uint32_t)w) >= KS_ACTIVE_IDLE_S);
}

/* The entry slot points at if it still owns it (refreshed to sec), or -1. */
static int64_t
rate_own(struct keystore *ks, uint32_t slot, uint32_t sec, int refresh)
{
	uint64_t	 w;
	uint32_t	 e;

	e = __atomic_load_n(&ks->ks_slots[slot].s_active, __ATOMIC_ACQUIRE);
	if (e == 0 || e > ks->ks_max_active)
		return (-1);
	e--;
	w = __atomic_load_n(&ks->ks_aword[e], __ATOMIC_ACQUIRE);
	for (;;) {
		if ((w >> 32) != (uint64_t)slot + 1)
			return (-1);
		/*
		 * An owner may take its entry back however long it was
		 * idle, unless someone took it meanwhile: the CAS decides.
		 */
		if (!refresh || (uint32_t)w == sec)
			return (e);
		if (__atomic_compare_exchange_n(&ks->ks_aword[e], &w,
		    AWORD(slot, sec), 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			return (e);
	}
}

/*
 * A new entry for slot at sec, its windows emptied, or -1 when every entry
 * looked at is in use.  Entries given back first, then never-used ones
 * (lowest first: only they become memory), then a clock hand over idle
 * ones.  The entry is claimed by a CAS on its word, so two claimants, or a
 * claimant and the old owner coming back, never both win.
 */
static int64_t
rate_claim(struct keystore *ks, uint32_t slot, uint32_t sec)
{
	struct ks_header	*hdr = ks->ks_hdr;
	struct rl_state		*st;
	uint64_t		 w;
	uint32_t		 e, i, n, scan;
	int			 wi, j;

	n = ks->ks_max_active;
	/*
	 * First an entry given back after a lost race (rate_giveback):
	 * before the fresh ones, so that the cells are drained as fast as
	 * races fill them.
	 */
	for (i = 0; i < KS_ARET; i++) {
		e = __atomic_load_n(&hdr->kh_aret[i], __ATOMIC_RELAXED);
		if (e == 0 || !__atomic_compare_exchange_n(&hdr->kh_aret[i],
		    &e, 0, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED) || e > n)
			continue;
		w = 0;
		if (__atomic_compare_exchange_n(&ks->ks_aword[e - 1], &w,
		    AWORD(slot, sec), 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
			e--;
			goto claimed;
		}
	}
	e = __atomic_load_n(&hdr->kh_anext, __ATOMIC_RELAXED);
	while (e < n) {
		if (__atomic_compare_exchange_n(&hdr->kh_anext, &e, e + 1, 0,
		    __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
			w = 0;
			if (__atomic_compare_exchange_n(&ks->ks_aword[e], &w,
			    AWORD(slot, sec), 0, __ATOMIC_ACQ_REL,
			    __ATOMIC_RELAXED))
				goto claimed;
			break;	/* the hand took it first: search */
		}
	}
	scan = n < KS_ACTIVE_SCAN ? n : KS_ACTIVE_SCAN;
	for (i = 0; i < scan; i++) {
		e = __atomic_fetch_add(&hdr->kh_ahand, 1, __ATOMIC_RELAXED) % n;
		w = __atomic_load_n(&ks->ks_aword[e], __ATOMIC_ACQUIRE);
		if (!aword_idle(w, sec))
			continue;
		if (__atomic_compare_exchange_n(&ks->ks_aword[e], &w,
		    AWORD(slot, sec), 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
			if ((w >> 32) != 0)
				__atomic_fetch_add(&hdr->kh_aevict, 1,
				    __ATOMIC_RELAXED);
			goto claimed;
		}
	}
	__atomic_fetch_add(&hdr->kh_afull, 1, __ATOMIC_RELAXED);
	return (-1);
claimed:
	/* Its windows were empty (idle > 60 s) or never used: start at 0. */
	st = &ks->ks_astate[e];
	for (wi = 0; wi < RL_WINDOWS; wi++) {
		for (j = 0; j < RL_SLOTS; j++)
			__atomic_store_n(&st->rl_slot[wi][j], 0,
			    __ATOMIC_RELAXED);
		__atomic_store_n(&ks->ks_sstate[e].rs_word[wi], 0,
		    __ATOMIC_RELAXED);
	}
	return (e);
}

/*
 * Give back entry e, claimed for a slot that another process gave an entry
 * first.  Fresh entries are handed out once, so only the clock hand could
 * find e again, KS_ACTIVE_SCAN entries a claim: with as many entries as
 * keys in use, the last keys to come would be refused until it got there.
 * A cell of kh_aret[] makes e the next claim's; with every cell taken, the
 * hand is pointed at it.
 */
static void
rate_giveback(struct keystore *ks, uint32_t e)
{
	struct ks_header	*hdr = ks->ks_hdr;
	uint32_t		 i, none;

	__atomic_store_n(&ks->ks_aword[e], 0, __ATOMIC_RELEASE);
	for (i = 0; i < KS_ARET; i++) {
		none = 0;
		if (__atomic_compare_exchange_n(&hdr->kh_aret[i], &none, e + 1,
		    0, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
			return;
	}
	__atomic_store_n(&hdr->kh_ahand, e, __ATOMIC_RELAXED);
}

/* The rate state of slot at now (ms), made if create; see keystore.h. */
struct rl_standing *
keystore_standing(struct keystore *ks, const struct rl_state *st)
{
	return (&ks->ks_sstate[st - ks->ks_astate]);
}

struct rl_state *
keystore_rate(struct keystore *ks, uint32_t slot, int64_t now, int create)
{
	struct ks_slot	*s;
	int64_t		 e;
	uint32_t	 sec = (uint32_t)(now / 1000), cur;

	if (slot >= ks->ks_max_keys || ks->ks_max_active == 0)
		return (NULL);
	s = &ks->ks_slots[slot];
	for (;;) {
		if ((e = rate_own(ks, slot, sec, 1)) >= 0)
			return (&ks->ks_astate[e]);
		if (!create)
			return (NULL);
		if ((e = rate_claim(ks, slot, sec)) < 0) {
			/*
			 * None free, but another process may have given the
			 * slot an entry meanwhile (the last one, say): use it.
			 */
			if ((e = rate_own(ks, slot, sec, 1)) >= 0)
				return (&ks->ks_astate[e]);
			return (NULL);
		}
		/*
		 * Publish (the slot may already point at the entry we took
		 * back from another key); if another worker published an
		 * entry of its own first, use that one.
		 */
		cur = __atomic_load_n(&s->s_active, __ATOMIC_ACQUIRE);
		if (cur == (uint32_t)e + 1)
			return (&ks->ks_astate[e]);
		if (rate_own(ks, slot, sec, 0) < 0 &&
		    __atomic_compare_exchange_n(&s->s_active, &cur,
		    (uint32_t)e + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			return (&ks->ks_astate[e]);
		/* Lost: give the entry back, idle, and take the winner's. */
		rate_giveback(ks, (uint32_t)e);
	}
}

/* The rate state of slot if it has one now (no write). */
const struct rl_state *
keystore_rate_peek(const struct keystore *ks, uint32_t slot)
{
	int64_t	 e;

	if (slot >= ks->ks_max_keys)
		return (NULL);
	e = rate_own((struct keystore *)ks, slot, 0, 0);
	return (e >= 0 ? &ks->ks_astate[e] : NULL);
}

/*
 * Prefetch the rate entry slot points at: its word and its windows in
 * parallel, where keystore_rate() would load the word, check the owner,
 * and only then touch the windows: one cache miss after another for a
 * key that has not been used for a while.
 */
void
keystore_rate_prefetch(const struct keystore *ks, uint32_t slot)
{
	uint32_t	 e;

	if (slot >= ks->ks_max_keys)
		return;
	e = __atomic_load_n(&ks->ks_slots[slot].s_active, __ATOMIC_RELAXED);
	if (e == 0 || e > ks->ks_max_active)
		return;
	__builtin_prefetch(&ks->ks_aword[e - 1], 1, 3);
	ratelimit_prefetch(&ks->ks_astate[e - 1]);
}

/* The active rate table's statistics. */
void
keystore_rate_stats(const struct keystore *ks, uint32_t *used, uint64_t *full,
    uint64_t *evicted)
{
	uint32_t	 n;

	n = __atomic_load_n(&ks->ks_hdr->kh_anext, __ATOMIC_RELAXED);
	*used = n < ks->ks_max_active ? n : ks->ks_max_active;
	*full = __atomic_load_n(&ks->ks_hdr->kh_afull, __ATOMIC_RELAXED);
	*evicted = __atomic_load_n(&ks->ks_hdr->kh_aevict, __ATOMIC_RELAXED);
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

/*
 * The history baselines of slot (zeros for a slot out of range).  Only
 * their low 32 bits are kept: the counter less the 32-bit difference is
 * the full baseline as long as a fold's interval saw fewer than 2^32 uses
 * of the key, which a minute always does.
 */
void
keystore_base(const struct keystore *ks, uint32_t slot, uint64_t *b)
{
	uint64_t	 c[KS_NCOUNTS];
	uint32_t	 low;
	int		 i;

	keystore_counts(ks, slot, c);
	for (i = 0; i < KS_NCOUNTS; i++) {
		low = slot < ks->ks_max_keys ? __atomic_load_n(
		    &ks->ks_slots[slot].s_base[i], __ATOMIC_RELAXED) : 0;
		b[i] = c[i] - (uint32_t)((uint32_t)c[i] - low);
	}
}

/* Set the history baselines of slot (the master, at a fold). */
void
keystore_set_base(struct keystore *ks, uint32_t slot, const uint64_t *b)
{
	int	 i;

	if (slot >= ks->ks_max_keys)
		return;
	for (i = 0; i < KS_NCOUNTS; i++)
		__atomic_store_n(&ks->ks_slots[slot].s_base[i], (uint32_t)b[i],
		    __ATOMIC_RELAXED);
}
