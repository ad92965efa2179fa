/*
 * Test helpers for TLS: keys and certificates made with OpenSSL at test
 * time (a CA, leaves with subjectAltNames, expired ones), written as PEM
 * into a temporary directory, and handshakes over an in-memory BIO pair.
 * Failures are cmocka assertions, or abort() outside cmocka (fuzz).
 */
#ifndef KEYGATE_TLSTEST_H
#define KEYGATE_TLSTEST_H

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* A new temporary directory (malloc'd path); removed by tlst_rmdir(). */
char	*tlst_mkdir(void);
void	 tlst_rmdir(char *);

/* A new key: "RSA" (2048 bits) or "EC" (P-256). */
EVP_PKEY *tlst_key(const char *);

/*
 * A certificate for key with subject CN cn, the DNS names of the
 * comma-separated sans (NULL: none), valid from days_from to days_to
 * days from now, signed by ca_key as ca (both NULL: self-signed, a CA).
 */
X509	*tlst_cert(EVP_PKEY *, const char *, const char *, int, int,
	    X509 *, EVP_PKEY *);

/* Write x / key as PEM to dir/name; the path (malloc'd). */
char	*tlst_write_cert(const char *, const char *, X509 *);
char	*tlst_write_key(const char *, const char *, EVP_PKEY *);

/* Write text to dir/name; the path (malloc'd). */
char	*tlst_write_file(const char *, const char *, const char *);

/*
 * Run the handshake of client and server (each owns nothing yet) over a
 * new BIO pair until both finish or one fails; 1 if both succeeded.  Then
 * the client reads once (TLS 1.3 session tickets arrive after the
 * handshake).
 */
int	 tlst_handshake(SSL *, SSL *);

/*
 * The configuration printed from fmt, parsed as file name (config.c);
 * a test that gives a bad one has a bug: its error is printed and the
 * test aborts.
 */
struct config;
struct config	*tlst_conf(const char *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));

#endif /* KEYGATE_TLSTEST_H */
