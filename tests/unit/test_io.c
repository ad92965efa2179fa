/*
 * Unit tests for io.c: struct io driven on a real event loop over
 * socketpair(2)s, plain and TLS.  Plain: reads (bytes, EOF, EAGAIN),
 * flushes that wait for the socket and their write timeout, read pausing,
 * shutdown.  TLS: handshakes through the owner's callbacks only, 1 MiB
 * each way (and an upload) through small socket buffers, a client that
 * does not read, a server flight larger than the socket buffers, decrypted
 * bytes OpenSSL holds (SSL_pending) delivered without new socket data,
 * close_notify and bare closes, the write timeout while a read waits for
 * room, EOF or a failure met in the read that returned the last bytes,
 * the first of two failure reasons kept, a plain-text peer, resumption
 * and a verification failure.
 *
 * The loop runs one round at a time (EVLOOP_ONCE | EVLOOP_NONBLOCK, or
 * EVLOOP_ONCE alone where a timer must fire) a bounded number of times;
 * alarm() stops a test that hangs.
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "config.h"
#include "io.h"
#include "shm.h"
#include "tls.h"
#include "tlstest.h"

#define MIB		(1024 * 1024)
#define LOOP_MAX	200000	/* loop rounds a transfer may take */
#define IDLE_ROUNDS	50	/* loop rounds that must change nothing */
#define OUT_HIGH	(64 * 1024)	/* a producer's output high water */

/* One end: a struct io and what its owner saw and sent. */
struct end {
	struct io	 io;
	int		 nread, nwrite, ntimeout;	/* callbacks */
	int		 stray;		/* on_read runs while not reading */
	int		 eof, failed, err;	/* err: its errno */
	size_t		 got;		/* bytes received */
	size_t		 pause_at;	/* pause here (0: never) */
	size_t		 sent, total;	/* bytes queued, to send */
	unsigned int	 chunk;		/* index into chunk sizes */
	EVP_MD_CTX	*rx, *tx;	/* hashes of received, sent bytes */
};

/* Everything made once for all tests. */
static struct {
	char		*dir;
	X509		*ca, *ca2, *up;
	EVP_PKEY	*ca_key, *ca2_key, *k;
	char		*ca_pem, *ca2_pem, *up_pem, *k_pem, *big_pem;
	struct config	*sv;		/* a TLS listener's contexts */
	struct config	*big;		/* one with a 16 KiB chain */
	struct config	*cl;		/* upstreams: CA, other CA */
	SSL_CTX		*any, *v12;	/* plain OpenSSL clients */
	struct shm_tickets tickets;
} t;

/*
 * Write the certificate up followed by 16 unrelated RSA certificates as
 * one chain file: a server's first flight larger than small socket
 * buffers.
 */
static char *
big_chain(void)
{
	EVP_PKEY	*k = tlst_key("RSA");
	X509		*x;
	FILE		*f;
	char		*path;
	int		 i;

	assert_true(asprintf(&path, "%s/big.pem", t.dir) > 0);
	assert_non_null(f = fopen(path, "w"));
	assert_int_equal(PEM_write_X509(f, t.up), 1);
	for (i = 0; i < 16; i++) {
		x = tlst_cert(k, "padding", NULL, -1, 30, NULL, NULL);
		assert_int_equal(PEM_write_X509(f, x), 1);
		X509_free(x);
	}
	assert_int_equal(fclose(f), 0);
	EVP_PKEY_free(k);
	return (path);
}

/* The configuration printed from fmt (tlstest.c). */
#define conf(...)	tlst_conf("test.conf", __VA_ARGS__)

/* Make the CAs, keys, certificates and contexts. */
static int
setup(void **state)
{

	(void)state;
	t.dir = tlst_mkdir();
	t.ca_key = tlst_key("EC");
	t.ca = tlst_cert(t.ca_key, "Test CA", NULL, -1, 30, NULL, NULL);
	t.ca2_key = tlst_key("EC");
	t.ca2 = tlst_cert(t.ca2_key, "Other CA", NULL, -1, 30, NULL, NULL);
	t.k = tlst_key("EC");
	t.up = tlst_cert(t.k, "up", "up.example.com,127.0.0.1", -1, 30, t.ca,
	    t.ca_key);
	t.ca_pem = tlst_write_cert(t.dir, "ca.pem", t.ca);
	t.ca2_pem = tlst_write_cert(t.dir, "ca2.pem", t.ca2);
	t.up_pem = tlst_write_cert(t.dir, "up.pem", t.up);
	t.k_pem = tlst_write_key(t.dir, "k.key", t.k);
	tls_tickets_rotate(&t.tickets, 1000);
	tls_tickets_attach(&t.tickets);
	t.big_pem = big_chain();
	t.sv = conf("listen 127.0.0.1:8443 tls\ntls_certificate %s %s\n",
	    t.up_pem, t.k_pem);
	t.big = conf("listen 127.0.0.1:8443 tls\ntls_certificate %s %s\n",
	    t.big_pem, t.k_pem);
	t.cl = conf("upstream good https://127.0.0.1:8443 ca=%s\n"
	    "upstream other https://127.0.0.1:8443 ca=%s\n", t.ca_pem,
	    t.ca2_pem);
	assert_non_null(t.any = SSL_CTX_new(TLS_client_method()));
	assert_non_null(t.v12 = SSL_CTX_new(TLS_client_method()));
	assert_int_equal(SSL_CTX_set_max_proto_version(t.v12,
	    TLS1_2_VERSION), 1);
	return (0);
}

