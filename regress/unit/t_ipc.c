/*
 * t_ipc.c: unit tests for common/ipc.c: frame decoding, payload
 * unpacking, and real exchanges over a socketpair with libevent,
 * descriptor passing included.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include <errno.h>
#include <event.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ipc.h"
#include "log.h"
#include "tap.h"

#define NMSG	16
#define BIG	200000

static size_t
frame(uint8_t *p, uint32_t type, uint32_t len, uint32_t peerid,
    uint32_t flags)
{
	struct ipc_hdr	 h;

	h.type = type;
	h.len = len;
	h.peerid = peerid;
	h.flags = flags;
	memcpy(p, &h, sizeof(h));
	return sizeof(h);
}

static void
test_decode(void)
{
	uint8_t		 buf[64];
	struct ipc_hdr	 h;
	size_t		 i, bad = 0;

	ok(sizeof(struct ipc_hdr) == IPC_HDR_LEN, "the header is 16 bytes");
	memset(buf, 0xa5, sizeof(buf));
	frame(buf, 7, 10, 3, 0);
	for (i = 0; i < IPC_HDR_LEN; i++)
		if (ipc_decode(buf, i, &h) != 0)
			bad++;
	ok(bad == 0, "truncated headers (0..15 bytes) need more (%zu not)",
	    bad);
	for (i = IPC_HDR_LEN, bad = 0; i < IPC_HDR_LEN + 10; i++)
		if (ipc_decode(buf, i, &h) != 0)
			bad++;
	ok(bad == 0, "truncated payloads need more (%zu not)", bad);
	memset(&h, 0, sizeof(h));
	ok(ipc_decode(buf, IPC_HDR_LEN + 10, &h) == 1 && h.type == 7 &&
	    h.len == 10 && h.peerid == 3 && h.flags == 0,
	    "an exact frame decodes, header filled in");
	ok(ipc_decode(buf, sizeof(buf), &h) == 1 && h.len == 10,
	    "bytes after the frame do not matter");

	frame(buf, 1, 0, 0, 0);
	ok(ipc_decode(buf, IPC_HDR_LEN, &h) == 1 && h.len == 0,
	    "an empty payload is a whole frame");
	frame(buf, 1, 0, 0, IPC_F_FD);
	ok(ipc_decode(buf, IPC_HDR_LEN, &h) == 1 && h.flags == IPC_F_FD,
	    "IPC_F_FD is a known flag");

	frame(buf, 1, IPC_MAX_PAYLOAD + 1, 0, 0);
	ok(ipc_decode(buf, IPC_HDR_LEN, &h) == -1,
	    "payload length IPC_MAX_PAYLOAD + 1 is malformed");
	frame(buf, 1, UINT32_MAX, 0, 0);
	ok(ipc_decode(buf, IPC_HDR_LEN, &h) == -1,
	    "payload length UINT32_MAX is malformed");
	frame(buf, 1, IPC_MAX_PAYLOAD, 0, 0);
	ok(ipc_decode(buf, IPC_HDR_LEN, &h) == 0,
	    "payload length IPC_MAX_PAYLOAD just needs more bytes");

	frame(buf, 1, 0, 0, 0x02);
	ok(ipc_decode(buf, IPC_HDR_LEN, &h) == -1, "flag 0x2 is malformed");
	frame(buf, 1, 0, 0, 0x80000000);
	ok(ipc_decode(buf, IPC_HDR_LEN, &h) == -1,
	    "flag 0x80000000 is malformed");
	frame(buf, 1, 0, 0, IPC_F_FD | 0x100);
	ok(ipc_decode(buf, IPC_HDR_LEN, &h) == -1,
	    "IPC_F_FD with an unknown flag is malformed");
	frame(buf, 1, 4, 0, 0x02);
	ok(ipc_decode(buf, IPC_HDR_LEN + 2, &h) == -1,
	    "a bad header is refused before its payload arrives");

	/* a frame at an odd address, as in a drained read buffer */
	frame(buf + 1, 9, 2, 5, 0);
	ok(ipc_decode(buf + 1, IPC_HDR_LEN + 2, &h) == 1 && h.type == 9 &&
	    h.peerid == 5, "a frame at an unaligned address decodes");
}

