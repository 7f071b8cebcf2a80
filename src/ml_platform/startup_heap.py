"""Keep what a long-running process built at start out of the garbage collector's full passes.

A server imports and builds most of its objects once, at start: modules, routes, schemas,
compiled statements (the control plane holds ~190,000 of them). CPython's full collection
walks every tracked object, so each one (every few seconds under load) stalled a request for
as long as the walk took: 110-160 ms on this project's 2-core reference machine, the p99 of
a list that otherwise answers in 10 ms. ``freeze`` collects the start-up garbage once, then
moves the survivors to the permanent generation (``gc.freeze``): later collections see only
what the process allocated since. Nothing is lost: an object frozen here lived for the whole
process anyway, and everything allocated later is collected as before.
"""

from __future__ import annotations

import gc


def freeze() -> None:
    """Call once, when start-up is done and before serving."""
    gc.collect()
    gc.freeze()
