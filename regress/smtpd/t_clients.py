"""Real clients end to end: curl, swaks, openssl s_client, smtplib."""

import os
import re
import select
import smtplib
import ssl
import subprocess
import time
from email.message import EmailMessage

from harness import HOSTNAME, USERS, b64, message, strip_received, \
    unique


def run(argv, input=None, timeout=30):
    p = subprocess.run(argv, input=input, capture_output=True,
                       timeout=timeout)
    out = (p.stdout + p.stderr).decode(errors="replace")
    assert p.returncode == 0, "%s exited %d:\n%s" % (
        argv[0], p.returncode, "\n".join(out.splitlines()[-15:]))
    return out


def check_arrived(d, tag, msg=None, rcpts=("bob@example.org",)):
    m = d.wait_message(tag)
    assert m.mail_from == "alice@example.org", m.mail_from
    assert m.rcpt_to == list(rcpts), m.rcpt_to
    if msg is not None:
        _, rest = strip_received(m.eml)
        assert rest == msg, "message changed: %r" % rest[:200]
    return m


def curl(d, url, *extra):
    tag = unique("curl")
    msg = message(tag, ".leading dot\r\nbody\r\n")
    path = "%s/%s.eml" % (d.dir, tag)
    with open(path, "wb") as f:
        f.write(msg)
    run(["curl", "-sS", "--max-time", "20", "--url", url,
         "--mail-from", "alice@example.org",
         "--mail-rcpt", "bob@example.org", "--mail-rcpt", "carol@example.org",
         "--user", "alice:" + USERS["alice"], "-T", path] + list(extra))
    check_arrived(d, tag, msg, ["bob@example.org", "carol@example.org"])


def t_curl_smtps(d):
    curl(d, "smtps://127.0.0.1:%d" % d.tls_port, "--cacert", d.cert)


def t_curl_smtps_insecure(d):
    curl(d, "smtps://127.0.0.1:%d" % d.tls_port, "-k")


def t_curl_smtp_ssl_reqd(d):
    curl(d, "smtp://127.0.0.1:%d" % d.starttls_port, "--ssl-reqd",
         "--cacert", d.cert)


def t_curl_smtp_ssl_reqd_login(d):
    curl(d, "smtp://127.0.0.1:%d" % d.starttls_port, "--ssl-reqd", "-k",
         "--login-options", "AUTH=LOGIN")


def t_curl_bad_password_fails(d):
    p = subprocess.run(["curl", "-sS", "--max-time", "20", "--url",
                        "smtps://127.0.0.1:%d" % d.tls_port, "-k",
                        "--mail-from", "alice@example.org",
                        "--mail-rcpt", "bob@example.org",
                        "--user", "alice:wrong", "-T", "/dev/null"],
                       capture_output=True, timeout=30)
    # curl's exit 67: "login denied"
    assert p.returncode == 67, (p.returncode, p.stderr)


def swaks(d, port, *mode, auth="PLAIN"):
    tag = unique("swaks")
    out = run(["swaks", "--server", "127.0.0.1:%d" % port] + list(mode) +
              ["--auth", auth, "--auth-user", "alice",
               "--auth-password", USERS["alice"],
               "--from", "alice@example.org", "--to", "bob@example.org",
               "--header", "Subject: %s" % tag,
               "--body", "Hello from swaks.\n..\n.", "--timeout", "20"])
    m = re.search(r"<~  250 2\.0\.0 .*queued as ([0-9A-Fa-f]{16})", out)
    assert m, "no 250 2.0.0 queued as <ID> in swaks' output:\n" + out[-600:]
    got = check_arrived(d, tag)
    assert m.group(1) in got.eml.split(b"\r\n\r\n")[0].decode(), \
        "queue ID not in the headers"
    assert b"\r\n.\r\n.\r\n" not in got.eml and b"\r\n..\r\n.\r\n" in \
        got.eml, "dot-unstuffing: %r" % got.eml[-60:]


def t_swaks_tls_on_connect(d):
    swaks(d, d.tls_port, "--tls-on-connect")


def t_swaks_tls_on_connect_verified(d):
    swaks(d, d.tls_port, "--tls-on-connect", "--tls-verify",
          "--tls-ca-path", d.cert, "--tls-sni", HOSTNAME)


def t_swaks_starttls(d):
    swaks(d, d.starttls_port, "--tls")


def t_swaks_starttls_login(d):
    swaks(d, d.starttls_port, "--tls", auth="LOGIN")


def t_swaks_without_tls_refused(d):
    """swaks trying AUTH on the starttls listener without TLS: refused."""
    p = subprocess.run(["swaks", "--server", "127.0.0.1:%d" %
                        d.starttls_port, "--auth", "PLAIN",
                        "--auth-user", "alice", "--auth-password",
                        USERS["alice"], "--from", "alice@example.org",
                        "--to", "bob@example.org", "--timeout", "10"],
                       capture_output=True, timeout=30)
    assert p.returncode != 0, p.stdout.decode()[-500:]
    out = p.stdout.decode()
    # swaks sees no AUTH in the plaintext EHLO reply
    assert "AUTH" not in "\n".join(l for l in out.splitlines()
                                   if l.startswith("<-")), out[-600:]
    # ... of a server that answered (not one that is down): greeted,
    # EHLO answered with STARTTLS, and swaks' exit 28 "host did not
    # advertise authentication" (a refused connection is exit 2)
    heard = [l[4:] for l in out.splitlines() if l.startswith("<-")]
    assert "220 %s ESMTP smsubmit" % HOSTNAME in heard, out[-600:]
    assert "250 STARTTLS" in heard, out[-600:]
    assert p.returncode == 28, "swaks exit %d:\n%s" % (p.returncode,
                                                       out[-600:])


