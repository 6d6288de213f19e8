"""Drives ferroswitch's event socket with greenswitch (PyPI), unchanged, as an
application would: connects and authenticates, runs api and bgapi commands, subscribes
to channel events and waits for a call's. Prints one line per result for the test to
check, and READY once it listens.

Usage: greenswitch_client.py HOST PORT PASSWORD
"""
import sys

import gevent
import greenswitch


def main():
    host, port, password = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    esl = greenswitch.InboundESL(host=host, port=port, password=password)
    esl.connect()
    print("CONNECTED", flush=True)
    status = esl.send("api status").data
    print("STATUS", status.splitlines()[0].split(",")[0], flush=True)
    print("CHANNELS", repr(esl.send("api show channels as json").data), flush=True)
    print("UNKNOWN", repr(esl.send("api no_such_api").data), flush=True)

    jobs = []
    events = []
    esl.register_handle("BACKGROUND_JOB", lambda e: jobs.append(e))
    for name in ("CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_BRIDGE", "CHANNEL_HANGUP_COMPLETE"):
        esl.register_handle(name, lambda e: events.append(e))
    reply = esl.send("event plain BACKGROUND_JOB CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_BRIDGE CHANNEL_HANGUP_COMPLETE")
    print("EVENT", reply.data, flush=True)
    reply = esl.send("bgapi uptime\nJob-UUID: 11111111-2222-3333-4444-555555555555")
    print("BGAPI", reply.data, flush=True)
    for _ in range(100):
        if jobs:
            break
        gevent.sleep(0.05)
    job = jobs[0]
    print("JOB", job.headers.get("Job-UUID"), job.headers.get("Job-Command"), flush=True)
    print("READY", flush=True)
    for _ in range(600):
        if sum(1 for e in events if e.headers.get("Event-Name") == "CHANNEL_HANGUP_COMPLETE") >= 2:
            break
        gevent.sleep(0.05)
    for e in events:
        h = e.headers
        print("CALL", h.get("Event-Name"), h.get("Call-Direction"), h.get("Caller-Destination-Number"),
              h.get("Hangup-Cause", "-"), flush=True)
    esl.stop()


if __name__ == "__main__":
    main()
