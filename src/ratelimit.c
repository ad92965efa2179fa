/*
 * Rate limiter (see ratelimit.h): sliding windows counted in rings of
 * buckets in shared memory, updated with compare-and-swap only.
 *
 * Algorithm.  A window of W ms with limit L is cut into buckets of
 * g = ceil(W / 31) ms; bucket number i covers [i*g, (i+1)*g).  The state
 * keeps RL_SLOTS = 32 words per window, slot i % 32 holding
 * (i << 28) | (latest << 20) | count for the bucket it last counted, where
 * latest is the latest arrival in the bucket in 256ths of g, rounded down.
 * With m = i*g + ceil((latest + 1) g / 256) - 1, no arrival in the
 * bucket was later than m, and the bucket's units are counted while
 * now <= m + W: a unit that arrived at ms k is counted at every ms from k
 * to k + W.  Times are whole ms, truncated, so in real time two requests
 * L units apart are at least W apart, not just W - 1 ms.  A unit is counted
 * at most g + g / 256 + 2 ms longer than that (the earliest unit of a
 * bucket waits for its latest).  Counting every bucket to its end instead would cost a
 * client hammering a key g / W of its limit; with the latest arrival, units
 * admitted together as a window frees up also expire together, and the
 * loss falls to what the spread of arrivals inside a bucket costs (at most
 * 1/31, about 3 %).  Buckets that can still be counted lie within W + g of
 * now: at most 32, so the ring never recycles a word that is still needed.
 * A word with an epoch newer than now's (a process whose clock is slightly
 * ahead) is counted.
 *
 * Admission is reserve-then-check: the request first adds 1 to its bucket
 * in every enforced window and raises the bucket's latest arrival to its
 * own (one CAS per window), then reads the whole ring of every window (the
 * reservation included).  If some window sums to more than L, it takes its
 * reservations back (CAS on the same words, skipped if the bucket was
 * recycled meanwhile; the latest arrival stays, which only errs on the safe
 * side) and is refused, so a refused request counts in none.
 *
 * Why no interval of W ms ever admits more than L.  Take admitted requests
 * whose times lie in some interval of length W and let r be the one whose
 * check came last (all atomics are sequentially consistent, so there is a
 * single order).  Every other one, q, made its increment before its own
 * check, hence before r's check, and never took it back; its time is
 * > t_r - W, and its bucket's drop time is >= t_q + W > t_r, so r's reads
 * counted it (in its bucket, or in the newer bucket the slot moved on to,
 * also counted).  r was admitted, so all of them, r included, are <= L.
 * Two concurrent requests may both see the other's reservation and both be
 * refused although one would have fitted: that errs on the safe side.  A
 * process killed between reserve and roll-back leaks one unit in one
 * bucket, which expires with the bucket, W + g ms at most: nothing is ever
 * stuck and no lock exists.  The argument needs the callers' clocks to
 * agree within g; otherwise a far-ahead process could recycle a slot a
 * far-behind one still counts.
 *
 * Why a client at 90 % is never refused.  A unit is counted for less than
 * W + g + g / 256 + 3 ms, about 1.035 W, below W / 0.9, so a client spaced
 * W / (0.9 L) apart has at most L - 1 earlier requests counted when it
 * sends the next.
 *
 * Retry-After.  Without new admissions, the counted units of each age drop
 * out at that age's drop time.  The earliest time the refused window has
 * room is the first of those drop times after which the remaining units
 * number at most L - 1; the latest over all full windows, rounded up to
 * whole seconds, is Retry-After: counts only fall with time, so a request
 * then fits.
 *
 * The 36-bit epoch wraps after 2^36 buckets (over 70 years at g = 33 ms);
 * ages are taken modulo that, so only a word left untouched for half of it
 * could be misread.
 */

#include <string.h>

#include "ratelimit.h"
#include "util.h"

#define RL_CBITS	20	/* count */
#define RL_CMASK	((UINT64_C(1) << RL_CBITS) - 1)
#define RL_OBITS	8	/* latest arrival, in 256ths of the bucket */
#define RL_OMASK	((UINT64_C(1) << RL_OBITS) - 1)
#define RL_ESHIFT	(RL_CBITS + RL_OBITS)
#define RL_EMASK	((UINT64_C(1) << (64 - RL_ESHIFT)) - 1)	/* epoch */
#define RL_SPAN		(RL_SLOTS - 1)	/* buckets per window length */

const uint32_t		 ratelimit_window_ms[RL_WINDOWS] = {
	1000, 10000, 60000
};
const char *const	 ratelimit_window_name[RL_WINDOWS] = {
	"1s", "10s", "60s"
};

#define RL_LOAD(p)	__atomic_load_n((p), __ATOMIC_SEQ_CST)
#define RL_STORE(p, v)	__atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define RL_CAS(p, o, n)	__atomic_compare_exchange_n((p), (o), (n), 0, \
			    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)

/* One window, as seen at now: bucket geometry and counts by age. */
struct rl_view {
	uint32_t	 v_limit;
	int64_t		 v_window;	/* W, ms */
	int64_t		 v_gran;	/* g, ms */
	int64_t		 v_cur;		/* bucket of now */
	uint64_t	 v_off;		/* now within its bucket, 256ths */
	uint32_t	 v_sure;	/* ages below are counted, whatever */
					/* their latest arrival */
	uint32_t	 v_total;
	uint32_t	 v_count[RL_SLOTS];	/* by age: cur - bucket */
	uint8_t		 v_late[RL_SLOTS];	/* by age: latest arrival */
	int64_t		 v_ahead;	/* drop time of words ahead of cur */
};

