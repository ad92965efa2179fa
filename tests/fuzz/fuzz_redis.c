/*
 * libFuzzer target for what the master makes of Redis's answers
 * (src/cluster.c, compiled into the target so that its static callbacks
 * can be called): the input's first byte picks a callback, the rest is
 * RESP, parsed by hiredis's own reader into the reply the callback gets,
 * as on a connection.  A hostile or broken Redis must not crash the
 * master, nor put into the key store a record the journal would refuse.
 *
 * The callbacks run against a cluster of the target's own: a key store in
 * memory (fzstore.h) with a few keys, a journal in a temporary directory,
 * connections that look up (a context the callbacks compare against) but
 * send nothing: every command fails to be sent (redisAsyncCommandArgv is
 * replaced), so each callback's error paths run too and nothing is left
 * pending.  Checked after each call: every key in the store passes the
 * journal's checks (clmsg_record), the heartbeat queue stays in bounds,
 * no task is left linked that should have been answered.  The lease
 * calls' answers (cllimit.c) are fuzzed the same way (fz_lease), and the
 * standing allowance's registrations (fz_standing).
 */

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int	 fuzz_cmd(redisAsyncContext *, redisCallbackFn *, void *, int,
		    const char **, const size_t *);
static void	 fuzz_free(redisAsyncContext *);

#define redisAsyncCommandArgv	fuzz_cmd
#define redisAsyncFree		fuzz_free

#include "fuzz.h"
#include "fzstore.h"
#include "../../src/cluster.c"
#include "../../src/cllimit.c"

#define FZ_MAX		64

static int
fuzz_cmd(redisAsyncContext *ac, redisCallbackFn *fn, void *arg, int argc,
    const char **argv, const size_t *argvlen)
{
	(void)ac;
	(void)fn;
	(void)arg;
	(void)argc;
	(void)argv;
	(void)argvlen;
	return (REDIS_ERR);
}

static void
fuzz_free(redisAsyncContext *ac)
{
	(void)ac;
}

static redisAsyncContext	 fz_ac[3];
static struct keystore		 fz_ks;
static struct journal		 fz_j;
static struct cluster		*fz_cl;
static char			 fz_dir[64];
static char			 fz_master[] = "kgprimary";

/* A key for the store: id key_AAAA...N, digest from n. */
static void
fz_key(struct ks_key *k, int n)
{
	memset(k, 0, sizeof(*k));
	snprintf(k->k_id, sizeof(k->k_id), "key_AAAAAAAAAAAAAAA%c",
	    'A' + n);
	memset(k->k_digest, n + 1, sizeof(k->k_digest));
	snprintf(k->k_prefix, sizeof(k->k_prefix), "live");
	snprintf(k->k_hint, sizeof(k->k_hint), "live_...%04d", n);
	snprintf(k->k_owner, sizeof(k->k_owner), "owner%d", n);
	k->k_created = k->k_updated = 1796000000000LL;
}

