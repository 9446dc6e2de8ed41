"""make bench, briefly: every row and figure comes out with a number."""

import math
import os
import subprocess
import sys

from harness import REPO, Skip, timeout

BENCH = os.path.join(REPO, "regress", "bench")
ROWS = ("c1", "s32", "p8", "big8")
FIGURES = ("msg/s", "MB/s", "e2e_msg/s", "p50_ms", "p99_ms", "cpu_ms/msg",
           "load_cpu_ms/msg", "machine_idle_%",
           "drain_s")
BODY = ("parse_MB/s", "parse_long_MB/s", "scan_MB/s", "scan_long_MB/s",
        "stuff_MB/s", "stuff_long_MB/s")
IDLE = 50


@timeout(90)
def t_bench_prints_every_row_with_numbers():
    for b in ("smtpload", "sink", "bodybench"):
        if not os.access(os.path.join(BENCH, b), os.X_OK):
            raise Skip("regress/bench/%s is not built (make regress "
                       "builds it)" % b)
    # bench.py directly: `make bench` would rebuild a sanitizer build
    env = dict(os.environ, BENCHTIME="1", BENCHIDLE=str(IDLE), PEER="",
               BENCHONLY="")
    p = subprocess.run([sys.executable, os.path.join(BENCH, "bench.py")],
                       capture_output=True, timeout=80, env=env, cwd=REPO)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, "exit %d: %s" % (
        p.returncode, p.stderr.decode(errors="replace")[-2000:])
    got = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3 and not line.startswith("#"):
            got[(f[0], f[1])] = f[2]
    for row in ROWS:
        for fig in FIGURES:
            v = got.get((row, fig))
            assert v is not None, "no %s %s in:\n%s" % (row, fig, out)
            x = float(v)
            # inf drain: the sink never got every accepted message
            assert math.isfinite(x) and x >= 0, "%s %s = %s" % (row, fig, v)
        assert float(got[(row, "msg/s")]) > 0, "%s: nothing accepted" % row
    row = "idle%d" % IDLE
    v = float(got[(row, "rss_KiB/session")])
    assert math.isfinite(v) and v > 0, "idle RSS/session = %s" % v
    # PSS moves with whatever else shares the pages (other daemons of
    # the same binary): only a number, not necessarily > 0 for 50
    v = float(got[(row, "pss_KiB/session")])
    assert math.isfinite(v), "idle PSS/session = %s" % v
    assert "# smsubmit %s: %d sessions held" % (row, IDLE) in out, out
    for fig in BODY:
        v = got.get(("body", fig))
        assert v is not None, "no body %s in:\n%s" % (fig, out)
        assert math.isfinite(float(v)) and float(v) > 0, "body %s = %s" % (
            fig, v)
    assert "errors" not in out, out
