/*
 * Unit tests for request authentication (src/auth.c) against a real key
 * store (src/keystore.c) in a private region and requests parsed by the
 * real HTTP parser.  One table covers every outcome a client can see:
 * status, code, message, WWW-Authenticate, and which key (if any) the
 * access log would name; further tests cover usage counters, the bare
 * secret check of the admin API, scopes and the identity headers.
 */

#include <sys/types.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>

#include "auth.h"
#include "config.h"
#include "http.h"
#include "jwtauth.h"
#include "jwttest.h"
#include "keystore.h"
#include "route.h"
#include "secret.h"

#define NOW		INT64_C(1700000000000)
#define T_EXP		(NOW + 1000)	/* expiring key's expires_at */
#define T_GRACE		(NOW + 5000)	/* regenerated key's grace_until */

#define S_PLAIN		"live_Pq3Zt8Lw0Xv2Nc6Hb9Rk1Ym4Sd7Gf5Ja"
#define S_APP		"test_Ap0Ap1Ap2Ap3Ap4Ap5Ap6Ap7Ap8Ap9AB"
#define S_DIS		"live_Di5abLeD0000000000000000000000"
#define S_EXP		"live_Ex9iRes11111111111111111111111"
#define S_NEW		"live_NewNewNew22222222222222222222"
#define S_OLD		"live_OldOldOld33333333333333333333"
#define S_UNKNOWN	"live_Unkn0wn44444444444444444444444"

#define ID_PLAIN	"key_plain00000000000"
#define ID_APP		"key_app0000000000000"
#define ID_DIS		"key_dis0000000000000"
#define ID_EXP		"key_exp0000000000000"
#define ID_REGEN	"key_regen00000000000"
#define ID_RATE		"key_rate000000000000"
#define S_RATE		"live_RateRateRate5555555555555555555"

#define MSG_EMPTY	"the API key is empty"
#define MSG_WS		"the API key contains whitespace or a control character"
#define MSG_LONG	"the API key is too long"
#define MSG_B64		"the Basic credentials are not valid base64"
#define MSG_COLON	"the Basic credentials have no ':'"
#define MSG_INVALID	"the API key is not valid"
#define MSG_OTHERAPP	"the API key does not belong to this app"
#define MSG_DENY	"this route does not accept requests"

#define CH_API		"ApiKey header=\"X-API-KEY\", Basic realm=\"keygate\""
#define CH_APP		"AppKey header=\"X-API-KEY\", " \
			"app_header=\"X-APP-ID\", Basic realm=\"keygate\""
#define CH_BOTH		"ApiKey header=\"X-API-KEY\", " \
			"AppKey header=\"X-API-KEY\", " \
			"app_header=\"X-APP-ID\", Basic realm=\"keygate\""

#define MAXKEYS		16


/*
 * The server's two steps for a request: authenticate, then (if allowed)
 * the rate limit, which also counts an allowed key's use.
 */
static int
decide(const struct route *r, const struct http_msg *m, struct keystore *ks,
    const char *key_header, int64_t now, const struct auth_rate *ra,
    const struct auth_jwt *jwt, struct auth_result *ar)
{
	if (auth_check(r, m, ks, key_header, now, jwt, ar) != 0)
		return (ar->ar_status);
	return (auth_limit(r, ra, ks, jwt, now, ar));
}

static void		*region;
static struct keystore	 ks;
static void		*rate_ipregion;	/* client address table */

static void		 jwt_env_free(void);

/* One key of the test store. */
struct tkey {
	const char	*id;
	const char	*secret;
	const char	*old;		/* previous secret, or NULL */
	int64_t		 grace;
	const char	*owner;
	const char	*app;
	const char	*scopes;
	uint32_t	 flags;
	int64_t		 expires;
	uint32_t	 rate1s;	/* the key's own 1 s limit, 0: none */
};

static const struct tkey tkeys[] = {
	{ ID_PLAIN, S_PLAIN, NULL, 0, "alice", "", "read write", 0, 0, 0 },
	{ ID_APP, S_APP, NULL, 0, "bob", "shop", "read", 0, 0, 0 },
	{ ID_DIS, S_DIS, NULL, 0, "carol", "", "", KS_F_DISABLED, 0, 0 },
	{ ID_EXP, S_EXP, NULL, 0, "erin", "", "", 0, T_EXP, 0 },
	{ ID_REGEN, S_NEW, S_OLD, T_GRACE, "dave", "", "read", 0, 0, 0 },
	{ ID_RATE, S_RATE, NULL, 0, "frank", "", "read", 0, 0, 5 },
};

/* Create the key store and put the test keys in it. */
static int
setup(void **state)
{
	struct ks_key	 k;
	size_t		 i, size = keystore_size(MAXKEYS, MAXKEYS);

	(void)state;
	if (posix_memalign(&region, 64, size) != 0)
		return (-1);
	memset(region, 0, size);
	keystore_init(&ks, region, MAXKEYS, MAXKEYS,
	    UINT64_C(0x1234567890abcdef));
	if (keystore_lock(&ks, getpid(), 1000) != KS_OK)
		return (-1);
	for (i = 0; i < sizeof(tkeys) / sizeof(tkeys[0]); i++) {
		memset(&k, 0, sizeof(k));
		snprintf(k.k_id, sizeof(k.k_id), "%s", tkeys[i].id);
		secret_digest(tkeys[i].secret, strlen(tkeys[i].secret),
		    k.k_digest);
		if (tkeys[i].old != NULL) {
			secret_digest(tkeys[i].old, strlen(tkeys[i].old),
			    k.k_old_digest);
			k.k_grace_until = tkeys[i].grace;
		}
		snprintf(k.k_prefix, sizeof(k.k_prefix), "live");
		secret_hint(tkeys[i].secret, k.k_hint, sizeof(k.k_hint));
		snprintf(k.k_name, sizeof(k.k_name), "test key %zu", i);
		snprintf(k.k_owner, sizeof(k.k_owner), "%s", tkeys[i].owner);
		snprintf(k.k_app, sizeof(k.k_app), "%s", tkeys[i].app);
		snprintf(k.k_scopes, sizeof(k.k_scopes), "%s",
		    tkeys[i].scopes);
		k.k_flags = tkeys[i].flags;
		k.k_expires = tkeys[i].expires;
		k.k_rate[KS_W1S] = tkeys[i].rate1s;
		k.k_created = k.k_updated = NOW - 100000;
		if (keystore_put(&ks, &k, i + 1) != KS_OK)
			return (-1);
	}
	keystore_unlock(&ks, getpid());
	return (0);
}

/* Free the region. */
static int
teardown(void **state)
{
	(void)state;
	free(region);
	free(rate_ipregion);
	jwt_env_free();
	return (0);
}

/*
 * A route with the schemes in auth ("api-key,anonymous,jwt:B"; jwt:A and
 * jwt:B are the JWT tests' providers 0 and 1) and the scopes
 * in scopes ("read,admin", NULL for none).  Scope strings point into
 * store, which must outlive r.
 */
static void
route_make(struct route *r, const char *auth, const char *scopes,
    char *store, size_t storelen)
{
	static const struct {
		const char	*name;
		enum route_auth	 a;
	} names[] = {
		{ "anonymous", ROUTE_AUTH_ANONYMOUS },
		{ "deny", ROUTE_AUTH_DENY },
		{ "api-key", ROUTE_AUTH_API_KEY },
		{ "app-key", ROUTE_AUTH_APP_KEY }, { "jwt", ROUTE_AUTH_JWT }
	};
	char	 buf[128], *p, *save;
	size_t	 i;

	memset(r, 0, sizeof(*r));
	snprintf(buf, sizeof(buf), "%s", auth);
	for (p = strtok_r(buf, ",", &save); p != NULL;
	    p = strtok_r(NULL, ",", &save)) {
		r->r_jwt[r->r_nauth] = -1;
		if (strncmp(p, "jwt:", 4) == 0) {	/* jwt:A, jwt:B */
			r->r_jwt[r->r_nauth] = p[4] - 'A';
			p[3] = '\0';
		}
		for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (strcmp(p, names[i].name) == 0)
				break;
		assert_true(i < sizeof(names) / sizeof(names[0]));
		r->r_auth[r->r_nauth++] = names[i].a;
	}
	if (scopes == NULL)
		return;
	snprintf(store, storelen, "%s", scopes);
	for (p = strtok_r(store, ",", &save); p != NULL;
	    p = strtok_r(NULL, ",", &save))
		r->r_scopes[r->r_nscopes++] = p;
}

/* "Authorization: Basic base64(cred[0..len))\r\n" appended to buf. */
static void
add_basic(char *buf, size_t size, const char *cred, size_t len)
{
	unsigned char	 b64[1024];

	assert_true(len * 4 / 3 + 4 < sizeof(b64));
	EVP_EncodeBlock(b64, (const unsigned char *)cred, (int)len);
	snprintf(buf + strlen(buf), size - strlen(buf),
	    "Authorization: Basic %s\r\n", (char *)b64);
}

/* Parse "GET / HTTP/1.1", Host, headers and the optional Basic into m. */
static void
request(struct http_msg *m, char *buf, size_t size, const char *headers,
    const char *basic, size_t basiclen)
{
	snprintf(buf, size, "GET /x HTTP/1.1\r\nHost: a\r\n%s", headers);
	if (basic != NULL)
		add_basic(buf, size, basic,
		    basiclen ? basiclen : strlen(basic));
	snprintf(buf + strlen(buf), size - strlen(buf), "\r\n");
	http_msg_init(m);
	assert_int_equal(http_parse_request(m, buf, strlen(buf), NULL), 1);
}

