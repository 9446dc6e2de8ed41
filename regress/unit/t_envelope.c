/*
 * t_envelope.c: unit tests for smtpd/envelope.c, the envelope file
 * format.  The property: whatever the queue holds in an envelope (any
 * byte string in a text field, any address the wire accepts), writing it
 * and parsing the text gives it back, field for field.  Random, from a
 * fixed seed that is printed; REGRESS_SEED=N runs another.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smsubmit.h"
#include "rnd.h"
#include "tap.h"

#define ITERATIONS	5000
#define DEFAULT_SEED	20261202ULL

/* Any octets but NUL, often the awkward ones, len < max. */
static void
random_text(char *dst, size_t max)
{
	static const char	 nasty[] = "\t\r\n %\\\"=<>()\x1b\x7f\x80\xff";
	size_t			 i, n;

	switch (below(4)) {
	case 0:
		n = 0;
		break;
	case 1:
		n = max - 1;	/* as long as it gets */
		break;
	default:
		n = below(max);
	}
	for (i = 0; i < n; i++) {
		if (below(3) == 0)
			dst[i] = nasty[below(sizeof(nasty) - 1)];
		else
			dst[i] = 1 + below(255);
	}
	dst[n] = '\0';
}

static const char atext[] = "abcdefghijklmnopqrstuvwxyz"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~";

static char
random_8bit(void)
{
	return 0x80 + below(128);
}

static size_t
random_local(char *dst, size_t max)
{
	size_t	 i = 0, n = 1 + below(max);
	char	 c;

	if (below(2) == 0) {
		/* dot-string */
		while (i < n) {
			if (i > 0 && i + 1 < n && dst[i - 1] != '.' &&
			    below(6) == 0)
				dst[i++] = '.';
			else
				dst[i++] = below(8) == 0 ? random_8bit() :
				    atext[below(sizeof(atext) - 1)];
		}
		if (dst[i - 1] == '.')
			dst[i - 1] = 'x';
		return i;
	}
	/* quoted-string, with spaces, pairs, "key=value" and 8-bit */
	if (n < 2)
		n = 2;
	dst[i++] = '"';
	while (i + 1 < n) {
		c = below(8) == 0 ? random_8bit() : (char)(0x20 + below(0x5f));
		if (c == '\\' || c == '"') {
			if (i + 2 >= n)
				continue;
			dst[i++] = '\\';
		}
		dst[i++] = c;
	}
	dst[i++] = '"';
	return i;
}

static size_t
random_domain(char *dst, size_t max)
{
	static const char	 alnum[] = "abcdefghijklmnopqrstuvwxyz"
	    "0123456789";
	size_t			 i = 0, n = 1 + below(max), label = 0;

	if (below(8) == 0)
		return snprintf(dst, max, "[192.0.2.%zu]", below(256));
	while (i < n) {
		if (label > 0 && label < 63 && i + 1 < n && below(6) == 0) {
			dst[i++] = below(2) ? '.' : '-';
			label = dst[i - 1] == '.' ? 0 : label + 1;
			continue;
		}
		if (label == 63) {
			dst[i++] = '.';
			label = 0;
			continue;
		}
		dst[i++] = below(10) == 0 ? random_8bit() :
		    alnum[below(sizeof(alnum) - 1)];
		label++;
	}
	while (i > 0 && (dst[i - 1] == '.' || dst[i - 1] == '-'))
		i--;
	if (i == 0)
		dst[i++] = 'x';
	return i;
}

/* A random address that addr_mailbox_valid() takes with these flags. */
static void
random_addr(char *dst, int flags)
{
	size_t	 n;

	for (;;) {
		if ((flags & ADDR_NULL_OK) && below(10) == 0) {
			dst[0] = '\0';
			return;
		}
		if ((flags & ADDR_POSTMASTER) && below(20) == 0) {
			strlcpy(dst, below(2) ? "postmaster" : "PostMaster",
			    ADDR_MAX);
			return;
		}
		n = random_local(dst, ADDR_LOCAL_MAX);
		dst[n++] = '@';
		n += random_domain(dst + n, ADDR_DOMAIN_MAX);
		dst[n] = '\0';
		if (addr_mailbox_valid(dst, flags))
			return;
	}
}

