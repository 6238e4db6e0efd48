"""A handler that counts its calls, so that tests can tell a request never reached it."""

import os

from handlers.basic import echo


def counted_echo(event, context):
    """`echo`, after appending a line to the file named by PORTICO_TEST_CALLS."""
    with open(os.environ["PORTICO_TEST_CALLS"], "a") as calls:
        calls.write("call\n")
    return echo(event, context)
