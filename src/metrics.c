/*
 * The Prometheus text exposition (format 0.0.4) of keygate's counters; see
 * metrics.h.  Every family has its # HELP and # TYPE; histograms are made
 * cumulative here (stats.h keeps one add per observation) and end with
 * le="+Inf", whose count equals _count.  Label values are escaped (\\, \",
 * \n) though the names keygate gives are from a small alphabet.  There is
 * no per-key label anywhere: a key's numbers are in the admin API.
 */

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jwks.h"
#include "jwt.h"
#include "metrics.h"
#include "stats.h"

/* A growing text; on out of memory mb_fail is set and adds do nothing. */
struct mbuf {
	char	*mb_buf;
	size_t	 mb_len;
	size_t	 mb_cap;
	int	 mb_fail;
};

static void	 mb_printf(struct mbuf *, const char *, ...)
		    __attribute__((__format__(__printf__, 2, 3)));

static int
mb_reserve(struct mbuf *b, size_t need)
{
	char	*n;
	size_t	 cap;

	if (b->mb_fail)
		return (-1);
	if (b->mb_len + need + 1 <= b->mb_cap)
		return (0);
	cap = b->mb_cap == 0 ? 16384 : b->mb_cap;
	while (cap < b->mb_len + need + 1)
		cap *= 2;
	if ((n = realloc(b->mb_buf, cap)) == NULL) {
		b->mb_fail = 1;
		return (-1);
	}
	b->mb_buf = n;
	b->mb_cap = cap;
	return (0);
}

static void
mb_printf(struct mbuf *b, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || mb_reserve(b, (size_t)n) == -1)
		return;
	va_start(ap, fmt);
	vsnprintf(b->mb_buf + b->mb_len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->mb_len += (size_t)n;
}

/* A label value, escaped as the format asks: \\, \" and \n. */
static void
mb_label(struct mbuf *b, const char *v)
{
	for (; *v != '\0'; v++) {
		if (mb_reserve(b, 2) == -1)
			return;
		if (*v == '\\' || *v == '"') {
			b->mb_buf[b->mb_len++] = '\\';
			b->mb_buf[b->mb_len++] = *v;
		} else if (*v == '\n') {
			b->mb_buf[b->mb_len++] = '\\';
			b->mb_buf[b->mb_len++] = 'n';
		} else
			b->mb_buf[b->mb_len++] = *v;
	}
	b->mb_buf[b->mb_len] = '\0';
}

/*
 * The start of a series, name and suffix then {label="v" escaped; the
 * caller adds further labels and the closing brace.
 */
static void
mb_series(struct mbuf *b, const char *name, const char *suffix,
    const char *label, const char *v)
{
	mb_printf(b, "%s%s{%s=\"", name, suffix, label);
	mb_label(b, v);
	mb_printf(b, "\"");
}

/* mb_series() without a suffix: `mb_head(b, "x", "route", v)`. */
static void
mb_head(struct mbuf *b, const char *name, const char *label, const char *v)
{
	mb_series(b, name, "", label, v);
}

