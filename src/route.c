/*
 * Routes: method sets, PCRE2 patterns and auth= lists, and the first-match
 * search over the route array.  See route.h.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "jwt.h"
#include "route.h"

/* Method names accepted in a route, as written (case-sensitive). */
static const char *const route_methods[] = {
	"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE",
	"CONNECT", NULL
};

/* Index of the len bytes at s in the NULL-terminated list, or -1. */
static int
route_lookup(const char *const *list, const char *s, size_t len)
{
	int	 i;

	for (i = 0; list[i] != NULL; i++)
		if (strlen(list[i]) == len && memcmp(list[i], s, len) == 0)
			return (i);
	return (-1);
}

/* Compile pattern into r; see route.h. */
int
route_compile(struct route *r, const char *pattern, char *err, size_t errlen)
{
	PCRE2_UCHAR	 msg[256];
	PCRE2_SIZE	 off;
	int		 code;

	r->r_code = NULL;
	r->r_jit = 0;
	if ((r->r_pattern = strdup(pattern)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return (-1);
	}
	r->r_code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
	    0, &code, &off, NULL);
	if (r->r_code == NULL) {
		if (pcre2_get_error_message(code, msg, sizeof(msg)) < 0)
			snprintf((char *)msg, sizeof(msg), "error %d", code);
		snprintf(err, errlen, "bad regex \"%s\": %s at offset %zu",
		    pattern, (char *)msg, (size_t)off);
		free(r->r_pattern);
		r->r_pattern = NULL;
		return (-1);
	}
	/*
	 * JIT is an optimisation: a library built without it, or a pattern it
	 * cannot handle, leaves the interpreter, which gives the same answers.
	 */
	if (pcre2_jit_compile(r->r_code, PCRE2_JIT_COMPLETE) == 0)
		r->r_jit = 1;
	return (0);
}

/* Parse a comma list of method names, or "*", into HTTP_M_* bits. */
int
route_parse_methods(const char *s, int *methods, char *err, size_t errlen)
{
	const char	*p, *end;
	size_t		 len;
	int		 bit;

	*methods = 0;
	if (strcmp(s, "*") == 0) {
		*methods = HTTP_M_ANY;
		return (0);
	}
	for (p = s;; p = end + 1) {
		end = strchr(p, ',');
		len = end != NULL ? (size_t)(end - p) : strlen(p);
		if (len == 0) {
			snprintf(err, errlen, "empty method in \"%s\"", s);
			return (-1);
		}
		if (route_lookup(route_methods, p, len) == -1 ||
		    (bit = http_method_bit(p, len)) == 0 ||
		    bit == HTTP_M_OTHER) {
			snprintf(err, errlen, "unknown method \"%.*s\"",
			    (int)len, p);
			return (-1);
		}
		if (*methods & bit) {
			snprintf(err, errlen, "duplicate method \"%.*s\"",
			    (int)len, p);
			return (-1);
		}
		*methods |= bit;
		if (end == NULL)
			return (0);
	}
}

/* Is the len bytes at s a jwt_provider name, [A-Za-z0-9_-]{1,32}? */
static int
route_jwt_name_ok(const char *s, size_t len)
{
	size_t	 i;

	if (len == 0 || len > JWT_NAME_MAX)
		return (0);
	for (i = 0; i < len; i++)
		if (!(s[i] >= 'a' && s[i] <= 'z') &&
		    !(s[i] >= 'A' && s[i] <= 'Z') &&
		    !(s[i] >= '0' && s[i] <= '9') && s[i] != '_' && s[i] != '-')
			return (0);
	return (1);
}

/* Scheme named by the len bytes at s, 0 if none; err says why. */
static int
route_auth_scheme(const char *s, size_t len, char *err, size_t errlen)
{
	if (len == 9 && memcmp(s, "anonymous", len) == 0)
		return (ROUTE_AUTH_ANONYMOUS);
	if (len == 4 && memcmp(s, "deny", len) == 0)
		return (ROUTE_AUTH_DENY);
	if (len == 7 && memcmp(s, "api-key", len) == 0)
		return (ROUTE_AUTH_API_KEY);
	if (len == 7 && memcmp(s, "app-key", len) == 0)
		return (ROUTE_AUTH_APP_KEY);
	if (len == 3 && memcmp(s, "jwt", len) == 0)
		return (ROUTE_AUTH_JWT);
	if (len > 4 && memcmp(s, "jwt:", 4) == 0) {
		if (route_jwt_name_ok(s + 4, len - 4))
			return (ROUTE_AUTH_JWT);
		snprintf(err, errlen, "invalid jwt_provider name in \"%.*s\" "
		    "(expected 1 to %d letters, digits, '_' or '-')", (int)len,
		    s, JWT_NAME_MAX);
		return (0);
	}
	snprintf(err, errlen, "unknown auth scheme \"%.*s\"", (int)len, s);
	return (0);
}

/*
 * May item (len bytes at s, of scheme a) join the n items already in r,
 * whose texts are at is[] and il[]?  A scheme may appear once, except
 * jwt:NAME, once per NAME.  Plain jwt accepts every provider, so it
 * cannot be listed with a jwt:NAME: which of the two would decide?
 */
