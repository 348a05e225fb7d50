"""Teach the smoke backbone to answer spoken questions with short English sentences.

    python -m services.backbone.smoke.train --out services/backbone/checkpoints/smoke

Why: with seeded random weights the demo's replies were byte noise (``'\\nGGGG'``), so a newcomer saw
the plumbing but not a conversation. The backbone starts from the seeded initialisation
(``BACKBONE_SEED``) and learns, on the CPU in about 15 minutes, the replies of
:mod:`services.backbone.smoke.qa`.
The seeded smoke encoder stays as it is (frozen): the backbone learns to read its embeddings.

Conversations are laid out exactly as a Converse session lays out its context (``ChatPrompt``: the
session's instructions, earlier spoken or typed turns with their replies, some cut short as a
barge-in cuts them, then the question). Questions are spoken by espeak-ng in many accents and voice
variants at random rates, pitches, levels and noise, with the leading and trailing silence a session
keeps; the scores in ``metrics.json`` are on the duplex corpus' held-out voices, whose variants
training never hears. Reproducible: data, initialisation and batch order are seeded
(``BACKBONE_TRAIN_SEED``), training runs with a fixed thread count.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from minmo_contracts.prompt import ChatPrompt
from minmo_contracts.tokenizer import ENDOFTEXT, IM_END, SmokeByteTokenizer
from services.backbone import Backbone, save
from services.backbone import build_smoke as build_smoke_backbone
from services.backbone.smoke.qa import QA
from services.common.settings_flags import add_settings_flags, settings_from_args, trainer_parser, write_run_metrics
from services.duplex import corpus, synth
from services.duplex.dialogues import DEFAULT_INSTRUCTIONS
from services.encoder import SpeechEncoder
from services.encoder import build_smoke as build_smoke_encoder
from services.smoke_seeds import BACKBONE_SEED, BACKBONE_TRAIN_SEED, ENCODER_SEED

# espeak-ng accents and voice variants (``espeak-ng --voices=variant``); the duplex corpus' held-out
# voices' variants are never used, so the scores in metrics.json are on voices training never heard.
ACCENTS = ("en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
VOICE_VARIANTS = (
    "",  # the accent's own voice
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "adam",
    "andy",
    "annie",
    "aunty",
    "belinda",
    "benjamin",
    "david",
    "ed",
    "edward",
    "gene",
    "jacky",
    "john",
    "linda",
    "max",
    "michael",
    "mike",
    "paul",
    "rob",
    "robert",
    "steph",
    "travis",
    "victor",
    "zac",
    "klatt",
    "klatt3",
)
METRICS_FILE = "metrics.json"
IGNORE = -100


@dataclass(frozen=True)
class TrainSettings:
    clips: int = 60  # per question, each in a random training voice, rate, pitch, level, noise and silences
    steps: int = 1500
    batch_size: int = 12
    lr: float = 1.5e-3
    typed_p: float = 0.15  # share of turns typed instead of spoken
    augment: bool = True
    seed: int = BACKBONE_TRAIN_SEED


def training_voices() -> tuple[str, ...]:
    """Every accent with many voice variants: a model that heard six voices answered only 40 % of held-out clips."""
    heldout = {v.name.partition("+")[2] for v in corpus.voices("heldout")}
    variants = [v for v in VOICE_VARIANTS if v not in heldout]
    return tuple(f"{accent}+{variant}" if variant else accent for accent in ACCENTS for variant in variants)


def speak(text: str, voice: str, rng: np.random.Generator, cache_dir: Path) -> np.ndarray:
    """One spoken question as a session keeps it: leading silence, the speech, the ~0.24 s after its end point."""
    clip = synth.espeak(text, voice, int(rng.integers(130, 211)), int(rng.integers(25, 81)), cache_dir)
    clip = clip * (rng.uniform(0.02, 0.25) / (np.sqrt(np.mean(clip**2)) + 1e-9))
    lead, trail = (round(rng.uniform(*span) * synth.SAMPLE_RATE) for span in ((0.0, 0.8), (0.15, 0.5)))
    audio = synth.background(rng, lead + len(clip) + trail)
    audio[lead : lead + len(clip)] += clip
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def spoken_questions(
    encoder: SpeechEncoder, voices: Sequence[str], clips: int, seed: int, cache_dir: Path
) -> list[list[torch.Tensor]]:
    """Encoder embeddings of every question: ``[question][clip]``, ``clips`` clips in random ``voices``
    (all of them in turn when ``clips`` is their number)."""
    rng = np.random.default_rng(seed)
    out: list[list[torch.Tensor]] = []
    with torch.no_grad():  # not inference_mode: the embeddings go into training graphs
        for question, _ in QA:
            picked = voices if clips == len(voices) else [voices[rng.integers(len(voices))] for _ in range(clips)]
            out.append([encoder.encode(speak(question, voice, rng, cache_dir)) for voice in picked])
    return out


@dataclass
class Conversation:
    """Model inputs as segments (id lists or speech embeddings) and the next-token target of every position."""

    segments: list[list[int] | torch.Tensor] = dataclasses.field(default_factory=list)
    targets: list[int] = dataclasses.field(default_factory=list)

    def add(self, segment: list[int] | torch.Tensor, learn: list[int] | None = None) -> None:
        """Append ``segment``; with ``learn``, its positions predict ``learn`` (the segment's own next tokens)."""
        n = len(segment) if isinstance(segment, list) else int(segment.shape[0])
        if learn is None:
            self.targets.extend([IGNORE] * n)
        else:
            self.targets[-1] = learn[0]  # the position before the segment predicts its first token
            self.targets.extend([*learn[1:], IGNORE][:n])
        self.segments.append(segment)


class ConversationSampler:
    """Random conversations laid out as the session lays them out; the replies to learn are marked."""

    def __init__(self, spoken: list[list[torch.Tensor]], settings: TrainSettings) -> None:
        self.tok = SmokeByteTokenizer()
        self.prompt = ChatPrompt(self.tok)
        self.im_end = self.tok.special_token_id(IM_END)
        self.spoken = spoken
        self.settings = settings

    def reply(self, conv: Conversation, text: str, *, cut: bool = False, rng: np.random.Generator) -> None:
        ids = self.tok.encode(text)
        opening, closing = self.prompt.assistant_open(), self.prompt.assistant_close()
        if cut:  # a barge-in: the turn keeps what was played; nothing to learn from it
            conv.add([*opening, *ids[: int(rng.integers(0, len(ids)))], *closing])
            return
        conv.add(opening)
        conv.add([*ids, self.im_end], learn=[*ids, self.im_end])
        conv.add(closing[1:])

    def augment(self, speech: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Tempo and noise drawn anew each time a clip is used: without it the model learned the clips
        (training loss 0.003) and answered half the held-out voices' questions."""
        if not self.settings.augment:
            return speech
        n = speech.shape[0]
        stretch = rng.uniform(0.85, 1.15)  # rows resampled to a slower or faster tempo
        index = np.minimum((np.arange(max(2, round(n * stretch))) / stretch).astype(int), n - 1)
        rows = speech[torch.from_numpy(index)]
        scale = float(speech.std()) * rng.uniform(0.0, 0.3)
        noise = torch.from_numpy(rng.standard_normal(rows.shape).astype(np.float32))
        return rows + scale * noise

    def sample(self, rng: np.random.Generator) -> Conversation:
        conv = Conversation()
        if rng.random() < 0.75:
            conv.add(self.prompt.system(DEFAULT_INSTRUCTIONS)[0])  # type: ignore[arg-type]
        turns = int(rng.integers(1, 4))
        for i in range(turns):
            q = int(rng.integers(len(QA)))
            if rng.random() < self.settings.typed_p:
                conv.add(self.prompt.user_text(QA[q][0])[0])  # type: ignore[arg-type]
            else:
                conv.add(self.prompt.user_speech_open())
                conv.add(self.augment(self.spoken[q][int(rng.integers(len(self.spoken[q])))], rng))
                conv.add(self.prompt.user_speech_close())
            self.reply(conv, QA[q][1], cut=i < turns - 1 and rng.random() < 0.3, rng=rng)
        return conv


def conversation_loss(model: Backbone, conv: Conversation) -> torch.Tensor:
    rows = [model.embed(torch.tensor(s)) if isinstance(s, list) else s for s in conv.segments]
    hidden = model.model(torch.cat(rows))
    return F.cross_entropy(model.logits(hidden), torch.tensor(conv.targets), ignore_index=IGNORE, reduction="sum")


def train_model(spoken: list[list[torch.Tensor]], settings: TrainSettings) -> tuple[Backbone, list[float]]:
    """AdamW with warm-up and cosine decay over ``settings.steps`` batches; returns the model and loss per 100 steps."""
    model = build_smoke_backbone(BACKBONE_SEED).train()
    sampler = ConversationSampler(spoken, settings)
    rng = np.random.default_rng(settings.seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.01)
    warmup = 50

    def scale(step: int) -> float:
        return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / settings.steps))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, scale)
    losses, running = [], 0.0
    for step in range(settings.steps):
        convs = [sampler.sample(rng) for _ in range(settings.batch_size)]
        n_targets = sum(sum(t != IGNORE for t in c.targets) for c in convs)
        loss = sum(conversation_loss(model, c) for c in convs) / n_targets
        optimiser.zero_grad()
        loss.backward()  # type: ignore[union-attr]
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        running += loss.item()  # type: ignore[union-attr]
        if (step + 1) % 100 == 0:
            losses.append(round(running / 100, 4))
            running = 0.0
    return model.eval(), losses


