/*
 * t_addr.c: unit tests for common/addr.c, the MAIL FROM/RCPT TO path
 * parser.
 */
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "tap.h"

/* A printable form of s for test names; rotates over a few buffers. */
static const char *
esc(const char *s)
{
	static char	 bufs[4][512];
	static int	 which;
	char		*b = bufs[which++ % 4];
	size_t		 o = 0;

	for (; *s != '\0' && o < sizeof(bufs[0]) - 5; s++) {
		unsigned char c = *s;

		if (c < 0x20 || c >= 0x7f)
			o += snprintf(b + o, 5, "\\x%02x", c);
		else if (c == '\\')
			o += snprintf(b + o, 5, "\\\\");
		else
			b[o++] = c;
	}
	b[o] = '\0';
	return b;
}

/* arg must parse to want, with params pointing at wantparams */
static void
good(const char *arg, int flags, const char *want, const char *wantparams)
{
	char		 addr[ADDR_MAX];
	const char	*params = NULL;
	int		 r;

	memset(addr, 'X', sizeof(addr));
	r = addr_parse_path(arg, flags, addr, sizeof(addr), &params);
	ok(r == 0 && strcmp(addr, want) == 0 && params != NULL &&
	    strcmp(params, wantparams) == 0 &&
	    params >= arg && params <= arg + strlen(arg),
	    "accept '%s' (flags %#x) as '%s' params '%s'", esc(arg), flags,
	    esc(want), esc(wantparams));
}

static void
bad(const char *arg, int flags)
{
	char		 addr[ADDR_MAX];
	const char	*params = NULL;

	ok(addr_parse_path(arg, flags, addr, sizeof(addr), &params) == -1,
	    "refuse '%s' (flags %#x)", esc(arg), flags);
}

static void
test_good(void)
{
	char		 arg[512], want[512], local[65], label[64], dom[300];
	char		 got[ADDR_MAX];
	const char	*params;

	good("<a@b.c>", 0, "a@b.c", "");
	good("<a@b.c>", ADDR_NULL_OK | ADDR_UTF8 | ADDR_POSTMASTER, "a@b.c",
	    "");
	good("  <a@b.c>", 0, "a@b.c", "");
	good("<a@b.c> ", 0, "a@b.c", "");
	good("<user.name+tag@sub.example.org>", 0,
	    "user.name+tag@sub.example.org", "");
	good("<!#$%&'*+-/=?^_`{|}~@b.c>", 0, "!#$%&'*+-/=?^_`{|}~@b.c", "");
	good("<a@localhost>", 0, "a@localhost", "");
	good("<A@B-C.D9>", 0, "A@B-C.D9", "");
	good("<>", ADDR_NULL_OK, "", "");
	good("<> SIZE=10", ADDR_NULL_OK, "", "SIZE=10");
	good("<a@b.c> SIZE=10 BODY=8BITMIME", 0, "a@b.c",
	    "SIZE=10 BODY=8BITMIME");
	good("<a@b.c>   SIZE=10", 0, "a@b.c", "SIZE=10");
	good(" <a@b.c> SMTPUTF8", ADDR_UTF8, "a@b.c", "SMTPUTF8");
	/* quoted local parts */
	good("<\"a b\"@c.d>", 0, "\"a b\"@c.d", "");
	good("<\"a\\\"b\"@c.d>", 0, "\"a\\\"b\"@c.d", "");
	good("<\"a@b\"@c.d>", 0, "\"a@b\"@c.d", "");
	good("<\"a>b\"@c.d> SIZE=1", 0, "\"a>b\"@c.d", "SIZE=1");
	good("<\"a..b.\"@c.d>", 0, "\"a..b.\"@c.d", "");
	good("<\"\\\\\"@c.d>", 0, "\"\\\\\"@c.d", "");
	/* address literals */
	good("<a@[127.0.0.1]>", 0, "a@[127.0.0.1]", "");
	good("<a@[IPv6:::1]>", 0, "a@[IPv6:::1]", "");
	good("<a@[IPv6:2001:db8::1]>", 0, "a@[IPv6:2001:db8::1]", "");
	/* postmaster */
	good("<postmaster>", ADDR_POSTMASTER, "postmaster", "");
	good("<PostMaster>", ADDR_POSTMASTER, "PostMaster", "");
	/* SMTPUTF8 */
	good("<\xc3\xa9l\xc3\xa8ve@\xc3\xa9" "cole.fr>", ADDR_UTF8,
	    "\xc3\xa9l\xc3\xa8ve@\xc3\xa9" "cole.fr", "");
	good("<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b.\xe4\xb8\xad\xe5\x9b\xbd>",
	    ADDR_UTF8,
	    "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b.\xe4\xb8\xad\xe5\x9b\xbd",
	    "");
	good("<\"\xc3\xa9 x\"@b.c>", ADDR_UTF8, "\"\xc3\xa9 x\"@b.c", "");

	/* the longest parts allowed */
	memset(local, 'l', 64);
	local[64] = '\0';
	snprintf(arg, sizeof(arg), "<%s@b.c>", local);
	snprintf(want, sizeof(want), "%s@b.c", local);
	good(arg, 0, want, "");
	memset(label, 'd', 63);
	label[63] = '\0';
	snprintf(arg, sizeof(arg), "<a@%s.c>", label);
	snprintf(want, sizeof(want), "a@%s.c", label);
	good(arg, 0, want, "");
	/* 4 labels of 63 and 3 dots: a domain of 255 octets */
	snprintf(dom, sizeof(dom), "%s.%s.%s.%s", label, label, label, label);
	fixture(strlen(dom) == 255);
	snprintf(arg, sizeof(arg), "<%s@%s> SIZE=1", local, dom);
	snprintf(want, sizeof(want), "%s@%s", local, dom);
	good(arg, 0, want, "SIZE=1");
	ok(addr_parse_path(arg, 0, got, sizeof(got), &params) == 0 &&
	    strlen(got) == 64 + 1 + 255 && strlen(strchr(got, '@') + 1) == 255,
	    "a 64-octet local part and a 255-octet domain come out whole");
}

