"""Crash safety (SPEC section 6): clients submit a few hundred messages
over TLS while the test kills daemon processes with SIGKILL at random
moments and restarts the daemon.  Afterwards every message a client saw
"250 ... queued as" for is at the relay host, whole and byte for byte;
duplicates are counted (SPEC allows them only for a death between the
relay's 250 and the removal of the file), and the queue is left empty.

Seeded: the seed is printed, REGRESS_SEED=N repeats the same kills and
messages (thread timing still varies).  The kills go on for CHAOS seconds
and until at least ACCEPTED messages were accepted and KILLS kills made
(a slow machine takes longer, it does not fail), CHAOS_MAX seconds at
most; then DRAIN seconds at most for the queue to empty."""

import os
import random
import re
import signal
import smtplib
import socket
import ssl
import threading
import time

from harness import USERS, Smsubmit, expect, message, pid_alive, \
    proc_title, strip_received, stuff, timeout, unique, wait_for

CHAOS = 35          # seconds of submitting and killing, at least
CHAOS_MAX = 120     # ... at most, if the counts below take longer
ACCEPTED = 100      # messages accepted during the kills, at least
KILLS = 8           # kills made, at least
DRAIN = 30          # seconds for the queue to empty at the end
THREADS = 6
GONE_WAIT = 15      # seconds for killed processes (and their kin) to go
VICTIMS = ("parent", "[smtp]", "[queue]", "[auth]", "all")


def tap(line):
    print("# " + line, flush=True)


class State:
    def __init__(self, seed):
        self.seed = seed
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.sent = {}        # token -> message bytes
        self.accepted = {}    # token -> queue ID the client was told
        self.refused = 0      # replies other than 250 to the final dot
        self.errors = 0       # sessions cut off (connection, TLS, 4xx...)


def body(rng):
    """A few KB of lines, some starting with a dot, now and then a long
    message, so bodies cross buffer boundaries."""
    lines = []
    size = rng.choice((200, 2000, 8000, 8000, 60000))
    n = 0
    while n < size:
        line = "".join(rng.choice("abcdefghij .,-0123456789") for _ in
                       range(rng.randrange(0, 120)))
        if rng.random() < 0.1:
            line = "." + line
        lines.append(line)
        n += len(line) + 2
    return ("\r\n".join(lines) + "\r\n").encode()


def client(d, st, tid):
    rng = random.Random("%d-%d" % (st.seed, tid))
    n = 0
    ctx = ssl.create_default_context(cafile=d.cert)
    while not st.stop.is_set():
        try:
            s = smtplib.SMTP_SSL("127.0.0.1", d.tls_port, context=ctx,
                                 timeout=10)
        except (OSError, smtplib.SMTPException):
            with st.lock:
                st.errors += 1
            st.stop.wait(0.05)
            continue
        try:
            s.ehlo("crash.test")
            s.login("alice", USERS["alice"])
            for _ in range(rng.randint(1, 4)):
                if st.stop.is_set():
                    break
                token = "crash-%d-%d-%d" % (st.seed, tid, n)
                n += 1
                msg = message(token, body(rng))
                with st.lock:
                    st.sent[token] = msg
                code, resp = s.mail("alice@example.org")
                if code != 250:
                    raise smtplib.SMTPResponseException(code, resp)
                code, resp = s.rcpt("bob@example.org")
                if code != 250:
                    raise smtplib.SMTPResponseException(code, resp)
                code, resp = s.data(msg)
                m = re.search(rb"queued as ([0-9a-f]{16})", resp)
                with st.lock:
                    if code == 250 and m:
                        st.accepted[token] = m.group(1).decode()
                    else:
                        st.refused += 1
                # a few hundred in all: the relay must keep up
                st.stop.wait(rng.uniform(0.1, 0.9))
            s.quit()
        except (OSError, smtplib.SMTPException, ValueError):
            with st.lock:
                st.errors += 1
            st.stop.wait(0.05)
        finally:
            try:
                s.close()
            except OSError:
                pass


