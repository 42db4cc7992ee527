"""Accounts, tokens, brute-force defence and RBAC on SQLite and PostgreSQL, with an injectable clock."""

from __future__ import annotations

import base64
import json
import re
import statistics
import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from core.accounts import (
    AuthPolicy,
    AuthService,
    check_password_strength,
    hash_password,
)
from core.audit import AuditLog
from core.errors import (
    CaptchaRequired,
    InvalidCredentials,
    NotFound,
    PermissionDenied,
    TooManyAttempts,
    ValidationError,
)
from core.schema import auth_sessions, users
from core.users import UserStore, require_role

SECRET = "test-jwt-secret-" + "k" * 40
PASSWORD = "correct horse battery staple"
OTHER_PASSWORD = "tangerine submarine orchestra 42"
FAST = AuthPolicy(bcrypt_rounds=4)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_auth(engine, clock, policy: AuthPolicy = FAST) -> AuthService:
    return AuthService(engine, secret=SECRET, policy=policy, clock=clock,
                       users=UserStore(engine, clock=clock), audit=AuditLog(engine, clock=clock))


@pytest.fixture
def auth(engine, clock) -> AuthService:
    return make_auth(engine, clock)


@pytest.fixture
def alice(auth):
    return auth.register("alice", PASSWORD, email="alice@example.org")


def solve(question: str) -> int:
    """Answer a CAPTCHA the way a person would."""
    a, op, b = re.fullmatch(r"What is (\d+) ([+−]) (\d+)\?", question).groups()
    return int(a) + int(b) if op == "+" else int(a) - int(b)


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# --- passwords ---------------------------------------------------------------------------------
def test_password_policy_says_why_a_password_is_weak():
    with pytest.raises(ValidationError, match="at least 12 characters") as short:
        check_password_strength("Xy7!short")
    assert short.value.field == "password"
    with pytest.raises(ValidationError, match="too easy to guess. .*common"):
        check_password_strength("password123456")
    with pytest.raises(ValidationError, match="too easy to guess"):
        check_password_strength("alicealice2026", user_inputs=("alicealice",))
    with pytest.raises(ValidationError, match="at most 128"):
        check_password_strength("x" * 129)
    check_password_strength(PASSWORD)  # four random words: fine


def test_register_refuses_weak_password_and_stores_only_a_bcrypt_hash(auth, engine):
    with pytest.raises(ValidationError, match="too easy to guess"):
        auth.register("bob", "qwertyuiop123")
    assert auth.users.find_by_username("bob") is None
    user = auth.register("Bob", OTHER_PASSWORD)
    assert user.username == "bob" and user.role == "user"
    with engine.connect() as conn:
        stored = conn.execute(select(users.c.password_hash).where(users.c.id == user.id)).scalar_one()
    assert stored.startswith("$2b$04$") and OTHER_PASSWORD not in stored
    with pytest.raises(ValidationError, match="taken"):
        auth.register("bob", OTHER_PASSWORD)


def test_default_cost_is_bcrypt_12():
    from core.config import load_settings

    assert AuthPolicy().bcrypt_rounds == 12 and load_settings().bcrypt_rounds == 12
    assert AuthPolicy.from_settings(load_settings()).bcrypt_rounds == 12
    assert hash_password(PASSWORD).startswith("$2b$12$")


def test_long_passphrases_count_beyond_72_bytes(auth):
    prefix = "a long shared prefix of many words that fills bcrypt's seventy-two byte limit "
    auth.register("longpass", prefix + "ending one zebra")
    with pytest.raises(InvalidCredentials):
        auth.login("longpass", prefix + "ending two yak")
    assert auth.login("longpass", prefix + "ending one zebra").user.username == "longpass"


