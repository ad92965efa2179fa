/*
 * The shared-memory segment: created by the master before it forks any
 * worker (mmap MAP_SHARED|MAP_ANONYMOUS), inherited by every worker and kept
 * across reloads.  Free of libevent so that the master, the workers and the
 * unit tests can all include it.
 *
 * Layout version 8: a header with per-worker statistics, rate-limit
 * refusal counters and the TLS session ticket keys, then the key store (keystore.h, with one rate state
 * per key slot) at sh_ks_off, then the rate table of client addresses
 * (SHM_IP_ENTRIES, ratelimit.h) at sh_ip_off, then the table of failed
 * admin authentications (SHM_FAIL_ENTRIES) at sh_fail_off, then the rate
 * table of JWT identities (SHM_JWT_ENTRIES, the same table as for
 * addresses, keyed by 16 bytes of a digest) at sh_jwt_off, then the
 * JWT_MAX_PROVIDERS JWKS slots (jwks.h) at sh_jwks_off, then the metrics
 * counters (stats.h) at sh_stats_off (version 8: key slots grew a rate-limited
 * counter and the usage history's baselines, usage.h), then (version 9)
 * the Idempotency-Key table (idem.h) at sh_idem_off, then (version 15)
 * the cluster's lease table (lease.h) at sh_lease_off, then (version 17)
 * the web console's sessions (ui.h) at sh_ui_off; sh_size covers
 * the whole segment.  These layout fields are for reading only: workers
 * can write the header, so the offsets and sizes the code uses come from a
 * private copy (shm.c), never from here.  The mapping
 * is MAP_NORESERVE: pages of the key store are only backed by memory once
 * keys are written to them, so max_keys sizes the address space, not the
 * resident memory.
 *
 * Every counter is written only by the worker that owns the slot, with
 * relaxed atomic adds, and read by anyone with relaxed atomic loads: a
 * reader may see a slightly old value but never a torn one.  A slot is
 * handed out (sw_pid set) and taken back (sw_pid cleared) only by the master,
 * which is single-threaded.
 */
#ifndef KEYGATE_SHM_H
#define KEYGATE_SHM_H

#include <stddef.h>
#include <stdint.h>

#include "ratelimit.h"
#include "stats.h"

#define SHM_MAGIC	0x314b47594b47454bULL	/* "KEGKYGK1" */
#define SHM_VERSION	17
#define SHM_IP_ENTRIES	65536	/* anonymous_rate_limit: client addresses */
#define SHM_FAIL_ENTRIES 4096	/* admin token failures: client addresses */
#define SHM_JWT_ENTRIES	65536	/* JWT identities (issuer + subject) */
#define SHM_SLOTS	STATS_WORKERS	/* worker slots: two generations */
#define SHM_HEALTH_SLOTS 2048	/* checked upstream servers (health.h): */
					/* two configurations' during a reload */
					/* during reload */

struct shm_worker {
	int32_t		 sw_pid;	/* 0: free slot */
	uint32_t	 sw_generation;	/* configuration generation */
	int64_t		 sw_started;	/* unix time */
	uint64_t	 sw_accepted;	/* connections accepted */
	uint64_t	 sw_active;	/* connections open now */
	uint64_t	 sw_requests;	/* requests answered */
	uint64_t	 sw_bytes_out;
	uint32_t	 sw_ready;	/* set by the worker once it accepts */
	/* Metrics live in stats.h's slot of the same index. */
} __attribute__((aligned(64)));

/*
 * TLS session ticket keys (tls.h), written only by the master, read by
 * the workers' ticket callback.  A seqlock: the master makes st_seq odd,
 * writes, makes it even again (release); a reader copies the keys and
 * retries while st_seq was odd or changed (acquire).  The master is
 * single-threaded and only ever rotates, so a reader never waits for
 * long; a master killed mid-write leaves st_seq odd and readers then find
 * no key (no ticket is issued or accepted: full handshakes) until the new
 * master, which makes a new segment, starts.
 */
#define SHM_TICKET_KEYS	3	/* [0] current, [1] and [2] still accepted */

struct shm_ticket_key {
	uint8_t		 tk_name[16];	/* key_name in the ticket */
	uint8_t		 tk_aes[32];	/* AES-256-CBC key */
	uint8_t		 tk_hmac[32];	/* HMAC-SHA256 key */
	int64_t		 tk_created;	/* unix s; 0: unused */
};

struct shm_tickets {
	uint32_t		 st_seq;
	uint32_t		 st_nkeys;	/* 0 .. SHM_TICKET_KEYS */
	struct shm_ticket_key	 st_keys[SHM_TICKET_KEYS];
};

