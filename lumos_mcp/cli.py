"""``lumos-mcp`` commands: the only place that reads flags and the environment."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import orjson

from lumos_mcp import __version__
from lumos_mcp.errors import LumosError
from lumos_mcp.privfs import check_state_dir
from lumos_mcp.resources import data_dir, policy_path
from lumos_mcp.service import (
    MODES,
    Mode,
    Service,
    ServiceConfig,
    decide_approval,
    default_state_dir,
    journals_to_recover,
    server_lock_holder,
)

log = logging.getLogger("lumos_mcp")
TOKEN_ENV = "LUMOS_MCP_TOKEN"


def _number(kind: type[int] | type[float], low: float, inclusive: bool = True, high: float | None = None) -> Any:
    """An argparse type: a number of ``kind`` at least (or above) ``low``, at most ``high``, else a
    one-line usage error (exit 2), never a traceback from deep inside."""
    what = "an integer" if kind is int else "a number"
    bound = f">= {low:g}" if inclusive else f"> {low:g}"
    if high is not None:
        bound += f" and <= {high:g}"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value != value or value in (float("inf"), float("-inf")):  # NaN, infinities
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if (value < low if inclusive else value <= low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text} is out of range: must be {bound}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


POSITIVE_SECONDS = _number(float, 0, inclusive=False, high=3600)
"""A measurement window or interval: read_telemetry takes 0 < window <= 3600 s."""
AT_LEAST_ONE = _number(int, 1)
PORT = _number(int, 1, high=65535)


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return path


def _state_dir(text: str) -> Path:
    """A state directory: absent (it is created) or a directory, never an existing file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a directory")
    return path


def _shipped_policy(text: str) -> bool:
    """Whether ``text`` names a shipped policy (``latency``), as the policy loader reads it."""
    return not Path(text).suffix and "/" not in text and policy_path(text).is_file()


def _policy(text: str) -> Path:
    """A policy: a shipped one by name, or an existing file."""
    path = Path(text)
    if not (path.is_file() or _shipped_policy(text)):
        shipped = ", ".join(sorted(p.stem for p in data_dir("policies").glob("*.toml")))
        raise argparse.ArgumentTypeError(f"{text}: no such policy file (give a .toml file, or one of {shipped})")
    return path


def _common(p: argparse.ArgumentParser, nested: bool = False) -> None:
    """The flags every state-dir command takes. ``nested``: on an action's parser (``audit verify
    --state-dir X``) with no default, so it does not overwrite one given before the action."""
    p.add_argument(
        "--state-dir",
        type=_state_dir,
        default=argparse.SUPPRESS if nested else None,
        help="journal, audit log, approvals and sandbox (default: $LUMOS_STATE_DIR or ~/.local/state/lumos-mcp)",
    )
    _verbose(p)


def _verbose(p: argparse.ArgumentParser) -> None:
    """``-v`` after a subcommand too (``lumos-mcp tune -v``)."""
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging (stderr)")


