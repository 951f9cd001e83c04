"""A synthetic policy corpus for the retrieval benchmark: seeded, any size, realistic enough.

The documents read like examples/policies (Northwind Freight Lines: load approval by
weight, reefer setpoints, hazmat, service SLAs, escalation contacts, detention, fuel cards,
repairs, claims, border crossings, check-in) but are generated: regional, terminal and
customer variants of those topics, with people, places, customers, commodities, figures and
dates drawn from lists. That gives the keyword index what a real collection gives it: a few
hundred domain words in most chunks and a long tail of names and numbers that only a few
chunks share, so IDF weights and posting lists behave as in a real one, and the vocabulary
keeps growing with the corpus instead of stopping at the templates' words.

About one document in seven also has a superseded older version (with a declared end date)
and one in twenty an announced future version, so the in-force date filter that every
search applies has points to reject, as it does in production.

Every section is short enough to be exactly one chunk under the default chunk settings (at
most 120 words, well under the 254 tokens all-MiniLM-L6-v2 reads), so `n_chunks` sections
make `n_chunks` chunks and the benchmark controls the collection's size exactly.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from itertools import accumulate
from pathlib import Path

import yaml

from retrieval.chunking import section_context
from retrieval.documents import Document, FrontMatter, Section, slug

_MIN_SECTIONS, _MAX_SECTIONS = 4, 12
_MIN_WORDS, _MAX_WORDS = 30, 120
_SUPERSEDED_SHARE = 0.15  # documents that also have an older version, ended
_FUTURE_SHARE = 0.05  # documents that also have a newer version, not yet in force
_INTRANET = "https://intranet.northwind.example/policies/"

# --- What the documents talk about ----------------------------------------------------------

REGIONS = (
    "Great Lakes", "Central", "Southeast", "Northeast", "Mid-Atlantic", "Gulf Coast",
    "Mountain", "Pacific Northwest", "Southwest", "Plains", "Ohio Valley", "Carolinas",
)  # fmt: skip
CITIES = (
    "Toledo", "Gary", "Fort Wayne", "Dayton", "Akron", "Lansing", "Grand Rapids", "Kalamazoo",
    "Peoria", "Rockford", "Joliet", "Springfield", "Des Moines", "Cedar Rapids", "Davenport",
    "Omaha", "Lincoln", "Wichita", "Topeka", "Tulsa", "Amarillo", "Lubbock", "Laredo",
    "El Paso", "San Antonio", "Waco", "Shreveport", "Baton Rouge", "Mobile", "Pensacola",
    "Jacksonville", "Savannah", "Macon", "Augusta", "Columbia", "Charlotte", "Greensboro",
    "Roanoke", "Richmond", "Harrisburg", "Allentown", "Scranton", "Albany", "Syracuse",
    "Rochester", "Buffalo", "Erie", "Youngstown", "Wheeling", "Lexington", "Louisville",
    "Evansville", "Knoxville", "Chattanooga", "Memphis", "Little Rock", "Springdale",
    "Joplin", "Sioux Falls", "Fargo", "Duluth", "Green Bay", "Appleton", "Madison",
    "Eau Claire", "Billings", "Boise", "Spokane", "Yakima", "Tacoma", "Eugene", "Medford",
    "Reno", "Fresno", "Stockton", "Bakersfield", "Tucson", "Flagstaff", "Albuquerque",
    "Pueblo", "Cheyenne", "Casper", "Ogden", "Provo", "Bangor", "Portland", "Manchester",
    "Worcester", "Hartford", "Trenton", "Wilmington", "Norfolk", "Raleigh", "Fayetteville",
    "Tallahassee", "Ocala", "Lakeland", "Gainesville", "Montgomery", "Tupelo", "Jackson",
)  # fmt: skip
FIRST_NAMES = (
    "Maria", "James", "Aisha", "Tomasz", "Keisha", "Luis", "Priya", "Derek", "Hannah", "Omar",
    "Grace", "Viktor", "Tanya", "Marcus", "Elena", "Dwayne", "Sofia", "Rahul", "Brenda",
    "Kenji", "Fatima", "Colin", "Rosa", "Andre", "Megan", "Yusuf", "Carla", "Trevor", "Nadia",
    "Gustavo", "Leah", "Bogdan", "Shanice", "Felix", "Ingrid", "Rashad", "Paula", "Dmitri",
    "Alicia", "Hector", "Wendy", "Samir", "Joanna", "Curtis", "Mei", "Roberto", "Danielle",
    "Kwame", "Irene", "Stefan", "Lorena", "Travis", "Ayumi", "Desmond", "Beatriz", "Ron",
)  # fmt: skip
LAST_NAMES = (
    "Okafor", "Lindqvist", "Delgado", "Kowalski", "Nguyen", "Brennan", "Haddad", "Patel",
    "Moreau", "Johansson", "Castillo", "Whitfield", "Abernathy", "Sato", "Mbeki", "Fischer",
    "Romero", "Kaminski", "Osei", "Gallagher", "Novak", "Duarte", "Hargrove", "Iyer", "Volkov",
    "Esposito", "Mendez", "Thibodeaux", "Larsen", "Achebe", "Quinlan", "Petrov", "Salazar",
    "Underwood", "Baptiste", "Oyelaran", "Kessler", "Marchetti", "Yamamoto", "Brandt",
    "Ferreira", "Holloway", "Rasmussen", "Tremblay", "Vasquez", "Winslow", "Zielinski",
    "Cortez", "Beaumont", "Lindgren", "Mwangi", "Pruitt", "Szabo", "Acosta", "Draper",
)  # fmt: skip
COMPANY_NAMES = (
    "Harlow", "Brightwater", "Cedar Ridge", "Bluestem", "Ironwood", "Maple Hollow",
    "Northgate", "Silverline", "Prairie Sun", "Lakeshore", "Redwood", "Granite Peak",
    "Sunfield", "Oakmont", "Riverbend", "Copperleaf", "Westbrook", "Eastfield", "Pinecrest",
    "Stonebridge", "Goldcrest", "Willow Creek", "Summit", "Keystone", "Frontier", "Heartland",
    "Clearwater", "Blue Heron", "Red Barn", "Twin Oaks", "Meridian", "Crescent", "Highland",
    "Pioneer", "Lone Star", "Bayview", "Millbrook", "Fairhaven", "Kingsley", "Ashford",
)  # fmt: skip
COMPANY_KINDS = (
    "Foods", "Dairy", "Farms", "Pharma", "Steel", "Paper", "Chemicals", "Beverages", "Produce",
    "Plastics", "Automotive", "Lumber", "Electronics", "Home Goods", "Pet Supply", "Bakery",
    "Meats", "Packaging", "Furniture", "Appliances", "Tire", "Glass", "Textiles", "Seafood",
    "Nursery", "Brewing", "Cosmetics", "Hardware", "Frozen Foods", "Grain",
)  # fmt: skip
COMMODITIES = (
    "ice cream", "frozen vegetables", "frozen pizza", "fresh chicken", "ground beef",
    "pork loins", "fresh salmon", "shrimp", "yogurt", "butter", "cheese", "shell eggs",
    "milk", "bagged salad", "apples", "berries", "avocados", "tomatoes", "potatoes", "onions",
    "citrus", "bananas", "cut flowers", "potted plants", "vaccines", "insulin", "blood plasma",
    "chocolate", "candy", "wine", "craft beer", "bottled water", "soft drinks", "bread",
    "tortillas", "deli meats", "hummus", "fresh pasta", "sushi rice", "frozen fries",
    "paper rolls", "steel coils", "lumber", "drywall", "tires", "auto parts", "appliances",
    "furniture", "electronics", "pet food", "fertilizer", "seed corn", "cotton bales",
)  # fmt: skip
HAZMAT = (
    ("gasoline", "UN1203", "3"), ("diesel fuel", "UN1202", "3"), ("propane", "UN1075", "2.1"),
    ("anhydrous ammonia", "UN1005", "2.2"), ("sulfuric acid", "UN1830", "8"),
    ("sodium hydroxide solution", "UN1824", "8"), ("hydrochloric acid", "UN1789", "8"),
    ("paint", "UN1263", "3"), ("ethanol", "UN1170", "3"), ("isopropanol", "UN1219", "3"),
    ("acetone", "UN1090", "3"), ("lithium ion batteries", "UN3480", "9"),
    ("hydrogen peroxide", "UN2014", "5.1"), ("ammonium nitrate", "UN1942", "5.1"),
    ("chlorine", "UN1017", "2.3"), ("compressed oxygen", "UN1072", "2.2"),
    ("methanol", "UN1230", "3"), ("toluene", "UN1294", "3"), ("aerosols", "UN1950", "2.1"),
    ("dry ice", "UN1845", "9"), ("sodium hypochlorite", "UN1791", "8"),
    ("kerosene", "UN1223", "3"), ("acetylene", "UN1001", "2.1"),
    ("calcium hypochlorite", "UN2880", "5.1"), ("formaldehyde solution", "UN2209", "8"),
)  # fmt: skip
PORTS = (
    "Ambassador Bridge", "Blue Water Bridge", "Peace Bridge", "Lewiston-Queenston Bridge",
    "Champlain", "Derby Line", "Sweetgrass", "Pembina", "Blaine Pacific Highway",
    "World Trade Bridge", "Colombia Solidarity Bridge", "Pharr-Reynosa Bridge",
    "Ysleta-Zaragoza Bridge", "Santa Teresa", "Nogales Mariposa", "Otay Mesa", "Calexico East",
)  # fmt: skip
EQUIPMENT = (
    "53 ft dry van", "53 ft reefer", "48 ft flatbed", "step deck", "conestoga", "tanker",
    "lowboy", "day cab", "sleeper tractor", "pup trailer", "intermodal chassis",
    "curtain side trailer", "liftgate straight truck",
)  # fmt: skip
ROLES = (
    "dispatcher", "shift lead", "operations manager", "on-call supervisor", "safety manager",
    "terminal manager", "driver manager", "account manager", "claims adjuster",
    "fleet maintenance manager", "compliance officer", "hazmat coordinator",
    "service desk agent", "billing specialist", "customs broker liaison", "yard supervisor",
)  # fmt: skip
DESKS = (
    "Dispatch desk", "Permits Desk", "Reefer Desk", "Service desk", "Claims desk",
    "Customs desk", "Safety line", "Fleet maintenance", "Fuel card support", "Cargo security",
    "Billing desk", "Driver support",
)  # fmt: skip
SYSTEMS = (
    "the TMS", "the Driver app", "the claims portal", "the fuel card portal",
    "the yard management system", "the ELD", "the service desk queue", "the customer portal",
    "the telematics dashboard", "the permits tracker",
)  # fmt: skip
TIERS = ("Platinum", "Gold", "Silver", "Bronze", "Standard")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
AUDIENCES = ("all", "dispatch", "drivers", "service", "safety", "billing", "maintenance")
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip


SITE_KINDS = (
    "distribution center", "cold storage", "cross-dock", "industrial park", "rail yard",
    "plant", "warehouse",
)  # fmt: skip

# The long tail of a real collection: customers, sites and family names that only a few
# chunks share. Pseudo-words made of syllables, drawn with Zipf weights (1 / rank), so the
# vocabulary keeps growing with the corpus, ever more slowly, as Heaps' law says it does.
_TAIL_SIZE = 40_000
_ONSETS = (
    "b", "br", "c", "ch", "cl", "d", "dr", "f", "fl", "g", "gr", "h", "j", "k", "l", "m", "n",
    "p", "pr", "qu", "r", "s", "sh", "st", "t", "tr", "v", "w", "y", "z",
)  # fmt: skip
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ie", "ou", "y")
_CODAS = ("", "n", "r", "l", "s", "t", "m", "nd", "rk", "ll", "th", "x", "ck", "rn", "st")


@cache
def _tail_names() -> tuple[tuple[str, ...], tuple[float, ...]]:
    """The tail's names, most common first, and their cumulative Zipf weights."""
    rng = random.Random(8)  # noqa: S311 (fixed, so every corpus seed shares one tail)
    names: dict[str, None] = {}
    while len(names) < _TAIL_SIZE:
        syllables = (
            rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
            for _ in range(rng.choice((2, 2, 3)))
        )
        names["".join(syllables).capitalize()] = None
    return tuple(names), tuple(accumulate(1 / rank for rank in range(1, _TAIL_SIZE + 1)))


