/*
 * Key secrets and ids: random base62 strings from RAND_bytes, SHA-256
 * digests, hints and constant-time comparison.  See secret.h.
 */

#ifdef HAVE_MALLOC_H
#include <malloc.h>
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "secret.h"

#define SECRET_ID_PREFIX	"key_"
#define SECRET_ID_BODY		16
#define SECRET_ID_LEN		(sizeof(SECRET_ID_PREFIX) - 1 + SECRET_ID_BODY)
#define SECRET_PREFIX_MAX	12
#define SECRET_HINT_TAIL	4

static const char secret_alphabet[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* Is c one of the 62 characters of secret_alphabet? */
static int
secret_is_base62(unsigned char c)
{
	return ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
	    (c >= 'a' && c <= 'z'));
}

/*
 * n random base62 characters into out.  Each character comes from one
 * random byte b: bytes 248..255 are thrown away and the others mapped to
 * b % 62.  248 = 4 * 62, so every character is the image of exactly four
 * byte values in 0..247 and, RAND_bytes being uniform, equally likely (a
 * plain b % 62 over 0..255 would favour the first 8 characters).  About
 * 3 % of bytes are rejected, so one 64-byte draw nearly always covers a
 * secret body; the loop draws again until n characters are out.
 */
int
secret_base62(char *out, size_t n)
{
	unsigned char	 buf[64];
	size_t		 i = 0, j;

	while (i < n) {
		if (RAND_bytes(buf, sizeof(buf)) != 1)
			goto fail;
		for (j = 0; j < sizeof(buf) && i < n; j++)
			if (buf[j] < 4 * 62)
				out[i++] = secret_alphabet[buf[j] % 62];
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	return (0);
fail:
	OPENSSL_cleanse(buf, sizeof(buf));
	return (-1);
}

/* A new secret "<prefix>_<32 base62>" for prefix into out. */
int
secret_generate(const char *prefix, char *out, size_t outlen)
{
	size_t	 plen;

	if (!secret_valid_prefix(prefix))
		return (-1);
	plen = strlen(prefix);
	if (outlen <= plen + 1 + SECRET_BODY_LEN)
		return (-1);
	memcpy(out, prefix, plen);
	out[plen] = '_';
	if (secret_base62(out + plen + 1, SECRET_BODY_LEN) == -1) {
		OPENSSL_cleanse(out, outlen);
		return (-1);
	}
	out[plen + 1 + SECRET_BODY_LEN] = '\0';
	return (0);
}

/* A new key id "key_<16 base62>" into out. */
int
secret_make_id(char *out, size_t outlen)
{
	size_t	 plen = sizeof(SECRET_ID_PREFIX) - 1;

	if (outlen <= SECRET_ID_LEN)
		return (-1);
	memcpy(out, SECRET_ID_PREFIX, plen);
	if (secret_base62(out + plen, SECRET_ID_BODY) == -1)
		return (-1);
	out[SECRET_ID_LEN] = '\0';
	return (0);
}

/* secret_digest()'s algorithm and context, one of each per thread. */
static __thread EVP_MD		*secret_md;
static __thread EVP_MD_CTX	*secret_ctx;

/* SHA-256 of s[0..len) into digest[32]. */
void
secret_digest(const char *s, size_t len, uint8_t *digest)
{
	EVP_MD		*md = secret_md;
	EVP_MD_CTX	*ctx = secret_ctx;
	unsigned int	 n;

	/*
	 * This runs for every keyed request.  SHA256() fetches the algorithm
	 * (taking OpenSSL 3's provider locks) and allocates a context on each
	 * call, about 580 ns here; a context and algorithm kept per thread
	 * cost about 140 ns (a worker's loop and its admin threads each have
	 * their own: a context is not to be shared).
	 */
	if (md == NULL && (md = secret_md = EVP_MD_fetch(NULL, "SHA256",
	    NULL)) == NULL)
		goto slow;
	if (ctx == NULL && (ctx = secret_ctx = EVP_MD_CTX_new()) == NULL)
		goto slow;
	if (EVP_DigestInit_ex2(ctx, md, NULL) == 1 &&
	    EVP_DigestUpdate(ctx, s, len) == 1 &&
	    EVP_DigestFinal_ex(ctx, digest, &n) == 1)
		return;
slow:
	SHA256((const unsigned char *)s, len, digest);
}

/* A thread that used secret_digest() ends: free its context. */
void
secret_thread_end(void)
{
	EVP_MD_CTX_free(secret_ctx);
	EVP_MD_free(secret_md);
	secret_ctx = NULL;
	secret_md = NULL;
}

/* Wipe p[0..len) and free it. */
void
secret_free(void *p, size_t len)
{
	if (p == NULL)
		return;
	OPENSSL_cleanse(p, len);
	free(p);
}

/* Wipe the C string s and free it. */
void
secret_strfree(char *s)
{
	if (s != NULL)
		secret_free(s, strlen(s));
}

/*
 * Hint of secret into out: the prefix (everything before the last '_',
 * at most 12 characters of it), "_..." and the last four characters of
 * the body; "..." and the last four characters when there is no '_'.
 * Only those four characters of the random part are shown.
 */
void
secret_hint(const char *secret, char *out, size_t outlen)
{
	const char	*us, *body;
	size_t		 plen, blen;

	if (outlen == 0)
		return;
	us = strrchr(secret, '_');
	body = us != NULL ? us + 1 : secret;
	blen = strlen(body);
	if (blen > SECRET_HINT_TAIL)
		body += blen - SECRET_HINT_TAIL;
	if (us == NULL) {
		snprintf(out, outlen, "...%s", body);
		return;
	}
	plen = us - secret;
	if (plen > SECRET_PREFIX_MAX)
		plen = SECRET_PREFIX_MAX;
	snprintf(out, outlen, "%.*s_...%s", (int)plen, secret, body);
}

/* Is s[0..len) an accepted foreign secret (8..512 of 0x21..0x7e)? */
int
secret_valid_import(const char *s, size_t len, const char **cause)
{
	size_t	 i;

	if (len < SECRET_IMPORT_MIN || len > SECRET_IMPORT_MAX) {
		*cause = "must be 8 to 512 characters long";
		return (0);
	}
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e) {
			*cause = "must be visible ASCII characters (0x21 to "
			    "0x7e: no space, control or non-ASCII character)";
			return (0);
		}
	return (1);
}

