"""Per-tenant sandbox processes that hold untrusted (pickle-family) models.

``child`` is the sandbox process itself, ``confine`` what it does to itself before loading,
``launch`` how the supervisor starts it, ``wire`` the frame format both ends share and
``client`` the worker's end of the connection. Kept import-light: the child imports this
package first, so nothing heavy may be imported here.
"""
