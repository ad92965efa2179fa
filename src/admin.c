/*
 * The admin API: routing, the bearer token, JSON bodies in and out, and
 * the key operations on the shared key store and its journal.  See admin.h
 * for the endpoints and doc/openapi.json for every body.
 *
 * Secrets: a new secret lives in a stack buffer that is cleansed before the
 * handler returns, and it is spliced into the response text by hand rather
 * than through a jansson object, so the only other copy is the response
 * body, which admin_response_free() cleanses too.  No message, log line or
 * error body ever contains a secret or the admin token.
 */

#include <sys/types.h>
#include <sys/uio.h>

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "admin.h"
#include "cluster.h"
#include "auth.h"
#include "http.h"
#include "idem.h"
#include "journal.h"
#include "jwks.h"
#include "jwtauth.h"
#include "keystore.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "secret.h"
#include "stats.h"
#include "ui.h"
#include "usage.h"
#include "util.h"

#define ADMIN_JSON		"application/json"
#define ADMIN_NDJSON		"application/x-ndjson"
#define ADMIN_CHALLENGE		"Bearer realm=\"keygate-admin\""
#define ADMIN_MSGLEN		256
#define ADMIN_FIELDLEN		96
#define ADMIN_TRIES		8	/* fresh ids/secrets drawn on a clash */
#define ADMIN_CLUSTER_TRIES	3	/* a write the cluster found stale */
#define ADMIN_GRACE_MAX		2592000	/* s: 30 days */
#define ADMIN_RATE_MAX		RL_MAXLIMIT	/* what the limiter enforces */
#define ADMIN_SCOPES_N		32
#define ADMIN_SCOPE_LEN		64
#define ADMIN_QVAL_MAX		255	/* decoded query value, bytes */

/* Endpoints, by path. */
enum admin_ep {
	EP_HEALTH,
	EP_STATUS,
	EP_OPENAPI,
	EP_KEYS,
	EP_IMPORT,
	EP_KEY,
	EP_REGENERATE,
	EP_USAGE,
	EP_VERIFY,
	EP_METRICS,
	EP_CLUSTER,
	EP_GATEWAY
};

/* Methods each endpoint answers, as bits and as an Allow header. */
static const struct {
	int		 m_bits;
	const char	*m_allow;
} admin_methods[] = {
	[EP_HEALTH] =		{ HTTP_M_GET, "GET" },
	[EP_STATUS] =		{ HTTP_M_GET, "GET" },
	[EP_OPENAPI] =		{ HTTP_M_GET, "GET" },
	[EP_KEYS] =		{ HTTP_M_GET | HTTP_M_POST, "GET, POST" },
	[EP_IMPORT] =		{ HTTP_M_POST, "POST" },
	[EP_KEY] =		{ HTTP_M_GET | HTTP_M_PATCH | HTTP_M_DELETE,
				  "GET, PATCH, DELETE" },
	[EP_REGENERATE] =	{ HTTP_M_POST, "POST" },
	[EP_USAGE] =		{ HTTP_M_GET, "GET" },
	[EP_VERIFY] =		{ HTTP_M_POST, "POST" },
	[EP_METRICS] =		{ HTTP_M_GET, "GET" },
	[EP_CLUSTER] =		{ HTTP_M_GET, "GET" },
	[EP_GATEWAY] =		{ HTTP_M_GET, "GET" },
};

/* One request being answered. */
struct admin_ctx {
	const struct admin_env		*c_env;
	const struct admin_request	*c_rq;
	struct admin_response		*c_rs;
	struct keystore			*c_ks;
	enum admin_ep			 c_ep;
	char				 c_id[KS_ID_LEN + 1];	/* {id} */
	int				 c_idok;	/* {id} fits c_id */
	uint64_t			 c_sync;	/* seq to make durable */
	json_t				*c_cl_req;	/* a change for the */
							/* cluster (cluster.h) */
	int				 c_cl_retry;	/* the cluster had a */
							/* newer copy: again */
};

/* Body fields of a key: which operation may set them, and how. */
#define AF_CREATE	0x01
#define AF_PATCH	0x02

#define AB_NAME		0x001
#define AB_OWNER	0x002
#define AB_APP		0x004
#define AB_SCOPES	0x008
#define AB_PREFIX	0x010
#define AB_EXPIRES	0x020
#define AB_DISABLED	0x040
#define AB_RATE		0x080

typedef int	(*admin_setter)(struct admin_ctx *, json_t *, struct ks_key *);

static int	admin_set_name(struct admin_ctx *, json_t *, struct ks_key *);
static int	admin_set_owner(struct admin_ctx *, json_t *, struct ks_key *);
static int	admin_set_app(struct admin_ctx *, json_t *, struct ks_key *);
static int	admin_set_scopes(struct admin_ctx *, json_t *, struct ks_key *);
static int	admin_set_prefix(struct admin_ctx *, json_t *, struct ks_key *);
static int	admin_set_expires(struct admin_ctx *, json_t *,
		    struct ks_key *);
static int	admin_set_disabled(struct admin_ctx *, json_t *,
		    struct ks_key *);
static int	admin_set_rate(struct admin_ctx *, json_t *, struct ks_key *);
static int	admin_import(struct admin_ctx *);
static json_t	*admin_scoped(struct admin_ctx *, json_t *, const char *,
		    const char *);
static const char *admin_cluster_history(struct admin_ctx *, const char *,
		    int, struct usage_point *, size_t *, char *, size_t);
static const char *admin_cluster_usage(struct admin_ctx *, const char *,
		    uint64_t *, uint64_t *, uint64_t *, int64_t *, char *,
		    size_t);
static int	admin_store_idem(struct admin_ctx *, const struct ks_key *,
		    struct idem_entry *);

static const struct admin_field {
	const char	*f_name;
	admin_setter	 f_set;		/* NULL: the server sets it */
	int		 f_ops;		/* AF_*: operations that may set it */
	int		 f_bit;		/* AB_*: set in the caller's mask */
} admin_fields[] = {
	{ "name", admin_set_name, AF_CREATE | AF_PATCH, AB_NAME },
	{ "owner", admin_set_owner, AF_CREATE, AB_OWNER },
	{ "app_id", admin_set_app, AF_CREATE, AB_APP },
	{ "scopes", admin_set_scopes, AF_CREATE | AF_PATCH, AB_SCOPES },
	{ "prefix", admin_set_prefix, AF_CREATE, AB_PREFIX },
	{ "expires_at", admin_set_expires, AF_CREATE | AF_PATCH, AB_EXPIRES },
	{ "disabled", admin_set_disabled, AF_CREATE | AF_PATCH, AB_DISABLED },
	{ "rate_limit", admin_set_rate, AF_CREATE | AF_PATCH, AB_RATE },
	{ "id",		  NULL, 0, 0 },
	{ "hint",	  NULL, 0, 0 },
	{ "created_at",	  NULL, 0, 0 },
	{ "updated_at",	  NULL, 0, 0 },
	{ "grace_until",  NULL, 0, 0 },
	{ "last_used_at", NULL, 0, 0 },
	{ "secret",	  NULL, 0, 0 },
	{ NULL,		  NULL, 0, 0 }
};

/*
 * A secret the caller brings to create (or import) a key: "secret" (its
 * plaintext, hashed at once) or "secret_sha256" (the digest alone, with
 * an optional "hint").  Only the digest, the hint and the prefix for later
 * regenerations are kept.
 */
#define BYO_NONE	0
#define BYO_SECRET	1
#define BYO_DIGEST	2

struct admin_byo {
	int		 b_kind;		/* BYO_* */
	uint8_t		 b_digest[KS_DIGEST_LEN];
	char		 b_hint[KS_HINT_MAX + 1];
	char		 b_prefix[KS_PREFIX_MAX + 1];
};

/* Rate limit windows as named in JSON, in KS_W* order. */
static const char *const admin_windows[KS_NWINDOWS] = {
	"per_1s", "per_10s", "per_60s"
};

/* Query parameters of GET /v1/keys. */
enum admin_qp {
	QP_OWNER, QP_APP, QP_LIMIT, QP_CURSOR, QP_TEXT, QP_STATE, QP_OLDER,
	QP_UNUSED, QP_SORT, QP_OFFSET, QP_N
};
static const char *const admin_qparams[QP_N] = {
	"owner", "app_id", "limit", "cursor", "q", "state", "older_than",
	"unused", "sort", "offset"
};

/* state= of GET /v1/keys. */
enum admin_qstate { QS_ANY, QS_ACTIVE, QS_DISABLED, QS_EXPIRED, QS_EXPIRING };
static const char *const admin_qstates[] = {
	"", "active", "disabled", "expired", "expiring"
};
#define ADMIN_EXPIRING_MS	(7 * 86400000LL)	/* state=expiring */
#define ADMIN_AGE_MAX_MS	(3650 * 86400000LL)	/* older_than, unused */
#define ADMIN_TEXT_MAX		64			/* q= */

/* sort= of GET /v1/keys ("-" first: descending). */
enum admin_qsort { QO_NONE, QO_CREATED, QO_LAST_USED, QO_EXPIRES, QO_NAME };
static const char *const admin_qsorts[] = {
	"", "created", "last_used", "expires", "name"
};

struct admin_query {
	char		 q_owner[KS_OWNER_MAX + 1];	/* "": any */
	char		 q_app[KS_APP_MAX + 1];		/* "": any */
	char		 q_text[ADMIN_TEXT_MAX + 1];	/* "": any */
	int		 q_state;			/* QS_* */
	int64_t		 q_older_ms;	/* created that long ago, 0: any */
	int64_t		 q_unused_ms;	/* not used for that long, 0: any */
	int		 q_sort;	/* QO_*; QO_NONE: slot order */
	int		 q_desc;
	uint32_t	 q_limit;
	uint32_t	 q_cursor;	/* first slot to look at */
	uint32_t	 q_offset;	/* sorted: matches skipped */
	int		 q_seen;	/* parameters given, 1 << QP_* */
};

/* Cut s at its first byte that does not start a valid UTF-8 sequence. */
static void
admin_utf8_cut(char *s)
{
	unsigned char	*p = (unsigned char *)s;
	size_t		 len, i;

	while (*p != '\0') {
		if (*p < 0x80) {
			p++;
			continue;
		}
		if (*p >= 0xc2 && *p <= 0xdf)
			len = 2;
		else if (*p >= 0xe0 && *p <= 0xef)
			len = 3;
		else if (*p >= 0xf0 && *p <= 0xf4)
			len = 4;
		else
			break;
		for (i = 1; i < len; i++)
			if ((p[i] & 0xc0) != 0x80)
				break;
		if (i < len)
			break;
		p += len;
	}
	*p = '\0';
}

/* Answer 500 with a fixed body: what is left when memory runs out. */
static int
admin_oom(struct admin_response *rs)
{
	static const char body[] =
	    "{\"error\":\"internal_error\",\"message\":\"out of memory\"}";

	free(rs->as_body);
	rs->as_status = 500;
	rs->as_code = "internal_error";
	rs->as_type = ADMIN_JSON;
	rs->as_body = strdup(body);
	rs->as_bodylen = rs->as_body != NULL ? strlen(body) : 0;
	return (-1);
}

/* Answer status with the JSON text of o (a reference that is taken). */
static int
admin_reply(struct admin_response *rs, int status, json_t *o)
{
	char	*s;

	if (o == NULL)
		return (admin_oom(rs));
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (s == NULL)
		return (admin_oom(rs));
	free(rs->as_body);
	rs->as_status = status;
	rs->as_body = s;
	rs->as_bodylen = strlen(s);
	rs->as_type = ADMIN_JSON;
	return (0);
}

static int	 admin_verror(struct admin_response *, int, const char *,
		    const char *, const char *, va_list)
		    __attribute__((format(printf, 5, 0)));

/* Answer an error {"error","message"[,"field"]}; returns -1. */
static int
admin_verror(struct admin_response *rs, int status, const char *code,
    const char *field, const char *fmt, va_list ap)
{
	char	 msg[ADMIN_MSGLEN], fld[ADMIN_FIELDLEN];
	json_t	*o;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	admin_utf8_cut(msg);
	o = json_pack("{s:s, s:s}", "error", code, "message", msg);
	if (o != NULL && field != NULL) {
		snprintf(fld, sizeof(fld), "%s", field);
		admin_utf8_cut(fld);
		if (json_object_set_new(o, "field", json_string(fld)) == -1) {
			json_decref(o);
			o = NULL;
		}
	}
	if (admin_reply(rs, status, o) == 0)
		rs->as_code = code;
	return (-1);
}

static int	 admin_error(struct admin_ctx *, int, const char *,
		    const char *, ...) __attribute__((format(printf, 4, 5)));
static int	 admin_invalid(struct admin_ctx *, const char *,
		    const char *, ...) __attribute__((format(printf, 3, 4)));

/* Answer an error; returns -1. */
static int
admin_error(struct admin_ctx *c, int status, const char *code,
    const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	admin_verror(c->c_rs, status, code, NULL, fmt, ap);
	va_end(ap);
	return (-1);
}

static int	 admin_verror_field(struct admin_ctx *, int, const char *,
		    const char *, const char *, ...)
		    __attribute__((format(printf, 5, 6)));

/* Answer an error naming a field (a header's name, too); returns -1. */
static int
admin_verror_field(struct admin_ctx *c, int status, const char *code,
    const char *field, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	admin_verror(c->c_rs, status, code, field, fmt, ap);
	va_end(ap);
	return (-1);
}

/* Answer 422 invalid_field naming field; returns -1. */
static int
admin_invalid(struct admin_ctx *c, const char *field, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	admin_verror(c->c_rs, 422, "invalid_field", field, fmt, ap);
	va_end(ap);
	return (-1);
}

/* Time ms as RFC 3339 into buf (32 bytes); NULL for 0 (none). */
static const char *
admin_time(char *buf, int64_t ms)
{
	if (ms == 0)
		return (NULL);
	util_rfc3339_ms(buf, 32, ms);
	return (buf);
}

/* Days from 1970-01-01 to the proleptic Gregorian date y-m-d. */
static int64_t
admin_days(int64_t y, int m, int d)
{
	int64_t	 era, yoe, doy, doe;

	/*
	 * H. Hinnant's days_from_civil: counting years from March makes the
	 * leap day the last day of a year, so the day of the year is a
	 * closed formula (153 days per 5 months) and the leap rule applies
	 * to whole 400-year eras of 146097 days.  719468 is the day number
	 * of 1970-01-01 from 0000-03-01.
	 */
	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return (era * 146097 + doe - 719468);
}

/* n decimal digits at s as a number, or -1 if one is not a digit. */
static int
admin_digits(const char *s, int n)
{
	int	 v = 0, i;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return (-1);
		v = v * 10 + (s[i] - '0');
	}
	return (v);
}

/*
 * Parse a strict RFC 3339 date-time (section 5.6) into ms since the epoch:
 * "YYYY-MM-DDTHH:MM:SS", an optional fraction of one or more digits
 * (truncated to milliseconds), then "Z" or an offset "+hh:mm"/"-hh:mm".
 * "T" and "Z" may be lower case as the RFC allows.  Every field is range
 * checked, including the day against the month's length in that year; a
 * leap second (":60") is refused since Unix time cannot name it.  0 or -1.
 * keygatectl checks --expires with it too.
 */
int
admin_parse_time(const char *s, int64_t *ms)
{
	int	 y, mo, d, h, mi, sec, frac = 0, scale = 100, oh, om, sign;
	int	 mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int64_t	 t;

	if (strlen(s) < 20 || s[4] != '-' || s[7] != '-' ||
	    (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':')
		return (-1);
	y = admin_digits(s, 4);
	mo = admin_digits(s + 5, 2);
	d = admin_digits(s + 8, 2);
	h = admin_digits(s + 11, 2);
	mi = admin_digits(s + 14, 2);
	sec = admin_digits(s + 17, 2);
	if (y < 0 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 ||
	    mi < 0 || mi > 59 || sec < 0 || sec > 59)
		return (-1);
	if (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))
		mdays[1] = 29;
	if (d > mdays[mo - 1])
		return (-1);
	s += 19;
	if (*s == '.') {
		if (s[1] < '0' || s[1] > '9')
			return (-1);
		for (s++; *s >= '0' && *s <= '9'; s++, scale /= 10)
			frac += (*s - '0') * scale;
	}
	t = admin_days(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
	if ((*s == 'Z' || *s == 'z') && s[1] == '\0') {
		*ms = t * 1000 + frac;
		return (0);
	}
	if ((*s != '+' && *s != '-') || strlen(s) != 6 || s[3] != ':')
		return (-1);
	sign = *s == '-' ? -1 : 1;
	oh = admin_digits(s + 1, 2);
	om = admin_digits(s + 4, 2);
	if (oh < 0 || oh > 23 || om < 0 || om > 59)
		return (-1);
	*ms = (t - sign * (oh * 3600 + om * 60)) * 1000 + frac;
	return (0);
}

/*
 * name: 0..100 bytes of UTF-8 (jansson checked it) without controls; null
 * or "" for none (shown as null).
 */
static int
admin_set_name(struct admin_ctx *c, json_t *v, struct ks_key *k)
{
	const unsigned char	*s;
	size_t			 n, i;

	if (json_is_null(v)) {
		k->k_name[0] = '\0';
		return (0);
	}
	if (!json_is_string(v))
		return (admin_invalid(c, "name", "name must be a string or "
		    "null"));
	s = (const unsigned char *)json_string_value(v);
	n = json_string_length(v);
	if (n > KS_NAME_MAX)
		return (admin_invalid(c, "name",
		    "name must be at most %d bytes long", KS_NAME_MAX));
	/* C0, DEL, and C1 (U+0080..U+009F, encoded 0xc2 0x80..0x9f). */
	for (i = 0; i < n; i++)
		if (s[i] < 0x20 || s[i] == 0x7f || (s[i] == 0xc2 &&
		    i + 1 < n && s[i + 1] >= 0x80 && s[i + 1] <= 0x9f))
			return (admin_invalid(c, "name",
			    "name must not contain control characters"));
	memcpy(k->k_name, s, n);
	k->k_name[n] = '\0';
	return (0);
}

/* owner: 1..64 visible ASCII characters, inner spaces allowed. */
static int
admin_set_owner(struct admin_ctx *c, json_t *v, struct ks_key *k)
{
	const char	*s;
	size_t		 n, i;

	if (!json_is_string(v))
		return (admin_invalid(c, "owner", "owner must be a string"));
	s = json_string_value(v);
	n = json_string_length(v);
	if (n < 1 || n > KS_OWNER_MAX)
		return (admin_invalid(c, "owner",
		    "owner must be 1 to %d characters long", KS_OWNER_MAX));
	for (i = 0; i < n; i++)
		if (s[i] < 0x20 || s[i] > 0x7e)
			return (admin_invalid(c, "owner", "owner must be "
			    "visible ASCII characters and spaces"));
	if (s[0] == ' ' || s[n - 1] == ' ')
		return (admin_invalid(c, "owner",
		    "owner must not begin or end with a space"));
	memcpy(k->k_owner, s, n + 1);
	return (0);
}

/* Is s n characters of the set [A-Za-z0-9] plus the bytes in extra? */
static int
admin_charset(const char *s, size_t n, const char *extra)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') ||
		    (s[i] != '\0' && strchr(extra, s[i]) != NULL)))
			return (0);
	return (1);
}

