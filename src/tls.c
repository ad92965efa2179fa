/*
 * TLS with OpenSSL 3: the listeners' server contexts chosen by SNI, the
 * session ticket keys shared through the segment, and the client contexts
 * of https upstreams.  See tls.h.
 *
 * Every context is built in the master while a configuration loads and is
 * inherited by the workers across fork(); a worker only makes SSL objects
 * from them.  Errors are "FILE:LINE: reason" in the caller's buffer and
 * never carry key material: OpenSSL's reason strings name what failed, not
 * what was read.
 */

#include <sys/types.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "log.h"
#include "shm.h"
#include "tls.h"

#define TLS_GROUPS		"X25519:prime256v1:secp384r1"
#define TLS_ALPN_HTTP11		"\x08http/1.1"
#define TLS_ALPN_HTTP11_LEN	9
#define TLS_MAX_KEYTYPES	4	/* RSA, RSA-PSS, EC, Ed25519 ... */
#define TLS_SEQ_TRIES		1000	/* seqlock reads before giving up */
#define TLS_MAX_PEM		(1024 * 1024)	/* bytes of a PEM file */

/* One context: the certificates of one set of names, one per key type. */
struct tls_ctx {
	SSL_CTX		*tx_ctx;
	char		**tx_names;	/* lower case, sorted, unique */
	size_t		 tx_nnames;
	int		 tx_types[TLS_MAX_KEYTYPES];	/* EVP_PKEY_* base ids */
	int		 tx_lines[TLS_MAX_KEYTYPES];	/* tls_certificate lines */
	int		 tx_ntypes;
};

struct tls_server {
	struct tls_ctx	*ts_ctx;	/* [0]: the default */
	size_t		 ts_nctx;
};

/* The keys the ticket callback uses in this process (tls_tickets_attach). */
static struct shm_tickets *tls_tickets;

/* The SSL ex_data index of an upstream connection's struct upstream. */
static int tls_upstream_idx = -1;

/* Write "FILE:LINE: reason" into err; always -1. */
static int
tls_err(char *err, size_t errlen, const char *file, int line,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int
tls_err(char *err, size_t errlen, const char *file, int line,
    const char *fmt, ...)
{
	char	 msg[CONFIG_ERRLEN];
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		snprintf(err, errlen, "%s:%d: %s", file, line, msg);
	else
		snprintf(err, errlen, "%s: %s", file, msg);
	return (-1);
}

/* The reason of OpenSSL's most recent error, and clear the queue. */
static const char *
tls_reason(void)
{
	unsigned long	 e = ERR_peek_last_error();
	const char	*r = ERR_reason_error_string(e);

	ERR_clear_error();
	return (r != NULL ? r : "unknown OpenSSL error");
}

/* A password callback that refuses: an encrypted key is an error, no prompt. */
static int
tls_no_password(char *buf, int size, int rwflag, void *arg)
{
	return (-1);
}

/* qsort comparator for name lists. */
static int
tls_name_cmp(const void *a, const void *b)
{
	return (strcmp(*(char *const *)a, *(char *const *)b));
}

/* Free a list of n names. */
static void
tls_names_free(char **names, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* Append a lower-cased copy of s[0..len) to *names unless already there. */
static int
tls_name_add(char ***names, size_t *n, const char *s, size_t len)
{
	char	**nn, *d;
	size_t	 i;

	if (len == 0 || memchr(s, '\0', len) != NULL)
		return (0);
	if ((d = strndup(s, len)) == NULL)
		return (-1);
	for (i = 0; i < len; i++)
		d[i] = tolower((unsigned char)d[i]);
	for (i = 0; i < *n; i++)
		if (strcmp((*names)[i], d) == 0) {
			free(d);
			return (0);
		}
	if ((nn = reallocarray(*names, *n + 1, sizeof(*nn))) == NULL) {
		free(d);
		return (-1);
	}
	*names = nn;
	nn[(*n)++] = d;
	return (0);
}

/*
 * The names x is for: its DNS subjectAltNames, else its subject CN;
 * lower case, sorted, so that equal sets compare equal.  0 or -1 (memory).
 */
static int
tls_cert_names(X509 *x, char ***names, size_t *n)
{
	GENERAL_NAMES		*gens;
	const GENERAL_NAME	*g;
	X509_NAME		*subj;
	ASN1_STRING		*cn;
	int			 i, rc = 0;

	*names = NULL;
	*n = 0;
	gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	for (i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
		g = sk_GENERAL_NAME_value(gens, i);
		if (g->type == GEN_DNS && tls_name_add(names, n,
		    (const char *)ASN1_STRING_get0_data(g->d.dNSName),
		    (size_t)ASN1_STRING_length(g->d.dNSName)) == -1)
			rc = -1;
	}
	GENERAL_NAMES_free(gens);
	if (rc == 0 && *n == 0 && (subj = X509_get_subject_name(x)) != NULL &&
	    (i = X509_NAME_get_index_by_NID(subj, NID_commonName, -1)) >= 0) {
		cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i));
		rc = tls_name_add(names, n,
		    (const char *)ASN1_STRING_get0_data(cn),
		    (size_t)ASN1_STRING_length(cn));
	}
	if (rc == 0 && *n > 1)
		qsort(*names, *n, sizeof(**names), tls_name_cmp);
	return (rc);
}

