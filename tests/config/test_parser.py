"""mosquitto.conf parsing: Mosquitto 2.0's rules (reference §1, §9.3) and midge's refusals."""

from __future__ import annotations

import pytest

from midge.config import (
    ConfigError,
    default_config,
    load_config,
    load_config_string,
    read_config_string,
)


def load(text, **kw):
    return load_config_string(text, name="m.conf", **kw)


def error_of(text, **kw) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(text, **kw)
    return info.value


def errors_of(text, **kw) -> list[str]:
    return [str(e) for e in read_config_string(text, name="m.conf", **kw).errors]


def warnings_of(text, **kw) -> list[str]:
    return read_config_string(text, name="m.conf", **kw).warnings


class TestSyntax:
    def test_comment_only_in_first_column(self):
        config = load("# a comment\nlistener 1883\n\n#allow_anonymous true\n")
        assert config.security.allow_anonymous is False

    def test_indented_hash_is_an_error_like_mosquitto(self):
        err = error_of("listener 1883\n   # indented\n")
        assert (err.file, err.line, err.option) == ("m.conf", 2, "#")
        assert "first character" in str(err)

    def test_tab_after_name_gets_a_clear_message(self):
        err = error_of("listener 1883\nallow_anonymous\ttrue\n")
        assert err.option == "allow_anonymous" and err.line == 2
        assert "tab" in err.message and "space" in err.message

    def test_unknown_option_suggests_the_closest(self):
        err = error_of("listener 1883\nallow_anonymus true\n")
        assert str(err) == "m.conf:2: allow_anonymus: unknown option; did you mean allow_anonymous?"

    def test_unknown_option_without_near_name(self):
        assert str(error_of("zzzz 1\n")) == "m.conf:1: zzzz: unknown option"

    def test_crlf_lines(self):
        config = load("listener 1883\r\nallow_anonymous true\r\npassword_file /etc/pw\r\n")
        assert config.security.allow_anonymous is True
        assert config.security.password_file == "/etc/pw"

    def test_string_takes_rest_of_line_trimmed(self):
        config = load("listener 1883\nauto_id_prefix   my prefix-  \n")
        assert config.security.auto_id_prefix == "my prefix-"

    def test_empty_string_value_is_an_error(self):
        err = error_of("listener 1883\nauto_id_prefix\n")
        assert err.option == "auto_id_prefix" and "empty" in err.message

    def test_trailing_comment_on_path_refused_with_hint(self):
        err = error_of("listener 1883\npassword_file /etc/pw # users\n")
        assert err.option == "password_file" and "comment" in err.message

    def test_trailing_comment_on_plain_string_warns(self):
        result = read_config_string("listener 1883\nauto_id_prefix x # y\n", "m.conf")
        assert not result.errors
        assert result.config.security.auto_id_prefix == "x # y"
        assert any("auto_id_prefix" in w for w in result.warnings)

    def test_duplicate_string_option_in_one_scope(self):
        err = error_of("listener 1883\npassword_file /a\npassword_file /b\n")
        assert err.line == 3 and "already set at m.conf:2" in err.message

    def test_duplicate_global_security_option_across_listeners(self):
        # per_listener_settings false: both lines are the one global password_file.
        err = error_of("listener 1\npassword_file /a\nlistener 2\npassword_file /b\n")
        assert err.line == 4

    def test_collects_every_error(self):
        errors = errors_of("listener 1883\nfoo 1\nmax_qos 9\nallow_anonymous maybe\n")
        assert [e.split(":")[1] for e in errors] == ["2", "3", "4"]

    def test_first_error_raised_carries_all(self):
        err = error_of("foo 1\nbar 2\n")
        assert len(err.errors) == 2 and err.errors[0] is err