static void
mb_family(struct mbuf *b, const char *name, const char *type,
    const char *help)
{
	mb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Microseconds as seconds, exactly (no float rounding of the counter). */
static void
mb_seconds(struct mbuf *b, uint64_t us)
{
	mb_printf(b, "%" PRIu64 ".%06" PRIu64, us / 1000000, us % 1000000);
}

/* A duration bound in seconds, shortest form: 0.0005, 0.001, 2.5, 10. */
static void
mb_bound(struct mbuf *b, uint32_t us)
{
	char	 s[32];
	size_t	 n;

	snprintf(s, sizeof(s), "%u.%06u", us / 1000000, us % 1000000);
	n = strlen(s);
	while (s[n - 1] == '0')
		s[--n] = '\0';
	if (s[n - 1] == '.')
		s[--n] = '\0';
	mb_printf(b, "%s", s);
}

/*
 * The series of one histogram labelled label="value": cumulative buckets,
 * +Inf, _sum, _count.
 */
static void
mb_hist(struct mbuf *b, const char *name, const char *label,
    const char *value, const struct stats_hist *h)
{
	uint64_t	 cum = 0;
	int		 i;

	for (i = 0; i <= STATS_BUCKETS; i++) {
		cum += h->h_bucket[i];
		mb_series(b, name, "_bucket", label, value);
		mb_printf(b, ",le=\"");
		if (i < STATS_BUCKETS)
			mb_bound(b, stats_bucket_us[i]);
		else
			mb_printf(b, "+Inf");
		mb_printf(b, "\"} %" PRIu64 "\n", cum);
	}
	mb_series(b, name, "_sum", label, value);
	mb_printf(b, "} ");
	mb_seconds(b, h->h_sum_us);
	mb_printf(b, "\n");
	mb_series(b, name, "_count", label, value);
	mb_printf(b, "} %" PRIu64 "\n", cum);
}

static void
metrics_requests(struct mbuf *b, const struct stats_region *r,
    const struct stats_total *t)
{
	const struct stats_route_total	*rt;
	uint32_t			 i, k;

	mb_family(b, "keygate_requests_total", "counter",
	    "Requests answered, by route name and status code.");
	for (i = 0; i < t->st_nroutes; i++) {
		rt = &t->st_routes[i];
		for (k = 0; k < rt->rt_ncodes; k++) {
			mb_head(b, "keygate_requests_total", "route",
			    stats_route_name(r, i));
			mb_printf(b, ",code=\"%u\"} %" PRIu64 "\n",
			    rt->rt_code[k], rt->rt_count[k]);
		}
		if (rt->rt_other > 0) {
			mb_head(b, "keygate_requests_total", "route",
			    stats_route_name(r, i));
			mb_printf(b, ",code=\"other\"} %" PRIu64 "\n",
			    rt->rt_other);
		}
	}
	mb_family(b, "keygate_request_duration_seconds", "histogram",
	    "Time from the request's first byte to its response queued, "
	    "refusals included, by route.");
	for (i = 0; i < t->st_nroutes; i++) {
		rt = &t->st_routes[i];
		/* Routes never used: no series, as no code was seen. */
		if (rt->rt_ncodes == 0 && rt->rt_other == 0)
			continue;
		mb_hist(b, "keygate_request_duration_seconds", "route",
		    stats_route_name(r, i), &rt->rt_duration);
	}
}

static void
metrics_upstreams(struct mbuf *b, const struct stats_region *r,
    const struct stats_total *t)
{
	const struct stats_upstream	*u;
	struct stats_hist		 h;
	uint32_t			 i, j;
	int				 k, used;

	mb_family(b, "keygate_upstream_requests_total", "counter",
	    "Attempts to reach an upstream server, by result.");
	for (i = 0; i < t->st_nupstreams; i++) {
		u = &t->st_upstreams[i];
		for (used = 0, k = 0; k < STATS_NUPRESULTS; k++)
			used |= u->su_result[k] != 0;
		if (i == STATS_UPSTREAM_OTHER && !used)
			continue;
		for (k = 0; k < STATS_NUPRESULTS; k++) {
			mb_head(b, "keygate_upstream_requests_total",
			    "upstream", stats_upstream_name(r, i));
			mb_printf(b, ",server=\"");
			mb_label(b, stats_server_name(r, i));
			mb_printf(b, "\",result=\"%s\"} %" PRIu64 "\n",
			    stats_upresult_name[k], u->su_result[k]);
		}
	}
	/* By upstream: the servers of one name summed. */
	mb_family(b, "keygate_upstream_duration_seconds", "histogram",
	    "Time from sending a request upstream to its response head.");
	for (i = 0; i < t->st_nupstreams; i++) {
		for (j = 0; j < i; j++)
			if (strcmp(stats_upstream_name(r, j),
			    stats_upstream_name(r, i)) == 0)
				break;
		if (j < i)
			continue;	/* summed with the first of its name */
		memset(&h, 0, sizeof(h));
		for (j = i, used = 0; j < t->st_nupstreams; j++) {
			if (strcmp(stats_upstream_name(r, j),
			    stats_upstream_name(r, i)) != 0)
				continue;
			for (k = 0; k <= STATS_BUCKETS; k++)
				h.h_bucket[k] +=
				    t->st_upstreams[j].su_duration.h_bucket[k];
			h.h_sum_us += t->st_upstreams[j].su_duration.h_sum_us;
			for (k = 0; k < STATS_NUPRESULTS; k++)
				used |= t->st_upstreams[j].su_result[k] != 0;
		}
		if (i == STATS_UPSTREAM_OTHER && !used)
			continue;
		mb_hist(b, "keygate_upstream_duration_seconds", "upstream",
		    stats_upstream_name(r, i), &h);
	}
	/* The servers with health checks (health.h): the master's verdict. */
	mb_family(b, "keygate_upstream_server_healthy", "gauge",
	    "1 while the server passes its health checks, 0 while it is out.");
	for (i = 0; i < t->st_nupstreams; i++) {
		k = __atomic_load_n(&r->sr_master.sm_health[i],
		    __ATOMIC_RELAXED);
		if (i == STATS_UPSTREAM_OTHER || k == STATS_HEALTH_NONE)
			continue;
		mb_head(b, "keygate_upstream_server_healthy", "upstream",
		    stats_upstream_name(r, i));
		mb_printf(b, ",server=\"");
		mb_label(b, stats_server_name(r, i));
		mb_printf(b, "\"} %d\n", k == STATS_HEALTH_UP);
	}
}

/* Cluster-wide rate limits (cllimit.h). */
static void
metrics_cluster_limits(struct mbuf *b, const struct stats_master *sm,
    const struct stats_total *t)
{
	static const char *const mode[] = { "off", "lease", "local", "deny" };
	uint32_t	 m = __atomic_load_n(&sm->sm_lim_mode, __ATOMIC_RELAXED);
	int		 i;

	mb_family(b, "keygate_cluster_limit_mode", "gauge",
	    "1 for how rate limits are enforced now: leased from Redis, or "
	    "the cluster_fallback while Redis cannot be asked (local, deny).");
	for (i = 1; i < 4; i++)
		mb_printf(b, "keygate_cluster_limit_mode{mode=\"%s\"} %d\n",
		    mode[i], m == (uint32_t)i);
	mb_family(b, "keygate_cluster_limit_decisions_total", "counter",
	    "Rate-limited requests by how the cluster's limit decided them: a "
	    "unit of this node's lease, one waited for, refused as the "
	    "cluster was full, by the fallback, or refused after waiting "
	    "100 ms for a unit (timeout).");
	for (i = 0; i < STATS_NLEASE; i++)
		mb_printf(b, "keygate_cluster_limit_decisions_total{how=\"%s\"} "
		    "%" PRIu64 "\n", stats_lease_name[i], t->st_lease[i]);
	mb_family(b, "keygate_cluster_lease_calls_total", "counter",
	    "Lease calls this node's master made to Redis, by outcome.");
	mb_printf(b, "keygate_cluster_lease_calls_total{result=\"ok\"} %"
	    PRIu64 "\n", __atomic_load_n(&sm->sm_lim_calls, __ATOMIC_RELAXED) -
	    __atomic_load_n(&sm->sm_lim_failed, __ATOMIC_RELAXED));
	mb_printf(b, "keygate_cluster_lease_calls_total{result=\"failed\"} %"
	    PRIu64 "\n", __atomic_load_n(&sm->sm_lim_failed,
	    __ATOMIC_RELAXED));
	mb_family(b, "keygate_cluster_lease_units_total", "counter",
	    "Units of quota granted to this node, and handed back unused.");
	mb_printf(b, "keygate_cluster_lease_units_total{what=\"granted\"} %"
	    PRIu64 "\n", __atomic_load_n(&sm->sm_lim_granted,
	    __ATOMIC_RELAXED));
	mb_printf(b, "keygate_cluster_lease_units_total{what=\"returned\"} %"
	    PRIu64 "\n", __atomic_load_n(&sm->sm_lim_returned,
	    __ATOMIC_RELAXED));
}

/* The cluster (cluster.h), when cluster_redis is set. */
static void
metrics_cluster(struct mbuf *b, const struct stats_master *sm,
    const struct stats_total *t)
{
	if (__atomic_load_n(&sm->sm_cluster, __ATOMIC_RELAXED) == 0)
		return;
	mb_family(b, "keygate_cluster_redis_up", "gauge",
	    "1 while the master is connected to the cluster's Redis.");
	mb_printf(b, "keygate_cluster_redis_up %u\n",
	    __atomic_load_n(&sm->sm_cluster_up, __ATOMIC_RELAXED));
	mb_family(b, "keygate_cluster_lag_seconds", "gauge",
	    "How far this node's copy of the key store is behind the "
	    "cluster's change stream, in seconds of the stream's time.");
	mb_printf(b, "keygate_cluster_lag_seconds %.3f\n", (double)
	    __atomic_load_n(&sm->sm_cluster_lag_ms, __ATOMIC_RELAXED) / 1000.0);
	mb_family(b, "keygate_cluster_applied_total", "counter",
	    "Changes from the cluster's stream (or a resynchronisation) "
	    "applied to this node's key store.");
	mb_printf(b, "keygate_cluster_applied_total %" PRIu64 "\n",
	    __atomic_load_n(&sm->sm_cluster_applied, __ATOMIC_RELAXED));
	metrics_cluster_limits(b, sm, t);
}

static void
metrics_refusals(struct mbuf *b, const struct stats_total *t)
{
	int	 i, j;

	mb_family(b, "keygate_auth_refusals_total", "counter",
	    "Requests refused by authentication, by the route's scheme "
	    "(none: no credential of the route's schemes) and refusal code.");
	for (i = 0; i < STATS_NSCHEMES; i++)
		for (j = 0; j < STATS_NREASONS; j++)
			mb_printf(b, "keygate_auth_refusals_total{scheme=\"%s\","
			    "reason=\"%s\"} %" PRIu64 "\n",
			    stats_scheme_name[i], stats_reason_name[j],
			    t->st_auth[i][j]);
	mb_family(b, "keygate_ratelimit_refusals_total", "counter",
	    "Requests refused with 429, by the window that was full and "
	    "what was limited.");
	for (i = 0; i < RL_WINDOWS; i++)
		for (j = 0; j < STATS_NSUBJECTS; j++)
			mb_printf(b, "keygate_ratelimit_refusals_total{window="
			    "\"%s\",subject=\"%s\"} %" PRIu64 "\n",
			    i == 0 ? "1s" : i == 1 ? "10s" : "60s",
			    stats_subject_name[j], t->st_rate[j][i]);
}

static void
metrics_conns(struct mbuf *b, const struct stats_total *t)
{
	int	 i;

	mb_family(b, "keygate_connections", "gauge",
	    "Client connections open now, by state.");
	for (i = 0; i < STATS_NCONN; i++)
		mb_printf(b, "keygate_connections{state=\"%s\"} %" PRIu64 "\n",
		    stats_conn_name[i], t->st_conn[i]);
	mb_family(b, "keygate_connections_accepted_total", "counter",
	    "Client connections accepted.");
	mb_printf(b, "keygate_connections_accepted_total %" PRIu64 "\n",
	    t->st_accepted);
	mb_family(b, "keygate_tls_handshakes_total", "counter",
	    "TLS handshakes on the listeners, by result.");
	for (i = 0; i < STATS_NTLS; i++)
		mb_printf(b, "keygate_tls_handshakes_total{result=\"%s\"} %"
		    PRIu64 "\n", stats_tls_name[i], t->st_tls[i]);
}

static void
metrics_daemon(struct mbuf *b, const struct metrics_src *src,
    const struct stats_total *t)
{
	mb_family(b, "keygate_keys", "gauge", "API keys in the key store.");
	mb_printf(b, "keygate_keys %" PRIu64 "\n", src->ms_keys);
	mb_family(b, "keygate_keys_max", "gauge",
	    "Capacity of the key store (max_keys).");
	mb_printf(b, "keygate_keys_max %" PRIu64 "\n", src->ms_keys_max);
	mb_family(b, "keygate_rate_states", "gauge", "Entries of the active "
	    "rate table ever used (its high-water mark).");
	mb_printf(b, "keygate_rate_states %" PRIu64 "\n", src->ms_rate_used);
	mb_family(b, "keygate_rate_states_max", "gauge", "Capacity of the "
	    "active rate table (max_active_keys).");
	mb_printf(b, "keygate_rate_states_max %" PRIu64 "\n",
	    src->ms_rate_max);
	mb_family(b, "keygate_rate_table_full_total", "counter", "Requests "
	    "refused with 503 because every rate state was in use.");
	mb_printf(b, "keygate_rate_table_full_total %" PRIu64 "\n",
	    src->ms_rate_full);
	mb_family(b, "keygate_rate_states_reused_total", "counter", "Idle "
	    "rate states taken for another key.");
	mb_printf(b, "keygate_rate_states_reused_total %" PRIu64 "\n",
	    src->ms_rate_evicted);
	mb_family(b, "keygate_workers", "gauge", "Worker processes running.");
	mb_printf(b, "keygate_workers %u\n", t->st_workers);
	mb_family(b, "keygate_config_reloads_total", "counter",
	    "Configuration reloads (SIGHUP) applied or refused.");
	mb_printf(b, "keygate_config_reloads_total{result=\"success\"} %"
	    PRIu64 "\n", t->st_reloads[1]);
	mb_printf(b, "keygate_config_reloads_total{result=\"failure\"} %"
	    PRIu64 "\n", t->st_reloads[0]);
	mb_family(b, "keygate_config_last_reload_success_timestamp_seconds",
	    "gauge", "When the running configuration was loaded (start-up "
	    "or the last successful reload), Unix time.");
	mb_printf(b, "keygate_config_last_reload_success_timestamp_seconds %"
	    PRId64 "\n", t->st_reload_ok_at);
	mb_family(b, "keygate_worker_restarts_total", "counter",
	    "Workers that died on their own and were replaced.");
	mb_printf(b, "keygate_worker_restarts_total %" PRIu64 "\n",
	    t->st_restarts);
	mb_family(b, "keygate_build_info", "gauge",
	    "Always 1; the version is the label.");
	mb_printf(b, "keygate_build_info{version=\"");
	mb_label(b, src->ms_version != NULL ? src->ms_version : "");
	mb_printf(b, "\"} 1\n");
}

static void
metrics_jwks(struct mbuf *b, const struct jwks_slot *slots)
{
	static const char *const fam[3][3] = {
		{ "keygate_jwks_keys", "gauge",
		    "Keys in the provider's key set." },
		{ "keygate_jwks_up", "gauge",
		    "1 while the last fetch of the provider's keys succeeded." },
		{ "keygate_jwks_last_success_timestamp_seconds", "gauge",
		    "When the provider's key set was last fetched or read, "
		    "Unix time; 0: never." },
	};
	char		 name[JWT_NAME_MAX + 1];
	uint32_t	 state, nkeys;
	int64_t		 updated;
	int		 f, i;

	for (f = 0; f < 3; f++) {
		mb_family(b, fam[f][0], fam[f][1], fam[f][2]);
		for (i = 0; slots != NULL && i < JWT_MAX_PROVIDERS; i++) {
			if (jwks_slot_peek(&slots[i], name, sizeof(name),
			    &state, &updated, &nkeys) == -1)
				continue;
			mb_head(b, fam[f][0], "provider", name);
			if (f == 0)
				mb_printf(b, "} %u\n", nkeys);
			else if (f == 1)
				mb_printf(b, "} %d\n", state == JWKS_OK);
			else
				mb_printf(b, "} %" PRId64 "\n", updated);
		}
	}
}

static void
metrics_process(struct mbuf *b, const struct stats_total *t)
{
	static const char *const who[2] = { "master", "workers" };
	const struct stats_proc	*p;
	int			 i;

	mb_family(b, "process_cpu_seconds_total", "counter",
	    "User and system CPU time: the master, and the workers summed "
	    "(those that ended included).");
	for (i = 0; i < 2; i++) {
		mb_printf(b, "process_cpu_seconds_total{process=\"%s\"} ",
		    who[i]);
		mb_seconds(b, t->st_proc[i].pr_cpu_us);
		mb_printf(b, "\n");
	}
#define PROC_GAUGE(name, help, field)					\
	do {								\
		mb_family(b, name, "gauge", help);			\
		for (i = 0; i < 2; i++) {				\
			p = &t->st_proc[i];				\
			mb_printf(b, name "{process=\"%s\"} %" PRIu64 "\n", \
			    who[i], (uint64_t)p->field);		\
		}							\
	} while (0)
	PROC_GAUGE("process_resident_memory_bytes", "Resident memory, "
	    "bytes (workers summed; the shared segment counts in each).",
	    pr_rss);
	PROC_GAUGE("process_virtual_memory_bytes", "Virtual memory, bytes.",
	    pr_vsize);
	PROC_GAUGE("process_open_fds", "Open file descriptors.", pr_fds);
	PROC_GAUGE("process_max_fds", "Limit on open file descriptors "
	    "(per process).", pr_max_fds);
	PROC_GAUGE("process_start_time_seconds", "Start time, Unix time "
	    "(workers: the oldest running).", pr_start);
#undef PROC_GAUGE
}

char *
metrics_render(const struct metrics_src *src, size_t *len)
{
	struct stats_total	*t;
	struct mbuf		 b;

	memset(&b, 0, sizeof(b));
	if ((t = malloc(sizeof(*t))) == NULL)
		return (NULL);
	(void)stats_total(src->ms_stats, t);
	metrics_requests(&b, src->ms_stats, t);
	metrics_upstreams(&b, src->ms_stats, t);
	metrics_refusals(&b, t);
	metrics_conns(&b, t);
	metrics_daemon(&b, src, t);
	metrics_jwks(&b, src->ms_jwks);
	metrics_cluster(&b, &src->ms_stats->sr_master, t);
	metrics_process(&b, t);
	free(t);
	if (b.mb_fail || b.mb_buf == NULL) {
		free(b.mb_buf);
		return (NULL);
	}
	*len = b.mb_len;
	return (b.mb_buf);
}
