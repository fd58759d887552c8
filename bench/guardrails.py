"""Guardrails quality and cost on the labelled set in tests/data/guardrails/.

    .venv/bin/python bench/guardrails.py

PII: per-type precision / recall / F1 (a finding counts when type and span match exactly), the
false-positive rate on hard negatives (texts with PII-shaped non-PII: broken checksums, versions,
order numbers), next to a plain keyword/regex list and Presidio's pattern recognisers (if the
``presidio`` extra is installed; no spaCy model is loaded). Injection: recall and the false-positive
rate on hard negatives, by channel, next to a keyword list. Cost: p50 for a ~2,000-token prompt with
all detectors on, and CPU per streamed chunk of the output guard.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hyperion_core.guardrails.injection import InjectionDetector  # noqa: E402
from hyperion_core.guardrails.masking import Masker, StreamGuard  # noqa: E402
from hyperion_core.guardrails.pii import TYPES, PiiDetector  # noqa: E402
from hyperion_core.types import ChatChunk  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "guardrails"
_MARK = re.compile(r"\[\[([A-Z]+)\|(.*?)\]\]", re.S)


def load_pii() -> list[tuple[str, set[tuple[int, int, str]], bool]]:
    rows = []
    for line in (DATA / "pii.jsonl").read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        text, spans, out, pos = r["text"], set(), [], 0
        for m in _MARK.finditer(text):
            out.append(text[pos : m.start()])
            start = sum(map(len, out))
            out.append(m.group(2))
            spans.add((start, start + len(m.group(2)), m.group(1)))
            pos = m.end()
        out.append(text[pos:])
        rows.append(("".join(out), spans, bool(r.get("negative"))))
    return rows


class Keywords:
    """The baseline: one bare regex per type, no validation."""

    PATTERNS = {
        "EMAIL": r"\S+@\S+\.\w+", "PHONE": r"\+?\d[\d ()-]{7,}\d", "CARD": r"\b(?:\d[ -]?){13,19}\b",
        "IBAN": r"\b[A-Z]{2}\d{2}[A-Z0-9 ]{11,30}\b", "SSN": r"\b\d{3}-\d{2}-\d{4}\b", "IP": r"\b(?:\d{1,3}\.){3}\d{1,3}\b",
        "SECRET": r"\b(?:sk-|AKIA|ghp_|xox|AIza|eyJ)\S+",
    }

    def __init__(self) -> None:
        self.compiled = [(t, re.compile(p)) for t, p in self.PATTERNS.items()]

    def detect(self, text: str):
        out = []
        for t, p in self.compiled:
            for m in p.finditer(text):
                out.append(type("F", (), {"start": m.start(), "end": m.end(), "type": t})())
        return out


def score_pii(name: str, detector, rows) -> dict[str, tuple[float, float, float]]:
    tp, fp, fn = Counter(), Counter(), Counter()
    neg_texts = neg_flagged = 0
    for text, gold, negative in rows:
        found = {(f.start, f.end, f.type) for f in detector.detect(text)}
        if negative:
            neg_texts += 1
            neg_flagged += bool(found)
        for g in gold:
            (tp if g in found else fn)[g[2]] += 1
        for f in found - gold:
            fp[f[2]] += 1
    print(f"\n## PII — {name}")
    print("| type | precision | recall | F1 | n |")
    print("|---|---|---|---|---|")
    res = {}
    for t in TYPES:
        n = tp[t] + fn[t]
        if not n:
            continue
        p = tp[t] / (tp[t] + fp[t]) if tp[t] + fp[t] else 0.0
        r = tp[t] / n
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        res[t] = (p, r, f1)
        print(f"| {t} | {p:.3f} | {r:.3f} | {f1:.3f} | {n} |")
    print(f"false-positive rate on {neg_texts} hard-negative texts: {neg_flagged / max(1, neg_texts):.1%}")
    return res


def score_injection(name: str, detect, rows) -> None:
    by = Counter()
    for r in rows:
        hit = detect(r["text"], r["channel"])
        key = "inj" if r["label"] == "injection" else "ben"
        by[key, "n"] += 1
        by[key, "hit"] += hit
        by[key, r["channel"], "n"] += 1
        by[key, r["channel"], "hit"] += hit
    print(f"\n## Injection — {name}")
    print(f"recall {by['inj', 'hit'] / by['inj', 'n']:.3f} ({by['inj', 'hit']}/{by['inj', 'n']}), "
          f"false-positive rate on hard negatives {by['ben', 'hit'] / by['ben', 'n']:.1%} "
          f"({by['ben', 'hit']}/{by['ben', 'n']})")
    for ch in ("user", "tool", "document"):
        if by["inj", ch, "n"] or by["ben", ch, "n"]:
            print(f"  {ch}: recall {by['inj', ch, 'hit']}/{by['inj', ch, 'n']}, false positives "
                  f"{by['ben', ch, 'hit']}/{by['ben', ch, 'n']}")


def prompt_2000_tokens() -> str:
    para = ("Our quarterly review covers the migration of the billing service, the new onboarding flow and the "
            "support backlog. The team shipped three releases, closed most open tickets and wrote a postmortem "
            "for the outage in March. Next quarter we plan to improve latency, reduce costs by about 12 percent "
            "and hire two engineers. ")
    pii = (" Contact jane.doe@example.com or +49 30 901820 about invoice 2024-118; the refund goes to "
           "DE89 3704 0044 0532 0130 00. ")
    text = (para * 30) + pii + (para * 5)
    return text  # ~2,000 tokens


def _iban_de(n: int) -> str:
    bban = f"370400440{n:013d}"[-18:]
    check = 98 - int("".join(str(int(c, 36)) for c in bban + "DE00")) % 97
    raw = f"DE{check:02d}{bban}"
    return " ".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def prompt_variants(k: int = 64) -> list[str]:
    """``k`` prompts of ~2,000 tokens with different personal data (nothing a cache of validation
    results could have seen): what a guard stage meets on first sight."""
    base = prompt_2000_tokens()
    head, tail = base.partition(" Contact ")[0], base.rpartition("00. ")[2]
    out = []
    for i in range(k):
        pii = (f" Contact jane.doe{i}@example{i % 7}.com or +49 30 9018{20 + i:02d} about invoice 2024-{118 + i}; "
               f"the refund goes to {_iban_de(532013000 + 7919 * i)}. ")
        out.append(head + pii + tail)
    return out


def bench_stage() -> None:
    """What the guard stage adds to a request: ``Guardrails.check_input`` with every detector on (PII
    redaction + injection), one user message of ~2,000 tokens, a different prompt each time."""
    from hyperion_core.guardrails.config import (
        GuardrailPolicy,
        GuardrailsConfig,
        InjectionSettings,
        PiiSettings,
    )
    from hyperion_core.guardrails.engine import Guardrails
    from hyperion_core.pipeline import CHAT, RequestContext
    from hyperion_core.types import Caller, ChatRequest

    cfg = GuardrailsConfig(policies={"all": GuardrailPolicy(pii=PiiSettings(), injection=InjectionSettings())},
                           keys={"k": "all"})
    guards = Guardrails({}, cfg)
    caller = Caller(key_id="k")
    texts = prompt_variants()
    ctx = RequestContext(req=ChatRequest("r", [], caller=caller), kind=CHAT)

    bodies = [json.dumps({"messages": [{"role": "user", "content": t}]}) for t in texts]

    def run(body: str) -> float:
        # the prompt as a door has it: just decoded from the request body (not a string read long ago)
        ctx.req = ChatRequest("r", json.loads(body)["messages"], caller=caller)
        ctx.guardrails = None
        t = time.perf_counter()
        coro = guards.check_input(ctx)
        try:
            coro.send(None)
        except StopIteration:
            pass
        return (time.perf_counter() - t) * 1e6

    run(bodies[0])
    masked = ctx.req.messages[0]["content"]
    assert "<EMAIL_1>" in masked and "<IBAN_1>" in masked and "<PHONE_1>" in masked, masked[-300:]
    base = prompt_2000_tokens()
    plain = [json.dumps({"messages": [{"role": "user", "content": f"Ticket {i}: " + base.partition(" Contact ")[0]
                                       + base.rpartition("00. ")[2]}]}) for i in range(len(texts))]
    for label, batch in (("no personal data in it", plain),
                         ("with an e-mail, a phone number and an IBAN to redact", bodies)):
        samples = sorted(run(body) for rnd in range(8) for body in batch)
        print(f"guard stage (check_input: PII redaction + injection), 2,000-token prompt {label}, "
              f"{len(batch)} different prompts: p50 {statistics.median(samples):.0f} µs, "
              f"p90 {samples[int(len(samples) * 0.9)]:.0f} µs")


def bench_latency() -> None:
    text = prompt_2000_tokens()
    pii, inj = PiiDetector(), InjectionDetector()
    try:
        import tiktoken

        tokens = len(tiktoken.get_encoding("cl100k_base").encode(text))
    except Exception:
        tokens = len(text.split())

    def run() -> None:
        inj.detect(text, "user")
        Masker().mask(text, pii.detect(text))

    for _ in range(50):
        run()
    samples = []
    for _ in range(400):
        t = time.perf_counter()
        run()
        samples.append((time.perf_counter() - t) * 1e6)
    samples.sort()
    only_pii = []
    for _ in range(200):
        t = time.perf_counter()
        pii.detect(text)
        only_pii.append((time.perf_counter() - t) * 1e6)
    only_inj = []
    for _ in range(200):
        t = time.perf_counter()
        inj.detect(text, "user")
        only_inj.append((time.perf_counter() - t) * 1e6)
    print(f"\n## Cost\nprompt: {len(text):,} characters, {tokens:,} tokens (cl100k)")
    print(f"all detectors + masking: p50 {statistics.median(samples):.0f} µs, p90 {samples[int(len(samples) * 0.9)]:.0f} µs"
          f" (PII alone p50 {statistics.median(only_pii):.0f} µs, injection alone p50 {statistics.median(only_inj):.0f} µs)")

    # streaming: the output guard on an answer of one word per chunk (the mock's shape), with placeholders
    m = Masker()
    m.token("EMAIL", "jane.doe@example.com")
    answer = ("Sure. I will write to <EMAIL_1> today and copy the team. " + para_words(60)) * 4
    words = re.findall(r"\s*\S+", answer)
    guard_restore = lambda: StreamGuard(m)  # noqa: E731
    guard_full = lambda: StreamGuard(m, PiiDetector(("EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP", "SECRET")).detect,  # noqa: E731
                                     lambda found, text: [None] * len(found))
    for label, make in (("restore only", guard_restore), ("restore + output PII checks", guard_full)):
        chunks = [ChatChunk(content=w) for w in words]
        best = float("inf")
        for _ in range(20):
            g = make()
            t = time.process_time()
            for c in chunks:
                g(c)
            g.flush()
            best = min(best, (time.process_time() - t) / len(chunks) * 1e6)
        print(f"streaming guard ({label}): {best:.2f} µs CPU per chunk ({len(chunks)} chunks)")


def para_words(n: int) -> str:
    base = "the answer covers the plan for next quarter and the budget for the new service in detail".split()
    return " ".join(base[i % len(base)] for i in range(n)) + ". "


def main() -> None:
    rows = load_pii()
    score_pii("Hyperion built-in", PiiDetector(), rows)
    score_pii("plain keyword regexes", Keywords(), rows)
    try:
        from hyperion_core.guardrails.presidio import PresidioDetector

        score_pii("Presidio pattern recognisers (presidio-analyzer 2.2.366, no NLP model)", PresidioDetector(), rows)
    except Exception as exc:
        print(f"\n## PII — Presidio: not available ({type(exc).__name__}: {exc})")
    inj_rows = [json.loads(x) for x in (DATA / "injection.jsonl").read_text(encoding="utf-8").splitlines()]
    det = InjectionDetector()
    score_injection("Hyperion rules", lambda t, ch: det.detect(t, ch).score >= (0.4 if ch in ("tool", "document") else 0.5),
                    inj_rows)
    kw = re.compile(r"(?i)ignore (?:all )?previous instructions|system prompt|jailbreak|developer mode|\bDAN\b")
    score_injection("keyword list", lambda t, ch: bool(kw.search(t)), inj_rows)
    bench_latency()
    bench_stage()


if __name__ == "__main__":
    main()
