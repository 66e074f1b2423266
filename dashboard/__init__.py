"""``edgebridge dashboard``: a read-only web page of the fleet and the pipeline, live.

Reads what edgebridge already has, never a store of its own: the device registry (``iot.devices``),
the SQLite or the PostgreSQL sink's ``readings`` table (read-only), the retained ``status`` topic over
MQTT, Kafka's offsets and consumer groups, the dead-letter topic's headers, the commands and their
replies, and the components' Prometheus endpoints. Modules:

- :mod:`dashboard.config`: ``DashboardConfig`` (``[web]``, ``[sources]``, ``[kafka]``, ``[topics]``,
  ``[mqtt]``);
- :mod:`dashboard.auth`: the login (a token, as a bearer header, basic auth or a session cookie);
- :mod:`dashboard.readings`, :mod:`dashboard.readings_pg`: the SQLite or PostgreSQL sink's rows,
  read-only; :mod:`dashboard.recent`: the SQLite sink's newest rows and hour, followed by rowid;
- :mod:`dashboard.registry_feed`, :mod:`dashboard.status_feed`: the registry and online/offline, followed;
- :mod:`dashboard.pipeline`: offsets, rates, lag, dead letters by reason, metrics endpoints
  (:mod:`dashboard.pipeline_view` its values, :mod:`dashboard.hops` the figures by hop,
  :mod:`dashboard.commands` each device's commands and replies);
- :mod:`dashboard.svg`: sparklines and charts drawn on the server;
- :mod:`dashboard.pages`: the HTML; :mod:`dashboard.fleet_table`: the fleet's rows kept rendered, and
  what each open page must be sent; :mod:`dashboard.app`: the routes and the live stream;
- :mod:`dashboard.cli`: the command.
"""

from __future__ import annotations

__all__ = ["DashboardConfig"]

from dashboard.config import DashboardConfig
