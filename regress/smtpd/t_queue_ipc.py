"""[queue] against a captured listener: the test plays the parent and the
listener of a re-executed `smsubmit -X queue` child and speaks the IPC
protocol to it, as a subverted listener could.  Each session has at most
one open message, in one state; a request not allowed in that state, or
over a bound (open messages, recipients, size, field lengths), is fatal
to [queue] (it exits, and in the daemon the parent then stops
everything).  A committed message is the queue's own copy: what the
listener writes through its old descriptor after the 250 changes
nothing."""

import os
import random
import re
import signal
import time

from harness import (Skip, Smsubmit, blank, queued_message, queued_parts,
                     wait_for)
from ipcpeer import IPC_MAX_PAYLOAD, PROC_SMTP, T, Child, pack, unpack

QUEUE_OK = 0
QUEUE_R_TEMP = 1       # smsubmit.h: enum queue_result
RECEIVED_MAX = 4096     # queue.c: the Received: field beyond the limit
SIZE = 64 * 1024        # "limit message-size" of these tests
RCPTS = 3               # "limit recipients"
CONF = {"limit message-size": "64K", "limit recipients": str(RCPTS),
        "queue retry": "1s to 2s"}


class QueueChild(Child):
    """`smsubmit -X queue`, with the test as its parent and listener."""

    def __init__(self, d, env=None):
        Child.__init__(self, d, "queue", PROC_SMTP, env=env)
        self.listener = self.peer
        self.ready()

    def answer(self, timeout=5):
        m = self.listener.recv(timeout)
        assert m is not None, "no answer; log:\n" + self.log()
        return m

    def create(self, sid):
        """A new message for session sid: (msgid, descriptor)."""
        self.listener.send("IMSG_MSG_CREATE", sid)
        t, peer, data, fd = self.answer()
        assert (t, peer) == ("IMSG_MSG_FILE", sid), (t, peer)
        result, msgid = unpack("us", data)
        assert result == QUEUE_OK and fd is not None, (result, fd)
        assert re.fullmatch(r"[0-9a-f]{16}", msgid), msgid
        return msgid, fd

    def envelope(self, sid, msgid, sender="alice@example.org", user="alice",
                 helo="client.test", client="192.0.2.1", flags=0):
        self.listener.send("IMSG_MSG_ENVELOPE", sid, "sssssu", msgid,
                           sender, user, helo, client, flags)

    def rcpt(self, sid, msgid, rcpt="bob@example.org"):
        self.listener.send("IMSG_MSG_RCPT", sid, "ss", msgid, rcpt)

    def commit(self, sid, msgid):
        """Send the commit and return the queue's result code."""
        self.listener.send("IMSG_MSG_COMMIT", sid, "s", msgid)
        t, peer, data, fd = self.answer()
        assert (t, peer, fd) == ("IMSG_MSG_RESULT", sid, None), (t, peer)
        result, rid = unpack("us", data)
        assert rid == msgid, (rid, msgid)
        return result

    def submit(self, sid, data, rcpts=("bob@example.org",)):
        """The whole of a message, as the listener sends it: msgid and
        the descriptor it still holds."""
        msgid, fd = self.create(sid)
        os.write(fd, data)
        self.envelope(sid, msgid)
        for r in rcpts:
            self.rcpt(sid, msgid, r)
        assert self.commit(sid, msgid) == QUEUE_OK, self.log()
        return msgid, fd


def run(body, conf=None, env=None):
    d = Smsubmit(start=False, conf=dict(CONF, **(conf or {})))
    d.make_queue()
    q = QueueChild(d, env)
    try:
        body(d, q)
    finally:
        q.close()
        d.stop()


def queued(d, msgid):
    return queued_message(os.path.join(d.queue, "queue", msgid + ".msg"))


