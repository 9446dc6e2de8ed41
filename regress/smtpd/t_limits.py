"""Timeouts, session limits, signals: each test runs its own daemon."""

import os
import signal
import socket
import ssl
import subprocess
import time

from harness import HOSTNAME, Closed, Smsubmit, expect, message, \
    refused_at_accept, timeout, unique, wait_for

KINDS = ("tls", "starttls")


def wait_421(c, enh, within):
    t0 = time.monotonic()
    r = c.reply(timeout=within)
    expect(r, 421, enh)
    return time.monotonic() - t0


@timeout(60)
def t_command_timeout():
    with Smsubmit(conf={"timeout command": "2s"}) as d:
        for kind in KINDS:
            c = d.client(kind)
            took = wait_421(c, "4.4.2", 10)
            assert 1 <= took <= 8, "%s: 421 after %.1fs" % (kind, took)
            assert c.closed(3), "%s: open after the timeout" % kind


@timeout(60)
def t_command_timeout_restarts_on_each_command():
    with Smsubmit(conf={"timeout command": "2s"}) as d:
        c = d.client("tls")
        for _ in range(5):
            time.sleep(1)
            expect(c.cmd("NOOP"), 250, "2.0.0")
        # 5s in all, more than the timeout, and still here
        assert d.alive()
        assert c.pending(0.1) == b"", "the session was timed out early"
        took = wait_421(c, "4.4.2", 10)
        assert took >= 1, took


@timeout(60)
def t_command_timeout_after_auth():
    with Smsubmit(conf={"timeout command": "2s"}) as d:
        c = d.session("starttls")
        expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")
        wait_421(c, "4.4.2", 10)
        assert c.closed(3)


@timeout(60)
def t_data_timeout():
    with Smsubmit(conf={"timeout data": "2s"}) as d:
        tag = unique("datato")
        c = d.session()
        c.cmd("MAIL FROM:<alice@example.org>")
        c.cmd("RCPT TO:<bob@example.org>")
        expect(c.cmd("DATA"), 354)
        half = message(tag)
        half = half[:half.index(tag.encode()) + len(tag)]
        c.send(half)
        # the message being received is in the queue's tmp/
        wait_for(lambda: d.queue_files("tmp"), 5, "no file in tmp/ after DATA")
        wait_421(c, "4.4.2", 10)
        assert c.closed(3)
        # and goes away with the session; nothing was committed
        wait_for(lambda: not d.queue_files("tmp"), 10,
                 lambda: "tmp/ still holds %s" % d.queue_files("tmp"))
        assert not d.queue_files("queue"), d.queue_files("queue")
        assert not d.find_messages(tag), "half a message was relayed"


