/*
 * What every libFuzzer target shares: the entry point's prototype and the
 * assertion that turns a broken invariant into a crash the fuzzer reports
 * (assert() would vanish under NDEBUG).
 */

#ifndef KG_FUZZ_H
#define KG_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int	 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define FUZZ_ASSERT(cond) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "%s:%d: invariant failed: %s\n",	\
		    __FILE__, __LINE__, #cond);				\
		abort();						\
	}								\
} while (0)

#endif /* KG_FUZZ_H */
