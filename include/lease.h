/*
 * Quota leases: rate limits that hold across the nodes of a cluster
 * (cluster.h) without a Redis round trip per request.  Free of libevent
 * and of hiredis so that the master, the workers and the unit tests can
 * all include it.
 *
 * The master of each node obtains, in one atomic Redis script
 * (cllimit.c), a lease of N units of a subject's quota (a key, a JWT
 * identity or a client address, with the limits of the route the request
 * came by), valid for a short time; the workers spend it from the lease
 * table in the shared segment, one compare-and-swap per request, and ask
 * the master for more through a socket before it runs out.  A request that
 * finds no unit waits for one (LS_WAIT_MS at most), so low limits and the
 * last units of a window are decided by Redis one by one rather than
 * overshot.  Why the cluster never admits more than a limit is in
 * cllimit.c; this file only keeps what a node was given.
 *
 * Times are CLOCK_MONOTONIC ms of this node; a lease's expiry is worked
 * out by the master from its own clock (cllimit.c), never from Redis's.
 */
#ifndef KEYGATE_LEASE_H
#define KEYGATE_LEASE_H

#include <stddef.h>
#include <stdint.h>

#include "ratelimit.h"

#define LS_ENTRIES	65536	/* subjects with a lease at once */
#define LS_WAYS		8	/* entries per set */
#define LS_SUBJ_MAX	40	/* kind byte + identity */
#define LS_LEFT_BITS	20	/* units in a word (RL_MAXLIMIT fits) */
#define LS_LEFT_MASK	((UINT64_C(1) << LS_LEFT_BITS) - 1)
#define LS_WAIT_MS	5	/* a request waits this for a unit, and */
				/* on while the master is alive, up to */
#define LS_STALL_MS	100	/* this; a master silent this long is */
				/* lost: the fallback decides */
#define LS_GRACE_MS	10000	/* a freed entry is not reused sooner */

/* Subject kinds: the first byte of ls_subject's bytes. */
#define LS_KIND_KEY	'k'	/* + the key's id */
#define LS_KIND_JWT	'j'	/* + jwt_identity's ji_ratekey */
#define LS_KIND_ADDR	'a'	/* + the client address, 4 or 16 bytes */

/*
 * What a lease is for: a subject and the limits it is checked against
 * (one subject has one lease per set of limits: a route that overrides
 * the limits spends from its own lease, granted against its own limits,
 * while Redis counts all of the subject's units in every window).
 */
struct ls_subject {
	uint8_t		 lsu_len;
	uint8_t		 lsu_bytes[LS_SUBJ_MAX];
	uint8_t		 lsu_pad[3];
	uint32_t	 lsu_limit[RL_WINDOWS];
};

/* What workers do when Redis cannot be asked (cluster_fallback). */
enum ls_mode {
	LS_MODE_OFF = 0,	/* not a cluster: local limits only */
	LS_MODE_LEASE,		/* leases from Redis */
	LS_MODE_LOCAL,		/* Redis lost: limit / nodes on this node */
	LS_MODE_DENY		/* Redis lost: 503 cluster_unavailable */
};

/*
 * One subject's lease.  le_tag, le_subj, le_low, le_deny* and le_free are
 * written by the master only; workers take units from le_word by CAS and
 * set le_want.  le_word is (expiry << LS_LEFT_BITS) | units left: a unit
 * may be taken while now < expiry.  Expiries of one entry never go down,
 * and an entry is given to another subject only LS_GRACE_MS after its
 * last lease expired, with a later expiry; see lease.c.
 */
struct ls_entry {
	uint64_t	 le_tag;	/* 0: free */
	uint64_t	 le_word;
	int64_t		 le_deny;	/* the cluster is full until (ms) */
	uint32_t	 le_deny_window;	/* ... in this window */
	uint32_t	 le_want;	/* a worker asked for units */
	uint32_t	 le_low;	/* ask for more at this many left */
	uint32_t	 le_free;	/* units not leased anywhere at the */
					/* last grant (tightest window) */
	int64_t		 le_renew;	/* ask for a renewal from (ms) */
	struct ls_subject le_subj;
} __attribute__((aligned(64)));

struct ls_table {
	uint64_t	 lt_seed;
	uint32_t	 lt_nsets;
	uint32_t	 lt_mode;	/* enum ls_mode, master-written */
	uint32_t	 lt_nodes;	/* live nodes last seen (>= 1) */
	uint32_t	 lt_fallback;	/* cluster_fallback: LS_MODE_LOCAL */
					/* or LS_MODE_DENY */
	int64_t		 lt_alive;	/* the master's last pass (ms) */
	/*
	 * The node's standing allowance (cllimit.c): units of every key's
	 * limits, a share per mille of each, that this node may admit
	 * without a lease, from lt_stand_from until the expiry (ms): both
	 * in one word, LS_STAND_WORD(share, until), so that a share that
	 * shrank is never used with the later expiry of the smaller one.
	 * Master-written: from before the word (and the word cleared first
	 * when from moves), so that a worker that reads the word, then
	 * from, never pairs a new expiry with an older from.
	 */
	uint64_t	 lt_stand;
	int64_t		 lt_stand_from;
	struct ls_entry	 lt_entry[];
} __attribute__((aligned(64)));

