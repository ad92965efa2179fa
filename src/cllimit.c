/*
 * Cluster-wide rate limits: the master's lease manager (cllimit.h) and the
 * Lua script that does the arithmetic in Redis.
 *
 * The model.  Redis keeps, per subject ("rl:" + the subject in hex, a
 * hash), what the nodes may have admitted and until when it counts:
 *   - "n:NODE:L1/L10/L60" -> "H B": NODE holds H units of a lease granted
 *     against those limits, which it may spend until B (Redis ms);
 *   - "sW:E" -> N: N units were spent at or before E (for window W, E
 *     rounded up to a 32nd of the window).
 * A unit held until B counts in window W until B + W; a unit spent at or
 * before E counts until E + W.  Every unit a node spends was, from the
 * moment it was granted until W after it was spent, counted in one of
 * these two forms: it is held until the node reports it spent, and the
 * report (made later than the spend, at Redis's now, or at B for a lease
 * that expired) turns it into a spent record ending no earlier.
 *
 * Why no interval of a window's length admits more than the limit, all
 * nodes counted.  Call a unit's span the time from its grant to the end
 * of its counting.  Take any interval [T, T + W) and the admitted requests
 * in it: each spent a unit at some s in it, whose span covers
 * [s, s + W), hence the instant just before T + W.  So it is enough that
 * at every instant at most L spans are open.  Spans open only when the
 * script grants (every span starts at a grant, at Redis's now), so after a
 * grant the number open can only fall: the script grants n only if the
 * spans open at its now, plus n, are at most L in every window it
 * enforces.  Reports only shorten or keep spans, except the rounding of E
 * and the extension of held units to the new B, which lengthen spans
 * already open at now: they are counted at now, so the check still sees
 * them.  A route that overrides the limits leases against its own limits
 * but counts every unit of the subject, as on one node.
 *
 * Renewals.  A renewal keeps the units still held only as far as they
 * fit beside what counts at its now (the rest are recorded spent at
 * their old expiry, which they may have been by then): extending a span
 * is a grant like any other.
 *
 * The standing allowance.  A key a node has no lease of would cost a
 * call before its first request there; so each node also registers
 * (cll_reg_lua, renewed every CLL_REG_MS, valid CLL_REG_VALID_MS) a share
 * p of every key's limits in the hash "rlnodes": NODE:RUN -> "p R X U q
 * y g v" (registered at R, valid until X, usable from U; the share q it
 * had before may be spent until y; a larger share g is pending, usable
 * from v).  The nodes alive share CLL_REG_POOL_PM equally, each at most
 * cluster_standing_share.  The lease script counts, for a key, in window
 * w, the largest of floor(L_w * p) while X + W > now, floor(L_w * q)
 * while y + W > now and floor(L_w * g) while X + W > now, for every
 * registration (nothing for a share below one unit in some window: the
 * node takes none there either), exactly as if each registration were a
 * lease of those units held until X (or y).  The node takes a unit only
 * before its share's expiry (its clock, as for a lease; the share and
 * the expiry are one word, so a share that shrank is not used with the
 * smaller one's later expiry), from U, never more than floor(L_w * p) of
 * the share it uses in any interval of length W (ratelimit_standing_
 * admit(), per key, beside the key's rate state; with a share that
 * shrank, never more than the larger), and keeps a unit only if the
 * share did not change while it took it.
 *
 * Why that holds.  Every grant made after R counted the registration; so
 * spans open at an instant when the node spends its allowance are within
 * the limit if they all come from grants after R.  A span from a grant
 * before R ends, in window w, by that grant's now + V + W + a bucket,
 * which the lease script keeps per window in the hash "rlspan" (the
 * latest such ends); U is the latest of those at R for the windows in
 * which the node's share was not counted all along: all of them for a
 * new registration (about a minute after leases for per-minute limits),
 * those a lapse (X passed) outlasted for a registration made afresh.  A
 * share shrinks at once when a node joins (the script answers the
 * smaller, and the larger counts as q until the old expiry y, or until
 * the node reports, with its next renewal, that it took the smaller:
 * then it spends the larger no more); a larger share is registered as
 * g, counted from then on, and answered as the share only from v, which
 * is gated as U is.  A node that restarts has forgotten what it spent,
 * so each run registers under a field of its own.  Keys only: the
 * node's tables of JWT identities and addresses evict, and would forget
 * what they counted.
 *
 * Clocks.  Redis's TIME is the only clock the arithmetic uses.  A node
 * turns "valid for V ms" into an expiry on its own monotonic clock counted
 * from when it sent the call (before Redis's now), minus 1 ms + V / 1000
 * for the rates of the two clocks: its workers stop spending before B
 * whatever its wall clock says.  Clock skew between nodes therefore
 * changes nothing (the test hook KEYGATE_TEST_CLOCK_SKEW_MS moves a
 * node's wall clock to show it); the bound is on clock rates, 0.1 %.
 *
 * A node that dies with a lease loses its units until B + W; a node that
 * cannot reach Redis spends what it holds until B, then falls back
 * (cluster_fallback).  A Redis that loses its data forgets what was spent
 * in the last window: the limits may be exceeded once, by at most what
 * was lost.
 *
 * Lease sizes.  With T a 40th of the shortest window enforced, a lease
 * aims at 2 T of the subject's recent demand on this node (at least 1,
 * at most half the limit) and is valid for 10 T; the workers ask for more
 * once it is down to T / 2 of demand, or T before it expires, so spends
 * are reported about every 1.5 T.  What the other nodes cannot use
 * meanwhile (held and not yet reported units) is about rate x 3.5 T per
 * node: under 10 % of a 1 s window's limit for two nodes.  Far from the
 * limit (the units nobody holds at least 8 times what all nodes would
 * hold so), a lease aims at 40 T of demand, at most a quarter of one
 * node's share of those units, and is valid 10 s: few calls, and what it
 * keeps from the others is a small part of what is free.  A subject
 * unused for a while hands its lease back (far from the limit, lets it
 * expire).
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "cllimit.h"
#include "cluster.h"
#include "log.h"
#include "util.h"

#define CLL_TICK_MS	10
#define CLL_RELEASE_MS	5000	/* an entry idle this long is freed */
#define CLL_FULL_LOG_MS	60000	/* "lease table full", at most this often */
#define CLL_BATCH	64	/* demands read at once */
#define CLL_VALID_T	10	/* a lease is valid this many T */
#define CLL_ROOMY	8	/* free / held by all at 2 T: roomy */
#define CLL_ROOMY_MIN	4	/* units of a roomy lease, at least */
#define CLL_ROOMY_VALID_MS 10000	/* a roomy lease is valid this long */
#define CLL_SLICES	50	/* the pass looks at 1/50 of the entries */
#define CLL_SLICE_MIN	64	/* ... and at least this many */
#define CLL_REG_MS	500	/* the standing allowance is renewed */
#define CLL_REG_VALID_MS 2000	/* ... this often, valid this long */
#define CLL_REG_POOL_PM	400	/* all nodes' shares together */

/*
 * KEYS[1]: the subject's hash, KEYS[2]: "rlspan", KEYS[3]: "rlnodes".
 * ARGV: the node's field, units it still holds (refill) or has taken
 * back (drain), units wanted, validity (ms), the three limits, the three
 * windows (ms), "1" for a drain, "1" for a key (which the nodes' standing
 * allowances cover).  Answers {granted, held, valid ms, retry ms, full
 * window (0-based), free}.
 */
