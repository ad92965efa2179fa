/*
 * Unit tests for key persistence (journal.c, and snapshot.c's binary
 * snapshot behind it): journal appends and replay, snapshots in both
 * formats and compaction, every kind of damage, write failures, and the
 * usage file.  Each test works in its own mkdtemp() state directory and
 * loads into a real key store (keystore.c) in ordinary memory.
 */

#include <sys/types.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "config.h"
#include "journal.h"
#include "keystore.h"
#include "log.h"
#include "snapshot.h"

#define T_ERRLEN	1024

/* A state directory, a journal handle on it and a store to write through. */
struct fix {
	char		 f_dir[64];
	struct journal	 f_j;
	struct keystore	 f_ks;
	void		*f_mem;
};

/* A zeroed, 64-byte aligned region with a store for max keys, locked by us. */
static void *
store_new(struct keystore *ks, uint32_t max)
{
	size_t	 size = (keystore_size(max, max) + 63) & ~(size_t)63;
	void	*mem;

	assert_non_null(mem = aligned_alloc(64, size));
	memset(mem, 0, size);
	keystore_init(ks, mem, max, max, 0x5eed);
	assert_int_equal(keystore_lock(ks, getpid(), 1000), KS_OK);
	return (mem);
}

/* New state directory and store (max_keys 16). */
static int
setup(void **state)
{
	struct fix	*f;

	assert_non_null(f = calloc(1, sizeof(*f)));
	snprintf(f->f_dir, sizeof(f->f_dir), "/tmp/test_journal.XXXXXX");
	assert_non_null(mkdtemp(f->f_dir));
	assert_int_equal(journal_init(&f->f_j, f->f_dir, (uid_t)-1,
	    (gid_t)-1), 0);
	assert_int_equal(f->f_j.j_fd, -1);
	f->f_mem = store_new(&f->f_ks, 16);
	*state = f;
	return (0);
}

/* Remove the state directory and everything in it. */
static int
teardown(void **state)
{
	struct fix	*f = *state;
	struct dirent	*de;
	DIR		*d;

	journal_close(&f->f_j);
	assert_non_null(d = opendir(f->f_dir));
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			assert_int_equal(unlinkat(dirfd(d), de->d_name, 0), 0);
	closedir(d);
	assert_int_equal(rmdir(f->f_dir), 0);
	free(f->f_mem);
	free(f);
	return (0);
}

/* dir/name into buf. */
static const char *
path_of(const struct fix *f, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", f->f_dir, name);
	return (buf);
}

/* Whole contents of dir/name (NUL-terminated), its size in *len. */
static char *
file_read(const struct fix *f, const char *name, size_t *len)
{
	char	 path[256], *buf;
	FILE	*fp;
	long	 n;

	assert_non_null(fp = fopen(path_of(f, name, path, sizeof(path)), "r"));
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	assert_true((n = ftell(fp)) >= 0);
	rewind(fp);
	assert_non_null(buf = malloc((size_t)n + 1));
	assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
	buf[n] = '\0';
	fclose(fp);
	if (len != NULL)
		*len = (size_t)n;
	return (buf);
}

/* Write (or append) s to dir/name. */
static void
file_write(const struct fix *f, const char *name, const char *s, int append)
{
	char	 path[256];
	FILE	*fp;

	assert_non_null(fp = fopen(path_of(f, name, path, sizeof(path)),
	    append ? "a" : "w"));
	assert_int_equal(fwrite(s, 1, strlen(s), fp), strlen(s));
	assert_int_equal(fclose(fp), 0);
}

/* Permission bits of dir/name. */
static mode_t
file_mode(const struct fix *f, const char *name)
{
	struct stat	 st;
	char		 path[256];

	assert_int_equal(stat(path_of(f, name, path, sizeof(path)), &st), 0);
	return (st.st_mode & 07777);
}

/*
 * Test key number i; the numbers vary every field: odd keys have an app,
 * scopes, an expiry, their own rate limits and are disabled; every third
 * key is in a regeneration grace period.
 */
static void
key_make(struct ks_key *k, int i)
{
	size_t	 n;

	memset(k, 0, sizeof(*k));
	snprintf(k->k_id, sizeof(k->k_id), "key_Test%012d", i);
	for (n = 0; n < KS_DIGEST_LEN; n++)
		k->k_digest[n] = (uint8_t)(i * 31 + n + 1);
	snprintf(k->k_name, sizeof(k->k_name), "Key \"number\" %d \xc3\xa9", i);
	snprintf(k->k_owner, sizeof(k->k_owner), "user-%d", i);
	snprintf(k->k_prefix, sizeof(k->k_prefix), "%s", i % 2 ? "live" :
	    "test0");
	snprintf(k->k_hint, sizeof(k->k_hint), "%.5s_...%04u", k->k_prefix,
	    (unsigned)i % 10000);
	k->k_created = 1700000000000LL + i;
	k->k_updated = k->k_created + 5;
	if (i % 2) {
		snprintf(k->k_app, sizeof(k->k_app), "app-%d", i);
		snprintf(k->k_scopes, sizeof(k->k_scopes),
		    "contacts:read contacts:write");
		k->k_expires = k->k_created + 86400000;
		k->k_flags = KS_F_DISABLED;
		k->k_rate[KS_W1S] = 5;
		k->k_rate[KS_W10S] = 50;
		k->k_rate[KS_W60S] = 4000000000U;
	}
	if (i % 3 == 0) {
		for (n = 0; n < KS_DIGEST_LEN; n++)
			k->k_old_digest[n] = (uint8_t)(0xff - n - i);
		k->k_grace_until = k->k_created + 60000;
	}
}

/* Every field of a and b is the same. */
static void
key_equal(const struct ks_key *a, const struct ks_key *b)
{
	assert_memory_equal(a->k_digest, b->k_digest, KS_DIGEST_LEN);
	assert_memory_equal(a->k_old_digest, b->k_old_digest, KS_DIGEST_LEN);
	assert_int_equal(a->k_grace_until, b->k_grace_until);
	assert_int_equal(a->k_created, b->k_created);
	assert_int_equal(a->k_updated, b->k_updated);
	assert_int_equal(a->k_expires, b->k_expires);
	assert_int_equal(a->k_flags, b->k_flags);
	assert_memory_equal(a->k_rate, b->k_rate, sizeof(a->k_rate));
	assert_string_equal(a->k_id, b->k_id);
	assert_string_equal(a->k_prefix, b->k_prefix);
	assert_string_equal(a->k_hint, b->k_hint);
	assert_string_equal(a->k_name, b->k_name);
	assert_string_equal(a->k_owner, b->k_owner);
	assert_string_equal(a->k_app, b->k_app);
	assert_string_equal(a->k_scopes, b->k_scopes);
}

/* The store holds a key equal to want. */
static void
store_has(const struct keystore *ks, const struct ks_key *want)
{
	struct ks_key	 k;
	uint32_t	 slot;

	if (keystore_find_id(ks, want->k_id, &k, &slot) != KS_OK)
		fail_msg("key %s is missing", want->k_id);
	key_equal(&k, want);
}

/* Journal key i with seq, and store it the way the admin API does. */
static void
put_key(struct fix *f, uint64_t seq, int i, struct ks_key *k)
{
	struct ks_key	 tmp;
	char		 err[T_ERRLEN];

	if (k == NULL)
		k = &tmp;
	key_make(k, i);
	if (journal_put(&f->f_j, seq, k, err, sizeof(err)) == -1)
		fail_msg("journal_put: %s", err);
	assert_int_equal(keystore_put(&f->f_ks, k, seq), KS_OK);
}

/* Journal and apply the deletion of key i. */
static void
del_key(struct fix *f, uint64_t seq, int i)
{
	struct ks_key	 k;
	char		 err[T_ERRLEN];

	key_make(&k, i);
	if (journal_del(&f->f_j, seq, k.k_id, err, sizeof(err)) == -1)
		fail_msg("journal_del: %s", err);
	assert_int_equal(keystore_del(&f->f_ks, k.k_id, seq), KS_OK);
}

/* Load the state directory, as a fresh start would, into a new store. */
static int
reload(struct fix *f, uint32_t max, struct keystore *ks, void **mem,
    char *err)
{
	struct journal	 j;
	int		 rc;

	*mem = store_new(ks, max);
	assert_int_equal(journal_init(&j, f->f_dir, (uid_t)-1, (gid_t)-1), 0);
	err[0] = '\0';
	rc = journal_load(&j, ks, err, T_ERRLEN);
	journal_close(&j);
	return (rc);
}

/*
 * The state directory loads into a store (as large as f's) that matches
 * f's store exactly.
 */
static void
reload_same(struct fix *f)
{
	struct keystore	 ks;
	struct ks_key	 k;
	char		 err[T_ERRLEN];
	void		*mem;
	uint32_t	 cursor = 0, slot;

	if (reload(f, f->f_ks.ks_max_keys, &ks, &mem, err) == -1)
		fail_msg("journal_load: %s", err);
	assert_int_equal(keystore_count(&ks), keystore_count(&f->f_ks));
	while (keystore_next(&f->f_ks, &cursor, &k, &slot) == KS_OK)
		store_has(&ks, &k);
	assert_int_equal(ks.ks_hdr->kh_applied, f->f_ks.ks_hdr->kh_applied);
	free(mem);
}

/* Loading the state directory fails with exactly want. */
static void
reload_fails(struct fix *f, uint32_t max, const char *want)
{
	struct keystore	 ks;
	char		 err[T_ERRLEN];
	void		*mem;

	if (reload(f, max, &ks, &mem, err) != -1)
		fail_msg("loaded, expected \"%s\"", want);
	if (strcmp(err, want) != 0)
		fail_msg("error \"%s\", expected \"%s\"", err, want);
	free(mem);
}

/* Puts, replacements and deletions replay into identical records. */
static void
test_round_trip(void **state)
{
	struct fix	*f = *state;
	struct ks_key	 k;
	char		*text;

	put_key(f, 1, 1, NULL);
	put_key(f, 2, 2, NULL);
	put_key(f, 3, 3, NULL);
	put_key(f, 4, 6, NULL);
	del_key(f, 5, 2);
	/* A replacement of key 1: same id, everything else new. */
	key_make(&k, 9);
	memcpy(k.k_id, "key_Test000000000001", KS_ID_LEN);
	k.k_scopes[0] = '\0';
	assert_int_equal(journal_put(&f->f_j, 6, &k, (char[T_ERRLEN]){ 0 },
	    T_ERRLEN), 0);
	assert_int_equal(keystore_put(&f->f_ks, &k, 6), KS_OK);
	assert_int_equal(keystore_count(&f->f_ks), 3);
	reload_same(f);
	assert_int_equal(file_mode(f, JOURNAL_FILE), 0600);

	/* Nulls for "none", digests in hex, scopes as an array, no secrets. */
	text = file_read(f, JOURNAL_FILE, NULL);
	assert_non_null(strstr(text, "{\"seq\":1,\"op\":\"put\",\"key\":{"
	    "\"id\":\"key_Test000000000001\",\"digest\":\"20212223"));
	assert_non_null(strstr(text, "\"old_digest\":null,\"grace_until\":"
	    "null"));
	assert_non_null(strstr(text, "\"expires\":null,\"disabled\":false,"
	    "\"rate\":[0,0,0]}}\n"));
	assert_non_null(strstr(text, "\"scopes\":[\"contacts:read\","
	    "\"contacts:write\"]"));
	assert_non_null(strstr(text, "\"scopes\":[]"));
	assert_non_null(strstr(text,
	    "{\"seq\":5,\"op\":\"del\",\"id\":\"key_Test000000000002\"}\n"));
	free(text);
}

/* A compaction writes the store to the snapshot and empties the journal. */
static void
test_compact(void **state)
{
	struct fix	*f = *state;
	char		 err[T_ERRLEN], path[256];

	put_key(f, 1, 1, NULL);
	put_key(f, 2, 2, NULL);
	put_key(f, 3, 3, NULL);
	del_key(f, 4, 1);
	assert_true(journal_size(&f->f_j) > 0);
	assert_int_equal(journal_snapshot_size(&f->f_j), 0);
	if (journal_compact(&f->f_j, &f->f_ks, err, sizeof(err)) == -1)
		fail_msg("journal_compact: %s", err);
	assert_int_equal(journal_size(&f->f_j), 0);
	assert_true(journal_snapshot_size(&f->f_j) > 0);
	assert_int_equal(file_mode(f, SNAPSHOT_FILE), 0600);
	assert_int_equal(access(path_of(f, SNAPSHOT_FILE ".tmp", path,
	    sizeof(path)), F_OK), -1);
	reload_same(f);

	/* Appends after the compaction go on from the snapshot. */
	put_key(f, 5, 4, NULL);
	del_key(f, 6, 2);
	reload_same(f);

	/* A second compaction replaces the first snapshot. */
	if (journal_compact(&f->f_j, &f->f_ks, err, sizeof(err)) == -1)
		fail_msg("journal_compact: %s", err);
	assert_int_equal(journal_size(&f->f_j), 0);
	reload_same(f);
}