# --- tokens ------------------------------------------------------------------------------------
def test_login_issues_hs256_token_with_required_claims(auth, alice, clock):
    login = auth.login("ALICE ", PASSWORD, ip="10.0.0.7", user_agent="pytest")
    assert jwt.get_unverified_header(login.token)["alg"] == "HS256"
    claims = jwt.decode(login.token, SECRET, algorithms=["HS256"], options={"verify_exp": False,
                                                                            "verify_iat": False})
    assert claims["sub"] == alice.id and claims["role"] == "user" and claims["jti"] == login.session.jti
    assert claims["iat"] == int(clock.now.timestamp()) and claims["exp"] - claims["iat"] == 30 * 60
    assert (login.session.ip, login.session.user_agent) == ("10.0.0.7", "pytest")
    verified = auth.verify(login.token)
    assert verified.user == alice and verified.renewed_token is None


def forge(claims: dict, *, key: str = SECRET, algorithm: str = "HS256", headers: dict | None = None) -> str:
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def rejection_cases(auth, clock, login):
    claims = jwt.decode(login.token, options={"verify_signature": False})
    head, body, sig = login.token.split(".")
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    last = sig[-1]
    # the same signature bytes spelt with different unused low bits in the last character
    twin = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    idx = twin.index(last)
    non_canonical = twin[(idx & ~0b11) | ((idx + 1) & 0b11)]
    return {
        "alg none": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{body}.",
        "alg none with signature": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{body}.{sig}",
        "HS384 same key": forge(claims, algorithm="HS384"),
        "RS256": forge(claims, key=rsa_key, algorithm="RS256"),
        "wrong secret": forge(claims, key="another-secret-" + "z" * 40),
        "payload edited": f"{head}.{b64({**claims, 'role': 'admin'})}.{sig}",
        "signature stripped": f"{head}.{body}.",
        "non-canonical signature": f"{head}.{body}.{sig[:-1]}{non_canonical}",
        "missing jti": forge({k: v for k, v in claims.items() if k != "jti"}),
        "missing exp": forge({k: v for k, v in claims.items() if k != "exp"}),
        "wrong issuer": forge({**claims, "iss": "someone-else"}),
        "string exp": forge({**claims, "exp": str(claims["exp"])}),
        "issued in the future": forge({**claims, "iat": claims["iat"] + 3600, "exp": claims["exp"] + 3600}),
        "unknown session": forge({**claims, "jti": "0" * 32}),
        "other user's session": forge({**claims, "sub": "f" * 32}),
        "empty": "",
        "garbage": "not.a.token",
        "huge": "a" * 5000,
    }


def test_verify_rejects_every_forged_or_malformed_token(auth, alice, clock):
    login = auth.login("alice", PASSWORD)
    for name, token in rejection_cases(auth, clock, login).items():
        with pytest.raises(InvalidCredentials):
            auth.verify(token)
            pytest.fail(f"accepted: {name}")
    assert auth.verify(login.token).user.id == alice.id  # the genuine one still works


def test_expired_revoked_deleted_and_locked_are_rejected(auth, alice, clock, engine):
    admin = auth.create_admin("root", OTHER_PASSWORD)
    expired = auth.login("alice", PASSWORD)
    clock.advance(minutes=31)
    with pytest.raises(InvalidCredentials, match="expired"):
        auth.verify(expired.token)

    revoked = auth.login("alice", PASSWORD)
    assert auth.logout(revoked.token) is True
    with pytest.raises(InvalidCredentials, match="signed out"):
        auth.verify(revoked.token)
    assert auth.logout(revoked.token) is False

    locked = auth.login("alice", PASSWORD)
    auth.lock_user(admin, alice.id)
    with pytest.raises(InvalidCredentials):
        auth.verify(locked.token)
    auth.unlock_user(admin, alice.id)
    with pytest.raises(InvalidCredentials):  # unlocking does not bring ended sessions back
        auth.verify(locked.token)

    deleted = auth.login("alice", PASSWORD)
    with engine.begin() as conn:
        conn.execute(delete(users).where(users.c.id == alice.id))
    with pytest.raises(InvalidCredentials):
        auth.verify(deleted.token)


