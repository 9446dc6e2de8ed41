/*
 * smsubmit.c: the parent process, "[priv]".
 *
 * It parses the configuration, binds the listening sockets, prepares the
 * queue directory and starts the children (proc.c re-executes each):
 * the listener, the auth workers, the queue and the key process.  It reads
 * the certificates and keys and hands the keys to the key process alone,
 * the certificates to the listener, and then only watches: signals, and
 * its children.  On SIGHUP it reads and checks the file again and, if it
 * is sound, hands each child what it may change (reload()).  "started" is logged once every child says it is ready;
 * if any child exits, the others are stopped and the parent exits too.
 */
#include <sys/types.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <event.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "file.h"
#include "log.h"
#include "smsubmit.h"

#define SHUTDOWN_GRACE	30	/* seconds before children are killed */
#define CONF_MAX	(IPC_MAX_PAYLOAD - PATH_MAX - 16)
#define CHILDREN_MAX	(AUTH_WORKERS_MAX + 3)
#define EXTRA_ARGV_MAX	24
#define NOFILE_FIXED	64	/* descriptors not counted per session */

struct child {
	enum proc_type		 type;
	int			 instance;
	pid_t			 pid;
	struct ipc		*ipc;
	int			 ready;
	char			 name[32];	/* "auth 2", for log lines */
};

static struct {
	struct smsubmit_conf	*conf;
	const char		*file;
	char			*text;		/* the file as parsed */
	size_t			 textlen;
	struct event_base	*base;
	struct child		 child[CHILDREN_MAX];
	int			 nchild;
	int			 started;
	int			 stopping;
	int			 status;
	struct event		*killer;
	char			*cert[CRYPTO_KEYS_MAX];	/* until the key */
	size_t			 certlen[CRYPTO_KEYS_MAX]; /* process has the */
	int			 ncerts;		/* matching keys */
	int			 loading;	/* keys sent, no answer yet */
	char			*extra[EXTRA_ARGV_MAX];	/* for children */
	int			 nextra;
} env;

static void	stop(int);

static __attribute__((noreturn)) void
usage(void)
{
	fprintf(stderr, "usage: smsubmit [-dnv] [-D macro=value] "
	    "[-f file]\n"
	    "       smsubmit -q | -Q | -s [-o openmetrics] [-f file]\n");
	exit(1);
}

/* Bind one "listen on"; -1 with errno and what failed in *what. */
static int
bind_one(struct listen_conf *lc, const char **what)
{
	int	 on = 1, saved;

	*what = "socket";
	lc->fd = socket(lc->ss.ss_family,
	    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lc->fd == -1)
		return -1;
	if (setsockopt(lc->fd, SOL_SOCKET, SO_REUSEADDR, &on,
	    sizeof(on)) == -1) {
		*what = "SO_REUSEADDR";
		goto fail;
	}
	if (lc->ss.ss_family == AF_INET6 && setsockopt(lc->fd,
	    IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) == -1) {
		*what = "IPV6_V6ONLY";
		goto fail;
	}
	/*
	 * Accepted sockets inherit TCP_NODELAY (Linux, OpenBSD), and the
	 * listener's sandbox has no setsockopt.  Without it the first reply
	 * after the TLS 1.3 session tickets waits ~40 ms for the client's
	 * delayed ACK (Nagle).  The session already writes all the replies
	 * it has in one go, so nothing goes out in smaller pieces than
	 * before.
	 */
	if (setsockopt(lc->fd, IPPROTO_TCP, TCP_NODELAY, &on,
	    sizeof(on)) == -1) {
		*what = "TCP_NODELAY";
		goto fail;
	}
	*what = "bind";
	if (bind(lc->fd, (struct sockaddr *)&lc->ss, lc->sslen) == -1)
		goto fail;
	*what = "listen";
	if (listen(lc->fd, 128) == -1)
		goto fail;
	return 0;
 fail:
	saved = errno;
	close(lc->fd);
	lc->fd = -1;
	errno = saved;
	return -1;
}