static const char cll_lua[] =
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	"local key, f = KEYS[1], ARGV[1]\n"
	"local left, want, v = tonumber(ARGV[2]), tonumber(ARGV[3]), "
	"tonumber(ARGV[4])\n"
	"local drain = ARGV[11] == '1'\n"
	"local lim, win, maxw = {}, {}, 0\n"
	"for w = 1, 3 do\n"
	"  lim[w], win[w] = tonumber(ARGV[4 + w]), tonumber(ARGV[7 + w])\n"
	"  if win[w] > maxw then maxw = win[w] end\n"
	"end\n"
	"local occ, ends = {0, 0, 0}, {{}, {}, {}}\n"
	"local hold, hb, last = 0, 0, now + v + maxw\n"
	"local all = redis.call('HGETALL', key)\n"
	"for i = 1, #all, 2 do\n"
	"  local k, val = all[i], all[i + 1]\n"
	"  if string.sub(k, 1, 2) == 'n:' then\n"
	"    local a, b = string.match(val, '^(%d+) (%d+)$')\n"
	"    a, b = tonumber(a) or 0, tonumber(b) or 0\n"
	"    if b + maxw > last then last = b + maxw end\n"
	"    if k == f then hold, hb = a, b else\n"
	"      local live = false\n"
	"      for w = 1, 3 do\n"
	"        if b + win[w] > now then\n"
	"          occ[w] = occ[w] + a; ends[w][#ends[w] + 1] = {b + win[w], a}\n"
	"          live = true\n"
	"        end\n"
	"      end\n"
	"      if not live then redis.call('HDEL', key, k) end\n"
	"    end\n"
	"  else\n"
	"    local w, e = string.match(k, '^s(%d):(%d+)$')\n"
	"    w, e = tonumber(w), tonumber(e)\n"
	"    local n = tonumber(val) or 0\n"
	"    if w and w >= 1 and w <= 3 and e + win[w] > now then\n"
	"      occ[w] = occ[w] + n; ends[w][#ends[w] + 1] = {e + win[w], n}\n"
	"      if e + win[w] > last then last = e + win[w] end\n"
	"    else redis.call('HDEL', key, k) end\n"
	"  end\n"
	"end\n"
	"local reg = {}\n"
	"if ARGV[12] == '1' then reg = redis.call('HGETALL', KEYS[3]) end\n"
	"local function share(p, x)\n"
	"  local a = {0, 0, 0}\n"
	"  for w = 1, 3 do\n"
	"    if lim[w] > 0 then\n"
	"      a[w] = math.floor(lim[w] * p / 1000)\n"
	"      if a[w] < 1 then return {0, 0, 0} end\n"
	"      if x + win[w] <= now then a[w] = 0 end\n"
	"    end\n"
	"  end\n"
	"  return a\n"
	"end\n"
	"for i = 2, #reg, 2 do\n"
	"  local e = {string.match(reg[i], "
	"'^(%d+) %d+ (%d+) %d+ (%d+) (%d+) (%d+) %d+$')}\n"
	"  for j = 1, 5 do e[j] = tonumber(e[j]) or 0 end\n"
	"  local a, b, c = share(e[1], e[2]), share(e[3], e[4]), "
	"share(e[5], e[2])\n"
	"  for w = 1, 3 do\n"
	"    occ[w] = occ[w] + math.max(a[w], b[w], c[w])\n"
	"  end\n"
	"end\n"
	"local function spend(x, n)\n"
	"  if n <= 0 then return end\n"
	"  for w = 1, 3 do\n"
	"    local g = math.ceil(win[w] / 32)\n"
	"    local e = math.ceil(x / g) * g\n"
	"    if e + win[w] > now then\n"
	"      redis.call('HINCRBY', key, 's' .. w .. ':' .. e, n)\n"
	"      if e + win[w] > last then last = e + win[w] end\n"
	"      occ[w] = occ[w] + n; ends[w][#ends[w] + 1] = {e + win[w], n}\n"
	"    end\n"
	"  end\n"
	"end\n"
	"if left > hold then left = hold end\n"
	"local keep = 0\n"
	"if hb > now then\n"
	"  spend(now + 1, hold - left)\n"
	"  if not drain then\n"
	"    keep = left\n"
	"    for w = 1, 3 do\n"
	"      if lim[w] > 0 and keep > lim[w] - occ[w] then\n"
	"        keep = math.max(lim[w] - occ[w], 0)\n"
	"      end\n"
	"    end\n"
	"    spend(hb, left - keep)\n"
	"  end\n"
	"elseif drain then spend(hb, hold - left)\n"
	"else spend(hb, hold) end\n"
	"local grant, free = want, -1\n"
	"for w = 1, 3 do\n"
	"  if lim[w] > 0 then\n"
	"    local room = lim[w] - occ[w] - keep\n"
	"    if room < grant then grant = room end\n"
	"    if free < 0 or room < free then free = room end\n"
	"  end\n"
	"end\n"
	"if grant < 0 then grant = 0 end\n"
	"free = free - grant\n"
	"if free < 0 then free = 0 end\n"
	"local h = keep + grant\n"
	"if h > 0 then redis.call('HSET', key, f, h .. ' ' .. (now + v))\n"
	"else redis.call('HDEL', key, f) end\n"
	"redis.call('PEXPIRE', key, last - now + 1000)\n"
	"local old, upd, top = redis.call('HMGET', KEYS[2], '1', '2', '3'), "
	"{}, 0\n"
	"for w = 1, 3 do\n"
	"  local e, o = now + v + math.ceil(win[w] / 32) + win[w] + 1, "
	"tonumber(old[w]) or 0\n"
	"  if e > o then upd[#upd + 1], upd[#upd + 2], o = tostring(w), e, e end\n"
	"  if o > top then top = o end\n"
	"end\n"
	"if #upd > 0 then\n"
	"  redis.call('HSET', KEYS[2], unpack(upd))\n"
	"  redis.call('PEXPIRE', KEYS[2], top - now + 1000)\n"
	"end\n"
	"local retry, fw = 0, 0\n"
	"if h == 0 and want > 0 then\n"
	"  for w = 1, 3 do\n"
	"    if lim[w] > 0 and occ[w] >= lim[w] then\n"
	"      table.sort(ends[w], function(a, b) return a[1] < b[1] end)\n"
	"      local c, at = occ[w], now\n"
	"      for _, p in ipairs(ends[w]) do\n"
	"        c = c - p[2]\n"
	"        if c <= lim[w] - 1 then at = p[1]; break end\n"
	"      end\n"
	"      if at - now > retry then retry, fw = at - now, w - 1 end\n"
	"    end\n"
	"  end\n"
	"  if retry < 1 then retry = 1 end\n"
	"end\n"
	"return {grant, h, v, retry, fw, free}\n";

