"""What the sample soundtrack and the hearing benchmark say besides the sample corpus' own phrases.

- `OFF_TOPIC`: full sentences about other things, as adults say them at home between namings. None names an
  object of the sample corpus; speech like this must teach the memory nothing.
- `UNSEEN_NAMING`: child-directed phrase templates that never occur in the sample corpus' training sentences
  (its templates are `firstwords.export.sample_corpus.NAMING`): recall on them shows whether the recogniser
  hears an object word or only the sentences it was built from.
- `CHILD_PROSODY` / `ADULT_PROSODY`: (rate, pitch) for edge.synth.speak: child-directed speech is slower and
  higher.
"""

from __future__ import annotations

OFF_TOPIC = (
    "the weather was cold and grey all through the winter",
    "my brother drove to the city to buy some groceries",
    "we should call the plumber about the kitchen sink",
    "the meeting ran late so I missed the bus home",
    "she read a long novel about a family in the mountains",
    "did you remember to pay the electricity bill",
    "the train was delayed by an hour this morning",
    "I think the garden needs more water this week",
    "can you pass me the salt and the pepper",
    "the news said it will rain again tomorrow",
    "we are having pasta and salad for dinner tonight",
    "my phone battery died in the middle of the call",
    "the neighbours are painting their fence blue",
    "I have to finish the report before friday",
    "the coffee machine is making a strange noise",
    "your mother called while you were in the shower",
    "the car needs new tyres before the trip",
    "I forgot to buy milk at the supermarket",
    "the dog barked at the postman again today",
    "we could visit your parents on sunday afternoon",
    "the printer upstairs has run out of paper",
    "it was the best of times it was the worst of times",
    "turn off the radio I can not hear myself think",
    "the football match starts at seven thirty",
    "there is a letter from the bank on the table",
    "the heating has been broken since last night",
    "I heard they are opening a new bakery in town",
    "the window in the living room will not close",
    "let us book the holiday before the prices go up",
    "he works at the hospital on the night shift",
    "the soup needs a little more salt I think",
    "we ran out of coffee so I made some tea",
    "the children next door are learning the piano",
    "my sister is moving to a new flat in april",
    "the library closes early on saturdays",
    "I need to charge the laptop before the meeting",
    "the tomatoes in the garden are finally ripe",
    "someone left the front door open all evening",
    "the doctor said to rest for a few days",
    "we should clean the windows this weekend",
    "the bus was full so I walked to work",
    "the cat has been sleeping on the sofa all day",
    "I will be home late because of the traffic",
    "the price of petrol went up again",
    "they are fixing the road outside the school",
    "the washing machine finished an hour ago",
    "my friend sent me a picture from the beach",
    "I lost my keys somewhere in the kitchen",
)

UNSEEN_NAMING = (
    "do you want to wear your {w}?",
    "this {w} is so soft",
    "we need to wash the {w}",
    "pick up the {w} please",
    "where did you put the {w}?",
    "mommy has a {w} too",
    "bring me that {w}",
    "your {w} is on the floor",
    "shall we find your {w}?",
    "put the {w} in the basket",
)

CHILD_PROSODY = (1.1, 1.5)  # speaking time x1.1, pitch +1.5 semitones (more: the recogniser hears less)
ADULT_PROSODY = (1.0, 0.0)
