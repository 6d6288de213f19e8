"""An ESL application server in outbound mode with greenswitch (PyPI), unchanged: the
switch's `socket` application connects a call here; it reads the call's data, listens to
its events, answers it (waiting for the answer's CHANNEL_EXECUTE_COMPLETE), reads a
variable, and hangs it up. Prints one line per step, and LISTENING once it listens.

Usage: greenswitch_outbound.py PORT
"""
import os
import sys

import gevent
import greenswitch


class App:
    def __init__(self, session):
        self.session = session

    def run(self):
        s = self.session
        print("CONNECTED", s.uuid == s.session_data.get("Unique-ID"), s.caller_id_number,
              s.session_data.get("Channel-State"), flush=True)
        s.myevents()
        done = s.call_command("answer", block=True, response_timeout=10)
        print("ANSWERED", done.headers.get("Event-Name"), done.headers.get("Application"), flush=True)
        print("GETVAR", s.send("getvar destination_number").data, flush=True)
        s.call_command("hangup", "USER_BUSY")
        gevent.sleep(0.5)
        print("DONE", flush=True)
        os._exit(0)


def main():
    port = int(sys.argv[1])
    server = greenswitch.OutboundESLServer(bind_address="127.0.0.1", bind_port=port, application=App,
                                           max_connections=1)
    gevent.spawn_later(0.2, lambda: print("LISTENING", flush=True))
    gevent.spawn_later(40, lambda: (print("TIMEOUT", flush=True), os._exit(1)))
    server.listen()


if __name__ == "__main__":
    main()