def _rare_name(rng: random.Random) -> str:
    names, cumulative = _tail_names()
    return rng.choices(names, cum_weights=cumulative)[0]


# --- Slots: `{kind}` or `{kind2}` in a template, drawn once per section -------------------------


def _company(rng: random.Random) -> str:
    name = rng.choice(COMPANY_NAMES) if rng.random() < 0.5 else _rare_name(rng)
    return f"{name} {rng.choice(COMPANY_KINDS)}"


def _person(rng: random.Random) -> str:
    family = rng.choice(LAST_NAMES) if rng.random() < 0.5 else _rare_name(rng)
    return f"{rng.choice(FIRST_NAMES)} {family}"


def _money(rng: random.Random) -> str:
    amount = rng.choice((50, 75, 100, 150, 250, 300, 400, 500, 750)) * rng.choice((1, 2, 5, 10))
    return f"${amount:,}"


def _hazmat(rng: random.Random) -> str:
    name, un, hazard_class = rng.choice(HAZMAT)
    return f"{name} ({un}, Class {hazard_class})"


def _clock(rng: random.Random) -> str:
    return f"{rng.randrange(0, 24):02d}:{rng.choice((0, 15, 30, 45)):02d}"


def _day(rng: random.Random) -> str:
    return f"{rng.choice(MONTHS)} {rng.randint(1, 28)}, {rng.randint(2023, 2026)}"


