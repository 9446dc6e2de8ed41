/*
 * body.h: the message body on the wire (RFC 5321 section 4.5.2): the dot
 * and the line rules.
 *
 * body_parse() turns the bytes a client sends after DATA into the message
 * as it is stored.  It promises:
 *  - the transparency dot is removed, and only <CRLF>.<CRLF> ends the
 *    data (not a dot line after a bare LF: SMTP smuggling);
 *  - a bare CR, a bare LF and a line over 998 octets are flagged
 *    (BODY_ERR_*), and from the first error on nothing more is output,
 *    but the end of data is still looked for, so the client can be told;
 *  - the header section goes through the scanner of header.h (Message-ID:
 *    and Date: added if missing, From: and Sender: kept); the body after
 *    it is passed on as it came, in runs, never octet by octet;
 *  - the output does not depend on how the input is cut into pieces.
 * If the output refuses data, BODY_ERR_OUTPUT is set and the output holds
 * the longest beginning of the message that fit.
 *
 * body_scan() is the same without a copy: the stored form is handed to a
 * function as pieces, most of them pointers into the input.
 *
 * body_stuff() does the reverse for the relay: it adds the dot.
 */
#ifndef BODY_H
#define BODY_H

#include <stddef.h>

#include "buf.h"
#include "header.h"

#define BODY_LINE_MAX	998
#define BODY_FIELD_MAX	HEADER_FIELD_MAX

#define BODY_ERR_BARECR	0x01
#define BODY_ERR_BARELF	0x02
#define BODY_ERR_LONG	0x04
#define BODY_ERR_OUTPUT	0x08	/* the output refused data */

struct body {
	int		 state;
	int		 errors;
	int		 done;
	int		 lf_only;	/* the last line ended in a bare LF */
	size_t		 linelen;
	struct header	 hdr;
};

/*
 * A piece of the stored message.  in_input: p lies in the input of this
 * body_scan() call and stays valid as long as the caller keeps that
 * input; otherwise it is valid only during the call.  Returns -1 if the
 * piece cannot be taken (BODY_ERR_OUTPUT; nothing more is passed).
 */
typedef int	 body_out_fn(void *, const char *p, size_t n, int in_input);

void	 body_init(struct body *, const char *add_msgid, const char *add_date);
/*
 * Feed n bytes; appends the stored form to out and returns how many bytes
 * were consumed.  Fewer than n are consumed only once the end of data has
 * been seen (b->done), and the rest belongs to the next command.
 */
size_t	 body_parse(struct body *, const char *, size_t, struct buf *out);
size_t	 body_scan(struct body *, const char *, size_t, body_out_fn *,
	    void *);
/* Dot-stuff n bytes of a stored message; *bol is 1 at a line start. */
int	 body_stuff(int *bol, const char *, size_t, struct buf *out);
/* The same, handed out in pieces (in_input: a piece of the n bytes). */
int	 body_stuff_to(int *bol, const char *, size_t, body_out_fn *, void *);

#endif