/* app_id: null (no app) or 1..64 of [A-Za-z0-9._:-]. */
static int
admin_set_app(struct admin_ctx *c, json_t *v, struct ks_key *k)
{
	size_t	 n;

	if (json_is_null(v)) {
		k->k_app[0] = '\0';
		return (0);
	}
	if (!json_is_string(v))
		return (admin_invalid(c, "app_id",
		    "app_id must be a string or null"));
	n = json_string_length(v);
	if (n < 1 || n > KS_APP_MAX ||
	    !admin_charset(json_string_value(v), n, "._:-"))
		return (admin_invalid(c, "app_id", "app_id must be 1 to %d "
		    "characters of A-Z a-z 0-9 . _ : -", KS_APP_MAX));
	memcpy(k->k_app, json_string_value(v), n + 1);
	return (0);
}

/*
 * scopes: an array of at most 32 distinct scope names, each 1..64 of
 * A-Z a-z 0-9 . _ : / * -, stored joined by single spaces in at most 255
 * bytes.
 */
static int
admin_set_scopes(struct admin_ctx *c, json_t *v, struct ks_key *k)
{
	char	 buf[KS_SCOPES_MAX + 1];
	size_t	 i, j, n, len = 0;
	json_t	*e;

	if (!json_is_array(v) || json_array_size(v) > ADMIN_SCOPES_N)
		return (admin_invalid(c, "scopes", "scopes must be an array "
		    "of at most %d strings", ADMIN_SCOPES_N));
	json_array_foreach(v, i, e) {
		if (!json_is_string(e) || (n = json_string_length(e)) < 1 ||
		    n > ADMIN_SCOPE_LEN ||
		    !admin_charset(json_string_value(e), n, "._:/*-"))
			return (admin_invalid(c, "scopes", "scope %zu must be "
			    "1 to %d characters of A-Z a-z 0-9 . _ : / * -",
			    i + 1, ADMIN_SCOPE_LEN));
		for (j = 0; j < i; j++)
			if (json_equal(json_array_get(v, j), e))
				return (admin_invalid(c, "scopes",
				    "scope \"%s\" is listed twice",
				    json_string_value(e)));
		if (len + (i > 0) + n > KS_SCOPES_MAX)
			return (admin_invalid(c, "scopes", "the scopes "
			    "joined by spaces must fit in %d bytes",
			    KS_SCOPES_MAX));
		if (i > 0)
			buf[len++] = ' ';
		memcpy(buf + len, json_string_value(e), n);
		len += n;
	}
	buf[len] = '\0';
	memcpy(k->k_scopes, buf, len + 1);
	return (0);
}

/* prefix: [a-z0-9]{1,12}, the start of every secret of the key. */
static int
admin_set_prefix(struct admin_ctx *c, json_t *v, struct ks_key *k)
{
	if (!json_is_string(v) || !secret_valid_prefix(json_string_value(v)))
		return (admin_invalid(c, "prefix", "prefix must be 1 to %d "
		    "characters of a-z 0-9", KS_PREFIX_MAX));
	snprintf(k->k_prefix, sizeof(k->k_prefix), "%s",
	    json_string_value(v));
	return (0);
}

/* expires_at: null (never) or an RFC 3339 time in the future. */
static int
admin_set_expires(struct admin_ctx *c, json_t *v, struct ks_key *k)
{
	int64_t	 t;

	if (json_is_null(v)) {
		k->k_expires = 0;
		return (0);
	}
	if (!json_is_string(v) || admin_parse_time(json_string_value(v),
	    &t) == -1)
		return (admin_invalid(c, "expires_at", "expires_at must be "
		    "null or an RFC 3339 time such as 2030-01-31T12:00:00Z"));
	if (t <= c->c_rq->aq_now)
		return (admin_invalid(c, "expires_at",
		    "expires_at must be in the future"));
	k->k_expires = t;
	return (0);
}

/* disabled: a boolean. */
static int
admin_set_disabled(struct admin_ctx *c, json_t *v, struct ks_key *k)
{
	if (!json_is_boolean(v))
		return (admin_invalid(c, "disabled",
		    "disabled must be true or false"));
	if (json_is_true(v))
		k->k_flags |= KS_F_DISABLED;
	else
		k->k_flags &= ~KS_F_DISABLED;
	return (0);
}

/*
 * rate_limit: null (the configured defaults) or an object with any of
 * per_1s, per_10s, per_60s, each null (default) or 1..1000000000.  The
 * object replaces all three windows: an omitted one becomes the default.
 */
static int
admin_set_rate(struct admin_ctx *c, json_t *v, struct ks_key *k)
{
	char		 fld[ADMIN_FIELDLEN];
	const char	*name;
	json_t		*w;
	json_int_t	 n;
	int		 i;

	memset(k->k_rate, 0, sizeof(k->k_rate));
	if (json_is_null(v))
		return (0);
	if (!json_is_object(v))
		return (admin_invalid(c, "rate_limit",
		    "rate_limit must be an object or null"));
	json_object_foreach(v, name, w) {
		snprintf(fld, sizeof(fld), "rate_limit.%s", name);
		for (i = 0; i < KS_NWINDOWS; i++)
			if (strcmp(name, admin_windows[i]) == 0)
				break;
		if (i == KS_NWINDOWS)
			return (admin_invalid(c, fld, "unknown field \"%s\"; "
			    "the windows are per_1s, per_10s and per_60s",
			    fld));
		if (json_is_null(w))
			continue;
		if (!json_is_integer(w) || (n = json_integer_value(w)) < 1 ||
		    n > ADMIN_RATE_MAX)
			return (admin_invalid(c, fld, "%s must be null or an "
			    "integer from 1 to %d", fld, ADMIN_RATE_MAX));
		k->k_rate[i] = (uint32_t)n;
	}
	return (0);
}

/* 64 hex digits (either case) into d[32]; 0 or -1. */
static int
admin_hex_digest(const char *s, size_t len, uint8_t *d)
{
	size_t	 i;
	int	 hi, lo;

	if (len != 2 * KS_DIGEST_LEN)
		return (-1);
	for (i = 0; i < KS_DIGEST_LEN; i++) {
		if ((hi = util_hexval(s[2 * i])) < 0 ||
		    (lo = util_hexval(s[2 * i + 1])) < 0)
			return (-1);
		d[i] = (uint8_t)(hi << 4 | lo);
	}
	return (0);
}

/* hint (with secret_sha256): 1..20 visible ASCII characters. */
static int
admin_byo_hint(struct admin_ctx *c, json_t *v, struct admin_byo *b)
{
	const char	*s;
	size_t		 n, i;

	if (!json_is_string(v) || (n = json_string_length(v)) < 1 ||
	    n > KS_HINT_MAX)
		return (admin_invalid(c, "hint", "hint must be 1 to %d "
		    "characters", KS_HINT_MAX));
	s = json_string_value(v);
	for (i = 0; i < n; i++)
		if (s[i] < 0x20 || s[i] > 0x7e)
			return (admin_invalid(c, "hint", "hint must be "
			    "visible ASCII characters and spaces"));
	memcpy(b->b_hint, s, n + 1);
	return (0);
}

/*
 * Take "secret", "secret_sha256" and "hint" out of body into b (b_kind
 * BYO_NONE when neither secret is there), so that admin_apply() sees the
 * key's other fields only.  The plaintext is hashed here and its member
 * deleted, which wipes it (secret_json_wipe); no message quotes it.
 * 0, or -1 with 422.
 */
static int
admin_take_byo(struct admin_ctx *c, json_t *body, struct admin_byo *b)
{
	json_t		*sec, *dig, *hint;
	const char	*why;

	memset(b, 0, sizeof(*b));
	sec = json_object_get(body, "secret");
	dig = json_object_get(body, "secret_sha256");
	hint = json_object_get(body, "hint");
	if (sec != NULL && dig != NULL)
		return (admin_invalid(c, "secret_sha256", "give either secret "
		    "or secret_sha256, not both"));
	if (hint != NULL && dig == NULL)
		return (admin_invalid(c, "hint", "hint can be given with "
		    "secret_sha256 only (it is made from a secret)"));
	if (sec != NULL) {
		if (!json_is_string(sec))
			return (admin_invalid(c, "secret", "secret must be a "
			    "string"));
		if (!secret_valid_import(json_string_value(sec),
		    json_string_length(sec), &why))
			return (admin_invalid(c, "secret", "secret %s", why));
		b->b_kind = BYO_SECRET;
		secret_digest(json_string_value(sec), json_string_length(sec),
		    b->b_digest);
		secret_hint_any(json_string_value(sec),
		    json_string_length(sec), b->b_hint, sizeof(b->b_hint));
		secret_prefix_of(json_string_value(sec),
		    json_string_length(sec), b->b_prefix, sizeof(b->b_prefix));
		json_object_del(body, "secret");
	} else if (dig != NULL) {
		if (!json_is_string(dig) || admin_hex_digest(
		    json_string_value(dig), json_string_length(dig),
		    b->b_digest) == -1)
			return (admin_invalid(c, "secret_sha256", "secret_sha256 "
			    "must be the SHA-256 of the secret in 64 hex "
			    "digits"));
		if (hint != NULL && admin_byo_hint(c, hint, b) == -1)
			return (-1);
		b->b_kind = BYO_DIGEST;
		snprintf(b->b_prefix, sizeof(b->b_prefix), "%s",
		    SECRET_DEFAULT_PREFIX);
		json_object_del(body, "secret_sha256");
		json_object_del(body, "hint");
	}
	return (0);
}

/*
 * Apply the members of body to k through the field table for operation op
 * (AF_CREATE or AF_PATCH), setting the AB_* bit of each in *mask.  The
 * first bad member, in the order written, decides the 422.
 */
static int
admin_apply(struct admin_ctx *c, json_t *body, int op, struct ks_key *k,
    int *mask)
{
	const struct admin_field	*f;
	const char			*name;
	json_t				*v;

	*mask = 0;
	json_object_foreach(body, name, v) {
		for (f = admin_fields; f->f_name != NULL; f++)
			if (strcmp(f->f_name, name) == 0)
				break;
		if (f->f_name == NULL)
			return (admin_invalid(c, name, "unknown field \"%s\"",
			    name));
		if ((f->f_ops & op) == 0)
			return (admin_invalid(c, name, "field \"%s\" cannot "
			    "be %s", name, op == AF_CREATE ? "set" :
			    "changed"));
		if (f->f_set(c, v, k) == -1)
			return (-1);
		*mask |= f->f_bit;
	}
	return (0);
}

/* jansson's error text, printable, without the token it quotes. */
static void
admin_json_cause(char *out, size_t len, const char *text)
{
	const char	*near;
	size_t		 n, i;

	/* The quoted token could be part of a secret: never echo it. */
	near = strstr(text, " near '");
	n = near != NULL ? (size_t)(near - text) : strlen(text);
	if (n >= len)
		n = len - 1;
	for (i = 0; i < n; i++)
		out[i] = text[i] >= 0x20 && text[i] < 0x7f ? text[i] : '?';
	out[n] = '\0';
}

