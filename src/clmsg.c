/*
 * The cluster's messages (cluster.h): stream positions, a worker's
 * request to its master, a change read from the stream, cluster.state,
 * and the worker's end of the channels.  Everything here parses bytes the
 * reader does not trust (a worker's, Redis's, a file's) and has a fuzz
 * target (tests/fuzz/fuzz_cluster.c).
 */

#include <sys/socket.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cluster.h"
#include "journal.h"
#include "secret.h"
#include "util.h"

/* Digits into *v (no sign, no overflow); the bytes used, or 0. */
static size_t
clpos_digits(const char *s, size_t len, uint64_t *v)
{
	size_t	 i;

	*v = 0;
	for (i = 0; i < len && s[i] >= '0' && s[i] <= '9' && i < 20; i++) {
		if (*v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return (0);
		*v = *v * 10 + (uint64_t)(s[i] - '0');
	}
	return (i);
}

int
clpos_parse(const char *s, size_t len, struct cl_pos *p)
{
	size_t	 n;

	memset(p, 0, sizeof(*p));
	if ((n = clpos_digits(s, len, &p->p_ms)) == 0)
		return (-1);
	if (n == len)
		return (0);
	if (s[n] != '-' || n + 1 == len)
		return (-1);
	s += n + 1;
	len -= n + 1;
	return (clpos_digits(s, len, &p->p_seq) == len ? 0 : -1);
}

void
clpos_format(const struct cl_pos *p, char *buf, size_t len)
{
	snprintf(buf, len, "%" PRIu64 "-%" PRIu64, p->p_ms, p->p_seq);
}

int
clpos_cmp(const struct cl_pos *a, const struct cl_pos *b)
{
	if (a->p_ms != b->p_ms)
		return (a->p_ms < b->p_ms ? -1 : 1);
	if (a->p_seq != b->p_seq)
		return (a->p_seq < b->p_seq ? -1 : 1);
	return (0);
}

char *
clmsg_record(const struct ks_key *k, char *err, size_t errlen)
{
	json_t	*o;
	char	*s;

	if ((o = journal_key_json(k, "key", err, errlen)) == NULL)
		return (NULL);
	s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	if (s == NULL)
		snprintf(err, errlen, "out of memory");
	return (s);
}

/* Only the members in names; 0 or -1 naming another. */
static int
clmsg_known(json_t *o, const char *const *names, char *err, size_t errlen)
{
	const char	*name;

	if ((name = journal_unknown_member(o, names)) == NULL)
		return (0);
	snprintf(err, errlen, "unknown member \"%.32s\"", name);
	return (-1);
}

/* 64 hex digits into d[32]; 0 or -1. */
static int
clmsg_hex32(const char *s, size_t len, uint8_t *d)
{
	int	 hi, lo;
	size_t	 i;

	if (len != 64)
		return (-1);
	for (i = 0; i < 32; i++) {
		if ((hi = util_hexval(s[2 * i])) == -1 ||
		    (lo = util_hexval(s[2 * i + 1])) == -1)
			return (-1);
		d[i] = (uint8_t)(hi << 4 | lo);
	}
	return (0);
}

/*
 * The "idem" member of a put (idem.h's {"h","b","c","at"}): an object of
 * those members, "h" 64 hex digits into hash, the whole at most
 * CL_IDEM_MAX bytes compact.  Its meaning is checked where it is applied
 * (idem_replay), as for a journal line.  The compact JSON, or NULL.
 */
static char *
clmsg_idem(json_t *v, uint8_t *hash, char *err, size_t errlen)
{
	static const char *const names[] = { "h", "b", "c", "at", NULL };
	json_t	*h;
	char	*s;

	if (!json_is_object(v) || clmsg_known(v, names, err, errlen) == -1 ||
	    (h = json_object_get(v, "h")) == NULL || !json_is_string(h) ||
	    clmsg_hex32(json_string_value(h), json_string_length(h),
	    hash) == -1) {
		if (err[0] == '\0')
			snprintf(err, errlen, "\"idem\" is not an "
			    "Idempotency-Key entry");
		return (NULL);
	}
	if ((s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return (NULL);
	}
	if (strlen(s) > CL_IDEM_MAX) {
		free(s);
		snprintf(err, errlen, "\"idem\" is longer than %d bytes",
		    CL_IDEM_MAX);
		return (NULL);
	}
	return (s);
}

void
clmsg_request_free(struct cl_request *r)
{
	free(r->r_record);
	free(r->r_expect);
	free(r->r_idem);
	r->r_record = r->r_expect = r->r_idem = NULL;
}

int
clmsg_parse_request(const char *buf, size_t len, struct cl_request *r,
    char *err, size_t errlen)
{
	static const char *const names[] = {
		"rid", "op", "key", "id", "expect", "idem", "kind", NULL
	};
	json_error_t	 je;
	json_t		*o, *v;
	const char	*op;

	memset(r, 0, sizeof(*r));
	err[0] = '\0';
	if (len > CL_MSG_MAX) {
		snprintf(err, errlen, "request longer than %d bytes",
		    CL_MSG_MAX);
		return (-1);
	}
	if ((o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je)) == NULL) {
		snprintf(err, errlen, "not JSON: %s", je.text);
		return (-1);
	}
	if (!json_is_object(o) || clmsg_known(o, names, err, errlen) == -1)
		goto bad;
	if ((v = json_object_get(o, "rid")) == NULL || !json_is_integer(v) ||
	    json_integer_value(v) < 0) {
		snprintf(err, errlen, "no \"rid\"");
		goto bad;
	}
	r->r_rid = (uint64_t)json_integer_value(v);
	if ((v = json_object_get(o, "op")) == NULL || !json_is_string(v)) {
		snprintf(err, errlen, "no \"op\"");
		goto bad;
	}
	op = json_string_value(v);
	if (strcmp(op, "status") == 0) {
		r->r_op = CL_OP_STATUS;
		json_decref(o);
		return (0);
	}
	if (strcmp(op, "usage") == 0 || strcmp(op, "history") == 0) {
		if ((v = json_object_get(o, "id")) == NULL ||
		    !json_is_string(v) || !secret_valid_id(json_string_value(v),
		    json_string_length(v))) {
			snprintf(err, errlen, "a usage query needs a key id");
			goto bad;
		}
		r->r_op = CL_OP_USAGE;
		if (strcmp(op, "history") == 0) {
			json_t	*kd = json_object_get(o, "kind");

			if (kd == NULL || !json_is_integer(kd) ||
			    json_integer_value(kd) < 0 ||
			    json_integer_value(kd) > 2) {
				snprintf(err, errlen, "a history query needs "
				    "its kind");
				goto bad;
			}
			r->r_op = CL_OP_HISTORY;
			r->r_kind = (int)json_integer_value(kd);
		}
		memcpy(r->r_id, json_string_value(v), KS_ID_LEN);
		json_decref(o);
		return (0);
	}
	if (strcmp(op, "put") == 0)
		r->r_op = CL_OP_PUT;
	else if (strcmp(op, "del") == 0)
		r->r_op = CL_OP_DEL;
	else {
		snprintf(err, errlen, "unknown \"op\"");
		goto bad;
	}
	/* "expect": the record the worker read (compact JSON), or null. */
	if ((v = json_object_get(o, "expect")) == NULL ||
	    (!json_is_null(v) && !json_is_string(v))) {
		snprintf(err, errlen, "no \"expect\"");
		goto bad;
	}
	if (json_is_string(v)) {
		if (json_string_length(v) == 0 ||
		    json_string_length(v) > CL_EXPECT_MAX ||
		    strlen(json_string_value(v)) != json_string_length(v)) {
			snprintf(err, errlen, "\"expect\" is not a record");
			goto bad;
		}
		if ((r->r_expect = strdup(json_string_value(v))) == NULL)
			goto oom;
	}
	if (r->r_op == CL_OP_DEL) {
		if ((v = json_object_get(o, "id")) == NULL ||
		    !json_is_string(v) || !secret_valid_id(json_string_value(v),
		    json_string_length(v)) || r->r_expect == NULL) {
			snprintf(err, errlen, "a del needs a key id and the "
			    "record read");
			goto bad;
		}
		memcpy(r->r_id, json_string_value(v), KS_ID_LEN);
		json_decref(o);
		return (0);
	}
	if ((v = json_object_get(o, "key")) == NULL ||
	    journal_key_parse(v, "key", &r->r_key, err, errlen) == -1) {
		if (err[0] == '\0')
			snprintf(err, errlen, "a put needs \"key\"");
		goto bad;
	}
	memcpy(r->r_id, r->r_key.k_id, sizeof(r->r_id));
	if ((r->r_record = clmsg_record(&r->r_key, err, errlen)) == NULL)
		goto bad;
	if ((v = json_object_get(o, "idem")) != NULL &&
	    (r->r_idem = clmsg_idem(v, r->r_idem_hash, err, errlen)) == NULL)
		goto bad;
	json_decref(o);
	return (0);
oom:
	snprintf(err, errlen, "out of memory");
bad:
	if (err[0] == '\0')
		snprintf(err, errlen, "not a request object");
	json_decref(o);
	clmsg_request_free(r);
	return (-1);	/* r_rid stays, to answer the refusal */
}

void
clmsg_change_free(struct cl_change *c)
{
	json_decref(c->ch_idem);
	c->ch_idem = NULL;
}

/* Is f[0..flen) the NUL-free string name? */
static int
clmsg_is(const char *f, size_t flen, const char *name)
{
	return (flen == strlen(name) && memcmp(f, name, flen) == 0);
}

int
clmsg_parse_change(const char *const *f, const size_t *flen, size_t n,
    struct cl_change *c, char *err, size_t errlen)
{
	const char	*op = NULL, *id = NULL, *key = NULL, *idem = NULL;
	const char	*epoch = NULL;
	size_t		 oplen = 0, idlen = 0, keylen = 0, idemlen = 0;
	size_t		 epochlen = 0, i;
	json_error_t	 je;
	json_t		*o;
	int		 rc;

	memset(c, 0, sizeof(*c));
	err[0] = '\0';
	if (n % 2 != 0 || n > 16) {
		snprintf(err, errlen, "%zu fields", n);
		return (-1);
	}
	/* Unknown fields are ignored: a later version may add some. */
	for (i = 0; i < n; i += 2) {
		if (clmsg_is(f[i], flen[i], "op")) {
			op = f[i + 1];
			oplen = flen[i + 1];
		} else if (clmsg_is(f[i], flen[i], "id")) {
			id = f[i + 1];
			idlen = flen[i + 1];
		} else if (clmsg_is(f[i], flen[i], "key")) {
			key = f[i + 1];
			keylen = flen[i + 1];
		} else if (clmsg_is(f[i], flen[i], "idem")) {
			idem = f[i + 1];
			idemlen = flen[i + 1];
		} else if (clmsg_is(f[i], flen[i], "epoch")) {
			epoch = f[i + 1];
			epochlen = flen[i + 1];
		}
	}
	if (op != NULL && clmsg_is(op, oplen, "seed")) {
		if (epoch == NULL || epochlen == 0 ||
		    epochlen >= sizeof(c->ch_epoch) ||
		    memchr(epoch, '\0', epochlen) != NULL) {
			snprintf(err, errlen, "a seed without its epoch");
			return (-1);
		}
		c->ch_kind = CL_CH_SEED;
		memcpy(c->ch_epoch, epoch, epochlen);
		return (0);
	}
	if (op != NULL && clmsg_is(op, oplen, "del")) {
		if (id == NULL || !secret_valid_id(id, idlen)) {
			snprintf(err, errlen, "a del without a key id");
			return (-1);
		}
		c->ch_kind = CL_CH_DEL;
		memcpy(c->ch_id, id, KS_ID_LEN);
		return (0);
	}
	if (op == NULL || !clmsg_is(op, oplen, "put") || key == NULL ||
	    keylen > CL_EXPECT_MAX) {
		snprintf(err, errlen, "neither a put, a del nor a seed");
		return (-1);
	}
	if ((o = json_loadb(key, keylen, JSON_REJECT_DUPLICATES, &je)) ==
	    NULL) {
		snprintf(err, errlen, "the key is not JSON: %s", je.text);
		return (-1);
	}
	rc = journal_key_parse(o, "key", &c->ch_key, err, errlen);
	json_decref(o);
	if (rc == -1)
		return (-1);
	if (id != NULL && (idlen != strlen(c->ch_key.k_id) ||
	    memcmp(id, c->ch_key.k_id, idlen) != 0)) {
		snprintf(err, errlen, "the id is not the key's");
		return (-1);
	}
	memcpy(c->ch_id, c->ch_key.k_id, sizeof(c->ch_id));
	c->ch_kind = CL_CH_PUT;
	if (idem != NULL && idemlen <= CL_IDEM_MAX &&
	    (c->ch_idem = json_loadb(idem, idemlen, JSON_REJECT_DUPLICATES,
	    &je)) != NULL && !json_is_object(c->ch_idem)) {
		json_decref(c->ch_idem);
		c->ch_idem = NULL;
	}
	return (0);
}

/* A string member of at most max bytes, of [A-Za-z0-9_.-], into dst. */
static int
clmsg_word(json_t *o, const char *name, char *dst, size_t max, int empty)
{
	json_t		*v = json_object_get(o, name);
	const char	*s;
	size_t		 len, i;

	if (v == NULL || !json_is_string(v))
		return (-1);
	s = json_string_value(v);
	len = json_string_length(v);
	if (len > max || (len == 0 && !empty))
		return (-1);
	for (i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		    (s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= 'A' && s[i] <= 'Z') || strchr("_.-", s[i]) != NULL))
			return (-1);
	memcpy(dst, s, len);
	dst[len] = '\0';
	return (0);
}