static struct ipc_msg
mkmsg(const void *data, size_t len)
{
	struct ipc_msg	 m;

	memset(&m, 0, sizeof(m));
	m.type = 1;
	m.fd = -1;
	m.data = data;
	m.len = len;
	return m;
}

static void
test_unpack(void)
{
	uint8_t		 p[64];
	struct ipc_msg	 m;
	const char	*s1, *s2;
	const uint8_t	*b;
	size_t		 bl;
	uint32_t	 u, v;

	u = 0xdeadbeef;
	memcpy(p, &u, 4);
	m = mkmsg(p, 4);
	v = 0;
	ok(ipc_unpack(&m, "u", &v) == 0 && v == 0xdeadbeef, "\"u\" unpacks");
	m = mkmsg(p, 3);
	ok(ipc_unpack(&m, "u", &v) == -1, "\"u\" with 3 bytes refused");
	m = mkmsg(p, 5);
	ok(ipc_unpack(&m, "u", &v) == -1, "\"u\" with 5 bytes refused");
	m = mkmsg(p, 0);
	ok(ipc_unpack(&m, "u", &v) == -1, "\"u\" with 0 bytes refused");

	m = mkmsg("abc", 4);
	s1 = NULL;
	ok(ipc_unpack(&m, "s", &s1) == 0 && s1 != NULL &&
	    strcmp(s1, "abc") == 0, "\"s\" unpacks");
	m = mkmsg("", 1);
	ok(ipc_unpack(&m, "s", &s1) == 0 && strcmp(s1, "") == 0,
	    "\"s\" unpacks an empty string");
	m = mkmsg("abc", 3);
	ok(ipc_unpack(&m, "s", &s1) == -1, "\"s\" without its NUL refused");
	m = mkmsg("abc\0x", 5);
	ok(ipc_unpack(&m, "s", &s1) == -1, "\"s\" with trailing bytes refused");
	m = mkmsg("a\0b", 4);
	ok(ipc_unpack(&m, "s", &s1) == -1,
	    "\"s\" with an embedded NUL refused");
	m = mkmsg("a", 2);
	ok(ipc_unpack(&m, "ss", &s1, &s2) == -1, "\"ss\" with one refused");

	u = 3;
	memcpy(p, &u, 4);
	memcpy(p + 4, "xyz", 3);
	m = mkmsg(p, 7);
	b = NULL;
	bl = 0;
	ok(ipc_unpack(&m, "b", &b, &bl) == 0 && bl == 3 && b == p + 4,
	    "\"b\" unpacks");
	m = mkmsg(p, 6);
	ok(ipc_unpack(&m, "b", &b, &bl) == -1, "\"b\" one byte short refused");
	m = mkmsg(p, 8);
	ok(ipc_unpack(&m, "b", &b, &bl) == -1, "\"b\" one byte over refused");
	m = mkmsg(p, 2);
	ok(ipc_unpack(&m, "b", &b, &bl) == -1, "\"b\" with a short length "
	    "refused");
	u = UINT32_MAX;
	memcpy(p, &u, 4);
	m = mkmsg(p, 7);
	ok(ipc_unpack(&m, "b", &b, &bl) == -1,
	    "\"b\" with length UINT32_MAX refused");
	u = 0;
	memcpy(p, &u, 4);
	m = mkmsg(p, 4);
	ok(ipc_unpack(&m, "b", &b, &bl) == 0 && bl == 0,
	    "\"b\" of zero bytes unpacks");

	memcpy(p, "hello\0", 6);
	u = 42;
	memcpy(p + 6, &u, 4);
	memcpy(p + 10, "world\0", 6);
	m = mkmsg(p, 16);
	s1 = s2 = NULL;
	v = 0;
	ok(ipc_unpack(&m, "sus", &s1, &v, &s2) == 0 && s1 != NULL &&
	    s2 != NULL && strcmp(s1, "hello") == 0 && v == 42 &&
	    strcmp(s2, "world") == 0, "\"sus\" unpacks");
	m = mkmsg(p, 15);
	ok(ipc_unpack(&m, "sus", &s1, &v, &s2) == -1,
	    "\"sus\" missing the last NUL refused");
	p[16] = 'x';
	m = mkmsg(p, 17);
	ok(ipc_unpack(&m, "sus", &s1, &v, &s2) == -1,
	    "\"sus\" with a trailing byte refused");
	m = mkmsg(p, 9);
	ok(ipc_unpack(&m, "sus", &s1, &v, &s2) == -1,
	    "\"sus\" with a short u32 refused");
	m = mkmsg(p, 16);
	ok(ipc_unpack(&m, "s", &s1) == -1,
	    "\"s\" on a \"sus\" payload refused");
	ok(ipc_unpack(&m, "su", &s1, &v) == -1,
	    "\"su\" on a \"sus\" payload refused");

	m = mkmsg(p, 0);
	ok(ipc_unpack(&m, "") == 0, "\"\" matches an empty payload");
	m = mkmsg(p, 1);
	ok(ipc_unpack(&m, "") == -1, "\"\" refuses a 1-byte payload");
}