class TestValues:
    @pytest.mark.parametrize("text,value", [("true", True), ("1", True), ("false", False), ("0", False)])
    def test_bool_values(self, text, value):
        assert load(f"listener 1\nallow_anonymous {text}\n").security.allow_anonymous is value

    @pytest.mark.parametrize("text", ["yes", "True", "on", "2"])
    def test_bool_refuses_others(self, text):
        assert "true or false" in error_of(f"listener 1\nallow_anonymous {text}\n").message

    def test_bool_with_trailing_comment(self):
        assert load("listener 1\nallow_anonymous true # ok\n").security.allow_anonymous is True

    @pytest.mark.parametrize("text", ["lots", "10abc", "1.5", ""])
    def test_integers_must_be_integers(self, text):
        err = error_of(f"listener 1\nmax_inflight_messages {text}\n")
        assert err.option == "max_inflight_messages"

    def test_atoi_junk_message_says_what_mosquitto_would_do(self):
        assert "read it as 10" in error_of("listener 1\nmax_queued_messages 10abc\n").message

    def test_extra_words_refused(self):
        assert "unexpected text" in error_of("listener 1\nsys_interval 1 2\n").message

    @pytest.mark.parametrize("line", [
        "max_inflight_messages 65536", "max_inflight_messages -1",
        "message_size_limit 268435456", "max_packet_size 19", "max_packet_size 0",
        "sys_interval 65536", "sys_interval -1", "max_keepalive 5", "max_keepalive 65536",
        "max_qos 3", "maximum_qos -1", "max_topic_alias 65536", "log_facility 8",
    ])
    def test_ranges(self, line):
        assert error_of(f"listener 1\n{line}\n").line == 2

    @pytest.mark.parametrize("line,attr,value", [
        ("max_inflight_messages 65535", "max_inflight_messages", 65535),
        ("max_inflight_messages 0", "max_inflight_messages", 0),
        ("message_size_limit 268435455", "message_size_limit", 268435455),
        ("max_packet_size 20", "max_packet_size", 20),
        ("sys_interval 0", "sys_interval", 0),
        ("max_keepalive 0", "max_keepalive", 0),
        ("max_keepalive 10", "max_keepalive", 10),
    ])
    def test_range_edges_accepted(self, line, attr, value):
        assert getattr(load(f"listener 1\n{line}\n"), attr) == value

    def test_negative_max_connections_means_unlimited(self):
        assert load("listener 1\nmax_connections -5\n").listeners[0].max_connections == -1

    @pytest.mark.parametrize("text,seconds", [("2h", 7200), ("1d", 86400), ("1w", 604800),
                                              ("1m", 30 * 86400), ("2y", 2 * 365 * 86400)])
    def test_persistent_client_expiration_units(self, text, seconds):
        config = load(f"listener 1\npersistent_client_expiration {text}\n")
        assert config.persistent_client_expiration == seconds

    @pytest.mark.parametrize("text", ["5x", "0d", "d", "5"])
    def test_persistent_client_expiration_refused(self, text):
        assert error_of(f"listener 1\npersistent_client_expiration {text}\n").option == \
            "persistent_client_expiration"

    @pytest.mark.parametrize("version", ["tlsv1.3", "tlsv1.2", "tlsv1.1"])
    def test_tls_versions(self, version):
        assert load(f"listener 1\ntls_version {version}\n").listeners[0].tls_version == version

    @pytest.mark.parametrize("version", ["TLSv1.2", "tlsv1", "tlsv1.0", "tls1.2"])
    def test_tls_version_case_sensitive_and_checked_at_load(self, version):
        assert "tlsv1.3, tlsv1.2, tlsv1.1" in error_of(f"listener 1\ntls_version {version}\n").message

    def test_retry_interval_accepted_with_warning(self):
        result = read_config_string("listener 1\nallow_anonymous true\nretry_interval 20\n", "m.conf")
        assert not result.errors
        assert result.warnings == ["m.conf:3: retry_interval: obsolete option, ignored (as Mosquitto does)"]

    def test_defaults_follow_mosquitto_code_not_man_page(self):
        config = load("listener 1\n")
        assert config.check_retain_source is False
        assert config.allow_duplicate_messages is False
        assert config.max_keepalive == 0
        assert config.max_inflight_messages == 20 and config.max_queued_messages == 1000
        assert config.sys_interval == 10 and config.persistent_client_expiration is None
        listener = config.listeners[0]
        assert (listener.max_qos, listener.max_topic_alias, listener.max_connections) == (2, 10, -1)
        assert listener.protocol == "mqtt" and listener.bind_address is None

    def test_aliases_resolve_to_canonical_names(self):
        config = load("listener 1\nmaximum_qos 1\nretained_persistence false\n"
                      "ciphers_tls1.3 TLS_AES_256_GCM_SHA384\n")
        assert config.listeners[0].max_qos == 1
        assert config.persistence is False
        assert config.listeners[0].ciphers_tls1_3 == "TLS_AES_256_GCM_SHA384"

    def test_keyform_read_as_tls_keyform_with_warning(self):
        result = read_config_string("listener 1\nkeyform pem\n", "m.conf")
        assert not result.errors and result.config.listeners[0].tls_keyform == "pem"
        assert "tls_keyform" in result.warnings[0]

    def test_tls_keyform_other_values_refused(self):
        assert error_of("listener 1\ntls_keyform der\n").option == "tls_keyform"

    def test_utf8_required_on_option_lines(self):
        result = read_config_string("listener 1\n", "m.conf")
        assert result.ok
        from midge.config.parser import Reader

        reader = Reader()
        reader.read_bytes(b"listener 1\n# caf\xe9 comment is fine\nauto_id_prefix caf\xe9\n", "m.conf")
        assert [e.line for e in reader.errors] == [3]