def _modes(p: argparse.ArgumentParser, modes: tuple[str, ...] = MODES) -> None:
    p.add_argument(
        "--mode",
        choices=modes,
        default=None,
        help="observe: read-only; sandbox (default): writes go to a shadow tree, host untouched; "
        "live: real writes (root)",
    )
    p.add_argument("--live", action="store_true", help="shorthand for --mode live")
    p.add_argument(
        "--policy",
        type=_policy,
        default=None,
        help="policy TOML file (default: policies/latency.toml in sandbox, policies/default.toml else)",
    )
    p.add_argument(
        "--cgroup",
        action="append",
        default=[],
        metavar="NAME",
        help="a cgroup whose CPU knobs to expose (repeatable; simulated in sandbox if absent)",
    )


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="lumos-mcp",
        description="An MCP server that lets AI agents tune this "
        "Linux host safely: policy, approvals, journaled apply/commit/revert, audit.",
    )
    top.add_argument("--version", action="version", version=f"lumos-mcp {__version__}")
    top.add_argument("-v", "--verbose", action="store_true", help="debug logging (stderr)")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="run the MCP server (stdio by default)")
    _common(s)
    _modes(s)
    s.add_argument("--http", action="store_true", help="streamable HTTP instead of stdio (needs a bearer token)")
    s.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    s.add_argument("--port", type=PORT, default=8765, help="HTTP port (default 8765)")
    s.add_argument("--allow-remote", action="store_true", help="permit binding a non-loopback address")
    s.add_argument(
        "--token-file", type=_existing_file, default=None, help=f"file holding the bearer token (else ${TOKEN_ENV})"
    )
    s.add_argument(
        "--anchor-file",
        type=Path,
        default=None,
        help="append the audit head here every 5 min while it changes (default: audit-anchors.jsonl in the state "
        "dir); it also goes to syslog. Copy it off the host",
    )

    t = sub.add_parser("tune", help="the built-in expert agent drives the full loop over MCP")
    _common(t)
    _modes(t, modes=("sandbox", "live"))  # tune writes knobs: observe is not offered
    t.add_argument("--rounds", type=AT_LEAST_ONE, default=2, help="tuning rounds, at least 1 (default 2)")
    t.add_argument(
        "--window", type=POSITIVE_SECONDS, default=2.0, help="measurement window in seconds, 0 < S <= 3600 (default 2)"
    )
    t.add_argument(
        "--repeats",
        type=AT_LEAST_ONE,
        default=3,
        help="windows measured before and after each change; a change is kept only when the 95%% interval "
        "of the change in their median is wholly better, by at least 2%% (default 3)",
    )
    t.add_argument("--plain", action="store_true", help="no live view, plain log lines")

    st = sub.add_parser("status", help="mode, armed transactions and pending approvals (from the state dir)")
    _common(st)
    st.add_argument("--json", action="store_true")

    a = sub.add_parser("approvals", help="list, approve or deny pending approvals")
    _common(a)
    asub = a.add_subparsers(dest="action", required=True, metavar="ACTION")
    al = asub.add_parser("list", help="pending (or --all) approvals")
    _common(al, nested=True)
    al.add_argument("--all", action="store_true")
    for name in ("approve", "deny"):
        ap = asub.add_parser(name, help=f"{name} a pending approval")
        _common(ap, nested=True)
        ap.add_argument("id")
        ap.add_argument("--note", default="")
        ap.add_argument("--by", default=os.environ.get("USER", "operator"))

    au = sub.add_parser("audit", help="verify or show the hash-chained audit log")
    _common(au)
    ausub = au.add_subparsers(dest="action", required=True, metavar="ACTION")
    av = ausub.add_parser("verify", help="check the hash chain; exit 1 on any edited, deleted or reordered record")
    _common(av, nested=True)
    av.add_argument(
        "--anchor",
        type=_existing_file,
        default=None,
        metavar="FILE",
        help="also check each anchored head in FILE (an anchor file, or journalctl -t lumos-mcp -o cat output)",
    )
    an = ausub.add_parser("anchor", help="publish the chain's head now: syslog and an anchor file to copy off")
    _common(an, nested=True)
    an.add_argument("--to", type=Path, default=None, metavar="FILE", help="anchor file (default: the state dir's)")
    an.add_argument("--no-syslog", action="store_true", help="only the file")
    tl = ausub.add_parser("tail", help="the last records")
    _common(tl, nested=True)
    tl.add_argument("-n", type=AT_LEAST_ONE, default=20, help="how many records (default 20)")
    _replay_parser(ausub)

    _metrics_parser(sub)

    r = sub.add_parser("recover", help="restore every knob of unfinished transactions now (as at start)")
    _common(r)
    _modes(r)

    _persist_parsers(sub)

    dc = sub.add_parser("desktop-config", help="print a claude_desktop_config.json entry for this install")
    dc.add_argument("--mode", choices=MODES, default="sandbox")
    dc.add_argument("--policy", type=_policy, default=None, help="policy file or shipped name")
    dc.add_argument("--state-dir", type=_state_dir, default=None)
    _verbose(dc)
    se = sub.add_parser("selftest", help="crash, storage, fuzz, concurrency and intruder tests; one table of figures")
    se.add_argument(
        "--long", action="store_true", help="the long form (1000 crashes, 10,000 fuzzed calls, 50x200 HTTP)"
    )
    se.add_argument("--json", action="store_true", help="figures as JSON")
    se.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    se.add_argument(
        "--only",
        action="append",
        default=[],
        choices=("crash", "storage", "fuzz", "concurrency", "intruders"),
        metavar="PART",
        help="run only this part: crash, storage, fuzz, concurrency or intruders (repeatable)",
    )
    _verbose(se)

    tp = sub.add_parser("top", help="live view of the performance signature and trends")
    tp.add_argument("--interval", type=POSITIVE_SECONDS, default=1.0, help="sampling interval in seconds (default 1)")
    tp.add_argument("--window", type=POSITIVE_SECONDS, default=10.0, help="window in seconds (default 10)")
    tp.add_argument("--once", action="store_true", help="print one signature as JSON after one window and exit")
    _verbose(tp)
    ar = sub.add_parser("arena", help="real workloads, real knobs, tuning strategies side by side (live, root)")
    arsub = ar.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (
        ("run", "sweep (if not done) and run every strategy on each problem, then write the report"),
        ("sweep", "map each problem's landscape with a grid sweep"),
        ("report", "write results.json, results.md and plots from what is in --out"),
    ):
        x = arsub.add_parser(name, help=text)
        x.add_argument("--out", type=Path, default=Path("arena-results"), help="results directory")
        x.add_argument(
            "--problems", nargs="*", default=None, help="problem names (default: the full run, all but shares-1d-85)"
        )
        x.add_argument("--quick", action="store_true", help="probe workload only, 1 problem, short budget (~5 min)")
        x.add_argument("--seeds", type=AT_LEAST_ONE, default=2, help="seeds per strategy (default 2)")
        x.add_argument("--strategies", nargs="*", default=None, help="strategy names (default: all)")
        x.add_argument("--resweep", action="store_true", help="sweep again even if a landscape is saved")
        _verbose(x)
    return top


