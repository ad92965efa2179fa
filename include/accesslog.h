/*
 * Access log: one JSON object per line, written with one write(2) to a
 * file opened O_APPEND, so lines from several workers never interleave.
 * Only the path is logged, never the query string or a header: either may
 * carry a credential.  A request made with a known key logs its public id;
 * one made with a JWT, its identity claim (escaped); never the token.
 */
#ifndef KEYGATE_ACCESSLOG_H
#define KEYGATE_ACCESSLOG_H

#include <stddef.h>
#include <stdint.h>

struct accesslog_entry {
	int64_t		 ae_time_ms;	/* when the request started, wall clock */
	const char	*ae_client;
	const char	*ae_method;
	size_t		 ae_methodlen;
	const char	*ae_path;
	size_t		 ae_pathlen;
	int		 ae_route;	/* 1-based route index, 0 = none */
	const char	*ae_route_name;	/* its name= (metrics'), NULL: none */
	int		 ae_status;
	uint64_t	 ae_bytes;	/* response bytes, headers included */
	int64_t		 ae_duration_us;
	const char	*ae_reqid;
	size_t		 ae_reqidlen;
	const char	*ae_key;	/* key id ([A-Za-z0-9_] only), "" or NULL */
	const char	*ae_scheme;	/* scheme that decided ("api-key", */
					/* "jwt"...), or NULL */
	const char	*ae_identity;	/* a JWT's identity claim, "" or NULL */
	int64_t		 ae_rate_ms;	/* when a rate limit decided: its */
					/* clock as wall time; 0: no limit */
	const char	*ae_tls;	/* TLS version ("TLSv1.3"), NULL: */
					/* plain */
	int		 ae_tls_resumed;	/* its session was resumed */
};

struct accesslog;

/* Open path for appending (mode 0640); NULL with a reason in err. */
struct accesslog *accesslog_open(const char *, char *, size_t);
/* Open the path again (after rotation); 0 or -1. */
int		 accesslog_reopen(struct accesslog *);
void		 accesslog_write(struct accesslog *, const struct accesslog_entry *);
void		 accesslog_close(struct accesslog *);

/* Format an entry as one line (with '\n'); returns its length or 0. */
size_t		 accesslog_format(char *, size_t, const struct accesslog_entry *);

#endif /* KEYGATE_ACCESSLOG_H */
