"""What the queue finds at start-up: leftovers of unfinished commits are
removed, committed messages are delivered, unreadable ones are set aside
in corrupt/ without stopping the rest."""

import os
import re

import harness

from harness import (Smsubmit, message, queued_parts, strip_received,
                     unique)
from scripted import substitute


def t_queue_sweeps_unfinished_files():
    with Smsubmit(start=False) as d:
        d.make_queue()
        half = os.path.join(d.queue, "tmp", "0123456789abcdef")
        orphan = os.path.join(d.queue, "queue", "fedcba9876543210.msg")
        for p in (half, half + ".env", orphan):
            with open(p, "w") as f:
                f.write("Subject: never committed\r\n\r\nx\r\n")
            os.chown(p, *d.queue_owner())
        d.start()
        d.wait_log("unfinished files removed")
        for p in (half, half + ".env", orphan):
            assert not os.path.exists(p), "%s survived start-up" % p
        qid = d.submit(message(unique("after-sweep")))
        d.wait_message(qid)
        assert not any("never committed" in m.eml.decode("latin-1")
                       for m in d.messages())


def t_queue_quarantines_corrupt_envelope():
    with Smsubmit() as d:
        d.upstream.stop()
        good, bad = unique("good"), unique("bad")
        gid = d.submit(message(good))
        bid = d.submit(message(bad))
        d.stop_daemon()
        env = os.path.join(d.queue, "queue", bid + ".env")
        with open(env, "w") as f:
            f.write("version 1\nid %s\nrcpt maybe <x>\n" % bid)
        d.upstream.start()
        d.start_daemon()
        relayed = d.wait_message(good, timeout=20)
        d.wait_log("moved to corrupt/")
        corrupt = os.path.join(d.queue, "corrupt")
        assert sorted(os.listdir(corrupt)) == [bid + ".env", bid + ".msg"], \
            os.listdir(corrupt)
        assert not d.find_messages(bad), "a corrupt message was relayed"
        assert d.pid and d.alive(), "the queue's problem stopped the daemon"
        assert gid != bid
        # what went out is the message queued as gid, and only it
        received, _ = strip_received(relayed.eml)
        assert gid.encode() in received and bid.encode() not in received, \
            received
        assert not [m for m in d.messages() if bid.encode() in m.eml]


def control(d, flag):
    """`smsubmit FLAG -f CONF`: its standard output."""
    p = harness.run([harness.SMSUBMIT, flag, "-f", d.conf_path],
                    timeout=20, check=True)
    return p.stdout.decode(errors="replace")


def t_queue_relay_reply_with_tab_survives_restart():
    """Issue 8.1: the relay's `421 4.3.2 busy<TAB>later` (and a reply
    with ESC, a bare CR and 8-bit octets) is kept in the envelope as the
    last error; after a restart the envelope is read back and the
    message delivered, never moved to corrupt/.  A deferred message
    stays deferred across the restart, until its next attempt."""
    hostile = ["421 4.3.2 busy\tlater",
               "421 4.3.2 b\x1b[2J\rusy \u00e9t\u00e9 %00 %zz"]
    with Smsubmit(conf={"queue retry": "1h to 2h"}) as d:
        up = substitute(d, [{"MAIL": r} for r in hostile])
        tags, qids = [], []
        for _ in hostile:
            tag = unique("tab")
            qid = d.submit(message(tag))
            d.wait_log(r"message %s: 1 recipients deferred" % qid, 10)
            tags.append(tag)
            qids.append(qid)
        assert not d.find_messages(tags[0]), "delivered before the restart"
        d.restart()
        # still deferred as the envelopes say, an hour away: -Q makes
        # them due
        out = control(d, "-q")
        for qid in qids:
            m = re.search(r"^%s .* next=in (\d+)s$" % qid, out, re.M)
            assert m and int(m.group(1)) > 3000, out
        control(d, "-Q")
        for tag in tags:
            d.wait_message(tag, timeout=20)
        corrupt = os.path.join(d.queue, "corrupt")
        assert not os.listdir(corrupt), "set aside: %r\n%s" % (
            os.listdir(corrupt), "\n".join(d.log_tail()))
        assert "moved to corrupt/" not in d.log(), d.log_tail()
        assert up.connections >= 3, up.transcript()


def t_queue_reads_version1_envelope():
    """An envelope written by an earlier release (version 1, values
    raw), even with the TAB its writer let through in the last error, is
    read after an upgrade and its message delivered."""
    with Smsubmit() as d:
        d.upstream.stop()
        tag = unique("v1")
        qid = d.submit(message(tag))
        d.stop_daemon()
        env = os.path.join(d.queue, "queue", qid + ".env")
        with open(env, "w") as f:
            f.write("version 1\nid %s\ncreated 1700000000\n"
                    "from alice@example.org\nuser alice\nhelo client.test\n"
                    "client 127.0.0.1\nflags 0\nattempts 3\n"
                    "next 1700000300\nerror 421 4.3.2 busy\tlater\n"
                    "rcpt pending bob@example.org\n" % qid)
        d.upstream.start()
        d.start_daemon()
        m = d.wait_message(tag, timeout=20)
        assert m.rcpt_to == ["bob@example.org"], m.rcpt_to
        assert not os.listdir(os.path.join(d.queue, "corrupt"))
        # its ID.msg starts with the envelope it was committed with: the
        # older envelope says nothing of it, and it is not sent as text
        assert b"version 2\n" not in m.eml, m.eml[:300]


