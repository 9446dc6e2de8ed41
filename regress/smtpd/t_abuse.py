"""Connection abuse: slow clients, a TLS ClientHello where plaintext SMTP
is expected, and a client that floods input without reading replies."""

import ssl
import time

from harness import Smsubmit, expect


def t_trickled_command_cannot_outlast_timeout():
    """A byte every half second never completes the line: the session
    ends at the command timeout, counted from the last reply."""
    with Smsubmit(conf={"timeout command": "2s"}) as d:
        c = d.client("starttls")
        start = time.monotonic()
        closed, got = None, b""
        for ch in b"NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP\r\n"[:-2]:
            try:
                c.send(bytes([ch]))
            except OSError:
                closed = time.monotonic() - start
                break
            got = c.pending(0.5)
            if got:
                closed = time.monotonic() - start
                break
        assert closed is not None, "a trickling client held the session"
        assert closed < 4.5, "closed only after %.1fs" % closed
        assert b"421 4.4.2" in c.buf + got, (c.buf, got)


def t_trickled_data_cannot_outlast_timeout():
    """Inside DATA, steady trickling does not extend `timeout data`."""
    with Smsubmit(conf={"timeout data": "2s"}) as d:
        c = d.session("tls")
        expect(c.cmd("MAIL FROM:<alice@example.org>"), 250)
        expect(c.cmd("RCPT TO:<bob@example.org>"), 250)
        expect(c.cmd("DATA"), 354)
        start = time.monotonic()
        got = b""
        while time.monotonic() - start < 8:
            try:
                c.send(b"x")
            except OSError:
                break
            got = c.pending(0.3)
            if got:
                break
        took = time.monotonic() - start
        assert b"421 4.4.2" in c.buf + got, (c.buf, got)
        assert took < 4.5, "DATA held for %.1fs" % took


def t_tls_clienthello_on_plaintext_stage_closes(d):
    """A client speaking TLS to the STARTTLS port before STARTTLS is
    closed at once, not answered with 500s."""
    c = d.client("starttls")
    raw = c.sock
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="mx.test")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    assert hello[:2] == b"\x16\x03", hello[:8]
    raw.sendall(hello)
    assert c.closed(3), "still open after a ClientHello"
    assert b"500" not in c.buf, c.buf
    d.wait_log("TLS handshake on a plaintext stage")


def t_input_flood_is_bounded(d):
    """A client that pipelines without ever reading cannot make the
    listener buffer without limit: the server stops reading (TCP pushes
    back) or closes, and keeps serving others."""
    c = d.session("tls")
    c.sock.settimeout(0.5)
    sent = 0
    chunk = b"NOOP\r\n" * 2000
    start = time.monotonic()
    while time.monotonic() - start < 10:
        try:
            c.sock.sendall(chunk)
            sent += len(chunk)
        except (TimeoutError, ssl.SSLError, OSError):
            break
    # far less than the 10 s of loopback bandwidth the client had
    assert sent < 64 * 1024 * 1024, "server swallowed %d bytes" % sent
    other = d.session("starttls")
    expect(other.cmd("NOOP"), 250, "2.0.0")
    other.quit()
    rss = [l for l in open("/proc/%d/status" % d.children()["[smtp]"])
           if l.startswith("VmRSS")][0].split()[1]
    assert int(rss) < 64 * 1024, "listener RSS %s kB" % rss
