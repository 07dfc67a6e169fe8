"""Why customers call: drivers found from the customers' opening words, for leads and managers.

Each driver shows its keywords, size, example calls (links to the review page), its calls'
pass rate, customer sentiment and repeat callers (the same customer calling again within N
days: the matter was not settled first time), and a weekly trend. Leads rename, merge and
pin drivers; a pinned driver labels new calls as the pipeline publishes them. The service
refuses everyone else whatever this page shows.
"""

from __future__ import annotations

from urllib.parse import quote

import pandas as pd
import streamlit as st

from dashboard import components as ui
from dashboard import data, plain
from qa.errors import AccessDenied, QAError

user = data.current_user()
wf = data.workflow()
is_lead = data.role_of(user) == "lead"

st.title("Drivers")
st.caption(
    "Why customers call, grouped from what they say in their first minute. "
    "`qa drivers build` groups the stored calls; pinned drivers label new calls."
)

if error := st.session_state.pop("dr_error", None):
    plain.error(error)

days = st.number_input(
    "Repeat caller window (days)", min_value=1, max_value=90, value=7, key="dr_days"
)
drivers = data.guarded(wf.list_drivers, user, repeat_days=int(days))
if not drivers:
    st.info("No drivers yet: run `qa drivers build` once calls have been processed.")
    st.stop()


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0%}"


table = pd.DataFrame(
    [
        {
            "id": d.id,
            "driver": d.name,
            "pinned": d.pinned,
            "calls": d.calls,
            "keywords": ", ".join(d.keywords),
            "pass_rate": d.pass_rate,
            "customer_sentiment": d.customer_sentiment,
            "repeat_rate": d.repeat_rate,
            "with_customer_id": d.with_customer,
        }
        for d in drivers
    ]
)
st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    key="dr_table",
    column_config={
        "pass_rate": st.column_config.NumberColumn("pass rate", format="percent"),
        "repeat_rate": st.column_config.NumberColumn(
            f"repeat callers ({int(days)} d)", format="percent"
        ),
        "customer_sentiment": st.column_config.NumberColumn("sentiment", format="%+.2f"),
    },
)
ui.csv_download(table, "drivers", key="dr_csv")

# ---------------------------------------------------------------- one driver
by_id = {d.id: d for d in drivers}
pick = st.selectbox(
    "Driver",
    list(by_id),
    key="dr_pick",
    format_func=lambda k: (
        f"{by_id[k].name} ({by_id[k].calls} calls)" + (" · pinned" if by_id[k].pinned else "")
    ),
)
d = by_id[pick]
k = st.columns(4)
k[0].metric("Calls", f"{d.calls:,}")
k[1].metric("Pass rate", pct(d.pass_rate))
k[2].metric(
    "Customer sentiment", "-" if d.customer_sentiment is None else f"{d.customer_sentiment:+.2f}"
)
k[3].metric(
    "Repeat callers",
    pct(d.repeat_rate),
    help=f"of {d.with_customer} call(s) with a customer id: called again within {int(days)} days",
)
st.markdown("**Keywords:** " + (plain.md(", ".join(d.keywords)) or "-"))
st.subheader("Example calls")
for ex in d.examples:
    link = f"[{plain.md(ex.call_id)}](/review?call={quote(ex.call_id)})"
    st.markdown(f"- {link}: {plain.md(ex.opening[:200])}")
if d.examples and st.button("Open the first example", key="dr_open", icon=":material/headphones:"):
    st.session_state["open_call"] = d.examples[0].call_id
    st.switch_page("views/review.py")

# ---------------------------------------------------------------- leads' edits
# Edits run as button callbacks, before the page is drawn: the same run shows their effect.


def _edit(fn, message, *args) -> None:  # noqa: ANN001
    try:
        changed = fn(user, *args)
    except AccessDenied as exc:
        st.session_state["dr_error"] = f"Not permitted: {exc.reason}"
        return
    except QAError as exc:
        st.session_state["dr_error"] = str(exc)
        return
    st.session_state["flash"] = plain.md(message(changed))


if is_lead:
    st.subheader("Edit")
    c = st.columns([3, 1])
    c[0].text_input("Name", value=d.name, key=f"dr_name_{d.id}")
    c[1].button(
        "Rename",
        key="dr_rename",
        on_click=lambda: _edit(
            wf.rename_driver,
            lambda v: f"Renamed to {v.name}.",
            d.id,
            st.session_state.get(f"dr_name_{d.id}", d.name),
        ),
    )
    c = st.columns([3, 1])
    others = [i for i in by_id if i != d.id]
    into = c[0].selectbox(
        "Merge this driver into",
        others,
        index=None,
        key="dr_into",
        format_func=lambda k: by_id[k].name,
    )
    c[1].button(
        "Merge",
        key="dr_merge",
        disabled=into is None,
        on_click=lambda: _edit(
            wf.merge_drivers, lambda v: f"Merged into {v.name}.", d.id, st.session_state["dr_into"]
        ),
    )
    st.button(
        "Unpin" if d.pinned else "Pin (label new calls with it)",
        key="dr_pin",
        on_click=lambda: _edit(
            wf.pin_driver,
            lambda v: ("Pinned " if v.pinned else "Unpinned ") + v.name + ".",
            d.id,
            not d.pinned,
        ),
    )

# ---------------------------------------------------------------- by week
weeks = data.guarded(wf.driver_trends, user, repeat_days=int(days))
weekly = pd.DataFrame([w.model_dump() for w in weeks])
if not weekly.empty and weekly["week"].notna().any():
    st.subheader("By week")
    weekly = weekly.dropna(subset=["week"])
    weekly["week"] = pd.to_datetime(weekly["week"])
    tabs = st.tabs(["Calls", "Pass rate", "Sentiment", "Repeat callers"])
    for tab, col, title in [
        (tabs[0], "calls", "Calls"),
        (tabs[1], "pass_rate", "Pass rate"),
        (tabs[2], "customer_sentiment", "Customer sentiment"),
        (tabs[3], "repeat_rate", "Repeat callers"),
    ]:
        with tab:
            tooltip = ["week:T", "driver:N", "calls:Q", f"{col}:Q"]
            ui.weekly_chart(weekly, col, title, "driver", "driver", tooltip)
    shown = weekly.copy()
    shown["week"] = shown["week"].dt.date
    st.dataframe(shown, hide_index=True, width="stretch", key="dr_weekly")