/* Free everything setup() made. */
static int
teardown(void **state)
{
	(void)state;
	SSL_CTX_free(t.any);
	SSL_CTX_free(t.v12);
	config_free(t.sv);
	config_free(t.big);
	free(t.big_pem);
	config_free(t.cl);
	X509_free(t.ca);
	X509_free(t.ca2);
	X509_free(t.up);
	EVP_PKEY_free(t.ca_key);
	EVP_PKEY_free(t.ca2_key);
	EVP_PKEY_free(t.k);
	free(t.ca_pem);
	free(t.ca2_pem);
	free(t.up_pem);
	free(t.k_pem);
	tls_tickets_attach(NULL);
	tlst_rmdir(t.dir);
	return (0);
}

/* A connected non-blocking socket pair, with small buffers if asked. */
static void
pair(int fd[2], int small)
{
	int	 i, sz = 4096;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fd), 0);
	for (i = 0; i < 2; i++) {
		assert_int_equal(fcntl(fd[i], F_SETFL, O_NONBLOCK), 0);
		if (!small)
			continue;
		assert_int_equal(setsockopt(fd[i], SOL_SOCKET, SO_SNDBUF, &sz,
		    sizeof(sz)), 0);
		assert_int_equal(setsockopt(fd[i], SOL_SOCKET, SO_RCVBUF, &sz,
		    sizeof(sz)), 0);
	}
}

/* Byte i of the stream an end sends (seed tells the two ends apart). */
static unsigned char
stream_byte(size_t i, unsigned int seed)
{
	uint32_t	 x = (uint32_t)i * 2654435761u + seed;

	x ^= x >> 15;
	x *= 2246822519u;
	x ^= x >> 13;
	return ((unsigned char)x);
}

/*
 * Queue more of the end's stream (chunks of varied sizes, so that TLS
 * writes both copy small chains and write large ones in place) up to the
 * high water mark, and flush; again while everything went out.
 */
static void
fill(struct end *e)
{
	static const size_t	 sizes[] = { 1, 100, 3000, 16384, 20000, 777,
				    40000, 5 };
#define NSIZES	(sizeof(sizes) / sizeof(sizes[0]))
	unsigned char		 buf[40000];
	size_t			 n, i;
	int			 r;

	for (;;) {
		while (e->sent < e->total &&
		    evbuffer_get_length(e->io.io_out) < OUT_HIGH) {
			n = sizes[e->chunk++ % NSIZES];
			if (n > e->total - e->sent)
				n = e->total - e->sent;
			for (i = 0; i < n; i++)
				buf[i] = stream_byte(e->sent + i,
				    (unsigned int)e->io.io_fd);
			assert_int_equal(evbuffer_add(e->io.io_out, buf, n), 0);
			assert_int_equal(EVP_DigestUpdate(e->tx, buf, n), 1);
			e->sent += n;
		}
		if ((r = io_flush(&e->io)) == -1) {
			e->failed = 1;
			e->err = errno;
		}
		if (r != 1 || e->sent == e->total)
			return;
	}
}

/* Hash and drain what the end received. */
static void
consume(struct end *e)
{
	struct evbuffer_iovec	 v[8];
	int			 i, n;

	while (evbuffer_get_length(e->io.io_in) > 0) {
		n = evbuffer_peek(e->io.io_in, -1, NULL, v, 8);
		if (n > 8)
			n = 8;
		for (i = 0; i < n; i++) {
			assert_int_equal(EVP_DigestUpdate(e->rx, v[i].iov_base,
			    v[i].iov_len), 1);
			e->got += v[i].iov_len;
			evbuffer_drain(e->io.io_in, v[i].iov_len);
		}
	}
}

/* The owner's on_read: read once, keep the bytes, flush. */
static void
on_read(void *arg)
{
	struct end	*e = arg;
	ssize_t		 n;

	e->nread++;
	if (!(e->io.io_flags & IO_READING))
		e->stray++;
	n = io_read(&e->io);
	if (n > 0)
		consume(e);
	else if (n == 0)
		e->eof = 1;
	else if (errno != EAGAIN) {
		e->failed = 1;
		e->err = errno;
	}
	if (e->pause_at > 0 && e->got >= e->pause_at)
		io_reading(&e->io, 0);
	if (n != 0 && !e->failed)
		fill(e);
}

/* The owner's on_write: note a timeout, else write on. */
static void
on_write(void *arg, int timedout)
{
	struct end	*e = arg;

	e->nwrite++;
	if (timedout) {
		e->ntimeout++;
		return;
	}
	fill(e);
}

