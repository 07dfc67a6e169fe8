"""Live monitoring: calls transcribed and checked while they happen.

A platform streams each call's two tracks to `qa live serve` (`server`), in a protocol it
already speaks (`protocol`: Twilio Media Streams today; another platform is another
adapter). Each track is decoded incrementally (`stream`) on a shared pool of decode workers
(`decode`); committed words become the rolling transcript, which live rules and alerts
check as it grows (`rules`). Supervisors read it on the dashboard's Live page through the
workflow database (`qa.workflow.live`). When the call ends its audio and metadata enter
the store as a normal call, so the batch pipeline scores it with the better decoder, and
the live transcript and alerts are kept beside it.
"""
