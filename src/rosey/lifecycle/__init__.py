"""Plugin lifecycle rules without I/O: the state table, restart policy, backoff, crash window.

The manager's supervisor asks these modules what to do; it alone sleeps, spawns and reads
clocks. Submodules are imported explicitly (``rosey.lifecycle.states``,
``rosey.lifecycle.policy``) so importing this package costs nothing.
"""