_SLOT_MAKERS: dict[str, Callable[[random.Random], str]] = {
    "region": lambda rng: rng.choice(REGIONS),
    "city": lambda rng: rng.choice(CITIES),
    "company": _company,
    "person": _person,
    "site": lambda rng: f"{_rare_name(rng)} {rng.choice(SITE_KINDS)}",
    "email": lambda rng: (
        f"{rng.choice(FIRST_NAMES)[0].lower()}{rng.choice(LAST_NAMES).lower()}@example.com"
    ),
    "role": lambda rng: rng.choice(ROLES),
    "desk": lambda rng: rng.choice(DESKS),
    "system": lambda rng: rng.choice(SYSTEMS),
    "ext": lambda rng: str(rng.randint(4100, 4899)),
    "phone": lambda rng: f"1-800-555-{rng.randint(100, 999):04d}",
    "mobile": lambda rng: f"{rng.randint(201, 989)}-555-{rng.randint(100, 999):04d}",
    "weight": lambda rng: f"{rng.randrange(10_000, 48_001, 250):,}",
    "kweight": lambda rng: f"{rng.randint(12, 47)}k",
    "smallweight": lambda rng: f"{rng.randrange(250, 2_001, 50):,}",
    "axleweight": lambda rng: f"{rng.randrange(12_000, 34_001, 500):,}",
    "money": _money,
    "hours": lambda rng: str(rng.choice((1, 2, 3, 4, 6, 8, 12, 24, 36, 48, 72))),
    "minutes": lambda rng: str(rng.choice((5, 10, 15, 20, 30, 45, 60, 90))),
    "days": lambda rng: str(rng.choice((1, 2, 3, 5, 7, 10, 14, 30, 60, 90))),
    "count": lambda rng: str(rng.randint(2, 9)),
    "percent": lambda rng: str(rng.randint(2, 25)),
    "temp": lambda rng: f"{rng.randint(-20, 60)}°F",
    "deviation": lambda rng: f"±{rng.randint(1, 5)}°F",
    "commodity": lambda rng: rng.choice(COMMODITIES),
    "hazmat": _hazmat,
    "port": lambda rng: rng.choice(PORTS),
    "equipment": lambda rng: rng.choice(EQUIPMENT),
    "tier": lambda rng: rng.choice(TIERS),
    "priority": lambda rng: f"P{rng.randint(1, 4)}",
    "unit": lambda rng: str(rng.randint(1000, 9999)),
    "weekday": lambda rng: rng.choice(WEEKDAYS),
    "clock": _clock,
    "day": _day,
    "code": lambda rng: (
        f"{rng.choice('ABDEFHKLMRSTW')}{rng.choice('ACDELMPRSTX')}-{rng.randint(10, 99)}"
    ),
    "form": lambda rng: (
        f"{rng.choice(('OPS', 'SAF', 'CLM', 'FLT', 'HR', 'CUS'))}-{rng.randint(100, 499)}"
    ),
    "miles": lambda rng: str(rng.choice((10, 25, 50, 75, 100, 150, 250, 300, 500))),
    "speed": lambda rng: str(rng.choice((45, 55, 60, 62, 65, 68))),
    "version": lambda rng: str(rng.randint(2, 9)),
}


