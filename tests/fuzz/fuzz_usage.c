/*
 * libFuzzer target for the usage history's file parser (src/usage.c).
 *
 * The first input byte is a mode, the rest a file:
 *
 *	mode & 1	a file of hours (24 points) instead of minutes (60)
 *	mode & 2	its period must be 7 (else any period is accepted)
 *
 * usage_parse() reads it from a memory stream.  A failure must say why.
 * A success must be stable: the lines it reported, written back in the
 * format usage.c writes (only points with traffic), parse again, report
 * the same lines, and write back the same text.  AddressSanitizer and
 * UBSan watch the bounds and the 64-bit arithmetic.
 */

#include <sys/types.h>

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "usage.h"
#include "fuzz.h"

/* What the callbacks saw, in the files' own format. */
struct fz_out {
	FILE	*o_fp;
	char	*o_buf;
	size_t	 o_len;
	size_t	 o_keys;
};

static int
fz_line(void *arg, const char *id, const uint64_t (*pts)[USAGE_NC], int n)
{
	struct fz_out	*o = arg;
	size_t		 len = strlen(id);
	int		 i;

	FUZZ_ASSERT(len >= 1 && len <= 20);
	FUZZ_ASSERT(strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRS"
	    "TUVWXYZ0123456789_") == len);
	FUZZ_ASSERT(n == 60 || n == 24);
	fputs(id, o->o_fp);
	for (i = 0; i < n; i++)
		if ((pts[i][0] | pts[i][1] | pts[i][2]) != 0)
			fprintf(o->o_fp, " %d:%" PRIu64 ",%" PRIu64 ",%" PRIu64,
			    i, pts[i][0], pts[i][1], pts[i][2]);
	fputc('\n', o->o_fp);
	o->o_keys++;
	return (0);
}

/* Parse p[0..n) as kind/period; 0 with the lines in o, or -1. */
static int
fz_parse(const void *p, size_t n, int kind, int64_t period, struct fz_out *o)
{
	FILE	*fp;
	char	 err[512];
	int	 rc;

	memset(o, 0, sizeof(*o));
	FUZZ_ASSERT((o->o_fp = open_memstream(&o->o_buf, &o->o_len)) != NULL);
	if (n == 0)
		fp = fopen("/dev/null", "r");
	else
		fp = fmemopen((void *)p, n, "r");
	FUZZ_ASSERT(fp != NULL);
	err[0] = '\0';
	rc = usage_parse(fp, kind, period, fz_line, o, err, sizeof(err));
	fclose(fp);
	fclose(o->o_fp);
	FUZZ_ASSERT(rc == 0 || rc == -1);
	FUZZ_ASSERT(rc == 0 || err[0] != '\0');
	return (rc);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int	 ready;
	struct fz_out	 a, b;
	char		 err[256];
	char		*again;
	size_t		 len;
	int		 kind;
	int64_t		 period;

	if (!ready) {
		FUZZ_ASSERT(log_init(LOG_TO_STDERR, LOGLEVEL_ERROR,
		    "fuzz_usage", err, sizeof(err)) == 0);
		ready = 1;
	}
	if (size == 0)
		return (0);
	kind = (data[0] & 1) ? USAGE_HOURS : USAGE_MINUTES;
	period = (data[0] & 2) ? 7 : -1;
	if (fz_parse(data + 1, size - 1, kind, period, &a) == 0) {
		/* Written back with period 7 and the same lines. */
		len = (size_t)snprintf(NULL, 0, "keygate-usage 1 %s 7 %zu\n",
		    kind == USAGE_HOURS ? "hours" : "minutes", a.o_keys) +
		    a.o_len + 4;
		FUZZ_ASSERT((again = malloc(len + 1)) != NULL);
		snprintf(again, len + 1, "keygate-usage 1 %s 7 %zu\n%send\n",
		    kind == USAGE_HOURS ? "hours" : "minutes", a.o_keys,
		    a.o_buf);
		FUZZ_ASSERT(fz_parse(again, len, kind, 7, &b) == 0);
		FUZZ_ASSERT(b.o_keys == a.o_keys && b.o_len == a.o_len &&
		    memcmp(a.o_buf, b.o_buf, a.o_len) == 0);
		free(again);
		free(b.o_buf);
	}
	free(a.o_buf);
	return (0);
}