def _stored_text(d, qid):
    """The message text the queue holds for qid, as the relay gets it
    (before the Received: field the listener added is told apart)."""
    head, text = queued_parts(os.path.join(d.queue, "queue", qid + ".msg"))
    assert head is not None and re.search(r"^id %s$" % qid, head, re.M), \
        head
    return text


def t_queue_message_file_holds_its_envelope_and_relays_only_the_message():
    """A committed message is one file: its envelope, an empty line, the
    message.  After a restart it is delivered from that file alone (no
    ID.env, as after a crash right after the commit), and from its ID.env
    once a deferral wrote one; either way the relay gets the message
    exactly, with SIZE= its length, and none of the envelope."""
    with Smsubmit() as d:
        d.upstream.stop()
        tags = [unique("head-only"), unique("with-env")]
        qids = [d.submit(message(t, body="line of text\r\n" * 200))
                for t in tags]
        queue = os.path.join(d.queue, "queue")
        harness.wait_for(lambda: all(os.path.exists(os.path.join(
            queue, q + ".env")) for q in qids), 20, "both deferred")
        d.stop_daemon()
        texts = [_stored_text(d, q) for q in qids]
        env = os.path.join(queue, qids[1] + ".env")
        assert os.path.exists(env), os.listdir(queue)
        with open(env) as f:
            offset = int(re.search(r"^body (\d+)$", f.read(), re.M)[1])
        assert offset == os.path.getsize(os.path.join(
            queue, qids[1] + ".msg")) - len(texts[1]), offset
        os.unlink(os.path.join(queue, qids[0] + ".env"))
        d.upstream.start()
        d.start_daemon()
        for tag, qid, text in zip(tags, qids, texts):
            m = d.wait_message(tag, timeout=20)
            assert m.eml == text, (qid, m.eml[:200], text[:200])
            assert b"\nid %s\n" % qid.encode() not in m.eml
            size = [p for p in m.mail_params if p.upper().startswith(
                "SIZE=")]
            assert size == ["SIZE=%d" % len(text)], (size, len(text))
        assert not os.listdir(os.path.join(d.queue, "corrupt"))


def t_queue_sweeps_lone_envelope_of_unfinished_removal():
    """A removal renames ID.msg away first: a crash before ID.env follows
    leaves ID.env alone, which start-up removes, delivering nothing and
    setting nothing aside."""
    with Smsubmit() as d:
        d.upstream.stop()
        tag = unique("removed")
        qid = d.submit(message(tag))
        d.wait_log("retry in")
        d.stop_daemon()
        queue = os.path.join(d.queue, "queue")
        assert os.path.exists(os.path.join(queue, qid + ".env"))
        os.unlink(os.path.join(queue, qid + ".msg"))
        d.upstream.start()
        d.start_daemon()
        d.wait_log("unfinished files removed")
        later = unique("later")
        d.wait_message(d.submit(message(later)), timeout=20)
        assert not d.find_messages(tag), "a removed message was relayed"
        assert not os.path.exists(os.path.join(queue, qid + ".env"))
        assert not os.listdir(os.path.join(d.queue, "corrupt"))
        assert re.search(r"0 messages recovered, 1 unfinished files "
                         r"removed", d.log()), d.log_tail()


def t_queue_quarantines_message_file_with_unreadable_envelope():
    """A queue/ID.msg whose head is an envelope that cannot be read (a
    bad field, or no empty line to end it) is set aside in corrupt/, not
    swept and not relayed, and the other messages are delivered."""
    with Smsubmit() as d:
        d.upstream.stop()
        good, bad, endless = unique("good"), unique("bad"), unique("endless")
        gid = d.submit(message(good))
        bid = d.submit(message(bad))
        eid = d.submit(message(endless))
        d.wait_log("retry in")
        d.stop_daemon()
        queue = os.path.join(d.queue, "queue")
        for q in (bid, eid):
            if os.path.exists(os.path.join(queue, q + ".env")):
                os.unlink(os.path.join(queue, q + ".env"))
        with open(os.path.join(queue, bid + ".msg"), "r+b") as f:
            data = f.read()
            f.seek(0)
            f.write(data.replace(b"\nrcpt pending ", b"\nrcpt maybe ", 1))
        with open(os.path.join(queue, eid + ".msg"), "r+b") as f:
            data = f.read()
            f.seek(0)
            f.truncate()
            f.write(data[:data.index(b"\n\n") + 1])
        d.upstream.start()
        d.start_daemon()
        d.wait_message(good, timeout=20)
        d.wait_log("moved to corrupt/")
        corrupt = sorted(os.listdir(os.path.join(d.queue, "corrupt")))
        assert corrupt == sorted([bid + ".msg", eid + ".msg"]), corrupt
        assert not d.find_messages(bad) and not d.find_messages(endless)
        assert d.alive()
