/*
 * Keys, certificates and in-memory handshakes for the TLS tests.  See
 * tlstest.h.
 */

#include <sys/stat.h>

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "tlstest.h"

/* Stop the test (or the fuzzer's set-up) when a helper fails. */
#define TLST_CHECK(e)	do {						\
	if (!(e)) {							\
		fprintf(stderr, "%s:%d: %s failed\n", __FILE__,	\
		    __LINE__, #e);					\
		abort();						\
	}								\
} while (0)

/* A new temporary directory. */
char *
tlst_mkdir(void)
{
	char	*d;

	TLST_CHECK((d = strdup("/tmp/kgtlsXXXXXX")) != NULL);
	TLST_CHECK(mkdtemp(d) != NULL);
	return (d);
}

/* Remove dir and the files in it, and free the path. */
void
tlst_rmdir(char *dir)
{
	DIR		*d;
	struct dirent	*e;
	char		 p[1024];

	if ((d = opendir(dir)) != NULL) {
		while ((e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") == 0 ||
			    strcmp(e->d_name, "..") == 0)
				continue;
			snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
			unlink(p);
		}
		closedir(d);
	}
	rmdir(dir);
	free(dir);
}

/* A new RSA-2048 or P-256 key. */
EVP_PKEY *
tlst_key(const char *type)
{
	EVP_PKEY	*k;

	if (strcmp(type, "RSA") == 0)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	else
		k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	TLST_CHECK(k != NULL);
	return (k);
}

/* Add extension nid with value v to x (issued by issuer). */
static void
tlst_ext(X509 *x, X509 *issuer, int nid, const char *v)
{
	X509V3_CTX	 ctx;
	X509_EXTENSION	*e;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	TLST_CHECK((e = X509V3_EXT_conf_nid(NULL, &ctx, nid, v)) != NULL);
	TLST_CHECK(X509_add_ext(x, e, -1) == 1);
	X509_EXTENSION_free(e);
}

/* A certificate (see tlstest.h). */
X509 *
tlst_cert(EVP_PKEY *key, const char *cn, const char *sans, int days_from,
    int days_to, X509 *ca, EVP_PKEY *ca_key)
{
	static long	 serial = 1;
	X509		*x;
	X509_NAME	*n;
	char		 buf[1024], *s, *w, *save = NULL;
	size_t		 len = 0;

	TLST_CHECK((x = X509_new()) != NULL);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	X509_gmtime_adj(X509_getm_notBefore(x), (long)days_from * 86400);
	X509_gmtime_adj(X509_getm_notAfter(x), (long)days_to * 86400);
	TLST_CHECK(X509_set_pubkey(x, key) == 1);
	n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, ca != NULL ? X509_get_subject_name(ca) : n);
	if (ca == NULL)
		tlst_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
	else
		tlst_ext(x, ca, NID_basic_constraints, "CA:FALSE");
	if (sans != NULL) {
		TLST_CHECK((s = strdup(sans)) != NULL);
		buf[0] = '\0';
		for (w = strtok_r(s, ",", &save); w != NULL;
		    w = strtok_r(NULL, ",", &save))
			len += snprintf(buf + len, sizeof(buf) - len, "%s%s:%s",
			    len == 0 ? "" : ",",
			    strspn(w, "0123456789.") == strlen(w) ? "IP" : "DNS",
			    w);
		free(s);
		tlst_ext(x, ca != NULL ? ca : x, NID_subject_alt_name, buf);
	}
	TLST_CHECK(X509_sign(x, ca_key != NULL ? ca_key : key,
	    EVP_sha256()) > 0);
	return (x);
}

/* Open dir/name for writing; the path in *path. */
static FILE *
tlst_open(const char *dir, const char *name, char **path)
{
	FILE	*f;

	TLST_CHECK(asprintf(path, "%s/%s", dir, name) > 0);
	TLST_CHECK((f = fopen(*path, "w")) != NULL);
	return (f);
}

/* Write x as PEM. */
char *
tlst_write_cert(const char *dir, const char *name, X509 *x)
{
	FILE	*f;
	char	*path;

	f = tlst_open(dir, name, &path);
	TLST_CHECK(PEM_write_X509(f, x) == 1);
	fclose(f);
	return (path);
}

/* Write key as PEM (PKCS#8, unencrypted). */
char *
tlst_write_key(const char *dir, const char *name, EVP_PKEY *key)
{
	FILE	*f;
	char	*path;

	f = tlst_open(dir, name, &path);
	TLST_CHECK(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL,
	    NULL) == 1);
	fclose(f);
	return (path);
}

/* Write text. */
char *
tlst_write_file(const char *dir, const char *name, const char *text)
{
	FILE	*f;
	char	*path;

	f = tlst_open(dir, name, &path);
	fputs(text, f);
	fclose(f);
	return (path);
}

/* Handshake both ends over a BIO pair (see tlstest.h). */
int
tlst_handshake(SSL *client, SSL *server)
{
	BIO		*cb, *sb;
	char		 c;
	int		 i, cd = 0, sd = 0, r, e;

	TLST_CHECK(BIO_new_bio_pair(&cb, 0, &sb, 0) == 1);
	SSL_set_bio(client, cb, cb);
	SSL_set_bio(server, sb, sb);
	for (i = 0; i < 100 && (!cd || !sd); i++) {
		if (!cd) {
			if ((r = SSL_do_handshake(client)) == 1)
				cd = 1;
			else if ((e = SSL_get_error(client, r)) !=
			    SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
				return (0);
		}
		if (!sd) {
			if ((r = SSL_do_handshake(server)) == 1)
				sd = 1;
			else if ((e = SSL_get_error(server, r)) !=
			    SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
				return (0);
		}
	}
	if (!cd || !sd)
		return (0);
	(void)SSL_read(client, &c, 1);
	return (1);
}

/* Parse the configuration printed from fmt; see tlstest.h. */
struct config *
tlst_conf(const char *name, const char *fmt, ...)
{
	struct config	*c;
	char		 text[4096], err[CONFIG_ERRLEN] = "";
	va_list		 ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if ((c = config_parse(text, name, err, sizeof(err))) == NULL) {
		fprintf(stderr, "config did not parse: %s\n%s", err, text);
		abort();
	}
	return (c);
}
