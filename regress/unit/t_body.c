/*
 * t_body.c: unit tests for common/body.c (DATA framing) and header.c
 * (header scanning).  Every message is parsed whole, one byte at a time
 * and in random chunks; the three must agree.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"
#include "buf.h"
#include "tap.h"

#define MSGID	"Message-ID: <1.2@test.example>\r\n"
#define DATE	"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
#define ADDED	MSGID DATE
#define HDRS	"From: a@b.c\r\nSubject: hi\r\n"
#define END	"\r\n.\r\n"

static uint32_t	 rnd_state = 0x2545f491;

static uint32_t
rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 17;
	rnd_state ^= rnd_state << 5;
	return rnd_state;
}

struct result {
	char	*out;
	size_t	 outlen;
	int	 errors;
	int	 done;
	size_t	 used;
};

/* A printable form of s for test names, shortened. */
static const char *
esc(const char *s, size_t n)
{
	static char	 bufs[4][128];
	static int	 which;
	char		*b = bufs[which++ % 4];
	size_t		 i, o = 0;

	for (i = 0; i < n && o < sizeof(bufs[0]) - 8; i++) {
		unsigned char c = s[i];

		if (c == '\r')
			o += snprintf(b + o, 5, "\\r");
		else if (c == '\n')
			o += snprintf(b + o, 5, "\\n");
		else if (c < 0x20 || c >= 0x7f)
			o += snprintf(b + o, 5, "\\x%02x", c);
		else
			b[o++] = c;
	}
	if (i < n)
		o += snprintf(b + o, 4, "...");
	b[o] = '\0';
	return b;
}

/*
 * Feed in[0..n) in chunks of chunk bytes (0: whole, -1: random sizes)
 * until body_parse() stops consuming.  The input is copied to a buffer of
 * exactly n bytes so that AddressSanitizer sees any read past the end.
 */
static void
run(const char *in, size_t n, const char *msgid, const char *date,
    size_t max, int chunk, struct result *r)
{
	struct body	 b;
	struct buf	 o;
	char		*copy;
	size_t		 i = 0, len, used;

	if ((copy = malloc(n ? n : 1)) == NULL)
		abort();
	memcpy(copy, in, n);
	body_init(&b, msgid, date);
	buf_init(&o, max);
	memset(r, 0, sizeof(*r));
	while (i < n) {
		if (chunk == 0)
			len = n - i;
		else if (chunk < 0)
			len = 1 + rnd() % 17;
		else
			len = chunk;
		if (len > n - i)
			len = n - i;
		used = body_parse(&b, copy + i, len, &o);
		i += used;
		if (used > len || (used < len && !b.done))
			i = (size_t)-1;		/* broken promise */
		if (used < len || i > n)
			break;
	}
	/* once done, nothing more is taken */
	if (b.done && i <= n && body_parse(&b, "x\r\n", 3, &o) != 0)
		i = (size_t)-2;
	r->used = i;
	r->errors = b.errors;
	r->done = b.done;
	r->outlen = buf_used(&o);
	if ((r->out = malloc(r->outlen + 1)) == NULL)
		abort();
	if (r->outlen)
		memcpy(r->out, buf_head(&o), r->outlen);
	r->out[r->outlen] = '\0';
	buf_free(&o);
	free(copy);
}

static int
same(const struct result *a, const struct result *b)
{
	return a->used == b->used && a->errors == b->errors &&
	    a->done == b->done && a->outlen == b->outlen &&
	    memcmp(a->out, b->out, a->outlen) == 0;
}

/*
 * Parse in whole, bytewise and in random chunks; they must agree, and
 * agree with what is expected.  want == NULL: output not checked (it is
 * unspecified once an error is flagged).  wantused == (size_t)-1: all.
 */
static void
check3(const char *name, const char *in, size_t n, const char *msgid,
    const char *date, const char *want, int wanterr, int wantdone,
    size_t wantused)
{
	struct result	 w, b1, rc;

	if (wantused == (size_t)-1)
		wantused = n;
	run(in, n, msgid, date, 1 << 20, 0, &w);
	run(in, n, msgid, date, 1 << 20, 1, &b1);
	run(in, n, msgid, date, 1 << 20, -1, &rc);
	ok(w.errors == wanterr && w.done == wantdone && w.used == wantused &&
	    (want == NULL || (w.outlen == strlen(want) &&
	    memcmp(w.out, want, w.outlen) == 0)),
	    "%s: \"%s\" -> errors %#x done %d used %zu%s%s%s "
	    "(got errors %#x done %d used %zu \"%s\")", name, esc(in, n),
	    wanterr, wantdone, wantused, want ? " \"" : "",
	    want ? esc(want, strlen(want)) : "", want ? "\"" : "",
	    w.errors, w.done, w.used, esc(w.out, w.outlen));
	ok(same(&w, &b1), "%s: one byte at a time gives the same result",
	    name);
	ok(same(&w, &rc), "%s: random chunks give the same result", name);
	free(w.out);
	free(b1.out);
	free(rc.out);
}

