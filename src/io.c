/*
 * One connection's byte I/O, plain or TLS; see io.h.
 *
 * Plain connections read with one readv() into reserved evbuffer space and
 * write with evbuffer_write() (one writev()), arming the write event only
 * when the socket would block: epoll_wait, readv, writev per keep-alive
 * request, as in nginx.  Not bufferevents: measured here, a bufferevent
 * costs an ioctl(FIONREAD) before each read and two epoll_ctl() per
 * response.
 *
 * TLS connections use the same events with SSL_read()/SSL_write() on the
 * non-blocking socket (OpenSSL reads and writes the descriptor itself).
 * OpenSSL may need the other direction than the one asked for: a read
 * during the handshake has a message to send (SSL_ERROR_WANT_WRITE), a
 * write may have to read first (SSL_ERROR_WANT_READ, during the handshake
 * or a TLS 1.3 key update).  Each such wait is a flag, IO_RD_WANT_WR or
 * IO_WR_WANT_RD, that keeps the other event armed; when it fires, the
 * owner's callback for the operation that waited runs, which repeats it.
 * So the owner only sees "readable" and "writable", whatever TLS does.
 *
 * Events are armed by io_events() from the flags, and only changed when
 * the wish changes, so a plain keep-alive request costs no epoll_ctl().
 *
 * TLS reads: the contexts read ahead (tls.c), so OpenSSL takes what the
 * socket holds with one read(2), not a header and then a body per record.
 * A read goes on with SSL_read() only while OpenSSL holds bytes it has not
 * returned yet (SSL_has_pending()): asking once more would cost a read(2)
 * that finds nothing, on every request.  Bytes OpenSSL still holds make no
 * event: if a read stops at IO_READ_SIZE bytes, or reading is paused,
 * with bytes held, the read event is made active by hand so that the next
 * loop round reads on.
 *
 * TLS writes: each SSL_write() makes one record and one write(2).  Output
 * made of small chains (a response head, a short body) is copied into one
 * buffer of up to IO_TLS_RECORD bytes first, so that a response goes out
 * as one record and one packet (nginx's ssl_buffer_size); a large chain is
 * written from where it is.  The copy buffer is the worker's, not the
 * connection's, so that an idle TLS connection holds no buffer at all
 * (SSL_MODE_RELEASE_BUFFERS frees OpenSSL's own); it is wiped after each
 * write, as responses may carry new secrets.  A write repeated after
 * WANT_WRITE passes at least the bytes it passed before, from the same
 * front of the output (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER lets the address
 * differ).
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "io.h"

#define IO_TLS_RECORD	16384	/* plaintext bytes of a full TLS record */

static unsigned char	 io_wbuf[IO_TLS_RECORD];	/* see above */

static void	 io_read_cb(evutil_socket_t, short, void *);
static void	 io_write_cb(evutil_socket_t, short, void *);

/* Set up io on fd; see io.h. */
int
io_init(struct io *io, struct event_base *base, int fd, SSL *ssl,
    const struct io_ops *ops, void *arg, const struct timeval *write_tv)
{
	memset(io, 0, sizeof(*io));
	io->io_fd = fd;
	io->io_ops = ops;
	io->io_arg = arg;
	io->io_write_tv = write_tv;
	io->io_ev_read = event_new(base, fd, EV_READ | EV_PERSIST, io_read_cb,
	    io);
	io->io_ev_write = event_new(base, fd, EV_WRITE | EV_PERSIST,
	    io_write_cb, io);
	io->io_in = evbuffer_new();
	io->io_out = evbuffer_new();
	if (io->io_ev_read == NULL || io->io_ev_write == NULL ||
	    io->io_in == NULL || io->io_out == NULL) {
		if (io->io_ev_read != NULL)
			event_free(io->io_ev_read);
		if (io->io_ev_write != NULL)
			event_free(io->io_ev_write);
		if (io->io_in != NULL)
			evbuffer_free(io->io_in);
		if (io->io_out != NULL)
			evbuffer_free(io->io_out);
		memset(io, 0, sizeof(*io));
		io->io_fd = -1;
		return (-1);
	}
	io->io_ssl = ssl;
	return (0);
}

