/*
 * Per-key usage history (GET /v1/keys/{id}/usage?history=): per-minute
 * points for the last 24 hours and per-hour points for the last 30 days
 * of the admitted, rate-limited (429) and refused-after-identification
 * requests of each key, kept only for keys with traffic.  The master folds
 * the key store's counters into it once a minute and keeps it in
 * state_dir; the workers read it to answer the admin API.
 *
 * (Interface sketch: the usage helper owns this file and may change it.)
 */
#ifndef KEYGATE_USAGE_H
#define KEYGATE_USAGE_H

#include <stddef.h>
#include <stdint.h>

struct keystore;

enum usage_span {
	USAGE_1H,	/* 60 points of a minute, the last one current */
	USAGE_24H,	/* 1440 points of a minute */
	USAGE_30D	/* 720 points of an hour, the last one current */
};

struct usage_point {
	int64_t		 up_t;		/* unix s: start of the minute/hour */
	uint64_t	 up_admitted;
	uint64_t	 up_limited;
	uint64_t	 up_refused;
};

#define USAGE_MAX_POINTS	1440

/* "1h", "24h", "30d" (len bytes): 0, or -1. */
int	 usage_span_parse(const char *, size_t, enum usage_span *);

#endif /* KEYGATE_USAGE_H */