/* A complete, valid message: everything is consumed, no error. */
static void
check(const char *name, const char *in, const char *want)
{
	check3(name, in, strlen(in), NULL, NULL, want, 0, 1, (size_t)-1);
}

static void
checkh(const char *name, const char *in, const char *want)
{
	check3(name, in, strlen(in), MSGID, DATE, want, 0, 1, (size_t)-1);
}

static void
test_nul(void)
{
	static const char in[] = HDRS "\r\na\0b\xff\r\n.\r\n";
	static const char want[] = HDRS "\r\na\0b\xff\r\n";
	struct result	 r, r1;

	run(in, sizeof(in) - 1, NULL, NULL, 1 << 20, 0, &r);
	run(in, sizeof(in) - 1, NULL, NULL, 1 << 20, 1, &r1);
	ok(r.errors == 0 && r.done && r.used == sizeof(in) - 1 &&
	    r.outlen == sizeof(want) - 1 && memcmp(r.out, want, r.outlen) == 0,
	    "NUL and 8-bit octets pass through");
	ok(same(&r, &r1), "NUL and 8-bit octets: same result bytewise");
	free(r.out);
	free(r1.out);
}

static void
test_framing(void)
{
	check("plain", HDRS "\r\nbody\r\n.\r\n", HDRS "\r\nbody\r\n");
	check("empty message", ".\r\n", "");
	checkh("empty message, added headers", ".\r\n", ADDED);
	check("two dots unstuffed", HDRS "\r\n..x\r\n.\r\n",
	    HDRS "\r\n.x\r\n");
	check("lone stuffed dot", HDRS "\r\n..\r\n.\r\n", HDRS "\r\n.\r\n");
	check("three dots", HDRS "\r\n...\r\n.\r\n", HDRS "\r\n..\r\n");
	check("dot space", HDRS "\r\n. \r\n.\r\n", HDRS "\r\n \r\n");
	check("dot x: the transparency dot is dropped",
	    HDRS "\r\n.x\r\n.\r\n", HDRS "\r\nx\r\n");
	check("dot mid line kept", HDRS "\r\na.b\r\na..\r\n.\r\n",
	    HDRS "\r\na.b\r\na..\r\n");
	check("blank lines kept", HDRS "\r\n\r\n\r\nx\r\n\r\n.\r\n",
	    HDRS "\r\n\r\n\r\nx\r\n\r\n");
	test_nul();

	/* the end of data, and what follows it */
	check3("bytes after the end are left", HDRS "\r\nx" END "QUIT\r\n",
	    strlen(HDRS "\r\nx" END "QUIT\r\n"), NULL, NULL, HDRS "\r\nx\r\n",
	    0, 1, strlen(HDRS "\r\nx" END));
	check3("pipelined MAIL after an empty message", ".\r\nMAIL FROM:<>",
	    strlen(".\r\nMAIL FROM:<>"), NULL, NULL, "", 0, 1, 3);
	check3("the first end wins", HDRS "\r\nx" END "y" END,
	    strlen(HDRS "\r\nx" END "y" END), NULL, NULL, HDRS "\r\nx\r\n",
	    0, 1, strlen(HDRS "\r\nx" END));
	check3("not finished without the end", HDRS "\r\nx\r\n.",
	    strlen(HDRS "\r\nx\r\n."), NULL, NULL, NULL, 0, 0, (size_t)-1);
	check3("not finished: \\r\\n.\\r", HDRS "\r\nx\r\n.\r",
	    strlen(HDRS "\r\nx\r\n.\r"), NULL, NULL, NULL, 0, 0, (size_t)-1);
	check3("\\r\\n.x\\r\\n is not the end", HDRS "\r\nx\r\n.x\r\n",
	    strlen(HDRS "\r\nx\r\n.x\r\n"), NULL, NULL, HDRS "\r\nx\r\nx\r\n",
	    0, 0, (size_t)-1);
	check3("\\r\\n..\\r\\n is not the end", HDRS "\r\nx\r\n..\r\n",
	    strlen(HDRS "\r\nx\r\n..\r\n"), NULL, NULL,
	    HDRS "\r\nx\r\n.\r\n", 0, 0, (size_t)-1);
	check3("\\r\\n. \\r\\n is not the end", HDRS "\r\nx\r\n. \r\n",
	    strlen(HDRS "\r\nx\r\n. \r\n"), NULL, NULL,
	    HDRS "\r\nx\r\n \r\n", 0, 0, (size_t)-1);
	check3("empty input", "", 0, NULL, NULL, "", 0, 0, 0);
}