/* Parse the body as a JSON object into *obj (a new reference); 0 or -1. */
static int
admin_body(struct admin_ctx *c, json_t **obj)
{
	const struct admin_request	*rq = c->c_rq;
	json_error_t			 je;
	char				 cause[JSON_ERROR_TEXT_LENGTH];

	*obj = json_loadb(rq->aq_body != NULL ? rq->aq_body : "",
	    rq->aq_body != NULL ? rq->aq_bodylen : 0,
	    JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
	if (*obj == NULL) {
		admin_json_cause(cause, sizeof(cause), je.text);
		/* je.text quotes the token, which may be part of a secret. */
		OPENSSL_cleanse(je.text, sizeof(je.text));
		return (admin_error(c, 400, "bad_json",
		    "invalid JSON at line %d, column %d: %s", je.line,
		    je.column, cause));
	}
	if (!json_is_object(*obj)) {
		json_decref(*obj);
		*obj = NULL;
		return (admin_error(c, 400, "bad_json",
		    "the body must be a JSON object"));
	}
	return (0);
}

/* The space-separated scopes as a JSON array (NULL if out of memory). */
static json_t *
admin_scopes_json(const char *scopes)
{
	const char	*p, *sp;
	json_t		*a;

	if ((a = json_array()) == NULL)
		return (NULL);
	for (p = scopes; *p != '\0'; p = *sp != '\0' ? sp + 1 : sp) {
		if ((sp = strchr(p, ' ')) == NULL)
			sp = p + strlen(p);
		if (sp > p && json_array_append_new(a,
		    json_stringn(p, (size_t)(sp - p))) == -1) {
			json_decref(a);
			return (NULL);
		}
	}
	return (a);
}

/* k_rate as {"per_1s",...} with null for defaults, or null when all are. */
static json_t *
admin_rate_json(const struct ks_key *k)
{
	json_t	*o;
	int	 i;

	if (k->k_rate[0] == 0 && k->k_rate[1] == 0 && k->k_rate[2] == 0)
		return (json_null());
	if ((o = json_object()) == NULL)
		return (NULL);
	for (i = 0; i < KS_NWINDOWS; i++)
		if (json_object_set_new(o, admin_windows[i], k->k_rate[i] != 0 ?
		    json_integer(k->k_rate[i]) : json_null()) == -1) {
			json_decref(o);
			return (NULL);
		}
	return (o);
}

/* The key object of the API for k, used last at last_used (0: never). */
static json_t *
admin_key_json(const struct ks_key *k, int64_t last_used, int64_t now)
{
	char	 cr[32], up[32], ex[32], gr[32], lu[32];
	int	 grace;

	/* The old secret is accepted while now < k_grace_until only. */
	grace = k->k_grace_until != 0 && now < k->k_grace_until;
	util_rfc3339_ms(cr, sizeof(cr), k->k_created);
	util_rfc3339_ms(up, sizeof(up), k->k_updated);
	return (json_pack("{s:s, s:s?, s:s, s:s?, s:s, s:s, s:o, s:s, s:s, "
	    "s:s?, s:b, s:o, s:s?, s:s?}",
	    "id", k->k_id, "name", k->k_name[0] != '\0' ? k->k_name : NULL,
	    "owner", k->k_owner,
	    "app_id", k->k_app[0] != '\0' ? k->k_app : NULL,
	    "prefix", k->k_prefix, "hint", k->k_hint,
	    "scopes", admin_scopes_json(k->k_scopes),
	    "created_at", cr, "updated_at", up,
	    "expires_at", admin_time(ex, k->k_expires),
	    "disabled", (k->k_flags & KS_F_DISABLED) != 0,
	    "rate_limit", admin_rate_json(k),
	    "grace_until", grace ? admin_time(gr, k->k_grace_until) : NULL,
	    "last_used_at", admin_time(lu, last_used)));
}

/* When the key in slot was last used (0: never). */
static int64_t
admin_last_used(struct admin_ctx *c, uint32_t slot)
{
	uint64_t	 allowed, refused;
	int64_t		 last;

	keystore_usage(c->c_ks, slot, &allowed, &refused, &last);
	return (last);
}

/* Answer status with the key object of k. */
static int
admin_reply_key(struct admin_ctx *c, int status, const struct ks_key *k,
    int64_t last_used)
{
	return (admin_reply(c->c_rs, status,
	    admin_key_json(k, last_used, c->c_rq->aq_now)));
}

/*
 * Answer status with the key object of k plus "secret".  The secret is
 * one keygate made, base62 with a [a-z0-9] prefix, so it needs no JSON
 * escaping: it is put in before the object's closing brace without going
 * through jansson.  Anything else (a secret brought by a caller is never
 * echoed) is refused rather than spliced in unescaped.
 */
static int
admin_reply_secret(struct admin_ctx *c, int status, const struct ks_key *k,
    int64_t last_used, const char *secret)
{
	struct admin_response	*rs = c->c_rs;
	char			*obj, *body;
	size_t			 olen, len;

	for (len = 0; secret[len] != '\0'; len++)
		if (!((secret[len] >= 'a' && secret[len] <= 'z') ||
		    (secret[len] >= 'A' && secret[len] <= 'Z') ||
		    (secret[len] >= '0' && secret[len] <= '9') ||
		    secret[len] == '_'))
			return (admin_error(c, 500, "internal_error",
			    "the new secret is not of keygate's shape"));
	if (admin_reply_key(c, status, k, last_used) == -1)
		return (-1);
	obj = rs->as_body;
	olen = rs->as_bodylen;
	len = olen + strlen(",\"secret\":\"\"") + strlen(secret);
	if ((body = malloc(len + 1)) == NULL)
		return (admin_oom(rs));
	snprintf(body, len + 1, "%.*s,\"secret\":\"%s\"}", (int)(olen - 1),
	    obj, secret);
	free(obj);
	rs->as_body = body;
	rs->as_bodylen = len;
	return (0);
}

/* Find the key named by the path's {id}; 0, or -1 with 404/503. */
static int
admin_find(struct admin_ctx *c, struct ks_key *k, uint32_t *slot)
{
	int	 rc = KS_NOTFOUND;

	if (c->c_idok)
		rc = keystore_find_id(c->c_ks, c->c_id, k, slot);
	if (rc == KS_OK)
		return (0);
	if (rc == KS_BUSY)
		return (admin_error(c, 503, "key_store_busy",
		    "the key store is being repaired; retry"));
	/* Only a well-formed id is echoed: the path could hold anything. */
	if (c->c_idok && secret_valid_id(c->c_id, strlen(c->c_id)))
		return (admin_error(c, 404, "key_not_found",
		    "no key with id %s", c->c_id));
	return (admin_error(c, 404, "key_not_found", "no key with that id"));
}

/*
 * The key store lock's owner is a pid, so the admin threads of one worker
 * (server.c) would all pass keystore_lock() as "the owner": this mutex
 * serialises them first.  Both waits together stay within
 * ADMIN_LOCK_TIMEOUT.
 */
static pthread_mutex_t	admin_writer = PTHREAD_MUTEX_INITIALIZER;

/*
 * Take the key store's writer lock; 0, or -1 with 503.  Every write goes
 * through here, and an orphaned worker (its master killed: getppid()
 * changed) is refused once it holds the lock, right before it would
 * append: a new master may be loading the journal.  A master that dies
 * after this check cannot be followed by another one before the write
 * ends, since this worker still holds keys.lock (journal_lock).
 */
static int
admin_lock(struct admin_ctx *c)
{
	struct timespec	 ts;
	int64_t		 t0 = util_mono_ms(), left;

	util_deadline(CLOCK_MONOTONIC, ADMIN_LOCK_TIMEOUT, &ts);
	c->c_sync = 0;
	if (pthread_mutex_clocklock(&admin_writer, CLOCK_MONOTONIC, &ts) != 0)
		return (admin_error(c, 503, "key_store_busy", "the key store "
		    "is locked by another writer; retry"));
	left = ADMIN_LOCK_TIMEOUT - (util_mono_ms() - t0);
	if (keystore_lock(c->c_ks, c->c_env->ae_pid, left > 0 ? (int)left :
	    0) != KS_OK) {
		pthread_mutex_unlock(&admin_writer);
		return (admin_error(c, 503, "key_store_busy", "the key store "
		    "is locked by another writer; retry"));
	}
	if (c->c_env->ae_master != 0 && getppid() != c->c_env->ae_master) {
		keystore_unlock(c->c_ks, c->c_env->ae_pid);
		pthread_mutex_unlock(&admin_writer);
		log_warnx("admin write refused: the master process is gone");
		return (admin_error(c, 503, "master_gone", "the master process "
		    "is gone: this worker is stopping and takes no more "
		    "changes; retry"));
	}
	return (0);
}

#ifdef KEYGATE_DEBUG
/*
 * Fault injection for the integration tests, in debug builds only: if the
 * file named by the environment variable var exists, the first writer to
 * get here removes it, says so (what) in the error log and stops.
 * KEYGATE_TEST_STALL_WRITE: holding the key store lock with its journal
 * line written but memory not yet changed, the worst moment to die (the
 * master repairs the store and replays the line).
 * KEYGATE_TEST_STALL_SYNC: after the lock is released, memory changed,
 * the line written but not yet fdatasync'ed, so not acknowledged.
 */
static void
admin_test_stall(const char *var, const char *what)
{
	const char	*path = getenv(var);

	if (path == NULL || unlink(path) == -1)
		return;
	log_warnx("test: stalled in a key store write, %s", what);
	for (;;)
		pause();
}
#endif

/*
 * In a cluster (ae_cluster set) a write is not stored here.  Under the
 * lock, admin_cluster_stage() only prepares the change: op ("put" with
 * the new record k, or "del" of id), the record as read now (the master
 * commits only if Redis still holds exactly that one), and for a create
 * with an Idempotency-Key its entry.  admin_unlock() then sends it with
 * admin_cluster_commit(): the master commits it to Redis and answers once
 * its stream reader has applied it here, so what the client is told is
 * in Redis and already in effect on this node.  If the cluster had a
 * newer copy (another node changed the key, took its secret or the
 * Idempotency-Key), this node has caught up by then and c_cl_retry asks
 * admin_dispatch() to run the request again against it.
 */
static int
admin_cluster_stage(struct admin_ctx *c, const char *op,
    const struct ks_key *k, const char *id, struct idem_entry *ie)
{
	struct ks_key	 cur;
	uint32_t	 slot;
	char		 err[256], *rec = NULL;
	json_t		*o, *v;
	int		 rc;

	rc = keystore_find_id(c->c_ks, id, &cur, &slot);
	if (rc == KS_BUSY)
		return (admin_error(c, 503, "key_store_busy",
		    "the key store is being repaired; retry"));
	if (rc == KS_OK && (rec = clmsg_record(&cur, err, sizeof(err))) ==
	    NULL) {
		OPENSSL_cleanse(&cur, sizeof(cur));
		return (admin_error(c, 500, "internal_error", "%s", err));
	}
	OPENSSL_cleanse(&cur, sizeof(cur));
	o = json_pack("{s:s,s:s?}", "op", op, "expect", rec);
	free(rec);
	if (o == NULL)
		return (admin_oom(c->c_rs));
	if (k != NULL)
		v = journal_key_json(k, "key", err, sizeof(err));
	else
		v = json_string(id);
	if (v == NULL || json_object_set_new(o, k != NULL ? "key" : "id",
	    v) == -1 || (ie != NULL && json_object_set_new(o, "idem",
	    idem_to_json(ie)) == -1)) {
		json_decref(o);
		return (admin_error(c, 500, "internal_error", "the change "
		    "cannot be encoded"));
	}
	json_decref(c->c_cl_req);
	c->c_cl_req = o;
	return (0);
}

/* Send the staged change to the master; 0, or -1 with the answer set. */
static int
admin_cluster_commit(struct admin_ctx *c, char *err, size_t errlen)
{
	json_t		*req = c->c_cl_req, *ans, *v;
	const char	*what, *msg;
	int		 rc;

	c->c_cl_req = NULL;
	ans = cluster_call(c->c_env->ae_cluster, req, err, errlen);
	json_decref(req);
	if (ans == NULL) {
		log_warnx("cluster: %s", err);
		return (admin_error(c, 503, "cluster_unavailable", "the change "
		    "may or may not have been made (%s): look, or retry with "
		    "the same Idempotency-Key", err));
	}
	if (json_is_true(json_object_get(ans, "ok"))) {
		json_decref(ans);
		return (0);
	}
	what = json_string_value(json_object_get(ans, "error"));
	msg = (v = json_object_get(ans, "message")) != NULL &&
	    json_is_string(v) ? json_string_value(v) : "no reason given";
	if (what != NULL && strcmp(what, "retry") == 0) {
		c->c_cl_retry = 1;
		rc = admin_error(c, 409, "conflict", "the key was changed on "
		    "another node at the same time; retry");
	} else if (what != NULL && strcmp(what, "refused") == 0)
		rc = admin_error(c, 500, "internal_error", "the master "
		    "refused the change: %s", msg);
	else
		rc = admin_error(c, 503, "cluster_unavailable", "the cluster "
		    "cannot take changes now: %s", msg);
	json_decref(ans);
	return (rc);
}

/*
 * Release the writer lock, then wait until the line written under it (if
 * any) is durable: the group commit of journal_sync() lets the writers
 * that came meanwhile share the fdatasync().  0, or -1 with 503 if the
 * line may not be on disk (the change is in memory already; journal.h
 * says what happens next).  A caller acknowledges only after 0.
 */
static int
admin_unlock(struct admin_ctx *c)
{
	char		 err[256];
	uint64_t	 seq = c->c_sync;

	keystore_unlock(c->c_ks, c->c_env->ae_pid);
	pthread_mutex_unlock(&admin_writer);
	c->c_sync = 0;
	if (c->c_cl_req != NULL)
		return (admin_cluster_commit(c, err, sizeof(err)));
	if (seq == 0)
		return (0);
#ifdef KEYGATE_DEBUG
	admin_test_stall("KEYGATE_TEST_STALL_SYNC", "line not yet durable");
#endif
	if (journal_sync(c->c_env->ae_journal, seq, err, sizeof(err)) == 0)
		return (0);
	log_warnx("journal line %llu: %s", (unsigned long long)seq, err);
	return (admin_error(c, 503, "storage_unavailable",
	    "the change could not be made durable: %s", err));
}

/*
 * Under the lock: write k as the next change, journal first.  A journal
 * failure leaves memory as it was (503).  The callers checked capacity
 * and uniqueness under this same lock, so keystore_put cannot refuse; if
 * it does anyway, disk holds a line memory lacks, which is logged.  The
 * line becomes durable in admin_unlock.
 */
static int
admin_store_idem(struct admin_ctx *c, const struct ks_key *k,
    struct idem_entry *ie)
{
	char		 err[256];
	uint64_t	 seq;
	int		 rc;

	if (c->c_env->ae_cluster != NULL)
		return (admin_cluster_stage(c, "put", k, k->k_id, ie));
	seq = c->c_ks->ks_hdr->kh_applied + 1;
	if ((ie != NULL ? journal_write_put_extra(c->c_env->ae_journal, seq,
	    k, idem_to_json(ie), err, sizeof(err)) :
	    journal_write_put(c->c_env->ae_journal, seq, k, err,
	    sizeof(err))) == -1) {
		log_warnx("key %s: journal: %s", k->k_id, err);
		return (admin_error(c, 503, "storage_unavailable",
		    "the key could not be stored: %s", err));
	}
	c->c_sync = seq;
#ifdef KEYGATE_DEBUG
	admin_test_stall("KEYGATE_TEST_STALL_WRITE", "lock held");
#endif
	if ((rc = keystore_put(c->c_ks, k, seq)) == KS_OK) {
		/* On disk with the key: the entry's place in memory follows. */
		if (ie != NULL)
			idem_put(c->c_env->ae_idem, ie, c->c_rq->aq_now);
		return (0);
	}
	log_warnx("key %s: journal line %llu written but the store refused "
	    "it (%d)", k->k_id, (unsigned long long)seq, rc);
	if (rc == KS_FULL)
		return (admin_error(c, 507, "key_store_full",
		    "the key store is full (max_keys %u); delete keys or "
		    "raise max_keys", c->c_ks->ks_hdr->kh_max_keys));
	return (admin_error(c, 500, "internal_error",
	    "the key store refused the key"));
}

static int
admin_store(struct admin_ctx *c, const struct ks_key *k)
{
	return (admin_store_idem(c, k, NULL));
}

/*
 * A fresh secret for k with prefix k_prefix into secret; k_digest and
 * k_hint follow.  A digest the store already holds (2^-190 per pair, but
 * the store would refuse it) is drawn again.  Under the lock; 0 or -1.
 */
static int
admin_new_secret(struct admin_ctx *c, struct ks_key *k, char *secret,
    size_t len)
{
	struct ks_key	 other;
	uint32_t	 slot;
	int		 i, old;

	for (i = 0; i < ADMIN_TRIES; i++) {
		if (secret_generate(k->k_prefix, secret, len) == -1)
			break;
		secret_digest(secret, strlen(secret), k->k_digest);
		if (keystore_find_digest(c->c_ks, k->k_digest, &other, &slot,
		    &old) == KS_NOTFOUND) {
			secret_hint(secret, k->k_hint, sizeof(k->k_hint));
			return (0);
		}
	}
	return (admin_error(c, 500, "internal_error",
	    "no new secret could be generated"));
}

/* A fresh id for k, not used by any key.  Under the lock; 0 or -1. */
static int
admin_new_id(struct admin_ctx *c, struct ks_key *k)
{
	struct ks_key	 other;
	uint32_t	 slot;
	int		 i;

	for (i = 0; i < ADMIN_TRIES; i++) {
		if (secret_make_id(k->k_id, sizeof(k->k_id)) == -1)
			break;
		if (keystore_find_id(c->c_ks, k->k_id, &other, &slot) ==
		    KS_NOTFOUND)
			return (0);
	}
	return (admin_error(c, 500, "internal_error",
	    "no new key id could be generated"));
}

/*
 * Under the lock: give k the brought digest b, unless a key has it
 * already (409 key_exists: one secret, one key).  0 or -1.
 */
static int
admin_byo_digest(struct admin_ctx *c, struct ks_key *k,
    const struct admin_byo *b)
{
	struct ks_key	 other;
	uint32_t	 slot;
	int		 old, rc;

	rc = keystore_find_digest(c->c_ks, b->b_digest, &other, &slot, &old);
	if (rc == KS_BUSY)
		return (admin_error(c, 503, "key_store_busy",
		    "the key store is being repaired; retry"));
	if (rc == KS_OK)
		return (admin_error(c, 409, "key_exists", "key %s already "
		    "has this secret", other.k_id));
	memcpy(k->k_digest, b->b_digest, KS_DIGEST_LEN);
	memcpy(k->k_hint, b->b_hint, sizeof(b->b_hint));
	return (0);
}

/*
 * Under the lock: the create steps that touch the store.  With ie (an
 * Idempotency-Key's entry, hash and body digest set), the new secret is
 * sealed into it and it goes to disk with the key.
 */
static int
admin_create_locked(struct admin_ctx *c, struct ks_key *k,
    const struct admin_byo *b, char *secret, size_t len,
    struct idem_entry *ie)
{
	const struct admin_request	*rq = c->c_rq;
	uint32_t			 max = c->c_ks->ks_hdr->kh_max_keys;

	/* Checked before the journal: a refused put would leave a line. */
	if (keystore_count(c->c_ks) >= max)
		return (admin_error(c, 507, "key_store_full", "the key store "
		    "is full (max_keys %u); delete keys or raise max_keys",
		    max));
	if (k->k_id[0] == '\0' && admin_new_id(c, k) == -1)
		return (-1);
	if (b->b_kind != BYO_NONE) {
		if (admin_byo_digest(c, k, b) == -1)
			return (-1);
	} else if (admin_new_secret(c, k, secret, len) == -1)
		return (-1);
	if (ie == NULL)
		return (admin_store(c, k));
	memcpy(ie->ie_id, k->k_id, KS_ID_LEN);
	ie->ie_created = rq->aq_now;
	if (idem_seal(rq->aq_idem, rq->aq_idemlen, b->b_kind == BYO_NONE ?
	    secret : NULL, ie) == -1)
		return (admin_error(c, 500, "internal_error",
		    "the secret could not be kept for a retry"));
	return (admin_store_idem(c, k, ie));
}

/*
 * Under the lock: a create whose Idempotency-Key has an entry ie.  The
 * same body (digest body) is the same request, answered again: the key
 * into k and, unless the caller brought it, its secret decrypted into
 * secret, checked to be still the key's (not regenerated since).  Another
 * body is 422 idempotency_key_reused; a key deleted since, 404.  0 or -1.
 */
static int
admin_idem_replay(struct admin_ctx *c, const struct idem_entry *ie,
    const uint8_t *body, struct ks_key *k, char *secret, size_t len)
{
	const struct admin_request	*rq = c->c_rq;
	uint8_t				 d[KS_DIGEST_LEN];
	uint32_t			 slot;
	int				 rc;

	if (CRYPTO_memcmp(ie->ie_body, body, KS_DIGEST_LEN) != 0) {
		admin_verror_field(c, 422, "idempotency_key_reused",
		    "Idempotency-Key", "this Idempotency-Key was used for "
		    "another body within 24 hours: use a new random value "
		    "(a UUID) for each new key");
		return (-1);
	}
	rc = keystore_find_id(c->c_ks, ie->ie_id, k, &slot);
	if (rc == KS_BUSY)
		return (admin_error(c, 503, "key_store_busy",
		    "the key store is being repaired; retry"));
	if (rc != KS_OK)
		return (admin_error(c, 404, "key_not_found", "key %s, created "
		    "with this Idempotency-Key, was deleted", ie->ie_id));
	if (ie->ie_ctlen == 0) {
		secret[0] = '\0';
		return (0);
	}
	if (idem_open(rq->aq_idem, rq->aq_idemlen, ie, secret, len) == -1)
		return (admin_error(c, 500, "internal_error", "the secret kept "
		    "for this Idempotency-Key cannot be read"));
	secret_digest(secret, strlen(secret), d);
	rc = CRYPTO_memcmp(d, k->k_digest, KS_DIGEST_LEN);
	OPENSSL_cleanse(d, sizeof(d));
	if (rc != 0) {
		OPENSSL_cleanse(secret, len);
		return (admin_error(c, 409, "conflict", "key %s, created with "
		    "this Idempotency-Key, has had a new secret since",
		    ie->ie_id));
	}
	return (0);
}

/*
 * A new key record from a create body (consumed: the brought secret is
 * wiped from it) into k and b: the fields, the caller's secret if any,
 * owner required, the prefix of a brought secret unless "prefix" is set.
 * 0 or -1 with the 422.
 */
static int
admin_key_build(struct admin_ctx *c, json_t *body, struct ks_key *k,
    struct admin_byo *b)
{
	int	 mask;

	memset(k, 0, sizeof(*k));
	snprintf(k->k_prefix, sizeof(k->k_prefix), "%s", SECRET_DEFAULT_PREFIX);
	if (admin_take_byo(c, body, b) == -1 ||
	    admin_apply(c, body, AF_CREATE, k, &mask) == -1)
		return (-1);
	if ((mask & AB_OWNER) == 0)
		return (admin_invalid(c, "owner", "owner is required"));
	if (b->b_kind != BYO_NONE && (mask & AB_PREFIX) == 0)
		snprintf(k->k_prefix, sizeof(k->k_prefix), "%s", b->b_prefix);
	k->k_created = k->k_updated = c->c_rq->aq_now;
	return (0);
}

/*
 * The Idempotency-Key of a create, if the request has one and the store
 * keeps them: its lookup digest and the body's into ie, *use set.  0, or
 * -1 with 422 for a key that is not 1..255 visible ASCII.
 */
static int
admin_idem_key(struct admin_ctx *c, struct idem_entry *ie, int *use)
{
	const struct admin_request	*rq = c->c_rq;

	memset(ie, 0, sizeof(*ie));
	*use = rq->aq_idem != NULL && c->c_env->ae_idem != NULL;
	if (!*use)
		return (0);
	if (!idem_valid(rq->aq_idem, rq->aq_idemlen))
		return (admin_verror_field(c, 422, "invalid_field",
		    "Idempotency-Key", "Idempotency-Key must be 1 to %d "
		    "visible ASCII characters (a random UUID)", IDEM_KEY_MAX));
	idem_hash(rq->aq_idem, rq->aq_idemlen, ie->ie_hash);
	secret_digest(rq->aq_body != NULL ? rq->aq_body : "",
	    rq->aq_body != NULL ? rq->aq_bodylen : 0, ie->ie_body);
	return (0);
}

/*
 * POST /v1/keys: a new key; 201 with its secret, shown this once, or
 * without one when the caller brought the secret (or its digest).  With
 * an Idempotency-Key seen in the last 24 hours and the same body, the
 * first answer again: the same key, the same secret (idem.h).
 */
static int
admin_create(struct admin_ctx *c)
{
	struct ks_key		 k;
	struct admin_byo	 b;
	struct idem_entry	 ie, prev;
	char			 secret[SECRET_MAX + 1];
	json_t			*body;
	int			 rc, use, found = 0;

	memset(&b, 0, sizeof(b));
	memset(&k, 0, sizeof(k));
	secret[0] = '\0';
	if (admin_idem_key(c, &ie, &use) == -1 || admin_body(c, &body) == -1)
		return (-1);
	rc = admin_key_build(c, body, &k, &b);
	json_decref(body);
	if (rc == -1 || (rc = admin_lock(c)) == -1)
		goto done;
	if (use && (found = idem_find(c->c_env->ae_idem, ie.ie_hash,
	    c->c_rq->aq_now, &prev)) == 1)
		rc = admin_idem_replay(c, &prev, ie.ie_body, &k, secret,
		    sizeof(secret));
	else
		rc = admin_create_locked(c, &k, &b, secret, sizeof(secret),
		    use ? &ie : NULL);
	if (admin_unlock(c) == -1)
		rc = -1;
	if (rc == 0) {
		if (found)
			log_info("key %s: create answered again "
			    "(Idempotency-Key)", k.k_id);
		else
			log_info("key %s created for owner \"%s\"%s", k.k_id,
			    k.k_owner, b.b_kind == BYO_NONE ? "" :
			    " with the caller's secret");
		rc = secret[0] != '\0' ?
		    admin_reply_secret(c, 201, &k, 0, secret) :
		    admin_reply_key(c, 201, &k, 0);
	}
done:
	OPENSSL_cleanse(secret, sizeof(secret));
	OPENSSL_cleanse(&k, sizeof(k));
	OPENSSL_cleanse(&b, sizeof(b));
	OPENSSL_cleanse(&ie, sizeof(ie));
	OPENSSL_cleanse(&prev, sizeof(prev));
	return (rc);
}

/* --- POST /v1/keys/import ------------------------------------------------- */

/* The answer of an import being built: NDJSON, one line per key line. */
struct admin_out {
	char		*o_buf;
	size_t		 o_len;
	size_t		 o_size;
};

/* One key line of an import and what became of it. */
struct admin_imp {
	size_t		 i_line;	/* in the body, from 1 */
	struct ks_key	 i_k;
	const char	*i_status;	/* NULL: not decided yet */
	json_t		*i_err;		/* "error" of the result, or NULL */
	int		 i_new;		/* to be written */
};

/* Do a and b hold the same key (all but times and usage)? */
static int
admin_same_key(const struct ks_key *a, const struct ks_key *b)
{
	return (CRYPTO_memcmp(a->k_digest, b->k_digest, KS_DIGEST_LEN) == 0 &&
	    a->k_grace_until == 0 && a->k_expires == b->k_expires &&
	    (a->k_flags & KS_F_DISABLED) == (b->k_flags & KS_F_DISABLED) &&
	    memcmp(a->k_rate, b->k_rate, sizeof(a->k_rate)) == 0 &&
	    strcmp(a->k_prefix, b->k_prefix) == 0 &&
	    strcmp(a->k_hint, b->k_hint) == 0 &&
	    strcmp(a->k_name, b->k_name) == 0 &&
	    strcmp(a->k_owner, b->k_owner) == 0 &&
	    strcmp(a->k_app, b->k_app) == 0 &&
	    strcmp(a->k_scopes, b->k_scopes) == 0);
}

/*
 * The error object of a line from the answer admin_error() left in rs:
 * its code, message and field.  NULL if out of memory.
 */
static json_t *
admin_line_error(const struct admin_response *rs)
{
	json_t	*e, *o;

	if (rs->as_body == NULL ||
	    (e = json_loadb(rs->as_body, rs->as_bodylen, 0, NULL)) == NULL)
		return (json_pack("{s:s,s:s}", "code", "internal_error",
		    "message", "out of memory"));
	o = json_pack("{s:O,s:O}", "code", json_object_get(e, "error"),
	    "message", json_object_get(e, "message"));
	if (o != NULL && json_object_get(e, "field") != NULL &&
	    json_object_set(o, "field", json_object_get(e, "field")) == -1) {
		json_decref(o);
		o = NULL;
	}
	json_decref(e);
	return (o);
}

/*
 * Run f on line it in a context of its own, whose response catches the
 * error the usual helpers write: on -1 it becomes the line's i_err.
 */
static int
admin_on_line(struct admin_ctx *c, struct admin_imp *it,
    int (*f)(struct admin_ctx *, struct admin_imp *, void *), void *arg)
{
	struct admin_response	 lrs;
	struct admin_ctx	 lc = *c;
	int			 rc;

	memset(&lrs, 0, sizeof(lrs));
	lc.c_rs = &lrs;
	if ((rc = f(&lc, it, arg)) == -1) {
		it->i_status = "error";
		it->i_err = admin_line_error(&lrs);
	}
	admin_response_free(&lrs);
	return (rc);
}

/*
 * A key line text[0..len) (arg) into it->i_k: the create fields plus an
 * optional "id", and a secret or its digest, which an import needs (it
 * brings keys that exist elsewhere; keygate would have no way to hand
 * back new secrets for a thousand lines).  0 or -1 with the error.
 */
static int
admin_import_parse(struct admin_ctx *c, struct admin_imp *it, void *arg)
{
	const struct iovec	*line = arg;
	struct admin_byo	 b;
	struct ks_key		*k = &it->i_k;
	char			 id[KS_ID_LEN + 1] = "";
	char			 cause[JSON_ERROR_TEXT_LENGTH];
	json_error_t		 je;
	json_t			*o, *v;
	int			 rc = -1;

	memset(&b, 0, sizeof(b));
	o = json_loadb(line->iov_base, line->iov_len, JSON_REJECT_DUPLICATES,
	    &je);
	if (o == NULL) {
		admin_json_cause(cause, sizeof(cause), je.text);
		OPENSSL_cleanse(je.text, sizeof(je.text));
		return (admin_error(c, 400, "bad_json", "invalid JSON at column "
		    "%d: %s", je.column, cause));
	}
	if (!json_is_object(o)) {
		admin_error(c, 400, "bad_json", "the line must be a JSON object");
		goto done;
	}
	if ((v = json_object_get(o, "id")) != NULL) {
		if (!json_is_string(v) || !secret_valid_id(json_string_value(v),
		    json_string_length(v))) {
			admin_invalid(c, "id", "id must be \"key_\" and 16 "
			    "letters or digits");
			goto done;
		}
		memcpy(id, json_string_value(v), KS_ID_LEN + 1);
		json_object_del(o, "id");
	}
	rc = admin_key_build(c, o, k, &b);
	memcpy(k->k_id, id, sizeof(id));	/* for the result line */
	if (rc == 0 && b.b_kind == BYO_NONE)
		rc = admin_invalid(c, "secret", "an imported key needs "
		    "secret or secret_sha256");
	if (rc == 0) {
		memcpy(k->k_digest, b.b_digest, KS_DIGEST_LEN);
		memcpy(k->k_hint, b.b_hint, sizeof(b.b_hint));
	}
done:
	json_decref(o);
	OPENSSL_cleanse(&b, sizeof(b));
	return (rc);
}

/* An earlier new key of this import with k's id (by_id) or digest. */
static const struct admin_imp *
admin_import_earlier(const struct admin_imp *items, size_t n,
    const struct ks_key *k, int by_id)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (items[i].i_new && (by_id ?
		    strcmp(items[i].i_k.k_id, k->k_id) == 0 :
		    CRYPTO_memcmp(items[i].i_k.k_digest, k->k_digest,
		    KS_DIGEST_LEN) == 0))
			return (&items[i]);
	return (NULL);
}

