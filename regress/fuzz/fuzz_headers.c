/*
 * fuzz_headers.c: the header scan in body_parse() that adds Message-ID:
 * and Date: when a submitted message lacks them (RFC 6409 section 8).
 *
 * The input is taken as message text: line ends are made CRLF and lines
 * are dot-stuffed, so the framing is clean and only the headers vary.
 * Independently of body.c, the harness finds where the header section
 * ends and whether it holds a Message-ID or Date field, and checks that
 * the output is the text with exactly the missing lines inserted there,
 * and a blank line after them when the body started without one.
 *
 * The model also takes the value of the first From: field, unfolded, and
 * counts the From: fields: what the sender check ("senders
 * check-header-from") reads from body.c.  And the same wire is parsed
 * again in pieces, cut where the input says, as the listener gets it
 * from the network: the output must be the same, byte for byte.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "body.h"
#include "buf.h"
#include "fuzz.h"

#define ADD_MSGID	"Message-ID: <fuzz.1@smsubmit.invalid>\r\n"
#define ADD_DATE	"Date: Thu, 1 Jan 2026 00:00:00 +0000\r\n"
#define HNAME_MAX	80	/* body.c keeps no longer a field name */

struct model {
	size_t	 hend;		/* where the header section ends in the text */
	int	 separator;	/* it ended on a line that is not a header */
	int	 msgid;
	int	 date;
	int	 nfrom;		/* From: fields */
	char	 from[2 * BODY_LINE_MAX];	/* the first one's value, */
	size_t	 fromlen;	/* without its line ends */
};

/* The first From: field's value: the rest of its line, and of its
 * continuation lines. */
static void
from_add(struct model *m, const char *p, size_t n)
{
	size_t	 i;

	if (m->fromlen + n > sizeof(m->from))
		n = sizeof(m->from) - m->fromlen;
	/* as body.c keeps it: a NUL as \x01, so it cannot end the string */
	for (i = 0; i < n; i++)
		m->from[m->fromlen + i] = p[i] == '\0' ? '\x01' : p[i];
	m->fromlen += n;
}

/*
 * A header line is a name of octets 33..126 then ':' (the first ':' after
 * at least one octet), or a run of more than 80 such octets, which is
 * longer than any name we look for and is taken as a field as it stands.
 * White space may come between the name and the ':' (the obsolete syntax
 * of RFC 5322 section 4.5.3), as long as the two stay within 80 octets.
 * A line starting with SP or HT continues the previous field.  The first
 * other line ends the section.
 */
/*
 * buf_head() of a buffer that never held data computes NULL + 0, which
 * UBSan reports; the harness only looks at buffers through this.
 */
static const char *
head(const struct buf *b)
{
	return buf_used(b) > 0 ? buf_head(b) : "";
}

static void
model_scan(const char *t, size_t n, struct model *m)
{
	size_t	 pos = 0, eol, i, namelen;
	int	 nheaders = 0, header, in_from = 0;

	memset(m, 0, sizeof(*m));
	while (pos < n) {
		eol = pos;
		while (eol + 1 < n && !(t[eol] == '\r' && t[eol + 1] == '\n'))
			eol++;
		/* every line ends in CRLF: made so by the caller */
		if (eol == pos) {
			m->hend = pos;
			return;
		}
		if (t[pos] == ' ' || t[pos] == '\t') {
			if (nheaders == 0)
				break;
			if (in_from)
				from_add(m, t + pos, eol - pos);
			pos = eol + 2;
			continue;
		}
		header = 0;
		for (i = pos; i < eol; i++) {
			unsigned char c = t[i];

			if (c == ':' && i > pos) {
				header = 1;
				break;
			}
			if (c < 33 || c > 126)
				break;
			if (i - pos == HNAME_MAX) {
				header = 2;
				break;
			}
		}
		namelen = i - pos;
		if (!header && i > pos && i < eol &&
		    (t[i] == ' ' || t[i] == '\t')) {
			while (i < eol && (t[i] == ' ' || t[i] == '\t') &&
			    i - pos < HNAME_MAX)
				i++;
			if (i < eol && t[i] == ':')
				header = 1;
		}
		if (!header)
			break;
		if (header == 1 && namelen == 10 &&
		    strncasecmp(t + pos, "Message-ID", 10) == 0)
			m->msgid = 1;
		if (header == 1 && namelen == 4 &&
		    strncasecmp(t + pos, "Date", 4) == 0)
			m->date = 1;
		in_from = header == 1 && namelen == 4 &&
		    strncasecmp(t + pos, "From", 4) == 0 && m->nfrom++ == 0;
		if (in_from)
			from_add(m, t + i + 1, eol - i - 1);
		nheaders++;
		pos = eol + 2;
	}
	m->hend = pos;
	m->separator = pos < n;
}

static size_t
parse(const char *wire, size_t n, const char *msgid, const char *date,
    struct buf *o, int *errors, struct body *b)
{
	size_t		 c;

	body_init(b, msgid, date);
	c = body_parse(b, wire, n, o);
	CHECK(b->done);
	*errors = b->errors;
	return c;
}

/* The same, n octets given in pieces cut where cuts[] says. */
static size_t
parse_split(const char *wire, size_t n, const char *msgid, const char *date,
    struct buf *o, const uint8_t *cuts, size_t ncuts, struct body *b)
{
	size_t	 off = 0, c = 0, piece, k = 0, got;