/*
 * SMTP smuggling: no ending but <CRLF>.<CRLF> may end DATA, and each
 * of these sets an error.
 */
static void
test_smuggling(void)
{
	static const struct {
		const char	*seq;
		int		 err;
	} v[] = {
		{ "\n.\n", BODY_ERR_BARELF },
		{ "\r.\r", BODY_ERR_BARECR },
		{ "\n.\r\n", BODY_ERR_BARELF },
		{ "\r\n.\n", BODY_ERR_BARELF },
		{ "\r.\r\n", BODY_ERR_BARECR },
		{ "\n..\r\n", BODY_ERR_BARELF },
		{ "\r\n.\r\r\n", BODY_ERR_BARECR },
		{ "\r\n.\r.\r\n", BODY_ERR_BARECR },
		{ "\r\r\n.\n", BODY_ERR_BARECR | BODY_ERR_BARELF },
		{ "\rb\n", BODY_ERR_BARECR | BODY_ERR_BARELF },
		{ "a\rb", BODY_ERR_BARECR },
		{ "a\nb", BODY_ERR_BARELF },
		{ "\r\r", BODY_ERR_BARECR },
		{ "\n\n", BODY_ERR_BARELF },
		{ "\n\r\n", BODY_ERR_BARELF },
	};
	char	 msg[128], name[64];
	size_t	 i, n;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		/* the sequence at the very end must not end the data */
		n = snprintf(msg, sizeof(msg), HDRS "\r\nx%s", v[i].seq);
		snprintf(name, sizeof(name), "smuggling %s at the end",
		    esc(v[i].seq, strlen(v[i].seq)));
		check3(name, msg, n, MSGID, DATE, NULL, v[i].err, 0,
		    (size_t)-1);
		/* with more after it, still not; then a real end */
		n = snprintf(msg, sizeof(msg),
		    HDRS "\r\nx%sMAIL FROM:<a@b.c>\r\n.\r\n", v[i].seq);
		snprintf(name, sizeof(name), "smuggling %s then the end",
		    esc(v[i].seq, strlen(v[i].seq)));
		check3(name, msg, n, MSGID, DATE, NULL, v[i].err, 1,
		    (size_t)-1);
	}
	/* at the very start of the data, too */
	check3("bare LF first", "\n.\r\n", 4, MSGID, DATE, NULL,
	    BODY_ERR_BARELF, 0, (size_t)-1);
	check3("bare CR after the first dot", ".\r.\r\n", 5, MSGID, DATE,
	    NULL, BODY_ERR_BARECR, 0, (size_t)-1);
	check3(".\\n first", ".\n" END, 7, MSGID, DATE, NULL,
	    BODY_ERR_BARELF, 1, (size_t)-1);
	/* in the header section */
	check3("bare LF in a header", "Subject: a\nb\r\n\r\nx" END,
	    strlen("Subject: a\nb\r\n\r\nx" END), MSGID, DATE, NULL,
	    BODY_ERR_BARELF, 1, (size_t)-1);
	check3("bare CR in a header", "Subject: a\rb\r\n\r\nx" END,
	    strlen("Subject: a\rb\r\n\r\nx" END), MSGID, DATE, NULL,
	    BODY_ERR_BARECR, 1, (size_t)-1);
	/* an error is remembered over later good lines */
	check3("error sticks", HDRS "\r\na\nb\r\nc\r\nd\r\n.\r\n",
	    strlen(HDRS "\r\na\nb\r\nc\r\nd\r\n.\r\n"), NULL, NULL, NULL,
	    BODY_ERR_BARELF, 1, (size_t)-1);
	/* the end is found even after an error, and nothing beyond it */
	check3("end after error, rest left", HDRS "\r\na\rb" END "RSET\r\n",
	    strlen(HDRS "\r\na\rb" END "RSET\r\n"), NULL, NULL, NULL,
	    BODY_ERR_BARECR, 1, strlen(HDRS "\r\na\rb" END));
}

