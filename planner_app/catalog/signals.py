"""What the catalog tells other domains without depending on them."""

from django.dispatch import Signal

# Sent inside the transaction of an edit that added or removed servers of a stored cluster
# (kwargs: cluster, added, removed: lists of server ids). Re-planning listens.
servers_changed = Signal()
