"""Sentences and voices for the synthetic duplex dialogues, split into train and held-out sets.

The held-out split shares no sentence, clause and no voice with the training split, so its metrics
measure turn-taking on speech the predictor has never heard rather than memorised clips.
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


# Long turns: clauses spoken one by one (separate espeak calls) and joined by 0.2-0.4 s pauses. A
# clause that ends in a comma gets espeak's continuation intonation; one that ends a sentence falls,
# as at the end of a turn, although the speaker goes on: only the silence's length tells them apart.
_TRAIN_MONOLOGUES = (
    (
        "so last weekend we drove to the coast,",
        "and the weather was perfect.",
        "we walked along the beach for hours,",
        "then we found a small cafe.",
        "can you find me a place like that",
    ),
    (
        "I have been trying to learn to cook,",
        "but every recipe I try goes wrong.",
        "yesterday the rice burned again,",
        "and the whole kitchen smelled of smoke.",
        "what am I doing wrong",
    ),
    (
        "my daughter starts school next week,",
        "and she is a bit nervous.",
        "she does not know any of the other children,",
        "so I want to help her feel ready.",
        "do you have any advice",
    ),
    (
        "I need to plan a birthday party,",
        "it is for about twenty people.",
        "most of them are coming from out of town,",
        "and some of them do not eat meat.",
        "what kind of food should I order",
    ),
    (
        "there is a noise in my car,",
        "it started after the long trip.",
        "it gets louder when I turn left,",
        "and it goes away on the highway.",
        "should I take it to a garage",
    ),
    (
        "we are thinking about getting a dog,",
        "but our flat is quite small.",
        "we both work during the day,",
        "although my partner works from home on fridays.",
        "which breed would suit us",
    ),
    (
        "I read an article this morning,",
        "it was about saving energy at home.",
        "they said old fridges use a lot of power,",
        "and that lights should be switched off.",
        "is that really true",
    ),
    (
        "my neighbour plays the piano every evening,",
        "usually from seven until nine.",
        "at first I liked it,",
        "but now I cannot concentrate on my work.",
        "how should I talk to him about it",
    ),
)

_HELDOUT_MONOLOGUES = (
    (
        "so this morning I missed my bus,",
        "and then it started raining.",
        "I waited under a tree for a while,",
        "but the next bus was full too.",
        "how else can I get to the city centre",
    ),
    (
        "my grandmother is visiting next month,",
        "she has not been here in years.",
        "she loves gardens and old buildings,",
        "but she cannot walk very far.",
        "where could we take her",
    ),
    (
        "I started running in the spring,",
        "three times a week at first.",
        "now my knee hurts after a few kilometres,",
        "even though I stretch before every run.",
        "should I stop for a while",
    ),
    (
        "our team has a deadline on thursday,",
        "and two people are on holiday.",
        "I have already worked late twice this week,",
        "and there is still a lot left to do.",
        "how do I tell my manager",
    ),
    (
        "the printer in our office keeps jamming,",
        "mostly when we print on both sides.",
        "we cleaned the rollers last week,",
        "and we bought new paper as well.",
        "what else could cause that",
    ),
    (
        "I am reading a novel about a sailor,",
        "he gets lost near a small island.",
        "the first chapters were slow,",
        "but now I cannot put it down.",
        "can you recommend something similar",
    ),
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


def monologues(split: Split) -> tuple[tuple[str, ...], ...]:
    return _TRAIN_MONOLOGUES if split == "train" else _HELDOUT_MONOLOGUES


def voices(split: Split) -> tuple[Voice, ...]:
    return _TRAIN_VOICES if split == "train" else _HELDOUT_VOICES