def reply_to(model: Backbone, segments: list[list[int] | torch.Tensor], max_new_tokens: int = 96) -> str:
    """Greedy reply as the served backbone samples it (temperature 0, stopped by its stop ids)."""
    tok = SmokeByteTokenizer()
    session = model.new_session()
    for segment in segments:
        session.append(ids=segment) if isinstance(segment, list) else session.append(embeds=segment)
    stop = sorted({tok.eos_id, tok.special_token_id(ENDOFTEXT)})  # as model_repository/backbone/1/model.py
    return tok.decode([t.token_id for t in session.generate(max_new_tokens, stop_ids=stop)])


def evaluate(model: Backbone, spoken: list[list[torch.Tensor]]) -> dict[str, Any]:
    """Exact-match rates of spoken and typed answers; the misses, for reading."""
    prompt = ChatPrompt(SmokeByteTokenizer())
    system = prompt.system(DEFAULT_INSTRUCTIONS)[0]
    assert isinstance(system, list)
    answered = typed = total = 0
    misses: list[dict[str, str]] = []
    with torch.inference_mode():
        for (question, answer), clips in zip(QA, spoken, strict=True):
            for clip in clips:
                total += 1
                opening = [*system, *prompt.user_speech_open()]
                got = reply_to(model, [opening, clip, [*prompt.user_speech_close(), *prompt.assistant_open()]])
                answered += got == answer
                if got != answer and len(misses) < 20:
                    misses.append({"question": question, "expected": answer, "got": got})
            typed_turn = prompt.user_text(question)[0]
            assert isinstance(typed_turn, list)
            typed += reply_to(model, [[*system, *typed_turn, *prompt.assistant_open()]]) == answer
    return {
        "spoken_answers_exact": round(answered / total, 3),
        "spoken_clips": total,
        "typed_answers_exact": round(typed / len(QA), 3),
        "misses": misses,
    }


