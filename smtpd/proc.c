/*
 * proc.c: how the parent starts a child, and what every child does first.
 *
 * A child is not a copy of the parent: after fork() it re-executes the
 * smsubmit binary ("smsubmit -X smtp ..."), as OpenSSH and OpenSMTPD do,
 * so each process gets its own address-space layout and holds nothing of
 * the parent's memory (the configuration text, other processes' secrets).
 * The only descriptors that survive the exec are stdin, stdout, stderr
 * and the channel to the parent, always descriptor 3.
 *
 * Over that channel the parent then sends, in order, the configuration
 * file's text (the child parses the very bytes the parent checked), the
 * channels to its peers, the listening sockets (listener only) and
 * IMSG_START.  The child reads them synchronously, before it has an event
 * loop, then sets itself up, drops its privileges and enters its sandbox.
 *
 * A reload does not send the text again: a child in its sandbox could
 * not resolve a host name or read the system's name, so the parent sends
 * the values it parsed and checked (proc_reconf_send()).
 */
#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "smsubmit.h"

#define START_TIMEOUT	30000	/* ms for the parent's start-up messages */
#define ARGV_MAX	32

static const char *names[PROC_MAX] = {
	"priv", "smtp", "auth", "queue", "crypto"
};

const char *
proc_name(enum proc_type t)
{
	return t < PROC_MAX ? names[t] : "?";
}

enum proc_type
proc_type(const char *name)
{
	int	 t;

	for (t = PROC_SMTP; t < PROC_MAX; t++)
		if (strcmp(name, names[t]) == 0)
			return t;
	return PROC_MAX;
}

/* The binary to re-execute: this very one, even if replaced on disk. */
static const char *
self_path(void)
{
#ifdef __linux__
	return "/proc/self/exe";
#else
	extern const char *__progname_full;

	return __progname_full;
#endif
}

pid_t
proc_spawn(enum proc_type t, int instance, char *const extra[], int *channel)
{
	char		*argv[ARGV_MAX], inst[16];
	sigset_t	 mask;
	pid_t		 pid;
	int		 sp[2], argc = 0, i;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == -1)
		fatal("socketpair");
	if ((pid = fork()) == -1)
		fatal("fork");
	if (pid > 0) {
		close(sp[1]);
		*channel = sp[0];
		return pid;
	}

	/* the child: only stdio and the channel survive the exec */
	close(sp[0]);
	if (sp[1] == PROC_FD) {
		if (fcntl(PROC_FD, F_SETFD, 0) == -1)
			_exit(1);
	} else if (dup2(sp[1], PROC_FD) == -1)
		_exit(1);
	closefrom(PROC_FD + 1);
	/* signals the parent held back are the child's to take */
	sigfillset(&mask);
	sigprocmask(SIG_UNBLOCK, &mask, NULL);

	snprintf(inst, sizeof(inst), "%d", instance);
	argv[argc++] = "smsubmit";
	argv[argc++] = "-X";
	argv[argc++] = (char *)proc_name(t);
	argv[argc++] = "-I";
	argv[argc++] = inst;
	for (i = 0; extra != NULL && extra[i] != NULL &&
	    argc < ARGV_MAX - 1; i++)
		argv[argc++] = extra[i];
	argv[argc] = NULL;
	execv(self_path(), argv);
	/* stderr is all there is to say it on */
	dprintf(STDERR_FILENO, "smsubmit: cannot re-execute %s: %s\n",
	    self_path(), strerror(errno));
	_exit(1);
}

static void
peer_set(struct proc_peers *p, struct ipc_msg *msg)
{
	uint32_t	 type, inst;

	if (ipc_unpack(msg, "uu", &type, &inst) == -1 || msg->fd == -1)
		fatalx("bad PEER from parent");
	switch (type) {
	case PROC_SMTP:
		if (p->listener != -1)
			fatalx("second listener channel");
		p->listener = msg->fd;
		return;
	case PROC_QUEUE:
		if (p->queue != -1)
			fatalx("second queue channel");
		p->queue = msg->fd;
		return;
	case PROC_CRYPTO:
		if (p->crypto != -1)
			fatalx("second key process channel");
		p->crypto = msg->fd;
		return;
	case PROC_AUTH:
		if (inst != (uint32_t)p->nauth || p->nauth == AUTH_WORKERS_MAX)
			fatalx("auth channel %u out of order", inst);
		p->auth[p->nauth++] = msg->fd;
		return;
	default:
		fatalx("channel to unknown process %u", type);
	}
}