static void
bind_listeners(struct smsubmit_conf *conf)
{
	struct listen_conf	*lc;
	const char		*what;

	TAILQ_FOREACH(lc, &conf->listeners, entry)
		if (bind_one(lc, &what) == -1)
			fatal("%s %s", what, lc->name);
}

/*
 * Every session costs the listener its socket and, during DATA, the
 * message file, and costs the queue as much: make room for them all (the
 * children inherit the limit), or refuse a configuration that cannot
 * have it rather than find out by running out under load.
 */
static rlim_t
nofile_need(struct smsubmit_conf *conf)
{
	struct listen_conf	*lc;
	rlim_t			 need;

	need = NOFILE_FIXED + 2 * (rlim_t)conf->max_sessions +
	    conf->auth_workers;
	TAILQ_FOREACH(lc, &conf->listeners, entry)
		need++;
	return need;
}

static int
fit_nofile(struct smsubmit_conf *conf, const char *file)
{
	struct rlimit		 rl;
	rlim_t			 need;

	need = nofile_need(conf);
	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		fprintf(stderr, "getrlimit: %s\n", strerror(errno));
		return -1;
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
		rl.rlim_cur = need;
		/* root may raise the hard limit too, up to fs.nr_open */
		if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need &&
		    geteuid() == 0)
			rl.rlim_max = need;
		if ((rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) ||
		    setrlimit(RLIMIT_NOFILE, &rl) == -1) {
			if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
				rl.rlim_max = 0;
			fprintf(stderr, "%s: \"limit sessions %d\" needs %llu "
			    "open files, but at most %llu are allowed "
			    "(RLIMIT_NOFILE): raise the limit (ulimit -n, "
			    "LimitNOFILE= in the systemd unit) or lower "
			    "\"limit sessions\"\n", file, conf->max_sessions,
			    (unsigned long long)need,
			    (unsigned long long)rl.rlim_max);
			return -1;
		}
	}
	return 0;
}

static struct child *
child_of(enum proc_type t, int instance)
{
	int	 i;

	for (i = 0; i < env.nchild; i++)
		if (env.child[i].type == t && env.child[i].instance == instance)
			return &env.child[i];
	return NULL;
}

static void
certs_free(void)
{
	while (env.ncerts > 0)
		free(env.cert[--env.ncerts]);
}

/*
 * Read every certificate and key.  The keys go to the key process alone;
 * the certificates follow to the listener once that process has taken
 * the keys (IMSG_CRYPTO_LOADED), so no handshake is signed with a key it
 * does not hold yet.
 */
static int
send_keys(void)
{
	struct child		*crypto = child_of(PROC_CRYPTO, 0);
	struct keypair_conf	*kp;
	char			*cert, *key;
	size_t			 certlen, keylen;

	if (env.loading) {
		log_warnx("certificates are being loaded already");
		return -1;
	}
	env.loading = 1;
	TAILQ_FOREACH(kp, &env.conf->keypairs, entry) {
		if ((cert = file_read(kp->cert, KEYPAIR_MAX, &certlen)) ==
		    NULL) {
			log_warn("certificate %s", kp->cert);
			goto fail;
		}
		if ((key = file_read(kp->key, KEYPAIR_MAX, &keylen)) == NULL) {
			log_warn("key %s", kp->key);
			free(cert);
			goto fail;
		}
		ipc_send(crypto->ipc, IMSG_CRYPTO_KEY, 0, -1, "bb", cert,
		    certlen, key, keylen);
		freezero(key, keylen + 1);
		env.cert[env.ncerts] = cert;
		env.certlen[env.ncerts++] = certlen;
	}
	ipc_send(crypto->ipc, IMSG_CRYPTO_KEYS_END, 0, -1, "u",
	    (uint32_t)env.ncerts);
	return 0;
 fail:
	/* a count that cannot match: what was sent is thrown away */
	ipc_send(crypto->ipc, IMSG_CRYPTO_KEYS_END, 0, -1, "u", UINT32_MAX);
	certs_free();
	return 0;
}

