"""The subscription tree: topic filters keyed level by level.

Matching a topic walks only the branches its levels (plus `+` and `#`) select, so
the cost depends on the depth of the topic and the wildcards present, not on the
number of subscriptions. Results are cached per topic until the tree changes:
most traffic repeats a small set of topics, and a cache hit saves the walk and
the list building for every message.
"""

from __future__ import annotations

_CACHE_LIMIT = 20000  # entries; the cache is dropped whole when it grows past this


_EMPTY = ((), ())


class Subscription:
    """One filter of one session, with its v5 options."""

    __slots__ = ("session", "filter", "qos", "no_local", "retain_as_published",
                 "retain_handling", "identifier", "group")

    def __init__(self, session, topic_filter, qos, no_local=False, retain_as_published=False,
                 retain_handling=0, identifier=None, group=None):
        self.session = session
        self.filter = topic_filter      # without the $share/group/ prefix
        self.qos = qos
        self.no_local = no_local
        self.retain_as_published = retain_as_published
        self.retain_handling = retain_handling
        self.identifier = identifier
        self.group = group              # shared subscription group name, or None


class SharedGroup:
    """The sessions sharing `$share/<name>/<filter>`: each message goes to one of them."""

    __slots__ = ("name", "members", "next_index")

    def __init__(self, name):
        self.name = name
        self.members: list[Subscription] = []
        self.next_index = 0

    def pick(self) -> Subscription | None:
        """Round robin, preferring members whose session is connected."""
        members = self.members
        count = len(members)
        if not count:
            return None
        start = self.next_index % count
        for offset in range(count):
            sub = members[(start + offset) % count]
            if sub.session.client is not None:
                self.next_index = start + offset + 1
                return sub
        self.next_index = start + 1
        return members[start]


class _Node:
    __slots__ = ("children", "subs", "shared")

    def __init__(self):
        self.children: dict[str, _Node] = {}
        self.subs: dict = {}          # session -> Subscription
        self.shared: dict = {}        # group name -> SharedGroup


