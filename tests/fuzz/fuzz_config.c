/*
 * libFuzzer target for the configuration parser: the input, made a C
 * string, is parsed with config_parse() and the result (if any) freed.
 * AddressSanitizer's leak check makes every error path prove that it frees
 * what it built.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz.h"

/* Parse one input; the parser must neither crash nor leak. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct config	*c;
	char		 err[CONFIG_ERRLEN], *text;

	if ((text = malloc(len + 1)) == NULL)
		return (0);
	memcpy(text, data, len);
	text[len] = '\0';
	err[0] = '\0';
	c = config_parse(text, "fuzz.conf", err, sizeof(err));
	/* Every failure must say why, prefixed with the file name. */
	if (c == NULL && strncmp(err, "fuzz.conf:", 10) != 0)
		abort();
	config_free(c);
	free(text);
	return (0);
}
