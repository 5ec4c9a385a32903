"""A person's changes to an incident (CLI and console): acknowledge, resolve.

Each appends an audit record (``incident_acknowledged``, ``incident_resolved``, with the
root-cause note), so the audit trail holds who explained what, as the incident does.
"""

from __future__ import annotations

from tuneloop.incidents import store
from tuneloop.incidents.record import Incident
from tuneloop.operations import audit
from tuneloop.operations.names import PlatformNames
from tuneloop.release.model_versions import now_iso


def acknowledge_incident(
    names: PlatformNames, actor: audit.Actor, incident_id: str, note: str = ""
) -> Incident:
    table = names.require("incidents_table")
    before = store.get_incident(table, incident_id)
    after = store.acknowledge(table, incident_id, by=actor.name, at=now_iso(), note=note)
    audit.append(
        names.require("audit_table"),
        actor,
        "incident_acknowledged",
        incident_id,
        before={"status": before.status},
        after={"status": after.status, "note": note, "alarm_name": after.alarm_name},
    )
    return after


def resolve_incident(
    names: PlatformNames, actor: audit.Actor, incident_id: str, root_cause: str
) -> Incident:
    table = names.require("incidents_table")
    before = store.get_incident(table, incident_id)
    after = store.resolve(table, incident_id, by=actor.name, at=now_iso(), root_cause=root_cause)
    audit.append(
        names.require("audit_table"),
        actor,
        "incident_resolved",
        incident_id,
        before={"status": before.status},
        after={
            "status": after.status,
            "root_cause": after.root_cause,
            "alarm_name": after.alarm_name,
        },
    )
    return after
