/*
 * Unit tests for a worker's JWT state (src/jwtauth.c): the verified-token
 * cache and its correctness argument (jwtauth.h: a hit answers what a full
 * check would), the keys of each provider, and the unknown-kid hold.
 *
 * Providers A (index 0) and B (index 1) are built by hand; their keys are
 * made here with OpenSSL and tokens are signed here (jwttest.c).  Keys
 * reach the state either through jwtauth_set_keys() (no segment) or
 * through a JWKS slot of a real segment, published as the master does:
 * jwks.c is compiled into this file for its slot_publish(), the way
 * test_jwks.c does it.
 */

#include <sys/types.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/evp.h>

#include "../../src/jwks.c"

#include "jwtauth.h"
#include "jwttest.h"

#define NOW		INT64_C(1700000000)
#define EXP		(NOW + 600)
#define MONO		INT64_C(5000000)	/* CLOCK_MONOTONIC ms */
#define ISS_A		"https://a.example/"
#define ISS_B		"https://b.example/"
#define AUD		"api://keygate"
#define MASK_ALL	UINT32_MAX		/* plain "jwt" */
#define MASK_A		(1U << 0)
#define MASK_B		(1U << 1)
#define WHYLEN		256
#define NTOKENS		10000			/* the eviction test */

/* Keys: A's a1 (RSA) and a2 (EC), B's b1 (EC), and one nobody has. */
static EVP_PKEY		*k_a1, *k_a2, *k_b1, *k_evil;
/* Key sets: A with a1 and a2, A with a2 only, A with a1 only, B. */
static struct jwk_set	*s_a12, *s_a2, *s_a1, *s_b;

static struct jwt_provider	 prov[2];
static struct config		 conf;

/* Provider i named name, issuing as iss for AUD, every alg. */
static void
provider(int i, char *name, char *iss)
{
	static char	*aud = AUD;

	jwtt_provider(&prov[i], i, name, iss, aud);
}

/* The key set of the n JWKs that follow, parsed (calloc'd). */
static struct jwk_set *
keyset(int n, char *k1, char *k2)
{
	struct jwk_set	*set;
	char		 err[WHYLEN];

	assert_non_null(set = calloc(1, sizeof(*set)));
	if (n == 1)
		assert_int_equal(jwtt_jwks(set, err, sizeof(err), 1, k1), 1);
	else
		assert_int_equal(jwtt_jwks(set, err, sizeof(err), 2, k1, k2),
		    2);
	return (set);
}

/* Keys, key sets and the providers A and B for every test. */
static int
setup(void **state)
{
	(void)state;
	k_a1 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	k_a2 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	k_b1 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	k_evil = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (k_a1 == NULL || k_a2 == NULL || k_b1 == NULL || k_evil == NULL)
		return (-1);
	s_a12 = keyset(2, jwtt_jwk(k_a1, "a1", ""), jwtt_jwk(k_a2, "a2", ""));
	s_a2 = keyset(1, jwtt_jwk(k_a2, "a2", ""), NULL);
	s_a1 = keyset(1, jwtt_jwk(k_a1, "a1", ""), NULL);
	s_b = keyset(1, jwtt_jwk(k_b1, "b1", ""), NULL);
	provider(0, "A", ISS_A);
	provider(1, "B", ISS_B);
	conf.c_jwt = prov;
	conf.c_njwt = 2;
	return (0);
}

/* Free what setup() made. */
static int
teardown(void **state)
{
	(void)state;
	EVP_PKEY_free(k_a1);
	EVP_PKEY_free(k_a2);
	EVP_PKEY_free(k_b1);
	EVP_PKEY_free(k_evil);
	free(s_a12);
	free(s_a2);
	free(s_a1);
	free(s_b);
	return (0);
}

