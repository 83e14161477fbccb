"""Mosquitto's ACL file: parsing and the per-client check.

Semantics of Mosquitto 2.0 (`aclfile__parse`, `mosquitto_acl_check_default`):

- `topic` lines before the first `user` line form the anonymous section (clients
  without a username); after `user NAME` they belong to NAME.
- `pattern` lines apply to every client; `%c` / `%u` are replaced by the client ID /
  username at every occurrence; a pattern with `%u` is skipped for anonymous clients;
  if any pattern exists, a client whose ID or username contains `+` or `#` is denied.
- `deny` entries are checked before the others of their list; the client's own list
  is checked before the patterns. A matching `deny` refuses; a matching entry whose
  access covers the request allows; anything else goes on to the next entry.
- Nothing matched: denied. Subscribe/unsubscribe are not checked by the file (read
  access is checked when each message is delivered).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from midge.protocol.topics import levels_match
from midge.security.readfile import read_security_file

READ = 1
WRITE = 2
SUBSCRIBE = 4
UNSUBSCRIBE = 8
DENY = 0  # access value of a `deny` line

ACCESS_WORDS = {"read": READ, "write": WRITE, "readwrite": READ | WRITE, "deny": DENY}


class AclFileError(Exception):
    """The ACL file cannot be read or has a fatal error (message names file:line)."""


@dataclass(frozen=True, slots=True)
class AclEntry:
    topic: str
    access: int  # READ, WRITE, READ|WRITE or DENY


@dataclass(slots=True)
class AclFile:
    """A parsed ACL file: the anonymous section, per-user sections and patterns."""

    anonymous: list[AclEntry] = field(default_factory=list)
    users: dict[str, list[AclEntry]] = field(default_factory=dict)
    patterns: list[AclEntry] = field(default_factory=list)
    has_anonymous_section: bool = False

    def entries_for(self, username: str | None) -> list[AclEntry] | None:
        """The client's own list (None when the file has no section for it)."""
        if username is None:
            return self.anonymous if self.has_anonymous_section else None
        return self.users.get(username)


def valid_filter(topic: str) -> bool:
    """A valid subscription filter (the rule `mosquitto_sub_topic_check` applies)."""
    if not topic or "\0" in topic or len(topic.encode("utf-8", "surrogatepass")) > 65535:
        return False
    levels = topic.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def _add(entries: list[AclEntry], entry: AclEntry) -> None:
    if entry.access == DENY:
        entries.insert(0, entry)
    else:
        entries.append(entry)


def parse_acl(text: str, source: str = "acl file", log=None) -> AclFile:
    """Parse the text of an ACL file; AclFileError names the first fatal line."""
    acl = AclFile()
    current: list[AclEntry] = acl.anonymous
    in_user_section = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        where = f"{source}:{number}"
        if not line or line.startswith("#"):
            continue
        words = line.split(" ")
        words = [w for w in words if w]
        if not words:
            raise AclFileError(f"{where}: Invalid line in ACL file.")
        keyword = words[0]
        if keyword in ("topic", "pattern"):
            rest = line.split(keyword, 1)[1].lstrip(" ")
            if not rest:
                raise AclFileError(f"{where}: Empty {keyword} in ACL file.")
            first, _, after = rest.partition(" ")
            after = after.lstrip(" ")
            if first in ACCESS_WORDS and after:
                access, topic = ACCESS_WORDS[first], after
            elif first in ACCESS_WORDS:
                # `topic read` is the topic "read" with readwrite access, as in Mosquitto.
                access, topic = READ | WRITE, first
            else:
                access, topic = READ | WRITE, rest
            if not valid_filter(topic):
                raise AclFileError(f"{where}: Invalid ACL topic \"{topic}\".")
            if keyword == "topic":
                if not in_user_section:
                    acl.has_anonymous_section = True
                _add(current, AclEntry(topic, access))
            else:
                if "%c" not in topic and "%u" not in topic and log is not None:
                    log.warning(f"Warning: {where}: ACL pattern \"{topic}\" does not contain '%c' or '%u'.")
                _add(acl.patterns, AclEntry(topic, access))
        elif keyword == "user":
            name = line.split("user", 1)[1].strip()
            if not name:
                raise AclFileError(f"{where}: Missing username in ACL file.")
            in_user_section = True
            current = acl.users.setdefault(name, [])
        else:
            raise AclFileError(f"{where}: Invalid line in ACL file: unknown keyword \"{keyword}\".")
    return acl


def load_acl_file(path: str, log=None) -> AclFile:
    return parse_acl(read_security_file(path, "acl_file", AclFileError), path, log)


# -- Matching -----------------------------------------------------------------------


Entries = tuple[tuple[tuple[str, ...], int], ...]


def _first_match(entries: Entries, levels: list[str], access: int) -> bool | None:
    for filter_levels, entry_access in entries:
        if levels_match(filter_levels, levels):
            if entry_access == DENY:
                return False
            if access & entry_access:
                return True
    return None


@dataclass(slots=True)
class CompiledAcl:
    """One client's checks, with patterns already substituted (built once per client)."""

    own: Entries  # the client's section (anonymous or its user), deny entries first
    patterns: Entries  # substituted patterns, deny entries first
    patterns_refused: bool  # patterns exist and the client's ID or username has + or #

    def check(self, topic: str, access: int) -> bool:
        levels = topic.split("/")
        decided = _first_match(self.own, levels, access)
        if decided is not None:
            return decided
        if self.patterns_refused:
            # Mosquitto refuses here, after the client's own entries (checked against
            # mosquitto 2.0.11: `topic write x` still works for client ID `a+b`).
            return False
        return _first_match(self.patterns, levels, access) is True


def compile_for(acl: AclFile, client_id: str | None, username: str | None) -> CompiledAcl:
    """The ACL as seen by one client: its own section, then patterns substituted."""
    own = tuple((tuple(e.topic.split("/")), e.access) for e in acl.entries_for(username) or [])
    refused = bool(acl.patterns) and any(c in (username or "") + (client_id or "") for c in "+#")
    patterns = []
    for entry in acl.patterns:
        if "%u" in entry.topic and username is None:
            continue
        topic = entry.topic.replace("%c", client_id or "").replace("%u", username or "")
        patterns.append((tuple(topic.split("/")), entry.access))
    return CompiledAcl(own, tuple(patterns), refused)