/*
 * Under the lock: what becomes of line it (arg: the import's items, it
 * among them), against the store and the new keys of the lines before
 * it, as if those were stored already.  An id that exists is
 * "unchanged" when the key is the same, else 409 conflict; a digest that
 * exists is "unchanged" for a line without id whose key is the same (a
 * retried import), else 409 key_exists.  The id is looked at first, so
 * that a retry with ids always finds its key.  Else the key is new, with
 * a fresh id if it has none.  0 or -1 with the error.
 */
static int
admin_import_decide(struct admin_ctx *c, struct admin_imp *it, void *arg)
{
	const struct admin_imp	*items = arg, *e;
	struct ks_key		*k = &it->i_k, old;
	size_t			 before = (size_t)(it - items), i, fresh = 0;
	uint32_t		 slot, max = c->c_ks->ks_hdr->kh_max_keys;
	int			 isold, rc;

	if (k->k_id[0] != '\0') {
		if ((e = admin_import_earlier(items, before, k, 1)) != NULL) {
			old = e->i_k;
			rc = KS_OK;
		} else
			rc = keystore_find_id(c->c_ks, k->k_id, &old, &slot);
		if (rc == KS_OK && admin_same_key(&old, k))
			goto unchanged;
		if (rc == KS_OK)
			return (admin_error(c, 409, "conflict", "key %s exists "
			    "with other content", k->k_id));
		if (rc != KS_NOTFOUND)
			goto busy;
	}
	isold = 0;
	if ((e = admin_import_earlier(items, before, k, 0)) != NULL) {
		old = e->i_k;
		rc = KS_OK;
	} else
		rc = keystore_find_digest(c->c_ks, k->k_digest, &old, &slot,
		    &isold);
	if (rc == KS_BUSY)
		goto busy;
	if (rc == KS_OK) {
		if (k->k_id[0] == '\0' && !isold && admin_same_key(&old, k)) {
			memcpy(k->k_id, old.k_id, sizeof(k->k_id));
			goto unchanged;
		}
		return (admin_error(c, 409, "key_exists", "key %s already has "
		    "this secret", old.k_id));
	}
	for (i = 0; i < before; i++)
		fresh += items[i].i_new;
	if (keystore_count(c->c_ks) + fresh >= max)
		return (admin_error(c, 507, "key_store_full", "the key store "
		    "is full (max_keys %u); delete keys or raise max_keys",
		    max));
	/* A fresh id clashing with an earlier line's: 2^-95, drawn again. */
	if (k->k_id[0] == '\0' && (admin_new_id(c, k) == -1 ||
	    (admin_import_earlier(items, before, k, 1) != NULL &&
	    admin_new_id(c, k) == -1)))
		return (-1);
	it->i_new = 1;
	it->i_status = "created";
	return (0);
unchanged:
	it->i_status = "unchanged";
	return (0);
busy:
	return (admin_error(c, 503, "key_store_busy",
	    "the key store is being repaired; retry"));
}

/*
 * In a cluster, after the lock: the import's new keys committed one by
 * one through the master (each as a create: no record may have its id,
 * nor another key its secret); a key the cluster refused is that line's
 * error, the others stand.
 */
static void
admin_import_cluster(struct admin_ctx *c, struct admin_imp *items, size_t n)
{
	struct admin_response	 lrs;
	struct admin_ctx	 lc;
	char			 err[256];
	size_t			 i;
	json_t			*key;

	if (c->c_env->ae_cluster == NULL)
		return;
	for (i = 0; i < n; i++) {
		if (!items[i].i_new)
			continue;
		memset(&lrs, 0, sizeof(lrs));
		lc = *c;
		lc.c_rs = &lrs;
		lc.c_cl_req = json_pack("{s:s,s:n}", "op", "put", "expect");
		key = journal_key_json(&items[i].i_k, "key", err, sizeof(err));
		if (lc.c_cl_req == NULL || key == NULL ||
		    json_object_set_new(lc.c_cl_req, "key", key) == -1) {
			if (lc.c_cl_req == NULL)
				json_decref(key);
			admin_error(&lc, 500, "internal_error", "the key "
			    "cannot be encoded");
		}
		else if (admin_cluster_commit(&lc, err, sizeof(err)) == 0)
			continue;
		json_decref(lc.c_cl_req);
		items[i].i_new = 0;
		items[i].i_status = "error";
		items[i].i_err = admin_line_error(&lrs);
		admin_response_free(&lrs);
	}
}

/*
 * Under the lock: write the new keys of the import, one journal write
 * and one fdatasync for all of them (journal_put_many), then put them in
 * memory.  A journal failure makes every one of them an error and leaves
 * memory as it was, as for a single create.
 */
static void
admin_import_store(struct admin_ctx *c, struct admin_imp *items, size_t n)
{
	struct admin_response	 lrs;
	struct admin_ctx	 lc = *c;
	const struct ks_key	**keys;
	char			 err[256];
	uint64_t		 seq = c->c_ks->ks_hdr->kh_applied + 1;
	size_t			 i, nnew = 0;
	int			 rc;

	if (c->c_env->ae_cluster != NULL)
		return;		/* admin_import_cluster, after the lock */
	if ((keys = calloc(n, sizeof(*keys))) == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	for (i = 0; i < n; i++)
		if (items[i].i_new)
			keys[nnew++] = &items[i].i_k;
	if (nnew == 0) {
		free(keys);
		return;
	}
	rc = journal_put_many(c->c_env->ae_journal, seq, keys, nnew, err,
	    sizeof(err));
	free(keys);
	if (rc == -1)
		goto fail;
#ifdef KEYGATE_DEBUG
	admin_test_stall("KEYGATE_TEST_STALL_WRITE", "lock held");
#endif
	for (i = 0; i < n; i++) {
		if (!items[i].i_new)
			continue;
		if ((rc = keystore_put(c->c_ks, &items[i].i_k, seq)) != KS_OK) {
			log_warnx("key %s: journal line %llu written but the "
			    "store refused it (%d)", items[i].i_k.k_id,
			    (unsigned long long)seq, rc);
			items[i].i_status = "error";
			items[i].i_err = json_pack("{s:s,s:s}", "code",
			    "internal_error", "message", "the key store "
			    "refused the key");
		}
		seq++;
	}
	return;
fail:
	log_warnx("import: journal: %s", err);
	memset(&lrs, 0, sizeof(lrs));
	lc.c_rs = &lrs;
	admin_error(&lc, 503, "storage_unavailable", "the key could not be "
	    "stored: %s", err);
	for (i = 0; i < n; i++)
		if (items[i].i_new) {
			items[i].i_new = 0;
			items[i].i_status = "error";
			items[i].i_err = admin_line_error(&lrs);
		}
	admin_response_free(&lrs);
}

/* Append the JSON text of o (a reference taken) and a newline; 0 or -1. */
static int
admin_out_add(struct admin_out *out, json_t *o)
{
	size_t	 n;
	char	*p;

	if (o == NULL)
		return (-1);
	n = json_dumpb(o, NULL, 0, JSON_COMPACT);
	if (n == 0 || n + 1 > SIZE_MAX - out->o_len) {
		json_decref(o);
		return (-1);
	}
	if (out->o_len + n + 2 > out->o_size) {
		out->o_size = (out->o_len + n + 2) * 2;
		if ((p = realloc(out->o_buf, out->o_size)) == NULL) {
			json_decref(o);
			return (-1);
		}
		out->o_buf = p;
	}
	json_dumpb(o, out->o_buf + out->o_len, n, JSON_COMPACT);
	json_decref(o);
	out->o_len += n;
	out->o_buf[out->o_len++] = '\n';
	out->o_buf[out->o_len] = '\0';
	return (0);
}

/* The NDJSON answer of the items into out; counts by outcome.  0 or -1. */
static int
admin_import_answer(struct admin_imp *items, size_t n, struct admin_out *out,
    unsigned *counts)
{
	struct admin_imp	*it;
	json_t			*res;
	size_t			 i;

	for (i = 0; i < n; i++) {
		it = &items[i];
		if (it->i_err != NULL) {
			res = json_pack("{s:I,s:s?,s:s,s:O}", "line",
			    (json_int_t)it->i_line, "id", it->i_k.k_id[0] !=
			    '\0' ? it->i_k.k_id : NULL, "status", "error",
			    "error", it->i_err);
			counts[2]++;
		} else {
			res = json_pack("{s:I,s:s,s:s}", "line",
			    (json_int_t)it->i_line, "id", it->i_k.k_id,
			    "status", it->i_status);
			counts[strcmp(it->i_status, "created") == 0 ? 0 : 1]++;
		}
		if (admin_out_add(out, res) == -1)
			return (-1);
	}
	return (0);
}

/* The key lines of the body into *items (blank lines skipped); 0 or -1. */
static int
admin_import_lines(struct admin_ctx *c, struct admin_imp **items, size_t *n)
{
	const struct admin_request	*rq = c->c_rq;
	const char			*p, *end, *nl, *e;
	struct admin_imp		*it;
	struct iovec			 line;
	size_t				 lineno = 0, cap = 0;

	*items = NULL;
	*n = 0;
	p = rq->aq_body != NULL ? rq->aq_body : "";
	end = p + (rq->aq_body != NULL ? rq->aq_bodylen : 0);
	for (; p < end; p = nl < end ? nl + 1 : end) {
		lineno++;
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			nl = end;
		for (e = nl; e > p && (e[-1] == '\r' || e[-1] == ' ' ||
		    e[-1] == '\t'); e--)
			;
		if (e == p)
			continue;
		if (*n == cap) {
			cap = cap * 2 + 64;
			if ((it = reallocarray(*items, cap, sizeof(**items))) ==
			    NULL)
				return (-1);
			*items = it;
		}
		it = &(*items)[(*n)++];
		memset(it, 0, sizeof(*it));
		it->i_line = lineno;
		line.iov_base = (void *)(uintptr_t)p;
		line.iov_len = (size_t)(e - p);
		(void)admin_on_line(c, it, admin_import_parse, &line);
	}
	return (0);
}

/* Free the items of an import (their keys held digests only). */
static void
admin_import_free(struct admin_imp *items, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		json_decref(items[i].i_err);
	if (items != NULL)
		OPENSSL_cleanse(items, n * sizeof(*items));
	free(items);
}

/*
 * POST /v1/keys/import: NDJSON, one key object per line (see
 * admin_import_parse); blank lines are skipped.  200 with one NDJSON
 * result per key line, in order: {"line":N,"id":ID|null,"status":
 * "created"|"unchanged"|"error"[,"error":{"code","message"[,"field"]}]}.
 *
 * The lines are parsed and checked without the lock, then decided and
 * written under it in one go: every new key's journal line in one write
 * and one fdatasync, then memory, then the answer, so "created" is only
 * ever said of a key on disk, and an import of 1,000 keys costs one
 * fdatasync, not 1,000.  The lock is held for the decisions and that one
 * write (milliseconds for the 64 KiB a body may hold).  A bad line does
 * not stop the others.  The body holds plaintext secrets: jansson wipes
 * what it parsed, the server wipes the request buffer.
 */
static int
admin_import(struct admin_ctx *c)
{
	struct admin_out	 out;
	struct admin_imp	*items;
	size_t			 n, i;
	unsigned		 counts[3] = { 0, 0, 0 };
	int			 rc;

	memset(&out, 0, sizeof(out));
	if (admin_import_lines(c, &items, &n) == -1) {
		admin_import_free(items, n);
		return (admin_oom(c->c_rs));
	}
	if (n == 0) {
		free(items);
		return (admin_error(c, 400, "bad_json", "the body holds no "
		    "line: send one JSON key object per line"));
	}
	for (i = 0; i < n && items[i].i_err != NULL; i++)
		;
	if (i < n) {
		if (admin_lock(c) == -1) {
			admin_import_free(items, n);
			return (-1);
		}
		for (i = 0; i < n; i++)
			if (items[i].i_err == NULL)
				(void)admin_on_line(c, &items[i],
				    admin_import_decide, items);
		admin_import_store(c, items, n);
		admin_unlock(c);
		admin_import_cluster(c, items, n);
	}
	rc = admin_import_answer(items, n, &out, counts);
	admin_import_free(items, n);
	if (rc == -1) {
		free(out.o_buf);
		return (admin_oom(c->c_rs));
	}
	log_info("import: %u key(s) created, %u unchanged, %u refused",
	    counts[0], counts[1], counts[2]);
	free(c->c_rs->as_body);
	c->c_rs->as_status = 200;
	c->c_rs->as_body = out.o_buf;
	c->c_rs->as_bodylen = out.o_len;
	c->c_rs->as_type = ADMIN_NDJSON;
	return (0);
}

/*
 * Decode the len bytes of a query component at s into out (NUL-terminated):
 * %XX escapes and "+" for a space.  -1 on a bad escape or an encoded NUL,
 * -2 when the result does not fit.
 */
static int
admin_pct_decode(const char *s, size_t len, char *out, size_t outlen)
{
	size_t	 i, n = 0;
	int	 hi, lo;

	for (i = 0; i < len; i++) {
		if (n + 1 >= outlen)
			return (-2);
		if (s[i] == '+')
			out[n++] = ' ';
		else if (s[i] != '%')
			out[n++] = s[i];
		else {
			if (len - i < 3 ||
			    (hi = util_hexval(s[i + 1])) == -1 ||
			    (lo = util_hexval(s[i + 2])) == -1 ||
			    (hi == 0 && lo == 0))
				return (-1);
			out[n++] = (char)(hi << 4 | lo);
			i += 2;
		}
	}
	out[n] = '\0';
	return (0);
}

/* A decimal number of 1..10 digits at s, at most max; 0 or -1. */
static int
admin_decimal(const char *s, uint32_t max, uint32_t *v)
{
	uint64_t	 n = 0;
	size_t		 i, len = strlen(s);

	if (len < 1 || len > 10)
		return (-1);
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return (-1);
		n = n * 10 + (uint64_t)(s[i] - '0');
	}
	if (n > max)
		return (-1);
	*v = (uint32_t)n;
	return (0);
}

