/*
 * The shared-memory segment (see shm.h).  An anonymous shared mapping is
 * inherited by fork() and survives reloads because only the master ever
 * creates or destroys it.  Its layout is read from a private page below
 * it, never from the shared header (see struct shm_private).
 */

#include <sys/types.h>
#include <sys/mman.h>

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "idem.h"
#include "jwks.h"
#include "keystore.h"
#include "lease.h"
#include "ratelimit.h"
#include "shm.h"
#include "stats.h"
#include "ui.h"

/*
 * The layout of a segment, kept in a private page mapped just below it.
 * The shared header's sh_size, sh_ks_off, sh_ip_off, sh_fail_off and
 * sh_max_keys can be written by any worker; the master must never take an
 * offset or a size for munmap() from there.  A MAP_PRIVATE page is copied
 * on write at fork(), so whatever a worker does to its copy, the master's
 * stays as shm_create() wrote it; it is also made read-only once written.
 */
struct shm_private {
	uint64_t	 sp_magic;
	size_t		 sp_size;	/* bytes of the shared mapping */
	size_t		 sp_ks_off;
	size_t		 sp_ip_off;
	size_t		 sp_fail_off;
	size_t		 sp_jwt_off;
	size_t		 sp_jwks_off;
	size_t		 sp_stats_off;
	size_t		 sp_idem_off;
	size_t		 sp_ui_off;
	size_t		 sp_lease_off;
	uint32_t	 sp_max_keys;
	uint32_t	 sp_max_active;
};

/* The private layout page of sh. */
static const struct shm_private *
shm_private(const struct shm_header *sh)
{
	return ((const struct shm_private *)((const char *)sh -
	    sysconf(_SC_PAGESIZE)));
}

/*
 * Map and initialise a new segment.  One private page is reserved with the
 * whole range, then the shared mapping is placed over the rest of it
 * (MAP_FIXED inside our own reservation replaces nothing else).  A fresh
 * anonymous mapping is zeroed by the kernel, which is what keystore_init()
 * expects.
 */