/* One request and what the client (and the access log) must see. */
struct acase {
	const char	*name;
	const char	*auth;		/* route auth= */
	const char	*scopes;	/* route scope=, NULL: none */
	const char	*headers;	/* header lines, CRLF-ended */
	const char	*basic;		/* Basic credentials, or NULL */
	size_t		 basiclen;	/* 0: strlen(basic) */
	const char	*keyhdr;	/* NULL: "x-api-key" */
	int64_t		 now;		/* 0: NOW */
	int		 status;
	const char	*code;
	const char	*message;
	const char	*challenge;	/* 401: exact WWW-Authenticate */
	enum route_auth	 scheme;	/* 0: not checked */
	const char	*key;		/* id of the key found, NULL: none */
};

#define API	ROUTE_AUTH_API_KEY
#define APP	ROUTE_AUTH_APP_KEY
#define ANON	ROUTE_AUTH_ANONYMOUS
#define XKEY(s)	"X-API-KEY: " s "\r\n"
#define XAPP(s)	"X-APP-ID: " s "\r\n"
#define B64_32	"QUFB" "QUFB" "QUFB" "QUFB" "QUFB" "QUFB" "QUFB" "QUFB"
#define B64_256	B64_32 B64_32 B64_32 B64_32 B64_32 B64_32 B64_32 B64_32
#define B64_1K	B64_256 B64_256 B64_256 B64_256	/* 768 bytes decoded */
#define B64_128	B64_32 B64_32 B64_32 B64_32
#define B64_2K	B64_1K B64_1K				/* 1536 bytes decoded */
/* 1368 characters, the longest accepted: ":" and 1025 or 1023 more bytes. */
#define B64_1026 "OkFB" B64_1K B64_256 B64_32 B64_32 "QUFB" "QUFB" "QUFB" \
		"QUFB" "QUFB"
#define B64_1024 "OkFB" B64_1K B64_256 B64_32 B64_32 "QUFB" "QUFB" "QUFB" \
		"QUFB" "QQ=="
#define A32	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define A64	A32 A32
#define A256	A64 A64 A64 A64
#define A512	A256 A256

/* Allowed by key. */
#define OKK(n, au, sc, hd, sch, id)					\
	{ .name = n, .auth = au, .scopes = sc, .headers = hd,		\
	  .status = 0, .scheme = sch, .key = id }
/* Refused (hd: headers; bas: Basic credentials). */
#define NO(n, au, hd, bas, st, co, msg, ch, id)				\
	{ .name = n, .auth = au, .headers = hd, .basic = bas,		\
	  .status = st, .code = co, .message = msg, .challenge = ch,	\
	  .key = id }
#define MAL(n, au, hd, bas, msg, ch)					\
	NO(n, au, hd, bas, 401, "malformed_credentials", msg, ch, NULL)

