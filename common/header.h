/*
 * header.h: the header section of a submitted message (RFC 5322 section
 * 2.2, RFC 6409 section 8), as the listener's DATA path reads it.
 *
 * The scanner is fed the content of each line (no line ends: body.c
 * has taken the framing off and checked the line rules) and told where
 * each CRLF line ends.  It promises:
 *  - the output is its input with, where the header section ends, the
 *    Message-ID: and Date: lines the caller supplied if the message had
 *    none, and a blank line after them if the header section ended on a
 *    line that is no header field;
 *  - the value of the first From: and of the first Sender: field, unfolded,
 *    kept whole or flagged as too long to keep, never cut;
 *  - the number of From: and Sender: fields, and whether the section
 *    ended without a blank line (no_separator).
 * Once the header section has ended (ended is set) it wants nothing more:
 * the rest of the message is body, which the caller passes on itself.
 *
 * Output goes to a function the caller gives; a piece that lies in the
 * input it was fed is passed as a pointer into that input, others
 * (a field name held back until its ':', the added lines) point into the
 * struct header or the caller's add_msgid and add_date strings.
 */
#ifndef HEADER_H
#define HEADER_H

#include <stddef.h>

/* a From: or Sender: value kept whole */
#define HEADER_FIELD_MAX	4096
#define HEADER_NAME_MAX		80	/* no longer a name is looked at */

typedef void	 header_out_fn(void *, const char *, size_t);

struct header {
	int		 ended;		/* past the header section */
	int		 state;
	size_t		 hlen;
	size_t		 hwsp;		/* of which white space, before ':' */
	char		 hname[HEADER_NAME_MAX];
	int		 nheaders;
	int		 seen_msgid;
	int		 seen_date;
	int		 capture;	/* inside the first From: or Sender: */
	int		 nfrom;		/* From: fields seen */
	/* the first From:, unfolded */
	char		 from[HEADER_FIELD_MAX + 1];
	size_t		 fromlen;
	int		 from_long;	/* longer than HEADER_FIELD_MAX */
	int		 nsender;	/* the same for Sender: */
	char		 sender[HEADER_FIELD_MAX + 1];
	size_t		 senderlen;
	int		 sender_long;
	int		 no_separator;	/* headers ended on a line that is no
					   header field, not a blank line */
	const char	*add_msgid;	/* whole lines, with CRLF, or NULL */
	const char	*add_date;
};

void	 header_init(struct header *, const char *add_msgid,
	    const char *add_date);
/* n octets of a line's content; once ended, they are only passed on */
void	 header_content(struct header *, const char *, size_t,
	    header_out_fn *, void *);
/* the current line ended in CRLF (the caller writes the CRLF after) */
void	 header_eol(struct header *, header_out_fn *, void *);
/* the end of data came inside the header section */
void	 header_end(struct header *, header_out_fn *, void *);

#endif
