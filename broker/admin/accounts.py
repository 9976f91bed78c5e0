"""Web accounts and API tokens: hashed passwords (scrypt), lockout after repeated failures,
bearer tokens whose secret is stored only as a hash. Shared by the CLI and the web UI."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.clock import utcnow
from broker.store.audit import record_event
from broker.store.models import ApiToken, User

ROLES = ("admin", "viewer")
# scrypt cost (RFC 7914): about 16 MiB and tens of milliseconds per check, which is what makes
# a stolen hash slow to guess; the parameters are stored with each hash so they can be raised.
_N, _R, _P = 2 ** 14, 8, 1
TOKEN_PREFIX = "brk"


class AccountError(ValueError):
    """The account or token cannot be created or changed as asked; the message says why."""


def hash_password(password: str) -> str:
    """An scrypt hash with its salt and parameters, as one string."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return "$".join(["scrypt", str(_N), str(_R), str(_P), _b64(salt), _b64(digest)])


def check_password(password: str, stored: str) -> bool:
    """True when `password` matches the stored hash (constant-time compare)."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        expected = base64.b64decode(digest)
        found = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                               p=int(p), dklen=len(expected), maxmem=64 * 1024 * 1024)
    except ValueError:
        return False
    return hmac.compare_digest(found, expected)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise AccountError(f"role {role!r} is not one of {', '.join(ROLES)}")


def add_user(session: Session, username: str, password: str, role: str, actor: str) -> User:
    """Create an account; AccountError when the name is taken, empty or the password too short."""
    _check_role(role)
    if not username.strip() or len(username) > 64:
        raise AccountError("the username must be 1-64 characters")
    if len(password) < 10:
        raise AccountError("the password must be at least 10 characters")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise AccountError(f"user {username!r} exists already")
    user = User(username=username, password_hash=hash_password(password), role=role)
    session.add(user)
    session.flush()
    record_event(session, actor, "user.add", "user", user.id, username=username, role=role)
    return user


def list_users(session: Session) -> list[User]:
    """Every account, by name."""
    return list(session.scalars(select(User).order_by(User.username)))


def disable_user(session: Session, username: str, actor: str) -> User:
    """Disable an account: it can no longer sign in (its history stays)."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise AccountError(f"no user {username!r}")
    user.disabled = True
    record_event(session, actor, "user.disable", "user", user.id, username=username)
    return user


@dataclass(frozen=True)
class LoginResult:
    """How a sign-in attempt ended: the user when it succeeded, else why not."""
    user: User | None
    reason: str = ""


def authenticate(session: Session, username: str, password: str, max_failures: int,
                 lockout: timedelta, now: datetime | None = None) -> LoginResult:
    """Check a sign-in; count failures, lock the account after `max_failures`, audit both."""
    now = now or utcnow()
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        # Hash anyway, so a wrong name takes as long as a wrong password.
        check_password(password, _DUMMY_HASH)
        record_event(session, username[:64] or "?", "login.failed", "user", "", reason="unknown")
        return LoginResult(None, "wrong username or password")
    if user.disabled:
        record_event(session, user.username, "login.refused", "user", user.id, reason="disabled")
        return LoginResult(None, "wrong username or password")
    if user.locked_until is not None and user.locked_until > now:
        record_event(session, user.username, "login.refused", "user", user.id, reason="locked")
        return LoginResult(None, "account locked after repeated failed sign-ins; try later")
    if not check_password(password, user.password_hash):
        user.failed_logins += 1
        locked = user.failed_logins >= max_failures
        if locked:
            user.locked_until, user.failed_logins = now + lockout, 0
        record_event(session, user.username, "login.failed", "user", user.id,
                     reason="password", locked=locked)
        return LoginResult(None, "account locked after repeated failed sign-ins; try later"
                           if locked else "wrong username or password")
    user.failed_logins, user.locked_until, user.last_login_at = 0, None, now
    record_event(session, user.username, "login", "user", user.id)
    return LoginResult(user)


_DUMMY_HASH = hash_password(secrets.token_hex(8))


def create_token(session: Session, name: str, role: str, actor: str) -> str:
    """A new API bearer token; the secret is returned once and only its hash kept."""
    _check_role(role)
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise AccountError(f"token {name!r} exists already")
    secret = secrets.token_urlsafe(32)
    token = ApiToken(name=name, role=role, secret_hash=_token_hash(secret))
    session.add(token)
    session.flush()
    record_event(session, actor, "token.create", "api_token", token.id, name=name, role=role)
    return f"{TOKEN_PREFIX}_{token.id}_{secret}"


def list_tokens(session: Session) -> list[ApiToken]:
    """Every token, live and revoked, by name."""
    return list(session.scalars(select(ApiToken).order_by(ApiToken.name)))


def revoke_token(session: Session, name: str, actor: str) -> ApiToken:
    """Stop a token at once: its next API call is refused; it is kept for the audit trail."""
    token = session.scalar(select(ApiToken).where(ApiToken.name == name))
    if token is None:
        raise AccountError(f"no token {name!r}")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        record_event(session, actor, "token.revoke", "api_token", token.id, name=name)
    return token


def _token_hash(secret: str) -> str:
    # The secret has 256 random bits: a plain SHA-256 cannot be guessed back, and it is cheap
    # enough to check on every API call (unlike a password hash).
    return hashlib.sha256(secret.encode()).hexdigest()


def token_holder(session: Session, bearer: str) -> ApiToken | None:
    """The live token this bearer value names, or None."""
    prefix, _, rest = bearer.partition("_")
    token_id, _, secret = rest.partition("_")
    if prefix != TOKEN_PREFIX or not token_id.isdigit() or not secret:
        return None
    token = session.get(ApiToken, int(token_id))
    if token is None or token.revoked_at is not None:
        return None
    if not hmac.compare_digest(token.secret_hash, _token_hash(secret)):
        return None
    return token