static const struct acase cases[] = {
	/* Missing: each combination of key schemes, and what is not one. */
	NO("missing api-key", "api-key", "", NULL, 401, "missing_credentials",
	    "this route needs an API key", CH_API, NULL),
	NO("missing app-key", "app-key", "", NULL, 401, "missing_credentials",
	    "this route needs an app id and API key", CH_APP, NULL),
	NO("missing both", "api-key,app-key", "", NULL, 401,
	    "missing_credentials",
	    "this route needs an API key, or an app id and API key", CH_BOTH,
	    NULL),
	NO("missing both, app first", "app-key,api-key", "", NULL, 401,
	    "missing_credentials",
	    "this route needs an API key, or an app id and API key",
	    "AppKey header=\"X-API-KEY\", app_header=\"X-APP-ID\", "
	    "ApiKey header=\"X-API-KEY\", Basic realm=\"keygate\"", NULL),
	NO("missing with jwt listed", "api-key,jwt",
	    "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln\r\n", NULL,
	    401, "missing_credentials",
	    "this route needs an API key, or a bearer token",
	    "ApiKey header=\"X-API-KEY\", Basic realm=\"keygate\", "
	    "Bearer realm=\"keygate\"", NULL),
	NO("bearer is not an api key", "api-key",
	    "Authorization: Bearer " S_PLAIN "\r\n", NULL, 401,
	    "missing_credentials", "this route needs an API key", CH_API,
	    NULL),
	NO("other scheme is not an api key", "api-key",
	    "Authorization: Digest username=\"a\"\r\n", NULL, 401,
	    "missing_credentials", "this route needs an API key", CH_API,
	    NULL),
	NO("basicx is not basic", "api-key",
	    "Authorization: BasicOmxpdmU=\r\n", NULL, 401,
	    "missing_credentials", "this route needs an API key", CH_API,
	    NULL),
	NO("app-key needs x-app-id", "app-key", XKEY(S_APP), NULL, 401,
	    "missing_credentials", "this route needs an app id and API key",
	    CH_APP, NULL),
	NO("app-key needs the key", "app-key", XAPP("shop"), NULL, 401,
	    "missing_credentials", "this route needs an app id and API key",
	    CH_APP, NULL),
	NO("app-key needs a basic user", "app-key", "", ":" S_APP, 401,
	    "missing_credentials", "this route needs an app id and API key",
	    CH_APP, NULL),
	{ .name = "custom header missing", .auth = "api-key",
	  .headers = XKEY(S_PLAIN), .keyhdr = "x-my-key", .status = 401,
	  .code = "missing_credentials",
	  .message = "this route needs an API key",
	  .challenge = "ApiKey header=\"X-MY-KEY\", Basic realm=\"keygate\"" },

	/* Malformed: the message says what, never the value. */
	MAL("empty key", "api-key", "X-API-KEY:\r\n", NULL, MSG_EMPTY, CH_API),
	MAL("empty key after OWS", "api-key", "X-API-KEY:   \r\n", NULL,
	    MSG_EMPTY, CH_API),
	MAL("space inside", "api-key", XKEY("live_Pq3Zt8Lw 0Xv2"), NULL,
	    MSG_WS, CH_API),
	MAL("tab inside", "api-key", XKEY("live_Pq3Zt8Lw\t0Xv2"), NULL,
	    MSG_WS, CH_API),
	{ .name = "control char in basic", .auth = "api-key", .headers = "",
	  .basic = ":live_Pq3\001Zt8", .status = 401,
	  .code = "malformed_credentials", .message = MSG_WS,
	  .challenge = CH_API },
	{ .name = "DEL in basic", .auth = "api-key", .headers = "",
	  .basic = ":live_Pq3\177Zt8", .status = 401,
	  .code = "malformed_credentials", .message = MSG_WS,
	  .challenge = CH_API },
	{ .name = "NUL in basic", .auth = "api-key", .headers = "",
	  .basic = ":live\0Pq3", .basiclen = 9, .status = 401,
	  .code = "malformed_credentials", .message = MSG_WS,
	  .challenge = CH_API },
	MAL("key header twice", "api-key", XKEY(S_PLAIN) XKEY(S_PLAIN), NULL,
	    "X-API-KEY appears more than once", CH_API),
	MAL("key header twice, mixed case", "api-key",
	    "x-api-key: " S_PLAIN "\r\nX-Api-Key: " S_UNKNOWN "\r\n", NULL,
	    "X-API-KEY appears more than once", CH_API),
	{ .name = "custom header twice", .auth = "api-key",
	  .headers = "X-My-Key: a\r\nx-my-key: b\r\n", .keyhdr = "x-my-key",
	  .status = 401, .code = "malformed_credentials",
	  .message = "X-MY-KEY appears more than once",
	  .challenge = "ApiKey header=\"X-MY-KEY\", Basic realm=\"keygate\"" },
	MAL("x-app-id twice", "app-key", XAPP("shop") XAPP("shop") XKEY(S_APP),
	    NULL, "X-APP-ID appears more than once", CH_APP),
	MAL("x-app-id empty", "app-key", "X-APP-ID:\r\n" XKEY(S_APP), NULL,
	    "the app id is empty", CH_APP),
	MAL("x-app-id with space", "app-key", XAPP("sh op") XKEY(S_APP), NULL,
	    "the app id contains whitespace or a control character", CH_APP),
	{ .name = "basic app id with control char", .auth = "app-key",
	  .headers = "", .basic = "sh\033op:" S_APP, .status = 401,
	  .code = "malformed_credentials",
	  .message = "the app id contains whitespace or a control character",
	  .challenge = CH_APP },
	MAL("key too long", "api-key", XKEY(A512 "a"), NULL, MSG_LONG, CH_API),
	NO("key of 512 bytes is not malformed", "api-key", XKEY(A512), NULL,
	    401, "invalid_credentials", MSG_INVALID, CH_API, NULL),
	NO("basic key of 512 bytes is not malformed", "api-key", "",
	    ":" A512, 401, "invalid_credentials", MSG_INVALID, CH_API, NULL),
	MAL("basic not base64", "api-key", "Authorization: Basic !!!!\r\n",
	    NULL, MSG_B64, CH_API),
	MAL("basic unpadded", "api-key", "Authorization: Basic OmFiYw\r\n",
	    NULL, MSG_B64, CH_API),
	MAL("basic short padding", "api-key",
	    "Authorization: Basic OmFiYw=\r\n", NULL, MSG_B64, CH_API),
	MAL("basic padding inside", "api-key",
	    "Authorization: Basic Om=iYw==\r\n", NULL, MSG_B64, CH_API),
	MAL("basic three pads", "api-key",
	    "Authorization: Basic OmFi====\r\n", NULL, MSG_B64, CH_API),
	MAL("basic nonzero pad bits", "api-key",
	    "Authorization: Basic OmFiYx==\r\n", NULL, MSG_B64, CH_API),
	MAL("basic url-safe alphabet", "api-key",
	    "Authorization: Basic Om-_Yw==\r\n", NULL, MSG_B64, CH_API),
	MAL("basic space inside token", "api-key",
	    "Authorization: Basic OmFi Yw==\r\n", NULL, MSG_B64, CH_API),
	MAL("basic empty", "api-key", "Authorization: Basic\r\n", NULL,
	    "the Basic credentials are empty", CH_API),
	MAL("basic no colon", "api-key", "", "abc", MSG_COLON, CH_API),
	MAL("basic too long", "api-key", "Authorization: Basic " B64_2K "\r\n",
	    NULL, "the Basic credentials are too long", CH_API),
	/* 1368 characters decode to 1026 bytes: more than the buffer. */
	MAL("basic of 1026 bytes", "api-key",
	    "Authorization: Basic " B64_1026 "\r\n", NULL,
	    "the Basic credentials are too long", CH_API),
	MAL("basic of 1024 bytes decodes", "api-key",
	    "Authorization: Basic " B64_1024 "\r\n", NULL, MSG_LONG, CH_API),
	MAL("basic bad base64 on app-key", "app-key",
	    "Authorization: Basic !!!!\r\n", NULL, MSG_B64, CH_APP),
	MAL("basic user on api-key only", "api-key", "", "shop:" S_APP,
	    "the Basic user name must be empty for an API key", CH_API),
	MAL("basic empty password", "api-key", "", ":", MSG_EMPTY, CH_API),
	MAL("basic password too long", "api-key", "", ":" A512 "a", MSG_LONG,
	    CH_API),
	MAL("two authorization headers", "api-key",
	    "Authorization: Bearer x\r\n", ":" S_PLAIN,
	    "the Authorization header appears more than once", CH_API),

	/* Invalid. */
	NO("unknown key", "api-key", XKEY(S_UNKNOWN), NULL, 401,
	    "invalid_credentials", MSG_INVALID, CH_API, NULL),
	NO("other app", "app-key", XAPP("other") XKEY(S_APP), NULL, 401,
	    "invalid_credentials", MSG_OTHERAPP, CH_APP, ID_APP),
	NO("app id differs in case", "app-key", XAPP("Shop") XKEY(S_APP), NULL,
	    401, "invalid_credentials", MSG_OTHERAPP, CH_APP, ID_APP),
	NO("app id prefix", "app-key", XAPP("sho") XKEY(S_APP), NULL,
	    401, "invalid_credentials", MSG_OTHERAPP, CH_APP, ID_APP),
	NO("key without app on app-key", "app-key", XAPP("shop") XKEY(S_PLAIN),
	    NULL, 401, "invalid_credentials", MSG_OTHERAPP, CH_APP, ID_PLAIN),
	NO("other app by basic", "app-key", "", "other:" S_APP, 401,
	    "invalid_credentials", MSG_OTHERAPP, CH_APP, ID_APP),
	{ .name = "old secret at end of grace", .auth = "api-key",
	  .headers = XKEY(S_OLD), .now = T_GRACE, .status = 401,
	  .code = "invalid_credentials", .message = MSG_INVALID,
	  .challenge = CH_API, .key = ID_REGEN },
	{ .name = "old secret during grace", .auth = "api-key",
	  .headers = XKEY(S_OLD), .now = T_GRACE - 1, .status = 0,
	  .scheme = API, .key = ID_REGEN },
	{ .name = "new secret after grace", .auth = "api-key",
	  .headers = XKEY(S_NEW), .now = T_GRACE + 1, .status = 0,
	  .scheme = API, .key = ID_REGEN },

	/* Disabled, expired. */
	NO("disabled", "api-key", XKEY(S_DIS), NULL, 401, "disabled_key",
	    "this API key is disabled", CH_API, ID_DIS),
	{ .name = "expired at expires_at", .auth = "api-key",
	  .headers = XKEY(S_EXP), .now = T_EXP, .status = 401,
	  .code = "expired_credentials", .message = "this API key has expired",
	  .challenge = CH_API, .key = ID_EXP },
	{ .name = "valid just before expires_at", .auth = "api-key",
	  .headers = XKEY(S_EXP), .now = T_EXP - 1, .status = 0,
	  .scheme = API, .key = ID_EXP },

	/* Scopes: all required; the first missing one is named. */
	{ .name = "scope missing", .auth = "api-key", .scopes = "read,admin",
	  .headers = XKEY(S_PLAIN), .status = 403, .code = "insufficient_scope",
	  .message = "this route needs the scope \"admin\"", .key = ID_PLAIN },
	{ .name = "first missing scope named", .auth = "api-key",
	  .scopes = "read,delete,admin", .headers = XKEY(S_PLAIN),
	  .status = 403, .code = "insufficient_scope",
	  .message = "this route needs the scope \"delete\"", .key = ID_PLAIN },
	{ .name = "scope is a whole word", .auth = "api-key", .scopes = "rea",
	  .headers = XKEY(S_PLAIN), .status = 403, .code = "insufficient_scope",
	  .message = "this route needs the scope \"rea\"", .key = ID_PLAIN },
	{ .name = "key without scopes", .auth = "api-key", .scopes = "read",
	  .headers = XKEY(S_EXP), .status = 403, .code = "insufficient_scope",
	  .message = "this route needs the scope \"read\"", .key = ID_EXP },
	OKK("all scopes present", "api-key", "write,read", XKEY(S_PLAIN), API,
	    ID_PLAIN),
	OKK("one scope present", "api-key", "write", XKEY(S_PLAIN), API,
	    ID_PLAIN),

	/* Anonymous and deny. */
	OKK("anonymous fallback", "api-key,anonymous", NULL, "", ANON, NULL),
	NO("bad key is not anonymous", "api-key,anonymous", XKEY(S_UNKNOWN),
	    NULL, 401, "invalid_credentials", MSG_INVALID, CH_API, NULL),
	NO("malformed key is not anonymous", "api-key,anonymous",
	    "X-API-KEY:\r\n", NULL, 401, "malformed_credentials", MSG_EMPTY,
	    CH_API, NULL),
	NO("disabled key is not anonymous", "api-key,anonymous", XKEY(S_DIS),
	    NULL, 401, "disabled_key", "this API key is disabled", CH_API,
	    ID_DIS),
	OKK("key on api-key,anonymous", "api-key,anonymous", NULL,
	    XKEY(S_PLAIN), API, ID_PLAIN),
	OKK("anonymous first wins", "anonymous,api-key", NULL, XKEY(S_UNKNOWN),
	    ANON, NULL),
	NO("deny", "deny", XKEY(S_PLAIN), NULL, 403, "forbidden", MSG_DENY,
	    NULL, NULL),
	NO("deny after api-key without key", "api-key,deny", "", NULL, 403,
	    "forbidden", MSG_DENY, NULL, NULL),
	OKK("api-key before deny", "api-key,deny", NULL, XKEY(S_PLAIN), API,
	    ID_PLAIN),
	NO("no schemes at all", "", "", NULL, 403, "forbidden", MSG_DENY,
	    NULL, NULL),

	/* Header names, custom header, Basic. */
	OKK("lower-case header", "api-key", NULL, "x-api-key: " S_PLAIN "\r\n",
	    API, ID_PLAIN),
	OKK("mixed-case header", "api-key", NULL, "X-Api-Key:  " S_PLAIN
	    "  \r\n", API, ID_PLAIN),
	{ .name = "custom header", .auth = "api-key", .headers = "X-My-Key: "
	  S_PLAIN "\r\n", .keyhdr = "x-my-key", .status = 0, .scheme = API,
	  .key = ID_PLAIN },
	{ .name = "basic empty user", .auth = "api-key", .headers = "",
	  .basic = ":" S_PLAIN, .status = 0, .scheme = API, .key = ID_PLAIN },
	{ .name = "basic app", .auth = "app-key", .headers = "",
	  .basic = "shop:" S_APP, .status = 0, .scheme = APP, .key = ID_APP },
	{ .name = "basic app on api-key,app-key", .auth = "api-key,app-key",
	  .headers = "", .basic = "shop:" S_APP, .status = 0, .scheme = APP,
	  .key = ID_APP },
	{ .name = "basic empty user on api-key,app-key",
	  .auth = "api-key,app-key", .headers = "", .basic = ":" S_PLAIN,
	  .status = 0, .scheme = API, .key = ID_PLAIN },
	{ .name = "basic empty user on app-key,api-key",
	  .auth = "app-key,api-key", .headers = "", .basic = ":" S_PLAIN,
	  .status = 0, .scheme = API, .key = ID_PLAIN },
	OKK("basic scheme name case-insensitive", "api-key", NULL,
	    "Authorization: bASIC   OmxpdmVfUHEzWnQ4THcwWHYyTmM2SGI5UmsxWW00U2"
	    "Q3R2Y1SmE=\r\n", API, ID_PLAIN),
	{ .name = "key header wins over basic for the upstream",
	  .auth = "api-key", .headers = XKEY(S_PLAIN), .basic = "user:pw",
	  .status = 0, .scheme = API, .key = ID_PLAIN },
	OKK("x-app-id and key", "app-key", NULL, XAPP("shop") XKEY(S_APP), APP,
	    ID_APP),
	OKK("app key on api-key route ignores x-app-id", "api-key,app-key",
	    NULL, XAPP("other") XKEY(S_APP), API, ID_APP),
	OKK("app key on app-key,api-key route", "app-key,api-key", NULL,
	    XAPP("shop") XKEY(S_APP), APP, ID_APP),
	OKK("app key without x-app-id on api-key", "api-key", NULL, XKEY(S_APP),
	    API, ID_APP),
};

