"""`python -m linkup_sync_cli`: the same as the `linkup-sync` command."""

from .main import main

if __name__ == "__main__":
    raise SystemExit(main())
