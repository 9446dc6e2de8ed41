"""Per-user sending limits (`limit user messages N per D`, `limit user
recipients N per D`, smsubmit.conf.5): over the limit MAIL or RCPT gets
450 4.7.1 and a log line with the user and the client's address, which the
shipped fail2ban filter smsubmit-userlimit matches; the window slides, the
counts survive a restart (the queue keeps them in its directory), and
another user is not affected."""

import os
import re
import shutil
import subprocess
import tempfile
import time

import harness
from harness import REPO, USERS, Skip, Smsubmit, expect, message, unique

LIMIT_LINE = (r"smtp: session [0-9a-f]{8} user=%s from 127\.0\.0\.1 over "
              r"the sending limit: %d %s per %ds")
FILTER = os.path.join(REPO, "etc", "fail2ban", "filter.d",
                      "smsubmit-userlimit.conf")
COMMON = "/etc/fail2ban/filter.d/common.conf"


def send(d, user, rcpts=("bob@example.org",), tag=None):
    """One message as user; returns the queue ID."""
    c = d.session(user=user)
    try:
        return c.send_message("%s@example.org" % user, rcpts,
                              message(tag or unique("ul")))
    finally:
        c.quit()


def mail_refused(d, user):
    """MAIL as user gets 450 4.7.1; the session goes on."""
    c = d.session(user=user)
    try:
        expect(c.cmd("MAIL FROM:<%s@example.org>" % user), 450, "4.7.1",
               "MAIL over the limit")
        # refused, not in a transaction: RCPT needs a MAIL first
        expect(c.cmd("RCPT TO:<bob@example.org>"), 503, "5.5.1")
        expect(c.cmd("NOOP"), 250)
    finally:
        c.quit()


def mail_ok(d, user):
    c = d.session(user=user)
    try:
        expect(c.cmd("MAIL FROM:<%s@example.org>" % user), 250, "2.1.0",
               "MAIL under the limit")
    finally:
        c.quit()


def t_userlimit_messages_refused_at_mail():
    with Smsubmit(conf={"limit user messages": "2 per 1h"}) as d:
        tags = [unique("ulm") for _ in range(2)]
        for t in tags:
            send(d, "alice", tag=t)
        mail_refused(d, "alice")
        d.wait_log(LIMIT_LINE % ("alice", 2, "messages", 3600))
        for t in tags:
            d.wait_message(t)
        # another user has a count of its own
        tag = unique("ulbob")
        send(d, "bob", tag=tag)
        d.wait_message(tag)
        assert not re.search(LIMIT_LINE % ("bob", 2, "messages", 3600),
                             d.log()), "bob was counted with alice"


def t_userlimit_recipients_refused_at_rcpt():
    with Smsubmit(conf={"limit user recipients": "3 per 1h"}) as d:
        send(d, "alice", rcpts=("r1@example.org", "r2@example.org"))
        c = d.session(user="alice")
        try:
            expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")
            expect(c.cmd("RCPT TO:<r3@example.org>"), 250, "2.1.5",
                   "the third recipient")
            expect(c.cmd("RCPT TO:<r4@example.org>"), 450, "4.7.1",
                   "the fourth recipient")
            # what was accepted still goes
            tag = unique("ulr")
            expect(c.cmd("DATA"), 354)
            c.send(harness.stuff(message(tag)))
            expect(c.reply(), 250, "2.0.0")
        finally:
            c.quit()
        m = d.wait_message(tag)
        assert m.rcpt_to == ["r3@example.org"], m.rcpt_to
        d.wait_log(LIMIT_LINE % ("alice", 3, "recipients", 3600))
        # a new message of alice's is refused at its first RCPT
        c = d.session(user="alice")
        try:
            expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0",
                   "no messages limit is set")
            expect(c.cmd("RCPT TO:<r5@example.org>"), 450, "4.7.1")
        finally:
            c.quit()
        send(d, "bob", rcpts=("r1@example.org", "r2@example.org",
                              "r3@example.org"))


def t_userlimit_window_slides():
    with Smsubmit(conf={"limit user messages": "1 per 4s"}) as d:
        send(d, "alice")
        t0 = time.monotonic()
        mail_refused(d, "alice")
        # counted for at least the window: still refused near its end
        time.sleep(max(0, t0 + 3 - time.monotonic()))
        mail_refused(d, "alice")
        # and at most two one-second steps more
        time.sleep(max(0, t0 + 6.3 - time.monotonic()))
        mail_ok(d, "alice")


