"""Kept for broker.store.runtime's import of configure_matching until it imports it from
broker.store.patients; candidate search is in broker.matching.search."""
from broker.store.patients import configure_matching

__all__ = ["configure_matching"]