static void
keys_loaded(uint32_t n)
{
	struct child	*smtp = child_of(PROC_SMTP, 0);
	int		 i;

	env.loading = 0;
	if (n == 0 || n != (uint32_t)env.ncerts) {
		certs_free();
		if (!env.started) {
			log_warnx("cannot start without a certificate and "
			    "its key");
			stop(1);
		} else
			log_warnx("reload failed, keeping the old keypairs");
		return;
	}
	for (i = 0; i < env.ncerts; i++)
		ipc_send(smtp->ipc, IMSG_TLS_CERT, 0, -1, "b", env.cert[i],
		    env.certlen[i]);
	ipc_send(smtp->ipc, IMSG_TLS_READY, 0, -1, "");
	certs_free();
}

/* --- SIGHUP --- */

/*
 * Parse and check a new configuration as -n does.  What they print goes
 * to stderr, which a daemon has not got: it is caught and logged, so the
 * operator finds "file:line: ..." in the log.
 */
static int
reload_validate(const char *text, size_t len, struct smsubmit_conf *conf)
{
	FILE	*tmp;
	char	 line[1024];
	int	 saved, r = -1, parsed = 0;

	fflush(stderr);
	if ((tmp = tmpfile()) == NULL) {
		log_warn("reload: tmpfile");
		return -1;
	}
	if ((saved = dup(STDERR_FILENO)) == -1 ||
	    dup2(fileno(tmp), STDERR_FILENO) == -1) {
		log_warn("reload: dup");
		if (saved != -1)
			close(saved);
		fclose(tmp);
		return -1;
	}
	if (parse_config_mem(env.file, text, len, conf) == 0) {
		parsed = 1;
		if (check_config(env.file, conf, 0) == 0)
			r = 0;
	}
	fflush(stderr);
	if (dup2(saved, STDERR_FILENO) == -1)
		fatal("reload: dup2");
	close(saved);
	rewind(tmp);
	while (fgets(line, sizeof(line), tmp) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		log_warnx("%s", line);
	}
	fclose(tmp);
	if (r == -1 && parsed)
		conf_free(conf);
	return r;
}

static struct listen_conf *
listen_find(struct smsubmit_conf *conf, const char *name)
{
	struct listen_conf	*lc;

	TAILQ_FOREACH(lc, &conf->listeners, entry)
		if (strcmp(lc->name, name) == 0)
			return lc;
	return NULL;
}

static void
what_add(char *what, size_t len, const char *name)
{
	if (*what != '\0')
		strlcat(what, ", ", len);
	strlcat(what, name, len);
}

/*
 * What the children were set up with and cannot change while running:
 * their users, chroots and sandboxes, the number of auth workers and
 * the SASL library's configuration, and the open files the processes
 * were given room for.  0 if the new configuration changes none of it.
 */
static int
reload_fixed(struct smsubmit_conf *o, struct smsubmit_conf *n)
{
	struct listen_conf	*lc, *olc;
	struct rlimit		 rl;
	char			 what[512] = "", nofile[96];

	if (strcmp(o->user, n->user) != 0)
		what_add(what, sizeof(what), "user");
	if (strcmp(o->queue_user, n->queue_user) != 0)
		what_add(what, sizeof(what), "queue user");
	if (strcmp(o->queue_dir, n->queue_dir) != 0)
		what_add(what, sizeof(what), "queue directory");
	if (o->auth_workers != n->auth_workers)
		what_add(what, sizeof(what), "auth workers");
	if (strcmp(o->sasl_config, n->sasl_config) != 0)
		what_add(what, sizeof(what), "auth sasl-config");
	TAILQ_FOREACH(lc, &n->listeners, entry)
		if ((olc = listen_find(o, lc->name)) != NULL &&
		    olc->flags != lc->flags) {
			what_add(what, sizeof(what), "tls or starttls on ");
			strlcat(what, lc->name, sizeof(what));
		} else if (olc != NULL && (olc->nproxy != lc->nproxy ||
		    memcmp(olc->proxy, lc->proxy, sizeof(lc->proxy)) != 0)) {
			what_add(what, sizeof(what), "proxy from on ");
			strlcat(what, lc->name, sizeof(what));
		}
	/* the children have the limit they were started with */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur !=
	    RLIM_INFINITY && rl.rlim_cur < nofile_need(n)) {
		what_add(what, sizeof(what), "limit sessions and listen on");
		snprintf(nofile, sizeof(nofile), " (%llu open files needed, "
		    "%llu allowed)",
		    (unsigned long long)nofile_need(n),
		    (unsigned long long)rl.rlim_cur);
		strlcat(what, nofile, sizeof(what));
	}
	if (*what == '\0')
		return 0;
	log_warnx("reload refused: %s cannot change without a restart, "
	    "keeping the old configuration", what);
	return -1;
}

