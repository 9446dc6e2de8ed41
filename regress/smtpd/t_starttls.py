"""STARTTLS (RFC 3207): nothing useful before it, nothing smuggled across."""

from harness import USERS, b64, expect, message, strip_received, unique


def plain_session(d):
    c = d.client("starttls")
    c.ehlo()
    return c


def t_starttls_required_for_auth(d):
    c = plain_session(d)
    expect(c.cmd("AUTH PLAIN " + b64("\0alice\0alice-pw")), 530, "5.7.0")
    expect(c.cmd("AUTH LOGIN"), 530, "5.7.0")


def t_starttls_required_for_mail(d):
    c = plain_session(d)
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 530, "5.7.0")


def t_starttls_required_for_rcpt(d):
    c = plain_session(d)
    expect(c.cmd("RCPT TO:<bob@example.org>"), 530, "5.7.0")


def t_starttls_required_for_data(d):
    c = plain_session(d)
    expect(c.cmd("DATA"), 530, "5.7.0")
    # and no 354 came with it: the next reply is the NOOP's
    expect(c.cmd("NOOP"), 250, "2.0.0")


def t_starttls_with_parameter(d):
    c = plain_session(d)
    expect(c.cmd("STARTTLS now"), 501, "5.5.4")
    # still plaintext and usable: STARTTLS proper works afterwards
    c.starttls()
    c.ehlo()
    assert "AUTH PLAIN LOGIN" in c.caps, c.caps


def t_starttls_twice(d):
    c = plain_session(d)
    c.starttls()
    c.ehlo()
    expect(c.cmd("STARTTLS"), 503, "5.5.1")
    # the TLS session survives the refusal
    expect(c.cmd("NOOP"), 250, "2.0.0")


def t_starttls_on_tls_listener(d):
    c = d.client("tls")
    c.ehlo()
    expect(c.cmd("STARTTLS"), 503, "5.5.1")
    expect(c.cmd("NOOP"), 250, "2.0.0")


def t_starttls_not_advertised_after_tls(d):
    c = plain_session(d)
    c.starttls()
    c.ehlo()
    assert "STARTTLS" not in c.caps, c.caps


def t_starttls_injection(d):
    """CVE-2011-0411: commands pipelined in plaintext after STARTTLS
    must be thrown away, never answered inside TLS."""
    c = plain_session(d)
    c.send("STARTTLS\r\nNOOP\r\n")
    expect(c.reply(), 220, what="STARTTLS")
    assert c.buf == b"", "plaintext after 220: %r" % c.buf
    c._wrap()
    # HELP's 214 must be the first thing read inside TLS, not NOOP's 250
    r = c.cmd("HELP")
    assert r.code == 214, "first reply inside TLS is %s: the injected " \
        "NOOP was answered" % r
    assert c.pending(0.5) == b""


def t_starttls_injection_auth(d):
    """The injected text would authenticate: it must have no effect."""
    c = plain_session(d)
    c.send("STARTTLS\r\nEHLO evil\r\nAUTH PLAIN %s\r\n" %
           b64("\0alice\0" + USERS["alice"]))
    expect(c.reply(), 220, what="STARTTLS")
    c._wrap()
    r = c.cmd("NOOP")
    expect(r, 250, "2.0.0", "first reply inside TLS")
    assert c.pending(0.5) == b""
    # not authenticated by the injected AUTH: MAIL needs AUTH
    c.ehlo()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 530, "5.7.0")


def t_starttls_resets_state(d):
    """RFC 3207: after the handshake the client starts over with EHLO;
    what was said before (HELO name) is forgotten, AUTH is now offered."""
    c = d.client("starttls")
    c.ehlo("before.test")
    c.starttls()
    # the EHLO before TLS counts for nothing: as on a new connection
    expect(c.auth_plain("alice", USERS["alice"]), 503, "5.5.1")
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 530, "5.7.0")
    r = c.ehlo("after.test")
    assert any(x.startswith("AUTH ") for x in c.caps), r
    expect(c.auth_plain("alice", USERS["alice"]), 235, "2.7.0")
    # and the name in the Received header is the one given after TLS
    tag = unique("reset")
    qid = c.send_message("alice@example.org", ["bob@example.org"],
                         message(tag))
    received, _ = strip_received(d.wait_message(qid).eml)
    assert b"from after.test " in received, received
    assert b"before.test" not in received, received
