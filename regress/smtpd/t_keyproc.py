"""The TLS private key lives in [crypto] alone (SPEC section 2, issue 10).

The listener is given the certificate and a fake key; every signature of
its handshakes is made by the key process.  These tests do handshakes with
RSA and ECDSA keys, TLS 1.2 and 1.3, on both kinds of listener, then read
the listener's whole writable memory as root and look for the key in
every form it could take there (PEM text, DER, the raw private numbers in
either byte order).  The same scan must find the key in a process that
holds it the ordinary way, or it proves nothing: the key process itself,
and an openssl s_server loaded with the key.
"""

import os
import re
import signal
import socket
import ssl
import subprocess
import time

import harness
from harness import Smsubmit, need_root, run

TIMEOUT = 120


def make_key(d, kind):
    """A certificate and key of kind "rsa" or "ec" in the daemon's dir."""
    cert = os.path.join(d.dir, "%s-cert.pem" % kind)
    key = os.path.join(d.dir, "%s-key.pem" % kind)
    newkey = ["-newkey", "rsa:2048"] if kind == "rsa" else \
        ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    run(["openssl", "req", "-x509", "-nodes", "-days", "30", "-subj",
         "/CN=" + harness.HOSTNAME, "-addext",
         "subjectAltName=DNS:%s,IP:127.0.0.1" % harness.HOSTNAME,
         "-keyout", key, "-out", cert] + newkey)
    os.chmod(key, 0o600)
    return cert, key


def daemon(kind):
    d = Smsubmit(start=False, name="keyproc")
    d.cert, d.key = make_key(d, kind)
    d.conf_text = re.sub(r"(?m)^tls certificate .*$",
                         'tls certificate "%s" key "%s"' % (d.cert, d.key),
                         d.conf_text)
    with open(d.conf_path, "w") as f:
        f.write(d.conf_text)
    d.start()
    return d


secrets = harness.key_secrets
writable_memory = harness.writable_memory
found = harness.found_in_memory


def handshake(d, kind, version):
    """A full TLS + AUTH session of the given version on port kind."""
    c = harness.Client("127.0.0.1", d.port(kind), tls=False,
                       cafile=d.cert, greet=(kind == "starttls"))
    ctx = ssl.create_default_context(cafile=d.cert)
    ctx.minimum_version = ctx.maximum_version = version
    if kind == "starttls":
        c.ehlo()
        harness.expect(c.cmd("STARTTLS"), 220)
    c.sock = ctx.wrap_socket(c.sock, server_hostname=harness.HOSTNAME)
    c.tls = True
    if kind == "tls":
        harness.expect(c.reply(), 220)
    c.ehlo()
    harness.expect(c.auth_plain("alice", "alice-pw"), 235, "2.7.0")
    want = "TLSv1.3" if version == ssl.TLSVersion.TLSv1_3 else "TLSv1.2"
    assert c.version() == want, (c.version(), want)
    return c


VERSIONS = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)


def check_key_kind(kind):
    need_root()
    with daemon(kind) as d:
        open_sessions = [handshake(d, port, v)
                         for port in ("tls", "starttls") for v in VERSIONS]
        qid = open_sessions[0].send_message(
            "alice@example.org", ["bob@example.org"],
            b"Subject: signed by crypto\r\n\r\nx\r\n")
        d.wait_message(qid)
        needles = secrets(d.key)
        kids = d.children()
        leaked = found(kids["[smtp]"], needles)
        assert not leaked, "[smtp] memory holds the private key: %s" % leaked
        # the scanner works: the process that signs holds the key
        held = found(kids["[crypto]"], needles)
        assert any("priv" in k or "prime" in k for k in held), \
            "the scan finds no key even in [crypto]: %s" % held
        for c in open_sessions:
            c.quit()
        assert "signature refused" not in d.log()


def t_keyproc_rsa_handshakes_key_never_in_listener():
    check_key_kind("rsa")


def t_keyproc_ecdsa_handshakes_key_never_in_listener():
    check_key_kind("ec")


