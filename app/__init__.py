"""panda-caviar server package.

Kept empty on purpose: ``app.tuning`` must be importable without pulling in FastAPI,
SQLAlchemy or pydantic (see tests/test_pure_packages.py).
"""
