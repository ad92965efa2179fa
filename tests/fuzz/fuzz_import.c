/*
 * libFuzzer target for keygatectl import's parsers (src/import.c).  The
 * server's handling of the NDJSON lines they produce is fuzzed by
 * fuzz_admin (POST /v1/keys/import in its mode 5).
 *
 * The first input byte picks the parser (byte % 4: ndjson, csv,
 * nginx-map, kong), the rest is the file.  Every parse must end, and:
 *
 * - every key handed to the sink is a JSON object whose members are of
 *   the key schema's names, and it is passed on with a "where" that is
 *   NUL-terminated, non-empty and shorter than IMPORT_WHERE_MAX;
 * - every warning has a where and a non-empty reason;
 * - a failed parse says why (err non-empty);
 * - a parse is deterministic: the same input gives the same keys (as
 *   JSON text), warnings and outcome a second time.
 *
 * AddressSanitizer watches the CSV and nginx lexers' bounds and the YAML
 * walk; its leak check covers the sink's references.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "import.h"
#include "fuzz.h"

/* Members a key object may have (POST /v1/keys/import, KeyImport). */
static const char *const fz_members[] = {
	"id", "secret", "secret_sha256", "hint", "name", "owner", "app_id",
	"scopes", "expires_at", "prefix", "disabled", "rate_limit", NULL
};

/* What one parse handed out, as text, to compare two runs. */
struct fz_run {
	char	*r_text;
	size_t	 r_len;
	FILE	*r_fp;
	size_t	 r_keys;
	size_t	 r_warns;
	int	 r_ndjson;
};

/* Is where a usable location? */
static void
fz_where(const char *where)
{
	size_t	 n;

	FUZZ_ASSERT(where != NULL);
	n = strlen(where);
	FUZZ_ASSERT(n > 0 && n < IMPORT_WHERE_MAX);
}

/* Sink: check a key object and write it down. */
static int
fz_key(void *arg, json_t *key, const char *where)
{
	struct fz_run	*r = arg;
	const char	*name;
	json_t		*v;
	size_t		 i;

	fz_where(where);
	FUZZ_ASSERT(json_is_object(key));
	json_object_foreach(key, name, v) {
		for (i = 0; fz_members[i] != NULL; i++)
			if (strcmp(name, fz_members[i]) == 0)
				break;
		/* NDJSON lines are passed on as written: any member. */
		FUZZ_ASSERT(r->r_ndjson || fz_members[i] != NULL);
		FUZZ_ASSERT(v != NULL);
	}
	fprintf(r->r_fp, "K %s ", where);
	json_dumpf(key, r->r_fp, JSON_COMPACT | JSON_SORT_KEYS |
	    JSON_ENCODE_ANY);
	fputc('\n', r->r_fp);
	r->r_keys++;
	json_decref(key);
	return (0);
}

/* Sink: check a warning and write it down. */
static void
fz_warn(void *arg, const char *where, const char *msg)
{
	struct fz_run	*r = arg;

	fz_where(where);
	FUZZ_ASSERT(msg != NULL && msg[0] != '\0');
	fprintf(r->r_fp, "W %s %s\n", where, msg);
	r->r_warns++;
}

/* One parse of p[0..n) as f into r; its outcome. */
static int
fz_parse(enum import_format f, const char *p, size_t n, struct fz_run *r)
{
	struct import_sink	 sk;
	char			 err[512];
	int			 rc;

	memset(r, 0, sizeof(*r));
	r->r_ndjson = f == IMPORT_NDJSON;
	FUZZ_ASSERT((r->r_fp = open_memstream(&r->r_text, &r->r_len)) !=
	    NULL);
	sk.is_key = fz_key;
	sk.is_warn = fz_warn;
	sk.is_arg = r;
	err[0] = '\0';
	rc = import_parse(f, p, n, &sk, err, sizeof(err));
	FUZZ_ASSERT(rc == 0 || rc == -1);
	if (rc == -1) {
		FUZZ_ASSERT(err[0] != '\0');
		fprintf(r->r_fp, "E %s\n", err);
	}
	fclose(r->r_fp);
	return (rc);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum import_format	 fmts[] = {
		IMPORT_NDJSON, IMPORT_CSV, IMPORT_NGINX_MAP, IMPORT_KONG
	};
	struct fz_run			 a, b;
	enum import_format		 f;
	const char			*p;
	size_t				 n;
	int				 rca, rcb;

	if (size == 0)
		return (0);
	f = fmts[data[0] % 4];
	p = (const char *)data + 1;
	n = size - 1;
	rca = fz_parse(f, p, n, &a);
	rcb = fz_parse(f, p, n, &b);
	FUZZ_ASSERT(rca == rcb);
	FUZZ_ASSERT(a.r_len == b.r_len && memcmp(a.r_text, b.r_text,
	    a.r_len) == 0);
	free(a.r_text);
	free(b.r_text);
	return (0);
}
