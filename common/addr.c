/*
 * addr.c: parsing and validation of SMTP paths.  Used by the listener on
 * the wire and by the queue when it loads an envelope from disk.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "addr.h"

/* atext of RFC 5322, plus octets >= 0x80 when UTF-8 is allowed */
static int
is_atext(unsigned char c, int flags)
{
	if (c >= 0x80)
		return (flags & ADDR_UTF8) != 0;
	if (isalnum(c))
		return 1;
	return strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL && c != '\0';
}

static int
local_valid(const char *s, size_t n, int flags)
{
	size_t	 i;
	int	 quoted;

	if (n == 0 || n > ADDR_LOCAL_MAX)
		return 0;
	if (s[0] == '"') {
		if (n < 2 || s[n - 1] != '"')
			return 0;
		for (i = 1, quoted = 0; i < n - 1; i++) {
			unsigned char c = s[i];

			if (quoted) {
				/* quoted-pair: printable ASCII or, with
				   SMTPUTF8, UTF-8 */
				if (c < 0x20 || c == 0x7f ||
				    (c >= 0x80 && !(flags & ADDR_UTF8)))
					return 0;
				quoted = 0;
				continue;
			}
			if (c == '\\') {
				quoted = 1;
				continue;
			}
			if (c == '"' || c < 0x20 || c == 0x7f ||
			    (c >= 0x80 && !(flags & ADDR_UTF8)))
				return 0;
		}
		return !quoted;
	}
	/* dot-string: atoms separated by single dots */
	if (s[0] == '.' || s[n - 1] == '.')
		return 0;
	for (i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (s[i + 1] == '.')
				return 0;
			continue;
		}
		if (!is_atext(s[i], flags))
			return 0;
	}
	return 1;
}

static int
domain_valid(const char *s, size_t n, int flags)
{
	size_t	 i, label = 0;

	if (n == 0 || n > ADDR_DOMAIN_MAX)
		return 0;
	if (s[0] == '[') {
		/* address literal: digits, dots, colons, IPv6: tag */
		if (n < 3 || s[n - 1] != ']')
			return 0;
		for (i = 1; i < n - 1; i++)
			if (!isalnum((unsigned char)s[i]) &&
			    strchr(".:", s[i]) == NULL)
				return 0;
		return 1;
	}
	for (i = 0; i < n; i++) {
		unsigned char c = s[i];

		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return 0;
			label = 0;
			continue;
		}
		if (c == '-') {
			if (label == 0)
				return 0;
		} else if (!isalnum(c) && !(c >= 0x80 && (flags & ADDR_UTF8)))
			return 0;
		if (++label > 63)
			return 0;
	}
	return label > 0 && s[n - 1] != '-';
}

int
addr_mailbox_valid(const char *s, int flags)
{
	const char	*at;
	size_t		 n = strlen(s);

	if (n == 0)
		return (flags & ADDR_NULL_OK) != 0;
	if ((flags & ADDR_POSTMASTER) && strcasecmp(s, "postmaster") == 0)
		return 1;
	/* the last '@' outside a quoted local part separates the domain */
	if ((at = strrchr(s, '@')) == NULL)
		return 0;
	return local_valid(s, at - s, flags) &&
	    domain_valid(at + 1, n - (at - s) - 1, flags);
}

int
addr_parse_path(const char *arg, int flags, char *addr, size_t addrlen,
    const char **params)
{
	const char	*p, *end;
	size_t		 n;
	int		 inquote = 0;

	p = arg;
	while (*p == ' ')
		p++;
	if (*p++ != '<')
		return -1;
	for (end = p; *end != '\0'; end++) {
		if (inquote && *end == '\\' && end[1] != '\0') {
			end++;
			continue;
		}
		if (*end == '"')
			inquote = !inquote;
		else if (*end == '>' && !inquote)
			break;
	}
	if (*end != '>')
		return -1;
	n = end - p;
	if (n >= addrlen || n >= ADDR_MAX)
		return -1;
	memcpy(addr, p, n);
	addr[n] = '\0';
	if (!addr_mailbox_valid(addr, flags))
		return -1;
	p = end + 1;
	if (*p != '\0' && *p != ' ')
		return -1;
	while (*p == ' ')
		p++;
	if (params != NULL)
		*params = p;
	return 0;
}

const char *
addr_domain(const char *addr)
{
	const char	*at;

	if ((at = strrchr(addr, '@')) == NULL)
		return "";
	return at + 1;
}

/* --- header fields --- */

