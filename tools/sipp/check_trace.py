#!/usr/bin/env python3
"""Checks the transaction and dialog rules of the caller/callee scenarios in SIPp
-trace_msg logs (used by tools/sipp/selftest.sh). Usage: check_trace.py ROLE LOG...
ROLE is uac or uas: the side whose *sent* requests are checked. Exit 1 on a violation.

uac: the ACK of a non-2xx final response reuses the INVITE's branch, Request-URI and CSeq
     number; the ACK of a 2xx is a new branch with the INVITE's CSeq number and goes to the
     200's Contact; a CANCEL has the branch, Request-URI and CSeq number of the INVITE it
     cancels and a To without tag; BYE goes to the 200's Contact with the peer's tag and a
     CSeq above the INVITE's; the 2nd INVITE carries Proxy-Authorization (username 1000).
uas: a BYE we send has Request-URI = the INVITE's Contact, From = the INVITE's To plus
     the tag of our 200, To = the INVITE's From, the INVITE's Call-ID.
"""
import re
import sys
from collections import defaultdict


def messages(path):
    text = open(path, encoding="latin-1").read()
    for block in re.split(r"^-{20,}.*$", text, flags=re.M):
        m = re.match(r"\s*(\w+) message (sent|received)[^\n]*\n\n(.*)", block, flags=re.S)
        if not m:
            continue
        raw = m.group(3).strip("\n")
        head = raw.split("\n\n", 1)[0].split("\n")
        hdrs = defaultdict(list)
        for line in head[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                hdrs[k.strip().lower()].append(v.strip())
        yield m.group(2), head[0].strip(), hdrs


def branch(h):
    return re.search(r"branch=([^;\s]+)", h["via"][0]).group(1)


def tag(v):
    m = re.search(r";tag=([^;\s>]+)", v)
    return m.group(1) if m else None


def uri_of(v):
    m = re.search(r"<([^>]+)>", v)
    return m.group(1) if m else v.split(";")[0]


def cseq(h):
    n, meth = h["cseq"][0].split()
    return int(n), meth


def main():
    role, logs = sys.argv[1], sys.argv[2:]
    errors, checked = [], defaultdict(int)
    calls = defaultdict(list)
    for log in logs:
        for d, first, h in messages(log):
            if h.get("call-id"):
                calls[h["call-id"][0]].append((d, first, h))
    for cid, msgs in calls.items():
        def err(s):
            errors.append(f"{cid}: {s}")
        if role == "uac":
            invites = {}  # cseq -> (branch, ruri)
            finals = {}   # cseq -> (status, headers)
            for d, first, h in msgs:
                if d == "sent" and first.startswith("INVITE "):
                    n, _ = cseq(h)
                    invites[n] = (branch(h), first.split()[1], h)
                    if n >= 2:
                        pa = h.get("proxy-authorization", [""])[0]
                        if 'username="1000"' not in pa:
                            err(f"INVITE CSeq {n} without Proxy-Authorization for 1000")
                        checked["auth INVITE"] += 1
                elif d == "received" and first.startswith("SIP/2.0 "):
                    code = int(first.split()[1])
                    n, meth = cseq(h)
                    if meth == "INVITE" and code >= 200:
                        finals[n] = (code, h)
                elif d == "sent" and first.split()[0] in ("ACK", "CANCEL", "BYE"):
                    meth = first.split()[0]
                    n, m2 = cseq(h)
                    if m2 != meth:
                        err(f"{meth} with CSeq method {m2}")
                    if meth in ("ACK", "CANCEL"):
                        if n not in invites:
                            err(f"{meth} CSeq {n} matches no INVITE")
                            continue
                        ib, iruri, ih = invites[n]
                        if meth == "CANCEL" or finals.get(n, (0,))[0] >= 300:
                            if branch(h) != ib:
                                err(f"{meth} CSeq {n}: branch {branch(h)} != INVITE's {ib}")
                            if first.split()[1] != iruri:
                                err(f"{meth} CSeq {n}: Request-URI differs from the INVITE's")
                            if meth == "CANCEL" and tag(h["to"][0]):
                                err("CANCEL To has a tag")
                            if meth == "ACK" and tag(h["to"][0]) != tag(finals[n][1]["to"][0]):
                                err("non-2xx ACK To tag differs from the response's")
                            checked[f"{meth} same branch as INVITE"] += 1
                        else:
                            if branch(h) == ib:
                                err(f"2xx ACK reuses the INVITE branch {ib}")
                            fh = finals[n][1]
                            if first.split()[1] != uri_of(fh["contact"][0]):
                                err("2xx ACK Request-URI is not the 200's Contact")
                            checked["2xx ACK new branch"] += 1
                    if meth == "BYE":
                        ok = [f for f in finals.values() if f[0] == 200]
                        if not ok:
                            err("BYE without a 200 to the INVITE")
                            continue
                        fh = ok[-1][1]
                        if first.split()[1] != uri_of(fh["contact"][0]):
                            err("BYE Request-URI is not the 200's Contact")
                        if tag(h["to"][0]) != tag(fh["to"][0]):
                            err("BYE To tag is not the 200's")
                        if n <= max(invites):
                            err("BYE CSeq not above the INVITE's")
                        checked["BYE in dialog"] += 1
        else:
            inv = ok200 = None
            for d, first, h in msgs:
                if d == "received" and first.startswith("INVITE "):
                    inv = h
                elif d == "sent" and first.startswith("SIP/2.0 200") and cseq(h)[1] == "INVITE":
                    ok200 = h
                elif d == "sent" and first.startswith("BYE "):
                    if first.split()[1] != uri_of(inv["contact"][0]):
                        err("BYE Request-URI is not the INVITE's Contact")
                    if uri_of(h["from"][0]) != uri_of(inv["to"][0]) or tag(h["from"][0]) != tag(ok200["to"][0]):
                        err("BYE From is not the INVITE's To with our tag")
                    if h["to"][0] != inv["from"][0]:
                        err(f"BYE To {h['to'][0]!r} is not the INVITE's From {inv['from'][0]!r}")
                    checked["callee BYE in dialog"] += 1
    for e in errors:
        print("check_trace:", e)
    print("check_trace:", role, dict(checked), "calls:", len(calls), "violations:", len(errors))
    sys.exit(1 if errors or not checked else 0)


if __name__ == "__main__":
    main()