/*
 * A compaction that died between the snapshot's rename and the journal's
 * truncation leaves the old lines: they are skipped.  With max_keys 2 the
 * old lines would not even fit on top of the snapshot's key.
 */
static void
test_compact_crash(void **state)
{
	struct fix	*f = *state;
	struct keystore	 ks;
	struct ks_key	 k;
	char		 err[T_ERRLEN], *old;
	void		*mem;

	put_key(f, 1, 1, NULL);
	put_key(f, 2, 2, NULL);
	del_key(f, 3, 1);
	del_key(f, 4, 2);
	put_key(f, 5, 3, NULL);
	old = file_read(f, JOURNAL_FILE, NULL);
	if (journal_compact(&f->f_j, &f->f_ks, err, sizeof(err)) == -1)
		fail_msg("journal_compact: %s", err);
	file_write(f, JOURNAL_FILE, old, 1);
	free(old);
	put_key(f, 6, 4, &k);

	if (reload(f, 2, &ks, &mem, err) == -1)
		fail_msg("journal_load: %s", err);
	assert_int_equal(keystore_count(&ks), 2);
	store_has(&ks, &k);
	key_make(&k, 3);
	store_has(&ks, &k);
	assert_int_equal(ks.ks_hdr->kh_applied, 6);
	free(mem);

	/* Only skipped lines: kh_applied is the snapshot's seq. */
	if (journal_compact(&f->f_j, &f->f_ks, err, sizeof(err)) == -1)
		fail_msg("journal_compact: %s", err);
	file_write(f, JOURNAL_FILE, "{\"seq\":6,\"op\":\"del\",\"id\":"
	    "\"key_Test000000000003\"}\n", 0);
	if (reload(f, 2, &ks, &mem, err) == -1)
		fail_msg("journal_load: %s", err);
	assert_int_equal(keystore_count(&ks), 2);
	assert_int_equal(ks.ks_hdr->kh_applied, 6);
	free(mem);
}

/*
 * A compaction that fails (the temporary file cannot be written; a record
 * the loader would refuse) removes its temporary file and leaves the
 * snapshot and the journal exactly as they were.
 */
static void
test_compact_fails(void **state)
{
	struct fix	*f = *state;
	struct rlimit	 old, lim;
	struct ks_key	 k;
	char		 err[T_ERRLEN], path[256], *snap, *jnl, *s2, *j2;
	size_t		 slen, s2len;
	int		 rc;

	put_key(f, 1, 1, NULL);
	put_key(f, 2, 2, NULL);
	if (journal_compact(&f->f_j, &f->f_ks, err, sizeof(err)) == -1)
		fail_msg("journal_compact: %s", err);
	put_key(f, 3, 3, NULL);
	del_key(f, 4, 1);
	snap = file_read(f, SNAPSHOT_FILE, &slen);
	jnl = file_read(f, JOURNAL_FILE, NULL);

	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 100;
	assert_true(signal(SIGXFSZ, SIG_IGN) != SIG_ERR);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	rc = journal_compact(&f->f_j, &f->f_ks, err, sizeof(err));
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_DFL);
	assert_int_equal(rc, -1);
	assert_string_equal(err, "keys.snapshot.tmp: File too large");

	/* A record that bypassed the journal and would not load back. */
	key_make(&k, 5);
	memcpy(k.k_prefix, "UP", 3);
	assert_int_equal(keystore_put(&f->f_ks, &k, 5), KS_OK);
	assert_int_equal(journal_compact(&f->f_j, &f->f_ks, err, sizeof(err)),
	    -1);
	assert_string_equal(err, "keys.snapshot: key key_Test000000000005: "
	    "field \"prefix\" is not [a-z0-9]{1,12}");
	assert_int_equal(keystore_del(&f->f_ks, k.k_id, 4), KS_OK);

	assert_int_equal(access(path_of(f, SNAPSHOT_FILE ".tmp", path,
	    sizeof(path)), F_OK), -1);
	s2 = file_read(f, SNAPSHOT_FILE, &s2len);
	j2 = file_read(f, JOURNAL_FILE, NULL);
	assert_int_equal(s2len, slen);
	assert_memory_equal(s2, snap, slen);
	assert_string_equal(j2, jnl);
	free(snap);
	free(jnl);
	free(s2);
	free(j2);
	reload_same(f);
}

/* A torn last line is dropped with a warning, cut off, and appends go on. */
static void
test_torn_tail(void **state)
{
	struct fix	*f = *state;
	struct keystore	 ks;
	char		 err[T_ERRLEN], path[256], *log, *before;
	size_t		 len, size;
	void		*mem;

	put_key(f, 1, 1, NULL);
	put_key(f, 2, 2, NULL);
	before = file_read(f, JOURNAL_FILE, &size);
	file_write(f, JOURNAL_FILE, "{\"seq\":3,\"op\":\"put\",\"key\":{\"id\"",
	    1);
	assert_int_equal(log_init(path_of(f, "log", path, sizeof(path)),
	    LOGLEVEL_WARN, "test", err, sizeof(err)), 0);
	if (reload(f, 16, &ks, &mem, err) == -1)
		fail_msg("journal_load: %s", err);
	assert_int_equal(log_init(LOG_TO_STDERR, LOGLEVEL_WARN, "test", err,
	    sizeof(err)), 0);
	assert_int_equal(keystore_count(&ks), 2);
	assert_int_equal(ks.ks_hdr->kh_applied, 2);
	free(mem);
	log = file_read(f, "log", NULL);
	assert_non_null(strstr(log, "keys.journal:3: dropping a torn last "
	    "line (an interrupted write)\n"));
	free(log);
	log = file_read(f, JOURNAL_FILE, &len);
	assert_int_equal(len, size);
	assert_string_equal(log, before);
	free(log);
	free(before);

	/* The next append starts a clean line. */
	put_key(f, 3, 3, NULL);
	reload_same(f);

	/* A complete JSON object without its newline is torn all the same. */
	size = (size_t)journal_size(&f->f_j);
	file_write(f, JOURNAL_FILE, "{\"seq\":4,\"op\":\"del\",\"id\":"
	    "\"key_Test000000000001\"}", 1);
	reload_same(f);
	assert_int_equal(journal_size(&f->f_j), size);
}

/* Repair after a writer died: cut a torn tail, apply lines past kh_applied. */
static void
test_replay_tail(void **state)
{
	struct fix	*f = *state;
	struct ks_key	 k1, k3, mod;
	char		 err[T_ERRLEN];
	off_t		 size;

	put_key(f, 1, 1, &k1);
	put_key(f, 2, 2, NULL);
	/* Memory now differs from line 1, which replay must not apply again. */
	mod = k1;
	snprintf(mod.k_name, sizeof(mod.k_name), "changed in memory");
	assert_int_equal(keystore_put(&f->f_ks, &mod, 2), KS_OK);
	/* A writer journaled seq 3 and died before storing it ... */
	key_make(&k3, 3);
	assert_int_equal(journal_put(&f->f_j, 3, &k3, err, sizeof(err)), 0);
	size = journal_size(&f->f_j);
	/* ... and the next one died in the middle of its line. */
	file_write(f, JOURNAL_FILE, "{\"seq\":4,\"op\":\"d", 1);
	if (journal_replay_tail(&f->f_j, &f->f_ks, err, sizeof(err)) == -1)
		fail_msg("journal_replay_tail: %s", err);
	assert_int_equal(journal_size(&f->f_j), size);
	assert_int_equal(f->f_ks.ks_hdr->kh_applied, 3);
	assert_int_equal(keystore_count(&f->f_ks), 3);
	store_has(&f->f_ks, &k3);
	store_has(&f->f_ks, &mod);

	/* Nothing new: nothing changes. */
	assert_int_equal(journal_replay_tail(&f->f_j, &f->f_ks, err,
	    sizeof(err)), 0);
	assert_int_equal(f->f_ks.ks_hdr->kh_applied, 3);
	assert_int_equal(keystore_count(&f->f_ks), 3);
}

/* Replace line n (1-based) of the journal with s (no newline). */
static void
journal_set_line(struct fix *f, int n, const char *s)
{
	char	*text, *p, *e, *out;
	size_t	 len;
	int	 i;

	text = file_read(f, JOURNAL_FILE, &len);
	for (p = text, i = 1; i < n; i++) {
		assert_non_null(p = strchr(p, '\n'));
		p++;
	}
	assert_non_null(e = strchr(p, '\n'));
	assert_non_null(out = malloc(len + strlen(s) + 1));
	memcpy(out, text, (size_t)(p - text));
	strcpy(out + (p - text), s);
	strcat(out, e);
	file_write(f, JOURNAL_FILE, out, 0);
	free(out);
	free(text);
}

/* A complete line that is not JSON stops the load, naming the line. */
static void
test_bad_json(void **state)
{
	struct fix	*f = *state;
	char		*before, *after;

	put_key(f, 1, 1, NULL);
	put_key(f, 2, 2, NULL);
	put_key(f, 3, 3, NULL);
	journal_set_line(f, 2, "{\"seq\":2,\"op\":\"put\",\"key\":{");
	before = file_read(f, JOURNAL_FILE, NULL);
	reload_fails(f, 16, "keys.journal:2: bad JSON: string or '}' "
	    "expected near end of file (column 27)");
	/* A failed load changes nothing on disk. */
	after = file_read(f, JOURNAL_FILE, NULL);
	assert_string_equal(before, after);
	free(before);
	free(after);

	/* At the end, with its newline, it is damage too, not a torn line. */
	journal_set_line(f, 2, "{\"seq\":2,\"op\":\"del\",\"id\":"
	    "\"key_Test000000000001\"}");
	journal_set_line(f, 3, "{\"seq\":3,,}");
	reload_fails(f, 16, "keys.journal:3: bad JSON: string or '}' expected "
	    "near ',' (column 10)");
	journal_set_line(f, 3, "");
	reload_fails(f, 16, "keys.journal:3: bad JSON: '[' or '{' expected "
	    "near end of file (column 0)");
	journal_set_line(f, 3, "[3]");
	reload_fails(f, 16, "keys.journal:3: not a JSON object");
	journal_set_line(f, 3, "{\"seq\":3,\"seq\":4}");
	reload_fails(f, 16, "keys.journal:3: bad JSON: duplicate object key "
	    "near '\"seq\"' (column 14)");
}

/* Journal line 2 of three with one member changed; the error it gives. */
static void
bad_field(struct fix *f, const char *member, const char *value,
    const char *want)
{
	json_error_t	 jerr;
	json_t		*line, *obj;
	char		*text, *s, msg[T_ERRLEN];
	const char	*name = member;

	text = file_read(f, JOURNAL_FILE, NULL);
	*strchr(strchr(text, '\n') + 1, '\n') = '\0';
	line = json_loads(strchr(text, '\n') + 1, 0, &jerr);
	assert_non_null(line);
	obj = line;
	if (strncmp(member, "key.", 4) == 0) {
		obj = json_object_get(line, "key");
		name = member + 4;
	}
	if (value == NULL)
		assert_int_equal(json_object_del(obj, name), 0);
	else
		assert_int_equal(json_object_set_new(obj, name,
		    json_loads(value, JSON_DECODE_ANY, &jerr)), 0);
	assert_non_null(s = json_dumps(line, JSON_COMPACT));
	journal_set_line(f, 2, s);
	snprintf(msg, sizeof(msg), "keys.journal:2: %s", want);
	reload_fails(f, 16, msg);
	/* Put the original line back for the next case. */
	journal_set_line(f, 2, strchr(text, '\n') + 1);
	free(s);
	free(text);
	json_decref(line);
}