int
clmsg_parse_state(const char *buf, size_t len, struct cl_state *s,
    char *err, size_t errlen)
{
	static const char *const names[] = {
		"keygate_cluster", "name", "epoch", "pos", "node", NULL
	};
	json_error_t	 je;
	json_t		*o, *v;

	memset(s, 0, sizeof(*s));
	err[0] = '\0';
	if (len > 4096) {
		snprintf(err, errlen, "longer than 4096 bytes");
		return (-1);
	}
	if ((o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je)) == NULL) {
		snprintf(err, errlen, "line %d: %s", je.line, je.text);
		return (-1);
	}
	if (!json_is_object(o) || clmsg_known(o, names, err, errlen) == -1)
		goto bad;
	if ((v = json_object_get(o, "keygate_cluster")) == NULL ||
	    !json_is_integer(v) || json_integer_value(v) != 1) {
		snprintf(err, errlen, "not a version 1 cluster state");
		goto bad;
	}
	if (clmsg_word(o, "name", s->s_name, 64, 0) == -1 ||
	    clmsg_word(o, "epoch", s->s_epoch, 32, 1) == -1 ||
	    clmsg_word(o, "node", s->s_node, CL_NODE_LEN, 0) == -1 ||
	    strlen(s->s_node) != CL_NODE_LEN) {
		snprintf(err, errlen, "a bad \"name\", \"epoch\" or \"node\"");
		goto bad;
	}
	if ((v = json_object_get(o, "pos")) == NULL || !json_is_string(v) ||
	    clpos_parse(json_string_value(v), json_string_length(v),
	    &s->s_pos) == -1) {
		snprintf(err, errlen, "\"pos\" is not a stream position");
		goto bad;
	}
	json_decref(o);
	return (0);
