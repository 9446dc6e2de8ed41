"""The children's seccomp sandboxes (smsubmit.8, SANDBOX): every child is
filtered with no_new_privs, and a forbidden call is fatal, named in the
parent's log, and takes the whole daemon down.  The violation is made by
smtpd/smsubmit-regress (built by `make regress`), whose listener obeys
an extra command, XSANDBOX, that calls open(2)."""

import contextlib
import os
import socket
import time

import harness
from harness import TITLES, Closed, Skip, Smsubmit, pid_alive, proc_status

REGRESS_BIN = os.path.join(os.path.dirname(harness.SMSUBMIT),
                           "smsubmit-regress")


def sandboxed(pid, wait=5):
    """Seccomp and NoNewPrivs of pid, once it is filtered (children
    enter their sandbox at the end of their set-up)."""
    deadline = time.monotonic() + wait
    while True:
        st = proc_status(pid)
        if st.get("Seccomp") == "2" or time.monotonic() > deadline:
            return st.get("Seccomp"), st.get("NoNewPrivs")
        time.sleep(0.05)


def t_sandbox_children_filtered(d):
    if not os.path.exists("/proc/self/status") or \
            "Seccomp" not in proc_status(os.getpid()):
        raise Skip("no Seccomp field in /proc/PID/status")
    kids = d.children()
    assert sorted(kids) == sorted(TITLES), kids
    for title, pid in sorted(kids.items()):
        seccomp, nnp = sandboxed(pid)
        assert seccomp == "2", "%s (%d): Seccomp %s, want 2 (filter)" % (
            title, pid, seccomp)
        assert nnp == "1", "%s (%d): NoNewPrivs %s" % (title, pid, nnp)
    # The above holds as well when the runner is itself filtered (the
    # children would inherit it): the filter must be the daemon's, one
    # more than the runner and the daemon's parent process have.
    mine = proc_status(os.getpid()).get("Seccomp_filters")
    if mine is None:
        raise Skip("no Seccomp_filters in /proc/PID/status (Linux < 5.9)")
    parent = proc_status(d.pid).get("Seccomp_filters")
    assert parent == mine, "the parent has %s filters, the runner %s" % (
        parent, mine)
    for title, pid in sorted(kids.items()):
        n = proc_status(pid).get("Seccomp_filters")
        assert int(n) == int(mine) + 1, "%s (%d): %s seccomp filters, the " \
            "runner %s: not one of its own" % (title, pid, n, mine)


@contextlib.contextmanager
def binary(path):
    """Start daemons from another build while inside."""
    saved = harness.SMSUBMIT
    harness.SMSUBMIT = path
    try:
        yield
    finally:
        harness.SMSUBMIT = saved


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


@harness.timeout(60)
def t_sandbox_violation_kills_daemon():
    """XSANDBOX makes the listener call open(2): the kernel stops it, the
    parent logs the call by name, all four processes go, non-zero exit,
    nothing is left listening."""
    if not os.access(REGRESS_BIN, os.X_OK):
        raise Skip("%s not built (make smtpd/smsubmit-regress)" %
                   REGRESS_BIN)
    with binary(REGRESS_BIN):
        d = Smsubmit()
    with d:
        kids = d.children()
        assert sorted(kids) == sorted(TITLES), kids
        assert sandboxed(kids["[smtp]"])[0] == "2", "listener not filtered"
        pids = [d.pid] + list(kids.values())
        # a session on each listener, to see both cut off
        c = d.client("starttls")
        other = d.session("tls")
        c.ehlo()
        c.line("XSANDBOX")
        try:
            r = c.reply(timeout=5)
            raise AssertionError("the listener answered XSANDBOX: %s" % r)
        except Closed:
            pass
        d.wait_log(r"smtp process killed by its sandbox: forbidden "
                   r"system call openat\b", 10)
        try:
            status = d.wait_exit(15)
        except AssertionError:
            raise AssertionError("the parent still runs 15s after the "
                                 "violation")
        assert status != 0, "exit status %d after a violation" % status
        deadline = time.monotonic() + 10
        while [p for p in pids if pid_alive(p)]:
            left = [(p, harness.proc_title(p)) for p in pids
                    if pid_alive(p)]
            assert time.monotonic() < deadline, \
                "still running 10s after the violation: %s" % left
            time.sleep(0.1)
        for port in (d.tls_port, d.starttls_port):
            assert refused(port), "something still listens on %d" % port
        assert other.closed(3), "the other session is still open"
        assert "let it through" not in d.log(), "open(2) was allowed"


def violation(arg, pattern):
    """XSANDBOX arg on the listener: no answer, pattern in the log, the
    daemon gone with a non-zero status."""
    if not os.access(REGRESS_BIN, os.X_OK):
        raise Skip("%s not built (make smtpd/smsubmit-regress)" %
                   REGRESS_BIN)
    with binary(REGRESS_BIN):
        d = Smsubmit(name="sandbox")
    with d:
        c = d.session("tls")
        c.line("XSANDBOX " + arg)
        try:
            r = c.reply(timeout=5)
            raise AssertionError("XSANDBOX %s answered: %s" % (arg, r))
        except Closed:
            pass
        d.wait_log(pattern, 10)
        status = d.wait_exit(15)
        assert status != 0, status
        assert "let it through" not in d.log()


def t_sandbox_executable_mapping_kills():
    """No code can be made executable after set-up (mmap PROT_EXEC)."""
    violation("EXEC", r"smtp process killed by its sandbox: forbidden "
              r"system call mmap\b")


def t_sandbox_listener_ioctl_kills():
    violation("IOCTL", r"smtp process killed by its sandbox: forbidden "
              r"system call ioctl\b")


def t_sandbox_listener_tgkill_kills():
    if harness.sanitized(REGRESS_BIN):
        raise Skip("the sanitizers' runtime needs tgkill")
    violation("KILL", r"smtp process killed by its sandbox: forbidden "
              r"system call tgkill\b")


def t_sandbox_foreign_abi_kills():
    """A call through the i386 ABI (other numbers) does not slip past the
    amd64 filter: the process is killed outright."""
    if os.uname().machine != "x86_64":
        raise Skip("only amd64 has the i386 ABI to test")
    violation("ARCH", r"smtp process killed by signal 31\b")


def limits(pid):
    """/proc/PID/limits as {name: (soft, hard)}."""
    out = {}
    with open("/proc/%d/limits" % pid) as f:
        for line in f.readlines()[1:]:
            name = line[:26].strip()
            soft, hard = line[26:].split()[:2]
            out[name] = (soft, hard)
    return out


def t_sandbox_children_cannot_fork(d):
    for title, pid in d.children().items():
        sandboxed(pid)
        lim = limits(pid)
        assert lim["Max processes"] == ("0", "0"), (title, lim)