@pytest.fixture
def live_token(engine):
    service = make_auth(engine, Clock())
    service.register("mallory", PASSWORD)
    return service, service.login("mallory", PASSWORD).token


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ "


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_mutated_token_is_rejected(live_token, data):
    service, token = live_token
    kind = data.draw(st.sampled_from(["replace", "insert", "delete", "truncate", "swap"]))
    i = data.draw(st.integers(0, len(token) - 1))
    if kind == "replace":
        c = data.draw(st.sampled_from(_ALPHABET).filter(lambda ch: ch != token[i]))
        mutated = token[:i] + c + token[i + 1:]
    elif kind == "insert":
        mutated = token[:i] + data.draw(st.sampled_from(_ALPHABET)) + token[i:]
    elif kind == "delete":
        mutated = token[:i] + token[i + 1:]
    elif kind == "truncate":
        mutated = token[:i]
    else:
        j = data.draw(st.integers(0, len(token) - 1).filter(lambda j: token[j] != token[i]))
        chars = list(token)
        chars[i], chars[j] = chars[j], chars[i]
        mutated = "".join(chars)
    assert mutated != token
    with pytest.raises(InvalidCredentials):
        service.verify(mutated)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(claims=st.fixed_dictionaries({
    "sub": st.text(max_size=40), "role": st.sampled_from(["user", "admin"]), "jti": st.text(max_size=40),
    "iat": st.integers(0, 2**40), "exp": st.integers(0, 2**40), "iss": st.just("optimus"),
}), key=st.text(min_size=32, max_size=64))
def test_tokens_signed_with_any_other_key_are_rejected(live_token, claims, key):
    service, _ = live_token
    if key.encode() == SECRET.encode():
        return
    with pytest.raises(InvalidCredentials):
        service.verify(jwt.encode(claims, key, algorithm="HS256"))


def test_sliding_renewal_and_last_seen(auth, alice, clock):
    login = auth.login("alice", PASSWORD)
    clock.advance(seconds=30)
    assert auth.verify(login.token).session.last_seen_at == login.session.last_seen_at  # < 1 min: no write
    clock.advance(seconds=31)
    seen = auth.verify(login.token)
    assert seen.session.last_seen_at == clock.now and seen.renewed_token is None
    clock.advance(minutes=14)  # 15m01s: less than half the lifetime left
    renewed = auth.verify(login.token)
    assert renewed.renewed_token and renewed.renewed_token != login.token
    new_claims = jwt.decode(renewed.renewed_token, options={"verify_signature": False})
    assert new_claims["jti"] == login.session.jti and new_claims["exp"] == int(clock.now.timestamp()) + 1800
    clock.advance(minutes=20)  # the first token has expired; its successor has not
    with pytest.raises(InvalidCredentials, match="expired"):
        auth.verify(login.token)
    assert auth.verify(renewed.renewed_token, renew=False).session.jti == login.session.jti


def test_concurrent_session_cap_ends_the_oldest(auth, alice, clock):
    logins = []
    for _ in range(5):
        logins.append(auth.login("alice", PASSWORD))
        clock.advance(seconds=1)
    assert len(auth.sessions(alice.id)) == 5
    sixth = auth.login("alice", PASSWORD)
    with pytest.raises(InvalidCredentials, match="signed out"):
        auth.verify(logins[0].token)
    for login in logins[1:] + [sixth]:
        auth.verify(login.token)
    active = auth.sessions(alice.id)
    assert len(active) == 5 and logins[0].session.jti not in {s.jti for s in active}
    ended = [s for s in auth.sessions(alice.id, include_inactive=True) if s.revoked_reason == "cap"]
    assert [s.jti for s in ended] == [logins[0].session.jti]


