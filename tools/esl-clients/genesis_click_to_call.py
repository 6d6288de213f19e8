"""Click-to-call with genesis (PyPI), unchanged, as a CRM's dialer does it: an
inbound connection subscribes to every event, then `api originate` rings phone A and,
once A answers, bridges it to phone B. Prints the reply, then every channel event as
`EV <name> <leg> <Channel-State> <Channel-Call-State> <Answer-State>` (leg A: the
originated channel, B: the bridged one) once both channels are destroyed.

Usage: genesis_click_to_call.py HOST PORT PASSWORD A B
"""
import asyncio
import sys

from genesis import Inbound


async def main():
    host, port, password, a, b = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    events = []
    destroyed = asyncio.Event()

    def on_event(e):
        if e.get("Event-Name", "").startswith("CHANNEL_"):
            events.append(e)
            if sum(1 for x in events if x.get("Event-Name") == "CHANNEL_DESTROY") >= 2:
                destroyed.set()

    async with Inbound(host, port, password) as esl:
        esl.on("*", on_event)
        reply = await esl.send("event plain ALL")
        print("EVENT", reply.get("Reply-Text"), flush=True)
        reply = await esl.send(
            "api originate {origination_caller_id_name=Click,origination_caller_id_number=9000}"
            f"user/{a} &bridge(user/{b})"
        )
        text = (reply.body or "").strip()
        print("ORIGINATED", text, flush=True)
        uuid = text.split(" ")[1] if text.startswith("+OK ") else ""
        await asyncio.wait_for(destroyed.wait(), 60)
        for e in events:
            leg = "A" if e.get("Unique-ID") == uuid else "B"
            print("EV", e.get("Event-Name"), leg, e.get("Channel-State"), e.get("Channel-Call-State"),
                  e.get("Answer-State"), flush=True)
        first = next(e for e in events if e.get("Unique-ID") == uuid)
        print("A-LEG", first.get("Call-Direction"), first.get("Caller-Caller-ID-Number"),
              first.get("Caller-Destination-Number"), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
