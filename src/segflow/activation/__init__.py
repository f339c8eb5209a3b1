"""Activation: getting segment members to ad platforms as hashed identifiers.

``destinations`` is the catalog of places to send to, ``senders`` the
transport to them, ``links`` ties a segment to a destination, ``sync`` drains
the pending work the engine leaves in :mod:`segflow.outbox`, with
``outgoing`` (what each member carries), ``identifiers`` (normalising and
hashing), ``mapping`` (which columns hold identifiers) and ``retry``.
``fake`` is a local Data Manager API double for tests and demos.
"""