static const struct io_ops ops = { on_read, on_write };

/* Set up end e on fd with ssl (NULL: plain), reading, in base. */
static void
end_init(struct end *e, struct event_base *base, int fd, SSL *ssl,
    const struct timeval *tv)
{
	memset(e, 0, sizeof(*e));
	if (ssl != NULL)
		assert_int_equal(SSL_set_fd(ssl, fd), 1);
	assert_int_equal(io_init(&e->io, base, fd, ssl, &ops, e, tv), 0);
	assert_non_null(e->rx = EVP_MD_CTX_new());
	assert_non_null(e->tx = EVP_MD_CTX_new());
	assert_int_equal(EVP_DigestInit_ex(e->rx, EVP_sha256(), NULL), 1);
	assert_int_equal(EVP_DigestInit_ex(e->tx, EVP_sha256(), NULL), 1);
	io_reading(&e->io, 1);
}

/*
 * Free end e (closing its descriptor without TLS shutdown); the owner's
 * on_read must never have run while it did not read.
 */
static void
end_free(struct end *e)
{
	assert_int_equal(e->stray, 0);
	io_free(&e->io);
	EVP_MD_CTX_free(e->rx);
	EVP_MD_CTX_free(e->tx);
	e->rx = e->tx = NULL;
}

/* Did b receive exactly what a sent (count and SHA-256)? */
static void
assert_same_stream(struct end *a, struct end *b)
{
	unsigned char	 ha[EVP_MAX_MD_SIZE], hb[EVP_MAX_MD_SIZE];
	unsigned int	 la, lb;
	EVP_MD_CTX	*c;

	assert_int_equal(b->got, a->sent);
	assert_non_null(c = EVP_MD_CTX_new());
	assert_int_equal(EVP_MD_CTX_copy_ex(c, a->tx), 1);
	assert_int_equal(EVP_DigestFinal_ex(c, ha, &la), 1);
	assert_int_equal(EVP_MD_CTX_copy_ex(c, b->rx), 1);
	assert_int_equal(EVP_DigestFinal_ex(c, hb, &lb), 1);
	EVP_MD_CTX_free(c);
	assert_int_equal(la, lb);
	assert_memory_equal(ha, hb, la);
}

/* Is the condition of a transfer met? */
typedef int	 done_fn(struct end *, struct end *);

/* Run one round of the loop: the callbacks of what is ready now. */
static void
round1(struct event_base *base)
{
	assert_int_not_equal(event_base_loop(base, EVLOOP_ONCE |
	    EVLOOP_NONBLOCK), -1);
}

/* Run the loop without blocking until done(a, b), at most LOOP_MAX rounds. */
static void
run_until(struct event_base *base, done_fn *done, struct end *a,
    struct end *b)
{
	int	 i;

	for (i = 0; i < LOOP_MAX && !done(a, b); i++)
		round1(base);
	assert_true(done(a, b));
}

/* Run the loop IDLE_ROUNDS times without blocking. */
static void
run_idle(struct event_base *base)
{
	int	 i;

	for (i = 0; i < IDLE_ROUNDS; i++)
		round1(base);
}

/* Both ends sent everything and received everything of the other. */
static int
done_both(struct end *a, struct end *b)
{
	return (a->failed || b->failed || (a->sent == a->total &&
	    b->sent == b->total && a->got == b->total && b->got == a->total &&
	    !io_pending(&a->io) && !io_pending(&b->io)));
}

/* Either end failed. */
static int
done_failed(struct end *a, struct end *b)
{
	return (a->failed || b->failed);
}

/* b saw EOF or a failure. */
static int
done_eof(struct end *a, struct end *b)
{
	(void)a;
	return (b->eof || b->failed);
}

/* Plain reads: bytes, EAGAIN when empty, 0 at EOF; no callback needed. */
static void
test_plain_read(void **state)
{
	struct event_base	*base;
	struct end		 e;
	int			 fd[2];

	(void)state;
	assert_non_null(base = event_base_new());
	pair(fd, 0);
	end_init(&e, base, fd[0], NULL, NULL);
	errno = 0;
	assert_int_equal(io_read(&e.io), -1);
	assert_int_equal(errno, EAGAIN);
	assert_int_equal(write(fd[1], "hello", 5), 5);
	assert_int_equal(io_read(&e.io), 5);
	assert_int_equal(evbuffer_get_length(e.io.io_in), 5);
	assert_memory_equal(evbuffer_pullup(e.io.io_in, 5), "hello", 5);
	assert_null(io_tls_version(&e.io));
	assert_false(io_tls_resumed(&e.io));
	close(fd[1]);
	assert_int_equal(io_read(&e.io), 0);
	end_free(&e);
	event_base_free(base);
}

/*
 * Plain flush: everything at once when the socket takes it; else 0 with
 * the write event armed, and the owner's on_write when the peer drains,
 * until all arrived.
 */
