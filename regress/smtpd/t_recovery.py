"""What the queue finds at start-up: leftovers of unfinished commits are
removed, committed messages are delivered, unreadable ones are set aside
in corrupt/ without stopping the rest."""

import os

from harness import Smsubmit, message, strip_received, unique


def t_queue_sweeps_unfinished_files():
    with Smsubmit(start=False) as d:
        os.makedirs(os.path.join(d.queue, "tmp"), exist_ok=True)
        os.makedirs(os.path.join(d.queue, "queue"), exist_ok=True)
        half = os.path.join(d.queue, "tmp", "0123456789abcdef")
        orphan = os.path.join(d.queue, "queue", "fedcba9876543210.msg")
        for p in (half, half + ".env", orphan):
            with open(p, "w") as f:
                f.write("Subject: never committed\r\n\r\nx\r\n")
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
