/*
 * The shared-memory segment (see shm.h).  An anonymous shared mapping is
 * inherited by fork() and survives reloads because only the master ever
 * creates or destroys it.
 */

#include <sys/types.h>
#include <sys/mman.h>

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "keystore.h"
#include "ratelimit.h"
#include "shm.h"

/*
 * Map and initialise a new segment.  A fresh anonymous mapping is zeroed by
 * the kernel, which is what keystore_init() expects.
 */
struct shm_header *
shm_create(uint32_t max_keys)
{
	struct shm_header	*sh;
	struct keystore		 ks;
	struct timespec		 wall, mono;
	size_t			 off, ipoff, failoff, size;
	uint64_t		 seed;

	off = (sizeof(*sh) + 63) & ~(size_t)63;
	ipoff = off + ((keystore_size(max_keys) + 63) & ~(size_t)63);
	failoff = ipoff + ((ratelimit_iptable_size(SHM_IP_ENTRIES) + 63) &
	    ~(size_t)63);
	size = failoff + ratelimit_failtable_size(SHM_FAIL_ENTRIES);
	sh = mmap(NULL, size, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (sh == MAP_FAILED)
		return (NULL);
	if (RAND_bytes((unsigned char *)&seed, sizeof(seed)) != 1)
		seed = (uint64_t)(uintptr_t)sh ^ (uint64_t)size;
	sh->sh_magic = SHM_MAGIC;
	sh->sh_version = SHM_VERSION;
	sh->sh_slots = SHM_SLOTS;
	sh->sh_size = size;
	sh->sh_ks_off = off;
	sh->sh_max_keys = max_keys;
	sh->sh_ip_off = ipoff;
	sh->sh_fail_off = failoff;
	clock_gettime(CLOCK_REALTIME, &wall);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	sh->sh_mono_to_wall = ((int64_t)wall.tv_sec - mono.tv_sec) * 1000 +
	    (wall.tv_nsec - mono.tv_nsec) / 1000000;
	keystore_init(&ks, (char *)sh + off, max_keys, seed);
	ratelimit_iptable_init((char *)sh + ipoff, SHM_IP_ENTRIES,
	    seed * 0x9e3779b97f4a7c15ULL + 1);
	ratelimit_failtable_init((char *)sh + failoff, SHM_FAIL_ENTRIES,
	    seed * 0xbf58476d1ce4e5b9ULL + 3);
	return (sh);
}

/* Attach ks to the key store of sh. */
void
shm_keystore(struct shm_header *sh, struct keystore *ks)
{
	keystore_attach(ks, (char *)sh + sh->sh_ks_off);
}

/* The rate table of client addresses. */
struct rl_iptable *
shm_iptable(struct shm_header *sh)
{
	return ((struct rl_iptable *)((char *)sh + sh->sh_ip_off));
}

/* The table of failed admin authentications. */
struct rl_failtable *
shm_failtable(struct shm_header *sh)
{
	return ((struct rl_failtable *)((char *)sh + sh->sh_fail_off));
}

void
shm_destroy(struct shm_header *sh)
{
	if (sh != NULL)
		munmap(sh, sh->sh_size);
}

/*
 * Reserve a free worker slot (pid -1 until shm_worker_setpid) and zero its
 * counters.  Only the master calls this, before the worker exists, so there
 * is no concurrent writer.
 */
int
shm_worker_attach(struct shm_header *sh, uint32_t generation, int64_t now)
{
	struct shm_worker	*sw;
	int			 i;

	for (i = 0; i < SHM_SLOTS; i++) {
		sw = &sh->sh_workers[i];
		if (SHM_LOAD(&sw->sw_pid) != 0)
			continue;
		memset(sw, 0, sizeof(*sw));
		sw->sw_generation = generation;
		sw->sw_started = now;
		__atomic_store_n(&sw->sw_pid, -1, __ATOMIC_RELEASE);
		return (i);
	}
	return (-1);
}

/* Release the slot of a reaped worker. */
int
shm_worker_detach(struct shm_header *sh, int32_t pid)
{
	int	 i;

	for (i = 0; i < SHM_SLOTS; i++) {
		if (SHM_LOAD(&sh->sh_workers[i].sw_pid) == pid) {
			__atomic_store_n(&sh->sh_workers[i].sw_pid, 0,
			    __ATOMIC_RELEASE);
			return (i);
		}
	}
	return (-1);
}

/* Name the pid of a reserved slot. */
void
shm_worker_setpid(struct shm_header *sh, int idx, int32_t pid)
{
	if (idx >= 0 && idx < SHM_SLOTS)
		__atomic_store_n(&sh->sh_workers[idx].sw_pid, pid,
		    __ATOMIC_RELEASE);
}

/* Give back a slot by index (fork() failed). */
void
shm_worker_release(struct shm_header *sh, int idx)
{
	shm_worker_setpid(sh, idx, 0);
}
