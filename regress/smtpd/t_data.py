"""What DATA refuses: bare CR or LF (SMTP smuggling), long lines, size.
Only <CRLF>.<CRLF> ends DATA, and nothing of a refused message is relayed."""

import random

from harness import MESSAGE_SIZE, expect, message, queue_id, strip_received, \
    stuff, unique

KINDS = ("tls", "starttls")


def start_data(d, kind="tls"):
    c = d.session(kind)
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")
    expect(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5")
    expect(c.cmd("DATA"), 354)
    return c


def follow_up(d, c, refused_tags):
    """In the same session, a good message goes through; once it is at
    the upstream, nothing carrying refused_tags may be there."""
    tag = unique("followup")
    qid = c.send_message("alice@example.org", ["bob@example.org"],
                         message(tag))
    d.wait_message(qid)
    for t in refused_tags:
        got = d.find_messages(t)
        assert not got, "refused message %s reached the upstream: %r" % (
            t, got[0].eml[:300])


def refused(d, raw, tags, kind="tls", code=554, enh="5.6.0"):
    """Send raw as the DATA payload (with its own end); expect one
    refusal, nothing smuggled answered, the session usable."""
    c = start_data(d, kind)
    c.send(raw)
    expect(c.reply(), code, enh, "end of DATA")
    # the next reply must be the NOOP's: nothing inside DATA was a command
    expect(c.cmd("NOOP"), 250, "2.0.0", "NOOP after the refusal")
    extra = c.pending(0.3)
    assert extra == b"", "more replies than commands: %r" % extra
    follow_up(d, c, tags)
    c.quit()


def t_data_bare_lf(d):
    for kind in KINDS:
        tag = unique("barelf")
        raw = message(tag, "one line\nwith a bare LF\r\n") + b".\r\n"
        refused(d, raw, [tag], kind)


def t_data_bare_cr(d):
    for kind in KINDS:
        tag = unique("barecr")
        raw = message(tag, "one line\rwith a bare CR\r\n") + b".\r\n"
        refused(d, raw, [tag], kind)


def t_data_bare_lf_in_header(d):
    tag = unique("barelfhdr")
    raw = message(tag, headers=["X-Evil: a\nX-Injected: b"]) + b".\r\n"
    refused(d, raw, [tag])


def smuggle(variant):
    """A message whose body hides a second transaction behind a fake end
    of data, followed by the real end."""
    tag, evil = unique("carrier"), unique("smuggled")
    body = ("Hi.\r\nThe end is near" + variant +
            "MAIL FROM:<evil@example.net>\r\n"
            "RCPT TO:<victim@example.org>\r\n"
            "DATA\r\n"
            "From: <alice@example.org>\r\n"
            "Subject: %s\r\n\r\n"
            "smuggled\r\n" % evil).encode()
    return message(tag, body) + b".\r\n", [tag, evil]


def t_data_smuggling_lf_dot_lf(d):
    for kind in KINDS:
        refused(d, *smuggle("\n.\n"), kind=kind)


def t_data_smuggling_cr_dot_cr(d):
    for kind in KINDS:
        refused(d, *smuggle("\r.\r"), kind=kind)


def t_data_smuggling_lf_dot_crlf(d):
    for kind in KINDS:
        refused(d, *smuggle("\n.\r\n"), kind=kind)


def t_data_smuggling_crlf_dot_lf(d):
    for kind in KINDS:
        refused(d, *smuggle("\r\n.\n"), kind=kind)


def t_data_smuggling_cr_dot_crlf(d):
    refused(d, *smuggle("\r.\r\n"))


def t_data_smuggling_split_writes(d):
    """The fake end split across TCP segments changes nothing."""
    raw, tags = smuggle("\n.\n")
    c = start_data(d)
    cut = raw.index(b"\n.\n")
    for piece in (raw[:cut + 1], raw[cut + 1:cut + 2]):
        c.send(piece)
        assert c.pending(0.3) == b"", "a reply before the real end of data"
    c.send(raw[cut + 2:])
    expect(c.reply(), 554, "5.6.0")
    expect(c.cmd("NOOP"), 250, "2.0.0")
    follow_up(d, c, tags)


def t_data_line_998_accepted(d):
    tag = unique("l998")
    body = ("x" * 998 + "\r\n" + "." + "y" * 997 + "\r\nend\r\n").encode()
    msg = message(tag, body)
    c = d.session()
    qid = c.send_message("alice@example.org", ["bob@example.org"], msg)
    _, rest = strip_received(d.wait_message(qid).eml)
    assert rest == msg, "998-octet lines changed in transit"


def t_data_line_999_refused(d):
    for kind in KINDS:
        tag = unique("l999")
        raw = stuff(message(tag, "x" * 999 + "\r\nend\r\n"))
        refused(d, raw, [tag], kind)


def t_data_long_header_line_refused(d):
    tag = unique("longhdr")
    raw = stuff(message(tag, headers=["X-Long: " + "h" * 1000]))
    refused(d, raw, [tag])


def t_data_over_size(d):
    for kind in KINDS:
        tag = unique("big")
        line = "z" * 76 + "\r\n"
        body = line * (MESSAGE_SIZE // len(line) + 200)
        refused(d, stuff(message(tag, body)), [tag], kind, 552, "5.3.4")


def t_data_refusal_ends_transaction(d):
    """After a refused message a new MAIL is not nested."""
    c = start_data(d)
    c.send(message(unique("r"), "bare\nLF\r\n") + b".\r\n")
    expect(c.reply(), 554, "5.6.0")
    expect(c.cmd("RCPT TO:<bob@example.org>"), 503, "5.5.1")
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")


def t_data_dot_stuffing_not_end(d):
    """'..' at the start of a line, a dot inside a line and a line '. '
    do not end DATA; the dot is removed only where it was added."""
    tag = unique("dots")
    body = b".. not the end\r\n. \r\nmid.dle\r\n.\t\r\n"
    c = d.session()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")
    expect(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5")
    expect(c.cmd("DATA"), 354)
    msg = message(tag, body)
    c.send(msg + b".\r\n")
    qid = queue_id(expect(c.reply(), 250, "2.0.0"))
    _, rest = strip_received(d.wait_message(qid).eml)
    want = b"\r\n".join(l[1:] if l.startswith(b".") else l
                         for l in msg.split(b"\r\n"))
    assert rest == want, "got %r, want %r" % (rest[-60:], want[-60:])


def t_data_large_message_in_odd_pieces_stored_exactly(d):
    """A large message with dot lines, lines of every length up to 998
    and empty lines, sent in pieces of random size (so reads end inside
    a CRLF, after a line's dot, anywhere), arrives octet for octet; and
    without Message-ID: and Date:, the body is still untouched."""
    rnd = random.Random(12)
    lines = []
    size = 0
    while size < MESSAGE_SIZE // 2:
        k = rnd.choice((0, 1, 76, 76, 76, 997, 998, rnd.randrange(999)))
        line = "".join(rnd.choice("abc .:\t") for _ in range(k))
        if rnd.randrange(20) == 0:
            line = "." + line[1:] if line else "."
        lines.append(line)
        size += len(line) + 2
    body = ("\r\n".join(lines) + "\r\n").encode()
    for msgid in (True, False):
        tag = unique("odd")
        msg = message(tag, body, msgid=msgid, date=msgid)
        c = d.session()
        expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5")
        expect(c.cmd("DATA"), 354)
        raw = stuff(msg)
        off = 0
        while off < len(raw):
            n = rnd.choice((1, 2, 3, rnd.randrange(1, 70000)))
            c.send(raw[off:off + n])
            off += n
        qid = queue_id(expect(c.reply(), 250, "2.0.0"))
        _, rest = strip_received(d.wait_message(qid).eml)
        if msgid:
            assert rest == msg, "the message changed in transit"
        else:
            assert rest.split(b"\r\n\r\n", 1)[1] == body, \
                "the body changed in transit"
            assert b"\r\nMessage-ID: <" in rest.split(b"\r\n\r\n", 1)[0]
        c.quit()