/* One end of a live channel, and what it received. */
struct side {
	struct event_base *base;
	int		*pending;	/* messages still expected, both ends */
	int		 n;
	int		 closed;	/* dispatch(NULL) calls */
	int		 n_at_close;
	int		 exit_on_close;
	uint32_t	 type[NMSG];
	uint32_t	 peerid[NMSG];
	int		 fd[NMSG];
	uint8_t		*data[NMSG];
	size_t		 len[NMSG];
};

static void
side_dispatch(struct ipc *ipc, struct ipc_msg *msg, void *arg)
{
	struct side	*s = arg;

	if (msg == NULL) {
		if (s->closed++ == 0)
			s->n_at_close = s->n;
		if (s->exit_on_close)
			event_base_loopexit(s->base, NULL);
		return;
	}
	if (s->n < NMSG) {
		s->type[s->n] = msg->type;
		s->peerid[s->n] = msg->peerid;
		s->fd[s->n] = msg->fd;
		s->len[s->n] = msg->len;
		if ((s->data[s->n] = malloc(msg->len + 1)) == NULL)
			abort();
		memcpy(s->data[s->n], msg->data, msg->len);
	} else if (msg->fd != -1)
		close(msg->fd);
	s->n++;
	if (--*s->pending == 0)
		event_base_loopexit(s->base, NULL);
}

static void
side_free(struct side *s)
{
	int	 i;

	for (i = 0; i < s->n && i < NMSG; i++) {
		free(s->data[i]);
		if (s->fd[i] != -1)
			close(s->fd[i]);
	}
}

static void
timeout_cb(int fd, short ev, void *arg)
{
	int	*expired = arg;

	*expired = 1;
}

/* Run the loop for at most ms milliseconds; 1 if it ended by itself. */
static int
run_loop(struct event_base *base, int ms)
{
	struct event	*t;
	struct timeval	 tv;
	int		 expired = 0;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	if ((t = evtimer_new(base, timeout_cb, &expired)) == NULL)
		abort();
	evtimer_add(t, &tv);
	while (!expired)
		if (event_base_loop(base, EVLOOP_ONCE) != 0 ||
		    event_base_got_exit(base))
			break;
	event_free(t);
	return !expired;
}

static struct ipc_msg
got(const struct side *s, int i)
{
	return mkmsg(s->data[i], s->len[i]);
}

