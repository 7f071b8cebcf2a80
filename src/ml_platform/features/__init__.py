"""Feature store: entities, feature views over data-area files, materialization into an online
store (the platform's database or Redis), online lookups and point-in-time training data.

Import from the submodules (``features.lookup``, ``features.online``, ``features.historical``,
...): the package itself imports nothing, so a serving worker that only looks values up does
not load pandas and the point-in-time join.
"""
