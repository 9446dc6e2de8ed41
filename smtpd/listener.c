/*
 * listener.c: the "[smtp]" process.  Unprivileged and chrooted to an
 * empty directory, it accepts connections, does TLS with libtls in
 * non-blocking mode, moves bytes between sockets and sessions, and routes
 * the auth and queue processes' answers to their sessions.  The SMTP
 * dialogue itself is in session.c.  One process serves every session
 * through libevent; a session costs memory only while it exists.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/tree.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <event.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <tls.h>
#include <unistd.h>

#include "log.h"
#include "proxy.h"
#include "smsubmit.h"

#define READ_CHUNK	16384
#define INPUT_MAX	(64 * 1024)
#define OUTPUT_MAX	(256 * 1024)
#define STOP_GRACE	10		/* seconds for sessions in flight */
#define ACCEPT_BATCH	64		/* connections taken per wake-up */
#define ACCEPT_PAUSE	1		/* seconds without accept on EMFILE */
#define ACCEPT_LOG_EVERY 60		/* seconds between such warnings */
#define REFUSED_LOG_MAX	10		/* refusals logged in one second */
#define WORKER_QUEUE_MAX 128		/* requests and ends a worker owes */

/*
 * A session that ended an exchange with a worker (AUTH_END) until the
 * worker confirms (AUTH_ENDED): whatever that worker still says about it
 * is late and dropped, and the session's next exchange goes elsewhere.
 */
struct stale {
	SPLAY_ENTRY(stale)	 entry;
	uint32_t		 id;
	int			 ends;		/* AUTH_END not confirmed */
	int			 owed;		/* answers that may yet come */
};

static int	stale_cmp(struct stale *, struct stale *);
SPLAY_HEAD(staletree, stale);
SPLAY_PROTOTYPE(staletree, stale, entry, stale_cmp);

/* One [auth] process; a blocked one keeps its sessions, not the others. */
struct auth_worker {
	struct ipc		*ipc;
	char			 name[16];
	int			 ready;		/* it sent its mechanisms */
	int			 busy;		/* requests not answered */
	struct staletree	 stale;
	int			 nstale;
};

/*
 * Sessions open from one client address, or from one network (the
 * address's /24, or /64 for IPv6, keyed "net:PREFIX/LEN"), and the end
 * of an address's ban.
 */
struct addrcount {
	SPLAY_ENTRY(addrcount)	 entry;
	char			 addr[NI_MAXHOST + 8];
	int			 n;		/* sessions */
	time_t			 banned_until;
};

static int	session_cmp(struct session *, struct session *);
static int	addrcount_cmp(struct addrcount *, struct addrcount *);
SPLAY_HEAD(sessiontree, session);
SPLAY_PROTOTYPE(sessiontree, session, entry, session_cmp);
SPLAY_HEAD(addrtree, addrcount);
SPLAY_PROTOTYPE(addrtree, addrcount, entry, addrcount_cmp);

static struct listener_env	 env;
static struct sessiontree	 sessions = SPLAY_INITIALIZER(&sessions);
static struct addrtree		 addrs = SPLAY_INITIALIZER(&addrs);
static struct event		*stop_timer;
static struct auth_worker	 workers[AUTH_WORKERS_MAX];
static int			 nworkers;
static int			 next_worker;	/* where the search starts */

/* Accepting paused when out of descriptors (EMFILE, ENFILE). */
static struct {
	struct event	*timer;		/* resumes after ACCEPT_PAUSE */
	int		 paused;
	int		 warned;	/* said so, not yet that it is over; a
					   warning a minute, however it flaps */
	time_t		 logged;	/* last warning */
	unsigned long	 failures;	/* since then */
} acc;

/* Refused connections, logged up to REFUSED_LOG_MAX a second. */
static struct {
	time_t		 second;
	int		 logged;
	unsigned long	 unlogged;
} refused;

static void	io_cb(int, short, void *);
static void	session_free(struct session *);
static void	accept_resume(void);
static int	proxy_input(struct session *);
static int	proxy_trusted(const struct listen_conf *,
		    const struct sockaddr_storage *);
static int	session_begin(struct session *, const char *);

static int
session_cmp(struct session *a, struct session *b)
{
	return a->id < b->id ? -1 : a->id > b->id;
}

static int
addrcount_cmp(struct addrcount *a, struct addrcount *b)
{
	return strcmp(a->addr, b->addr);
}

static int
stale_cmp(struct stale *a, struct stale *b)
{
	return a->id < b->id ? -1 : a->id > b->id;
}

SPLAY_GENERATE(sessiontree, session, entry, session_cmp);
SPLAY_GENERATE(addrtree, addrcount, entry, addrcount_cmp);
SPLAY_GENERATE(staletree, stale, entry, stale_cmp);

static struct session *
session_find(uint32_t id)
{
	struct session	 key;

	key.id = id;
	return SPLAY_FIND(sessiontree, &sessions, &key);
}

/* Count a client address in or out; returns the count after. */
static int
addr_count(const char *addr, int delta)
{
	struct addrcount	 key, *a;

	strlcpy(key.addr, addr, sizeof(key.addr));
	if ((a = SPLAY_FIND(addrtree, &addrs, &key)) == NULL) {
		if (delta < 0 || (a = calloc(1, sizeof(*a))) == NULL)
			return -1;
		strlcpy(a->addr, addr, sizeof(a->addr));
		SPLAY_INSERT(addrtree, &addrs, a);
	}
	a->n += delta;
	if (a->n > 0 || a->banned_until > time(NULL))
		return a->n;
	SPLAY_REMOVE(addrtree, &addrs, a);
	free(a);
	return 0;
}

static void
addr_ban(const char *addr, time_t secs)
{
	struct addrcount	 key, *a;

	strlcpy(key.addr, addr, sizeof(key.addr));
	if ((a = SPLAY_FIND(addrtree, &addrs, &key)) == NULL) {
		if ((a = calloc(1, sizeof(*a))) == NULL)
			return;
		strlcpy(a->addr, addr, sizeof(a->addr));
		SPLAY_INSERT(addrtree, &addrs, a);
	}
	a->banned_until = time(NULL) + secs;
}

/* --- socket I/O --- */