static void
test_plain_flush(void **state)
{
	struct event_base	*base;
	struct end		 e;
	unsigned char		 buf[65536];
	size_t			 got = 0;
	ssize_t			 n;
	int			 fd[2], i;

	(void)state;
	assert_non_null(base = event_base_new());
	pair(fd, 1);
	end_init(&e, base, fd[0], NULL, NULL);
	assert_int_equal(evbuffer_add(e.io.io_out, "hi", 2), 0);
	assert_int_equal(io_flush(&e.io), 1);
	assert_false(io_pending(&e.io));
	assert_int_equal(read(fd[1], buf, sizeof(buf)), 2);
	e.total = MIB;
	fill(&e);
	assert_true(io_pending(&e.io));
	assert_true(e.io.io_flags & IO_OUTWAIT);
	assert_true(e.io.io_flags & IO_EV_WRITE);
	assert_true(event_pending(e.io.io_ev_write, EV_WRITE, NULL));
	assert_true(e.sent < e.total);
	run_idle(base);
	assert_int_equal(e.nwrite, 0);	/* the peer read nothing */
	for (i = 0; i < LOOP_MAX && got < e.total; i++) {
		while ((n = read(fd[1], buf, sizeof(buf))) > 0) {
			assert_int_equal(EVP_DigestUpdate(e.rx, buf, (size_t)n),
			    1);
			got += (size_t)n;
		}
		round1(base);
	}
	e.got = got;
	assert_true(e.nwrite > 0);
	assert_int_equal(e.ntimeout, 0);
	assert_false(io_pending(&e.io));
	assert_false(event_pending(e.io.io_ev_write, EV_WRITE, NULL));
	assert_same_stream(&e, &e);	/* e.rx: what the peer read */
	end_free(&e);
	close(fd[1]);
	event_base_free(base);
}

/* The guard timer fired. */
static void
on_guard(evutil_socket_t fd, short what, void *arg)
{
	*(int *)arg = 1;
}

/* Output that makes no progress: on_write(arg, 1) after the timeout. */
static void
test_plain_write_timeout(void **state)
{
	struct event_base	*base;
	struct end		 e;
	struct timeval		 tv = { 0, 50000 }, guard_tv = { 2, 0 };
	struct event		*guard;
	int			 fd[2], i, guarded = 0;

	(void)state;
	assert_non_null(base = event_base_new());
	pair(fd, 1);
	end_init(&e, base, fd[0], NULL, &tv);
	e.total = MIB;
	fill(&e);
	assert_true(io_pending(&e.io));
	/* A guard timer, so that a missing timeout fails instead of hanging. */
	assert_non_null(guard = evtimer_new(base, on_guard, &guarded));
	assert_int_equal(evtimer_add(guard, &guard_tv), 0);
	for (i = 0; i < 100 && e.ntimeout == 0 && !guarded; i++)
		assert_int_not_equal(event_base_loop(base, EVLOOP_ONCE), -1);
	assert_int_equal(e.ntimeout, 1);
	assert_int_equal(e.nwrite, 1);
	assert_false(guarded);
	event_free(guard);
	end_free(&e);
	close(fd[1]);
	event_base_free(base);
}

/* io_reading(0) stops the owner's on_read, io_reading(1) resumes it. */
static void
test_plain_reading(void **state)
{
	struct event_base	*base;
	struct end		 e;
	int			 fd[2];

	(void)state;
	assert_non_null(base = event_base_new());
	pair(fd, 0);
	end_init(&e, base, fd[0], NULL, NULL);
	io_reading(&e.io, 0);
	assert_int_equal(write(fd[1], "abc", 3), 3);
	run_idle(base);
	assert_int_equal(e.nread, 0);
	assert_int_equal(e.got, 0);
	io_reading(&e.io, 1);
	run_idle(base);
	assert_true(e.nread > 0);
	assert_int_equal(e.got, 3);
	/* Paused from inside the callback: no more calls for new bytes. */
	e.pause_at = 4;
	assert_int_equal(write(fd[1], "d", 1), 1);
	run_idle(base);
	assert_int_equal(e.got, 4);
	e.nread = 0;
	assert_int_equal(write(fd[1], "ef", 2), 2);
	run_idle(base);
	assert_int_equal(e.nread, 0);
	e.pause_at = 0;
	io_reading(&e.io, 1);
	run_idle(base);
	assert_int_equal(e.got, 6);
	end_free(&e);
	close(fd[1]);
	event_base_free(base);
}

/* io_shutdown: the peer reads EOF after the bytes sent before. */
static void
test_plain_shutdown(void **state)
{
	struct event_base	*base;
	struct end		 a, b;
	int			 fd[2];

	(void)state;
	assert_non_null(base = event_base_new());
	pair(fd, 0);
	end_init(&a, base, fd[0], NULL, NULL);
	end_init(&b, base, fd[1], NULL, NULL);
	a.total = 1000;
	fill(&a);
	io_shutdown(&a.io);
	run_until(base, done_eof, &a, &b);
	assert_false(b.failed);
	assert_same_stream(&a, &b);
	end_free(&a);
	end_free(&b);
	event_base_free(base);
}

