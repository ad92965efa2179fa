/*
 * Unit tests for the cluster's messages (clmsg.c): stream positions, a
 * worker's request as the master checks it, stream entries, cluster.state,
 * and the worker's end of the channels over a real socketpair (an answer
 * to an earlier, timed-out call is dropped; a master gone is an error).
 */

#include <sys/socket.h>

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "cluster.h"

#define KEY	"{\"app_id\":\"\",\"created\":1,\"digest\":\"" \
	"5de2299000000000000000000000000000000000000000000000000000f6a39a" \
	"\",\"disabled\":false,\"expires\":null,\"grace_until\":null," \
	"\"hint\":\"live_...3ikl\",\"id\":\"key_A2cfVuCbRqBkGBAE\"," \
	"\"name\":\"\",\"old_digest\":null,\"owner\":\"acme\"," \
	"\"prefix\":\"live\",\"rate\":[0,0,0],\"scopes\":[\"a\",\"b\"]," \
	"\"updated\":2}"

static void
test_pos(void **state)
{
	struct cl_pos	 a, b;
	char		 buf[48];

	(void)state;
	assert_int_equal(clpos_parse("1796321716000-12", 16, &a), 0);
	assert_true(a.p_ms == 1796321716000ULL && a.p_seq == 12);
	clpos_format(&a, buf, sizeof(buf));
	assert_string_equal(buf, "1796321716000-12");
	assert_int_equal(clpos_parse("5", 1, &b), 0);
	assert_true(b.p_ms == 5 && b.p_seq == 0);
	assert_int_equal(clpos_cmp(&b, &a), -1);
	assert_int_equal(clpos_cmp(&a, &b), 1);
	assert_int_equal(clpos_cmp(&a, &a), 0);
	assert_int_equal(clpos_parse("1-2", 3, &a), 0);
	assert_int_equal(clpos_parse("1-3", 3, &b), 0);
	assert_int_equal(clpos_cmp(&a, &b), -1);
	/* Refused: empty, signs, a dangling '-', junk, 2^64. */
	assert_int_equal(clpos_parse("", 0, &a), -1);
	assert_int_equal(clpos_parse("-1", 2, &a), -1);
	assert_int_equal(clpos_parse("1-", 2, &a), -1);
	assert_int_equal(clpos_parse("1-2-3", 5, &a), -1);
	assert_int_equal(clpos_parse("1x", 2, &a), -1);
	assert_int_equal(clpos_parse("18446744073709551616", 20, &a), -1);
	assert_int_equal(clpos_parse("18446744073709551615", 20, &a), 0);
}

/* Parse s as a request; 0 or -1, the reason in err. */
static int
req(const char *s, struct cl_request *r, char *err, size_t len)
{
	return (clmsg_parse_request(s, strlen(s), r, err, len));
}