static void
listeners_unbind(struct smsubmit_conf *conf)
{
	struct listen_conf	*lc;

	TAILQ_FOREACH(lc, &conf->listeners, entry)
		if (lc->fd != -1) {
			close(lc->fd);
			lc->fd = -1;
		}
}

/* Bind the listeners the old configuration has not got. */
static int
reload_bind(struct smsubmit_conf *o, struct smsubmit_conf *n)
{
	struct listen_conf	*lc;
	const char		*what;

	TAILQ_FOREACH(lc, &n->listeners, entry) {
		if (listen_find(o, lc->name) != NULL)
			continue;
		if (bind_one(lc, &what) == -1) {
			log_warn("reload refused: %s %s, keeping the old "
			    "configuration", what, lc->name);
			listeners_unbind(n);
			return -1;
		}
	}
	return 0;
}

/*
 * SIGHUP: the whole file again.  Anything wrong with it, or anything it
 * changes that needs a restart, and the old configuration goes on
 * serving.  Otherwise every child takes the settings it can change
 * (proc_reconf), the listener the listeners added and removed, and the
 * key process and the listener the certificates, as at start.
 */
static void
reload(void)
{
	struct smsubmit_conf	*n, *o = env.conf;
	struct listen_conf	*lc;
	struct child		*smtp = child_of(PROC_SMTP, 0), *c;
	char			*text;
	size_t			 len;
	int			 i;

	if (env.loading) {
		log_warnx("reload refused: the last one is not done yet");
		return;
	}
	log_info("reloading %s", env.file);
	if ((text = file_read(env.file, CONF_MAX, &len)) == NULL) {
		log_warn("reload refused: %s, keeping the old configuration",
		    env.file);
		return;
	}
	if ((n = calloc(1, sizeof(*n))) == NULL) {
		log_warn("reload");
		freezero(text, len);
		return;
	}
	if (reload_validate(text, len, n) == -1) {
		freezero(text, len);
		free(n);
		log_warnx("reload refused: %s has errors, keeping the old "
		    "configuration", env.file);
		return;
	}
	freezero(text, len);
	if (reload_fixed(o, n) == -1 || reload_bind(o, n) == -1) {
		conf_free(n);
		free(n);
		return;
	}

	for (i = 0; i < env.nchild; i++) {
		c = &env.child[i];
		if (c->type != PROC_CRYPTO && c->pid > 0)
			proc_reconf_send(c->ipc, n);
	}
	TAILQ_FOREACH(lc, &o->listeners, entry)
		if (listen_find(n, lc->name) == NULL) {
			log_info("not listening on %s any more", lc->name);
			ipc_send(smtp->ipc, IMSG_LISTEN_CLOSE, 0, -1, "s",
			    lc->name);
		}
	TAILQ_FOREACH(lc, &n->listeners, entry)
		if (lc->fd != -1) {
			/* the socket is the listener's now */
			ipc_send(smtp->ipc, IMSG_LISTEN_ADD, 0, lc->fd, "usb",
			    (uint32_t)lc->flags, lc->name, lc->proxy,
			    lc->nproxy * sizeof(lc->proxy[0]));
			lc->fd = -1;
		}
	env.conf = n;
	conf_free(o);
	free(o);
	log_info("configuration reloaded");
	send_keys();
}

static void
kill_children(int sig, int listeners_too)
{
	int	 i;

	for (i = 0; i < env.nchild; i++)
		if (env.child[i].pid > 0 && (listeners_too ||
		    env.child[i].type != PROC_SMTP))
			kill(env.child[i].pid, sig);
}