static void
test_long(void)
{
	char	*in, *want, line[1100];
	size_t	 n;

	if ((in = malloc(4096)) == NULL || (want = malloc(4096)) == NULL)
		abort();

	memset(line, 'x', sizeof(line));
	n = snprintf(in, 4096, HDRS "\r\n%.998s" END, line);
	snprintf(want, 4096, HDRS "\r\n%.998s\r\n", line);
	check3("998 octets", in, n, NULL, NULL, want, 0, 1, (size_t)-1);

	n = snprintf(in, 4096, HDRS "\r\n%.999s" END, line);
	check3("999 octets", in, n, NULL, NULL, NULL, BODY_ERR_LONG, 1,
	    (size_t)-1);

	n = snprintf(in, 4096, HDRS "\r\n%.998s\r\n%.998s\r\n%.998s" END,
	    line, line, line);
	snprintf(want, 4096, HDRS "\r\n%.998s\r\n%.998s\r\n%.998s\r\n",
	    line, line, line);
	check3("three lines of 998", in, n, NULL, NULL, want, 0, 1,
	    (size_t)-1);

	/* the transparency dot does not count (RFC 5321 4.5.3.1.6) */
	n = snprintf(in, 4096, HDRS "\r\n.%.998s" END, line);
	snprintf(want, 4096, HDRS "\r\n%.998s\r\n", line);
	check3("998 octets after a transparency dot", in, n, NULL, NULL, want,
	    0, 1, (size_t)-1);

	n = snprintf(in, 4096, "Subject: %.989s\r\n\r\nx" END, line);
	snprintf(want, 4096, "Subject: %.989s\r\n" ADDED "\r\nx\r\n", line);
	check3("header line of 998", in, n, MSGID, DATE, want, 0, 1,
	    (size_t)-1);
	n = snprintf(in, 4096, "Subject: %.990s\r\n\r\nx" END, line);
	check3("header line of 999", in, n, MSGID, DATE, NULL, BODY_ERR_LONG,
	    1, (size_t)-1);

	n = snprintf(in, 4096, "%.999s" END, line);
	check3("first line of 999, not a header", in, n, MSGID, DATE, NULL,
	    BODY_ERR_LONG, 1, (size_t)-1);

	n = snprintf(in, 4096, HDRS "\r\n%.1099s", line);
	check3("999 octets and no end yet", in, n, NULL, NULL, NULL,
	    BODY_ERR_LONG, 0, (size_t)-1);

	free(in);
	free(want);
}

