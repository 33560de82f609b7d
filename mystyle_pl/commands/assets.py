"""``mystyle-pl assets``: list, fetch and locate the named weights."""

from __future__ import annotations

import argparse
import sys

from .. import assets


def _add_assets_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="{list,fetch,path}")
    sub.add_parser("list", help="list the named weights, their sources and whether they are cached")
    fetch = sub.add_parser("fetch", help="obtain and convert assets into the cache ($MYSTYLE_HOME)")
    fetch.add_argument("names", nargs="*", help="asset names (see `assets list`)")
    fetch.add_argument("--all", action="store_true", help="fetch every asset that has a reachable source")
    fetch.add_argument("--path", default=None, help="use this local file as the source (one NAME only)")
    path = sub.add_parser("path", help="print the cached path of an asset (fetching it if needed)")
    path.add_argument("name")


def _run_assets(args: argparse.Namespace) -> int:
    if args.action == "list":
        print(f"cache: {assets.home() / 'assets'}  (set MYSTYLE_HOME to move it)")
        for name in sorted(assets.REGISTRY):
            info = assets.status(name)
            mark = "cached " if info["cached"] else "missing"
            print(f"  {name:<22} {mark}  sources: {', '.join(info['sources']):<12} {info['description']}")
            print(f"  {'':<22} local file: ${info['env_var']}")
        return 0
    if args.action == "path":
        print(assets.fetch(args.name))
        return 0
    names = sorted(assets.REGISTRY) if args.all else args.names
    if not names:
        raise SystemExit("error: name at least one asset, or pass --all")
    if args.path and len(names) != 1:
        raise SystemExit("error: --path takes exactly one asset name")
    failed = 0
    for name in names:
        try:
            print(f"{name}: {assets.fetch(name, path=args.path)}")
        except (assets.AssetError, KeyError) as e:
            failed += 1
            print(f"{name}: FAILED\n{e}", file=sys.stderr)
    return 1 if failed else 0
