"""`python cli.py ...` is the same program as the `mystyle-pl` console command."""

from mystyle_pl.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
