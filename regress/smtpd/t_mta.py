"""A real MTA behind smsubmit (issue 9, item 1): Debian's Postfix, with a
configuration directory, queue and Maildirs of its own on a high loopback
port, and OpenSMTPD (the Debian package unpacked, since it conflicts with
postfix) relaying on to the test store.  What is checked is what an
administrator would: the message lands byte for byte, a recipient the MTA
refuses comes back to the sender as smsubmit's DSN, and an MTA that was
down gets the message once it is back."""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time

import postfix
from harness import (Skip, Smsubmit, free_port, message, need_root, timeout,
                     unique)

# the listener smsubmit relays to, then Postfix's internal services
POSTFIX_SERVICES = "{listen} inet n - n - - smtpd\n" + postfix.SERVICES


def run(argv, **kw):
    p = subprocess.run(argv, capture_output=True, timeout=60, **kw)
    assert p.returncode == 0, "%s: exit %d: %s%s" % (
        " ".join(argv), p.returncode, p.stdout.decode(errors="replace"),
        p.stderr.decode(errors="replace"))
    return p


class Postfix:
    """Postfix on 127.0.0.1:port, delivering example.org's alice and bob
    into Maildirs, refusing any other example.org recipient at RCPT."""

    def __init__(self):
        need_root()
        if not shutil.which("postfix") or \
                not os.path.isdir("/usr/lib/postfix"):
            raise Skip("postfix missing (apt-get install postfix, debconf "
                       "main_mailer_type 'No configuration')")
        self.dir = tempfile.mkdtemp(prefix="smsubmit-postfix-")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.etc = os.path.join(self.dir, "etc")
        self.mail = os.path.join(self.dir, "mail")
        self.log = os.path.join(self.dir, "postfix.log")
        os.mkdir(self.etc)
        os.mkdir(self.mail)
        # the queue is root's (postfix start makes what is inside), the
        # data directory Postfix's
        os.mkdir(os.path.join(self.dir, "spool"), 0o755)
        os.mkdir(os.path.join(self.dir, "data"), 0o700)
        pfu = pwd.getpwnam("postfix")
        os.chown(os.path.join(self.dir, "data"), pfu.pw_uid, pfu.pw_gid)
        nobody = pwd.getpwnam("nobody")
        os.chown(self.mail, nobody.pw_uid, nobody.pw_gid)
        with open(os.path.join(self.etc, "vmailbox"), "w") as f:
            f.write("alice@example.org alice/\nbob@example.org bob/\n")
        main = {
            "compatibility_level": "3.6",
            "queue_directory": os.path.join(self.dir, "spool"),
            "data_directory": os.path.join(self.dir, "data"),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "mta.test",
            "mydomain": "mta.test",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            # what the README says: smsubmit comes from the loopback
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions":
                "permit_mynetworks, reject_unauth_destination",
            "virtual_mailbox_domains": "example.org",
            "virtual_mailbox_base": self.mail,
            "virtual_mailbox_maps": "texthash:%s/vmailbox" % self.etc,
            "virtual_uid_maps": "static:%d" % nobody.pw_uid,
            "virtual_gid_maps": "static:%d" % nobody.pw_gid,
            "default_transport": "error:no mail leaves this test",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "maillog_file": self.log,
            "maillog_file_prefixes": self.dir,
            "smtputf8_enable": "no",
        }
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            for k, v in main.items():
                f.write("%s = %s\n" % (k, v))
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(POSTFIX_SERVICES.format(listen="127.0.0.1:%d" %
                                            self.port))
        self.start()

    def postfix(self, *args):
        p = subprocess.run(["postfix", "-c", self.etc] + list(args),
                           capture_output=True, timeout=60)
        # its fatal errors go to its log (stderr only on a terminal)
        assert p.returncode == 0, "postfix %s: exit %d: %s%s\n%s" % (
            " ".join(args), p.returncode, p.stdout.decode(errors="replace"),
            p.stderr.decode(errors="replace"), self.logtext()[-3000:])
        return p

    def start(self):
        self.postfix("start")
        deadline = time.monotonic() + 20
        while True:
            try:
                import socket
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return
            except OSError:
                assert time.monotonic() < deadline, self.logtext()
                time.sleep(0.1)

    def stop(self):
        subprocess.run(["postfix", "-c", self.etc, "stop"],
                       capture_output=True, timeout=60)
        # the master may take a moment to let go of the port
        deadline = time.monotonic() + 20
        while os.path.exists(os.path.join(self.dir, "spool", "pid",
                                          "master.pid")):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)

    def logtext(self):
        try:
            return open(self.log, errors="replace").read()
        except OSError:
            return "(no postfix log)"

    def maildir(self, user, n, seconds=30):
        """The first n messages in user's Maildir (bytes), oldest first."""
        deadline = time.monotonic() + seconds
        while True:
            files = sorted(glob.glob(os.path.join(self.mail, user, "new",
                                                  "*")), key=os.path.getmtime)
            if len(files) >= n:
                return [open(p, "rb").read() for p in files[:n]]
            assert time.monotonic() < deadline, "%s has %d of %d: %s" % (
                user, len(files), n, self.logtext()[-3000:])
            time.sleep(0.2)

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def as_delivered(sent):
    """What a message submitted with CRLF looks like in a Maildir."""
    return sent.replace(b"\r\n", b"\n")


