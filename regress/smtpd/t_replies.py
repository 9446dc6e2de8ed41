"""Exactly one reply per command (SPEC section 5), pipelined or not, and
the SASL exchange ending where RFC 4954 says it does."""

from harness import USERS, expect

KINDS = ("tls", "starttls")


def no_reply_faults(d):
    log = d.log()
    assert "reply nothing asked for" not in log and \
        "left without a reply" not in log, "the session miscounted"


def replies(c, n):
    """The next n replies, then nothing more for a while."""
    out = [c.reply() for _ in range(n)]
    extra = c.pending(0.5)
    assert extra == b"", "replies %s, then unasked %r" % (out, extra)
    return out


def greeted(d, kind):
    c = d.client(kind)
    c.ehlo()
    return c


def t_bad_ehlo_after_good_one_reply(d):
    """A bad HELO/EHLO after a good one gets its 501 alone, not the 501
    and then a 250 or the whole EHLO list; the good greeting stays."""
    for kind in KINDS:
        c = greeted(d, kind)
        c.send("EHLO\r\nHELO\r\nEHLO a\tb\r\nHELO \x7f\r\nNOOP\r\n")
        r = replies(c, 5)
        for i in range(4):
            expect(r[i], 501, "5.5.4", "%s: bad greeting %d" % (kind, i))
        expect(r[4], 250, "2.0.0", kind)
        # still greeted: MAIL is refused for want of AUTH, not of EHLO
        if kind == "tls":
            expect(c.cmd("MAIL FROM:<a@example.org>"), 530, "5.7.0")
        c.quit()
    no_reply_faults(d)


def t_pipelined_commands_one_reply_each(d):
    """Thirty assorted commands in one write, good and bad: thirty replies,
    in order."""
    c = greeted(d, "tls")
    cmds = [("NOOP", 250), ("EHLO x.test", 250), ("HELO", 501),
            ("RSET", 250), ("VRFY bob", 252), ("EXPN staff", 502),
            ("HELP", 214), ("FROB", 500), ("MAIL FROM:<a@b.c>", 530),
            ("RCPT TO:<a@b.c>", 530), ("DATA", 530), ("STARTTLS x", 501),
            ("STARTTLS", 503), ("AUTH", 501), ("AUTH FOO", 504),
            ("NOOP " + "x" * 600, 500), ("NOOP\0", 500), ("EHLO", 501),
            ("HELO h.test", 250), ("EHLO e.test", 250)]
    cmds += [("NOOP", 250)] * (30 - len(cmds))
    c.send("".join(l + "\r\n" for l, _ in cmds))
    got = replies(c, len(cmds))
    for (line, code), r in zip(cmds, got):
        expect(r, code, what=line[:20])
    c.quit()
    no_reply_faults(d)


def t_auth_overlong_response_ends_exchange(d):
    """A SASL response line over the limit: 500 5.5.6, the exchange is
    over and the next line is a command again, not a failed login."""
    for kind in KINDS:
        c = greeted(d, kind)
        if kind == "starttls":
            c.starttls()
            c.ehlo()
        for _ in range(3):  # as many as auth max-failures
            expect(c.cmd("AUTH LOGIN"), 334, what=kind)
            c.send("A" * 13000 + "\r\nNOOP\r\n")
            r = replies(c, 2)
            expect(r[0], 500, "5.5.6", "%s: overlong response" % kind)
            expect(r[1], 250, "2.0.0", "%s: NOOP after it" % kind)
        # no failure was counted: the session goes on and can log in
        expect(c.auth_plain("alice", USERS["alice"]), 235, "2.7.0", kind)
        c.quit()
    no_reply_faults(d)


def t_auth_overlong_response_without_end(d):
    """70000 octets with no line end in a SASL exchange: one 500 5.5.6,
    early, and the end of that line is skipped, not taken for a command."""
    c = greeted(d, "tls")
    expect(c.cmd("AUTH PLAIN"), 334)
    c.send("A" * 70000)
    expect(c.reply(), 500, "5.5.6", "overlong, unfinished")
    c.send("A" * 1000 + "\r\nNOOP\r\n")
    expect(c.reply(), 250, "2.0.0", "NOOP after the skipped line")
    assert c.pending(0.5) == b""
    expect(c.auth_plain("alice", USERS["alice"]), 235, "2.7.0")
    c.quit()
    no_reply_faults(d)


def t_auth_response_with_nul_ends_exchange(d):
    """A NUL cannot be base64: 501 5.5.2 and the exchange is over."""
    c = greeted(d, "tls")
    expect(c.cmd("AUTH LOGIN"), 334)
    expect(c.cmd(b"YWxp\0Y2U="), 501, "5.5.2")
    expect(c.cmd("NOOP"), 250, "2.0.0", "a command again")
    c.quit()


def t_auth_not_offered_after_auth(d):
    """RFC 4954: after a successful AUTH, EHLO no longer offers AUTH and
    AUTH is refused with 503 5.5.1."""
    for kind in KINDS:
        c = d.session(kind)
        c.ehlo()
        assert not any(l.startswith("AUTH") for l in c.caps), \
            "%s: AUTH offered after AUTH: %s" % (kind, c.caps)
        assert "ENHANCEDSTATUSCODES" in c.caps and "PIPELINING" in c.caps
        expect(c.auth_plain("alice", USERS["alice"]), 503, "5.5.1", kind)
        expect(c.cmd("AUTH LOGIN"), 503, "5.5.1", kind)
        c.quit()
