"""The on/off settings and the settings behind TLS: what each accepts, and what it refuses
(tests/integration/test_behind_tls: a bad value stops a process at start-up)."""

import pytest

from dashboard import settings as settings_module

pytestmark = pytest.mark.unit


def test_what_each_setting_accepts(monkeypatch):
    for text, value in [
        ("on", True),
        ("Yes", True),
        (" TRUE ", True),
        ("1", True),
        ("off", False),
        ("No", False),
        ("0", False),
        ("", None),
    ]:
        monkeypatch.setenv("LIFECYCLE_X", text)
        assert settings_module.env_bool("LIFECYCLE_X", None) is value, text  # type: ignore[arg-type]
    for text in ("y", "enabled", "2", "on off"):
        monkeypatch.setenv("LIFECYCLE_X", text)
        with pytest.raises(ValueError, match="LIFECYCLE_X must be on or off"):
            settings_module.env_bool("LIFECYCLE_X", False)

    assert settings_module.hsts_seconds("", https=True) == 31_536_000
    assert settings_module.hsts_seconds("", https=False) == 0
    assert settings_module.hsts_seconds("600", https=True) == 600
    assert settings_module.hsts_seconds("63072000", https=True) == 63_072_000
    for text in ("-1", "1.5", "1y", "²", "63072001", "9" * 400):
        with pytest.raises(ValueError, match="LIFECYCLE_HSTS_SECONDS"):
            settings_module.hsts_seconds(text, https=True)
    with pytest.raises(ValueError, match="LIFECYCLE_HTTPS is off"):
        settings_module.hsts_seconds("600", https=False)

    assert settings_module.trusted_origins(
        " https://A.example:443 , https://b.example:8443,", True
    ) == [
        "https://a.example",
        "https://b.example:8443",
    ]
    for text in (
        "a.example",
        "https://a.example/",
        "https://*.a.example",
        "https://u@a.example",
        "https://a.example:0",
        "https://",
    ):
        with pytest.raises(ValueError, match="LIFECYCLE_TRUSTED_ORIGINS"):
            settings_module.trusted_origins(text, https=True)