/*
 * A TLS pair: a server end (an SSL of listener lc, t.sv if NULL) and a
 * client end with ssl.
 */
static void
tls_pair2(struct event_base *base, struct end *sv, struct end *cl, SSL *ssl,
    int small, struct config *lc)
{
	SSL	*s;
	int	 fd[2];

	assert_non_null(ssl);
	pair(fd, small);
	assert_non_null(s = tls_server_ssl((lc != NULL ? lc : t.sv)->c_tls));
	SSL_set_connect_state(ssl);
	end_init(sv, base, fd[0], s, NULL);
	end_init(cl, base, fd[1], ssl, NULL);
}

/* A TLS pair with the usual listener. */
static void
tls_pair(struct event_base *base, struct end *sv, struct end *cl, SSL *ssl,
    int small)
{
	tls_pair2(base, sv, cl, ssl, small, NULL);
}

/*
 * Exchange len bytes each way from the start (the client's first flush
 * starts the handshake), through the owner's callbacks only.
 */
static void
exchange(struct event_base *base, struct end *sv, struct end *cl,
    size_t len)
{
	sv->total = cl->total = len;
	fill(cl);
	run_until(base, done_both, sv, cl);
	assert_false(sv->failed);
	assert_false(cl->failed);
	assert_same_stream(sv, cl);
	assert_same_stream(cl, sv);
}

/* Handshakes (TLS 1.3 and 1.2) through io_read/io_flush callbacks. */
static void
test_tls_handshake(void **state)
{
	struct event_base	*base;
	struct end		 sv, cl;
	SSL_CTX			*ctx[] = { t.any, t.v12 };
	const char		*want[] = { "TLSv1.3", "TLSv1.2" };
	int			 i;

	(void)state;
	assert_non_null(base = event_base_new());
	for (i = 0; i < 2; i++) {
		tls_pair(base, &sv, &cl, SSL_new(ctx[i]), 0);
		assert_false(io_handshaken(&sv.io));
		assert_null(io_tls_version(&sv.io));
		exchange(base, &sv, &cl, 100);
		assert_true(sv.io.io_flags & IO_HANDSHAKEN);
		assert_true(cl.io.io_flags & IO_HANDSHAKEN);
		assert_string_equal(io_tls_version(&sv.io), want[i]);
		assert_string_equal(io_tls_version(&cl.io), want[i]);
		assert_false(io_tls_resumed(&sv.io));
		assert_null(sv.io.io_why);
		/* Waits for input made no writability callbacks. */
		assert_int_equal(sv.nwrite, 0);
		assert_int_equal(cl.nwrite, 0);
		end_free(&sv);
		end_free(&cl);
	}
	event_base_free(base);
}

/*
 * 1 MiB each way through 4 KiB socket buffers, TLS 1.3 and 1.2: writes
 * wait for the socket (on_write runs), and every byte arrives in order.
 */
static void
test_tls_bulk(void **state)
{
	struct event_base	*base;
	struct end		 sv, cl;
	SSL_CTX			*ctx[] = { t.any, t.v12 };
	int			 i;

	(void)state;
	assert_non_null(base = event_base_new());
	for (i = 0; i < 2; i++) {
		tls_pair(base, &sv, &cl, SSL_new(ctx[i]), 1);
		exchange(base, &sv, &cl, MIB);
		assert_true(sv.nwrite > 0);
		assert_true(cl.nwrite > 0);
		end_free(&sv);
		end_free(&cl);
	}
	event_base_free(base);
}

/*
 * An upload: the client sends 1 MiB through small buffers and the server
 * sends nothing (as an upstream reading a whole request body first), so
 * no input ever wakes the client's writes up: the write event must.
 */
static void
test_tls_upload(void **state)
{
	struct event_base	*base;
	struct end		 sv, cl;
	SSL_CTX			*ctx[] = { t.any, t.v12 };
	int			 i;

	(void)state;
	assert_non_null(base = event_base_new());
	for (i = 0; i < 2; i++) {
		tls_pair(base, &sv, &cl, SSL_new(ctx[i]), 1);
		sv.total = 0;
		cl.total = MIB;
		fill(&cl);
		run_until(base, done_both, &sv, &cl);
		assert_false(sv.failed);
		assert_false(cl.failed);
		assert_same_stream(&cl, &sv);
		end_free(&sv);
		end_free(&cl);
	}
	event_base_free(base);
}

/*
 * A client that does not read: the handshake's waits for input end in
 * its on_write, never in on_read.
 */
