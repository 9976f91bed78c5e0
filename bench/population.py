"""A synthetic patient population with known duplicates, for bench/matching.py.

Names come from the lists below (no external data): given and family names of several origins,
with diacritics, particles and hyphens, and family names extended with common suffixes so that
a million people do not all share a few hundred surnames. Each duplicate is a second
registration of a person carrying one or two of the errors real registrations make.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import date, timedelta

GIVEN_F = """Anna Maria Elizabeth Margaret Katherine Jennifer Patricia Susan Dorothy Rebecca Victoria
Alexandra Christine Josephine Deborah Abigail Samantha Fatima Aisha Sophie Emma Olivia Chloé Zoë
Léa Inès Manon Camille Élodie Hélène Brigitte Ingrid Astrid Sigríður Björk Søren Agnieszka Małgorzata
Zofia Katarzyna Joanna Ewa Dorota Ioana Elena Mihaela Giulia Francesca Chiara Alessia Lucía Carmen
Pilar Mercedes Dolores Rocío Ana Beatriz Mariana Leticia Yasmin Layla Noor Mariam Zainab Amira
Hana Leila Priya Ananya Deepika Aiko Yuki Sakura Mei Lin Xiu Nadia Svetlana Olga Tatiana Irina
Natalia Ayşe Elif Zeynep Emine Ngozi Chiamaka Amara Adaeze Wanjiru Grace Hope Faith Charlotte
Amelia Isla Ava Mia Freya Lily Ella Evie Harper Ruby Hannah Greta Frieda Lotte Ilse Gudrun Heike
Siobhán Aoife Niamh Saoirse Róisín Catrin Eira Bethan Mairead Yvonne Colette Solange Renée""".split()
GIVEN_M = """William Robert Richard James John Michael Thomas Joseph Charles Edward Anthony Daniel
David Stephen Christopher Nicholas Alexander Benjamin Samuel Matthew Patrick Peter Johannes Francis
José Mohammed Yusuf Ibrahim Jürgen Günter Klaus Dieter Wolfgang Helmut Uwe Jörg Björn Lars Sven
Øystein Håkon Jan Piotr Krzysztof Paweł Łukasz Tomasz Grzegorz Andrzej Mihai Andrei Luca Marco
Giovanni Matteo Lorenzo Alejandro Javier Sergio Álvaro Raúl Joaquín Tiago João Gonçalo Rafael
Omar Ali Hassan Hussein Khalid Tariq Karim Rashid Mustafa Rahul Arjun Vikram Sanjay Rohan Hiroshi
Takeshi Kenji Wei Jun Hao Dmitri Sergei Ivan Mikhail Vladimir Mehmet Emre Burak Chinedu Emeka
Oluwaseun Kwame Kofi Tendai Oliver George Harry Jack Noah Leo Oscar Arthur Freddie Finley Liam
Aidan Seán Ciarán Oisín Dafydd Rhys Gareth Emrys Pierre François Étienne Benoît Hervé Loïc""".split()
FAMILY = """Smith Jones Williams Brown Taylor Davies Evans Wilson Thomas Roberts Johnson Walker
Wright Robinson Thompson White Hughes Edwards Green Hall Wood Harris Lewis Martin Jackson Clarke
Clark Turner Hill Scott Cooper Morris Ward Moore King Watson Baker Harrison Morgan Patel Young
Allen Mitchell James Anderson Phillips Lee Bell Parker Davis Müller Schmidt Schneider Fischer
Weber Meyer Wagner Becker Schulz Hoffmann Schäfer Koch Bauer Richter Klein Wolf Schröder Neumann
Schwarz Zimmermann Braun Krüger Hofmann Hartmann Lange Schmitt Werner Krause Meier Lehmann Köhler
Nowak Kowalski Wiśniewski Wójcik Kowalczyk Kamiński Lewandowski Zieliński Szymański Woźniak
Dąbrowski Kozłowski Jankowski Mazur Kwiatkowski Krawczyk Piotrowski Grabowski Popescu Ionescu
Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci Marino Greco Bruno Gallo Conti Costa
García Fernández González Rodríguez López Martínez Sánchez Pérez Gómez Martín Jiménez Ruiz
Hernández Díaz Moreno Muñoz Álvarez Romero Alonso Gutiérrez Navarro Torres Domínguez Vázquez
Silva Santos Ferreira Pereira Oliveira Rodrigues Almeida Carvalho Gonçalves Sousa Ribeiro
Al-Rashid Al-Farsi Al-Sayed Al-Hashimi El-Amin Abu-Bakr Haddad Khoury Nasser Hamdan Mansour
Yilmaz Kaya Demir Şahin Çelik Yıldız Öztürk Aydın Özdemir Arslan Doğan Kılıç Nguyen Tran Pham
Hoang Huynh Vo Dang Bui Kim Park Choi Jung Kang Cho Yoon Jang Lim Han Wang Zhang Liu Chen Yang
Zhao Huang Zhou Sato Suzuki Takahashi Tanaka Watanabe Ito Yamamoto Nakamura Kobayashi Kato
Sharma Singh Kumar Gupta Reddy Iyer Nair Mehta Shah Joshi Okafor Okonkwo Adeyemi Mensah Boateng
Mwangi Otieno Kamau Dlamini Nkosi Ivanov Smirnov Kuznetsov Popov Vasiliev Petrov Sokolov
Jensen Nielsen Hansen Pedersen Andersen Larsen Sørensen Johansson Karlsson Nilsson Eriksson
Lindqvist Björklund Virtanen Korhonen Mäkinen Nieminen Jónsson Guðmundsson O'Brien O'Connor
O'Neill O'Sullivan Murphy Kelly Walsh Byrne Ryan McCarthy MacDonald McLeod Fitzgerald""".split()
PARTICLE_FAMILY = """van der Berg|van Dijk|de Vries|van den Heuvel|de Jong|van Leeuwen|von Braun|
de la Cruz|de Souza|dos Santos|da Silva|di Stefano|Le Roux|du Pont|ter Horst|bin Laden|
ibn Saud|van Beethoven|de Groot|van der Linden""".replace("\n", "").split("|")
SUFFIXES = ["", "", "", "", "son", "er", "mann", "ez", "ski", "ova", "ini", "sen", "ley", "ton",
            "well", "worth", "berg", "stein", "ak", "ic"]
STREETS = """High Church Station Park Victoria Green Manor Mill School Kings Queens Oak Elm Maple
Cedar Bridge Castle Market Garden Hill Lake River North South West East New Old""".split()
KINDS = ["Street", "Road", "Lane", "Avenue", "Close", "Way", "Gardens", "Terrace"]
CITIES = """Leeds Bristol Cardiff Belfast Glasgow Bremen Lyon Porto Gdansk Turin Malaga Utrecht Aarhus
Uppsala Tampere Cork Galway Swansea Dundee Norwich""".split()
NICK_OF = {"William": "Bill", "Robert": "Bob", "Richard": "Rick", "James": "Jim", "John": "Jack",
           "Michael": "Mike", "Thomas": "Tom", "Joseph": "Joe", "Charles": "Charlie",
           "Edward": "Ted", "Anthony": "Tony", "Daniel": "Dan", "David": "Dave",
           "Stephen": "Steve", "Christopher": "Chris", "Nicholas": "Nick", "Alexander": "Alex",
           "Benjamin": "Ben", "Samuel": "Sam", "Matthew": "Matt", "Patrick": "Pat",
           "Peter": "Pete", "Elizabeth": "Liz", "Margaret": "Maggie", "Katherine": "Kate",
           "Jennifer": "Jenny", "Patricia": "Trish", "Susan": "Sue", "Rebecca": "Becky",
           "Victoria": "Vicky", "Deborah": "Debbie", "Abigail": "Abby", "Mohammed": "Muhammad",
           "Johannes": "Hans", "Francis": "Frank", "Anna": "Anne", "Maria": "Mary"}
ERRORS = ["case", "diacritics", "hyphen", "particle", "initial", "swap", "nickname",
          "family_typo", "given_typo", "dob_digit", "dob_transpose", "dob_daymonth", "dob_missing",
          "sex_unknown", "moved", "contact_missing"]
DOB_ERRORS = {"dob_digit", "dob_transpose", "dob_daymonth", "dob_missing"}


@dataclass(frozen=True)
class Person:
    identifier: str
    family: str
    given: str
    birth_date: str
    sex: str
    address: str
    phone: str


def _zipf(rng: random.Random, items: list, power: float = 2.0):
    # Rank-weighted pick: a few names are common, most are rare, as in a real register
    # (power 2 over ~5000 surnames gives the commonest ~1.4% of people, like Smith in England).
    index = int(len(items) * rng.random() ** power)
    return items[min(index, len(items) - 1)]


class Generator:
    """Deterministic (seeded) people, households, twins and erroneous duplicates."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.families = [f + s for f in FAMILY for s in SUFFIXES if not (s and "-" in f)]
        self.families += PARTICLE_FAMILY
        self.rng.shuffle(self.families)
        self.given = {"F": GIVEN_F[:], "M": GIVEN_M[:]}
        for names in self.given.values():
            self.rng.shuffle(names)
        self.serial = 0

    def _id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial:08d}"

    def _household(self) -> tuple[str, str, str]:
        r = self.rng
        family = _zipf(r, self.families)
        if r.random() < 0.06:
            family = f"{family}-{_zipf(r, self.families)}"
        address = f"{r.randint(1, 240)} {r.choice(STREETS)} {r.choice(KINDS)}, {r.choice(CITIES)}"
        phone = f"0{r.randint(1000, 9999)} {r.randint(100000, 999999)}"
        return family, address, phone

    def _birth(self) -> str:
        day = date(1930, 1, 1) + timedelta(days=self.rng.randrange(0, 90 * 365))
        return day.strftime("%Y%m%d")

    def _person(self, family: str, address: str, phone: str, birth: str | None = None,
                taken: set[str] | frozenset[str] = frozenset()) -> Person:
        r = self.rng
        sex = r.choice("MF")
        given = _zipf(r, self.given[sex], 1.5)
        while given in taken:  # parents do not give two of their children one name
            given = r.choice(self.given[sex])
        return Person(self._id("MRN"), family, given, birth or self._birth(), sex,
                      address if r.random() < 0.9 else "", phone if r.random() < 0.85 else "")

    def people(self, count: int) -> list[Person]:
        """`count` distinct people: households of 1-4 sharing name, address, phone; some twins."""
        out: list[Person] = []
        while len(out) < count:
            family, address, phone = self._household()
            size = self.rng.choice([1, 1, 1, 2, 2, 3, 4])
            taken: set[str] = set()
            for _ in range(size):
                out.append(self._person(family, address, phone, taken=taken))
                taken.add(out[-1].given)
            if size > 1 and self.rng.random() < 0.05:  # twins: same birth date, same household
                out.append(self._person(family, address, phone, out[-1].birth_date, taken))
        return out[:count]

    def duplicate(self, p: Person, errors: list[str] | None = None) -> tuple[Person, list[str]]:
        """A second registration of `p` under a new identifier, with one or two errors."""
        r = self.rng
        if errors is None:
            errors = [r.choice(ERRORS)]
            if r.random() < 0.15:
                errors.append(r.choice(ERRORS))
        dup = replace(p, identifier=self._id("CLN"))
        for kind in errors:
            dup = self.apply(dup, kind)
        return dup, errors

    def apply(self, p: Person, kind: str) -> Person:
        """One registration error of the given kind (a mistyped birth date is still a valid date)."""
        for _ in range(20):
            out = self._apply(p, kind)
            if not out.birth_date or _valid(out.birth_date):
                return out
        return p

    def _apply(self, p: Person, kind: str) -> Person:
        r = self.rng
        if kind in DOB_ERRORS and not p.birth_date:
            return p
        if kind == "case":
            return replace(p, family=p.family.upper(), given=p.given.lower())
        if kind == "diacritics":
            table = {"ü": "ue", "ö": "oe", "ä": "ae", "Ü": "Ue", "Ö": "Oe", "Ä": "Ae"}
            family = "".join(table.get(c, c) for c in p.family)
            if family == p.family:
                family = _strip_marks(p.family)
            return replace(p, family=family, given=_strip_marks(p.given))
        if kind == "hyphen":
            if "-" in p.family or " " in p.family:
                sep = r.choice(["", " ", "-"])
                return replace(p, family=p.family.replace("-", sep).replace(" ", sep))
            return replace(p, family=p.family + "-" + _zipf(r, self.families)) \
                if r.random() < 0.3 else self.apply(p, "family_typo")
        if kind == "particle":
            words = p.family.split()
            if len(words) > 1:
                return replace(p, family=words[-1] if r.random() < 0.5 else "".join(words))
            return self.apply(p, "case")
        if kind == "initial":
            return replace(p, given=p.given[0] + ".")
        if kind == "swap":
            return replace(p, family=p.given, given=p.family)
        if kind == "nickname":
            nick = NICK_OF.get(p.given)
            return replace(p, given=nick) if nick else self.apply(p, "given_typo")
        if kind == "family_typo":
            return replace(p, family=_typo(r, p.family))
        if kind == "given_typo":
            return replace(p, given=_typo(r, p.given))
        if kind == "dob_digit":
            i = r.choice([2, 3, 5, 6, 7])
            digits = list(p.birth_date)
            digits[i] = r.choice([d for d in "0123456789" if d != digits[i]])
            return replace(p, birth_date="".join(digits))
        if kind == "dob_transpose":
            d = p.birth_date
            for i in r.sample([2, 4, 6], 3):
                if d[i] != d[i + 1]:
                    return replace(p, birth_date=d[:i] + d[i + 1] + d[i] + d[i + 2:])
            return self.apply(p, "dob_digit")
        if kind == "dob_daymonth":
            d = p.birth_date
            if int(d[6:]) <= 12 and d[4:6] != d[6:]:
                return replace(p, birth_date=d[:4] + d[6:] + d[4:6])
            return self.apply(p, "dob_transpose")
        if kind == "dob_missing":
            return replace(p, birth_date="")
        if kind == "sex_unknown":
            return replace(p, sex=r.choice(["", "U"]))
        if kind == "moved":
            _, address, phone = self._household()
            return replace(p, address=address, phone=phone if r.random() < 0.5 else p.phone)
        if kind == "contact_missing":
            return replace(p, address="", phone="")
        raise ValueError(kind)


def _valid(yyyymmdd: str) -> bool:
    try:
        date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    except ValueError:
        return False
    return True


def _strip_marks(text: str) -> str:
    import unicodedata
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c))


def _typo(r: random.Random, word: str) -> str:
    """One keyboard slip: a letter substituted, dropped, doubled, or two letters transposed."""
    if len(word) < 4:
        return word + word[-1]
    i = r.randrange(1, len(word) - 1)
    kind = r.choice(["sub", "drop", "double", "swap"])
    if kind == "sub":
        return word[:i] + r.choice("aeiourstnl") + word[i + 1:]
    if kind == "drop":
        return word[:i] + word[i + 1:]
    if kind == "double":
        return word[:i] + word[i] + word[i:]
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]