/* A token (malloc'd) signed by pk as kid, from iss about sub, until exp. */
static char *
mint(EVP_PKEY *pk, const char *kid, const char *iss, const char *sub,
    int64_t exp)
{
	char	 h[128], p[512];
	int	 alg;

	alg = EVP_PKEY_is_a(pk, "RSA") ? JWK_ALG_RS256 : JWK_ALG_ES256;
	snprintf(h, sizeof(h), "{\"alg\":\"%s\",\"kid\":\"%s\"}",
	    jwk_alg_name(alg), kid);
	snprintf(p, sizeof(p), "{\"iss\":\"%s\",\"aud\":\"" AUD "\","
	    "\"sub\":\"%s\",\"exp\":%lld,\"iat\":%lld,\"scp\":\"read\"}", iss,
	    sub, (long long)exp, (long long)NOW - 10);
	return (jwtt_tok(pk, alg, h, p));
}

/* The state for A and B, with keys (gen 1) unless shm is given. */
static struct jwtauth *
state_new(struct shm_header *shm, int keys)
{
	struct jwtauth	*ja;

	assert_non_null(ja = jwtauth_new(&conf, shm));
	if (keys) {
		assert_int_equal(jwtauth_set_keys(ja, 0, s_a12, 1), 0);
		assert_int_equal(jwtauth_set_keys(ja, 1, s_b, 1), 0);
	}
	return (ja);
}

/*
 * jwtauth_check() of t for mask at now: its status; the identity in *id.
 * A refusal must give a reason that quotes neither the token nor its
 * subject; *slot is -1 unless PENDING.
 */
static int
check(struct jwtauth *ja, uint32_t mask, const char *t, int64_t now,
    int final, struct jwt_identity *id, int *slot)
{
	char	 why[WHYLEN];
	int	 rv, s;

	why[0] = '\0';
	memset(id, 0, sizeof(*id));
	rv = jwtauth_check(ja, mask, t, strlen(t), now, MONO, final, id, &s,
	    why, sizeof(why));
	if (rv != JWTAUTH_OK) {
		assert_true(why[0] != '\0');
		jwtt_no_leak(why, t, strlen(t));
		assert_null(strstr(why, "subj-"));
	}
	if (rv != JWTAUTH_PENDING)
		assert_int_equal(s, -1);
	if (slot != NULL)
		*slot = s;
	return (rv);
}

/* check() expecting OK for the subject sub of provider p. */
static void
ok(struct jwtauth *ja, uint32_t mask, const char *t, int64_t now,
    const char *sub, int p)
{
	struct jwt_identity	 id;
	int			 rv;

	if ((rv = check(ja, mask, t, now, 0, &id, NULL)) != JWTAUTH_OK)
		fail_msg("status %d for %s", rv, sub);
	assert_string_equal(id.ji_subject, sub);
	assert_int_equal(id.ji_provider, p);
}

/* The cache's hits and misses are these. */
static void
stats(struct jwtauth *ja, uint64_t hits, uint64_t misses)
{
	uint64_t	 h, m;

	jwtauth_stats(ja, &h, &m);
	if (h != hits || m != misses)
		fail_msg("hits %llu misses %llu, want %llu %llu",
		    (unsigned long long)h, (unsigned long long)m,
		    (unsigned long long)hits, (unsigned long long)misses);
}

/* A good token: verified once (a miss), then a hit with the same answer. */
static void
test_hit(void **state)
{
	struct jwtauth	*ja = state_new(NULL, 1);
	char		*t = mint(k_a1, "a1", ISS_A, "subj-alice", EXP);
	char		*u = mint(k_b1, "b1", ISS_B, "subj-bob", EXP);

	(void)state;
	stats(ja, 0, 0);
	ok(ja, MASK_ALL, t, NOW, "subj-alice", 0);
	stats(ja, 0, 1);
	ok(ja, MASK_ALL, t, NOW, "subj-alice", 0);
	stats(ja, 1, 1);
	ok(ja, MASK_A, t, NOW + 100, "subj-alice", 0);
	stats(ja, 2, 1);
	/* Another provider's token: its own entry, its own identity. */
	ok(ja, MASK_B, u, NOW, "subj-bob", 1);
	ok(ja, MASK_ALL, u, NOW, "subj-bob", 1);
	ok(ja, MASK_ALL, t, NOW, "subj-alice", 0);
	stats(ja, 4, 2);
	assert_string_equal(jwtauth_provider(ja, 1)->jp_name, "B");
	assert_null(jwtauth_provider(ja, 2));
	free(t);
	free(u);
	jwtauth_free(ja);
}