/* Every field is checked; the error names the first bad one. */
static void
test_bad_field(void **state)
{
	static const struct {
		const char	*member, *value, *want;
	} t[] = {
		{ "key.owner", "5", "field \"owner\" is not a string" },
		{ "key.name", "\"" "0123456789012345678901234567890123456789"
		    "01234567890123456789012345678901234567890123456789"
		    "0123456789x\"",
		    "field \"name\" is too long (101 bytes, at most 100)" },
		{ "key.app_id", "null", "field \"app_id\" is not a string" },
		{ "key.hint", "\"live_...0123456789abc\"",
		    "field \"hint\" is too long (21 bytes, at most 20)" },
		{ "key.id", "\"key_short\"", "field \"id\" is not a key id" },
		{ "key.id", "\"key_0123456789abcde!\"",
		    "field \"id\" is not a key id" },
		{ "key.id", "\"kez_0123456789abcdef\"",
		    "field \"id\" is not a key id" },
		{ "key.prefix", "\"Live\"",
		    "field \"prefix\" is not [a-z0-9]{1,12}" },
		{ "key.prefix", "\"\"",
		    "field \"prefix\" is not [a-z0-9]{1,12}" },
		{ "key.digest", "\"abc\"",
		    "field \"digest\" is not 64 hex digits" },
		{ "key.digest", "\"0123456789abcdef0123456789abcdef"
		    "0123456789abcdef0123456789abcdeg\"",
		    "field \"digest\" is not 64 hex digits" },
		{ "key.digest", "null", "field \"digest\" is not a string" },
		{ "key.old_digest", "5",
		    "field \"old_digest\" is not a string or null" },
		{ "key.grace_until", "\"soon\"",
		    "field \"grace_until\" is not an integer or null" },
		{ "key.grace_until", "1700000000000",
		    "field \"grace_until\" is set but \"old_digest\" is null" },
		{ "key.scopes", "\"a b\"", "field \"scopes\" is not an array" },
		{ "key.scopes", "[\"a\",1]",
		    "field \"scopes\" holds a non-string" },
		{ "key.scopes", "[\"a b\"]",
		    "field \"scopes\" holds an empty scope or one with a "
		    "space" },
		{ "key.scopes", "[\"\"]",
		    "field \"scopes\" holds an empty scope or one with a "
		    "space" },
		{ "key.rate", "[1,2]", "field \"rate\" is not an array of 3 "
		    "integers from 0 to 4294967295" },
		{ "key.rate", "[1,2,-1]", "field \"rate\" is not an array of 3 "
		    "integers from 0 to 4294967295" },
		{ "key.rate", "[1,2,4294967296]", "field \"rate\" is not an "
		    "array of 3 integers from 0 to 4294967295" },
		{ "key.disabled", "\"no\"",
		    "field \"disabled\" is not true or false" },
		{ "key.created", NULL, "field \"created\" is missing" },
		{ "key.created", "-1", "field \"created\" is below 0" },
		{ "key.updated", "1.5", "field \"updated\" is not an integer" },
		{ "key.expires", "0", "field \"expires\" is below 1" },
		{ "key.color", "\"red\"", "unknown field \"color\"" },
		{ "seq", "0", "field \"seq\" is below 1" },
		{ "seq", "\"2\"", "field \"seq\" is not an integer" },
		{ "op", "\"upd\"", "field \"op\" is not \"put\" or \"del\"" },
		{ "op", NULL, "field \"op\" is missing" },
		{ "key", NULL, "field \"key\" is missing" },
		{ "key", "[]", "field \"key\" is not an object" },
		{ "id", "\"key_Test000000000001\"", "unknown field \"id\"" },
	};
	struct fix	*f = *state;
	char		 scopes[300];
	size_t		 i;

	put_key(f, 1, 1, NULL);
	put_key(f, 2, 2, NULL);
	put_key(f, 3, 3, NULL);
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		bad_field(f, t[i].member, t[i].value, t[i].want);
	/* Scopes longer than KS_SCOPES_MAX once joined. */
	snprintf(scopes, sizeof(scopes), "[\"%0200d\",\"%055d\"]", 0, 0);
	bad_field(f, "key.scopes", scopes, "field \"scopes\" is too long (at "
	    "most 255 bytes joined)");
	reload_same(f);

	/* A del line: an id and nothing else. */
	del_key(f, 4, 1);
	journal_set_line(f, 4, "{\"seq\":4,\"op\":\"del\",\"id\":\"key_1\"}");
	reload_fails(f, 16, "keys.journal:4: field \"id\" is not a key id");
	journal_set_line(f, 4, "{\"seq\":4,\"op\":\"del\"}");
	reload_fails(f, 16, "keys.journal:4: field \"id\" is missing");
}

/* The name of the one keys.journal.damaged-* file in f's directory. */
static void
damaged_name(const struct fix *f, char *name, size_t len)
{
	struct dirent	*de;
	DIR		*d;
	int		 n = 0;

	assert_non_null(d = opendir(f->f_dir));
	while ((de = readdir(d)) != NULL)
		if (strncmp(de->d_name, JOURNAL_FILE ".damaged-",
		    strlen(JOURNAL_FILE ".damaged-")) == 0) {
			assert_true(strlen(de->d_name) < len);
			memcpy(name, de->d_name, strlen(de->d_name) + 1);
			n++;
		}
	closedir(d);
	assert_int_equal(n, 1);
}

/*
 * Two writers appended (issue 10, item 15: a worker of a master killed by
 * SIGKILL went on writing after a new master compacted): seqs 3, 4, 5
 * then 3, 4 again.  The load does not fail: every line is kept in file
 * order, those from the first backward seq renumbered 6, 7; the file as
 * it was is copied to keys.journal.damaged-TIME; a replay of the tail
 * later skips the same lines; a put whose digest another key has is
 * dropped.  (The old code refused to start: "seq 3 goes backwards".)
 */
static void
test_seq_repair(void **state)
{
	struct fix	*f = *state;
	struct keystore	 ks;
	struct ks_key	 k, dup;
	char		 err[T_ERRLEN], name[64], *orig, *copy;
	void		*mem;
	size_t		 olen, clen;

	put_key(f, 1, 1, NULL);
	put_key(f, 2, 2, NULL);
	if (journal_compact(&f->f_j, &f->f_ks, err, sizeof(err)) == -1)
		fail_msg("journal_compact: %s", err);
	/* The orphaned worker: 3, 4, 5 (the last deletes key 1). */
	put_key(f, 3, 3, NULL);
	put_key(f, 4, 4, NULL);
	del_key(f, 5, 1);
	/* The new master's worker, which started from seq 2. */
	key_make(&k, 5);
	assert_int_equal(journal_put(&f->f_j, 3, &k, err, sizeof(err)), 0);
	key_make(&k, 6);
	assert_int_equal(journal_put(&f->f_j, 4, &k, err, sizeof(err)), 0);
	orig = file_read(f, JOURNAL_FILE, &olen);

	if (reload(f, 16, &ks, &mem, err) == -1)
		fail_msg("journal_load: %s", err);
	assert_int_equal(keystore_count(&ks), 5);	/* 2, 3, 4, 5, 6 */
	key_make(&k, 1);
	assert_int_equal(keystore_find_id(&ks, k.k_id, &k, NULL), KS_NOTFOUND);
	key_make(&k, 6);
	store_has(&ks, &k);
	assert_int_equal(ks.ks_hdr->kh_applied, 7);
	/* The original is kept, byte for byte; the journal is left as is. */
	damaged_name(f, name, sizeof(name));
	copy = file_read(f, name, &clen);
	assert_int_equal(clen, olen);
	assert_memory_equal(copy, orig, olen);
	assert_int_equal(file_mode(f, name), 0600);
	free(copy);
	copy = file_read(f, JOURNAL_FILE, &clen);
	assert_int_equal(clen, olen);
	free(copy);
	/* Renumbering depends on the file only: a tail replay skips it all. */
	if (journal_replay_tail(&f->f_j, &ks, err, sizeof(err)) == -1)
		fail_msg("journal_replay_tail: %s", err);
	assert_int_equal(ks.ks_hdr->kh_applied, 7);
	assert_int_equal(keystore_count(&ks), 5);
	/* An append after the repair (seq 8) comes after the renumbered. */
	key_make(&k, 7);
	assert_int_equal(journal_put(&f->f_j, 8, &k, err, sizeof(err)), 0);
	if (journal_replay_tail(&f->f_j, &ks, err, sizeof(err)) == -1)
		fail_msg("journal_replay_tail: %s", err);
	assert_int_equal(ks.ks_hdr->kh_applied, 8);
	store_has(&ks, &k);
	free(mem);

	/* A put whose digest belongs to another key is dropped, not fatal. */
	key_make(&dup, 8);
	key_make(&k, 3);
	memcpy(dup.k_digest, k.k_digest, KS_DIGEST_LEN);
	assert_int_equal(journal_put(&f->f_j, 9, &dup, err, sizeof(err)), 0);
	if (reload(f, 16, &ks, &mem, err) == -1)
		fail_msg("journal_load: %s", err);
	assert_int_equal(keystore_count(&ks), 6);
	assert_int_equal(keystore_find_id(&ks, dup.k_id, &k, NULL),
	    KS_NOTFOUND);
	assert_int_equal(ks.ks_hdr->kh_applied, 9);
	free(mem);
	free(orig);
}

/* A file outside the state directory that must never change. */
struct victim {
	char		 v_path[64];
	struct stat	 v_st;
};

#define VICTIM_TEXT	"root's precious file\n"

/* Create the victim: root's (when we are root), mode 0644, VICTIM_TEXT. */
static void
victim_make(struct victim *v)
{
	int	 fd;

	snprintf(v->v_path, sizeof(v->v_path), "/tmp/test_journal_v.XXXXXX");
	assert_true((fd = mkstemp(v->v_path)) != -1);
	assert_int_equal(write(fd, VICTIM_TEXT, strlen(VICTIM_TEXT)),
	    (ssize_t)strlen(VICTIM_TEXT));
	assert_int_equal(fchmod(fd, 0644), 0);
	assert_int_equal(fstat(fd, &v->v_st), 0);
	close(fd);
}

/* The victim is as it was made: owner, mode, size and bytes. */
static void
victim_untouched(const struct victim *v)
{
	struct stat	 st;
	char		 buf[64];
	int		 fd;

	assert_int_equal(stat(v->v_path, &st), 0);
	assert_int_equal(st.st_uid, v->v_st.st_uid);
	assert_int_equal(st.st_gid, v->v_st.st_gid);
	assert_int_equal(st.st_mode, v->v_st.st_mode);
	assert_int_equal(st.st_size, (off_t)strlen(VICTIM_TEXT));
	assert_true((fd = open(v->v_path, O_RDONLY)) != -1);
	assert_int_equal(read(fd, buf, sizeof(buf)),
	    (ssize_t)strlen(VICTIM_TEXT));
	close(fd);
	assert_memory_equal(buf, VICTIM_TEXT, strlen(VICTIM_TEXT));
}

/* err holds want. */
static void
err_has(const char *err, const char *want)
{
	if (strstr(err, want) == NULL)
		fail_msg("error \"%s\" does not say \"%s\"", err, want);
}

/*
 * A handle as the root master has it: files it creates go to another
 * user (nobody's uid when we are root; nothing changes otherwise).
 */
static void
root_handle(struct fix *f, struct journal *j)
{
	uid_t	 uid = geteuid() == 0 ? 65534 : (uid_t)-1;

	assert_int_equal(journal_init(j, f->f_dir, uid, (gid_t)uid), 0);
}

/*
 * The worker user owns state_dir and can put a symbolic link there under
 * any name (issue 10, item 4).  keys.journal -> a file of root's: every
 * use (append, load, compaction) is refused, saying it is a symbolic
 * link, and the file is neither chowned nor truncated nor appended to.
 * keys.snapshot and keys.usage links are refused when read and replaced
 * (the link, not its target) when written; so are the temporary files.
 */