/* Returns -1 on error, 0 if blocked, 1 once the output is all written. */
static int
io_write(struct session *s)
{
	ssize_t	 n;

	while (buf_used(&s->out) > 0) {
		if (s->tls != NULL) {
			n = tls_write(s->tls, buf_head(&s->out),
			    buf_used(&s->out));
			if (n == TLS_WANT_POLLIN || n == TLS_WANT_POLLOUT) {
				s->wwant = n == TLS_WANT_POLLIN ?
				    EV_READ : EV_WRITE;
				return 0;
			}
			if (n == -1) {
				log_debug("session %08x write: %s", s->id,
				    tls_error(s->tls));
				return -1;
			}
		} else if ((n = write(s->fd, buf_head(&s->out),
		    buf_used(&s->out))) == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				s->wwant = EV_WRITE;
				return 0;
			}
			log_debug("session %08x write: %s", s->id,
			    strerror(errno));
			return -1;
		}
		buf_drain(&s->out, n);
	}
	return 1;
}

/* Returns -1 on EOF or error, 0 if blocked or full, else bytes read. */
static ssize_t
io_read(struct session *s)
{
	ssize_t	 n;
	char	*p;

	if ((p = buf_reserve(&s->in, READ_CHUNK)) == NULL)
		return 0;
	if (s->tls != NULL) {
		n = tls_read(s->tls, p, READ_CHUNK);
		if (n == TLS_WANT_POLLIN || n == TLS_WANT_POLLOUT) {
			s->rwant = n == TLS_WANT_POLLIN ? EV_READ : EV_WRITE;
			return 0;
		}
		if (n == -1) {
			log_info("session %08x read error: %s", s->id,
			    tls_error(s->tls));
			return -1;
		}
	} else if ((n = read(s->fd, p, READ_CHUNK)) == -1) {
		if (errno == EINTR || errno == EAGAIN) {
			s->rwant = EV_READ;
			return 0;
		}
		log_info("session %08x read error: %s", s->id,
		    strerror(errno));
		return -1;
	}
	if (n == 0)
		return -1;
	buf_commit(&s->in, n);
	return n;
}

static int
wants_input(struct session *s)
{
	return s->state != S_QUIT && s->pending == PENDING_NONE &&
	    !(s->flags & SF_STARTTLS) &&
	    buf_used(&s->in) + READ_CHUNK <= INPUT_MAX;
}

/* Re-arm the session's event for what it waits for now. */
static void
io_arm(struct session *s)
{
	struct timeval	 tv;
	time_t		 now;
	short		 ev = 0;

	if (s->flags & SF_SHAKING) {
		/* the thread has the connection: nothing until it is done */
		event_del(s->ev);
		return;
	}
	/*
	 * An idle session keeps no buffers: the input one was reserved
	 * (READ_CHUNK) by a read that may have found nothing, the output
	 * one is written out.  The next read or reply allocates again.
	 */
	buf_release(&s->in);
	buf_release(&s->out);
	if (buf_used(&s->out) > 0)
		ev |= s->wwant ? s->wwant : EV_WRITE;
	if (s->flags & SF_PROXYHDR)
		ev |= EV_READ;
	else if (s->state == S_HANDSHAKE ||
	    ((s->flags & SF_STARTTLS) && s->tls != NULL))
		ev |= s->rwant ? s->rwant : EV_READ;
	else if (wants_input(s))
		ev |= s->rwant ? s->rwant : EV_READ;
	event_del(s->ev);
	if (ev == 0)
		return;
	event_assign(s->ev, env.base, s->fd, ev, io_cb, s);
	/*
	 * The deadline is not moved by partial input: a client that
	 * trickles bytes gets no more time than one that sends nothing.
	 */
	now = time(NULL);
	tv.tv_sec = s->deadline > now ? s->deadline - now : 0;
	tv.tv_usec = 0;
	event_add(s->ev, &tv);
}

/*
 * A server context and the sessions accepted under it.  A handshake
 * calls back into the server context it began under (libtls's servername
 * callback reads its list of certificates), so a reload must not free
 * the old context while a session accepted under it may still be in its
 * handshake: the context goes with the last such session.
 */
struct server_tls {
	struct tls	*ctx;
	int		 refs;	/* its sessions, and 1 while it is current */
};

static struct server_tls	*server;

static void
server_unref(struct server_tls *st)
{
	if (--st->refs > 0)
		return;
	tls_free(st->ctx);
	free(st);
}

/* TLS for s, under the current server context; -1 (logged) if not. */
static int
tls_start(struct session *s)
{
	if (tls_accept_socket(server->ctx, &s->tls, s->fd) == -1) {
		log_warnx("session %08x tls_accept_socket: %s", s->id,
		    tls_error(server->ctx));
		return -1;
	}
	s->server = server;
	server->refs++;
	return 0;
}

/* What tls_handshake() said, in the loop: 1 done, 0 more, -1 failed. */
static int
handshake_result(struct session *s, int r)
{
	const char	*why;

	if ((why = signer_failed()) != NULL)
		fatalx("%s", why);
	if (r == TLS_WANT_POLLIN || r == TLS_WANT_POLLOUT) {
		s->rwant = r == TLS_WANT_POLLIN ? EV_READ : EV_WRITE;
		return 0;
	}
	if (r == -1) {
		log_info("session %08x TLS handshake failed: %s", s->id,
		    tls_error(s->tls));
		env.stats.tls_failed++;
		return -1;
	}
	env.stats.tls[stats_tls_version(tls_conn_version(s->tls))]++;
	s->flags |= SF_TLS;
	s->rwant = s->wwant = 0;
	log_info("session %08x TLS established: %s %s", s->id,
	    tls_conn_version(s->tls), tls_conn_cipher(s->tls));
	session_start(s);
	return 1;
}

/*
 * The next step of the handshake, in a handshaker thread (handshaker.c)
 * if there is one and the handshake has not had its signature yet: then
 * 0, and the session waits, with no event, for handshake_done().
 */
static int
handshake(struct session *s)
{
	if (!(s->flags & SF_SIGNED) && handshaker_run(s->tls, s) == 0) {
		s->flags |= SF_SHAKING;
		return 0;
	}
	return handshake_result(s, tls_handshake(s->tls));
}

/* A handshaker thread's tls_handshake() of s said r. */
static void
handshake_done(void *arg, int r, int signed_)
{
	struct session	*s = arg;

	s->flags &= ~SF_SHAKING;
	if (signed_)
		s->flags |= SF_SIGNED;	/* the rest here: handshake() */
	switch (handshake_result(s, r)) {
	case -1:
		session_free(s);
		break;
	case 0:
		io_arm(s);
		break;
	default:
		/* on with the greeting, or what came after STARTTLS */
		io_cb(s->fd, 0, s);
		break;
	}
}

