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


def test_a_forked_child_does_not_repeat_the_parents_ids():
    import os

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.write(write_end, new_request_id().encode())
        os._exit(0)
    os.close(write_end)
    try:
        child_id = os.read(read_end, 64).decode()
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    assert uuid.UUID(child_id).version == 4
    assert child_id != new_request_id()