class SubscriptionTree:
    def __init__(self):
        self._root = _Node()
        self._cache: dict[str, tuple] = {}
        self._session_cache: dict[str, tuple] = {}
        self.count = 0
        self.shared_count = 0

    # -- changes ---------------------------------------------------------------------

    def add(self, sub: Subscription) -> bool:
        """Insert or replace; return True when the session had no such subscription."""
        node = self._root
        for level in sub.filter.split("/"):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node()
            node = child
        self._cache.clear()
        self._session_cache.clear()
        if sub.group is None:
            is_new = sub.session not in node.subs
            node.subs[sub.session] = sub
            if is_new:
                self.count += 1
            return is_new
        group = node.shared.get(sub.group)
        if group is None:
            group = node.shared[sub.group] = SharedGroup(sub.group)
        for index, member in enumerate(group.members):
            if member.session is sub.session:
                group.members[index] = sub
                return False
        group.members.append(sub)
        self.count += 1
        self.shared_count += 1
        return True

    def remove(self, session, topic_filter: str, group: str | None = None) -> bool:
        path = [self._root]
        node = self._root
        levels = topic_filter.split("/")
        for level in levels:
            node = node.children.get(level)
            if node is None:
                return False
            path.append(node)
        removed = False
        if group is None:
            if node.subs.pop(session, None) is not None:
                removed = True
        else:
            shared = node.shared.get(group)
            if shared is not None:
                for index, member in enumerate(shared.members):
                    if member.session is session:
                        del shared.members[index]
                        removed = True
                        self.shared_count -= 1
                        break
                if not shared.members:
                    del node.shared[group]
        if not removed:
            return False
        self.count -= 1
        self._cache.clear()
        self._session_cache.clear()
        # Prune empty branches so a churn of unique topics does not leak nodes.
        for depth in range(len(levels), 0, -1):
            child = path[depth]
            if child.children or child.subs or child.shared:
                break
            del path[depth - 1].children[levels[depth - 1]]
        return True

    # -- matching --------------------------------------------------------------------

    def match(self, topic: str) -> tuple:
        """(subscriptions, shared groups) whose filter matches `topic`."""
        cached = self._cache.get(topic)
        if cached is not None:
            return cached
        subs: list = []
        groups: list = []
        self._walk(self._root, topic.split("/"), 0, subs, groups, topic.startswith("$"))
        result = (subs, groups)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._session_cache.clear()
        self._cache[topic] = result
        return result

    def _walk(self, node, levels, index, subs, groups, dollar):
        """Collect the subscriptions and groups under `node` matching `levels[index:]`.

        Iterative, with a list as the stack: a deep topic must not reach Python's
        recursion limit (issue 14: 1,000 levels closed the publisher with a
        RecursionError). The order is the recursive one: `#`, then the `+` branch,
        then the exact level.
        """
        last = len(levels)
        stack = [(node, index)]
        pop = stack.pop
        push = stack.append
        while stack:
            node, index = pop()
            if index == last:
                if node.subs:
                    subs.extend(node.subs.values())
                if node.shared:
                    groups.extend(node.shared.values())
                # "a/#" also matches "a" (the parent level).
                multi = node.children.get("#")
                if multi is not None:
                    if multi.subs:
                        subs.extend(multi.subs.values())
                    if multi.shared:
                        groups.extend(multi.shared.values())
                continue
            children = node.children
            exact = children.get(levels[index])
            if exact is not None:
                push((exact, index + 1))
            # A leading wildcard never matches a topic starting with "$" (MQTT 4.7.2).
            if not (dollar and index == 0):
                multi = children.get("#")
                if multi is not None:
                    if multi.subs:
                        subs.extend(multi.subs.values())
                    if multi.shared:
                        groups.extend(multi.shared.values())
                single = children.get("+")
                if single is not None:
                    push((single, index + 1))

    def match_sessions(self, topic: str) -> tuple:
        """(entries, shared groups) for `topic`, one entry per session:
        (session, highest QoS, any retain-as-published, subscription ids or None,
        any no-local, the session's matching subscriptions).

        Cached like `match`: the per-session merge of overlapping subscriptions is
        done once per topic and tree version, not once per message.
        """
        cached = self._session_cache.get(topic)
        if cached is not None:
            return cached
        if not self.count:
            return _EMPTY   # no subscriptions at all: skip the walk and the cache entry
        subs: list = []
        groups: list = []
        self._walk(self._root, topic.split("/"), 0, subs, groups, topic.startswith("$"))
        if not subs and not groups:
            # Not cached: a stream of unique topics nobody subscribes to (retained
            # stores, telemetry) would only churn the cache; the walk that found
            # nothing was short.
            return _EMPTY
        result = (merge_by_session(subs), groups)
        if len(self._session_cache) >= _CACHE_LIMIT:
            self._session_cache.clear()
        self._session_cache[topic] = result
        return result

    def has_subscribers(self, topic: str) -> bool:
        subs, groups = self.match(topic)
        return bool(subs) or any(group.members for group in groups)


def merge_by_session(subs) -> tuple:
    """One delivery entry per session for its overlapping matching subscriptions:
    (session, highest QoS, any retain-as-published, subscription ids or None, any
    no-local, the session's matching subscriptions), in the order sessions first match."""
    merged: dict = {}
    for sub in subs:
        entry = merged.get(sub.session)
        if entry is None:
            merged[sub.session] = [sub.qos, sub.retain_as_published,
                                   [sub.identifier] if sub.identifier is not None else None,
                                   sub.no_local, [sub]]
            continue
        if sub.qos > entry[0]:
            entry[0] = sub.qos
        entry[1] = entry[1] or sub.retain_as_published
        if sub.identifier is not None:
            if entry[2] is None:
                entry[2] = [sub.identifier]
            elif sub.identifier not in entry[2]:
                entry[2].append(sub.identifier)
        entry[3] = entry[3] or sub.no_local
        entry[4].append(sub)
    return tuple((session, e[0], e[1], e[2], e[3], e[4]) for session, e in merged.items())