def test_logout_everywhere_and_revoking_sessions(auth, alice, clock):
    bob = auth.register("bob", OTHER_PASSWORD)
    admin = auth.create_admin("root", OTHER_PASSWORD)
    a1, a2 = auth.login("alice", PASSWORD), auth.login("alice", PASSWORD)
    b1 = auth.login("bob", OTHER_PASSWORD)
    with pytest.raises(NotFound):  # someone else's session does not exist for alice
        auth.revoke_session(alice, b1.session.jti)
    auth.revoke_session(alice, a2.session.jti)
    with pytest.raises(InvalidCredentials):
        auth.verify(a2.token)
    auth.revoke_session(admin, b1.session.jti)  # admin revoke
    with pytest.raises(InvalidCredentials):
        auth.verify(b1.token)
    with pytest.raises(PermissionDenied):
        auth.revoke_all_sessions(bob, alice.id)
    assert auth.logout_everywhere(alice.id) == 1
    with pytest.raises(InvalidCredentials):
        auth.verify(a1.token)
    b2 = auth.login("bob", OTHER_PASSWORD)
    assert auth.revoke_all_sessions(admin, bob.id) == 1
    with pytest.raises(InvalidCredentials):
        auth.verify(b2.token)


def test_change_password_needs_the_old_one_and_ends_other_sessions(auth, alice, clock):
    here, elsewhere = auth.login("alice", PASSWORD), auth.login("alice", PASSWORD)
    with pytest.raises(InvalidCredentials, match="current password"):
        auth.change_password(alice.id, "not my password", OTHER_PASSWORD)
    with pytest.raises(ValidationError, match="too easy"):
        auth.change_password(alice.id, PASSWORD, "password123456")
    assert auth.change_password(alice.id, PASSWORD, OTHER_PASSWORD, current_jti=here.session.jti) == 1
    auth.verify(here.token)
    with pytest.raises(InvalidCredentials):
        auth.verify(elsewhere.token)
    with pytest.raises(InvalidCredentials):
        auth.login("alice", PASSWORD)
    assert auth.login("alice", OTHER_PASSWORD).user.id == alice.id


def test_handoff_is_single_use_and_lives_60_seconds(auth, alice, clock):
    login = auth.login("alice", PASSWORD)
    BROWSER = "this-browser-" + "b" * 20
    handoff = auth.mint_handoff(login.session, browser=BROWSER)
    assert handoff not in login.token and len(handoff) >= 40
    clock.advance(seconds=59)
    cookie = auth.redeem_handoff(handoff, browser=BROWSER)
    assert cookie.session.jti == login.session.jti and auth.verify(cookie.token).user.id == alice.id
    with pytest.raises(InvalidCredentials, match="already used"):
        auth.redeem_handoff(handoff, browser=BROWSER)
    late = auth.mint_handoff(login.session, browser=BROWSER)
    clock.advance(seconds=61)
    with pytest.raises(InvalidCredentials):
        auth.redeem_handoff(late, browser=BROWSER)
    revoked = auth.mint_handoff(login.session, browser=BROWSER)
    auth.logout(login.token)
    with pytest.raises(InvalidCredentials):
        auth.redeem_handoff(revoked, browser=BROWSER)
    for junk in ("", "x", "y" * 500):
        with pytest.raises(InvalidCredentials):
            auth.redeem_handoff(junk, browser=BROWSER)


