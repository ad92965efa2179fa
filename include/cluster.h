/*
 * The cluster: several keygate nodes share one key store through Redis
 * (doc/architecture.md, "Cluster", has the whole design).
 *
 * Redis is the source of truth.  An admin write on a worker is checked as
 * on one node, then sent to its master over a channel (a SOCK_SEQPACKET
 * socketpair per admin thread, made before the fork); the master commits
 * it to Redis in one script (the record, the digest index and an entry on
 * the cluster's change stream, atomically, only if the record is still the
 * one the worker read), waits until its own stream reader has applied that
 * entry to the shared-memory store and the journal, and only then answers
 * the worker, which answers the client.  Every node's master reads the
 * stream (XREAD BLOCK) and applies it; state_dir keeps the store as a
 * cache, with the stream position it holds in cluster.state.
 *
 * Workers never talk to Redis and never see its password.  The master
 * trusts nothing a worker sends: every request is bounded and its record
 * checked field by field (clmsg_parse_request).
 */
#ifndef KEYGATE_CLUSTER_H
#define KEYGATE_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "keystore.h"

#define CL_MSG_MAX		16384	/* a request from a worker */
#define CL_REPLY_MAX		65536	/* an answer to one */
#define CL_CHANS		8	/* channels per worker (ADMINQ_THREADS) */
#define CL_CALL_MS		10000	/* a worker waits this long at most */
#define CL_EXPECT_MAX		4096	/* bytes of a record's compact JSON */
#define CL_IDEM_MAX		1024	/* bytes of an "idem" member's JSON */
#define CL_NODE_LEN		16	/* hex digits of a node id */
#define CL_STATE_FILE		"cluster.state"

/* A stream entry id, "MS-SEQ". */
struct cl_pos {
	uint64_t	 p_ms;
	uint64_t	 p_seq;
};

/* "MS-SEQ" (or "MS") into p; 0 or -1. */
int	 clpos_parse(const char *, size_t, struct cl_pos *);
/* p as "MS-SEQ" into buf (at least 42 bytes). */
void	 clpos_format(const struct cl_pos *, char *, size_t);
int	 clpos_cmp(const struct cl_pos *, const struct cl_pos *);

/* A worker's request to its master. */
enum cl_op { CL_OP_PUT = 1, CL_OP_DEL, CL_OP_STATUS, CL_OP_USAGE,
	CL_OP_HISTORY };

struct cl_request {
	uint64_t	 r_rid;		/* echoed in the answer */
	enum cl_op	 r_op;
	struct ks_key	 r_key;		/* PUT: the new record */
	char		 r_id[KS_ID_LEN + 4];	/* PUT, DEL, USAGE, HISTORY */
	int		 r_kind;	/* HISTORY: USAGE_H1, _H24, _D30 */
	char		*r_record;	/* PUT: its compact JSON (malloc'd) */
	char		*r_expect;	/* the record read, or NULL: none */
	char		*r_idem;	/* PUT: the "idem" JSON, or NULL */
	uint8_t		 r_idem_hash[32];	/* of the Idempotency-Key */
};

/*
 * A worker's request buf[0..len) into r, every field checked (the record
 * as a journal line's, the bounds above); 0, or -1 with the reason in err.
 * clmsg_request_free frees what parsing allocated (r itself is the
 * caller's).
 */
int	 clmsg_parse_request(const char *, size_t, struct cl_request *, char *,
	    size_t);
void	 clmsg_request_free(struct cl_request *);

/* The compact JSON of key k (the cluster's identity of a record), or NULL. */
char	*clmsg_record(const struct ks_key *, char *, size_t);

/*
 * A change read from the stream: an entry's field/value pairs (as Redis
 * returns them, any order) into c; 0, or -1 with the reason.  A put's
 * record is checked as a journal line's.  clmsg_change_free frees it.
 */
enum cl_kind { CL_CH_PUT = 1, CL_CH_DEL, CL_CH_SEED };
struct cl_change {
	enum cl_kind	 ch_kind;
	struct ks_key	 ch_key;	/* PUT */
	char		 ch_id[KS_ID_LEN + 4];	/* PUT, DEL */
	json_t		*ch_idem;	/* PUT: the "idem" object, or NULL */
	char		 ch_epoch[40];	/* SEED */
};
int	 clmsg_parse_change(const char *const *, const size_t *, size_t,
	    struct cl_change *, char *, size_t);
void	 clmsg_change_free(struct cl_change *);

/* cluster.state: the namespace's epoch, the position applied, the node. */
struct cl_state {
	char		 s_epoch[40];	/* "": never joined */
	struct cl_pos	 s_pos;
	char		 s_node[CL_NODE_LEN + 1];
	char		 s_name[68];	/* cluster_name it was for */
};
int	 clmsg_parse_state(const char *, size_t, struct cl_state *, char *,
	    size_t);
/* s as the file's text (malloc'd, NUL-terminated), or NULL. */
char	*clmsg_format_state(const struct cl_state *);

/* --- worker side ------------------------------------------------------- */

struct cluster_client;

/* The worker ends fds[0..n) (taken over), or NULL. */
struct cluster_client *cluster_client_new(const int *, int);
void	 cluster_client_free(struct cluster_client *);

/*
 * Send req (a JSON object; "rid" is added) to the master and wait up to
 * CL_CALL_MS for its answer, which is returned (the caller decrefs), or
 * NULL with the reason in err (the master is gone, or slow).  Thread-safe:
 * each call takes a free channel.
 */
json_t	*cluster_call(struct cluster_client *, json_t *, char *, size_t);

/* --- master side ------------------------------------------------------- */

struct cluster;
struct config;
struct event_base;
struct journal;
struct idem_entry;
struct stats_master;
struct ls_table;

/*
 * The master's cluster for conf (c_cluster set): reads cluster.state and
 * starts connecting (nothing blocks); rate limits are leased into lt
 * (lease.h; NULL: none).  NULL with the reason in err.
 */
struct cluster *cluster_new(struct event_base *, const struct config *,
	    struct keystore *, struct journal *, struct idem_entry *,
	    struct stats_master *, struct ls_table *, pid_t, char *, size_t);
/*
 * ms the command connection has had commands out and no answer (0: none
 * out, or not connected): Redis is slow (cllimit.c).
 */
int64_t	 cluster_cmd_silent_ms(const struct cluster *, int64_t);
/* The demand pipe's write end, for the workers (-1: none). */
int	 cluster_demand_fd(const struct cluster *);
void	 cluster_free(struct cluster *);

/* Does conf name the same Redis and cluster as c runs with? */
int	 cluster_same(const struct cluster *, const struct config *);

/*
 * Before forking the worker of shm slot: make its CL_CHANS channels; the
 * worker ends into fds.  0 or -1.  cluster_chan_close when it is reaped.
 * cluster_child_detach, in the forked worker: close every descriptor of
 * the master's but its own channel ends (no libevent call).
 */
int	 cluster_chan_open(struct cluster *, int, int *);
void	 cluster_chan_close(struct cluster *, int);
void	 cluster_child_detach(struct cluster *, int);

#endif /* KEYGATE_CLUSTER_H */