struct shm_header {
	uint64_t	 sh_magic;
	uint32_t	 sh_version;
	uint32_t	 sh_slots;
	uint64_t	 sh_size;
	uint64_t	 sh_created;	/* unix time */
	uint64_t	 sh_ks_off;	/* key store region, 64-byte aligned */
	uint32_t	 sh_max_keys;
	uint64_t	 sh_ip_off;	/* rate table of client addresses */
	uint64_t	 sh_fail_off;	/* failed admin authentications */
	uint64_t	 sh_jwt_off;	/* rate table of JWT identities */
	uint64_t	 sh_jwks_off;	/* JWKS slots */
	uint64_t	 sh_stats_off;	/* metrics counters */
	uint64_t	 sh_idem_off;	/* Idempotency-Key table (idem.h) */
	uint64_t	 sh_lease_off;	/* lease table (lease.h) */
	uint64_t	 sh_ui_off;	/* console sessions (ui.h) */
	/*
	 * Wall-clock minus CLOCK_MONOTONIC ms, fixed at creation: the
	 * limiter's times shown as wall-clock times in the access log, the
	 * same in every worker.
	 */
	int64_t		 sh_mono_to_wall;
	/*
	 * Set by the master for shutdown_delay after SIGTERM: workers serve
	 * as usual but health_path answers 503, so that load balancers stop
	 * sending before the listeners close.
	 */
	uint32_t	 sh_draining;
	uint32_t	 sh_pad;
	struct shm_tickets sh_tickets;
	struct shm_worker sh_workers[SHM_SLOTS];
	/*
	 * Active health checks (health.h): one word per checked server,
	 * written by the master only, read by the workers (relaxed; a
	 * word is read whole): the check's id in the high 32 bits, 1 in
	 * the low bit while the server is out.  A worker whose server's
	 * us_health_id is not the word's (a slot given to another check
	 * since its configuration was loaded) takes the server as in.
	 */
	uint64_t	 sh_health[SHM_HEALTH_SLOTS];
};

struct keystore;

/* Map a new segment with a key store for max_keys; NULL with errno set. */
struct shm_header *shm_create(uint32_t, uint32_t);

/* Attach ks to the segment's key store (with the per-key rate states). */
void		 shm_keystore(struct shm_header *, struct keystore *);

/* The rate table of client addresses (anonymous_rate_limit). */
struct rl_iptable *shm_iptable(struct shm_header *);

/* The rate table of JWT identities (jwt_identity's ji_ratekey). */
struct rl_iptable *shm_jwttable(struct shm_header *);

/* The JWKS slots (jwks.h), JWT_MAX_PROVIDERS of them. */
struct jwks_slot;
struct jwks_slot *shm_jwks(const struct shm_header *);

/* The table of failed admin authentications by client address. */
struct rl_failtable *shm_failtable(struct shm_header *);

/* The metrics counters (stats.h): per-worker slots, names, sums. */
struct stats_region;
struct stats_region *shm_stats(const struct shm_header *);

/* The cluster's lease table (lease.h). */
struct ls_table;
struct ls_table *shm_leases(const struct shm_header *);

/* The Idempotency-Key table (idem.h), IDEM_ENTRIES entries. */
struct idem_entry;
struct idem_entry *shm_idem(const struct shm_header *);
/* The web console's sessions (ui.h). */
struct ui_table;
struct ui_table *shm_ui(const struct shm_header *);

/* max_keys the segment was made for (not the header's sh_max_keys). */
uint32_t	 shm_max_keys(const struct shm_header *);
/* max_active_keys the segment was made for (its active rate table). */
uint32_t	 shm_max_active(const struct shm_header *);
void		 shm_destroy(struct shm_header *);

/*
 * Master: reserve a free slot before fork() (so the child knows its index),
 * name its pid after fork(), give it back when the worker is reaped (by pid)
 * or when fork() failed (by index).
 */
int		 shm_worker_attach(struct shm_header *, uint32_t, int64_t);
void		 shm_worker_setpid(struct shm_header *, int, int32_t);
int		 shm_worker_detach(struct shm_header *, int32_t);
void		 shm_worker_release(struct shm_header *, int);

#define SHM_ADD(p, n)	__atomic_fetch_add((p), (n), __ATOMIC_RELAXED)
#define SHM_SUB(p, n)	__atomic_fetch_sub((p), (n), __ATOMIC_RELAXED)
#define SHM_LOAD(p)	__atomic_load_n((p), __ATOMIC_RELAXED)

#endif /* KEYGATE_SHM_H */
