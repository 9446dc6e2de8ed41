"""Known attacks on submission servers, as regressions: control
characters in the HELO name and the AUTH identities (log and header
injection), authorization identities naming another user, AUTH replayed
after a failure, and commands pipelined around AUTH.  What t_auth,
t_logs, t_delivery and t_starttls already cover is not repeated."""

import re
import time

from harness import USERS, b64, expect, message, queue_id, stuff, \
    strip_received, unique

FORGED = "10.9.9.9"
# a log line an attacker would like to see, for another address
FORGED_LINE = ("auth: session 1a2b3c4d auth failed for user=root "
               "mechanism=PLAIN from %s: x" % FORGED)
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class Since:
    """The daemon's log from now on."""

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
            assert time.monotonic() < deadline, \
                "no log line matching %r in:\n%s" % (pattern,
                                                      self.text()[-1500:])
            time.sleep(0.1)


def clean_log(text):
    """No control character in any line, no line forged."""
    bad = [l for l in text.split("\n") if CONTROL.search(l)]
    assert not bad, "control characters reached the log: %r" % bad[:3]
    forged = [l for l in text.split("\n")
              if l.startswith("auth: session 1a2b3c4d ")]
    assert not forged, "forged log line: %r" % forged


def ready(d, kind="tls"):
    c = d.client(kind)
    if kind == "starttls":
        c.ehlo()
        c.starttls()
    c.ehlo()
    return c


def flushed(d, log):
    """A session after the test's own, so its lines are all written."""
    d.session(user="bob").quit()
    log.wait(r"authenticated user=bob\b")


# --- control characters in HELO ---

HOSTILE_HELO = ["a\rb", "a\r" + FORGED_LINE, "a\x1b[2Jb", "a\x08\x08b",
                "a\x7fb", "a\x00b", "a\x0bb"]


def t_attack_helo_controls_not_in_received(d):
    """EHLO/HELO names with CR, ESC, BS, DEL, NUL, VT are refused (or
    cleaned): the Received header of the next message carries none of
    it and names the good EHLO that followed."""
    c = d.client("tls")
    for helo in HOSTILE_HELO:
        for verb in ("EHLO", "HELO"):
            r = c.cmd("%s %s" % (verb, helo))
            assert r.code in (250, 500, 501), "%s %r: %s" % (verb, helo, r)
            assert not CONTROL.search(r.text), "echoed: %r" % r.text
    c.ehlo("good.example")
    expect(c.auth_plain("alice", USERS["alice"]), 235, "2.7.0")
    qid = c.send_message("alice@example.org", ["bob@example.org"],
                         message(unique("helo")))
    received, _ = strip_received(d.wait_message(qid).eml)
    text = received.decode("latin-1")
    assert not CONTROL.search(text.replace("\r\n", "")), repr(text)
    assert "from good.example " in text, text
    assert FORGED not in text, text


def t_attack_helo_controls_not_in_log(d):
    """SPEC 5: a HELO string that goes into a log line is sanitised --
    every log line, the -v ones included (the harness runs -d -v)."""
    log = Since(d)
    c = d.client("starttls")
    for helo in HOSTILE_HELO:
        c.cmd("EHLO " + helo)
    c.ehlo()
    c.starttls()
    for helo in HOSTILE_HELO:
        c.cmd("HELO " + helo)
    c.quit()
    flushed(d, log)
    clean_log(log.text())
    # and they did reach the log, escaped as log_escape() does: octets
    # 0x21-0x7e but the backslash as they are, every other as \xHH (NUL
    # refuses the line)
    lines = log.text().split("\n")
    for verb in ("EHLO", "HELO"):
        for helo in HOSTILE_HELO:
            if "\0" in helo:
                continue
            escaped = "".join(chr(o) if 0x20 < o < 0x7f and o != 0x5c
                              else "\\x%02x" % o
                              for o in helo.encode("utf-8"))
            pat = re.compile(r"< %s %s$" % (verb, re.escape(escaped)))
            assert [l for l in lines if pat.search(l)], \
                "%s %r not in the log, escaped:\n%s" % (
                    verb, helo, "\n".join(l for l in lines if verb in l))


# --- control characters in the AUTH identities ---

def t_attack_auth_identity_controls_not_in_log(d):
    """CR, LF and ESC in the LOGIN user name, the PLAIN authorization
    identity and the PLAIN user name: refused, and the log gets neither
    the raw characters nor a forged line."""
    log = Since(d)
    c = ready(d)
    r = c.auth_login("mallory\r\n" + FORGED_LINE, "pw")
    assert r.code in (535, 501), r
    r = c.auth_plain("alice", USERS["alice"], authzid="alice\r\n" +
                     FORGED_LINE)
    assert r.code in (535, 501), r
    c.quit()
    c = ready(d, "starttls")
    r = c.auth_plain("eve\x1b]0;owned\x07\rx", "pw")
    assert r.code in (535, 501), r
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 530, "5.7.0")
    c.quit()
    flushed(d, log)
    text = log.text()
    clean_log(text)
    assert len(re.findall(r"(?m)^auth: session [0-9a-f]{8} auth failed for "
                          r"user=\S+ mechanism=\S+ from 127\.0\.0\.1: ",
                          text)) == 3, text[-2000:]


def t_attack_auth_authzid_variants_of_another_user(d):
    """alice's right password with bob named as authorization identity
    in other spellings (realm, case, space, CRLF): refused, and nobody is
    authenticated."""
    log = Since(d)
    for authzid in ("bob@mx.test", "BOB", " bob", "bob ", "bob\r\nbob",
                    "bob@example.org"):
        c = ready(d)
        expect(c.auth_plain("alice", USERS["alice"], authzid=authzid), 535,
               "5.7.8", repr(authzid))
        expect(c.cmd("MAIL FROM:<bob@example.org>"), 530, "5.7.0")
        c.quit()
    assert "authenticated user=" not in log.text(), log.text()[-1500:]


