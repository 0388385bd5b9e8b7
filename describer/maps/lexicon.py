"""Word relations that need a lexicon, for relation evidence (``describer.maps.relations``).

English inflection comes from ``lemminflect`` (its own tables of English word forms, irregular
ones included: shrink → shrank, mouse → mice, good → better, and rules for unknown words);
case changes are plain string tests; gendered word pairs are a short list written here.
Every function takes word keys (``wordforms.word_key``: no space markers, lower case) except
``case_keys``, which needs the tokens' case.
"""

from __future__ import annotations

from functools import lru_cache

import lemminflect

INFLECTIONS: dict[str, tuple[str, ...]] = {
    "past": ("VBD",),
    "participle": ("VBN",),
    "ing": ("VBG",),
    "plural": ("NNS",),
    "third_person": ("VBZ",),
    "comparative": ("JJR", "RBR"),
    "superlative": ("JJS", "RBS"),
}
"""``inflection:NAME`` relations and the Penn tags of the forms they name."""

INFLECTION_LABELS: dict[str, str] = {
    "past": "verb → past tense",
    "participle": "verb → past participle",
    "ing": "verb → -ing form (present participle)",
    "plural": "noun → plural",
    "third_person": "verb → third person singular (-s)",
    "comparative": "adjective → comparative",
    "superlative": "adjective → superlative",
    "lemma": "inflected word → its base form",
}

CASE_LABELS: dict[str, str] = {
    "upper": "the same word in upper case",
    "lower": "the same word in lower case",
    "title": "the same word capitalised",
}

_GENDER = (
    "man woman, men women, boy girl, boys girls, father mother, dad mom, dad mum, daddy mommy, "
    "son daughter, sons daughters, brother sister, brothers sisters, uncle aunt, nephew niece, "
    "husband wife, king queen, kings queens, prince princess, duke duchess, lord lady, "
    "gentleman lady, gentlemen ladies, sir madam, mr mrs, mr ms, he she, him her, his her, "
    "himself herself, actor actress, waiter waitress, host hostess, god goddess, hero heroine, "
    "emperor empress, groom bride, bridegroom bride, monk nun, boyfriend girlfriend, "
    "grandfather grandmother, grandpa grandma, grandson granddaughter, stepfather stepmother, "
    "stepson stepdaughter, male female, masculine feminine, bull cow, rooster hen, stallion mare, "
    "ram ewe, boar sow, buck doe, gander goose, drake duck, lion lioness, tiger tigress, "
    "wizard witch, sorcerer sorceress, steward stewardess, headmaster headmistress, "
    "policeman policewoman, businessman businesswoman, chairman chairwoman, spokesman spokeswoman, "
    "fiance fiancee, widower widow, bachelor spinster, lad lass, monsieur madame, señor señora, "
    "baron baroness, count countess, patron patroness, abbot abbess, murderer murderess"
)
GENDER_PAIRS: frozenset[tuple[str, str]] = frozenset(
    tuple(pair.split())
    for pair in _GENDER.split(", ")  # type: ignore[misc]
)
"""(male, female) word pairs; ``gender:female`` is male → female, ``gender:male`` the reverse."""

GENDER_LABELS = {"female": "male → female counterpart", "male": "female → male counterpart"}

