"""``features_wire.encode_response`` writes what the protobuf library writes for the same
answer, byte for byte, over generated answers (every value type, status, event time)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import timestamp_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_platform.features.lookup import LookupValue
from ml_platform.features.types import INT64_MAX, INT64_MIN, ValueStatus
from ml_platform.serving.adapters.features_wire import encode_response
from ml_platform.serving.proto import features_pb2

_STATUS = {
    ValueStatus.PRESENT: features_pb2.PRESENT,
    ValueStatus.MISSING: features_pb2.MISSING,
    ValueStatus.OUTSIDE_TTL: features_pb2.OUTSIDE_TTL,
}


def _reference(features: list[str], found: list[list[LookupValue]]) -> bytes:
    """The same answer built through the protobuf API."""

    def value(x: Any) -> features_pb2.Value:
        if x is None:
            return features_pb2.Value()
        if isinstance(x, bool):
            return features_pb2.Value(bool_value=x)
        if isinstance(x, int):
            return features_pb2.Value(int64_value=x)
        if isinstance(x, float):
            return features_pb2.Value(double_value=x)
        return features_pb2.Value(string_value=x)

    vectors = []
    for values in found:
        out = []
        for v in values:
            kwargs: dict[str, Any] = {"value": value(v.value), "status": _STATUS[v.status]}
            if v.event_ts is not None:
                stamp = timestamp_pb2.Timestamp()
                stamp.FromDatetime(v.event_ts)
                kwargs["event_timestamp"] = stamp
            out.append(features_pb2.FeatureValue(**kwargs))
        vectors.append(features_pb2.FeatureVector(values=out))
    message = features_pb2.GetOnlineFeaturesResponse(features=features, results=vectors)
    return message.SerializeToString()


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(INT64_MIN, INT64_MAX),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=300),
)
stamps = st.one_of(
    st.none(),
    st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
)
values = st.builds(LookupValue, st.just("v:f"), scalars, st.sampled_from(list(ValueStatus)), stamps)
refs = st.lists(st.text(min_size=1, max_size=40), max_size=5)


@settings(max_examples=300, deadline=None)
@given(refs, st.lists(st.lists(values, max_size=8), max_size=6))
def test_the_bytes_are_the_protobuf_librarys(
    features: list[str], found: list[list[LookupValue]]
) -> None:
    encoded = encode_response(features, found)
    assert encoded == _reference(features, found)
    parsed = features_pb2.GetOnlineFeaturesResponse.FromString(encoded)
    assert list(parsed.features) == features
    assert [len(r.values) for r in parsed.results] == [len(v) for v in found]


def test_a_typical_answer_round_trips() -> None:
    ts = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    found = [
        [
            LookupValue("s:a", 1.5, ValueStatus.PRESENT, ts),
            LookupValue("s:b", None, ValueStatus.OUTSIDE_TTL, ts - timedelta(days=400)),
            LookupValue("s:c", None, ValueStatus.MISSING, None),
            LookupValue("s:d", -7, ValueStatus.PRESENT, ts),
        ]
    ]
    parsed = features_pb2.GetOnlineFeaturesResponse.FromString(
        encode_response(["s:a", "s:b", "s:c", "s:d"], found)
    )
    a, b, c, d = parsed.results[0].values
    assert a.value.double_value == 1.5 and a.status == features_pb2.PRESENT
    assert a.event_timestamp.ToDatetime(tzinfo=UTC) == ts
    assert b.status == features_pb2.OUTSIDE_TTL and b.value.WhichOneof("kind") is None
    assert c.status == features_pb2.MISSING and not c.HasField("event_timestamp")
    assert d.value.int64_value == -7
