/*
 * The unit tests' file reader, header-only (each test is its own
 * program): the whole of dir/name as a NUL-terminated string, malloc'ed,
 * or NULL if it cannot be opened.
 */
#ifndef KEYGATE_TEST_SLURP_H
#define KEYGATE_TEST_SLURP_H

#include <stdio.h>
#include <stdlib.h>

static char *
test_slurp(const char *dir, const char *name)
{
	char	 path[512], *buf;
	FILE	*fp;
	long	 n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((fp = fopen(path, "r")) == NULL)
		return (NULL);
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	rewind(fp);
	assert_non_null(buf = calloc(1, (size_t)n + 1));
	assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	return (buf);
}

#endif /* KEYGATE_TEST_SLURP_H */