static void
killer_cb(int fd, short ev, void *arg)
{
	log_warnx("children did not stop in time, killing them");
	kill_children(SIGKILL, 1);
}

static int
listeners_left(void)
{
	int	 i, n = 0;

	for (i = 0; i < env.nchild; i++)
		if (env.child[i].type == PROC_SMTP && env.child[i].pid > 0)
			n++;
	return n;
}

static void
stop(int status)
{
	struct timeval	 tv = { SHUTDOWN_GRACE, 0 };
	int		 i;

	if (env.stopping)
		return;
	env.stopping = 1;
	env.status = status;
	/*
	 * The listener goes first and finishes its sessions; the others are
	 * told once it is gone, so a message being committed is not cut off
	 * and a handshake in flight can still be signed.
	 */
	if (listeners_left() > 0) {
		for (i = 0; i < env.nchild; i++)
			if (env.child[i].type == PROC_SMTP &&
			    env.child[i].pid > 0)
				kill(env.child[i].pid, SIGTERM);
	} else
		kill_children(SIGTERM, 1);
	env.killer = evtimer_new(env.base, killer_cb, NULL);
	evtimer_add(env.killer, &tv);
}

static void
reap(void)
{
	struct child	*c;
	pid_t		 pid;
	int		 status, i, left = 0;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (i = 0; i < env.nchild; i++) {
			c = &env.child[i];
			if (c->pid != pid)
				continue;
			c->pid = 0;
			/* a process that fails on its way out fails the daemon */
			if (WIFSIGNALED(status) || WEXITSTATUS(status) != 0)
				env.status = 1;
			if (!env.stopping || WIFSIGNALED(status) ||
			    WEXITSTATUS(status) != 0) {
				if (WIFSIGNALED(status))
					log_warnx("%s process killed by "
					    "signal %d", c->name,
					    WTERMSIG(status));
				else
					log_warnx("%s process exited with "
					    "status %d", c->name,
					    WEXITSTATUS(status));
			}
			if (!env.stopping)
				stop(1);
			else if (c->type == PROC_SMTP && listeners_left() == 0)
				kill_children(SIGTERM, 0);
		}
	}
	for (i = 0; i < env.nchild; i++)
		if (env.child[i].pid > 0)
			left++;
	if (env.stopping && left == 0) {
		log_info("exiting");
		exit(env.status);
	}
}

static void
signal_cb(int sig, short ev, void *arg)
{
	switch (sig) {
	case SIGTERM:
	case SIGINT:
		log_info("received signal %d, shutting down", sig);
		stop(0);
		break;
	case SIGHUP:
		if (env.stopping || !env.started)
			break;
		reload();
		break;
	case SIGCHLD:
		reap();
		break;
	}
}

static void
child_ready(struct child *c)
{
	int	 i;

	if (c->ready)
		fatalx("%s process ready twice", c->name);
	c->ready = 1;
	for (i = 0; i < env.nchild; i++)
		if (!env.child[i].ready)
			return;
	env.started = 1;
	log_info("started, version %s", SMSUBMIT_VERSION);
}

/* An auth worker's failure, for the others to count (auth.c). */
static int
relay_failure(struct child *from, struct ipc_msg *msg)
{
	const char	*addr, *user;
	int		 i;

	if (from->type != PROC_AUTH || ipc_unpack(msg, "ss", &addr,
	    &user) == -1 || strlen(addr) >= NI_MAXHOST || strlen(user) >= 128)
		return -1;
	for (i = 0; i < env.nchild; i++)
		if (env.child[i].type == PROC_AUTH && &env.child[i] != from &&
		    env.child[i].pid > 0)
			ipc_send(env.child[i].ipc, IMSG_AUTH_FAILURE, 0, -1,
			    "ss", addr, user);
	return 0;
}

/*
 * What a child may tell the parent: that it is ready, that its sandbox
 * killed it, (the key process) how a key load went, and (an auth worker)
 * a failure for the other workers.  Anything else is a child out of its
 * mind: stop everything.
 */