/*
 * The standing allowance's registration.  KEYS[1]: "rlnodes", KEYS[2]:
 * "rlspan".  ARGV: the node's field (its id and a random instance), the
 * most it stands on (per mille), validity (ms), the longest window (ms),
 * what all nodes stand on together (per mille), shared equally among
 * the registrations alive (and all shares Redis counts, of nodes alive
 * or not, old and pending ones too, never more than the whole limit:
 * the shares alone must not admit more than it), the share the node
 * uses now (per mille: it
 * installed it before this call, so the one before is no longer spent,
 * and Q need count only until now).  A registration's value is
 * "P R X U Q Y G V":
 * it stands on P until X, usable from U, registered at R; the share Q it
 * had before may still be spent until Y; G, if not 0, is a larger share
 * it may use from V (registered now, counted from now on, usable once
 * the leases granted before stop counting, as a registration is).  A
 * share shrinks at once when a node joins (the larger one counting
 * until its expiry), and grows through G.  One that lapsed registers
 * afresh, with a new R and U.  A node that finds the whole limit taken
 * registers a share of 0: counted among the nodes, it makes the others'
 * shrink, and grows once they have.  Answers {accepted, valid ms, ms
 * until usable, fresh, share usable now}.
 */
static const char cll_reg_lua[] =
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	"local f, pmax, v = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])\n"
	"local win = {tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])}\n"
	"local maxw = math.max(win[1], win[2], win[3])\n"
	"local pool, using = tonumber(ARGV[7]), tonumber(ARGV[8]) or -1\n"
	"local n, mine, last, others = 1, nil, now + v + maxw, 0\n"
	"local all = redis.call('HGETALL', KEYS[1])\n"
	"for i = 1, #all, 2 do\n"
	"  local e = {string.match(all[i + 1], "
	"'^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+)$')}\n"
	"  for j = 1, 8 do e[j] = tonumber(e[j]) or 0 end\n"
	"  if e[3] + maxw <= now and e[6] + maxw <= now then\n"
	"    redis.call('HDEL', KEYS[1], all[i])\n"
	"  else\n"
	"    if e[3] + maxw > last then last = e[3] + maxw end\n"
	"    if e[6] + maxw > last then last = e[6] + maxw end\n"
	"    if all[i] == f then mine = e else\n"
	"      if e[3] > now then n = n + 1 end\n"
	"      local c = 0\n"
	"      if e[3] + maxw > now then c = math.max(e[1], e[7]) end\n"
	"      if e[6] + maxw > now and e[5] > c then c = e[5] end\n"
	"      others = others + c\n"
	"    end\n"
	"  end\n"
	"end\n"
	"local target = math.min(pmax, math.floor(pool / n), 1000 - others)\n"
	"if target < 0 then target = 0 end\n"
	"local spans = redis.call('HMGET', KEYS[2], '1', '2', '3')\n"
	"local function gate(x)\n"
	"  local u = now\n"
	"  for w = 1, 3 do\n"
	"    local sp = tonumber(spans[w]) or 0\n"
	"    if x + win[w] <= now and sp > u then u = sp end\n"
	"  end\n"
	"  return u\n"
	"end\n"
	"local p, r, u, fresh, q, y, g, gv = target, now, gate(0), 1, 0, 0, 0, "
	"0\n"
	"if mine then\n"
	"  q, y = mine[1], mine[3]\n"
	"  if mine[6] + maxw > now and mine[5] > q then q = mine[5] end\n"
	"  if mine[7] > q then q = mine[7] end\n"
	"  if mine[3] > now then\n"
	"    r, u, fresh = mine[2], mine[4], 0\n"
	"    if target >= mine[1] then\n"
	"      p, q, y, g, gv = mine[1], mine[5], mine[6], mine[7], mine[8]\n"
	"      if using == p and y > now then y = now end\n"
	"      if g > 0 and gv <= now then\n"
	"        p, g, gv = math.max(p, math.min(g, target)), 0, 0\n"
	"      end\n"
	"      if target > p and target ~= g then g, gv = target, gate(0) end\n"
	"      if target == p then g, gv = 0, 0 end\n"
	"    end\n"
	"  else\n"
	"    p, u = math.min(target, mine[1]), gate(mine[3])\n"
	"    if target > p then g, gv = target, gate(0) end\n"
	"  end\n"
	"end\n"
	"redis.call('HSET', KEYS[1], f, p .. ' ' .. r .. ' ' .. (now + v) .. "
	"' ' .. u .. ' ' .. q .. ' ' .. y .. ' ' .. g .. ' ' .. gv)\n"
	"redis.call('PEXPIRE', KEYS[1], last - now + 1000)\n"
	"local d = u - now\n"
	"if d < 0 then d = 0 end\n"
	"return {1, v, d, fresh, p}\n";

/* The master's own state of each lease-table entry. */
struct cll_ent {
	int		 ce_active;	/* claimed for a subject */
	uint32_t	 ce_pos;	/* its place in cll_active */
	int		 ce_busy;	/* a call is in flight */
	int		 ce_drain;	/* ... and it hands everything back */
	uint32_t	 ce_hold;	/* units Redis counts as ours */
	uint32_t	 ce_seen;	/* units left at the last look */
	int64_t		 ce_last_use;	/* ms a unit was last spent */
	int64_t		 ce_sent;	/* ms the call in flight was sent */
	uint32_t	 ce_sent_left;	/* ... and the units left then */
	int64_t		 ce_rate_at;	/* ms of the last rate update */
	uint32_t	 ce_spent;	/* units spent since */
	double		 ce_rate;	/* units/s spent, smoothed */
	double		 ce_gap;	/* ms between units, smoothed */
	uint32_t	 ce_free;	/* cluster-wide free units, last answer */
	/*
	 * The subject as the master checked it (cll_demand): the copy in
	 * the shared segment is for the workers' eyes, who can write it.
	 */
	struct ls_subject ce_subj;
	int64_t		 ce_t;		/* T of the entry's limits, ms */
};

struct cll_call {
	struct cllimit	*cc_cll;
	size_t		 cc_index;
	uint32_t	 cc_want;
	int		 cc_reg;	/* the allowance's registration */
};

struct cllimit {
	struct event_base	*cll_base;
	struct ls_table		*cll_t;
	struct cluster		*cll_cl;
	cllimit_send_fn		 cll_send;
	char			*cll_prefix;
	char			 cll_node[40];
	int			 cll_fallback;
	int			 cll_up;
	int			 cll_slow;	/* Redis silent > CLL_SLOW_MS */
	uint32_t		 cll_cursor;	/* the pass's place in cll_active */
	int			 cll_fd[2];	/* the demand socket pair */
	struct event		*cll_ev;
	struct event		*cll_tick;
	char			 cll_sha[2 * SHA_DIGEST_LENGTH + 1];
	int			 cll_eval;	/* send the script itself */
	/* The standing allowance (cll_reg_lua). */
	uint32_t		 cll_stand_max;	/* per mille, 0: none */
	char			 cll_reg_field[64];	/* node:instance */
	char			 cll_reg_sha[2 * SHA_DIGEST_LENGTH + 1];
	int			 cll_reg_eval;
	int			 cll_reg_busy;
	int64_t			 cll_reg_sent;
	int64_t			 cll_reg_next;
	int			 cll_reg_refused;	/* logged */
	int			 cll_sync;	/* one unit at a time (bench) */
	struct cll_ent		*cll_ent;	/* LS_ENTRIES */
	uint32_t		*cll_active;	/* the entries claimed, */
						/* cs_subjects of them */
	int64_t			 cll_full_log;	/* last "table full" line */
	int64_t			*cll_freed;	/* LS_ENTRIES: ms, 0: never */
	struct cll_stats	 cll_stats;
};