/* Are the two sorted lists equal? */
static int
tls_names_equal(char **a, size_t na, char **b, size_t nb)
{
	size_t	 i;

	if (na != nb)
		return (0);
	for (i = 0; i < na; i++)
		if (strcmp(a[i], b[i]) != 0)
			return (0);
	return (1);
}

/* Print t (an ASN1_TIME) into buf, "?" if it cannot be. */
static void
tls_time_str(const ASN1_TIME *t, char *buf, size_t len)
{
	BIO	*mem;
	int	 n;

	snprintf(buf, len, "?");
	if ((mem = BIO_new(BIO_s_mem())) == NULL)
		return;
	if (ASN1_TIME_print(mem, t) == 1 &&
	    (n = BIO_read(mem, buf, (int)len - 1)) > 0)
		buf[n] = '\0';
	BIO_free(mem);
}

/* x's subject as one RFC 2253 line (control characters escaped). */
static void
tls_subject_str(X509 *x, char *buf, size_t len)
{
	BIO	*mem;
	int	 n;

	snprintf(buf, len, "?");
	if ((mem = BIO_new(BIO_s_mem())) == NULL)
		return;
	if (X509_NAME_print_ex(mem, X509_get_subject_name(x), 0,
	    XN_FLAG_RFC2253) >= 0 && (n = BIO_read(mem, buf, (int)len - 1)) > 0)
		buf[n] = '\0';
	BIO_free(mem);
}

/*
 * Warn when x, certificate n of path (0: the leaf, else the nth of the
 * chain after it), is expired or not valid yet: the load goes on.
 */
static void
tls_cert_dates(X509 *x, int n, const char *file, int line, const char *path)
{
	const ASN1_TIME	*nb = X509_get0_notBefore(x), *na = X509_get0_notAfter(x);
	char		 b[64], a[64], subj[256];
	int		 expired, early;

	expired = X509_cmp_current_time(na) < 0;
	early = X509_cmp_current_time(nb) > 0;
	if (!expired && !early)
		return;
	tls_time_str(nb, b, sizeof(b));
	tls_time_str(na, a, sizeof(a));
	if (n == 0) {
		log_warnx("%s:%d: tls_certificate %s is %s (valid from %s "
		    "until %s)", file, line, path, expired ? "expired" :
		    "not valid yet", b, a);
		return;
	}
	tls_subject_str(x, subj, sizeof(subj));
	log_warnx("%s:%d: tls_certificate %s: chain certificate %d (%s) is "
	    "%s (valid from %s until %s)", file, line, path, n, subj,
	    expired ? "expired" : "not valid yet", b, a);
}

/* Warn for each certificate of ctx's current chain that is out of date. */
static void
tls_chain_dates(SSL_CTX *ctx, const char *file, int line, const char *path)
{
	STACK_OF(X509)	*chain = NULL;
	int		 i;

	if (SSL_CTX_get0_chain_certs(ctx, &chain) != 1 || chain == NULL)
		return;
	for (i = 0; i < sk_X509_num(chain); i++)
		tls_cert_dates(sk_X509_value(chain, i), i + 1, file, line, path);
}

/*
 * Open path for reading if it is a regular file of at most TLS_MAX_PEM
 * bytes (a device or a FIFO named by mistake would never end or never
 * come); NULL with the reason in *why.
 */
