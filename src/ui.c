/*
 * The web console's files and sessions (ui.h).
 */

#include <sys/types.h>

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "ui.h"
#include "util.h"

#define UI_ST(w)	((w) & 3)
#define UI_HI(w)	((w) >> 32)

const struct ui_asset *
ui_asset_find(const char *path, size_t len)
{
	const struct ui_asset	*a;

	if (len == 0) {
		path = "index.html";
		len = 10;
	}
	for (a = ui_assets; a->ua_name != NULL; a++)
		if (strlen(a->ua_name) == len &&
		    memcmp(a->ua_name, path, len) == 0)
			return (a);
	return (NULL);
}

/* Does the If-None-Match list (RFC 9110 13.1.2) name etag, or is it "*"? */
int
ui_etag_match(const char *v, size_t len, const char *etag)
{
	size_t	 elen = strlen(etag), i = 0, s;

	while (i < len) {
		while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		s = i;
		while (i < len && v[i] != ',')
			i++;
		while (i > s && (v[i - 1] == ' ' || v[i - 1] == '\t'))
			i--;
		/* A weak validator compares weakly here (13.1.2). */
		if (i - s > 2 && v[s] == 'W' && v[s + 1] == '/')
			s += 2;
		if ((i - s == 1 && v[s] == '*') ||
		    (i - s == elen && memcmp(v + s, etag, elen) == 0))
			return (1);
		while (i < len && v[i] != ',')
			i++;
	}
	return (0);
}

/* Unpadded base64url of 32 bytes into out (UI_TOKEN_LEN + 1 bytes). */
static void
ui_b64url(const uint8_t in[32], char *out)
{
	static const char	 b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				    "abcdefghijklmnopqrstuvwxyz0123456789-_";
	uint32_t		 v;
	int			 i, o = 0;

	for (i = 0; i < 30; i += 3) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
		    in[i + 2];
		out[o++] = b64[v >> 18];
		out[o++] = b64[v >> 12 & 63];
		out[o++] = b64[v >> 6 & 63];
		out[o++] = b64[v & 63];
	}
	v = (uint32_t)in[30] << 16 | (uint32_t)in[31] << 8;
	out[o++] = b64[v >> 18];
	out[o++] = b64[v >> 12 & 63];
	out[o++] = b64[v >> 6 & 63];
	out[o] = '\0';
}

/*
 * What a slot keeps of session id: SHA-256 of the admin token's digest
 * (bind) and the id, so that a session made with a token is no longer
 * found once the token changed (a reload read a new admin_token_file).
 */
static void
ui_digest(const uint8_t bind[32], const char *id, uint8_t d[32])
{
	uint8_t	 buf[32 + UI_TOKEN_LEN];

	memcpy(buf, bind, 32);
	memcpy(buf + 32, id, UI_TOKEN_LEN);
	SHA256(buf, sizeof(buf), d);
	OPENSSL_cleanse(buf, sizeof(buf));
}

/* The CSRF token of session id (its cookie value). */
static void
ui_csrf(const struct ui_table *t, const char *id, char *out)
{
	uint8_t		 mac[EVP_MAX_MD_SIZE];
	unsigned int	 len = 0;

	if (HMAC(EVP_sha256(), t->ut_secret, sizeof(t->ut_secret),
	    (const unsigned char *)id, UI_TOKEN_LEN, mac, &len) == NULL ||
	    len < 32)
		memset(mac, 0, sizeof(mac));	/* matches no token sent */
	ui_b64url(mac, out);
	if (len < 32)
		out[0] = '\0';
	OPENSSL_cleanse(mac, sizeof(mac));
}

/*
 * Claim a slot for a new session at now: a free one, one ended by its
 * age, one whose writer died, or else the one idle longest.  Its index
 * with the state word set to WRITING, or -1.
 */
static int
ui_claim(struct ui_table *t, int64_t now, int64_t idle_ms)
{
	struct ui_session	*s;
	uint64_t		 w, pickw = 0, mine = UI_ST_WRITING |
				    (uint64_t)(uint32_t)getpid() << 32;
	int64_t			 oldest, seen;
	int			 i, pass, pick;

	for (pass = 0; pass < 4; pass++) {
		pick = -1;
		oldest = INT64_MAX;
		for (i = 0; i < UI_SESSIONS; i++) {
			s = &t->ut_s[i];
			w = __atomic_load_n(&s->us_state, __ATOMIC_ACQUIRE);
			if (UI_ST(w) == UI_ST_FREE || (UI_ST(w) ==
			    UI_ST_WRITING && kill((pid_t)UI_HI(w), 0) == -1 &&
			    errno == ESRCH) || (UI_ST(w) == UI_ST_LIVE &&
			    (now - __atomic_load_n(&s->us_seen,
			    __ATOMIC_RELAXED) >= idle_ms ||
			    now - s->us_created >= UI_SESSION_MAX_MS))) {
				if (__atomic_compare_exchange_n(&s->us_state,
				    &w, mine, 0, __ATOMIC_ACQ_REL,
				    __ATOMIC_RELAXED))
					return (i);
				continue;
			}
			seen = __atomic_load_n(&s->us_seen, __ATOMIC_RELAXED);
			if (UI_ST(w) == UI_ST_LIVE && seen < oldest) {
				oldest = seen;
				pick = i;
				pickw = w;
			}
		}
		/* From the state seen: not a session that came meanwhile. */
		if (pick != -1 && __atomic_compare_exchange_n(
		    &t->ut_s[pick].us_state, &pickw, mine, 0, __ATOMIC_ACQ_REL,
		    __ATOMIC_RELAXED))
			return (pick);
	}
	return (-1);
}

