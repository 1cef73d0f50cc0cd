"""Use cases: each opens a unit of work, loads, applies the rules, saves and records events.

Nothing here imports Strawberry, so every use case is tested without GraphQL.
"""
