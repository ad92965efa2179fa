/*
 * JWKS distribution: the workers' lock-free readers of the shared slots,
 * and the master's background fetching (libcurl's multi interface on the
 * master's libevent loop), cache files and slot publishing.  See jwks.h.
 *
 * The cache file state_dir/jwks-NAME.json is one JSON object of exactly
 * two members: {"source": SOURCE, "jwks": DOCUMENT}, SOURCE as made by
 * source_of() (JWKS_SOURCE_MAX), DOCUMENT the JWKS as fetched.  It is
 * loaded at start only when SOURCE is the provider's current source; a
 * file of another source, or a bare JWKS, is ignored and replaced by the
 * next good fetch.  Keys belong to their source: a reload that changes a
 * provider's source drops them at once (prov_keep, prov_drop).
 */

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <jansson.h>

#include "config.h"
#include "journal.h"
#include "jwks.h"
#include "log.h"
#include "shm.h"
#include "util.h"

#define JWKS_READ_TRIES		100	/* seqlock copies before giving up */
#define JWKS_CONNECT_MS		5000
#define JWKS_MAX_REDIRS		3L
#define JWKS_URL_MAX		2048
#define JWKS_TICK_MS		50	/* looks at js_refetch_req */
/*
 * A removed provider's slot stays published (and unusable by any other
 * name) for the old workers' shutdown_timeout plus this: the 10 s a
 * reload waits for its workers, the 2 s before SIGKILL, and a margin.
 */
#define JWKS_RETIRE_SLACK_MS	15000
#define JWKS_ERRLEN		256
/*
 * A provider's key source as one string (source_of): the jwks= URL or
 * path, or "discovery:" and the discovery URL, then "\nca=" and the ca=
 * path if any.  No configuration value holds a newline (the file is read
 * line by line), so two different sources never make the same string.
 */
#define JWKS_SOURCE_MAX		(JWKS_URL_MAX + 2 * PATH_MAX + 32)
/* A cache file: the document, its source JSON-escaped, the wrapper. */
#define JWKS_CACHE_MAX		(JWK_DOC_MAX + 6 * JWKS_SOURCE_MAX + 64)

/* --- workers ----------------------------------------------------------- */

/* Slot i of the segment. */
static struct jwks_slot *
slot_at(const struct shm_header *sh, int i)
{
	return (&shm_jwks(sh)[i]);
}

/*
 * The seqlock, reader's side.  The master makes js_seq odd, writes, and
 * makes it even again with release ordering (slot_begin, slot_end).  A
 * copy taken between two acquire-ordered loads of the same even js_seq
 * saw no write: a write in progress during the copy would have made the
 * first load odd, or changed the second.  The copy is retried a bounded
 * number of times, yielding the CPU in between, so a writer that died
 * mid-write (js_seq odd forever) costs a reader a refusal, not a hang.
 */
static int
slot_copy(const struct jwks_slot *s, void *dst, const void *src, size_t len,
    uint32_t *used, uint64_t *gen, uint32_t *state)
{
	uint32_t	 s1, s2;
	int		 tries;

	for (tries = 0; tries < JWKS_READ_TRIES; tries++) {
		if (tries > 0)
			sched_yield();
		s1 = __atomic_load_n(&s->js_seq, __ATOMIC_ACQUIRE);
		if (s1 & 1)
			continue;
		*used = __atomic_load_n(&s->js_used, __ATOMIC_RELAXED);
		*gen = __atomic_load_n(&s->js_generation, __ATOMIC_RELAXED);
		*state = __atomic_load_n(&s->js_state, __ATOMIC_RELAXED);
		memcpy(dst, src, len);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		s2 = __atomic_load_n(&s->js_seq, __ATOMIC_RELAXED);
		if (s1 == s2)
			return (0);
	}
	return (-1);
}

/* Index of the slot in use named name, or -1. */
int
jwks_slot_find(const struct shm_header *sh, const char *name)
{
	const struct jwks_slot	*s;
	char			 n[JWT_NAME_MAX + 1];
	uint64_t		 gen;
	uint32_t		 used, state;
	int			 i;

	for (i = 0; i < JWT_MAX_PROVIDERS; i++) {
		s = slot_at(sh, i);
		if (slot_copy(s, n, s->js_name, sizeof(n), &used, &gen,
		    &state) == -1 || !used)
			continue;
		n[JWT_NAME_MAX] = '\0';
		if (strcmp(n, name) == 0)
			return (i);
	}
	return (-1);
}

/* The generation of slot i (relaxed: a hint to call jwks_slot_read). */
uint64_t
jwks_slot_generation(const struct shm_header *sh, int i)
{
	return (__atomic_load_n(&slot_at(sh, i)->js_generation,
	    __ATOMIC_RELAXED));
}

/* Copy slot i's set under the seqlock; 0, or -1 (unused or busy). */
int
jwks_slot_read(const struct shm_header *sh, int i, struct jwk_set *set,
    uint64_t *gen, uint32_t *state)
{
	const struct jwks_slot	*s;
	uint32_t		 used;

	if (i < 0 || i >= JWT_MAX_PROVIDERS)
		return (-1);
	s = slot_at(sh, i);
	if (slot_copy(s, set, &s->js_set, sizeof(*set), &used, gen,
	    state) == -1 || !used)
		return (-1);
	if (set->s_nkeys > JWK_MAX_KEYS)	/* never from the master */
		return (-1);
	return (0);
}

/*
 * Ask for an early re-fetch.  Under way (busy): worth waiting, nothing to
 * add.  Else a request is added only when the last re-fetch started
 * JWKS_REFETCH_MIN_MS ago or never; the master applies the same rule from
 * its own clock, so extra requests cost it nothing.
 */
int
jwks_refetch(struct shm_header *sh, int i, int64_t now)
{
	struct jwks_slot	*s = slot_at(sh, i);
	int64_t			 last;

	if (__atomic_load_n(&s->js_refetch_busy, __ATOMIC_ACQUIRE))
		return (1);
	last = __atomic_load_n(&s->js_refetch_last, __ATOMIC_ACQUIRE);
	if (last != 0 && now - last < JWKS_REFETCH_MIN_MS)
		return (0);
	SHM_ADD(&s->js_refetch_req, 1);
	return (1);
}

/*
 * Done when not busy and the last re-fetch started at or after asked.
 * The master stores busy = 1 before js_refetch_last (release), and
 * busy = 0 (release) when done; loading js_refetch_last first (acquire)
 * means a new js_refetch_last is never seen with the busy flag of before
 * that re-fetch started.
 */
