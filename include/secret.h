/*
 * Key secrets and ids.  A secret is "<prefix>_<32 base62 characters>" from
 * RAND_bytes (190 bits); an id is "key_<16 base62 characters>".  Characters
 * are drawn without modulo bias (bytes >= 248 are rejected and redrawn).
 * Only a secret's SHA-256 digest is ever stored; the hint (prefix, "_...",
 * last four characters) lets people recognise a key without revealing it.
 * Keys imported from other gateways bring secrets of any shape within
 * SECRET_IMPORT_MIN..MAX visible ASCII, with their own hint
 * (secret_hint_any) and a prefix for later regenerations
 * (secret_prefix_of).
 */
#ifndef KEYGATE_SECRET_H
#define KEYGATE_SECRET_H

#include <stddef.h>
#include <stdint.h>

#define SECRET_BODY_LEN	32
#define SECRET_MAX	(12 + 1 + SECRET_BODY_LEN)	/* longest we make */
#define SECRET_DEFAULT_PREFIX	"live"

/*
 * Secrets brought from elsewhere (POST /v1/keys with "secret", imports):
 * 8 to 512 bytes of visible ASCII, 0x21..0x7e.  No space, no control
 * character, nothing outside ASCII: an HTTP header cannot carry them
 * reliably, and the request path refuses them (auth.c).
 */
#define SECRET_IMPORT_MIN	8
#define SECRET_IMPORT_MAX	512

/* n random base62 characters into out (no NUL); 0, or -1 if RAND_bytes failed. */
int	 secret_base62(char *, size_t);

/* A new secret for prefix into out (outlen > SECRET_MAX); 0 or -1. */
int	 secret_generate(const char *, char *, size_t);

/* A new key id into out (outlen > 20); 0 or -1. */
int	 secret_make_id(char *, size_t);

/* SHA-256 of s[0..len) into digest[32]. */
void	 secret_digest(const char *, size_t, uint8_t *);
void	 secret_thread_end(void);

/*
 * Wipe p[0..len) and free it (NULL: nothing), for buffers that held a
 * secret, a token or a key; secret_strfree for a C string.
 */
void	 secret_free(void *, size_t);
void	 secret_strfree(char *);

/* Hint of secret into out (outlen > 20): "live_...Ab3x". */
void	 secret_hint(const char *, char *, size_t);

/*
 * Is s[0..len) a secret keygate accepts from elsewhere (see
 * SECRET_IMPORT_MIN)?  1, or 0 with a reason for people in *cause.
 */
int	 secret_valid_import(const char *, size_t, const char **);

/*
 * Hint of any secret s[0..len) into out (outlen > 20): the secret_hint()
 * form when s has keygate's own shape ("<prefix>_<32 base62>"), else the
 * first 4 characters, "..." and the last 4 when s is at least 16 long,
 * and "..." with the last 2 when it is shorter: never most of a secret.
 */
void	 secret_hint_any(const char *, size_t, char *, size_t);

/*
 * The prefix of s[0..len) for later regenerations into out (outlen > 12):
 * what comes before its first '_' when that is [a-z0-9]{1,12} and
 * something follows, else SECRET_DEFAULT_PREFIX.
 */
void	 secret_prefix_of(const char *, size_t, char *, size_t);

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
