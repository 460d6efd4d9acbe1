"""The zchat broker: a pure state core (`handlers`, `membership`, `state`) under a thin
asyncio + ZeroMQ shell (`server`), storing through one interface (`storage`)."""
