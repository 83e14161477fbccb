"""Authentication and authorization: Mosquitto's password, ACL and PSK files, plugins.

`Security` (manager.py) is what the broker uses; the file formats live in
passwords.py, acl.py and psk.py, Python plugins in plugins.py, the failed-login
throttle in throttle.py, and TLS identity -> username in identity.py.
"""

from midge.security.acl import READ, SUBSCRIBE, UNSUBSCRIBE, WRITE
from midge.security.manager import (BAD_USERNAME_OR_PASSWORD, NOT_AUTHORIZED, SUCCESS, PendingAuth, Security,
                                    SecurityError, dollar_topic_allowed)

__all__ = ["Security", "SecurityError", "PendingAuth", "dollar_topic_allowed", "READ", "WRITE", "SUBSCRIBE", "UNSUBSCRIBE",
           "SUCCESS", "NOT_AUTHORIZED", "BAD_USERNAME_OR_PASSWORD"]
