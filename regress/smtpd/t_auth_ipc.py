"""[auth] against a captured listener: the test plays the parent and the
listener of a re-executed `smsubmit -X auth` child and speaks the IPC
protocol to it.  A message not allowed in the exchange's state is fatal to
[auth] (it exits, and in the daemon the parent then stops everything), as
OpenSSH's monitor treats its unprivileged child."""

import os
import re
import time

from harness import USERS, Smsubmit
from ipcpeer import PROC_SMTP, Child, unpack

AUTH_R_BADCREDS, AUTH_R_BADMECH, AUTH_R_BADB64, AUTH_R_TEMP = 1, 2, 3, 4


class AuthChild(Child):
    """`smsubmit -X auth`, with the test as its parent and listener."""

    def __init__(self, d):
        Child.__init__(self, d, "auth", PROC_SMTP)
        self.listener = self.peer
        m = self.listener.recv(10)
        assert m and m[0] == "IMSG_AUTH_MECHS", (m, self.log())
        self.mechs = unpack("s", m[2])[0]
        self.ready()

    def start(self, sid, mech, ir=None, client="192.0.2.1",
              local="192.0.2.254;465"):
        self.listener.send("IMSG_AUTH_START", sid, "ssuss", mech,
                           ir or "", 1 if ir is not None else 0, client,
                           local)

    def answer(self, timeout=5):
        m = self.listener.recv(timeout)
        assert m is not None, "no answer; log:\n" + self.log()
        return m[:3]

    def final(self, timeout=5):
        """The answer that ends the exchange, past holds and bans."""
        while True:
            m = self.answer(timeout)
            if m[0] not in ("IMSG_AUTH_HOLD", "IMSG_AUTH_BAN"):
                return m


def child(conf=None, mechanisms="PLAIN LOGIN"):
    d = Smsubmit(start=False, conf=conf, mechanisms=mechanisms)
    return d, AuthChild(d)


def b64(s):
    import base64
    return base64.b64encode(s.encode()).decode()


def plain(user, pw):
    return b64("\0%s\0%s" % (user, pw))


def run(conf, body, mechanisms="PLAIN LOGIN"):
    d, a = child(conf, mechanisms)
    try:
        body(a)
    finally:
        a.close()
        d.stop()


def t_auth_ipc_step_without_start_is_fatal():
    def body(a):
        a.listener.send("IMSG_AUTH_STEP", 7, "s", b64("alice"))
        a.dies(r"message \d+ from listener for session 00000007 with "
               r"no exchange")
    run(None, body)


def t_auth_ipc_start_while_exchange_open_is_fatal():
    def body(a):
        a.start(8, "LOGIN")
        assert a.answer()[0] == "IMSG_AUTH_CONTINUE"
        a.start(8, "LOGIN")
        a.dies(r"for session 00000008 with a challenge out")
    run(None, body)


def t_auth_ipc_step_while_failure_held_is_fatal():
    for late in ("IMSG_AUTH_STEP", "IMSG_AUTH_START"):
        def body(a):
            a.start(9, "PLAIN", plain("alice", "wrong"))
            t, peer, data = a.answer()
            assert (t, peer) == ("IMSG_AUTH_HOLD", 9), (t, peer)
            assert unpack("u", data) == [2]
            if late == "IMSG_AUTH_STEP":
                a.listener.send(late, 9, "s", b64("x"))
            else:
                a.start(9, "PLAIN", plain("alice", USERS["alice"]))
            a.dies(r"for session 00000009 with a failure held")
        run({"auth delay": "2s to 2s"}, body)


def t_auth_ipc_mechanism_not_enabled_is_fatal():
    """CRAM-MD5 is in Cyrus's mech_list but not in `auth mechanisms`."""
    def body(a):
        assert "CRAM-MD5" not in a.mechs.split(), a.mechs
        a.start(10, "CRAM-MD5")
        a.dies(r"session 0000000a: mechanism not offered")
    run(None, body)


def t_auth_ipc_bad_client_address_is_fatal():
    def body(a):
        a.start(11, "PLAIN", plain("alice", "wrong"),
                client="192.0.2.1 user=root")
        a.dies(r"session 0000000b: bad client address")
    run(None, body)


def t_auth_ipc_unknown_message_is_fatal():
    def body(a):
        # a parent-only message from the listener
        a.listener.send("IMSG_AUTH_FAILURE", 0, "ss", "192.0.2.1", "bob")
        a.dies(r"unexpected message \d+ from listener")
    run(None, body)


def t_auth_ipc_end_cancels_held_failure_and_is_confirmed():
    def body(a):
        a.start(12, "PLAIN", plain("alice", "wrong"))
        assert a.answer()[0] == "IMSG_AUTH_HOLD"
        a.listener.send("IMSG_AUTH_END", 12)
        t, peer, data = a.answer()
        assert (t, peer, data) == ("IMSG_AUTH_ENDED", 12, b""), (t, peer)
        # the held failure is gone with its exchange: nothing more
        assert a.listener.recv(3) is None
        # and the session may start again
        a.start(12, "PLAIN", plain("alice", USERS["alice"]))
        t, peer, data = a.answer()
        assert (t, peer) == ("IMSG_AUTH_OK", 12), (t, peer)
        # an END for no exchange (a race the listener cannot avoid) is
        # confirmed too
        a.listener.send("IMSG_AUTH_END", 13)
        assert a.answer()[:2] == ("IMSG_AUTH_ENDED", 13)
        assert a.alive()
    run({"auth delay": "2s to 2s"}, body)


