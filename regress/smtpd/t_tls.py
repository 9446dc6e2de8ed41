"""The TLS the listeners offer by default: TLS 1.2 with forward-secret AEAD
suites only (as Mozilla's intermediate profile), and TLS 1.3."""

import re
import subprocess

from harness import HOSTNAME, Smsubmit

CBC = ("ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA384",
       "ECDHE-RSA-AES128-SHA256", "AES128-SHA", "AES256-GCM-SHA384")
AEAD = ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-RSA-CHACHA20-POLY1305")


def handshake(d, kind, cipher=None, tls13=False):
    """openssl s_client's handshake with one TLS 1.2 suite (or TLS 1.3);
    the suite agreed on, or None if the handshake failed."""
    argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % d.port(kind),
            "-CAfile", d.cert, "-servername", HOSTNAME, "-brief"]
    argv += ["-tls1_3"] if tls13 else ["-tls1_2", "-cipher", cipher]
    if kind == "starttls":
        argv += ["-starttls", "smtp"]
    p = subprocess.run(argv, input=b"QUIT\r\n", capture_output=True,
                       timeout=20)
    out = (p.stdout + p.stderr).decode(errors="replace")
    m = re.search(r"^Ciphersuite: (\S+)", out, re.M)
    if p.returncode != 0 or not m:
        return None
    return m.group(1)


def t_tls_default_refuses_cbc_suites(d):
    """A client offering only a CBC (or non-forward-secret) TLS 1.2 suite
    cannot complete the handshake, on either listener; AEAD suites and
    TLS 1.3 can."""
    for kind in ("tls", "starttls"):
        for c in CBC:
            got = handshake(d, kind, c)
            assert got is None, "%s: %s accepted (%s)" % (kind, c, got)
        for c in AEAD:
            assert handshake(d, kind, c) == c, "%s: %s refused" % (kind, c)
        assert handshake(d, kind, tls13=True) is not None, \
            "%s: TLS 1.3 refused" % kind


def t_tls_ciphers_statement_still_rules():
    """`tls ciphers "secure"` (libtls's own list) brings the CBC suites
    back: the default is a default, not a hard rule."""
    with Smsubmit(conf={"tls ciphers": '"secure"'}) as d:
        assert handshake(d, "tls", "ECDHE-RSA-AES128-SHA") == \
            "ECDHE-RSA-AES128-SHA"


def t_tls_hello_retry_request_completes(d):
    """A TLS 1.3 client whose first key share is for a group the server
    does not take gets a HelloRetryRequest, and its second ClientHello a
    handshake that completes and signs (the first step signed nothing, so
    the listener must not take the rest for a handshake already signed:
    smtpd/handshaker.c), on both listeners."""
    for kind in ("tls", "starttls"):
        argv = ["openssl", "s_client", "-connect",
                "127.0.0.1:%d" % d.port(kind), "-CAfile", d.cert,
                "-servername", HOSTNAME, "-tls1_3", "-msg",
                "-groups", "ffdhe2048:X25519"]
        if kind == "starttls":
            argv += ["-starttls", "smtp"]
        p = subprocess.run(argv, input=b"EHLO client.test\r\nQUIT\r\n",
                           capture_output=True, timeout=20)
        out = p.stdout.decode(errors="replace")
        hellos = re.findall(r"^>>> TLS 1.3, Handshake \[[^]]*\], "
                            r"ClientHello", out, re.M)
        assert len(hellos) == 2, "%s: %d ClientHellos, no retry?\n%s" % (
            kind, len(hellos), out[-2000:])
        assert "Verify return code: 0 (ok)" in out, out[-2000:]
        assert "Server Temp Key: X25519" in out, out[-2000:]
        assert "New, TLSv1.3" in out, out[-2000:]
