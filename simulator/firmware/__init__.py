"""Sans-IO firmware models: bytes and time in, bytes and physical outputs out."""
