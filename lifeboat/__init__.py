"""The composition root: the ``lifeboat`` command line and, later, the agent's wiring.

It parses arguments, loads the configuration, calls the engine and prints. Logic
lives in ``engine`` (and ``collectors``, ``alerts``, ``dashboard``), never here.
"""
