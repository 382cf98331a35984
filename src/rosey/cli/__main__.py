"""``python -m rosey.cli``."""

from rosey.cli import main

main()