static void
io_cb(int fd, short ev, void *arg)
{
	struct session	*s = arg;
	ssize_t		 n;
	int		 r;

	if (s->flags & SF_SHAKING)
		return;		/* a handshaker has it: handshake_done() */
	if (ev & EV_TIMEOUT) {
		if (s->flags & SF_PROXYHDR) {
			log_info("connection from proxy %s on %s: no PROXY "
			    "header in time", s->client, s->lc->name);
			session_free(s);
			return;
		}
		if (s->state == S_HANDSHAKE || s->flags & SF_STARTTLS ||
		    s->state == S_QUIT) {
			/* nothing to say, or the client does not read it */
			log_info("session %08x timeout%s", s->id,
			    s->state == S_QUIT ? " writing" :
			    " in TLS handshake");
			session_free(s);
			return;
		}
		session_reply(s, "421 4.4.2 %s Timeout, closing",
		    s->conf->hostname);
		session_close(s, "timeout");
	}
	s->rwant = s->wwant = 0;
	for (;;) {
		if (s->flags & SF_PROXYHDR) {
			if ((r = proxy_input(s)) == -1) {
				session_free(s);
				return;
			}
			if (r == 0)
				break;
			continue;
		}
		if (s->state == S_HANDSHAKE ||
		    ((s->flags & SF_STARTTLS) && s->tls != NULL)) {
			if ((r = handshake(s)) == -1) {
				session_free(s);
				return;
			}
			if (r == 0)
				break;
		}
		if (buf_used(&s->out) > 0 && (r = io_write(s)) != 1) {
			if (r == -1) {
				session_free(s);
				return;
			}
			break;
		}
		if (s->state == S_QUIT) {
			session_free(s);
			return;
		}
		if ((s->flags & SF_STARTTLS) && s->tls == NULL) {
			/* the 220 is out; anything buffered was dropped */
			if (tls_start(s) == -1) {
				session_free(s);
				return;
			}
			continue;
		}
		if (!wants_input(s))
			break;
		if ((n = io_read(s)) == -1) {
			log_info("session %08x disconnected by client",
			    s->id);
			session_free(s);
			return;
		}
		if (n == 0)
			break;
		/*
		 * A message is framed and written as it comes: with what
		 * the client has sent by now, up to the buffer's room, so
		 * that the message file gets fewer and larger writes.  An
		 * error or EOF is seen by the next read, after the input.
		 */
		while (s->state == S_DATA && wants_input(s) && io_read(s) > 0)
			;
		session_input(s);
	}
	io_arm(s);
}

/* After an IPC answer changed a session: write, read, re-arm. */
static void
pump(struct session *s)
{
	io_cb(s->fd, 0, s);
}

void
listener_starttls(struct session *s)
{
	/* CVE-2011-0411: plaintext pipelined behind STARTTLS is dropped */
	buf_drain(&s->in, buf_used(&s->in));
	s->flags |= SF_STARTTLS;
}

/* --- the auth workers --- */

static struct stale *
stale_find(struct auth_worker *w, uint32_t id)
{
	struct stale	 key;

	key.id = id;
	return SPLAY_FIND(staletree, &w->stale, &key);
}

static void
auth_timeout_cb(int fd, short ev, void *arg)
{
	struct session	*s = arg;

	log_warnx("session %08x no answer from %s in %llds", s->id,
	    s->authw->name, (long long)s->conf->auth_timeout);
	listener_auth_end(s);
	session_auth_timeout(s);
	pump(s);
}

static void
auth_wait(struct session *s, time_t secs)
{
	struct timeval	 tv = { secs, 0 };

	evtimer_add(s->auth_timer, &tv);
}

/*
 * The worker with the fewest requests waiting, starting the search after
 * the last one chosen; never one that may still answer an earlier
 * exchange of this session.
 */
int
listener_auth_start(struct session *s, const char *mech, const char *ir,
    int has_ir)
{
	struct auth_worker	*w, *best = NULL;
	int			 i;

	if (s->authw != NULL)
		fatalx("session %08x starts a second exchange", s->id);
	if (nworkers == 0)
		return -1;
	for (i = 0; i < nworkers; i++) {
		w = &workers[(next_worker + i) % nworkers];
		/* a stopped worker is not fed for ever */
		if (stale_find(w, s->id) != NULL ||
		    w->busy + w->nstale >= WORKER_QUEUE_MAX)
			continue;
		if (best == NULL || w->busy < best->busy)
			best = w;
	}
	next_worker = (next_worker + 1) % nworkers;
	if (best == NULL) {
		log_warnx("session %08x no auth worker free for it", s->id);
		return -1;
	}
	if (s->auth_timer == NULL &&
	    (s->auth_timer = evtimer_new(env.base, auth_timeout_cb, s)) ==
	    NULL)
		return -1;
	ipc_send(best->ipc, IMSG_AUTH_START, s->id, -1, "ssuss", mech, ir,
	    (uint32_t)has_ir, s->client, s->local);
	s->authw = best;
	s->auth_held = 0;
	best->busy++;
	auth_wait(s, s->conf->auth_timeout);
	return 0;
}

void
listener_auth_step(struct session *s, const char *resp)
{
	if (s->authw == NULL)
		fatalx("session %08x steps no exchange", s->id);
	ipc_send(s->authw->ipc, IMSG_AUTH_STEP, s->id, -1, "s", resp);
	s->authw->busy++;
	auth_wait(s, s->conf->auth_timeout);
}

void
listener_auth_end(struct session *s)
{
	struct auth_worker	*w = s->authw;
	struct stale		*x;

	if (w == NULL)
		return;
	if ((x = stale_find(w, s->id)) == NULL) {
		/* without it a late answer could reach the wrong exchange */
		if ((x = calloc(1, sizeof(*x))) == NULL)
			fatal("calloc");
		x->id = s->id;
		SPLAY_INSERT(staletree, &w->stale, x);
		w->nstale++;
	}
	x->ends++;
	if (s->pending == PENDING_AUTH && !s->auth_held)
		x->owed++;
	ipc_send(w->ipc, IMSG_AUTH_END, s->id, -1, "");
	/* an authenticated session waits for no worker again: no timer */
	event_free(s->auth_timer);
	s->auth_timer = NULL;
	s->authw = NULL;
	s->auth_held = 0;
}

/* An answer about an exchange the session ended: count it, drop it. */
static void
auth_late(struct auth_worker *w, struct stale *x, struct ipc_msg *msg)
{
	if (msg->type == IMSG_AUTH_ENDED) {
		if (ipc_unpack(msg, "") == -1)
			fatalx("bad AUTH_ENDED from %s", w->name);
		if (--x->ends > 0)
			return;
		w->busy -= x->owed;
		SPLAY_REMOVE(staletree, &w->stale, x);
		w->nstale--;
		free(x);
		return;
	}
	log_debug("session %08x late answer %u from %s dropped", x->id,
	    msg->type, w->name);
	if (x->owed > 0) {
		x->owed--;
		w->busy--;
	}
}