/* Free everything io holds and close its descriptor. */
void
io_free(struct io *io)
{
	if (io->io_ev_read == NULL)
		return;		/* never set up, or freed */
	event_free(io->io_ev_read);
	event_free(io->io_ev_write);
	evbuffer_free(io->io_in);
	evbuffer_free(io->io_out);
	if (io->io_ssl != NULL)
		SSL_free(io->io_ssl);
	close(io->io_fd);
	io->io_ev_read = io->io_ev_write = NULL;
	io->io_ssl = NULL;
	io->io_fd = -1;
}

/*
 * Arm the events the flags ask for.  Reading: when the owner reads (and
 * no TLS read waits for room instead) or a TLS write waits for input.
 * Writing: when output waits (and no TLS write waits for input instead)
 * or a TLS read waits for room; always with the write timeout, as a
 * handshake or key update message that cannot go out is no progress
 * either (armed without it first, it would keep no timeout once output
 * waits too, and a client flooding key updates while reading nothing
 * could hold the connection for ever).  A wait on the other direction
 * never leaves its own event armed, which would fire at once, again and
 * again.
 */
static void
io_events(struct io *io)
{
	int	 f = io->io_flags, rd, wr, out;

	rd = ((f & IO_READING) && !(f & IO_RD_WANT_WR)) || (f & IO_WR_WANT_RD);
	out = (f & IO_OUTWAIT) && !(f & IO_WR_WANT_RD);
	wr = out || (f & IO_RD_WANT_WR);
	if (rd && !(f & IO_EV_READ)) {
		event_add(io->io_ev_read, NULL);
		io->io_flags |= IO_EV_READ;
	} else if (!rd && (f & IO_EV_READ)) {
		event_del(io->io_ev_read);
		io->io_flags &= ~IO_EV_READ;
	}
	if (wr && !(f & IO_EV_WRITE)) {
		event_add(io->io_ev_write, io->io_write_tv);
		io->io_flags |= IO_EV_WRITE;
	} else if (!wr && (f & IO_EV_WRITE)) {
		event_del(io->io_ev_write);
		io->io_flags &= ~IO_EV_WRITE;
	}
}

/* Wait for writability (a connect in progress); see io.h. */
void
io_want_write(struct io *io)
{
	io->io_flags |= IO_OUTWAIT;
	io_events(io);
}

/* Start or stop reading; see io.h. */
void
io_reading(struct io *io, int on)
{
	if (on == ((io->io_flags & IO_READING) != 0))
		return;
	if (on)
		io->io_flags |= IO_READING;
	else
		io->io_flags &= ~IO_READING;
	io_events(io);
	/* Bytes OpenSSL decrypted before the pause make no event. */
	if (on && io->io_ssl != NULL && SSL_has_pending(io->io_ssl))
		event_active(io->io_ev_read, EV_READ, 0);
}

/*
 * A TLS failure: its reason for the owner's log (the first error on
 * OpenSSL's queue, or what the verification said), and the queue
 * cleared so that it does not show up at the next connection.
 */
static void
io_tls_fail(struct io *io, int err)
{
	unsigned long	 e;
	long		 v;

	if (io->io_flags & IO_FAILED) {		/* keep the first reason */
		ERR_clear_error();
		return;
	}
	io->io_flags |= IO_FAILED;
	e = ERR_peek_error();
	if (err == SSL_ERROR_SSL && ERR_GET_REASON(e) ==
	    SSL_R_CERTIFICATE_VERIFY_FAILED &&
	    (v = SSL_get_verify_result(io->io_ssl)) != X509_V_OK)
		io->io_why = X509_verify_cert_error_string(v);
	else if (err == SSL_ERROR_SSL && e != 0)
		io->io_why = ERR_reason_error_string(e);
	else if (err == SSL_ERROR_SYSCALL && errno != 0)
		io->io_why = strerror(errno);
	else
		io->io_why = "TLS error";
	if (io->io_why == NULL)
		io->io_why = "TLS error";
	ERR_clear_error();
}

