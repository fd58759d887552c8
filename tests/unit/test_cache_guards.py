"""The semantic-cache correctness guards: each catches its category, lets paraphrases through, can be
turned off; the opposites lexicon is extendable; and the near-miss set gets no wrong answers where the
issue demands none (numbers, dates, quoted strings)."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import pytest

from hyperion_core.cache.guards import (
    GUARD_NAMES,
    GuardResult,
    Opposites,
    analyze,
    check_guards,
    register_opposites,
)
from hyperion_core.cache.lexicon import DEFAULT_OPPOSITES, stem
from hyperion_core.errors import ConfigError, HyperionError

DATA = Path(__file__).resolve().parent.parent / "data"
NEAR_MISS_CATEGORIES = {"numbers", "dates", "quoted", "negation", "direction", "antonyms", "entities"}


def only(name: str) -> dict[str, bool]:
    return {g: g == name for g in GUARD_NAMES}


# guard -> (pairs it must reject, pairs it must accept); every pair is checked in both directions
CASES: dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]]]] = {
    "numbers": (
        [
            ("What is 15% of 80?", "What is 15% of 90?"),
            ("Split the bill of 120 between 3 people", "Split the bill of 120 between 4 people"),
            ("Is -7 a prime number?", "Is 7 a prime number?"),
            ("What's 3.5 times 2?", "What's 3.25 times 2?"),
            ("Give me three ideas for dinner", "Give me four ideas for dinner"),
            ("Explain the second law of thermodynamics", "Explain the third law of thermodynamics"),
            ("Summarize chapter 2", "Summarize chapter 2 and 3"),
            ("Is Python 3.10 faster than 3.9?", "Is Python 3.1 faster than 3.9?"),
            ("What is 15% of 80?", "What is 15 of 80?"),
            ("Budget of 5k for a laptop", "Budget of 500 for a laptop"),
        ],
        [
            ("What is 15% of 80?", "What's fifteen percent of 80?"),
            ("Give me 5 tips for sleep", "Five tips for sleep, please"),
            ("How much is $1,500 in euros?", "How much is 1500 dollars in euros?"),
            ("Is 17 prime?", "Is seventeen a prime number?"),
            ("What is twenty-five squared?", "What is 25 squared?"),
            ("Explain the 3rd law of motion", "Explain the third law of motion"),
            ("Which one is better, tea or coffee?", "Is tea or coffee better?"),
            ("How many meters in a mile?", "A mile is how many meters?"),
            ("Budget of 5k for a laptop", "Laptop with a 5,000 budget"),
            ("First, tell me what a monad is.", "Tell me what a monad is."),
        ],
    ),
    "dates": (
        [
            ("What happened in 1848?", "What happened in 1884?"),
            ("Is the museum open on Monday?", "Is the museum open on Tuesday?"),
            ("Wake me at 6:30 am", "Wake me at 6:30 pm"),
            ("What's the weather tomorrow?", "What's the weather today?"),
            ("Orders after 2024-02-01", "Orders after 2024-03-01"),
            ("Plan a trip for next week", "Plan a trip for next month"),
            ("Revenue in Q1", "Revenue in Q3"),
            ("Best places to visit in winter", "Best places to visit in summer"),
            ("What happened on July 4, 1976?", "What happened on July 5, 1976?"),
        ],
        [
            ("What happened on July 4th, 1976?", "What happened on 1976-07-04?"),
            ("Convert 3pm to 24-hour time", "Convert 3 PM to 24-hour time"),
            ("What is 2:30 PM in 24-hour time?", "Convert 2:30pm to 24-hour time"),
            ("Is the bank open on Sundays?", "Is the bank open on Sunday?"),
            ("Lunch at noon", "Lunch at 12 pm"),
            ("May I ask about the weather in March?", "What's the weather like in March?"),
            ("Write a poem about autumn leaves", "Write a poem about leaves in autumn"),
            ("How do I configure Spring Boot?", "Spring Boot configuration guide"),
        ],
    ),
    "quoted": (
        [
            ("Translate 'good morning' into Spanish", "Translate 'good evening' into Spanish"),
            ("What does `git rebase -i` do?", "What does `git rebase --onto` do?"),
            ('Define "ephemeral"', 'Define "eternal"'),
            ("Fix this: ```print(x)```", "Fix this: ```print(y)```"),
            ("Why do I get \u201cKeyError: 'id'\u201d?", "Why do I get \u201cKeyError: 'name'\u201d?"),
        ],
        [
            ("What does 'carpe diem' mean?", "What does carpe diem mean?"),
            ("Translate 'good morning' into Spanish", 'How do I say "Good Morning" in Spanish?'),
            ("What does `git stash` do?", "Explain the git stash command"),
            ("Don't use 'eval' here", "Do not use eval here"),
        ],
    ),
    "negation": (
        [
            ("Which foods are allowed on keto?", "Which foods are not allowed on keto?"),
            ("Why does my build pass?", "Why doesn't my build pass?"),
            ("Pasta recipes with eggs", "Pasta recipes without eggs"),
            ("I can log in", "I can't log in"),
            ("Countries that have a king", "Countries that have no king"),
            ("Has he ever lied?", "Has he never lied?"),
        ],
        [
            ("Why can't I log in?", "Why can I not log in?"),
            ("I cannot sign in to Gmail", "Can't sign in to Gmail"),
            ("Bread without yeast", "Bread that doesn't need yeast"),
            ("Not only fast but cheap?", "Fast and cheap?"),
            ("Answer yes or no: is water wet?", "Is water wet? Answer yes or no"),
        ],
    ),
    "role_swap": (
        [
            ("Flights from Paris to Rome", "Flights from Rome to Paris"),
            ("Convert USD to EUR", "Convert EUR to USD"),
            ("Should I learn Java before Kotlin?", "Should I learn Kotlin before Java?"),
            ("Is Go faster than Rust?", "Is Rust faster than Go?"),
            ("Divide 10 by 4", "Divide 4 by 10"),
            ("Did Microsoft acquire GitHub?", "Did GitHub acquire Microsoft?"),
            ("Why choose React over Vue?", "Why choose Vue over React?"),
        ],
        [
            ("Difference between TCP and UDP", "Difference between UDP and TCP"),
            ("In Python, how do I read a file?", "How do I read a file in Python?"),
            ("Who painted the Mona Lisa?", "The Mona Lisa was painted by whom?"),
            ("Boiling point of water at sea level", "At sea level, what temperature does water boil at?"),
            ("Is a kilo of feathers or a kilo of steel heavier?", "Is a kilo of steel or a kilo of feathers heavier?"),
            ("Should I stretch before or after running?", "Is it better to stretch after running or before?"),
            ("Compare Python with Java", "Compare Java with Python"),
        ],
    ),
    "opposites": (
        [
            ("Best time to buy a house", "Best time to sell a house"),
            ("How do I increase the volume?", "How do I decrease the volume?"),
            ("Encrypt a file with openssl", "Decrypt a file with openssl"),
            ("Maximum of a list", "Minimum of a list"),
            ("Import data into Excel", "Export data from Excel"),
            ("Eat before training?", "Eat after training?"),
            ("How do I open a port?", "How do I close a port?"),
            ("How do I win at chess?", "Why do I lose at chess?"),
            ("Is this code safe?", "Is this code unsafe?"),
            ("Check if a value is null", "Check if a value is non-null"),
            ("How do I turn on Bluetooth?", "How do I turn off Bluetooth?"),
            ("Is buying a car worth it?", "Is selling a car worth it?"),
            ("Average height of men", "Average height of women"),
        ],
        [
            ("Should I buy or sell now?", "Is now the time to sell or buy?"),
            ("How do I remove a git branch?", "How do I delete a git branch?"),
            ("What are the health benefits of tea?", "Why is tea good for you?"),
            ("Should I stretch before or after running?", "Is stretching after or before running better?"),
            ("How do I undo the last commit?", "Undo my most recent commit"),
        ],
    ),
    "entities": (
        [
            ("What is the capital of Australia?", "What is the capital of Austria?"),
            ("Install Docker on Ubuntu", "Install Docker on Fedora"),
            ("Tesla stock forecast", "Nvidia stock forecast"),
            ("Use os.path.join here", "Use pathlib.Path here"),
            ("Plot of Hamlet", "Plot of Hamlet and Macbeth"),
            ("Is AWS cheaper?", "Is GCP cheaper?"),
        ],
        [
            ("What's the capital of Australia?", "Which city is Australia's capital?"),
            ("how do i reverse a list in python", "How do I reverse a list in Python?"),
            ("Explain recursion simply", "Recursion explained simply"),
            ("HOW DO I RESET MY PASSWORD", "how do i reset my password"),
            ("CSS: center a div", "How do I center a div in CSS?"),
            ("Git: undo a commit", "How do I undo a commit in git?"),
            ("Is the bank open on Sundays?", "Is the bank open on Sunday?"),
        ],
    ),
    "word_swap": (
        [
            ("How do I sort a list in Python?", "How do I shuffle a list in Python?"),
            ("Which red wine goes well with salmon?", "Which white wine goes well with salmon?"),
            ("How long should I boil eggs?", "How long should I fry eggs?"),
            ("Why is my basil turning yellow?", "Why is my basil turning brown?"),
        ],
        [
            ("How do I delete a folder?", "How can I remove a directory?"),
            ("What is the capital of France?", "What is the capital city of France?"),
            ("How do I sort a list in Python?", "How would I go about sorting lists in Python?"),
            ("Give me a fun fact about octopuses", "Tell me an interesting fact about octopuses"),
        ],
    ),
}


@pytest.mark.parametrize(
    ("guard", "a", "b"),
    [(g, a, b) for g, (bad, _) in CASES.items() for a, b in bad],
)
def test_guard_catches_its_category(guard: str, a: str, b: str) -> None:
    for q, c in ((a, b), (b, a)):
        r = check_guards(q, c, only(guard))
        assert r.failed == (guard,), (q, c, r)
        assert not r.passed


@pytest.mark.parametrize(
    ("guard", "a", "b"),
    [(g, a, b) for g, (_, good) in CASES.items() for a, b in good],
)
def test_guard_lets_paraphrases_through(guard: str, a: str, b: str) -> None:
    for q, c in ((a, b), (b, a)):
        r = check_guards(q, c, only(guard))
        assert r.passed and r.passed_guards == (guard,), (q, c, r)


def test_identical_prompts_pass_every_guard() -> None:
    for text in ("What is 15% of 80?", "Flights from Paris to Rome on Monday at 9am", "Translate 'x' to EUR"):
        r = check_guards(text, text)
        assert r == GuardResult(True, GUARD_NAMES, ())


def test_result_is_frozen_ordered_and_truthy() -> None:
    r = check_guards("Convert 100 USD to EUR on Monday", "Convert 100 EUR to USD on Friday")
    assert r.failed == ("dates", "role_swap")  # GUARD_NAMES order
    assert r.passed_guards == tuple(g for g in GUARD_NAMES if g not in r.failed)
    assert not r and not r.passed
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.passed = True  # type: ignore[misc]
    assert check_guards("hello there", "hello there")


@pytest.mark.parametrize("guard", GUARD_NAMES)
def test_turning_a_guard_off_changes_the_verdict(guard: str) -> None:
    # a pair that only this guard rejects
    a, b = next((a, b) for a, b in CASES[guard][0] if check_guards(a, b).failed == (guard,))
    on = check_guards(a, b)
    assert not on.passed and on.failed == (guard,)
    off = check_guards(a, b, {g: g != guard for g in GUARD_NAMES})  # every other guard on, this one off
    assert off.passed, off
    assert guard not in off.passed_guards and guard not in off.failed
    # a mapping that names only the guard keeps the rest on
    partial = check_guards(a, b, {guard: False})
    assert partial == off


def test_unknown_guard_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown cache guard.*numbrs"):
        check_guards("a", "b", {"numbrs": False})
    assert issubclass(ConfigError, HyperionError)


def test_register_opposites_extends_the_default_lexicon() -> None:
    a, b = "Should I zorp the blick?", "Should I flarn the blick?"
    no_swap = {"word_swap": False}  # (a one-word swap: the word_swap guard refuses it too)
    assert check_guards(a, b, no_swap).passed
    register_opposites([("zorp", "flarn"), ("check the box", "uncheck the box")])
    try:
        assert check_guards(a, b, no_swap).failed == ("opposites",)
        assert check_guards("Did they zorping it?", "Did they flarned it?", no_swap).failed == ("opposites",)
        assert not check_guards("Please check the box", "Please uncheck the box", only("opposites")).passed
        assert check_guards("zorp or flarn?", "flarn or zorp?").passed  # both words on both sides
    finally:
        DEFAULT_OPPOSITES.discard([("zorp", "flarn"), ("check the box", "uncheck the box")])
    assert check_guards(a, b, no_swap).passed
    assert "zorp" not in DEFAULT_OPPOSITES and "buy" in DEFAULT_OPPOSITES


def test_lexicon_stems_inflections() -> None:
    assert stem("buying") == stem("buys") == stem("buy")
    assert stem("sold") == stem("selling") == stem("sell")
    assert stem("decreased") == stem("decreasing") == stem("decrease")
    assert stem("winning") == stem("won") == stem("win")
    assert stem("evening") != stem("even")


def test_a_route_can_use_its_own_lexicon_without_touching_the_default() -> None:
    lex = DEFAULT_OPPOSITES.copy()
    lex.add([("bullish", "bearish"), ("hawkish", "dovish")])
    a, b = "Is the Fed hawkish?", "Is the Fed dovish?"
    no_swap = {"word_swap": False}
    assert check_guards(a, b, no_swap, opposites=lex).failed == ("opposites",)
    assert check_guards(a, b, no_swap).passed
    assert "hawkish" in lex and "hawkish" not in DEFAULT_OPPOSITES
    assert check_guards("buy", "sell", opposites=Opposites()).passed  # an empty lexicon knows no opposites


def test_bad_opposite_pairs_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        Opposites([("same", "same")])
    with pytest.raises(ConfigError):
        Opposites([("", "x")])


def test_normalisation_of_numbers_and_dates() -> None:
    n = lambda t: analyze(t).numbers  # noqa: E731
    assert n("twelve percent of 250") == n("12% of 250") == ("12%", "250")
    assert n("$300,000 at 6.5 per cent") == n("300000 dollars at 6.5%")
    assert n("-5 degrees") != n("5 degrees")
    assert n("pages 3-5") == ("3", "5")
    assert n("Python 3.10") != n("Python 3.1")
    assert n("twenty-five thousand") == ("25000",)
    assert n("the 2nd and the third") == ("#2", "#3")
    d = lambda t: analyze(t).dates  # noqa: E731
    assert d("July 4th, 1976") == d("1976-07-04") == d("4 July 1976") == ("day:4", "month:7", "year:1976")
    assert d("at 3pm") == d("at 15:00") == ("time:15:00",)
    assert d("I may go") == () and d("in May") == ("month:5",)
    assert n("on 12 March 2020 at 3:30 pm") == ()  # numbers inside dates and times are the dates guard's


def test_contractions_and_case_are_normalised() -> None:
    assert analyze("Doesn't it work?").negations == analyze("Does it not work?").negations == 1
    assert analyze("Why won't it start").negations == 1
    assert analyze("What is Australia's capital?")._entities[0] == frozenset({"australia"})
    assert check_guards("What is Australia’s capital?", "capital of AUSTRALIA?", only("entities")).passed


def _pairs(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("name", ["near_miss.jsonl", "near_miss_holdout.jsonl"])
def test_pair_sets_are_well_formed(name: str) -> None:
    rows = _pairs(name)
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert r["kind"] in ("near_miss", "paraphrase"), r
        assert r["a"].strip() and r["b"].strip() and r["a"] != r["b"], r
        if r["kind"] == "near_miss":
            assert r["category"] in NEAR_MISS_CATEGORIES, r
    if name == "near_miss.jsonl":
        kinds = Counter(r["kind"] for r in rows)
        assert kinds["near_miss"] >= 60 and kinds["paraphrase"] >= 30
        assert {r["category"] for r in rows if r["kind"] == "near_miss"} == NEAR_MISS_CATEGORIES


@pytest.mark.parametrize("name", ["near_miss.jsonl", "near_miss_holdout.jsonl"])
def test_guards_on_the_near_miss_set(name: str) -> None:
    rows = _pairs(name)
    wrong = [r for r in rows if r["kind"] == "near_miss" and check_guards(r["b"], r["a"]).passed]
    # zero wrong answers on number, date and quoted-string pairs, whatever the embedding distance
    assert [r["id"] for r in wrong if r["category"] in ("numbers", "dates", "quoted")] == []
    # the bar is at most 2 in 40 (5%) wrong answers; the guards alone stay within it
    near = sum(r["kind"] == "near_miss" for r in rows)
    assert len(wrong) <= near * 0.05, [r["id"] for r in wrong]
    para = [r for r in rows if r["kind"] == "paraphrase"]
    passed = [r for r in para if check_guards(r["b"], r["a"]).passed]
    assert len(passed) >= 0.85 * len(para), [r["id"] for r in para if r not in passed]


# -- word_swap: one lowercase content word swapped (issue: wordllama served 20/60 verb swaps) ------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How do I sort a list in Python?", "How do I reverse a list in Python?"),
        ("How do I sort a list in Python?", "How do I sort a string in Python?"),
        ("Which red wine goes well with salmon?", "Which white wine goes well with salmon?"),
        ("Is a tomato a fruit?", "Is a tomato a vegetable?"),
        ("Can you recommend a lightweight sleeping bag for hiking?", "Can you recommend a lightweight jacket for hiking?"),
        ("How long should I boil eggs?", "How long should I fry eggs?"),
    ],
)
def test_word_swap_refuses_one_swapped_content_word(a: str, b: str) -> None:
    only = {g: g == "word_swap" for g in GUARD_NAMES}
    result = check_guards(a, b, only)
    assert not result.passed and result.failed == ("word_swap",)
    assert not check_guards(b, a, only).passed  # symmetric


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How do I delete a file in Python?", "How do I remove a file in Python?"),  # synonyms
        ("How do I sort a list in Python?", "How can I go about sorting lists in Python?"),  # inflection, frame
        ("What is the capital of France?", "What is the capital city of France?"),  # a word added
        ("What are the early symptoms of rabies in dogs?", "What are early signs of rabies in dogs?"),
        ("List 3 healthy breakfast ideas", "Give me three healthy breakfast ideas"),  # numbers are not its job
        ("Why is my basil turning yellow?", "Why is my basil turning yellow? Thanks!"),
    ],
)
def test_word_swap_lets_paraphrases_through(a: str, b: str) -> None:
    assert check_guards(a, b, {g: g == "word_swap" for g in GUARD_NAMES}).passed


def test_word_swap_synonyms_can_be_extended() -> None:
    from hyperion_core.cache.word_swap import Synonyms, swapped_words

    a, b = analyze("Can I run this on my laptop?").content, analyze("Can I run this on my notebook?").content
    assert swapped_words(a, b) == [("laptop", "notebook")]
    assert swapped_words(a, b, Synonyms([("laptop", "notebook")])) == []


def test_word_swap_on_the_generated_set_and_its_cost_on_the_paraphrase_sets() -> None:
    """tests/data/word_swaps.jsonl (make_word_swaps.py): 300 one-word swaps, 99 rephrasings. The guard
    refuses every swap and keeps every rephrasing; on the hand-written sets it turns away no
    paraphrase that the other guards let through."""
    rows = _pairs("word_swaps.jsonl")
    near = [r for r in rows if r["kind"] == "near_miss"]
    para = [r for r in rows if r["kind"] == "paraphrase"]
    assert (len(near), len(para)) == (300, 99)
    off = {"word_swap": False}
    assert sum(check_guards(r["b"], r["a"], off).passed for r in near) == 300  # no other guard sees them
    assert [r["id"] for r in near if check_guards(r["b"], r["a"]).passed] == []
    assert all(check_guards(r["b"], r["a"]).passed for r in para)
    for name in ("near_miss.jsonl", "near_miss_holdout.jsonl"):
        for r in _pairs(name):
            if r["kind"] == "paraphrase" and check_guards(r["b"], r["a"], off).passed:
                assert check_guards(r["b"], r["a"]).passed, r["id"]


def test_the_generated_set_is_what_its_generator_makes(tmp_path, monkeypatch) -> None:
    import importlib.util

    gen = Path(__file__).resolve().parents[1] / "data" / "make_word_swaps.py"
    spec = importlib.util.spec_from_file_location("make_word_swaps", gen)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "OUT", tmp_path / "word_swaps.jsonl")
    mod.main()
    assert (tmp_path / "word_swaps.jsonl").read_text() == (gen.parent / "word_swaps.jsonl").read_text()