def run(out: Path, settings: TrainSettings, cache_dir: Path, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    torch.manual_seed(settings.seed)
    started = time.perf_counter()
    encoder = build_smoke_encoder(ENCODER_SEED)
    train_clips = spoken_questions(encoder, training_voices(), settings.clips, settings.seed, cache_dir)
    heldout_voices = tuple(v.name for v in corpus.voices("heldout"))
    heldout_clips = spoken_questions(encoder, heldout_voices, len(heldout_voices), settings.seed + 1, cache_dir)
    data_seconds = time.perf_counter() - started
    model, losses = train_model(train_clips, settings)
    train_seconds = time.perf_counter() - started - data_seconds
    save(model, out, profile="smoke")
    fresh_clips = spoken_questions(encoder, training_voices(), 3, settings.seed + 2, cache_dir)
    metrics = {
        "heldout_voices": evaluate(model, heldout_clips),
        "training_voices_new_clips": evaluate(model, fresh_clips),
        "settings": dataclasses.asdict(settings),
        "loss_per_100_steps": losses,
    }
    write_run_metrics(
        out / METRICS_FILE, metrics, data_seconds=data_seconds, train_seconds=train_seconds, threads=threads
    )
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = trainer_parser(__doc__, cache_dir=synth.default_cache_dir(), cache_help="speech cache", threads=2)
    add_settings_flags(parser, TrainSettings)
    args = parser.parse_args(argv)
    metrics = run(args.out, settings_from_args(TrainSettings, args), args.cache_dir, args.threads)
    held = metrics["heldout_voices"]
    print(
        f"held-out voices: spoken answers {held['spoken_answers_exact']} exact ({held['spoken_clips']} clips), "
        f"typed {held['typed_answers_exact']}; new clips in training voices: "
        f"{metrics['training_voices_new_clips']['spoken_answers_exact']}; "
        f"loss {metrics['loss_per_100_steps']}"
    )
    print(f"data {metrics['data_seconds']} s, training {metrics['train_seconds']} s; wrote {args.out}")


if __name__ == "__main__":
    main()
