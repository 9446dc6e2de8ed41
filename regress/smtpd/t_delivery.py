"""What reaches the relay host: the Received header, Message-ID and Date
only when missing, the message otherwise byte for byte, the envelope."""

import email.utils
import random
import re
import time

from harness import Skip, Smsubmit, USERS, expect, have_ipv6, message, \
    queue_id, strip_received, stuff, unique

KINDS = ("tls", "starttls")


def deliver(d, msg, sender="alice@example.org", rcpts=("bob@example.org",),
            kind="tls", params=""):
    """Submit msg; return (client's TLS version, cipher, qid, eml)."""
    c = d.session(kind)
    qid = c.send_message(sender, rcpts, msg, params)
    version, cipher = c.version(), c.cipher()
    c.quit()
    return version, cipher, qid, d.wait_message(qid).eml


def t_received_header(d):
    for kind in KINDS:
        version, cipher, qid, eml = deliver(d, message(unique("rcvd")),
                                            kind=kind)
        received, _ = strip_received(eml)
        text = re.sub(r"\r\n[ \t]+", " ", received.decode())
        assert "with ESMTPSA" in text, "%s: %s" % (kind, text)
        assert qid in text, "%s: no queue ID %s in %s" % (kind, qid, text)
        assert version in text, "%s: no %s in %s" % (kind, version, text)
        assert cipher in text, "%s: no cipher %s in %s" % (kind, cipher,
                                                            text)


def t_received_header_is_first_and_only_added(d):
    msg = message(unique("first"))
    _, _, _, eml = deliver(d, msg)
    assert eml.startswith(b"Received: ") or eml.startswith(b"Received:"), \
        eml[:60]
    _, rest = strip_received(eml)
    assert rest == msg, "more than the Received header changed:\n%r" % rest


def t_received_header_sanitises_helo(d):
    """A HELO name with control characters never reaches a header: the
    EHLO is refused (501 5.5.4) and the Received: field of the message
    sent after a good EHLO holds that name, and no control character."""
    c = d.client()
    expect(c.cmd("EHLO evil\x1b[31m\x07.example"), 501, "5.5.4")
    expect(c.cmd("EHLO good-after-evil.example"), 250)
    expect(c.auth_plain("alice", "alice-pw"), 235, "2.7.0")
    qid = c.send_message("alice@example.org", ["bob@example.org"],
                         message(unique("helo")))
    received, _ = strip_received(d.wait_message(qid).eml)
    text = received.decode("latin-1").replace("\r\n", "")
    assert not re.search(r"[\x00-\x08\x0a-\x1f\x7f]", text), repr(text)
    assert "good-after-evil.example" in text and "evil\x1b" not in text, \
        repr(text)


def added_headers(msg, eml):
    """The lines the daemon added at the end of msg's header section;
    asserts everything else is untouched."""
    _, rest = strip_received(eml)
    head, sep, body = msg.partition(b"\r\n\r\n")
    assert rest.startswith(head + b"\r\n"), "original headers changed"
    assert rest.endswith(b"\r\n\r\n" + body), "body changed"
    added = rest[len(head) + 2:len(rest) - len(body) - 4]
    return [l for l in re.split(r"\r\n(?![ \t])", added.decode()) if l]


def t_message_id_and_date_added(d):
    msg = message(unique("nohdrs"), msgid=False, date=False)
    _, _, _, eml = deliver(d, msg)
    added = added_headers(msg, eml)
    names = sorted(h.split(":", 1)[0].lower() for h in added)
    assert names == ["date", "message-id"], added
    for h in added:
        name, value = h.split(":", 1)
        if name.lower() == "message-id":
            assert re.fullmatch(r"\s*<[^<>@\s]+@[^<>@\s]+>", value), h
        else:
            when = email.utils.parsedate_to_datetime(value.strip())
            assert abs(when.timestamp() - time.time()) < 3600, h


def t_message_ids_differ(d):
    ids = []
    for _ in range(2):
        msg = message(unique("ids"), msgid=False)
        _, _, _, eml = deliver(d, msg)
        ids += [h for h in added_headers(msg, eml)
                if h.lower().startswith("message-id:")]
    assert len(ids) == 2 and ids[0] != ids[1], ids


def t_message_id_and_date_kept(d):
    msg = message(unique("keep"))
    _, _, _, eml = deliver(d, msg)
    assert added_headers(msg, eml) == []


def t_date_added_message_id_kept(d):
    msg = message(unique("nodate"), date=False)
    _, _, _, eml = deliver(d, msg)
    added = added_headers(msg, eml)
    assert [h.split(":")[0].lower() for h in added] == ["date"], added


def t_message_id_added_date_kept(d):
    msg = message(unique("nomsgid"), msgid=False)
    _, _, _, eml = deliver(d, msg)
    added = added_headers(msg, eml)
    assert [h.split(":")[0].lower() for h in added] == ["message-id"], added


def t_message_id_header_name_case_insensitive(d):
    tag = unique("case")
    msg = message(tag, msgid=False, date=False,
                  headers=["mEsSaGe-Id: <%s@example.org>" % tag,
                           "DATE: Tue, 2 Jan 2024 10:00:00 +0000"])
    _, _, _, eml = deliver(d, msg)
    assert added_headers(msg, eml) == []


