"""`apigw-requestid` values: AWS's 16-character base64 form, unique within and across workers."""

import base64

from portico.dataplane.app import _RequestIds


def test_ids_are_unique_and_shaped_like_aws():
    first, second = _RequestIds(), _RequestIds()
    ids = [first.next() for _ in range(50_000)] + [second.next() for _ in range(50_000)]
    assert len(set(ids)) == len(ids)
    for request_id in ids[:100]:
        assert len(request_id) == 16
        assert len(base64.b64decode(request_id)) == 11