/* A cached token is good until exp + leeway, then expired. */
static void
test_expiry(void **state)
{
	struct jwtauth		*ja = state_new(NULL, 1);
	struct jwt_identity	 id;
	char			*t = mint(k_a2, "a2", ISS_A, "subj-carol", EXP);

	(void)state;
	ok(ja, MASK_ALL, t, NOW, "subj-carol", 0);
	ok(ja, MASK_ALL, t, EXP + JWT_DEFAULT_LEEWAY - 1, "subj-carol", 0);
	stats(ja, 1, 1);
	assert_int_equal(check(ja, MASK_ALL, t, EXP + JWT_DEFAULT_LEEWAY, 0,
	    &id, NULL), JWTAUTH_EXPIRED);
	stats(ja, 1, 2);
	assert_int_equal(check(ja, MASK_ALL, t, EXP + 3600, 0, &id, NULL),
	    JWTAUTH_EXPIRED);
	stats(ja, 1, 3);
	free(t);
	jwtauth_free(ja);
}

/*
 * New keys for A: A's cached tokens miss and are verified again; the one
 * whose key was removed is refused, the other is accepted (and cached
 * again); B's cached token is untouched.
 */
static void
test_new_keys(void **state)
{
	struct jwtauth		*ja = state_new(NULL, 1);
	struct jwt_identity	 id;
	char			*t1 = mint(k_a1, "a1", ISS_A, "subj-a1", EXP);
	char			*t2 = mint(k_a2, "a2", ISS_A, "subj-a2", EXP);
	char			*u = mint(k_b1, "b1", ISS_B, "subj-b1", EXP);

	(void)state;
	ok(ja, MASK_ALL, t1, NOW, "subj-a1", 0);
	ok(ja, MASK_ALL, t2, NOW, "subj-a2", 0);
	ok(ja, MASK_ALL, u, NOW, "subj-b1", 1);
	ok(ja, MASK_ALL, t1, NOW, "subj-a1", 0);
	ok(ja, MASK_ALL, t2, NOW, "subj-a2", 0);
	stats(ja, 2, 3);

	assert_int_equal(jwtauth_set_keys(ja, 0, s_a2, 2), 0);
	assert_int_equal(check(ja, MASK_ALL, t1, NOW, 0, &id, NULL),
	    JWTAUTH_INVALID);
	stats(ja, 2, 4);
	ok(ja, MASK_ALL, t2, NOW, "subj-a2", 0);
	stats(ja, 2, 5);
	ok(ja, MASK_ALL, t2, NOW, "subj-a2", 0);
	ok(ja, MASK_ALL, u, NOW, "subj-b1", 1);
	stats(ja, 4, 5);
	/* Still refused: a refusal is not cached, a1 is still gone. */
	assert_int_equal(check(ja, MASK_ALL, t1, NOW, 0, &id, NULL),
	    JWTAUTH_INVALID);
	stats(ja, 4, 6);

	/* a1 back, a2 gone: the same for the other token. */
	assert_int_equal(jwtauth_set_keys(ja, 0, s_a1, 3), 0);
	ok(ja, MASK_ALL, t1, NOW, "subj-a1", 0);
	assert_int_equal(check(ja, MASK_ALL, t2, NOW, 0, &id, NULL),
	    JWTAUTH_INVALID);
	stats(ja, 4, 8);
	free(t1);
	free(t2);
	free(u);
	jwtauth_free(ja);
}

/*
 * A cached token of A on a route of B only: a miss, and refused as
 * another provider's; plain "jwt" and jwt:A still hit.
 */
