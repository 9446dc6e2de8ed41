/*
 * sink: the relay host of `make bench`.  An SMTP server that answers 250
 * to everything, 354 to DATA, and throws the message away.  It must never
 * be what limits a benchmark: a thread per connection, blocking I/O, no
 * parsing beyond the verb and the end-of-data dot, replies to pipelined
 * commands written together once the input runs dry.
 *
 *	sink -p port -o countfile
 *
 * countfile gets two native 64-bit counters (messages, octets), updated in
 * place through a shared mapping so the driver can read them at any time
 * without asking.
 */

#include <sys/mman.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define INBUF	65536
#define OUTBUF	4096

static volatile uint64_t *counters;	/* [0] messages, [1] octets */

struct conn {
	int	 fd;
	char	 in[INBUF];
	size_t	 inlen;
	char	 out[OUTBUF];
	size_t	 outlen;
	int	 data;		/* in DATA: counting the message */
	int	 eod;		/* how much of "\r\n.\r\n" was just seen */
	uint64_t octets;
};

static int
flush_out(struct conn *c)
{
	size_t	 off = 0;
	ssize_t	 n;

	while (off < c->outlen) {
		n = write(c->fd, c->out + off, c->outlen - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		off += n;
	}
	c->outlen = 0;
	return 0;
}

static int
say(struct conn *c, const char *s)
{
	size_t	 len = strlen(s);

	if (c->outlen + len > sizeof(c->out) && flush_out(c) == -1)
		return -1;
	memcpy(c->out + c->outlen, s, len);
	c->outlen += len;
	return 0;
}

/*
 * Consume message octets from p[0..len); return how many belong to the
 * message (the end-of-data line included), leaving c->data 0 at its end.
 * The state says how much of CR LF "." CR LF ends the octets seen so far;
 * DATA's 354 leaves it at 2, as if after a CR LF.
 */
static size_t
body(struct conn *c, const char *p, size_t len)
{
	static const char	 pat[] = "\r\n.\r\n";
	size_t			 i = 0;
	const char		*q;

	while (i < len) {
		if (c->eod == 0) {
			if ((q = memchr(p + i, '\r', len - i)) == NULL) {
				i = len;
				break;
			}
			i = q - p;
		}
		if (p[i] == pat[c->eod])
			c->eod++;
		else if (p[i] == '\r')
			c->eod = 1;
		else
			c->eod = 0;
		i++;
		if (c->eod == 5) {
			c->data = 0;
			c->eod = 0;
			break;
		}
	}
	c->octets += i;
	return i;
}

static int
command(struct conn *c, char *line)
{
	if (strncasecmp(line, "EHLO", 4) == 0)
		return say(c, "250-sink.test\r\n250-PIPELINING\r\n"
		    "250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 104857600\r\n");
	if (strncasecmp(line, "DATA", 4) == 0) {
		c->data = 1;
		c->eod = 2;
		c->octets = 0;
		return say(c, "354 go ahead\r\n");
	}
	if (strncasecmp(line, "QUIT", 4) == 0) {
		say(c, "221 bye\r\n");
		flush_out(c);
		return -1;
	}
	return say(c, "250 ok\r\n");
}

static void *
serve(void *arg)
{
	struct conn	*c = arg;
	char		*nl;
	size_t		 off, n;
	ssize_t		 r;

	if (say(c, "220 sink.test ESMTP\r\n") == -1 || flush_out(c) == -1)
		goto done;
	for (;;) {
		off = 0;
		while (off < c->inlen) {
			if (c->data) {
				off += body(c, c->in + off, c->inlen - off);
				if (!c->data) {
					__atomic_add_fetch(&counters[0], 1,
					    __ATOMIC_RELAXED);
					__atomic_add_fetch(&counters[1],
					    c->octets, __ATOMIC_RELAXED);
					if (say(c, "250 2.0.0 dropped\r\n") == -1)
						goto done;
				}
				continue;
			}
			nl = memchr(c->in + off, '\n', c->inlen - off);
			if (nl == NULL)
				break;
			*nl = '\0';
			if (command(c, c->in + off) == -1)
				goto done;
			off = nl + 1 - c->in;
		}
		n = c->inlen - off;
		if (n == sizeof(c->in))
			goto done;	/* a line longer than any SMTP line */
		memmove(c->in, c->in + off, n);
		c->inlen = n;
		if (c->outlen > 0 && flush_out(c) == -1)
			goto done;
		r = read(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0)
			goto done;
		c->inlen += r;
	}
 done:
	close(c->fd);
	free(c);
	return NULL;
}

int
main(int argc, char *argv[])
{
	struct sockaddr_in	 sin;
	pthread_attr_t		 attr;
	pthread_t		 t;
	struct conn		*c;
	const char		*count = NULL;
	int			 ch, fd, lfd, on = 1, port = 0;
	void			*p;

	while ((ch = getopt(argc, argv, "o:p:")) != -1) {
		switch (ch) {
		case 'o':
			count = optarg;
			break;
		case 'p':
			port = atoi(optarg);
			break;
		default:
			goto usage;
		}
	}
	if (count == NULL || port <= 0 || port > 65535)
		goto usage;
	signal(SIGPIPE, SIG_IGN);

	if ((fd = open(count, O_RDWR | O_CREAT | O_TRUNC, 0644)) == -1)
		err(1, "%s", count);
	if (ftruncate(fd, 2 * sizeof(uint64_t)) == -1)
		err(1, "ftruncate");
	p = mmap(NULL, 2 * sizeof(uint64_t), PROT_READ | PROT_WRITE,
	    MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		err(1, "mmap");
	counters = p;
	close(fd);

	if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		err(1, "socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	/* inherited by each accepted socket: replies never wait for ACKs */
	setsockopt(lfd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == -1)
		err(1, "bind %d", port);
	if (listen(lfd, 512) == -1)
		err(1, "listen");
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (;;) {
		if ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) == -1) {
			if (errno == EINTR || errno == ECONNABORTED ||
			    errno == EMFILE || errno == ENFILE)
				continue;
			err(1, "accept");
		}
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			close(fd);
			continue;
		}
		c->fd = fd;
		if (pthread_create(&t, &attr, serve, c) != 0) {
			close(fd);
			free(c);
		}
	}
 usage:
	fprintf(stderr, "usage: sink -p port -o countfile\n");
	return 1;
}
