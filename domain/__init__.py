"""The rules of the partner program. Pure Python (plus python-statemachine); no I/O."""
