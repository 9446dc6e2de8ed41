"""Delivery status notifications (RFC 3464, SPEC section 6) as the relay
host receives them, taken apart with Python's email package: the MIME
structure, the per-message and per-recipient fields, the envelope (null
sender, to the original sender); expiry; no bounce for a null sender."""

import email
import email.utils
import re
import time

from harness import HOSTNAME, Smsubmit, expect, message, stuff, timeout, \
    unique, queue_id, wait_for

WAIT = 30


def queued(d):
    """Files of committed messages (queue/ in the queue directory)."""
    top = d.queue + "/queue/"
    return [f for f in d.queue_files() if f.startswith(top)]


def is_dsn(m):
    return m.mail_from == "" and b"multipart/report" in m.eml[:4096]


def dsn_parts(m):
    """(whole message, text part, [status blocks], headers part), after
    checking the structure."""
    msg = email.message_from_bytes(m.eml)
    assert msg.get_content_type() == "multipart/report", \
        msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status", \
        msg.get("Content-Type")
    parts = msg.get_payload()
    assert isinstance(parts, list) and len(parts) == 3, \
        "%d parts" % len(parts)
    types = [p.get_content_type() for p in parts]
    assert types == ["text/plain", "message/delivery-status",
                     "text/rfc822-headers"], types
    blocks = parts[1].get_payload()
    assert isinstance(blocks, list) and len(blocks) >= 2, blocks
    assert not msg.defects and not any(p.defects for p in parts), \
        (msg.defects, [p.defects for p in parts])
    return msg, parts[0], blocks, parts[2]


def recipients(blocks):
    """{final recipient address: block} of the per-recipient blocks."""
    out = {}
    for b in blocks[1:]:
        kind, _, addr = b["Final-Recipient"].partition(";")
        assert kind.strip().lower() == "rfc822", b["Final-Recipient"]
        out[addr.strip()] = b
    return out


def t_bounce_dsn_structure():
    """Three recipients refused with three different replies, one taken:
    one DSN, to alice with MAIL FROM:<>, every field where RFC 3464 puts
    it, the status taken from each reply's enhanced code (5.0.0 when it
    has none), the original header section but not its body."""
    with Smsubmit() as d:
        replies = {"nobody@example.org": "550 5.1.1 no such user here",
                   "denied@example.org": "553 5.7.1 relaying denied",
                   "plain@example.org": "550 mailbox unavailable"}
        for addr, r in replies.items():
            d.upstream.reject_rcpt(addr, r)
        tag = unique("dsn")
        orig = message(tag, "the body, which stays home\r\n")
        t0 = time.time()
        qid = d.submit(orig, sender="alice@example.org",
                       rcpts=["bob@example.org"] + list(replies))
        dsn = d.upstream.wait(1, is_dsn, WAIT)[0]
        assert dsn.rcpt_to == ["alice@example.org"], dsn.rcpt_to
        null = [c for c in d.upstream.commands
                if re.match(r"(?i)MAIL FROM:<>( |$)", c)]
        assert len(null) == 1, "MAIL FROM:<> sent %d times: %s" % (
            len(null), d.upstream.commands)
        msg, text, blocks, headers = dsn_parts(dsn)

        assert msg["To"] and "alice@example.org" in msg["To"], msg["To"]
        assert "MAILER-DAEMON" in (msg["From"] or ""), msg["From"]
        assert msg["Auto-Submitted"] == "auto-replied", \
            msg["Auto-Submitted"]
        assert msg["Message-ID"] and msg["Date"], "no Message-ID or Date"

        body = text.get_payload(decode=True).decode()
        for addr in replies:
            assert addr in body, "%s not named in the text part" % addr
        assert qid in body, body

        top = blocks[0]
        assert top["Reporting-MTA"].replace(" ", "") == "dns;" + HOSTNAME, \
            top["Reporting-MTA"]
        assert top["X-Smsubmit-Queue-ID"] == qid, top["X-Smsubmit-Queue-ID"]
        arrival = email.utils.parsedate_to_datetime(top["Arrival-Date"])
        assert abs(arrival.timestamp() - t0) < 60, top["Arrival-Date"]

        rcpts = recipients(blocks)
        assert sorted(rcpts) == sorted(replies), sorted(rcpts)
        want_status = {"nobody@example.org": "5.1.1",
                       "denied@example.org": "5.7.1",
                       "plain@example.org": "5.0.0"}
        for addr, b in rcpts.items():
            assert b["Action"] == "failed", (addr, b["Action"])
            assert b["Status"] == want_status[addr], (addr, b["Status"])
            assert b["Remote-MTA"] == "dns; 127.0.0.1", \
                (addr, b["Remote-MTA"])
            diag = b["Diagnostic-Code"]
            assert diag and diag.startswith("smtp;"), (addr, diag)
            assert diag.split(";", 1)[1].strip() == replies[addr], \
                (addr, diag)

        hdrs = headers.get_payload(decode=True)
        assert ("Subject: %s" % tag).encode() in hdrs, hdrs[:300]
        assert ("Message-ID: <%s@example.org>" % tag).encode() in hdrs
        assert b"the body, which stays home" not in dsn.eml, \
            "the original body is in the DSN"
        # the headers returned start where the message does, past the
        # envelope its queue file begins with
        assert hdrs.startswith(b"Received: "), hdrs[:300]
        assert b"\nrcpt " not in dsn.eml and b"version 2" not in dsn.eml, \
            dsn.eml[:600]
        ok = [m for m in d.messages() if m.mail_from == "alice@example.org"]
        assert len(ok) == 1 and ok[0].rcpt_to == ["bob@example.org"], ok


