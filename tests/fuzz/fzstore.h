/*
 * What the fuzz targets of the key store's files share (fuzz_journal,
 * fuzz_snapshot, fuzz_admin): fresh stores, writing a state file, removing
 * a state directory, and comparing keys and whole stores field by field.
 */

#ifndef KG_FZSTORE_H
#define KG_FZSTORE_H

#include <dirent.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "keystore.h"
#include "fuzz.h"

/*
 * The regions of the stores a target compares, made once by
 * fz_store_setup(n) and zeroed before each use.
 */
static void	*fz_mem[4] __attribute__((unused));
static size_t	 fz_size __attribute__((unused));

static inline void
fz_store_setup(int n, uint32_t max)
{
	int	 i;

	fz_size = (keystore_size(max, max) + 63) & ~(size_t)63;
	for (i = 0; i < n && i < 4; i++)
		FUZZ_ASSERT((fz_mem[i] = aligned_alloc(64, fz_size)) != NULL);
}

/* Store i: zeroed, formatted for max keys and locked by us, as at start. */
static inline struct keystore *
fz_store(struct keystore *ks, int i, uint32_t max)
{
	memset(fz_mem[i], 0, fz_size);
	keystore_init(ks, fz_mem[i], max, max, 0x5eed + (uint64_t)i);
	FUZZ_ASSERT(keystore_lock(ks, getpid(), 1000) == KS_OK);
	return (ks);
}

/* Write n bytes of p as dir/name; abort on failure (the disk is ours). */
static inline void
fz_write(const char *dir, const char *name, const uint8_t *p, size_t n)
{
	char	 path[128];
	ssize_t	 w;
	int	 fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	FUZZ_ASSERT(fd != -1);
	while (n > 0) {
		w = write(fd, p, n);
		FUZZ_ASSERT(w > 0);
		p += w;
		n -= (size_t)w;
	}
	FUZZ_ASSERT(close(fd) == 0);
}

/* Remove every file of dir and dir itself. */
static inline void
fz_rmdir(const char *dir)
{
	struct dirent	*de;
	DIR		*d;

	d = opendir(dir);
	FUZZ_ASSERT(d != NULL);
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			FUZZ_ASSERT(unlinkat(dirfd(d), de->d_name, 0) == 0);
	closedir(d);
	FUZZ_ASSERT(rmdir(dir) == 0);
}

/* Two records of the same key must agree in every field. */
static inline void
fz_same_key(const struct ks_key *a, const struct ks_key *b)
{
	FUZZ_ASSERT(memcmp(a->k_digest, b->k_digest, KS_DIGEST_LEN) == 0);
	FUZZ_ASSERT(memcmp(a->k_old_digest, b->k_old_digest,
	    KS_DIGEST_LEN) == 0);
	FUZZ_ASSERT(a->k_grace_until == b->k_grace_until);
	FUZZ_ASSERT(a->k_created == b->k_created);
	FUZZ_ASSERT(a->k_updated == b->k_updated);
	FUZZ_ASSERT(a->k_expires == b->k_expires);
	FUZZ_ASSERT(a->k_flags == b->k_flags);
	FUZZ_ASSERT(memcmp(a->k_rate, b->k_rate, sizeof(a->k_rate)) == 0);
	FUZZ_ASSERT(strcmp(a->k_id, b->k_id) == 0);
	FUZZ_ASSERT(strcmp(a->k_prefix, b->k_prefix) == 0);
	FUZZ_ASSERT(strcmp(a->k_hint, b->k_hint) == 0);
	FUZZ_ASSERT(strcmp(a->k_name, b->k_name) == 0);
	FUZZ_ASSERT(strcmp(a->k_owner, b->k_owner) == 0);
	FUZZ_ASSERT(strcmp(a->k_app, b->k_app) == 0);
	FUZZ_ASSERT(strcmp(a->k_scopes, b->k_scopes) == 0);
}

/*
 * b must hold exactly the keys of a, equal field by field, found in b by
 * id and by digest, with the same journal sequence.
 */
static inline void
fz_same_store(const struct keystore *a, const struct keystore *b)
{
	struct ks_key	 ka, kb;
	uint32_t	 cur = 0, slot, n = 0;
	int		 old;

	FUZZ_ASSERT(a->ks_hdr->kh_applied == b->ks_hdr->kh_applied);
	FUZZ_ASSERT(keystore_count(a) == keystore_count(b));
	while (keystore_next(a, &cur, &ka, &slot) == KS_OK) {
		n++;
		FUZZ_ASSERT(keystore_find_id(b, ka.k_id, &kb, &slot) == KS_OK);
		fz_same_key(&ka, &kb);
		FUZZ_ASSERT(keystore_find_digest(b, ka.k_digest, &kb, &slot,
		    &old) == KS_OK && !old);
		FUZZ_ASSERT(strcmp(ka.k_id, kb.k_id) == 0);
	}
	FUZZ_ASSERT(n == keystore_count(a));
}

#endif /* KG_FZSTORE_H */