/*
 * auth_verify_target() on a request head held in a buffer of exactly its
 * size, as the connection's input holds it: no NUL after the last header
 * value, so reading a value past its length is an ASan error.
 */
static void
test_verify_target(void **state)
{
	static const struct {
		const char	*headers;
		int		 rv;
		int		 mbit;
		const char	*path;
	} t[] = {
		{ "X-Original-URI: /a/b\r\n", 0, HTTP_M_GET, "/a/b" },
		{ "X-Original-Method: POST\r\nX-Original-URI: /a\r\n", 0,
		    HTTP_M_POST, "/a" },
		{ "X-Original-URI: /a?b=1?c\r\nX-Original-Method: HEAD\r\n", 0,
		    HTTP_M_HEAD, "/a" },
		{ "x-original-uri: /?\r\n", 0, HTTP_M_GET, "/" },
		{ "X-Original-URI: /x\r\nX-Original-Method: PURGE\r\n", 0,
		    HTTP_M_OTHER, "/x" },
		{ "X-Original-URI: a/b\r\n", -1, 0, NULL },
		{ "X-Original-URI:\r\n", -1, 0, NULL },
		{ "X-Original-Method: GET\r\n", -1, 0, NULL },
		{ "X-Original-URI: /a\r\nX-Original-Method: G,T\r\n", -1, 0,
		    NULL },
		{ "X-Original-URI: /a\r\nX-Original-URI: /b\r\n", -1, 0, NULL },
		{ "X-Original-Method: GET\r\nX-Original-URI: /a\r\n"
		    "X-Original-Method: POST\r\n", -1, 0, NULL },
	};
	struct http_msg	 m;
	char		 head[512], *buf;
	const char	*path, *cause;
	size_t		 i, len, plen;
	int		 mbit;

	(void)state;
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		len = (size_t)snprintf(head, sizeof(head), "GET /v HTTP/1.1\r\n"
		    "Host: a\r\n%s\r\n", t[i].headers);
		assert_non_null(buf = malloc(len));
		memcpy(buf, head, len);
		http_msg_init(&m);
		assert_int_equal(http_parse_request(&m, buf, len, NULL), 1);
		cause = NULL;
		if (auth_verify_target(&m, &mbit, &path, &plen, &cause) !=
		    t[i].rv)
			fail_msg("%s: rv != %d", t[i].headers, t[i].rv);
		if (t[i].rv == -1)
			assert_non_null(cause);
		else {
			assert_int_equal(mbit, t[i].mbit);
			assert_int_equal(plen, strlen(t[i].path));
			assert_memory_equal(path, t[i].path, plen);
		}
		free(buf);
	}
}

/* Does the message contain any test secret or a long key value? */
static int
message_leaks(const char *msg)
{
	size_t	 i;

	for (i = 0; i < sizeof(tkeys) / sizeof(tkeys[0]); i++) {
		if (strstr(msg, tkeys[i].secret + 5) != NULL)
			return (1);
		if (tkeys[i].old != NULL && strstr(msg, tkeys[i].old + 5))
			return (1);
	}
	return (strstr(msg, "Pq3Zt8") != NULL || strstr(msg, "aaaa") != NULL ||
	    strstr(msg, "Unkn0wn") != NULL || strstr(msg, "OmF") != NULL);
}

/* Run one case and compare everything a client and the log would see. */
static void
run_case(const struct acase *t)
{
	struct auth_result	 ar;
	struct http_msg		 m;
	struct route		 r;
	char			 buf[4096], scopes[128];
	int			 rv;

	route_make(&r, t->auth, t->scopes, scopes, sizeof(scopes));
	request(&m, buf, sizeof(buf), t->headers, t->basic, t->basiclen);
	memset(&ar, 0xa5, sizeof(ar));
	rv = decide(&r, &m, &ks, t->keyhdr ? t->keyhdr : "x-api-key",
	    t->now ? t->now : NOW, NULL, NULL, &ar);
	if (rv != t->status || ar.ar_status != t->status)
		fail_msg("%s: status %d (%s: %s), want %d", t->name, rv,
		    ar.ar_code ? ar.ar_code : "-", ar.ar_message, t->status);
	if (t->status == 0) {
		if (ar.ar_code != NULL)
			fail_msg("%s: code set when allowed", t->name);
		if (t->scheme != 0 && ar.ar_scheme != t->scheme)
			fail_msg("%s: scheme %d, want %d", t->name,
			    ar.ar_scheme, t->scheme);
	} else {
		if (ar.ar_code == NULL || strcmp(ar.ar_code, t->code) != 0)
			fail_msg("%s: code %s, want %s", t->name,
			    ar.ar_code ? ar.ar_code : "NULL", t->code);
		if (strcmp(ar.ar_message, t->message) != 0)
			fail_msg("%s: message \"%s\", want \"%s\"", t->name,
			    ar.ar_message, t->message);
		if (message_leaks(ar.ar_message))
			fail_msg("%s: message leaks the key", t->name);
	}
	if (t->status != 401 && ar.ar_challenge != NULL)
		fail_msg("%s: challenge on a %d", t->name, t->status);
	if (t->status == 401 && (ar.ar_challenge == NULL ||
	    strcmp(ar.ar_challenge, t->challenge) != 0))
		fail_msg("%s: challenge \"%s\", want \"%s\"", t->name,
		    ar.ar_challenge ? ar.ar_challenge : "NULL", t->challenge);
	if (t->key == NULL && ar.ar_found != 0)
		fail_msg("%s: found key %s", t->name, ar.ar_key.k_id);
	if (t->key != NULL && (ar.ar_found != 1 ||
	    strcmp(ar.ar_key.k_id, t->key) != 0))
		fail_msg("%s: key %s, want %s", t->name,
		    ar.ar_found == 1 ? ar.ar_key.k_id : "none", t->key);
}

/* Every row of the table. */
static void
test_table(void **state)
{
	size_t	 i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_case(&cases[i]);
}

/* Slot number of key id (looked up through its secret). */
static uint32_t
slot_of(const char *secret)
{
	struct ks_key	 k;
	uint8_t		 d[KS_DIGEST_LEN];
	uint32_t	 slot;
	int		 old;

	secret_digest(secret, strlen(secret), d);
	assert_int_equal(keystore_find_digest(&ks, d, &k, &slot, &old), KS_OK);
	return (slot);
}

/* Sum of all slots' counters. */
static void
usage_total(uint64_t *allowed, uint64_t *refused)
{
	uint64_t	 a, r;
	int64_t		 last;
	uint32_t	 i;

	*allowed = *refused = 0;
	for (i = 0; i < MAXKEYS; i++) {
		keystore_usage(&ks, i, &a, &r, &last);
		*allowed += a;
		*refused += r;
	}
}

/* auth_check on route auth/scopes with headers at now; returns status. */
static int
check(const char *auth, const char *scopes, const char *headers,
    int64_t now)
{
	struct auth_result	 ar;
	struct http_msg		 m;
	struct route		 r;
	char			 buf[1024], sc[64];

	route_make(&r, auth, scopes, sc, sizeof(sc));
	request(&m, buf, sizeof(buf), headers, NULL, 0);
	return (decide(&r, &m, &ks, "x-api-key", now, NULL, NULL, &ar));
}

/*
 * A use is counted on the key's slot, allowed or refused, whenever a key
 * was found; requests without a key found count nothing anywhere.
 */
static void
test_usage(void **state)
{
	struct auth_result	 ar;
	uint64_t		 a0, r0, a1, r1, ta0, tr0, ta1, tr1;
	int64_t			 last;
	uint32_t		 plain = slot_of(S_PLAIN), app = slot_of(S_APP);

	(void)state;
	keystore_usage(&ks, plain, &a0, &r0, &last);
	assert_int_equal(check("api-key", NULL, XKEY(S_PLAIN), NOW + 10), 0);
	assert_int_equal(check("api-key", NULL, XKEY(S_PLAIN), NOW + 20), 0);
	assert_int_equal(check("api-key", "admin", XKEY(S_PLAIN), NOW + 30),
	    403);
	keystore_usage(&ks, plain, &a1, &r1, &last);
	assert_int_equal(a1 - a0, 2);
	assert_int_equal(r1 - r0, 1);
	assert_int_equal(last, NOW + 30);

	keystore_usage(&ks, app, &a0, &r0, &last);
	assert_int_equal(check("app-key", NULL, XAPP("other") XKEY(S_APP),
	    NOW + 40), 401);
	keystore_usage(&ks, app, &a1, &r1, &last);
	assert_int_equal(a1 - a0, 0);
	assert_int_equal(r1 - r0, 1);

	usage_total(&ta0, &tr0);
	assert_int_equal(check("api-key", NULL, XKEY(S_UNKNOWN), NOW), 401);
	assert_int_equal(check("api-key", NULL, "X-API-KEY: a b\r\n", NOW),
	    401);
	assert_int_equal(check("api-key", NULL, "", NOW), 401);
	assert_int_equal(check("api-key,anonymous", NULL, "", NOW), 0);
	assert_int_equal(auth_check_secret(&ks, S_PLAIN, strlen(S_PLAIN),
	    NULL, NOW, &ar), 0);
	assert_int_equal(auth_check_secret(&ks, S_DIS, strlen(S_DIS),
	    NULL, NOW, &ar), 401);
	usage_total(&ta1, &tr1);
	assert_int_equal(ta1, ta0);
	assert_int_equal(tr1, tr0);
}

