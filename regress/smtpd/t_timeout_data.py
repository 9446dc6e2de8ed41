"""`timeout data` is idle time between reads of the message, not a
deadline for the whole of it: a slow uplink that keeps sending is not cut
off, a client that stops is, and so is one that trickles (below 1K/s once
the first `timeout data` is over: t_abuse.py)."""

import os
import time

from harness import Closed, Smsubmit, expect, message, stuff, timeout, \
    unique


def messages(d):
    """Message and envelope files, being received or committed."""
    return [f for f in d.queue_files()
            if os.path.relpath(f, d.queue).split(os.sep)[0] in
            ("tmp", "queue") and os.sep in os.path.relpath(f, d.queue)]


def in_data(d):
    c = d.session()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")
    expect(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5")
    expect(c.cmd("DATA"), 354)
    return c


@timeout(60)
def t_data_timeout_is_idle_time():
    """`timeout data 3s`: a 160K message sent in pieces one second apart
    for about 8 seconds (20K/s, over the 1K/s minimum) is accepted and
    delivered whole."""
    with Smsubmit(conf={"timeout data": "3s"}) as d:
        tag = unique("slow")
        body = "".join("line %04d of a slow message, 40 octets\r\n" % i
                       for i in range(4000))
        data = stuff(message(tag, body=body))
        c = in_data(d)
        t0 = time.monotonic()
        step = len(data) // 8 + 1
        try:
            for i in range(0, len(data), step):
                c.send(data[i:i + step])
                time.sleep(1)
            r = c.reply(timeout=10)
        except Closed as e:
            raise AssertionError("cut off after %.1fs of steady sending: "
                                 "%s" % (time.monotonic() - t0, e))
        expect(r, 250, "2.0.0", "after %.1fs" % (time.monotonic() - t0))
        m = d.wait_message(tag)
        assert b"line 3999 of a slow message, 40 octets\r\n" in m.eml


@timeout(60)
def t_data_timeout_cuts_a_silent_client():
    """The same client, silent for longer than `timeout data` halfway
    through: 421 4.4.2 about 3s after its last byte, and nothing of the
    message is delivered."""
    with Smsubmit(conf={"timeout data": "3s"}) as d:
        tag = unique("stall")
        # large enough for the rate never to be what cuts it off
        body = "".join("line %04d of a stalled message, 40 o.\r\n" % i
                       for i in range(2000))
        data = stuff(message(tag, body=body))
        c = in_data(d)
        c.send(data[:len(data) // 2])
        time.sleep(1.5)
        c.send(data[len(data) // 2:-5])
        t0 = time.monotonic()
        r = c.reply(timeout=15)
        took = time.monotonic() - t0
        expect(r, 421, "4.4.2")
        assert 2 <= took <= 9, "421 %.1fs after the last byte" % took
        assert c.closed(3)
        # the file being received goes once the session is gone
        deadline = time.monotonic() + 10
        while messages(d):
            assert time.monotonic() < deadline, \
                "left in the queue: %s" % messages(d)
            time.sleep(0.1)
        assert not d.find_messages(tag), "part of the message was relayed"
