/*
 * t_body_diff.c: common/body.c and header.c against the reference model
 * (body_model.h, the per-octet code they replaced).  Random messages,
 * biased to what the state machines care about (CR, LF, dots at line
 * starts, lines about 998 octets long, header names, folding, NULs), are
 * fed to both in random pieces, as DATA comes from the network; every
 * output octet, every return value, every flag and every captured header
 * value must agree.  The same for body_stuff().  From a fixed seed that
 * is printed; REGRESS_SEED=N runs another.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"
#include "buf.h"
#include "body_model.h"
#include "rnd.h"
#include "tap.h"

#define ITERATIONS	20000
#define DEFAULT_SEED	20261203ULL
#define INPUT_MAX	8192
#define OUT_BIG		(1 << 20)

#define MSGID	"Message-ID: <1.2@test.example>\r\n"
#define DATE	"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"

/* A random message: pieces chosen for the rules they touch. */
static size_t
gen(char *p, size_t max)
{
	static const char *tokens[] = {
		"\r\n", "\r\n", "\r\n", "\r", "\n", ".", "..", "\r\n.\r\n",
		"\n.\r\n", "\r\n.\n", ".\r", "\r\r\n", "From:", "From : ",
		"Sender:", "from:", "SENDER :", "Message-ID:", "Date:",
		"Subject: x", " ", "\t", ":", "a@b.c", "<x@y.z>", "X-Y-Z:",
		"\r\n\r\n", "\r\n ", "\r\n\t", "\0", "\x80", "\xff", "abc",
	};
	size_t	 n = 0, k, len, i, ntok = sizeof(tokens) / sizeof(tokens[0]);
	size_t	 want = below(4) == 0 ? below(max) : below(400);
	int	 c;

	while (n < want) {
		switch (below(10)) {
		case 0:
			/* a run around the line limit, or an 80-octet name */
			len = below(3) == 0 ? 76 + below(8) :
			    MODEL_LINE_MAX - 3 + below(6);
			if (below(4) == 0)
				len = 78 + below(6);
			c = below(2) ? 'a' : 'N';
			for (i = 0; i < len && n < max; i++)
				p[n++] = c;
			break;
		case 1:
			/* any octet */
			if (n < max)
				p[n++] = (char)below(256);
			break;
		case 2:
			/* ordinary text */
			len = below(40);
			for (i = 0; i < len && n < max; i++)
				p[n++] = 'a' + below(26);
			break;
		default:
			k = below(ntok);
			/* "\0" is one octet */
			len = k == ntok - 4 ? 1 : strlen(tokens[k]);
			for (i = 0; i < len && n < max; i++)
				p[n++] = tokens[k][i];
			break;
		}
	}
	/* half are clean: every CR and LF is a CRLF */
	if (below(2))
		for (i = 0; i < n; i++) {
			if (p[i] == '\r' && (i + 1 == n || p[i + 1] != '\n'))
				p[i] = 'r';
			else if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
				p[i] = 'n';
		}
	/* most messages end, some more than once */
	if (below(4) != 0 && n + 5 <= max) {
		memcpy(p + n, "\r\n.\r\n", 5);
		n += 5;
	}
	return n;
}

struct got {
	struct buf	 out;
	size_t		 used;
	int		 errors;
	int		 done;
	int		 bad_piece;	/* body_scan() lied about in_input */
};

struct scan_ctx {
	struct got	*g;
	const char	*in;
	size_t		 n;
};

static int
scan_out(void *arg, const char *p, size_t n, int in_input)
{
	struct scan_ctx	*c = arg;
	struct buf	*o = &c->g->out;
	size_t		 room = o->max - buf_used(o);
	int		 inside;

	inside = (uintptr_t)p >= (uintptr_t)c->in &&
	    (uintptr_t)p + n <= (uintptr_t)c->in + c->n;
	if (in_input != inside)
		c->g->bad_piece = 1;
	if (n > room) {
		(void)buf_add(o, p, room);
		return -1;
	}
	return buf_add(o, p, n);
}

/* A random cut: mostly small, as reads of a slow client, or all. */
static size_t
cut(size_t left)
{
	size_t	 n;

	switch (below(4)) {
	case 0:
		n = 1 + below(3);
		break;
	case 1:
		n = 1 + below(64);
		break;
	case 2:
		n = 1 + below(2048);
		break;
	default:
		n = left;
		break;
	}
	return n < left ? n : left;
}

/*
 * Feed in[0..n) in pieces until the end of data; each piece is copied to
 * a buffer of its own size so that AddressSanitizer sees a read past it.
 * scan: through body_scan() and a checking output, else body_parse().
 */
static void
feed_new(struct body *b, const char *in, size_t n, const char *msgid,
    const char *date, size_t max, int scan, struct got *g)
{
	struct scan_ctx	 c;
	char		*piece;
	size_t		 off = 0, len, u;

	memset(g, 0, sizeof(*g));
	buf_init(&g->out, max);
	body_init(b, msgid, date);
	while (off < n && !b->done) {
		len = cut(n - off);
		if ((piece = malloc(len)) == NULL)
			abort();
		memcpy(piece, in + off, len);
		if (scan) {
			c.g = g;
			c.in = piece;
			c.n = len;
			u = body_scan(b, piece, len, scan_out, &c);
		} else
			u = body_parse(b, piece, len, &g->out);
		free(piece);
		if (u > len || (u < len && !b->done)) {
			g->used = (size_t)-1;
			return;
		}
		off += u;
	}
	g->used = off;
	g->errors = b->errors;
	g->done = b->done;
}

