/* Unit tests for the shared-memory segment (shm.c). */

#include <sys/types.h>
#include <sys/wait.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <cmocka.h>

#include "keystore.h"
#include "ratelimit.h"
#include "shm.h"

/* The header says what it is, and its size covers the whole segment. */
static void
test_header(void **state)
{
	struct shm_header	*sh = shm_create(16, 16);

	assert_non_null(sh);
	assert_int_equal(sh->sh_magic, SHM_MAGIC);
	assert_int_equal(sh->sh_version, SHM_VERSION);
	assert_int_equal(sh->sh_slots, SHM_SLOTS);
	assert_true(sh->sh_size >= sizeof(*sh));
	assert_int_equal((uintptr_t)&sh->sh_workers[1] % 64, 0);
	shm_destroy(sh);
}

/*
 * Layout 3: the key store (its per-slot rate states last) and the address
 * table follow each other inside the segment without overlapping.
 */
static void
test_regions(void **state)
{
	struct shm_header	*sh = shm_create(1000, 1000);
	struct keystore		 ks;
	struct rl_limits	 l;
	char			*end;
	int			 i;

	assert_non_null(sh);
	end = (char *)sh + sh->sh_size;
	shm_keystore(sh, &ks);
	assert_true((char *)ks.ks_slots >= (char *)(sh + 1));
	assert_true((char *)(ks.ks_astate + 1000) <= (char *)shm_iptable(sh));
	assert_int_equal((uintptr_t)shm_iptable(sh) % 64, 0);
	assert_true((char *)shm_iptable(sh) +
	    ratelimit_iptable_size(SHM_IP_ENTRIES) <= end);
	/* Both are formatted and usable. */
	ratelimit_defaults(&l);
	for (i = 0; i < 20; i++)
		assert_int_equal(ratelimit_admit(keystore_rate(&ks, 999,
		    1000, 1), &l, 1000, NULL), 1);
	assert_int_equal(ratelimit_admit(keystore_rate(&ks, 999, 1000, 1), &l,
	    1000, NULL), 0);
	assert_int_equal(ratelimit_iptable_admit(shm_iptable(sh), "\x7f\0\0\1",
	    4, &l, 1000, NULL), 1);
	assert_int_equal(ratelimit_iptable_count(shm_iptable(sh)), 1);
	shm_destroy(sh);
}

/*
 * Workers can write the header: the layout the code uses (where the key
 * store and the address table lie, max_keys, the size to unmap) comes
 * from the private copy, so turning the header's fields to nonsense
 * changes nothing (issue 10, item 5).
 */
static void
test_layout_private(void **state)
{
	struct shm_header	*sh = shm_create(1000, 1000);
	struct keystore		 ks, ks2;
	struct rl_iptable	*ip;

	assert_non_null(sh);
	shm_keystore(sh, &ks);
	ip = shm_iptable(sh);
	assert_int_equal(shm_max_keys(sh), 1000);
	sh->sh_ks_off = 1ULL << 40;
	sh->sh_ip_off = 1ULL << 41;
	sh->sh_max_keys = UINT32_MAX;
	sh->sh_size = 1ULL << 42;
	ks.ks_hdr->kh_max_keys = UINT32_MAX;
	ks.ks_hdr->kh_ndindex = 1U << 31;
	shm_keystore(sh, &ks2);
	assert_ptr_equal(ks2.ks_hdr, ks.ks_hdr);
	assert_ptr_equal(ks2.ks_slots, ks.ks_slots);
	assert_ptr_equal(ks2.ks_dindex, ks.ks_dindex);
	assert_ptr_equal(ks2.ks_iindex, ks.ks_iindex);
	assert_ptr_equal(ks2.ks_astate, ks.ks_astate);
	assert_ptr_equal(ks2.ks_chunks[KS_NCLASS - 1],
	    ks.ks_chunks[KS_NCLASS - 1]);
	assert_int_equal(ks2.ks_max_keys, 1000);
	assert_int_equal(ks2.ks_ndindex, ks.ks_ndindex);
	assert_ptr_equal(shm_iptable(sh), ip);
	assert_int_equal(shm_max_keys(sh), 1000);
	shm_destroy(sh);
	/* The right range was unmapped: a new segment maps and works. */
	assert_non_null(sh = shm_create(16, 16));
	shm_destroy(sh);
}

/* Slots are reserved, named, released and reused; none is handed out twice. */
static void
test_slots(void **state)
{
	struct shm_header	*sh = shm_create(16, 16);
	int			 a, b, i;

	a = shm_worker_attach(sh, 1, 100);
	b = shm_worker_attach(sh, 1, 100);
	assert_true(a >= 0 && b >= 0 && a != b);
	assert_int_equal(sh->sh_workers[a].sw_pid, -1);
	shm_worker_setpid(sh, a, 4242);
	shm_worker_setpid(sh, b, 4343);
	sh->sh_workers[a].sw_requests = 7;
	assert_int_equal(shm_worker_detach(sh, 4242), a);
	assert_int_equal(shm_worker_detach(sh, 4242), -1);
	/* The freed slot comes back zeroed, with the new generation. */
	assert_int_equal(shm_worker_attach(sh, 2, 200), a);
	assert_int_equal(sh->sh_workers[a].sw_requests, 0);
	assert_int_equal(sh->sh_workers[a].sw_generation, 2);
	shm_worker_release(sh, a);
	assert_int_equal(sh->sh_workers[a].sw_pid, 0);
	/* Fill every slot: the next reservation fails. */
	for (i = 0; i < SHM_SLOTS - 1; i++)
		assert_true(shm_worker_attach(sh, 3, 300) >= 0);
	assert_int_equal(shm_worker_attach(sh, 3, 300), -1);
	shm_destroy(sh);
}

/* Counters written by forked children are seen by the parent, none lost. */
static void
test_shared_across_fork(void **state)
{
	struct shm_header	*sh = shm_create(16, 16);
	uint64_t		*ctr = &sh->sh_workers[0].sw_requests;
	pid_t			 pids[4];
	int			 i, j, status;

	for (i = 0; i < 4; i++) {
		pids[i] = fork();
		assert_true(pids[i] != -1);
		if (pids[i] == 0) {
			for (j = 0; j < 100000; j++)
				SHM_ADD(ctr, 1);
			_exit(0);
		}
	}
	for (i = 0; i < 4; i++) {
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	assert_int_equal(SHM_LOAD(ctr), 400000);
	shm_destroy(sh);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header),
		cmocka_unit_test(test_regions),
		cmocka_unit_test(test_layout_private),
		cmocka_unit_test(test_slots),
		cmocka_unit_test(test_shared_across_fork),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
