"""Generate the bundled support-ticket routing task: train.jsonl, valid.jsonl, test.jsonl.

Each example is a short customer message and exactly one label from a fixed set of eight. The
messages are built from hand-written intent templates, filled with slot values, wrapped in
greetings, sign-offs and neutral context sentences, and roughened with typos and odd casing.

The held-out score is honest because the three splits share no template: every label's
templates are dealt out to train, valid and test before any message is written, and valid and
test also use products, names and cities that never appear in train. A model that only memorised
the training sentences cannot pass the test split; it has to learn what each label means.

Deterministic and stdlib-only: `python generate.py [OUT_DIR]` rewrites the committed files byte
for byte (OUT_DIR defaults to this script's directory).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import tempfile
from pathlib import Path

SEED = 20240611
SIZES = {"train": 300, "valid": 40, "test": 60}
# Per label, how many of its templates each held-out split gets; train gets the rest.
HELD_OUT_TEMPLATES = {"valid": 2, "test": 3}

LABELS = [
    "billing.refund",
    "billing.invoice",
    "account.login",
    "account.delete",
    "shipping.delay",
    "shipping.address",
    "product.defect",
    "other",
]

SYSTEM_PROMPT = """You route customer messages for Larkspur Home, an online shop. Reply with exactly one label from this list and nothing else:
billing.refund: wants money back
billing.invoice: needs an invoice or receipt
account.login: cannot sign in
account.delete: wants the account closed or data erased
shipping.delay: order is late or has not arrived
shipping.address: wants to change where an order goes
product.defect: item is broken, faulty or incomplete
other: anything else"""

# `[a|b]` picks one alternative; `{slot}` is filled from SLOTS. Each template is one intent, and
# its label follows from the message alone under the rules in SYSTEM_PROMPT.
TEMPLATES = {
    "billing.refund": [
        "I was charged twice for order {order}. [Please refund|Can you refund|Refund] the extra {amount}.",
        "I cancelled order {order} but the {amount} was still taken from my card. I want my money back.",
        "I returned the {product} [two weeks ago|last month|on {date}] and [still haven't received|never got] my refund.",
        "Can I get a refund for the {product}? I changed my mind and [sent it back|returned it].",
        "You billed me {amount} after I cancelled my subscription. Please [reverse|refund] the charge.",
        "My refund for order {order} was approved but the money never [showed up|arrived] in my bank account.",
        "There's a duplicate charge of {amount} on my [statement|card], can I [get it back|have it refunded]?",
        "I'd like my money back for the {product}, your warehouse got the return on {date}.",
        "How long does a refund take? I sent the {product} back [last week|{n} days ago].",
        "Please refund {amount} to my card, the discount code was not applied at checkout.",
        "The price of the {product} dropped the day after I bought it. Could you refund the difference?",
        "I was charged {amount} for an order I never placed. [Please return my money.|I want it refunded.]",
        "I [paid|was charged] for express delivery and it came by standard post, so please refund the {amount} I paid for it.",
        "I sent back the {product} and I want the {amount} returned to my card, not store credit.",
        "Your checkout took my payment twice. Please put the second {amount} back on my card.",
        "I was promised a refund of {amount} on the phone [last week|on {date}], where is it?",
        "My order {order} was cancelled by you, so why haven't I been [refunded|paid back] yet?",
    ],
    "billing.invoice": [
        "Could you send me an invoice for order {order}? I need it for my [expenses|expense report].",
        "I need a VAT invoice for the {product} I bought [on {date}|last week].",
        "The invoice for order {order} has the wrong company name. Can you issue a corrected one?",
        "Where can I download the receipt for my {month} [payment|order]?",
        "Please add our tax number to the invoice for order {order}.",
        "My accountant needs a copy of the invoice for the {product} [I bought on {date}|from my last order].",
        "Can I get one invoice covering all my orders from {month}?",
        "The receipt you emailed doesn't show the shipping fee. Please resend it with the full breakdown.",
        "I never got an invoice for order {order}, [only the order confirmation|just a shipping email].",
        "Could you put my company address on the receipt for order {order}?",
        "Is it possible to get the invoice [as a PDF|by email] instead of a link?",
        "I need the invoice for order {order} made out to my employer, not to me.",
        "Please email me a receipt for the {amount} I paid on {date}.",
        "Can you resend the invoice for order {order}? I [deleted|lost] the email.",
        "I run a small business and need proper invoices for every order, starting with {order}.",
        "The total on my invoice says {amount} but I paid less. Could you send a correct invoice?",
        "Do your receipts show VAT? I need one [for my records|for my tax return].",
    ],
    "account.login": [
        "I can't log in to my account, it [keeps saying|says] my password is wrong.",
        "The password reset email never arrives. I've [checked|already checked] my spam folder.",
        "My account got locked after too many sign-in attempts. How do I unlock it?",
        "I'm not getting the [two-factor|verification] code on my phone, so I can't sign in.",
        "I changed my phone number and now I can't receive the login code.",
        "When I try to sign in with {email} it says no account exists, but I've ordered before.",
        "The login page just reloads every time I enter my [details|email and password].",
        "I forgot my password and the reset link says it has expired.",
        "I haven't been able to get into my account since the app update on {date}.",
        "Signing in with Google stopped working for me, it [shows an error|just spins].",
        "Every time I log in I get [kicked out|logged out] again after a few seconds.",
        "How do I reset my password? I [can't remember|don't remember] it.",
        "It says invalid credentials when I sign in, but I'm sure my password is right.",
        "I can't access my account, the app says my session is invalid and sends me back to the login screen.",
        "The sign in button is greyed out so I can't get into my account.",
        "My password reset link takes me to a blank page, so I'm still locked out.",
        "I'm stuck on the login screen, the captcha never accepts my answer.",
    ],
    "account.delete": [
        "Please delete my account and all the data you have about me.",
        "I want to close my account. I don't [shop here|use your store] anymore.",
        "How do I permanently remove my account? I can't find the option anywhere.",
        "Under GDPR I'm asking you to erase all my personal data.",
        "Please close the account registered to {email}.",
        "I'd like my customer profile removed completely, including my order history.",
        "Can you [deactivate and delete|delete] my account? I made it by mistake.",
        "I have two accounts, please delete the one [with|under] {email}.",
        "Remove my account please, I'm moving to another [store|shop].",
        "I want to delete my account but the app tells me to contact support.",
        "When you close my account, please make sure all my data is wiped too.",
        "How long does it take to delete an account after I ask?",
        "Close my account [immediately|today] and confirm by email, please.",
        "I no longer want an account with you. Please remove it and everything linked to it.",
        "Can you get rid of my account? I only want to shop as a guest from now on.",
        "Please erase my profile, saved cards and addresses, I'm [done with|leaving] Larkspur Home.",
        "What do I need to do to have my account deleted for good?",
    ],
    "shipping.delay": [
        "My order {order} was supposed to arrive on {date} and it still hasn't come.",
        "The tracking for order {order} hasn't updated in [a week|{n} days]. Where is my package?",
        "It's been {n} days and my {product} hasn't shipped yet.",
        "When will my order arrive? It has said processing since {date}.",
        "My package is stuck at the depot in {city} according to the tracking.",
        "The delivery date for my {product} keeps getting pushed back.",
        "I ordered the {product} {n} days ago and it's still not here.",
        "Tracking says delivered but order {order} never reached me.",
        "Is there a delay on shipments? Order {order} is [very|really] late.",
        "I need the {product} by Friday, why is it taking so long to ship?",
        "My parcel was meant to come yesterday but the courier never showed up.",
        "Order {order} still shows label created after {n} days.",
        "The estimated delivery date passed on {date} and there's no news about my order.",
        "Where is my parcel? Order {order} should have been here [last week|days ago].",
        "Still waiting for the {product} I ordered on {date}, nothing has turned up.",
        "The courier has had my package for {n} days and it isn't moving.",
        "My order {order} is overdue and the tracking link shows no progress.",
    ],
    "shipping.address": [
        "I entered the wrong delivery address for order {order}. Can you change it to {street}?",
        "Please ship my {product} to my work address instead: {street}, {city}.",
        "I'm moving next week. Can you update the shipping address on order {order}?",
        "Can I change where order {order} gets delivered? It hasn't shipped yet.",
        "I made a typo in my street name, it should be {street}.",
        "Please send order {order} to {city} instead of my home address.",
        "The address on my order is my old flat. Can you correct it before it ships?",
        "Can the courier [deliver|drop off] the {product} at my neighbour's place, {street}?",
        "I forgot to add my apartment number to the delivery address for order {order}.",
        "How do I update the delivery address on an order I already placed?",
        "Please redirect my parcel to the pickup point in {city}.",
        "The postcode on order {order} is wrong, can you fix it to the right one?",
        "I'd like order {order} to go to my parents' house at {street} instead.",
        "Wrong house number on order {order}! It should go to {street}.",
        "Can you change the delivery for my {product} to {street}, {city}? I won't be home.",
        "Please update my order {order} so it's delivered to my office in {city}.",
        "I need to swap the shipping address on my latest order to {street}.",
    ],
    "product.defect": [
        "The {product} I received is broken, it [cracked|snapped] the first time I used it.",
        "My {product} stopped working after [two days|a week|{n} days].",
        "The {product} arrived with a crack in the casing. Can I get a replacement?",
        "The {product} won't turn on at all, I've tried [different sockets|another socket].",
        "One of the parts was missing from the {product} box.",
        "The {product} makes a loud grinding noise and smells like burning.",
        "My {product} fell apart after one week of normal use.",
        "The {product} sparks when I plug it in. [Can you send a new one?|I'm scared to use it.]",
        "The {product} is faulty, the power button doesn't do anything.",
        "The {product} came scratched and dented. I'd like it repaired or replaced.",
        "Is the {product} covered by warranty? It's already [falling apart|coming apart].",
        "The {product} overheats and shuts itself off after a few minutes.",
        "The {product} doesn't work properly out of the box. What should I do?",
        "The {product} I got is defective, half of it doesn't work.",
        "My new {product} keeps [cutting out|switching off] on its own.",
        "The {product} was damaged inside the box when I opened it.",
        "The cable of the {product} is frayed and the plug is loose.",
    ],
    "other": [
        "Do you have a physical store in {city}?",
        "What are your customer service hours on [weekends|Sundays]?",
        "Are you hiring? I'd love to work for Larkspur Home.",
        "I just wanted to say thanks, the {product} is [great|fantastic]!",
        "Do you sell gift cards?",
        "Can I become a reseller of your products in {city}?",
        "Is the {product} available in [black|white|green]?",
        "Will the {product} be back in stock soon?",
        "How do I unsubscribe from your newsletter?",
        "Can I use two discount codes on one order?",
        "Do you have a student discount?",
        "I'd like to leave a review for the {product} but can't find the page.",
        "What's the difference between the {product} and the {product2}?",
        "Do you have a loyalty scheme or points card?",
        "I want to suggest a product you should stock. Who do I talk to?",
        "Does the {product} come with a plug for [Europe|the US]?",
        "Are your prices going up next month?",
    ],
}

# Slot values. Held-out splits (valid, test) draw from a separate pool, so a name, city or
# product seen in training is never the cue that gives a held-out message away.
SLOTS = {
    "product": {
        "train": [
            "desk lamp",
            "kettle",
            "wireless mouse",
            "coffee grinder",
            "bluetooth speaker",
            "blender",
            "electric toothbrush",
            "hair dryer",
            "space heater",
            "keyboard",
        ],
        "held_out": ["air fryer", "webcam", "toaster", "tower fan", "rice cooker", "stand mixer"],
    },
    "city": {
        "train": ["Leeds", "Bristol", "Glasgow", "Cardiff", "Norwich", "York"],
        "held_out": ["Dundee", "Exeter", "Bath", "Derby"],
    },
    "name": {
        "train": ["Priya", "Tom", "Aisha", "Marek", "Chloe", "Daniel", "Ines", "Sam"],
        "held_out": ["Kofi", "Lena", "Ravi", "Ruth", "Owen"],
    },
    "street": {
        "train": ["14 Mill Lane", "7 Station Road", "22 Church Street", "3 Elm Close", "58 High Street"],
        "held_out": ["9 Quarry Road", "41 Park Avenue", "16 Ash Grove"],
    },
    "month": {
        "train": ["January", "March", "April", "June", "August", "October"],
        "held_out": ["February", "May", "September", "November"],
    },
}

GREETINGS = ["", "", "", "Hi,", "Hello,", "Hey there,", "Good morning,", "Hi team,", "Dear support,", "hello"]
SIGN_OFFS = [
    "",
    "",
    "",
    "Thanks.",
    "Thank you!",
    "Cheers, {name}",
    "Regards, {name}",
    "thx",
    "Please help.",
    "Thanks in advance.",
]
# Label-neutral sentences: they add length and distraction without changing the answer.
CONTEXT = [
    "Writing from my phone, sorry.",
    "I've been a customer for {n} years.",
    "This is my second message about this.",
    "My name is {name}.",
    "Sorry if this is the wrong place to ask.",
    "I looked at the help pages first.",
    "Quick question.",
    "I'm a bit frustrated, to be honest.",
    "I hope someone can help.",
]


def slot_values(rng: random.Random, pool: str) -> dict[str, str]:
    """One customer's details, shared by every sentence of their message so they agree."""
    product = rng.choice(SLOTS["product"][pool])
    name = rng.choice(SLOTS["name"][pool])
    return {
        "product": product,
        "product2": rng.choice([p for p in SLOTS["product"][pool] if p != product]),
        "order": f"#{rng.randint(10000, 99999)}",
        "amount": rng.choice(["£", "$", "€"]) + rng.choice([str(rng.randint(5, 250)), f"{rng.randint(5, 250)}.99"]),
        "date": f"{rng.randint(1, 28)} {rng.choice(SLOTS['month'][pool])}",
        "n": str(rng.randint(3, 12)),
        "name": name,
        "email": f"{name.lower()}{rng.randint(1, 99)}@example.com",
        **{slot: rng.choice(SLOTS[slot][pool]) for slot in ("city", "street", "month")},
    }


