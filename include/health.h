/*
 * Active health checks of upstream servers (an upstream's health=): one
 * checker, in the master, for the whole node.  Every health_interval it
 * asks each server of each such upstream "GET health HTTP/1.1" on a new
 * connection (TLS for https://), Connection: close; a 2xx or 3xx status
 * within health_interval passes, anything else fails.  health_fails
 * failures in a row take the server out, health_passes passes in a row
 * bring it back; until its first result a server is in.
 *
 * The verdicts go to the workers through the shared segment (shm.h,
 * sh_health): a word per checked server, the check's id and its state.
 * The master gives each checked server of a configuration a slot and an id
 * (us_health_slot, us_health_id) before it forks the configuration's
 * workers, which read only their own servers' words.  A reload keeps the
 * check, and so the verdict, of every server whose upstream name, address
 * and health path are unchanged.
 */
#ifndef KEYGATE_HEALTH_H
#define KEYGATE_HEALTH_H

#include <stdint.h>

struct config;
struct event_base;
struct shm_header;
struct upstream_server;

struct health;

/* The checker on the master's event loop; NULL when out of memory. */
struct health	*health_new(struct event_base *, struct shm_header *);

/*
 * Check conf's servers from now on, besides those checked already (the
 * running configuration's, while a reload is pending): a slot and an id
 * for each checked server of conf (the same as a check of the same
 * upstream name, address and path has), the first check of a new one at
 * once.  -1 when out of memory (conf then checks nothing).
 */
int		 health_configure(struct health *, struct config *);

/*
 * conf is the configuration (a reload committed, or rolled back): stop
 * the checks of every server it does not have.  conf must have been
 * given to health_configure().
 */
void		 health_retain(struct health *, struct config *);

/*
 * Is us out after failing its checks?  For a worker, with the segment's
 * words; an unchecked server, or a word another check holds now, is in.
 */
int		 health_down(const uint64_t *, const struct upstream_server *);

/* In a worker just forked: close the checks' sockets, touching nothing. */
void		 health_child_detach(struct health *);

void		 health_free(struct health *);

#endif /* KEYGATE_HEALTH_H */
