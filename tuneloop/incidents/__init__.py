"""Incidents: every alarm that fires opens one, explained and followed to its resolution."""