def fill(template: str, rng: random.Random, values: dict[str, str]) -> str:
    """Expand `[a|b]` alternatives, then fill each `{slot}` from `values`."""
    text = re.sub(r"\[([^\]]*)\]", lambda m: rng.choice(m.group(1).split("|")), template)
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], text)


def add_typo(text: str, rng: random.Random) -> str:
    """Swap two adjacent letters inside one longer word, the commonest real typo."""
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if not candidates:
        return text
    i = rng.choice(candidates)
    w = words[i]
    j = rng.randint(1, len(w) - 3)
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    return " ".join(words)


def write_message(template: str, rng: random.Random, pool: str) -> str:
    """One user message: the intent sentence plus optional wrapping and noise."""
    values = slot_values(rng, pool)
    parts = [fill(template, rng, values)]
    if rng.random() < 0.4:
        context = fill(rng.choice(CONTEXT), rng, values)
        parts.insert(rng.choice([0, len(parts)]), context)
    greeting, sign_off = rng.choice(GREETINGS), fill(rng.choice(SIGN_OFFS), rng, values)
    text = " ".join(p for p in [greeting, *parts, sign_off] if p)
    if rng.random() < 0.25:
        text = add_typo(text, rng)
    casing = rng.random()
    if casing < 0.2:
        text = text.lower()
    elif casing < 0.23:
        text = text.upper()
    if rng.random() < 0.15:
        text = text.rstrip(".!?")
    return text


