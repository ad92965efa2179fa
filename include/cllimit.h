/*
 * The master's side of cluster-wide rate limits (lease.h has the workers'
 * side, cllimit.c the arithmetic and why it holds): it reads the workers'
 * demands from a socket, obtains and renews leases from Redis in one Lua
 * script per call, installs them in the lease table, hands back what is
 * not used, and says what workers do while Redis cannot be asked.
 */
#ifndef KEYGATE_CLLIMIT_H
#define KEYGATE_CLLIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "lease.h"

struct event_base;
struct cluster;
struct cllimit;

/*
 * A send function: argv on the master's command connection (cluster.c),
 * whose answer goes to cllimit_answer(call, reply); -1 when it is not up.
 */
typedef int	(*cllimit_send_fn)(struct cluster *, void *, int,
		    const char **);
/* The answer to a call sent (a hiredis redisReply; NULL: none came). */
void		 cllimit_answer(void *, const void *);

/* What one lease call answered (cllimit_parse_reply). */
struct cll_reply {
	uint32_t	 cr_grant;	/* units granted now */
	uint32_t	 cr_hold;	/* units Redis counts as this node's */
	int64_t		 cr_valid;	/* ms the units may be spent from now */
	int64_t		 cr_retry;	/* full: ms until one unit fits */
	int		 cr_window;	/* full: the window (0 .. 2) */
	uint32_t	 cr_free;	/* units left unleased, tightest window */
};

/* What a registration of the standing allowance answered. */
struct cll_reg_reply {
	int		 rr_ok;		/* registered (0: too many stand) */
	int64_t		 rr_valid;	/* ms it may be spent from now */
	int64_t		 rr_delay;	/* ms until it may be */
	int		 rr_fresh;	/* registered now, not renewed */
	uint32_t	 rr_pm;		/* the share, per mille */
};

/* The standing allowance's state (cs_stand). */
#define CLL_STAND_OFF		0	/* cluster_standing_share 0 */
#define CLL_STAND_WAIT		1	/* not registered yet */
#define CLL_STAND_ON		2	/* registered: see from, until */
#define CLL_STAND_REFUSED	3	/* a share above the most answered */

/* Counters for /metrics and /v1/cluster (the master's own). */
struct cll_stats {
	uint64_t	 cs_calls;	/* lease calls sent */
	uint64_t	 cs_failed;	/* ... answered with an error or none */
	uint64_t	 cs_granted;	/* units granted */
	uint64_t	 cs_returned;	/* units handed back unused */
	uint64_t	 cs_full;	/* calls that found the cluster full */
	uint32_t	 cs_subjects;	/* entries in use now */
	int		 cs_stand;	/* CLL_STAND_* */
	uint32_t	 cs_stand_max;	/* the most it may be, per mille */
	uint32_t	 cs_stand_pm;	/* the share, per mille */
	int64_t		 cs_stand_from;	/* usable from (ms, monotonic) */
	int64_t		 cs_stand_until;	/* ... until */
};

/*
 * Start: t is the lease table, prefix the namespace ("keygate:{NAME}:"),
 * node this node's id, fallback LS_MODE_LOCAL or LS_MODE_DENY, standing
 * the most this node stands on of every key's limits (percent, 0: none;
 * the nodes share CLL_REG_POOL_PM equally).
 * Makes the demand socket pair (cllimit_demand_fd() is the workers' end).
 * NULL with errno set.
 */
struct cllimit	*cllimit_new(struct event_base *, struct ls_table *,
		    struct cluster *, cllimit_send_fn, const char *,
		    const char *, int, int);
void		 cllimit_free(struct cllimit *);
int		 cllimit_demand_fd(const struct cllimit *);
/* In a worker after fork: close the master's end. */
void		 cllimit_child_detach(struct cllimit *);
/* Redis reachable (1) or not (0): workers lease, or fall back. */
void		 cllimit_redis(struct cllimit *, int);
/* Redis connected but silent CLL_SLOW_MS (1), or answering again (0). */
void		 cllimit_redis_slow(struct cllimit *, int);
#define CLL_SLOW_MS	100
/* Live nodes last seen (the fallback's divisor), at least 1. */
void		 cllimit_nodes(struct cllimit *, uint32_t);
/* Live nodes as last seen. */
uint32_t	 cllimit_nodes_seen(const struct cllimit *);
/* The mode workers are in now (enum ls_mode) and the counters. */
int		 cllimit_mode(const struct cllimit *);
void		 cllimit_stats(const struct cllimit *, struct cll_stats *);
const char	*cllimit_mode_name(int);

/* Parse a lease call's answer (a hiredis redisReply); 0 or -1. */
int		 cllimit_parse_reply(const void *, struct cll_reply *);
/* Parse a registration's answer; 0 or -1. */
int		 cllimit_parse_reg(const void *, struct cll_reg_reply *);

#endif /* KEYGATE_CLLIMIT_H */
