"""Patient identity reconciliation: normalisation, candidate search, scoring, the review queue."""
