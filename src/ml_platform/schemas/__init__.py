"""Wire models shared by the server and the SDK (pydantic only, no server imports)."""