/*
 * The outcome of an SSL_read() or SSL_write() that returned n <= 0, as
 * io_read()'s: 0 for the peer's close, -1 with errno EAGAIN for a wait
 * (setting which direction it waits for: want is the flag for a wait on
 * the other direction), -1 with errno EPIPE for a failure.
 */
static int
io_tls_result(struct io *io, int n, int want_other, int *waits_other)
{
	int	 err = SSL_get_error(io->io_ssl, n);

	*waits_other = 0;
	switch (err) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		*waits_other = err == want_other;
		errno = EAGAIN;
		return (-1);
	case SSL_ERROR_ZERO_RETURN:
		return (0);
	case SSL_ERROR_SYSCALL:
		/* SSL_OP_IGNORE_UNEXPECTED_EOF: a bare close is EOF. */
		if (ERR_peek_error() == 0 && errno == 0)
			return (0);
		if (errno == EAGAIN || errno == EINTR)
			return (-1);
		/* FALLTHROUGH */
	default:
		io_tls_fail(io, err);
		errno = EPIPE;
		return (-1);
	}
}

/* Note a completed handshake (for the owner's statistics and log). */
static void
io_tls_check(struct io *io)
{
	if (!(io->io_flags & IO_HANDSHAKEN) && SSL_is_init_finished(io->io_ssl))
		io->io_flags |= IO_HANDSHAKEN;
}

/*
 * Go on with the handshake (its errors cleared by the caller): 1 once it
 * is done and OpenSSL holds bytes that came with its last message (to be
 * read now), else io_read()'s answer: -1 with errno EAGAIN while it
 * goes on, or after it completed with nothing more to read.  Not SSL_read() for this: a read after the
 * handshake's last message would make OpenSSL allocate its read buffer
 * and keep it while the connection idles (SSL_MODE_RELEASE_BUFFERS frees
 * it only once a record was read), 16 KiB on every idle TLS connection.
 */
static int
io_tls_handshake(struct io *io)
{
	int	 n, waits;

	errno = 0;
	if ((n = SSL_do_handshake(io->io_ssl)) != 1) {
		n = io_tls_result(io, n, SSL_ERROR_WANT_WRITE, &waits);
		if (waits)
			io->io_flags |= IO_RD_WANT_WR;
		return (n);
	}
	io->io_flags |= IO_HANDSHAKEN;
	io->io_flags &= ~IO_RD_WANT_WR;
	if (SSL_has_pending(io->io_ssl))
		return (1);
	errno = EAGAIN;
	return (-1);
}

/*
 * SSL_read() into the vectors v[0..nv) until they are full, OpenSSL holds
 * nothing more, or the peer closed.  Returns what was read, or (nothing
 * read) io_read()'s 0 or -1.
 */
static ssize_t
io_tls_read(struct io *io, struct iovec *v, int nv)
{
	size_t	 got = 0, off = 0;
	int	 i = 0, n, rc, waits;

	ERR_clear_error();
	while (i < nv) {
		errno = 0;
		n = SSL_read(io->io_ssl, (char *)v[i].iov_base + off,
		    (int)(v[i].iov_len - off));
		if (n <= 0) {
			rc = io_tls_result(io, n, SSL_ERROR_WANT_WRITE, &waits);
			if (waits)
				io->io_flags |= IO_RD_WANT_WR;
			io_tls_check(io);
			if (got > 0 && rc == -1 && errno == EAGAIN)
				break;
			if (got > 0) {
				/*
				 * EOF or failure: the next read says so, and
				 * no socket event may come for it.
				 */
				event_active(io->io_ev_read, EV_READ, 0);
				break;
			}
			return (rc);
		}
		io->io_flags &= ~IO_RD_WANT_WR;
		got += (size_t)n;
		off += (size_t)n;
		if (off == v[i].iov_len) {
			i++;
			off = 0;
		}
		if (!SSL_has_pending(io->io_ssl))
			break;		/* the socket's turn: see above */
	}
	io_tls_check(io);
	return ((ssize_t)got);
}

