"""The relay's connections (smsubmit.conf(5), `relay connections`): up to
N at once, each carrying one message and reused for the next, so that a
large message does not hold up small ones; PIPELINING (RFC 2920) where
the relay host advertises it, lock-step where it does not.  The relay
host is regress/lib/scripted.py, which records what came in each read
from the socket and how many connections were open at once; a test
holds the relay's reply to the final dot to keep a message in flight."""

import re
import signal
import threading
import time

import harness
from harness import Smsubmit, message, strip_received, timeout, unique, \
    wait_for
from scripted import substitute

TIMEOUT = 120
WAIT = 60

NO_PIPELINING = "250-upstream.test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n" \
    "250 SIZE 104857600"


class Hold:
    """A "DOT" action that keeps the relay's reply to the messages
    `which` picks until release(); `held` counts those waiting now."""

    def __init__(self, which=lambda data: True):
        self.which = which
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.held = 0
        self.most = 0       # held at once, at most

    def __call__(self, handler, line):
        if not self.which(handler.data):
            return None
        with self.lock:
            self.held += 1
            self.most = max(self.most, self.held)
        try:
            self.gate.wait(2 * WAIT)  # longer than a test waits
        finally:
            with self.lock:
                self.held -= 1
        return None

    def wait_held(self, n, up):
        wait_for(lambda: self.held >= n, WAIT,
                 lambda: "%d messages held at the relay, want %d\n%s" % (
                     self.held, n, up.transcript()))

    def release(self):
        self.gate.set()

    def close(self):
        """For the next batch: replies held again."""
        self.gate = threading.Event()


def daemon(**conf):
    return Smsubmit(conf=dict({"queue retry": "1s to 2s"}, **conf))


def drained(d, up, wait=WAIT):
    top = d.queue + "/queue/"
    wait_for(lambda: not [f for f in d.queue_files() if f.startswith(top)],
             wait, lambda: "queue not empty:\n%s" % up.transcript())


def commands_read(up, conn=None):
    """The reads from the socket that carry transaction commands: lists
    of the command lines each held, in order."""
    out = []
    with up.lock:
        reads = list(up.reads)
    for c, data in reads:
        if conn is not None and c != conn:
            continue
        lines = [l for l in data.split(b"\r\n")
                 if re.match(rb"(?i)(MAIL FROM:|RCPT TO:|DATA$)", l)]
        if lines:
            out.append([l.decode(errors="replace") for l in lines])
    return out


def rewrite(d, key, value):
    """Give a statement a new value (or add it), SIGHUP, and wait until
    the queue says it has the new number of connections."""
    lines = [l for l in d.conf_text.splitlines()
             if not l.startswith(key + " ")]
    lines.append("%s %s" % (key, value))
    d.conf_text = "\n".join(lines) + "\n"
    with open(d.conf_path, "w") as f:
        f.write(d.conf_text)
    mark = d.log_mark()
    d.signal(signal.SIGHUP)
    d.wait_log(r"relay connections %s from now on" % value, 10, since=mark)


def t_relay_pipelining_used_when_advertised():
    """MAIL, both RCPTs and DATA reach the relay host in one read, before
    it has answered any of them; the message arrives whole."""
    with daemon() as d:
        up = substitute(d)
        tag = unique("pipe")
        msg = message(tag)
        d.submit(msg, rcpts=["bob@example.org", "carol@example.org"])
        m = d.wait_message(tag, WAIT)
        assert m.rcpt_to == ["bob@example.org", "carol@example.org"], m
        assert strip_received(m.eml)[1] == msg, "message changed"
        groups = commands_read(up)
        assert groups and len(groups[0]) == 4, \
            "commands per read: %s\n%s" % (groups, up.transcript())
        assert groups[0][0].startswith("MAIL FROM:<alice@example.org>") \
            and groups[0][3] == "DATA", groups


def t_relay_pipelining_not_used_when_not_advertised():
    """No PIPELINING in the EHLO reply: each command waits for the reply
    to the one before, so each comes in a read of its own."""
    with daemon() as d:
        up = substitute(d, always={"EHLO": NO_PIPELINING})
        tag = unique("lockstep")
        msg = message(tag)
        d.submit(msg, rcpts=["bob@example.org", "carol@example.org"])
        m = d.wait_message(tag, WAIT)
        assert m.rcpt_to == ["bob@example.org", "carol@example.org"], m
        assert strip_received(m.eml)[1] == msg, "message changed"
        groups = commands_read(up)
        assert [len(g) for g in groups] == [1, 1, 1, 1], \
            "commands per read: %s" % groups
        # and in the order of lock-step: each after the reply before it
        ev = [w for c, _, w in up.events]
        order = [w for w in ev if re.match(r"(< (MAIL|RCPT|DATA))|"
                                           r"(action [23]\d\d )", w)]
        for a, b in zip(order, order[1:]):
            if a.startswith("<"):
                assert b.startswith("action"), \
                    "%r came before the reply to %r:\n%s" % (
                        b, a, up.transcript())