/* A demand, worker to master: one datagram of a SOCK_SEQPACKET pair. */
struct ls_demand {
	struct ls_subject ld_subj;
};

/* Bytes for the table of LS_ENTRIES entries. */
size_t		 lease_table_size(void);
/* Format a zeroed region of lease_table_size() bytes. */
struct ls_table	*lease_table_init(void *, uint64_t);

/* Fill s for kind and the len bytes of id with limits lim. */
void		 lease_subject(struct ls_subject *, int, const void *, size_t,
		    const uint32_t[RL_WINDOWS]);

/* The entry of s, or NULL. */
struct ls_entry	*lease_find(struct ls_table *, const struct ls_subject *);

/*
 * Worker: the caps of the standing allowance for limits lim at now into
 * cap (per mille of each enforced window, rounded down) and its share
 * (per mille); 0 when it does not apply (none, not yet, expired, or
 * below one unit in some window).
 */
int		 lease_standing(const struct ls_table *, const uint32_t[RL_WINDOWS],
		    int64_t, uint32_t[RL_WINDOWS]);
/* The standing allowance of limit l at pm per mille (cllimit.c's too). */
#define LS_STAND_UNITS(l, pm)	((uint32_t)((uint64_t)(l) * (pm) / 1000))
/* lt_stand: the share (per mille, 10 bits) and the expiry (ms). */
#define LS_STAND_WORD(pm, until) \
	((uint64_t)(pm) << 54 | ((uint64_t)(until) & ((UINT64_C(1) << 54) - 1)))
#define LS_STAND_PM(word)	((uint32_t)((word) >> 54))
#define LS_STAND_UNTIL(word)	((int64_t)((word) & ((UINT64_C(1) << 54) - 1)))

/* lease_take() outcomes. */
#define LS_TAKEN	0	/* one unit taken */
#define LS_WAIT		1	/* none here: the master was asked */
#define LS_FULL		2	/* the cluster is full (see ls_took) */

/* What lease_take() took, or why it refused. */
struct ls_took {
	struct ls_entry	*lt_e;
	uint64_t	 lt_expiry;	/* LS_TAKEN: the unit's, ms */
	int64_t		 lt_until;	/* LS_FULL: full until (ms) */
	int		 lt_window;	/* LS_FULL: the full window */
	uint32_t	 lt_free;	/* LS_TAKEN: units left, cluster-wide */
					/* at least as far as this node knows */
};

/* lease_take() flags. */
#define LS_ASK_EMPTY	1	/* ask when there is no unit to take */
#define LS_ASK_MORE	2	/* ask when running low or near expiry */
#define LS_ASK_ALL	(LS_ASK_EMPTY | LS_ASK_MORE)

/*
 * Worker: take one unit of s's lease at now; fd is the demand socket (a
 * demand is written, if nobody asked yet, with LS_ASK_MORE when the
 * units left fall to le_low or the lease nears its renewal, and with
 * LS_ASK_EMPTY when there is no unit: the entry is missing or empty).
 * Never blocks.
 */
int		 lease_take(struct ls_table *, int, const struct ls_subject *,
		    int64_t, int, struct ls_took *);

/*
 * Master: the entry of s, claimed for it if it has none (an entry free
 * since LS_GRACE_MS at now, else NULL); *fresh is set if claimed.
 */
struct ls_entry	*lease_claim(struct ls_table *, const struct ls_subject *,
		    int64_t, const int64_t *, int *);
/* Master: units left in e (0 once expired at now), and the expiry. */
uint32_t	 lease_left(const struct ls_entry *, int64_t, uint64_t *);
/* Master: take every unit left in e back; returns how many. */
uint32_t	 lease_drain(struct ls_entry *);
/*
 * Master: after a grant of n units valid until expiry, when Redis counts
 * cap units as held by this node: left becomes min(left + n, cap).
 * Returns the new left; *was (if not NULL) the left it replaced.
 */
uint32_t	 lease_install(struct ls_entry *, uint64_t, uint32_t, uint32_t,
		    uint32_t *);
/* Master: let e go (its lease drained and expired). */
void		 lease_release(struct ls_entry *);
/* Index of e in t (the master's own per-entry state). */
size_t		 lease_index(const struct ls_table *, const struct ls_entry *);

#endif /* KEYGATE_LEASE_H */
