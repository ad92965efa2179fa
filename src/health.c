/*
 * Active health checks of upstream servers, in the master; see health.h.
 *
 * A check (struct hcheck) is one server of one upstream asked one path:
 * its identity is the upstream's name, the server's address and the path,
 * so that a reload giving the same three keeps the check, its slot, its id
 * and its verdict.  It points at the newest configuration's upstream and
 * server (for the Host, TLS and the timing), and is repointed when a
 * configuration is added or retained; an attempt under way then starts
 * over, since its SSL may point at the configuration being freed.
 *
 * Each check has one timer, armed every health_interval: when it fires, an
 * attempt still under way has failed ("timed out") and a new one starts.
 * The workers are never asked anything: they read the verdicts from the
 * shared segment, so one check per server serves the whole node.
 */

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "config.h"
#include "health.h"
#include "http.h"
#include "io.h"
#include "log.h"
#include "proxy.h"
#include "shm.h"
#include "stats.h"
#include "tls.h"
#include "util.h"

/* While a reload is pending, both configurations' checks hold words. */
_Static_assert(2 * CONFIG_MAX_HEALTH_CHECKS <= SHM_HEALTH_SLOTS,
    "more checked servers allowed than the segment has words for");

#define HEALTH_MAX_HEAD	16384	/* a status line and headers, at most */

struct hcheck {
	LIST_ENTRY(hcheck)	 hc_entry;
	struct health		*hc_h;
	/* What makes it the same check across configurations. */
	char			*hc_name;
	char			*hc_path;
	struct sockaddr_storage	 hc_ss;
	socklen_t		 hc_sslen;
	/* The newest configuration's: timing, Host, TLS, labels. */
	struct upstream		*hc_u;
	struct upstream_server	*hc_us;
	uint32_t		 hc_slot;
	uint32_t		 hc_id;
	int			 hc_keep;	/* health_retain(): seen */
	uint32_t		 hc_gen;	/* h_gen when last pointed */
	int			 hc_down;
	int			 hc_fails;	/* in a row, while in */
	int			 hc_passes;	/* in a row, while out */
	struct event		*hc_timer;
	int			 hc_busy;	/* an attempt is under way */
	int			 hc_connecting;
	struct io		 hc_io;
	struct http_msg		 hc_msg;
};

struct health {
	struct event_base	*h_base;
	struct shm_header	*h_shm;
	LIST_HEAD(, hcheck)	 h_checks;
	uint32_t		 h_next_id;
	uint32_t		 h_gen;		/* configure()s and retain()s */
	uint8_t			 h_used[SHM_HEALTH_SLOTS];
};

static void	 hc_on_read(void *);
static void	 hc_on_write(void *, int);
static void	 hc_tick(evutil_socket_t, short, void *);
static void	 hc_result(struct hcheck *, int, const char *, ...)
		    __attribute__((__format__ (printf, 3, 4)));

static const struct io_ops hc_io_ops = { hc_on_read, hc_on_write };
static const struct http_limits hc_limits = { 8192, HEALTH_MAX_HEAD };

struct health *
health_new(struct event_base *base, struct shm_header *shm)
{
	struct health	*h;

	if ((h = calloc(1, sizeof(*h))) == NULL)
		return (NULL);
	h->h_base = base;
	h->h_shm = shm;
	LIST_INIT(&h->h_checks);
	return (h);
}

/* keygate_upstream_server_healthy of server id: STATS_HEALTH_*. */
static void
health_stats(struct health *h, uint32_t id, uint8_t v)
{
	struct stats_region	*sr = shm_stats(h->h_shm);

	if (id != STATS_UPSTREAM_OTHER && id < STATS_UPSTREAMS)
		__atomic_store_n(&sr->sr_master.sm_health[id], v,
		    __ATOMIC_RELAXED);
}

/*
 * The same for hc's server.  While a reload is pending, a check the new
 * configuration dropped may share its labels with one it added (health=
 * changed): only the newest configuration's checks speak for them.
 */
static void
hc_stats(const struct hcheck *hc, uint8_t v)
{
	if (hc->hc_gen == hc->hc_h->h_gen)
		health_stats(hc->hc_h, hc->hc_us->us_stat_id, v);
}

