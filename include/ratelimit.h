/*
 * Rate limiter: three sliding windows per key (default 20/1s, 200/10s,
 * 1000/60s), counted in fixed-size state that lives in the shared-memory
 * segment and is updated by every worker process with atomics only.  Free
 * of libevent so that the master, the workers and the unit tests can all
 * include it.
 *
 * Time is always passed in as now, in milliseconds (any clock, as long as
 * all processes use the same one, e.g. CLOCK_MONOTONIC or the wall clock);
 * nothing here reads a clock.  Zeroed memory is a valid empty state.
 *
 * Guarantee (see ratelimit.c for why it holds): for one state, in no
 * interval of a window's length are more requests admitted than that
 * window's limit, whatever the number of processes; a client that sends at
 * most 90 % of every limit is never refused; a refused request counts in
 * no window.  The callers' clocks must agree to within a bucket (a
 * 31st of the window; 33 ms for 1 s), which one clock read per request
 * easily does.
 */
#ifndef KEYGATE_RATELIMIT_H
#define KEYGATE_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#define RL_WINDOWS	3	/* windows per key, shortest first by convention */
#define RL_SLOTS	32	/* buckets per window (one more than the span) */
#define RL_MAXLIMIT	1000000	/* larger limits are clamped to this */
#define RL_WAYS		8	/* IP table: entries per set */

/*
 * Per-key state: 3 x 32 words = 768 bytes, twelve cache lines.  Each word is
 * (bucket epoch << 28) | (latest arrival << 20) | count, written only by
 * compare-and-swap.
 */
struct rl_state {
	uint64_t	 rl_slot[RL_WINDOWS][RL_SLOTS];
} __attribute__((aligned(64)));

/*
 * Limits of one key or route.  A window with rl_limit 0 or rl_window_ms 0
 * is not enforced (and not counted).
 */
struct rl_limits {
	uint32_t	 rl_limit[RL_WINDOWS];
	uint32_t	 rl_window_ms[RL_WINDOWS];
};

/*
 * Outcome of ratelimit_admit(), ready for the headers.  rr_window is the
 * window nearest exhaustion (fewest remaining; on refusal, the refusing
 * window that is free last), -1 if no window is enforced.  rr_reset is
 * seconds (rounded up) until that window is empty again; rr_retry_after is
 * 0 when admitted, else whole seconds (>= 1) after which a request is
 * admitted if nothing else is admitted meanwhile.
 */
struct rl_result {
	int		 rr_window;
	uint32_t	 rr_limit;
	uint32_t	 rr_remaining;
	uint32_t	 rr_reset;
	uint32_t	 rr_retry_after;
};

/* Anonymous per-client-IP table (bounded, set-associative); opaque. */
struct rl_iptable;

/*
 * keygate's three windows: 1 s, 10 s and 60 s (index 0, 1, 2, the same as
 * KS_W1S ... in keystore.h), named "1s", "10s" and "60s".
 */
#define RL_DEFAULT_1S	20
#define RL_DEFAULT_10S	200
#define RL_DEFAULT_60S	1000
extern const uint32_t	 ratelimit_window_ms[RL_WINDOWS];
extern const char *const ratelimit_window_name[RL_WINDOWS];

/* Fill l with the defaults 20/1s, 200/10s, 1000/60s. */
void	 ratelimit_defaults(struct rl_limits *);

/*
 * Fill l with limit[w] per window of ratelimit_window_ms (0: window not
 * enforced).
 */
void	 ratelimit_set(struct rl_limits *, const uint32_t[RL_WINDOWS]);

/*
 * Admit one request at now (ms) against st: 1 admitted (counted in every
 * enforced window), 0 refused (counted in none).  res may be NULL.
 */
int	 ratelimit_admit(struct rl_state *, const struct rl_limits *, int64_t,
	    struct rl_result *);
/*
 * A cluster node's standing allowance for one key (cllimit.c): a unit is
 * taken only while, in every enforced window of l, no interval of the
 * window's length would hold more than cap[w] units (counted in fifths
 * of the window, looking back 1.25 windows; caps above 1,023 count as
 * 1,023).  Three words, updated by compare-and-swap only (a refusal
 * takes its units back); zeroed memory is empty.  1 taken, 0 refused (a
 * cap of 0 in an enforced window refuses).
 */
struct rl_standing {
	uint64_t	 rs_word[RL_WINDOWS];
};
int	 ratelimit_standing_admit(struct rl_standing *,
	    const struct rl_limits *, const uint32_t[RL_WINDOWS], int64_t);
