"""dagctl_dagster.secrets: secret names, URL/DSN masking, value redaction."""

from __future__ import annotations

import logging

import pytest

from dagctl_dagster.logging import JsonFormatter
from dagctl_dagster.secrets import is_secret_name, mask_url, redact, redact_value, url_secrets

PASSWORD = "p@ss:wo/rd-42"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://dagster:hunter2@db:5432/dagster", "postgresql://dagster:***@db:5432/dagster"),
        ("postgresql://dagster@db/dagster?password=hunter2", "postgresql://dagster@db/dagster?password=***"),
        (
            "postgresql://dagster@db/x?application_name=a&sslpassword=hunter2&PGPASSWORD=hunter2",
            "postgresql://dagster@db/x?PGPASSWORD=***&application_name=a&sslpassword=***",
        ),
        ("host=db user=dagster password=hunter2 dbname=x", "host=db user=dagster password=*** dbname=x"),
        ("host=db password = 'hun ter2' dbname=x", "host=db password = *** dbname=x"),
        (f"postgresql://dagster:{PASSWORD}@db/x", "postgresql://***@db/x"),
        ("postgresql://dagster:pa/ss:wd@db/x", "postgresql://dagster:***@db/x"),
        ("sqlite:////tmp/claims.sqlite", "sqlite:////tmp/claims.sqlite"),
    ],
)
def test_every_url_form_is_masked(url: str, masked: str):
    assert mask_url(url) == masked
    for secret in ("hunter2", "hun ter2", PASSWORD, "ss:wo", "pa/ss:wd"):
        assert secret not in mask_url(url)


def test_url_secrets_cover_decoded_and_fragment_forms():
    secrets = url_secrets(f"postgresql://u:{PASSWORD}@db/x?password=a%40bcdef")
    assert {PASSWORD, "a%40bcdef", "a@bcdef", "ss:wo/rd-42", "rd-42"} <= set(secrets)
    assert url_secrets("host=db password='x y z'") == ["x y z"]


def test_secret_env_values_are_redacted_in_text_and_nested_metadata(monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-abc/def+ghi")
    monkeypatch.setenv("WAREHOUSE_PASSWORD", "correct horse")
    monkeypatch.setenv("FERNET_KEY", "k3y-value-123")
    monkeypatch.setenv("GREETING", "hello world")  # not secret-named: left alone
    monkeypatch.setenv("DB_PASSWORD", "short")  # too short to be masked safely
    text = "tok xoxb-abc/def+ghi, url-encoded xoxb-abc%2Fdef%2Bghi, pw correct horse, key k3y-value-123, hello world"
    assert redact(text) == "tok ***, url-encoded ***, pw ***, key ***, hello world"
    assert redact_value({"a": ["correct horse", 3], "b": ("x", "k3y-value-123")}) == {
        "a": ["***", 3],
        "b": ("x", "***"),
    }
    assert redact("ss@db", ["p@ss"]) == "ss@db" and redact("p@ss@db", ["p@ss"]) == "***@db"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("SLACK_BOT_TOKEN", True),
        ("SQLMESH_STATE_PASSWORD", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("FERNET_KEY", True),
        ("GITSYNC_PASSWORD", True),
        ("PGPASS", True),
        ("MAX_CONCURRENT_MODELS", False),
        ("DAGSTER_RUN_JOB_NAME", False),
        ("KEYBOARD_LAYOUT", False),
    ],
)
def test_one_secret_name_pattern(name: str, secret: bool):
    assert is_secret_name(name) is secret


def test_json_log_lines_mask_secret_values(monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-json-line-secret")
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed with xoxb-json-line-secret", None, None)
    line = JsonFormatter().format(record)
    assert "xoxb-json-line-secret" not in line and '"message": "failed with ***"' in line
