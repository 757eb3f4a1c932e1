from tests.identity_support import fail_keyring, fake_broker, memory_keyring

__all__ = ["fail_keyring", "fake_broker", "memory_keyring"]
