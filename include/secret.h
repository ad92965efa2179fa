/*
 * Key secrets and ids.  A secret is "<prefix>_<32 base62 characters>" from
 * RAND_bytes (190 bits); an id is "key_<16 base62 characters>".  Characters
 * are drawn without modulo bias (bytes >= 248 are rejected and redrawn).
 * Only a secret's SHA-256 digest is ever stored; the hint (prefix, "_...",
 * last four characters) lets people recognise a key without revealing it.
 */
#ifndef KEYGATE_SECRET_H
#define KEYGATE_SECRET_H

#include <stddef.h>
#include <stdint.h>

#define SECRET_BODY_LEN	32
#define SECRET_MAX	(12 + 1 + SECRET_BODY_LEN)	/* longest secret */
#define SECRET_DEFAULT_PREFIX	"live"

/* n random base62 characters into out (no NUL); 0, or -1 if RAND_bytes failed. */
int	 secret_base62(char *, size_t);

/* A new secret for prefix into out (outlen > SECRET_MAX); 0 or -1. */
int	 secret_generate(const char *, char *, size_t);

/* A new key id into out (outlen > 20); 0 or -1. */
int	 secret_make_id(char *, size_t);

/* SHA-256 of s[0..len) into digest[32]. */
void	 secret_digest(const char *, size_t, uint8_t *);
void	 secret_thread_end(void);

/* Hint of secret into out (outlen > 20): "live_...Ab3x". */
void	 secret_hint(const char *, char *, size_t);

/* Is s a valid prefix ([a-z0-9]{1,12})? */
int	 secret_valid_prefix(const char *);

/* Is s a well-formed key id? */
int	 secret_valid_id(const char *, size_t);

/*
 * Compare two byte strings in constant time (for the length of the longer
 * one, via their SHA-256 digests): 1 when equal.  For the admin token.
 */
int	 secret_equal(const char *, size_t, const char *, size_t);

/*
 * Make jansson wipe every block it frees (OPENSSL_cleanse), so that JSON
 * bodies holding a secret leave no copy behind.  Blocks are still
 * malloc()'s.  A no-op where malloc_usable_size() is missing.
 */
void	 secret_json_wipe(void);

#endif /* KEYGATE_SECRET_H */
