"""The scheduling store: SQLAlchemy models, sessions, repositories, Alembic migrations."""