class _Slots(dict[str, str]):
    """Values for one section's templates: each slot drawn once, so a section stays coherent.

    `{city}` and `{city2}` are two draws of the same kind.
    """

    def __init__(self, rng: random.Random, fixed: dict[str, str]) -> None:
        super().__init__(fixed)
        self._rng = rng

    def __missing__(self, key: str) -> str:
        value = _SLOT_MAKERS[key.rstrip("0123456789")](self._rng)
        self[key] = value
        return value


# --- Topics: headings and the sentences that may appear under each ------------------------------


@dataclass(frozen=True)
class _Topic:
    title: str
    tags: tuple[str, ...]
    audiences: tuple[str, ...]
    sections: dict[str, tuple[str, ...]]  # heading -> sentence templates, in reading order


# One topic per `#`: its tags and audiences, then `##` headings, each with the sentence
# templates that may appear under it (`*` starts one; indented lines continue it, on a new
# line when they are a table row or a list item).
_TOPICS_TEXT = """
# Load Approval Thresholds
tags: dispatch, loads, approvals
audiences: dispatch, all
## Purpose and scope
* This policy sets out who must approve a load before a driver is dispatched from the {city}
  terminal.
* It applies to every load tendered to the {region} region, on company tractors and with leased
  owner-operators alike.
* All weights are the gross cargo weight on the bill of lading (BOL), not including tractor or
  trailer tare.
* If the shipper has not stated a weight, the {role} must obtain one in writing before the load
  can be approved.
* Loads for {company} follow this policy unless their account addendum says otherwise.
## Approval by weight
* The approver is set by the heaviest cargo weight the trailer will carry at any point on the
  trip.
* | Cargo weight | Who approves | Where to reach them |
  |---|---|---|
  | Up to {weight} lb | Dispatcher assigned to the load | n/a |
  | {weight2} lb and over | {role} | ext. {ext} |
* Loads of {weight3} lb or more on a {equipment} also need the {role2} at ext. {ext2}.
* A dispatcher may never approve their own load above {weight} lb, even when covering as shift
  lead.
* In that case the {role3} approves and records the reason in {system}.
## Multi-stop and consolidated loads
* For loads with more than one pickup, add up the cargo weight after the last pickup and before
  the first delivery.
* That peak figure decides the approval tier.
* Consolidated freight for {company} and {company2} on one trailer is approved by the {role} at
  ext. {ext}.
* Each stop is listed in {system} with its own weight, so the reviewer can check the peak.
## Reweighs and scale tickets
* If a certified scale ticket differs from the BOL by more than {smallweight} lb, the load must be
  re-approved at the tier that matches the scale weight.
* The driver sends a photo of the scale ticket through {system} and waits for the new approval
  before leaving the scale.
* Scales at the {city} terminal are certified every {days} days; {person} keeps the certificates.
* A reweigh costs up to {money} and is paid on the fuel card under code {code}.
## Overweight permits
* A permit is required whenever the loaded truck will exceed 80,000 lb gross vehicle weight or
  {axleweight} lb on a tandem axle group.
* Request permits from the Permits Desk (ext. {ext}, permits@example.com) at least {count}
  business days before pickup.
* Permit fees up to {money} per trip are approved by the Permits Desk; higher fees also need the
  {role}'s sign-off.
* The driver carries the permit in the cab and follows its route and travel-time conditions
  exactly.
## Approval timing and records
* Approval must be entered in {system} before the driver is dispatched.
* Outside business hours an approver may give approval by phone; the approver confirms it in
  writing within {hours} hours.
* A load dispatched without a recorded approval is reviewed by the {role} within {days} days.
* Repeated misses are handled under form {form} and may lead to retraining.

# Reefer Temperature Control
tags: reefer, temperature, service
audiences: service, drivers, all
## Scope
* This policy covers every temperature-controlled load moved out of the {city} terminal.
* It is used by drivers, dispatchers and the agents at the Reefer Desk (ext. {ext}, staffed 24/7).
* The setpoint written on the bill of lading always overrides the table in this policy.
* If the BOL and the shipper's instructions disagree, the driver must not leave until the Reefer
  Desk confirms the setpoint.
## Setpoints by commodity
* Use these setpoints when the BOL gives a commodity but no setpoint.
* | Commodity | Setpoint | Allowed deviation |
  |---|---|---|
  | {commodity} | {temp} | {deviation} |
  | {commodity2} | {temp2} | {deviation2} |
  | {commodity3} | {temp3} | {deviation3} |
* Loads of {commodity} for {company} run in continuous mode, never cycle-sentry.
* Mixed loads take the setpoint of the most sensitive product on board.
## Pre-cooling and loading
* Pre-cool the trailer to the setpoint for at least {minutes} minutes before the doors open at the
  shipper.
* Record the pulp temperature of {count} cases from the front, middle and rear of the load in
  {system}.
* Refuse product that is more than {deviation} off the setpoint and call the Reefer Desk at ext.
  {ext}.
* Keep the doors closed between pallets when the dock at {company} has no seal.
## Alarms and excursions
* An alarm code {code} means the return-air temperature has left the allowed range.
* The driver calls the Reefer Desk within {minutes} minutes of the alarm and sends a photo of the
  unit display.
* The desk opens a {priority} ticket and tells {company} within {minutes2} minutes.
* If the unit cannot hold temperature for {hours} hours, the {role} arranges a transfer to a spare
  {equipment}.
## Download and records
* Download the unit's temperature record at delivery and attach it to the load in {system}.
* Records are kept for {days} days, or longer if a claim is open.
* {person} at the Reefer Desk audits a sample of downloads every {weekday}.

# Hazmat Handling
tags: hazmat, safety, drivers
audiences: drivers, safety, dispatch
## Who may haul hazmat
* Only drivers with a current hazmat endorsement and Northwind hazmat training in the last {days}
  days may haul placarded loads.
* The {role} checks the endorsement in {system} before the load is assigned.
* Loads of {hazmat} from the {city} terminal also need the {role2}'s approval at ext. {ext}.
## Placards and papers
* Shipping papers for {hazmat} must be within the driver's reach, on the seat or in the door
  pouch.
* Placard on all four sides once the aggregate gross weight of placarded materials reaches
  {weight} lb.
* The emergency response number on the papers is {phone}, answered 24 hours a day.
* Missing or wrong placards are reported to the hazmat coordinator under form {form}.
## Routing and parking
* Hazmat loads follow the route in {system}; avoid tunnels and city centers unless the route says
  otherwise.
* Do not park within {miles} feet of an open fire or in a residential street with a placarded
  trailer.
* Stops longer than {hours} hours with {hazmat} need the on-call supervisor's agreement.
* Loads to {company} use the designated gate on the east side of the site.
## Spills and leaks
* If a load of {hazmat} leaks, move upwind, keep people away and call 911, then the safety line at
  {phone}.
* Do not try to stop a leak unless trained and equipped for that material.
* The safety manager, {person}, files the federal incident report within {days} days.
* Photos and the BOL are uploaded to {system} as soon as it is safe.
## Segregation
* Never load {hazmat} together with {hazmat2} in one trailer.
* Keep oxidizers at least {count} pallets away from flammable liquids, with a bulkhead where the
  trailer allows.
* When in doubt, call the hazmat coordinator at ext. {ext} before loading.

# Service Level Agreements
tags: service, sla, tickets
audiences: service, all
## Scope
* These targets apply to every service desk ticket for {tier} customers in the {region} region.
* Customer contracts may set tighter targets; for {company} the contract wins where it does.
* Priorities are defined in the ticket priorities policy and set by the service desk agent at
  intake.
## Response times
* The response time runs from ticket creation to the first meaningful contact with the customer.
* | Priority | First response | Clock |
  |---|---|---|
  | P1 | {minutes} minutes | 24/7 |
  | P2 | {hours} hours | 24/7 |
  | P3 | {hours2} business hours | Business hours |
* An automatic acknowledgement does not count as a response.
* {tier} accounts get a named agent, currently {person} (ext. {ext}).
## Resolution targets
* A {priority} ticket is resolved within {hours} hours or a permanent plan is agreed and recorded.
* Tickets about {commodity} loads that are out of temperature are always P1.
* If a target is missed, the {role} calls the customer the same day and records why in {system}.
## Service credits
* When more than {percent}% of a month's tickets miss their target, {company} earns a service
  credit of {money}.
* Credits are applied to the next invoice by the billing specialist, {person}.
* Credits are not due for delays caused by weather, customs holds or the customer's own dock.
## Coverage hours
* P1 and P2 tickets are covered 24 hours a day, 7 days a week, including holidays.
* P3 and P4 tickets are worked {weekday} to Friday from {clock} to {clock2} Eastern.
* Outside those hours the dispatch desk at ext. {ext} takes urgent calls.

# Escalation Contacts
tags: escalation, contacts, on-call
audiences: all
## How to use this page
* This page tells staff and drivers in the {region} region who to call, in what order, and when.
* Times are Eastern Time; the main switchboard is {phone}.
* If anyone is in danger, call 911 first, then the safety line.
## Contact directory
* | Team or role | How to reach | Hours |
  |---|---|---|
  | {desk} | ext. {ext} | 24/7 |
  | {desk2} | ext. {ext2}, {email} | {weekday} to Friday {clock} to {clock2} |
  | {role} | mobile {mobile} | After hours |
* The {desk3} for the {city} terminal is {person} at ext. {ext3}.
## On-call supervisor rota
* One supervisor is on call for the {region} region at any time outside business hours.
* The rota runs in one-week blocks from {weekday} {clock} and is published by {person}.
* Swaps must be approved by the operations manager at least {hours} hours before the block starts.
* On-call supervisors receive a {money} weekly stipend plus time off for any call-out longer than
  {hours2} hours.
## After-hours escalation path
* - Call the dispatch desk at ext. {ext}.
  - If dispatch cannot resolve it, the dispatcher contacts the shift lead at ext. {ext2}.
  - If the shift lead cannot resolve it, call the on-call supervisor on {mobile}.
* If the on-call supervisor has not answered within {minutes} minutes, call the operations manager
  through the switchboard.
* Safety emergencies skip this path: call 911, then the safety line.
## Customer escalations
* Escalations from {company} go to their account manager, {person} (ext. {ext}, {email}).
* If the account manager is away, the {role} takes the call and logs it in {system} within
  {minutes} minutes.

# Detention and Layover Pay
tags: detention, pay, drivers, billing
audiences: drivers, billing, dispatch
## Free time
* Drivers get {hours} hours of free time at each shipper or receiver, counted from the appointment
  time or arrival, whichever is later.
* At {company} in {city}, free time is {hours2} hours under the customer contract.
* Arrival and departure are taken from the geofence in {system}, not from the driver's note.
## Detention pay
* After free time, detention pays the driver {money} per hour, billed to the customer at the
  contract rate.
* The driver reports detention in {system} within {hours} hours of leaving the dock.
* Claims without a signed in-and-out time are reviewed by {person} before payment.
## Layover
* A layover is paid when a load is held overnight and the driver cannot take another load, at
  {money} per day.
* Layovers longer than {count} days need the {role}'s approval at ext. {ext}.
* Hotel costs in {city} are reimbursed up to {money2} per night with a receipt.
## Billing the customer
* The billing specialist adds detention to the invoice within {days} days of delivery.
* Disputed detention for {company} is handled by the account manager, with code {code} on the
  invoice line.

# Fuel Card Use
tags: fuel, fuel-card, drivers
audiences: drivers, all
## Where to fuel
* Fuel at network stations listed in {system}; they carry the discounted price.
* Out-of-network fuel is allowed only when the tank is below {percent}% and no network station is
  within {miles} miles.
* Drivers running {region} lanes fuel at the {city} terminal pumps where possible.
## Limits
* The card allows up to {money} per transaction and {count} transactions per day.
* Reefer fuel is a separate product code and counts toward the same daily limit.
* Higher limits for long {region} runs are set by the {role} at ext. {ext}.
## Allowed purchases
* The card may be used for diesel, reefer fuel, DEF, scale tickets and truck washes up to {money}.
* Food, tobacco and personal items are never allowed on the card.
* Misuse is handled under the driver discipline policy, form {form}.
## Lost or declined cards
* Report a lost or stolen card at once to Fuel card support at {phone}.
* If a card is declined, try once more, then call support; do not use a personal card without
  approval from {person}.
* Replacement cards are sent to the {city} terminal within {days} days.

# Repair Authorization
tags: breakdown, repairs, maintenance
audiences: drivers, maintenance, all
## First actions on the road
* Get the truck off the traveled roadway, turn on the hazard lights and put out the warning
  triangles within {minutes} minutes.
* Report the breakdown in {system} with unit {unit} and the fault codes.
* Call Roadside at {phone}; do not call a repair shop yourself.
## Repair authorization limits
* | Amount per breakdown | Who approves |
  |---|---|
  | Up to {money} | Roadside agent |
  | Up to {money2} | {role} |
  | Above that | Fleet maintenance manager, ext. {ext} |
* Tires on a {equipment} may be replaced by Roadside up to {money} without further approval.
## Approved vendors
* Use only vendors approved for the {region} region; the list is kept in {system}.
* In {city}, the approved shop is run by {company} and opens at {clock}.
* Work by unapproved vendors is not paid through the company account.
## Loaded trailers
* If a {commodity} load is on board, tell the Reefer Desk before the unit is switched off.
* A loaded trailer left at a shop for more than {hours} hours needs a security check by {person}.
* Hazmat loads of {hazmat} stay with the driver unless the safety manager agrees otherwise.

# Cargo Claims
tags: claims, cargo, service
audiences: service, billing, all
## Reporting damage
* The driver notes any shortage or damage on the delivery receipt before the receiver signs.
* Photos of {commodity} damage are uploaded to {system} within {hours} hours.
* The service desk opens a claim under code {code} the same day.
## Claim deadlines
* Customers must file a written claim within {days} days of delivery.
* For {company}, the contract allows {days2} days and requires the original invoice.
* Claims filed late are declined by the claims adjuster, {person}, with a letter.
## Settlement authority
* | Claim value | Who may settle |
  |---|---|
  | Up to {money} | Claims adjuster |
  | Up to {money2} | {role} |
  | Above that | Vice president of operations |
* Settlements above {money3} are reported to the insurer within {days} days.
## Salvage
* Damaged {commodity} is held at the {city} terminal for {days} days for inspection.
* Salvage sales are approved by the claims desk at ext. {ext} and credited against the claim.
* Food and pharmaceuticals are destroyed, never sold, with a certificate of destruction.

# Border Crossing
tags: border, customs, drivers
audiences: drivers, dispatch
## Before the crossing
* The e-manifest is filed by the customs broker at least {hours} hours before the truck reaches
  {port}.
* The driver checks that the trip number in {system} matches the manifest.
* Loads of {commodity} need the importer's permit number on the papers.
## Documents to carry
* - Passport or FAST card
  - Commercial invoice and bill of lading
  - Permit for {commodity2}, when required
  - Form {form}
* Drivers without a FAST card use the general lane at {port}, which can add {hours} hours.
## Holds and inspections
* If customs holds the truck at {port}, the driver calls the Customs desk at ext. {ext} at once.
* The desk informs {company} within {minutes} minutes and updates the ETA in {system}.
* Inspections longer than {hours} hours are paid as detention at {money} per hour.
## Crossing hours
* Commercial lanes at {port} are open from {clock} to {clock2}; plan arrivals for the first half
  of that window.
* Hazmat loads of {hazmat} may cross only at designated ports and only with the hazmat
  coordinator's approval.

# Driver Check-In and ELD
tags: check-in, eld, hours-of-service, drivers
audiences: drivers, dispatch
## Daily check-in
* Drivers check in through {system} before {clock} each working day.
* A driver who has not checked in {minutes} minutes after that is called by the dispatcher.
* Drivers based at {city} check in with the yard supervisor, {person}.
## ELD malfunctions
* If the ELD fails, note the malfunction code {code} and call Driver support at ext. {ext}.
* Keep paper logs for up to {days} days until the device is repaired.
* The {role} records the malfunction in {system} within {hours} hours.
## Hours of service
* Drivers may drive 11 hours after 10 consecutive hours off duty, within a 14-hour window.
* A {minutes}-minute break is required after 8 hours of driving.
* Dispatchers never ask a driver to drive beyond their hours; report such pressure to the safety
  line at {phone}.
## Unassigned driving
* Unassigned driving events on unit {unit} are reviewed by the compliance officer within {days}
  days.
* Yard moves at the {city} terminal under {speed} mph may be logged as yard moves.
"""


