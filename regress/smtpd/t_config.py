"""The command line and the configuration language (SPEC sections 3, 4)."""

import os
import re
import subprocess

from harness import SMSUBMIT, USERS, Smsubmit, expect


def check(path, *args):
    p = subprocess.run([SMSUBMIT, "-n", "-f", path] + list(args),
                       capture_output=True, timeout=20)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


def conf_with(lines, name="test.conf"):
    """A daemon's generated config (not started) with lines appended;
    returns (daemon, path, number of the first appended line)."""
    d = Smsubmit(start=False)
    path = os.path.join(d.dir, name)
    base = d.conf_text.splitlines()
    with open(path, "w") as f:
        f.write("\n".join(base + lines) + "\n")
    return d, path, len(base) + 1


def t_config_check_ok():
    d = Smsubmit(start=False)
    status, out = check(d.conf_path)
    assert status == 0, "exit %d: %s" % (status, out)


def t_config_check_bad_statement():
    d, path, line = conf_with(["frobnicate yes"])
    status, out = check(path)
    assert status == 1, "exit %d: %s" % (status, out)
    assert "%s:%d" % (path, line) in out, out


def t_config_check_error_line_in_middle():
    d = Smsubmit(start=False)
    lines = d.conf_text.splitlines()
    lines.insert(3, "limit message-size lots")
    path = os.path.join(d.dir, "mid.conf")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    status, out = check(path)
    assert status == 1, out
    assert "%s:4" % path in out, out


def t_config_listen_needs_tls_or_starttls():
    for stmt in ("listen on 127.0.0.1 port 2525",
                 "listen on 127.0.0.1 port 2525 tls starttls",
                 "listen on 127.0.0.1 port 2525 plaintext"):
        d, path, line = conf_with([stmt])
        status, out = check(path)
        assert status == 1, "%r accepted: %s" % (stmt, out)
        assert "%s:%d" % (path, line) in out, out


def t_config_missing_file():
    status, out = check("/nonexistent/smsubmit.conf")
    assert status == 1, (status, out)


def t_config_sizes_and_durations():
    good = ["limit message-size 10K", "limit message-size 35M",
            "limit message-size 1G", "limit message-size 123456",
            "timeout command 90s", "timeout command 5m", "timeout data 1h",
            "queue lifetime 5d"]
    d, path, _ = conf_with(good)
    status, out = check(path)
    assert status == 0, out
    for bad in ("limit message-size 10X", "timeout command 5y",
                "limit recipients -1", "limit sessions 0x"):
        d, path, line = conf_with([bad])
        status, out = check(path)
        assert status == 1, "%r accepted" % bad
        assert "%s:%d" % (path, line) in out, out


def t_config_comments_and_blank_lines():
    d, path, _ = conf_with(["", "# a comment", "   ",
                            "limit recipients 7   # trailing comment"])
    status, out = check(path)
    assert status == 0, out


def t_config_macros():
    d, path, _ = conf_with(['maxrcpt = "7"', "limit recipients $maxrcpt"])
    status, out = check(path)
    assert status == 0, out
    d, path, line = conf_with(["limit recipients $undefined"])
    status, out = check(path)
    assert status == 1, "undefined macro accepted: %s" % out


def t_config_macro_on_command_line():
    d, path, _ = conf_with(['maxrcpt = "7"', "limit recipients $maxrcpt"])
    # -D overrides the file: a bad value now makes the file invalid
    status, out = check(path, "-D", "maxrcpt=seven")
    assert status == 1, "-D did not override the file's macro: %s" % out
    status, out = check(path, "-D", "maxrcpt=9")
    assert status == 0, out
    d, path, _ = conf_with(["limit recipients $fromcmdline"])
    status, out = check(path, "-D", "fromcmdline=3")
    assert status == 0, out


def t_config_message_size_applied():
    with Smsubmit(conf={"limit message-size": "10K"}) as d:
        c = d.client()
        c.ehlo()
        assert "SIZE 10240" in c.caps, c.caps
        expect(c.auth_plain("alice", USERS["alice"]), 235, "2.7.0")
        expect(c.cmd("MAIL FROM:<alice@example.org> SIZE=10241"), 552,
               "5.3.4")


def t_config_mechanisms_applied():
    with Smsubmit(mechanisms="LOGIN") as d:
        c = d.client()
        c.ehlo()
        assert [x for x in c.caps if x.startswith("AUTH")] == \
            ["AUTH LOGIN"], c.caps
        expect(c.auth_plain("alice", USERS["alice"]), 504, "5.5.4")
        expect(c.auth_login("alice", USERS["alice"]), 235, "2.7.0")


def t_config_hostname_applied():
    with Smsubmit(conf={"hostname": '"other.test"'}) as d:
        c = d.client("starttls")
        assert re.fullmatch(r"220 other\.test ESMTP smsubmit",
                            c.greeting.raw[0]), c.greeting
