"""The relay host misbehaves (SPEC section 6): it hangs, drops the
connection at every step, answers garbage, or refuses some recipients.
Each message is retried and arrives, once (twice only when the relay
kept the message but its 250 was lost), byte for byte; refused
recipients get one DSN.  The relay is regress/lib/scripted.py."""

import re
import time

from harness import Smsubmit, message, strip_received, timeout, unique
from scripted import DROP, GARBAGE, HANG, STORE, substitute

TIMEOUT = 60
WAIT = 30


def committed(d):
    """Message files in queue/: messages not yet done with."""
    top = d.queue + "/queue/"
    return [f for f in d.queue_files() if f.startswith(top) and
            f.endswith(".msg")]


def drained(d, up, wait=WAIT):
    deadline = time.monotonic() + wait
    while committed(d):
        assert time.monotonic() < deadline, \
            "queue not empty after %ds: %s\nrelay saw:\n%s" % (
                wait, committed(d), up.transcript())
        time.sleep(0.1)


def delivered(d, up, tag, msg, copies=1):
    """Once the queue is empty (so nothing more can come), exactly
    `copies` copies of the message are at the relay, each byte for byte
    what was submitted."""
    try:
        d.wait_message(tag, WAIT)
    except AssertionError as e:
        raise AssertionError("%s\nrelay saw:\n%s" % (e, up.transcript()))
    drained(d, up)
    got = d.find_messages(tag)
    assert len(got) == copies, "%d copies delivered, want %d\n%s" % (
        len(got), copies, up.transcript())
    for m in got:
        _, rest = strip_received(m.eml)
        assert rest == msg, "copy %d differs from what was sent" % m.n
        assert m.mail_from == "alice@example.org" and \
            m.rcpt_to == ["bob@example.org"], m
    return got


def fault(script, log_pattern, copies=1, conf=None):
    """Submit one message with the relay following script; it must
    arrive anyway, after at least one more connection."""
    with Smsubmit(conf=conf or {}) as d:
        up = substitute(d, script)
        tag = unique("fault")
        msg = message(tag, "line one\r\n.leading dot\r\nlast\r\n")
        t0 = time.monotonic()
        d.submit(msg)
        delivered(d, up, tag, msg, copies)
        assert up.connections >= 2, "no retry:\n%s" % up.transcript()
        d.wait_log(log_pattern)
        return d, up, time.monotonic() - t0


@timeout(60)
def t_relay_hang_times_out():
    """`relay timeout 3s`: a relay that stops answering (after the
    greeting, to RCPT, after the final dot) is given up after 3s and
    the message retried."""
    for key in ("GREETING", "RCPT", "DOT"):
        _, up, took = fault([{key: HANG}], r"relay .*: timeout",
                            conf={"relay timeout": "3s"})
        assert took >= 2.5, "%s: delivered after %.1fs, before the " \
            "timeout" % (key, took)
        hung = [w for c, _, w in up.events if c == 0 and w == "closed"]
        assert hung, "%s: the daemon never closed the hung connection:\n" \
            "%s" % (key, up.transcript())


def t_relay_drop_at_greeting():
    fault([{"GREETING": DROP}], r"relay .*: (connection closed|garbage)")


def t_relay_drop_after_mail():
    fault([{"MAIL": DROP}], r"relay .*: connection closed by relay")


def t_relay_drop_after_354():
    fault([{"DATA": ("354 go ahead", DROP)}],
          r"relay .*: (connection closed by relay|Connection reset|"
          r"Broken pipe)")


def t_relay_drop_after_dot_not_kept():
    """The relay read the whole message and died before keeping it:
    the message comes again, and only that copy exists."""
    fault([{"DOT": DROP}], r"relay .*: connection closed by relay")


def t_relay_drop_after_dot_kept():
    """The relay kept the message but its 250 never came: the one case
    where SPEC allows a duplicate.  Both copies are whole."""
    _, up, _ = fault([{"DOT": (STORE, DROP)}],
                     r"relay .*: connection closed by relay", copies=2)
    print("# drop after the final dot, message kept: 2 copies, "
          "the allowed duplicate")


def t_relay_garbage():
    """A reply that is no SMTP reply, as greeting, to MAIL, to DATA and
    to the final dot: the connection is dropped, the message retried."""
    for key in ("GREETING", "MAIL", "DATA", "DOT"):
        fault([{key: GARBAGE}], r"relay .*: garbage reply")


def t_relay_4xx_then_hang_then_drop():
    """Several faults in a row, one per connection: still one copy."""
    fault([{"MAIL": ("421 4.3.2 going down", DROP)}, {"RCPT": HANG},
           {"DATA": ("354 go ahead", DROP)}, {"DOT": GARBAGE}],
          r"relay .*: timeout", conf={"relay timeout": "2s",
                                      "queue retry": "1s to 1s"})


def t_relay_some_recipients_refused():
    """The relay takes bob and dave, refuses carol and erin for good:
    one delivery to bob and dave, one DSN naming carol and erin, and
    nothing else, ever (the queue is empty)."""
    with Smsubmit() as d:
        up = substitute(d, always={
            "RCPT TO:<carol@example.org>": "550 5.1.1 no such user",
            "RCPT TO:<erin@example.org>": "553 5.7.1 relaying denied"})
        tag = unique("partial")
        msg = message(tag)
        rcpts = ["bob@example.org", "carol@example.org", "dave@example.org",
                 "erin@example.org"]
        qid = d.submit(msg, rcpts=rcpts)
        d.upstream.wait(2, timeout=WAIT)
        drained(d, up)
        msgs = d.messages()
        assert len(msgs) == 2, "%d messages at the relay: %r\n%s" % (
            len(msgs), msgs, up.transcript())
        real = [m for m in msgs if m.mail_from == "alice@example.org"]
        dsn = [m for m in msgs if m.mail_from == ""]
        assert len(real) == 1 and len(dsn) == 1, msgs
        assert real[0].rcpt_to == ["bob@example.org", "dave@example.org"], \
            real[0].rcpt_to
        assert strip_received(real[0].eml)[1] == msg, "message changed"
        assert dsn[0].rcpt_to == ["alice@example.org"], dsn[0].rcpt_to
        text = dsn[0].eml.decode(errors="replace")
        final = re.findall(r"(?im)^Final-Recipient:\s*rfc822;\s*(\S+)",
                           text)
        assert sorted(final) == ["carol@example.org", "erin@example.org"], \
            final
        assert qid in text, "the DSN does not name queue ID %s" % qid
        # the refused recipients were tried once: no retry of a 5xx
        tries = [c for c in up.commands if c.upper().startswith(
            "RCPT TO:<CAROL@")]
        assert len(tries) == 1, tries
