"""A handler that counts its calls (per serving process): tests of rejections read the count from
the next answer that passes, so that a call made for a refused request cannot go unseen."""

import json
import os
import threading

_lock = threading.Lock()
_calls = 0


def counted(event, context):
    global _calls
    with _lock:
        _calls += 1
        calls = _calls
    return {"statusCode": 200, "body": json.dumps({"calls": calls, "pid": os.getpid(), "event": event})}