/* A fresh cluster over a store of three keys, joined at 5-0. */
static void
fz_cluster(void)
{
	static const char *const names[] = {
		"keys", "digests", "stream", "epoch", "nodes", "node:",
		"idem:", "usage:", "hist:", "idems"
	};
	struct ks_key	 k;
	size_t		 i;
	int		 s, c;

	FUZZ_ASSERT((fz_cl = calloc(1, sizeof(*fz_cl))) != NULL);
	for (s = 0; s < SHM_SLOTS; s++)
		for (c = 0; c < CL_CHANS; c++)
			fz_cl->cl_chans[s][c].ch_fd = -1;
	fz_store(&fz_ks, 0, FZ_MAX);
	for (i = 0; i < 3; i++) {
		fz_key(&k, (int)i);
		FUZZ_ASSERT(keystore_put(&fz_ks, &k, i + 1) == KS_OK);
	}
	keystore_unlock(&fz_ks, getpid());
	fz_cl->cl_ks = &fz_ks;
	fz_cl->cl_j = &fz_j;
	fz_cl->cl_pid = getpid();
	FUZZ_ASSERT((fz_cl->cl_name = strdup("fz")) != NULL);
	FUZZ_ASSERT((fz_cl->cl_url = strdup("redis://127.0.0.1:1/0")) != NULL);
	FUZZ_ASSERT((fz_cl->cl_host = strdup("127.0.0.1")) != NULL);
	fz_cl->cl_port = 1;
	fz_cl->cl_master = fz_master;
	fz_cl->cl_nsen = 1;
	for (i = 0; i < nitems(names); i++)
		FUZZ_ASSERT(asprintf(&fz_cl->cl_k[i], "keygate:{fz}:%s",
		    names[i]) != -1);
	snprintf(fz_cl->cl_state.s_epoch, sizeof(fz_cl->cl_state.s_epoch),
	    "e1");
	snprintf(fz_cl->cl_state.s_node, sizeof(fz_cl->cl_state.s_node),
	    "0123456789abcdef");
	snprintf(fz_cl->cl_state.s_name, sizeof(fz_cl->cl_state.s_name),
	    "fz");
	fz_cl->cl_state.s_pos.p_ms = 5;
	fz_cl->cl_durable = fz_cl->cl_saved = fz_cl->cl_state.s_pos;
	fz_cl->cl_joined = 1;
	fz_cl->cl_cmd.cc_cl = fz_cl->cl_rd.cc_cl = fz_cl->cl_sen.cc_cl = fz_cl;
	fz_cl->cl_cmd.cc_what = "commands";
	fz_cl->cl_rd.cc_what = "stream";
	fz_cl->cl_sen.cc_what = "sentinel";
	fz_cl->cl_cmd.cc_ac = &fz_ac[0];
	fz_cl->cl_rd.cc_ac = &fz_ac[1];
	fz_cl->cl_sen.cc_ac = &fz_ac[2];
	fz_cl->cl_cmd.cc_up = fz_cl->cl_rd.cc_up = fz_cl->cl_sen.cc_up = 1;
	fz_cl->cl_cmd.cc_pending = fz_cl->cl_rd.cc_pending = 1;
	fz_cl->cl_sen.cc_pending = 1;
	fz_cl->cl_nubase = FZ_MAX;
	FUZZ_ASSERT((fz_cl->cl_ubase = calloc(FZ_MAX,
	    sizeof(*fz_cl->cl_ubase))) != NULL);
	/* Two changes it applied, for a recheck to look at. */
	for (i = 0; i < 2; i++) {
		fz_key(&k, (int)i);
		cl_mine_add(fz_cl, &(struct cl_pos){ 4, i }, k.k_id,
		    i == 0 ? &k : NULL);
	}
}

/* A task as a worker's request would leave it. */
static struct cl_task *
fz_task(void)
{
	struct cl_task	*op;

	FUZZ_ASSERT((op = calloc(1, sizeof(*op))) != NULL);
	op->op_cl = fz_cl;
	op->op_rid = 1;
	op->op_n = 60;
	op->op_step = USAGE_MINUTE_MS;
	op->op_first = 1796000000000LL - 59 * USAGE_MINUTE_MS;
	snprintf(op->op_id, sizeof(op->op_id), "key_AAAAAAAAAAAAAAAA");
	cl_op_link(fz_cl, op);
	return (op);
}

static void
fz_cluster_free(void)
{
	struct cl_task	*op;
	size_t		 i;

	while ((op = fz_cl->cl_ops) != NULL) {
		fz_cl->cl_ops = op->op_next;
		cl_task_free(op);
	}
	for (i = 0; i < CL_MINE; i++) {
		free(fz_cl->cl_mine[i].m_expect);
		free(fz_cl->cl_mine[i].m_record);
	}
	for (i = 0; i < nitems(fz_cl->cl_k); i++)
		free(fz_cl->cl_k[i]);
	json_decref(fz_cl->cl_nodes);
	free(fz_cl->cl_ubase);
	free(fz_cl->cl_name);
	free(fz_cl->cl_url);
	free(fz_cl->cl_host);
	free(fz_cl);
	fz_cl = NULL;
}

/* Every key in the store is one the journal would write and read back. */
static void
fz_check(void)
{
	struct ks_key	 k;
	uint32_t	 it = 0, slot;
	char		 err[256], *rec;

	while (keystore_next(&fz_ks, &it, &k, &slot) == KS_OK) {
		rec = clmsg_record(&k, err, sizeof(err));
		FUZZ_ASSERT(rec != NULL);
		free(rec);
	}
	FUZZ_ASSERT(fz_cl->cl_nbeatq >= 0 &&
	    fz_cl->cl_nbeatq <= (int)nitems(fz_cl->cl_beatq));
	FUZZ_ASSERT(keystore_count(&fz_ks) <= FZ_MAX);
}

/*
 * The lease calls' answers (cllimit.c): one subject's entry in a lease
 * table of the target's own, renewed with every input; the call is
 * captured by the send function, then answered with the input.  Checked:
 * never more units than the answer says this node holds, never an expiry
 * that went down.
 */
static struct cllimit	*fz_cll;
static struct ls_table	*fz_lt;
static void		*fz_call;

static int
fz_lim_send(struct cluster *cl, void *arg, int argc, const char **argv)
{
	(void)cl;
	(void)argc;
	(void)argv;
	fz_call = arg;
	return (0);
}