static FILE *
tls_open_pem(const char *path, const char **why)
{
	struct stat	 st;
	FILE		*f;

	if ((f = fopen(path, "re")) == NULL) {
		*why = strerror(errno);
		return (NULL);
	}
	if (fstat(fileno(f), &st) == -1 || !S_ISREG(st.st_mode) ||
	    st.st_size > TLS_MAX_PEM) {
		*why = "not a regular file of at most 1 MiB";
		fclose(f);
		return (NULL);
	}
	return (f);
}

/*
 * Read the first certificate of path (the leaf) and its private key at
 * keypath, and check that they belong together.
 */
static int
tls_read_pair(const struct tls_cert_conf *tc, const char *file, X509 **xp,
    EVP_PKEY **kp, char *err, size_t errlen)
{
	FILE		*f;
	const char	*why;

	*xp = NULL;
	*kp = NULL;
	if ((f = tls_open_pem(tc->tc_cert, &why)) == NULL)
		return (tls_err(err, errlen, file, tc->tc_line, "tls_certificate: "
		    "cannot open %s: %s", tc->tc_cert, why));
	*xp = PEM_read_X509(f, NULL, tls_no_password, NULL);
	fclose(f);
	if (*xp == NULL)
		return (tls_err(err, errlen, file, tc->tc_line, "tls_certificate: "
		    "%s is not a PEM certificate (%s)", tc->tc_cert,
		    tls_reason()));
	if ((f = tls_open_pem(tc->tc_key, &why)) == NULL)
		return (tls_err(err, errlen, file, tc->tc_line, "tls_certificate: "
		    "cannot open %s: %s", tc->tc_key, why));
	*kp = PEM_read_PrivateKey(f, NULL, tls_no_password, NULL);
	fclose(f);
	if (*kp == NULL) {
		ERR_clear_error();
		return (tls_err(err, errlen, file, tc->tc_line, "tls_certificate: "
		    "%s is not a PEM private key, or is encrypted", tc->tc_key));
	}
	if (X509_check_private_key(*xp, *kp) != 1) {
		ERR_clear_error();
		return (tls_err(err, errlen, file, tc->tc_line, "tls_certificate: "
		    "the key %s does not match the certificate %s", tc->tc_key,
		    tc->tc_cert));
	}
	return (0);
}

/*
 * ALPN: http/1.1 or nothing.  in is the client's list of length-prefixed
 * names; a client that offers ALPN without http/1.1 gets a fatal
 * no_application_protocol alert.  (Called only when ALPN was offered.)
 */
static int
tls_alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	unsigned int	 i, n;

	for (i = 0; i < inlen; i += n + 1) {
		n = in[i];
		if (i + 1 + n > inlen)
			break;
		if (n == TLS_ALPN_HTTP11_LEN - 1 &&
		    memcmp(in + i + 1, "http/1.1", n) == 0) {
			*out = in + i + 1;
			*outlen = (unsigned char)n;
			return (SSL_TLSEXT_ERR_OK);
		}
	}
	return (SSL_TLSEXT_ERR_ALERT_FATAL);
}

/* Does the wildcard "*.example.com" cover name (exactly one label)? */
static int
tls_wildcard_match(const char *pat, const char *name)
{
	const char	*dot;

	if (pat[0] != '*' || pat[1] != '.')
		return (0);
	if ((dot = strchr(name, '.')) == NULL || dot == name)
		return (0);
	return (strcasecmp(dot + 1, pat + 2) == 0);
}

/*
 * The context for an SNI name: one whose names hold it exactly, else one
 * whose wildcard covers it, else the default ([0]).
 */
static struct tls_ctx *
tls_lookup(struct tls_server *ts, const char *name)
{
	size_t	 i, j;

	if (name == NULL)
		return (&ts->ts_ctx[0]);
	for (i = 0; i < ts->ts_nctx; i++)
		for (j = 0; j < ts->ts_ctx[i].tx_nnames; j++)
			if (strcasecmp(ts->ts_ctx[i].tx_names[j], name) == 0)
				return (&ts->ts_ctx[i]);
	for (i = 0; i < ts->ts_nctx; i++)
		for (j = 0; j < ts->ts_ctx[i].tx_nnames; j++)
			if (tls_wildcard_match(ts->ts_ctx[i].tx_names[j], name))
				return (&ts->ts_ctx[i]);
	return (&ts->ts_ctx[0]);
}

