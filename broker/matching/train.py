"""`broker patients train`: fit the matching model on this site's patients and store it.

The candidate pairs are those the scan would score (the blocking rules); EM learns m, u and the
share of true pairs among them without any labels. Random pairs, almost all of two different
people, measure u at the start. Reading and fitting run on a read-only session; the model is
written in one short transaction at the end.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from sqlalchemy.orm import Session, sessionmaker

from broker.config import MatchingSettings
from broker.matching.model_store import save_model
from broker.matching.pairs import blocked_pairs, load_live_profiles
from broker.matching.score import Profile
from broker.matching.score.model import Model, fit, name_frequencies, pattern_counts
from broker.store.audit import record_event


@dataclass
class TrainReport:
    version: int
    patients: int
    candidate_pairs: int   # pairs the EM learned from (a sample when there were more)
    blocked_pairs: int     # all pairs the blocking rules found
    random_pairs: int
    model: Model


class TrainingError(ValueError):
    """Too few patients to learn anything from; the message says how many there are."""


def random_pairs(ids: list[int], count: int, rng: random.Random) -> list[tuple[int, int]]:
    """`count` pairs of two different patients drawn at random (fewer for a tiny register)."""
    if len(ids) < 2:
        return []
    count = min(count, len(ids) * (len(ids) - 1) // 2)
    return [tuple(rng.sample(ids, 2)) for _ in range(count)]


def fit_profiles(profiles: dict[int, Profile], settings: MatchingSettings, seed: int = 0,
                 on_stage: Callable[[str], None] | None = None) -> tuple[Model, int, int, int]:
    """A model fitted on these profiles; with the counts of sampled, blocked and random pairs."""
    rng = random.Random(seed)
    say = on_stage or (lambda _: None)
    say("blocking")
    pairs, _ = blocked_pairs(profiles)
    blocked = len(pairs)
    chosen = sorted(pairs)
    if len(chosen) > settings.train_max_pairs:
        chosen = rng.sample(chosen, settings.train_max_pairs)
    say(f"comparing {len(chosen)} candidate pairs")
    candidates = pattern_counts((profiles[a], profiles[b]) for a, b in chosen)
    randoms = random_pairs(sorted(profiles), settings.train_random_pairs, rng)
    say(f"comparing {len(randoms)} random pairs")
    random_counts = pattern_counts((profiles[a], profiles[b]) for a, b in randoms)
    say("estimating")
    model = fit(candidates, random_counts, name_frequencies(profiles.values()))
    return model, len(chosen), blocked, len(randoms)


def train(sessions: sessionmaker[Session], settings: MatchingSettings, actor: str = "train",
          read_sessions: sessionmaker[Session] | None = None, seed: int = 0,
          on_stage: Callable[[str], None] | None = None) -> TrainReport:
    """Fit a model on the live patients and store it as the next version."""
    with (read_sessions or sessions)() as session:
        profiles, _ = load_live_profiles(session, with_identifiers=False)
    if len(profiles) < 2:
        raise TrainingError(f"{len(profiles)} patient(s): at least 2 are needed to train")
    model, sampled, blocked, randoms = fit_profiles(profiles, settings, seed, on_stage)
    with sessions.begin() as session:
        row = save_model(session, model, len(profiles), sampled, randoms, actor)
        record_event(session, actor, "patients.train", "matching_model", row.version,
                     patients=len(profiles), candidate_pairs=sampled, blocked_pairs=blocked,
                     random_pairs=randoms)
        stored = Model.from_dict(row.parameters)
    return TrainReport(row.version, len(profiles), sampled, blocked, randoms, stored)