def _time(text: str) -> float:
    from lumos_mcp.replay import parse_time

    try:
        return parse_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither Unix seconds nor an ISO 8601 time") from None


def _replay_parser(ausub: Any) -> None:
    rp = ausub.add_parser(
        "replay", help="every knob's timeline from the audit log; --at a moment; --policy to judge it all again"
    )
    _common(rp, nested=True)
    rp.add_argument("--json", action="store_true", help="the timeline (and --at, --policy results) as JSON")
    rp.add_argument("--png", type=Path, default=None, metavar="FILE", help="plot knob values over time to FILE")
    rp.add_argument("--at", type=_time, default=None, metavar="TIME", help="each knob's state at TIME (ISO or Unix s)")
    rp.add_argument("--policy", type=_policy, default=None, help="judge every staged change again under this policy")
    rp.add_argument("--knob", action="append", default=[], help="only this knob (repeatable)")
    rp.add_argument("--mode", choices=MODES, default=None, help="records of this mode (default: the log's last)")
    rp.add_argument(
        "--partial", action="store_true", help="a log whose chain breaks: replay the records before the break"
    )


def _metrics_parser(sub: Any) -> None:
    me = sub.add_parser("metrics", help="Prometheus metrics of the state dir (for node_exporter's textfile collector)")
    _common(me)
    me.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="FILE",
        help="write FILE atomically (e.g. /var/lib/node_exporter/textfile/lumos.prom) instead of stdout",
    )


def _mode(args: argparse.Namespace) -> Mode:
    if getattr(args, "live", False):
        if args.mode not in (None, "live"):
            print(f"lumos-mcp: --live contradicts --mode {args.mode}", file=sys.stderr)
            raise SystemExit(2)
        return "live"
    mode: Mode = args.mode or "sandbox"
    return mode


