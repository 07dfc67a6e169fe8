"""Accounts: the admin adds users, disables and enables them, resets passwords, changes
roles and unlocks accounts locked by failed logins.

Every change goes through the service, which checks the admin's role, keeps at least one
active admin and audits old and new values (a password only as "reset"). Names and teams
are user text: shown in tables or escaped, never read as Markdown.
"""

from __future__ import annotations

import streamlit as st

from dashboard import components as ui
from dashboard import data, plain
from qa.workflow.views import UserRole

ROLES = [r.value for r in UserRole]

user = data.current_user()
wf = data.workflow()

st.title("Accounts")

accounts = data.guarded(wf.list_accounts, user)
df = data.frame(
    accounts,
    [
        "username",
        "display_name",
        "role",
        "team",
        "agent_id",
        "active",
        "locked",
        "failed_logins",
        "created_at",
    ],
)
st.caption(
    f"{len(df)} accounts · {sum(a.active for a in accounts)} active · "
    f"{sum(a.locked for a in accounts)} locked"
)
st.dataframe(df, hide_index=True, width="stretch", key="acc_table")
ui.csv_download(df, "accounts", key="dl_accounts")


def _text(value: str) -> str | None:
    """A typed value, trimmed; empty means none."""
    return value.strip() or None


# ---------------------------------------------------------------- add
with (
    st.expander("Add an account", expanded=not accounts),
    st.form("acc_new", clear_on_submit=True),
):
    c1, c2 = st.columns(2)
    username = c1.text_input("Username", key="acc_new_username")
    display_name = c2.text_input("Display name", key="acc_new_display")
    role = c1.selectbox("Role", ROLES, key="acc_new_role")
    team = c2.text_input("Team", key="acc_new_team")
    agent_id = c1.text_input(
        "Agent id (agents only: the id their calls carry)", key="acc_new_agent"
    )
    password = c2.text_input(
        "Initial password (the user is told it, then signs in with it)",
        type="password",
        key="acc_new_password",
    )
    if st.form_submit_button("Add account", type="primary", key="acc_add"):
        added = data.guarded(
            wf.add_user,
            user,
            username.strip(),
            password,
            role,
            display_name=_text(display_name),
            team=_text(team),
            agent_id=_text(agent_id),
        )
        plain.done(f"Added {added.username} ({added.role.value}).")

# ---------------------------------------------------------------- change one
if accounts:
    st.subheader("Change an account")
    by_name = {a.username: a for a in accounts}
    picked = st.selectbox(
        "Account",
        list(by_name),
        key="acc_pick",
        format_func=lambda n: f"{n} · {by_name[n].display_name} ({by_name[n].role.value})",
    )
    acc = by_name[picked]
    state = "active" if acc.active else "disabled"
    if acc.locked:
        state += f" · locked after {acc.failed_logins} failed logins"
    elif acc.failed_logins:
        state += f" · {acc.failed_logins} failed logins"
    st.markdown(
        f"**{plain.md(acc.display_name)}** ({plain.md(acc.username)}) · {acc.role.value} · "
        f"team {plain.md(acc.team or '-')} · agent id {plain.md(acc.agent_id or '-')} · {state}"
    )
    key = acc.username
    is_self = acc.id == user.id

    role_tab, password_tab, access_tab, history_tab = st.tabs(
        ["Role and team", "Password", "Access", "History"]
    )
    with role_tab:
        new_role = st.selectbox(
            "Role", ROLES, index=ROLES.index(acc.role.value), key=f"acc_role:{key}"
        )
        new_team = st.text_input("Team", value=acc.team or "", key=f"acc_team:{key}")
        new_agent = st.text_input(
            "Agent id (agents only)", value=acc.agent_id or "", key=f"acc_agent:{key}"
        )
        if st.button("Save role and team", key=f"acc_role_btn:{key}"):
            data.guarded(
                wf.change_role,
                user,
                acc.username,
                new_role,
                team=_text(new_team),
                agent_id=_text(new_agent),
            )
            plain.done(f"Saved {acc.username}: {new_role}.")
    with password_tab, st.form(f"acc_pw_form:{key}", clear_on_submit=True):
        new_password = st.text_input(
            "New password (every session of this account ends)",
            type="password",
            key=f"acc_pw:{key}",
        )
        if st.form_submit_button("Set password", key=f"acc_pw_btn:{key}"):
            data.guarded(wf.reset_password, user, acc.username, new_password)
            plain.done(f"Password of {acc.username} reset; its sessions ended.")
    with access_tab:
        if acc.active and not is_self:
            if st.button("Disable account", key=f"acc_disable:{key}", icon=":material/block:"):
                data.guarded(wf.disable_user, user, acc.username)
                plain.done(f"Disabled {acc.username}; its sessions ended.")
        elif acc.active:
            st.caption("You cannot disable your own account.")
        elif st.button("Enable account", key=f"acc_enable:{key}", icon=":material/check:"):
            data.guarded(wf.enable_user, user, acc.username)
            plain.done(f"Enabled {acc.username}.")
        if acc.failed_logins:
            if st.button("Unlock", key=f"acc_unlock:{key}", icon=":material/lock_open:"):
                data.guarded(wf.unlock_user, user, acc.username)
                plain.done(f"Unlocked {acc.username}.")
        else:
            st.caption("No failed logins to clear.")
    with history_tab:
        trail = data.guarded(wf.audit_trail, user, "user", acc.username, limit=200)
        hdf = data.frame(trail, ["at", "actor", "action", "field", "old_value", "new_value"])
        st.dataframe(hdf, hide_index=True, width="stretch", key="acc_history")