static int
route_auth_dup(const struct route *r, const char **is, const size_t *il,
    int a, const char *s, size_t len, char *err, size_t errlen)
{
	int	 i;

	for (i = 0; i < r->r_nauth; i++) {
		if ((int)r->r_auth[i] != a)
			continue;
		if (a == ROUTE_AUTH_JWT && il[i] != len &&
		    (il[i] == 3 || len == 3)) {
			snprintf(err, errlen, "auth schemes \"%.*s\" and "
			    "\"%.*s\" together are ambiguous (\"jwt\" accepts "
			    "every jwt_provider)", (int)il[i], is[i], (int)len,
			    s);
			return (-1);
		}
		if (a != ROUTE_AUTH_JWT ||
		    (il[i] == len && memcmp(is[i], s, len) == 0)) {
			snprintf(err, errlen, "duplicate auth scheme \"%.*s\"",
			    (int)len, s);
			return (-1);
		}
	}
	return (0);
}

/*
 * Parse a comma list of auth schemes into r_auth/r_nauth.  r_jwt is -1
 * for every scheme but jwt:NAME, which gets ROUTE_JWT_UNRESOLVED: only
 * the configuration knows the providers, and it replaces that by the
 * provider's index once the whole file is read.
 */
int
route_parse_auth(struct route *r, const char *s, char *err, size_t errlen)
{
	const char	*p, *end, *is[ROUTE_MAX_AUTH];
	size_t		 len, il[ROUTE_MAX_AUTH];
	int		 a;

	r->r_nauth = 0;
	for (p = s;; p = end + 1) {
		end = strchr(p, ',');
		len = end != NULL ? (size_t)(end - p) : strlen(p);
		if (len == 0) {
			snprintf(err, errlen, "empty auth scheme in \"%s\"", s);
			return (-1);
		}
		if ((a = route_auth_scheme(p, len, err, errlen)) == 0 ||
		    route_auth_dup(r, is, il, a, p, len, err, errlen) == -1)
			return (-1);
		if (r->r_nauth == ROUTE_MAX_AUTH) {
			snprintf(err, errlen, "too many auth schemes in \"%s\"",
			    s);
			return (-1);
		}
		is[r->r_nauth] = p;
		il[r->r_nauth] = len;
		r->r_jwt[r->r_nauth] = a == ROUTE_AUTH_JWT && len > 3 ?
		    ROUTE_JWT_UNRESOLVED : -1;
		r->r_auth[r->r_nauth++] = a;
		if (end == NULL)
			return (0);
	}
}

/* Name of a scheme as written in the configuration. */
const char *
route_auth_name(enum route_auth a)
{
	switch (a) {
	case ROUTE_AUTH_ANONYMOUS:
		return ("anonymous");
	case ROUTE_AUTH_DENY:
		return ("deny");
	case ROUTE_AUTH_API_KEY:
		return ("api-key");
	case ROUTE_AUTH_APP_KEY:
		return ("app-key");
	case ROUTE_AUTH_JWT:
		return ("jwt");
	}
	return ("unknown");
}

/* Allocate the match data shared by every route of the table. */
int
route_table_init(struct route_table *rt)
{
	if (rt->rt_md != NULL)
		return (0);
	if ((rt->rt_md = pcre2_match_data_create(1, NULL)) == NULL)
		return (-1);
	return (0);
}

/*
 * First route whose method set contains mbit and whose pattern matches the
 * len bytes of path, in *rp (NULL when none does).  Patterns are unanchored
 * unless written with ^ or $, like grep.  A matching error (the match
 * limit, depth limit or JIT stack reached by a pathological pattern) is
 * not "no match": a later, weaker route would then decide the request.
 * The search stops there instead, *rp is the route whose pattern failed,
 * err says why, and -1 is returned; the caller refuses the request.
 */
int
route_match(const struct route_table *rt, int mbit, const char *path,
    size_t len, const struct route **rp, char *err, size_t errlen)
{
	const struct route	*r;
	PCRE2_SPTR		 subj;
	PCRE2_UCHAR		 msg[128];
	size_t			 i;
	int			 rc;

	*rp = NULL;
	if (rt->rt_md == NULL)
		return (0);
	subj = (PCRE2_SPTR)(path != NULL ? path : "");
	for (i = 0; i < rt->rt_nroutes; i++) {
		r = &rt->rt_routes[i];
		if ((r->r_methods & mbit) == 0 || r->r_code == NULL)
			continue;
		if (r->r_jit)
			rc = pcre2_jit_match(r->r_code, subj, len, 0, 0,
			    rt->rt_md, NULL);
		else
			rc = pcre2_match(r->r_code, subj, len, 0, 0,
			    rt->rt_md, NULL);
		if (rc == PCRE2_ERROR_NOMATCH)
			continue;
		*rp = r;
		if (rc >= 0)
			return (0);
		if (pcre2_get_error_message(rc, msg, sizeof(msg)) < 0)
			snprintf((char *)msg, sizeof(msg), "error %d", rc);
		snprintf(err, errlen, "route %d (line %d): pattern \"%s\" "
		    "failed: %s", r->r_index, r->r_line, r->r_pattern,
		    (char *)msg);
		return (-1);
	}
	return (0);
}

/* Free compiled patterns, the array and the match data. */
void
route_table_free(struct route_table *rt)
{
	size_t	 i;
	int	 j;

	for (i = 0; i < rt->rt_nroutes; i++) {
		pcre2_code_free(rt->rt_routes[i].r_code);
		free(rt->rt_routes[i].r_pattern);
		free(rt->rt_routes[i].r_name);
		free(rt->rt_routes[i].r_from);
		for (j = 0; j < rt->rt_routes[i].r_nscopes; j++)
			free(rt->rt_routes[i].r_scopes[j]);
	}
	free(rt->rt_routes);
	pcre2_match_data_free(rt->rt_md);
	rt->rt_routes = NULL;
	rt->rt_nroutes = 0;
	rt->rt_md = NULL;
}