def split_templates(rng: random.Random) -> dict[str, dict[str, list[str]]]:
    """Deal each label's templates out to the splits, so no template is in two splits."""
    dealt: dict[str, dict[str, list[str]]] = {}
    for label in LABELS:
        templates = list(TEMPLATES[label])
        rng.shuffle(templates)
        test, valid = HELD_OUT_TEMPLATES["test"], HELD_OUT_TEMPLATES["valid"]
        dealt[label] = {
            "test": templates[:test],
            "valid": templates[test : test + valid],
            "train": templates[test + valid :],
        }
    return dealt


def label_counts(total: int, rng: random.Random) -> dict[str, int]:
    """Split `total` as evenly as possible over the labels; which labels get the extra one is random."""
    base, extra = divmod(total, len(LABELS))
    lucky = rng.sample(LABELS, extra)
    return {label: base + (label in lucky) for label in LABELS}


def build_split(split: str, templates: dict[str, list[str]], rng: random.Random, seen: set[str]) -> list[dict]:
    pool = "train" if split == "train" else "held_out"
    rows = []
    for label, count in label_counts(SIZES[split], rng).items():
        made = 0
        while made < count:
            # Cycle through the templates so each is used about equally often.
            text = write_message(templates[label][made % len(templates[label])], rng, pool)
            key = text.lower()
            if key in seen:  # a message must never occur twice, in one split or across splits
                continue
            seen.add(key)
            rows.append(
                {
                    "messages": [
                        {"role": "system", "content": SYSTEM_PROMPT},
                        {"role": "user", "content": text},
                        {"role": "assistant", "content": label},
                    ]
                }
            )
            made += 1
    rng.shuffle(rows)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write atomically, so an interrupted run never leaves a half-written dataset behind."""
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def generate(out_dir: Path) -> dict[str, list[dict]]:
    rng = random.Random(SEED)
    dealt = split_templates(rng)
    seen: set[str] = set()
    splits = {}
    for split in ("train", "valid", "test"):
        splits[split] = build_split(split, {label: dealt[label][split] for label in LABELS}, rng, seen)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        write_jsonl(out_dir / f"{split}.jsonl", rows)
    return splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "out_dir",
        nargs="?",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="where to write train/valid/test.jsonl (default: next to this script)",
    )
    splits = generate(parser.parse_args().out_dir)
    print(", ".join(f"{name}: {len(rows)}" for name, rows in splits.items()))


if __name__ == "__main__":
    main()
