"""edgebridge: the shared contract every component is built against.

The event envelope and codec, topic names, configuration, logging, metrics, retry policy, the
``edgebridge`` CLI and the local development brokers. Nothing here imports a component at module level.
"""

from edgebridge.errors import ConfigError, EdgeBridgeError, EnvelopeError

__version__ = "0.1.0"

__all__ = ["ConfigError", "EdgeBridgeError", "EnvelopeError", "__version__"]
