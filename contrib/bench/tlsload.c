/*
 * tlsload: a TLS load client for contrib/bench/run.sh, the same for every
 * system measured.
 *
 *   tlsload -p PORT [-h 127.0.0.1] [-u /bench] [-c 64] [-d 10]
 *       [-m full|resume|hold] [-n 10000]
 *
 * full    each of -c connection slots, for -d seconds: connect, a full TLS
 *         handshake (no session offered), one "GET PATH" with
 *         "Connection: close", the whole response, close_notify, close;
 *         then again.
 * resume  the same, but each slot offers the session (ticket) it was last
 *         given, so that every handshake but a slot's first is resumed.
 * hold    open -n connections, at most -c handshakes at a time, send
 *         nothing, print "held N" once all are up, keep them open for -d
 *         seconds, then report how many the server still had open.
 *
 * wrk cannot do full or resume: it keeps one SSL per connection and
 * SSL_clear()s it between connections, which keeps the last session and
 * offers it again whenever the previous connection ended with a
 * close_notify; whether one is resumed is up to chance.
 *
 * Every handshake is checked against the mode: in full mode
 * SSL_session_reused() must be 0 (no session is ever offered); in resume
 * mode a handshake that offered a session and was not resumed is counted as
 * missed.  Output: one line of key=value fields starting "tlsload ", read
 * by run.sh (parse_wrk).  Exit 0 unless the arguments or the set-up are
 * wrong; failed connections are counted, not fatal.
 */

#define _GNU_SOURCE		/* memmem */

#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define HANG_US		30000000	/* a connection's time limit */

enum mode { M_FULL, M_RESUME, M_HOLD };
enum state { S_FREE, S_CONNECT, S_HANDSHAKE, S_WRITE, S_READ, S_HELD };

struct slot {
	int		 fd;
	enum state	 st;
	SSL		*ssl;
	SSL_SESSION	*sess;		/* resume: the last ticket received */
	int		 offered;	/* a session was offered */
	uint64_t	 t0;		/* connect(2), microseconds */
	size_t		 woff;		/* request bytes written */
	char		 head[2048];	/* the response head, as read */
	size_t		 hlen;
	long long	 need;		/* bytes of head + body; -1: to EOF */
	long long	 got;		/* response bytes read */
	int		 status;
	int		 chunked;	/* Transfer-Encoding: chunked */
	long long	 hend;		/* bytes of the head */
	char		 tail[5];	/* the last bytes read, for chunked */
};

static struct {
	enum mode	 mode;
	struct sockaddr_in sa;
	const char	*path;
	int		 conns;
	int		 secs;
	int		 total;		/* hold: connections to open */
	int		 ep;
	SSL_CTX		*ctx;
	char		 req[512];
	size_t		 reqlen;
	struct slot	*slots;
	int		 nslots;
	int		 busy;		/* slots between connect and done */
	uint64_t	 last_sweep;	/* poll_once()'s time-limit sweep */
	/* Counts. */
	long long	 handshakes, resumed, offered, missed, reused_full;
	long long	 exchanges, non2xx, errors;
	uint32_t	*lat;		/* microseconds per exchange */
	size_t		 nlat, lat_cap;
	char		 proto[32], cipher[64], group[32], cert[32];
	int		 seen;		/* the above are filled */
} g;

static int slot_index = -1;	/* SSL ex_data index of the slot */
static char sink[4096];		/* hold: whatever the server sends */

/* Monotonic time in microseconds. */
static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Print a message and exit 2: for set-up errors only. */
static void
die(const char *msg)
{
	fprintf(stderr, "tlsload: %s\n", msg);
	exit(2);
}

/* Keep the newest session the server gives a slot (TLS 1.3: tickets). */
static int
new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct slot *s = SSL_get_ex_data(ssl, slot_index);

	if (s == NULL || g.mode != M_RESUME)
		return 0;
	if (s->sess != NULL)
		SSL_SESSION_free(s->sess);
	s->sess = sess;
	return 1;		/* the reference is ours now */
}

