/*
 * body_model.h: the reference model for common/body.c and header.c, for
 * the differential tests (regress/unit/t_body_diff.c,
 * regress/fuzz/fuzz_body.c).  It is body.c as it was before the fast
 * path (commit 1ba3d58): one function call per octet, the dot rules and
 * the header scanner interleaved in one state machine, renamed model_*.
 * Keep it as it is: it is the meaning the fast code must keep, octet for
 * octet.  Its flags are body.h's BODY_ERR_*.  (The entry points are
 * inline only so that a file that uses one of them draws no warning.)
 */
#ifndef BODY_MODEL_H
#define BODY_MODEL_H

#include <string.h>
#include <strings.h>

#include "body.h"
#include "buf.h"

#define MODEL_LINE_MAX	998
#define MODEL_FIELD_MAX	4096

struct model_body {
	int		 state;
	int		 errors;
	int		 done;
	int		 lf_only;	/* the last line ended in a bare LF */
	size_t		 linelen;
	/* header scanning */
	int		 hstate;
	size_t		 hlen;
	size_t		 hwsp;		/* of which white space, before ':' */
	char		 hname[80];
	int		 nheaders;
	int		 seen_msgid;
	int		 seen_date;
	int		 capture;	/* inside the first From: or Sender: */
	int		 nfrom;		/* From: fields seen */
	char		 from[MODEL_FIELD_MAX + 1];	/* the first */
	size_t		 fromlen;
	int		 from_long;	/* longer than MODEL_FIELD_MAX */
	int		 nsender;	/* the same for Sender: */
	char		 sender[MODEL_FIELD_MAX + 1];
	size_t		 senderlen;
	int		 sender_long;
	int		 no_separator;	/* headers ended on a line that is no
					   header field, not a blank line */
	const char	*add_msgid;	/* whole lines, with CRLF, or NULL */
	const char	*add_date;
};
enum {
	MS_BOL,		/* at the start of a line */
	MS_DOT,		/* a '.' at the start of a line */
	MS_DOTCR,	/* ".\r" at the start of a line */
	MS_MID,		/* inside a line */
	MS_CR		/* a '\r' inside a line */
};

enum {
	MH_NAME,	/* at the start of a header line, reading a name */
	MH_VALUE,	/* inside a header field */
	MH_BODY		/* past the header section */
};

enum {
	MCAP_NONE,
	MCAP_FROM,	/* in the first From: field */
	MCAP_SENDER	/* in the first Sender: field */
};

static inline void
model_init(struct model_body *b, const char *add_msgid, const char *add_date)
{
	memset(b, 0, sizeof(*b));
	b->state = MS_BOL;
	b->hstate = MH_NAME;
	b->add_msgid = add_msgid;
	b->add_date = add_date;
}

static void
m_out(struct model_body *b, struct buf *o, const void *p, size_t n)
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
m_headers_end(struct model_body *b, struct buf *o, int separator)
{
	int	 added = 0;

	b->hstate = MH_BODY;
	b->capture = MCAP_NONE;
	b->no_separator = separator;
	if (!b->seen_msgid && b->add_msgid != NULL) {
		m_out(b, o, b->add_msgid, strlen(b->add_msgid));
		added = 1;
	}
	if (!b->seen_date && b->add_date != NULL) {
		m_out(b, o, b->add_date, strlen(b->add_date));
		added = 1;
	}
	if (separator && added)
		m_out(b, o, "\r\n", 2);
}

static int
m_is_name(struct model_body *b, const char *name)
{
	size_t	 n = b->hlen - b->hwsp;

	return n == strlen(name) && strncasecmp(b->hname, name, n) == 0;
}

static void
m_header_name(struct model_body *b)
{
	b->capture = MCAP_NONE;
	if (m_is_name(b, "From") && b->nfrom++ == 0)
		b->capture = MCAP_FROM;
	if (m_is_name(b, "Sender") && b->nsender++ == 0)
		b->capture = MCAP_SENDER;
	if (m_is_name(b, "Message-ID"))
		b->seen_msgid = 1;
	if (m_is_name(b, "Date"))
		b->seen_date = 1;
}

/*
 * Keep an octet of the From: or Sender: value; one too many and the
 * field is flagged, never cut, so that no unchecked rest can pass.
 */