/* SNI: move ssl to the context for its server name; never an alert. */
static int
tls_sni_cb(SSL *ssl, int *alert, void *arg)
{
	struct tls_server	*ts = arg;
	struct tls_ctx		*tx;

	tx = tls_lookup(ts, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
	if (tx->tx_ctx != SSL_get_SSL_CTX(ssl) &&
	    SSL_set_SSL_CTX(ssl, tx->tx_ctx) == NULL)
		return (SSL_TLSEXT_ERR_ALERT_FATAL);
	return (SSL_TLSEXT_ERR_OK);
}

/*
 * Copy the ticket keys out of the segment into keys.  The seqlock (shm.h):
 * st_seq is read with acquire, the keys are copied, an acquire fence
 * orders the copy before the second read of st_seq; if both reads saw the
 * same even value, no write overlapped the copy (the master makes st_seq
 * odd before it writes and even again, with release, after), so the copy
 * is one consistent set.  A torn copy is possible but always discarded.
 * After TLS_SEQ_TRIES failed attempts (a master that died mid-write)
 * there are no keys: no ticket is made or accepted.  Returns st_nkeys.
 */
static uint32_t
tls_tickets_read(const struct shm_tickets *st, struct shm_ticket_key *keys)
{
	uint32_t	 s1, s2, n;
	int		 i;

	for (i = 0; i < TLS_SEQ_TRIES; i++) {
		s1 = __atomic_load_n(&st->st_seq, __ATOMIC_ACQUIRE);
		if (s1 & 1)
			continue;
		n = st->st_nkeys;
		memcpy(keys, st->st_keys, sizeof(st->st_keys));
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		s2 = __atomic_load_n(&st->st_seq, __ATOMIC_RELAXED);
		if (s1 == s2)
			return (n <= SHM_TICKET_KEYS ? n : 0);
	}
	return (0);
}

/*
 * The ticket cipher, fetched once: EVP_aes_256_cbc() would look the
 * implementation up in the provider store for every ticket.  Fetched by
 * the first ticket of each worker, or before the fork when the master
 * builds the contexts (tls_server_build()).
 */
static EVP_CIPHER	*tls_ticket_cipher;

/* The ticket cipher, fetched on first use; NULL if it cannot be. */
static EVP_CIPHER *
tls_ticket_fetch(void)
{
	if (tls_ticket_cipher == NULL)
		tls_ticket_cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
	return (tls_ticket_cipher);
}

/* Key the ticket cipher and MAC with k; 1, or -1 on error. */
static int
tls_ticket_init(const struct shm_ticket_key *k, unsigned char *iv,
    EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
	OSSL_PARAM	 params[3];

	params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY,
	    (void *)k->tk_hmac, sizeof(k->tk_hmac));
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    (char *)"SHA256", 0);
	params[2] = OSSL_PARAM_construct_end();
	if (tls_ticket_fetch() == NULL ||
	    EVP_CipherInit_ex(cctx, tls_ticket_cipher, NULL, k->tk_aes, iv,
	    enc) != 1 || EVP_MAC_CTX_set_params(hctx, params) != 1)
		return (-1);
	return (1);
}

/*
 * The ticket key callback (SSL_CTX_set_tlsext_ticket_key_evp_cb).
 * Encrypting (enc 1): with the current key [0], a fresh random IV; no
 * keys (not attached, none made yet, or the seqlock unreadable): 0, no
 * ticket.  Decrypting: the key whose name the ticket carries, among the
 * three; none: 0, a full handshake; found but not current: 2, the
 * session resumes and gets a ticket under the current key.  The keys are
 * copied to the stack under the seqlock and wiped before returning.
 */
