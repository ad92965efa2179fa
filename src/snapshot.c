/*
 * keys.snapshot's binary format (snapshot.h): CRC32C, the writer that
 * journal_compact() feeds record by record, and the reader that
 * journal_load() hands the whole file to.  Files, their owners and the
 * rename protocol are journal.c's; no file is opened here.
 */

#include <sys/types.h>

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define SNAP_SSE42	1
#endif

#include "keystore.h"
#include "snapshot.h"

/* The strings of a record, in file order, with the JSON formats' names. */
static const struct snap_str {
	const char	*ss_name;
	size_t		 ss_off;	/* in struct ks_key */
	size_t		 ss_size;	/* of the member */
	size_t		 ss_max;	/* KS_*_MAX */
} snap_strs[] = {
#define SNAP_STR(name, m, max) \
	{ name, offsetof(struct ks_key, m), sizeof(((struct ks_key *)0)->m), max }
	SNAP_STR("id", k_id, KS_ID_LEN),
	SNAP_STR("prefix", k_prefix, KS_PREFIX_MAX),
	SNAP_STR("hint", k_hint, KS_HINT_MAX),
	SNAP_STR("name", k_name, KS_NAME_MAX),
	SNAP_STR("owner", k_owner, KS_OWNER_MAX),
	SNAP_STR("app_id", k_app, KS_APP_MAX),
	SNAP_STR("scopes", k_scopes, KS_SCOPES_MAX),
#undef SNAP_STR
};
#define SNAP_NSTRS	(sizeof(snap_strs) / sizeof(snap_strs[0]))

/* A length is one byte, and every member has room for its NUL. */
_Static_assert(KS_ID_LEN <= 255 && KS_PREFIX_MAX <= 255 &&
    KS_HINT_MAX <= 255 && KS_NAME_MAX <= 255 && KS_OWNER_MAX <= 255 &&
    KS_APP_MAX <= 255 && KS_SCOPES_MAX <= 255, "a length is one byte");
_Static_assert(SNAPSHOT_REC_MAX <= SNAPSHOT_BLOCK, "a record fits a block");
_Static_assert(KS_NWINDOWS == 3, "three rates in a record");

/* Little-endian loads and stores, whatever the host. */
static uint32_t
le32(const uint8_t *p)
{
	return ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24);
}

static uint64_t
le64(const uint8_t *p)
{
	return ((uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32);
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void
put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

/*
 * CRC32C, the Castagnoli polynomial 0x1EDC6F41 (0x82F63B78 reflected),
 * as iSCSI, ext4 and SSE4.2's crc32 instruction compute it: initial value
 * and final XOR all ones, bits reflected.  Slice-by-8: crc_table[0] is
 * the classic byte-at-a-time table; crc_table[k][b] is the CRC of byte b
 * followed by k zero bytes, so eight table look-ups, XOR'ed, advance the
 * CRC over eight bytes at once.  The tables are built on first use; only
 * one thread (the master at start-up, a test) ever computes a CRC.
 */
static uint32_t	 crc_table[8][256];
static int	 crc_ready;

static void
crc_init(void)
{
	uint32_t	 c;
	int		 i, j, k;

	for (i = 0; i < 256; i++) {
		c = (uint32_t)i;
		for (j = 0; j < 8; j++)
			c = (c >> 1) ^ (c & 1 ? 0x82f63b78U : 0);
		crc_table[0][i] = c;
	}
	for (i = 0; i < 256; i++)
		for (k = 1; k < 8; k++)
			crc_table[k][i] = (crc_table[k - 1][i] >> 8) ^
			    crc_table[0][crc_table[k - 1][i] & 0xff];
	crc_ready = 1;
}

/* CRC32C by the tables (see above). */
uint32_t
snapshot_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t	*p = buf;
	uint32_t	 hi;

	if (!crc_ready)
		crc_init();
	crc = ~crc;
	for (; len >= 8; p += 8, len -= 8) {
		crc ^= le32(p);
		hi = le32(p + 4);
		crc = crc_table[7][crc & 0xff] ^
		    crc_table[6][(crc >> 8) & 0xff] ^
		    crc_table[5][(crc >> 16) & 0xff] ^
		    crc_table[4][crc >> 24] ^
		    crc_table[3][hi & 0xff] ^
		    crc_table[2][(hi >> 8) & 0xff] ^
		    crc_table[1][(hi >> 16) & 0xff] ^
		    crc_table[0][hi >> 24];
	}
	while (len-- > 0)
		crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
	return (~crc);
}

#ifdef SNAP_SSE42
/* CRC32C by the SSE4.2 instruction, eight bytes at a time. */
__attribute__((target("sse4.2"))) static uint32_t
crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t	*p = buf;
	uint64_t	 c = ~crc, v;

	for (; len >= 8; p += 8, len -= 8) {
		memcpy(&v, p, 8);	/* x86 is little-endian */
		c = _mm_crc32_u64(c, v);
	}
	crc = (uint32_t)c;
	while (len-- > 0)
		crc = _mm_crc32_u8(crc, *p++);
	return (~crc);
}
#endif

