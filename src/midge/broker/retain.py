"""The retained-message store, a tree keyed by topic level.

A subscribe to a filter walks only the branches the filter selects; a `#`
subscribe visits each stored topic once (no string matching per topic).
"""

from __future__ import annotations


# A leaf has no children dict until it gets a child: most nodes of a retained tree are
# leaves, and an empty dict is 64 bytes per retained topic.
_NO_CHILDREN: dict = {}


class _Node:
    __slots__ = ("children", "message")

    def __init__(self):
        self.children: dict[str, _Node] = _NO_CHILDREN  # never written to: see store()
        self.message = None


class RetainStore:
    def __init__(self):
        self._root = _Node()
        self.count = 0
        self.bytes = 0
        self.changes = None   # midge.persist Changes while persistence is on

    def messages(self) -> list:
        """Every retained message ($ topics included)."""
        out: list = []
        self._all(self._root, out)
        return out

    def store(self, message) -> None:
        """Store `message` for its topic; an empty payload clears the topic."""
        if self.changes is not None:
            self.changes.retained.add(message.topic)
        levels = message.topic.split("/")
        if not message.payload:
            self._clear(levels)
            return
        node = self._root
        for level in levels:
            children = node.children
            child = children.get(level)
            if child is None:
                if children is _NO_CHILDREN:
                    children = node.children = {}
                child = children[level] = _Node()
            node = child
        if node.message is None:
            self.count += 1
        else:
            self.bytes -= len(node.message.payload)
        self.bytes += len(message.payload)
        node.message = message

    def _clear(self, levels) -> None:
        path = [self._root]
        node = self._root
        for level in levels:
            node = node.children.get(level)
            if node is None:
                return
            path.append(node)
        if node.message is None:
            return
        self.count -= 1
        self.bytes -= len(node.message.payload)
        if self.changes is not None:
            self.changes.retained.add("/".join(levels))
        node.message = None
        for depth in range(len(levels), 0, -1):
            child = path[depth]
            if child.children or child.message is not None:
                break
            parent = path[depth - 1]
            del parent.children[levels[depth - 1]]
            if not parent.children and parent is not self._root:
                parent.children = _NO_CHILDREN

    def get(self, topic: str):
        node = self._root
        for level in topic.split("/"):
            node = node.children.get(level)
            if node is None:
                return None
        return node.message

    def match(self, topic_filter: str) -> list:
        """Retained messages whose topic matches `topic_filter`."""
        out: list = []
        self._collect(self._root, topic_filter.split("/"), 0, out)
        return out

    def _collect(self, node, levels, index, out):
        if index == len(levels):
            if node.message is not None:
                out.append(node.message)
            return
        level = levels[index]
        if level == "#":
            if index > 0 and node.message is not None:
                out.append(node.message)      # "a/#" matches "a"
            for name, child in node.children.items():
                if index == 0 and name.startswith("$"):
                    continue                  # "#" never matches "$" topics
                self._all(child, out)
        elif level == "+":
            for name, child in node.children.items():
                if index == 0 and name.startswith("$"):
                    continue
                self._collect(child, levels, index + 1, out)
        else:
            child = node.children.get(level)
            if child is not None:
                self._collect(child, levels, index + 1, out)

    def _all(self, node, out):
        # Iterative: a deep tree must not hit the recursion limit.
        stack = [node]
        append = out.append
        while stack:
            current = stack.pop()
            if current.message is not None:
                append(current.message)
            if current.children:
                stack.extend(current.children.values())

    def expire(self, now) -> int:
        """Drop retained messages whose expiry has passed; return how many."""
        expired: list = []   # Message objects
        self._all(self._root, expired)
        removed = 0
        for message in expired:
            if message.expired(now):
                self._clear(message.topic.split("/"))
                removed += 1
        return removed
