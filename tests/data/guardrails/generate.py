"""Regenerates pii.jsonl: PII in en/de/fr/es templates, spans marked ``[[TYPE|value]]``, and hard
negatives (numbers that look like PII but fail a check). Deterministic (seeded).

    .venv/bin/python tests/data/guardrails/generate.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

R = random.Random(14)


def luhn_complete(prefix: str, length: int) -> str:
    body = prefix + "".join(R.choice("0123456789") for _ in range(length - len(prefix) - 1))
    for d in "0123456789":
        s = body + d
        total = 0
        for i, ch in enumerate(reversed(s)):
            n = int(ch) * (2 if i % 2 else 1)
            total += n - 9 if n > 9 else n
        if total % 10 == 0:
            return s
    raise AssertionError


def card() -> str:
    prefix, length = R.choice([("4", 16), ("51", 16), ("55", 16), ("37", 15), ("6011", 16), ("35", 16)])
    if prefix == "35":
        prefix = "3530"
    d = luhn_complete(prefix, length)
    sep = R.choice(["", " ", "-"])
    if length == 15:
        return sep.join((d[:4], d[4:10], d[10:]))
    return sep.join(d[i : i + 4] for i in range(0, 16, 4))


def bad_card() -> str:
    d = list(card().replace(" ", "").replace("-", ""))
    d[-1] = str((int(d[-1]) + 1) % 10)
    return " ".join("".join(d[i : i + 4]) for i in range(0, len(d), 4))


IBAN_LEN = {"DE": 22, "FR": 27, "ES": 24, "GB": 22, "NL": 18, "IT": 27}


def iban(bad: bool = False) -> str:
    cc = R.choice(list(IBAN_LEN))
    n = IBAN_LEN[cc] - 4
    if cc == "GB":
        bban = "NWBK" + "".join(R.choice("0123456789") for _ in range(n - 4))
    elif cc == "NL":
        bban = "ABNA" + "".join(R.choice("0123456789") for _ in range(n - 4))
    else:
        bban = "".join(R.choice("0123456789") for _ in range(n))
    num = "".join(str(int(c, 36)) for c in bban + cc + "00")
    check = 98 - int(num) % 97
    if bad:
        check = (check + 1) % 97 or 2
    s = f"{cc}{check:02d}{bban}"
    return " ".join(s[i : i + 4] for i in range(0, len(s), 4)) if R.random() < 0.6 else s


def ssn() -> str:
    area = R.choice([R.randint(1, 665), R.randint(667, 899)])
    return f"{area:03d}-{R.randint(1, 99):02d}-{R.randint(1, 9999):04d}"


def email() -> str:
    first = R.choice(["jane", "max", "lea", "pierre", "sofia", "tom", "ana", "li.wei", "o'neil", "m.rossi"])
    last = R.choice(["doe", "mueller", "dubois", "garcia", "smith", "k", "92", "dev"])
    dom = R.choice(["example.com", "mail.de", "exemple.fr", "correo.es", "corp.example.org", "uni-bonn.de"])
    return f"{first}.{last}@{dom}".replace("..", ".")


def phone() -> str:
    return R.choice(["+49 30 901820", "+49 170 1234567", "+33 1 42 68 53 00", "+34 912 345 678", "+44 20 7946 0958",
                     "+1 415 555 2671", "(415) 555-2671", "212-555-0147", "+49 (0)89 12345678", "0044 20 7946 0958"])


def ip() -> str:
    if R.random() < 0.7:
        return ".".join(str(R.randint(1, 254)) for _ in range(4))
    return R.choice(["2001:db8::8a2e:370:7334", "fe80::1ff:fe23:4567:890a", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"])


def secret() -> str:
    alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    r = lambda n: "".join(R.choice(alnum) for _ in range(n))  # noqa: E731
    return R.choice([f"sk-proj-{r(40)}", f"sk-ant-api03-{r(32)}", "AKIA" + "".join(R.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16)),
                     f"ghp_{r(36)}", f"xoxb-{R.randint(10**9, 10**10)}-{r(24)}", f"AIza{r(35)}",
                     f"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOi{r(20)}.{r(43)}"])


T = {
    "EMAIL": ["Please send the report to {v} before Friday.", "Schick die Unterlagen bitte an {v}.",
              "Vous pouvez écrire à {v} pour toute question.", "Escríbeme a {v} cuando puedas."],
    "PHONE": ["You can call me on {v} tomorrow.", "Meine Telefonnummer ist {v}.", "Mon numéro de téléphone : {v}.",
              "Mi teléfono es {v}, llámame."],
    "CARD": ["Charge my card {v} for the order.", "Meine Kreditkarte: {v}", "Ma carte bancaire est {v}.",
             "Mi tarjeta es {v}, gracias."],
    "IBAN": ["Transfer it to IBAN {v} please.", "Bitte überweise auf {v}.", "Mon IBAN : {v}", "Mi IBAN es {v}."],
    "SSN": ["My SSN is {v} for the form.", "Social security number {v} is on file.", "Employee {v} (SSN) joined."],
    "IP": ["The server at {v} keeps timing out.", "Der Host {v} antwortet nicht.", "L'adresse {v} est bloquée.",
           "La IP {v} está en la lista negra."],
    "SECRET": ["Here is my key {v}, why does it fail?", "export OPENAI_API_KEY={v}", "Mein Token lautet {v}.",
               "Utilise la clé {v} pour le test."],
    "DOB": ["I was born on [[DOB|{d}.{m:02d}.{y}]] in Hamburg.", "Date of birth: [[DOB|{y}-{m:02d}-{d:02d}]]",
            "Ich bin am [[DOB|{d}. März {y}]] geboren.", "Je suis née le [[DOB|{d} avril {y}]].",
            "Nací el [[DOB|{d} de mayo de {y}]] en Sevilla.", "DOB [[DOB|{m}/{d}/{y}]], patient intake."],
    "ADDRESS": ["Ship it to [[ADDRESS|221 Baker Street]], London.", "Ich wohne in der [[ADDRESS|Hauptstraße 5]], Berlin.",
                "Livraison au [[ADDRESS|12 rue de la Paix]] à Paris.", "Envíalo a [[ADDRESS|Calle Mayor 15]], Madrid.",
                "Our office moved to [[ADDRESS|1600 Amphitheatre Parkway]].", "Treffpunkt: [[ADDRESS|Lindenweg 12a]]."],
    "NAME": ["My name is [[NAME|Jane Doe]] and I need help.", "Dear Mr. [[NAME|Thompson]], thank you.",
             "Ich heiße [[NAME|Anna Müller]].", "Je m'appelle [[NAME|Claire Dubois]].", "Me llamo [[NAME|Juan García]].",
             "Best regards,\n[[NAME|Peter Novak]]", "Bonjour Mme [[NAME|Lefèvre]], voici le dossier."],
}
GEN = {"EMAIL": email, "PHONE": phone, "CARD": card, "IBAN": iban, "SSN": ssn, "IP": ip, "SECRET": secret}

NEGATIVES = [
    "Order {n} shipped on 2024-03-05; tracking number {m}.", "Version 1.2.3.4 fixes the crash in build 20240501.",
    "The meeting is at 10:30:00 in room 4.12.", "Revenue grew 12.5% to 4,311,250 EUR in Q3 2023.",
    "Use the ratio 16:9 and 1080p for the export.", "Invoice INV-2023-004512 totals 1.234,56 €.",
    "Set timeout=30 and retries=3 in the config.", "The token budget is 128000 and the key size is 2048 bits.",
    "Call the function with key='id' and value=42.", "Das Projekt startet am 01.02.2025 in Raum 3.",
    "La réunion du 12 mars 2024 est reportée.", "El pedido 55512345 llegará el 3 de junio.",
    "ISBN 978-3-16-148410-0 is the second edition.", "Coordinates 48.8566, 2.3522 mark Paris.",
    "Run pip install numpy==1.26.4 then restart.", "The street team met at 5 pm on Main campus.",
    "Dr. No is a 1962 film.", "Please name the file report_final_v2.docx.", "my email address is not needed here",
    "Build 4111-1111 failed with exit code 137.", "Her score was 98 out of 100 in the 2019 exam.",
    "The hash is 9f86d081884c7d659a2feaa0c55ad015 for the test file.", "Password policy: at least 12 characters.",
    "Phone numbers must be validated, e.g. with a library.", "The SSN field is optional in the form.",
    "Port 8080 on localhost is in use.", "Meet me at the Starbucks on 5th Avenue.", "He lives on Baker Street somewhere.",
]


def main() -> None:
    rows = []
    for typ, templates in T.items():
        for i in range(24 if typ in GEN else len(templates) * 3):
            t = templates[i % len(templates)]
            if typ in GEN:
                v = GEN[typ]()
                text = t.replace("{v}", f"[[{typ}|{v}]]")
            elif typ == "DOB":
                text = t.format(d=R.randint(1, 28), m=R.randint(1, 12), y=R.randint(1940, 2005))
            else:
                text = t
            rows.append({"text": text, "lang": ["en", "de", "fr", "es"][i % 4] if typ in GEN else "mixed"})
    for _ in range(24):  # near misses: broken checksums and invalid ranges are not PII
        rows.append({"text": R.choice(["Card {v} was declined.", "Karte {v} abgelehnt."]).format(v=bad_card()),
                     "negative": True})
        rows.append({"text": f"IBAN {iban(bad=True)} looks wrong.", "negative": True})
    rows.append({"text": "SSN 000-12-3456 and 666-12-3456 and 912-34-5678 are invalid.", "negative": True})
    rows.append({"text": "The address 999.1.1.1 and 256.0.0.1 are not IPs.", "negative": True})
    for n in NEGATIVES:
        rows.append({"text": n.format(n=R.randint(10**7, 10**8), m=R.randint(10**9, 10**10)), "negative": True})
    out = Path(__file__).with_name("pii.jsonl")
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} rows -> {out}")


if __name__ == "__main__":
    main()