static void
listen_set(struct smsubmit_conf *conf, struct ipc_msg *msg)
{
	struct listen_conf	*lc;
	uint32_t		 idx, i = 0;

	if (ipc_unpack(msg, "u", &idx) == -1 || msg->fd == -1)
		fatalx("bad LISTEN from parent");
	TAILQ_FOREACH(lc, &conf->listeners, entry)
		if (i++ == idx)
			break;
	if (lc == NULL || lc->fd != -1)
		fatalx("LISTEN %u does not match the configuration", idx);
	lc->fd = msg->fd;
}

void
proc_child(enum proc_type t, int instance, struct smsubmit_conf *conf,
    struct proc_peers *p)
{
	struct ipc_msg		 msg;
	struct listen_conf	*lc;
	const uint8_t		*text;
	const char		*file;
	size_t			 len;
	int			 r, have_conf = 0;

	setproctitle("[%s]", proc_name(t));
	log_procname(proc_name(t));
	memset(p, 0, sizeof(*p));
	p->instance = instance;
	p->listener = p->queue = p->crypto = -1;
	p->parent = ipc_open(PROC_FD, "parent");

	for (;;) {
		if ((r = ipc_read_sync(p->parent, &msg, START_TIMEOUT)) != 1)
			fatalx("parent %s before the start", r == 0 ?
			    "went away" : "silent");
		if (msg.type == IMSG_START) {
			if (ipc_unpack(&msg, "") == -1 || !have_conf)
				fatalx("bad START from parent");
			break;
		}
		if (msg.type == IMSG_CONF) {
			if (have_conf || ipc_unpack(&msg, "sb", &file, &text,
			    &len) == -1)
				fatalx("bad CONF from parent");
			/* the parent parsed the same text: it cannot fail */
			if (parse_config_mem(file, (const char *)text, len,
			    conf) == -1)
				fatalx("configuration from parent refused");
			TAILQ_FOREACH(lc, &conf->listeners, entry)
				lc->fd = -1;
			have_conf = 1;
			continue;
		}
		if (!have_conf)
			fatalx("message %u from parent before CONF", msg.type);
		if (msg.type == IMSG_PEER)
			peer_set(p, &msg);
		else if (msg.type == IMSG_LISTEN && t == PROC_SMTP)
			listen_set(conf, &msg);
		else
			fatalx("unexpected message %u from parent at start",
			    msg.type);
	}
	ipc_consume(p->parent);
}

void
proc_drop(const char *user, const char *root)
{
	struct passwd	*pw;

	/* the parent says when to stop; a dead peer shows as EPIPE */
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	sandbox_prepare();
	if (geteuid() != 0) {
		if (root != NULL && chdir(root) == -1)
			fatal("chdir %s", root);
		return;
	}
	if ((pw = getpwnam(user)) == NULL)
		fatalx("unknown user %s", user);
	if (root != NULL && (chroot(root) == -1 || chdir("/") == -1))
		fatal("chroot %s", root);
	if (setgroups(1, &pw->pw_gid) == -1 ||
	    setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) == -1 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) == -1)
		fatal("cannot drop privileges to %s", user);
}

/*
 * What SIGHUP can change in a running child.  The parent sends the struct
 * with its pointers and lists cleared (a child learns nothing of the
 * parent's memory) and the strings after it; the rest (users, queue
 * directory, SASL configuration, auth workers) the parent refuses to
 * change without a restart, and the listeners and certificates have
 * messages of their own.
 */
void
proc_reconf_send(struct ipc *ipc, const struct smsubmit_conf *conf)
{
	struct smsubmit_conf	 c;

	memcpy(&c, conf, sizeof(c));
	memset(&c.listeners, 0, sizeof(c.listeners));
	memset(&c.keypairs, 0, sizeof(c.keypairs));
	c.tls_cert = c.tls_key = c.tls_protocols = c.tls_ciphers = NULL;
	c.sasl_config = c.senders_file = c.queue_dir = NULL;
	c.user = c.queue_user = NULL;
	ipc_send(ipc, IMSG_RECONF, 0, -1, "bsss", &c, sizeof(c),
	    conf->tls_protocols, conf->tls_ciphers,
	    conf->senders_file != NULL ? conf->senders_file : "");
}