/* CRC32C, by the instruction where the CPU has it. */
uint32_t
snapshot_crc32c(uint32_t crc, const void *buf, size_t len)
{
#ifdef SNAP_SSE42
	static int	 hw = -1;

	if (hw == -1)
		hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
	if (hw)
		return (crc32c_hw(crc, buf, len));
#endif
	return (snapshot_crc32c_sw(crc, buf, len));
}

/* Does buf start the JSON-lines format? */
int
snapshot_is_json(const void *buf, size_t len)
{
	return (len > 0 && *(const uint8_t *)buf == '{');
}

/* Send the block being filled, if it holds a record; 0 or -1. */
static int
writer_flush(struct snapshot_writer *w)
{
	uint8_t		*b = w->sw_buf;
	uint32_t	 crc;

	if (w->sw_nrec == 0)
		return (0);
	put32(b, w->sw_nrec);
	put32(b + 4, (uint32_t)(w->sw_len - SNAPSHOT_BLOCK_HEAD_LEN));
	crc = snapshot_crc32c(0, b, 8);
	crc = snapshot_crc32c(crc, b + SNAPSHOT_BLOCK_HEAD_LEN,
	    w->sw_len - SNAPSHOT_BLOCK_HEAD_LEN);
	put32(b + 8, crc);
	if (w->sw_out(w->sw_arg, b, w->sw_len) == -1)
		return (-1);
	w->sw_blocks++;
	w->sw_nrec = 0;
	w->sw_len = SNAPSHOT_BLOCK_HEAD_LEN;
	return (0);
}

/* Start a snapshot: the block buffer, and the header out. */
int
snapshot_writer_init(struct snapshot_writer *w, uint64_t seq, uint64_t keys,
    int (*out)(void *, const void *, size_t), void *arg)
{
	uint8_t	 h[SNAPSHOT_HEAD_LEN];

	memset(w, 0, sizeof(*w));
	w->sw_out = out;
	w->sw_arg = arg;
	w->sw_keys = keys;
	w->sw_len = SNAPSHOT_BLOCK_HEAD_LEN;
	if ((w->sw_buf = malloc(SNAPSHOT_BLOCK_HEAD_LEN + SNAPSHOT_BLOCK)) ==
	    NULL)
		return (-1);
	memcpy(h, SNAPSHOT_MAGIC, SNAPSHOT_MAGIC_LEN);
	put32(h + 8, SNAPSHOT_FORMAT);
	put32(h + 12, 0);
	put64(h + 16, seq);
	put64(h + 24, keys);
	put32(h + 32, SNAPSHOT_BLOCK);
	w->sw_head_crc = snapshot_crc32c(0, h, 36);
	put32(h + 36, w->sw_head_crc);
	return (out(arg, h, sizeof(h)));
}

