"""The greeting, EHLO and the commands that need no transaction."""

from harness import HOSTNAME, MESSAGE_SIZE, expect

KINDS = ("tls", "starttls")


def tls_session(d, kind):
    """Encrypted and EHLO'd on either listener, not authenticated."""
    c = d.client(kind)
    if kind == "starttls":
        c.ehlo()
        c.starttls()
    c.ehlo()
    return c


def t_greeting_tls(d):
    c = d.client("tls")
    assert c.greeting.raw == ["220 %s ESMTP smsubmit" % HOSTNAME], \
        c.greeting
    assert c.version() in ("TLSv1.2", "TLSv1.3"), c.version()


def t_greeting_starttls(d):
    c = d.client("starttls")
    assert c.greeting.raw == ["220 %s ESMTP smsubmit" % HOSTNAME], \
        c.greeting


def t_ehlo_before_tls_capabilities(d):
    c = d.client("starttls")
    r = c.ehlo("client.test")
    assert r.lines[0].split()[0] == HOSTNAME, r
    assert sorted(c.caps) == sorted(["PIPELINING", "ENHANCEDSTATUSCODES",
                                     "STARTTLS"]), r
    assert not any(x.startswith("AUTH") for x in c.caps), r


def t_ehlo_after_starttls_capabilities(d):
    c = tls_session(d, "starttls")
    r = c.ehlo()
    assert r.lines[0].split()[0] == HOSTNAME, r
    assert sorted(c.caps) == sorted([
        "PIPELINING", "SIZE %d" % MESSAGE_SIZE, "8BITMIME", "SMTPUTF8",
        "ENHANCEDSTATUSCODES", "AUTH PLAIN LOGIN"]), r


def t_ehlo_tls_listener_capabilities(d):
    c = d.client("tls")
    r = c.ehlo()
    assert r.lines[0].split()[0] == HOSTNAME, r
    assert sorted(c.caps) == sorted([
        "PIPELINING", "SIZE %d" % MESSAGE_SIZE, "8BITMIME", "SMTPUTF8",
        "ENHANCEDSTATUSCODES", "AUTH PLAIN LOGIN"]), r


def t_helo(d):
    for kind in KINDS:
        c = d.client(kind)
        r = expect(c.cmd("HELO client.test"), 250, what=kind)
        assert r.lines[0].split()[0] == HOSTNAME, r
        c.quit()


def t_noop(d):
    for kind in KINDS:
        c = d.client(kind)
        expect(c.cmd("NOOP"), 250, "2.0.0", kind)
        c.ehlo()
        expect(c.cmd("NOOP"), 250, "2.0.0", kind)
        c.quit()


def t_rset(d):
    for kind in KINDS:
        c = d.client(kind)
        c.ehlo()
        expect(c.cmd("RSET"), 250, "2.0.0", kind)
        c.quit()


def t_quit(d):
    for kind in KINDS:
        c = d.client(kind)
        expect(c.cmd("QUIT"), 221, "2.0.0", kind)
        assert c.closed(3), "%s: still open after QUIT" % kind


def t_help(d):
    for kind in KINDS:
        c = d.client(kind)
        expect(c.cmd("HELP"), 214, what=kind)
        c.quit()


def t_vrfy(d):
    for kind in KINDS:
        c = tls_session(d, kind)
        expect(c.cmd("VRFY bob"), 252, "2.5.0", kind)
        expect(c.cmd("VRFY <bob@example.org>"), 252, "2.5.0", kind)
        c.quit()


def t_expn(d):
    for kind in KINDS:
        c = tls_session(d, kind)
        expect(c.cmd("EXPN staff"), 502, "5.5.1", kind)
        c.quit()


def t_commands_case_insensitive(d):
    c = d.client("tls")
    expect(c.cmd("ehlo client.test"), 250)
    expect(c.cmd("nOoP"), 250, "2.0.0")
    expect(c.cmd("quit"), 221, "2.0.0")


def t_unknown_command(d):
    for kind in KINDS:
        c = d.client(kind)
        expect(c.cmd("FROB nicate"), 500, "5.5.1", kind)
        # the session goes on
        expect(c.cmd("NOOP"), 250, "2.0.0", kind)
        c.quit()


def t_unknown_command_limit(d):
    """Ten unknown commands get 500 5.5.1; the eleventh gets 421 4.7.0
    and the session is closed (SPEC section 5)."""
    for kind in KINDS:
        c = d.client(kind)
        for i in range(10):
            expect(c.cmd("XYZZY%d" % i), 500, "5.5.1",
                   "%s: unknown command %d" % (kind, i + 1))
        expect(c.cmd("XYZZY10"), 421, "4.7.0", "%s: the eleventh" % kind)
        assert c.closed(3), "%s: not closed after 421" % kind
        assert c.buf == b"", "%s: more after the 421: %r" % (kind, c.buf)


def t_command_line_too_long(d):
    for kind in KINDS:
        c = d.client(kind)
        c.ehlo()
        # 600 octets without CRLF, then CRLF: 500 5.5.2
        expect(c.cmd("NOOP " + "x" * 595), 500, "5.5.2", kind)
        # the rest of the long line is not taken for a new command
        expect(c.cmd("NOOP"), 250, "2.0.0", kind + ", after a long line")
        assert c.pending(0.3) == b"", kind
        c.quit()


def t_command_line_512_octets_accepted(d):
    c = d.client("tls")
    c.ehlo()
    line = "NOOP " + "x" * (512 - 2 - 5)
    assert len(line) + 2 == 512
    r = c.cmd(line)
    assert not (r.code == 500 and r.enh == "5.5.2"), \
        "a 512-octet line was refused as too long: %s" % r
    line = "NOOP " + "x" * (512 - 2 - 5 + 1)
    expect(c.cmd(line), 500, "5.5.2", "513 octets")


def t_command_with_nul(d):
    for kind in KINDS:
        c = d.client(kind)
        c.ehlo()
        expect(c.cmd(b"NOOP\0 x"), 500, "5.5.2", kind)
        expect(c.cmd(b"EHLO a\0b"), 500, "5.5.2", kind)
        expect(c.cmd("NOOP"), 250, "2.0.0", kind)
        c.quit()


def t_http_request_closes_session(d):
    for kind in KINDS:
        for req in ("GET / HTTP/1.1", "POST /submit HTTP/1.0"):
            c = d.client(kind)
            c.line(req)
            c.send("Host: mx.test\r\n\r\n")
            assert c.closed(2), "%s: %r did not close the session" % (
                kind, req)
            # nothing but at most one refusal before the close
            assert c.buf == b"" or c.buf.startswith(b"421") or \
                c.buf.startswith(b"5"), (kind, req, c.buf)
            assert c.buf.count(b"\r\n") <= 1, (kind, req, c.buf)