int
jwks_refetch_done(const struct shm_header *sh, int i, int64_t asked)
{
	const struct jwks_slot	*s = slot_at(sh, i);
	int64_t			 last;
	uint32_t		 busy;

	last = __atomic_load_n(&s->js_refetch_last, __ATOMIC_ACQUIRE);
	busy = __atomic_load_n(&s->js_refetch_busy, __ATOMIC_ACQUIRE);
	return (!busy && last >= asked);
}

/* --- the master -------------------------------------------------------- */

enum prov_stage {
	STAGE_IDLE = 0,
	STAGE_DISCOVERY,	/* GET the discovery document */
	STAGE_JWKS		/* GET the JWKS */
};

/*
 * The master's record of slot i (j_prov[i]).  Free: p_name empty.  In use:
 * p_conf set.  Retired (its provider was removed, old workers may still
 * read it): p_conf NULL, p_retire_ms set; cleared then, or taken back by
 * a provider of the same name.  p_set, p_seq and p_generation are what the
 * master published: it never reads them back from the segment.
 */
struct jwks_prov {
	struct jwks		*p_jwks;
	int			 p_index;
	char			 p_name[JWT_NAME_MAX + 1];
	const struct jwt_provider *p_conf;
	char			 p_source[JWKS_SOURCE_MAX];	/* "": unknown */
	int64_t			 p_retire_ms;
	struct jwk_set		 p_set;
	int			 p_haskeys;
	uint32_t		 p_state;
	uint32_t		 p_seq;
	uint64_t		 p_generation;
	int			 p_saved;	/* p_set is in the cache file */
	int			 p_failing;	/* last attempt failed */
	int64_t			 p_backoff_ms;
	struct event		*p_timer;	/* next fetch, or the retirement */
	/* Early re-fetch. */
	uint32_t		 p_req_seen;
	int64_t			 p_refetch_last;
	int			 p_refetch;	/* this fetch answers one */
	/* The transfer. */
	enum prov_stage		 p_stage;
	CURL			*p_easy;
	char			 p_url[JWKS_URL_MAX];
	char			*p_jwks_uri;	/* from discovery, kept */
	char			*p_buf;
	size_t			 p_len, p_cap;
	int			 p_toobig;
	char			 p_curlerr[CURL_ERROR_SIZE];
};

struct jwks {
	struct event_base	*j_base;
	struct shm_header	*j_shm;
	const struct config	*j_conf;
	struct journal		 j_state;
	CURLM			*j_multi;	/* NULL until a provider */
	struct event		*j_curl_timer;
	struct event		*j_tick;	/* only while providers */
	struct jwk_set		 j_scratch;
	struct jwks_prov	 j_prov[JWT_MAX_PROVIDERS];
	LIST_HEAD(, jwks_sock)	 j_socks;
};

/*
 * Socket of a transfer: its event, assigned to the fd in the multi, and
 * its fd in j_socks so that a forked worker can close it (a fetch under
 * way at fork() must stay the master's alone).
 */
struct jwks_sock {
	struct event		*sk_ev;
	int			 sk_fd;
	LIST_ENTRY(jwks_sock)	 sk_entry;
};

static int	 curl_started;	/* curl_global_init() done */

static void	 prov_schedule(struct jwks_prov *, int64_t);