/* The verdict, for the workers and for the metrics. */
static void
hc_publish(const struct hcheck *hc)
{
	__atomic_store_n(&hc->hc_h->h_shm->sh_health[hc->hc_slot],
	    (uint64_t)hc->hc_id << 32 | (uint64_t)hc->hc_down,
	    __ATOMIC_RELAXED);
	hc_stats(hc, hc->hc_down ? STATS_HEALTH_DOWN : STATS_HEALTH_UP);
}

/* End the attempt under way, if any, with nothing concluded. */
static void
hc_cancel(struct hcheck *hc)
{
	if (!hc->hc_busy)
		return;
	io_free(&hc->hc_io);
	hc->hc_busy = 0;
}

/*
 * An attempt's outcome: the verdict moves after health_fails failures or
 * health_passes passes in a row.
 */
static void
hc_result(struct hcheck *hc, int ok, const char *fmt, ...)
{
	const struct upstream	*u = hc->hc_u;
	const char		*server = hc->hc_us->us_server;
	char			 why[256] = "";
	va_list			 ap;

	hc_cancel(hc);
	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(why, sizeof(why), fmt, ap);
		va_end(ap);
	}
	if (ok) {
		hc->hc_fails = 0;
		if (!hc->hc_down || ++hc->hc_passes < u->u_health_passes)
			return;
		hc->hc_down = 0;
		hc->hc_passes = 0;
		log_info("upstream %s: %s: health check passed; back in",
		    u->u_name, server);
		hc_publish(hc);
		return;
	}
	hc->hc_passes = 0;
	if (hc->hc_down) {
		log_debug("upstream %s: %s: health check failed (%s); still "
		    "out", u->u_name, server, why);
		return;
	}
	if (++hc->hc_fails < u->u_health_fails) {
		log_info("upstream %s: %s: health check failed (%s); %d of "
		    "%d", u->u_name, server, why, hc->hc_fails,
		    u->u_health_fails);
		return;
	}
	hc->hc_down = 1;
	hc->hc_fails = 0;
	log_warnx("upstream %s: %s: health check failed (%s); out", u->u_name,
	    server, why);
	hc_publish(hc);
}

/* A broken connection: TLS says why, or errno does. */
static void
hc_broken(struct hcheck *hc, int e)
{
	if (hc->hc_io.io_flags & IO_FAILED)
		hc_result(hc, 0, "TLS: %s", hc->hc_io.io_why);
	else
		hc_result(hc, 0, "%s", e != 0 ? strerror(e) :
		    "connection failed");
}

/* Start an attempt: a new connection and the request, sent once it is up. */
static void
hc_start(struct hcheck *hc)
{
	struct upstream		*u = hc->hc_u;
	struct upstream_server	*us = hc->hc_us;
	SSL			*ssl = NULL;
	int			 fd;

	if ((fd = proxy_socket(us)) == -1) {
		if (proxy_local_errno(errno))
			log_warnx("upstream %s: %s: health check not made: %s",
			    u->u_name, us->us_server, strerror(errno));
		else
			hc_result(hc, 0, "connect: %s", strerror(errno));
		return;
	}
	if ((u->u_tls && ((ssl = tls_upstream_ssl(u, us)) == NULL ||
	    SSL_set_fd(ssl, fd) != 1)) ||
	    io_init(&hc->hc_io, hc->hc_h->h_base, fd, ssl, &hc_io_ops, hc,
	    NULL) == -1) {
		SSL_free(ssl);
		close(fd);
		log_warnx("upstream %s: %s: health check not made: out of "
		    "memory", u->u_name, us->us_server);
		return;
	}
	hc->hc_busy = 1;
	hc->hc_connecting = 1;
	http_msg_init(&hc->hc_msg);
	evbuffer_add_printf(hc->hc_io.io_out, "GET %s HTTP/1.1\r\nHost: %s\r\n"
	    "User-Agent: keygate-health-check\r\nConnection: close\r\n\r\n",
	    u->u_health, u->u_host_header != NULL ? u->u_host_header :
	    us->us_host);
	io_want_write(&hc->hc_io);
}

/* Every health_interval: the last attempt's time is up; the next one. */
static void
hc_tick(evutil_socket_t fd, short what, void *arg)
{
	struct hcheck	*hc = arg;
	struct timeval	 tv;

	(void)fd;
	(void)what;
	if (hc->hc_busy)
		hc_result(hc, 0, hc->hc_connecting ? "connect timed out" :
		    "timed out");
	hc_start(hc);
	util_ms_timeval(hc->hc_u->u_health_interval, &tv);
	evtimer_add(hc->hc_timer, &tv);
}