bad:
	if (err[0] == '\0')
		snprintf(err, errlen, "not a cluster state");
	json_decref(o);
	return (-1);
}

char *
clmsg_format_state(const struct cl_state *s)
{
	char	 pos[48], *out;
	json_t	*o;

	clpos_format(&s->s_pos, pos, sizeof(pos));
	if ((o = json_pack("{s:i,s:s,s:s,s:s,s:s}", "keygate_cluster", 1,
	    "name", s->s_name, "epoch", s->s_epoch, "pos", pos,
	    "node", s->s_node)) == NULL)
		return (NULL);
	out = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	return (out);
}

/* --- the worker's end of the channels ---------------------------------- */

struct cluster_client {
	pthread_mutex_t	 cc_mtx;
	pthread_cond_t	 cc_cv;
	int		 cc_fd[CL_CHANS];
	int		 cc_busy[CL_CHANS];
	int		 cc_n;
	uint64_t	 cc_rid;
};

struct cluster_client *
cluster_client_new(const int *fds, int n)
{
	struct cluster_client	*cc;
	int			 i;

	if (n < 1 || n > CL_CHANS || (cc = calloc(1, sizeof(*cc))) == NULL)
		return (NULL);
	pthread_mutex_init(&cc->cc_mtx, NULL);
	pthread_cond_init(&cc->cc_cv, NULL);
	for (i = 0; i < n; i++)
		cc->cc_fd[i] = fds[i];
	cc->cc_n = n;
	return (cc);
}

