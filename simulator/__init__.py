"""Firmware-level simulations of every device, served on real endpoints."""
