"""Patient matching: normalisation, blocking keys, field-by-field scoring and the three bands.

Pure code: no database, no I/O. The store (broker.store.reconcile) keeps the keys and the queue.
"""
from broker.matching.bands import Band, Policy, Verdict, judge
from broker.matching.blocking import block_keys
from broker.matching.compare import Comparison, FieldScore, compare
from broker.matching.normalize import Profile, profile

__all__ = ["Band", "Comparison", "FieldScore", "Policy", "Profile", "Verdict", "block_keys",
           "compare", "judge", "profile"]