static int
tls_ticket_cb(SSL *ssl, unsigned char *name, unsigned char *iv,
    EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
	struct shm_ticket_key	 keys[SHM_TICKET_KEYS];
	uint32_t		 n, i;
	int			 rc = 0;

	if (tls_tickets == NULL ||
	    (n = tls_tickets_read(tls_tickets, keys)) == 0)
		goto done;
	if (enc) {
		if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1) {
			rc = -1;
			goto done;
		}
		memcpy(name, keys[0].tk_name, sizeof(keys[0].tk_name));
		rc = tls_ticket_init(&keys[0], iv, cctx, hctx, 1);
		goto done;
	}
	for (i = 0; i < n; i++)
		if (memcmp(name, keys[i].tk_name, sizeof(keys[i].tk_name)) == 0)
			break;
	if (i == n)
		goto done;
	rc = tls_ticket_init(&keys[i], iv, cctx, hctx, 0);
	/*
	 * Renew (2) a ticket made with an older key, and every TLS 1.3
	 * ticket: a TLS 1.3 client uses a ticket once (RFC 8446, C.4), and
	 * OpenSSL sends a new one after a resumption only when asked to, so
	 * without it every other handshake of a client would be a full one.
	 */
	if (rc == 1 && (i != 0 || SSL_version(ssl) == TLS1_3_VERSION))
		rc = 2;
done:
	OPENSSL_cleanse(keys, sizeof(keys));
	return (rc);
}

/* A new server context with conf's protocols, ciphers and callbacks. */
static SSL_CTX *
tls_ctx_new(struct config *conf, struct tls_server *ts, char *err,
    size_t errlen)
{
	SSL_CTX	*ctx;
	int	 lo, hi;

	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		tls_err(err, errlen, conf->c_path, 0, "cannot make a TLS "
		    "context: %s", tls_reason());
		return (NULL);
	}
	lo = conf->c_tls_protocols & TLS_PROTO_TLSv1_2 ? TLS1_2_VERSION :
	    TLS1_3_VERSION;
	hi = conf->c_tls_protocols & TLS_PROTO_TLSv1_3 ? TLS1_3_VERSION :
	    TLS1_2_VERSION;
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_clear_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS |
	    SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_read_ahead(ctx, 1);		/* one read(2): see io.c */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_default_passwd_cb(ctx, tls_no_password);
	SSL_CTX_set_alpn_select_cb(ctx, tls_alpn_cb, NULL);
	SSL_CTX_set_tlsext_servername_callback(ctx, tls_sni_cb);
	SSL_CTX_set_tlsext_servername_arg(ctx, ts);
	if (conf->c_tls_tickets)
		SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, tls_ticket_cb);
	else {
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_num_tickets(ctx, 0);
	}
	if (SSL_CTX_set_min_proto_version(ctx, lo) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, hi) != 1 ||
	    SSL_CTX_set_dh_auto(ctx, 1) != 1 ||
	    SSL_CTX_set1_groups_list(ctx, TLS_GROUPS) != 1 ||
	    SSL_CTX_set_cipher_list(ctx, conf->c_tls_ciphers) != 1 ||
	    SSL_CTX_set_ciphersuites(ctx, conf->c_tls_ciphersuites) != 1) {
		tls_err(err, errlen, conf->c_path, 0, "cannot set up a TLS "
		    "context (tls_protocols, tls_ciphers, tls_ciphersuites): %s",
		    tls_reason());
		SSL_CTX_free(ctx);
		return (NULL);
	}
	return (ctx);
}

/*
 * The context for names: an existing one with exactly those names, or a
 * new one appended to ts (which then owns names).  NULL with err set.
 */
static struct tls_ctx *
tls_ctx_for(struct config *conf, struct tls_server *ts, char ***names,
    size_t *nnames, char *err, size_t errlen)
{
	struct tls_ctx	*tx;
	size_t		 i;

	for (i = 0; i < ts->ts_nctx; i++)
		if (tls_names_equal(ts->ts_ctx[i].tx_names,
		    ts->ts_ctx[i].tx_nnames, *names, *nnames))
			return (&ts->ts_ctx[i]);
	tx = reallocarray(ts->ts_ctx, ts->ts_nctx + 1, sizeof(*tx));
	if (tx == NULL) {
		tls_err(err, errlen, conf->c_path, 0, "out of memory");
		return (NULL);
	}
	ts->ts_ctx = tx;
	tx = &ts->ts_ctx[ts->ts_nctx];
	memset(tx, 0, sizeof(*tx));
	if ((tx->tx_ctx = tls_ctx_new(conf, ts, err, errlen)) == NULL)
		return (NULL);
	ts->ts_nctx++;
	tx->tx_names = *names;
	tx->tx_nnames = *nnames;
	*names = NULL;
	*nnames = 0;
	return (tx);
}

