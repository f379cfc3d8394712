"""Originate, as a mixin of :class:`~eslchan.simulator.switch.Switch`: the outbound leg of a
dial string (loopback or a remote phone that rings, then answers or fails), the ``originate``
api, and the calls the :class:`~eslchan.simulator.server.Simulator` creates from Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import gevent
import gevent.event

from eslchan.esl.commands import HANGUP_CAUSES
from eslchan.simulator.channels import HangupUnwind, SimChannel, new_uuid
from eslchan.simulator.core import OriginateFailed
from eslchan.simulator.dialstring import _split_first, parse_dial_string
from eslchan.simulator.wire import SimEvent


@dataclass(frozen=True)
class Route:
    """``originate <dial> <exten> [<dialplan>] [<context>]``: once answered, the leg is
    transferred to the extension (switch_ivr_session_transfer), as uuid_transfer does: a new
    caller profile, then routing and the extension's applications."""

    dest: str
    dialplan: str
    context: str


#: what an answered originated leg runs: applications, or a route into the dialplan
Then = list[tuple[str, str]] | Route


class Originating:
    """Dialled legs and calls made from Python; ``self`` is the whole
    :class:`~eslchan.simulator.switch.Switch`."""

    # -- originate -----------------------------------------------------------------------
    def originate_leg(self, dial: str, *, originator: SimChannel | None = None,
                      app: Then | None = None,
                      cid: tuple[str, str] | None = None,
                      timeout: float | None = None) -> SimChannel:
        """Create the outbound leg of ``dial``, wait for the answer. Raises OriginateFailed.

        With ``originator`` (the bridge app) the new leg becomes its originatee; otherwise
        ``app`` is what the answered leg runs."""
        variables, endpoint = parse_dial_string(dial)
        if originator is not None:
            # a bridged leg inherits the caller's identity unless told otherwise
            cid = cid or (originator.caller_id_name, originator.caller_id_number)
        name_v = variables.get("origination_caller_id_name")
        num_v = variables.get("origination_caller_id_number")
        cid_name = name_v or (cid[0] if cid else "")  # FreeSWITCH's default name is empty
        cid_num = num_v or (cid[1] if cid else "0000000000")
        want_uuid = variables.get("origination_uuid")
        if want_uuid and want_uuid in self.channels:
            raise OriginateFailed("DESTINATION_OUT_OF_ORDER")
        timeout = float(variables.get("originate_timeout", timeout or self.originate_timeout))
        kind, _, rest = endpoint.partition("/")
        if kind == "error":
            # mod_dptools' error endpoint: the cause its name says (any case), no channel
            cause = rest.upper()
            raise OriginateFailed(cause if cause in HANGUP_CAUSES else "DESTINATION_OUT_OF_ORDER")
        if kind == "loopback":
            return self._originate_loopback(rest, variables, cid_name, cid_num, want_uuid,
                                             originator, app, timeout)
        if kind in ("user", "sofia", "verto.rtc", "freetdm", "sip", "rtc"):
            behaviour = self._remote_behaviour(kind, rest)
            return self._originate_remote(endpoint, variables, cid_name, cid_num, want_uuid,
                                          originator, app, timeout, behaviour)
        raise OriginateFailed("CHAN_NOT_IMPLEMENTED")

    def _remote_behaviour(self, kind: str, rest: str) -> str:
        """What the far end of a dialled endpoint does, or OriginateFailed for the endpoints
        FreeSWITCH refuses before any channel exists (esl-captures 14): a ``user/`` whose
        phone is not registered (USER_NOT_REGISTERED: the directory's dial-string resolves to
        error/user_not_registered), a gateway that is not configured (INVALID_GATEWAY) or not
        up (GATEWAY_DOWN). Registered phones and numbers behind a gateway answer unless
        ``endpoint_behaviour`` says otherwise."""
        target = rest.split("/")[-1]
        dest = target.split("@", 1)[0]
        if kind == "sofia" and rest.startswith("gateway/"):
            gateway = rest.split("/")[1] if rest.count("/") >= 2 else ""
            state = self.gateways.get(gateway)
            if state is None:
                raise OriginateFailed("INVALID_GATEWAY")
            if state != "up":
                raise OriginateFailed("GATEWAY_DOWN")
        behaviour = self.endpoint_behaviour.get(target) or self.endpoint_behaviour.get(dest)
        if behaviour is None:
            behaviour = "unregistered" if kind == "user" else "answer"
        if behaviour == "unregistered":
            raise OriginateFailed("USER_NOT_REGISTERED")
        return behaviour

    def _outbound(self, name: str, tmp_name: str, variables: dict[str, str], cid_name: str,
                  cid_num: str, dest: str, context: str, want_uuid: str | None,
                  originator: SimChannel | None, sip: bool, source: str,
                  callee: str | None = None) -> SimChannel:
        ch = self._new_channel(uuid=new_uuid(), name=tmp_name, direction="outbound",
                               caller_id_name=cid_name, caller_id_number=cid_num,
                               destination=dest, context=context, source=source,
                               variables={}, sip=sip)
        ch.answer_result = gevent.event.AsyncResult()  # type: ignore[attr-defined]
        ch.callee_id_name = variables.get("origination_callee_id_name") or "Outbound Call"
        ch.callee_id_number = variables.get("origination_callee_id_number") or callee or dest
        if originator is not None:
            ch.other_leg, ch.other_type = originator.uuid, "originator"
        ch.state = "CS_NONE"
        self.chan_event(ch, "CODEC", with_vars=False)
        if want_uuid:
            ch.name = name
            ch.variables["channel_name"] = name
            self.rename(ch, want_uuid)
        ch.name = name
        ch.variables["channel_name"] = name
        ch.variables.update(variables)
        if want_uuid:
            ch.variables["origination_uuid"] = want_uuid
        self.chan_event(ch, "CHANNEL_OUTGOING", with_vars=False)
        return ch

    def _originate_loopback(self, rest: str, variables: dict[str, str], cid_name: str,
                            cid_num: str, want_uuid: str | None, originator: SimChannel | None,
                            app: Then | None, timeout: float) -> SimChannel:
        parts = rest.split("/")
        ext = parts[0]
        context = parts[1] if len(parts) > 1 and parts[1] else "default"
        # the callee number is the sanitized dialled string: "esl_answer/default" -> "default"
        callee = rest.split("@", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        a = self._outbound(f"loopback/{ext}-a", f"loopback/{rest}-a", variables, cid_name,
                           cid_num, ext, context, want_uuid, originator, False, "mod_loopback",
                           callee)
        a.variables.update({"originate_early_media": "true", "originate_endpoint": "loopback"})
        b = self._new_channel(uuid=new_uuid(), name=f"loopback/{ext}-b", direction="inbound",
                              caller_id_name=cid_name, caller_id_number=cid_num,
                              destination=ext, context=context, variables={})
        b.callee_id_name, b.callee_id_number = "Outbound Call", callee
        b.variables.update(variables)
        if want_uuid:
            b.variables["origination_uuid"] = want_uuid
        a.variables["other_loopback_leg_uuid"] = b.uuid
        a.variables["loopback_leg"] = "A"
        b.variables["other_loopback_leg_uuid"] = a.uuid
        b.variables["loopback_leg"] = "B"
        a.loopback_peer, b.loopback_peer = b.uuid, a.uuid
        self.set_state(a, "CS_INIT")
        self.set_state(b, "CS_INIT")
        self.chan_event(b, "CHANNEL_CREATE")
        self.chan_event(a, "CHANNEL_CREATE")
        self.chan_event(a, "CHANNEL_ORIGINATE")
        self.set_state(a, "CS_ROUTING")
        self.set_state(a, "CS_CONSUME_MEDIA")
        apps = self.lookup(ext, context)

        def run_b() -> None:
            self.set_callstate(b, "RINGING")
            self.set_state(b, "CS_ROUTING")
            if apps is None:
                b.hit_dialplan = True
                raise HangupUnwind(self._no_route(b))
            b.hit_dialplan = True
            b.variables["DP_MATCH"] = ext
            self.set_state(b, "CS_EXECUTE")
            self.run_apps(b, apps)

        self.start(b, run_b)
        self._await_answer(a, timeout)
        return self._launch_originated(a, originator, app)

    def _originate_remote(self, endpoint: str, variables: dict[str, str], cid_name: str,
                          cid_num: str, want_uuid: str | None, originator: SimChannel | None,
                          app: Then | None, timeout: float,
                          behaviour: str = "answer") -> SimChannel:
        """A SIP leg: created, then the far end's 180 (CHANNEL_PROGRESS, callstate RINGING)
        or 183 with media (``early``: CHANNEL_PROGRESS_MEDIA, EARLY), then after
        ``ring_seconds`` its 200 (``answer``, ``early``), 486 (``busy``), 603 (``reject``),
        or nothing until the originate times out (``no_answer``)."""
        kind, _, target = endpoint.partition("/")
        name = endpoint if kind == "sofia" else f"sofia/internal/{target}"
        dest = target.split("@", 1)[0].split("/")[-1]
        ch = self._outbound(name, name, variables, cid_name, cid_num, dest, "default",
                            want_uuid, originator, True, "mod_sofia")
        if kind == "user":
            user, _, domain = target.partition("@")
            domain = domain or self.domain
            ch.variables.update({"dialed_user": user, "dialed_domain": domain})
            ch.variables.setdefault("presence_id", f"{user}@{domain}")
        self._originated_leg_up(ch)

        def ring() -> None:
            if behaviour == "early":
                self.pre_answer(ch)
            else:
                self.ring_ready(ch)
            self.sleep(self.ring_seconds)
            if ch.gone or ch.hangup_cause:
                return
            if behaviour in ("answer", "early"):
                self._mark_answered(ch)
            elif behaviour == "busy":
                self.hangup(ch.uuid, "USER_BUSY")
            elif behaviour == "reject":
                self.hangup(ch.uuid, "CALL_REJECTED")

        gevent.spawn(ring)
        self._await_answer(ch, timeout)
        return self._launch_originated(ch, originator, app)

    def _originated_leg_up(self, ch: SimChannel) -> None:
        """A dialled (non-loopback) leg comes up: the events FreeSWITCH sends until it rings."""
        self.set_state(ch, "CS_INIT")
        self.chan_event(ch, "CHANNEL_CREATE")
        self.chan_event(ch, "CHANNEL_ORIGINATE")
        self.set_state(ch, "CS_ROUTING")
        self.set_state(ch, "CS_CONSUME_MEDIA")

    def _await_answer(self, ch: SimChannel, timeout: float) -> None:
        res: gevent.event.AsyncResult = ch.answer_result  # type: ignore[attr-defined]
        watcher = self.listeners

        def on_event(ev: SimEvent) -> None:
            if ev.unique_id == ch.uuid and ev.name == "CHANNEL_HANGUP" and not res.ready():
                res.set("HANGUP")

        watcher.append(on_event)
        try:
            if ch.hangup_cause and not res.ready():
                res.set("HANGUP")
            outcome = res.get(timeout=timeout / self.speed) if not res.ready() else res.get()
        except gevent.Timeout:
            outcome = "TIMEOUT"
        finally:
            watcher.remove(on_event)
        if outcome == "ANSWER":
            return
        if outcome == "TIMEOUT":
            self.hangup(ch.uuid, "NO_ANSWER")
            raise OriginateFailed("NO_ANSWER")
        self._ensure_runner(ch)
        # over loopback the A leg only ever sees its twin clear normally
        cause = "NORMAL_CLEARING" if ch.source == "mod_loopback" else ch.hangup_cause
        raise OriginateFailed(cause or "NORMAL_CLEARING")

    def _ensure_runner(self, ch: SimChannel) -> None:
        if ch.greenlet is None and not ch.gone:
            self.start(ch, lambda: self.wait(ch, None))

    def _launch_originated(self, ch: SimChannel, originator: SimChannel | None,
                           app: Then | None) -> SimChannel:
        ch.variables["endpoint_disposition"] = "ANSWER"
        self.fire_hooks(ch, "originate")
        if originator is not None:
            self.start(ch, lambda: self._exchange(ch, originator.uuid))
            return ch
        ch.hit_dialplan = True
        self.sort_cid(ch)
        if isinstance(app, Route):
            def route() -> None:
                self.transfer(ch, app.dest, app.dialplan, app.context)
                self.wait(ch, None)

            self.start(ch, route)
            return ch
        apps = app or [("park", "")]

        def run() -> None:
            self.set_state(ch, "CS_EXECUTE")
            self.run_apps(ch, apps)

        self.start(ch, run)
        return ch

    def originate(self, args: str) -> str:
        """The ``originate`` api: ``<url> <exten>|&app(args) [dialplan] [context] [cid_name]
        [cid_num] [timeout]``."""
        url, rest = _split_first(args)
        if not url:
            return ("-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] "
                    "[<context>] [<cid_name>] [<cid_num>] [<timeout_sec>]\n")
        target, rest = _split_first(rest)
        extra = rest.split()
        apps: Then
        if not target or target.startswith("&"):
            m = re.match(r"^&([\w.-]+)(?:\((.*)\))?$", target or "&park", re.S)
            if not m:
                return "-ERR INVALID_GATEWAY\n"
            apps = [(m.group(1), m.group(2) or "")]
        else:
            dp = extra[0] if extra else "XML"
            ctx = extra[1] if len(extra) > 1 else "default"
            apps = Route(target, dp, ctx)
        cid = None
        if len(extra) >= 4:
            cid = (extra[2], extra[3])
        timeout = float(extra[4]) if len(extra) >= 5 and extra[4].isdigit() else None
        try:
            ch = self.originate_leg(url, app=apps, cid=cid, timeout=timeout)
        except OriginateFailed as e:
            return f"-ERR {e.cause}\n"
        return f"+OK {ch.uuid}\n"

    # -- calls created from Python -------------------------------------------------------
    def create_call(self, *, a_vars: dict[str, str], b_vars: dict[str, str], caller_id_name: str,
                    caller_id_number: str, destination: str, answered: bool, bridged: bool,
                    a_name: str, b_name: str) -> tuple[SimChannel, SimChannel | None]:
        """A phone calls in (inbound SIP leg) and the switch dials the callee (outbound leg)."""
        a = self._new_channel(uuid=new_uuid(), name=a_name, direction="inbound",
                              caller_id_name=caller_id_name, caller_id_number=caller_id_number,
                              destination=destination, context="default", source="mod_sofia",
                              variables=a_vars, sip=True)
        self.set_state(a, "CS_INIT")
        self.chan_event(a, "CHANNEL_CREATE")
        self.set_callstate(a, "RINGING")
        self.set_state(a, "CS_ROUTING")
        a.hit_dialplan = True
        self.set_state(a, "CS_EXECUTE")
        if not bridged:
            def run_a() -> None:
                if answered:
                    self._run_app(a, "answer", "")
                self._run_app(a, "park", "")
            self.start(a, run_a)
            return a, None
        b = self._new_channel(uuid=new_uuid(), name=b_name, direction="outbound",
                              caller_id_name=caller_id_name, caller_id_number=caller_id_number,
                              destination=destination, context="default", source="mod_sofia",
                              variables=b_vars, sip=True)
        b.callee_id_name, b.callee_id_number = destination, destination
        b.other_leg, b.other_type = a.uuid, "originator"
        b.answer_result = gevent.event.AsyncResult()  # type: ignore[attr-defined]
        self.chan_event(b, "CHANNEL_OUTGOING", with_vars=False)
        self._originated_leg_up(b)
        self.ring_ready(b)
        self.set_callstate(a, "RING_WAIT")
        ready = gevent.event.Event()

        def run_a2() -> None:
            app_uuid = new_uuid()
            data = [("Application-Data", f"sofia/internal/{destination}")]
            a.app, a.app_data = "bridge", data[0][1]
            a.variables["current_application"] = "bridge"
            self.chan_event(a, "CHANNEL_EXECUTE", extra=[("Application", "bridge")] + data
                            + [("Application-UUID", app_uuid)])
            ready.set()
            try:
                if not answered:
                    # ringing until someone answers (answer_call) or hangs up
                    while True:
                        msg = self.wait(a, None, idle=True)
                        if msg and msg[0] == "answer":
                            break
                self._mark_answered(b)
                self._mark_answered(a)
                self._bridged(a, b, originator=True)
            finally:
                if not a.gone:
                    self.chan_event(a, "CHANNEL_EXECUTE_COMPLETE",
                                    extra=[("Application", "bridge")] + data
                                    + [("Application-Response", "_none_"),
                                       ("Application-UUID", app_uuid)])
                a.app = None

        self.start(a, run_a2)
        ready.wait(timeout=1.0)
        self.start(b, lambda: self._exchange(b, a.uuid))
        return a, b
