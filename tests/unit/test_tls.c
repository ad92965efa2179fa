/*
 * Unit tests for tls.c: server contexts built from configurations with
 * certificates made in the test, checked with in-memory handshakes (SNI,
 * key types, protocols, ALPN, session tickets and their rotation), every
 * build error, and https upstream verification.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "config.h"
#include "log.h"
#include "shm.h"
#include "tls.h"
#include "tlstest.h"

#define NAME	"tls.conf"

/* Everything made once for all tests. */
static struct {
	char		*dir;
	X509		*ca, *ca2, *rsa, *ec, *b, *wild, *expired, *up;
	EVP_PKEY	*ca_key, *ca2_key, *rsa_key, *ec_key, *k;
	char		*ca_pem, *ca2_pem;
	char		*rsa_pem, *rsa_keypem, *ec_pem, *ec_keypem;
	char		*b_pem, *wild_pem, *expired_pem, *k_pem;
	char		*up_pem, *up2_pem, *other_keypem, *junk;
	struct shm_tickets tickets;
} t;

/* Make the CAs, keys and certificates, and write them. */
static int
setup(void **state)
{
	EVP_PKEY	*other;
	X509		*up2;

	t.dir = tlst_mkdir();
	t.ca_key = tlst_key("EC");
	t.ca = tlst_cert(t.ca_key, "Test CA", NULL, -1, 30, NULL, NULL);
	t.ca2_key = tlst_key("EC");
	t.ca2 = tlst_cert(t.ca2_key, "Other CA", NULL, -1, 30, NULL, NULL);
	t.rsa_key = tlst_key("RSA");
	t.ec_key = tlst_key("EC");
	t.k = tlst_key("EC");
	other = tlst_key("EC");
	t.rsa = tlst_cert(t.rsa_key, "a", "a.example.com,www.a.example.com",
	    -1, 30, t.ca, t.ca_key);
	t.ec = tlst_cert(t.ec_key, "a", "www.a.example.com,a.example.com",
	    -1, 30, t.ca, t.ca_key);
	t.b = tlst_cert(t.k, "b", "b.example.com", -1, 30, t.ca, t.ca_key);
	t.wild = tlst_cert(t.k, "w", "*.w.example.com", -1, 30, t.ca,
	    t.ca_key);
	t.expired = tlst_cert(t.k, "old.example.com", NULL, -30, -1, t.ca,
	    t.ca_key);
	t.up = tlst_cert(t.k, "up", "up.example.com,127.0.0.1", -1, 30, t.ca,
	    t.ca_key);
	up2 = tlst_cert(t.k, "up", "up.example.com", -1, 30, t.ca2, t.ca2_key);
	t.ca_pem = tlst_write_cert(t.dir, "ca.pem", t.ca);
	t.ca2_pem = tlst_write_cert(t.dir, "ca2.pem", t.ca2);
	t.rsa_pem = tlst_write_cert(t.dir, "rsa.pem", t.rsa);
	t.rsa_keypem = tlst_write_key(t.dir, "rsa.key", t.rsa_key);
	t.ec_pem = tlst_write_cert(t.dir, "ec.pem", t.ec);
	t.ec_keypem = tlst_write_key(t.dir, "ec.key", t.ec_key);
	t.b_pem = tlst_write_cert(t.dir, "b.pem", t.b);
	t.wild_pem = tlst_write_cert(t.dir, "wild.pem", t.wild);
	t.expired_pem = tlst_write_cert(t.dir, "expired.pem", t.expired);
	t.k_pem = tlst_write_key(t.dir, "k.key", t.k);
	t.up_pem = tlst_write_cert(t.dir, "up.pem", t.up);
	t.up2_pem = tlst_write_cert(t.dir, "up2.pem", up2);
	t.other_keypem = tlst_write_key(t.dir, "other.key", other);
	t.junk = tlst_write_file(t.dir, "junk.pem", "not a certificate\n");
	X509_free(up2);
	EVP_PKEY_free(other);
	tls_tickets_rotate(&t.tickets, 1000);
	tls_tickets_attach(&t.tickets);
	return (0);
}