class TestListeners:
    def test_listener_scoping(self):
        config = load("listener 1883\nmax_connections 5\nlistener 8883 127.0.0.1\n"
                      "certfile /c\nkeyfile /k\nmount_point a/\n")
        plain, tls = config.listeners
        assert plain.max_connections == 5 and not plain.tls_enabled and plain.mount_point is None
        assert tls.max_connections == -1 and tls.tls_enabled and tls.mount_point == "a/"
        assert tls.bind_address == "127.0.0.1"
        assert tls.origin == ("m.conf", 3) and tls.name == "8883 on 127.0.0.1"
        assert plain.name == "1883"
        assert tls.origins["certfile"] == ("m.conf", 4)

    def test_unix_socket_listener(self):
        listener = load("listener 0 /run/midge.sock\n").listeners[0]
        assert (listener.port, listener.path, listener.bind_address) == (0, "/run/midge.sock", None)

    def test_port_zero_needs_a_path(self):
        assert "Unix socket path" in error_of("listener 0\n").message

    @pytest.mark.parametrize("port", ["65536", "-1", "http"])
    def test_bad_ports(self, port):
        assert error_of(f"listener {port}\n").option == "listener"

    def test_listener_trailing_comment(self):
        assert load("listener 1883 # main\n").listeners[0].bind_address is None

    def test_duplicate_listener_refused(self):
        err = error_of("listener 1883\nlistener 1883\n")
        assert err.line == 2 and "m.conf:1" in err.message

    def test_port_option_makes_default_listener(self):
        config = load("port 1884\n")
        assert not config.local_only
        assert [l.port for l in config.listeners] == [1884]

    def test_bind_address_makes_default_listener_on_1883(self):
        config = load("bind_address 127.0.0.1\n")
        assert [(l.port, l.bind_address) for l in config.listeners] == [(1883, "127.0.0.1")]

    def test_port_goes_to_default_listener_even_after_listener(self):
        config = load("listener 8883\nport 1884\n")
        assert sorted(l.port for l in config.listeners) == [1884, 8883]

    def test_listener_options_before_first_listener_create_default_listener(self):
        result = read_config_string("max_connections 3\nlistener 8883\n", "m.conf")
        assert sorted(l.port for l in result.config.listeners) == [1883, 8883]
        default = [l for l in result.config.listeners if l.port == 1883][0]
        assert default.max_connections == 3
        assert any("default listener" in w for w in result.warnings)

    def test_mount_point_needs_a_listener(self):
        assert "listener" in error_of("mount_point x/\nlistener 1\n").message

    def test_certfile_without_keyfile_refused(self):
        err = error_of("listener 8883\ncertfile /c\n")
        assert (err.option, err.line) == ("certfile", 2)
        assert "plain" in err.message and "keyfile" in err.message

    def test_keyfile_without_certfile_refused(self):
        assert error_of("listener 8883\nkeyfile /k\n").option == "keyfile"

    def test_psk_hint_enables_tls(self):
        assert load("listener 8883\npsk_hint hint\n").listeners[0].tls_enabled

    def test_protocol_values(self):
        assert load("listener 9001\nprotocol websockets\n").listeners[0].protocol == "websockets"
        assert error_of("listener 1\nprotocol mqttsn\n").option == "protocol"

    def test_midge_listener_options(self):
        listener = load("listener 8883\ncertfile /c\nkeyfile /k\ncert_identity_as_username san_email\n"
                        "crl_check chain\nrequire_ocsp true\nocsp_timeout 2.5\nocsp_cache_seconds 60\n"
                        "psk_tls13 false\ntls_handshake_timeout 3\nkeyfile_password_file /p\n").listeners[0]
        assert listener.cert_identity_as_username == "san_email"
        assert listener.crl_check == "chain" and listener.require_ocsp is True
        assert listener.ocsp_timeout == 2.5 and listener.ocsp_cache_seconds == 60
        assert listener.psk_tls13 is False and listener.tls_handshake_timeout == 3.0
        assert listener.keyfile_password_file == "/p"

    def test_midge_listener_option_defaults(self):
        listener = load("listener 1\n").listeners[0]
        assert listener.crl_check == "leaf" and listener.require_ocsp is False
        assert listener.ocsp_timeout == 5.0 and listener.ocsp_cache_seconds == 300
        assert listener.ocsp_soft_fail is False and listener.disconnect_on_revocation is False
        assert listener.psk_tls13 is True and listener.tls_handshake_timeout == 10.0
        assert listener.cert_identity_as_username is None

    def test_midge_global_options(self):
        config = load("listener 1\ntls_watch_interval 0\nauth_fail_delay 1\nauth_fail_delay_max 30\n")
        assert (config.tls_watch_interval, config.auth_fail_delay, config.auth_fail_delay_max) == (0, 1, 30)
        assert load("listener 1\n").tls_watch_interval == 5.0

    def test_cert_identity_values_checked(self):
        assert "cn, subject" in error_of("listener 1\ncert_identity_as_clientid email\n").message

    def test_float_refuses_junk(self):
        assert error_of("listener 1\nocsp_timeout soon\n").option == "ocsp_timeout"
        assert error_of("listener 1\nauth_fail_delay -1\n").option == "auth_fail_delay"

    def test_nobody_can_connect_warns(self):
        assert any("no client can connect" in w for w in warnings_of("listener 1\n"))
        for extra in ("allow_anonymous true", "password_file /p", "plugin m",
                      "use_identity_as_username true"):
            assert not any("no client" in w for w in warnings_of(f"listener 1\n{extra}\n"))

    def test_psk_hint_without_psk_file_warns(self):
        assert any("psk_file" in w for w in warnings_of("listener 1\npsk_hint h\nallow_anonymous true\n"))
        assert not any("psk_file" in w for w in
                       warnings_of("listener 1\npsk_hint h\npsk_file /k\nallow_anonymous true\n"))

    def test_http_dir_on_mqtt_listener_warns(self):
        assert any("http_dir" in w for w in warnings_of("listener 1\nhttp_dir /www\n"))
        assert not any("http_dir" in w for w in
                       warnings_of("listener 1\nprotocol websockets\nhttp_dir /www\n"))

    def test_tls_only_option_on_plain_listener_warns(self):
        assert any("no TLS" in w for w in warnings_of("listener 1\nrequire_certificate true\n"))


