"""Several [auth] workers (`auth workers`), the bounded wait for each
answer (`auth timeout`), and what one stuck worker costs."""

import os
import signal
import subprocess
import threading
import time

from harness import (SMSUBMIT, USERS, Smsubmit, b64, expect, proc_title)

TIMEOUT = 90


def auth_pids(d):
    with open("/proc/%d/task/%d/children" % (d.pid, d.pid)) as f:
        pids = [int(x) for x in f.read().split()]
    return [p for p in pids if "[auth]" in (proc_title(p) or "")]


def ready(d):
    c = d.client("tls")
    c.ehlo()
    return c


def plain(user, pw):
    return "AUTH PLAIN " + b64("\0%s\0%s" % (user, pw))


def t_auth_workers_default_four():
    with Smsubmit() as d:
        assert len(auth_pids(d)) == 4, auth_pids(d)
    with Smsubmit(conf={"auth workers": "2"}) as d:
        assert len(auth_pids(d)) == 2, auth_pids(d)


def t_auth_workers_and_timeout_config_bounds():
    for stmt in ("auth workers 0", "auth workers 17", "auth timeout 0s",
                 "auth timeout 2h"):
        d = Smsubmit(start=False)
        path = os.path.join(d.dir, "bad.conf")
        with open(path, "w") as f:
            f.write(d.conf_text + stmt + "\n")
        p = subprocess.run([SMSUBMIT, "-n", "-f", path],
                           capture_output=True, timeout=20)
        d.stop()
        assert p.returncode == 1, "%s accepted" % stmt
        assert b"bad.conf:" in p.stderr, p.stderr


def t_auth_ban_counts_failures_of_every_worker():
    """3 failures in 3 sessions, spread over 4 workers, ban the address:
    the workers share their counts."""
    with Smsubmit(conf={"auth ban": "after 3 within 1m for 1m"}) as d:
        for _ in range(3):
            c = ready(d)
            expect(c.cmd(plain("alice", "wrong")), 535, "5.7.8")
            c.quit()
        d.wait_log(r"banned 127\.0\.0\.1 for 60s")
        c = d.client("starttls", greet=False)
        expect(c.reply(timeout=5), 421, "4.7.0")


def login(d, out, i):
    t0 = time.monotonic()
    try:
        c = ready(d)
        r = c.cmd(plain("alice", USERS["alice"]), timeout=30)
        took = time.monotonic() - t0
        # after a 454 the session goes on: it answers, unauthenticated
        after = None
        if r.code == 454:
            n = c.cmd("NOOP")
            m = c.cmd("MAIL FROM:<alice@example.org>")
            after = (n.code, n.enh, m.code, m.enh)
        out[i] = (r.code, r.enh, took, after)
        c.close()
    except Exception as e:  # noqa: BLE001 - reported by the test
        out[i] = (None, repr(e), time.monotonic() - t0, None)


def t_auth_stuck_worker_costs_only_its_sessions():
    """SIGSTOP one of two workers: a login it holds gets 454 4.7.0 after
    `auth timeout`, the others are served by the other worker at once; on
    SIGCONT its late answers are dropped and all logins work."""
    bound = 2
    with Smsubmit(conf={"auth workers": "2",
                        "auth timeout": "%ds" % bound}) as d:
        stopped = auth_pids(d)[0]
        os.kill(stopped, signal.SIGSTOP)
        try:
            out = [None] * 6
            threads = [threading.Thread(target=login, args=(d, out, i))
                       for i in range(len(out))]
            for t in threads:
                t.start()
                time.sleep(0.05)
            for t in threads:
                t.join(30)
            print("# one of 2 workers stopped: %s" % ", ".join(
                "%s in %.2fs" % (o[0], o[2]) for o in out))
            codes = [o[0] for o in out]
            assert set(codes) <= {235, 454}, out
            assert 235 in codes and 454 in codes, out
            for code, enh, took, after in out:
                if code == 454:
                    assert enh == "4.7.0" and bound - 0.2 < took < bound + 2, \
                        out
                    assert after == (250, "2.0.0", 530, "5.7.0"), out
                else:
                    assert took < 1.5, out
            # a new login goes to the worker that answers
            c = ready(d)
            t0 = time.monotonic()
            expect(c.cmd(plain("alice", USERS["alice"])), 235, "2.7.0")
            assert time.monotonic() - t0 < 1.5
            c.quit()
        finally:
            os.kill(stopped, signal.SIGCONT)
        d.wait_log(r"late answer \d+ from auth \d dropped")
        time.sleep(0.5)
        for _ in range(4):
            c = ready(d)
            expect(c.cmd(plain("alice", USERS["alice"])), 235, "2.7.0")
            c.quit()
        assert d.alive()


def t_auth_timeout_waits_for_a_held_failure():
    """A failure held by `auth delay` longer than `auth timeout` still
    gets its 535, not a 454: [auth] says it is holding it."""
    with Smsubmit(conf={"auth delay": "3s to 3s",
                        "auth timeout": "1s"}) as d:
        c = ready(d)
        t0 = time.monotonic()
        expect(c.cmd(plain("alice", "wrong"), timeout=10), 535, "5.7.8")
        took = time.monotonic() - t0
        assert 2.8 < took < 4.5, "535 after %.1fs" % took
        expect(c.cmd(plain("alice", USERS["alice"])), 235, "2.7.0")


def t_auth_no_worker_free_gives_454_at_once():
    """SPEC 5, "auth process unavailable": with its one worker stopped
    and owing as many answers as it may (listener.c WORKER_QUEUE_MAX,
    128), the next AUTH gets 454 4.7.0 at once, not after `auth
    timeout`, and the session goes on; once the worker runs again,
    logins work."""
    queue_max = 128
    with Smsubmit(conf={"auth workers": "1", "auth timeout": "60s",
                        "limit sessions": "300",
                        "limit sessions-per-address": "300",
                        "limit sessions-per-network": "300"}) as d:
        stopped = auth_pids(d)[0]
        os.kill(stopped, signal.SIGSTOP)
        held = []
        try:
            for _ in range(queue_max):
                c = ready(d)
                c.send((plain("alice", USERS["alice"]) + "\r\n").encode())
                held.append(c)
            # the last of them has reached the listener once it answers
            # the next session's EHLO after them
            c = ready(d)
            t0 = time.monotonic()
            r = c.cmd(plain("alice", USERS["alice"]), timeout=30)
            took = time.monotonic() - t0
            expect(r, 454, "4.7.0")
            assert took < 30, "454 after %.1fs: the timeout's" % took
            d.wait_log(r"session [0-9a-f]{8} no auth worker free for it")
            expect(c.cmd("NOOP"), 250, "2.0.0")
            expect(c.cmd("MAIL FROM:<alice@example.org>"), 530, "5.7.0")
            c.close()
        finally:
            os.kill(stopped, signal.SIGCONT)
        # the worker catches up: each held login is answered
        for c in held:
            expect(c.reply(timeout=30), 235, "2.7.0")
            c.close()
        c = ready(d)
        expect(c.cmd(plain("alice", USERS["alice"]), timeout=30), 235,
               "2.7.0")
        c.quit()
        assert d.alive()
