/*
 * ipc.c: framed messages between smsubmit's processes, driven by libevent.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <errno.h>
#include <event.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ipc.h"
#include "log.h"

struct ipc_out {
	TAILQ_ENTRY(ipc_out)	 entry;
	struct buf		 data;
	size_t			 sent;
	int			 fd;
};

static void	ipc_read_cb(int, short, void *);
static void	ipc_write_cb(int, short, void *);

int
ipc_decode(const uint8_t *data, size_t len, struct ipc_hdr *hdr)
{
	if (len < IPC_HDR_LEN)
		return 0;
	memcpy(hdr, data, sizeof(*hdr));
	if (hdr->len > IPC_MAX_PAYLOAD || (hdr->flags & ~IPC_F_FD) != 0)
		return -1;
	if (len - IPC_HDR_LEN < hdr->len)
		return 0;
	return 1;
}

int
ipc_unpack(const struct ipc_msg *msg, const char *fmt, ...)
{
	va_list		 ap;
	const uint8_t	*p = msg->data, *end = msg->data + msg->len, *nul;
	uint32_t	 n;
	int		 r = -1;

	va_start(ap, fmt);
	for (; *fmt != '\0'; fmt++) {
		switch (*fmt) {
		case 'u':
			if ((size_t)(end - p) < sizeof(uint32_t))
				goto out;
			memcpy(va_arg(ap, uint32_t *), p, sizeof(uint32_t));
			p += sizeof(uint32_t);
			break;
		case 's':
			if ((nul = memchr(p, '\0', end - p)) == NULL)
				goto out;
			*va_arg(ap, const char **) = (const char *)p;
			p = nul + 1;
			break;
		case 'b':
			if ((size_t)(end - p) < sizeof(uint32_t))
				goto out;
			memcpy(&n, p, sizeof(n));
			p += sizeof(n);
			if ((size_t)(end - p) < n)
				goto out;
			*va_arg(ap, const uint8_t **) = p;
			*va_arg(ap, size_t *) = n;
			p += n;
			break;
		default:
			fatalx("%s: bad format '%c'", __func__, *fmt);
		}
	}
	if (p == end)
		r = 0;
 out:
	va_end(ap);
	return r;
}

struct ipc *
ipc_open(int fd, const char *name)
{
	struct ipc	*ipc;

	if ((ipc = calloc(1, sizeof(*ipc))) == NULL)
		fatal("%s", __func__);
	ipc->name = name;
	ipc->fd = fd;
	buf_init(&ipc->rbuf, IPC_HDR_LEN + IPC_MAX_PAYLOAD + 65536);
	TAILQ_INIT(&ipc->outq);
	return ipc;
}

void
ipc_attach(struct ipc *ipc, struct event_base *base,
    void (*dispatch)(struct ipc *, struct ipc_msg *, void *), void *arg)
{
	ipc_consume(ipc);
	ipc->dispatch = dispatch;
	ipc->arg = arg;
	ipc->rev = event_new(base, ipc->fd, EV_READ | EV_PERSIST, ipc_read_cb,
	    ipc);
	ipc->wev = event_new(base, ipc->fd, EV_WRITE, ipc_write_cb, ipc);
	if (ipc->rev == NULL || ipc->wev == NULL)
		fatalx("%s: event_new", __func__);
	event_add(ipc->rev, NULL);
	if (!TAILQ_EMPTY(&ipc->outq))
		event_add(ipc->wev, NULL);
	/* frames read before the attach are dispatched at the first event */
	if (buf_used(&ipc->rbuf) > 0)
		event_active(ipc->rev, EV_TIMEOUT, 0);
}

struct ipc *
ipc_new(struct event_base *base, int fd, const char *name,
    void (*dispatch)(struct ipc *, struct ipc_msg *, void *), void *arg)
{
	struct ipc	*ipc;

	ipc = ipc_open(fd, name);
	ipc_attach(ipc, base, dispatch, arg);
	return ipc;
}

void
ipc_free(struct ipc *ipc)
{
	struct ipc_out	*o;
	int		 i;

	while ((o = TAILQ_FIRST(&ipc->outq)) != NULL) {
		TAILQ_REMOVE(&ipc->outq, o, entry);
		if (o->fd != -1)
			close(o->fd);
		buf_freezero(&o->data);
		free(o);
	}
	for (i = 0; i < ipc->nrfds; i++)
		close(ipc->rfds[i]);
	if (ipc->rev != NULL)
		event_free(ipc->rev);
	if (ipc->wev != NULL)
		event_free(ipc->wev);
	buf_freezero(&ipc->rbuf);
	close(ipc->fd);
	free(ipc);
}

