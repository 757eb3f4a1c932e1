"""The gateway: the I/O shell that accepts tunnels and drives protocol plugin cores."""