static void
test_bad(void)
{
	char	 arg[512], want[512], local[66], label[65], dom[300];
	int	 all = ADDR_NULL_OK | ADDR_UTF8 | ADDR_POSTMASTER;

	/* brackets */
	bad("a@b.c", all);
	bad("<a@b.c", all);
	bad("a@b.c>", all);
	bad("<a@b", all);
	bad("<", all);
	bad("", all);
	bad("   ", all);
	bad("\t<a@b.c>", 0);
	bad("<<a@b.c>>", all);
	bad("<\"a@b.c>", all);
	/* null path */
	bad("<>", 0);
	bad("<>", ADDR_UTF8 | ADDR_POSTMASTER);
	/* source routes */
	bad("<@a,@b:c@d>", all);
	bad("<@a:c@d>", all);
	/* the shape of a mailbox */
	bad("<ab.c>", all);
	bad("<postmaster>", 0);
	bad("<postmaster>", ADDR_NULL_OK | ADDR_UTF8);
	bad("<a@>", all);
	bad("<@b.c>", all);
	bad("<a@b@c.d>", all);
	bad("<a..b@c.d>", all);
	bad("<.a@b.c>", all);
	bad("<a.@b.c>", all);
	bad("<a@b..c>", all);
	bad("<a@.b.c>", all);
	bad("<a@b.c.>", all);
	bad("<a@.>", all);
	bad("<\"a\"b@c.d>", all);
	bad("<a\"b\"@c.d>", all);
	bad("<\"a\\\"@c.d>", all);
	/* unquoted specials and spaces */
	bad("<a b@c.d>", all);
	bad("<a(b)@c.d>", all);
	bad("<a,b@c.d>", all);
	bad("<a;b@c.d>", all);
	bad("<a:b@c.d>", all);
	bad("<a[b@c.d>", all);
	bad("<a\\b@c.d>", all);
	bad("<a<b@c.d>", all);
	bad("<a@b_c.d>", all);
	bad("<a@b c.d>", all);
	bad("<a@b,c.d>", all);
	/* control characters, quoted or not */
	bad("<a\x01" "b@c.d>", all);
	bad("<a\tb@c.d>", all);
	bad("<a\rb@c.d>", all);
	bad("<a@b\x7f.c>", all);
	bad("<a@b\x1b.c>", all);
	bad("<\"a\x01\"@b.c>", all);
	bad("<\"a\\\x01\"@b.c>", all);
	bad("<\"a\x7f\"@b.c>", all);
	bad("<\"a\r\n\"@b.c>", all);
	/* 8-bit without SMTPUTF8 */
	bad("<\xc3\xa9@b.c>", ADDR_NULL_OK | ADDR_POSTMASTER);
	bad("<a@\xc3\xa9.c>", ADDR_NULL_OK | ADDR_POSTMASTER);
	bad("<\"\xc3\xa9\"@b.c>", ADDR_NULL_OK | ADDR_POSTMASTER);
	/* quoted-pairSMTP is backslash %d32-126 (RFC 5321 4.1.2) */
	bad("<\"\\\xc3\\\xa9\"@b.c>", ADDR_NULL_OK | ADDR_POSTMASTER);
	/* address literals */
	bad("<a@[]>", all);
	bad("<a@[1.2.3.4>", all);
	bad("<a@[1.2 3.4]>", all);
	bad("<a@[1.2.3.4]x>", all);
	/* hyphens */
	bad("<a@-b.c>", all);
	bad("<a@b-.c>", all);
	bad("<a@b.-c>", all);
	bad("<a@b.c->", all);
	bad("<a@->", all);
	/* garbage after the path */
	bad("<a@b.c>x", all);
	bad("<a@b.c>SIZE=10", all);
	bad("<a@b.c>\tSIZE=10", all);
	bad("<a@b.c>>", all);
	bad("<>x", all);

	/* overlong parts */
	memset(local, 'l', 65);
	local[65] = '\0';
	snprintf(arg, sizeof(arg), "<%s@b.c>", local);
	bad(arg, all);
	snprintf(arg, sizeof(arg), "<\"%.63s\"@b.c>", local);
	bad(arg, all);		/* 65 with the quotes */
	memset(label, 'd', 64);
	label[64] = '\0';
	snprintf(arg, sizeof(arg), "<a@%s.c>", label);
	bad(arg, all);
	snprintf(arg, sizeof(arg), "<a@b.%s>", label);
	bad(arg, all);
	/* a domain of 256 octets made of labels of at most 63 */
	snprintf(dom, sizeof(dom), "x.%.63s.%.63s.%.63s.%.62s", label, label,
	    label, label);
	fixture(strlen(dom) == 256);
	snprintf(arg, sizeof(arg), "<a@%s>", dom);
	bad(arg, all);
	/* the same labels without the first: refused above for its length */
	snprintf(arg, sizeof(arg), "<a@%s>", dom + 2);
	snprintf(want, sizeof(want), "a@%s", dom + 2);
	good(arg, 0, want, "");
}