_OPPOSITES = (
    "begin end, start finish, start stop, increase decrease, accept reject, open close, open shut, "
    "push pull, arrive depart, arrive leave, left right, victory defeat, win lose, winner loser, "
    "buy sell, give take, come go, enter exit, entrance exit, up down, in out, on off, above below, "
    "over under, before after, inside outside, front back, top bottom, first last, always never, "
    "everything nothing, everyone nobody, all none, more less, most least, many few, maximum minimum, "
    "plus minus, positive negative, true false, yes no, right wrong, question answer, love hate, "
    "friend enemy, war peace, day night, morning evening, sunrise sunset, summer winter, north south, "
    "east west, black white, life death, birth death, alive dead, asleep awake, sleep wake, "
    "success failure, profit loss, import export, input output, include exclude, inhale exhale, "
    "rise fall, raise lower, ascend descend, expand contract, attack defend, forget remember, "
    "lend borrow, teach learn, send receive, laugh cry, agree disagree, allow forbid, appear disappear, "
    "build destroy, create destroy, connect disconnect, lock unlock, load unload, pass fail, "
    "save spend, find lose, hide show, float sink, freeze melt, wet dry, clean dirty, early late, "
    "easy difficult, easy hard, cheap expensive, deep shallow, thick thin, wide narrow, loud quiet, "
    "strong weak, soft hard, smooth rough, sweet sour, full empty, safe dangerous, polite rude, "
    "possible impossible, legal illegal, visible invisible, known unknown, common rare, "
    "public private, major minor, inner outer, upper lower, near far, high low, young old, "
    "ancient modern, past future, present absent, internal external, horizontal vertical, "
    "active passive, floor ceiling, heaven hell, hero villain, master servant, teacher student, "
    "parent child, employer employee, buyer seller, host guest, majority minority, "
    "optimist pessimist, optimistic pessimistic, natural artificial, real fake, permanent temporary, "
    "simple complex, general specific, absolute relative, certain uncertain, happy sad, "
    "good bad, better worse, best worst, big small, large small, long short, tall short, fast slow, "
    "quick slow, hot cold, warm cool, light dark, light heavy, new old, rich poor, strong weak, "
    "huge tiny, giant dwarf, beautiful ugly, brave cowardly, kind cruel, wise foolish, "
    "clever stupid, smart dumb, healthy sick, happy unhappy, calm angry, generous stingy, "
    "honest dishonest, interesting boring, important unimportant, useful useless, ordinary special, "
    "same different, similar different, equal unequal, inferior superior, junior senior, "
    "minimum maximum, zero infinity, beginning end, start end, import export, send receive, "
    "attack defence, offence defence, guilty innocent, sober drunk, single married, solid liquid, "
    "visible hidden, awake asleep, open closed, on off, online offline, forward backward, "
    "forwards backwards, upstairs downstairs, indoor outdoor, indoors outdoors, inward outward, "
    "together apart, with without, for against, pro con, always rarely, often seldom, "
    "here there, this that, these those, now then, sooner later, earlier later, yesterday tomorrow"
)
OPPOSITES: frozenset[tuple[str, str]] = frozenset(
    pair for words in _OPPOSITES.split(", ") for a, b in [words.split()] for pair in ((a, b), (b, a))
)
"""Word pairs of opposite meaning, both ways (``opposite``): verbs, nouns, adverbs and
prepositions as well as the adjectives of the built-in ``adj_antonym`` operation."""


def opposite_keys(source: str, output: str) -> list[str]:
    return ["opposite"] if (source, output) in OPPOSITES else []


@lru_cache(maxsize=65536)
def _forms(word: str) -> dict[str, frozenset[str]]:
    """Penn tag → the word's inflected forms (lower case), from lemminflect's tables."""
    if not word.isalpha() or len(word) < 2:
        return {}
    found = lemminflect.getAllInflections(word)
    if not found:  # not in the tables: its regular forms as a verb, noun and adjective
        for upos in ("VERB", "NOUN", "ADJ"):
            for tag, forms in lemminflect.getAllInflectionsOOV(word, upos).items():
                found.setdefault(tag, forms)
    return {tag: frozenset(f.lower() for f in forms) - {word} for tag, forms in found.items()}


def inflection_keys(source: str, output: str) -> list[str]:
    """``inflection:NAME`` relations ``output`` stands in to ``source`` (both word keys)."""
    if source == output or not source or not output:
        return []
    keys = []
    forms = _forms(source)
    for name, tags in INFLECTIONS.items():
        if any(output in forms.get(tag, ()) for tag in tags):
            keys.append(f"inflection:{name}")
    if not keys and any(source in forms for forms in _forms(output).values()):
        keys.append("inflection:lemma")
    return keys


def case_keys(source: str, output: str) -> list[str]:
    """``case:upper|lower|title``: ``output`` is ``source`` in another case (tokens stripped of
    space markers, case kept)."""
    if source == output or source.lower() != output.lower() or not any(c.isalpha() for c in source):
        return []
    if output == source.upper():
        return ["case:upper"]
    if output == source.lower():
        return ["case:lower"]
    if output == source[:1].upper() + source[1:].lower() or output == source[:1].upper() + source[1:]:
        return ["case:title"]
    return []


def gender_keys(source: str, output: str) -> list[str]:
    if (source, output) in GENDER_PAIRS:
        return ["gender:female"]
    if (output, source) in GENDER_PAIRS:
        return ["gender:male"]
    return []
