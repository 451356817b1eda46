"""The configuration: defaults, the file, the environment, and errors that point at the line."""

from __future__ import annotations

import argparse
import os
import re
import tomllib
from pathlib import Path

import pytest

from controller import cli
from controller.commands import config as config_command
from controller.config import (
    SECRET_MASK,
    Config,
    default_control_socket,
    effective_config_text,
    env_var,
    load_config,
    sections,
)
from controller.errors import BadConfigError
from controller.mqtt.settings import MqttSettings
from devices.errors import ConfigError
from devices.links.sim_radio import default_radio_path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "packaging" / "config.example.toml"
DOCS = ROOT / "docs" / "configuration.md"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment of its own: private folders and no MASSAGED_ setting."""
    return {
        "MASSAGED_CONFIG_DIR": str(tmp_path / "conf"),
        "MASSAGED_DATA_DIR": str(tmp_path / "data"),
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
    }


@pytest.fixture
def os_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The same environment in os.environ, for the command handlers."""
    for name in list(os.environ):
        if name.startswith("MASSAGED_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def bad(path: Path | None, env: dict[str, str]) -> BadConfigError:
    with pytest.raises(BadConfigError) as caught:
        load_config(path, environ=env)
    return caught.value


# --- defaults and the file ------------------------------------------------------------


def test_defaults_without_a_file(env: dict[str, str], tmp_path: Path) -> None:
    config = load_config(environ=env)
    assert config.file is None
    d = config.daemon
    assert d.socket == tmp_path / "run" / "massaged" / "control.sock"
    assert d.socket_group is None
    assert d.log_level == "info"
    assert (d.wire_debug, d.simulator, d.watchdog) == (False, False, True)
    assert (d.reconnect_min, d.reconnect_max, d.scan_timeout) == (0.5, 30.0, 5.0)
    assert d.simulator_radio == default_radio_path()
    assert config.store.path == tmp_path / "data" / "massaged.db"
    assert (config.session.profile, config.session.default_program) == ("default", "collar-zone")
    assert config.session.display is True
    assert config.mqtt == MqttSettings()
    assert set(config.sources.values()) == {"default"}


def test_default_control_socket() -> None:
    runtime = {"XDG_RUNTIME_DIR": "/run/user/1000"}
    assert default_control_socket(runtime) == Path("/run/user/1000/massaged/control.sock")
    fallback = Path(f"/tmp/massaged-{os.getuid()}/control.sock")
    assert default_control_socket({}) == fallback
    # The XDG spec says a relative path must be ignored.
    assert default_control_socket({"XDG_RUNTIME_DIR": "run"}) == fallback


def test_the_default_file_is_read(env: dict[str, str], tmp_path: Path) -> None:
    file = write(tmp_path / "conf" / "config.toml", '[session]\nprofile = "ann"\n')
    config = load_config(environ=env)
    assert config.file == file
    assert config.session.profile == "ann"


def test_a_file_overrides_the_defaults(env: dict[str, str], tmp_path: Path) -> None:
    file = write(
        tmp_path / "my.toml",
        """
        [daemon]
        socket = "~/massaged.sock"
        socket_group = "massage"
        log_level = "DEBUG"
        reconnect_min = 1        # an integer is a fine number of seconds
        reconnect_max = 10.5
        simulator = true

        [store]
        path = "/srv/massaged/history.db"

        [mqtt]
        enabled = true
        host = "broker.lan"
        port = 8883
        """,
    )
    config = load_config(file, environ=env)
    assert config.file == file
    assert config.daemon.socket == Path.home() / "massaged.sock"
    assert config.daemon.socket_group == "massage"
    assert config.daemon.log_level == "debug"
    assert (config.daemon.reconnect_min, config.daemon.reconnect_max) == (1.0, 10.5)
    assert config.daemon.simulator is True
    assert config.store.path == Path("/srv/massaged/history.db")
    assert (config.mqtt.enabled, config.mqtt.host, config.mqtt.port) == (True, "broker.lan", 8883)
    assert config.mqtt.tls is False
    assert config.sources["mqtt.port"] == "file"
    assert config.sources["mqtt.tls"] == "default"


def test_dotted_keys_and_inline_tables(env: dict[str, str], tmp_path: Path) -> None:
    file = write(tmp_path / "c.toml", 'mqtt.host = "a"\nsession = { profile = "bo" }\n')
    config = load_config(file, environ=env)
    assert (config.mqtt.host, config.session.profile) == ("a", "bo")


def test_settings_can_be_replaced_but_stay_valid(env: dict[str, str]) -> None:
    config = load_config(environ=env)
    config.daemon.socket = Path("/x.sock")  # as --socket does
    assert config.daemon.socket == Path("/x.sock")
    with pytest.raises(ValueError, match="scan_timeout"):
        config.daemon.scan_timeout = -1


# --- which file -----------------------------------------------------------------------


def test_a_missing_explicit_file_is_an_error(env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: no such configuration file"):
        load_config(tmp_path / "nope.toml", environ=env)


def test_massaged_config_names_the_file(env: dict[str, str], tmp_path: Path) -> None:
    file = write(tmp_path / "elsewhere.toml", '[mqtt]\nhost = "h"\n')
    assert load_config(environ={**env, "MASSAGED_CONFIG": str(file)}).mqtt.host == "h"
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(environ={**env, "MASSAGED_CONFIG": str(tmp_path / "gone.toml")})


def test_an_argument_beats_massaged_config(env: dict[str, str], tmp_path: Path) -> None:
    given = write(tmp_path / "given.toml", '[mqtt]\nhost = "given"\n')
    named = write(tmp_path / "named.toml", '[mqtt]\nhost = "named"\n')
    config = load_config(given, environ={**env, "MASSAGED_CONFIG": str(named)})
    assert config.mqtt.host == "given"


# --- the environment ------------------------------------------------------------------


def test_the_environment_beats_the_file(env: dict[str, str], tmp_path: Path) -> None:
    file = write(tmp_path / "c.toml", '[mqtt]\nhost = "file"\nport = 1883\n')
    config = load_config(
        file,
        environ={
            **env,
            "MASSAGED_MQTT_HOST": "env",
            "MASSAGED_MQTT_PORT": "1884",
            "MASSAGED_DAEMON_SIMULATOR": "1",
            "MASSAGED_DAEMON_SCAN_TIMEOUT": "2.5",
            "MASSAGED_STORE_PATH": "/var/lib/massaged.db",
        },
    )
    assert (config.mqtt.host, config.mqtt.port) == ("env", 1884)
    assert config.daemon.simulator is True
    assert config.daemon.scan_timeout == 2.5
    assert config.store.path == Path("/var/lib/massaged.db")
    assert config.sources["mqtt.port"] == "env"
    assert config.sources["mqtt.enabled"] == "default"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", True), ("true", True), ("Yes", True), ("on", True), ("0", False), ("off", False)],
)
def test_true_and_false_words(env: dict[str, str], text: str, expected: bool) -> None:
    config = load_config(environ={**env, "MASSAGED_DAEMON_WIRE_DEBUG": text})
    assert config.daemon.wire_debug is expected


def test_an_empty_variable_unsets(env: dict[str, str], tmp_path: Path) -> None:
    file = write(tmp_path / "c.toml", '[daemon]\nsocket_group = "massage"\n')
    config = load_config(file, environ={**env, "MASSAGED_DAEMON_SOCKET_GROUP": ""})
    assert config.daemon.socket_group is None


def test_env_var_names() -> None:
    assert env_var("mqtt", "port") == "MASSAGED_MQTT_PORT"
    assert env_var("daemon", "socket_group") == "MASSAGED_DAEMON_SOCKET_GROUP"


def test_a_bad_variable_is_named(env: dict[str, str]) -> None:
    err = bad(None, {**env, "MASSAGED_MQTT_PORT": "many", "MASSAGED_DAEMON_SIMULATOR": "maybe"})
    text = str(err)
    assert "environment variable MASSAGED_MQTT_PORT: [mqtt] port:" in text
    assert '"many"' in text
    assert "environment variable MASSAGED_DAEMON_SIMULATOR: [daemon] simulator:" in text
    assert "true or false" in text
    assert {issue.variable for issue in err.issues} == {
        "MASSAGED_MQTT_PORT",
        "MASSAGED_DAEMON_SIMULATOR",
    }


def test_a_misspelt_variable_is_an_error(env: dict[str, str]) -> None:
    err = bad(None, {**env, "MASSAGED_MQTT_HOTS": "broker"})
    assert "MASSAGED_MQTT_HOTS" in str(err)
    assert "did you mean MASSAGED_MQTT_HOST?" in str(err)


def test_other_massaged_variables_are_left_alone(env: dict[str, str]) -> None:
    load_config(environ={**env, "MASSAGED_SIM_RADIO": "/r", "MASSAGED_PROGRAMS_DIR": "/p"})


# --- errors in the file ---------------------------------------------------------------


def test_a_bad_type_names_section_key_and_line(env: dict[str, str], tmp_path: Path) -> None:
    file = write(
        tmp_path / "c.toml",
        '# comment\n[daemon]\nlog_level = "info"\n\n[mqtt]\nhost = "h"\nport = "1883"\n',
    )
    err = bad(file, env)
    (issue,) = err.issues
    assert (issue.file, issue.line, issue.section, issue.key) == (file, 7, "mqtt", "port")
    assert str(err).startswith(f"{file}: line 7: [mqtt] port: ")
    assert 'given "1883"' in str(err)
    assert "valid: a whole number from 1 to 65535" in str(err)


@pytest.mark.parametrize(
    ("line", "wanted"),
    [
        ("wire_debug = 1", "true or false"),
        ("reconnect_min = -1", "more than 0"),
        ("scan_timeout = nan", "finite"),
        ('log_level = "loud"', "'debug', 'info', 'warning', 'error' or 'critical'"),
        ("socket_group = ''", "not empty"),
    ],
)
def test_bad_values(env: dict[str, str], tmp_path: Path, line: str, wanted: str) -> None:
    file = write(tmp_path / "c.toml", f"[daemon]\n{line}\n")
    err = bad(file, env)
    assert err.issues[0].line == 2
    assert f"[daemon] {line.split()[0]}:" in str(err)
    assert wanted in str(err)


def test_an_unknown_key_is_named_with_its_line(env: dict[str, str], tmp_path: Path) -> None:
    file = write(tmp_path / "c.toml", '[daemon]\nlog_level = "info"\nsokcet = "/x.sock"\n')
    err = bad(file, env)
    (issue,) = err.issues
    assert (issue.line, issue.section, issue.key) == (3, "daemon", "sokcet")
    assert "[daemon] sokcet: unknown key (did you mean 'socket'?)" in str(err)


def test_an_unknown_section_is_named(env: dict[str, str], tmp_path: Path) -> None:
    file = write(tmp_path / "c.toml", '[session]\nprofile = "a"\n\n[deamon]\nsimulator = true\n')
    err = bad(file, env)
    assert err.issues[0].line == 4
    assert "unknown section [deamon] (did you mean [daemon]?)" in str(err)


def test_a_setting_outside_every_section(env: dict[str, str], tmp_path: Path) -> None:
    err = bad(write(tmp_path / "c.toml", 'log_level = "debug"\n'), env)
    assert err.issues[0].line == 1
    assert "belongs under [daemon]" in str(err)


def test_a_section_that_is_not_a_table(env: dict[str, str], tmp_path: Path) -> None:
    err = bad(write(tmp_path / "c.toml", "\nmqtt = 5\n"), env)
    assert err.issues[0].line == 2
    assert "[mqtt] must be a table" in str(err)


def test_a_rule_across_keys_names_the_section(env: dict[str, str], tmp_path: Path) -> None:
    text = "[session]\n\n[daemon]\nreconnect_min = 40\n"
    err = bad(write(tmp_path / "c.toml", text), env)
    assert err.issues[0].line == 3
    assert "[daemon]: reconnect_min (40 s) is longer than reconnect_max (30 s)" in str(err)


def test_every_error_is_listed_in_line_order(env: dict[str, str], tmp_path: Path) -> None:
    text = '[mqtt]\nport = 0\n[daemon]\nsimulator = "no"\nfoo = 1\n'
    err = bad(write(tmp_path / "c.toml", text), env)
    assert [issue.line for issue in err.issues] == [2, 4, 5]
    assert len(str(err).splitlines()) == 3


def test_a_toml_syntax_error_names_the_line(env: dict[str, str], tmp_path: Path) -> None:
    file = write(tmp_path / "c.toml", '[daemon]\nlog_level = "info"\nsimulator = \n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(file))}: line 3: not valid TOML"):
        load_config(file, environ=env)


def test_a_date_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    err = bad(write(tmp_path / "c.toml", "[mqtt]\nhost = 2024-05-01\n"), env)
    assert err.issues[0].line == 2
    assert "[mqtt] host: a date or time" in str(err)


def test_not_utf8(env: dict[str, str], tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_bytes(b'[mqtt]\nhost = "\xff"\n')
    with pytest.raises(ConfigError, match="line 2: not UTF-8"):
        load_config(file, environ=env)


# --- secrets and the effective configuration ------------------------------------------


def test_secrets_are_never_shown(env: dict[str, str], tmp_path: Path) -> None:
    file = write(tmp_path / "c.toml", '[mqtt]\nusername = "u"\npassword = "hunter2"\n')
    config = load_config(file, environ=env)
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == "hunter2"
    for annotate in (False, True):
        text = effective_config_text(config, annotate=annotate)
        assert "hunter2" not in text
        assert f'password = "{SECRET_MASK}"' in text
    from_env = load_config(file, environ={**env, "MASSAGED_MQTT_PASSWORD": "s3cr3t"})
    assert "s3cr3t" not in effective_config_text(from_env, annotate=True)


def test_a_bad_secret_is_not_echoed(env: dict[str, str], tmp_path: Path) -> None:
    err = bad(write(tmp_path / "c.toml", '[mqtt]\nusername = "u"\npassword = 918273\n'), env)
    assert "918273" not in str(err)
    assert "[mqtt] password:" in str(err)
    assert "(hidden)" in str(err)


def test_the_effective_text_reads_back_the_same(env: dict[str, str], tmp_path: Path) -> None:
    file = write(
        tmp_path / "c.toml",
        '[daemon]\nsocket_group = "g"\nscan_timeout = 7\n[mqtt]\nhost = "h \\"q\\" \\u00e9"\n',
    )
    config = load_config(file, environ={**env, "MASSAGED_MQTT_PORT": "1884"})
    text = effective_config_text(config)
    assert tomllib.loads(text)["mqtt"]["port"] == 1884
    again = load_config(write(tmp_path / "again.toml", text), environ=env)
    assert again.model_dump() == config.model_dump()


def test_the_annotated_text_says_where_values_came_from(
    env: dict[str, str], tmp_path: Path
) -> None:
    file = write(tmp_path / "c.toml", "[mqtt]\nport = 1884\n")
    config = load_config(file, environ={**env, "MASSAGED_MQTT_HOST": "b"})
    text = effective_config_text(config, annotate=True)
    assert "port = 1884  # file" in text
    assert 'host = "b"  # from $MASSAGED_MQTT_HOST' in text
    assert "enabled = false  # default" in text
    assert "# socket_group is not set (default)" in text


# --- the example file and the documentation stay true ---------------------------------


def test_the_example_file_is_the_defaults(env: dict[str, str]) -> None:
    example = load_config(EXAMPLE, environ=env)
    assert example.model_dump() == load_config(environ=env).model_dump()


def test_the_example_file_shows_every_setting() -> None:
    text = EXAMPLE.read_text()
    for section, model in sections().items():
        assert f"[{section}]" in text
        body = text.split(f"[{section}]", 1)[1].split("\n[", 1)[0]
        for key in model.model_fields:
            assert re.search(rf"^(# )?{key} = ", body, re.MULTILINE), f"[{section}] {key}"


def test_the_documentation_describes_every_setting() -> None:
    text = DOCS.read_text()
    for section, model in sections().items():
        body = text.split(f"### `[{section}]`", 1)[1].split("\n### ", 1)[0]
        for key in model.model_fields:
            assert f"| `{key}` |" in body, f"[{section}] {key} is not documented"


# --- the commands ---------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="massaged")
    config_command.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def run(argv: list[str]) -> int:
    args = parse(argv)
    result: int = args.func(args)
    return result


def test_config_show(
    os_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path / "c.toml", '[mqtt]\nusername = "u"\npassword = "hunter2"\n')
    assert run(["config", "show", "--config", str(file)]) == 0
    out = capsys.readouterr().out
    assert f"# configuration file: {file}" in out
    assert 'username = "u"  # file' in out
    assert "hunter2" not in out
    tomllib.loads(out)  # the output is itself a valid configuration file


def test_config_show_without_a_file(
    os_env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MASSAGED_MQTT_PORT", "1999")
    assert run(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "no configuration file" in out
    assert str(tmp_path / "conf" / "config.toml") in out
    assert "port = 1999  # from $MASSAGED_MQTT_PORT" in out
    assert "overridden by the environment: mqtt.port" in out


def test_config_check(
    os_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path / "good.toml", "[mqtt]\nport = 1884\n")
    assert run(["config", "check", "--config", str(good)]) == 0
    assert "valid; 1 set in the file" in capsys.readouterr().out

    wrong = write(tmp_path / "bad.toml", '[mqtt]\nport = "x"\n')
    assert run(["config", "check", "--config", str(wrong)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{wrong}: line 2: [mqtt] port:" in captured.err


def test_config_path(
    os_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["config", "path"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(tmp_path / "conf" / "config.toml")
    assert "does not exist" in captured.err
    given = write(tmp_path / "x.toml", "")
    assert run(["config", "path", "--config", str(given)]) == 0
    assert capsys.readouterr().out.strip() == str(given)


def test_a_global_config_option_is_not_hidden() -> None:
    # The subcommand's --config must not overwrite one given before the subcommand.
    parser = argparse.ArgumentParser(prog="massaged")
    parser.add_argument("--config", type=Path)
    config_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["--config", "/g.toml", "config", "show"])
    assert args.config == Path("/g.toml")


def test_through_the_cli(
    os_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = write(tmp_path / "bad.toml", "[daemon]\nsimulator = 1\n")
    assert cli.main(["config", "check", "--config", str(wrong)]) == 1
    assert f"{wrong}: line 2: [daemon] simulator:" in capsys.readouterr().err
    assert cli.main(["config", "show"]) == 0
    assert "[daemon]" in capsys.readouterr().out


def test_config_is_the_model_of_every_section() -> None:
    assert list(sections()) == list(Config.model_fields)
