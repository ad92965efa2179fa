/*
 * The web console (admin_ui): its files, compiled in (contrib/embed.sh from
 * ui/), and its sessions, in the shared segment so that any worker's admin
 * threads can check them.
 *
 * A session is 32 random bytes, base64url in the cookie UI_COOKIE; the
 * table keeps only a SHA-256 of them and of the admin token's digest.
 * Its CSRF token is derived from it (an
 * HMAC under the table's secret, drawn when the segment is made): nothing
 * more to keep, and a page that lost it gets it again from the session.
 * A session ends idle_ms after its last request, UI_SESSION_MAX_MS after
 * it began, or at logout; when all UI_SESSIONS are in use, a new one
 * takes the place of the one idle longest.
 *
 * Slots change by compare-and-swap of their state word only: a writer
 * claims a slot (UI_ST_WRITING and its pid), fills it, then publishes it
 * (UI_ST_LIVE and a generation); a slot whose writer died is claimed
 * again.  Readers check the state before and after they read.
 */
#ifndef KEYGATE_UI_H
#define KEYGATE_UI_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define UI_COOKIE		"keygate_session"
#define UI_SESSIONS		64
#define UI_SESSION_MAX_MS	(12 * 3600 * 1000LL)	/* whatever the use */
#define UI_ID_LEN		32	/* random bytes */
#define UI_TOKEN_LEN		43	/* base64url of 32 bytes, unpadded */

/*
 * The next cookie of a Cookie header value v[0..len) from *pos on (RFC
 * 6265 5.4: pairs separated by ";", blanks around them ignored): its
 * bytes [*s, *e), and 1; 0 at the end.  Shared by the session lookup and
 * the proxy, which keeps the session cookie from upstreams (forward.c).
 */
static inline int
ui_cookie_next(const char *v, size_t len, size_t *pos, size_t *s,
    size_t *e)
{
	size_t	 i = *pos;

	while (i < len && (v[i] == ' ' || v[i] == ';'))
		i++;
	if (i >= len) {
		*pos = len;
		return (0);
	}
	*s = i;
	while (i < len && v[i] != ';')
		i++;
	*pos = i;
	for (*e = i; *e > *s && v[*e - 1] == ' '; (*e)--)
		;
	return (1);
}

/* Is the cookie v[s..e) a session's ("keygate_session=...")? */
static inline int
ui_cookie_is_session(const char *v, size_t s, size_t e)
{
	size_t	 nl = sizeof(UI_COOKIE) - 1;

	return (e - s > nl && memcmp(v + s, UI_COOKIE, nl) == 0 &&
	    v[s + nl] == '=');
}

/* A file of the console. */
struct ui_asset {
	const char	*ua_name;	/* "index.html" */
	const char	*ua_type;	/* Content-Type */
	const char	*ua_etag;	/* quoted */
	const char	*ua_data;
	size_t		 ua_len;
};

extern const struct ui_asset	 ui_assets[];

/* The file served at path (after "/ui/"; "" is index.html), or NULL. */
const struct ui_asset *ui_asset_find(const char *, size_t);

/* Does the If-None-Match value (len bytes) name etag? */
int	 ui_etag_match(const char *, size_t, const char *);

struct ui_session {
	uint64_t	 us_state;	/* UI_ST_* | pid or generation << 32 */
#define UI_ST_FREE	0
#define UI_ST_WRITING	1
#define UI_ST_LIVE	2
	uint8_t		 us_digest[32];	/* SHA-256 of token digest, id */
	int64_t		 us_created;	/* ms, CLOCK_MONOTONIC */
	int64_t		 us_seen;	/* ms, the last request's */
};

/* Zeroed, with a fresh secret, by shm_create(). */
struct ui_table {
	uint8_t			 ut_secret[32];	/* CSRF tokens' HMAC key */
	uint64_t		 ut_gen;
	struct ui_session	 ut_s[UI_SESSIONS];
};

/*
 * A new session at now (ms, CLOCK_MONOTONIC), made with the admin token
 * whose SHA-256 is bind: its cookie value and CSRF token into the buffers
 * (UI_TOKEN_LEN + 1 bytes each); 0, or -1 (no randomness).
 */
int	 ui_session_new(struct ui_table *, const uint8_t[32], int64_t, int64_t,
	    char *, char *);

/*
 * The session named in a Cookie header value (len bytes) at now, made
 * with the admin token bind (a session of another token is not found),
 * idle for less than idle_ms: its slot (its last use set to now, its
 * state word into *st) and, if csrf is not NULL, its CSRF token
 * (UI_TOKEN_LEN + 1 bytes); -1 if none.
 */
int	 ui_session_find(struct ui_table *, const uint8_t[32], const char *,
	    size_t, int64_t, int64_t, uint64_t *, char *);

/* Does the X-CSRF-Token value (len bytes) match the token? Constant time. */
int	 ui_csrf_ok(const char *, size_t, const char *);

/* End the session in slot, if it is still the one found in state st. */
void	 ui_session_end(struct ui_table *, int, uint64_t);

/* Live sessions at now (the tests count them). */
int	 ui_session_count(struct ui_table *, int64_t, int64_t);

#endif /* KEYGATE_UI_H */
