"""The massaged daemon, its command line and its home-automation hooks."""
