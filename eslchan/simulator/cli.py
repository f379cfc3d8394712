"""``eslchan simulate``: the FreeSWITCH simulator on its own, with demo calls that come and go,
so any ESL client (fs_cli, eslchan, a script) can be pointed at it."""

from __future__ import annotations

import argparse
import random
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.event

from eslchan.simulator.coredb import DbLag
from eslchan.simulator.interfaces import CATALOGUE, DEFAULT_MODULES
from eslchan.simulator.server import Simulator

DEMO_ACCOUNT = "0123456789abcdef0123456789abcdef"


@dataclass(frozen=True)
class Party:
    """Who a demo call comes from: the channel variables SPEC §4 reads, and a caller id."""

    account_id: str
    user_id: str
    device_id: str
    name: str
    number: str


def demo_parties(account: str) -> list[Party]:
    people = (("a", "d", "Alice", "1001"), ("b", "e", "Bob", "1002"), ("c", "f", "Carol", "1003"))
    tail = "1b2c3d4e5f60718293a4b5c6d7e8f90"
    return [Party(account, u + tail, d + tail, name, ext) for u, d, name, ext in people]


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host or "127.0.0.1", int(port)


def _ms_range(value: str) -> tuple[float, float]:
    """``MIN-MAX`` (or one number) in milliseconds -> seconds."""
    low, sep, high = value.partition("-")
    try:
        lo = float(low)
        hi = float(high) if sep else lo
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN-MAX milliseconds, got {value!r}") from None
    if not 0 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"need 0 <= MIN <= MAX, got {value!r}")
    return lo / 1000.0, hi / 1000.0


def db_lag(args: argparse.Namespace) -> DbLag:
    """The core database's lag the options ask for (the real switch's by default)."""
    if args.no_db_lag:
        return DbLag.off()
    return DbLag(insert=args.db_lag_insert, delete=args.db_lag_delete)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="eslchan simulate",
                                description="Run the FreeSWITCH event socket simulator.")
    p.add_argument("--listen", type=_listen, default=("127.0.0.1", 8021),
                   help="HOST:PORT to listen on (default 127.0.0.1:8021; port 0 = any)")
    p.add_argument("--password", default="ClueCon", help="ESL password (default ClueCon)")
    p.add_argument("--calls", type=int, default=3,
                   help="demo calls kept alive at a time (0 = none; default 3)")
    p.add_argument("--call-seconds", type=float, default=30.0,
                   help="mean length of a demo call in seconds (default 30)")
    p.add_argument("--speed", type=float, default=1.0, help="time factor (default 1.0)")
    p.add_argument("--heartbeat", type=float, default=20.0,
                   help="HEARTBEAT interval in seconds (default 20)")
    p.add_argument("--hostname", default="sim", help="FreeSWITCH-Hostname of events")
    p.add_argument("--account", default=DEMO_ACCOUNT, help="account id of the demo calls")
    p.add_argument("--load", action="append", default=[], metavar="MODULE",
                   choices=sorted(set(CATALOGUE) - DEFAULT_MODULES),
                   help="also load this FreeSWITCH module (e.g. mod_flite, mod_soundtouch); the "
                        "default set is the recorded server's, with no TTS engine")
    p.add_argument("--sound-files", action="store_true",
                   help="the say engine finds its sound files (the recorded server had none)")
    lag = DbLag()
    p.add_argument("--db-lag-insert", type=_ms_range, default=lag.insert, metavar="MIN-MAX",
                   help="ms before `show channels`/`show calls` list a new or changed channel "
                        "(default 20-180, as FreeSWITCH's core database; simulated time)")
    p.add_argument("--db-lag-delete", type=_ms_range, default=lag.delete, metavar="MIN-MAX",
                   help="ms they keep listing a destroyed channel (default 170-200)")
    p.add_argument("--no-db-lag", action="store_true",
                   help="`show channels`/`show calls` exact at once (kinder than FreeSWITCH)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated delays (default 0)")
    p.add_argument("--register", action="append", default=[], type=_phone, metavar="USER[=BEHAVIOUR]",
                   help="a registered phone: user/USER rings it, and it answers (or early, busy, "
                        "no_answer, reject); the demo parties' phones are registered, any other "
                        "user/ endpoint is not (USER_NOT_REGISTERED), as on a real directory")
    p.add_argument("--gateway", action="append", default=[], metavar="NAME",
                   help="a sofia gateway that is up: sofia/gateway/NAME/<number> dials through it")
    return p.parse_args(list(argv))


BEHAVIOURS = ("answer", "early", "busy", "no_answer", "reject")