def t_userlimit_counts_survive_restart():
    with Smsubmit(conf={"limit user messages": "2 per 1h"}) as d:
        send(d, "alice")
        send(d, "alice")
        d.restart()
        mail_refused(d, "alice")
        assert os.path.exists(os.path.join(d.queue, "limits")), \
            "no counts file in the queue directory"
        # kill -9 a second after the last count: it was written by then
        send(d, "bob")
        send(d, "bob")
        time.sleep(1.5)
        d.kill9()
        d.start_daemon()
        mail_refused(d, "bob")
        mail_refused(d, "alice")
        assert re.search(r"queue: sending counts of 2 users read back",
                         d.log()), "no read-back line"
        left = [f for f in d.queue_files()
                if os.path.relpath(f, d.queue).startswith("tmp/")]
        assert not left, "temporary files left behind: %s" % left


def t_userlimit_config_checked():
    for bad in ("limit user messages 0 per 1h",
                "limit user recipients 10 per 0s",
                "limit user messages x per 1h",
                "limit user messages 10 1h"):
        with Smsubmit(start=False) as d:
            d.add_conf(bad)
            p = harness.run([harness.SMSUBMIT, "-n", "-f", d.conf_path],
                            check=False)
            err = p.stderr.decode(errors="replace")
            assert p.returncode == 1, "%r accepted: %s" % (bad, err)
            assert re.search(r"smsubmit\.conf:\d+: ", err), err


def t_userlimit_fail2ban_filter_matches_refusals():
    f2b = shutil.which("fail2ban-regex")
    if not f2b or not os.path.exists(COMMON):
        raise Skip("fail2ban-regex or %s missing (apt-get install "
                   "fail2ban)" % COMMON)
    with Smsubmit(conf={"limit user messages": "1 per 1h"}) as d:
        start = len(d.log())
        send(d, "alice")
        mail_refused(d, "alice")
        mail_refused(d, "alice")
        c = d.client("tls")
        c.ehlo()
        expect(c.auth_plain("alice", "wrong"), 535, "5.7.8")
        # a user name that tries to carry an address of its own
        expect(c.auth_plain("x from 10.9.9.9 over the sending limit: y",
                            "pw"), 535, "5.7.8")
        c.quit()
        d.wait_log(r"auth failed for user=x_from_10\.9\.9\.9")
        time.sleep(0.3)
        text = d.log()[start:]
        stamp = time.strftime("%b %e %H:%M:%S")
        lines = ["%s mail smsubmit[%d]: %s" % (stamp, d.pid, l)
                 for l in text.splitlines()
                 if not l.startswith("--- harness:")]
        want = [l for l in lines if re.search(
            LIMIT_LINE % ("alice", 1, "messages", 3600), l)]
        assert len(want) == 2, "want 2 refusal lines:\n%s" % text
        tmp = tempfile.mkdtemp(prefix="smsubmit-f2b-")
        try:
            os.mkdir(os.path.join(tmp, "filter.d"))
            shutil.copy(COMMON, os.path.join(tmp, "filter.d"))
            flt = os.path.join(tmp, "filter.d", "smsubmit-userlimit.conf")
            shutil.copy(FILTER, flt)
            logfile = os.path.join(tmp, "mail.log")
            with open(logfile, "w") as f:
                f.write("\n".join(lines) + "\n")
            p = subprocess.run([f2b, "-o", "<ip> | <msg>", logfile, flt],
                               capture_output=True, timeout=60)
            out = p.stdout.decode(errors="replace")
            assert p.returncode == 0, "fail2ban-regex: %s%s" % (
                out, p.stderr.decode(errors="replace"))
            matched = [l.split(" | ", 1) for l in out.splitlines()
                       if " | " in l]
            assert [m for _, m in matched] == want, \
                "matched:\n%s\nwant:\n%s" % (
                    "\n".join(m for _, m in matched), "\n".join(want))
            assert sorted(set(ip for ip, _ in matched)) == ["127.0.0.1"]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def t_userlimit_jail_shipped():
    with open(os.path.join(REPO, "etc", "fail2ban", "jail.d",
                           "smsubmit.local")) as f:
        jail = f.read()
    m = re.search(r"^\[smsubmit-userlimit\]\n(.*?)(?:\n\[|\Z)", jail,
                  re.M | re.S)
    assert m, "no [smsubmit-userlimit] jail"
    assert re.search(r"^filter\s*=\s*smsubmit-userlimit$", m.group(1),
                     re.M), m.group(1)
