"""Queue and relay guarantees (SPEC section 6): at least once, across
relay outages, 4xx, restarts and kill -9; 5xx bounces to the sender.
Each test runs its own daemon, retrying after 1s at first (`queue retry`,
smsubmit.conf(5); the default starts at 1m), and waits up to 60s."""

import os
import re
import subprocess
import time

from harness import Skip, Smsubmit, expect, message, need_root, \
    strip_received, stuff, timeout, unique, wait_for

TIMEOUT = 120
WAIT = 60


def daemon(start=True, **conf):
    return Smsubmit(conf=dict({"queue retry": "1s to 4s"}, **conf),
                    start=start)


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


def drained(d, tag, timeout=WAIT):
    """Wait until no queue file holds tag: from then on no copy of it
    can be sent."""
    wait_for(lambda: not queued_copies(d, tag), timeout,
             lambda: "still queued: %s" % queued_copies(d, tag))


def once(d, tag):
    """Delivered, and exactly once: no duplicate comes later (the queue
    no longer has it)."""
    m = d.wait_message(tag, WAIT)
    drained(d, tag)
    n = len(d.find_messages(tag))
    assert n == 1, "%d copies of %s delivered" % (n, tag)
    return m


def t_relay_retry_upstream_down():
    with daemon() as d:
        d.upstream.stop()
        tag = unique("down")
        msg = message(tag)
        qid = d.submit(msg)
        # an attempt failed: the message waits in the queue
        d.wait_log(r"message %s: 1 recipients deferred .*retry in" % qid, 10)
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
        drained(d, tag)
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
        # every process of the daemon is gone: nothing can deliver now
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
        # committed before the 250
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
        # the refused bounce is dropped: once the queue is empty nothing
        # more can be sent
        d.wait_log(r"message [0-9a-f]{16}: no bounce for a null sender", 10)
        wait_for(lambda: not d.queue_files("queue"), WAIT,
                 lambda: "still queued: %s" % d.queue_files("queue"))
        assert d.messages() == [], "delivered: %r" % d.messages()
        assert len(null_sender_mails(d)) == 1, d.upstream.commands
        rcpts = [c for c in d.upstream.commands
                 if re.match(r"(?i)RCPT TO:", c)]
        assert all("gone@example.org" in r or "nobody@example.org" in r
                   for r in rcpts), rcpts
        assert not queued_copies(d, tag), "still queued"


def leftovers(d):
    """Regular files under the queue other than committed ones (queue/)
    and the control socket."""
    return [f for f in d.queue_files() if os.path.isfile(f) and
            not f.startswith(os.path.join(d.queue, "queue") + "/")]


def disk_full(d):
    """A message too big for the space left: 452 4.3.1, nothing left
    behind; the next message, which fits, is taken and relayed."""
    c = d.session()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")
    expect(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5")
    expect(c.cmd("DATA"), 354)
    big = message(unique("full"), ("y" * 70 + "\r\n") * 8000)
    c.send(stuff(big))
    expect(c.reply(timeout=20), 452, "4.3.1", "disk full")
    wait_for(lambda: leftovers(d) == [], 10,
             lambda: "left behind: %s" % leftovers(d))
    assert leftovers(d) == [], "left behind: %s" % leftovers(d)
    assert not d.queue_files("queue"), d.queue_files("queue")
    tag = unique("fits")
    qid = c.send_message("alice@example.org", ["bob@example.org"],
                         message(tag))
    d.wait_message(qid)
    c.quit()


SHIM = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "shim", "enospc.so")


def t_queue_disk_full_preloaded():
    """The same where mount(8) is not allowed: regress/shim/enospc.so
    fails writes past 256K of a queue file with ENOSPC."""
    if not os.path.exists(SHIM):
        raise Skip("%s not built (make regress/shim/enospc.so)" % SHIM)
    with Smsubmit(conf={"queue retry": "1s to 4s"},
                  env={"LD_PRELOAD": SHIM,
                       "SMSUBMIT_ENOSPC_AT": str(256 * 1024)}) as d:
        disk_full(d)
        assert re.search(r"No space left on device|ENOSPC|4\.3\.1",
                         d.log()), "the log does not say why"


def t_queue_disk_full():
    """452 4.3.1 when the queue's file system is full, nothing left
    behind, and the next message that fits is taken."""
    need_root()
    d = daemon(start=False)
    os.makedirs(d.queue)
    try:
        uid, gid = d.queue_owner()
        subprocess.run(["mount", "-t", "tmpfs", "-o",
                        "size=256k,mode=0700,uid=%d,gid=%d" % (uid, gid),
                        "tmpfs", d.queue], check=True, capture_output=True)
    except subprocess.CalledProcessError as e:
        d.stop()
        raise Skip("cannot mount a tmpfs: %s" % e.stderr.decode().strip())
    try:
        d.start()
        disk_full(d)
    finally:
        d.stop_daemon()
        subprocess.run(["umount", d.queue], capture_output=True)
        d.stop()


