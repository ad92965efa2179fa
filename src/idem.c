/*
 * The Idempotency-Key table of POST /v1/keys: lookup, placement, the
 * secret's encryption, and the journal form of an entry.  See idem.h.
 */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "idem.h"
#include "journal.h"
#include "keystore.h"
#include "util.h"

#define IDEM_LABEL_HASH		"keygate idempotency key"
#define IDEM_LABEL_SECRET	"keygate idempotency secret"

/* 1..IDEM_KEY_MAX visible ASCII characters. */
int
idem_valid(const char *s, size_t len)
{
	size_t	 i;

	if (len < 1 || len > IDEM_KEY_MAX)
		return (0);
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return (0);
	return (1);
}

/*
 * SHA-256 of label, a NUL, and s[0..len) (at most IDEM_KEY_MAX) into out:
 * two labels make two unrelated digests of one key, the lookup digest
 * revealing nothing about the encryption key.
 */
static void
idem_labelled(const char *label, const char *s, size_t len, uint8_t *out)
{
	char	 buf[64 + IDEM_KEY_MAX];
	size_t	 l = strlen(label) + 1;

	if (len > IDEM_KEY_MAX)
		len = IDEM_KEY_MAX;
	memcpy(buf, label, l);
	memcpy(buf + l, s, len);
	secret_digest(buf, l + len, out);
	OPENSSL_cleanse(buf, sizeof(buf));
}

/* The lookup digest of a key. */
void
idem_hash(const char *s, size_t len, uint8_t *out)
{
	idem_labelled(IDEM_LABEL_HASH, s, len, out);
}

/* First entry of hash's probe window. */
static uint32_t
idem_start(const uint8_t *hash)
{
	return (((uint32_t)hash[0] << 24 | (uint32_t)hash[1] << 16 |
	    (uint32_t)hash[2] << 8 | hash[3]) % IDEM_ENTRIES);
}

/* Is e a live entry at now? */
static int
idem_live(const struct idem_entry *e, int64_t now)
{
	return (e->ie_used == 1 && e->ie_created <= now &&
	    now - e->ie_created < IDEM_TTL);
}

/* The live entry with hash, copied to *out. */
int
idem_find(const struct idem_entry *t, const uint8_t *hash, int64_t now,
    struct idem_entry *out)
{
	uint32_t	 i, s = idem_start(hash);
	const struct idem_entry *e;

	for (i = 0; i < IDEM_PROBE; i++) {
		e = &t[(s + i) % IDEM_ENTRIES];
		if (idem_live(e, now) && CRYPTO_memcmp(e->ie_hash, hash,
		    KS_DIGEST_LEN) == 0) {
			memcpy(out, e, sizeof(*out));
			if (out->ie_ctlen > IDEM_CT_MAX)
				out->ie_ctlen = 0;
			out->ie_id[KS_ID_LEN] = '\0';
			return (1);
		}
	}
	return (0);
}

/*
 * Store e: over the entry of the same hash, else the first free or
 * expired one of the window, else the window's oldest.  ie_used is set
 * last, after the rest (one writer, under the lock: no reader sees it
 * half-made; a writer killed before it leaves the entry unused).
 */
void
idem_put(struct idem_entry *t, const struct idem_entry *e, int64_t now)
{
	struct idem_entry	*x, *pick = NULL;
	uint32_t		 i, s = idem_start(e->ie_hash);

	for (i = 0; i < IDEM_PROBE; i++) {
		x = &t[(s + i) % IDEM_ENTRIES];
		if (x->ie_used == 1 && CRYPTO_memcmp(x->ie_hash, e->ie_hash,
		    KS_DIGEST_LEN) == 0) {
			pick = x;
			break;
		}
		if (!idem_live(x, now)) {
			if (pick == NULL || idem_live(pick, now))
				pick = x;
		} else if (pick == NULL || (idem_live(pick, now) &&
		    x->ie_created < pick->ie_created))
			pick = x;
	}
	__atomic_store_n(&pick->ie_used, 0, __ATOMIC_RELEASE);
	memcpy((char *)pick + sizeof(pick->ie_used),
	    (const char *)e + sizeof(e->ie_used),
	    sizeof(*e) - sizeof(e->ie_used));
	__atomic_store_n(&pick->ie_used, 1, __ATOMIC_RELEASE);
}

