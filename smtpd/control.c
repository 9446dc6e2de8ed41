/*
 * control.c: the queue's control socket.  The queue process listens on
 * "control" in the queue directory (so only root and the queue user can
 * reach it); `smsubmit -q` asks it for a listing, `smsubmit -Q` makes
 * it retry every message now, and `smsubmit -s` for the counters of the
 * listener and the queue: the listener's are asked for over its channel
 * (IMSG_STATS_REQUEST) and the answer is written when they come.  One
 * line in, text out, then close.  The text is made here, from what
 * queue.c shows of its messages (queue_first(), queue_next()), read only.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <errno.h>
#include <event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "smsubmit.h"

#define CONTROL_CMD_MAX	64
#define STATS_WAIT	5	/* seconds for the listener's counters */
#define STATS_PENDING	16	/* requests waiting for them at once */

/* A `smsubmit -s` waiting for the listener's counters. */
struct stats_req {
	int		 fd;		/* -1: a free slot */
	uint32_t	 id;
	int		 openmetrics;
	struct event	*timer;
};

static struct {
	struct event_base	*base;
	struct ipc		*listener;
	struct stats_req	 req[STATS_PENDING];
	uint32_t		 nextid;
} ctl;

static void
set_timeouts(int fd, int secs)
{
	struct timeval	 tv = { secs, 0 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static void
write_all(int fd, const char *p, size_t n)
{
	ssize_t	 w;

	while (n > 0) {
		if ((w = write(fd, p, n)) == -1) {
			if (errno == EINTR)
				continue;
			return;
		}
		p += w;
		n -= w;
	}
}

static void
stats_end(struct stats_req *r, const char *text, size_t len)
{
	write_all(r->fd, text, len);
	close(r->fd);
	r->fd = -1;
	evtimer_del(r->timer);
}

static void
stats_timeout_cb(int fd, short ev, void *arg)
{
	struct stats_req	*r = arg;
	const char		*msg = "error: the listener did not answer\n";

	log_warnx("control: no counters from the listener in %ds",
	    STATS_WAIT);
	stats_end(r, msg, strlen(msg));
}

static void
stats_start(int fd, int openmetrics)
{
	struct timeval	 tv = { STATS_WAIT, 0 };
	const char	*busy = "error: too many requests at once\n";
	int		 i;

	for (i = 0; i < STATS_PENDING; i++)
		if (ctl.req[i].fd == -1)
			break;
	if (i == STATS_PENDING) {
		write_all(fd, busy, strlen(busy));
		close(fd);
		return;
	}
	ctl.req[i].fd = fd;
	ctl.req[i].id = ++ctl.nextid;
	ctl.req[i].openmetrics = openmetrics;
	evtimer_add(ctl.req[i].timer, &tv);
	ipc_send(ctl.listener, IMSG_STATS_REQUEST, ctl.req[i].id, -1, "");
}

void
control_stats(struct ipc_msg *msg)
{
	struct smtp_stats	 s;
	struct queue_stats	 q;
	struct buf		 out;
	const uint8_t		*p;
	size_t			 len;
	int			 i;

	if (ipc_unpack(msg, "b", &p, &len) == -1 || len != sizeof(s))
		fatalx("bad STATS from listener");
	for (i = 0; i < STATS_PENDING; i++)
		if (ctl.req[i].fd != -1 && ctl.req[i].id == msg->peerid)
			break;
	if (i == STATS_PENDING)
		return;		/* it timed out meanwhile */
	memcpy(&s, p, sizeof(s));
	queue_stats(&q);
	buf_init(&out, 1024 * 1024);
	stats_format(&out, &s, &q, ctl.req[i].openmetrics);
	stats_end(&ctl.req[i], buf_head(&out), buf_used(&out));
	buf_free(&out);
}

/* "smsubmit -q": the queue as it is, what outsiders said escaped. */
static void
show(struct buf *out)
{
	const struct qmsg	*m;
	time_t			 now = time(NULL);
	char			 e1[LOG_ESCAPE_MAX(ADDR_MAX)];
	char			 e2[LOG_ESCAPE_MAX(256)];
	char			 next[32];
	int			 i, n = 0;

	for (m = queue_first(); m != NULL; m = queue_next(m)) {
		n++;
		if (m->inflight)
			strlcpy(next, "now (delivering)", sizeof(next));
		else
			snprintf(next, sizeof(next), "in %llds",
			    (long long)(m->next > now ? m->next - now : 0));
		buf_printf(out, "%s age=%llds from=<%s> user=%s attempts=%d "
		    "next=%s\n", m->id, (long long)(now - m->created),
		    log_escape(e1, sizeof(e1), m->from),
		    m->user[0] ? log_escape(e2, sizeof(e2), m->user) : "-",
		    m->attempts, next);
		for (i = 0; i < m->nrcpts; i++)
			buf_printf(out, "    %-8s <%s>%s%s\n",
			    envelope_rcpt_state_name(m->rcpts[i].state),
			    log_escape(e1, sizeof(e1), m->rcpts[i].addr),
			    m->rcpts[i].reply[0] ? " " : "",
			    log_escape(e2, sizeof(e2), m->rcpts[i].reply));
		if (m->error[0] != '\0')
			buf_printf(out, "    last error: %s\n",
			    log_escape(e1, sizeof(e1), m->error));
	}
	buf_printf(out, "%d message%s in the queue\n", n, n == 1 ? "" : "s");
}

static void
accept_cb(int lfd, short ev, void *arg)
{
	struct buf	 out;
	char		 cmd[CONTROL_CMD_MAX];
	ssize_t		 n;
	size_t		 have = 0;
	int		 fd;

	if ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) == -1)
		return;
	/* only root and the queue user reach the socket; still bounded */
	set_timeouts(fd, 2);
	while (have < sizeof(cmd) - 1 && memchr(cmd, '\n', have) == NULL) {
		if ((n = read(fd, cmd + have, sizeof(cmd) - 1 - have)) <= 0)
			break;
		have += n;
	}
	cmd[have] = '\0';
	cmd[strcspn(cmd, "\r\n")] = '\0';
	if (strcmp(cmd, "stats") == 0 || strcmp(cmd, "stats openmetrics") ==
	    0) {
		stats_start(fd, cmd[5] != '\0');
		return;
	}
	buf_init(&out, 64 * 1024 * 1024);
	if (strcmp(cmd, "list") == 0)
		show(&out);
	else if (strcmp(cmd, "flush") == 0) {
		n = queue_flush();
		log_info("control: retry of %zd messages forced", n);
		buf_printf(&out, "%zd message%s scheduled for delivery now\n",
		    n, n == 1 ? "" : "s");
	} else
		buf_printf(&out, "unknown command\n");
	write_all(fd, buf_head(&out), buf_used(&out));
	buf_free(&out);
	close(fd);
}

