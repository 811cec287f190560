"""Durable state behind the hub: SQLite on one node (Redis for many nodes comes later)."""
