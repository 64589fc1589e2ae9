"""User-facing errors: each message says what went wrong and what to do about it."""

# What to do about a bundle that cannot be used (the end of many BundleError messages).
REEXPORT = "re-export it with `firstwords export CHECKPOINT -o BUNDLE --config device_configs/<device>.toml`"


class FirstwordsError(Exception):
    """Base of every error the CLI shows as `error: <message>` (exit code 2, no traceback)."""


class ConfigError(FirstwordsError):
    """A device or model config file is malformed; the message names the file, the key and what is allowed."""


class BundleError(FirstwordsError):
    """A model bundle is missing a file, fails a checksum, has an unknown version or wrong shapes."""


class DataError(FirstwordsError):
    """Training / evaluation / transcript data cannot be read."""


class MemoryStoreError(FirstwordsError):
    """The associative memory's database cannot be opened or written."""


class InputError(FirstwordsError):
    """A frame, audio block or query is of the wrong shape, dtype or value range."""


class MissingExtraError(FirstwordsError):
    """An optional dependency is not installed; the message says which extra to install."""


class DeviceError(FirstwordsError):
    """A camera or microphone cannot be opened or stopped delivering."""
