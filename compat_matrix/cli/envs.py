"""`envs` and `prefetch`: what runs need on this machine, cached environments and hub checkpoints."""

from __future__ import annotations

import argparse

from compat_matrix.cli.common import UsageProblem, matrix_of, positive


def cmd_envs(args: argparse.Namespace) -> int:
    from compat_matrix.envs.env_cache import EnvCacheError, cap_bytes, describe, list_envs, prune

    try:
        cap = cap_bytes(args.max_gb)
    except EnvCacheError as exc:
        raise UsageProblem(str(exc)) from None
    if args.action == "prune":
        removed = prune(0 if args.all else cap)
        print("\n".join(f"removed {e.name} ({e.size / 1024**3:.2f} GB)" for e in removed) or "nothing to remove")
    print(describe(list_envs()) + f" (cap {cap / 1024**3:.1f} GB)")
    return 0


def cmd_prefetch(args: argparse.Namespace) -> int:
    from compat_matrix.run.prefetch import Patience, prefetch

    matrix = matrix_of(args)
    keys = set(args.models or [m.key for m in matrix.models])
    unknown = keys - {m.key for m in matrix.models}
    if unknown:
        raise UsageProblem(f"unknown model(s) {sorted(unknown)}; known: {', '.join(m.key for m in matrix.models)}")
    patience = Patience(timeout_s=args.timeout, tries=args.tries, wait_s=args.retry_wait)
    return prefetch([m for m in matrix.models if m.key in keys], patience)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    envs = sub.add_parser("envs", help="bisect's cached release environments: list, or prune to the size cap")
    envs.add_argument("action", nargs="?", choices=("list", "prune"), default="list")
    envs.add_argument("--max-gb", help="size cap in GB (default: COMPAT_MATRIX_ENV_CACHE_GB, else 5)")
    envs.add_argument("--all", action="store_true", help="with prune: remove every cached environment")
    envs.set_defaults(func=cmd_envs)

    prefetch = sub.add_parser("prefetch", help="download `source: hub` checkpoints (needs the network)")
    prefetch.add_argument("--models", nargs="+", help="model keys (default: every hub entry)")
    prefetch.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for one hub answer (default: 10)")
    prefetch.add_argument("--tries", type=positive, default=3, help="tries when the hub is busy (429, 5xx) or slow (default: 3)")
    prefetch.add_argument("--retry-wait", type=float, default=2.0,
                          help="seconds before the second try, doubling after (default: 2)")
    prefetch.set_defaults(func=cmd_prefetch)