/* Free everything setup() made. */
static int
teardown(void **state)
{
	X509		*x[] = { t.ca, t.ca2, t.rsa, t.ec, t.b, t.wild,
			    t.expired, t.up };
	EVP_PKEY	*k[] = { t.ca_key, t.ca2_key, t.rsa_key, t.ec_key, t.k };
	char		*p[] = { t.ca_pem, t.ca2_pem, t.rsa_pem, t.rsa_keypem,
			    t.ec_pem, t.ec_keypem, t.b_pem, t.wild_pem,
			    t.expired_pem, t.k_pem, t.up_pem, t.up2_pem,
			    t.other_keypem, t.junk };
	size_t		 i;

	for (i = 0; i < sizeof(x) / sizeof(x[0]); i++)
		X509_free(x[i]);
	for (i = 0; i < sizeof(k) / sizeof(k[0]); i++)
		EVP_PKEY_free(k[i]);
	for (i = 0; i < sizeof(p) / sizeof(p[0]); i++)
		free(p[i]);
	tls_tickets_attach(NULL);
	tlst_rmdir(t.dir);
	return (0);
}

/* The configuration printed from fmt (tlstest.c). */
#define conf(...)	tlst_conf(NAME, __VA_ARGS__)

/* The error of the configuration printed from fmt, which must fail. */
static const char *
conf_err(const char *fmt, ...)
{
	static char	 err[CONFIG_ERRLEN];
	struct config	*c;
	char		 text[4096];
	va_list		 ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	err[0] = '\0';
	if ((c = config_parse(text, NAME, err, sizeof(err))) != NULL) {
		config_free(c);
		fail_msg("config parsed but should not have:\n%s", text);
	}
	return (err);
}

/*
 * Parse the configuration printed from fmt, which must parse, with the
 * error log going to a file; what was logged in *logp (malloc'd).
 */