/* No key store: every key is invalid, anonymous still works. */
static void
test_no_keystore(void **state)
{
	struct auth_result	 ar;
	struct http_msg		 m;
	struct route		 r;
	char			 buf[512];

	(void)state;
	route_make(&r, "api-key,anonymous", NULL, NULL, 0);
	request(&m, buf, sizeof(buf), XKEY(S_PLAIN), NULL, 0);
	assert_int_equal(decide(&r, &m, NULL, "x-api-key", NOW, NULL, NULL, &ar), 401);
	assert_string_equal(ar.ar_code, "invalid_credentials");
	assert_int_equal(ar.ar_found, 0);
	request(&m, buf, sizeof(buf), "", NULL, 0);
	assert_int_equal(decide(&r, &m, NULL, "x-api-key", NOW, NULL, NULL, &ar), 0);
	assert_int_equal(ar.ar_scheme, ROUTE_AUTH_ANONYMOUS);
	assert_int_equal(auth_check_secret(NULL, S_PLAIN, strlen(S_PLAIN),
	    NULL, NOW, &ar), 401);
	assert_string_equal(ar.ar_code, "invalid_credentials");
}

/*
 * A slot left mid-write (odd seqlock, its writer dead) makes lookups of
 * that key answer 503 key_store_busy instead of guessing.
 */
static void
test_busy(void **state)
{
	struct auth_result	 ar;
	uint32_t		 slot = slot_of(S_PLAIN);

	(void)state;
	ks.ks_slots[slot].s_seq++;
	assert_int_equal(check("api-key", NULL, XKEY(S_PLAIN), NOW), 503);
	assert_int_equal(auth_check_secret(&ks, S_PLAIN, strlen(S_PLAIN),
	    NULL, NOW, &ar), 503);
	assert_string_equal(ar.ar_code, "key_store_busy");
	assert_string_equal(ar.ar_message,
	    "the key store is being repaired; retry");
	assert_null(ar.ar_challenge);
	assert_int_equal(ar.ar_found, 0);
	ks.ks_slots[slot].s_seq++;
	assert_int_equal(check("api-key", NULL, XKEY(S_PLAIN), NOW), 0);
}

/* auth_check_secret: the api-key checks on a bare secret. */
static void
test_check_secret(void **state)
{
	static const struct {
		const char	*secret;
		const char	*app;
		int64_t		 now;
		int		 status;
		const char	*code;
		const char	*key;
	} t[] = {
		{ S_PLAIN, NULL, NOW, 0, NULL, ID_PLAIN },
		{ S_APP, NULL, NOW, 0, NULL, ID_APP },
		{ S_APP, "shop", NOW, 0, NULL, ID_APP },
		{ S_APP, "other", NOW, 401, "invalid_credentials", ID_APP },
		{ S_PLAIN, "shop", NOW, 401, "invalid_credentials", ID_PLAIN },
		{ S_UNKNOWN, NULL, NOW, 401, "invalid_credentials", NULL },
		{ S_DIS, NULL, NOW, 401, "disabled_key", ID_DIS },
		{ S_EXP, NULL, T_EXP - 1, 0, NULL, ID_EXP },
		{ S_EXP, NULL, T_EXP, 401, "expired_credentials", ID_EXP },
		{ S_OLD, NULL, T_GRACE - 1, 0, NULL, ID_REGEN },
		{ S_OLD, NULL, T_GRACE, 401, "invalid_credentials", ID_REGEN },
		{ "", NULL, NOW, 401, "malformed_credentials", NULL },
		{ " " S_PLAIN, NULL, NOW, 401, "malformed_credentials", NULL },
		{ S_PLAIN "\n", NULL, NOW, 401, "malformed_credentials", NULL },
		{ A512 "a", NULL, NOW, 401, "malformed_credentials", NULL },
		{ A512, NULL, NOW, 401, "invalid_credentials", NULL },
		{ S_APP, "", NOW, 401, "malformed_credentials", NULL },
		{ S_APP, "sh op", NOW, 401, "malformed_credentials", NULL },
	};
	struct auth_result	 ar;
	size_t			 i;
	int			 rv;

	(void)state;
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		rv = auth_check_secret(&ks, t[i].secret, strlen(t[i].secret),
		    t[i].app, t[i].now, &ar);
		if (rv != t[i].status || ar.ar_status != t[i].status)
			fail_msg("row %zu: status %d, want %d", i, rv,
			    t[i].status);
		if (t[i].code == NULL ? ar.ar_code != NULL :
		    ar.ar_code == NULL || strcmp(ar.ar_code, t[i].code) != 0)
			fail_msg("row %zu: code %s", i, ar.ar_code);
		if (t[i].key == NULL ? ar.ar_found != 0 : ar.ar_found != 1 ||
		    strcmp(ar.ar_key.k_id, t[i].key) != 0)
			fail_msg("row %zu: wrong key found", i);
		if (message_leaks(ar.ar_message))
			fail_msg("row %zu: message leaks the key", i);
	}
	/* Only the given length counts. */
	assert_int_equal(auth_check_secret(&ks, S_PLAIN "junk",
	    strlen(S_PLAIN), NULL, NOW, &ar), 0);
}

/* auth_missing_scope over lists with odd spacing. */
static void
test_missing_scope(void **state)
{
	struct route	 r;
	char		 sc[64];

	(void)state;
	route_make(&r, "api-key", "read,write", sc, sizeof(sc));
	assert_null(auth_missing_scope(&r, "read write"));
	assert_null(auth_missing_scope(&r, "write read admin"));
	assert_null(auth_missing_scope(&r, "  write   read  "));
	assert_string_equal(auth_missing_scope(&r, ""), "read");
	assert_string_equal(auth_missing_scope(&r, "read"), "write");
	assert_string_equal(auth_missing_scope(&r, "reader writer"), "read");
	assert_string_equal(auth_missing_scope(&r, "rea write"), "read");
	route_make(&r, "api-key", NULL, NULL, 0);
	assert_null(auth_missing_scope(&r, ""));
}

/* Allowed results of auth_check for headers on route auth. */
static void
allowed(const char *auth, const char *headers, struct auth_result *ar)
{
	struct http_msg		 m;
	struct route		 r;
	char			 buf[1024];

	route_make(&r, auth, NULL, NULL, 0);
	request(&m, buf, sizeof(buf), headers, NULL, 0);
	assert_int_equal(decide(&r, &m, &ks, "x-api-key", NOW, NULL, NULL, ar), 0);
}

/* Identity headers: exact text, optional lines, size and byte checks. */
static void
test_identity_headers(void **state)
{
	static const char plain[] = "X-Consumer-Id: alice\r\n"
	    "X-Key-Id: " ID_PLAIN "\r\nX-Scopes: read write\r\n"
	    "X-Auth-Scheme: api-key\r\n";
	static const char app[] = "X-Consumer-Id: bob\r\n"
	    "X-Key-Id: " ID_APP "\r\nX-App-Id: shop\r\nX-Scopes: read\r\n"
	    "X-Auth-Scheme: app-key\r\n";
	static const char bare[] = "X-Consumer-Id: erin\r\n"
	    "X-Key-Id: " ID_EXP "\r\nX-Auth-Scheme: api-key\r\n";
	struct auth_result	 ar;
	char			 buf[1024];

	(void)state;
	allowed("api-key", XKEY(S_PLAIN), &ar);
	assert_int_equal(auth_identity_headers(&ar, buf, sizeof(buf)),
	    sizeof(plain) - 1);
	assert_string_equal(buf, plain);
	/* Room for the text and its NUL, and not one byte less. */
	assert_int_equal(auth_identity_headers(&ar, buf, sizeof(plain)),
	    sizeof(plain) - 1);
	assert_int_equal(auth_identity_headers(&ar, buf, sizeof(plain) - 1),
	    0);
	assert_int_equal(auth_identity_headers(&ar, buf, 0), 0);

	allowed("app-key", XAPP("shop") XKEY(S_APP), &ar);
	assert_int_equal(auth_identity_headers(&ar, buf, sizeof(buf)),
	    sizeof(app) - 1);
	assert_string_equal(buf, app);

	allowed("api-key", XKEY(S_EXP), &ar);
	assert_int_equal(auth_identity_headers(&ar, buf, sizeof(buf)),
	    sizeof(bare) - 1);
	assert_string_equal(buf, bare);

	allowed("api-key,anonymous", "", &ar);
	assert_int_equal(auth_identity_headers(&ar, buf, sizeof(buf)), 26);
	assert_string_equal(buf, "X-Auth-Scheme: anonymous\r\n");

	/* A control character anywhere refuses the whole block. */
	allowed("api-key", XKEY(S_PLAIN), &ar);
	memcpy(ar.ar_key.k_owner, "al\r\nX-Evil: 1", 14);
	assert_int_equal(auth_identity_headers(&ar, buf, sizeof(buf)), 0);
	allowed("api-key", XKEY(S_PLAIN), &ar);
	ar.ar_key.k_scopes[2] = 0x7f;
	assert_int_equal(auth_identity_headers(&ar, buf, sizeof(buf)), 0);
	allowed("app-key", XAPP("shop") XKEY(S_APP), &ar);
	ar.ar_key.k_app[1] = '\t';
	assert_int_equal(auth_identity_headers(&ar, buf, sizeof(buf)), 0);

	/* Refused requests have no identity. */
	assert_int_equal(check("api-key", "admin", XKEY(S_PLAIN), NOW), 403);
	ar.ar_status = 403;
	assert_int_equal(auth_identity_headers(&ar, buf, sizeof(buf)), 0);
}

/*
 * Rate limits.  Each test uses its own stretch of time (T_RATE + n * 10
 * minutes), so the per-slot states left by one never matter to another.
 */
#define T_RATE		(NOW + 3600000)

static uint32_t		 rate_keys[RL_WINDOWS];
static uint32_t		 rate_anon[RL_WINDOWS];
static uint64_t		 rate_refused[3][RL_WINDOWS];	/* auth.h */

