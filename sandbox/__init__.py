"""Ferry sandbox: a strict local emulator of the five upload APIs Ferry talks to.

One Starlette app on one port serves the Jira site, the Assets gateway, the media service,
Marketplace v2 and awork. See sandbox/README.md.
"""

DEFAULT_PORT = 8900
DEFAULT_HOST = "127.0.0.1"
DEFAULT_DATA_DIR = ".ferry/sandbox"
DEFAULT_EMAIL = "ferry@example.com"
DEFAULT_TOKEN = "sandbox-token"
DEFAULT_BEARER = "sandbox-awork-token"
DEFAULT_JWT_TTL = 600
