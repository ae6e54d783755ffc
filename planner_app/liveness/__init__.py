"""Server liveness (docs/liveness.md): each server's state (up, suspect, down, draining, joining), its history,
heartbeats and drains, and healing: a server that dies or comes back starts a re-plan on the servers that are up.

The dispatcher's store (serving.dispatch) decides the states from failure reports, heartbeats and its timers,
and masks the chains through a server that is not up; this domain mirrors what the service is told to the store
(``mirror``), records the store's transitions (``services.liveness_poll``, run by the dispatcher's background
loop: ``background``) and starts the re-plans.  A layer above dispatch: it writes to the store, authorises
probe tokens and starts re-plans; re-planning learns which servers to leave out through the hook it registers
in ``PlannerAppConfig.ready``.
"""