static void
test_symlink_refused(void **state)
{
	struct fix	*f = *state;
	struct journal	 j;
	struct victim	 v;
	struct ks_key	 k;
	char		 err[T_ERRLEN], path[256];
	void		*mem;
	struct keystore	 ks;
	struct stat	 st;

	victim_make(&v);
	root_handle(f, &j);
	put_key(f, 1, 1, &k);
	assert_int_equal(unlink(path_of(f, JOURNAL_FILE, path, sizeof(path))),
	    0);
	assert_int_equal(symlink(v.v_path, path), 0);
	/* Append, load, compact. */
	assert_int_equal(journal_put(&j, 2, &k, err, sizeof(err)), -1);
	err_has(err, "keys.journal: a symbolic link (refused");
	journal_close(&j);
	root_handle(f, &j);
	assert_int_equal(reload(f, 16, &ks, &mem, err), -1);
	err_has(err, "keys.journal: a symbolic link (refused");
	free(mem);
	assert_int_equal(journal_compact(&j, &f->f_ks, err, sizeof(err)), -1);
	err_has(err, "keys.journal: a symbolic link (refused");
	victim_untouched(&v);
	assert_int_equal(unlink(path), 0);

	/* keys.snapshot: refused when read, the link replaced when written. */
	path_of(f, SNAPSHOT_FILE, path, sizeof(path));
	assert_int_equal(unlink(path), 0);
	assert_int_equal(symlink(v.v_path, path), 0);
	assert_int_equal(reload(f, 16, &ks, &mem, err), -1);
	err_has(err, "keys.snapshot: a symbolic link (refused");
	free(mem);
	assert_int_equal(symlink(v.v_path, path_of(f, SNAPSHOT_FILE ".tmp",
	    path, sizeof(path))), 0);
	if (journal_compact(&j, &f->f_ks, err, sizeof(err)) == -1)
		fail_msg("journal_compact: %s", err);
	assert_int_equal(lstat(path_of(f, SNAPSHOT_FILE, path, sizeof(path)),
	    &st), 0);
	assert_true(S_ISREG(st.st_mode));
	victim_untouched(&v);

	/* keys.usage and its temporary file, the same. */
	assert_int_equal(symlink(v.v_path, path_of(f, USAGE_FILE, path,
	    sizeof(path))), 0);
	assert_int_equal(journal_load_usage(&j, &f->f_ks, err, sizeof(err)),
	    -1);
	err_has(err, "keys.usage: a symbolic link (refused");
	assert_int_equal(symlink(v.v_path, path_of(f, USAGE_FILE ".tmp", path,
	    sizeof(path))), 0);
	keystore_count_use(&f->f_ks, 0, 1, 1700000000000LL);
	if (journal_save_usage(&j, &f->f_ks, err, sizeof(err)) == -1)
		fail_msg("journal_save_usage: %s", err);
	assert_int_equal(lstat(path_of(f, USAGE_FILE, path, sizeof(path)),
	    &st), 0);
	assert_true(S_ISREG(st.st_mode));
	victim_untouched(&v);
	journal_close(&j);
	assert_int_equal(unlink(v.v_path), 0);
}

/*
 * The other things the worker user could leave in state_dir: a hard link
 * to root's file (refused by its link count, untouched), a FIFO (refused
 * at once, no hang), a file of a third user (refused, when we are root to
 * make one), and state_dir itself a symbolic link (refused).
 */
static void
test_state_files_checked(void **state)
{
	struct fix	*f = *state;
	struct journal	 j;
	struct victim	 v;
	struct ks_key	 k;
	char		 err[T_ERRLEN], path[256], link_dir[80];
	void		*mem;
	struct keystore	 ks;
	int		 fd;

	victim_make(&v);
	root_handle(f, &j);
	key_make(&k, 1);
	assert_int_equal(link(v.v_path, path_of(f, JOURNAL_FILE, path,
	    sizeof(path))), 0);
	assert_int_equal(journal_put(&j, 1, &k, err, sizeof(err)), -1);
	err_has(err, "keys.journal: has 2 hard links (refused");
	assert_int_equal(reload(f, 16, &ks, &mem, err), -1);
	err_has(err, "keys.journal: has 2 hard links (refused");
	free(mem);
	victim_untouched(&v);
	assert_int_equal(unlink(path), 0);

	assert_int_equal(mkfifo(path_of(f, SNAPSHOT_FILE, path, sizeof(path)),
	    0600), 0);
	assert_int_equal(reload(f, 16, &ks, &mem, err), -1);
	err_has(err, "keys.snapshot: not a regular file (refused)");
	free(mem);
	assert_int_equal(unlink(path), 0);

	if (geteuid() == 0) {
		fd = open(path_of(f, JOURNAL_FILE, path, sizeof(path)),
		    O_WRONLY | O_CREAT | O_EXCL, 0600);
		assert_true(fd != -1);
		assert_int_equal(fchown(fd, 12345, 12345), 0);
		close(fd);
		assert_int_equal(journal_put(&j, 1, &k, err, sizeof(err)), -1);
		err_has(err, "keys.journal: owned by uid 12345, not by root "
		    "or the configured user (refused)");
		assert_int_equal(unlink(path), 0);
	}
	journal_close(&j);

	snprintf(link_dir, sizeof(link_dir), "%s.link", f->f_dir);
	assert_int_equal(symlink(f->f_dir, link_dir), 0);
	assert_int_equal(journal_init(&j, link_dir, (uid_t)-1, (gid_t)-1), 0);
	mem = store_new(&ks, 16);
	assert_int_equal(journal_load(&j, &ks, err, sizeof(err)), -1);
	err_has(err, "not a directory or a symbolic link (refused");
	assert_int_equal(journal_put(&j, 1, &k, err, sizeof(err)), -1);
	journal_close(&j);
	free(mem);
	assert_int_equal(unlink(link_dir), 0);
	assert_int_equal(unlink(v.v_path), 0);
}

/*
 * At start, an empty keys.journal that is not the configured user's (a run
 * without "user" made it) is replaced by one of the user's, not chowned;
 * a journal with lines in it is left alone.  Root only (chown).
 */
static void
test_renew(void **state)
{
	struct fix	*f = *state;
	struct journal	 j;
	struct stat	 st, st2;
	char		 err[T_ERRLEN], path[256];
	int		 fd;

	if (geteuid() != 0)
		skip();
	root_handle(f, &j);
	assert_int_equal(journal_renew(&j, err, sizeof(err)), 0);  /* none */
	fd = open(path_of(f, JOURNAL_FILE, path, sizeof(path)),
	    O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd != -1);
	assert_int_equal(fstat(fd, &st), 0);
	close(fd);
	if (journal_renew(&j, err, sizeof(err)) == -1)
		fail_msg("journal_renew: %s", err);
	assert_int_equal(lstat(path, &st2), 0);
	assert_true(S_ISREG(st2.st_mode));
	assert_int_equal(st2.st_uid, 65534);
	assert_int_equal(st2.st_size, 0);
	assert_true(st2.st_ino != st.st_ino);	/* a new file, not chowned */
	assert_int_equal(file_mode(f, JOURNAL_FILE), 0600);
	/* The user's own: nothing to do. */
	assert_int_equal(journal_renew(&j, err, sizeof(err)), 0);
	assert_int_equal(lstat(path, &st), 0);
	assert_int_equal(st.st_ino, st2.st_ino);
	/* Root's with lines in it: left alone, said so. */
	assert_int_equal(unlink(path), 0);
	file_write(f, JOURNAL_FILE, "{}\n", 0);
	assert_int_equal(journal_renew(&j, err, sizeof(err)), -1);
	err_has(err, "keys.journal: not empty");
	journal_close(&j);
}

/*
 * keys.lock: a second holder (another master, or workers a killed one
 * left) makes journal_lock wait, then fail saying so; once the holder
 * closes it, the lock is taken.
 */
static void
test_lock(void **state)
{
	struct fix	*f = *state;
	struct journal	 j;
	char		 err[T_ERRLEN];
	int		 fd1, fd2;

	root_handle(f, &j);
	if ((fd1 = journal_lock(&f->f_j, 0, err, sizeof(err))) == -1)
		fail_msg("journal_lock: %s", err);
	assert_int_equal(journal_lock(&j, 300, err, sizeof(err)), -1);
	err_has(err, "is in use: another keygated, or workers left by one "
	    "that was killed, still hold keys.lock (waited 300 ms)");
	close(fd1);
	if ((fd2 = journal_lock(&j, 0, err, sizeof(err))) == -1)
		fail_msg("journal_lock: %s", err);
	close(fd2);
	journal_close(&j);
}

/* Deleting an id the store does not have is a replay, not an error. */
static void
test_del_unknown(void **state)
{
	struct fix	*f = *state;
	struct keystore	 ks;
	char		 err[T_ERRLEN];
	void		*mem;

	put_key(f, 1, 1, NULL);
	file_write(f, JOURNAL_FILE, "{\"seq\":2,\"op\":\"del\",\"id\":"
	    "\"key_Test000000000099\"}\n", 1);
	if (reload(f, 16, &ks, &mem, err) == -1)
		fail_msg("journal_load: %s", err);
	assert_int_equal(keystore_count(&ks), 1);
	assert_int_equal(ks.ks_hdr->kh_applied, 2);
	free(mem);
}

/* No files, an empty journal, a snapshot of an empty store: all fine. */
static void
test_empty(void **state)
{
	struct fix	*f = *state;
	struct keystore	 ks;
	char		 err[T_ERRLEN], *text;
	size_t		 len;
	void		*mem;

	reload_same(f);
	assert_int_equal(journal_size(&f->f_j), 0);
	file_write(f, JOURNAL_FILE, "", 0);
	reload_same(f);

	/* An empty store with seq 7 (everything deleted). */
	f->f_ks.ks_hdr->kh_applied = 7;
	if (journal_compact(&f->f_j, &f->f_ks, err, sizeof(err)) == -1)
		fail_msg("journal_compact: %s", err);
	text = file_read(f, SNAPSHOT_FILE, &len);
	assert_int_equal(len, SNAPSHOT_HEAD_LEN + SNAPSHOT_TRAILER_LEN);
	assert_memory_equal(text, SNAPSHOT_MAGIC, SNAPSHOT_MAGIC_LEN);
	free(text);
	if (reload(f, 16, &ks, &mem, err) == -1)
		fail_msg("journal_load: %s", err);
	assert_int_equal(keystore_count(&ks), 0);
	assert_int_equal(ks.ks_hdr->kh_applied, 7);
	free(mem);

	/* A zero-byte snapshot is damage: the writer always ends a file. */
	file_write(f, SNAPSHOT_FILE, "", 0);
	reload_fails(f, 16, "keys.snapshot: offset 0: the header is cut short "
	    "(40 bytes, the file has 0)");
}

/* Header of the snapshot snapshot_made() writes. */
static const char *const snap_head =
    "{\"keygate_snapshot\":1,\"seq\":2,\"keys\":2}\n";

/*
 * The journal's put lines as a snapshot in the JSON-lines format keygate
 * wrote before the binary one (header, the "key" of each line, end), in
 * place of keys.snapshot; the journal is emptied.
 */
static void
json_snapshot_made(struct fix *f, uint64_t seq)
{
	json_error_t	 jerr;
	json_t		*line;
	char		*text, *p, *e, *s, *keys, *out;
	size_t		 len, used = 0, n = 0;

	text = file_read(f, JOURNAL_FILE, &len);
	/* Each key object is shorter than the line that holds it. */
	assert_non_null(keys = malloc(len + 1));
	keys[0] = '\0';
	for (p = text; (e = strchr(p, '\n')) != NULL; p = e + 1) {
		*e = '\0';
		assert_non_null(line = json_loads(p, 0, &jerr));
		assert_non_null(s = json_dumps(json_object_get(line, "key"),
		    JSON_COMPACT));
		used += (size_t)sprintf(keys + used, "%s\n", s);
		free(s);
		json_decref(line);
		n++;
	}
	assert_non_null(out = malloc(used + 128));
	sprintf(out, "{\"keygate_snapshot\":1,\"seq\":%llu,\"keys\":%zu}\n"
	    "%s{\"end\":%zu}\n", (unsigned long long)seq, n, keys, n);
	file_write(f, SNAPSHOT_FILE, out, 0);
	file_write(f, JOURNAL_FILE, "", 0);
	free(out);
	free(keys);
	free(text);
}

/*
 * A JSON-lines snapshot of keys 1 and 2 at seq 2 (and an empty journal);
 * its text, with k1 and k2 pointing at the two key lines.
 */
static char *
snapshot_made(struct fix *f, char **k1, char **k2)
{
	char	*text;

	put_key(f, 1, 1, NULL);
	put_key(f, 2, 2, NULL);
	json_snapshot_made(f, 2);
	text = file_read(f, SNAPSHOT_FILE, NULL);
	assert_int_equal(strncmp(text, snap_head, strlen(snap_head)), 0);
	*k1 = text + strlen(snap_head);
	*k2 = strchr(*k1, '\n') + 1;
	assert_string_equal(strchr(*k2, '\n') + 1, "{\"end\":2}\n");
	reload_same(f);
	return (text);
}