/* The index of val in words[0..n-1], or -1. */
static int
admin_word(const char *val, const char *const *words, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (strcmp(val, words[i]) == 0)
			return ((int)i);
	return (-1);
}

/*
 * An age of keys: digits and a unit (s, m, h or d; bare: seconds), more
 * than 0 and at most ADMIN_AGE_MAX_MS, into ms; 0 or -1.
 */
static int
admin_age(const char *s, int64_t *ms)
{
	static const struct { char u; int64_t ms; } units[] = {
		{ 's', 1000 }, { 'm', 60000 }, { 'h', 3600000 },
		{ 'd', 86400000 }
	};
	int64_t		 n = 0, mult = 1000;
	size_t		 i, len = strlen(s);

	if (len > 0 && (s[len - 1] < '0' || s[len - 1] > '9')) {
		for (i = 0; i < nitems(units) && units[i].u != s[len - 1]; i++)
			;
		if (i == nitems(units))
			return (-1);
		mult = units[i].ms;
		len--;
	}
	if (len < 1 || len > 10)
		return (-1);
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return (-1);
		n = n * 10 + (s[i] - '0');
	}
	if (n == 0 || n > ADMIN_AGE_MAX_MS / mult)
		return (-1);
	*ms = n * mult;
	return (0);
}

/* Store the decoded value val of parameter p into q; 0 or -1 with 422. */
static int
admin_query_set(struct admin_ctx *c, struct admin_query *q, int p,
    const char *val)
{
	const char	*name = admin_qparams[p];
	size_t		 len, max;

	switch (p) {
	case QP_OWNER:
	case QP_APP:
		max = p == QP_OWNER ? KS_OWNER_MAX : KS_APP_MAX;
		if ((len = strlen(val)) > max)
			return (admin_invalid(c, name, "%s must be at most %zu "
			    "characters long", name, max));
		memcpy(p == QP_OWNER ? q->q_owner : q->q_app, val, len + 1);
		return (0);
	case QP_LIMIT:
		if (val[0] != '\0' && (admin_decimal(val, ADMIN_LIST_MAX,
		    &q->q_limit) == -1 || q->q_limit < 1))
			return (admin_invalid(c, name, "limit must be an "
			    "integer from 1 to %d", ADMIN_LIST_MAX));
		return (0);
	case QP_TEXT:
		if ((len = strlen(val)) > ADMIN_TEXT_MAX)
			return (admin_invalid(c, name, "q must be at most %d "
			    "characters long", ADMIN_TEXT_MAX));
		for (len = 0; val[len] != '\0'; len++)	/* admin_contains() */
			q->q_text[len] = (char)tolower((unsigned char)val[len]);
		q->q_text[len] = '\0';
		return (0);
	case QP_STATE:
		if ((q->q_state = admin_word(val, admin_qstates,
		    nitems(admin_qstates))) <= 0)
			return (admin_invalid(c, name, "state must be active, "
			    "disabled, expired or expiring"));
		return (0);
	case QP_OLDER:
	case QP_UNUSED:
		if (admin_age(val, p == QP_OLDER ? &q->q_older_ms :
		    &q->q_unused_ms) == -1)
			return (admin_invalid(c, name, "%s must be a duration "
			    "such as 90d, 12h, 30m or 45s, up to 3650 days",
			    name));
		return (0);
	case QP_SORT:
		q->q_desc = val[0] == '-';
		if ((q->q_sort = admin_word(val + q->q_desc, admin_qsorts,
		    nitems(admin_qsorts))) <= 0)
			return (admin_invalid(c, name, "sort must be created, "
			    "last_used, expires or name, \"-\" first for "
			    "descending"));
		return (0);
	case QP_OFFSET:
		if (admin_decimal(val, c->c_ks->ks_hdr->kh_max_keys,
		    &q->q_offset) == -1)
			return (admin_invalid(c, name, "offset must be an "
			    "integer from 0 to max_keys"));
		return (0);
	default:
		if (val[0] != '\0' && admin_decimal(val,
		    c->c_ks->ks_hdr->kh_max_keys, &q->q_cursor) == -1)
			return (admin_invalid(c, name, "cursor is not a "
			    "next_cursor returned by this server"));
		return (0);
	}
}

/* One "name=value" of the query (len bytes at s) into q; 0 or -1. */
static int
admin_query_param(struct admin_ctx *c, struct admin_query *q,
    const char *s, size_t len)
{
	char		 name[32], val[ADMIN_QVAL_MAX + 1];
	const char	*eq;
	size_t		 i, nlen;
	int		 p, rc;

	eq = memchr(s, '=', len);
	nlen = eq != NULL ? (size_t)(eq - s) : len;
	p = QP_N;
	if (admin_pct_decode(s, nlen, name, sizeof(name)) == 0)
		for (p = 0; p < QP_N; p++)
			if (strcmp(name, admin_qparams[p]) == 0)
				break;
	if (p == QP_N) {
		/* Named as sent, made printable. */
		snprintf(name, sizeof(name), "%.*s", (int)nlen, s);
		for (i = 0; name[i] != '\0'; i++)
			if (name[i] < 0x21 || name[i] > 0x7e)
				name[i] = '?';
		return (admin_invalid(c, name, "unknown query parameter "
		    "\"%s\"", name));
	}
	if (q->q_seen & (1 << p))
		return (admin_invalid(c, admin_qparams[p], "query parameter "
		    "\"%s\" is given twice", admin_qparams[p]));
	q->q_seen |= 1 << p;
	rc = eq != NULL ? admin_pct_decode(eq + 1, len - nlen - 1, val,
	    sizeof(val)) : admin_pct_decode("", 0, val, sizeof(val));
	if (rc != 0)
		return (admin_invalid(c, admin_qparams[p], "%s %s",
		    admin_qparams[p], rc == -2 ? "is too long" :
		    "has a bad percent-encoding"));
	return (admin_query_set(c, q, p, val));
}

/* Parse the query of GET /v1/keys into q; 0 or -1 with 422. */
static int
admin_query(struct admin_ctx *c, struct admin_query *q)
{
	const char	*p, *end, *amp;

	memset(q, 0, sizeof(*q));
	q->q_limit = ADMIN_LIST_DEFAULT;
	if (c->c_rq->aq_query == NULL)
		return (0);
	p = c->c_rq->aq_query;
	end = p + c->c_rq->aq_querylen;
	while (p < end) {
		if ((amp = memchr(p, '&', (size_t)(end - p))) == NULL)
			amp = end;
		if (amp > p && admin_query_param(c, q, p, (size_t)(amp - p)) ==
		    -1)
			return (-1);
		if (amp == end)
			break;
		p = amp + 1;
	}
	if (q->q_sort == QO_NONE && (q->q_seen & 1 << QP_OFFSET))
		return (admin_invalid(c, "offset", "offset needs sort"));
	if (q->q_sort != QO_NONE && (q->q_seen & 1 << QP_CURSOR))
		return (admin_invalid(c, "cursor", "a sorted list is paged "
		    "with offset, not cursor"));
	return (0);
}

/* Does needle (lower case ASCII, not empty) occur in s, ignoring case? */
static int
admin_contains(const char *s, const char *needle)
{
	size_t	 i;

	for (; *s != '\0'; s++) {
		for (i = 0; needle[i] != '\0' && s[i] != '\0' &&
		    tolower((unsigned char)s[i]) == needle[i]; i++)
			;
		if (needle[i] == '\0')
			return (1);
	}
	return (0);
}

/* Does k (last used at last, 0: never) pass the filters of q at now? */
static int
admin_query_match(const struct admin_query *q, const struct ks_key *k,
    int64_t last, int64_t now)
{
	int	 expired = k->k_expires != 0 && k->k_expires <= now;
	int	 disabled = (k->k_flags & KS_F_DISABLED) != 0;

	if ((q->q_owner[0] != '\0' && strcmp(q->q_owner, k->k_owner)) ||
	    (q->q_app[0] != '\0' && strcmp(q->q_app, k->k_app)))
		return (0);
	switch (q->q_state) {
	case QS_ACTIVE:
		if (disabled || expired)
			return (0);
		break;
	case QS_DISABLED:
		if (!disabled)
			return (0);
		break;
	case QS_EXPIRED:
		if (!expired)
			return (0);
		break;
	case QS_EXPIRING:
		if (disabled || expired || k->k_expires == 0 ||
		    k->k_expires > now + ADMIN_EXPIRING_MS)
			return (0);
		break;
	}
	/* A key never used counts as unused since it was made. */
	if ((q->q_older_ms != 0 && k->k_created > now - q->q_older_ms) ||
	    (q->q_unused_ms != 0 && (last != 0 ? last : k->k_created) >
	    now - q->q_unused_ms))
		return (0);
	return (q->q_text[0] == '\0' || admin_contains(k->k_id, q->q_text) ||
	    admin_contains(k->k_name, q->q_text) ||
	    admin_contains(k->k_owner, q->q_text) ||
	    admin_contains(k->k_app, q->q_text) ||
	    admin_contains(k->k_hint, q->q_text));
}

/* A key that matched a sorted listing: what it sorts by. */
struct admin_match {
	int64_t		 m_v;		/* created, last used or expiry */
	char		*m_name;	/* sort=name, else NULL */
	uint32_t	 m_slot;
	char		 m_id[KS_ID_LEN + 4];
};

static int
admin_match_cmp(const void *pa, const void *pb)
{
	const struct admin_match *a = pa, *b = pb;
	int			 r;

	if (a->m_name != NULL)
		r = strcasecmp(a->m_name, b->m_name);
	else
		r = a->m_v < b->m_v ? -1 : a->m_v > b->m_v;
	return (r != 0 ? r : strcmp(a->m_id, b->m_id));
}

static void
admin_matches_free(struct admin_match *m, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		free(m[i].m_name);
	free(m);
}

/*
 * The keys of q in slot order from the cursor's slot on, into keys; the
 * cursor handed out is the slot of the first match not returned, so the
 * next page starts exactly there: while the store does not change,
 * walking the pages returns every matching key exactly once.  A key
 * created meanwhile in a slot already passed is not seen.
 */
static int
admin_list_slots(struct admin_ctx *c, const struct admin_query *q,
    json_t *keys, char next[16])
{
	struct ks_key	 k;
	uint32_t	 cur, slot, n = 0;
	int64_t		 last, now = c->c_rq->aq_now;

	for (cur = q->q_cursor; keystore_next(c->c_ks, &cur, &k, &slot) ==
	    KS_OK;) {
		last = admin_last_used(c, slot);
		if (!admin_query_match(q, &k, last, now))
			continue;
		if (n == q->q_limit) {
			next[util_u64toa(next, slot)] = '\0';
			break;
		}
		if (json_array_append_new(keys, admin_key_json(&k, last,
		    now)) == -1)
			return (-1);
		n++;
	}
	return (0);
}

/*
 * The keys of q sorted (ties by id), from offset on, into keys; every
 * match is counted into *total.  Every page looks at every key: the admin
 * threads answer these (server.c).  A key changed between the look and
 * the answer is answered as it is then, one gone is left out.
 */
static int
admin_list_sorted(struct admin_ctx *c, const struct admin_query *q,
    json_t *keys, uint32_t *total)
{
	struct admin_match	*m = NULL, *t;
	struct ks_key		 k;
	size_t			 n = 0, cap = 0, i;
	uint32_t		 cur, slot, at;
	int64_t			 last, now = c->c_rq->aq_now;

	for (cur = 0; keystore_next(c->c_ks, &cur, &k, &slot) == KS_OK;) {
		last = admin_last_used(c, slot);
		if (!admin_query_match(q, &k, last, now))
			continue;
		if (n == cap) {
			cap = cap == 0 ? 256 : cap * 2;
			if ((t = reallocarray(m, cap, sizeof(*m))) == NULL)
				goto oom;
			m = t;
		}
		memset(&m[n], 0, sizeof(m[n]));
		m[n].m_slot = slot;
		memcpy(m[n].m_id, k.k_id, sizeof(m[n].m_id));
		m[n].m_v = q->q_sort == QO_CREATED ? k.k_created :
		    q->q_sort == QO_LAST_USED ? last : k.k_expires != 0 ?
		    k.k_expires : INT64_MAX;	/* never expires: last */
		if (q->q_sort == QO_NAME && (m[n].m_name =
		    strdup(k.k_name)) == NULL)
			goto oom;
		n++;
	}
	if (n > 1)	/* ascending; read backwards for descending */
		qsort(m, n, sizeof(*m), admin_match_cmp);
	*total = (uint32_t)n;
	for (i = q->q_offset; i < n && json_array_size(keys) < q->q_limit;
	    i++) {
		t = &m[q->q_desc ? n - 1 - i : i];
		cur = t->m_slot;
		if (keystore_next(c->c_ks, &cur, &k, &at) != KS_OK ||
		    at != t->m_slot || strcmp(k.k_id, t->m_id) != 0)
			continue;
		if (json_array_append_new(keys, admin_key_json(&k,
		    admin_last_used(c, at), now)) == -1)
			goto oom;
	}
	admin_matches_free(m, n);
	return (0);
oom:
	admin_matches_free(m, n);
	return (-1);
}

/*
 * GET /v1/keys: the keys passing the filters, in slot order (paged with
 * cursor) or sorted (paged with offset, with the total).
 */
static int
admin_list(struct admin_ctx *c)
{
	struct admin_query	 q;
	uint32_t		 total = 0;
	char			 next[16];
	json_t			*keys, *o;
	int			 rc;

	if (admin_query(c, &q) == -1)
		return (-1);
	if ((keys = json_array()) == NULL)
		return (admin_oom(c->c_rs));
	next[0] = '\0';
	rc = q.q_sort == QO_NONE ? admin_list_slots(c, &q, keys, next) :
	    admin_list_sorted(c, &q, keys, &total);
	if (rc == -1) {
		json_decref(keys);
		return (admin_oom(c->c_rs));
	}
	if (q.q_sort != QO_NONE)
		o = json_pack("{s:o, s:I, s:I}", "keys", keys, "total",
		    (json_int_t)total, "offset", (json_int_t)q.q_offset);
	else
		o = json_pack("{s:o, s:s?}", "keys", keys, "next_cursor",
		    next[0] != '\0' ? next : NULL);
	return (admin_reply(c->c_rs, 200, o));
}

/* GET /v1/keys/{id}. */
static int
admin_show(struct admin_ctx *c)
{
	struct ks_key	 k;
	uint32_t	 slot;

	if (admin_find(c, &k, &slot) == -1)
		return (-1);
	return (admin_reply_key(c, 200, &k, admin_last_used(c, slot)));
}

/* Copy the fields named in mask from p into k. */
static void
admin_patch_copy(struct ks_key *k, const struct ks_key *p, int mask)
{
	if (mask & AB_NAME)
		memcpy(k->k_name, p->k_name, sizeof(k->k_name));
	if (mask & AB_SCOPES)
		memcpy(k->k_scopes, p->k_scopes, sizeof(k->k_scopes));
	if (mask & AB_EXPIRES)
		k->k_expires = p->k_expires;
	if (mask & AB_DISABLED)
		k->k_flags = (k->k_flags & ~KS_F_DISABLED) |
		    (p->k_flags & KS_F_DISABLED);
	if (mask & AB_RATE)
		memcpy(k->k_rate, p->k_rate, sizeof(k->k_rate));
}

