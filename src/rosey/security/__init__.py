"""Enforcement that does not depend on the plugin's cooperation: broker identities and
permissions, violation reports from the broker's own log, and the kernel layer (Landlock)."""