/* Start a write of slot i: js_seq odd (from the master's own count). */
static struct jwks_slot *
slot_begin(struct jwks_prov *p)
{
	struct jwks_slot	*s = slot_at(p->p_jwks->j_shm, p->p_index);

	p->p_seq |= 1;
	__atomic_store_n(&s->js_seq, p->p_seq, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	return (s);
}

/* End the write: every store before it happens before js_seq is even. */
static void
slot_end(struct jwks_prov *p, struct jwks_slot *s)
{
	p->p_seq++;
	__atomic_store_n(&s->js_seq, p->p_seq, __ATOMIC_RELEASE);
}

/* Write the whole slot from the master's record (set too if withset). */
static void
slot_publish(struct jwks_prov *p, int withset, int64_t updated)
{
	struct jwks_slot	*s = slot_begin(p);

	__atomic_store_n(&s->js_used, p->p_name[0] != '\0', __ATOMIC_RELAXED);
	memcpy(s->js_name, p->p_name, sizeof(s->js_name));
	__atomic_store_n(&s->js_state, p->p_state, __ATOMIC_RELAXED);
	__atomic_store_n(&s->js_generation, p->p_generation,
	    __ATOMIC_RELAXED);
	if (updated != 0)
		s->js_updated = updated;
	if (withset)
		memcpy(&s->js_set, &p->p_set, sizeof(s->js_set));
	slot_end(p, s);
}

/* The early re-fetch answered: busy cleared (release, see _done). */
static void
slot_refetch_end(struct jwks_prov *p)
{
	struct jwks_slot	*s = slot_at(p->p_jwks->j_shm, p->p_index);

	if (!p->p_refetch)
		return;
	p->p_refetch = 0;
	__atomic_store_n(&s->js_refetch_busy, 0, __ATOMIC_RELEASE);
}

/*
 * Save doc[0..len), a good JWKS of p's current source, as the cache file
 * "jwks-NAME.json": {"source": p_source, "jwks": doc}.  doc goes in as it
 * came, being one JSON value (jwk_parse_set() took all of it); jansson
 * escapes the source.  0, or -1 with a reason in err.
 */
static int
cache_save(struct jwks_prov *p, const char *doc, size_t len, char *err,
    size_t errlen)
{
	static const char	 mid[] = ",\"jwks\":", end[] = "}\n";
	json_t			*src;
	char			 name[64], *esc, *buf;
	size_t			 elen, at;
	int			 rc;

	if (p->p_source[0] == '\0') {
		snprintf(err, errlen, "its source is too long to record");
		return (-1);
	}
	if ((src = json_string(p->p_source)) == NULL) {
		snprintf(err, errlen, "its source is not UTF-8");
		return (-1);
	}
	esc = json_dumps(src, JSON_ENCODE_ANY);
	json_decref(src);
	elen = esc != NULL ? strlen(esc) : 0;
	if (esc == NULL || (buf = malloc(elen + len + 32)) == NULL) {
		free(esc);
		snprintf(err, errlen, "out of memory");
		return (-1);
	}
	at = (size_t)snprintf(buf, 32, "{\"source\":");
	memcpy(buf + at, esc, elen);
	at += elen;
	memcpy(buf + at, mid, sizeof(mid) - 1);
	at += sizeof(mid) - 1;
	memcpy(buf + at, doc, len);
	at += len;
	memcpy(buf + at, end, sizeof(end) - 1);
	at += sizeof(end) - 1;
	free(esc);
	snprintf(name, sizeof(name), "jwks-%s.json", p->p_name);
	rc = journal_file_replace(&p->p_jwks->j_state, name, buf, at, err,
	    errlen);
	free(buf);
	return (rc);
}

/*
 * A good set for p from source: published under a new generation when it
 * differs from the one published, else only the state and time renewed.
 * Saved to the cache when new (or not saved yet) and savable.
 */
static void
prov_good(struct jwks_prov *p, const struct jwk_set *set, const char *source,
    const char *doc, size_t len, int save)
{
	char		 err[JWKS_ERRLEN];
	int		 changed;

	changed = !p->p_haskeys || memcmp(&p->p_set, set, sizeof(*set)) != 0;
	if (changed) {
		memcpy(&p->p_set, set, sizeof(p->p_set));
		p->p_generation++;
		p->p_saved = 0;
		log_info("jwt_provider %s: %u keys (%u skipped) from %s",
		    p->p_name, set->s_nkeys, set->s_skipped, source);
	} else if (p->p_failing)
		log_info("jwt_provider %s: keys from %s again", p->p_name,
		    source);
	p->p_haskeys = 1;
	p->p_failing = 0;
	p->p_backoff_ms = 0;
	p->p_state = JWKS_OK;
	slot_publish(p, changed, util_now_ms() / 1000);
	if (!save || p->p_saved)
		return;
	if (cache_save(p, doc, len, err, sizeof(err)) == -1)
		log_warnx("jwt_provider %s: keys not cached: %s", p->p_name,
		    err);
	else
		p->p_saved = 1;
}

/*
 * p's key source changed (a reload): its keys are of the old source and
 * go at once.  The slot is published empty, JWKS_NONE, under a new
 * generation, so that every worker drops its keys and the tokens it
 * verified with them (503 auth_unavailable until the new source delivers).
 */
static void
prov_drop(struct jwks_prov *p)
{
	if (p->p_haskeys)
		log_info("jwt_provider %s: key source changed: previous keys "
		    "dropped", p->p_name);
	memset(&p->p_set, 0, sizeof(p->p_set));
	p->p_haskeys = 0;
	p->p_saved = 0;
	p->p_failing = 0;	/* say the new source's failure */
	p->p_backoff_ms = 0;
	p->p_state = JWKS_NONE;
	p->p_generation++;
	slot_publish(p, 1, 0);
}

/* A failed attempt: said once per change of state; old keys kept. */
static void
prov_bad(struct jwks_prov *p, const char *source, const char *why)
{
	uint32_t	 state = p->p_haskeys ? JWKS_STALE : JWKS_NONE;

	if (!p->p_failing)
		log_warnx("jwt_provider %s: no keys from %s: %s%s", p->p_name,
		    source, why, p->p_haskeys ? " (keeping the previous "
		    "keys)" : "");
	p->p_failing = 1;
	if (state != p->p_state) {
		p->p_state = state;
		slot_publish(p, 0, 0);
	}
}

/* After a fetch (good or not): the next one, the re-fetch answered. */
static void
prov_finished(struct jwks_prov *p, int ok)
{
	int64_t	 refresh = (int64_t)p->p_conf->jp_refresh * 1000, delay;

	p->p_stage = STAGE_IDLE;
	free(p->p_buf);
	p->p_buf = NULL;
	p->p_len = p->p_cap = 0;
	slot_refetch_end(p);
	if (ok)
		delay = refresh;
	else {
		p->p_backoff_ms = p->p_backoff_ms == 0 ? JWKS_RETRY_MIN_MS :
		    p->p_backoff_ms * 2;
		if (p->p_backoff_ms > JWKS_RETRY_MAX_MS)
			p->p_backoff_ms = JWKS_RETRY_MAX_MS;
		delay = p->p_backoff_ms;
	}
	if (refresh > 0 && delay > refresh)
		delay = refresh;
	prov_schedule(p, delay);
}

/* Parse doc[0..len) from source as p's JWKS and publish it; 0 or -1. */
static int
prov_parse(struct jwks_prov *p, const char *doc, size_t len,
    const char *source, int save)
{
	struct jwks	*j = p->p_jwks;
	char		 why[JWKS_ERRLEN];

	memset(&j->j_scratch, 0, sizeof(j->j_scratch));
	if (jwk_parse_set(doc, len, &j->j_scratch, why, sizeof(why)) < 1) {
		prov_bad(p, source, why);
		return (-1);
	}
	prov_good(p, &j->j_scratch, source, doc, len, save);
	return (0);
}

/*
 * All of fd (at most max bytes) into a new buffer, NUL-terminated; *len
 * its length.  NULL with a reason in why.
 */
static char *
read_doc(int fd, size_t max, size_t *len, char *why, size_t whylen)
{
	char	*buf;
	ssize_t	 n;
	size_t	 have = 0;

	if ((buf = malloc(max + 2)) == NULL) {
		snprintf(why, whylen, "out of memory");
		return (NULL);
	}
	while (have <= max) {
		n = read(fd, buf + have, max + 1 - have);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			snprintf(why, whylen, "%s", strerror(errno));
			free(buf);
			return (NULL);
		}
		if (n == 0)
			break;
		have += (size_t)n;
	}
	if (have > max) {
		snprintf(why, whylen, "larger than %zu bytes", max);
		free(buf);
		return (NULL);
	}
	buf[have] = '\0';
	*len = have;
	return (buf);
}

/* jwks=PATH: read the file now and publish it; 0 or -1. */
static int
prov_read_path(struct jwks_prov *p)
{
	const char	*path = p->p_conf->jp_jwks_path;
	struct stat	 st;
	char		 why[JWKS_ERRLEN], *doc;
	size_t		 len;
	int		 fd, rc;

	if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) == -1) {
		snprintf(why, sizeof(why), "%s", strerror(errno));
		prov_bad(p, path, why);
		return (-1);
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		close(fd);
		prov_bad(p, path, "not a regular file");
		return (-1);
	}
	doc = read_doc(fd, JWK_DOC_MAX, &len, why, sizeof(why));
	close(fd);
	if (doc == NULL) {
		prov_bad(p, path, why);
		return (-1);
	}
	rc = prov_parse(p, doc, len, path, 0);
	free(doc);
	return (rc);
}

/*
 * The JWKS of a cache file's text doc[0..len) into j_scratch when the
 * file was saved from p's current source: an object of exactly "source"
 * (a string) and "jwks" (an object), the JWKS re-encoded for
 * jwk_parse_set() (at most JWK_DOC_MAX bytes again).  -1 with a reason in
 * why otherwise; *other says the file is not damaged, only of another
 * source (or of a keygated that did not record sources).
 */