static void	 cll_call(struct cllimit *, size_t, int64_t, int);
static void	 cll_reg_answer(struct cllimit *, const void *);
static void	 cll_reg_call(struct cllimit *, int64_t);
static void	 cll_spent(struct cll_ent *, uint32_t, int64_t);
static void	 cll_observe(struct cllimit *, size_t, int64_t, uint32_t);
static uint32_t	 cll_target(const struct cllimit *, const struct cll_ent *,
		    const struct ls_subject *);

/* x rounded up, x >= 0 (no libm: the fuzz builds link without it). */
static double
cll_ceil(double x)
{
	double	 i = (double)(uint64_t)x;

	return (i < x ? i + 1 : i);
}

/* The shortest window l enforces, /40 (T above), at least 1 ms. */
static int64_t
cll_t_of(const uint32_t lim[RL_WINDOWS])
{
	int64_t		 t = 0;
	int		 w;

	for (w = 0; w < RL_WINDOWS; w++)
		if (lim[w] != 0 && (t == 0 || ratelimit_window_ms[w] < t))
			t = ratelimit_window_ms[w];
	t /= 40;
	return (t < 1 ? 1 : t);
}

/* The smallest limit l enforces. */
static uint32_t
cll_min_limit(const uint32_t lim[RL_WINDOWS])
{
	uint32_t	 m = 0;
	int		 w;

	for (w = 0; w < RL_WINDOWS; w++)
		if (lim[w] != 0 && (m == 0 || lim[w] < m))
			m = lim[w];
	return (m);
}

/* Lease while Redis is up and answers in time, else the fallback. */
static void
cll_set_mode(struct cllimit *cll)
{
	__atomic_store_n(&cll->cll_t->lt_mode, cll->cll_up && !cll->cll_slow ?
	    LS_MODE_LEASE : (uint32_t)cll->cll_fallback, __ATOMIC_SEQ_CST);
}

/* An answer of n integers into v; -1 if it is anything else. */
static int
cll_integers(const redisReply *r, long long *v, size_t n)
{
	size_t	 i;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != n)
		return (-1);
	for (i = 0; i < n; i++) {
		if (r->element[i] == NULL ||
		    r->element[i]->type != REDIS_REPLY_INTEGER)
			return (-1);
		v[i] = r->element[i]->integer;
	}
	return (0);
}

int
cllimit_parse_reply(const void *rv, struct cll_reply *cr)
{
	long long	 v[6];

	memset(cr, 0, sizeof(*cr));
	if (cll_integers(rv, v, 6) == -1)
		return (-1);
	if (v[0] < 0 || v[0] > RL_MAXLIMIT || v[1] < 0 || v[1] > RL_MAXLIMIT ||
	    v[0] > v[1] || v[2] < 0 || v[2] > 3600000 || v[3] < 0 ||
	    v[3] > 3600000 || v[4] < 0 || v[4] >= RL_WINDOWS || v[5] < 0 ||
	    v[5] > RL_MAXLIMIT)
		return (-1);
	cr->cr_grant = (uint32_t)v[0];
	cr->cr_hold = (uint32_t)v[1];
	cr->cr_valid = v[2];
	cr->cr_retry = v[3];
	cr->cr_window = (int)v[4];
	cr->cr_free = (uint32_t)v[5];
	return (0);
}

int
cllimit_parse_reg(const void *rv, struct cll_reg_reply *rr)
{
	long long	 v[5];

	memset(rr, 0, sizeof(*rr));
	if (cll_integers(rv, v, 5) == -1)
		return (-1);
	if (v[0] < 0 || v[0] > 1 || v[1] < 0 || v[1] > 3600000 || v[2] < 0 ||
	    v[2] > 3600000 || v[3] < 0 || v[3] > 1 || v[4] < 0 || v[4] > 1000)
		return (-1);
	rr->rr_ok = (int)v[0];
	rr->rr_valid = v[1];
	rr->rr_delay = v[2];
	rr->rr_fresh = (int)v[3];
	rr->rr_pm = (uint32_t)v[4];
	return (0);
}

/*
 * The registration's answer.  The allowance is spent from the node's
 * clock: until the send time plus the validity, less 1 ms and a 1,000th
 * (as a lease); usable from now (after Redis's now) plus the delay Redis
 * answered and a 1,000th.  A fresh registration moves "from" later:
 * "until" is cleared first, so that no worker pairs the new until with
 * the old from.
 */
static void
cll_reg_answer(struct cllimit *cll, const void *rv)
{
	const redisReply	*r = rv;
	struct ls_table		*t = cll->cll_t;
	struct cll_reg_reply	 rr;
	int64_t			 now = util_mono_ms(), until, from;

	cll->cll_reg_busy = 0;
	if (cllimit_parse_reg(r, &rr) == -1) {
		cll->cll_stats.cs_failed++;
		if (r != NULL && r->type == REDIS_REPLY_ERROR &&
		    strncmp(r->str, "NOSCRIPT", 8) == 0)
			cll->cll_reg_eval = 1;
		else if (r != NULL)
			log_warnx("cluster: the standing allowance's call "
			    "failed: %.200s", r->type == REDIS_REPLY_ERROR ?
			    r->str : "a bad answer");
		return;
	}
	cll->cll_reg_eval = 0;
	if (!rr.rr_ok || rr.rr_pm > cll->cll_stand_max) {
		if (!cll->cll_reg_refused)
			log_warnx("cluster: no standing allowance for this "
			    "node: %s (every unit is leased)", rr.rr_ok ?
			    "Redis answered a share above the most configured" :
			    "Redis refused it");
		cll->cll_reg_refused = 1;
		cll->cll_stats.cs_stand = CLL_STAND_REFUSED;
		return;
	}
	if (cll->cll_reg_refused)
		log_info("cluster: a standing allowance is registered");
	cll->cll_reg_refused = 0;
	until = cll->cll_reg_sent + rr.rr_valid - 1 - (rr.rr_valid + 999) /
	    1000;
	if (until < 0)
		until = 0;
	/*
	 * Usable from Redis's "not before": on a fresh registration, and on
	 * any answer that says it is not usable yet (the fresh one's answer
	 * may have been lost).
	 */
	from = now + rr.rr_delay + (rr.rr_delay + 999) / 1000;
	if (rr.rr_fresh || (rr.rr_delay > 0 && from > __atomic_load_n(
	    &t->lt_stand_from, __ATOMIC_SEQ_CST))) {
		__atomic_store_n(&t->lt_stand, 0, __ATOMIC_SEQ_CST);
		__atomic_store_n(&t->lt_stand_from, from, __ATOMIC_SEQ_CST);
		cll->cll_stats.cs_stand_from = from;
	}
	/*
	 * One word: a share that shrank (another node joined) is not spent
	 * past the expiry its larger self had, which Redis still counts.
	 */
	__atomic_store_n(&t->lt_stand, LS_STAND_WORD(rr.rr_pm, until),
	    __ATOMIC_SEQ_CST);
	if (rr.rr_pm != cll->cll_stats.cs_stand_pm && !rr.rr_fresh)
		log_info("cluster: this node's standing allowance is now "
		    "%u.%u%% of every limit", rr.rr_pm / 10, rr.rr_pm % 10);
	cll->cll_stats.cs_stand_pm = rr.rr_pm;
	cll->cll_stats.cs_stand_until = until;
	cll->cll_stats.cs_stand = CLL_STAND_ON;
}

