"""Queue and relay guarantees (SPEC section 6): at least once, across
relay outages, 4xx, restarts and kill -9; 5xx bounces to the sender.
Each test runs its own daemon, retrying after 1s at first (`queue retry`,
smsubmit.conf(5); the default starts at 1m), and waits up to 60s."""

import re
import time

from harness import Smsubmit, message, strip_received, timeout, unique

TIMEOUT = 120
WAIT = 60


def daemon(**conf):
    return Smsubmit(conf=dict({"queue retry": "1s to 4s"}, **conf))


def queued_copies(d, tag):
    """Queue files holding the message's unique tag."""
    out = []
    for path in d.queue_files():
        try:
            with open(path, "rb") as f:
                if tag.encode() in f.read():
                    out.append(path)
        except OSError:
            pass
    return out


def once(d, tag):
    """Delivered, and exactly once: no duplicate comes later."""
    m = d.wait_message(tag, WAIT)
    time.sleep(1.5)
    n = len(d.find_messages(tag))
    assert n == 1, "%d copies of %s delivered" % (n, tag)
    return m


def t_relay_retry_upstream_down():
    with daemon() as d:
        d.upstream.stop()
        tag = unique("down")
        msg = message(tag)
        qid = d.submit(msg)
        time.sleep(2)
        assert queued_copies(d, tag), "not in the queue while relay is down"
        d.upstream.start()
        m = once(d, tag)
        _, rest = strip_received(m.eml)
        assert qid in m.eml.decode(errors="replace") and rest == msg


def t_relay_retry_after_4xx():
    with daemon() as d:
        d.upstream.fail_mail(2, per="command")
        tag = unique("4xx")
        d.submit(message(tag), rcpts=["bob@example.org", "carol@example.org"])
        m = once(d, tag)
        mails = [c for c in d.upstream.commands if c.startswith("MAIL")]
        assert len(mails) == 3, "MAIL commands: %s" % mails
        assert m.rcpt_to == ["bob@example.org", "carol@example.org"], m


def t_relay_retry_after_rcpt_4xx():
    """A deferred recipient is retried; the others are not sent twice."""
    with daemon() as d:
        d.upstream.defer_rcpt("carol@example.org")
        tag = unique("rcpt4xx")
        d.submit(message(tag), rcpts=["bob@example.org", "carol@example.org"])
        first = d.wait_message(tag, WAIT)
        assert first.rcpt_to == ["bob@example.org"], first.rcpt_to
        d.upstream.clear_faults()
        deadline = time.monotonic() + WAIT
        while True:
            got = d.find_messages(tag)
            if len(got) >= 2:
                break
            assert time.monotonic() < deadline, "carol's copy never came"
            time.sleep(0.2)
        time.sleep(1.5)
        rcpts = sorted(r for m in d.find_messages(tag) for r in m.rcpt_to)
        assert rcpts == ["bob@example.org", "carol@example.org"], rcpts


def t_relay_retry_after_4xx_on_new_connection():
    """The relay host greets with 421 on the next connections."""
    with daemon() as d:
        d.upstream.fail_connect(2)
        tag = unique("421")
        d.submit(message(tag))
        once(d, tag)
        assert d.upstream.connections >= 3, d.upstream.connections


def t_relay_recovery_after_restart():
    with daemon() as d:
        d.upstream.stop()
        tag = unique("restart")
        qid = d.submit(message(tag))
        status = d.stop_daemon()
        assert status == 0, "exit status %s on SIGTERM" % status
        d.upstream.start()
        time.sleep(1)
        assert not d.find_messages(tag), "delivered while stopped?"
        d.start_daemon()
        m = once(d, tag)
        assert qid in m.eml.decode(errors="replace"), "another queue ID"


def t_queue_survives_kill9():
    with daemon() as d:
        d.upstream.stop()
        tag = unique("kill9")
        d.submit(message(tag))
        d.kill9()
        d.upstream.start()
        d.start_daemon()
        once(d, tag)


def t_queue_file_removed_after_delivery():
    with daemon() as d:
        d.upstream.stop()
        tag = unique("rm")
        d.submit(message(tag))
        time.sleep(1)
        assert queued_copies(d, tag), "message not found in the queue"
        d.upstream.start()
        d.wait_message(tag, WAIT)
        deadline = time.monotonic() + 10
        while queued_copies(d, tag):
            assert time.monotonic() < deadline, \
                "still queued after delivery: %s" % queued_copies(d, tag)
            time.sleep(0.2)


def is_bounce(m, sender, rcpt):
    head = m.eml.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
    return m.mail_from == "" and m.rcpt_to == [sender] and \
        re.search(r"multipart/report;(.|\r\n\s)*report-type=\"?"
                  r"delivery-status", head, re.I) is not None and \
        rcpt.encode() in m.eml


def t_relay_5xx_bounces_to_sender():
    with daemon() as d:
        d.upstream.reject_rcpt("nobody@example.org")
        tag = unique("5xx")
        d.submit(message(tag), sender="alice@example.org",
                 rcpts=["bob@example.org", "nobody@example.org"])
        msgs = d.upstream.wait(1, lambda m: is_bounce(
            m, "alice@example.org", "nobody@example.org"), WAIT)
        ok = [m for m in d.find_messages(tag) if m.mail_from != ""]
        assert len(ok) == 1 and ok[0].rcpt_to == ["bob@example.org"], ok
        report = msgs[0].eml.decode(errors="replace")
        assert re.search(r"Final-Recipient:\s*rfc822;\s*nobody@example.org",
                         report, re.I), report[-800:]
        assert re.search(r"Action:\s*failed", report, re.I), report[-800:]
        assert re.search(r"Status:\s*5\.\d+\.\d+", report), report[-800:]


@timeout(150)
def t_queue_lifetime_expiry_bounces():
    with daemon(**{"queue lifetime": "3s"}) as d:
        d.upstream.defer_rcpt("slow@example.org")
        tag = unique("expire")
        d.submit(message(tag), sender="alice@example.org",
                 rcpts=["slow@example.org"])
        bounce = d.upstream.wait(1, lambda m: is_bounce(
            m, "alice@example.org", "slow@example.org"), 90)[0]
        assert re.search(r"Action:\s*failed", bounce.eml.decode(
            errors="replace"), re.I), bounce.eml[-500:]
        assert not [m for m in d.find_messages(tag) if m.mail_from != ""]


def null_sender_mails(d):
    return [c for c in d.upstream.commands
            if re.match(r"(?i)MAIL FROM:\s*<>", c)]


def t_bounce_is_never_bounced():
    """The bounce's own recipient (the sender) is refused too: the bounce
    is dropped, not retried, not bounced, not sent to a postmaster."""
    with daemon() as d:
        d.upstream.reject_rcpt("nobody@example.org")
        d.upstream.reject_rcpt("gone@example.org")
        tag = unique("nobounce")
        d.submit(message(tag), sender="gone@example.org",
                 rcpts=["nobody@example.org"])
        deadline = time.monotonic() + WAIT
        while not null_sender_mails(d):
            assert time.monotonic() < deadline, "no bounce was attempted"
            time.sleep(0.2)
        time.sleep(5)
        assert d.messages() == [], "delivered: %r" % d.messages()
        assert len(null_sender_mails(d)) == 1, d.upstream.commands
        rcpts = [c for c in d.upstream.commands
                 if re.match(r"(?i)RCPT TO:", c)]
        assert all("gone@example.org" in r or "nobody@example.org" in r
                   for r in rcpts), rcpts
        assert not queued_copies(d, tag), "still queued"
