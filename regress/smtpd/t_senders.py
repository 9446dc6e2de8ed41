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
