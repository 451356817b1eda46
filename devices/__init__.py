"""Drivers for the massage devices massaged runs: codecs, links and drivers."""