def t_keyproc_scan_finds_key_in_a_server_holding_it():
    """Negative control: the old path (a TLS server that loads the key
    itself, as the listener did) is found by the same scan."""
    need_root()
    d = Smsubmit(start=False, name="keyproc")
    try:
        cert, key = make_key(d, "ec")
        port = harness.free_port()
        p = subprocess.Popen(["openssl", "s_server", "-quiet", "-accept",
                              "127.0.0.1:%d" % port, "-cert", cert, "-key",
                              key, "-naccept", "1"],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    s = socket.create_connection(("127.0.0.1", port), 1)
                    break
                except OSError:
                    assert time.monotonic() < deadline, "no s_server"
                    time.sleep(0.05)
            ctx = ssl.create_default_context(cafile=cert)
            with ctx.wrap_socket(s, server_hostname=harness.HOSTNAME):
                held = found(p.pid, secrets(key))
            assert any("priv" in k for k in held), held
        finally:
            p.kill()
            p.wait()
    finally:
        d.stop()


def t_keyproc_reload_swaps_certificate_and_key():
    """SIGHUP with a new certificate and key (RSA to ECDSA): new sessions
    are signed with the new key, a session in flight goes on."""
    need_root()
    with daemon("rsa") as d:
        old = d.session("tls")
        cert, key = make_key(d, "ec")
        os.replace(cert, d.cert)
        os.replace(key, d.key)
        d.signal(signal.SIGHUP)
        d.wait_log(r"crypto: 1 private key loaded(.|\n)*"
                   r"crypto: 1 private key loaded")
        d.wait_log(r"TLS certificate reloaded")
        for port in ("tls", "starttls"):
            c = handshake(d, port, ssl.TLSVersion.TLSv1_2)
            assert "ECDSA" in c.sock.cipher()[0], c.sock.cipher()
            c.quit()
        qid = old.send_message("alice@example.org", ["bob@example.org"],
                               b"Subject: in flight\r\n\r\nx\r\n")
        d.wait_message(qid)
        assert not found(d.children()["[smtp]"], secrets(d.key))


def t_keyproc_key_not_matching_certificate_refuses_start():
    need_root()
    d = Smsubmit(start=False, name="keyproc")
    try:
        _, other = make_key(d, "rsa")
        d.conf_text = re.sub(r'key "[^"]*"', 'key "%s"' % other, d.conf_text)
        with open(d.conf_path, "w") as f:
            f.write(d.conf_text)
        d.upstream.start()
        try:
            d.start_daemon(timeout=10)
        except RuntimeError:
            pass
        status = d.wait_exit(20)
        assert d.proc.returncode == 1, d.proc.returncode
        assert status == 1, status
        log = d.log()
        assert "the key does not match the certificate" in log, log
        assert "priv: started," not in log, log
    finally:
        d.stop()


def t_keyproc_killed_stops_daemon():
    with Smsubmit(name="keyproc") as d:
        pid = d.children()["[crypto]"]
        os.kill(pid, signal.SIGKILL)
        try:
            d.wait_exit(10)
        except AssertionError:
            raise AssertionError("daemon survived its key process")
        assert d.proc.returncode == 1, d.proc.returncode
        assert re.search(r"crypto process killed by signal 9", d.log())
        d.kill_leftovers(wait=5)
        assert not getattr(d, "leftovers", [])


def make_named(d, kind, name):
    cert = os.path.join(d.dir, "%s-%s-cert.pem" % (name, kind))
    key = os.path.join(d.dir, "%s-%s-key.pem" % (name, kind))
    newkey = ["-newkey", "rsa:2048"] if kind == "rsa" else \
        ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    run(["openssl", "req", "-x509", "-nodes", "-days", "30", "-subj",
         "/CN=" + name, "-addext", "subjectAltName=DNS:" + name,
         "-keyout", key, "-out", cert] + newkey)
    return cert, key


def served_subject(port, kind, servername):
    """The subject CN of the certificate the server presents for
    servername, with openssl s_client on port (kind tls or starttls)."""
    argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
            "-servername", servername, "-brief"]
    if kind == "starttls":
        argv[4:4] = ["-starttls", "smtp"]
    p = subprocess.run(argv, input=b"QUIT\r\n", capture_output=True,
                       timeout=20)
    out = p.stderr.decode(errors="replace") + p.stdout.decode(
        errors="replace")
    m = re.search(r"Peer certificate: CN ?= ?([^\s,/]+)", out)
    assert m, "no peer certificate from s_client: %s" % out[-400:]
    return m.group(1)


def t_keyproc_sni_chooses_certificate_on_both_ports():
    """Several `tls certificate` statements: the first is the default, the
    others are chosen by the client's SNI; each signed by [crypto]; the
    same after SIGHUP."""
    need_root()
    d = Smsubmit(start=False, name="keyproc")
    try:
        pairs = [make_named(d, "rsa", harness.HOSTNAME),
                 make_named(d, "ec", "other.test"),
                 make_named(d, "rsa", "third.test")]
        lines = ['tls certificate "%s" key "%s"' % p for p in pairs]
        d.conf_text = re.sub(r"(?m)^tls certificate .*$", "\n".join(lines),
                             d.conf_text)
        with open(d.conf_path, "w") as f:
            f.write(d.conf_text)
        d.start()
        d.wait_log(r"crypto: 3 private keys loaded")
        for rnd in range(2):
            for kind in ("tls", "starttls"):
                port = d.port(kind)
                for name in ("other.test", "third.test", harness.HOSTNAME):
                    assert served_subject(port, kind, name) == name, \
                        (rnd, kind, name)
                assert served_subject(port, kind, "unknown.test") == \
                    harness.HOSTNAME, "the default is the first"
            if rnd == 0:
                d.signal(signal.SIGHUP)
                d.wait_log(r"TLS certificate reloaded")
        leaked = found(d.children()["[smtp]"], {
            **secrets(pairs[1][1]), **secrets(pairs[2][1])})
        assert not leaked, leaked
    finally:
        d.stop()
