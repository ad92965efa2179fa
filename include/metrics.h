/*
 * GET /metrics: the counters of stats.h (and the key store's size, the JWT
 * providers' key sets) in the Prometheus text exposition format 0.0.4.
 * Free of libevent: the admin API, the metrics listener and the unit tests
 * all call metrics_render().
 */
#ifndef KEYGATE_METRICS_H
#define KEYGATE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define METRICS_CONTENT_TYPE	"text/plain; version=0.0.4; charset=utf-8"

struct stats_region;
struct jwks_slot;

struct metrics_src {
	const struct stats_region *ms_stats;
	const struct jwks_slot	*ms_jwks;	/* JWT_MAX_PROVIDERS, or NULL */
	uint64_t		 ms_keys;	/* keys in the store */
	uint64_t		 ms_keys_max;	/* max_keys */
	uint64_t		 ms_rate_used;	/* rate table entries ever used */
	uint64_t		 ms_rate_max;	/* max_active_keys */
	uint64_t		 ms_rate_full;	/* refused: no rate entry free */
	uint64_t		 ms_rate_evicted;	/* idle entries taken */
	const char		*ms_version;	/* PACKAGE_VERSION */
};

/*
 * The whole exposition, NUL-terminated, malloc'ed (*len bytes without the
 * NUL); NULL when out of memory.  Takes one consistent sum (stats_total()).
 */
char	*metrics_render(const struct metrics_src *, size_t *);

#endif /* KEYGATE_METRICS_H */
