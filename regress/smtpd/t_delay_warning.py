"""`queue delay-warning D` (smsubmit.conf.5): a message whose recipients
are still deferred D after it came makes one RFC 3464 report with
`Action: delayed` to its sender, once, restarts included; the message
stays queued and is delivered when the relay takes it.  Never for a null
sender or a bounce; never when the statement is absent."""

import email
import email.utils
import os
import re
import subprocess
import time

from harness import HOSTNAME, SMSUBMIT, Smsubmit, expect, message, stuff, \
    timeout, unique, queue_id

WAIT = 30
SLOW = "slow@example.org"
DEFER = "451 4.2.0 mailbox busy"
CONF = {"queue delay-warning": "2s", "queue retry": "1s to 2s"}


def is_dsn(m):
    return m.mail_from == "" and b"multipart/report" in m.eml[:4096]


def dsns(d):
    return [m for m in d.upstream.messages() if is_dsn(m)]


def report(m):
    """(whole message, text part, [status blocks]) after checking the
    multipart/report structure."""
    msg = email.message_from_bytes(m.eml)
    assert msg.get_content_type() == "multipart/report", \
        msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status", \
        msg.get("Content-Type")
    parts = msg.get_payload()
    types = [p.get_content_type() for p in parts]
    assert types == ["text/plain", "message/delivery-status",
                     "text/rfc822-headers"], types
    assert not msg.defects and not any(p.defects for p in parts), \
        (msg.defects, [p.defects for p in parts])
    blocks = parts[1].get_payload()
    assert isinstance(blocks, list) and len(blocks) == 2, blocks
    return msg, parts[0], blocks


def deferrals(d, qid, since=0):
    """How many times the log says the message was deferred."""
    return d.log()[since:].count("message %s: 1 recipients deferred" % qid)


def wait_deferrals(d, qid, n, since=0, limit=WAIT):
    deadline = time.monotonic() + limit
    while deferrals(d, qid, since) < n:
        assert time.monotonic() < deadline, \
            "%d deferrals of %s, %d expected" % (
                deferrals(d, qid, since), qid, n)
        time.sleep(0.1)


@timeout(90)
def t_delay_warning_once_then_delivered():
    """The relay answers 451 to the recipient: after 2s the sender gets
    one report, with MAIL FROM:<>, Action: delayed, the relay's Status
    4.2.0 and reply, and Will-Retry-Until at the end of the queue
    lifetime; further retries and a restart send no second one; once the
    relay takes the recipient the message is delivered."""
    with Smsubmit(conf=CONF) as d:
        d.upstream.defer_rcpt(SLOW, DEFER)
        tag = unique("delayed")
        t0 = time.time()
        qid = d.submit(message(tag), rcpts=[SLOW])
        dsn = d.upstream.wait(1, is_dsn, WAIT)[0]
        age = time.time() - t0
        # the queue counts whole seconds from the second the message
        # came in: "2s" is reached between 1 and 2 real seconds after
        assert age >= 1, "warned after %.1fs, before the 2s" % age
        assert re.search(r"message %s: delayed for [2-9]s, warning" % qid,
                         d.log()), d.log_tail()
        assert dsn.rcpt_to == ["alice@example.org"], dsn.rcpt_to

        msg, text, blocks = report(dsn)
        assert "delayed" in msg["Subject"].lower(), msg["Subject"]
        assert msg["Auto-Submitted"] == "auto-replied"
        assert blocks[0]["Reporting-MTA"].replace(" ", "") == \
            "dns;" + HOSTNAME, blocks[0]["Reporting-MTA"]
        assert blocks[0]["X-Smsubmit-Queue-ID"] == qid
        b = blocks[1]
        assert b["Final-Recipient"] == "rfc822; " + SLOW, \
            b["Final-Recipient"]
        assert b["Action"] == "delayed", b["Action"]
        assert b["Status"] == "4.2.0", b["Status"]
        assert b["Diagnostic-Code"] == "smtp; " + DEFER, \
            b["Diagnostic-Code"]
        assert b["Remote-MTA"] == "dns; 127.0.0.1", b["Remote-MTA"]
        until = email.utils.parsedate_to_datetime(b["Will-Retry-Until"])
        # the harness's "queue lifetime 1d"
        assert abs(until.timestamp() - (t0 + 86400)) < 60, \
            b["Will-Retry-Until"]
        assert email.utils.parsedate_to_datetime(b["Last-Attempt-Date"])
        body = text.get_payload()
        assert SLOW in body and qid in body, body
        d.wait_log(r"message %s: delayed for \d+s, warning [0-9a-f]{16} "
                   r"sent to <alice@example.org>" % qid)

        # more deferrals, then a restart (the queue retries at once):
        # the envelope remembers the warning
        mark = d.log_mark()
        wait_deferrals(d, qid, 2, mark)
        d.restart()
        mark = d.log_mark()
        wait_deferrals(d, qid, 2, mark)
        assert len(dsns(d)) == 1, "%d delay warnings" % len(dsns(d))
        assert d.log().count("message %s: delayed for" % qid) == 1

        d.upstream.clear_faults()
        got = d.upstream.wait(1, lambda m: m.rcpt_to == [SLOW], WAIT)
        assert tag.encode() in got[0].eml
        d.wait_log(r"message %s: delivered to 1 of 1 recipients" % qid,
                   WAIT)
        assert len(dsns(d)) == 1, "%d reports" % len(dsns(d))


