/*
 * The counters behind the metrics (metrics.h) and the status view, in the
 * shared segment (shm_stats()).  Free of libevent so that the master, the
 * workers and the unit tests can all include it.
 *
 * One struct stats_slot per worker slot (the same index as shm.h's
 * sh_workers), plus one more, STATS_RETIRED, holding the sums of every
 * worker that has ended.  A worker writes only its own slot, with plain
 * loads and stores (STATS_BUMP: no lock prefix, no syscall: one writer per
 * word); anyone reads with relaxed atomic loads.  A worker killed at any
 * instruction leaves each word either counted or not: nothing is torn.
 *
 * Names (route names, upstream servers) are numbered once by the master,
 * in stats_master: an id, once given, keeps its name for the life of the
 * segment, so counters survive SIGHUP and workers of two generations
 * count into the same ids.  The master writes a name, then publishes it
 * by a release store of the count; readers load the count with acquire.
 *
 * Hand-over: when the master reaps a worker it folds that slot into
 * STATS_RETIRED and zeroes it (stats_fold) inside the sm_seq seqlock, and
 * readers (stats_total) retry while sm_seq is odd or changed, so a sum is
 * never taken with the worker's counts both in its slot and in the
 * retired sums, or in neither: totals never go backwards.  Gauges (open
 * connections) are not folded: a dead worker's connections are gone.
 */
#ifndef KEYGATE_STATS_H
#define KEYGATE_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "ratelimit.h"

#define STATS_WORKERS		128	/* shm.h's SHM_SLOTS is this */
#define STATS_RETIRED		STATS_WORKERS	/* slot of ended workers */

#define STATS_ROUTES		256	/* route names, across reloads */
#define STATS_ROUTE_NONE	0	/* "none": the request matched no route */
#define STATS_ROUTE_OTHER	1	/* "other": names beyond STATS_ROUTES */
#define STATS_UPSTREAMS		64	/* (upstream, server) pairs */
#define STATS_UPSTREAM_OTHER	0	/* "other", "other": beyond that */
#define STATS_NAME_MAX		64	/* bytes of a name, with its NUL */
#define STATS_CODES		15	/* distinct statuses, per route */
					/* and worker; more go to sr_other */
#define STATS_SUM_CODES		64	/* distinct statuses per route in */
					/* a total; more go to rt_other */
#define STATS_BUCKETS		14	/* finite histogram bounds */

/* Connection states of keygate_connections{state}. */
enum stats_conn {
	STATS_CONN_READING,	/* handshake, request head or body */
	STATS_CONN_WRITING,	/* decided: waiting on or writing the answer */
	STATS_CONN_IDLE,	/* keep-alive, between requests */
	STATS_NCONN
};

/* result of keygate_upstream_requests_total. */
enum stats_upresult {
	STATS_UP_OK,		/* a response head arrived (any status) */
	STATS_UP_CONNECT_ERROR,	/* connect() failed or timed out */
	STATS_UP_TIMEOUT,	/* read_timeout waiting for the response */
	STATS_UP_ERROR,		/* reset, early close, bad response */
	STATS_UP_TLS_ERROR,	/* handshake or verification failed */
	STATS_NUPRESULTS
};

/* reason of keygate_auth_refusals_total: the refusal codes of auth.c. */
enum stats_reason {
	STATS_R_MISSING,	/* missing_credentials */
	STATS_R_MALFORMED,	/* malformed_credentials */
	STATS_R_INVALID,	/* invalid_credentials */
	STATS_R_EXPIRED,	/* expired_credentials */
	STATS_R_DISABLED,	/* disabled_key */
	STATS_R_SCOPE,		/* insufficient_scope */
	STATS_R_FORBIDDEN,	/* forbidden */
	STATS_R_UNAVAILABLE,	/* auth_unavailable */
	STATS_NREASONS
};

/*
 * scheme of keygate_auth_refusals_total: [0] "none" (no credential of the
 * route's schemes was presented), then enum route_auth's values (route.h)
 * "anonymous", "deny", "api-key", "app-key", "jwt".
 */