# --- brute force -------------------------------------------------------------------------------
def test_three_failures_captcha_five_locked_window_expiry_unlocks(auth, alice, clock):
    warnings = []
    for _ in range(2):
        with pytest.raises(InvalidCredentials) as exc:
            auth.login("alice", "wrong password", ip="10.0.0.1")
        assert type(exc.value) is InvalidCredentials and exc.value.message == "Wrong username or password."
        warnings.append(exc.value.detail["warning"])
        clock.advance(minutes=1)
    assert warnings == ["2 attempts left before you are asked a security question.",
                        "1 attempt left before you are asked a security question."]
    with pytest.raises(CaptchaRequired) as third:  # the third failure: same message, plus a question
        auth.login("alice", "wrong password", ip="10.0.0.1")
    assert third.value.message == "Wrong username or password." and auth.captcha_needed("alice")
    assert third.value.detail["warning"] == "2 attempts left before sign-in is locked for 15 minutes."
    clock.advance(minutes=1)

    with pytest.raises(CaptchaRequired, match="answer the question"):  # even the right password needs it
        auth.login("alice", PASSWORD, ip="10.0.0.1")
    with pytest.raises(CaptchaRequired, match="not right") as wrong:
        auth.login("alice", PASSWORD, captcha_id=third.value.captcha_id,
                   captcha_answer=solve(third.value.question) + 1)
    with pytest.raises(CaptchaRequired):  # single use: the right answer to a used question is too late
        auth.login("alice", PASSWORD, captcha_id=third.value.captcha_id, captcha_answer=solve(third.value.question))

    q = wrong.value
    with pytest.raises(CaptchaRequired, match="Wrong username or password") as fourth:
        auth.login("alice", "wrong again", captcha_id=q.captcha_id, captcha_answer=str(solve(q.question)))
    assert fourth.value.detail["attempts_left"] == 1
    clock.advance(minutes=1)
    q = fourth.value
    with pytest.raises(TooManyAttempts, match="Try again in 11 minutes") as fifth:
        auth.login("alice", "wrong again", captcha_id=q.captcha_id, captcha_answer=solve(q.question))
    assert fifth.value.retry_after == 11 * 60  # failures at minutes 0, 1, 2, 3, 4: locked until 15

    clock.advance(minutes=5)
    challenge = auth.new_captcha()
    with pytest.raises(TooManyAttempts, match="Try again in 6 minutes"):  # the right password does not help
        auth.login("alice", PASSWORD, captcha_id=challenge.id, captcha_answer=solve(challenge.question))

    clock.advance(minutes=6)  # the window has passed: no lock, and no CAPTCHA either
    assert not auth.captcha_needed("alice")
    assert auth.login("alice", PASSWORD).user.id == alice.id


def test_an_unknown_username_gets_the_same_warnings(auth, alice, clock):
    for name in ("alice", "nobody-here"):
        with pytest.raises(InvalidCredentials) as exc:
            auth.login(name, "wrong password")
        assert exc.value.detail["warning"] == "2 attempts left before you are asked a security question."


def test_a_successful_login_resets_the_count(auth, alice, clock):
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            auth.login("alice", "nope nope nope")
    auth.login("alice", PASSWORD)
    for _ in range(2):
        with pytest.raises(InvalidCredentials) as exc:
            auth.login("alice", "nope nope nope")
        assert type(exc.value) is InvalidCredentials


def test_per_ip_limit_refuses_the_address_for_the_window(engine, clock):
    auth = make_auth(engine, clock, AuthPolicy(bcrypt_rounds=4, ip_max_failures=4))
    auth.register("victim", PASSWORD)
    for n in range(4):  # spraying different usernames never trips a per-account rule
        with pytest.raises(InvalidCredentials) as exc:
            auth.login(f"user{n}", "guess guess guess", ip="203.0.113.9")
        assert type(exc.value) is InvalidCredentials
    with pytest.raises(TooManyAttempts, match="your network address"):
        auth.login("victim", PASSWORD, ip="203.0.113.9")
    assert auth.login("victim", PASSWORD, ip="198.51.100.1").user.username == "victim"
    clock.advance(minutes=15, seconds=1)
    assert auth.login("victim", PASSWORD, ip="203.0.113.9").user.username == "victim"


def test_unanswered_captchas_count_against_the_address(engine, clock):
    auth = make_auth(engine, clock, AuthPolicy(bcrypt_rounds=4, captcha_after=1, ip_max_failures=3))
    auth.register("victim", PASSWORD)
    for _ in range(3):  # one wrong password, then retries that skip the question
        with pytest.raises(CaptchaRequired):
            auth.login("victim", "guess guess guess", ip="203.0.113.7")
    with pytest.raises(TooManyAttempts, match="your network address"):
        auth.login("victim", PASSWORD, ip="203.0.113.7")


def test_admin_locked_account_answers_like_a_wrong_password(auth, alice, clock):
    admin = auth.create_admin("root", OTHER_PASSWORD)
    auth.lock_user(admin, alice.id)
    with pytest.raises(InvalidCredentials, match="Wrong username or password") as wrong:
        auth.login("alice", "a wrong password")
    with pytest.raises(InvalidCredentials, match="Wrong username or password") as right:
        auth.login("alice", PASSWORD)  # the right password must not be confirmed by a different answer
    assert type(wrong.value) is type(right.value) is InvalidCredentials
    auth.unlock_user(admin, alice.id)
    assert auth.login("alice", PASSWORD).user.id == alice.id


