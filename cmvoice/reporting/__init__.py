"""Operator-facing reports of a campaign: the self-contained HTML campaign page."""