/* Record the time of one exchange. */
static void
lat_add(uint64_t us)
{
	uint32_t *n;

	if (g.nlat == g.lat_cap) {
		g.lat_cap = g.lat_cap ? 2 * g.lat_cap : 65536;
		if ((n = realloc(g.lat, g.lat_cap * sizeof(*n))) == NULL)
			die("out of memory");
		g.lat = n;
	}
	g.lat[g.nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

/* Watch a slot's socket for EV (EPOLLIN or EPOLLOUT). */
static void
watch(struct slot *s, uint32_t ev, int op)
{
	struct epoll_event e;

	memset(&e, 0, sizeof(e));
	e.events = ev;
	e.data.ptr = s;
	if (epoll_ctl(g.ep, op, s->fd, &e) == -1)
		die("epoll_ctl failed");
}

/* Close a slot's connection (close_notify first, so that its session
 * stays resumable: OpenSSL marks a session freed without one as not
 * resumable) and free it for the next. */
static void
slot_close(struct slot *s)
{
	if (s->st != S_FREE && s->st != S_HELD)
		g.busy--;
	if (s->ssl != NULL) {
		if (SSL_is_init_finished(s->ssl))
			(void)SSL_shutdown(s->ssl);
		SSL_free(s->ssl);
		s->ssl = NULL;
	}
	if (s->fd != -1)
		close(s->fd);
	s->fd = -1;
	s->st = S_FREE;
	ERR_clear_error();
}

/* A failed connection: counted, closed. */
static void
slot_fail(struct slot *s)
{
	g.errors++;
	slot_close(s);
}

/* Start a slot's next connection: a non-blocking connect(2). */
static void
slot_start(struct slot *s)
{
	int one = 1;

	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd == -1)
		die("socket failed (RLIMIT_NOFILE too low?)");
	(void)setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	s->t0 = now_us();
	s->st = S_CONNECT;
	s->woff = s->hlen = 0;
	s->got = 0;
	s->need = -1;
	s->status = 0;
	s->chunked = 0;
	memset(s->tail, 0, sizeof(s->tail));
	if (connect(s->fd, (struct sockaddr *)&g.sa, sizeof(g.sa)) == -1 &&
	    errno != EINPROGRESS) {
		close(s->fd);
		s->fd = -1;
		s->st = S_FREE;
		g.errors++;
		return;
	}
	g.busy++;
	watch(s, EPOLLOUT, EPOLL_CTL_ADD);
}

/* What the first handshake showed: protocol, cipher, group, key. */
static void
note_params(SSL *ssl)
{
	X509 *x;
	EVP_PKEY *k;
	const char *gn;

	g.seen = 1;
	snprintf(g.proto, sizeof(g.proto), "%s", SSL_get_version(ssl));
	snprintf(g.cipher, sizeof(g.cipher), "%s", SSL_get_cipher_name(ssl));
	gn = OBJ_nid2sn(SSL_get_negotiated_group(ssl) & 0xffff);
	snprintf(g.group, sizeof(g.group), "%s", gn ? gn : "-");
	snprintf(g.cert, sizeof(g.cert), "-");
	if ((x = SSL_get0_peer_certificate(ssl)) != NULL &&
	    (k = X509_get0_pubkey(x)) != NULL)
		snprintf(g.cert, sizeof(g.cert), "%s-%d",
		    EVP_PKEY_get0_type_name(k), EVP_PKEY_get_bits(k));
}

/* A handshake completed: count it and check it against the mode. */
static void
handshake_done(struct slot *s)
{
	int reused = SSL_session_reused(s->ssl);

	g.handshakes++;
	if (reused)
		g.resumed++;
	if (s->offered) {
		g.offered++;
		if (!reused)
			g.missed++;
	}
	if (g.mode == M_FULL && reused)
		g.reused_full++;
	if (!g.seen && !reused)
		note_params(s->ssl);
}

/* One SSL call's outcome: 1 done, 0 wait (the socket is watched for what
 * OpenSSL wants), -1 failed. */
static int
ssl_wait(struct slot *s, int r)
{
	switch (SSL_get_error(s->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		watch(s, EPOLLIN, EPOLL_CTL_MOD);
		return 0;
	case SSL_ERROR_WANT_WRITE:
		watch(s, EPOLLOUT, EPOLL_CTL_MOD);
		return 0;
	default:
		return -1;
	}
}

/*
 * Parse the response head once it is complete: the status and how many
 * bytes the whole response has (head + Content-Length; 204 and 304 have
 * no body; chunked: up to the last chunk, see body_done(); without
 * either, up to EOF).
 */
static void
parse_head(struct slot *s, size_t hend)
{
	const char *p, *e;
	long long clen = -1;

	if (s->hlen >= 12 && memcmp(s->head, "HTTP/1.", 7) == 0)
		s->status = atoi(s->head + 9);
	for (p = s->head; p < s->head + hend; p = e + 2) {
		if ((e = memmem(p, s->head + hend - p, "\r\n", 2)) == NULL)
			break;
		if (e - p > 15 && strncasecmp(p, "content-length:", 15) == 0)
			clen = atoll(p + 15);
		if (e - p > 18 &&
		    strncasecmp(p, "transfer-encoding:", 18) == 0 &&
		    memmem(p, e - p, "chunked", 7) != NULL)
			s->chunked = 1;
	}
	if (s->status == 204 || s->status == 304)
		clen = 0;
	s->hend = (long long)hend;
	s->need = clen < 0 || s->chunked ? -1 : (long long)hend + clen;
}

/* A response is complete: count it, close, start the next connection. */
static void
exchange_done(struct slot *s)
{
	if (s->status >= 200 && s->status < 300)
		g.exchanges++;
	else
		g.non2xx++;
	lat_add(now_us() - s->t0);
	slot_close(s);
}

/* Keep the last 5 bytes of the response in s->tail; 1 if they end a
 * chunked body ("0" CRLF CRLF: the last chunk, no trailers) after its
 * head. */
static int
body_done(struct slot *s, const char *buf, size_t n)
{
	size_t keep = sizeof(s->tail);

	if (n >= keep) {
		memcpy(s->tail, buf + n - keep, keep);
	} else {
		memmove(s->tail, s->tail + n, keep - n);
		memcpy(s->tail + keep - n, buf, n);
	}
	return s->chunked && s->got - s->hend >= (long long)keep &&
	    memcmp(s->tail, "0\r\n\r\n", keep) == 0;
}

/* Read what the response has; 1 when it is complete, 0 wait, -1 error. */
static int
read_response(struct slot *s)
{
	char buf[4096], *h;
	int r;
	size_t n;

	for (;;) {
		if ((r = SSL_read(s->ssl, buf, sizeof(buf))) <= 0) {
			if (SSL_get_error(s->ssl, r) == SSL_ERROR_ZERO_RETURN ||
			    (SSL_get_error(s->ssl, r) == SSL_ERROR_SYSCALL &&
			    s->need == -1 && s->status))
				return s->status ? 1 : -1;
			return ssl_wait(s, r);
		}
		s->got += r;
		if (s->status == 0) {
			n = sizeof(s->head) - s->hlen;
			n = (size_t)r < n ? (size_t)r : n;
			memcpy(s->head + s->hlen, buf, n);
			s->hlen += n;
			if ((h = memmem(s->head, s->hlen, "\r\n\r\n", 4)) != NULL)
				parse_head(s, h + 4 - s->head);
			else if (s->hlen == sizeof(s->head))
				return -1;
		}
		if (body_done(s, buf, (size_t)r) && s->status)
			return 1;
		if (s->status && s->need >= 0 && s->got >= s->need)
			return 1;
	}
}

/* Drive a slot as far as it goes without waiting. */
static void
step(struct slot *s)
{
	int r, err;
	socklen_t len = sizeof(err);

	switch (s->st) {
	case S_CONNECT:
		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1 ||
		    err != 0) {
			slot_fail(s);
			return;
		}
		if ((s->ssl = SSL_new(g.ctx)) == NULL ||
		    SSL_set_fd(s->ssl, s->fd) != 1)
			die("SSL_new failed");
		SSL_set_ex_data(s->ssl, slot_index, s);
		s->offered = 0;
		if (g.mode == M_RESUME && s->sess != NULL) {
			SSL_set_session(s->ssl, s->sess);
			s->offered = 1;
		}
		s->st = S_HANDSHAKE;
		/* FALLTHROUGH */
	case S_HANDSHAKE:
		if ((r = SSL_connect(s->ssl)) != 1) {
			if (ssl_wait(s, r) == -1)
				slot_fail(s);
			return;
		}
		handshake_done(s);
		if (g.mode == M_HOLD) {
			s->st = S_HELD;
			g.busy--;
			watch(s, EPOLLIN, EPOLL_CTL_MOD);
			return;
		}
		s->st = S_WRITE;
		/* FALLTHROUGH */
	case S_WRITE:
		while (s->woff < g.reqlen) {
			r = SSL_write(s->ssl, g.req + s->woff, g.reqlen - s->woff);
			if (r <= 0) {
				if (ssl_wait(s, r) == -1)
					slot_fail(s);
				return;
			}
			s->woff += r;
		}
		s->st = S_READ;
		/* FALLTHROUGH */
	case S_READ:
		if ((r = read_response(s)) == 1)
			exchange_done(s);
		else if (r == -1)
			slot_fail(s);
		return;
	case S_HELD:
		/* Tickets and alerts; the end of the connection. */
		if ((r = SSL_read(s->ssl, sink, sizeof(sink))) <= 0 &&
		    ssl_wait(s, r) == -1)
			slot_close(s);
		return;
	case S_FREE:
		return;
	}
}

/* Wait for events and step the slots they are for, 100 ms at most; once a
 * second, fail the connections that are not through their exchange (or,
 * in hold mode, their handshake) after HANG_US: a server that stops
 * answering must not stop the run. */
static void
poll_once(void)
{
	struct epoll_event ev[256];
	struct slot *s;
	uint64_t t;
	int i, n;

	n = epoll_wait(g.ep, ev, 256, 100);
	for (i = 0; i < n; i++)
		step(ev[i].data.ptr);
	t = now_us();
	if (t - g.last_sweep < 1000000)
		return;
	g.last_sweep = t;
	for (i = 0; i < g.nslots; i++) {
		s = &g.slots[i];
		if (s->st != S_FREE && s->st != S_HELD && t - s->t0 > HANG_US)
			slot_fail(s);
	}
}

/* The p-th percentile (0..100) of the exchange times, microseconds. */
static uint32_t
percentile(double p)
{
	size_t i;

	if (g.nlat == 0)
		return 0;
	i = (size_t)(p / 100.0 * (double)(g.nlat - 1) + 0.5);
	return g.lat[i];
}

/* Compare two uint32_t for qsort. */
static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* full and resume: keep every slot busy for the duration, then report. */
static void
run_load(void)
{
	uint64_t start, end;
	double secs;
	int i;

	start = now_us();
	end = start + (uint64_t)g.secs * 1000000;
	while (now_us() < end) {
		for (i = 0; i < g.nslots; i++)
			if (g.slots[i].st == S_FREE)
				slot_start(&g.slots[i]);
		poll_once();
	}
	secs = (double)(now_us() - start) / 1e6;
	qsort(g.lat, g.nlat, sizeof(*g.lat), cmp_u32);
	printf("tlsload mode=%s conns=%d secs=%.3f handshakes=%lld "
	    "resumed=%lld offered=%lld missed=%lld reused_in_full=%lld "
	    "exchanges=%lld non2xx=%lld errors=%lld rps=%.1f hps=%.1f "
	    "resumed_share=%.4f p50_us=%u p99_us=%u proto=%s cipher=%s "
	    "group=%s cert=%s\n", g.mode == M_FULL ? "full" : "resume",
	    g.conns, secs, g.handshakes, g.resumed, g.offered, g.missed,
	    g.reused_full, g.exchanges, g.non2xx, g.errors,
	    (double)g.exchanges / secs, (double)g.handshakes / secs,
	    g.handshakes ? (double)g.resumed / (double)g.handshakes : 0.0,
	    percentile(50), percentile(99), g.seen ? g.proto : "-",
	    g.seen ? g.cipher : "-", g.seen ? g.group : "-",
	    g.seen ? g.cert : "-");
}

/* Slots in state S_HELD. */
static int
held(void)
{
	int i, n = 0;

	for (i = 0; i < g.nslots; i++)
		n += g.slots[i].st == S_HELD;
	return n;
}

/*
 * hold: open g.total connections, never more than g.conns handshakes in
 * flight; a failed one is not retried (it is reported).  Once every
 * connection is up or failed, print "held N" (run.sh measures the server
 * then), keep them for g.secs seconds, and report how many are still
 * open: the server must not have closed any while it was measured.
 */
static void
run_hold(void)
{
	uint64_t start, up, end;
	int next = 0, up_n;

	start = now_us();
	for (;;) {
		while (g.busy < g.conns && next < g.total)
			slot_start(&g.slots[next++]);
		if (g.busy == 0 && next == g.total)
			break;
		poll_once();
	}
	up = now_us();
	up_n = held();
	printf("held %d\n", up_n);
	fflush(stdout);
	end = up + (uint64_t)g.secs * 1000000;
	while (now_us() < end)
		poll_once();
	printf("tlsload mode=hold target=%d handshakes=%lld held=%d "
	    "errors=%lld connect_secs=%.3f alive=%d proto=%s group=%s "
	    "cert=%s\n", g.total, g.handshakes, up_n, g.errors,
	    (double)(up - start) / 1e6, held(), g.seen ? g.proto : "-",
	    g.seen ? g.group : "-", g.seen ? g.cert : "-");
}

/* The client context: no verification (run.sh checks the certificate
 * with curl), sessions kept by new_session() only. */
static void
make_ctx(void)
{
	if ((g.ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		die("SSL_CTX_new failed");
	SSL_CTX_set_verify(g.ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_mode(g.ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_cache_mode(g.ctx, SSL_SESS_CACHE_CLIENT |
	    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(g.ctx, new_session);
	slot_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* Raise the soft limit on descriptors to the hard one. */
static void
raise_nofile(int need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	rl.rlim_cur = rl.rlim_max;
	(void)setrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur != RLIM_INFINITY && (long long)rl.rlim_cur < need + 16)
		fprintf(stderr, "tlsload: RLIMIT_NOFILE %llu < %d: raise "
		    "ulimit -n\n", (unsigned long long)rl.rlim_cur, need + 16);
}

/* A whole number of at least 1 from an option, or exit. */
static int
number(const char *arg)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || *end != '\0' || v < 1 || v > INT_MAX)
		die("options take whole numbers of at least 1");
	return (int)v;
}

int
main(int argc, char **argv)
{
	const char *host = "127.0.0.1";
	int c, i, port = 0;

	g.path = "/bench";
	g.conns = 64;
	g.secs = 10;
	g.total = 10000;
	g.mode = M_FULL;
	while ((c = getopt(argc, argv, "h:p:u:c:d:m:n:")) != -1) {
		switch (c) {
		case 'h': host = optarg; break;
		case 'p': port = number(optarg); break;
		case 'u': g.path = optarg; break;
		case 'c': g.conns = number(optarg); break;
		case 'd': g.secs = number(optarg); break;
		case 'n': g.total = number(optarg); break;
		case 'm':
			if (strcmp(optarg, "full") == 0)
				g.mode = M_FULL;
			else if (strcmp(optarg, "resume") == 0)
				g.mode = M_RESUME;
			else if (strcmp(optarg, "hold") == 0)
				g.mode = M_HOLD;
			else
				die("-m takes full, resume or hold");
			break;
		default:
			die("usage: tlsload -p PORT [-h ADDR] [-u PATH] "
			    "[-c CONNS] [-d SECS] [-m full|resume|hold] [-n N]");
		}
	}
	if (port < 1 || port > 65535)
		die("-p PORT is required");
	g.sa.sin_family = AF_INET;
	g.sa.sin_port = htons(port);
	if (inet_pton(AF_INET, host, &g.sa.sin_addr) != 1)
		die("-h takes an IPv4 address");
	g.reqlen = (size_t)snprintf(g.req, sizeof(g.req), "GET %s HTTP/1.1\r\n"
	    "Host: %s\r\nConnection: close\r\n\r\n", g.path, host);
	if (g.reqlen >= sizeof(g.req))
		die("-u PATH too long");
	signal(SIGPIPE, SIG_IGN);
	g.nslots = g.mode == M_HOLD ? g.total : g.conns;
	raise_nofile(g.nslots);
	if ((g.slots = calloc(g.nslots, sizeof(*g.slots))) == NULL)
		die("out of memory");
	for (i = 0; i < g.nslots; i++)
		g.slots[i].fd = -1;
	if ((g.ep = epoll_create1(EPOLL_CLOEXEC)) == -1)
		die("epoll_create1 failed");
	make_ctx();
	if (g.mode == M_HOLD)
		run_hold();
	else
		run_load();
	return 0;
}
