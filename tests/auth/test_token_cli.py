"""`solstake token`: tokens that the server's own verifier accepts, one per role."""

from __future__ import annotations

from pathlib import Path

import pytest

from http_app.principal import ROLE_PERMISSIONS
from http_app.tokens import Keyring, verify_access_token
from stream_app.cli import main
from stream_app.settings import Settings
from tests.conftest import TEST_JWT_SECRET


def test_one_token_per_role(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("JWT_SECRET", TEST_JWT_SECRET)
    assert main(["token"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    keyring = Keyring.from_settings(Settings.from_env({"JWT_SECRET": TEST_JWT_SECRET}))
    roles = {}
    for line in lines:
        role, _, token = line.partition(": ")
        roles[role] = verify_access_token(keyring, token).claims
    assert set(roles) == {"viewer", "user", "admin"}
    for role, claims in roles.items():
        assert claims["role"] == role and claims["permissions"] == sorted(ROLE_PERMISSIONS[role])


def test_role_flag_prints_just_the_token(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("JWT_SECRET", TEST_JWT_SECRET)
    assert main(["token", "--role", "admin", "--user-id", "9"]) == 0
    token = capsys.readouterr().out.strip()
    keyring = Keyring.from_settings(Settings.from_env({"JWT_SECRET": TEST_JWT_SECRET}))
    principal = verify_access_token(keyring, token).principal()
    assert principal.is_admin and principal.user_id == "9" and principal.can("admin:system")


def test_development_without_secret_uses_one_stable_dev_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.setenv("SOLSTAKE_DATA_DIR", str(tmp_path))
    assert main(["token", "--role", "viewer"]) == 0
    token = capsys.readouterr().out.strip()
    # The web process in the same checkout derives the same keyring, so the token works there.
    keyring = Keyring.from_settings(Settings.from_env({"SOLSTAKE_DATA_DIR": str(tmp_path)}))
    assert verify_access_token(keyring, token).principal().role == "viewer"
    assert (tmp_path / "dev-jwt-secret").stat().st_mode & 0o077 == 0


def test_production_without_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="JWT_SECRET"):
        Keyring.from_settings(Settings.from_env({}).with_overrides(profile="production"))