def mail(subject, size=0):
    return (b"From: alice@example.org\r\nTo: bob@example.org\r\n"
            b"Subject: " + subject.encode() + b"\r\n\r\n" +
            b"".join(b"line %06d of the body\r\n" % i
                     for i in range(size // 24 + 1)))


def t_queue_ipc_message_unchanged_by_writes_after_commit():
    """After the 250 the listener still holds a descriptor to the file it
    wrote; rewriting, extending and truncating through it changes neither
    the queued file nor what the relay host gets."""
    def body(d, q):
        original = mail("tamper-%d" % os.getpid(), 3000)
        msgid, fd = q.submit(1, original)
        os.pwrite(fd, b"Subject: rewritten after the 250\r\n\r\n", 0)
        os.write(fd, b"appended after the 250\r\n")
        assert queued(d, msgid) == original
        os.ftruncate(fd, 10)
        assert queued(d, msgid) == original
        os.close(fd)
        # the relay host was down until now: it gets the original
        d.upstream.start()
        m = d.wait_message(b"tamper-%d" % os.getpid(), timeout=20)
        assert m.eml == original, m.eml[:200]
        assert m.rcpt_to == ["bob@example.org"], m.rcpt_to
    run(body)


def t_queue_ipc_listener_descriptor_is_write_only():
    def body(d, q):
        msgid, fd = q.create(1)
        os.write(fd, b"x\r\n")
        try:
            os.pread(fd, 10, 0)
        except OSError:
            pass
        else:
            raise AssertionError("the listener can read its message file")
        os.close(fd)
    run(body)


def t_queue_ipc_message_at_size_limit_is_committed():
    def body(d, q):
        data = b"x" * (SIZE + RECEIVED_MAX - 2) + b"\r\n"
        msgid, fd = q.submit(1, data)
        os.close(fd)
        assert queued(d, msgid) == data
    run(body)


def t_queue_ipc_message_over_size_limit_is_fatal():
    def body(d, q):
        msgid, fd = q.create(1)
        os.write(fd, b"x" * (SIZE + RECEIVED_MAX + 1))
        os.close(fd)
        q.envelope(1, msgid)
        q.rcpt(1, msgid)
        q.listener.send("IMSG_MSG_COMMIT", 1, "s", msgid)
        q.dies(r"session 00000001: message of %d octets, over the size "
               r"limit" % (SIZE + RECEIVED_MAX + 1))
        assert not os.path.exists(os.path.join(d.queue, "queue",
                                               msgid + ".msg"))
    run(body)


def t_queue_ipc_envelope_without_file_is_fatal():
    def body(d, q):
        q.envelope(5, "0123456789abcdef")
        q.dies(r"message \d+ from listener for session 00000005 with no "
               r"open message")
    run(body)


def t_queue_ipc_second_create_while_open_is_fatal():
    def body(d, q):
        q.create(6)
        q.listener.send("IMSG_MSG_CREATE", 6)
        q.dies(r"for session 00000006 with a file handed out")
    run(body)


def t_queue_ipc_commit_without_recipient_is_fatal():
    def body(d, q):
        msgid, _ = q.create(7)
        q.envelope(7, msgid)
        q.listener.send("IMSG_MSG_COMMIT", 7, "s", msgid)
        q.dies(r"for session 00000007 with an envelope and no recipient")
    run(body)


def t_queue_ipc_recipient_before_envelope_is_fatal():
    def body(d, q):
        msgid, _ = q.create(8)
        q.rcpt(8, msgid)
        q.dies(r"for session 00000008 with a file handed out")
    run(body)


def t_queue_ipc_abort_without_message_is_fatal():
    def body(d, q):
        q.listener.send("IMSG_MSG_ABORT", 9, "s", "0123456789abcdef")
        q.dies(r"for session 00000009 with no open message")
    run(body)


def t_queue_ipc_request_naming_another_message_is_fatal():
    """A session may only speak of its own message: not another
    session's, not a path."""
    for other in ("session", "../../etc/passwd"):
        def body(d, q):
            mine, _ = q.create(10)
            theirs, _ = q.create(11)
            name = theirs if other == "session" else other
            q.envelope(10, name)
            q.dies(r"MSG_ENVELOPE for session 0000000a names another "
                   r"message")
        run(body)


def t_queue_ipc_more_recipients_than_limit_is_fatal():
    def body(d, q):
        msgid, _ = q.create(12)
        q.envelope(12, msgid)
        for i in range(RCPTS):
            q.rcpt(12, msgid, "r%d@example.org" % i)
        time.sleep(0.2)
        assert q.alive(), q.log()
        q.rcpt(12, msgid, "one-too-many@example.org")
        q.dies(r"session 0000000c: more recipients than the limit")
    run(body)


def t_queue_ipc_more_open_messages_than_sessions_is_fatal():
    """"limit sessions 1": 1 + 64 open messages (sessions that just
    ended), no more."""
    def body(d, q):
        fds = [q.create(100 + i)[1] for i in range(65)]
        for fd in fds:
            os.close(fd)
        q.listener.send("IMSG_MSG_CREATE", 200)
        q.dies(r"session 000000c8: more open messages than sessions")
    run(body, {"limit sessions": "1", "limit sessions-per-address": "1"})


def t_queue_ipc_abort_removes_the_file_and_frees_the_session():
    def body(d, q):
        msgid, fd = q.create(13)
        os.write(fd, b"x\r\n")
        q.envelope(13, msgid)
        q.listener.send("IMSG_MSG_ABORT", 13, "s", msgid)
        again, fd2 = q.create(13)
        assert again != msgid
        assert os.listdir(os.path.join(d.queue, "tmp")) == [again]
        os.close(fd)
        os.close(fd2)
    run(body)


def t_queue_ipc_bad_envelope_fields_are_fatal():
    cases = [
        {"sender": "no-at-sign"},
        {"sender": "a" * 65 + "@example.org"},
        {"user": "alice\nuser=root"},
        {"helo": "h" * 256},
        {"client": "192.0.2.1\r"},
        {"flags": 0x100},
    ]
    for case in cases:
        def body(d, q):
            msgid, _ = q.create(14)
            q.envelope(14, msgid, **case)
            q.dies(r"bad envelope from listener for session 0000000e")
        run(body)


def t_queue_ipc_bad_recipient_is_fatal():
    for rcpt in ("", "bob", "bob@exa mple.org", "<bob@example.org>"):
        def body(d, q):
            msgid, _ = q.create(15)
            q.envelope(15, msgid)
            q.rcpt(15, msgid, rcpt)
            q.dies(r"bad recipient from listener for session 0000000f")
        run(body)


def t_queue_ipc_malformed_frames_are_fatal():
    cases = [
        # a parent-only message, an auth one, a type past the enum
        (lambda q: q.listener.send("IMSG_START", 1),
         r"unexpected message \d+ from listener"),
        (lambda q: q.listener.send("IMSG_AUTH_STEP", 1, "s", "x"),
         r"unexpected message \d+ from listener"),
        (lambda q: q.listener.send_raw(T["IMSG_MAX"] + 7, 1, b""),
         r"unexpected message \d+ from listener"),
        # payloads that are not what the type says
        (lambda q: q.listener.send_raw(T["IMSG_MSG_CREATE"], 1, b"\0"),
         r"bad MSG_CREATE"),
        (lambda q: q.listener.send_raw(T["IMSG_MSG_CREATE"], 1, b"",
                                       fd=os.open("/dev/null", os.O_RDONLY)),
         r"unexpected descriptor from listener"),
        (lambda q: q.listener.send_raw(T["IMSG_MSG_CREATE"], 1, b"x" * 16,
                                       length=IPC_MAX_PAYLOAD + 1),
         r"malformed frame from listener"),
    ]
    for act, why in cases:
        def body(d, q):
            act(q)
            q.dies(why)
        run(body)


def t_queue_ipc_truncated_payload_is_fatal():
    def body(d, q):
        msgid, _ = q.create(16)
        q.listener.send_raw(T["IMSG_MSG_ENVELOPE"], 16,
                            pack("sss", msgid, "a@example.org", "alice"))
        q.dies(r"bad MSG_ENVELOPE")
    run(body)


# --- the stateful fuzzer ---

def tree(top, skip):
    """{path: (size, mtime)} of every file under top, but skip."""
    out = {}
    for d, dirs, files in os.walk(top):
        dirs[:] = [x for x in dirs if os.path.join(d, x) not in skip]
        for f in files:
            p = os.path.join(d, f)
            if p not in skip:
                st = os.lstat(p)
                out[p] = (st.st_size, st.st_mtime_ns)
    return out


class Model:
    """What a session's message is in, as queue.c's table says."""

    def __init__(self, rnd):
        self.rnd = rnd
        self.sessions = {}      # sid -> dict(state, msgid, fd, data, n)
        self.committed = {}     # msgid -> the octets written

    def close_fds(self):
        for s in self.sessions.values():
            os.close(s["fd"])
        self.sessions = {}


def legal_step(q, model, sid, what):
    """A request the listener may send in the session's state; checks
    the answer.  Returns nothing: a wrong answer raises."""
    rnd = model.rnd
    s = model.sessions.get(sid)
    if s is None:
        msgid, fd = q.create(sid)
        model.sessions[sid] = dict(state="open", msgid=msgid, fd=fd,
                                   data=b"", n=0)
        return
    if rnd.random() < 0.1:
        q.listener.send("IMSG_MSG_ABORT", sid, "s", s["msgid"])
        os.close(s["fd"])
        del model.sessions[sid]
        return
    if s["state"] == "open":
        room = SIZE + RECEIVED_MAX - len(s["data"])
        chunk = rnd.randbytes(rnd.choice((0, 10, 1000, 20000, room)))
        os.write(s["fd"], chunk)
        s["data"] += chunk
        q.envelope(sid, s["msgid"], sender=rnd.choice(
            ("alice@example.org", "", "\"a b\"@example.org",
             "us\u00e9r@exampl\u00e9.org")), flags=rnd.randint(0, 3))
        s["state"] = "env"
    elif s["state"] == "env" or (s["n"] < RCPTS and rnd.random() < 0.4):
        q.rcpt(sid, s["msgid"], rnd.choice(
            ("bob@example.org", "postmaster", "c@[192.0.2.9]")))
        s["n"] += 1
        s["state"] = "rcpt"
    else:
        assert q.commit(sid, s["msgid"]) == QUEUE_OK, (what, q.log())
        # the listener keeps writing: the queued copy must not change
        os.write(s["fd"], b"garbage after the 250")
        os.close(s["fd"])
        model.committed[s["msgid"]] = s["data"]
        del model.sessions[sid]


def fatal_step(q, model, sid):
    """Something no listener following the protocol sends; the regex
    the queue's last words must match."""
    rnd = model.rnd
    s = model.sessions.get(sid)
    state = s["state"] if s else None
    fake = "%016x" % rnd.getrandbits(64)
    choices = []
    if state is None:
        choices += [
            (lambda: q.envelope(sid, fake), r"with no open message"),
            (lambda: q.rcpt(sid, fake), r"with no open message"),
            (lambda: q.listener.send("IMSG_MSG_COMMIT", sid, "s", fake),
             r"with no open message"),
            (lambda: q.listener.send("IMSG_MSG_ABORT", sid, "s", fake),
             r"with no open message")]
    else:
        msgid = s["msgid"]
        choices += [
            (lambda: q.listener.send("IMSG_MSG_CREATE", sid),
             r"for session %08x with" % sid),
            (lambda: q.listener.send("IMSG_MSG_ABORT", sid, "s", fake),
             r"names another message")]
        if state == "open":
            choices += [
                (lambda: q.rcpt(sid, msgid), r"with a file handed out"),
                (lambda: q.envelope(sid, msgid, user="x\x7f"),
                 r"bad envelope"),
                (lambda: q.envelope(sid, msgid, helo="h" * 300),
                 r"bad envelope")]
        if state == "env":
            choices += [
                (lambda: q.listener.send("IMSG_MSG_COMMIT", sid, "s", msgid),
                 r"with an envelope and no recipient"),
                (lambda: q.envelope(sid, msgid), r"with an envelope")]
        if state in ("env", "rcpt"):
            choices += [
                (lambda: q.rcpt(sid, msgid, "x@"), r"bad recipient"),
                (lambda: [q.rcpt(sid, msgid) for _ in range(RCPTS + 1)],
                 r"more recipients than the limit")]
        if state == "rcpt":
            def oversize():
                os.write(s["fd"], b"y" * (SIZE + RECEIVED_MAX + 1))
                q.listener.send("IMSG_MSG_COMMIT", sid, "s", msgid)
            choices.append((oversize, r"over the size limit"))
    choices += [
        (lambda: q.listener.send_raw(rnd.choice(
            (T["IMSG_MSG_FILE"], T["IMSG_MSG_RESULT"], T["IMSG_CONF"],
             T["IMSG_AUTH_START"], T["IMSG_MAX"], 0xffffffff)), sid,
            rnd.randbytes(rnd.randint(0, 40))),
         r"unexpected message \d+ from listener"),
        (lambda: q.listener.send_raw(T["IMSG_MSG_CREATE"], sid,
                                     rnd.randbytes(rnd.randint(1, 8))),
         r"bad MSG_CREATE|for session %08x with" % sid),
        (lambda: q.listener.send_raw(T["IMSG_MSG_COMMIT"], sid,
                                     rnd.randbytes(rnd.randint(0, 30))
                                     .replace(b"\0", b"")),
         r"bad MSG_COMMIT|with no open message|for session")]
    return rnd.choice(choices)


def queue_fds(q):
    """The files the queue process holds open, under its directory."""
    fddir = "/proc/%d/fd" % q.proc.pid
    out = []
    for fd in os.listdir(fddir):
        try:
            target = os.readlink(os.path.join(fddir, fd))
        except OSError:
            continue
        if target.startswith(os.path.join(q.d.queue, "")):
            out.append(target[len(q.d.queue):])
    return out


def check_queue(d, model, q):
    """queue/ holds exactly the committed messages, each as written."""
    names = set(os.listdir(os.path.join(d.queue, "queue")))
    want = set(msgid + ".msg" for msgid in model.committed)
    # an ID.env only for a message whose envelope changed (a deferral)
    envs = set(n for n in names if n.endswith(".env"))
    assert names - envs == want, (sorted((names - envs) ^ want),
                                  q.log()[-3000:])
    assert set(n[:-4] + ".msg" for n in envs) <= want, (envs, want)
    for msgid, data in model.committed.items():
        assert queued(d, msgid) == data, msgid
    assert os.listdir(os.path.join(d.queue, "corrupt")) == []


def t_queue_ipc_random_sequences_follow_protocol_or_exit():
    """A stateful fuzzer: random well-formed and malformed requests for a
    few sessions, checked against a model of each session's message.
    While every request is allowed, [queue] answers exactly as the model
    says, and the queued copies stay what was written whatever the
    listener writes after the 250; at the first request that is not
    allowed it exits, with a reason.  It never hangs, and nothing outside
    the queue directory changes, and it keeps no descriptor it does not
    need."""
    seed = int(os.environ.get("FUZZ_SEED", time.time()))
    rnd = random.Random(seed)
    d = Smsubmit(start=False, conf=CONF)   # no relay host: all stays
    d.make_queue()
    model = Model(rnd)
    skip = {d.queue, os.path.join(d.dir, "queue.log")}
    before = tree(d.dir, skip)
    steps = deaths = 0
    try:
        for run_no in range(16):
            q = QueueChild(d)
            died = False
            try:
                for _ in range(50):
                    steps += 1
                    sid = rnd.randint(1, 3)
                    what = "seed %d run %d step %d session %d %r" % (
                        seed, run_no, steps, sid,
                        model.sessions.get(sid, {}).get("state"))
                    if rnd.random() < 0.975:
                        legal_step(q, model, sid, what)
                        continue
                    act, why = fatal_step(q, model, sid)
                    act()
                    try:
                        q.dies(why)
                    except AssertionError as e:
                        raise AssertionError("%s: %s" % (what, e))
                    died = True
                    break
                if not died:
                    # nothing unasked for, no descriptor kept but for
                    # the open messages, and still answering
                    assert q.listener.recv(0.3) is None, what
                    held = [f for f in queue_fds(q) if f.startswith("/tmp/")]
                    assert len(held) == len(model.sessions), (what, held)
                    msgid, fd = q.create(99)
                    os.close(fd)
                    q.listener.send("IMSG_MSG_ABORT", 99, "s", msgid)
                    assert q.alive(), what
                deaths += died
            finally:
                model.close_fds()
                q.close()
            check_queue(d, model, q)
        assert tree(d.dir, skip) == before, "files outside the queue"
        print("# seed %d: %d requests, %d runs ended by a fatal one, "
              "%d messages committed" % (seed, steps, deaths,
                                         len(model.committed)))
    finally:
        d.stop()


SHIM = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "shim", "enospc.so")


def stage(q, sid, data):
    """A message up to its commit: its msgid and the listener's fd."""
    msgid, fd = q.create(sid)
    os.write(fd, data)
    q.envelope(sid, msgid)
    q.rcpt(sid, msgid)
    return msgid, fd


def commit_together(q, staged):
    """The commits of staged {sid: msgid} in one write, so that [queue]
    reads them at once; their results by sid."""
    q.listener.send_frames([q.listener.frame("IMSG_MSG_COMMIT", sid, "s", m)
                            for sid, m in staged.items()])
    results = {}
    while len(results) < len(staged):
        t, peer, data, fd = q.answer(20)
        assert (t, fd) == ("IMSG_MSG_RESULT", None), (t, peer)
        result, msgid = unpack("us", data)
        assert staged.get(peer) == msgid and peer not in results, \
            (peer, msgid, staged)
        results[peer] = result
    return results


def t_queue_ipc_group_commit_shares_directory_fsync():
    """Four commits read at once are one batch: each message file, its
    envelope at its head, is synced and renamed into queue/, then queue/
    is synced once for all four, and only after that sync does any result
    go to the listener."""
    from strace import Tracer

    def body(d, q):
        staged, fds = {}, []
        for sid in range(1, 5):
            msgid, fd = stage(q, sid, mail("batch-%d" % sid, 2000 * sid))
            staged[sid] = msgid
            fds.append(fd)
        tracer = Tracer(d, [q.proc.pid], "fsync,fdatasync,rename,sendmsg")
        try:
            results = commit_together(q, staged)
        finally:
            calls = tracer.stop()
        for fd in fds:
            os.close(fd)
        assert all(r == QUEUE_OK for r in results.values()), results
        dirsyncs = [c for c in calls if c.name == "fsync" and c.ret == 0 and
                    re.search(r"/queue/queue>", c.args)]
        assert len(dirsyncs) == 1, "queue/ synced %d times for one batch: " \
            "%s" % (len(dirsyncs), dirsyncs)
        sync = dirsyncs[0]
        # the listener hears only through sendmsg(2) (common/ipc.c)
        replies = [c for c in calls if c.name == "sendmsg" and c.ret > 0]
        assert replies and min(c.start for c in replies) >= sync.end, \
            "a result went out before queue/ was synced: %s" % replies[:3]
        for sid, msgid in staged.items():
            done = [c for c in calls if c.name == "fdatasync" and
                    c.ret == 0 and "/tmp/%s.msg>" % msgid in c.args]
            moved = [c for c in calls if c.name.startswith("rename") and
                     c.ret == 0 and "queue/%s.msg" % msgid in c.args]
            assert done and moved, (msgid, done, moved)
            assert done[-1].end <= moved[0].start <= sync.start, \
                "%s: synced %s, renamed %s, queue/ synced %s" % (
                    msgid, done[-1], moved[0], sync)
            head, text = queued_parts(os.path.join(d.queue, "queue",
                                                   msgid + ".msg"))
            assert head is not None and "\nid %s\n" % msgid in head, head
            assert text == mail("batch-%d" % sid, 2000 * sid), msgid
            # one file a message: no envelope file synced or renamed in
            # the commit (a deferral may write one after it)
            envs = [c for c in calls if ".env" in c.args and
                    c.start < sync.end]
            assert not envs, envs[:3]
    run(body)


def t_queue_ipc_group_commit_failure_fails_only_its_message():
    """Of three commits read at once, the one whose file cannot be synced
    (EIO, from regress/shim/enospc.so) gets a temporary failure and
    leaves nothing behind; the two others are committed and delivered."""
    if not os.path.exists(SHIM):
        raise Skip("%s not built (make regress/shim/enospc.so)" % SHIM)
    bad = mail("failing-%d" % os.getpid(), 3000)

    def body(d, q):
        staged, fds = {}, []
        for sid, data in ((1, mail("good-one-%d" % os.getpid(), 500)),
                          (2, bad),
                          (3, mail("good-two-%d" % os.getpid(), 9000))):
            msgid, fd = stage(q, sid, data)
            staged[sid] = msgid
            fds.append(fd)
        results = commit_together(q, staged)
        for fd in fds:
            os.close(fd)
        assert results == {1: QUEUE_OK, 2: QUEUE_R_TEMP, 3: QUEUE_OK}, \
            (results, q.log())
        assert re.search(r"message %s: commit failed: Input/output error" %
                         staged[2], q.log()), q.log()
        names = sorted(os.path.basename(f) for f in d.queue_files("queue"))
        # (an ID.env only once a deferral rewrote the envelope)
        assert [n for n in names if n.endswith(".msg")] == sorted(
            "%s.msg" % staged[s] for s in (1, 3)), names
        assert all(n[:-4] + ".msg" in names for n in names
                   if n.endswith(".env")), names
        # (the two others may be in tmp/ too, their envelopes rewritten
        # as the relay host is down)
        left = [f for f in d.queue_files() if staged[2] in f]
        assert not left, left
        d.upstream.start()
        for tag in (b"good-one-%d" % os.getpid(),
                    b"good-two-%d" % os.getpid()):
            d.wait_message(tag, timeout=20)
        assert not [m for m in d.upstream.messages()
                    if b"failing-" in m.eml], "the failed one was relayed"
    run(body, env={"LD_PRELOAD": SHIM,
                   "SMSUBMIT_EIO_SIZE": str(len(bad)),
                   "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") +
                   ":verify_asan_link_order=0"})


def t_queue_ipc_delivered_files_are_reused_empty():
    """A delivered message's files are kept as spares, not unlinked, and
    emptied (cut, or zeroed where the file system can): no copy of its
    text stays, and once queue/ has been synced after the removal a later
    commit writes into the same inode instead of allocating one, and the
    message read back is exactly the new one (smtpd/spare.c)."""
    def body(d, q):
        tag = "reused-%d" % os.getpid()
        first, fd = q.submit(1, mail(tag, 4000))
        os.close(fd)
        inode = os.stat(os.path.join(d.queue, "queue",
                                     first + ".msg")).st_ino
        d.upstream.start()
        d.wait_message(tag.encode(), timeout=20)
        wait_for(lambda: not d.queue_files("queue"), 20,
                 lambda: "still queued: %s" % d.queue_files("queue"))
        spares = d.spares()
        assert spares and all(blank(f) for f in spares), \
            [(f, os.path.getsize(f)) for f in spares]
        assert not [f for f in d.queue_files() if os.path.isfile(f) and
                    tag.encode() in open(f, "rb").read()]
        # a sync of queue/ settles the spare (a second after the removal,
        # or the next commit's): the second commit or the third reuses it
        d.upstream.stop()
        inodes = []
        for sid in (2, 3):
            # shorter than the spare: nothing of it may show after
            msgid, fd = q.submit(sid, mail("later-%d" % sid, 1000))
            os.close(fd)
            inodes.append(os.stat(os.path.join(d.queue, "queue",
                                               msgid + ".msg")).st_ino)
            assert queued(d, msgid) == mail("later-%d" % sid, 1000)
        assert inode in inodes, "later messages in inodes %s, the " \
            "delivered one's was %d" % (inodes, inode)
    run(body)


def t_queue_ipc_large_delivered_file_gives_its_blocks_back():
    """A spare keeps its blocks only when small (smtpd/spare.c, zeroed
    rather than cut): the file of a delivered 200 KB message is cut to
    nothing, so spares never hold more than 128 * 64 KiB of disk."""
    def body(d, q):
        tag = "large-%d" % os.getpid()
        msgid, fd = q.submit(1, mail(tag, 200 * 1024))
        os.close(fd)
        d.upstream.start()
        d.wait_message(tag.encode(), timeout=20)
        wait_for(lambda: not d.queue_files("queue"), 20,
                 lambda: "still queued: %s" % d.queue_files("queue"))
        sizes = [os.path.getsize(f) for f in d.spares()]
        assert sizes and max(sizes) <= 64 * 1024, sizes
        assert all(blank(f) for f in d.spares())
    run(body, conf={"limit message-size": "1M"})


def slow_commit(body, ms, tag):
    """body(d, q, msgid, data) runs while the commit of message data from
    session 1 is asleep in the syncer's fdatasync() (the shim's slow disk
    makes its syncs nap ms), then its "ok" must come and it is queued."""
    if not os.path.exists(SHIM):
        raise Skip("%s not built (make regress/shim/enospc.so)" % SHIM)
    data = mail("%s-%d" % (tag, os.getpid()), 5000)

    def run_body(d, q):
        msgid, fd = stage(q, 1, data)
        q.listener.send("IMSG_MSG_COMMIT", 1, "s", msgid)
        time.sleep(0.3)
        body(d, q)
        t, peer, result, _ = q.answer(10)
        assert (t, peer) == ("IMSG_MSG_RESULT", 1), (t, peer)
        assert tuple(unpack("us", result)) == (QUEUE_OK, msgid), \
            unpack("us", result)
        assert queued(d, msgid) == data
        os.close(fd)
    run(run_body, env={
        "LD_PRELOAD": SHIM, "SMSUBMIT_SLOW_SIZE": str(len(data)),
        "SMSUBMIT_SLOW_MS": str(ms),
        "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") +
        ":verify_asan_link_order=0"})


def t_queue_ipc_requests_answered_while_a_batch_syncs():
    """While a commit waits for the disk (its fdatasync() made to take 2 s
    by regress/shim/enospc.so), [queue] still answers: another session
    gets its file at once, and the slow commit still ends in "ok"
    (smtpd/syncer.c: the loop never waits in fsync)."""
    def body(d, q):
        t0 = time.monotonic()
        _, fd = q.create(2)
        took = time.monotonic() - t0
        os.close(fd)
        assert took < 1.0, "a file took %.2f s behind a slow commit" % took
    slow_commit(body, 2000, "slow")


def t_queue_ipc_sigterm_answers_the_batch_being_synced():
    """SIGTERM while a batch is being synced: [queue] lets the sync end,
    sends its "ok" and only then exits 0, the message in queue/; a client
    is not left without the 250 for a message that is kept."""
    exited = []

    def body(d, q):
        os.kill(q.proc.pid, signal.SIGTERM)
        exited.append(q)
    slow_commit(body, 1500, "stopping")
    assert exited[0].proc.wait(10) == 0, exited[0].log()