@timeout(60)
def t_delay_warning_never_for_null_sender_or_bounce():
    """A message with MAIL FROM:<> deferred past the delay, and a bounce
    whose own delivery is deferred past it: no report for either."""
    with Smsubmit(conf=CONF) as d:
        d.upstream.defer_rcpt(SLOW, DEFER)
        # the bounce of alice's message to nobody goes to alice: defer it
        d.upstream.reject_rcpt("nobody@example.org")
        d.upstream.defer_rcpt("alice@example.org", DEFER)
        c = d.session()
        expect(c.cmd("MAIL FROM:<>"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<%s>" % SLOW), 250, "2.1.5")
        expect(c.cmd("DATA"), 354)
        c.send(stuff(message(unique("nullsender"))))
        null = queue_id(expect(c.reply(), 250, "2.0.0"))
        c.quit()
        d.submit(message(unique("bounced")), rcpts=["nobody@example.org"])
        m = d.wait_log(r"bounce ([0-9a-f]{16}) sent to <alice@example.org>",
                       WAIT)
        bounce = m.group(1)
        t0 = time.monotonic()
        # deferred after the 2s, more than once
        while time.monotonic() - t0 < 4 or deferrals(d, null) < 3 or \
                deferrals(d, bounce) < 3:
            assert time.monotonic() - t0 < WAIT, d.log_tail()
            time.sleep(0.2)
        assert "delayed for" not in d.log(), d.log_tail()
        assert dsns(d) == [], dsns(d)


@timeout(60)
def t_delay_warning_off_by_default():
    """Without the statement, a message deferred for longer than any
    warning would wait makes no report."""
    with Smsubmit(conf={"queue retry": "1s to 2s"}) as d:
        d.upstream.defer_rcpt(SLOW, DEFER)
        qid = d.submit(message(unique("nowarning")), rcpts=[SLOW])
        t0 = time.monotonic()
        while time.monotonic() - t0 < 4 or deferrals(d, qid) < 3:
            assert time.monotonic() - t0 < WAIT, d.log_tail()
            time.sleep(0.2)
        assert "delayed for" not in d.log(), d.log_tail()
        assert dsns(d) == [], dsns(d)


def t_delay_warning_must_be_less_than_lifetime():
    """`smsubmit -n` refuses a delay warning that could never come before
    the bounce, and takes one that can."""
    d = Smsubmit(start=False)
    try:
        for lines, want in ((["queue lifetime 1h",
                              "queue delay-warning 4h"], 1),
                            (["queue delay-warning 1h",
                              "queue lifetime 1h"], 1),
                            (["queue lifetime 1h",
                              "queue delay-warning 30m"], 0)):
            path = os.path.join(d.dir, "dw.conf")
            with open(path, "w") as f:
                f.write(d.conf_text + "\n".join(lines) + "\n")
            p = subprocess.run([SMSUBMIT, "-n", "-f", path],
                               capture_output=True, timeout=20)
            out = (p.stdout + p.stderr).decode(errors="replace")
            assert p.returncode == want, (lines, p.returncode, out)
            if want:
                assert "delay-warning" in out, out
    finally:
        d.stop()
