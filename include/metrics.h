/*
 * Prometheus text exposition (format 0.0.4) of the counters in stats.h,
 * the key store and the JWKS slots, and the operator's status view
 * (GET /v1/status).  Served by the workers: GET /metrics on the admin
 * listener (with the admin token) and on metrics_listen (without).
 */
#ifndef KEYGATE_METRICS_H
#define KEYGATE_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct shm_header;
struct keystore;

#define METRICS_CONTENT_TYPE	"text/plain; version=0.0.4; charset=utf-8"

/* What a scrape reads; all of it from the shared segment. */
struct metrics_env {
	const struct shm_header	*me_shm;	/* stats, JWKS slots, workers */
	const struct keystore	*me_ks;		/* keygate_keys; may be NULL */
	uint32_t		 me_max_keys;	/* keygate_keys_max */
	const char		*me_version;	/* PACKAGE_VERSION */
};

/*
 * The whole exposition as a malloc'ed, NUL-terminated buffer of *lenp
 * bytes (the caller frees it), or NULL when out of memory.  now: unix s.
 */
char	*metrics_render(const struct metrics_env *, int64_t, size_t *);

#endif /* KEYGATE_METRICS_H */