class TestLocalOnly:
    def test_no_config_is_local_only_anonymous_on_1883(self):
        config = default_config()
        assert config.local_only and config.files == []
        assert [l.port for l in config.listeners] == [1883]
        assert config.security.allow_anonymous is True
        assert config.listeners[0].security is config.security

    def test_ports_make_one_listener_each(self):
        config = load_config(None, ports=[1884, 1885])
        assert [l.port for l in config.listeners] == [1884, 1885]

    def test_config_without_listener_is_local_only(self):
        config = load("allow_anonymous false\npassword_file /p\n", ports=[2000])
        assert config.local_only and [l.port for l in config.listeners] == [2000]
        assert config.security.allow_anonymous is True  # forced, as Mosquitto does

    def test_allow_anonymous_false_in_local_only_warns(self):
        assert any("local-only" in w for w in warnings_of("allow_anonymous false\n"))

    def test_listener_options_alone_stay_local_only(self):
        config = load("max_connections 4\n")
        assert config.local_only and config.listeners[0].max_connections == 4

    def test_ports_ignored_when_listeners_defined(self):
        result = read_config_string("listener 1883\n", "m.conf", ports=[2000])
        assert [l.port for l in result.config.listeners] == [1883]
        assert any("-p" in w for w in result.warnings)

    def test_allow_anonymous_defaults_false_with_listener(self):
        assert load("listener 1883\n").security.allow_anonymous is False


