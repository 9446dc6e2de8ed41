"""strace(1) for the tests: attach to processes of the daemon, stop, and
read back what they called, each call with its start and end times."""

import os
import re
import select
import shutil
import signal
import subprocess
import time

from harness import Skip

LINE = re.compile(r"^(\d+)\s+(\d+\.\d+) (.*)$")
CALL = re.compile(r"^(\w+)\((.*)\) += (-?\d+)(?: [A-Z]\w*(?: \(.*\))?)? "
                  r"<([\d.]+)>$")


class Call:
    def __init__(self, pid, start, name, args, ret, dur):
        self.pid, self.start, self.name = pid, start, name
        self.args, self.ret, self.end = args, ret, start + dur

    def __repr__(self):
        return "%d %.6f-%.6f %s(%s) = %d" % (self.pid, self.start, self.end,
                                             self.name, self.args[:120],
                                             self.ret)


def parse(text):
    """strace -f -ttt -T -yy output as Calls, unfinished ones joined."""
    calls, pending = [], {}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        pid, ts, rest = int(m.group(1)), float(m.group(2)), m.group(3)
        if rest.endswith("<unfinished ...>"):
            pending[pid] = (ts, rest[:-len("<unfinished ...>")].rstrip())
            continue
        r = re.match(r"<\.\.\. \w+ resumed>(.*)$", rest)
        if r:
            if pid not in pending:
                continue
            ts, head = pending.pop(pid)
            rest = head + r.group(1)
        c = CALL.match(rest)
        if c:
            calls.append(Call(pid, ts, c.group(1), c.group(2),
                              int(c.group(3)), float(c.group(4))))
    return calls


class Tracer:
    """strace attached to some processes until stop()."""

    def __init__(self, d, pids, traced, strsize=0):
        """strsize: how many octets of each buffer strace shows."""
        if not shutil.which("strace"):
            raise Skip("strace not installed")
        self.out = os.path.join(d.dir, "strace.out")
        argv = ["strace", "-f", "-ttt", "-T", "-yy", "-s", str(strsize), "-o",
                self.out, "-e", "trace=" + traced, "-e", "signal=none"]
        # strace -f reports each thread by its own id; Call.pid is the
        # process's (the queue has a second thread, its syncer)
        self.tgid = {}
        for pid in pids:
            argv += ["-p", str(pid)]
            for tid in os.listdir("/proc/%d/task" % pid):
                self.tgid[int(tid)] = pid
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE)
        err, attached = b"", 0
        deadline = time.monotonic() + 10
        while attached < len(pids):
            left = deadline - time.monotonic()
            if left <= 0 or self.p.poll() is not None:
                self.stop()
                text = err.decode(errors="replace")
                if "Operation not permitted" in text:
                    raise Skip("cannot trace the daemon: %s" % text.strip())
                raise AssertionError("strace did not attach: %s" % text)
            if select.select([self.p.stderr], [], [], left)[0]:
                err += os.read(self.p.stderr.fileno(), 4096)
                attached = len(re.findall(rb"Process \d+ attached", err))

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.p.stderr.close()
        try:
            with open(self.out) as f:
                calls = parse(f.read())
        except FileNotFoundError:
            return []
        for c in calls:
            c.tid, c.pid = c.pid, self.tgid.get(c.pid, c.pid)
        return calls
