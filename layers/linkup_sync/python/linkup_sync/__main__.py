"""`python -m linkup_sync`: the same as the `linkup-sync` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
