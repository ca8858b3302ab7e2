"""A module whose code cannot even be compiled: a task naming it is disabled."""

def broken(message)
    pass