def t_message_id_in_body_does_not_count(d):
    msg = message(unique("inbody"), msgid=False, date=False,
                  body="Message-ID: <not@a.header>\r\nDate: never\r\n")
    _, _, _, eml = deliver(d, msg)
    names = sorted(h.split(":")[0].lower() for h in added_headers(msg, eml))
    assert names == ["date", "message-id"], names


def exact(d, body, params="", kind="tls"):
    msg = message(unique("exact"), body)
    _, _, _, eml = deliver(d, msg, params=params, kind=kind)
    _, rest = strip_received(eml)
    if rest != msg:
        i = next((i for i, (a, b) in enumerate(zip(rest, msg)) if a != b),
                 min(len(rest), len(msg)))
        raise AssertionError("differs at octet %d of %d/%d: got %r, sent %r"
                             % (i, len(rest), len(msg), rest[i:i + 40],
                                msg[i:i + 40]))


def t_body_exact_dots(d):
    for kind in KINDS:
        exact(d, b".\r\n..\r\n...\r\n.x\r\n x\r\n.\r\n. .\r\nend.\r\n.\r\n",
              "", kind)


def t_body_exact_lone_dot_lines(d):
    exact(d, b"before\r\n.\r\n\r\n.\r\n.\r\nafter\r\n.\r\n")


def t_body_exact_998_octet_lines(d):
    exact(d, b"a" * 998 + b"\r\n." + b"b" * 997 + b"\r\n" + b"c" * 998 +
          b"\r\n")


def t_body_exact_8bit(d):
    octets = bytes(range(0x80, 0x100))
    exact(d, b"caf\xc3\xa9 \xe2\x82\xac\r\n" + octets + b"\r\n" +
          "grüße\r\n".encode("latin-1"), " BODY=8BITMIME")


def t_body_exact_controls_and_spaces(d):
    exact(d, b"\ttab\r\n \r\n  trailing  \r\n\x0c\x1b[0m\x01\r\n\r\n\r\n")


def t_body_exact_empty(d):
    exact(d, b"")


def t_body_exact_no_final_newline_gets_one(d):
    """A message that does not end in CRLF gets one (the client adds it
    before the final dot), nothing else."""
    tag = unique("nofinal")
    msg = message(tag, b"last line")
    c = d.session()
    c.cmd("MAIL FROM:<alice@example.org>")
    c.cmd("RCPT TO:<bob@example.org>")
    expect(c.cmd("DATA"), 354)
    c.send(msg + b"\r\n.\r\n")
    qid = queue_id(expect(c.reply(), 250, "2.0.0"))
    _, rest = strip_received(d.wait_message(qid).eml)
    assert rest == msg + b"\r\n", rest[-40:]


def t_body_exact_1mb(d):
    rnd = random.Random(7)
    lines = []
    size = 0
    while size < 1024 * 1024:
        n = rnd.randrange(0, 200)
        line = bytes(rnd.randrange(32, 127) for _ in range(n))
        if rnd.random() < 0.05:
            line = b"." + line
        lines.append(line)
        size += n + 2
    exact(d, b"\r\n".join(lines) + b"\r\n")


def t_envelope_at_upstream(d):
    for kind in KINDS:
        rcpts = ["bob@example.org", "Carol.Q@Example.NET",
                 "dave+x@example.com"]
        c = d.session(kind)
        tag = unique("env")
        qid = c.send_message("alice@example.org", rcpts, message(tag))
        c.quit()
        m = d.wait_message(qid)
        assert m.mail_from == "alice@example.org", m.mail_from
        assert m.rcpt_to == rcpts, m.rcpt_to


def t_envelope_8bitmime_relayed(d):
    c = d.session()
    qid = c.send_message("alice@example.org", ["bob@example.org"],
                         message(unique("8bit"), "caf\xe9\r\n".encode(
                             "latin-1")), " BODY=8BITMIME")
    m = d.wait_message(qid)
    assert "BODY=8BITMIME" in [p.upper() for p in m.mail_params], \
        m.mail_params


def t_envelope_smtputf8_relayed(d):
    c = d.session()
    sender, rcpt = "alïce@exämple.org", "bøb@example.org"
    qid = c.send_message(sender, [rcpt], message(unique("utf8")),
                         " SMTPUTF8")
    m = d.wait_message(qid)
    assert m.mail_from == sender and m.rcpt_to == [rcpt], m
    assert "SMTPUTF8" in [p.upper() for p in m.mail_params], m.mail_params


def t_utf8_address_needs_smtputf8(d):
    c = d.session()
    r = c.cmd("MAIL FROM:<alïce@exämple.org>")
    assert r.code >= 500, "8-bit address without SMTPUTF8 accepted: %s" % r


