"""Multi-turn scenarios for bench/learning_quality.py: what a person says, what the assistant
replied, and the live memories that must exist at the end.

Each turn also says what an *ideal* extractor would write (``facts``) and how an ideal judge would
answer the update question for a fact (``verdicts``: NEW-fact regex -> "replaces <old regex>",
"retracts <old regex>" or "same <old regex>"; anything else is "new"). The scripted model replays
exactly that, so a scripted run measures the pipeline's own logic; the bundled-model run
measures the product as a person gets it.

Checks at the end (regexes match the memory text, case-insensitive):
``expect``   each matches exactly one live memory (none missing, no duplicates);
``optional`` extra memories allowed beside the expected ones (every live memory must match one);
``forbid``   (kind, regex) that no memory may ever have said — kinds ``question``, ``assistant``
             (statements from questions or from the assistant) and ``stale`` (must be gone at the end);
``people``   names that must be among some memory's people; ``expires``: memories that need an expiry.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Turn:
    user: str
    assistant: str = "Got it, thanks for telling me."
    facts: tuple[str, ...] = ()
    verdicts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    name: str
    topic: str
    turns: tuple[Turn, ...]
    expect: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    forbid: tuple[tuple[str, str], ...] = ()
    people: tuple[str, ...] = ()
    expires: tuple[str, ...] = ()


def T(user: str, assistant: str = "Got it, thanks for telling me.", *facts: str, **verdicts: str) -> Turn:
    """A turn; ``verdicts`` keys are NEW-fact regexes with spaces written as underscores."""
    return Turn(user, assistant, tuple(facts), {k.replace("_", " "): v for k, v in verdicts.items()})


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "unrelated fact is not overwritten", "guardrail",
        (T("I'm vegetarian and I live in Lisbon.", "Nice to meet you! Lisbon is lovely.",
           "Is vegetarian", "Lives in Lisbon"),
         T("My sister Ana is a nurse in Porto.", "That's a demanding job. Does she like it?",
           "Sister Ana is a nurse in Porto")),
        expect=(r"vegetarian", r"lisbon", r"ana.*nurse"), people=("Ana",)),
    Scenario(
        "move becomes one current fact", "move",
        (T("I live in Lisbon.", "Lisbon is a beautiful city.", "Lives in Lisbon"),
         T("I moved from Lisbon to Berlin last month.", "Exciting! How are you finding Berlin?",
           "Lives in Berlin, moved from Lisbon last month")),
        expect=(r"berlin",), forbid=(("stale", r"^lives in lisbon$"),)),
    Scenario(
        "question and assistant answer are not stored", "question",
        (T("I'm vegetarian and I live in Lisbon.", "Noted!", "Is vegetarian", "Lives in Lisbon"),
         T("Where do I live and what do I eat?", "You live in Lisbon. You eat Portuguese food.")),
        expect=(r"vegetarian", r"lisbon"),
        forbid=(("assistant", r"portuguese"), ("question", r"where do"))),
    Scenario(
        "diet change", "diet",
        (T("I'm vegetarian.", "Great, I'll keep that in mind.", "Is vegetarian"),
         T("I started eating fish again, so I'm pescatarian now.", "Understood.", "Is pescatarian")),
        expect=(r"pescatarian",), forbid=(("stale", r"^is (a )?vegetarian$"),)),
    Scenario(
        "job change", "job",
        (T("I work as a teacher at Lincoln High.", "Teaching is rewarding.", "Works as a teacher at Lincoln High"),
         T("I quit teaching and now I work as a software developer at Shopify.", "Congratulations on the new role!",
           "Works as a software developer at Shopify")),
        expect=(r"shopify",), optional=(r"quit teaching",), forbid=(("stale", r"teacher at lincoln"),)),
    Scenario(
        "girlfriend becomes wife", "relationship",
        (T("My girlfriend is Maria.", "How long have you been together?", "Girlfriend is Maria"),
         T("Maria and I got married last weekend, she's my wife now.", "Congratulations to you both!",
           "Is married to Maria", **{"married to maria": "replaces girlfriend"})),
        expect=(r"maria",), forbid=(("stale", r"girlfriend"),), people=("Maria",)),
    Scenario(
        "pet died", "death",
        (T("I have a dog named Rex.", "Rex is a great name!", "Has a dog named Rex"),
         T("Sadly, Rex died yesterday.", "I'm so sorry for your loss.", "Dog Rex died")),
        expect=(r"rex",), forbid=(("stale", r"^has a dog named rex$"),)),
    Scenario(
        "person died", "death",
        (T("My grandfather Joe lives with us.", "That's lovely.", "Grandfather Joe lives with them"),
         T("My grandfather Joe passed away last week.", "I'm very sorry.", "Grandfather Joe passed away")),
        expect=(r"joe.*pass",), forbid=(("stale", r"lives with"),), people=("Joe",)),
    Scenario(
        "same words twice", "duplicate",
        (T("I love hiking.", "Hiking is great exercise.", "Loves hiking"),
         T("As I said, I love hiking.", "Right!", "Loves hiking")),
        expect=(r"hik",)),
    Scenario(
        "paraphrased duplicate", "duplicate",
        (T("I'm allergic to peanuts.", "Thanks, that's important to know.", "Is allergic to peanuts"),
         T("Just so you know, peanuts give me a severe allergic reaction.", "Noted.",
           "Has a severe allergic reaction to peanuts", **{"severe": "same allergic to peanuts"})),
        expect=(r"peanut",)),
    Scenario(
        "name correction", "correction",
        (T("My brother's name is Tom.", "Nice!", "Brother is named Tom"),
         T("Sorry, I made a mistake, my brother is called Tim, not Tom.", "No problem.", "Brother is named Tim")),
        expect=(r"\btim\b",), forbid=(("stale", r"brother('s name)? is (named |called )?tom"),)),
    Scenario(
        "age correction", "correction",
        (T("I'm 34 years old.", "Thanks!", "Is 34 years old"),
         T("Actually I'm 35, I just had my birthday.", "Happy belated birthday!", "Is 35 years old")),
        expect=(r"35",), forbid=(("stale", r"\b34\b"),)),
    Scenario(
        "forget on request", "retraction",
        (T("I like jazz.", "Jazz is wonderful.", "Likes jazz"),
         T("Please forget that I like jazz.", "Okay, I've forgotten it.")),
        forbid=(("stale", r"jazz"),)),
    Scenario(
        "no longer true", "retraction",
        (T("I play tennis every Sunday.", "Nice routine!", "Plays tennis every Sunday"),
         T("I don't play tennis anymore.", "Okay.", "No longer plays tennis")),
        optional=(r"(no longer|not|n't|stopped).*tennis",), forbid=(("stale", r"^plays tennis"),)),
    Scenario(
        "small talk", "small talk",
        (T("Hi there! How are you today?", "I'm well, thanks! How can I help?"),
         T("Haha nice. The weather is lovely today.", "Enjoy the sunshine!")),
        forbid=(("question", r"weather|how are you|doing well"),)),
    Scenario(
        "general questions", "question",
        (T("What's the capital of Australia?", "The capital of Australia is Canberra."),
         T("How many legs does a spider have?", "A spider has eight legs.")),
        forbid=(("assistant", r"canberra|spider|eight"), ("question", r"capital"))),
    Scenario(
        "assistant suggestion is not a fact", "assistant",
        (T("I can't sleep well lately.", "You might try yoga before bed and cutting caffeine.",
           "Has trouble sleeping lately"),
         T("Thanks, maybe.", "Let me know how it goes!")),
        expect=(r"sleep",), forbid=(("assistant", r"yoga|caffeine"),)),
    Scenario(
        "assistant's wrong claim is not stored", "assistant",
        (T("I'm from Toronto.", "Great, so you're Australian!", "Is from Toronto"),
         T("What do you know about me?", "You are Australian and love surfing.")),
        expect=(r"toronto",), forbid=(("assistant", r"australia|surf"),)),
    Scenario(
        "several facts in one turn", "multi",
        (T("I'm Priya, I'm 29, I work as a nurse in Leeds and I have two cats.", "Lovely to meet you, Priya!",
           "Name is Priya", "Is 29 years old", "Works as a nurse in Leeds", "Has two cats"),),
        expect=(r"priya", r"29", r"nurse", r"cats")),
    Scenario(
        "one of two facts changes", "guardrail",
        (T("I live in Madrid and I work at a bank.", "Madrid is great.", "Lives in Madrid", "Works at a bank"),
         T("I changed jobs, I now work at a museum.", "How exciting!", "Works at a museum")),
        expect=(r"madrid", r"museum"), forbid=(("stale", r"\bbank\b"),)),
    Scenario(
        "time-bound plan", "plan",
        (T("I'm flying to Tokyo next Friday for a conference.", "Have a great trip!",
           "Is flying to Tokyo next Friday for a conference"),),
        expect=(r"tokyo",), expires=(r"tokyo",)),
    Scenario(
        "plan cancelled", "plan",
        (T("I'm going to Rome in March.", "Rome in spring is wonderful.", "Is going to Rome in March"),
         T("The Rome trip is cancelled.", "Sorry to hear that.", "Rome trip is cancelled")),
        optional=(r"cancel",), forbid=(("stale", r"going to rome"),)),
    Scenario(
        "two people called Sam", "same name",
        (T("My colleague Sam is a designer.", "Nice!", "Colleague Sam is a designer"),
         T("My cousin Sam lives in Dublin.", "Dublin is fun.", "Cousin Sam lives in Dublin")),
        expect=(r"colleague sam", r"cousin sam"), people=("Sam",)),
    Scenario(
        "two people called Alex", "same name",
        (T("My friend Alex loves climbing.", "Climbing is great.", "Friend Alex loves climbing"),
         T("My son Alex started school this year.", "A big step!", "Son Alex started school this year")),
        expect=(r"friend alex", r"son alex")),
    Scenario(
        "a second preference is added", "preference",
        (T("I love Italian food.", "Who doesn't!", "Loves Italian food"),
         T("I also really like Thai food.", "Thai food is delicious.", "Likes Thai food")),
        expect=(r"italian", r"thai")),
    Scenario(
        "preference change", "preference",
        (T("I prefer tea over coffee.", "Tea it is.", "Prefers tea over coffee"),
         T("These days I prefer coffee, I stopped drinking tea.", "Fair enough.", "Prefers coffee",
           "Stopped drinking tea", **{"prefers coffee": "replaces tea over coffee"})),
        expect=(r"coffee",), optional=(r"stopped drinking tea",), forbid=(("stale", r"prefers tea"),)),
    Scenario(
        "another sister", "same relation",
        (T("My sister Ana is a nurse.", "Nursing is important work.", "Sister Ana is a nurse"),
         T("My other sister, Beatriz, is a lawyer.", "Two sisters with great careers!", "Sister Beatriz is a lawyer")),
        expect=(r"ana", r"beatriz"), people=("Ana", "Beatriz")),
    Scenario(
        "explicit remember", "remember",
        (T("Please remember that my locker code is 4512.", "I'll remember that.", "Locker code is 4512"),),
        expect=(r"4512",)),
    Scenario(
        "number update", "correction",
        (T("My locker code is 4512.", "Noted.", "Locker code is 4512"),
         T("They changed my locker code to 7788.", "Updated!", "Locker code is 7788")),
        expect=(r"7788",), forbid=(("stale", r"4512"),)),
    Scenario(
        "greeting with a fact", "greeting",
        (T("Good morning! I just started a new job at Google today.", "Congratulations!", "Works at Google"),),
        expect=(r"google",), forbid=(("question", r"good morning"),)),
    Scenario(
        "question with a fact", "question",
        (T("I'm training for a marathon in April. Any tips for long runs?",
           "Build mileage slowly and hydrate well.", "Is training for a marathon in April"),),
        expect=(r"marathon",), forbid=(("assistant", r"hydrat|mileage"),)),
    Scenario(
        "hypothetical is not a fact", "question",
        (T("If I lived in Paris, I'd eat croissants every day. What's a good bakery there?",
           "Try Du Pain et des Idées."),),
        forbid=(("question", r"paris|croissant"), ("assistant", r"pain et"))),
    Scenario(
        "fact about a friend, not the user", "people",
        (T("My friend Leo says he is vegan.", "Good to know for dinner plans.", "Friend Leo is vegan"),),
        expect=(r"leo.*vegan",), forbid=(("stale", r"^is vegan$"),), people=("Leo",)),
    Scenario(
        "negative fact", "negation",
        (T("I don't eat pork.", "Understood.", "Does not eat pork"),),
        expect=(r"pork",)),
    Scenario(
        "move within the same city", "move",
        (T("I live in Austin, Texas.", "Austin is great for music.", "Lives in Austin, Texas"),
         T("We just moved to a bigger apartment, still in Austin.", "Enjoy the space!",
           "Moved to a bigger apartment in Austin")),
        expect=(r"austin",)),
    Scenario(
        "a third child", "family",
        (T("I have two kids.", "How old are they?", "Has two kids"),
         T("Actually we just had a third baby, so now I have three kids.", "Congratulations!", "Has three kids")),
        expect=(r"three|3",), forbid=(("stale", r"two kids"),)),
    Scenario(
        "unrelated facts across turns", "guardrail",
        (T("I'm vegan.", "Great.", "Is vegan"),
         T("I drive a red Tesla.", "Nice car.", "Drives a red Tesla"),
         T("I'm learning Japanese.", "Ganbatte!", "Is learning Japanese"),
         T("My favourite band is Radiohead.", "Great band.", "Favourite band is Radiohead")),
        expect=(r"vegan", r"tesla", r"japanese", r"radiohead")),
    Scenario(
        "answer to the assistant's question", "question",
        (T("Can you help me plan meals?", "Sure! Do you have any dietary restrictions?"),
         T("Yes, I'm lactose intolerant.", "Got it, no dairy then.", "Is lactose intolerant")),
        expect=(r"lactose",), forbid=(("assistant", r"dairy"),)),
    Scenario(
        "move told in an answer", "move",
        (T("I live in Lisbon.", "Lovely!", "Lives in Lisbon"),
         T("Can you suggest weekend trips?", "Sure - are you still based in Lisbon?"),
         T("No, I moved to Porto in June.", "Porto is great for weekend trips.", "Lives in Porto, moved in June")),
        expect=(r"porto",), forbid=(("stale", r"^lives in lisbon$"),)),
    Scenario(
        "passing mood is not a fact", "small talk",
        (T("I'm so tired today.", "Take it easy!"),),
        forbid=(("stale", r"tired"),)),
    Scenario(
        "assistant's name never becomes a person", "people",
        (T("Hi Optimus, I'm Daniel.", "Hi Daniel!", "Name is Daniel"),),
        expect=(r"daniel",)),
    Scenario(
        "repeated fact in one message", "runaway",
        (T("I love pizza. I love pizza. I love pizza!!! Pizza is my favourite food.", "Pizza is great!",
           "Loves pizza", "Favourite food is pizza"),),
        expect=(r"pizza",)),
    Scenario(
        "band broke up, hobby stays", "retraction",
        (T("I play guitar in a band.", "Cool!", "Plays guitar in a band"),
         T("Our band broke up, but I still play guitar at home.", "Keep playing!", "Band broke up",
           "Plays guitar at home")),
        expect=(r"guitar at home",), optional=(r"band broke up",), forbid=(("stale", r"guitar in a band"),)),
    Scenario(
        "a relative moves, the user does not", "move",
        (T("I live in Paris.", "Bonjour!", "Lives in Paris"),
         T("My mom lives in Lyon.", "Nice, not too far.", "Mom lives in Lyon"),
         T("My mom moved to Nice.", "Nice is beautiful.", "Mom moved to Nice")),
        expect=(r"paris", r"mom.*nice|nice.*mom"), forbid=(("stale", r"lyon"),)),
    Scenario(
        "people are names, not places or the assistant", "people",
        (T("My sister Ana is a nurse in Porto.", "Great!", "Sister Ana is a nurse in Porto"),),
        expect=(r"ana",), people=("Ana",)),
    Scenario(
        "request is not a fact", "question",
        (T("Please recommend three sci-fi books.", "Try Dune, Hyperion and The Left Hand of Darkness."),),
        forbid=(("assistant", r"dune|hyperion|darkness"), ("question", r"sci-fi|books"))),
)


# Written after the guardrails were tuned on SCENARIOS and never tuned on: an honest check that
# the rules generalise beyond the wording they were developed against.
HELD_OUT: tuple[Scenario, ...] = (
    Scenario(
        "held-out: relocation with a new employer", "move",
        (T("I'm based in Toronto and I work for a bank.", "Nice!", "Is based in Toronto", "Works for a bank"),
         T("Big news: I relocated to Vancouver for a new job at a hospital.", "Congratulations!",
           "Lives in Vancouver", "Works at a hospital")),
        expect=(r"vancouver", r"hospital"), forbid=(("stale", r"toronto"), ("stale", r"\bbank\b"))),
    Scenario(
        "held-out: a pet is adopted, an existing pet stays", "pets",
        (T("I have a cat called Luna.", "Cute!", "Has a cat called Luna"),
         T("We also adopted a puppy named Bolt.", "How fun!", "Adopted a puppy named Bolt")),
        expect=(r"luna", r"bolt")),
    Scenario(
        "held-out: quitting a habit", "retraction",
        (T("I smoke about five cigarettes a day.", "Thanks for sharing.", "Smokes about five cigarettes a day"),
         T("I quit smoking two months ago!", "That's a big achievement!", "Quit smoking two months ago")),
        expect=(r"quit smoking",), forbid=(("stale", r"^smokes"),)),
    Scenario(
        "held-out: a question about the assistant", "question",
        (T("Do you remember things between chats?", "Yes, I keep notes about what you tell me."),
         T("Cool. Which languages do you speak?", "I can chat in many languages.")),
        forbid=(("assistant", r"notes|languages"), ("question", r"remember things"))),
    Scenario(
        "held-out: mixed languages in one message", "multi",
        (T("I'm a violinist and I teach music at a school in Seville.", "Beautiful!",
           "Is a violinist", "Teaches music at a school in Seville"),),
        expect=(r"violin", r"seville")),
    Scenario(
        "held-out: a friend's news is not the user's", "people",
        (T("I live in Dublin.", "Lovely city.", "Lives in Dublin"),
         T("My friend Noah just moved to Madrid.", "Exciting for him!", "Friend Noah moved to Madrid")),
        expect=(r"dublin", r"noah.*madrid"), people=("Noah",)),
    Scenario(
        "held-out: an appointment", "plan",
        (T("I have a dentist appointment tomorrow at 9.", "Good luck!", "Has a dentist appointment tomorrow at 9"),),
        expect=(r"dentist",), expires=(r"dentist",)),
    Scenario(
        "held-out: the assistant guesses the user's job", "assistant",
        (T("I spend all day writing SQL queries.", "Sounds like you're a database administrator!",
           "Spends all day writing SQL queries"),),
        expect=(r"sql",), forbid=(("assistant", r"administrator"),)),
    Scenario(
        "held-out: correcting a city", "correction",
        (T("My brother lives in Austin.", "Nice.", "Brother lives in Austin"),
         T("Sorry, I meant my brother lives in Dallas, not Austin.", "Got it.", "Brother lives in Dallas")),
        expect=(r"dallas",), forbid=(("stale", r"brother lives in austin"),)),
    Scenario(
        "held-out: thanks only", "small talk",
        (T("Thank you so much, that was helpful!", "You're welcome!"),),
        forbid=(("question", r"thank|helpful"),)),
    Scenario(
        "held-out: a request with a preference inside", "question",
        (T("Suggest a recipe for dinner, I hate mushrooms.", "Try a lemon pasta.", "Hates mushrooms"),),
        expect=(r"mushroom",), forbid=(("assistant", r"lemon|pasta"),)),
    Scenario(
        "held-out: two colleagues", "same name",
        (T("My colleague Priya manages the data team.", "Nice.", "Colleague Priya manages the data team"),
         T("My neighbour Priya has three dogs.", "Lots of walks!", "Neighbour Priya has three dogs")),
        expect=(r"colleague priya", r"neighbour priya")),
)
