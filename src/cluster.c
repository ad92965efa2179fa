/*
 * The master's side of the cluster (cluster.h): two Redis connections on
 * the master's event loop (hiredis 0.14 with its libevent adapter), one
 * for commands and one for the stream reader's XREAD BLOCK, the workers'
 * channels, and applying the stream to the store.
 *
 * hiredis 0.14 has no timeout for asynchronous commands, so every
 * connection counts its commands without an answer and a 100 ms timer
 * drops a connection whose oldest one waited longer than CL_TIMEOUT_MS
 * (the reader's XREAD is allowed its BLOCK time on top); a dropped
 * connection fails what it had pending and reconnects after a back-off of
 * 100 ms doubling to 5 s.
 *
 * Namespace ("keygate:{NAME}:" + ...): "keys" (hash: id -> the record's
 * compact JSON), "digests" (hash: hex digest -> id, for uniqueness across
 * the cluster), "stream" (the changes), "epoch" (a random word naming this
 * incarnation of the namespace: a Redis that lost its data comes back
 * without it), "nodes" and "node:ID" (heartbeats, expiring), "idem:HASH"
 * (Idempotency-Key entries, 24 h).
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#ifdef HAVE_MALLOC_H
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "cllimit.h"
#include "cluster.h"
#include "config.h"
#include "idem.h"
#include "journal.h"
#include "keystore.h"
#include "lease.h"
#include "log.h"
#include "secret.h"
#include "shm.h"
#include "stats.h"
#include "usage.h"
#include "util.h"

#define CL_TIMEOUT_MS		3000	/* a command's answer, at most */
#define CL_BLOCK_MS		2000	/* XREAD BLOCK */
#define CL_BATCH		256	/* XREAD COUNT */
#define CL_BACKOFF_MIN_MS	100
#define CL_BACKOFF_MAX_MS	5000
#define CL_TICK_MS		100
#define CL_BEAT_MS		1000	/* heartbeat and checks */
#define CL_NODE_TTL_MS		5000	/* a node unseen this long is gone */
#define CL_WAIT_MS		5000	/* a commit waits for the reader */
#define CL_STREAM_MAX		"100000"	/* XADD MAXLEN ~ */
#define CL_MAX_NODES		64	/* shown in /v1/cluster */
#define CL_USAGE_MS		10000	/* usage deltas pushed this often */
#define CL_USAGE_BATCH		1000	/* keys per push */
#define CL_IDEM_TTL		"86400000"	/* ms, idem.h's IDEM_TTL */
#define CL_STR(x)		#x
#define CL_XSTR(x)		CL_STR(x)
#define XSTR_TTL		CL_XSTR(CL_NODE_TTL_MS)
#define XSTR_BATCH		CL_XSTR(CL_BATCH)
#define XSTR_BLOCK		CL_XSTR(CL_BLOCK_MS)
#define CL_WAIT_REPL_MS		500	/* WAIT for a replica, at most */
#define XSTR_WAIT_REPL		CL_XSTR(CL_WAIT_REPL_MS)

/* Scripts.  KEYS name the namespace's keys; every check precedes every
 * write, so a script that fails (a bad record) changes nothing. */

#define CL_LUA_LAST							\
	"local function last(s)\n"					\
	"  local e = redis.call('XREVRANGE', s, '+', '-', 'COUNT', 1)\n" \
	"  if #e == 0 then return '0-0' end\n"				\
	"  return e[1][1]\n"						\
	"end\n"

#define CL_LUA_DIGESTS							\
	"local function digests(rec)\n"					\
	"  local t = {}\n"						\
	"  if rec == '' then return t end\n"				\
	"  local o = cjson.decode(rec)\n"				\
	"  if type(o.digest) == 'string' then t[#t+1] = o.digest end\n"	\
	"  if type(o.old_digest) == 'string' then\n"			\
	"    t[#t+1] = o.old_digest end\n"				\
	"  return t\n"							\
	"end\n"

/*
 * A write.  KEYS: keys, digests, stream, epoch, the prefix of the usage
 * hashes (a del drops the key's), the set of Idempotency-Key entries (by
 * time, for a resync's dump).  ARGV: op (put|del), id, expect ("" = no
 * record), record ("" for a del), idem key ("" = none), idem JSON (for
 * the stream), node, the entry kept under the idem key ({"id","idem"}).  The record must still be the one the worker read
 * (expect), its digests must be no other key's, and an Idempotency-Key
 * must be new; else "retry" with the stream's last id, which the caller
 * applies before the worker looks again.
 */
static const char cl_lua_write[] =
	CL_LUA_LAST CL_LUA_DIGESTS
	"if redis.call('EXISTS', KEYS[4]) == 0 then return {'unseeded'} end\n"
	"local cur = redis.call('HGET', KEYS[1], ARGV[2])\n"
	"if not cur then cur = '' end\n"
	"if cur ~= ARGV[3] then return {'retry', last(KEYS[3])} end\n"
	"local new = digests(ARGV[4])\n"
	"for _, d in ipairs(new) do\n"
	"  local owner = redis.call('HGET', KEYS[2], d)\n"
	"  if owner and owner ~= ARGV[2] then\n"
	"    local orec = redis.call('HGET', KEYS[1], owner)\n"
	"    if orec then\n"
	"      for _, od in ipairs(digests(orec)) do\n"
	"        if od == d then return {'retry', last(KEYS[3])} end\n"
	"      end\n"
	"    end\n"
	"  end\n"
	"end\n"
	"if ARGV[5] ~= '' then\n"
	"  if not redis.call('SET', ARGV[5], ARGV[8], 'NX', 'PX', "
	CL_IDEM_TTL ") then\n"
	"    return {'retry', last(KEYS[3])}\n"
	"  end\n"
	"  local t = redis.call('TIME')\n"
	"  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	"  redis.call('ZADD', KEYS[6], now, ARGV[5])\n"
	"  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - "
	CL_IDEM_TTL ")\n"
	"end\n"
	"for _, d in ipairs(digests(cur)) do\n"
	"  if redis.call('HGET', KEYS[2], d) == ARGV[2] then\n"
	"    redis.call('HDEL', KEYS[2], d) end\n"
	"end\n"
	"local pos\n"
	"if ARGV[1] == 'put' then\n"
	"  redis.call('HSET', KEYS[1], ARGV[2], ARGV[4])\n"
	"  for _, d in ipairs(new) do redis.call('HSET', KEYS[2], d, ARGV[2]) end\n"
	"  if ARGV[5] ~= '' then\n"
	"    pos = redis.call('XADD', KEYS[3], 'MAXLEN', '~', " CL_STREAM_MAX
	", '*', 'op', 'put', 'id', ARGV[2], 'key', ARGV[4], 'node', ARGV[7], "
	"'idem', ARGV[6])\n"
	"  else\n"
	"    pos = redis.call('XADD', KEYS[3], 'MAXLEN', '~', " CL_STREAM_MAX
	", '*', 'op', 'put', 'id', ARGV[2], 'key', ARGV[4], 'node', ARGV[7])\n"
	"  end\n"
	"else\n"
	"  redis.call('HDEL', KEYS[1], ARGV[2])\n"
	"  redis.call('DEL', KEYS[5] .. ARGV[2])\n"
	"  pos = redis.call('XADD', KEYS[3], 'MAXLEN', '~', " CL_STREAM_MAX
	", '*', 'op', 'del', 'id', ARGV[2], 'node', ARGV[7])\n"
	"end\n"
	"return {'ok', pos}\n";

/*
 * Seed an empty namespace (no epoch, or no key) with a node's keys, under
 * a new epoch (the nodes already in it find the seed entry and take the
 * namespace whole).  KEYS: keys, digests, stream, epoch.  ARGV: new epoch,
 * node, then id and record pairs.
 */
static const char cl_lua_seed[] =
	CL_LUA_DIGESTS
	"if redis.call('EXISTS', KEYS[4]) == 1 and\n"
	"    redis.call('HLEN', KEYS[1]) > 0 then return {'exists'} end\n"
	"redis.call('DEL', KEYS[1], KEYS[2])\n"
	"for i = 3, #ARGV, 2 do\n"
	"  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])\n"
	"  for _, d in ipairs(digests(ARGV[i + 1])) do\n"
	"    redis.call('HSET', KEYS[2], d, ARGV[i]) end\n"
	"end\n"
	"redis.call('SET', KEYS[4], ARGV[1])\n"
	"local pos = redis.call('XADD', KEYS[3], 'MAXLEN', '~', " CL_STREAM_MAX
	", '*', 'op', 'seed', 'epoch', ARGV[1], 'node', ARGV[2])\n"
	"return {'ok', pos}\n";

/*
 * Usage deltas of one node: ARGV: the usage hashes' prefix, the history
 * hashes' prefix, the minute (since the epoch) they are counted in, then
 * for each key its id, admitted, rate-limited and other refused requests
 * since the node's last push, and its last use (ms; the hash keeps the
 * latest).  The history: per key and UTC hour, a hash of its minutes
 * ("M" + a|l|r, kept 26 hours), and per key and UTC day, one of its
 * hours (kept 32 days); the expiry is set when a field is new (the first
 * push of its minute or hour), not at every push.
 */
static const char cl_lua_usage[] =
	"local min = tonumber(ARGV[3])\n"
	"local hour, day = math.floor(min / 60), math.floor(min / 1440)\n"
	"local m, h = tostring(min % 60), tostring(hour % 24)\n"
	"local kinds = {'a', 'l', 'r'}\n"
	"for i = 4, #ARGV, 5 do\n"
	"  local k = ARGV[1] .. ARGV[i]\n"
	"  local hm = ARGV[2] .. ARGV[i] .. ':m' .. hour\n"
	"  local hh = ARGV[2] .. ARGV[i] .. ':h' .. day\n"
	"  for j = 1, 3 do\n"
	"    local d = ARGV[i + j]\n"
	"    if d ~= '0' then\n"
	"      redis.call('HINCRBY', k, kinds[j], d)\n"
	"      if redis.call('HINCRBY', hm, m .. kinds[j], d) == tonumber(d) then\n"
	"        redis.call('EXPIRE', hm, 93600) end\n"
	"      if redis.call('HINCRBY', hh, h .. kinds[j], d) == tonumber(d) then\n"
	"        redis.call('EXPIRE', hh, 2764800) end\n"
	"    end\n"
	"  end\n"
	"  local t = tonumber(redis.call('HGET', k, 't') or '0')\n"
	"  if tonumber(ARGV[i + 4]) > t then\n"
	"    redis.call('HSET', k, 't', ARGV[i + 4]) end\n"
	"end\n"
	"return 'ok'\n";

/* Every hash named in ARGV, whole (HGETALL each). */
static const char cl_lua_hashes[] =
	"local out = {}\n"
	"for i = 1, #ARGV do out[i] = redis.call('HGETALL', ARGV[i]) end\n"
	"return out\n";

/*
 * The whole namespace at one position.  KEYS: keys, stream, epoch, the
 * Idempotency-Key set.  Answers the epoch, the stream's last entry, the
 * number of records, the id and record pairs, then the live
 * Idempotency-Key entries ({"id","idem"}).
 */
static const char cl_lua_dump[] =
	CL_LUA_LAST
	"local all = redis.call('HGETALL', KEYS[1])\n"
	"local out = {redis.call('GET', KEYS[3]) or '', last(KEYS[2]), #all / 2}\n"
	"for i = 1, #all do out[#out + 1] = all[i] end\n"
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	"for _, h in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], now - "
	CL_IDEM_TTL ", '+inf')) do\n"
	"  local v = redis.call('GET', h)\n"
	"  if v then out[#out + 1] = v end\n"
	"end\n"
	"return out\n";

/*
 * The heartbeat, and what the node needs to know.  KEYS: nodes, stream,
 * epoch.  ARGV: node, its JSON, TTL ms, the node key prefix, the node's
 * position.  Answers the epoch, the stream's last-generated-id (which
 * trimming leaves, and only a Redis that lost data can take back), its
 * first entry ("" if none), 1 if the entry at the node's position is
 * still there, then each live node's JSON.
 */
static const char cl_lua_beat[] =
	"redis.call('SADD', KEYS[1], ARGV[1])\n"
	"redis.call('SET', ARGV[4] .. ARGV[1], ARGV[2], 'PX', ARGV[3])\n"
	"local lg, first = '0-0', ''\n"
	"if redis.call('EXISTS', KEYS[2]) == 1 then\n"
	"  local info = redis.call('XINFO', 'STREAM', KEYS[2])\n"
	"  for i = 1, #info, 2 do\n"
	"    if info[i] == 'last-generated-id' then lg = info[i + 1] end\n"
	"  end\n"
	"  local f = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)\n"
	"  if #f == 1 then first = f[1][1] end\n"
	"end\n"
	"local has = 1\n"
	"if ARGV[5] ~= '0-0' and #redis.call('XRANGE', KEYS[2], ARGV[5], "
	"ARGV[5]) == 0 then has = 0 end\n"
	"local out = {redis.call('GET', KEYS[3]) or '', lg, first, has}\n"
	"for _, n in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
	"  local v = redis.call('GET', ARGV[4] .. n)\n"
	"  if v then out[#out + 1] = v else redis.call('SREM', KEYS[1], n) end\n"
	"end\n"
	"return out\n";

struct cluster;

/* One Redis connection. */
struct cl_conn {
	struct cluster		*cc_cl;
	const char		*cc_what;	/* "commands", "stream" */
	redisAsyncContext	*cc_ac;		/* NULL: none */
	int			 cc_up;		/* AUTH and SELECT answered */
	int			 cc_pending;	/* commands not answered */
	int64_t			 cc_since_ms;	/* the last answer or first send */
	int64_t			 cc_limit_ms;	/* pending this long: dropped */
	int			 cc_backoff_ms;
	int64_t			 cc_retry_ms;	/* reconnect not before */
	int			 cc_warned;	/* the failure was logged */
	int			 cc_kill;	/* drop at the next tick */
	int			 cc_fails;	/* connects failed in a row */
};

/* The master end of one worker channel. */
struct cl_chan {
	struct cluster		*ch_cl;
	int			 ch_fd;		/* -1: unused */
	int			 ch_slot;
	int			 ch_busy;	/* its requests in progress */
	struct event		*ch_ev;
};

/* A worker's request in progress. */
struct cl_task {
	struct cl_task		*op_next;
	struct cluster		*op_cl;
	struct cl_chan		*op_chan;	/* NULL: the worker is gone */
	uint64_t		 op_rid;
	int			 op_waiting;	/* for the reader to reach */
	struct cl_pos		 op_pos;	/* ... this position */
	const char		*op_result;	/* then answer "ok"/"retry" */
	int64_t			 op_deadline;
	char			 op_id[KS_ID_LEN + 4];	/* a usage query's key */
	uint64_t		 op_base[KS_NCOUNTS];	/* its counts in Redis */
	int64_t			 op_last;	/* its last use here */
	uint64_t		 op_live[KS_NCOUNTS];	/* its counts here */
	int64_t			 op_first;	/* history: first point (ms) */
	int64_t			 op_step;	/* a point's length (ms) */
	size_t			 op_n;		/* points */
	int			 op_del;	/* a write: a del, else a put */
	char			*op_expect;	/* its record read, or NULL */
	char			*op_record;	/* a put's record */
};

/*
 * This node's recent writes, kept to be checked again when Redis lost
 * changes (cl_recheck): where each went in the stream, and what it was.
 */
#define CL_MINE			1024
#define CL_MINE_MS		(10 * 60 * 1000)	/* checked if younger */
struct cl_mine {
	struct cl_pos		 m_pos;
	int64_t			 m_at;		/* CLOCK_MONOTONIC ms */
	int			 m_del;
	char			 m_id[KS_ID_LEN + 4];
	char			*m_expect;
	char			*m_record;
};

/* A usage push in flight: which slots (and keys) it carried. */
struct cl_push {
	struct cluster		*p_cl;
	size_t			 p_n;
	uint32_t		 p_slot[CL_USAGE_BATCH];
	char			 p_id[CL_USAGE_BATCH][KS_ID_LEN + 1];
};

struct cluster {
	struct event_base	*cl_base;
	struct keystore		*cl_ks;
	struct journal		*cl_j;
	struct idem_entry	*cl_idem;
	struct stats_master	*cl_sm;
	pid_t			 cl_pid;

