/*
 * Unit tests for the admin API (admin.c), run against the real key store,
 * journal, secrets and auth modules: a key store region in a MAP_SHARED
 * mapping and a journal in a temporary directory.
 *
 * Every response goes through req(), which checks what holds for all of
 * them: JSON with the right Content-Type (or no body for 204), the access
 * log code, WWW-Authenticate only on 401, Allow only on 405, no secret
 * handed out earlier anywhere in the body, "secret" only from create and
 * regenerate, and conformance with the compiled-in OpenAPI document (the
 * schema of the operation's response for that status, walked by a small
 * JSON Schema checker).
 */

#include <sys/types.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "slurp.h"

#include "admin.h"
#include "ui.h"
#include "auth.h"
#include "config.h"
#include "http.h"
#include "idem.h"
#include "journal.h"
#include "jwks.h"
#include "keystore.h"
#include "log.h"
#include "ratelimit.h"
#include "metrics.h"
#include "secret.h"
#include "stats.h"
#include "util.h"

#define T_NOW		1795000000000LL		/* 2026-11-18T11:06:40Z */
#define T_NOW_TEXT	"2026-11-18T11:06:40.000Z"
#define T_TOKEN		"t0ken-for-the-admin-api"
#define T_AUTH		"Bearer " T_TOKEN
#define T_MONO		5000000123LL		/* ms, aq_mono of requests */
#define T_MAXKEYS	64
#define T_SECRETS	256

struct fx {
	char			 dir[64];
	void			*region;
	size_t			 size;
	struct keystore		 ks;
	struct journal		 j;
	uint8_t			 token[KS_DIGEST_LEN];
	struct admin_env	 env;
	const char		*auth;		/* Authorization, NULL: none */
	int64_t			 mono;		/* aq_mono of requests */
	unsigned char		 ip[16];	/* aq_ip of requests */
	size_t			 iplen;		/* 0: none */
	const char		*client;	/* aq_client */
	struct admin_response	 rs;		/* the last answer */
	json_t			*body;		/* ... parsed */
	char			 secrets[T_SECRETS][SECRET_MAX + 1];
	int			 nsecrets;
	int			 byo;		/* the request brings a secret */
	const char		*idem;		/* Idempotency-Key, NULL: none */
	int			 replay;	/* a known secret may come back */
	struct idem_entry	*itable;	/* env.ae_idem */
	struct ui_table		 ui;		/* env.ae_ui, when set */
	const char		*cookie;	/* Cookie, NULL: none */
	const char		*csrf;		/* X-CSRF-Token, NULL: none */
	const char		*inm;		/* If-None-Match, NULL: none */
	int			 tls;		/* aq_tls */
};

static json_t	*doc;	/* admin_openapi_json, parsed */
static int	 quiet;	/* the walker does not print what it finds */

/* Say what the walker found, unless it is being tested itself. */
#define say(...)	do { if (!quiet) print_error(__VA_ARGS__); } while (0)

/* --- a small JSON Schema walker for the OpenAPI document --------------- */

/* The value at JSON pointer ref ("#/a/b") in doc, or NULL. */
static json_t *
pointer(const char *ref)
{
	char	 buf[256], *p, *tok;
	json_t	*v = doc;

	if (strncmp(ref, "#/", 2) != 0 ||
	    (size_t)snprintf(buf, sizeof(buf), "%s", ref + 2) >= sizeof(buf))
		return (NULL);
	for (p = buf; v != NULL && (tok = strsep(&p, "/")) != NULL;)
		v = json_object_get(v, tok);
	return (v);
}

/* s with $refs followed. */
static json_t *
resolve(json_t *s)
{
	json_t	*r;
	int	 n;

	for (n = 0; s != NULL && (r = json_object_get(s, "$ref")) != NULL;
	    n++) {
		if (n == 16 || !json_is_string(r))
			return (NULL);
		s = pointer(json_string_value(r));
	}
	return (s);
}

/* Is v of the JSON Schema type named t? */
static int
type_is(json_t *v, const char *t)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return (strcmp(t, "object") == 0);
	case JSON_ARRAY:
		return (strcmp(t, "array") == 0);
	case JSON_STRING:
		return (strcmp(t, "string") == 0);
	case JSON_INTEGER:
		return (strcmp(t, "integer") == 0 || strcmp(t, "number") == 0);
	case JSON_REAL:
		return (strcmp(t, "number") == 0);
	case JSON_TRUE:
	case JSON_FALSE:
		return (strcmp(t, "boolean") == 0);
	case JSON_NULL:
		return (strcmp(t, "null") == 0);
	}
	return (0);
}

/* Does v match "type" (a name or a list of names) of schema s? */
static int
type_ok(json_t *s, json_t *v)
{
	json_t	*t = json_object_get(s, "type"), *e;
	size_t	 i;

	if (t == NULL)
		return (1);
	if (json_is_string(t))
		return (type_is(v, json_string_value(t)));
	json_array_foreach(t, i, e)
		if (json_is_string(e) && type_is(v, json_string_value(e)))
			return (1);
	return (0);
}

/* Is s exactly the shape of util_rfc3339_ms()? */
static int
is_time(const char *s)
{
	static const char	 shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
	size_t			 i;

	if (strlen(s) != strlen(shape))
		return (0);
	for (i = 0; shape[i] != '\0'; i++)
		if (shape[i] == 'd' ? s[i] < '0' || s[i] > '9' :
		    s[i] != shape[i])
			return (0);
	return (1);
}

static int	 schema_check(json_t *, json_t *, const char *);

/* Object rules of schema s for v: required, properties, additional. */
static int
schema_object(json_t *s, json_t *v, const char *where)
{
	json_t		*props = json_object_get(s, "properties");
	json_t		*req = json_object_get(s, "required"), *e, *sub;
	json_t		*add = json_object_get(s, "additionalProperties");
	const char	*name;
	char		 w[256];
	size_t		 i;
	int		 bad = 0;

	json_array_foreach(req, i, e)
		if (json_object_get(v, json_string_value(e)) == NULL) {
			say("%s: \"%s\" is missing\n", where,
			    json_string_value(e));
			bad++;
		}
	json_object_foreach(v, name, e) {
		snprintf(w, sizeof(w), "%s.%s", where, name);
		if ((sub = json_object_get(props, name)) != NULL)
			bad += schema_check(sub, e, w);
		else if (json_is_false(add)) {
			say("%s: not in the schema\n", w);
			bad++;
		}
	}
	return (bad);
}

/*
 * Errors found checking v against schema s: type (one or a list), enum,
 * format date-time (our exact shape), properties, required,
 * additionalProperties false, items, oneOf and $ref.  Each is printed.
 */
static int
schema_check(json_t *s, json_t *v, const char *where)
{
	json_t	*en, *items, *e;
	char	 w[256];
	size_t	 i;
	int	 bad = 0, found = 0;

	if ((s = resolve(s)) == NULL) {
		say("%s: unresolvable $ref\n", where);
		return (1);
	}
	if ((items = json_object_get(s, "oneOf")) != NULL) {
		/* Exactly one branch must match, checked quietly. */
		quiet++;
		json_array_foreach(items, i, e)
			found += schema_check(e, v, where) == 0;
		quiet--;
		if (found != 1) {
			say("%s: matches %d of oneOf, not 1\n", where, found);
			return (1);
		}
		return (0);
	}
	if (!type_ok(s, v)) {
		say("%s: wrong JSON type\n", where);
		return (1);
	}
	if ((en = json_object_get(s, "enum")) != NULL) {
		json_array_foreach(en, i, e)
			found |= json_equal(e, v);
		if (!found) {
			say("%s: not one of the enum\n", where);
			bad++;
		}
	}
	if (json_is_string(v) && json_object_get(s, "format") != NULL &&
	    strcmp(json_string_value(json_object_get(s, "format")),
	    "date-time") == 0 && !is_time(json_string_value(v))) {
		say("%s: \"%s\" is not our date-time\n", where,
		    json_string_value(v));
		bad++;
	}
	if (json_is_object(v))
		bad += schema_object(s, v, where);
	if (json_is_array(v) && (items = json_object_get(s, "items")) != NULL)
		json_array_foreach(v, i, e) {
			snprintf(w, sizeof(w), "%s[%zu]", where, i);
			bad += schema_check(items, e, w);
		}
	return (bad);
}

/* The OpenAPI path template of path ("/v1/keys/{id}/usage"). */
static const char *
template_of(const char *path, char *buf, size_t len)
{
	const char	*id, *slash;

	if (strncmp(path, "/v1/keys/", 9) != 0 ||
	    strcmp(path, "/v1/keys/import") == 0)
		return (path);
	id = path + 9;
	if ((slash = strchr(id, '/')) == NULL)
		return ("/v1/keys/{id}");
	snprintf(buf, len, "/v1/keys/{id}%s", slash);
	return (buf);
}

/* OpenAPI name of a method bit. */
static const char *
method_name(int mbit)
{
	switch (mbit) {
	case HTTP_M_GET:
		return ("get");
	case HTTP_M_POST:
		return ("post");
	case HTTP_M_PATCH:
		return ("patch");
	case HTTP_M_DELETE:
		return ("delete");
	case HTTP_M_PUT:
		return ("put");
	case HTTP_M_HEAD:
		return ("head");
	}
	return ("other");
}

/*
 * Check the answer to mbit on path against the document: the operation's
 * response for the status (no "default" fallback), its schema; an unknown
 * path or method answers with the Error schema.
 */
static void
conform(struct fx *f, int mbit, const char *path)
{
	char		 tbuf[128], sbuf[16];
	json_t		*op, *r, *schema;
	int		 st = f->rs.as_status;

	op = json_object_get(json_object_get(json_object_get(doc, "paths"),
	    template_of(path, tbuf, sizeof(tbuf))), method_name(mbit));
	snprintf(sbuf, sizeof(sbuf), "%d", st);
	if (op == NULL || st == 405) {
		assert_true(st == 404 || st == 405 || st == 401 || st == 429);
		schema = pointer("#/components/schemas/Error");
	} else {
		r = resolve(json_object_get(json_object_get(op, "responses"),
		    sbuf));
		if (r == NULL)
			fail_msg("%s %s: status %d is not documented",
			    method_name(mbit), path, st);
		schema = json_object_get(json_object_get(json_object_get(r,
		    "content"), "application/json"), "schema");
		if (st == 204) {
			assert_null(schema);
			return;
		}
		assert_non_null(schema);
	}
	if (schema_check(schema, f->body, path) != 0)
		fail_msg("%s %s (%d) does not match the OpenAPI document",
		    method_name(mbit), path, st);
}

/* --- fixture ------------------------------------------------------------ */

/* A fresh store of max keys, journal dir, token and error log. */
static int
fx_setup_max(void **state, uint32_t max)
{
	struct fx	*f;
	char		 err[256], path[128];

	assert_non_null(f = calloc(1, sizeof(*f)));
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_admin.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->size = keystore_size(max, max);
	f->region = mmap(NULL, f->size, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(f->region != MAP_FAILED);
	keystore_init(&f->ks, f->region, max, max, 0x5eed);
	assert_int_equal(journal_init(&f->j, f->dir, (uid_t)-1, (gid_t)-1),
	    0);
	secret_digest(T_TOKEN, strlen(T_TOKEN), f->token);
	f->env.ae_ks = &f->ks;
	f->env.ae_journal = &f->j;
	f->env.ae_pid = getpid();
	f->env.ae_token_digest = f->token;
	f->env.ae_rate[0] = 20;
	f->env.ae_rate[1] = 200;
	f->env.ae_rate[2] = 1000;
	f->env.ae_version = "9.8.7";
	assert_non_null(f->itable = calloc(1, IDEM_TABLE_SIZE));
	f->env.ae_idem = f->itable;
	f->auth = T_AUTH;
	f->mono = T_MONO;
	quiet = 0;
	snprintf(path, sizeof(path), "%s/error.log", f->dir);
	assert_int_equal(log_init(path, LOGLEVEL_DEBUG, "test_admin", err,
	    sizeof(err)), 0);
	*state = f;
	return (0);
}

static int
fx_setup(void **state)
{
	return (fx_setup_max(state, T_MAXKEYS));
}

static int
fx_setup_tiny(void **state)
{
	return (fx_setup_max(state, 3));
}

/* Contents of dir/name (NUL-terminated, malloc'ed), or NULL. */
static char *
slurp(const struct fx *f, const char *name)
{
	return (test_slurp(f->dir, name));
}

/*
 * After each test: no secret and not the token in the error log or the
 * journal; then remove everything.
 */
static int
fx_teardown(void **state)
{
	struct fx	*f = *state;
	const char	*files[] = { "error.log", JOURNAL_FILE, NULL };
	char		*text, path[384], err[64];
	DIR		*d;
	struct dirent	*de;
	int		 i, k;

	log_init(LOG_TO_STDERR, LOGLEVEL_WARN, "test_admin", err, sizeof(err));
	for (i = 0; files[i] != NULL; i++) {
		if ((text = slurp(f, files[i])) == NULL)
			continue;
		assert_null(strstr(text, T_TOKEN));
		for (k = 0; k < f->nsecrets; k++)
			assert_null(strstr(text, f->secrets[k]));
		free(text);
	}
	admin_response_free(&f->rs);
	json_decref(f->body);
	journal_close(&f->j);
	assert_non_null(d = opendir(f->dir));
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.') {
			snprintf(path, sizeof(path), "%s/%s", f->dir,
			    de->d_name);
			unlink(path);
		}
	closedir(d);
	rmdir(f->dir);
	munmap(f->region, f->size);
	free(f->itable);
	free(f);
	return (0);
}

/*
 * An NDJSON answer (POST /v1/keys/import): every line parses and matches
 * the document's x-ndjson schema; f->body becomes the array of lines.
 */
static void
check_ndjson(struct fx *f, int mbit, const char *path)
{
	struct admin_response	*rs = &f->rs;
	json_t			*schema, *line;
	const char		*p, *nl;
	char			 tbuf[128], sbuf[16];

	snprintf(sbuf, sizeof(sbuf), "%d", rs->as_status);
	schema = json_object_get(json_object_get(json_object_get(
	    resolve(json_object_get(json_object_get(json_object_get(
	    json_object_get(json_object_get(doc, "paths"), template_of(path,
	    tbuf, sizeof(tbuf))), method_name(mbit)), "responses"), sbuf)),
	    "content"), "application/x-ndjson"), "schema");
	assert_non_null(schema);
	assert_non_null(f->body = json_array());
	assert_true(rs->as_bodylen > 0 && rs->as_body[rs->as_bodylen - 1] ==
	    '\n');
	for (p = rs->as_body; *p != '\0'; p = nl + 1) {
		assert_non_null(nl = strchr(p, '\n'));
		assert_non_null(line = json_loadb(p, (size_t)(nl - p), 0,
		    NULL));
		if (schema_check(schema, line, path) != 0)
			fail_msg("%.*s does not match the OpenAPI document",
			    (int)(nl - p), p);
		json_array_append_new(f->body, line);
	}
	assert_null(rs->as_code);
}

/* Checks every answer must pass, then remember a new secret. */
static void
check_answer(struct fx *f, int mbit, const char *path)
{
	struct admin_response	*rs = &f->rs;
	json_t			*sec;
	int			 k, gives;

	for (k = 0; k < f->nsecrets && !f->replay; k++)
		assert_true(rs->as_body == NULL ||
		    strstr(rs->as_body, f->secrets[k]) == NULL);
	assert_true((rs->as_status == 401) == (rs->as_challenge != NULL));
	if (rs->as_challenge != NULL)
		assert_string_equal(rs->as_challenge,
		    "Bearer realm=\"keygate-admin\"");
	assert_true((rs->as_status == 405) == (rs->as_allow != NULL));
	if (rs->as_status == 204) {
		assert_null(rs->as_body);
		assert_int_equal(rs->as_bodylen, 0);
		conform(f, mbit, path);
		return;
	}
	assert_non_null(rs->as_body);
	if (strcmp(rs->as_type, "application/x-ndjson") == 0) {
		assert_int_equal(rs->as_status, 200);
		check_ndjson(f, mbit, path);
		return;
	}
	assert_string_equal(rs->as_type, "application/json");
	assert_int_equal(strlen(rs->as_body), rs->as_bodylen);
	assert_non_null(f->body = json_loadb(rs->as_body, rs->as_bodylen, 0,
	    NULL));
	if (rs->as_status >= 400)
		assert_string_equal(rs->as_code, json_string_value(
		    json_object_get(f->body, "error")));
	else
		assert_null(rs->as_code);
	conform(f, mbit, path);
	/* Only create and regenerate show a secret. */
	gives = (mbit == HTTP_M_POST && strcmp(path, "/v1/keys") == 0 &&
	    rs->as_status == 201 && !f->byo) || (mbit == HTTP_M_POST &&
	    strstr(path, "/regenerate") != NULL && rs->as_status == 200);
	sec = json_object_get(f->body, "secret");
	assert_true(gives == (sec != NULL));
	if (sec != NULL && !f->replay) {
		assert_true(f->nsecrets < T_SECRETS);
		snprintf(f->secrets[f->nsecrets++], SECRET_MAX + 1, "%s",
		    json_string_value(sec));
	}
}

/*
 * Send method mbit to target with body at now, with the fixture's headers
 * and address; the answer in f->rs, unchecked.
 */
static void
send_at(struct fx *f, int mbit, const char *target, const char *body,
    int64_t now)
{
	struct admin_request	 rq;
	const char		*q = strchr(target, '?');

	admin_response_free(&f->rs);
	json_decref(f->body);
	f->body = NULL;
	memset(&rq, 0, sizeof(rq));
	rq.aq_mbit = mbit;
	rq.aq_path = target;
	rq.aq_pathlen = q != NULL ? (size_t)(q - target) : strlen(target);
	rq.aq_query = q != NULL ? q + 1 : NULL;
	rq.aq_querylen = q != NULL ? strlen(q + 1) : 0;
#define FX_H(p, l, v)	do { p = v; l = v != NULL ? strlen(v) : 0; } while (0)
	FX_H(rq.aq_auth, rq.aq_authlen, f->auth);
	FX_H(rq.aq_idem, rq.aq_idemlen, f->idem);
	FX_H(rq.aq_cookie, rq.aq_cookielen, f->cookie);
	FX_H(rq.aq_csrf, rq.aq_csrflen, f->csrf);
	FX_H(rq.aq_inm, rq.aq_inmlen, f->inm);
	FX_H(rq.aq_body, rq.aq_bodylen, body);
#undef FX_H
	rq.aq_tls = f->tls;
	rq.aq_now = now;
	rq.aq_mono = f->mono;
	rq.aq_ip = f->iplen > 0 ? f->ip : NULL;
	rq.aq_iplen = f->iplen;
	rq.aq_client = f->client;
	admin_handle(&f->env, &rq, &f->rs);
}

/*
 * Send method mbit to target ("/path?query") with body (NULL: none) at
 * time now; the parsed answer (NULL for 204), valid until the next call.
 */
static json_t *
req_at(struct fx *f, int mbit, const char *target, const char *body,
    int64_t now)
{
	char	 path[256];

	f->byo = body != NULL && (strstr(body, "\"secret\"") != NULL ||
	    strstr(body, "\"secret_sha256\"") != NULL);
	send_at(f, mbit, target, body, now);
	snprintf(path, sizeof(path), "%.*s", (int)strcspn(target, "?"), target);
	check_answer(f, mbit, path);
	return (f->body);
}

static json_t *
req(struct fx *f, int mbit, const char *target, const char *body)
{
	return (req_at(f, mbit, target, body, T_NOW));
}

/* Member name of o as a string ("" for a missing or non-string one). */
static const char *
str(json_t *o, const char *name)
{
	const char	*s = json_string_value(json_object_get(o, name));

	return (s != NULL ? s : "");
}

/* Assert the last answer was an error status/code (and field, if given). */
static void
expect_error(struct fx *f, int status, const char *code, const char *field)
{
	if (f->rs.as_status != status || strcmp(str(f->body, "error"), code))
		fail_msg("expected %d %s, got %d %s", status, code,
		    f->rs.as_status, f->rs.as_body);
	assert_true(strlen(str(f->body, "message")) > 0);
	if (field != NULL)
		assert_string_equal(str(f->body, "field"), field);
	else
		assert_null(json_object_get(f->body, "field"));
}

/* Create a key from body (201 expected); its id into id, secret into sec. */
static json_t *
create(struct fx *f, const char *body, char *id, char *sec)
{
	json_t	*k = req(f, HTTP_M_POST, "/v1/keys", body);

	if (f->rs.as_status != 201)
		fail_msg("create %s: %d %s", body, f->rs.as_status,
		    f->rs.as_body);
	if (id != NULL)
		snprintf(id, KS_ID_LEN + 1, "%s", str(k, "id"));
	if (sec != NULL)
		snprintf(sec, SECRET_MAX + 1, "%s", str(k, "secret"));
	return (k);
}

/* Target "fmt" with the id put in place of its "%s". */
static const char *
path_for(char *buf, size_t len, const char *fmt, const char *id)
{
	const char	*p = strstr(fmt, "%s");

	assert_non_null(p);
	snprintf(buf, len, "%.*s%s%s", (int)(p - fmt), fmt, id, p + 2);
	return (buf);
}