/* Forget what v has read. */
static void
rl_view_clear(struct rl_view *v)
{
	v->v_total = 0;
	v->v_ahead = 0;
	memset(v->v_count, 0, sizeof(v->v_count));
	memset(v->v_late, 0, sizeof(v->v_late));
}

/* Set up v for window w of l at now; 0 if the window is not enforced. */
static int
rl_view_init(struct rl_view *v, const struct rl_limits *l, int w,
    int64_t now)
{
	if (l->rl_limit[w] == 0 || l->rl_window_ms[w] == 0)
		return (0);
	v->v_limit = l->rl_limit[w] > RL_MAXLIMIT ? RL_MAXLIMIT :
	    l->rl_limit[w];
	v->v_window = l->rl_window_ms[w];
	v->v_gran = (l->rl_window_ms[w] + RL_SPAN - 1) / RL_SPAN;
	/* Bucket a starts at (cur - a) g > now - W when (a + 1) g <= W. */
	v->v_sure = l->rl_window_ms[w] / (uint32_t)v->v_gran;
	if (now < 0)
		now = 0;
	v->v_cur = now / v->v_gran;
	v->v_off = (uint64_t)(now - v->v_cur * v->v_gran) * (RL_OMASK + 1) /
	    (uint64_t)v->v_gran;
	rl_view_clear(v);
	return (1);
}

/*
 * When the units of the bucket of age a (negative: ahead of cur) stop being
 * counted: its start, plus its latest arrival rounded up to the next
 * 256th, plus W, plus 1 ms for the clock's truncation to whole ms.
 */
static int64_t
rl_age_drop(const struct rl_view *v, int64_t a, uint64_t late)
{
	int64_t		 start = (v->v_cur - a) * v->v_gran;
	int64_t		 upto = ((int64_t)late + 1) * v->v_gran;

	return (start + (upto + RL_OMASK) / (RL_OMASK + 1) + v->v_window);
}

/* Age of word's bucket at cur (modulo the epoch range). */
#define RL_AGE(v, word)	\
	(((uint64_t)(v)->v_cur - ((word) >> RL_ESHIFT)) & RL_EMASK)

/*
 * The age at which a non-empty word of age >= v_sure counts at now, or -1
 * if it counts no more: the rule both reads apply (younger words always
 * count).  A word from a newer bucket than cur (a clock ahead) counts at
 * age 0, its drop time kept in v_ahead.  Only these ages need their drop
 * time worked out.
 */
static int
rl_old_age(struct rl_view *v, uint64_t word, uint64_t age, int64_t now)
{
	uint64_t	 late = (word >> RL_CBITS) & RL_OMASK;
	int64_t		 drop;

	if (age > RL_EMASK / 2) {
		drop = rl_age_drop(v, -(int64_t)(RL_EMASK + 1 - age), late);
		if (drop > v->v_ahead)
			v->v_ahead = drop;
		return (0);
	}
	if (age > RL_SPAN || rl_age_drop(v, (int64_t)age, late) <= now)
		return (-1);			/* expired */
	return ((int)age);
}

/* Read the ring of one window into v, by age. */
static void
rl_view_read(struct rl_view *v, const uint64_t *ring, int64_t now)
{
	uint64_t	 word, late, age;
	uint32_t	 n, total = 0;
	int		 i, a;

	for (i = 0; i < RL_SLOTS; i++) {
		word = RL_LOAD(&ring[i]);
		if ((n = word & RL_CMASK) == 0)
			continue;
		age = RL_AGE(v, word);
		if ((a = age < v->v_sure ? (int)age :
		    rl_old_age(v, word, age, now)) < 0)
			continue;
		late = (word >> RL_CBITS) & RL_OMASK;
		v->v_count[a] += n;
		total += n;
		if (late > v->v_late[a])
			v->v_late[a] = (uint8_t)late;
	}
	v->v_total += total;
}

/*
 * Requests counted in ring at now, nothing more: the fast path of a check,
 * without the picture by age.
 */
static uint32_t
rl_view_total(struct rl_view *v, const uint64_t *ring, int64_t now)
{
	uint64_t	 word, age, cur = (uint64_t)v->v_cur;
	uint32_t	 total = 0, sure = v->v_sure;
	int		 i;

	/*
	 * cur and sure in locals: every sequentially consistent load is a
	 * compiler barrier, which would reload them from v each time.
	 */
	for (i = 0; i < RL_SLOTS; i++) {
		word = RL_LOAD(&ring[i]);
		age = (cur - (word >> RL_ESHIFT)) & RL_EMASK;
		if (age < sure || ((word & RL_CMASK) != 0 &&
		    rl_old_age(v, word, age, now) >= 0))
			total += word & RL_CMASK;
	}
	v->v_total = total;
	return (total);
}

/* Time (ms) at which the units of age a stop being counted. */
static int64_t
rl_view_drop(const struct rl_view *v, int a)
{
	int64_t		 drop = rl_age_drop(v, a, v->v_late[a]);

	return (a == 0 && v->v_ahead > drop ? v->v_ahead : drop);
}