int
ui_session_new(struct ui_table *t, const uint8_t bind[32], int64_t now,
    int64_t idle_ms, char *cookie, char *csrf)
{
	struct ui_session	*s;
	uint8_t			 id[UI_ID_LEN];
	uint64_t		 gen;
	int			 i;

	if (RAND_bytes(id, sizeof(id)) != 1)
		return (-1);
	ui_b64url(id, cookie);
	OPENSSL_cleanse(id, sizeof(id));
	ui_csrf(t, cookie, csrf);
	if ((i = ui_claim(t, now, idle_ms)) == -1)
		return (-1);
	s = &t->ut_s[i];
	ui_digest(bind, cookie, s->us_digest);
	s->us_created = now;
	__atomic_store_n(&s->us_seen, now, __ATOMIC_RELAXED);
	gen = __atomic_add_fetch(&t->ut_gen, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&s->us_state, UI_ST_LIVE | gen << 32,
	    __ATOMIC_RELEASE);
	return (0);
}

/* The slot of the live session whose id is val (UI_TOKEN_LEN), or -1. */
static int
ui_session_lookup(struct ui_table *t, const uint8_t bind[32], const char *val,
    int64_t now, int64_t idle_ms, uint64_t *st)
{
	struct ui_session	*s;
	uint8_t			 d[32];
	uint64_t		 w;
	int64_t			 created, seen;
	int			 i, ok, found = -1;

	ui_digest(bind, val, d);
	for (i = 0; i < UI_SESSIONS && found == -1; i++) {
		s = &t->ut_s[i];
		w = __atomic_load_n(&s->us_state, __ATOMIC_ACQUIRE);
		if (UI_ST(w) != UI_ST_LIVE)
			continue;
		ok = CRYPTO_memcmp(d, s->us_digest, sizeof(d)) == 0;
		created = s->us_created;
		seen = __atomic_load_n(&s->us_seen, __ATOMIC_RELAXED);
		/* Read while it was this session: not reclaimed meanwhile. */
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (!ok || __atomic_load_n(&s->us_state, __ATOMIC_RELAXED) != w)
			continue;
		if (now - seen >= idle_ms || now - created >=
		    UI_SESSION_MAX_MS) {
			ui_session_end(t, i, w);	/* it ended */
			break;
		}
		if (now > seen)
			__atomic_store_n(&s->us_seen, now, __ATOMIC_RELAXED);
		*st = w;
		found = i;
	}
	OPENSSL_cleanse(d, sizeof(d));
	return (found);
}

int
ui_session_find(struct ui_table *t, const uint8_t bind[32], const char *hdr,
    size_t len, int64_t now, int64_t idle_ms, uint64_t *st, char *csrf)
{
	const char	*id;
	char		 val[UI_TOKEN_LEN + 1];
	uint64_t	 w = 0;
	size_t		 pos = 0, cs, ce;
	int		 found = -1;

	if (t == NULL || hdr == NULL)
		return (-1);
	/* Any of them: a browser may send several (their paths differ). */
	while (found == -1 && ui_cookie_next(hdr, len, &pos, &cs, &ce)) {
		if (!ui_cookie_is_session(hdr, cs, ce) || ce - cs !=
		    sizeof(UI_COOKIE) + UI_TOKEN_LEN)
			continue;
		id = hdr + cs + sizeof(UI_COOKIE);
		memcpy(val, id, UI_TOKEN_LEN);
		val[UI_TOKEN_LEN] = '\0';
		found = ui_session_lookup(t, bind, val, now, idle_ms, &w);
	}
	if (found != -1 && st != NULL)
		*st = w;
	if (found != -1 && csrf != NULL)
		ui_csrf(t, val, csrf);
	OPENSSL_cleanse(val, sizeof(val));
	return (found);
}

int
ui_csrf_ok(const char *v, size_t len, const char *token)
{
	return (v != NULL && len == UI_TOKEN_LEN && strlen(token) ==
	    UI_TOKEN_LEN && CRYPTO_memcmp(v, token, UI_TOKEN_LEN) == 0);
}

void
ui_session_end(struct ui_table *t, int slot, uint64_t st)
{
	if (slot < 0 || slot >= UI_SESSIONS)
		return;
	(void)__atomic_compare_exchange_n(&t->ut_s[slot].us_state, &st,
	    UI_ST_FREE, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}

int
ui_session_count(struct ui_table *t, int64_t now, int64_t idle_ms)
{
	struct ui_session	*s;
	int			 i, n = 0;

	for (i = 0; i < UI_SESSIONS; i++) {
		s = &t->ut_s[i];
		if (UI_ST(__atomic_load_n(&s->us_state, __ATOMIC_ACQUIRE)) ==
		    UI_ST_LIVE && now - __atomic_load_n(&s->us_seen,
		    __ATOMIC_RELAXED) < idle_ms &&
		    now - s->us_created < UI_SESSION_MAX_MS)
			n++;
	}
	return (n);
}