#define STATS_NSCHEMES		6

/* result of keygate_tls_handshakes_total. */
enum stats_tls {
	STATS_TLS_FULL,
	STATS_TLS_RESUMED,
	STATS_TLS_FAILED,
	STATS_NTLS
};

/* Subjects of keygate_ratelimit_refusals_total, as auth_rate's ra_refused. */
#define STATS_NSUBJECTS		3	/* key, address, jwt */
/* How cluster limits decided a request (keygate_cluster_limit_*). */
#define STATS_LEASE_LEASE	0	/* a unit of this node's lease */
#define STATS_LEASE_WAITED	1	/* ... after waiting for one */
#define STATS_LEASE_FULL	2	/* refused: the cluster is full */
#define STATS_LEASE_LOCAL	3	/* Redis lost: limit / nodes here */
#define STATS_LEASE_DENY	4	/* Redis lost: 503 */
#define STATS_LEASE_TIMEOUT	5	/* no unit in LS_WAIT_MS: 503 */
#define STATS_LEASE_STANDING	6	/* the node's standing allowance */
#define STATS_NLEASE		7

extern const char *const stats_conn_name[STATS_NCONN];
extern const char *const stats_upresult_name[STATS_NUPRESULTS];
extern const char *const stats_reason_name[STATS_NREASONS];
extern const char *const stats_scheme_name[STATS_NSCHEMES];
extern const char *const stats_tls_name[STATS_NTLS];
extern const char *const stats_subject_name[STATS_NSUBJECTS];
extern const char *const stats_lease_name[STATS_NLEASE];
/* Upper bounds of the histogram buckets, microseconds: 0.0005 s ... 10 s. */
extern const uint32_t stats_bucket_us[STATS_BUCKETS];

/*
 * A duration histogram.  Buckets are not cumulative here (one add per
 * observation); [STATS_BUCKETS] counts what is above the last bound.  The
 * exposition makes them cumulative.  The count is the sum of the buckets.
 */
struct stats_hist {
	uint64_t	 h_bucket[STATS_BUCKETS + 1];
	uint64_t	 h_sum_us;
};

/* keygate_requests_total and keygate_request_duration_seconds of a route. */
struct stats_route {
	/*
	 * Statuses seen, 0: free entry.  The owner stores a status (release)
	 * before the first add to its count, so a reader that loads the
	 * status with acquire and finds it 0 also finds the count 0.
	 */
	uint32_t	 sr_code[STATS_CODES + 1];	/* [STATS_CODES]: pad */
	uint64_t	 sr_count[STATS_CODES];
	uint64_t	 sr_other;	/* statuses when sr_code is full */
	struct stats_hist sr_duration;
};

/* keygate_upstream_requests_total and _duration_seconds of a server. */
struct stats_upstream {
	uint64_t	 su_result[STATS_NUPRESULTS];
	struct stats_hist su_duration;	/* attempts with STATS_UP_OK */
};

struct stats_slot {
	uint32_t	 ss_used;	/* master: 1 from stats_attach() */
					/* to stats_fold() (always 1 for */
					/* STATS_RETIRED) */
	uint32_t	 ss_pad;
	uint64_t	 ss_accepted;		/* connections accepted */
	uint64_t	 ss_conn[STATS_NCONN];	/* gauges, now */
	uint64_t	 ss_tls[STATS_NTLS];
	uint64_t	 ss_auth[STATS_NSCHEMES][STATS_NREASONS];
	/* 429s by subject and window: auth_rate's ra_refused points here. */
	uint64_t	 ss_rate[STATS_NSUBJECTS][RL_WINDOWS];
	/* Cluster limits' decisions, STATS_LEASE_*: auth_rate's ra_lease. */
	uint64_t	 ss_lease[STATS_NLEASE];
	struct stats_route ss_routes[STATS_ROUTES];
	struct stats_upstream ss_upstreams[STATS_UPSTREAMS];
} __attribute__((aligned(64)));