def _config(args: argparse.Namespace, mode: Mode | None = None) -> ServiceConfig:
    return ServiceConfig(
        mode=mode or _mode(args),
        state_dir=args.state_dir or default_state_dir(),
        policy=getattr(args, "policy", None),
        cgroups=tuple(getattr(args, "cgroup", []) or ()),
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(COMMANDS[args.command](args) or 0)
    except LumosError as e:
        print(f"lumos-mcp: {e} [{e.code}]", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


# --------------------------------------------------------------------------- serve
def read_token(token_file: Path | None) -> str | None:
    token = token_file.read_text().strip() if token_file is not None else os.environ.get(TOKEN_ENV, "").strip()
    return token or None


def cmd_serve(args: argparse.Namespace) -> int:
    from lumos_mcp.server import build_server

    loopback = args.host in ("127.0.0.1", "localhost", "::1")
    token = read_token(args.token_file) if args.http else None
    if args.http:
        if token is None:
            raise SystemExit(f"lumos-mcp: HTTP needs a bearer token: set ${TOKEN_ENV} or pass --token-file")
        if len(token) < 16:
            raise SystemExit("lumos-mcp: the bearer token must be at least 16 characters")
        if not loopback and not args.allow_remote:
            raise SystemExit(f"lumos-mcp: refusing to bind {args.host}: pass --allow-remote to listen beyond loopback")
    from lumos_mcp.serving import describe, run_until_stopped

    service = Service(
        replace(_config(args), watchdog=True, anchor_interval_s=ANCHOR_INTERVAL_S, anchor_file=args.anchor_file)
    )
    service.start()
    try:
        if token is None:
            server = build_server(service)
            return run_until_stopped(service, server.run_stdio_async, describe(service, "stdio"))
        from lumos_mcp.http_auth import auth_settings

        verifier, auth = auth_settings(token, args.host, args.port)
        server = build_server(service, token_verifier=verifier, auth=auth)
        from lumos_mcp.web import operator_routes

        kwargs: dict[str, Any] = {
            "host": args.host,
            "port": args.port,
            "extra_routes": operator_routes(service, token, args.host, args.port),
        }
        if not loopback:
            from mcp.server.transport_security import TransportSecuritySettings

            kwargs["transport_security"] = TransportSecuritySettings(
                enable_dns_rebinding_protection=True, allowed_hosts=[f"{args.host}:{args.port}"], allowed_origins=[]
            )
        from lumos_mcp.http_server import serve_http

        return run_until_stopped(
            service,
            lambda: serve_http(server, **kwargs),
            describe(service, f"http://{args.host}:{args.port}/mcp"),
            stops_itself=True,
        )
    finally:
        service.close()  # run_until_stopped closed it already, unless building the server failed


# --------------------------------------------------------------------------- tune
def cmd_tune(args: argparse.Namespace) -> int:
    from lumos_mcp.agents.expert import run_tune

    mode = _mode(args)
    cgroups = tuple(args.cgroup) or (("lumos-demo",) if mode == "sandbox" else ())
    config = ServiceConfig(
        mode=mode,
        state_dir=args.state_dir or default_state_dir(),
        policy=args.policy,
        cgroups=cgroups,
        watchdog=True,  # Ctrl-C or a kill mid-round: what the agent left armed is restored once tune is gone
    )
    live_view = not args.plain and sys.stdout.isatty()
    return int(anyio.run(run_tune, config, args.rounds, args.window, live_view, args.repeats))


# --------------------------------------------------------------------------- status / approvals / audit
def cmd_status(args: argparse.Namespace) -> int:
    from lumos_mcp.approvals import ApprovalStore
    from lumos_mcp.audit import tail
    from lumos_mcp.txn.journal import scan
    from lumos_mcp.txn.manager import TransactionManager

    state = args.state_dir or default_state_dir()
    check_state_dir(state)
    out: dict[str, Any] = {"state_dir": str(state), "server": "not running", "open_transactions": {}}
    holder = server_lock_holder(state)
    if holder is not None:
        out["server"] = f"running (pid {holder[0]}, {holder[1]} mode)"
    for mode in MODES:
        records = scan(state / f"journal-{mode}.jsonl").records
        open_txs, _ = TransactionManager._replay(records)
        if open_txs:
            out["open_transactions"][mode] = sorted(open_txs)
    out["pending_approvals"] = [a.model_dump(mode="json") for a in ApprovalStore(state).list(status="pending")]
    audit = state / "audit.jsonl"  # absent until a server first starts on this state dir
    records = tail(audit, 5) if audit.exists() else []
    out["last_events"] = [f"{r.get('event')} {r.get('tx', '')}".strip() for r in records]
    out["guard_reverts"] = guard_reverts(tail(audit, 500) if audit.exists() else [])
    if args.json:
        print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
        return 0
    from lumos_mcp.console import console

    c = console()
    c.print(f"[bold]lumos-mcp[/] state {state}")
    c.print(f"  server: {out['server']}")
    for mode, txs in out["open_transactions"].items():
        c.print(f"  [yellow]{mode}: open transactions {', '.join(txs)}[/] (recovered at next start)")
    if not out["open_transactions"]:
        c.print("  no open transactions")
    c.print(f"  pending approvals: {len(out['pending_approvals'])}")
    for line in out["last_events"]:
        c.print(f"  audit: {line}")
    for g in out["guard_reverts"]:
        c.print(
            f"  [red]guard revert[/] {g['tx']}: {g['guard']} (baseline {g['baseline']}, limit {g['limit']}, "
            f"breaching {g['values']}) reverted {g['reaction_s']} s after the first breach"
        )
    return 0


def guard_reverts(records: list[dict[str, Any]], last: int = 5) -> list[dict[str, Any]]:
    """The last guard reverts the audit records show, newest last: which guard, baseline, limit,
    the breaching values and the time from the first breach to the revert done."""
    out = []
    for r in records:
        evidence = r.get("guard")
        if r.get("event") != "auto_revert" or r.get("reason") != "guard" or not isinstance(evidence, dict):
            continue
        rule = evidence.get("guard")
        out.append(
            {
                "tx": r.get("tx"),
                "guard": rule.get("text") if isinstance(rule, dict) else None,
                "baseline": evidence.get("baseline"),
                "limit": evidence.get("limit"),
                "values": [s.get("value") for s in evidence.get("samples", []) if isinstance(s, dict)],
                "reaction_s": evidence.get("reaction_s"),
            }
        )
    return out[-last:]


def cmd_approvals(args: argparse.Namespace) -> int:
    import time as _time

    from lumos_mcp.approvals import ApprovalStore
    from lumos_mcp.audit import AuditLog

    state = args.state_dir or default_state_dir()
    store = ApprovalStore(state)
    if args.action == "list":
        items = store.list(status=None if args.all else "pending")
        if not items:
            print("no approvals" if args.all else "no pending approvals")
            return 0
        # plain columns: a rich Table measured ~2 ms a row, 5.8 s for a 3,000-approval store
        now = _time.time()
        rows = [("id", "status", "transaction", "expires in", "change")]
        rows += [(a.id, a.status, a.txid, f"{a.expires_at - now:.0f} s", a.summary) for a in items]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for r in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths, strict=True)) + "  " + r[4])
        return 0
    audit = AuditLog(state / "audit.jsonl")
    approval = decide_approval(store, audit, args.id, args.action == "approve", args.by, args.note)
    print(f"{approval.id}: {approval.status} ({approval.summary})")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from lumos_mcp.audit import format_record, tail, verify

    state = args.state_dir or default_state_dir()
    check_state_dir(state)
    path = state / "audit.jsonl"
    if args.action == "tail":
        for rec in tail(path, args.n):
            print(format_record(rec))
        return 0
    if args.action == "replay":
        return _audit_replay(args, path)
    if args.action == "anchor":
        return _audit_anchor(args, state, path)
    if getattr(args, "anchor", None) is not None:
        return _audit_verify_anchor(path, args.anchor)
    report = verify(path)
    if report.ok:
        print(f"audit log OK: {report.records} records in {report.files} file(s), hash chain intact ({path})")
        return 0
    print(f"audit log BROKEN: {report}", file=sys.stderr)
    return 1