/* Read once into io_in; see io.h. */
ssize_t
io_read(struct io *io)
{
	struct evbuffer_iovec	 v[2];
	struct iovec		 iov[2];
	size_t			 want = IO_READ_SIZE, left;
	ssize_t			 n;
	int			 i, nv, saved;
	int			 waits = io->io_flags & IO_RD_WANT_WR;

	/*
	 * A TLS failure met after bytes (io_tls_read()) is this read's
	 * answer; OpenSSL, asked again, would say EOF (an empty error queue
	 * and errno 0), and the owner would take a broken stream for a
	 * clean end.
	 */
	if (io->io_flags & IO_FAILED) {
		errno = EPIPE;
		return (-1);
	}
	/*
	 * A handshake first, before any space is reserved: its reads give
	 * no bytes, and reserved space stays allocated in io_in (libevent
	 * frees chains only when bytes are drained), 32 KiB on every idle
	 * TLS connection.
	 */
	if (io->io_ssl != NULL && !(io->io_flags & IO_HANDSHAKEN)) {
		ERR_clear_error();
		n = io_tls_handshake(io);
		saved = errno;
		if ((io->io_flags & IO_RD_WANT_WR) != waits)
			io_events(io);
		errno = saved;
		if (n <= 0)
			return (n);
	}
	if ((nv = evbuffer_reserve_space(io->io_in, IO_READ_SIZE, v, 2)) < 1) {
		errno = ENOMEM;
		return (-1);
	}
	for (i = 0; i < nv; i++) {
		iov[i].iov_base = v[i].iov_base;
		iov[i].iov_len = v[i].iov_len < want ? v[i].iov_len : want;
		want -= iov[i].iov_len;
	}
	if (io->io_ssl == NULL)
		n = readv(io->io_fd, iov, nv);
	else {
		n = io_tls_read(io, iov, nv);
		saved = errno;
		if ((io->io_flags & IO_RD_WANT_WR) != waits)
			io_events(io);
		if (n > 0 && SSL_has_pending(io->io_ssl))
			event_active(io->io_ev_read, EV_READ, 0);
		errno = saved;
	}
	if (n <= 0)
		return (n);
	for (i = 0, left = (size_t)n; i < nv; i++) {
		v[i].iov_len = iov[i].iov_len < left ? iov[i].iov_len : left;
		left -= v[i].iov_len;
	}
	evbuffer_commit_space(io->io_in, v, nv);
	return (n);
}

/*
 * One SSL_write() of the front of io_out (see above); drains what was
 * written.  Returns as io_tls_result() does, or 1 when bytes went out.
 */