static struct config *
conf_logged(char **logp, const char *fmt, ...)
{
	struct config	*c;
	char		 text[4096], err[CONFIG_ERRLEN] = "", path[1024];
	FILE		*f;
	long		 n;
	va_list		 ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	snprintf(path, sizeof(path), "%s/warn.log", t.dir);
	unlink(path);
	assert_int_equal(log_init(path, LOGLEVEL_WARN, "test_tls", err,
	    sizeof(err)), 0);
	c = config_parse(text, NAME, err, sizeof(err));
	log_init(LOG_TO_STDERR, LOGLEVEL_WARN, "test_tls", err, sizeof(err));
	if (c == NULL)
		fail_msg("config did not parse: %s\n%s", err, text);
	assert_non_null(f = fopen(path, "r"));
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	assert_non_null(*logp = calloc(1, (size_t)n + 1));
	assert_int_equal(fread(*logp, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return (c);
}

/* A client context: protocol versions lo..hi (0: any), TLS 1.2 ciphers. */
static SSL_CTX *
client_ctx(int lo, int hi, const char *ciphers)
{
	SSL_CTX	*ctx;

	assert_non_null(ctx = SSL_CTX_new(TLS_client_method()));
	SSL_CTX_set_security_level(ctx, 0);
	assert_int_equal(SSL_CTX_set_min_proto_version(ctx, lo), 1);
	assert_int_equal(SSL_CTX_set_max_proto_version(ctx, hi), 1);
	if (ciphers != NULL)
		assert_int_equal(SSL_CTX_set_cipher_list(ctx, ciphers), 1);
	return (ctx);
}

/*
 * Handshake a client of cctx (SNI sni unless NULL, offering session sess
 * unless NULL) with a new server SSL of c.  1 if it succeeded; the
 * server's certificate in *peer (a reference) and the client's session in
 * *sessp when asked; *reused whether the server resumed.
 */
static int
shake(struct config *c, SSL_CTX *cctx, const char *sni, SSL_SESSION *sess,
    X509 **peer, SSL_SESSION **sessp, int *reused)
{
	SSL	*cl, *sv;
	int	 ok;

	assert_non_null(cl = SSL_new(cctx));
	assert_non_null(sv = tls_server_ssl(c->c_tls));
	SSL_set_connect_state(cl);
	if (sni != NULL)
		SSL_set_tlsext_host_name(cl, sni);
	if (sess != NULL)
		SSL_set_session(cl, sess);
	ok = tlst_handshake(cl, sv);
	if (peer != NULL)
		*peer = ok ? SSL_get1_peer_certificate(cl) : NULL;
	if (sessp != NULL)
		*sessp = ok ? SSL_get1_session(cl) : NULL;
	if (reused != NULL)
		*reused = ok && SSL_session_reused(sv);
	/* As if closed cleanly: OpenSSL keeps the session resumable. */
	SSL_set_shutdown(cl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
	SSL_free(cl);
	SSL_free(sv);
	ERR_clear_error();
	return (ok);
}

/* Is the certificate the server sent for sni (with cctx) expect? */
static void
assert_served(struct config *c, SSL_CTX *cctx, const char *sni,
    X509 *expect)
{
	X509	*peer = NULL;

	assert_true(shake(c, cctx, sni, NULL, &peer, NULL, NULL));
	assert_non_null(peer);
	assert_int_equal(X509_cmp(peer, expect), 0);
	X509_free(peer);
}

/* One certificate: a TLS 1.3 handshake with it and its version name. */
static void
test_build_ok(void **state)
{
	struct config	*c;
	SSL_CTX		*cctx = client_ctx(0, 0, NULL);
	SSL		*cl, *sv;

	c = conf("listen 127.0.0.1:8443 tls\ntls_certificate %s %s\n",
	    t.rsa_pem, t.rsa_keypem);
	assert_non_null(c->c_tls);
	assert_true(c->c_listen[0].la_tls);
	assert_served(c, cctx, "a.example.com", t.rsa);
	assert_non_null(cl = SSL_new(cctx));
	assert_non_null(sv = tls_server_ssl(c->c_tls));
	SSL_set_connect_state(cl);
	assert_true(tlst_handshake(cl, sv));
	assert_string_equal(tls_version(sv), "TLSv1.3");
	SSL_free(cl);
	SSL_free(sv);
	SSL_CTX_free(cctx);
	config_free(c);
}

/* Every error building the contexts, with its line and file. */
static void
test_build_errors(void **state)
{
	char	 want[CONFIG_ERRLEN];

	snprintf(want, sizeof(want), NAME ":2: tls_certificate: cannot open "
	    "%s/missing.pem: No such file or directory", t.dir);
	assert_string_equal(conf_err("listen 8443 tls\ntls_certificate "
	    "%s/missing.pem %s\n", t.dir, t.rsa_keypem), want);
	snprintf(want, sizeof(want), NAME ":2: tls_certificate: cannot open "
	    "%s/missing.key: No such file or directory", t.dir);
	assert_string_equal(conf_err("listen 8443 tls\ntls_certificate "
	    "%s %s/missing.key\n", t.rsa_pem, t.dir), want);
	assert_string_equal(conf_err("listen 8443 tls\ntls_certificate "
	    "/dev/zero %s\n", t.rsa_keypem), NAME ":2: tls_certificate: cannot "
	    "open /dev/zero: not a regular file of at most 1 MiB");
	snprintf(want, sizeof(want), NAME ":2: tls_certificate: cannot open "
	    "%s: not a regular file of at most 1 MiB", t.dir);
	assert_string_equal(conf_err("listen 8443 tls\ntls_certificate %s "
	    "%s\n", t.rsa_pem, t.dir), want);
	assert_string_equal(conf_err("\nupstream u https://127.0.0.1 "
	    "ca=/dev/zero\n"), NAME ":2: upstream \"u\": ca /dev/zero: not a "
	    "regular file of at most 1 MiB");
	snprintf(want, sizeof(want), NAME ":2: tls_certificate: %s is not a "
	    "PEM certificate (no start line)", t.junk);
	assert_string_equal(conf_err("listen 8443 tls\ntls_certificate %s "
	    "%s\n", t.junk, t.rsa_keypem), want);
	snprintf(want, sizeof(want), NAME ":2: tls_certificate: %s is not a "
	    "PEM private key, or is encrypted", t.junk);
	assert_string_equal(conf_err("listen 8443 tls\ntls_certificate %s "
	    "%s\n", t.rsa_pem, t.junk), want);
	snprintf(want, sizeof(want), NAME ":3: tls_certificate: the key %s "
	    "does not match the certificate %s", t.other_keypem, t.ec_pem);
	assert_string_equal(conf_err("listen 8443 tls\n\ntls_certificate %s "
	    "%s\n", t.ec_pem, t.other_keypem), want);
	snprintf(want, sizeof(want), NAME ":3: tls_certificate: the key %s "
	    "does not match the certificate %s", t.ec_keypem, t.rsa_pem);
	assert_string_equal(conf_err("listen 8443 tls\n\ntls_certificate %s "
	    "%s\n", t.rsa_pem, t.ec_keypem), want);
	snprintf(want, sizeof(want), NAME ":4: tls_certificate: %s has the "
	    "same names and key type as the certificate at line 2", t.b_pem);
	assert_string_equal(conf_err("listen 8443 tls\ntls_certificate %s "
	    "%s\ntls_certificate %s %s\ntls_certificate %s %s\n", t.b_pem,
	    t.k_pem, t.wild_pem, t.k_pem, t.b_pem, t.k_pem), want);
	assert_string_equal(conf_err("listen 8443 tls\ntls_certificate %s "
	    "%s\ntls_ciphers NOPE\n", t.b_pem, t.k_pem),
	    NAME ":3: \"tls_ciphers\": OpenSSL rejects \"NOPE\"");
	assert_string_equal(conf_err("tls_ciphersuites NOPE\n"),
	    NAME ":1: \"tls_ciphersuites\": OpenSSL rejects \"NOPE\"");
	assert_string_equal(conf_err("listen 8443\nlisten 8444 tls\n"),
	    NAME ":2: listen 8444 tls: no tls_certificate is configured");
}

/*
 * An expired certificate is a warning that names the file and the
 * dates: the contexts build and serve it.
 */
static void
test_expired(void **state)
{
	struct config	*c;
	SSL_CTX		*cctx = client_ctx(0, 0, NULL);
	char		 want[1200], *log;

	c = conf_logged(&log, "listen 8443 tls\ntls_certificate %s %s\n",
	    t.expired_pem, t.k_pem);
	snprintf(want, sizeof(want), NAME ":2: tls_certificate %s is expired "
	    "(valid from ", t.expired_pem);
	assert_non_null(strstr(log, want));
	assert_null(strstr(log, "chain certificate"));
	free(log);
	assert_served(c, cctx, "old.example.com", t.expired);
	SSL_CTX_free(cctx);
	config_free(c);
}

/*
 * An expired intermediate in the chain file is a warning too, naming the
 * file, which certificate (its place and subject) and its dates; a valid
 * chain warns about nothing.  The contexts build and serve the leaf.
 */
static void
test_expired_chain(void **state)
{
	struct config	*c;
	SSL_CTX		*cctx = client_ctx(0, 0, NULL);
	EVP_PKEY	*ik;
	X509		*old, *cur, *leaf, *leaf2;
	FILE		*f;
	char		 path[1024], path2[1024], want[1200], *log, *nl;

	ik = tlst_key("EC");
	old = tlst_cert(ik, "Old Intermediate", NULL, -30, -2, t.ca, t.ca_key);
	cur = tlst_cert(ik, "New Intermediate", NULL, -1, 30, t.ca, t.ca_key);
	leaf = tlst_cert(t.k, "chain", "chain.example.com", -1, 30, old, ik);
	leaf2 = tlst_cert(t.k, "chain2", "chain2.example.com", -1, 30, cur, ik);
	snprintf(path, sizeof(path), "%s/chain.pem", t.dir);
	assert_non_null(f = fopen(path, "w"));
	assert_int_equal(PEM_write_X509(f, leaf), 1);
	assert_int_equal(PEM_write_X509(f, old), 1);
	assert_int_equal(PEM_write_X509(f, t.ca), 1);
	fclose(f);
	snprintf(path2, sizeof(path2), "%s/chain2.pem", t.dir);
	assert_non_null(f = fopen(path2, "w"));
	assert_int_equal(PEM_write_X509(f, leaf2), 1);
	assert_int_equal(PEM_write_X509(f, cur), 1);
	fclose(f);
	c = conf_logged(&log, "listen 8443 tls\ntls_certificate %s %s\n"
	    "tls_certificate %s %s\n", path2, t.k_pem, path, t.k_pem);
	snprintf(want, sizeof(want), NAME ":3: tls_certificate %s: chain "
	    "certificate 1 (CN=Old Intermediate) is expired (valid from ",
	    path);
	assert_non_null(strstr(log, want));
	assert_non_null(strstr(strstr(log, want), " until "));
	assert_non_null(nl = strchr(log, '\n'));
	assert_null(strchr(nl + 1, '\n'));	/* that warning only */
	free(log);
	assert_served(c, cctx, "chain.example.com", leaf);
	assert_served(c, cctx, "chain2.example.com", leaf2);
	SSL_CTX_free(cctx);
	config_free(c);
	X509_free(old);
	X509_free(cur);
	X509_free(leaf);
	X509_free(leaf2);
	EVP_PKEY_free(ik);
}

/* SNI: exact names, a one-label wildcard, else the first certificate. */
static void
test_sni(void **state)
{
	struct config	*c;
	SSL_CTX		*cctx = client_ctx(0, 0, NULL);

	c = conf("listen 8443 tls\ntls_certificate %s %s\n"
	    "tls_certificate %s %s\ntls_certificate %s %s\n", t.ec_pem,
	    t.ec_keypem, t.b_pem, t.k_pem, t.wild_pem, t.k_pem);
	assert_served(c, cctx, "b.example.com", t.b);
	assert_served(c, cctx, "B.Example.COM", t.b);
	assert_served(c, cctx, "www.a.example.com", t.ec);
	assert_served(c, cctx, "x.w.example.com", t.wild);
	assert_served(c, cctx, "y.x.w.example.com", t.ec);
	assert_served(c, cctx, "w.example.com", t.ec);
	assert_served(c, cctx, "unknown.org", t.ec);
	assert_served(c, cctx, NULL, t.ec);
	SSL_CTX_free(cctx);
	config_free(c);
}

/* RSA and ECDSA for the same names: the client's ciphers choose. */
static void
test_key_types(void **state)
{
	struct config	*c;
	SSL_CTX		*ecdsa, *rsa, *any;

	c = conf("listen 8443 tls\ntls_certificate %s %s\n"
	    "tls_certificate %s %s\n", t.rsa_pem, t.rsa_keypem, t.ec_pem,
	    t.ec_keypem);
	ecdsa = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION,
	    "ECDHE-ECDSA-AES128-GCM-SHA256");
	rsa = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION,
	    "ECDHE-RSA-AES128-GCM-SHA256");
	any = client_ctx(0, 0, NULL);
	assert_served(c, ecdsa, "a.example.com", t.ec);
	assert_served(c, rsa, "a.example.com", t.rsa);
	assert_true(shake(c, any, "a.example.com", NULL, NULL, NULL, NULL));
	SSL_CTX_free(ecdsa);
	SSL_CTX_free(rsa);
	SSL_CTX_free(any);
	config_free(c);
}

/* TLS 1.1 is refused, 1.2 and 1.3 accepted; tls_protocols narrows. */
static void
test_protocols(void **state)
{
	struct config	*c, *c13, *c12;
	SSL_CTX		*v11, *v12, *v13;

	c = conf("listen 8443 tls\ntls_certificate %s %s\n", t.b_pem,
	    t.k_pem);
	c13 = conf("listen 8443 tls\ntls_certificate %s %s\n"
	    "tls_protocols TLSv1.3\n", t.b_pem, t.k_pem);
	c12 = conf("listen 8443 tls\ntls_certificate %s %s\n"
	    "tls_protocols TLSv1.2\n", t.b_pem, t.k_pem);
	v11 = client_ctx(TLS1_1_VERSION, TLS1_1_VERSION, "DEFAULT:@SECLEVEL=0");
	v12 = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION, NULL);
	v13 = client_ctx(TLS1_3_VERSION, TLS1_3_VERSION, NULL);
	assert_false(shake(c, v11, NULL, NULL, NULL, NULL, NULL));
	assert_true(shake(c, v12, NULL, NULL, NULL, NULL, NULL));
	assert_true(shake(c, v13, NULL, NULL, NULL, NULL, NULL));
	assert_false(shake(c13, v12, NULL, NULL, NULL, NULL, NULL));
	assert_true(shake(c13, v13, NULL, NULL, NULL, NULL, NULL));
	assert_true(shake(c12, v12, NULL, NULL, NULL, NULL, NULL));
	assert_false(shake(c12, v13, NULL, NULL, NULL, NULL, NULL));
	SSL_CTX_free(v11);
	SSL_CTX_free(v12);
	SSL_CTX_free(v13);
	config_free(c);
	config_free(c13);
	config_free(c12);
}

