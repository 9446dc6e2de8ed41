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