/* POST /v1/verify of secret (app: NULL for none); the answer. */
static json_t *
verify_at(struct fx *f, const char *secret, const char *app, int64_t now)
{
	char	 body[256];

	if (app != NULL)
		snprintf(body, sizeof(body), "{\"key\":\"%s\",\"app_id\":"
		    "\"%s\"}", secret, app);
	else
		snprintf(body, sizeof(body), "{\"key\":\"%s\"}", secret);
	req_at(f, HTTP_M_POST, "/v1/verify", body, now);
	assert_int_equal(f->rs.as_status, 200);
	return (f->body);
}

/* Is c base62? */
static int
is_alnum(char c)
{
	return ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z'));
}

/* Lines in the journal (0 if it does not exist). */
static int
journal_lines(struct fx *f)
{
	char	*text = slurp(f, JOURNAL_FILE), *p;
	int	 n = 0;

	if (text == NULL)
		return (0);
	for (p = text; (p = strchr(p, '\n')) != NULL; p++)
		n++;
	free(text);
	return (n);
}

/*
 * Load the journal into a fresh store, as the master does at start, and
 * check that it holds exactly the keys of the live store, field by field.
 */
static void
check_replay(struct fx *f)
{
	struct keystore	 ks2;
	struct journal	 j2;
	struct ks_key	 a, b;
	uint32_t	 cur = 0, slot, slot2, max = f->ks.ks_hdr->kh_max_keys;
	void		*r2;
	char		 err[256];

	r2 = mmap(NULL, f->size, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(r2 != MAP_FAILED);
	keystore_init(&ks2, r2, max, max, 0x5eed);
	assert_int_equal(journal_init(&j2, f->dir, (uid_t)-1, (gid_t)-1), 0);
	assert_int_equal(keystore_lock(&ks2, getpid(), 0), KS_OK);
	if (journal_load(&j2, &ks2, err, sizeof(err)) != 0)
		fail_msg("journal_load: %s", err);
	keystore_unlock(&ks2, getpid());
	assert_int_equal(keystore_count(&ks2), keystore_count(&f->ks));
	assert_int_equal(ks2.ks_hdr->kh_applied, f->ks.ks_hdr->kh_applied);
	while (keystore_next(&f->ks, &cur, &a, &slot) == KS_OK) {
		assert_int_equal(keystore_find_id(&ks2, a.k_id, &b, &slot2),
		    KS_OK);
		assert_memory_equal(a.k_digest, b.k_digest, KS_DIGEST_LEN);
		assert_int_equal(a.k_grace_until, b.k_grace_until);
		if (a.k_grace_until != 0)
			assert_memory_equal(a.k_old_digest, b.k_old_digest,
			    KS_DIGEST_LEN);
		assert_int_equal(a.k_created, b.k_created);
		assert_int_equal(a.k_updated, b.k_updated);
		assert_int_equal(a.k_expires, b.k_expires);
		assert_int_equal(a.k_flags, b.k_flags);
		assert_memory_equal(a.k_rate, b.k_rate, sizeof(a.k_rate));
		assert_string_equal(a.k_name, b.k_name);
		assert_string_equal(a.k_owner, b.k_owner);
		assert_string_equal(a.k_app, b.k_app);
		assert_string_equal(a.k_prefix, b.k_prefix);
		assert_string_equal(a.k_hint, b.k_hint);
		assert_string_equal(a.k_scopes, b.k_scopes);
	}
	journal_close(&j2);
	munmap(r2, f->size);
}

/* --- tests ------------------------------------------------------------ */

/* The document lists exactly the endpoints and methods the server has. */
static void
test_openapi_document(void **state)
{
	static const struct {
		const char	*path;
		const char	*methods[4];
	} eps[] = {
		{ "/v1/health", { "get" } },
		{ "/v1/status", { "get" } },
		{ "/v1/cluster", { "get" } },
		{ "/v1/gateway", { "get" } },
		{ "/v1/openapi.json", { "get" } },
		{ "/v1/keys", { "get", "post" } },
		{ "/v1/keys/import", { "post" } },
		{ "/v1/keys/{id}", { "get", "patch", "delete" } },
		{ "/v1/keys/{id}/regenerate", { "post" } },
		{ "/v1/keys/{id}/usage", { "get" } },
		{ "/v1/verify", { "post" } },
		{ "/metrics", { "get" } },
		{ "/ui/api/login", { "post" } },
		{ "/ui/api/session", { "get" } },
		{ "/ui/api/logout", { "post" } },
	};
	struct fx	*f = *state;
	json_t		*paths, *item, *v;
	const char	*name;
	size_t		 i, j, n;

	assert_string_equal(str(doc, "openapi"), "3.1.0");
	assert_non_null(pointer("#/components/securitySchemes/bearer"));
	assert_string_equal(str(pointer("#/components/securitySchemes/bearer"),
	    "scheme"), "bearer");
	paths = json_object_get(doc, "paths");
	assert_int_equal(json_object_size(paths), sizeof(eps) / sizeof(eps[0]));
	for (i = 0; i < sizeof(eps) / sizeof(eps[0]); i++) {
		assert_non_null(item = json_object_get(paths, eps[i].path));
		for (j = 0; eps[i].methods[j] != NULL; j++)
			assert_non_null(json_object_get(item,
			    eps[i].methods[j]));
		n = 0;
		json_object_foreach(item, name, v)
			n += strcmp(name, "parameters") != 0;
		assert_int_equal(n, j);
	}
	/* Served as is, with a token. */
	req(f, HTTP_M_GET, "/v1/openapi.json", NULL);
	assert_int_equal(f->rs.as_status, 200);
	assert_string_equal(f->rs.as_body, admin_openapi_json);
	f->auth = NULL;
	req(f, HTTP_M_GET, "/v1/openapi.json", NULL);
	expect_error(f, 401, "unauthorized", NULL);
}

/* The walker used for conformance catches what it must. */
static void
test_schema_walker(void **state)
{
	struct fx	*f = *state;
	json_t		*key, *k2, *schema;

	schema = pointer("#/components/schemas/Key");
	key = json_deep_copy(create(f, "{\"owner\":\"o\"}", NULL, NULL));
	quiet = 1;
	json_object_del(key, "secret");
	assert_int_equal(schema_check(schema, key, "key"), 0);
	assert_true(schema_check(pointer("#/components/schemas/KeyWithSecret"),
	    key, "key") > 0);
	k2 = json_deep_copy(key);
	json_object_set_new(k2, "extra", json_true());
	assert_true(schema_check(schema, k2, "extra") > 0);
	json_decref(k2);
	k2 = json_deep_copy(key);
	json_object_del(k2, "hint");
	assert_true(schema_check(schema, k2, "missing") > 0);
	json_object_set_new(k2, "hint", json_integer(1));
	assert_true(schema_check(schema, k2, "type") > 0);
	json_decref(k2);
	k2 = json_deep_copy(key);
	json_object_set_new(k2, "scopes", json_pack("[i]", 1));
	assert_true(schema_check(schema, k2, "items") > 0);
	json_object_set_new(k2, "scopes", json_array());
	json_object_set_new(k2, "rate_limit", json_pack("{s:i}", "per_1s", 1));
	assert_true(schema_check(schema, k2, "rate") > 0);
	json_object_set_new(k2, "rate_limit", json_pack("{s:i,s:n,s:n}",
	    "per_1s", 1, "per_10s", "per_60s"));
	assert_int_equal(schema_check(schema, k2, "rate"), 0);
	json_object_set_new(k2, "created_at", json_string("2026-11-18"));
	assert_true(schema_check(schema, k2, "time") > 0);
	quiet = 0;
	json_decref(k2);
	json_decref(key);
}

/* Health needs no token and counts keys; other methods get 405. */
static void
test_health(void **state)
{
	struct fx	*f = *state;
	json_t		*h;

	f->auth = NULL;
	h = req(f, HTTP_M_GET, "/v1/health", NULL);
	assert_int_equal(f->rs.as_status, 200);
	assert_string_equal(str(h, "status"), "ok");
	assert_string_equal(str(h, "version"), "9.8.7");
	assert_int_equal(json_integer_value(json_object_get(h, "keys")), 0);
	assert_int_equal(json_integer_value(json_object_get(h, "max_keys")),
	    T_MAXKEYS);
	req(f, HTTP_M_POST, "/v1/health", "{}");
	expect_error(f, 405, "method_not_allowed", NULL);
	assert_string_equal(f->rs.as_allow, "GET");
	f->auth = T_AUTH;
	create(f, "{\"owner\":\"o\"}", NULL, NULL);
	h = req(f, HTTP_M_GET, "/v1/health", NULL);
	assert_int_equal(json_integer_value(json_object_get(h, "keys")), 1);
}

/* A formatted counter region, started two hours before T_NOW. */
static struct stats_region *
status_region(void)
{
	struct stats_region	*r = calloc(1, sizeof(*r));

	assert_non_null(r);
	stats_init(r, T_NOW / 1000 - 7200);
	return (r);
}

/* GET /v1/status: 200, and its body equals the JSON text want. */
static void
expect_status(struct fx *f, const char *want)
{
	json_error_t	 je;
	json_t		*w, *got;
	char		*text;

	got = req(f, HTTP_M_GET, "/v1/status", NULL);
	assert_int_equal(f->rs.as_status, 200);
	if ((w = json_loads(want, 0, &je)) == NULL)
		fail_msg("expected JSON, line %d: %s", je.line, je.text);
	if (!json_equal(w, got)) {
		text = json_dumps(got, JSON_INDENT(1) | JSON_SORT_KEYS);
		fail_msg("/v1/status answered %s", text);
	}
	json_decref(w);
}

/*
 * Nothing counted yet: zeros, no rate, no reload (the last success is the
 * start-up), no upstream ("other" is shown only with counts); the token is
 * needed; only GET; no counters at all is 503.
 */
static void
test_status_empty(void **state)
{
	struct fx		*f = *state;
	struct stats_region	*r = status_region();

	req(f, HTTP_M_GET, "/v1/status", NULL);
	expect_error(f, 503, "status_unavailable", NULL);
	f->env.ae_stats = r;
	expect_status(f, "{\"version\":\"9.8.7\","
	    "\"started_at\":\"2026-11-18T09:06:40.000Z\","
	    "\"uptime_seconds\":7200,"
	    "\"workers\":{\"configured\":0,\"running\":0,\"restarts\":0},"
	    "\"keys\":{\"count\":0,\"max\":64},"
	    "\"connections\":{\"reading\":0,\"writing\":0,\"idle\":0,"
	    "\"accepted\":0},"
	    "\"last_minute\":{\"seconds\":0,\"requests\":0,\"refused\":0,"
	    "\"rate_limited\":0,\"errors\":0,\"requests_per_second\":0.0,"
	    "\"refused_per_second\":0.0,\"rate_limited_per_second\":0.0,"
	    "\"errors_per_second\":0.0},"
	    "\"last_hour\":{\"seconds\":0,\"rate_limited\":0,\"refused\":{"
	    "\"missing_credentials\":0,\"malformed_credentials\":0,"
	    "\"invalid_credentials\":0,\"expired_credentials\":0,"
	    "\"disabled_key\":0,\"insufficient_scope\":0,\"forbidden\":0,"
	    "\"auth_unavailable\":0}},"
	    "\"reloads\":{\"succeeded\":0,\"failed\":0,"
	    "\"last_success_at\":\"2026-11-18T09:06:40.000Z\"},"
	    "\"upstreams\":[]}");
	f->auth = NULL;
	req(f, HTTP_M_GET, "/v1/status", NULL);
	expect_error(f, 401, "unauthorized", NULL);
	f->auth = T_AUTH;
	req(f, HTTP_M_POST, "/v1/status", "{}");
	expect_error(f, 405, "method_not_allowed", NULL);
	assert_string_equal(f->rs.as_allow, "GET");
	f->env.ae_stats = NULL;
	free(r);
}

/*
 * Counters filled by hand as the master and three workers (and one that
 * ended) would: every figure lands in its field; the last minute is the
 * difference of two samples 20 s apart, with rates per second; each
 * upstream's state follows its last minute (idle although it served
 * before); "other" appears once counted.
 */
static void
test_status(void **state)
{
	struct fx		*f = *state;
	struct stats_region	*r = status_region();
	struct stats_total	*scratch = malloc(sizeof(*scratch));
	struct stats_slot	*s0 = &r->sr_slots[0], *s1 = &r->sr_slots[1];
	uint32_t		 api, auth, idle, down, route;
	int64_t			 now = T_NOW / 1000;
	json_t			*other;
	int			 i;

	assert_non_null(scratch);
	f->env.ae_stats = r;
	create(f, "{\"owner\":\"o\"}", NULL, NULL);
	stats_workers(r, 4);
	stats_reloaded(r, 1, now - 7200);
	stats_reloaded(r, 0, now - 900);
	stats_reloaded(r, 1, now - 600);
	stats_restarted(r);
	stats_restarted(r);
	api = stats_upstream_id(r, "api", "127.0.0.1:8080");
	auth = stats_upstream_id(r, "auth", "[::1]:8443");
	idle = stats_upstream_id(r, "idle", "10.0.0.3:80");
	down = stats_upstream_id(r, "down", "10.0.0.4:80");
	route = stats_route_id(r, "keys");
	for (i = 0; i < 4; i++)
		stats_attach(r, i);
	STATS_BUMP(&r->sr_slots[3].ss_accepted, 7);
	stats_conn_move(&r->sr_slots[3], -1, STATS_CONN_IDLE);
	stats_fold(r, 3, 0);
	STATS_BUMP(&s0->ss_accepted, 10);
	STATS_BUMP(&s1->ss_accepted, 5);
	stats_conn_move(s0, -1, STATS_CONN_READING);
	stats_conn_move(s0, -1, STATS_CONN_READING);
	stats_conn_move(s0, -1, STATS_CONN_READING);
	stats_conn_move(s0, STATS_CONN_READING, STATS_CONN_WRITING);
	stats_conn_move(s1, -1, STATS_CONN_IDLE);
	for (i = 0; i < 4; i++)
		stats_upstream(s1, idle, STATS_UP_OK, 100);
	stats_upstream(s1, api, STATS_UP_OK, 100);
	stats_request(s0, route, 200, 100);
	stats_sample(r, scratch, now - 30);
	/*
	 * The last minute: 16 requests, 3 refused, 1 limited, 2 errors (the
	 * last hour has one sample yet, in the same minute: test_stats).
	 */
	for (i = 0; i < 10; i++)
		stats_request(i % 2 ? s0 : s1, route, 200, 100);
	stats_request(s0, route, 502, 100);
	stats_request(s1, STATS_ROUTE_NONE, 503, 100);
	for (i = 0; i < 3; i++) {
		stats_request(s0, route, 401, 100);
		STATS_BUMP(&s0->ss_auth[3][STATS_R_INVALID], 1);
	}
	stats_request(s1, route, 429, 100);
	STATS_BUMP(&s1->ss_rate[0][1], 1);
	for (i = 0; i < 6; i++)
		stats_upstream(i % 2 ? s0 : s1, api, STATS_UP_OK, 100);
	for (i = 0; i < 3; i++)
		stats_upstream(s0, auth, STATS_UP_OK, 100);
	stats_upstream(s1, auth, STATS_UP_TIMEOUT, 0);
	stats_upstream(s0, down, STATS_UP_CONNECT_ERROR, 0);
	stats_upstream(s1, down, STATS_UP_TLS_ERROR, 0);
	stats_sample(r, scratch, now - 10);
	free(scratch);
	expect_status(f, "{\"version\":\"9.8.7\","
	    "\"started_at\":\"2026-11-18T09:06:40.000Z\","
	    "\"uptime_seconds\":7200,"
	    "\"workers\":{\"configured\":4,\"running\":3,\"restarts\":2},"
	    "\"keys\":{\"count\":1,\"max\":64},"
	    "\"connections\":{\"reading\":2,\"writing\":1,\"idle\":1,"
	    "\"accepted\":22},"
	    "\"last_minute\":{\"seconds\":20,\"requests\":16,\"refused\":3,"
	    "\"rate_limited\":1,\"errors\":2,\"requests_per_second\":0.8,"
	    "\"refused_per_second\":0.15,\"rate_limited_per_second\":0.05,"
	    "\"errors_per_second\":0.1},"
	    "\"last_hour\":{\"seconds\":0,\"rate_limited\":0,\"refused\":{"
	    "\"missing_credentials\":0,\"malformed_credentials\":0,"
	    "\"invalid_credentials\":0,\"expired_credentials\":0,"
	    "\"disabled_key\":0,\"insufficient_scope\":0,\"forbidden\":0,"
	    "\"auth_unavailable\":0}},"
	    "\"reloads\":{\"succeeded\":2,\"failed\":1,"
	    "\"last_success_at\":\"2026-11-18T10:56:40.000Z\"},"
	    "\"upstreams\":["
	    "{\"name\":\"api\",\"server\":\"127.0.0.1:8080\",\"state\":\"up\","
	    "\"last_minute\":{\"ok\":6,\"failed\":0},\"requests\":7,"
	    "\"failures\":0},"
	    "{\"name\":\"auth\",\"server\":\"[::1]:8443\","
	    "\"state\":\"degraded\",\"last_minute\":{\"ok\":3,\"failed\":1},"
	    "\"requests\":4,\"failures\":1},"
	    "{\"name\":\"idle\",\"server\":\"10.0.0.3:80\",\"state\":\"idle\","
	    "\"last_minute\":{\"ok\":0,\"failed\":0},\"requests\":4,"
	    "\"failures\":0},"
	    "{\"name\":\"down\",\"server\":\"10.0.0.4:80\",\"state\":\"down\","
	    "\"last_minute\":{\"ok\":0,\"failed\":2},\"requests\":2,"
	    "\"failures\":2}]}");
	/* Servers beyond the table count as "other", shown from then on. */
	stats_upstream(s0, STATS_UPSTREAMS + 5, STATS_UP_ERROR, 0);
	req(f, HTTP_M_GET, "/v1/status", NULL);
	assert_int_equal(json_array_size(json_object_get(f->body,
	    "upstreams")), 5);
	other = json_loads("{\"name\":\"other\",\"server\":\"other\","
	    "\"state\":\"idle\",\"last_minute\":{\"ok\":0,\"failed\":0},"
	    "\"requests\":1,\"failures\":1}", 0, NULL);
	assert_true(json_equal(json_array_get(json_object_get(f->body,
	    "upstreams"), 0), other));
	json_decref(other);
	f->env.ae_stats = NULL;
	free(r);
}

/* One GET of target with the token (or without), answered directly. */
static void
get_raw(struct fx *f, const char *target, const char *auth)
{
	struct admin_request	 rq;

	admin_response_free(&f->rs);
	memset(&rq, 0, sizeof(rq));
	rq.aq_mbit = HTTP_M_GET;
	rq.aq_path = target;
	rq.aq_pathlen = strlen(target);
	rq.aq_auth = auth;
	rq.aq_authlen = auth != NULL ? strlen(auth) : 0;
	rq.aq_now = T_NOW;
	rq.aq_mono = f->mono;
	rq.aq_client = f->client;
	admin_handle(&f->env, &rq, &f->rs);
}

/*
 * GET /metrics: the token first; the exposition as text/plain 0.0.4 with
 * the key store's figures; 503 in a process without the counters.
 */
static void
test_metrics(void **state)
{
	struct fx		*f = *state;
	struct stats_region	*sr = calloc(1, sizeof(*sr));

	assert_non_null(sr);
	stats_init(sr, 1000);
	get_raw(f, "/metrics", NULL);
	assert_int_equal(f->rs.as_status, 401);
	get_raw(f, "/metrics", T_AUTH);
	assert_int_equal(f->rs.as_status, 503);
	assert_non_null(strstr(f->rs.as_body, "metrics_unavailable"));
	f->env.ae_stats = sr;
	create(f, "{\"owner\":\"o\"}", NULL, NULL);
	get_raw(f, "/metrics", T_AUTH);
	assert_int_equal(f->rs.as_status, 200);
	assert_string_equal(f->rs.as_type, METRICS_CONTENT_TYPE);
	assert_int_equal(strlen(f->rs.as_body), f->rs.as_bodylen);
	assert_non_null(strstr(f->rs.as_body, "\nkeygate_keys 1\n"));
	assert_non_null(strstr(f->rs.as_body, "keygate_build_info{version="
	    "\"9.8.7\"} 1\n"));
	f->env.ae_stats = NULL;
	admin_response_free(&f->rs);
	free(sr);
}

/* The bearer token: missing, other schemes, wrong, unconfigured, right. */
static void
test_auth(void **state)
{
	static const char *const bad[] = {
		NULL, "", "Bearer", "Bearer ", "Basic " T_TOKEN, T_TOKEN,
		"Bearer " T_TOKEN "x", "Bearer t0ken", "Bearer  x" T_TOKEN,
		"Bearer" T_TOKEN,
	};
	struct fx	*f = *state;
	size_t		 i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		f->auth = bad[i];
		req(f, HTTP_M_GET, "/v1/keys", NULL);
		expect_error(f, 401, "unauthorized", NULL);
		assert_null(strstr(f->rs.as_body, T_TOKEN));
		/* Nothing is learnt about paths without the token. */
		req(f, HTTP_M_GET, "/v1/nothing-here", NULL);
		expect_error(f, 401, "unauthorized", NULL);
		req(f, HTTP_M_PUT, "/v1/keys", NULL);
		expect_error(f, 401, "unauthorized", NULL);
		req(f, HTTP_M_POST, "/v1/keys", "{\"owner\":\"o\"}");
		expect_error(f, 401, "unauthorized", NULL);
	}
	assert_int_equal(keystore_count(&f->ks), 0);
	f->auth = "bearer   " T_TOKEN;
	req(f, HTTP_M_GET, "/v1/keys", NULL);
	assert_int_equal(f->rs.as_status, 200);
	f->auth = "BEARER " T_TOKEN;
	req(f, HTTP_M_GET, "/v1/keys", NULL);
	assert_int_equal(f->rs.as_status, 200);
	/* No token configured: every request is refused. */
	f->env.ae_token_digest = NULL;
	req(f, HTTP_M_GET, "/v1/keys", NULL);
	expect_error(f, 401, "unauthorized", NULL);
	req(f, HTTP_M_GET, "/v1/health", NULL);
	assert_int_equal(f->rs.as_status, 200);
}

