/*
 * smtpload: the load generator of `make bench`.  Clients, each a thread
 * with blocking OpenSSL, open implicit-TLS submission sessions (port 465
 * style: handshake, greeting, EHLO, AUTH PLAIN) and send messages until
 * the time is up:
 *
 *	smtpload -p port -C cafile [-H host] [-n servername] [-u user]
 *	    [-w password] [-c clients] [-m messages-per-session]
 *	    [-s message-size] [-t seconds]
 *	smtpload -p port -C cafile -i sessions [-c clients]
 *
 * At the end it prints one line of name=value pairs: sessions, messages,
 * octets, elapsed seconds, errors, and p50/p99 of the latency of the
 * final 250 (from the end-of-data dot to the reply) in milliseconds.
 *
 * -v adds, on standard error, the mean and maximum time of each step of
 * a session (connect, handshake, greeting, EHLO, AUTH, MAIL, RCPT, DATA
 * with the body, the dot, QUIT).
 *
 * With -i it opens that many authenticated sessions and keeps them idle,
 * prints "ready N" once they are all open, and closes them when its
 * standard input reaches end of file.
 *
 * The client sets TCP_NODELAY and writes each command, and each message
 * body, in one call, so no figure includes a stall of its own.
 *
 * All sessions share one SSL_CTX, loaded once with the CA, and each
 * checks the server's certificate and name as a mail client does; every
 * session is a full handshake (no resumption).  It used libtls, which
 * makes a context per connection: that cost the load generator about
 * 1.3 ms of CPU a session, as much as the server under test, on the
 * 2 cores both share.
 */

#include <sys/resource.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <err.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define LINE_MAX_	4096

/* -v: where a session's time goes */
enum phase { P_CONNECT, P_HANDSHAKE, P_GREETING, P_EHLO, P_AUTH, P_MAIL,
	P_RCPT, P_DATA, P_DOT, P_QUIT, P_N };
static const char *phase_name[P_N] = { "connect", "handshake", "greeting",
	"ehlo", "auth", "mail", "rcpt", "data", "dot", "quit" };

static struct {
	const char		*host;
	int			 port;
	const char		*servername;
	const char		*user;
	const char		*password;
	int			 clients;
	int			 per_session;
	size_t			 size;
	double			 seconds;
	int			 idle;
	int			 verbose;
	SSL_CTX			*ssl;
	double			 deadline;
	char			*body;	/* the message, stuffed, no final dot */
	size_t			 bodylen;
	char			 auth[512];
	pthread_mutex_t		 lock;
	int			 nidle;
	char			 firsterr[256];
} g;

struct client {
	pthread_t	 thread;
	SSL		*tls;
	int		 fd;
	char		 buf[LINE_MAX_];
	size_t		 buflen;
	uint64_t	 sessions;
	uint64_t	 messages;
	uint64_t	 octets;
	uint64_t	 errors;
	uint32_t	*lat;		/* microseconds */
	size_t		 nlat, maxlat;
	SSL		**held;		/* -i: the open sessions */
	int		*heldfd;
	int		 nheld;
	int		 want;		/* -i: how many to hold */
	double		 t;		/* -v: when the phase began */
	double		 phase[P_N];	/* -v: seconds spent in each */
	uint64_t	 nphase[P_N];
	double		 maxphase[P_N];
};

