/*
 * A worker's JWT state: provider keys from the shared segment and the
 * verified-token cache.  See jwtauth.h.
 */

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "config.h"
#include "jwk.h"
#include "jwks.h"
#include "jwt.h"
#include "jwtauth.h"
#include "secret.h"
#include "shm.h"

/* One provider as this worker sees it. */
struct jwtauth_prov {
	const struct jwt_provider *pp_conf;
	int		 pp_slot;	/* JWKS slot, -1 until found */
	uint64_t	 pp_gen;	/* generation of pp_keys, 0: none */
	struct jwk_keys	 pp_keys;
};

/*
 * A verified token (see the cache in jwtauth.h).  ce_before: the
 * providers listed before the one that verified it whose issuer the token
 * also names; ce_refused: those of them that were tried and refused it.
 */
struct jwtauth_entry {
	uint8_t		 ce_digest[32];
	int64_t		 ce_until;	/* unix s: exp + leeway; 0: empty */
	uint64_t	 ce_gen;
	uint32_t	 ce_before;
	uint32_t	 ce_refused;
	struct jwt_identity ce_id;
};

struct jwtauth {
	struct shm_header	*ja_shm;
	struct jwtauth_prov	 ja_prov[JWT_MAX_PROVIDERS];
	int			 ja_nprov;
	struct jwk_set		 ja_scratch;	/* a slot being read */
	struct jwtauth_entry	*ja_cache;	/* SETS x WAYS */
	uint8_t			 ja_next[JWTAUTH_CACHE_SETS];	/* way to replace */
	uint64_t		 ja_hits;
	uint64_t		 ja_misses;
};

/* The state for conf's providers. */
struct jwtauth *
jwtauth_new(const struct config *conf, struct shm_header *shm)
{
	struct jwtauth	*ja;
	size_t		 i;

	if ((ja = calloc(1, sizeof(*ja))) == NULL)
		return (NULL);
	ja->ja_cache = calloc((size_t)JWTAUTH_CACHE_SETS * JWTAUTH_CACHE_WAYS,
	    sizeof(*ja->ja_cache));
	if (ja->ja_cache == NULL) {
		free(ja);
		return (NULL);
	}
	ja->ja_shm = shm;
	for (i = 0; i < conf->c_njwt && i < JWT_MAX_PROVIDERS; i++) {
		ja->ja_prov[i].pp_conf = &conf->c_jwt[i];
		ja->ja_prov[i].pp_slot = -1;
	}
	ja->ja_nprov = (int)i;
	return (ja);
}

/* Free ja, wiping the cached identities. */
void
jwtauth_free(struct jwtauth *ja)
{
	int	 i;

	if (ja == NULL)
		return;
	for (i = 0; i < ja->ja_nprov; i++)
		jwk_keys_free(&ja->ja_prov[i].pp_keys);
	OPENSSL_cleanse(ja->ja_cache, (size_t)JWTAUTH_CACHE_SETS *
	    JWTAUTH_CACHE_WAYS * sizeof(*ja->ja_cache));
	free(ja->ja_cache);
	free(ja);
}

/* Give provider i the keys of set as generation gen. */
int
jwtauth_set_keys(struct jwtauth *ja, int i, const struct jwk_set *set,
    uint64_t gen)
{
	struct jwtauth_prov	*pp = &ja->ja_prov[i];

	jwk_keys_free(&pp->pp_keys);
	memset(&pp->pp_keys, 0, sizeof(pp->pp_keys));
	pp->pp_gen = gen;
	if (jwk_keys_load(&pp->pp_keys, set) == -1)
		return (-1);
	return (0);
}

/*
 * Bring provider pp's keys up to its slot's generation: one relaxed load
 * when nothing changed.  A slot that cannot be read right now (the master
 * is writing it) leaves the old keys in place until the next request.
 * Generation 0 means the provider never had keys.
 */
static void
jwtauth_sync(struct jwtauth *ja, struct jwtauth_prov *pp)
{
	uint64_t	 gen;
	uint32_t	 state;

	if (ja->ja_shm == NULL)
		return;
	if (pp->pp_slot == -1 && (pp->pp_slot = jwks_slot_find(ja->ja_shm,
	    pp->pp_conf->jp_name)) == -1)
		return;
	if ((gen = jwks_slot_generation(ja->ja_shm, pp->pp_slot)) ==
	    pp->pp_gen)
		return;
	if (jwks_slot_read(ja->ja_shm, pp->pp_slot, &ja->ja_scratch, &gen,
	    &state) == -1) {
		/* The slot was given to another name: look for ours again. */
		pp->pp_slot = -1;
		return;
	}
	if (gen == 0 || state == JWKS_NONE) {
		jwk_keys_free(&pp->pp_keys);
		memset(&pp->pp_keys, 0, sizeof(pp->pp_keys));
		pp->pp_gen = 0;
		return;
	}
	(void)jwtauth_set_keys(ja, (int)(pp - ja->ja_prov), &ja->ja_scratch,
	    gen);
}