	char			*cl_url;	/* as shown */
	char			*cl_host;
	int			 cl_port;
	char			*cl_unix;
	int			 cl_db;
	char			*cl_user;
	char			*cl_pass;
	char			*cl_name;
	char			*cl_prefix;	/* "keygate:{NAME}:" */
	char			*cl_k[10];	/* the namespace's keys, CK_* */
#define CK_KEYS		0
#define CK_DIGESTS	1
#define CK_STREAM	2
#define CK_EPOCH	3
#define CK_NODES	4
#define CK_NODE		5	/* prefix of node:ID */
#define CK_IDEM		6	/* prefix of idem:HASH */
#define CK_USAGE	7	/* prefix of usage:ID */
#define CK_HIST		8	/* prefix of hist:ID:mHOUR, hist:ID:hDAY */
#define CK_IDEMS	9	/* the idem:HASH keys, by time */

	/*
	 * Usage merged across nodes: per slot, the counts this node has
	 * sent to Redis (ub_sent) and those Redis confirmed (ub_done), for
	 * the key ub_id (a slot given to another key starts from zero).
	 */
	struct cl_ubase {
		char		 ub_id[KS_ID_LEN + 1];
		uint64_t	 ub_sent[KS_NCOUNTS];
		uint64_t	 ub_done[KS_NCOUNTS];
		int64_t		 ub_last;
	}			*cl_ubase;
	uint32_t		 cl_nubase;
	int64_t			 cl_usage_ms;	/* next push */
	uint32_t		 cl_usage_cursor;	/* where the next starts */
	int			 cl_pushing;

	struct cl_conn		 cl_cmd;
	struct cl_conn		 cl_rd;

	/*
	 * Sentinel (cl_nsen > 0): the sentinels are asked for the primary
	 * on cl_sen, which then stays subscribed to +switch-master; cl_host
	 * and cl_port are the primary they named (NULL: not known yet).
	 */
	struct cl_conn		 cl_sen;
	int			 cl_nsen;
	int			 cl_sen_next;	/* the one to try next */
	int			 cl_sen_cur;	/* the one cl_sen is on */
	char			*cl_sen_host[CONFIG_MAX_SENTINELS];
	int			 cl_sen_port[CONFIG_MAX_SENTINELS];
	char			*cl_master;
	char			*cl_sen_pass;
	int			 cl_failovers;	/* primaries followed */
	struct event		*cl_tick;
	int64_t			 cl_beat_ms;	/* next heartbeat */

	struct cl_state		 cl_state;	/* epoch, position, node */
	struct cl_pos		 cl_saved;	/* in cluster.state on disk */
	struct cl_pos		 cl_durable;	/* the journal holds up to here */
	int			 cl_cache_failed;	/* a journal write failed */
	int			 cl_joined;	/* reader may run */
	int			 cl_joining;	/* a join is in progress */
	char			 cl_seeding[40];	/* a seed's new epoch */
	int			 cl_reading;	/* an XREAD is pending */
	char			 cl_refused[512];	/* why it will not join */
	struct cl_pos		 cl_last;	/* stream's last id, last beat */
	struct cl_pos		 cl_beatq[8];	/* position when each beat */
	int			 cl_nbeatq;	/* in flight was sent */
	int64_t			 cl_last_seen;	/* when it was learnt (ms) */
	json_t			*cl_nodes;	/* last heartbeat's nodes */
	uint64_t		 cl_applied;	/* changes applied (metric) */
	char			 cl_hostname[256];

	struct cl_chan		 cl_chans[SHM_SLOTS][CL_CHANS];
	struct cl_task		*cl_ops;
	struct cl_mine		 cl_mine[CL_MINE];
	size_t			 cl_nmine;	/* written so far (ring) */
	struct cllimit		*cl_lim;	/* rate limits' leases */
	int			 cl_fallback;	/* LS_MODE_LOCAL or _DENY */
	int			 cl_limits;	/* cluster_limits on */
	int			 cl_standing;	/* cluster_standing_share */
};

static void	 cl_connect(struct cl_conn *);
static void	 cl_conn_up(struct cl_conn *);
static void	 cl_sen_ask(struct cluster *);
static void	 cl_sen_forget(struct cluster *);
static void	 cl_join(struct cluster *);
static void	 cl_seed(struct cluster *);
static void	 cl_read(struct cluster *);
static void	 cl_read_next(struct cluster *, int);
static void	 cl_op_answer(struct cl_task *, const char *, const char *);
static void	 cl_op_link(struct cluster *, struct cl_task *);
static void	 cl_task_free(struct cl_task *);
static void	 cl_recheck(struct cluster *);
static void	 cl_apply_del(struct cluster *, const char *, uint64_t *);
static void	 cl_mine_clear(struct cluster *);
static void	 cl_trim(void);
static void	 cl_repl_cb(redisAsyncContext *, void *, void *);
static void	 cl_mine_add(struct cluster *, const struct cl_pos *,
		    const char *, const struct ks_key *);
static void	 cl_op_unlink(struct cluster *, struct cl_task *);
static void	 cl_lim_publish(struct cluster *);

/* --- connections ------------------------------------------------------- */

static int
cl_send(struct cl_conn *cc, redisCallbackFn *fn, void *arg, int argc,
    const char **argv)
{
	/* Every argument is a C string: hiredis takes their lengths. */
	if (cc->cc_ac == NULL || redisAsyncCommandArgv(cc->cc_ac, fn, arg,
	    argc, argv, NULL) != REDIS_OK)
		return (-1);
	if (cc->cc_pending++ == 0)
		cc->cc_since_ms = util_mono_ms();
	return (0);
}

/* An answer came (or was failed) for a command of cc. */
static void
cl_answered(struct cl_conn *cc)
{
	if (cc->cc_pending > 0)
		cc->cc_pending--;
	cc->cc_since_ms = util_mono_ms();
}

/*
 * A task's answer came on ac: counted if ac is (or was) cc's; a task's
 * callback runs whether or not the connection lived on.
 */
static void
cl_answered_on(struct cl_conn *cc, const redisAsyncContext *ac)
{
	if (cc->cc_ac == ac || cc->cc_ac == NULL)
		cl_answered(cc);
}

/*
 * A connection-state answer r came on ac: 1 if it is to be acted on (ac is
 * still cc's, and r is an answer, not the NULL of a dropped connection).
 */
static int
cl_reply_on(struct cl_conn *cc, const redisAsyncContext *ac, const void *r)
{
	if (cc->cc_ac != ac)
		return (0);
	cl_answered(cc);
	return (r != NULL);
}

/* Note that cc is gone: state reset, reconnect scheduled. */
static void
cl_conn_lost(struct cl_conn *cc, const char *why)
{
	struct cluster	*cl = cc->cc_cl;
	int		 was = cc->cc_up;

	cc->cc_ac = NULL;
	cc->cc_up = 0;
	cc->cc_pending = 0;
	if (cc == &cl->cl_rd)
		cl->cl_reading = 0;
	if (cc == &cl->cl_cmd) {
		cl->cl_joining = 0;
		cl->cl_nbeatq = 0;
	}
	if (cc->cc_backoff_ms == 0)
		cc->cc_backoff_ms = CL_BACKOFF_MIN_MS;
	cc->cc_retry_ms = util_mono_ms() + cc->cc_backoff_ms;
	if (was || !cc->cc_warned)
		log_warnx("cluster: Redis %s (%s connection): %s; retrying "
		    "in %d ms", cl->cl_url, cc->cc_what, why,
		    cc->cc_backoff_ms);
	cc->cc_warned = 1;
	cc->cc_backoff_ms = cc->cc_backoff_ms * 2 > CL_BACKOFF_MAX_MS ?
	    CL_BACKOFF_MAX_MS : cc->cc_backoff_ms * 2;
	if (cc == &cl->cl_cmd && cl->cl_sm != NULL)
		__atomic_store_n(&cl->cl_sm->sm_cluster_up, 0,
		    __ATOMIC_RELAXED);
	if (cc == &cl->cl_cmd)
		cllimit_redis(cl->cl_lim, 0);
	/*
	 * With Sentinel, a primary that keeps failing may have been replaced
	 * while this node missed the news (its sentinel gone silent): after
	 * three failures in a row the sentinels are asked again.
	 */
	if (cc != &cl->cl_sen && !was && cl->cl_nsen > 0 &&
	    ++cc->cc_fails >= 3) {
		cc->cc_fails = 0;
		if (cl->cl_sen.cc_ac != NULL)
			cl->cl_sen.cc_kill = 1;
	}
}

/* Drop cc now (a timeout, a protocol error); its callbacks get NULL. */
static void
cl_drop(struct cl_conn *cc, const char *why)
{
	redisAsyncContext	*ac = cc->cc_ac;

	if (ac == NULL)
		return;
	cc->cc_ac = NULL;	/* callbacks run by the free see it gone */
	redisAsyncFree(ac);
	cl_conn_lost(cc, why);
}

static void
cl_disconnect_cb(const redisAsyncContext *ac, int status)
{
	struct cl_conn	*cc = ac->data;

	if (cc == NULL || cc->cc_ac != ac)
		return;
	cl_conn_lost(cc, status == REDIS_OK ? "closed" : ac->errstr[0] !=
	    '\0' ? ac->errstr : "connection lost");
}

/* The answer to the last setup command: the connection is usable. */
static void
cl_setup_cb(redisAsyncContext *ac, void *r, void *arg)
{
	struct cl_conn	*cc = arg;
	struct cluster	*cl = cc->cc_cl;
	redisReply	*reply = r;

	if (!cl_reply_on(cc, ac, reply))
		return;
	if (reply->type == REDIS_REPLY_ERROR) {
		/* AUTH's words say nothing of the password itself. */
		char	 why[300];

		snprintf(why, sizeof(why), "%.200s", reply->str);
		cl_drop(cc, why);
		return;
	}
	if (reply->type == REDIS_REPLY_ARRAY && (reply->elements < 1 ||
	    reply->element[0]->type != REDIS_REPLY_STRING ||
	    strcmp(reply->element[0]->str, "master") != 0)) {
		/* ROLE: the sentinels' answer is stale; ask them again. */
		cl_drop(cc, "not the primary (a replica): asking the "
		    "sentinels again");
		cl_sen_forget(cl);
		return;
	}
	if (cc->cc_up || cc->cc_pending > 0)
		return;		/* AUTH answered, SELECT still to come */
	cl_conn_up(cc);
}

/* cc is connected and set up. */
static void
cl_conn_up(struct cl_conn *cc)
{
	struct cluster	*cl = cc->cc_cl;

	cc->cc_up = 1;
	cc->cc_backoff_ms = 0;
	cc->cc_fails = 0;
	if (cc->cc_warned || cc == &cl->cl_cmd)
		log_info("cluster: connected to %s %s:%d (%s connection)",
		    cc == &cl->cl_sen ? "the sentinel" : "Redis",
		    cc == &cl->cl_sen ? cl->cl_sen_host[cl->cl_sen_cur] :
		    cl->cl_unix != NULL ? cl->cl_unix : cl->cl_host,
		    cc == &cl->cl_sen ? cl->cl_sen_port[cl->cl_sen_cur] :
		    cl->cl_port, cc->cc_what);
	cc->cc_warned = 0;
	if (cc == &cl->cl_cmd && cl->cl_sm != NULL)
		__atomic_store_n(&cl->cl_sm->sm_cluster_up, 1,
		    __ATOMIC_RELAXED);
	if (cc == &cl->cl_cmd)
		cllimit_redis(cl->cl_lim, 1);
	if (cc == &cl->cl_sen) {
		cl_sen_ask(cl);
		return;
	}
	/* Every (re)connection goes through a join: it decides where the
	 * reader starts, and whether it must resynchronise first. */
	cl->cl_joined = 0;
	cl_join(cl);
}

static void
cl_connect_cb(const redisAsyncContext *ac, int status)
{
	struct cl_conn	*cc = ac->data;
	const char	*argv[3];
	char		 db[16];
	int		 n = 0;

	if (cc == NULL || cc->cc_ac != ac)
		return;
	if (status != REDIS_OK) {
		/* hiredis frees the context after this callback. */
		cl_conn_lost(cc, ac->errstr[0] != '\0' ? ac->errstr :
		    "cannot connect");
		return;
	}
	/* A sentinel: AUTH if it has a password, then usable. */
	if (cc == &cc->cc_cl->cl_sen) {
		if (cc->cc_cl->cl_sen_pass == NULL) {
			cl_conn_up(cc);
			return;
		}
		argv[0] = "AUTH";
		argv[1] = cc->cc_cl->cl_sen_pass;
		if (cl_send(cc, cl_setup_cb, cc, 2, argv) == -1)
			goto fail;
		return;
	}
	/* AUTH [user] password, SELECT db, then usable (cl_setup_cb). */
	if (cc->cc_cl->cl_pass != NULL) {
		argv[n] = "AUTH";
		n++;
		if (cc->cc_cl->cl_user != NULL) {
			argv[n] = cc->cc_cl->cl_user;
			n++;
		}
		argv[n] = cc->cc_cl->cl_pass;
		n++;
		if (cl_send(cc, cl_setup_cb, cc, n, argv) == -1)
			goto fail;
	}
	snprintf(db, sizeof(db), "%d", cc->cc_cl->cl_db);
	argv[0] = "SELECT";
	argv[1] = db;
	if (cl_send(cc, cl_setup_cb, cc, 2, argv) == -1)
		goto fail;
	/* What the sentinels named must still be the primary. */
	if (cc->cc_cl->cl_nsen > 0) {
		argv[0] = "ROLE";
		if (cl_send(cc, cl_setup_cb, cc, 1, argv) == -1)
			goto fail;
	}
	return;
fail:
	/*
	 * Not cl_drop(): hiredis 0.14 would free the context under its own
	 * connect handler.  The tick drops it (cc_kill).
	 */
	cc->cc_kill = 1;
}

static void
cl_connect(struct cl_conn *cc)
{
	struct cluster		*cl = cc->cc_cl;
	redisAsyncContext	*ac;

	if (cc == &cl->cl_sen) {
		cl->cl_sen_cur = cl->cl_sen_next;
		cl->cl_sen_next = (cl->cl_sen_next + 1) % cl->cl_nsen;
		ac = redisAsyncConnect(cl->cl_sen_host[cl->cl_sen_cur],
		    cl->cl_sen_port[cl->cl_sen_cur]);
	} else if (cl->cl_nsen > 0 && cl->cl_host == NULL) {
		/* The sentinels have not named the primary yet. */
		cc->cc_retry_ms = util_mono_ms() + CL_BACKOFF_MIN_MS;
		return;
	} else
		ac = cl->cl_unix != NULL ? redisAsyncConnectUnix(cl->cl_unix) :
		    redisAsyncConnect(cl->cl_host, cl->cl_port);
	if (ac == NULL) {
		cl_conn_lost(cc, "out of memory");
		return;
	}
	if (ac->err != 0) {
		char	 why[256];

		snprintf(why, sizeof(why), "%s", ac->errstr);
		redisAsyncFree(ac);
		cl_conn_lost(cc, why);
		return;
	}
	ac->data = cc;
	cc->cc_ac = ac;
	cc->cc_pending = 0;
	cc->cc_kill = 0;
	/*
	 * A peer gone without a word (power lost) is found out too (TCP
	 * only: on a Unix socket hiredis would mark the context failed).
	 */
	if (cc == &cl->cl_sen || cl->cl_unix == NULL)
		(void)redisEnableKeepAlive(&ac->c);
	cc->cc_since_ms = util_mono_ms();
	if (redisLibeventAttach(ac, cl->cl_base) != REDIS_OK ||
	    redisAsyncSetConnectCallback(ac, cl_connect_cb) != REDIS_OK ||
	    redisAsyncSetDisconnectCallback(ac, cl_disconnect_cb) !=
	    REDIS_OK) {
		cc->cc_ac = NULL;
		redisAsyncFree(ac);
		cl_conn_lost(cc, "cannot attach to the event loop");
	}
}

/* --- Sentinel ---------------------------------------------------------- */

/*
 * The primary at host:port (named by the sentinels): if it is another
 * one, both connections are dropped and reconnect to it, and the join
 * that follows checks the stream (a failover may have lost the last
 * changes: cl_beat_cb).
 */
static void
cl_sen_primary(struct cluster *cl, const char *host, size_t hostlen,
    int port, const char *how)
{
	char	*h;

	if (cl->cl_host != NULL && strlen(cl->cl_host) == hostlen &&
	    memcmp(cl->cl_host, host, hostlen) == 0 && cl->cl_port == port)
		return;
	if ((h = strndup(host, hostlen)) == NULL)
		return;
	log_warnx("cluster \"%s\": the primary %s is %s:%d (%s)%s",
	    cl->cl_name, cl->cl_master, h, port, how,
	    cl->cl_host != NULL ? "; reconnecting" : "");
	if (cl->cl_host != NULL)
		cl->cl_failovers++;
	free(cl->cl_host);
	cl->cl_host = h;
	cl->cl_port = port;
	cl_drop(&cl->cl_cmd, "the primary changed");
	cl_drop(&cl->cl_rd, "the primary changed");
	cl->cl_cmd.cc_retry_ms = cl->cl_rd.cc_retry_ms = 0;
	cl->cl_cmd.cc_backoff_ms = cl->cl_rd.cc_backoff_ms = 0;
}

