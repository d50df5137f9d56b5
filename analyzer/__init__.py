"""wsdiag: find out why a WebSocket handshake (an ESP32's, or anyone's) was refused, from packets."""

__version__ = "0.1.0"
