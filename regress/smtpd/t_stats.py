"""`smsubmit -s` prints the counters of the listener and the queue through
the control socket, and `smsubmit -s -o openmetrics` the same in the
OpenMetrics text format (smsubmit.8), which a real parser
(python3-prometheus-client's) reads back with the exact values of known
traffic."""

import os
import re
import sys
import time

import harness
from harness import USERS, Skip, Smsubmit, expect, message, unique

DEBIAN_PY = "/usr/lib/python3/dist-packages"


def control(d, *flags):
    p = harness.run([harness.SMSUBMIT] + list(flags) + ["-f", d.conf_path],
                    timeout=20, check=False)
    return p.returncode, p.stdout.decode(errors="replace"), \
        p.stderr.decode(errors="replace")


def parser():
    try:
        from prometheus_client.openmetrics import parser as p
    except ImportError:
        # the Debian package, under a python3 that is not Debian's
        if DEBIAN_PY not in sys.path and os.path.isdir(DEBIAN_PY):
            sys.path.append(DEBIAN_PY)
            return parser()
        raise Skip("python3-prometheus-client missing (apt-get install "
                   "python3-prometheus-client)")
    return p


def scrape(d):
    """{(sample name, frozenset of labels): value} from -s -o openmetrics,
    parsed by prometheus_client (which refuses anything not OpenMetrics:
    no # EOF, a counter without _total, a bad UNIT...)."""
    status, out, err = control(d, "-s", "-o", "openmetrics")
    assert status == 0, "-s -o openmetrics: exit %d: %s" % (status, err)
    assert out.endswith("# EOF\n"), out[-200:]
    fams = list(parser().text_string_to_metric_families(out))
    values = {}
    types = {}
    for f in fams:
        types[f.name] = f.type
        for s in f.samples:
            values[(s.name, frozenset(s.labels.items()))] = s.value
    return values, types, out


def v(values, name, **labels):
    return values.get((name, frozenset(labels.items())), 0)


def wait_idle(d, n_disconnects):
    d.wait_log(r"(?s)(smtp: session [0-9a-f]{8} disconnect.*){%d}"
               % n_disconnects)


def t_stats_openmetrics_exact_values():
    with Smsubmit() as d:
        before, types, _ = scrape(d)
        # what the harness's readiness probes did is in the baseline
        disc0 = len(re.findall(r"smtp: session [0-9a-f]{8} disconnect",
                               d.log()))
        assert types["smsubmit_sessions"] == "counter", types
        assert types["smsubmit_sessions_open"] == "gauge", types
        assert types["smsubmit_relay_latency_seconds"] == "summary", types
        assert v(before, "smsubmit_messages_accepted_total") == 0

        # session 1 (port 465): a failed AUTH, a good one, one message
        tag = unique("stats")
        c = d.client("tls")
        c.ehlo()
        expect(c.auth_plain("alice", "wrong"), 535, "5.7.8")
        expect(c.auth_plain("alice", USERS["alice"]), 235, "2.7.0")
        qid = c.send_message("alice@example.org", ["bob@example.org"],
                             message(tag))
        versions = [c.version()]
        c.quit()
        # session 2 (587): STARTTLS and a login, nothing sent
        c = d.client("starttls")
        c.ehlo()
        c.starttls()
        c.ehlo()
        expect(c.auth_plain("bob", USERS["bob"]), 235, "2.7.0")
        versions.append(c.version())
        c.quit()
        d.wait_message(tag)
        d.wait_log(r"message %s: delivered to 1 of 1" % qid)
        wait_idle(d, disc0 + 2)
        size = int(d.wait_log(r"message %s accepted: .* size=(\d+)"
                              % qid).group(1))

        after, _, out = scrape(d)

        def delta(name, **labels):
            return v(after, name, **labels) - v(before, name, **labels)

        assert delta("smsubmit_sessions_total") == 2, out
        assert v(after, "smsubmit_sessions_open") == 0, out
        tls = sum(delta("smsubmit_tls_handshakes_total", version=x)
                  for x in ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3",
                            "other"))
        assert tls == 2, out
        for ver in set(versions):
            assert delta("smsubmit_tls_handshakes_total", version=ver) == \
                versions.count(ver), (versions, out)
        assert delta("smsubmit_auth_successes_total") == 2, out
        assert delta("smsubmit_auth_failures_total") == 1, out
        # "auth delay 1s to 1s": the failure was held back
        assert delta("smsubmit_auth_throttled_total") == 1, out
        assert delta("smsubmit_auth_banned_total") == 0, out
        assert delta("smsubmit_refusals_total", code="535") == 1, out
        assert v(after, "smsubmit_messages_accepted_total") == 1, out
        assert v(after, "smsubmit_accepted_bytes_total") == size, out
        assert size >= len(message(tag)), (size, len(message(tag)))
        assert v(after, "smsubmit_queue_messages") == 0, out
        assert v(after, "smsubmit_queue_oldest_age_seconds") == 0, out
        assert v(after, "smsubmit_relay_attempts_total") == 1, out
        assert v(after, "smsubmit_relay_failures_total") == 0, out
        assert v(after, "smsubmit_relay_latency_seconds_count") == 1, out
        assert 0 < v(after, "smsubmit_relay_latency_seconds_sum") < 10, out
        assert v(after, "smsubmit_bounces_total") == 0, out