static void
test_buffer(void)
{
	char		 addr[ADDR_MAX];
	const char	*params = NULL;

	ok(addr_parse_path("<a@b.c>", 0, addr, 5, &params) == -1,
	    "refuse a path that does not fit the output buffer");
	ok(addr_parse_path("<a@b.c>", 0, addr, 6, &params) == 0 &&
	    strcmp(addr, "a@b.c") == 0,
	    "accept a path that exactly fits the output buffer");
	ok(addr_parse_path("<a@b.c> X=1", 0, addr, sizeof(addr), NULL) == 0,
	    "params may be NULL");
}

static void
test_helpers(void)
{
	ok(addr_mailbox_valid("a@b.c", 0) == 1, "mailbox_valid a@b.c");
	ok(addr_mailbox_valid("", 0) == 0, "mailbox_valid: empty refused");
	ok(addr_mailbox_valid("", ADDR_NULL_OK) == 1,
	    "mailbox_valid: empty with ADDR_NULL_OK");
	ok(addr_mailbox_valid("<a@b.c>", 0) == 0,
	    "mailbox_valid: brackets refused");
	ok(addr_mailbox_valid("postmaster", ADDR_POSTMASTER) == 1,
	    "mailbox_valid: postmaster with ADDR_POSTMASTER");
	ok(addr_mailbox_valid("a@b..c", 0) == 0,
	    "mailbox_valid: double dot refused");
	ok(strcmp(addr_domain("a@b.c"), "b.c") == 0, "domain of a@b.c");
	ok(strcmp(addr_domain("\"x@y\"@b.c"), "b.c") == 0,
	    "domain after a quoted '@'");
	ok(strcmp(addr_domain("postmaster"), "") == 0,
	    "domain of postmaster is empty");
	ok(strcmp(addr_domain(""), "") == 0, "domain of <> is empty");
}

