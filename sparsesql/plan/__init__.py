"""Checked query -> plan: ordered stages, SQL with named placeholders, Python steps."""
