"""Run the atheris harnesses for a fixed budget each and record how many inputs they executed.

``make fuzz`` runs ``python -m tests.fuzz.run_atheris --seconds 60``; the test suite runs a few hundred
inputs per harness (``--runs 500``). Each harness runs in its own process (atheris' ``Setup`` owns
``sys.argv`` and libFuzzer owns the process), with a corpus under ``out/fuzz/corpus/<harness>`` that
grows across runs and crash inputs written to ``out/fuzz/crashes/``. Exit status 1 when a harness
found a crash; its output says which input.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from minmo.v1 import minmo_pb2 as pb

from tests.conftest import REPO_ROOT
from tests.fuzz.counts import record

HARNESSES = {"audio": "tests.fuzz.atheris_audio", "events": "tests.fuzz.atheris_events"}
OUT = REPO_ROOT / "out" / "fuzz"


def seeds() -> list[bytes]:
    """Well-formed events to start from, so the fuzzer mutates real messages rather than noise."""
    config = pb.SessionConfig(
        instructions="Be brief.",
        input_audio_format=pb.AudioFormat(encoding=pb.AudioFormat.FLOAT32, sample_rate_hz=44_100),
        turn_detection=pb.TURN_DETECTION_CLIENT,
        max_response_tokens=32,
        temperature=0.7,
    )
    events = [
        pb.ClientEvent(session=pb.SessionStart(config=config)),
        pb.ClientEvent(session=pb.SessionStart(resume_token="c2Vzc2lvbi10b2tlbg")),
        pb.ClientEvent(audio=pb.AudioChunk(data=b"\x00\x01" * 8)),
        pb.ClientEvent(text=pb.TextInput(text="hello")),
        pb.ClientEvent(commit=pb.CommitTurn()),
        pb.ClientEvent(cancel=pb.CancelResponse(played_ms=1200)),
        pb.ClientEvent(end=pb.EndSession()),
    ]
    return [event.SerializeToString() for event in events]


@dataclass(frozen=True)
class Result:
    harness: str
    returncode: int
    runs: int
    output: str


def run(harness: str, *, seconds: int | None = None, runs: int | None = None, out: Path = OUT) -> Result:
    """One harness for ``seconds`` or ``runs`` inputs; ``runs`` in the result is libFuzzer's own count."""
    corpus = out / "corpus" / harness
    corpus.mkdir(parents=True, exist_ok=True)
    (out / "crashes").mkdir(parents=True, exist_ok=True)
    if harness == "events":
        for index, seed in enumerate(seeds()):
            (corpus / f"seed-{index}").write_bytes(seed)
    budget = [f"-max_total_time={seconds}"] if seconds is not None else [f"-runs={runs}"]
    command = [
        sys.executable,
        "-m",
        HARNESSES[harness],
        str(corpus),
        *budget,
        "-timeout=10",  # seconds per input: a slower one is a hang, reported as a finding
        "-rss_limit_mb=2048",
        f"-artifact_prefix={out / 'crashes'}/{harness}-",
    ]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    output = done.stdout + done.stderr
    match = re.search(r"Done (\d+) runs", output)
    return Result(harness, done.returncode, int(match.group(1)) if match else 0, output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=int, help="time budget per harness (libFuzzer -max_total_time)")
    budget.add_argument("--runs", type=int, help="inputs per harness (libFuzzer -runs)")
    parser.add_argument("harness", nargs="*", help=f"which to run: {', '.join(HARNESSES)} (default: all)")
    args = parser.parse_args(argv)
    unknown = set(args.harness) - set(HARNESSES)
    if unknown:
        parser.error(f"unknown harness {', '.join(sorted(unknown))}: choose from {', '.join(HARNESSES)}")
    seconds = args.seconds if args.seconds is not None or args.runs is not None else 60
    failed = False
    for harness in args.harness or HARNESSES:
        result = run(harness, seconds=seconds, runs=args.runs)
        record(tallies={f"atheris.{harness}": result.runs})
        print(f"atheris {harness}: {result.runs} inputs, exit {result.returncode}")
        if result.returncode != 0:
            failed = True
            print(result.output[-4000:])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