static void
test_request(void **state)
{
	struct cl_request	 r;
	char			 err[256];

	(void)state;
	assert_int_equal(req("{\"rid\":7,\"op\":\"put\",\"key\":" KEY
	    ",\"expect\":null}", &r, err, sizeof(err)), 0);
	assert_int_equal(r.r_op, CL_OP_PUT);
	assert_true(r.r_rid == 7);
	assert_null(r.r_expect);
	assert_string_equal(r.r_id, "key_A2cfVuCbRqBkGBAE");
	/* The record as the cluster stores it: compact, sorted. */
	assert_string_equal(r.r_record, KEY);
	assert_string_equal(r.r_key.k_scopes, "a b");
	clmsg_request_free(&r);

	assert_int_equal(req("{\"rid\":8,\"op\":\"del\",\"id\":"
	    "\"key_A2cfVuCbRqBkGBAE\",\"expect\":\"x\"}", &r, err,
	    sizeof(err)), 0);
	assert_int_equal(r.r_op, CL_OP_DEL);
	assert_string_equal(r.r_expect, "x");
	clmsg_request_free(&r);

	assert_int_equal(req("{\"rid\":9,\"op\":\"status\"}", &r, err,
	    sizeof(err)), 0);
	assert_int_equal(r.r_op, CL_OP_STATUS);

	/* What the master refuses, and says why; rid kept to answer. */
	assert_int_equal(req("{\"rid\":3,\"op\":\"put\",\"key\":" KEY
	    ",\"expect\":null,\"extra\":1}", &r, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "unknown member"));
	assert_true(r.r_rid == 0 || r.r_rid == 3);
	assert_int_equal(req("{\"rid\":3,\"op\":\"del\",\"id\":"
	    "\"key_A2cfVuCbRqBkGBAE\",\"expect\":null}", &r, err,
	    sizeof(err)), -1);
	assert_true(r.r_rid == 3);
	assert_int_equal(req("{\"rid\":3,\"op\":\"del\",\"id\":\"key_x\","
	    "\"expect\":\"x\"}", &r, err, sizeof(err)), -1);
	assert_int_equal(req("{\"rid\":3,\"op\":\"put\",\"key\":{\"id\":1},"
	    "\"expect\":null}", &r, err, sizeof(err)), -1);
	assert_int_equal(req("{\"rid\":3,\"op\":\"put\",\"key\":" KEY "}", &r,
	    err, sizeof(err)), -1);
	assert_non_null(strstr(err, "expect"));
	assert_int_equal(req("{\"rid\":3,\"op\":\"drop\"}", &r, err,
	    sizeof(err)), -1);
	assert_int_equal(req("{\"rid\":-1,\"op\":\"status\"}", &r, err,
	    sizeof(err)), -1);
	assert_int_equal(req("[]", &r, err, sizeof(err)), -1);
	assert_true(err[0] != '\0');
	assert_int_equal(req("{\"rid\":3,\"op\":\"put\",\"key\":" KEY
	    ",\"expect\":null,\"idem\":{\"h\":\"zz\"}}", &r, err, sizeof(err)),
	    -1);
	/* A record too long to be one. */
	{
		char	*big = malloc(CL_EXPECT_MAX + 200);

		assert_non_null(big);
		snprintf(big, CL_EXPECT_MAX + 200, "{\"rid\":1,\"op\":\"del\","
		    "\"id\":\"key_A2cfVuCbRqBkGBAE\",\"expect\":\"%0*d\"}",
		    CL_EXPECT_MAX + 1, 0);
		assert_int_equal(req(big, &r, err, sizeof(err)), -1);
		free(big);
	}
}

static void
test_change(void **state)
{
	struct cl_change	 c;
	const char		*f[8];
	size_t			 flen[8];
	char			 err[256];
	int			 i;

	(void)state;
	f[0] = "node";
	f[1] = "abc";
	f[2] = "op";
	f[3] = "put";
	f[4] = "key";
	f[5] = KEY;
	f[6] = "id";
	f[7] = "key_A2cfVuCbRqBkGBAE";
	for (i = 0; i < 8; i++)
		flen[i] = strlen(f[i]);
	assert_int_equal(clmsg_parse_change(f, flen, 8, &c, err,
	    sizeof(err)), 0);
	assert_int_equal(c.ch_kind, CL_CH_PUT);
	assert_string_equal(c.ch_key.k_owner, "acme");
	clmsg_change_free(&c);
	/* The id must be the key's. */
	f[7] = "key_B2cfVuCbRqBkGBAE";
	assert_int_equal(clmsg_parse_change(f, flen, 8, &c, err,
	    sizeof(err)), -1);
	/* A del, a seed; an odd count, an unknown op. */
	f[3] = "del";
	flen[3] = 3;
	f[7] = "key_B2cfVuCbRqBkGBAE";
	assert_int_equal(clmsg_parse_change(f, flen, 8, &c, err,
	    sizeof(err)), 0);
	assert_int_equal(c.ch_kind, CL_CH_DEL);
	assert_string_equal(c.ch_id, "key_B2cfVuCbRqBkGBAE");
	assert_int_equal(clmsg_parse_change(f, flen, 7, &c, err,
	    sizeof(err)), -1);
	f[3] = "seed";
	flen[3] = 4;
	assert_int_equal(clmsg_parse_change(f, flen, 8, &c, err,
	    sizeof(err)), -1);
	f[4] = "epoch";
	flen[4] = 5;
	f[5] = "e1";
	flen[5] = 2;
	assert_int_equal(clmsg_parse_change(f, flen, 8, &c, err,
	    sizeof(err)), 0);
	assert_int_equal(c.ch_kind, CL_CH_SEED);
	assert_string_equal(c.ch_epoch, "e1");
	f[3] = "zap";
	flen[3] = 3;
	assert_int_equal(clmsg_parse_change(f, flen, 8, &c, err,
	    sizeof(err)), -1);
}