def t_stats_queue_depth_and_relay_failures():
    with Smsubmit(conf={"queue retry": "30s to 1m"}) as d:
        d.upstream.stop()
        qid = d.submit(message(unique("stq")))
        d.wait_log(r"message %s: 1 recipients deferred" % qid)
        values, _, out = scrape(d)
        assert v(values, "smsubmit_queue_messages") == 1, out
        assert 0 <= v(values, "smsubmit_queue_oldest_age_seconds") < 30, out
        assert v(values, "smsubmit_relay_attempts_total") == 1, out
        assert v(values, "smsubmit_relay_failures_total") == 1, out


def t_stats_text_matches_openmetrics():
    with Smsubmit() as d:
        d.submit(message(unique("stt")))
        status, text, err = control(d, "-s")
        assert status == 0, err
        assert "# " not in text, "OpenMetrics comments in the plain text"
        rows = {}
        for line in text.splitlines():
            m = re.fullmatch(r"(.*\S)\s+(\d+(?:\.\d+)?)", line)
            assert m, "odd line %r" % line
            rows[m.group(1)] = m.group(2)
        assert rows["Messages accepted (250 after DATA)"] == "1", text
        assert rows["SMTP sessions open now"] == "0", text
        assert "Replies 4xx and 5xx, by reply code, code 535" not in rows
        values, _, _ = scrape(d)
        assert int(rows["SMTP sessions accepted"]) == \
            v(values, "smsubmit_sessions_total"), text


def t_stats_without_daemon_exits_1():
    with Smsubmit(start=False) as d:
        status, out, err = control(d, "-s")
        assert status == 1 and "is smsubmit running" in err, (status, err)
        status, out, err = control(d, "-s", "-o", "openmetrics")
        assert status == 1, status


def t_stats_bad_usage():
    with Smsubmit(start=False) as d:
        for flags in (["-o", "openmetrics"], ["-s", "-o", "json"],
                      ["-s", "-q"]):
            status, out, err = control(d, *flags)
            assert status == 1 and "usage:" in err, (flags, status, err)


def t_stats_counts_bans_and_user_limits():
    with Smsubmit(conf={"auth ban": "after 2 within 1m for 1m",
                        "limit user messages": "1 per 1h"}) as d:
        before, _, _ = scrape(d)
        d.submit(message(unique("stb")))
        c = d.session(user="alice")
        expect(c.cmd("MAIL FROM:<alice@example.org>"), 450, "4.7.1")
        c.quit()
        c = d.client("tls")
        c.ehlo()
        expect(c.auth_plain("alice", "wrong"), 535, "5.7.8")
        expect(c.auth_login("alice", "wrong"), 535, "5.7.8")
        c.quit()
        time.sleep(0.5)
        for kind in ("starttls", "tls"):
            harness.refused_at_accept(d, kind)
        d.wait_log(r"(?s)refused: Too many authentication failures.*"
                   r"refused: Too many authentication failures")
        after, _, out = scrape(d)

        def delta(name, **labels):
            return v(after, name, **labels) - v(before, name, **labels)

        assert delta("smsubmit_user_limit_refusals_total",
                     limit="messages") == 1, out
        assert delta("smsubmit_user_limit_refusals_total",
                     limit="recipients") == 0, out
        assert delta("smsubmit_refusals_total", code="450") == 1, out
        assert delta("smsubmit_auth_failures_total") == 2, out
        assert delta("smsubmit_auth_banned_total") == 2, out
        assert delta("smsubmit_connections_refused_total") == 2, out
        # the refused connections are no sessions
        assert delta("smsubmit_sessions_total") == 3, out
