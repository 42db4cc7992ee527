"""Sign in or create an account. CAPTCHA and lockout come from core.accounts; this page only shows them."""

from __future__ import annotations

import streamlit as st

from core.accounts import check_password_strength
from core.errors import AppError, CaptchaRequired, TooManyAttempts, ValidationError
from ui.auth_session import client_ip, send_to_cookie_route, user_agent
from ui.common import get_runtime
from ui.layout import narrow_card

runtime = get_runtime()
auth = runtime.auth

narrow_card()
st.title("Optimus")
st.caption("A chat that remembers — and shows you everything it remembers.")
if st.query_params.get("farewell") == "erased":
    st.success("Your account and everything Optimus kept about you have been deleted. Goodbye!",
               icon=":material/check_circle:")

sign_in, register = st.tabs(["Sign in", "Create account"])

with sign_in:
    challenge = st.session_state.get("login_captcha")  # (captcha id, question): identifiers only
    if message := st.session_state.pop("login_message", None):
        st.error(message, icon=":material/lock:")
    if warning := st.session_state.pop("login_warning", None):
        st.warning(warning, icon=":material/warning:")
    with st.form("login", border=True):
        username = st.text_input("Username", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        answer = None
        if challenge:
            answer = st.text_input(challenge[1], help="A quick check after several failed attempts.")
        submitted = st.form_submit_button("Sign in", type="primary", width="stretch")
    if submitted:
        try:
            login = auth.login(username, password, ip=client_ip(), user_agent=user_agent(),
                               captcha_id=challenge[0] if challenge else None, captcha_answer=answer)
        except CaptchaRequired as exc:
            # Ask the new question in the form: rerun, carrying the message (and the warning) across.
            st.session_state.login_captcha = (exc.captcha_id, exc.question)
            st.session_state.login_message = exc.message
            st.session_state.login_warning = exc.detail.get("warning")
            st.rerun()
        except TooManyAttempts as exc:
            st.session_state.pop("login_captcha", None)
            st.error(exc.message, icon=":material/timer:")
        except AppError as exc:
            st.error(exc.message, icon=":material/lock:")
            if warning := exc.detail.get("warning"):
                st.warning(warning, icon=":material/warning:")
        else:
            st.session_state.pop("login_captcha", None)
            st.toast(f"Welcome back, {login.user.username}!")
            send_to_cookie_route(runtime, login)
            st.stop()

with register, st.container(border=True):
    new_name = st.text_input("Choose a username", key="reg_username", autocomplete="username",
                             help="3–64 characters: letters, digits, '_', '.' or '-'.")
    email = st.text_input("Email (optional)", key="reg_email", autocomplete="email")
    new_password = st.text_input("Choose a password", type="password", key="reg_password",
                                 autocomplete="new-password", help="At least 12 characters and hard to guess.")
    if new_password:
        try:
            check_password_strength(new_password, user_inputs=(new_name, email))
        except ValidationError as exc:
            st.progress(min(0.75, (exc.detail.get("score", 0) + 1) / 5), text="Too weak")
            st.caption(exc.message)
            strong = False
        else:
            st.progress(1.0, text="Strong password")
            strong = True
    else:
        strong = False
    confirm = st.text_input("Repeat the password", type="password", key="reg_confirm", autocomplete="new-password")
    if st.button("Create account", type="primary", disabled=not strong, width="stretch"):
        if confirm != new_password:
            st.error("The two passwords differ.")
        else:
            try:
                user = auth.register(new_name, new_password, email=email or None, ip=client_ip())
                login = auth.login(new_name, new_password, ip=client_ip(), user_agent=user_agent())
            except AppError as exc:
                st.error(exc.message)
            else:
                st.toast(f"Welcome, {user.username}!")
                send_to_cookie_route(runtime, login)
                st.stop()
