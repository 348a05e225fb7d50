"""Sentences and voices for the synthetic duplex dialogues, split into train and held-out sets.

The held-out split shares no sentence and no voice with the training split, so its metrics measure
turn-taking on speech the predictor has never heard rather than memorised clips.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Split = Literal["train", "heldout"]

_TRAIN_PHRASES = (
    "what is the weather like tomorrow morning",
    "can you tell me a short story about a dragon",
    "I would like to book a table for two",
    "please remind me to call my sister tonight",
    "how far is the moon from the earth",
    "play some quiet music for the kitchen",
    "what time does the pharmacy close on sunday",
    "translate good morning into spanish",
    "I am looking for a cheap hotel near the station",
    "how do I make a simple tomato soup",
    "tell me something funny about cats",
    "turn off the lights in the living room",
    "what did the team score last night",
    "is it going to rain this afternoon",
    "explain how a rainbow is formed",
    "set a timer for ten minutes",
    "I need a gift idea for my father",
    "which train goes to the airport",
    "read me the latest news headlines",
    "how many cups are in a litre",
    "my phone battery drains very fast",
    "can you recommend a good science book",
    "what should I cook for dinner",
    "send a message to the office",
    "how long does it take to boil an egg",
    "what is the capital of australia",
    "I feel a little tired today",
    "write a short poem about the sea",
    "how do plants make their food",
    "can you help me plan a weekend trip",
    "what are the opening hours of the museum",
    "tell me a fact about the ocean",
    "add milk and bread to my shopping list",
    "why is the sky blue",
    "I forgot where I parked the car",
    "what is a good name for a puppy",
)

_HELDOUT_PHRASES = (
    "could you check my calendar for friday",
    "how tall is the highest mountain in europe",
    "suggest a board game for four players",
    "where can I buy fresh flowers nearby",
    "describe the life cycle of a butterfly",
    "my coffee machine is making a strange noise",
    "give me three tips for better sleep",
    "what language do they speak in brazil",
    "I want to learn to play the guitar",
    "order a taxi to the concert hall",
    "how old is the oldest tree on the planet",
    "summarise the plot of a famous novel",
)

_TRAIN_BARGE_INS = (
    "wait a second",
    "no no stop",
    "hold on",
    "sorry that is not what I asked",
    "actually let me change my question",
    "excuse me",
    "stop please",
    "hang on I have another question",
)

_HELDOUT_BARGE_INS = (
    "one moment please",
    "no that is wrong",
    "just a minute",
    "let me interrupt you there",
)


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice with the ranges its rate (words per minute) and pitch (0-99) are drawn from."""

    name: str
    rate: tuple[int, int]
    pitch: tuple[int, int]


_TRAIN_VOICES = (
    Voice("en", (140, 200), (35, 65)),
    Voice("en-us", (130, 190), (30, 60)),
    Voice("en+f3", (140, 200), (45, 75)),
    Voice("en-us+m3", (150, 210), (25, 55)),
    Voice("en-gb-x-rp+f2", (130, 180), (50, 80)),
    Voice("en-gb-scotland+m2", (140, 190), (30, 60)),
)

_HELDOUT_VOICES = (
    Voice("en-029+f4", (140, 190), (40, 70)),
    Voice("en-us-nyc+m5", (150, 200), (30, 60)),
    Voice("en-gb-x-gbclan+f1", (130, 180), (45, 75)),
)


def phrases(split: Split) -> tuple[str, ...]:
    return _TRAIN_PHRASES if split == "train" else _HELDOUT_PHRASES


def barge_ins(split: Split) -> tuple[str, ...]:
    return _TRAIN_BARGE_INS if split == "train" else _HELDOUT_BARGE_INS


def voices(split: Split) -> tuple[Voice, ...]:
    return _TRAIN_VOICES if split == "train" else _HELDOUT_VOICES
