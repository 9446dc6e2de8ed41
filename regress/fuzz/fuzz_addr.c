/*
 * fuzz_addr.c: SMTP paths and mailboxes (common/addr.c), with every
 * combination of flags.  The listener parses paths from the wire; the
 * queue re-validates mailboxes it reads back from envelope files, so what
 * one accepts the other must accept too.  And the same input as a From:
 * field's value (addr_header_mailboxes()): each address it hands over
 * is a valid mailbox, and it counts them right.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "addr.h"
#include "fuzz.h"

#define NFLAGS	8	/* ADDR_NULL_OK | ADDR_UTF8 | ADDR_POSTMASTER */

static int	 header_flags;

static int
header_cb(const char *addr, void *arg)
{
	int	*n = arg;

	CHECK(addr_mailbox_valid(addr, header_flags & ~ADDR_NULL_OK));
	(*n)++;
	return 0;
}

/* What a mailbox that passed the checks may contain. */
static void
check_mailbox(const char *a, int flags)
{
	const char	*p;
	int		 quoted = 0, esc = 0;

	CHECK(strlen(a) < ADDR_MAX);
	if (a[0] == '\0')
		CHECK(flags & ADDR_NULL_OK);
	for (p = a; *p != '\0'; p++) {
		unsigned char c = *p;

		/* nothing that could end a line or a header field */
		CHECK(c >= 0x20 && c != 0x7f);
		if (!(flags & ADDR_UTF8))
			CHECK(c < 0x80);
		if (esc) {
			esc = 0;
			continue;
		}
		if (quoted && c == '\\') {
			esc = 1;
			continue;
		}
		if (c == '"') {
			/* quotes only around the whole local part */
			CHECK(quoted || p == a);
			quoted = !quoted;
			continue;
		}
		if (!quoted)
			CHECK(c != '<' && c != '>' && c != ' ' && c != '\\' &&
			    c != ',' && c != ';' && c != '(' && c != ')');
	}
	CHECK(!quoted && !esc);
	if (a[0] != '\0')
		CHECK(strchr(a, '@') != NULL ||
		    ((flags & ADDR_POSTMASTER) && strcasecmp(a, "postmaster")
		    == 0));
	/* the domain follows the last '@', or is "" */
	p = addr_domain(a);
	if (strchr(a, '@') != NULL)
		CHECK(p == strrchr(a, '@') + 1);
	else
		CHECK(*p == '\0');
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char		*s, *path, addr[ADDR_MAX], first[ADDR_MAX];
	const char	*params;
	int		 flags, r, ok[NFLAGS], valid[NFLAGS];
	size_t		 len;

	if (size > 2048)
		return 0;
	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	len = strlen(s);
	if ((path = malloc(len + 3)) == NULL) {
		free(s);
		return 0;
	}

	first[0] = '\0';
	for (flags = 0; flags < NFLAGS; flags++) {
		/* as the argument of MAIL FROM: or RCPT TO: */
		params = NULL;
		memset(addr, 'X', sizeof(addr));
		r = addr_parse_path(s, flags, addr, sizeof(addr), &params);
		CHECK(r == 0 || r == -1);
		ok[flags] = r == 0;
		if (r == 0) {
			CHECK(memchr(addr, '\0', sizeof(addr)) != NULL);
			CHECK(addr_mailbox_valid(addr, flags));
			check_mailbox(addr, flags);
			CHECK(params != NULL && params > s &&
			    params <= s + len && *params != ' ');
			CHECK(params == s + len || params[-1] == ' ');
			/* the flags decide whether, never what */
			if (first[0] == '\0' && addr[0] != '\0')
				strlcpy(first, addr, sizeof(first));
			else if (addr[0] != '\0')
				CHECK(strcmp(first, addr) == 0);
		}

		/* as a mailbox, e.g. from an envelope file */
		valid[flags] = addr_mailbox_valid(s, flags);
		CHECK(valid[flags] == 0 || valid[flags] == 1);
		if (valid[flags]) {
			check_mailbox(s, flags);
			/* and in brackets it is a path that gives it back */
			path[0] = '<';
			memcpy(path + 1, s, len);
			path[len + 1] = '>';
			path[len + 2] = '\0';
			params = NULL;
			CHECK(addr_parse_path(path, flags, addr, sizeof(addr),
			    &params) == 0);
			CHECK(strcmp(addr, s) == 0);
			CHECK(params == path + len + 2);
		}
	}
	/* as a header field */
	for (flags = 0; flags < NFLAGS; flags++) {
		int	 n = 0;

		header_flags = flags;
		r = addr_header_mailboxes(s, flags, header_cb, &n);
		CHECK(r == -1 || (r > 0 && r == n));
	}
	/* each flag only ever widens what is accepted */
	for (flags = 0; flags < NFLAGS; flags++)
		for (r = 0; r < NFLAGS; r++)
			if ((flags & r) == flags) {
				CHECK(!ok[flags] || ok[r]);
				CHECK(!valid[flags] || valid[r]);
			}
	free(path);
	free(s);
	return 0;
}
