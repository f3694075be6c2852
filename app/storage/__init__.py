"""Storage: the engine and sessions (:mod:`db`), the tables (:mod:`models`), the queries
(:mod:`queries`), row locks for PostgreSQL (:mod:`locks`), a trial's pending requests and its
leaving the running state (:mod:`pending`), and the schema's migrations (``migrations/``).

May import: SQLAlchemy, Alembic, app.config, app.errors, app.tuning (for its enums). Nothing
above it.
"""
