"""``python -m ioc_cli`` runs the ``ioc`` command."""

from ioc_cli.app import main

main()