/* The primary named is not one (or gone): ask the sentinels again. */
static void
cl_sen_forget(struct cluster *cl)
{
	if (cl->cl_nsen == 0)
		return;
	cl_drop(&cl->cl_sen, "asking the next sentinel");
	cl->cl_sen.cc_retry_ms = 0;
}

/* +switch-master: "NAME OLDIP OLDPORT NEWIP NEWPORT". */
static void
cl_sen_msg_cb(redisAsyncContext *ac, void *r, void *arg)
{
	struct cluster	*cl = arg;
	redisReply	*reply = r, *m;
	const char	*w[5];
	size_t		 wl[5], n = 0;
	const char	*p, *end;
	char		*ep;
	long		 port;

	if (cl->cl_sen.cc_ac != ac || reply == NULL ||
	    reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
	    reply->element[0]->type != REDIS_REPLY_STRING ||
	    strcmp(reply->element[0]->str, "message") != 0)
		return;
	m = reply->element[2];
	if (m->type != REDIS_REPLY_STRING)
		return;
	for (p = m->str, end = m->str + m->len; p < end && n < 5; n++) {
		w[n] = p;
		while (p < end && *p != ' ')
			p++;
		wl[n] = (size_t)(p - w[n]);
		while (p < end && *p == ' ')
			p++;
	}
	if (n != 5 || wl[0] != strlen(cl->cl_master) ||
	    memcmp(w[0], cl->cl_master, wl[0]) != 0 || wl[4] > 5)
		return;
	port = strtol(w[4], &ep, 10);
	if (ep != w[4] + wl[4] || port < 1 || port > 65535 || wl[3] > 255)
		return;
	cl_sen_primary(cl, w[3], wl[3], (int)port, "+switch-master");
}

static void
cl_sen_addr_cb(redisAsyncContext *ac, void *r, void *arg)
{
	struct cluster	*cl = arg;
	redisReply	*reply = r;
	const char	*argv[2];
	char		*ep;
	long		 port;

	if (!cl_reply_on(&cl->cl_sen, ac, reply))
		return;
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
	    reply->element[0]->type != REDIS_REPLY_STRING ||
	    reply->element[1]->type != REDIS_REPLY_STRING ||
	    reply->element[0]->len == 0 || reply->element[0]->len > 255 ||
	    (port = strtol(reply->element[1]->str, &ep, 10)) < 1 ||
	    port > 65535 || *ep != '\0') {
		cl_drop(&cl->cl_sen, reply->type == REDIS_REPLY_ERROR ?
		    reply->str : "it does not know the primary");
		return;
	}
	cl_sen_primary(cl, reply->element[0]->str, reply->element[0]->len,
	    (int)port, "asked");
	/* Then it tells of every failover; not counted as pending. */
	argv[0] = "SUBSCRIBE";
	argv[1] = "+switch-master";
	if (redisAsyncCommandArgv(ac, cl_sen_msg_cb, cl, 2, argv, NULL) !=
	    REDIS_OK)
		cl_drop(&cl->cl_sen, "cannot subscribe");
}

static void
cl_sen_ask(struct cluster *cl)
{
	const char	*argv[3];

	argv[0] = "SENTINEL";
	argv[1] = "get-master-addr-by-name";
	argv[2] = cl->cl_master;
	if (cl_send(&cl->cl_sen, cl_sen_addr_cb, cl, 3, argv) == -1)
		cl->cl_sen.cc_kill = 1;	/* maybe in the connect callback */
}

/* The connection's state for the 100 ms tick: time out, reconnect. */
static void
cl_conn_tick(struct cl_conn *cc, int64_t now)
{
	if (cc->cc_ac == NULL) {
		if (now >= cc->cc_retry_ms)
			cl_connect(cc);
		return;
	}
	if (cc->cc_kill) {
		cc->cc_kill = 0;
		cl_drop(cc, "cannot send");
		return;
	}
	/* Connecting counts as a command waiting. */
	if ((cc->cc_pending > 0 || !cc->cc_up) &&
	    now - cc->cc_since_ms > cc->cc_limit_ms)
		cl_drop(cc, "timed out");
}

/* --- positions, state ------------------------------------------------- */

/*
 * A reply string as an epoch (the words this node makes: 1 to 32 of
 * [A-Za-z0-9_.-], as cluster.state takes them) into out[40], or "" for an
 * empty one when empty is allowed; 0 or -1.
 */
static int
cl_reply_epoch(const redisReply *r, char *out, int empty)
{
	size_t	 i;

	if (r == NULL || r->type != REDIS_REPLY_STRING || r->len > 32 ||
	    (r->len == 0 && !empty))
		return (-1);
	for (i = 0; i < r->len; i++)
		if (!((r->str[i] >= '0' && r->str[i] <= '9') ||
		    (r->str[i] >= 'a' && r->str[i] <= 'z') ||
		    (r->str[i] >= 'A' && r->str[i] <= 'Z') ||
		    strchr("_.-", r->str[i]) != NULL) || r->str[i] == '\0')
			return (-1);
	memcpy(out, r->str, r->len);
	out[r->len] = '\0';
	return (0);
}

/* Parse a reply string as a position; 0 or -1. */
static int
cl_reply_pos(const redisReply *r, struct cl_pos *p)
{
	if (r == NULL || r->type != REDIS_REPLY_STRING)
		return (-1);
	return (clpos_parse(r->str, r->len, p));
}

static void
cl_state_save(struct cluster *cl)
{
	struct cl_state	 s = cl->cl_state;
	char		 err[256], *text;

	s.s_pos = cl->cl_durable;
	if (clpos_cmp(&s.s_pos, &cl->cl_saved) == 0 &&
	    cl->cl_saved.p_ms != 0)
		return;
	if ((text = clmsg_format_state(&s)) == NULL)
		return;
	if (journal_file_replace(cl->cl_j, CL_STATE_FILE, text, strlen(text),
	    err, sizeof(err)) == -1)
		log_warnx("cluster: %s", err);
	else
		cl->cl_saved = s.s_pos;
	free(text);
}

/* cluster.state into cl_state, or a new node id; 0 or -1 with err. */
static int
cl_state_load(struct cluster *cl, char *err, size_t errlen)
{
	char		 buf[4097], why[256];
	unsigned char	 rnd[CL_NODE_LEN / 2];
	ssize_t		 n;
	size_t		 i;
	int		 fd;

	memset(&cl->cl_state, 0, sizeof(cl->cl_state));
	if ((fd = journal_file_open(cl->cl_j, CL_STATE_FILE, why,
	    sizeof(why))) == -1 && errno != ENOENT) {
		snprintf(err, errlen, "%s", why);
		return (-1);
	}
	if (fd != -1) {
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n < 0 || clmsg_parse_state(buf, (size_t)n, &cl->cl_state,
		    why, sizeof(why)) == -1) {
			snprintf(err, errlen, "%s: %s", CL_STATE_FILE,
			    n < 0 ? strerror(errno) : why);
			return (-1);
		}
		/* Another cluster's position means nothing here. */
		if (strcmp(cl->cl_state.s_name, cl->cl_name) != 0) {
			log_info("cluster: %s was for cluster \"%s\", not "
			    "\"%s\": joining as a new node", CL_STATE_FILE,
			    cl->cl_state.s_name, cl->cl_name);
			cl->cl_state.s_epoch[0] = '\0';
			memset(&cl->cl_state.s_pos, 0, sizeof(struct cl_pos));
		}
	}
	if (cl->cl_state.s_node[0] == '\0') {
		if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
			snprintf(err, errlen, "no random bytes for a node id");
			return (-1);
		}
		for (i = 0; i < sizeof(rnd); i++)
			snprintf(cl->cl_state.s_node + 2 * i, 3, "%02x",
			    rnd[i]);
	}
	snprintf(cl->cl_state.s_name, sizeof(cl->cl_state.s_name), "%s",
	    cl->cl_name);
	cl->cl_durable = cl->cl_saved = cl->cl_state.s_pos;
	return (0);
}

/* --- applying changes -------------------------------------------------- */

static int
cl_lock(struct cluster *cl)
{
	if (keystore_lock(cl->cl_ks, cl->cl_pid, 2000) == KS_OK)
		return (0);
	log_warnx("cluster: the key store lock is held; applying later");
	return (-1);
}

/*
 * Under the lock: k into the journal (the cache) and the store.  A
 * journal failure does not keep the change out of memory (Redis holds
 * it; a revocation must take effect), but freezes the position
 * cluster.state may name, so a restart reads the change again.
 */
static void
cl_apply_put(struct cluster *cl, const struct ks_key *k, json_t *idem,
    uint64_t *sync)
{
	char		 err[256];
	uint64_t	 seq = cl->cl_ks->ks_hdr->kh_applied + 1;
	int		 rc;

	rc = idem != NULL ? journal_write_put_extra(cl->cl_j, seq, k,
	    json_incref(idem), err, sizeof(err)) : journal_write_put(cl->cl_j,
	    seq, k, err, sizeof(err));
	if (rc == -1) {
		if (!cl->cl_cache_failed)
			log_warnx("cluster: key %s: %s (the change is in "
			    "memory; cluster.state stays behind)", k->k_id,
			    err);
		cl->cl_cache_failed = 1;
	} else
		*sync = seq;
	if ((rc = keystore_put(cl->cl_ks, k, seq)) != KS_OK) {
		/*
		 * Fail closed: the key's older record (a secret the change
		 * replaced, a key it disabled) must not stay in effect here.
		 */
		log_warnx("cluster: key %s cannot be stored here (%s); it is "
		    "removed from this node until it can be", k->k_id,
		    rc == KS_FULL ? "the key store is full: raise max_keys" :
		    "refused");
		cl_apply_del(cl, k->k_id, sync);
		return;
	}
	if (idem != NULL && cl->cl_idem != NULL)
		idem_replay(cl->cl_idem, idem, k);
}

static void
cl_apply_del(struct cluster *cl, const char *id, uint64_t *sync)
{
	struct ks_key	 k;
	char		 err[256];
	uint32_t	 slot;
	uint64_t	 seq = cl->cl_ks->ks_hdr->kh_applied + 1;

	if (keystore_find_id(cl->cl_ks, id, &k, &slot) != KS_OK)
		return;
	if (journal_write_del(cl->cl_j, seq, id, err, sizeof(err)) == -1) {
		if (!cl->cl_cache_failed)
			log_warnx("cluster: key %s: %s (the change is in "
			    "memory; cluster.state stays behind)", id, err);
		cl->cl_cache_failed = 1;
	} else
		*sync = seq;
	keystore_del(cl->cl_ks, id, seq);
	OPENSSL_cleanse(&k, sizeof(k));
}

/* After a batch: unlock, make the lines durable, move the position. */
static void
cl_applied(struct cluster *cl, uint64_t sync, const struct cl_pos *pos)
{
	char	 err[256];

	keystore_unlock(cl->cl_ks, cl->cl_pid);
	if (sync != 0 && journal_sync(cl->cl_j, sync, err, sizeof(err)) ==
	    -1) {
		log_warnx("cluster: %s", err);
		cl->cl_cache_failed = 1;
	}
	cl->cl_state.s_pos = *pos;
	if (!cl->cl_cache_failed)
		cl->cl_durable = *pos;
	/* The stream is at least where this node read it. */
	if (clpos_cmp(pos, &cl->cl_last) > 0)
		cl->cl_last = *pos;
	if (cl->cl_sm != NULL) {
		__atomic_store_n(&cl->cl_sm->sm_cluster_applied, cl->cl_applied,
		    __ATOMIC_RELAXED);
		__atomic_store_n(&cl->cl_sm->sm_cluster_lag_ms,
		    clpos_cmp(pos, &cl->cl_last) >= 0 ? 0 :
		    (int64_t)(cl->cl_last.p_ms - pos->p_ms), __ATOMIC_RELAXED);
	}
}

/*
 * The write script (cl_lua_write) for op ("put" or "del") of key id:
 * expect, the record read (NULL: none), record (NULL for a del), and for
 * a create with an Idempotency-Key its Redis key, the "idem" JSON for the
 * stream and the entry kept under the key (else NULL).  0, or -1 if it
 * could not be sent.
 */
static int
cl_send_write(struct cluster *cl, redisCallbackFn *fn, void *arg,
    const char *op, const char *id, const char *expect, const char *record,
    const char *idemkey, const char *idem, const char *entry)
{
	const char	*argv[17] = {
		"EVAL", cl_lua_write, "6", cl->cl_k[CK_KEYS],
		cl->cl_k[CK_DIGESTS], cl->cl_k[CK_STREAM], cl->cl_k[CK_EPOCH],
		cl->cl_k[CK_USAGE], cl->cl_k[CK_IDEMS], op, id,
		expect != NULL ? expect : "", record != NULL ? record : "",
		idemkey != NULL ? idemkey : "", idem != NULL ? idem : "",
		cl->cl_state.s_node, entry != NULL ? entry : ""
	};

	return (cl_send(&cl->cl_cmd, fn, arg, 17, argv));
}

/* The ops waiting for the reader: answer those it has reached. */
static void
cl_ops_reached(struct cluster *cl)
{
	struct cl_task	**opp = &cl->cl_ops, *op;
	int64_t		 now = util_mono_ms();

	while ((op = *opp) != NULL) {
		if (op->op_waiting && (clpos_cmp(&op->op_pos,
		    &cl->cl_state.s_pos) <= 0 || now >= op->op_deadline)) {
			*opp = op->op_next;
			if (clpos_cmp(&op->op_pos, &cl->cl_state.s_pos) <= 0)
				cl_op_answer(op, op->op_result, NULL);
			else if (strcmp(op->op_result, "ok") == 0)
				cl_op_answer(op, "unavailable", "the change "
				    "was committed to Redis but not yet "
				    "applied on this node");
			else
				cl_op_answer(op, "unavailable", "the key "
				    "changed on another node, and this node "
				    "has not caught up yet; nothing was "
				    "changed");
			cl_task_free(op);
			continue;
		}
		opp = &op->op_next;
	}
}

/*
 * The namespace's records (id, record pairs from element first on) as
 * the whole store: keys it lacks are deleted first (none of them is valid
 * any more), then every record that differs is put, so no valid key is
 * ever missing.  With check, nothing is changed: 0 if every local key is
 * in the namespace as it is here, else -1 naming one in why.
 */