/* Add the certificate and key of one tls_certificate line to its context. */
static int
tls_add_cert(struct config *conf, struct tls_server *ts,
    const struct tls_cert_conf *tc, char *err, size_t errlen)
{
	const char	*file = conf->c_path;
	struct tls_ctx	*tx;
	X509		*x;
	EVP_PKEY	*k;
	char		**names = NULL;
	size_t		 nnames = 0;
	int		 type, i, rc = -1;

	if (tls_read_pair(tc, file, &x, &k, err, errlen) == -1)
		goto done;
	if (tls_cert_names(x, &names, &nnames) == -1) {
		tls_err(err, errlen, file, tc->tc_line, "out of memory");
		goto done;
	}
	tls_cert_dates(x, 0, file, tc->tc_line, tc->tc_cert);
	if ((tx = tls_ctx_for(conf, ts, &names, &nnames, err, errlen)) == NULL)
		goto done;
	type = EVP_PKEY_get_base_id(k);
	for (i = 0; i < tx->tx_ntypes; i++)
		if (tx->tx_types[i] == type) {
			tls_err(err, errlen, file, tc->tc_line, "tls_certificate: "
			    "%s has the same names and key type as the "
			    "certificate at line %d", tc->tc_cert,
			    tx->tx_lines[i]);
			goto done;
		}
	if (tx->tx_ntypes == TLS_MAX_KEYTYPES) {
		tls_err(err, errlen, file, tc->tc_line, "tls_certificate: too "
		    "many key types for the names of %s", tc->tc_cert);
		goto done;
	}
	if (SSL_CTX_use_certificate_chain_file(tx->tx_ctx, tc->tc_cert) != 1 ||
	    SSL_CTX_use_PrivateKey(tx->tx_ctx, k) != 1 ||
	    SSL_CTX_check_private_key(tx->tx_ctx) != 1) {
		tls_err(err, errlen, file, tc->tc_line, "tls_certificate: "
		    "cannot use %s with %s: %s", tc->tc_cert, tc->tc_key,
		    tls_reason());
		goto done;
	}
	tls_chain_dates(tx->tx_ctx, file, tc->tc_line, tc->tc_cert);
	tx->tx_types[tx->tx_ntypes] = type;
	tx->tx_lines[tx->tx_ntypes++] = tc->tc_line;
	rc = 0;
done:
	tls_names_free(names, nnames);
	X509_free(x);
	EVP_PKEY_free(k);
	return (rc);
}

/* Build the listeners' contexts into conf->c_tls (see tls.h). */
int
tls_server_build(struct config *conf, char *err, size_t errlen)
{
	struct tls_server	*ts;
	size_t			 i;

	if (conf->c_ntls_certs == 0)
		return (tls_err(err, errlen, conf->c_path, 0,
		    "no tls_certificate is configured"));
	if ((ts = calloc(1, sizeof(*ts))) == NULL)
		return (tls_err(err, errlen, conf->c_path, 0, "out of memory"));
	(void)tls_ticket_fetch();	/* before the fork: workers share it */
	for (i = 0; i < conf->c_ntls_certs; i++)
		if (tls_add_cert(conf, ts, &conf->c_tls_certs[i], err,
		    errlen) == -1) {
			tls_server_free(ts);
			return (-1);
		}
	tls_server_free(conf->c_tls);
	conf->c_tls = ts;
	return (0);
}

/* Free the contexts of ts. */
void
tls_server_free(struct tls_server *ts)
{
	size_t	 i;

	if (ts == NULL)
		return;
	for (i = 0; i < ts->ts_nctx; i++) {
		SSL_CTX_free(ts->ts_ctx[i].tx_ctx);
		tls_names_free(ts->ts_ctx[i].tx_names,
		    ts->ts_ctx[i].tx_nnames);
	}
	free(ts->ts_ctx);
	free(ts);
}

/* A server-side SSL for an accepted connection, on the default context. */
SSL *
tls_server_ssl(struct tls_server *ts)
{
	SSL	*ssl;

	if ((ssl = SSL_new(ts->ts_ctx[0].tx_ctx)) == NULL)
		return (NULL);
	SSL_set_accept_state(ssl);
	return (ssl);
}

/* Is s an IPv4 or IPv6 address literal? */
static int
tls_is_ip(const char *s)
{
	struct in6_addr	 a6;
	struct in_addr	 a4;

	return (inet_pton(AF_INET, s, &a4) == 1 ||
	    inet_pton(AF_INET6, s, &a6) == 1);
}