/* The response's head, as far as it came: a verdict once the status is. */
static void
hc_parse(struct hcheck *hc)
{
	struct evbuffer	*in = hc->hc_io.io_in;
	size_t		 len;
	int		 rc, st;

	for (;;) {
		len = evbuffer_get_length(in);
		if (len > HEALTH_MAX_HEAD)
			len = HEALTH_MAX_HEAD;
		rc = http_parse_response(&hc->hc_msg, (const char *)
		    evbuffer_pullup(in, (ssize_t)len), len, &hc_limits,
		    HTTP_M_GET);
		if (rc == 0)
			return;
		if (rc < 0) {
			hc_result(hc, 0, "malformed response: %s",
			    hc->hc_msg.hm_cause);
			return;
		}
		if ((st = hc->hc_msg.hm_status) >= 200)
			break;
		evbuffer_drain(in, hc->hc_msg.hm_hdrlen);	/* interim */
		http_msg_init(&hc->hc_msg);
	}
	if (st < 400)
		hc_result(hc, 1, NULL);
	else
		hc_result(hc, 0, "status %d", st);
}

static void
hc_on_read(void *arg)
{
	struct hcheck	*hc = arg;
	ssize_t		 n;

	n = io_read(&hc->hc_io);
	if (n > 0 && (hc->hc_io.io_flags & IO_WR_WANT_RD) &&
	    io_flush(&hc->hc_io) == -1)
		hc_broken(hc, errno);
	else if (n > 0)
		hc_parse(hc);
	else if (n == 0)
		hc_result(hc, 0, "closed before the status");
	else if (errno != EAGAIN)
		hc_broken(hc, errno);
	else if (io_flush(&hc->hc_io) == -1)	/* a TLS write waited */
		hc_broken(hc, errno);
}

static void
hc_on_write(void *arg, int timedout)
{
	struct hcheck	*hc = arg;
	socklen_t	 len = sizeof(int);
	int		 err = 0;

	(void)timedout;		/* no write timeout: the interval's */
	if (hc->hc_connecting) {
		if (getsockopt(hc->hc_io.io_fd, SOL_SOCKET, SO_ERROR, &err,
		    &len) == -1)
			err = errno;
		if (err != 0) {
			hc_result(hc, 0, "connect: %s", strerror(err));
			return;
		}
		hc->hc_connecting = 0;
		io_reading(&hc->hc_io, 1);
	}
	if (io_flush(&hc->hc_io) == -1)
		hc_broken(hc, errno);
}

/* Point hc at this configuration's upstream and server. */
static void
hc_point(struct hcheck *hc, struct upstream *u, struct upstream_server *us)
{
	struct timeval	 now = { 0, 0 };

	us->us_health_slot = hc->hc_slot;
	us->us_health_id = hc->hc_id;
	hc->hc_gen = hc->hc_h->h_gen;
	if (hc->hc_u == u && hc->hc_us == us)
		return;
	hc->hc_u = u;
	hc->hc_us = us;
	if (hc->hc_busy) {	/* its SSL may point at the old one */
		hc_cancel(hc);
		evtimer_add(hc->hc_timer, &now);
	}
	hc_publish(hc);		/* the metrics under this one's id */
}

static struct hcheck *
hc_find(struct health *h, const struct upstream *u,
    const struct upstream_server *us)
{
	struct hcheck	*hc;

	LIST_FOREACH(hc, &h->h_checks, hc_entry) {
		if (us->us_health_id != 0) {
			if (hc->hc_id == us->us_health_id)
				return (hc);
			continue;
		}
		if (strcmp(hc->hc_name, u->u_name) == 0 &&
		    strcmp(hc->hc_path, u->u_health) == 0 &&
		    hc->hc_sslen == us->us_sslen &&
		    memcmp(&hc->hc_ss, &us->us_ss, us->us_sslen) == 0)
			return (hc);
	}
	return (NULL);
}

static void
hc_free(struct hcheck *hc)
{
	hc_cancel(hc);
	if (hc->hc_timer != NULL)
		event_free(hc->hc_timer);
	free(hc->hc_name);
	free(hc->hc_path);
	free(hc);
}

