"""What the catalog tells other domains without depending on them."""

from django.dispatch import Signal

# Sent inside the transaction of an edit that added or removed servers of a stored cluster
# (kwargs: cluster, added, removed: lists of server ids). Re-planning listens.
servers_changed = Signal()

# Sent inside the transaction of an edit that changed stored servers' batch_slowdown
# (kwargs: cluster, changes: [(server id, curves.CurveChange)]). Re-planning holds it to the calibration threshold.
server_curves_changed = Signal()