static int
cache_parse(struct jwks_prov *p, const char *doc, size_t len, int *other,
    char *why, size_t whylen)
{
	struct jwks	*j = p->p_jwks;
	json_error_t	 jerr;
	json_t		*root, *src, *set;
	char		*text = NULL;
	size_t		 n;
	int		 rc = -1;

	*other = 0;
	if ((root = json_loadb(doc, len, JSON_REJECT_DUPLICATES, &jerr)) ==
	    NULL) {
		snprintf(why, whylen, "not JSON (line %d, column %d)",
		    jerr.line, jerr.column);
		return (-1);
	}
	src = json_object_get(root, "source");
	set = json_object_get(root, "jwks");
	*other = 1;
	if (!json_is_object(root) || json_object_size(root) != 2 ||
	    !json_is_string(src) || !json_is_object(set))
		snprintf(why, whylen, "its key source is not recorded");
	else if (p->p_source[0] == '\0' ||
	    strcmp(json_string_value(src), p->p_source) != 0)
		snprintf(why, whylen, "saved from another key source");
	else if ((n = json_dumpb(set, NULL, 0, JSON_COMPACT)) == 0 ||
	    n > JWK_DOC_MAX || (text = malloc(n)) == NULL ||
	    json_dumpb(set, text, n, JSON_COMPACT) != n) {
		*other = 0;
		snprintf(why, whylen, "its JWKS is too large");
	} else {
		*other = 0;
		memset(&j->j_scratch, 0, sizeof(j->j_scratch));
		rc = jwk_parse_set(text, n, &j->j_scratch, why, whylen) < 1 ?
		    -1 : 0;
	}
	free(text);
	json_decref(root);
	return (rc);
}

/*
 * Start: the cached "jwks-NAME.json" of a provider fetched over https, if
 * any and saved from the provider's current source, published as
 * JWKS_STALE (good until a fetch succeeds).  A missing cache is normal,
 * one of another source is said at info and replaced by the next good
 * fetch; a damaged or refused one is warned of and ignored.
 */
static void
prov_load_cache(struct jwks_prov *p)
{
	struct jwks	*j = p->p_jwks;
	struct stat	 st;
	char		 name[64], why[JWKS_ERRLEN], *doc;
	size_t		 len;
	int		 fd, other = 0;

	snprintf(name, sizeof(name), "jwks-%s.json", p->p_name);
	if ((fd = journal_file_open(&j->j_state, name, why,
	    sizeof(why))) == -1) {
		if (errno != ENOENT)
			log_warnx("jwt_provider %s: cached keys ignored: %s",
			    p->p_name, why);
		return;
	}
	/*
	 * The master writes its caches as itself: one of the workers' user,
	 * who owns state_dir, would be keys a compromised worker planted.
	 */
	if (fstat(fd, &st) == -1)
		st.st_uid = (uid_t)-1;
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		close(fd);
		log_warnx("jwt_provider %s: cached keys in %s ignored: not "
		    "written by keygated (owned by uid %lu)", p->p_name, name,
		    (unsigned long)st.st_uid);
		return;
	}
	doc = read_doc(fd, JWKS_CACHE_MAX, &len, why, sizeof(why));
	close(fd);
	if (doc == NULL || cache_parse(p, doc, len, &other, why,
	    sizeof(why)) == -1) {
		if (other)
			log_info("jwt_provider %s: cached keys in %s ignored: "
			    "%s", p->p_name, name, why);
		else
			log_warnx("jwt_provider %s: cached keys in %s "
			    "ignored: %s", p->p_name, name, why);
		free(doc);
		return;
	}
	memcpy(&p->p_set, &j->j_scratch, sizeof(p->p_set));
	p->p_haskeys = 1;
	p->p_saved = 1;
	p->p_generation++;
	p->p_state = JWKS_STALE;
	slot_publish(p, 1, st.st_mtime);
	log_info("jwt_provider %s: %u cached keys from %s until a fetch "
	    "succeeds", p->p_name, p->p_set.s_nkeys, name);
	free(doc);
}

/* libcurl's body callback: appended, at most JWK_DOC_MAX bytes. */
static size_t
curl_body_cb(char *data, size_t size, size_t n, void *arg)
{
	struct jwks_prov	*p = arg;
	size_t			 len = size * n, cap;
	char			*nb;

	if (len > JWK_DOC_MAX - p->p_len) {
		p->p_toobig = 1;
		return (0);	/* aborts the transfer */
	}
	if (p->p_len + len + 1 > p->p_cap) {
		cap = p->p_cap == 0 ? 16384 : p->p_cap;
		while (cap < p->p_len + len + 1)
			cap *= 2;
		if ((nb = realloc(p->p_buf, cap)) == NULL)
			return (0);
		p->p_buf = nb;
		p->p_cap = cap;
	}
	memcpy(p->p_buf + p->p_len, data, len);
	p->p_len += len;
	p->p_buf[p->p_len] = '\0';
	return (len);
}

/* Is url an https URL keygate may fetch (printable, not too long)? */
static int
url_ok(const char *url)
{
	const char	*c;

	if (strncasecmp(url, "https://", 8) != 0 || url[8] == '\0' ||
	    strlen(url) >= JWKS_URL_MAX)
		return (0);
	for (c = url; *c != '\0'; c++)
		if (*c <= ' ' || *c >= 0x7f)
			return (0);
	return (1);
}

/* Set the options of one GET of url on p's easy handle; 0 or -1. */
static int
easy_setup(struct jwks_prov *p, const char *url)
{
	CURL		*e = p->p_easy;
	CURLcode	 rc = CURLE_OK;

	curl_easy_reset(e);
	rc |= curl_easy_setopt(e, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500	/* 7.85: the _STR forms */
	rc |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
	rc |= curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "https");
#else
	rc |= curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)CURLPROTO_HTTPS);
	rc |= curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS,
	    (long)CURLPROTO_HTTPS);
#endif
	rc |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
	rc |= curl_easy_setopt(e, CURLOPT_MAXREDIRS, JWKS_MAX_REDIRS);
	rc |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)JWKS_TIMEOUT_MS);
	rc |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
	    (long)JWKS_CONNECT_MS);
	rc |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	rc |= curl_easy_setopt(e, CURLOPT_USERAGENT, "keygate/"
	    PACKAGE_VERSION);
	rc |= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
	    (curl_off_t)JWK_DOC_MAX);
	/*
	 * A fetch an hour: no connection is kept between fetches, so no
	 * socket to the IdP sits in the master for a forked worker to
	 * inherit.
	 */
	rc |= curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
	rc |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, curl_body_cb);
	rc |= curl_easy_setopt(e, CURLOPT_WRITEDATA, p);
	rc |= curl_easy_setopt(e, CURLOPT_PRIVATE, p);
	rc |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, p->p_curlerr);
	if (p->p_conf->jp_ca != NULL)
		rc |= curl_easy_setopt(e, CURLOPT_CAINFO, p->p_conf->jp_ca);
	return (rc == CURLE_OK ? 0 : -1);
}

