"""Keys tests hand to `verify_archive`."""

# For archives the test runs without a signing key: no checkpoint needs a key to check it against.
UNSIGNED = "00" * 32