static void
test_live(void)
{
	struct event_base *base;
	struct ipc	*a, *b;
	struct side	 sa, sb;
	struct stat	 st, tst;
	struct ipc_msg	 m;
	char		 path[] = "/tmp/t_ipc.XXXXXX", rd[16];
	const char	*s1, *s2;
	const uint8_t	*bp;
	uint8_t		*big;
	size_t		 bl, i;
	uint32_t	 u;
	int		 sv[2], p[2], tfd, pending, ended;

	if ((big = malloc(BIG)) == NULL)
		abort();
	for (i = 0; i < BIG; i++)
		big[i] = i * 7 + (i >> 9);

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
	    sv) == -1 || pipe2(p, O_CLOEXEC) == -1 ||
	    (tfd = mkstemp(path)) == -1 || (base = event_base_new()) == NULL)
		abort();
	unlink(path);
	if (write(tfd, "content", 7) != 7 || fstat(tfd, &tst) == -1 ||
	    fcntl(p[0], F_SETFL, O_NONBLOCK) == -1)
		abort();

	memset(&sa, 0, sizeof(sa));
	memset(&sb, 0, sizeof(sb));
	sa.base = sb.base = base;
	sa.pending = sb.pending = &pending;
	a = ipc_new(base, sv[0], "a", side_dispatch, &sa);
	b = ipc_new(base, sv[1], "b", side_dispatch, &sb);

	/* b receives six, a one */
	pending = 7;
	ipc_send(a, 1, 7, -1, "sus", "hello", (uint32_t)42, "world");
	ipc_send(a, 4, 10, -1, "b", (const void *)big, (size_t)BIG);
	ipc_send(a, 2, 8, tfd, "s", "file");
	ipc_send(a, 4, 11, -1, "b", (const void *)big, (size_t)BIG);
	ipc_send(a, 3, 9, p[1], "u", (uint32_t)5);
	ipc_send(a, 5, UINT32_MAX, -1, "");
	ipc_send(b, 6, 1, -1, "s", "back");
	ended = run_loop(base, 10000);
	ok(ended && pending == 0, "all messages arrive (%d missing)",
	    pending);
	ok(sb.n == 6 && sa.n == 1, "each end got its messages (%d, %d)",
	    sb.n, sa.n);
	if (sb.n < 6 || sa.n < 1) {
		ok(0, "cannot go on without the messages");
		goto done;
	}

	ok(sb.type[0] == 1 && sb.peerid[0] == 7 && sb.fd[0] == -1,
	    "message 1: type, peer id, no descriptor");
	m = got(&sb, 0);
	s1 = s2 = NULL;
	u = 0;
	ok(ipc_unpack(&m, "sus", &s1, &u, &s2) == 0 &&
	    strcmp(s1, "hello") == 0 && u == 42 && strcmp(s2, "world") == 0,
	    "message 1: \"sus\" payload intact");

	ok(sb.type[1] == 4 && sb.peerid[1] == 10 && sb.fd[1] == -1,
	    "message 2 (large): type, peer id, no descriptor");
	m = got(&sb, 1);
	ok(ipc_unpack(&m, "b", &bp, &bl) == 0 && bl == BIG &&
	    memcmp(bp, big, BIG) == 0, "message 2: %d bytes intact", BIG);

	ok(sb.type[2] == 2 && sb.peerid[2] == 8 && sb.fd[2] != -1,
	    "message 3: type, peer id, a descriptor");
	ok(sb.fd[2] != -1 && fstat(sb.fd[2], &st) == 0 &&
	    st.st_ino == tst.st_ino && st.st_dev == tst.st_dev,
	    "message 3: the descriptor is the temporary file");
	ok(sb.fd[2] != -1 && pread(sb.fd[2], rd, 7, 0) == 7 &&
	    memcmp(rd, "content", 7) == 0, "message 3: and reads its content");
	m = got(&sb, 2);
	ok(ipc_unpack(&m, "s", &s1) == 0 && strcmp(s1, "file") == 0,
	    "message 3: payload intact");

	ok(sb.type[3] == 4 && sb.peerid[3] == 11 && sb.fd[3] == -1,
	    "message 4 (large): no descriptor taken from the queue");
	m = got(&sb, 3);
	ok(ipc_unpack(&m, "b", &bp, &bl) == 0 && bl == BIG &&
	    memcmp(bp, big, BIG) == 0, "message 4: payload intact");

	ok(sb.type[4] == 3 && sb.peerid[4] == 9 && sb.fd[4] != -1,
	    "message 5: type, peer id, a descriptor");
	m = got(&sb, 4);
	ok(ipc_unpack(&m, "u", &u) == 0 && u == 5, "message 5: payload");
	ok(sb.fd[4] != -1 && write(sb.fd[4], "x", 1) == 1 &&
	    read(p[0], rd, sizeof(rd)) == 1 && rd[0] == 'x',
	    "message 5: the descriptor is the pipe's write end");
	if (sb.fd[4] != -1) {
		close(sb.fd[4]);
		sb.fd[4] = -1;
	}
	/* EOF proves the sender closed its copy once it was sent */
	ok(read(p[0], rd, sizeof(rd)) == 0,
	    "the sender closed the descriptor it passed");

	ok(sb.type[5] == 5 && sb.peerid[5] == UINT32_MAX && sb.len[5] == 0 &&
	    sb.fd[5] == -1, "message 6: empty payload, peer id UINT32_MAX");

	ok(sa.type[0] == 6 && sa.peerid[0] == 1 && sa.fd[0] == -1,
	    "the other way: type, peer id");
	m = got(&sa, 0);
	ok(ipc_unpack(&m, "s", &s1) == 0 && strcmp(s1, "back") == 0,
	    "the other way: payload");
	ok(sa.closed == 0 && sb.closed == 0, "nobody saw a close yet");

	/* what was sent before a close arrives before the close */
	pending = 100;		/* only the close ends this loop */
	ipc_send(a, 7, 12, -1, "s", "last");
	ipc_flush(a);
	ipc_free(a);
	sb.exit_on_close = 1;
	ended = run_loop(base, 5000);
	ok(ended && sb.n == 7 && sb.type[6] == 7,
	    "the last message arrives before the close");
	ok(sb.closed >= 1, "closing the sender calls dispatch with NULL");
	ok(sb.closed >= 1 && sb.n_at_close == 7,
	    "dispatch(NULL) comes after the last message");
	/* "once": keep the loop running a while and count */
	sb.exit_on_close = 0;
	run_loop(base, 200);
	ok(sb.closed == 1, "dispatch(NULL) is called once (%d times)",
	    sb.closed);
	ipc_free(b);
	b = NULL;
	a = NULL;
 done:
	if (a != NULL)
		ipc_free(a);
	if (b != NULL)
		ipc_free(b);
	side_free(&sa);
	side_free(&sb);
	close(p[0]);
	event_base_free(base);
	free(big);
}

