"""The ``aigc`` command line: thin Typer commands over the library (see :mod:`aigc_studio.cli.main`)."""
