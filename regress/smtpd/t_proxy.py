"""Behind a TCP load balancer (issue 9, item 2): `listen on ... proxy from
ADDRESS`.  Every connection to such a listener must start with a PROXY
header (v1 or v2) and come from a trusted address; the client it names is
the one logged, written in Received:, counted by the per-address limits and
banned after failed logins.  Then real HAProxy in front of two instances,
each with its own queue: a killed instance loses no accepted message and
new clients go to the other."""

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

from harness import (SMSUBMIT, Client, Closed, Skip, Smsubmit, USERS, b64,
                     expect, free_port, message, timeout, unique)


def behind_proxy(trusted="127.0.0.1", conf=None, start=True):
    """A daemon whose two listeners take PROXY headers from trusted."""
    d = Smsubmit(conf=conf, start=False)
    text = re.sub(r"^(listen on .* (tls|starttls))$",
                  r"\1 proxy from %s" % trusted, d.conf_text, flags=re.M)
    assert text != d.conf_text
    d.conf_text = text
    with open(d.conf_path, "w") as f:
        f.write(text)
    if start:
        d.start()
    return d


def v1(src, dst="127.0.0.1", sport=40000, dport=465):
    fam = "TCP6" if ":" in src else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport,
                                          dport)).encode()


def v2(src, dst="127.0.0.1", sport=40000, dport=465, local=False):
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    if local:
        return sig + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    if ":" in src:
        addrs = socket.inet_pton(socket.AF_INET6, src) + \
            socket.inet_pton(socket.AF_INET6, dst)
        fam = 0x21
    else:
        addrs = socket.inet_aton(src) + socket.inet_aton(dst)
        fam = 0x11
    body = addrs + struct.pack("!HH", sport, dport)
    return sig + bytes([0x21, fam]) + struct.pack("!H", len(body)) + body


def via(d, kind, header, source=None):
    """A client that sends header first, then speaks SMTP (after TLS on
    a tls listener); greeted."""
    c = Client("127.0.0.1", d.port(kind), tls=False, cafile=d.cert,
               greet=False, source=source)
    c.sock.sendall(header)
    if kind == "tls":
        c._wrap()
    c.greeting = c.reply()
    return c


def submit_via(d, kind, header, tag, user="alice"):
    c = via(d, kind, header)
    if kind == "starttls":
        c.ehlo()
        c.starttls()
    c.ehlo()
    expect(c.auth_plain(user, USERS[user]), 235, "2.7.0")
    qid = c.send_message("%s@example.org" % user, ("bob@example.org",),
                         message(tag))
    c.quit()
    return qid


def closed_without_session(c):
    """The server closes: nothing, or one 421 line, then EOF."""
    try:
        data = c.sock.recv(512)
        if data:
            assert data.startswith(b"421 "), data
            data = c.sock.recv(512)
        assert data == b"", data
    except (ConnectionResetError, BrokenPipeError):
        pass