class TestPerListenerSettings:
    def test_false_shares_one_global_security(self):
        config = load("listener 1\nallow_anonymous true\nlistener 2\npassword_file /p\n")
        a, b = config.listeners
        assert a.security is b.security is config.security
        assert config.security.allow_anonymous is True and config.security.password_file == "/p"

    def test_true_gives_each_listener_its_own(self):
        config = load("per_listener_settings true\nlistener 1\nallow_anonymous true\n"
                      "listener 2\npassword_file /p\n")
        a, b = config.listeners
        assert a.security is not b.security
        assert a.security.allow_anonymous is True and a.security.password_file is None
        assert b.security.allow_anonymous is False and b.security.password_file == "/p"

    def test_same_option_in_two_listeners_is_fine_with_true(self):
        config = load("per_listener_settings true\nlistener 1\npassword_file /a\n"
                      "listener 2\npassword_file /b\n")
        assert [l.security.password_file for l in config.listeners] == ["/a", "/b"]

    @pytest.mark.parametrize("first", ["allow_anonymous true", "password_file /p",
                                       "check_retain_source true", "auto_id_prefix x"])
    def test_must_come_before_security_options(self, first):
        err = error_of(f"{first}\nper_listener_settings true\nlistener 1\n")
        assert err.option == "per_listener_settings" and err.line == 2
        assert "m.conf:1" in err.message

    def test_plugins_with_options(self):
        config = load("listener 1\nauth_plugin my.module\nauth_opt_host db\nplugin_opt_port 5432\n"
                      "auth_plugin_deny_special_chars false\nplugin /opt/p.py\nplugin_opt_x a b\n")
        first, second = config.security.plugins
        assert first.path == "my.module" and first.options == {"host": "db", "port": "5432"}
        assert first.deny_special_chars is False
        assert second.path == "/opt/p.py" and second.options == {"x": "a b"}
        assert second.origin == ("m.conf", 6)

    def test_plugin_opt_needs_a_plugin(self):
        assert "plugin" in error_of("listener 1\nplugin_opt_x y\n").message

    def test_deny_special_chars_needs_a_plugin(self):
        assert error_of("listener 1\nauth_plugin_deny_special_chars true\n").line == 2

    def test_per_listener_plugins(self):
        config = load("per_listener_settings true\nlistener 1\nplugin a\nlistener 2\nplugin b\n")
        assert [[p.path for p in l.security.plugins] for l in config.listeners] == [["a"], ["b"]]