static void
test_headers(void)
{
	checkh("both added before the blank line", HDRS "\r\nbody\r\n.\r\n",
	    HDRS ADDED "\r\nbody\r\n");
	checkh("none added when present",
	    "Message-ID: <x@y>\r\nDate: today\r\n\r\nb\r\n.\r\n",
	    "Message-ID: <x@y>\r\nDate: today\r\n\r\nb\r\n");
	checkh("names are case-insensitive",
	    "message-id: <x@y>\r\nDATE: today\r\n\r\nb\r\n.\r\n",
	    "message-id: <x@y>\r\nDATE: today\r\n\r\nb\r\n");
	checkh("MESSAGE-ID and date",
	    "date:x\r\nMESSAGE-ID:<x@y>\r\n\r\n.\r\n",
	    "date:x\r\nMESSAGE-ID:<x@y>\r\n\r\n");
	checkh("only Date: added", "Subject: a\r\nMessage-Id: <x@y>\r\n\r\nb"
	    END, "Subject: a\r\nMessage-Id: <x@y>\r\n" DATE "\r\nb\r\n");
	checkh("only Message-ID: added", "Date: d\r\nSubject: a\r\n\r\nb" END,
	    "Date: d\r\nSubject: a\r\n" MSGID "\r\nb\r\n");
	checkh("headers only", HDRS ".\r\n", HDRS ADDED);
	checkh("headers only, all present",
	    "Date: d\r\nMessage-ID: <m@x>\r\n.\r\n",
	    "Date: d\r\nMessage-ID: <m@x>\r\n");
	checkh("first line not a header", "hello world\r\nbye\r\n.\r\n",
	    ADDED "\r\nhello world\r\nbye\r\n");
	checkh("first line a word", "hello\r\n.\r\n", ADDED "\r\nhello\r\n");
	checkh("first line blank", "\r\nbody\r\n.\r\n", ADDED "\r\nbody\r\n");
	checkh("empty", ".\r\n", ADDED);
	checkh("body after headers without a blank line",
	    "Subject: a\r\nthis is text\r\n.\r\n",
	    "Subject: a\r\n" ADDED "\r\nthis is text\r\n");
	checkh("continuation lines",
	    "Subject: a\r\n b\r\nTo: c,\r\n\td\r\n\r\nx" END,
	    "Subject: a\r\n b\r\nTo: c,\r\n\td\r\n" ADDED "\r\nx\r\n");
	checkh("a continuation line is not a field",
	    "Subject: a\r\n Message-ID: <x@y>\r\n Date: d\r\n\r\nx" END,
	    "Subject: a\r\n Message-ID: <x@y>\r\n Date: d\r\n" ADDED
	    "\r\nx\r\n");
	checkh("a continuation as the first line is body",
	    " Subject: a\r\n.\r\n", ADDED "\r\n Subject: a\r\n");
	checkh("fields in the body do not count",
	    "Subject: a\r\n\r\nMessage-ID: <x@y>\r\nDate: d\r\n.\r\n",
	    "Subject: a\r\n" ADDED "\r\nMessage-ID: <x@y>\r\nDate: d\r\n");
	checkh("similar names do not count",
	    "Message-IDs: x\r\nX-Date: y\r\nDated: z\r\nResent-Date: w\r\n"
	    "\r\nb" END,
	    "Message-IDs: x\r\nX-Date: y\r\nDated: z\r\nResent-Date: w\r\n"
	    ADDED "\r\nb\r\n");
	checkh("a dot-stuffed header line",
	    "..X: y\r\n\r\nb" END, ".X: y\r\n" ADDED "\r\nb\r\n");
	checkh("8-bit in the body", HDRS "\r\n\xc3\xa9t\xc3\xa9\r\n.\r\n",
	    HDRS ADDED "\r\n\xc3\xa9t\xc3\xa9\r\n");
	check3("nothing supplied, nothing added", HDRS "\r\nb" END,
	    strlen(HDRS "\r\nb" END), NULL, NULL, HDRS "\r\nb\r\n", 0, 1,
	    (size_t)-1);
	check3("only a Date supplied", HDRS "\r\nb" END,
	    strlen(HDRS "\r\nb" END), NULL, DATE, HDRS DATE "\r\nb\r\n", 0, 1,
	    (size_t)-1);
	check3("an unfinished header section adds nothing yet",
	    HDRS "Subject: x", strlen(HDRS "Subject: x"), MSGID, DATE,
	    HDRS "Subject: x", 0, 0, (size_t)-1);
}

/* RFC 5322 puts no limit on a field name but the line length. */
static void
test_long_name(void)
{
	char	 name[200], in[512], want[512];
	size_t	 n;

	memset(name, 'N', sizeof(name));
	name[0] = 'X';
	name[1] = '-';
	n = snprintf(in, sizeof(in),
	    "%.80s: a\r\nSubject: b\r\n\r\nc\r\n.\r\n", name);
	snprintf(want, sizeof(want), "%.80s: a\r\nSubject: b\r\n" ADDED
	    "\r\nc\r\n", name);
	check3("a field name of 80 octets", in, n, MSGID, DATE, want, 0, 1,
	    (size_t)-1);
	n = snprintf(in, sizeof(in),
	    "%.120s: a\r\nSubject: b\r\n\r\nc\r\n.\r\n", name);
	snprintf(want, sizeof(want), "%.120s: a\r\nSubject: b\r\n" ADDED
	    "\r\nc\r\n", name);
	check3("a field name of 120 octets", in, n, MSGID, DATE, want, 0, 1,
	    (size_t)-1);
}