/*
 * k as a record at p (SNAPSHOT_REC_MAX bytes of room); its length, or 0
 * if a string is longer than its limit (no NUL within it).
 */
static size_t
record_encode(uint8_t *p, const struct ks_key *k)
{
	const char	*s;
	uint8_t		*q;
	size_t		 i, n;

	memcpy(p, k->k_digest, KS_DIGEST_LEN);
	memcpy(p + 32, k->k_old_digest, KS_DIGEST_LEN);
	put64(p + 64, (uint64_t)k->k_grace_until);
	put64(p + 72, (uint64_t)k->k_created);
	put64(p + 80, (uint64_t)k->k_updated);
	put64(p + 88, (uint64_t)k->k_expires);
	put32(p + 96, k->k_flags);
	for (i = 0; i < KS_NWINDOWS; i++)
		put32(p + 100 + 4 * i, k->k_rate[i]);
	q = p + SNAPSHOT_REC_FIXED;
	for (i = 0; i < SNAP_NSTRS; i++) {
		s = (const char *)k + snap_strs[i].ss_off;
		if ((n = strnlen(s, snap_strs[i].ss_max + 1)) >
		    snap_strs[i].ss_max)
			return (0);
		*q++ = (uint8_t)n;
		memcpy(q, s, n);
		q += n;
	}
	return ((size_t)(q - p));
}

/* Add k to the block being filled, sending that block first if full. */
int
snapshot_writer_key(struct snapshot_writer *w, const struct ks_key *k)
{
	size_t	 n;

	if (w->sw_len + SNAPSHOT_REC_MAX >
	    SNAPSHOT_BLOCK_HEAD_LEN + SNAPSHOT_BLOCK && writer_flush(w) == -1)
		return (-1);
	if ((n = record_encode(w->sw_buf + w->sw_len, k)) == 0) {
		errno = EINVAL;
		return (-1);
	}
	w->sw_len += n;
	w->sw_nrec++;
	w->sw_written++;
	return (0);
}

/* The last block, the trailer; the writer is freed. */
int
snapshot_writer_end(struct snapshot_writer *w)
{
	uint8_t	 t[SNAPSHOT_TRAILER_LEN];
	int	 rc = -1;

	if (w->sw_written != w->sw_keys) {
		errno = EINVAL;
		goto done;
	}
	if (writer_flush(w) == -1)
		goto done;
	put32(t, 0);
	put32(t + 4, w->sw_blocks);
	put64(t + 8, w->sw_keys);
	put32(t + 16, w->sw_head_crc);
	put32(t + 20, snapshot_crc32c(0, t, 20));
	rc = w->sw_out(w->sw_arg, t, sizeof(t));
done:
	snapshot_writer_free(w);
	return (rc);
}

/* Free the writer's buffer (after a failure; _end does it itself). */
void
snapshot_writer_free(struct snapshot_writer *w)
{
	free(w->sw_buf);
	w->sw_buf = NULL;
}

/* The reader's state: the file, where it is, and where to say why. */
struct snap_rd {
	const uint8_t		*rd_buf;
	size_t			 rd_len;
	uint64_t		 rd_max_keys;
	uint32_t		 rd_block;	/* the header's block size */
	uint32_t		 rd_head_crc;
	uint32_t		 rd_blocks;	/* blocks read */
	uint64_t		 rd_keys;	/* records read */
	struct snapshot_head	 rd_head;
	snapshot_key_cb		 rd_cb;
	void			*rd_arg;
	size_t			*rd_off;
	char			*rd_why;
	size_t			 rd_whylen;
};

/* Damage at offset off: say why; -1. */
static int __attribute__((format(printf, 3, 4)))
rd_fail(struct snap_rd *rd, size_t off, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(rd->rd_why, rd->rd_whylen, fmt, ap);
	va_end(ap);
	*rd->rd_off = off;
	return (-1);
}

