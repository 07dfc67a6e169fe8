"""Trends for managers and leads: quality over time by team, agent, queue and scorecard item.

Numbers use final outcomes where a lead decided or a dispute changed an item, and the
automatic score elsewhere; "Automatic vs human" keeps the two apart on reviewed calls to
show how far the automatic score can be trusted. Every table has a CSV export.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import components as ui
from dashboard import data
from qa.workflow.views import CallFilter

user = data.current_user()
wf = data.workflow()

st.title("Trends")

c = st.columns(4)
by = c[0].selectbox(
    "Group by",
    ["team", "agent_id", "queue", "scorecard"],
    key="tr_by",
    format_func=lambda v: {"agent_id": "agent", "scorecard": "scorecard version"}.get(v, v),
)
dates = c[1].date_input("Calls between", value=(), key="tr_dates")
team = c[2].text_input("Team", key="tr_team") or None
queue = c[3].text_input("Queue", key="tr_queue") or None
date_from = date_to = None
if isinstance(dates, tuple | list) and len(dates) >= 1:
    date_from = datetime.combine(dates[0], time.min, tzinfo=UTC)
    date_to = datetime.combine(dates[-1], time.min, tzinfo=UTC) + timedelta(days=1)
filters = CallFilter(team=team, queue=queue, date_from=date_from, date_to=date_to)

trend = data.guarded(data.trend_data, user, filters, by)
sums = trend.weekly
if sums.empty or sums["calls"].sum() == 0:
    st.info("No calls in this selection.")
    st.stop()


def means(df: pd.DataFrame) -> pd.DataFrame:
    """Rates from the sums: exact however the calls were grouped."""
    out = df.drop(columns=[c for c in data.SUM_COLUMNS if c != "finalised"])
    out.insert(len(out.columns) - 1, "calls", df["calls"].astype(int))
    out["average_score"] = (df["total_sum"] / df["calls"]).round(2)
    out["pass_rate"] = (df["passed_sum"] / df["calls"]).round(4)
    out["auto_fail_rate"] = (df["auto_fail_sum"] / df["calls"]).round(4)
    out["customer_sentiment"] = (
        df["sentiment_sum"] / df["sentiment_n"].where(df["sentiment_n"] > 0)
    ).round(4)
    out["final_decisions"] = df["finalised"].astype(int)
    return out.drop(columns=["finalised"])


# ---------------------------------------------------------------- headline figures
total = sums[data.SUM_COLUMNS].sum()
k = st.columns(6)
k[0].metric("Calls", f"{int(total['calls']):,}")
k[1].metric("Average score", f"{total['total_sum'] / total['calls']:.1f}")
k[2].metric("Pass rate", f"{total['passed_sum'] / total['calls']:.0%}")
k[3].metric("Auto-fail rate", f"{total['auto_fail_sum'] / total['calls']:.0%}")
k[4].metric(
    "Customer sentiment",
    "-" if not total["sentiment_n"] else f"{total['sentiment_sum'] / total['sentiment_n']:+.2f}",
)
k[5].metric(
    "Final decisions",
    f"{int(total['finalised']):,}",
    help="calls whose outcome a lead set or a dispute changed",
)

# ---------------------------------------------------------------- by week
weekly = means(sums)
weekly["group"] = weekly["group"].fillna("(none)").astype(str)
weekly["week"] = pd.to_datetime(weekly["week"])
weekly = weekly.sort_values(["week", "group"])

tabs = st.tabs(
    [
        "Score",
        "Pass rate",
        "Auto-fail",
        "Sentiment",
        "Items",
        "Reviewers",
        "Coaching",
        "Automatic vs human",
    ]
)
for tab, col, title in [
    (tabs[0], "average_score", "Average score"),
    (tabs[1], "pass_rate", "Pass rate"),
    (tabs[2], "auto_fail_rate", "Auto-fail rate"),
    (tabs[3], "customer_sentiment", "Customer sentiment"),
]:
    with tab:
        ui.weekly_chart(weekly, col, title, "group", by, list(weekly.columns))

table = weekly.copy()
table["week"] = table["week"].dt.date
st.subheader(f"By {by.replace('_id', '')} and week")
st.dataframe(table, hide_index=True, width="stretch", key="tr_weekly")
ui.csv_download(table, f"trend_by_{by}", key="dl_trend")

overall = (
    means(sums.drop(columns=["week"]).groupby("group", dropna=False).sum().reset_index())
    .rename(columns={"group": by})
    .sort_values("average_score")
)
st.subheader(f"By {by.replace('_id', '')}")
st.dataframe(overall, hide_index=True, width="stretch", key="tr_overall")
ui.csv_download(overall, f"summary_by_{by}", key="dl_overall")

with tabs[4]:
    pareto = trend.items
    if pareto.empty:
        st.caption("No failed items.")
    else:
        pareto = pareto.sort_values("fails", ascending=False).reset_index(drop=True)
        pareto["cumulative share"] = pareto["fails"].cumsum() / pareto["fails"].sum()
        bars = (
            alt.Chart(pareto)
            .mark_bar()
            .encode(
                x=alt.X("item_id:N", sort=None, title="item"),
                y=alt.Y("fails:Q", title="failures"),
                tooltip=list(pareto.columns),
            )
        )
        line = (
            alt.Chart(pareto)
            .mark_line(point=True, color="orange")
            .encode(
                x=alt.X("item_id:N", sort=None),
                y=alt.Y("cumulative share:Q", axis=alt.Axis(format="%"), title="cumulative"),
            )
        )
        st.altair_chart(
            alt.layer(bars, line).resolve_scale(y="independent").properties(height=300),
            width="stretch",
        )
        st.dataframe(pareto, hide_index=True, width="stretch", key="tr_pareto")
        ui.csv_download(pareto, "item_failure_pareto", key="dl_pareto")

with tabs[5]:
    stats = data.guarded(wf.agreement_stats, user, filters)
    a = st.columns(3)
    a[0].metric("Reviewed calls", stats.calls)
    a[1].metric("Krippendorff α", "-" if stats.alpha is None else f"{stats.alpha:.2f}")
    a[2].metric(
        "Automatic vs human",
        "-" if stats.auto_human_agreement is None else f"{stats.auto_human_agreement:.0%}",
    )
    rdf = data.frame(
        stats.reviewers,
        [
            "reviewer",
            "reviews",
            "alpha_vs_others",
            "agreement_vs_others",
            "alpha_vs_final",
            "agreement_vs_final",
            "agreement_vs_auto",
        ],
    )
    st.dataframe(rdf, hide_index=True, width="stretch", key="tr_reviewers")
    ui.csv_download(rdf, "reviewer_agreement", key="dl_reviewers")

with tabs[6]:
    sessions = data.guarded(wf.list_coaching, user)
    if not sessions:
        st.caption("No coaching sessions.")
    else:
        cdf = data.frame(
            sessions,
            ["id", "agent_id", "session_at", "status", "due", "acknowledged_at", "follow_up_date"],
        )
        cdf["acknowledged"] = cdf["acknowledged_at"].notna()
        cdf["followed_up"] = cdf["follow_up_date"].notna()
        summary = (
            cdf.groupby("agent_id")
            .agg(
                sessions=("id", "count"),
                acknowledged=("acknowledged", "mean"),
                followed_up=("followed_up", "mean"),
            )
            .reset_index()
        )
        b = st.columns(2)
        b[0].metric("Acknowledged", f"{cdf['acknowledged'].mean():.0%}")
        b[1].metric("Followed up", f"{cdf['followed_up'].mean():.0%}")
        st.dataframe(summary, hide_index=True, width="stretch", key="tr_coaching")
        ui.csv_download(summary, "coaching_completion", key="dl_coaching_completion")

with tabs[7]:
    st.caption(
        "Over the calls a person reviewed. Human: the lead's final decision where one was "
        "set, else the majority of the submitted reviews by inspectors and leads (a tie "
        "counts as a fail; agents' self-reviews are not counted). Item agreement: the share "
        "of reviewed calls where the human outcome of the item equals the automatic one."
    )
    vs = data.guarded(wf.auto_vs_human, user, filters, by)
    if not vs.calls:
        st.caption("No reviewed calls in this selection.")
    else:
        h = st.columns(4)
        h[0].metric("Reviewed calls", f"{vs.calls:,}")
        h[1].metric("Automatic pass rate", f"{vs.auto_pass_rate:.0%}")
        h[2].metric("Human pass rate", f"{vs.human_pass_rate:.0%}")
        h[3].metric("Same pass / fail", f"{vs.agreement:.0%}")
        gdf = data.frame(
            vs.groups,
            ["week", "group", "calls", "auto_pass_rate", "human_pass_rate", "agree"],
        )
        long = gdf.melt(
            id_vars=["week", "group", "calls"],
            value_vars=["auto_pass_rate", "human_pass_rate"],
            var_name="score",
            value_name="pass_rate",
        )
        long["score"] = long["score"].map(
            {"auto_pass_rate": "automatic", "human_pass_rate": "human"}
        )
        long["group"] = long["group"].fillna("(none)").astype(str)
        chart = (
            alt.Chart(long)
            .mark_line(point=True)
            .encode(
                x=alt.X("week:T", title="week"),
                y=alt.Y("pass_rate:Q", axis=alt.Axis(format="%"), title="pass rate"),
                color=alt.Color("group:N", title=by),
                strokeDash=alt.StrokeDash("score:N", title="score"),
                tooltip=list(long.columns),
            )
            .properties(height=300)
        )
        st.altair_chart(chart, width="stretch")
        gdf = gdf.rename(columns={"group": by})
        st.dataframe(gdf, hide_index=True, width="stretch", key="tr_auto_human")
        ui.csv_download(gdf, f"auto_vs_human_by_{by}", key="dl_auto_human")
        idf = data.frame(vs.items, ["item_id", "name", "calls", "agree", "agreement"])
        idf = idf.sort_values("agreement").reset_index(drop=True)
        st.dataframe(idf, hide_index=True, width="stretch", key="tr_auto_human_items")
        ui.csv_download(idf, "auto_vs_human_items", key="dl_auto_human_items")