static int
cl_apply_dump(struct cluster *cl, const redisReply *r, size_t first,
    size_t end, int check, char *why, size_t whylen)
{
	struct cl_change ch;
	struct ks_key	 k;
	json_t		*seen;
	char		 err[256], *rec;
	const char	*f[4];
	size_t		 flen[4], i;
	uint64_t	 sync = 0;
	uint32_t	 it = 0, slot;
	int		 rc = 0;

	if ((seen = json_object()) == NULL)
		return (-1);
	for (i = first; i + 1 < end; i += 2) {
		if (r->element[i]->type != REDIS_REPLY_STRING ||
		    r->element[i + 1]->type != REDIS_REPLY_STRING)
			continue;
		f[0] = "op";
		flen[0] = 2;
		f[1] = "put";
		flen[1] = 3;
		f[2] = "key";
		flen[2] = 3;
		f[3] = r->element[i + 1]->str;
		flen[3] = r->element[i + 1]->len;
		if (clmsg_parse_change(f, flen, 4, &ch, err, sizeof(err)) ==
		    -1) {
			log_warnx("cluster: a record in Redis is refused: %s",
			    err);
			continue;
		}
		json_object_set_new(seen, ch.ch_id, json_stringn(f[3],
		    flen[3]));
		clmsg_change_free(&ch);
	}
	if (!check && cl_lock(cl) == -1) {
		json_decref(seen);
		return (-1);
	}
	/* Local keys the namespace lacks (or holds otherwise). */
	while (keystore_next(cl->cl_ks, &it, &k, &slot) == KS_OK) {
		json_t	*v = json_object_get(seen, k.k_id);

		if (check) {
			rec = clmsg_record(&k, err, sizeof(err));
			if (v == NULL || rec == NULL ||
			    strcmp(rec, json_string_value(v)) != 0) {
				snprintf(why, whylen, "key %s %s", k.k_id,
				    v == NULL ? "is not in the cluster" :
				    "differs from the cluster's");
				rc = -1;
			}
			free(rec);
			if (rc == -1)
				break;
			continue;
		}
		if (v == NULL)
			cl_apply_del(cl, k.k_id, &sync);
	}
	OPENSSL_cleanse(&k, sizeof(k));
	if (check) {
		json_decref(seen);
		return (rc);
	}
	for (i = first; i + 1 < end; i += 2) {
		const char	*id;
		json_t		*v;

		if (r->element[i]->type != REDIS_REPLY_STRING)
			continue;
		id = r->element[i]->str;
		if ((v = json_object_get(seen, id)) == NULL)
			continue;
		f[0] = "op";
		flen[0] = 2;
		f[1] = "put";
		flen[1] = 3;
		f[2] = "key";
		flen[2] = 3;
		f[3] = json_string_value(v);
		flen[3] = json_string_length(v);
		if (clmsg_parse_change(f, flen, 4, &ch, err, sizeof(err)) ==
		    -1)
			continue;
		/* Unchanged records are left alone. */
		if (keystore_find_id(cl->cl_ks, ch.ch_id, &k, &slot) == KS_OK &&
		    (rec = clmsg_record(&k, err, sizeof(err))) != NULL) {
			int same = strcmp(rec, f[3]) == 0;

			free(rec);
			if (same) {
				clmsg_change_free(&ch);
				continue;
			}
		}
		cl_apply_put(cl, &ch.ch_key, NULL, &sync);
		cl->cl_applied++;
		clmsg_change_free(&ch);
		OPENSSL_cleanse(&ch, sizeof(ch));
	}
	/* The live Idempotency-Key entries, with the keys they made. */
	for (i = end; i < r->elements; i++) {
		json_t		*o, *idem;
		json_error_t	 je;
		const char	*id;

		if (r->element[i]->type != REDIS_REPLY_STRING ||
		    r->element[i]->len > 2 * CL_IDEM_MAX)
			continue;
		o = json_loadb(r->element[i]->str, r->element[i]->len, 0, &je);
		id = json_string_value(json_object_get(o, "id"));
		idem = json_object_get(o, "idem");
		if (id != NULL && json_is_object(idem) && cl->cl_idem != NULL &&
		    keystore_find_id(cl->cl_ks, id, &k, &slot) == KS_OK)
			idem_replay(cl->cl_idem, idem, &k);
		json_decref(o);
	}
	OPENSSL_cleanse(&k, sizeof(k));
	json_decref(seen);
	return (0);
}

/* --- join, seed, resync ------------------------------------------------ */

static void
cl_joined(struct cluster *cl, const char *how)
{
	char	 pos[48];

	cl->cl_joining = 0;
	cl->cl_joined = 1;
	cl->cl_refused[0] = '\0';
	clpos_format(&cl->cl_state.s_pos, pos, sizeof(pos));
	log_info("cluster \"%s\": node %s %s at stream position %s",
	    cl->cl_name, cl->cl_state.s_node, how, pos);
	cl_state_save(cl);
	cl_read(cl);
	cl_ops_reached(cl);
}

static void
cl_dump_cb(redisAsyncContext *ac, void *r, void *arg)
{
	struct cluster	*cl = arg;
	redisReply	*reply = r;
	struct cl_pos	 last;
	char		 why[256], epoch[40];
	uint64_t	 sync = 0;
	size_t		 end;

	if (!cl_reply_on(&cl->cl_cmd, ac, reply))
		return;
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
	    cl_reply_epoch(reply->element[0], epoch, 0) == -1 ||
	    cl_reply_pos(reply->element[1], &last) == -1 ||
	    reply->element[2]->type != REDIS_REPLY_INTEGER ||
	    reply->element[2]->integer < 0 ||
	    (size_t)reply->element[2]->integer > (reply->elements - 3) / 2) {
		log_warnx("cluster: a bad answer to the dump");
		cl->cl_joining = 0;
		return;
	}
	end = 3 + 2 * (size_t)reply->element[2]->integer;
	/*
	 * Never joined, with keys of its own: a namespace without keys takes
	 * them (a seed, as into a new one); else they must be the cluster's.
	 */
	if (cl->cl_state.s_epoch[0] == '\0' &&
	    keystore_count(cl->cl_ks) > 0 && end == 3) {
		cl->cl_joining = 0;
		cl_seed(cl);
		return;
	}
	if (cl->cl_state.s_epoch[0] == '\0' &&
	    keystore_count(cl->cl_ks) > 0 &&
	    cl_apply_dump(cl, reply, 3, end, 1, why, sizeof(why)) == -1) {
		snprintf(cl->cl_refused, sizeof(cl->cl_refused), "this node's "
		    "keys are not the cluster's (%s): it keeps serving them "
		    "but does not join; empty its state_dir or use another "
		    "cluster_name", why);
		log_warnx("cluster \"%s\": %s", cl->cl_name, cl->cl_refused);
		cl->cl_joining = 0;
		return;
	}
	if (cl_apply_dump(cl, reply, 3, end, 0, why, sizeof(why)) == -1) {
		cl->cl_joining = 0;	/* the lock was busy: the next beat */
		return;
	}
	memcpy(cl->cl_state.s_epoch, epoch, sizeof(epoch));
	cl_applied(cl, sync, &last);
	/*
	 * What the node applied before is Redis's state now, or was undone
	 * by it: none of it is to be committed again after a later loss
	 * (the deletions the dump made are not in the ring, and a create
	 * left there alone would come back).
	 */
	cl_mine_clear(cl);
	cl_trim();
	cl_joined(cl, "resynchronised in full");
}

static void
cl_resync(struct cluster *cl)
{
	const char	*argv[7];

	if (cl->cl_joining == 1)
		return;		/* one is on its way */
	cl->cl_joined = 0;
	cl->cl_joining = 1;
	argv[0] = "EVAL";
	argv[1] = cl_lua_dump;
	argv[2] = "4";
	argv[3] = cl->cl_k[CK_KEYS];
	argv[4] = cl->cl_k[CK_STREAM];
	argv[5] = cl->cl_k[CK_EPOCH];
	argv[6] = cl->cl_k[CK_IDEMS];
	if (cl_send(&cl->cl_cmd, cl_dump_cb, cl, 7, argv) == -1)
		cl->cl_joining = 0;
}

static void
cl_seed_cb(redisAsyncContext *ac, void *r, void *arg)
{
	struct cluster	*cl = arg;
	redisReply	*reply = r;
	struct cl_pos	 pos;

	if (!cl_reply_on(&cl->cl_cmd, ac, reply))
		return;
	cl->cl_joining = 0;
	if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
	    reply->element[0]->type == REDIS_REPLY_STRING &&
	    strcmp(reply->element[0]->str, "exists") == 0) {
		cl_join(cl);	/* another node seeded it meanwhile */
		return;
	}
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
	    cl_reply_pos(reply->element[1], &pos) == -1) {
		log_warnx("cluster: seeding failed: %s",
		    reply->type == REDIS_REPLY_ERROR ? reply->str :
		    "a bad answer");
		return;
	}
	/* The epoch is the node's only now that the namespace has it. */
	memcpy(cl->cl_state.s_epoch, cl->cl_seeding, sizeof(cl->cl_seeding));
	cl->cl_state.s_pos = cl->cl_durable = pos;
	cl_mine_clear(cl);	/* all of it is in the seed */
	cl_trim();
	cl_joined(cl, "seeded the namespace");
}

/*
 * The namespace has no epoch (new, or Redis lost its data): seed it with
 * this node's keys under a new epoch, in one script.
 */
static void
cl_seed(struct cluster *cl)
{
	const char	**argv = NULL;
	size_t		 n, i, cap;
	char		**recs = NULL, err[256];
	unsigned char	 rnd[16];
	struct ks_key	 k;
	uint32_t	 it = 0, slot;

	cap = 9 + 2 * (size_t)keystore_count(cl->cl_ks);
	if ((argv = calloc(cap, sizeof(*argv))) == NULL ||
	    (recs = calloc(cap, sizeof(*recs))) == NULL ||
	    RAND_bytes(rnd, sizeof(rnd)) != 1)
		goto done;
	for (i = 0; i < sizeof(rnd); i++)
		snprintf(cl->cl_seeding + 2 * i, 3, "%02x", rnd[i]);
	argv[0] = "EVAL";
	argv[1] = cl_lua_seed;
	argv[2] = "4";
	argv[3] = cl->cl_k[CK_KEYS];
	argv[4] = cl->cl_k[CK_DIGESTS];
	argv[5] = cl->cl_k[CK_STREAM];
	argv[6] = cl->cl_k[CK_EPOCH];
	argv[7] = cl->cl_seeding;
	argv[8] = cl->cl_state.s_node;
	n = 9;
	while (n + 2 <= cap && keystore_next(cl->cl_ks, &it, &k, &slot) ==
	    KS_OK) {
		if ((recs[n] = clmsg_record(&k, err, sizeof(err))) == NULL) {
			log_warnx("cluster: key %s not seeded: %s", k.k_id,
			    err);
			continue;
		}
		argv[n + 1] = recs[n];
		if ((recs[n + 1] = strdup(k.k_id)) == NULL) {
			free(recs[n]);
			recs[n] = NULL;
			continue;
		}
		argv[n] = recs[n + 1];
		n += 2;
	}
	OPENSSL_cleanse(&k, sizeof(k));
	cl->cl_joining = 1;
	log_info("cluster \"%s\": the namespace is empty; seeding it with "
	    "this node's %zu key(s)", cl->cl_name, (n - 9) / 2);
	if (cl_send(&cl->cl_cmd, cl_seed_cb, cl, (int)n, argv) == -1)
		cl->cl_joining = 0;
done:
	if (recs != NULL)
		for (i = 0; i < cap; i++)
			free(recs[i]);
	free(recs);
	free(argv);
}

/* Nodes, lag and the namespace's state from a heartbeat's answer. */
static void
cl_beat_cb(redisAsyncContext *ac, void *r, void *arg)
{
	struct cluster	*cl = arg;
	redisReply	*reply = r;
	struct cl_pos	 last, first, sent;
	json_t		*nodes, *o;
	json_error_t	 je;
	char		 epoch[40], a[48], b[48];
	size_t		 i;
	int		 join = cl->cl_joining == 2, has, lost;

	if (!cl_reply_on(&cl->cl_cmd, ac, reply))
		return;
	/* Where this node was when it sent the beat: the stream had that. */
	sent = cl->cl_beatq[0];
	if (cl->cl_nbeatq > 0)
		memmove(cl->cl_beatq, cl->cl_beatq + 1,
		    --cl->cl_nbeatq * sizeof(cl->cl_beatq[0]));
	if (join)
		cl->cl_joining = 0;
	memset(&first, 0, sizeof(first));
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 4 ||
	    cl_reply_epoch(reply->element[0], epoch, 1) == -1 ||
	    cl_reply_pos(reply->element[1], &last) == -1 ||
	    reply->element[2]->type != REDIS_REPLY_STRING ||
	    (reply->element[2]->len > 0 &&
	    cl_reply_pos(reply->element[2], &first) == -1) ||
	    reply->element[3]->type != REDIS_REPLY_INTEGER) {
		log_warnx("cluster: a bad answer to the heartbeat%s%s",
		    reply->type == REDIS_REPLY_ERROR ? ": " : "",
		    reply->type == REDIS_REPLY_ERROR ? reply->str : "");
		return;
	}
	has = reply->element[3]->integer != 0;
	cl->cl_last = last;
	cl->cl_last_seen = util_now_ms();
	if ((nodes = json_array()) != NULL) {
		for (i = 4; i < reply->elements && i < 4 + CL_MAX_NODES; i++) {
			if (reply->element[i]->type != REDIS_REPLY_STRING)
				continue;
			o = json_loadb(reply->element[i]->str,
			    reply->element[i]->len, 0, &je);
			if (o != NULL && json_is_object(o))
				json_array_append(nodes, o);
			json_decref(o);
		}
		json_decref(cl->cl_nodes);
		cl->cl_nodes = nodes;
		cllimit_nodes(cl->cl_lim, (uint32_t)json_array_size(nodes));
	}
	if (cl->cl_sm != NULL)
		__atomic_store_n(&cl->cl_sm->sm_cluster_lag_ms,
		    clpos_cmp(&cl->cl_state.s_pos, &last) >= 0 ? 0 :
		    (int64_t)(last.p_ms - cl->cl_state.s_pos.p_ms),
		    __ATOMIC_RELAXED);
	if (cl->cl_refused[0] != '\0' || cl->cl_joining)
		return;
	/*
	 * Redis lost changes (a failover to a replica that had not received
	 * them, a restart from an older snapshot) when the stream's
	 * last-generated-id, which trimming leaves, is below what this node
	 * read, or when the entry it read last is gone but not by trimming
	 * (trimming removes the oldest entries: a later one is still there).
	 * The node's position is only compared if it has not moved since the
	 * beat was sent.
	 */
	lost = clpos_cmp(&sent, &cl->cl_state.s_pos) == 0 &&
	    (sent.p_ms != 0 || sent.p_seq != 0) &&
	    (clpos_cmp(&last, &sent) < 0 || (!has && (first.p_ms != 0 ||
	    first.p_seq != 0) && clpos_cmp(&sent, &first) > 0));
	if (epoch[0] == '\0') {
		if (cl->cl_state.s_epoch[0] != '\0')
			log_warnx("cluster \"%s\": the namespace is gone from "
			    "Redis (it lost its data?); seeding it again "
			    "from this node's keys", cl->cl_name);
		cl->cl_joined = 0;
		cl_seed(cl);
	} else if (strcmp(epoch, cl->cl_state.s_epoch) != 0) {
		if (cl->cl_state.s_epoch[0] == '\0') {
			cl_resync(cl);
			return;
		}
		/*
		 * Recreated (Redis lost everything, another node seeded it
		 * from its copy): what this node applied that the seed
		 * lacks is committed again first, as after a loss.
		 */
		log_warnx("cluster \"%s\": the namespace was recreated (epoch "
		    "%s, this node had %s); resynchronising", cl->cl_name,
		    epoch, cl->cl_state.s_epoch);
		cl_recheck(cl);
	} else if (lost) {
		/*
		 * New entries could get ids below this node's position, so
		 * the reader cannot go on from there: the changes this node
		 * applied that the stream lacks are committed again first
		 * (cl_recheck), then Redis's state is taken whole.
		 */
		clpos_format(&last, a, sizeof(a));
		clpos_format(&sent, b, sizeof(b));
		log_warnx("cluster \"%s\": the stream (last id %s) lacks "
		    "this node's position %s: Redis lost changes; "
		    "resynchronising", cl->cl_name, a, b);
		cl_recheck(cl);
	} else if (!has && clpos_cmp(&sent, &cl->cl_state.s_pos) == 0) {
		clpos_format(&first, a, sizeof(a));
		clpos_format(&sent, b, sizeof(b));
		log_warnx("cluster \"%s\": the stream was trimmed past this "
		    "node's position (first entry %s, position %s); "
		    "resynchronising", cl->cl_name,
		    reply->element[2]->len > 0 ? a : "none", b);
		cl_resync(cl);
	} else if (!cl->cl_joined)
		cl_joined(cl, "resumed");
}

static void
cl_beat(struct cluster *cl, int join)
{
	const char	*argv[11];
	char		 pos[48], *info;
	json_t		*o;

	if (!cl->cl_cmd.cc_up || (join && cl->cl_joining) ||
	    cl->cl_nbeatq >= (int)nitems(cl->cl_beatq))
		return;
	clpos_format(&cl->cl_state.s_pos, pos, sizeof(pos));
	if ((o = json_pack("{s:s,s:s,s:I,s:s,s:s,s:I}", "node",
	    cl->cl_state.s_node, "host", cl->cl_hostname, "pid",
	    (json_int_t)cl->cl_pid, "position", pos, "version",
	    PACKAGE_VERSION, "seen", (json_int_t)util_now_ms())) == NULL)
		return;
	info = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (info == NULL)
		return;
	argv[0] = "EVAL";
	argv[1] = cl_lua_beat;
	argv[2] = "3";
	argv[3] = cl->cl_k[CK_NODES];
	argv[4] = cl->cl_k[CK_STREAM];
	argv[5] = cl->cl_k[CK_EPOCH];
	argv[6] = cl->cl_state.s_node;
	argv[7] = info;
	argv[8] = XSTR_TTL;
	argv[9] = cl->cl_k[CK_NODE];
	argv[10] = pos;
	if (cl_send(&cl->cl_cmd, cl_beat_cb, cl, 11, argv) == 0) {
		cl->cl_beatq[cl->cl_nbeatq++] = cl->cl_state.s_pos;
		if (join)
			cl->cl_joining = 2;
	}
	free(info);
}

