"""Rescue: rebuild a site that is gone from public web archives into the target's own WARCs."""
