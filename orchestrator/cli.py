"""``minmo``: the command line of MinMo Serve (local stack, server, autoscaler, weights, imports, demo, talk, GPU)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestrator.devstack.triton_launcher import StackError, TritonPorts
from orchestrator.server.bounds_config import add_bounds_flags
from orchestrator.server.flags import add_routing_flags, add_security_flags, add_turn_taking_flags


def _stack(args: argparse.Namespace) -> int:
    from orchestrator.devstack import stack

    if args.action == "up":
        ports = TritonPorts(args.http_port, args.grpc_port, args.metrics_port)
        state = stack.up(args.weights.resolve(), ports, triton_trace_url=args.triton_trace_url)
        print(
            f"stack up: tritonserver pid {state.triton_pid} (HTTP {args.http_port}, gRPC {args.grpc_port}, "
            f"metrics {args.metrics_port}), redis 127.0.0.1:6379 "
            f"({'started, pid ' + str(state.redis_pid) if state.redis_pid else 'already running'}); "
            f"log: {stack.RUN_DIR / 'triton.log'}"
        )
        print(f"orchestrator 127.0.0.1:50051 (pid {state.orchestrator_pid}); log: {stack.RUN_DIR / 'orchestrator.log'}")
    else:
        for line in stack.down() or ["nothing to stop"]:
            print(line)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from orchestrator import demo_chain

    return demo_chain.main(
        ["--triton", args.triton, "--out", str(args.out), *(["--realtime"] if args.realtime else [])]
    )


def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from orchestrator.server.app import ServeError, serve
    from orchestrator.server.bounds_config import bounds_settings
    from orchestrator.server.contracts import ServeSettings
    from orchestrator.server.flags import routing_settings, security_settings, turn_taking_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = ServeSettings(
        port=args.port,
        host=args.host,
        triton_url=args.triton or "127.0.0.1:8001",
        redis_url=args.redis,
        max_sessions=args.max_sessions,
        metrics_port=args.metrics_port,
        trace_file=args.trace_file,
        otlp_endpoint=args.otlp_endpoint,
        **security_settings(args),
        **routing_settings(args),
        **bounds_settings(args),
        **turn_taking_settings(args),
    )
    if args.triton and settings.triton_pools:
        print("error: pass --triton (one Triton for every model) or --triton-pool, not both", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(settings))
    except ServeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _autoscale(args: argparse.Namespace) -> int:
    import logging

    from kubernetes.config.config_exception import ConfigException

    from orchestrator.autoscaler.app import run
    from orchestrator.autoscaler.config import ConfigError
    from orchestrator.autoscaler.flags import autoscale_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = autoscale_settings(args)
    try:
        run(settings)
    except (ConfigError, ConfigException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _talk(args: argparse.Namespace) -> int:
    from orchestrator import talk

    wav = ["--wav", str(args.wav)] if args.wav else []
    return talk.main(["--server", args.server, "--out", str(args.out), *wav])


def _weights(args: argparse.Namespace) -> int:
    from services import build_weights

    return build_weights.main(["--out", str(args.out)])


def _models(args: argparse.Namespace) -> int:
    from services.importers import cli as importers_cli

    return importers_cli.run(args)


def build_parser() -> argparse.ArgumentParser:
    """Every ``minmo`` command and flag (the docs' flags are checked against it: tests/unit/test_docs_sync.py)."""
    parser = argparse.ArgumentParser(prog="minmo", description="MinMo Serve command line")
    commands = parser.add_subparsers(dest="command", required=True)

    stack_cmd = commands.add_parser("stack", help="start or stop the local stack (Triton on the CPU, Redis)")
    stack_cmd.add_argument("action", choices=["up", "down"])
    stack_cmd.add_argument("--weights", type=Path, default=Path("weights/smoke"))
    stack_cmd.add_argument("--http-port", type=int, default=8000)
    stack_cmd.add_argument("--grpc-port", type=int, default=8001)
    stack_cmd.add_argument("--metrics-port", type=int, default=8002)
    stack_cmd.add_argument(
        "--triton-trace-url",
        help="OTLP/HTTP endpoint (e.g. http://127.0.0.1:4318/v1/traces) for Triton's own spans; off when unset",
    )
    stack_cmd.set_defaults(run=_stack)

    serve_cmd = commands.add_parser("serve", help="run the orchestrator's gRPC server (minmo.v1.MinMo)")
    serve_cmd.add_argument("--port", type=int, default=50051)
    serve_cmd.add_argument("--host", default="[::]", help="address to listen on")
    serve_cmd.add_argument("--triton", help="Triton's gRPC address (default 127.0.0.1:8001)")
    serve_cmd.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL")
    serve_cmd.add_argument("--max-sessions", type=int, default=16, help="concurrent Converse sessions per process")
    serve_cmd.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on http://HOST:PORT/metrics")
    serve_cmd.add_argument("--trace-file", type=Path, help="append finished spans to this JSON-lines file")
    serve_cmd.add_argument("--otlp-endpoint", help="export spans over OTLP gRPC, e.g. http://127.0.0.1:4317")
    add_security_flags(serve_cmd)
    add_routing_flags(serve_cmd)
    add_bounds_flags(serve_cmd)
    add_turn_taking_flags(serve_cmd)
    serve_cmd.set_defaults(run=_serve)

    weights_cmd = commands.add_parser("weights", help="build the seeded smoke weights")
    weights_cmd.add_argument("--out", type=Path, default=Path("weights/smoke"))
    weights_cmd.set_defaults(run=_weights)

    models_cmd = commands.add_parser("models", help="import real checkpoints into the weights format")
    models_actions = models_cmd.add_subparsers(dest="action", required=True)
    from services.importers.cli import EPILOG as IMPORT_EPILOG
    from services.importers.cli import add_arguments as add_import_arguments

    import_cmd = models_actions.add_parser(
        "import",
        help="import one checkpoint folder (qwen2, sensevoice, cosyvoice2, minmo)",
        epilog=IMPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    add_import_arguments(import_cmd)
    import_cmd.set_defaults(run=_models)

    demo_cmd = commands.add_parser("demo", help="one spoken question through the five models on Triton")
    demo_cmd.add_argument("--triton", default="127.0.0.1:8001")
    demo_cmd.add_argument("--metrics", default="http://127.0.0.1:8002/metrics")
    demo_cmd.add_argument("--out", type=Path, default=Path("out/reply.wav"))
    demo_cmd.add_argument("--realtime", action="store_true")
    demo_cmd.set_defaults(run=_demo)

    scale_cmd = commands.add_parser("autoscale", help="size the Triton pools from live sessions (Kubernetes)")
    from orchestrator.autoscaler.flags import add_autoscale_flags

    add_autoscale_flags(scale_cmd)
    scale_cmd.set_defaults(run=_autoscale)

    talk_cmd = commands.add_parser("talk", help="a spoken conversation with the orchestrator (Converse)")
    talk_cmd.add_argument("--server", default="127.0.0.1:50051")
    talk_cmd.add_argument("--wav", type=Path, help="speak this WAV instead of the scripted conversation")
    talk_cmd.add_argument("--out", type=Path, default=Path("out/reply.wav"))
    talk_cmd.set_defaults(run=_talk)

    from services.gpu_profile.cli import add_gpu_commands

    add_gpu_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