/* Register or renew the standing allowance (every CLL_REG_MS). */
static void
cll_reg_call(struct cllimit *cll, int64_t now)
{
	struct cll_call	*c;
	char		 key[512], span[512], pm[16], v[16], win[3][16], cap[16];
	char		 using[16];
	const char	*argv[13];
	int		 n = 0, w;

	if (cll->cll_stand_max == 0 || cll->cll_reg_busy || !cll->cll_up ||
	    now < cll->cll_reg_next)
		return;
	cll->cll_reg_next = now + CLL_REG_MS;
	snprintf(key, sizeof(key), "%srlnodes", cll->cll_prefix);
	snprintf(span, sizeof(span), "%srlspan", cll->cll_prefix);
	snprintf(pm, sizeof(pm), "%u", cll->cll_stand_max);
	snprintf(v, sizeof(v), "%d", CLL_REG_VALID_MS);
	for (w = 0; w < RL_WINDOWS; w++)
		snprintf(win[w], sizeof(win[w]), "%u", ratelimit_window_ms[w]);
	snprintf(cap, sizeof(cap), "%d", CLL_REG_POOL_PM);
	snprintf(using, sizeof(using), "%u", LS_STAND_PM(__atomic_load_n(
	    &cll->cll_t->lt_stand, __ATOMIC_SEQ_CST)));
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return;
	c->cc_cll = cll;
	c->cc_reg = 1;
	argv[n++] = cll->cll_reg_eval ? "EVAL" : "EVALSHA";
	argv[n++] = cll->cll_reg_eval ? cll_reg_lua : cll->cll_reg_sha;
	argv[n++] = "2";
	argv[n++] = key;
	argv[n++] = span;
	argv[n++] = cll->cll_reg_field;
	argv[n++] = pm;
	argv[n++] = v;
	for (w = 0; w < RL_WINDOWS; w++)
		argv[n++] = win[w];
	argv[n++] = cap;
	argv[n++] = using;
	cll->cll_reg_sent = now;
	if (cll->cll_send(cll->cll_cl, c, n, argv) == -1) {
		free(c);
		return;
	}
	cll->cll_reg_busy = 1;
}

/* A lease call's answer: install what was granted. */
void
cllimit_answer(void *arg, const void *rv)
{
	struct cll_call		*c = arg;
	struct cllimit		*cll = c->cc_cll;
	struct cll_ent		*ce = &cll->cll_ent[c->cc_index];
	struct ls_entry		*e = &cll->cll_t->lt_entry[c->cc_index];
	const redisReply	*r = rv;
	struct cll_reply	 cr;
	int64_t			 now = util_mono_ms(), x;
	uint32_t		 low, was, want = c->cc_want;

	if (c->cc_reg) {
		cll_reg_answer(cll, r);
		free(c);
		return;
	}
	ce->ce_busy = 0;
	if (cllimit_parse_reply(r, &cr) == -1) {
		cll->cll_stats.cs_failed++;
		if (r != NULL && r->type == REDIS_REPLY_ERROR &&
		    strncmp(r->str, "NOSCRIPT", 8) == 0)
			cll->cll_eval = 1;
		else if (r != NULL)
			log_warnx("cluster: a lease call failed: %.200s",
			    r->type == REDIS_REPLY_ERROR ? r->str :
			    "a bad answer");
		/*
		 * Unknown outcome: what Redis counts as held stays counted
		 * there until it expires; here the lease runs out as it is.
		 */
		free(c);
		return;
	}
	free(c);
	/* The script is in Redis's cache from now on. */
	cll->cll_eval = 0;
	ce->ce_hold = cr.cr_hold;
	ce->ce_drain = 0;
	if (cr.cr_hold == 0) {
		/* Nothing is ours: no unit may stay in the table. */
		(void)lease_drain(e);
		ce->ce_seen = 0;
	} else {
		/*
		 * Counted from the send, which Redis's now follows, less
		 * the clocks' rate difference: spent before B in real time.
		 */
		x = ce->ce_sent + cr.cr_valid - 1 - (cr.cr_valid + 999) / 1000;
		ce->ce_seen = lease_install(e, x > 0 ? (uint64_t)x : 0,
		    cr.cr_grant, cr.cr_hold, &was);
		/* Spent while the call was out: the demand goes on. */
		if (was < ce->ce_sent_left)
			cll_spent(ce, ce->ce_sent_left - was, now);
	}
	cll->cll_stats.cs_granted += cr.cr_grant;
	ce->ce_free = cr.cr_free;
	/* Workers ask for a renewal T before the expiry. */
	if (cr.cr_hold > 0)
		__atomic_store_n(&e->le_renew, ce->ce_sent + cr.cr_valid -
		    ce->ce_t, __ATOMIC_SEQ_CST);
	/* Asked for more at T / 2 of demand, below the size aimed at. */
	low = (uint32_t)cll_ceil(ce->ce_rate * (double)ce->ce_t / 2000.0);
	if (low >= cll_target(cll, ce, &ce->ce_subj))
		low = cll_target(cll, ce, &ce->ce_subj) - 1;
	__atomic_store_n(&e->le_low, low, __ATOMIC_SEQ_CST);
	__atomic_store_n(&e->le_free, cr.cr_free, __ATOMIC_SEQ_CST);
	if (cr.cr_hold == 0 && want > 0) {
		cll->cll_stats.cs_full++;
		/* Refused until then: workers ask again after it. */
		__atomic_store_n(&e->le_want, 0, __ATOMIC_SEQ_CST);
		__atomic_store_n(&e->le_deny_window, (uint32_t)cr.cr_window,
		    __ATOMIC_SEQ_CST);
		__atomic_store_n(&e->le_deny, now + cr.cr_retry,
		    __ATOMIC_SEQ_CST);
	} else
		__atomic_store_n(&e->le_deny, 0, __ATOMIC_SEQ_CST);
	/* A worker asked again meanwhile (unless the cluster is full). */
	if (__atomic_load_n(&e->le_want, __ATOMIC_SEQ_CST) != 0 &&
	    (cr.cr_hold > 0 || want == 0))
		cll_call(cll, (size_t)(e - cll->cll_t->lt_entry), now, 0);
}

/*
 * Far from the limit ("roomy"): the units nobody holds at the last answer
 * are at least CLL_ROOMY times what every node would hold with leases of
 * 2 T of demand.  Leases may then be larger and last longer: what they
 * keep from the other nodes is a small part of what is free.
 */
static int
cll_roomy(const struct cllimit *cll, const struct cll_ent *ce)
{
	double	 small = cll_ceil(ce->ce_rate * 2.0 * (double)ce->ce_t / 1000.0);
	uint32_t n = __atomic_load_n(&cll->cll_t->lt_nodes, __ATOMIC_RELAXED);

	if (small < 1)
		small = 1;
	return (!cll->cll_sync && (double)ce->ce_free >= CLL_ROOMY * small *
	    (n < 1 ? 1 : n));
}

/*
 * The units a lease of ce aims at: 2 T of its demand, at least 1, at most
 * half the smallest limit (1 at a time for the benchmarks' stand-in); when
 * roomy, 40 T of demand (at least CLL_ROOMY_MIN), at most a quarter of
 * the free units' share of one node.
 */