def t_relay_pipelined_mixed_rcpt_replies():
    """One pipelined transaction, a reply per recipient: bob 250 (relayed
    now), carol 451 (kept, relayed on a later attempt), dave 550 (one DSN
    to the sender, never retried)."""
    with daemon() as d:
        tries = []

        def carol(handler, line):
            tries.append(line)
            return "451 4.2.0 mailbox busy" if len(tries) == 1 else None

        up = substitute(d, always={
            "RCPT TO:<carol@example.org>": carol,
            "RCPT TO:<dave@example.org>": "550 5.1.1 no such user"})
        tag = unique("mixed")
        msg = message(tag)
        qid = d.submit(msg, sender="alice@example.org",
                       rcpts=["bob@example.org", "carol@example.org",
                              "dave@example.org"])
        wait_for(lambda: len(d.find_messages(tag)) >= 2, WAIT,
                 lambda: "carol's copy never came\n%s" % up.transcript())
        drained(d, up)
        copies = [m for m in d.find_messages(tag) if m.mail_from != ""]
        assert [m.rcpt_to for m in copies] == [["bob@example.org"],
                                               ["carol@example.org"]], \
            copies
        for m in copies:
            assert strip_received(m.eml)[1] == msg, "message changed"
        dsn = [m for m in d.messages() if m.mail_from == ""]
        assert len(dsn) == 1 and dsn[0].rcpt_to == ["alice@example.org"], \
            d.messages()
        text = dsn[0].eml.decode(errors="replace")
        assert re.findall(r"(?im)^Final-Recipient:\s*rfc822;\s*(\S+)",
                          text) == ["dave@example.org"], text[-800:]
        # the deferral kept carol's reply, not one to a later command
        d.wait_log(r"message %s: 1 recipients deferred \(451[^)]*"
                   r"4\.2\.0[^)]*busy\)" % qid, 5)
        daves = [c for c in up.commands
                 if c.upper().startswith("RCPT TO:<DAVE@")]
        assert len(daves) == 1, "dave tried %d times" % len(daves)
        groups = commands_read(up)
        assert len(groups[0]) == 5, "not pipelined: %s" % groups


def t_relay_pipelined_no_rcpt_accepted():
    """Pipelined, the only recipient deferred: the relay refuses the DATA
    that came with it; RSET, the recipient's reply kept as the error, and
    the next attempt goes through on the same connection."""
    with daemon() as d:
        tries = []

        def bob(handler, line):
            tries.append(line)
            return "451 4.2.0 mailbox busy" if len(tries) == 1 else None

        up = substitute(d, always={"RCPT TO:<bob@example.org>": bob})
        tag = unique("norcpt")
        qid = d.submit(message(tag))
        d.wait_message(tag, WAIT)
        drained(d, up)
        d.wait_log(r"message %s: 1 recipients deferred \(451[^)]*"
                   r"4\.2\.0[^)]*busy\)" % qid, 5)
        ev = [w for c, _, w in up.events if c == 0]
        assert "< RSET" in ev, up.transcript()
        assert up.connections == 1, up.transcript()


@timeout(150)
def t_relay_big_message_does_not_block_small_ones():
    """A 1.5 MB message whose final reply the relay host holds keeps one
    connection busy; three small messages submitted meanwhile arrive
    before it, on the other connections."""
    with daemon(**{"relay connections": "4"}) as d:
        hold = Hold(lambda data: len(data) > 1000000)
        up = substitute(d, always={"DOT": hold})
        try:
            big = unique("big")
            d.submit(message(big, ("z" * 998 + "\r\n") * 1500))
            hold.wait_held(1, up)
            small = [unique("small%d" % i) for i in range(3)]
            for tag in small:
                d.submit(message(tag))
            for tag in small:
                try:
                    d.wait_message(tag, WAIT)
                except AssertionError as e:
                    raise AssertionError("%s\n%s" % (e, up.transcript()))
            assert hold.held == 1 and not d.find_messages(big), \
                "the big message is no longer held"
        finally:
            hold.release()
        m = d.wait_message(big, WAIT)
        drained(d, up)
        assert all(d.find_messages(t)[0].n < m.n for t in small), \
            "order at the relay: %s" % d.messages()
        conns = {r["conn"] for r in up.received}
        assert len(conns) >= 2, up.transcript()