class TestLogging:
    def test_defaults(self):
        config = load("listener 1\n")
        assert config.log_dest == {"stderr"}
        assert config.log_type == {"error", "warning", "notice", "information"}
        assert config.log_timestamp is True and config.log_timestamp_format is None

    def test_dest_accumulates_and_replaces_default(self):
        assert load("listener 1\nlog_dest stdout\nlog_dest topic\n").log_dest == {"stdout", "topic"}

    def test_dest_none_clears(self):
        assert load("listener 1\nlog_dest stdout\nlog_dest none\nlog_dest topic\n").log_dest == {"topic"}

    def test_dest_file(self):
        config = load("listener 1\nlog_dest file /var/log/midge log.txt\n")
        assert config.log_dest == {"file"} and config.log_file == "/var/log/midge log.txt"

    def test_only_one_file(self):
        assert "only one" in error_of("listener 1\nlog_dest file /a\nlog_dest file /b\n").message

    def test_dest_file_needs_path(self):
        assert error_of("listener 1\nlog_dest file\n").option == "log_dest"

    def test_invalid_dest(self):
        assert error_of("listener 1\nlog_dest foo\n").option == "log_dest"

    def test_types_accumulate_all_none(self):
        assert load("listener 1\nlog_type error\nlog_type debug\n").log_type == {"error", "debug"}
        assert "internal" in load("listener 1\nlog_type all\n").log_type
        assert load("listener 1\nlog_type all\nlog_type none\nlog_type notice\n").log_type == {"notice"}

    def test_empty_log_type_is_a_warning(self):
        result = read_config_string("listener 1\nlog_type\n", "m.conf")
        assert result.ok and result.warnings

    def test_verbose_forces_all(self):
        config = load("listener 1\nlog_type error\n", verbose=True)
        assert {"debug", "subscribe", "unsubscribe", "websockets"} <= config.log_type

    def test_invalid_type(self):
        assert error_of("listener 1\nlog_type nonsense\n").option == "log_type"


class TestIncludeDir:
    def test_sorted_conf_files(self, tmp_path):
        inc = tmp_path / "conf.d"
        inc.mkdir()
        (inc / "b.conf").write_text("listener 2\n")
        (inc / "a.conf").write_text("listener 1\n")
        (inc / "c.txt").write_text("listener 3\n")
        main = tmp_path / "main.conf"
        main.write_text(f"include_dir {inc}\nallow_anonymous true\n")
        config = load_config(str(main))
        assert [l.port for l in config.listeners] == [1, 2]
        assert config.files == [str(main), str(inc / "a.conf"), str(inc / "b.conf")]
        assert config.listeners[1].origin == (str(inc / "b.conf"), 1)

    def test_each_file_starts_at_default_listener(self, tmp_path):
        inc = tmp_path / "d"
        inc.mkdir()
        (inc / "a.conf").write_text("max_connections 7\n")
        main = tmp_path / "main.conf"
        main.write_text(f"listener 8883\ninclude_dir {inc}\n")
        config = load_config(str(main))
        by_port = {l.port: l for l in config.listeners}
        assert by_port[8883].max_connections == -1 and by_port[1883].max_connections == 7

    def test_only_in_main_file(self, tmp_path):
        inc, deeper = tmp_path / "d", tmp_path / "e"
        inc.mkdir()
        deeper.mkdir()
        (inc / "a.conf").write_text(f"include_dir {deeper}\n")
        main = tmp_path / "main.conf"
        main.write_text(f"listener 1\ninclude_dir {inc}\n")
        with pytest.raises(ConfigError) as info:
            load_config(str(main))
        assert info.value.file == str(inc / "a.conf") and info.value.option == "include_dir"

    def test_missing_directory(self, tmp_path):
        err = error_of(f"include_dir {tmp_path}/nope\n")
        assert err.option == "include_dir" and err.line == 1