class Output:
    """What a child prints, read as it comes, with a deadline."""

    def __init__(self, p):
        self.p = p
        self.buf = b""
        self.text = ""

    def reply(self, timeout=20):
        """The next final reply line ("NNN text") it prints."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                line = line.decode(errors="replace").rstrip("\r")
                self.text += line + "\n"
                # s_client -starttls echoes the last line of the EHLO
                # reply it read before TLS; after TLS none says STARTTLS
                if re.match(r"\d{3} ", line) and line != "250 STARTTLS":
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no reply from s_client within %gs:\n%s"
                                     % (timeout, self.text + repr(self.buf)))
            ready, _, _ = select.select([self.p.stdout], [], [], left)
            if ready:
                data = os.read(self.p.stdout.fileno(), 65536)
                if not data:
                    raise AssertionError("s_client ended:\n%s" % (
                        self.text + repr(self.buf)))
                self.buf += data


def s_client(d, args, lines, greeting):
    """Talk through openssl s_client, each command sent once the reply
    to the one before is in (and the greeting, if it prints one); return
    its output."""
    p = subprocess.Popen(["openssl", "s_client", "-quiet", "-crlf",
                          "-CAfile", d.cert, "-verify_return_error",
                          "-verify_hostname", HOSTNAME,
                          "-servername", HOSTNAME] + args,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    out = Output(p)
    try:
        if greeting:
            out.reply()
        in_data = False
        for line in lines:
            p.stdin.write(line.encode() + b"\n")
            p.stdin.flush()
            if in_data and line != ".":
                continue
            r = out.reply()
            in_data = line == "DATA" and r.startswith("354")
        # communicate() closes stdin; -quiet reads on until the server
        # closes after QUIT
        rest, _ = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return out.text + out.buf.decode(errors="replace") + \
        rest.decode(errors="replace")


def dialogue(tag):
    return ["EHLO client.test",
            "AUTH PLAIN " + b64("\0alice\0" + USERS["alice"]),
            "MAIL FROM:<alice@example.org>", "RCPT TO:<bob@example.org>",
            "DATA", "Subject: %s" % tag, "Message-ID: <%s@x>" % tag,
            "Date: Mon, 1 Jan 2024 10:00:00 +0000", "", "..dot", "body",
            ".", "QUIT"]


def t_openssl_s_client_starttls(d):
    tag = unique("sclient")
    out = s_client(d, ["-starttls", "smtp", "-connect",
                       "127.0.0.1:%d" % d.starttls_port], dialogue(tag),
                   greeting=False)
    assert re.search(r"^235 2\.7\.0", out, re.M), out
    assert re.search(r"^250 2\.0\.0 .*queued as [0-9A-Fa-f]{16}", out,
                     re.M), out
    assert re.search(r"^221 2\.0\.0", out, re.M), out
    m = check_arrived(d, tag)
    assert m.eml.endswith(b"\r\n\r\n.dot\r\nbody\r\n"), m.eml[-40:]


def t_openssl_s_client_tls(d):
    tag = unique("sclienttls")
    out = s_client(d, ["-connect", "127.0.0.1:%d" % d.tls_port],
                   dialogue(tag), greeting=True)
    assert re.search(r"^220 %s ESMTP smsubmit" % HOSTNAME, out, re.M), out
    assert re.search(r"^250 2\.0\.0 .*queued as", out, re.M), out
    check_arrived(d, tag)


def t_smtplib_smtp_ssl(d):
    ctx = ssl.create_default_context(cafile=d.cert)
    tag = unique("smtplib")
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = ("alice@example.org",
                                              "bob@example.org", tag)
    msg.set_content("Hello.\n.\n..\n")
    # mx.test does not resolve: connect to the address, verify the name
    s = smtplib.SMTP_SSL(context=ctx, timeout=10)
    s._host = HOSTNAME
    s.connect("127.0.0.1", d.tls_port)
    s.login("alice", USERS["alice"])
    refused = s.send_message(msg)
    s.quit()
    assert refused == {}, refused
    m = check_arrived(d, tag)
    assert b"\r\n.\r\n..\r\n" in m.eml, m.eml[-80:]


def t_smtplib_starttls(d):
    ctx = ssl.create_default_context(cafile=d.cert)
    tag = unique("smtplibtls")
    s = smtplib.SMTP(timeout=10)
    s._host = HOSTNAME
    s.connect("127.0.0.1", d.starttls_port)
    s.ehlo()
    assert not s.has_extn("auth"), s.esmtp_features
    s.starttls(context=ctx)
    s.ehlo()
    assert s.has_extn("auth") and s.has_extn("size"), s.esmtp_features
    s.login("alice", USERS["alice"])
    s.sendmail("alice@example.org", ["bob@example.org"],
               message(tag))
    s.quit()
    check_arrived(d, tag)


def t_smtplib_login_bad_password(d):
    ctx = ssl.create_default_context(cafile=d.cert)
    s = smtplib.SMTP_SSL(context=ctx, timeout=10)
    s._host = HOSTNAME
    s.connect("127.0.0.1", d.tls_port)
    try:
        s.login("alice", "nope")
    except smtplib.SMTPAuthenticationError as e:
        assert e.smtp_code == 535, e
    else:
        raise AssertionError("login with a wrong password succeeded")
    finally:
        s.close()
