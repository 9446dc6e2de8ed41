/*
 * addr.h: SMTP paths and mailboxes (RFC 5321 section 4.1.2, RFC 6531).
 *
 * addr_parse_path() takes the argument of MAIL FROM: or RCPT TO:, checks
 * the <path> strictly and returns the mailbox without brackets plus a
 * pointer to the ESMTP parameters that follow.  Source routes, unquoted
 * specials, control characters and overlong parts are refused.  8-bit
 * octets are allowed only with ADDR_UTF8 (the client asked for SMTPUTF8).
 */
#ifndef ADDR_H
#define ADDR_H

#include <stddef.h>

#define ADDR_LOCAL_MAX	64
#define ADDR_DOMAIN_MAX	255
#define ADDR_MAX	(ADDR_LOCAL_MAX + 1 + ADDR_DOMAIN_MAX + 1)

#define ADDR_NULL_OK	0x01	/* "<>" is acceptable (MAIL FROM) */
#define ADDR_UTF8	0x02	/* allow UTF-8 in local part and domain */
#define ADDR_POSTMASTER	0x04	/* bare "<postmaster>" is acceptable */

int	 addr_parse_path(const char *, int flags, char *addr, size_t addrlen,
	    const char **params);
int	 addr_mailbox_valid(const char *, int flags);
/* the domain of a mailbox, or "" */
const char *addr_domain(const char *);
/*
 * The mailboxes of a From: or Sender: field value, unfolded (RFC 5322
 * section 3.4: "Name <addr>" or a bare addr-spec, comma separated, with
 * comments).  fn is called with each address, as addr_mailbox_valid()
 * takes it, and returns 0 to go on or -1 to stop the walk.  -1
 * for anything that is not a plain mailbox list: a group, a source
 * route, an empty entry, an unbalanced quote, comment or bracket, text
 * after an address, or an address that is not valid.  Otherwise the
 * number of mailboxes.  Whatever is not understood is refused, never
 * skipped: the caller's check must see every address a reader would.
 */
int	 addr_header_mailboxes(const char *, int flags,
	    int (*fn)(const char *, void *), void *arg);

#endif