static long long
random_time(void)
{
	switch (below(4)) {
	case 0:
		return 0;
	case 1:
		return LLONG_MAX;
	default:
		return rnd() >> 1;
	}
}

static void
random_qmsg(struct qmsg *m)
{
	char		 addr[ADDR_MAX];
	size_t		 i, n;

	memset(m, 0, sizeof(*m));
	for (i = 0; i < QUEUE_ID_LEN; i++)
		m->id[i] = "0123456789abcdef"[below(16)];
	m->created = random_time();
	m->next = random_time();
	m->warned = below(3) == 0 ? 0 : 1 + (rnd() >> 2);
	m->attempts = below(2) ? INT_MAX : (int)below(100);
	m->flags = below(4);
	random_addr(m->from, ADDR_NULL_OK | ADDR_UTF8);
	random_text(m->user, sizeof(m->user));
	random_text(m->helo, sizeof(m->helo));
	random_text(m->client, sizeof(m->client));
	random_text(m->error, sizeof(m->error));
	n = 1 + below(6);
	for (i = 0; i < n; i++) {
		random_addr(addr, ADDR_UTF8 | ADDR_POSTMASTER);
		if (envelope_rcpt_add(m, addr, below(4)) == -1)
			abort();
		random_text(m->rcpts[i].reply, sizeof(m->rcpts[i].reply));
	}
}

/* Which field differs, or NULL. */
static const char *
differs(const struct qmsg *a, const struct qmsg *b)
{
	int	 i;

	if (strcmp(a->id, b->id) != 0)
		return "id";
	if (a->created != b->created)
		return "created";
	if (a->next != b->next)
		return "next";
	if (a->warned != b->warned)
		return "warned";
	if (a->attempts != b->attempts)
		return "attempts";
	if (a->flags != b->flags)
		return "flags";
	if (strcmp(a->from, b->from) != 0)
		return "from";
	if (strcmp(a->user, b->user) != 0)
		return "user";
	if (strcmp(a->helo, b->helo) != 0)
		return "helo";
	if (strcmp(a->client, b->client) != 0)
		return "client";
	if (strcmp(a->error, b->error) != 0)
		return "error";
	if (a->nrcpts != b->nrcpts)
		return "number of recipients";
	for (i = 0; i < a->nrcpts; i++) {
		if (strcmp(a->rcpts[i].addr, b->rcpts[i].addr) != 0)
			return "recipient address";
		if (a->rcpts[i].state != b->rcpts[i].state)
			return "recipient state";
		if (strcmp(a->rcpts[i].reply, b->rcpts[i].reply) != 0)
			return "recipient reply";
	}
	return NULL;
}

/* Every line "key token" or "rcpt state token", printable ASCII. */
static int
text_shape_ok(const char *t)
{
	const char	*p;
	int		 spaces = 0, rcpt;

	for (p = t; *p != '\0'; p++) {
		rcpt = strncmp(p, "rcpt ", 5) == 0;
		for (spaces = 0; *p != '\n'; p++) {
			if (*p == '\0' || (unsigned char)*p < 0x20 ||
			    (unsigned char)*p > 0x7e)
				return 0;
			if (*p == ' ')
				spaces++;
		}
		if (spaces != (rcpt ? 2 : 1))
			return 0;
	}
	return 1;
}

/* Format m, parse the text: 0 and *out if it worked. */
static int
round_trip(const struct qmsg *m, struct qmsg *out, char **textp)
{
	struct buf	 b;
	char		*text;

	buf_init(&b, ENVELOPE_MAX);
	if (envelope_format(&b, m) == -1 || buf_add(&b, "", 1) == -1) {
		buf_free(&b);
		return -1;
	}
	if ((text = strdup(buf_head(&b))) == NULL)
		abort();
	*textp = strdup(text);
	buf_free(&b);
	if (envelope_parse(out, text) == -1) {
		free(text);
		return -1;
	}
	free(text);
	return 0;
}

static void
property_round_trip(void)
{
	struct qmsg	 m, back;
	const char	*why = NULL;
	char		*text = NULL;
	int		 i, failed = 0, shape = 0;

	for (i = 0; i < ITERATIONS && !failed; i++) {
		random_qmsg(&m);
		if (round_trip(&m, &back, &text) == -1)
			why = "refused by the parser";
		else
			why = differs(&m, &back);
		if (text != NULL && !text_shape_ok(text))
			shape++;
		if (why != NULL) {
			failed = 1;
			printf("# iteration %d: %s\n# %s", i, why, text);
		}
		free(text);
		text = NULL;
		envelope_clear(&m);
		envelope_clear(&back);
	}
	ok(!failed, "%d random envelopes survive write then parse", i);
	ok(shape == 0, "every line written is printable ASCII, one token a "
	    "value (%d not)", shape);
}