static void
test_tls_write_only(void **state)
{
	struct event_base	*base;
	struct end		 sv, cl;

	(void)state;
	assert_non_null(base = event_base_new());
	tls_pair(base, &sv, &cl, SSL_new(t.any), 0);
	io_reading(&cl.io, 0);
	sv.total = 0;
	cl.total = 1000;
	fill(&cl);
	run_until(base, done_both, &sv, &cl);
	assert_false(sv.failed);
	assert_false(cl.failed);
	assert_same_stream(&cl, &sv);
	assert_true(cl.nwrite > 0);
	assert_int_equal(cl.nread, 0);
	assert_true(io_handshaken(&cl.io));
	end_free(&sv);
	end_free(&cl);
	event_base_free(base);
}

/*
 * A server whose first flight (a 16 KiB chain) does not fit the socket
 * buffers: its handshake read waits for room (IO_RD_WANT_WR), and goes on
 * in its on_read when the client drains, though it has nothing to write.
 */
static void
test_tls_big_flight(void **state)
{
	struct event_base	*base;
	struct end		 sv, cl;
	SSL_CTX			*ctx[] = { t.any, t.v12 };
	int			 i;

	(void)state;
	assert_non_null(base = event_base_new());
	for (i = 0; i < 2; i++) {
		tls_pair2(base, &sv, &cl, SSL_new(ctx[i]), 1, t.big);
		sv.total = 0;
		cl.total = 100;
		fill(&cl);
		run_until(base, done_both, &sv, &cl);
		assert_false(sv.failed);
		assert_false(cl.failed);
		assert_same_stream(&cl, &sv);
		assert_int_equal(sv.nwrite, 0);
		end_free(&sv);
		end_free(&cl);
	}
	event_base_free(base);
}

/* The client's data records, written by hand after the handshake. */
static void
write_records(struct end *cl, int n, int len)
{
	unsigned char	 buf[16384];
	int		 i, j;

	assert_true(len <= (int)sizeof(buf));
	for (i = 0; i < n; i++) {
		for (j = 0; j < len; j++)
			buf[j] = stream_byte(cl->sent + j,
			    (unsigned int)cl->io.io_fd);
		assert_int_equal(SSL_write(cl->io.io_ssl, buf, len), len);
		assert_int_equal(EVP_DigestUpdate(cl->tx, buf, len), 1);
		cl->sent += len;
	}
}

/*
 * Three 6000-byte records at once: a read takes IO_READ_SIZE bytes, and
 * the 1616 bytes left of the third record are decrypted in OpenSSL, not
 * in the socket; they must still come, with no new socket data.  With
 * pause (the owner stops reading after the first read), they come when
 * it resumes (io_reading()), and not before.
 */
static void
pending(int pause)
{
	struct event_base	*base;
	struct end		 sv, cl;

	assert_non_null(base = event_base_new());
	tls_pair(base, &sv, &cl, SSL_new(t.any), 0);
	exchange(base, &sv, &cl, 10);
	run_idle(base);
	sv.got = cl.got = 0;
	sv.sent = cl.sent = sv.total = cl.total = 0;
	assert_int_equal(EVP_DigestInit_ex(sv.rx, EVP_sha256(), NULL), 1);
	assert_int_equal(EVP_DigestInit_ex(cl.tx, EVP_sha256(), NULL), 1);
	if (pause)
		sv.pause_at = 1;
	write_records(&cl, 3, 6000);
	run_idle(base);
	if (pause) {
		assert_int_equal(sv.got, IO_READ_SIZE);
		assert_true(SSL_pending(sv.io.io_ssl) > 0);
		sv.pause_at = 0;
		io_reading(&sv.io, 1);
		run_idle(base);
	}
	assert_false(sv.failed);
	assert_same_stream(&cl, &sv);
	end_free(&sv);
	end_free(&cl);
	event_base_free(base);
}

/* Decrypted bytes left in OpenSSL by a full read come on their own. */
static void
test_tls_pending(void **state)
{
	(void)state;
	pending(0);
}

/* ... and after a pause, when reading resumes. */
static void
test_tls_pending_resume(void **state)
{
	(void)state;
	pending(1);
}

/* A plain-text client on a TLS listener: a failure with a reason. */
static void
test_tls_plaintext_peer(void **state)
{
	struct event_base	*base;
	struct end		 sv, cl;
	const char		*req = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
	int			 fd[2];

	(void)state;
	assert_non_null(base = event_base_new());
	pair(fd, 0);
	end_init(&sv, base, fd[0], tls_server_ssl(t.sv->c_tls), NULL);
	end_init(&cl, base, fd[1], NULL, NULL);
	assert_int_equal(evbuffer_add(cl.io.io_out, req, strlen(req)), 0);
	assert_int_equal(io_flush(&cl.io), 1);
	run_until(base, done_failed, &cl, &sv);
	assert_true(sv.failed);
	assert_int_not_equal(sv.err, EAGAIN);
	assert_true(sv.io.io_flags & IO_FAILED);
	assert_non_null(sv.io.io_why);
	assert_false(io_handshaken(&sv.io));
	assert_int_equal(ERR_peek_error(), 0);	/* the queue is clear */
	end_free(&sv);
	end_free(&cl);
	event_base_free(base);
}