/* ALPN: http/1.1 is chosen; a client offering only h2 is refused. */
static void
test_alpn(void **state)
{
	struct config		*c;
	SSL_CTX			*cctx = client_ctx(0, 0, NULL);
	SSL			*cl, *sv;
	const unsigned char	*sel;
	unsigned int		 len;

	c = conf("listen 8443 tls\ntls_certificate %s %s\n", t.b_pem, t.k_pem);
	assert_int_equal(SSL_CTX_set_alpn_protos(cctx,
	    (const unsigned char *)"\x02h2\x08http/1.1", 12), 0);
	assert_non_null(cl = SSL_new(cctx));
	assert_non_null(sv = tls_server_ssl(c->c_tls));
	SSL_set_connect_state(cl);
	assert_true(tlst_handshake(cl, sv));
	SSL_get0_alpn_selected(cl, &sel, &len);
	assert_int_equal(len, 8);
	assert_memory_equal(sel, "http/1.1", 8);
	SSL_free(cl);
	SSL_free(sv);
	assert_int_equal(SSL_CTX_set_alpn_protos(cctx,
	    (const unsigned char *)"\x02h2", 3), 0);
	assert_false(shake(c, cctx, NULL, NULL, NULL, NULL, NULL));
	SSL_CTX_free(cctx);
	config_free(c);
}

