/*
 * One connection's byte I/O, the same for the client side (server.c) and
 * the upstream side (proxy.c), plain or TLS: the socket, its read and
 * write events, its input and output evbuffers and read pausing.  With
 * TLS (io_ssl set) the bytes go through SSL_read()/SSL_write() on the same
 * non-blocking socket; a read that needs the socket writable (a handshake
 * message to send) or a write that needs it readable is retried here when
 * the socket is ready, and the owner only ever sees "readable" and
 * "writable" callbacks and the results of io_read() and io_flush().
 *
 * The owner's pattern (server.c's, proxy.c's):
 *	on_read:  n = io_read(io); handle bytes, EOF or error; io_flush(io)
 *	on_write: io_flush(io) (or a timeout: give up)
 * and io_reading() to pause and resume reading.  Callbacks run from the
 * event loop only; an owner may free the io (io_free()) inside them, as
 * long as it touches nothing of it afterwards.
 *
 * What the input holds is never moved or copied by reads (see io_read()),
 * so an owner that wipes its input (credentials) leaves no copy behind.
 */
#ifndef KEYGATE_IO_H
#define KEYGATE_IO_H

#include <sys/types.h>

#include <stdint.h>

#include <event2/event.h>
#include <openssl/ssl.h>

struct evbuffer;

#define IO_READ_SIZE	16384	/* bytes asked of one read */
#define IO_MAX_OUTPUT	(256 * 1024)	/* output past which a producer */
					/* (the peer's input) is paused */

struct io_ops {
	/* Readable (or TLS has bytes waiting): the owner calls io_read(). */
	void	(*io_on_read)(void *);
	/*
	 * Writable again (the owner calls io_flush()), or timedout: the
	 * output made no progress for the write timeout given to io_init().
	 */
	void	(*io_on_write)(void *, int);
};

struct io {
	int			 io_fd;
	SSL			*io_ssl;	/* NULL: plain */
	struct event		*io_ev_read;
	struct event		*io_ev_write;
	struct evbuffer		*io_in;
	struct evbuffer		*io_out;
	const struct io_ops	*io_ops;
	void			*io_arg;
	const struct timeval	*io_write_tv;	/* NULL: no write timeout */
	int			 io_flags;
#define IO_READING	0x01	/* the owner wants to read */
#define IO_EV_READ	0x02	/* io_ev_read is added */
#define IO_EV_WRITE	0x04	/* io_ev_write is added */
#define IO_RD_WANT_WR	0x08	/* TLS: a read waits for writability */
#define IO_WR_WANT_RD	0x10	/* TLS: a write waits for readability */
#define IO_HANDSHAKEN	0x20	/* TLS: the handshake completed */
#define IO_FAILED	0x40	/* TLS: a fatal error; io_why says it */
#define IO_OUTWAIT	0x80	/* output waits for the socket */
	const char		*io_why;	/* the last failure, for logs */
};

/*
 * Set up io on descriptor fd (non-blocking) with ssl (NULL for plain; io
 * owns it from now on) in base; write_tv (a common timeout, or NULL) is
 * how long the output may make no progress.  0, or -1 if out of memory
 * (then nothing is owned: the caller closes fd and frees ssl).
 */
int		 io_init(struct io *, struct event_base *, int, SSL *,
		    const struct io_ops *, void *, const struct timeval *);

/* Free events, buffers and SSL, and close the descriptor. */
void		 io_free(struct io *);

/*
 * Read once (plain: one readv() of up to IO_READ_SIZE bytes; TLS:
 * SSL_read() until the socket has no more or IO_READ_SIZE bytes were
 * read) into reserved space of io_in, two vectors (the room left in the
 * last chain and a new chain), so that libevent never moves bytes already
 * received.  Returns the bytes read, 0 on EOF (TLS: close_notify or the
 * peer closing), -1 on error: errno EAGAIN when there is nothing now
 * (the read event stays on), else the connection is broken (io_why says
 * why for TLS).
 */
ssize_t		 io_read(struct io *);

/*
 * Write what io_out holds.  1 when it is empty, 0 when the rest waits
 * for the write event (armed with the write timeout), -1 when the
 * connection is broken (io_why says why for TLS).
 */
int		 io_flush(struct io *);

/*
 * Wait for the socket to become writable without writing (a connect()
 * in progress): the owner's io_on_write says when.
 */
void		 io_want_write(struct io *);

/* Start or stop reading (the owner's wish; TLS may still read itself). */
void		 io_reading(struct io *, int);

/*
 * The connection waits (nothing buffered): give back what OpenSSL keeps
 * for reading and writing (SSL_free_buffers(), as nginx does for idle
 * connections); a no-op for plain ones.
 */
void		 io_idle(struct io *);

/* Send a TLS close_notify (if TLS) and shut the write side. */
void		 io_shutdown(struct io *);

/* Is there output waiting for the write event? */
#define io_pending(io)	(((io)->io_flags & IO_OUTWAIT) != 0)

/*
 * TLS facts for the access log and statistics: the protocol version
 * ("TLSv1.3", NULL for plain), whether the session was resumed, whether
 * the handshake has completed.
 */
const char	*io_tls_version(const struct io *);
int		 io_tls_resumed(const struct io *);
#define io_handshaken(io)	(((io)->io_flags & IO_HANDSHAKEN) != 0)

#endif /* KEYGATE_IO_H */
