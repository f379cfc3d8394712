"""The ``api`` commands the simulator understands, with FreeSWITCH's reply texts."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import gevent

from eslchan.simulator.channels import CALL_FIELDS, SHOW_CHANNEL_FIELDS, SimChannel, call_row
from eslchan.simulator.core import VERSION
from eslchan.simulator.dialstring import split_vars
from eslchan.simulator.switch import Switch
from eslchan.simulator.wire import SimEvent

#: ``show <type>s`` lists one interface type (type, name, ikey)
INTERFACE_KINDS = frozenset({"codec", "dialplan", "file", "timer", "chat", "limit", "say",
                             "management", "endpoint"})

NO_CHANNEL = "-ERR No such channel!\n"
NOT_FOUND = "-ERR {name} Command not found!\n"
UNMODELLED_UUID_COMMANDS = (
    "uuid_displace", "uuid_phone_event", "uuid_simplify", "uuid_flush_dtmf", "uuid_buglist",
    "uuid_fileman", "uuid_limit", "uuid_media", "uuid_debug_media", "uuid_warning",
    "uuid_session_heartbeat", "uuid_chat", "uuid_video_refresh", "uuid_early_ok",
    "uuid_preprocess", "uuid_deflect", "uuid_redirect",
)


class _Refused(Exception):
    """A handler's early answer (usage text, no such channel): ``run`` returns it as the body."""