def processes(d):
    """{pid: title} of the parent and its children, from /proc."""
    parent = d.proc.pid
    out = {parent: proc_title(parent) or "?"}
    try:
        with open("/proc/%d/task/%d/children" % (parent, parent)) as f:
            for pid in map(int, f.read().split()):
                out[pid] = proc_title(pid) or "?"
    except OSError:
        pass
    return out


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def kill(d, victim, problems):
    """SIGKILL victim; wait for every process of this daemon to be gone
    and the ports to be free.  Survivors past GONE_WAIT are a problem
    (and get SIGKILL, so the test goes on)."""
    procs = processes(d)
    parent = d.proc.pid
    if victim == "parent":
        targets = [parent]
    elif victim == "all":
        targets = list(procs)
    else:
        targets = [p for p, t in procs.items() if victim in t]
    for pid in targets:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + GONE_WAIT
    while True:
        left = [p for p, t in procs.items() if pid_alive(p) and
                (proc_title(p) or "") == t]
        if not left and d.proc.poll() is not None:
            break
        if time.monotonic() > deadline:
            problems.append("after killing %s: %s still running %ds "
                            "later" % (victim, [procs[p] for p in left],
                                       GONE_WAIT))
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 5
        time.sleep(0.02)
    d.proc.wait()
    d.proc = None
    d.pids = {}
    if d.logf:
        d.logf.close()
        d.logf = None
    deadline = time.monotonic() + GONE_WAIT
    while not (refused(d.tls_port) and refused(d.starttls_port)):
        if time.monotonic() > deadline:
            problems.append("after killing %s: ports still taken" % victim)
            break
        time.sleep(0.02)


def queue_dir(d, sub):
    try:
        return sorted(os.listdir(os.path.join(d.queue, sub)))
    except FileNotFoundError:
        return []


@timeout(CHAOS_MAX + DRAIN + 90)
def t_crash_kill9_at_random():
    seed = int(os.environ.get("REGRESS_SEED") or random.randrange(10 ** 9))
    tap("crash: seed %d (REGRESS_SEED=%d repeats it)" % (seed, seed))
    rng = random.Random(seed)
    st = State(seed)
    problems = []
    kills = {v: 0 for v in VICTIMS}
    t0 = time.monotonic()
    with Smsubmit(conf={"queue retry": "1s to 2s"}) as d:
        threads = [threading.Thread(target=client, args=(d, st, i),
                                    daemon=True) for i in range(THREADS)]
        for t in threads:
            t.start()
        try:
            end = time.monotonic() + CHAOS
            last = time.monotonic() + CHAOS_MAX
            while time.monotonic() < last and (
                    time.monotonic() < end or len(st.accepted) < ACCEPTED or
                    sum(kills.values()) < KILLS):
                time.sleep(rng.uniform(0.5, 3.0))
                victim = rng.choice(VICTIMS)
                kill(d, victim, problems)
                kills[victim] += 1
                d.start_daemon()
        finally:
            st.stop.set()
            for t in threads:
                t.join(15)
        # the last one kills everything, while the queue may be busy
        kill(d, "all", problems)
        kills["all"] += 1
        d.start_daemon()
        chaos = time.monotonic() - t0

        # drain: every accepted token at the relay, queue/ empty
        deadline = time.monotonic() + DRAIN
        while True:
            # queue/ first: the relay has a message before it leaves
            # queue/, so one in neither is lost
            left_q = queue_dir(d, "queue")
            have = {}
            for m in d.messages():
                tok = re.search(rb"Subject: (crash-\d+-\d+-\d+)", m.eml)
                key = tok.group(1).decode() if tok else None
                have.setdefault(key, []).append(m)
            missing = [t for t in st.accepted if t not in have]
            if not missing and not left_q:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)

        delivered = sum(len(v) for v in have.values())
        dups = sum(len(v) - 1 for v in have.values() if len(v) > 1)
        unknown = have.get(None, [])
        broken = []
        for tok, msgs in have.items():
            for m in msgs:
                if tok is None or tok not in st.sent or \
                        strip_received(m.eml)[1] != st.sent[tok]:
                    broken.append("%s (%d octets, store #%d)" % (
                        tok, len(m.eml), m.n))
        extra = [t for t in have if t and t not in st.accepted]
        tap("crash: %.0fs, kills %d (%s)" % (chaos, sum(kills.values()),
            ", ".join("%s %d" % kv for kv in kills.items())))
        tap("crash: messages sent %d, accepted %d, refused %d, sessions "
            "cut %d" % (len(st.sent), len(st.accepted), st.refused,
                        st.errors))
        tap("crash: delivered %d, missing %d, duplicated %d, delivered "
            "without a 250 seen %d" % (delivered, len(missing), dups,
                                       len(extra)))
        corrupt = queue_dir(d, "corrupt")
        # empty spares (smtpd/spare.c) are the queue's, not leftovers
        left_tmp = sorted(os.path.basename(f) for f in d.queue_files("tmp"))
        moved = re.findall(r".*moved to corrupt/.*", d.log())

        assert not problems, "; ".join(problems)
        queued = set(f[:16] for f in left_q if f.endswith(".msg"))
        lost = [t for t in missing if st.accepted[t] not in queued]
        assert not missing, "%d accepted messages not delivered after " \
            "%ds of drain: %d still queued, %d lost, e.g. %s" % (
                len(missing), DRAIN, len(missing) - len(lost), len(lost),
                ["%s (queue ID %s)" % (t, st.accepted[t])
                 for t in (lost or missing)[:5]])
        assert not broken, "%d delivered messages differ from what was " \
            "sent: %s" % (len(broken), broken[:5])
        assert not unknown, "%d messages without a token" % len(unknown)
        assert not left_q, "left in queue/ after the drain: %s" % left_q
        # (the start-up sweep after the last kill emptied tmp/; what a
        # running daemon leaves there is t_refused_message_leaves_nothing_
        # behind's)
        assert not left_tmp, "left in tmp/ after the drain: %s" % left_tmp
        assert not corrupt and not moved, "corrupt/: %s; %s" % (corrupt,
                                                                moved[:3])
        # one message at a time is with the relay: each death can
        # duplicate at most that one
        assert dups <= sum(kills.values()), "%d duplicates for %d kills" % (
            dups, sum(kills.values()))
        # not a speed asked for: the kills went on until these were
        # reached, CHAOS_MAX seconds at most
        assert len(st.accepted) >= ACCEPTED, "only %d messages accepted " \
            "in %ds: the test proved little" % (len(st.accepted), CHAOS_MAX)
        assert sum(kills.values()) >= KILLS, kills