def t_proxy_config_checked():
    d = Smsubmit(start=False)
    bad = os.path.join(d.dir, "bad.conf")
    for arg in ("example.org", "10.0.0.1/33", "10.0.0.1/8", "1.2.3"):
        with open(bad, "w") as f:
            f.write(re.sub(r"^(listen on .* tls)$",
                           r"\1 proxy from %s" % arg, d.conf_text,
                           count=1, flags=re.M))
        p = subprocess.run([SMSUBMIT, "-n", "-f", bad], capture_output=True,
                           timeout=30)
        err = p.stderr.decode()
        assert p.returncode == 1, err
        assert re.search(r"bad\.conf:\d+: proxy from: invalid address or "
                         r"network \"%s\"" % re.escape(arg), err), err
    with open(bad, "w") as f:
        f.write(re.sub(r"^(listen on .* tls)$",
                       r"\1 proxy from 10.0.0.0/8 ::1 127.0.0.1",
                       d.conf_text, count=1, flags=re.M))
    p = subprocess.run([SMSUBMIT, "-n", "-f", bad], capture_output=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr


@timeout(90)
def t_proxy_v1_and_v2_client_is_the_header_s():
    with behind_proxy() as d:
        tags = {}
        for kind in ("tls", "starttls"):
            for n, (hdr, client) in enumerate((
                    (v1("192.0.2.7"), "192.0.2.7"),
                    (v2("198.51.100.9"), "198.51.100.9"),
                    (v2("2001:db8::5", "::1"), "2001:db8::5"))):
                tag = unique("proxy-%s-%d" % (kind, n))
                submit_via(d, kind, hdr, tag)
                tags[tag] = client
        for tag, client in tags.items():
            m = d.wait_message(tag)
            recv = m.eml.split(b"\r\n\r\n")[0].decode()
            literal = ("IPv6:" if ":" in client else "") + client
            assert "Received: from client.test ([%s])" % literal in recv, \
                recv
        log = d.log()
        for client in set(tags.values()):
            assert re.search(r"session \w+ connect from %s via proxy "
                             r"127\.0\.0\.1 on " % re.escape(client), log), \
                log
        assert d.healthy()


def t_proxy_untrusted_source_refused():
    with behind_proxy(trusted="127.0.0.2") as d:
        for kind in ("tls", "starttls"):
            c = Client("127.0.0.1", d.port(kind), greet=False)
            c.sock.sendall(v1("192.0.2.7"))
            closed_without_session(c)
        d.wait_log(r"connection from 127\.0\.0\.1 on .* refused: Not a "
                   r"trusted proxy")
        assert not re.search(r"session \w+ connect from", d.log()), d.log()
        # from the trusted address it works
        c = via(d, "starttls", v1("192.0.2.8"), source="127.0.0.2")
        expect(c.ehlo(), 250)
        c.quit()


def t_proxy_header_missing_or_bad_refused():
    with behind_proxy() as d:
        cases = [
            ("tls", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
            ("starttls", b"EHLO client.test\r\n"),
            ("starttls", b"PROXY TCP4 192.0.2.1 nonsense\r\n"),
            ("starttls", b"PROXY TCP4 300.0.2.1 127.0.0.1 1 2\r\n"),
            ("tls", b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff" + b"x" * 64),
        ]
        for kind, data in cases:
            c = Client("127.0.0.1", d.port(kind), greet=False)
            c.sock.sendall(data)
            try:
                assert c.sock.recv(512) == b"", data
            except ConnectionResetError:
                pass
        log = d.log()
        assert log.count("not a valid PROXY header") == len(cases), log
        assert not re.search(r"session \w+ connect from", log), log
        assert d.healthy()


@timeout(30)
def t_proxy_header_stalled_times_out():
    with behind_proxy(conf={"timeout handshake": "2s"}) as d:
        c = Client("127.0.0.1", d.port("starttls"), greet=False)
        c.sock.sendall(b"PROXY TCP4 192.0.2.")
        start = time.monotonic()
        c.sock.settimeout(10)
        assert c.sock.recv(100) == b""
        took = time.monotonic() - start
        assert 1.5 <= took <= 8, took
        d.wait_log(r"no PROXY header in time")


def t_proxy_local_header_is_the_balancer():
    """v2 LOCAL (HAProxy's health check): the session is the balancer's."""
    with behind_proxy() as d:
        c = via(d, "starttls", v2("0.0.0.0", local=True))
        expect(c.ehlo(), 250)
        c.quit()
        d.wait_log(r"session \w+ connect from 127\.0\.0\.1 via proxy "
                   r"127\.0\.0\.1")


def t_proxy_address_limit_counts_the_real_client():
    with behind_proxy(conf={"limit sessions-per-address": "2"}) as d:
        held = [via(d, "starttls", v1("192.0.2.20")) for _ in range(2)]
        c = via(d, "starttls", v1("192.0.2.21"))
        expect(c.ehlo(), 250)
        over = Client("127.0.0.1", d.port("starttls"), greet=False)
        over.sock.sendall(v1("192.0.2.20"))
        over.sock.settimeout(10)
        data = over.sock.recv(512)
        assert data.startswith(b"421 4.7.0 "), data
        assert b"Too many sessions from your address" in data, data
        d.wait_log(r"from 192\.0\.2\.20 via proxy 127\.0\.0\.1 refused: "
                   r"Too many sessions from your address")
        for h in held:
            h.quit()
        c.quit()


@timeout(60)
def t_proxy_auth_ban_hits_the_real_client():
    conf = {"auth ban": "after 2 within 1m for 1m",
            "auth max-failures": "5"}
    with behind_proxy(conf=conf) as d:
        c = via(d, "tls", v1("192.0.2.30"))
        c.ehlo()
        for _ in range(2):
            expect(c.auth_plain("alice", "wrong"), 535, "5.7.8")
        c.quit()
        d.wait_log(r"banned 192\.0\.2\.30 ", timeout=10)
        # the banned client, again through the proxy: refused
        refused = False
        deadline = time.monotonic() + 10
        while not refused and time.monotonic() < deadline:
            x = Client("127.0.0.1", d.port("starttls"), greet=False)
            x.sock.sendall(v1("192.0.2.30"))
            x.sock.settimeout(10)
            data = x.sock.recv(512)
            refused = data.startswith(b"421 4.7.0") and \
                b"authentication failures" in data
            x.sock.close()
            if not refused:
                time.sleep(0.2)
        assert refused, data
        # another client behind the same proxy still logs in
        qid = submit_via(d, "tls", v1("192.0.2.31"), unique("not-banned"))
        d.wait_message(qid)


# --- real HAProxy in front of two instances ---

HAPROXY_CONF = """\
global
    maxconn 256
defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
frontend smtps
    bind 127.0.0.1:{front_tls}
    default_backend smtps
frontend submission
    bind 127.0.0.1:{front_starttls}
    default_backend submission
backend smtps
    balance roundrobin
    server a 127.0.0.1:{a_tls} send-proxy-v2 check inter 300 fall 1 rise 1 check-send-proxy
    server b 127.0.0.1:{b_tls} send-proxy check inter 300 fall 1 rise 1 check-send-proxy
backend submission
    balance roundrobin
    server a 127.0.0.1:{a_starttls} send-proxy check inter 300 fall 1 rise 1 check-send-proxy
    server b 127.0.0.1:{b_starttls} send-proxy-v2 check inter 300 fall 1 rise 1 check-send-proxy
"""


class HAProxy:
    def __init__(self, a, b):
        if not shutil.which("haproxy"):
            raise Skip("haproxy missing (apt-get install haproxy)")
        self.dir = tempfile.mkdtemp(prefix="smsubmit-haproxy-")
        self.ports = {"tls": free_port(), "starttls": free_port()}
        conf = os.path.join(self.dir, "haproxy.cfg")
        with open(conf, "w") as f:
            f.write(HAPROXY_CONF.format(
                front_tls=self.ports["tls"],
                front_starttls=self.ports["starttls"],
                a_tls=a.port("tls"), a_starttls=a.port("starttls"),
                b_tls=b.port("tls"), b_starttls=b.port("starttls")))
        p = subprocess.run(["haproxy", "-c", "-f", conf],
                           capture_output=True, timeout=30)
        assert p.returncode == 0, p.stdout + p.stderr
        self.logf = open(os.path.join(self.dir, "haproxy.log"), "wb")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", conf],
                                     stdout=self.logf, stderr=self.logf,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.ports["tls"]),
                                         1).close()
                break
            except OSError:
                assert self.proc.poll() is None and \
                    time.monotonic() < deadline, "haproxy did not start"
                time.sleep(0.1)

    def submit(self, d, kind, tag, source):
        """Through the balancer from source; d gives the certificate."""
        c = Client("127.0.0.1", self.ports[kind], tls=(kind == "tls"),
                   cafile=d.cert, source=source)
        if kind == "starttls":
            c.ehlo()
            c.starttls()
        c.ehlo()
        expect(c.auth_plain("alice", USERS["alice"]), 235, "2.7.0")
        qid = c.send_message("alice@example.org", ("bob@example.org",),
                             message(tag))
        c.quit()
        return qid

    def logtext(self):
        return open(os.path.join(self.dir, "haproxy.log"),
                    errors="replace").read()

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.logf.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def owner_of(qid, a, b):
    return a if re.search(r"\b%s\b" % qid, a.log()) else b


@timeout(180)
def t_haproxy_two_instances_real_client_and_failover():
    a = behind_proxy()
    b = behind_proxy()
    hp = None
    try:
        hp = HAProxy(a, b)
        # round robin: both instances get sessions, each logs the client
        qids = {}
        for i in range(4):
            for kind in ("tls", "starttls"):
                tag = unique("ha-%s-%d" % (kind, i))
                qids[hp.submit(a, kind, tag, "127.0.0.%d" % (2 + i))] = tag
        for d in (a, b):
            assert re.search(r"session \w+ connect from 127\.0\.0\.[2-5] "
                             r"via proxy 127\.0\.0\.1", d.log()), d.log()
        for qid, tag in qids.items():
            d = owner_of(qid, a, b)
            m = d.wait_message(tag)
            assert re.search(rb"\[127\.0\.0\.[2-5]\]", m.eml), m.eml[:400]
        assert any(re.search(r"\b%s\b" % q, a.log()) for q in qids) and \
            any(re.search(r"\b%s\b" % q, b.log()) for q in qids), \
            "round robin did not reach both"

        # a message accepted by a, whose relay is down, then a is killed
        a.upstream.stop()
        b.upstream.stop()
        qid = None
        for _ in range(4):
            qid = hp.submit(a, "tls", unique("probe"), "127.0.0.9")
            if re.search(r"\b%s\b" % qid, a.log()):
                break
            qid = None
        assert qid is not None, "no session reached instance a"
        kept = qid
        os.kill(a.pid, signal.SIGKILL)
        a.proc.wait(10)
        # HAProxy notices (its health check) and sends everyone to b
        deadline = time.monotonic() + 15
        while not re.search(r"submission/a is DOWN", hp.logtext()):
            assert time.monotonic() < deadline, hp.logtext()
            time.sleep(0.1)
        b.upstream.start()
        for i in range(4):
            q = hp.submit(b, "starttls", unique("after-kill-%d" % i),
                          "127.0.0.10")
            assert re.search(r"\b%s\b" % q, b.log()), \
                "a session went to the dead instance"
        # a restarts with its queue: the message it accepted is delivered
        for p in list(a.pids):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        a.upstream.start()
        a.start_daemon()
        m = a.wait_message(kept, timeout=30)
        assert m.rcpt_to == ["bob@example.org"], m.meta
    finally:
        if hp is not None:
            hp.close()
        a.stop()
        b.stop()