/* Start a GET of url for p at stage; 0, or -1 with a reason in why. */
static int
prov_get(struct jwks_prov *p, const char *url, enum prov_stage stage,
    char *why, size_t whylen)
{
	struct jwks	*j = p->p_jwks;

	snprintf(p->p_url, sizeof(p->p_url), "%s", url);
	if (!url_ok(url)) {
		snprintf(why, whylen, "not an https URL");
		return (-1);
	}
	if (p->p_easy == NULL && (p->p_easy = curl_easy_init()) == NULL) {
		snprintf(why, whylen, "libcurl: cannot make a transfer");
		return (-1);
	}
	p->p_curlerr[0] = '\0';
	p->p_len = 0;
	p->p_toobig = 0;
	if (easy_setup(p, url) == -1) {
		snprintf(why, whylen, "libcurl refused an option");
		return (-1);
	}
	if (curl_multi_add_handle(j->j_multi, p->p_easy) != CURLM_OK) {
		snprintf(why, whylen, "libcurl: cannot start the transfer");
		return (-1);
	}
	p->p_stage = stage;
	return (0);
}

/*
 * Fetch p's keys now: its file at once, else a GET of its jwks= URL or of
 * its discovery document.  A fetch already under way is the answer.
 */
static void
prov_fetch(struct jwks_prov *p)
{
	char	 url[JWKS_URL_MAX], why[JWKS_ERRLEN];
	int	 rc;

	if (p->p_stage != STAGE_IDLE)
		return;
	evtimer_del(p->p_timer);
	if (p->p_conf->jp_jwks_path != NULL) {
		rc = prov_read_path(p);
		prov_finished(p, rc == 0);
		return;
	}
	if (p->p_conf->jp_jwks_url != NULL)
		rc = prov_get(p, p->p_conf->jp_jwks_url, STAGE_JWKS, why,
		    sizeof(why));
	else if (jwt_discovery_url(p->p_conf, url, sizeof(url)) == -1) {
		snprintf(p->p_url, sizeof(p->p_url), "(discovery)");
		snprintf(why, sizeof(why), "the discovery URL is too long");
		rc = -1;
	} else
		rc = prov_get(p, url, STAGE_DISCOVERY, why, sizeof(why));
	if (rc == -1) {
		prov_bad(p, p->p_url, why);
		prov_finished(p, 0);
	}
}

/*
 * Is iss[0..len) the issuer whose discovery document was asked for?  The
 * document must name the issuer it describes (OpenID Connect Discovery
 * 4.3), so that a document of another issuer (a misconfigured or hostile
 * URL) cannot hand over its keys.  Accepted: the provider's first issuer
 * as written, and, for a {tenantid} issuer, the same with the tenant the
 * discovery URL used (jwt_discovery_url(): the single tenant, or
 * "common").  Entra's "common" document names the template itself.
 */
static int
discovery_issuer_ok(const struct jwt_provider *jp, const char *iss,
    size_t len)
{
	const char	*want, *at, *tenant = "common";
	size_t		 plen, tlen, slen;

	if (jp == NULL || jp->jp_nissuers < 1 || memchr(iss, '\0', len) != NULL)
		return (0);
	want = jp->jp_issuers[0];
	if (strlen(want) == len && memcmp(want, iss, len) == 0)
		return (1);
	if ((at = strstr(want, JWT_TENANT_TEMPLATE)) == NULL)
		return (0);
	if (jp->jp_ntenants == 1 && !jp->jp_tenants_any)
		tenant = jp->jp_tenants[0];
	plen = (size_t)(at - want);
	tlen = strlen(tenant);
	slen = strlen(at + strlen(JWT_TENANT_TEMPLATE));
	return (len == plen + tlen + slen && memcmp(iss, want, plen) == 0 &&
	    strncasecmp(iss + plen, tenant, tlen) == 0 &&
	    memcmp(iss + plen + tlen, at + strlen(JWT_TENANT_TEMPLATE),
	    slen) == 0);
}

/* The "jwks_uri" of the discovery document in p's buffer; 0 or -1. */
static int
discovery_uri(struct jwks_prov *p, char *why, size_t whylen)
{
	json_error_t	 jerr;
	json_t		*doc, *v;
	char		*uri;

	/* jansson's text may quote the document: only the position. */
	doc = json_loadb(p->p_buf != NULL ? p->p_buf : "", p->p_len,
	    JSON_REJECT_DUPLICATES, &jerr);
	if (doc == NULL) {
		snprintf(why, whylen, "discovery document: not JSON (line "
		    "%d, column %d)", jerr.line, jerr.column);
		return (-1);
	}
	v = json_object_get(doc, "issuer");
	if (!json_is_string(v) || !discovery_issuer_ok(p->p_conf,
	    json_string_value(v), json_string_length(v))) {
		snprintf(why, whylen, "discovery document: its \"issuer\" is "
		    "not the provider's (OpenID Connect Discovery 4.3)");
		json_decref(doc);
		return (-1);
	}
	v = json_object_get(doc, "jwks_uri");
	if (!json_is_string(v) || !url_ok(json_string_value(v))) {
		snprintf(why, whylen, "discovery document: no https "
		    "\"jwks_uri\"");
		json_decref(doc);
		return (-1);
	}
	uri = strdup(json_string_value(v));
	json_decref(doc);
	if (uri == NULL) {
		snprintf(why, whylen, "out of memory");
		return (-1);
	}
	free(p->p_jwks_uri);
	p->p_jwks_uri = uri;
	return (0);
}

/* Why the transfer of p failed, or NULL if it brought a 200 answer. */
static const char *
transfer_error(struct jwks_prov *p, CURLcode res, char *why, size_t whylen)
{
	long	 status = 0;

	if (p->p_toobig) {
		snprintf(why, whylen, "answer larger than %d bytes",
		    JWK_DOC_MAX);
		return (why);
	}
	if (res != CURLE_OK) {
		snprintf(why, whylen, "%s", p->p_curlerr[0] != '\0' ?
		    p->p_curlerr : curl_easy_strerror(res));
		return (why);
	}
	(void)curl_easy_getinfo(p->p_easy, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200) {
		snprintf(why, whylen, "HTTP status %ld", status);
		return (why);
	}
	return (NULL);
}