@cache
def _topics() -> tuple[_Topic, ...]:
    """`_TOPICS_TEXT` read into topics."""
    topics = []
    for block in re.split(r"^# ", _TOPICS_TEXT.strip(), flags=re.MULTILINE)[1:]:
        title, *lines = block.splitlines()
        fields: dict[str, tuple[str, ...]] = {}
        sections: dict[str, list[str]] = {}
        templates: list[str] = []
        for line in lines:
            if line.startswith("## "):
                templates = sections.setdefault(line[3:], [])
            elif line.startswith("* "):
                templates.append(line[2:])
            elif line.startswith("  "):
                more = line.strip()
                templates[-1] += ("\n" if more.startswith(("|", "- ")) else " ") + more
            elif line.strip():
                key, values = line.split(":", 1)
                fields[key] = tuple(value.strip() for value in values.split(","))
        topics.append(
            _Topic(
                title,
                fields["tags"],
                fields["audiences"],
                {heading: tuple(found) for heading, found in sections.items()},
            )
        )
    return tuple(topics)


# Said under any heading: how records, exceptions and reviews are handled.
_GENERAL_SENTENCES = (
    "Exceptions need written approval from the {role} and are recorded in {system}.",
    "Questions about this go to {person} at ext. {ext}.",
    "Last reviewed on {day} by {person}.",
    "Where a customer contract says otherwise for {company}, the contract applies.",
    "Failure to follow these rules is handled under the driver discipline policy.",
    "Supervisors check compliance every {weekday} and report to the {role}.",
    "A copy is posted at the {city} dispatch window.",
    "Changes since version {version} are marked in the change log kept by the {desk}.",
    "Loads for the {site} use door {count} and the dock hours posted by {person}.",
    "The {site} of {company} is served from {city} under the same rules.",
)

