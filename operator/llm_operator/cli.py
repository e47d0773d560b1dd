"""`llm-operator`: run the operator, render an LLMDeployment's children, check a spec, print the CRD."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from llm_operator import constants as c
from llm_operator.capacity import format_table
from llm_operator.capacity_check import plan_for
from llm_operator.catalog import Catalog, CatalogError
from llm_operator.render.common import Owner
from llm_operator.settings import SettingsError, from_env
from llm_operator.yamlio import dump_all


def _documents(path: str) -> Iterator[dict[str, Any]]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    for document in yaml.safe_load_all(text):
        if document is None:
            continue
        if not isinstance(document, dict) or document.get("kind") != c.KIND:
            continue
        yield document


def _name(document: dict[str, Any]) -> tuple[str, str]:
    meta = document.get("metadata") or {}
    return str(meta.get("name", "unnamed")), str(meta.get("namespace", "default"))


def cmd_render(args: argparse.Namespace) -> int:
    """All children as YAML; ownerReferences only with --owner-uid (a wrong uid would let GC delete them)."""
    from llm_operator.desired import render_children, validate

    settings = from_env()
    catalog = Catalog.default().with_overrides(settings.catalog_overrides)
    out: list[dict[str, Any]] = []
    for document in _documents(args.file):
        name, namespace = _name(document)
        spec, errors = validate(document.get("spec") or {}, namespace, catalog)
        if errors or spec is None:
            sys.stderr.write("".join(f"{name}: {error}\n" for error in errors))
            return 1
        children = render_children(Owner(name, namespace, args.owner_uid or ""), spec, settings, catalog)
        if not args.owner_uid:
            for child in children:
                del child["metadata"]["ownerReferences"]
        out += children
    sys.stdout.write(dump_all(out))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Validate specs as the operator does (without a cluster) and print each capacity plan."""
    from llm_operator.desired import validate

    catalog = Catalog.default().with_overrides(from_env().catalog_overrides)
    failed = False
    documents = list(_documents(args.file))
    if not documents:
        sys.stderr.write(f"{args.file}: no {c.KIND} found\n")
        return 1
    for document in documents:
        name, namespace = _name(document)
        spec, errors = validate(document.get("spec") or {}, namespace, catalog)
        if errors or spec is None:
            failed = True
            sys.stdout.write(f"{namespace}/{name}: invalid\n" + "".join(f"  {error}\n" for error in errors))
            continue
        plan = plan_for(spec, catalog)
        blocked = plan.verdict == "does-not-fit" and spec.capacity_check == "Enforce"
        failed |= blocked
        sys.stdout.write(f"{namespace}/{name}: {'blocked' if blocked else 'ok'}\n")
        if spec.engine.extra_args:
            # Only vLLM knows its arguments, and the operator never imports it: the Serve app checks these.
            names = ", ".join(sorted(spec.engine.extra_args))
            sys.stdout.write(f"  spec.engine.extraArgs ({names}): not checked here; vLLM checks them at deploy\n")
        sys.stdout.write(f"{format_table(plan)}\n")
    return 1 if failed else 0


def cmd_crd(_: argparse.Namespace) -> int:
    from llm_operator.crd import render

    sys.stdout.write(render())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run the operator (kopf) until interrupted."""
    from llm_operator.run import run

    return run(args)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="llm-operator", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the operator")
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch this namespace (repeatable); default: all namespaces",
    )
    run.add_argument(
        "--leader-election",
        action="store_true",
        help="act only while holding a Lease (several replicas, one active); the chart sets it",
    )
    run.add_argument("--lease-name", default="llm-operator", help="the Lease's name")
    run.add_argument("--lease-namespace", default=None, help="the Lease's namespace (default: $POD_NAMESPACE)")
    run.add_argument("--lease-duration", type=float, default=15.0, help="seconds a Lease lasts unrenewed")
    run.add_argument("--lease-renew-deadline", type=float, default=10.0, help="seconds the leader may fail to renew")
    run.add_argument("--lease-retry", type=float, default=2.0, help="seconds between attempts")
    run.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="liveness endpoint URL")
    run.add_argument("--metrics-port", type=int, default=9090, help="Prometheus metrics port (0: off)")
    run.add_argument("--metrics-address", default="0.0.0.0", help="address the metrics server binds")
    run.add_argument("--kubeconfig", default=None, help="kubeconfig (default: in-cluster, then ~/.kube/config)")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging, with kopf's line per watch event")
    run.set_defaults(func=cmd_run)
    for name, func, text in (
        ("render", cmd_render, "print the children of LLMDeployments as YAML"),
        ("check", cmd_check, "validate LLMDeployments and print their capacity plans"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("-f", "--file", required=True, help="YAML file with LLMDeployment(s), or -")
        if name == "render":
            command.add_argument("--owner-uid", default=None, help="uid of the LLMDeployment for ownerReferences")
        command.set_defaults(func=func)
    sub.add_parser("crd", help="print the LLMDeployment CRD").set_defaults(func=cmd_crd)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (SettingsError, CatalogError) as error:
        sys.stderr.write(f"llm-operator: {error}\n")
        return 2
    except (OSError, yaml.YAMLError) as error:
        sys.stderr.write(f"llm-operator: {getattr(args, 'file', '')}: {error}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
