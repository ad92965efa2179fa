/*
 * libFuzzer target for the admin API (src/admin.c): JSON bodies, query
 * strings, paths and Authorization values from the input, answered by
 * admin_handle() against a real key store (MAP_SHARED region) and a real
 * journal (in a mkdtemp directory, on tmpfs when there is one).
 *
 * The first input byte picks what the rest is:
 *
 *	byte % 7  0	POST /v1/keys, rest is the body
 *		  1	PATCH /v1/keys/{id}, rest is the body
 *		  2	POST /v1/keys/{id}/regenerate, rest is the body
 *		  3	POST /v1/verify, rest is the body
 *		  4	GET /v1/keys?REST
 *		  5	"PATH[?QUERY]\nBODY" with the method (byte / 7) % 8;
 *			a PATH starting with "@" has it replaced by
 *			"/v1/keys/{id}"
 *		  6	GET /v1/keys with REST as the Authorization value
 *
 * POST /v1/keys/import (mode 5) answers NDJSON, checked line by line
 * (fz_import); a create that brought its secret answers without one.
 *
 * GET /v1/status and GET /metrics (mode 5) read a counter region with a
 * few upstreams and two samples, made once at start-up; /metrics answers
 * Prometheus text, checked for its type and length only.
 *
 * where {id} is key number (byte / 8) modulo the count, in slot order;
 * before each request the store holds 1 to 32 keys (more are deleted
 * through the API).  The state carries over from input to input (keys
 * created, changed, deleted), and the clock moves one second per input.
 *
 * Every answer is checked: a status the request can produce; JSON object
 * bodies of exactly as_bodylen bytes (none for 204); errors with "error"
 * (equal to as_code) and "message" strings, "field" for 422, a challenge
 * for 401 and Allow for 405; an error, a verify or a list changes neither
 * the journal nor the store's sequence; a key object returned equals what
 * GET then returns; a returned secret verifies as that key; no secret
 * handed out ever appears in a later answer.  Every 1000 inputs the
 * journal is loaded into a fresh store that must equal the live one, then
 * compacted, and loaded again.  AddressSanitizer's leak check covers
 * every path.
 */

#include <sys/types.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "admin.h"
#include "config.h"
#include "http.h"
#include "journal.h"
#include "keystore.h"
#include "log.h"
#include "metrics.h"
#include "secret.h"
#include "stats.h"
#include "fuzz.h"
#include "fzstore.h"

#define FZ_MAXKEYS	64
#define FZ_HIGH		32	/* more keys than this: delete some */
#define FZ_LOW		16	/* ... down to this many */
#define FZ_CHECK_EVERY	1000	/* inputs between journal checks */
#define FZ_NSECRETS	16	/* secrets remembered for the leak check */
#define FZ_NOW0		1795000000000LL	/* 2026-11-18T11:06:40Z */
#define FZ_TOKEN	"fuzz-admin-token-0123456789"
#define FZ_AUTH		"Bearer " FZ_TOKEN
#define FZ_JSON		"application/json"

/* Statuses, as bits for the set a request may answer with. */
#define S_200		0x001
#define S_201		0x002
#define S_204		0x004
#define S_400		0x008
#define S_401		0x010
#define S_404		0x020
#define S_405		0x040
#define S_422		0x080
#define S_409		0x100

static const struct {
	int	 st_code;
	int	 st_bit;
} fz_statuses[] = {
	{ 200, S_200 }, { 201, S_201 }, { 204, S_204 }, { 400, S_400 },
	{ 401, S_401 }, { 404, S_404 }, { 405, S_405 }, { 422, S_422 },
	{ 409, S_409 },
};

/* Methods for mode 5, by (byte / 7) % 8. */
static const int fz_methods[] = {
	HTTP_M_GET, HTTP_M_POST, HTTP_M_PATCH, HTTP_M_DELETE, HTTP_M_PUT,
	HTTP_M_HEAD, HTTP_M_OPTIONS, HTTP_M_OTHER
};