static void
fz_lease(const redisReply *reply)
{
	static const uint32_t	 lim[RL_WINDOWS] = { 20, 200, 1000 };
	static struct event_base *base;
	struct ls_demand	 d;
	struct ls_entry		*e;
	struct cll_reply	 cr;
	uint64_t		 x0, x1;
	void			*region = NULL;

	if (fz_cll == NULL) {
		FUZZ_ASSERT((base = event_base_new()) != NULL);
		FUZZ_ASSERT(posix_memalign(&region, 64,
		    lease_table_size()) == 0 && region != NULL);
		memset(region, 0, lease_table_size());
		fz_lt = lease_table_init(region, 7);
		FUZZ_ASSERT((fz_cll = cllimit_new(base, fz_lt, NULL,
		    fz_lim_send, "keygate:{fz}:", "0123456789abcdef",
		    LS_MODE_LOCAL, 10)) != NULL);
		fz_call = NULL;
		cllimit_redis(fz_cll, 1);
		/* The registration sent as Redis came up: no answer came. */
		if (fz_call != NULL)
			cllimit_answer(fz_call, NULL);
	}
	memset(&d, 0, sizeof(d));
	lease_subject(&d.ld_subj, LS_KIND_KEY, "key_AAAAAAAAAAAAAAAA", 20,
	    lim);
	fz_call = NULL;
	cll_demand(fz_cll, &d, util_mono_ms());
	FUZZ_ASSERT((e = lease_find(fz_lt, &d.ld_subj)) != NULL);
	if (fz_call == NULL)		/* a call is still out: cannot be */
		return;
	(void)lease_left(e, 0, &x0);
	cllimit_answer(fz_call, reply);
	(void)lease_left(e, 0, &x1);
	FUZZ_ASSERT(x1 >= x0);
	if (cllimit_parse_reply(reply, &cr) == 0)
		FUZZ_ASSERT((e->le_word & LS_LEFT_MASK) <= cr.cr_hold);
	/* Renewed with every input: nothing in flight is left. */
	FUZZ_ASSERT(!fz_cll->cll_ent[lease_index(fz_lt, e)].ce_busy);
	/*
	 * A worker can write the entry's subject in the segment: the master
	 * goes by its own copy (this overflowed its stack once).
	 */
	memset(&e->le_subj, 0xff, sizeof(e->le_subj));
	__atomic_store_n(&e->le_want, 1, __ATOMIC_SEQ_CST);
	fz_call = NULL;
	(void)cll_look(fz_cll, lease_index(fz_lt, e), util_mono_ms());
	if (fz_call != NULL)
		cllimit_answer(fz_call, NULL);
	memcpy(&e->le_subj, &d.ld_subj, sizeof(e->le_subj));
}

/*
 * The standing allowance's registration (cll_reg_answer): a call sent,
 * answered with the input.  Checked: the allowance is never usable past
 * the send time plus the validity answered, nor, registered afresh,
 * before the delay answered; nothing is left in flight.
 */
static void
fz_standing(const redisReply *reply)
{
	struct cll_reg_reply	 rr;
	int64_t			 sent, until0, from0, now;

	if (fz_cll == NULL)
		fz_lease(NULL);		/* set up, one call answered with none */
	fz_cll->cll_reg_next = 0;
	fz_call = NULL;
	sent = util_mono_ms();
	cll_reg_call(fz_cll, sent);
	if (fz_call == NULL)
		return;
	until0 = LS_STAND_UNTIL(fz_lt->lt_stand);
	from0 = fz_lt->lt_stand_from;
	cllimit_answer(fz_call, reply);
	now = util_mono_ms();
	FUZZ_ASSERT(!fz_cll->cll_reg_busy);
	if (cllimit_parse_reg(reply, &rr) == 0 && rr.rr_ok &&
	    rr.rr_pm <= fz_cll->cll_stand_max) {
		FUZZ_ASSERT(LS_STAND_UNTIL(fz_lt->lt_stand) <=
		    fz_cll->cll_reg_sent + rr.rr_valid);
		FUZZ_ASSERT(LS_STAND_PM(fz_lt->lt_stand) == rr.rr_pm);
		/* Never usable before Redis's "not before". */
		if (rr.rr_fresh || rr.rr_delay > 0)
			FUZZ_ASSERT(fz_lt->lt_stand_from >= sent +
			    rr.rr_delay);
		else
			FUZZ_ASSERT(fz_lt->lt_stand_from == from0);
	} else {
		FUZZ_ASSERT(LS_STAND_UNTIL(fz_lt->lt_stand) == until0);
		FUZZ_ASSERT(fz_lt->lt_stand_from == from0);
	}
	(void)now;
}