# --- AUTH after a failure, and replayed ---

def authenticated_as(log, user):
    m = log.wait(r"session ([0-9a-f]{8}) authenticated user=(\S+)")
    assert m.group(2) == user, "authenticated as %s, want %s" % (
        m.group(2), user)
    return m.group(1)


def t_attack_auth_after_failure_is_its_own(d):
    """A failed or cancelled exchange leaves nothing behind: the next
    AUTH in the session is judged alone and names its own user, which is
    the user the message is committed under."""
    cases = [
        # failed PLAIN as alice, then LOGIN as bob
        (lambda c: expect(c.auth_plain("alice", "wrong"), 535, "5.7.8"),
         lambda c: c.auth_login("bob", USERS["bob"])),
        # LOGIN as alice cancelled after the user name, then PLAIN as bob
        (lambda c: (expect(c.cmd("AUTH LOGIN"), 334),
                    expect(c.cmd(b64("alice")), 334),
                    expect(c.cmd("*"), 501, "5.0.0")),
         lambda c: c.auth_plain("bob", USERS["bob"])),
        # LOGIN as alice with a wrong password, then LOGIN as bob
        (lambda c: expect(c.auth_login("alice", "wrong"), 535, "5.7.8"),
         lambda c: c.auth_login("bob", USERS["bob"])),
    ]
    for first, then in cases:
        log = Since(d)
        c = ready(d)
        first(c)
        expect(c.cmd("MAIL FROM:<alice@example.org>"), 530, "5.7.0")
        expect(then(c), 235, "2.7.0")
        sid = authenticated_as(log, "bob")
        qid = c.send_message("bob@example.org", ["carol@example.org"],
                             message(unique("own")))
        c.quit()
        log.wait(r"session %s message %s committed: .*user=bob\b" % (
            sid, qid))


def t_attack_auth_replayed_failed_blob(d):
    """The same failing PLAIN response, sent again in the session and in
    a new one, fails every time."""
    blob = "AUTH PLAIN " + b64("\0alice\0not-the-password")
    log = Since(d)
    c = ready(d)
    for i in range(2):
        expect(c.cmd(blob), 535, "5.7.8", "replay %d" % i)
        expect(c.cmd("MAIL FROM:<alice@example.org>"), 530, "5.7.0")
    c.quit()
    c = ready(d, "starttls")
    expect(c.cmd(blob), 535, "5.7.8", "replay in a new session")
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 530, "5.7.0")
    c.quit()
    assert "authenticated user=" not in log.text()


# --- pipelining around AUTH ---

def replies(c, n):
    out = [c.reply() for _ in range(n)]
    extra = c.pending(0.3)
    assert extra == b"", "more replies than commands: %r" % extra
    return out


def t_attack_pipelined_auth_mail_rcpt(d):
    """AUTH PLAIN with its initial response, MAIL, RCPT, DATA in one
    write: every reply in order, MAIL taken only after a good AUTH, and
    never ahead of a slow (delayed) failure."""
    mail = "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\n"
    # good credentials: the transaction goes through
    c = ready(d)
    c.send("AUTH PLAIN %s\r\n%sDATA\r\n" % (
        b64("\0alice\0" + USERS["alice"]), mail))
    r = replies(c, 4)
    for got, (code, enh) in zip(r, [(235, "2.7.0"), (250, "2.1.0"),
                                    (250, "2.1.5"), (354, None)]):
        expect(got, code, enh, "pipelined after a good AUTH")
    tag = unique("pipeauth")
    c.send(stuff(message(tag)))
    d.wait_message(queue_id(expect(c.reply(), 250, "2.0.0")))
    c.quit()
    # bad credentials: nothing after it is taken, the failure is delayed
    c = ready(d)
    c.send("AUTH PLAIN %s\r\n%sDATA\r\nNOOP\r\n" % (
        b64("\0alice\0wrong"), mail))
    r = replies(c, 5)
    for got, (code, enh) in zip(r, [(535, "5.7.8"), (530, "5.7.0"),
                                    (530, "5.7.0"), (530, "5.7.0"),
                                    (250, "2.0.0")]):
        expect(got, code, enh, "pipelined after a failed AUTH")
    c.quit()
    # AUTH without initial response, its response, MAIL: in one write
    c = ready(d, "starttls")
    c.send("AUTH PLAIN\r\n%s\r\n%s" % (b64("\0bob\0" + USERS["bob"]), mail))
    r = replies(c, 4)
    for got, (code, enh) in zip(r, [(334, None), (235, "2.7.0"),
                                    (250, "2.1.0"), (250, "2.1.5")]):
        expect(got, code, enh, "pipelined AUTH PLAIN exchange")
    c.quit()
    # a failed AUTH, a good one and MAIL: the second is judged alone
    c = ready(d)
    c.send("AUTH PLAIN %s\r\nAUTH PLAIN %s\r\n%s" % (
        b64("\0alice\0wrong"), b64("\0alice\0" + USERS["alice"]), mail))
    r = replies(c, 4)
    for got, (code, enh) in zip(r, [(535, "5.7.8"), (235, "2.7.0"),
                                    (250, "2.1.0"), (250, "2.1.5")]):
        expect(got, code, enh, "failed, then good AUTH, pipelined")
    c.quit()
