"""Management commands, each implemented once; chat, NATS and CLI are thin faces over them."""
