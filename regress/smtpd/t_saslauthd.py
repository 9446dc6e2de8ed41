"""Logins through the real saslauthd (Cyrus sasl2-bin), and what a stopped
saslauthd costs: a bounded wait (`auth timeout`), 454 4.7.0, and nothing
for the sessions that do not wait on it."""

import os
import secrets
import shutil
import signal
import subprocess
import threading
import time

from harness import (Skip, Smsubmit, b64, expect, need_root, pid_alive,
                     run)

TIMEOUT = 120
BOUND = 3           # `auth timeout` in these tests, seconds
PASSWORD = "Sasl-auth-d-pw-1"


class Saslauthd:
    """saslauthd -a shadow on its own socket directory, for a system user
    made for the test and removed after it."""

    def __init__(self):
        need_root()
        if shutil.which("saslauthd") is None:
            raise Skip("saslauthd (sasl2-bin) not installed")
        self.user = "smsat%s" % secrets.token_hex(3)
        run(["useradd", "-M", "-d", "/nonexistent", "-s",
             "/usr/sbin/nologin", self.user])
        self.proc = None
        try:
            run(["chpasswd"], input=("%s:%s\n" % (self.user, PASSWORD))
                .encode())
            self.dir = "/run/smsubmit-saslauthd-%s" % self.user
            os.mkdir(self.dir, 0o755)
            # -n 0: one process accepts and forks per request, so a
            # SIGSTOP to it stops every answer
            self.proc = subprocess.Popen(
                ["saslauthd", "-d", "-a", "shadow", "-n", "0", "-m",
                 self.dir], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                # it signals its whole process group when it exits
                start_new_session=True)
            self.mux = os.path.join(self.dir, "mux")
            deadline = time.monotonic() + 10
            while not os.path.exists(self.mux):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("saslauthd did not start")
                time.sleep(0.05)
        except BaseException:
            self.close()
            raise

    def sasl_conf(self):
        return ("pwcheck_method: saslauthd\n"
                "saslauthd_path: %s\n"
                "mech_list: PLAIN LOGIN\n" % self.mux)

    def stop(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def cont(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def close(self):
        if self.proc is not None:
            if pid_alive(self.proc.pid):
                os.kill(self.proc.pid, signal.SIGCONT)
                self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(getattr(self, "dir", "/nonexistent-dir"),
                      ignore_errors=True)
        run(["userdel", self.user], check=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def daemon(sa, workers=4):
    d = Smsubmit(start=False, conf={"auth timeout": "%ds" % BOUND,
                                    "auth workers": str(workers)})
    with open(os.path.join(d.dir, "sasl", "smsubmit.conf"), "w") as f:
        f.write(sa.sasl_conf())
    d.start()
    return d


def ready(d):
    c = d.client("tls")
    c.ehlo()
    return c


def plain(user, password):
    return "AUTH PLAIN " + b64("\0%s\0%s" % (user, password))


def t_saslauthd_plain_and_login():
    with Saslauthd() as sa, daemon(sa) as d:
        c = ready(d)
        expect(c.cmd(plain(sa.user, "wrong")), 535, "5.7.8")
        expect(c.cmd(plain(sa.user, PASSWORD)), 235, "2.7.0")
        expect(c.cmd("MAIL FROM:<%s@example.org>" % sa.user), 250, "2.1.0")
        c.quit()
        c = ready(d)
        expect(c.cmd("AUTH LOGIN"), 334)
        expect(c.cmd(b64(sa.user)), 334)
        expect(c.cmd(b64(PASSWORD)), 235, "2.7.0")
        c.quit()
        d.wait_log(r"authenticated user=%s mechanism=LOGIN" % sa.user)


def timed_login(d, user, out, i):
    t0 = time.monotonic()
    try:
        c = ready(d)
        r = c.cmd(plain(user, PASSWORD), timeout=BOUND + 30)
        out[i] = (r.code, r.enh, time.monotonic() - t0)
        c.close()
    except Exception as e:  # noqa: BLE001 - reported by the test
        out[i] = (None, repr(e), time.monotonic() - t0)


def t_saslauthd_stopped_gives_454_within_bound_others_served():
    """SIGSTOP saslauthd: 8 concurrent logins each get 454 4.7.0 within
    `auth timeout` (plus scheduling slack); meanwhile new sessions are
    greeted and served, an authenticated session submits, and after
    SIGCONT logins work again."""
    n = 8
    with Saslauthd() as sa, daemon(sa) as d:
        before = ready(d)
        expect(before.cmd(plain(sa.user, PASSWORD)), 235, "2.7.0")
        sa.stop()
        out = [None] * n
        threads = [threading.Thread(target=timed_login,
                                    args=(d, sa.user, out, i))
                   for i in range(n)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        # while they wait: a new session is greeted and answered at once,
        # and one authenticated before the stop submits a message
        time.sleep(0.5)
        served = []
        for _ in range(3):
            s0 = time.monotonic()
            c = ready(d)
            expect(c.cmd("NOOP"), 250, "2.0.0")
            expect(c.cmd("MAIL FROM:<x@example.org>"), 530, "5.7.0")
            c.quit()
            served.append(time.monotonic() - s0)
        s0 = time.monotonic()
        qid = before.send_message("%s@example.org" % sa.user,
                                  ["bob@example.org"],
                                  "Subject: during the stop\r\n\r\nhi\r\n")
        submit = time.monotonic() - s0
        for t in threads:
            t.join(BOUND + 40)
        total = time.monotonic() - t0
        codes = [(o[0], o[1]) for o in out]
        waits = [o[2] for o in out]
        print("# %d logins on a stopped saslauthd: %s, waits %.2f..%.2fs, "
              "all in %.2fs (bound %ds); new sessions served in %s s; "
              "a submission in %.2fs" % (
                  n, sorted(set(codes)), min(waits), max(waits), total,
                  BOUND, ", ".join("%.2f" % x for x in served), submit))
        assert all(c == (454, "4.7.0") for c in codes), out
        assert max(waits) < BOUND + 2, "a login waited %.1fs" % max(waits)
        assert max(served) < 1, "a new session waited %.2fs" % max(served)
        assert submit < 2, "a submission waited %.2fs" % submit
        d.wait_message(qid)
        d.wait_log(r"no answer from auth( \d)? in %ds" % BOUND)
        sa.cont()
        # the stopped exchanges end, their late answers are dropped, and
        # logins work again
        deadline = time.monotonic() + 20
        while True:
            c = ready(d)
            r = c.cmd(plain(sa.user, PASSWORD), timeout=BOUND + 5)
            c.close()
            if r.code == 235 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        expect(r, 235, "2.7.0")
        assert d.alive(), "daemon died after SIGCONT"
        for _ in range(n):
            c = ready(d)
            expect(c.cmd(plain(sa.user, PASSWORD)), 235, "2.7.0")
            c.quit()
        assert d.alive()
