"""The server: users, sessions and the account-security entry points.

Theory of operation.  :class:`Server` is a sans-IO model of one Rocket.Chat server: it holds the
documents Rocket.Chat would hold in MongoDB and exposes one method per server entry point.  It never
reads a clock (every time-dependent call takes ``now``, seconds) and draws all randomness from the
injected entropy source.  Behaviour that differs between Rocket.Chat and a variant is chosen by the
:class:`~protocol.profiles.Profile` (``rocketchat`` or ``hardened``) and the
:class:`~protocol.settings.Settings`.

2FA lives in :class:`~protocol.twofactor.TwoFactor`; this module resolves ids to records, runs
sessions and the login blocker, and checks permissions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .accounts import (
    EmailAddress,
    LoginBlocker,
    LoginToken,
    User,
    hash_password,
    new_id,
    new_token,
    verify_password,
)
from .contacts_server import ContactsServerMixin, RecoveryRecord
from .dehydrated_server import DehydratedDevice, DehydratedServerMixin
from .e2e_server import POLICIES, E2EServerMixin, Notification
from .entropy import Entropy, default_entropy
from .errors import NotFoundError, PermissionDenied, ProtocolError, TwoFactorError, ValidationError
from .history_server import HistoryServerMixin, KeyBundle
from .profiles import Profile, get_profile
from .rooms import Message, Room
from .settings import Settings
from .twofactor import EmailMessage, TotpEnrollment, TwoFactor

__all__ = ["PERMISSIONS", "Server"]

#: Permission -> roles that hold it by default (``apps/meteor/app/authorization/server``).
PERMISSIONS: dict[str, frozenset[str]] = {
    "edit-other-user-totp": frozenset({"admin"}),
    "edit-other-user-e2ee": frozenset({"admin"}),
    "toggle-room-e2e-encryption": frozenset({"admin", "owner"}),
}


class Server(E2EServerMixin, ContactsServerMixin, DehydratedServerMixin, HistoryServerMixin):
    """One Rocket.Chat server.

    ``policy`` chooses how a member who lacks a room key gets it: ``queue`` (current Rocket.Chat),
    ``live`` (legacy Rocket.Chat, the user guide's wording) or ``backup`` (a Matrix-style key
    backup beside the queue); see :mod:`protocol.e2e_server`.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        profile: str | Profile = "rocketchat",
        entropy: Entropy | None = None,
        *,
        policy: str = "queue",
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        if not isinstance(self.settings, Settings):
            raise ValidationError("error-invalid-setting", "settings must be a protocol.Settings")
        self.profile = get_profile(profile)
        if policy not in POLICIES:
            raise ValidationError(
                "error-invalid-policy", f"policy: must be one of {list(POLICIES)}, got {policy!r}"
            )
        self.policy = policy
        #: the mechanisms the policy runs
        self.mechanisms = POLICIES[policy]
        #: E-mails the server would have sent, oldest first.
        self.outbox: list[EmailMessage] = []
        self._entropy = entropy if entropy is not None else default_entropy()
        self.twofactor = TwoFactor(self.settings, self.profile, self._entropy, self.outbox)
        self._users: dict[str, User] = {}
        self._by_username: dict[str, str] = {}
        self._blocker = LoginBlocker(self.settings)
        self._rooms: dict[str, Room] = {}
        self._messages: dict[str, list[Message]] = {}
        self._backups: dict[tuple[str, str], dict[str, str]] = {}
        self._contacts: dict[str, RecoveryRecord] = {}
        self._dehydrated: dict[str, DehydratedDevice] = {}
        self._bundles: dict[tuple[str, str], KeyBundle] = {}
        self._seq = 0
        self._notifications: list[Notification] = []
        self._user_rooms: dict[str, dict[str, None]] = {}
        self.listeners: list[Callable[[str, str, str], None]] = []

    @property
    def entropy(self) -> Entropy:
        """The server's entropy source (ids, tokens, 2FA secrets and codes)."""
        return self._entropy

    @entropy.setter
    def entropy(self, value: Entropy) -> None:
        self._entropy = value
        self.twofactor.entropy = value

    @property
    def backups(self) -> dict[tuple[str, str], dict[str, str]]:
        """Policy ``backup``: (user id, room id) -> kid -> key wrapped for the recovery key."""
        return {key: dict(keys) for key, keys in self._backups.items()}

    # ------------------------------------------------------------------ users and sessions

    def create_user(
        self,
        username: str,
        password: str | None = None,
        email: str | None = None,
        *,
        roles: tuple[str, ...] = ("user",),
        now: float | None = None,
    ) -> str:
        """A new user; an e-mail given here counts as verified.  Returns the user id.

        ``now`` is the creation time; Rocket.Chat skips 2FA for ``RememberFor`` seconds after
        registration, so a user created without ``now`` never gets that grace.
        """
        if not isinstance(username, str) or not username.strip():
            raise ValidationError("error-invalid-username", f"invalid username {username!r}")
        if username in self._by_username:
            raise ProtocolError("error-field-unavailable", f"{username} is already in use")
        for name, value in (("password", password), ("email", email)):
            if value is not None and not isinstance(value, str):
                raise ValidationError("error-invalid-params", f"{name} must be a string")
        user = User(
            id=new_id(self.entropy),
            username=username,
            created_at=now,
            roles=tuple(roles),
            emails=[EmailAddress(email, verified=True)] if email else [],
            password_hash=hash_password(password, self.entropy) if password is not None else None,
            email2fa_enabled=self.settings.email_auto_opt_in,
        )
        self._users[user.id] = user
        self._by_username[username] = user.id
        return user.id

    def user(self, user_id: str) -> User:
        """The record of ``user_id``, or :class:`NotFoundError`."""
        try:
            return self._users[user_id]
        except (KeyError, TypeError):
            raise NotFoundError("error-invalid-user", f"unknown user {user_id!r}") from None

    def user_id_of(self, username: str) -> str:
        try:
            return self._by_username[username]
        except (KeyError, TypeError):
            raise NotFoundError("error-invalid-user", f"unknown username {username!r}") from None

    @property
    def user_ids(self) -> list[str]:
        return list(self._users)

    def has_permission(self, user_id: str, permission: str, room_id: str | None = None) -> bool:
        """Whether the user's global roles, or its roles in ``room_id``, grant ``permission``."""
        roles = set(self.user(user_id).roles)
        if room_id is not None:
            sub = self.room(room_id).subscriptions.get(user_id)
            if sub is not None:
                roles.update(sub.roles)
        return bool(PERMISSIONS.get(permission, frozenset()) & roles)

    def login(
        self,
        user_id: str,
        password: str,
        *,
        now: float,
        code: str | None = None,
        method: str | None = None,
    ) -> str:
        """Password login, then the second factor; returns a new login token.

        At login the remember window never applies and the password is never a second factor
        (loginHandler.ts: ``disablePasswordFallback: true``).  Every failure, a missing 2FA code
        included, counts towards the login blocker.
        """
        user = self.user(user_id)
        if self._blocker.is_blocked(user.username, now):
            raise PermissionDenied("error-login-blocked-for-user", "too many failed logins; try again later")
        if not isinstance(password, str) or user.password_hash is None:
            self._blocker.record_failure(user.username, now)
            raise PermissionDenied("error-invalid-credentials", "incorrect password")
        if not verify_password(user.password_hash, password):
            self._blocker.record_failure(user.username, now)
            raise PermissionDenied("error-invalid-credentials", "incorrect password")
        try:
            self.twofactor.check(user, code, method=method, now=now, disable_password_fallback=True)
        except TwoFactorError as exc:
            # Accounts.onLoginFailure ignores 'totp-required' (the normal first step of a 2FA
            # login) and 'error-login-blocked-for-user'
            if exc.code != "totp-required":
                self._blocker.record_failure(user.username, now)
            raise
        self._blocker.record_success(user.username, now)
        token = new_token(self.entropy)
        user.login_tokens[token] = LoginToken(token=token, created_at=now)
        return token

    def logout(self, user_id: str, login_token: str) -> bool:
        """End one session; True if it existed."""
        return self.user(user_id).login_tokens.pop(login_token, None) is not None

    def logout_everywhere(self, user_id: str) -> None:
        self.user(user_id).login_tokens.clear()

    def is_logged_in(self, user_id: str, login_token: str) -> bool:
        return login_token in self.user(user_id).login_tokens

    # ------------------------------------------------------------------ two-factor entry points

    def totp_enable(self, user_id: str, *, now: float) -> TotpEnrollment:
        """``2fa:enable``."""
        return self.twofactor.enable(self.user(user_id), now=now)

    def totp_validate_temp_token(
        self, user_id: str, code: str, *, now: float, login_token: str | None = None
    ) -> list[str]:
        """``2fa:validateTempToken``: the backup codes; other sessions than ``login_token`` end."""
        return self.twofactor.validate_temp_token(self.user(user_id), code, now=now, keep_token=login_token)

    def totp_disable(self, user_id: str, code: str, *, now: float) -> bool:
        """``2fa:disable``."""
        return self.twofactor.disable(self.user(user_id), code, now=now)

    def totp_regenerate_codes(self, user_id: str, code: str, *, now: float) -> list[str]:
        """``2fa:regenerateCodes``; an empty list when the code is wrong."""
        return self.twofactor.regenerate_codes(self.user(user_id), code, now=now)

    def totp_codes_remaining(self, user_id: str) -> int:
        """``2fa:checkCodesRemaining``."""
        return self.twofactor.codes_remaining(self.user(user_id))

    def email_2fa_send_code(self, user_id: str, *, now: float) -> EmailMessage:
        """``users.2fa.sendEmailCode``: what the e-mail carries."""
        return self.twofactor.send_email_code(self.user(user_id), now=now)

    def check_two_factor(
        self,
        user_id: str,
        code: str | None,
        *,
        method: str | None = None,
        now: float,
        login_token: str | None = None,
        require_second_factor: bool = False,
        disable_remember_me: bool = False,
    ) -> bool:
        """The 2FA gate in front of sensitive actions: True or :class:`TwoFactorError`."""
        return self.twofactor.check(
            self.user(user_id),
            code,
            method=method,
            now=now,
            login_token=login_token,
            require_second_factor=require_second_factor,
            disable_remember_me=disable_remember_me,
        )

    def admin_reset_totp(
        self,
        actor_id: str,
        user_id: str,
        code: str | None,
        *,
        now: float,
        login_token: str | None = None,
        notify: bool = False,
    ) -> bool:
        """``users.resetTOTP`` (``apps/meteor/server/api/v1/users.ts``): 2FA of the caller (never
        remembered), and for another user's TOTP the permission ``edit-other-user-totp`` and 2FA
        enabled on the server (``error-two-factor-not-enabled``).  ``Enforce_Password_Fallback``
        is no longer needed (PR #29634, 2023).  The user is logged out everywhere.
        """
        actor = self.user(actor_id)
        target = self.user(user_id)
        self.twofactor.check(actor, code, now=now, login_token=login_token, disable_remember_me=True)
        if actor.id != target.id:
            if not self.has_permission(actor.id, "edit-other-user-totp"):
                raise PermissionDenied("error-not-allowed", "edit-other-user-totp is required")
            if not self.settings.two_factor_enabled:
                raise PermissionDenied("error-two-factor-not-enabled", "two-factor authentication is off")
        if notify:
            self._mail_notice(target, "Your TOTP has been reset", now)
        return self.twofactor.reset_totp(target)

    # ------------------------------------------------------------------ state

    def restart(self) -> None:
        """The server process restarts from its persisted state (the documents): what lived only
        in memory is gone: pushes not yet sent, and the room-key reset locks (RC's LockMap)."""
        self._notifications.clear()
        for room in self._rooms.values():
            room.reset_locked_until = float("-inf")

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """The collections as JSON-serialisable documents with Rocket.Chat's field names."""
        return {
            "users": [u.to_document() for u in self._users.values()],
            **self._e2e_dump(),
            "e2eRecoveryContacts": self._contacts_dump(),
            "e2eDehydratedDevices": self._dehydrated_dump(),
            "e2eKeyBundles": self._bundles_dump(),
        }