/* After a (re)connection: learn the namespace's state, then decide. */
static void
cl_join(struct cluster *cl)
{
	if (!cl->cl_cmd.cc_up || !cl->cl_rd.cc_up || cl->cl_refused[0] != '\0')
		return;
	cl_beat(cl, 1);
}

/* --- the stream reader ------------------------------------------------- */

/* The well-formed key id of an entry's "id" field into id; 1, or 0. */
static int
cl_entry_id(const char *const *f, const size_t *flen, size_t n, char *id)
{
	size_t	 i;

	for (i = 0; i + 1 < n; i += 2)
		if (flen[i] == 2 && memcmp(f[i], "id", 2) == 0 &&
		    secret_valid_id(f[i + 1], flen[i + 1])) {
			memcpy(id, f[i + 1], flen[i + 1]);
			id[flen[i + 1]] = '\0';
			return (1);
		}
	return (0);
}

/*
 * Apply the entries of an XREAD answer (the stream's entries array).
 * 1 if a seed entry of another epoch asks for a resync, else 0.
 */
static int
cl_read_apply(struct cluster *cl, const redisReply *entries, size_t *count)
{
	redisReply	*e, *fv;
	struct cl_change ch;
	struct cl_pos	 pos, at = cl->cl_state.s_pos;
	const char	*f[16];
	size_t		 flen[16], i, j;
	uint64_t	 sync = 0;
	char		 err[256], ps[48], id[KS_ID_LEN + 4];
	int		 locked = 0, resync = 0;

	*count = entries->elements;
	for (i = 0; i < entries->elements; i++) {
		e = entries->element[i];
		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
		    cl_reply_pos(e->element[0], &pos) == -1 ||
		    (fv = e->element[1])->type != REDIS_REPLY_ARRAY)
			continue;
		if (clpos_cmp(&pos, &at) <= 0)
			continue;	/* a resync covered it */
		for (j = 0; j < fv->elements && j < 16; j++) {
			if (fv->element[j]->type != REDIS_REPLY_STRING)
				break;
			f[j] = fv->element[j]->str;
			flen[j] = fv->element[j]->len;
		}
		clpos_format(&pos, ps, sizeof(ps));
		if (j != fv->elements || clmsg_parse_change(f, flen, j, &ch, err,
		    sizeof(err)) == -1) {
			log_warnx("cluster: stream entry %s skipped: %s", ps,
			    j != fv->elements ? "not strings" : err);
			/* Fail closed: a key it names is not kept as it was. */
			if (j == fv->elements && cl_entry_id(f, flen, j, id) &&
			    (locked || cl_lock(cl) == 0)) {
				locked = 1;
				cl_apply_del(cl, id, &sync);
			}
			at = pos;
			continue;
		}
		if (ch.ch_kind == CL_CH_SEED) {
			if (strcmp(ch.ch_epoch, cl->cl_state.s_epoch) != 0)
				resync = 1;
			at = pos;
			if (resync)
				break;
			continue;
		}
		if (!locked) {
			if (cl_lock(cl) == -1) {
				clmsg_change_free(&ch);
				break;
			}
			locked = 1;
		}
		cl_mine_add(cl, &pos, ch.ch_id, ch.ch_kind == CL_CH_PUT ?
		    &ch.ch_key : NULL);
		if (ch.ch_kind == CL_CH_PUT)
			cl_apply_put(cl, &ch.ch_key, ch.ch_idem, &sync);
		else
			cl_apply_del(cl, ch.ch_id, &sync);
		cl->cl_applied++;
		clmsg_change_free(&ch);
		OPENSSL_cleanse(&ch, sizeof(ch));
		at = pos;
	}
	if (locked)
		cl_applied(cl, sync, &at);
	else if (clpos_cmp(&at, &cl->cl_state.s_pos) > 0) {
		cl->cl_state.s_pos = at;
		if (!cl->cl_cache_failed)
			cl->cl_durable = at;
	}
	cl_ops_reached(cl);
	return (resync);
}

/* The entries array of an XREAD answer, or NULL (none: a timeout). */
static const redisReply *
cl_read_entries(const redisReply *r)
{
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 1 ||
	    r->element[0]->type != REDIS_REPLY_ARRAY ||
	    r->element[0]->elements != 2 ||
	    r->element[0]->element[1]->type != REDIS_REPLY_ARRAY)
		return (NULL);
	return (r->element[0]->element[1]);
}

/*
 * A reader's answer r on ac: 1 if it is to be applied.  Not if the
 * connection is another one now, nor if r is the NULL of a dropped one,
 * nor while a recheck or resync is on (it decides what comes next).
 */
static int
cl_read_reply(struct cluster *cl, const redisAsyncContext *ac,
    const void *r)
{
	if (cl->cl_rd.cc_ac != ac)
		return (0);
	cl_answered(&cl->cl_rd);
	cl->cl_reading = 0;
	return (r != NULL && cl->cl_joined);
}

/*
 * The reader's two steps.  Behind the stream's end, it reads with
 * MULTI [XRANGE P P, XREAD COUNT n P] EXEC: trimming removes the oldest
 * entries, so while the entry at P (the last one applied) is still there
 * no entry after it can be gone, and both answers are of one moment.  If
 * P is gone, entries after it may be too: the node resynchronises.  At
 * the end (nothing after P), it waits with XREAD BLOCK: an entry added
 * wakes it before any trim could remove that entry (the write script
 * trims in the same step as it adds, never the entry it adds).
 */
static void
cl_read_done(struct cluster *cl, const redisReply *entries, int blocking)
{
	size_t	 n = 0;

	if (entries != NULL && cl_read_apply(cl, entries, &n) == 1) {
		log_warnx("cluster \"%s\": the namespace was seeded anew; "
		    "resynchronising", cl->cl_name);
		cl_recheck(cl);
		return;
	}
	/* A full batch: more may wait; an empty checked read: the end. */
	cl_read_next(cl, n == 0 && !blocking);
}

static void
cl_read_exec_cb(redisAsyncContext *ac, void *r, void *arg)
{
	struct cluster	*cl = arg;
	redisReply	*reply = r;
	char		 ps[48];

	if (!cl_read_reply(cl, ac, reply))
		return;
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
	    reply->element[0]->type != REDIS_REPLY_ARRAY) {
		log_warnx("cluster: the stream read failed: %.200s",
		    reply->type == REDIS_REPLY_ERROR ? reply->str :
		    reply->type == REDIS_REPLY_NIL ? "aborted" : "a bad answer");
		cl_drop(&cl->cl_rd, "the stream read failed");
		return;
	}
	if (reply->element[0]->elements == 0 &&
	    (cl->cl_state.s_pos.p_ms != 0 || cl->cl_state.s_pos.p_seq != 0)) {
		clpos_format(&cl->cl_state.s_pos, ps, sizeof(ps));
		log_warnx("cluster \"%s\": the stream no longer holds this "
		    "node's position %s (trimmed); resynchronising",
		    cl->cl_name, ps);
		cl_resync(cl);
		return;
	}
	cl_read_done(cl, cl_read_entries(reply->element[1]), 0);
}

static void
cl_read_block_cb(redisAsyncContext *ac, void *r, void *arg)
{
	struct cluster	*cl = arg;
	redisReply	*reply = r;

	if (!cl_read_reply(cl, ac, reply))
		return;
	if (reply->type == REDIS_REPLY_ERROR) {
		log_warnx("cluster: XREAD: %.200s", reply->str);
		cl_drop(&cl->cl_rd, "XREAD failed");
		return;
	}
	cl_read_done(cl, cl_read_entries(reply), 1);
}

/* The next read: checked (behind), or blocking (at the end). */
static void
cl_read_next(struct cluster *cl, int block)
{
	const char	*argv[8];
	char		 pos[48];

	if (!cl->cl_joined || cl->cl_reading || !cl->cl_rd.cc_up ||
	    cl->cl_rd.cc_ac == NULL)
		return;
	clpos_format(&cl->cl_state.s_pos, pos, sizeof(pos));
	if (block) {
		argv[0] = "XREAD";
		argv[1] = "COUNT";
		argv[2] = XSTR_BATCH;
		argv[3] = "BLOCK";
		argv[4] = XSTR_BLOCK;
		argv[5] = "STREAMS";
		argv[6] = cl->cl_k[CK_STREAM];
		argv[7] = pos;
		if (cl_send(&cl->cl_rd, cl_read_block_cb, cl, 8, argv) == 0)
			cl->cl_reading = 1;
		return;
	}
	/* MULTI, XRANGE, XREAD are answered within EXEC's answer. */
	argv[0] = "MULTI";
	if (redisAsyncCommandArgv(cl->cl_rd.cc_ac, NULL, NULL, 1, argv,
	    NULL) != REDIS_OK)
		goto fail;
	argv[0] = "XRANGE";
	argv[1] = cl->cl_k[CK_STREAM];
	argv[2] = pos;
	argv[3] = pos;
	if (redisAsyncCommandArgv(cl->cl_rd.cc_ac, NULL, NULL, 4, argv,
	    NULL) != REDIS_OK)
		goto fail;
	argv[0] = "XREAD";
	argv[1] = "COUNT";
	argv[2] = XSTR_BATCH;
	argv[3] = "STREAMS";
	argv[4] = cl->cl_k[CK_STREAM];
	argv[5] = pos;
	if (redisAsyncCommandArgv(cl->cl_rd.cc_ac, NULL, NULL, 6, argv,
	    NULL) != REDIS_OK)
		goto fail;
	argv[0] = "EXEC";
	if (cl_send(&cl->cl_rd, cl_read_exec_cb, cl, 1, argv) == 0) {
		cl->cl_reading = 1;
		return;
	}
fail:
	cl_drop(&cl->cl_rd, "cannot send");
}

/* Start reading (after a join): a checked read first. */
static void
cl_read(struct cluster *cl)
{
	cl_read_next(cl, 0);
}

/* --- usage merged across nodes ---------------------------------------- */

/*
 * Every CL_USAGE_MS the master adds each key's requests since its last
 * push to the key's hash in Redis (usage:ID: a, l, r, and t the latest
 * use), so that GET /v1/keys/{id}/usage shows the whole cluster: what
 * Redis holds plus what this node counted since.  Counts a node restored
 * from keys.usage at its start count as pushed (they were, before it
 * stopped); a push whose answer is lost is sent again (at least once).
 */
static struct cl_ubase *
cl_ubase_of(struct cluster *cl, uint32_t slot, const char *id)
{
	struct cl_ubase	*b;

	if (cl->cl_ubase == NULL || slot >= cl->cl_nubase)
		return (NULL);
	b = &cl->cl_ubase[slot];
	if (strcmp(b->ub_id, id) != 0) {
		/* A key new in this slot: nothing of it was pushed. */
		memset(b, 0, sizeof(*b));
		snprintf(b->ub_id, sizeof(b->ub_id), "%s", id);
	}
	return (b);
}

/* At start: the counts restored so far are the cluster's already. */
static void
cl_usage_start(struct cluster *cl)
{
	struct cl_ubase	*b;
	struct ks_key	 k;
	uint64_t	 allowed, refused;
	uint32_t	 it = 0, slot;

	cl->cl_nubase = cl->cl_ks->ks_hdr->kh_max_keys;
	if ((cl->cl_ubase = calloc(cl->cl_nubase, sizeof(*cl->cl_ubase))) ==
	    NULL) {
		log_warnx("cluster: no memory for usage baselines; usage is "
		    "shown per node");
		cl->cl_nubase = 0;
		return;
	}
	while (keystore_next(cl->cl_ks, &it, &k, &slot) == KS_OK) {
		if ((b = cl_ubase_of(cl, slot, k.k_id)) == NULL)
			continue;
		keystore_counts(cl->cl_ks, slot, b->ub_sent);
		memcpy(b->ub_done, b->ub_sent, sizeof(b->ub_done));
		keystore_usage(cl->cl_ks, slot, &allowed, &refused,
		    &b->ub_last);
	}
	OPENSSL_cleanse(&k, sizeof(k));
}

static void
cl_usage_cb(redisAsyncContext *ac, void *r, void *arg)
{
	struct cl_push	*p = arg;
	struct cluster	*cl = p->p_cl;
	redisReply	*reply = r;
	struct cl_ubase	*b;
	size_t		 i;
	int		 ok;

	cl_answered_on(&cl->cl_cmd, ac);
	/* A Lua string comes back as a bulk string. */
	ok = reply != NULL && (reply->type == REDIS_REPLY_STATUS ||
	    reply->type == REDIS_REPLY_STRING) && strcmp(reply->str, "ok") == 0;
	if (reply != NULL && !ok)
		log_warnx("cluster: usage push failed: %.200s",
		    reply->type == REDIS_REPLY_ERROR ? reply->str :
		    "a bad answer");
	for (i = 0; i < p->p_n; i++) {
		b = &cl->cl_ubase[p->p_slot[i]];
		if (strcmp(b->ub_id, p->p_id[i]) != 0)
			continue;
		/* Confirmed; or sent again with the next push. */
		if (ok)
			memcpy(b->ub_done, b->ub_sent, sizeof(b->ub_done));
		else
			memcpy(b->ub_sent, b->ub_done, sizeof(b->ub_sent));
	}
	cl->cl_pushing = 0;
	free(p);
}

static void
cl_usage_push(struct cluster *cl)
{
	struct cl_push	*p;
	struct cl_ubase	*b;
	struct ks_key	 k;
	const char	**argv = NULL;
	size_t		 n, i, j;
	char		 (*num)[24] = NULL, minute[24];
	uint64_t	 c[KS_NCOUNTS], allowed, refused, d;
	int64_t		 last;
	uint32_t	 slot;
	int		 rc;
	static const int order[] = { KS_C_ALLOWED, KS_C_LIMITED,
	    KS_C_REFUSED };

	if (cl->cl_pushing || !cl->cl_joined || !cl->cl_cmd.cc_up ||
	    cl->cl_ubase == NULL)
		return;
	n = 6 + 5 * (size_t)CL_USAGE_BATCH;
	if ((p = calloc(1, sizeof(*p))) == NULL ||
	    (argv = calloc(n, sizeof(*argv))) == NULL ||
	    (num = calloc(4 * (size_t)CL_USAGE_BATCH, sizeof(*num))) == NULL)
		goto done;
	p->p_cl = cl;
	argv[0] = "EVAL";
	argv[1] = cl_lua_usage;
	argv[2] = "0";
	argv[3] = cl->cl_k[CK_USAGE];
	argv[4] = cl->cl_k[CK_HIST];
	snprintf(minute, sizeof(minute), "%" PRId64, util_now_ms() / 60000);
	argv[5] = minute;
	n = 6;
	while (p->p_n < CL_USAGE_BATCH && (rc = keystore_next(cl->cl_ks,
	    &cl->cl_usage_cursor, &k, &slot)) == KS_OK) {
		if ((b = cl_ubase_of(cl, slot, k.k_id)) == NULL)
			continue;
		keystore_counts(cl->cl_ks, slot, c);
		keystore_usage(cl->cl_ks, slot, &allowed, &refused, &last);
		if (memcmp(c, b->ub_sent, sizeof(c)) == 0 &&
		    last <= b->ub_last)
			continue;
		argv[n++] = b->ub_id;
		for (j = 0; j < 3; j++) {
			d = c[order[j]] >= b->ub_sent[order[j]] ?
			    c[order[j]] - b->ub_sent[order[j]] : 0;
			snprintf(num[4 * p->p_n + j], sizeof(num[0]), "%" PRIu64,
			    d);
			argv[n++] = num[4 * p->p_n + j];
		}
		snprintf(num[4 * p->p_n + 3], sizeof(num[0]), "%" PRId64,
		    last > b->ub_last ? last : b->ub_last);
		argv[n++] = num[4 * p->p_n + 3];
		memcpy(b->ub_sent, c, sizeof(c));
		if (last > b->ub_last)
			b->ub_last = last;
		p->p_slot[p->p_n] = slot;
		memcpy(p->p_id[p->p_n], b->ub_id, sizeof(p->p_id[0]));
		p->p_n++;
	}
	OPENSSL_cleanse(&k, sizeof(k));
	/* The whole store seen: the next push starts from the first slot;
	 * a batch cut short goes on at the next tick. */
	if (p->p_n < CL_USAGE_BATCH)
		cl->cl_usage_cursor = 0;
	else
		cl->cl_usage_ms = util_mono_ms();
	if (p->p_n == 0)
		goto done;
	if (cl_send(&cl->cl_cmd, cl_usage_cb, p, (int)n, argv) ==
	    0) {
		cl->cl_pushing = 1;
		p = NULL;
	} else
		for (i = 0; i < p->p_n; i++)
			memcpy(cl->cl_ubase[p->p_slot[i]].ub_sent,
			    cl->cl_ubase[p->p_slot[i]].ub_done,
			    sizeof(cl->cl_ubase[0].ub_sent));
done:
	free(p);
	free(argv);
	free(num);
}