# --- Queries, in the style of examples/eval ------------------------------------------------------

_QUERY_TEMPLATES = (
    "who approves a {kweight} lb load out of {city}",
    "need approval for a {weight} lb load for {company} who signs off",
    "scale ticket {smallweight} lb over the bol do i need a new approval",
    "how many days ahead for an overweight permit in {region}",
    "what setpoint for {commodity} on a {company} load",
    "reefer alarm on a {commodity} load who do i call",
    "how long to pre-cool the trailer before loading {commodity}",
    "can i haul {hazmat} without the endorsement",
    "where do the shipping papers go for {hazmat}",
    "response time for a {tier} customer {priority} ticket",
    "when does {company} get a service credit",
    "who is on call for {region} tonight",
    "on call supervisor not answering what now",
    "free time at {company} before detention starts",
    "detention pay per hour after free time",
    "fuel card daily limit for {region} drivers",
    "can i buy def on the fuel card",
    "fuel card declined at a station in {city}",
    "repair quote of {money} who can approve it",
    "approved repair shop near {city}",
    "how many days does {company} have to file a cargo claim",
    "who can settle a claim of {money}",
    "papers needed to cross at {port}",
    "truck held by customs at {port} what do i do",
    "eld stopped working what do i do",
    "driver hasn't checked in at the {city} terminal",
)