/* A new check of us, in a free slot, first made at once. */
static struct hcheck *
hc_new(struct health *h, struct upstream *u, struct upstream_server *us)
{
	struct hcheck	*hc;
	struct timeval	 now = { 0, 0 };
	uint32_t	 slot;

	for (slot = 0; slot < SHM_HEALTH_SLOTS && h->h_used[slot]; slot++)
		;
	if (slot == SHM_HEALTH_SLOTS)	/* the configuration bounds them */
		return (NULL);
	if ((hc = calloc(1, sizeof(*hc))) == NULL)
		return (NULL);
	hc->hc_h = h;
	if ((hc->hc_name = strdup(u->u_name)) == NULL ||
	    (hc->hc_path = strdup(u->u_health)) == NULL ||
	    (hc->hc_timer = evtimer_new(h->h_base, hc_tick, hc)) == NULL) {
		hc_free(hc);
		return (NULL);
	}
	memcpy(&hc->hc_ss, &us->us_ss, us->us_sslen);
	hc->hc_sslen = us->us_sslen;
	hc->hc_slot = slot;
	if (++h->h_next_id == 0)
		h->h_next_id = 1;
	hc->hc_id = h->h_next_id;
	h->h_used[slot] = 1;
	LIST_INSERT_HEAD(&h->h_checks, hc, hc_entry);
	hc_point(hc, u, us);
	evtimer_add(hc->hc_timer, &now);
	return (hc);
}

/*
 * Every checked server of conf gets its check (kept by health_retain()),
 * pointed at conf; with add, a new one if it has none.  -1 when out of
 * memory.
 */
static int
hc_walk(struct health *h, struct config *conf, int add)
{
	struct upstream		*u;
	struct upstream_server	*us;
	struct hcheck		*hc;
	size_t			 i;
	int			 k;

	h->h_gen++;
	for (i = 0; i < conf->c_nupstreams; i++) {
		u = &conf->c_upstreams[i];
		if (u->u_type != UPSTREAM_HTTP || u->u_health == NULL)
			continue;
		for (k = 0; k < u->u_nservers; k++) {
			us = &u->u_servers[k];
			if ((hc = hc_find(h, u, us)) == NULL && add &&
			    (hc = hc_new(h, u, us)) == NULL)
				return (-1);
			if (hc == NULL)
				continue;
			hc->hc_keep = 1;
			hc_point(hc, u, us);
		}
	}
	return (0);
}

int
health_configure(struct health *h, struct config *conf)
{
	return (hc_walk(h, conf, 1));
}

void
health_retain(struct health *h, struct config *conf)
{
	struct hcheck		*hc, *next;

	LIST_FOREACH(hc, &h->h_checks, hc_entry)
		hc->hc_keep = 0;
	(void)hc_walk(h, conf, 0);
	/* The dropped ones' servers are no longer checked... */
	for (hc = LIST_FIRST(&h->h_checks); hc != NULL; hc = next) {
		next = LIST_NEXT(hc, hc_entry);
		if (hc->hc_keep)
			continue;
		health_stats(h, hc->hc_us->us_stat_id, STATS_HEALTH_NONE);
		h->h_used[hc->hc_slot] = 0;
		LIST_REMOVE(hc, hc_entry);
		hc_free(hc);
	}
	/* ...unless a kept one has the same metrics labels. */
	LIST_FOREACH(hc, &h->h_checks, hc_entry)
		hc_publish(hc);
}

int
health_down(const uint64_t *words, const struct upstream_server *us)
{
	uint64_t	 w;

	if (us->us_health_id == 0)
		return (0);
	w = __atomic_load_n(&words[us->us_health_slot], __ATOMIC_RELAXED);
	return ((uint32_t)(w >> 32) == us->us_health_id && (w & 1));
}

void
health_child_detach(struct health *h)
{
	struct hcheck	*hc;

	if (h == NULL)
		return;
	LIST_FOREACH(hc, &h->h_checks, hc_entry)
		if (hc->hc_busy)
			close(hc->hc_io.io_fd);
}

void
health_free(struct health *h)
{
	struct hcheck	*hc;

	if (h == NULL)
		return;
	while ((hc = LIST_FIRST(&h->h_checks)) != NULL) {
		LIST_REMOVE(hc, hc_entry);
		hc_free(hc);
	}
	free(h);
}
