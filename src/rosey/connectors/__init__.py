"""Connectors join a chat network to the bus: publish its lines on ``rosey.events.message``,
post what arrives on ``rosey.platform.<platform>.send``. The console is the first."""
