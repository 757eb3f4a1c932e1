"""The broker service: TLS API and tunnel gateway in one asyncio process."""
