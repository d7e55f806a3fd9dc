"""Deterministic simulation of consensus engines under network and crash faults."""
