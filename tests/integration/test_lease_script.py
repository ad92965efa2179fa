"""
The lease arithmetic of cluster-wide rate limits, checked on the real
thing: the Lua script of src/cllimit.c (read from the source, so the test
runs exactly what keygated sends) in a redis-server of the test's own,
driven by simulated nodes that do what a node's master and workers do,
in random interleavings (seeded, so a failure reproduces).

A simulated node holds a lease (units left, and an expiry on its own
clock: the send time plus the validity Redis answered, less 1 ms and a
1,000th, as cllimit.c does); at each step one node, picked at random,
spends some of its units (only before its expiry), renews its lease
(reporting the units it still holds, asking for some more), hands
everything back (drain), dies (forgets its lease: its units must simply
be lost until they age out), or the clock just runs.  The windows and
the validity are arguments of the script, so the test shortens them
(250 ms and 1.2 s windows) to see many windows in a few seconds.

Checked, against the model of the guarantee (cllimit.c):
- by the spend times recorded (CLOCK_MONOTONIC, the machine's one clock,
  which Redis's TIME follows), no interval of a window's length holds more
  than that window's limit, all nodes counted;
- a lease is never answered with more units held than granted plus kept,
  nor with a grant above what was asked;
- the limit is used: greedy nodes spend at least 80 % of what the
  shortest window allows over the run (with the validity a 10th of it);
- two limit sets on one subject (a route's override): no interval holds
  more than the larger limit, nor more units of the smaller set's leases
  than the smaller limit;
- a node whose lease expired in Redis (it stalled longer than the
  validity) gets nothing back from its old units when it renews;
- the subject's hash lives as long as any unit in it counts.
"""

import os
import random
import re
import sys
import time

import kgtest as kg
import rediskit as R

SRC = os.environ.get("KEYGATE_SRCDIR", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def lua_script(name="cll_lua"):
    """A script's text, from its C string literal in src/cllimit.c."""
    with open(os.path.join(SRC, "src", "cllimit.c")) as f:
        text = f.read()
    m = re.search(r"static const char %s\[\] =\n(.*?);\n" % name, text,
                  re.S)
    kg.check(m is not None, "%s[] not found in src/cllimit.c" % name)
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))
    return "".join(parts).encode().decode("unicode_escape")