/* A configuration no session holds and no longer current goes. */
static void
conf_unref(struct smsubmit_conf *conf)
{
	if (--conf->refs > 0)
		return;
	conf_free(conf);
	free(conf);
}

static void
session_free(struct session *s)
{
	int	 i;

	if (s->flags & SF_SHAKING)
		fatalx("session %08x freed in its handshake", s->id);
	session_cleanup(s);
	if (s->auth_timer != NULL)
		event_free(s->auth_timer);
	free(s->senders);
	free(s->helo);
	free(s->user);
	if (!(s->flags & SF_PROXYHDR))
		log_info("session %08x disconnect", s->id);
	SPLAY_REMOVE(sessiontree, &sessions, s);
	if (s->flags & SF_COUNTED) {
		addr_count(s->client, -1);
		addr_count(s->net, -1);
	}
	free(s->proxybuf);
	event_free(s->ev);
	if (s->tls != NULL) {
		tls_close(s->tls);
		tls_free(s->tls);
	}
	if (s->server != NULL)
		server_unref(s->server);
	close(s->fd);
	buf_free(&s->in);
	buf_free(&s->out);
	conf_unref(s->conf);
	if (--s->lc->refs == 0 && s->lc->fd == -1)
		free(s->lc);	/* a listener removed by a reload */
	free(s);
	env.nsessions--;
	/* a descriptor is free again */
	accept_resume();
	if (env.stopping && env.nsessions == 0) {
		log_info("all sessions done, exiting");
		ipc_flush(env.queue);
		for (i = 0; i < nworkers; i++)
			ipc_flush(workers[i].ipc);
		exit(0);
	}
}

/* --- accepting --- */

/*
 * The network a client address belongs to, for the per-network limit:
 * its /24, or its /64 for IPv6 (an IPv4-mapped address is IPv4).
 */
static void
network_of(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	const struct sockaddr_in	*sin = (const struct sockaddr_in *)ss;
	const struct sockaddr_in6	*sin6 = (const struct sockaddr_in6 *)ss;
	struct in_addr			 a4;
	struct in6_addr			 a6;
	char				 tmp[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET6 &&
	    !IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
		a6 = sin6->sin6_addr;
		memset(&a6.s6_addr[8], 0, 8);
		if (inet_ntop(AF_INET6, &a6, tmp, sizeof(tmp)) != NULL) {
			snprintf(buf, len, "net:%s/64", tmp);
			return;
		}
	} else if (ss->ss_family == AF_INET || ss->ss_family == AF_INET6) {
		if (ss->ss_family == AF_INET)
			a4 = sin->sin_addr;
		else
			memcpy(&a4, &sin6->sin6_addr.s6_addr[12], sizeof(a4));
		a4.s_addr &= htonl(0xffffff00);
		if (inet_ntop(AF_INET, &a4, tmp, sizeof(tmp)) != NULL) {
			snprintf(buf, len, "net:%s/24", tmp);
			return;
		}
	}
	strlcpy(buf, "net:unknown", len);
}

static void
listen_events(int on)
{
	struct listen_conf	*lc;

	TAILQ_FOREACH(lc, &env.listeners, entry)
		if (lc->ev != NULL && (on ? event_add(lc->ev, NULL) :
		    event_del(lc->ev)) == -1)
			fatalx("cannot %s accepting on %s", on ? "resume" :
			    "pause", lc->name);
}

/*
 * Out of descriptors: retrying at once would spin.  Stop listening until
 * a session ends and gives one back, or for ACCEPT_PAUSE, and say so
 * once per ACCEPT_LOG_EVERY however often it happens.
 */
static void
accept_pause(const char *name, int error)
{
	struct timeval	 tv = { ACCEPT_PAUSE, 0 };
	time_t		 now = time(NULL);

	acc.failures++;
	if (acc.logged == 0 || now - acc.logged >= ACCEPT_LOG_EVERY) {
		log_warnx("accept on %s: %s: not accepting for a while "
		    "(%lu times since the last warning)", name,
		    strerror(error), acc.failures);
		acc.logged = now;
		acc.failures = 0;
		acc.warned = 1;
	}
	if (!acc.paused) {
		listen_events(0);
		acc.paused = 1;
	}
	evtimer_add(acc.timer, &tv);
}

static void
accept_resume(void)
{
	if (!acc.paused || env.stopping)
		return;
	acc.paused = 0;
	evtimer_del(acc.timer);
	listen_events(1);
}

static void
accept_timer_cb(int fd, short ev, void *arg)
{
	accept_resume();
}

/*
 * Over a limit: closed at once, before any TLS work, so that it holds no
 * session slot and costs no handshake.  A STARTTLS listener can say why
 * in plaintext; the socket is new and empty, so the line fits.
 */
static void
refuse(int fd, struct listen_conf *lc, const char *client, const char *enh,
    const char *why)
{
	char	 line[SMTP_LINE_MAX];
	time_t	 now = time(NULL);
	int	 n;

	if (lc->flags & LISTEN_STARTTLS) {
		n = snprintf(line, sizeof(line), "421 %s %s %s, try "
		    "later\r\n", enh, env.conf->hostname, why);
		/* best effort: the client may be gone already */
		if (n > 0 && (size_t)n < sizeof(line) &&
		    write(fd, line, n) != n)
			log_debug("421 to %s not written", client);
	}
	close(fd);
	env.stats.refused++;
	if (now != refused.second) {
		if (refused.unlogged > 0)
			log_info("%lu more connections refused",
			    refused.unlogged);
		refused.second = now;
		refused.logged = 0;
		refused.unlogged = 0;
	}
	if (refused.logged++ < REFUSED_LOG_MAX)
		log_info("connection from %s on %s refused: %s", client,
		    lc->name, why);
	else
		refused.unlogged++;
}

/*
 * Why a new connection may not have a session, or NULL; with global, the
 * limit on all sessions too (a session behind a proxy counts already).
 */
static const char *
over_limit(const char *client, const char *net, int global)
{
	struct smsubmit_conf	*conf = env.conf;
	struct addrcount	 key, *a;

	if (global && env.nsessions >= conf->max_sessions)
		return "Too many sessions";
	strlcpy(key.addr, client, sizeof(key.addr));
	if ((a = SPLAY_FIND(addrtree, &addrs, &key)) != NULL) {
		if (a->banned_until > time(NULL)) {
			env.stats.auth_banned++;
			return "Too many authentication failures from your "
			    "address";
		}
		if (a->n >= conf->max_sessions_per_addr)
			return "Too many sessions from your address";
	}
	strlcpy(key.addr, net, sizeof(key.addr));
	if ((a = SPLAY_FIND(addrtree, &addrs, &key)) != NULL &&
	    a->n >= conf->max_sessions_per_net)
		return "Too many sessions from your network";
	return NULL;
}

