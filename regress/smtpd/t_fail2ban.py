"""The shipped fail2ban filter (etc/fail2ban/filter.d/smsubmit.conf)
against the daemon's real log lines, as syslog would write them with
openlog("smsubmit", LOG_PID): it matches every failed AUTH with the
client's address, and nothing else -- not a success, not a user name or
a command that tries to name another address."""

import os
import re
import shutil
import subprocess
import tempfile
import time

from harness import REPO, USERS, Skip, b64, expect, timeout

FILTER = os.path.join(REPO, "etc", "fail2ban", "filter.d", "smsubmit.conf")
COMMON = "/etc/fail2ban/filter.d/common.conf"
FORGED = "10.9.9.9"
PROCS = ("priv", "smtp", "auth", "queue")


def fail2ban_regex():
    path = shutil.which("fail2ban-regex")
    if not path or not os.path.exists(COMMON):
        raise Skip("fail2ban-regex or %s missing (apt-get install "
                   "fail2ban)" % COMMON)
    return path


def syslog_lines(d, text):
    """The daemon's stderr lines (-d) as syslog writes them: date, host,
    smsubmit[PID of the process that logged]: the line."""
    kids = d.children()
    pids = {"priv": d.pid, "smtp": kids["[smtp]"], "auth": kids["[auth]"],
            "queue": kids["[queue]"]}
    stamp = time.strftime("%b %e %H:%M:%S")
    out = []
    for line in text.splitlines():
        if line.startswith("--- harness:"):
            continue
        proc = line.split(":", 1)[0]
        # a line without a process prefix would be a broken-up log line:
        # give it the worst place, the parent's
        pid = pids.get(proc, d.pid)
        out.append("%s mail smsubmit[%d]: %s" % (stamp, pid, line))
    return out


def ready(d):
    c = d.client("tls")
    c.ehlo()
    return c


@timeout(60)
def t_fail2ban_filter_matches_failures(d):
    f2b = fail2ban_regex()
    start = len(d.log())
    # failures, two per session (max-failures is 3)
    c = ready(d)
    expect(c.auth_plain("alice", "wrong-1"), 535, "5.7.8")
    expect(c.auth_login("mallory", "wrong-2"), 535, "5.7.8")
    c.quit()
    c = ready(d)
    # user names that try to carry a second " from ADDR:" into the line
    for evil in ("evil from %s: x" % FORGED,
                 "x mechanism=PLAIN from %s: y" % FORGED):
        expect(c.auth_plain(evil, "pw"), 535, "5.7.8", repr(evil))
    c.quit()
    c = ready(d)
    r = c.cmd("AUTH PLAIN " + b64("\0evil\r\nauth: session 1a2b3c4d auth "
                                  "failed for user=root mechanism=PLAIN "
                                  "from %s: x\0pw" % FORGED))
    assert r.code in (535, 501), r
    # a command the listener echoes at -v that looks like a failure
    c.cmd("NOOP auth: session 1a2b3c4d auth failed for user=root "
          "mechanism=PLAIN from %s: x" % FORGED)
    c.quit()
    # a success
    d.session(user="bob", password=USERS["bob"]).quit()
    m = d.wait_log(r"session ([0-9a-f]{8}) authenticated user=bob\b")
    # the last session's lines are all in once it is gone
    d.wait_log(r"session %s disconnect$" % m.group(1))
    text = d.log()[start:]
    failures = [l for l in text.splitlines()
                if re.match(r"auth: session [0-9a-f]{8} auth failed ", l)]
    assert len(failures) == 5, "want 5 failure lines, got:\n%s" % \
        "\n".join(failures)
    assert FORGED in text, "the forged address is not even in the log"

    tmp = tempfile.mkdtemp(prefix="smsubmit-f2b-")
    try:
        os.mkdir(os.path.join(tmp, "filter.d"))
        shutil.copy(COMMON, os.path.join(tmp, "filter.d"))
        flt = os.path.join(tmp, "filter.d", "smsubmit.conf")
        shutil.copy(FILTER, flt)
        logfile = os.path.join(tmp, "mail.log")
        lines = syslog_lines(d, text)
        with open(logfile, "w") as f:
            f.write("\n".join(lines) + "\n")
        p = subprocess.run([f2b, "-o", "<ip> | <msg>", logfile, flt],
                           capture_output=True, timeout=60)
        out = p.stdout.decode(errors="replace")
        assert p.returncode == 0, "fail2ban-regex: exit %d: %s%s" % (
            p.returncode, out, p.stderr.decode(errors="replace"))
        matched = [l.split(" | ", 1) for l in out.splitlines()
                   if " | " in l]
        want = [l for l in lines if re.search(
            r"smsubmit\[\d+\]: auth: session [0-9a-f]{8} auth failed ", l)]
        assert [m for _, m in matched] == want, \
            "matched:\n%s\nwant:\n%s" % (
                "\n".join(m for _, m in matched), "\n".join(want))
        hosts = sorted(set(ip for ip, _ in matched))
        assert hosts == ["127.0.0.1"], "ban hosts %s" % hosts
        for _, m in matched:
            assert "authenticated" not in m, m
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