/* Earliest time the window holds at most keep requests (now if it does). */
static int64_t
rl_view_room(const struct rl_view *v, uint32_t keep, int64_t now)
{
	uint32_t	 left = v->v_total;
	int		 a;

	if (left <= keep)
		return (now);
	for (a = RL_SLOTS - 1; a >= 0; a--) {
		left -= v->v_count[a];
		if (left <= keep)
			return (rl_view_drop(v, a));
	}
	return (now);		/* not reached: left is 0 after age 0 */
}

/*
 * Add one to the bucket of v_cur in ring and raise its latest arrival to
 * v_off; the epoch actually incremented goes to *epoch.  A slot holding an
 * older bucket is recycled, one holding a newer bucket (clock ahead) is
 * incremented as it is (its arrivals are later than ours).  -1 if
 * saturated.
 */
static int
rl_reserve(uint64_t *ring, struct rl_view *v, uint64_t *epoch)
{
	uint64_t	*slot = &ring[v->v_cur % RL_SLOTS];
	uint64_t	 old, new, e, we, off;

	e = (uint64_t)v->v_cur & RL_EMASK;
	old = RL_LOAD(slot);
	for (;;) {
		we = old >> RL_ESHIFT;
		/* An empty word is free, whatever its epoch (zeroed memory). */
		if ((old & RL_CMASK) != 0 &&
		    (we == e || ((e - we) & RL_EMASK) > RL_EMASK / 2)) {
			if ((old & RL_CMASK) >= RL_CMASK - 1)
				return (-1);
			new = old + 1;
			off = (old >> RL_CBITS) & RL_OMASK;
			if (we == e && v->v_off > off)
				new += (v->v_off - off) << RL_CBITS;
		} else {
			we = e;
			new = (e << RL_ESHIFT) | (v->v_off << RL_CBITS) | 1;
		}
		if (RL_CAS(slot, &old, new)) {
			*epoch = we;
			if (we == e)
				v->v_late[0] = (uint8_t)((new >> RL_CBITS) &
				    RL_OMASK);
			return (0);
		}
	}
}

/*
 * Take back one reservation of epoch in ring, unless it was recycled.  The
 * latest arrival stays: a later drop time only errs on the safe side.
 */
static void
rl_unreserve(uint64_t *ring, int64_t cur, uint64_t epoch)
{
	uint64_t	*slot = &ring[cur % RL_SLOTS];
	uint64_t	 old;

	old = RL_LOAD(slot);
	while ((old >> RL_ESHIFT) == epoch && (old & RL_CMASK) != 0)
		if (RL_CAS(slot, &old, old - 1))
			break;
}

/* Fill l with the defaults of the design: 20/1s, 200/10s, 1000/60s. */
void
ratelimit_defaults(struct rl_limits *l)
{
	static const uint32_t	 lim[RL_WINDOWS] = {
		RL_DEFAULT_1S, RL_DEFAULT_10S, RL_DEFAULT_60S
	};

	ratelimit_set(l, lim);
}

/* l from one limit per window of ratelimit_window_ms; 0 turns a window off. */
void
ratelimit_set(struct rl_limits *l, const uint32_t limit[RL_WINDOWS])
{
	int	 w;

	for (w = 0; w < RL_WINDOWS; w++) {
		l->rl_limit[w] = limit[w];
		l->rl_window_ms[w] = limit[w] != 0 ? ratelimit_window_ms[w] : 0;
	}
}

/* Seconds, rounded up, from now until t (at least min). */
static uint32_t
rl_seconds(int64_t t, int64_t now, uint32_t min)
{
	int64_t		 s = t > now ? (t - now + 999) / 1000 : 0;

	return (s < min ? min : (uint32_t)s);
}

/* Fill res for an admitted request from the views (reservation counted). */
static void
rl_result_admit(struct rl_result *res, const struct rl_view *v,
    const int *on, int64_t now)
{
	uint32_t	 rem;
	int		 w;

	memset(res, 0, sizeof(*res));
	res->rr_window = -1;
	for (w = 0; w < RL_WINDOWS; w++) {
		if (!on[w])
			continue;
		rem = v[w].v_total >= v[w].v_limit ? 0 :
		    v[w].v_limit - v[w].v_total;
		if (res->rr_window != -1 && rem >= res->rr_remaining)
			continue;
		res->rr_window = w;
		res->rr_limit = v[w].v_limit;
		res->rr_remaining = rem;
		/*
		 * The request itself is the youngest: age 0 (or ahead).  The
		 * header names the last ms it is counted (drop - 1), so that
		 * a fresh 1 s window says 1, not 2.
		 */
		res->rr_reset = rl_seconds(rl_view_drop(&v[w], 0) - 1, now, 0);
	}
}

/* Fill res for a refused request from views read after it was refused. */
static void
rl_result_refuse(struct rl_result *res, struct rl_view *v, const int *on,
    int64_t now)
{
	int64_t		 t, latest = now;
	int		 w, a;

	memset(res, 0, sizeof(*res));
	res->rr_window = -1;
	for (w = 0; w < RL_WINDOWS; w++) {
		if (!on[w])
			continue;
		if (v[w].v_total < v[w].v_limit)
			continue;
		t = rl_view_room(&v[w], v[w].v_limit - 1, now);
		if (res->rr_window != -1 && t <= latest)
			continue;
		latest = t;
		res->rr_window = w;
		res->rr_limit = v[w].v_limit;
		for (a = 0; a < RL_SLOTS && v[w].v_count[a] == 0; a++)
			;
		res->rr_reset = a == RL_SLOTS ? 0 :
		    rl_seconds(rl_view_drop(&v[w], a) - 1, now, 1);
	}
	/*
	 * Every window has room again: a concurrent request was refused too
	 * and took its reservation back meanwhile.  Name the fullest window.
	 */
	for (w = 0; res->rr_window == -1 && w < RL_WINDOWS; w++) {
		if (!on[w])
			continue;
		for (a = w + 1; a < RL_WINDOWS; a++)
			if (on[a] && v[a].v_limit - v[a].v_total <
			    v[w].v_limit - v[w].v_total)
				break;
		if (a < RL_WINDOWS)
			continue;
		res->rr_window = w;
		res->rr_limit = v[w].v_limit;
		res->rr_remaining = v[w].v_limit - v[w].v_total;
		res->rr_reset = 1;
	}
	res->rr_retry_after = rl_seconds(latest, now, 1);
}

