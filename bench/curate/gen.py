"""bench/curate/gen.py: a synthetic corpus in the four native formats the ingest readers accept.

    python bench/curate/gen.py --n 1000000 --seed 1 --out bench/out/curate-data/n1000000-s1
    python bench/curate/gen.py --n 10000000 --seed 1 --shards 10   # 10 independent 1M corpora

Writes N records in total (item metadata lines come on top) under OUT:

    reddit/RS_YYYY-MM.ndjson         Pushshift submissions, one file per month (plain NDJSON)
    reddit/RC_YYYY-MM.ndjson.zst     Pushshift comments, one file per month (zstd NDJSON)
    twitter/sentiment140.part-NNN.csv   Sentiment140 CSV (no header, 6 quoted columns, CRLF)
    blogger/<id>.<gender>.<age>.<industry>.<sign>.xml   Blog Authorship Corpus files (lenient "XML")
    amazon/<Category>.jsonl + amazon/meta_<Category>.jsonl   Amazon Reviews 2023 + item metadata
    gen.json                         what was written and how much of each kind of noise

With ``--shards K`` each platform's files of shard k lie under ``<platform>/s{k}/`` (see ``generate``).

Mix (by records): Reddit 45% (1 submission : 4 comments), Twitter 30%, Amazon 15%, Blogger 10%.
Users per platform are drawn from a Zipf-like law, so a few users are very active and most have
one or two records (short users). Every curate step has real work: [deleted] authors,
AutoModerator/bot comments, [removed] bodies, replies (not top-level), link posts, low-score
posts, short questions, retweets and ad tweets, HTML entities, @mentions, URLs and emoji
(cleaning), e-mail addresses, phone numbers, street addresses and URLs (PII), non-English
records (es/de/fr/it/pt), exact duplicates (reposts, copypasta, spam repeated by bot-like
accounts), near duplicates (a reposted text with a word changed or a line added), Amazon
variant duplicates, Latin-1 blog files, a few malformed lines. Texts are built from an
original vocabulary and sentence templates (nothing is copied from any corpus); with the same
--seed the output is byte-identical.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import time
from typing import Dict, List, Tuple

import numpy as np

# ----------------------------------------------------------------------------- vocabulary

PRON = ["I", "We", "My sister", "My roommate", "A friend of mine", "My dad", "My partner", "Our neighbor",
        "My coworker", "My brother", "My mom", "Everyone at work", "My kid", "The new guy", "My landlord"]
REL = ["sister", "brother", "roommate", "neighbor", "boss", "partner", "cousin", "daughter", "son", "aunt",
       "grandmother", "coach", "teacher", "mechanic", "dentist"]
# (present, past, past participle)
VERBS = [("fix", "fixed", "fixed"), ("build", "built", "built"), ("find", "found", "found"),
         ("try", "tried", "tried"), ("buy", "bought", "bought"), ("sell", "sold", "sold"),
         ("cook", "cooked", "cooked"), ("clean", "cleaned", "cleaned"), ("paint", "painted", "painted"),
         ("read", "read", "read"), ("watch", "watched", "watched"), ("learn", "learned", "learned"),
         ("replace", "replaced", "replaced"), ("move", "moved", "moved"), ("plant", "planted", "planted"),
         ("order", "ordered", "ordered"), ("return", "returned", "returned"), ("test", "tested", "tested"),
         ("break", "broke", "broken"), ("lose", "lost", "lost"), ("borrow", "borrowed", "borrowed"),
         ("carry", "carried", "carried"), ("finish", "finished", "finished"), ("start", "started", "started"),
         ("forget", "forgot", "forgotten"), ("drive", "drove", "driven"), ("write", "wrote", "written"),
         ("repair", "repaired", "repaired"), ("sharpen", "sharpened", "sharpened"), ("wash", "washed", "washed"),
         ("measure", "measured", "measured"), ("compare", "compared", "compared"), ("share", "shared", "shared"),
         ("recommend", "recommended", "recommended"), ("ignore", "ignored", "ignored"),
         ("organize", "organized", "organized"), ("upgrade", "upgraded", "upgraded"), ("check", "checked", "checked")]
ADJ = ["old", "new", "cheap", "expensive", "heavy", "tiny", "huge", "quiet", "loud", "broken", "reliable",
       "strange", "simple", "annoying", "beautiful", "ugly", "useful", "useless", "sturdy", "flimsy", "warm",
       "cold", "bright", "dark", "slow", "fast", "messy", "clean", "perfect", "decent", "terrible", "solid",
       "fragile", "comfortable", "awkward", "complicated", "secondhand", "homemade", "random", "favorite"]
ADV = ["really", "pretty", "surprisingly", "honestly", "barely", "totally", "mostly", "kind of", "way too",
       "a little", "incredibly", "fairly", "almost", "definitely", "somehow", "actually"]
NOUN = ["car", "kitchen", "garden", "laptop", "phone", "bike", "apartment", "office", "house", "dog", "cat",
        "weekend", "job", "project", "class", "book", "movie", "song", "shirt", "jacket", "table", "chair",
        "window", "door", "roof", "fridge", "oven", "couch", "desk", "lamp", "camera", "game", "recipe",
        "budget", "schedule", "meeting", "trip", "flight", "train", "bus", "street", "store", "market",
        "bakery", "gym", "park", "library", "neighborhood", "school", "hospital", "restaurant", "coffee",
        "dinner", "breakfast", "lunch", "plan", "idea", "problem", "answer", "mistake", "habit", "hobby"]
PLACE = ["the lake", "the mountains", "the city", "my parents' place", "the coast", "the farmers market",
         "the hardware store", "the airport", "the beach", "a small town", "the old mill", "the stadium",
         "the thrift store", "the community garden", "the river trail", "downtown"]
TIME = ["last week", "yesterday", "this morning", "over the weekend", "a few months ago", "last night",
        "two years ago", "every Sunday", "right after work", "before lunch", "during the storm",
        "on my day off", "last summer", "this spring", "around midnight", "after the holidays"]
INTERJ = ["Honestly", "Funny thing", "Long story short", "For the record", "To be fair", "Anyway", "Oddly enough",
          "Update", "Quick note", "Fair warning", "Full disclosure", "Side note"]
UNIT = ["days", "weeks", "months", "years", "hours", "attempts", "tries", "weekends"]
GER = ["fixing", "cleaning", "testing", "building", "repairing", "organizing", "painting", "watching",
       "planning", "cooking", "learning", "reading", "measuring", "sanding", "saving for"]

TOPICS: Dict[str, List[str]] = {
    "cooking": ["sourdough", "skillet", "starter", "knife", "stock", "oven", "garlic", "dough", "pan", "broth",
                "marinade", "spice rack", "cutting board", "braise", "crust", "thermometer"],
    "gardening": ["tomatoes", "compost", "seedlings", "raised bed", "mulch", "hose", "peppers", "zucchini",
                  "trellis", "soil", "pruning shears", "greenhouse", "aphids", "watering can", "basil", "squash"],
    "cycling": ["bike", "chain", "derailleur", "saddle", "tires", "helmet", "commute", "brake pads", "pedals",
                "hill climb", "bike lane", "tube", "frame", "gears", "spokes", "cassette"],
    "tech": ["laptop", "keyboard", "router", "monitor", "server", "script", "database", "update", "driver",
             "battery", "charger", "backup", "firmware", "terminal", "compiler", "deploy"],
    "parenting": ["toddler", "stroller", "daycare", "bedtime", "homework", "car seat", "lunchbox", "school run",
                  "tantrum", "playground", "bath time", "baby monitor", "diapers", "soccer practice", "teacher",
                  "sippy cup"],
    "fitness": ["squat", "treadmill", "deadlift", "protein", "running shoes", "marathon", "stretching",
                "kettlebell", "rowing machine", "rest day", "gym bag", "warmup", "bench press", "pull up bar",
                "yoga mat", "interval run"],
    "music": ["guitar", "amp", "pedal", "setlist", "drum kit", "bass", "rehearsal", "open mic", "chord chart",
              "metronome", "pick", "capo", "tuner", "vinyl", "speakers", "band"],
    "travel": ["layover", "passport", "hostel", "carry on", "train ticket", "itinerary", "suitcase",
               "boarding pass", "rental car", "ferry", "hotel room", "map", "border crossing", "jet lag",
               "backpack", "night bus"],
    "pets": ["puppy", "kitten", "leash", "litter box", "vet", "chew toy", "dog park", "crate", "aquarium",
             "harness", "treats", "kibble", "scratching post", "groomer", "parrot", "hamster"],
    "diy": ["drill", "sander", "drywall", "paint roller", "workbench", "stud finder", "caulk", "deck",
            "shelf", "tile", "grout", "level", "circular saw", "wood glue", "hinge", "faucet"],
    "books": ["novel", "paperback", "library card", "chapter", "audiobook", "book club", "sequel", "bookmark",
              "hardcover", "series", "author", "short story", "poetry collection", "reading list", "e-reader",
              "anthology"],
    "finance": ["budget", "savings account", "credit card", "rent", "paycheck", "spreadsheet", "mortgage",
                "index fund", "tax return", "emergency fund", "student loan", "grocery bill", "bank",
                "retirement plan", "side hustle", "interest rate"],
}
SUBREDDITS = {"cooking": ["Cooking", "Breadit", "castiron"], "gardening": ["gardening", "vegetablegardening"],
              "cycling": ["bicycling", "bikecommuting"], "tech": ["sysadmin", "techsupport", "programming"],
              "parenting": ["Parenting", "daddit"], "fitness": ["fitness", "running"],
              "music": ["Guitar", "WeAreTheMusicMakers"], "travel": ["travel", "solotravel"],
              "pets": ["dogs", "cats", "Aquariums"], "diy": ["DIY", "HomeImprovement", "woodworking"],
              "books": ["books", "suggestmeabook"], "finance": ["personalfinance", "Frugal"]}
AMAZON_CATS = {"Home_and_Kitchen": "cooking", "Patio_Lawn_and_Garden": "gardening", "Sports_and_Outdoors": "cycling",
               "Electronics": "tech", "Baby_Products": "parenting", "Musical_Instruments": "music",
               "Pet_Supplies": "pets", "Tools_and_Home_Improvement": "diy", "Books": "books"}

FOREIGN = {
    "es": ("el la los las de que y en un una por con para muy pero como mi su porque cuando también casa trabajo "
           "semana coche perro ciudad amigo comida tiempo ayer mañana siempre nunca tengo estaba fuimos hicimos "
           "compré quiero bueno mejor problema noche verano familia").split(),
    "de": ("der die das und ist nicht ich wir mit auf für eine einen aber auch noch sehr wenn weil mein unser "
           "Haus Arbeit Woche Auto Hund Stadt Freund Essen Zeit gestern morgen immer nie habe hatte waren "
           "gekauft möchte gut besser Problem Abend Sommer Familie").split(),
    "fr": ("le la les de des et est pas je nous avec pour une un mais aussi très quand parce que mon notre "
           "maison travail semaine voiture chien ville ami repas temps hier demain toujours jamais avais "
           "étions acheté voudrais bien mieux problème soir été famille").split(),
    "it": ("il la gli le di che e non io noi con per una un ma anche molto quando perché mio nostro casa lavoro "
           "settimana macchina cane città amico cibo tempo ieri domani sempre mai avevo eravamo comprato vorrei "
           "bene meglio problema sera estate famiglia").split(),
    "pt": ("o a os as de que e não eu nós com para uma um mas também muito quando porque meu nosso casa trabalho "
           "semana carro cachorro cidade amigo comida tempo ontem amanhã sempre nunca tinha estávamos comprei "
           "quero bom melhor problema noite verão família").split(),
}
FIRST = ["alex", "sam", "jordan", "taylor", "casey", "riley", "morgan", "jamie", "drew", "kim", "lee", "pat",
         "robin", "chris", "dana", "max", "nina", "omar", "priya", "tomas", "lena", "yuki", "sofia", "marco"]
WORDS_HANDLE = ["night", "shift", "coffee", "tea", "bread", "garden", "bike", "pixel", "moth", "river", "stone",
                "quiet", "loud", "blue", "red", "wolf", "fox", "owl", "maple", "cedar", "salt", "pepper", "lucky",
                "lazy", "happy", "grumpy", "retro", "urban", "rural", "atomic", "cosmic", "paper", "iron",
                "silver", "golden", "mellow", "brave", "sleepy", "wild", "tiny"]
STREETS = ["Maple", "Oak", "Cedar", "Elm", "Pine", "Lake", "Hill", "Park", "Mill", "River", "Sunset", "Church"]
ST_TYPES = ["Street", "Ave", "Road", "Lane", "Drive", "Court", "Way", "Blvd"]
EMOJI = ["\U0001f602", "\U0001f60d", "\U0001f62d", "\U0001f44d", "\U0001f525", "\u2764\ufe0f", "\U0001f64f",
         "\U0001f389", "\U0001f605", "\u2728"]
SPAM = [
    "Buy now and get 50% off with promo code SAVE50 at www.best-deals-online.example.com, limited time only!!!",
    "Make $500 a day working from home, no experience needed, click http://easy-money.example.net/start now",
    "Use code FREESHIP for a discount code on every order, buy now at shop-example.com/deal while stocks last",
    "I made $3000 last month with this one simple trick, DM me or visit www.crypto-gains.example.org today",
    "Follow for follow! Check out my channel and subscribe, new video every day http://vids.example.com/u/42",
]
BLOG_INDUSTRIES = ["Student", "Education", "Technology", "Arts", "Engineering", "Law", "Marketing", "indUnk",
                   "Communications-Media", "Science", "Non-Profit", "Fashion", "Internet", "Banking", "Religion"]
SIGNS = ["Aries", "Taurus", "Gemini", "Cancer", "Leo", "Virgo", "Libra", "Scorpio", "Sagittarius", "Capricorn",
         "Aquarius", "Pisces"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
MONTHS_OTHER = {"January": "janvier", "February": "Februar", "March": "mars", "April": "abril", "May": "Mai",
                "June": "juni", "July": "luglio", "August": "agosto", "September": "septiembre",
                "October": "Oktober", "November": "novembre", "December": "dezembro"}
_DOW = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
_MON3 = [m[:3] for m in MONTHS]

B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def third(v: str) -> str:
    """fix -> fixes, carry -> carries, build -> builds."""
    if v.endswith(("s", "sh", "ch", "x", "z")):
        return v + "es"
    if v.endswith("y") and v[-2] not in "aeiou":
        return v[:-1] + "ies"
    return v + "s"


HE = ["My sister", "My roommate", "A friend of mine", "My dad", "My partner", "Our neighbor", "My coworker",
      "My brother", "My mom", "The new guy", "My landlord", "Nobody here", "Everyone at work"]


def b36(n: int) -> str:
    s = ""
    while n:
        n, r = divmod(n, 36)
        s = B36[r] + s
    return s or "0"


# ----------------------------------------------------------------------------- sentences


class Text:
    """Sentence pools (general + one per topic) built once from templates; a record's text is a
    run of sentences drawn from its author's topic pool and the general pool."""

    def __init__(self, rng: random.Random, per_topic: int = 6000, general: int = 30000):
        self.rng = rng
        self.general = [self._sentence(None) for _ in range(general)]
        self.topic = {t: [self._sentence(t) for _ in range(per_topic)] for t in TOPICS}
        self.questions = [self._question(None) for _ in range(2000)]
        self.foreign = {lang: [self._foreign(lang) for _ in range(1500)] for lang in FOREIGN}

    def _noun(self, topic):
        r = self.rng
        return r.choice(TOPICS[topic]) if topic and r.random() < 0.7 else r.choice(NOUN)

    def _sentence(self, topic) -> str:
        r = self.rng
        v = r.choice(VERBS)
        n1, n2 = self._noun(topic), self._noun(topic)
        a, adv = r.choice(ADJ), r.choice(ADV)
        k = r.randrange(12)
        if k == 0:
            s = f"{r.choice(PRON)} {v[1]} the {a} {n1} {r.choice(TIME)}."
        elif k == 1:
            s = f"{r.choice(HE)} {third(v[0])} the {n1} because the {n2} was {adv} {r.choice(ADJ)}."
        elif k == 2:
            s = f"{r.choice(INTERJ)}, the {n1} was {adv} {a} and nobody {v[1]} it."
        elif k == 3:
            s = f"My {r.choice(REL)} {v[1]} a {a} {n1} and I {r.choice(VERBS)[1]} the {n2} {r.choice(TIME)}."
        elif k == 4:
            s = f"We went to {r.choice(PLACE)} {r.choice(TIME)}, and the {n1} there was {adv} {a}."
        elif k == 5:
            s = f"If you {v[0]} a {n1}, {r.choice(VERBS)[0]} the {a} {n2} first."
        elif k == 6:
            s = f"I think the {n1} is {a} but the {n2} is {adv} {r.choice(ADJ)}."
        elif k == 7:
            s = f"After {r.randint(2, 30)} {r.choice(UNIT)} of {r.choice(GER)} the {n1}, I finally {v[1]} the {n2}."
        elif k == 8:
            s = f"It turns out the {a} {n1} had {v[2]} the {n2} all along, which {adv} explains a lot."
        elif k == 9:
            s = f"Nobody told me that the {n1} would need a {a} {n2}, so I {v[1]} one {r.choice(TIME)}."
        elif k == 10:
            s = f"The {n1} cost me about {r.randint(5, 400)} dollars and it was {adv} worth it."
        else:
            s = f"I have {v[2]} this {n1} for {r.randint(2, 20)} {r.choice(UNIT)} and it still feels {a}."
        return s

    def _question(self, topic) -> str:
        r = self.rng
        return f"Has anyone {r.choice(VERBS)[2]} a {r.choice(ADJ)} {self._noun(topic)}?"

    def _foreign(self, lang: str) -> str:
        r = self.rng
        words = FOREIGN[lang]
        s = " ".join(r.choice(words) for _ in range(r.randint(7, 14)))
        return s[0].upper() + s[1:] + "."

    def body(self, topic: str, n_sent: int) -> str:
        r = self.rng
        tp, gp = self.topic[topic], self.general
        return " ".join(tp[int(r.random() * len(tp))] if r.random() < 0.6 else gp[int(r.random() * len(gp))]
                        for _ in range(n_sent))

    def foreign_body(self, n_sent: int) -> str:
        pool = self.foreign[self.rng.choice(sorted(FOREIGN))]
        return " ".join(self.rng.choice(pool) for _ in range(n_sent))


