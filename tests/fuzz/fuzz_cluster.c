/*
 * libFuzzer target for the cluster's messages (src/clmsg.c): what a
 * worker sends its master, what Redis returns as a stream entry, the
 * cluster.state file, and stream positions.  The first byte picks the
 * parser, the rest is its input:
 *
 * - 'r': clmsg_parse_request().  An accepted put's record is a key that
 *   key_check() passes (journal_key_json() encodes it) whose compact JSON
 *   is r_record; r_expect is at most CL_EXPECT_MAX bytes without a NUL;
 *   an "idem" member is at most CL_IDEM_MAX bytes; a del has a key id.
 * - 'c': clmsg_parse_change(), the rest split at NUL bytes into fields
 *   and values.  An accepted put's record encodes back to JSON that
 *   parses again to the same key; a seed has an epoch.
 * - 's': clmsg_parse_state(); an accepted state formats to a text that
 *   parses back to the same state.
 * - 'p': clpos_parse(); an accepted position formats to a text that
 *   parses back to the same position.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cluster.h"
#include "journal.h"
#include "fuzz.h"

static void
fuzz_request(const char *s, size_t len)
{
	struct cl_request	 r;
	char			 err[256], *again;

	if (clmsg_parse_request(s, len, &r, err, sizeof(err)) == -1) {
		FUZZ_ASSERT(err[0] != '\0');
		FUZZ_ASSERT(r.r_record == NULL && r.r_expect == NULL &&
		    r.r_idem == NULL);
		return;
	}
	FUZZ_ASSERT(r.r_op == CL_OP_PUT || r.r_op == CL_OP_DEL ||
	    r.r_op == CL_OP_STATUS);
	if (r.r_expect != NULL)
		FUZZ_ASSERT(strlen(r.r_expect) > 0 &&
		    strlen(r.r_expect) <= CL_EXPECT_MAX);
	if (r.r_op == CL_OP_DEL) {
		FUZZ_ASSERT(strlen(r.r_id) == KS_ID_LEN);
		FUZZ_ASSERT(r.r_expect != NULL);
	}
	if (r.r_op == CL_OP_PUT) {
		FUZZ_ASSERT(r.r_record != NULL);
		FUZZ_ASSERT(strcmp(r.r_id, r.r_key.k_id) == 0);
		if (r.r_idem != NULL)
			FUZZ_ASSERT(strlen(r.r_idem) <= CL_IDEM_MAX);
		/* The record is the key's identity: it encodes the same. */
		again = clmsg_record(&r.r_key, err, sizeof(err));
		FUZZ_ASSERT(again != NULL);
		FUZZ_ASSERT(strcmp(again, r.r_record) == 0);
		free(again);
	}
	clmsg_request_free(&r);
}

static void
fuzz_change(const char *s, size_t len)
{
	struct cl_change	 c, c2;
	const char		*f[20];
	size_t			 flen[20], n = 0, i = 0, start = 0;
	char			 err[256], *rec, *rec2;
	const char		*f2[4];
	size_t			 f2len[4];

	while (i <= len && n < 20) {
		if (i == len || s[i] == '\0') {
			f[n] = s + start;
			flen[n++] = i - start;
			start = i + 1;
		}
		i++;
	}
	if (clmsg_parse_change(f, flen, n, &c, err, sizeof(err)) == -1) {
		FUZZ_ASSERT(err[0] != '\0');
		FUZZ_ASSERT(c.ch_idem == NULL);
		return;
	}
	switch (c.ch_kind) {
	case CL_CH_SEED:
		FUZZ_ASSERT(c.ch_epoch[0] != '\0');
		break;
	case CL_CH_DEL:
		FUZZ_ASSERT(strlen(c.ch_id) == KS_ID_LEN);
		break;
	case CL_CH_PUT:
		FUZZ_ASSERT(strcmp(c.ch_id, c.ch_key.k_id) == 0);
		FUZZ_ASSERT(c.ch_idem == NULL || json_is_object(c.ch_idem));
		rec = clmsg_record(&c.ch_key, err, sizeof(err));
		FUZZ_ASSERT(rec != NULL);
		f2[0] = "op";
		f2len[0] = 2;
		f2[1] = "put";
		f2len[1] = 3;
		f2[2] = "key";
		f2len[2] = 3;
		f2[3] = rec;
		f2len[3] = strlen(rec);
		FUZZ_ASSERT(clmsg_parse_change(f2, f2len, 4, &c2, err,
		    sizeof(err)) == 0);
		rec2 = clmsg_record(&c2.ch_key, err, sizeof(err));
		FUZZ_ASSERT(rec2 != NULL && strcmp(rec, rec2) == 0);
		free(rec);
		free(rec2);
		clmsg_change_free(&c2);
		break;
	default:
		FUZZ_ASSERT(0);
	}
	clmsg_change_free(&c);
}

static void
fuzz_state(const char *s, size_t len)
{
	struct cl_state	 st, again;
	char		 err[256], *text;

	if (clmsg_parse_state(s, len, &st, err, sizeof(err)) == -1) {
		FUZZ_ASSERT(err[0] != '\0');
		return;
	}
	FUZZ_ASSERT(strlen(st.s_node) == CL_NODE_LEN);
	text = clmsg_format_state(&st);
	FUZZ_ASSERT(text != NULL);
	FUZZ_ASSERT(clmsg_parse_state(text, strlen(text), &again, err,
	    sizeof(err)) == 0);
	FUZZ_ASSERT(strcmp(st.s_epoch, again.s_epoch) == 0 &&
	    strcmp(st.s_node, again.s_node) == 0 &&
	    strcmp(st.s_name, again.s_name) == 0 &&
	    clpos_cmp(&st.s_pos, &again.s_pos) == 0);
	free(text);
}

static void
fuzz_pos(const char *s, size_t len)
{
	struct cl_pos	 p, q;
	char		 buf[48];

	if (clpos_parse(s, len, &p) == -1)
		return;
	clpos_format(&p, buf, sizeof(buf));
	FUZZ_ASSERT(clpos_parse(buf, strlen(buf), &q) == 0);
	FUZZ_ASSERT(clpos_cmp(&p, &q) == 0);
	/* Only digits and one '-' were taken. */
	FUZZ_ASSERT(strspn(buf, "0123456789-") == strlen(buf));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char	*s = (const char *)data + 1;

	if (size < 1)
		return (0);
	switch (data[0]) {
	case 'r':
		fuzz_request(s, size - 1);
		break;
	case 'c':
		fuzz_change(s, size - 1);
		break;
	case 's':
		fuzz_state(s, size - 1);
		break;
	case 'p':
		fuzz_pos(s, size - 1);
		break;
	}
	return (0);
}