/* Redis's counts of a key, plus what this node counted since it pushed. */
static void
cl_usage_query_cb(redisAsyncContext *ac, void *r, void *arg)
{
	struct cl_task	*op = arg;
	struct cluster	*cl = op->op_cl;
	redisReply	*reply = r;
	uint64_t	 v[4] = { 0, 0, 0, 0 };
	json_t		*o;
	char		*s;
	size_t		 i;
	int64_t		 last;

	cl_answered_on(&cl->cl_cmd, ac);
	cl_op_unlink(cl, op);
	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY ||
	    reply->elements != 4) {
		cl_op_answer(op, "unavailable", "Redis did not answer");
		cl_task_free(op);
		return;
	}
	/* a, l, r, t; a missing field (no push yet) is 0. */
	for (i = 0; i < 4; i++) {
		redisReply	*e = reply->element[i];
		char		*end;

		if (e->type == REDIS_REPLY_STRING && e->len > 0 && e->len < 21) {
			v[i] = strtoull(e->str, &end, 10);
			if (*end != '\0')
				v[i] = 0;
		}
	}
	last = (int64_t)v[3] > op->op_last ? (int64_t)v[3] : op->op_last;
	o = json_pack("{s:I,s:b,s:{s:I,s:I,s:I,s:I}}", "rid",
	    (json_int_t)op->op_rid, "ok", 1, "usage",
	    "allowed", (json_int_t)(v[0] + op->op_live[KS_C_ALLOWED] -
	    op->op_base[KS_C_ALLOWED]),
	    "limited", (json_int_t)(v[1] + op->op_live[KS_C_LIMITED] -
	    op->op_base[KS_C_LIMITED]),
	    "refused", (json_int_t)(v[2] + op->op_live[KS_C_REFUSED] -
	    op->op_base[KS_C_REFUSED]),
	    "last_used", (json_int_t)last);
	if (o != NULL && (s = json_dumps(o, JSON_COMPACT)) != NULL) {
		if (op->op_chan != NULL && op->op_chan->ch_fd != -1)
			(void)send(op->op_chan->ch_fd, s, strlen(s),
			    MSG_NOSIGNAL | MSG_DONTWAIT);
		free(s);
	}
	json_decref(o);
	cl_task_free(op);
}

/*
 * A usage or history query of key id: its counts here (op_live, op_last)
 * and what of them this node has sent to Redis (op_base: the commands go
 * in order on one connection, so Redis will have counted that much when
 * it answers).  0, or -1 with op answered and freed.
 */
static int
cl_query_counts(struct cluster *cl, struct cl_task *op, const char *id)
{
	struct cl_ubase	*b;
	struct ks_key	 k;
	uint64_t	 allowed, refused;
	uint32_t	 slot;
	int		 i;

	if (keystore_find_id(cl->cl_ks, id, &k, &slot) != KS_OK) {
		cl_op_answer(op, "unavailable", "no such key here");
		cl_task_free(op);
		return (-1);
	}
	OPENSSL_cleanse(&k, sizeof(k));
	keystore_counts(cl->cl_ks, slot, op->op_live);
	keystore_usage(cl->cl_ks, slot, &allowed, &refused, &op->op_last);
	if ((b = cl_ubase_of(cl, slot, id)) != NULL)
		memcpy(op->op_base, b->ub_sent, sizeof(op->op_base));
	for (i = 0; i < KS_NCOUNTS; i++)
		if (op->op_live[i] < op->op_base[i])
			op->op_live[i] = op->op_base[i];
	return (0);
}

/*
 * A key's history for the whole cluster: the minute (or hour) hashes the
 * nodes' pushes filled, plus what this node counted since its last push
 * in the current point.  Answered as the points with traffic,
 * [index, admitted, rate-limited, refused], from "first" by "step".
 */
static void
cl_history_cb(redisAsyncContext *ac, void *r, void *arg)
{
	struct cl_task	*op = arg;
	struct cluster	*cl = op->op_cl;
	redisReply	*reply = r, *h, *f, *v;
	uint64_t	(*pts)[KS_NCOUNTS] = NULL;
	int64_t		 base, abs, idx, per;
	json_t		*o = NULL, *a;
	char		*s, *end;
	size_t		 i, j, k;
	long long	 n;

	cl_answered_on(&cl->cl_cmd, ac);
	cl_op_unlink(cl, op);
	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY ||
	    (pts = calloc(op->op_n, sizeof(*pts))) == NULL) {
		cl_op_answer(op, "unavailable", "Redis did not answer");
		goto done;
	}
	/* Element i is the hash of period (first period) + i. */
	per = op->op_step == USAGE_HOUR_MS ? 24 : 60;
	base = op->op_first / op->op_step / per;
	for (i = 0; i < reply->elements; i++) {
		h = reply->element[i];
		if (h->type != REDIS_REPLY_ARRAY)
			continue;
		for (j = 0; j + 1 < h->elements; j += 2) {
			f = h->element[j];
			v = h->element[j + 1];
			if (f->type != REDIS_REPLY_STRING || f->len < 2 ||
			    f->len > 3 || v->type != REDIS_REPLY_STRING)
				continue;
			idx = strtol(f->str, &end, 10);
			if (end != f->str + f->len - 1 || idx < 0 || idx >= per)
				continue;
			k = *end == 'a' ? KS_C_ALLOWED : *end == 'l' ?
			    KS_C_LIMITED : *end == 'r' ? KS_C_REFUSED : 3;
			n = strtoll(v->str, &end, 10);
			if (k == 3 || *end != '\0' || n <= 0)
				continue;
			abs = ((base + (int64_t)i) * per + idx) -
			    op->op_first / op->op_step;
			if (abs >= 0 && abs < (int64_t)op->op_n)
				pts[abs][k] += (uint64_t)n;
		}
	}
	for (k = 0; k < KS_NCOUNTS; k++)
		pts[op->op_n - 1][k] += op->op_live[k] - op->op_base[k];
	if ((o = json_pack("{s:I,s:b,s:I,s:I,s:I,s:[]}", "rid",
	    (json_int_t)op->op_rid, "ok", 1, "first", (json_int_t)op->op_first,
	    "step", (json_int_t)op->op_step, "n", (json_int_t)op->op_n,
	    "points")) == NULL)
		goto done;
	a = json_object_get(o, "points");
	for (i = 0; i < op->op_n; i++)
		if (pts[i][0] != 0 || pts[i][1] != 0 || pts[i][2] != 0)
			json_array_append_new(a, json_pack("[I,I,I,I]",
			    (json_int_t)i, (json_int_t)pts[i][KS_C_ALLOWED],
			    (json_int_t)pts[i][KS_C_LIMITED],
			    (json_int_t)pts[i][KS_C_REFUSED]));
	if ((s = json_dumps(o, JSON_COMPACT)) != NULL) {
		if (strlen(s) > CL_REPLY_MAX)
			cl_op_answer(op, "unavailable", "the history is too "
			    "long for one answer");
		else if (op->op_chan != NULL && op->op_chan->ch_fd != -1)
			(void)send(op->op_chan->ch_fd, s, strlen(s),
			    MSG_NOSIGNAL | MSG_DONTWAIT);
		free(s);
	}
done:
	json_decref(o);
	free(pts);
	cl_task_free(op);
}

static void
cl_history_query(struct cluster *cl, struct cl_task *op, const char *id,
    int kind)
{
	const char	**argv = NULL;
	size_t		 n = 0;
	char		 (*names)[160] = NULL;
	int64_t		 now = util_now_ms(), p, p0, p1, per;

	if (cl_query_counts(cl, op, id) == -1)
		return;
	/* The points usage_history() answers on one node. */
	op->op_step = kind == USAGE_D30 ? USAGE_HOUR_MS : USAGE_MINUTE_MS;
	op->op_n = kind == USAGE_H1 ? 60 : kind == USAGE_H24 ? 1440 : 720;
	op->op_first = (now / op->op_step - (int64_t)op->op_n + 1) *
	    op->op_step;
	per = kind == USAGE_D30 ? 24 : 60;
	p0 = op->op_first / op->op_step / per;
	p1 = (now / op->op_step) / per;
	if ((argv = calloc((size_t)(p1 - p0 + 4), sizeof(*argv))) == NULL ||
	    (names = calloc((size_t)(p1 - p0 + 1), sizeof(*names))) == NULL) {
		cl_op_answer(op, "unavailable", "out of memory");
		cl_task_free(op);
		goto done;
	}
	argv[n++] = "EVAL";
	argv[n++] = cl_lua_hashes;
	argv[n++] = "0";
	for (p = p0; p <= p1; p++) {
		snprintf(names[p - p0], sizeof(names[0]), "%s%s:%c%lld",
		    cl->cl_k[CK_HIST], id, kind == USAGE_D30 ? 'h' : 'm',
		    (long long)p);
		argv[n++] = names[p - p0];
	}
	cl_op_link(cl, op);
	if (cl_send(&cl->cl_cmd, cl_history_cb, op, (int)n, argv) ==
	    -1) {
		cl_op_unlink(cl, op);
		cl_op_answer(op, "unavailable", "Redis is unreachable");
		cl_task_free(op);
	}
done:
	free(argv);
	free(names);
}

static void
cl_usage_query(struct cluster *cl, struct cl_task *op, const char *id)
{
	const char	*argv[6];
	char		 key[256];

	if (cl_query_counts(cl, op, id) == -1)
		return;
	snprintf(key, sizeof(key), "%s%s", cl->cl_k[CK_USAGE], id);
	argv[0] = "HMGET";
	argv[1] = key;
	argv[2] = "a";
	argv[3] = "l";
	argv[4] = "r";
	argv[5] = "t";
	cl_op_link(cl, op);
	if (cl_send(&cl->cl_cmd, cl_usage_query_cb, op, 6, argv) ==
	    -1) {
		cl_op_unlink(cl, op);
		cl_op_answer(op, "unavailable", "Redis is unreachable");
		cl_task_free(op);
	}
}

/* --- the workers' channels --------------------------------------------- */

/* Answer op's worker: result "ok", "retry", "unavailable" (why). */
static void
cl_op_answer(struct cl_task *op, const char *result, const char *why)
{
	json_t	*o;
	char	*s;

	if (op->op_chan == NULL || op->op_chan->ch_fd == -1)
		return;
	if (strcmp(result, "ok") == 0)
		o = json_pack("{s:I,s:b}", "rid", (json_int_t)op->op_rid,
		    "ok", 1);
	else
		o = json_pack("{s:I,s:s,s:s}", "rid", (json_int_t)op->op_rid,
		    "error", result, "message", why != NULL ? why : result);
	if (o == NULL || (s = json_dumps(o, JSON_COMPACT)) == NULL) {
		json_decref(o);
		return;
	}
	json_decref(o);
	if (send(op->op_chan->ch_fd, s, strlen(s), MSG_NOSIGNAL |
	    MSG_DONTWAIT) == -1)
		log_debug("cluster: answer to a worker: %s", strerror(errno));
	free(s);
}

static void
cl_task_free(struct cl_task *op)
{
	if (op == NULL)
		return;
	if (op->op_chan != NULL && op->op_chan->ch_busy > 0)
		op->op_chan->ch_busy--;
	free(op->op_expect);
	free(op->op_record);
	free(op);
}

static void
cl_op_link(struct cluster *cl, struct cl_task *op)
{
	op->op_next = cl->cl_ops;
	cl->cl_ops = op;
}

static void
cl_op_unlink(struct cluster *cl, struct cl_task *op)
{
	struct cl_task	**opp;

	for (opp = &cl->cl_ops; *opp != NULL; opp = &(*opp)->op_next)
		if (*opp == op) {
			*opp = op->op_next;
			return;
		}
}

static void
cl_write_cb(redisAsyncContext *ac, void *r, void *arg)
{
	struct cl_task	*op = arg;
	struct cluster	*cl = op->op_cl;
	redisReply	*reply = r;
	struct cl_pos	 pos;
	const char	*what;

	cl_answered_on(&cl->cl_cmd, ac);
	if (reply == NULL) {
		cl_op_unlink(cl, op);
		cl_op_answer(op, "unavailable", "the connection to Redis was "
		    "lost; the change may or may not have been made");
		cl_task_free(op);
		return;
	}
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
	    reply->element[0]->type != REDIS_REPLY_STRING) {
		log_warnx("cluster: a write failed: %.200s",
		    reply->type == REDIS_REPLY_ERROR ? reply->str :
		    "a bad answer");
		cl_op_unlink(cl, op);
		cl_op_answer(op, "unavailable", "Redis refused the change");
		cl_task_free(op);
		return;
	}
	what = reply->element[0]->str;
	if (strcmp(what, "unseeded") == 0) {
		cl_op_unlink(cl, op);
		cl_op_answer(op, "unavailable", "the cluster's namespace is "
		    "being seeded; retry");
		cl_task_free(op);
		cl->cl_joined = 0;
		cl_join(cl);
		return;
	}
	if (reply->elements != 2 || cl_reply_pos(reply->element[1], &pos) ==
	    -1 || (strcmp(what, "ok") != 0 && strcmp(what, "retry") != 0)) {
		cl_op_unlink(cl, op);
		cl_op_answer(op, "unavailable", "a bad answer from Redis");
		cl_task_free(op);
		return;
	}
#ifdef KEYGATE_DEBUG
	/*
	 * Fault injection for the integration tests (debug builds): if the
	 * file named by KEYGATE_TEST_STALL_CLUSTER exists, the first commit
	 * to get here removes it, says so and stops the master: the change
	 * is in Redis, and nobody was answered.
	 */
	{
		const char	*path = getenv("KEYGATE_TEST_STALL_CLUSTER");

		if (path != NULL && strcmp(what, "ok") == 0 &&
		    unlink(path) == 0) {
			log_warnx("test: stalled after a cluster commit");
			for (;;)
				pause();
		}
	}
#endif
	/* Answered once this node's reader has applied pos. */
	op->op_pos = pos;
	op->op_result = strcmp(what, "ok") == 0 ? "ok" : "retry";
	op->op_deadline = util_mono_ms() + CL_WAIT_MS;
	/*
	 * With a replica (Sentinel), a change is acknowledged once a replica
	 * has it too, or CL_WAIT_REPL_MS passed: what a failover can still
	 * lose is then what no replica received in that time (cl_recheck).
	 */
	if (cl->cl_nsen > 0 && strcmp(what, "ok") == 0) {
		const char	*argv[3] = { "WAIT", "1", XSTR_WAIT_REPL };

		if (cl_send(&cl->cl_cmd, cl_repl_cb, op, 3, argv) == 0)
			return;
	}
	op->op_waiting = 1;
	cl_ops_reached(cl);
}

/* WAIT answered (or the connection lost: the change is in Redis). */
static void
cl_repl_cb(redisAsyncContext *ac, void *r, void *arg)
{
	struct cl_task	*op = arg;
	struct cluster	*cl = op->op_cl;
	redisReply	*reply = r;

	cl_answered_on(&cl->cl_cmd, ac);
	if (reply != NULL && reply->type == REDIS_REPLY_INTEGER &&
	    reply->integer < 1)
		log_debug("cluster: no replica has the change at %llu-%llu "
		    "yet", (unsigned long long)op->op_pos.p_ms,
		    (unsigned long long)op->op_pos.p_seq);
	op->op_waiting = 1;
	cl_ops_reached(cl);
}

/*
 * After a seed or a dump (the whole store as JSON, once), give the memory
 * back: glibc would keep it in the master's heap, and every worker forked
 * later would share it.
 */
static void
cl_trim(void)
{
#if defined(HAVE_MALLOC_H) && defined(__GLIBC__)
	(void)malloc_trim(0);
#endif
}

/* Forget every change kept for cl_recheck. */
static void
cl_mine_clear(struct cluster *cl)
{
	size_t	 i;

	for (i = 0; i < CL_MINE; i++) {
		free(cl->cl_mine[i].m_expect);
		free(cl->cl_mine[i].m_record);
		memset(&cl->cl_mine[i], 0, sizeof(cl->cl_mine[i]));
	}
	cl->cl_nmine = 0;
}

/*
 * A change applied from the stream at pos (id; record NULL for a del),
 * with the record it replaced (NULL: none): kept for cl_recheck.
 */