/*
 * A transfer of p ended with res.  Discovery: on to the jwks_uri it names
 * (or, when discovery failed, the one it named last time).  JWKS: parse
 * and publish.
 */
static void
prov_transfer_done(struct jwks_prov *p, CURLcode res)
{
	char		 why[JWKS_ERRLEN], url[JWKS_URL_MAX];
	const char	*bad;
	int		 ok;

	bad = transfer_error(p, res, why, sizeof(why));
	if (p->p_stage == STAGE_DISCOVERY) {
		if (bad == NULL && discovery_uri(p, why, sizeof(why)) == -1)
			bad = why;
		if (bad != NULL && p->p_jwks_uri == NULL) {
			prov_bad(p, p->p_url, bad);
			prov_finished(p, 0);
			return;
		}
		if (bad != NULL)
			log_debug("jwt_provider %s: discovery at %s failed "
			    "(%s): using the jwks_uri of before", p->p_name,
			    p->p_url, bad);
		snprintf(url, sizeof(url), "%s", p->p_jwks_uri);
		if (prov_get(p, url, STAGE_JWKS, why, sizeof(why)) == -1) {
			prov_bad(p, p->p_url, why);
			prov_finished(p, 0);
		}
		return;
	}
	if (bad != NULL) {
		prov_bad(p, p->p_url, bad);
		ok = 0;
	} else
		ok = prov_parse(p, p->p_buf != NULL ? p->p_buf : "",
		    p->p_len, p->p_url, 1) == 0;
	prov_finished(p, ok);
}

/* Finished transfers: each handed to its provider. */
static void
multi_check(struct jwks *j)
{
	struct jwks_prov	*p;
	CURLMsg			*msg;
	CURL			*e;
	char			*priv;
	CURLcode		 res;
	int			 left;

	while ((msg = curl_multi_info_read(j->j_multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		e = msg->easy_handle;
		res = msg->data.result;
		priv = NULL;
		(void)curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
		p = (struct jwks_prov *)(void *)priv;
		curl_multi_remove_handle(j->j_multi, e);
		if (p != NULL && p->p_stage != STAGE_IDLE)
			prov_transfer_done(p, res);
	}
}

/* A transfer's socket is ready: tell libcurl. */
static void
curl_sock_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct jwks	*j = arg;
	int		 action = 0, running;

	if (what & EV_READ)
		action |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		action |= CURL_CSELECT_OUT;
	(void)curl_multi_socket_action(j->j_multi, fd, action, &running);
	multi_check(j);
}

/* libcurl's timeout expired. */
static void
curl_timer_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct jwks	*j = arg;
	int		 running;

	(void)curl_multi_socket_action(j->j_multi, CURL_SOCKET_TIMEOUT, 0,
	    &running);
	multi_check(j);
}

/* CURLMOPT_SOCKETFUNCTION: one persistent event per socket. */
static int
curl_sock_cb(CURL *e, curl_socket_t fd, int what, void *arg, void *sockp)
{
	struct jwks		*j = arg;
	struct jwks_sock	*sk = sockp;
	short			 kind;

	if (what == CURL_POLL_REMOVE) {
		if (sk != NULL) {
			event_free(sk->sk_ev);
			LIST_REMOVE(sk, sk_entry);
			free(sk);
			curl_multi_assign(j->j_multi, fd, NULL);
		}
		return (0);
	}
	kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
	    ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
	if (sk == NULL) {
		if ((sk = calloc(1, sizeof(*sk))) == NULL ||
		    (sk->sk_ev = event_new(j->j_base, fd, kind,
		    curl_sock_event_cb, j)) == NULL) {
			free(sk);
			return (-1);
		}
		sk->sk_fd = fd;
		LIST_INSERT_HEAD(&j->j_socks, sk, sk_entry);
		curl_multi_assign(j->j_multi, fd, sk);
	} else {
		event_del(sk->sk_ev);
		event_assign(sk->sk_ev, j->j_base, fd, kind,
		    curl_sock_event_cb, j);
	}
	return (event_add(sk->sk_ev, NULL) == 0 ? 0 : -1);
}

/* CURLMOPT_TIMERFUNCTION: the one timer (-1: none). */
static int
curl_timer_cb(CURLM *multi, long ms, void *arg)
{
	struct jwks	*j = arg;
	struct timeval	 tv;

	if (ms < 0)
		return (evtimer_del(j->j_curl_timer));
	util_ms_timeval(ms, &tv);
	return (evtimer_add(j->j_curl_timer, &tv));
}

/* libcurl and its timer, once there is a provider; 0 or -1 with err. */
static int
jwks_curl_init(struct jwks *j, char *err, size_t errlen)
{
	if (j->j_multi != NULL)
		return (0);
	if (!curl_started) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			snprintf(err, errlen, "libcurl: cannot initialise");
			return (-1);
		}
		curl_started = 1;
	}
	if ((j->j_curl_timer = evtimer_new(j->j_base, curl_timer_event_cb,
	    j)) == NULL || (j->j_multi = curl_multi_init()) == NULL) {
		snprintf(err, errlen, "libcurl: cannot make a multi handle");
		return (-1);
	}
	curl_multi_setopt(j->j_multi, CURLMOPT_SOCKETFUNCTION, curl_sock_cb);
	curl_multi_setopt(j->j_multi, CURLMOPT_SOCKETDATA, j);
	curl_multi_setopt(j->j_multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
	curl_multi_setopt(j->j_multi, CURLMOPT_TIMERDATA, j);
	return (0);
}

/* Stop p's transfer, if any, without an answer. */
static void
prov_cancel(struct jwks_prov *p)
{
	if (p->p_stage != STAGE_IDLE) {
		curl_multi_remove_handle(p->p_jwks->j_multi, p->p_easy);
		p->p_stage = STAGE_IDLE;
	}
	free(p->p_buf);
	p->p_buf = NULL;
	p->p_len = p->p_cap = 0;
	slot_refetch_end(p);
}

/* Arm p's timer for ms from now. */
static void
prov_schedule(struct jwks_prov *p, int64_t ms)
{
	struct timeval	 tv;

	util_ms_timeval(ms, &tv);
	evtimer_add(p->p_timer, &tv);
}

/*
 * p's timer: the next fetch, or, for a retired slot, its end: cleared
 * (unused, no name, no keys) under the seqlock and free for any name.
 */
