"""Incidents a person must act on, told once: by e-mail (the stack's SNS topic) and in Nightscout.

An incident is a (kind, scope) pair: `kind` names what is wrong (bad_credentials, action_required, ...),
`scope` whom it concerns ("" = everybody the stack serves, else a patient's short hash). Its lifecycle
lives in the state store (IncidentStore), so what was already told survives cold starts, and every
message is sent only by the run that won a conditional write ("claimed the slot"): two overlapping runs
can never both send it.

Per incident at most: one e-mail when it opens, one reminder per 24 hours while it stays open, one
all-clear e-mail when it is solved; one Nightscout announcement when it opens and one when it is solved.
A message that could not be sent (SNS or Nightscout unreachable) gives its slot back and the next run
tries again; a Nightscout that refuses announcements (the token lacks treatment permissions) gets a
single warning in the log for the incident and no further attempts.

No text here may carry a password, token, secret or hash of one: the texts are built from the typed
errors' messages, which are written without them (errors.py), and from fixed wording.

The package: `model` (what an incident is, which failure means which one), `texts` (the e-mails and
announcements), `desk` (what a run saw, and the desk that opens, tells, reminds and closes), `known`
(when a run reads the incidents, and which ones it leaves open: the marker read with the state). The
store's interface is ports.IncidentStore, its DynamoDB adapter state/incidents.py.
"""