/* A grace period that has ended is cleared, so its digest leaves the index. */
static void
admin_grace_expire(struct ks_key *k, int64_t now)
{
	if (k->k_grace_until != 0 && now >= k->k_grace_until) {
		k->k_grace_until = 0;
		memset(k->k_old_digest, 0, sizeof(k->k_old_digest));
	}
}

/*
 * PATCH /v1/keys/{id}: the body is checked completely first, then the key
 * is read again under the lock (it may have changed or gone meanwhile),
 * changed, journalled and stored.  An empty object changes nothing.
 */
static int
admin_patch(struct admin_ctx *c)
{
	struct ks_key	 k, p;
	uint32_t	 slot;
	json_t		*body;
	int		 rc, mask;

	if (admin_find(c, &k, &slot) == -1 || admin_body(c, &body) == -1)
		return (-1);
	memset(&p, 0, sizeof(p));
	rc = admin_apply(c, body, AF_PATCH, &p, &mask);
	json_decref(body);
	if (rc == -1)
		return (-1);
	if (mask == 0)
		return (admin_reply_key(c, 200, &k, admin_last_used(c, slot)));
	if (admin_lock(c) == -1)
		return (-1);
	if ((rc = admin_find(c, &k, &slot)) == 0) {
		admin_patch_copy(&k, &p, mask);
		k.k_updated = c->c_rq->aq_now;
		admin_grace_expire(&k, c->c_rq->aq_now);
		rc = admin_store(c, &k);
	}
	if (admin_unlock(c) == -1)
		rc = -1;
	if (rc == -1)
		return (-1);
	log_info("key %s updated", k.k_id);
	return (admin_reply_key(c, 200, &k, admin_last_used(c, slot)));
}

/* DELETE /v1/keys/{id}: journal, then the store; 204. */
static int
admin_delete(struct admin_ctx *c)
{
	struct ks_key	 k;
	char		 err[256];
	uint32_t	 slot;
	uint64_t	 seq;
	int		 rc;

	if (admin_lock(c) == -1)
		return (-1);
	if ((rc = admin_find(c, &k, &slot)) == 0 && c->c_env->ae_cluster !=
	    NULL)
		rc = admin_cluster_stage(c, "del", NULL, k.k_id, NULL);
	else if (rc == 0) {
		seq = c->c_ks->ks_hdr->kh_applied + 1;
		if (journal_write_del(c->c_env->ae_journal, seq, k.k_id, err,
		    sizeof(err)) == -1) {
			log_warnx("key %s: journal: %s", k.k_id, err);
			rc = admin_error(c, 503, "storage_unavailable",
			    "the key could not be deleted: %s", err);
		} else {
			c->c_sync = seq;	/* made durable by admin_unlock */
			if (keystore_del(c->c_ks, k.k_id, seq) != KS_OK) {
				/* Cannot happen: found under this same lock. */
				log_warnx("key %s: journal line %llu written "
				    "but not applied", k.k_id,
				    (unsigned long long)seq);
				rc = admin_error(c, 500, "internal_error",
				    "the key store refused the deletion");
			}
		}
	}
	if (admin_unlock(c) == -1)
		rc = -1;
	if (rc == -1)
		return (-1);
	log_info("key %s deleted", k.k_id);
	c->c_rs->as_status = 204;
	c->c_rs->as_type = NULL;
	return (0);
}

/* The optional body of regenerate: {"grace_seconds": 0..2592000}. */
static int
admin_grace_body(struct admin_ctx *c, int64_t *grace)
{
	const char	*name;
	json_t		*body, *v;
	json_int_t	 n;
	int		 rc = 0;

	*grace = 0;
	if (c->c_rq->aq_body == NULL || c->c_rq->aq_bodylen == 0)
		return (0);
	if (admin_body(c, &body) == -1)
		return (-1);
	json_object_foreach(body, name, v) {
		if (strcmp(name, "grace_seconds") != 0) {
			rc = admin_invalid(c, name, "unknown field \"%s\"",
			    name);
			break;
		}
		if (!json_is_integer(v) || (n = json_integer_value(v)) < 0 ||
		    n > ADMIN_GRACE_MAX) {
			rc = admin_invalid(c, name, "grace_seconds must be an "
			    "integer from 0 to %d", ADMIN_GRACE_MAX);
			break;
		}
		*grace = n;
	}
	json_decref(body);
	return (rc);
}

/*
 * POST /v1/keys/{id}/regenerate: a new secret with the same prefix.  With
 * a grace period the current digest becomes the old one, accepted until
 * now + grace; without, the current secret stops at once.  A previous
 * secret still in an earlier grace period stops either way: a key has at
 * most two digests.
 */
static int
admin_regenerate(struct admin_ctx *c)
{
	struct ks_key	 k;
	char		 secret[SECRET_MAX + 1];
	uint32_t	 slot;
	int64_t		 grace, now = c->c_rq->aq_now;
	int		 rc;

	if (admin_find(c, &k, &slot) == -1 || admin_grace_body(c, &grace) ==
	    -1 || admin_lock(c) == -1)
		return (-1);
	if ((rc = admin_find(c, &k, &slot)) == 0) {
		if (grace > 0) {
			memcpy(k.k_old_digest, k.k_digest, KS_DIGEST_LEN);
			k.k_grace_until = now + grace * 1000;
		} else {
			memset(k.k_old_digest, 0, KS_DIGEST_LEN);
			k.k_grace_until = 0;
		}
		k.k_updated = now;
		if ((rc = admin_new_secret(c, &k, secret, sizeof(secret))) == 0)
			rc = admin_store(c, &k);
	}
	if (admin_unlock(c) == -1)
		rc = -1;
	if (rc == 0) {
		log_info("key %s regenerated (grace %llds)", k.k_id,
		    (long long)grace);
		rc = admin_reply_secret(c, 200, &k, admin_last_used(c, slot),
		    secret);
	}
	OPENSSL_cleanse(secret, sizeof(secret));
	OPENSSL_cleanse(&k, sizeof(k));
	return (rc);
}

/*
 * The "windows" of a usage answer for k in slot: for each window, the limit
 * the request path applies to a key request without a route override (the
 * key's own k_rate[w], else the configured rate_limit; a route's rate= is
 * not known here), clamped to RL_MAXLIMIT as the limiter clamps it, and
 * what the limiter's state holds at aq_mono (the monotonic clock the
 * workers count with, so the numbers agree with their decisions).  The
 * ring is read without changing it.  A window enforced by neither is left
 * out.  NULL if out of memory.
 */
static json_t *
admin_windows_json(struct admin_ctx *c, const struct ks_key *k,
    uint32_t slot)
{
	struct rl_limits l;
	uint32_t	 lim[RL_WINDOWS], used[RL_WINDOWS], n;
	int64_t		 reset[RL_WINDOWS];
	json_t		*a;
	int		 w;

	for (w = 0; w < RL_WINDOWS; w++)
		lim[w] = k->k_rate[w] != 0 ? k->k_rate[w] :
		    c->c_env->ae_rate[w];
	ratelimit_set(&l, lim);
	ratelimit_usage(keystore_rate_peek(c->c_ks, slot), &l,
	    c->c_rq->aq_mono, used, reset);
	if ((a = json_array()) == NULL)
		return (NULL);
	for (w = 0; w < RL_WINDOWS; w++) {
		if (lim[w] == 0)
			continue;
		n = lim[w] > RL_MAXLIMIT ? RL_MAXLIMIT : lim[w];
		if (json_array_append_new(a, json_pack("{s:s, s:I, s:I, s:I, "
		    "s:I, s:s}", "window", ratelimit_window_name[w],
		    "limit", (json_int_t)n, "used", (json_int_t)used[w],
		    "remaining", (json_int_t)(used[w] >= n ? 0 : n - used[w]),
		    "reset", (json_int_t)(reset[w] > 0 ?
		    (reset[w] + 999) / 1000 : 0),
		    "source", k->k_rate[w] != 0 ? "key" : "default")) == -1) {
			json_decref(a);
			return (NULL);
		}
	}
	return (a);
}

/*
 * The query of GET /v1/keys/{id}/usage: history=1h|24h|30d as USAGE_H1,
 * USAGE_H24 or USAGE_D30; -2 when there is none; -1 after a 422 (another
 * parameter, history twice, or another value).
 */
static int
admin_usage_query(struct admin_ctx *c)
{
	const char	*p, *end, *amp, *eq;
	char		 val[16];
	int		 kind = -2;

	if (c->c_rq->aq_query == NULL)
		return (-2);
	p = c->c_rq->aq_query;
	end = p + c->c_rq->aq_querylen;
	for (; p < end; p = amp + 1) {
		if ((amp = memchr(p, '&', (size_t)(end - p))) == NULL)
			amp = end;
		if (amp == p)
			continue;
		eq = memchr(p, '=', (size_t)(amp - p));
		if (eq == NULL || eq - p != 7 || memcmp(p, "history", 7) != 0)
			return (admin_invalid(c, "history", "unknown query "
			    "parameter: only history is accepted here"));
		if (kind != -2)
			return (admin_invalid(c, "history", "query parameter "
			    "\"history\" is given twice"));
		if (admin_pct_decode(eq + 1, (size_t)(amp - eq - 1), val,
		    sizeof(val)) != 0 || (kind = usage_kind(val)) == -1)
			return (admin_invalid(c, "history", "history must be "
			    "1h, 24h or 30d"));
	}
	return (kind);
}

/*
 * The history answer of key k in slot: every point of the period, the
 * files' counts plus the live ones in the last (usage_history).
 */
static int
admin_usage_history(struct admin_ctx *c, const struct ks_key *k,
    uint32_t slot, int kind)
{
	static const char *const names[] = { "1h", "24h", "30d" };
	const struct journal	*j = c->c_env->ae_journal;
	struct usage_point	*pts;
	json_t			*a;
	char			 t[32], why[256];
	const char		*scope;
	size_t			 i, n;

	if (j == NULL)
		return (admin_error(c, 503, "storage_unavailable",
		    "no state_dir to read the history from"));
	if ((pts = calloc(USAGE_POINTS_MAX, sizeof(*pts))) == NULL ||
	    (a = json_array()) == NULL) {
		free(pts);
		return (admin_oom(c->c_rs));
	}
	scope = admin_cluster_history(c, k->k_id, kind, pts, &n, why,
	    sizeof(why));
	if (strcmp(scope, "node") == 0)
		n = usage_history(j->j_dir, j->j_uid, j->j_gid, c->c_ks, slot,
		    k->k_id, kind, c->c_rq->aq_now, pts);
	for (i = 0; i < n; i++) {
		util_rfc3339_ms(t, sizeof(t), pts[i].up_t);
		if (json_array_append_new(a, json_pack("{s:s, s:I, s:I, s:I}",
		    "t", t, "admitted", (json_int_t)pts[i].up_c[USAGE_ADMITTED],
		    "rate_limited", (json_int_t)pts[i].up_c[USAGE_LIMITED],
		    "refused", (json_int_t)pts[i].up_c[USAGE_REFUSED])) == -1) {
			json_decref(a);
			free(pts);
			return (admin_oom(c->c_rs));
		}
	}
	free(pts);
	return (admin_reply(c->c_rs, 200, admin_scoped(c, json_pack("{s:s, "
	    "s:s, s:s, s:o}", "id", k->k_id, "history", names[kind],
	    "resolution", kind == USAGE_D30 ? "1h" : "1m", "points", a), scope,
	    why)));
}

/*
 * GET /v1/keys/{id}/usage: the counters kept across workers and the
 * current state of each rate limit window; with history=, the key's
 * usage history instead.
 */
static int
admin_usage(struct admin_ctx *c)
{
	struct ks_key	 k;
	char		 lu[32], why[256];
	const char	*scope;
	uint32_t	 slot;
	uint64_t	 allowed, refused, n[KS_NCOUNTS];
	int64_t		 last;
	int		 kind;

	if (admin_find(c, &k, &slot) == -1 ||
	    (kind = admin_usage_query(c)) == -1)
		return (-1);
	if (kind >= 0)
		return (admin_usage_history(c, &k, slot, kind));
	keystore_usage(c->c_ks, slot, &allowed, &refused, &last);
	keystore_counts(c->c_ks, slot, n);
	scope = admin_cluster_usage(c, k.k_id, &allowed, &refused, n, &last,
	    why, sizeof(why));
	return (admin_reply(c->c_rs, 200, admin_scoped(c, json_pack("{s:s, "
	    "s:I, s:I, s:I, s:s?, s:o}", "id", k.k_id,
	    "requests_allowed", (json_int_t)allowed,
	    "requests_refused", (json_int_t)refused,
	    "requests_rate_limited", (json_int_t)n[KS_C_LIMITED],
	    "last_used_at", admin_time(lu, last),
	    "windows", admin_windows_json(c, &k, slot)), scope, why)));
}

/*
 * In a cluster, a usage answer o says whose counts it holds ("scope") and,
 * for the node's own, why (cluster_error); outside one it is left as it
 * always was.  o (taken) or NULL.
 */
static json_t *
admin_scoped(struct admin_ctx *c, json_t *o, const char *scope,
    const char *why)
{
	if (o == NULL || c->c_env->ae_cluster == NULL)
		return (o);
	if (json_object_set_new(o, "scope", json_string(scope)) == -1 ||
	    json_object_set_new(o, "cluster_error", why[0] != '\0' ?
	    json_string(why) : json_null()) == -1) {
		json_decref(o);
		return (NULL);
	}
	return (o);
}

/*
 * The members of a verify body: "key" (and optionally "app_id"), or
 * "token" (a JWT) alone.
 */
static int
admin_verify_body(struct admin_ctx *c, json_t *body, json_t **key,
    const char **app, json_t **token)
{
	const char	*name;
	json_t		*v;

	*key = *token = NULL;
	*app = NULL;
	json_object_foreach(body, name, v) {
		if (strcmp(name, "key") == 0 || strcmp(name, "token") == 0) {
			if (!json_is_string(v))
				return (admin_invalid(c, name,
				    "%s must be a string", name));
			*(name[0] == 'k' ? key : token) = v;
		} else if (strcmp(name, "app_id") == 0) {
			if (!json_is_null(v) && (!json_is_string(v) ||
			    json_string_length(v) == 0))
				return (admin_invalid(c, name, "app_id must be "
				    "a non-empty string or null"));
			*app = json_is_null(v) ? NULL : json_string_value(v);
		} else
			return (admin_invalid(c, name, "unknown field \"%s\"",
			    name));
	}
	if (*key != NULL && *token != NULL)
		return (admin_invalid(c, "token", "give either key or token, "
		    "not both"));
	if (*token != NULL && *app != NULL)
		return (admin_invalid(c, "app_id", "app_id goes with a key, "
		    "not with a token"));
	if (*key == NULL && *token == NULL)
		return (admin_invalid(c, "key", "key or token is required"));
	return (0);
}

/*
 * POST /v1/verify with a token: would this JWT be accepted by an
 * "auth=jwt" route without scopes, now?  The decision, and the identity
 * of a verified token.  An unknown kid asks the master for the keys again
 * but is not waited for (the message says so).
 */
static int
admin_verify_token(struct admin_ctx *c, json_t *token)
{
	struct auth_result		 ar;
	struct auth_jwt			 aj;
	const struct jwt_provider	*p;
	const struct jwt_identity	*id = &ar.ar_jwt;
	char				 ex[32];
	json_t				*o;

	memset(&aj, 0, sizeof(aj));
	aj.aj_state = c->c_env->ae_jwt;
	aj.aj_mono = util_mono_ms();
	auth_check_token(c->c_env->ae_jwt != NULL ? &aj : NULL,
	    json_string_value(token), json_string_length(token),
	    c->c_rq->aq_now, &ar);
	p = ar.ar_jwt_found ? jwtauth_provider(c->c_env->ae_jwt,
	    id->ji_provider) : NULL;
	o = json_pack("{s:b, s:s, s:s?, s:s?, s:s?, s:s?, s:s?, s:o, s:s?}",
	    "valid", ar.ar_status == 0,
	    "scheme", "jwt",
	    "code", ar.ar_status != 0 ? ar.ar_code : NULL,
	    "message", ar.ar_status != 0 ? ar.ar_message : NULL,
	    "provider", p != NULL ? p->jp_name : NULL,
	    "identity", p != NULL ? id->ji_subject : NULL,
	    "issuer", p != NULL ? id->ji_issuer : NULL,
	    "scopes", p != NULL ? admin_scopes_json(id->ji_scopes) :
	    json_null(),
	    "expires_at", p != NULL ? admin_time(ex, id->ji_exp * 1000) :
	    NULL);
	return (admin_reply(c->c_rs, 200, o));
}

/*
 * POST /v1/verify: would this secret be accepted (for app_id, if given)
 * now?  The key's identity is returned whenever the store has a record
 * for it, also when it is refused.  No use is counted.
 */
static int
admin_verify(struct admin_ctx *c)
{
	struct auth_result	 ar;
	const struct ks_key	*k = &ar.ar_key;
	const char		*app;
	char			 ex[32];
	json_t			*body, *key, *token, *o;
	int			 found, rv;

	if (admin_body(c, &body) == -1)
		return (-1);
	if (admin_verify_body(c, body, &key, &app, &token) == -1) {
		json_decref(body);
		return (-1);
	}
	if (token != NULL) {
		rv = admin_verify_token(c, token);
		json_decref(body);
		return (rv);
	}
	memset(&ar, 0, sizeof(ar));
	auth_check_secret(c->c_ks, json_string_value(key),
	    json_string_length(key), app, c->c_rq->aq_now, &ar);
	json_decref(body);
	if (ar.ar_status == 503)
		return (admin_error(c, 503, "key_store_busy",
		    "the key store is being repaired; retry"));
	found = ar.ar_found;
	o = json_pack("{s:b, s:s?, s:s?, s:s?, s:o, s:s?}",
	    "valid", ar.ar_status == 0,
	    "code", ar.ar_status != 0 ? ar.ar_code : NULL,
	    "key_id", found ? k->k_id : NULL,
	    "owner", found ? k->k_owner : NULL,
	    "scopes", found ? admin_scopes_json(k->k_scopes) : json_null(),
	    "expires_at", found ? admin_time(ex, k->k_expires) : NULL);
	return (admin_reply(c->c_rs, 200, o));
}

/* GET /v1/health: answered without a token, for load balancers. */
static int
admin_health(struct admin_ctx *c)
{
	const char	*v = c->c_env->ae_version;

	return (admin_reply(c->c_rs, 200, json_pack("{s:s, s:s, s:I, s:I}",
	    "status", "ok", "version", v != NULL ? v : PACKAGE_VERSION,
	    "keys", (json_int_t)keystore_count(c->c_ks),
	    "max_keys", (json_int_t)c->c_ks->ks_hdr->kh_max_keys)));
}

