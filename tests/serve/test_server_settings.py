"""Server settings: API keys from the config file and from TUNERY_API_KEYS, each mapped to an org."""

from __future__ import annotations

import pytest

from tunery.errors import TuneryError
from tunery.serve.settings import load_settings, parse_key_list


def test_keys_come_from_the_config_file_and_the_environment(tmp_path, monkeypatch):
    config = tmp_path / "server.yaml"
    config.write_text("api_keys: {sk-file: org-file, sk-both: org-old}\nmax_upload_bytes: 1024\n")
    monkeypatch.setenv("TUNERY_API_KEYS", "sk-env=org-env, sk-both=org-new")
    settings = load_settings(config, home=tmp_path / "home")
    # The environment adds keys and, for a key in both, wins.
    assert settings.api_keys == {"sk-file": "org-file", "sk-both": "org-new", "sk-env": "org-env"}
    assert settings.max_upload_bytes == 1024 and not settings.local_mode

    monkeypatch.delenv("TUNERY_API_KEYS")
    assert load_settings(None, home=tmp_path).local_mode  # no key anywhere: local mode


def test_bad_keys_are_refused_with_the_fix(tmp_path, monkeypatch):
    with pytest.raises(TuneryError, match="is not key=org"):
        parse_key_list("sk-a=org-a,sk-b")
    config = tmp_path / "server.yaml"
    config.write_text("api_keys: {sk-a: 'org with spaces'}\n")
    monkeypatch.delenv("TUNERY_API_KEYS", raising=False)
    with pytest.raises(TuneryError, match=r"invalid server settings in .*server.yaml: api_keys"):
        load_settings(config, home=tmp_path)
