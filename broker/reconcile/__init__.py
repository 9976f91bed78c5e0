"""Patient reconciliation at scale: CSV import, whole-database duplicate scan, and their CLI."""