static void
prov_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct jwks_prov	*p = arg;

	if (p->p_conf != NULL) {
		prov_fetch(p);
		return;
	}
	if (p->p_retire_ms == 0)
		return;
	p->p_retire_ms = 0;
	memset(p->p_name, 0, sizeof(p->p_name));
	memset(p->p_source, 0, sizeof(p->p_source));
	memset(&p->p_set, 0, sizeof(p->p_set));
	p->p_haskeys = 0;
	p->p_state = JWKS_NONE;
	free(p->p_jwks_uri);
	p->p_jwks_uri = NULL;
	slot_publish(p, 1, 0);
}

/*
 * Every JWKS_TICK_MS: a changed js_refetch_req of a slot in use asks for
 * an early re-fetch, done when the last one started JWKS_REFETCH_MIN_MS
 * ago or never (by the master's own clock); else the request is only
 * noted.  The slot's busy flag and time say so to the waiting workers.
 */
static void
jwks_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct jwks		*j = arg;
	struct jwks_prov	*p;
	struct jwks_slot	*s;
	uint32_t		 req;
	int64_t			 now = util_mono_ms();
	int			 i;

	for (i = 0; i < JWT_MAX_PROVIDERS; i++) {
		p = &j->j_prov[i];
		if (p->p_conf == NULL)
			continue;
		s = slot_at(j->j_shm, i);
		req = SHM_LOAD(&s->js_refetch_req);
		if (req == p->p_req_seen)
			continue;
		p->p_req_seen = req;
		if (p->p_refetch_last != 0 &&
		    now - p->p_refetch_last < JWKS_REFETCH_MIN_MS)
			continue;
		p->p_refetch_last = now;
		p->p_refetch = 1;
		__atomic_store_n(&s->js_refetch_busy, 1, __ATOMIC_RELAXED);
		__atomic_store_n(&s->js_refetch_last, now, __ATOMIC_RELEASE);
		log_debug("jwt_provider %s: early re-fetch (unknown kid)",
		    p->p_name);
		prov_fetch(p);
	}
}

/*
 * jp's key source as a string into buf (see JWKS_SOURCE_MAX): what the
 * keys are trusted for, so that a change of it drops them.  Issuers and
 * tenants count only through the discovery URL (with jwks= they choose
 * which tokens the keys verify, not the keys).  0, or -1 with buf empty
 * (unknown: it does not fit).
 */
static int
source_of(const struct jwt_provider *jp, char *buf, size_t len)
{
	char	 url[JWKS_URL_MAX];
	int	 n;

	buf[0] = '\0';
	if (jp->jp_jwks_url != NULL)
		n = snprintf(buf, len, "%s", jp->jp_jwks_url);
	else if (jp->jp_jwks_path != NULL)
		n = snprintf(buf, len, "%s", jp->jp_jwks_path);
	else if (jwt_discovery_url(jp, url, sizeof(url)) == 0)
		n = snprintf(buf, len, "discovery:%s", url);
	else
		return (-1);
	if (n >= 0 && (size_t)n < len && jp->jp_ca != NULL)
		n += snprintf(buf + n, len - (size_t)n, "\nca=%s", jp->jp_ca);
	if (n < 0 || (size_t)n >= len) {
		buf[0] = '\0';
		return (-1);
	}
	return (0);
}

/* The record named name (in use or retired), or NULL. */
static struct jwks_prov *
prov_named(struct jwks *j, const char *name)
{
	int	 i;

	for (i = 0; i < JWT_MAX_PROVIDERS; i++)
		if (j->j_prov[i].p_name[0] != '\0' &&
		    strcmp(j->j_prov[i].p_name, name) == 0)
			return (&j->j_prov[i]);
	return (NULL);
}

/*
 * Take the free record p (its timer made by jwks_fits) for jp: published,
 * its cache loaded, fetched.
 */
static void
prov_assign(struct jwks_prov *p, const struct jwt_provider *jp)
{
	struct jwks_slot	*s = slot_at(p->p_jwks->j_shm, p->p_index);

	p->p_conf = jp;
	snprintf(p->p_name, sizeof(p->p_name), "%s", jp->jp_name);
	(void)source_of(jp, p->p_source, sizeof(p->p_source));
	p->p_haskeys = p->p_saved = p->p_failing = 0;
	p->p_backoff_ms = 0;
	p->p_state = JWKS_NONE;
	memset(&p->p_set, 0, sizeof(p->p_set));
	p->p_req_seen = SHM_LOAD(&s->js_refetch_req);
	slot_publish(p, 1, 0);
	if (jp->jp_jwks_path == NULL)
		prov_load_cache(p);
	prov_fetch(p);
}

/* A removed provider's record: no more fetches, cleared after delay. */
static void
prov_retire(struct jwks_prov *p, int64_t delay)
{
	prov_cancel(p);
	evtimer_del(p->p_timer);
	p->p_conf = NULL;
	p->p_retire_ms = util_mono_ms() + delay;
	prov_schedule(p, delay);
}

/*
 * p (in use or retired) is jp's again, after a reload.  Its key source
 * changed: old keys dropped (prov_drop), the cache loaded if it is of
 * the new source (a rollback to the source before a failed one, say),
 * fetched at once.  A retired record back with the same source: kept,
 * fetched at once.  Otherwise only the options change; keys and timer
 * stay.
 */
static void
prov_keep(struct jwks_prov *p, const struct jwt_provider *jp)
{
	char	 src[JWKS_SOURCE_MAX];

	(void)source_of(jp, src, sizeof(src));
	if (p->p_conf != NULL && src[0] != '\0' &&
	    strcmp(src, p->p_source) == 0) {
		p->p_conf = jp;
		return;
	}
	prov_cancel(p);
	free(p->p_jwks_uri);
	p->p_jwks_uri = NULL;
	p->p_backoff_ms = 0;
	p->p_failing = 0;	/* say the new one's */
	p->p_conf = jp;
	p->p_retire_ms = 0;
	if (src[0] == '\0' || strcmp(src, p->p_source) != 0) {
		prov_drop(p);
		memcpy(p->p_source, src, sizeof(p->p_source));
		if (jp->jp_jwks_path == NULL)
			prov_load_cache(p);
	}
	prov_fetch(p);
}

/*
 * Can conf's providers all have a record?  Each keeps the one of its name
 * (in use or retired); the new ones need as many free records, whose
 * timers are made now, as are libcurl and the tick, so that jwks_apply()
 * cannot fail once it starts changing things.  -1 with err otherwise,
 * with nothing changed.
 */
