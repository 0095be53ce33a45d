"""Request ids are version-4 UUIDs in their canonical text form, as uuid4() gives."""
import uuid

from lambdaplane.service.request_ids import new_request_id


def test_request_ids_are_canonical_random_uuids():
    ids = [new_request_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text  # lower-case hex, 8-4-4-4-12
