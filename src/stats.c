/*
 * The metrics counters in the shared segment (see stats.h): names, the
 * hand-over of an ended worker's counts, and consistent sums.
 */

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "stats.h"

const char *const stats_conn_name[STATS_NCONN] = {
	"reading", "writing", "idle"
};

const char *const stats_upresult_name[STATS_NUPRESULTS] = {
	"ok", "connect_error", "timeout", "error", "tls_error"
};

const char *const stats_reason_name[STATS_NREASONS] = {
	"missing_credentials", "malformed_credentials", "invalid_credentials",
	"expired_credentials", "disabled_key", "insufficient_scope",
	"forbidden", "auth_unavailable"
};

/* Indexed by enum route_auth (route.h); 0 is "none". */
const char *const stats_scheme_name[STATS_NSCHEMES] = {
	"none", "anonymous", "deny", "api-key", "app-key", "jwt"
};

const char *const stats_tls_name[STATS_NTLS] = {
	"full", "resumed", "failed"
};

const char *const stats_subject_name[STATS_NSUBJECTS] = {
	"key", "address", "jwt"
};

const char *const stats_lease_name[STATS_NLEASE] = {
	"lease", "waited", "full", "fallback_local", "fallback_deny",
	"timeout", "standing"
};

/* 0.0005 s to 10 s, the usual 1-2.5-5 steps. */
const uint32_t stats_bucket_us[STATS_BUCKETS] = {
	500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000
};

#define STATS_SETTLE_TRIES	1000	/* seqlock retries before giving up */

/* The reason index of a refusal code, or -1. */
int
stats_reason(const char *code)
{
	int	 i;

	if (code == NULL)
		return (-1);
	for (i = 0; i < STATS_NREASONS; i++)
		if (strcmp(code, stats_reason_name[i]) == 0)
			return (i);
	return (-1);
}

/* Copy name into a name cell, cut to STATS_NAME_MAX - 1 bytes. */
static void
stats_setname(char *cell, const char *name)
{
	size_t	 n = strnlen(name, STATS_NAME_MAX - 1);

	memcpy(cell, name, n);
	cell[n] = '\0';
}

/* Format a zeroed region. */
void
stats_init(struct stats_region *r, int64_t now)
{
	struct stats_master	*m = &r->sr_master;

	stats_setname(m->sm_route[STATS_ROUTE_NONE], "none");
	stats_setname(m->sm_route[STATS_ROUTE_OTHER], "other");
	stats_setname(m->sm_upstream[STATS_UPSTREAM_OTHER], "other");
	stats_setname(m->sm_server[STATS_UPSTREAM_OTHER], "other");
	m->sm_started = now;
	m->sm_reload_ok_at = now;	/* the start-up configuration */
	r->sr_slots[STATS_RETIRED].ss_used = 1;
	__atomic_store_n(&m->sm_nroutes, 2, __ATOMIC_RELEASE);
	__atomic_store_n(&m->sm_nupstreams, 1, __ATOMIC_RELEASE);
}

/*
 * A count of names published in *np, clamped: any worker can write the
 * segment, so the master (and readers) never index past the table.
 */
static uint32_t
stats_count(const uint32_t *np, uint32_t max)
{
	uint32_t	 n = __atomic_load_n(np, __ATOMIC_ACQUIRE);

	return (n > max ? max : n);
}

/* A name cell as a string; a cell without its NUL reads as "". */
static const char *
stats_cell(const char *cell)
{
	return (memchr(cell, '\0', STATS_NAME_MAX) != NULL ? cell : "");
}

const char *
stats_route_name(const struct stats_region *r, uint32_t id)
{
	if (id >= stats_count(&r->sr_master.sm_nroutes, STATS_ROUTES))
		return ("");
	return (stats_cell(r->sr_master.sm_route[id]));
}

const char *
stats_upstream_name(const struct stats_region *r, uint32_t id)
{
	if (id >= stats_count(&r->sr_master.sm_nupstreams, STATS_UPSTREAMS))
		return ("");
	return (stats_cell(r->sr_master.sm_upstream[id]));
}

