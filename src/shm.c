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

#include "shm.h"

/* Map and initialise a new segment. */
struct shm_header *
shm_create(void)
{
	struct shm_header	*sh;
	size_t			 size = sizeof(*sh);

	sh = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	    -1, 0);
	if (sh == MAP_FAILED)
		return (NULL);
	memset(sh, 0, size);
	sh->sh_magic = SHM_MAGIC;
	sh->sh_version = SHM_VERSION;
	sh->sh_slots = SHM_SLOTS;
	sh->sh_size = size;
	return (sh);
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