def client_hello():
    """The first flight of a TLS client: its ClientHello record."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(inc, out, server_hostname=HOSTNAME)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    assert hello[:1] == b"\x16" and len(hello) > 100, hello[:20]
    return hello


def closed_after(s, t0, wait=15):
    """Seconds from t0 until the server closes s; what it sent."""
    s.settimeout(wait)
    data = b""
    try:
        while True:
            got = s.recv(4096)
            if not got:
                break
            data += got
    except ConnectionResetError:
        pass
    except socket.timeout:
        raise AssertionError("still open %gs later (got %r)" % (wait, data))
    return time.monotonic() - t0, data


# "timeout command 2s" also bounds the handshake: the connection goes
# after 1 to 2s (whole seconds on the server's clock), not before 1s,
# and 12s is the bound of the test, not a speed asked for.

@timeout(60)
def t_tls_handshake_timeout():
    """A client that connects to the TLS port and never says a word is
    dropped (no greeting is possible before the handshake)."""
    with Smsubmit(conf={"timeout command": "2s"}) as d:
        mark = d.log_mark()
        s = socket.create_connection(("127.0.0.1", d.tls_port))
        s.settimeout(15)
        t0 = time.monotonic()
        try:
            data = s.recv(100)
        except ConnectionResetError:
            data = b""
        took = time.monotonic() - t0
        s.close()
        assert data == b"" and took < 12, (data, took)
        assert took >= 0.9, "closed after %.2fs, before the timeout" % took
        d.wait_log(r"session [0-9a-f]{8} timeout in TLS handshake", 5, mark)


@timeout(60)
def t_tls_handshake_timeout_stalled_client_hello():
    """Half a ClientHello, then nothing; and one that trickles in a byte
    at a time: partial input does not move the deadline."""
    hello = client_hello()
    with Smsubmit(conf={"timeout command": "2s"}) as d:
        mark = d.log_mark()
        s = socket.create_connection(("127.0.0.1", d.tls_port))
        t0 = time.monotonic()
        s.sendall(hello[:len(hello) // 2])
        took, data = closed_after(s, t0)
        s.close()
        assert data == b"", "sent before the handshake: %r" % data
        assert 0.9 <= took < 12, "closed after %.2fs" % took
        d.wait_log(r"session [0-9a-f]{8} timeout in TLS handshake", 5, mark)

        mark = d.log_mark()
        s = socket.create_connection(("127.0.0.1", d.tls_port))
        t0 = time.monotonic()
        sent = 0
        try:
            # 40 bytes, one each 0.25s: 10s if every byte bought time
            for i in range(40):
                s.send(hello[i:i + 1])
                sent += 1
                time.sleep(0.25)
        except OSError:
            pass
        took, data = closed_after(s, t0)
        s.close()
        assert sent < 40, "still open after 10s of a byte every 0.25s"
        assert data == b"" and 0.9 <= took < 12, (data, took)
        d.wait_log(r"session [0-9a-f]{8} timeout in TLS handshake", 5, mark)


@timeout(60)
def t_starttls_handshake_timeout():
    """After 220 to STARTTLS, a handshake that stalls is closed too."""
    hello = client_hello()
    with Smsubmit(conf={"timeout command": "2s"}) as d:
        c = d.client("starttls")
        c.ehlo()
        expect(c.cmd("STARTTLS"), 220)
        mark = d.log_mark()
        t0 = time.monotonic()
        c.sock.sendall(hello[:len(hello) // 2])
        took, data = closed_after(c.sock, t0)
        assert data == b"", "sent in a stalled handshake: %r" % data
        assert 0.9 <= took < 12, "closed after %.2fs" % took
        d.wait_log(r"session [0-9a-f]{8} timeout in TLS handshake", 5, mark)


def open_sessions(d, n):
    out = []
    for _ in range(n):
        c = d.client("starttls")
        expect(c.greeting, 220)
        out.append(c)
    return out


def refused_at_greeting(d, kind="starttls"):
    """Over the limit: refused at accept (SPEC section 5), 421 4.7.0 and
    close on a starttls listener, closed before any TLS byte on a tls
    listener, and the refusal logged."""
    n = d.log().count("refused: Too many sessions")
    refused_at_accept(d, kind)
    d.wait_log(r"connection from 127\.0\.0\.1 on .* refused: Too many "
               r"sessions")
    assert d.log().count("refused: Too many sessions") == n + 1, \
        "%s: refusal not logged once" % kind


def greeted_again(d, kind="starttls"):
    deadline = time.monotonic() + 5
    while True:
        c = d.client(kind, greet=False)
        r = c.reply(timeout=5)
        if r.code == 220:
            return c
        c.close()
        assert time.monotonic() < deadline, "still refused: %s" % r
        time.sleep(0.2)


def t_too_many_sessions():
    with Smsubmit(conf={"limit sessions": "2"}) as d:
        d.wait_idle()  # the start-up probes are gone
        held = open_sessions(d, 2)
        refused_at_greeting(d, "starttls")
        refused_at_greeting(d, "tls")
        # the sessions in flight are not disturbed
        for c in held:
            expect(c.cmd("NOOP"), 250, "2.0.0")
        held.pop().quit()
        greeted_again(d)


def t_too_many_sessions_per_address():
    with Smsubmit(conf={"limit sessions-per-address": "2"}) as d:
        d.wait_idle()
        held = open_sessions(d, 2)
        refused_at_greeting(d)
        held.pop().quit()
        greeted_again(d)


@timeout(90)
def t_shutdown_session_in_flight():
    """SIGTERM: no new sessions; one in flight may finish its message or
    is told 421 4.3.2; the daemon exits."""
    with Smsubmit() as d:
        c = d.session()
        mark = d.log_mark()
        d.signal(signal.SIGTERM)
        d.wait_log(r"smtp: stopping: no new sessions, 1 in flight", 10, mark)
        try:
            socket.create_connection(("127.0.0.1", d.starttls_port),
                                     timeout=2).close()
            new_ok = True
        except OSError:
            new_ok = False
        if new_ok:
            # accepted at the TCP level: it must not be greeted with 220
            try:
                r = d.client("starttls", greet=False).reply(timeout=3)
            except (AssertionError, OSError):
                r = None
            assert r is None or r.code != 220, "greeted after SIGTERM"
        tag = unique("grace")
        replies = []
        try:
            for line in ("MAIL FROM:<alice@example.org>",
                         "RCPT TO:<bob@example.org>", "DATA"):
                replies.append(c.cmd(line))
                if replies[-1].code >= 400:
                    break
            if replies[-1].code == 354:
                c.send(message(tag) + b".\r\n")
                replies.append(c.reply())
            if replies[-1].code < 400:
                # now idle: at the end of the grace period, 421 4.3.2
                replies.append(c.reply(timeout=60))
        except Closed as e:
            raise AssertionError("session cut without 421 4.3.2: %s, %s"
                                 % (replies, e))
        last = replies[-1]
        expect(last, 421, "4.3.2", "replies %s" % replies)
        assert all(r.code < 400 for r in replies[:-1]), replies
        status = d.wait_exit(30)
        assert status == 0, "exit status %d after SIGTERM" % status
        if any(r.code == 250 and "queued" in r.text for r in replies):
            # accepted before the end: delivered, now or after a restart
            if not d.find_messages(tag):
                d.stop_daemon()
                d.start_daemon()
                d.wait_message(tag, 30)


def t_sighup_keeps_sessions():
    with Smsubmit() as d:
        c = d.session()
        expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")
        mark = d.log_mark()
        d.signal(signal.SIGHUP)
        d.wait_log(r"smtp: TLS certificate reloaded", 10, mark)
        assert d.alive(), "SIGHUP stopped the daemon"
        expect(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5")
        tag = unique("hup")
        expect(c.cmd("DATA"), 354)
        c.send(message(tag) + b".\r\n")
        expect(c.reply(), 250, "2.0.0")
        d.wait_message(tag)
        c2 = d.session("starttls")
        expect(c2.cmd("NOOP"), 250, "2.0.0")


def cert_serial(c):
    return c.sock.getpeercert()["serialNumber"]


def t_sighup_reloads_certificate():
    with Smsubmit() as d:
        old = d.client("tls")
        before = cert_serial(old)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                        "-nodes", "-keyout", d.key + ".new",
                        "-out", d.cert + ".new", "-days", "30",
                        "-subj", "/CN=" + HOSTNAME, "-addext",
                        "subjectAltName=DNS:%s,IP:127.0.0.1" % HOSTNAME],
                       check=True, capture_output=True, timeout=30)
        # clients trust both while the files change under the daemon
        with open(d.cert) as a, open(d.cert + ".new") as b:
            both = a.read() + b.read()
        with open(d.dir + "/both.pem", "w") as f:
            f.write(both)
        os.rename(d.key + ".new", d.key)
        os.rename(d.cert + ".new", d.cert)
        d.signal(signal.SIGHUP)
        d.cert = d.dir + "/both.pem"
        deadline = time.monotonic() + 5
        while True:
            c = d.client("tls")
            after = cert_serial(c)
            c.close()
            if after != before:
                break
            assert time.monotonic() < deadline, "same certificate after HUP"
            time.sleep(0.2)
        c = d.client("starttls")
        c.ehlo()
        c.starttls()
        assert cert_serial(c) == after, "STARTTLS listener kept the old one"
        # the session from before the reload goes on
        old.ehlo()
        expect(old.cmd("NOOP"), 250, "2.0.0")


def t_sigterm_exits_cleanly():
    """With no session in flight SIGTERM ends every process at once."""
    with Smsubmit() as d:
        kids = d.children()
        d.wait_idle()   # the start-up probes' sessions are gone too
        d.signal(signal.SIGTERM)
        # no speed asserted: a bound, and the log says what waited
        status = d.wait_exit(30)
        assert status == 0, "exit status %d" % status
        log = d.log()
        assert "stopping: no new sessions, 0 in flight" in log, log[-2000:]
        assert "grace period over" not in log and "killed by signal" not in \
            log, "the shutdown waited for a grace period: %s" % log[-2000:]
        # the parent exits only once it has reaped every child
        left = [t for t, pid in kids.items() if os.path.exists(
            "/proc/%d" % pid) and t in (open("/proc/%d/cmdline" % pid).read())]
        assert not left, "children left: %s" % left
