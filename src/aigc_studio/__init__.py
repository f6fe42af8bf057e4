"""AIGC Studio: a self-hosted generative-AI content platform.

The package follows the pipeline: ``data`` → ``models`` / ``training`` → ``generation`` → ``backends``
→ (``content``, ``evaluation``, ``safety``, ``server`` in later milestones). ``cli`` is a thin layer on top.
"""

__version__ = "0.1.0"
