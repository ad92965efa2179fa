/*
 * Unit tests for secrets and ids (src/secret.c): format, uniqueness and
 * uniformity of the random characters, digests, hints, validation and
 * constant-time comparison.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <jansson.h>

#include "secret.h"

#define ALPHABET \
	"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

/* Is every one of the n bytes at s a base62 character? */
static int
all_base62(const char *s, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (s[i] == '\0' || strchr(ALPHABET, s[i]) == NULL)
			return (0);
	return (1);
}

/* Generated secrets: "<prefix>_" and 32 base62 characters, NUL-ended. */
static void
test_generate_format(void **state)
{
	static const char *const prefixes[] = {
		"live", "test", "a", "0", "abcdefghijkl", "x9y8"
	};
	char	 s[SECRET_MAX + 1];
	size_t	 i, plen;

	(void)state;
	for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		memset(s, 'Z', sizeof(s));
		assert_int_equal(secret_generate(prefixes[i], s, sizeof(s)), 0);
		plen = strlen(prefixes[i]);
		assert_int_equal(strlen(s), plen + 1 + SECRET_BODY_LEN);
		assert_memory_equal(s, prefixes[i], plen);
		assert_int_equal(s[plen], '_');
		assert_true(all_base62(s + plen + 1, SECRET_BODY_LEN));
	}
	/* The longest prefix fills exactly SECRET_MAX characters. */
	assert_int_equal(secret_generate("abcdefghijkl", s, sizeof(s)), 0);
	assert_int_equal(strlen(s), SECRET_MAX);
}

/* Bad prefixes and short buffers are refused. */
static void
test_generate_refused(void **state)
{
	static const char *const bad[] = {
		"", "Live", "li-ve", "li_ve", "live ", "abcdefghijklm", "é"
	};
	char	 s[SECRET_MAX + 1];
	size_t	 i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(secret_generate(bad[i], s, sizeof(s)), -1);
	/* "live_" + 32 needs 38 bytes with the NUL. */
	assert_int_equal(secret_generate("live", s, 37), -1);
	assert_int_equal(secret_generate("live", s, 38), 0);
	assert_int_equal(strlen(s), 37);
}

/* Ids: "key_" and 16 base62 characters, accepted by secret_valid_id. */
static void
test_make_id(void **state)
{
	char	 id[32];

	(void)state;
	assert_int_equal(secret_make_id(id, 20), -1);
	assert_int_equal(secret_make_id(id, 21), 0);
	assert_int_equal(strlen(id), 20);
	assert_memory_equal(id, "key_", 4);
	assert_true(all_base62(id + 4, 16));
	assert_int_equal(secret_valid_id(id, strlen(id)), 1);
}

/* qsort comparison of two C strings held by pointer. */
static int
cmp_str(const void *a, const void *b)
{
	return (strcmp(*(char *const *)a, *(char *const *)b));
}

/* 10,000 secrets and 10,000 ids are all different. */
static void
test_uniqueness(void **state)
{
	enum { N = 10000 };
	char	**v;
	char	 *mem;
	size_t	  i;

	(void)state;
	assert_non_null(v = calloc(N, sizeof(*v)));
	assert_non_null(mem = calloc(N, SECRET_MAX + 1));
	for (i = 0; i < N; i++) {
		v[i] = mem + i * (SECRET_MAX + 1);
		assert_int_equal(secret_generate("live", v[i], SECRET_MAX + 1),
		    0);
	}
	qsort(v, N, sizeof(*v), cmp_str);
	for (i = 1; i < N; i++)
		assert_string_not_equal(v[i - 1], v[i]);
	for (i = 0; i < N; i++)
		assert_int_equal(secret_make_id(v[i], SECRET_MAX + 1), 0);
	qsort(v, N, sizeof(*v), cmp_str);
	for (i = 1; i < N; i++)
		assert_string_not_equal(v[i - 1], v[i]);
	free(mem);
	free(v);
}

/*
 * 200,000 characters: each of the 62 appears within 30 %..170 % of its
 * expected count, and the chi-square statistic (61 degrees of freedom,
 * mean 61, standard deviation 11) stays under 200, which a uniform source
 * exceeds with probability about 1e-16.  A plain "byte % 62" favours the
 * first 8 characters by 25 % and scores about 1300, so this fails on
 * modulo bias while never flaking.
 */
static void
test_uniformity(void **state)
{
	enum { N = 200000 };
	char	*buf;
	double	 expect = (double)N / 62, chi = 0, d;
	size_t	 count[62] = { 0 }, i;
	const char *p;

	(void)state;
	assert_non_null(buf = malloc(N));
	assert_int_equal(secret_base62(buf, N), 0);
	for (i = 0; i < N; i++) {
		assert_non_null(p = memchr(ALPHABET, buf[i], 62));
		count[p - ALPHABET]++;
	}
	for (i = 0; i < 62; i++) {
		assert_true(count[i] > 0.3 * expect);
		assert_true(count[i] < 1.7 * expect);
		d = count[i] - expect;
		chi += d * d / expect;
	}
	assert_true(chi < 200.0);
	/* n = 0 writes nothing. */
	buf[0] = '#';
	assert_int_equal(secret_base62(buf, 0), 0);
	assert_int_equal(buf[0], '#');
	free(buf);
}