/*
 * The end of a TLS connection reads as EOF (0): after the client's
 * close_notify (io_shutdown() sends it), and after a bare close without
 * it.
 */
static void
test_tls_eof(void **state)
{
	struct event_base	*base;
	struct end		 sv, cl;
	int			 bare;

	(void)state;
	assert_non_null(base = event_base_new());
	for (bare = 0; bare < 2; bare++) {
		tls_pair(base, &sv, &cl, SSL_new(t.any), 0);
		exchange(base, &sv, &cl, 1000);
		run_idle(base);
		if (bare)
			end_free(&cl);	/* io_free(): no close_notify */
		else {
			io_shutdown(&cl.io);
			assert_true(SSL_get_shutdown(cl.io.io_ssl) &
			    SSL_SENT_SHUTDOWN);
		}
		run_until(base, done_eof, &cl, &sv);
		assert_false(sv.failed);
		assert_true(sv.eof);
		assert_false(sv.io.io_flags & IO_FAILED);
		end_free(&sv);
		if (!bare)
			end_free(&cl);
	}
	event_base_free(base);
}

/*
 * A TLS read that waits for room (the server's big first flight to a
 * client that reads nothing), and then output that waits too: the write
 * timeout must fire, else a peer that never reads (or floods key updates
 * while reading nothing) holds the connection for ever.  The write event
 * armed for the read's wait comes first, so it must carry the timeout.
 */
static void
test_tls_write_timeout(void **state)
{
	struct event_base	*base;
	struct end		 sv;
	struct timeval		 tv = { 0, 50000 }, guard_tv = { 2, 0 };
	struct event		*guard;
	SSL_CTX			*ctx[] = { t.any, t.v12 };
	SSL			*c;
	int			 fd[2], i, j, guarded;

	(void)state;
	assert_non_null(base = event_base_new());
	for (i = 0; i < 2; i++) {
		pair(fd, 1);
		end_init(&sv, base, fd[0], tls_server_ssl(t.big->c_tls), &tv);
		/* The client: its ClientHello, and never a read after it. */
		assert_non_null(c = SSL_new(ctx[i]));
		assert_int_equal(SSL_set_fd(c, fd[1]), 1);
		assert_int_equal(SSL_connect(c), -1);
		for (j = 0; j < LOOP_MAX &&
		    !(sv.io.io_flags & IO_RD_WANT_WR); j++)
			round1(base);
		assert_true(sv.io.io_flags & IO_RD_WANT_WR);
		assert_false(io_handshaken(&sv.io));
		assert_int_equal(evbuffer_add(sv.io.io_out, "response", 8), 0);
		assert_int_equal(io_flush(&sv.io), 0);
		assert_true(io_pending(&sv.io));
		guarded = 0;
		assert_non_null(guard = evtimer_new(base, on_guard, &guarded));
		assert_int_equal(evtimer_add(guard, &guard_tv), 0);
		for (j = 0; j < 100 && sv.ntimeout == 0 && !guarded; j++)
			assert_int_not_equal(event_base_loop(base, EVLOOP_ONCE),
			    -1);
		assert_true(sv.ntimeout > 0);
		assert_false(guarded);
		assert_false(sv.failed);
		event_free(guard);
		end_free(&sv);
		SSL_free(c);
		close(fd[1]);
	}
	event_base_free(base);
}

/*
 * The client's last bytes arrive together with its close_notify (bad: with
 * a record that fails to decrypt), and the client keeps its socket open:
 * the server's read that returns the bytes also meets the end, and the
 * server must see EOF (or the failure, not an EOF) in a following read
 * made at once, as no socket event will come for it.
 */
static void
data_then_end(int bad)
{
	struct event_base	*base;
	struct end		 sv, cl;
	unsigned char		 rec[5 + 32] = { 0x17, 0x03, 0x03, 0x00, 32 };

	assert_non_null(base = event_base_new());
	tls_pair(base, &sv, &cl, SSL_new(t.any), 0);
	exchange(base, &sv, &cl, 100);
	run_idle(base);
	write_records(&cl, 1, 1000);
	if (bad) {
		memset(rec + 5, 0xa5, sizeof(rec) - 5);
		assert_int_equal(write(cl.io.io_fd, rec, sizeof(rec)),
		    sizeof(rec));
	} else
		assert_int_equal(SSL_shutdown(cl.io.io_ssl), 0);
	run_idle(base);
	assert_same_stream(&cl, &sv);
	if (!bad) {
		assert_true(sv.eof);
		assert_false(sv.failed);
		assert_false(sv.io.io_flags & IO_FAILED);
	} else {
		assert_true(sv.failed);
		assert_int_equal(sv.err, EPIPE);
		assert_false(sv.eof);
		assert_true(sv.io.io_flags & IO_FAILED);
		assert_non_null(sv.io.io_why);
		assert_int_equal(ERR_peek_error(), 0);
	}
	end_free(&sv);
	end_free(&cl);
	event_base_free(base);
}

/* Bytes and close_notify in one read: EOF with no more socket data. */
static void
test_tls_data_then_eof(void **state)
{
	(void)state;
	data_then_end(0);
}

