"""``python -m simulcast``."""

from simulcast.cli import main

main()
