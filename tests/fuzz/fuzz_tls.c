/*
 * libFuzzer target for a TLS listener's connection, handshake path: the
 * input is what a client sent.  At start, three P-256 certificates
 * (a.example, b.example, *.w.example; so SNI switches contexts) are made
 * in a temporary directory and built into the server contexts through
 * the configuration parser, as keygated does, with ticket keys attached
 * (so tickets in the input reach the ticket callback).
 *
 * Per input: a server SSL from tls_server_ssl() over memory BIOs; the
 * input is fed record by record (a 5-byte header and its length, the
 * rest in one piece), SSL_do_handshake() after each, and once the
 * handshake is done SSL_read() until it wants more.  What the server
 * writes is discarded.  Checked: no crash, leak or undefined behaviour;
 * a finished handshake chose http/1.1 or no protocol at all.
 */

#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "fuzz.h"
#include "config.h"
#include "shm.h"
#include "tls.h"
#include "../unit/tlstest.h"

#define FUZZ_TLS_ROUNDS	64	/* SSL calls per piece, a bound on loops */

static struct config		*fconf;
static struct shm_tickets	 ftickets;

/* Build the server contexts once. */
static void
fuzz_init(void)
{
	const char	*names[] = { "a.example", "b.example", "*.w.example" };
	char		 text[4096], err[CONFIG_ERRLEN], file[32];
	char		*dir, *cert, *key;
	EVP_PKEY	*k;
	X509		*x;
	size_t		 i, n;

	dir = tlst_mkdir();
	n = (size_t)snprintf(text, sizeof(text), "listen 8443 tls\n");
	for (i = 0; i < 3; i++) {
		k = tlst_key("EC");
		x = tlst_cert(k, names[i], names[i], -1, 30, NULL, NULL);
		snprintf(file, sizeof(file), "c%zu.pem", i);
		cert = tlst_write_cert(dir, file, x);
		snprintf(file, sizeof(file), "k%zu.pem", i);
		key = tlst_write_key(dir, file, k);
		n += (size_t)snprintf(text + n, sizeof(text) - n,
		    "tls_certificate %s %s\n", cert, key);
		free(cert);
		free(key);
		X509_free(x);
		EVP_PKEY_free(k);
	}
	if ((fconf = config_parse(text, "fuzz.conf", err, sizeof(err))) ==
	    NULL) {
		fprintf(stderr, "fuzz_tls: %s\n", err);
		abort();
	}
	tlst_rmdir(dir);
	FUZZ_ASSERT(tls_tickets_rotate(&ftickets, 1000) == 0);
	tls_tickets_attach(&ftickets);
}

/*
 * Drive ssl after more input: the handshake, then reads, until it wants
 * more input or fails.  0 to go on, -1 when the connection is finished.
 */
static int
fuzz_drive(SSL *ssl, BIO *wbio)
{
	const unsigned char	*alpn;
	unsigned int		 alen;
	char			 buf[4096];
	int			 i, r, e;

	for (i = 0; i < FUZZ_TLS_ROUNDS; i++) {
		(void)BIO_reset(wbio);
		if (!SSL_is_init_finished(ssl))
			r = SSL_do_handshake(ssl);
		else
			r = SSL_read(ssl, buf, sizeof(buf));
		if (r > 0) {
			SSL_get0_alpn_selected(ssl, &alpn, &alen);
			FUZZ_ASSERT(alen == 0 || (alen == 8 &&
			    memcmp(alpn, "http/1.1", 8) == 0));
			continue;
		}
		e = SSL_get_error(ssl, r);
		if (e == SSL_ERROR_WANT_READ)
			return (0);
		if (e != SSL_ERROR_WANT_WRITE)
			return (-1);
	}
	return (0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	SSL	*ssl;
	BIO	*rbio, *wbio;
	size_t	 off = 0, len;

	if (fconf == NULL)
		fuzz_init();
	FUZZ_ASSERT((ssl = tls_server_ssl(fconf->c_tls)) != NULL);
	rbio = BIO_new(BIO_s_mem());
	wbio = BIO_new(BIO_s_mem());
	FUZZ_ASSERT(rbio != NULL && wbio != NULL);
	BIO_set_mem_eof_return(rbio, -1);
	SSL_set_bio(ssl, rbio, wbio);
	while (off < size) {
		len = size - off;
		if (len >= 5 && (size_t)((data[off + 3] << 8) | data[off + 4]) +
		    5 < len)
			len = (size_t)((data[off + 3] << 8) | data[off + 4]) + 5;
		FUZZ_ASSERT(BIO_write(rbio, data + off, (int)len) == (int)len);
		off += len;
		if (fuzz_drive(ssl, wbio) == -1)
			break;
	}
	SSL_free(ssl);
	ERR_clear_error();
	return (0);
}