class TestBridges:
    """Every bridge option is parsed and validated (bridges run in server/bridge.py)."""

    BRIDGE = ("listener 1\nconnection remote\naddress 10.0.0.1:1884 broker.example\n"
              "topic sensors/# out 1 local/ remote/\ntopic cmd/+ IN\ntopic # both 2\n"
              "topic \"\" in 0 a/b c/d\nremote_clientid bridge-1\nusername u\npassword p\n"
              "cleansession true\nrestart_timeout 2 60\nbridge_protocol_version mqttv50\n")

    def test_connection_loads(self):
        assert [b.name for b in load(self.BRIDGE).bridges] == ["remote"]

    def test_bridge_options_parsed(self):
        result = read_config_string(self.BRIDGE, "m.conf")
        assert result.errors == []
        (bridge,) = result.config.bridges
        assert bridge.name == "remote"
        assert bridge.address == [("10.0.0.1", 1884), ("broker.example", 1883)]
        assert [(t.pattern, t.direction, t.qos, t.local_prefix, t.remote_prefix) for t in bridge.topic] == [
            ("sensors/#", "out", 1, "local/", "remote/"),
            ("cmd/+", "in", 0, "", ""),
            ("#", "both", 2, "", ""),
            ("", "in", 0, "a/b", "c/d"),
        ]
        assert bridge.remote_clientid == "bridge-1" and bridge.local_clientid == "local.bridge-1"
        assert bridge.remote_username == "u" and bridge.remote_password == "p"
        assert bridge.cleansession is True and bridge.local_cleansession is True
        assert bridge.restart_timeout == (2, 60)
        assert bridge.bridge_protocol_version == "mqttv50"

    def test_bridge_option_before_connection(self):
        err = error_of("listener 1\ntopic a/b\n")
        assert err.option == "topic" and "connection" in err.message

    @pytest.mark.parametrize("line,option", [
        ("topic a/# sideways", "topic"), ("topic a 0 3", "topic"), ("topic a out 3", "topic"),
        ("topic a/#/b", "topic"), ("topic a out 0 pre/", "topic"), ('topic "" out 0 "" x/', "topic"),
        ("topic a out 0 +/ x/", "topic"), ("address host:0", "address"), ("restart_timeout 30 5", "restart_timeout"),
        ("keepalive_interval 4", "keepalive_interval"), ("start_type manual", "start_type"),
        ("bridge_tls_version TLSv1.2", "bridge_tls_version"),
    ])
    def test_bridge_values_validated(self, line, option):
        text = f"listener 1\nconnection b\naddress h\ntopic x\n{line}\n"
        options = [e.option for e in read_config_string(text, "m.conf").errors]
        assert options == [option]

    def test_missing_address_and_topic(self):
        errors = read_config_string("listener 1\nconnection b\n", "m.conf").errors
        assert [e.option for e in errors] == ["connection"] * 2

    def test_psk_needs_identity(self):
        text = "listener 1\nconnection b\naddress h\ntopic x\nbridge_psk abcd\n"
        errors = read_config_string(text, "m.conf").errors
        assert [e.option for e in errors] == ["bridge_psk"]

    def test_duplicate_bridge_name(self):
        text = "listener 1\nconnection b\naddress h\ntopic x\nconnection b\n"
        errors = read_config_string(text, "m.conf").errors
        assert errors[-1].line == 5 and "duplicate" in errors[-1].message


class TestNotImplemented:
    @pytest.mark.parametrize("line,option", [
        ("log_dest dlt", "log_dest"),
        ("plugin /usr/lib/mosquitto_dynamic_security.so", "plugin"),
        ("tls_engine pkcs11", "tls_engine"), ("tls_keyform engine", "tls_keyform"),
        ("memory_limit 100000", "memory_limit"),
    ])
    def test_refused_naming_the_option(self, line, option):
        err = error_of(f"listener 1\n{line}\n")
        assert err.option == option and "not supported" in err.message

    def test_persistence_false_is_fine(self):
        assert load("listener 1\npersistence false\n").persistence is False

    def test_persistence_true_is_implemented(self):
        assert load("listener 1\npersistence true\n").persistence is True

    def test_every_option_is_documented_as_implemented_or_not(self):
        from midge.config import options as opts

        for name in opts.NOT_IMPLEMENTED:
            assert not opts.BY_NAME[name].implemented
        assert opts.BY_NAME["password_file"].implemented


class TestErrors:
    def test_str_format(self):
        err = error_of("listener 1883\nmax_inflight_messages lots\n")
        assert str(err).startswith("m.conf:2: max_inflight_messages: invalid integer 'lots'")
        assert (err.file, err.line, err.option) == ("m.conf", 2, "max_inflight_messages")

    def test_missing_file(self, tmp_path):
        with pytest.raises(ConfigError) as info:
            load_config(str(tmp_path / "none.conf"))
        assert "cannot open" in str(info.value) and info.value.file == str(tmp_path / "none.conf")

    def test_config_files_recorded(self, tmp_path):
        path = tmp_path / "m.conf"
        path.write_text("listener 1\n")
        assert load_config(str(path)).files == [str(path)]
