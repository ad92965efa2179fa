/*
 * Unit tests for JWKS distribution (jwks.c): the seqlock between the
 * master's publishing and the workers' copies (also with a writer in
 * another process), the early re-fetch handshake, slot assignment across
 * reconfigurations, the cache files in state_dir, and libcurl's transfer
 * machinery on a real event loop (a refused connection: no network).
 *
 * jwks.c is compiled into this file with the monotonic clock replaced by
 * the test's own, so the re-fetch rate can be tested without waiting, and
 * so that its records can be looked at.  Providers are built by hand
 * (struct config and struct jwt_provider), not parsed.
 */

#include <sys/types.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "util.h"

static int64_t	 t_mono = 1000000;	/* what util_mono_ms() returns */

int64_t	 test_mono_ms(void);

/* The injected monotonic clock. */
int64_t
test_mono_ms(void)
{
	return (t_mono);
}

#define util_mono_ms	test_mono_ms

#include "../../src/jwks.c"

/*
 * Real public keys (RSA 2048, EC P-256), so that the documents mean the
 * same to the test double and to the real jwk_parse_set(): A keeps two
 * keys and skips the "oct" one, B keeps one.
 */
#define T_RSA1	"w1VXrzzu6nXPHoSzHRU7Lb4JU7_HLpItksBxBVNVmlowV1SU1reGyd7UjYw1" \
	"j1U5IiqzrTmKfQvtDh-5UenEaRowYahT1yzBalzCoMWejOFlqiGi-S1rYz1VGOf12m" \
	"sAZV5dFdcjDta0d_tfXFWhUym_H5ZhN2TVzVbNdeeyxhapWME2IWiIk-YTs4_r3EZF" \
	"qgo-z753GfihFFpB_bt3wbiVoixiKen3RLwehpYKAFGgGG5kK6RAKr4WRdO-SXnJnf" \
	"ZaA2x2YwZKygx2Ed6UeTJLVFVKFuWVQBoHwr-DH5QZpllEw_Ae7xXXsjMGm4R85KEj" \
	"yhA31OL0phRJSOc1_Q"
#define T_RSA2	"kaxksOtIcYwi6ievGs1xUsnExUdy8372Oq3kCkefQGFFPlnk1zmk5KWOGfHH" \
	"C6vPIHUjXUqhO87WdAmKKUuS4iVnoNPo46fta1EwgJZS9OjX46McnVnayd_sipuV8F" \
	"W3mUbsMSjK_kFKFI4ROxEnudqj8IWMdXdCEz4xgnlY52-t35N5sGbc3EE1sgRE7aGw" \
	"vkI-7-_tOj-2keyrQHHpqpmPhZzBJIVNheY7plt34IotOwxHRIDe2zBNUApk8BpD5w" \
	"peVzUgAaU1ksNVHYEQwUYA3oAijcoXazx0qDXhtK3TCLTa8Bwe2AJNETchruEGuln1" \
	"6_3n_mI0xKS0u2j-Iw"
#define T_DOC_A	"{\"keys\":[{\"kid\":\"a1\",\"kty\":\"RSA\",\"n\":\"" T_RSA1 \
	"\",\"e\":\"AQAB\"},{\"kid\":\"a2\",\"kty\":\"EC\",\"crv\":\"P-256\"," \
	"\"x\":\"1uUEa6b5f8S4MRekVu4CDdM33aQfR69Ok3L3OqfJqm0\"," \
	"\"y\":\"sNhikOhL85S1OcU1UnhsuWO6M-IpEKNIxsEtBi7MChM\"}," \
	"{\"kid\":\"o\",\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}"
#define T_DOC_B	"{\"keys\":[{\"kid\":\"b1\",\"kty\":\"RSA\",\"n\":\"" T_RSA2 \
	"\",\"e\":\"AQAB\"}]}"
/* A cache file of T_DOC_A fetched from https://127.0.0.1:1/jwks. */
#define T_CACHE_A	"{\"source\":\"https://127.0.0.1:1/jwks\",\"jwks\":" \
	T_DOC_A "}\n"
#define T_NPROV	JWT_MAX_PROVIDERS

/*
 * A configuration built by hand: providers 0..n-1.  Each test keeps two or
 * more, as the master does across a reload (the old one must still be
 * there while jwks_reconfigure() compares with it).
 */
struct tconf {
	struct config		 tc_conf;
	struct jwt_provider	 tc_jp[T_NPROV];
	char			 tc_names[T_NPROV][16];
	char			 tc_paths[T_NPROV][128];
};

/* A state directory, a segment, an event base, configurations. */
struct fix {
	char			 f_dir[64];
	struct shm_header	*f_shm;
	struct event_base	*f_base;
	struct tconf		 f_tc[3];
};

/* path of name in the fixture's directory into buf. */
static const char *
path_of(struct fix *f, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", f->f_dir, name);
	return (buf);
}

