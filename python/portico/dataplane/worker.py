"""The app factory Granian calls in each worker process.

The CLI validates the configuration once in the main process, then hands its location (and the
`--function` declarations and shared-bucket file) to the workers through the environment: workers
are separate processes and build their own runtimes, never sharing Python objects.
"""

from __future__ import annotations

import json
import os

from portico.config.models import Config
from portico.dataplane.app import DataPlane
from portico.dataplane.build import build_dataplane
from portico.dataplane.plugins import load_plugins

ENV_CONFIG = "PORTICO_CONFIG"
ENV_FUNCTIONS = "PORTICO_FUNCTIONS"
ENV_SHARED_BUCKETS = "PORTICO_SHARED_BUCKETS"
ENV_PLUGINS = "PORTICO_PLUGINS"
# The control plane's data directory: set (by `portico serve --admin-port`) when the workers also
# serve the admin-created APIs and follow their changes live.
ENV_DATA_DIR = "PORTICO_DATA_DIR"
# Set (JSON: listener_fd, backend, secret) when each worker runs the core's edge in front of
# Granian: the edge accepts from the inherited public socket `listener_fd`, and Granian listens on
# the Unix socket `backend`.
ENV_EDGE = "PORTICO_EDGE"


def create_app() -> DataPlane:
    # An empty PORTICO_CONFIG: no config file (admin-created APIs only).
    config_path = os.environ.get(ENV_CONFIG) or Config()
    functions = json.loads(os.environ.get(ENV_FUNCTIONS, "[]"))
    plugins = load_plugins(json.loads(os.environ.get(ENV_PLUGINS, "[]")))
    app = build_dataplane(
        config_path,
        function_specs=functions,
        plugins=plugins,
        shared_buckets_path=os.environ.get(ENV_SHARED_BUCKETS) or None,
        store=os.environ.get(ENV_DATA_DIR) or None,
    )
    edge = os.environ.get(ENV_EDGE)
    if edge:
        settings = json.loads(edge)
        # A descriptor of the worker's own: the edge closes it when it stops.
        app.attach_edge(os.dup(settings["listener_fd"]), settings["backend"], settings["secret"])
    return app