ANCHOR_INTERVAL_S = 300.0
"""How often ``serve`` publishes the audit head (while it changes)."""


def _audit_anchor(args: argparse.Namespace, state: Path, path: Path) -> int:
    from lumos_mcp.anchor import head, publish

    found = head(path)
    if found is None:
        print(f"lumos-mcp: the audit log {path} holds no record yet", file=sys.stderr)
        return 1
    to = args.to or state / "audit-anchors.jsonl"
    publish(found, to_file=to, to_syslog=not args.no_syslog)
    print(f"anchored seq {found.seq} hash {found.hash} in {to}" + ("" if args.no_syslog else " and syslog"))
    return 0


def _audit_verify_anchor(path: Path, anchor_file: Path) -> int:
    from lumos_mcp.anchor import check, parse

    anchors = parse(anchor_file.read_text(errors="replace").splitlines())
    if not anchors:
        print(f"lumos-mcp: {anchor_file} holds no anchor", file=sys.stderr)
        return 2
    report = check(path, anchors)
    if report.ok:
        print(
            f"audit log OK: {report.records} records, hash chain intact and holding all {report.anchors} anchor(s)"
            + (f" ({report.pruned} older than the records kept)" if report.pruned else "")
        )
        return 0
    print(f"audit log BROKEN ({report.problem}): {report.detail}", file=sys.stderr)
    for m in report.mismatches[:10]:
        print(
            f"  seq {m['seq']}: anchored {m['anchored'][:16]}, log has {(m['found'] or 'nothing')[:16]}",
            file=sys.stderr,
        )
    return 1