/*
 * The key ring: made once, rotated only when due (an hour old, or the
 * clock went back before its creation), the oldest wiped.
 */
static void
test_ticket_rotation(void **state)
{
	struct shm_tickets	 st;
	uint8_t			 first[16], second[16];

	memset(&st, 0, sizeof(st));
	assert_int_equal(tls_tickets_rotate(&st, 5000), 0);
	assert_int_equal(st.st_nkeys, 1);
	assert_int_equal(st.st_seq, 2);
	assert_int_equal(st.st_keys[0].tk_created, 5000);
	memcpy(first, st.st_keys[0].tk_name, 16);
	assert_int_equal(tls_tickets_rotate(&st, 5000 + 3599), 0);
	assert_int_equal(st.st_nkeys, 1);
	assert_int_equal(st.st_seq, 2);
	assert_int_equal(tls_tickets_rotate(&st, 5000 + 3600), 0);
	assert_int_equal(st.st_nkeys, 2);
	assert_int_equal(st.st_seq, 4);
	assert_memory_equal(st.st_keys[1].tk_name, first, 16);
	assert_memory_not_equal(st.st_keys[0].tk_name, first, 16);
	memcpy(second, st.st_keys[0].tk_name, 16);
	assert_int_equal(tls_tickets_rotate(&st, 5000 + 7200), 0);
	assert_int_equal(st.st_nkeys, 3);
	assert_memory_equal(st.st_keys[2].tk_name, first, 16);
	assert_int_equal(tls_tickets_rotate(&st, 5000 + 10800), 0);
	assert_int_equal(st.st_nkeys, 3);
	assert_memory_equal(st.st_keys[2].tk_name, second, 16);
	assert_int_equal(st.st_keys[2].tk_created, 5000 + 3600);
	assert_int_equal(st.st_seq, 8);
	/* The clock went back: a new key now, then due an hour later. */
	memcpy(first, st.st_keys[0].tk_name, 16);
	assert_int_equal(tls_tickets_rotate(&st, 5000 + 10800 - 1), 0);
	assert_int_equal(st.st_seq, 10);
	assert_int_equal(st.st_nkeys, 3);
	assert_int_equal(st.st_keys[0].tk_created, 5000 + 10800 - 1);
	assert_memory_equal(st.st_keys[1].tk_name, first, 16);
	assert_memory_not_equal(st.st_keys[0].tk_name, first, 16);
	assert_int_equal(tls_tickets_rotate(&st, 5000 + 10800), 0);
	assert_int_equal(tls_tickets_rotate(&st, 5000 + 10800 - 1 + 3599), 0);
	assert_int_equal(st.st_seq, 10);
	assert_int_equal(tls_tickets_rotate(&st, 5000 + 10800 - 1 + 3600), 0);
	assert_int_equal(st.st_seq, 12);
}

