/*
 * Reading the keys another gateway left behind, for keygatectl import
 * (and the fuzz target): each parser turns a buffer into key objects of
 * POST /v1/keys/import (doc/openapi.json, KeyImport) and hands them, one
 * by one, with where they came from ("line 12"), to a callback.  An entry
 * that cannot become a key is reported to the warning callback and
 * skipped; only an input that cannot be read at all (a CSV without a
 * usable header, YAML that does not parse) fails the whole parse.
 *
 *	ndjson		one key object per line, as the API takes it
 *	csv		RFC 4180 with a header naming the columns: id, secret,
 *			secret_sha256, hint, name, owner, app_id, scopes
 *			(space-separated), expires_at (or expires), prefix,
 *			disabled (true/false)
 *	nginx-map	map $http_x_api_key $client { "SECRET" OWNER; ... }:
 *			each entry a key of owner (and name) OWNER; default,
 *			hostnames, volatile are skipped, regex (~) and include
 *			entries skipped with a warning
 *	kong		a decK export, YAML (libyaml) or JSON: consumers[]
 *			username (else custom_id) -> owner,
 *			keyauth_credentials[].key -> secret, acls[].group ->
 *			scopes
 *
 * The input holds plaintext secrets: the parsers wipe their own copies
 * (OPENSSL_cleanse) and the caller wipes the buffer and makes jansson
 * wipe what it frees (secret_json_wipe).  No message quotes a secret.
 */
#ifndef KEYGATE_IMPORT_H
#define KEYGATE_IMPORT_H

#include <stddef.h>

#include <jansson.h>

#define IMPORT_WHERE_MAX	128	/* "consumer \"...\", key 2" */
#define IMPORT_NODES_MAX	(4 * 1024 * 1024)	/* YAML nodes walked */
#define IMPORT_DEPTH_MAX	64	/* YAML nesting */

enum import_format {
	IMPORT_NDJSON,
	IMPORT_CSV,
	IMPORT_NGINX_MAP,
	IMPORT_KONG
};

struct import_sink {
	/* A key object (a reference the callee takes) from where; 0 or -1 to stop. */
	int	(*is_key)(void *, json_t *, const char *);
	/* An entry at where that was skipped, and why. */
	void	(*is_warn)(void *, const char *, const char *);
	void	*is_arg;
};

/* The format named s ("ndjson", "csv", "nginx-map", "kong"); 0 or -1. */
int	 import_format_parse(const char *, enum import_format *);

/* The format a file name's extension suggests; 0, or -1 if none does. */
int	 import_format_guess(const char *, enum import_format *);

/* The format's name. */
const char *import_format_name(enum import_format);

/*
 * Parse buf[0..len) as format, calling the sink for every entry.  0, or
 * -1 with a reason in err when the input cannot be read at all or the
 * sink asked to stop.
 */
int	 import_parse(enum import_format, const char *, size_t,
	    const struct import_sink *, char *, size_t);

int	 import_ndjson(const char *, size_t, const struct import_sink *,
	    char *, size_t);
int	 import_csv(const char *, size_t, const struct import_sink *, char *,
	    size_t);
int	 import_nginx_map(const char *, size_t, const struct import_sink *,
	    char *, size_t);
int	 import_kong(const char *, size_t, const struct import_sink *, char *,
	    size_t);

#endif /* KEYGATE_IMPORT_H */
