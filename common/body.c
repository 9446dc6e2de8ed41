/*
 * body.c: DATA framing in both directions, and header scanning.  The
 * listener uses body_parse() on client input; the queue uses
 * body_stuff() when it relays.
 */
#include <string.h>
#include <strings.h>

#include "body.h"

enum {
	S_BOL,		/* at the start of a line */
	S_DOT,		/* a '.' at the start of a line */
	S_DOTCR,	/* ".\r" at the start of a line */
	S_MID,		/* inside a line */
	S_CR		/* a '\r' inside a line */
};

enum {
	H_NAME,		/* at the start of a header line, reading a name */
	H_VALUE,	/* inside a header field */
	H_BODY		/* past the header section */
};

enum {
	CAP_NONE,
	CAP_FROM,	/* in the first From: field */
	CAP_SENDER	/* in the first Sender: field */
};

void
body_init(struct body *b, const char *add_msgid, const char *add_date)
{
	memset(b, 0, sizeof(*b));
	b->state = S_BOL;
	b->hstate = H_NAME;
	b->add_msgid = add_msgid;
	b->add_date = add_date;
}

static void
out(struct body *b, struct buf *o, const void *p, size_t n)
{
	if (b->errors)
		return;
	if (buf_add(o, p, n) == -1)
		b->errors |= BODY_ERR_OUTPUT;
}

/*
 * The header section ends here: add what it lacked.  If it ends without
 * a blank line and something was added, a blank line keeps the body the
 * body.
 */
static void
headers_end(struct body *b, struct buf *o, int separator)
{
	int	 added = 0;

	b->hstate = H_BODY;
	b->capture = CAP_NONE;
	b->no_separator = separator;
	if (!b->seen_msgid && b->add_msgid != NULL) {
		out(b, o, b->add_msgid, strlen(b->add_msgid));
		added = 1;
	}
	if (!b->seen_date && b->add_date != NULL) {
		out(b, o, b->add_date, strlen(b->add_date));
		added = 1;
	}
	if (separator && added)
		out(b, o, "\r\n", 2);
}

static int
is_name(struct body *b, const char *name)
{
	size_t	 n = b->hlen - b->hwsp;

	return n == strlen(name) && strncasecmp(b->hname, name, n) == 0;
}

static void
header_name(struct body *b)
{
	b->capture = CAP_NONE;
	if (is_name(b, "From") && b->nfrom++ == 0)
		b->capture = CAP_FROM;
	if (is_name(b, "Sender") && b->nsender++ == 0)
		b->capture = CAP_SENDER;
	if (is_name(b, "Message-ID"))
		b->seen_msgid = 1;
	if (is_name(b, "Date"))
		b->seen_date = 1;
}

/*
 * Keep an octet of the From: or Sender: value; one too many and the
 * field is flagged, never cut, so that no unchecked rest can pass.
 */
static void
capture(struct body *b, char c)
{
	char	*v;
	size_t	*len;
	int	*toolong;

	switch (b->capture) {
	case CAP_FROM:
		v = b->from, len = &b->fromlen, toolong = &b->from_long;
		break;
	case CAP_SENDER:
		v = b->sender, len = &b->senderlen, toolong = &b->sender_long;
		break;
	default:
		return;
	}
	if (*len >= BODY_FIELD_MAX) {
		*toolong = 1;
		return;
	}
	/* a NUL would end the string and hide the rest from the check */
	v[(*len)++] = c == '\0' ? '\x01' : c;
	v[*len] = '\0';
}

