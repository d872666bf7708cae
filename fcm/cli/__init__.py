"""The ``fcm`` command line (``fcm --help``): :func:`main`, and one module per group of commands
(:mod:`~fcm.cli.image`, :mod:`~fcm.cli.video`, :mod:`~fcm.cli.evaluation`, :mod:`~fcm.cli.training`,
:mod:`~fcm.cli.catalog`, :mod:`~fcm.cli.service`), each adding its commands with ``register(sub)``; what they share
is :mod:`~fcm.cli.args`. Library errors become one-line messages and exit code 2; nothing else lives here.
"""

from fcm.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