/* process_* of keygate_: the master, or its workers summed. */
struct stats_proc {
	uint64_t	 pr_cpu_us;	/* user + system */
	uint64_t	 pr_rss;	/* bytes resident */
	uint64_t	 pr_vsize;	/* bytes of address space */
	uint64_t	 pr_fds;	/* open descriptors */
	uint64_t	 pr_max_fds;	/* RLIMIT_NOFILE (soft) */
	int64_t		 pr_start;	/* unix s the process started */
};
#define STATS_PROC_MASTER	0
#define STATS_PROC_WORKERS	1	/* live workers; CPU includes the ended */

/*
 * Totals taken by the master once a second, for the last-minute figures of
 * /v1/status: a ring of STATS_SAMPLES, so the oldest is a minute old.
 */
struct stats_sample {
	int64_t		 sa_time;	/* unix s; 0: not taken yet */
	uint64_t	 sa_requests;	/* answered, any route, any status */
	uint64_t	 sa_refused;	/* refused by authentication (401/403) */
	uint64_t	 sa_limited;	/* refused by a rate limit (429) */
	uint64_t	 sa_errors;	/* answered with a 5xx */
	uint64_t	 sa_up_ok[STATS_UPSTREAMS];	/* attempts answered */
	uint64_t	 sa_up_fail[STATS_UPSTREAMS];	/* attempts failed */
};
#define STATS_SAMPLES		61

/*
 * The master's sample once a minute, for the last hour's refusals in
 * /v1/status: a ring of STATS_HOUR_SAMPLES, so the oldest is an hour old.
 */
struct stats_hour_sample {
	int64_t		 sh_time;	/* unix s; 0: not taken yet */
	uint64_t	 sh_refused[STATS_NREASONS];	/* by reason, any scheme */
	uint64_t	 sh_limited;	/* refused by a rate limit (429) */
};
#define STATS_HOUR_SAMPLES	61

/* Written by the master only. */
struct stats_master {
	uint32_t	 sm_seq;		/* seqlock: folds and every */
						/* field below written later */
	uint32_t	 sm_nroutes;		/* names given (release store) */
	uint32_t	 sm_nupstreams;
	uint32_t	 sm_pad;
	int64_t		 sm_started;		/* unix s the master started */
	uint64_t	 sm_retired_cpu_us;	/* CPU of ended workers (wait4) */
	char		 sm_route[STATS_ROUTES][STATS_NAME_MAX];
	char		 sm_upstream[STATS_UPSTREAMS][STATS_NAME_MAX];
	char		 sm_server[STATS_UPSTREAMS][STATS_NAME_MAX];	/* HOST:PORT */
	/* Inside sm_seq as well: */
	uint64_t	 sm_reloads[2];		/* [0] failed, [1] succeeded */
	int64_t		 sm_reload_ok_at;	/* unix s of the last success */
						/* (start-up counts as one) */
	uint64_t	 sm_restarts;		/* workers replaced after dying */
	uint32_t	 sm_workers_conf;	/* configured worker count */
	uint32_t	 sm_nsample;		/* next entry of sm_samples */
	struct stats_proc sm_proc[2];		/* STATS_PROC_* */
	struct stats_sample sm_samples[STATS_SAMPLES];
	uint32_t	 sm_nhour;		/* next entry of sm_hour */
	uint32_t	 sm_pad2;
	struct stats_hour_sample sm_hour[STATS_HOUR_SAMPLES];
	/*
	 * Outside sm_seq: each byte stored whole by the master's health
	 * checker (health.c): STATS_HEALTH_* of the upstream server with
	 * that id, for keygate_upstream_server_healthy.
	 */
	uint8_t		 sm_health[STATS_UPSTREAMS];
	/*
	 * Outside sm_seq, each word stored whole by the master's cluster
	 * (cluster.c): configured, Redis reachable, changes applied from
	 * the stream, and how far behind the stream's last entry (ms).
	 */
	uint32_t	 sm_cluster;
	uint32_t	 sm_cluster_up;
	uint64_t	 sm_cluster_applied;
	int64_t		 sm_cluster_lag_ms;
	/*
	 * The same for the rate limits' leases (cllimit.h): the mode
	 * (lease.h's enum ls_mode), lease calls sent and failed, units
	 * granted and handed back, calls that found the cluster full.
	 */
	uint32_t	 sm_lim_mode;
	uint32_t	 sm_lim_pad;
	uint64_t	 sm_lim_calls;
	uint64_t	 sm_lim_failed;
	uint64_t	 sm_lim_granted;
	uint64_t	 sm_lim_returned;
	uint64_t	 sm_lim_full;
};
#define STATS_HEALTH_NONE	0	/* not checked */
#define STATS_HEALTH_UP		1
#define STATS_HEALTH_DOWN	2

