/*
 * libFuzzer target for the journal and snapshot loader (src/journal.c).
 *
 * The first input byte is a mode; the rest is written into a fresh
 * mkdtemp() state directory (on tmpfs when there is one):
 *
 *	mode & 1 == 0	the rest is keys.journal
 *	mode & 1 == 1	the rest up to and including the first "\n" of its
 *			first "\n\n" is keys.snapshot, what follows the
 *			"\n\n" is keys.journal (no "\n\n": all snapshot)
 *	mode & 2	a store of 4 keys instead of 64, to reach "does not
 *			fit" as well
 *
 * and journal_load() reads it into a fresh store.  A failure must say why,
 * as "keys.journal:..." or "keys.snapshot:...".  A success must be
 * stable: loading the directory again (the torn last line, if any, is cut
 * off by the first load) gives the same store, and so does compacting the
 * store (journal_compact) and loading the snapshot it wrote.  Stores are
 * compared key by key, through the id and the digest indexes.  The
 * directory is removed after each input; AddressSanitizer's leak check
 * covers every error path.
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
#include "fuzz.h"
#include "fzstore.h"

#define FZ_MAXKEYS	64
#define FZ_SMALL	4
#define FZ_NSTORES	3	/* first load, second load, after compaction */

/* Does a failed load say why, naming the file? */
static void
fz_check_error(const char *err)
{
	if (strncmp(err, "keys.journal:", 13) == 0 ||
	    strncmp(err, "keys.snapshot:", 14) == 0)
		return;
	fprintf(stderr, "bad error text: \"%s\"\n", err);
	abort();
}

/* After a good load into a: load again, compact, load again; all equal. */
static void
fz_check_loaded(struct journal *j, struct keystore *a, uint32_t max)
{
	struct keystore	 b;
	char		 err[512];
	int		 rc;

	FUZZ_ASSERT(keystore_count(a) <= max);
	if ((rc = journal_load(j, fz_store(&b, 1, max), err,
	    sizeof(err))) == -1)
		fprintf(stderr, "second load: %s\n", err);
	FUZZ_ASSERT(rc == 0);
	fz_same_store(a, &b);
	if ((rc = journal_compact(j, a, err, sizeof(err))) == -1)
		fprintf(stderr, "compaction: %s\n", err);
	FUZZ_ASSERT(rc == 0);
	FUZZ_ASSERT(journal_size(j) == 0);
	if ((rc = journal_load(j, fz_store(&b, 2, max), err,
	    sizeof(err))) == -1)
		fprintf(stderr, "load after compaction: %s\n", err);
	FUZZ_ASSERT(rc == 0);
	fz_same_store(a, &b);
}

/* Once: the store regions, and warnings (torn lines) silenced. */
static void
fz_setup(void)
{
	char	 err[256];

	FUZZ_ASSERT(log_init(LOG_TO_STDERR, LOGLEVEL_ERROR, "fuzz_journal",
	    err, sizeof(err)) == 0);
	fz_store_setup(FZ_NSTORES, FZ_MAXKEYS);
}

/* One input: write the files, load them, check the outcome. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct journal	 j;
	struct keystore	 a;
	const uint8_t	*p, *cut;
	char		 dir[64], err[512];
	uint32_t	 max;
	size_t		 n;

	if (size == 0)
		return (0);
	if (fz_mem[0] == NULL)
		fz_setup();
	snprintf(dir, sizeof(dir), "%s/fuzz_journal.XXXXXX",
	    access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	FUZZ_ASSERT(mkdtemp(dir) != NULL);
	p = data + 1;
	n = size - 1;
	if (data[0] & 1) {
		cut = memmem(p, n, "\n\n", 2);
		fz_write(dir, SNAPSHOT_FILE, p, cut != NULL ?
		    (size_t)(cut - p) + 1 : n);
		if (cut != NULL)
			fz_write(dir, JOURNAL_FILE, cut + 2,
			    n - (size_t)(cut - p) - 2);
	} else
		fz_write(dir, JOURNAL_FILE, p, n);
	max = (data[0] & 2) ? FZ_SMALL : FZ_MAXKEYS;
	FUZZ_ASSERT(journal_init(&j, dir, (uid_t)-1, (gid_t)-1) == 0);
	err[0] = '\0';
	if (journal_load(&j, fz_store(&a, 0, max), err, sizeof(err)) == -1)
		fz_check_error(err);
	else
		fz_check_loaded(&j, &a, max);
	journal_close(&j);
	fz_rmdir(dir);
	return (0);
}