/* The client address of the next requests (4 or 16 bytes) and its text. */
static void
from(struct fx *f, const char *text, const unsigned char *ip, size_t len)
{
	memcpy(f->ip, ip, len);
	f->iplen = len;
	f->client = text;
}

/* Assert the last answer was 429 too_many_attempts, Retry-After secs. */
static void
expect_throttled(struct fx *f, uint32_t secs)
{
	expect_error(f, 429, "too_many_attempts", NULL);
	assert_int_equal(f->rs.as_retry_after, secs);
	assert_null(f->rs.as_challenge);
}

/*
 * Wrong tokens slow their address down: four in a row are free, the
 * fifth earns 1 s, the next 2 s; meanwhile even the right token gets 429
 * with Retry-After.  Other addresses (an IPv6 one counts by its /64) go
 * on; a right token after the wait ends the streak; a request without
 * Authorization counts nothing.  Logged with the address, not the token.
 */
static void
test_auth_throttle(void **state)
{
	static const unsigned char a[4] = { 192, 0, 2, 1 }, b[4] = { 192, 0, 2, 2 };
	static const unsigned char v6a[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0,
	    1, 0, 0, 0, 0, 0, 0, 0, 1 };
	unsigned char		 v6[16];
	struct fx		*f = *state;
	void			*mem;
	char			*log, *p;
	int			 i;

	mem = calloc(1, ratelimit_failtable_size(64));
	assert_non_null(mem);
	f->env.ae_fails = ratelimit_failtable_init(mem, 64, 99);
	from(f, "192.0.2.1", a, 4);
	for (i = 0; i < 5; i++) {
		f->auth = "Bearer not-" T_TOKEN;
		req(f, HTTP_M_GET, "/v1/keys", NULL);
		expect_error(f, 401, "unauthorized", NULL);
		assert_int_equal(f->rs.as_retry_after, 0);
	}
	/* Waiting: the right token is not even looked at, on any path. */
	f->auth = T_AUTH;
	req(f, HTTP_M_GET, "/v1/keys", NULL);
	expect_throttled(f, 1);
	req(f, HTTP_M_POST, "/v1/keys", "{\"owner\":\"o\"}");
	expect_throttled(f, 1);
	f->auth = NULL;
	req(f, HTTP_M_GET, "/v1/nothing-here", NULL);
	expect_throttled(f, 1);
	assert_int_equal(keystore_count(&f->ks), 0);
	/* Health needs no token and is never throttled. */
	req(f, HTTP_M_GET, "/v1/health", NULL);
	assert_int_equal(f->rs.as_status, 200);
	/* Another address is served. */
	from(f, "192.0.2.2", b, 4);
	f->auth = T_AUTH;
	req(f, HTTP_M_GET, "/v1/keys", NULL);
	assert_int_equal(f->rs.as_status, 200);
	/* After the wait: one more wrong token earns 2 s. */
	from(f, "192.0.2.1", a, 4);
	f->mono += 999;
	req(f, HTTP_M_GET, "/v1/keys", NULL);
	expect_throttled(f, 1);
	f->mono += 1;
	f->auth = "Bearer wrong";
	req(f, HTTP_M_GET, "/v1/keys", NULL);
	expect_error(f, 401, "unauthorized", NULL);
	f->auth = T_AUTH;
	req(f, HTTP_M_GET, "/v1/keys", NULL);
	expect_throttled(f, 2);
	f->mono += 1500;
	req(f, HTTP_M_GET, "/v1/keys", NULL);
	expect_throttled(f, 1);
	/* The right token after the wait works and ends the streak. */
	f->mono += 500;
	req(f, HTTP_M_GET, "/v1/keys", NULL);
	assert_int_equal(f->rs.as_status, 200);
	f->mono += 1000;	/* a log line per second and address */
	for (i = 0; i < 4; i++) {
		f->auth = "Basic " T_TOKEN;	/* presented, wrong: counts */
		req(f, HTTP_M_GET, "/v1/keys", NULL);
		expect_error(f, 401, "unauthorized", NULL);
	}
	f->auth = T_AUTH;
	req(f, HTTP_M_GET, "/v1/keys", NULL);
	assert_int_equal(f->rs.as_status, 200);
	/* No Authorization at all is not a guess. */
	f->auth = NULL;
	for (i = 0; i < 10; i++) {
		req(f, HTTP_M_GET, "/v1/keys", NULL);
		expect_error(f, 401, "unauthorized", NULL);
	}
	f->auth = T_AUTH;
	req(f, HTTP_M_GET, "/v1/keys", NULL);
	assert_int_equal(f->rs.as_status, 200);
	/* IPv6: the /64 is the address; another /64 is another one. */
	f->auth = "Bearer wrong";
	memcpy(v6, v6a, 16);
	for (i = 0; i < 5; i++) {
		v6[15] = (unsigned char)(i + 1);	/* same /64 */
		from(f, "2001:db8:0:1::x", v6, 16);
		req(f, HTTP_M_GET, "/v1/keys", NULL);
		expect_error(f, 401, "unauthorized", NULL);
	}
	v6[8] = 0x77;
	from(f, "2001:db8:0:1:7700::", v6, 16);
	f->auth = T_AUTH;
	req(f, HTTP_M_GET, "/v1/keys", NULL);
	expect_throttled(f, 1);
	v6[7] = 2;
	from(f, "2001:db8:0:2:7700::", v6, 16);
	req(f, HTTP_M_GET, "/v1/keys", NULL);
	assert_int_equal(f->rs.as_status, 200);
	/* Logged with the address and the reason (the token: teardown). */
	log = slurp(f, "error.log");
	assert_non_null(log);
	assert_non_null(strstr(log, "admin: failed authentication from "
	    "192.0.2.1: wrong token (1 in a row)"));
	assert_non_null(strstr(log, "from 192.0.2.1: not a Bearer "
	    "credential"));
	assert_non_null(strstr(log, "admin: refused 192.0.2.1 for 1 s more"));
	assert_null(strstr(log, "192.0.2.2"));
	/* 17 events from 192.0.2.1 in 4 s, one line a second at most. */
	for (i = 0, p = log; (p = strstr(p, " 192.0.2.1")) != NULL; p++)
		i++;
	assert_int_equal(i, 4);
	free(log);
	f->env.ae_fails = NULL;
	free(mem);
}

/* Unknown paths 404, wrong methods 405 with Allow, unknown ids 404. */
static void
test_routing(void **state)
{
	static const char *const nopath[] = {
		"/", "/v1", "/v1/", "/v1/keys/", "/v1/keys//usage",
		"/v1/keys/key_0000000000000000/", "/v1/keys/x/usage/",
		"/v1/keys/x/regen", "/v1/health/", "/v2/keys", "/V1/KEYS",
		"/v1/keysx", "/v1/verify/x", "/metrics/x",
	};
	static const struct {
		int		 m;
		const char	*path, *allow;
	} wrong[] = {
		{ HTTP_M_PUT, "/v1/keys", "GET, POST" },
		{ HTTP_M_DELETE, "/v1/keys", "GET, POST" },
		{ HTTP_M_POST, "/v1/keys/key_0000000000000000",
		    "GET, PATCH, DELETE" },
		{ HTTP_M_PUT, "/v1/keys/whatever", "GET, PATCH, DELETE" },
		{ HTTP_M_GET, "/v1/keys/x/regenerate", "POST" },
		{ HTTP_M_POST, "/v1/keys/x/usage", "GET" },
		{ HTTP_M_GET, "/v1/verify", "POST" },
		{ HTTP_M_POST, "/v1/openapi.json", "GET" },
		{ HTTP_M_HEAD, "/v1/health", "GET" },
	};
	static const char *const ids[] = {
		"key_0000000000000000", "nope", "key_000000000000000%21",
		"key_00000000000000000000000000000000000000000000000000",
	};
	struct fx	*f = *state;
	char		 p[128];
	size_t		 i;

	for (i = 0; i < sizeof(nopath) / sizeof(nopath[0]); i++) {
		req(f, HTTP_M_GET, nopath[i], NULL);
		expect_error(f, 404, "not_found", NULL);
	}
	for (i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
		req(f, wrong[i].m, wrong[i].path, "{}");
		expect_error(f, 405, "method_not_allowed", NULL);
		assert_string_equal(f->rs.as_allow, wrong[i].allow);
	}
	create(f, "{\"owner\":\"o\"}", NULL, NULL);
	for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		req(f, HTTP_M_GET, path_for(p, sizeof(p), "/v1/keys/%s",
		    ids[i]), NULL);
		expect_error(f, 404, "key_not_found", NULL);
		req(f, HTTP_M_PATCH, p, "{\"name\":\"x\"}");
		expect_error(f, 404, "key_not_found", NULL);
		req(f, HTTP_M_DELETE, p, NULL);
		expect_error(f, 404, "key_not_found", NULL);
		req(f, HTTP_M_POST, path_for(p, sizeof(p),
		    "/v1/keys/%s/regenerate", ids[i]), NULL);
		expect_error(f, 404, "key_not_found", NULL);
		req(f, HTTP_M_GET, path_for(p, sizeof(p), "/v1/keys/%s/usage",
		    ids[i]), NULL);
		expect_error(f, 404, "key_not_found", NULL);
	}
	/* A well-formed id is named; anything else is not echoed. */
	req(f, HTTP_M_GET, "/v1/keys/key_0000000000000000", NULL);
	assert_non_null(strstr(str(f->body, "message"),
	    "key_0000000000000000"));
	req(f, HTTP_M_GET, "/v1/keys/nope", NULL);
	assert_null(strstr(str(f->body, "message"), "nope"));
	assert_int_equal(keystore_count(&f->ks), 1);
	assert_int_equal(journal_lines(f), 1);
}

/* Create with defaults: 201, the key object, its secret once, on disk. */
static void
test_create_defaults(void **state)
{
	struct fx	*f = *state;
	struct ks_key	 k;
	uint8_t		 d[KS_DIGEST_LEN];
	char		 id[KS_ID_LEN + 1], sec[SECRET_MAX + 1], hint[32];
	char		 p[64];
	uint32_t	 slot;
	json_t		*o;
	size_t		 i;

	o = create(f, "{\"owner\":\"acme corp\"}", id, sec);
	assert_true(secret_valid_id(id, strlen(id)));
	assert_string_equal(str(o, "owner"), "acme corp");
	assert_true(json_is_null(json_object_get(o, "name")));
	assert_true(json_is_null(json_object_get(o, "app_id")));
	assert_string_equal(str(o, "prefix"), "live");
	assert_int_equal(json_array_size(json_object_get(o, "scopes")), 0);
	assert_string_equal(str(o, "created_at"), T_NOW_TEXT);
	assert_string_equal(str(o, "updated_at"), T_NOW_TEXT);
	assert_true(json_is_null(json_object_get(o, "expires_at")));
	assert_true(json_is_false(json_object_get(o, "disabled")));
	assert_true(json_is_null(json_object_get(o, "rate_limit")));
	assert_true(json_is_null(json_object_get(o, "grace_until")));
	assert_true(json_is_null(json_object_get(o, "last_used_at")));
	/* live_ + 32 base62. */
	assert_int_equal(strlen(sec), 5 + SECRET_BODY_LEN);
	assert_memory_equal(sec, "live_", 5);
	for (i = 5; sec[i] != '\0'; i++)
		assert_true(is_alnum(sec[i]));
	secret_hint(sec, hint, sizeof(hint));
	assert_string_equal(str(o, "hint"), hint);
	/* The store has it under the digest of the secret. */
	assert_int_equal(keystore_find_id(&f->ks, id, &k, &slot), KS_OK);
	secret_digest(sec, strlen(sec), d);
	assert_memory_equal(k.k_digest, d, KS_DIGEST_LEN);
	assert_int_equal(k.k_created, T_NOW);
	assert_int_equal(journal_lines(f), 1);
	check_replay(f);
	/* Shown once: GET has no secret (req() checks the body for it). */
	o = req(f, HTTP_M_GET, path_for(p, sizeof(p), "/v1/keys/%s", id),
	    NULL);
	assert_int_equal(f->rs.as_status, 200);
	assert_null(json_object_get(o, "secret"));
	assert_string_equal(str(o, "id"), id);
	assert_string_equal(str(o, "hint"), hint);
	o = verify_at(f, sec, NULL, T_NOW);
	assert_true(json_is_true(json_object_get(o, "valid")));
}

/* Create with every field: each is stored and shown as given. */
static void
test_create_full(void **state)
{
	struct fx	*f = *state;
	struct ks_key	 k;
	char		 id[KS_ID_LEN + 1], sec[SECRET_MAX + 1];
	uint32_t	 slot;
	json_t		*o, *rl, *sc;

	o = create(f, "{\"name\": \"Caf\\u00e9 \\u2603 billing\", "
	    "\"owner\": \"ops@example.com\", \"app_id\": \"app.01:x-y_z\", "
	    "\"scopes\": [\"contacts:read\", \"admin/*\", \"a.b-c_d\"], "
	    "\"prefix\": \"test9\", "
	    "\"expires_at\": \"2030-01-31T14:00:00.5+02:00\", "
	    "\"disabled\": true, "
	    "\"rate_limit\": {\"per_10s\": 50, \"per_1s\": null, "
	    "\"per_60s\": 1000000}}", id, sec);
	assert_string_equal(str(o, "name"), "Caf\xc3\xa9 \xe2\x98\x83 billing");
	assert_string_equal(str(o, "owner"), "ops@example.com");
	assert_string_equal(str(o, "app_id"), "app.01:x-y_z");
	assert_string_equal(str(o, "prefix"), "test9");
	assert_memory_equal(sec, "test9_", 6);
	assert_int_equal(strlen(sec), 6 + SECRET_BODY_LEN);
	assert_memory_equal(str(o, "hint"), "test9_...", 9);
	sc = json_object_get(o, "scopes");
	assert_int_equal(json_array_size(sc), 3);
	assert_string_equal(json_string_value(json_array_get(sc, 1)),
	    "admin/*");
	assert_string_equal(str(o, "expires_at"), "2030-01-31T12:00:00.500Z");
	assert_true(json_is_true(json_object_get(o, "disabled")));
	rl = json_object_get(o, "rate_limit");
	assert_true(json_is_null(json_object_get(rl, "per_1s")));
	assert_int_equal(json_integer_value(json_object_get(rl, "per_10s")),
	    50);
	assert_int_equal(json_integer_value(json_object_get(rl, "per_60s")),
	    1000000);
	assert_int_equal(keystore_find_id(&f->ks, id, &k, &slot), KS_OK);
	assert_string_equal(k.k_scopes, "contacts:read admin/* a.b-c_d");
	assert_int_equal(k.k_rate[KS_W1S], 0);
	assert_int_equal(k.k_rate[KS_W10S], 50);
	assert_int_equal(k.k_expires, 1896091200500LL);
	assert_true(k.k_flags & KS_F_DISABLED);
	/* Disabled: the secret is refused, the key named. */
	o = verify_at(f, sec, NULL, T_NOW);
	assert_true(json_is_false(json_object_get(o, "valid")));
	assert_string_equal(str(o, "code"), "disabled_key");
	assert_string_equal(str(o, "key_id"), id);
	/* Limits: a name of 100 bytes, 32 scopes, an owner of 64. */
	create(f, "{\"owner\":\"x234567890123456789012345678901234567890123456"
	    "789012345678901234\",\"name\":\"1234567890123456789012345678901234"
	    "567890123456789012345678901234567890123456789012345678901234567890"
	    "\",\"scopes\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\","
	    "\"9\",\"10\",\"11\",\"12\",\"13\",\"14\",\"15\",\"16\",\"17\","
	    "\"18\",\"19\",\"20\",\"21\",\"22\",\"23\",\"24\",\"25\",\"26\","
	    "\"27\",\"28\",\"29\",\"30\",\"31\",\"32\"],\"app_id\":null,"
	    "\"expires_at\":null,\"rate_limit\":null,\"disabled\":false}",
	    NULL, NULL);
	assert_int_equal(journal_lines(f), 2);
	check_replay(f);
}

/* Every bad field of a create: 422 naming it, nothing stored. */
static void
test_create_invalid(void **state)
{
	static const struct {
		const char	*body, *field;
	} cases[] = {
		{ "{}", "owner" },
		{ "{\"name\":\"x\"}", "owner" },
		{ "{\"owner\":\"o\",\"foo\":1}", "foo" },
		{ "{\"owner\":\"o\",\"Owner\":\"p\"}", "Owner" },
		{ "{\"owner\":\"o\",\"id\":\"key_0000000000000000\"}", "id" },
		{ "{\"owner\":\"o\",\"secret\":\"live_x\"}", "secret" },
		{ "{\"owner\":\"o\",\"hint\":\"x\"}", "hint" },
		{ "{\"owner\":\"o\",\"created_at\":null}", "created_at" },
		{ "{\"owner\":\"o\",\"last_used_at\":null}", "last_used_at" },
		{ "{\"owner\":\"o\",\"grace_until\":null}", "grace_until" },
		{ "{\"owner\":\"\"}", "owner" },
		{ "{\"owner\":null}", "owner" },
		{ "{\"owner\":5}", "owner" },
		{ "{\"owner\":\" lead\"}", "owner" },
		{ "{\"owner\":\"trail \"}", "owner" },
		{ "{\"owner\":\"tab\\there\"}", "owner" },
		{ "{\"owner\":\"caf\\u00e9\"}", "owner" },
		{ "{\"owner\":\"x2345678901234567890123456789012345678901234567"
		    "8901234567890123456\"}", "owner" },
		{ "{\"owner\":\"o\",\"name\":7}", "name" },
		{ "{\"owner\":\"o\",\"name\":\"a\\u0001b\"}", "name" },
		{ "{\"owner\":\"o\",\"name\":\"a\\nb\"}", "name" },
		{ "{\"owner\":\"o\",\"name\":\"a\\u007fb\"}", "name" },
		{ "{\"owner\":\"o\",\"name\":\"a\\u0085b\"}", "name" },
		{ "{\"owner\":\"o\",\"name\":\"1234567890123456789012345678901"
		    "234567890123456789012345678901234567890123456789012345678"
		    "9012345678901234\"}", "name" },
		{ "{\"owner\":\"o\",\"app_id\":\"\"}", "app_id" },
		{ "{\"owner\":\"o\",\"app_id\":\"a b\"}", "app_id" },
		{ "{\"owner\":\"o\",\"app_id\":\"a/b\"}", "app_id" },
		{ "{\"owner\":\"o\",\"app_id\":1}", "app_id" },
		{ "{\"owner\":\"o\",\"app_id\":\"x2345678901234567890123456789"
		    "012345678901234567890123456789012345\"}", "app_id" },
		{ "{\"owner\":\"o\",\"scopes\":\"a\"}", "scopes" },
		{ "{\"owner\":\"o\",\"scopes\":null}", "scopes" },
		{ "{\"owner\":\"o\",\"scopes\":[\"\"]}", "scopes" },
		{ "{\"owner\":\"o\",\"scopes\":[\"a b\"]}", "scopes" },
		{ "{\"owner\":\"o\",\"scopes\":[\"a,b\"]}", "scopes" },
		{ "{\"owner\":\"o\",\"scopes\":[1]}", "scopes" },
		{ "{\"owner\":\"o\",\"scopes\":[\"a\",\"b\",\"a\"]}",
		    "scopes" },
		{ "{\"owner\":\"o\",\"scopes\":[\"12345678901234567890123456789"
		    "01234567890123456789012345678901234567\"]}", "scopes" },
		{ "{\"owner\":\"o\",\"scopes\":[\"1\",\"2\",\"3\",\"4\",\"5\","
		    "\"6\",\"7\",\"8\",\"9\",\"10\",\"11\",\"12\",\"13\","
		    "\"14\",\"15\",\"16\",\"17\",\"18\",\"19\",\"20\",\"21\","
		    "\"22\",\"23\",\"24\",\"25\",\"26\",\"27\",\"28\",\"29\","
		    "\"30\",\"31\",\"32\",\"33\"]}", "scopes" },
		/* 5 scopes of 50 and one of 1: 256 bytes joined. */
		{ "{\"owner\":\"o\",\"scopes\":["
		    "\"a2345678901234567890123456789012345678901234567890\","
		    "\"b2345678901234567890123456789012345678901234567890\","
		    "\"c2345678901234567890123456789012345678901234567890\","
		    "\"d2345678901234567890123456789012345678901234567890\","
		    "\"e2345678901234567890123456789012345678901234567890\","
		    "\"f\"]}", "scopes" },
		{ "{\"owner\":\"o\",\"prefix\":\"LIVE\"}", "prefix" },
		{ "{\"owner\":\"o\",\"prefix\":\"\"}", "prefix" },
		{ "{\"owner\":\"o\",\"prefix\":\"live_\"}", "prefix" },
		{ "{\"owner\":\"o\",\"prefix\":\"abcdefghijklm\"}", "prefix" },
		{ "{\"owner\":\"o\",\"prefix\":null}", "prefix" },
		{ "{\"owner\":\"o\",\"expires_at\":\"2026-11-18T11:06:40Z\"}",
		    "expires_at" },
		{ "{\"owner\":\"o\",\"expires_at\":\"2020-01-01T00:00:00Z\"}",
		    "expires_at" },
		{ "{\"owner\":\"o\",\"expires_at\":1896177600}", "expires_at" },
		{ "{\"owner\":\"o\",\"expires_at\":\"tomorrow\"}",
		    "expires_at" },
		{ "{\"owner\":\"o\",\"disabled\":\"yes\"}", "disabled" },
		{ "{\"owner\":\"o\",\"disabled\":1}", "disabled" },
		{ "{\"owner\":\"o\",\"disabled\":null}", "disabled" },
		{ "{\"owner\":\"o\",\"rate_limit\":5}", "rate_limit" },
		{ "{\"owner\":\"o\",\"rate_limit\":[1,2,3]}", "rate_limit" },
		{ "{\"owner\":\"o\",\"rate_limit\":{\"per_2s\":1}}",
		    "rate_limit.per_2s" },
		{ "{\"owner\":\"o\",\"rate_limit\":{\"per_1s\":0}}",
		    "rate_limit.per_1s" },
		{ "{\"owner\":\"o\",\"rate_limit\":{\"per_10s\":-3}}",
		    "rate_limit.per_10s" },
		{ "{\"owner\":\"o\",\"rate_limit\":{\"per_60s\":1000000001}}",
		    "rate_limit.per_60s" },
		{ "{\"owner\":\"o\",\"rate_limit\":{\"per_1s\":1.5}}",
		    "rate_limit.per_1s" },
		{ "{\"owner\":\"o\",\"rate_limit\":{\"per_1s\":\"5\"}}",
		    "rate_limit.per_1s" },
	};
	struct fx	*f = *state;
	size_t		 i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		req(f, HTTP_M_POST, "/v1/keys", cases[i].body);
		if (f->rs.as_status != 422)
			fail_msg("case %zu %s: %d %s", i, cases[i].body,
			    f->rs.as_status, f->rs.as_body);
		expect_error(f, 422, "invalid_field", cases[i].field);
	}
	/* The messages say what is wrong. */
	req(f, HTTP_M_POST, "/v1/keys", "{\"owner\":\"o\",\"foo\":1}");
	assert_string_equal(str(f->body, "message"), "unknown field \"foo\"");
	req(f, HTTP_M_POST, "/v1/keys", "{\"owner\":\"o\",\"rate_limit\":"
	    "{\"per_2s\":1}}");
	assert_non_null(strstr(str(f->body, "message"), "rate_limit.per_2s"));
	assert_int_equal(keystore_count(&f->ks), 0);
	assert_int_equal(journal_lines(f), 0);
}