/* Write bytes into a socket as they are, with a descriptor or not. */
static void
raw_send(int s, const void *raw, size_t n, int passfd)
{
	struct msghdr	 mh;
	struct iovec	 iov;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cmsgbuf;
	struct cmsghdr	*cmsg;

	memset(&mh, 0, sizeof(mh));
	iov.iov_base = (void *)raw;
	iov.iov_len = n;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (passfd != -1) {
		memset(&cmsgbuf, 0, sizeof(cmsgbuf));
		mh.msg_control = cmsgbuf.buf;
		mh.msg_controllen = sizeof(cmsgbuf.buf);
		cmsg = CMSG_FIRSTHDR(&mh);
		cmsg->cmsg_len = CMSG_LEN(sizeof(int));
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		memcpy(CMSG_DATA(cmsg), &passfd, sizeof(int));
	}
	if (sendmsg(s, &mh, MSG_NOSIGNAL) != (ssize_t)n)
		abort();
}

/*
 * Descriptors are handed out in the order they arrived, even when two
 * are waiting before the frame that claims the first is complete.
 */
static void
test_fd_order(void)
{
	struct event_base *base;
	struct ipc	*b;
	struct side	 sb;
	struct stat	 st, st1, st2;
	uint8_t		 raw[64];
	size_t		 n;
	uint32_t	 u;
	int		 sv[2], fd1, fd2, pending, ended;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
	    sv) == -1 || (base = event_base_new()) == NULL ||
	    (fd1 = open("/dev/null", O_RDONLY | O_CLOEXEC)) == -1 ||
	    (fd2 = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    fstat(fd1, &st1) == -1 || fstat(fd2, &st2) == -1)
		abort();
	memset(&sb, 0, sizeof(sb));
	sb.base = base;
	sb.pending = &pending;
	pending = 2;
	b = ipc_new(base, sv[1], "raw", side_dispatch, &sb);

	n = frame(raw, 1, 4, 0, IPC_F_FD);
	u = 1;
	memcpy(raw + n, &u, 4);
	n += 4;
	n += frame(raw + n, 2, 4, 0, IPC_F_FD);
	u = 2;
	memcpy(raw + n, &u, 4);
	n += 4;
	/* fd1 with half a header, fd2 with the rest */
	raw_send(sv[0], raw, 8, fd1);
	ended = run_loop(base, 50);
	ok(!ended && sb.n == 0, "half a header: nothing dispatched yet");
	raw_send(sv[0], raw + 8, n - 8, fd2);
	ended = run_loop(base, 5000);
	ok(ended && sb.n == 2, "two frames with descriptors arrive (%d)",
	    sb.n);
	ok(sb.n == 2 && sb.type[0] == 1 && sb.fd[0] != -1 &&
	    fstat(sb.fd[0], &st) == 0 && st.st_ino == st1.st_ino &&
	    st.st_dev == st1.st_dev,
	    "the first frame gets the first descriptor");
	ok(sb.n == 2 && sb.type[1] == 2 && sb.fd[1] != -1 &&
	    fstat(sb.fd[1], &st) == 0 && st.st_ino == st2.st_ino &&
	    st.st_dev == st2.st_dev,
	    "the second frame gets the second descriptor");
	ipc_free(b);
	side_free(&sb);
	close(sv[0]);
	close(fd1);
	close(fd2);
	event_base_free(base);
}