class Node:
    def __init__(self, sim, name, limits):
        self.sim = sim
        self.field = "n:%s:%d/%d/%d" % ((name,) + tuple(limits))
        self.limits = limits
        self.left = 0
        self.expiry = 0.0	# monotonic s
        self.spent = []

    def call(self, want, drain=False):
        s = self.sim
        sent = time.monotonic()
        left = self.left
        if drain:
            self.left = 0
        r = s.redis.call("EVAL", s.script, "3", s.key, s.span, s.nodes,
                         self.field,
                         str(left), str(want), str(s.valid),
                         *([str(x) for x in self.limits] +
                           [str(w) for w in s.windows] +
                           ["1" if drain else "0", "1"]))
        grant, hold, valid, retry, fw, free = r
        kg.check(0 <= grant <= want, "grant %d of %d wanted" % (grant, want))
        kg.check(hold <= left + grant, "held %d > kept %d + granted %d" %
                 (hold, left, grant))
        if drain:
            kg.eq(hold, 0, "held after a drain")
        kg.check(hold > 0 or want == 0 or retry >= 1,
                 "refused without a retry time")
        s.calls += 1
        if hold == 0:
            self.left = 0
            return grant
        self.left = min(self.left + grant, hold)
        self.expiry = sent + (valid - 1 - valid // 1000) / 1000.0
        return grant

    def spend(self, n):
        now = time.monotonic()
        k = 0
        while k < n and self.left > 0 and time.monotonic() < self.expiry:
            self.left -= 1
            self.spent.append(time.monotonic())
            k += 1
        return k


class StandingNode(Node):
    """A node that also stands on an allowance: a share (per mille) of
    every limit, at most pmax, registered with the registration script
    (the nodes share a pool; a share shrinks when one joins) and spent
    between "from" and "until" on its clock, never more than the current
    share's units in any interval of a window's length (what keygated's
    counter guarantees; the model lets the node spend up to that
    bound)."""

    def __init__(self, sim, name, limits, pmax, pool=400):
        Node.__init__(self, sim, name, limits)
        self.reg_field = "%s:%08x" % (name, sim.rng.getrandbits(32))
        self.pmax = pmax
        self.pool = pool
        self.pm = 0
        self.start = self.until = 0.0
        self.standing = []	# units taken from the allowance
        self.shares = set()

    def register(self, valid):
        s = self.sim
        sent = time.monotonic()
        ok, v, d, fresh, pm = s.redis.call(
            "EVAL", s.reg, "2", s.nodes, s.span, self.reg_field,
            str(self.pmax), str(valid), *([str(w) for w in s.windows] +
                                          [str(self.pool), str(self.pm)]))
        now = time.monotonic()
        if not ok:
            return False
        kg.check(0 <= pm <= self.pmax, "share %d of at most %d" %
                 (pm, self.pmax))
        if fresh:
            self.until = 0.0
            self.start = now + (d + (d + 999) // 1000) / 1000.0
        self.pm = pm
        self.shares.add(pm)
        self.until = sent + (v - 1 - (v + 999) // 1000) / 1000.0
        return True

    def stand(self):
        t = time.monotonic()
        if not self.start <= t < self.until:
            return False
        local = self.standing
        for lim, win in zip(self.limits, self.sim.windows):
            if lim == 0:
                continue
            cap = lim * self.pm // 1000
            if cap == 0 or sum(1 for x in local if x > t - win / 1000.0) \
                    >= cap:
                return False
        self.standing.append(t)
        if time.monotonic() >= self.until:
            return False		# taken, but too late: lost
        self.spent.append(t)
        return True


class Sim:
    def __init__(self, srv, seed, windows, valid):
        self.redis = srv.client()
        self.script = lua_script()
        self.reg = lua_script("cll_reg_lua")
        self.key = "keygate:{lt}:rl:%d" % seed
        self.span = "keygate:{lt}:rlspan:%d" % seed
        self.nodes = "keygate:{lt}:rlnodes:%d" % seed
        self.windows = windows
        self.valid = valid
        self.calls = 0
        self.rng = random.Random(seed)


def max_in(times, w):
    """Most times in any half-open interval of w seconds."""
    times = sorted(times)
    best = j = 0
    for i in range(len(times)):
        while times[i] - times[j] >= w:
            j += 1
        best = max(best, i - j + 1)
    return best


def run_sim(srv, seed, nodes_limits, seconds, windows=(250, 1200, 0),
            valid=25, greedy=True, die=True):
    sim = Sim(srv, seed, windows, valid)
    rng = sim.rng
    nodes = [Node(sim, "n%d" % i, lim) for i, lim in enumerate(nodes_limits)]
    dead = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        n = rng.choice(nodes)
        a = rng.random()
        if a < 0.45:
            if n.spend(rng.randint(1, 4)) == 0 and greedy:
                n.call(rng.randint(1, 6))
        elif a < 0.75:
            n.call(rng.randint(0, 6))
        elif a < 0.82:
            n.call(0, drain=True)
        elif a < 0.84 and die:
            # Dies with its lease: a new node takes its place.
            dead.append(n)
            i = nodes.index(n)
            nodes[i] = Node(sim, "n%d-%d" % (i, len(dead)), n.limits)
        else:
            time.sleep(rng.random() * 0.004)
    return sim, nodes + dead


def check_windows(seed, sim, nodes, lim0, lim1):
    """No interval of 250 ms holds more than lim0 of the nodes' spends, nor
    one of 1.2 s more than lim1."""
    spent = [t for n in nodes for t in n.spent]
    m0, m1 = max_in(spent, 0.250 - 0.002), max_in(spent, 1.2 - 0.002)
    print("# seed %d: %d spent, %d calls; most in 250 ms %d (limit %d), in "
          "1.2 s %d (limit %d)" % (seed, len(spent), sim.calls, m0, lim0, m1,
                                   lim1))
    kg.check(m0 <= lim0, "seed %d: %d units in 250 ms, limit %d" %
             (seed, m0, lim0))
    kg.check(m1 <= lim1, "seed %d: %d units in 1.2 s, limit %d" %
             (seed, m1, lim1))


@R.cleaned
def test_single_limit_set():
    """Three nodes, 6 per 250 ms and 20 per 1.2 s, random interleavings
    of spends, renewals, drains and deaths under four seeds."""
    R.need_redis()
    srv = R.Server()
    for seed in (1, 2, 3, 4):
        sim, nodes = run_sim(srv, seed, [(6, 20, 0)] * 3, 2.5)
        check_windows(seed, sim, nodes, 6, 20)


@R.cleaned
def test_limit_used():
    """Greedy nodes without deaths or drains use most of the limit: over
    4 s of 10 per 250 ms (the only window), at least 80 % of what the
    window allows (16 windows x 10)."""
    R.need_redis()
    srv = R.Server()
    sim = Sim(srv, 11, (250, 0, 0), 25)
    nodes = [Node(sim, "n%d" % i, (10, 0, 0)) for i in range(2)]
    t0 = time.monotonic()
    end = t0 + 4.0
    while time.monotonic() < end:
        for n in nodes:
            if n.spend(1) == 0:
                n.call(3)
    spent = sorted(t for n in nodes for t in n.spent)
    allowed = 4.0 / 0.250 * 10
    print("# %d spent of %d allowed (%.0f %%), %d calls, %.1f calls per "
          "1,000 units" % (len(spent), allowed, 100.0 * len(spent) / allowed,
                            sim.calls, 1000.0 * sim.calls / max(1, len(spent))))
    kg.check(max_in(spent, 0.248) <= 10, "over the limit: %d in 250 ms" %
             max_in(spent, 0.248))
    kg.check(len(spent) >= 0.8 * allowed, "only %d of %d allowed used" %
             (len(spent), allowed))


@R.cleaned
def test_two_limit_sets():
    """One subject leased under two limit sets (a route overriding the
    key's limits): 4 per 250 ms and 12 per 250 ms, two nodes each."""
    R.need_redis()
    srv = R.Server()
    for seed in (21, 22, 23):
        sim, nodes = run_sim(srv, seed, [(4, 0, 0), (4, 0, 0),
                                         (12, 0, 0), (12, 0, 0)], 2.0,
                             windows=(250, 0, 0))
        small = [t for n in nodes if n.limits[0] == 4 for t in n.spent]
        every = [t for n in nodes for t in n.spent]
        ms, me = max_in(small, 0.248), max_in(every, 0.248)
        print("# seed %d: %d spent (%d under the smaller limit); most in "
              "250 ms: %d (limit 12), %d of the smaller set's (limit 4)" %
              (seed, len(every), len(small), me, ms))
        kg.check(me <= 12, "seed %d: %d units in 250 ms, limit 12" %
                 (seed, me))
        kg.check(ms <= 4, "seed %d: %d units of the 4/250 ms leases in "
                 "250 ms" % (seed, ms))


@R.cleaned
def test_stalled_node():
    """A node that renews after its lease expired in Redis keeps none of
    its old units: the answer holds only what was granted now; and
    while the window is full it gets a retry time, not units."""
    R.need_redis()
    srv = R.Server()
    sim = Sim(srv, 31, (1000, 0, 0), 50)
    a, b = Node(sim, "a", (5, 0, 0)), Node(sim, "b", (5, 0, 0))
    kg.eq(a.call(5), 5, "first grant")
    time.sleep(0.08)		# a's lease expired (50 ms), unspent
    r = sim.redis.call("EVAL", sim.script, "3", sim.key, sim.span,
                       sim.nodes, a.field, "5", "0",
                       "50", "5", "0", "0", "1000", "0", "0", "0")
    kg.eq(r[1], 0, "units a holds after renewing an expired lease with "
          "nothing asked")
    # The expired units count until expiry + window: b gets nothing yet.
    kg.eq(b.call(3), 0, "b's grant while a's expired units still count")
    r = sim.redis.call("EVAL", sim.script, "3", sim.key, sim.span,
                       sim.nodes, b.field, "0", "1",
                       "50", "5", "0", "0", "1000", "0", "0", "0")
    kg.eq(r[0], 0, "b's grant")
    kg.check(800 <= r[3] <= 1000, "retry %d ms, expected about 950" % r[3])


@R.cleaned
def test_ttl_covers_every_lease():
    """The subject's hash lives as long as anything in it counts: a lease
    valid 3 s under a per-6-s limit set, then a call of another limit set
    valid 50 ms: the hash's time to live still covers the first lease's
    units to their expiry plus the longest window (it was once set from
    the last caller's validity only, and the hash vanished while those
    units counted)."""
    R.need_redis()
    srv = R.Server()
    sim = Sim(srv, 41, (1000, 2000, 6000), 3000)
    a = Node(sim, "a", (0, 0, 30))
    kg.eq(a.call(15), 15, "a's grant")
    sim.valid = 50
    b = Node(sim, "b", (0, 20, 30))
    kg.eq(b.call(1), 1, "b's grant")
    ttl = sim.redis.call("PTTL", sim.key)
    kg.check(ttl >= 3000 + 6000 - 200, "the hash expires in %d ms, before "
             "a's units (valid 3 s, a 6 s window) stop counting" % ttl)


def run_standing(srv, seed, seconds, limits=(20, 60, 0), pm=250,
                 windows=(250, 1200, 0)):
    """Three nodes standing on a share of a pool of 400 per mille (each
    at most pm), and leasing the rest, spending, renewing, draining and
    dying at random; a fourth joins half-way (the others' shares
    shrink).  Registrations are renewed every 60 ms, valid 150 ms."""
    sim = Sim(srv, seed, windows, 25)
    rng = sim.rng
    nodes = [StandingNode(sim, "n%d" % i, limits, pm) for i in range(3)]
    dead = []
    t0 = time.monotonic()
    end = t0 + seconds
    joined = False
    last_reg = {}
    used = 0
    while time.monotonic() < end:
        now = time.monotonic()
        if not joined and now >= t0 + seconds / 2:
            nodes.append(StandingNode(sim, "late", limits, pm))
            joined = True
        for n in nodes:
            if now - last_reg.get(n.reg_field, 0) >= 0.060:
                last_reg[n.reg_field] = now
                n.register(150)
        n = rng.choice(nodes)
        a = rng.random()
        if a < 0.5:
            if n.stand():
                used += 1
            elif n.spend(1) == 0:
                n.call(rng.randint(1, 4))
        elif a < 0.7:
            n.call(rng.randint(0, 4))
        elif a < 0.75:
            n.call(0, drain=True)
        elif a < 0.752:
            # Dies: its allowance and lease are lost with it; a new
            # run of the node registers afresh.
            dead.append(n)
            i = nodes.index(n)
            nodes[i] = StandingNode(sim, n.field.split(":")[1], limits, pm)
        else:
            time.sleep(rng.random() * 0.003)
    return sim, nodes + dead, used


@R.cleaned
def test_standing_allowance():
    """Nodes that admit part of every limit without asking (the standing
    allowance), with leases for the rest, deaths and a late joiner, under
    three seeds: no interval of a window's length holds more than the
    limit, all nodes and both ways counted."""
    R.need_redis()
    srv = R.Server()
    for seed in (51, 52, 53):
        sim, nodes, used = run_standing(srv, seed, 3.0)
        shares = sorted(set().union(*[n.shares for n in nodes]))
        print("# seed %d: shares seen %r" % (seed, shares))
        kg.check(len(shares) >= 2, "seed %d: no share shrank: %r" %
                 (seed, shares))
        print("# seed %d: %d spent standing" % (seed, used))
        kg.check(used > 0, "seed %d: nothing spent standing" % seed)
        check_windows(seed, sim, nodes, 20, 60)


@R.cleaned
def test_standing_registration():
    """The registration: usable at once in a namespace where nothing was
    leased; renewed without moving its start; a node registering after
    leases were granted waits until they no longer count (validity +
    the longest window); the pool is shared equally, a share shrinking
    when a node joins, while the larger share still counts until its
    expiry; too many nodes for a unit of the pool are refused; a
    registration that lapsed starts afresh; leases are granted only what
    the allowances leave; subjects other than keys stand on nothing."""
    R.need_redis()
    srv = R.Server()
    sim = Sim(srv, 61, (250, 1200, 0), 25)

    def reg(field, pm=250, valid=5000, pool=400):
        return sim.redis.call("EVAL", sim.reg, "2", sim.nodes, sim.span,
                              field, str(pm), str(valid), "250", "1200", "0",
                              str(pool))

    kg.eq(reg("a:1"), [1, 5000, 0, 1, 250], "a's first registration")
    kg.eq(reg("a:1"), [1, 5000, 0, 0, 250], "a's renewal")
    b = Node(sim, "b", (20, 0, 0))
    # a stands on 250 per mille of 20: 5 units; b may lease 15 at most.
    kg.eq(b.call(20), 15, "b's grant beside a's allowance")
    ok, v, d, fresh, pm = reg("c:1")
    kg.eq((ok, fresh, pm), (1, 1, 200), "c's registration (400 / 2)")
    kg.check(1200 + 25 - 50 <= d <= 1200 + 25 + 40 + 2,
             "c usable in %d ms; b's lease counts for 25 + 1200 ms" % d)
    kg.eq(reg("a:1")[4], 200, "a's share once c joined (400 / 2)")
    # b renews: a counts 5 (its larger share until its old expiry), c 4.
    kg.eq(b.call(20), 0, "b's grant beside a's and c's allowances")
    kg.eq(b.left, 11, "b keeps what it held up to what is left")
    kg.eq(reg("d:1", valid=30, pool=2)[4], 0, "a third node, with a pool "
          "of 2 per mille: below one each")
    kg.eq(sim.redis.call("HEXISTS", sim.nodes, "d:1"), 1,
          "a node with a share of 0 is counted among the nodes")
    # An address or JWT identity stands on nothing: all is leased.
    r = sim.redis.call("EVAL", sim.script, "3", sim.key + ":addr", sim.span,
                       sim.nodes, "n:x:20/0/0", "0", "20", "25", "20", "0",
                       "0", "250", "1200", "0", "0", "0")
    kg.eq(r[0], 20, "a grant for a subject that is not a key")
    # c goes (valid 30 ms): a's share grows back, once the leases
    # granted before the growth stop counting.
    reg("c:1", valid=30)
    time.sleep(0.06)
    kg.eq(reg("a:1")[4], 200, "a's share right after c and d went")
    g = sim.redis.call("HGET", sim.nodes, "a:1").decode().split()
    kg.eq(g[6], "250", "a's larger share, pending: %r" % g)
    wait = (int(g[7]) - int(g[3])) / 1000.0
    kg.check(wait > 1.0, "a's growth usable %.3f s after its first usable "
             "time; b's lease counts 1.2 s" % wait)
    kg.wait_for(lambda: reg("a:1")[4] == 250, 3.0, "a's share to grow to "
                "250", interval=0.05)
    # a lapses (valid 30 ms) for less than any window: Redis counted
    # its share all along, so it registers afresh but may use it at once.
    reg("a:1", valid=30)
    time.sleep(0.06)
    b.call(1)
    ok, v, d, fresh, pm = reg("a:1")
    kg.eq((ok, fresh, pm), (1, 1, 250), "a's registration after a short "
          "lapse")
    kg.check(d <= 30, "a usable in %d ms after a lapse shorter than every "
             "window" % d)
    # Longer than the 250 ms window: a waits until what was granted in
    # that window meanwhile stops counting there.
    reg("a:1", valid=30)
    time.sleep(0.3)
    b.call(1)
    ok, v, d, fresh, pm = reg("a:1")
    kg.eq((ok, fresh), (1, 1), "a's registration after a lapse")
    kg.check(250 <= d <= 250 + 25 + 8 + 20, "a usable again in %d ms, "
             "once b's last lease stops counting in the 250 ms window" % d)


@R.cleaned
def test_standing_pool():
    """The shares Redis counts never add up to more than the whole limit
    (the shares alone must not admit more than it), however the nodes
    come: eleven registering at once (each answered before any renews),
    and a node restarting every 40 ms (each run a field of its own, the
    lapsed ones still counted).  Once did: 1006 per mille, and 200 more
    per restart.  Then they renew: the first ones shrink to their part of
    the pool (400 / 11), and every node has a share."""
    R.need_redis()
    srv = R.Server()
    sim = Sim(srv, 71, (250, 1200, 0), 25)

    def reg(field, valid=5000):
        return sim.redis.call("EVAL", sim.reg, "2", sim.nodes, sim.span,
                              field, "200", str(valid), "250", "1200", "0",
                              "400", "0")

    def counted():
        total = 0
        flat = sim.redis.call("HGETALL", sim.nodes)
        now = sim.redis.call("TIME")
        now = int(now[0]) * 1000 + int(now[1]) // 1000
        for i in range(0, len(flat), 2):
            p, _, x, _, q, y, g, _ = [int(v) for v in flat[i + 1].split()]
            c = max(p, g) if x + 1200 > now else 0
            if y + 1200 > now:
                c = max(c, q)
            total += c
        return total

    shares = [reg("n%d:1" % i)[4] for i in range(11)]
    print("# eleven at once: %r, %d in all" % (shares, sum(shares)))
    kg.check(sum(shares) <= 1000, "shares answered add up to %d" %
             sum(shares))
    kg.check(counted() <= 1000, "shares counted add up to %d" % counted())
    # They renew, each reporting the share it took.
    for r in range(3):
        shares = [reg("n%d:1" % i)[4] for i in range(11)]
        kg.check(counted() <= 1000, "renewal %d: %d counted" %
                 (r, counted()))
        shares = [sim.redis.call(
            "EVAL", sim.reg, "2", sim.nodes, sim.span, "n%d:1" % i, "200",
            "5000", "250", "1200", "0", "400", str(shares[i]))[4]
            for i in range(11)]
    print("# after three renewals: %r" % shares)
    kg.check(all(0 < x <= 36 for x in shares), "shares after the "
             "renewals: %r" % shares)
    sim.nodes += ":restarts"
    runs = []
    for i in range(12):
        runs.append(reg("r:%d" % i, valid=30)[4])
        time.sleep(0.04)
        kg.check(counted() <= 1000, "a node restarting: %d counted after "
                 "run %d" % (counted(), i))
    print("# a node restarting every 40 ms: shares %r" % runs)


TESTS = [
    test_standing_pool,
    test_standing_registration,
    test_standing_allowance,
    test_single_limit_set,
    test_ttl_covers_every_lease,
    test_limit_used,
    test_two_limit_sets,
    test_stalled_node,
]


if __name__ == "__main__":
    if len(sys.argv) > 1:
        TESTS = [t for t in TESTS if t.__name__ in sys.argv[1:]]
    kg.run(TESTS)
