"""A backlog of deferred messages does not slow new mail (smtpd/scheduler.c):
REGRESS_BACKLOG (100,000 by default) generated envelopes, each deferred an
hour, are in the queue when the daemon starts; a new message is then
relayed at once, and none of the backlog is.  The new message's delay is
printed, not asserted."""

import os
import re
import tempfile
import time

from harness import Smsubmit, message, timeout, unique

BACKLOG = int(os.environ.get("REGRESS_BACKLOG", "100000"))
LINKS = 50000       # names per message file: ext4 allows 65,000


def envelope(qid, now):
    return ("version 2\nid %s\ncreated %d\nfrom backlog@example.org\n"
            "user alice\nhelo client.test\nclient 192.0.2.9\nflags 0\n"
            "attempts 1\nnext %d\nerror 451%%204.3.0%%20try%%20later\n"
            "rcpt pending bob@example.org\n" % (qid, now - 60, now + 3600))


def generate(d, n):
    """n deferred messages in queue/, owned by the queue's user.  Their
    files are hard links to a few (the queue only reads them), so that
    the generation costs one new file per message, not two."""
    uid, gid = d.queue_owner()
    qdir = os.path.join(d.queue, "queue")
    now = int(time.time())
    text = message("a backlog message")
    first = None
    for i in range(n):
        qid = "%016x" % (0xbac0000000000000 + i)
        msg = os.path.join(qdir, qid + ".msg")
        if i % LINKS == 0:
            with open(msg, "wb") as f:
                f.write(text)
            os.chown(msg, uid, gid)
            os.chmod(msg, 0o600)
            first = msg
        else:
            os.link(first, msg)
        fd = os.open(os.path.join(qdir, qid + ".env"),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, envelope(qid, now).encode())
        os.fchown(fd, uid, gid)
        os.close(fd)


@timeout(600)
def t_queue_backlog_of_deferred_does_not_delay_new_mail():
    # ext4 here allocates inodes in /tmp ten times slower than elsewhere
    # (smtpd/spare.c): the backlog is made under /var/tmp where it can be
    saved = tempfile.tempdir
    tempfile.tempdir = "/var/tmp" if os.path.isdir("/var/tmp") else None
    try:
        d = Smsubmit(start=False, conf={"queue retry": "1h to 2h",
                                        "queue lifetime": "5d"})
    finally:
        tempfile.tempdir = saved
    with d:
        d.make_queue()
        t0 = time.monotonic()
        generate(d, BACKLOG)
        made = time.monotonic() - t0
        d.upstream.start()
        t0 = time.monotonic()
        d.start_daemon(timeout=300)
        d.wait_log(r"%d messages recovered" % BACKLOG, 300)
        loaded = time.monotonic() - t0
        tag = unique("afterbacklog")
        t0 = time.monotonic()
        qid = d.submit(message(tag))
        d.wait_message(tag, timeout=60)
        delay = time.monotonic() - t0
        print("# backlog of %d deferred: made in %.1fs, loaded in %.1fs; "
              "a new message relayed %.3fs after its DATA" % (
                  BACKLOG, made, loaded, delay))
        msgs = d.messages()
        assert len(msgs) == 1 and tag.encode() in msgs[0].eml, \
            "relayed: %d messages" % len(msgs)
        assert not re.search(r"message bac0[0-9a-f]{12}: relay",
                             d.log()), "a deferred message was tried"
        assert qid not in [m for m in os.listdir(os.path.join(
            d.queue, "queue"))], "the new message is still queued"
