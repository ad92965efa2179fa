/*
 * libFuzzer target for the binary snapshot reader (src/snapshot.c, behind
 * journal_load() in src/journal.c).
 *
 * The first input byte is a mode; the rest is keys.snapshot, written into
 * a fresh mkdtemp() state directory (on tmpfs when there is one):
 *
 *	mode & 1	the checksums are recomputed first
 *			(snapshot_fix_checksums), so that what is behind them
 *			is reached: lengths, records, the record checks,
 *			counts, the trailer
 *	mode & 2	a store of 4 keys instead of 64, to reach "max_keys
 *			is too small" and "does not fit"
 *
 * and journal_load() reads it into a fresh store.  (An input whose first
 * byte is "{" takes the JSON-lines path, fuzz_journal's ground.)  A
 * failure must say "keys.snapshot: offset N: reason" with N within the
 * file.  A success must be stable: the store compacted (the binary
 * writer) and loaded again is the same store, key by key through both
 * indexes, with the same sequence.  The directory is removed after each
 * input; AddressSanitizer's leak check covers every error path.
 */

#include <sys/types.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "journal.h"
#include "keystore.h"
#include "log.h"
#include "snapshot.h"
#include "fuzz.h"
#include "fzstore.h"

#define FZ_MAXKEYS	64
#define FZ_SMALL	4

/* A failed load names the file and an offset within it. */
static void
fz_check_error(const char *err, size_t len, int json)
{
	unsigned long long	 off;
	int			 n = 0;

	if (json && strncmp(err, "keys.snapshot:", 14) == 0)
		return;
	if (sscanf(err, "keys.snapshot: offset %llu: %n", &off, &n) == 1 &&
	    n > 0 && err[n] != '\0' && off <= len)
		return;
	fprintf(stderr, "bad error text: \"%s\" (file of %zu bytes)\n", err,
	    len);
	abort();
}

/* After a good load into a: compact, load the result; the same store. */
static void
fz_check_loaded(struct journal *j, struct keystore *a, uint32_t max)
{
	struct keystore	 b;
	char		 err[512];
	int		 rc;

	FUZZ_ASSERT(keystore_count(a) <= max);
	if ((rc = journal_compact(j, a, err, sizeof(err))) == -1)
		fprintf(stderr, "compaction: %s\n", err);
	FUZZ_ASSERT(rc == 0);
	if ((rc = journal_load(j, fz_store(&b, 1, max), err,
	    sizeof(err))) == -1)
		fprintf(stderr, "load after compaction: %s\n", err);
	FUZZ_ASSERT(rc == 0);
	FUZZ_ASSERT(journal_compact_due(j) == 0);
	fz_same_store(a, &b);
}

/* Once: the store regions; log lines silenced. */
static void
fz_setup(void)
{
	char	 err[256];

	FUZZ_ASSERT(log_init(LOG_TO_STDERR, LOGLEVEL_ERROR, "fuzz_snapshot",
	    err, sizeof(err)) == 0);
	fz_store_setup(2, FZ_MAXKEYS);
}

/* One input: write the snapshot, load it, check the outcome. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct journal	 j;
	struct keystore	 a;
	uint8_t		*snap;
	char		 dir[64], err[512];
	uint32_t	 max;
	size_t		 n;

	if (size == 0)
		return (0);
	if (fz_mem[0] == NULL)
		fz_setup();
	n = size - 1;
	FUZZ_ASSERT((snap = malloc(n > 0 ? n : 1)) != NULL);
	memcpy(snap, data + 1, n);
	if (data[0] & 1)
		snapshot_fix_checksums(snap, n);
	snprintf(dir, sizeof(dir), "%s/fuzz_snapshot.XXXXXX",
	    access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	FUZZ_ASSERT(mkdtemp(dir) != NULL);
	fz_write(dir, SNAPSHOT_FILE, snap, n);
	max = (data[0] & 2) ? FZ_SMALL : FZ_MAXKEYS;
	FUZZ_ASSERT(journal_init(&j, dir, (uid_t)-1, (gid_t)-1) == 0);
	err[0] = '\0';
	if (journal_load(&j, fz_store(&a, 0, max), err, sizeof(err)) == -1)
		fz_check_error(err, n, snapshot_is_json(snap, n));
	else
		fz_check_loaded(&j, &a, max);
	journal_close(&j);
	fz_rmdir(dir);
	free(snap);
	return (0);
}