static void
test_mask(void **state)
{
	struct jwtauth		*ja = state_new(NULL, 1);
	struct jwt_identity	 id;
	char			 why[WHYLEN];
	char			*t = mint(k_a2, "a2", ISS_A, "subj-dave", EXP);
	char			*x = mint(k_a2, "a2", "https://x.example/",
				    "subj-x", EXP);
	int			 slot;

	(void)state;
	ok(ja, MASK_ALL, t, NOW, "subj-dave", 0);
	stats(ja, 0, 1);
	assert_int_equal(jwtauth_check(ja, MASK_B, t, strlen(t), NOW, MONO, 0,
	    &id, &slot, why, sizeof(why)), JWTAUTH_INVALID);
	assert_non_null(strstr(why, "a provider this route does not accept"));
	stats(ja, 0, 2);
	ok(ja, MASK_A, t, NOW, "subj-dave", 0);
	ok(ja, MASK_A | MASK_B, t, NOW, "subj-dave", 0);
	ok(ja, MASK_ALL, t, NOW, "subj-dave", 0);
	stats(ja, 3, 2);
	/* An issuer of no provider, even on plain "jwt". */
	assert_int_equal(jwtauth_check(ja, MASK_ALL, x, strlen(x), NOW, MONO,
	    0, &id, &slot, why, sizeof(why)), JWTAUTH_INVALID);
	assert_non_null(strstr(why, "is not accepted"));
	free(t);
	free(x);
	jwtauth_free(ja);
}

/* Refused tokens are never cached: every try is a miss. */
static void
test_refused(void **state)
{
	struct jwtauth		*ja = state_new(NULL, 1);
	struct jwt_identity	 id;
	char			*bad = mint(k_evil, "a2", ISS_A, "subj-eve",
				    EXP);
	char			*old = mint(k_a2, "a2", ISS_A, "subj-old",
				    NOW - 3600);
	char			*unk = mint(k_a2, "zz", ISS_A, "subj-unk", EXP);
	int			 i, slot;

	(void)state;
	for (i = 1; i <= 3; i++) {
		assert_int_equal(check(ja, MASK_ALL, bad, NOW, 0, &id, NULL),
		    JWTAUTH_INVALID);
		assert_int_equal(check(ja, MASK_ALL, old, NOW, 0, &id, NULL),
		    JWTAUTH_EXPIRED);
		/* Unknown kid, no segment: nothing to wait for. */
		assert_int_equal(check(ja, MASK_ALL, unk, NOW, 0, &id, &slot),
		    JWTAUTH_INVALID);
		assert_int_equal(check(ja, MASK_ALL, "a.b.c", NOW, 0, &id,
		    NULL), JWTAUTH_MALFORMED);
		stats(ja, 0, 4 * (uint64_t)i);
	}
	free(bad);
	free(old);
	free(unk);
	jwtauth_free(ja);
}

/* Longer than JWT_MAX_TOKEN: malformed before anything else. */
static void
test_too_long(void **state)
{
	struct jwtauth		*ja = state_new(NULL, 1);
	struct jwt_identity	 id;
	char			*t = mint(k_a2, "a2", ISS_A, "subj-long", EXP);
	char			*big, why[WHYLEN];
	size_t			 n = strlen(t);
	int			 slot;

	(void)state;
	/* The good token, padded with base64url in its signature. */
	assert_non_null(big = malloc(JWT_MAX_TOKEN + 2));
	memcpy(big, t, n);
	memset(big + n, 'A', JWT_MAX_TOKEN + 1 - n);
	big[JWT_MAX_TOKEN + 1] = '\0';
	assert_int_equal(check(ja, MASK_ALL, big, NOW, 0, &id, NULL),
	    JWTAUTH_MALFORMED);
	assert_int_equal(jwtauth_check(ja, MASK_ALL, big, JWT_MAX_TOKEN + 1,
	    NOW, MONO, 0, &id, &slot, why, sizeof(why)), JWTAUTH_MALFORMED);
	assert_non_null(strstr(why, "longer than 8192"));
	stats(ja, 0, 0);
	free(big);
	free(t);
	jwtauth_free(ja);
}

