/*
 * Routes: "route METHODS PATTERN auth=SCHEMES [scope=A,B] [rate=LIMITS]
 * [upstream=NAME]".
 * PCRE2 patterns are compiled (and JIT-compiled where the library supports
 * it) once per configuration load; matching walks the array in order and
 * the first route whose method set contains the request's method and whose
 * pattern matches the path (query excluded) wins.
 */
#ifndef KEYGATE_ROUTE_H
#define KEYGATE_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "realip.h"

/* Authentication schemes a route may list in auth=. */
enum route_auth {
	ROUTE_AUTH_ANONYMOUS = 1,
	ROUTE_AUTH_DENY,
	ROUTE_AUTH_API_KEY,
	ROUTE_AUTH_APP_KEY,
	ROUTE_AUTH_JWT
};
#define ROUTE_MAX_AUTH	5
#define ROUTE_MAX_SCOPES 16

struct upstream;

struct route {
	int		 r_methods;	/* HTTP_M_* bits */
	char		*r_pattern;	/* as written in the configuration */
	pcre2_code	*r_code;
	int		 r_jit;		/* r_code was JIT-compiled */
	enum route_auth	 r_auth[ROUTE_MAX_AUTH];
	/*
	 * For each ROUTE_AUTH_JWT in r_auth: the provider (jp_index) of
	 * "jwt:NAME", or -1 for plain "jwt" (any provider).
	 */
	int		 r_jwt[ROUTE_MAX_AUTH];
#define ROUTE_JWT_UNRESOLVED	(-2)	/* jwt:NAME before the config resolves
					   NAME; never left in a loaded config */
	int		 r_nauth;
	char		*r_scopes[ROUTE_MAX_SCOPES];	/* scope=: all required */
	int		 r_nscopes;
	/*
	 * rate=: per window, 0 inherits (rate_limit, or anonymous_rate_limit
	 * for anonymous requests); a key's own limit beats both.  rate=off
	 * sets r_rate_off: nothing on the route is limited.
	 */
	uint32_t	 r_rate[3];	/* 1s 10s 60s (RL_WINDOWS) */
	int		 r_rate_off;
	struct upstream	*r_upstream;	/* NULL for deny-only routes */
	int		 r_line;	/* configuration line, for messages */
	int		 r_index;	/* 1-based position, for the access log */
	char		*r_name;	/* name=, default "route<N>": metrics, log */
	struct cidr	*r_from;	/* from=: client addresses allowed, */
	size_t		 r_nfrom;	/* matched on the real client; none: all */
	uint32_t	 r_stat_id;	/* its metrics id (stats.h), set by the */
					/* master before workers start */
};

struct route_table {
	struct route	*rt_routes;
	size_t		 rt_nroutes;
	pcre2_match_data *rt_md;	/* one per process, routes match serially */
};

/*
 * Compile pattern into r (r_pattern is set to a copy).  Returns 0, or -1 with
 * a message in err ("bad regex \"PAT\": reason at offset N").
 */
int	 route_compile(struct route *, const char *, char *, size_t);

/* Parse "GET,HEAD" or "*" into HTTP_M_* bits; -1 with err on a bad name. */
int	 route_parse_methods(const char *, int *, char *, size_t);

/*
 * Parse "anonymous,deny,jwt:NAME" into r_auth and r_jwt (-1, or
 * ROUTE_JWT_UNRESOLVED for jwt:NAME); -1 with err on an unknown scheme.
 */
int	 route_parse_auth(struct route *, const char *, char *, size_t);

/* Name of a scheme as written in the configuration. */
const char *route_auth_name(enum route_auth);

/* Allocate the table's match data; -1 on allocation failure. */
int	 route_table_init(struct route_table *);

/*
 * First route matching method bit mbit and path, in *rp (NULL when none
 * does): 0.  -1 when a pattern could not be matched (a PCRE2 limit), with
 * that route in *rp and the reason in err: the request must be refused.
 */
int	 route_match(const struct route_table *, int, const char *, size_t,
	    const struct route **, char *, size_t);

/* Free compiled patterns and the array. */
void	 route_table_free(struct route_table *);

#endif /* KEYGATE_ROUTE_H */