def t_queue_commit_failure():
    """451 4.3.0 when the message cannot be committed, nothing left
    behind; once the queue is writable again, mail flows."""
    with daemon() as d:
        committed = os.path.join(d.queue, "queue")
        assert os.path.isdir(committed), os.listdir(d.queue)
        os.chmod(committed, 0o500)
        try:
            if os.geteuid() == 0 and os.stat(committed).st_uid == 0:
                raise AssertionError("queue/ is root's: cannot make it "
                                     "unwritable for the queue user")
            c = d.session()
            expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")
            expect(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5")
            expect(c.cmd("DATA"), 354)
            tag = unique("nocommit")
            c.send(stuff(message(tag)))
            expect(c.reply(), 451, "4.3.0", "commit failure")
            wait_for(lambda: leftovers(d) == [], 10,
                     lambda: "left behind: %s" % leftovers(d))
            assert leftovers(d) == [], "left behind: %s" % leftovers(d)
            assert not queued_copies(d, tag)
        finally:
            os.chmod(committed, 0o700)
        qid = c.send_message("alice@example.org", ["bob@example.org"],
                             message(unique("after")))
        d.wait_message(qid)
        assert not d.find_messages(tag), "the refused message was relayed"


@timeout(90)
def t_relay_backoff_grows():
    """SPEC 6, exponential backoff: with `queue retry 1s to 4s` the
    delays announced after each failed attempt are 1s, 2s, then 4s (plus
    up to a quarter of jitter) and no more; and the relay host sees the
    attempts that far apart."""
    with daemon() as d:
        d.upstream.fail_mail(4, per="command")
        tag = unique("backoff")
        qid = d.submit(message(tag))
        once(d, tag)
        delays = [int(x) for x in re.findall(
            r"message %s: 1 recipients deferred \(.*\), retry in (\d+)s"
            % qid, d.log())]
        assert len(delays) == 4, "deferrals: %s" % delays
        assert delays[0] == 1 and delays[1] == 2, delays
        assert all(4 <= x <= 5 for x in delays[2:]), delays
        times = [t for c, t in zip(d.upstream.commands,
                                   d.upstream.command_times)
                 if c.upper().startswith("MAIL FROM:")]
        assert len(times) == 5, "%d attempts" % len(times)
        gaps = [b - a for a, b in zip(times, times[1:])]
        # the schedule is in whole seconds: a retry may come up to 1s
        # before the announced delay is over, never sooner
        for want, got in zip(delays, gaps):
            assert got >= want - 1, "retried %.2fs after a failure that " \
                "announced %ds: %s" % (got, want, gaps)
        assert gaps[2] > gaps[0], "no growth: %s" % gaps


@timeout(120)
def t_deferred_bounce_expires():
    """A bounce its recipient (the sender) defers is retried until `queue
    lifetime`, then dropped: not bounced, not sent anywhere else, the
    queue left empty."""
    with daemon(**{"queue lifetime": "3s"}) as d:
        d.upstream.reject_rcpt("nobody@example.org")
        d.upstream.defer_rcpt("alice@example.org")
        tag = unique("bounceexp")
        qid = d.submit(message(tag), sender="alice@example.org",
                       rcpts=["nobody@example.org"])
        m = d.wait_log(r"message %s: bounce ([0-9a-f]{16}) sent to "
                       r"<alice@example\.org>" % qid, WAIT)
        bid = m.group(1)
        d.wait_log(r"message %s: 1 recipients deferred" % bid, WAIT)
        d.wait_log(r"message %s: expired after \d+s" % bid, 60)
        d.wait_log(r"message %s: no bounce for a null sender" % bid, 10)
        d.wait_log(r"message %s: delivered to 0 of 1 recipients, removed"
                   % bid, 10)
        wait_for(lambda: not d.queue_files("queue"), 10,
                 lambda: "still queued: %s" % d.queue_files("queue"))
        assert d.messages() == [], "delivered: %r" % d.messages()
        nulls = null_sender_mails(d)
        assert len(nulls) >= 2, "the bounce was not retried: %s" % \
            d.upstream.commands
        rcpts = [c for c in d.upstream.commands
                 if re.match(r"(?i)RCPT TO:", c)]
        assert all("alice@example.org" in r or "nobody@example.org" in r
                   for r in rcpts), rcpts