void
control_listen(struct event_base *base, struct ipc *listener)
{
	struct sockaddr_un	 sun;
	struct event		*ev;
	int			 fd, i;

	ctl.base = base;
	ctl.listener = listener;
	for (i = 0; i < STATS_PENDING; i++) {
		ctl.req[i].fd = -1;
		if ((ctl.req[i].timer = evtimer_new(base, stats_timeout_cb,
		    &ctl.req[i])) == NULL)
			fatalx("evtimer_new");
	}

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strlcpy(sun.sun_path, CONTROL_SOCKET, sizeof(sun.sun_path));
	if (unlink(CONTROL_SOCKET) == -1 && errno != ENOENT)
		fatal("unlink %s", CONTROL_SOCKET);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1)
		fatal("control socket");
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1)
		fatal("bind control socket");
	if (listen(fd, 8) == -1)
		fatal("listen control socket");
	ev = event_new(base, fd, EV_READ | EV_PERSIST, accept_cb, NULL);
	if (ev == NULL || event_add(ev, NULL) == -1)
		fatalx("control event");
}

int
control_client(struct smsubmit_conf *conf, const char *command)
{
	struct sockaddr_un	 sun;
	char			 buf[8192];
	ssize_t			 n;
	int			 fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if ((size_t)snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/%s",
	    conf->queue_dir, CONTROL_SOCKET) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "smsubmit: queue path too long for a "
		    "socket\n");
		return 1;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		fprintf(stderr, "smsubmit: cannot reach the queue at %s: %s "
		    "(is smsubmit running?)\n", sun.sun_path,
		    strerror(errno));
		return 1;
	}
	set_timeouts(fd, 30);
	write_all(fd, command, strlen(command));
	write_all(fd, "\n", 1);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, n, stdout);
	close(fd);
	if (n == -1) {
		fprintf(stderr, "smsubmit: reading from the queue: %s\n",
		    strerror(errno));
		return 1;
	}
	return 0;
}
