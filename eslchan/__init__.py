"""eslchan: channel-control daemon for FreeSWITCH."""

__version__ = "0.1.0"
