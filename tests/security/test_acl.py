"""ACL file parsing and evaluation (reference 5.3)."""

from __future__ import annotations

import pytest

from midge.protocol.topics import levels_match
from midge.security.acl import DENY, READ, WRITE, AclEntry, AclFileError, compile_for, parse_acl


def allowed(text: str, topic: str, access: int, client_id: str = "cid", username: str | None = None) -> bool:
    return compile_for(parse_acl(text), client_id, username).check(topic, access)


class TestParsing:
    def test_access_words_and_default_readwrite(self):
        acl = parse_acl("topic a\ntopic read b\ntopic write c\ntopic readwrite d\ntopic deny e\n")
        assert acl.anonymous == [AclEntry("e", DENY), AclEntry("a", READ | WRITE), AclEntry("b", READ),
                                 AclEntry("c", WRITE), AclEntry("d", READ | WRITE)]

    def test_topic_with_spaces_after_access_word(self):
        assert parse_acl("topic read a b/c d").anonymous == [AclEntry("a b/c d", READ)]

    def test_lone_access_word_is_the_topic(self):
        assert parse_acl("topic read").anonymous == [AclEntry("read", READ | WRITE)]

    def test_user_sections_and_patterns_anywhere(self):
        acl = parse_acl("topic anon\nuser alice\ntopic a/#\npattern read p/%c\nuser  bob smith \ntopic b\n")
        assert acl.anonymous == [AclEntry("anon", READ | WRITE)]
        assert acl.users == {"alice": [AclEntry("a/#", READ | WRITE)], "bob smith": [AclEntry("b", READ | WRITE)]}
        assert acl.patterns == [AclEntry("p/%c", READ)]

    def test_comments_blank_lines_and_trailing_space(self):
        acl = parse_acl("# comment\n\n   \ntopic a   \n")
        assert acl.anonymous == [AclEntry("a", READ | WRITE)]

    @pytest.mark.parametrize("text, message", [
        ("  # indented comment", "acl:1: Invalid line"),
        ("topic a\nbogus x", "acl:2: Invalid line in ACL file: unknown keyword"),
        ("topic read a/#/b", "Invalid ACL topic"),
        ("topic a+", "Invalid ACL topic"),
        ("user", "Missing username"),
        ("topic", "Empty topic"),
    ])
    def test_fatal_lines_name_file_and_line(self, text, message):
        with pytest.raises(AclFileError, match=message):
            parse_acl(text, "acl")

    def test_pattern_without_substitution_warns(self, log):
        parse_acl("pattern a/b", "acl", log)
        assert "does not contain" in log.text()


class TestMatching:
    @pytest.mark.parametrize("filter_, topic, expected", [
        ("a/b", "a/b", True), ("a/+", "a/b", True), ("a/#", "a", True), ("a/#", "a/b/c", True),
        ("#", "a", True), ("+/+", "a/b", True), ("+", "a/b", False), ("a/b", "a/b/c", False),
        ("#", "$SYS/x", False), ("+/x", "$SYS/x", False), ("$SYS/#", "$SYS/x", True),
        ("a//b", "a//b", True), ("+/+", "/b", True),
    ])
    def test_topic_matches(self, filter_, topic, expected):
        assert levels_match(tuple(filter_.split("/")), topic.split("/")) is expected


class TestEvaluation:
    def test_no_match_is_denied(self):
        assert not allowed("topic a", "b", READ)

    def test_anonymous_section_does_not_apply_to_users(self):
        text = "topic a\nuser u\ntopic b\n"
        assert allowed(text, "a", READ) and not allowed(text, "b", READ)
        assert allowed(text, "b", READ, username="u") and not allowed(text, "a", READ, username="u")
        assert not allowed(text, "a", READ, username="other")

    def test_first_match_without_access_goes_on(self):
        # Checked against mosquitto 2.0.11: `read a/#` then `write a/b` allows publishing to a/b.
        text = "user u\ntopic read a/#\ntopic write a/b\n"
        assert allowed(text, "a/b", WRITE, username="u")
        assert not allowed(text, "a/c", WRITE, username="u")

    def test_deny_is_checked_first(self):
        text = "user u\ntopic readwrite c/d\ntopic deny c/#\n"
        assert not allowed(text, "c/d", READ, username="u")

    def test_patterns_substitute_every_occurrence(self):
        text = "pattern readwrite %u/%c/%u/#"
        assert allowed(text, "ann/dev1/ann/x", WRITE, client_id="dev1", username="ann")
        assert not allowed(text, "ann/dev2/ann/x", WRITE, client_id="dev1", username="ann")

    def test_user_pattern_skipped_for_anonymous(self):
        text = "pattern read %u/#\npattern read c/%c"
        assert not allowed(text, "/x", READ)  # %u would become "" for an anonymous client
        assert allowed(text, "c/cid", READ)

    def test_patterns_apply_after_the_users_list(self):
        text = "user u\ntopic deny x/#\npattern readwrite x/%c"
        assert not allowed(text, "x/cid", READ, username="u")
        assert allowed(text, "x/cid", READ, username="v")

    @pytest.mark.parametrize("client_id, username", [("a+b", "u"), ("c", "u#")])
    def test_wildcards_in_identity_refuse_the_patterns(self, client_id, username):
        # Checked against mosquitto 2.0.11: the client's own entries still apply.
        text = f"user {username}\ntopic read own\npattern readwrite #"
        assert allowed(text, "own", READ, client_id=client_id, username=username)
        assert not allowed(text, "other", READ, client_id=client_id, username=username)
        assert allowed(text, "other", READ, client_id="plain", username="plain")

    def test_dollar_topics_need_a_dollar_entry(self):
        assert not allowed("topic #", "$SYS/broker/uptime", READ)
        assert allowed("topic read $SYS/#", "$SYS/broker/uptime", READ)