/* A snapshot cut short, or with lines missing or extra, names the line. */
static void
test_snapshot_damage(void **state)
{
	struct fix	*f = *state;
	char		*text, *k1, *k2, buf[4096];

	text = snapshot_made(f, &k1, &k2);

	/* The end line is missing. */
	snprintf(buf, sizeof(buf), "%.*s", (int)(strchr(k2, '\n') + 1 - text),
	    text);
	file_write(f, SNAPSHOT_FILE, buf, 0);
	reload_fails(f, 16, "keys.snapshot:4: missing the end line (the file "
	    "is cut short)");
	/* A key line is missing. */
	snprintf(buf, sizeof(buf), "%.*s", (int)(k2 - text), text);
	file_write(f, SNAPSHOT_FILE, buf, 0);
	reload_fails(f, 16, "keys.snapshot:3: missing key lines and the end "
	    "line (the file is cut short)");
	/* The last newline is missing. */
	snprintf(buf, sizeof(buf), "%s", text);
	buf[strlen(buf) - 1] = '\0';
	file_write(f, SNAPSHOT_FILE, buf, 0);
	reload_fails(f, 16, "keys.snapshot:4: no newline at the end (the file "
	    "is cut short)");
	/* Something after the end line. */
	snprintf(buf, sizeof(buf), "%s\n", text);
	file_write(f, SNAPSHOT_FILE, buf, 0);
	reload_fails(f, 16, "keys.snapshot:5: data after the end line");
	/* The header promises more keys, or fewer, than there are. */
	snprintf(buf, sizeof(buf), "{\"keygate_snapshot\":1,\"seq\":2,"
	    "\"keys\":3}\n%s", k1);
	file_write(f, SNAPSHOT_FILE, buf, 0);
	reload_fails(f, 16, "keys.snapshot:4: end line after 2 keys, the "
	    "header says 3");
	snprintf(buf, sizeof(buf), "{\"keygate_snapshot\":1,\"seq\":2,"
	    "\"keys\":1}\n%s", k1);
	file_write(f, SNAPSHOT_FILE, buf, 0);
	reload_fails(f, 16, "keys.snapshot:3: a key line where the end line "
	    "should be (the header says 1 keys)");
	free(text);
}

/* A snapshot with a duplicate key, a bad header or a bad field. */
static void
test_snapshot_bad_content(void **state)
{
	struct fix	*f = *state;
	char		*text, *k1, *k2, buf[4096];

	text = snapshot_made(f, &k1, &k2);
	/* The same key twice. */
	snprintf(buf, sizeof(buf), "%s%.*s%.*s{\"end\":2}\n", snap_head,
	    (int)(k2 - k1), k1, (int)(k2 - k1), k1);
	file_write(f, SNAPSHOT_FILE, buf, 0);
	reload_fails(f, 16, "keys.snapshot:3: key key_Test000000000001 appears "
	    "twice");
	/* A bad header; a bad field in a key. */
	snprintf(buf, sizeof(buf), "{\"keygate_snapshot\":2,\"seq\":2,"
	    "\"keys\":2}\n%s", k1);
	file_write(f, SNAPSHOT_FILE, buf, 0);
	reload_fails(f, 16, "keys.snapshot:1: snapshot version 2 is not "
	    "supported");
	file_write(f, SNAPSHOT_FILE, "{\"seq\":2,\"keys\":2}\n", 0);
	reload_fails(f, 16, "keys.snapshot:1: field \"keygate_snapshot\" is "
	    "missing");
	snprintf(buf, sizeof(buf), "%s%s", snap_head, k1);
	*strstr(buf, "\"owner\":\"user-1\"") = '\0';
	snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf),
	    "\"owner\":1%s", strstr(k1, "\"owner\":\"user-1\"") + 16);
	file_write(f, SNAPSHOT_FILE, buf, 0);
	reload_fails(f, 16, "keys.snapshot:2: field \"owner\" is not a string");
	free(text);
}

/* --- the binary snapshot (snapshot.h) ------------------------------------ */

/* s filled with n bytes of text: copies of the UTF-8 "é", then "x". */
static void
fill_utf8(char *s, size_t n)
{
	size_t	 i;

	for (i = 0; i + 1 < n; i += 2)
		memcpy(s + i, "\xc3\xa9", 2);
	if (i < n)
		s[i++] = 'x';
	s[i] = '\0';
}

/*
 * Key i of a store that exercises every field at its limits: as
 * key_make(), and by i % 4: every optional string empty; every string at
 * its longest (UTF-8 in the name, 255 bytes of scopes); a grace digest,
 * an expiry, disabled and the largest rates; 127 one-letter scopes.
 */
static void
key_varied(struct ks_key *k, int i)
{
	size_t	 n;

	key_make(k, i);
	/* key_make's digests repeat every 256 keys: make them unique. */
	k->k_digest[0] = (uint8_t)i;
	k->k_digest[1] = (uint8_t)(i >> 8);
	k->k_digest[2] = 0x11;
	switch (i % 4) {
	case 0:
		k->k_name[0] = k->k_owner[0] = k->k_app[0] = '\0';
		k->k_hint[0] = k->k_scopes[0] = '\0';
		memset(k->k_old_digest, 0, KS_DIGEST_LEN);
		k->k_grace_until = k->k_expires = 0;
		break;
	case 1:
		fill_utf8(k->k_name, KS_NAME_MAX);
		memset(k->k_owner, 'o', KS_OWNER_MAX);
		memset(k->k_app, 'a', KS_APP_MAX);
		memcpy(k->k_prefix, "abcdefghij12", KS_PREFIX_MAX + 1);
		memcpy(k->k_hint, "abcdefghij12_...wxyz", KS_HINT_MAX + 1);
		/* "s000 s001 ... " cut to exactly 255 bytes, no space last. */
		for (n = 0; n < KS_SCOPES_MAX; n += 5)
			snprintf(k->k_scopes + n, sizeof(k->k_scopes) - n,
			    "s%03zu ", n / 5);
		k->k_scopes[KS_SCOPES_MAX] = '\0';
		k->k_scopes[KS_SCOPES_MAX - 1] = 'z';
		break;
	case 2:
		for (n = 0; n < KS_DIGEST_LEN; n++)
			k->k_old_digest[n] = (uint8_t)(0x80 + n + i);
		k->k_old_digest[0] = (uint8_t)i;
		k->k_old_digest[1] = (uint8_t)(i >> 8);
		k->k_old_digest[2] = 0x22;
		k->k_grace_until = INT64_MAX;
		k->k_expires = 1;
		k->k_flags = KS_F_DISABLED;
		k->k_rate[KS_W1S] = k->k_rate[KS_W10S] = UINT32_MAX;
		k->k_rate[KS_W60S] = 1;
		break;
	case 3:
		for (n = 0; n < 127; n++) {
			k->k_scopes[2 * n] = (char)('a' + n % 26);
			k->k_scopes[2 * n + 1] = ' ';
		}
		k->k_scopes[253] = '\0';
		break;
	}
}

/* f's store replaced by an empty one for max keys. */
static void
fix_store(struct fix *f, uint32_t max)
{
	free(f->f_mem);
	f->f_mem = store_new(&f->f_ks, max);
}

/* Compact f's store into keys.snapshot; its bytes (and length). */
static char *
compacted(struct fix *f, size_t *len)
{
	char	 err[T_ERRLEN];

	if (journal_compact(&f->f_j, &f->f_ks, err, sizeof(err)) == -1)
		fail_msg("journal_compact: %s", err);
	return (file_read(f, SNAPSHOT_FILE, len));
}