static void
cl_mine_add(struct cluster *cl, const struct cl_pos *pos, const char *id,
    const struct ks_key *k)
{
	struct cl_mine	*m = &cl->cl_mine[cl->cl_nmine++ % CL_MINE];
	struct ks_key	 cur;
	uint32_t	 slot;
	char		 err[256];

	free(m->m_expect);
	free(m->m_record);
	m->m_expect = m->m_record = NULL;
	m->m_pos = *pos;
	m->m_at = util_mono_ms();
	m->m_del = k == NULL;
	snprintf(m->m_id, sizeof(m->m_id), "%s", id);
	if (keystore_find_id(cl->cl_ks, id, &cur, &slot) == KS_OK)
		m->m_expect = clmsg_record(&cur, err, sizeof(err));
	if (k != NULL)
		m->m_record = clmsg_record(k, err, sizeof(err));
	OPENSSL_cleanse(&cur, sizeof(cur));
}

/*
 * Which of this node's recent writes the stream still has.  KEYS: stream,
 * keys.  ARGV: position and id pairs.  For each: 1 if the entry is there,
 * else the key's record now ("" for none).
 */
static const char cl_lua_recheck[] =
	"local out = {}\n"
	"for i = 1, #ARGV, 2 do\n"
	"  local e = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i], 'COUNT', 1)\n"
	"  if #e == 1 then out[#out + 1] = 1\n"
	"  else out[#out + 1] = redis.call('HGET', KEYS[2], ARGV[i + 1]) or ''"
	" end\n"
	"end\n"
	"return out\n";

struct cl_rechk {
	struct cluster	*rc_cl;
	size_t		 rc_n;
	struct cl_mine	 rc_m[CL_MINE];	/* copies: the ring goes on */
};

static void
cl_rechk_free(struct cl_rechk *rc)
{
	size_t	 i;

	if (rc == NULL)
		return;
	for (i = 0; i < rc->rc_n; i++) {
		free(rc->rc_m[i].m_expect);
		free(rc->rc_m[i].m_record);
	}
	free(rc);
}

static void
cl_restore_cb(redisAsyncContext *ac, void *r, void *arg)
{
	struct cluster	*cl = arg;
	redisReply	*reply = r;

	cl_answered_on(&cl->cl_cmd, ac);
	if (reply != NULL && (reply->type != REDIS_REPLY_ARRAY ||
	    reply->elements != 2 || reply->element[0]->type !=
	    REDIS_REPLY_STRING || strcmp(reply->element[0]->str, "ok") != 0))
		log_warnx("cluster: a lost change could not be restored");
}

/*
 * Redis lost changes (a failover to a replica that had not received them,
 * a restart from an older snapshot): every change this node applied (the
 * last CL_MINE, up to CL_MINE_MS old) whose entry the stream no longer
 * has is committed again if the key is still as that change found it
 * (Redis went back to before it); a key changed since is left as the
 * cluster has it, and logged.  Every node does this for what it applied,
 * so a change is restored while any node that saw it lives; the first to
 * commit it wins, the others find the key changed.  Only then is Redis's
 * state taken whole (the dump follows the commits on the connection):
 * taken first, it would bring back, for a moment, a key whose deletion
 * was lost.
 */
static void
cl_recheck_cb(redisAsyncContext *ac, void *r, void *arg)
{
	struct cl_rechk	*rc = arg;
	struct cluster	*cl = rc->rc_cl;
	redisReply	*reply = r, *e;
	struct cl_mine	*m, *lastm;
	const char	*cur, *before, *after, *id;
	size_t		 i;
	unsigned	 restored = 0, kept = 0;
	json_t		*keys, *v;

	cl_answered_on(&cl->cl_cmd, ac);
	cl->cl_joining = 0;
	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY ||
	    reply->elements != rc->rc_n || (keys = json_object()) == NULL) {
		if (reply != NULL)
			log_warnx("cluster: the check of this node's recent "
			    "changes failed");
		cl_rechk_free(rc);
		return;		/* the next beat tries again */
	}
	/*
	 * Per key, what the lost changes did in all: from the record the
	 * first one found to what the last one left.  Only that net change
	 * is committed again, and only if Redis holds the key as the first
	 * found it: committing each change on its own could bring back, for
	 * a moment, a key a later lost change deleted.
	 */
	for (i = 0; i < rc->rc_n; i++) {
		e = reply->element[i];
		m = &rc->rc_m[i];
		if (e->type != REDIS_REPLY_STRING)
			continue;	/* 1: the stream has it */
		if ((v = json_object_get(keys, m->m_id)) == NULL) {
			v = json_pack("{s:I,s:I,s:s}", "first", (json_int_t)i,
			    "last", (json_int_t)i, "cur", e->str);
			if (v == NULL || json_object_set_new(keys, m->m_id,
			    v) == -1)
				continue;
		} else
			json_object_set_new(v, "last", json_integer(
			    (json_int_t)i));
	}
	json_object_foreach(keys, id, v) {
		m = &rc->rc_m[json_integer_value(json_object_get(v, "first"))];
		lastm = &rc->rc_m[json_integer_value(json_object_get(v,
		    "last"))];
		cur = json_string_value(json_object_get(v, "cur"));
		before = m->m_expect != NULL ? m->m_expect : "";
		after = lastm->m_del || lastm->m_record == NULL ? "" :
		    lastm->m_record;
		if (strcmp(before, after) == 0)
			continue;	/* nothing in all */
		if (cur == NULL || strcmp(cur, before) != 0) {
			log_warnx("cluster: changes of key %s were lost by "
			    "Redis, and the key has changed since: the "
			    "cluster's copy stands", id);
			kept++;
			continue;
		}
		if (cl_send_write(cl, cl_restore_cb, cl, after[0] == '\0' ?
		    "del" : "put", id, before, after, NULL, NULL, NULL) == 0) {
			log_warnx("cluster: changes of key %s were lost by "
			    "Redis; committing them again", id);
			restored++;
		}
	}
	json_decref(keys);
	if (restored + kept > 0)
		log_warnx("cluster \"%s\": %u key(s) whose changes were lost "
		    "committed again, %u left as the cluster has them",
		    cl->cl_name, restored, kept);
	cl_rechk_free(rc);
	cl_resync(cl);
}

static void
cl_recheck(struct cluster *cl)
{
	struct cl_rechk	*rc;
	struct cl_mine	*m;
	const char	**argv;
	size_t		 n = 0, i;
	char		 (*pos)[48];
	int64_t		 now = util_mono_ms();

	cl->cl_joined = 0;
	cl->cl_joining = 1;
	if ((rc = calloc(1, sizeof(*rc))) == NULL) {
		cl->cl_joining = 0;
		return;
	}
	argv = calloc(5 + 2 * CL_MINE, sizeof(*argv));
	pos = calloc(CL_MINE, sizeof(*pos));
	if (argv == NULL || pos == NULL) {
		cl->cl_joining = 0;	/* the next beat tries again */
		goto done;
	}
	rc->rc_cl = cl;
	argv[0] = "EVAL";
	argv[1] = cl_lua_recheck;
	argv[2] = "2";
	argv[3] = cl->cl_k[CK_STREAM];
	argv[4] = cl->cl_k[CK_KEYS];
	n = 5;
	/* Oldest first: a key's changes are committed again in order. */
	for (i = cl->cl_nmine > CL_MINE ? cl->cl_nmine - CL_MINE : 0;
	    i < cl->cl_nmine; i++) {
		m = &cl->cl_mine[i % CL_MINE];
		if (now - m->m_at > CL_MINE_MS)
			continue;
		rc->rc_m[rc->rc_n] = *m;
		rc->rc_m[rc->rc_n].m_expect = m->m_expect != NULL ?
		    strdup(m->m_expect) : NULL;
		rc->rc_m[rc->rc_n].m_record = m->m_record != NULL ?
		    strdup(m->m_record) : NULL;
		if ((m->m_expect != NULL &&
		    rc->rc_m[rc->rc_n].m_expect == NULL) ||
		    (m->m_record != NULL &&
		    rc->rc_m[rc->rc_n].m_record == NULL)) {
			rc->rc_n++;
			cl->cl_joining = 0;
			goto done;	/* out of memory: the next beat */
		}
		clpos_format(&m->m_pos, pos[rc->rc_n], sizeof(pos[0]));
		argv[n++] = pos[rc->rc_n];
		argv[n++] = rc->rc_m[rc->rc_n].m_id;
		rc->rc_n++;
	}
	if (rc->rc_n == 0) {
		cl->cl_joining = 0;
		cl_resync(cl);
		goto done;
	}
	log_info("cluster \"%s\": checking the %zu change(s) this node "
	    "applied lately against the stream", cl->cl_name, rc->rc_n);
	if (cl_send(&cl->cl_cmd, cl_recheck_cb, rc, (int)n, argv) ==
	    0)
		rc = NULL;
	else
		cl->cl_joining = 0;
done:
	cl_rechk_free(rc);
	free(argv);
	free(pos);
}

/*
 * The standing allowance in /v1/cluster: its share and the most it may
 * be, and whether it is "off", "registering", "waiting" (for leases
 * granted before it to age out: usable_in_ms), "on", "expired" (not
 * renewed: Redis lost) or "refused" (Redis answered a share above the
 * most configured).
 */
static json_t *
cl_stand_status(const struct cll_stats *cs)
{
	int64_t		 now = util_mono_ms(), in = 0;
	const char	*state;

	switch (cs->cs_stand) {
	case CLL_STAND_OFF:
		state = "off";
		break;
	case CLL_STAND_WAIT:
		state = "registering";
		break;
	case CLL_STAND_REFUSED:
		state = "refused";
		break;
	default:
		if (now >= cs->cs_stand_until)
			state = "expired";
		else if (now < cs->cs_stand_from) {
			state = "waiting";
			in = cs->cs_stand_from - now;
		} else
			state = "on";
		break;
	}
	return (json_pack("{s:i,s:i,s:s,s:I}", "share_permille",
	    cs->cs_stand == CLL_STAND_ON ? (int)cs->cs_stand_pm : 0,
	    "max_permille", (int)cs->cs_stand_max, "state", state,
	    "usable_in_ms", (json_int_t)in));
}

/* The rate limits' side of /v1/cluster. */
static json_t *
cl_lim_status(struct cluster *cl)
{
	struct cll_stats	 cs;
	int			 mode = cllimit_mode(cl->cl_lim);

	cllimit_stats(cl->cl_lim, &cs);
	return (json_pack("{s:s,s:s,s:i,s:I,s:I,s:I,s:I,s:I,s:I,s:o}",
	    "mode", cllimit_mode_name(mode), "fallback",
	    cllimit_mode_name(cl->cl_fallback), "nodes",
	    (int)cllimit_nodes_seen(cl->cl_lim), "subjects",
	    (json_int_t)cs.cs_subjects, "lease_calls", (json_int_t)cs.cs_calls,
	    "lease_calls_failed", (json_int_t)cs.cs_failed, "units_granted",
	    (json_int_t)cs.cs_granted, "units_returned",
	    (json_int_t)cs.cs_returned, "full", (json_int_t)cs.cs_full,
	    "standing", cl_stand_status(&cs)));
}

/* The cluster's state as /v1/cluster shows it. */
static json_t *
cl_status(struct cluster *cl)
{
	json_t		*o, *nodes, *n, *v;
	struct cl_pos	 p;
	char		 pos[48], last[48];
	size_t		 i;
	int64_t		 now = util_now_ms();

	clpos_format(&cl->cl_state.s_pos, pos, sizeof(pos));
	clpos_format(&cl->cl_last, last, sizeof(last));
	if ((nodes = json_array()) == NULL)
		return (NULL);
	json_array_foreach(cl->cl_nodes, i, v) {
		int	 self;

		if ((n = json_deep_copy(v)) == NULL)
			continue;
		self = json_is_string(json_object_get(n, "node")) &&
		    strcmp(json_string_value(json_object_get(n, "node")),
		    cl->cl_state.s_node) == 0;
		/* This node's own entry is as of now, not its last beat. */
		if (self)
			json_object_set_new(n, "position", json_string(pos));
		/* A node that has not joined yet (0-0) has no lag. */
		if ((v = json_object_get(n, "position")) != NULL &&
		    json_is_string(v) && clpos_parse(json_string_value(v),
		    json_string_length(v), &p) == 0 && p.p_ms != 0)
			json_object_set_new(n, "lag_seconds", json_real(
			    clpos_cmp(&p, &cl->cl_last) >= 0 ? 0.0 :
			    (double)(cl->cl_last.p_ms - p.p_ms) / 1000.0));
		else
			json_object_set_new(n, "lag_seconds", json_null());
		json_object_set_new(n, "self", json_boolean(self));
		json_array_append_new(nodes, n);
	}
	o = json_pack("{s:b,s:s,s:s,s:b,s:s,s:s,s:s,s:s,s:f,s:I,s:o}",
	    "enabled", 1, "name", cl->cl_name, "redis", cl->cl_url,
	    "redis_up", cl->cl_cmd.cc_up && cl->cl_rd.cc_up,
	    "state", cl->cl_refused[0] != '\0' ? "refused" :
	    !cl->cl_cmd.cc_up || !cl->cl_rd.cc_up ? "disconnected" :
	    cl->cl_joined ? "joined" : "joining",
	    "node", cl->cl_state.s_node, "epoch", cl->cl_state.s_epoch,
	    "position", pos, "lag_seconds",
	    clpos_cmp(&cl->cl_state.s_pos, &cl->cl_last) >= 0 ? 0.0 :
	    (double)(cl->cl_last.p_ms - cl->cl_state.s_pos.p_ms) / 1000.0,
	    "applied_total", (json_int_t)cl->cl_applied, "nodes", nodes);
	if (o == NULL)
		return (NULL);
	json_object_set_new(o, "stream_last", json_string(last));
	if (cl->cl_last_seen != 0)
		json_object_set_new(o, "checked_ms_ago",
		    json_integer(now - cl->cl_last_seen));
	if (cl->cl_refused[0] != '\0')
		json_object_set_new(o, "refused", json_string(cl->cl_refused));
	if (cl->cl_cache_failed)
		json_object_set_new(o, "cache", json_string("a journal write "
		    "failed: state_dir holds an older copy"));
	json_object_set_new(o, "limits", cl_lim_status(cl));
	return (o);
}

/* One request from a worker. */
static void
cl_chan_request(struct cl_chan *ch, const char *buf, size_t len)
{
	struct cluster		*cl = ch->ch_cl;
	struct cl_request	 rq;
	struct cl_task		*op;
	char			 err[256], idem[256], hex[65], *entry;
	int			 rc;
	json_t			*o, *st;
	char			*s;
	int			 i;

	if (clmsg_parse_request(buf, len, &rq, err, sizeof(err)) == -1) {
		struct cl_task	 bad = { .op_chan = ch, .op_rid = rq.r_rid };

		log_warnx("cluster: a worker's request refused: %s", err);
		if (rq.r_rid != 0)
			cl_op_answer(&bad, "refused", err);
		return;
	}
	/*
	 * A worker's thread waits for each answer, so a channel has one
	 * request in progress (two, just after the worker gave up on one):
	 * more is a worker misbehaving, refused.
	 */
	if (ch->ch_busy >= 2) {
		struct cl_task	 busy = { .op_chan = ch, .op_rid = rq.r_rid };

		cl_op_answer(&busy, "refused", "a request is in progress on "
		    "this channel");
		goto done;
	}
	if ((op = calloc(1, sizeof(*op))) == NULL)
		goto done;
	op->op_cl = cl;
	op->op_chan = ch;
	op->op_rid = rq.r_rid;
	ch->ch_busy++;
	if (rq.r_op == CL_OP_STATUS) {
		st = cl_status(cl);
		o = json_pack("{s:I,s:b,s:o*}", "rid", (json_int_t)rq.r_rid,
		    "ok", 1, "cluster", st);
		if (o != NULL && (s = json_dumps(o, JSON_COMPACT)) != NULL) {
			if (strlen(s) <= CL_REPLY_MAX)
				(void)send(ch->ch_fd, s, strlen(s),
				    MSG_NOSIGNAL | MSG_DONTWAIT);
			free(s);
		}
		json_decref(o);
		cl_task_free(op);
		goto done;
	}
	if ((rq.r_op == CL_OP_USAGE || rq.r_op == CL_OP_HISTORY) &&
	    cl->cl_cmd.cc_up && cl->cl_refused[0] == '\0') {
		if (rq.r_op == CL_OP_USAGE)
			cl_usage_query(cl, op, rq.r_id);
		else
			cl_history_query(cl, op, rq.r_id, rq.r_kind);
		goto done;
	}
	if (cl->cl_refused[0] != '\0' || !cl->cl_joined ||
	    !cl->cl_cmd.cc_up) {
		cl_op_answer(op, "unavailable", cl->cl_refused[0] != '\0' ?
		    cl->cl_refused : !cl->cl_cmd.cc_up ? "Redis is "
		    "unreachable" : "this node has not joined the cluster "
		    "yet");
		cl_task_free(op);
		goto done;
	}
	idem[0] = '\0';
	if (rq.r_idem != NULL) {
		for (i = 0; i < 32; i++)
			snprintf(hex + 2 * i, 3, "%02x", rq.r_idem_hash[i]);
		snprintf(idem, sizeof(idem), "%s%s", cl->cl_k[CK_IDEM], hex);
	}
	entry = NULL;
	if (rq.r_idem != NULL && asprintf(&entry, "{\"id\":\"%s\",\"idem\":%s}",
	    rq.r_id, rq.r_idem) == -1)
		entry = NULL;
	cl_op_link(cl, op);
	rc = cl_send_write(cl, cl_write_cb, op, rq.r_op == CL_OP_PUT ? "put" :
	    "del", rq.r_id, rq.r_expect, rq.r_record, entry != NULL ? idem :
	    NULL, rq.r_idem, entry);
	free(entry);
	if (rc == 0) {
		/* Kept for cl_recheck once committed. */
		op->op_del = rq.r_op == CL_OP_DEL;
		memcpy(op->op_id, rq.r_id, sizeof(op->op_id));
		op->op_expect = rq.r_expect;
		op->op_record = rq.r_record;
		rq.r_expect = rq.r_record = NULL;
	} else {
		cl_op_unlink(cl, op);
		cl_op_answer(op, "unavailable", "Redis is unreachable");
		cl_task_free(op);
	}
done:
	OPENSSL_cleanse(&rq.r_key, sizeof(rq.r_key));
	clmsg_request_free(&rq);
}

