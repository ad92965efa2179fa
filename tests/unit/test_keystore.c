/*
 * Unit tests for the shared-memory key store (keystore.c): lookups by
 * digest and id, replacement and grace digests, deletion, index rebuilds
 * under churn, capacity, iteration, the writer lock, repair after a writer
 * died (simulated and by SIGKILL at random points), and lock-free readers
 * in forked processes while the parent writes.
 */

#include <sys/types.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "keystore.h"

/*
 * A hook run once, in the middle of the next digest comparison: it lets a
 * test act as a writer while a lookup is stopped inside its probe.
 */
static void	(*cmp_hook)(void);

/*
 * Constant-time comparison standing in for libcrypto's (this definition in
 * the test executable is the one keystore.c links to), plus cmp_hook.
 */
int
CRYPTO_memcmp(const void *a, const void *b, size_t len)
{
	const volatile unsigned char	*x = a, *y = b;
	unsigned char			 diff = 0;
	void				(*hook)(void) = cmp_hook;
	size_t				 i;

	for (i = 0; i < len; i++)
		diff |= x[i] ^ y[i];
	if (hook != NULL) {
		cmp_hook = NULL;
		hook();
	}
	return (diff != 0);
}

/* A store in its own anonymous shared mapping. */
struct store {
	struct keystore	 ks;
	void		*mem;
	size_t		 size;
};