static int
jwks_fits(struct jwks *j, const struct config *conf, char *err, size_t errlen)
{
	struct jwks_prov	*p;
	size_t			 i;
	int			 k = 0;

	if (conf->c_njwt > JWT_MAX_PROVIDERS) {
		snprintf(err, errlen, "more than %d jwt_provider directives",
		    JWT_MAX_PROVIDERS);
		return (-1);
	}
	for (i = 0; i < conf->c_njwt; i++) {
		if (prov_named(j, conf->c_jwt[i].jp_name) != NULL)
			continue;
		while (k < JWT_MAX_PROVIDERS && j->j_prov[k].p_name[0] != '\0')
			k++;
		if (k == JWT_MAX_PROVIDERS) {
			snprintf(err, errlen, "jwt_provider %s: no free key "
			    "slot (a removed provider's slot is freed once "
			    "the workers of before have stopped; reload "
			    "again later)", conf->c_jwt[i].jp_name);
			return (-1);
		}
		p = &j->j_prov[k++];
		if (p->p_timer == NULL && (p->p_timer = evtimer_new(j->j_base,
		    prov_timer_cb, p)) == NULL)
			goto nomem;
	}
	if (conf->c_njwt == 0)
		return (0);
	if (j->j_tick == NULL && (j->j_tick = event_new(j->j_base, -1,
	    EV_PERSIST, jwks_tick_cb, j)) == NULL)
		goto nomem;
	return (jwks_curl_init(j, err, errlen));
nomem:
	snprintf(err, errlen, "cannot make the JWKS timers");
	return (-1);
}

/* Is name one of conf's providers? */
static int
conf_has(const struct config *conf, const char *name)
{
	size_t	 i;

	for (i = 0; i < conf->c_njwt; i++)
		if (strcmp(conf->c_jwt[i].jp_name, name) == 0)
			return (1);
	return (0);
}

/*
 * Make conf's providers current (see jwks_reconfigure).  Everything that
 * can fail is done first (jwks_fits): -1 with err, nothing changed.
 */
static int
jwks_apply(struct jwks *j, const struct config *conf, char *err,
    size_t errlen)
{
	const struct jwt_provider	*jp;
	struct jwks_prov		*p;
	struct timeval			 tick = { 0, JWKS_TICK_MS * 1000 };
	int64_t				 delay = JWKS_RETIRE_SLACK_MS;
	size_t				 i;
	int				 k;

	if (jwks_fits(j, conf, err, errlen) == -1)
		return (-1);
	if (j->j_conf != NULL)
		delay += j->j_conf->c_shutdown_timeout;
	for (k = 0; k < JWT_MAX_PROVIDERS; k++) {
		p = &j->j_prov[k];
		if (p->p_conf != NULL && !conf_has(conf, p->p_name))
			prov_retire(p, delay);
	}
	for (i = 0; i < conf->c_njwt; i++) {
		jp = &conf->c_jwt[i];
		if ((p = prov_named(j, jp->jp_name)) != NULL) {
			prov_keep(p, jp);
			continue;
		}
		for (k = 0; j->j_prov[k].p_name[0] != '\0'; k++)
			;	/* jwks_fits() made sure of a free one */
		prov_assign(&j->j_prov[k], jp);
	}
	j->j_conf = conf;
	if (conf->c_njwt == 0) {
		if (j->j_tick != NULL)
			event_del(j->j_tick);
		return (0);
	}
	if (!evtimer_pending(j->j_tick, NULL))
		evtimer_add(j->j_tick, &tick);
	return (0);
}

/* Set up and start fetching for conf's providers; NULL with err. */
struct jwks *
jwks_start(struct event_base *base, struct shm_header *shm,
    const struct config *conf, char *err, size_t errlen)
{
	struct jwks	*j;
	int		 i;

	if ((j = calloc(1, sizeof(*j))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return (NULL);
	}
	j->j_base = base;
	LIST_INIT(&j->j_socks);
	j->j_shm = shm;
	for (i = 0; i < JWT_MAX_PROVIDERS; i++) {
		j->j_prov[i].p_jwks = j;
		j->j_prov[i].p_index = i;
	}
	/*
	 * state_dir may belong to the workers' user (as for the key store);
	 * the cache files in it are the master's own (prov_load_cache).
	 */
	if (journal_init(&j->j_state, conf->c_state_dir,
	    conf->c_user != NULL && geteuid() == 0 ? conf->c_uid : (uid_t)-1,
	    conf->c_user != NULL && geteuid() == 0 ? conf->c_gid :
	    (gid_t)-1) == -1) {
		snprintf(err, errlen, "out of memory");
		free(j);
		return (NULL);
	}
	if (jwks_apply(j, conf, err, errlen) == -1) {
		jwks_free(j);
		return (NULL);
	}
	return (j);
}

/*
 * A reload: kept providers keep their slot and keys (dropped and
 * re-fetched at once if their key source changed), new ones take a free
 * slot, removed ones' slots are retired: kept published for the old
 * workers, cleared after their shutdown_timeout and the reload's delays.  state_dir is the one
 * of jwks_start (the master keeps it until a restart).  On failure
 * nothing changed: no record points into conf.  Going back to the
 * configuration before (a rollback) needs no new slot, since a removed
 * provider's name is kept longer than a reload waits for its workers.
 */
int
jwks_reconfigure(struct jwks *j, const struct config *conf, char *err,
    size_t errlen)
{
	return (jwks_apply(j, conf, err, errlen));
}

/* Cancel every transfer, free everything (the slots stay as they are). */
void
jwks_free(struct jwks *j)
{
	struct jwks_prov	*p;
	int			 i;

	if (j == NULL)
		return;
	for (i = 0; i < JWT_MAX_PROVIDERS; i++) {
		p = &j->j_prov[i];
		prov_cancel(p);
		if (p->p_timer != NULL)
			event_free(p->p_timer);
		if (p->p_easy != NULL)
			curl_easy_cleanup(p->p_easy);
		free(p->p_jwks_uri);
	}
	if (j->j_multi != NULL)
		curl_multi_cleanup(j->j_multi);
	if (j->j_curl_timer != NULL)
		event_free(j->j_curl_timer);
	if (j->j_tick != NULL)
		event_free(j->j_tick);
	if (j->j_multi != NULL && curl_started) {
		curl_global_cleanup();
		curl_started = 0;
	}
	journal_close(&j->j_state);
	free(j);
}

/*
 * In a worker just forked from the master: close the sockets of fetches
 * under way, without any libcurl call (which would act on the master's
 * connection, e.g. send a TLS close_notify on it).  The master's copies
 * stay open and its transfers go on.
 */
void
jwks_child_detach(struct jwks *j)
{
	struct jwks_sock	*sk;

	if (j == NULL)
		return;
	LIST_FOREACH(sk, &j->j_socks, sk_entry)
		close(sk->sk_fd);
}