/* The limiter environment at now (monotonic ms) for client address ip. */
static void
rate_env(struct auth_rate *ra, int64_t now, const char *ip)
{
	size_t	 size = ratelimit_iptable_size(64);

	if (rate_ipregion == NULL) {
		assert_int_equal(posix_memalign(&rate_ipregion, 64, size), 0);
		memset(rate_ipregion, 0, size);
		ratelimit_iptable_init(rate_ipregion, 64, 42);
	}
	memset(ra, 0, sizeof(*ra));
	ra->ra_keys = rate_keys;
	ra->ra_anonymous = rate_anon;
	ra->ra_ips = rate_ipregion;
	ra->ra_refused = &rate_refused[0][0];
	ra->ra_ip = ip;
	ra->ra_iplen = 4;
	ra->ra_now = now;
}

/* auth_check on route r with headers, limited, at now from ip. */
static int
rated(const struct route *r, const char *headers, int64_t now,
    const char *ip, struct auth_result *ar)
{
	struct auth_rate	 ra;
	struct http_msg		 m;
	char			 buf[1024];

	rate_env(&ra, now, ip);
	request(&m, buf, sizeof(buf), headers, NULL, 0);
	return (decide(r, &m, &ks, "x-api-key", NOW, &ra, NULL, ar));
}

/* The headers of ar as a string (static buffer). */
static const char *
rate_headers(const struct auth_result *ar)
{
	static char	 buf[AUTH_RATE_HEADERS_MAX + 1];
	size_t		 n;

	n = auth_rate_headers(ar, buf, sizeof(buf) - 1);
	buf[n] = '\0';
	return (buf);
}

/*
 * Keys: the configured limit, its headers, the 429 with Retry-After that
 * is exact, refusals counted per window and on the key, other keys and
 * non-key refusals untouched.
 */
static void
test_rate_keys(void **state)
{
	struct auth_result	 ar;
	struct route		 r;
	char			 sc[64];
	uint64_t		 a0, r0, a1, r1;
	int64_t			 t = T_RATE, last;
	uint32_t		 plain = slot_of(S_PLAIN);
	int			 i;

	(void)state;
	rate_keys[0] = 3;
	rate_keys[1] = 10;
	rate_keys[2] = 100;
	memset(rate_refused, 0, sizeof(rate_refused));
	route_make(&r, "api-key", NULL, sc, sizeof(sc));
	keystore_usage(&ks, plain, &a0, &r0, &last);
	assert_int_equal(rated(&r, XKEY(S_PLAIN), t, "AAAA", &ar), 0);
	assert_true(ar.ar_limited);
	assert_string_equal(rate_headers(&ar),
	    "RateLimit-Policy: 3;w=1, 10;w=10, 100;w=60\r\n"
	    "RateLimit-Limit: 3\r\nRateLimit-Remaining: 2\r\n"
	    "RateLimit-Reset: 1\r\n");
	for (i = 0; i < 2; i++)
		assert_int_equal(rated(&r, XKEY(S_PLAIN), t + 10, "AAAA", &ar), 0);
	assert_int_equal(ar.ar_rate.rr_remaining, 0);
	assert_int_equal(rated(&r, XKEY(S_PLAIN), t + 20, "AAAA", &ar), 429);
	assert_string_equal(ar.ar_code, "rate_limited");
	assert_string_equal(ar.ar_message,
	    "rate limit of 3 requests per 1s reached; retry in 1 s");
	assert_string_equal(rate_headers(&ar),
	    "RateLimit-Policy: 3;w=1, 10;w=10, 100;w=60\r\n"
	    "RateLimit-Limit: 3\r\nRateLimit-Remaining: 0\r\n"
	    "RateLimit-Reset: 1\r\nRetry-After: 1\r\n");
	assert_int_equal(rate_refused[0][0], 1);
	assert_int_equal(rate_refused[0][1] + rate_refused[0][2] +
	    rate_refused[1][0], 0);
	keystore_usage(&ks, plain, &a1, &r1, &last);
	assert_int_equal(a1 - a0, 3);
	assert_int_equal(r1 - r0, 1);
	/* Another key has its own counters. */
	assert_int_equal(rated(&r, XKEY(S_NEW), t + 30, "AAAA", &ar), 0);
	assert_int_equal(ar.ar_rate.rr_remaining, 2);
	/* Refusals before the limiter neither count nor carry headers. */
	assert_int_equal(rated(&r, XKEY(S_UNKNOWN), t + 30, "AAAA", &ar), 401);
	assert_false(ar.ar_limited);
	assert_string_equal(rate_headers(&ar), "");
	route_make(&r, "api-key", "admin", sc, sizeof(sc));
	assert_int_equal(rated(&r, XKEY(S_NEW), t + 30, "AAAA", &ar), 403);
	assert_false(ar.ar_limited);
	route_make(&r, "api-key", NULL, sc, sizeof(sc));
	assert_int_equal(rated(&r, XKEY(S_NEW), t + 40, "AAAA", &ar), 0);
	assert_int_equal(ar.ar_rate.rr_remaining, 1);
	/* Retry-After (1 s) is exact: still refused just before it. */
	assert_int_equal(rated(&r, XKEY(S_PLAIN), t + 998, "AAAA", &ar), 429);
	assert_int_equal(rated(&r, XKEY(S_PLAIN), t + 20 + 1000, "AAAA", &ar), 0);
	/* The 10 s window: 10 in all, then it names itself. */
	for (i = 0; i < 6; i++)
		assert_int_equal(rated(&r, XKEY(S_PLAIN), t + 2000 + i * 400,
		    "AAAA", &ar), 0);
	assert_int_equal(rated(&r, XKEY(S_PLAIN), t + 5000, "AAAA", &ar), 429);
	assert_int_equal(ar.ar_rate.rr_window, 1);
	assert_string_equal(ar.ar_message,
	    "rate limit of 10 requests per 10s reached; retry in 6 s");
	assert_int_equal(rate_refused[0][1], 1);
	/* No limit configured anywhere: not limited, no headers. */
	memset(rate_keys, 0, sizeof(rate_keys));
	assert_int_equal(rated(&r, XKEY(S_PLAIN), t + 5000, "AAAA", &ar), 0);
	assert_false(ar.ar_limited);
	/* No limiter at all (rate NULL). */
	assert_int_equal(check("api-key", NULL, XKEY(S_PLAIN), NOW), 0);
}

/*
 * Precedence per window: the key's own limit, then the route's rate=,
 * then rate_limit; rate=off turns everything off on the route.
 */
static void
test_rate_overrides(void **state)
{
	struct auth_result	 ar;
	struct route		 r;
	char			 sc[64];
	int64_t			 t = T_RATE + 600000;
	int			 i;

	(void)state;
	rate_keys[0] = 2;
	rate_keys[1] = 0;
	rate_keys[2] = 50;
	route_make(&r, "api-key", NULL, sc, sizeof(sc));
	/* The key's own 5/1s beats the configured 2/1s. */
	for (i = 0; i < 5; i++)
		assert_int_equal(rated(&r, XKEY(S_RATE), t, "AAAA", &ar), 0);
	assert_int_equal(rated(&r, XKEY(S_RATE), t, "AAAA", &ar), 429);
	assert_int_equal(ar.ar_rate.rr_limit, 5);
	/* A route's rate= beats rate_limit, not the key's own limit. */
	r.r_rate[0] = 4;
	r.r_rate[1] = 7;
	for (i = 0; i < 4; i++)
		assert_int_equal(rated(&r, XKEY(S_PLAIN), t + 1, "AAAA", &ar), 0);
	assert_string_equal(rate_headers(&ar),
	    "RateLimit-Policy: 4;w=1, 7;w=10, 50;w=60\r\n"
	    "RateLimit-Limit: 4\r\nRateLimit-Remaining: 0\r\n"
	    "RateLimit-Reset: 1\r\n");
	assert_int_equal(rated(&r, XKEY(S_PLAIN), t + 1, "AAAA", &ar), 429);
	assert_int_equal(rated(&r, XKEY(S_RATE), t + 2000, "AAAA", &ar), 0);
	assert_int_equal(ar.ar_limits.rl_limit[0], 5);
	assert_int_equal(ar.ar_limits.rl_limit[1], 7);
	/* rate=off: nothing limited, not even the key's own limit. */
	r.r_rate_off = 1;
	for (i = 0; i < 20; i++) {
		assert_int_equal(rated(&r, XKEY(S_RATE), t + 2000, "AAAA", &ar),
		    0);
		assert_false(ar.ar_limited);
	}
}

/*
 * Anonymous requests: per client address, anonymous_rate_limit or the
 * route's rate=; unlimited when neither is set or no address is known.
 */
