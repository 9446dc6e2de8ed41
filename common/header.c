/*
 * header.c: the header scanner of the listener's DATA path.  body.c
 * feeds it the content of each line of the header section; it adds what
 * RFC 6409 section 8 lets a submission server add, and keeps the From:
 * and Sender: values for the sender check ("senders check-header-from").
 */
#include <string.h>
#include <strings.h>

#include "header.h"

enum {
	H_NAME,		/* at the start of a header line, reading a name */
	H_VALUE		/* inside a header field */
};

enum {
	CAP_NONE,
	CAP_FROM,	/* in the first From: field */
	CAP_SENDER	/* in the first Sender: field */
};

void
header_init(struct header *h, const char *add_msgid, const char *add_date)
{
	memset(h, 0, sizeof(*h));
	h->state = H_NAME;
	h->add_msgid = add_msgid;
	h->add_date = add_date;
}

/*
 * The header section ends here: add what it lacked.  If it ends without
 * a blank line and something was added, a blank line keeps the body the
 * body.
 */
static void
ended(struct header *h, int separator, header_out_fn *out, void *arg)
{
	int	 added = 0;

	h->ended = 1;
	h->capture = CAP_NONE;
	h->no_separator = separator;
	if (!h->seen_msgid && h->add_msgid != NULL) {
		out(arg, h->add_msgid, strlen(h->add_msgid));
		added = 1;
	}
	if (!h->seen_date && h->add_date != NULL) {
		out(arg, h->add_date, strlen(h->add_date));
		added = 1;
	}
	if (separator && added)
		out(arg, "\r\n", 2);
}

static int
is_name(struct header *h, const char *name)
{
	size_t	 n = h->hlen - h->hwsp;

	return n == strlen(name) && strncasecmp(h->hname, name, n) == 0;
}

static void
field_name(struct header *h)
{
	h->capture = CAP_NONE;
	if (is_name(h, "From") && h->nfrom++ == 0)
		h->capture = CAP_FROM;
	if (is_name(h, "Sender") && h->nsender++ == 0)
		h->capture = CAP_SENDER;
	if (is_name(h, "Message-ID"))
		h->seen_msgid = 1;
	if (is_name(h, "Date"))
		h->seen_date = 1;
}

/*
 * Keep octets of the From: or Sender: value; one too many and the field
 * is flagged, never cut, so that no unchecked rest can pass.
 */
static void
capture(struct header *h, const char *p, size_t n)
{
	char	*v;
	size_t	*len, i;
	int	*toolong;

	switch (h->capture) {
	case CAP_FROM:
		v = h->from, len = &h->fromlen, toolong = &h->from_long;
		break;
	case CAP_SENDER:
		v = h->sender, len = &h->senderlen, toolong = &h->sender_long;
		break;
	default:
		return;
	}
	if (n > HEADER_FIELD_MAX - *len) {
		*toolong = 1;
		n = HEADER_FIELD_MAX - *len;
	}
	/* a NUL would end the string and hide the rest from the check */
	for (i = 0; i < n; i++)
		v[*len + i] = p[i] == '\0' ? '\x01' : p[i];
	*len += n;
	v[*len] = '\0';
}

/*
 * One octet at the start of a line, where a field name may be.  Returns 1
 * if the octet was held back in hname, 0 if it is to be written out.
 */
static int
name_octet(struct header *h, char c, header_out_fn *out, void *arg)
{
	if (h->hlen == 0 && (c == ' ' || c == '\t') && h->nheaders > 0) {
		/* continuation of the previous field: unfolded, the white
		   space stays */
		h->state = H_VALUE;
		capture(h, &c, 1);
		return 0;
	}
	if (c == ':' && h->hlen > 0) {
		field_name(h);
		h->nheaders++;
		out(arg, h->hname, h->hlen);
		h->state = H_VALUE;
		return 0;
	}
	/*
	 * White space between the name and the colon (obsolete syntax,
	 * RFC 5322 section 4.5) still makes a header field for many
	 * readers: "From : x" is a From: field.
	 */
	if ((c == ' ' || c == '\t') && h->hlen > 0 &&
	    h->hlen < sizeof(h->hname)) {
		h->hname[h->hlen++] = c;
		h->hwsp++;
		return 1;
	}
	if (c > 32 && c < 127 && h->hwsp == 0) {
		if (h->hlen < sizeof(h->hname)) {
			h->hname[h->hlen++] = c;
			return 1;
		}
		/*
		 * A name longer than any we look for: write it out and
		 * take the line as a header field.
		 */
		out(arg, h->hname, h->hlen);
		h->hname[0] = '\0';
		h->capture = CAP_NONE;
		h->nheaders++;
		h->state = H_VALUE;
		return 0;
	}
	/* not a header line: the body starts without a blank line */
	ended(h, 1, out, arg);
	out(arg, h->hname, h->hlen);
	return 0;
}

void
header_content(struct header *h, const char *p, size_t n,
    header_out_fn *out, void *arg)
{
	size_t	 i;

	for (i = 0; i < n && !h->ended && h->state == H_NAME; i++)
		if (!name_octet(h, p[i], out, arg))
			out(arg, p + i, 1);
	if (i == n)
		return;
	/* the rest of the line is a field's value, or body */
	if (!h->ended)
		capture(h, p + i, n - i);
	out(arg, p + i, n - i);
}

void
header_eol(struct header *h, header_out_fn *out, void *arg)
{
	if (h->ended)
		return;
	if (h->state == H_NAME) {
		if (h->hlen == 0)
			ended(h, 0, out, arg);
		else {
			ended(h, 1, out, arg);
			out(arg, h->hname, h->hlen);
		}
	} else
		h->state = H_NAME;
	h->hlen = 0;
	h->hwsp = 0;
}

void
header_end(struct header *h, header_out_fn *out, void *arg)
{
	if (!h->ended)
		ended(h, 0, out, arg);
}