def _audit_replay(args: argparse.Namespace, path: Path) -> int:
    from lumos_mcp.errors import AuditChainBrokenError
    from lumos_mcp.policy import load_policy
    from lumos_mcp.replay import iso, load, plot

    policy = load_policy(args.policy) if args.policy is not None else None
    try:
        result = load(path, partial=args.partial, mode=args.mode, policy=policy)
    except AuditChainBrokenError as e:
        print(f"lumos-mcp: {e} [{e.code}]: {e.fields.get('problem')} at seq {e.fields.get('seq')}", file=sys.stderr)
        return 1
    if args.knob:
        result.timelines = {k: v for k, v in result.timelines.items() if k in args.knob}
        result.marks = {k: v for k, v in result.marks.items() if k in args.knob}
    if args.png is not None:
        if missing_modules(("matplotlib",)):
            print("lumos-mcp audit replay --png needs matplotlib: pip install 'lumos-mcp[arena]'", file=sys.stderr)
            return 2
        plot(result, args.png)
    data = result.to_data()
    if args.at is not None:
        data["at"] = {"ts": args.at, "knobs": {k: vars(s) for k, s in result.at(args.at).items()}}
    if args.json:
        print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return 0
    from rich.table import Table

    from lumos_mcp.console import console

    c = console()
    if not result.verified:
        c.print(f"[red]chain broken ({result.problem}): showing the {result.records} records before the break[/]")
    if args.at is not None:
        table = Table("knob", "value", "state", "since", "tx", "actor", "rationale", title=f"at {iso(args.at)}")
        for knob, seg in sorted(result.at(args.at).items()):
            table.add_row(
                knob, repr(seg.value), seg.state, iso(seg.since), seg.tx or "", seg.actor or "", seg.rationale or ""
            )
        c.print(table)
    else:
        table = Table("knob", "value", "from", "until", "state", "tx", "actor", "rationale", title=str(path))
        for knob, segs in sorted(result.timelines.items()):
            for seg in segs:
                state = seg.state + (f" ({seg.reason})" if seg.reason else "")
                table.add_row(
                    knob,
                    repr(seg.value),
                    iso(seg.since),
                    iso(seg.until),
                    state,
                    seg.tx or "",
                    seg.actor or "",
                    seg.rationale or "",
                )
        c.print(table)
    if result.rejudged is not None:
        c.print(
            f"judged again under {args.policy}: {result.rejudged_count} staged change(s), "
            f"{len(result.rejudged)} decided differently"
        )
        for r in result.rejudged:
            why = "; ".join(d["message"] for d in r.now["denials"]) or "; ".join(r.now["approval_reasons"])
            verdict = (
                "denied" if not r.now["allowed"] else "approval needed" if r.now["approval_required"] else "allowed"
            )
            c.print(f"  {iso(r.ts)} {r.tx} {r.changes}: was {r.was}, now {verdict}: {why}")
    if args.png is not None:
        c.print(f"plot written to {args.png}")
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    """The metrics once, for node_exporter's textfile collector (run it from a timer)."""
    import tempfile

    from lumos_mcp.metrics import render, state_dir_facts

    state = args.state_dir or default_state_dir()
    check_state_dir(state)
    text = render(lambda: state_dir_facts(state))
    if args.output is None:
        sys.stdout.write(text.decode())
        return 0
    out: Path = args.output
    # the collector reads *.prom files: write a hidden temporary beside it, then rename over
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        print(f"lumos-mcp metrics: cannot write {out}: {e.strerror or e}", file=sys.stderr)
        return 2
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    """Recover the named mode's journal, or, without ``--mode``, every mode's journal in the
    state directory that shows an open transaction (a live crash is recovered by a plain
    ``lumos-mcp recover``, not only by ``recover --mode live``)."""
    state = args.state_dir or default_state_dir()
    named = args.mode is not None or args.live
    modes = [_mode(args)] if named else journals_to_recover(state)
    if not modes:
        print(f"nothing to recover: no journal in {state} has an unfinished transaction")
        return 0
    clean = True
    for mode in modes:
        service = Service(_config(args, mode))
        try:
            report = service.start()
        finally:
            service.close()
        print(f"{mode}: recovered {len(report.transactions)} transaction(s); committed kept: {report.committed_kept}")
        for k in report.knobs:
            print(f"  {k.knob}: {k.action} {k.detail}")
        for p in report.journal_problems:
            print(f"  journal: {p}")
        clean = clean and report.clean
    return 0 if clean else 1