/* Bytes and a bad record in one read: the failure, not an EOF. */
static void
test_tls_data_then_failure(void **state)
{
	(void)state;
	data_then_end(1);
}

/*
 * Two failures in a row: the client closes with bytes of the server
 * unread, so the server's read fails (ECONNRESET: Linux resets the peer
 * of a unix socket closed with unread bytes), and then its write (EPIPE).  io_why keeps the first reason, the one that ended the
 * connection.
 */
static void
test_tls_first_reason(void **state)
{
	struct event_base	*base;
	struct end		 sv, cl;
	const char		*why;

	(void)state;
	assert_non_null(base = event_base_new());
	tls_pair(base, &sv, &cl, SSL_new(t.any), 0);
	exchange(base, &sv, &cl, 100);
	run_idle(base);
	assert_int_equal(evbuffer_add(sv.io.io_out, "unread", 6), 0);
	assert_int_equal(io_flush(&sv.io), 1);
	end_free(&cl);		/* closed with "unread" in its socket */
	run_until(base, done_failed, &cl, &sv);
	assert_true(sv.io.io_flags & IO_FAILED);
	assert_non_null(why = sv.io.io_why);
	assert_string_equal(why, strerror(ECONNRESET));
	assert_int_equal(evbuffer_add(sv.io.io_out, "more", 4), 0);
	assert_int_equal(io_flush(&sv.io), -1);
	assert_int_equal(errno, EPIPE);
	assert_ptr_equal(sv.io.io_why, why);
	assert_string_equal(sv.io.io_why, strerror(ECONNRESET));
	assert_int_equal(ERR_peek_error(), 0);
	end_free(&sv);
	event_base_free(base);
}

/*
 * An https upstream's client (tls_upstream_ssl) resumes its session with
 * the listener's ticket: io_tls_resumed() on both ends the second time.
 */
static void
test_tls_resumed(void **state)
{
	struct event_base	*base;
	struct end		 sv, cl;
	struct upstream		*u = &t.cl->c_upstreams[0];
	int			 i;

	(void)state;
	assert_non_null(base = event_base_new());
	for (i = 0; i < 2; i++) {
		tls_pair(base, &sv, &cl, tls_upstream_ssl(u, &u->u_servers[0]), 0);
		exchange(base, &sv, &cl, 100);
		assert_int_equal(io_tls_resumed(&sv.io), i == 1);
		assert_int_equal(io_tls_resumed(&cl.io), i == 1);
		assert_int_equal(SSL_get_verify_result(cl.io.io_ssl),
		    X509_V_OK);
		io_shutdown(&cl.io);
		run_until(base, done_eof, &cl, &sv);
		end_free(&sv);
		end_free(&cl);
	}
	event_base_free(base);
}

/* An upstream certificate from another CA: a failure that says so. */
static void
test_tls_verify_failure(void **state)
{
	struct event_base	*base;
	struct end		 sv, cl;

	(void)state;
	assert_non_null(base = event_base_new());
	tls_pair(base, &sv, &cl, tls_upstream_ssl(&t.cl->c_upstreams[1],
	    &t.cl->c_upstreams[1].u_servers[0]), 0);
	cl.total = 100;
	fill(&cl);
	run_until(base, done_failed, &sv, &cl);
	assert_true(cl.failed);
	assert_int_not_equal(cl.err, EAGAIN);
	assert_true(cl.io.io_flags & IO_FAILED);
	assert_false(io_handshaken(&cl.io));
	assert_non_null(cl.io.io_why);
	assert_non_null(strstr(cl.io.io_why, "certificate"));
	assert_int_equal(ERR_peek_error(), 0);
	end_free(&sv);
	end_free(&cl);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_read),
		cmocka_unit_test(test_plain_flush),
		cmocka_unit_test(test_plain_write_timeout),
		cmocka_unit_test(test_plain_reading),
		cmocka_unit_test(test_plain_shutdown),
		cmocka_unit_test(test_tls_handshake),
		cmocka_unit_test(test_tls_bulk),
		cmocka_unit_test(test_tls_upload),
		cmocka_unit_test(test_tls_write_only),
		cmocka_unit_test(test_tls_big_flight),
		cmocka_unit_test(test_tls_pending),
		cmocka_unit_test(test_tls_pending_resume),
		cmocka_unit_test(test_tls_plaintext_peer),
		cmocka_unit_test(test_tls_eof),
		cmocka_unit_test(test_tls_write_timeout),
		cmocka_unit_test(test_tls_data_then_eof),
		cmocka_unit_test(test_tls_data_then_failure),
		cmocka_unit_test(test_tls_first_reason),
		cmocka_unit_test(test_tls_resumed),
		cmocka_unit_test(test_tls_verify_failure),
	};

	signal(SIGPIPE, SIG_IGN);
	alarm(120);		/* a hang is a failure */
	return (cmocka_run_group_tests(tests, setup, teardown));
}
