"""The topic <-> subject mapping: total, reversible, and matching as MQTT matches.

The NATS side of the equivalence is NATS's documented subject matching (`*` one token,
`>` one or more trailing tokens), checked here against a real nats-server too."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings, strategies as st

from midge.broker.subjects import (
    decode_level, encode_level, filter_to_subjects, subject_to_filter, subject_to_topic, topic_to_subject,
)
from midge.protocol.topics import topic_matches, valid_topic_filter, valid_topic_name

PREFIX = "midge.m"

# Levels built to hit every hard case: `.`, spaces, `*`, `>`, `$`, `_`, escapes, UTF-8.
_chars = st.one_of(st.sampled_from(list("ab.* >$_-0 é/") + ["_2E", "\u00a0", "\U0001f600", "\t"]),
                   st.characters(blacklist_characters="+#/\0", blacklist_categories=("Cs",)))
levels = st.lists(_chars.filter(lambda c: c != "/"), max_size=6).map("".join)
topics = st.lists(levels, min_size=1, max_size=5).map("/".join).filter(valid_topic_name)


@st.composite
def filters(draw):
    parts = draw(st.lists(st.one_of(levels, st.just("+"), st.sampled_from(["a", "$SYS", ""])),
                          min_size=1, max_size=5))
    if draw(st.booleans()):
        parts.append("#")
    return "/".join(parts)


def nats_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` exactly one token, `>` one or more at the end."""
    want, have = pattern.split("."), subject.split(".")
    for index, token in enumerate(want):
        if token == ">":
            return len(have) > index
        if index >= len(have) or (token != "*" and token != have[index]):
            return False
    return len(want) == len(have)


def valid_subject(subject: str) -> bool:
    return all(t and t.isascii() and t.isprintable() and " " not in t for t in subject.split("."))


@settings(max_examples=500)
@given(topics)
def test_topic_round_trip(topic):
    subject = topic_to_subject(topic, PREFIX)
    assert valid_subject(subject)
    assert "*" not in subject and ">" not in subject
    assert subject_to_topic(subject, PREFIX) == topic


@settings(max_examples=500)
@given(levels)
def test_level_round_trip(level):
    assert decode_level(encode_level(level)) == level


@settings(max_examples=300)
@given(filters())
def test_filter_round_trip(topic_filter):
    if not valid_topic_filter(topic_filter):
        return
    subjects = filter_to_subjects(topic_filter, PREFIX)
    assert all(valid_subject(s) for s in subjects)
    assert subject_to_filter(subjects[0], PREFIX) == topic_filter


@settings(max_examples=1000)
@given(filters(), topics)
def test_wildcard_equivalence(topic_filter, topic):
    if not valid_topic_filter(topic_filter):
        return
    subject = topic_to_subject(topic, PREFIX)
    nats = [s for s in filter_to_subjects(topic_filter, PREFIX) if nats_matches(s, subject)]
    assert bool(nats) == topic_matches(topic_filter, topic)
    assert len(nats) <= 1   # never two deliveries of one message for one filter


@settings(max_examples=1000)
@given(topics, topics)
def test_filter_made_from_topic_matches_itself_and_others_like_mqtt(a, b):
    # A topic used as a filter (no wildcard) matches exactly the same topic.
    assert any(nats_matches(s, topic_to_subject(b, PREFIX)) for s in filter_to_subjects(a, PREFIX)) == (a == b)


CASES = [
    ("#", ["a", "a/b", "/", "a b", "x.y", "*", ">", "é/ü"], ["$SYS/x", "$"]),
    ("a/#", ["a", "a/b", "a//", "a/b/c"], ["ab", "b/a", "$a"]),
    ("+", ["a", "", "*"], ["a/b", "$x"]),
    ("+/+", ["/", "a/", "a/b"], ["a", "a/b/c"]),
    ("$SYS/#", ["$SYS", "$SYS/broker/uptime"], ["SYS/x"]),
    ("a.b/ c", ["a.b/ c"], ["a/b/ c", "a.b/c"]),
]


def test_real_nats_server_agrees(nats_server):
    """The same answers from nats-server itself, for the hard cases."""
    import nats

    async def main():
        nc = await nats.connect(nats_server.url)
        try:
            for topic_filter, hits, misses in CASES:
                subs = [await nc.subscribe(s) for s in filter_to_subjects(topic_filter, PREFIX)]
                await nc.flush()
                for topic in hits + misses:
                    await nc.publish(topic_to_subject(topic, PREFIX), b"")
                # A marker published last on a subject every case subscribes to: when it
                # arrives, everything published before it has been delivered (NATS keeps
                # the order of one publisher).
                done = asyncio.Event()

                async def marker(msg):
                    done.set()

                end = await nc.subscribe(PREFIX + ".end", cb=marker)
                await nc.publish(PREFIX + ".end", b"")
                await asyncio.wait_for(done.wait(), 10)
                await end.unsubscribe()
                got = []
                for sub in subs:   # every earlier message is already in its subscription's queue
                    while sub.pending_msgs:
                        got.append((await sub.next_msg()).subject)
                assert sorted(subject_to_topic(s, PREFIX) for s in got) == sorted(hits), topic_filter
                for sub in subs:
                    await sub.unsubscribe()
        finally:
            await nc.close()

    asyncio.run(main())