/* The AES key for the secret of a key s[0..len) into out[32]. */
static void
idem_aes_key(const char *s, size_t len, uint8_t *out)
{
	idem_labelled(IDEM_LABEL_SECRET, s, len, out);
}

/*
 * AES-256-GCM of the secret, the id and the body's digest authenticated
 * with it: ie_ct = nonce (12, random) | ciphertext | tag (16).
 */
int
idem_seal(const char *s, size_t len, const char *secret,
    struct idem_entry *e)
{
	EVP_CIPHER_CTX	*ctx = NULL;
	uint8_t		 key[32];
	size_t		 n;
	int		 out, rc = -1;

	e->ie_ctlen = 0;
	if (secret == NULL)
		return (0);
	if ((n = strlen(secret)) > SECRET_MAX ||
	    RAND_bytes(e->ie_ct, IDEM_NONCE) != 1)
		return (-1);
	idem_aes_key(s, len, key);
	if ((ctx = EVP_CIPHER_CTX_new()) == NULL ||
	    EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key,
	    e->ie_ct) != 1 ||
	    EVP_EncryptUpdate(ctx, NULL, &out, (const uint8_t *)e->ie_id,
	    KS_ID_LEN) != 1 ||
	    EVP_EncryptUpdate(ctx, NULL, &out, e->ie_body,
	    KS_DIGEST_LEN) != 1 ||
	    EVP_EncryptUpdate(ctx, e->ie_ct + IDEM_NONCE, &out,
	    (const uint8_t *)secret, (int)n) != 1 || (size_t)out != n ||
	    EVP_EncryptFinal_ex(ctx, e->ie_ct + IDEM_NONCE + n, &out) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, IDEM_TAG,
	    e->ie_ct + IDEM_NONCE + n) != 1)
		goto done;
	e->ie_ctlen = (uint32_t)(IDEM_NONCE + n + IDEM_TAG);
	rc = 0;
done:
	EVP_CIPHER_CTX_free(ctx);
	OPENSSL_cleanse(key, sizeof(key));
	return (rc);
}

/* The secret of e, decrypted and checked with key s[0..len). */
int
idem_open(const char *s, size_t len, const struct idem_entry *e, char *out,
    size_t outlen)
{
	EVP_CIPHER_CTX	*ctx = NULL;
	uint8_t		 key[32];
	size_t		 n;
	int		 w, rc = -1;

	if (e->ie_ctlen < IDEM_NONCE + IDEM_TAG || e->ie_ctlen > IDEM_CT_MAX)
		return (-1);
	n = e->ie_ctlen - IDEM_NONCE - IDEM_TAG;
	if (n >= outlen)
		return (-1);
	idem_aes_key(s, len, key);
	if ((ctx = EVP_CIPHER_CTX_new()) == NULL ||
	    EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key,
	    e->ie_ct) != 1 ||
	    EVP_DecryptUpdate(ctx, NULL, &w, (const uint8_t *)e->ie_id,
	    KS_ID_LEN) != 1 ||
	    EVP_DecryptUpdate(ctx, NULL, &w, e->ie_body, KS_DIGEST_LEN) != 1 ||
	    EVP_DecryptUpdate(ctx, (uint8_t *)out, &w, e->ie_ct + IDEM_NONCE,
	    (int)n) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, IDEM_TAG,
	    (void *)(e->ie_ct + IDEM_NONCE + n)) != 1 ||
	    EVP_DecryptFinal_ex(ctx, (uint8_t *)out + w, &w) != 1) {
		OPENSSL_cleanse(out, outlen);
		goto done;
	}
	out[n] = '\0';
	rc = 0;