static void
parent_dispatch(struct ipc *ipc, struct ipc_msg *msg, void *arg)
{
	struct child	*c = arg;
	uint32_t	 nr;

	if (msg == NULL)
		return;		/* the child is gone; SIGCHLD tells us how */
	if (msg->fd != -1)
		fatalx("descriptor from %s process", c->name);
	switch (msg->type) {
	case IMSG_SANDBOX_VIOLATION:
		if (ipc_unpack(msg, "u", &nr) == -1)
			break;
		log_warnx("%s process killed by its sandbox: forbidden "
		    "system call %s", c->name, sandbox_syscall_name(nr));
		return;
	case IMSG_READY:
		if (ipc_unpack(msg, "") == -1)
			break;
		if (!env.stopping)
			child_ready(c);
		return;
	case IMSG_CRYPTO_LOADED:
		if (c->type != PROC_CRYPTO || !env.loading ||
		    ipc_unpack(msg, "u", &nr) == -1)
			break;
		keys_loaded(nr);
		return;
	case IMSG_AUTH_FAILURE:
		if (relay_failure(c, msg) == -1)
			break;
		return;
	}
	log_warnx("unexpected message %u from %s process", msg->type,
	    c->name);
	stop(1);
}

static struct child *
spawn(enum proc_type t, int instance)
{
	struct child	*c = &env.child[env.nchild++];
	int		 fd;

	c->type = t;
	c->instance = instance;
	if (t == PROC_AUTH && env.conf->auth_workers > 1)
		snprintf(c->name, sizeof(c->name), "%s %d", proc_name(t),
		    instance);
	else
		strlcpy(c->name, proc_name(t), sizeof(c->name));
	c->pid = proc_spawn(t, instance, env.extra, &fd);
	c->ipc = ipc_open(fd, c->name);
	ipc_send(c->ipc, IMSG_CONF, 0, -1, "sb", env.file, env.text,
	    env.textlen);
	return c;
}

/* A channel between two children, each end sent to its owner. */
static void
connect_peers(struct child *a, struct child *b)
{
	int	 sp[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0, sp) == -1)
		fatal("socketpair");
	ipc_send(a->ipc, IMSG_PEER, 0, sp[0], "uu", (uint32_t)b->type,
	    (uint32_t)b->instance);
	ipc_send(b->ipc, IMSG_PEER, 0, sp[1], "uu", (uint32_t)a->type,
	    (uint32_t)a->instance);
}

static void
start_children(void)
{
	struct listen_conf	*lc;
	struct child		*smtp, *c;
	sigset_t		 mask;
	int			 sigs[4] = { SIGTERM, SIGINT, SIGHUP, SIGCHLD };
	uint32_t		 idx = 0;
	int			 i;

	/* held until the handlers are in place; children unblock them */
	sigemptyset(&mask);
	for (i = 0; i < 4; i++)
		sigaddset(&mask, sigs[i]);
	sigprocmask(SIG_BLOCK, &mask, NULL);

	smtp = spawn(PROC_SMTP, 0);
	for (i = 0; i < env.conf->auth_workers; i++)
		spawn(PROC_AUTH, i);
	spawn(PROC_QUEUE, 0);
	spawn(PROC_CRYPTO, 0);
	for (i = 0; i < env.nchild; i++)
		if (env.child[i].type != PROC_SMTP)
			connect_peers(smtp, &env.child[i]);
	TAILQ_FOREACH(lc, &env.conf->listeners, entry) {
		/* the socket is the listener's now */
		ipc_send(smtp->ipc, IMSG_LISTEN, 0, lc->fd, "u", idx++);
		lc->fd = -1;
	}
	explicit_bzero(env.text, env.textlen);
	free(env.text);
	env.text = NULL;

	if ((env.base = event_base_new()) == NULL)
		fatalx("event_base_new");
	for (i = 0; i < env.nchild; i++) {
		c = &env.child[i];
		ipc_send(c->ipc, IMSG_START, 0, -1, "");
		ipc_attach(c->ipc, env.base, parent_dispatch, c);
	}
	for (i = 0; i < 4; i++) {
		struct event *ev = evsignal_new(env.base, sigs[i], signal_cb,
		    NULL);

		if (ev == NULL || evsignal_add(ev, NULL) == -1)
			fatalx("evsignal");
	}
	sigprocmask(SIG_UNBLOCK, &mask, NULL);
}

