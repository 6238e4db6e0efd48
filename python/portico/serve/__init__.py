"""Assembling what serves: the Python side of the pipeline (`user_code`) and the serving
processes (`process`: Granian's workers, each with the core's edge on the public port)."""