struct shm_header *
shm_create(uint32_t max_keys, uint32_t max_active)
{
	struct shm_header	*sh;
	struct shm_private	*sp;
	struct keystore		 ks;
	struct timespec		 wall, mono;
	size_t			 off, ipoff, failoff, jwtoff, jwksoff, statsoff;
	size_t			 idemoff, leaseoff, uioff;
	size_t			 size;
	size_t			 page;
	uint64_t		 seed;
	char			*base;
	int			 saved;

	page = (size_t)sysconf(_SC_PAGESIZE);
	off = (sizeof(*sh) + 63) & ~(size_t)63;
	ipoff = off + ((keystore_size(max_keys, max_active) + 63) &
	    ~(size_t)63);
	failoff = ipoff + ((ratelimit_iptable_size(SHM_IP_ENTRIES) + 63) &
	    ~(size_t)63);
	jwtoff = failoff + ((ratelimit_failtable_size(SHM_FAIL_ENTRIES) +
	    63) & ~(size_t)63);
	jwksoff = jwtoff + ((ratelimit_iptable_size(SHM_JWT_ENTRIES) + 63) &
	    ~(size_t)63);
	statsoff = jwksoff + ((JWT_MAX_PROVIDERS * sizeof(struct jwks_slot) +
	    63) & ~(size_t)63);
	idemoff = statsoff + ((sizeof(struct stats_region) + 63) &
	    ~(size_t)63);
	leaseoff = idemoff + ((IDEM_TABLE_SIZE + 63) & ~(size_t)63);
	uioff = leaseoff + ((lease_table_size() + 63) & ~(size_t)63);
	size = uioff + sizeof(struct ui_table);
	base = mmap(NULL, page + size, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED)
		return (NULL);
	sh = mmap(base + page, size, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
	if (sh == MAP_FAILED) {
		saved = errno;
		munmap(base, page + size);
		errno = saved;
		return (NULL);
	}
	sp = (struct shm_private *)base;
	sp->sp_magic = SHM_MAGIC;
	sp->sp_size = size;
	sp->sp_ks_off = off;
	sp->sp_ip_off = ipoff;
	sp->sp_fail_off = failoff;
	sp->sp_jwt_off = jwtoff;
	sp->sp_jwks_off = jwksoff;
	sp->sp_stats_off = statsoff;
	sp->sp_idem_off = idemoff;
	sp->sp_lease_off = leaseoff;
	sp->sp_ui_off = uioff;
	sp->sp_max_keys = max_keys;
	sp->sp_max_active = max_active;
	(void)mprotect(base, page, PROT_READ);
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
	sh->sh_jwt_off = jwtoff;
	sh->sh_jwks_off = jwksoff;
	sh->sh_stats_off = statsoff;
	sh->sh_idem_off = idemoff;
	sh->sh_lease_off = leaseoff;
	sh->sh_ui_off = uioff;
	clock_gettime(CLOCK_REALTIME, &wall);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	sh->sh_mono_to_wall = ((int64_t)wall.tv_sec - mono.tv_sec) * 1000 +
	    (wall.tv_nsec - mono.tv_nsec) / 1000000;
	keystore_init(&ks, (char *)sh + off, max_keys, max_active, seed);
	stats_init((struct stats_region *)((char *)sh + statsoff), wall.tv_sec);
	ratelimit_iptable_init((char *)sh + ipoff, SHM_IP_ENTRIES,
	    seed * 0x9e3779b97f4a7c15ULL + 1);
	ratelimit_failtable_init((char *)sh + failoff, SHM_FAIL_ENTRIES,
	    seed * 0xbf58476d1ce4e5b9ULL + 3);
	ratelimit_iptable_init((char *)sh + jwtoff, SHM_JWT_ENTRIES,
	    seed * 0x94d049bb133111ebULL + 5);
	lease_table_init((char *)sh + leaseoff, seed * 0xd6e8feb86659fd93ULL +
	    7);
	/* The console's CSRF tokens are keyed with it (ui.h). */
	if (RAND_bytes(((struct ui_table *)((char *)sh + uioff))->ut_secret,
	    sizeof(((struct ui_table *)NULL)->ut_secret)) != 1) {
		munmap(base, page + size);
		errno = EIO;
		return (NULL);
	}
	return (sh);
}

/* The lease table (lease.h). */
struct ls_table *
shm_leases(const struct shm_header *sh)
{
	return ((struct ls_table *)((char *)(uintptr_t)sh +
	    shm_private(sh)->sp_lease_off));
}

/* The web console's sessions (ui.h). */
struct ui_table *
shm_ui(const struct shm_header *sh)
{
	return ((struct ui_table *)((char *)(uintptr_t)sh +
	    shm_private(sh)->sp_ui_off));
}

/* The Idempotency-Key table (idem.h). */
struct idem_entry *
shm_idem(const struct shm_header *sh)
{
	return ((struct idem_entry *)((char *)(uintptr_t)sh +
	    shm_private(sh)->sp_idem_off));
}

/* Attach ks to the key store of sh (layout from the private page). */
void
shm_keystore(struct shm_header *sh, struct keystore *ks)
{
	const struct shm_private	*sp = shm_private(sh);

	keystore_attach(ks, (char *)sh + sp->sp_ks_off, sp->sp_max_keys,
	    sp->sp_max_active);
}

/* The rate table of client addresses. */
struct rl_iptable *
shm_iptable(struct shm_header *sh)
{
	return ((struct rl_iptable *)((char *)sh + shm_private(sh)->sp_ip_off));
}

/* The metrics counters (stats.h). */
struct stats_region *
shm_stats(const struct shm_header *sh)
{
	return ((struct stats_region *)((char *)(uintptr_t)sh +
	    shm_private(sh)->sp_stats_off));
}

/* max_keys the segment was made for. */
uint32_t
shm_max_keys(const struct shm_header *sh)
{
	return (shm_private(sh)->sp_max_keys);
}

/* max_active_keys the segment was made for. */
uint32_t
shm_max_active(const struct shm_header *sh)
{
	return (shm_private(sh)->sp_max_active);
}

/* The table of failed admin authentications. */
struct rl_failtable *
shm_failtable(struct shm_header *sh)
{
	return ((struct rl_failtable *)((char *)sh +
	    shm_private(sh)->sp_fail_off));
}

/* The rate table of JWT identities (16-byte subjects, jwt.h). */
struct rl_iptable *
shm_jwttable(struct shm_header *sh)
{
	return ((struct rl_iptable *)((char *)sh +
	    shm_private(sh)->sp_jwt_off));
}

/* The JWKS slots, JWT_MAX_PROVIDERS of them (jwks.h). */
struct jwks_slot *
shm_jwks(const struct shm_header *sh)
{
	return ((struct jwks_slot *)((char *)(uintptr_t)sh +
	    shm_private(sh)->sp_jwks_off));
}

/* Unmap the segment and its private page. */
void
shm_destroy(struct shm_header *sh)
{
	size_t	 page = (size_t)sysconf(_SC_PAGESIZE);

	if (sh != NULL)
		munmap((char *)sh - page, page + shm_private(sh)->sp_size);
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
