"""``python -I -m rosey.checker``: one check, asked on stdin, answered on stdout."""

from rosey.checker.worker import main

main()
