"""Content: request attributes, and (later) tasks, templates and the content pipeline."""

from aigc_studio.content.attributes import format_mr, parse_attributes

__all__ = ["format_mr", "parse_attributes"]