/* The host of us_host ("host[:port]", "[v6][:port]") into buf. */
static void
tls_upstream_host(const struct upstream_server *us, char *buf, size_t len)
{
	const char	*h = us->us_host != NULL ? us->us_host : "";
	size_t		 n;

	if (*h == '[') {
		h++;
		n = strcspn(h, "]");
	} else
		n = strcspn(h, ":");
	if (n >= len)
		n = len - 1;
	memcpy(buf, h, n);
	buf[n] = '\0';
}

/*
 * OpenSSL's new-session callback on an upstream context: keep a copy of
 * each resumable session the server issues for the upstream the
 * connection is to (tls_upstream_ssl() put it in the ex_data).  TLS 1.3
 * sessions come in NewSessionTicket messages after the handshake, read
 * with the first response bytes; TLS 1.2's at the end of the handshake.
 * A copy, not the session itself: OpenSSL marks a connection's own
 * session as not resumable when the connection is freed without a
 * close_notify, which pooled upstream connections often are.  Returns 0:
 * OpenSSL keeps and frees its own reference.
 */
static int
tls_upstream_new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct upstream	*u;
	SSL_SESSION	*d;

	if (tls_upstream_idx < 0 ||
	    (u = SSL_get_ex_data(ssl, tls_upstream_idx)) == NULL ||
	    !SSL_SESSION_is_resumable(sess) ||
	    (d = SSL_SESSION_dup(sess)) == NULL)
		return (0);
	SSL_SESSION_free(u->u_ssl_session);
	u->u_ssl_session = d;
	return (0);
}

/* Build u's client context (see tls.h). */
int
tls_upstream_build(struct upstream *u, const char *file, char *err,
    size_t errlen)
{
	SSL_CTX		*ctx;
	FILE		*f;
	const char	*why;

	if (tls_upstream_idx < 0 && (tls_upstream_idx = SSL_get_ex_new_index(0,
	    NULL, NULL, NULL, NULL)) < 0)
		return (tls_err(err, errlen, file, u->u_line, "upstream \"%s\": "
		    "cannot make a TLS context: %s", u->u_name, tls_reason()));
	if (u->u_ca != NULL) {
		if ((f = tls_open_pem(u->u_ca, &why)) == NULL)
			return (tls_err(err, errlen, file, u->u_line, "upstream "
			    "\"%s\": ca %s: %s", u->u_name, u->u_ca, why));
		fclose(f);
	}
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		return (tls_err(err, errlen, file, u->u_line, "upstream \"%s\": "
		    "cannot make a TLS context: %s", u->u_name, tls_reason()));
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS |
	    SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_read_ahead(ctx, 1);		/* one read(2): see io.c */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_verify(ctx, u->u_verify ? SSL_VERIFY_PEER :
	    SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
	    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, tls_upstream_new_session);
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)
	    TLS_ALPN_HTTP11, TLS_ALPN_HTTP11_LEN) != 0) {
		SSL_CTX_free(ctx);
		return (tls_err(err, errlen, file, u->u_line, "upstream \"%s\": "
		    "cannot set up a TLS context: %s", u->u_name,
		    tls_reason()));
	}
	if (u->u_ca != NULL ?
	    SSL_CTX_load_verify_locations(ctx, u->u_ca, NULL) != 1 :
	    SSL_CTX_set_default_verify_paths(ctx) != 1) {
		SSL_CTX_free(ctx);
		return (tls_err(err, errlen, file, u->u_line, "upstream \"%s\": "
		    "cannot load the CA certificates %s: %s", u->u_name,
		    u->u_ca != NULL ? u->u_ca : "(system)", tls_reason()));
	}
	tls_upstream_free(u);
	u->u_ssl_ctx = ctx;
	return (0);
}

/* Free u's client context and remembered session. */
void
tls_upstream_free(struct upstream *u)
{
	SSL_CTX_free(u->u_ssl_ctx);
	u->u_ssl_ctx = NULL;
	SSL_SESSION_free(u->u_ssl_session);
	u->u_ssl_session = NULL;
}

/*
 * A client-side SSL for a connection to u.  The name sent as SNI and
 * verified is sni= or the URL's host; an IP address is not sent (RFC
 * 6066 3) and is verified against the certificate's IP addresses.  u
 * goes into the SSL's ex_data, where tls_upstream_new_session() finds it.
 * The session offered is a copy of u's: a resumed connection freed
 * without a close_notify would make u's own not resumable.
 */
