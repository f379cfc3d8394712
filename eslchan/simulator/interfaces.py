"""The modules a simulated FreeSWITCH has loaded and the interfaces each one provides
(applications, api commands, TTS engines, say languages, file formats, endpoints), as the
core database lists them for ``show``, ``module_exists`` and the check FreeSWITCH makes before
it runs an application.

The default set is the server the captures were recorded on (``shared/esl-captures``): no
mod_flite or any other TTS engine, no mod_soundtouch, mod_say_en loaded but no sound files.
Names come from the modules' sources of FreeSWITCH 1.10.12. Pure data and pure functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

_DPTOOLS_APPS = """strepoch page strmicroepoch chat strftime presence blind_transfer_ack
    bind_digit_action capture clear_digit_action digit_action_set_realm privacy set_audio_level
    set_mute flush_dtmf hold unhold mutex transfer check_acl verbose_events novideo cng_plc
    early_hangup sleep delay_echo phrase eval set_media_stats stop set_zombie_exec pre_answer
    answer wait_for_answer wait_for_video_ready hangup set_name log info event sound_test export
    bridge_export set multiset push unshift set_global set_profile_var unset multiunset
    capture_text acknowledge_call ring_ready remove_bugs break detect_speech
    play_and_detect_speech ivr redirect video_refresh video_decode send_info jitterbuffer
    send_display respond deflect recovery_refresh reuse_caller_profile queue_dtmf send_dtmf
    sched_cancel sched_hangup sched_broadcast sched_transfer execute_extension sched_heartbeat
    enable_heartbeat filter_codecs enable_keepalive media_reset mkdir rename transfer_vars
    soft_hold bind_meta_app unbind_meta_app block_dtmf unblock_dtmf intercept eavesdrop
    native_eavesdrop three_way set_user stop_dtmf start_dtmf stop_dtmf_generate
    start_dtmf_generate stop_tone_detect fax_detect tone_detect echo park park_state gentones
    playback broadcast endless_playback loop_playback att_xfer read play_and_get_digits
    stop_video_write_overlay video_write_overlay stop_record_session record_session
    record_session_mask record_session_unmask record_session_pause record_session_resume record
    preprocess stop_displace_session displace_session speak clear_speech_cache bridge system
    bgsystem say detect_audio detect_silence wait_for_silence session_loglevel limit limit_hash
    limit_execute limit_hash_execute pickup deduplicate_dtmf vad_test debug_media"""

_COMMANDS_APIS = """bg_system system bg_spawn spawn spawn_stream acl alias coalesce banner bgapi
    break complete cond console_complete console_complete_xml create_uuid db_cache domain_data
    domain_exists echo event_channel_broadcast escape eval expand find_user_xml fsctl shutdown
    version global_getvar global_setvar group_call help host_lookup hostname interface_ip
    switchname gethost getenv hupall in_group is_lan_addr limit_usage limit_hash_usage
    limit_status limit_reset limit_interval_reset list_users load log md5 module_exists msleep
    nat_map originate pause pool_stats quote_shell_arg regex reloadacl reload reloadxml replace
    say_string sched_api sched_broadcast sched_del sched_hangup sched_transfer show sql_escape
    status strftime_tz stun time_test timer_test tone_detect unload unsched_api uptime reg_url
    url_decode url_encode toupper tolower user_data uuid_early_ok user_exists uuid_answer
    uuid_audio uuid_break uuid_bridge uuid_broadcast uuid_buglist uuid_chat uuid_send_text
    uuid_capture_text uuid_codec_debug uuid_codec_param uuid_debug_media uuid_deflect
    uuid_displace uuid_display uuid_media_params uuid_drop_dtmf uuid_dump uuid_exists
    uuid_fileman uuid_flush_dtmf uuid_getvar uuid_hold uuid_kill uuid_send_message uuid_send_info
    uuid_set_media_stats uuid_video_bitrate uuid_video_bandwidth uuid_video_refresh
    uuid_outgoing_answer uuid_limit uuid_limit_release uuid_loglevel uuid_media uuid_media_3p
    uuid_media_reneg uuid_park uuid_pause uuid_phone_event uuid_ring_ready uuid_pre_answer
    uuid_preprocess uuid_record uuid_recovery_refresh uuid_recv_dtmf uuid_redirect uuid_send_dtmf
    uuid_session_heartbeat uuid_setvar_multi uuid_setvar uuid_transfer uuid_dual_transfer
    uuid_simplify uuid_jitterbuffer uuid_zombie_exec uuid_xfer_zombie xml_flush_cache xml_locate
    xml_wrap file_exists getcputime json memory"""

_SPANDSP_APPS = """t38_gateway rxfax txfax stopfax spandsp_stop_dtmf spandsp_start_dtmf
    spandsp_stop_inject_tdd spandsp_inject_tdd spandsp_stop_detect_tdd spandsp_detect_tdd
    spandsp_send_tdd spandsp_start_fax_detect spandsp_stop_fax_detect spandsp_start_tone_detect
    spandsp_stop_tone_detect"""


@dataclass(frozen=True)
class Module:
    """What one loadable module registers, by interface type (the core's ``interfaces`` table)."""

    name: str
    interfaces: tuple[tuple[str, str], ...]  # (type, name)


def _module(name: str, **kinds: str) -> Module:
    rows = [(kind, item) for kind, names in kinds.items() for item in names.split()]
    return Module(name, tuple(rows))


#: Every module the simulator knows how to load (a few beyond the default set, so a test can
#: give the switch a TTS engine, mod_soundtouch or another say language).
CATALOGUE: dict[str, Module] = {m.name: m for m in (
    _module("mod_console", api="console"),
    _module("mod_logfile"),
    _module("mod_event_socket", application="socket", api="event_sink"),
    _module("mod_sofia", endpoint="sofia rtp", application="sofia_sla sofia_stir_shaken_vs",
            api="sofia sofia_gateway_data sofia_username_of sofia_contact sofia_count_reg "
                "sofia_dig sofia_presence_data", chat="sip"),
    _module("mod_loopback", endpoint="loopback null", application="unloop"),
    _module("mod_commands", api=_COMMANDS_APIS),
    _module("mod_conference", application="conference conference_set_auto_outcall",
            api="conference", chat="conf"),
    _module("mod_db", application="db group", api="db group", limit="db"),
    _module("mod_dptools", application=_DPTOOLS_APPS, chat="api"),
    _module("mod_expr", api="expr"),
    _module("mod_fifo", application="fifo fifo_track_call",
            api="fifo fifo_member fifo_add_outbound fifo_check_bridge"),
    _module("mod_hash", application="hash", api="hash hash_dump hash_remote", limit="hash"),
    _module("mod_esf", application="esf_page_group"),
    _module("mod_valet_parking", application="valet_park", api="valet_info"),
    _module("mod_dialplan_xml", dialplan="XML"),
    _module("mod_spandsp", application=_SPANDSP_APPS,
            api="spandsp_start_tone_detect spandsp_stop_tone_detect start_tdd_detect "
                "stop_tdd_detect uuid_send_tdd"),
    _module("mod_sndfile", file="wav aiff au flac ogg raw r8 r16 r24 r32 r48 ul al gsm"),
    _module("mod_native_file", file="PCMU PCMA G729 GSM L16"),
    _module("mod_local_stream", file="local_stream", api="local_stream"),
    _module("mod_tone_stream", file="tone_stream silence_stream"),
    _module("mod_say_en", say="en"),
    # not loaded on the recorded server
    _module("mod_say_de", say="de"),
    _module("mod_say_fr", say="fr"),
    _module("mod_say_es", say="es"),
    _module("mod_soundtouch", application="soundtouch", api="soundtouch"),
    _module("mod_flite", speech="flite"),
    _module("mod_tts_commandline", speech="tts_commandline"),
)}

#: The recorded server's modules (esl-captures/README.md, "Server set-up").
DEFAULT_MODULES = frozenset({
    "mod_console", "mod_logfile", "mod_event_socket", "mod_sofia", "mod_loopback", "mod_commands",
    "mod_conference", "mod_db", "mod_dptools", "mod_expr", "mod_fifo", "mod_hash", "mod_esf",
    "mod_valet_parking", "mod_dialplan_xml", "mod_spandsp", "mod_sndfile", "mod_native_file",
    "mod_local_stream", "mod_tone_stream", "mod_say_en",
})


class Interfaces:
    """The interfaces of a set of loaded modules, looked up by type and name."""

    def __init__(self, modules: Iterable[str]) -> None:
        names = set(modules)
        unknown = names - set(CATALOGUE)
        if unknown:
            raise ValueError(f"unknown FreeSWITCH module(s): {', '.join(sorted(unknown))}")
        self.modules = frozenset(names)
        self._rows = sorted((kind, item, m) for m in names for kind, item in CATALOGUE[m].interfaces)
        self._by_kind: dict[str, dict[str, str]] = {}
        for kind, item, module in self._rows:
            self._by_kind.setdefault(kind, {})[item] = module

    def has(self, kind: str, name: str) -> bool:
        return name in self._by_kind.get(kind, {})

    def module_of(self, kind: str, name: str) -> str | None:
        return self._by_kind.get(kind, {}).get(name)

    def rows(self, kind: str | None = None, name: str | None = None) -> list[tuple[str, str, str]]:
        """(type, name, module) rows, ordered by type then name as the core database does."""
        return [r for r in self._rows if (kind is None or r[0] == kind) and (name is None or r[1] == name)]
