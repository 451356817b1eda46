"""What a program id is: a slug, checked before any file is looked for.

Standard library only: the command line refuses a bad or unknown id without loading
the program models (``massaged run nosuch``).
"""

from __future__ import annotations

SLUG_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
"""Lower-case letters and digits in words joined by '-': never a path."""