/* Write len bytes of buf as keys.snapshot. */
static void
snap_write(struct fix *f, const char *buf, size_t len)
{
	char	 path[256];
	FILE	*fp;

	assert_non_null(fp = fopen(path_of(f, SNAPSHOT_FILE, path,
	    sizeof(path)), "w"));
	assert_int_equal(fwrite(buf, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

/* Little-endian u32 at p. */
static uint32_t
get32(const char *p)
{
	const uint8_t	*u = (const uint8_t *)p;

	return ((uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 |
	    (uint32_t)u[3] << 24);
}

/*
 * Every field at its limits, in several blocks: compacted, loaded back
 * equal; the loaded store compacted and loaded again, equal (a restart
 * after a restart); then a snapshot in which every key is at the limits
 * at once.
 */
static void
test_snapshot_round_trip(void **state)
{
	struct fix	*f = *state;
	struct keystore	 ks;
	struct journal	 j;
	struct ks_key	 k;
	char		 err[T_ERRLEN], *snap, *again;
	size_t		 len, len2;
	void		*mem;
	int		 i;

	fix_store(f, 400);
	for (i = 0; i < 400; i++) {
		key_varied(&k, i);
		assert_int_equal(keystore_put(&f->f_ks, &k, (uint64_t)i + 1),
		    KS_OK);
	}
	snap = compacted(f, &len);
	assert_memory_equal(snap, SNAPSHOT_MAGIC, SNAPSHOT_MAGIC_LEN);
	/* 400 keys of 119 to 654 bytes: several 64 KiB blocks. */
	assert_true(get32(snap + len - 20) >= 3);
	assert_true(len > 2 * SNAPSHOT_BLOCK);
	reload_same(f);

	/* Compaction of the store as loaded, then a restart: equal again. */
	if (reload(f, 400, &ks, &mem, err) == -1)
		fail_msg("journal_load: %s", err);
	assert_int_equal(journal_init(&j, f->f_dir, (uid_t)-1, (gid_t)-1), 0);
	if (journal_compact(&j, &ks, err, sizeof(err)) == -1)
		fail_msg("journal_compact: %s", err);
	journal_close(&j);
	free(mem);
	again = file_read(f, SNAPSHOT_FILE, &len2);
	assert_int_equal(len2, len);
	reload_same(f);
	free(again);
	free(snap);

	/* One key at every limit at once. */
	fix_store(f, 4);
	key_varied(&k, 1);
	for (i = 0; i < KS_DIGEST_LEN; i++)
		k.k_old_digest[i] = (uint8_t)~i;
	k.k_grace_until = k.k_created = k.k_updated = k.k_expires = INT64_MAX;
	k.k_flags = KS_F_DISABLED;
	memset(k.k_rate, 0xff, sizeof(k.k_rate));
	assert_int_equal(keystore_put(&f->f_ks, &k, INT64_MAX), KS_OK);
	snap = compacted(f, &len);
	assert_int_equal(len, SNAPSHOT_HEAD_LEN + SNAPSHOT_BLOCK_HEAD_LEN +
	    SNAPSHOT_REC_MAX + SNAPSHOT_TRAILER_LEN);
	reload_same(f);
	free(snap);
}

/* Offset N of an error "keys.snapshot: offset N: ..."; fails otherwise. */
static size_t
err_offset(const char *err)
{
	unsigned long long	 off;
	int			 n = 0;

	if (sscanf(err, "keys.snapshot: offset %llu: %n", &off, &n) != 1 ||
	    n == 0 || err[n] == '\0')
		fail_msg("error \"%s\" names no offset", err);
	return ((size_t)off);
}

/*
 * Keys 1 to 3 compacted: the snapshot every damage test starts from (and
 * the store is emptied of them, so a load that passes would show).
 */
static char *
small_snapshot(struct fix *f, size_t *len)
{
	struct ks_key	 k;
	int		 i;

	for (i = 1; i <= 3; i++) {
		key_make(&k, i);
		assert_int_equal(keystore_put(&f->f_ks, &k, (uint64_t)i), KS_OK);
	}
	return (compacted(f, len));
}

/*
 * A snapshot cut at every byte fails to load, saying where; none loads,
 * none crashes (the ASan build runs this too).
 */
static void
test_snapshot_truncated(void **state)
{
	struct fix	*f = *state;
	struct keystore	 ks;
	char		 err[T_ERRLEN], *snap;
	size_t		 len, cut, off;
	void		*mem;

	snap = small_snapshot(f, &len);
	for (cut = 0; cut < len; cut++) {
		snap_write(f, snap, cut);
		if (reload(f, 16, &ks, &mem, err) != -1)
			fail_msg("a snapshot cut to %zu of %zu bytes loaded",
			    cut, len);
		off = err_offset(err);
		if (off > cut)
			fail_msg("cut to %zu: \"%s\" is past the end", cut,
			    err);
		free(mem);
	}
	snap_write(f, snap, SNAPSHOT_HEAD_LEN + 2);
	reload_fails(f, 16, "keys.snapshot: offset 40: cut short: a block or "
	    "the trailer should start here (2 bytes remain)");
	snap_write(f, snap, SNAPSHOT_HEAD_LEN + 5);
	reload_fails(f, 16, "keys.snapshot: offset 40: a block header is cut "
	    "short (12 bytes, 5 remain)");
	snap_write(f, snap, SNAPSHOT_HEAD_LEN + 100);
	reload_fails(f, 16, "keys.snapshot: offset 40: a block is cut short "
	    "(602 bytes, 88 remain)");
	snap_write(f, snap, len - 1);
	snprintf(err, sizeof(err), "keys.snapshot: offset %zu: the trailer "
	    "is cut short (24 bytes, 23 remain)", len - SNAPSHOT_TRAILER_LEN);
	reload_fails(f, 16, err);
	snap_write(f, snap, len);
	reload_same(f);
	free(snap);
}

/* The snapshot with bit (off % 8) of byte off flipped fails with want. */
static void
flip_fails(struct fix *f, const char *snap, size_t len, size_t off,
    const char *want)
{
	char	*buf;

	assert_non_null(buf = malloc(len));
	memcpy(buf, snap, len);
	buf[off] ^= (char)(1 << (off % 8));
	snap_write(f, buf, len);
	reload_fails(f, 16, want);
	free(buf);
}

/*
 * One bit flipped at every offset is caught, at or before it; and the
 * report for each kind of place: the header, a block's header, a record's
 * field, a string's bytes, a checksum, the trailer.
 */
static void
test_snapshot_bit_flip(void **state)
{
	struct fix	*f = *state;
	struct keystore	 ks;
	char		 err[T_ERRLEN], *snap, *buf;
	size_t		 len, i, t;
	void		*mem;

	snap = small_snapshot(f, &len);
	assert_non_null(buf = malloc(len));
	for (i = 0; i < len; i++) {
		memcpy(buf, snap, len);
		buf[i] ^= (char)(1 << (i % 8));
		snap_write(f, buf, len);
		if (reload(f, 16, &ks, &mem, err) != -1)
			fail_msg("a flip at offset %zu was not caught", i);
		if (err_offset(err) > i)
			fail_msg("a flip at offset %zu: \"%s\" is past it", i,
			    err);
		free(mem);
	}
	free(buf);
	t = len - SNAPSHOT_TRAILER_LEN;
	/* The header's seq; a block's record count; its checksum. */
	flip_fails(f, snap, len, 16, "keys.snapshot: offset 0: header "
	    "checksum mismatch");
	flip_fails(f, snap, len, 40, "keys.snapshot: offset 40: block "
	    "checksum mismatch");
	flip_fails(f, snap, len, 48, "keys.snapshot: offset 40: block "
	    "checksum mismatch");
	/* The block's length: larger than the block size. */
	flip_fails(f, snap, len, 46, "keys.snapshot: offset 44: block of "
	    "4194906 bytes, over the block size (65536)");
	/* The first record's created time, a byte of its id. */
	flip_fails(f, snap, len, 52 + 72, "keys.snapshot: offset 40: block "
	    "checksum mismatch");
	flip_fails(f, snap, len, 52 + SNAPSHOT_REC_FIXED + 5, "keys.snapshot: "
	    "offset 40: block checksum mismatch");
	/* The trailer's key count, its checksum. */
	snprintf(err, sizeof(err), "keys.snapshot: offset %zu: trailer "
	    "checksum mismatch", t);
	flip_fails(f, snap, len, t + 8, err);
	flip_fails(f, snap, len, t + 20, err);
	free(snap);
}

/*
 * Offset of string number idx (0 id, 1 prefix, ... 6 scopes: its length
 * byte) of the record at rec in snap.
 */
static size_t
str_off(const char *snap, size_t rec, int idx)
{
	size_t	 p = rec + SNAPSHOT_REC_FIXED;

	while (idx-- > 0)
		p += 1 + (uint8_t)snap[p];
	return (p);
}

/*
 * snap with the edit applied (len bytes of what at off, or, with what
 * NULL, n bytes appended), its checksums recomputed so that only what is
 * behind them can refuse it: the load fails with want.
 */
static void
forged_fails(struct fix *f, const char *snap, size_t len, size_t off,
    const void *what, size_t n, const char *want)
{
	char	*buf;

	assert_non_null(buf = malloc(len + n));
	memcpy(buf, snap, len);
	if (what != NULL)
		memcpy(buf + off, what, n);
	else {
		memset(buf + len, 'x', n);
		len += n;
	}
	snapshot_fix_checksums(buf, len);
	snap_write(f, buf, len);
	reload_fails(f, 16, want);
	free(buf);
}

/*
 * Behind sound checksums: every length against its limit, a NUL, the
 * record checks of key_check() (the JSON formats' own), duplicates, the
 * header's fields and the counts.
 */
static void
test_snapshot_bad_record(void **state)
{
	struct fix	*f = *state;
	char		 want[T_ERRLEN], *snap, *buf;
	size_t		 len, r1, r2, r3, t, name;
	uint8_t		 b;

	snap = small_snapshot(f, &len);
	t = len - SNAPSHOT_TRAILER_LEN;
	r1 = SNAPSHOT_HEAD_LEN + SNAPSHOT_BLOCK_HEAD_LEN;
	r2 = str_off(snap, r1, 7);
	r3 = str_off(snap, r2, 7);
	assert_int_equal(str_off(snap, r3, 7), t);
	name = str_off(snap, r1, 3);
	/* Forging the checksums of a sound snapshot changes nothing. */
	assert_non_null(buf = malloc(len));
	memcpy(buf, snap, len);
	snapshot_fix_checksums(buf, len);
	assert_memory_equal(buf, snap, len);
	free(buf);

	/* Lengths over their limits, a NUL, bytes not UTF-8. */
	b = KS_ID_LEN + 1;
	snprintf(want, sizeof(want), "keys.snapshot: offset %zu: field \"id\" "
	    "is too long (21 bytes, at most 20)", r1 + SNAPSHOT_REC_FIXED);
	forged_fails(f, snap, len, r1 + SNAPSHOT_REC_FIXED, &b, 1, want);
	b = KS_NAME_MAX + 1;
	snprintf(want, sizeof(want), "keys.snapshot: offset %zu: field "
	    "\"name\" is too long (101 bytes, at most 100)", name);
	forged_fails(f, snap, len, name, &b, 1, want);
	b = 255;
	snprintf(want, sizeof(want), "keys.snapshot: offset %zu: field "
	    "\"scopes\" runs past the end of its block", str_off(snap, r3, 6));
	forged_fails(f, snap, len, str_off(snap, r3, 6), &b, 1, want);
	snprintf(want, sizeof(want), "keys.snapshot: offset %zu: field "
	    "\"name\" holds a NUL byte", name);
	forged_fails(f, snap, len, name + 3, "\0", 1, want);
	snprintf(want, sizeof(want), "keys.snapshot: offset %zu: field "
	    "\"name\" is not UTF-8", r1);
	forged_fails(f, snap, len, name + 1, "\xff", 1, want);

	/* The checks every record passes. */
	snprintf(want, sizeof(want), "keys.snapshot: offset %zu: field "
	    "\"prefix\" is not [a-z0-9]{1,12}", r1);
	forged_fails(f, snap, len, str_off(snap, r1, 1) + 1, "L", 1, want);
	snprintf(want, sizeof(want), "keys.snapshot: offset %zu: field \"id\" "
	    "is not a key id", r1);
	forged_fails(f, snap, len, r1 + SNAPSHOT_REC_FIXED + 1, "kez", 3,
	    want);
	snprintf(want, sizeof(want), "keys.snapshot: offset %zu: field "
	    "\"created\" is below 0", r1);
	forged_fails(f, snap, len, r1 + 72 + 7, "\x80", 1, want);
	snprintf(want, sizeof(want), "keys.snapshot: offset %zu: field "
	    "\"grace_until\" is set but \"old_digest\" is null", r1);
	forged_fails(f, snap, len, r1 + 64, "\x01", 1, want);
	snprintf(want, sizeof(want), "keys.snapshot: offset %zu: unknown "
	    "flags 0x3", r1);
	forged_fails(f, snap, len, r1 + 96, "\x03", 1, want);
	snprintf(want, sizeof(want), "keys.snapshot: offset %zu: field "
	    "\"scopes\" holds an empty scope or one with a space", r1);
	forged_fails(f, snap, len, str_off(snap, r1, 6) + 1, " ", 1, want);

	/* Key 2 with key 1's id, then with its digest. */
	snprintf(want, sizeof(want), "keys.snapshot: offset %zu: key "
	    "key_Test000000000001 appears twice", r2);
	forged_fails(f, snap, len, r2 + SNAPSHOT_REC_FIXED + KS_ID_LEN, "1", 1,
	    want);
	snprintf(want, sizeof(want), "keys.snapshot: offset %zu: key "
	    "key_Test000000000002 has the digest of another key", r2);
	forged_fails(f, snap, len, r2, snap + r1, KS_DIGEST_LEN, want);

	/* The header's fields; counts that disagree; bytes after the end. */
	forged_fails(f, snap, len, 8, "\x02", 1, "keys.snapshot: offset 8: "
	    "snapshot format 2 is not supported (this keygated reads format "
	    "1)");
	forged_fails(f, snap, len, 12, "\x01", 1, "keys.snapshot: offset 12: "
	    "unknown flags 0x1");
	forged_fails(f, snap, len, 34, "\0", 1, "keys.snapshot: offset 32: "
	    "block size 0 is out of range (654 to 16777216)");
	forged_fails(f, snap, len, 23, "\x80", 1, "keys.snapshot: offset 16: "
	    "seq 9223372036854775811 is out of range");
	forged_fails(f, snap, len, 24, "\x02", 1, "keys.snapshot: offset 40: "
	    "more keys than the header says (2)");
	snprintf(want, sizeof(want), "keys.snapshot: offset %zu: 3 keys in "
	    "the blocks, the header says 4 and the trailer 3", t);
	forged_fails(f, snap, len, 24, "\x04", 1, want);
	snprintf(want, sizeof(want), "keys.snapshot: offset %zu: the trailer "
	    "counts 2 blocks, the file has 1", t + 4);
	forged_fails(f, snap, len, t + 4, "\x02", 1, want);
	snprintf(want, sizeof(want), "keys.snapshot: offset %zu: 2 bytes "
	    "after the trailer", len);
	forged_fails(f, snap, len, 0, NULL, 2, want);
	forged_fails(f, snap, len, 0, "X", 1, "keys.snapshot: offset 0: not a "
	    "keygate snapshot (bad magic)");
	free(snap);
}

/*
 * CRC32C: the check value and the iSCSI vectors of RFC 3720 (B.4); the
 * instruction and the tables agree at every length and alignment.
 */
static void
test_crc32c(void **state)
{
	uint8_t		 buf[300];
	uint32_t	 a, b;
	size_t		 i, len;

	(void)state;
	assert_int_equal(snapshot_crc32c(0, "123456789", 9), 0xe3069283);
	assert_int_equal(snapshot_crc32c_sw(0, "123456789", 9), 0xe3069283);
	memset(buf, 0, 32);
	assert_int_equal(snapshot_crc32c(0, buf, 32), 0x8a9136aa);
	memset(buf, 0xff, 32);
	assert_int_equal(snapshot_crc32c(0, buf, 32), 0x62a8ab43);
	for (i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	assert_int_equal(snapshot_crc32c(0, buf, 32), 0x46dd794e);
	/* In pieces, as the writer feeds a block's header then payload. */
	a = snapshot_crc32c(snapshot_crc32c(0, buf, 7), buf + 7, 25);
	assert_int_equal(a, 0x46dd794e);
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	for (i = 0; i < 8; i++)
		for (len = 0; len + i <= sizeof(buf); len += 13) {
			a = snapshot_crc32c(0, buf + i, len);
			b = snapshot_crc32c_sw(0, buf + i, len);
			assert_int_equal(a, b);
		}
}

/*
 * A snapshot in the JSON-lines format (as 0.8 wrote it) loads; the start
 * then wants a compaction (journal_compact_due), which writes the binary
 * format, and the next start loads that, the same store, and wants none.
 */
static void
test_snapshot_json_upgrade(void **state)
{
	struct fix	*f = *state;
	struct keystore	 ks;
	struct journal	 j;
	char		 err[T_ERRLEN], *text;
	void		*mem;
	int		 i;

	for (i = 1; i <= 6; i++)
		put_key(f, (uint64_t)i, i, NULL);
	json_snapshot_made(f, 6);
	text = file_read(f, SNAPSHOT_FILE, NULL);
	assert_int_equal(text[0], '{');
	free(text);

	mem = store_new(&ks, 16);
	assert_int_equal(journal_init(&j, f->f_dir, (uid_t)-1, (gid_t)-1), 0);
	if (journal_load(&j, &ks, err, sizeof(err)) == -1)
		fail_msg("journal_load: %s", err);
	assert_int_equal(journal_size(&j), 0);
	assert_int_equal(journal_compact_due(&j), 1);
	if (journal_compact(&j, &ks, err, sizeof(err)) == -1)
		fail_msg("journal_compact: %s", err);
	assert_int_equal(journal_compact_due(&j), 0);
	journal_close(&j);
	free(mem);
	text = file_read(f, SNAPSHOT_FILE, NULL);
	assert_memory_equal(text, SNAPSHOT_MAGIC, SNAPSHOT_MAGIC_LEN);
	free(text);
	reload_same(f);

	mem = store_new(&ks, 16);
	assert_int_equal(journal_init(&j, f->f_dir, (uid_t)-1, (gid_t)-1), 0);
	if (journal_load(&j, &ks, err, sizeof(err)) == -1)
		fail_msg("journal_load: %s", err);
	assert_int_equal(journal_compact_due(&j), 0);
	journal_close(&j);
	free(mem);
}

/* A store too small for the stored keys says which setting to raise. */
static void
test_store_full(void **state)
{
	struct fix	*f = *state;
	char		 err[T_ERRLEN];

	put_key(f, 1, 1, NULL);
	put_key(f, 2, 2, NULL);
	put_key(f, 3, 3, NULL);
	reload_fails(f, 2, "keys.journal:3: key key_Test000000000003 does not "
	    "fit: max_keys (2) is too small for the stored keys");
	if (journal_compact(&f->f_j, &f->f_ks, err, sizeof(err)) == -1)
		fail_msg("journal_compact: %s", err);
	reload_fails(f, 2, "keys.snapshot: offset 24: the snapshot holds 3 "
	    "keys: max_keys (2) is too small for the stored keys");
}

/* /dev/full: ENOSPC, and err names the file. */
static void
test_write_dev_full(void **state)
{
	struct fix	*f = *state;
	struct ks_key	 k;
	char		 err[T_ERRLEN];

	assert_true((f->f_j.j_fd = open("/dev/full", O_WRONLY)) >= 0);
	key_make(&k, 1);
	errno = 0;
	assert_int_equal(journal_put(&f->f_j, 1, &k, err, sizeof(err)), -1);
	assert_int_equal(errno, ENOSPC);
	assert_string_equal(err, "keys.journal: No space left on device");
	errno = 0;
	assert_int_equal(journal_del(&f->f_j, 2, k.k_id, err, sizeof(err)), -1);
	assert_int_equal(errno, ENOSPC);
	assert_string_equal(err, "keys.journal: No space left on device");
}

/*
 * A write cut short on a real file (RLIMIT_FSIZE a few bytes past the end,
 * SIGXFSZ ignored, so part of the line is written and then EFBIG): the
 * partial line is cut off, the file is as before and still loads.
 */
static void
test_write_short(void **state)
{
	struct fix	*f = *state;
	struct rlimit	 old, lim;
	struct ks_key	 k;
	char		 err[T_ERRLEN], *before, *after;
	size_t		 size, len;
	int		 rc, saved;

	put_key(f, 1, 1, NULL);
	put_key(f, 2, 2, NULL);
	before = file_read(f, JOURNAL_FILE, &size);
	key_make(&k, 3);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = size + 10;
	assert_true(signal(SIGXFSZ, SIG_IGN) != SIG_ERR);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	rc = journal_put(&f->f_j, 3, &k, err, sizeof(err));
	saved = errno;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_DFL);
	assert_int_equal(rc, -1);
	assert_int_equal(saved, EFBIG);
	assert_string_equal(err, "keys.journal: File too large");
	after = file_read(f, JOURNAL_FILE, &len);
	assert_int_equal(len, size);
	assert_string_equal(after, before);
	free(before);
	free(after);
	reload_same(f);

	/* The same descriptor appends fine afterwards. */
	put_key(f, 3, 3, NULL);
	reload_same(f);
}

/* Records the loader would refuse are never written. */
static void
test_put_refuses_bad_record(void **state)
{
	struct fix	*f = *state;
	struct ks_key	 k;
	char		 err[T_ERRLEN];

	key_make(&k, 1);
	memcpy(k.k_prefix, "Live", 5);
	errno = 0;
	assert_int_equal(journal_put(&f->f_j, 1, &k, err, sizeof(err)), -1);
	assert_int_equal(errno, EINVAL);
	assert_string_equal(err, "keys.journal: field \"prefix\" is not "
	    "[a-z0-9]{1,12}");
	key_make(&k, 1);
	memcpy(k.k_name, "bad \xff", 6);
	assert_int_equal(journal_put(&f->f_j, 1, &k, err, sizeof(err)), -1);
	assert_string_equal(err, "keys.journal: field \"name\" is not "
	    "UTF-8");
	key_make(&k, 1);
	memset(k.k_owner, 'o', sizeof(k.k_owner));
	assert_int_equal(journal_put(&f->f_j, 1, &k, err, sizeof(err)), -1);
	assert_string_equal(err, "keys.journal: field \"owner\" is too long "
	    "(68 bytes, at most 64)");
	assert_int_equal(journal_del(&f->f_j, 1, "key_x", err, sizeof(err)),
	    -1);
	assert_int_equal(errno, EINVAL);
	key_make(&k, 1);
	assert_int_equal(journal_put(&f->f_j, 0, &k, err, sizeof(err)), -1);
	assert_string_equal(err, "keys.journal: seq 0 is out of range");
	assert_int_equal(journal_del(&f->f_j, (uint64_t)INT64_MAX + 1, k.k_id,
	    err, sizeof(err)), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(journal_size(&f->f_j), 0);
}

/* fdatasync() calls made through j. */
static uint64_t
syncs(struct journal *j)
{
	uint64_t	 lines, n;

	journal_sync_stats(j, &lines, &n);
	return (n);
}

/*
 * Group commit: lines written without a sync are not durable; one
 * journal_sync() for the last of them makes all of them durable with one
 * fdatasync(), and the earlier ones then need none.  A seq this handle
 * did not write is refused, not reported durable.
 */
static void
test_group_commit(void **state)
{
	struct fix	*f = *state;
	struct ks_key	 k;
	char		 err[T_ERRLEN];
	uint64_t	 seq;

	for (seq = 1; seq <= 3; seq++) {
		key_make(&k, (int)seq);
		if (journal_write_put(&f->f_j, seq, &k, err, sizeof(err)) == -1)
			fail_msg("journal_write_put: %s", err);
		assert_int_equal(keystore_put(&f->f_ks, &k, seq), KS_OK);
	}
	assert_int_equal(syncs(&f->f_j), 0);
	assert_int_equal(f->f_j.j_durable, 0);
	assert_int_equal(journal_sync(&f->f_j, 3, err, sizeof(err)), 0);
	assert_int_equal(syncs(&f->f_j), 1);
	assert_int_equal(f->f_j.j_durable, 3);
	assert_int_equal(journal_sync(&f->f_j, 1, err, sizeof(err)), 0);
	assert_int_equal(journal_sync(&f->f_j, 2, err, sizeof(err)), 0);
	assert_int_equal(syncs(&f->f_j), 1);
	errno = 0;
	assert_int_equal(journal_sync(&f->f_j, 4, err, sizeof(err)), -1);
	assert_int_equal(errno, EINVAL);
	assert_string_equal(err, "keys.journal: seq 4 was not written here");
	if (journal_write_del(&f->f_j, 4, k.k_id, err, sizeof(err)) == -1)
		fail_msg("journal_write_del: %s", err);
	assert_int_equal(keystore_del(&f->f_ks, k.k_id, 4), KS_OK);
	assert_int_equal(journal_sync(&f->f_j, 4, err, sizeof(err)), 0);
	assert_int_equal(syncs(&f->f_j), 2);
	reload_same(f);
}

/*
 * Durability is counted in seqs, so a compaction (which empties the file:
 * offsets start again at 0) neither makes a later line look durable nor
 * loses a line written before it and synced after it.
 */
static void
test_group_commit_compaction(void **state)
{
	struct fix	*f = *state;
	struct ks_key	 k;
	char		 err[T_ERRLEN];

	put_key(f, 1, 1, NULL);
	put_key(f, 2, 2, NULL);
	key_make(&k, 3);
	if (journal_write_put(&f->f_j, 3, &k, err, sizeof(err)) == -1)
		fail_msg("journal_write_put: %s", err);
	assert_int_equal(keystore_put(&f->f_ks, &k, 3), KS_OK);
	if (journal_compact(&f->f_j, &f->f_ks, err, sizeof(err)) == -1)
		fail_msg("journal_compact: %s", err);
	assert_int_equal(journal_size(&f->f_j), 0);
	assert_int_equal(journal_sync(&f->f_j, 3, err, sizeof(err)), 0);
	reload_same(f);
	key_make(&k, 4);
	if (journal_write_put(&f->f_j, 4, &k, err, sizeof(err)) == -1)
		fail_msg("journal_write_put: %s", err);
	assert_int_equal(keystore_put(&f->f_ks, &k, 4), KS_OK);
	assert_int_equal(f->f_j.j_durable, 3);
	assert_int_equal(journal_sync(&f->f_j, 4, err, sizeof(err)), 0);
	assert_int_equal(f->f_j.j_durable, 4);
	reload_same(f);
}

/*
 * A failed fdatasync() (the descriptor swapped for a pipe's, where it
 * fails with EINVAL): the waiter gets -1, every later write is refused
 * with EIO and nothing is appended, until a compaction replaces
 * keys.snapshot; then writes resume and everything in memory, the line
 * of the failed sync included, loads again.
 */
static void
test_group_commit_sync_fails(void **state)
{
	struct fix	*f = *state;
	struct ks_key	 k;
	char		 err[T_ERRLEN];
	int		 p[2], fd;
	off_t		 size;

	put_key(f, 1, 1, NULL);
	key_make(&k, 2);
	if (journal_write_put(&f->f_j, 2, &k, err, sizeof(err)) == -1)
		fail_msg("journal_write_put: %s", err);
	assert_int_equal(keystore_put(&f->f_ks, &k, 2), KS_OK);
	assert_int_equal(pipe(p), 0);
	fd = f->f_j.j_fd;
	f->f_j.j_fd = p[1];
	errno = 0;
	assert_int_equal(journal_sync(&f->f_j, 2, err, sizeof(err)), -1);
	assert_int_equal(errno, EINVAL);
	assert_string_equal(err, "keys.journal: Invalid argument");
	f->f_j.j_fd = fd;
	close(p[0]);
	close(p[1]);
	/* Sticky: the same seq, and new lines, are refused. */
	assert_int_equal(journal_sync(&f->f_j, 2, err, sizeof(err)), -1);
	size = journal_size(&f->f_j);
	key_make(&k, 3);
	errno = 0;
	assert_int_equal(journal_write_put(&f->f_j, 3, &k, err, sizeof(err)),
	    -1);
	assert_int_equal(errno, EIO);
	err_has(err, "keys.journal: an earlier sync failed (Invalid "
	    "argument); no change is taken until");
	assert_int_equal(journal_put(&f->f_j, 3, &k, err, sizeof(err)), -1);
	assert_int_equal(journal_del(&f->f_j, 3, k.k_id, err, sizeof(err)),
	    -1);
	assert_int_equal(journal_size(&f->f_j), size);
	/* A compaction writes memory out: writes resume. */
	if (journal_compact(&f->f_j, &f->f_ks, err, sizeof(err)) == -1)
		fail_msg("journal_compact: %s", err);
	assert_int_equal(journal_sync(&f->f_j, 2, err, sizeof(err)), -1);
	put_key(f, 3, 3, NULL);
	assert_int_equal(journal_sync(&f->f_j, 2, err, sizeof(err)), 0);
	reload_same(f);
}

#define GC_THREADS	8
#define GC_LINES	40

/* The writers of test_group_commit_threads: the admin path's shape. */
struct gc_shared {
	struct fix	*g_f;
	pthread_mutex_t	 g_lock;	/* stands for the key store lock */
	uint64_t	 g_seq;
	int		 g_failed;
};

static void *
gc_writer(void *arg)
{
	struct gc_shared	*g = arg;
	struct ks_key		 k;
	char			 err[T_ERRLEN];
	uint64_t		 seq;
	int			 i, ok;

	for (i = 0; i < GC_LINES; i++) {
		pthread_mutex_lock(&g->g_lock);
		seq = ++g->g_seq;
		key_make(&k, (int)(seq % 16) + 1);
		k.k_updated += (int64_t)seq;
		ok = journal_write_put(&g->g_f->f_j, seq, &k, err,
		    sizeof(err)) == 0 && keystore_put(&g->g_f->f_ks, &k, seq) ==
		    KS_OK;
		pthread_mutex_unlock(&g->g_lock);
		if (!ok || journal_sync(&g->g_f->f_j, seq, err,
		    sizeof(err)) == -1) {
			__atomic_add_fetch(&g->g_failed, 1, __ATOMIC_RELAXED);
			break;
		}
	}
	return (NULL);
}

/*
 * Threads appending under one lock and syncing outside it, as the admin
 * threads do: every sync succeeds, every line is durable (j_durable
 * reaches the last seq), the file holds every line in seq order, and it
 * loads into the same store.
 */
static void
test_group_commit_threads(void **state)
{
	struct gc_shared	 g;
	pthread_t		 t[GC_THREADS];
	char			*buf, *p;
	size_t			 len, lines = 0;
	int			 i;

	memset(&g, 0, sizeof(g));
	g.g_f = *state;
	assert_int_equal(pthread_mutex_init(&g.g_lock, NULL), 0);
	for (i = 0; i < GC_THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, gc_writer, &g), 0);
	for (i = 0; i < GC_THREADS; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	pthread_mutex_destroy(&g.g_lock);
	assert_int_equal(g.g_failed, 0);
	assert_int_equal(g.g_f->f_j.j_durable, GC_THREADS * GC_LINES);
	assert_true(syncs(&g.g_f->f_j) >= 1);
	assert_true(syncs(&g.g_f->f_j) <= GC_THREADS * GC_LINES);
	buf = file_read(g.g_f, JOURNAL_FILE, &len);
	for (p = buf; (p = strchr(p, '\n')) != NULL; p++)
		lines++;
	free(buf);
	assert_int_equal(lines, GC_THREADS * GC_LINES);
	reload_same(g.g_f);
}

/* Usage counters of key i in ks. */
static void
usage_of(const struct keystore *ks, int i, uint64_t *allowed,
    uint64_t *refused, int64_t *last)
{
	struct ks_key	 k, want;
	uint32_t	 slot;

	key_make(&want, i);
	assert_int_equal(keystore_find_id(ks, want.k_id, &k, &slot), KS_OK);
	keystore_usage(ks, slot, allowed, refused, last);
}

/* Keys 1, 2 and 3 with usage on 1 and 3, saved to keys.usage. */
static void
usage_saved(struct fix *f)
{
	struct ks_key	 k;
	char		 err[T_ERRLEN];
	uint32_t	 slot;

	put_key(f, 1, 1, NULL);
	put_key(f, 2, 2, NULL);
	put_key(f, 3, 3, NULL);
	assert_int_equal(keystore_find_id(&f->f_ks, "key_Test000000000001", &k,
	    &slot), KS_OK);
	keystore_set_usage(&f->f_ks, slot, 10, 3, 1700000000123LL);
	assert_int_equal(keystore_find_id(&f->f_ks, "key_Test000000000003", &k,
	    &slot), KS_OK);
	keystore_set_usage(&f->f_ks, slot, 0, 1, 0);
	if (journal_save_usage(&f->f_j, &f->f_ks, err, sizeof(err)) == -1)
		fail_msg("journal_save_usage: %s", err);
}

/* The usage file has a line per key with usage, and nothing else. */
static void
test_usage_save(void **state)
{
	struct fix	*f = *state;
	char		 err[T_ERRLEN], *text;
	size_t		 len;

	/* Nothing saved yet: nothing to load. */
	assert_int_equal(journal_load_usage(&f->f_j, &f->f_ks, err,
	    sizeof(err)), 0);
	usage_saved(f);
	assert_int_equal(file_mode(f, USAGE_FILE), 0600);
	/* Two lines: key 2 has no usage. */
	text = file_read(f, USAGE_FILE, &len);
	assert_non_null(strstr(text,
	    "{\"id\":\"key_Test000000000001\",\"allowed\":10,\"refused\":3,"
	    "\"rate_limited\":0,\"last_used\":1700000000123}\n"));
	assert_non_null(strstr(text,
	    "{\"id\":\"key_Test000000000003\",\"allowed\":0,\"refused\":1,"
	    "\"rate_limited\":0,\"last_used\":0}\n"));
	assert_int_equal(len, 2 * strlen("{\"id\":\"key_Test000000000001\","
	    "\"allowed\":0,\"refused\":1,\"rate_limited\":0,"
	    "\"last_used\":0}\n") + 13);
	free(text);
}

/*
 * A worker can set a record's id length to the brim, 255, so that the id
 * runs on into the next strings (review of issue 10): the master, saving
 * the usage counters, must not read past the id of its copy (the key
 * store cuts it to sizeof(k_id) - 1), and such an id is not valid.  The
 * record is left out of the file, the others are saved.
 */
static void
test_usage_unterminated_id(void **state)
{
	struct fix	*f = *state;
	struct ks_slot	*s;
	struct ks_rec	*r;
	struct ks_key	 k;
	char		 err[T_ERRLEN], *text;
	uint32_t	 slot;

	put_key(f, 1, 1, NULL);
	put_key(f, 2, 2, NULL);
	assert_int_equal(keystore_find_id(&f->f_ks, "key_Test000000000002", &k,
	    &slot), KS_OK);
	keystore_set_usage(&f->f_ks, slot, 7, 0, 0);
	assert_int_equal(keystore_find_id(&f->f_ks, "key_Test000000000001", &k,
	    &slot), KS_OK);
	keystore_set_usage(&f->f_ks, slot, 5, 0, 0);
	s = &f->f_ks.ks_slots[slot];
	r = (struct ks_rec *)(f->f_ks.ks_chunks[s->s_rec >> KS_REC_IDX_BITS] +
	    (size_t)(s->s_rec & ((1U << KS_REC_IDX_BITS) - 1)) *
	    ks_class_size[s->s_rec >> KS_REC_IDX_BITS]);
	r->r_u.r_used.r_len[KS_S_ID] = 255;
	if (journal_save_usage(&f->f_j, &f->f_ks, err, sizeof(err)) == -1)
		fail_msg("journal_save_usage: %s", err);
	text = file_read(f, USAGE_FILE, NULL);
	assert_string_equal(text, "{\"id\":\"key_Test000000000002\","
	    "\"allowed\":7,\"refused\":0,\"rate_limited\":0,"
	    "\"last_used\":0}\n");
	free(text);
}

/*
 * keys.usage keeps the rate-limited part of the refusals ("refused" stays
 * every refusal, as before); a line written before the field existed
 * loads with none rate limited, one claiming more than it refused is
 * skipped.  The history baselines start at the restored counts.
 */
static void
test_usage_rate_limited(void **state)
{
	struct fix	*f = *state;
	struct keystore	 ks;
	struct ks_key	 k;
	char		 err[T_ERRLEN], *text;
	uint64_t	 c[KS_NCOUNTS], b[KS_NCOUNTS];
	uint32_t	 slot;
	void		*mem;
	int		 i;

	put_key(f, 1, 1, NULL);
	put_key(f, 2, 2, NULL);
	put_key(f, 3, 3, NULL);
	assert_int_equal(keystore_find_id(&f->f_ks, "key_Test000000000001", &k,
	    &slot), KS_OK);
	keystore_count_use(&f->f_ks, slot, KS_USE_ALLOWED, 1000);
	keystore_count_use(&f->f_ks, slot, KS_USE_LIMITED, 1000);
	keystore_count_use(&f->f_ks, slot, KS_USE_LIMITED, 1000);
	keystore_count_use(&f->f_ks, slot, KS_USE_REFUSED, 1000);
	if (journal_save_usage(&f->f_j, &f->f_ks, err, sizeof(err)) == -1)
		fail_msg("journal_save_usage: %s", err);
	text = file_read(f, USAGE_FILE, NULL);
	assert_string_equal(text, "{\"id\":\"key_Test000000000001\","
	    "\"allowed\":1,\"refused\":3,\"rate_limited\":2,"
	    "\"last_used\":1000}\n");
	free(text);
	file_write(f, USAGE_FILE, "{\"id\":\"key_Test000000000001\","
	    "\"allowed\":1,\"refused\":3,\"rate_limited\":2,"
	    "\"last_used\":1000}\n"
	    "{\"id\":\"key_Test000000000002\",\"allowed\":4,\"refused\":5,"
	    "\"last_used\":2000}\n"
	    "{\"id\":\"key_Test000000000003\",\"allowed\":4,\"refused\":1,"
	    "\"rate_limited\":2,\"last_used\":2000}\n", 1);
	if (reload(f, 16, &ks, &mem, err) == -1)
		fail_msg("journal_load: %s", err);
	assert_int_equal(journal_load_usage(&f->f_j, &ks, err, sizeof(err)),
	    0);
	assert_int_equal(keystore_find_id(&ks, "key_Test000000000001", &k,
	    &slot), KS_OK);
	keystore_counts(&ks, slot, c);
	keystore_base(&ks, slot, b);
	assert_int_equal(c[KS_C_ALLOWED], 1);
	assert_int_equal(c[KS_C_LIMITED], 2);
	assert_int_equal(c[KS_C_REFUSED], 1);
	for (i = 0; i < KS_NCOUNTS; i++)
		assert_int_equal(b[i], c[i]);
	assert_int_equal(keystore_find_id(&ks, "key_Test000000000002", &k,
	    &slot), KS_OK);
	keystore_counts(&ks, slot, c);
	assert_int_equal(c[KS_C_ALLOWED], 4);
	assert_int_equal(c[KS_C_LIMITED], 0);
	assert_int_equal(c[KS_C_REFUSED], 5);
	assert_int_equal(keystore_find_id(&ks, "key_Test000000000003", &k,
	    &slot), KS_OK);
	keystore_counts(&ks, slot, c);
	assert_int_equal(c[KS_C_ALLOWED] + c[KS_C_LIMITED] + c[KS_C_REFUSED],
	    0);
	free(mem);
}

/* Usage counters survive a restart; bad lines are logged and skipped. */
static void
test_usage_load(void **state)
{
	struct fix	*f = *state;
	struct keystore	 ks;
	char		 err[T_ERRLEN], path[256], *text;
	uint64_t	 allowed, refused;
	int64_t		 last;
	void		*mem;
	int		 rc;

	usage_saved(f);
	file_write(f, USAGE_FILE, "not json\n"
	    "{\"id\":\"key_Test000000000099\",\"allowed\":5,\"refused\":0,"
	    "\"last_used\":0}\n"
	    "{\"id\":\"key_Test000000000002\",\"allowed\":-5,\"refused\":0,"
	    "\"last_used\":0}\n"
	    "{\"id\":\"key_Test000000000002\",\"allowed\":5", 1);
	if (reload(f, 16, &ks, &mem, err) == -1)
		fail_msg("journal_load: %s", err);
	assert_int_equal(log_init(path_of(f, "log", path, sizeof(path)),
	    LOGLEVEL_WARN, "test", err, sizeof(err)), 0);
	rc = journal_load_usage(&f->f_j, &ks, err, sizeof(err));
	assert_int_equal(log_init(LOG_TO_STDERR, LOGLEVEL_WARN, "test", err,
	    sizeof(err)), 0);
	assert_int_equal(rc, 0);
	text = file_read(f, "log", NULL);
	assert_non_null(strstr(text, "keys.usage:3: bad JSON: "));
	assert_null(strstr(text, "keys.usage:4:"));
	assert_non_null(strstr(text, "keys.usage:5: field \"allowed\" is "
	    "below 0 (line skipped)\n"));
	assert_non_null(strstr(text, "keys.usage:6: no newline at the end "
	    "(line skipped)\n"));
	free(text);
	usage_of(&ks, 1, &allowed, &refused, &last);
	assert_int_equal(allowed, 10);
	assert_int_equal(refused, 3);
	assert_int_equal(last, 1700000000123LL);
	usage_of(&ks, 2, &allowed, &refused, &last);
	assert_int_equal(allowed + refused + (uint64_t)last, 0);
	usage_of(&ks, 3, &allowed, &refused, &last);
	assert_int_equal(allowed, 0);
	assert_int_equal(refused, 1);
	free(mem);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_compact, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compact_crash, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_compact_fails, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_torn_tail, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_replay_tail, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_bad_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_field, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_symlink_refused, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_state_files_checked,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_renew, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seq_repair, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_del_unknown, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_damage, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_bad_content,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_round_trip,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_truncated, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_bit_flip, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_bad_record,
		    setup, teardown),
		cmocka_unit_test(test_crc32c),
		cmocka_unit_test_setup_teardown(test_snapshot_json_upgrade,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_full, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_write_dev_full, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_write_short, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_put_refuses_bad_record,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_group_commit_compaction,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit_sync_fails,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit_threads,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_usage_save, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_usage_load, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_usage_unterminated_id,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_usage_rate_limited,
		    setup, teardown),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
