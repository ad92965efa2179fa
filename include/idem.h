/*
 * Idempotency-Key on POST /v1/keys: a retried create (same key, same body)
 * gets the answer of the first one, same id and same secret, for 24 hours.
 *
 * Admin requests land on any worker, so the entries live in a fixed table
 * of IDEM_ENTRIES in the shared segment (shm.h), read and written only
 * under the key store's writer lock, which every create takes anyway: no
 * lock of its own, no seqlock.  A writer killed mid-entry leaves ie_used
 * 0 (it is set last), and the master's repair hands the lock on as for
 * any write.
 *
 * An entry holds SHA-256("keygate idempotency key\0" || key), SHA-256 of
 * the request body, the key id, when it was made (ms), and the secret
 * encrypted with AES-256-GCM under SHA-256("keygate idempotency
 * secret\0" || key), with the id and the body's digest as associated
 * data: the shared memory and the journal (which carries the entry in
 * the create's put line, journal_write_put_extra) hold only digests and
 * ciphertext, and only a caller presenting the Idempotency-Key (and the
 * admin token) gets the secret back.  A brought secret (secret,
 * secret_sha256) is not kept: its entry has no ciphertext.
 *
 * Placement: open addressing over IDEM_PROBE entries from the digest's
 * first 4 bytes; an expired (older than IDEM_TTL) or free entry is reused
 * first, else the oldest of the probe window, so more than about
 * IDEM_ENTRIES creates with a key within 24 hours may forget the oldest.
 * Times are passed in ("now", ms since the epoch).
 */
#ifndef KEYGATE_IDEM_H
#define KEYGATE_IDEM_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "keystore.h"
#include "secret.h"

#define IDEM_ENTRIES	16384
#define IDEM_PROBE	32
#define IDEM_TTL	(24LL * 3600 * 1000)	/* ms */
#define IDEM_KEY_MAX	255	/* bytes of an Idempotency-Key */
#define IDEM_NONCE	12
#define IDEM_TAG	16
#define IDEM_CT_MAX	(IDEM_NONCE + SECRET_MAX + IDEM_TAG)

struct idem_entry {
	uint32_t	 ie_used;	/* 1: holds an entry (set last) */
	uint32_t	 ie_ctlen;	/* bytes in ie_ct; 0: no secret */
	int64_t		 ie_created;	/* ms */
	uint8_t		 ie_hash[KS_DIGEST_LEN];	/* of the key */
	uint8_t		 ie_body[KS_DIGEST_LEN];	/* of the body */
	char		 ie_id[KS_ID_LEN + 4];
	uint8_t		 ie_ct[IDEM_CT_MAX];	/* nonce, ciphertext, tag */
};

/* Bytes of the table (IDEM_ENTRIES entries, zeroed: all free). */
#define IDEM_TABLE_SIZE	(IDEM_ENTRIES * sizeof(struct idem_entry))

/* Is s[0..len) a usable Idempotency-Key (1..255 visible ASCII)? */
int	 idem_valid(const char *, size_t);

/* The lookup digest of key s[0..len) into out[32]. */
void	 idem_hash(const char *, size_t, uint8_t *);

/* Under the lock: the live entry with hash into *e; 1 found, 0 not. */
int	 idem_find(const struct idem_entry *, const uint8_t *, int64_t,
	    struct idem_entry *);

/* Under the lock: store e (ie_used set here, last). */
void	 idem_put(struct idem_entry *, const struct idem_entry *, int64_t);

/*
 * Encrypt secret (NUL-terminated; NULL: none) into e's ie_ct for key
 * s[0..len); e's ie_id and ie_body must be set.  0 or -1.
 */
int	 idem_seal(const char *, size_t, const char *, struct idem_entry *);

/* Decrypt e's secret with key s[0..len) into out (> SECRET_MAX); 0 or -1. */
int	 idem_open(const char *, size_t, const struct idem_entry *, char *,
	    size_t);

/* e as the journal's {"h","b","c","at"} (hex), or NULL. */
json_t	*idem_to_json(const struct idem_entry *);

/*
 * journal.c's put-line hook (journal_set_put_hook) at start-up and
 * repair: the "idem" member o of the put line of key k into the table
 * arg, unless older than IDEM_TTL or malformed (ignored: an entry lost
 * costs a retry its replay, nothing more).
 */
void	 idem_replay(void *, const json_t *, const struct ks_key *);

/*
 * keys.idempotency in state_dir: the master saves the live entries before
 * every compaction of the journal (whose put lines carried them) and
 * loads them at start, before the journal.  0 or -1 with err.
 */
#define IDEM_FILE	"keys.idempotency"
struct journal;
int	 idem_save(struct journal *, const struct idem_entry *, int64_t,
	    char *, size_t);
int	 idem_load(struct journal *, struct idem_entry *, int64_t, char *,
	    size_t);

#endif /* KEYGATE_IDEM_H */
