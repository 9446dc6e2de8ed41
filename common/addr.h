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

#endif