def cmd_selftest(args: argparse.Namespace) -> int:
    from lumos_mcp.selftest.report import as_json, render, run_all

    outcomes = run_all(long=args.long, seed=args.seed, only=tuple(args.only))
    if args.json:
        print(orjson.dumps(as_json(outcomes), option=orjson.OPT_INDENT_2).decode())
    else:
        from lumos_mcp.console import console as wide_console

        console = wide_console()
        console.print(render(outcomes, args.long))
        for o in outcomes:
            for p in o.problems:
                console.print(f"[red]{o.name}: {p}[/]", markup=True, highlight=False)
    return 0 if all(o.ok for o in outcomes) else 1


def cmd_top(args: argparse.Namespace) -> int:
    from lumos_mcp.telemetry.top import run_top

    return int(anyio.run(run_top, args.interval, args.window, args.once))


def cmd_desktop_config(args: argparse.Namespace) -> int:
    """A Claude Desktop entry with absolute paths: the host starts it with a minimal PATH and env."""
    serve = ["-m", "lumos_mcp", "serve", "--mode", args.mode]
    if args.policy is not None:
        named = _shipped_policy(str(args.policy)) and not args.policy.is_file()
        serve += ["--policy", str(args.policy) if named else str(args.policy.resolve())]
    state = (args.state_dir or default_state_dir()).resolve()
    entry = {
        "mcpServers": {"lumos-mcp": {"command": sys.executable, "args": serve, "env": {"LUMOS_STATE_DIR": str(state)}}}
    }
    print(orjson.dumps(entry, option=orjson.OPT_INDENT_2).decode())
    return 0


