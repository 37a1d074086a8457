"""Calling rules: when (in the callee's local time) and to which countries calls may be made."""
