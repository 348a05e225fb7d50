"""What the smoke backbone is taught to answer: spoken questions and short, fitting English replies.

The questions are the duplex corpus' training phrases plus the sentences the demo, the load
benchmark and the tests speak, so a newcomer's first conversation reads as one. A question outside
this list still gets one of these replies (a 2.2M-parameter model that heard 60 questions knows
nothing else); the real MinMo backbone is what answers open questions.
"""

from __future__ import annotations

QA: tuple[tuple[str, str], ...] = (
    ("Hello there. What is the weather like today?", "It is sunny and warm today."),
    ("Tell me a long story about a brave little cat.", "A little cat climbed the tallest tree in town."),
    ("Sorry to interrupt you, please just say goodbye now", "Of course. Goodbye, and take care!"),
    ("Wait, stop. Tell me about the weekend instead.", "The weekend will be dry and mild."),
    ("Please book a table for two at seven tonight.", "Your table for two is booked for seven."),
    ("hello, how are you", "I am fine, thank you. How can I help?"),
    ("thank you very much", "You are welcome."),
    ("what is the weather like tomorrow morning", "Tomorrow morning will be cool and clear."),
    ("can you tell me a short story about a dragon", "A small dragon learned to fly over the sea."),
    ("I would like to book a table for two", "Sure. For which day and time?"),
    ("please remind me to call my sister tonight", "I will remind you tonight."),
    ("how far is the moon from the earth", "About three hundred eighty thousand kilometres."),
    ("play some quiet music for the kitchen", "Playing quiet music in the kitchen."),
    ("what time does the pharmacy close on sunday", "It closes at six on Sunday."),
    ("translate good morning into spanish", "Good morning is buenos dias."),
    ("I am looking for a cheap hotel near the station", "There is a small hotel next to the station."),
    ("how do I make a simple tomato soup", "Cook tomatoes with onion, then blend them."),
    ("tell me something funny about cats", "Cats sleep for most of the day."),
    ("turn off the lights in the living room", "The living room lights are off."),
    ("what did the team score last night", "They won three to one."),
    ("is it going to rain this afternoon", "No rain is expected this afternoon."),
    ("explain how a rainbow is formed", "Sunlight bends in raindrops and splits into colours."),
    ("set a timer for ten minutes", "Your ten minute timer has started."),
    ("I need a gift idea for my father", "How about a good book or a warm scarf?"),
    ("which train goes to the airport", "The blue line goes to the airport."),
    ("read me the latest news headlines", "Here are today's top stories."),
    ("how many cups are in a litre", "A litre is about four cups."),
    ("my phone battery drains very fast", "Try lowering the screen brightness."),
    ("can you recommend a good science book", "Try A Brief History of Time."),
    ("what should I cook for dinner", "How about pasta with vegetables?"),
    ("send a message to the office", "What should the message say?"),
    ("how long does it take to boil an egg", "About eight minutes for a hard egg."),
    ("what is the capital of australia", "The capital of Australia is Canberra."),
    ("I feel a little tired today", "Rest a while and drink some water."),
    ("write a short poem about the sea", "The sea sings softly to the shore."),
    ("how do plants make their food", "Plants use sunlight to make sugar."),
    ("can you help me plan a weekend trip", "Sure. Where would you like to go?"),
    ("what are the opening hours of the museum", "The museum opens from nine to five."),
    ("tell me a fact about the ocean", "The ocean covers most of the earth."),
    ("add milk and bread to my shopping list", "Milk and bread are on your list."),
    ("why is the sky blue", "Air scatters blue light the most."),
    ("I forgot where I parked the car", "Check the last place you shopped."),
    ("what is a good name for a puppy", "How about Max or Daisy?"),
)


def questions() -> tuple[str, ...]:
    return tuple(question for question, _ in QA)


def answers() -> tuple[str, ...]:
    return tuple(answer for _, answer in QA)