# --- Building documents -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Scope:
    """Whose variant of a topic a document is: a region's, a terminal's or a customer's."""

    title: str
    fixed: dict[str, str]  # slots the whole document shares


def synthetic_documents(n_chunks: int, seed: int = 0, id_prefix: str = "") -> list[Document]:
    """Documents whose sections add up to exactly `n_chunks` one-chunk sections.

    The same `n_chunks` and `seed` give the same documents, and a smaller `n_chunks` the
    same ones up to the last, which is cut short. `id_prefix` keeps the doc_ids of a second
    corpus (another seed) apart from the first one's.
    """
    if n_chunks < 1:
        raise ValueError(f"n_chunks is {n_chunks}; it must be at least 1")
    rng = random.Random(seed)  # noqa: S311 (a benchmark corpus, not a secret)
    documents: list[Document] = []
    used_ids: set[str] = set()
    remaining = n_chunks
    while remaining > 0:
        topic = rng.choice(_topics())
        scope = _scope(rng, topic)
        doc_id = _unique_id(id_prefix + slug(scope.title), used_ids)
        for version, start, end in _versions(rng):
            sections = _sections(rng, topic, scope, min(remaining, _section_count(rng)))
            documents.append(_document(rng, topic, scope, doc_id, version, start, end, sections))
            remaining -= len(sections)
            if remaining == 0:
                break
    return documents


def synthetic_chunk_texts(n_chunks: int, seed: int = 0) -> list[str]:
    """The `n_chunks` texts the embedding model sees at ingest (heading path, then text)."""
    return [
        f"{section_context(document.title, section.headings)}\n{section.text}"
        for document in synthetic_documents(n_chunks, seed)
        for section in document.sections
    ]