/* The cache set of digest d. */
static struct jwtauth_entry *
jwtauth_set(const struct jwtauth *ja, const uint8_t *d, size_t *index)
{
	uint32_t	 h;

	memcpy(&h, d, sizeof(h));
	*index = h % JWTAUTH_CACHE_SETS;
	return (&ja->ja_cache[*index * JWTAUTH_CACHE_WAYS]);
}

/* A valid cached identity for digest d (see jwtauth.h), or NULL. */
static const struct jwtauth_entry *
jwtauth_lookup(struct jwtauth *ja, const uint8_t *d, uint32_t mask,
    int64_t now)
{
	const struct jwtauth_entry	*e;
	struct jwtauth_prov		*pp;
	size_t				 set, i;
	int				 p;

	e = jwtauth_set(ja, d, &set);
	for (i = 0; i < JWTAUTH_CACHE_WAYS; i++, e++) {
		if (e->ce_until == 0 || memcmp(e->ce_digest, d, 32) != 0)
			continue;
		p = e->ce_id.ji_provider;
		if (p < 0 || p >= ja->ja_nprov || !(mask & (1U << p)) ||
		    (mask & e->ce_before & ~e->ce_refused) != 0)
			return (NULL);
		pp = &ja->ja_prov[p];
		jwtauth_sync(ja, pp);
		if (e->ce_gen != pp->pp_gen || now >= e->ce_until)
			return (NULL);
		return (e);
	}
	return (NULL);
}

/* Remember a verified token. */
static void
jwtauth_insert(struct jwtauth *ja, const uint8_t *d, uint64_t gen,
    int64_t until, uint32_t before, uint32_t refused,
    const struct jwt_identity *id)
{
	struct jwtauth_entry	*e;
	size_t			 set, i;

	e = jwtauth_set(ja, d, &set);
	for (i = 0; i < JWTAUTH_CACHE_WAYS; i++)
		if (memcmp(e[i].ce_digest, d, 32) == 0)
			break;
	if (i == JWTAUTH_CACHE_WAYS) {
		i = ja->ja_next[set];
		ja->ja_next[set] = (uint8_t)((i + 1) % JWTAUTH_CACHE_WAYS);
	}
	e += i;
	memcpy(e->ce_digest, d, 32);
	e->ce_until = until;
	e->ce_gen = gen;
	e->ce_before = before;
	e->ce_refused = refused;
	e->ce_id = *id;
}

/* Map a jwt_verify() status to ours. */
static int
jwtauth_status(int st)
{
	switch (st) {
	case JWT_OK:
		return (JWTAUTH_OK);
	case JWT_MALFORMED:
		return (JWTAUTH_MALFORMED);
	case JWT_EXPIRED:
		return (JWTAUTH_EXPIRED);
	default:
		return (JWTAUTH_INVALID);
	}
}

/*
 * Verify the decoded t with provider p's keys; see jwtauth.h for the
 * unknown-kid rule.
 */
static int
jwtauth_verify(struct jwtauth *ja, int p, const struct jwt_token *t,
    int64_t now, int64_t mono, int final, struct jwt_identity *id,
    int *slot, char *why, size_t whylen)
{
	struct jwtauth_prov	*pp = &ja->ja_prov[p];
	int			 st;

	jwtauth_sync(ja, pp);
	if (pp->pp_gen == 0) {
		snprintf(why, whylen, "the keys of jwt_provider %s are not "
		    "available yet", pp->pp_conf->jp_name);
		return (JWTAUTH_UNAVAILABLE);
	}
	st = jwt_verify(pp->pp_conf, &pp->pp_keys, t, now, id, why, whylen);
	if (st != JWT_UNKNOWN_KID)
		return (jwtauth_status(st));
	/*
	 * Ask even on a last try (POST /v1/verify never waits): the master
	 * takes at most one request per JWKS_REFETCH_MIN_MS anyway.
	 */
	if (ja->ja_shm != NULL && pp->pp_slot != -1 &&
	    jwks_refetch(ja->ja_shm, pp->pp_slot, mono) && !final) {
		*slot = p;
		return (JWTAUTH_PENDING);
	}
	return (JWTAUTH_INVALID);
}

/*
 * How telling a refusal is, to keep the best of several providers': an
 * expired token passed the signature, issuer and audience checks of one;
 * a held one may still pass; a provider without keys could not look.
 */