/* --- GET /v1/status ------------------------------------------------------ */

/*
 * A counter of the segment as a JSON integer.  Any worker can write the
 * segment, so a sum may be anything: clamp rather than let a huge count
 * turn negative in json_int_t.
 */
static json_int_t
admin_count(uint64_t n)
{
	return (n > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)n);
}

/* n per second over secs seconds (0 s: 0). */
static double
admin_rate(uint64_t n, int64_t secs)
{
	return (secs > 0 ? (double)n / (double)secs : 0.0);
}

/*
 * An upstream's state from its last minute: idle with no attempt, up with
 * no failure, down when every attempt failed, degraded in between.
 */
static const char *
admin_upstream_state(uint64_t ok, uint64_t failed)
{
	if (ok == 0 && failed == 0)
		return ("idle");
	if (failed == 0)
		return ("up");
	if (ok == 0)
		return ("down");
	return ("degraded");
}

/* last_minute of /v1/status: counts and rates, NULL if out of memory. */
static json_t *
admin_minute_json(const struct stats_total *t)
{
	const struct stats_sample	*m = &t->st_minute;
	int64_t				 s = t->st_minute_s;

	return (json_pack("{s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f}",
	    "seconds", (json_int_t)s,
	    "requests", admin_count(m->sa_requests),
	    "refused", admin_count(m->sa_refused),
	    "rate_limited", admin_count(m->sa_limited),
	    "errors", admin_count(m->sa_errors),
	    "requests_per_second", admin_rate(m->sa_requests, s),
	    "refused_per_second", admin_rate(m->sa_refused, s),
	    "rate_limited_per_second", admin_rate(m->sa_limited, s),
	    "errors_per_second", admin_rate(m->sa_errors, s)));
}

/*
 * last_hour of /v1/status: refusals by reason and 429s, NULL if out of
 * memory.
 */
static json_t *
admin_hour_json(const struct stats_total *t)
{
	json_t	*by;
	int	 i;

	if ((by = json_object()) == NULL)
		return (NULL);
	for (i = 0; i < STATS_NREASONS; i++)
		if (json_object_set_new(by, stats_reason_name[i],
		    json_integer(admin_count(t->st_hour.sh_refused[i]))) ==
		    -1) {
			json_decref(by);
			return (NULL);
		}
	return (json_pack("{s:I, s:o, s:I}", "seconds",
	    (json_int_t)t->st_hour_s, "refused", by, "rate_limited",
	    admin_count(t->st_hour.sh_limited)));
}

/*
 * One upstream server (id) of the sum: its names (copied and cut at the
 * first byte that is not UTF-8, since jansson refuses such a string and a
 * worker could have scribbled on them), state, last minute and totals.
 */
static json_t *
admin_upstream_json(const struct stats_region *r, const struct stats_total *t,
    uint32_t id)
{
	const struct stats_upstream	*u = &t->st_upstreams[id];
	char				 name[STATS_NAME_MAX];
	char				 server[STATS_NAME_MAX];
	uint64_t			 all = 0;
	uint64_t			 ok = t->st_minute.sa_up_ok[id];
	uint64_t			 failed = t->st_minute.sa_up_fail[id];
	int				 i;

	for (i = 0; i < STATS_NUPRESULTS; i++)
		all += u->su_result[i];
	snprintf(name, sizeof(name), "%s", stats_upstream_name(r, id));
	snprintf(server, sizeof(server), "%s", stats_server_name(r, id));
	admin_utf8_cut(name);
	admin_utf8_cut(server);
	return (json_pack("{s:s, s:s, s:s, s:{s:I, s:I}, s:I, s:I}",
	    "name", name, "server", server,
	    "state", admin_upstream_state(ok, failed),
	    "last_minute", "ok", admin_count(ok), "failed", admin_count(failed),
	    "requests", admin_count(all),
	    "failures", admin_count(all - u->su_result[STATS_UP_OK])));
}

/*
 * The upstream servers in id order: every named one, and id 0 ("other",
 * servers beyond STATS_UPSTREAMS) only when something was counted there.
 */
static json_t *
admin_upstreams_json(const struct stats_region *r, const struct stats_total *t)
{
	const struct stats_upstream	*u;
	json_t				*a;
	uint64_t			 n;
	uint32_t			 id;
	int				 i;

	if ((a = json_array()) == NULL)
		return (NULL);
	for (id = 0; id < t->st_nupstreams; id++) {
		if (id == STATS_UPSTREAM_OTHER) {
			u = &t->st_upstreams[id];
			n = t->st_minute.sa_up_ok[id] +
			    t->st_minute.sa_up_fail[id];
			for (i = 0; i < STATS_NUPRESULTS; i++)
				n += u->su_result[i];
			if (n == 0)
				continue;
		}
		if (json_array_append_new(a, admin_upstream_json(r, t, id)) ==
		    -1) {
			json_decref(a);
			return (NULL);
		}
	}
	return (a);
}

/* The document of /v1/status from the sum t, at now (ms); NULL: no memory. */
static json_t *
admin_status_json(struct admin_ctx *c, const struct stats_total *t,
    int64_t now)
{
	const char	*v = c->c_env->ae_version;
	char		 started[32], reload[32];
	int64_t		 up = now / 1000 - t->st_started;

	util_rfc3339_ms(started, sizeof(started), t->st_started * 1000);
	return (json_pack("{s:s, s:s, s:I, s:{s:I, s:I, s:I}, s:{s:I, s:I}, "
	    "s:{s:I, s:I, s:I, s:I}, s:o, s:o, s:{s:I, s:I, s:s?}, s:o}",
	    "version", v != NULL ? v : PACKAGE_VERSION,
	    "started_at", started,
	    "uptime_seconds", (json_int_t)(up > 0 ? up : 0),
	    "workers",
	    "configured", (json_int_t)t->st_workers_conf,
	    "running", (json_int_t)t->st_workers,
	    "restarts", admin_count(t->st_restarts),
	    "keys",
	    "count", (json_int_t)keystore_count(c->c_ks),
	    "max", (json_int_t)c->c_ks->ks_max_keys,
	    "connections",
	    "reading", admin_count(t->st_conn[STATS_CONN_READING]),
	    "writing", admin_count(t->st_conn[STATS_CONN_WRITING]),
	    "idle", admin_count(t->st_conn[STATS_CONN_IDLE]),
	    "accepted", admin_count(t->st_accepted),
	    "last_minute", admin_minute_json(t),
	    "last_hour", admin_hour_json(t),
	    "reloads",
	    "succeeded", admin_count(t->st_reloads[1]),
	    "failed", admin_count(t->st_reloads[0]),
	    "last_success_at", t->st_reload_ok_at != 0 ?
	    admin_time(reload, t->st_reload_ok_at * 1000) : NULL,
	    "upstreams", admin_upstreams_json(c->c_env->ae_stats, t)));
}

/*
 * GET /v1/gateway: the configuration's routes, upstreams and JWT providers
 * (server.c made them), with what changes: each checked server's health
 * (the master's checker), each provider's key set (its JWKS slot).
 */
static int
admin_gateway(struct admin_ctx *c)
{
	static const char *const health[] = { "unchecked", "up", "down" };
	const struct admin_env	*env = c->c_env;
	const struct stats_region *sr = env->ae_stats;
	json_t			*o, *u, *v, *p;
	char			 name[JWT_NAME_MAX + 1], at[32];
	uint32_t		 state, nkeys;
	int64_t			 updated, now = c->c_rq->aq_now / 1000;
	size_t			 i, k;
	uint8_t			 h;
	int			 j;

	if (env->ae_gateway == NULL || (o = json_deep_copy(env->ae_gateway)) ==
	    NULL)
		return (admin_error(c, 503, "status_unavailable", "this server "
		    "keeps no description of its configuration"));
	json_array_foreach(json_object_get(o, "upstreams"), i, u)
		json_array_foreach(json_object_get(u, "servers"), k, v) {
			j = (int)json_integer_value(json_object_get(v,
			    "_stat"));
			h = sr != NULL && j >= 0 && j < STATS_UPSTREAMS ?
			    __atomic_load_n(&sr->sr_master.sm_health[j],
			    __ATOMIC_RELAXED) : STATS_HEALTH_NONE;
			json_object_del(v, "_stat");
			json_object_set_new(v, "health", json_string(
			    health[h <= STATS_HEALTH_DOWN ? h : 0]));
		}
	json_array_foreach(json_object_get(o, "jwt_providers"), i, p) {
		state = JWKS_NONE;
		nkeys = 0;
		updated = 0;
		for (j = 0; env->ae_jwks != NULL && j < JWT_MAX_PROVIDERS; j++)
			if (jwks_slot_peek(&env->ae_jwks[j], name, sizeof(name),
			    &state, &updated, &nkeys) == 0 && strcmp(name,
			    json_string_value(json_object_get(p, "name"))) == 0)
				break;
		if (env->ae_jwks == NULL || j == JWT_MAX_PROVIDERS) {
			state = JWKS_NONE;
			nkeys = 0;
			updated = 0;
		}
		json_object_set_new(p, "keys", json_integer(nkeys));
		json_object_set_new(p, "up", json_boolean(state == JWKS_OK));
		json_object_set_new(p, "updated_at", updated != 0 ?
		    json_string(admin_time(at, updated * 1000)) : json_null());
		json_object_set_new(p, "age_seconds", updated != 0 ?
		    json_integer(now > updated ? now - updated : 0) :
		    json_null());
	}
	return (admin_reply(c->c_rs, 200, o));
}

/*
 * GET /v1/status: what the daemon is doing, from one consistent sum of the
 * counters (stats_total).  Should the seqlock never settle (a master killed
 * mid-fold), the sum may be off by one worker's counts: still worth showing.
 * The sum is about 300 KiB, too much for a worker's stack.  Without the
 * counters (an admin_env made by a test or a fuzzer) the answer is 503.
 */
static int
admin_status(struct admin_ctx *c)
{
	const struct stats_region	*r = c->c_env->ae_stats;
	struct stats_total		*t;
	json_t				*o;

	if (r == NULL)
		return (admin_error(c, 503, "status_unavailable", "this server "
		    "keeps no counters"));
	if ((t = malloc(sizeof(*t))) == NULL)
		return (admin_oom(c->c_rs));
	(void)stats_total(r, t);
	o = admin_status_json(c, t, c->c_rq->aq_now);
	free(t);
	return (admin_reply(c->c_rs, 200, o));
}

/* The exposition of env's counters into rs; see admin.h. */
int
admin_metrics_answer(const struct admin_env *env, struct admin_response *rs)
{
	struct metrics_src	 src;
	uint32_t		 used;

	if (env->ae_stats == NULL)
		return (-1);
	memset(&src, 0, sizeof(src));
	src.ms_stats = env->ae_stats;
	src.ms_jwks = env->ae_jwks;
	src.ms_keys = keystore_count(env->ae_ks);
	src.ms_keys_max = env->ae_ks->ks_hdr->kh_max_keys;
	keystore_rate_stats(env->ae_ks, &used, &src.ms_rate_full,
	    &src.ms_rate_evicted);
	src.ms_rate_used = used;
	src.ms_rate_max = env->ae_ks->ks_max_active;
	src.ms_version = env->ae_version != NULL ? env->ae_version :
	    PACKAGE_VERSION;
	if ((rs->as_body = metrics_render(&src, &rs->as_bodylen)) == NULL)
		return (-1);
	rs->as_status = 200;
	rs->as_type = METRICS_CONTENT_TYPE;
	return (0);
}

/* GET /metrics: the Prometheus exposition (metrics.h), behind the token. */
static int
admin_metrics(struct admin_ctx *c)
{
	if (c->c_env->ae_stats == NULL)
		return (admin_error(c, 503, "metrics_unavailable",
		    "this process keeps no metrics"));
	if (admin_metrics_answer(c->c_env, c->c_rs) == -1)
		return (admin_oom(c->c_rs));
	return (0);
}

/* GET /v1/openapi.json: the compiled-in document. */
static int
admin_openapi(struct admin_ctx *c)
{
	struct admin_response	*rs = c->c_rs;

	if ((rs->as_body = strdup(admin_openapi_json)) == NULL)
		return (admin_oom(rs));
	rs->as_bodylen = strlen(rs->as_body);
	rs->as_status = 200;
	rs->as_type = ADMIN_JSON;
	return (0);
}

/*
 * Which endpoint the len bytes of path name; the {id} segment is copied
 * into c_id when it fits (a longer one cannot name a key).  0 or -1.
 */
static int
admin_route(struct admin_ctx *c, const char *path, size_t len)
{
	static const struct {
		const char	*r_path;
		enum admin_ep	 r_ep;
	} fixed[] = {
		{ "/v1/health", EP_HEALTH },
		{ "/v1/status", EP_STATUS },
		{ "/v1/openapi.json", EP_OPENAPI },
		{ "/v1/keys", EP_KEYS },
		{ "/v1/keys/import", EP_IMPORT },
		{ "/v1/verify", EP_VERIFY },
		{ "/metrics", EP_METRICS },
		{ "/v1/cluster", EP_CLUSTER },
		{ "/v1/gateway", EP_GATEWAY },
	};
	const char	*id, *slash;
	size_t		 i, idlen, rest;

	for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		if (len == strlen(fixed[i].r_path) &&
		    memcmp(path, fixed[i].r_path, len) == 0) {
			c->c_ep = fixed[i].r_ep;
			return (0);
		}
	if (len <= 9 || memcmp(path, "/v1/keys/", 9) != 0)
		return (-1);
	id = path + 9;
	slash = memchr(id, '/', len - 9);
	idlen = slash != NULL ? (size_t)(slash - id) : len - 9;
	rest = len - 9 - idlen;
	if (idlen == 0)
		return (-1);
	if (slash == NULL)
		c->c_ep = EP_KEY;
	else if (rest == 11 && memcmp(slash, "/regenerate", 11) == 0)
		c->c_ep = EP_REGENERATE;
	else if (rest == 6 && memcmp(slash, "/usage", 6) == 0)
		c->c_ep = EP_USAGE;
	else
		return (-1);
	if (idlen <= KS_ID_LEN && memchr(id, '\0', idlen) == NULL) {
		memcpy(c->c_id, id, idlen);
		c->c_id[idlen] = '\0';
		c->c_idok = 1;
	}
	return (0);
}

/*
 * The client's key in the table of failed authentications and its length
 * (0: none): an IPv4 address whole, an IPv6 one by its /64, what one site
 * is given, so that drawing a fresh address for each guess gains nothing.
 */
static size_t
admin_client_key(const struct admin_request *rq)
{
	if (rq->aq_ip == NULL)
		return (0);
	return (rq->aq_iplen == 16 ? 8 : rq->aq_iplen == 4 ? 4 : 0);
}

/* The client address as text, for the log. */
static const char *
admin_client(const struct admin_request *rq)
{
	return (rq->aq_client != NULL ? rq->aq_client : "an unknown address");
}

/*
 * Is the client still waiting after wrong tokens?  Then answer 429 with
 * Retry-After and return -1, before the credential is looked at.
 */
static int
admin_throttled(struct admin_ctx *c)
{
	const struct admin_request	*rq = c->c_rq;
	struct rl_failtable		*ft = c->c_env->ae_fails;
	struct rl_failinfo		 fi;
	size_t				 klen = admin_client_key(rq);
	unsigned int			 secs;

	if (ft == NULL || klen == 0 ||
	    ratelimit_fail_check(ft, rq->aq_ip, klen, rq->aq_mono, &fi) == 0)
		return (0);
	secs = (unsigned int)((fi.rf_wait + 999) / 1000);
	if (fi.rf_log)
		log_warnx("admin: refused %s for %u s more after %u failed "
		    "authentications in a row", admin_client(rq), secs,
		    fi.rf_fails);
	admin_error(c, 429, "too_many_attempts", "too many failed "
	    "authentications from this address; retry in %u s", secs);
	c->c_rs->as_retry_after = secs;
	return (-1);
}

/* Count a wrong credential of the client (reason why) and log it. */
static void
admin_failed(struct admin_ctx *c, const char *why)
{
	const struct admin_request	*rq = c->c_rq;
	struct rl_failtable		*ft = c->c_env->ae_fails;
	struct rl_failinfo		 fi;
	size_t				 klen = admin_client_key(rq);

	if (ft == NULL || klen == 0)
		return;
	ratelimit_fail_record(ft, rq->aq_ip, klen, rq->aq_mono, &fi);
	if (!fi.rf_log)
		return;
	if (fi.rf_wait > 0)
		log_warnx("admin: failed authentication from %s: %s (%u in a "
		    "row; next attempt in %u s)", admin_client(rq), why,
		    fi.rf_fails, (unsigned int)((fi.rf_wait + 999) / 1000));
	else
		log_warnx("admin: failed authentication from %s: %s (%u in a "
		    "row)", admin_client(rq), why, fi.rf_fails);
}

/*
 * Is the token p[0..n) the admin token?  The SHA-256 of what was presented
 * is compared with CRYPTO_memcmp, so the time taken says nothing about the
 * token, not even its length.  A right one clears the address's failures.
 */
static int
admin_token_ok(struct admin_ctx *c, const char *p, size_t n)
{
	const struct admin_request	*rq = c->c_rq;
	uint8_t				 d[KS_DIGEST_LEN];
	int				 ok;

	secret_digest(p, n, d);
	ok = n > 0 && CRYPTO_memcmp(d, c->c_env->ae_token_digest,
	    KS_DIGEST_LEN) == 0;
	OPENSSL_cleanse(d, sizeof(d));
	if (ok && c->c_env->ae_fails != NULL && admin_client_key(rq) > 0)
		ratelimit_fail_reset(c->c_env->ae_fails, rq->aq_ip,
		    admin_client_key(rq));
	return (ok);
}

/*
 * A request of the web console: its session's slot (and state into *st,
 * its CSRF token into csrf if not NULL), or -1 (no session, or one that
 * ended).
 */
static int
admin_session(struct admin_ctx *c, uint64_t *st, char *csrf)
{
	const struct admin_request	*rq = c->c_rq;

	if (c->c_env->ae_ui == NULL || rq->aq_cookie == NULL ||
	    c->c_env->ae_token_digest == NULL)
		return (-1);
	return (ui_session_find(c->c_env->ae_ui, c->c_env->ae_token_digest,
	    rq->aq_cookie, rq->aq_cookielen, rq->aq_mono,
	    c->c_env->ae_ui_idle_ms, st, csrf));
}