struct stats_region {
	struct stats_master	 sr_master;
	struct stats_slot	 sr_slots[STATS_WORKERS + 1];
};

/*
 * A consistent sum of every slot in use and the retired sums (heap: about
 * 300 KiB).  Only names below st_nroutes/st_nupstreams are summed.
 */
struct stats_route_total {
	uint32_t	 rt_ncodes;
	uint32_t	 rt_code[STATS_SUM_CODES];	/* ascending */
	uint64_t	 rt_count[STATS_SUM_CODES];
	uint64_t	 rt_other;
	struct stats_hist rt_duration;
};

struct stats_total {
	uint32_t	 st_nroutes;
	uint32_t	 st_nupstreams;
	uint32_t	 st_workers;		/* slots in use (live workers) */
	uint64_t	 st_accepted;
	uint64_t	 st_conn[STATS_NCONN];
	uint64_t	 st_tls[STATS_NTLS];
	uint64_t	 st_auth[STATS_NSCHEMES][STATS_NREASONS];
	uint64_t	 st_rate[STATS_NSUBJECTS][RL_WINDOWS];
	uint64_t	 st_lease[STATS_NLEASE];
	struct stats_route_total st_routes[STATS_ROUTES];
	struct stats_upstream st_upstreams[STATS_UPSTREAMS];
	int64_t		 st_started;
	uint64_t	 st_retired_cpu_us;
	/* The master's own figures, copied: */
	uint64_t	 st_reloads[2];		/* [0] failed, [1] succeeded */
	int64_t		 st_reload_ok_at;
	uint64_t	 st_restarts;
	uint32_t	 st_workers_conf;
	struct stats_proc st_proc[2];
	/*
	 * The last minute (or less, just after start-up): the difference of
	 * the newest sample and the oldest at most 60 s older, over
	 * st_minute_s seconds (0: fewer than two samples, all zero).
	 */
	int64_t		 st_minute_s;
	struct stats_sample st_minute;
	/* The last hour, the same way from the minutes' ring (st_hour_s). */
	int64_t		 st_hour_s;
	struct stats_hour_sample st_hour;
};

/*
 * One writer per word: a plain load and store, which the compiler may not
 * tear or drop (relaxed atomics compile to ordinary moves on x86-64 and
 * arm64).  Never use on a word two processes write.
 */
#define STATS_BUMP(p, n)						\
	__atomic_store_n((p), __atomic_load_n((p), __ATOMIC_RELAXED) + (n), \
	    __ATOMIC_RELAXED)

/* --- the request path (workers; inline, no call, no lock, no syscall) -- */

/* The bucket of a duration in microseconds (binary search, 4 steps). */
static inline int
stats_bucket(int64_t us)
{
	int	 lo = 0, hi = STATS_BUCKETS, mid;

	while (lo < hi) {
		mid = (lo + hi) / 2;
		if (us <= (int64_t)stats_bucket_us[mid])
			hi = mid;
		else
			lo = mid + 1;
	}
	return (lo);
}

/* Count one observation of us microseconds (negative counts as 0). */
static inline void
stats_observe(struct stats_hist *h, int64_t us)
{
	if (us < 0)
		us = 0;
	STATS_BUMP(&h->h_bucket[stats_bucket(us)], 1);
	STATS_BUMP(&h->h_sum_us, (uint64_t)us);
}

