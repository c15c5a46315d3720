"""Rocket.Chat's settings that the protocol reads, with Rocket.Chat's defaults.

Fields have Python names; :data:`RC_NAMES` maps each to the setting's id in Rocket.Chat
(``apps/meteor/server/settings/accounts.ts``, ``apps/meteor/app/e2e/server/settings``), and
:meth:`Settings.from_rocketchat` / :meth:`Settings.to_rocketchat` convert, so a keysim server can be
configured from, and compared with, a real Rocket.Chat instance.  Times are in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from .errors import ValidationError

__all__ = ["RC_NAMES", "Settings"]


@dataclass(frozen=True, slots=True)
class Settings:
    # --- two-factor authentication (spec rocketchat-2fa.md section 5) ---
    #: ``Accounts_TwoFactorAuthentication_Enabled``: false makes every 2FA check pass.
    two_factor_enabled: bool = True
    #: ``Accounts_TwoFactorAuthentication_By_TOTP_Enabled``.
    totp_enabled: bool = True
    #: ``Accounts_TwoFactorAuthentication_MaxDelta``: steps accepted either side of now (1 = T-1..T+1).
    totp_max_delta: int = 1
    #: ``Accounts_TwoFactorAuthentication_By_Email_Enabled``.
    email_enabled: bool = True
    #: ``Accounts_TwoFactorAuthentication_By_Email_Auto_Opt_In``: new users get e-mail 2FA.
    email_auto_opt_in: bool = True
    #: ``Accounts_TwoFactorAuthentication_By_Email_Code_Expiration``, seconds.
    email_code_expiration: float = 3600.0
    #: ``Accounts_TwoFactorAuthentication_Max_Invalid_Email_Code_Attempts``.
    email_max_invalid_attempts: int = 5
    #: ``Accounts_TwoFactorAuthentication_RememberFor``, seconds; <= 0 disables "remember".
    remember_for: float = 1800.0
    #: ``Accounts_TwoFactorAuthentication_Enforce_Password_Fallback``.
    enforce_password_fallback: bool = True
    # --- login blocker (apps/meteor/server/lib/loginAttempts / restrictLoginAttempts) ---
    #: ``Block_Multiple_Failed_Logins_Enabled``.
    block_failed_logins_enabled: bool = True
    #: ``Block_Multiple_Failed_Logins_Attempts_Until_Block_by_User``.
    block_failed_logins_attempts: int = 10
    #: ``Block_Multiple_Failed_Logins_Time_To_Unblock_By_User_In_Minutes``, converted to seconds.
    block_failed_logins_seconds: float = 300.0

    # --- end-to-end encryption (spec rocketchat-e2ee.md section 5) ---
    #: ``E2E_Enable``: clients start E2EE only when true.
    e2e_enabled: bool = False
    #: ``E2E_Allow_Unencrypted_Messages``: false makes the server refuse plain messages in an
    #: encrypted room.
    e2e_allow_unencrypted_messages: bool = False
    #: ``E2E_Enabled_Default_DirectRooms``: new DMs are encrypted.
    e2e_default_direct_rooms: bool = False
    #: ``E2E_Enabled_Default_PrivateRooms``: new private groups are encrypted.
    e2e_default_private_rooms: bool = False
    #: not a Rocket.Chat setting: the open PR #41953 ("check room access in
    #: e2e.fetchUsersWaitingForGroupKey"), under which the server drops rooms the caller cannot
    #: access; off, as released (any logged-in user learns a room's waiting members and keys)
    e2e_fetch_checks_caller_access: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            expected = _type_of(f.default)
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
                continue
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise ValidationError(
                    "error-invalid-setting",
                    f"{f.name}: must be {expected.__name__}, got {value!r}",
                    setting=f.name,
                )
        for name in (
            "totp_max_delta",
            "email_max_invalid_attempts",
            "block_failed_logins_attempts",
        ):
            if getattr(self, name) < 0:
                raise ValidationError("error-invalid-setting", f"{name}: must be >= 0", setting=name)
        if self.email_code_expiration <= 0:
            raise ValidationError(
                "error-invalid-setting",
                "email_code_expiration: must be > 0",
                setting="email_code_expiration",
            )

    @classmethod
    def from_rocketchat(cls, values: dict[str, Any]) -> Settings:
        """Build from Rocket.Chat setting ids; unknown ids raise :class:`ValidationError`."""
        by_rc = {rc: name for name, rc in RC_NAMES.items()}
        kwargs: dict[str, Any] = {}
        for rc_name, value in values.items():
            if rc_name not in by_rc:
                raise ValidationError(
                    "error-invalid-setting", f"unknown setting {rc_name!r}", setting=rc_name
                )
            name = by_rc[rc_name]
            kwargs[name] = value * 60 if name == "block_failed_logins_seconds" else value
        return cls(**kwargs)

    def to_rocketchat(self) -> dict[str, Any]:
        """The settings under Rocket.Chat's ids and units."""
        out: dict[str, Any] = {}
        for name, rc_name in RC_NAMES.items():
            value = getattr(self, name)
            out[rc_name] = value / 60 if name == "block_failed_logins_seconds" else value
        return out


def _type_of(default: object) -> type:
    return type(default)


_P = "Accounts_TwoFactorAuthentication_"

#: Python field name -> Rocket.Chat setting id.
RC_NAMES: dict[str, str] = {
    "two_factor_enabled": _P + "Enabled",
    "totp_enabled": _P + "By_TOTP_Enabled",
    "totp_max_delta": _P + "MaxDelta",
    "email_enabled": _P + "By_Email_Enabled",
    "email_auto_opt_in": _P + "By_Email_Auto_Opt_In",
    "email_code_expiration": _P + "By_Email_Code_Expiration",
    "email_max_invalid_attempts": _P + "Max_Invalid_Email_Code_Attempts",
    "remember_for": _P + "RememberFor",
    "enforce_password_fallback": _P + "Enforce_Password_Fallback",
    "block_failed_logins_enabled": "Block_Multiple_Failed_Logins_Enabled",
    "block_failed_logins_attempts": "Block_Multiple_Failed_Logins_Attempts_Until_Block_by_User",
    "block_failed_logins_seconds": "Block_Multiple_Failed_Logins_Time_To_Unblock_By_User_In_Minutes",
    "e2e_enabled": "E2E_Enable",
    "e2e_allow_unencrypted_messages": "E2E_Allow_Unencrypted_Messages",
    "e2e_default_direct_rooms": "E2E_Enabled_Default_DirectRooms",
    "e2e_default_private_rooms": "E2E_Enabled_Default_PrivateRooms",
}