static void
base(struct qmsg *m)
{
	memset(m, 0, sizeof(*m));
	strlcpy(m->id, "0123456789abcdef", sizeof(m->id));
	m->created = 1700000000;
	strlcpy(m->from, "alice@example.org", sizeof(m->from));
	strlcpy(m->user, "alice", sizeof(m->user));
	strlcpy(m->helo, "client.example", sizeof(m->helo));
	strlcpy(m->client, "192.0.2.7", sizeof(m->client));
	if (envelope_rcpt_add(m, "bob@example.org", RCPT_PENDING) == -1)
		abort();
}

/* A field set to value must come back as it was. */
static void
survives(const char *what, const char *value)
{
	struct qmsg	 m, back;
	char		*text = NULL;
	int		 r;

	base(&m);
	strlcpy(m.error, value, sizeof(m.error));
	strlcpy(m.rcpts[0].reply, value, sizeof(m.rcpts[0].reply));
	r = round_trip(&m, &back, &text);
	ok(r == 0 && differs(&m, &back) == NULL, "%s survives", what);
	free(text);
	envelope_clear(&m);
	envelope_clear(&back);
}

static void
addr_survives(const char *addr)
{
	struct qmsg	 m, back;
	char		*text = NULL;
	int		 r;

	base(&m);
	strlcpy(m.from, addr, sizeof(m.from));
	if (envelope_rcpt_add(&m, addr, RCPT_FAILED) == -1)
		abort();
	r = round_trip(&m, &back, &text);
	ok(addr_mailbox_valid(addr, ADDR_UTF8) && r == 0 &&
	    differs(&m, &back) == NULL && strchr(text, '\t') == NULL,
	    "address %s survives as sender and recipient", addr);
	free(text);
	envelope_clear(&m);
	envelope_clear(&back);
}

static int
parses(const char *text)
{
	struct qmsg	 m;
	char		*t;
	int		 r;

	if ((t = strdup(text)) == NULL)
		abort();
	r = envelope_parse(&m, t);
	envelope_clear(&m);
	free(t);
	return r == 0;
}

#define V2_HEAD	"version 2\nid 0123456789abcdef\ncreated 1\nfrom a@b.c\n"

static void
refusals(void)
{
	ok(parses(V2_HEAD "rcpt pending x@y.z\n"), "a minimal envelope parses");
	ok(!parses(V2_HEAD "error a\tb\nrcpt pending x@y.z\n"),
	    "a raw TAB in a version 2 value is refused");
	ok(!parses(V2_HEAD "error a b\nrcpt pending x@y.z\n"),
	    "two tokens in a one-token field are refused");
	ok(!parses(V2_HEAD "rcpt pending x@y.z extra\n"),
	    "a third token on a rcpt line is refused");
	ok(!parses(V2_HEAD "error %G1\nrcpt pending x@y.z\n"),
	    "a bad escape is refused");
	ok(!parses(V2_HEAD "error %4\nrcpt pending x@y.z\n"),
	    "a cut escape is refused");
	ok(!parses(V2_HEAD "error a%00b\nrcpt pending x@y.z\n"),
	    "an escaped NUL is refused");
	ok(!parses(V2_HEAD "rcpt pending %3Cx@y.z%3E\n"),
	    "an invalid address, escaped, is still refused");
	ok(!parses(V2_HEAD "rcpt maybe x@y.z\n"),
	    "an unknown state is refused");
	ok(!parses("id 0123456789abcdef\nversion 2\nrcpt pending x@y.z\n"),
	    "a version that is not the first line is refused");
	ok(!parses("version 3\nid 0123456789abcdef\nrcpt pending x@y.z\n"),
	    "an unknown version is refused");
	ok(!parses(V2_HEAD "rcpt pending x@y.z"), "a last line without LF "
	    "is refused");
	ok(!parses(V2_HEAD), "an envelope without recipients is refused");
	ok(!parses(V2_HEAD "flags 4\nrcpt pending x@y.z\n"),
	    "unknown flags are refused");
}

