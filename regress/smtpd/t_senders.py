"""`senders FILE`: which envelope senders each user may use (553 5.7.1).
The file holds "user address, @domain ..." lines."""

from harness import Smsubmit, expect, message, stuff, unique

SENDERS = """# user  senders
alice   alice@example.org, @alice.example
bob     bob@example.org
"""


def daemon():
    d = Smsubmit(start=False)
    d.add_conf('senders "%s"' % d.write_file("senders", SENDERS))
    d.start()
    return d


def t_senders_allowed():
    with daemon() as d:
        c = d.session(user="alice")
        for a in ("alice@example.org", "ALICE@Example.ORG",
                  "anything@alice.example"):
            expect(c.cmd("MAIL FROM:<%s>" % a), 250, "2.1.0", a)
            expect(c.cmd("RSET"), 250, "2.0.0")
        tag = unique("sender")
        qid = c.send_message("x@alice.example", ["bob@example.org"],
                             message(tag))
        assert d.wait_message(qid).mail_from == "x@alice.example"


def t_senders_refused():
    with daemon() as d:
        for user, addr in (("alice", "bob@example.org"),
                           ("alice", "alice@sub.alice.example"),
                           ("alice", "alice@example.org.evil"),
                           ("bob", "alice@example.org"),
                           ("bob", "b@alice.example")):
            c = d.session(user=user)
            expect(c.cmd("MAIL FROM:<%s>" % addr), 553, "5.7.1",
                   "%s as %s" % (user, addr))
            # not in a transaction: RCPT is out of sequence
            expect(c.cmd("RCPT TO:<x@example.org>"), 503, "5.5.1")
            c.quit()


def t_senders_unlisted_user_refused():
    """A user the file does not list may use no address at all."""
    with Smsubmit(start=False) as d:
        d.add_conf('senders "%s"' % d.write_file("senders",
                                                 "alice alice@example.org\n"))
        d.start()
        c = d.session(user="bob")
        expect(c.cmd("MAIL FROM:<bob@example.org>"), 553, "5.7.1")


def t_senders_null_sender_allowed():
    with daemon() as d:
        c = d.session(user="bob")
        expect(c.cmd("MAIL FROM:<>"), 250, "2.1.0")


def t_senders_file_read_at_each_auth():
    with daemon() as d:
        c = d.session(user="bob")
        expect(c.cmd("MAIL FROM:<robert@example.org>"), 553, "5.7.1")
        c.quit()
        d.write_file("senders", SENDERS + "bob robert@example.org\n")
        c = d.session(user="bob")
        expect(c.cmd("MAIL FROM:<robert@example.org>"), 250, "2.1.0")


def header_from_daemon():
    d = Smsubmit(start=False)
    d.add_conf('senders "%s"' % d.write_file("senders", SENDERS),
               "senders check-header-from")
    d.start()
    return d