static void
test_output_limit(void)
{
	static const char in[] = HDRS "\r\nsome body text\r\n.\r\n" "QUIT\r\n";
	struct result	 r, r1;
	size_t		 n = sizeof(in) - 1;

	run(in, n, MSGID, DATE, 20, 0, &r);
	run(in, n, MSGID, DATE, 20, 1, &r1);
	ok(r.errors == BODY_ERR_OUTPUT,
	    "a full output buffer sets BODY_ERR_OUTPUT (got %#x)", r.errors);
	ok(r.done == 1 && r.used == n - 6,
	    "the end is still found with a full output buffer");
	ok(r.outlen <= 20, "the output buffer limit holds (%zu)", r.outlen);
	ok(same(&r, &r1), "full output buffer: same result bytewise");
	free(r.out);
	free(r1.out);

	/* an exact fit is not an error */
	run(HDRS "\r\nb" END, strlen(HDRS "\r\nb" END), NULL, NULL,
	    strlen(HDRS "\r\nb\r\n"), 0, &r);
	ok(r.errors == 0 && r.done && r.outlen == strlen(HDRS "\r\nb\r\n"),
	    "an output buffer of exactly the message size is enough");
	free(r.out);
	run(HDRS "\r\nb" END, strlen(HDRS "\r\nb" END), NULL, NULL,
	    strlen(HDRS "\r\nb\r\n") - 1, 0, &r);
	ok(r.errors == BODY_ERR_OUTPUT && r.done,
	    "one byte less is BODY_ERR_OUTPUT");
	free(r.out);
	/* the added lines count too */
	run(".\r\n", 3, MSGID, DATE, strlen(ADDED) - 1, 0, &r);
	ok(r.errors == BODY_ERR_OUTPUT && r.done,
	    "added lines that do not fit are BODY_ERR_OUTPUT");
	free(r.out);
}

/* Stuff s in pieces split at the given points, as the relay would. */
static int
stuff_split(const char *s, size_t n, size_t cut1, size_t cut2,
    struct buf *o)
{
	int	 bol = 1;

	if (body_stuff(&bol, s, cut1, o) == -1 ||
	    body_stuff(&bol, s + cut1, cut2 - cut1, o) == -1 ||
	    body_stuff(&bol, s + cut2, n - cut2, o) == -1)
		return -1;
	return bol;
}

static void
test_stuff(void)
{
	static const char msg[] = "Date: d\r\nMessage-ID: <m@x>\r\n\r\n"
	    ".\r\n..\r\n.x\r\nx.\r\n\r\n. \r\n.\r\n...\r\nend\r\n";
	static const char stuffed[] = "Date: d\r\nMessage-ID: <m@x>\r\n\r\n"
	    "..\r\n...\r\n..x\r\nx.\r\n\r\n.. \r\n..\r\n....\r\nend\r\n";
	struct buf	 o;
	struct result	 r;
	size_t		 n = sizeof(msg) - 1, c1, c2, bad = 0, badbol = 0;
	int		 bol;

	buf_init(&o, 1 << 16);
	bol = 1;
	ok(body_stuff(&bol, msg, n, &o) == 0 && bol == 1 &&
	    buf_used(&o) == sizeof(stuffed) - 1 &&
	    memcmp(buf_head(&o), stuffed, sizeof(stuffed) - 1) == 0,
	    "body_stuff doubles leading dots only");
	fixture(buf_add(&o, ".\r\n", 3) == 0);
	run(buf_head(&o), buf_used(&o), MSGID, DATE, 1 << 20, 1, &r);
	ok(r.errors == 0 && r.done && r.used == buf_used(&o) &&
	    r.outlen == n && memcmp(r.out, msg, n) == 0,
	    "stuff, end, parse gives the original back");
	free(r.out);
	buf_free(&o);

	/* every way of cutting it in three gives the same bytes */
	for (c1 = 0; c1 <= n; c1++) {
		for (c2 = c1; c2 <= n; c2++) {
			buf_init(&o, 1 << 16);
			if (stuff_split(msg, n, c1, c2, &o) != 1)
				badbol++;
			if (buf_used(&o) != sizeof(stuffed) - 1 ||
			    memcmp(buf_head(&o), stuffed, buf_used(&o)) != 0)
				bad++;
			buf_free(&o);
		}
	}
	ok(bad == 0, "body_stuff split across calls at every point gives "
	    "the same output (%zu differ)", bad);
	ok(badbol == 0, "bol is 1 after a message ending in CRLF");

	buf_init(&o, 1 << 16);
	bol = 1;
	ok(body_stuff(&bol, "a", 1, &o) == 0 && bol == 0,
	    "bol is 0 inside a line");
	ok(body_stuff(&bol, ".b\r", 3, &o) == 0 && bol == 0,
	    "a dot inside a line is not stuffed");
	ok(body_stuff(&bol, "\n", 1, &o) == 0 && bol == 1,
	    "bol is 1 after LF");
	ok(body_stuff(&bol, ".", 1, &o) == 0 && bol == 0,
	    "a dot alone at the start of a chunk");
	ok(body_stuff(&bol, "", 0, &o) == 0 && bol == 0,
	    "an empty chunk changes nothing");
	ok(buf_used(&o) == 7 && memcmp(buf_head(&o), "a.b\r\n..", 7) == 0,
	    "split stuffing: \"a.b\\r\\n..\"");
	buf_free(&o);

	buf_init(&o, 4);
	bol = 1;
	ok(body_stuff(&bol, ".abcd", 5, &o) == -1,
	    "body_stuff reports a full output buffer");
	buf_free(&o);
}