static void
m_capture(struct model_body *b, char c)
{
	char	*v;
	size_t	*len;
	int	*toolong;

	switch (b->capture) {
	case MCAP_FROM:
		v = b->from, len = &b->fromlen, toolong = &b->from_long;
		break;
	case MCAP_SENDER:
		v = b->sender, len = &b->senderlen, toolong = &b->sender_long;
		break;
	default:
		return;
	}
	if (*len >= MODEL_FIELD_MAX) {
		*toolong = 1;
		return;
	}
	/* a NUL would end the string and hide the rest from the check */
	v[(*len)++] = c == '\0' ? '\x01' : c;
	v[*len] = '\0';
}

/* One octet of message content (not a line ending). */
static void
m_emit(struct model_body *b, struct buf *o, char c)
{
	if (++b->linelen > MODEL_LINE_MAX)
		b->errors |= BODY_ERR_LONG;
	switch (b->hstate) {
	case MH_NAME:
		if (b->hlen == 0 && (c == ' ' || c == '\t') &&
		    b->nheaders > 0) {
			/* continuation of the previous field: unfolded, the
			   white space stays */
			b->hstate = MH_VALUE;
			m_capture(b, c);
			break;
		}
		if (c == ':' && b->hlen > 0) {
			m_header_name(b);
			b->nheaders++;
			m_out(b, o, b->hname, b->hlen);
			b->hstate = MH_VALUE;
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
			m_out(b, o, b->hname, b->hlen);
			b->hname[0] = '\0';
			b->capture = MCAP_NONE;
			b->nheaders++;
			b->hstate = MH_VALUE;
			break;
		}
		/* not a header line: the body starts without a blank line */
		m_headers_end(b, o, 1);
		m_out(b, o, b->hname, b->hlen);
		break;
	case MH_VALUE:
		m_capture(b, c);
		break;
	default:
		break;
	}
	m_out(b, o, &c, 1);
}

/* The end of a line, terminated by CRLF. */
static void
m_eol(struct model_body *b, struct buf *o)
{
	if (b->hstate == MH_NAME) {
		if (b->hlen == 0)
			m_headers_end(b, o, 0);
		else {
			m_headers_end(b, o, 1);
			m_out(b, o, b->hname, b->hlen);
		}
	} else if (b->hstate == MH_VALUE)
		b->hstate = MH_NAME;
	b->hlen = 0;
	b->hwsp = 0;
	b->linelen = 0;
	m_out(b, o, "\r\n", 2);
}

static inline size_t
model_parse(struct model_body *b, const char *in, size_t n, struct buf *o)
{
	size_t	 i;
	char	 c;

	for (i = 0; i < n && !b->done; i++) {
		c = in[i];
		switch (b->state) {
		case MS_BOL:
			if (c == '.') {
				b->state = MS_DOT;
				break;
			}
			/* FALLTHROUGH */
		case MS_MID:
 mid:
			b->state = MS_MID;
			if (c == '\r')
				b->state = MS_CR;
			else if (c == '\n') {
				b->errors |= BODY_ERR_BARELF;
				b->lf_only = 1;
				b->linelen = 0;
				b->state = MS_BOL;
			} else
				m_emit(b, o, c);
			break;
		case MS_DOT:
			if (c == '\r') {
				b->state = MS_DOTCR;
				break;
			}
			/* the dot was transparency: drop it */
			goto mid;
		case MS_DOTCR:
			if (c == '\n') {
				if (!b->lf_only) {
					if (b->hstate != MH_BODY)
						m_headers_end(b, o, 0);
					b->done = 1;
					break;
				}
				/* ".\r\n" after a bare LF is not the end */
				b->lf_only = 0;
				m_eol(b, o);
				b->state = MS_BOL;
				break;
			}
			b->errors |= BODY_ERR_BARECR;
			goto mid;
		case MS_CR:
			if (c == '\n') {
				b->lf_only = 0;
				m_eol(b, o);
				b->state = MS_BOL;
				break;
			}
			b->errors |= BODY_ERR_BARECR;
			goto mid;
		}
	}
	return i;
}

static inline int
model_stuff(int *bol, const char *in, size_t n, struct buf *o)
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

#endif
