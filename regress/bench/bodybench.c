/*
 * bodybench.c: the speed of the DATA framing (common/body.c), without
 * the network.  A 10 MB message (a header section, then text lines of
 * 76 octets with CRLF, one in a thousand starting with a dot; or, the
 * long variant, lines of 990 octets) is fed to body_parse() in 16 KB
 * pieces, as the listener reads them, into a buffer emptied after each
 * piece, as the listener writes it out; body_scan() the same without
 * the copy; body_stuff() dot-stuffs the stored message for the relay in
 * 64 KB pieces.  Prints one line per figure:
 *
 *	parse_MB/s 1234.5
 *
 * the best of several rounds (MB = 10^6 octets).  It asserts nothing
 * about speed: `make bench` prints the figures, the test suite only
 * builds and runs it (t_bench).
 *
 *	bodybench [seconds]	about that long per figure (default 1)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "body.h"
#include "buf.h"

#define MSG_SIZE	(10 * 1000 * 1000)
#define READ_PIECE	16384
#define STUFF_PIECE	65536

static const char headers[] =
    "From: Alice Example <alice@example.org>\r\n"
    "To: Bob Example <bob@example.net>\r\n"
    "Subject: the quarterly figures, as promised\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n";

static volatile size_t	 sink_total;

static double
now(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The message on the wire: dot-stuffed, ended by ".\r\n". */
static char *
message(size_t linelen, size_t *n)
{
	char	*p;
	size_t	 o, i, line = 0;

	if ((p = malloc(MSG_SIZE + linelen + 16)) == NULL)
		abort();
	o = strlen(headers);
	memcpy(p, headers, o);
	while (o < MSG_SIZE) {
		/* a dot line, stuffed, now and then */
		if (++line % 1000 == 0) {
			p[o++] = '.';
			p[o++] = '.';
		}
		for (i = 0; i < linelen; i++)
			p[o++] = i % 7 == 6 ? ' ' : 'a' + (line + i) % 26;
		p[o++] = '\r';
		p[o++] = '\n';
	}
	memcpy(p + o, ".\r\n", 3);
	*n = o + 3;
	return p;
}

static int
count_out(void *arg, const char *p, size_t n, int in_input)
{
	sink_total += n + (unsigned char)p[0];
	return 0;
}

/* One pass; returns the octets stored. */
static size_t
parse_once(const char *in, size_t n, int scan, struct buf *o)
{
	struct body	 b;
	size_t		 off = 0, len, stored = 0;

	body_init(&b, "Message-ID: <x@y>\r\n", "Date: now\r\n");
	while (off < n && !b.done) {
		len = n - off < READ_PIECE ? n - off : READ_PIECE;
		if (scan)
			off += body_scan(&b, in + off, len, count_out, NULL);
		else {
			off += body_parse(&b, in + off, len, o);
			stored += buf_used(o);
			buf_drain(o, buf_used(o));
		}
	}
	if (!b.done || b.errors)
		abort();
	return stored;
}

static size_t
stuff_once(const char *in, size_t n, struct buf *o)
{
	size_t	 off, len, out = 0;
	int	 bol = 1;

	for (off = 0; off < n; off += len) {
		len = n - off < STUFF_PIECE ? n - off : STUFF_PIECE;
		if (body_stuff(&bol, in + off, len, o) == -1)
			abort();
		out += buf_used(o);
		buf_drain(o, buf_used(o));
	}
	return out;
}

enum { PARSE, SCAN, STUFF };

/* MB/s of the input, the best round of about secs in all. */
static double
measure(int what, const char *in, size_t n, double secs)
{
	struct buf	 o;
	double		 t0, t, best = 0, start = now();
	int		 rounds = 0;

	buf_init(&o, 4 * STUFF_PIECE);
	do {
		t0 = now();
		if (what == STUFF)
			sink_total += stuff_once(in, n, &o);
		else
			sink_total += parse_once(in, n, what == SCAN, &o);
		t = now() - t0;
		if (t > 0 && n / t / 1e6 > best)
			best = n / t / 1e6;
	} while (++rounds < 3 || now() - start < secs);
	buf_free(&o);
	return best;
}

int
main(int argc, char *argv[])
{
	struct buf	 stored;
	struct body	 b;
	char		*wire[2];
	size_t		 n[2];
	double		 secs = argc > 1 ? atof(argv[1]) : 1;
	int		 i;
	const char	*suffix[2] = { "", "_long" };

	if (secs <= 0 || secs > 600) {
		fprintf(stderr, "usage: bodybench [seconds]\n");
		return 2;
	}
	wire[0] = message(76, &n[0]);
	wire[1] = message(990, &n[1]);
	for (i = 0; i < 2; i++) {
		printf("parse%s_MB/s %.1f\n", suffix[i],
		    measure(PARSE, wire[i], n[i], secs / 5));
		printf("scan%s_MB/s %.1f\n", suffix[i],
		    measure(SCAN, wire[i], n[i], secs / 5));
		fflush(stdout);
	}
	/* the relay's side: the stored form of the same messages */
	for (i = 0; i < 2; i++) {
		buf_init(&stored, 2 * MSG_SIZE);
		body_init(&b, NULL, NULL);
		if (body_parse(&b, wire[i], n[i], &stored) != n[i] ||
		    b.errors)
			abort();
		printf("stuff%s_MB/s %.1f\n", suffix[i],
		    measure(STUFF, buf_head(&stored), buf_used(&stored),
		    secs / 5));
		fflush(stdout);
		buf_free(&stored);
	}
	free(wire[0]);
	free(wire[1]);
	return 0;
}
