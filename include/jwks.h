/*
 * JWKS distribution: the master fetches each JWT provider's key set (a
 * file, an https URL, or the jwks_uri of the issuer's OpenID discovery
 * document) in the background with libcurl's multi interface on its
 * libevent loop, keeps the last good set in state_dir
 * ("jwks-NAME.json": {"source": SOURCE, "jwks": DOCUMENT}, loaded at start
 * only for the same source), and publishes the parsed set in a slot of
 * the shared segment; workers read the slot when its generation changes.
 *
 * One slot per provider name, JWT_MAX_PROVIDERS slots in all, kept across
 * reloads: a provider that stays in the configuration keeps its slot (and
 * its keys, unless its key source changed: then they are dropped at once,
 * JWKS_NONE under a new generation); a new one takes a free slot; a
 * removed one's slot is freed once no worker of an older generation can
 * use it.  Workers find their
 * provider's slot by name (jwks_slot_find) after they start.
 *
 * Writers and readers.  Only the master writes js_name, js_set,
 * js_generation, js_updated, js_state and js_refetch_*: under the
 * seqlock js_seq (odd while it writes; workers copy and retry while it is
 * odd or changed).  Workers write only js_refetch_req (an atomic add): a
 * request for an early re-fetch after a token named an unknown kid.  The
 * master reads js_refetch_req as a number it compares with the last one it
 * saw, nothing more, so a worker cannot make it do anything but one fetch
 * per JWKS_REFETCH_MIN_MS.
 */
#ifndef KEYGATE_JWKS_H
#define KEYGATE_JWKS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "jwk.h"
#include "jwt.h"

#define JWKS_REFETCH_MIN_MS	300000	/* one early re-fetch per 5 min */
#define JWKS_HOLD_MS		2000	/* a request waits this for one */
#define JWKS_TIMEOUT_MS		10000	/* one HTTP fetch, all included */
#define JWKS_RETRY_MIN_MS	1000	/* back-off after a failed fetch, */
#define JWKS_RETRY_MAX_MS	300000	/* doubled up to this */

/* js_state */
#define JWKS_NONE	0	/* no keys (yet, or since the source changed) */
#define JWKS_OK		1	/* keys from the last fetch or the file */
#define JWKS_STALE	2	/* keys, but the last fetch failed */

struct jwks_slot {
	uint32_t	 js_seq;		/* seqlock, odd while written */
	uint32_t	 js_used;		/* assigned to js_name */
	char		 js_name[JWT_NAME_MAX + 1];
	uint32_t	 js_state;		/* JWKS_NONE, _OK, _STALE */
	uint64_t	 js_generation;		/* +1 at every new key set */
	int64_t		 js_updated;		/* unix s of the last good set */
	/*
	 * Early re-fetch: a worker adds 1 to js_refetch_req (only when
	 * js_refetch_busy is set or js_refetch_last is JWKS_REFETCH_MIN_MS
	 * old); the master answers by setting js_refetch_busy, fetching, and
	 * clearing it with js_refetch_last = when it started (monotonic ms).
	 * A worker holding a request stops waiting when the generation
	 * changes, or when busy is clear and js_refetch_last is not older
	 * than its own request.
	 */
	uint32_t	 js_refetch_req;
	uint32_t	 js_refetch_busy;
	int64_t		 js_refetch_last;	/* CLOCK_MONOTONIC ms, 0: never */
	struct jwk_set	 js_set;
} __attribute__((aligned(64)));

/*
 * A slot's figures read under its seqlock (metrics, /v1/gateway): its
 * name (namelen bytes with the NUL), state, last good set (unix s) and
 * key count; 0, or -1 if unused or never steady.
 */
static inline int
jwks_slot_peek(const struct jwks_slot *js, char *name, size_t namelen,
    uint32_t *state, int64_t *updated, uint32_t *nkeys)
{
	uint32_t	 s1, s2;
	int		 tries;

	for (tries = 0; tries < 1000; tries++) {
		s1 = __atomic_load_n(&js->js_seq, __ATOMIC_ACQUIRE);
		if (!__atomic_load_n(&js->js_used, __ATOMIC_RELAXED))
			return (-1);
		memcpy(name, js->js_name, namelen - 1);
		name[namelen - 1] = '\0';
		*state = js->js_state;
		*updated = js->js_updated;
		*nkeys = js->js_set.s_nkeys;
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		s2 = __atomic_load_n(&js->js_seq, __ATOMIC_RELAXED);
		if ((s1 & 1) == 0 && s1 == s2)
			return (0);
	}
	return (-1);
}

struct shm_header;
struct event_base;
struct config;

/* --- workers ----------------------------------------------------------- */

/* Index of the slot named name, or -1. */
int		 jwks_slot_find(const struct shm_header *, const char *);

/* The slot's generation (relaxed atomic load; 0: never had keys). */
uint64_t	 jwks_slot_generation(const struct shm_header *, int);

/*
 * Copy slot i's key set into set under its seqlock; *gen and *state get
 * the generation and state that go with it.  0, or -1 when the slot is
 * not in use or a writer kept it busy for too long (try again later).
 */
int		 jwks_slot_read(const struct shm_header *, int,
		    struct jwk_set *, uint64_t *, uint32_t *);

/*
 * Ask for an early re-fetch of slot i at now (monotonic ms): 1 if a
 * re-fetch was asked for or is under way (worth waiting for), 0 if one
 * was done less than JWKS_REFETCH_MIN_MS ago (do not wait).
 */
int		 jwks_refetch(struct shm_header *, int, int64_t);

/*
 * Is a re-fetch asked for at asked (monotonic ms) finished?  1 when the
 * slot is not busy and its last re-fetch started at or after asked.
 */
int		 jwks_refetch_done(const struct shm_header *, int, int64_t);

/* --- the master -------------------------------------------------------- */

struct jwks;

/*
 * Start fetching for conf's providers on base: assign slots, load each
 * provider's cached set from state_dir (or its file) at once, then fetch
 * in the background.  NULL with a reason in err (e.g. libcurl failed).
 */
struct jwks	*jwks_start(struct event_base *, struct shm_header *,
		    const struct config *, char *, size_t);

/*
 * A reload: providers of conf are (re)assigned slots, those whose key
 * source changed emptied and re-fetched, removed ones' slots freed.  The config must outlive the
 * next jwks_reconfigure() or jwks_free().
 */
int		 jwks_reconfigure(struct jwks *, const struct config *, char *,
		    size_t);

void		 jwks_free(struct jwks *);

/* In a forked worker: close the master's fetch sockets (no libcurl call). */
void		 jwks_child_detach(struct jwks *);

#endif /* KEYGATE_JWKS_H */