void
ipc_send(struct ipc *ipc, uint32_t type, uint32_t peerid, int fd,
    const char *fmt, ...)
{
	struct ipc_out	*o;
	struct ipc_hdr	*hdr;
	va_list		 ap;
	const char	*s;
	const void	*b;
	uint32_t	 u;
	size_t		 n;
	struct ipc_hdr	 h;

	if ((o = calloc(1, sizeof(*o))) == NULL)
		fatal("%s", __func__);
	buf_init(&o->data, IPC_HDR_LEN + IPC_MAX_PAYLOAD);
	o->fd = fd;
	memset(&h, 0, sizeof(h));
	if (buf_add(&o->data, &h, sizeof(h)) == -1)
		fatal("%s", __func__);
	va_start(ap, fmt);
	for (; *fmt != '\0'; fmt++) {
		switch (*fmt) {
		case 'u':
			u = va_arg(ap, uint32_t);
			if (buf_add(&o->data, &u, sizeof(u)) == -1)
				goto toobig;
			break;
		case 's':
			s = va_arg(ap, const char *);
			if (buf_add(&o->data, s, strlen(s) + 1) == -1)
				goto toobig;
			break;
		case 'b':
			b = va_arg(ap, const void *);
			n = va_arg(ap, size_t);
			u = n;
			if (n > IPC_MAX_PAYLOAD ||
			    buf_add(&o->data, &u, sizeof(u)) == -1 ||
			    buf_add(&o->data, b, n) == -1)
				goto toobig;
			break;
		default:
			fatalx("%s: bad format '%c'", __func__, *fmt);
		}
	}
	va_end(ap);
	hdr = (struct ipc_hdr *)buf_head(&o->data);
	hdr->type = type;
	hdr->len = buf_used(&o->data) - IPC_HDR_LEN;
	hdr->peerid = peerid;
	hdr->flags = fd != -1 ? IPC_F_FD : 0;
	TAILQ_INSERT_TAIL(&ipc->outq, o, entry);
	if (ipc->wev != NULL)
		event_add(ipc->wev, NULL);
	return;
 toobig:
	fatalx("%s: message %u to %s too large", __func__, type, ipc->name);
}

/* Returns 1 when everything is written, 0 when the socket is full. */
static int
ipc_write(struct ipc *ipc)
{
	struct ipc_out	*o;
	struct msghdr	 mh;
	struct iovec	 iov;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cmsgbuf;
	struct cmsghdr	*cmsg;
	ssize_t		 n;

	while ((o = TAILQ_FIRST(&ipc->outq)) != NULL) {
		memset(&mh, 0, sizeof(mh));
		iov.iov_base = buf_head(&o->data) + o->sent;
		iov.iov_len = buf_used(&o->data) - o->sent;
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		if (o->fd != -1 && o->sent == 0) {
			memset(&cmsgbuf, 0, sizeof(cmsgbuf));
			mh.msg_control = cmsgbuf.buf;
			mh.msg_controllen = sizeof(cmsgbuf.buf);
			cmsg = CMSG_FIRSTHDR(&mh);
			cmsg->cmsg_len = CMSG_LEN(sizeof(int));
			cmsg->cmsg_level = SOL_SOCKET;
			cmsg->cmsg_type = SCM_RIGHTS;
			memcpy(CMSG_DATA(cmsg), &o->fd, sizeof(int));
		}
		if ((n = sendmsg(ipc->fd, &mh, MSG_NOSIGNAL)) == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == ENOBUFS)
				return 0;
			fatal("%s: send to %s", __func__, ipc->name);
		}
		o->sent += n;
		if (o->sent < buf_used(&o->data))
			continue;
		TAILQ_REMOVE(&ipc->outq, o, entry);
		if (o->fd != -1)
			close(o->fd);
		buf_freezero(&o->data);
		free(o);
	}
	return 1;
}

static void
ipc_write_cb(int fd, short ev, void *arg)
{
	struct ipc	*ipc = arg;

	(void)fd;
	(void)ev;
	if (!ipc_write(ipc))
		event_add(ipc->wev, NULL);
}

void
ipc_flush(struct ipc *ipc)
{
	struct pollfd	 pfd;

	while (!ipc_write(ipc)) {
		pfd.fd = ipc->fd;
		pfd.events = POLLOUT;
		if (poll(&pfd, 1, 1000) == -1 && errno != EINTR)
			return;
	}
}

