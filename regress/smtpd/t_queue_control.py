"""`smsubmit -q` lists the queue and `smsubmit -Q` makes every message due
now, over the queue's control socket (smsubmit.8); both exit 1 when the
daemon is not running."""

import re
import time

import harness
from harness import Smsubmit, message, unique
from scripted import substitute

# the first failed attempt puts the next one 30s away: only -Q brings it
CONF = {"queue retry": "30s to 1m"}


def control(d, flag):
    """Run `smsubmit FLAG -f CONF`; (exit status, stdout, stderr)."""
    p = harness.run([harness.SMSUBMIT, flag, "-f", d.conf_path],
                    timeout=20, check=False)
    return p.returncode, p.stdout.decode(errors="replace"), \
        p.stderr.decode(errors="replace")


def t_queue_control_list_and_flush():
    with Smsubmit(conf=CONF) as d:
        d.upstream.stop()
        tag = unique("ctl")
        qid = d.submit(message(tag), sender="alice@example.org",
                       rcpts=["bob@example.org", "carol@example.org"])
        d.wait_log(r"message %s: 2 recipients deferred" % qid)

        status, out, err = control(d, "-q")
        assert status == 0, "-q: exit %d: %s" % (status, err)
        lines = out.splitlines()
        head = [l for l in lines if l.startswith(qid + " ")]
        assert len(head) == 1, "no line for %s in:\n%s" % (qid, out)
        m = re.fullmatch(r"%s age=(\d+)s from=<alice@example\.org> "
                         r"user=alice attempts=(\d+) next=in (\d+)s"
                         % qid, head[0])
        assert m, "unexpected listing line %r" % head[0]
        assert int(m.group(1)) < 30, head[0]
        assert int(m.group(2)) >= 1, "no attempt counted: %r" % head[0]
        assert 20 <= int(m.group(3)) <= 40, "next try not ~30s away: %r" \
            % head[0]
        i = lines.index(head[0])
        rcpts = [l.split() for l in lines[i + 1:i + 3]]
        assert rcpts == [["pending", "<bob@example.org>"],
                         ["pending", "<carol@example.org>"]], lines[i:i + 3]
        assert re.fullmatch(r"    last error: \S.*", lines[i + 3]), \
            "no last error line: %r" % lines[i:i + 4]
        assert lines[-1] == "1 message in the queue", lines[-1]

        d.upstream.start()
        due = int(m.group(3))
        assert not d.find_messages(tag), "delivered before -Q: the retry " \
            "was due in 30s"
        assert d.upstream.connections == 0, "the relay was tried before -Q"
        mark = d.log_mark()
        status, out, err = control(d, "-Q")
        t0 = time.monotonic()
        assert status == 0, "-Q: exit %d: %s" % (status, err)
        assert out.strip() == "1 message scheduled for delivery now", out
        d.wait_log(r"control: retry of 1 messages forced", 5, mark)
        # delivered because of -Q: well before the retry that was due
        # (no speed asked for: the bound is the schedule's)
        d.wait_message(tag, due - 5)
        took = time.monotonic() - t0
        assert took < due - 5, "delivered %.1fs after -Q, by the retry due " \
            "in %ds" % (took, due)
        deadline = time.monotonic() + 5
        while True:
            status, out, err = control(d, "-q")
            assert status == 0, "-q: exit %d: %s" % (status, err)
            if out.strip() == "0 messages in the queue":
                break
            assert time.monotonic() < deadline, "still listed:\n" + out
            time.sleep(0.1)
        msgs = d.find_messages(tag)
        assert len(msgs) == 1 and msgs[0].rcpt_to == [
            "bob@example.org", "carol@example.org"], msgs


def t_queue_control_empty_queue():
    with Smsubmit(conf=CONF) as d:
        status, out, err = control(d, "-q")
        assert (status, out) == (0, "0 messages in the queue\n"), \
            (status, out, err)
        status, out, err = control(d, "-Q")
        assert (status, out) == (0, "0 messages scheduled for delivery "
                                    "now\n"), (status, out, err)


def t_queue_control_daemon_not_running():
    with Smsubmit(conf=CONF) as d:
        d.stop_daemon()
        for flag in ("-q", "-Q"):
            status, out, err = control(d, flag)
            assert status == 1, "%s: exit %d without a daemon" % (
                flag, status)
            assert out == "", "%s printed %r" % (flag, out)
            assert "running" in err, "%s: no hint in %r" % (flag, err)


def t_queue_control_list_escapes_outside_text():
    """`smsubmit -q` shows the relay's reply and the client's addresses
    escaped as in the log: a reply with a terminal escape and a quoted
    local part with spaces cannot reach the operator's terminal raw."""
    with Smsubmit(conf=CONF) as d:
        substitute(d, always={"MAIL": "451 4.3.0 busy\x1b]0;owned\x07\tx"})
        qid = d.submit(message(unique("ctlesc")),
                       rcpts=['"b c"@example.org'])
        d.wait_log(r"message %s: 1 recipients deferred" % qid, 10)
        status, out, err = control(d, "-q")
        assert status == 0, "-q: exit %d: %s" % (status, err)
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", out), repr(out)
        assert r'<"b\x20c"@example.org>' in out, out
        assert r"last error: 451\x204.3.0\x20busy\x1b]0;owned\x07\x09x" \
            in out, out
