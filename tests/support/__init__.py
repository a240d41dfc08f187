"""The tests' harness: real servers, a client, the process helpers and photos. ``bench`` uses it too."""

from .photos import make_photo
from .processes import (
    children_of,
    descendants,
    free_port,
    is_alive,
    rss_kb,
    stop_process,
    wait_for,
    wait_for_port,
)
from .servers import ROOT, Client, RedisServer, Server, ready

__all__ = ["ROOT", "Client", "RedisServer", "Server", "children_of", "descendants", "free_port", "is_alive",
           "make_photo", "ready", "rss_kb", "stop_process", "wait_for", "wait_for_port"]