static uint32_t
cll_target(const struct cllimit *cll, const struct cll_ent *ce,
    const struct ls_subject *s)
{
	uint32_t	 target, cap, n;

	if (cll->cll_sync)
		return (1);
	target = (uint32_t)cll_ceil(ce->ce_rate * 2.0 * (double)ce->ce_t /
	    1000.0);
	cap = cll_min_limit(s->lsu_limit) / 2;
	if (cll_roomy(cll, ce)) {
		n = __atomic_load_n(&cll->cll_t->lt_nodes, __ATOMIC_RELAXED);
		target = (uint32_t)cll_ceil(ce->ce_rate * 40.0 *
		    (double)ce->ce_t / 1000.0);
		if (target < CLL_ROOMY_MIN)
			target = CLL_ROOMY_MIN;
		if (target > ce->ce_free / (4 * (n < 1 ? 1 : n)))
			target = ce->ce_free / (4 * (n < 1 ? 1 : n));
	}
	if (target > cap)
		target = cap;
	return (target < 1 ? 1 : target);
}

/* How long a lease of ce is valid (ms): 10 T, or when roomy 10 s. */
static int64_t
cll_valid(const struct cllimit *cll, const struct cll_ent *ce)
{
	int64_t	 v = CLL_VALID_T * ce->ce_t;

	if (cll_roomy(cll, ce) && v < CLL_ROOMY_VALID_MS)
		v = CLL_ROOMY_VALID_MS;
	return (v);
}

/* Hex of n bytes of p into out (2n + 1 bytes). */
static void
cll_hex(const uint8_t *p, size_t n, char *out)
{
	static const char	 hex[] = "0123456789abcdef";
	size_t			 i;

	for (i = 0; i < n; i++) {
		out[2 * i] = hex[p[i] >> 4];
		out[2 * i + 1] = hex[p[i] & 15];
	}
	out[2 * n] = '\0';
}

/*
 * Ask Redis about entry i at now: renew it (and take more if workers need
 * it), or, with drain, hand everything back.
 */
static void
cll_call(struct cllimit *cll, size_t i, int64_t now, int drain)
{
	struct cll_ent		*ce = &cll->cll_ent[i];
	struct ls_entry		*e = &cll->cll_t->lt_entry[i];
	const struct ls_subject	*s = &ce->ce_subj;
	struct cll_call		*c;
	char			 key[512], field[128], hex[2 * LS_SUBJ_MAX + 1];
	char			 span[512], nodes[512];
	char			 a_left[16], a_want[16], a_v[24], lim[3][16];
	char			 win[3][16];
	const char		*argv[18];
	uint64_t		 x;
	uint32_t		 left, want, target;
	int			 w, n = 0;

	if (ce->ce_busy || !cll->cll_up)
		return;
	__atomic_store_n(&e->le_want, 0, __ATOMIC_SEQ_CST);
	if (drain)
		left = lease_drain(e);
	else
		left = lease_left(e, now, &x);
	cll_observe(cll, i, now, left);	/* what was spent since the last look */
	target = drain ? 0 : cll_target(cll, ce, s);
	want = target > left ? target - left : 0;
	cll_hex(s->lsu_bytes, s->lsu_len, hex);
	snprintf(key, sizeof(key), "%srl:%s", cll->cll_prefix, hex);
	snprintf(span, sizeof(span), "%srlspan", cll->cll_prefix);
	snprintf(nodes, sizeof(nodes), "%srlnodes", cll->cll_prefix);
	snprintf(field, sizeof(field), "n:%s:%u/%u/%u", cll->cll_node,
	    s->lsu_limit[0], s->lsu_limit[1], s->lsu_limit[2]);
	snprintf(a_left, sizeof(a_left), "%u", left);
	snprintf(a_want, sizeof(a_want), "%u", want);
	snprintf(a_v, sizeof(a_v), "%lld", (long long)cll_valid(cll, ce));
	for (w = 0; w < RL_WINDOWS; w++) {
		snprintf(lim[w], sizeof(lim[w]), "%u", s->lsu_limit[w]);
		snprintf(win[w], sizeof(win[w]), "%u",
		    ratelimit_window_ms[w]);
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return;
	c->cc_cll = cll;
	c->cc_index = i;
	c->cc_want = want;
	argv[n++] = cll->cll_eval ? "EVAL" : "EVALSHA";
	argv[n++] = cll->cll_eval ? cll_lua : cll->cll_sha;
	argv[n++] = "3";
	argv[n++] = key;
	argv[n++] = span;
	argv[n++] = nodes;
	argv[n++] = field;
	argv[n++] = a_left;
	argv[n++] = a_want;
	argv[n++] = a_v;
	for (w = 0; w < RL_WINDOWS; w++)
		argv[n++] = lim[w];
	for (w = 0; w < RL_WINDOWS; w++)
		argv[n++] = win[w];
	argv[n++] = drain ? "1" : "0";
	argv[n++] = s->lsu_bytes[0] == LS_KIND_KEY ? "1" : "0";
	ce->ce_sent = now;
	ce->ce_sent_left = left;	/* ce_seen too (cll_observe) */
	if (cll->cll_send(cll->cll_cl, c, n, argv) == -1) {
		free(c);
		if (drain)	/* Redis still counts them: not spendable */
			ce->ce_drain = 1;
		return;
	}
	ce->ce_busy = 1;
	ce->ce_drain = drain;
	cll->cll_stats.cs_calls++;
	if (drain)
		cll->cll_stats.cs_returned += left;
}

/* n units were spent (seen at now): the demand and the gaps kept up. */
static void
cll_spent(struct cll_ent *ce, uint32_t n, int64_t now)
{
	double	 gap = (double)(now - ce->ce_last_use) / n;

	ce->ce_gap = ce->ce_gap == 0 ? gap : ce->ce_gap * 0.75 + gap * 0.25;
	ce->ce_last_use = now;
	ce->ce_spent += n;
}

/* Units spent from entry i since the last look; the rate kept up. */
static void
cll_observe(struct cllimit *cll, size_t i, int64_t now, uint32_t left)
{
	struct cll_ent	*ce = &cll->cll_ent[i];
	uint32_t	 spent = ce->ce_seen > left ? ce->ce_seen - left : 0;
	double		 dt, a;

	ce->ce_seen = left;
	if (spent > 0)
		cll_spent(ce, spent, now);
	/* Smoothed over about 10 T (a quarter of the window). */
	if ((dt = (double)(now - ce->ce_rate_at)) >= (double)ce->ce_t) {
		a = dt / (dt + 10.0 * (double)ce->ce_t);
		ce->ce_rate = ce->ce_rate * (1 - a) +
		    (double)ce->ce_spent * 1000.0 / dt * a;
		if (ce->ce_rate < 0.01)
			ce->ce_rate = 0;
		ce->ce_spent = 0;
		ce->ce_rate_at = now;
	}
}

/* Look at entry i: renew, hand back or free it; 1 if freed. */
static int
cll_look(struct cllimit *cll, size_t i, int64_t now)
{
	struct cll_ent	*ce = &cll->cll_ent[i];
	struct ls_entry	*e = &cll->cll_t->lt_entry[i];
	uint64_t	 x;
	uint32_t	 left;
	int64_t		 idle;

	if (!ce->ce_active || ce->ce_busy)
		return (0);
	left = lease_left(e, now, &x);
	cll_observe(cll, i, now, left);
	/* Idle: no unit spent for 3 of the usual gaps, within [4 T, 40 T]. */
	idle = (int64_t)(3.0 * ce->ce_gap);
	if (idle < 4 * ce->ce_t)
		idle = 4 * ce->ce_t;
	if (idle > 40 * ce->ce_t)
		idle = 40 * ce->ce_t;
	if (__atomic_load_n(&e->le_want, __ATOMIC_SEQ_CST) != 0) {
		cll_call(cll, i, now, 0);
		return (0);
	}
	/*
	 * An idle subject hands its units back, unless roomy: then they
	 * just expire (nobody is short of them).  So does one whose lease
	 * is spent and not asked to be refilled (a key back on its standing
	 * allowance): Redis counts spent units from when they are reported,
	 * held ones until their expiry and a window more, so a lease
	 * reported late keeps its units from the other nodes for up to its
	 * validity longer (a client at 80 % over two nodes was refused).
	 */
	if ((ce->ce_hold > 0 && !cll_roomy(cll, ce) && (int64_t)x > now &&
	    (now - ce->ce_last_use >= idle || left == 0)) || ce->ce_drain) {
		cll_call(cll, i, now, 1);
		return (0);
	}
	if ((int64_t)x <= now && now - ce->ce_last_use >= CLL_RELEASE_MS &&
	    __atomic_load_n(&e->le_deny, __ATOMIC_SEQ_CST) <= now) {
		lease_release(e);
		ce->ce_active = 0;
		cll->cll_freed[i] = now;
		/* Out of the active list: the last one takes its place. */
		cll->cll_active[ce->ce_pos] =
		    cll->cll_active[--cll->cll_stats.cs_subjects];
		cll->cll_ent[cll->cll_active[ce->ce_pos]].ce_pos = ce->ce_pos;
		return (1);
	}
	return (0);
}

/*
 * Every 10 ms: tell the workers the master is alive, and look at a slice
 * of the entries (each within CLL_SLICES passes): hand back what idle
 * subjects hold, free idle entries.  Renewals and refills need no pass:
 * workers ask for them (le_low, le_renew).
 */
static void
cll_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cllimit	*cll = arg;
	int64_t		 now = util_mono_ms();
	uint32_t	 k;

	(void)fd;
	(void)what;
	__atomic_store_n(&cll->cll_t->lt_alive, now, __ATOMIC_SEQ_CST);
	if (cll->cll_cl != NULL)
		cllimit_redis_slow(cll, cluster_cmd_silent_ms(cll->cll_cl, now) >
		    CLL_SLOW_MS);
	cll_reg_call(cll, now);
	k = cll->cll_stats.cs_subjects / CLL_SLICES + CLL_SLICE_MIN;
	while (k-- > 0 && cll->cll_stats.cs_subjects > 0) {
		if (cll->cll_cursor >= cll->cll_stats.cs_subjects)
			cll->cll_cursor = 0;
		/* A release moves the last entry into this place. */
		if (!cll_look(cll, cll->cll_active[cll->cll_cursor], now))
			cll->cll_cursor++;
	}
}

