"""Backends: where candidates come from. Every caller goes through :class:`~aigc_studio.backends.base.Backend`."""