static void
feed_model(struct model_body *m, const char *in, size_t n,
    const char *msgid, const char *date, size_t max, struct got *g)
{
	size_t	 off = 0, len, u;

	memset(g, 0, sizeof(*g));
	buf_init(&g->out, max);
	model_init(m, msgid, date);
	while (off < n && !m->done) {
		len = cut(n - off);
		u = model_parse(m, in + off, len, &g->out);
		off += u;
		if (u < len)
			break;
	}
	g->used = off;
	g->errors = m->errors;
	g->done = m->done;
}

static int
same_out(const struct buf *a, const struct buf *b, size_t n)
{
	return buf_used(a) >= n && buf_used(b) >= n &&
	    (n == 0 || memcmp(buf_head(a), buf_head(b), n) == 0);
}

/* The header values the sender check and the Message-ID: logic read. */
static int
same_header(const struct header *h, const struct model_body *m)
{
	return h->ended == (m->hstate == MH_BODY) &&
	    h->nheaders == m->nheaders &&
	    h->seen_msgid == m->seen_msgid && h->seen_date == m->seen_date &&
	    h->nfrom == m->nfrom && h->fromlen == m->fromlen &&
	    memcmp(h->from, m->from, h->fromlen + 1) == 0 &&
	    h->from_long == m->from_long &&
	    h->nsender == m->nsender && h->senderlen == m->senderlen &&
	    memcmp(h->sender, m->sender, h->senderlen + 1) == 0 &&
	    h->sender_long == m->sender_long &&
	    h->no_separator == m->no_separator;
}

static void
dump(const char *what, const char *in, size_t n)
{
	size_t	 i;

	printf("# %s (%zu octets):\n# ", what, n);
	for (i = 0; i < n && i < 600; i++)
		printf("%02x", (unsigned char)in[i]);
	printf("%s\n", i < n ? "..." : "");
}

static void
test_parse(void)
{
	static char		 in[INPUT_MAX];
	static struct body	 b;
	static struct model_body m, mbig;
	struct got		 gn, gm, gbig;
	const char		*msgid, *date;
	size_t			 n, max, want;
	int			 it, bad = 0, scan, outerr = 0, done = 0;
	int			 errs = 0;

	for (it = 0; it < ITERATIONS; it++) {
		n = gen(in, sizeof(in));
		msgid = below(2) ? MSGID : NULL;
		date = below(2) ? DATE : NULL;
		/* now and then an output that is too small */
		max = below(8) == 0 ? below(n + 80) : OUT_BIG;
		scan = below(2);
		feed_new(&b, in, n, msgid, date, max, scan, &gn);
		feed_model(&m, in, n, msgid, date, max, &gm);
		feed_model(&mbig, in, n, msgid, date, OUT_BIG, &gbig);
		/*
		 * The model stops at the first piece that does not fit,
		 * the new code fills the output first: with
		 * BODY_ERR_OUTPUT, the new output is the beginning of
		 * the whole message, as long as the output allows.
		 */
		if (gn.errors & BODY_ERR_OUTPUT) {
			want = buf_used(&gbig.out) < max ?
			    buf_used(&gbig.out) : max;
			outerr++;
		} else
			want = buf_used(&gm.out);
		if (gn.used != gm.used || gn.errors != gm.errors ||
		    gn.done != gm.done || buf_used(&gn.out) != want ||
		    !same_out(&gn.out, &gbig.out, want) ||
		    !same_header(&b.hdr, &m) || gn.bad_piece) {
			if (bad++ < 3) {
				printf("# iteration %d: used %zu/%zu errors "
				    "%#x/%#x done %d/%d out %zu/%zu header "
				    "%s piece %s\n", it, gn.used, gm.used,
				    gn.errors, gm.errors, gn.done, gm.done,
				    buf_used(&gn.out), want,
				    same_header(&b.hdr, &m) ? "same" :
				    "differs", gn.bad_piece ? "lied" : "ok");
				dump("input", in, n);
			}
		}
		done += gn.done;
		errs += gn.errors != 0;
		buf_free(&gn.out);
		buf_free(&gm.out);
		buf_free(&gbig.out);
	}
	ok(bad == 0, "body_parse and body_scan agree with the per-octet "
	    "model on %d random messages in random pieces (%d differ)",
	    ITERATIONS, bad);
	/* the inputs reach what they are meant to */
	ok(done > ITERATIONS / 2 && errs > ITERATIONS / 10 &&
	    errs < ITERATIONS - ITERATIONS / 10 && outerr > 100,
	    "the random messages end (%d), break rules (%d) and overflow "
	    "the output (%d) often enough", done, errs, outerr);
}

static void
test_stuff(void)
{
	static char	 in[INPUT_MAX];
	struct buf	 a, c;
	size_t		 n, off, len;
	int		 it, bad = 0, bola, bolc;

	for (it = 0; it < ITERATIONS; it++) {
		n = gen(in, sizeof(in));
		buf_init(&a, 4 * INPUT_MAX);
		buf_init(&c, 4 * INPUT_MAX);
		bola = bolc = 1;
		for (off = 0; off < n; off += len) {
			len = cut(n - off);
			if (body_stuff(&bola, in + off, len, &a) == -1)
				bad++;
		}
		for (off = 0; off < n; off += len) {
			len = cut(n - off);
			if (model_stuff(&bolc, in + off, len, &c) == -1)
				bad++;
		}
		if (bola != bolc || buf_used(&a) != buf_used(&c) ||
		    !same_out(&a, &c, buf_used(&a))) {
			if (bad++ < 3)
				dump("body_stuff input", in, n);
		}
		buf_free(&a);
		buf_free(&c);
	}
	ok(bad == 0, "body_stuff agrees with the model on %d random "
	    "messages in random pieces (%d differ)", ITERATIONS, bad);
}

int
main(void)
{
	rnd_seed(DEFAULT_SEED);
	test_parse();
	test_stuff();
	return tap_done();
}