void
cluster_client_free(struct cluster_client *cc)
{
	int	 i;

	if (cc == NULL)
		return;
	for (i = 0; i < cc->cc_n; i++)
		close(cc->cc_fd[i]);
	pthread_cond_destroy(&cc->cc_cv);
	pthread_mutex_destroy(&cc->cc_mtx);
	free(cc);
}

/* A free channel's index and a new request id; waits for one. */
static int
cluster_client_take(struct cluster_client *cc, uint64_t *rid)
{
	int	 i;

	pthread_mutex_lock(&cc->cc_mtx);
	for (;;) {
		for (i = 0; i < cc->cc_n; i++)
			if (!cc->cc_busy[i])
				break;
		if (i < cc->cc_n)
			break;
		pthread_cond_wait(&cc->cc_cv, &cc->cc_mtx);
	}
	cc->cc_busy[i] = 1;
	*rid = ++cc->cc_rid;
	pthread_mutex_unlock(&cc->cc_mtx);
	return (i);
}

static void
cluster_client_give(struct cluster_client *cc, int i)
{
	pthread_mutex_lock(&cc->cc_mtx);
	cc->cc_busy[i] = 0;
	pthread_cond_signal(&cc->cc_cv);
	pthread_mutex_unlock(&cc->cc_mtx);
}