static double
now(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
mark(struct client *c, enum phase p)
{
	double	 t = now(), d = t - c->t;

	c->phase[p] += d;
	c->nphase[p]++;
	if (d > c->maxphase[p])
		c->maxphase[p] = d;
	c->t = t;
}

static void
fail(struct client *c, const char *fmt, ...)
{
	va_list	 ap;

	c->errors++;
	pthread_mutex_lock(&g.lock);
	if (g.firsterr[0] == '\0') {
		va_start(ap, fmt);
		vsnprintf(g.firsterr, sizeof(g.firsterr), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&g.lock);
}

/* OpenSSL's last error of this thread, as text. */
static const char *
ssl_error(void)
{
	static __thread char	 text[256];
	unsigned long		 e = ERR_get_error();

	if (e == 0)
		return errno ? strerror(errno) : "unknown error";
	ERR_error_string_n(e, text, sizeof(text));
	ERR_clear_error();
	return text;
}

static int
send_all(struct client *c, const char *p, size_t len)
{
	int	 n;

	while (len > 0) {
		if ((n = SSL_write(c->tls, p, len > INT32_MAX ? INT32_MAX :
		    (int)len)) <= 0) {
			fail(c, "write: %s", ssl_error());
			return -1;
		}
		p += n;
		len -= n;
	}
	return 0;
}

/* Read one whole reply; return its code, or -1. */
static int
reply(struct client *c)
{
	char	*nl;
	size_t	 len;
	int	 n, code;

	for (;;) {
		while ((nl = memchr(c->buf, '\n', c->buflen)) != NULL) {
			len = nl + 1 - c->buf;
			if (len < 4 || c->buf[0] < '2' || c->buf[0] > '5') {
				fail(c, "malformed reply %.*s", (int)len,
				    c->buf);
				return -1;
			}
			code = atoi(c->buf);
			if (c->buf[3] == '-') {
				memmove(c->buf, c->buf + len, c->buflen - len);
				c->buflen -= len;
				continue;
			}
			if (code >= 400)
				fail(c, "%.*s", (int)len - 2, c->buf);
			memmove(c->buf, c->buf + len, c->buflen - len);
			c->buflen -= len;
			return code;
		}
		if (c->buflen == sizeof(c->buf)) {
			fail(c, "reply line too long");
			return -1;
		}
		n = SSL_read(c->tls, c->buf + c->buflen,
		    sizeof(c->buf) - c->buflen);
		if (n <= 0 &&
		    SSL_get_error(c->tls, n) == SSL_ERROR_ZERO_RETURN) {
			fail(c, "connection closed");
			return -1;
		}
		if (n <= 0) {
			fail(c, "read: %s", ssl_error());
			return -1;
		}
		c->buflen += n;
	}
}

static int
cmd(struct client *c, const char *line, int want)
{
	if (send_all(c, line, strlen(line)) == -1)
		return -1;
	return reply(c) == want ? 0 : -1;
}

static void
hangup(struct client *c)
{
	if (c->tls != NULL) {
		SSL_shutdown(c->tls);
		SSL_free(c->tls);
		c->tls = NULL;
	}
	if (c->fd != -1) {
		close(c->fd);
		c->fd = -1;
	}
	c->buflen = 0;
}

/* Connect, handshake, greeting, EHLO, AUTH. */
static int
open_session(struct client *c)
{
	struct sockaddr_in	 sin;
	int			 on = 1;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(g.port);
	if (inet_pton(AF_INET, g.host, &sin.sin_addr) != 1)
		errx(1, "%s: not an IPv4 address", g.host);
	if ((c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		fail(c, "socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	c->t = now();
	if (connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)) == -1) {
		fail(c, "connect: %s", strerror(errno));
		goto bad;
	}
	mark(c, P_CONNECT);
	if ((c->tls = SSL_new(g.ssl)) == NULL ||
	    SSL_set_fd(c->tls, c->fd) != 1 ||
	    SSL_set_tlsext_host_name(c->tls, g.servername) != 1 ||
	    SSL_set1_host(c->tls, g.servername) != 1 ||
	    SSL_connect(c->tls) != 1) {
		fail(c, "TLS: %s", ssl_error());
		goto bad;
	}
	mark(c, P_HANDSHAKE);
	if (reply(c) != 220)
		goto bad;
	mark(c, P_GREETING);
	if (cmd(c, "EHLO load.test\r\n", 250) == -1)
		goto bad;
	mark(c, P_EHLO);
	if (cmd(c, g.auth, 235) == -1)
		goto bad;
	mark(c, P_AUTH);
	c->sessions++;
	return 0;
 bad:
	hangup(c);
	return -1;
}

static int
send_message(struct client *c)
{
	double	 t0;
	uint32_t us;

	c->t = now();
	if (cmd(c, "MAIL FROM:<alice@example.org>\r\n", 250) == -1)
		return -1;
	mark(c, P_MAIL);
	if (cmd(c, "RCPT TO:<bob@example.org>\r\n", 250) == -1)
		return -1;
	mark(c, P_RCPT);
	if (cmd(c, "DATA\r\n", 354) == -1 ||
	    send_all(c, g.body, g.bodylen) == -1)
		return -1;
	mark(c, P_DATA);
	t0 = c->t;
	if (cmd(c, ".\r\n", 250) == -1)
		return -1;
	mark(c, P_DOT);
	us = (c->t - t0) * 1e6;
	if (c->nlat == c->maxlat) {
		c->maxlat = c->maxlat ? c->maxlat * 2 : 1024;
		c->lat = reallocarray(c->lat, c->maxlat, sizeof(*c->lat));
		if (c->lat == NULL)
			err(1, NULL);
	}
	c->lat[c->nlat++] = us;
	c->messages++;
	c->octets += g.bodylen;
	return 0;
}

static void *
load(void *arg)
{
	struct client	*c = arg;
	int		 i;

	while (now() < g.deadline) {
		if (open_session(c) == -1) {
			usleep(10000);
			continue;
		}
		for (i = 0; i < g.per_session && now() < g.deadline; i++)
			if (send_message(c) == -1)
				break;
		if (i == g.per_session || now() >= g.deadline) {
			c->t = now();
			if (cmd(c, "QUIT\r\n", 221) == 0)
				mark(c, P_QUIT);
		}
		hangup(c);
	}
	return NULL;
}

static void *
hold(void *arg)
{
	struct client	*c = arg;

	while (c->nheld < c->want) {
		if (open_session(c) == -1) {
			if (c->errors > 100)
				break;
			usleep(10000);
			continue;
		}
		c->held[c->nheld] = c->tls;
		c->heldfd[c->nheld++] = c->fd;
		c->tls = NULL;
		c->fd = -1;
	}
	return NULL;
}

static int
cmp32(const void *a, const void *b)
{
	uint32_t	 x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static double
percentile(uint32_t *v, size_t n, double p)
{
	size_t	 i;

	if (n == 0)
		return 0;
	i = p * (n - 1) + 0.5;
	return v[i] / 1000.0;
}

static void
make_body(void)
{
	static const char	 line[] =
	    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, "
	    "sed do eiusmod.\r\n";
	size_t			 len;
	int			 n;

	if ((g.body = malloc(g.size + 512)) == NULL)
		err(1, NULL);
	n = snprintf(g.body, 512,
	    "From: Alice <alice@example.org>\r\n"
	    "To: Bob <bob@example.org>\r\n"
	    "Subject: load\r\n"
	    "Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
	    "Message-ID: <load-%d@example.org>\r\n"
	    "\r\n", (int)getpid());
	len = n;
	while (len + sizeof(line) - 1 <= g.size) {
		memcpy(g.body + len, line, sizeof(line) - 1);
		len += sizeof(line) - 1;
	}
	g.bodylen = len;
}

static void
usage(void)
{
	fprintf(stderr, "usage: smtpload -p port -C cafile [-H host] "
	    "[-n servername] [-u user] [-w password]\n"
	    "\t[-c clients] [-m per-session] [-s size] [-t seconds] "
	    "[-i idle-sessions] [-v]\n");
	exit(1);
}

int
main(int argc, char *argv[])
{
	struct client	*cl;
	struct rlimit	 rl;
	const char	*ca = NULL;
	char		 plain[256], line[16];
	uint64_t	 sessions = 0, messages = 0, octets = 0, errors = 0;
	uint32_t	*lat;
	size_t		 nlat = 0, plen;
	double		 t0, elapsed;
	int		 ch, i, j;

	g.host = "127.0.0.1";
	g.servername = "mx.test";
	g.user = "alice";
	g.password = "alice-pw";
	g.clients = 1;
	g.per_session = 1;
	g.size = 10240;
	g.seconds = 5;
	while ((ch = getopt(argc, argv, "C:c:H:i:m:n:p:s:t:u:vw:")) != -1) {
		switch (ch) {
		case 'C':
			ca = optarg;
			break;
		case 'c':
			g.clients = atoi(optarg);
			break;
		case 'H':
			g.host = optarg;
			break;
		case 'i':
			g.idle = atoi(optarg);
			break;
		case 'm':
			g.per_session = atoi(optarg);
			break;
		case 'n':
			g.servername = optarg;
			break;
		case 'p':
			g.port = atoi(optarg);
			break;
		case 's':
			g.size = strtoul(optarg, NULL, 10);
			break;
		case 't':
			g.seconds = atof(optarg);
			break;
		case 'u':
			g.user = optarg;
			break;
		case 'v':
			g.verbose = 1;
			break;
		case 'w':
			g.password = optarg;
			break;
		default:
			usage();
		}
	}
	if (ca == NULL || g.port <= 0 || g.clients < 1 || g.per_session < 1 ||
	    g.size < 1024 || g.idle < 0)
		usage();
	signal(SIGPIPE, SIG_IGN);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	pthread_mutex_init(&g.lock, NULL);

	/* AUTH PLAIN: authzid NUL user NUL password, in base64 */
	plen = snprintf(plain, sizeof(plain), "%c%s%c%s", 0, g.user, 0,
	    g.password);
	if (plen >= sizeof(plain))
		errx(1, "user or password too long");
	memcpy(g.auth, "AUTH PLAIN ", 11);
	{
		static const char	 b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "abcdefghijklmnopqrstuvwxyz0123456789+/";
		size_t			 k, o = 11;
		unsigned char		*s = (unsigned char *)plain;
		uint32_t		 v;

		for (k = 0; k < plen; k += 3) {
			v = s[k] << 16;
			if (k + 1 < plen)
				v |= s[k + 1] << 8;
			if (k + 2 < plen)
				v |= s[k + 2];
			g.auth[o++] = b64[v >> 18 & 63];
			g.auth[o++] = b64[v >> 12 & 63];
			g.auth[o++] = k + 1 < plen ? b64[v >> 6 & 63] : '=';
			g.auth[o++] = k + 2 < plen ? b64[v & 63] : '=';
		}
		memcpy(g.auth + o, "\r\n", 3);
	}
	make_body();

	if ((g.ssl = SSL_CTX_new(TLS_client_method())) == NULL ||
	    SSL_CTX_set_min_proto_version(g.ssl, TLS1_2_VERSION) != 1)
		errx(1, "SSL_CTX_new: %s", ssl_error());
	if (SSL_CTX_load_verify_locations(g.ssl, ca, NULL) != 1)
		errx(1, "%s: %s", ca, ssl_error());
	SSL_CTX_set_verify(g.ssl, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_session_cache_mode(g.ssl, SSL_SESS_CACHE_OFF);

	if ((cl = calloc(g.clients, sizeof(*cl))) == NULL)
		err(1, NULL);
	for (i = 0; i < g.clients; i++)
		cl[i].fd = -1;
	t0 = now();
	g.deadline = t0 + g.seconds;
	for (i = 0; i < g.clients; i++) {
		if (g.idle) {
			cl[i].want = g.idle / g.clients +
			    (i < g.idle % g.clients);
			cl[i].held = calloc(cl[i].want + 1, sizeof(*cl->held));
			cl[i].heldfd = calloc(cl[i].want + 1, sizeof(int));
			if (cl[i].held == NULL || cl[i].heldfd == NULL)
				err(1, NULL);
		}
		if (pthread_create(&cl[i].thread, NULL, g.idle ? hold : load,
		    &cl[i]) != 0)
			errx(1, "pthread_create");
	}
	for (i = 0; i < g.clients; i++)
		pthread_join(cl[i].thread, NULL);
	elapsed = now() - t0;

	if (g.idle) {
		for (i = 0; i < g.clients; i++) {
			sessions += cl[i].nheld;
			errors += cl[i].errors;
		}
		printf("ready %llu\n", (unsigned long long)sessions);
		fflush(stdout);
		while (fgets(line, sizeof(line), stdin) != NULL)
			;
		for (i = 0; i < g.clients; i++)
			for (j = 0; j < cl[i].nheld; j++) {
				SSL_shutdown(cl[i].held[j]);
				SSL_free(cl[i].held[j]);
				close(cl[i].heldfd[j]);
			}
		printf("sessions=%llu elapsed=%.3f errors=%llu\n",
		    (unsigned long long)sessions, elapsed,
		    (unsigned long long)errors);
		if (g.firsterr[0])
			fprintf(stderr, "smtpload: first error: %s\n",
			    g.firsterr);
		goto done;
	}

	for (i = 0; i < g.clients; i++)
		nlat += cl[i].nlat;
	if ((lat = calloc(nlat + 1, sizeof(*lat))) == NULL)
		err(1, NULL);
	nlat = 0;
	for (i = 0; i < g.clients; i++) {
		sessions += cl[i].sessions;
		messages += cl[i].messages;
		octets += cl[i].octets;
		errors += cl[i].errors;
		memcpy(lat + nlat, cl[i].lat, cl[i].nlat * sizeof(*lat));
		nlat += cl[i].nlat;
	}
	qsort(lat, nlat, sizeof(*lat), cmp32);
	for (j = 0; g.verbose && j < P_N; j++) {
		double		 sum = 0, max = 0;
		uint64_t	 cnt = 0;

		for (i = 0; i < g.clients; i++) {
			sum += cl[i].phase[j];
			cnt += cl[i].nphase[j];
			if (cl[i].maxphase[j] > max)
				max = cl[i].maxphase[j];
		}
		fprintf(stderr, "%-10s n=%llu mean=%.2fms max=%.2fms\n",
		    phase_name[j], (unsigned long long)cnt,
		    cnt ? sum * 1000 / cnt : 0.0, max * 1000);
	}
	printf("sessions=%llu messages=%llu octets=%llu elapsed=%.3f "
	    "errors=%llu p50_ms=%.2f p99_ms=%.2f\n",
	    (unsigned long long)sessions, (unsigned long long)messages,
	    (unsigned long long)octets, elapsed, (unsigned long long)errors,
	    percentile(lat, nlat, 0.50), percentile(lat, nlat, 0.99));
	if (g.firsterr[0])
		fprintf(stderr, "smtpload: first error: %s\n", g.firsterr);
	free(lat);
 done:
	/* all of it, so a sanitizer build has no leak to report */
	for (i = 0; i < g.clients; i++) {
		free(cl[i].lat);
		free(cl[i].held);
		free(cl[i].heldfd);
	}
	free(cl);
	free(g.body);
	SSL_CTX_free(g.ssl);
	return 0;
}