def tail_after(stored, sent):
    """The stored message from the first octet of what was sent on, which
    must be all of what was sent: the headers before it are the MTAs'."""
    first = sent.split(b"\n", 1)[0]
    i = stored.find(first)
    assert i > 0, "the message's first line is not in: %r" % stored[:2000]
    return stored[:i], stored[i:]


def awkward_message(tag):
    """Octets that test transparency and framing on every hop."""
    body = ("line one\r\n"
            ".a line that starts with a dot\r\n"
            "..two dots\r\n"
            ".\tdot and tab\r\n"
            "trailing spaces   \r\n"
            "\r\n"
            "8bit: caf\u00e9 \u2014 \u00fcber\r\n"
            + "x" * 990 + "\r\n"
            "last line\r\n")
    return message(tag, body, headers=[
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit"])


@timeout(120)
def t_postfix_delivers_byte_exact_on_both_ports():
    pf = Postfix()
    try:
        with Smsubmit(conf={"relay to": "127.0.0.1 port %d" % pf.port}) as d:
            sent = {}
            for kind in ("tls", "starttls"):
                tag = unique("postfix-" + kind)
                msg = awkward_message(tag)
                d.submit(msg, kind=kind)
                sent[tag] = msg
            got = pf.maildir("bob", 2)
            for tag, msg in sent.items():
                stored = [m for m in got if tag.encode() in m]
                assert len(stored) == 1, (tag, got)
                head, rest = tail_after(stored[0], as_delivered(msg))
                assert rest == as_delivered(msg), \
                    "bytes changed on the way:\n%r\n%r" % (
                        rest, as_delivered(msg))
                # Postfix's own lines, then smsubmit's Received
                assert head.startswith(b"Return-Path: <alice@example.org>\n"),\
                    head
                assert b"\nDelivered-To: bob@example.org\n" in head, head
                assert b"by mta.test (Postfix)" in head, head
                assert b"by mx.test" in head, head
    finally:
        pf.close()


@timeout(120)
def t_postfix_refused_recipient_comes_back_as_dsn():
    pf = Postfix()
    try:
        with Smsubmit(conf={"relay to": "127.0.0.1 port %d" % pf.port}) as d:
            tag = unique("postfix-dsn")
            d.submit(message(tag), rcpts=("bob@example.org",
                                          "carol@example.org"))
            got = pf.maildir("bob", 1)
            assert tag.encode() in got[0], got
            dsn = pf.maildir("alice", 1)[0]
            assert b"carol@example.org" in dsn, dsn
            assert b"multipart/report" in dsn and \
                b"report-type=delivery-status" in dsn, dsn
            assert b"Status: 5.1.1" in dsn, dsn
            assert b"Action: failed" in dsn, dsn
            # bob was delivered, so he is not in the report
            assert b"Final-Recipient: rfc822; carol@example.org" in dsn, dsn
            assert b"Final-Recipient: rfc822; bob" not in dsn, dsn
    finally:
        pf.close()


@timeout(150)
def t_postfix_down_then_up_gets_the_message():
    pf = Postfix()
    try:
        with Smsubmit(conf={"relay to": "127.0.0.1 port %d" % pf.port}) as d:
            pf.stop()
            tag = unique("postfix-down")
            qid = d.submit(message(tag))
            # it waits in smsubmit's queue, retried
            d.wait_log(r"%s.*(deferred|retry|refused|connect)" % qid,
                       timeout=20)
            assert any(qid in f for f in d.queue_files()), d.queue_files()
            pf.start()
            got = pf.maildir("bob", 1, seconds=60)
            assert tag.encode() in got[0], got
            deadline = time.monotonic() + 20
            while any(qid in f for f in d.queue_files()):
                assert time.monotonic() < deadline, d.queue_files()
                time.sleep(0.2)
    finally:
        pf.close()


# --- OpenSMTPD ---

OPENSMTPD_ROOT = os.path.join(tempfile.gettempdir(), "smsubmit-opensmtpd")


def opensmtpd_binary():
    """Debian's opensmtpd conflicts with postfix: unpack the package
    (apt-get download + dpkg -x) and run that binary."""
    need_root()
    smtpd = os.path.join(OPENSMTPD_ROOT, "usr", "sbin", "smtpd")
    if os.access(smtpd, os.X_OK):
        return smtpd
    tmp = tempfile.mkdtemp()
    try:
        p = subprocess.run(["apt-get", "download", "opensmtpd"], cwd=tmp,
                           capture_output=True, timeout=120)
        debs = glob.glob(os.path.join(tmp, "opensmtpd_*.deb"))
        if p.returncode != 0 or not debs:
            raise Skip("cannot download opensmtpd: %s" %
                       p.stderr.decode(errors="replace").strip())
        run(["dpkg", "-x", debs[0], OPENSMTPD_ROOT])
    finally:
        shutil.rmtree(tmp)
    return smtpd


class OpenSMTPD:
    """OpenSMTPD on 127.0.0.1:port relaying everything to host:relay."""

    def __init__(self, relay_port):
        smtpd = opensmtpd_binary()
        for u in ("opensmtpd", "opensmtpq"):
            try:
                pwd.getpwnam(u)
            except KeyError:
                run(["useradd", "-r", "-M", "-d", "/var/lib/opensmtpd/empty",
                     "-s", "/usr/sbin/nologin", u])
        os.makedirs("/var/lib/opensmtpd/empty", 0o755, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="smsubmit-opensmtpd-")
        self.port = free_port()
        conf = os.path.join(self.dir, "smtpd.conf")
        # the README's configuration, with the test's ports
        with open(conf, "w") as f:
            f.write('listen on 127.0.0.1 port %d\n'
                    'action "outbound" relay host smtp://127.0.0.1:%d\n'
                    'match from local for any action "outbound"\n' %
                    (self.port, relay_port))
        os.chmod(conf, 0o600)
        self.logf = open(os.path.join(self.dir, "smtpd.log"), "wb")
        self.proc = subprocess.Popen([smtpd, "-d", "-f", conf],
                                     stdout=self.logf, stderr=self.logf,
                                     stdin=subprocess.DEVNULL)
        import socket
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                break
            except OSError:
                assert self.proc.poll() is None and \
                    time.monotonic() < deadline, self.logtext()
                time.sleep(0.1)

    def logtext(self):
        return open(os.path.join(self.dir, "smtpd.log"),
                    errors="replace").read()

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.logf.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@timeout(180)
def t_opensmtpd_relays_byte_exact():
    d = Smsubmit(start=False)
    os_ = None
    try:
        os_ = OpenSMTPD(d.relay_port)
        d.add_conf("relay to 127.0.0.1 port %d" % os_.port)
        d.start()
        tag = unique("opensmtpd")
        msg = awkward_message(tag)
        d.submit(msg)
        m = d.wait_message(tag, timeout=60)
        head, rest = tail_after(m.eml, msg)
        assert rest == msg, "bytes changed:\n%r\n%r" % (rest, msg)
        assert b"by mx.test" in head, head
        assert m.mail_from == "alice@example.org", m.meta
        assert m.rcpt_to == ["bob@example.org"], m.meta
    finally:
        d.stop()
        if os_ is not None:
            os_.close()
