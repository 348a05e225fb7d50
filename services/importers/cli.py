"""``minmo models import <kind> <source> --out <weights>``: one command for every checkpoint kind.

Order for a full minmo profile: ``qwen2`` (the backbone width the others are checked against),
``sensevoice``, ``cosyvoice2``, then ``minmo`` (the projectors complete the encoder and speech_lm).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

KINDS = ("qwen2", "sensevoice", "cosyvoice2", "minmo")

EPILOG = """kinds:
  qwen2       Hugging Face Qwen2.5-7B-Instruct folder -> backbone (+ tokenizer.json)
  sensevoice  FunASR SenseVoice folder (model.pt, config.yaml, am.mvn) -> encoder (pending projector)
  cosyvoice2  CosyVoice 2 folder (cosyvoice2.yaml, llm.pt, flow.pt, hift.pt, campplus.onnx,
              speech_tokenizer_v2.onnx, CosyVoice-BlankEN/config.json, optional spk2info.pt)
              -> speech_lm (pending projector), vocoder; voices from spk2info.pt, --voices, --voice
  minmo       MinMo folder (input_projector/output_projector/duplex .safetensors, optional config.json)
              -> completes encoder and speech_lm, writes duplex

order: qwen2, sensevoice, cosyvoice2, minmo (all with the same --out)
"""


def run_import(
    kind: str,
    source: Path,
    out: Path,
    *,
    default_voice: str | None = None,
    voices_files: list[Path] | None = None,
    voice_prompts: list[str] | None = None,
) -> list[str]:
    """Dispatch to the importer of ``kind``; returns what was written, one line per stage."""
    from services.importers.errors import CheckpointError

    if not source.is_dir():
        raise CheckpointError(f"{source} is not a folder")
    if kind == "qwen2":
        from services.importers.qwen2 import import_qwen2

        return import_qwen2(source, out)
    if kind == "sensevoice":
        from services.importers.sensevoice import import_sensevoice

        return import_sensevoice(source, out)
    if kind == "cosyvoice2":
        from services.importers.cosyvoice2 import import_cosyvoice2
        from services.importers.voice_sources import parse_voice_prompt

        try:
            prompts = dict(parse_voice_prompt(spec) for spec in voice_prompts or [])
        except ValueError as exc:
            raise CheckpointError(str(exc)) from None
        return import_cosyvoice2(
            source, out, default_voice=default_voice, voices_files=voices_files or [], prompts=prompts
        )
    if kind == "minmo":
        from services.importers.minmo import import_minmo

        return import_minmo(source, out)
    raise CheckpointError(f"unknown checkpoint kind {kind!r}; expected one of {', '.join(KINDS)}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=KINDS, help="which checkpoint the source folder holds")
    parser.add_argument("source", type=Path, help="the checkpoint folder")
    parser.add_argument("--out", type=Path, default=Path("weights/minmo"), help="weights root (one folder per stage)")
    parser.add_argument("--default-voice", help="cosyvoice2: the voice used when a stream names none")
    parser.add_argument(
        "--voice",
        action="append",
        default=[],
        metavar="NAME=WAV",
        help="cosyvoice2: a named voice from a prompt recording (embedded by campplus.onnx); repeatable",
    )
    parser.add_argument(
        "--voices",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="cosyvoice2: a voices.safetensors file (name -> [192] CAM++ x-vector); repeatable",
    )


def run(args: argparse.Namespace) -> int:
    from services.importers.errors import CheckpointError

    try:
        lines = run_import(
            args.kind,
            args.source,
            args.out,
            default_voice=args.default_voice,
            voices_files=args.voices,
            voice_prompts=args.voice,
        )
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