/* Everything that lives from one input to the next. */
static struct {
	int			 f_init;
	char			 f_dir[64];
	void			*f_region;
	size_t			 f_size;
	struct keystore		 f_ks;
	struct journal		 f_j;
	uint8_t			 f_token[KS_DIGEST_LEN];
	struct admin_env	 f_env;
	struct stats_region	*f_stats;
	json_t			*f_gateway;	/* GET /v1/gateway's base */
	int64_t			 f_now;
	unsigned long		 f_runs;
	char			 f_secrets[FZ_NSECRETS][SECRET_MAX + 1];
	unsigned int		 f_nsecrets;	/* handed out so far */
} fz;

/* One request to send, the fields of struct admin_request that vary. */
struct fz_req {
	int		 r_mbit;
	const char	*r_path;
	size_t		 r_pathlen;
	const char	*r_query;	/* NULL: none */
	size_t		 r_querylen;
	const char	*r_auth;
	size_t		 r_authlen;
	const char	*r_body;	/* NULL: none */
	size_t		 r_bodylen;
};

/* Remove what can be of dir and dir itself (at exit: no assertion). */
static void
fz_rmdir_any(const char *dir)
{
	struct dirent	*de;
	DIR		*d;

	if ((d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			(void)unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
	(void)rmdir(dir);
}

/* At exit: close the journal and remove its directory. */
static void
fz_cleanup(void)
{
	journal_close(&fz.f_j);
	fz_rmdir_any(fz.f_dir);
	free(fz.f_stats);
	json_decref(fz.f_gateway);
}

/* The counters /v1/status reads: named upstreams, traffic, two samples. */
static void
fz_stats(void)
{
	struct stats_region	*r;
	struct stats_total	*t;
	uint32_t		 up;

	FUZZ_ASSERT((r = calloc(1, sizeof(*r))) != NULL);
	FUZZ_ASSERT((t = malloc(sizeof(*t))) != NULL);
	stats_init(r, FZ_NOW0 / 1000 - 60);
	stats_workers(r, 2);
	stats_attach(r, 0);
	stats_reloaded(r, 1, FZ_NOW0 / 1000 - 60);
	up = stats_upstream_id(r, "api", "127.0.0.1:8080");
	(void)stats_upstream_id(r, "idle", "127.0.0.1:8081");
	stats_sample(r, t, FZ_NOW0 / 1000 - 2);
	stats_request(&r->sr_slots[0], STATS_ROUTE_NONE, 404, 100);
	stats_upstream(&r->sr_slots[0], up, STATS_UP_OK, 100);
	stats_upstream(&r->sr_slots[0], up, STATS_UP_TIMEOUT, 0);
	stats_sample(r, t, FZ_NOW0 / 1000 - 1);
	free(t);
	fz.f_stats = r;
}

/*
 * Does hay contain needle?  Written out and kept out of the coverage
 * instrumentation: libFuzzer's strstr()/memcmp() hooks and comparison
 * tracing would otherwise hand the secrets searched for to the mutator,
 * and the next inputs would contain them.  (Were a secret still to show
 * up in the inputs, some comparison in the code under test gave it away.)
 */
__attribute__((no_sanitize("coverage")))
static int
fz_contains(const char *hay, const char *needle)
{
	size_t	 i;

	for (; *hay != '\0'; hay++) {
		for (i = 0; needle[i] != '\0' && hay[i] == needle[i]; i++)
			;
		if (needle[i] == '\0')
			return (1);
	}
	return (0);
}

/* No secret handed out before may be in body (only its own answer says it). */
static void
fz_check_no_secret(const char *body)
{
	unsigned int	 i, n;

	n = fz.f_nsecrets < FZ_NSECRETS ? fz.f_nsecrets : FZ_NSECRETS;
	for (i = 0; i < n; i++)
		if (fz_contains(body, fz.f_secrets[i])) {
			fprintf(stderr, "secret %u of %u handed out is in "
			    "a later answer\n", i, fz.f_nsecrets);
			abort();
		}
}

/* A string member of o, or NULL. */
static const char *
fz_str(json_t *o, const char *name)
{
	return (json_string_value(json_object_get(o, name)));
}

/* Send one request; rs holds the answer. */
static void
fz_send(const struct fz_req *r, struct admin_response *rs)
{
	struct admin_request	 rq;

	memset(&rq, 0, sizeof(rq));
	rq.aq_mbit = r->r_mbit;
	rq.aq_path = r->r_path;
	rq.aq_pathlen = r->r_pathlen;
	rq.aq_query = r->r_query;
	rq.aq_querylen = r->r_querylen;
	rq.aq_auth = r->r_auth;
	rq.aq_authlen = r->r_authlen;
	rq.aq_body = r->r_body;
	rq.aq_bodylen = r->r_bodylen;
	rq.aq_now = fz.f_now;
	rq.aq_mono = fz.f_now;	/* usage windows read the (empty) rate states */
	admin_handle(&fz.f_env, &rq, rs);
}

/*
 * Check what holds for every answer, given the statuses allowed (S_*
 * bits); returns the parsed body (a new reference), or NULL for 204.
 */
static json_t *
fz_check(const struct admin_response *rs, int allowed)
{
	json_error_t	 je;
	json_t		*o;
	size_t		 i;
	int		 bit = 0;

	for (i = 0; i < sizeof(fz_statuses) / sizeof(fz_statuses[0]); i++)
		if (fz_statuses[i].st_code == rs->as_status)
			bit = fz_statuses[i].st_bit;
	/* Only error bodies are shown: others may hold a secret. */
	if ((bit & allowed) == 0)
		fprintf(stderr, "unexpected status %d: %.*s\n", rs->as_status,
		    rs->as_status >= 400 ? (int)rs->as_bodylen : 0,
		    rs->as_body != NULL ? rs->as_body : "");
	FUZZ_ASSERT((bit & allowed) != 0);
	FUZZ_ASSERT((rs->as_challenge != NULL) == (rs->as_status == 401));
	FUZZ_ASSERT((rs->as_allow != NULL) == (rs->as_status == 405));
	if (rs->as_status == 204) {
		FUZZ_ASSERT(rs->as_body == NULL && rs->as_bodylen == 0);
		FUZZ_ASSERT(rs->as_code == NULL);
		return (NULL);
	}
	FUZZ_ASSERT(rs->as_body != NULL);
	FUZZ_ASSERT(strlen(rs->as_body) == rs->as_bodylen);
	FUZZ_ASSERT(rs->as_type != NULL && strcmp(rs->as_type, FZ_JSON) == 0);
	o = json_loadb(rs->as_body, rs->as_bodylen, JSON_REJECT_DUPLICATES,
	    &je);
	FUZZ_ASSERT(o != NULL && json_is_object(o));
	if (rs->as_status < 400) {
		FUZZ_ASSERT(rs->as_code == NULL);
		FUZZ_ASSERT(json_object_get(o, "error") == NULL);
		return (o);
	}
	FUZZ_ASSERT(fz_str(o, "error") != NULL && fz_str(o, "message") != NULL);
	FUZZ_ASSERT(rs->as_code != NULL &&
	    strcmp(rs->as_code, fz_str(o, "error")) == 0);
	FUZZ_ASSERT((fz_str(o, "field") != NULL) == (rs->as_status == 422));
	FUZZ_ASSERT(json_object_get(o, "secret") == NULL);
	FUZZ_ASSERT(json_object_size(o) == 2U + (rs->as_status == 422));
	return (o);
}

/*
 * POST /v1/keys/import answers NDJSON: 1 if rs is that answer, checked
 * (a POST of that path, 200, one result object per line with increasing
 * line numbers, a known status, an error object exactly for "error",
 * an id that is a key id, or null only for an error), 0 for any other.
 */
static int
fz_import(const struct fz_req *r, const struct admin_response *rs)
{
	const char	*p, *nl, *st, *id;
	json_t		*o, *e;
	json_int_t	 last = 0, line;

	if (rs->as_type == NULL || strcmp(rs->as_type, FZ_JSON) == 0)
		return (0);
	if (strcmp(rs->as_type, "application/x-ndjson") != 0)
		return (0);
	FUZZ_ASSERT(r->r_mbit == HTTP_M_POST && rs->as_status == 200 &&
	    r->r_pathlen == 15 && memcmp(r->r_path, "/v1/keys/import", 15) ==
	    0);
	FUZZ_ASSERT(rs->as_body != NULL && rs->as_bodylen > 0 &&
	    strlen(rs->as_body) == rs->as_bodylen &&
	    rs->as_body[rs->as_bodylen - 1] == '\n');
	for (p = rs->as_body; *p != '\0'; p = nl + 1) {
		nl = strchr(p, '\n');
		o = json_loadb(p, (size_t)(nl - p), JSON_REJECT_DUPLICATES,
		    NULL);
		FUZZ_ASSERT(json_is_object(o));
		line = json_integer_value(json_object_get(o, "line"));
		FUZZ_ASSERT(line > last);
		last = line;
		st = fz_str(o, "status");
		id = fz_str(o, "id");
		e = json_object_get(o, "error");
		FUZZ_ASSERT(st != NULL && (strcmp(st, "created") == 0 ||
		    strcmp(st, "unchanged") == 0 || strcmp(st, "error") == 0));
		FUZZ_ASSERT((e != NULL) == (strcmp(st, "error") == 0));
		FUZZ_ASSERT(e == NULL || (fz_str(e, "code") != NULL &&
		    fz_str(e, "message") != NULL));
		FUZZ_ASSERT(id == NULL ? e != NULL && json_is_null(
		    json_object_get(o, "id")) : secret_valid_id(id,
		    strlen(id)));
		json_decref(o);
	}
	return (1);
}

/*
 * GET /metrics answers Prometheus text, not JSON: 1 if rs is that answer
 * (its type, its length, and a GET of exactly that path), 0 for any other.
 */
static int
fz_metrics(const struct fz_req *r, const struct admin_response *rs)
{
	if (rs->as_status != 200 || rs->as_type == NULL ||
	    strcmp(rs->as_type, FZ_JSON) == 0)
		return (0);
	FUZZ_ASSERT(strcmp(rs->as_type, METRICS_CONTENT_TYPE) == 0);
	FUZZ_ASSERT(r->r_mbit == HTTP_M_GET && r->r_pathlen == 8 &&
	    memcmp(r->r_path, "/metrics", 8) == 0);
	FUZZ_ASSERT(rs->as_body != NULL &&
	    strlen(rs->as_body) == rs->as_bodylen);
	FUZZ_ASSERT(rs->as_challenge == NULL && rs->as_allow == NULL);
	return (1);
}

/* Path "/v1/keys/ID" plus suffix into buf (at least 64 bytes). */
static size_t
fz_keypath(char *buf, size_t len, const char *id, const char *suffix)
{
	int	 n;

	n = snprintf(buf, len, "/v1/keys/%s%s", id, suffix);
	FUZZ_ASSERT(n > 0 && (size_t)n < len);
	return ((size_t)n);
}

/* Send a fixed request with the token, check it, expect status. */
static json_t *
fz_simple(int mbit, const char *path, const char *body, int allowed,
    struct admin_response *rs)
{
	struct fz_req	 r;

	memset(&r, 0, sizeof(r));
	r.r_mbit = mbit;
	r.r_path = path;
	r.r_pathlen = strlen(path);
	r.r_auth = FZ_AUTH;
	r.r_authlen = strlen(FZ_AUTH);
	r.r_body = body;
	r.r_bodylen = body != NULL ? strlen(body) : 0;
	fz_send(&r, rs);
	return (fz_check(rs, allowed));
}

/* The id of the nth key of the store (modulo the count) into id. */
static void
fz_pick(unsigned int n, char *id)
{
	struct ks_key	 k;
	uint32_t	 cur = 0, slot, count;

	count = keystore_count(&fz.f_ks);
	FUZZ_ASSERT(count > 0);
	n %= count;
	for (;;) {
		FUZZ_ASSERT(keystore_next(&fz.f_ks, &cur, &k, &slot) == KS_OK);
		if (n-- == 0)
			break;
	}
	memcpy(id, k.k_id, KS_ID_LEN + 1);
}

/* Keep a secret handed out for the leak check. */
static void
fz_remember(const char *secret)
{
	FUZZ_ASSERT(strlen(secret) <= SECRET_MAX);
	snprintf(fz.f_secrets[fz.f_nsecrets % FZ_NSECRETS], SECRET_MAX + 1,
	    "%s", secret);
	fz.f_nsecrets++;
}

/*
 * A key object o just returned (without "secret" when withsecret): GET
 * must return the same object, and its secret (if any) must verify as
 * this key.
 */
static void
fz_check_key(json_t *o, int withsecret)
{
	struct admin_response	 rs;
	char			 path[64], body[128], secret[SECRET_MAX + 1];
	const char		*id, *s;
	json_t			*g, *v;

	id = fz_str(o, "id");
	FUZZ_ASSERT(id != NULL && secret_valid_id(id, strlen(id)));
	if (withsecret) {
		s = fz_str(o, "secret");
		FUZZ_ASSERT(s != NULL && strlen(s) <= SECRET_MAX);
		memcpy(secret, s, strlen(s) + 1);
		fz_remember(secret);
		FUZZ_ASSERT(json_object_del(o, "secret") == 0);
	} else
		FUZZ_ASSERT(json_object_get(o, "secret") == NULL);
	fz_keypath(path, sizeof(path), id, "");
	g = fz_simple(HTTP_M_GET, path, NULL, S_200, &rs);
	fz_check_no_secret(rs.as_body);
	admin_response_free(&rs);
	FUZZ_ASSERT(json_equal(g, o));
	json_decref(g);
	if (!withsecret)
		return;
	snprintf(body, sizeof(body), "{\"key\":\"%s\"}", secret);
	v = fz_simple(HTTP_M_POST, "/v1/verify", body, S_200, &rs);
	fz_check_no_secret(rs.as_body);
	admin_response_free(&rs);
	FUZZ_ASSERT(fz_str(v, "key_id") != NULL &&
	    strcmp(fz_str(v, "key_id"), id) == 0);
	json_decref(v);
	OPENSSL_cleanse(secret, sizeof(secret));
	OPENSSL_cleanse(body, sizeof(body));
}

/* Load the state directory into a fresh store: it must equal the live one. */
static void
fz_check_journal(void)
{
	struct keystore	 ks;
	struct journal	 j;
	struct ks_key	 a, b;
	char		 err[512];
	uint32_t	 cur = 0, slot, bslot;
	void		*mem;
	int		 rc;

	mem = mmap(NULL, fz.f_size, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	FUZZ_ASSERT(mem != MAP_FAILED);
	keystore_init(&ks, mem, FZ_MAXKEYS, FZ_MAXKEYS, 0x5eed);
	FUZZ_ASSERT(keystore_lock(&ks, getpid(), 1000) == KS_OK);
	FUZZ_ASSERT(journal_init(&j, fz.f_dir, (uid_t)-1, (gid_t)-1) == 0);
	if ((rc = journal_load(&j, &ks, err, sizeof(err))) == -1)
		fprintf(stderr, "journal_load: %s\n", err);
	journal_close(&j);
	FUZZ_ASSERT(rc == 0);
	FUZZ_ASSERT(keystore_count(&ks) == keystore_count(&fz.f_ks));
	FUZZ_ASSERT(ks.ks_hdr->kh_applied == fz.f_ks.ks_hdr->kh_applied);
	while (keystore_next(&fz.f_ks, &cur, &a, &slot) == KS_OK) {
		FUZZ_ASSERT(keystore_find_id(&ks, a.k_id, &b, &bslot) == KS_OK);
		fz_same_key(&a, &b);
	}
	FUZZ_ASSERT(munmap(mem, fz.f_size) == 0);
}

/* Every FZ_CHECK_EVERY inputs: check the journal, compact, check again. */
static void
fz_journal_round(void)
{
	char	 err[512];
	int	 rc;

	fz_check_journal();
	FUZZ_ASSERT(keystore_lock(&fz.f_ks, fz.f_env.ae_pid, 1000) == KS_OK);
	if ((rc = journal_compact(&fz.f_j, &fz.f_ks, err, sizeof(err))) == -1)
		fprintf(stderr, "journal_compact: %s\n", err);
	keystore_unlock(&fz.f_ks, fz.f_env.ae_pid);
	FUZZ_ASSERT(rc == 0);
	FUZZ_ASSERT(journal_size(&fz.f_j) == 0);
	fz_check_journal();
}

/* Create one key with a fixed body (the store must not be left empty). */
static void
fz_create_fixed(void)
{
	struct admin_response	 rs;
	json_t			*o;

	o = fz_simple(HTTP_M_POST, "/v1/keys", "{\"owner\":\"fuzz\","
	    "\"name\":\"seed key\",\"scopes\":[\"read\",\"write\"]}", S_201,
	    &rs);
	admin_response_free(&rs);
	fz_check_key(o, 1);
	json_decref(o);
}

/* Delete keys (through the API) while there are more than FZ_HIGH. */
static void
fz_trim(void)
{
	struct admin_response	 rs;
	char			 id[KS_ID_LEN + 1], path[64];
	json_t			*o;

	if (keystore_count(&fz.f_ks) <= FZ_HIGH)
		return;
	while (keystore_count(&fz.f_ks) > FZ_LOW) {
		fz_pick(0, id);
		fz_keypath(path, sizeof(path), id, "");
		o = fz_simple(HTTP_M_DELETE, path, NULL, S_204, &rs);
		FUZZ_ASSERT(o == NULL);
		admin_response_free(&rs);
		FUZZ_ASSERT(keystore_count(&fz.f_ks) >= FZ_LOW);
	}
}

/*
 * A description of the configuration as server.c makes it, so that
 * GET /v1/gateway fills in health and key sets (with no key sets here):
 * one server with a metrics id in range, one out of range.
 */
static json_t *
fz_gateway(void)
{
	json_t	*o;

	o = json_pack("{s:[{s:s, s:[s], s:s, s:[s], s:[], s:s, s:s}], "
	    "s:[{s:s, s:s, s:[{s:s, s:s, s:i, s:i}, {s:s, s:s, s:i, s:i}], "
	    "s:s}], s:[{s:s, s:[s], s:s}]}",
	    "routes", "name", "api", "methods", "*", "pattern", "^/",
	    "auth", "api_key", "scopes", "rate_limit", "off", "upstream", "app",
	    "upstreams", "name", "app", "type", "http", "servers",
	    "url", "http://127.0.0.1:1/", "server", "127.0.0.1:1", "weight", 1,
	    "_stat", 0,
	    "url", "http://127.0.0.1:2/", "server", "127.0.0.1:2", "weight", 1,
	    "_stat", 1 << 20, "health_check", "/healthz",
	    "jwt_providers", "name", "idp", "issuers", "https://idp.test/",
	    "jwks", "discovery");
	FUZZ_ASSERT(o != NULL);
	return (o);
}

/* Once: the store, the journal, the token, the log level. */
static void
fz_setup(void)
{
	const char	*tmp;
	char		 err[256];

	FUZZ_ASSERT(log_init(LOG_TO_STDERR, LOGLEVEL_ERROR, "fuzz_admin", err,
	    sizeof(err)) == 0);
	secret_json_wipe();	/* jansson frees as in a worker */
	tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(fz.f_dir, sizeof(fz.f_dir), "%s/fuzz_admin.XXXXXX", tmp);
	FUZZ_ASSERT(mkdtemp(fz.f_dir) != NULL);
	FUZZ_ASSERT(journal_init(&fz.f_j, fz.f_dir, (uid_t)-1, (gid_t)-1) ==
	    0);
	atexit(fz_cleanup);
	fz.f_size = keystore_size(FZ_MAXKEYS, FZ_MAXKEYS);
	fz.f_region = mmap(NULL, fz.f_size, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	FUZZ_ASSERT(fz.f_region != MAP_FAILED);
	keystore_init(&fz.f_ks, fz.f_region, FZ_MAXKEYS, FZ_MAXKEYS,
	    0xf00d);
	secret_digest(FZ_TOKEN, strlen(FZ_TOKEN), fz.f_token);
	fz.f_env.ae_ks = &fz.f_ks;
	fz.f_env.ae_journal = &fz.f_j;
	fz.f_env.ae_pid = getpid();
	fz.f_env.ae_token_digest = fz.f_token;
	fz.f_env.ae_rate[0] = 10;
	fz.f_env.ae_rate[1] = 50;
	fz.f_env.ae_rate[2] = 200;
	fz.f_env.ae_version = PACKAGE_VERSION;
	fz_stats();
	fz.f_env.ae_stats = fz.f_stats;
	fz.f_env.ae_gateway = fz.f_gateway = fz_gateway();
	fz.f_now = FZ_NOW0;
	fz.f_init = 1;
}

/* Would admin_auth() accept Authorization value a? */
static int
fz_auth_ok(const char *a, size_t n)
{
	if (n < 7 || strncasecmp(a, "bearer", 6) != 0 || a[6] != ' ')
		return (0);
	for (a += 7, n -= 7; n > 0 && *a == ' '; a++, n--)
		;
	return (n == strlen(FZ_TOKEN) && memcmp(a, FZ_TOKEN, n) == 0);
}

/*
 * Mode 5: "PATH[?QUERY]\nBODY"; "@" at the start of PATH stands for
 * "/v1/keys/{id}".  Fills r (pointing into buf or p), returns the
 * statuses allowed.
 */
static int
fz_free_form(struct fz_req *r, const char *p, size_t n, const char *id,
    char *buf, size_t buflen)
{
	const char	*nl, *q;
	size_t		 plen, off;

	nl = memchr(p, '\n', n);
	plen = nl != NULL ? (size_t)(nl - p) : n;
	if (nl != NULL) {
		r->r_body = nl + 1;
		r->r_bodylen = n - plen - 1;
	}
	if ((q = memchr(p, '?', plen)) != NULL) {
		r->r_query = q + 1;
		r->r_querylen = plen - (size_t)(q - p) - 1;
		plen = (size_t)(q - p);
	}
	r->r_path = p;
	r->r_pathlen = plen;
	if (plen > 0 && p[0] == '@') {
		off = fz_keypath(buf, buflen, id, "");
		FUZZ_ASSERT(off + plen - 1 <= buflen);
		memcpy(buf + off, p + 1, plen - 1);
		r->r_path = buf;
		r->r_pathlen = off + plen - 1;
	}
	return (S_200 | S_201 | S_204 | S_400 | S_404 | S_405 | S_409 |
	    S_422);
}

/* Build the request of mode (first byte) from the rest of the input. */
static int
fz_build(struct fz_req *r, uint8_t sel, const char *p, size_t n,
    const char *id, char *buf, size_t buflen)
{
	memset(r, 0, sizeof(*r));
	r->r_auth = FZ_AUTH;
	r->r_authlen = strlen(FZ_AUTH);
	r->r_body = p;
	r->r_bodylen = n;
	r->r_mbit = HTTP_M_POST;
	switch (sel % 7) {
	case 0:
		r->r_path = "/v1/keys";
		r->r_pathlen = strlen(r->r_path);
		return (S_201 | S_400 | S_409 | S_422);
	case 1:
		r->r_mbit = HTTP_M_PATCH;
		r->r_pathlen = fz_keypath(buf, buflen, id, "");
		r->r_path = buf;
		return (S_200 | S_400 | S_422);
	case 2:
		r->r_pathlen = fz_keypath(buf, buflen, id, "/regenerate");
		r->r_path = buf;
		return (S_200 | S_400 | S_422);
	case 3:
		r->r_path = "/v1/verify";
		r->r_pathlen = strlen(r->r_path);
		return (S_200 | S_400 | S_422);
	case 4:
		r->r_mbit = HTTP_M_GET;
		r->r_path = "/v1/keys";
		r->r_pathlen = strlen(r->r_path);
		r->r_body = NULL;
		r->r_bodylen = 0;
		r->r_query = p;
		r->r_querylen = n;
		return (S_200 | S_422);
	case 5:
		r->r_mbit = fz_methods[(sel / 7) % 8];
		r->r_body = NULL;
		r->r_bodylen = 0;
		return (fz_free_form(r, p, n, id, buf, buflen));
	default:
		r->r_mbit = HTTP_M_GET;
		r->r_path = "/v1/keys";
		r->r_pathlen = strlen(r->r_path);
		r->r_body = NULL;
		r->r_bodylen = 0;
		r->r_auth = p;
		r->r_authlen = n;
		return (fz_auth_ok(p, n) ? S_200 : S_401);
	}
}

/* Checks that depend on what was asked and what was answered. */
static void
fz_check_answer(uint8_t sel, json_t *o,
    const struct admin_response *rs, uint64_t applied, off_t jsize)
{
	int	 mode = sel % 7;

	/* A new secret is remembered only after this check. */
	if (rs->as_body != NULL)
		fz_check_no_secret(rs->as_body);
	if (rs->as_status >= 400 || (rs->as_status == 200 && (mode == 3 ||
	    mode == 4 || mode == 6))) {
		/* Nothing was written. */
		FUZZ_ASSERT(fz.f_ks.ks_hdr->kh_applied == applied);
		FUZZ_ASSERT(journal_size(&fz.f_j) == jsize);
	}
	if (o == NULL)
		return;
	if (mode == 0 && rs->as_status == 201)
		/* No secret when the body brought one (or its digest). */
		fz_check_key(o, json_object_get(o, "secret") != NULL);
	else if (mode == 2 && rs->as_status == 200)
		fz_check_key(o, 1);
	else if (mode == 1 && rs->as_status == 200)
		fz_check_key(o, 0);
	else if (mode == 3 && rs->as_status == 200) {
		FUZZ_ASSERT(json_is_boolean(json_object_get(o, "valid")));
		if (json_is_true(json_object_get(o, "valid")))
			FUZZ_ASSERT(fz_str(o, "key_id") != NULL);
	} else if ((mode == 4 || mode == 6) && rs->as_status == 200) {
		FUZZ_ASSERT(json_is_array(json_object_get(o, "keys")));
		FUZZ_ASSERT(json_array_size(json_object_get(o, "keys")) <=
		    keystore_count(&fz.f_ks));
	}
}

/* A gateway description: every server has a health, no metrics id. */
static void
fz_check_gateway(json_t *o)
{
	json_t	*u, *v;
	size_t	 i, k;

	json_array_foreach(json_object_get(o, "upstreams"), i, u)
		json_array_foreach(json_object_get(u, "servers"), k, v) {
			FUZZ_ASSERT(json_object_get(v, "_stat") == NULL);
			FUZZ_ASSERT(json_is_string(json_object_get(v,
			    "health")));
		}
}

/* One input: one request, then every check. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct admin_response	 rs;
	struct fz_req		 r;
	char			 id[KS_ID_LEN + 1], *buf;
	size_t			 buflen;
	uint64_t		 applied;
	off_t			 jsize;
	json_t			*o;
	int			 allowed;

	if (size == 0)
		return (0);
	if (!fz.f_init)
		fz_setup();
	fz.f_now += 1000;
	if (++fz.f_runs % FZ_CHECK_EVERY == 0)
		fz_journal_round();
	fz_trim();
	if (keystore_count(&fz.f_ks) == 0)
		fz_create_fixed();
	fz_pick(data[0] / 8, id);
	buflen = size + 64;
	if ((buf = malloc(buflen)) == NULL)
		return (0);
	allowed = fz_build(&r, data[0], (const char *)data + 1, size - 1, id,
	    buf, buflen);
	applied = fz.f_ks.ks_hdr->kh_applied;
	jsize = journal_size(&fz.f_j);
	fz_send(&r, &rs);
	if (fz_import(&r, &rs))
		fz_check_no_secret(rs.as_body);
	else if (fz_metrics(&r, &rs)) {
		FUZZ_ASSERT(fz.f_ks.ks_hdr->kh_applied == applied &&
		    journal_size(&fz.f_j) == jsize);
		fz_check_no_secret(rs.as_body);
	} else {
		o = fz_check(&rs, allowed);
		fz_check_answer(data[0], o, &rs, applied, jsize);
		fz_check_gateway(o);
		json_decref(o);
	}
	admin_response_free(&rs);
	free(buf);
	return (0);
}