# --- no user enumeration -----------------------------------------------------------------------
def _outcome(auth, username, password):
    try:
        auth.login(username, password, ip="192.0.2.1")
    except InvalidCredentials as exc:
        return type(exc).__name__, exc.message
    return "ok", ""


def failing_series(auth, username: str, attempts: int) -> list[tuple[str, str]]:
    """Wrong passwords in a row, answering each CAPTCHA as a person would."""
    outcomes, captcha = [], None
    for _ in range(attempts):
        answer = {} if captcha is None else {"captcha_id": captcha.captcha_id,
                                             "captcha_answer": solve(captcha.question)}
        try:
            auth.login(username, "wrong password", ip="192.0.2.1", **answer)
        except InvalidCredentials as exc:
            captcha = exc if isinstance(exc, CaptchaRequired) else None
            outcomes.append((type(exc).__name__, exc.message))
    return outcomes


def test_unknown_user_and_wrong_password_look_the_same(auth, alice, clock):
    known = failing_series(auth, "alice", 6)
    unknown = failing_series(auth, "nobody-here", 6)
    assert known == unknown  # same messages, the same CAPTCHA after 3, the same lock after 5
    assert [k for k, _ in known] == ["InvalidCredentials", "InvalidCredentials", "CaptchaRequired",
                                     "CaptchaRequired", "TooManyAttempts", "TooManyAttempts"]
    assert {m for _, m in known[:4]} == {"Wrong username or password."}


def test_unknown_user_and_wrong_password_take_the_same_time(engine, clock):
    # Cost 8 (~20 ms here) makes bcrypt dominate, as cost 12 does in production; thresholds off.
    auth = make_auth(engine, clock, AuthPolicy(bcrypt_rounds=8, captcha_after=10_000, max_failures=10_000,
                                               ip_max_failures=10_000))
    auth.register("alice", PASSWORD)
    one_check = min(_timed(lambda: hash_password("x", rounds=8)) for _ in range(3))
    times = {"known": [], "unknown": []}
    for i in range(-2, 16):  # interleaved, after two warm-up rounds
        for kind, name in (("known", "alice"), ("unknown", f"ghost{i % 4}")):
            took = _timed(lambda: _outcome(auth, name, "wrong password"))
            if i >= 0:
                times[kind].append(took)
    known, unknown = statistics.median(times["known"]), statistics.median(times["unknown"])
    assert unknown > 0.7 * one_check  # the unknown user really paid for a bcrypt check
    assert abs(known - unknown) / max(known, unknown) < 0.25, (known, unknown)


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# --- RBAC --------------------------------------------------------------------------------------
def test_require_role():
    now = datetime.now(UTC)
    from core.users import User

    user, admin = User("u", "u1", None, "user", now), User("a", "a1", None, "admin", now)
    assert require_role(user, "user") is user and require_role(admin, "user") is admin
    assert require_role(admin, "admin") is admin
    with pytest.raises(PermissionDenied, match="administrators"):
        require_role(user, "admin")
    with pytest.raises(PermissionDenied, match="locked"):
        require_role(User("a", "a1", None, "admin", now, locked_at=now), "admin")
    with pytest.raises(InvalidCredentials):
        require_role(None, "user")


