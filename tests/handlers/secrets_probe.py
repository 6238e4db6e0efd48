"""A Lambda handler that reports what it can see of the admin key (tests/test_admin_faults.py).

Each import appends `<pid> <PORTICO_ADMIN_KEY or None>` to the file named by PORTICO_PROBE_FILE:
the server process imports it when it validates the `--function`s (and a worker that does not
inherit it when it loads them).
"""

import json
import os
import sys

ADMIN_KEY_AT_IMPORT = os.environ.get("PORTICO_ADMIN_KEY")
if os.environ.get("PORTICO_PROBE_FILE"):
    with open(os.environ["PORTICO_PROBE_FILE"], "a") as probe:
        probe.write(f"{os.getpid()} {ADMIN_KEY_AT_IMPORT}\n")


def admin_key_seen(event, context):
    seen = {
        "pid": os.getpid(),
        "at_import": ADMIN_KEY_AT_IMPORT,
        "at_call": os.environ.get("PORTICO_ADMIN_KEY"),
        "argv": sys.argv,
    }
    return {"statusCode": 200, "body": json.dumps(seen)}
