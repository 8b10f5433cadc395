"""One module per ``ingress-audit`` command, each with ``add_arguments`` and ``run`` (the table
is in webhook/cli.py); the ``_`` modules hold what several commands share."""