/* One octet of message content (not a line ending). */
static void
emit(struct body *b, struct buf *o, char c)
{
	if (++b->linelen > BODY_LINE_MAX)
		b->errors |= BODY_ERR_LONG;
	switch (b->hstate) {
	case H_NAME:
		if (b->hlen == 0 && (c == ' ' || c == '\t') &&
		    b->nheaders > 0) {
			/* continuation of the previous field: unfolded, the
			   white space stays */
			b->hstate = H_VALUE;
			capture(b, c);
			break;
		}
		if (c == ':' && b->hlen > 0) {
			header_name(b);
			b->nheaders++;
			out(b, o, b->hname, b->hlen);
			b->hstate = H_VALUE;
			break;
		}
		/*
		 * White space between the name and the colon (obsolete
		 * syntax, RFC 5322 section 4.5) still makes a header field
		 * for many readers: "From : x" is a From: field.
		 */
		if ((c == ' ' || c == '\t') && b->hlen > 0 &&
		    b->hlen < sizeof(b->hname)) {
			b->hname[b->hlen++] = c;
			b->hwsp++;
			return;
		}
		if (c > 32 && c < 127 && b->hwsp == 0) {
			if (b->hlen < sizeof(b->hname)) {
				b->hname[b->hlen++] = c;
				return;
			}
			/*
			 * A name longer than any we look for: write it out
			 * and take the line as a header field.
			 */
			out(b, o, b->hname, b->hlen);
			b->hname[0] = '\0';
			b->capture = CAP_NONE;
			b->nheaders++;
			b->hstate = H_VALUE;
			break;
		}
		/* not a header line: the body starts without a blank line */
		headers_end(b, o, 1);
		out(b, o, b->hname, b->hlen);
		break;
	case H_VALUE:
		capture(b, c);
		break;
	default:
		break;
	}
	out(b, o, &c, 1);
}

/* The end of a line, terminated by CRLF. */
static void
eol(struct body *b, struct buf *o)
{
	if (b->hstate == H_NAME) {
		if (b->hlen == 0)
			headers_end(b, o, 0);
		else {
			headers_end(b, o, 1);
			out(b, o, b->hname, b->hlen);
		}
	} else if (b->hstate == H_VALUE)
		b->hstate = H_NAME;
	b->hlen = 0;
	b->hwsp = 0;
	b->linelen = 0;
	out(b, o, "\r\n", 2);
}

size_t
body_parse(struct body *b, const char *in, size_t n, struct buf *o)
{
	size_t	 i;
	char	 c;

	for (i = 0; i < n && !b->done; i++) {
		c = in[i];
		switch (b->state) {
		case S_BOL:
			if (c == '.') {
				b->state = S_DOT;
				break;
			}
			/* FALLTHROUGH */
		case S_MID:
 mid:
			b->state = S_MID;
			if (c == '\r')
				b->state = S_CR;
			else if (c == '\n') {
				b->errors |= BODY_ERR_BARELF;
				b->lf_only = 1;
				b->linelen = 0;
				b->state = S_BOL;
			} else
				emit(b, o, c);
			break;
		case S_DOT:
			if (c == '\r') {
				b->state = S_DOTCR;
				break;
			}
			/* the dot was transparency: drop it */
			goto mid;
		case S_DOTCR:
			if (c == '\n') {
				if (!b->lf_only) {
					if (b->hstate != H_BODY)
						headers_end(b, o, 0);
					b->done = 1;
					break;
				}
				/* ".\r\n" after a bare LF is not the end */
				b->lf_only = 0;
				eol(b, o);
				b->state = S_BOL;
				break;
			}
			b->errors |= BODY_ERR_BARECR;
			goto mid;
		case S_CR:
			if (c == '\n') {
				b->lf_only = 0;
				eol(b, o);
				b->state = S_BOL;
				break;
			}
			b->errors |= BODY_ERR_BARECR;
			goto mid;
		}
	}
	return i;
}

int
body_stuff(int *bol, const char *in, size_t n, struct buf *o)
{
	const char	*p, *end = in + n, *nl;

	for (p = in; p < end; p = nl) {
		if (*bol && *p == '.' && buf_add(o, ".", 1) == -1)
			return -1;
		if ((nl = memchr(p, '\n', end - p)) == NULL) {
			*bol = 0;
			nl = end;
		} else {
			nl++;
			*bol = 1;
		}
		if (buf_add(o, p, nl - p) == -1)
			return -1;
	}
	return 0;
}
