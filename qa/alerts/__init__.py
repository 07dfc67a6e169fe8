"""Alerts: hear about breaches as soon as a call is scored.

`qa.alerts.rules` is the rule file format, `qa.alerts.engine` evaluates and delivers,
`qa.alerts.mask` keeps secrets out of what is stored and shown, `qa.alerts.cli` is
`qa alerts`. Nothing is imported here, so `qa --help` stays fast.
"""