def synthetic_queries(n: int, seed: int = 0) -> list[str]:
    """`n` distinct questions about the synthetic corpus's topics, phrased like examples/eval."""
    rng = random.Random(seed)  # noqa: S311 (a benchmark corpus, not a secret)
    queries: dict[str, None] = {}
    while len(queries) < n:
        queries[rng.choice(_QUERY_TEMPLATES).format_map(_Slots(rng, {}))] = None
    return list(queries)


def write_markdown(documents: Sequence[Document], folder: Path) -> list[Path]:
    """One Markdown file with YAML front matter per document, as a policy author writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for document in documents:
        declared = document.declared.model_dump(exclude_none=True, exclude_defaults=True)
        if document.declared.tags:
            declared["tags"] = list(document.declared.tags)
        lines = ["---", yaml.safe_dump(declared, sort_keys=False).strip(), "---"]
        lines.append(f"# {document.title}")
        for section in document.sections:
            lines += ["", f"## {section.headings[-1]}", "", section.text]
        path = folder / f"{document.doc_id}-v{document.declared.version}.md"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def _scope(rng: random.Random, topic: _Topic) -> _Scope:
    kind = rng.random()
    region, city = rng.choice(REGIONS), rng.choice(CITIES)
    company = _company(rng)
    fixed = {"region": region, "city": city, "company": company}
    if kind < 0.3:
        return _Scope(f"{region} Region {topic.title}", fixed)
    if kind < 0.55:
        return _Scope(f"{city} Terminal {topic.title}", fixed)
    return _Scope(f"{company} {topic.title} Addendum", fixed)


def _unique_id(base: str, used: set[str]) -> str:
    doc_id, number = base, 1
    while doc_id in used:
        number += 1
        doc_id = f"{base}-{number}"
    used.add(doc_id)
    return doc_id


def _versions(rng: random.Random) -> list[tuple[int, date, date | None]]:
    """(version, effective_from, declared effective_to) of each version of one document."""
    current = rng.randint(1, 4)
    start = date(2022, 1, 1) + timedelta(days=rng.randrange(4 * 365))
    kind = rng.random()
    if kind < _SUPERSEDED_SHARE:
        earlier = start - timedelta(days=rng.randint(180, 900))
        return [(current, earlier, start), (current + 1, start, None)]
    if kind < _SUPERSEDED_SHARE + _FUTURE_SHARE:
        # Announced years ahead, so it stays out of force whenever the benchmark runs.
        later = date(2031, 1, 1) + timedelta(days=rng.randrange(365))
        return [(current, start, later), (current + 1, later, None)]
    return [(current, start, None)]


def _section_count(rng: random.Random) -> int:
    return rng.randint(_MIN_SECTIONS, _MAX_SECTIONS)


def _sections(rng: random.Random, topic: _Topic, scope: _Scope, count: int) -> list[Section]:
    """`count` sections: some of the topic's headings in order, then per-place variants."""
    headings = list(topic.sections)
    picked = set(rng.sample(headings, min(count, len(headings))))
    parts = [(heading, heading, scope.fixed) for heading in headings if heading in picked]
    while len(parts) < count:
        # Longer documents repeat a subject for another terminal or customer, as real ones do.
        heading = rng.choice(headings)
        city, company = rng.choice(CITIES), _company(rng)
        title = f"{heading}: {city}" if rng.random() < 0.5 else f"{heading}: {company}"
        parts.append((title, heading, {**scope.fixed, "city": city, "company": company}))
    return [
        Section(
            headings=(scope.title, title),
            text=_section_text(rng, topic.sections[heading], fixed),
        )
        for title, heading, fixed in parts
    ]


def _section_text(rng: random.Random, templates: tuple[str, ...], fixed: dict[str, str]) -> str:
    """Some of a heading's sentences and two general ones, in reading order, within bounds."""
    slots = _Slots(rng, fixed)
    sentences = [template.format_map(slots) for template in templates]
    sentences += [template.format_map(slots) for template in rng.sample(_GENERAL_SENTENCES, 2)]
    target = rng.randint(_MIN_WORDS, _MAX_WORDS)
    chosen: list[int] = []
    words = 0
    for index in rng.sample(range(len(sentences)), len(sentences)):
        length = len(sentences[index].split())
        if chosen and words + length > _MAX_WORDS:
            continue
        chosen.append(index)
        words += length
        if words >= target:
            break
    return _join([sentences[index] for index in sorted(chosen)])


def _join(sentences: list[str]) -> str:
    """Tables and lists stand as their own paragraphs; plain sentences run on together."""
    paragraphs: list[str] = []
    prose: list[str] = []
    for sentence in sentences:
        if sentence.startswith(("|", "- ")):
            if prose:
                paragraphs.append(" ".join(prose))
                prose = []
            paragraphs.append(sentence)
        else:
            prose.append(sentence)
    if prose:
        paragraphs.append(" ".join(prose))
    return "\n\n".join(paragraphs)


def _document(
    rng: random.Random,
    topic: _Topic,
    scope: _Scope,
    doc_id: str,
    version: int,
    start: date,
    end: date | None,
    sections: list[Section],
) -> Document:
    declared = FrontMatter(
        doc_id=doc_id,
        title=scope.title,
        version=version,
        effective_from=start,
        effective_to=end,
        audience=rng.choice(topic.audiences),
        tags=topic.tags,
        url=f"{_INTRANET}{doc_id}" if rng.random() < 0.5 else None,
    )
    return Document(
        doc_id=doc_id,
        title=scope.title,
        source=f"synthetic/{doc_id}-v{version}.md",
        sections=tuple(sections),
        declared=declared,
    )