/*
 * Admit one request (see the paragraph at the top for why it is correct):
 * reserve in every enforced window, check every window, roll back all
 * reservations if any window is over its limit.
 */
int
ratelimit_admit(struct rl_state *st, const struct rl_limits *l, int64_t now,
    struct rl_result *res)
{
	struct rl_view	 v[RL_WINDOWS];
	struct rl_result tmp;
	uint64_t	 epoch[RL_WINDOWS];
	int		 on[RL_WINDOWS], held[RL_WINDOWS], w, ok = 1;

	if (res == NULL)
		res = &tmp;
	ratelimit_prefetch(st);
	/*
	 * A window already full refuses without touching anything, so a
	 * flood of refused requests cannot push drop times later.
	 */
	for (w = 0; w < RL_WINDOWS; w++)
		if ((on[w] = rl_view_init(&v[w], l, w, now)) &&
		    rl_view_total(&v[w], st->rl_slot[w], now) >= v[w].v_limit)
			ok = 0;
	if (ok) {
		for (w = 0; w < RL_WINDOWS; w++) {
			held[w] = 0;
			if (!on[w])
				continue;
			rl_view_clear(&v[w]);
			if (rl_reserve(st->rl_slot[w], &v[w], &epoch[w]) == 0)
				held[w] = 1;
			else
				ok = 0;
		}
		for (w = 0; w < RL_WINDOWS; w++)
			if (on[w] && rl_view_total(&v[w], st->rl_slot[w],
			    now) > v[w].v_limit)
				ok = 0;
		if (ok) {
			rl_result_admit(res, v, on, now);
			return (1);
		}
		for (w = 0; w < RL_WINDOWS; w++)
			if (held[w])
				rl_unreserve(st->rl_slot[w], v[w].v_cur,
				    epoch[w]);
	}
	/* Refused: the whole picture, for Retry-After. */
	for (w = 0; w < RL_WINDOWS; w++) {
		if (!on[w])
			continue;
		rl_view_clear(&v[w]);
		rl_view_read(&v[w], st->rl_slot[w], now);
	}
	rl_result_refuse(res, v, on, now);
	return (0);
}

/*
 * The standing allowance's counter (ratelimit.h): per window W one word,
 * the counts of the last RS_K + 1 buckets of ceil(W / RS_K) ms (10 bits
 * each, the current one lowest) and the current bucket's number mod
 * 2^14.  Any interval of length W meets at most RS_K + 1 consecutive
 * buckets, and a unit is taken only while the current bucket and the
 * RS_K before it hold fewer than the cap: no interval of length W holds
 * more than the cap.  A steady client gets about RS_K / (RS_K + 1) of it.
 *
 * A word up to RS_AHEAD_MS ahead of the caller's now (another worker read
 * the clock later, or this one was preempted between its clock read and
 * its compare-and-swap) is counted as it is: the unit goes in the word's
 * bucket, and so counts a little longer; it must not be taken for a word
 * left alone, whose counts would be forgotten.  The tolerance is in time,
 * not buckets: a word left alone for about 2^14 buckets (68 minutes for a
 * 1 s window) reads as ahead, and keeps its counts, for at most
 * RS_AHEAD_MS and 1.25 windows.  (It once was 64 buckets of 9 bits: a key's first use, or
 * its first after a while, found its counts kept for up to 16 s one time
 * in eight, and the allowance of a busy key refused all along.)  A word
 * with no counts is empty whatever its bucket.
 */
#define RS_K		4
#define RS_CBITS	10
#define RS_CMASK	((UINT64_C(1) << RS_CBITS) - 1)
#define RS_COUNTS	((UINT64_C(1) << (RS_CBITS * (RS_K + 1))) - 1)
#define RS_ESHIFT	(RS_CBITS * (RS_K + 1))
#define RS_EMASK	((UINT64_C(1) << (64 - RS_ESHIFT)) - 1)
#define RS_AHEAD_MS	2000

/* Buckets of g ms for window_ms, and the bucket number of now in them. */
static uint64_t
rs_bucket(uint32_t window_ms, int64_t now, uint64_t *ahead)
{
	uint64_t	 g = (window_ms + RS_K - 1) / RS_K;

	*ahead = (RS_AHEAD_MS + g - 1) / g;
	return (((uint64_t)now / g) & RS_EMASK);
}

