"""``python -m fa_bench``: the same command as ``fa-run``, for an environment whose scripts folder is not
on PATH (a cluster's module python, a notebook's ``!`` line)."""
from fa_bench.cli import entry

if __name__ == "__main__":
    entry()