/*
 * One recvmsg(2) into the read buffer, descriptors included.  Returns
 * the bytes read, 0 at EOF, -1 if the socket has nothing now.
 */
static ssize_t
ipc_fill(struct ipc *ipc)
{
	struct msghdr	 mh;
	struct iovec	 iov;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int) * 4)];
	} cmsgbuf;
	struct cmsghdr	*cmsg;
	char		*p;
	ssize_t		 n;
	size_t		 i, nfd;
	int		 rfd;

	if ((p = buf_reserve(&ipc->rbuf, 65536)) == NULL)
		fatalx("%s: input from %s overflows", __func__, ipc->name);
	memset(&mh, 0, sizeof(mh));
	iov.iov_base = p;
	iov.iov_len = 65536;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cmsgbuf.buf;
	mh.msg_controllen = sizeof(cmsgbuf.buf);
	if ((n = recvmsg(ipc->fd, &mh, MSG_CMSG_CLOEXEC)) == -1) {
		if (errno == EINTR || errno == EAGAIN)
			return -1;
		fatal("%s: read from %s", __func__, ipc->name);
	}
	if (mh.msg_flags & MSG_CTRUNC)
		fatalx("%s: descriptors from %s truncated", __func__,
		    ipc->name);
	for (cmsg = CMSG_FIRSTHDR(&mh); cmsg != NULL;
	    cmsg = CMSG_NXTHDR(&mh, cmsg)) {
		if (cmsg->cmsg_level != SOL_SOCKET ||
		    cmsg->cmsg_type != SCM_RIGHTS)
			continue;
		nfd = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < nfd; i++) {
			memcpy(&rfd, CMSG_DATA(cmsg) + i * sizeof(int),
			    sizeof(int));
			if (ipc->nrfds == IPC_MAX_FDS)
				fatalx("%s: too many descriptors from %s",
				    __func__, ipc->name);
			ipc->rfds[ipc->nrfds++] = rfd;
		}
	}
	buf_commit(&ipc->rbuf, n);
	return n;
}

/* The next whole frame in the read buffer: 1 and msg, or 0. */
static int
ipc_next(struct ipc *ipc, struct ipc_msg *msg)
{
	struct ipc_hdr	 hdr;
	int		 r;

	r = ipc_decode((uint8_t *)buf_head(&ipc->rbuf), buf_used(&ipc->rbuf),
	    &hdr);
	if (r == 0)
		return 0;
	if (r == -1)
		fatalx("%s: malformed frame from %s", __func__, ipc->name);
	msg->type = hdr.type;
	msg->peerid = hdr.peerid;
	msg->fd = -1;
	if (hdr.flags & IPC_F_FD) {
		if (ipc->nrfds == 0)
			fatalx("%s: descriptor missing from %s", __func__,
			    ipc->name);
		msg->fd = ipc->rfds[0];
		memmove(ipc->rfds, ipc->rfds + 1, --ipc->nrfds * sizeof(int));
	}
	msg->data = (uint8_t *)buf_head(&ipc->rbuf) + IPC_HDR_LEN;
	msg->len = hdr.len;
	ipc->consume = IPC_HDR_LEN + hdr.len;
	return 1;
}

void
ipc_consume(struct ipc *ipc)
{
	buf_drain(&ipc->rbuf, ipc->consume);
	ipc->consume = 0;
}

static void
ipc_read_cb(int fd, short ev, void *arg)
{
	struct ipc	*ipc = arg;
	struct ipc_msg	 msg;

	(void)fd;
	/* an activation by ipc_attach() reads nothing new */
	if ((ev & EV_READ) && ipc_fill(ipc) == 0) {
		event_del(ipc->rev);
		ipc->dispatch(ipc, NULL, ipc->arg);
		return;
	}
	while (ipc_next(ipc, &msg)) {
		ipc->dispatch(ipc, &msg, ipc->arg);
		ipc_consume(ipc);
	}
}

int
ipc_read_sync(struct ipc *ipc, struct ipc_msg *msg, int timeout_ms)
{
	struct pollfd	 pfd;
	int		 r;

	ipc_consume(ipc);
	for (;;) {
		if (ipc_next(ipc, msg))
			return 1;
		pfd.fd = ipc->fd;
		pfd.events = POLLIN;
		if ((r = poll(&pfd, 1, timeout_ms)) == -1) {
			if (errno == EINTR)
				continue;
			fatal("%s: poll", __func__);
		}
		if (r == 0)
			return -1;
		if (ipc_fill(ipc) == 0)
			return 0;
	}
}
