"""``python -m sqlrunner``."""

from .cli import main

main()
