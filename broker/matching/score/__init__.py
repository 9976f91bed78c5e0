"""The patient scorer: normalisation, blocking keys, field-by-field scoring and the three bands.

Pure code: no database, no I/O. broker.matching.search looks the keys up in the store.
"""
from broker.matching.score.bands import Band, Policy, Verdict, judge
from broker.matching.score.blocking import block_keys
from broker.matching.score.compare import Comparison, FieldScore, compare
from broker.matching.score.normalize import Profile, profile

__all__ = ["Band", "Comparison", "FieldScore", "Policy", "Profile", "Verdict", "block_keys",
           "compare", "judge", "profile"]
