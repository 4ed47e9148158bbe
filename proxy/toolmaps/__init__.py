"""Tool maps: which tools of an upstream carry SQL in which argument, presets for known
servers, and detection from `tools/list`."""

from pgwarden.proxy.toolmaps.detect import Suggestion, preset_for, suggest
from pgwarden.proxy.toolmaps.model import SqlArgument, ToolMap, ToolSpec, looks_like_sql_arguments
from pgwarden.proxy.toolmaps.presets import PRESETS

__all__ = [
    "PRESETS",
    "SqlArgument",
    "Suggestion",
    "ToolMap",
    "ToolSpec",
    "looks_like_sql_arguments",
    "preset_for",
    "suggest",
]
