"""Saying what happened: reports (HTML/JSON), notifications and their outbox, and the status of
a target. Imports the layers below it, never ``crawl`` or ``jobs``."""