void
cllimit_redis_slow(struct cllimit *cll, int slow)
{
	/*
	 * Redis connected but not answering (paused, overloaded): as if
	 * unreachable until it answers.
	 */
	if (cll == NULL || slow == cll->cll_slow)
		return;
	cll->cll_slow = slow;
	cll_set_mode(cll);
	if (slow)
		log_warnx("cluster: Redis has answered nothing for %d ms: %s "
		    "until it does", CLL_SLOW_MS, cll->cll_fallback ==
		    LS_MODE_DENY ? "rate-limited requests are refused" :
		    "each node enforces limit / nodes");
	else
		log_info("cluster: Redis answers again: rate limits are "
		    "leased");
}

/* A demand from a worker: checked (a worker is not trusted), then acted on. */
static void
cll_demand(struct cllimit *cll, const struct ls_demand *d, int64_t now)
{
	const struct ls_subject	*s = &d->ld_subj;
	struct ls_entry		*e;
	struct cll_ent		*ce;
	size_t			 i;
	int			 fresh, w, on = 0;

	if (s->lsu_len < 2 || s->lsu_len > LS_SUBJ_MAX ||
	    (s->lsu_bytes[0] != LS_KIND_KEY && s->lsu_bytes[0] !=
	    LS_KIND_JWT && s->lsu_bytes[0] != LS_KIND_ADDR))
		return;
	for (w = 0; w < RL_WINDOWS; w++) {
		if (s->lsu_limit[w] > RL_MAXLIMIT)
			return;
		on |= s->lsu_limit[w] != 0;
	}
	if (!on)
		return;
	if ((e = lease_claim(cll->cll_t, s, now, cll->cll_freed,
	    &fresh)) == NULL) {
		/* The worker's request waits its 5 ms, then is refused. */
		if (now - cll->cll_full_log >= CLL_FULL_LOG_MS) {
			cll->cll_full_log = now;
			log_warnx("cluster: the lease table is full (%u "
			    "subjects in use in one of its sets): requests of "
			    "a new key, identity or address are refused 503 "
			    "until one is freed", LS_WAYS);
		}
		return;
	}
	i = lease_index(cll->cll_t, e);
	ce = &cll->cll_ent[i];
	if (fresh) {
		memset(ce, 0, sizeof(*ce));
		memcpy(&ce->ce_subj, s, sizeof(ce->ce_subj));
		ce->ce_active = 1;
		ce->ce_pos = cll->cll_stats.cs_subjects;
		cll->cll_active[ce->ce_pos] = (uint32_t)i;
		ce->ce_t = cll_t_of(s->lsu_limit);
		ce->ce_rate_at = now;
		ce->ce_last_use = now;
		cll->cll_stats.cs_subjects++;
	}
	if (!ce->ce_active)	/* cannot be: the table is the master's */
		return;
	cll_call(cll, i, now, 0);
}

/*
 * The workers' demands: one datagram each (SOCK_SEQPACKET: a short or
 * long one is dropped whole, never misread as the start of the next), at
 * most CLL_BATCH per wake-up, so that a flood cannot keep the master from
 * its timers and Redis's answers.
 */
static void
cll_pipe_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cllimit		*cll = arg;
	struct ls_demand	 d;
	ssize_t			 n;
	int64_t			 now = util_mono_ms();
	int			 i;

	(void)what;
	for (i = 0; i < CLL_BATCH; i++) {
		n = recv(fd, &d, sizeof(d), MSG_DONTWAIT | MSG_TRUNC);
		if (n < 0)
			return;
		if (n == (ssize_t)sizeof(d))
			cll_demand(cll, &d, now);
	}
}