struct seen {
	char		 addrs[512];
	const char	*bad;		/* refuse an address with this */
};

static int
collect(const char *addr, void *arg)
{
	struct seen	*w = arg;

	if (w->addrs[0] != '\0')
		strlcat(w->addrs, " ", sizeof(w->addrs));
	strlcat(w->addrs, addr, sizeof(w->addrs));
	return w->bad != NULL && strstr(addr, w->bad) != NULL ? -1 : 0;
}

static void
mailboxes(const char *field, int want, const char *wantaddrs)
{
	struct seen	 w;
	int		 r;

	memset(&w, 0, sizeof(w));
	r = addr_header_mailboxes(field, ADDR_UTF8, collect, &w);
	if (want < 0)
		ok(r == -1, "header %s refused", esc(field));
	else
		ok(r == want && strcmp(w.addrs, wantaddrs) == 0,
		    "header %s: %d mailboxes \"%s\" (got %d \"%s\")",
		    esc(field), want, wantaddrs, r, w.addrs);
}

static void
test_header_mailboxes(void)
{
	struct seen	 w;

	mailboxes(" alice@example.org", 1, "alice@example.org");
	mailboxes(" Alice <alice@example.org>", 1, "alice@example.org");
	mailboxes(" \"Alice, A.\" <a@x.org>, b@y.org (Bob)", 2,
	    "a@x.org b@y.org");
	mailboxes(" (c (nested) m@evil.example) a@x.org", 1, "a@x.org");
	mailboxes(" \"a b\"@x.org", 1, "\"a b\"@x.org");
	mailboxes(" =?utf-8?q?Al=C3=AFce?= <a@x.org>,\tJohn Q. Public "
	    "<j@y.org>", 2, "a@x.org j@y.org");
	mailboxes(" A <a(comment)@x.org>", 1, "a@x.org");
	mailboxes("", -1, NULL);
	mailboxes(" a@x.org m@evil.example", -1, NULL);
	mailboxes(" a@x.org\tm@evil.example", -1, NULL);
	mailboxes(" A <a@x.org> <m@evil.example>", -1, NULL);
	mailboxes(" A <a@x.org> m@evil.example", -1, NULL);
	mailboxes(" A <a@x.org> \"m\"", -1, NULL);
	mailboxes(" m@evil.example <a@x.org>", -1, NULL);
	mailboxes(" team: a@x.org, m@evil.example;", -1, NULL);
	mailboxes(" <@evil.example:a@x.org>", -1, NULL);
	mailboxes(" <a@x.org", -1, NULL);
	mailboxes(" a@x.org>", -1, NULL);
	mailboxes(" <>", -1, NULL);
	mailboxes(" a@x.org,", -1, NULL);
	mailboxes(" a@x.org,,b@y.org", -1, NULL);
	mailboxes(" a@x.org (unclosed", -1, NULL);
	mailboxes(" \"unclosed <a@x.org>", -1, NULL);
	mailboxes(" a\\@x.org", -1, NULL);
	mailboxes(" <a b@x.org>", -1, NULL);
	mailboxes(" not-an-address", -1, NULL);
	memset(&w, 0, sizeof(w));
	w.bad = "evil";
	ok(addr_header_mailboxes(" a@x.org, m@evil.example, c@z.org", 0,
	    collect, &w) == -1 && strcmp(w.addrs, "a@x.org m@evil.example") ==
	    0, "the callback's refusal stops the walk");
}

int
main(void)
{
	test_header_mailboxes();
	test_good();
	test_bad();
	test_buffer();
	test_helpers();
	return tap_done();
}