/* Skip a comment, nested or with quoted pairs; NULL if it never ends. */
static const char *
skip_comment(const char *p)
{
	int	 depth = 0;

	for (; *p != '\0'; p++) {
		if (*p == '\\') {
			if (*++p == '\0')
				return NULL;
		} else if (*p == '(')
			depth++;
		else if (*p == ')' && --depth == 0)
			return p + 1;
	}
	return NULL;
}

/* Copy a quoted string, quotes and pairs included; NULL if it never ends. */
static const char *
copy_quoted(const char *p, char *dst, size_t len, size_t *n, int *over)
{
	const char	*start = p;

	for (p++; *p != '"'; p++) {
		if (*p == '\\')
			p++;
		if (*p == '\0')
			return NULL;
	}
	p++;
	if (*n + (p - start) >= len)
		*over = 1;
	else {
		memcpy(dst + *n, start, p - start);
		*n += p - start;
		dst[*n] = '\0';
	}
	return p;
}

struct mailbox_scan {
	char	 text[ADDR_MAX];	/* the bare addr-spec, if no '<' */
	size_t	 textlen;
	int	 over;			/* longer than an address */
	int	 runs;			/* runs of text between spaces */
	int	 inrun;
	int	 specials;		/* '@' or '[' in the text */
	char	 angle[ADDR_MAX];	/* the address in <...> */
	int	 have_angle;
};

/* One mailbox is complete: check it and hand its address over. */
static int
mailbox_end(struct mailbox_scan *m, int flags,
    int (*fn)(const char *, void *), void *arg)
{
	const char	*addr;

	if (m->have_angle) {
		/* the text before it is a display name: no address in it */
		if (m->specials)
			return -1;
		addr = m->angle;
	} else {
		if (m->runs != 1 || m->over)
			return -1;
		addr = m->text;
	}
	if (*addr == '\0' || !addr_mailbox_valid(addr, flags & ~ADDR_NULL_OK))
		return -1;
	return fn(addr, arg);
}

int
addr_header_mailboxes(const char *s, int flags,
    int (*fn)(const char *, void *), void *arg)
{
	struct mailbox_scan	 m;
	const char		*p = s, *q;
	size_t			 n;
	int			 count = 0, r, over;

	memset(&m, 0, sizeof(m));
	for (;;) {
		switch (*p) {
		case '\0':
		case ',':
			if ((r = mailbox_end(&m, flags, fn, arg)) != 0)
				return r;
			count++;
			if (*p == '\0')
				return count;
			memset(&m, 0, sizeof(m));
			p++;
			continue;
		case ' ':
		case '\t':
		case '\r':
		case '\n':
			m.inrun = 0;
			p++;
			continue;
		case '(':
			if ((p = skip_comment(p)) == NULL)
				return -1;
			m.inrun = 0;
			continue;
		case '<':
			if (m.have_angle)
				return -1;
			/* the address, then only white space or comments */
			n = 0;
			over = 0;
			for (p++; *p != '>'; ) {
				if (*p == '"') {
					if ((p = copy_quoted(p, m.angle,
					    sizeof(m.angle), &n, &over)) ==
					    NULL)
						return -1;
					continue;
				}
				if (*p == '(') {
					if ((p = skip_comment(p)) == NULL)
						return -1;
					continue;
				}
				/* no route, no space, no second bracket */
				if (*p == '\0' || *p == '<' || *p == ',' ||
				    *p == ':' || *p == ' ' || *p == '\t' ||
				    *p == '\\' || (unsigned char)*p < 0x20)
					return -1;
				if (n + 1 >= sizeof(m.angle))
					over = 1;
				else {
					m.angle[n++] = *p;
					m.angle[n] = '\0';
				}
				p++;
			}
			if (over)
				return -1;
			p++;
			m.have_angle = 1;
			/* after '>' a new run of text is refused below */
			m.inrun = 0;
			continue;
		case '>':
		case ':':
		case ';':
		case '\\':
			/* a group, a stray bracket or pair: not understood */
			return -1;
		case '"':
			if (m.have_angle)
				return -1;
			if (!m.inrun)
				m.runs++;
			m.inrun = 1;
			if ((q = copy_quoted(p, m.text, sizeof(m.text),
			    &m.textlen, &m.over)) == NULL)
				return -1;
			p = q;
			continue;
		default:
			if (m.have_angle || (unsigned char)*p < 0x20 ||
			    *p == 0x7f)
				return -1;
			if (*p == '@' || *p == '[' || *p == ']')
				m.specials = 1;
			if (!m.inrun)
				m.runs++;
			m.inrun = 1;
			if (m.textlen + 1 >= sizeof(m.text))
				m.over = 1;
			else {
				m.text[m.textlen++] = *p;
				m.text[m.textlen] = '\0';
			}
			p++;
			continue;
		}
	}
}
