"""talkinghead: few-shot neural talking-head avatars on phones."""

__version__ = "0.1.0"
