/*
 * What every libFuzzer target shares: the entry point's prototype and the
 * assertion that turns a broken invariant into a crash the fuzzer reports
 * (assert() would vanish under NDEBUG).
 */

#ifndef KG_FUZZ_H
#define KG_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int	 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define FUZZ_ASSERT(cond) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "%s:%d: invariant failed: %s\n",	\
		    __FILE__, __LINE__, #cond);				\
		abort();						\
	}								\
} while (0)

/*
 * Is the header name name[0..len) the lower-case lower, case ignored (an
 * oracle written apart from http.c's), and '_' read as '-' if dash?
 */
static inline int
fuzz_header_is(const char *name, size_t len, const char *lower, int dash)
{
	size_t	 i;
	int	 a;

	if (len != strlen(lower))
		return (0);
	for (i = 0; i < len; i++) {
		a = (unsigned char)name[i];
		if (a >= 'A' && a <= 'Z')
			a += 'a' - 'A';
		if (dash && a == '_')
			a = '-';
		if (a != lower[i])
			return (0);
	}
	return (1);
}

#endif /* KG_FUZZ_H */
