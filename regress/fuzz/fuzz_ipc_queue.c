/*
 * fuzz_ipc_queue.c: the [queue] process (smtpd/queue.c, compiled in
 * whole) as fuzz_ipc.c drives it, through its own listener_dispatch().
 */
#include "../../smtpd/queue.c"

#include "fuzz.h"
#include "fuzz_ipc.h"

/* what the relay is busy with for ever: schedule() hands it nothing */
static struct qmsg	 relay_busy;

void
fuzzq_init(struct smsubmit_conf *conf, struct event_base *base)
{
	env.conf = conf;
	bounds_raise();
	SPLAY_INIT(&env.incoming);
	TAILQ_INIT(&env.queue);
	if ((env.dirfd = open("queue", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) ==
	    -1)
		fatal("open queue directory");
	recover();
	env.base = base;
	if ((env.timer = evtimer_new(base, timer_cb, NULL)) == NULL)
		fatalx("evtimer_new");
	userlimit_init(base, conf);
	/* the control socket's requests would go to a channel of its own */
	control_listen(base, ipc_open(-1, "listener (control)"));
	/* relay.c would connect to the relay host */
	env.busy = &relay_busy;
}

void
fuzzq_listener(struct ipc *ipc)
{
	env.listener = ipc;
}

void
fuzzq_dispatch(struct ipc *ipc, struct ipc_msg *msg)
{
	listener_dispatch(ipc, msg, NULL);
}

static int
dir_empty(const char *dir, int sweep)
{
	DIR		*d;
	struct dirent	*de;
	char		 path[PATH_MAX];
	int		 n = 0;

	if ((d = opendir(dir)) == NULL)
		abort();
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		n++;
		if (sweep) {
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			unlink(path);
		} else
			dprintf(2, "left behind: %s/%s\n", dir, de->d_name);
	}
	closedir(d);
	return n == 0;
}

void
fuzzq_reset(int clean)
{
	struct incoming	*in;
	struct qmsg	*m;

	/* as the listener's sessions ending would: every open one dropped */
	while ((in = SPLAY_MIN(incomingtree, &env.incoming)) != NULL)
		incoming_drop(in);
	CHECK(env.nincoming == 0);
	/* as the relay would: every committed one delivered */
	while ((m = TAILQ_FIRST(&env.queue)) != NULL)
		message_remove(m);
	/* nothing left behind, by any request that was answered */
	if (clean) {
		CHECK(dir_empty("tmp", 0));
		CHECK(dir_empty("queue", 0));
	} else {
		dir_empty("tmp", 1);
		dir_empty("queue", 1);
	}
}

int
fuzzq_committed(void)
{
	struct qmsg	*m;
	int		 n = 0;

	TAILQ_FOREACH(m, &env.queue, entry)
		n++;
	return n;
}

int
fuzzq_open(void)
{
	return env.nincoming;
}