def t_several_transactions_one_session(d):
    c = d.session()
    sent = []
    for i in range(3):
        tag = unique("multi%d" % i)
        rcpts = ["r%d-%d@example.org" % (i, j) for j in range(i + 1)]
        qid = c.send_message("s%d@example.org" % i, rcpts, message(tag))
        sent.append((qid, "s%d@example.org" % i, rcpts))
    expect(c.cmd("QUIT"), 221, "2.0.0")
    assert len({q for q, _, _ in sent}) == 3, sent
    for qid, sender, rcpts in sent:
        m = d.wait_message(qid)
        assert (m.mail_from, m.rcpt_to) == (sender, rcpts), m


def t_pipelining(d):
    for kind in KINDS:
        c = d.session(kind)
        tag = unique("pipe")
        c.send("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\n"
               "RCPT TO:<carol@example.org>\r\nDATA\r\n")
        expect(c.reply(), 250, "2.1.0", kind + " MAIL")
        expect(c.reply(), 250, "2.1.5", kind + " RCPT 1")
        expect(c.reply(), 250, "2.1.5", kind + " RCPT 2")
        expect(c.reply(), 354, what=kind + " DATA")
        # the message, its end, and the next commands in one write
        c.send(stuff(message(tag)) + b"NOOP\r\nQUIT\r\n")
        qid = queue_id(expect(c.reply(), 250, "2.0.0", kind))
        expect(c.reply(), 250, "2.0.0", kind + " NOOP")
        expect(c.reply(), 221, "2.0.0", kind + " QUIT")
        m = d.wait_message(qid)
        assert m.rcpt_to == ["bob@example.org", "carol@example.org"], m


def t_pipelining_with_refused_rcpt(d):
    c = d.session()
    c.send("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bad@@example.org>\r\n"
           "RCPT TO:<bob@example.org>\r\nDATA\r\n")
    expect(c.reply(), 250, "2.1.0")
    expect(c.reply(), 501, "5.1.3")
    expect(c.reply(), 250, "2.1.5")
    expect(c.reply(), 354)
    c.send(stuff(message(unique("piperef"))))
    m = d.wait_message(queue_id(expect(c.reply(), 250, "2.0.0")))
    assert m.rcpt_to == ["bob@example.org"], m.rcpt_to


def t_pipelining_all_rcpts_refused(d):
    c = d.session()
    c.send("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bad@@example.org>\r\n"
           "DATA\r\nNOOP\r\n")
    expect(c.reply(), 250, "2.1.0")
    expect(c.reply(), 501, "5.1.3")
    r = c.reply()
    assert r.code in (503, 554), "DATA without valid recipients: %s" % r
    expect(c.reply(), 250, "2.0.0", "NOOP")


def t_pipelining_around_auth(d):
    """EHLO and NOOP in one write; MAIL and RCPT in one write right after
    AUTH: every reply comes, in order."""
    c = d.client("tls")
    c.send("EHLO client.test\r\nNOOP\r\n")
    expect(c.reply(), 250)
    expect(c.reply(), 250, "2.0.0")
    expect(c.auth_plain("alice", "alice-pw"), 235, "2.7.0")
    c.send("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\n")
    expect(c.reply(), 250, "2.1.0")
    expect(c.reply(), 250, "2.1.5")


def t_received_header_after_helo_and_auth(d):
    """HELO (not EHLO), then AUTH: the Received header names the HELO
    and says SMTPSA (RFC 3848), on both listeners."""
    for kind in KINDS:
        c = d.client(kind)
        if kind == "starttls":
            c.ehlo("before-tls.example")
            c.starttls()
        expect(c.cmd("HELO helo-%s.example" % kind), 250)
        expect(c.auth_plain("alice", USERS["alice"]), 235, "2.7.0")
        qid = c.send_message("alice@example.org", ["bob@example.org"],
                             message(unique("helo")))
        version, cipher = c.version(), c.cipher()
        c.quit()
        received, _ = strip_received(d.wait_message(qid).eml)
        text = re.sub(r"\r\n[ \t]+", " ", received.decode())
        assert text.startswith("Received: from helo-%s.example ([127.0.0.1])"
                               " by " % kind), text
        assert "with SMTPSA id %s " % qid in text, text
        assert "ESMTPSA" not in text and "before-tls" not in text, text
        assert "version=%s cipher=%s" % (version, cipher) in text, text


def t_received_header_over_ipv6():
    """From ::1 the client's address is an IPv6 address literal
    (RFC 5321 4.1.3): [IPv6:::1]."""
    if not have_ipv6():
        raise Skip("::1 unavailable")
    with Smsubmit(ipv6=True) as d:
        for kind in KINDS:
            c = d.client(kind, host="::1")
            if kind == "starttls":
                c.ehlo()
                c.starttls()
            c.ehlo("v6-%s.example" % kind)
            expect(c.auth_plain("alice", USERS["alice"]), 235, "2.7.0")
            qid = c.send_message("alice@example.org", ["bob@example.org"],
                                 message(unique("v6")))
            c.quit()
            received, _ = strip_received(d.wait_message(qid).eml)
            text = re.sub(r"\r\n[ \t]+", " ", received.decode())
            assert text.startswith("Received: from v6-%s.example "
                                   "([IPv6:::1]) by " % kind), text
            assert "with ESMTPSA id %s " % qid in text, text
