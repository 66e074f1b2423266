"""``edgebridge dashboard``: a read-only web page of the fleet and the pipeline, live.

Reads what edgebridge already has, never a store of its own: the device registry (``iot.devices``),
the SQLite sink's ``readings`` table (opened read-only), the retained ``status`` topic over MQTT,
Kafka's offsets and consumer groups, the dead-letter topic's headers, and the components' Prometheus
endpoints. Modules:

- :mod:`dashboard.config`: ``DashboardConfig`` (``[web]``, ``[sources]``, ``[kafka]``, ``[topics]``,
  ``[mqtt]``);
- :mod:`dashboard.auth`: the login (a token, as a bearer header, basic auth or a session cookie);
- :mod:`dashboard.readings`: the sink's rows, read-only;
- :mod:`dashboard.registry_feed`, :mod:`dashboard.status_feed`: the registry and online/offline, followed;
- :mod:`dashboard.pipeline`: offsets, rates, lag, dead letters by reason, metrics endpoints;
- :mod:`dashboard.svg`: sparklines and charts drawn on the server;
- :mod:`dashboard.pages`: the HTML; :mod:`dashboard.app`: the routes and the live stream;
- :mod:`dashboard.cli`: the command.
"""

from __future__ import annotations

__all__ = ["DashboardConfig"]

from dashboard.config import DashboardConfig
