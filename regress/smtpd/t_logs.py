"""Logs (SPEC section 7): one line per event with the session ID, auth
lines a fail2ban filter can match, nothing secret, nothing injected."""

import re
import time

from harness import USERS, Smsubmit, b64, expect, message, unique
from scripted import substitute


class Since:
    """The log written after a point in time."""

    def __init__(self, d):
        self.d = d
        self.start = len(d.log())

    def text(self):
        return self.d.log()[self.start:]

    def wait(self, pattern, timeout=5):
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.text(), re.M)
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError("no log line matching %r in:\n%s" % (
                    pattern, self.text()[-1500:]))
            time.sleep(0.1)


def session_lines(text, sid):
    return [l for l in text.splitlines() if re.search(r"\b%s\b" % sid, l)]


def t_log_session_events(d):
    log = Since(d)
    c = d.session("starttls")
    version, cipher = c.version(), c.cipher()
    tag = unique("logs")
    qid = c.send_message("alice@example.org", ["bob@example.org"],
                         message(tag))
    c.quit()
    d.wait_message(qid)
    # the session is the one whose accepted-message line has the queue ID
    sid = log.wait(r"session ([0-9a-f]{8})\b.*%s" % qid).group(1)
    log.wait(r"session %s\b.*connect(ion)? from 127\.0\.0\.1" % sid)
    log.wait(r"\b%s\b.*disconnect" % sid)
    lines = session_lines(log.text(), sid)
    want = [("TLS established", r"TLSv1\.[23].*%s|%s.*TLSv1\.[23]" % (
                 re.escape(cipher), re.escape(cipher))),
            ("auth success", r"authenticated user=alice\b"),
            ("message accepted", r"%s.*alice@example\.org.*bob@example\.org"
             % qid)]
    for what, pattern in want:
        assert any(re.search(pattern, l) for l in lines), \
            "no %s line for session %s:\n%s" % (what, sid, "\n".join(lines))
    assert version in "\n".join(lines), lines
    # the relay result names the queue ID and the relay's reply, escaped
    log.wait(r"%s.*250\\x202\.0\.0\\x20Ok:\\x20stored\\x20as" % qid)


def t_log_auth_failure_fail2ban(d):
    log = Since(d)
    c = d.client()
    c.ehlo()
    expect(c.auth_plain("alice", "wrong-pw"), 535, "5.7.8")
    expect(c.auth_login("mallory", "x"), 535, "5.7.8")
    log.wait(r"auth failed for user=alice\b.*\bfrom 127\.0\.0\.1\b")
    log.wait(r"auth failed for user=mallory\b.*\bfrom 127\.0\.0\.1\b")


def t_log_auth_success(d):
    log = Since(d)
    d.session(user="bob").quit()
    log.wait(r"authenticated user=bob\b")


def t_log_no_passwords(d):
    log = Since(d)
    c = d.client()
    c.ehlo()
    c.auth_plain("alice", "secret-wrong-1")
    c.auth_login("alice", "secret-wrong-2")
    c.quit()
    d.session(user="alice").quit()
    log.wait(r"authenticated user=alice")
    text = log.text()
    for s in ("secret-wrong-1", "secret-wrong-2", USERS["alice"],
              b64("\0alice\0" + USERS["alice"]), b64(USERS["alice"]),
              b64("secret-wrong-2")):
        assert s not in text, "%r is in the log" % s


def t_log_user_name_sanitised(d):
    """A user name with CR/LF cannot forge a log line a fail2ban filter
    would take for a failure from another address."""
    log = Since(d)
    c = d.client()
    c.ehlo()
    evil = "mallory\r\nauth failed for user=root from 10.6.6.6\x1b[2J"
    r = c.auth_plain(evil, "x")
    assert r.code in (535, 501), r
    c.quit()
    d.session().quit()  # something after it, so the log is flushed
    log.wait(r"authenticated user=alice")
    text = log.text()
    for line in text.splitlines():
        if "10.6.6.6" in line:
            assert "mallory" in line, "forged line: %r" % line
    assert "\x1b" not in text, "escape sequence in the log"


# a field as a parser that splits a line at white space would see it
FIELD = r"(?:^|\s)%s(?:\s|$)"


def forged(text, *fields):
    """The log lines where one of fields stands as a field of its own."""
    return [l for l in text.splitlines()
            if any(re.search(FIELD % re.escape(f), l) for f in fields)]


def t_log_quoted_local_part_cannot_forge_fields(d):
    """Issue 8.10: "a key=value"@x is a legal address (a quoted local
    part may hold spaces); in the log it stays one field: its space is
    escaped, in the accepted, committed and relay lines alike."""
    log = Since(d)
    sender = '"a key=value"@example.org'
    rcpt = '"b user=root size=1"@example.org'
    c = d.session()
    qid = c.send_message(sender, [rcpt], message(unique("quoted")))
    c.quit()
    d.wait_message(qid)
    log.wait(r"message %s: delivered to 1 of 1" % qid)
    text = log.text()
    bad = forged(text, "key=value\"@example.org>", "user=root", "size=1")
    assert not bad, "forged fields: %r" % bad
    for what in ("accepted", "committed"):
        line = [l for l in text.splitlines() if qid in l and what in l]
        assert line and r'from=<"a\x20key=value"@example.org>' in line[0], \
            "%s line: %r" % (what, line)
    assert r'<"b\x20user=root\x20size=1"@example.org>' in text, text[-2000:]


HOSTILE_REPLIES = {
    # to the final dot: taken, with fields and a terminal escape in it
    "DOT": "250 2.0.0 ok status=bounced\x1b[2J\tuser=root",
}


def t_log_relay_reply_escaped():
    """Issue 8.10: the relay's reply text is logged escaped: no control
    character, no field of its own, whether it takes the message or
    closes the connection with 421 (whose text was logged raw)."""
    with Smsubmit(conf={"queue retry": "1s to 1s"}) as d:
        substitute(d, [{"MAIL": "421 4.3.2 busy\tstatus=sent\x1b]0;x\x07"},
                       {"DOT": HOSTILE_REPLIES["DOT"]}])
        log = Since(d)
        tag = unique("reply")
        qid = d.submit(message(tag))
        d.wait_message(tag, timeout=20)
        log.wait(r"message %s: delivered to 1 of 1" % qid)
        text = log.text()
        control = [l for l in text.splitlines()
                   if re.search(r"[\x00-\x1f\x7f]", l)]
        assert not control, "control characters in the log: %r" % control
        bad = forged(text, "status=sent", "status=bounced", "user=root")
        assert not bad, "forged fields: %r" % bad
        assert re.search(r"closing the connection: 421\\x204\.3\.2"
                         r"\\x20busy\\x09status=sent\\x1b", text), \
            text[-2000:]
        assert re.search(r"%s: relay .* accepted 1 recipients: 250\\x20"
                         r"2\.0\.0\\x20ok\\x20status=bounced\\x1b" % qid,
                         text), text[-2000:]