/*
 * Reference model of the framing for the fuzz test: the end is the first
 * <CRLF>.<CRLF> counting the CRLF that ended the DATA command; a CR not
 * followed by LF is bare, as is an LF not preceded by CR.
 */
static void
model(const char *in, size_t n, int *done, size_t *used, int *err)
{
	size_t	 i, end = n;

	*done = 0;
	for (i = 0; i + 3 <= n; i++) {
		if (in[i] != '.' || in[i + 1] != '\r' || in[i + 2] != '\n')
			continue;
		if (i == 0 || (i >= 2 && in[i - 2] == '\r' &&
		    in[i - 1] == '\n')) {
			*done = 1;
			end = i + 3;
			break;
		}
	}
	*used = end;
	*err = 0;
	for (i = 0; i < end; i++) {
		if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
			*err |= BODY_ERR_BARELF;
		/* a CR as the last byte fed may still be followed by LF */
		if (in[i] == '\r' && i + 1 < end && in[i + 1] != '\n')
			*err |= BODY_ERR_BARECR;
	}
}

/* The stored form of a clean message: drop each line's leading dot. */
static size_t
unstuff(const char *in, size_t n, char *out)
{
	size_t	 i, o = 0;
	int	 bol = 1;

	for (i = 0; i < n; i++) {
		if (bol && in[i] == '.') {
			bol = 0;
			continue;
		}
		out[o++] = in[i];
		bol = in[i] == '\n';
	}
	return o;
}

static int
clean_lines(const char *s, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++) {
		if (s[i] == '\r' && (i + 1 == n || s[i + 1] != '\n'))
			return 0;
		if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
			return 0;
	}
	return 1;
}

static void
test_fuzz(void)
{
	static const char pre[] = "Message-ID: <a@b>\r\nDate: d\r\n\r\n";
	static const char *pieces[] = {
		"\r\n", "\r\n", "\r\n", ".", ".", "\r", "\n", "a", "b:", " ",
		"\r\n.\r\n", "\r\n.", ".\r\n", "\n.\n", "\r.\r", "\x00",
	};
	char		 in[512], ref[512];
	struct result	 w, b1, rc;
	size_t		 n, i, k, mused, reflen;
	size_t		 disagree = 0, wrongend = 0, wrongerr = 0;
	size_t		 wrongout = 0, dirty = 0, nerr = 0, ndone = 0;
	int		 mdone, merr, iter;

	for (iter = 0; iter < 20000; iter++) {
		memcpy(in, pre, sizeof(pre) - 1);
		n = sizeof(pre) - 1;
		k = rnd() % 40;
		for (i = 0; i < k; i++) {
			const char *p = pieces[rnd() %
			    (sizeof(pieces) / sizeof(pieces[0]))];
			size_t	 pl = p[0] == '\0' ? 1 : strlen(p);

			if (n + pl > sizeof(in))
				break;
			memcpy(in + n, p, pl);
			n += pl;
		}
		run(in, n, MSGID, DATE, 1 << 20, 0, &w);
		run(in, n, MSGID, DATE, 1 << 20, 1, &b1);
		run(in, n, MSGID, DATE, 1 << 20, -1, &rc);
		if (!same(&w, &b1) || !same(&w, &rc))
			disagree++;
		model(in, n, &mdone, &mused, &merr);
		if (w.done != mdone || w.used != mused)
			wrongend++;
		if (w.errors != merr)
			wrongerr++;
		if (w.errors == 0 && w.done) {
			/* the model: unstuffed lines up to the end */
			reflen = unstuff(in, mused - 3, ref);
			if (reflen != w.outlen ||
			    memcmp(ref, w.out, reflen) != 0)
				wrongout++;
		}
		if (w.errors == 0 && !clean_lines(w.out, w.outlen))
			dirty++;
		nerr += w.errors != 0;
		ndone += w.done;
		free(w.out);
		free(b1.out);
		free(rc.out);
	}
	ok(nerr > 1000 && nerr < 19000 && ndone > 1000 && ndone < 19000,
	    "fuzz: the generator makes good and bad, ended and unended input "
	    "(%zu errors, %zu ended)", nerr, ndone);
	ok(disagree == 0, "fuzz: whole, bytewise and chunked parses agree "
	    "(%zu differ)", disagree);
	ok(wrongend == 0, "fuzz: DATA ends exactly at the first <CRLF>.<CRLF> "
	    "(%zu wrong)", wrongend);
	ok(wrongerr == 0, "fuzz: bare CR/LF flagged exactly when present "
	    "(%zu wrong)", wrongerr);
	ok(wrongout == 0, "fuzz: clean messages come out unstuffed and "
	    "otherwise unchanged (%zu wrong)", wrongout);
	ok(dirty == 0, "fuzz: no bare CR or LF in output without an error "
	    "(%zu)", dirty);
}