def test_only_admins_change_roles_and_the_last_admin_stays(auth, alice, clock):
    root = auth.create_admin("root", OTHER_PASSWORD)
    with pytest.raises(PermissionDenied):
        auth.set_role(alice, alice.id, "admin")
    with pytest.raises(PermissionDenied, match="last administrator"):
        auth.set_role(root, root.id, "user")
    with pytest.raises(PermissionDenied, match="last administrator"):
        auth.lock_user(root, root.id)
    with pytest.raises(PermissionDenied, match="last administrator"):
        auth.delete_user(root, root.id)

    token = auth.login("alice", PASSWORD).token
    promoted = auth.set_role(root, alice.id, "admin")
    assert promoted.role == "admin"
    verified = auth.verify(token)  # the database's role counts, and the token is reissued with it
    assert verified.user.role == "admin" and verified.renewed_token
    assert jwt.decode(verified.renewed_token, options={"verify_signature": False})["role"] == "admin"

    assert auth.set_role(promoted, root.id, "user").role == "user"  # two admins: one may step down
    with pytest.raises(PermissionDenied, match="last administrator"):
        auth.set_role(promoted, alice.id, "user")
    with pytest.raises(ValidationError):
        auth.set_role(promoted, root.id, "superuser")  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        auth.set_role(promoted, "no-such-user", "admin")


def test_locked_admin_does_not_count_as_the_remaining_admin(auth, clock):
    a = auth.create_admin("admin-a", PASSWORD)
    b = auth.create_admin("admin-b", OTHER_PASSWORD)
    auth.lock_user(a, b.id)
    with pytest.raises(PermissionDenied):  # a locked admin is not an admin anyone can use
        require_role(auth.users.get(b.id), "admin")
    with pytest.raises(PermissionDenied, match="last administrator"):
        auth.set_role(a, a.id, "user")


def test_delete_user_removes_sessions_and_needs_admin_or_self(auth, alice, clock, engine):
    bob = auth.register("bob", OTHER_PASSWORD)
    root = auth.create_admin("root", OTHER_PASSWORD)
    login = auth.login("alice", PASSWORD)
    with pytest.raises(PermissionDenied):
        auth.delete_user(bob, alice.id)
    auth.delete_user(root, alice.id)
    with engine.connect() as conn:
        assert conn.execute(select(auth_sessions).where(auth_sessions.c.user_id == alice.id)).first() is None
    with pytest.raises(InvalidCredentials):
        auth.verify(login.token)
    auth.delete_user(bob, bob.id)  # closing one's own account
    with pytest.raises(NotFound):
        auth.users.get(bob.id)


# --- OIDC --------------------------------------------------------------------------------------
def test_oidc_identity_maps_to_one_local_user(engine, clock):
    auth = make_auth(engine, clock, AuthPolicy(bcrypt_rounds=4, oidc_admin_emails=frozenset({"boss@corp.example"})))
    local = auth.register("alice", PASSWORD, email="alice@corp.example")
    first = auth.user_for_oidc("https://idp.example", "sub-1", email="alice@corp.example",
                               preferred_username="alice")
    assert first.id != local.id  # a matching email never links to (and takes over) a local account
    assert first.username.startswith("alice-") and first.role == "user"
    assert auth.user_for_oidc("https://idp.example", "sub-1", email="changed@corp.example").id == first.id
    assert auth.user_for_oidc("https://other-idp.example", "sub-1").id != first.id  # issuer is part of it
    boss = auth.user_for_oidc("https://idp.example", "sub-2", email="Boss@corp.example", name="The Boss")
    assert boss.role == "admin" and boss.username == "boss"
    odd = auth.user_for_oidc("https://idp.example", "sub-3", email="not an email", name="Zoë Ü")
    assert odd.email is None and re.fullmatch(r"[a-z0-9][a-z0-9_.-]{2,63}", odd.username)
    with pytest.raises(InvalidCredentials):
        auth.user_for_oidc("", "sub-4")
    with pytest.raises(InvalidCredentials):  # OIDC people have no password to log in with
        auth.login(first.username, "")
    auth.lock_user(boss, first.id)
    with pytest.raises(PermissionDenied, match="locked"):
        auth.user_for_oidc("https://idp.example", "sub-1")
    opened = auth.open_session(boss, ip="10.1.1.1")
    assert auth.verify(opened.token).user.id == boss.id


def test_auth_service_refuses_a_short_secret(engine):
    with pytest.raises(ValueError, match="32 bytes"):
        AuthService(engine, secret="short")
