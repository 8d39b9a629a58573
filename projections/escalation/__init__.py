"""Dose-escalation designs (pure): 3+3 and BOIN, their decision tables and recommendations."""