static int
jwtauth_rank(int st)
{
	switch (st) {
	case JWTAUTH_EXPIRED:
		return (4);
	case JWTAUTH_PENDING:
		return (3);
	case JWTAUTH_UNAVAILABLE:
		return (2);
	default:
		return (1);
	}
}

/*
 * Verify t with every provider of mask whose issuer it names, in the
 * configuration's order, until one accepts it (two providers may share an
 * issuer with different audiences): JWTAUTH_OK with *p set, or the most
 * telling refusal (jwtauth_rank) with its reason.  *before and *refused
 * get the providers before *p that t names and those of them that refused
 * it (see struct jwtauth_entry).
 */
static int
jwtauth_verify_any(struct jwtauth *ja, uint32_t mask,
    const struct jwt_token *t, int64_t now, int64_t mono, int final,
    struct jwt_identity *id, int *p, uint32_t *before, uint32_t *refused,
    int *slot, char *why, size_t whylen)
{
	char	 msg[192];
	int	 i, st, best = -1, other = 0;

	*before = *refused = 0;
	for (i = 0; i < ja->ja_nprov; i++) {
		if (!jwt_provider_issues(ja->ja_prov[i].pp_conf, t))
			continue;
		if (!(mask & (1U << i))) {
			*before |= 1U << i;
			other = 1;
			continue;
		}
		msg[0] = '\0';
		memset(id, 0, sizeof(*id));
		st = jwtauth_verify(ja, i, t, now, mono, final, id, slot, msg,
		    sizeof(msg));
		if (st == JWTAUTH_OK) {
			*p = i;
			return (JWTAUTH_OK);
		}
		*before |= 1U << i;
		*refused |= 1U << i;
		if (best == -1 || jwtauth_rank(st) > jwtauth_rank(best)) {
			best = st;
			snprintf(why, whylen, "%s", msg);
		}
	}
	if (best != -1)
		return (best);
	if (t->jt_iss == NULL)
		snprintf(why, whylen, "the token has no issuer (iss)");
	else if (other)
		snprintf(why, whylen, "the token's issuer is a provider this "
		    "route does not accept");
	else
		snprintf(why, whylen, "the token's issuer (iss) is not "
		    "accepted");
	return (JWTAUTH_INVALID);
}

/* Decide one bearer token; see jwtauth.h. */
int
jwtauth_check(struct jwtauth *ja, uint32_t mask, const char *tok, size_t len,
    int64_t now, int64_t mono, int final, struct jwt_identity *id, int *slot,
    char *why, size_t whylen)
{
	const struct jwtauth_entry	*e;
	struct jwt_token		 t;
	uint8_t				 d[32];
	uint32_t			 before, refused;
	int				 p = -1, st;

	*slot = -1;
	if (len > JWT_MAX_TOKEN) {
		snprintf(why, whylen, "the bearer token is longer than %d "
		    "bytes", JWT_MAX_TOKEN);
		return (JWTAUTH_MALFORMED);
	}
	secret_digest(tok, len, d);
	if ((e = jwtauth_lookup(ja, d, mask, now)) != NULL) {
		ja->ja_hits++;
		*id = e->ce_id;
		return (JWTAUTH_OK);
	}
	ja->ja_misses++;
	if ((st = jwt_decode(tok, len, &t, why, whylen)) != JWT_OK)
		return (jwtauth_status(st));
	st = jwtauth_verify_any(ja, mask, &t, now, mono, final, id, &p,
	    &before, &refused, slot, why, whylen);
	jwt_token_free(&t);
	if (st == JWTAUTH_OK)
		jwtauth_insert(ja, d, ja->ja_prov[p].pp_gen, id->ji_exp +
		    ja->ja_prov[p].pp_conf->jp_leeway, before, refused, id);
	return (st);
}

/* Is a request held for provider i since asked done waiting? */
int
jwtauth_wait_over(struct jwtauth *ja, int i, int64_t asked)
{
	struct jwtauth_prov	*pp;

	if (i < 0 || i >= ja->ja_nprov)
		return (1);
	pp = &ja->ja_prov[i];
	if (ja->ja_shm == NULL || pp->pp_slot == -1)
		return (1);
	if (jwks_slot_generation(ja->ja_shm, pp->pp_slot) != pp->pp_gen)
		return (1);
	return (jwks_refetch_done(ja->ja_shm, pp->pp_slot, asked));
}

/* Provider i, or NULL. */
const struct jwt_provider *
jwtauth_provider(const struct jwtauth *ja, int i)
{
	if (ja == NULL || i < 0 || i >= ja->ja_nprov)
		return (NULL);
	return (ja->ja_prov[i].pp_conf);
}

/* Cache hits and misses. */
void
jwtauth_stats(const struct jwtauth *ja, uint64_t *hits, uint64_t *misses)
{
	*hits = ja->ja_hits;
	*misses = ja->ja_misses;
}
