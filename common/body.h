/*
 * body.h: the message body on the wire (RFC 5321 section 4.5.2).
 *
 * body_parse() turns the bytes a client sends after DATA into the message
 * as it is stored: it removes the transparency dot, finds the end of data
 * (only <CRLF>.<CRLF> ends it), and flags what smsubmit refuses: bare CR,
 * bare LF (SMTP smuggling) and lines over 998 octets.  On the way it scans
 * the header section and, where it ends, inserts the Message-ID: and Date:
 * lines the caller supplied if the message had none (RFC 6409 section 8),
 * and keeps the value of the first From: and Sender: fields, unfolded,
 * for the sender check: whole, or flagged as too long to keep.
 * Once an error is flagged it stops producing output but keeps looking
 * for the end of data, so the client can be told.
 *
 * body_stuff() does the reverse for the relay: it adds the dot.
 */
#ifndef BODY_H
#define BODY_H

#include <stddef.h>

#include "buf.h"

#define BODY_LINE_MAX	998
#define BODY_FIELD_MAX	4096	/* a From: or Sender: value kept whole */

#define BODY_ERR_BARECR	0x01
#define BODY_ERR_BARELF	0x02
#define BODY_ERR_LONG	0x04
#define BODY_ERR_OUTPUT	0x08	/* the output buffer refused data */

struct body {
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
	char		 from[BODY_FIELD_MAX + 1];	/* the first, unfolded */
	size_t		 fromlen;
	int		 from_long;	/* longer than BODY_FIELD_MAX */
	int		 nsender;	/* the same for Sender: */
	char		 sender[BODY_FIELD_MAX + 1];
	size_t		 senderlen;
	int		 sender_long;
	int		 no_separator;	/* headers ended on a line that is no
					   header field, not a blank line */
	const char	*add_msgid;	/* whole lines, with CRLF, or NULL */
	const char	*add_date;
};

void	 body_init(struct body *, const char *add_msgid, const char *add_date);
/*
 * Feed n bytes; appends the stored form to out and returns how many bytes
 * were consumed.  Fewer than n are consumed only once the end of data has
 * been seen (b->done), and the rest belongs to the next command.
 */
size_t	 body_parse(struct body *, const char *, size_t, struct buf *out);
/* Dot-stuff n bytes of a stored message; *bol is 1 at a line start. */
int	 body_stuff(int *bol, const char *, size_t, struct buf *out);

#endif