static void
test_rate_anonymous(void **state)
{
	struct auth_result	 ar;
	struct route		 r;
	char			 sc[64];
	int64_t			 t = T_RATE + 1200000;

	(void)state;
	rate_keys[0] = 1;
	memset(rate_anon, 0, sizeof(rate_anon));
	memset(rate_refused, 0, sizeof(rate_refused));
	route_make(&r, "anonymous", NULL, sc, sizeof(sc));
	assert_int_equal(rated(&r, "", t, "AAAA", &ar), 0);
	assert_false(ar.ar_limited);
	rate_anon[0] = 2;
	assert_int_equal(rated(&r, "", t, "AAAA", &ar), 0);
	assert_int_equal(rated(&r, "", t, "AAAA", &ar), 0);
	/*
	 * In the same ms as the two admitted: they are counted through
	 * t + 1000, so 1 s is 1 ms short and Retry-After says 2.
	 */
	assert_int_equal(rated(&r, "", t, "AAAA", &ar), 429);
	assert_string_equal(ar.ar_message,
	    "rate limit of 2 requests per 1s reached; retry in 2 s");
	assert_int_equal(rated(&r, "", t + 1000, "AAAA", &ar), 429);
	assert_int_equal(rated(&r, "", t + 1001, "AAAA", &ar), 0);
	assert_int_equal(rate_refused[1][0], 2);
	assert_int_equal(rate_refused[0][0], 0);
	assert_int_equal(rated(&r, "", t, "BBBB", &ar), 0);	/* own counter */
	assert_int_equal(ar.ar_rate.rr_remaining, 1);
	/* A key on an api-key,anonymous route is limited as the key. */
	route_make(&r, "api-key,anonymous", NULL, sc, sizeof(sc));
	assert_int_equal(rated(&r, XKEY(S_NEW), t, "AAAA", &ar), 0);
	assert_int_equal(ar.ar_scheme, ROUTE_AUTH_API_KEY);
	assert_int_equal(ar.ar_rate.rr_limit, 1);
	/* rate= on an anonymous route, without anonymous_rate_limit. */
	memset(rate_anon, 0, sizeof(rate_anon));
	route_make(&r, "anonymous", NULL, sc, sizeof(sc));
	r.r_rate[0] = 1;
	assert_int_equal(rated(&r, "", t + 5000, "CCCC", &ar), 0);
	assert_int_equal(rated(&r, "", t + 5000, "CCCC", &ar), 429);
	/* No address (ra_ip NULL): not limited. */
	assert_int_equal(rated(&r, "", t + 5000, NULL, &ar), 0);
	assert_false(ar.ar_limited);
}

/*
 * JWT bearer tokens (the jwt scheme): providers A (index 0, route jwt:A)
 * and B (index 1) with their own EC keys, one worker state (jwtauth) with
 * both key sets, and tokens signed in the test (jwttest.c).  Times: NOW
 * in ms as auth_check() takes it, JNOW in s as the tokens say.
 */
#define JNOW		(NOW / 1000)
#define JISS_A		"https://a.example/"
#define JISS_B		"https://b.example/"
#define JAUD		"api://keygate"

static EVP_PKEY			*jk_a, *jk_b, *jk_evil;
static struct jwt_provider	 jprov[2];
static struct config		 jconf;
static struct auth_jwt		 jenv;
static void			*jwt_rateregion;	/* identities' table */

/* Provider i named name, issuing as iss, with A's mapping of "tid". */
static void
jwt_provider(int i, char *name, char *iss)
{
	static char	*aud = JAUD, *tid = "tid", *hdr = "X-Tenant-Id";
	struct jwt_provider *p = &jprov[i];

	jwtt_provider(p, i, name, iss, aud);
	if (i == 0) {
		p->jp_headers[0].hm_claim = tid;
		p->jp_headers[0].hm_header = hdr;
		p->jp_nheaders = 1;
	}
}

