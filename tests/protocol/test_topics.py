"""Topic names, filters, matching and shared subscriptions (MQTT 5.0 4.7, 4.8.2)."""

import pytest

from midge.protocol.errors import TopicFilterInvalid
from midge.protocol.topics import split_shared, topic_matches, valid_topic_filter, valid_topic_name


@pytest.mark.parametrize("name, valid", [
    ("a", True), ("a/b/c", True), ("/", True), ("a//b", True), ("$SYS/x", True), ("caf\u00e9", True),
    ("", False), ("a/+", False), ("#", False), ("a#", False), ("a\0b", False), ("\ud800", False),
    ("x" * 65535, True), ("x" * 65536, False), ("\u00e9" * 32768, False),
])
def test_valid_topic_name(name, valid):
    assert valid_topic_name(name) is valid


@pytest.mark.parametrize("topic_filter, valid", [
    ("a", True), ("#", True), ("+", True), ("a/#", True), ("a/+/b", True), ("+/+", True),
    ("/#", True), ("$SYS/#", True), ("a//+", True),
    ("", False), ("a/#/b", False), ("a#", False), ("#/", False), ("a/b#", False), ("a+", False),
    ("+a/b", False), ("a/+b", False), ("a\0", False), ("x" * 65536, False),
])
def test_valid_topic_filter(topic_filter, valid):
    assert valid_topic_filter(topic_filter) is valid


@pytest.mark.parametrize("topic_filter, topic, matches", [
    ("a/b", "a/b", True), ("a/b", "a/c", False), ("a/+", "a/b", True), ("a/+", "a/b/c", False),
    ("a/+", "a/", True), ("a/#", "a", True), ("a/#", "a/b/c", True), ("#", "a/b", True),
    ("+/+", "/a", True), ("+", "/a", False), ("/+", "/a", True), ("a/+/c", "a/b/c", True),
    ("a/+/c", "a/b/d", False), ("a/b", "a/b/c", False), ("a/b/c", "a/b", False),
    # 4.7.2: wildcards at the first level do not match $-topics.
    ("#", "$SYS/x", False), ("+/x", "$SYS/x", False), ("$SYS/#", "$SYS/x", True),
    ("$SYS/+", "$SYS/x", True), ("$SYS", "$SYS", True),
])
def test_topic_matches(topic_filter, topic, matches):
    assert topic_matches(topic_filter, topic) is matches


@pytest.mark.parametrize("topic_filter, result", [
    ("a/b", None), ("$share", None), ("$sharex/g/a", None),
    ("$share/g/a/b", ("g", "a/b")), ("$share/g/#", ("g", "#")), ("$share/g//", ("g", "/")),
])
def test_split_shared(topic_filter, result):
    assert split_shared(topic_filter) == result


@pytest.mark.parametrize("topic_filter", [
    "$share/", "$share//a", "$share/g", "$share/g/", "$share/+/a", "$share/g#/a", "$share/g/a/#/b",
])
def test_split_shared_invalid(topic_filter):
    with pytest.raises(TopicFilterInvalid):
        split_shared(topic_filter)