struct cllimit *
cllimit_new(struct event_base *base, struct ls_table *t, struct cluster *cl,
    cllimit_send_fn send, const char *prefix, const char *node, int fallback,
    int standing)
{
	struct cllimit	*cll;
	struct timeval	 tv = { 0, CLL_TICK_MS * 1000 };
	unsigned char	 md[SHA_DIGEST_LENGTH], inst[8];
	char		 hex[2 * sizeof(inst) + 1];
	int		 i, saved;

	if ((cll = calloc(1, sizeof(*cll))) == NULL)
		return (NULL);
	cll->cll_fd[0] = cll->cll_fd[1] = -1;
	cll->cll_base = base;
	cll->cll_t = t;
	cll->cll_cl = cl;
	cll->cll_send = send;
	cll->cll_fallback = fallback == LS_MODE_DENY ? LS_MODE_DENY :
	    LS_MODE_LOCAL;
	snprintf(cll->cll_node, sizeof(cll->cll_node), "%s", node);
	/*
	 * The benchmarks' stand-in for a Redis call per request
	 * (contrib/bench): leases of one unit, asked for when it is spent.
	 */
	cll->cll_sync = getenv("KEYGATE_BENCH_LEASE_SYNC") != NULL;
	SHA1((const unsigned char *)cll_lua, strlen(cll_lua), md);
	cll_hex(md, sizeof(md), cll->cll_sha);
	SHA1((const unsigned char *)cll_reg_lua, strlen(cll_reg_lua), md);
	cll_hex(md, sizeof(md), cll->cll_reg_sha);
	/*
	 * The allowance is registered per run of the node: a node that
	 * restarts has forgotten what it spent, so its new allowance must
	 * not be the old one.  Not for the benchmarks' stand-in.
	 */
	if (standing > 0 && !cll->cll_sync) {
		if (RAND_bytes(inst, sizeof(inst)) != 1) {
			errno = EIO;
			goto fail;
		}
		cll_hex(inst, sizeof(inst), hex);
		snprintf(cll->cll_reg_field, sizeof(cll->cll_reg_field),
		    "%.40s:%s", node, hex);
		cll->cll_stand_max = (uint32_t)standing * 10;
	}
	cll->cll_stats.cs_stand_max = cll->cll_stand_max;
	cll->cll_stats.cs_stand = cll->cll_stand_max > 0 ? CLL_STAND_WAIT :
	    CLL_STAND_OFF;
	__atomic_store_n(&t->lt_stand, 0, __ATOMIC_SEQ_CST);
	if ((cll->cll_prefix = strdup(prefix)) == NULL ||
	    (cll->cll_ent = calloc(LS_ENTRIES, sizeof(*cll->cll_ent))) ==
	    NULL || (cll->cll_active = calloc(LS_ENTRIES,
	    sizeof(*cll->cll_active))) == NULL ||
	    (cll->cll_freed = calloc(LS_ENTRIES,
	    sizeof(*cll->cll_freed))) == NULL || socketpair(AF_UNIX,
	    SOCK_SEQPACKET, 0, cll->cll_fd) == -1)
		goto fail;
	for (i = 0; i < 2; i++)
		if (fcntl(cll->cll_fd[i], F_SETFL, O_NONBLOCK) == -1 ||
		    fcntl(cll->cll_fd[i], F_SETFD, FD_CLOEXEC) == -1)
			goto fail;
	if ((cll->cll_ev = event_new(base, cll->cll_fd[0], EV_READ |
	    EV_PERSIST, cll_pipe_cb, cll)) == NULL ||
	    event_add(cll->cll_ev, NULL) == -1 ||
	    (cll->cll_tick = event_new(base, -1, EV_PERSIST, cll_tick_cb,
	    cll)) == NULL || event_add(cll->cll_tick, &tv) == -1)
		goto fail;
	__atomic_store_n(&t->lt_fallback, (uint32_t)cll->cll_fallback,
	    __ATOMIC_SEQ_CST);
	__atomic_store_n(&t->lt_alive, util_mono_ms(), __ATOMIC_SEQ_CST);
	cll_set_mode(cll);
	return (cll);
fail:
	saved = errno;
	cllimit_free(cll);
	errno = saved;
	return (NULL);
}

void
cllimit_free(struct cllimit *cll)
{
	if (cll == NULL)
		return;
	if (cll->cll_ev != NULL)
		event_free(cll->cll_ev);
	if (cll->cll_tick != NULL)
		event_free(cll->cll_tick);
	if (cll->cll_fd[0] != -1)
		close(cll->cll_fd[0]);
	if (cll->cll_fd[1] != -1)
		close(cll->cll_fd[1]);
	free(cll->cll_prefix);
	free(cll->cll_ent);
	free(cll->cll_active);
	free(cll->cll_freed);
	free(cll);
}

int
cllimit_demand_fd(const struct cllimit *cll)
{
	return (cll != NULL ? cll->cll_fd[1] : -1);
}

void
cllimit_child_detach(struct cllimit *cll)
{
	if (cll == NULL)
		return;
	/* The event belongs to the master's base, reinitialised: drop it. */
	if (cll->cll_fd[0] != -1)
		close(cll->cll_fd[0]);
	cll->cll_fd[0] = -1;
}

void
cllimit_redis(struct cllimit *cll, int up)
{
	uint32_t	 k;

	if (cll == NULL || cll->cll_up == (up != 0))
		return;
	cll->cll_up = up != 0;
	/* A Redis restarted since has an empty script cache. */
	if (up)
		cll->cll_eval = cll->cll_reg_eval = 1;
	/* Demands made meanwhile were dropped: workers will ask again. */
	for (k = 0; up && k < cll->cll_stats.cs_subjects; k++)
		__atomic_store_n(&cll->cll_t->lt_entry[cll->cll_active[k]].le_want,
		    0, __ATOMIC_SEQ_CST);
	cll_set_mode(cll);
	/*
	 * The allowance is registered before any lease call can go: in a
	 * Redis that lost its data, one lease granted first would make the
	 * registration wait for it to stop counting (a minute).
	 */
	if (up) {
		cll->cll_reg_next = 0;
		cll_reg_call(cll, util_mono_ms());
		log_info("cluster: rate limits are leased from Redis again");
	}
	else
		log_warnx("cluster: Redis cannot be asked for rate limits: %s",
		    cll->cll_fallback == LS_MODE_DENY ? "requests are refused "
		    "(cluster_fallback deny)" : "each node enforces limit / "
		    "nodes (cluster_fallback local)");
}

void
cllimit_nodes(struct cllimit *cll, uint32_t n)
{
	if (cll != NULL)
		__atomic_store_n(&cll->cll_t->lt_nodes, n < 1 ? 1 : n,
		    __ATOMIC_SEQ_CST);
}

uint32_t
cllimit_nodes_seen(const struct cllimit *cll)
{
	return (cll == NULL ? 1 : __atomic_load_n(&cll->cll_t->lt_nodes,
	    __ATOMIC_SEQ_CST));
}

int
cllimit_mode(const struct cllimit *cll)
{
	return (cll == NULL ? LS_MODE_OFF : (int)__atomic_load_n(
	    &cll->cll_t->lt_mode, __ATOMIC_SEQ_CST));
}

void
cllimit_stats(const struct cllimit *cll, struct cll_stats *cs)
{
	if (cll == NULL)
		memset(cs, 0, sizeof(*cs));
	else
		*cs = cll->cll_stats;
}

const char *
cllimit_mode_name(int mode)
{
	switch (mode) {
	case LS_MODE_LEASE:
		return ("lease");
	case LS_MODE_LOCAL:
		return ("local");
	case LS_MODE_DENY:
		return ("deny");
	default:
		return ("off");
	}
}