/* A provider that has no keys yet (generation 0): 503, not cached. */
static void
test_unavailable(void **state)
{
	struct jwtauth		*ja = state_new(NULL, 0);
	struct jwt_identity	 id;
	char			 why[WHYLEN];
	char			*u = mint(k_b1, "b1", ISS_B, "subj-b", EXP);
	char			*t = mint(k_a2, "a2", ISS_A, "subj-a", EXP);
	int			 slot;

	(void)state;
	assert_int_equal(jwtauth_set_keys(ja, 0, s_a12, 1), 0);
	assert_int_equal(jwtauth_check(ja, MASK_ALL, u, strlen(u), NOW, MONO,
	    0, &id, &slot, why, sizeof(why)), JWTAUTH_UNAVAILABLE);
	assert_non_null(strstr(why, "jwt_provider B"));
	assert_int_equal(check(ja, MASK_B, u, NOW, 0, &id, NULL),
	    JWTAUTH_UNAVAILABLE);
	ok(ja, MASK_ALL, t, NOW, "subj-a", 0);
	stats(ja, 0, 3);
	/* The keys arrive: verified, then cached. */
	assert_int_equal(jwtauth_set_keys(ja, 1, s_b, 1), 0);
	ok(ja, MASK_ALL, u, NOW, "subj-b", 1);
	ok(ja, MASK_ALL, u, NOW, "subj-b", 1);
	stats(ja, 1, 4);
	free(u);
	free(t);
	jwtauth_free(ja);
}

/*
 * Many more tokens than the cache holds (JWTAUTH_CACHE_SETS x _WAYS):
 * every one, hit or miss, is answered with its own identity, in the
 * order inserted and backwards (the latest ones are still cached).
 */
static void
test_eviction(void **state)
{
	struct jwtauth	*ja = state_new(NULL, 1);
	char		**t, sub[32];
	uint64_t	 h, m;
	int		 i;

	(void)state;
	assert_non_null(t = calloc(NTOKENS, sizeof(*t)));
	for (i = 0; i < NTOKENS; i++) {
		snprintf(sub, sizeof(sub), "user-%d", i);
		t[i] = mint(i % 2 ? k_a2 : k_b1, i % 2 ? "a2" : "b1",
		    i % 2 ? ISS_A : ISS_B, sub, EXP + i);
	}
	for (i = 0; i < NTOKENS; i++) {
		snprintf(sub, sizeof(sub), "user-%d", i);
		ok(ja, MASK_ALL, t[i], NOW, sub, i % 2 ? 0 : 1);
	}
	stats(ja, 0, NTOKENS);
	for (i = NTOKENS - 1; i >= 0; i--) {
		snprintf(sub, sizeof(sub), "user-%d", i);
		ok(ja, MASK_ALL, t[i], NOW, sub, i % 2 ? 0 : 1);
	}
	jwtauth_stats(ja, &h, &m);
	assert_int_equal(h + m, 2 * NTOKENS);
	assert_true(h > 0);
	assert_true(h <= JWTAUTH_CACHE_SETS * JWTAUTH_CACHE_WAYS);
	for (i = 0; i < NTOKENS; i += 7) {
		snprintf(sub, sizeof(sub), "user-%d", i);
		ok(ja, i % 2 ? MASK_A : MASK_B, t[i], NOW, sub, i % 2 ? 0 : 1);
	}
	for (i = 0; i < NTOKENS; i++)
		free(t[i]);
	free(t);
	jwtauth_free(ja);
}

/* A bare master record for the segment shm (test_jwks.c's way). */
static struct jwks *
master_new(struct shm_header *shm)
{
	struct jwks	*j;
	int		 i;

	assert_non_null(j = calloc(1, sizeof(*j)));
	j->j_shm = shm;
	for (i = 0; i < JWT_MAX_PROVIDERS; i++) {
		j->j_prov[i].p_jwks = j;
		j->j_prov[i].p_index = i;
	}
	return (j);
}

/* The master publishes set (NULL: none) as generation gen of slot i. */
static void
publish(struct jwks *j, int i, const char *name, const struct jwk_set *set,
    uint64_t gen)
{
	struct jwks_prov	*p = &j->j_prov[i];

	snprintf(p->p_name, sizeof(p->p_name), "%s", name);
	if (set != NULL)
		memcpy(&p->p_set, set, sizeof(p->p_set));
	else
		memset(&p->p_set, 0, sizeof(p->p_set));
	p->p_generation = gen;
	p->p_state = set != NULL ? JWKS_OK : JWKS_NONE;
	slot_publish(p, 1, NOW);
}

/*
 * Keys from the segment: an unknown kid holds the request (PENDING) while
 * a re-fetch is worth waiting for; the wait is over when the slot's
 * generation changes, and the token then verifies.  On the last try, or
 * when a re-fetch was done just now, an unknown kid is invalid.  A slot
 * that never had keys is 503.
 */
