"""Common given-name nicknames and short forms, mapped to one canonical form.

Registration clerks write what the patient says ("Bill"), the EHR holds the legal name
("William"): both must compare as the same given name. Keys and values are folded (upper-case ASCII).
"""
from __future__ import annotations

_GROUPS: dict[str, tuple[str, ...]] = {
    "WILLIAM": ("BILL", "BILLY", "WILL", "WILLY", "LIAM"),
    "ROBERT": ("BOB", "BOBBY", "ROB", "ROBBIE", "BERT"),
    "RICHARD": ("DICK", "RICK", "RICKY", "RICH", "RICHIE"),
    "JAMES": ("JIM", "JIMMY", "JAMIE"),
    "JOHN": ("JACK", "JOHNNY", "JON"),
    "MICHAEL": ("MIKE", "MICKY", "MICK"),
    "THOMAS": ("TOM", "TOMMY"),
    "JOSEPH": ("JOE", "JOEY"),
    "CHARLES": ("CHARLIE", "CHUCK"),
    "EDWARD": ("ED", "EDDIE", "TED", "TEDDY", "NED"),
    "ANTHONY": ("TONY",),
    "DANIEL": ("DAN", "DANNY"),
    "DAVID": ("DAVE", "DAVY"),
    "STEPHEN": ("STEVE", "STEVEN", "STEFAN"),
    "CHRISTOPHER": ("CHRIS", "KIT"),
    "NICHOLAS": ("NICK", "NICKY", "NICO", "NIKOLAUS", "NIKOLAI"),
    "ALEXANDER": ("ALEX", "SASHA", "ALEKSANDR", "ALEJANDRO", "SANDY"),
    "BENJAMIN": ("BEN", "BENNY"),
    "SAMUEL": ("SAM", "SAMMY"),
    "MATTHEW": ("MATT", "MATTHIAS", "MATTIAS"),
    "PATRICK": ("PAT", "PADDY"),
    "PETER": ("PETE", "PIETER", "PIOTR", "PEDRO"),
    "JOHANNES": ("HANS", "JOHANN", "JAN"),
    "FRANCIS": ("FRANK", "FRANZ", "FRANCESCO", "FRANCISCO", "PACO"),
    "JOSE": ("PEPE",),
    "MOHAMMED": ("MOHAMMAD", "MOHAMED", "MUHAMMAD", "MUHAMMED", "MOHAMAD", "MEHMET"),
    "ELIZABETH": ("LIZ", "LIZZIE", "BETH", "BETTY", "ELISABETH", "ELSA", "LISA", "ELISE", "BETSY"),
    "MARGARET": ("MAGGIE", "MEG", "PEGGY", "GRETA", "MARGARETHE", "MARGRIT"),
    "KATHERINE": ("KATE", "KATIE", "KATHY", "CATHERINE", "KATHARINA", "KATRIN", "CATHY", "KAT"),
    "JENNIFER": ("JEN", "JENNY"),
    "PATRICIA": ("PATTY", "TRISH", "TRICIA"),
    "SUSAN": ("SUE", "SUSIE", "SUZANNE", "SUSANNE"),
    "DOROTHY": ("DOT", "DOTTIE", "DOROTHEA"),
    "REBECCA": ("BECKY", "BECCA"),
    "VICTORIA": ("VICKY", "TORI"),
    "ALEXANDRA": ("ALEXA", "SASHA", "SANDRA"),
    "CHRISTINE": ("CHRISTINA", "TINA", "KRISTINA", "KRISTIN", "CHRISTIANE"),
    "ANNA": ("ANN", "ANNE", "ANNIE", "ANJA", "HANNA", "HANNAH"),
    "MARIA": ("MARY", "MARIE", "MIA", "MARIJA", "MAREIKE"),
    "JOSEPHINE": ("JOSIE", "FINA"),
    "DEBORAH": ("DEBBIE", "DEBRA", "DEB"),
    "ABIGAIL": ("ABBY", "GAIL"),
    "SAMANTHA": ("SAMMIE",),
    "FATIMA": ("FATMA",),
    "AISHA": ("AYESHA", "AYSE"),
    "YUSUF": ("YOUSSEF", "JOSEF", "YOSEF"),
    "IBRAHIM": ("IBRAHEEM", "EBRAHIM"),
}

NICKNAMES: dict[str, str] = {}
for _canonical, _forms in _GROUPS.items():
    NICKNAMES.setdefault(_canonical, _canonical)
    for _form in _forms:
        NICKNAMES.setdefault(_form, _canonical)


def canonical_given(name: str) -> str:
    """The canonical form of a folded given name (itself when it is no known nickname)."""
    return NICKNAMES.get(name, name)
