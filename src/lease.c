/*
 * The lease table (lease.h): what each subject's lease holds on this
 * node, in the shared segment.  The master is the only writer of an
 * entry's identity (tag, subject) and the only one that adds units; the
 * workers only take units (compare-and-swap on one word) and raise a flag.
 *
 * Why a worker never spends a unit of another subject's lease, or one
 * that expired.  A unit is taken by one CAS on le_word, whose expiry is
 * checked against the worker's now in the same read; the master's
 * installs never lower an entry's expiry.  An entry changes subject only
 * when the master reclaims it, LS_GRACE_MS after its last lease expired,
 * and the new subject's leases all expire later than any of the old one's,
 * so no word of the new subject equals a word the worker read for the old
 * one: a worker that read the old word and stalled across the reclaim has
 * its CAS fail.  A worker that found the entry by the old tag but read the
 * word after the reclaim takes a unit of the new subject: it reads the tag
 * again after the CAS, sees the change, and lets the unit go (the new
 * subject is then refused one unit it could have had, never admitted one
 * it had not).  A unit taken is never put back: the master may already
 * have reported it spent, and counted from then on, so a unit put back
 * and spent later would be counted too short.  Only a
 * worker stalled between two loads across two reclaims, 2 x LS_GRACE_MS,
 * could be fooled; that is the stated bound, as the rate limiter's is on
 * clocks.
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "lease.h"

#define LS_LOAD(p)	__atomic_load_n((p), __ATOMIC_SEQ_CST)
#define LS_STORE(p, v)	__atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define LS_CAS(p, o, n)	__atomic_compare_exchange_n((p), (o), (n), 0, \
			    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)

#define LS_NSETS	(LS_ENTRIES / LS_WAYS)

size_t
lease_table_size(void)
{
	return (sizeof(struct ls_table) +
	    (size_t)LS_ENTRIES * sizeof(struct ls_entry));
}

struct ls_table *
lease_table_init(void *region, uint64_t seed)
{
	struct ls_table	*t = region;

	t->lt_seed = seed;
	t->lt_nsets = LS_NSETS;
	t->lt_nodes = 1;
	return (t);
}

void
lease_subject(struct ls_subject *s, int kind, const void *id, size_t len,
    const uint32_t lim[RL_WINDOWS])
{
	int	 w;

	memset(s, 0, sizeof(*s));
	if (len > LS_SUBJ_MAX - 1)
		len = LS_SUBJ_MAX - 1;
	s->lsu_bytes[0] = (uint8_t)kind;
	memcpy(s->lsu_bytes + 1, id, len);
	s->lsu_len = (uint8_t)(len + 1);
	for (w = 0; w < RL_WINDOWS; w++)
		s->lsu_limit[w] = lim[w] > RL_MAXLIMIT ? RL_MAXLIMIT : lim[w];
}

/* Seeded FNV-1a over the subject and its limits, splitmix64 finaliser. */
static uint64_t
lease_hash(const struct ls_table *t, const struct ls_subject *s)
{
	const uint8_t	*p = s->lsu_bytes;
	uint64_t	 h = 0xcbf29ce484222325ULL ^ t->lt_seed;
	size_t		 i;
	int		 w;

	for (i = 0; i < s->lsu_len && i < LS_SUBJ_MAX; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	for (w = 0; w < RL_WINDOWS; w++)
		h = (h ^ s->lsu_limit[w]) * 0x100000001b3ULL;
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	h ^= h >> 31;
	return (h | 1);
}

static struct ls_entry *
lease_set(struct ls_table *t, uint64_t tag)
{
	return (&t->lt_entry[(tag >> 32) % LS_NSETS * LS_WAYS]);
}

static struct ls_entry *
lease_find_tag(struct ls_table *t, uint64_t tag)
{
	struct ls_entry	*set = lease_set(t, tag);
	int		 i;

	for (i = 0; i < LS_WAYS; i++)
		if (LS_LOAD(&set[i].le_tag) == tag)
			return (&set[i]);
	return (NULL);
}

struct ls_entry *
lease_find(struct ls_table *t, const struct ls_subject *s)
{
	return (lease_find_tag(t, lease_hash(t, s)));
}

/* Tell the master s needs units (nonblocking; a full queue drops it). */
static void
lease_ask(int fd, const struct ls_subject *s)
{
	struct ls_demand	 d;
	ssize_t			 n;

	if (fd == -1)
		return;
	memcpy(&d.ld_subj, s, sizeof(d.ld_subj));
	/* One datagram of the master's SOCK_SEQPACKET pair: never torn. */
	do
		n = send(fd, &d, sizeof(d), MSG_DONTWAIT | MSG_NOSIGNAL);
	while (n == -1 && errno == EINTR);
}

/* Raise e's flag; the worker that raised it tells the master. */
static void
lease_want(struct ls_entry *e, int fd, const struct ls_subject *s)
{
	uint32_t	 zero = 0;

	if (LS_LOAD(&e->le_want) == 0 && LS_CAS(&e->le_want, &zero, 1))
		lease_ask(fd, s);
}

int
lease_take(struct ls_table *t, int fd, const struct ls_subject *s,
    int64_t now, int flags, struct ls_took *tk)
{
	struct ls_entry	*e;
	uint64_t	 tag = lease_hash(t, s), old, x, left;
	int64_t		 deny;

	memset(tk, 0, sizeof(*tk));
	if ((e = lease_find_tag(t, tag)) == NULL) {
		if (flags & LS_ASK_EMPTY)
			lease_ask(fd, s);
		return (LS_WAIT);
	}
	old = LS_LOAD(&e->le_word);
	for (;;) {
		x = old >> LS_LEFT_BITS;
		left = old & LS_LEFT_MASK;
		if (left == 0 || now < 0 || (uint64_t)now >= x)
			break;
		if (!LS_CAS(&e->le_word, &old, old - 1))
			continue;
		if (LS_LOAD(&e->le_tag) != tag)	/* reclaimed: see above */
			return (LS_WAIT);
		tk->lt_e = e;
		tk->lt_expiry = x;
		tk->lt_free = (uint32_t)(left - 1) + LS_LOAD(&e->le_free);
		if ((flags & LS_ASK_MORE) && (left - 1 <=
		    LS_LOAD(&e->le_low) || now >= LS_LOAD(&e->le_renew)))
			lease_want(e, fd, s);
		return (LS_TAKEN);
	}
	if ((deny = LS_LOAD(&e->le_deny)) > now) {
		tk->lt_until = deny;
		tk->lt_window = (int)LS_LOAD(&e->le_deny_window);
		if (tk->lt_window < 0 || tk->lt_window >= RL_WINDOWS)
			tk->lt_window = 0;
		return (LS_FULL);
	}
	/*
	 * Nothing left: the master is told once (the flag); it looks at
	 * the flag again when a call comes back and when Redis returns.
	 */
	if (flags & LS_ASK_EMPTY)
		lease_want(e, fd, s);
	return (LS_WAIT);
}

int
lease_standing(const struct ls_table *t, const uint32_t lim[RL_WINDOWS],
    int64_t now, uint32_t cap[RL_WINDOWS])
{
	uint64_t	 word;
	int64_t		 from;
	uint32_t	 pm;
	int		 w;

	word = LS_LOAD(&t->lt_stand);
	from = LS_LOAD(&t->lt_stand_from);
	pm = LS_STAND_PM(word);
	if (pm == 0 || now < from || now >= LS_STAND_UNTIL(word))
		return (0);
	for (w = 0; w < RL_WINDOWS; w++) {
		cap[w] = LS_STAND_UNITS(lim[w], pm);
		if (lim[w] != 0 && cap[w] == 0)
			return (0);
	}
	return ((int)pm);
}

struct ls_entry *
lease_claim(struct ls_table *t, const struct ls_subject *s, int64_t now,
    const int64_t *freed, int *fresh)
{
	struct ls_entry	*set, *e;
	uint64_t	 tag = lease_hash(t, s);
	size_t		 base;
	int		 i;

	*fresh = 0;
	if ((e = lease_find_tag(t, tag)) != NULL)
		return (e);
	set = lease_set(t, tag);
	base = lease_index(t, set);
	for (i = 0; i < LS_WAYS; i++) {
		e = &set[i];
		if (LS_LOAD(&e->le_tag) != 0 || (freed[base + i] != 0 &&
		    now - freed[base + i] < LS_GRACE_MS))
			continue;
		/* The old expiry stays: every later lease expires after it. */
		LS_STORE(&e->le_word, LS_LOAD(&e->le_word) &
		    ~(uint64_t)LS_LEFT_MASK);
		LS_STORE(&e->le_deny, 0);
		LS_STORE(&e->le_want, 0);
		LS_STORE(&e->le_low, 0);
		LS_STORE(&e->le_free, 0);
		LS_STORE(&e->le_renew, 0);
		memcpy(&e->le_subj, s, sizeof(e->le_subj));
		LS_STORE(&e->le_tag, tag);
		*fresh = 1;
		return (e);
	}
	return (NULL);
}

uint32_t
lease_left(const struct ls_entry *e, int64_t now, uint64_t *expiry)
{
	uint64_t	 w = LS_LOAD(&e->le_word);

	*expiry = w >> LS_LEFT_BITS;
	if (now < 0 || (uint64_t)now >= *expiry)
		return (0);
	return ((uint32_t)(w & LS_LEFT_MASK));
}

uint32_t
lease_drain(struct ls_entry *e)
{
	uint64_t	 old = LS_LOAD(&e->le_word);

	while (!LS_CAS(&e->le_word, &old, old & ~(uint64_t)LS_LEFT_MASK))
		;
	return ((uint32_t)(old & LS_LEFT_MASK));
}

uint32_t
lease_install(struct ls_entry *e, uint64_t expiry, uint32_t n, uint32_t cap,
    uint32_t *was)
{
	uint64_t	 old = LS_LOAD(&e->le_word), x, left;

	if (cap > LS_LEFT_MASK)
		cap = LS_LEFT_MASK;
	for (;;) {
		x = old >> LS_LEFT_BITS;
		if (expiry > x)
			x = expiry;
		left = (old & LS_LEFT_MASK) + n;
		if (left > cap)
			left = cap;
		if (LS_CAS(&e->le_word, &old, (x << LS_LEFT_BITS) | left)) {
			if (was != NULL)
				*was = (uint32_t)(old & LS_LEFT_MASK);
			return ((uint32_t)left);
		}
	}
}

void
lease_release(struct ls_entry *e)
{
	LS_STORE(&e->le_tag, 0);
}

size_t
lease_index(const struct ls_table *t, const struct ls_entry *e)
{
	return ((size_t)(e - t->lt_entry));
}