const char *
stats_server_name(const struct stats_region *r, uint32_t id)
{
	if (id >= stats_count(&r->sr_master.sm_nupstreams, STATS_UPSTREAMS))
		return ("");
	return (stats_cell(r->sr_master.sm_server[id]));
}

/* Master: the id of route name, new if needed. */
uint32_t
stats_route_id(struct stats_region *r, const char *name)
{
	struct stats_master	*m = &r->sr_master;
	char			 cut[STATS_NAME_MAX];
	uint32_t		 i, n = stats_count(&m->sm_nroutes, STATS_ROUTES);

	stats_setname(cut, name);
	for (i = 0; i < n; i++)
		if (strncmp(m->sm_route[i], cut, STATS_NAME_MAX) == 0)
			return (i);
	if (n < 2 || n >= STATS_ROUTES)
		return (STATS_ROUTE_OTHER);
	stats_setname(m->sm_route[n], cut);
	__atomic_store_n(&m->sm_nroutes, n + 1, __ATOMIC_RELEASE);
	return (n);
}

/* Master: the id of (upstream, server), new if needed. */
uint32_t
stats_upstream_id(struct stats_region *r, const char *upstream,
    const char *server)
{
	struct stats_master	*m = &r->sr_master;
	char			 cu[STATS_NAME_MAX], cs[STATS_NAME_MAX];
	uint32_t		 i, n;

	n = stats_count(&m->sm_nupstreams, STATS_UPSTREAMS);
	stats_setname(cu, upstream);
	stats_setname(cs, server);
	for (i = 1; i < n; i++)
		if (strncmp(m->sm_upstream[i], cu, STATS_NAME_MAX) == 0 &&
		    strncmp(m->sm_server[i], cs, STATS_NAME_MAX) == 0)
			return (i);
	if (n < 1 || n >= STATS_UPSTREAMS)
		return (STATS_UPSTREAM_OTHER);
	stats_setname(m->sm_upstream[n], cu);
	stats_setname(m->sm_server[n], cs);
	__atomic_store_n(&m->sm_nupstreams, n + 1, __ATOMIC_RELEASE);
	return (n);
}

/* Master, before fork(): a clean slot for a new worker. */
void
stats_attach(struct stats_region *r, int slot)
{
	struct stats_slot	*s;

	if (slot < 0 || slot >= STATS_WORKERS)
		return;
	s = &r->sr_slots[slot];
	memset(s, 0, sizeof(*s));
	__atomic_store_n(&s->ss_used, 1, __ATOMIC_RELEASE);
}

/*
 * Start and end a write inside the seqlock.  The master is the only
 * writer and is single-threaded; the fences order the odd store before the
 * data and the data before the even store, for readers in other processes.
 */