done:
	EVP_CIPHER_CTX_free(ctx);
	OPENSSL_cleanse(key, sizeof(key));
	return (rc);
}

/* n bytes as lowercase hex into out (2n + 1). */
static void
idem_hex(const uint8_t *p, size_t n, char *out)
{
	static const char	 hex[] = "0123456789abcdef";
	size_t			 i;

	for (i = 0; i < n; i++) {
		out[2 * i] = hex[p[i] >> 4];
		out[2 * i + 1] = hex[p[i] & 0xf];
	}
	out[2 * n] = '\0';
}

/* Hex text s into p[0..max); the byte count, or -1. */
static int
idem_unhex(const char *s, uint8_t *p, size_t max)
{
	size_t	 n = s != NULL ? strlen(s) : 0, i;
	int	 hi, lo;

	if (s == NULL || n % 2 != 0 || n / 2 > max)
		return (-1);
	for (i = 0; i < n / 2; i++) {
		if ((hi = util_hexval(s[2 * i])) < 0 ||
		    (lo = util_hexval(s[2 * i + 1])) < 0)
			return (-1);
		p[i] = (uint8_t)(hi << 4 | lo);
	}
	return ((int)(n / 2));
}

/* e as {"h","b","c","at"}. */
json_t *
idem_to_json(const struct idem_entry *e)
{
	char	 h[2 * KS_DIGEST_LEN + 1], b[2 * KS_DIGEST_LEN + 1];
	char	 c[2 * IDEM_CT_MAX + 1];

	idem_hex(e->ie_hash, KS_DIGEST_LEN, h);
	idem_hex(e->ie_body, KS_DIGEST_LEN, b);
	idem_hex(e->ie_ct, e->ie_ctlen <= IDEM_CT_MAX ? e->ie_ctlen : 0, c);
	return (json_pack("{s:s,s:s,s:s,s:I}", "h", h, "b", b, "c", c, "at",
	    (json_int_t)e->ie_created));
}

/* The entry o ({"h","b","c","at"}) of key id into *e; 0, or -1. */
static int
idem_from_json(const json_t *o, const char *id, struct idem_entry *e)
{
	json_t	*at = json_object_get(o, "at");
	int	 n;

	memset(e, 0, sizeof(*e));
	if (id == NULL || strlen(id) != KS_ID_LEN || !json_is_integer(at) ||
	    idem_unhex(json_string_value(json_object_get(o, "h")), e->ie_hash,
	    KS_DIGEST_LEN) != KS_DIGEST_LEN ||
	    idem_unhex(json_string_value(json_object_get(o, "b")), e->ie_body,
	    KS_DIGEST_LEN) != KS_DIGEST_LEN ||
	    (n = idem_unhex(json_string_value(json_object_get(o, "c")),
	    e->ie_ct, IDEM_CT_MAX)) < 0 || (n != 0 && n < IDEM_NONCE +
	    IDEM_TAG))
		return (-1);
	e->ie_ctlen = (uint32_t)n;
	e->ie_created = json_integer_value(at);
	memcpy(e->ie_id, id, KS_ID_LEN);
	return (0);
}

/* The journal's entry o of key k into the table arg (see idem.h). */
void
idem_replay(void *arg, const json_t *o, const struct ks_key *k)
{
	struct idem_entry	 e;
	json_t			*at = json_object_get(o, "at");
	int			 n;

	memset(&e, 0, sizeof(e));
	if (arg == NULL || !json_is_integer(at) ||
	    idem_unhex(json_string_value(json_object_get(o, "h")), e.ie_hash,
	    KS_DIGEST_LEN) != KS_DIGEST_LEN ||
	    idem_unhex(json_string_value(json_object_get(o, "b")), e.ie_body,
	    KS_DIGEST_LEN) != KS_DIGEST_LEN ||
	    (n = idem_unhex(json_string_value(json_object_get(o, "c")),
	    e.ie_ct, IDEM_CT_MAX)) < 0 || (n != 0 && n < IDEM_NONCE +
	    IDEM_TAG))
		return;
	e.ie_ctlen = (uint32_t)n;
	e.ie_created = json_integer_value(at);
	memcpy(e.ie_id, k->k_id, KS_ID_LEN);
	if (idem_live(&(struct idem_entry){ .ie_used = 1,
	    .ie_created = e.ie_created }, util_now_ms()))
		idem_put(arg, &e, util_now_ms());
}

