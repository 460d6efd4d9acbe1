"""`zchat-load`: a load generator of real zchat clients, and the report it prints.

Each simulated member is a full protocol client (its own DEALER and SUB over
CurveZMQ, its own account, login and join); many of them share one event loop
in a worker process, and several worker processes share the population.
"""
