"""``python -m stainfree.cli``."""

from stainfree.cli import main

main()