/*
 * keys.idempotency: the live entries, one {"id","h","b","c","at"} line
 * each, written by the master before it compacts the journal (which
 * drops the put lines carrying them), read at start before the journal.
 * Written before the compaction, so a crash in between loses nothing: an
 * entry in both places is put twice, the same.
 */
int
idem_save(struct journal *j, const struct idem_entry *t, int64_t now,
    char *err, size_t errlen)
{
	struct idem_entry	 e;
	char			*buf = NULL, *line;
	size_t			 len = 0, cap = 0, n;
	uint32_t		 i;
	json_t			*o;
	int			 rc, fd;

	for (i = 0; i < IDEM_ENTRIES; i++) {
		memcpy(&e, &t[i], sizeof(e));
		if (!idem_live(&e, now))
			continue;
		if (e.ie_ctlen > IDEM_CT_MAX)
			e.ie_ctlen = 0;
		e.ie_id[KS_ID_LEN] = '\0';
		if ((o = idem_to_json(&e)) == NULL ||
		    json_object_set_new(o, "id", json_string(e.ie_id)) == -1 ||
		    (line = json_dumps(o, JSON_COMPACT)) == NULL) {
			json_decref(o);
			goto nomem;
		}
		json_decref(o);
		n = strlen(line);
		if (len + n + 1 > cap) {
			cap = (len + n + 1) * 2;
			if ((buf = realloc(buf, cap)) == NULL) {
				free(line);
				goto nomem;
			}
		}
		memcpy(buf + len, line, n);
		buf[len + n] = '\n';
		len += n + 1;
		free(line);
	}
	/* No entry and no file: nothing to write (most stores). */
	if (len == 0) {
		if ((fd = journal_file_open(j, IDEM_FILE, err, errlen)) == -1)
			return (errno == ENOENT ? 0 : -1);
		close(fd);
	}
	rc = journal_file_replace(j, IDEM_FILE, buf != NULL ? buf : "", len,
	    err, errlen);
	free(buf);
	return (rc);
nomem:
	free(buf);
	snprintf(err, errlen, "%s: out of memory", IDEM_FILE);
	return (-1);
}

/*
 * Load keys.idempotency into the table: entries still live at now; a
 * line that does not parse is skipped (an entry lost costs a retry its
 * replay, nothing more).  0 (also when there is no file), or -1.
 */
int
idem_load(struct journal *j, struct idem_entry *t, int64_t now, char *err,
    size_t errlen)
{
	struct idem_entry	 e;
	FILE			*fp;
	char			*line = NULL;
	size_t			 cap = 0, lines = 0;
	ssize_t			 n;
	json_t			*o;
	int			 fd;

	if ((fd = journal_file_open(j, IDEM_FILE, err, errlen)) == -1)
		return (errno == ENOENT ? 0 : -1);
	if ((fp = fdopen(fd, "r")) == NULL) {
		close(fd);
		snprintf(err, errlen, "%s: %s", IDEM_FILE, strerror(errno));
		return (-1);
	}
	while ((n = getline(&line, &cap, fp)) != -1 &&
	    lines++ < 4 * IDEM_ENTRIES) {
		o = json_loadb(line, (size_t)n, 0, NULL);
		if (o != NULL && idem_from_json(o, json_string_value(
		    json_object_get(o, "id")), &e) == 0 && (e.ie_used = 1) &&
		    idem_live(&e, now))
			idem_put(t, &e, now);
		json_decref(o);
	}
	free(line);
	fclose(fp);
	return (0);
}