class ApiCommands:
    """api/bgapi command table. Each handler takes the argument string, returns the body."""

    def __init__(self, switch: Switch, *, on_shutdown: Callable[[], None] | None = None) -> None:
        self.sw = switch
        self.on_shutdown = on_shutdown
        self.table: dict[str, Callable[[str], str]] = {
            "status": self.status, "version": self.version, "show": self.show,
            "originate": self.sw.originate, "uuid_kill": self.uuid_kill,
            "uuid_exists": self.uuid_exists, "uuid_getvar": self.uuid_getvar,
            "uuid_setvar": self.uuid_setvar, "uuid_setvar_multi": self.uuid_setvar_multi,
            "uuid_dump": self.uuid_dump, "uuid_answer": self.uuid_answer,
            "uuid_park": self.uuid_park, "uuid_transfer": self.uuid_transfer,
            "uuid_broadcast": self.uuid_broadcast, "uuid_break": self.uuid_break,
            "uuid_hold": self.uuid_hold, "uuid_record": self.uuid_record,
            "uuid_send_dtmf": self.uuid_send_dtmf, "uuid_audio": self.uuid_audio,
            "uuid_bridge": self.uuid_bridge, "hupall": self.hupall, "shutdown": self.shutdown,
            "eval": lambda a: a, "echo": lambda a: a, "global_getvar": lambda a: "",
            "hostname": lambda a: self.sw.hostname, "uptime": self.uptime,
            "uuid_pre_answer": self.uuid_pre_answer, "uuid_ring_ready": self.uuid_ring_ready,
            "uuid_outgoing_answer": self.uuid_answer, "uuid_recv_dtmf": self.uuid_recv_dtmf,
            "uuid_dual_transfer": self.uuid_dual_transfer, "module_exists": self.module_exists,
        }
        # accepted for a live channel, with no effect the model tracks
        for name in UNMODELLED_UUID_COMMANDS:
            self.table[name] = self.uuid_audio_like

    def run(self, line: str) -> tuple[str, str, str]:
        """Execute ``name args``; returns (name, args, body). An api no loaded module
        provides is not found, as on FreeSWITCH."""
        name, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        fn = self.table.get(name)
        if fn is None or not self.sw.interfaces.has("api", name):
            return name, arg, NOT_FOUND.format(name=name)
        try:
            return name, arg, fn(arg)
        except _Refused as refused:
            return name, arg, str(refused)

    def _chan(self, uuid: str) -> SimChannel | None:
        ch = self.sw.channels.get(uuid.strip())
        if ch is None or ch.gone:
            return None
        return ch

    def _required(self, uuid: str) -> SimChannel:
        """The live channel ``uuid`` names, else the command answers FreeSWITCH's no-such-channel."""
        ch = self._chan(uuid)
        if ch is None:
            raise _Refused(NO_CHANNEL)
        return ch

    def _target(self, arg: str, need: int = 1, usage: str | None = None) -> tuple[SimChannel, list[str]]:
        """``<uuid> …`` commands: the channel and the words; with a usage text, fewer than ``need``
        words answer it (FreeSWITCH checks the count before looking the channel up)."""
        parts = arg.split()
        if usage is not None and len(parts) < need:
            raise _Refused(usage)
        return self._required(parts[0] if parts else ""), parts

    # -- system ------------------------------------------------------------------------
    def _uptime_text(self) -> str:
        up = max(0.0, time.time() - self.sw.started)
        us = int(up * 1_000_000)
        secs, us = divmod(us, 1_000_000)
        ms, us = divmod(us, 1000)
        mins, secs = divmod(secs, 60)
        hours, mins = divmod(mins, 60)
        days, hours = divmod(hours, 24)
        years, days = divmod(days, 365)
        return (f"{years} years, {days} days, {hours} hours, {mins} minutes, {secs} seconds, "
                f"{ms} milliseconds, {us} microseconds")

    def status(self, arg: str) -> str:
        n = len(self.sw.channels)
        return (
            f"UP {self._uptime_text()}\n"
            "FreeSWITCH (Version 1.10.12-release  64bit) is ready\n"
            f"{self.sw.sessions_since_startup} session(s) since startup\n"
            f"{n} session(s) - peak {self.sw.peak}, last 5min {self.sw.peak} \n"
            "0 session(s) per Sec out of max 500, peak 0, last 5min 0 \n"
            "1000 session(s) max\nmin idle cpu 0.00/99.60\nCurrent Stack Size/Max 240K/8192K\n"
        )

    def uptime(self, arg: str) -> str:
        return f"{int(time.time() - self.sw.started)}\n"

    def version(self, arg: str) -> str:
        return f"FreeSWITCH Version {VERSION} ( 64bit)\n"

    def show(self, arg: str) -> str:
        if not self.sw.core_db:
            return "-ERR SQL disabled, no data available!\n"
        words = arg.split()
        as_json = len(words) >= 3 and words[-2] == "as" and words[-1] == "json"
        what = words[0] if words else ""
        rows: list[dict[str, str]]
        # channels and calls are read from the core database, which lags the events (coredb)
        if what == "channels":
            rows = self.sw.coredb.channel_rows()
            fields = SHOW_CHANNEL_FIELDS
        elif what == "calls":
            rows = [call_row(a, b) for a, b in self.sw.coredb.call_rows()]
            fields = CALL_FIELDS
        elif what in ("application", "api"):
            # show application|api [<name>] [as json]: name, description, syntax, ikey
            name = words[1] if len(words) > 1 and words[1] != "as" else None
            fields = ["name", "description", "syntax", "ikey"]
            rows = [{"name": n, "description": f"{n} ({m})", "syntax": "", "ikey": m}
                    for _, n, m in self.sw.interfaces.rows(what, name)]
        elif what == "modules":
            fields = ["type", "name", "ikey", "filename"]
            rows = [{"type": k, "name": n, "ikey": m, "filename": f"/usr/lib/freeswitch/mod/{m}.so"}
                    for k, n, m in self.sw.interfaces.rows()]
        elif what == "interfaces" or what.rstrip("s") in INTERFACE_KINDS:
            kind = None if what == "interfaces" else what.rstrip("s")
            fields = ["type", "name", "ikey"]
            rows = [{"type": k, "name": n, "ikey": m} for k, n, m in self.sw.interfaces.rows(kind)]
        else:
            return "-USAGE: codec|endpoint|application|api|dialplan|file|timer|calls [count]|" \
                   "channels [count|like <match string>]|calls|detailed_calls|bridged_calls|" \
                   "detailed_bridged_calls|aliases|complete|chat|management|modules|nat_map|say|" \
                   "interfaces|interface_types|tasks|limits|status\n"
        if as_json:
            if not rows:
                return '{"row_count": 0}\n'
            return json.dumps({"row_count": len(rows), "rows": rows}, ensure_ascii=False,
                              separators=(",", ":")) + "\n"
        lines = [",".join(fields)]
        lines += [",".join(r.get(f, "") for f in fields) for r in rows]
        return "\n".join(lines) + f"\n\n{len(rows)} total.\n" if rows else f"\n{len(rows)} total.\n"

    def module_exists(self, arg: str) -> str:
        return "true" if arg.strip() in self.sw.interfaces.modules else "false"

    def shutdown(self, arg: str) -> str:
        if self.on_shutdown is not None:
            gevent.spawn_later(0.05, self.on_shutdown)
        return "+OK\n"

    def hupall(self, arg: str) -> str:
        parts = arg.split()
        cause = parts[0] if parts else "NORMAL_CLEARING"
        var = parts[1] if len(parts) > 1 else None
        val = parts[2] if len(parts) > 2 else None
        for ch in list(self.sw.channels.values()):
            if var is not None and ch.variables.get(var) != val:
                continue
            self.sw.hangup(ch.uuid, cause)
        return f"+OK hangup all channels with cause {cause}\n"

    # -- per channel ---------------------------------------------------------------------
    def uuid_kill(self, arg: str) -> str:
        ch, parts = self._target(arg, 1, "-USAGE: <uuid> [cause]\n")
        cause = parts[1] if len(parts) > 1 else "NORMAL_CLEARING"
        gevent.spawn(self.sw.hangup, ch.uuid, cause)
        return "+OK\n"

    def uuid_exists(self, arg: str) -> str:
        return "true" if self._chan(arg.split()[0] if arg.split() else "") else "false"

    def uuid_getvar(self, arg: str) -> str:
        ch, parts = self._target(arg, 2, "-USAGE: <uuid> <var>\n")
        return ch.variables.get(parts[1], "_undef_")

    def uuid_setvar(self, arg: str) -> str:
        parts = arg.split(" ", 2)
        if len(parts) < 2 or not parts[1]:
            return "-USAGE: <uuid> <var> [value]\n"
        ch = self._required(parts[0])
        if len(parts) == 3 and parts[2] != "":
            ch.variables[parts[1]] = parts[2]
        else:
            ch.variables.pop(parts[1], None)
        return "+OK\n"

    def uuid_setvar_multi(self, arg: str) -> str:
        uuid, _, rest = arg.partition(" ")
        if not rest:
            return "-USAGE: <uuid> <var>=<value>;<var>=<value>...\n"
        ch = self._required(uuid)
        for part in rest.split(";"):
            if "=" in part:
                k, v = part.split("=", 1)
                if v:
                    ch.variables[k.strip()] = v
                else:
                    ch.variables.pop(k.strip(), None)
        return "+OK\n"

    def uuid_dump(self, arg: str) -> str:
        ch, parts = self._target(arg, 1, "-USAGE: <uuid> [format]\n")
        fmt = parts[1] if len(parts) > 1 else "txt"
        other = self.sw.channels.get(ch.other_leg) if ch.other_leg else None
        ev = SimEvent("CHANNEL_DATA", self.sw.common("CHANNEL_DATA")
                      + ch.headers(with_vars=True, other=other))
        # uuid_dump's event is built but never fired
        ev.headers[9:12] = [("Event-Calling-File", "mod_commands.c"),
                            ("Event-Calling-Function", "uuid_dump_function"),
                            ("Event-Calling-Line-Number", "6468")]
        if fmt == "json":
            return ev.json_text().decode("utf-8")
        if fmt == "xml":
            return ev.xml_text().decode("utf-8")
        return ev.plain_text().decode("utf-8")

    def uuid_answer(self, arg: str) -> str:
        ch, _ = self._target(arg)
        self.sw.answer(ch)
        return "+OK\n"

    def uuid_park(self, arg: str) -> str:
        ch, _ = self._target(arg)
        self.sw.transfer(ch, "park", "inline", ch.context)
        return "+OK\n"

    def uuid_transfer(self, arg: str) -> str:
        parts = _quoted_split(arg)
        usage = "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n"
        if len(parts) < 2:
            return usage
        ch = self._required(parts[0])
        legs = [ch]
        rest = parts[1:]
        if rest[0] in ("-bleg", "-both"):
            flag = rest.pop(0)
            other = self._chan(ch.other_leg or "") if ch.other_leg else None
            if other is None:
                return "-ERR Operation Failed\n" if flag == "-bleg" else usage
            legs = [other] if flag == "-bleg" else [ch, other]
        if not rest:
            return usage
        dest = rest[0]
        dialplan = rest[1] if len(rest) > 1 else "XML"
        context = rest[2] if len(rest) > 2 else "default"
        if dialplan.lower() != "inline" and self.sw.lookup(dest, context) is None:
            # FreeSWITCH accepts it and the channel then hangs up NO_ROUTE_DESTINATION
            pass
        for leg in legs:
            self.sw.transfer(leg, dest, dialplan, context)
        return "+OK\n"

    def uuid_broadcast(self, arg: str) -> str:
        ch, parts = self._target(arg, 2, "-USAGE: <uuid> <path> [aleg|bleg|holdb|both]\n")
        where = parts[2] if len(parts) > 2 else "aleg"
        path = parts[1]
        app, _, app_arg = path.partition("::")
        targets = []
        if where in ("aleg", "both", "holdb"):
            targets.append(ch)
        if where in ("bleg", "both"):
            other = self._chan(ch.other_leg or "")
            if other is not None:
                targets.append(other)
        for t in targets:
            if app_arg or path.endswith("::"):
                self.sw.broadcast(t, app, app_arg)
            else:
                self.sw.broadcast(t, "playback", path)
        return "+OK Message sent\n"

    def uuid_break(self, arg: str) -> str:
        """uuid_break <uuid> [all|both]: ``all`` also drops queued private commands. A
        playback stops; an endless_playback only starts over."""
        ch, parts = self._target(arg)
        flags = " ".join(parts[1:])
        self.sw.break_media(ch, "all" in flags)
        if "both" in flags:
            other = self._chan(ch.other_leg or "")
            if other is not None:
                self.sw.break_media(other, "all" in flags)
        return "+OK\n"

    def uuid_hold(self, arg: str) -> str:
        """uuid_hold [off|toggle] <uuid>: an unknown uuid is "+OK Success" (switch_ivr_hold_uuid
        succeeds when it finds no session)."""
        parts = arg.split()
        mode = "on"
        if parts and parts[0] in ("off", "toggle"):
            mode = parts.pop(0)
        if not parts:
            return "-USAGE: [off|toggle] <uuid> [<display>]\n"
        ch = self._chan(parts[0])
        if ch is None:
            return "+OK Success\n"
        return self.sw.hold(ch, mode)

    def uuid_record(self, arg: str) -> str:
        usage = "-USAGE: <uuid> [start|stop|mask|unmask] <path> [<limit>] [<recording_vars>]\n"
        ch, parts = self._target(arg, 3, usage)
        return self.sw.record(ch, parts[1], parts[2])

    def uuid_send_dtmf(self, arg: str) -> str:
        ch, parts = self._target(arg, 2, "-USAGE: <uuid> <dtmf_data>\n")
        digits = parts[1].split("@", 1)[0]
        other = self._chan(ch.other_leg or ch.loopback_peer or "")
        # the digits go out of this channel: the far side hears them
        gevent.spawn(self.sw.dtmf, other if other is not None else ch, digits, "APP")
        return "+OK Success\n"

    def uuid_audio(self, arg: str) -> str:
        usage = "-USAGE: <uuid> [start [read|write] [mute|level <level>]|stop]\n"
        ch, parts = self._target(arg, 2, usage)
        if parts[1] == "stop":
            if ch.audio:  # the "audio" media bug goes
                ch.audio.clear()
                self.sw.chan_event(ch, "MEDIA_BUG_STOP", extra=[
                    ("Media-Bug-Function", "audio"), ("Media-Bug-Target", "stop")])
            return "+OK Success\n"
        if parts[1] != "start" or len(parts) < 5 or parts[2] not in ("read", "write") \
                or parts[3] not in ("mute", "level"):
            return usage
        try:
            level = int(parts[4])
        except ValueError:
            return usage
        if not ch.audio:  # switch_ivr_session_audio adds one "audio" media bug per channel
            self.sw.chan_event(ch, "MEDIA_BUG_START", extra=[
                ("Media-Bug-Function", "audio"), ("Media-Bug-Target", parts[3])])
        ch.audio[f"{parts[2]}_{parts[3]}"] = level
        return "+OK Success\n"

    def uuid_audio_like(self, arg: str) -> str:
        self._target(arg)
        return "+OK Success\n"

    def uuid_pre_answer(self, arg: str) -> str:
        ch, _ = self._target(arg)
        self.sw.app_pre_answer(ch, "")
        return "+OK\n"

    def uuid_ring_ready(self, arg: str) -> str:
        ch, _ = self._target(arg)
        self.sw.app_ring_ready(ch, "")
        return "+OK\n"

    def uuid_recv_dtmf(self, arg: str) -> str:
        parts = arg.split()
        if len(parts) < 2:
            return "-USAGE: <uuid> <dtmf_data>\n"
        ch = self._chan(parts[0])
        if ch is None:
            return "-ERR Cannot locate session!\n"
        gevent.spawn(self.sw.dtmf, ch, parts[1], "APP")
        return f"+OK {parts[0]} received DTMF {parts[1]}.\n"

    def uuid_dual_transfer(self, arg: str) -> str:
        usage = ("-USAGE: <uuid> <A-dest-exten>[/<A-dialplan>][/<A-context>] "
                 "<B-dest-exten>[/<B-dialplan>][/<B-context>]\n")
        ch, parts = self._target(arg, 3, usage)
        other = self._chan(ch.other_leg or "")
        for leg, spec in ((ch, parts[1]), (other, parts[2])):
            if leg is None:
                continue
            dest, dp, ctx = (spec.split("/") + ["XML", "default"])[:3]
            self.sw.transfer(leg, dest, dp, ctx)
        return "+OK\n"

    def uuid_bridge(self, arg: str) -> str:
        """uuid_bridge <uuid> <other_uuid> [<fallback_uuid>]: ``-ERR Invalid uuid`` when a leg
        is not there, is hanging up, or neither is answered; the answered one becomes the
        bridge's A side when only one is (switch_ivr_uuid_bridge)."""
        parts = arg.split()
        if len(parts) < 2:
            return "-USAGE: <uuid> <other_uuid>\n"
        for other_uuid in parts[1:3]:
            a, b = self._chan(parts[0]), self._chan(other_uuid)
            if a is None or b is None or a.hangup_cause or b.hangup_cause:
                continue
            if not (a.answered or a.answer_state == "early"):
                if not (b.answered or b.answer_state == "early"):
                    continue
                a, b = b, a
            self.sw.uuid_bridge(a, b)
            return f"+OK {other_uuid}\n"
        return "-ERR Invalid uuid\n"


def _quoted_split(arg: str) -> list[str]:
    """Split on spaces, keeping 'single quoted' parts whole (switch_separate_string)."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for c in arg:
        if c == "'":
            quoted = not quoted
        elif c == " " and not quoted:
            if cur:
                out.append("".join(cur))
                cur = []
        else:
            cur.append(c)
    if cur:
        out.append("".join(cur))
    return out


__all__ = ["ApiCommands", "split_vars"]