def _phone(value: str) -> tuple[str, str]:
    user, _, behaviour = value.partition("=")
    if not user or (behaviour and behaviour not in BEHAVIOURS):
        raise argparse.ArgumentTypeError(f"USER or USER=one of {', '.join(BEHAVIOURS)}, not {value!r}")
    return user, behaviour or "answer"


class DemoCalls:
    """Keeps ``count`` calls up; each lasts a random while around ``mean_seconds`` (simulated
    time) and is replaced when it ends. Line ``i`` calls from ``parties[i]`` to another party.
    Like calls on a real PBX, each rings a few seconds before it is answered, and about one in
    three is put on hold for a while, so a live board shows every state. The calls end like
    real ones: the caller's leg has hangup_after_bridge set (as Kazoo sets it), so when either
    side hangs up, by a flow or by the phone, the other goes too; when the call's time is up
    both phones hang up whatever a flow did with the legs."""

    def __init__(self, sim: Simulator, count: int, mean_seconds: float, parties: Sequence[Party]) -> None:
        self.sim, self.count, self.mean, self.parties = sim, count, mean_seconds, list(parties)
        self._greenlets: list[gevent.Greenlet] = []

    def start(self) -> None:
        for i in range(self.count):
            self._greenlets.append(gevent.spawn(self._slot, i))

    def stop(self) -> None:
        gevent.killall(self._greenlets, block=False)

    def _talk(self, call: Any, seconds: float) -> bool:
        """Wait while the call goes on, at most ``seconds``; False once both legs are gone (a
        flow or a hangup ended it), so its line places the next call soon, as a busy PBX would."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if all(self.sim.channel(uuid) is None for uuid in call.uuids):
                return False
            gevent.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
        return True

    def _slot(self, i: int) -> None:
        rng = random.Random(i)
        gevent.sleep(rng.uniform(0, 1.0))
        while True:
            caller = self.parties[i % len(self.parties)]
            callee = rng.choice(self.parties)
            call = self.sim.create_call(account_id=caller.account_id, user_id=caller.user_id,
                                        device_id=caller.device_id, caller_id_name=caller.name,
                                        caller_id_number=caller.number, destination=callee.number,
                                        username=caller.name.lower(), answered=False,
                                        variables={"hangup_after_bridge": "true"})
            gevent.sleep(rng.uniform(1.0, 4.0) / self.sim.speed)
            if call.b_uuid is not None and self.sim.channel(call.b_uuid) is not None:
                self.sim.answer_call(call.b_uuid)
            talk = rng.uniform(0.5, 1.5) * self.mean / self.sim.speed
            if rng.random() < 0.35:
                if self._talk(call, talk / 3):
                    self.sim.api(f"uuid_hold {call.a_uuid}")
                if self._talk(call, talk / 3):
                    self.sim.api(f"uuid_hold off {call.a_uuid}")
                self._talk(call, talk / 3)
            else:
                self._talk(call, talk)
            for uuid in call.uuids:
                if self.sim.channel(uuid) is not None:
                    self.sim.hangup(uuid)
            gevent.sleep(rng.uniform(0.5, 2.0) / self.sim.speed)


def main(argv: Sequence[str]) -> int:
    """Entry point of ``eslchan simulate``; returns the process exit code."""
    args = parse_args(argv)
    host, port = args.listen
    sim = Simulator(host, port, args.password, speed=args.speed,
                    heartbeat_interval=args.heartbeat, hostname=args.hostname,
                    modules=DEFAULT_MODULES | set(args.load), sound_files=args.sound_files,
                    db_lag=db_lag(args), seed=args.seed)
    try:
        sim.start()
    except OSError as exc:
        print(f"eslchan simulate: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 2
    parties = demo_parties(args.account)
    for party in parties:
        sim.register(party.number)
    for user, behaviour in args.register:
        sim.register(user, behaviour)
    for gateway in args.gateway:
        sim.add_gateway(gateway)
    demo = DemoCalls(sim, max(0, args.calls), args.call_seconds, parties)
    demo.start()
    print(f"FreeSWITCH simulator listening on {sim.host}:{sim.port} (password "
          f"{'ClueCon' if args.password == 'ClueCon' else '<as given>'}), "
          f"{args.calls} demo call(s). Stop with Ctrl-C.", flush=True)
    stop = gevent.event.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            gevent.signal_handler(sig, stop.set)
        except (ValueError, AttributeError):  # not the main thread
            pass
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        demo.stop()
        sim.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    from gevent import monkey

    monkey.patch_all()
    sys.exit(main(sys.argv[1:]))