/* A request answered on route id (STATS_ROUTE_NONE: no route). */
static inline void
stats_request(struct stats_slot *s, uint32_t id, int status, int64_t us)
{
	struct stats_route	*r;
	int			 i;

	if (id >= STATS_ROUTES)
		id = STATS_ROUTE_OTHER;
	r = &s->ss_routes[id];
	for (i = 0; i < STATS_CODES; i++) {
		if (r->sr_code[i] == (uint32_t)status)
			break;
		if (r->sr_code[i] == 0) {
			__atomic_store_n(&r->sr_code[i], (uint32_t)status,
			    __ATOMIC_RELEASE);
			break;
		}
	}
	if (i < STATS_CODES)
		STATS_BUMP(&r->sr_count[i], 1);
	else
		STATS_BUMP(&r->sr_other, 1);
	stats_observe(&r->sr_duration, us);
}

/* An attempt on upstream server id; us counts only for STATS_UP_OK. */
static inline void
stats_upstream(struct stats_slot *s, uint32_t id, enum stats_upresult res,
    int64_t us)
{
	struct stats_upstream	*u;

	if (id >= STATS_UPSTREAMS)
		id = STATS_UPSTREAM_OTHER;
	u = &s->ss_upstreams[id];
	STATS_BUMP(&u->su_result[res], 1);
	if (res == STATS_UP_OK)
		stats_observe(&u->su_duration, us);
}

/* A connection moves from state from to state to; -1: none (open/close). */
static inline void
stats_conn_move(struct stats_slot *s, int from, int to)
{
	if (from == to)
		return;
	if (from >= 0)
		STATS_BUMP(&s->ss_conn[from], (uint64_t)-1);
	if (to >= 0)
		STATS_BUMP(&s->ss_conn[to], 1);
}

/* --- anywhere ---------------------------------------------------------- */

/* The reason index of a refusal code ("missing_credentials"...), or -1. */
int	 stats_reason(const char *);

/* Format a zeroed region: the reserved names, the start time. */
void	 stats_init(struct stats_region *, int64_t);

/*
 * A consistent sum (see the top of this file) into t.  Returns 0, or -1
 * if the seqlock never settled (a master killed mid-fold leaves sm_seq
 * odd): t then holds a sum that may be off by one worker.
 */
int	 stats_total(const struct stats_region *, struct stats_total *);

/* Name of route id / upstream id and its server, "" if not given. */
const char *stats_route_name(const struct stats_region *, uint32_t);
const char *stats_upstream_name(const struct stats_region *, uint32_t);
const char *stats_server_name(const struct stats_region *, uint32_t);

/* --- the master -------------------------------------------------------- */

/*
 * The id of route name, given now if new; STATS_ROUTE_OTHER when every id
 * is taken.  The name is cut to STATS_NAME_MAX - 1 bytes.
 */
uint32_t stats_route_id(struct stats_region *, const char *);

/* The id of (upstream, server), given now if new; or STATS_UPSTREAM_OTHER. */
uint32_t stats_upstream_id(struct stats_region *, const char *, const char *);

/* A SIGHUP was applied (ok) or refused, at unix s now. */
void	 stats_reloaded(struct stats_region *, int, int64_t);

/* A worker that died on its own is being replaced. */
void	 stats_restarted(struct stats_region *);

/* n workers are configured. */
void	 stats_workers(struct stats_region *, uint32_t);

/* Publish the process figures of which (STATS_PROC_*). */
void	 stats_proc_set(struct stats_region *, int, const struct stats_proc *);

/*
 * Once a second: take a sample of the totals at unix s now for the
 * last-minute figures.  scratch is a caller's struct stats_total (large).
 */
void	 stats_sample(struct stats_region *, struct stats_total *, int64_t);

/* Before fork(): zero slot and mark it used. */
void	 stats_attach(struct stats_region *, int);

/*
 * After reaping the worker of slot: add its counters to STATS_RETIRED and
 * cpu_us (its rusage, user + system) to the workers' CPU time, then zero
 * the slot and mark it free, all inside the seqlock.
 */
void	 stats_fold(struct stats_region *, int, uint64_t);

#endif /* KEYGATE_STATS_H */