/* Does session b carry another ticket than a (a new one was sent)? */
static int
new_ticket(const SSL_SESSION *a, const SSL_SESSION *b)
{
	const unsigned char	*ta, *tb;
	size_t			 la, lb;

	SSL_SESSION_get0_ticket(a, &ta, &la);
	SSL_SESSION_get0_ticket(b, &tb, &lb);
	return (la > 0 && lb > 0 && (la != lb || memcmp(ta, tb, la) != 0));
}

/*
 * A session resumes on another server SSL (another worker), and a TLS 1.3
 * resumption brings a new ticket (a client uses each once), still after
 * one rotation (the old key is accepted), not after three, not with
 * tickets off, not when no keys are attached.
 */
static void
test_tickets(void **state)
{
	struct config	*c, *off;
	SSL_CTX		*cctx = client_ctx(0, 0, NULL);
	SSL_SESSION	*s = NULL, *s2 = NULL;
	int		 reused, i;

	c = conf("listen 8443 tls\ntls_certificate %s %s\n", t.b_pem, t.k_pem);
	off = conf("listen 8443 tls\ntls_certificate %s %s\n"
	    "tls_session_tickets off\n", t.b_pem, t.k_pem);
	assert_true(shake(c, cctx, NULL, NULL, NULL, &s, &reused));
	assert_false(reused);
	assert_true(shake(c, cctx, NULL, s, NULL, &s2, &reused));
	assert_true(reused);
	assert_true(new_ticket(s, s2));	/* TLS 1.3: one ticket, one use */
	SSL_SESSION_free(s2);
	tls_tickets_rotate(&t.tickets, 1000 + 3600);
	assert_true(shake(c, cctx, NULL, s, NULL, &s2, &reused));
	assert_true(reused);
	SSL_SESSION_free(s2);
	for (i = 2; i <= 3; i++)
		tls_tickets_rotate(&t.tickets, 1000 + i * 3600);
	assert_true(shake(c, cctx, NULL, s, NULL, NULL, &reused));
	assert_false(reused);
	SSL_SESSION_free(s);
	assert_true(shake(off, cctx, NULL, NULL, NULL, &s, &reused));
	assert_true(shake(off, cctx, NULL, s, NULL, NULL, &reused));
	assert_false(reused);
	SSL_SESSION_free(s);
	tls_tickets_attach(NULL);
	assert_true(shake(c, cctx, NULL, NULL, NULL, &s, &reused));
	tls_tickets_attach(&t.tickets);
	assert_true(shake(c, cctx, NULL, s, NULL, NULL, &reused));
	assert_false(reused);
	SSL_SESSION_free(s);
	SSL_CTX_free(cctx);
	config_free(c);
	config_free(off);
}