@timeout(90)
def t_refused_message_leaves_nothing_behind():
    """SPEC section 6: a message that fails before its 250 leaves nothing
    in the queue, seen while the daemon runs (the start-up sweep would
    hide it): after a 552, a 554, a DATA timeout and a client that goes
    away in the middle of DATA."""
    with Smsubmit(conf={"timeout data": "3s",
                        "limit message-size": "64K"}) as d:
        def begin():
            c = d.session()
            expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")
            expect(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5")
            expect(c.cmd("DATA"), 354)
            # the message being received has its file in tmp/
            wait_for(lambda: d.queue_files("tmp"), 5,
                     "no file in tmp/ after DATA")
            return c

        def nothing_left(what):
            wait_for(lambda: not (d.queue_files("tmp") or
                                  d.queue_files("queue")), 10,
                     lambda: "after %s, left in the queue: %s" % (
                         what, d.queue_files("tmp") + d.queue_files("queue")))
            assert d.healthy(), "the daemon went away after %s" % what

        tags = [unique("left") for _ in range(4)]
        # over the size limit: 552, the session goes on
        c = begin()
        c.send(stuff(message(tags[0], body=(b"z" * 76 + b"\r\n") * 1000)))
        expect(c.reply(), 552, "5.3.4", "over the size limit")
        nothing_left("552")
        expect(c.cmd("NOOP"), 250, "2.0.0")
        # a bare LF: 554, the session goes on
        c2 = begin()
        c2.send(b"Subject: " + tags[1].encode() + b"\r\n\r\nbare\nLF\r\n.\r\n")
        expect(c2.reply(), 554, "5.6.0", "bare LF")
        nothing_left("554")
        expect(c2.cmd("NOOP"), 250, "2.0.0")
        # DATA timeout: 421 4.4.2 and close
        c3 = begin()
        c3.send(b"Subject: " + tags[2].encode() + b"\r\n\r\nhalf")
        expect(c3.reply(timeout=15), 421, "4.4.2", "DATA timeout")
        assert c3.closed(3)
        nothing_left("a DATA timeout")
        # the client goes away in the middle of DATA
        c4 = begin()
        c4.send(b"Subject: " + tags[3].encode() + b"\r\n\r\nhalf a bo")
        c4.close()
        nothing_left("a client gone in DATA")
        # and what comes next is queued and relayed as ever
        qid = d.submit(message(unique("after")))
        d.wait_message(qid)
        for t in tags:
            assert not d.find_messages(t), "%s was relayed" % t