/* The header: magic, checksum, version, flags, block size, key count. */
static int
read_head(struct snap_rd *rd)
{
	const uint8_t	*h = rd->rd_buf;
	uint32_t	 version, flags;

	if (memcmp(h, SNAPSHOT_MAGIC, rd->rd_len < SNAPSHOT_MAGIC_LEN ?
	    rd->rd_len : SNAPSHOT_MAGIC_LEN) != 0)
		return (rd_fail(rd, 0, "not a keygate snapshot (bad magic)"));
	if (rd->rd_len < SNAPSHOT_HEAD_LEN)
		return (rd_fail(rd, 0, "the header is cut short (%d bytes, "
		    "the file has %zu)", SNAPSHOT_HEAD_LEN, rd->rd_len));
	rd->rd_head_crc = le32(h + 36);
	if (snapshot_crc32c(0, h, 36) != rd->rd_head_crc)
		return (rd_fail(rd, 0, "header checksum mismatch"));
	if ((version = le32(h + 8)) != SNAPSHOT_FORMAT)
		return (rd_fail(rd, 8, "snapshot format %u is not supported "
		    "(this keygated reads format %d)", version,
		    SNAPSHOT_FORMAT));
	if ((flags = le32(h + 12)) != 0)
		return (rd_fail(rd, 12, "unknown flags 0x%x", flags));
	rd->rd_head.sh_seq = le64(h + 16);
	rd->rd_head.sh_keys = le64(h + 24);
	rd->rd_block = le32(h + 32);
	if (rd->rd_head.sh_seq > INT64_MAX)
		return (rd_fail(rd, 16, "seq %llu is out of range",
		    (unsigned long long)rd->rd_head.sh_seq));
	if (rd->rd_block < SNAPSHOT_REC_MAX || rd->rd_block > SNAPSHOT_BLOCK_MAX)
		return (rd_fail(rd, 32, "block size %u is out of range (%d to "
		    "%d)", rd->rd_block, SNAPSHOT_REC_MAX, SNAPSHOT_BLOCK_MAX));
	if (rd->rd_head.sh_keys > rd->rd_max_keys)
		return (rd_fail(rd, 24, "the snapshot holds %llu keys: "
		    "max_keys (%llu) is too small for the stored keys",
		    (unsigned long long)rd->rd_head.sh_keys,
		    (unsigned long long)rd->rd_max_keys));
	return (0);
}

/*
 * The record at rd_buf[off], which must end by end (its block's end),
 * into k (zeroed first, every string NUL-terminated); its length in
 * *used.  Lengths are checked before anything is copied.
 */
static int
read_record(struct snap_rd *rd, size_t off, size_t end, struct ks_key *k,
    size_t *used)
{
	const struct snap_str	*ss;
	const uint8_t		*p = rd->rd_buf + off, *src;
	uint8_t			*dst;
	size_t			 q, n, i, j;

	if (end - off < SNAPSHOT_REC_MIN)
		return (rd_fail(rd, off, "a record is cut short by the end of "
		    "its block"));
	memset(k, 0, sizeof(*k));
	memcpy(k->k_digest, p, KS_DIGEST_LEN);
	memcpy(k->k_old_digest, p + 32, KS_DIGEST_LEN);
	k->k_grace_until = (int64_t)le64(p + 64);
	k->k_created = (int64_t)le64(p + 72);
	k->k_updated = (int64_t)le64(p + 80);
	k->k_expires = (int64_t)le64(p + 88);
	k->k_flags = le32(p + 96);
	for (i = 0; i < KS_NWINDOWS; i++)
		k->k_rate[i] = le32(p + 100 + 4 * i);
	q = off + SNAPSHOT_REC_FIXED;
	for (i = 0; i < SNAP_NSTRS; i++) {
		ss = &snap_strs[i];
		if (q >= end)
			return (rd_fail(rd, q, "field \"%s\" is cut short by "
			    "the end of its block", ss->ss_name));
		if ((n = rd->rd_buf[q]) > ss->ss_max)
			return (rd_fail(rd, q, "field \"%s\" is too long (%zu "
			    "bytes, at most %zu)", ss->ss_name, n,
			    ss->ss_max));
		if (n > end - q - 1)
			return (rd_fail(rd, q, "field \"%s\" runs past the end "
			    "of its block", ss->ss_name));
		/*
		 * Copied a byte at a time, looking for a NUL on the way: the
		 * strings are short, and this is quicker than memchr() and
		 * memcpy() with their set-up for each.
		 */
		src = rd->rd_buf + q + 1;
		dst = (uint8_t *)k + ss->ss_off;
		for (j = 0; j < n; j++)
			if ((dst[j] = src[j]) == '\0')
				return (rd_fail(rd, q, "field \"%s\" holds a "
				    "NUL byte", ss->ss_name));
		q += 1 + n;
	}
	*used = q - off;
	return (0);
}

