#!/usr/bin/env python3
"""
run.py: `make regress`.  Runs the unit test binaries (regress/unit/t_*) and
the integration tests (functions t_* in regress/smtpd/t_*.py) and prints
TAP, then one line "N passed, N failed[, N skipped]".

    python3 regress/run.py [-v] [filter ...]

A filter is a substring of a test's name (or its module's, or a unit
binary's); only matching tests run.  REGRESS_KEEP=1 keeps the daemons'
directories.

An integration test is a function of one argument, the module's shared
daemon (harness.Smsubmit built from the module's CONF dict, started before
its first test and restarted if it dies), or of none, when it starts what it
needs itself.  It fails by raising, skips by raising harness.Skip, and has
a time limit: its `timeout` attribute or the module's TIMEOUT, else 60s.
"""

import importlib.util
import os
import signal
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))

import harness  # noqa: E402

DEFAULT_TIMEOUT = 60
UNIT_TIMEOUT = 120


class TestTimeout(Exception):
    pass


class Runner:
    def __init__(self, filters, verbose):
        self.filters = filters
        self.verbose = verbose
        self.n = 0
        self.passed = self.failed = self.skipped = 0

    def selected(self, *names):
        if not self.filters:
            return True
        return any(f in n for f in self.filters for n in names)

    def result(self, ok, name, diag=(), skip=None):
        self.n += 1
        if skip is not None:
            self.skipped += 1
            print("ok %d - %s # SKIP %s" % (self.n, name, skip))
        elif ok:
            self.passed += 1
            print("ok %d - %s" % (self.n, name))
        else:
            self.failed += 1
            print("not ok %d - %s" % (self.n, name))
        for line in diag:
            print("# " + line.rstrip())
        sys.stdout.flush()

    # --- unit tests: TAP binaries ---

    def unit(self):
        d = os.path.join(HERE, "unit")
        try:
            names = sorted(os.listdir(d))
        except FileNotFoundError:
            return
        for name in names:
            path = os.path.join(d, name)
            if not name.startswith("t_") or "." in name or \
                    not os.path.isfile(path) or not os.access(path, os.X_OK):
                continue
            if not self.selected("unit/" + name):
                continue
            self.unit_binary(name, path)

    def unit_binary(self, name, path):
        try:
            p = subprocess.run([path], capture_output=True,
                               timeout=UNIT_TIMEOUT, cwd=os.path.dirname(HERE))
            out, status = p.stdout.decode(errors="replace"), p.returncode
            err = p.stderr.decode(errors="replace")
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode(errors="replace")
            status, err = "timeout after %ds" % UNIT_TIMEOUT, ""
        seen = bad = 0
        pending = None  # a result line waits for the "#" lines after it

        def flush():
            if pending:
                self.result(*pending)

        for line in out.splitlines():
            if line.startswith("ok ") or line.startswith("not ok "):
                flush()
                ok = line.startswith("ok ")
                text = line.split(" - ", 1)[1] if " - " in line else line
                pending = (ok, "unit/%s: %s" % (name, text), [])
                seen += 1
                bad += not ok
            elif line.startswith("#") and pending:
                pending[2].append(line.lstrip("# "))
        flush()
        if status != 0 and not bad:
            self.result(False, "unit/%s" % name,
                        ["exit status %s after %d checks" % (status, seen)] +
                        err.splitlines()[-10:])
        elif seen == 0:
            self.result(False, "unit/%s" % name, ["no TAP output"])

    # --- integration tests ---

    def modules(self):
        d = os.path.join(HERE, "smtpd")
        for name in sorted(os.listdir(d)):
            if name.startswith("t_") and name.endswith(".py"):
                self.module(name[:-3], os.path.join(d, name))

    def module(self, modname, path):
        spec = importlib.util.spec_from_file_location("regress_" + modname,
                                                      path)
        try:
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        except Exception:
            if self.selected(modname):
                self.result(False, modname, traceback.format_exc()
                            .splitlines())
            return
        tests = [f for k, f in vars(mod).items() if k.startswith("t_") and
                 callable(f) and getattr(f, "__module__", "") == mod.__name__]
        tests = [f for f in tests if self.selected(modname, f.__name__)]
        shared = None
        try:
            for f in tests:
                shared = self.test(mod, f, shared)
        finally:
            if shared:
                shared.stop()
                problems = shared.take_problems()
                if problems:
                    self.result(False, "%s: the shared daemon at its stop" %
                                modname, [l for p in problems
                                          for l in p.splitlines()] +
                                ["daemon log (%s):" % shared.dir] +
                                ["  " + l for l in shared.final_log or []])

    def test(self, mod, f, shared):
        """Run one test; returns the module's shared daemon (possibly new)."""
        harness.created = []
        limit = getattr(f, "timeout", getattr(mod, "TIMEOUT",
                                              DEFAULT_TIMEOUT))
        wants = f.__code__.co_argcount > 0
        t0 = time.monotonic()
        diag, skip, ok = [], None, False
        signal.setitimer(signal.ITIMER_REAL, limit)
        try:
            if wants and (shared is None or not shared.healthy()):
                if shared:
                    shared.stop()
                shared = None
                shared = harness.Smsubmit(name=mod.__name__[8:],
                                          **getattr(mod, "CONF", {}))
            f(shared) if wants else f()
            ok = True
        except harness.Skip as e:
            skip = str(e) or "skipped"
        except TestTimeout:
            diag.append("timed out after %ds" % limit)
            diag += where(sys.exc_info()[2], mod)
        except Exception as e:
            diag += ("%s: %s" % (type(e).__name__, e)).splitlines()
            diag += where(sys.exc_info()[2], mod)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for c in list(harness.clients):
            c.close()
        harness.clients.clear()
        dead = None
        if wants and shared is not None and shared.proc is not None and \
                not shared.healthy():
            ok = False
            skip = None
            time.sleep(0.5)  # let the log catch up
            if shared.alive():
                diag.append("a child of the shared daemon died during the "
                            "test; children left: %s" % shared.children())
            else:
                diag.append("the shared daemon died during the test: exit "
                            "status %s" % shared.proc.returncode)
                shared.exit_seen = True
            # a new one for the next test; this one's reports are this test's
            shared.stop()
            dead, shared = shared, None
        daemons = list(harness.created)
        for s in (shared, dead):
            if wants and s is not None and s not in daemons:
                daemons.insert(0, s)
        for d in harness.created:
            if d is not shared:
                d.stop()
        # sanitizer reports, bad exit statuses: whatever the test said
        for d in daemons:
            problems = d.take_problems()
            if problems:
                ok, skip = False, None
                diag.append("%s daemon (%s):" % (d.name, d.dir))
                diag += ["  " + l for p in problems for l in p.splitlines()]
        if not ok and skip is None:
            for d in daemons:
                diag.append("%s daemon log (%s), last lines:" % (
                    d.name, d.dir))
                diag += ["  " + l for l in d.final_log or d.log_tail()]
        if self.verbose:
            diag.append("%.2fs" % (time.monotonic() - t0))
        self.result(ok, f.__name__, diag, skip)
        return shared


def where(tb, mod):
    """The test's own frames from a traceback: file:line: source."""
    out = []
    for fr in traceback.extract_tb(tb):
        if fr.filename == mod.__file__ or "regress/lib" in fr.filename:
            out.append("at %s:%d: %s" % (os.path.relpath(fr.filename, HERE),
                                         fr.lineno, fr.line))
    return out[-4:]


def on_alarm(sig, frame):
    raise TestTimeout()


def on_term(sig, frame):
    raise SystemExit("interrupted by signal %d" % sig)


def main():
    args = sys.argv[1:]
    verbose = "-v" in args
    filters = [a for a in args if a != "-v"]
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    r = Runner(filters, verbose)
    t0 = time.monotonic()
    try:
        r.unit()
        r.modules()
    finally:
        for d in list(harness.live):
            d.stop()
        harness.cleanup_credentials()
    print("# %.1fs" % (time.monotonic() - t0))
    print("1..%d" % r.n)
    summary = "%d passed, %d failed" % (r.passed, r.failed)
    if r.skipped:
        summary += ", %d skipped" % r.skipped
    print(summary)
    return 1 if r.failed or r.n == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