/* Whether a unit could be taken now (changes nothing). */
int	 ratelimit_standing_room(const struct rl_standing *,
	    const struct rl_limits *, const uint32_t[RL_WINDOWS], int64_t);

/*
 * Start loading st into the cache (the request path calls it early): every
 * cache line at once, since a key that has not been used for a while is
 * in no cache, and twelve misses in parallel cost about what one does.
 * Inline, so that the key store's prefetch needs nothing else of this.
 */
static inline void
ratelimit_prefetch(const struct rl_state *st)
{
	const char	*p = (const char *)st;
	size_t		 off;

	for (off = 0; off < sizeof(*st); off += 64)
		__builtin_prefetch(p + off, 1, 3);
}

/*
 * Read-only usage at now: requests counted in each window and ms until that
 * window is empty again (0 when empty or not enforced).  A NULL st is a
 * state with every window empty.
 */
void	 ratelimit_usage(const struct rl_state *, const struct rl_limits *,
	    int64_t, uint32_t[RL_WINDOWS], int64_t[RL_WINDOWS]);

/*
 * RateLimit-Policy value, e.g. "20;w=1, 200;w=10, 1000;w=60" (window in
 * seconds, rounded up).  Returns the length it needs, like snprintf.
 */
int	 ratelimit_policy(char *, size_t, const struct rl_limits *);

/*
 * IP table in a caller-provided region (e.g. in the shared segment):
 * _size gives the bytes needed for n entries (rounded up to whole sets of
 * RL_WAYS), _init formats a zeroed region (seed keys the hash), _admit is
 * ratelimit_admit for the client address ip (4 or 16 bytes).  Never
 * allocates, never blocks, never grows: a new address takes an empty entry
 * or evicts the least recently used one of its set.
 */
size_t	 ratelimit_iptable_size(uint32_t);
struct rl_iptable *ratelimit_iptable_init(void *, uint32_t, uint64_t);
int	 ratelimit_iptable_admit(struct rl_iptable *, const void *, size_t,
	    const struct rl_limits *, int64_t, struct rl_result *);
/* Entries in use now (for tests and /metrics). */
uint32_t ratelimit_iptable_count(const struct rl_iptable *);

/*
 * Failed-authentication table (the admin token): per client address, the
 * streak of failed attempts and the back-off it earned.  The first
 * RL_FAIL_FREE failures of a streak cost nothing; failure n > RL_FAIL_FREE
 * makes the address wait RL_FAIL_BASE_MS << (n - RL_FAIL_FREE - 1) ms,
 * at most RL_FAIL_MAX_MS, before its next attempt is even looked at.  A
 * success ends the streak; so does RL_FAIL_FORGET_MS without a failure
 * after the wait.  Bounded, set-associative, in a caller-provided region
 * (the shared segment), updated with compare-and-swap only: never
 * allocates, never blocks, never grows.  Times are ms in [0, 2^40), e.g.
 * CLOCK_MONOTONIC.
 */
#define RL_FAIL_FREE		4	/* failures before any wait */
#define RL_FAIL_BASE_MS		1000	/* first wait, doubled each failure */
#define RL_FAIL_MAX_MS		60000	/* longest wait */
#define RL_FAIL_FORGET_MS	600000	/* quiet time that ends a streak */
#define RL_FAIL_LOG_MS		1000	/* one log line per address per this */

struct rl_failtable;

/*
 * What the table says about an address: rf_fails failures in its streak,
 * rf_wait ms until its next attempt may be checked (0: now), rf_log 1 if
 * this event is the first one for the address in RL_FAIL_LOG_MS (log it).
 */
struct rl_failinfo {
	uint32_t	 rf_fails;
	int64_t		 rf_wait;
	int		 rf_log;
};

size_t	 ratelimit_failtable_size(uint32_t);
struct rl_failtable *ratelimit_failtable_init(void *, uint32_t, uint64_t);
/* Before checking a credential: 0 go ahead, -1 wait (fi says how long). */
int	 ratelimit_fail_check(struct rl_failtable *, const void *, size_t,
	    int64_t, struct rl_failinfo *);
/* After a wrong credential: count it; fi says the wait it earned. */
void	 ratelimit_fail_record(struct rl_failtable *, const void *, size_t,
	    int64_t, struct rl_failinfo *);
/* After a right credential: end the address's streak. */
void	 ratelimit_fail_reset(struct rl_failtable *, const void *, size_t);
/* Addresses with a streak that still counts at now (tests, /metrics). */
uint32_t ratelimit_failtable_count(const struct rl_failtable *, int64_t);

#endif /* KEYGATE_RATELIMIT_H */
