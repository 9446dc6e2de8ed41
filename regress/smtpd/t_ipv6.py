"""Listening on IPv6 (::1) as well."""

from harness import Skip, Smsubmit, expect, have_ipv6, message, unique


def t_ipv6_listener():
    if not have_ipv6():
        raise Skip("::1 unavailable")
    with Smsubmit(ipv6=True) as d:
        for kind in ("tls", "starttls"):
            c = d.client(kind, host="::1")
            expect(c.greeting, 220)
            if kind == "starttls":
                c.ehlo()
                c.starttls()
            c.ehlo()
            expect(c.auth_plain("alice", "alice-pw"), 235, "2.7.0")
            tag = unique("v6")
            qid = c.send_message("alice@example.org", ["bob@example.org"],
                                 message(tag))
            c.quit()
            m = d.wait_message(qid)
            assert tag.encode() in m.eml
        assert "::1" in d.log(), "the log does not name the ::1 client"