json_t *
cluster_call(struct cluster_client *cc, json_t *req, char *err,
    size_t errlen)
{
	struct pollfd	 pfd;
	json_error_t	 je;
	json_t		*o = NULL, *v;
	char		*buf = NULL, *msg;
	int64_t		 deadline = util_mono_ms() + CL_CALL_MS, left;
	uint64_t	 rid;
	ssize_t		 n;
	int		 i;

	i = cluster_client_take(cc, &rid);
	if (json_object_set_new(req, "rid", json_integer((json_int_t)rid)) ==
	    -1 || (msg = json_dumps(req, JSON_COMPACT)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	n = send(cc->cc_fd[i], msg, strlen(msg), MSG_NOSIGNAL);
	free(msg);
	if (n == -1) {
		snprintf(err, errlen, "the master is gone (%s)",
		    strerror(errno));
		goto done;
	}
	if ((buf = malloc(CL_REPLY_MAX)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	for (;;) {
		if ((left = deadline - util_mono_ms()) <= 0) {
			snprintf(err, errlen, "the master did not answer "
			    "within %d ms", CL_CALL_MS);
			goto done;
		}
		pfd.fd = cc->cc_fd[i];
		pfd.events = POLLIN;
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		if ((n = recv(cc->cc_fd[i], buf, CL_REPLY_MAX, 0)) <= 0) {
			if (n == -1 && errno == EINTR)
				continue;
			snprintf(err, errlen, "the master is gone");
			goto done;
		}
		if ((o = json_loadb(buf, (size_t)n, 0, &je)) == NULL ||
		    !json_is_object(o)) {
			json_decref(o);
			o = NULL;
			snprintf(err, errlen, "a bad answer from the master");
			goto done;
		}
		/* An answer to an earlier call that timed out: dropped. */
		if ((v = json_object_get(o, "rid")) != NULL &&
		    json_is_integer(v) &&
		    (uint64_t)json_integer_value(v) == rid)
			break;
		json_decref(o);
		o = NULL;
	}
done:
	free(buf);
	cluster_client_give(cc, i);
	return (o);
}
