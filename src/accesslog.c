/* Access log: JSON lines; see accesslog.h. */

#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "accesslog.h"
#include "log.h"
#include "util.h"

#define ACCESSLOG_LINE	4096
#define ACCESSLOG_PATH	1536	/* longest path logged, bytes before escaping */

struct accesslog {
	int	 al_fd;
	char	*al_path;
};

/* Open the access log for appending. */
struct accesslog *
accesslog_open(const char *path, char *err, size_t errlen)
{
	struct accesslog	*al;

	if ((al = calloc(1, sizeof(*al))) == NULL ||
	    (al->al_path = strdup(path)) == NULL) {
		snprintf(err, errlen, "out of memory");
		free(al);
		return (NULL);
	}
	al->al_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW |
	    O_NONBLOCK | O_CLOEXEC, 0640);
	if (al->al_fd == -1) {
		snprintf(err, errlen, "cannot open access log %s: %s", path,
		    strerror(errno));
		free(al->al_path);
		free(al);
		return (NULL);
	}
	return (al);
}

/* Open the same path again, keeping the old file if that fails. */
int
accesslog_reopen(struct accesslog *al)
{
	int	 fd;

	fd = open(al->al_path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW |
	    O_NONBLOCK | O_CLOEXEC, 0640);
	if (fd == -1) {
		log_warn("cannot reopen access log %s", al->al_path);
		return (-1);
	}
	close(al->al_fd);
	al->al_fd = fd;
	return (0);
}

/* Append escaped JSON string contents to buf at *off. */
static void
accesslog_str(char *buf, size_t len, size_t *off, const char *s, size_t n)
{
	size_t	 need;

	need = util_json_escape(buf + *off, len - *off, s, n);
	if (need <= len - *off)
		*off += need;
}

/* Format one entry; 0 if it did not fit. */
size_t
accesslog_format(char *buf, size_t len, const struct accesslog_entry *e)
{
	char	 ts[40], rts[48];
	size_t	 off;
	int	 n, key = e->ae_key != NULL && e->ae_key[0] != '\0';

	util_rfc3339_ms(ts, sizeof(ts), e->ae_time_ms);
	n = snprintf(buf, len, "{\"time\":\"%s\",\"pid\":%ld,\"client\":\"%s\","
	    "\"method\":\"", ts, (long)getpid(), e->ae_client);
	if (n < 0 || (size_t)n >= len)
		return (0);
	off = (size_t)n;
	accesslog_str(buf, len, &off, e->ae_method, e->ae_methodlen);
	if (off + 10 >= len)
		return (0);
	memcpy(buf + off, "\",\"path\":\"", 10);
	off += 10;
	accesslog_str(buf, len, &off, e->ae_path, e->ae_pathlen >
	    ACCESSLOG_PATH ? ACCESSLOG_PATH : e->ae_pathlen);
	/* Names are [A-Za-z0-9_.-] (config.c): no escaping needed. */
	if (e->ae_route > 0)
		n = snprintf(buf + off, len - off, "\",\"route\":%d,"
		    "\"route_name\":\"%s\"", e->ae_route, e->ae_route_name != NULL ?
		    e->ae_route_name : "");
	else
		n = snprintf(buf + off, len - off, "\",\"route\":null,"
		    "\"route_name\":\"none\"");
	if (n < 0 || (size_t)n >= len - off)
		return (0);
	off += (size_t)n;
	rts[0] = '\0';
	if (e->ae_rate_ms != 0) {
		memcpy(rts, ",\"rate_time\":\"", 14);
		util_rfc3339_ms(rts + 14, sizeof(rts) - 16, e->ae_rate_ms);
		memcpy(rts + strlen(rts), "\"", 2);
	}
	n = snprintf(buf + off, len - off, ",\"status\":%d,\"bytes\":%" PRIu64
	    ",\"duration_us\":%" PRId64 ",\"request_id\":\"%.*s\","
	    "\"key_id\":%s%s%s",
	    e->ae_status, e->ae_bytes, e->ae_duration_us,
	    (int)e->ae_reqidlen, e->ae_reqid, key ? "\"" : "",
	    key ? e->ae_key : "null", key ? "\"" : "");
	if (n < 0 || (size_t)n >= len - off)
		return (0);
	off += (size_t)n;
	if (e->ae_scheme != NULL) {
		n = snprintf(buf + off, len - off, ",\"scheme\":\"%s\"",
		    e->ae_scheme);
		if (n < 0 || (size_t)n >= len - off)
			return (0);
		off += (size_t)n;
	}
	if (e->ae_identity != NULL && e->ae_identity[0] != '\0') {
		if (off + 13 >= len)
			return (0);
		memcpy(buf + off, ",\"identity\":\"", 13);
		off += 13;
		accesslog_str(buf, len, &off, e->ae_identity,
		    strlen(e->ae_identity));
		if (off + 1 >= len)
			return (0);
		buf[off++] = '"';
	}
	if (e->ae_tls != NULL) {
		n = snprintf(buf + off, len - off, ",\"tls\":\"%s\","
		    "\"tls_resumed\":%s", e->ae_tls, e->ae_tls_resumed ?
		    "true" : "false");
		if (n < 0 || (size_t)n >= len - off)
			return (0);
		off += (size_t)n;
	}
	n = snprintf(buf + off, len - off, "%s}\n", rts);
	if (n < 0 || (size_t)n >= len - off)
		return (0);
	return (off + (size_t)n);
}

/* Write one entry as one line. */
void
accesslog_write(struct accesslog *al, const struct accesslog_entry *e)
{
	char	 line[ACCESSLOG_LINE];
	size_t	 n;

	if (al == NULL || (n = accesslog_format(line, sizeof(line), e)) == 0)
		return;
	if (write(al->al_fd, line, n) == -1 && errno != EAGAIN)
		log_warn("access log write");
}

void
accesslog_close(struct accesslog *al)
{
	if (al == NULL)
		return;
	close(al->al_fd);
	free(al->al_path);
	free(al);
}