/* Write doc to the fixture's file name. */
static void
put_file(struct fix *f, const char *name, const char *doc)
{
	char	 path[128];
	FILE	*fp;

	assert_non_null(fp = fopen(path_of(f, name, path, sizeof(path)), "w"));
	assert_int_equal(fputs(doc, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
}

/* Provider k of tc named NAME reading its keys from the file FILE. */
static struct jwt_provider *
prov_file(struct fix *f, struct tconf *tc, int k, const char *name,
    const char *file)
{
	struct jwt_provider	*jp = &tc->tc_jp[k];

	memset(jp, 0, sizeof(*jp));
	snprintf(tc->tc_names[k], sizeof(tc->tc_names[k]), "%s", name);
	path_of(f, file, tc->tc_paths[k], sizeof(tc->tc_paths[k]));
	jp->jp_name = tc->tc_names[k];
	jp->jp_index = k;
	jp->jp_refresh = JWT_DEFAULT_REFRESH;
	jp->jp_jwks_path = tc->tc_paths[k];
	return (jp);
}

/* Provider k of tc named NAME fetching url. */
static struct jwt_provider *
prov_url(struct fix *f, struct tconf *tc, int k, const char *name,
    const char *url)
{
	struct jwt_provider	*jp = prov_file(f, tc, k, name, "unused");

	snprintf(tc->tc_paths[k], sizeof(tc->tc_paths[k]), "%s", url);
	jp->jp_jwks_path = NULL;
	jp->jp_jwks_url = tc->tc_paths[k];
	return (jp);
}

/* tc as a configuration of its first n providers. */
static struct config *
conf_of(struct fix *f, struct tconf *tc, size_t n)
{
	tc->tc_conf.c_state_dir = f->f_dir;
	tc->tc_conf.c_shutdown_timeout = 30000;
	tc->tc_conf.c_jwt = tc->tc_jp;
	tc->tc_conf.c_njwt = n;
	return (&tc->tc_conf);
}

static int
setup(void **state)
{
	struct fix	*f;
	char		 err[256];

	assert_non_null(f = calloc(1, sizeof(*f)));
	snprintf(f->f_dir, sizeof(f->f_dir), "/tmp/test_jwks.XXXXXX");
	assert_non_null(mkdtemp(f->f_dir));
	assert_non_null(f->f_shm = shm_create(16, 16));
	assert_non_null(f->f_base = event_base_new());
	assert_int_equal(log_init(LOG_TO_STDERR, LOGLEVEL_WARN, "test", err,
	    sizeof(err)), 0);
	*state = f;
	return (0);
}

static int
teardown(void **state)
{
	struct fix	*f = *state;
	char		 cmd[128];

	event_base_free(f->f_base);
	shm_destroy(f->f_shm);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->f_dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return (0);
}

/* A set whose every byte says v (generation v), for torn-read checks. */
static void
set_fill(struct jwk_set *set, unsigned v)
{
	memset(set, (int)(v & 0xff), sizeof(*set));
	set->s_nkeys = v % JWK_MAX_KEYS + 1;
	set->s_skipped = v;
}

/* Is set one set_fill(v) made, for its own v? */
static int
set_whole(const struct jwk_set *set, uint64_t gen)
{
	const uint8_t	*b = (const uint8_t *)set->s_keys;
	size_t		 i;

	if (set->s_skipped != gen || set->s_nkeys != gen % JWK_MAX_KEYS + 1)
		return (0);
	for (i = 0; i < sizeof(set->s_keys); i++)
		if (b[i] != (gen & 0xff))
			return (0);
	return (1);
}

/* A bare master record on slot i of the fixture's segment. */
static struct jwks *
bare_jwks(struct fix *f)
{
	struct jwks	*j;
	int		 i;

	assert_non_null(j = calloc(1, sizeof(*j)));
	j->j_shm = f->f_shm;
	j->j_base = f->f_base;
	for (i = 0; i < JWT_MAX_PROVIDERS; i++) {
		j->j_prov[i].p_jwks = j;
		j->j_prov[i].p_index = i;
	}
	return (j);
}

/* Publish, find, read; a read during a write fails, then succeeds. */
static void
test_seqlock(void **state)
{
	struct fix		*f = *state;
	struct jwks		*j = bare_jwks(f);
	struct jwks_prov	*p = &j->j_prov[2];
	struct jwks_slot	*s;
	struct jwk_set		 set;
	uint64_t		 gen;
	uint32_t		 st;

	assert_int_equal(jwks_slot_find(f->f_shm, "entra"), -1);
	assert_int_equal(jwks_slot_read(f->f_shm, 2, &set, &gen, &st), -1);
	snprintf(p->p_name, sizeof(p->p_name), "entra");
	set_fill(&p->p_set, 7);
	p->p_generation = 7;
	p->p_state = JWKS_OK;
	slot_publish(p, 1, 1234);
	assert_int_equal(jwks_slot_find(f->f_shm, "entra"), 2);
	assert_int_equal(jwks_slot_find(f->f_shm, "entr"), -1);
	assert_int_equal(jwks_slot_generation(f->f_shm, 2), 7);
	assert_int_equal(jwks_slot_read(f->f_shm, 2, &set, &gen, &st), 0);
	assert_int_equal(gen, 7);
	assert_int_equal(st, JWKS_OK);
	assert_true(set_whole(&set, 7));
	assert_int_equal(shm_jwks(f->f_shm)[2].js_updated, 1234);

	/* A writer in the middle (or dead there): refused, not waited on. */
	s = slot_begin(p);
	assert_int_equal(s->js_seq & 1, 1);
	assert_int_equal(jwks_slot_read(f->f_shm, 2, &set, &gen, &st), -1);
	assert_int_equal(jwks_slot_find(f->f_shm, "entra"), -1);
	slot_end(p, s);
	assert_int_equal(s->js_seq & 1, 0);
	assert_int_equal(jwks_slot_read(f->f_shm, 2, &set, &gen, &st), 0);

	/* The master counts js_seq itself: a worker's scribble is ignored. */
	s->js_seq = 12345;
	slot_publish(p, 0, 0);
	assert_int_equal(s->js_seq & 1, 0);
	assert_int_equal(s->js_seq, p->p_seq);

	/* A slot whose key count is impossible is not handed out. */
	s->js_set.s_nkeys = JWK_MAX_KEYS + 1;
	assert_int_equal(jwks_slot_read(f->f_shm, 2, &set, &gen, &st), -1);
	free(j);
}

/*
 * A writer in another process publishes set_fill(v) as generation v for
 * v = 1..N, as fast as it can, while this process reads: every read that
 * succeeds must be one whole set, of the generation it came with, never
 * going backwards.
 */
static void
test_seqlock_concurrent(void **state)
{
	struct fix		*f = *state;
	struct jwks		*j = bare_jwks(f);
	struct jwks_prov	*p = &j->j_prov[0];
	struct jwk_set		 set;
	uint64_t		 gen, last = 0;
	uint32_t		 st;
	unsigned		 v, good = 0;
	pid_t			 pid;
	int			 status;

	snprintf(p->p_name, sizeof(p->p_name), "race");
	set_fill(&p->p_set, 0);
	slot_publish(p, 1, 0);
	if ((pid = fork()) == 0) {
		for (v = 1; v <= 20000; v++) {
			set_fill(&p->p_set, v);
			p->p_generation = v;
			slot_publish(p, 1, 0);
		}
		_exit(0);
	}
	assert_true(pid > 0);
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (jwks_slot_read(f->f_shm, 0, &set, &gen, &st) == -1)
			continue;
		assert_true(set_whole(&set, gen));
		assert_true(gen >= last);
		last = gen;
		good++;
	}
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(jwks_slot_read(f->f_shm, 0, &set, &gen, &st), 0);
	assert_int_equal(gen, 20000);
	assert_true(set_whole(&set, gen));
	assert_true(good > 0);
	free(j);
}

/* The early re-fetch handshake between workers and the master's tick. */
static void
test_refetch(void **state)
{
	struct fix		*f = *state;
	struct jwks		*j;
	struct jwks_slot	*s;
	struct jwks_prov	*p;
	char			 err[256];
	int64_t			 asked;
	int			 i;

	put_file(f, "a.json", T_DOC_A);
	prov_file(f, &f->f_tc[0], 0, "a", "a.json");
	assert_non_null(j = jwks_start(f->f_base, f->f_shm,
	    conf_of(f, &f->f_tc[0], 1), err, sizeof(err)));
	i = jwks_slot_find(f->f_shm, "a");
	assert_int_equal(i, 0);
	s = &shm_jwks(f->f_shm)[i];
	p = &j->j_prov[i];
	assert_int_equal(jwks_slot_generation(f->f_shm, i), 1);

	/* Never re-fetched: asked, worth waiting for, not done yet. */
	asked = t_mono;
	assert_int_equal(jwks_refetch(f->f_shm, i, asked), 1);
	assert_int_equal(s->js_refetch_req, 1);
	assert_int_equal(jwks_refetch_done(f->f_shm, i, asked), 0);

	/* Busy: worth waiting for, nothing more asked. */
	s->js_refetch_busy = 1;
	assert_int_equal(jwks_refetch(f->f_shm, i, asked), 1);
	assert_int_equal(s->js_refetch_req, 1);
	assert_int_equal(jwks_refetch_done(f->f_shm, i, asked), 0);
	s->js_refetch_busy = 0;

	/* The master's tick: fetched (a file: at once), busy cleared. */
	put_file(f, "a.json", T_DOC_B);
	t_mono += 10;
	jwks_tick_cb(-1, EV_TIMEOUT, j);
	assert_int_equal(s->js_refetch_busy, 0);
	assert_int_equal(s->js_refetch_last, t_mono);
	assert_int_equal(jwks_slot_generation(f->f_shm, i), 2);
	assert_int_equal(jwks_refetch_done(f->f_shm, i, asked), 1);
	/* A request after that re-fetch started is not answered by it. */
	assert_int_equal(jwks_refetch_done(f->f_shm, i, t_mono + 1), 0);

	/* Within JWKS_REFETCH_MIN_MS: do not wait, nothing asked. */
	t_mono += JWKS_REFETCH_MIN_MS - 1;
	assert_int_equal(jwks_refetch(f->f_shm, i, t_mono), 0);
	assert_int_equal(s->js_refetch_req, 1);

	/* A worker that asks anyway: noted, not fetched (master's clock). */
	SHM_ADD(&s->js_refetch_req, 1);
	put_file(f, "a.json", T_DOC_A);
	jwks_tick_cb(-1, EV_TIMEOUT, j);
	assert_int_equal(p->p_req_seen, 2);
	assert_int_equal(jwks_slot_generation(f->f_shm, i), 2);
	/* Nor does a forged js_refetch_last in the slot change that. */
	s->js_refetch_last = 1;
	jwks_tick_cb(-1, EV_TIMEOUT, j);
	assert_int_equal(jwks_slot_generation(f->f_shm, i), 2);

	/* Once the time has passed: asked and fetched again. */
	t_mono += 1;
	assert_int_equal(jwks_refetch(f->f_shm, i, t_mono), 1);
	jwks_tick_cb(-1, EV_TIMEOUT, j);
	assert_int_equal(jwks_slot_generation(f->f_shm, i), 3);
	assert_int_equal(jwks_refetch_done(f->f_shm, i, t_mono), 1);
	/* The persistent tick runs while there are providers. */
	assert_true(evtimer_pending(j->j_tick, NULL));
	jwks_free(j);
}

/* The slot named name, read: its generation, state and keys. */
static uint64_t
slot_gen(struct fix *f, const char *name, uint32_t *state, uint32_t *nkeys)
{
	struct jwk_set	 set;
	uint64_t	 gen;
	int		 i;

	if ((i = jwks_slot_find(f->f_shm, name)) == -1)
		return (0);
	assert_int_equal(jwks_slot_read(f->f_shm, i, &set, &gen, state), 0);
	*nkeys = set.s_nkeys;
	return (gen);
}

/* Kept providers keep slot and keys, new ones take free slots, removed
 * ones are retired, then cleared. */
static void
test_reconfigure(void **state)
{
	struct fix	*f = *state;
	struct tconf	*t1 = &f->f_tc[0], *t2 = &f->f_tc[1], *t3 = &f->f_tc[2];
	struct jwks	*j;
	char		 err[256];
	uint32_t	 st, n;
	int		 i;

	put_file(f, "a.json", T_DOC_A);
	put_file(f, "b.json", T_DOC_B);
	put_file(f, "b2.json", T_DOC_A);
	put_file(f, "c.json", T_DOC_A);
	put_file(f, "d.json", T_DOC_B);
	prov_file(f, t1, 0, "a", "a.json");
	prov_file(f, t1, 1, "b", "b.json");
	prov_file(f, t1, 2, "c", "c.json");
	assert_non_null(j = jwks_start(f->f_base, f->f_shm, conf_of(f, t1, 3),
	    err, sizeof(err)));
	assert_int_equal(jwks_slot_find(f->f_shm, "a"), 0);
	assert_int_equal(jwks_slot_find(f->f_shm, "b"), 1);
	assert_int_equal(jwks_slot_find(f->f_shm, "c"), 2);
	assert_int_equal(slot_gen(f, "a", &st, &n), 1);
	assert_int_equal(st, JWKS_OK);
	assert_int_equal(n, 2);	/* the "oct" key skipped */

	/* New order: b (another file), d, a (as it was); c removed. */
	prov_file(f, t2, 0, "b", "b2.json");
	prov_file(f, t2, 1, "d", "d.json");
	prov_file(f, t2, 2, "a", "a.json");
	t_mono += 5;
	assert_int_equal(jwks_reconfigure(j, conf_of(f, t2, 3), err,
	    sizeof(err)), 0);
	assert_int_equal(jwks_slot_find(f->f_shm, "a"), 0);
	assert_int_equal(jwks_slot_find(f->f_shm, "b"), 1);
	assert_int_equal(slot_gen(f, "a", &st, &n), 1);	/* kept */
	assert_ptr_equal(j->j_prov[0].p_conf, &t2->tc_jp[2]);
	/* b's source changed: dropped (a generation), then re-read now. */
	assert_int_equal(slot_gen(f, "b", &st, &n), 3);
	assert_int_equal(n, 2);
	/* c stays readable for the old workers, and d does not take it. */
	assert_int_equal(jwks_slot_find(f->f_shm, "c"), 2);
	assert_int_equal(jwks_slot_find(f->f_shm, "d"), 3);
	assert_int_equal(slot_gen(f, "d", &st, &n), 1);
	assert_null(j->j_prov[2].p_conf);
	assert_int_equal(j->j_prov[2].p_retire_ms, t_mono + 30000 +
	    JWKS_RETIRE_SLACK_MS);
	assert_true(evtimer_pending(j->j_prov[2].p_timer, NULL));
	/* Its time comes: cleared under the seqlock, free again. */
	prov_timer_cb(-1, EV_TIMEOUT, &j->j_prov[2]);
	assert_int_equal(jwks_slot_find(f->f_shm, "c"), -1);
	assert_int_equal(shm_jwks(f->f_shm)[2].js_used, 0);
	assert_int_equal(shm_jwks(f->f_shm)[2].js_state, JWKS_NONE);
	assert_int_equal(shm_jwks(f->f_shm)[2].js_set.s_nkeys, 0);
	assert_int_equal(shm_jwks(f->f_shm)[2].js_seq & 1, 0);
	assert_int_equal(j->j_prov[2].p_name[0], '\0');

	/* A removed provider back before its slot was cleared: revived. */
	prov_file(f, t3, 0, "b", "b2.json");
	prov_file(f, t3, 1, "d", "d.json");
	assert_int_equal(jwks_reconfigure(j, conf_of(f, t3, 2), err,
	    sizeof(err)), 0);	/* a removed */
	assert_null(j->j_prov[0].p_conf);
	assert_int_equal(jwks_slot_find(f->f_shm, "a"), 0);
	assert_int_equal(jwks_reconfigure(j, conf_of(f, t2, 3), err,
	    sizeof(err)), 0);	/* a back (a rollback, say) */
	assert_ptr_equal(j->j_prov[0].p_conf, &t2->tc_jp[2]);
	assert_int_equal(j->j_prov[0].p_retire_ms, 0);
	assert_int_equal(jwks_slot_find(f->f_shm, "a"), 0);
	assert_int_equal(slot_gen(f, "a", &st, &n), 1);
	assert_int_equal(st, JWKS_OK);
	/* And a free slot is taken again by the next new name. */
	prov_file(f, t3, 2, "e", "a.json");
	assert_int_equal(jwks_reconfigure(j, conf_of(f, t3, 3), err,
	    sizeof(err)), 0);
	assert_int_equal(jwks_slot_find(f->f_shm, "e"), 2);
	/* A slot's generation never goes back, whoever holds it. */
	assert_int_equal(slot_gen(f, "e", &st, &n), 2);

	/* No provider: no tick. */
	assert_int_equal(jwks_reconfigure(j, conf_of(f, t1, 0), err,
	    sizeof(err)), 0);
	assert_false(evtimer_pending(j->j_tick, NULL));
	for (i = 0; i < JWT_MAX_PROVIDERS; i++)
		assert_null(j->j_prov[i].p_conf);
	jwks_free(j);
}

/* Every slot taken (or retired): a new provider is refused, nothing
 * changes. */
static void
test_reconfigure_full(void **state)
{
	struct fix	*f = *state;
	struct jwks	*j;
	char		 err[256], name[16];
	int		 k;

	put_file(f, "p.json", T_DOC_A);
	for (k = 0; k < T_NPROV; k++) {
		snprintf(name, sizeof(name), "p%d", k);
		prov_file(f, &f->f_tc[0], k, name, "p.json");
		prov_file(f, &f->f_tc[1], k, name, "p.json");
	}
	assert_non_null(j = jwks_start(f->f_base, f->f_shm,
	    conf_of(f, &f->f_tc[0], T_NPROV), err, sizeof(err)));
	prov_file(f, &f->f_tc[1], 5, "new", "p.json");
	assert_int_equal(jwks_reconfigure(j, conf_of(f, &f->f_tc[1], T_NPROV),
	    err, sizeof(err)), -1);
	assert_non_null(strstr(err, "jwt_provider new: no free key slot"));
	assert_int_equal(jwks_slot_find(f->f_shm, "p5"), 5);
	assert_ptr_equal(j->j_prov[5].p_conf, &f->f_tc[0].tc_jp[5]);
	assert_int_equal(j->j_prov[5].p_retire_ms, 0);
	assert_int_equal(jwks_slot_find(f->f_shm, "new"), -1);
	jwks_free(j);

	/* Without providers: no libcurl, no timer at all. */
	assert_non_null(j = jwks_start(f->f_base, f->f_shm,
	    conf_of(f, &f->f_tc[0], 0), err, sizeof(err)));
	assert_null(j->j_multi);
	assert_null(j->j_tick);
	assert_null(j->j_prov[0].p_timer);
	jwks_free(j);
}

/* The cache: saved crash-safely, loaded at start, symlinks refused. */
static void
test_cache(void **state)
{
	struct fix	*f = *state;
	struct jwks	*j;
	struct stat	 st;
	char		 err[256], path[128], buf[2048];
	uint32_t	 s, n;
	ssize_t		 len;
	int		 fd;

	/* A saved set, from a fetch over https (called directly here). */
	prov_url(f, &f->f_tc[0], 0, "idp", "https://127.0.0.1:1/jwks");
	assert_non_null(j = jwks_start(f->f_base, f->f_shm,
	    conf_of(f, &f->f_tc[0], 1), err, sizeof(err)));
	assert_int_equal(slot_gen(f, "idp", &s, &n), 0);
	assert_int_equal(s, JWKS_NONE);
	assert_int_equal(prov_parse(&j->j_prov[0], T_DOC_A, strlen(T_DOC_A),
	    "https://127.0.0.1:1/jwks", 1), 0);
	assert_int_equal(slot_gen(f, "idp", &s, &n), 1);
	assert_int_equal(s, JWKS_OK);
	path_of(f, "jwks-idp.json", path, sizeof(path));
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(lstat(path_of(f, "jwks-idp.json.tmp", buf,
	    sizeof(buf)), &st), -1);
	assert_true((fd = open(path, O_RDONLY)) >= 0);
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	/* The document as it came, wrapped with its source. */
	assert_int_equal(len, (ssize_t)strlen(T_CACHE_A));
	assert_memory_equal(buf, T_CACHE_A, strlen(T_CACHE_A));
	/* The same set again: no new generation. */
	assert_int_equal(prov_parse(&j->j_prov[0], T_DOC_A, strlen(T_DOC_A),
	    "https://127.0.0.1:1/jwks", 1), 0);
	assert_int_equal(slot_gen(f, "idp", &s, &n), 1);
	/* A bad document: old keys kept, stale. */
	assert_int_equal(prov_parse(&j->j_prov[0], "{", 1,
	    "https://127.0.0.1:1/jwks", 1), -1);
	assert_int_equal(slot_gen(f, "idp", &s, &n), 1);
	assert_int_equal(s, JWKS_STALE);
	jwks_free(j);

	/* A restart: the cache is published as stale at once. */
	memset(shm_jwks(f->f_shm), 0, sizeof(struct jwks_slot) *
	    JWT_MAX_PROVIDERS);
	assert_non_null(j = jwks_start(f->f_base, f->f_shm,
	    conf_of(f, &f->f_tc[0], 1), err, sizeof(err)));
	assert_int_equal(slot_gen(f, "idp", &s, &n), 1);
	assert_int_equal(s, JWKS_STALE);
	assert_int_equal(n, 2);
	jwks_free(j);

	/* A symbolic link in its place (even to a good file): refused. */
	put_file(f, "elsewhere.json", T_DOC_B);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(symlink(path_of(f, "elsewhere.json", buf,
	    sizeof(buf)), path), 0);
	memset(shm_jwks(f->f_shm), 0, sizeof(struct jwks_slot) *
	    JWT_MAX_PROVIDERS);
	assert_non_null(j = jwks_start(f->f_base, f->f_shm,
	    conf_of(f, &f->f_tc[0], 1), err, sizeof(err)));
	assert_int_equal(slot_gen(f, "idp", &s, &n), 0);
	assert_int_equal(s, JWKS_NONE);
	/* Saving replaces the link itself; its target is left alone. */
	assert_int_equal(prov_parse(&j->j_prov[0], T_DOC_A, strlen(T_DOC_A),
	    "https://127.0.0.1:1/jwks", 1), 0);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(stat(buf, &st), 0);
	assert_int_equal(st.st_size, (off_t)strlen(T_DOC_B));
	jwks_free(j);

	/*
	 * As root with a user: state_dir may be the user's, the cache may
	 * not (a compromised worker's keys would outlive a restart).
	 */
	if (geteuid() == 0) {
		f->f_tc[0].tc_conf.c_user = "kgtest";
		f->f_tc[0].tc_conf.c_uid = 54321;
		f->f_tc[0].tc_conf.c_gid = 54321;
		assert_int_equal(chown(f->f_dir, 54321, 54321), 0);
		memset(shm_jwks(f->f_shm), 0, sizeof(struct jwks_slot) *
		    JWT_MAX_PROVIDERS);
		assert_non_null(j = jwks_start(f->f_base, f->f_shm,
		    conf_of(f, &f->f_tc[0], 1), err, sizeof(err)));
		assert_int_equal(slot_gen(f, "idp", &s, &n), 1);
		assert_int_equal(s, JWKS_STALE);
		jwks_free(j);
		assert_int_equal(chown(path, 54321, 54321), 0);
		memset(shm_jwks(f->f_shm), 0, sizeof(struct jwks_slot) *
		    JWT_MAX_PROVIDERS);
		assert_non_null(j = jwks_start(f->f_base, f->f_shm,
		    conf_of(f, &f->f_tc[0], 1), err, sizeof(err)));
		assert_int_equal(slot_gen(f, "idp", &s, &n), 0);
		assert_int_equal(s, JWKS_NONE);
		/* What the master saves is its own, not the user's. */
		assert_int_equal(prov_parse(&j->j_prov[0], T_DOC_A,
		    strlen(T_DOC_A), "https://127.0.0.1:1/jwks", 1), 0);
		assert_int_equal(lstat(path, &st), 0);
		assert_int_equal(st.st_uid, 0);
		jwks_free(j);
		f->f_tc[0].tc_conf.c_user = NULL;
		assert_int_equal(chown(f->f_dir, 0, 0), 0);
	}

	/* A damaged cache: ignored. */
	put_file(f, "jwks-idp.json", "{\"keys\":[");
	memset(shm_jwks(f->f_shm), 0, sizeof(struct jwks_slot) *
	    JWT_MAX_PROVIDERS);
	assert_non_null(j = jwks_start(f->f_base, f->f_shm,
	    conf_of(f, &f->f_tc[0], 1), err, sizeof(err)));
	assert_int_equal(slot_gen(f, "idp", &s, &n), 0);
	assert_int_equal(s, JWKS_NONE);
	jwks_free(j);
}

/* Run f's loop until provider 0's transfer is over (at most 5 s). */
static void
run_transfer(struct fix *f, struct jwks *j)
{
	int	 i;

	for (i = 0; i < 500 && j->j_prov[0].p_stage != STAGE_IDLE; i++) {
		usleep(10000);
		event_base_loop(f->f_base, EVLOOP_NONBLOCK);
	}
	assert_int_equal(j->j_prov[0].p_stage, STAGE_IDLE);
}

/*
 * libcurl on the loop: a refused connection fails the fetch, keeps the
 * cached keys (stale), and schedules a retry with back-off; an http URL
 * is refused without a transfer.
 */
static void
test_fetch_fails(void **state)
{
	struct fix	*f = *state;
	struct jwks	*j;
	struct timeval	 tv, now;
	char		 err[256];
	uint32_t	 s, n;

	put_file(f, "jwks-idp.json", T_CACHE_A);
	/* Port 1 on the loopback: refused at once. */
	prov_url(f, &f->f_tc[0], 0, "idp", "https://127.0.0.1:1/jwks");
	assert_non_null(j = jwks_start(f->f_base, f->f_shm,
	    conf_of(f, &f->f_tc[0], 1), err, sizeof(err)));
	assert_int_equal(j->j_prov[0].p_stage, STAGE_JWKS);
	run_transfer(f, j);
	assert_int_equal(slot_gen(f, "idp", &s, &n), 1);
	assert_int_equal(s, JWKS_STALE);
	assert_int_equal(j->j_prov[0].p_failing, 1);
	assert_int_equal(j->j_prov[0].p_backoff_ms, JWKS_RETRY_MIN_MS);
	assert_true(evtimer_pending(j->j_prov[0].p_timer, &tv));
	event_base_gettimeofday_cached(f->f_base, &now);
	assert_true(tv.tv_sec - now.tv_sec <= 2);
	/* The retry fails too: the back-off doubles. */
	prov_fetch(&j->j_prov[0]);
	run_transfer(f, j);
	assert_int_equal(j->j_prov[0].p_backoff_ms, 2 * JWKS_RETRY_MIN_MS);
	jwks_free(j);

	/* Discovery at an http issuer: refused before any transfer. */
	put_file(f, "jwks-idp.json", "{\"source\":\"discovery:"
	    "http://127.0.0.1:1/tenant/.well-known/openid-configuration\","
	    "\"jwks\":" T_DOC_A "}");
	prov_url(f, &f->f_tc[0], 0, "idp", "https://unused");
	f->f_tc[0].tc_jp[0].jp_jwks_url = NULL;
	f->f_tc[0].tc_jp[0].jp_issuers[0] = "http://127.0.0.1:1/tenant";
	f->f_tc[0].tc_jp[0].jp_nissuers = 1;
	memset(shm_jwks(f->f_shm), 0, sizeof(struct jwks_slot) *
	    JWT_MAX_PROVIDERS);
	assert_non_null(j = jwks_start(f->f_base, f->f_shm,
	    conf_of(f, &f->f_tc[0], 1), err, sizeof(err)));
	assert_int_equal(j->j_prov[0].p_stage, STAGE_IDLE);
	assert_int_equal(j->j_prov[0].p_failing, 1);
	assert_string_equal(j->j_prov[0].p_url,
	    "http://127.0.0.1:1/tenant/.well-known/openid-configuration");
	assert_int_equal(slot_gen(f, "idp", &s, &n), 1);	/* cache */
	jwks_free(j);
}

/* Provider p has no keys at all, in its record and in its slot. */
static void
assert_dropped(struct fix *f, struct jwks_prov *p, uint64_t gen)
{
	uint32_t	 st, n;

	assert_int_equal(slot_gen(f, p->p_name, &st, &n), gen);
	assert_int_equal(st, JWKS_NONE);
	assert_int_equal(n, 0);
	assert_int_equal(p->p_haskeys, 0);
	assert_int_equal(p->p_saved, 0);
	assert_int_equal(p->p_set.s_nkeys, 0);
}

/*
 * A reload that changes a provider's key source (jwks=, ca=, or the
 * issuers and tenants that make its discovery URL) drops its keys at once:
 * slot empty, JWKS_NONE, a new generation, until the new source delivers
 * (a failed fetch of it does not bring the old keys back).  Any other
 * change keeps them.
 */
static void
test_reconfigure_source(void **state)
{
	struct fix		*f = *state;
	struct tconf		*t1 = &f->f_tc[0], *t2 = &f->f_tc[1];
	struct jwks		*j;
	struct jwks_prov	*p;
	struct jwt_provider	*jp;
	char			 err[256];
	uint32_t		 st, n;

	jp = prov_url(f, t1, 0, "idp", "https://127.0.0.1:1/jwks");
	jp->jp_issuers[0] = "https://idp/";
	jp->jp_nissuers = 1;
	assert_non_null(j = jwks_start(f->f_base, f->f_shm, conf_of(f, t1, 1),
	    err, sizeof(err)));
	p = &j->j_prov[0];
	run_transfer(f, j);
	assert_int_equal(prov_parse(p, T_DOC_A, strlen(T_DOC_A),
	    "https://127.0.0.1:1/jwks", 1), 0);
	assert_int_equal(slot_gen(f, "idp", &st, &n), 1);

	/* Other options, and the issuers beside jwks=: keys kept, no fetch. */
	jp = prov_url(f, t2, 0, "idp", "https://127.0.0.1:1/jwks");
	jp->jp_issuers[0] = "https://other-idp/";
	jp->jp_issuers[1] = "https://idp/";
	jp->jp_nissuers = 2;
	jp->jp_leeway = 120;
	jp->jp_refresh = 60;
	jp->jp_identity = "email";
	assert_int_equal(jwks_reconfigure(j, conf_of(f, t2, 1), err,
	    sizeof(err)), 0);
	assert_ptr_equal(p->p_conf, jp);
	assert_int_equal(p->p_stage, STAGE_IDLE);
	assert_int_equal(slot_gen(f, "idp", &st, &n), 1);
	assert_int_equal(st, JWKS_OK);
	assert_int_equal(n, 2);
	assert_int_equal(p->p_haskeys, 1);

	/* Another jwks= URL: dropped at once, fetched at once. */
	prov_url(f, t1, 0, "idp", "https://127.0.0.1:1/other");
	assert_int_equal(jwks_reconfigure(j, conf_of(f, t1, 1), err,
	    sizeof(err)), 0);
	assert_dropped(f, p, 2);
	assert_int_equal(p->p_stage, STAGE_JWKS);
	assert_string_equal(p->p_url, "https://127.0.0.1:1/other");
	/* It fails: still no keys, not the old ones as stale. */
	run_transfer(f, j);
	assert_dropped(f, p, 2);
	assert_int_equal(p->p_failing, 1);
	/* It delivers: keys again, under a new generation. */
	assert_int_equal(prov_parse(p, T_DOC_A, strlen(T_DOC_A),
	    "https://127.0.0.1:1/other", 1), 0);
	assert_int_equal(slot_gen(f, "idp", &st, &n), 3);
	assert_int_equal(st, JWKS_OK);

	/* Another ca=: whom the fetch trusts changed, so did the keys. */
	jp = prov_url(f, t2, 0, "idp", "https://127.0.0.1:1/other");
	jp->jp_ca = "/etc/other-ca.pem";
	assert_int_equal(jwks_reconfigure(j, conf_of(f, t2, 1), err,
	    sizeof(err)), 0);
	assert_dropped(f, p, 4);
	assert_string_equal(p->p_source,
	    "https://127.0.0.1:1/other\nca=/etc/other-ca.pem");
	run_transfer(f, j);
	assert_dropped(f, p, 4);
	/* Back (a rollback): the cache of that source, stale, at once. */
	prov_url(f, t1, 0, "idp", "https://127.0.0.1:1/other");
	assert_int_equal(jwks_reconfigure(j, conf_of(f, t1, 1), err,
	    sizeof(err)), 0);
	assert_int_equal(slot_gen(f, "idp", &st, &n), 6);
	assert_int_equal(st, JWKS_STALE);
	assert_int_equal(n, 2);
	run_transfer(f, j);

	/* Discovery: the issuer, then the tenant, make the source. */
	jp = prov_url(f, t1, 0, "idp", "unused");
	jp->jp_jwks_url = NULL;
	jp->jp_issuers[0] = "https://127.0.0.1:1/{tenantid}/v2.0";
	jp->jp_nissuers = 1;
	jp->jp_tenants[0] = "11111111-1111-1111-1111-111111111111";
	jp->jp_ntenants = 1;
	assert_int_equal(jwks_reconfigure(j, conf_of(f, t1, 1), err,
	    sizeof(err)), 0);
	assert_string_equal(p->p_source, "discovery:https://127.0.0.1:1/"
	    "11111111-1111-1111-1111-111111111111/v2.0/.well-known/"
	    "openid-configuration");
	run_transfer(f, j);
	assert_int_equal(prov_parse(p, T_DOC_B, strlen(T_DOC_B),
	    "https://127.0.0.1:1/keys", 1), 0);
	assert_int_equal(slot_gen(f, "idp", &st, &n), 8);
	assert_int_equal(st, JWKS_OK);
	/* A second issuer does not change the discovery URL: kept. */
	jp = prov_url(f, t2, 0, "idp", "unused");
	jp->jp_jwks_url = NULL;
	jp->jp_issuers[0] = t1->tc_jp[0].jp_issuers[0];
	jp->jp_issuers[1] = "https://127.0.0.1:1/extra";
	jp->jp_nissuers = 2;
	jp->jp_tenants[0] = t1->tc_jp[0].jp_tenants[0];
	jp->jp_ntenants = 1;
	assert_int_equal(jwks_reconfigure(j, conf_of(f, t2, 1), err,
	    sizeof(err)), 0);
	assert_int_equal(slot_gen(f, "idp", &st, &n), 8);
	assert_int_equal(st, JWKS_OK);
	/* Another tenant does. */
	jp->jp_tenants[0] = "22222222-2222-2222-2222-222222222222";
	memcpy(&t1->tc_jp[0], jp, sizeof(*jp));
	assert_int_equal(jwks_reconfigure(j, conf_of(f, t1, 1), err,
	    sizeof(err)), 0);
	assert_dropped(f, p, 9);
	assert_int_equal(p->p_stage, STAGE_DISCOVERY);
	run_transfer(f, j);
	jwks_free(j);

	/* jwks= a file, changed to a missing one: no keys from then on. */
	memset(shm_jwks(f->f_shm), 0, sizeof(struct jwks_slot) *
	    JWT_MAX_PROVIDERS);
	put_file(f, "a.json", T_DOC_A);
	prov_file(f, t1, 0, "file", "a.json");
	assert_non_null(j = jwks_start(f->f_base, f->f_shm, conf_of(f, t1, 1),
	    err, sizeof(err)));
	assert_int_equal(slot_gen(f, "file", &st, &n), 1);
	assert_int_equal(st, JWKS_OK);
	prov_file(f, t2, 0, "file", "missing.json");
	assert_int_equal(jwks_reconfigure(j, conf_of(f, t2, 1), err,
	    sizeof(err)), 0);
	assert_dropped(f, &j->j_prov[0], 2);
	assert_int_equal(j->j_prov[0].p_failing, 1);
	/* A retired provider back with another source: dropped too. */
	assert_int_equal(jwks_reconfigure(j, conf_of(f, t1, 0), err,
	    sizeof(err)), 0);
	prov_file(f, t1, 0, "file", "a.json");
	assert_int_equal(jwks_reconfigure(j, conf_of(f, t1, 1), err,
	    sizeof(err)), 0);
	assert_int_equal(slot_gen(f, "file", &st, &n), 4);
	assert_int_equal(st, JWKS_OK);
	assert_int_equal(jwks_reconfigure(j, conf_of(f, t1, 0), err,
	    sizeof(err)), 0);
	assert_int_equal(jwks_reconfigure(j, conf_of(f, t2, 1), err,
	    sizeof(err)), 0);
	assert_dropped(f, &j->j_prov[0], 5);
	jwks_free(j);
}

/*
 * The cache records its source: a start loads it only for that source; a
 * file of another source, or of before sources were recorded, or of more
 * members, is ignored and replaced by the next good fetch.
 */
static void
test_cache_source(void **state)
{
	struct fix	*f = *state;
	struct jwks	*j;
	char		 err[256], path[128], buf[2048];
	uint32_t	 s, n;
	ssize_t		 len;
	int		 fd;

	/* Keys of the old IdP, cached. */
	prov_url(f, &f->f_tc[0], 0, "idp", "https://127.0.0.1:1/jwks");
	assert_non_null(j = jwks_start(f->f_base, f->f_shm,
	    conf_of(f, &f->f_tc[0], 1), err, sizeof(err)));
	run_transfer(f, j);
	assert_int_equal(prov_parse(&j->j_prov[0], T_DOC_A, strlen(T_DOC_A),
	    "https://127.0.0.1:1/jwks", 1), 0);
	jwks_free(j);

	/* Moved to a new IdP, restarted while it is unreachable: no keys. */
	prov_url(f, &f->f_tc[1], 0, "idp", "https://127.0.0.1:1/new");
	memset(shm_jwks(f->f_shm), 0, sizeof(struct jwks_slot) *
	    JWT_MAX_PROVIDERS);
	assert_non_null(j = jwks_start(f->f_base, f->f_shm,
	    conf_of(f, &f->f_tc[1], 1), err, sizeof(err)));
	assert_int_equal(slot_gen(f, "idp", &s, &n), 0);
	assert_int_equal(s, JWKS_NONE);
	assert_int_equal(j->j_prov[0].p_haskeys, 0);
	run_transfer(f, j);
	assert_int_equal(slot_gen(f, "idp", &s, &n), 0);
	/* Its first good fetch replaces the file. */
	assert_int_equal(prov_parse(&j->j_prov[0], T_DOC_B, strlen(T_DOC_B),
	    "https://127.0.0.1:1/new", 1), 0);
	jwks_free(j);
	path_of(f, "jwks-idp.json", path, sizeof(path));
	assert_true((fd = open(path, O_RDONLY)) >= 0);
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(len > 0);
	buf[len] = '\0';
	assert_string_equal(buf, "{\"source\":\"https://127.0.0.1:1/new\","
	    "\"jwks\":" T_DOC_B "}\n");

	/* The same source at the next start: loaded, stale. */
	memset(shm_jwks(f->f_shm), 0, sizeof(struct jwks_slot) *
	    JWT_MAX_PROVIDERS);
	assert_non_null(j = jwks_start(f->f_base, f->f_shm,
	    conf_of(f, &f->f_tc[1], 1), err, sizeof(err)));
	assert_int_equal(slot_gen(f, "idp", &s, &n), 1);
	assert_int_equal(s, JWKS_STALE);
	assert_int_equal(n, 1);
	jwks_free(j);
	/* The same URL with a ca=: another source. */
	f->f_tc[1].tc_jp[0].jp_ca = "/etc/ca.pem";
	memset(shm_jwks(f->f_shm), 0, sizeof(struct jwks_slot) *
	    JWT_MAX_PROVIDERS);
	assert_non_null(j = jwks_start(f->f_base, f->f_shm,
	    conf_of(f, &f->f_tc[1], 1), err, sizeof(err)));
	assert_int_equal(slot_gen(f, "idp", &s, &n), 0);
	jwks_free(j);
	f->f_tc[1].tc_jp[0].jp_ca = NULL;

	/* Files not of the wrapper's exact form: ignored. */
	put_file(f, "jwks-idp.json", T_DOC_B);	/* before sources */
	memset(shm_jwks(f->f_shm), 0, sizeof(struct jwks_slot) *
	    JWT_MAX_PROVIDERS);
	assert_non_null(j = jwks_start(f->f_base, f->f_shm,
	    conf_of(f, &f->f_tc[1], 1), err, sizeof(err)));
	assert_int_equal(slot_gen(f, "idp", &s, &n), 0);
	jwks_free(j);
	put_file(f, "jwks-idp.json", "{\"source\":\"https://127.0.0.1:1/new\","
	    "\"jwks\":" T_DOC_B ",\"x\":1}");
	memset(shm_jwks(f->f_shm), 0, sizeof(struct jwks_slot) *
	    JWT_MAX_PROVIDERS);
	assert_non_null(j = jwks_start(f->f_base, f->f_shm,
	    conf_of(f, &f->f_tc[1], 1), err, sizeof(err)));
	assert_int_equal(slot_gen(f, "idp", &s, &n), 0);
	jwks_free(j);
	put_file(f, "jwks-idp.json", "{\"source\":\"https://127.0.0.1:1/new\","
	    "\"source\":\"https://127.0.0.1:1/new\",\"jwks\":" T_DOC_B "}");
	memset(shm_jwks(f->f_shm), 0, sizeof(struct jwks_slot) *
	    JWT_MAX_PROVIDERS);
	assert_non_null(j = jwks_start(f->f_base, f->f_shm,
	    conf_of(f, &f->f_tc[1], 1), err, sizeof(err)));
	assert_int_equal(slot_gen(f, "idp", &s, &n), 0);
	jwks_free(j);
}

/*
 * The body callback stops at JWK_DOC_MAX; discovery's issuer and jwks_uri
 * checks.
 */
static void
test_body_and_discovery(void **state)
{
	struct fix		*f = *state;
	struct jwks		*j = bare_jwks(f);
	struct jwks_prov	*p = &j->j_prov[0];
	static char		 chunk[64 * 1024];
	char			 why[256];
	const char		*doc;
	size_t			 total = 0;
	struct jwt_provider	 jp;
	static char		 tmpl[] = "https://idp/{tenantid}/v2.0";
	static char		 guid[] = "72f988bf-86f1-41af-91ab-2d7cd011db47";
	static char		 plain[] = "https://idp/plain";

	memset(chunk, 'x', sizeof(chunk));
	while (total + sizeof(chunk) <= JWK_DOC_MAX) {
		assert_int_equal(curl_body_cb(chunk, 1, sizeof(chunk), p),
		    sizeof(chunk));
		total += sizeof(chunk);
	}
	assert_int_equal(p->p_len, JWK_DOC_MAX);
	assert_int_equal(curl_body_cb(chunk, 1, 1, p), 0);
	assert_int_equal(p->p_toobig, 1);
	free(p->p_buf);
	p->p_buf = NULL;
	p->p_len = p->p_cap = 0;

	memset(&jp, 0, sizeof(jp));
	jp.jp_issuers[0] = tmpl;
	jp.jp_nissuers = 1;
	jp.jp_tenants_any = 1;
	p->p_conf = &jp;
	doc = "{\"issuer\":\"https://idp/{tenantid}/v2.0\","
	    "\"jwks_uri\":\"https://idp/keys\"}";
	assert_int_equal(curl_body_cb((char *)doc, 1, strlen(doc), p),
	    strlen(doc));
	assert_int_equal(discovery_uri(p, why, sizeof(why)), 0);
	assert_string_equal(p->p_jwks_uri, "https://idp/keys");
	/*
	 * The document must name the issuer it was asked for: the template
	 * (Entra's "common" document) or its tenant; not another one.
	 */
	assert_true(discovery_issuer_ok(&jp, "https://idp/common/v2.0", 23));
	assert_false(discovery_issuer_ok(&jp, "https://idp/other/v2.0", 22));
	assert_false(discovery_issuer_ok(&jp, "https://idp/common/v2.0/",
	    24));
	jp.jp_tenants_any = 0;
	jp.jp_tenants[0] = guid;
	jp.jp_ntenants = 1;
	assert_true(discovery_issuer_ok(&jp, "https://idp/"
	    "72F988BF-86F1-41AF-91AB-2D7CD011DB47/v2.0", 53));
	assert_false(discovery_issuer_ok(&jp, "https://idp/common/v2.0", 23));
	jp.jp_issuers[0] = plain;
	assert_true(discovery_issuer_ok(&jp, plain, strlen(plain)));
	assert_false(discovery_issuer_ok(&jp, "https://idp/x\0", 14));
	p->p_len = 0;
	doc = "{\"issuer\":\"https://evil/\",\"jwks_uri\":\"https://evil/k\"}";
	curl_body_cb((char *)doc, 1, strlen(doc), p);
	assert_int_equal(discovery_uri(p, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "issuer"));
	assert_string_equal(p->p_jwks_uri, "https://idp/keys");
	jp.jp_issuers[0] = tmpl;
	jp.jp_tenants_any = 1;
	p->p_len = 0;
	doc = "{\"issuer\":\"https://idp/{tenantid}/v2.0\","
	    "\"jwks_uri\":\"http://idp/keys\"}";
	curl_body_cb((char *)doc, 1, strlen(doc), p);
	assert_int_equal(discovery_uri(p, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "no https"));
	assert_string_equal(p->p_jwks_uri, "https://idp/keys");
	/* Not JSON: the reason has a position, never the document. */
	p->p_len = 0;
	doc = "secret-looking-text";
	curl_body_cb((char *)doc, 1, strlen(doc), p);
	assert_int_equal(discovery_uri(p, why, sizeof(why)), -1);
	assert_null(strstr(why, "secret"));
	assert_non_null(strstr(why, "not JSON"));
	assert_false(url_ok("https://idp/a b"));
	assert_false(url_ok("https://"));
	assert_true(url_ok("HTTPS://idp/keys"));
	free(p->p_buf);
	free(p->p_jwks_uri);
	free(j);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_seqlock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seqlock_concurrent, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_refetch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reconfigure, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_reconfigure_full, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetch_fails, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_body_and_discovery, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_reconfigure_source, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_cache_source, setup,
		    teardown),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