/* SHA-256 of known vectors (FIPS 180-2 "abc", and the empty string). */
static void
test_digest(void **state)
{
	static const uint8_t abc[32] = {
		0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
		0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
		0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
		0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad
	};
	static const uint8_t empty[32] = {
		0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14,
		0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
		0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c,
		0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55
	};
	uint8_t	 d[32];

	(void)state;
	secret_digest("abcdef", 3, d);
	assert_memory_equal(d, abc, 32);
	secret_digest("", 0, d);
	assert_memory_equal(d, empty, 32);
}

/* Hints: prefix, "_..." and the last four characters, nothing else. */
static void
test_hint(void **state)
{
	static const struct {
		const char	*secret;
		const char	*hint;
	} t[] = {
		{ "live_abcdefghijklmnopqrstuvwxyz012345", "live_...2345" },
		{ "test_Ab3xQQQQQQQQQQQQQQQQQQQQQQQQQQQQ", "test_...QQQQ" },
		{ "abcdefghijkl_0123456789012345678901234567",
		    "abcdefghijkl_...4567" },
		{ "my_test_abcdwxyz", "my_test_...wxyz" },
		{ "nounderscorewxyz", "...wxyz" },
		{ "abc", "...abc" },
		{ "live_ab", "live_...ab" },
		{ "live_", "live_..." },
	};
	char	 s[SECRET_MAX + 1], h[32];
	size_t	 i;

	(void)state;
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		memset(h, 'Z', sizeof(h));
		secret_hint(t[i].secret, h, 21);
		assert_string_equal(h, t[i].hint);
	}
	assert_int_equal(secret_generate("live", s, sizeof(s)), 0);
	secret_hint(s, h, 21);
	assert_int_equal(strlen(h), 12);
	assert_memory_equal(h, "live_...", 8);
	assert_string_equal(h + 8, s + strlen(s) - 4);
}

/* Foreign secrets: 8..512 bytes of 0x21..0x7e, nothing else. */
static void
test_valid_import(void **state)
{
	char		 big[SECRET_IMPORT_MAX + 2];
	const char	*cause = NULL;
	int		 c;

	(void)state;
	assert_true(secret_valid_import("abcdefgh", 8, &cause));
	assert_true(secret_valid_import("a.b.c/d=+~!\"\\", 13, &cause));
	assert_false(secret_valid_import("abcdefg", 7, &cause));
	assert_non_null(cause);
	assert_false(secret_valid_import("abcd efgh", 9, &cause));
	assert_false(secret_valid_import("abcd\tefgh", 9, &cause));
	assert_false(secret_valid_import("abcd\0efgh", 9, &cause));
	assert_false(secret_valid_import("abcd\x7f" "efgh", 9, &cause));
	assert_false(secret_valid_import("abcd\xc3\xa9" "efgh", 10, &cause));
	memset(big, '~', sizeof(big));
	assert_true(secret_valid_import(big, SECRET_IMPORT_MAX, &cause));
	assert_false(secret_valid_import(big, SECRET_IMPORT_MAX + 1, &cause));
	/* Every visible character alone among letters. */
	for (c = 0x21; c <= 0x7e; c++) {
		memset(big, 'x', 8);
		big[3] = (char)c;
		assert_true(secret_valid_import(big, 8, &cause));
	}
}

/* Hints of any secret: keygate's shape as before, else 4...4 or ...2. */
static void
test_hint_any(void **state)
{
	static const struct {
		const char	*secret;
		const char	*hint;
	} t[] = {
		{ "live_abcdefghijklmnopqrstuvwxyz012345", "live_...2345" },
		{ "abcdefghijkl_01234567890123456789012345678901",
		    "abcdefghijkl_...8901" },
		/* keygate-like but the body is not 32 base62: foreign */
		{ "live_abcdefghijklmnopqrstuvwxyz01234.", "live...234." },
		{ "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_l...p7dc" },
		{ "0123456789abcdef", "0123...cdef" },
		{ "0123456789abcde", "...de" },
		{ "a.b.c=/+", ".../+" },
		{ "x", "..." },
	};
	char	 h[32], h2[32], s[SECRET_MAX + 1];
	size_t	 i;

	(void)state;
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		memset(h, 'Z', sizeof(h));
		secret_hint_any(t[i].secret, strlen(t[i].secret), h, 21);
		assert_string_equal(h, t[i].hint);
	}
	assert_int_equal(secret_generate("test", s, sizeof(s)), 0);
	secret_hint_any(s, strlen(s), h, 21);
	secret_hint(s, h2, sizeof(h2));
	assert_string_equal(h, h2);
}

