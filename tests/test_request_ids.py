"""`apigw-requestid` values: AWS's 16-character base64 form, unique within and across workers;
X-Ray trace ids in AWS's shape."""

import base64
import re
import time

from portico._core import RequestIds


def test_ids_are_unique_and_shaped_like_aws():
    first, second = RequestIds(), RequestIds()
    ids = [first.next() for _ in range(50_000)] + [second.next() for _ in range(50_000)]
    assert len(set(ids)) == len(ids)
    for request_id in ids[:100]:
        assert len(request_id) == 16
        assert len(base64.b64decode(request_id)) == 11


def test_trace_ids_are_xray_roots_and_unique():
    ids = RequestIds()
    traces = [ids.trace_id() for _ in range(10_000)]
    assert len(set(traces)) == len(traces)
    for trace in traces[:100]:
        match = re.fullmatch(r"Root=1-([0-9a-f]{8})-[0-9a-f]{24}", trace)
        assert match is not None
        assert abs(int(match.group(1), 16) - time.time()) < 60
