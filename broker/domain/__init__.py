"""Plain types and rules of the scheduling domain: no I/O, no protocol types, no SQLAlchemy."""
