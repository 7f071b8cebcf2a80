"""Which of the storage's fsspec options may travel with a job to a cluster that shows them.

Ray's dashboard and Job API show a job's ``runtime_env`` (its ``env_vars`` included) to anyone
who can reach them, so the storage options an executor hands to its jobs
(``ML_PLATFORM_STORAGE_OPTIONS``) must not hold credentials. ``public_storage_options`` keeps
what a worker needs to *find* the object store (``endpoint_url``, ``region_name``, ``anon``,
``use_ssl``, ``client_kwargs`` / ``config_kwargs`` without credentials...) and drops every
option, at any depth, whose name is a credential: the workers then authenticate from their own
environment (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, an
instance role, a profile), as fsspec backends do when no key is given.

A name is a credential when, lower-cased with ``_`` and ``-`` removed, it is one of
``CREDENTIAL_NAMES`` or contains one of ``CREDENTIAL_PARTS``: ``key``, ``secret``, ``token``,
``aws_secret_access_key``, ``SessionToken``, ``client_secret``, ``sas_token``, ``password``,
``SSECustomerKey``, ``Authorization`` and ``credentials`` all go; ``SSEKMSKeyId`` (the name of
a key, not a key) and ``endpoint_url`` stay. An option whose string value carries a password
in a URL (``https://user:pw@host``) is dropped too. A deny-list rather than an allow-list: an
option this module does not know (a new fsspec flag) still reaches the worker, unless its name
says it is a credential. Pure: no framework, no settings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

CREDENTIAL_NAMES = frozenset(
    {
        "key",
        "secret",
        "token",
        "password",
        "passwd",
        "pwd",
        "awsaccesskeyid",
        "accesskeyid",
        "accesskey",
        "secretkey",
        "sessiontoken",
        "securitytoken",
    }
)
"""Exact credential option names (normalized: lower case, no ``_`` / ``-``)."""

CREDENTIAL_PARTS = (
    "secret",
    "token",
    "password",
    "passwd",
    "credential",
    "accesskey",
    "apikey",
    "accountkey",
    "privatekey",
    "customerkey",
    "connectionstring",
    "authorization",
    "cookie",
)
"""Any option name containing one of these (normalized) is a credential."""

_URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/@\s:]*:[^/@\s]*@", re.IGNORECASE)


def _normalized(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def is_credential_name(name: str) -> bool:
    """Whether an option called ``name`` holds (or names) a credential."""
    normalized = _normalized(name)
    return normalized in CREDENTIAL_NAMES or any(part in normalized for part in CREDENTIAL_PARTS)


def public_storage_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` without any credential, at any depth (nested mappings and lists)."""
    return {
        str(name): _public(value)
        for name, value in options.items()
        if not is_credential_name(str(name)) and not _carries_password(value)
    }


def _public(value: Any) -> Any:
    if isinstance(value, Mapping):
        return public_storage_options(value)
    if isinstance(value, (list, tuple)):
        return [_public(item) for item in value if not _carries_password(item)]
    return value


def _carries_password(value: Any) -> bool:
    return isinstance(value, str) and _URL_WITH_PASSWORD.search(value) is not None