# ----------------------------------------------------------------------------- noise


class Noise:
    """Decides per record what goes wrong with it, and keeps a history for duplicates."""

    def __init__(self, rng: random.Random, text: Text, counts: Dict[str, int]):
        self.rng, self.text, self.counts = rng, text, counts
        self.history: List[str] = []  # recent bodies, for reposts and near duplicates

    def bump(self, k: str, n: int = 1):
        self.counts[k] = self.counts.get(k, 0) + n

    def pii(self, s: str) -> str:
        r = self.rng
        k = r.randrange(4)
        name = r.choice(FIRST) + r.choice(["", ".", "_"]) + r.choice(WORDS_HANDLE) + str(r.randint(1, 99))
        if k == 0:
            add = f"You can email me at {name}@example.com if you want the details."
            self.bump("pii_email")
        elif k == 1:
            add = f"Call or text me at ({r.randint(201, 989)}) 555-{r.randint(1000, 9999)} after six."
            self.bump("pii_phone")
        elif k == 2:
            add = f"Pics are here: https://www.example.org/{name}/album{r.randint(1, 999)} and more later."
            self.bump("pii_url")
        else:
            add = f"Drop it off at {r.randint(10, 9999)} {r.choice(STREETS)} {r.choice(ST_TYPES)} any time."
            self.bump("pii_address")
        words = s.split(". ")
        i = r.randrange(len(words) + 1)
        return ". ".join(words[:i] + [add.rstrip(".")] + words[i:]) if len(words) > 1 else s + " " + add

    def decorate(self, s: str, *, social: bool) -> str:
        """HTML entities, @mentions, emoji, URLs (cleaning work)."""
        r = self.rng
        x = r.random()
        if x < 0.05:
            s = s.replace(" and ", " &amp; ", 1)
            self.bump("html_entities")
        elif x < 0.08:
            s = s + " &quot;worth it&quot; &lt;3"
            self.bump("html_entities")
        if social and r.random() < 0.10:
            s = f"@{r.choice(FIRST)}_{r.choice(WORDS_HANDLE)} " + s
            self.bump("mentions")
        if r.random() < 0.05:
            s = s + " " + r.choice(EMOJI) * r.randint(1, 3)
            self.bump("emoji")
        if r.random() < 0.03:
            s = s + f" http://bit.ly/{b36(r.randint(10**6, 10**8))}"
            self.bump("urls")
        return s

    def body(self, topic: str, n_sent: int, *, social: bool = False) -> Tuple[str, str]:
        """(text, what): a fresh, duplicated, near-duplicated, foreign or PII text."""
        r, h = self.rng, self.history
        x = r.random()
        if x < 0.030 and h:  # exact repost (same or other user), sometimes re-cased / re-punctuated
            s = h[int(r.random() * len(h))]
            if r.random() < 0.3:
                s = s.upper() if len(s) < 200 else s.replace(".", "!")
            self.bump("exact_duplicate")
            return s, "dup"
        if x < 0.050 and h:  # near duplicate: one word changed, or a line added
            s = h[int(r.random() * len(h))]
            words = s.split(" ")
            if len(words) > 25 and r.random() < 0.6:
                i = r.randrange(len(words))
                words[i] = r.choice(NOUN)
                s = " ".join(words)
            else:
                s = s + " " + r.choice(["Edit: typo.", "Edit: thanks everyone!", "EDIT: fixed the link.",
                                        "Update: it worked."])
            self.bump("near_duplicate")
            return s, "near"
        if x < 0.070:
            self.bump("non_english")
            return self.text.foreign_body(max(2, n_sent)), "foreign"
        s = self.text.body(topic, n_sent)
        if r.random() < 0.05:
            s = self.pii(s)
        s = self.decorate(s, social=social)
        if len(h) < 20000:
            h.append(s)
        else:
            h[int(r.random() * len(h))] = s
        return s, "ok"