/* The word brought to bucket e, or left in its own if ahead. */
static uint64_t
rs_shift(uint64_t word, uint64_t e, uint64_t ahead)
{
	uint64_t	 d = (e - (word >> RS_ESHIFT)) & RS_EMASK;

	if ((word & RS_COUNTS) == 0)
		return (e << RS_ESHIFT);
	if (d == 0 || d > RS_EMASK - ahead)
		return (word);
	if (d > RS_K)
		return (e << RS_ESHIFT);
	return (e << RS_ESHIFT | ((word & RS_COUNTS) << (RS_CBITS * d) &
	    RS_COUNTS));
}

/* Units in the buckets of word. */
static uint64_t
rs_total(uint64_t word)
{
	uint64_t	 n = 0;
	int		 i;

	for (i = 0; i <= RS_K; i++)
		n += word >> (RS_CBITS * i) & RS_CMASK;
	return (n);
}

int
ratelimit_standing_room(const struct rl_standing *rs,
    const struct rl_limits *l, const uint32_t cap[RL_WINDOWS], int64_t now)
{
	uint64_t	 cur, e, ahead;
	int		 w;

	for (w = 0; w < RL_WINDOWS; w++) {
		if (l->rl_limit[w] == 0 || l->rl_window_ms[w] == 0)
			continue;
		if (cap[w] == 0 || now < 0)
			return (0);
		e = rs_bucket(l->rl_window_ms[w], now, &ahead);
		cur = rs_shift(__atomic_load_n(&rs->rs_word[w],
		    __ATOMIC_RELAXED), e, ahead);
		if (rs_total(cur) >= (cap[w] < RS_CMASK ? cap[w] : RS_CMASK))
			return (0);
	}
	return (1);
}

