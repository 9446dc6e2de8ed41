/*
 * fuzz_ipc_queue.c: the [queue] process (smtpd/queue.c, compiled in
 * whole) as fuzz_ipc.c drives it, through its own listener_dispatch().
 */
#include "../../smtpd/queue.c"

#include "fuzz.h"
#include "fuzz_ipc.h"

static int	 relay_ready;

void
fuzzq_init(struct smsubmit_conf *conf, struct event_base *base)
{
	env.conf = conf;
	bounds_raise();
	SPLAY_INIT(&env.incoming);
	TAILQ_INIT(&env.queue);
	TAILQ_INIT(&env.batch);
	TAILQ_INIT(&env.syncing.list);
	if ((env.dirfd = open("queue", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) ==
	    -1)
		fatal("open queue directory");
	recover();
	env.base = base;
	if ((env.timer = evtimer_new(base, timer_cb, NULL)) == NULL ||
	    (env.batch_ev = event_new(base, -1, 0, batch_cb, NULL)) == NULL ||
	    (env.settle_ev = evtimer_new(base, settle_cb, NULL)) == NULL)
		fatalx("evtimer_new");
	userlimit_init(base, conf);
	/* the control socket's requests would go to a channel of its own */
	control_listen(base, ipc_open(-1, "listener (control)"));
	/*
	 * relay.c would connect to the relay host: a pool of no
	 * connections has no room, so schedule() hands it nothing
	 */
	conf->relay_connections = 0;
	if (!relay_ready) {
		relay_init(base, conf, relay_done, relay_back);
		relay_ready = 1;
	}
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

int
fuzzq_batch(void)
{
	int		 n = 0;
	struct incoming	*in;

	/* as the event loop would after the read that brought them */
	TAILQ_FOREACH(in, &env.batch, batch)
		n++;
	if (n > 0) {
		event_del(env.batch_ev);
		batch_cb(-1, EV_TIMEOUT, NULL);
	}
	CHECK(TAILQ_EMPTY(&env.batch));
	return n;
}

/*
 * Nothing in dir but spares, and those empty (spare.c: a delivered
 * message is not kept under another name); with sweep, what else there
 * is goes.
 */
static int
dir_empty(const char *dir, int sweep)
{
	DIR		*d;
	struct dirent	*de;
	struct stat	 st;
	char		 path[PATH_MAX];
	int		 n = 0;

	if ((d = opendir(dir)) == NULL)
		abort();
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (strncmp(de->d_name, "spare-", 6) == 0) {
			/* spare.c's, kept even after a fatal() */
			if (!sweep)
				CHECK(stat(path, &st) == 0 &&
				    st.st_size == 0);
			continue;
		}
		n++;
		if (sweep)
			unlink(path);
		else
			dprintf(2, "left behind: %s\n", path);
	}
	closedir(d);
	return n == 0;
}

void
fuzzq_reset(int clean)
{
	struct incoming	*in;
	struct qmsg	*m;

	/* the commits of the last read are done before anything else */
	if (!TAILQ_EMPTY(&env.batch)) {
		event_del(env.batch_ev);
		batch_cb(-1, EV_TIMEOUT, NULL);
	}
	/* as the listener's sessions ending would: every open one dropped */
	while ((in = SPLAY_MIN(incomingtree, &env.incoming)) != NULL)
		incoming_drop(in);
	CHECK(env.nincoming == 0);
	/* as the relay would: every committed one delivered (its files
	 * become spares, in tmp/), and queue/ synced */
	while ((m = TAILQ_FIRST(&env.queue)) != NULL)
		message_remove(m);
	evtimer_del(env.settle_ev);
	settle_cb(-1, EV_TIMEOUT, NULL);
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