/* Does dir/name hold needle? */
static int
file_has(struct fx *f, const char *name, const char *needle)
{
	char	*text = slurp(f, name);
	int	 found;

	found = text != NULL && strstr(text, needle) != NULL;
	free(text);
	return (found);
}

/* Would secret[0..len) be let through now (auth's own check)? */
static int
auth_ok(struct fx *f, const char *secret, char *id)
{
	struct auth_result	 ar;

	memset(&ar, 0, sizeof(ar));
	auth_check_secret(&f->ks, secret, strlen(secret), NULL, T_NOW, &ar);
	if (ar.ar_status == 0 && id != NULL)
		snprintf(id, KS_ID_LEN + 1, "%.20s", ar.ar_key.k_id);
	return (ar.ar_status == 0);
}

/* Create with the caller's secret s (any bytes, JSON-escaped here). */
static json_t *
create_byo(struct fx *f, const char *member, const char *s, const char *more)
{
	json_t	*b;
	char	*text, *body;
	size_t	 len;

	assert_non_null(b = json_pack("{s:s}", member, s));
	assert_non_null(text = json_dumps(b, JSON_COMPACT));
	json_decref(b);
	len = strlen(text) + strlen(more) + 32;
	assert_non_null(body = malloc(len));
	/* {"secret":"..."} + ,"owner":"o"MORE} */
	snprintf(body, len, "%.*s,\"owner\":\"o\"%s}",
	    (int)strlen(text) - 1, text, more);
	req(f, HTTP_M_POST, "/v1/keys", body);
	free(body);
	free(text);
	return (f->body);
}

/*
 * POST /v1/keys with the caller's secret: 201 without "secret", the hint
 * of a foreign shape, any visible ASCII up to 512 bytes authenticating,
 * the prefix for regenerations, 409 for a secret in use, and the
 * plaintext nowhere: not in the answer, the journal or the log.
 */
static void
test_create_byo(void **state)
{
	static const char	*odd[] = {
		"ab.cd.ef", "eyJhbGciOi.eyJzdWIi.c2ln", "a/b+c=d==",
		"quote\"back\\slash", "~!@#$%^&*()[]{}<>?,;:'`|",
	};
	struct fx	*f = *state;
	char		 big[SECRET_IMPORT_MAX + 1], id[KS_ID_LEN + 1];
	char		 id2[KS_ID_LEN + 1], p[96];
	json_t		*o;
	size_t		 i;

	for (i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		o = create_byo(f, "secret", odd[i], "");
		if (f->rs.as_status != 201)
			fail_msg("%s: %d %s", odd[i], f->rs.as_status,
			    f->rs.as_body);
		assert_null(json_object_get(o, "secret"));
		assert_null(strstr(f->rs.as_body, odd[i]));
		assert_string_equal(str(o, "prefix"), "live");
		snprintf(id, sizeof(id), "%s", str(o, "id"));
		assert_true(auth_ok(f, odd[i], id2));
		assert_string_equal(id, id2);
	}
	assert_string_equal(str(o, "hint"), "~!@#...:'`|");
	/* 512 bytes cycling through every visible character. */
	for (i = 0; i < SECRET_IMPORT_MAX; i++)
		big[i] = (char)(0x21 + i % 94);
	big[i] = '\0';
	o = create_byo(f, "secret", big, ",\"scopes\":[\"r\"]");
	assert_int_equal(f->rs.as_status, 201);
	assert_string_equal(str(o, "hint"), "!\"#$...GHIJ");
	assert_true(auth_ok(f, big, NULL));
	big[SECRET_IMPORT_MAX - 1] = 'X';
	assert_false(auth_ok(f, big, NULL));
	/* The same secret again: 409, nothing stored. */
	i = keystore_count(&f->ks);
	create_byo(f, "secret", "ab.cd.ef", "");
	expect_error(f, 409, "key_exists", NULL);
	assert_int_equal(keystore_count(&f->ks), i);
	/* Short ones show their last 2 only; keygate's shape its usual hint. */
	o = create_byo(f, "secret", "short.secret", "");
	assert_string_equal(str(o, "hint"), "...et");
	o = create_byo(f, "secret", "test_0123456789abcdefghijABCDEFGHIJ01",
	    "");
	assert_string_equal(str(o, "hint"), "test_...IJ01");
	assert_string_equal(str(o, "prefix"), "test");
	/* sk_live_...: prefix "sk", kept by regenerate; "prefix" wins. */
	o = create_byo(f, "secret", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "");
	assert_string_equal(str(o, "hint"), "sk_l...p7dc");
	assert_string_equal(str(o, "prefix"), "sk");
	path_for(p, sizeof(p), "/v1/keys/%s/regenerate", str(o, "id"));
	o = req(f, HTTP_M_POST, p, NULL);
	assert_int_equal(f->rs.as_status, 200);
	assert_memory_equal(str(o, "secret"), "sk_", 3);
	assert_false(auth_ok(f, "sk_live_4eC39HqLyjWDarjtT1zdp7dc", NULL));
	o = create_byo(f, "secret", "no-prefix-here", ",\"prefix\":\"acme\"");
	assert_string_equal(str(o, "prefix"), "acme");
	/* A secret without a prefix shape regenerates as live_. */
	o = create_byo(f, "secret", "a.b.c.d.e.f", "");
	path_for(p, sizeof(p), "/v1/keys/%s/regenerate", str(o, "id"));
	o = req(f, HTTP_M_POST, p, NULL);
	assert_memory_equal(str(o, "secret"), "live_", 5);
	assert_int_equal(strlen(str(o, "secret")), 5 + SECRET_BODY_LEN);
	/* The digest alone, with and without a hint. */
	o = create_byo(f, "secret_sha256", "3ddb8fb2d5afd3bd4a6b6e1a2b2b6b5c"
	    "00ef9bc2f1a4d4c2e2d0e4f4b8a5c6d7", "");
	assert_int_equal(f->rs.as_status, 201);
	assert_string_equal(str(o, "hint"), "");
	/* sha256("legacy-secret-123") */
	{
		uint8_t	 d[KS_DIGEST_LEN];
		char	 hex[2 * KS_DIGEST_LEN + 1];

		secret_digest("legacy-secret-123", 17, d);
		for (i = 0; i < KS_DIGEST_LEN; i++)
			snprintf(hex + 2 * i, 3, "%02X", d[i]);
		o = create_byo(f, "secret_sha256", hex,
		    ",\"hint\":\"leg...123\"");
		assert_int_equal(f->rs.as_status, 201);
		assert_string_equal(str(o, "hint"), "leg...123");
		assert_true(auth_ok(f, "legacy-secret-123", id));
		assert_string_equal(id, str(o, "id"));
		/* The digest of a secret in use: 409. */
		create_byo(f, "secret", "legacy-secret-123", "");
		expect_error(f, 409, "key_exists", NULL);
	}
	check_replay(f);
	/* The plaintexts are nowhere on disk. */
	for (i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		assert_false(file_has(f, JOURNAL_FILE, odd[i]));
		assert_false(file_has(f, "error.log", odd[i]));
	}
	assert_false(file_has(f, JOURNAL_FILE, "legacy-secret-123"));
	assert_false(file_has(f, JOURNAL_FILE, "4eC39HqLyjWDarjtT1zdp7dc"));
}

/* Bad brought secrets: 422 naming the field, never quoting the secret. */
static void
test_create_byo_invalid(void **state)
{
	static const struct {
		const char	*body, *field;
	} cases[] = {
		{ "{\"owner\":\"o\",\"secret\":\"seven77\"}", "secret" },
		{ "{\"owner\":\"o\",\"secret\":\"has space\"}", "secret" },
		{ "{\"owner\":\"o\",\"secret\":\"tab\\there1\"}", "secret" },
		{ "{\"owner\":\"o\",\"secret\":\"del\\u007fhere\"}",
		    "secret" },
		{ "{\"owner\":\"o\",\"secret\":\"caf\\u00e9-secret\"}",
		    "secret" },
		{ "{\"owner\":\"o\",\"secret\":12345678}", "secret" },
		{ "{\"owner\":\"o\",\"secret\":null}", "secret" },
		{ "{\"owner\":\"o\",\"secret\":\"abcdefgh\","
		    "\"secret_sha256\":\"00\"}", "secret_sha256" },
		{ "{\"owner\":\"o\",\"secret\":\"abcdefgh\",\"hint\":\"x\"}",
		    "hint" },
		{ "{\"owner\":\"o\",\"secret_sha256\":\"0123\"}",
		    "secret_sha256" },
		{ "{\"owner\":\"o\",\"secret_sha256\":\"0123456789abcdef"
		    "0123456789abcdef0123456789abcdef0123456789abcdeg\"}",
		    "secret_sha256" },
		{ "{\"owner\":\"o\",\"secret_sha256\":\"0123456789abcdef"
		    "0123456789abcdef0123456789abcdef0123456789abcdef\","
		    "\"hint\":\"123456789012345678901\"}", "hint" },
		{ "{\"owner\":\"o\",\"secret_sha256\":\"0123456789abcdef"
		    "0123456789abcdef0123456789abcdef0123456789abcdef\","
		    "\"hint\":\"a\\nb\"}", "hint" },
		{ "{\"secret\":\"abcdefgh-no-owner\"}", "owner" },
		{ "{\"owner\":\"o\",\"secret\":\"abcdefgh-bad-prefix\","
		    "\"prefix\":\"A\"}", "prefix" },
	};
	struct fx	*f = *state;
	char		 big[SECRET_IMPORT_MAX + 2];
	size_t		 i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		req(f, HTTP_M_POST, "/v1/keys", cases[i].body);
		if (f->rs.as_status != 422)
			fail_msg("case %zu %s: %d %s", i, cases[i].body,
			    f->rs.as_status, f->rs.as_body);
		expect_error(f, 422, "invalid_field", cases[i].field);
		assert_null(strstr(f->rs.as_body, "has space"));
		assert_null(strstr(f->rs.as_body, "seven77"));
	}
	memset(big, 'a', sizeof(big));
	big[SECRET_IMPORT_MAX + 1] = '\0';
	create_byo(f, "secret", big, "");
	expect_error(f, 422, "invalid_field", "secret");
	assert_non_null(strstr(str(f->body, "message"), "8 to 512"));
	assert_int_equal(keystore_count(&f->ks), 0);
	assert_int_equal(journal_lines(f), 0);
}

/* Result n (from 0) of the last import answer. */
static json_t *
result(struct fx *f, size_t n)
{
	json_t	*r = json_array_get(f->body, n);

	if (r == NULL)
		fail_msg("no result %zu in %s", n, f->rs.as_body);
	return (r);
}

/* Assert result n: line, status and, for an error, its code (and field). */
static void
expect_line(struct fx *f, size_t n, int line, const char *status,
    const char *code, const char *field)
{
	json_t	*r = result(f, n), *e = json_object_get(r, "error");

	if (json_integer_value(json_object_get(r, "line")) != line ||
	    strcmp(str(r, "status"), status) != 0 ||
	    (code != NULL && strcmp(str(e, "code"), code) != 0))
		fail_msg("result %zu: want line %d %s %s, got %s", n, line,
		    status, code != NULL ? code : "", f->rs.as_body);
	if (code == NULL)
		assert_null(e);
	else
		assert_true(strlen(str(e, "message")) > 0);
	if (field != NULL)
		assert_string_equal(str(e, "field"), field);
}

/*
 * POST /v1/keys/import: per-line results in order, each line on its own,
 * blank lines skipped, the second run of the same body changes nothing,
 * ids kept, conflicts and secrets of other keys refused per line.
 */
static void
test_import(void **state)
{
	static const char body[] =
	    "{\"owner\":\"a\",\"secret\":\"imported.secret/1=\"}\n"
	    "{\"id\":\"key_0123456789abcdef\",\"owner\":\"b\","
	    "\"secret_sha256\":\"0123456789abcdef0123456789abcdef"
	    "0123456789abcdef0123456789abcdef\",\"scopes\":[\"r\",\"w\"]}\n"
	    "\r\n"
	    "  \n"
	    "{\"owner\":\"c\",\"secret\":\"imported.secret/1=\"}\n"
	    "{\"owner\":\"a\",\"secret\":\"imported.secret/1=\"}\n"
	    "{\"owner\":\"d\" \"secret\":\"in.bad.json.1\"}\n"
	    "[1,2]\n"
	    "{\"owner\":\"e\"}\n"
	    "{\"owner\":\"f\",\"secret\":\"short\"}\n"
	    "{\"owner\":\"g\",\"secret\":\"a-good-one-9\",\"id\":\"k1\"}\n"
	    "{\"owner\":\"h\",\"secret\":\"another.one-10\",\"foo\":1}\n"
	    "{\"owner\":\"i\",\"secret\":\"last/secret=11\","
	    "\"id\":\"key_AAAAAAAAAAAAAAAA\"}";	/* no final newline */
	struct fx	*f = *state;
	char		 id1[KS_ID_LEN + 1], id[KS_ID_LEN + 1];
	int		 lines, run;

	for (run = 0; run < 2; run++) {
		req(f, HTTP_M_POST, "/v1/keys/import", body);
		assert_int_equal(json_array_size(f->body), 11);
		expect_line(f, 0, 1, run == 0 ? "created" : "unchanged", NULL,
		    NULL);
		if (run == 0)
			snprintf(id1, sizeof(id1), "%s", str(result(f, 0),
			    "id"));
		assert_string_equal(str(result(f, 0), "id"), id1);
		expect_line(f, 1, 2, run == 0 ? "created" : "unchanged", NULL,
		    NULL);
		assert_string_equal(str(result(f, 1), "id"),
		    "key_0123456789abcdef");
		expect_line(f, 2, 5, "error", "key_exists", NULL);
		assert_non_null(strstr(str(json_object_get(result(f, 2),
		    "error"), "message"), id1));
		expect_line(f, 3, 6, "unchanged", NULL, NULL);
		assert_string_equal(str(result(f, 3), "id"), id1);
		expect_line(f, 4, 7, "error", "bad_json", NULL);
		assert_true(json_is_null(json_object_get(result(f, 4), "id")));
		expect_line(f, 5, 8, "error", "bad_json", NULL);
		expect_line(f, 6, 9, "error", "invalid_field", "secret");
		expect_line(f, 7, 10, "error", "invalid_field", "secret");
		expect_line(f, 8, 11, "error", "invalid_field", "id");
		expect_line(f, 9, 12, "error", "invalid_field", "foo");
		expect_line(f, 10, 13, run == 0 ? "created" : "unchanged",
		    NULL, NULL);
		assert_string_equal(str(result(f, 10), "id"),
		    "key_AAAAAAAAAAAAAAAA");
		assert_int_equal(keystore_count(&f->ks), 3);
		if (run == 0)
			lines = journal_lines(f);
		assert_int_equal(journal_lines(f), lines);
	}
	assert_int_equal(lines, 3);
	/* The imported keys work, with their fields. */
	assert_true(auth_ok(f, "imported.secret/1=", id));
	assert_string_equal(id, id1);
	assert_true(auth_ok(f, "last/secret=11", id));
	assert_false(auth_ok(f, "in.bad.json.1", NULL));
	assert_false(auth_ok(f, "another.one-10", NULL));
	req(f, HTTP_M_GET, "/v1/keys/key_0123456789abcdef", NULL);
	assert_string_equal(str(f->body, "owner"), "b");
	assert_int_equal(json_array_size(json_object_get(f->body, "scopes")),
	    2);
	assert_string_equal(str(f->body, "hint"), "");
	/* The same id with other content: conflict; nothing changes. */
	req(f, HTTP_M_POST, "/v1/keys/import", "{\"id\":\"key_0123456789abcdef"
	    "\",\"owner\":\"b\",\"secret_sha256\":\"0123456789abcdef0123456789"
	    "abcdef0123456789abcdef0123456789abcdef\",\"scopes\":[\"r\"]}\n");
	expect_line(f, 0, 1, "error", "conflict", NULL);
	assert_string_equal(str(result(f, 0), "id"), "key_0123456789abcdef");
	/* A regenerated key is not the imported one any more. */
	req(f, HTTP_M_POST, "/v1/keys/key_AAAAAAAAAAAAAAAA/regenerate", NULL);
	assert_int_equal(f->rs.as_status, 200);
	req(f, HTTP_M_POST, "/v1/keys/import", "{\"owner\":\"i\",\"secret\":"
	    "\"last/secret=11\",\"id\":\"key_AAAAAAAAAAAAAAAA\"}");
	expect_line(f, 0, 1, "error", "conflict", NULL);
	assert_int_equal(journal_lines(f), 4);
	check_replay(f);
	assert_false(file_has(f, JOURNAL_FILE, "imported.secret"));
	assert_false(file_has(f, "error.log", "imported.secret"));
	assert_false(file_has(f, "error.log", "in.bad.json"));
	/* Within one body, later lines see the earlier lines' new keys. */
	req(f, HTTP_M_POST, "/v1/keys/import",
	    "{\"id\":\"key_BBBBBBBBBBBBBBBB\",\"owner\":\"x\",\"secret\":"
	    "\"same-body-1\"}\n"
	    "{\"id\":\"key_BBBBBBBBBBBBBBBB\",\"owner\":\"x\",\"secret\":"
	    "\"same-body-1\"}\n"
	    "{\"id\":\"key_BBBBBBBBBBBBBBBB\",\"owner\":\"y\",\"secret\":"
	    "\"same-body-1\"}\n"
	    "{\"id\":\"key_CCCCCCCCCCCCCCCC\",\"owner\":\"x\",\"secret\":"
	    "\"same-body-1\"}\n"
	    "{\"owner\":\"x\",\"secret\":\"same-body-1\"}\n");
	expect_line(f, 0, 1, "created", NULL, NULL);
	expect_line(f, 1, 2, "unchanged", NULL, NULL);
	expect_line(f, 2, 3, "error", "conflict", NULL);
	expect_line(f, 3, 4, "error", "key_exists", NULL);
	expect_line(f, 4, 5, "unchanged", NULL, NULL);
	assert_string_equal(str(result(f, 4), "id"), "key_BBBBBBBBBBBBBBBB");
	assert_int_equal(journal_lines(f), 5);
	check_replay(f);
	/* A body without a line. */
	req(f, HTTP_M_POST, "/v1/keys/import", "\n \r\n");
	expect_error(f, 400, "bad_json", NULL);
	req(f, HTTP_M_POST, "/v1/keys/import", NULL);
	expect_error(f, 400, "bad_json", NULL);
	req(f, HTTP_M_GET, "/v1/keys/import", NULL);
	expect_error(f, 405, "method_not_allowed", NULL);
	assert_string_equal(f->rs.as_allow, "POST");
}

