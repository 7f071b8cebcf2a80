"""Persistence: tables, repositories that own every query, and Alembic migrations.

ORM rows never leave this package; repositories return the records of ``records.py``.
"""
