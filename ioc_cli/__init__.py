"""The ``ioc`` command: the composition root that builds settings and wires the packages together.

Nothing imports this package; it imports the others, so dependencies still point one way.
"""