/* A full store refuses the lines past max_keys, each on its own. */
static void
test_import_full(void **state)
{
	struct fx	*f = *state;

	req(f, HTTP_M_POST, "/v1/keys/import",
	    "{\"owner\":\"a\",\"secret\":\"secret-number-1\"}\n"
	    "{\"owner\":\"a\",\"secret\":\"secret-number-2\"}\n"
	    "{\"owner\":\"a\",\"secret\":\"secret-number-3\"}\n"
	    "{\"owner\":\"a\",\"secret\":\"secret-number-4\"}\n"
	    "{\"owner\":\"a\",\"secret\":\"secret-number-1\"}\n");
	expect_line(f, 0, 1, "created", NULL, NULL);
	expect_line(f, 1, 2, "created", NULL, NULL);
	expect_line(f, 2, 3, "created", NULL, NULL);
	expect_line(f, 3, 4, "error", "key_store_full", NULL);
	expect_line(f, 4, 5, "unchanged", NULL, NULL);
	assert_int_equal(keystore_count(&f->ks), 3);
	check_replay(f);
}

/* POST /v1/keys with Idempotency-Key key at now; the answer. */
static json_t *
create_idem(struct fx *f, const char *key, const char *body, int64_t now,
    int replay)
{
	json_t	*o;

	f->idem = key;
	f->replay = replay;
	o = req_at(f, HTTP_M_POST, "/v1/keys", body, now);
	f->idem = NULL;
	f->replay = 0;
	return (o);
}

/*
 * Idempotency-Key: a retry (same key, same body) gets the same id and
 * secret for 24 hours, and nothing new is stored; another body is 422;
 * another key is another create; a bad key is 422; a key deleted or
 * regenerated since is not handed out again; a brought secret is not
 * kept, its retry answers the key alone.
 */
static void
test_idempotency(void **state)
{
	static const char	 body[] = "{\"owner\":\"o\",\"scopes\":[\"r\"]}";
	static const char	 key[] = "6f1c1b1e-7d0a-4c39-9a57-2a7b8f0f3c11";
	struct fx		*f = *state;
	char			 id[KS_ID_LEN + 1], sec[SECRET_MAX + 1], p[96];
	char			 big[IDEM_KEY_MAX + 2];
	json_t			*o;
	int			 i;

	o = create_idem(f, key, body, T_NOW, 0);
	assert_int_equal(f->rs.as_status, 201);
	snprintf(id, sizeof(id), "%s", str(o, "id"));
	snprintf(sec, sizeof(sec), "%s", str(o, "secret"));
	for (i = 1; i <= 3; i++) {
		o = create_idem(f, key, body, T_NOW + i * 3600000LL, 1);
		assert_int_equal(f->rs.as_status, 201);
		assert_string_equal(str(o, "id"), id);
		assert_string_equal(str(o, "secret"), sec);
		assert_string_equal(str(o, "created_at"), T_NOW_TEXT);
	}
	assert_int_equal(keystore_count(&f->ks), 1);
	assert_int_equal(journal_lines(f), 1);
	/* The secret is on disk only encrypted. */
	assert_true(file_has(f, JOURNAL_FILE, "\"idem\":{"));
	assert_false(file_has(f, JOURNAL_FILE, key));
	/* Another body with the same key. */
	create_idem(f, key, "{\"owner\":\"p\"}", T_NOW + 1000, 0);
	expect_error(f, 422, "idempotency_key_reused", "Idempotency-Key");
	/* Another key: another key. */
	o = create_idem(f, "another-key-0001", body, T_NOW + 1000, 0);
	assert_int_equal(f->rs.as_status, 201);
	assert_string_not_equal(str(o, "id"), id);
	/* 24 hours on, the key is forgotten: a new create. */
	o = create_idem(f, key, body, T_NOW + IDEM_TTL, 0);
	assert_int_equal(f->rs.as_status, 201);
	assert_string_not_equal(str(o, "id"), id);
	snprintf(id, sizeof(id), "%s", str(o, "id"));
	snprintf(sec, sizeof(sec), "%s", str(o, "secret"));
	assert_int_equal(keystore_count(&f->ks), 3);
	/* Bad keys. */
	create_idem(f, "has space", body, T_NOW, 0);
	expect_error(f, 422, "invalid_field", "Idempotency-Key");
	create_idem(f, "", body, T_NOW, 0);
	expect_error(f, 422, "invalid_field", "Idempotency-Key");
	memset(big, 'k', sizeof(big));
	big[IDEM_KEY_MAX + 1] = '\0';
	create_idem(f, big, body, T_NOW, 0);
	expect_error(f, 422, "invalid_field", "Idempotency-Key");
	big[IDEM_KEY_MAX] = '\0';
	create_idem(f, big, body, T_NOW, 0);
	assert_int_equal(f->rs.as_status, 201);
	/* Regenerated since: its old secret is not handed out. */
	path_for(p, sizeof(p), "/v1/keys/%s/regenerate", id);
	req_at(f, HTTP_M_POST, p, NULL, T_NOW + IDEM_TTL + 1000);
	assert_int_equal(f->rs.as_status, 200);
	create_idem(f, key, body, T_NOW + IDEM_TTL + 2000, 1);
	expect_error(f, 409, "conflict", NULL);
	assert_null(strstr(f->rs.as_body, sec));
	/* Deleted since: 404. */
	path_for(p, sizeof(p), "/v1/keys/%s", id);
	req_at(f, HTTP_M_DELETE, p, NULL, T_NOW + IDEM_TTL + 3000);
	create_idem(f, key, body, T_NOW + IDEM_TTL + 4000, 0);
	expect_error(f, 404, "key_not_found", NULL);
	/* A brought secret: the retry answers the key, no secret kept. */
	f->byo = 1;
	o = create_idem(f, "byo-key-1", "{\"owner\":\"o\",\"secret\":"
	    "\"brought.secret=1\"}", T_NOW, 0);
	assert_int_equal(f->rs.as_status, 201);
	snprintf(id, sizeof(id), "%s", str(o, "id"));
	o = create_idem(f, "byo-key-1", "{\"owner\":\"o\",\"secret\":"
	    "\"brought.secret=1\"}", T_NOW + 5, 0);
	assert_int_equal(f->rs.as_status, 201);
	assert_string_equal(str(o, "id"), id);
	assert_null(json_object_get(o, "secret"));
	check_replay(f);
}

/*
 * The entries come back from the journal (start-up, repair): a fresh
 * table loaded through the put-line hook answers a retry with the same
 * secret.  Entries older than 24 hours are not loaded.
 */
static void
test_idempotency_replay(void **state)
{
	static const char	 body[] = "{\"owner\":\"o\"}";
	struct fx		*f = *state;
	struct keystore		 ks2;
	struct journal		 j2;
	struct idem_entry	*t2, e;
	uint8_t			 h[KS_DIGEST_LEN];
	char			 id[KS_ID_LEN + 1], sec[SECRET_MAX + 1];
	char			 err[256];
	int64_t			 now = util_now_ms();
	void			*r2;
	json_t			*o;

	o = create_idem(f, "fresh-key", body, now - 1000, 0);
	snprintf(id, sizeof(id), "%s", str(o, "id"));
	snprintf(sec, sizeof(sec), "%s", str(o, "secret"));
	create_idem(f, "stale-key", body, now - IDEM_TTL - 1000, 0);
	assert_int_equal(f->rs.as_status, 201);
	/* A new store and table from the journal. */
	r2 = mmap(NULL, f->size, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(r2 != MAP_FAILED);
	keystore_init(&ks2, r2, f->ks.ks_max_keys, f->ks.ks_max_active,
	    0x5eed);
	assert_non_null(t2 = calloc(1, IDEM_TABLE_SIZE));
	assert_int_equal(journal_init(&j2, f->dir, (uid_t)-1, (gid_t)-1), 0);
	assert_int_equal(keystore_lock(&ks2, getpid(), 0), KS_OK);
	journal_set_put_hook(idem_replay, t2);
	if (journal_load(&j2, &ks2, err, sizeof(err)) != 0)
		fail_msg("journal_load: %s", err);
	journal_set_put_hook(NULL, NULL);
	keystore_unlock(&ks2, getpid());
	idem_hash("stale-key", 9, h);
	assert_int_equal(idem_find(t2, h, now, &e), 0);
	idem_hash("fresh-key", 9, h);
	assert_int_equal(idem_find(t2, h, now, &e), 1);
	assert_string_equal(e.ie_id, id);
	/* The live env on the loaded table: the same secret. */
	f->env.ae_idem = t2;
	memset(f->itable, 0, IDEM_TABLE_SIZE);
	o = create_idem(f, "fresh-key", body, now, 1);
	assert_int_equal(f->rs.as_status, 201);
	assert_string_equal(str(o, "id"), id);
	assert_string_equal(str(o, "secret"), sec);
	/* The wrong key cannot open an entry. */
	assert_int_equal(idem_open("fresh-kez", 9, &e, sec, sizeof(sec)), -1);
	f->env.ae_idem = f->itable;
	journal_close(&j2);
	munmap(r2, f->size);
	free(t2);
}

/* Bodies that are not JSON objects: 400 with line and column. */
static void
test_bad_json(void **state)
{
	static const char *const notobj[] = {
		"[1]", "5", "\"owner\"", "null", "true", " [ ] ",
	};
	static const char *const secretish[] = {
		"{\"key\": live_Zq3Xw9}", "{\"key\": \"live_Zq3\x01Xw9\"}",
		"{\"key\": \"live_Zq3Xw9\\q\"}",
		"{\"key\": \"live_Zq3Xw9ABCDEF",
	};
	struct fx	*f = *state;
	char		 id[KS_ID_LEN + 1], p[64];
	const char	*m;
	size_t		 i;

	req(f, HTTP_M_POST, "/v1/keys", "{\"owner\": \"o\",");
	expect_error(f, 400, "bad_json", NULL);
	assert_non_null(strstr(str(f->body, "message"),
	    "invalid JSON at line 1, column "));
	req(f, HTTP_M_POST, "/v1/keys", "{\n  \"owner\": \"o\",\n  \"name\": "
	    "x\n}");
	expect_error(f, 400, "bad_json", NULL);
	m = str(f->body, "message");
	assert_non_null(strstr(m, "invalid JSON at line 3, column 11: "));
	req(f, HTTP_M_POST, "/v1/keys", "");
	expect_error(f, 400, "bad_json", NULL);
	req(f, HTTP_M_POST, "/v1/keys", NULL);
	expect_error(f, 400, "bad_json", NULL);
	req(f, HTTP_M_POST, "/v1/keys", "{\"owner\":\"o\"} x");
	expect_error(f, 400, "bad_json", NULL);
	req(f, HTTP_M_POST, "/v1/keys", "{\"owner\":\"o\",\"owner\":\"p\"}");
	expect_error(f, 400, "bad_json", NULL);
	req(f, HTTP_M_POST, "/v1/keys", "{\"owner\":\"a\\u0000b\"}");
	expect_error(f, 400, "bad_json", NULL);
	req(f, HTTP_M_POST, "/v1/keys", "{\"owner\":\"\xff\"}");
	expect_error(f, 400, "bad_json", NULL);
	for (i = 0; i < sizeof(notobj) / sizeof(notobj[0]); i++) {
		req(f, HTTP_M_POST, "/v1/keys", notobj[i]);
		expect_error(f, 400, "bad_json", NULL);
		assert_string_equal(str(f->body, "message"),
		    "the body must be a JSON object");
	}
	/* jansson quotes the bad token: not here, it may be a secret. */
	for (i = 0; i < sizeof(secretish) / sizeof(secretish[0]); i++) {
		req(f, HTTP_M_POST, "/v1/verify", secretish[i]);
		expect_error(f, 400, "bad_json", NULL);
		assert_null(strstr(f->rs.as_body, "Zq3"));
	}
	assert_string_equal(str(f->body, "message"), "invalid JSON at line 1, "
	    "column 26: premature end of input");
	create(f, "{\"owner\":\"o\"}", id, NULL);
	req(f, HTTP_M_PATCH, path_for(p, sizeof(p), "/v1/keys/%s", id), "[]");
	expect_error(f, 400, "bad_json", NULL);
	req(f, HTTP_M_PATCH, p, "");
	expect_error(f, 400, "bad_json", NULL);
	req(f, HTTP_M_POST, path_for(p, sizeof(p), "/v1/keys/%s/regenerate",
	    id), "{");
	expect_error(f, 400, "bad_json", NULL);
	req(f, HTTP_M_POST, "/v1/verify", "[\"live_x\"]");
	expect_error(f, 400, "bad_json", NULL);
	assert_int_equal(journal_lines(f), 1);
}

/* RFC 3339 times in: the accepted forms and the refused ones. */
static void
test_times(void **state)
{
	static const struct {
		const char	*in, *out;
	} good[] = {
		{ "2030-01-31T12:00:00Z", "2030-01-31T12:00:00.000Z" },
		{ "2030-01-31t12:00:00z", "2030-01-31T12:00:00.000Z" },
		{ "2030-01-31T12:00:00.1Z", "2030-01-31T12:00:00.100Z" },
		{ "2030-01-31T12:00:00.123456789Z",
		    "2030-01-31T12:00:00.123Z" },
		{ "2030-01-31T14:30:00+02:30", "2030-01-31T12:00:00.000Z" },
		{ "2030-01-31T00:30:00-01:00", "2030-01-31T01:30:00.000Z" },
		{ "2030-01-01T00:30:00+01:00", "2029-12-31T23:30:00.000Z" },
		{ "2030-01-31T12:00:00-00:00", "2030-01-31T12:00:00.000Z" },
		{ "2028-02-29T23:59:59.999Z", "2028-02-29T23:59:59.999Z" },
		{ "2400-02-29T00:00:00Z", "2400-02-29T00:00:00.000Z" },
		{ "9999-12-31T23:59:59Z", "9999-12-31T23:59:59.000Z" },
		{ "2026-11-18T11:06:40.001Z", "2026-11-18T11:06:40.001Z" },
	};
	static const char *const bad[] = {
		"", "2030-01-31", "2030-01-31T12:00:00", "2030-01-31T12:00Z",
		"2030-01-31 12:00:00Z", "2030-01-31T12:00:00.Z",
		"2030-01-31T12:00:00,5Z", "2030-01-31T12:00:00+0200",
		"2030-01-31T12:00:00+02", "2030-01-31T12:00:00+24:00",
		"2030-01-31T12:00:00+02:60", "2030-01-31T12:00:00ZZ",
		"2030-01-31T12:00:00Z ", " 2030-01-31T12:00:00Z",
		"2030-1-31T12:00:00Z", "2030-01-31T1:00:00Z",
		"2030-13-01T00:00:00Z", "2030-00-01T00:00:00Z",
		"2030-01-00T00:00:00Z", "2030-01-32T00:00:00Z",
		"2030-04-31T00:00:00Z", "2030-02-29T00:00:00Z",
		"2100-02-29T00:00:00Z", "2030-01-31T24:00:00Z",
		"2030-01-31T12:60:00Z", "2030-01-31T12:00:60Z",
		"2030-01-31T12:00:00UTC", "+2030-01-31T12:00:00Z",
		"2030-01-31T12:00:00.5+02:00x", "2030/01/31T12:00:00Z",
		"20300131T120000Z", "2030-01-31T12:00:00.-5Z",
		"2026-11-18T11:06:40.000Z", "1969-12-31T23:59:59Z",
	};
	struct fx	*f = *state;
	char		 body[160];
	json_t		*o;
	size_t		 i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(body, sizeof(body), "{\"owner\":\"o\",\"expires_at\":"
		    "\"%s\"}", good[i].in);
		o = create(f, body, NULL, NULL);
		assert_string_equal(str(o, "expires_at"), good[i].out);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(body, sizeof(body), "{\"owner\":\"o\",\"expires_at\":"
		    "\"%s\"}", bad[i]);
		req(f, HTTP_M_POST, "/v1/keys", body);
		if (f->rs.as_status != 422)
			fail_msg("\"%s\" was accepted", bad[i]);
		expect_error(f, 422, "invalid_field", "expires_at");
	}
}

/* Is id among the n ids? Its index, or -1. */
static int
find_id(char ids[][KS_ID_LEN + 1], int n, const char *id)
{
	int	 i;

	for (i = 0; i < n; i++)
		if (strcmp(ids[i], id) == 0)
			return (i);
	return (-1);
}

/*
 * Walk every page of "/v1/keys?QUERY" with limit: each key listed once,
 * each page non-empty and at most limit long.  Marks seen[] by index into
 * ids; returns the number of keys listed.
 */
static int
walk(struct fx *f, const char *query, int limit, char ids[][KS_ID_LEN + 1],
    int n, int *seen)
{
	char		 t[256], cursor[32] = "";
	json_t		*o, *keys, *k;
	size_t		 i;
	int		 total = 0, at;

	memset(seen, 0, sizeof(int) * (size_t)n);
	do {
		snprintf(t, sizeof(t), "/v1/keys?%s&limit=%d%s%s", query, limit,
		    cursor[0] != '\0' ? "&cursor=" : "", cursor);
		o = req(f, HTTP_M_GET, t, NULL);
		assert_int_equal(f->rs.as_status, 200);
		keys = json_object_get(o, "keys");
		assert_true(json_array_size(keys) >= 1);
		assert_true(json_array_size(keys) <= (size_t)limit);
		json_array_foreach(keys, i, k) {
			assert_true((at = find_id(ids, n, str(k, "id"))) >= 0);
			assert_int_equal(seen[at]++, 0);
			total++;
		}
		if (json_is_null(json_object_get(o, "next_cursor")))
			break;
		assert_int_equal(json_array_size(keys), limit);
		snprintf(cursor, sizeof(cursor), "%s", str(o, "next_cursor"));
	} while (1);
	return (total);
}

/* Pages walk all matching keys exactly once, with and without filters. */
static void
test_list(void **state)
{
	static const char *const owners[] = { "alpha", "beta", "gamma team" };
	struct fx	*f = *state;
	char		 ids[25][KS_ID_LEN + 1], body[128], p[64];
	int		 seen[25], i, n;
	json_t		*o;

	for (i = 0; i < 25; i++) {
		snprintf(body, sizeof(body), "{\"owner\":\"%s\"%s}",
		    owners[i % 3], i % 2 == 0 ? ",\"app_id\":\"app:1\"" : "");
		create(f, body, ids[i], NULL);
	}
	/* Holes in the slots. */
	req(f, HTTP_M_DELETE, path_for(p, sizeof(p), "/v1/keys/%s", ids[3]),
	    NULL);
	assert_int_equal(f->rs.as_status, 204);
	req(f, HTTP_M_DELETE, path_for(p, sizeof(p), "/v1/keys/%s", ids[10]),
	    NULL);
	for (n = 1; n <= 24; n += 5) {
		assert_int_equal(walk(f, "", n, ids, 25, seen), 23);
		for (i = 0; i < 25; i++)
			assert_int_equal(seen[i], i != 3 && i != 10);
	}
	/* Owner with a space, encoded both ways. */
	assert_int_equal(walk(f, "owner=gamma+team", 2, ids, 25, seen), 8);
	for (i = 0; i < 25; i++)
		assert_int_equal(seen[i], i % 3 == 2);
	assert_int_equal(walk(f, "owner=gamma%20team", 3, ids, 25, seen), 8);
	/* Two filters: owner alpha (0,3,6,...), app (even) minus 3. */
	assert_int_equal(walk(f, "owner=alpha&app_id=app%3a1", 2, ids, 25,
	    seen), 5);
	for (i = 0; i < 25; i++)
		assert_int_equal(seen[i], i % 6 == 0);
	assert_int_equal(walk(f, "app_id=app:1&owner=", 4, ids, 25, seen), 12);
	/* Default limit: everything, no cursor. */
	o = req(f, HTTP_M_GET, "/v1/keys", NULL);
	assert_int_equal(json_array_size(json_object_get(o, "keys")), 23);
	assert_true(json_is_null(json_object_get(o, "next_cursor")));
	o = req(f, HTTP_M_GET, "/v1/keys?owner=nobody", NULL);
	assert_int_equal(json_array_size(json_object_get(o, "keys")), 0);
	assert_true(json_is_null(json_object_get(o, "next_cursor")));
	o = req(f, HTTP_M_GET, "/v1/keys?&&limit=5&", NULL);
	assert_int_equal(json_array_size(json_object_get(o, "keys")), 5);
	o = req(f, HTTP_M_GET, "/v1/keys?limit=1000&cursor=64", NULL);
	assert_int_equal(f->rs.as_status, 200);
	assert_int_equal(json_array_size(json_object_get(o, "keys")), 0);
}

/* The ids of a list answer o, in order, as one "a b c" string. */
static const char *
list_ids(json_t *o, char ids[][KS_ID_LEN + 1], int n, char *buf,
    size_t len)
{
	json_t	*k;
	size_t	 i, off = 0;

	buf[0] = '\0';
	json_array_foreach(json_object_get(o, "keys"), i, k) {
		int at = find_id(ids, n, str(k, "id"));

		off += (size_t)snprintf(buf + off, len - off, "%s%d",
		    off > 0 ? " " : "", at);
		assert_true(off < len);
	}
	return (buf);
}

