"""MAIL, RCPT, DATA and RSET: the transaction's replies (SPEC section 5).
The shared daemon has `limit recipients 5` and `limit message-size 2M`."""

from harness import MESSAGE_SIZE, expect, message, queue_id, stuff, unique

KINDS = ("tls", "starttls")


def t_mail_before_auth(d):
    for kind in KINDS:
        c = d.client(kind)
        if kind == "starttls":
            c.ehlo()
            c.starttls()
        c.ehlo()
        expect(c.cmd("MAIL FROM:<alice@example.org>"), 530, "5.7.0", kind)
        expect(c.cmd("RCPT TO:<bob@example.org>"), 530, "5.7.0", kind)
        expect(c.cmd("DATA"), 530, "5.7.0", kind)
        c.quit()


def t_mail_ok(d):
    for kind in KINDS:
        c = d.session(kind)
        expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0", kind)
        c.quit()


def t_mail_nested(d):
    c = d.session()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 503, "5.5.1")
    # the first transaction is intact
    expect(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5")


def t_mail_bad_address(d):
    c = d.session()
    for a in ("<a@b@example.org>", "<alice@>", "<alice@exa(mple.org>",
              "<" + "a" * 65 + "@example.org>"):
        expect(c.cmd("MAIL FROM:" + a), 501, "5.1.7", "MAIL FROM:%r" % a)
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")


def t_mail_size_over_limit(d):
    c = d.session()
    expect(c.cmd("MAIL FROM:<alice@example.org> SIZE=%d" % (MESSAGE_SIZE + 1)),
           552, "5.3.4")
    expect(c.cmd("MAIL FROM:<alice@example.org> SIZE=99999999999999"),
           552, "5.3.4")
    expect(c.cmd("MAIL FROM:<alice@example.org> SIZE=%d" % MESSAGE_SIZE),
           250, "2.1.0")


def t_mail_unknown_parameter(d):
    c = d.session()
    expect(c.cmd("MAIL FROM:<alice@example.org> FROB=nicate"), 555, "5.5.4")
    expect(c.cmd("MAIL FROM:<alice@example.org> XYZZY"), 555, "5.5.4")
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")


def t_mail_body_parameters(d):
    """The advertised extensions' parameters are taken."""
    for p in (" BODY=8BITMIME", " BODY=7BIT", " SMTPUTF8",
              " BODY=8BITMIME SMTPUTF8 SIZE=100"):
        c = d.session()
        expect(c.cmd("MAIL FROM:<alice@example.org>" + p), 250, "2.1.0", p)
        c.quit()


def t_rcpt_ok(d):
    for kind in KINDS:
        c = d.session(kind)
        c.cmd("MAIL FROM:<alice@example.org>")
        expect(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5", kind)
        expect(c.cmd("RCPT TO:<carol@example.net>"), 250, "2.1.5", kind)
        c.quit()


def t_rcpt_before_mail(d):
    c = d.session()
    expect(c.cmd("RCPT TO:<bob@example.org>"), 503, "5.5.1")


def t_rcpt_bad_address(d):
    c = d.session()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")
    for a in ("<bob@@example.org>", "<@example.org>", "<bob@>",
              "<bob@example..org>"):
        expect(c.cmd("RCPT TO:" + a), 501, "5.1.3", "RCPT TO:%r" % a)
    expect(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5")


def t_rcpt_too_many(d):
    c = d.session()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")
    for i in range(5):
        expect(c.cmd("RCPT TO:<r%d@example.org>" % i), 250, "2.1.5")
    expect(c.cmd("RCPT TO:<r5@example.org>"), 452, "4.5.3")
    # the five taken are delivered
    tag = unique("toomany")
    expect(c.cmd("DATA"), 354)
    c.send(stuff(message(tag)))
    qid = queue_id(expect(c.reply(), 250, "2.0.0"))
    m = d.wait_message(qid)
    assert m.rcpt_to == ["r%d@example.org" % i for i in range(5)], m.rcpt_to


def t_data_without_mail(d):
    c = d.session()
    expect(c.cmd("DATA"), 503, "5.5.1")


def t_data_without_rcpt(d):
    c = d.session()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")
    expect(c.cmd("DATA"), 503, "5.5.1")
    # no 354 was sent: the next reply is NOOP's
    expect(c.cmd("NOOP"), 250, "2.0.0")


def t_data_without_valid_rcpt(d):
    c = d.session()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")
    expect(c.cmd("RCPT TO:<bob@@example.org>"), 501, "5.1.3")
    expect(c.cmd("DATA"), 503, "5.5.1")


def t_data_queued(d):
    for kind in KINDS:
        c = d.session(kind)
        expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5")
        r = expect(c.cmd("DATA"), 354, what=kind)
        c.send(stuff(message(unique("queued"))))
        r = expect(c.reply(), 250, "2.0.0", kind)
        d.wait_message(queue_id(r))
        c.quit()


def t_queue_ids_unique(d):
    c = d.session()
    ids = [c.send_message("alice@example.org", ["bob@example.org"],
                          message(unique("uniq"))) for _ in range(5)]
    assert len(set(ids)) == 5, ids


def t_rset_clears_transaction(d):
    c = d.session()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")
    expect(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5")
    expect(c.cmd("RSET"), 250, "2.0.0")
    expect(c.cmd("DATA"), 503, "5.5.1", "DATA after RSET")
    expect(c.cmd("RCPT TO:<bob@example.org>"), 503, "5.5.1", "RCPT after RSET")
    # a new MAIL is not nested; still authenticated
    expect(c.cmd("MAIL FROM:<other@example.org>"), 250, "2.1.0")
    expect(c.cmd("RCPT TO:<carol@example.org>"), 250, "2.1.5")
    tag = unique("rset")
    expect(c.cmd("DATA"), 354)
    c.send(stuff(message(tag)))
    m = d.wait_message(queue_id(expect(c.reply(), 250, "2.0.0")))
    assert m.mail_from == "other@example.org", m.mail_from
    assert m.rcpt_to == ["carol@example.org"], m.rcpt_to


def t_ehlo_resets_transaction(d):
    c = d.session()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")
    c.ehlo()
    expect(c.cmd("RCPT TO:<bob@example.org>"), 503, "5.5.1")
    # ...but not the authentication
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")