/* The block at off: checksum, then each record to the callback. */
static int
read_block(struct snap_rd *rd, size_t off, size_t *next)
{
	const uint8_t	*b = rd->rd_buf + off;
	struct ks_key	 k;
	uint32_t	 nrec, plen, crc, i;
	size_t		 p, end, used = 0;

	if (rd->rd_len - off < SNAPSHOT_BLOCK_HEAD_LEN)
		return (rd_fail(rd, off, "a block header is cut short (%d "
		    "bytes, %zu remain)", SNAPSHOT_BLOCK_HEAD_LEN,
		    rd->rd_len - off));
	nrec = le32(b);
	plen = le32(b + 4);
	if (plen > rd->rd_block)
		return (rd_fail(rd, off + 4, "block of %u bytes, over the "
		    "block size (%u)", plen, rd->rd_block));
	if (plen > rd->rd_len - off - SNAPSHOT_BLOCK_HEAD_LEN)
		return (rd_fail(rd, off, "a block is cut short (%u bytes, %zu "
		    "remain)", plen, rd->rd_len - off -
		    SNAPSHOT_BLOCK_HEAD_LEN));
	crc = snapshot_crc32c(0, b, 8);
	crc = snapshot_crc32c(crc, b + SNAPSHOT_BLOCK_HEAD_LEN, plen);
	if (crc != le32(b + 8))
		return (rd_fail(rd, off, "block checksum mismatch"));
	if (nrec > rd->rd_head.sh_keys - rd->rd_keys)
		return (rd_fail(rd, off, "more keys than the header says "
		    "(%llu)", (unsigned long long)rd->rd_head.sh_keys));
	p = off + SNAPSHOT_BLOCK_HEAD_LEN;
	end = p + plen;
	for (i = 0; i < nrec; i++) {
		if (read_record(rd, p, end, &k, &used) == -1)
			return (-1);
		if (rd->rd_cb(rd->rd_arg, &rd->rd_head, &k, rd->rd_why,
		    rd->rd_whylen) == -1) {
			*rd->rd_off = p;
			return (-1);
		}
		p += used;
	}
	if (p != end)
		return (rd_fail(rd, p, "%zu bytes after the block's %u "
		    "records", end - p, nrec));
	rd->rd_keys += nrec;
	rd->rd_blocks++;
	*next = end;
	return (0);
}

