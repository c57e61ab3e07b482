"""``selfsup lab``: run the claims lab (selfsup/lab), list its claims, write docs/claims.md."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from selfsup.lab.claim import ClaimResult
    from selfsup.lab.settings import LabSettings

__all__ = ["add_lab_parser", "cmd_lab"]


def add_lab_parser(sub: argparse._SubParsersAction) -> None:
    from selfsup.cli.tool_commands import _seed_list

    p = sub.add_parser(
        "lab",
        help="check textbook claims about SSL with small, cached experiments and verdicts",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Each claim (`selfsup lab --list`) trains a few presets of configs/ with the "
        "claim's changes,\nfor a budget sized for 10-20 minutes on 2 CPU cores, with several "
        "seeds, measures them\nby the library's protocols and prints a verdict: holds, does not "
        "hold at this scale, or\ninconclusive (within the seeds' spread). Results are cached per "
        "configuration: a rerun is\ninstant, an interrupted one continues where it stopped. "
        "E.g.\n"
        "  selfsup lab --list\n"
        "  selfsup lab batch-size temperature       # or by number: selfsup lab 1 9\n"
        "  selfsup lab all                          # every claim, then docs/claims.md\n"
        "  selfsup lab 7 --data digits --scale 0.5  # a quick look\n"
        "  selfsup lab --report-only                # docs/claims.md again from the cache",
    )
    p.add_argument("claims", nargs="*", metavar="CLAIM", help="claim ids or numbers, or `all`")
    p.add_argument("--list", action="store_true", help="the claims with their budgets; no run")
    p.add_argument(
        "--lab-dir",
        help="where runs, cached results and claim records go (default runs/lab; with --tiny "
        "runs/lab-tiny)",
    )
    p.add_argument(
        "--scale", type=float, default=1.0, help="multiplies every arm's training budget"
    )
    p.add_argument(
        "--seeds",
        type=_seed_list,
        metavar="S1,S2,...",
        help="seeds of every claim (default: each claim's own, 0,1)",
    )
    p.add_argument(
        "--data",
        default="fashion_mnist",
        help="training and evaluation data (default fashion_mnist; digits for a quick look)",
    )
    p.add_argument(
        "--tiny",
        action="store_true",
        help="the tests' size: digits, tiny networks, a few steps per arm (seconds per claim; "
        "the verdicts mean nothing, the plumbing is checked)",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="write the report again from the lab directory's cached results (no training)",
    )
    p.add_argument(
        "--report",
        help="the report `all` and --report-only write, figures in img/claims/ beside it "
        "(default docs/claims.md; LAB_DIR/claims.md with --tiny, another --data or --scale, so "
        "that a quick look never replaces the real page)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (train.device)")
    p.set_defaults(func=cmd_lab)


def cmd_lab(args: argparse.Namespace) -> int:
    from selfsup.lab.claim import all_claims, get_claim, run_claim
    from selfsup.lab.runner import LabRunner
    from selfsup.lab.settings import DEFAULT_LAB_DIR, TINY_LAB_DIR, LabSettings

    lab_dir = Path(args.lab_dir or (TINY_LAB_DIR if args.tiny else DEFAULT_LAB_DIR))
    seeds = tuple(args.seeds) if args.seeds else None
    settings = LabSettings(lab_dir, args.data, args.scale, seeds, args.tiny, args.device)
    if args.list:
        print(_listing(settings))
        return 0
    default_size = not args.tiny and args.data == "fashion_mnist" and args.scale == 1
    report = Path(args.report or ("docs/claims.md" if default_size else lab_dir / "claims.md"))
    if args.report_only:
        if args.claims:
            raise ValueError("--report-only rebuilds the report from the cache; give no claims")
        return _report(lab_dir, report)
    if not args.claims:
        raise ValueError("name a claim (`selfsup lab --list`), `all`, or --report-only")
    every = args.claims == ["all"]
    claims = all_claims() if every else [get_claim(name) for name in args.claims]
    runner = LabRunner(settings)
    for claim in claims:
        result = run_claim(claim, settings, runner)
        print(_summary(result))
    if every:
        return _report(lab_dir, report)
    return 0


def _listing(settings: LabSettings) -> str:
    from selfsup.lab.claim import all_claims, budget_text

    lines = []
    for claim in all_claims():
        seeds = ",".join(str(s) for s in settings.seeds_for(claim.seeds))
        lines.append(f"{claim.number:>2}  {claim.id:<16} {claim.name}")
        lines.append(f"    arms: {' | '.join(a.name for a in claim.arms)}; seeds {seeds}")
        lines.append(f"    budget: {budget_text(claim, settings)}")
    return "\n".join(lines)


def _summary(result: ClaimResult) -> str:
    """What a claim run prints: its table, verdict, figure and command."""
    from selfsup.lab.measures import MEASURES

    claim = result.claim
    width = max(len(a.name) for a in claim.arms) + 2
    cells = {
        (arm.name, m): result.results.get(arm.name, m).format(MEASURES[m].digits)
        for arm in claim.arms
        for m in claim.measures
    }
    columns = {
        m: 2 + max(len(MEASURES[m].label), *(len(cells[a.name, m]) for a in claim.arms))
        for m in claim.measures
    }
    lines = [f"{claim.number}. {claim.name}"]
    lines.append(" " * (width + 2) + "".join(f"{MEASURES[m].label:>{columns[m]}}" for m in columns))
    for arm in claim.arms:
        row = "".join(f"{cells[arm.name, m]:>{columns[m]}}" for m in columns)
        lines.append(f"  {arm.name:<{width}}{row}")
    lines.append(f"  verdict: {result.verdict.text}: {result.verdict.reason}")
    lines += [f"    - {p.text}: {p.reason}" for p in result.verdict.parts]
    if result.png is not None:
        lines.append(f"  figure: {result.png}")
    lines.append(f"  command: {result.command}")
    return "\n".join(lines)


def _report(lab_dir: Path, out: Path) -> int:
    from selfsup.lab.report import note_path, results_fingerprint, write_report

    path, results = write_report(lab_dir, out)
    for result in results:
        print(f"{result.claim.number}. {result.claim.name}: {result.verdict.text}")
        note = note_path(lab_dir, result)
        if not note.is_file():  # a stale one was warned about by write_report
            print(
                f"   no reading: {note} may give one, first line 'results: "
                f"{results_fingerprint(result)}'"
            )
    print(f"wrote {path}")
    return 0
