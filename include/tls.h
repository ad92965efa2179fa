/*
 * TLS (OpenSSL 3): the server contexts of the TLS listeners, chosen by
 * SNI, the client contexts of https upstreams, and the session ticket keys
 * the master makes and rotates in the shared segment.
 *
 * Everything here is built when a configuration is loaded (config_load(),
 * at start, for "keygated -t" and on SIGHUP), in the master, before any
 * worker forks: a certificate that cannot be read, a key that does not
 * match its certificate, an unknown protocol or cipher string make the
 * load fail with "FILE:LINE: reason", and a reload then keeps the running
 * configuration.  An expired certificate (or one not valid yet), the
 * leaf or one of the chain after it in the file, is a warning, not an
 * error.  Workers inherit the built contexts across
 * fork() and only ever make SSL objects from them.
 *
 * Listener side:
 *   - tls_certificate CERT KEY is repeatable.  Certificates with the same
 *     set of names (DNS subjectAltNames, else the subject CN) share one
 *     SSL_CTX, one certificate per key type (an RSA and an ECDSA one for
 *     the same names are both served; OpenSSL picks by the client's
 *     signature algorithms).  Two certificates of one key type with the
 *     same names are an error.
 *   - SNI picks the context whose names hold the server name exactly
 *     (case-insensitive), else one whose wildcard "*.example.com" covers
 *     it (one label), else the first certificate's context, the default.
 *   - tls_protocols (TLSv1.2, TLSv1.3), tls_ciphers (TLS 1.2, OpenSSL
 *     syntax), tls_ciphersuites (TLS 1.3); defaults: Mozilla
 *     "intermediate".  ALPN: http/1.1 only (a client offering only other
 *     protocols is refused with no_application_protocol).  Renegotiation
 *     is off; compression is off; SSL_MODE_RELEASE_BUFFERS.
 *   - Session resumption: stateless tickets only (no server-side session
 *     cache), encrypted with the shared ticket keys below, so any worker
 *     resumes a session another made.  tls_session_tickets off: none.
 *
 * Upstream side: upstream NAME https://HOST[:PORT] [ca=PATH] [verify=on|off]
 * [sni=NAME].  The certificate is verified against ca= (default: the
 * system CA bundle) and the name sni= (default the URL's host; an IP
 * address is checked as an IP and not sent as SNI); verify=off accepts
 * any certificate.  TLSv1.2 or later.
 */
#ifndef KEYGATE_TLS_H
#define KEYGATE_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

struct config;
struct upstream;
struct upstream_server;
struct shm_tickets;

#define TLS_MAX_CERTS		64	/* tls_certificate lines */

/* c_tls_protocols bits. */
#define TLS_PROTO_TLSv1_2	0x01
#define TLS_PROTO_TLSv1_3	0x02

/* Mozilla "intermediate" (v5.7). */
#define TLS_CIPHERS_DEFAULT	"ECDHE-ECDSA-AES128-GCM-SHA256:" \
	"ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:" \
	"ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:" \
	"ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:" \
	"DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
#define TLS_CIPHERSUITES_DEFAULT "TLS_AES_128_GCM_SHA256:" \
	"TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

/* One tls_certificate line. */
struct tls_cert_conf {
	char	*tc_cert;	/* absolute path: certificate (and chain) PEM */
	char	*tc_key;	/* absolute path: private key PEM */
	int	 tc_line;
};

/* The listener side, built from the config; opaque. */
struct tls_server;

/*
 * Build the server contexts from conf's tls_certificate, tls_protocols,
 * tls_ciphers, tls_ciphersuites and tls_session_tickets into
 * conf->c_tls.  0, or -1 with "FILE:LINE: reason" in err.  Warnings
 * (an expired certificate, leaf or chain) are logged with log_warnx().
 */
int		 tls_server_build(struct config *, char *, size_t);
void		 tls_server_free(struct tls_server *);

/*
 * A new server-side SSL for an accepted connection (accept state, SNI
 * and ALPN callbacks installed); NULL if out of memory.  The caller sets
 * the descriptor (SSL_set_fd).
 */
SSL		*tls_server_ssl(struct tls_server *);

/*
 * Build u's client context (u->u_ssl_ctx) from ca= and verify=.  0, or -1
 * with "FILE:LINE: reason" in err.
 */
int		 tls_upstream_build(struct upstream *, const char *, char *,
		    size_t);
void		 tls_upstream_free(struct upstream *);

/*
 * A new client-side SSL for a connection to server us of u (connect
 * state, SNI (us_host, or sni=) and
 * the name to verify set, the last session of this upstream offered for
 * resumption); NULL if out of memory.  The caller sets the descriptor.
 * Each resumable session the server issues on it (TLS 1.2: at the end of
 * the handshake; TLS 1.3: a NewSessionTicket, read after the handshake
 * with the response) becomes u's u_ssl_session, by OpenSSL's new-session
 * callback; u must outlive the SSL.
 */
SSL		*tls_upstream_ssl(struct upstream *,
		    const struct upstream_server *);

/*
 * Ticket keys.  The master makes the first key when the segment is
 * created and calls tls_tickets_rotate() periodically: every
 * TLS_TICKET_ROTATE_S a new key becomes current and the previous two stay
 * accepted for decryption (a ticket is thus good for up to three hours;
 * tickets decrypted with an older key are renewed).  Workers read the
 * keys under the segment's seqlock (shm.h); tls_tickets_attach() names
 * the keys this process's contexts use (workers: once, after fork).
 */
#define TLS_TICKET_ROTATE_S	3600

/*
 * Master: make the first key or rotate if due at now (unix s); 0 or -1.
 * Due: the current key is TLS_TICKET_ROTATE_S old, or its creation time
 * is after now (the wall clock went back), so that rotation never stops
 * waiting for the clock to catch up.
 */
int		 tls_tickets_rotate(struct shm_tickets *, int64_t);
void		 tls_tickets_attach(struct shm_tickets *);

/* The protocol name of a connection ("TLSv1.3") for the access log. */
const char	*tls_version(const SSL *);

#endif /* KEYGATE_TLS_H */