/* The JWT environment, made once (freed by jwt_env_free()). */
static void
jwt_env(void)
{
	struct jwk_set	*set;
	char		 err[256];

	if (jenv.aj_state != NULL)
		return;
	assert_non_null(jk_a = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"));
	assert_non_null(jk_b = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"));
	assert_non_null(jk_evil = EVP_PKEY_Q_keygen(NULL, NULL, "EC",
	    "P-256"));
	jwt_provider(0, "A", JISS_A);
	jwt_provider(1, "B", JISS_B);
	jconf.c_jwt = jprov;
	jconf.c_njwt = 2;
	assert_non_null(jenv.aj_state = jwtauth_new(&jconf, NULL));
	jenv.aj_mono = 1000;
	assert_non_null(set = calloc(1, sizeof(*set)));
	assert_int_equal(jwtt_jwks(set, err, sizeof(err), 1,
	    jwtt_jwk(jk_a, "a1", "")), 1);
	assert_int_equal(jwtauth_set_keys(jenv.aj_state, 0, set, 1), 0);
	assert_int_equal(jwtt_jwks(set, err, sizeof(err), 1,
	    jwtt_jwk(jk_b, "b1", "")), 1);
	assert_int_equal(jwtauth_set_keys(jenv.aj_state, 1, set, 1), 0);
	free(set);
}

/* Free what jwt_env() made. */
static void
jwt_env_free(void)
{
	jwtauth_free(jenv.aj_state);
	EVP_PKEY_free(jk_a);
	EVP_PKEY_free(jk_b);
	EVP_PKEY_free(jk_evil);
	free(jwt_rateregion);
}

/*
 * The header line "Authorization: Bearer <token>\r\n" (malloc'd) of a
 * token signed by pk as kid, from iss about sub with scopes scp (a JSON
 * value), until exp (s).
 */
static char *
jwt_bearer(EVP_PKEY *pk, const char *kid, const char *iss, const char *sub,
    const char *scp, int64_t exp)
{
	char	 h[64], p[512], *t, *line;

	snprintf(h, sizeof(h), "{\"alg\":\"ES256\",\"kid\":\"%s\"}", kid);
	snprintf(p, sizeof(p), "{\"iss\":\"%s\",\"aud\":\"" JAUD "\","
	    "\"sub\":\"%s\",\"exp\":%lld,\"iat\":%lld,\"scp\":%s,"
	    "\"tid\":\"t-1\"}", iss, sub, (long long)exp,
	    (long long)JNOW - 10, scp);
	t = jwtt_tok(pk, JWK_ALG_ES256, h, p);
	assert_non_null(line = malloc(strlen(t) + 32));
	snprintf(line, strlen(t) + 32, "Authorization: Bearer %s\r\n", t);
	free(t);
	return (line);
}

/* A's token for sub with scopes "read write", valid for 10 minutes. */
static char *
jwt_a(const char *sub)
{
	return (jwt_bearer(jk_a, "a1", JISS_A, sub, "\"read write\"",
	    JNOW + 600));
}

/* Fail if msg quotes any bearer token of the header lines h. */
static void
jwt_no_leak(const char *msg, const char *h)
{
	const char	*t;

	while ((t = strstr(h, "Bearer ")) != NULL) {
		t += strlen("Bearer ");
		h = t + strcspn(t, "\r");
		jwtt_no_leak(msg, t, (size_t)(h - t));
	}
}

/*
 * auth_check() with the JWT environment for headers on route auth with
 * scopes, limited by ra (or not: NULL).  A refusal's message and
 * challenge must not quote the token.
 */
static int
jwt_check(const char *auth, const char *scopes, const char *headers,
    const struct auth_rate *ra, struct auth_result *ar)
{
	struct http_msg		 m;
	struct route		 r;
	char			 buf[4096], sc[64];
	int			 rv;

	route_make(&r, auth, scopes, sc, sizeof(sc));
	request(&m, buf, sizeof(buf), headers, NULL, 0);
	rv = decide(&r, &m, &ks, "x-api-key", NOW, ra, &jenv, ar);
	if (rv != 0) {
		jwt_no_leak(ar->ar_message, headers);
		if (ar->ar_challenge != NULL)
			jwt_no_leak(ar->ar_challenge, headers);
	}
	return (rv);
}

/*
 * An allowed token: the identity headers of its subject, scopes and
 * mappings (no key id); a missing scope: 403 with its RFC 6750 challenge.
 */
static void
test_jwt_allowed(void **state)
{
	static const char want[] = "X-Consumer-Id: subj-ok\r\n"
	    "X-Scopes: read write\r\nX-Tenant-Id: t-1\r\n"
	    "X-Auth-Scheme: jwt\r\n";
	struct auth_result	 ar;
	char			 buf[1024], *h;

	(void)state;
	jwt_env();
	h = jwt_a("subj-ok");
	assert_int_equal(jwt_check("jwt", "read", h, NULL, &ar), 0);
	assert_int_equal(ar.ar_scheme, ROUTE_AUTH_JWT);
	assert_int_equal(ar.ar_jwt_found, 1);
	assert_int_equal(ar.ar_found, 0);
	assert_null(ar.ar_code);
	assert_null(ar.ar_challenge);
	assert_int_equal(auth_identity_headers(&ar, buf, sizeof(buf)),
	    sizeof(want) - 1);
	assert_string_equal(buf, want);
	assert_null(strstr(buf, "X-Key-Id"));
	/* jwt:A and a list with a key scheme first: the same. */
	assert_int_equal(jwt_check("api-key,jwt:A", "write", h, NULL, &ar),
	    0);
	assert_int_equal(ar.ar_scheme, ROUTE_AUTH_JWT);

	assert_int_equal(jwt_check("jwt", "read,admin", h, NULL, &ar), 403);
	assert_string_equal(ar.ar_code, "insufficient_scope");
	assert_string_equal(ar.ar_challenge, "Bearer realm=\"keygate\", "
	    "error=\"insufficient_scope\", scope=\"admin\", "
	    "error_description=\"this route needs the scope 'admin'\"");
	assert_int_equal(auth_identity_headers(&ar, buf, sizeof(buf)), 0);
	free(h);
}

/* The description of a bearer challenge: after its prefix, no quote. */
static void
jwt_invalid_token(const struct auth_result *ar, const char *code)
{
	static const char pre[] = "Bearer realm=\"keygate\", "
	    "error=\"invalid_token\", error_description=\"";
	const char	*d;

	assert_int_equal(ar->ar_status, 401);
	assert_string_equal(ar->ar_code, code);
	assert_non_null(ar->ar_challenge);
	if (strncmp(ar->ar_challenge, pre, sizeof(pre) - 1) != 0)
		fail_msg("challenge \"%s\"", ar->ar_challenge);
	d = ar->ar_challenge + sizeof(pre) - 1;
	assert_true(strlen(d) > 1);
	assert_ptr_equal(strchr(d, '"'), d + strlen(d) - 1);
}

/* Refused tokens: 401 with invalid_token, the right code, no leak. */
static void
test_jwt_refused(void **state)
{
	struct auth_result	 ar;
	char			*bad, *old, *two, *a, *b, *t, *none;

	(void)state;
	jwt_env();
	bad = jwt_bearer(jk_evil, "a1", JISS_A, "subj-bad", "\"read\"",
	    JNOW + 600);
	old = jwt_bearer(jk_a, "a1", JISS_A, "subj-old", "\"read\"",
	    JNOW - 3600);
	a = jwt_a("subj-a");
	b = jwt_bearer(jk_b, "b1", JISS_B, "subj-b", "\"read\"", JNOW + 600);
	assert_non_null(two = malloc(strlen(a) + strlen(b) + 1));
	snprintf(two, strlen(a) + strlen(b) + 1, "%s%s", a, b);
	t = jwtt_tok_sig(NULL, 0, "{\"alg\":\"none\"}", "{\"iss\":\""
	    JISS_A "\"}", 0, (const uint8_t *)"", 0);
	assert_non_null(none = malloc(strlen(t) + 32));
	snprintf(none, strlen(t) + 32, "Authorization: Bearer %s\r\n", t);
	free(t);

	assert_int_equal(jwt_check("jwt", NULL, bad, NULL, &ar), 401);
	jwt_invalid_token(&ar, "invalid_credentials");
	assert_int_equal(jwt_check("jwt", NULL, old, NULL, &ar), 401);
	jwt_invalid_token(&ar, "expired_credentials");
	assert_int_equal(jwt_check("jwt", NULL, two, NULL, &ar), 401);
	jwt_invalid_token(&ar, "malformed_credentials");
	assert_string_equal(ar.ar_message,
	    "the Authorization header appears more than once");
	assert_int_equal(jwt_check("jwt", NULL,
	    "Authorization: Bearer e30.e30\r\n", NULL, &ar), 401);
	jwt_invalid_token(&ar, "malformed_credentials");
	/* A reason with quotes: none of them in the description. */
	assert_int_equal(jwt_check("jwt", NULL, none, NULL, &ar), 401);
	jwt_invalid_token(&ar, "invalid_credentials");
	assert_non_null(strchr(ar.ar_message, '"'));
	/* A's token on a route of B (and keys): another provider's. */
	assert_int_equal(jwt_check("jwt:B,api-key", NULL, a, NULL, &ar), 401);
	jwt_invalid_token(&ar, "invalid_credentials");
	assert_non_null(strstr(ar.ar_message, "does not accept"));
	assert_int_equal(jwt_check("jwt:B", NULL, b, NULL, &ar), 0);
	/* The key path of an api-key,jwt route still works. */
	assert_int_equal(jwt_check("api-key,jwt", NULL, XKEY(S_PLAIN), NULL,
	    &ar), 0);
	assert_int_equal(ar.ar_scheme, ROUTE_AUTH_API_KEY);
	assert_string_equal(ar.ar_key.k_id, ID_PLAIN);
	assert_int_equal(jwt_check("api-key,jwt", NULL, XKEY(S_UNKNOWN), NULL,
	    &ar), 401);
	assert_string_equal(ar.ar_challenge, CH_API ", Bearer "
	    "realm=\"keygate\"");
	free(bad);
	free(old);
	free(none);
	free(two);
	free(a);
	free(b);
}

/* The limiter for JWT identities at now (ms), refusals counted. */
static void
jwt_rate_env(struct auth_rate *ra, int64_t now)
{
	size_t	 size = ratelimit_iptable_size(64);

	if (jwt_rateregion == NULL) {
		assert_int_equal(posix_memalign(&jwt_rateregion, 64, size),
		    0);
		memset(jwt_rateregion, 0, size);
		ratelimit_iptable_init(jwt_rateregion, 64, 7);
	}
	rate_env(ra, now, NULL);
	ra->ra_jwts = jwt_rateregion;
}

/* One limited request of subject sub on route auth at now: the status. */
static int
jwt_rated(const char *auth, int rate, const char *sub, int64_t now,
    struct auth_result *ar)
{
	struct auth_rate	 ra;
	struct http_msg		 m;
	struct route		 r;
	char			 buf[4096], *h = jwt_a(sub);
	int			 rv;

	jwt_rate_env(&ra, now);
	route_make(&r, auth, NULL, NULL, 0);
	r.r_rate[0] = (uint32_t)rate;
	request(&m, buf, sizeof(buf), h, NULL, 0);
	rv = decide(&r, &m, &ks, "x-api-key", NOW, &ra, &jenv, ar);
	free(h);
	return (rv);
}

/*
 * Per identity: the provider's rate= beats the route's, which beats
 * rate_limit; rate=off on the provider: not limited; the third request
 * in a window of 2 is 429, counted as a JWT refusal; subjects apart.
 */
static void
test_jwt_rate(void **state)
{
	struct auth_result	 ar;
	int64_t			 t = T_RATE + 3600000;
	int			 i;

	(void)state;
	jwt_env();
	memset(rate_keys, 0, sizeof(rate_keys));
	memset(rate_refused, 0, sizeof(rate_refused));
	/* Nothing configured: not limited. */
	assert_int_equal(jwt_rated("jwt", 0, "subj-r0", t, &ar), 0);
	assert_false(ar.ar_limited);
	rate_keys[0] = 5;
	assert_int_equal(jwt_rated("jwt", 0, "subj-r1", t, &ar), 0);
	assert_true(ar.ar_limited);
	assert_int_equal(ar.ar_limits.rl_limit[0], 5);
	assert_int_equal(jwt_rated("jwt", 3, "subj-r2", t, &ar), 0);
	assert_int_equal(ar.ar_limits.rl_limit[0], 3);
	jprov[0].jp_rate[0] = 2;
	assert_int_equal(jwt_rated("jwt", 3, "subj-r3", t, &ar), 0);
	assert_int_equal(ar.ar_limits.rl_limit[0], 2);
	assert_int_equal(jwt_rated("jwt", 3, "subj-r3", t, &ar), 0);
	assert_int_equal(jwt_rated("jwt", 3, "subj-r3", t, &ar), 429);
	assert_string_equal(ar.ar_code, "rate_limited");
	assert_null(ar.ar_challenge);
	assert_int_equal(rate_refused[2][0], 1);
	assert_int_equal(rate_refused[0][0] + rate_refused[1][0], 0);
	/* Another subject has its own count; the first one's window ends. */
	assert_int_equal(jwt_rated("jwt", 3, "subj-r4", t, &ar), 0);
	assert_int_equal(ar.ar_rate.rr_remaining, 1);
	assert_int_equal(jwt_rated("jwt:A", 3, "subj-r3", t + 1001, &ar), 0);
	/* rate=off on the provider: not limited, whatever else says. */
	jprov[0].jp_rate_off = 1;
	for (i = 0; i < 10; i++) {
		assert_int_equal(jwt_rated("jwt", 1, "subj-r3", t + 1001,
		    &ar), 0);
		assert_false(ar.ar_limited);
	}
	assert_int_equal(rate_refused[2][0], 1);
	jprov[0].jp_rate_off = 0;
	jprov[0].jp_rate[0] = 0;
	rate_keys[0] = 0;
}

/* The admin API's bare token check. */
static void
test_jwt_check_token(void **state)
{
	struct auth_result	 ar;
	char			*h, *t;

	(void)state;
	jwt_env();
	h = jwt_a("subj-admin");
	t = h + strlen("Authorization: Bearer ");
	t[strcspn(t, "\r")] = '\0';
	assert_int_equal(auth_check_token(&jenv, t, strlen(t), NOW, &ar), 0);
	assert_int_equal(ar.ar_scheme, ROUTE_AUTH_JWT);
	assert_string_equal(ar.ar_jwt.ji_subject, "subj-admin");
	assert_string_equal(ar.ar_jwt.ji_scopes, "read write");
	/* Past exp + leeway, then damaged, then with no provider. */
	assert_int_equal(auth_check_token(&jenv, t, strlen(t),
	    (JNOW + 600 + JWT_DEFAULT_LEEWAY) * 1000, &ar), 401);
	assert_string_equal(ar.ar_code, "expired_credentials");
	t[strlen(t) - 2] = t[strlen(t) - 2] == 'A' ? 'B' : 'A';
	assert_int_equal(auth_check_token(&jenv, t, strlen(t), NOW, &ar), 401);
	assert_string_equal(ar.ar_code, "invalid_credentials");
	jwtt_no_leak(ar.ar_message, t, strlen(t));
	assert_int_equal(auth_check_token(NULL, t, strlen(t), NOW, &ar), 503);
	assert_int_equal(auth_check_token(&jenv, "", 0, NOW, &ar), 401);
	assert_string_equal(ar.ar_code, "malformed_credentials");
	free(h);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_usage),
		cmocka_unit_test(test_no_keystore),
		cmocka_unit_test(test_busy),
		cmocka_unit_test(test_check_secret),
		cmocka_unit_test(test_missing_scope),
		cmocka_unit_test(test_identity_headers),
		cmocka_unit_test(test_rate_keys),
		cmocka_unit_test(test_rate_overrides),
		cmocka_unit_test(test_rate_anonymous),
		cmocka_unit_test(test_verify_target),
		cmocka_unit_test(test_jwt_allowed),
		cmocka_unit_test(test_jwt_refused),
		cmocka_unit_test(test_jwt_rate),
		cmocka_unit_test(test_jwt_check_token),
	};

	return (cmocka_run_group_tests(tests, setup, teardown));
}