/*
 * Handshake u's client SSL with a server of sc (and read once: a TLS 1.3
 * ticket comes after the handshake); 1 if it succeeded, the client's
 * verify result in *vr.  The client is freed without a close_notify, as
 * a pooled upstream connection often is.
 */
static int
up_shake(struct upstream *u, struct config *sc, long *vr, int *reused)
{
	SSL	*cl, *sv;
	int	 ok;

	assert_non_null(cl = tls_upstream_ssl(u, &u->u_servers[0]));
	assert_non_null(sv = tls_server_ssl(sc->c_tls));
	ok = tlst_handshake(cl, sv);
	*vr = SSL_get_verify_result(cl);
	if (reused != NULL)
		*reused = ok && SSL_session_reused(cl);
	SSL_free(cl);
	SSL_free(sv);
	ERR_clear_error();
	return (ok);
}

/* https upstreams: the CA, verify=off, the name checked, resumption. */
static void
test_upstream(void **state)
{
	struct config	*sv, *sv2, *c;
	long		 vr;
	int		 reused;

	sv = conf("listen 8443 tls\ntls_certificate %s %s\n", t.up_pem,
	    t.k_pem);
	sv2 = conf("listen 8443 tls\ntls_certificate %s %s\n", t.up2_pem,
	    t.k_pem);
	c = conf("upstream ip https://127.0.0.1:8443 ca=%s\n"
	    "upstream name https://127.0.0.1 ca=%s sni=up.example.com\n"
	    "upstream off https://127.0.0.1:8443 ca=%s verify=off\n"
	    "upstream wrong https://127.0.0.1:8443 ca=%s sni=x.example.com\n",
	    t.ca_pem, t.ca_pem, t.ca_pem, t.ca_pem);
	assert_non_null(c->c_upstreams[0].u_ssl_ctx);
	assert_true(up_shake(&c->c_upstreams[0], sv, &vr, &reused));
	assert_int_equal(vr, X509_V_OK);
	assert_false(reused);
	assert_non_null(c->c_upstreams[0].u_ssl_session);
	assert_true(up_shake(&c->c_upstreams[0], sv, &vr, &reused));
	assert_true(reused);
	assert_false(up_shake(&c->c_upstreams[1], sv2, &vr, NULL));
	assert_int_equal(vr, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
	assert_true(up_shake(&c->c_upstreams[1], sv, &vr, NULL));
	assert_int_equal(vr, X509_V_OK);
	assert_true(up_shake(&c->c_upstreams[2], sv2, &vr, NULL));
	assert_false(up_shake(&c->c_upstreams[3], sv, &vr, NULL));
	assert_int_equal(vr, X509_V_ERR_HOSTNAME_MISMATCH);
	config_free(c);
	config_free(sv);
	config_free(sv2);
}

/*
 * An https upstream keeps the sessions the server issues and resumes
 * them, with TLS 1.3 (the ticket arrives after the handshake) and 1.2,
 * although every connection ends without a close_notify.
 */
static void
test_upstream_resume(void **state)
{
	struct config	*sv13, *sv12, *c;
	struct upstream	*u;
	long		 vr;
	int		 reused, i;

	sv13 = conf("listen 8443 tls\ntls_certificate %s %s\n"
	    "tls_protocols TLSv1.3\n", t.up_pem, t.k_pem);
	sv12 = conf("listen 8443 tls\ntls_certificate %s %s\n"
	    "tls_protocols TLSv1.2\n", t.up_pem, t.k_pem);
	c = conf("upstream a https://127.0.0.1:8443 ca=%s\n"
	    "upstream b https://127.0.0.1:8443 ca=%s\n", t.ca_pem, t.ca_pem);
	for (i = 0; i < 2; i++) {
		u = &c->c_upstreams[i];
		assert_null(u->u_ssl_session);
		assert_true(up_shake(u, i == 0 ? sv13 : sv12, &vr, &reused));
		assert_false(reused);
		assert_non_null(u->u_ssl_session);
		assert_int_equal(SSL_SESSION_get_protocol_version(
		    u->u_ssl_session), i == 0 ? TLS1_3_VERSION : TLS1_2_VERSION);
		assert_true(up_shake(u, i == 0 ? sv13 : sv12, &vr, &reused));
		assert_true(reused);
		assert_true(up_shake(u, i == 0 ? sv13 : sv12, &vr, &reused));
		assert_true(reused);
	}
	config_free(c);
	config_free(sv13);
	config_free(sv12);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_build_ok),
		cmocka_unit_test(test_build_errors),
		cmocka_unit_test(test_expired),
		cmocka_unit_test(test_expired_chain),
		cmocka_unit_test(test_sni),
		cmocka_unit_test(test_key_types),
		cmocka_unit_test(test_protocols),
		cmocka_unit_test(test_alpn),
		cmocka_unit_test(test_ticket_rotation),
		cmocka_unit_test(test_tickets),
		cmocka_unit_test(test_upstream),
		cmocka_unit_test(test_upstream_resume),
	};

	return (cmocka_run_group_tests(tests, setup, teardown));
}