# ----------------------------------------------------------------------------- users

# Shard namespaces (``--shards``): shard k's users, ids and items are offset by k times these,
# so no two shards share a user, a submission or an item (shard 0 is the unsharded corpus).
USER_SPAN = 10 ** 8
ID_SPAN = 10 ** 7
ITEM_SPAN = 10 ** 6  # _asin's variants start at 10,000,000: at most 10 shards of < 1M items


def _suffix(ns: int) -> str:
    """A shared account name's mark in shard ``ns`` (none in shard 0)."""
    return f"{ns:02d}" if ns else ""



def zipf_users(rng: np.random.Generator, n_records: int, n_users: int, s: float = 1.15) -> np.ndarray:
    """User index per record, Zipf-like over n_users (rank k has weight (k + 2) ** -s), shuffled
    ranks so that user ids do not sort by activity."""
    w = (np.arange(n_users) + 2.0) ** -s
    w /= w.sum()
    idx = rng.choice(n_users, size=n_records, p=w)
    perm = rng.permutation(n_users)
    return perm[idx]


def handle(i: int) -> str:
    a = WORDS_HANDLE[i % len(WORDS_HANDLE)]
    b = WORDS_HANDLE[(i // len(WORDS_HANDLE)) % len(WORDS_HANDLE)]
    style = i % 4
    if style == 0:
        return f"{a}_{b}_{i}"
    if style == 1:
        return f"{a.capitalize()}{b.capitalize()}{i % 1000}x{i // 1000}"
    if style == 2:
        return f"{FIRST[i % len(FIRST)]}_{a}{i}"
    return f"the_{a}_{b}{i}"


def n_sentences(rng: random.Random, mu: float, sigma: float, lo: int = 1, hi: int = 60) -> int:
    return max(lo, min(hi, int(round(rng.lognormvariate(mu, sigma)))))


# ----------------------------------------------------------------------------- platforms


T0 = 1546300800  # 2019-01-01 UTC


def gen_reddit(out: str, n: int, seed: int, text: Text, counts: Dict[str, int], ns: int = 0) -> Dict[str, int]:
    r = random.Random(seed * 1000 + 1)
    nr = np.random.default_rng(seed * 1000 + 1)
    noise = Noise(r, text, counts)
    n_sub = max(1, n // 5)
    n_com = n - n_sub
    n_users = max(10, n // 6)
    users_s = zipf_users(nr, n_sub, n_users)
    users_c = zipf_users(nr, n_com, n_users)
    topics = sorted(TOPICS)
    span = 365 * 86400
    ts_s = np.sort(nr.integers(T0, T0 + span, n_sub))
    ts_c = np.sort(nr.integers(T0 + 3600, T0 + span + 86400 * 10, n_com))
    os.makedirs(os.path.join(out, "reddit"), exist_ok=True)
    import zstandard

    files: Dict[str, object] = {}

    def fh(prefix: str, ts: int, zst: bool):
        month = time.strftime("%Y-%m", time.gmtime(ts))
        name = f"{prefix}_{month}.ndjson" + (".zst" if zst else "")
        f = files.get(name)
        if f is None:
            raw = open(os.path.join(out, "reddit", name), "wb")
            f = zstandard.ZstdCompressor(level=3).stream_writer(raw) if zst else raw
            files[name] = f
        return f

    sub_ids: List[str] = []
    sub_sr: List[str] = []
    for i in range(n_sub):
        u = int(users_s[i])
        topic = topics[u % len(topics)]
        sid = b36(40_000_000 + (i + ns * ID_SPAN) * 7)
        sr = r.choice(SUBREDDITS[topic])
        sub_ids.append(sid)
        sub_sr.append(sr)
        author = handle(u + ns * USER_SPAN)
        x = r.random()
        is_self, score, ncom = True, int(nr.zipf(1.8)) + r.randint(0, 3) - 1, r.randint(0, 40)
        title = text.general[int(r.random() * len(text.general))][:-1]
        distinguished = None
        if x < 0.02:
            author = "[deleted]"
            counts["deleted_author"] = counts.get("deleted_author", 0) + 1
        if r.random() < 0.10:
            is_self = False
            counts["link_post"] = counts.get("link_post", 0) + 1
        if r.random() < 0.15:
            score, ncom = r.randint(0, 1), r.randint(0, 1)
            counts["low_score"] = counts.get("low_score", 0) + 1
        if r.random() < 0.03:
            title = text.questions[int(r.random() * len(text.questions))]
            selftext = ""
            counts["short_question"] = counts.get("short_question", 0) + 1
        elif r.random() < 0.02:
            selftext = "[removed]"
            counts["removed_text"] = counts.get("removed_text", 0) + 1
        else:
            selftext, _ = noise.body(topic, n_sentences(r, 1.6, 0.7))
        if r.random() < 0.005:
            distinguished = "moderator"
            counts["moderator_post"] = counts.get("moderator_post", 0) + 1
        obj = {"author": author, "created_utc": int(ts_s[i]), "id": sid, "is_self": is_self, "title": title,
               "selftext": selftext if is_self else "", "score": score, "num_comments": ncom, "subreddit": sr,
               "distinguished": distinguished, "edited": False, "stickied": False,
               "permalink": f"/r/{sr}/comments/{sid}/"}
        if not is_self:
            obj["url"] = f"https://www.example.com/article/{sid}"
        if r.random() < 0.0003:
            line = json.dumps(obj)[: r.randint(10, 80)]  # truncated, malformed line
            counts["malformed"] = counts.get("malformed", 0) + 1
        else:
            line = json.dumps(obj)
        fh("RS", int(ts_s[i]), False).write(line.encode("utf-8") + b"\n")

    # comments: a link among the submissions already posted (recent ones more likely)
    sub_pos = np.searchsorted(ts_s, ts_c, side="right")
    back = nr.geometric(0.002, n_com)
    link_idx = np.maximum(0, sub_pos - back)
    com_ids: List[str] = []
    spam_accounts = [(f"{w}_deals_bot" if k % 2 else f"Promo{w.capitalize()}Official") + _suffix(ns)
                     for k, w in enumerate(WORDS_HANDLE[:8])]
    for j in range(n_com):
        u = int(users_c[j])
        topic = topics[u % len(topics)]
        cid = b36(600_000_000 + (j + ns * 10 * ID_SPAN) * 11)
        li = int(link_idx[j])
        link = "t3_" + sub_ids[li]
        parent = link
        if com_ids and r.random() < 0.35:
            parent = "t1_" + com_ids[-1 - min(len(com_ids) - 1, int(r.random() * 50))]
            counts["reply_not_top_level"] = counts.get("reply_not_top_level", 0) + 1
        author = handle(u + ns * USER_SPAN)
        distinguished = None
        x = r.random()
        if x < 0.02:
            author = "[deleted]"
            counts["deleted_author"] = counts.get("deleted_author", 0) + 1
            body, _ = noise.body(topic, n_sentences(r, 1.3, 0.7))
        elif x < 0.03:
            author = "AutoModerator"
            distinguished = "moderator"
            body = ("Your post has been automatically flagged for review. Please read the rules in the sidebar "
                    "before posting again. I am a bot, and this action was performed automatically.")
            counts["automoderator"] = counts.get("automoderator", 0) + 1
        elif x < 0.045:
            body = "[removed]" if r.random() < 0.6 else "[deleted]"
            counts["removed_text"] = counts.get("removed_text", 0) + 1
        elif x < 0.052:
            author = r.choice(spam_accounts)
            body = r.choice(SPAM)
            counts["spam_repeat"] = counts.get("spam_repeat", 0) + 1
        else:
            body, _ = noise.body(topic, n_sentences(r, 1.3, 0.7), social=True)
        com_ids.append(cid)
        if len(com_ids) > 200:
            del com_ids[:100]
        obj = {"author": author, "body": body, "created_utc": int(ts_c[j]) if r.random() > 0.01 else str(int(ts_c[j])),
               "id": cid, "link_id": link, "parent_id": parent, "score": int(nr.zipf(2.0)) - r.randint(0, 2),
               "subreddit": sub_sr[li], "distinguished": distinguished, "edited": False}
        fh("RC", int(ts_c[j]), True).write(json.dumps(obj).encode("utf-8") + b"\n")
    for f in files.values():
        f.close()
    return {"submissions": n_sub, "comments": n_com, "files": len(files)}


def _s140_date(ts: int) -> str:
    t = time.gmtime(ts - 7 * 3600)  # PDT, as in the dump
    return f"{_DOW[t.tm_wday]} {_MON3[t.tm_mon - 1]} {t.tm_mday:02d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} PDT {t.tm_year}"


def _csvq(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def gen_twitter(out: str, n: int, seed: int, text: Text, counts: Dict[str, int], per_file: int = 100_000,
                ns: int = 0) -> Dict[str, int]:
    r = random.Random(seed * 1000 + 2)
    nr = np.random.default_rng(seed * 1000 + 2)
    noise = Noise(r, text, counts)
    n_users = max(10, int(n / 2.4))  # Sentiment140: ~660k users for 1.6M tweets
    users = zipf_users(nr, n, n_users, s=1.05)
    ts = np.sort(nr.integers(1238976000, 1238976000 + 80 * 86400, n))  # 2009-04-06 .. 2009-06-25
    topics = sorted(TOPICS)
    os.makedirs(os.path.join(out, "twitter"), exist_ok=True)
    n_files = 0
    f = None
    tid = 1467810369 + ns * 10 ** 10
    for i in range(n):
        if i % per_file == 0:
            if f:
                f.close()
            f = open(os.path.join(out, "twitter", f"sentiment140.part-{n_files:03d}.csv"), "wb")
            n_files += 1
        u = int(users[i])
        topic = topics[u % len(topics)]
        user = handle(u + ns * USER_SPAN)
        tid += r.randint(1, 5000)
        x = r.random()
        if x < 0.05:
            body = f"RT @{handle(int(users[max(0, i - r.randint(1, 500))]) + ns * USER_SPAN)}: " + \
                   text.topic[topic][int(r.random() * 6000)]
            counts["retweet"] = counts.get("retweet", 0) + 1
        elif x < 0.065:
            user = f"Deals{WORDS_HANDLE[r.randrange(8)].capitalize()}Store{_suffix(ns)}" if r.random() < 0.5 else user
            body = r.choice(SPAM)
            counts["spam_repeat"] = counts.get("spam_repeat", 0) + 1
        else:
            body, _ = noise.body(topic, n_sentences(r, 0.55, 0.5, hi=4), social=True)
            if len(body) > 140 and r.random() < 0.8:
                body = body[:140].rsplit(" ", 1)[0]
        pol = "4" if r.random() < 0.5 else "0"
        if r.random() < 0.0003:
            line = f'"{pol}","{tid}","{_s140_date(int(ts[i]))}","NO_QUERY"'  # 4 fields: bad CSV
            counts["malformed"] = counts.get("malformed", 0) + 1
        else:
            line = ",".join([_csvq(pol), _csvq(str(tid)), _csvq(_s140_date(int(ts[i]))), '"NO_QUERY"',
                             _csvq(user), _csvq(body.replace("\n", " "))])
        f.write(line.encode("utf-8") + b"\r\n")
    if f:
        f.close()
    return {"tweets": n, "files": n_files}


def gen_blogger(out: str, n: int, seed: int, text: Text, counts: Dict[str, int], ns: int = 0) -> Dict[str, int]:
    r = random.Random(seed * 1000 + 3)
    nr = np.random.default_rng(seed * 1000 + 3)
    noise = Noise(r, text, counts)
    d = os.path.join(out, "blogger")
    os.makedirs(d, exist_ok=True)
    topics = sorted(TOPICS)
    written, n_files, bid = 0, 0, 1_000_000 + ns * 10 ** 9
    while written < n:
        k = int(min(n - written, max(1, min(400, nr.zipf(1.6) + nr.integers(0, 3)))))  # posts of this blogger
        bid += r.randint(1, 997)
        gender = r.choice(["male", "female"])
        age = r.choice([r.randint(13, 17), r.randint(23, 27), r.randint(33, 48)])
        name = f"{bid}.{gender}.{age}.{r.choice(BLOG_INDUSTRIES)}.{r.choice(SIGNS)}.xml"
        topic = topics[bid % len(topics)]
        latin1 = r.random() < 0.03
        crlf = r.random() < 0.5
        t = 1041379200 + r.randint(0, 400) * 86400  # 2003-01-01 + up to ~13 months
        parts = ["<Blog>", ""]
        for _ in range(k):
            t += r.randint(1, 20) * 86400
            g = time.gmtime(t)
            month = MONTHS[g.tm_mon - 1]
            if r.random() < 0.02:
                month = MONTHS_OTHER[month]
            body, _ = noise.body(topic, n_sentences(r, 2.3, 0.8, hi=80))
            if r.random() < 0.15:
                body = body.replace(". ", ". urlLink ", 1)
                counts["urllink"] = counts.get("urllink", 0) + 1
            if latin1:
                body = body.replace("cafe", "café").replace(" naive", " naïve") + " Un café crème, s'il vous plaît."
            if r.random() < 0.01:
                body = ""
                counts["empty_post"] = counts.get("empty_post", 0) + 1
            if r.random() < 0.05:
                body = body.replace(" and ", " & ", 1)  # unescaped ampersand
            # paragraphs, as in the corpus
            sents = body.split(". ")
            paras = [". ".join(sents[a:a + 4]) for a in range(0, len(sents), 4)]
            parts += [f"<date>{g.tm_mday:02d},{month},{g.tm_year}</date>", "<post>", "",
                      "\n\n".join("      " + p for p in paras), "", "</post>", "", ""]
        parts.append("</Blog>")
        s = ("\r\n" if crlf else "\n").join(parts) + ("\r\n" if crlf else "\n")
        with open(os.path.join(d, name), "wb") as f:
            f.write(s.encode("latin-1", "replace") if latin1 else s.encode("utf-8"))
        written += k
        n_files += 1
        counts["latin1_files"] = counts.get("latin1_files", 0) + int(latin1)
    return {"posts": written, "files": n_files}


def _user_id(i: int) -> str:
    h = (i * 2654435761 + 12345) & 0xFFFFFFFFFFFF
    alpha = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    s = "A"
    for _ in range(27):
        h = (h * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        s += alpha[h >> 59]
    return s


def _asin(i: int) -> str:
    return "B0" + b36(36**7 + i * 7919).upper()[-8:]


def gen_amazon(out: str, n: int, seed: int, text: Text, counts: Dict[str, int], ns: int = 0) -> Dict[str, int]:
    r = random.Random(seed * 1000 + 4)
    nr = np.random.default_rng(seed * 1000 + 4)
    noise = Noise(r, text, counts)
    d = os.path.join(out, "amazon")
    os.makedirs(d, exist_ok=True)
    cats = sorted(AMAZON_CATS)
    n_users = max(10, n // 4)
    users = zipf_users(nr, n, n_users, s=1.1)
    n_items = max(len(cats), n // 8)
    assert not ns or n_items < ITEM_SPAN, "a shard's items must fit its namespace"
    item_w = (np.arange(n_items) + 3.0) ** -1.0
    item_w /= item_w.sum()
    items = nr.permutation(n_items)[nr.choice(n_items, size=n, p=item_w)]
    ts = np.sort(nr.integers(1609459200000, 1609459200000 + 2 * 365 * 86400 * 1000, n))
    n_meta = 0
    with_meta = set()
    rev_files = {c: open(os.path.join(d, f"{c}.jsonl"), "wb") for c in cats}
    for i in range(n):
        item = int(items[i])
        cat = cats[item % len(cats)]
        topic = AMAZON_CATS[cat]
        parent = _asin(item + ns * ITEM_SPAN)
        n_var = 1 + (item % 7 == 0) + (item % 21 == 0)
        asin = parent if n_var == 1 else _asin(10_000_000 + (item + ns * ITEM_SPAN) * 3 + r.randrange(n_var))
        uid = _user_id(int(users[i]) + ns * USER_SPAN)
        body, _ = noise.body(topic, n_sentences(r, 1.4, 0.8, hi=40))
        obj = {"rating": float(r.choice([1, 2, 3, 4, 4, 5, 5, 5])), "title": text.general[int(r.random() * 30000)][:40],
               "text": body, "images": [], "asin": asin, "parent_asin": parent, "user_id": uid,
               "timestamp": int(ts[i]), "helpful_vote": int(nr.zipf(2.5)) - 1, "verified_purchase": r.random() < 0.9}
        line = json.dumps(obj).encode("utf-8") + b"\n"
        rev_files[cat].write(line)
        if n_var > 1 and r.random() < 0.08:  # the same review under another variant of the parent item
            obj["asin"] = _asin(10_000_000 + (item + ns * ITEM_SPAN) * 3 + (r.randrange(n_var - 1) + 1))
            if obj["asin"] != asin:
                rev_files[cat].write(json.dumps(obj).encode("utf-8") + b"\n")
                counts["variant_duplicate"] = counts.get("variant_duplicate", 0) + 1
        with_meta.add(item)
    for f in rev_files.values():
        f.close()
    meta_files = {c: open(os.path.join(d, f"meta_{c}.jsonl"), "wb") for c in cats}
    for item in sorted(with_meta):
        if item % 10 == 9:
            continue  # ~10% of items have no metadata line
        cat = cats[item % len(cats)]
        topic = AMAZON_CATS[cat]
        noun = TOPICS[topic][item % 16]
        obj = {"main_category": cat.replace("_and_", " & ").replace("_", " "),
               "title": f"{WORDS_HANDLE[item % 40].capitalize()} {ADJ[item % 40]} {noun} model {item % 1000}",
               "average_rating": round(3 + (item % 20) / 10, 1), "rating_number": item % 20000,
               "features": [f"{ADJ[(item + k) % 40]} {noun}" for k in range(3)], "description": [],
               "price": round(5 + (item % 300) * 0.97, 2), "store": WORDS_HANDLE[(item // 40) % 40].capitalize(),
               "categories": [cat.replace("_", " "), noun], "details": {}, "parent_asin": _asin(item + ns * ITEM_SPAN)}
        meta_files[cat].write(json.dumps(obj).encode("utf-8") + b"\n")
        n_meta += 1
    for f in meta_files.values():
        f.close()
    return {"reviews": n, "meta_lines": n_meta, "files": 2 * len(cats)}


MIX = {"reddit": 0.45, "twitter": 0.30, "amazon": 0.15, "blogger": 0.10}


def generate(out: str, n: int, seed: int, shards: int = 1) -> Dict[str, object]:
    """N records under OUT. With ``shards`` > 1, that many independent corpora of N / shards
    records each (seeds ``seed * 1000 + k``), their users, ids and items in disjoint namespaces,
    each platform's files of shard k under ``<platform>/s{k}/``: a corpus that grows by adding
    users and items, not by making its heaviest user and item heavier. The Zipf laws above give
    the heaviest user and item a fixed share of the records, so in the unsharded corpus they
    grow with N (bench/README.md, curate Round 22)."""
    t0 = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    for sub in ("reddit", "twitter", "blogger", "amazon", "_shard"):  # a rerun replaces, never mixes
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    counts: Dict[str, int] = {}
    if shards > 1:
        if shards * ITEM_SPAN > 10_000_000:
            raise SystemExit(f"gen.py: at most {10_000_000 // ITEM_SPAN} shards")
        sizes = {p: 0 for p in MIX}
        parts: Dict[str, Dict[str, int]] = {}
        per = [n // shards + (k < n % shards) for k in range(shards)]
        for k, nk in enumerate(per):
            tmp = os.path.join(out, "_shard")
            sk, pk = _generate_platforms(tmp, nk, seed * 1000 + k, counts, ns=k)
            for p in MIX:
                sizes[p] += sk[p]
                for key, v in pk[p].items():
                    parts.setdefault(p, {}).setdefault(key, 0)
                    parts[p][key] += v
                if os.path.isdir(os.path.join(tmp, p)):
                    os.makedirs(os.path.join(out, p), exist_ok=True)
                    os.replace(os.path.join(tmp, p), os.path.join(out, p, f"s{k:02d}"))
            shutil.rmtree(tmp, ignore_errors=True)
            print(f"gen.py: shard {k + 1}/{shards} ({nk:,} records, {time.perf_counter() - t0:.0f} s)", flush=True)
    else:
        sizes, parts = _generate_platforms(out, n, seed, counts)
    nbytes = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(out) for f in fs)
    manifest = {"n": n, "seed": seed, "shards": shards, "records": sizes, "platforms": parts,
                "injected": dict(sorted(counts.items())), "bytes": nbytes, "seconds": round(time.perf_counter() - t0, 1)}
    with open(os.path.join(out, "gen.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)
    return manifest


def _generate_platforms(out: str, n: int, seed: int, counts: Dict[str, int], ns: int = 0):
    """One corpus of N records under OUT's platform folders: (records per platform, what each wrote)."""
    text = Text(random.Random(seed))
    sizes = {p: int(round(n * f)) for p, f in MIX.items()}
    sizes["reddit"] += n - sum(sizes.values())
    parts = {
        "reddit": gen_reddit(out, sizes["reddit"], seed, text, counts, ns=ns),
        "twitter": gen_twitter(out, sizes["twitter"], seed, text, counts, ns=ns),
        "blogger": gen_blogger(out, sizes["blogger"], seed, text, counts, ns=ns),
        "amazon": gen_amazon(out, sizes["amazon"], seed, text, counts, ns=ns),
    }
    return sizes, parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="records in total (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--shards", type=int, default=1,
                    help="independent corpora of N/SHARDS records in disjoint user/id/item namespaces (max 10): "
                         "the heaviest user and item stay the size of one shard's")
    ap.add_argument("--out", default=None,
                    help="output folder (default bench/out/curate-data/n{N}-s{SEED}, -k{SHARDS} when sharded)")
    args = ap.parse_args()
    out = args.out or os.path.join("bench", "out", "curate-data", data_name(args.n, args.seed, args.shards))
    m = generate(out, args.n, args.seed, args.shards)
    print(json.dumps({k: m[k] for k in ("n", "shards", "records", "bytes", "seconds")}), flush=True)


def data_name(n: int, seed: int, shards: int = 1) -> str:
    """The corpus folder's name under a data root (run.py's ``ensure_data``)."""
    return f"n{n}-s{seed}" + (f"-k{shards}" if shards > 1 else "")


if __name__ == "__main__":
    main()
