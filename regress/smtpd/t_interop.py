"""Real mail clients (issue 9, item 8): msmtp, s-nail (mailx), git
send-email and neomutt in batch mode submit over both ports, each checking
the server's certificate against the test CA and logging in with AUTH
PLAIN or LOGIN, and what they sent arrives at the relay host.  A change
that breaks one of the clients users really have fails here."""

import os
import shutil
import subprocess
import tempfile

from harness import USERS, Skip, Smsubmit, timeout, unique

PASSWORD = USERS["alice"]


def need(*tools):
    for t in tools:
        if not shutil.which(t):
            raise Skip("%s missing (apt-get install msmtp s-nail git-email "
                       "libauthen-sasl-perl libio-socket-ssl-perl neomutt)"
                       % t)


def run(argv, **kw):
    p = subprocess.run(argv, capture_output=True, timeout=60, **kw)
    assert p.returncode == 0, "%s: exit %d\n%s%s" % (
        argv[0], p.returncode, p.stdout.decode(errors="replace"),
        p.stderr.decode(errors="replace"))
    return p


def delivered(d, tag, sender="alice@example.org"):
    m = d.wait_message(tag, timeout=20)
    assert m.mail_from == sender, m.meta
    assert m.rcpt_to == ["bob@example.org"], m.meta
    assert b"Received: from" in m.eml and b"by mx.test (smsubmit)" in m.eml
    return m


@timeout(90)
def t_interop_msmtp_both_ports(d):
    need("msmtp")
    for kind, starttls in (("tls", "off"), ("starttls", "on")):
        tag = unique("msmtp-" + kind)
        msg = ("From: alice@example.org\nTo: bob@example.org\n"
               "Subject: %s\n\nfrom msmtp\n" % tag).encode()
        run(["msmtp", "--host=127.0.0.1", "--port=%d" % d.port(kind),
             "--tls=on", "--tls-starttls=" + starttls,
             "--tls-trust-file=" + d.cert, "--auth=plain", "--user=alice",
             "--passwordeval=echo " + PASSWORD,
             "--from=alice@example.org", "bob@example.org"], input=msg)
        m = delivered(d, tag)
        assert b"from msmtp\r\n" in m.eml, m.eml


@timeout(90)
def t_interop_s_nail_both_ports(d):
    need("s-nail")
    home = tempfile.mkdtemp()
    try:
        for kind in ("tls", "starttls"):
            tag = unique("s-nail-" + kind)
            scheme = "smtps" if kind == "tls" else "smtp"
            argv = ["s-nail", "-:/", "-Sv15-compat", "-Sexpandaddr",
                    # s-nail checks a name, not an IP address, against
                    # the certificate: the test certificate has localhost
                    "-Smta=%s://alice:%s@localhost:%d" % (
                        scheme, PASSWORD, d.port(kind)),
                    "-Ssmtp-auth=plain", "-Stls-ca-file=" + d.cert,
                    "-Stls-ca-no-defaults",
                    "-Sfrom=alice@example.org", "-Ssendwait",
                    "-s", tag, "bob@example.org"]
            if kind == "starttls":
                argv.insert(4, "-Ssmtp-use-starttls")
            run(argv, input=b"from s-nail\n",
                env=dict(os.environ, HOME=home, MAILRC="/dev/null"))
            m = delivered(d, tag)
            assert b"from s-nail" in m.eml, m.eml
    finally:
        shutil.rmtree(home)


@timeout(120)
def t_interop_git_send_email_both_ports(d):
    need("git")
    p = subprocess.run(["git", "send-email", "-h"], capture_output=True,
                       timeout=30)
    if b"send-email" not in p.stdout + p.stderr or \
            b"is not a git command" in p.stderr:
        raise Skip("git send-email missing (apt-get install git-email)")
    repo = tempfile.mkdtemp()
    try:
        env = dict(os.environ, HOME=repo, GIT_CONFIG_NOSYSTEM="1",
                   GIT_AUTHOR_NAME="Alice", GIT_AUTHOR_EMAIL=
                   "alice@example.org", GIT_COMMITTER_NAME="Alice",
                   GIT_COMMITTER_EMAIL="alice@example.org")
        run(["git", "init", "-q", repo], env=env)
        for kind, enc in (("tls", "ssl"), ("starttls", "tls")):
            tag = unique("git-" + kind)
            with open(os.path.join(repo, "file.txt"), "a") as f:
                f.write(tag + "\n")
            run(["git", "-C", repo, "add", "file.txt"], env=env)
            run(["git", "-C", repo, "commit", "-q", "-m", tag], env=env)
            patch = run(["git", "-C", repo, "format-patch", "-1", "-o",
                         repo], env=env).stdout.decode().strip()
            run(["git", "-C", repo, "send-email", "--quiet",
                 "--confirm=never", "--no-validate", "--suppress-cc=all",
                 "--smtp-server=127.0.0.1",
                 "--smtp-server-port=%d" % d.port(kind),
                 "--smtp-encryption=" + enc,
                 "--smtp-ssl-cert-path=" + d.cert,
                 "--smtp-user=alice", "--smtp-pass=" + PASSWORD,
                 "--smtp-auth=PLAIN LOGIN",
                 "--from=alice@example.org", "--to=bob@example.org",
                 patch], env=env)
            m = delivered(d, tag)
            assert b"+" + tag.encode() in m.eml, m.eml
    finally:
        shutil.rmtree(repo)


@timeout(90)
def t_interop_neomutt_batch_both_ports(d):
    need("neomutt")
    home = tempfile.mkdtemp()
    try:
        for kind in ("tls", "starttls"):
            tag = unique("neomutt-" + kind)
            scheme = "smtps" if kind == "tls" else "smtp"
            rc = os.path.join(home, "muttrc")
            with open(rc, "w") as f:
                f.write('set smtp_url="%s://alice@127.0.0.1:%d/"\n'
                        'set smtp_pass="%s"\n'
                        'set smtp_authenticators="login:plain"\n'
                        'set ssl_ca_certificates_file="%s"\n'
                        'set ssl_force_tls=yes\n'
                        'set ssl_starttls=yes\n'
                        'set from="alice@example.org"\n'
                        'set use_from=yes\n'
                        'set record=""\n'
                        'set folder="%s"\n'
                        'set spoolfile="%s/inbox"\n'
                        'set header_cache=""\n' % (
                            scheme, d.port(kind), PASSWORD, d.cert, home,
                            home))
            run(["neomutt", "-n", "-F", rc, "-s", tag, "bob@example.org"],
                input=b"from neomutt\n",
                env=dict(os.environ, HOME=home, TERM="dumb"))
            m = delivered(d, tag)
            assert b"from neomutt" in m.eml, m.eml
    finally:
        shutil.rmtree(home)
