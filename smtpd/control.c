/*
 * control.c: the queue's control socket.  The queue process listens on
 * "control" in the queue directory (so only root and the queue user can
 * reach it); `smsubmit -q` asks it for a listing and `smsubmit -Q` makes
 * it retry every message now.  One line in, text out, then close.
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
	buf_init(&out, 64 * 1024 * 1024);
	if (strcmp(cmd, "list") == 0)
		queue_show(&out);
	else if (strcmp(cmd, "flush") == 0)
		queue_flush(&out);
	else
		buf_printf(&out, "unknown command\n");
	write_all(fd, buf_head(&out), buf_used(&out));
	buf_free(&out);
	close(fd);
}

void
control_listen(struct event_base *base)
{
	struct sockaddr_un	 sun;
	struct event		*ev;
	int			 fd;

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