def t_senders_check_header_from():
    with header_from_daemon() as d:
        c = d.session(user="alice")
        good = message(unique("hfrom"))  # From: Alice <alice@example.org>
        qid = c.send_message("alice@example.org", ["bob@example.org"], good)
        d.wait_message(qid)
        bad = [("From: Bob <bob@example.org>",),
               ("From: alice@example.org, bob@example.org",),
               ("From: alice@example.org", "From: alice@example.org"),
               (),
               # what the check must not skip: past a NUL, a second word,
               # text after the address, an address outside the <>
               ("From: <alice@example.org>\0<bob@example.org>",),
               ("From: alice@example.org bob@example.org",),
               ("From: <alice@example.org> bob@example.org",),
               ("From: Alice <alice@example.org>, bob@example.org",),
               ("From: bob@example.org <alice@example.org>",)]
        for froms in bad:
            tag = unique("hbad")
            msg = ("\r\n".join(froms + ("To: bob@example.org",
                                        "Subject: %s" % tag)) +
                   "\r\n\r\nbody\r\n").encode()
            expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")
            expect(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5")
            expect(c.cmd("DATA"), 354)
            c.send(stuff(msg))
            expect(c.reply(), 550, "5.7.1", "From: lines %s" % (froms,))
        # and what a name may hold: quotes, commas, an @ in quotes
        for line in ('From: "Doe, Alice" <alice@example.org>',
                     'From: "alice@example.org" <alice@example.org>',
                     "From: <alice@example.org>, x <y@alice.example>",
                     "From: alice@example.org, z@alice.example"):
            qid = c.send_message("alice@example.org", ["bob@example.org"],
                                 (line + "\r\nSubject: %s\r\n\r\nx\r\n" %
                                  unique("hok")).encode())
            d.wait_message(qid)
        c.send_message("alice@example.org", ["bob@example.org"],
                       message(unique("hlast")))
        d.wait_messages(6)
        assert len(d.messages()) == 6, [m.eml[:200] for m in d.messages()]


def data_reply(c, headers):
    """Send one message with these header lines; the reply to its dot."""
    tag = unique("hdr")
    msg = ("\r\n".join(list(headers) + ["To: bob@example.org",
                                        "Subject: %s" % tag]) +
           "\r\n\r\nbody\r\n").encode()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")
    expect(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5")
    expect(c.cmd("DATA"), 354)
    c.send(stuff(msg))
    return c.reply()


def folded_from(n, last):
    """A From: field folded over n+2 lines: alice's own addresses, then
    last."""
    return ("From: alice@example.org,\r\n" +
            "".join(" a%d@alice.example,\r\n" % i for i in range(n)) +
            " " + last)


def t_senders_header_from_long_folded_refused():
    """Issue 8.5: a folded From: longer than 998 octets whose last
    address is foreign is refused (only its first 998 octets were
    checked); one too long to check at all is refused too, with 550
    5.7.1; a long one of the user's own addresses still passes."""
    with header_from_daemon() as d:
        c = d.session(user="alice")
        assert len(folded_from(100, "")) > 998
        r = data_reply(c, [folded_from(100, "mallory@foreign.example")])
        expect(r, 550, "5.7.1", "foreign address past octet 998")
        r = data_reply(c, [folded_from(400, "a@alice.example")])
        expect(r, 550, "5.7.1", "a From: too long to check")
        assert "too long" in r.text, r
        r = data_reply(c, [folded_from(100, "last@alice.example")])
        expect(r, 250, "2.0.0", "a long From: of alice's own addresses")
        c.quit()


def t_senders_header_sender_checked():
    """Issue 8.5: Sender: is checked like From:; at most one, with one
    address the user may use."""
    with header_from_daemon() as d:
        c = d.session(user="alice")
        good = "From: Alice <alice@example.org>"
        for sender in ("Sender: mallory@foreign.example",
                       "Sender: Mallory <mallory@foreign.example>",
                       "Sender: alice@example.org, b@alice.example",
                       "Sender: " + folded_from(400, "a@alice.example")[6:]):
            expect(data_reply(c, [good, sender]), 550, "5.7.1", sender[:60])
        expect(data_reply(c, [good, "Sender: alice@example.org",
                              "Sender: alice@example.org"]), 550, "5.7.1",
               "two Sender: fields")
        expect(data_reply(c, [good, "Sender: x@alice.example"]), 250,
               "2.0.0", "Sender: of alice's")
        c.quit()


def t_senders_header_from_tricks_refused():
    """What the old check let through or misread: a second address after
    white space, an obsolete "From :" field after a good one, a second
    <address>, a group, text after the address, an unbalanced comment."""
    with header_from_daemon() as d:
        c = d.session(user="alice")
        for froms in (["From: alice@example.org mallory@foreign.example"],
                      ["From: alice@example.org\r\n\tmallory@foreign.example"],
                      ["From: alice@example.org",
                       "From : mallory@foreign.example"],
                      ["From: A <alice@example.org> <mallory@foreign.example>"],
                      ["From: A <alice@example.org> mallory@foreign.example"],
                      ["From: team: alice@example.org, m@foreign.example;"],
                      ["From: <@foreign.example:alice@example.org>"],
                      ["From: alice@example.org (x, mallory@foreign.example"],
                      ["From: mallory@foreign.example <alice@example.org>"],
                      ["From: alice@example.org,,"],
                      ["From: alice@example.org\0, mallory@foreign.example"],
                      ["From: \"A\0\" <alice@example.org>, "
                       "mallory@foreign.example"]):
            expect(data_reply(c, froms), 550, "5.7.1", repr(froms))
        # and what is fine: comments, quoted names with commas, nesting
        for froms in (['From: "Alice, A." <alice@example.org>'],
                      ["From: (a (nested) mallory@foreign.example) "
                       "alice@example.org"],
                      ["From: alice@example.org (Alice)"],
                      ["From: =?utf-8?q?Al=C3=AFce?= <alice@example.org>,\r\n"
                       " b@alice.example"]):
            expect(data_reply(c, froms), 250, "2.0.0", repr(froms))
        c.quit()


def t_senders_header_section_without_blank_line_refused():
    """A line that is no header field ends the header section for
    smsubmit, but a reader that looks for the blank line takes the From:
    after it as a field: with check-header-from such a message is
    refused, never relayed with an unchecked From:."""
    with header_from_daemon() as d:
        c = d.session(user="alice")
        tag = unique("nosep")
        msg = ("From: alice@example.org\r\nSubject: %s\r\n"
               "Fr\u00e9m: x\r\nFrom: mallory@foreign.example\r\n"
               "\r\nbody\r\n" % tag).encode()
        expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5")
        expect(c.cmd("DATA"), 354)
        c.send(stuff(msg))
        r = expect(c.reply(), 550, "5.7.1", "From: after a non-header line")
        assert "blank line" in r.text, r
        c.quit()
        assert not d.find_messages(tag)
