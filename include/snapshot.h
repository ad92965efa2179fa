/*
 * keys.snapshot in its binary format (format 1): written by
 * journal_compact(), read by journal_load().  journal.h has the rules of
 * the files in state_dir; this module only turns records into bytes and
 * back and opens no file.  A snapshot that starts with "{" is the older
 * JSON-lines format, which journal.c still reads.
 *
 * Every integer is little-endian whatever the host; offsets in bytes.
 *
 *	header (40 bytes)
 *	   0  magic "KGSNAP\r\n"
 *	   8  u32 format version (1)
 *	  12  u32 flags (none defined: any bit set is refused)
 *	  16  u64 seq: the last journal sequence the snapshot includes
 *	  24  u64 keys
 *	  32  u32 block size: the most payload bytes a block may hold
 *	  36  u32 CRC32C of bytes 0..35
 *	blocks, one after the other, each:
 *	   0  u32 records in the block (at least 1)
 *	   4  u32 payload bytes (at most the block size)
 *	   8  u32 CRC32C of the block's bytes 0..7, then of its payload
 *	  12  payload: whole records, back to back
 *	trailer (24 bytes), where the next block would start:
 *	   0  u32 0 (no records: the end)
 *	   4  u32 blocks
 *	   8  u64 keys, again
 *	  16  u32 the header's CRC32C (the trailer belongs to that header)
 *	  20  u32 CRC32C of the trailer's bytes 0..19
 *	and nothing after it.
 *
 * A record (a struct ks_key, SNAPSHOT_REC_MIN to SNAPSHOT_REC_MAX bytes):
 *	   0  digest (32 bytes, raw)
 *	  32  previous digest (32 bytes; zeros: none)
 *	  64  i64 grace_until, 72 i64 created, 80 i64 updated,
 *	  88  i64 expires (ms since the epoch; 0: none, never)
 *	  96  u32 flags (KS_F_*)
 *	 100  u32 rate per 1 s, per 10 s, per 60 s (0: the configured default)
 *	 112  id, prefix, hint, name, owner, app_id, scopes: each a u8 length
 *	      and that many bytes (no NUL; scopes joined by single spaces)
 *
 * Checking.  Every byte of a sound file is covered by exactly one CRC32C
 * (the header's, a block's or the trailer's).  CRC32C (Castagnoli) has a
 * Hamming distance of 4 up to 2^31 bits: within a 64 KiB block every
 * error of 1 to 3 bits and every burst of up to 32 bits is caught, others
 * but for a chance of 2^-32.  A flipped length or count makes the reader
 * check other bytes than were written: caught the same way, or as a
 * structure that runs past the end of the file.  Blocks keep the report
 * precise: the reader checks each block before it decodes a record in
 * it, and names the byte offset of what failed.  Behind the checksums,
 * each length is checked against its KS_*_MAX before a byte is copied,
 * and each record, decoded, goes to the caller's check (the one every
 * record passes, journal.c), so a file whose checksums were forged still
 * cannot put a record in the store that the JSON formats would refuse.
 */
#ifndef KEYGATE_SNAPSHOT_H
#define KEYGATE_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "keystore.h"

#define SNAPSHOT_MAGIC		"KGSNAP\r\n"
#define SNAPSHOT_MAGIC_LEN	8
#define SNAPSHOT_FORMAT		1
#define SNAPSHOT_HEAD_LEN	40
#define SNAPSHOT_BLOCK_HEAD_LEN	12
#define SNAPSHOT_TRAILER_LEN	24
#define SNAPSHOT_BLOCK		65536		/* block size written */
#define SNAPSHOT_BLOCK_MAX	(16 * 1024 * 1024)	/* most read */
#define SNAPSHOT_REC_FIXED	112		/* bytes before the strings */
#define SNAPSHOT_REC_MIN	(SNAPSHOT_REC_FIXED + 7)
#define SNAPSHOT_REC_MAX	(SNAPSHOT_REC_MIN + KS_ID_LEN + \
	KS_PREFIX_MAX + KS_HINT_MAX + KS_NAME_MAX + KS_OWNER_MAX + \
	KS_APP_MAX + KS_SCOPES_MAX)

/*
 * CRC32C of buf[0..len), continuing from crc (0 to start): the SSE4.2
 * instruction where the CPU has it, else slice-by-8 tables.
 * snapshot_crc32c_sw always takes the tables (tests compare the two).
 */
uint32_t snapshot_crc32c(uint32_t, const void *, size_t);
uint32_t snapshot_crc32c_sw(uint32_t, const void *, size_t);

/*
 * Writer: records in, the file's bytes out through sw_out (header first,
 * then each block once full, then the trailer).  The caller checks each
 * record (every string within its KS_*_MAX) before it hands it in.
 */
struct snapshot_writer {
	int		(*sw_out)(void *, const void *, size_t);  /* 0, -1 */
	void		 *sw_arg;
	uint8_t		 *sw_buf;	/* block header + payload being filled */
	size_t		  sw_len;	/* bytes in sw_buf */
	uint32_t	  sw_nrec;	/* records in the block being filled */
	uint32_t	  sw_blocks;	/* blocks written */
	uint32_t	  sw_head_crc;
	uint64_t	  sw_keys;	/* the header's count */
	uint64_t	  sw_written;	/* records handed in */
};

/*
 * Start a snapshot of keys records as of seq: the header goes out.  0, or
 * -1 with errno (ENOMEM, or what sw_out left); snapshot_writer_free()
 * then, as after any failure.
 */
int	 snapshot_writer_init(struct snapshot_writer *, uint64_t, uint64_t,
	    int (*)(void *, const void *, size_t), void *);
/* Add one record: 0, or -1 with errno (EINVAL: a string too long). */
int	 snapshot_writer_key(struct snapshot_writer *, const struct ks_key *);
/*
 * The last block and the trailer: 0, or -1 with errno (EINVAL: not the
 * number of records the header announced).  Frees the writer either way.
 */
int	 snapshot_writer_end(struct snapshot_writer *);
void	 snapshot_writer_free(struct snapshot_writer *);

/* What the header says. */
struct snapshot_head {
	uint64_t	 sh_seq;
	uint64_t	 sh_keys;
};

/*
 * Called for each record in file order, once its block has passed its
 * checksum: 0, or -1 with the reason in why (the record is refused).
 */
typedef int	(*snapshot_key_cb)(void *, const struct snapshot_head *,
		    const struct ks_key *, char *, size_t);

/*
 * Read a whole binary snapshot in buf[0..len), refusing one with more
 * than max_keys keys; what its header says into *head.  0, or -1 with the
 * byte offset of the damage in *off and the reason in why (the callback's
 * reason for a refused record, at the record's offset).  Records before
 * the damage were passed on.
 */
int	 snapshot_read(const void *, size_t, uint64_t, struct snapshot_head *,
	    snapshot_key_cb, void *, size_t *, char *, size_t);

/* Are the first bytes those of the JSON-lines format ("{")?  1 or 0. */
int	 snapshot_is_json(const void *, size_t);

/*
 * Tests and fuzzing: recompute every checksum of a snapshot in buf as
 * far as its structure can be followed, so that what is behind the
 * checksums (lengths, records) can be reached.
 */
void	 snapshot_fix_checksums(void *, size_t);

#endif /* KEYGATE_SNAPSHOT_H */
