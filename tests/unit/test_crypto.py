"""Credential encryption at rest: round trip, rotation, configuration of keys."""

from __future__ import annotations

import pytest

from server.config import ConfigError, load
from server.crypto import CredentialCipher, DecryptionError, derive_key, generate_key
from server.domain.shareout import Credentials

CREDS = Credentials({"access_token": "tok-abc", "instance_url": "https://m.example"})


def config(tmp_path, **env: str):
    return load(env={"SHUTTERLOG_VAR": str(tmp_path), "SHUTTERLOG_SECRETS_KEY": "master-1"}
                | env, search_default=False)


def test_round_trip_hides_the_plaintext(tmp_path) -> None:
    """Encrypted credentials decrypt to the same fields; the token shows no plaintext."""
    cipher = CredentialCipher.from_config(config(tmp_path))
    token = cipher.encrypt(CREDS.to_json())
    assert "tok-abc" not in token and "m.example" not in token
    assert Credentials.from_json(cipher.decrypt(token)) == CREDS
    with pytest.raises(DecryptionError):
        cipher.decrypt(token[:-4] + "AAAA")


def test_rotation_new_key_first_old_keys_still_decrypt(tmp_path) -> None:
    """With a new key first, old tokens decrypt; rotate re-encrypts them under the new key,
    after which the old key can be dropped."""
    old = CredentialCipher.from_config(config(tmp_path))  # the default: key from secrets.key
    samples = [old.encrypt(Credentials({"access_token": f"t{i}"}).to_json()) for i in range(3)]
    new_key = generate_key()
    both = CredentialCipher.from_config(
        config(tmp_path, SHUTTERLOG_SECRETS_ENCRYPTION_KEYS=f"{new_key};master"))
    assert [both.decrypt(t) for t in samples] == [old.decrypt(t) for t in samples]
    rotated = [both.rotate(t) for t in samples]
    only_new = CredentialCipher.from_config(
        config(tmp_path, SHUTTERLOG_SECRETS_ENCRYPTION_KEYS=new_key))
    assert [only_new.decrypt(t) for t in rotated] == [old.decrypt(t) for t in samples]
    with pytest.raises(DecryptionError):
        only_new.decrypt(samples[0])
    with pytest.raises(DecryptionError):
        old.decrypt(rotated[0])


def test_master_key_derivation_is_stable_and_secret_specific() -> None:
    """The derived key depends on the master secret alone."""
    assert derive_key("a") == derive_key("a") != derive_key("b")


def test_a_bad_key_is_a_configuration_error_that_does_not_show_it(tmp_path) -> None:
    """A malformed key stops start-up naming the setting, never echoing the value."""
    with pytest.raises(ConfigError, match="secrets.encryption_keys") as e:
        config(tmp_path, SHUTTERLOG_SECRETS_ENCRYPTION_KEYS="not-a-key-xyz")
    assert "not-a-key-xyz" not in str(e.value)


def test_config_show_masks_the_keys(tmp_path) -> None:
    """The encryption keys are secret settings: config show prints *** for them."""
    from server.config import masked

    shown = masked(config(tmp_path, SHUTTERLOG_SECRETS_ENCRYPTION_KEYS=generate_key()))
    assert shown["secrets.encryption_keys"] == "***"