/* The prefix kept for regenerations of an imported secret. */
static void
test_prefix_of(void **state)
{
	static const struct {
		const char	*secret;
		const char	*prefix;
	} t[] = {
		{ "live_abc", "live" },
		{ "sk_live_xyz", "sk" },
		{ "abcdefghijkl_x", "abcdefghijkl" },
		{ "abcdefghijklm_x", "live" },
		{ "Live_abc", "live" },
		{ "_abcdefg", "live" },
		{ "abcdefg_", "live" },
		{ "a.b.c_d", "live" },
		{ "nounderscore", "live" },
	};
	char	 p[16];
	size_t	 i;

	(void)state;
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		secret_prefix_of(t[i].secret, strlen(t[i].secret), p,
		    sizeof(p));
		assert_string_equal(p, t[i].prefix);
	}
}

/* Prefix validation: [a-z0-9]{1,12}. */
static void
test_valid_prefix(void **state)
{
	(void)state;
	assert_true(secret_valid_prefix("live"));
	assert_true(secret_valid_prefix("a"));
	assert_true(secret_valid_prefix("0123456789ab"));
	assert_false(secret_valid_prefix(""));
	assert_false(secret_valid_prefix("0123456789abc"));
	assert_false(secret_valid_prefix("Live"));
	assert_false(secret_valid_prefix("li_ve"));
	assert_false(secret_valid_prefix("li ve"));
	assert_false(secret_valid_prefix(NULL));
}

/* Id validation: exactly "key_" and 16 base62 characters. */
static void
test_valid_id(void **state)
{
	static const struct {
		const char	*s;
		int		 ok;
	} t[] = {
		{ "key_0123456789abcdef", 1 },
		{ "key_ABCDEFGHIJKLMNOP", 1 },
		{ "key_0123456789abcde", 0 },
		{ "key_0123456789abcdefg", 0 },
		{ "Key_0123456789abcdef", 0 },
		{ "kex_0123456789abcdef", 0 },
		{ "key-0123456789abcdef", 0 },
		{ "key_0123456789abcde_", 0 },
		{ "key_0123456789abcd-f", 0 },
		{ "key_01234567 9abcdef", 0 },
		{ "", 0 },
	};
	size_t	 i;

	(void)state;
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		assert_int_equal(secret_valid_id(t[i].s, strlen(t[i].s)),
		    t[i].ok);
	/* The length given is what counts, not the NUL. */
	assert_int_equal(secret_valid_id("key_0123456789abcdefXX", 20), 1);
	assert_int_equal(secret_valid_id("key_0123456789abcdef", 19), 0);
	assert_int_equal(secret_valid_id("key_0123456789abc\0ef", 20), 0);
}

/* Constant-time equality: equal only when bytes and lengths match. */
static void
test_equal(void **state)
{
	(void)state;
	assert_int_equal(secret_equal("token", 5, "token", 5), 1);
	assert_int_equal(secret_equal("", 0, "", 0), 1);
	assert_int_equal(secret_equal("token", 5, "tokem", 5), 0);
	assert_int_equal(secret_equal("token", 5, "token2", 6), 0);
	assert_int_equal(secret_equal("token", 5, "", 0), 0);
	assert_int_equal(secret_equal("tok\0a", 5, "tok\0b", 5), 0);
	assert_int_equal(secret_equal("tok\0a", 5, "tok\0a", 5), 1);
	assert_int_equal(secret_equal("tokenXX", 5, "tokenYY", 5), 1);
}

/*
 * secret_json_wipe(): jansson frees through the wiping free, and what it
 * returns is still malloc()'s (json_dumps() output released with free(),
 * which ASan would report if the blocks were not malloc's own).
 */
static void
test_json_wipe(void **state)
{
	json_malloc_t	 mf;
	json_free_t	 ff;
	json_t		*o;
	char		*s;

	(void)state;
	secret_json_wipe();
	json_get_alloc_funcs(&mf, &ff);
	assert_ptr_equal(mf, malloc);
#ifdef HAVE_MALLOC_USABLE_SIZE
	assert_ptr_not_equal(ff, free);
#endif
	o = json_loads("{\"key\": \"live_Pq3Zt8Lw0Xv2Nc6Hb9Rk1Ym4Sd7Gf5Ja\"}",
	    0, NULL);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "key")),
	    "live_Pq3Zt8Lw0Xv2Nc6Hb9Rk1Ym4Sd7Gf5Ja");
	assert_non_null(s = json_dumps(o, JSON_COMPACT));
	free(s);
	json_decref(o);
	json_set_alloc_funcs(malloc, free);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_generate_format),
		cmocka_unit_test(test_generate_refused),
		cmocka_unit_test(test_make_id),
		cmocka_unit_test(test_uniqueness),
		cmocka_unit_test(test_uniformity),
		cmocka_unit_test(test_digest),
		cmocka_unit_test(test_hint),
		cmocka_unit_test(test_valid_import),
		cmocka_unit_test(test_hint_any),
		cmocka_unit_test(test_prefix_of),
		cmocka_unit_test(test_valid_prefix),
		cmocka_unit_test(test_valid_id),
		cmocka_unit_test(test_equal),
		cmocka_unit_test(test_json_wipe),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