def t_auth_ipc_banned_address_refused_by_auth_itself():
    """After the ban, [auth] checks no password for that address, whatever
    the listener does with the ban; other addresses still log in."""
    def body(a):
        for sid in (20, 21):
            a.start(sid, "PLAIN", plain("alice", "wrong"),
                    client="198.51.100.7")
            seen = []
            while not seen or seen[-1] != "IMSG_AUTH_FAIL":
                seen.append(a.answer()[0])
        assert "IMSG_AUTH_BAN" in seen, seen
        a.start(22, "PLAIN", plain("alice", USERS["alice"]),
                client="198.51.100.7")
        t, peer, data = a.final()
        assert (t, unpack("u", data)) == ("IMSG_AUTH_FAIL",
                                          [AUTH_R_BADCREDS]), t
        a.start(23, "PLAIN", plain("alice", USERS["alice"]),
                client="198.51.100.8")
        assert a.answer()[:2] == ("IMSG_AUTH_OK", 23)
        assert re.search(r"session 00000016 auth failed .*address banned",
                         a.log())
    run({"auth delay": "1s to 1s", "auth ban": "after 2 within 1m for 1m"},
        body)


def t_auth_ipc_failures_of_other_workers_count():
    """Failures another worker saw (relayed by the parent) count here: two
    of them ban the address in this worker too."""
    def body(a):
        for _ in range(2):
            a.parent.send("IMSG_AUTH_FAILURE", 0, "ss", "203.0.113.5",
                          "alice")
        time.sleep(0.5)     # two channels: no order between them
        a.start(30, "PLAIN", plain("alice", USERS["alice"]),
                client="203.0.113.5")
        t, peer, data = a.final()
        assert (t, unpack("u", data)) == ("IMSG_AUTH_FAIL",
                                          [AUTH_R_BADCREDS]), t
        # the parent may send nothing else
        a.parent.send("IMSG_AUTH_BAN", 0, "su", "203.0.113.5", 60)
        a.dies(r"unexpected message \d+ from parent")
    run({"auth delay": "1s to 1s", "auth ban": "after 2 within 1m for 1m",
         "auth workers": "2"}, body)


def t_auth_ipc_random_sequences_follow_protocol_or_exit():
    """A stateful fuzzer: random well-formed and out-of-state messages for
    a few sessions, checked against a model of the exchange's states.
    [auth] must answer exactly as the model says while every message is
    allowed, and exit at the first one that is not."""
    import random
    seed = int(os.environ.get("FUZZ_SEED", time.time()))
    rnd = random.Random(seed)
    actions = ("login", "plain-bad", "plain-good", "step", "end",
               "cram", "bogus")
    conf = {"auth delay": "10s to 10s"}   # a held failure stays held
    deaths = steps = 0
    d = Smsubmit(start=False, conf=conf)
    try:
        for run_no in range(12):
            a = AuthChild(d)
            state = {}      # sid -> ("step", stage) | ("held",)
            died = False
            try:
                for _ in range(30):
                    steps += 1
                    sid = rnd.randint(1, 3)
                    st = state.get(sid)
                    if rnd.random() < 0.95:
                        # mostly what a listener may send, to go deep
                        act = rnd.choice(
                            ("login", "plain-bad", "plain-good", "end")
                            if st is None else ("step", "step", "end")
                            if st[0] == "step" else ("end",))
                    else:
                        act = rnd.choice(actions)
                    what = "seed %d run %d: %s for %d in %r" % (
                        seed, run_no, act, sid, st)
                    if act in ("login", "plain-bad", "plain-good"):
                        if act == "login":
                            a.start(sid, "LOGIN")
                        else:
                            a.start(sid, "PLAIN", plain(
                                "alice", "wrong" if act == "plain-bad"
                                else USERS["alice"]))
                        if st is not None:
                            a.dies(r"for session %08x with" % sid)
                            died = True
                            break
                        t = a.answer()[:2]
                        want = {"login": "IMSG_AUTH_CONTINUE",
                                "plain-bad": "IMSG_AUTH_HOLD",
                                "plain-good": "IMSG_AUTH_OK"}[act]
                        assert t == (want, sid), (what, t)
                        if act == "login":
                            state[sid] = ("step", 0)
                        elif act == "plain-bad":
                            state[sid] = ("held",)
                    elif act == "step":
                        stage = st[1] if st and st[0] == "step" else 0
                        a.listener.send("IMSG_AUTH_STEP", sid, "s",
                                        b64("alice" if stage == 0
                                            else USERS["alice"]))
                        if st is None or st[0] != "step":
                            a.dies(r"for session %08x with" % sid)
                            died = True
                            break
                        t = a.answer()[:2]
                        if stage == 0:
                            assert t == ("IMSG_AUTH_CONTINUE", sid), (what, t)
                            state[sid] = ("step", 1)
                        else:
                            assert t == ("IMSG_AUTH_OK", sid), (what, t)
                            del state[sid]
                    elif act == "end":
                        a.listener.send("IMSG_AUTH_END", sid)
                        assert a.answer()[:2] == ("IMSG_AUTH_ENDED", sid), \
                            what
                        state.pop(sid, None)
                    elif act == "cram":
                        a.start(sid, "CRAM-MD5")
                        a.dies(r"session %08x" % sid)
                        died = True
                        break
                    else:
                        a.listener.send("IMSG_MSG_CREATE", sid)
                        a.dies(r"unexpected message \d+ from listener")
                        died = True
                        break
                if not died:
                    # nothing left over: no answer without a request
                    assert a.listener.recv(0.3) is None, "seed %d" % seed
                    assert a.alive(), "seed %d" % seed
                deaths += died
            finally:
                a.close()
        print("# seed %d: %d messages, %d runs ended by a fatal message" % (
            seed, steps, deaths))
    finally:
        d.stop()