ARENA_NEEDS = {"run": ("optuna", "matplotlib"), "report": ("matplotlib",), "sweep": ()}
"""What each arena action imports beyond the plain install (the ``arena`` extra)."""


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    """The modules of an optional extra that this install lacks."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def cmd_arena(args: argparse.Namespace) -> int:
    missing = missing_modules(ARENA_NEEDS[args.action])
    if missing:
        print(
            f"lumos-mcp arena {args.action} needs the arena extra (missing: {', '.join(missing)}): "
            "pip install 'lumos-mcp[arena]'",
            file=sys.stderr,
        )
        return 2
    from lumos_mcp.arena.campaign import main as arena_main

    return arena_main(
        args.action,
        out=args.out,
        problems=args.problems,
        quick=args.quick,
        seeds=args.seeds,
        strategies=args.strategies,
        resweep=args.resweep,
    )


# --------------------------------------------------------------------------- export / drift / reapply
def _persist_parsers(sub: Any) -> None:
    """``export``, ``drift`` and ``reapply``: keeping the committed state (README "Keeping settings")."""
    from lumos_mcp.persist.export import FORMATS

    def mode_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--mode", choices=MODES, default=None, help="whose committed state (default: live)")
        p.add_argument("--live", action="store_true", help="shorthand for --mode live (the default here)")

    ex = sub.add_parser("export", help="write the committed state as a sysctl.d drop-in, a TuneD profile, JSON or sh")
    _common(ex)
    mode_flags(ex)
    ex.add_argument("--format", choices=FORMATS, required=True, help="sysctl.d, tuned, json or shell (rollback)")
    ex.add_argument(
        "--out",
        type=Path,
        default=None,
        help="a directory to write into (/etc/sysctl.d, /etc/tuned, or any); default: print to stdout",
    )
    dr = sub.add_parser("drift", help="is the host still running what was committed? exit 1 on drift")
    _common(dr)
    mode_flags(dr)
    dr.add_argument("--json", action="store_true")
    ra = sub.add_parser("reapply", help="put the committed state back through policy, journal and audit (at boot)")
    _common(ra)
    _modes(ra)
    ra.add_argument(
        "--approval-wait",
        type=_number(float, 0, high=86400),
        default=0.0,
        metavar="S",
        help="where the policy asks for approval, wait this long for an operator to grant it (default 0)",
    )
    ra.add_argument("--json", action="store_true")


def _persist_mode(args: argparse.Namespace) -> Mode:
    """The mode of export, drift and reapply: live unless told (persisting is about the host)."""
    return _mode(args) if args.mode is not None or args.live else "live"


def _read_only_backend(state: Path, mode: Mode) -> Any:
    """The kernel a mode writes, opened for reading only (no lock taken: a server may be running)."""
    from lumos_mcp.kernelfs.backend import Backend
    from lumos_mcp.kernelfs.root import KernelRoot
    from lumos_mcp.knobs import default_catalog

    return Backend(KernelRoot(state / "sandbox" if mode == "sandbox" else Path("/")), default_catalog())


def cmd_export(args: argparse.Namespace) -> int:
    import time as _time

    from lumos_mcp.persist import export, hostconf
    from lumos_mcp.persist.state import committed_state

    mode = _persist_mode(args)  # a usage error first, before the state directory is looked at
    state = args.state_dir or default_state_dir()
    check_state_dir(state)
    backend = _read_only_backend(state, mode)
    knobs = committed_state(state, mode, backend)
    out = export.render(args.format, knobs, backend, mode, _time.time(), hostconf.active_profile(Path("/")))
    for n in out.not_carried:
        print(f"lumos-mcp export: not carried by {args.format}: {n.knob}: {n.reason}", file=sys.stderr)
    if args.out is None:
        for text in out.files.values():
            sys.stdout.write(text)
        return 0
    for name, text in out.files.items():
        target = args.out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        if args.format == "shell":
            target.chmod(0o700)
        print(f"wrote {target} ({len(knobs) - len(out.not_carried)} of {len(knobs)} committed knob(s))")
    return 0


def cmd_drift(args: argparse.Namespace) -> int:
    from lumos_mcp.persist.drift import detect
    from lumos_mcp.persist.state import committed_state

    mode = _persist_mode(args)  # a usage error first, before the state directory is looked at
    state = args.state_dir or default_state_dir()
    check_state_dir(state)
    backend = _read_only_backend(state, mode)
    report = detect(committed_state(state, mode, backend), backend, Path("/"))
    if args.json:
        print(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(f"{mode}: {report.checked} committed knob(s), {len(report.drift)} drift finding(s)")
        for d in report.drift:
            print(f"  {d.type:8} {d.knob}: {d.detail}")
    return 0 if report.clean else 1


def cmd_reapply(args: argparse.Namespace) -> int:
    from lumos_mcp.persist.reapply import reapply

    mode = _persist_mode(args)
    service = Service(_config(args, mode))
    try:
        service.start()
        report = reapply(service, approval_wait_s=args.approval_wait)
        service.shutdown()
    finally:
        service.close()
    if args.json:
        print(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(f"{mode}: {len(report.knobs)} committed knob(s)" + (f", reapplied by {report.tx}" if report.tx else ""))
        for k in report.knobs:
            print(f"  {k.outcome:14} {k.knob} = {k.value!r} {k.detail}".rstrip())
    return 0 if report.complete else 1


COMMANDS = {
    "serve": cmd_serve,
    "tune": cmd_tune,
    "status": cmd_status,
    "approvals": cmd_approvals,
    "audit": cmd_audit,
    "recover": cmd_recover,
    "metrics": cmd_metrics,
    "top": cmd_top,
    "desktop-config": cmd_desktop_config,
    "arena": cmd_arena,
    "selftest": cmd_selftest,
    "export": cmd_export,
    "drift": cmd_drift,
    "reapply": cmd_reapply,
}

__all__ = ["main", "parser", "read_token"]