/*
 * A child owns the receiving end; the parent writes raw bytes into the
 * socket, maybe with a descriptor, then closes.  The child exits 1
 * (fatalx) on a bad frame, 10 + the number of messages it got if it sees
 * the close, 20 if its loop ends some other way.
 */
static struct event_base *child_base;
static struct ipc *child_ipc;
static int child_n;

static void
child_dispatch(struct ipc *ipc, struct ipc_msg *msg, void *arg)
{
	if (msg == NULL)
		exit(10 + child_n);
	if (msg->fd != -1)
		close(msg->fd);
	child_n++;
}

static int
child_status(const void *raw, size_t n, int passfd)
{
	pid_t		 pid;
	int		 sv[2], status, devnull;

	fflush(stdout);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
	    sv) == -1 || (pid = fork()) == -1)
		abort();
	if (pid == 0) {
		close(sv[0]);
		alarm(10);
		if ((devnull = open("/dev/null", O_WRONLY)) != -1)
			dup2(devnull, STDERR_FILENO);
		log_init(1, 0);
		if ((child_base = event_base_new()) == NULL)
			_exit(30);
		child_ipc = ipc_new(child_base, sv[1], "parent",
		    child_dispatch, NULL);
		event_base_dispatch(child_base);
		exit(20);
	}
	close(sv[1]);
	raw_send(sv[0], raw, n, passfd);
	close(sv[0]);
	if (waitpid(pid, &status, 0) == -1)
		abort();
	return WIFEXITED(status) ? WEXITSTATUS(status) :
	    128 + WTERMSIG(status);
}

static void
test_malformed(void)
{
	uint8_t	 raw[128];
	size_t	 n;
	uint32_t u = 1;
	int	 r, fd;

	/* control: well-formed frames are dispatched, then the close */
	n = frame(raw, 1, 4, 0, 0);
	memcpy(raw + n, &u, 4);
	n += 4;
	n += frame(raw + n, 2, 0, 0, 0);
	r = child_status(raw, n, -1);
	ok(r == 12, "control: two good frames, then the close (exit %d)", r);

	if ((fd = open("/dev/null", O_RDONLY)) == -1)
		abort();
	n = frame(raw, 1, 0, 0, IPC_F_FD);
	r = child_status(raw, n, fd);
	ok(r == 11, "control: a frame with its descriptor (exit %d)", r);

	n = frame(raw, 1, 0, 0, 0x02);
	r = child_status(raw, n, -1);
	ok(r == 1, "unknown flags are fatal for the receiver (exit %d)", r);

	n = frame(raw, 1, IPC_MAX_PAYLOAD + 1, 0, 0);
	r = child_status(raw, n, -1);
	ok(r == 1, "an oversized length is fatal for the receiver (exit %d)",
	    r);

	n = frame(raw, 1, 0, 0, IPC_F_FD);
	r = child_status(raw, n, -1);
	ok(r == 1, "IPC_F_FD without a descriptor is fatal (exit %d)", r);

	n = frame(raw, 1, 0, 0, 0);
	n += frame(raw + n, 1, UINT32_MAX, 0, 0);
	r = child_status(raw, n, -1);
	ok(r == 1, "a bad frame after a good one is fatal (exit %d)", r);
	close(fd);
}

int
main(void)
{
	test_decode();
	test_unpack();
	test_live();
	test_fd_order();
	test_malformed();
	return tap_done();
}
