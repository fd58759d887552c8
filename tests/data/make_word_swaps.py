"""Generate ``word_swaps.jsonl``: questions that differ in one lowercase content word (near-misses: a
cached answer to one is wrong for the other) and rephrasings of the same question (paraphrases).

Deterministic (seeded); run ``python tests/data/make_word_swaps.py`` to rewrite the file. Near-miss pairs
swap one word of a template's slot for another word of the same slot (a verb, a noun or an adjective:
"How do I sort a list in Python?" / "How do I reverse a list in Python?"). Paraphrase pairs keep every
slot and change the phrasing around it (question frame, articles, number, inflection), so a guard that
refuses every changed word would lose them.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

OUT = Path(__file__).with_name("word_swaps.jsonl")

# (template, {slot: words}, [frames]): "{q}" in a frame is the template's question body
TEMPLATES: list[tuple[str, dict[str, list[str]]]] = [
    ("how do I {verb} a {noun} in {lang}", {
        "verb": ["sort", "reverse", "copy", "merge", "split", "flatten", "shuffle", "serialize", "validate",
                 "compress", "encrypt", "parse"],
        "noun": ["list", "string", "dictionary", "file", "array", "tuple", "date", "queue"],
        "lang": ["Python"],
    }),
    ("what is the best way to {verb} {food} for dinner", {
        "verb": ["grill", "roast", "boil", "steam", "fry", "bake", "poach", "smoke"],
        "food": ["salmon", "chicken", "potatoes", "broccoli", "tofu", "shrimp", "eggplant", "pork"],
    }),
    ("which {colour} wine goes well with {dish}", {
        "colour": ["red", "white", "sparkling", "sweet", "dry"],
        "dish": ["salmon", "steak", "pasta", "cheese", "curry", "oysters", "lamb"],
    }),
    ("what are the early symptoms of {condition} in {animal}", {
        "condition": ["diabetes", "arthritis", "anemia", "asthma", "dehydration", "obesity", "rabies"],
        "animal": ["cats", "dogs", "horses", "rabbits", "parrots", "goats"],
    }),
    ("can you recommend a {adj} {item} for {activity}", {
        "adj": ["lightweight", "waterproof", "cheap", "warm", "durable", "compact", "quiet"],
        "item": ["tent", "jacket", "backpack", "stove", "sleeping bag", "headlamp"],
        "activity": ["hiking", "camping", "cycling", "fishing", "climbing", "kayaking"],
    }),
    ("how long should I {verb} {food}", {
        "verb": ["boil", "bake", "marinate", "microwave", "roast", "freeze", "steam"],
        "food": ["eggs", "rice", "ribs", "carrots", "bread", "beans", "corn"],
    }),
    ("what is the difference between a {a} and a {b}", {
        "a": ["virus", "lake", "comet", "crocodile", "violin", "mortgage", "tornado"],
        "b": ["bacterium", "pond", "asteroid", "alligator", "viola", "loan", "hurricane"],
    }),
    ("how do I {verb} my {device}", {
        "verb": ["reset", "restart", "update", "clean", "unlock", "charge", "calibrate", "pair"],
        "device": ["router", "printer", "laptop", "phone", "thermostat", "keyboard", "headphones"],
    }),
    ("is it safe to {verb} {thing} during pregnancy", {
        "verb": ["eat", "drink", "take", "use", "touch"],
        "thing": ["tuna", "coffee", "ibuprofen", "sushi", "cheese", "retinol", "honey"],
    }),
    ("why is my {plant} turning {colour}", {
        "plant": ["basil", "tomato", "lemon tree", "monstera", "lawn", "orchid", "cactus"],
        "colour": ["yellow", "brown", "black", "white", "red"],
    }),
]

FRAMES_SAME = [
    ("{Q}?", "{Q}?"),
    ("{Q}?", "Could you tell me {q}?"),
    ("{Q}?", "{Q}? Thanks!"),
    ("{Q}?", "Quick question: {q}?"),
    ("{Q}?", "Please tell me {q}."),
    ("{Q}?", "{Q}, please?"),
]
# rephrasings of a template's fixed words (not its slots)
REPHRASE: dict[str, list[str]] = {
    "how do I": ["how can I", "how would I", "what is the way to", "how should I"],
    "what is the best way to": ["what's the best way to", "how should I best", "what's the ideal way to"],
    "which": ["what"],
    "goes well with": ["pairs well with", "goes best with", "goes nicely with"],
    "what are the early symptoms of": ["what are early signs of", "what are the initial symptoms of"],
    "can you recommend": ["could you recommend", "please recommend", "can you suggest"],
    "how long should I": ["for how long should I", "how many minutes should I"],
    "what is the difference between": ["what's the difference between", "how do you tell apart"],
    "is it safe to": ["is it okay to", "can I safely"],
    "why is my": ["why's my", "what makes my"],
}


def fill(template: str, values: dict[str, str]) -> str:
    return template.format(**values)


def cap(s: str) -> str:
    return s[0].upper() + s[1:]


def main() -> None:
    rng = random.Random(20261204)
    rows: list[dict] = []
    for t_i, (template, slots) in enumerate(TEMPLATES):
        names = list(slots)
        combos = list(itertools.product(*(slots[n] for n in names)))
        rng.shuffle(combos)
        # near-misses: one slot swapped for another word of the same slot
        n_near = 0
        for combo in combos:
            if n_near >= 30:
                break
            base = dict(zip(names, combo))
            slot = rng.choice([n for n in names if len(slots[n]) > 1])
            other = rng.choice([w for w in slots[slot] if w != base[slot]])
            swapped = {**base, slot: other}
            a, b = fill(template, base), fill(template, swapped)
            rows.append({"id": f"swap-{t_i:02d}-{n_near:02d}", "kind": "near_miss", "category": f"swap:{slot}",
                         "a": cap(a) + "?", "b": cap(b) + "?"})
            n_near += 1
        # paraphrases: the same slots, another frame or phrasing
        n_para = 0
        for combo in combos[30:]:
            if n_para >= 12:
                break
            base = dict(zip(names, combo))
            q = fill(template, base)
            head = next((h for h in REPHRASE if template.startswith(h)), None)
            if n_para % 2 == 0 and head:
                alt = rng.choice(REPHRASE[head]) + q[len(head):]
                a, b = cap(q) + "?", cap(alt) + "?"
            else:
                fa, fb = rng.choice(FRAMES_SAME[1:])
                a, b = fa.format(Q=cap(q), q=q), fb.format(Q=cap(q), q=q)
            rows.append({"id": f"para-{t_i:02d}-{n_para:02d}", "kind": "paraphrase", "category": "rephrase",
                         "a": a, "b": b})
            n_para += 1
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{OUT}: {sum(r['kind'] == 'near_miss' for r in rows)} near-misses, "
          f"{sum(r['kind'] == 'paraphrase' for r in rows)} paraphrases")


if __name__ == "__main__":
    main()