@timeout(60)
def t_bounce_expiry_status_547():
    """`queue lifetime 2s`, the relay answers 451 to the recipient: once
    the lifetime is over the sender gets a DSN with Status 5.4.7 that
    says the time expired, and the message is gone."""
    with Smsubmit(conf={"queue lifetime": "2s"}) as d:
        d.upstream.defer_rcpt("slow@example.org", "451 4.2.0 mailbox busy")
        tag = unique("expire")
        qid = d.submit(message(tag), rcpts=["slow@example.org"])
        dsn = d.upstream.wait(1, is_dsn, WAIT)[0]
        _, _, blocks, _ = dsn_parts(dsn)
        assert blocks[0]["X-Smsubmit-Queue-ID"] == qid
        rcpts = recipients(blocks)
        assert list(rcpts) == ["slow@example.org"], list(rcpts)
        b = rcpts["slow@example.org"]
        assert b["Action"] == "failed" and b["Status"] == "5.4.7", \
            (b["Action"], b["Status"])
        assert "expired" in (b["Diagnostic-Code"] or ""), \
            b["Diagnostic-Code"]
        d.wait_log(r"message %s: expired after \d+s" % qid)
        assert not [m for m in d.messages() if m.mail_from != ""], \
            "the expired message was delivered"
        deadline = time.monotonic() + 10
        while queued(d):
            assert time.monotonic() < deadline, d.queue_files()
            time.sleep(0.1)


def t_bounce_not_for_null_sender():
    """A message submitted with MAIL FROM:<> that the relay refuses for
    good is dropped: no DSN, no second MAIL FROM:<>, the log says so."""
    with Smsubmit() as d:
        d.upstream.reject_rcpt("nobody@example.org")
        c = d.session()
        tag = unique("nullsender")
        r = c.cmd("MAIL FROM:<>")
        expect(r, 250, "2.1.0", "MAIL FROM:<>")
        expect(c.cmd("RCPT TO:<nobody@example.org>"), 250, "2.1.5")
        expect(c.cmd("DATA"), 354)
        c.send(stuff(message(tag)))
        qid = queue_id(expect(c.reply(), 250, "2.0.0"))
        c.quit()
        d.wait_log(r"message %s: no bounce for a null sender" % qid, WAIT)
        d.wait_log(r"message %s: delivered to 0 of 1 recipients, removed"
                   % qid)
        # a bounce is committed before the message is removed: with
        # queue/ empty now, none can ever come (the log line comes just
        # before the files go: wait for that)
        wait_for(lambda: not queued(d), 10, lambda: d.queue_files())
        assert not queued(d), d.queue_files()
        mails = [c for c in d.upstream.commands if c.upper().startswith(
            "MAIL FROM:")]
        assert len(mails) == 1, "MAIL commands: %s" % mails
        assert d.messages() == [], d.messages()


def t_bounce_hostile_reply_cleaned():
    """The relay refuses with a reply holding a TAB, an escape sequence,
    a bare CR and 8-bit octets: the envelope keeps it (the DSN is made
    from the envelope), and the us-ascii report carries it cleaned, in
    the text part and the Diagnostic-Code, with no control character."""
    with Smsubmit() as d:
        d.upstream.reject_rcpt("carol@example.org",
                               "550 5.1.1 no\tsuch\x1b[2J\ruser \u00e9")
        tag = unique("hostile")
        d.submit(message(tag), rcpts=["carol@example.org"])
        dsn = d.upstream.wait(1, is_dsn, WAIT)[0]
        msg, text, blocks, _ = dsn_parts(dsn)
        raw = dsn.eml.replace(b"\r\n", b"")
        assert not re.search(rb"[\x00-\x08\x0a-\x1f\x7f-\xff]", raw), \
            re.findall(rb".{0,20}[\x00-\x08\x0a-\x1f\x7f-\xff].{0,20}", raw)
        block = recipients(blocks)["carol@example.org"]
        assert block["Status"] == "5.1.1", block["Status"]
        assert block["Diagnostic-Code"] == \
            "smtp; 550 5.1.1 no such?[2J?user ??", block["Diagnostic-Code"]
        assert "550 5.1.1 no such?[2J?user ??" in text.get_payload(), \
            text.get_payload()
