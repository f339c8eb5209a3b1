"""Activation: getting segment members to ad platforms as hashed identifiers.

Only normalisation and hashing exist so far (``identifiers``); sync state,
the worker, retry policy and destinations come with the activation issue.
"""