SSL *
tls_upstream_ssl(struct upstream *u, const struct upstream_server *us)
{
	SSL_SESSION	*d;
	SSL		*ssl;
	char		 host[256];
	int		 ok;

	if (u->u_sni != NULL)
		snprintf(host, sizeof(host), "%s", u->u_sni);
	else
		tls_upstream_host(us, host, sizeof(host));
	if ((ssl = SSL_new(u->u_ssl_ctx)) == NULL)
		return (NULL);
	SSL_set_connect_state(ssl);
	if (SSL_set_ex_data(ssl, tls_upstream_idx, u) != 1)
		ok = 0;
	else if (tls_is_ip(host))
		ok = !u->u_verify || X509_VERIFY_PARAM_set1_ip_asc(
		    SSL_get0_param(ssl), host) == 1;
	else
		ok = SSL_set_tlsext_host_name(ssl, host) == 1 &&
		    (!u->u_verify || SSL_set1_host(ssl, host) == 1);
	if (ok && u->u_ssl_session != NULL) {
		d = SSL_SESSION_dup(u->u_ssl_session);
		ok = d != NULL && SSL_set_session(ssl, d) == 1;
		SSL_SESSION_free(d);
	}
	if (!ok) {
		ERR_clear_error();
		SSL_free(ssl);
		return (NULL);
	}
	return (ssl);
}

/*
 * Make the first ticket key, or rotate.  Keys are 16 random bytes of name
 * and 32 each of AES and HMAC key.  With no key: one, created now.  Once
 * the current key is TLS_TICKET_ROTATE_S old, or was created after now
 * (the wall clock went back: without this, no key would rotate until the
 * clock caught up, possibly for hours): [1] -> [2] (the old [2], now
 * three periods old, is wiped), [0] -> [1], a new [0] created now.  A
 * ticket is thus issued under [0] and accepted while its key is one of
 * the three, i.e. for two to three periods (less when the clock went
 * back: each step back rotates once).  The write follows the seqlock of shm.h:
 * st_seq is made odd (relaxed store, then a release fence so that no key
 * write is seen before it), the keys are written, and st_seq is made even
 * with a release store; readers that overlap see an odd or changed st_seq
 * and retry.  The new key is made before st_seq is touched, so a failure
 * of RAND_bytes leaves the keys as they were.
 */
int
tls_tickets_rotate(struct shm_tickets *st, int64_t now)
{
	struct shm_ticket_key	 k;
	uint32_t		 seq, n = st->st_nkeys;

	if (n > SHM_TICKET_KEYS)
		n = 0;
	if (n > 0 && now >= st->st_keys[0].tk_created &&
	    now - st->st_keys[0].tk_created < TLS_TICKET_ROTATE_S)
		return (0);
	memset(&k, 0, sizeof(k));
	if (RAND_bytes(k.tk_name, sizeof(k.tk_name)) != 1 ||
	    RAND_bytes(k.tk_aes, sizeof(k.tk_aes)) != 1 ||
	    RAND_bytes(k.tk_hmac, sizeof(k.tk_hmac)) != 1) {
		OPENSSL_cleanse(&k, sizeof(k));
		return (-1);
	}
	k.tk_created = now;
	seq = st->st_seq & ~1U;
	__atomic_store_n(&st->st_seq, seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	if (n == SHM_TICKET_KEYS)
		OPENSSL_cleanse(&st->st_keys[SHM_TICKET_KEYS - 1],
		    sizeof(st->st_keys[0]));
	else
		n++;
	memmove(&st->st_keys[1], &st->st_keys[0],
	    (SHM_TICKET_KEYS - 1) * sizeof(st->st_keys[0]));
	st->st_keys[0] = k;
	st->st_nkeys = n;
	__atomic_store_n(&st->st_seq, seq + 2, __ATOMIC_RELEASE);
	OPENSSL_cleanse(&k, sizeof(k));
	return (0);
}

/* Use st's keys for the tickets of this process's server contexts. */
void
tls_tickets_attach(struct shm_tickets *st)
{
	tls_tickets = st;
}

/* The protocol name of ssl's connection, e.g. "TLSv1.3". */
const char *
tls_version(const SSL *ssl)
{
	return (SSL_get_version(ssl));
}