/*
 * Search, state, age and use filters, in slot order and sorted; sorted
 * pages by offset with the total.  Keys (index: created days ago, what):
 * 0: 100 days, "Billing prod", used 40 days ago; 1: 95 days, disabled;
 * 2: 10 days, expires in 3 days; 3: 5 days, expired yesterday; 4: 1 day,
 * "billing test", used an hour ago; 5: 200 days, never used.
 */
static void
test_list_filters(void **state)
{
	static const struct {
		int64_t		 days;
		const char	*body;
	} mk[] = {
		{ 100, "{\"owner\":\"acme\",\"name\":\"Billing prod\"}" },
		{ 95, "{\"owner\":\"acme\",\"disabled\":true}" },
		{ 10, "{\"owner\":\"Zeta\",\"expires_at\":"
		    "\"2026-11-21T11:06:40Z\"}" },
		{ 5, "{\"owner\":\"zeta\",\"expires_at\":"
		    "\"2026-11-17T11:06:40Z\",\"name\":\"old\"}" },
		{ 1, "{\"owner\":\"o\",\"name\":\"billing test\","
		    "\"app_id\":\"app-BILL\"}" },
		{ 200, "{\"owner\":\"o\",\"name\":\"Archive\"}" },
	};
	static const struct {
		const char	*query, *want;
	} cases[] = {
		{ "q=BILL", "0 4" },		/* name, app_id; any case */
		{ "q=zeta", "2 3" },		/* owner */
		{ "q=nothing", "" },
		{ "state=active", "0 2 4 5" },
		{ "state=disabled", "1" },
		{ "state=expired", "3" },
		{ "state=expiring", "2" },
		{ "older_than=90d", "0 1 5" },
		{ "older_than=2160h", "0 1 5" },
		{ "older_than=101d", "5" },
		{ "unused=30d", "0 1 5" },	/* never used: since made */
		{ "unused=30d&state=active", "0 5" },
		{ "unused=3601", "0 1 2 3 5" },
		{ "unused=3600", "0 1 2 3 4 5" },	/* used 1 h ago: 1 h */
		{ "sort=created", "5 0 1 2 3 4" },
		{ "sort=-created", "4 3 2 1 0 5" },
		{ "sort=name&owner=o", "5 4" },
		{ "sort=-last_used&q=bill", "4 0" },
		{ "sort=expires&limit=2", "3 2" },	/* never: last */
		{ "sort=-expires&offset=4", "2 3" },
		{ "sort=created&limit=2&offset=1", "0 1" },
		{ "sort=created&offset=6", "" },
	};
	struct fx	*f = *state;
	char		 ids[6][KS_ID_LEN + 1], t[256], got[64];
	struct ks_key	 k;
	uint32_t	 slot;
	json_t		*o;
	size_t		 i;

	for (i = 0; i < nitems(mk); i++) {
		o = req_at(f, HTTP_M_POST, "/v1/keys", mk[i].body, T_NOW -
		    mk[i].days * 86400000LL);
		if (f->rs.as_status != 201)
			fail_msg("%s: %d", mk[i].body, f->rs.as_status);
		snprintf(ids[i], KS_ID_LEN + 1, "%s", str(o, "id"));
	}
	assert_int_equal(keystore_find_id(&f->ks, ids[0], &k, &slot), KS_OK);
	keystore_count_use(&f->ks, slot, KS_USE_ALLOWED, T_NOW -
	    40 * 86400000LL);
	assert_int_equal(keystore_find_id(&f->ks, ids[4], &k, &slot), KS_OK);
	keystore_count_use(&f->ks, slot, KS_USE_ALLOWED, T_NOW - 3600000);
	for (i = 0; i < nitems(cases); i++) {
		snprintf(t, sizeof(t), "/v1/keys?%s", cases[i].query);
		o = req(f, HTTP_M_GET, t, NULL);
		if (f->rs.as_status != 200)
			fail_msg("%s: %d", t, f->rs.as_status);
		list_ids(o, ids, 6, got, sizeof(got));
		if (strcmp(got, cases[i].want) != 0)
			fail_msg("%s: \"%s\", not \"%s\"", t, got,
			    cases[i].want);
		if (strstr(t, "sort=") != NULL) {
			assert_non_null(json_object_get(o, "total"));
			assert_null(json_object_get(o, "next_cursor"));
		} else
			assert_null(json_object_get(o, "total"));
	}
	o = req(f, HTTP_M_GET, "/v1/keys?sort=name&limit=1&offset=1&q=bill",
	    NULL);
	assert_int_equal(json_integer_value(json_object_get(o, "total")), 2);
	assert_int_equal(json_integer_value(json_object_get(o, "offset")), 1);
	assert_string_equal(list_ids(o, ids, 6, got, sizeof(got)), "4");
	/* Filters page with the cursor too: 4 active keys, 1 a page. */
	assert_int_equal(walk(f, "state=active", 1, ids, 6,
	    (int [6]){ 0 }), 4);
}

/*
 * GET /v1/gateway: the configuration server.c describes, with each
 * server's health from the master's checker and each provider's key set
 * from its JWKS slot; 503 without a description.
 */
static void
test_gateway(void **state)
{
	struct fx		*f = *state;
	struct stats_region	*r = status_region();
	struct jwks_slot	*js = calloc(JWT_MAX_PROVIDERS, sizeof(*js));
	json_t			*g, *o, *sv, *p;

	assert_non_null(js);
	req(f, HTTP_M_GET, "/v1/gateway", NULL);
	expect_error(f, 503, "status_unavailable", NULL);
	g = json_loads("{\"routes\":[{\"name\":\"r1\",\"methods\":[\"GET\"],"
	    "\"pattern\":\"^/a\",\"auth\":[\"api-key\"],\"scopes\":[\"s\"],"
	    "\"rate_limit\":\"off\",\"upstream\":\"u\"}],"
	    "\"upstreams\":[{\"name\":\"u\",\"type\":\"http\","
	    "\"health_check\":null,\"servers\":["
	    "{\"url\":\"http://a\",\"server\":\"a:80\",\"weight\":1,"
	    "\"_stat\":3},"
	    "{\"url\":\"http://b\",\"server\":\"b:80\",\"weight\":2,"
	    "\"_stat\":4},"
	    "{\"url\":\"http://c\",\"server\":\"c:80\",\"weight\":1,"
	    "\"_stat\":5}]}],\"jwt_providers\":[{\"name\":\"p\",\"issuers\":"
	    "[\"https://i\"],\"jwks\":\"/k.json\"},{\"name\":\"q\",\"issuers\":"
	    "[\"https://j\"],\"jwks\":\"discovery\"}]}", 0, NULL);
	assert_non_null(g);
	f->env.ae_gateway = g;
	f->env.ae_stats = r;
	f->env.ae_jwks = js;
	r->sr_master.sm_health[3] = STATS_HEALTH_UP;
	r->sr_master.sm_health[4] = STATS_HEALTH_DOWN;
	js[1].js_used = 1;
	snprintf(js[1].js_name, sizeof(js[1].js_name), "p");
	js[1].js_state = JWKS_OK;
	js[1].js_updated = T_NOW / 1000 - 100;
	js[1].js_set.s_nkeys = 2;
	o = req(f, HTTP_M_GET, "/v1/gateway", NULL);
	assert_int_equal(f->rs.as_status, 200);
	sv = json_object_get(json_array_get(json_object_get(o, "upstreams"),
	    0), "servers");
	assert_string_equal(str(json_array_get(sv, 0), "health"), "up");
	assert_string_equal(str(json_array_get(sv, 1), "health"), "down");
	assert_string_equal(str(json_array_get(sv, 2), "health"), "unchecked");
	assert_null(json_object_get(json_array_get(sv, 0), "_stat"));
	p = json_array_get(json_object_get(o, "jwt_providers"), 0);
	assert_int_equal(json_integer_value(json_object_get(p, "keys")), 2);
	assert_true(json_is_true(json_object_get(p, "up")));
	assert_int_equal(json_integer_value(json_object_get(p,
	    "age_seconds")), 100);
	assert_string_equal(str(p, "updated_at"), "2026-11-18T11:05:00.000Z");
	p = json_array_get(json_object_get(o, "jwt_providers"), 1);
	assert_true(json_is_false(json_object_get(p, "up")));
	assert_true(json_is_null(json_object_get(p, "updated_at")));
	/* The description itself is not changed by an answer. */
	assert_non_null(json_object_get(json_array_get(json_object_get(
	    json_array_get(json_object_get(g, "upstreams"), 0), "servers"), 0),
	    "_stat"));
	f->env.ae_gateway = NULL;
	f->env.ae_stats = NULL;
	f->env.ae_jwks = NULL;
	json_decref(g);
	free(js);
	free(r);
}

/* GET target of the console: the answer as is (not JSON for files). */
static struct admin_response *
ui_get(struct fx *f, const char *target)
{
	send_at(f, HTTP_M_GET, target, NULL, T_NOW);
	return (&f->rs);
}

/*
 * The web console: its files (no token; types, ETag and 304, 404, 405),
 * login (wrong tokens counted; the cookie's attributes, Secure over TLS),
 * the session in place of the token (and CSRF for changes), idle expiry,
 * logout; admin_ui off.
 */
static void
test_ui(void **state)
{
	struct fx		*f = *state;
	struct admin_response	*rs;
	char			 cookie[128], csrf[64], etag[64];
	char			 id[KS_ID_LEN + 1];
	uint8_t			 other[KS_DIGEST_LEN];
	const char		*v;
	json_t			*o;

	f->env.ae_ui = &f->ui;
	f->env.ae_ui_idle_ms = 60000;
	f->env.ae_ui_rotate_days = 90;
	f->env.ae_ui_unused_days = 30;
	f->env.ae_ui_scopes = "read write";
	f->auth = NULL;
	/* Files: no token needed. */
	rs = ui_get(f, "/ui/");
	assert_int_equal(rs->as_status, 200);
	assert_int_equal(rs->as_ui, 1);
	assert_string_equal(rs->as_type, "text/html; charset=utf-8");
	assert_ptr_equal(rs->as_static,
	    ui_asset_find("index.html", 10)->ua_data);
	assert_non_null(rs->as_etag);
	assert_int_equal(ui_get(f, "/ui")->as_status, 200);
	rs = ui_get(f, "/ui/app.js");
	assert_int_equal(rs->as_status, 200);
	assert_string_equal(rs->as_type, "text/javascript; charset=utf-8");
	assert_int_equal(rs->as_bodylen, ui_asset_find("app.js", 6)->ua_len);
	snprintf(etag, sizeof(etag), "%s", rs->as_etag);
	assert_int_equal(ui_get(f, "/ui/app.css")->as_status, 200);
	assert_int_equal(ui_get(f, "/ui/nope.js")->as_status, 404);
	assert_int_equal(ui_get(f, "/ui/../v1/keys")->as_status, 404);
	assert_int_equal(ui_get(f, "/ui/api/nothing")->as_status, 404);
	assert_int_equal(ui_get(f, "/ui/nope.js")->as_ui, 1);
	assert_int_equal(ui_get(f, "/uix")->as_status, 401);	/* not ours */
	assert_int_equal(f->rs.as_ui, 0);
	/* Revalidation. */
	f->inm = etag;
	rs = ui_get(f, "/ui/app.js");
	assert_int_equal(rs->as_status, 304);
	assert_null(rs->as_static);
	assert_null(rs->as_body);
	f->inm = "\"x\", W/\"y\"";
	assert_int_equal(ui_get(f, "/ui/app.js")->as_status, 200);
	f->inm = "*";
	assert_int_equal(ui_get(f, "/ui/app.js")->as_status, 304);
	f->inm = NULL;
	req(f, HTTP_M_POST, "/ui/", "{}");
	assert_int_equal(f->rs.as_status, 405);
	assert_string_equal(f->rs.as_allow, "GET, HEAD");
	send_at(f, HTTP_M_HEAD, "/ui/app.css", NULL, T_NOW);
	assert_int_equal(f->rs.as_status, 200);
	assert_int_equal(f->rs.as_bodylen, ui_asset_find("app.css", 7)->ua_len);
	/* Login. */
	req(f, HTTP_M_GET, "/ui/api/login", NULL);
	assert_int_equal(f->rs.as_status, 405);
	req(f, HTTP_M_POST, "/ui/api/login", "{\"token\":");
	expect_error(f, 400, "bad_json", NULL);
	req(f, HTTP_M_POST, "/ui/api/login", "{\"token\":1}");
	expect_error(f, 422, "invalid_field", "token");
	req(f, HTTP_M_POST, "/ui/api/login", "{\"token\":\"x\",\"a\":1}");
	expect_error(f, 422, "invalid_field", "token");
	req(f, HTTP_M_POST, "/ui/api/login", "{\"token\":\"wrong\"}");
	expect_error(f, 401, "unauthorized", NULL);
	assert_string_equal(f->rs.as_cookie, "");
	o = req(f, HTTP_M_GET, "/ui/api/session", NULL);
	assert_int_equal(f->rs.as_status, 200);
	assert_true(json_is_false(json_object_get(o, "logged_in")));
	assert_null(json_object_get(o, "csrf_token"));
	o = req(f, HTTP_M_POST, "/ui/api/login", "{\"token\":\"" T_TOKEN "\"}");
	assert_int_equal(f->rs.as_status, 200);
	assert_int_equal(strlen(str(o, "csrf_token")), UI_TOKEN_LEN);
	snprintf(csrf, sizeof(csrf), "%s", str(o, "csrf_token"));
	assert_int_equal(json_integer_value(json_object_get(o,
	    "idle_timeout_seconds")), 60);
	assert_int_equal(json_integer_value(json_object_get(o,
	    "rotate_days")), 90);
	v = f->rs.as_cookie;
	assert_int_equal(strncmp(v, UI_COOKIE "=", strlen(UI_COOKIE) + 1), 0);
	assert_string_equal(v + strlen(UI_COOKIE) + 1 + UI_TOKEN_LEN,
	    "; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200");
	snprintf(cookie, sizeof(cookie), "other=1; %.*s; x=y",
	    (int)(strlen(UI_COOKIE) + 1 + UI_TOKEN_LEN), v);
	f->tls = 1;
	req(f, HTTP_M_POST, "/ui/api/login", "{\"token\":\"" T_TOKEN "\"}");
	assert_non_null(strstr(f->rs.as_cookie, "; Secure"));
	f->tls = 0;
	/* The session in place of the token. */
	f->cookie = cookie;
	o = req(f, HTTP_M_GET, "/ui/api/session", NULL);
	assert_int_equal(f->rs.as_status, 200);
	assert_true(json_is_true(json_object_get(o, "logged_in")));
	assert_string_equal(str(o, "csrf_token"), csrf);
	assert_int_equal(json_array_size(json_object_get(o, "scopes")), 2);
	req(f, HTTP_M_GET, "/v1/keys", NULL);
	assert_int_equal(f->rs.as_status, 200);
	req(f, HTTP_M_POST, "/v1/keys", "{\"owner\":\"ui\"}");
	expect_error(f, 403, "csrf_failed", NULL);
	f->csrf = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
	req(f, HTTP_M_POST, "/v1/keys", "{\"owner\":\"ui\"}");
	expect_error(f, 403, "csrf_failed", NULL);
	f->csrf = csrf;
	create(f, "{\"owner\":\"ui\"}", id, NULL);
	/*
	 * Idle for the timeout (on the monotonic clock): ended, and found no
	 * more after.
	 */
	f->mono = T_MONO + 59999;
	req(f, HTTP_M_GET, "/v1/keys", NULL);
	assert_int_equal(f->rs.as_status, 200);
	f->mono = T_MONO + 59999 + 60000;
	req(f, HTTP_M_GET, "/v1/keys", NULL);
	expect_error(f, 401, "unauthorized", NULL);
	assert_non_null(strstr(str(f->body, "message"), "ended"));
	f->mono = T_MONO;
	req(f, HTTP_M_GET, "/v1/keys", NULL);
	expect_error(f, 401, "unauthorized", NULL);
	/* A new admin token (a reload): the sessions of the old one end. */
	o = req(f, HTTP_M_POST, "/ui/api/login", "{\"token\":\"" T_TOKEN "\"}");
	snprintf(cookie, sizeof(cookie), "%.*s",
	    (int)(strlen(UI_COOKIE) + 1 + UI_TOKEN_LEN), f->rs.as_cookie);
	req(f, HTTP_M_GET, "/v1/keys", NULL);
	assert_int_equal(f->rs.as_status, 200);
	secret_digest("another-admin-token", 19, other);
	f->env.ae_token_digest = other;
	req(f, HTTP_M_GET, "/v1/keys", NULL);
	expect_error(f, 401, "unauthorized", NULL);
	f->env.ae_token_digest = f->token;
	/* Logout: CSRF needed; the cookie cleared; the session gone. */
	o = req(f, HTTP_M_POST, "/ui/api/login", "{\"token\":\"" T_TOKEN "\"}");
	snprintf(cookie, sizeof(cookie), "%.*s",
	    (int)(strlen(UI_COOKIE) + 1 + UI_TOKEN_LEN), f->rs.as_cookie);
	snprintf(csrf, sizeof(csrf), "%s", str(o, "csrf_token"));
	f->csrf = NULL;
	req(f, HTTP_M_POST, "/ui/api/logout", NULL);
	expect_error(f, 403, "csrf_failed", NULL);
	f->csrf = csrf;
	req(f, HTTP_M_POST, "/ui/api/logout", NULL);
	assert_int_equal(f->rs.as_status, 204);
	assert_string_equal(f->rs.as_cookie, UI_COOKIE "=; Path=/; HttpOnly; "
	    "SameSite=Strict; Max-Age=0");
	req(f, HTTP_M_GET, "/v1/keys", NULL);
	expect_error(f, 401, "unauthorized", NULL);
	req(f, HTTP_M_POST, "/ui/api/logout", NULL);	/* again: fine */
	assert_int_equal(f->rs.as_status, 204);
	/* Off: no console, and a cookie is no credential. */
	f->env.ae_ui = NULL;
	assert_int_equal(ui_get(f, "/ui/")->as_status, 404);
	req(f, HTTP_M_GET, "/v1/keys", NULL);
	expect_error(f, 401, "unauthorized", NULL);
	f->cookie = f->csrf = NULL;
}

/* Bad query parameters: 422 naming the parameter. */
static void
test_list_invalid(void **state)
{
	static const struct {
		const char	*query, *field;
	} cases[] = {
		{ "limit=0", "limit" }, { "limit=1001", "limit" },
		{ "limit=abc", "limit" }, { "limit=-1", "limit" },
		{ "limit=1.5", "limit" }, { "limit=10000000000", "limit" },
		{ "limit=+5", "limit" }, { "limit=5%00", "limit" },
		{ "limit=5&limit=6", "limit" },
		{ "cursor=x", "cursor" }, { "cursor=-1", "cursor" },
		{ "cursor=65", "cursor" }, { "cursor=99999999999", "cursor" },
		{ "cursor=1%2", "cursor" },
		{ "owner=%zz", "owner" }, { "owner=%0", "owner" },
		{ "owner=a%00b", "owner" }, { "owner=a&owner=b", "owner" },
		{ "owner=x2345678901234567890123456789012345678901234567890123"
		    "456789012345", "owner" },
		{ "app_id=%", "app_id" },
		{ "foo=1", "foo" }, { "limit=5&Owner=x", "Owner" },
		{ "own%65r=x&bar", "bar" },
		{ "q=x2345678901234567890123456789012345678901234567890123"
		    "4567890123456", "q" },
		{ "state=", "state" }, { "state=gone", "state" },
		{ "state=Active", "state" },
		{ "older_than=0d", "older_than" },
		{ "older_than=", "older_than" },
		{ "older_than=d", "older_than" },
		{ "older_than=5w", "older_than" },
		{ "older_than=3651d", "older_than" },
		{ "unused=-1d", "unused" }, { "unused=1.5d", "unused" },
		{ "sort=size", "sort" }, { "sort=-", "sort" },
		{ "sort=", "sort" },
		{ "sort=--name", "sort" },
		{ "offset=1", "offset" },
		{ "sort=name&offset=x", "offset" },
		{ "sort=name&offset=65", "offset" },
		{ "sort=name&cursor=3", "cursor" },
	};
	struct fx	*f = *state;
	char		 t[256];
	size_t		 i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(t, sizeof(t), "/v1/keys?%s", cases[i].query);
		req(f, HTTP_M_GET, t, NULL);
		if (f->rs.as_status != 422)
			fail_msg("%s: %d", t, f->rs.as_status);
		expect_error(f, 422, "invalid_field", cases[i].field);
	}
	/* A parameter name with odd bytes is named printably. */
	req(f, HTTP_M_GET, "/v1/keys?a%0Ab=1", NULL);
	expect_error(f, 422, "invalid_field", "a%0Ab");
}