int
proc_reconf(struct ipc_msg *msg, struct smsubmit_conf *conf)
{
	struct smsubmit_conf	 c;
	const uint8_t		*data;
	const char		*protocols, *ciphers, *senders;
	char			*p = NULL, *ci = NULL, *se = NULL;
	size_t			 len;

	if (ipc_unpack(msg, "bsss", &data, &len, &protocols, &ciphers,
	    &senders) == -1 || len != sizeof(c))
		fatalx("bad RECONF from parent");
	memcpy(&c, data, sizeof(c));
	if (memchr(c.hostname, '\0', sizeof(c.hostname)) == NULL ||
	    memchr(c.auth_mechs, '\0', sizeof(c.auth_mechs)) == NULL ||
	    memchr(c.relay_name, '\0', sizeof(c.relay_name)) == NULL ||
	    c.relay_sslen > sizeof(c.relay_ss))
		fatalx("bad RECONF from parent");
	if ((p = strdup(protocols)) == NULL ||
	    (ci = strdup(ciphers)) == NULL ||
	    (*senders != '\0' && (se = strdup(senders)) == NULL)) {
		free(p);
		free(ci);
		log_warn("reload");
		return -1;
	}
	memcpy(conf->hostname, c.hostname, sizeof(conf->hostname));
	memcpy(conf->auth_mechs, c.auth_mechs, sizeof(conf->auth_mechs));
	free(conf->tls_protocols);
	conf->tls_protocols = p;
	free(conf->tls_ciphers);
	conf->tls_ciphers = ci;
	free(conf->senders_file);
	conf->senders_file = se;
	conf->senders_check_from = c.senders_check_from;
	conf->auth_timeout = c.auth_timeout;
	conf->auth_max_failures = c.auth_max_failures;
	conf->auth_delay_min = c.auth_delay_min;
	conf->auth_delay_max = c.auth_delay_max;
	conf->ban_failures = c.ban_failures;
	conf->ban_window = c.ban_window;
	conf->ban_time = c.ban_time;
	memcpy(&conf->relay_ss, &c.relay_ss, sizeof(conf->relay_ss));
	conf->relay_sslen = c.relay_sslen;
	memcpy(conf->relay_name, c.relay_name, sizeof(conf->relay_name));
	conf->queue_lifetime = c.queue_lifetime;
	conf->retry_min = c.retry_min;
	conf->retry_max = c.retry_max;
	conf->relay_timeout = c.relay_timeout;
	conf->relay_connections = c.relay_connections;
	conf->max_message_size = c.max_message_size;
	conf->max_recipients = c.max_recipients;
	conf->max_sessions = c.max_sessions;
	conf->max_sessions_per_addr = c.max_sessions_per_addr;
	conf->max_sessions_per_net = c.max_sessions_per_net;
	conf->timeout_handshake = c.timeout_handshake;
	conf->timeout_command = c.timeout_command;
	conf->timeout_data = c.timeout_data;
	return 0;
}

struct smsubmit_conf *
proc_conf_copy(const struct smsubmit_conf *conf)
{
	struct smsubmit_conf	*c;

	if ((c = malloc(sizeof(*c))) == NULL)
		return NULL;
	memcpy(c, conf, sizeof(*c));
	TAILQ_INIT(&c->listeners);
	TAILQ_INIT(&c->keypairs);
	c->tls_cert = c->tls_key = NULL;
	c->refs = 0;
	c->tls_protocols = strdup(conf->tls_protocols);
	c->tls_ciphers = strdup(conf->tls_ciphers);
	c->sasl_config = strdup(conf->sasl_config);
	c->queue_dir = strdup(conf->queue_dir);
	c->user = strdup(conf->user);
	c->queue_user = strdup(conf->queue_user);
	c->senders_file = conf->senders_file == NULL ? NULL :
	    strdup(conf->senders_file);
	if (c->tls_protocols == NULL || c->tls_ciphers == NULL ||
	    c->sasl_config == NULL || c->queue_dir == NULL ||
	    c->user == NULL || c->queue_user == NULL ||
	    (conf->senders_file != NULL && c->senders_file == NULL)) {
		conf_free(c);
		free(c);
		return NULL;
	}
	return c;
}

/*
 * Start a detached helper thread running fn(NULL), in a child before its
 * sandbox (the filter forbids making threads).  It begins with every
 * signal blocked but SIGSYS, with which the sandbox reports a forbidden
 * call in any thread, so that signals stay the event loop's.  The caller
 * still waits until the thread is idle before loading the filter: until
 * then it makes the calls that start a thread (rseq, set_robust_list...),
 * which the filter would kill it for.
 */
void
proc_thread(void *(*fn)(void *), const char *what)
{
	pthread_attr_t	 attr;
	pthread_t	 t;
	sigset_t	 all, old;
	int		 e;

	sigfillset(&all);
	sigdelset(&all, SIGSYS);
	if ((e = pthread_sigmask(SIG_SETMASK, &all, &old)) != 0 ||
	    (e = pthread_attr_init(&attr)) != 0 ||
	    (e = pthread_attr_setdetachstate(&attr,
	    PTHREAD_CREATE_DETACHED)) != 0 ||
	    (e = pthread_create(&t, &attr, fn, NULL)) != 0 ||
	    (e = pthread_sigmask(SIG_SETMASK, &old, NULL)) != 0) {
		errno = e;
		fatal("%s thread", what);
	}
	pthread_attr_destroy(&attr);
}