static int
io_tls_write(struct io *io)
{
	struct evbuffer_iovec	 v;
	size_t			 len = evbuffer_get_length(io->io_out);
	const void		*p;
	int			 n, rc, waits, copied = 0;

	if (evbuffer_peek(io->io_out, -1, NULL, &v, 1) < 1)
		return (1);
	if (v.iov_len >= IO_TLS_RECORD || v.iov_len == len) {
		p = v.iov_base;
		len = v.iov_len < IO_TLS_RECORD ? v.iov_len : IO_TLS_RECORD;
	} else {
		len = len < IO_TLS_RECORD ? len : IO_TLS_RECORD;
		evbuffer_copyout(io->io_out, io_wbuf, len);
		p = io_wbuf;
		copied = 1;
	}
	ERR_clear_error();
	errno = 0;
	n = SSL_write(io->io_ssl, p, (int)len);
	if (copied)
		OPENSSL_cleanse(io_wbuf, len);
	if (n > 0) {
		io->io_flags &= ~IO_WR_WANT_RD;
		io_tls_check(io);
		evbuffer_drain(io->io_out, (size_t)n);
		return (1);
	}
	rc = io_tls_result(io, n, SSL_ERROR_WANT_READ, &waits);
	/* A wait for room now: an earlier wait for input is over. */
	if (waits)
		io->io_flags |= IO_WR_WANT_RD;
	else
		io->io_flags &= ~IO_WR_WANT_RD;
	io_tls_check(io);
	if (rc == 0) {			/* closed while we write */
		errno = EPIPE;
		rc = -1;
	}
	return (rc);
}

/* Write what io_out holds; see io.h. */
int
io_flush(struct io *io)
{
	int	 n, before = io->io_flags;

	while (evbuffer_get_length(io->io_out) > 0) {
		if (io->io_ssl != NULL)
			n = io_tls_write(io);
		else
			n = evbuffer_write(io->io_out, io->io_fd);
		if (n > 0)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			break;
		return (-1);
	}
	if (evbuffer_get_length(io->io_out) > 0) {
		io->io_flags |= IO_OUTWAIT;
		io_events(io);
		return (0);
	}
	io->io_flags &= ~(IO_OUTWAIT | IO_WR_WANT_RD);
	if (before & (IO_OUTWAIT | IO_WR_WANT_RD))
		io_events(io);
	return (1);
}

/*
 * Readable: the owner's read; or, when a TLS write waited for input and
 * the owner does not read, the owner's write, which repeats it.  (When
 * the owner reads, its read runs, and it flushes after every read, as
 * io.h asks: that repeats the write.)
 */
static void
io_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct io	*io = arg;

	(void)fd;
	(void)what;
	if ((io->io_flags & IO_WR_WANT_RD) && !(io->io_flags & IO_READING)) {
		io->io_ops->io_on_write(io->io_arg, 0);
		return;
	}
	io->io_ops->io_on_read(io->io_arg);
}

/*
 * Writable, or the output made no progress for the write timeout: the
 * owner's write, unless it is a TLS read that waited for room.
 */
static void
io_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct io	*io = arg;

	(void)fd;
	if ((io->io_flags & IO_RD_WANT_WR) && !(what & EV_TIMEOUT)) {
		io->io_flags &= ~IO_RD_WANT_WR;
		io_events(io);
		io->io_ops->io_on_read(io->io_arg);
		return;
	}
	io->io_ops->io_on_write(io->io_arg, (what & EV_TIMEOUT) != 0);
}

/* The connection waits: OpenSSL's buffers back (fails harmlessly if busy). */
void
io_idle(struct io *io)
{
	if (io->io_ssl != NULL)
		(void)SSL_free_buffers(io->io_ssl);
}

/* Send close_notify (TLS) and shut the write side. */
void
io_shutdown(struct io *io)
{
	if (io->io_ssl != NULL && io_handshaken(io) &&
	    !(io->io_flags & IO_FAILED)) {
		ERR_clear_error();
		(void)SSL_shutdown(io->io_ssl);	/* best effort, one try */
		ERR_clear_error();
	}
	shutdown(io->io_fd, SHUT_WR);
}

/* The TLS version of io's connection, NULL for plain. */
const char *
io_tls_version(const struct io *io)
{
	return (io->io_ssl != NULL && io_handshaken(io) ?
	    SSL_get_version(io->io_ssl) : NULL);
}

/* Was io's TLS session resumed? */
int
io_tls_resumed(const struct io *io)
{
	return (io->io_ssl != NULL && SSL_session_reused(io->io_ssl));
}