@timeout(200)
def t_relay_connections_bounded():
    """`relay connections 2`: with every final reply held, two messages
    are in flight and the relay host never sees more than two
    connections; a reload to 3 lets three go at once, and one to 1
    closes the extra idle connections."""
    with daemon(**{"relay connections": "2"}) as d:
        hold = Hold()
        up = substitute(d, always={"DOT": hold})

        def batch(n, want):
            hold.close()
            with up.lock:
                up.max_open = up.open_now
            tags = [unique("bound%d" % i) for i in range(n)]
            try:
                for tag in tags:
                    d.submit(message(tag))
                hold.wait_held(want, up)
                assert up.max_open <= want, \
                    "%d connections at once, want %d\n%s" % (
                        up.max_open, want, up.transcript())
            finally:
                hold.release()
            for tag in tags:
                d.wait_message(tag, WAIT)
            drained(d, up)
            assert up.max_open == want, \
                "%d connections at once, want %d\n%s" % (
                    up.max_open, want, up.transcript())
            return tags

        batch(5, 2)
        assert hold.most == 2, hold.most
        hold.most = 0
        rewrite(d, "relay connections", "3")
        batch(6, 3)
        assert hold.most == 3, hold.most
        hold.most = 0
        rewrite(d, "relay connections", "1")
        wait_for(lambda: up.open_now <= 1, 10,
                 lambda: "%d connections still open\n%s" % (
                     up.open_now, up.transcript()))
        batch(3, 1)
        assert hold.most == 1, hold.most


def t_relay_connection_reused():
    """Two messages one after the other go over one connection: one
    greeting, one EHLO, no RSET after a transaction that ended well."""
    with daemon() as d:
        up = substitute(d)
        for i in range(2):
            tag = unique("reuse%d" % i)
            d.submit(message(tag))
            d.wait_message(tag, WAIT)
        drained(d, up)
        assert up.connections == 1, up.transcript()
        ehlo = [c for c in up.commands if c.upper().startswith("EHLO")]
        rset = [c for c in up.commands if c.upper() == "RSET"]
        mails = [c for c in up.commands if c.upper().startswith("MAIL")]
        assert len(ehlo) == 1 and not rset and len(mails) == 2, \
            up.transcript()


def t_queue_control_shows_every_message_in_flight():
    """`smsubmit -q` with two messages on two connections, their final
    replies held: both are "now (delivering)"; the third, waiting for a
    connection, is due and is not."""
    with daemon(**{"relay connections": "2"}) as d:
        hold = Hold()
        up = substitute(d, always={"DOT": hold})
        try:
            qids = [d.submit(message(unique("q%d" % i))) for i in range(2)]
            hold.wait_held(2, up)
            third = d.submit(message(unique("q2")))
            p = harness.run([harness.SMSUBMIT, "-q", "-f", d.conf_path],
                            timeout=20, check=False)
            out = p.stdout.decode(errors="replace")
            assert p.returncode == 0, p.stderr
            heads = dict((l.split()[0], l) for l in out.splitlines()
                         if re.match(r"[0-9a-f]{16} ", l))
            for qid in qids:
                assert heads[qid].endswith(" next=now (delivering)"), out
            assert heads[third].endswith(" next=in 0s"), out
        finally:
            hold.release()
        drained(d, up)


def t_relay_idle_connection_closed():
    """A connection left without a message says QUIT (after 10s), and the
    next message opens a new one."""
    with daemon() as d:
        up = substitute(d)
        d.submit(message(unique("idle0")))
        drained(d, up)
        wait_for(lambda: (0, "closed") in [(c, w) for c, _, w in up.events],
                 30, lambda: "the idle connection stayed\n%s" %
                 up.transcript())
        ev = [w for c, _, w in up.events if c == 0]
        assert ev[-3:] == ["< QUIT", "action 221 2.0.0 Bye", "closed"], \
            up.transcript()
        tag = unique("idle1")
        d.submit(message(tag))
        d.wait_message(tag, WAIT)
        assert up.connections == 2, up.transcript()