/* PATCH: each field; {} changes nothing; rate_limit replaces all three. */
static void
test_patch(void **state)
{
	struct fx	*f = *state;
	char		 id[KS_ID_LEN + 1], sec[SECRET_MAX + 1], p[64];
	char		*before;
	json_t		*o, *rl;
	int		 lines;

	create(f, "{\"owner\":\"o\",\"name\":\"first\",\"scopes\":[\"a\"],"
	    "\"rate_limit\":{\"per_1s\":5,\"per_60s\":7}}", id, sec);
	path_for(p, sizeof(p), "/v1/keys/%s", id);
	lines = journal_lines(f);
	o = req_at(f, HTTP_M_PATCH, p, "{}", T_NOW + 1000);
	assert_int_equal(f->rs.as_status, 200);
	assert_string_equal(str(o, "updated_at"), T_NOW_TEXT);
	assert_string_equal(str(o, "name"), "first");
	assert_int_equal(journal_lines(f), lines);
	o = req_at(f, HTTP_M_PATCH, p, "{\"name\":\"second\",\"scopes\":[\"x\","
	    "\"y\"],\"disabled\":true,\"expires_at\":\"2031-01-01T00:00:00Z\","
	    "\"rate_limit\":{\"per_10s\":9}}", T_NOW + 1000);
	assert_int_equal(f->rs.as_status, 200);
	assert_string_equal(str(o, "id"), id);
	assert_string_equal(str(o, "owner"), "o");
	assert_string_equal(str(o, "name"), "second");
	assert_int_equal(json_array_size(json_object_get(o, "scopes")), 2);
	assert_true(json_is_true(json_object_get(o, "disabled")));
	assert_string_equal(str(o, "expires_at"), "2031-01-01T00:00:00.000Z");
	rl = json_object_get(o, "rate_limit");
	assert_true(json_is_null(json_object_get(rl, "per_1s")));
	assert_int_equal(json_integer_value(json_object_get(rl, "per_10s")), 9);
	assert_true(json_is_null(json_object_get(rl, "per_60s")));
	assert_string_equal(str(o, "created_at"), T_NOW_TEXT);
	assert_string_equal(str(o, "updated_at"), "2026-11-18T11:06:41.000Z");
	assert_int_equal(journal_lines(f), lines + 1);
	o = verify_at(f, sec, NULL, T_NOW + 1000);
	assert_string_equal(str(o, "code"), "disabled_key");
	/* Clearing. */
	o = req_at(f, HTTP_M_PATCH, p, "{\"rate_limit\":null,\"expires_at\":"
	    "null,\"disabled\":false,\"scopes\":[],\"name\":\"\"}",
	    T_NOW + 2000);
	assert_int_equal(f->rs.as_status, 200);
	assert_true(json_is_null(json_object_get(o, "rate_limit")));
	assert_true(json_is_null(json_object_get(o, "expires_at")));
	assert_int_equal(json_array_size(json_object_get(o, "scopes")), 0);
	assert_true(json_is_null(json_object_get(o, "name")));
	/* null clears the name as "" does. */
	o = req_at(f, HTTP_M_PATCH, p, "{\"name\":\"x\"}", T_NOW + 2000);
	assert_string_equal(str(o, "name"), "x");
	o = req_at(f, HTTP_M_PATCH, p, "{\"name\":null}", T_NOW + 2000);
	assert_int_equal(f->rs.as_status, 200);
	assert_true(json_is_null(json_object_get(o, "name")));
	o = verify_at(f, sec, NULL, T_NOW + 2000);
	assert_true(json_is_true(json_object_get(o, "valid")));
	/* GET shows what the PATCH answered. */
	req_at(f, HTTP_M_PATCH, p, "{\"disabled\":false}", T_NOW + 3000);
	assert_non_null(before = strdup(f->rs.as_body));
	req_at(f, HTTP_M_GET, p, NULL, T_NOW + 3000);
	assert_string_equal(f->rs.as_body, before);
	assert_string_equal(str(f->body, "updated_at"),
	    "2026-11-18T11:06:43.000Z");
	free(before);
	check_replay(f);
}

/* PATCH refusals: other fields cannot change, bad values; no change. */
static void
test_patch_invalid(void **state)
{
	static const char *const fixed[] = {
		"id", "owner", "app_id", "prefix", "secret", "hint",
		"created_at", "updated_at", "grace_until", "last_used_at",
	};
	static const struct {
		const char	*body, *field;
	} cases[] = {
		{ "{\"foo\":1}", "foo" },
		{ "{\"name\":\"ok\",\"bar\":1}", "bar" },
		{ "{\"name\":5}", "name" },
		{ "{\"scopes\":\"x\"}", "scopes" },
		{ "{\"scopes\":[\"x\",\"x\"]}", "scopes" },
		{ "{\"expires_at\":\"2020-01-01T00:00:00Z\"}", "expires_at" },
		{ "{\"expires_at\":\"2031-01-01\"}", "expires_at" },
		{ "{\"disabled\":\"no\"}", "disabled" },
		{ "{\"rate_limit\":{\"per_5s\":1}}", "rate_limit.per_5s" },
		{ "{\"rate_limit\":{\"per_1s\":0}}", "rate_limit.per_1s" },
		{ "{\"rate_limit\":true}", "rate_limit" },
	};
	struct fx	*f = *state;
	char		 id[KS_ID_LEN + 1], p[64], body[64], msg[64], *before;
	size_t		 i;
	int		 lines;

	create(f, "{\"owner\":\"o\",\"app_id\":\"a\"}", id, NULL);
	path_for(p, sizeof(p), "/v1/keys/%s", id);
	req(f, HTTP_M_GET, p, NULL);
	assert_non_null(before = strdup(f->rs.as_body));
	lines = journal_lines(f);
	for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		snprintf(body, sizeof(body), "{\"name\":\"n\",\"%s\":\"x\"}",
		    fixed[i]);
		req(f, HTTP_M_PATCH, p, body);
		expect_error(f, 422, "invalid_field", fixed[i]);
		snprintf(msg, sizeof(msg), "field \"%s\" cannot be changed",
		    fixed[i]);
		assert_string_equal(str(f->body, "message"), msg);
	}
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		req(f, HTTP_M_PATCH, p, cases[i].body);
		expect_error(f, 422, "invalid_field", cases[i].field);
	}
	req(f, HTTP_M_PATCH, p, "{\"foo\":1}");
	assert_string_equal(str(f->body, "message"), "unknown field \"foo\"");
	req_at(f, HTTP_M_GET, p, NULL, T_NOW);
	assert_string_equal(f->rs.as_body, before);
	assert_int_equal(journal_lines(f), lines);
	free(before);
}

/* DELETE: 204 without a body; the key and its secret are gone. */
static void
test_delete(void **state)
{
	struct fx	*f = *state;
	char		 id[KS_ID_LEN + 1], id2[KS_ID_LEN + 1];
	char		 sec[SECRET_MAX + 1], p[64];
	json_t		*o;

	create(f, "{\"owner\":\"o\"}", id, sec);
	create(f, "{\"owner\":\"o\"}", id2, NULL);
	req(f, HTTP_M_DELETE, path_for(p, sizeof(p), "/v1/keys/%s", id), NULL);
	assert_int_equal(f->rs.as_status, 204);
	assert_null(f->rs.as_type);
	assert_null(f->rs.as_code);
	assert_null(f->body);
	req(f, HTTP_M_GET, p, NULL);
	expect_error(f, 404, "key_not_found", NULL);
	req(f, HTTP_M_DELETE, p, NULL);
	expect_error(f, 404, "key_not_found", NULL);
	o = verify_at(f, sec, NULL, T_NOW);
	assert_true(json_is_false(json_object_get(o, "valid")));
	assert_string_equal(str(o, "code"), "invalid_credentials");
	assert_true(json_is_null(json_object_get(o, "key_id")));
	o = req(f, HTTP_M_GET, "/v1/keys", NULL);
	assert_int_equal(json_array_size(json_object_get(o, "keys")), 1);
	assert_string_equal(str(json_array_get(json_object_get(o, "keys"), 0),
	    "id"), id2);
	assert_int_equal(journal_lines(f), 3);
	check_replay(f);
}

/* Regenerate without grace: new secret, same key; the old one stops. */
static void
test_regenerate(void **state)
{
	struct fx	*f = *state;
	char		 id[KS_ID_LEN + 1], old[SECRET_MAX + 1];
	char		 sec[SECRET_MAX + 1], p[96], hint[32];
	struct ks_key	 k;
	uint32_t	 slot;
	json_t		*o;

	create(f, "{\"owner\":\"o\",\"prefix\":\"test\",\"app_id\":\"shop\","
	    "\"scopes\":[\"r\"]}", id, old);
	path_for(p, sizeof(p), "/v1/keys/%s/regenerate", id);
	o = req_at(f, HTTP_M_POST, p, NULL, T_NOW + 5000);
	assert_int_equal(f->rs.as_status, 200);
	snprintf(sec, sizeof(sec), "%s", str(o, "secret"));
	assert_string_not_equal(sec, old);
	assert_memory_equal(sec, "test_", 5);
	assert_int_equal(strlen(sec), 5 + SECRET_BODY_LEN);
	assert_string_equal(str(o, "id"), id);
	assert_string_equal(str(o, "app_id"), "shop");
	assert_string_equal(str(o, "prefix"), "test");
	assert_int_equal(json_array_size(json_object_get(o, "scopes")), 1);
	secret_hint(sec, hint, sizeof(hint));
	assert_string_equal(str(o, "hint"), hint);
	assert_true(json_is_null(json_object_get(o, "grace_until")));
	assert_string_equal(str(o, "created_at"), T_NOW_TEXT);
	assert_string_equal(str(o, "updated_at"), "2026-11-18T11:06:45.000Z");
	o = verify_at(f, old, NULL, T_NOW + 5000);
	assert_string_equal(str(o, "code"), "invalid_credentials");
	o = verify_at(f, sec, "shop", T_NOW + 5000);
	assert_true(json_is_true(json_object_get(o, "valid")));
	assert_int_equal(keystore_find_id(&f->ks, id, &k, &slot), KS_OK);
	assert_int_equal(k.k_grace_until, 0);
	/* {"grace_seconds":0} is the same. */
	snprintf(old, sizeof(old), "%s", sec);
	o = req_at(f, HTTP_M_POST, p, "{\"grace_seconds\":0}", T_NOW + 6000);
	assert_int_equal(f->rs.as_status, 200);
	assert_true(json_is_null(json_object_get(o, "grace_until")));
	o = verify_at(f, old, NULL, T_NOW + 6000);
	assert_string_equal(str(o, "code"), "invalid_credentials");
	assert_int_equal(journal_lines(f), 3);
	check_replay(f);
}

/*
 * Regenerate with grace: the previous secret works until exactly
 * now + grace; the grace shows until then; a later write drops it.
 */
static void
test_regenerate_grace(void **state)
{
	struct fx	*f = *state;
	const int64_t	 t1 = T_NOW + 10000, end = t1 + 60000;
	char		 id[KS_ID_LEN + 1], old[SECRET_MAX + 1];
	char		 sec[SECRET_MAX + 1], p[96], g[32];
	uint8_t		 d[KS_DIGEST_LEN];
	struct ks_key	 k;
	uint32_t	 slot;
	json_t		*o;

	create(f, "{\"owner\":\"o\"}", id, old);
	path_for(p, sizeof(p), "/v1/keys/%s/regenerate", id);
	o = req_at(f, HTTP_M_POST, p, "{\"grace_seconds\": 60}", t1);
	assert_int_equal(f->rs.as_status, 200);
	snprintf(sec, sizeof(sec), "%s", str(o, "secret"));
	util_rfc3339_ms(g, sizeof(g), end);
	assert_string_equal(str(o, "grace_until"), g);
	assert_int_equal(keystore_find_id(&f->ks, id, &k, &slot), KS_OK);
	assert_int_equal(k.k_grace_until, end);
	secret_digest(old, strlen(old), d);
	assert_memory_equal(k.k_old_digest, d, KS_DIGEST_LEN);
	/* Both work during the grace period; the old one not after it. */
	o = verify_at(f, old, NULL, end - 1);
	assert_true(json_is_true(json_object_get(o, "valid")));
	assert_string_equal(str(o, "key_id"), id);
	o = verify_at(f, sec, NULL, end - 1);
	assert_true(json_is_true(json_object_get(o, "valid")));
	o = verify_at(f, old, NULL, end);
	assert_true(json_is_false(json_object_get(o, "valid")));
	assert_string_equal(str(o, "code"), "invalid_credentials");
	o = verify_at(f, sec, NULL, end);
	assert_true(json_is_true(json_object_get(o, "valid")));
	snprintf(p, sizeof(p), "/v1/keys/%s", id);
	o = req_at(f, HTTP_M_GET, p, NULL, end - 1);
	assert_string_equal(str(o, "grace_until"), g);
	o = req_at(f, HTTP_M_GET, p, NULL, end);
	assert_true(json_is_null(json_object_get(o, "grace_until")));
	check_replay(f);
	/* A write after the end clears the old digest from the record. */
	req_at(f, HTTP_M_PATCH, p, "{\"name\":\"n\"}", end + 1);
	assert_int_equal(f->rs.as_status, 200);
	assert_int_equal(keystore_find_id(&f->ks, id, &k, &slot), KS_OK);
	assert_int_equal(k.k_grace_until, 0);
	memset(d, 0, sizeof(d));
	assert_memory_equal(k.k_old_digest, d, KS_DIGEST_LEN);
	o = verify_at(f, old, NULL, end - 1);
	assert_true(json_is_false(json_object_get(o, "valid")));
	/* A write during the grace period keeps it. */
	snprintf(old, sizeof(old), "%s", sec);
	snprintf(p, sizeof(p), "/v1/keys/%s/regenerate", id);
	o = req_at(f, HTTP_M_POST, p, "{\"grace_seconds\":2592000}", end + 2);
	snprintf(sec, sizeof(sec), "%s", str(o, "secret"));
	snprintf(p, sizeof(p), "/v1/keys/%s", id);
	req_at(f, HTTP_M_PATCH, p, "{\"name\":\"m\"}", end + 3);
	o = verify_at(f, old, NULL, end + 2592000000LL + 1);
	assert_true(json_is_true(json_object_get(o, "valid")));
	/* Regenerating again without grace stops both earlier secrets. */
	snprintf(p, sizeof(p), "/v1/keys/%s/regenerate", id);
	req_at(f, HTTP_M_POST, p, "", end + 4);
	assert_int_equal(f->rs.as_status, 200);
	o = verify_at(f, old, NULL, end + 4);
	assert_true(json_is_false(json_object_get(o, "valid")));
	o = verify_at(f, sec, NULL, end + 4);
	assert_true(json_is_false(json_object_get(o, "valid")));
	check_replay(f);
}

/* Regenerate refusals. */
static void
test_regenerate_invalid(void **state)
{
	static const struct {
		const char	*body, *field;
	} cases[] = {
		{ "{\"grace_seconds\":-1}", "grace_seconds" },
		{ "{\"grace_seconds\":2592001}", "grace_seconds" },
		{ "{\"grace_seconds\":\"10\"}", "grace_seconds" },
		{ "{\"grace_seconds\":1.5}", "grace_seconds" },
		{ "{\"grace_seconds\":null}", "grace_seconds" },
		{ "{\"foo\":1}", "foo" },
		{ "{\"grace_seconds\":1,\"prefix\":\"x\"}", "prefix" },
	};
	struct fx	*f = *state;
	char		 id[KS_ID_LEN + 1], sec[SECRET_MAX + 1], p[96];
	json_t		*o;
	size_t		 i;

	create(f, "{\"owner\":\"o\"}", id, sec);
	path_for(p, sizeof(p), "/v1/keys/%s/regenerate", id);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		req(f, HTTP_M_POST, p, cases[i].body);
		expect_error(f, 422, "invalid_field", cases[i].field);
	}
	req(f, HTTP_M_POST, p, "[]");
	expect_error(f, 400, "bad_json", NULL);
	o = verify_at(f, sec, NULL, T_NOW);
	assert_true(json_is_true(json_object_get(o, "valid")));
	assert_int_equal(journal_lines(f), 1);
}

/* Usage counters and last_used_at, in usage, show and list. */
static void
test_usage(void **state)
{
	struct fx	*f = *state;
	char		 id[KS_ID_LEN + 1], sec[SECRET_MAX + 1], p[96];
	struct ks_key	 k;
	uint32_t	 slot;
	json_t		*o;

	create(f, "{\"owner\":\"o\"}", id, sec);
	o = req(f, HTTP_M_GET, path_for(p, sizeof(p), "/v1/keys/%s/usage", id),
	    NULL);
	assert_int_equal(f->rs.as_status, 200);
	assert_string_equal(str(o, "id"), id);
	assert_int_equal(json_integer_value(json_object_get(o,
	    "requests_allowed")), 0);
	assert_int_equal(json_integer_value(json_object_get(o,
	    "requests_refused")), 0);
	assert_true(json_is_null(json_object_get(o, "last_used_at")));
	assert_int_equal(keystore_find_id(&f->ks, id, &k, &slot), KS_OK);
	keystore_count_use(&f->ks, slot, 1, T_NOW + 1);
	keystore_count_use(&f->ks, slot, 1, T_NOW + 2);
	keystore_count_use(&f->ks, slot, 0, T_NOW + 3);
	/* verify counts nothing. */
	verify_at(f, sec, NULL, T_NOW + 4);
	o = req(f, HTTP_M_GET, p, NULL);
	assert_int_equal(json_integer_value(json_object_get(o,
	    "requests_allowed")), 2);
	assert_int_equal(json_integer_value(json_object_get(o,
	    "requests_refused")), 1);
	assert_string_equal(str(o, "last_used_at"), "2026-11-18T11:06:40.003Z");
	o = req(f, HTTP_M_GET, path_for(p, sizeof(p), "/v1/keys/%s", id), NULL);
	assert_string_equal(str(o, "last_used_at"), "2026-11-18T11:06:40.003Z");
	o = req(f, HTTP_M_GET, "/v1/keys", NULL);
	assert_string_equal(str(json_array_get(json_object_get(o, "keys"), 0),
	    "last_used_at"), "2026-11-18T11:06:40.003Z");
	/* Kept across a regenerate (same id). */
	o = req(f, HTTP_M_POST, path_for(p, sizeof(p),
	    "/v1/keys/%s/regenerate", id), NULL);
	assert_string_equal(str(o, "last_used_at"), "2026-11-18T11:06:40.003Z");
}

/*
 * GET .../usage?history=: every point of the period in the document's
 * schema, the live counts in the last point, split admitted / rate
 * limited / refused; the plain answer counts rate_limited apart; a bad
 * history is a 422 naming the field, an unknown key a 404.
 */
static void
test_usage_history(void **state)
{
	static const struct {
		const char	*q;
		size_t		 n;
		int64_t		 step;
		const char	*res;
	} hist[] = {
		{ "1h", 60, 60000, "1m" },
		{ "24h", 1440, 60000, "1m" },
		{ "30d", 720, 3600000, "1h" },
	};
	struct fx	*f = *state;
	char		 id[KS_ID_LEN + 1], sec[SECRET_MAX + 1], p[128];
	struct ks_key	 k;
	uint32_t	 slot;
	json_t		*o, *pts, *last;
	size_t		 i;

	create(f, "{\"owner\":\"o\"}", id, sec);
	assert_int_equal(keystore_find_id(&f->ks, id, &k, &slot), KS_OK);
	keystore_count_use(&f->ks, slot, KS_USE_ALLOWED, T_NOW);
	keystore_count_use(&f->ks, slot, KS_USE_ALLOWED, T_NOW);
	keystore_count_use(&f->ks, slot, KS_USE_LIMITED, T_NOW);
	keystore_count_use(&f->ks, slot, KS_USE_REFUSED, T_NOW);
	o = req(f, HTTP_M_GET, path_for(p, sizeof(p), "/v1/keys/%s/usage", id),
	    NULL);
	assert_int_equal(json_integer_value(json_object_get(o,
	    "requests_refused")), 2);
	assert_int_equal(json_integer_value(json_object_get(o,
	    "requests_rate_limited")), 1);
	for (i = 0; i < sizeof(hist) / sizeof(hist[0]); i++) {
		snprintf(p, sizeof(p), "/v1/keys/%s/usage?history=%s", id,
		    hist[i].q);
		o = req(f, HTTP_M_GET, p, NULL);
		assert_int_equal(f->rs.as_status, 200);
		assert_string_equal(str(o, "id"), id);
		assert_string_equal(str(o, "history"), hist[i].q);
		assert_string_equal(str(o, "resolution"), hist[i].res);
		pts = json_object_get(o, "points");
		assert_int_equal(json_array_size(pts), hist[i].n);
		last = json_array_get(pts, hist[i].n - 1);
		assert_int_equal(json_integer_value(json_object_get(last,
		    "admitted")), 2);
		assert_int_equal(json_integer_value(json_object_get(last,
		    "rate_limited")), 1);
		assert_int_equal(json_integer_value(json_object_get(last,
		    "refused")), 1);
		/* 11:06 (11:00 for hours) is the last point. */
		assert_string_equal(str(last, "t"), hist[i].step == 60000 ?
		    "2026-11-18T11:06:00.000Z" : "2026-11-18T11:00:00.000Z");
		assert_int_equal(json_integer_value(json_object_get(
		    json_array_get(pts, 0), "admitted")), 0);
	}
	o = req(f, HTTP_M_GET, path_for(p, sizeof(p),
	    "/v1/keys/%s/usage?history=2h", id), NULL);
	assert_int_equal(f->rs.as_status, 422);
	assert_string_equal(str(o, "error"), "invalid_field");
	assert_string_equal(str(o, "field"), "history");
	(void)req(f, HTTP_M_GET, path_for(p, sizeof(p),
	    "/v1/keys/%s/usage?limit=2", id), NULL);
	assert_int_equal(f->rs.as_status, 422);
	(void)req(f, HTTP_M_GET,
	    "/v1/keys/key_doesnotexist0000/usage?history=1h", NULL);
	assert_int_equal(f->rs.as_status, 404);
}