static void
test_state(void **state)
{
	struct cl_state	 s, t;
	char		 err[256], *text;
	const char	*good = "{\"keygate_cluster\":1,\"name\":\"prod\","
	    "\"epoch\":\"ab\",\"pos\":\"5-6\",\"node\":\"0123456789abcdef\"}";

	(void)state;
	assert_int_equal(clmsg_parse_state(good, strlen(good), &s, err,
	    sizeof(err)), 0);
	assert_string_equal(s.s_name, "prod");
	assert_true(s.s_pos.p_ms == 5 && s.s_pos.p_seq == 6);
	assert_non_null(text = clmsg_format_state(&s));
	assert_int_equal(clmsg_parse_state(text, strlen(text), &t, err,
	    sizeof(err)), 0);
	assert_string_equal(t.s_node, s.s_node);
	free(text);
	assert_int_equal(clmsg_parse_state("{}", 2, &s, err, sizeof(err)),
	    -1);
	assert_int_equal(clmsg_parse_state("{\"keygate_cluster\":2}", 20, &s,
	    err, sizeof(err)), -1);
	assert_int_equal(clmsg_parse_state("nope", 4, &s, err, sizeof(err)),
	    -1);
}

/* A master that answers the first request twice: first with a stale rid. */
static void *
fake_master(void *arg)
{
	int		 fd = *(int *)arg;
	char		 buf[CL_MSG_MAX];
	ssize_t		 n;
	json_t		*o;
	json_int_t	 rid;
	char		 out[128];

	if ((n = recv(fd, buf, sizeof(buf), 0)) <= 0)
		return (NULL);
	o = json_loadb(buf, (size_t)n, 0, NULL);
	rid = json_integer_value(json_object_get(o, "rid"));
	json_decref(o);
	snprintf(out, sizeof(out), "{\"rid\":%lld,\"ok\":true,\"stale\":1}",
	    (long long)rid - 1);
	(void)send(fd, out, strlen(out), 0);
	snprintf(out, sizeof(out), "{\"rid\":%lld,\"ok\":true}",
	    (long long)rid);
	(void)send(fd, out, strlen(out), 0);
	/* Then it goes away. */
	if (recv(fd, buf, sizeof(buf), 0) > 0)
		close(fd);
	return (NULL);
}

static void
test_client(void **state)
{
	struct cluster_client	*cc;
	pthread_t		 t;
	json_t			*req, *ans;
	char			 err[256];
	int			 sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	assert_non_null(cc = cluster_client_new(&sv[1], 1));
	assert_int_equal(pthread_create(&t, NULL, fake_master, &sv[0]), 0);
	req = json_pack("{s:s}", "op", "status");
	ans = cluster_call(cc, req, err, sizeof(err));
	assert_non_null(ans);
	/* The stale answer was dropped. */
	assert_null(json_object_get(ans, "stale"));
	json_decref(ans);
	ans = cluster_call(cc, req, err, sizeof(err));
	assert_null(ans);
	assert_non_null(strstr(err, "master"));
	json_decref(req);
	pthread_join(t, NULL);
	cluster_client_free(cc);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pos),
		cmocka_unit_test(test_request),
		cmocka_unit_test(test_change),
		cmocka_unit_test(test_state),
		cmocka_unit_test(test_client),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
