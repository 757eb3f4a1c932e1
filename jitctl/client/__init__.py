"""Runs on the user's machine: login flows, token cache, tunnels, the broker API client."""