/* The trailer at off: checksum, counts, header, and the end of the file. */
static int
read_trailer(struct snap_rd *rd, size_t off)
{
	const uint8_t	*t = rd->rd_buf + off;

	if (rd->rd_len - off < SNAPSHOT_TRAILER_LEN)
		return (rd_fail(rd, off, "the trailer is cut short (%d bytes, "
		    "%zu remain)", SNAPSHOT_TRAILER_LEN, rd->rd_len - off));
	if (snapshot_crc32c(0, t, 20) != le32(t + 20))
		return (rd_fail(rd, off, "trailer checksum mismatch"));
	if (le32(t + 16) != rd->rd_head_crc)
		return (rd_fail(rd, off + 16, "the trailer belongs to another "
		    "header"));
	if (le32(t + 4) != rd->rd_blocks)
		return (rd_fail(rd, off + 4, "the trailer counts %u blocks, "
		    "the file has %u", le32(t + 4), rd->rd_blocks));
	if (le64(t + 8) != rd->rd_head.sh_keys ||
	    rd->rd_keys != rd->rd_head.sh_keys)
		return (rd_fail(rd, off, "%llu keys in the blocks, the header "
		    "says %llu and the trailer %llu",
		    (unsigned long long)rd->rd_keys,
		    (unsigned long long)rd->rd_head.sh_keys,
		    (unsigned long long)le64(t + 8)));
	if (rd->rd_len - off > SNAPSHOT_TRAILER_LEN)
		return (rd_fail(rd, off + SNAPSHOT_TRAILER_LEN, "%zu bytes "
		    "after the trailer", rd->rd_len - off -
		    SNAPSHOT_TRAILER_LEN));
	return (0);
}

/*
 * Read a whole snapshot (see snapshot.h).  Each block is at least
 * SNAPSHOT_BLOCK_HEAD_LEN + SNAPSHOT_REC_MIN bytes long or fails, so the
 * loop ends within len / that many steps.
 */
int
snapshot_read(const void *buf, size_t len, uint64_t max_keys,
    struct snapshot_head *head, snapshot_key_cb cb, void *arg, size_t *off,
    char *why, size_t whylen)
{
	struct snap_rd	 rd;
	size_t		 p;

	memset(&rd, 0, sizeof(rd));
	rd.rd_buf = buf;
	rd.rd_len = len;
	rd.rd_max_keys = max_keys;
	rd.rd_cb = cb;
	rd.rd_arg = arg;
	rd.rd_off = off;
	rd.rd_why = why;
	rd.rd_whylen = whylen;
	memset(head, 0, sizeof(*head));
	if (read_head(&rd) == -1)
		return (-1);
	*head = rd.rd_head;
	for (p = SNAPSHOT_HEAD_LEN;;) {
		if (len - p < 4)
			return (rd_fail(&rd, p, "cut short: a block or the "
			    "trailer should start here (%zu bytes remain)",
			    len - p));
		if (le32(rd.rd_buf + p) == 0)
			break;
		if (read_block(&rd, p, &p) == -1)
			return (-1);
	}
	return (read_trailer(&rd, p));
}

/* Recompute every checksum of the snapshot in buf, as far as it goes. */
void
snapshot_fix_checksums(void *buf, size_t len)
{
	uint8_t		*b = buf;
	uint32_t	 head, plen, crc;
	size_t		 p;

	if (len < SNAPSHOT_HEAD_LEN)
		return;
	head = snapshot_crc32c(0, b, 36);
	put32(b + 36, head);
	for (p = SNAPSHOT_HEAD_LEN; len - p >= 4 && le32(b + p) != 0;
	    p += SNAPSHOT_BLOCK_HEAD_LEN + plen) {
		if (len - p < SNAPSHOT_BLOCK_HEAD_LEN)
			return;
		plen = le32(b + p + 4);
		if (plen > len - p - SNAPSHOT_BLOCK_HEAD_LEN)
			return;
		crc = snapshot_crc32c(0, b + p, 8);
		crc = snapshot_crc32c(crc, b + p + SNAPSHOT_BLOCK_HEAD_LEN,
		    plen);
		put32(b + p + 8, crc);
	}
	if (len - p >= SNAPSHOT_TRAILER_LEN) {
		put32(b + p + 16, head);
		put32(b + p + 20, snapshot_crc32c(0, b + p, 20));
	}
}