	body_init(b, msgid, date);
	while (off < n && !b->done) {
		piece = ncuts > 0 ? (size_t)cuts[k++ % ncuts] % 97 + 1 : n;
		if (piece > n - off)
			piece = n - off;
		got = body_parse(b, wire + off, piece, o);
		/* all of it, unless the end of data came inside it */
		CHECK(got == piece || (b->done && got < piece));
		c += got;
		off += piece;
	}
	CHECK(b->done);
	return c;
}

/* Equal but for spaces and tabs (how folding whitespace is kept). */
static int
same_words(const char *a, size_t na, const char *b, size_t nb)
{
	size_t	 i = 0, j = 0;

	for (;;) {
		while (i < na && (a[i] == ' ' || a[i] == '\t'))
			i++;
		while (j < nb && (b[j] == ' ' || b[j] == '\t'))
			j++;
		if (i == na || j == nb)
			return i == na && j == nb;
		if (a[i++] != b[j++])
			return 0;
	}
}

static void
expect(const struct buf *o, const char *t, size_t n, const struct model *m,
    const char *ins1, const char *ins2)
{
	const char	*p = head(o);
	size_t		 left = buf_used(o), k;

#define TAKE(s, len) do {						\
	k = (len);							\
	CHECK(left >= k && (k == 0 || memcmp(p, (s), k) == 0));	\
	p += k;								\
	left -= k;							\
} while (0)
	TAKE(t, m->hend);
	if (ins1 != NULL)
		TAKE(ins1, strlen(ins1));
	if (ins2 != NULL)
		TAKE(ins2, strlen(ins2));
	/* a blank line only to keep the body from following what was added */
	if (m->separator && (ins1 != NULL || ins2 != NULL))
		TAKE("\r\n", 2);
	TAKE(t + m->hend, n - m->hend);
	CHECK(left == 0);
#undef TAKE
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct {
		const char	*msgid, *date;
	} adds[] = {
		{ ADD_MSGID, ADD_DATE },
		{ ADD_MSGID, NULL },
		{ NULL, ADD_DATE },
		{ NULL, NULL }
	};
	struct model	 m;
	struct body	 b, b2;
	struct buf	 o, o2;
	char		*text, *wire;
	size_t		 i, n, w, max, c;
	int		 errors, errors0 = 0, j;

	if (size > 65536)
		return 0;
	/* the text, every line ending in CRLF */
	if ((text = malloc(2 * size + 2)) == NULL)
		return 0;
	for (i = n = 0; i < size; i++) {
		if (data[i] == '\r' && i + 1 < size && data[i + 1] == '\n')
			continue;
		if (data[i] == '\r' || data[i] == '\n') {
			text[n++] = '\r';
			text[n++] = '\n';
		} else
			text[n++] = data[i];
	}
	if (n > 0 && text[n - 1] != '\n') {
		text[n++] = '\r';
		text[n++] = '\n';
	}
	/* on the wire: dot-stuffed, then the end of data */
	if ((wire = malloc(2 * n + 3)) == NULL) {
		free(text);
		return 0;
	}
	for (i = w = 0; i < n; i++) {
		if (text[i] == '.' && (i == 0 || text[i - 1] == '\n'))
			wire[w++] = '.';
		wire[w++] = text[i];
	}
	memcpy(wire + w, ".\r\n", 3);
	w += 3;

	model_scan(text, n, &m);
	max = n + sizeof(ADD_MSGID) + sizeof(ADD_DATE) + 16;
	for (j = 0; j < (int)(sizeof(adds) / sizeof(adds[0])); j++) {
		buf_init(&o, max);
		c = parse(wire, w, adds[j].msgid, adds[j].date, &o, &errors,
		    &b);
		CHECK(c == w);
		/* the From: capture, for the sender check */
		CHECK(b.hdr.nfrom == m.nfrom);
		/* terminated; a NUL inside is the sender check's to refuse */
		CHECK(b.hdr.fromlen < sizeof(b.hdr.from) &&
		    b.hdr.from[b.hdr.fromlen] == '\0');
		if (errors == 0 && m.nfrom > 0 && m.fromlen < BODY_LINE_MAX - 1)
			CHECK(same_words(b.hdr.from, b.hdr.fromlen, m.from,
			    m.fromlen));
		/* in pieces, the same */
		buf_init(&o2, max);
		c = parse_split(wire, w, adds[j].msgid, adds[j].date, &o2,
		    data, size < 16 ? size : 16, &b2);
		CHECK(c == w);
		CHECK(b2.errors == b.errors && b2.hdr.nfrom == b.hdr.nfrom);
		CHECK(b2.hdr.fromlen == b.hdr.fromlen &&
		    memcmp(b2.hdr.from, b.hdr.from, b.hdr.fromlen) == 0);
		CHECK(buf_used(&o2) == buf_used(&o) && memcmp(head(&o2),
		    head(&o), buf_used(&o)) == 0);
		buf_free(&o2);
		/* only an overlong line can be wrong here, whatever is added */
		CHECK((errors & ~BODY_ERR_LONG) == 0);
		if (j == 0)
			errors0 = errors;
		CHECK(errors == errors0);
		if (errors == 0)
			expect(&o, text, n, &m,
			    m.msgid ? NULL : adds[j].msgid,
			    m.date ? NULL : adds[j].date);
		buf_free(&o);
	}
	free(wire);
	free(text);
	return 0;
}
