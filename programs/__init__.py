"""Massage programs as validated data, and their rendering onto devices."""