/* Parse msg whole and byte by byte; both bodies must capture alike. */
static int
captured(const char *msg, struct body *whole)
{
	static struct body	 one;
	struct buf		 o;
	size_t			 i, n = strlen(msg);

	body_init(whole, NULL, NULL);
	buf_init(&o, 1 << 20);
	body_parse(whole, msg, n, &o);
	buf_free(&o);
	body_init(&one, NULL, NULL);
	buf_init(&o, 1 << 20);
	for (i = 0; i < n && !one.done; i++)
		body_parse(&one, msg + i, 1, &o);
	buf_free(&o);
	return whole->done && one.done && whole->hdr.nfrom == one.hdr.nfrom &&
	    whole->hdr.nsender == one.hdr.nsender &&
	    strcmp(whole->hdr.from, one.hdr.from) == 0 &&
	    strcmp(whole->hdr.sender, one.hdr.sender) == 0 &&
	    whole->hdr.from_long == one.hdr.from_long &&
	    whole->hdr.sender_long == one.hdr.sender_long;
}

static void
test_from_capture(void)
{
	static struct body	 b;
	static char		 msg[3 * BODY_FIELD_MAX];
	size_t			 n;

	ok(captured("From: Alice\r\n <a@b.c>,\r\n\tc@d.e\r\nSender: s@t.u\r\n"
	    "\r\nbody\r\n.\r\n", &b) && b.hdr.nfrom == 1 &&
	    b.hdr.nsender == 1 &&
	    strcmp(b.hdr.from, " Alice <a@b.c>,\tc@d.e") == 0 &&
	    strcmp(b.hdr.sender, " s@t.u") == 0,
	    "From: unfolded with its white space, Sender: kept");
	ok(captured("From : x@y.z\r\nFrom\t: p@q.r\r\n\r\n.\r\n", &b) &&
	    b.hdr.nfrom == 2 && strcmp(b.hdr.from, " x@y.z") == 0,
	    "\"From :\" (obsolete syntax) counts as a From: field");
	ok(captured("Subject: a\r\nFromage: x\r\nsender: s@t.u\r\n\r\n.\r\n",
	    &b) && b.hdr.nfrom == 0 && b.hdr.nsender == 1,
	    "names match whole, in any case");
	n = strlcpy(msg, "From: a@b.c", sizeof(msg));
	while (n < 2 * BODY_FIELD_MAX)
		n += strlcpy(msg + n, ",\r\n x@y.z", sizeof(msg) - n);
	strlcat(msg, "\r\n\r\n.\r\n", sizeof(msg));
	ok(captured(msg, &b) && b.hdr.from_long &&
	    b.hdr.fromlen == BODY_FIELD_MAX &&
	    !b.hdr.sender_long, "a From: over %d octets is flagged, not cut "
	    "silently", BODY_FIELD_MAX);
	memmove(msg + 6, msg + 4, strlen(msg + 4) + 1);
	memcpy(msg, "Sender", 6);
	ok(captured(msg, &b) && b.hdr.sender_long && !b.hdr.from_long,
	    "so is a Sender:");
}

int
main(void)
{
	test_from_capture();
	test_framing();
	test_smuggling();
	test_long();
	test_headers();
	test_long_name();
	test_output_limit();
	test_stuff();
	test_fuzz();
	return tap_done();
}