static void
cl_chan_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cl_chan	*ch = arg;
	char		*buf;
	ssize_t		 n;

	if ((buf = malloc(CL_MSG_MAX + 1)) == NULL)
		return;
	n = recv(fd, buf, CL_MSG_MAX + 1, MSG_DONTWAIT | MSG_TRUNC);
	if (n == 0) {
		/* The worker closed its end: it is gone. */
		event_del(ch->ch_ev);
	} else if (n > CL_MSG_MAX)
		log_warnx("cluster: a worker's request of %zd bytes refused "
		    "(at most %d)", n, CL_MSG_MAX);
	else if (n > 0)
		cl_chan_request(ch, buf, (size_t)n);
	free(buf);
}

int
cluster_chan_open(struct cluster *cl, int slot, int *fds)
{
	struct cl_chan	*ch;
	int		 i, sv[2];

	if (slot < 0 || slot >= SHM_SLOTS)
		return (-1);
	cluster_chan_close(cl, slot);
	for (i = 0; i < CL_CHANS; i++) {
		ch = &cl->cl_chans[slot][i];
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0,
		    sv) == -1) {
			log_warn("cluster: socketpair");
			goto fail;
		}
		ch->ch_cl = cl;
		ch->ch_fd = sv[0];
		ch->ch_slot = slot;
		fds[i] = sv[1];
		if ((ch->ch_ev = event_new(cl->cl_base, sv[0],
		    EV_READ | EV_PERSIST, cl_chan_cb, ch)) == NULL ||
		    event_add(ch->ch_ev, NULL) == -1) {
			close(sv[1]);
			goto fail;
		}
	}
	return (0);
fail:
	while (i-- > 0)
		close(fds[i]);
	cluster_chan_close(cl, slot);
	return (-1);
}

/* The worker's ends, after the fork: the master keeps only its own. */
void
cluster_chan_close(struct cluster *cl, int slot)
{
	struct cl_chan	*ch;
	struct cl_task	*op;
	int		 i;

	if (cl == NULL || slot < 0 || slot >= SHM_SLOTS)
		return;
	for (i = 0; i < CL_CHANS; i++) {
		ch = &cl->cl_chans[slot][i];
		for (op = cl->cl_ops; op != NULL; op = op->op_next)
			if (op->op_chan == ch)
				op->op_chan = NULL;
		ch->ch_busy = 0;
		if (ch->ch_ev != NULL)
			event_free(ch->ch_ev);
		ch->ch_ev = NULL;
		if (ch->ch_fd != -1 && ch->ch_cl != NULL)
			close(ch->ch_fd);
		ch->ch_fd = -1;
	}
}

void
cluster_child_detach(struct cluster *cl, int slot)
{
	int	 s, i;

	if (cl == NULL)
		return;
	for (s = 0; s < SHM_SLOTS; s++)
		for (i = 0; i < CL_CHANS; i++)
			if (cl->cl_chans[s][i].ch_fd != -1)
				close(cl->cl_chans[s][i].ch_fd);
	if (cl->cl_cmd.cc_ac != NULL)
		close(cl->cl_cmd.cc_ac->c.fd);
	if (cl->cl_rd.cc_ac != NULL)
		close(cl->cl_rd.cc_ac->c.fd);
	if (cl->cl_sen.cc_ac != NULL)
		close(cl->cl_sen.cc_ac->c.fd);
	/* The Redis passwords are the master's alone. */
	if (cl->cl_pass != NULL)
		OPENSSL_cleanse(cl->cl_pass, strlen(cl->cl_pass));
	if (cl->cl_sen_pass != NULL)
		OPENSSL_cleanse(cl->cl_sen_pass, strlen(cl->cl_sen_pass));
	cllimit_child_detach(cl->cl_lim);
	(void)slot;
}

/* --- the tick ---------------------------------------------------------- */

static void
cl_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cluster	*cl = arg;
	int64_t		 now = util_mono_ms();

	if (cl->cl_nsen > 0)
		cl_conn_tick(&cl->cl_sen, now);
	cl_conn_tick(&cl->cl_cmd, now);
	cl_conn_tick(&cl->cl_rd, now);
	cl_ops_reached(cl);
	cl_lim_publish(cl);
	if (now >= cl->cl_beat_ms) {
		cl->cl_beat_ms = now + CL_BEAT_MS;
		if (cl->cl_joined || cl->cl_joining == 0)
			cl_beat(cl, !cl->cl_joined);
		cl_state_save(cl);
	}
	if (now >= cl->cl_usage_ms) {
		cl->cl_usage_ms = now + CL_USAGE_MS;
		cl_usage_push(cl);
	}
}

/* --- rate limits (cllimit.c) ------------------------------------------ */

static void
cl_lim_cb(redisAsyncContext *ac, void *r, void *arg)
{
	struct cl_conn	*cc = ac->data;

	if (cc != NULL)
		cl_answered_on(cc, ac);
	cllimit_answer(arg, r);
}

/* cllimit's calls go on the command connection, once it is up. */
static int
cl_lim_send(struct cluster *cl, void *arg, int argc, const char **argv)
{
	if (!cl->cl_cmd.cc_up)
		return (-1);
	return (cl_send(&cl->cl_cmd, cl_lim_cb, arg, argc, argv));
}

/* The rate limits' figures for /metrics (stats_master, outside sm_seq). */
static void
cl_lim_publish(struct cluster *cl)
{
	struct stats_master	*sm = cl->cl_sm;
	struct cll_stats	 cs;

	if (sm == NULL)
		return;
	cllimit_stats(cl->cl_lim, &cs);
	__atomic_store_n(&sm->sm_lim_mode, (uint32_t)cllimit_mode(cl->cl_lim),
	    __ATOMIC_RELAXED);
	__atomic_store_n(&sm->sm_lim_calls, cs.cs_calls, __ATOMIC_RELAXED);
	__atomic_store_n(&sm->sm_lim_failed, cs.cs_failed, __ATOMIC_RELAXED);
	__atomic_store_n(&sm->sm_lim_granted, cs.cs_granted,
	    __ATOMIC_RELAXED);
	__atomic_store_n(&sm->sm_lim_returned, cs.cs_returned,
	    __ATOMIC_RELAXED);
	__atomic_store_n(&sm->sm_lim_full, cs.cs_full, __ATOMIC_RELAXED);
}

int64_t
cluster_cmd_silent_ms(const struct cluster *cl, int64_t now)
{
	const struct cl_conn	*cc = &cl->cl_cmd;

	return (cc->cc_up && cc->cc_pending > 0 ? now - cc->cc_since_ms : 0);
}

int
cluster_demand_fd(const struct cluster *cl)
{
	return (cl != NULL ? cllimit_demand_fd(cl->cl_lim) : -1);
}

/* --- set-up ------------------------------------------------------------ */

static char *
cl_key(const char *prefix, const char *name)
{
	char	*s;

	return (asprintf(&s, "%s%s", prefix, name) == -1 ? NULL : s);
}

struct cluster *
cluster_new(struct event_base *base, const struct config *conf,
    struct keystore *ks, struct journal *j, struct idem_entry *idem,
    struct stats_master *sm, struct ls_table *lt, pid_t pid, char *err,
    size_t errlen)
{
	static const char *const names[] = {
		"keys", "digests", "stream", "epoch", "nodes", "node:",
		"idem:", "usage:", "hist:", "idems"
	};
	struct cluster	*cl;
	struct timeval	 tv = { 0, CL_TICK_MS * 1000 };
	size_t		 i;
	int		 s, c;

	if ((cl = calloc(1, sizeof(*cl))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return (NULL);
	}
	for (s = 0; s < SHM_SLOTS; s++)
		for (c = 0; c < CL_CHANS; c++)
			cl->cl_chans[s][c].ch_fd = -1;
	cl->cl_base = base;
	cl->cl_ks = ks;
	cl->cl_j = j;
	cl->cl_idem = idem;
	cl->cl_sm = sm;
	cl->cl_pid = pid;
	cl->cl_port = conf->c_cluster_port;
	cl->cl_db = conf->c_cluster_db;
	if ((cl->cl_url = strdup(conf->c_cluster_url)) == NULL ||
	    (cl->cl_name = strdup(conf->c_cluster_name)) == NULL ||
	    (conf->c_cluster_host != NULL &&
	    (cl->cl_host = strdup(conf->c_cluster_host)) == NULL) ||
	    (conf->c_cluster_unix != NULL &&
	    (cl->cl_unix = strdup(conf->c_cluster_unix)) == NULL) ||
	    (conf->c_cluster_user != NULL &&
	    (cl->cl_user = strdup(conf->c_cluster_user)) == NULL) ||
	    (conf->c_cluster_pass != NULL &&
	    (cl->cl_pass = strdup(conf->c_cluster_pass)) == NULL) ||
	    asprintf(&cl->cl_prefix, "keygate:{%s}:", conf->c_cluster_name) ==
	    -1) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (i = 0; i < nitems(names); i++)
		if ((cl->cl_k[i] = cl_key(cl->cl_prefix, names[i])) == NULL) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	if (gethostname(cl->cl_hostname, sizeof(cl->cl_hostname) - 1) == -1)
		snprintf(cl->cl_hostname, sizeof(cl->cl_hostname), "unknown");
	if (cl_state_load(cl, err, errlen) == -1)
		goto fail;
	cl->cl_fallback = conf->c_cluster_fallback ? LS_MODE_DENY :
	    LS_MODE_LOCAL;
	cl->cl_limits = conf->c_cluster_limits;
	cl->cl_standing = conf->c_cluster_standing;
	if (lt != NULL && cl->cl_limits && (cl->cl_lim = cllimit_new(base,
	    lt, cl, cl_lim_send, cl->cl_prefix, cl->cl_state.s_node,
	    cl->cl_fallback, cl->cl_standing)) == NULL) {
		snprintf(err, errlen, "cannot start the rate limits' leases: "
		    "%s", strerror(errno));
		goto fail;
	}
	for (s = 0; s < conf->c_cluster_nsentinels; s++) {
		if ((cl->cl_sen_host[s] = strdup(
		    conf->c_cluster_sentinel_host[s])) == NULL) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		cl->cl_sen_port[s] = conf->c_cluster_sentinel_port[s];
		cl->cl_nsen = s + 1;
	}
	if (cl->cl_nsen > 0 && ((cl->cl_master = strdup(
	    conf->c_cluster_master)) == NULL ||
	    (conf->c_cluster_sentinel_pass != NULL && (cl->cl_sen_pass =
	    strdup(conf->c_cluster_sentinel_pass)) == NULL))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	cl->cl_cmd.cc_cl = cl->cl_rd.cc_cl = cl->cl_sen.cc_cl = cl;
	cl->cl_cmd.cc_what = "commands";
	cl->cl_rd.cc_what = "stream";
	cl->cl_sen.cc_what = "sentinel";
	cl->cl_sen.cc_limit_ms = CL_TIMEOUT_MS;
	cl->cl_cmd.cc_limit_ms = CL_TIMEOUT_MS;
	cl->cl_rd.cc_limit_ms = CL_TIMEOUT_MS + CL_BLOCK_MS;
	if ((cl->cl_tick = event_new(base, -1, EV_PERSIST, cl_tick_cb,
	    cl)) == NULL || event_add(cl->cl_tick, &tv) == -1) {
		snprintf(err, errlen, "cannot start the cluster's timer");
		goto fail;
	}
	if (sm != NULL) {
		__atomic_store_n(&sm->sm_cluster, 1, __ATOMIC_RELAXED);
		__atomic_store_n(&sm->sm_cluster_applied, 0, __ATOMIC_RELAXED);
	}
	cl_usage_start(cl);
	cl->cl_usage_ms = util_mono_ms() + CL_USAGE_MS;
	/* The node's own state file names the node from now on. */
	cl->cl_saved.p_ms = 0;
	cl_state_save(cl);
	if (cl->cl_nsen > 0)
		cl_connect(&cl->cl_sen);
	cl_connect(&cl->cl_cmd);
	cl_connect(&cl->cl_rd);
	return (cl);
fail:
	cluster_free(cl);
	return (NULL);
}

void
cluster_free(struct cluster *cl)
{
	struct cl_task	*op;
	size_t		 i;
	int		 s;

	if (cl == NULL)
		return;
	if (cl->cl_tick != NULL)
		event_free(cl->cl_tick);
	cl->cl_tick = NULL;
	cl_drop(&cl->cl_sen, "stopping");
	cl_drop(&cl->cl_cmd, "stopping");
	cl_drop(&cl->cl_rd, "stopping");
	/* After the connections: their callbacks may still name a lease. */
	cllimit_free(cl->cl_lim);
	if (cl->cl_j != NULL && cl->cl_state.s_node[0] != '\0')
		cl_state_save(cl);
	for (s = 0; s < SHM_SLOTS; s++)
		cluster_chan_close(cl, s);
	while ((op = cl->cl_ops) != NULL) {
		cl->cl_ops = op->op_next;
		cl_task_free(op);
	}
	json_decref(cl->cl_nodes);
	free(cl->cl_ubase);
	for (i = 0; i < CL_MINE; i++) {
		free(cl->cl_mine[i].m_expect);
		free(cl->cl_mine[i].m_record);
	}
	for (i = 0; i < nitems(cl->cl_k); i++)
		free(cl->cl_k[i]);
	free(cl->cl_prefix);
	free(cl->cl_url);
	free(cl->cl_name);
	free(cl->cl_host);
	free(cl->cl_unix);
	free(cl->cl_user);
	for (s = 0; s < cl->cl_nsen; s++)
		free(cl->cl_sen_host[s]);
	free(cl->cl_master);
	if (cl->cl_sen_pass != NULL) {
		OPENSSL_cleanse(cl->cl_sen_pass, strlen(cl->cl_sen_pass));
		free(cl->cl_sen_pass);
	}
	if (cl->cl_pass != NULL) {
		OPENSSL_cleanse(cl->cl_pass, strlen(cl->cl_pass));
		free(cl->cl_pass);
	}
	free(cl);
}

static int
cl_streq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return (a == b);
	return (strcmp(a, b) == 0);
}

int
cluster_same(const struct cluster *cl, const struct config *conf)
{
	return (conf->c_cluster && cl_streq(cl->cl_url, conf->c_cluster_url) &&
	    cl_streq(cl->cl_name, conf->c_cluster_name) &&
	    cl->cl_fallback == (conf->c_cluster_fallback ? LS_MODE_DENY :
	    LS_MODE_LOCAL) && cl->cl_limits == conf->c_cluster_limits &&
	    cl->cl_standing == conf->c_cluster_standing &&
	    cl_streq(cl->cl_pass, conf->c_cluster_pass));
}