/* Map and format a store for max_keys keys. */
static void
store_open_active(struct store *st, uint32_t max_keys, uint32_t max_active)
{
	st->size = keystore_size(max_keys, max_active);
	st->mem = mmap(NULL, st->size, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(st->mem != MAP_FAILED);
	keystore_init(&st->ks, st->mem, max_keys, max_active,
	    0x5eed5eed12345678ULL);
}

static void
store_open(struct store *st, uint32_t max_keys)
{
	store_open_active(st, max_keys, max_keys);
}

/* Unmap a store. */
static void
store_close(struct store *st)
{
	munmap(st->mem, st->size);
}

/* The public id of key number n. */
static void
key_id(char *buf, size_t len, uint32_t n)
{
	snprintf(buf, len, "key_%016u", n);
}

/* The digest of key n at generation gen: SHA-256 of "id:gen". */
static void
key_digest(uint8_t *digest, uint32_t n, uint32_t gen)
{
	char	 buf[64];
	int	 len;

	key_id(buf, sizeof(buf), n);
	len = snprintf(buf + 20, sizeof(buf) - 20, ":%u", gen) + 20;
	assert_int_equal(EVP_Digest(buf, (size_t)len, digest, NULL,
	    EVP_sha256(), NULL), 1);
}

/*
 * Key n at generation gen: every field derived from (n, gen), so that a
 * reader can tell a torn record from a whole one.  Generations divisible
 * by 3 carry the previous generation's digest in a grace period.
 */
static void
key_make(struct ks_key *k, uint32_t n, uint32_t gen)
{
	memset(k, 0, sizeof(*k));
	key_id(k->k_id, sizeof(k->k_id), n);
	key_digest(k->k_digest, n, gen);
	if (gen % 3 == 0 && gen > 0) {
		key_digest(k->k_old_digest, n, gen - 1);
		k->k_grace_until = 1000000 + gen;
	}
	k->k_created = n;
	k->k_updated = gen;
	k->k_rate[KS_W1S] = gen;
	snprintf(k->k_prefix, sizeof(k->k_prefix), "live");
	snprintf(k->k_hint, sizeof(k->k_hint), "live_...%04u", gen % 10000);
	/* Lengths that vary with gen, so that records change chunk class. */
	snprintf(k->k_name, sizeof(k->k_name), "name %u gen %u %.*s", n, gen,
	    (int)(gen * 37 % 90), "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopq"
	    "rstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz");
	snprintf(k->k_owner, sizeof(k->k_owner), "owner-%u-%u", n, gen);
	snprintf(k->k_scopes, sizeof(k->k_scopes), "read:%u write:%u", gen,
	    n);
}

/* Whether k is exactly key_make(n, gen) for the (n, gen) in its name. */
static int
key_whole(const struct ks_key *k, uint32_t *np, uint32_t *genp)
{
	struct ks_key	 want;
	uint32_t	 n, gen;

	if (sscanf(k->k_name, "name %u gen %u", &n, &gen) != 2)
		return (0);
	key_make(&want, n, gen);
	if (np != NULL)
		*np = n;
	if (genp != NULL)
		*genp = gen;
	return (memcmp(&want, k, sizeof(want)) == 0);
}

/* Put key (n, gen), the lock held; the result. */
static int
put_locked(struct keystore *ks, uint32_t n, uint32_t gen, uint64_t seq)
{
	struct ks_key	 k;

	key_make(&k, n, gen);
	return (keystore_put(ks, &k, seq));
}

/* Delete key n, the lock held; the result. */
static int
del_locked(struct keystore *ks, uint32_t n, uint64_t seq)
{
	char	 id[32];

	key_id(id, sizeof(id), n);
	return (keystore_del(ks, id, seq));
}

/* Put key (n, gen) under a lock taken for the occasion; the result. */
static int
put(struct keystore *ks, uint32_t n, uint32_t gen, uint64_t seq)
{
	int	 r;

	assert_int_equal(keystore_lock(ks, getpid(), 0), KS_OK);
	r = put_locked(ks, n, gen, seq);
	keystore_unlock(ks, getpid());
	assert_int_equal(ks->ks_hdr->kh_lock, 0);
	return (r);
}

/* Delete key n under a lock taken for the occasion; the result. */
static int
del(struct keystore *ks, uint32_t n, uint64_t seq)
{
	int	 r;

	assert_int_equal(keystore_lock(ks, getpid(), 0), KS_OK);
	r = del_locked(ks, n, seq);
	keystore_unlock(ks, getpid());
	return (r);
}

/* Key (n, gen) is found by its digest and id, whole; its slot. */
static uint32_t
assert_found(const struct keystore *ks, uint32_t n, uint32_t gen)
{
	struct ks_key	 k, want;
	uint8_t		 d[KS_DIGEST_LEN];
	uint32_t	 slot, slot2;
	int		 old = -1;

	key_make(&want, n, gen);
	key_digest(d, n, gen);
	assert_int_equal(keystore_find_digest(ks, d, &k, &slot, &old), KS_OK);
	assert_int_equal(old, 0);
	assert_memory_equal(&k, &want, sizeof(k));
	memset(&k, 0, sizeof(k));
	assert_int_equal(keystore_find_id(ks, want.k_id, &k, &slot2), KS_OK);
	assert_memory_equal(&k, &want, sizeof(k));
	assert_int_equal(slot, slot2);
	return (slot);
}

/* Neither digest (n, gen) nor, if byid, id n is found. */
static void
assert_missing(const struct keystore *ks, uint32_t n, uint32_t gen, int byid)
{
	struct ks_key	 k;
	uint8_t		 d[KS_DIGEST_LEN];
	char		 id[32];
	uint32_t	 slot;
	int		 old;

	key_digest(d, n, gen);
	assert_int_equal(keystore_find_digest(ks, d, &k, &slot, &old),
	    KS_NOTFOUND);
	key_id(id, sizeof(id), n);
	if (byid)
		assert_int_equal(keystore_find_id(ks, id, &k, &slot),
		    KS_NOTFOUND);
}

/* Sizes: powers of two, 64-byte parts, no overflow at the maximum. */
static void
test_size(void **state)
{
	struct store	 st;

	(void)state;
	/* The fixed part of a key is two cache lines (issue 14). */
	assert_int_equal(sizeof(struct ks_slot), 128);
	assert_int_equal(keystore_size(1, 1) % 64, 0);
	assert_true(keystore_size(1000, 1000) < keystore_size(1001, 1001) ||
	    keystore_size(1000, 1000) == keystore_size(1001, 1001));
	assert_true(keystore_size(1000, 10) < keystore_size(1000, 1000));
	assert_true(keystore_size(100000000, 100000000) > (size_t)100000000 *
	    (sizeof(struct ks_slot) + sizeof(struct rl_state)) +
	    (size_t)2 * 268435456 * 4);
	/* The longest record fits the largest chunk. */
	assert_true(sizeof(struct ks_rec) + 8 + KS_DIGEST_LEN + 23 + 15 +
	    23 + 103 + 67 + 67 + 255 <= ks_class_size[KS_NCLASS - 1]);
	store_open(&st, 1000);
	assert_int_equal(st.ks.ks_hdr->kh_ndindex, 2048);
	assert_int_equal(st.ks.ks_hdr->kh_niindex, 2048);
	assert_int_equal(st.ks.ks_slot_bits, 10);
	assert_int_equal((uintptr_t)st.ks.ks_slots % 64, 0);
	assert_int_equal((uintptr_t)st.ks.ks_dindex % 64, 0);
	assert_int_equal((uintptr_t)st.ks.ks_iindex % 64, 0);
	assert_int_equal((uintptr_t)st.ks.ks_astate % 64, 0);
	assert_true((char *)(st.ks.ks_chunks[KS_NCLASS - 1] + 1002 *
	    ks_class_size[KS_NCLASS - 1]) <= (char *)st.mem + st.size);
	assert_int_equal(keystore_count(&st.ks), 0);
	store_close(&st);
	store_open(&st, 1);
	assert_int_equal(st.ks.ks_hdr->kh_ndindex, 16);
	assert_int_equal(st.ks.ks_hdr->kh_niindex, 16);
	store_close(&st);
}

/* Inserted keys are found by digest and id; unknown ones are not. */
static void
test_insert_lookup(void **state)
{
	struct store	 st;
	struct keystore	 ks2;
	struct ks_key	 k;
	uint32_t	 i;

	(void)state;
	store_open(&st, 100);
	for (i = 0; i < 50; i++)
		assert_int_equal(put(&st.ks, i, 1, i + 1), KS_OK);
	assert_int_equal(keystore_count(&st.ks), 50);
	assert_int_equal(st.ks.ks_hdr->kh_applied, 50);
	/* Slots are handed out lowest first. */
	for (i = 0; i < 50; i++)
		assert_int_equal(assert_found(&st.ks, i, 1), i);
	assert_missing(&st.ks, 7, 2, 0);
	assert_missing(&st.ks, 77, 1, 1);
	assert_int_equal(keystore_find_id(&st.ks, "", &k, NULL), KS_NOTFOUND);
	assert_int_equal(keystore_find_id(&st.ks, "key_0000000000000001x",
	    &k, NULL), KS_NOTFOUND);
	/* Another handle on the same region (a worker) sees the same. */
	keystore_attach(&ks2, st.mem, 100, 100);
	assert_int_equal(assert_found(&ks2, 42, 1), 42);
	store_close(&st);
}

/*
 * The active rate table: a key's state is made on first use (empty) and
 * kept while the key is used, or comes back, even after a delete and a
 * new key in the same slot only by a fresh one; an entry idle for
 * KS_ACTIVE_IDLE_S is taken for another key (emptied), a busy one never:
 * with every entry busy the table is full (NULL, counted).  The states
 * lie inside the region, 64-byte aligned.
 */
static void
test_rate_state(void **state)
{
	struct store	 st;
	struct rl_state	*rs, *r2;
	uint64_t	 full, evicted;
	uint32_t	 slot, used;
	int64_t		 t = 1000000;

	(void)state;
	store_open_active(&st, 8, 2);
	assert_null(keystore_rate(&st.ks, 0, t, 0));
	assert_null(keystore_rate_peek(&st.ks, 0));
	assert_null(keystore_rate(&st.ks, 8, t, 1));	/* out of range */
	assert_int_equal(put(&st.ks, 1, 1, 1), KS_OK);
	slot = assert_found(&st.ks, 1, 1);
	assert_non_null(rs = keystore_rate(&st.ks, slot, t, 1));
	assert_true((char *)(rs + 1) <= (char *)st.mem + st.size);
	assert_int_equal((uintptr_t)rs % 64, 0);
	assert_ptr_equal(keystore_rate_peek(&st.ks, slot), rs);
	assert_ptr_equal(keystore_rate(&st.ks, slot, t + 500, 1), rs);
	rs->rl_slot[0][3] = 77;
	rs->rl_slot[2][31] = 78;
	assert_int_equal(put(&st.ks, 1, 2, 2), KS_OK);	/* same id: kept */
	assert_ptr_equal(keystore_rate(&st.ks, slot, t + 1000, 1), rs);
	assert_int_equal(rs->rl_slot[0][3], 77);
	/* Deleted, and a new key in the same slot: a state of its own. */
	assert_int_equal(del(&st.ks, 1, 3), KS_OK);
	assert_int_equal(put(&st.ks, 2, 1, 4), KS_OK);
	assert_int_equal(assert_found(&st.ks, 2, 1), slot);
	assert_null(keystore_rate_peek(&st.ks, slot));
	assert_non_null(r2 = keystore_rate(&st.ks, slot, t + 1000, 1));
	assert_true(r2 != rs);
	assert_int_equal(r2->rl_slot[0][3], 0);
	/* Both entries busy (used at t + 1 s): a third key finds none. */
	assert_int_equal(put(&st.ks, 3, 1, 5), KS_OK);
	assert_null(keystore_rate(&st.ks, assert_found(&st.ks, 3, 1),
	    t + 2000, 1));
	keystore_rate_stats(&st.ks, &used, &full, &evicted);
	assert_int_equal(used, 2);
	assert_int_equal(full, 1);
	assert_int_equal(evicted, 0);
	/* Not yet idle long enough at t + 1 s + 61.9 s. */
	assert_null(keystore_rate(&st.ks, assert_found(&st.ks, 3, 1),
	    t + 1000 + (KS_ACTIVE_IDLE_S - 1) * 1000 + 999, 1));
	/* Key 2 keeps using its state; the stale one (key 1's) goes. */
	assert_ptr_equal(keystore_rate(&st.ks, slot, t + 30000, 1), r2);
	rs->rl_slot[0][3] = 77;
	assert_ptr_equal(keystore_rate(&st.ks, assert_found(&st.ks, 3, 1),
	    t + 1000 + KS_ACTIVE_IDLE_S * 1000, 1), rs);
	assert_int_equal(rs->rl_slot[0][3], 0);
	assert_int_equal(rs->rl_slot[2][31], 0);
	keystore_rate_stats(&st.ks, &used, &full, &evicted);
	assert_int_equal(evicted, 1);
	assert_int_equal(full, 2);
	/* A key whose entry was taken gets a new one when one is idle. */
	assert_ptr_equal(keystore_rate(&st.ks, slot, t + 30000 +
	    KS_ACTIVE_IDLE_S * 1000, 1), r2);	/* its own, came back */
	store_close(&st);
}

/* Replacement: rename keeps the slot, a new digest hides the old one. */
static void
test_replace(void **state)
{
	struct store	 st;
	struct ks_key	 k, got;
	uint8_t		 d[KS_DIGEST_LEN];
	uint64_t	 allowed, refused;
	int64_t		 last;
	uint32_t	 slot;
	int		 old;

	(void)state;
	store_open(&st, 10);
	assert_int_equal(put(&st.ks, 1, 1, 1), KS_OK);
	assert_int_equal(put(&st.ks, 2, 1, 2), KS_OK);
	slot = assert_found(&st.ks, 1, 1);
	keystore_count_use(&st.ks, slot, 1, 500);
	/* Same digest, new name: found with the new name, same slot. */
	key_make(&k, 1, 1);
	snprintf(k.k_name, sizeof(k.k_name), "renamed");
	assert_int_equal(keystore_lock(&st.ks, 7, 0), KS_OK);
	assert_int_equal(keystore_put(&st.ks, &k, 3), KS_OK);
	key_digest(d, 1, 1);
	assert_int_equal(keystore_find_digest(&st.ks, d, &got, &slot, &old),
	    KS_OK);
	assert_string_equal(got.k_name, "renamed");
	assert_int_equal(slot, 0);
	/* New digest without grace: the old digest is gone. */
	key_make(&k, 1, 2);
	assert_int_equal(keystore_put(&st.ks, &k, 4), KS_OK);
	keystore_unlock(&st.ks, 7);
	assert_int_equal(assert_found(&st.ks, 1, 2), 0);
	assert_missing(&st.ks, 1, 1, 0);
	assert_int_equal(keystore_count(&st.ks), 2);
	/* Usage counters survive a replacement. */
	keystore_usage(&st.ks, 0, &allowed, &refused, &last);
	assert_int_equal(allowed, 1);
	assert_int_equal(last, 500);
	/* Generation 3 keeps generation 2's digest in grace: *old = 1. */
	assert_int_equal(put(&st.ks, 1, 3, 5), KS_OK);
	assert_int_equal(assert_found(&st.ks, 1, 3), 0);
	key_digest(d, 1, 2);
	assert_int_equal(keystore_find_digest(&st.ks, d, &got, &slot, &old),
	    KS_OK);
	assert_int_equal(old, 1);
	assert_true(key_whole(&got, NULL, NULL));
	assert_int_equal(got.k_updated, 3);
	/* Grace over (cleared by the caller): the old digest is dropped. */
	key_make(&k, 1, 3);
	k.k_grace_until = 0;
	assert_int_equal(keystore_lock(&st.ks, 7, 0), KS_OK);
	assert_int_equal(keystore_put(&st.ks, &k, 6), KS_OK);
	keystore_unlock(&st.ks, 7);
	assert_int_equal(keystore_find_digest(&st.ks, d, &got, &slot, &old),
	    KS_NOTFOUND);
	key_digest(d, 1, 3);
	assert_int_equal(keystore_find_digest(&st.ks, d, &got, &slot, &old),
	    KS_OK);
	assert_int_equal(old, 0);
	assert_int_equal(st.ks.ks_hdr->kh_applied, 6);
	assert_int_equal(keystore_count(&st.ks), 2);
	assert_int_equal(st.ks.ks_hdr->kh_undo_slot, 0);
	store_close(&st);
}

/* Deleted keys are gone; their slot comes back with zeroed counters. */
static void
test_delete(void **state)
{
	struct store	 st;
	uint64_t	 allowed, refused;
	int64_t		 last;
	uint32_t	 slot;

	(void)state;
	store_open(&st, 10);
	assert_int_equal(put(&st.ks, 1, 1, 1), KS_OK);
	assert_int_equal(put(&st.ks, 2, 3, 2), KS_OK);	/* with grace */
	assert_int_equal(put(&st.ks, 3, 1, 3), KS_OK);
	slot = assert_found(&st.ks, 2, 3);
	keystore_count_use(&st.ks, slot, 0, 900);
	keystore_count_use(&st.ks, slot, 0, 800);
	keystore_count_use(&st.ks, slot, 1, 850);
	keystore_usage(&st.ks, slot, &allowed, &refused, &last);
	assert_int_equal(allowed, 1);
	assert_int_equal(refused, 2);
	assert_int_equal(last, 900);
	assert_int_equal(del(&st.ks, 2, 4), KS_OK);
	assert_missing(&st.ks, 2, 3, 1);
	assert_missing(&st.ks, 2, 2, 0);	/* the grace digest too */
	assert_int_equal(keystore_count(&st.ks), 2);
	assert_int_equal(del(&st.ks, 2, 5), KS_NOTFOUND);
	assert_int_equal(st.ks.ks_hdr->kh_applied, 5);
	assert_found(&st.ks, 1, 1);
	assert_found(&st.ks, 3, 1);
	/* The freed slot is reused first, counters zeroed for the new id. */
	assert_int_equal(put(&st.ks, 4, 1, 6), KS_OK);
	assert_int_equal(assert_found(&st.ks, 4, 1), slot);
	keystore_usage(&st.ks, slot, &allowed, &refused, &last);
	assert_int_equal(allowed, 0);
	assert_int_equal(refused, 0);
	assert_int_equal(last, 0);
	/* Counters loaded at start-up; out of range slots are ignored. */
	keystore_set_usage(&st.ks, slot, 5, 6, 7000);
	keystore_set_usage(&st.ks, 10, 5, 6, 7000);
	keystore_count_use(&st.ks, 10, 1, 7000);
	keystore_usage(&st.ks, slot, &allowed, &refused, &last);
	assert_int_equal(allowed, 5);
	assert_int_equal(refused, 6);
	assert_int_equal(last, 7000);
	keystore_usage(&st.ks, 10, &allowed, &refused, &last);
	assert_int_equal(allowed + refused + (uint64_t)last, 0);
	/* The same id again is a new key. */
	assert_int_equal(put(&st.ks, 2, 3, 7), KS_OK);
	assert_found(&st.ks, 2, 3);
	assert_int_equal(keystore_count(&st.ks), 4);
	store_close(&st);
}

/*
 * Free slots: those on the free list (walked and checked: each is below
 * the high-water mark, not live, and on the list once) and those above
 * the mark.
 */
static uint32_t
nfree(const struct keystore *ks)
{
	const struct ks_header	*hdr = ks->ks_hdr;
	uint32_t		 f, n = 0;

	for (f = hdr->kh_free; f != 0; f = ks->ks_slots[f - 1].s_rec) {
		assert_true(f <= hdr->kh_hiwater);
		assert_int_equal(ks->ks_slots[f - 1].s_flags & KS_SF_LIVE, 0);
		assert_true(++n <= hdr->kh_hiwater);
	}
	return (n + ks->ks_max_keys - hdr->kh_hiwater);
}

/* The chunk holding slot's strings. */
static struct ks_rec *
rec_of(const struct keystore *ks, uint32_t slot)
{
	uint32_t	 ref = ks->ks_slots[slot].s_rec;
	uint32_t	 c = ref >> KS_REC_IDX_BITS;

	assert_true(c < KS_NCLASS);
	return ((struct ks_rec *)(ks->ks_chunks[c] + (size_t)(ref &
	    ((1U << KS_REC_IDX_BITS) - 1)) * ks_class_size[c]));
}

/*
 * Audit the active index areas: exactly ndigests live digest entries and
 * one id entry per key (no stale entry left behind), and kh_dused and
 * kh_iused count every non-empty entry (live or tombstone).
 */
static void
index_audit(const struct keystore *ks, uint32_t ndigests)
{
	const struct ks_header	*hdr = ks->ks_hdr;
	const uint32_t		*tab;
	uint32_t		 i, live = 0, used = 0;

	tab = ks->ks_dindex + (size_t)hdr->kh_area * hdr->kh_ndindex;
	for (i = 0; i < hdr->kh_ndindex; i++) {
		used += tab[i] != 0;
		live += tab[i] > 1;
	}
	assert_int_equal(live, ndigests);
	assert_int_equal(used, hdr->kh_dused);
	tab = ks->ks_iindex + (size_t)hdr->kh_area * hdr->kh_niindex;
	for (i = live = used = 0; i < hdr->kh_niindex; i++) {
		used += tab[i] != 0;
		live += tab[i] > 1;
	}
	assert_int_equal(live, keystore_count(ks));
	assert_int_equal(used, hdr->kh_iused);
}

/*
 * Every key of the model (gen[n] != 0) is found at its generation; every
 * other id is missing, with the digest of its last generation.
 */
static void
check_model(const struct keystore *ks, const uint32_t *gen,
    const uint32_t *last, uint32_t nids)
{
	uint32_t	 n, live = 0, ndigests = 0;

	for (n = 0; n < nids; n++) {
		if (gen[n] != 0) {
			assert_found(ks, n, gen[n]);
			live++;
			ndigests += gen[n] % 3 == 0 ? 2 : 1;
		} else
			assert_missing(ks, n, last[n], 1);
	}
	assert_int_equal(keystore_count(ks), live);
	index_audit(ks, ndigests);
}

/*
 * Churn: 100,000 creates, replacements and deletes on a 1000-key store
 * fill the indexes with tombstones; rebuilds must keep them usable and
 * every live key findable after each rebuild.
 */
static void
test_churn(void **state)
{
	struct store	 st;
	uint32_t	 gen[1500], last[1500], op, n, rebuilds = 0, live = 0;
	uint32_t	 g = 1;

	(void)state;
	memset(gen, 0, sizeof(gen));
	memset(last, 0, sizeof(last));
	srandom(1);
	store_open(&st, 1000);
	for (op = 1; op <= 100000; op++) {
		n = (uint32_t)random() % 1500;
		if (gen[n] != 0 && random() % 3 == 0) {
			assert_int_equal(del(&st.ks, n, op), KS_OK);
			gen[n] = 0;
			live--;
		} else if (gen[n] != 0 || live < 1000) {
			live += gen[n] == 0;
			gen[n] = last[n] = ++g;
			assert_int_equal(put(&st.ks, n, gen[n], op), KS_OK);
		} else
			assert_int_equal(put(&st.ks, n, ++g, op), KS_FULL);
		assert_true(st.ks.ks_hdr->kh_dused <= 2048 / 4 * 3);
		assert_true(st.ks.ks_hdr->kh_iused <= 2048 / 4 * 3);
		if (st.ks.ks_hdr->kh_rebuilds != rebuilds || op % 997 == 0) {
			rebuilds = st.ks.ks_hdr->kh_rebuilds;
			check_model(&st.ks, gen, last, 1500);
		}
	}
	assert_true(rebuilds > 10);
	check_model(&st.ks, gen, last, 1500);
	assert_int_equal(nfree(&st.ks) + live, 1000);
	store_close(&st);
}

/*
 * Slots are handed out lowest first and reused after deletes, so the
 * high-water mark (past which nothing is ever read) stays at the peak
 * number of keys, not at max_keys; repair keeps it and the free stack.
 */
static void
test_hiwater(void **state)
{
	struct store	 st;
	uint32_t	 i, cur = 0, n = 0;
	struct ks_key	 k;

	(void)state;
	store_open(&st, 1000);
	assert_int_equal(st.ks.ks_hdr->kh_hiwater, 0);
	for (i = 0; i < 10; i++)
		assert_int_equal(put(&st.ks, i, 1, i + 1), KS_OK);
	assert_int_equal(st.ks.ks_hdr->kh_hiwater, 10);
	for (i = 0; i < 200; i++) {
		assert_int_equal(del(&st.ks, i % 10, 100 + 2 * i), KS_OK);
		assert_int_equal(put(&st.ks, i % 10, i + 2, 101 + 2 * i), KS_OK);
	}
	assert_int_equal(st.ks.ks_hdr->kh_hiwater, 10);
	while (keystore_next(&st.ks, &cur, &k, NULL) == KS_OK)
		n++;
	assert_int_equal(n, 10);
	assert_int_equal(cur, 10);	/* stopped at the mark */
	assert_int_equal(keystore_lock(&st.ks, 4242, 0), KS_OK);
	assert_int_equal(keystore_repair(&st.ks, 4242, 0), 1);
	assert_int_equal(nfree(&st.ks), 990);
	assert_int_equal(st.ks.ks_hdr->kh_hiwater, 10);
	assert_int_equal(put(&st.ks, 20, 1, 1000), KS_OK);
	assert_int_equal(st.ks.ks_hdr->kh_hiwater, 11);
	store_close(&st);
}

/* A full store refuses new keys and keeps working for everything else. */
static void
test_full(void **state)
{
	struct store	 st;
	uint32_t	 i;

	(void)state;
	store_open(&st, 4);
	for (i = 0; i < 4; i++)
		assert_int_equal(put(&st.ks, i, 3, i + 1), KS_OK);
	assert_int_equal(put(&st.ks, 10, 1, 5), KS_FULL);
	assert_int_equal(st.ks.ks_hdr->kh_applied, 4);
	assert_missing(&st.ks, 10, 1, 1);
	assert_int_equal(keystore_count(&st.ks), 4);
	/* Replacing an existing key still works, many times over. */
	for (i = 4; i < 200; i++)
		assert_int_equal(put(&st.ks, 2, i, i + 2), KS_OK);
	for (i = 0; i < 4; i++)
		assert_found(&st.ks, i, i == 2 ? 199 : 3);
	assert_int_equal(del(&st.ks, 1, 300), KS_OK);
	assert_int_equal(put(&st.ks, 10, 1, 301), KS_OK);
	assert_int_equal(assert_found(&st.ks, 10, 1), 1);
	assert_int_equal(put(&st.ks, 11, 1, 302), KS_FULL);
	store_close(&st);
}

/* A digest that belongs to another key is refused, nothing changes. */
static void
test_exists(void **state)
{
	struct store	 st;
	struct ks_key	 k;

	(void)state;
	store_open(&st, 10);
	assert_int_equal(put(&st.ks, 1, 1, 1), KS_OK);
	assert_int_equal(put(&st.ks, 2, 3, 2), KS_OK);	/* grace: gen 2 */
	assert_int_equal(keystore_lock(&st.ks, 9, 0), KS_OK);
	/* New key 5 with key 1's digest. */
	key_make(&k, 5, 1);
	key_digest(k.k_digest, 1, 1);
	assert_int_equal(keystore_put(&st.ks, &k, 3), KS_EXISTS);
	/* New key 5 whose old digest (in grace) is key 1's digest. */
	key_make(&k, 5, 3);
	key_digest(k.k_old_digest, 1, 1);
	assert_int_equal(keystore_put(&st.ks, &k, 3), KS_EXISTS);
	/* New key 5 with key 2's grace digest. */
	key_make(&k, 5, 1);
	key_digest(k.k_digest, 2, 2);
	assert_int_equal(keystore_put(&st.ks, &k, 3), KS_EXISTS);
	/* Existing key 1 taking key 2's current digest. */
	key_make(&k, 1, 1);
	key_digest(k.k_digest, 2, 3);
	assert_int_equal(keystore_put(&st.ks, &k, 3), KS_EXISTS);
	/* A key keeping its own digests is not a conflict. */
	key_make(&k, 2, 3);
	assert_int_equal(keystore_put(&st.ks, &k, 3), KS_OK);
	keystore_unlock(&st.ks, 9);
	assert_int_equal(keystore_count(&st.ks), 2);
	assert_missing(&st.ks, 5, 1, 1);
	assert_found(&st.ks, 1, 1);
	assert_found(&st.ks, 2, 3);
	assert_int_equal(nfree(&st.ks), 8);
	store_close(&st);
}

/* keystore_next visits every live key exactly once, in slot order. */
static void
test_next(void **state)
{
	struct store	 st;
	struct ks_key	 k;
	uint32_t	 cursor = 0, slot, last = 0, n, seen[300];
	int		 first = 1;

	(void)state;
	memset(seen, 0, sizeof(seen));
	store_open(&st, 300);
	for (n = 0; n < 300; n++)
		assert_int_equal(put(&st.ks, n, 1, n + 1), KS_OK);
	for (n = 0; n < 300; n += 3)
		assert_int_equal(del(&st.ks, n, 1000 + n), KS_OK);
	while (keystore_next(&st.ks, &cursor, &k, &slot) == KS_OK) {
		assert_true(first || slot > last);
		assert_int_equal(cursor, slot + 1);
		first = 0;
		last = slot;
		assert_true(key_whole(&k, &n, NULL));
		assert_true(n < 300);
		seen[n]++;
	}
	assert_int_equal(cursor, 300);
	for (n = 0; n < 300; n++)
		assert_int_equal(seen[n], n % 3 == 0 ? 0 : 1);
	/* An empty store ends at once. */
	cursor = 0;
	store_close(&st);
	store_open(&st, 5);
	assert_int_equal(keystore_next(&st.ks, &cursor, &k, &slot),
	    KS_NOTFOUND);
	store_close(&st);
}

/* The lock belongs to one pid; others wait and time out. */
static void
test_lock(void **state)
{
	struct store	 st;
	pid_t		 pid;
	int		 status;

	(void)state;
	store_open(&st, 4);
	assert_int_equal(keystore_lock(&st.ks, 100, 0), KS_OK);
	assert_int_equal(keystore_lock(&st.ks, 200, 0), KS_TIMEOUT);
	assert_int_equal(keystore_lock(&st.ks, 200, 5), KS_TIMEOUT);
	keystore_unlock(&st.ks, 200);		/* not the owner: no effect */
	assert_int_equal(st.ks.ks_hdr->kh_lock, 100);
	keystore_unlock(&st.ks, 100);
	assert_int_equal(st.ks.ks_hdr->kh_lock, 0);
	/* A child holding the lock makes the parent wait until it lets go. */
	assert_int_equal(keystore_lock(&st.ks, getpid(), 0), KS_OK);
	pid = fork();
	assert_true(pid != -1);
	if (pid == 0)
		_exit(keystore_lock(&st.ks, getpid(), 10000) == KS_OK &&
		    st.ks.ks_hdr->kh_lock == getpid() ? 0 : 1);
	keystore_unlock(&st.ks, getpid());
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* The child died holding it: nobody else gets it before repair. */
	assert_int_equal(st.ks.ks_hdr->kh_lock, pid);
	assert_int_equal(keystore_lock(&st.ks, getpid(), 1), KS_TIMEOUT);
	assert_int_equal(keystore_repair(&st.ks, pid + 1, getpid()), 0);
	assert_int_equal(keystore_repair(&st.ks, pid, 0), 1);
	assert_int_equal(keystore_lock(&st.ks, getpid(), 0), KS_OK);
	store_close(&st);
}

/* Fork a child that takes the lock and runs fn (a simulated death). */
static pid_t
die_writing(struct store *st, void (*fn)(struct store *))
{
	pid_t	 pid;
	int	 status;

	pid = fork();
	assert_true(pid != -1);
	if (pid == 0) {
		if (keystore_lock(&st->ks, getpid(), 0) != KS_OK)
			_exit(1);
		fn(st);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(st->ks.ks_hdr->kh_lock, pid);
	return (pid);
}

/*
 * Death in mid-rewrite of key 3 (slot 3): undo saved, sequence odd, half
 * the record overwritten.  Slot 5's sequence is left odd too, which the
 * protocol never does, but repair must close it as well.
 */
static void
die_rewriting(struct store *st)
{
	struct ks_header	*hdr = st->ks.ks_hdr;
	struct ks_slot		*s = &st->ks.ks_slots[3];

	hdr->kh_undo = *s;
	hdr->kh_undo_slot = 3 + 1;
	s->s_seq++;
	s->s_rec = 15;		/* a chunk never written */
	memset(s->s_digest, 0xee, 16);
	st->ks.ks_slots[5].s_seq++;
}

/* Readers see KS_BUSY, never a half record; repair puts the old one back. */
static void
test_repair_rewrite(void **state)
{
	struct store	 st;
	struct ks_key	 k;
	uint8_t		 d[KS_DIGEST_LEN];
	uint32_t	 n, slot, seq, cursor = 0;
	pid_t		 pid;
	int		 old;

	(void)state;
	store_open(&st, 16);
	for (n = 0; n < 10; n++)
		assert_int_equal(put(&st.ks, n, 1, n + 1), KS_OK);
	assert_int_equal(assert_found(&st.ks, 3, 1), 3);
	seq = st.ks.ks_slots[3].s_seq;
	pid = die_writing(&st, die_rewriting);
	key_digest(d, 3, 1);
	assert_int_equal(keystore_find_digest(&st.ks, d, &k, &slot, &old),
	    KS_BUSY);
	assert_found(&st.ks, 4, 1);
	for (n = 0; n < 3; n++)
		assert_int_equal(keystore_next(&st.ks, &cursor, &k, NULL),
		    KS_OK);
	assert_int_equal(keystore_next(&st.ks, &cursor, &k, NULL), KS_BUSY);
	assert_int_equal(cursor, 3);
	assert_int_equal(keystore_lock(&st.ks, getpid(), 1), KS_TIMEOUT);
	assert_int_equal(keystore_repair(&st.ks, getpid(), getpid()), 0);
	assert_int_equal(keystore_repair(&st.ks, pid, getpid()), 1);
	/* The lock now belongs to the master, for the journal replay. */
	assert_int_equal(st.ks.ks_hdr->kh_lock, getpid());
	assert_int_equal(st.ks.ks_hdr->kh_undo_slot, 0);
	assert_true(st.ks.ks_slots[3].s_seq > seq + 1);
	assert_int_equal(st.ks.ks_slots[3].s_seq % 2, 0);
	assert_int_equal(st.ks.ks_slots[5].s_seq % 2, 0);
	for (n = 0; n < 10; n++)
		assert_found(&st.ks, n, 1);
	assert_int_equal(keystore_count(&st.ks), 10);
	keystore_unlock(&st.ks, getpid());
	assert_int_equal(st.ks.ks_hdr->kh_lock, 0);
	store_close(&st);
}

/*
 * A store whose region is followed by an inaccessible page, so that a
 * write or read past its end faults even without ASan (which does not
 * see into mmap()ed memory).
 */
static void
store_open_guarded(struct store *st, uint32_t max_keys)
{
	size_t	 page = (size_t)sysconf(_SC_PAGESIZE);
	size_t	 size = (keystore_size(max_keys, max_keys) + page - 1) / page *
	    page;

	st->size = size + page;
	st->mem = mmap(NULL, st->size, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(st->mem != MAP_FAILED);
	assert_int_equal(mprotect((char *)st->mem + size, page, PROT_NONE), 0);
	keystore_init(&st->ks, st->mem, max_keys, max_keys,
	    0x5eed5eed12345678ULL);
}

/*
 * Workers can write the whole header (issue 10, item 5).  With its layout
 * fields and counters turned to nonsense (max_keys, index sizes, high
 * water mark, free count, undo slot, free stack entries), writes, lookups,
 * iteration and the master's repair stay inside the region, and the
 * repair ends with a sane store: the keys there are, the rest free, and
 * the header's layout put back.  The old code took these from the header
 * and wrote far past the region.
 */
static void
test_corrupt_header(void **state)
{
	struct store		 st;
	struct ks_header	*hdr;
	struct ks_key		 k;
	uint32_t		 n, cursor = 0, seen = 0;
	pid_t			 dead = 999999;

	(void)state;
	store_open_guarded(&st, 16);
	hdr = st.ks.ks_hdr;
	for (n = 0; n < 10; n++)
		assert_int_equal(put(&st.ks, n, 1, n + 1), KS_OK);
	assert_int_equal(del(&st.ks, 3, 11), KS_OK);
	assert_int_equal(del(&st.ks, 7, 12), KS_OK);

	hdr->kh_max_keys = UINT32_MAX;
	hdr->kh_ndindex = 1U << 31;
	hdr->kh_niindex = 1U << 31;
	hdr->kh_hiwater = UINT32_MAX;
	hdr->kh_free = UINT32_MAX;
	for (n = 0; n < KS_NCLASS; n++) {
		hdr->kh_ctop[n] = UINT32_MAX - n;
		hdr->kh_cfree[n] = 0x7fffff00U + n;
	}
	hdr->kh_anext = UINT32_MAX;
	hdr->kh_ahand = UINT32_MAX - 1;
	st.ks.ks_slots[3].s_rec = 0x7fffff00U;	/* a free slot's link */
	/* A writer (the worker that scribbled) dies holding the lock. */
	hdr->kh_undo_slot = 0xfffffff0U;
	/* Meanwhile: iteration, lookups and a refused put stay inside. */
	while (keystore_next(&st.ks, &cursor, &k, NULL) == KS_OK)
		seen++;
	assert_int_equal(seen, 8);
	assert_int_equal(assert_found(&st.ks, 9, 1), 9);
	assert_int_equal(put(&st.ks, 20, 1, 13), KS_FULL);
	hdr->kh_lock = (int32_t)dead;
	assert_int_equal(keystore_repair(&st.ks, dead, getpid()), 1);
	keystore_unlock(&st.ks, getpid());

	assert_int_equal(hdr->kh_max_keys, 16);
	assert_int_equal(hdr->kh_ndindex, st.ks.ks_ndindex);
	assert_int_equal(hdr->kh_niindex, st.ks.ks_niindex);
	assert_int_equal(hdr->kh_hiwater, 16);
	assert_int_equal(keystore_count(&st.ks), 8);
	assert_int_equal(nfree(&st.ks), 8);
	for (n = 0; n < 10; n++)
		if (n == 3 || n == 7)
			assert_missing(&st.ks, n, 1, 1);
		else
			assert_found(&st.ks, n, 1);
	/* The store works on: 8 more keys fit, the 9th does not. */
	for (n = 20; n < 28; n++)
		assert_int_equal(put(&st.ks, n, 1, n), KS_OK);
	assert_int_equal(put(&st.ks, 28, 1, 28), KS_FULL);
	assert_int_equal(keystore_count(&st.ks), 16);
	assert_int_equal(del(&st.ks, 20, 29), KS_OK);
	/* A free list head out of range is not followed, nor linked. */
	hdr->kh_free = UINT32_MAX;
	assert_int_equal(del(&st.ks, 21, 30), KS_OK);
	assert_true(hdr->kh_free <= 16);
	assert_true(st.ks.ks_slots[hdr->kh_free - 1].s_rec == 0);
	/* The rate table's counters out of range: no entry past it. */
	assert_non_null(keystore_rate(&st.ks, 0, 5000, 1));
	assert_true((char *)keystore_rate(&st.ks, 0, 5000, 0) <
	    (char *)(st.ks.ks_astate + st.ks.ks_max_active));
	store_close(&st);
}

/* Every string of k ends inside its field. */
static void
assert_terminated(const struct ks_key *k)
{
	assert_true(strnlen(k->k_id, sizeof(k->k_id)) < sizeof(k->k_id));
	assert_true(strnlen(k->k_prefix, sizeof(k->k_prefix)) <
	    sizeof(k->k_prefix));
	assert_true(strnlen(k->k_hint, sizeof(k->k_hint)) <
	    sizeof(k->k_hint));
	assert_true(strnlen(k->k_name, sizeof(k->k_name)) <
	    sizeof(k->k_name));
	assert_true(strnlen(k->k_owner, sizeof(k->k_owner)) <
	    sizeof(k->k_owner));
	assert_true(strnlen(k->k_app, sizeof(k->k_app)) < sizeof(k->k_app));
	assert_true(strnlen(k->k_scopes, sizeof(k->k_scopes)) <
	    sizeof(k->k_scopes));
}

/*
 * A worker can also fill a live record's chunk to the brim, every length
 * 255 and no NUL anywhere (review of issue 10, item 5): the master's
 * repair and every reader must stay inside the chunk.  Here the chunks
 * are moved (the handle is ours to point) so that the damaged one ends
 * where an inaccessible page begins, and any over-read faults.  Every
 * length is clamped to the chunk and to its field, and every copy is
 * terminated, so the id reads as sizeof(k_id) - 1 'A's.
 */
static void
test_unterminated_strings(void **state)
{
	struct store	 st;
	struct ks_rec	*last;
	struct ks_key	 k;
	uint8_t		 d[KS_DIGEST_LEN];
	char		 id[64], *mem;
	size_t		 page = (size_t)sysconf(_SC_PAGESIZE), len, csize;
	uint32_t	 n, cursor = 0, slot, seen = 0, c;
	pid_t		 dead = 999999;
	int		 old;

	(void)state;
	store_open(&st, 16);
	for (n = 0; n < 16; n++)
		assert_int_equal(put(&st.ks, n, 1, n + 1), KS_OK);
	/* All 16 records are alike: one class, chunks 0 ... 15. */
	c = st.ks.ks_slots[15].s_rec >> KS_REC_IDX_BITS;
	assert_int_equal(st.ks.ks_slots[15].s_rec & 0xffff, 15);
	csize = ks_class_size[c];
	len = (16 * csize + page - 1) / page * page;
	mem = mmap(NULL, len + page, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(mem != MAP_FAILED);
	assert_int_equal(mprotect(mem + len, page, PROT_NONE), 0);
	memcpy(mem + len - 16 * csize, st.ks.ks_chunks[c], 16 * csize);
	st.ks.ks_chunks[c] = mem + len - 16 * csize;
	last = rec_of(&st.ks, 15);
	memset(last->r_u.r_used.r_len, 255, sizeof(last->r_u.r_used.r_len));
	last->r_u.r_used.r_flags = 0;
	memset(last + 1, 'A', csize - sizeof(*last));

	/* The worker that did it dies holding the lock: repair. */
	st.ks.ks_hdr->kh_lock = (int32_t)dead;
	assert_int_equal(keystore_repair(&st.ks, dead, getpid()), 1);
	keystore_unlock(&st.ks, getpid());
	assert_int_equal(keystore_count(&st.ks), 16);
	for (n = 0; n < 15; n++)
		assert_found(&st.ks, n, 1);
	/* The damaged record: by its digest (intact) and its cut id. */
	key_digest(d, 15, 1);
	assert_int_equal(keystore_find_digest(&st.ks, d, &k, &slot, &old),
	    KS_OK);
	assert_int_equal(slot, 15);
	assert_terminated(&k);
	memset(id, 'A', sizeof(id));
	id[sizeof(k.k_id) - 1] = '\0';
	assert_string_equal(k.k_id, id);
	assert_int_equal(keystore_find_id(&st.ks, id, &k, &slot), KS_OK);
	assert_int_equal(slot, 15);
	/* A longer id hashes like its cut but is not the same id. */
	id[sizeof(k.k_id) - 1] = 'A';
	id[sizeof(id) - 1] = '\0';
	assert_int_equal(keystore_find_id(&st.ks, id, &k, &slot),
	    KS_NOTFOUND);
	while (keystore_next(&st.ks, &cursor, &k, &slot) == KS_OK) {
		assert_terminated(&k);
		seen++;
	}
	assert_int_equal(seen, 16);
	/* The store works on: the damaged key can be deleted by its id. */
	id[sizeof(k.k_id) - 1] = '\0';
	assert_int_equal(keystore_lock(&st.ks, getpid(), 0), KS_OK);
	assert_int_equal(keystore_del(&st.ks, id, 17), KS_OK);
	assert_int_equal(put_locked(&st.ks, 20, 1, 18), KS_OK);
	keystore_unlock(&st.ks, getpid());
	assert_found(&st.ks, 20, 1);
	assert_int_equal(keystore_count(&st.ks), 16);
	munmap(mem, len + page);
	store_close(&st);
}

/*
 * Death in mid-create of key 20: its chunk taken and written, the slot
 * taken (above the high-water mark) and written, not indexed.
 */
static void
die_creating(struct store *st)
{
	struct ks_header	*hdr = st->ks.ks_hdr;
	struct ks_slot		*s;
	struct ks_rec		*r;
	uint32_t		 slot = hdr->kh_hiwater, c;

	s = &st->ks.ks_slots[slot];
	c = st->ks.ks_slots[0].s_rec >> KS_REC_IDX_BITS;
	r = (struct ks_rec *)(st->ks.ks_chunks[c] + (size_t)hdr->kh_ctop[c] *
	    ks_class_size[c]);
	r->r_owner = slot + 1;
	s->s_rec = c << KS_REC_IDX_BITS | hdr->kh_ctop[c]++;
	hdr->kh_undo = *s;
	hdr->kh_undo.s_rec = 0;
	hdr->kh_undo_slot = slot + 1;
	hdr->kh_hiwater = slot + 1;
	s->s_seq++;
	s->s_flags = KS_SF_LIVE;
	key_digest(s->s_digest, 20, 1);
	s->s_seq++;
}

/* Repair frees the slot again; the journal replay then creates the key. */
static void
test_repair_create(void **state)
{
	struct store	 st;
	struct ks_key	 k;
	uint32_t	 n;
	pid_t		 pid;

	(void)state;
	store_open(&st, 16);
	for (n = 0; n < 10; n++)
		assert_int_equal(put(&st.ks, n, 1, n + 1), KS_OK);
	pid = die_writing(&st, die_creating);
	assert_int_equal(keystore_repair(&st.ks, pid, getpid()), 1);
	assert_missing(&st.ks, 20, 1, 1);
	assert_int_equal(nfree(&st.ks), 6);
	assert_int_equal(keystore_count(&st.ks), 10);
	assert_int_equal(st.ks.ks_hdr->kh_applied, 10);
	key_make(&k, 20, 1);
	assert_int_equal(keystore_put(&st.ks, &k, 11), KS_OK);
	keystore_unlock(&st.ks, getpid());
	assert_int_equal(assert_found(&st.ks, 20, 1), 10);
	for (n = 0; n < 10; n++)
		assert_found(&st.ks, n, 1);
	store_close(&st);
}

/* Operation seq of the crash test: delete or put one of 64 keys. */
static int
crash_op(struct keystore *ks, uint64_t seq)
{
	uint32_t	 n = (uint32_t)((seq * 2654435761u) >> 7) % 64;
	struct ks_key	 k;
	char		 id[32];

	if (seq % 4 == 0) {
		key_id(id, sizeof(id), n);
		return (keystore_del(ks, id, seq));
	}
	key_make(&k, n, (uint32_t)seq);
	return (keystore_put(ks, &k, seq));
}

/* Whether got holds exactly the keys of want (no assertion). */
static int
keys_same(const struct keystore *want, const struct keystore *got)
{
	struct ks_key	 k, g;
	uint32_t	 cursor = 0;

	while (keystore_next(want, &cursor, &k, NULL) == KS_OK)
		if (keystore_find_id(got, k.k_id, &g, NULL) != KS_OK ||
		    memcmp(&k, &g, sizeof(k)) != 0)
			return (0);
	return (keystore_count(want) == keystore_count(got));
}

/*
 * Audit the chunks: every live slot's chunk names it as its owner, every
 * class's free list holds only unowned chunks below its top, each once,
 * and free plus referenced chunks are all the class ever handed out
 * (nothing leaked, after a repair too).
 */
static void
chunk_audit(const struct keystore *ks)
{
	const struct ks_header	*hdr = ks->ks_hdr;
	struct ks_rec		*r;
	uint32_t		 c, f, nfree, nused[KS_NCLASS], s, ref;

	memset(nused, 0, sizeof(nused));
	for (s = 0; s < hdr->kh_hiwater; s++) {
		if ((ks->ks_slots[s].s_flags & KS_SF_LIVE) == 0)
			continue;
		ref = ks->ks_slots[s].s_rec;
		assert_true(ref >> KS_REC_IDX_BITS < KS_NCLASS);
		assert_int_equal(rec_of(ks, s)->r_owner, s + 1);
		nused[ref >> KS_REC_IDX_BITS]++;
	}
	for (c = 0; c < KS_NCLASS; c++) {
		nfree = 0;
		for (f = hdr->kh_cfree[c]; f != 0; f = r->r_u.r_next) {
			assert_true(f <= hdr->kh_ctop[c]);
			r = (struct ks_rec *)(ks->ks_chunks[c] + (size_t)(f - 1) *
			    ks_class_size[c]);
			assert_int_equal(r->r_owner, 0);
			assert_true(++nfree <= hdr->kh_ctop[c]);
		}
		assert_int_equal(nfree + nused[c], hdr->kh_ctop[c]);
	}
}

/* The stores hold exactly the same keys, all findable in got. */
static void
assert_same_keys(const struct keystore *want, const struct keystore *got)
{
	struct ks_key	 k, g;
	uint8_t		 d[KS_DIGEST_LEN];
	uint32_t	 cursor = 0, n = 0, gen = 0, slot, ndigests = 0;
	int		 old;

	while (keystore_next(want, &cursor, &k, NULL) == KS_OK) {
		assert_true(key_whole(&k, &n, &gen));
		ndigests += k.k_grace_until != 0 ? 2 : 1;
		assert_int_equal(keystore_find_id(got, k.k_id, &g, &slot),
		    KS_OK);
		assert_memory_equal(&k, &g, sizeof(k));
		assert_int_equal(keystore_find_digest(got, k.k_digest, &g,
		    NULL, &old), KS_OK);
		assert_int_equal(old, 0);
		if (k.k_grace_until != 0) {
			key_digest(d, n, gen - 1);
			assert_int_equal(keystore_find_digest(got, d, &g,
			    NULL, &old), KS_OK);
			assert_int_equal(old, 1);
		}
	}
	assert_int_equal(keystore_count(want), keystore_count(got));
	assert_int_equal(nfree(got) + keystore_count(got),
	    got->ks_hdr->kh_max_keys);
	index_audit(got, ndigests);
	chunk_audit(got);
}

/*
 * A writer killed with SIGKILL at arbitrary points: it logs each
 * operation's seq (the "journal") before applying it.  After repair the
 * store must equal one that applied the operations up to kh_applied (or
 * the one after it) without a crash; after the parent replays the log
 * past kh_applied, like the master does, one that applied the whole log.
 */
static void
test_repair_killed(void **state)
{
	struct store	 st, ref;
	volatile uint64_t *journal;
	uint64_t	 seq, target;
	time_t		 end;
	pid_t		 pid;
	int		 round, status;

	(void)state;
	journal = mmap(NULL, sizeof(*journal), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(journal != MAP_FAILED);
	srandom(7);
	for (round = 0; round < 25; round++) {
		store_open(&st, 64);
		*journal = 0;
		target = 200 + (uint64_t)random() % 3000;
		pid = fork();
		assert_true(pid != -1);
		if (pid == 0) {
			if (keystore_lock(&st.ks, getpid(), 1000) != KS_OK)
				_exit(1);
			for (seq = 1; seq < 10000000; seq++) {
				__atomic_store_n(journal, seq,
				    __ATOMIC_SEQ_CST);
				if (crash_op(&st.ks, seq) == KS_FULL)
					_exit(2);
			}
			_exit(3);
		}
		end = time(NULL) + 10;
		while (__atomic_load_n(journal, __ATOMIC_SEQ_CST) < target &&
		    time(NULL) < end)
			sched_yield();
		kill(pid, SIGKILL);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFSIGNALED(status));
		assert_true(*journal >= target);
		assert_int_equal(keystore_repair(&st.ks, pid, getpid()), 1);
		/*
		 * Repaired: exactly the operations up to kh_applied, or one
		 * more if the writer died after the undo slot was cleared
		 * but before kh_applied was advanced.
		 */
		store_open(&ref, 64);
		for (seq = 1; seq <= st.ks.ks_hdr->kh_applied; seq++)
			crash_op(&ref.ks, seq);
		if (!keys_same(&ref.ks, &st.ks))
			crash_op(&ref.ks, seq);
		assert_same_keys(&ref.ks, &st.ks);
		seq = st.ks.ks_hdr->kh_applied + 1;
		/* Replayed: exactly the operations up to the journal's end. */
		for (; seq <= *journal; seq++) {
			assert_true(crash_op(&st.ks, seq) != KS_FULL);
			crash_op(&ref.ks, seq);
		}
		keystore_unlock(&st.ks, getpid());
		assert_same_keys(&ref.ks, &st.ks);
		store_close(&ref);
		store_close(&st);
	}
	munmap((void *)journal, sizeof(*journal));
}

/* Key n with a digest whose index hash (first 8 bytes) is h. */
static void
key_crafted(struct ks_key *k, uint32_t n, uint64_t h)
{
	key_make(k, n, 1);
	memcpy(k->k_digest, &h, sizeof(h));
}

/*
 * Crafted index hashes: a tag of 0 in slot 0 (whose entry must not read
 * as a tombstone), and a key replaced 5000 times by digests with the same
 * home position, whose tombstones must be reused (no growth, no rebuild).
 */
static void
test_crafted_hashes(void **state)
{
	struct store	 st;
	struct ks_key	 k, got;
	uint32_t	 i, slot;
	int		 old;

	(void)state;
	store_open(&st, 10);
	assert_int_equal(keystore_lock(&st.ks, getpid(), 0), KS_OK);
	key_crafted(&k, 0, 3);
	assert_int_equal(keystore_put(&st.ks, &k, 1), KS_OK);
	assert_int_equal(keystore_find_digest(&st.ks, k.k_digest, &got, &slot,
	    &old), KS_OK);
	assert_int_equal(slot, 0);
	for (i = 1; i <= 5000; i++) {
		key_crafted(&k, 1, (uint64_t)i << 32 | 7);
		assert_int_equal(keystore_put(&st.ks, &k, 1 + i), KS_OK);
	}
	assert_int_equal(st.ks.ks_hdr->kh_rebuilds, 0);
	assert_true(st.ks.ks_hdr->kh_dused <= 3);
	assert_int_equal(keystore_find_digest(&st.ks, k.k_digest, &got, &slot,
	    &old), KS_OK);
	assert_int_equal(slot, 1);
	key_crafted(&k, 1, (uint64_t)4999 << 32 | 7);
	assert_int_equal(keystore_find_digest(&st.ks, k.k_digest, &got, &slot,
	    &old), KS_NOTFOUND);
	key_crafted(&k, 0, 3);
	assert_int_equal(keystore_find_digest(&st.ks, k.k_digest, &got, &slot,
	    &old), KS_OK);
	keystore_unlock(&st.ks, getpid());
	store_close(&st);
}

static struct keystore	*stall_ks;

/*
 * Run while a lookup of key 1 is stopped at key 0's entry: delete key 0,
 * then churn keys 10.. until two rebuilds have passed, so that the area
 * the lookup is probing is cleared and refilled with key 1 moved up into
 * key 0's former place, before the lookup's current position.
 */
static void
stall_writer(void)
{
	struct ks_key	 k;
	uint32_t	 rebuilds = stall_ks->ks_hdr->kh_rebuilds, i;

	assert_int_equal(del_locked(stall_ks, 0, 100), KS_OK);
	for (i = 0; i < 1000 && stall_ks->ks_hdr->kh_rebuilds < rebuilds + 2;
	    i++) {
		key_crafted(&k, 10 + i, (uint64_t)(7000 + i) << 32 |
		    (10 + i % 4));
		assert_int_equal(keystore_put(stall_ks, &k, 101 + 2 * i),
		    KS_OK);
		assert_int_equal(del_locked(stall_ks, 10 + i, 102 + 2 * i),
		    KS_OK);
	}
	assert_int_equal(stall_ks->ks_hdr->kh_rebuilds, rebuilds + 2);
}

/*
 * A lookup overtaken by two rebuilds while it probes must not report a
 * live key missing.  Keys 0 and 1 get digests with the same index hash
 * (same position, same tag), so key 1's entry follows key 0's; the
 * lookup of key 1 stops at key 0's entry (in the digest comparison)
 * while stall_writer() moves key 1's entry behind it.  Only the
 * kh_index_gen check makes the lookup start over and find it.
 */
static void
test_rebuild_under_reader(void **state)
{
	struct store	 st;
	struct ks_key	 k0, k1, got;
	uint64_t	 h = (uint64_t)0x1234 << 32 | 5;
	uint32_t	 slot, area;
	int		 old;

	(void)state;
	store_open(&st, 2);
	stall_ks = &st.ks;
	key_crafted(&k0, 0, h);
	key_crafted(&k1, 1, h);
	k1.k_digest[31] ^= 1;
	assert_int_equal(keystore_lock(&st.ks, getpid(), 0), KS_OK);
	assert_int_equal(keystore_put(&st.ks, &k0, 1), KS_OK);
	assert_int_equal(keystore_put(&st.ks, &k1, 2), KS_OK);
	area = st.ks.ks_hdr->kh_area;
	cmp_hook = stall_writer;
	assert_int_equal(keystore_find_digest(&st.ks, k1.k_digest, &got,
	    &slot, &old), KS_OK);
	assert_null(cmp_hook);
	assert_int_equal(st.ks.ks_hdr->kh_area, area);
	assert_memory_equal(&got, &k1, sizeof(got));
	assert_int_equal(slot, 1);
	keystore_unlock(&st.ks, getpid());
	store_close(&st);
}

/* Shared between the writer and the reader processes. */
struct race {
	uint32_t	 r_stop;
	uint32_t	 r_nstable;	/* keys 0..: never touched by writes */
	uint32_t	 r_nchurn;	/* keys RACE_BASE..: come and go */
	uint64_t	 r_lookups;
	uint64_t	 r_hits;
};

#define RACE_BASE	100000

/*
 * Reader process: look up stable keys (must always be found, whole) and
 * churning keys (whole when found) until told to stop or 20 s passed.
 * Exit 0, or 1 torn record, 2 stable key missed, 3 busy, 4 wrong key.
 */
static int
race_reader(const struct keystore *ks, struct race *rc, unsigned int seed)
{
	struct ks_key	 k;
	uint8_t		 d[KS_DIGEST_LEN];
	char		 id[32];
	uint32_t	 n, got, gen;
	uint64_t	 i, hits = 0;
	time_t		 end = time(NULL) + 20;
	int		 r, old;

	srandom(seed);
	for (i = 0; !__atomic_load_n(&rc->r_stop, __ATOMIC_RELAXED); i++) {
		if (i % 1024 == 0 && time(NULL) > end)
			break;
		n = (uint32_t)random() % rc->r_nstable;
		key_digest(d, n, 1);
		if (keystore_find_digest(ks, d, &k, NULL, &old) != KS_OK)
			return (2);
		if (!key_whole(&k, &got, &gen))
			return (1);
		if (got != n || gen != 1 || old != 0)
			return (4);
		n = RACE_BASE + (uint32_t)random() % rc->r_nchurn;
		key_id(id, sizeof(id), n);
		if ((r = keystore_find_id(ks, id, &k, NULL)) == KS_BUSY)
			return (3);
		if (r == KS_OK) {
			if (!key_whole(&k, &got, &gen))
				return (1);
			if (got != n)
				return (4);
			hits++;
		}
		key_id(id, sizeof(id), (uint32_t)random() % rc->r_nstable);
		if (keystore_find_id(ks, id, &k, NULL) != KS_OK)
			return (2);
	}
	__atomic_fetch_add(&rc->r_lookups, i, __ATOMIC_RELAXED);
	__atomic_fetch_add(&rc->r_hits, hits, __ATOMIC_RELAXED);
	return (0);
}

/*
 * Writer: ops random creates, replacements (rewriting slots in place, new
 * digests, some with grace) and deletes of the churning keys, keeping the
 * store at most full; the lock is held throughout.
 */
static void
race_writer(struct keystore *ks, const struct race *rc, uint32_t ops)
{
	uint32_t	*gen, i, n, g = 1, live = rc->r_nstable;
	uint64_t	 seq = rc->r_nstable;

	assert_non_null(gen = calloc(rc->r_nchurn, sizeof(*gen)));
	srandom(3);
	assert_int_equal(keystore_lock(ks, getpid(), 0), KS_OK);
	for (i = 0; i < ops; i++) {
		n = (uint32_t)random() % rc->r_nchurn;
		if (gen[n] != 0 && random() % 4 == 0) {
			assert_int_equal(del_locked(ks, RACE_BASE + n, ++seq),
			    KS_OK);
			gen[n] = 0;
			live--;
		} else if (gen[n] != 0 || live < ks->ks_hdr->kh_max_keys) {
			live += gen[n] == 0;
			gen[n] = ++g;
			assert_int_equal(put_locked(ks, RACE_BASE + n, gen[n],
			    ++seq), KS_OK);
		}
	}
	keystore_unlock(ks, getpid());
	free(gen);
}

/*
 * nreaders lock-free readers in forked processes while the parent writes
 * ops times, forcing index rebuilds; none may see a torn record or miss a
 * stable key.
 */
static void
race_run(uint32_t max_keys, uint32_t nstable, uint32_t nchurn, int nreaders,
    uint32_t ops)
{
	struct store	 st;
	struct race	*rc;
	uint32_t	 n, rebuilds;
	pid_t		 pids[16];
	int		 status, p;

	rc = mmap(NULL, sizeof(*rc), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(rc != MAP_FAILED);
	memset(rc, 0, sizeof(*rc));
	rc->r_nstable = nstable;
	rc->r_nchurn = nchurn;
	store_open(&st, max_keys);
	for (n = 0; n < nstable; n++)
		assert_int_equal(put(&st.ks, n, 1, n + 1), KS_OK);
	for (p = 0; p < nreaders; p++) {
		pids[p] = fork();
		assert_true(pids[p] != -1);
		if (pids[p] == 0)
			_exit(race_reader(&st.ks, rc, (unsigned int)p + 1));
	}
	rebuilds = st.ks.ks_hdr->kh_rebuilds;
	race_writer(&st.ks, rc, ops);
	__atomic_store_n(&rc->r_stop, 1, __ATOMIC_RELAXED);
	for (p = 0; p < nreaders; p++) {
		assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	assert_true(st.ks.ks_hdr->kh_rebuilds > rebuilds + 10);
	assert_true(rc->r_lookups > 0);
	assert_true(rc->r_hits > 0);
	store_close(&st);
	munmap(rc, sizeof(*rc));
}

/* A 1000-key store, a fifth of it stable. */
static void
test_concurrent(void **state)
{
	(void)state;
	race_run(1000, 200, 1200, 3, 200000);
}

/*
 * A 32-key store rebuilds every few dozen writes, with more readers than
 * CPUs, so that readers are preempted in mid-probe across rebuilds.
 */
static void
test_concurrent_small(void **state)
{
	(void)state;
	race_run(32, 8, 40, 6, 300000);
}

/* Marker a key leaves in its rate state: key n, generation g. */
#define RMARK(n, g)	((uint64_t)(n) << 32 | (uint64_t)(g) | 1ULL << 63)

/*
 * The active rate table against a model under random churn: 48 keys (of
 * a 32-entry table) are used at random times, deleted and created again.
 * Every use leaves its key's mark in its state.  Checked at each use: a
 * key used within KS_ACTIVE_IDLE_S, and not recreated since, gets the
 * same state with its mark intact (its windows were never taken); a key
 * that gets a new state finds it empty; no two keys used within the idle
 * time share a state; the table refuses (NULL) only when every entry was
 * used within the idle time.  Then a child does the same and is killed
 * at random points: afterwards, once the idle time has passed, every key
 * gets a state again (nothing is lost for good).
 */
static void
test_rate_churn(void **state)
{
	struct store	 st;
	struct rl_state	*rs, *have[48];
	int64_t		 last[48], elast[32], t = 5000000;
	uint32_t	 gen[48], n, i, busy, slot;
	uint64_t	 op;
	pid_t		 pid;
	int		 status, round;

	(void)state;
	srandom(11);
	store_open_active(&st, 64, 32);
	for (i = 0; i < 32; i++)
		elast[i] = INT64_MIN / 2;
	for (n = 0; n < 48; n++) {
		gen[n] = 1;
		last[n] = INT64_MIN / 2;
		have[n] = NULL;
		assert_int_equal(put(&st.ks, n, 1, n + 1), KS_OK);
	}
	for (op = 0; op < 200000; op++) {
		t += random() % 400;
		n = (uint32_t)random() % 48;
		if (random() % 50 == 0) {	/* recreated: a new key */
			assert_int_equal(del(&st.ks, n, 100 + op), KS_OK);
			gen[n]++;
			assert_int_equal(put(&st.ks, n, gen[n], 100 + op), KS_OK);
			have[n] = NULL;
			continue;
		}
		slot = assert_found(&st.ks, n, gen[n]);
		rs = keystore_rate(&st.ks, slot, t, 1);
		for (busy = 0, i = 0; i < 32; i++)
			if (t / 1000 - elast[i] / 1000 < KS_ACTIVE_IDLE_S)
				busy++;
		if (rs == NULL) {
			/* Refused only when every entry is busy. */
			assert_int_equal(busy, 32);
			continue;
		}
		i = (uint32_t)(rs - st.ks.ks_astate);
		assert_true(i < 32);
		/* A busy entry is only ever its own key's. */
		if (t / 1000 - elast[i] / 1000 < KS_ACTIVE_IDLE_S)
			assert_ptr_equal(have[n], rs);
		elast[i] = t;
		if (have[n] != NULL && t / 1000 - last[n] / 1000 <
		    KS_ACTIVE_IDLE_S) {
			assert_ptr_equal(rs, have[n]);
			assert_true(rs->rl_slot[0][0] == RMARK(n, gen[n]));
		} else if (rs != have[n])
			assert_true(rs->rl_slot[0][0] == 0);
		/* Nobody else active holds this state. */
		for (i = 0; i < 48; i++)
			if (i != n && have[i] == rs)
				assert_true(t / 1000 - last[i] / 1000 >=
				    KS_ACTIVE_IDLE_S - 1);
		rs->rl_slot[0][0] = RMARK(n, gen[n]);
		for (i = 0; i < 48; i++)
			if (i != n && have[i] == rs)
				have[i] = NULL;
		have[n] = rs;
		last[n] = t;
	}
	/* Killed at random points while claiming and refreshing. */
	for (round = 0; round < 20; round++) {
		pid = fork();
		assert_true(pid != -1);
		if (pid == 0) {
			for (op = 0;; op++) {
				n = (uint32_t)(op * 7919) % 48;
				/* Times within 97 s after t, however fast. */
				(void)keystore_rate(&st.ks, n, t +
				    (int64_t)(op % 1000) * 97, 1);
			}
		}
		usleep((useconds_t)(random() % 3000));
		kill(pid, SIGKILL);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		t += (int64_t)1000000;	/* far past anything the child did */
		for (n = 0; n < 32; n++)
			assert_non_null(keystore_rate(&st.ks, n, t, 1));
		t += (KS_ACTIVE_IDLE_S + 1) * 1000;
	}
	store_close(&st);
}

/*
 * Claims racing for the same keys, in a table with exactly one entry per
 * key (the default has KS_ACTIVE_SPARE more, for claims in flight when
 * the table runs out; here only one process claims then): one process
 * takes rate states for the first 5000 slots alone; then two take them
 * for the next 2048, meeting at a barrier before each so that they claim
 * for it at the same moment, and the loser of each race gives its entry
 * back; then the first takes them for the other slots alone, so that
 * fresh entries run out and the clock hand, from entry 0, finds only busy
 * ones within its reach.  No entry given back may be lost: every slot
 * gets a state (none refused, nothing counted as full) and no two slots
 * share one.  Before entries were given back through kh_aret[], only the
 * hand could find them again, and the last slots were refused.
 */
#define RACE_SLOTS	(2 * KS_ACTIVE_SCAN + 64)
#define RACE_ALONE	5000
#define RACE_BOTH	2048
#define RACE_PROCS	2

/*
 * Wait until *n reaches want: spinning, so that both leave at once, and
 * yielding only after long enough that the other is surely not running.
 */
static void
race_meet(uint32_t *n, uint32_t want)
{
	uint32_t	 spins;

	for (spins = 0; __atomic_load_n(n, __ATOMIC_ACQUIRE) < want; spins++)
		if (spins > 200000)
			sched_yield();
}

static void
test_rate_claim_race(void **state)
{
	struct store	 st;
	uint32_t	*arrived, slot, e, *seen;
	int64_t		 t = 7000000;
	pid_t		 pids[RACE_PROCS];
	int		 status, p, refused;

	(void)state;
	store_open_active(&st, RACE_SLOTS, RACE_SLOTS);
	arrived = mmap(NULL, sizeof(*arrived), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(arrived != MAP_FAILED);
	*arrived = 0;
	for (p = 0; p < RACE_PROCS; p++) {
		pids[p] = fork();
		assert_true(pids[p] != -1);
		if (pids[p] != 0)
			continue;
		refused = 0;
		for (slot = 0; p == 0 && slot < RACE_ALONE; slot++)
			if (keystore_rate(&st.ks, slot, t, 1) == NULL)
				refused++;
		for (slot = RACE_ALONE; slot < RACE_ALONE + RACE_BOTH;
		    slot++) {
			__atomic_add_fetch(arrived, 1, __ATOMIC_ACQ_REL);
			race_meet(arrived, RACE_PROCS *
			    (slot - RACE_ALONE + 1));
			if (keystore_rate(&st.ks, slot, t, 1) == NULL)
				refused++;
		}
		for (slot = RACE_ALONE + RACE_BOTH; p == 0 &&
		    slot < RACE_SLOTS; slot++)
			if (keystore_rate(&st.ks, slot, t, 1) == NULL)
				refused++;
		__atomic_add_fetch(arrived, 1, __ATOMIC_ACQ_REL);
		race_meet(arrived, RACE_PROCS * (RACE_BOTH + 1));
		for (slot = 0; slot < RACE_SLOTS; slot++)
			if (keystore_rate(&st.ks, slot, t, 1) == NULL)
				refused++;
		_exit(refused > 0);
	}
	for (p = 0; p < RACE_PROCS; p++) {
		assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
		assert_true(WIFEXITED(status));
		if (WEXITSTATUS(status) != 0)
			fail_msg("process %d was refused a rate state", p);
	}
	assert_int_equal(st.ks.ks_hdr->kh_afull, 0);
	seen = calloc(RACE_SLOTS, sizeof(*seen));
	assert_non_null(seen);
	for (slot = 0; slot < RACE_SLOTS; slot++) {
		assert_non_null(keystore_rate_peek(&st.ks, slot));
		e = st.ks.ks_slots[slot].s_active;
		assert_true(e >= 1 && e <= RACE_SLOTS);
		if (seen[e - 1]++ != 0)
			fail_msg("entry %u is two slots'", e - 1);
	}
	free(seen);
	munmap(arrived, sizeof(*arrived));
	store_close(&st);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size),
		cmocka_unit_test(test_insert_lookup),
		cmocka_unit_test(test_rate_state),
		cmocka_unit_test(test_rate_churn),
		cmocka_unit_test(test_rate_claim_race),
		cmocka_unit_test(test_replace),
		cmocka_unit_test(test_delete),
		cmocka_unit_test(test_churn),
		cmocka_unit_test(test_hiwater),
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_exists),
		cmocka_unit_test(test_next),
		cmocka_unit_test(test_lock),
		cmocka_unit_test(test_repair_rewrite),
		cmocka_unit_test(test_corrupt_header),
		cmocka_unit_test(test_unterminated_strings),
		cmocka_unit_test(test_repair_create),
		cmocka_unit_test(test_repair_killed),
		cmocka_unit_test(test_crafted_hashes),
		cmocka_unit_test(test_rebuild_under_reader),
		cmocka_unit_test(test_concurrent),
		cmocka_unit_test(test_concurrent_small),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