/*
 * The windows of the last usage answer, as "WINDOW:LIMIT/USED/REMAINING/
 * RESET/SOURCE ..." text.  RESET is checked against the limiter itself
 * (when the key's requests in that window stop counting, read at the same
 * time from its state, in seconds rounded up) and shown as "R" when it
 * agrees and is not 0, as "0" when it agrees and is 0, as "!N" otherwise.
 * So the expected text need not know the limiter's bucket sizes, which
 * decide how much longer than the window a request is counted.
 */
static const char *
windows_text(struct fx *f, uint32_t slot, char *buf, size_t len)
{
	static const uint32_t	 all[RL_WINDOWS] = { 1, 1, 1 };
	struct rl_limits	 l;
	uint32_t		 used[RL_WINDOWS];
	int64_t			 ms[RL_WINDOWS], want;
	json_t			*a = json_object_get(f->body, "windows"), *w;
	json_int_t		 reset;
	char			 rs[24];
	size_t			 i, off = 0;
	int			 k;

	ratelimit_set(&l, all);
	ratelimit_usage(keystore_rate_peek(&f->ks, slot), &l, f->mono, used,
	    ms);
	assert_true(json_is_array(a));
	buf[0] = '\0';
	json_array_foreach(a, i, w) {
		for (k = 0; k < RL_WINDOWS; k++)
			if (strcmp(str(w, "window"),
			    ratelimit_window_name[k]) == 0)
				break;
		assert_true(k < RL_WINDOWS);
		want = (ms[k] + 999) / 1000;
		reset = json_integer_value(json_object_get(w, "reset"));
		if (reset == want)
			snprintf(rs, sizeof(rs), "%s", want != 0 ? "R" : "0");
		else
			snprintf(rs, sizeof(rs), "!%" JSON_INTEGER_FORMAT,
			    reset);
		off += (size_t)snprintf(buf + off, len - off, "%s%s:%"
		    JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT "/%"
		    JSON_INTEGER_FORMAT "/%s/%s", i > 0 ? " " : "",
		    str(w, "window"),
		    json_integer_value(json_object_get(w, "limit")),
		    json_integer_value(json_object_get(w, "used")),
		    json_integer_value(json_object_get(w, "remaining")), rs,
		    str(w, "source"));
		assert_true(off < len);
	}
	return (buf);
}

/*
 * GET usage of id at monotonic time mono; assert its windows, written as
 * windows_text() writes them ("" for none).
 */
static void
expect_windows(struct fx *f, const char *id, int64_t mono, const char *want)
{
	struct ks_key	 k;
	uint32_t	 slot;
	char		 p[96], got[512];

	assert_int_equal(keystore_find_id(&f->ks, id, &k, &slot), KS_OK);
	f->mono = mono;
	req(f, HTTP_M_GET, path_for(p, sizeof(p), "/v1/keys/%s/usage", id),
	    NULL);
	assert_int_equal(f->rs.as_status, 200);
	windows_text(f, slot, got, sizeof(got));
	f->mono = T_MONO;
	if (strcmp(got, want) != 0)
		fail_msg("usage windows at T_MONO%+lld:\n got  %s\n want %s",
		    (long long)(mono - T_MONO), got, want);
}

/* The reset (s) of window name in the last usage answer (-1: none). */
static json_int_t
window_reset(struct fx *f, const char *name)
{
	json_t	*w;
	size_t	 i;

	json_array_foreach(json_object_get(f->body, "windows"), i, w)
		if (strcmp(str(w, "window"), name) == 0)
			return (json_integer_value(json_object_get(w,
			    "reset")));
	return (-1);
}

/*
 * Admit n requests of the key id at mono through the limiter's state of
 * its slot, as the request path does, with the limits lim; returns how
 * many were admitted.
 */
static int
admit(struct fx *f, const char *id, int n, const uint32_t *lim, int64_t mono)
{
	struct ks_key	 k;
	struct rl_limits l;
	uint32_t	 slot;
	int		 i, ok = 0;

	assert_int_equal(keystore_find_id(&f->ks, id, &k, &slot), KS_OK);
	ratelimit_set(&l, lim);
	for (i = 0; i < n; i++)
		ok += ratelimit_admit(keystore_rate(&f->ks, slot, mono, 1), &l,
		    mono, NULL);
	return (ok);
}

/*
 * Usage windows: limits and their source, used, remaining, reset.  The
 * limiter counts a request for at least W and (its buckets being at most
 * W / 15 long) less than W + W / 15 + 1 ms: the times below are chosen so
 * that used does not depend on more than that.
 */
static void
test_usage_windows(void **state)
{
	static const uint32_t	 dflt[RL_WINDOWS] = { 20, 200, 1000 };
	static const uint32_t	 own[RL_WINDOWS] = { 5, 200, 5000 };
	struct fx		*f = *state;
	char			 a[KS_ID_LEN + 1], b[KS_ID_LEN + 1];
	char			 p[96];
	int64_t			 t;

	create(f, "{\"owner\":\"o\"}", a, NULL);
	create(f, "{\"owner\":\"o\",\"rate_limit\":{\"per_1s\":5,"
	    "\"per_60s\":5000}}", b, NULL);
	/* Nothing counted yet: reset 0. */
	expect_windows(f, a, T_MONO, "1s:20/0/20/0/default "
	    "10s:200/0/200/0/default 60s:1000/0/1000/0/default");
	expect_windows(f, b, T_MONO, "1s:5/0/5/0/key 10s:200/0/200/0/default "
	    "60s:5000/0/5000/0/key");
	assert_int_equal(admit(f, a, 3, dflt, T_MONO), 3);
	expect_windows(f, a, T_MONO, "1s:20/3/17/R/default "
	    "10s:200/3/197/R/default 60s:1000/3/997/R/default");
	/* Counted for at least the window: reset is at least its length. */
	assert_true(window_reset(f, "1s") >= 1);
	assert_true(window_reset(f, "10s") >= 10);
	assert_true(window_reset(f, "60s") >= 60);
	/* The other key's windows are its own. */
	expect_windows(f, b, T_MONO, "1s:5/0/5/0/key 10s:200/0/200/0/default "
	    "60s:5000/0/5000/0/key");
	/* The override is the limit: 5 admitted, the refused not counted. */
	assert_int_equal(admit(f, b, 7, own, T_MONO - 300), 5);
	expect_windows(f, b, T_MONO, "1s:5/5/0/R/key 10s:200/5/195/R/default "
	    "60s:5000/5/4995/R/key");
	/* Part of a second left rounds up. */
	expect_windows(f, a, T_MONO + 250, "1s:20/3/17/R/default "
	    "10s:200/3/197/R/default 60s:1000/3/997/R/default");
	assert_int_equal(window_reset(f, "1s"), 1);
	/* Once a window has passed, its requests no longer count. */
	expect_windows(f, a, T_MONO + 1068, "1s:20/0/20/0/default "
	    "10s:200/3/197/R/default 60s:1000/3/997/R/default");
	expect_windows(f, a, T_MONO + 10668, "1s:20/0/20/0/default "
	    "10s:200/0/200/0/default 60s:1000/3/997/R/default");
	expect_windows(f, a, T_MONO + 64001, "1s:20/0/20/0/default "
	    "10s:200/0/200/0/default 60s:1000/0/1000/0/default");
	/* New requests then count alone. */
	t = T_MONO + 64001;
	assert_int_equal(admit(f, a, 3, dflt, t), 3);
	expect_windows(f, a, t + 500, "1s:20/3/17/R/default "
	    "10s:200/3/197/R/default 60s:1000/3/997/R/default");
	/*
	 * A PATCH of the key's rate_limit shows at once, counts kept; a limit
	 * lowered below what is used leaves 0 remaining.
	 */
	req(f, HTTP_M_PATCH, path_for(p, sizeof(p), "/v1/keys/%s", a),
	    "{\"rate_limit\":{\"per_10s\":2}}");
	assert_int_equal(f->rs.as_status, 200);
	expect_windows(f, a, t + 500, "1s:20/3/17/R/default "
	    "10s:2/3/0/R/key 60s:1000/3/997/R/default");
	/* The largest limit the limiter enforces; one more is refused. */
	req(f, HTTP_M_PATCH, p, "{\"rate_limit\":{\"per_1s\":1000001}}");
	assert_int_equal(f->rs.as_status, 422);
	req(f, HTTP_M_PATCH, p, "{\"rate_limit\":{\"per_1s\":1000000}}");
	assert_int_equal(f->rs.as_status, 200);
	expect_windows(f, a, t, "1s:1000000/3/999997/R/key "
	    "10s:200/3/197/R/default 60s:1000/3/997/R/default");
	/* Windows enforced nowhere are left out: [] with rate_limit off. */
	memset(f->env.ae_rate, 0, sizeof(f->env.ae_rate));
	expect_windows(f, b, T_MONO, "1s:5/5/0/R/key 60s:5000/5/4995/R/key");
	req(f, HTTP_M_PATCH, p, "{\"rate_limit\":null}");
	assert_int_equal(f->rs.as_status, 200);
	expect_windows(f, a, t, "");
	f->env.ae_rate[1] = 50;
	expect_windows(f, a, t, "10s:50/3/47/R/default");
}

/* Verify: valid, each refusal, the key's identity when found. */
static void
test_verify(void **state)
{
	struct fx	*f = *state;
	char		 a[KS_ID_LEN + 1], sa[SECRET_MAX + 1];
	char		 sb[SECRET_MAX + 1];
	const int64_t	 exp = 1896091200000LL;	/* 2030-01-31T12:00:00Z */
	json_t		*o, *sc;

	create(f, "{\"owner\":\"acme\",\"app_id\":\"shop\",\"scopes\":[\"r\","
	    "\"w\"],\"expires_at\":\"2030-01-31T12:00:00Z\"}", a, sa);
	create(f, "{\"owner\":\"b\"}", NULL, sb);
	o = verify_at(f, sa, NULL, T_NOW);
	assert_true(json_is_true(json_object_get(o, "valid")));
	assert_true(json_is_null(json_object_get(o, "code")));
	assert_string_equal(str(o, "key_id"), a);
	assert_string_equal(str(o, "owner"), "acme");
	sc = json_object_get(o, "scopes");
	assert_int_equal(json_array_size(sc), 2);
	assert_string_equal(json_string_value(json_array_get(sc, 1)), "w");
	assert_string_equal(str(o, "expires_at"), "2030-01-31T12:00:00.000Z");
	o = verify_at(f, sa, "shop", T_NOW);
	assert_true(json_is_true(json_object_get(o, "valid")));
	o = verify_at(f, sa, "other", T_NOW);
	assert_string_equal(str(o, "code"), "invalid_credentials");
	assert_string_equal(str(o, "key_id"), a);
	o = verify_at(f, sb, "shop", T_NOW);
	assert_string_equal(str(o, "code"), "invalid_credentials");
	o = verify_at(f, sa, NULL, exp - 1);
	assert_true(json_is_true(json_object_get(o, "valid")));
	o = verify_at(f, sa, NULL, exp);
	assert_string_equal(str(o, "code"), "expired_credentials");
	assert_string_equal(str(o, "owner"), "acme");
	o = verify_at(f, "live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL, T_NOW);
	assert_true(json_is_false(json_object_get(o, "valid")));
	assert_string_equal(str(o, "code"), "invalid_credentials");
	assert_true(json_is_null(json_object_get(o, "key_id")));
	assert_true(json_is_null(json_object_get(o, "owner")));
	assert_true(json_is_null(json_object_get(o, "scopes")));
	assert_true(json_is_null(json_object_get(o, "expires_at")));
	o = verify_at(f, "", NULL, T_NOW);
	assert_string_equal(str(o, "code"), "malformed_credentials");
	o = verify_at(f, "live_ab cd", NULL, T_NOW);
	assert_string_equal(str(o, "code"), "malformed_credentials");
	req(f, HTTP_M_POST, "/v1/verify", "{\"key\":\"x\",\"app_id\":null}");
	assert_int_equal(f->rs.as_status, 200);
	/* Bodies. */
	req(f, HTTP_M_POST, "/v1/verify", "{}");
	expect_error(f, 422, "invalid_field", "key");
	req(f, HTTP_M_POST, "/v1/verify", "{\"key\":5}");
	expect_error(f, 422, "invalid_field", "key");
	req(f, HTTP_M_POST, "/v1/verify", "{\"key\":null}");
	expect_error(f, 422, "invalid_field", "key");
	req(f, HTTP_M_POST, "/v1/verify", "{\"key\":\"x\",\"foo\":1}");
	expect_error(f, 422, "invalid_field", "foo");
	req(f, HTTP_M_POST, "/v1/verify", "{\"key\":\"x\",\"app_id\":5}");
	expect_error(f, 422, "invalid_field", "app_id");
	req(f, HTTP_M_POST, "/v1/verify", "{\"key\":\"x\",\"app_id\":\"\"}");
	expect_error(f, 422, "invalid_field", "app_id");
	assert_int_equal(journal_lines(f), 2);
}

/*
 * A journal that cannot be written (/dev/full): 503, and neither memory
 * nor the file changes; writes work again once the disk does.
 */
static void
test_storage_unavailable(void **state)
{
	struct fx	*f = *state;
	char		 id[KS_ID_LEN + 1], sec[SECRET_MAX + 1], p[96];
	char		*before;
	uint64_t	 applied;
	json_t		*o;
	int		 fd;

	create(f, "{\"owner\":\"o\",\"name\":\"kept\"}", id, sec);
	path_for(p, sizeof(p), "/v1/keys/%s", id);
	req(f, HTTP_M_GET, p, NULL);
	assert_non_null(before = strdup(f->rs.as_body));
	applied = f->ks.ks_hdr->kh_applied;
	assert_true((fd = open("/dev/full", O_WRONLY | O_APPEND)) != -1);
	journal_close(&f->j);
	assert_int_equal(journal_init(&f->j, f->dir, (uid_t)-1, (gid_t)-1), 0);
	f->j.j_fd = fd;
	req(f, HTTP_M_POST, "/v1/keys", "{\"owner\":\"o\"}");
	expect_error(f, 503, "storage_unavailable", NULL);
	assert_non_null(strstr(str(f->body, "message"),
	    "the key could not be stored: "));
	assert_int_equal(keystore_count(&f->ks), 1);
	req(f, HTTP_M_PATCH, p, "{\"name\":\"changed\"}");
	expect_error(f, 503, "storage_unavailable", NULL);
	req(f, HTTP_M_DELETE, p, NULL);
	expect_error(f, 503, "storage_unavailable", NULL);
	req(f, HTTP_M_POST, path_for(p, sizeof(p), "/v1/keys/%s/regenerate",
	    id), "{\"grace_seconds\":10}");
	expect_error(f, 503, "storage_unavailable", NULL);
	/* Unchanged: same record, same secret, same sequence. */
	req(f, HTTP_M_GET, path_for(p, sizeof(p), "/v1/keys/%s", id), NULL);
	assert_string_equal(f->rs.as_body, before);
	o = verify_at(f, sec, NULL, T_NOW);
	assert_true(json_is_true(json_object_get(o, "valid")));
	assert_int_equal(f->ks.ks_hdr->kh_applied, applied);
	assert_int_equal(journal_lines(f), 1);
	/*
	 * An import: its new keys (one write for all) fail together, each
	 * line says so, the unchanged one does not; memory stays as it was.
	 */
	req(f, HTTP_M_POST, "/v1/keys/import",
	    "{\"owner\":\"o\",\"secret\":\"import-full-1\"}\n"
	    "{\"owner\":\"o\",\"secret\":\"import-full-2\"}\n"
	    "{\"owner\":\"o\",\"secret\":\"short\"}\n");
	expect_line(f, 0, 1, "error", "storage_unavailable", NULL);
	expect_line(f, 1, 2, "error", "storage_unavailable", NULL);
	expect_line(f, 2, 3, "error", "invalid_field", "secret");
	assert_int_equal(keystore_count(&f->ks), 1);
	assert_int_equal(f->ks.ks_hdr->kh_applied, applied);
	assert_false(auth_ok(f, "import-full-1", NULL));
	/* The disk is back: the journal is reopened. */
	close(f->j.j_fd);
	f->j.j_fd = -1;
	create(f, "{\"owner\":\"o\"}", NULL, NULL);
	req(f, HTTP_M_PATCH, p, "{\"name\":\"changed\"}");
	assert_int_equal(f->rs.as_status, 200);
	assert_int_equal(journal_lines(f), 3);
	check_replay(f);
	free(before);
}

/* A full store: 507 before anything is written. */
static void
test_full(void **state)
{
	struct fx	*f = *state;
	char		 id[KS_ID_LEN + 1], p[96];
	json_t		*h;

	create(f, "{\"owner\":\"o\"}", id, NULL);
	create(f, "{\"owner\":\"o\"}", NULL, NULL);
	create(f, "{\"owner\":\"o\"}", NULL, NULL);
	req(f, HTTP_M_POST, "/v1/keys", "{\"owner\":\"o\"}");
	expect_error(f, 507, "key_store_full", NULL);
	assert_string_equal(str(f->body, "message"), "the key store is full "
	    "(max_keys 3); delete keys or raise max_keys");
	assert_int_equal(journal_lines(f), 3);
	h = req(f, HTTP_M_GET, "/v1/health", NULL);
	assert_int_equal(json_integer_value(json_object_get(h, "keys")), 3);
	assert_int_equal(json_integer_value(json_object_get(h, "max_keys")), 3);
	req(f, HTTP_M_DELETE, path_for(p, sizeof(p), "/v1/keys/%s", id), NULL);
	assert_int_equal(f->rs.as_status, 204);
	create(f, "{\"owner\":\"o\"}", NULL, NULL);
	check_replay(f);
}

/* A slot left mid-write (its writer died): 503 key_store_busy. */
static void
test_busy_slot(void **state)
{
	struct fx	*f = *state;
	char		 id[KS_ID_LEN + 1], sec[SECRET_MAX + 1], p[96];
	struct ks_key	 k;
	uint32_t	 slot;

	create(f, "{\"owner\":\"o\"}", id, sec);
	assert_int_equal(keystore_find_id(&f->ks, id, &k, &slot), KS_OK);
	f->ks.ks_slots[slot].s_seq++;
	req(f, HTTP_M_GET, path_for(p, sizeof(p), "/v1/keys/%s", id), NULL);
	expect_error(f, 503, "key_store_busy", NULL);
	req(f, HTTP_M_POST, "/v1/verify", "{\"key\":\"x\"}");
	req(f, HTTP_M_POST, "/v1/verify", "{\"key\":\"live_AAAAAAAAAAAAAAAAAAA"
	    "AAAAAAAAAAAAA\"}");
	assert_true(f->rs.as_status == 200 || f->rs.as_status == 503);
	verify_at(f, "", NULL, T_NOW);
	f->ks.ks_slots[slot].s_seq++;
	req(f, HTTP_M_GET, p, NULL);
	assert_int_equal(f->rs.as_status, 200);
}

/*
 * The writer lock held by another process past ADMIN_LOCK_TIMEOUT: 503
 * key_store_busy and nothing written.  (This test waits for the timeout,
 * 5 s, inside keystore_lock.)
 */
static void
test_busy_lock(void **state)
{
	struct fx	*f = *state;

	f->ks.ks_hdr->kh_lock = (int32_t)getpid() + 1;
	req(f, HTTP_M_POST, "/v1/keys", "{\"owner\":\"o\"}");
	expect_error(f, 503, "key_store_busy", NULL);
	assert_int_equal(keystore_count(&f->ks), 0);
	assert_int_equal(journal_lines(f), 0);
	f->ks.ks_hdr->kh_lock = 0;
	create(f, "{\"owner\":\"o\"}", NULL, NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name)	cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)
		T(test_openapi_document),
		T(test_schema_walker),
		T(test_health),
		T(test_status_empty),
		T(test_status),
		T(test_metrics),
		T(test_auth),
		T(test_auth_throttle),
		T(test_routing),
		T(test_create_defaults),
		T(test_create_full),
		T(test_create_byo),
		T(test_import),
		T(test_idempotency),
		T(test_idempotency_replay),
		cmocka_unit_test_setup_teardown(test_import_full,
		    fx_setup_tiny, fx_teardown),
		T(test_create_byo_invalid),
		T(test_create_invalid),
		T(test_bad_json),
		T(test_times),
		T(test_list),
		T(test_list_filters),
		T(test_ui),
		T(test_gateway),
		T(test_list_invalid),
		T(test_patch),
		T(test_patch_invalid),
		T(test_delete),
		T(test_regenerate),
		T(test_regenerate_grace),
		T(test_regenerate_invalid),
		T(test_usage),
		T(test_usage_history),
		T(test_usage_windows),
		T(test_verify),
		T(test_storage_unavailable),
		cmocka_unit_test_setup_teardown(test_full, fx_setup_tiny,
		    fx_teardown),
		T(test_busy_slot),
		T(test_busy_lock),
#undef T
	};
	json_error_t	 je;

	if ((doc = json_loads(admin_openapi_json, 0, &je)) == NULL) {
		fprintf(stderr, "admin_openapi_json: line %d: %s\n", je.line,
		    je.text);
		return (1);
	}
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