/*
 * An array header ("*N") over FZ_MAX_ELEMENTS: hiredis 0.14's reader
 * allocates N pointers at once, before any element came (hiredis 1.0 has
 * maxelements; 0.14 has none).  The master trusts its Redis that far; the
 * fuzzer's memory limit would only find that allocation, again and again.
 */
#define FZ_MAX_ELEMENTS	100000
static int
fz_huge(const uint8_t *p, size_t n)
{
	size_t		 i, j;
	uint64_t	 v;

	for (i = 0; i < n; i++) {
		if (p[i] != '*')
			continue;
		for (v = 0, j = i + 1; j < n && p[j] >= '0' && p[j] <= '9' &&
		    v <= FZ_MAX_ELEMENTS; j++)
			v = v * 10 + (uint64_t)(p[j] - '0');
		if (v > FZ_MAX_ELEMENTS)
			return (1);
	}
	return (0);
}

/* The journal's directory goes with the process. */
static void
fz_cleanup(void)
{
	journal_close(&fz_j);
	fz_rmdir(fz_dir);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int	 init;
	char		 err[256];
	redisReader	*rd;
	void		*reply = NULL;
	struct cl_rechk	*rc;

	if (!init) {
		fz_store_setup(1, FZ_MAX);
		snprintf(fz_dir, sizeof(fz_dir), "%s/fuzz-redis-XXXXXX",
		    access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
		FUZZ_ASSERT(mkdtemp(fz_dir) != NULL);
		FUZZ_ASSERT(journal_init(&fz_j, fz_dir, (uid_t)-1,
		    (gid_t)-1) == 0);
		atexit(fz_cleanup);
		FUZZ_ASSERT(log_init(LOG_TO_STDERR, LOGLEVEL_ERROR,
		    "fuzz_redis", err, sizeof(err)) == 0);
		init = 1;
	}
	if (size < 1 || fz_huge(data + 1, size - 1))
		return (0);
	if ((rd = redisReaderCreate()) == NULL)
		return (0);
	if (redisReaderFeed(rd, (const char *)data + 1, size - 1) !=
	    REDIS_OK || redisReaderGetReply(rd, &reply) != REDIS_OK ||
	    reply == NULL) {
		redisReaderFree(rd);
		return (0);
	}
	fz_cluster();
	switch (data[0] % 14) {
	case 0:
		fz_cl->cl_beatq[fz_cl->cl_nbeatq++] = fz_cl->cl_state.s_pos;
		cl_beat_cb(&fz_ac[0], reply, fz_cl);
		break;
	case 1:
		fz_cl->cl_joining = 1;
		cl_dump_cb(&fz_ac[0], reply, fz_cl);
		break;
	case 2:
		fz_cl->cl_reading = 1;
		cl_read_exec_cb(&fz_ac[1], reply, fz_cl);
		break;
	case 3:
		fz_cl->cl_reading = 1;
		cl_read_block_cb(&fz_ac[1], reply, fz_cl);
		break;
	case 4:
		cl_write_cb(&fz_ac[0], reply, fz_task());
		break;
	case 5:
		cl_usage_query_cb(&fz_ac[0], reply, fz_task());
		break;
	case 6:
		cl_history_cb(&fz_ac[0], reply, fz_task());
		break;
	case 7:
		cl_sen_addr_cb(&fz_ac[2], reply, fz_cl);
		break;
	case 8:
		cl_sen_msg_cb(&fz_ac[2], reply, fz_cl);
		break;
	case 9:
		FUZZ_ASSERT((rc = calloc(1, sizeof(*rc))) != NULL);
		rc->rc_cl = fz_cl;
		for (rc->rc_n = 0; rc->rc_n < 2; rc->rc_n++) {
			struct cl_mine	*m = &rc->rc_m[rc->rc_n];

			*m = fz_cl->cl_mine[rc->rc_n];
			m->m_expect = m->m_expect != NULL ?
			    strdup(m->m_expect) : NULL;
			m->m_record = m->m_record != NULL ?
			    strdup(m->m_record) : NULL;
		}
		fz_cl->cl_joining = 1;
		cl_recheck_cb(&fz_ac[0], reply, rc);
		break;
	case 10:
		fz_cl->cl_cmd.cc_up = 0;
		cl_setup_cb(&fz_ac[0], reply, &fz_cl->cl_cmd);
		break;
	case 11:
		fz_cl->cl_joining = 1;
		cl_seed_cb(&fz_ac[0], reply, fz_cl);
		break;
	case 12:
		fz_lease(reply);
		break;
	case 13:
		fz_standing(reply);
		break;
	}
	fz_check();
	fz_cluster_free();
	freeReplyObject(reply);
	redisReaderFree(rd);
	return (0);
}