static void
extra_arg(char *arg)
{
	if (env.nextra == EXTRA_ARGV_MAX - 1)
		fatalx("too many options");
	env.extra[env.nextra++] = arg;
}

int
main(int argc, char *argv[])
{
	struct smsubmit_conf	*conf;
	struct proc_peers	 peers;
	const char		*file = SMSUBMIT_CONF, *errstr;
	const char		*control = NULL, *child = NULL;
	int			 ch, debug = 0, checkonly = 0, verbose = 0;
	int			 stats = 0, openmetrics = 0;
	int			 instance = 0;
	enum proc_type		 t;

#ifdef __linux__
	setproctitle_init(argc, argv, environ);
#endif
	log_init(1, 0);
	while ((ch = getopt(argc, argv, "dD:f:I:no:qQsvX:")) != -1) {
		switch (ch) {
		case 'd':
			debug = 1;
			extra_arg("-d");
			break;
		case 'D':
			if (cmdline_symset(optarg) == -1)
				fatalx("could not parse macro definition %s",
				    optarg);
			extra_arg("-D");
			extra_arg(optarg);
			break;
		case 'f':
			file = optarg;
			break;
		case 'I':
			instance = strtonum(optarg, 0, AUTH_WORKERS_MAX - 1,
			    &errstr);
			if (errstr != NULL)
				usage();
			break;
		case 'n':
			checkonly = 1;
			break;
		case 'q':
			control = "list";
			break;
		case 'Q':
			control = "flush";
			break;
		case 's':
			stats = 1;
			break;
		case 'o':
			if (strcmp(optarg, "openmetrics") != 0)
				usage();
			openmetrics = 1;
			break;
		case 'v':
			verbose++;
			extra_arg("-v");
			break;
		case 'X':
			child = optarg;
			break;
		default:
			usage();
		}
	}
	if (optind != argc || (openmetrics && !stats) ||
	    (stats && control != NULL))
		usage();
	if (stats)
		control = openmetrics ? "stats openmetrics" : "stats";
	if ((conf = calloc(1, sizeof(*conf))) == NULL)
		fatal("calloc");

	if (child != NULL) {
		/* a re-executed child: the parent has the rest to say */
		if ((t = proc_type(child)) == PROC_MAX)
			usage();
		log_init(debug, verbose);
		proc_child(t, instance, conf, &peers);
		switch (t) {
		case PROC_SMTP:
			listener_main(conf, &peers);
		case PROC_AUTH:
			auth_main(conf, &peers);
		case PROC_QUEUE:
			queue_main(conf, &peers);
		case PROC_CRYPTO:
			crypto_main(conf, &peers);
		default:
			usage();
		}
	}

	if ((env.text = file_read(file, CONF_MAX, &env.textlen)) == NULL) {
		fprintf(stderr, "%s: %s\n", file, strerror(errno));
		exit(1);
	}
	if (parse_config_mem(file, env.text, env.textlen, conf) == -1)
		exit(1);
	if (control != NULL)
		exit(control_client(conf, control));
	if (fit_nofile(conf, file) == -1)
		exit(1);
	if (checkonly) {
		if (check_config(file, conf, 0) > 0)
			exit(1);
		fprintf(stderr, "configuration OK\n");
		exit(0);
	}
	env.conf = conf;
	env.file = file;
	log_init(debug, verbose);
	log_procname("priv");

	if (check_config(file, conf, 1) > 0) {
		log_warnx("not started: the problems above must be fixed");
		exit(1);
	}
	if (geteuid() != 0)
		log_warnx("not started as root: no chroot and no change of "
		    "user; the privilege separation is weaker");
	bind_listeners(conf);
	if (!debug && daemon(0, 0) == -1)
		fatal("daemon");
	signal(SIGPIPE, SIG_IGN);

	start_children();
	setproctitle("[priv]");
	if (send_keys() == -1) {
		log_warnx("cannot start without a certificate and its key");
		stop(1);
	}
	event_base_dispatch(env.base);
	return 0;
}