int
ratelimit_standing_admit(struct rl_standing *rs, const struct rl_limits *l,
    const uint32_t cap[RL_WINDOWS], int64_t now)
{
	uint64_t	 old, cur, e, in[RL_WINDOWS], ahead;
	int		 w, held[RL_WINDOWS] = { 0 }, ok = 1;

	for (w = 0; ok && w < RL_WINDOWS; w++) {
		if (l->rl_limit[w] == 0 || l->rl_window_ms[w] == 0)
			continue;
		if (cap[w] == 0 || now < 0) {
			ok = 0;
			break;
		}
		e = rs_bucket(l->rl_window_ms[w], now, &ahead);
		old = __atomic_load_n(&rs->rs_word[w], __ATOMIC_ACQUIRE);
		for (;;) {
			cur = rs_shift(old, e, ahead);
			if (rs_total(cur) >= (cap[w] < RS_CMASK ? cap[w] :
			    RS_CMASK)) {
				ok = 0;
				break;
			}
			if (__atomic_compare_exchange_n(&rs->rs_word[w], &old,
			    cur + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
				held[w] = 1;
				in[w] = cur >> RS_ESHIFT;
				break;
			}
		}
	}
	if (ok)
		return (1);
	/* Refused: each unit taken back from its bucket, if still kept. */
	for (w = 0; w < RL_WINDOWS; w++) {
		if (!held[w])
			continue;
		old = __atomic_load_n(&rs->rs_word[w], __ATOMIC_ACQUIRE);
		for (;;) {
			e = ((old >> RS_ESHIFT) - in[w]) & RS_EMASK;
			if (e > RS_K || (old >> (RS_CBITS * e) & RS_CMASK) == 0)
				break;		/* counted no more */
			cur = old - (UINT64_C(1) << (RS_CBITS * e));
			if (__atomic_compare_exchange_n(&rs->rs_word[w], &old,
			    cur, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
				break;
		}
	}
	return (0);
}

/* Usage of every window at now, without changing anything. */
void
ratelimit_usage(const struct rl_state *st, const struct rl_limits *l,
    int64_t now, uint32_t used[RL_WINDOWS], int64_t reset_ms[RL_WINDOWS])
{
	struct rl_view	 v;
	int		 w, a;

	for (w = 0; w < RL_WINDOWS; w++) {
		used[w] = 0;
		reset_ms[w] = 0;
		if (st == NULL || !rl_view_init(&v, l, w, now))
			continue;
		rl_view_read(&v, st->rl_slot[w], now);
		used[w] = v.v_total;
		for (a = 0; a < RL_SLOTS && v.v_count[a] == 0; a++)
			;
		if (a < RL_SLOTS)
			reset_ms[w] = rl_view_drop(&v, a) - now;
	}
}

/*
 * RateLimit-Policy header value for l; length needed, like snprintf.  This
 * runs for every limited response, hence no stdio.
 */
int
ratelimit_policy(char *buf, size_t len, const struct rl_limits *l)
{
	char		 tmp[RL_WINDOWS * 28];
	size_t		 off = 0;
	int		 w;

	for (w = 0; w < RL_WINDOWS; w++) {
		if (l->rl_limit[w] == 0 || l->rl_window_ms[w] == 0)
			continue;
		if (off > 0) {
			memcpy(tmp + off, ", ", 2);
			off += 2;
		}
		off += util_u64toa(tmp + off, l->rl_limit[w] > RL_MAXLIMIT ?
		    RL_MAXLIMIT : l->rl_limit[w]);
		memcpy(tmp + off, ";w=", 3);
		off += 3;
		off += util_u64toa(tmp + off, l->rl_window_ms[w] / 1000 +
		    (l->rl_window_ms[w] % 1000 != 0));
	}
	if (len > 0) {
		memcpy(buf, tmp, off < len ? off : len - 1);
		buf[off < len ? off : len - 1] = '\0';
	}
	return ((int)off);
}

/*
 * The anonymous per-client-IP table.  nsets sets of RL_WAYS entries; an
 * address hashes (seeded, so a client cannot aim at one set) to a set and a
 * tag, the hash with its low bit set so that 0 means free.  Lookup scans
 * the set's RL_WAYS tags, nothing more: no probing chain, no lock.  A new
 * address claims a free entry, else the one least recently used, by CAS on
 * its tag, then clears the old owner's counters with CAS from the values it
 * read before the claim: a counter changed meanwhile (by the old owner
 * finishing a request, or the new one starting) is kept, which can only
 * over-count.  If the claim keeps losing races (RL_CLAIMS tries), the
 * request is counted in one shared overflow state, so the caller never
 * waits.  Two processes claiming two entries for the same new address at
 * once split its first requests between them; later lookups always take
 * the first match, the other ages out.  Damage is bounded to those
 * requests.  Two addresses sharing a 64-bit hash share counters.
 */
#define RL_CLAIMS	4

struct rl_ipentry {
	uint64_t	 re_tag;	/* 0: free */
	int64_t		 re_used;	/* now of the last request, ms */
	struct rl_state	 re_state;
} __attribute__((aligned(64)));

struct rl_iptable {
	uint64_t	 rt_seed;
	uint32_t	 rt_nsets;
	struct rl_state	 rt_overflow;
	struct rl_ipentry rt_entry[];
} __attribute__((aligned(64)));

/* Sets of RL_WAYS entries for a table of at least n entries (at least 1). */
static uint32_t
rl_sets(uint32_t n)
{
	size_t		 sets = ((size_t)n + RL_WAYS - 1) / RL_WAYS;

	return (sets == 0 ? 1 : (uint32_t)sets);
}

/* Bytes for a table of at least n entries (whole sets, at least one). */
size_t
ratelimit_iptable_size(uint32_t n)
{
	return (sizeof(struct rl_iptable) +
	    (size_t)rl_sets(n) * RL_WAYS * sizeof(struct rl_ipentry));
}

/* Format the zeroed region (ratelimit_iptable_size(n) bytes) as a table. */
struct rl_iptable *
ratelimit_iptable_init(void *region, uint32_t n, uint64_t seed)
{
	struct rl_iptable	*t = region;

	t->rt_seed = seed;
	t->rt_nsets = rl_sets(n);
	return (t);
}

/* Seeded FNV-1a over the address, then the splitmix64 finaliser. */
static uint64_t
rl_iphash(uint64_t seed, const void *ip, size_t len)
{
	const unsigned char	*p = ip;
	uint64_t		 h = 0xcbf29ce484222325ULL ^ seed;
	size_t			 i;

	for (i = 0; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	h ^= h >> 31;
	return (h);
}

/* Claim the LRU (or a free) entry of set for tag; NULL if the CAS lost. */
static struct rl_ipentry *
rl_ipclaim(struct rl_ipentry *set, uint64_t tag, int64_t now)
{
	struct rl_ipentry	*e = NULL;
	uint64_t		 snap[RL_WINDOWS][RL_SLOTS], old, vt = 0, t;
	int64_t			 used, best = INT64_MAX;
	int			 i, w;

	for (i = 0; i < RL_WAYS; i++) {
		t = RL_LOAD(&set[i].re_tag);
		used = t == 0 ? INT64_MIN : RL_LOAD(&set[i].re_used);
		if (e == NULL || used < best) {
			e = &set[i];
			best = used;
			vt = t;
		}
	}
	for (w = 0; w < RL_WINDOWS; w++)
		for (i = 0; i < RL_SLOTS; i++)
			snap[w][i] = RL_LOAD(&e->re_state.rl_slot[w][i]);
	if (!RL_CAS(&e->re_tag, &vt, tag))
		return (NULL);
	RL_STORE(&e->re_used, now);
	for (w = 0; w < RL_WINDOWS; w++)
		for (i = 0; i < RL_SLOTS; i++) {
			old = snap[w][i];
			if (old != 0)
				RL_CAS(&e->re_state.rl_slot[w][i], &old, 0);
		}
	return (e);
}

/* Admit a request from the client address ip (see the paragraph above). */
int
ratelimit_iptable_admit(struct rl_iptable *t, const void *ip, size_t len,
    const struct rl_limits *l, int64_t now, struct rl_result *res)
{
	struct rl_ipentry	*set, *e;
	uint64_t		 h, tag;
	int			 i, try;

	h = rl_iphash(t->rt_seed, ip, len);
	tag = h | 1;
	set = &t->rt_entry[(h >> 32) % t->rt_nsets * RL_WAYS];
	for (try = 0; try < RL_CLAIMS; try++) {
		for (i = 0; i < RL_WAYS; i++)
			if (RL_LOAD(&set[i].re_tag) == tag) {
				e = &set[i];
				if (RL_LOAD(&e->re_used) < now)
					RL_STORE(&e->re_used, now);
				return (ratelimit_admit(&e->re_state, l, now,
				    res));
			}
		if ((e = rl_ipclaim(set, tag, now)) != NULL)
			return (ratelimit_admit(&e->re_state, l, now, res));
	}
	return (ratelimit_admit(&t->rt_overflow, l, now, res));
}

/* Entries in use now. */
uint32_t
ratelimit_iptable_count(const struct rl_iptable *t)
{
	uint32_t	 i, n = 0;

	for (i = 0; i < t->rt_nsets * RL_WAYS; i++)
		if (RL_LOAD(&t->rt_entry[i].re_tag) != 0)
			n++;
	return (n);
}

/*
 * The failed-authentication table (see ratelimit.h for the policy).  nsets
 * sets of RL_WAYS entries; an address hashes (seeded, as in the IP table)
 * to a set and a tag, the hash with its low bit set so that 0 means free.
 * An entry is three words, each changed by compare-and-swap only: the tag,
 * the state and the time of the owner's last log line.  The state packs
 * (t << 24) | (fails << 16) | check, where fails is the streak (saturating
 * at 255), t in ms the later of the latest failure and the end of the wait
 * it earned, and check 16 bits of the owner's tag (bits 8 to 23, which the
 * set index does not use).  An address waits while fails > RL_FAIL_FREE
 * and now < t; its streak is forgotten once now >= t + RL_FAIL_FORGET_MS.
 *
 * Why owners never mix up their states.  A new address claims an entry by
 * a CAS on its tag alone and leaves the state as it is: a state whose check
 * is not the reader's own, like a forgotten one, reads as empty, and the
 * new owner's first update replaces it.  A process that looked up the old
 * owner just before the claim and then updates the state writes the old
 * owner's check, which the new owner reads as empty again.  Only two
 * addresses of one set whose checks agree (1 in 65,536) can share a
 * streak, and only for the updates racing a claim: they wait sooner than
 * they should, never later than the policy says.  Two processes counting
 * failures of one address never lose one to each other: a CAS that fails
 * re-reads the state (at most RL_FAIL_TRIES times; each failure means
 * another update succeeded).  A check and a record are two steps, so
 * attempts checked before a wait begins are still compared and counted
 * (bounded by the requests in flight).
 *
 * Eviction.  A claim takes a free entry, else one whose streak no longer
 * counts, else the one with the smallest t: addresses that are waiting
 * (t in the future) go last, and filling a set with fresh addresses to
 * evict a waiting one needs RL_WAYS addresses that each earned a longer
 * wait.  If claims keep losing races (RL_CLAIMS tries), the failure is not
 * counted; the caller never waits.
 */
#define RL_FAIL_TRIES	8
#define RL_FAIL_TBITS	40	/* t, ms */
#define RL_FAIL_TMASK	((UINT64_C(1) << RL_FAIL_TBITS) - 1)
#define RL_FAIL_NMAX	255	/* fails saturates here */

struct rl_failentry {
	uint64_t	 fe_tag;	/* 0: free */
	uint64_t	 fe_state;	/* (t << 24) | (fails << 16) | check */
	uint64_t	 fe_logged;	/* now + 1 of the last log line, 0: none */
	uint64_t	 fe_pad;
};

struct rl_failtable {
	uint64_t	 ft_seed;
	uint32_t	 ft_nsets;
	struct rl_failentry ft_entry[];
} __attribute__((aligned(64)));

/* A state as the owner of tag reads it at now. */
struct rl_failstate {
	uint32_t	 fs_fails;
	int64_t		 fs_t;
};

/* Bytes for a table of at least n entries (whole sets, at least one). */
size_t
ratelimit_failtable_size(uint32_t n)
{
	return (sizeof(struct rl_failtable) +
	    (size_t)rl_sets(n) * RL_WAYS * sizeof(struct rl_failentry));
}

/* Format the zeroed region (ratelimit_failtable_size(n) bytes). */
struct rl_failtable *
ratelimit_failtable_init(void *region, uint32_t n, uint64_t seed)
{
	struct rl_failtable	*t = region;

	t->ft_seed = seed;
	t->ft_nsets = rl_sets(n);
	return (t);
}

/* The check bits of tag, as stored in the state. */
static uint64_t
rl_fail_check(uint64_t tag)
{
	return ((tag >> 8) & 0xffff);
}

/* Decode word for the owner of tag at now: empty if not its or forgotten. */
static void
rl_fail_decode(uint64_t word, uint64_t tag, int64_t now,
    struct rl_failstate *fs)
{
	fs->fs_fails = 0;
	fs->fs_t = 0;
	if (word == 0 || (word & 0xffff) != rl_fail_check(tag))
		return;
	fs->fs_t = (int64_t)(word >> 24);
	if (now >= fs->fs_t + RL_FAIL_FORGET_MS) {
		fs->fs_t = 0;
		return;
	}
	fs->fs_fails = (uint32_t)((word >> 16) & 0xff);
}

/* ms the owner of fs must still wait at now (0: none). */
static int64_t
rl_fail_wait(const struct rl_failstate *fs, int64_t now)
{
	if (fs->fs_fails <= RL_FAIL_FREE || fs->fs_t <= now)
		return (0);
	return (fs->fs_t - now);
}

/* The wait the n-th failure of a streak earns, ms. */
static int64_t
rl_fail_backoff(uint32_t n)
{
	uint32_t	 k;

	if (n <= RL_FAIL_FREE)
		return (0);
	k = n - RL_FAIL_FREE - 1;
	if (k >= 16 || ((int64_t)RL_FAIL_BASE_MS << k) > RL_FAIL_MAX_MS)
		return (RL_FAIL_MAX_MS);
	return ((int64_t)RL_FAIL_BASE_MS << k);
}

/* The entry of ip (tag in *tagp), or NULL; claim one if claim is set. */
static struct rl_failentry *
rl_fail_find(struct rl_failtable *t, const void *ip, size_t len, int64_t now,
    int claim, uint64_t *tagp)
{
	struct rl_failentry	*set, *e;
	struct rl_failstate	 fs;
	uint64_t		 h, tag, vt, ot;
	int64_t			 score, best;
	int			 i, try;

	h = rl_iphash(t->ft_seed, ip, len);
	*tagp = tag = h | 1;
	set = &t->ft_entry[(h >> 32) % t->ft_nsets * RL_WAYS];
	for (try = 0; try < RL_CLAIMS; try++) {
		for (i = 0; i < RL_WAYS; i++)
			if (RL_LOAD(&set[i].fe_tag) == tag)
				return (&set[i]);
		if (!claim)
			return (NULL);
		e = NULL;
		best = INT64_MAX;
		vt = 0;
		for (i = 0; i < RL_WAYS; i++) {
			ot = RL_LOAD(&set[i].fe_tag);
			rl_fail_decode(RL_LOAD(&set[i].fe_state), ot, now, &fs);
			score = ot == 0 ? INT64_MIN : fs.fs_t == 0 ?
			    INT64_MIN + 1 : fs.fs_t;
			if (e == NULL || score < best) {
				e = &set[i];
				best = score;
				vt = ot;
			}
		}
		if (RL_CAS(&e->fe_tag, &vt, tag)) {
			RL_STORE(&e->fe_logged, 0);
			return (e);
		}
	}
	return (NULL);
}

/* 1 if the owner of e may log at now (once per RL_FAIL_LOG_MS). */
static int
rl_fail_logok(struct rl_failentry *e, int64_t now)
{
	uint64_t	 old = RL_LOAD(&e->fe_logged);

	if (old != 0 && (int64_t)old - 1 <= now &&
	    now - ((int64_t)old - 1) < RL_FAIL_LOG_MS)
		return (0);
	return (RL_CAS(&e->fe_logged, &old, (uint64_t)now + 1));
}

/* Is ip waiting at now?  0 no (go ahead and check), -1 yes. */
int
ratelimit_fail_check(struct rl_failtable *t, const void *ip, size_t len,
    int64_t now, struct rl_failinfo *fi)
{
	struct rl_failentry	*e;
	struct rl_failstate	 fs;
	uint64_t		 tag;

	memset(fi, 0, sizeof(*fi));
	if ((e = rl_fail_find(t, ip, len, now, 0, &tag)) == NULL)
		return (0);
	rl_fail_decode(RL_LOAD(&e->fe_state), tag, now, &fs);
	fi->rf_fails = fs.fs_fails;
	if ((fi->rf_wait = rl_fail_wait(&fs, now)) == 0)
		return (0);
	fi->rf_log = rl_fail_logok(e, now);
	return (-1);
}

/* Count a failure of ip at now (see the paragraph above). */
void
ratelimit_fail_record(struct rl_failtable *t, const void *ip, size_t len,
    int64_t now, struct rl_failinfo *fi)
{
	struct rl_failentry	*e;
	struct rl_failstate	 fs;
	uint64_t		 tag, old, new;
	int64_t			 wait, nt;
	int			 try;

	memset(fi, 0, sizeof(*fi));
	if (now < 0 || (e = rl_fail_find(t, ip, len, now, 1, &tag)) == NULL)
		return;
	for (try = 0; try < RL_FAIL_TRIES; try++) {
		old = RL_LOAD(&e->fe_state);
		rl_fail_decode(old, tag, now, &fs);
		if ((wait = rl_fail_wait(&fs, now)) > 0) {
			/* Checked before the wait began: already paid for. */
			fi->rf_fails = fs.fs_fails;
			fi->rf_wait = wait;
			break;
		}
		if (fs.fs_fails < RL_FAIL_NMAX)
			fs.fs_fails++;
		wait = rl_fail_backoff(fs.fs_fails);
		nt = now + wait > fs.fs_t ? now + wait : fs.fs_t;
		new = ((uint64_t)nt & RL_FAIL_TMASK) << 24 |
		    (uint64_t)fs.fs_fails << 16 | rl_fail_check(tag);
		if (RL_CAS(&e->fe_state, &old, new)) {
			fi->rf_fails = fs.fs_fails;
			fi->rf_wait = wait;
			break;
		}
	}
	fi->rf_log = rl_fail_logok(e, now);
}

/* End the streak of ip: a right credential. */
void
ratelimit_fail_reset(struct rl_failtable *t, const void *ip, size_t len)
{
	struct rl_failentry	*e;
	uint64_t		 tag, old;
	int			 try;

	if ((e = rl_fail_find(t, ip, len, 0, 0, &tag)) == NULL)
		return;
	for (try = 0; try < RL_FAIL_TRIES; try++) {
		old = RL_LOAD(&e->fe_state);
		if (old == 0 || (old & 0xffff) != rl_fail_check(tag) ||
		    RL_CAS(&e->fe_state, &old, 0))
			return;
	}
}

/* Addresses whose streak still counts at now. */
uint32_t
ratelimit_failtable_count(const struct rl_failtable *t, int64_t now)
{
	struct rl_failstate	 fs;
	uint64_t		 tag;
	uint32_t		 i, n = 0;

	for (i = 0; i < t->ft_nsets * RL_WAYS; i++) {
		tag = RL_LOAD(&t->ft_entry[i].fe_tag);
		rl_fail_decode(RL_LOAD(&t->ft_entry[i].fe_state), tag, now,
		    &fs);
		if (tag != 0 && fs.fs_fails > 0)
			n++;
	}
	return (n);
}