static void
version1(void)
{
	struct qmsg	 m;
	char		 t[] = "version 1\nid 0123456789abcdef\ncreated 5\n"
	    "from \nuser alice\nhelo h\nclient 192.0.2.7\nflags 1\n"
	    "attempts 2\nnext 9\nerror 421 4.3.2 busy\tlater\n"
	    "rcpt pending \"a b\"@example.org\nreply 451 4.2.0 full\r x\n"
	    "rcpt done bob@example.org\n";

	ok(envelope_parse(&m, t) == 0 && m.from[0] == '\0' &&
	    m.flags == ENV_8BITMIME && m.attempts == 2 && m.next == 9 &&
	    strcmp(m.error, "421 4.3.2 busy\tlater") == 0 && m.nrcpts == 2 &&
	    strcmp(m.rcpts[0].addr, "\"a b\"@example.org") == 0 &&
	    strcmp(m.rcpts[0].reply, "451 4.2.0 full\r x") == 0 &&
	    m.rcpts[1].state == RCPT_DONE,
	    "a version 1 envelope, with the TAB the old writer let through, "
	    "is read");
	envelope_clear(&m);
}

/* The delay warning's record: kept, optional, never 0 when written. */
static void
warned(void)
{
	struct qmsg	 m, back;
	char		*text = NULL;
	int		 r;

	base(&m);
	r = round_trip(&m, &back, &text);
	ok(r == 0 && back.warned == 0 && strstr(text, "warned") == NULL,
	    "an envelope nobody was warned about has no \"warned\" line");
	free(text);
	envelope_clear(&back);
	m.warned = 1700003600;
	r = round_trip(&m, &back, &text);
	ok(r == 0 && back.warned == 1700003600 &&
	    strstr(text, "\nwarned 1700003600\n") != NULL,
	    "the time of the delay warning survives");
	free(text);
	envelope_clear(&m);
	envelope_clear(&back);
	ok(parses(V2_HEAD "rcpt pending x@y.z\n") &&
	    parses(V2_HEAD "warned 5\nrcpt pending x@y.z\n"),
	    "an envelope with or without \"warned\" parses");
	ok(!parses(V2_HEAD "warned 0\nrcpt pending x@y.z\n") &&
	    !parses(V2_HEAD "warned -1\nrcpt pending x@y.z\n") &&
	    !parses(V2_HEAD "warned soon\nrcpt pending x@y.z\n"),
	    "a \"warned\" that is not a time is refused");
}

static void
too_big(void)
{
	struct qmsg	 m;
	char		 addr[ADDR_MAX];
	int		 fd, i, r, e;

	base(&m);
	/* each recipient at its longest, escaped: past ENVELOPE_MAX */
	memset(addr, 0, sizeof(addr));
	memset(addr, '%', ADDR_LOCAL_MAX);
	memcpy(addr + ADDR_LOCAL_MAX, "@example.org", 12);
	for (i = 0; i < 5000; i++) {
		if (envelope_rcpt_add(&m, addr, RCPT_PENDING) == -1)
			abort();
		memset(m.rcpts[i].reply, '\t', sizeof(m.rcpts[i].reply) - 1);
	}
	if ((fd = open("/dev/null", O_WRONLY)) == -1)
		abort();
	r = envelope_write(fd, &m);
	e = errno;
	close(fd);
	ok(r == -1 && e == EFBIG, "an envelope the reader would refuse "
	    "as too big is not written");
	envelope_clear(&m);
}

int
main(void)
{
	rnd_seed(DEFAULT_SEED);

	survives("a relay reply with a TAB", "421 4.3.2 busy\tlater");
	survives("CR and LF", "451 a\rb\nc\r\n");
	survives("8-bit octets", "550 5.1.1 \xc3\xa9t\xe9 \xff\x80");
	survives("percent signs", "%41%%00%zz %");
	survives("an escape sequence", "\x1b[2J\x7f");
	survives("a field that is all spaces", "     ");
	addr_survives("\"a key=value\"@example.org");
	addr_survives("\"a\\\"b\\\\c %20\"@example.org");
	addr_survives("%41=b@[192.0.2.1]");
	refusals();
	version1();
	warned();
	too_big();
	property_round_trip();
	return tap_done();
}