/* Length of the [a-z0-9] run at s, within len, if it is a prefix; 0 if not. */
static size_t
secret_prefix_len(const char *s, size_t len)
{
	size_t	 i;

	for (i = 0; i < len && i < SECRET_PREFIX_MAX; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= '0' && s[i] <= '9')))
			break;
	return (i > 0 && i + 1 < len && s[i] == '_' ? i : 0);
}

/*
 * Hint of any secret.  keygate's own shape keeps its usual hint; any
 * other shows at most 8 characters of a secret of 16 or more (half of
 * the shortest, a tenth or less of typical 40-character keys) and 2 of a
 * shorter one, whose first characters are too large a share to show.
 */
void
secret_hint_any(const char *s, size_t len, char *out, size_t outlen)
{
	size_t	 plen, i;

	if (outlen == 0)
		return;
	if ((plen = secret_prefix_len(s, len)) > 0 &&
	    len == plen + 1 + SECRET_BODY_LEN) {
		for (i = plen + 1; i < len; i++)
			if (!secret_is_base62((unsigned char)s[i]))
				break;
		if (i == len) {		/* as secret_hint() would */
			snprintf(out, outlen, "%.*s_...%.4s", (int)plen, s,
			    s + len - SECRET_HINT_TAIL);
			return;
		}
	}
	if (len >= 16)
		snprintf(out, outlen, "%.4s...%.4s", s, s + len - 4);
	else if (len >= 2)
		snprintf(out, outlen, "...%.2s", s + len - 2);
	else
		snprintf(out, outlen, "...");
}

/* The prefix regenerations of an imported secret use. */
void
secret_prefix_of(const char *s, size_t len, char *out, size_t outlen)
{
	size_t	 plen;

	if ((plen = secret_prefix_len(s, len)) > 0)
		snprintf(out, outlen, "%.*s", (int)plen, s);
	else
		snprintf(out, outlen, "%s", SECRET_DEFAULT_PREFIX);
}

/* Is s a valid prefix ([a-z0-9]{1,12})? */
int
secret_valid_prefix(const char *s)
{
	size_t	 i;

	if (s == NULL)
		return (0);
	for (i = 0; s[i] != '\0'; i++) {
		if (i == SECRET_PREFIX_MAX)
			return (0);
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= '0' && s[i] <= '9')))
			return (0);
	}
	return (i > 0);
}

/* Is s[0..len) "key_" followed by exactly 16 base62 characters? */
int
secret_valid_id(const char *s, size_t len)
{
	size_t	 i, plen = sizeof(SECRET_ID_PREFIX) - 1;

	if (s == NULL || len != SECRET_ID_LEN ||
	    memcmp(s, SECRET_ID_PREFIX, plen) != 0)
		return (0);
	for (i = plen; i < len; i++)
		if (!secret_is_base62((unsigned char)s[i]))
			return (0);
	return (1);
}

/*
 * Constant-time equality of a[0..alen) and b[0..blen).  Comparing the
 * strings themselves would leak their length, and a byte-by-byte compare
 * the position of the first difference.  Both are hashed instead (SHA-256
 * reads every byte whatever their content) and the fixed-size digests
 * compared with CRYPTO_memcmp, which does not stop at a difference.
 * Different strings of equal digest would need a SHA-256 collision.
 */
int
secret_equal(const char *a, size_t alen, const char *b, size_t blen)
{
	uint8_t	 da[SHA256_DIGEST_LENGTH], db[SHA256_DIGEST_LENGTH];
	int	 eq;

	secret_digest(a, alen, da);
	secret_digest(b, blen, db);
	eq = CRYPTO_memcmp(da, db, sizeof(da)) == 0;
	OPENSSL_cleanse(da, sizeof(da));
	OPENSSL_cleanse(db, sizeof(db));
	return (eq);
}

#ifdef HAVE_MALLOC_USABLE_SIZE
/*
 * free() for jansson that wipes the whole block first: the parser's token
 * buffers and string values of an admin body (a key sent to /v1/verify)
 * are freed through it.  malloc_usable_size() is at least the size asked
 * for, so every byte jansson wrote is wiped; blocks stay malloc()'s, so
 * what json_dumps() returns may still be released with free().
 */
static void
secret_json_free(void *p)
{
	if (p == NULL)
		return;
	OPENSSL_cleanse(p, malloc_usable_size(p));
	free(p);
}
#endif

/* Make jansson wipe what it frees (see secret.h). */
void
secret_json_wipe(void)
{
#ifdef HAVE_MALLOC_USABLE_SIZE
	json_set_alloc_funcs(malloc, secret_json_free);
#endif
}