/*
 * A console request that changes something must carry its session's CSRF
 * token in X-CSRF-Token: a page of another site cannot read it.  0, or -1
 * with 403.
 */
static int
admin_csrf(struct admin_ctx *c, const char *csrf)
{
	const struct admin_request	*rq = c->c_rq;

	if (rq->aq_mbit & (HTTP_M_GET | HTTP_M_HEAD))
		return (0);
	if (ui_csrf_ok(rq->aq_csrf, rq->aq_csrflen, csrf))
		return (0);
	return (admin_error(c, 403, "csrf_failed", "a change made with a "
	    "console session needs the session's X-CSRF-Token header"));
}

/*
 * Check "Authorization: Bearer TOKEN" against the configured token, or,
 * without Authorization, the web console's session cookie (and, for a
 * change, its CSRF token).  A client still waiting after wrong tokens is
 * refused first (admin_throttled); a token presented and wrong counts
 * against its address, a missing one does not, nor does a session that
 * ended (its id is not guessable).  0, or -1 with 401 and a challenge
 * (or 403, 429).
 */
static int
admin_auth(struct admin_ctx *c)
{
	const struct admin_request	*rq = c->c_rq;
	const char			*p = rq->aq_auth, *why;
	size_t				 n = rq->aq_authlen;
	char				 csrf[UI_TOKEN_LEN + 1];
	uint64_t			 st;
	int				 rc;

	if (c->c_env->ae_token_digest == NULL)
		why = "the admin API has no token configured";
	else if (admin_throttled(c) == -1)
		return (-1);
	else if (p == NULL && admin_session(c, &st, csrf) != -1) {
		rc = admin_csrf(c, csrf);
		OPENSSL_cleanse(csrf, sizeof(csrf));
		return (rc);
	} else if (p == NULL && rq->aq_cookie != NULL &&
	    c->c_env->ae_ui != NULL)
		why = "the console's session has ended; log in again";
	else if (p == NULL || n < 7 || !http_strcaseeq(p, 6, "bearer") ||
	    p[6] != ' ') {
		why = "this request needs \"Authorization: Bearer\" with the "
		    "admin token";
		if (p != NULL)
			admin_failed(c, "not a Bearer credential");
	} else {
		for (p += 7, n -= 7; n > 0 && *p == ' '; p++, n--)
			;
		if (admin_token_ok(c, p, n))
			return (0);
		why = "the admin token is not valid";
		admin_failed(c, "wrong token");
	}
	admin_error(c, 401, "unauthorized", "%s", why);
	c->c_rs->as_challenge = ADMIN_CHALLENGE;
	return (-1);
}

/* Set-Cookie for the session id (NULL: clear it), Secure over TLS. */
static void
admin_ui_cookie(struct admin_ctx *c, const char *id)
{
	snprintf(c->c_rs->as_cookie, sizeof(c->c_rs->as_cookie), "%s=%s; "
	    "Path=/; HttpOnly; SameSite=Strict; Max-Age=%lld%s", UI_COOKIE,
	    id != NULL ? id : "", id != NULL ? UI_SESSION_MAX_MS / 1000 : 0LL,
	    c->c_rq->aq_tls ? "; Secure" : "");
}

/*
 * What the console's page needs of a session (csrf: its token; NULL: none):
 * the token, the settings, the scopes the routes require.
 */
static int
admin_ui_session_reply(struct admin_ctx *c, const char *csrf)
{
	const struct admin_env	*env = c->c_env;
	json_t			*o;

	if (csrf == NULL)
		return (admin_reply(c->c_rs, 200, json_pack("{s:b}",
		    "logged_in", 0)));
	o = json_pack("{s:b, s:s, s:I, s:I, s:i, s:i, s:s, s:o}", "logged_in",
	    1, "csrf_token", csrf, "idle_timeout_seconds",
	    (json_int_t)(env->ae_ui_idle_ms / 1000), "max_age_seconds",
	    (json_int_t)(UI_SESSION_MAX_MS / 1000), "rotate_days",
	    env->ae_ui_rotate_days, "unused_days", env->ae_ui_unused_days,
	    "version", env->ae_version != NULL ? env->ae_version : "",
	    "scopes", admin_scopes_json(env->ae_ui_scopes != NULL ?
	    env->ae_ui_scopes : ""));
	return (admin_reply(c->c_rs, 200, o));
}

/*
 * POST /ui/api/login {"token": "..."}: the admin token for a session (a
 * cookie, and the CSRF token in the answer).  Wrong tokens are slowed
 * down as the admin API's are.
 */
static int
admin_ui_login(struct admin_ctx *c)
{
	char		 id[UI_TOKEN_LEN + 1], csrf[UI_TOKEN_LEN + 1];
	json_t		*body, *tok;
	const char	*t;
	size_t		 n;
	int		 ok, rc;

	if (c->c_env->ae_token_digest == NULL) {
		admin_error(c, 401, "unauthorized", "the admin API has no "
		    "token configured");
		c->c_rs->as_challenge = ADMIN_CHALLENGE;
		return (-1);
	}
	if (admin_throttled(c) == -1 || admin_body(c, &body) == -1)
		return (-1);
	tok = json_object_get(body, "token");
	if (!json_is_string(tok) || json_object_size(body) != 1) {
		json_decref(body);
		return (admin_invalid(c, "token", "the body must be "
		    "{\"token\": the admin token}"));
	}
	t = json_string_value(tok);
	n = json_string_length(tok);
	ok = admin_token_ok(c, t, n);
	OPENSSL_cleanse((char *)(uintptr_t)t, n);
	json_decref(body);
	if (!ok) {
		admin_failed(c, "wrong token at the console's login");
		admin_error(c, 401, "unauthorized", "the admin token is not "
		    "valid");
		c->c_rs->as_challenge = ADMIN_CHALLENGE;
		return (-1);
	}
	if (ui_session_new(c->c_env->ae_ui, c->c_env->ae_token_digest,
	    c->c_rq->aq_mono, c->c_env->ae_ui_idle_ms, id, csrf) == -1)
		return (admin_error(c, 500, "internal_error", "no session can "
		    "be made now; retry shortly"));
	admin_ui_cookie(c, id);
	log_info("admin: console login from %s", admin_client(c->c_rq));
	rc = admin_ui_session_reply(c, csrf);
	OPENSSL_cleanse(id, sizeof(id));
	OPENSSL_cleanse(csrf, sizeof(csrf));
	return (rc);
}

/*
 * /ui/...: the web console, without the admin token.  Its files (GET,
 * with ETag and 304), and its session: POST /ui/api/login, GET
 * /ui/api/session, POST /ui/api/logout.  The console's security headers
 * go with every answer (server.c).
 */
static void
admin_ui(struct admin_ctx *c)
{
	const struct admin_request	*rq = c->c_rq;
	const struct ui_asset		*a;
	const char			*p = rq->aq_path + 3;
	size_t				 n = rq->aq_pathlen - 3;
	char				 csrf[UI_TOKEN_LEN + 1];
	uint64_t			 st = 0;
	int				 slot, api, want;

	c->c_rs->as_ui = 1;
	if (c->c_env->ae_ui == NULL) {
		admin_error(c, 404, "not_found", "the web console is off "
		    "(admin_ui off)");
		return;
	}
	if (n > 0) {		/* "/ui/...", not "/ui" */
		p++;
		n--;
	}
	api = n >= 4 && memcmp(p, "api/", 4) == 0;
	want = !api ? HTTP_M_GET : n == 9 && memcmp(p, "api/login", 9) == 0 ?
	    HTTP_M_POST : n == 10 && memcmp(p, "api/logout", 10) == 0 ?
	    HTTP_M_POST : n == 11 && memcmp(p, "api/session", 11) == 0 ?
	    HTTP_M_GET : 0;
	a = api ? NULL : ui_asset_find(p, n);
	if (want == 0 || (!api && a == NULL)) {
		admin_error(c, 404, "not_found", "the web console has no such "
		    "page");
		return;
	}
	if (a != NULL)			/* a file: HEAD too */
		want |= HTTP_M_HEAD;
	if ((rq->aq_mbit & want) == 0) {
		c->c_rs->as_allow = a != NULL ? "GET, HEAD" :
		    want == HTTP_M_GET ? "GET" : "POST";
		admin_error(c, 405, "method_not_allowed", "this endpoint "
		    "allows %s", c->c_rs->as_allow);
		return;
	}
	if (a != NULL) {
		c->c_rs->as_etag = a->ua_etag;
		if (rq->aq_inm != NULL && ui_etag_match(rq->aq_inm,
		    rq->aq_inmlen, a->ua_etag)) {
			c->c_rs->as_status = 304;
			return;
		}
		c->c_rs->as_status = 200;
		c->c_rs->as_type = a->ua_type;
		c->c_rs->as_static = a->ua_data;
		c->c_rs->as_bodylen = a->ua_len;
		return;
	}
	if (want == HTTP_M_POST && n == 9) {
		(void)admin_ui_login(c);
		return;
	}
	slot = admin_session(c, &st, csrf);
	if (want == HTTP_M_GET)		/* not an error: the page asks */
		(void)admin_ui_session_reply(c, slot != -1 ? csrf : NULL);
	else if (slot == -1 || admin_csrf(c, csrf) == 0) {
		/* Logged out, or was already: the cookie goes either way. */
		ui_session_end(c->c_env->ae_ui, slot, st);
		admin_ui_cookie(c, NULL);
		c->c_rs->as_status = 204;
	}
	OPENSSL_cleanse(csrf, sizeof(csrf));
}

/* Run the handler of the endpoint and method (both checked). */
/*
 * Ask the master req (taken; NULL: out of memory): its answer, or NULL
 * with the reason in why.
 */
static json_t *
admin_cluster_ask(struct admin_ctx *c, json_t *req, char *why, size_t len)
{
	json_t	*ans;

	if (req == NULL) {
		snprintf(why, len, "out of memory");
		return (NULL);
	}
	ans = cluster_call(c->c_env->ae_cluster, req, why, len);
	json_decref(req);
	return (ans);
}

/* The master's reason in a refusal ans (freed) into why, or fallback. */
static void
admin_cluster_why(json_t *ans, const char *fallback, char *why, size_t len)
{
	json_t	*v = json_object_get(ans, "message");

	snprintf(why, len, "%s", json_is_string(v) ? json_string_value(v) :
	    fallback);
	json_decref(ans);
}

/*
 * In a cluster, a key's usage for the whole cluster (what every node has
 * pushed to Redis, plus what this one counted since: cluster.c) in place
 * of this node's: "cluster".  Outside one, or when Redis cannot be
 * asked, the node's own counts stay, with the reason in why: "node".
 */
static const char *
admin_cluster_usage(struct admin_ctx *c, const char *id, uint64_t *allowed,
    uint64_t *refused, uint64_t *n, int64_t *last, char *why, size_t len)
{
	json_t		*ans;
	json_int_t	 a, l, r, t;

	why[0] = '\0';
	if (c->c_env->ae_cluster == NULL || (ans = admin_cluster_ask(c,
	    json_pack("{s:s,s:s}", "op", "usage", "id", id), why, len)) ==
	    NULL)
		return ("node");
	if (json_unpack(ans, "{s:{s:I,s:I,s:I,s:I}}", "usage", "allowed", &a,
	    "limited", &l, "refused", &r, "last_used", &t) == -1 || a < 0 ||
	    l < 0 || r < 0) {
		admin_cluster_why(ans, "no cluster totals", why, len);
		return ("node");
	}
	json_decref(ans);
	*allowed = (uint64_t)a;
	n[KS_C_ALLOWED] = (uint64_t)a;
	n[KS_C_LIMITED] = (uint64_t)l;
	n[KS_C_REFUSED] = (uint64_t)r;
	*refused = (uint64_t)l + (uint64_t)r;
	*last = t;
	return ("cluster");
}

/*
 * In a cluster, a key's history for the whole cluster (cluster.c's
 * history hashes, plus this node's counts since its last push) into pts
 * and *n: "cluster".  Outside one, or when Redis cannot be asked:
 * "node", the reason in why, and the caller reads this node's files.
 */
static const char *
admin_cluster_history(struct admin_ctx *c, const char *id, int kind,
    struct usage_point *pts, size_t *n, char *why, size_t len)
{
	json_t		*ans, *p, *v;
	json_int_t	 first, step, count, idx, x[3];
	size_t		 i;

	why[0] = '\0';
	*n = 0;
	if (c->c_env->ae_cluster == NULL || (ans = admin_cluster_ask(c,
	    json_pack("{s:s,s:s,s:i}", "op", "history", "id", id, "kind",
	    kind), why, len)) == NULL)
		return ("node");
	if (json_unpack(ans, "{s:I,s:I,s:I,s:o}", "first", &first, "step",
	    &step, "n", &count, "points", &p) == -1 || count < 1 ||
	    count > USAGE_POINTS_MAX || step <= 0 || !json_is_array(p)) {
		admin_cluster_why(ans, "no cluster history", why, len);
		return ("node");
	}
	for (i = 0; i < (size_t)count; i++) {
		pts[i].up_t = first + (int64_t)i * step;
		memset(pts[i].up_c, 0, sizeof(pts[i].up_c));
	}
	json_array_foreach(p, i, v) {
		if (json_unpack(v, "[I,I,I,I]", &idx, &x[0], &x[1], &x[2]) ==
		    -1 || idx < 0 || idx >= count || x[0] < 0 || x[1] < 0 ||
		    x[2] < 0)
			continue;
		pts[idx].up_c[USAGE_ADMITTED] = (uint64_t)x[0];
		pts[idx].up_c[USAGE_LIMITED] = (uint64_t)x[1];
		pts[idx].up_c[USAGE_REFUSED] = (uint64_t)x[2];
	}
	json_decref(ans);
	*n = (size_t)count;
	return ("cluster");
}

/*
 * GET /v1/cluster: the master's view (cluster.h); {"enabled":false}
 * outside a cluster.
 */
static int
admin_cluster(struct admin_ctx *c)
{
	json_t	*ans, *st;
	char	 err[256];

	if (c->c_env->ae_cluster == NULL)
		return (admin_reply(c->c_rs, 200, json_pack("{s:b}", "enabled",
		    0)));
	if ((ans = admin_cluster_ask(c, json_pack("{s:s}", "op", "status"),
	    err, sizeof(err))) == NULL)
		return (admin_error(c, 503, "cluster_unavailable", "the "
		    "master did not answer: %s", err));
	st = json_incref(json_object_get(ans, "cluster"));
	json_decref(ans);
	if (!json_is_object(st)) {
		json_decref(st);
		return (admin_error(c, 503, "cluster_unavailable", "the "
		    "master gave no cluster state"));
	}
	return (admin_reply(c->c_rs, 200, st));
}

static void
admin_dispatch_once(struct admin_ctx *c)
{
	int	 m = c->c_rq->aq_mbit;

	switch (c->c_ep) {
	case EP_HEALTH:
		admin_health(c);
		break;
	case EP_STATUS:
		admin_status(c);
		break;
	case EP_OPENAPI:
		admin_openapi(c);
		break;
	case EP_KEYS:
		if (m == HTTP_M_GET)
			admin_list(c);
		else
			admin_create(c);
		break;
	case EP_IMPORT:
		admin_import(c);
		break;
	case EP_KEY:
		if (m == HTTP_M_GET)
			admin_show(c);
		else if (m == HTTP_M_PATCH)
			admin_patch(c);
		else
			admin_delete(c);
		break;
	case EP_REGENERATE:
		admin_regenerate(c);
		break;
	case EP_USAGE:
		admin_usage(c);
		break;
	case EP_VERIFY:
		admin_verify(c);
		break;
	case EP_METRICS:
		admin_metrics(c);
		break;
	case EP_CLUSTER:
		admin_cluster(c);
		break;
	case EP_GATEWAY:
		admin_gateway(c);
		break;
	}
}

/*
 * A write the cluster found stale (c_cl_retry: another node changed the
 * key meanwhile, and this node has applied that since) runs again from
 * the start, reading the key anew, up to ADMIN_CLUSTER_TRIES times; the
 * last refusal is answered (409 conflict).
 */
static void
admin_dispatch(struct admin_ctx *c)
{
	int	 try;

	for (try = 1; ; try++) {
		admin_dispatch_once(c);
		if (!c->c_cl_retry || try == ADMIN_CLUSTER_TRIES)
			break;
		c->c_cl_retry = 0;
		admin_response_free(c->c_rs);
		memset(c->c_rs, 0, sizeof(*c->c_rs));
	}
	json_decref(c->c_cl_req);
	c->c_cl_req = NULL;
}

/*
 * Answer one request.  The token is checked before the path is looked
 * at (except for the health check), so without it nothing is learnt
 * about which paths or keys exist.
 */
void
admin_handle(const struct admin_env *env, const struct admin_request *rq,
    struct admin_response *rs)
{
	struct admin_ctx	 c;
	int			 found;

	memset(rs, 0, sizeof(*rs));
	memset(&c, 0, sizeof(c));
	c.c_env = env;
	c.c_rq = rq;
	c.c_rs = rs;
	c.c_ks = env->ae_ks;
	if (rq->aq_path != NULL && rq->aq_pathlen >= 3 &&
	    memcmp(rq->aq_path, "/ui", 3) == 0 && (rq->aq_pathlen == 3 ||
	    rq->aq_path[3] == '/')) {
		admin_ui(&c);
		return;
	}
	found = rq->aq_path != NULL &&
	    admin_route(&c, rq->aq_path, rq->aq_pathlen) == 0;
	if ((!found || c.c_ep != EP_HEALTH) && admin_auth(&c) == -1)
		return;
	if (!found) {
		admin_error(&c, 404, "not_found", "there is no such endpoint; "
		    "see /v1/openapi.json");
		return;
	}
	if ((rq->aq_mbit & admin_methods[c.c_ep].m_bits) == 0) {
		admin_error(&c, 405, "method_not_allowed", "this endpoint "
		    "allows %s", admin_methods[c.c_ep].m_allow);
		rs->as_allow = admin_methods[c.c_ep].m_allow;
		return;
	}
	admin_dispatch(&c);
}

/* Free (and wipe: it may hold a new secret) the response body. */
void
admin_response_free(struct admin_response *rs)
{
	if (rs->as_body != NULL) {
		OPENSSL_cleanse(rs->as_body, rs->as_bodylen);
		free(rs->as_body);
	}
	rs->as_body = NULL;
	rs->as_bodylen = 0;
}
