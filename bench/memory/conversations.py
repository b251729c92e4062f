"""Synthetic long conversations with needle facts, for the recall evaluation.

Two named speakers talk over many sessions: chit-chat, reactions, topic talk that shares the
facts' vocabulary (hard negatives), and facts about themselves. Each fact comes with a question
in other words whose answer is that one turn. The other speaker has facts of the same kinds with
other values, so neither the topic nor the speaker's name alone finds the evidence.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

NAMES = [
    "Caroline",
    "Melanie",
    "Jon",
    "Gina",
    "John",
    "Maria",
    "Joanna",
    "Nate",
    "Tim",
    "Audrey",
    "Andrew",
    "James",
    "Deborah",
    "Evan",
    "Sam",
    "Calvin",
    "Dave",
    "Priya",
    "Omar",
    "Lena",
]

# kind -> (slots, fact phrasings, question phrasings, topic talk without the fact)
FACTS: dict[str, tuple[dict[str, list[str]], list[str], list[str], list[str]]] = {
    "pet": (
        {
            "animal": ["puppy", "kitten", "rabbit", "parrot"],
            "pet": ["Biscuit", "Luna", "Pepper", "Mochi", "Ziggy", "Olive", "Bruno", "Noodle"],
        },
        [
            "We finally adopted a {animal} from the shelter last weekend, we named her {pet}!",
            "Guess what, there's a new {animal} at home. {pet} has been chewing everything.",
        ],
        [
            "What is the name of {S}'s new pet?",
            "What did {S} call the animal they adopted?",
            "What did {S} name the {animal} from the shelter?",
            "Which {animal} is chewing everything at {S}'s home?",
        ],
        [
            "Animals make everything better honestly.",
            "Do you think pets help with stress?",
            "My neighbour's dog barks all night.",
            "I saw the cutest video of a cat today.",
        ],
    ),
    "job": (
        {
            "job": ["nurse", "graphic designer", "data analyst", "chef", "teacher", "mechanic"],
            "company": ["Brightwell", "Norlake", "Fenwick & Co", "Tidewater", "Halcyon Labs"],
        },
        [
            "I just started a new position as a {job} at {company}, the team is lovely.",
            "Big news: {company} hired me, I'm their new {job} starting Monday.",
        ],
        [
            "Where did {S} get hired recently?",
            "What new role did {S} start, and at which firm?",
            "What position does {S} have at {company}?",
            "Which company hired {S} as a {job}?",
        ],
        [
            "Work has been so hectic lately.",
            "Do you ever think about changing careers?",
            "My boss keeps scheduling meetings on Friday evenings.",
            "Job interviews make me nervous.",
        ],
    ),
    "trip": (
        {
            "city": ["Lisbon", "Kyoto", "Reykjavik", "Cape Town", "Montreal", "Hanoi", "Prague"],
            "who": ["sister", "grandpa", "best friend", "cousin", "husband"],
        },
        [
            "Back from {city}! My {who} and I spent ten days exploring the old town.",
            "I travelled to {city} with my {who} in spring, the food there was unreal.",
        ],
        [
            "Which city did {S} visit with their {who}?",
            "Where did {S} go on holiday with family?",
            "Who did {S} travel to {city} with?",
            "How long did {S} spend exploring {city}?",
        ],
        [
            "I really need a vacation soon.",
            "Airports are exhausting, aren't they?",
            "Have you ever travelled alone?",
            "I keep a list of places I want to see someday.",
        ],
    ),
    "hobby": (
        {
            "hobby": [
                "pottery",
                "rock climbing",
                "watercolor painting",
                "salsa dancing",
                "the cello",
                "woodworking",
                "birdwatching",
            ]
        },
        [
            "I signed up for {hobby} classes on Saturdays, it clears my head.",
            "Lately I'm obsessed with {hobby}, I practise every evening after dinner.",
        ],
        [
            "What activity has {S} been doing in their free time?",
            "Which new pastime did {S} take up?",
            "When does {S} practise {hobby}?",
            "What classes did {S} sign up for?",
        ],
        [
            "I wish I had more free time for myself.",
            "Weekends go by way too fast.",
            "Do you think it's ever too late to learn something new?",
            "I get bored so easily.",
        ],
    ),
    "purchase": (
        {
            "item": ["a used Vespa", "a telescope", "an espresso machine", "a kayak", "a drum kit"],
            "price": ["240", "375", "560", "899", "1200"],
        },
        [
            "I treated myself and bought {item} for {price} dollars, no regrets.",
            "Finally got {item}! Paid {price} bucks for it on a marketplace.",
        ],
        [
            "How much did {S} spend on their recent purchase?",
            "What did {S} buy for themselves?",
            "How much did {S} pay for {item}?",
            "Where did {S} buy {item}?",
        ],
        [
            "Shopping online is dangerous for my wallet.",
            "Prices have gone up so much this year.",
            "I'm trying to save money for something big.",
            "Do you prefer new or second-hand stuff?",
        ],
    ),
    "event": (
        {
            "who": ["brother", "best friend", "cousin", "aunt"],
            "date": ["June 14", "the third of August", "September 9", "October 21", "May 2"],
        },
        [
            "My {who} is getting married on {date}, I'm giving the speech!",
            "Save the date: {date} is my {who}'s wedding, I'm so nervous.",
        ],
        [
            "When is the wedding {S} mentioned?",
            "On what date does {S}'s {who} tie the knot?",
            "When is {S}'s {who} getting married?",
            "Who is giving the speech at the wedding on {date}?",
        ],
        [
            "Weddings are so expensive these days.",
            "I never know what to wear to celebrations.",
            "Family gatherings can be a lot.",
            "I love a good party with music.",
        ],
    ),
    "food": (
        {"dish": ["mushroom risotto", "lamb tagine", "pad thai", "pierogi", "shakshuka"]},
        [
            "Honestly my all-time favourite meal is {dish}, my grandma made it every Sunday.",
            "Nothing beats {dish}, I could eat it every single day.",
        ],
        [
            "What is {S}'s favourite food?",
            "Which dish does {S} love the most?",
            "Who made {dish} every Sunday for {S}?",
            "How often could {S} eat {dish}?",
        ],
        [
            "I'm starving, what should I cook tonight?",
            "Eating out is so pricey now.",
            "I tried a new restaurant downtown yesterday.",
            "Do you like spicy food?",
        ],
    ),
    "book": (
        {
            "book": [
                "The Silent Orchard",
                "Salt and Thunder",
                "A Map of Small Hours",
                "The Glass Meridian",
                "Winter Pilgrims",
            ],
            "author": ["Ines Calder", "R. M. Oduya", "Petra Lind", "Samuel Achebe-Ross"],
        },
        [
            "I'm halfway through {book} by {author}, I can't put it down.",
            "Just picked up {book}, everyone says {author} is brilliant.",
        ],
        [
            "Which novel is {S} reading at the moment?",
            "Who wrote the book {S} is into right now?",
            "Who is the author of {book}?",
            "What does {S} think of the book by {author}?",
        ],
        [
            "I used to read so much more as a kid.",
            "Do you prefer e-books or paper?",
            "Our book club keeps picking boring titles.",
            "I fall asleep every time I read in bed.",
        ],
    ),
    "injury": (
        {
            "part": ["ankle", "wrist", "knee", "shoulder"],
            "how": ["playing basketball", "slipping on ice", "moving a sofa", "hiking downhill"],
        },
        [
            "Ugh, I hurt my {part} {how}, so I'm stuck at home.",
            "Doctor says I sprained my {part}. It happened while {how}.",
        ],
        [
            "How did {S} get injured?",
            "What happened to {S}'s {part}?",
            "How did {S} sprain their {part}?",
            "Why is {S} stuck at home?",
        ],
        [
            "I should really stretch more.",
            "Health is everything, isn't it?",
            "I've been sleeping badly this week.",
            "My back always aches after long drives.",
        ],
    ),
    "order": (
        {
            "num": ["4471", "88213", "30952", "71604", "5529"],
            "thing": ["running shoes", "a lamp", "headphones", "a winter coat"],
        },
        [
            "My order number for the {thing} is {num}, and it still hasn't shipped.",
            "The shop gave me order {num} for {thing}, I'm still waiting on it.",
        ],
        [
            "What order number did {S} mention?",
            "Which order is {S} still waiting for, by number?",
            "What is the order number for {S}'s {thing}?",
            "Has {S}'s order {num} shipped yet?",
        ],
        [
            "Deliveries are so slow this month.",
            "I hate returning things by post.",
            "Customer service never picks up the phone.",
            "I ordered too many things online again.",
        ],
    ),
    "move": (
        {
            "place": [
                "a flat near the harbour",
                "a cottage outside Leeds",
                "a loft in Brooklyn",
                "a house by the lake",
                "a studio downtown",
            ]
        },
        [
            "We're moving into {place} next month, boxes everywhere!",
            "Signed the lease today: {place}. Can't wait to decorate.",
        ],
        [
            "Where is {S} moving to?",
            "What kind of new home did {S} find?",
            "When is {S} moving into {place}?",
            "What lease did {S} sign?",
        ],
        [
            "Packing is the worst part of anything.",
            "Rent keeps going up around here.",
            "I love rearranging furniture.",
            "My neighbours are really noisy lately.",
        ],
    ),
    "study": (
        {
            "who": ["daughter", "son", "niece", "little brother"],
            "subject": ["marine biology", "architecture", "law", "music production"],
            "uni": ["Edinburgh", "McGill", "Utrecht", "Melbourne"],
        },
        [
            "So proud, my {who} got into {uni} to study {subject}!",
            "My {who} just got the acceptance letter: {subject} at {uni}.",
        ],
        [
            "What will {S}'s {who} study at university?",
            "Which university accepted {S}'s {who}?",
            "Where will {S}'s {who} study {subject}?",
            "Who got the acceptance letter from {uni}?",
        ],
        [
            "School is so different now from when we were young.",
            "Exams are so stressful.",
            "Kids grow up so fast.",
            "I sometimes wish I had studied something else.",
        ],
    ),
}

CHITCHAT = [
    "Hey! How have you been?",
    "That sounds amazing!",
    "Haha, I know right?",
    "Oh wow, tell me more.",
    "I'm doing okay, a bit tired.",
    "Same here, busy week.",
    "That's so exciting, congrats!",
    "Oh no, I'm sorry to hear that.",
    "Thanks for asking, it means a lot.",
    "Let's catch up again soon.",
    "I totally get what you mean.",
    "Ha, that's hilarious.",
    "Really? I had no idea.",
    "Good morning! Did you sleep well?",
    "It's been raining all day here.",
    "I was just thinking about you.",
    "Anyway, what's new with you?",
    "Sounds like a plan!",
    "You always know how to cheer me up.",
    "I can't believe it's already Friday.",
]

TAILS = [
    "",
    "",
    " What about you?",
    " Anyway.",
    " Just saying.",
    " Ha.",
    " I've been thinking about it all week.",
    " Let me know what you think.",
]

REACTIONS = [
    "No way, that's wonderful! How are you feeling about it?",
    "That's huge news. What made you decide?",
    "Oh I love that for you. Send pictures!",
    "Wow, I didn't see that coming. Good for you.",
    "That must have been quite something. How did it go?",
]


@dataclass
class Question:
    text: str
    evidence: str  # the turn id of the answer
    kind: str


@dataclass
class Conversation:
    id: str
    speakers: tuple[str, str]
    turns: list[tuple[str, str, str]] = field(default_factory=list)  # (turn_id, speaker, text)
    questions: list[Question] = field(default_factory=list)


def _fill(template: str, slots: dict[str, str]) -> str:
    return template.format(**slots)


def generate(
    n: int, *, seed: int = 7, sessions: int = 10, per_session: int = 30
) -> list[Conversation]:
    rng = random.Random(seed)
    out = []
    for c in range(n):
        a, b = rng.sample(NAMES, 2)
        conv = Conversation(id=f"conv{c}", speakers=(a, b))
        kinds = list(FACTS)
        # each speaker gets facts of most kinds, with different values
        plan: list[tuple[str, str, dict[str, str]]] = []
        for speaker in (a, b):
            for kind in rng.sample(kinds, k=9):
                slots_spec = FACTS[kind][0]
                slots = {k: rng.choice(v) for k, v in slots_spec.items()}
                plan.append((speaker, kind, slots))
        rng.shuffle(plan)
        total = sessions * per_session
        fact_at = sorted(rng.sample(range(2, total - 2), len(plan)))
        fact_iter = iter(zip(fact_at, plan, strict=True))
        next_fact = next(fact_iter, None)
        i = 0
        pending_reaction = False
        while i < total:
            speaker = (a, b)[i % 2]
            tid = f"{conv.id}-t{i}"
            if next_fact is not None and i >= next_fact[0] and speaker == next_fact[1][0]:
                _, (who, kind, slots) = next_fact
                text = _fill(rng.choice(FACTS[kind][1]), slots)
                q = _fill(rng.choice(FACTS[kind][2]), {**slots, "S": who})
                conv.questions.append(Question(q, tid, kind))
                next_fact = next(fact_iter, None)
                pending_reaction = True
            elif pending_reaction:
                text = rng.choice(REACTIONS)
                pending_reaction = False
            elif rng.random() < 0.45:
                text = rng.choice(FACTS[rng.choice(kinds)][3])
                if rng.random() < 0.5:
                    text = f"{rng.choice(CHITCHAT)} {text}"
                text += rng.choice(TAILS)
            else:
                text = rng.choice(CHITCHAT) + rng.choice(TAILS)
            conv.turns.append((tid, speaker, text))
            i += 1
        out.append(conv)
    return out
