"""Sans-IO codecs for the three wire protocols: bytes in, frames out, and back."""
