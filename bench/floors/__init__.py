"""Bare servers the serving benchmark measures against (run pinned to core 0).

Each parses the V2 request the way any server must (protobuf / JSON decode, tensor into numpy)
and answers a constant response of the right size for the row count, so the gap to our server
is what our server does beyond transport and decode.
"""