/*
 * Take one connection: 1 once it is served or refused, 0 if none was
 * waiting, -1 if accepting had to stop.
 */
static int
accept_one(struct listen_conf *lc)
{
	struct sockaddr_storage	 ss, ls;
	socklen_t		 len = sizeof(ss), llen = sizeof(ls);
	struct session		*s;
	char			 port[NI_MAXSERV], client[NI_MAXHOST];
	char			 net[sizeof(s->net)];
	const char		*why;
	int			 cfd;

	if ((cfd = accept4(lc->fd, (struct sockaddr *)&ss, &len,
	    SOCK_NONBLOCK | SOCK_CLOEXEC)) == -1) {
		switch (errno) {
		case EAGAIN:
		case EINTR:
		case ECONNABORTED:
			return 0;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM:
			accept_pause(lc->name, errno);
			return -1;
		default:
			log_warn("accept on %s", lc->name);
			return 0;
		}
	}
	if (acc.warned) {
		log_info("accepting again");
		acc.warned = 0;
	}
	if (getnameinfo((struct sockaddr *)&ss, len, client, sizeof(client),
	    NULL, 0, NI_NUMERICHOST) != 0)
		strlcpy(client, "unknown", sizeof(client));
	network_of(&ss, net, sizeof(net));
	if (env.stopping) {
		close(cfd);
		return 1;
	}
	if (lc->nproxy > 0) {
		/* the client is in the header; only the balancer may talk */
		why = !proxy_trusted(lc, &ss) ? "Not a trusted proxy" :
		    env.nsessions >= env.conf->max_sessions ?
		    "Too many sessions" : NULL;
	} else
		why = over_limit(client, net, 1);
	if (why != NULL) {
		refuse(cfd, lc, client, "4.7.0", why);
		return 1;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		refuse(cfd, lc, client, "4.3.0", "Out of memory");
		return 1;
	}
	s->fd = cfd;
	s->env = &env;
	s->conf = env.conf;
	s->lc = lc;
	s->msgfd = -1;
	do {
		s->id = env.nextid++;
	} while (session_find(s->id) != NULL);
	buf_init(&s->in, INPUT_MAX);
	buf_init(&s->out, OUTPUT_MAX);
	strlcpy(s->client, client, sizeof(s->client));
	strlcpy(s->net, net, sizeof(s->net));
	if (getsockname(cfd, (struct sockaddr *)&ls, &llen) == 0 &&
	    getnameinfo((struct sockaddr *)&ls, llen, s->local,
	    sizeof(s->local) - 8, port, sizeof(port),
	    NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
		strlcat(s->local, ";", sizeof(s->local));
		strlcat(s->local, port, sizeof(s->local));
	}
	if ((s->ev = event_new(env.base, cfd, EV_READ, io_cb, s)) == NULL) {
		free(s);
		refuse(cfd, lc, client, "4.3.0", "Out of memory");
		return 1;
	}
	SPLAY_INSERT(sessiontree, &sessions, s);
	env.nsessions++;
	env.stats.sessions++;
	/* it keeps them, whatever a reload brings */
	s->conf->refs++;
	lc->refs++;
	/* the handshake and the first command, however slow the client */
	s->deadline = time(NULL) + MINIMUM(s->conf->timeout_handshake,
	    s->conf->timeout_command);
	if (lc->nproxy > 0) {
		s->flags |= SF_PROXYHDR;
		log_debug("connection from proxy %s on %s", client, lc->name);
		pump(s);
		return 1;
	}
	if (session_begin(s, NULL) == -1)
		session_free(s);
	else
		pump(s);
	return 1;
}

/*
 * Count a session against its address and network, say it connected,
 * and start TLS or greet; 0, or -1 if it is to be closed (said already).
 */
static int
session_begin(struct session *s, const char *proxy)
{
	const char	*why;

	if (proxy != NULL &&
	    (why = over_limit(s->client, s->net, 0)) != NULL) {
		log_info("session %08x from %s via proxy %s refused: %s",
		    s->id, s->client, proxy, why);
		if (s->lc->flags & LISTEN_STARTTLS) {
			/* best effort, as refuse() */
			buf_printf(&s->out, "421 4.7.0 %s %s, try later\r\n",
			    s->conf->hostname, why);
			(void)io_write(s);
		}
		return -1;
	}
	if (addr_count(s->client, 1) == -1)
		return -1;
	if (addr_count(s->net, 1) == -1) {
		addr_count(s->client, -1);
		return -1;
	}
	s->flags |= SF_COUNTED;
	if (proxy != NULL)
		log_info("session %08x connect from %s via proxy %s on %s",
		    s->id, s->client, proxy, s->lc->name);
	else
		log_info("session %08x connect from %s on %s", s->id,
		    s->client, s->lc->name);

	if (s->lc->flags & LISTEN_TLS) {
		s->state = S_HANDSHAKE;
		if (tls_start(s) == -1)
			return -1;
	} else
		session_start(s);
	return 0;
}

/* Is the connection's peer one of the listener's trusted balancers? */
static int
proxy_trusted(const struct listen_conf *lc, const struct sockaddr_storage *ss)
{
	const struct sockaddr_in	*sin = (const struct sockaddr_in *)ss;
	const struct sockaddr_in6	*sin6 = (const struct sockaddr_in6 *)ss;
	const struct proxy_net		*pn;
	uint8_t				 a[16];
	int				 family, i, b;

	if (ss->ss_family == AF_INET) {
		family = AF_INET;
		memcpy(a, &sin->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6 &&
	    IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
		family = AF_INET;
		memcpy(a, &sin6->sin6_addr.s6_addr[12], 4);
	} else if (ss->ss_family == AF_INET6) {
		family = AF_INET6;
		memcpy(a, &sin6->sin6_addr, 16);
	} else
		return 0;
	for (i = 0; i < lc->nproxy; i++) {
		pn = &lc->proxy[i];
		if (pn->family != family)
			continue;
		for (b = 0; b < pn->bits; b++)
			if ((a[b / 8] ^ pn->addr[b / 8]) & (0x80 >> (b % 8)))
				break;
		if (b == pn->bits)
			return 1;
	}
	return 0;
}

/*
 * Read the PROXY header of a connection on a proxy listener, never a
 * byte past it (what follows is the client's, for TLS or SMTP): a v1
 * line a byte at a time, a v2 header by its fixed part then its stated
 * length.  1 when it is read and the session begun, 0 for more to come,
 * -1 to close.
 */
static int
proxy_input(struct session *s)
{
	struct proxy_hdr	 h;
	char			 proxy[NI_MAXHOST];
	size_t			 want;
	ssize_t			 n;
	int			 r;

	if (s->proxybuf == NULL &&
	    (s->proxybuf = malloc(PROXY_HDR_MAX)) == NULL)
		return -1;
	for (;;) {
		if (s->proxylen == 0 || s->proxybuf[0] == 'P')
			want = 1;
		else if (s->proxylen < 16)
			want = 16 - s->proxylen;
		else {
			want = 16 + (s->proxybuf[14] << 8 | s->proxybuf[15]);
			if (want > PROXY_HDR_MAX || want <= s->proxylen)
				goto bad;
			want -= s->proxylen;
		}
		if (s->proxylen + want > PROXY_HDR_MAX)
			goto bad;
		n = read(s->fd, s->proxybuf + s->proxylen, want);
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n <= 0) {
			log_info("connection from proxy %s on %s closed before "
			    "its PROXY header", s->client, s->lc->name);
			return -1;
		}
		s->proxylen += n;
		if ((r = proxy_parse(s->proxybuf, s->proxylen, &h)) == -1)
			goto bad;
		if (r > 0)
			break;
	}
	free(s->proxybuf);
	s->proxybuf = NULL;
	s->flags &= ~SF_PROXYHDR;
	strlcpy(proxy, s->client, sizeof(proxy));
	/* LOCAL (v2) or UNKNOWN (v1): the balancer itself, a health check */
	if (!h.local) {
		if (getnameinfo((struct sockaddr *)&h.src, h.srclen,
		    s->client, sizeof(s->client), NULL, 0,
		    NI_NUMERICHOST) != 0)
			goto bad;
		network_of(&h.src, s->net, sizeof(s->net));
	}
	return session_begin(s, proxy) == -1 ? -1 : 1;
 bad:
	log_info("connection from proxy %s on %s: not a valid PROXY header",
	    s->client, s->lc->name);
	return -1;
}

static void
accept_cb(int fd, short ev, void *arg)
{
	struct listen_conf	*lc = arg;
	int			 i;

	/* a few at a time: a flood is shed fast, other events still run */
	for (i = 0; i < ACCEPT_BATCH; i++)
		if (accept_one(lc) != 1)
			break;
}

static void
listen_start(struct listen_conf *lc)
{
	lc->ev = event_new(env.base, lc->fd, EV_READ | EV_PERSIST, accept_cb,
	    lc);
	if (lc->ev == NULL || (!acc.paused && event_add(lc->ev, NULL) == -1))
		fatalx("cannot listen on %s", lc->name);
	log_info("listening on %s (%s)", lc->name,
	    lc->flags & LISTEN_TLS ? "tls" : "starttls");
}

static void
start_accepting(void)
{
	struct listen_conf	*lc;

	if ((acc.timer = evtimer_new(env.base, accept_timer_cb, NULL)) ==
	    NULL)
		fatalx("evtimer_new");
	TAILQ_FOREACH(lc, &env.listeners, entry)
		listen_start(lc);
}

/* --- TLS configuration --- */

/* In libtls, but not in the header of every version of it. */
int	tls_config_use_fake_private_key(struct tls_config *);

/* The other certificates, chosen by libtls for the client's SNI. */
static int
add_keypairs(struct tls_config *cfg)
{
	int	 i;

	for (i = 1; i < env.ncerts; i++)
		if (tls_config_add_keypair_mem(cfg, (uint8_t *)env.cert[i],
		    env.certlen[i], NULL, 0) == -1)
			return -1;
	return 0;
}

/*
 * The listener gets the certificates only.  libtls is told the private key
 * is elsewhere: every operation that needs it goes to the key process
 * (signer.c), so a memory disclosure here cannot reveal the key.
 */
static void
tls_setup(void)
{
	struct tls_config	*cfg;
	struct tls		*ctx;
	uint32_t		 protocols;
	int			 first = server == NULL;

	if (env.ncerts == 0)
		fatalx("TLS_READY without a certificate");
	if ((cfg = tls_config_new()) == NULL || (ctx = tls_server()) == NULL)
		fatalx("tls_config_new");
	if (tls_config_parse_protocols(&protocols,
	    env.conf->tls_protocols) == -1 ||
	    tls_config_set_protocols(cfg, protocols) == -1 ||
	    tls_config_set_ciphers(cfg, env.conf->tls_ciphers) == -1 ||
	    tls_config_use_fake_private_key(cfg) == -1 ||
	    tls_config_set_cert_mem(cfg, (uint8_t *)env.cert[0],
	    env.certlen[0]) == -1 || add_keypairs(cfg) == -1 ||
	    tls_configure(ctx, cfg) == -1) {
		const char *err = tls_config_error(cfg) ?
		    tls_config_error(cfg) : tls_error(ctx);

		if (first)
			fatalx("TLS setup: %s", err ? err : "unknown error");
		log_warnx("TLS reload failed, keeping the old certificate: %s",
		    err ? err : "unknown error");
		tls_free(ctx);
	} else {
		/* the old one goes with its last session (server_unref()) */
		if (!first)
			server_unref(server);
		if ((server = calloc(1, sizeof(*server))) == NULL)
			fatal("calloc");
		server->ctx = ctx;
		server->refs = 1;
		log_info("TLS certificate %s", first ? "loaded" : "reloaded");
	}
	tls_config_free(cfg);
	while (env.ncerts > 0)
		free(env.cert[--env.ncerts]);
	if (first && server != NULL) {
		start_accepting();
		ipc_send(env.parent, IMSG_READY, 0, -1, "");
	}
}

/*
 * SIGHUP: new sessions get the new settings; a session in flight keeps
 * the configuration it connected under (its reference).
 */
static void
reconf(struct ipc_msg *msg)
{
	struct smsubmit_conf	*c;

	if ((c = proc_conf_copy(env.conf)) == NULL) {
		log_warn("reload");
		return;
	}
	if (proc_reconf(msg, c) == -1) {
		conf_free(c);
		free(c);
		return;
	}
	c->refs = 1;
	conf_unref(env.conf);
	env.conf = c;
	log_info("configuration reloaded");
}

static struct listen_conf *
listen_find(const char *name)
{
	struct listen_conf	*lc;

	TAILQ_FOREACH(lc, &env.listeners, entry)
		if (strcmp(lc->name, name) == 0)
			return lc;
	return NULL;
}

/* A "listen on" added by a reload: the parent bound it. */
static void
listen_add(struct ipc_msg *msg)
{
	struct listen_conf	*lc;
	const char		*name;
	const void		*proxy;
	size_t			 plen;
	uint32_t		 flags;

	if (msg->fd == -1 || ipc_unpack(msg, "usb", &flags, &name, &proxy,
	    &plen) == -1 ||
	    (flags != LISTEN_TLS && flags != LISTEN_STARTTLS) ||
	    strlen(name) >= sizeof(lc->name) || listen_find(name) != NULL ||
	    plen % sizeof(lc->proxy[0]) != 0 || plen > sizeof(lc->proxy))
		fatalx("bad LISTEN_ADD from parent");
	if (env.stopping) {
		close(msg->fd);
		return;
	}
	if ((lc = calloc(1, sizeof(*lc))) == NULL) {
		log_warn("listen on %s", name);
		close(msg->fd);
		return;
	}
	lc->fd = msg->fd;
	lc->flags = flags;
	memcpy(lc->proxy, proxy, plen);
	lc->nproxy = plen / sizeof(lc->proxy[0]);
	strlcpy(lc->name, name, sizeof(lc->name));
	TAILQ_INSERT_TAIL(&env.listeners, lc, entry);
	listen_start(lc);
}

/*
 * A "listen on" a reload removed: closed, so new connections are refused
 * by the kernel; its sessions in flight finish, and the last one frees it.
 */
static void
listen_close(struct ipc_msg *msg)
{
	struct listen_conf	*lc;
	const char		*name;

	if (msg->fd != -1 || ipc_unpack(msg, "s", &name) == -1 ||
	    (lc = listen_find(name)) == NULL)
		fatalx("bad LISTEN_CLOSE from parent");
	TAILQ_REMOVE(&env.listeners, lc, entry);
	event_free(lc->ev);
	lc->ev = NULL;
	close(lc->fd);
	lc->fd = -1;
	log_info("not listening on %s any more, %d sessions on it", lc->name,
	    lc->refs);
	if (lc->refs == 0)
		free(lc);
}

static void
parent_dispatch(struct ipc *ipc, struct ipc_msg *msg, void *arg)
{
	const uint8_t	*data;
	size_t		 len;

	if (msg == NULL)
		fatalx("parent went away");
	if (msg->type == IMSG_LISTEN_ADD) {
		listen_add(msg);
		return;
	}
	if (msg->fd != -1)
		fatalx("unexpected descriptor from parent");
	switch (msg->type) {
	case IMSG_RECONF:
		reconf(msg);
		break;
	case IMSG_LISTEN_CLOSE:
		listen_close(msg);
		break;
	case IMSG_TLS_CERT:
		if (env.ncerts == CRYPTO_KEYS_MAX || ipc_unpack(msg, "b", &data,
		    &len) == -1 || len == 0)
			fatalx("bad TLS_CERT from parent");
		if ((env.cert[env.ncerts] = malloc(len)) == NULL)
			fatal("malloc");
		memcpy(env.cert[env.ncerts], data, len);
		env.certlen[env.ncerts++] = len;
		break;
	case IMSG_TLS_READY:
		if (ipc_unpack(msg, "") == -1)
			fatalx("bad TLS_READY from parent");
		tls_setup();
		break;
	default:
		fatalx("unexpected message %u from parent", msg->type);
	}
}

/*
 * What worker w said: the session it answered, for the caller to
 * pump(), or NULL.  Apart from auth_dispatch() so that the fuzz
 * harnesses can give the listener a worker's answers without its socket.
 */
static struct session *
auth_answer(struct auth_worker *w, struct ipc_msg *msg)
{
	struct session		*s;
	struct stale		*x;
	const char		*mechs, *addr;
	uint32_t		 secs;
	int			 i;

	if (msg == NULL)
		fatalx("%s process went away", w->name);
	if (msg->fd != -1)
		fatalx("unexpected descriptor from %s", w->name);
	switch (msg->type) {
	case IMSG_AUTH_MECHS:
		if (ipc_unpack(msg, "s", &mechs) == -1 ||
		    strlen(mechs) >= sizeof(env.mechs))
			fatalx("bad AUTH_MECHS from %s", w->name);
		if (w->ready) {
			/* after a reload: every worker says the same */
			if (strcmp(env.mechs, mechs) != 0)
				log_info("SASL mechanisms offered: %s",
				    *mechs ? mechs : "none");
			strlcpy(env.mechs, mechs, sizeof(env.mechs));
			return NULL;
		}
		/* the same configuration and plugins: the same answer */
		for (i = 0; i < nworkers; i++)
			if (workers[i].ready && strcmp(env.mechs, mechs) != 0)
				fatalx("%s offers \"%s\", %s \"%s\"",
				    w->name, mechs, workers[i].name,
				    env.mechs);
		strlcpy(env.mechs, mechs, sizeof(env.mechs));
		w->ready = 1;
		for (i = 0; i < nworkers; i++)
			if (!workers[i].ready)
				return NULL;
		env.auth_ready = 1;
		log_info("SASL mechanisms offered: %s",
		    *env.mechs ? env.mechs : "none");
		return NULL;
	case IMSG_AUTH_BAN:
		if (ipc_unpack(msg, "su", &addr, &secs) == -1)
			fatalx("bad AUTH_BAN from %s", w->name);
		addr_ban(addr, secs);
		return NULL;
	case IMSG_AUTH_ENDED:
	case IMSG_AUTH_HOLD:
	case IMSG_AUTH_CONTINUE:
	case IMSG_AUTH_OK:
	case IMSG_AUTH_FAIL:
		break;
	default:
		fatalx("unexpected message %u from %s", msg->type, w->name);
	}
	if ((x = stale_find(w, msg->peerid)) != NULL) {
		auth_late(w, x, msg);
		return NULL;
	}
	/* a session that left sent AUTH_END: it is in the stale tree */
	if ((s = session_find(msg->peerid)) == NULL || s->authw != w ||
	    s->pending != PENDING_AUTH || msg->type == IMSG_AUTH_ENDED)
		fatalx("%s answers session %08x not waiting for it", w->name,
		    msg->peerid);
	if (msg->type == IMSG_AUTH_HOLD) {
		/* a reload may raise "auth delay" before this process
		   hears of it: the grammar's bound, not the session's */
		if (s->auth_held || ipc_unpack(msg, "u", &secs) == -1 ||
		    secs > AUTH_DELAY_LIMIT)
			fatalx("bad AUTH_HOLD from %s", w->name);
		s->auth_held = 1;
		env.stats.auth_throttled++;
		w->busy--;
		auth_wait(s, secs + s->conf->auth_timeout);
		return NULL;
	}
	if (s->auth_held && msg->type != IMSG_AUTH_FAIL)
		fatalx("%s answers a held failure with %u", w->name,
		    msg->type);
	if (!s->auth_held)
		w->busy--;
	s->auth_held = 0;
	if (msg->type != IMSG_AUTH_CONTINUE) {
		s->authw = NULL;	/* the worker forgot the exchange */
		event_free(s->auth_timer);
		s->auth_timer = NULL;
	} else
		evtimer_del(s->auth_timer);
	session_auth_result(s, msg);
	return s;
}

static void
auth_dispatch(struct ipc *ipc, struct ipc_msg *msg, void *arg)
{
	struct session	*s;

	if ((s = auth_answer(arg, msg)) != NULL)
		pump(s);
}

static void
queue_dispatch(struct ipc *ipc, struct ipc_msg *msg, void *arg)
{
	struct session	*s;
	const char	*msgid;
	uint32_t	 result;

	if (msg == NULL)
		fatalx("queue process went away");
	if (msg->type == IMSG_STATS_REQUEST) {
		/* peerid is the control request's, not a session's */
		if (msg->fd != -1 || ipc_unpack(msg, "") == -1)
			fatalx("bad STATS_REQUEST from queue");
		env.stats.sessions_open = env.nsessions;
		ipc_send(env.queue, IMSG_STATS, msg->peerid, -1, "b",
		    &env.stats, sizeof(env.stats));
		return;
	}
	if (msg->type == IMSG_LIMIT_RESULT) {
		if (msg->fd != -1)
			fatalx("unexpected descriptor from queue");
		if ((s = session_find(msg->peerid)) == NULL)
			return;		/* the client left meanwhile */
		if (s->pending != PENDING_LIMIT)
			fatalx("queue answer for session %08x not waiting "
			    "for it", s->id);
		session_limit_result(s, msg);
		pump(s);
		return;
	}
	if (msg->type != IMSG_MSG_FILE && msg->type != IMSG_MSG_RESULT)
		fatalx("unexpected message %u from queue", msg->type);
	if ((s = session_find(msg->peerid)) == NULL) {
		/* the client left; a file made for it goes */
		if (msg->fd != -1) {
			close(msg->fd);
			if (ipc_unpack(msg, "us", &result, &msgid) == -1)
				fatalx("bad MSG_FILE from queue");
			ipc_send(env.queue, IMSG_MSG_ABORT, msg->peerid, -1,
			    "s", msgid);
		}
		return;
	}
	if ((msg->type == IMSG_MSG_FILE && s->pending != PENDING_FILE) ||
	    (msg->type == IMSG_MSG_RESULT && s->pending != PENDING_COMMIT))
		fatalx("queue answer for session %08x not waiting for it",
		    s->id);
	session_queue_result(s, msg);
	pump(s);
}

/* --- stopping --- */

static void
stop_timer_cb(int fd, short ev, void *arg)
{
	log_info("grace period over, %d sessions cut off", env.nsessions);
	ipc_flush(env.queue);
	/*
	 * Not exit(): a handshaker thread may be inside OpenSSL, which
	 * exit()'s clean-up would tear down under it.
	 */
	_exit(0);
}

static void
signal_cb(int sig, short ev, void *arg)
{
	struct session	*s, *next;
	struct timeval	 tv = { STOP_GRACE, 0 };

	if (env.stopping)
		return;
	env.stopping = 1;
	log_info("stopping: no new sessions, %d in flight", env.nsessions);
	if (env.nsessions == 0)
		exit(0);
	/* idle sessions are told at once; the others finish first */
	for (s = SPLAY_MIN(sessiontree, &sessions); s != NULL; s = next) {
		next = SPLAY_NEXT(sessiontree, &sessions, s);
		if (s->pending == PENDING_NONE && s->state != S_DATA &&
		    s->state != S_QUIT && !(s->flags & SF_STARTTLS) &&
		    s->state != S_HANDSHAKE) {
			session_reply(s, "421 4.3.2 %s Service shutting down",
			    s->conf->hostname);
			session_close(s, "shutting down");
			pump(s);
		}
	}
	stop_timer = evtimer_new(env.base, stop_timer_cb, NULL);
	evtimer_add(stop_timer, &tv);
}

void
listener_main(struct smsubmit_conf *conf, struct proc_peers *peers)
{
	struct auth_worker	*w;
	struct event		*sterm, *sint;
	int			 i;

	env.conf = conf;
	conf->refs = 1;
	TAILQ_INIT(&env.listeners);
	TAILQ_CONCAT(&env.listeners, &conf->listeners, entry);
	arc4random_buf(&env.nextid, sizeof(env.nextid));
	if (peers->queue == -1 || peers->crypto == -1 || peers->nauth == 0)
		fatalx("listener started without its peers");
	if (tls_init() == -1)
		fatalx("tls_init");
	signer_init(peers->crypto);
	/* as root, an empty directory; otherwise where it was started */
	proc_drop(conf->user, geteuid() == 0 ? SMSUBMIT_EMPTY : NULL);

	if ((env.base = event_base_new()) == NULL)
		fatalx("event_base_new");
	env.parent = peers->parent;
	ipc_attach(env.parent, env.base, parent_dispatch, NULL);
	for (i = 0; i < peers->nauth; i++) {
		w = &workers[nworkers++];
		SPLAY_INIT(&w->stale);
		if (peers->nauth > 1)
			snprintf(w->name, sizeof(w->name), "auth %d", i);
		else
			strlcpy(w->name, "auth", sizeof(w->name));
		w->ipc = ipc_new(env.base, peers->auth[i], w->name,
		    auth_dispatch, w);
	}
	env.queue = ipc_new(env.base, peers->queue, "queue", queue_dispatch,
	    NULL);
	sterm = evsignal_new(env.base, SIGTERM, signal_cb, NULL);
	sint = evsignal_new(env.base, SIGINT, signal_cb, NULL);
	if (sterm == NULL || sint == NULL || evsignal_add(sterm, NULL) == -1 ||
	    evsignal_add(sint, NULL) == -1)
		fatalx("evsignal");
	handshaker_start(env.base, handshake_done);
	sandbox_enter("smtp", env.parent->fd);
	event_base_dispatch(env.base);
	fatalx("event loop ended");
}