static void
stats_write_begin(struct stats_master *m)
{
	__atomic_store_n(&m->sm_seq, m->sm_seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static void
stats_write_end(struct stats_master *m)
{
	__atomic_store_n(&m->sm_seq, m->sm_seq + 1, __ATOMIC_RELEASE);
}

/* Add the counters of histogram from to histogram to. */
static void
stats_hist_add(struct stats_hist *to, const struct stats_hist *from)
{
	int	 i;

	for (i = 0; i <= STATS_BUCKETS; i++)
		to->h_bucket[i] += __atomic_load_n(&from->h_bucket[i],
		    __ATOMIC_RELAXED);
	to->h_sum_us += __atomic_load_n(&from->h_sum_us, __ATOMIC_RELAXED);
}

/* Add the counters (not the gauges) of slot from to slot to. */
static void
stats_slot_add(struct stats_slot *to, const struct stats_slot *from)
{
	const struct stats_route	*fr;
	struct stats_route		*tr;
	uint32_t			 code;
	int				 i, j, k;

	to->ss_accepted += from->ss_accepted;
	for (i = 0; i < STATS_NTLS; i++)
		to->ss_tls[i] += from->ss_tls[i];
	for (i = 0; i < STATS_NSCHEMES; i++)
		for (j = 0; j < STATS_NREASONS; j++)
			to->ss_auth[i][j] += from->ss_auth[i][j];
	for (i = 0; i < STATS_NSUBJECTS; i++)
		for (j = 0; j < RL_WINDOWS; j++)
			to->ss_rate[i][j] += from->ss_rate[i][j];
	for (i = 0; i < STATS_NLEASE; i++)
		to->ss_lease[i] += from->ss_lease[i];
	for (i = 0; i < STATS_ROUTES; i++) {
		fr = &from->ss_routes[i];
		tr = &to->ss_routes[i];
		for (j = 0; j < STATS_CODES && (code = fr->sr_code[j]) != 0;
		    j++) {
			for (k = 0; k < STATS_CODES; k++)
				if (tr->sr_code[k] == code ||
				    tr->sr_code[k] == 0)
					break;
			if (k == STATS_CODES) {
				tr->sr_other += fr->sr_count[j];
				continue;
			}
			tr->sr_code[k] = code;
			tr->sr_count[k] += fr->sr_count[j];
		}
		tr->sr_other += fr->sr_other;
		stats_hist_add(&tr->sr_duration, &fr->sr_duration);
	}
	for (i = 0; i < STATS_UPSTREAMS; i++) {
		for (j = 0; j < STATS_NUPRESULTS; j++)
			to->ss_upstreams[i].su_result[j] +=
			    from->ss_upstreams[i].su_result[j];
		stats_hist_add(&to->ss_upstreams[i].su_duration,
		    &from->ss_upstreams[i].su_duration);
	}
}

/*
 * Master, after reaping the worker of slot (it can no longer write it).
 * Routes beyond the retired slot's STATS_CODES distinct statuses go to its
 * sr_other: a total shows them as code="other".
 */
void
stats_fold(struct stats_region *r, int slot, uint64_t cpu_us)
{
	struct stats_master	*m = &r->sr_master;
	struct stats_slot	*s;

	if (slot < 0 || slot >= STATS_WORKERS)
		return;
	s = &r->sr_slots[slot];
	stats_write_begin(m);
	if (s->ss_used)
		stats_slot_add(&r->sr_slots[STATS_RETIRED], s);
	m->sm_retired_cpu_us += cpu_us;
	memset(s, 0, sizeof(*s));
	stats_write_end(m);
}

/* Add a route's counters to a total, merging the statuses (ascending). */
static void
stats_route_sum(struct stats_route_total *t, const struct stats_route *r)
{
	uint32_t	 code;
	uint64_t	 n;
	int		 i, k;

	for (i = 0; i < STATS_CODES; i++) {
		code = __atomic_load_n(&r->sr_code[i], __ATOMIC_ACQUIRE);
		if (code == 0)
			break;
		n = __atomic_load_n(&r->sr_count[i], __ATOMIC_RELAXED);
		for (k = 0; k < (int)t->rt_ncodes && t->rt_code[k] < code; k++)
			;
		if (k < (int)t->rt_ncodes && t->rt_code[k] == code) {
			t->rt_count[k] += n;
			continue;
		}
		if (t->rt_ncodes == STATS_SUM_CODES) {
			t->rt_other += n;
			continue;
		}
		memmove(&t->rt_code[k + 1], &t->rt_code[k],
		    (t->rt_ncodes - (uint32_t)k) * sizeof(t->rt_code[0]));
		memmove(&t->rt_count[k + 1], &t->rt_count[k],
		    (t->rt_ncodes - (uint32_t)k) * sizeof(t->rt_count[0]));
		t->rt_code[k] = code;
		t->rt_count[k] = n;
		t->rt_ncodes++;
	}
	t->rt_other += __atomic_load_n(&r->sr_other, __ATOMIC_RELAXED);
	stats_hist_add(&t->rt_duration, &r->sr_duration);
}

/* Add slot s to total t (names below t's counts only). */
static void
stats_slot_sum(struct stats_total *t, const struct stats_slot *s, int gauges)
{
	uint32_t	 i;
	int		 j, k;

	t->st_accepted += __atomic_load_n(&s->ss_accepted, __ATOMIC_RELAXED);
	if (gauges)
		for (j = 0; j < STATS_NCONN; j++)
			t->st_conn[j] += __atomic_load_n(&s->ss_conn[j],
			    __ATOMIC_RELAXED);
	for (j = 0; j < STATS_NTLS; j++)
		t->st_tls[j] += __atomic_load_n(&s->ss_tls[j],
		    __ATOMIC_RELAXED);
	for (j = 0; j < STATS_NSCHEMES; j++)
		for (k = 0; k < STATS_NREASONS; k++)
			t->st_auth[j][k] += __atomic_load_n(&s->ss_auth[j][k],
			    __ATOMIC_RELAXED);
	for (j = 0; j < STATS_NSUBJECTS; j++)
		for (k = 0; k < RL_WINDOWS; k++)
			t->st_rate[j][k] += __atomic_load_n(&s->ss_rate[j][k],
			    __ATOMIC_RELAXED);
	for (j = 0; j < STATS_NLEASE; j++)
		t->st_lease[j] += __atomic_load_n(&s->ss_lease[j],
		    __ATOMIC_RELAXED);
	for (i = 0; i < t->st_nroutes; i++)
		stats_route_sum(&t->st_routes[i], &s->ss_routes[i]);
	for (i = 0; i < t->st_nupstreams; i++) {
		for (k = 0; k < STATS_NUPRESULTS; k++)
			t->st_upstreams[i].su_result[k] += __atomic_load_n(
			    &s->ss_upstreams[i].su_result[k], __ATOMIC_RELAXED);
		stats_hist_add(&t->st_upstreams[i].su_duration,
		    &s->ss_upstreams[i].su_duration);
	}
}

/*
 * The last minute from the ring: newest minus the oldest sample at most
 * 60 s older.  The ring is the master's, read inside the same seqlock.
 */
static void
stats_minute(const struct stats_master *m, struct stats_total *t)
{
	const struct stats_sample	*new, *old = NULL, *sa;
	uint32_t			 pos = m->sm_nsample % STATS_SAMPLES;
	int				 i;

	new = &m->sm_samples[(pos + STATS_SAMPLES - 1) % STATS_SAMPLES];
	if (new->sa_time == 0)
		return;
	for (i = 0; i < STATS_SAMPLES; i++) {
		sa = &m->sm_samples[(pos + (uint32_t)i) % STATS_SAMPLES];
		if (sa->sa_time != 0 && sa->sa_time < new->sa_time &&
		    new->sa_time - sa->sa_time <= 60) {
			old = sa;
			break;
		}
	}
	if (old == NULL)
		return;
	t->st_minute_s = new->sa_time - old->sa_time;
	t->st_minute.sa_time = new->sa_time;
#define STATS_DIFF(f)	(new->f >= old->f ? new->f - old->f : 0)
	t->st_minute.sa_requests = STATS_DIFF(sa_requests);
	t->st_minute.sa_refused = STATS_DIFF(sa_refused);
	t->st_minute.sa_limited = STATS_DIFF(sa_limited);
	t->st_minute.sa_errors = STATS_DIFF(sa_errors);
	for (i = 0; i < STATS_UPSTREAMS; i++) {
		t->st_minute.sa_up_ok[i] = STATS_DIFF(sa_up_ok[i]);
		t->st_minute.sa_up_fail[i] = STATS_DIFF(sa_up_fail[i]);
	}
#undef STATS_DIFF
}

/*
 * The last hour from the minutes' ring: newest minus the oldest sample at
 * most 3600 s older.
 */
static void
stats_hour(const struct stats_master *m, struct stats_total *t)
{
	const struct stats_hour_sample	*new, *old = NULL, *sh;
	uint32_t			 pos = m->sm_nhour % STATS_HOUR_SAMPLES;
	int				 i;

	new = &m->sm_hour[(pos + STATS_HOUR_SAMPLES - 1) % STATS_HOUR_SAMPLES];
	if (new->sh_time == 0)
		return;
	for (i = 0; i < STATS_HOUR_SAMPLES; i++) {
		sh = &m->sm_hour[(pos + (uint32_t)i) % STATS_HOUR_SAMPLES];
		if (sh->sh_time != 0 && sh->sh_time < new->sh_time &&
		    new->sh_time - sh->sh_time <= 3600) {
			old = sh;
			break;
		}
	}
	if (old == NULL)
		return;
	t->st_hour_s = new->sh_time - old->sh_time;
	t->st_hour.sh_time = new->sh_time;
	for (i = 0; i < STATS_NREASONS; i++)
		t->st_hour.sh_refused[i] = new->sh_refused[i] >=
		    old->sh_refused[i] ? new->sh_refused[i] -
		    old->sh_refused[i] : 0;
	t->st_hour.sh_limited = new->sh_limited >= old->sh_limited ?
	    new->sh_limited - old->sh_limited : 0;
}

/* One attempt at a sum; the master's fields copied as they are. */
static void
stats_sum_once(const struct stats_region *r, struct stats_total *t)
{
	const struct stats_master	*m = &r->sr_master;
	int				 i;

	memset(t, 0, sizeof(*t));
	t->st_nroutes = stats_count(&m->sm_nroutes, STATS_ROUTES);
	t->st_nupstreams = stats_count(&m->sm_nupstreams, STATS_UPSTREAMS);
	for (i = 0; i < STATS_WORKERS; i++) {
		if (!__atomic_load_n(&r->sr_slots[i].ss_used,
		    __ATOMIC_ACQUIRE))
			continue;
		t->st_workers++;
		stats_slot_sum(t, &r->sr_slots[i], 1);
	}
	stats_slot_sum(t, &r->sr_slots[STATS_RETIRED], 0);
	t->st_started = m->sm_started;
	t->st_retired_cpu_us = m->sm_retired_cpu_us;
	memcpy(t->st_reloads, m->sm_reloads, sizeof(t->st_reloads));
	t->st_reload_ok_at = m->sm_reload_ok_at;
	t->st_restarts = m->sm_restarts;
	t->st_workers_conf = m->sm_workers_conf;
	memcpy(t->st_proc, m->sm_proc, sizeof(t->st_proc));
	stats_minute(m, t);
	stats_hour(m, t);
}

/*
 * A sum that no fold overlapped: read sm_seq (acquire), sum, fence, read
 * it again; retry while it was odd or changed.  A fold takes microseconds,
 * so a retry is rare; after STATS_SETTLE_TRIES the last sum is kept.
 */
int
stats_total(const struct stats_region *r, struct stats_total *t)
{
	uint32_t	 s1, s2;
	int		 tries;

	for (tries = 0; tries < STATS_SETTLE_TRIES; tries++) {
		s1 = __atomic_load_n(&r->sr_master.sm_seq, __ATOMIC_ACQUIRE);
		stats_sum_once(r, t);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		s2 = __atomic_load_n(&r->sr_master.sm_seq, __ATOMIC_RELAXED);
		if ((s1 & 1) == 0 && s1 == s2)
			return (0);
	}
	return (-1);
}

/* Master: a reload applied (ok) or refused. */
void
stats_reloaded(struct stats_region *r, int ok, int64_t now)
{
	struct stats_master	*m = &r->sr_master;

	stats_write_begin(m);
	m->sm_reloads[ok ? 1 : 0]++;
	if (ok)
		m->sm_reload_ok_at = now;
	stats_write_end(m);
}

/* Master: a worker died and is being replaced. */
void
stats_restarted(struct stats_region *r)
{
	struct stats_master	*m = &r->sr_master;

	stats_write_begin(m);
	m->sm_restarts++;
	stats_write_end(m);
}

/* Master: the configured number of workers. */
void
stats_workers(struct stats_region *r, uint32_t n)
{
	struct stats_master	*m = &r->sr_master;

	stats_write_begin(m);
	m->sm_workers_conf = n;
	stats_write_end(m);
}

/* Master: the process figures of which. */
void
stats_proc_set(struct stats_region *r, int which, const struct stats_proc *p)
{
	struct stats_master	*m = &r->sr_master;

	if (which != STATS_PROC_MASTER && which != STATS_PROC_WORKERS)
		return;
	stats_write_begin(m);
	m->sm_proc[which] = *p;
	stats_write_end(m);
}

/*
 * Inside stats_sample()'s write: the minute's sample of t at now, if the
 * minute changed since the last one (the first one at once).
 */
static void
stats_hour_sample(struct stats_master *m, const struct stats_total *t,
    int64_t now)
{
	struct stats_hour_sample	*sh, *last;
	uint32_t			 pos = m->sm_nhour % STATS_HOUR_SAMPLES;
	int				 j, k;

	last = &m->sm_hour[(pos + STATS_HOUR_SAMPLES - 1) %
	    STATS_HOUR_SAMPLES];
	if (last->sh_time != 0 && last->sh_time / 60 == now / 60)
		return;
	sh = &m->sm_hour[pos];
	memset(sh, 0, sizeof(*sh));
	sh->sh_time = now;
	for (j = 0; j < STATS_NSCHEMES; j++)
		for (k = 0; k < STATS_NREASONS; k++)
			sh->sh_refused[k] += t->st_auth[j][k];
	for (j = 0; j < STATS_NSUBJECTS; j++)
		for (k = 0; k < RL_WINDOWS; k++)
			sh->sh_limited += t->st_rate[j][k];
	m->sm_nhour = (pos + 1) % STATS_HOUR_SAMPLES;
}

/*
 * Master, once a second: the totals behind the last minute.  A second
 * sample in the same second replaces the first.
 */
void
stats_sample(struct stats_region *r, struct stats_total *t, int64_t now)
{
	struct stats_master	*m = &r->sr_master;
	struct stats_sample	*sa;
	uint32_t		 pos, i, k;
	int			 j;

	stats_total(r, t);
	pos = m->sm_nsample % STATS_SAMPLES;
	sa = &m->sm_samples[(pos + STATS_SAMPLES - 1) % STATS_SAMPLES];
	if (sa->sa_time != now)
		sa = &m->sm_samples[pos];
	stats_write_begin(m);
	memset(sa, 0, sizeof(*sa));
	sa->sa_time = now;
	for (i = 0; i < t->st_nroutes; i++) {
		const struct stats_route_total *rt = &t->st_routes[i];

		for (k = 0; k < rt->rt_ncodes; k++) {
			sa->sa_requests += rt->rt_count[k];
			if (rt->rt_code[k] >= 500)
				sa->sa_errors += rt->rt_count[k];
		}
		sa->sa_requests += rt->rt_other;
	}
	for (j = 0; j < STATS_NSCHEMES; j++)
		for (k = 0; k < STATS_NREASONS; k++)
			sa->sa_refused += t->st_auth[j][k];
	for (j = 0; j < STATS_NSUBJECTS; j++)
		for (k = 0; k < RL_WINDOWS; k++)
			sa->sa_limited += t->st_rate[j][k];
	for (i = 0; i < t->st_nupstreams; i++) {
		const struct stats_upstream *u = &t->st_upstreams[i];

		sa->sa_up_ok[i] = u->su_result[STATS_UP_OK];
		for (j = STATS_UP_OK + 1; j < STATS_NUPRESULTS; j++)
			sa->sa_up_fail[i] += u->su_result[j];
	}
	if (sa == &m->sm_samples[pos])
		m->sm_nsample = (pos + 1) % STATS_SAMPLES;
	stats_hour_sample(m, t, now);
	stats_write_end(m);
}