static void
test_pending(void **state)
{
	struct shm_header	*shm;
	struct jwks		*j;
	struct jwtauth		*ja;
	struct jwks_slot	*s;
	struct jwt_identity	 id;
	char			*t1 = mint(k_a1, "a1", ISS_A, "subj-p1", EXP);
	char			*t2 = mint(k_a2, "a2", ISS_A, "subj-p2", EXP);
	char			*u = mint(k_b1, "b1", ISS_B, "subj-pb", EXP);
	char			*z = mint(k_a2, "zz", ISS_A, "subj-pz", EXP);
	int			 slot;

	(void)state;
	assert_non_null(shm = shm_create(16, 16));
	j = master_new(shm);
	publish(j, 3, "A", s_a1, 1);
	publish(j, 5, "B", NULL, 0);
	s = &shm_jwks(shm)[3];
	ja = state_new(shm, 0);

	ok(ja, MASK_ALL, t1, NOW, "subj-p1", 0);
	assert_int_equal(check(ja, MASK_ALL, u, NOW, 0, &id, NULL),
	    JWTAUTH_UNAVAILABLE);
	assert_int_equal(jwtauth_wait_over(ja, 0, MONO), 0);

	/* a2 is not published yet: held, and a re-fetch asked for. */
	assert_int_equal(check(ja, MASK_ALL, t2, NOW, 0, &id, &slot),
	    JWTAUTH_PENDING);
	assert_int_equal(slot, 0);
	assert_int_equal(s->js_refetch_req, 1);
	assert_int_equal(jwtauth_wait_over(ja, 0, MONO), 0);
	/*
	 * Held requests' last try (and POST /v1/verify): invalid, but the
	 * re-fetch is still asked for (the master makes one of all asks).
	 */
	assert_int_equal(check(ja, MASK_ALL, t2, NOW, 1, &id, NULL),
	    JWTAUTH_INVALID);
	assert_int_equal(s->js_refetch_req, 2);

	/* The master publishes a1 and a2: the wait is over, t2 verifies. */
	publish(j, 3, "A", s_a12, 2);
	assert_int_equal(jwtauth_wait_over(ja, 0, MONO), 1);
	ok(ja, MASK_ALL, t2, NOW, "subj-p2", 0);
	assert_int_equal(jwtauth_wait_over(ja, 0, MONO), 0);
	/* t1 was cached under generation 1: verified again, still good. */
	ok(ja, MASK_ALL, t1, NOW, "subj-p1", 0);
	stats(ja, 0, 6);
	ok(ja, MASK_ALL, t1, NOW, "subj-p1", 0);
	stats(ja, 1, 6);

	/* A re-fetch done just now: an unknown kid is not held again. */
	__atomic_store_n(&s->js_refetch_last, MONO - 1000, __ATOMIC_RELEASE);
	assert_int_equal(check(ja, MASK_ALL, z, NOW, 0, &id, NULL),
	    JWTAUTH_INVALID);
	assert_int_equal(s->js_refetch_req, 2);
	assert_int_equal(jwtauth_wait_over(ja, 0, MONO - 1000), 1);

	/* a1 removed by the master: its cached token is refused. */
	publish(j, 3, "A", s_a2, 3);
	assert_int_equal(check(ja, MASK_ALL, t1, NOW, 1, &id, NULL),
	    JWTAUTH_INVALID);
	ok(ja, MASK_ALL, t2, NOW, "subj-p2", 0);

	/* B's keys arrive through its slot. */
	publish(j, 5, "B", s_b, 1);
	ok(ja, MASK_ALL, u, NOW, "subj-pb", 1);

	free(t1);
	free(t2);
	free(u);
	free(z);
	jwtauth_free(ja);
	free(j);
	shm_destroy(shm);
}

/* Run the tests. */
int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hit),
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_new_keys),
		cmocka_unit_test(test_mask),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_too_long),
		cmocka_unit_test(test_unavailable),
		cmocka_unit_test(test_eviction),
		cmocka_unit_test(test_pending),
	};

	return (cmocka_run_group_tests(tests, setup, teardown));
}
